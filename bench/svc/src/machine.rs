//! What every results file records about where and when it was measured.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Date, commit, machine, kernel, tools and load, recorded with every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// UTC time the run started, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// `git rev-parse HEAD` of the tree the binary was run from (empty outside a checkout).
    pub commit: String,
    /// Whether the tree had uncommitted changes.
    pub dirty: bool,
    /// Host name.
    pub hostname: String,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// MemTotal in MiB.
    pub mem_mib: u64,
    /// `uname -r`.
    pub kernel: String,
    /// `iptables-nft-restore --version` (empty if missing).
    pub iptables: String,
    /// `ipvsadm --version` (empty if missing).
    pub ipvsadm: String,
    /// The command line that produced the file.
    pub command: String,
    /// /proc/loadavg's three averages when the run started (other agents share the cores).
    pub loadavg_start: [f64; 3],
    /// The same when it ended.
    pub loadavg_end: [f64; 3],
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_default()
}

/// /proc/loadavg's 1, 5 and 15 minute averages.
pub fn loadavg() -> [f64; 3] {
    let text = read("/proc/loadavg");
    let mut it = text
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` for `t` (Howard Hinnant's civil-from-days).
pub fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
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
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Meta {
    /// Collects everything but `loadavg_end` (set by [`Meta::finish`]).
    pub fn collect() -> Self {
        let git = |args: &[&str]| {
            // The tree the binary was built from, wherever it is run.
            Command::new("git")
                .arg("-C")
                .arg(env!("CARGO_MANIFEST_DIR"))
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let mem_mib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
            .map_or(0, |k| k / 1024);
        Self {
            date: utc(SystemTime::now()),
            commit: git(&["rev-parse", "HEAD"]).unwrap_or_default(),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_mib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            iptables: first_line("iptables-nft-restore", &["--version"]),
            ipvsadm: first_line("ipvsadm", &["--version"]),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            loadavg_start: loadavg(),
            loadavg_end: [f64::NAN; 3],
        }
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.loadavg_end = loadavg();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "2024-02-29T12:34:56Z"
        );
    }
}
