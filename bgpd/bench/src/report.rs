//! Medians, ratios, the table and the CSV.

use std::fmt::Write as _;

use crate::workload::Workload;

/// One measured run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// `bird`, `bgpd`, `sender-ceiling`, `floor` or `relay`.
    pub dut: &'static str,
    pub run: usize,
    /// First UPDATE byte sent -> last prefix at the receiver (ceiling: last byte at the sink).
    pub convergence_s: f64,
    /// First -> last byte accepted by the sender's socket (bgperf's "testers (s)").
    pub sender_s: f64,
    /// First UPDATE byte sent -> first table prefix at the receiver (not for the ceiling).
    pub first_s: Option<f64>,
    /// DUT utime+stime over the same interval (the relay: its copying thread's CPU time).
    pub dut_cpu_s: Option<f64>,
    /// CPU time of the harness's own peers over the same interval: the sender and the
    /// receiver (the ceiling's sink and the floor's receiver included, the relay's copying
    /// thread not).
    pub peers_cpu_s: Option<f64>,
    /// CPU time used meanwhile by neither the DUT nor our peers (other work on the host,
    /// bgperf2's "max foreign cpu"): results with much of it are not comparable.
    pub foreign_cpu_s: Option<f64>,
    /// DUT VmHWM at convergence.
    pub dut_peak_rss_kib: Option<u64>,
    /// Distinct prefixes at the receiver (ceiling: bytes at the sink).
    pub received: u64,
    /// When the run started and the host's load then.
    pub start: RunStart,
}

/// When a run started (UTC) and the 1-minute load average at that moment: the CSV carries
/// them per row, so each figure can be judged by how busy the shared host was.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStart {
    /// Seconds since the Unix epoch.
    pub unix_s: u64,
    /// First field of `/proc/loadavg`, when readable.
    pub load1: Option<f64>,
}

impl RunStart {
    pub fn now() -> Self {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok());
        Self { unix_s, load1 }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (proleptic Gregorian calendar;
/// Howard Hinnant's days-to-civil algorithm, to avoid a date crate for one column).
pub fn utc(unix_s: u64) -> String {
    let days = i64::try_from(unix_s / 86_400).unwrap_or(0);
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The machine and source tree a report was taken on, written into every CSV row.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// `git rev-parse HEAD` of the source tree, with `-dirty` when `git status --porcelain`
    /// lists anything; `unknown` outside a checkout.
    pub commit: String,
    pub nproc: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu: String,
}

impl Machine {
    /// Read-only look-ups: the repository is the one this crate was built from.
    pub fn detect() -> Self {
        let repo = env!("CARGO_MANIFEST_DIR");
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let commit = match (git(&["rev-parse", "HEAD"]), git(&["status", "--porcelain"])) {
            (Some(h), Some(st)) if !st.is_empty() => format!("{h}-dirty"),
            (Some(h), _) => h,
            (None, _) => "unknown".into(),
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        Self {
            commit,
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel,
            cpu,
        }
    }
}

/// A CSV field: quoted when it holds a comma or a quote.
fn field(s: &str) -> String {
    if s.contains([',', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every run of one invocation.
#[derive(Debug, Clone)]
pub struct Report {
    pub workload: Workload,
    pub table_bytes: usize,
    pub updates: usize,
    pub used_sets: usize,
    pub runs: Vec<RunResult>,
    pub machine: Machine,
    /// Free text for the CSV's `note` column.
    pub note: String,
}

/// Median of one DUT's runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub runs: usize,
    pub convergence_s: f64,
    pub sender_s: f64,
    pub first_s: Option<f64>,
    pub dut_cpu_s: Option<f64>,
    pub peers_cpu_s: Option<f64>,
    pub foreign_cpu_s: Option<f64>,
    pub dut_peak_rss_kib: Option<u64>,
}

/// The CPU a DUT could use and still converge at issue 18's target, 1.25x the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// 1.25x the floor's convergence.
    pub wall_s: f64,
    /// Every CPU for that long.
    pub total_cpu_s: f64,
    /// What the sender and the receiver take (the relay runs' peers: the same bytes in and
    /// out as behind a DUT).
    pub peers_cpu_s: f64,
    /// What moving the bytes through a process takes (the relay's copying thread).
    pub copy_cpu_s: f64,
    /// What is left for decoding, storing, deciding and encoding.
    pub left_cpu_s: f64,
    pub left_ns_per_prefix: f64,
}

/// [`Budget`] from the floor's and the relay's medians; `None` without the CPU readings.
pub fn budget(floor: &Summary, relay: &Summary, cpus: usize, prefixes: u32) -> Option<Budget> {
    let wall_s = 1.25 * floor.convergence_s;
    let total_cpu_s = wall_s * f64::from(u32::try_from(cpus).unwrap_or(u32::MAX));
    let peers_cpu_s = relay.peers_cpu_s?;
    let copy_cpu_s = relay.dut_cpu_s?;
    let left_cpu_s = total_cpu_s - peers_cpu_s - copy_cpu_s;
    Some(Budget {
        wall_s,
        total_cpu_s,
        peers_cpu_s,
        copy_cpu_s,
        left_cpu_s,
        left_ns_per_prefix: left_cpu_s * 1e9 / f64::from(prefixes.max(1)),
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Report {
    pub fn new(workload: Workload, table_bytes: usize, updates: usize, used_sets: usize) -> Self {
        Self {
            workload,
            table_bytes,
            updates,
            used_sets,
            runs: Vec::new(),
            machine: Machine::default(),
            note: String::new(),
        }
    }

    /// Medians for `dut`, if it ran.
    pub fn summary(&self, dut: &str) -> Option<Summary> {
        let runs: Vec<&RunResult> = self.runs.iter().filter(|r| r.dut == dut).collect();
        if runs.is_empty() {
            return None;
        }
        Some(Summary {
            runs: runs.len(),
            convergence_s: median(runs.iter().map(|r| r.convergence_s).collect())?,
            sender_s: median(runs.iter().map(|r| r.sender_s).collect())?,
            first_s: median(runs.iter().filter_map(|r| r.first_s).collect()),
            dut_cpu_s: median(runs.iter().filter_map(|r| r.dut_cpu_s).collect()),
            peers_cpu_s: median(runs.iter().filter_map(|r| r.peers_cpu_s).collect()),
            foreign_cpu_s: median(runs.iter().filter_map(|r| r.foreign_cpu_s).collect()),
            dut_peak_rss_kib: median(
                runs.iter()
                    .filter_map(|r| r.dut_peak_rss_kib.map(|k| k as f64))
                    .collect(),
            )
            .map(|k| k as u64),
        })
    }

    /// Human-readable medians and the ours/BIRD ratios.
    pub fn table(&self) -> String {
        let w = &self.workload;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "workload: {} prefixes, {} attribute sets ({} used), seed {}, {} UPDATEs, {:.1} MB",
            w.prefixes,
            w.attr_sets,
            self.used_sets,
            w.seed,
            self.updates,
            self.table_bytes as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "{:<15} {:>4} {:>14} {:>10} {:>9} {:>11} {:>13} {:>13} {:>10} {:>14}",
            "dut",
            "runs",
            "convergence s",
            "sender s",
            "first s",
            "DUT cpu s",
            "peers cpu s",
            "DUT peak MiB",
            "B/route",
            "foreign cpu s"
        );
        for dut in ["sender-ceiling", "floor", "relay", "bird", "bgpd"] {
            let Some(m) = self.summary(dut) else { continue };
            let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
            let _ = writeln!(
                s,
                "{:<15} {:>4} {:>14.3} {:>10.3} {:>9} {:>11} {:>13} {:>13} {:>10} {:>14}",
                dut,
                m.runs,
                m.convergence_s,
                m.sender_s,
                opt(m.first_s, 3),
                opt(m.dut_cpu_s, 3),
                opt(m.peers_cpu_s, 3),
                opt(m.dut_peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
                opt(
                    m.dut_peak_rss_kib
                        .map(|k| k as f64 * 1024.0 / f64::from(w.prefixes)),
                    0
                ),
                opt(m.foreign_cpu_s, 2),
            );
        }
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        if let (Some(b), Some(o)) = (self.summary("bird"), self.summary("bgpd")) {
            // Issue 18's targets: at least 1.3x faster than BIRD, less CPU, RSS <= 1.2x.
            let _ = writeln!(
                s,
                "ratio bgpd/bird: convergence {}, cpu {}, peak RSS {} (targets: <= 0.77, < 1, <= 1.2)",
                ratio(Some(o.convergence_s), Some(b.convergence_s)),
                ratio(o.dut_cpu_s, b.dut_cpu_s),
                ratio(
                    o.dut_peak_rss_kib.map(|k| k as f64),
                    b.dut_peak_rss_kib.map(|k| k as f64)
                ),
            );
        }
        if let Some(f) = self.summary("floor") {
            for dut in ["bird", "bgpd"] {
                if let Some(d) = self.summary(dut) {
                    let _ = writeln!(
                        s,
                        "ratio {dut}/floor: convergence {}{}",
                        ratio(Some(d.convergence_s), Some(f.convergence_s)),
                        if dut == "bgpd" {
                            " (target: <= 1.25)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        if let (Some(f), Some(r)) = (self.summary("floor"), self.summary("relay")) {
            let _ = writeln!(
                s,
                "ratio relay/floor: convergence {} (the extra hop through a process that only copies)",
                ratio(Some(r.convergence_s), Some(f.convergence_s)),
            );
            if let Some(b) = budget(&f, &r, self.machine.nproc, w.prefixes) {
                let _ = writeln!(
                    s,
                    "at 1.25x the floor ({:.3} s) {} CPUs give {:.3} CPU s; the peers take {:.3} and copying the bytes {:.3}: \
                     {:.3} CPU s ({:.0} ns per prefix) would be left for a speaker's routing work{}",
                    b.wall_s,
                    self.machine.nproc,
                    b.total_cpu_s,
                    b.peers_cpu_s,
                    b.copy_cpu_s,
                    b.left_cpu_s,
                    b.left_ns_per_prefix,
                    self.summary("bgpd").and_then(|o| o.dut_cpu_s).map_or(
                        String::new(),
                        |c| format!(
                            "; bgpd uses {c:.3} CPU s ({:.0} ns per prefix)",
                            c * 1e9 / f64::from(w.prefixes.max(1))
                        )
                    ),
                );
            }
        }
        if let (Some(c), Some(b)) = (self.summary("sender-ceiling"), self.summary("bird")) {
            let _ = writeln!(
                s,
                "sender ceiling is {:.1}x faster than BIRD's convergence{}",
                b.convergence_s / c.convergence_s.max(1e-9),
                if b.convergence_s < 3.0 * c.convergence_s {
                    " -- TOO CLOSE: the sender is being measured"
                } else {
                    ""
                }
            );
        }
        s
    }

    /// One CSV row per run, each with its start time, the load average then, and the
    /// commit and machine (issue 18: figures carry their provenance).
    pub fn csv(&self) -> String {
        let w = &self.workload;
        let m = &self.machine;
        let mut s = String::from(
            "dut,run,prefixes,attr_sets,seed,convergence_s,sender_s,first_prefix_s,dut_cpu_s,foreign_cpu_s,dut_peak_rss_kib,received,started_utc,load1,commit,nproc,kernel,cpu,note,peers_cpu_s\n",
        );
        for r in &self.runs {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.6},{:.6},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.dut,
                r.run,
                w.prefixes,
                w.attr_sets,
                w.seed,
                r.convergence_s,
                r.sender_s,
                r.first_s.map_or(String::new(), |v| format!("{v:.6}")),
                r.dut_cpu_s.map_or(String::new(), |v| format!("{v:.3}")),
                r.foreign_cpu_s.map_or(String::new(), |v| format!("{v:.3}")),
                r.dut_peak_rss_kib.map_or(String::new(), |v| v.to_string()),
                r.received,
                utc(r.start.unix_s),
                r.start.load1.map_or(String::new(), |l| format!("{l:.2}")),
                field(&m.commit),
                m.nproc,
                field(&m.kernel),
                field(&m.cpu),
                field(&self.note),
                r.peers_cpu_s.map_or(String::new(), |v| format!("{v:.3}")),
            );
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_618_096), "2026-12-07T04:34:56Z");
    }

    #[test]
    fn budget_is_what_the_cpus_leave() {
        let summary = |conv: f64, dut: Option<f64>, peers: Option<f64>| Summary {
            runs: 1,
            convergence_s: conv,
            sender_s: conv,
            first_s: None,
            dut_cpu_s: dut,
            peers_cpu_s: peers,
            foreign_cpu_s: None,
            dut_peak_rss_kib: None,
        };
        let floor = summary(0.04, None, Some(0.05));
        let relay = summary(0.04, Some(0.01), Some(0.06));
        let b = budget(&floor, &relay, 2, 1_000_000).unwrap();
        // 1.25 x 0.04 s on 2 CPUs = 0.1 CPU s, minus 0.06 (peers) and 0.01 (copying).
        assert!((b.wall_s - 0.05).abs() < 1e-12, "{b:?}");
        assert!((b.total_cpu_s - 0.1).abs() < 1e-12, "{b:?}");
        assert!((b.left_cpu_s - 0.03).abs() < 1e-12, "{b:?}");
        assert!((b.left_ns_per_prefix - 30.0).abs() < 1e-6, "{b:?}");
        // Without the relay's readings there is no budget to state.
        assert_eq!(budget(&floor, &summary(0.04, None, Some(0.06)), 2, 1), None);
        assert_eq!(budget(&floor, &summary(0.04, Some(0.01), None), 2, 1), None);
    }

    #[test]
    fn csv_fields_quoted() {
        assert_eq!(field("AMD EPYC 7B13"), "AMD EPYC 7B13");
        assert_eq!(field("a,b\"c"), "\"a,b\"\"c\"");
    }
}
