//! Devices under test: BIRD 2 and our speaker (the `bgpd-dut` binary), started in the DUT
//! namespace with the same roles, plus the /proc readings we report for them.

use std::fs;
use std::path::{Path, PathBuf};

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

    /// utime + stime of the DUT so far, in seconds (`/proc/<pid>/stat` fields 14 and 15).
    pub fn cpu_seconds(&self) -> Result<f64, BenchError> {
        cpu_seconds(self.process.pid())
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

/// utime + stime of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let stat = read_proc(path.clone())?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| -> Result<u64, BenchError> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| BenchError::Proc {
                path: path.clone(),
                detail: "no utime/stime".into(),
            })
    };
    // Fields 14 and 15 overall are 12th and 13th after the command name (index 11, 12).
    let ticks = tick(11)? + tick(12)?;
    Ok(ticks as f64 / clock_ticks())
}

/// Busy CPU time of the whole machine so far (all cores; `/proc/stat` without idle and
/// iowait), in seconds.
pub fn host_busy_seconds() -> Result<f64, BenchError> {
    let path = "/proc/stat".to_string();
    let stat = read_proc(path.clone())?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if ticks.len() < 8 {
        return Err(BenchError::Proc {
            path,
            detail: "no cpu line".into(),
        });
    }
    // user nice system idle iowait irq softirq steal
    let busy: u64 = ticks[..8].iter().sum::<u64>() - ticks[3] - ticks[4];
    Ok(busy as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU readings taken together at the start and the end of a measured interval.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub dut: f64,
    /// This process: the sender and receiver threads.
    pub own: f64,
    pub host: f64,
}

impl CpuSample {
    pub fn take(dut_pid: u32) -> Option<Self> {
        Some(Self {
            dut: cpu_seconds(dut_pid).ok()?,
            own: cpu_seconds(std::process::id()).ok()?,
            host: host_busy_seconds().ok()?,
        })
    }

    /// (DUT CPU seconds, foreign CPU seconds: neither the DUT nor our peers) from `self` to
    /// `end`.
    pub fn delta(&self, end: &CpuSample) -> (f64, f64) {
        let dut = end.dut - self.dut;
        let foreign = (end.host - self.host) - dut - (end.own - self.own);
        (dut, foreign.max(0.0))
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

    #[test]
    fn reads_own_proc() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert!(host_busy_seconds().unwrap() > 0.0);
        let a = CpuSample::take(me).unwrap();
        let (dut, foreign) = a.delta(&CpuSample::take(me).unwrap());
        assert!(dut >= 0.0 && foreign >= 0.0);
    }
}
