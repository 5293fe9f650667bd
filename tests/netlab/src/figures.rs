//! What every measurement's result file shares: one definition of the summary statistics, and
//! where the figures came from (date, commit, machine), so a README's figure can be traced.

use serde_json::{Value, json};

/// Median (the mean of the two middle values for an even count), p95 and max (nearest rank),
/// and min, of samples in any unit. All zero for no samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p95: f64,
    pub max: f64,
    pub min: f64,
}

impl Summary {
    /// The summary of `samples`.
    pub fn of(samples: &[f64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
        if n == 0 {
            return Self {
                median: 0.0,
                p95: 0.0,
                max: 0.0,
                min: 0.0,
            };
        }
        let median = if n % 2 == 1 {
            at(n / 2)
        } else {
            (at(n / 2 - 1) + at(n / 2)) / 2.0
        };
        // Nearest rank: the smallest value with at least 95 % of the samples at or below it.
        let rank = (n * 95).div_ceil(100).clamp(1, n);
        Self {
            median,
            p95: at(rank - 1),
            max: at(n - 1),
            min: at(0),
        }
    }

    /// As JSON, with the samples.
    pub fn json(&self, samples: &[f64]) -> Value {
        json!({"median": self.median, "p95": self.p95, "max": self.max, "min": self.min,
               "samples": samples})
    }
}

/// A shell command's trimmed stdout ("" if it cannot run).
pub fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Where figures come from: date (UTC), commit, whether tracked files differ from it, and the
/// machine (CPUs, kernel, load average at the time).
pub fn provenance() -> Value {
    json!({
        "date": sh("date -u +%FT%TZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain -uno").is_empty(),
        "machine": {"cpus": sh("nproc"), "kernel": sh("uname -r"), "loadavg": sh("cat /proc/loadavg")},
    })
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_p95_max_min() {
        let s = Summary::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.p95, s.max, s.min), (3.0, 5.0, 5.0, 1.0));
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.median, s.p95, s.max), (10.5, 19.0, 20.0));
        assert_eq!(Summary::of(&[]).max, 0.0);
    }
}
