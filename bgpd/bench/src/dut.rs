//! Devices under test: BIRD 2 and our speaker (the `bgpd-dut` binary), started in the DUT
//! namespace with the same roles, plus the /proc readings we report for them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netlab::{Netns, Process};

use crate::BenchError;
use crate::lab::Topology;

/// Which speaker sits in the middle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DutKind {
    /// BIRD 2, one table, `import all; export all;` on both sessions.
    Bird,
    /// Our speaker, through the `bgpd-dut` binary at this path, optionally under a wrapper
    /// command (`perf record -g -o FILE --`, `valgrind --tool=massif`): for profiling only,
    /// the CPU and RSS figures are then the wrapper's.
    Bgpd {
        binary: PathBuf,
        wrapper: Vec<String>,
    },
}

impl DutKind {
    pub fn name(&self) -> &'static str {
        match self {
            DutKind::Bird => "bird",
            DutKind::Bgpd { .. } => "bgpd",
        }
    }
}

/// A running DUT.
#[derive(Debug)]
pub struct Dut {
    pub process: Process,
}

fn bird_config(t: &Topology, dir: &Path) -> String {
    format!(
        "# bgpd-bench: BIRD as the device under test (single table, bgperf's -s).
router id {dut_id};
log \"{log}\" {{ warning, error, fatal, bug }};
protocol device {{ }}
protocol bgp sender {{
  local {dut_s} as {dut_as};
  neighbor {snd} as {snd_as};
  passive on;
  hold time 240;
  ipv4 {{ import all; export all; }};
}}
protocol bgp receiver {{
  local {dut_r} as {dut_as};
  neighbor {rcv} as {rcv_as};
  passive on;
  hold time 240;
  ipv4 {{ import all; export all; }};
}}
",
        dut_id = t.dut_sender_side,
        log = dir.join("bird-events.log").display(),
        dut_s = t.dut_sender_side,
        dut_r = t.dut_receiver_side,
        dut_as = t.dut_as,
        snd = t.sender,
        snd_as = t.sender_as,
        rcv = t.receiver,
        rcv_as = t.receiver_as,
    )
}

impl Dut {
    /// Starts `kind` in the DUT namespace; logs and config go to `dir`.
    pub fn start(
        kind: &DutKind,
        t: &Topology,
        ns: &Netns,
        dir: &Path,
        run: usize,
    ) -> Result<Self, BenchError> {
        let process = match kind {
            DutKind::Bird => {
                let conf = dir.join("bird.conf");
                fs::write(&conf, bird_config(t, dir)).map_err(|source| BenchError::Io {
                    path: conf.clone(),
                    source,
                })?;
                let sock = dir.join("bird.ctl");
                ns.spawn(
                    dir,
                    &format!("bird-{run}"),
                    &[
                        "bird",
                        "-f",
                        "-c",
                        &conf.to_string_lossy(),
                        "-s",
                        &sock.to_string_lossy(),
                    ],
                )?
            }
            DutKind::Bgpd { binary, wrapper } => {
                let mut args = wrapper.clone();
                args.extend([
                    binary.to_string_lossy().into_owned(),
                    "--router-id".into(),
                    t.dut_sender_side.to_string(),
                    "--local-as".into(),
                    t.dut_as.to_string(),
                    "--peer".into(),
                    format!("{}:{}", t.sender, t.sender_as),
                    "--peer".into(),
                    format!("{}:{}", t.receiver, t.receiver_as),
                ]);
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                ns.spawn_env(dir, &format!("bgpd-{run}"), &argv, &[("RUST_LOG", "warn")])?
            }
        };
        Ok(Self { process })
    }

    /// Peak resident set size (`VmHWM`) in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64, BenchError> {
        peak_rss_kib(self.process.pid())
    }
}

fn read_proc(path: String) -> Result<String, BenchError> {
    fs::read_to_string(&path).map_err(|source| BenchError::Io {
        path: path.into(),
        source,
    })
}

// Foreign CPU time is what the host was busy with beyond the DUT and this process (the sender
// and receiver threads). The three readings come from different kernel clocks, so the figure
// is only as good as their agreement:
//
// - the processes' CPU clocks are exact (nanoseconds of run time), except that a thread that
//   is running at the moment of reading has not been brought up to date since its CPU's last
//   scheduler tick;
// - the host's busy time is taken as `CPUs x wall time - idle - iowait`: on a tickless kernel
//   (NO_HZ, the default) idle and iowait are measured at every idle entry and exit, to the
//   nanosecond, and `/proc/stat` floors each total to a clock tick. The busy fields of
//   `/proc/stat` (user, system, ...) are not used: they are sampled at scheduler ticks (a
//   thread running when the tick fires is charged the whole tick) and disagree with the exact
//   process clocks by more than any fixed bound, which is what made this figure negative.
//
// Reading the host first at the start and last at the end makes its interval enclose the
// processes'. The figure reported is then an upper bound: the readings at face value plus
// their resolution (two clock ticks for the floored idle and iowait, one scheduler tick per
// thread that can be stale). Other work can only make it larger; if it still comes out
// negative, the instruments disagree beyond their resolution and that is an error, not a
// figure.

/// The longest scheduler tick Linux has (`CONFIG_HZ` is at least 100): how far behind the CPU
/// clock of another process's running thread can be.
pub const MAX_SCHED_TICK_NS: u64 = 10_000_000;

/// The CPU clock of process `pid` (all its threads, including exited ones), in nanoseconds.
pub fn process_cpu_ns(pid: u32) -> Result<u64, BenchError> {
    let err = |source| BenchError::CpuClock { pid, source };
    let ipid = libc::pid_t::try_from(pid)
        .map_err(|_| err(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid, writable clockid_t for the duration of the call.
    let rc = unsafe { libc::clock_getcpuclockid(ipid, &mut clock) };
    if rc != 0 {
        // It returns the error number instead of setting errno.
        return Err(err(std::io::Error::from_raw_os_error(rc)));
    }
    clock_ns(clock).map_err(err)
}

/// The CPU clock of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> std::io::Result<u64> {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> std::io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let secs = u64::try_from(ts.tv_sec).map_err(|_| bad())?;
    let nanos = u64::try_from(ts.tv_nsec).map_err(|_| bad())?;
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(bad)
}

/// What `/proc/stat` tells about the whole host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTicks {
    /// Online CPUs (its `cpuN` lines).
    pub cpus: u32,
    /// Idle time of all CPUs together, in clock ticks.
    pub idle: u64,
    /// I/O wait time of all CPUs together, in clock ticks.
    pub iowait: u64,
    /// The length of a clock tick (`USER_HZ`, from `sysconf(_SC_CLK_TCK)`), in nanoseconds.
    pub tick_ns: u64,
}

/// Parses `/proc/stat`: the idle and iowait columns (4th and 5th) of the `cpu` line and the
/// number of `cpuN` lines. `tick_ns` is the unit of its columns.
pub fn parse_proc_stat(text: &str, tick_ns: u64) -> Result<HostTicks, &'static str> {
    let mut total = None;
    let mut cpus: u32 = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            if total.is_some() {
                return Err("two cpu lines");
            }
            let cols = rest
                .split_whitespace()
                .map(str::parse::<u64>)
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|_| "a cpu column is not a number")?;
            match cols.get(3..5) {
                Some(&[idle, iowait]) => total = Some((idle, iowait)),
                _ => return Err("fewer than 5 columns on the cpu line"),
            }
        } else if line
            .strip_prefix("cpu")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        {
            cpus = cpus.checked_add(1).ok_or("too many cpuN lines")?;
        }
    }
    let (idle, iowait) = total.ok_or("no cpu line")?;
    if cpus == 0 {
        return Err("no cpuN lines");
    }
    Ok(HostTicks {
        cpus,
        idle,
        iowait,
        tick_ns,
    })
}

/// The host's counters now.
pub fn host_ticks() -> Result<HostTicks, BenchError> {
    let path = "/proc/stat".to_string();
    let text = read_proc(path.clone())?;
    parse_proc_stat(&text, clock_tick_ns()).map_err(|detail| BenchError::Proc {
        path,
        detail: detail.into(),
    })
}

fn clock_tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux architecture we run on; sysconf cannot fail for it.
    match u64::try_from(hz) {
        Ok(hz) if hz > 0 => 1_000_000_000 / hz,
        _ => 10_000_000,
    }
}

/// The readings at one end of a measured interval: take the first with [`CpuSample::begin`],
/// the second with [`CpuSample::end`], and subtract with [`CpuSample::delta`].
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// When the host was read (before it at the start, after it at the end).
    pub wall: Instant,
    pub host: HostTicks,
    /// The DUT's CPU clock, nanoseconds.
    pub dut_ns: u64,
    /// This process's CPU clock (the sender and receiver threads), nanoseconds.
    pub own_ns: u64,
}

/// CPU time over a measured interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuUse {
    /// The DUT's CPU time (utime + stime, from its CPU clock).
    pub dut: Duration,
    /// An upper bound on the CPU time used by neither the DUT nor this process: the readings'
    /// difference plus their resolution ([`CpuUse::resolution`]).
    pub foreign: Duration,
    /// How much of `foreign` is the instruments' resolution rather than measured work.
    pub resolution: Duration,
    /// This process's CPU time: the sender's and the receiver's threads.
    pub peers: Duration,
}

/// The readings of an interval contradict each other: there is no CPU figure to report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuAccountingError {
    #[error("the number of online CPUs changed from {begin} to {end}")]
    CpusChanged { begin: u32, end: u32 },
    #[error("{what} went backwards ({begin} -> {end})")]
    Backwards {
        what: &'static str,
        begin: u64,
        end: u64,
    },
    /// The DUT and this process ran for longer than the host was busy, beyond the
    /// instruments' resolution: an instrument is wrong (e.g. idle time sampled at ticks on a
    /// kernel without NO_HZ, or a process clock that is not the process's).
    #[error(
        "the DUT ({dut_ns} ns) and the peers ({own_ns} ns) ran for longer than the host was busy ({busy_ns} ns) plus the readings' resolution ({resolution_ns} ns)"
    )]
    Inconsistent {
        busy_ns: i64,
        dut_ns: u64,
        own_ns: u64,
        resolution_ns: u64,
    },
}

impl CpuSample {
    /// Reads the host, then the processes.
    pub fn begin(dut_pid: u32) -> Result<Self, BenchError> {
        let wall = Instant::now();
        let host = host_ticks()?;
        let dut_ns = process_cpu_ns(dut_pid)?;
        let own_ns = process_cpu_ns(std::process::id())?;
        Ok(Self {
            wall,
            host,
            dut_ns,
            own_ns,
        })
    }

    /// Reads the processes, then the host: the host's interval encloses the processes'.
    pub fn end(dut_pid: u32) -> Result<Self, BenchError> {
        let dut_ns = process_cpu_ns(dut_pid)?;
        let own_ns = process_cpu_ns(std::process::id())?;
        let host = host_ticks()?;
        let wall = Instant::now();
        Ok(Self {
            wall,
            host,
            dut_ns,
            own_ns,
        })
    }

    /// CPU time from `self` (a [`CpuSample::begin`]) to `end` (a [`CpuSample::end`]).
    pub fn delta(&self, end: &CpuSample) -> Result<CpuUse, CpuAccountingError> {
        let (a, b) = (&self.host, &end.host);
        if a.cpus != b.cpus {
            return Err(CpuAccountingError::CpusChanged {
                begin: a.cpus,
                end: b.cpus,
            });
        }
        let since = |what, begin: u64, end: u64| {
            end.checked_sub(begin)
                .ok_or(CpuAccountingError::Backwards { what, begin, end })
        };
        // Time flips between idle and iowait as tasks block and wake, so only their sum is
        // monotonic.
        let idle = since(
            "idle + iowait",
            a.idle.saturating_add(a.iowait),
            b.idle.saturating_add(b.iowait),
        )?;
        let dut = since("the DUT's CPU clock", self.dut_ns, end.dut_ns)?;
        let own = since("this process's CPU clock", self.own_ns, end.own_ns)?;
        let wall = u64::try_from(end.wall.saturating_duration_since(self.wall).as_nanos())
            .unwrap_or(u64::MAX);
        let cpus = i128::from(a.cpus);
        let tick = i128::from(a.tick_ns);
        let busy = cpus * i128::from(wall) - i128::from(idle) * tick;
        // Idle and iowait are each floored to a tick (2 ticks); at the start, every CPU may
        // be running a DUT thread when the DUT is read and every CPU but the reading one an
        // own thread when this process is read, each up to a scheduler tick behind.
        let resolution = 2 * tick + (2 * cpus - 1) * i128::from(MAX_SCHED_TICK_NS);
        let foreign = busy + resolution - i128::from(dut) - i128::from(own);
        let to_ns = |v: i128| u64::try_from(v).unwrap_or(u64::MAX);
        if foreign < 0 {
            return Err(CpuAccountingError::Inconsistent {
                busy_ns: i64::try_from(busy).unwrap_or(if busy < 0 { i64::MIN } else { i64::MAX }),
                dut_ns: dut,
                own_ns: own,
                resolution_ns: to_ns(resolution),
            });
        }
        Ok(CpuUse {
            dut: Duration::from_nanos(dut),
            foreign: Duration::from_nanos(to_ns(foreign)),
            resolution: Duration::from_nanos(to_ns(resolution)),
            peers: Duration::from_nanos(own),
        })
    }
}

/// `VmHWM` of `pid` in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = read_proc(path.clone())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(BenchError::Proc {
            path,
            detail: "no VmHWM".into(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use std::process::{Child, Command, Stdio};
    use std::thread;

    const TICK: u64 = 10_000_000;
    const MS: u64 = 1_000_000;

    const STAT: &str = "cpu  30570 18332 11213 70554 481 0 63 13 0 0
cpu0 14355 9879 5335 35950 88 0 14 6 0 0
cpu1 16215 8452 5878 34604 392 0 48 7 0 0
intr 1 2 3
ctxt 123
btime 1700000000
";

    #[test]
    fn parses_proc_stat() {
        assert_eq!(
            parse_proc_stat(STAT, TICK),
            Ok(HostTicks {
                cpus: 2,
                idle: 70554,
                iowait: 481,
                tick_ns: TICK
            })
        );
    }

    #[test]
    fn rejects_malformed_proc_stat() {
        let cases = [
            ("", "no cpu line"),
            ("cpu0 1 2 3 4 5\n", "no cpu line"),
            ("cpu  1 2 3 4 5\n", "no cpuN lines"),
            (
                "cpu  1 2 3 4\ncpu0 1 2 3 4\n",
                "fewer than 5 columns on the cpu line",
            ),
            (
                "cpu  1 2 x 4 5\ncpu0 1 2 3 4 5\n",
                "a cpu column is not a number",
            ),
            (
                "cpu  1 2 3 -4 5\ncpu0 1 2 3 4 5\n",
                "a cpu column is not a number",
            ),
            ("cpu  1 2 3 4 5\ncpu  1 2 3 4 5\ncpu0 1\n", "two cpu lines"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_proc_stat(text, TICK), Err(want), "{text:?}");
        }
    }

    /// Two samples `wall_ms` apart on a 2-CPU host whose CPUs were idle for `idle_ticks` in
    /// total (split between idle and iowait), with the DUT and this process using `dut_ms`
    /// and `own_ms`.
    fn interval(wall_ms: u64, idle_ticks: u64, dut_ms: u64, own_ms: u64) -> (CpuSample, CpuSample) {
        let host = HostTicks {
            cpus: 2,
            idle: 5_000,
            iowait: 40,
            tick_ns: TICK,
        };
        let begin = CpuSample {
            wall: Instant::now(),
            host,
            dut_ns: 7 * MS,
            own_ns: 3 * MS,
        };
        let end = CpuSample {
            wall: begin.wall + Duration::from_millis(wall_ms),
            host: HostTicks {
                // Time moves from iowait back to idle: only the sum is monotonic.
                idle: host.idle + idle_ticks + 30,
                iowait: host.iowait - 30,
                ..host
            },
            dut_ns: begin.dut_ns + dut_ms * MS,
            own_ns: begin.own_ns + own_ms * MS,
        };
        (begin, end)
    }

    /// 2 clock ticks + (2 x 2 CPUs - 1) scheduler ticks.
    const RESOLUTION: Duration = Duration::from_millis(50);

    #[test]
    fn foreign_is_busy_time_beyond_dut_and_peers_plus_resolution() {
        // 2 CPUs x 1 s, 1 s idle: 1 s busy, of which the DUT 400 ms and we 100 ms.
        let (a, b) = interval(1_000, 100, 400, 100);
        let u = a.delta(&b).unwrap();
        assert_eq!(u.dut, Duration::from_millis(400));
        assert_eq!(u.peers, Duration::from_millis(100));
        assert_eq!(u.resolution, RESOLUTION);
        assert_eq!(u.foreign, Duration::from_millis(500) + RESOLUTION);
    }

    #[test]
    fn readings_that_disagree_within_resolution_give_zero_foreign_time() {
        // The processes claim exactly the resolution more than the host was busy.
        let (a, b) = interval(1_000, 100, 950, 100);
        let u = a.delta(&b).unwrap();
        assert_eq!(u.foreign, Duration::ZERO);
    }

    #[test]
    fn readings_that_disagree_beyond_resolution_are_an_error() {
        // 1 s busy, but the DUT and we ran 1.051 s: 1 ms beyond what resolution explains.
        let (a, b) = interval(1_000, 100, 951, 100);
        assert_eq!(
            a.delta(&b),
            Err(CpuAccountingError::Inconsistent {
                busy_ns: 1_000_000_000,
                dut_ns: 951_000_000,
                own_ns: 100_000_000,
                resolution_ns: 50_000_000,
            })
        );
    }

    #[test]
    fn counters_going_backwards_or_cpus_changing_are_errors() {
        let (a, mut b) = interval(1_000, 100, 400, 100);
        b.dut_ns = a.dut_ns - 1;
        assert!(matches!(
            a.delta(&b),
            Err(CpuAccountingError::Backwards { .. })
        ));
        let (a, mut b) = interval(1_000, 100, 400, 100);
        b.host.idle = a.host.idle - 100;
        assert!(matches!(
            a.delta(&b),
            Err(CpuAccountingError::Backwards { .. })
        ));
        let (a, mut b) = interval(1_000, 100, 400, 100);
        b.host.cpus = 3;
        assert_eq!(
            a.delta(&b),
            Err(CpuAccountingError::CpusChanged { begin: 2, end: 3 })
        );
    }

    /// A shell busy-looping until dropped (killed by its PID, which is our unreaped child).
    struct Burner(Child);

    impl Burner {
        fn start() -> Self {
            let child = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            Self(child)
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Burner {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Polls `pid`'s CPU clock until it has run `at_least` since `since_ns` (no timing is
    /// asserted: on a busy host this only takes longer).
    fn wait_for_cpu(pid: u32, since_ns: u64, at_least: Duration) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = process_cpu_ns(pid).unwrap();
            if Duration::from_nanos(now.saturating_sub(since_ns)) >= at_least {
                return now;
            }
            assert!(Instant::now() < deadline, "pid {pid} got no CPU for 60 s");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn live_readings_agree_and_see_the_dut_and_foreign_work() {
        let me = std::process::id();
        assert!(process_cpu_ns(me).unwrap() > 0);
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert!(host_ticks().unwrap().cpus >= 1);
        let dut = Burner::start();
        let stranger = Burner::start();
        let begin = CpuSample::begin(dut.pid()).unwrap();
        // Read inside the host's interval, so the stranger's work is part of it.
        let s0 = process_cpu_ns(stranger.pid()).unwrap();
        wait_for_cpu(dut.pid(), begin.dut_ns, Duration::from_millis(200));
        let s1 = wait_for_cpu(stranger.pid(), s0, Duration::from_millis(200));
        let end = CpuSample::end(dut.pid()).unwrap();
        let u = begin
            .delta(&end)
            .unwrap_or_else(|e| panic!("{e}: {begin:?} -> {end:?}"));
        // Positive controls: the DUT's figure is the DUT's, and the stranger's work is
        // foreign (it may have been up to a scheduler tick ahead of its clock at s0).
        assert!(u.dut >= Duration::from_millis(200), "{u:?}");
        let stranger_ran = Duration::from_nanos(s1 - s0);
        assert!(
            u.foreign + Duration::from_nanos(MAX_SCHED_TICK_NS) >= stranger_ran,
            "{u:?}, stranger ran {stranger_ran:?}"
        );
    }
}
