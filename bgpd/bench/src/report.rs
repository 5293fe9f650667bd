//! Medians, ratios, the table and the CSV.

use std::fmt::Write as _;

use crate::workload::Workload;

/// One measured run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// `bird`, `bgpd` or `sender-ceiling`.
    pub dut: &'static str,
    pub run: usize,
    /// First UPDATE byte sent -> last prefix at the receiver (ceiling: last byte at the sink).
    pub convergence_s: f64,
    /// First -> last byte accepted by the sender's socket (bgperf's "testers (s)").
    pub sender_s: f64,
    /// DUT utime+stime over the same interval.
    pub dut_cpu_s: Option<f64>,
    /// CPU time used meanwhile by neither the DUT nor our peers (other work on the host,
    /// bgperf2's "max foreign cpu"): results with much of it are not comparable.
    pub foreign_cpu_s: Option<f64>,
    /// DUT VmHWM at convergence.
    pub dut_peak_rss_kib: Option<u64>,
    /// Distinct prefixes at the receiver (ceiling: bytes at the sink).
    pub received: u64,
}

/// Every run of one invocation.
#[derive(Debug, Clone)]
pub struct Report {
    pub workload: Workload,
    pub table_bytes: usize,
    pub updates: usize,
    pub used_sets: usize,
    pub runs: Vec<RunResult>,
}

/// Median of one DUT's runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub runs: usize,
    pub convergence_s: f64,
    pub sender_s: f64,
    pub dut_cpu_s: Option<f64>,
    pub foreign_cpu_s: Option<f64>,
    pub dut_peak_rss_kib: Option<u64>,
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
            dut_cpu_s: median(runs.iter().filter_map(|r| r.dut_cpu_s).collect()),
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
            "{:<15} {:>4} {:>14} {:>10} {:>11} {:>13} {:>10} {:>14}",
            "dut",
            "runs",
            "convergence s",
            "sender s",
            "DUT cpu s",
            "DUT peak MiB",
            "B/route",
            "foreign cpu s"
        );
        for dut in ["sender-ceiling", "bird", "bgpd"] {
            let Some(m) = self.summary(dut) else { continue };
            let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
            let _ = writeln!(
                s,
                "{:<15} {:>4} {:>14.3} {:>10.3} {:>11} {:>13} {:>10} {:>14}",
                dut,
                m.runs,
                m.convergence_s,
                m.sender_s,
                opt(m.dut_cpu_s, 3),
                opt(m.dut_peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
                opt(
                    m.dut_peak_rss_kib
                        .map(|k| k as f64 * 1024.0 / f64::from(w.prefixes)),
                    0
                ),
                opt(m.foreign_cpu_s, 2),
            );
        }
        if let (Some(b), Some(o)) = (self.summary("bird"), self.summary("bgpd")) {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "ratio bgpd/bird: convergence {}, cpu {}, peak RSS {} (target: < 1, -, <= 1.5)",
                ratio(Some(o.convergence_s), Some(b.convergence_s)),
                ratio(o.dut_cpu_s, b.dut_cpu_s),
                ratio(
                    o.dut_peak_rss_kib.map(|k| k as f64),
                    b.dut_peak_rss_kib.map(|k| k as f64)
                ),
            );
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

    /// One CSV row per run.
    pub fn csv(&self) -> String {
        let w = &self.workload;
        let mut s = String::from(
            "dut,run,prefixes,attr_sets,seed,convergence_s,sender_s,dut_cpu_s,foreign_cpu_s,dut_peak_rss_kib,received\n",
        );
        for r in &self.runs {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.6},{:.6},{},{},{},{}",
                r.dut,
                r.run,
                w.prefixes,
                w.attr_sets,
                w.seed,
                r.convergence_s,
                r.sender_s,
                r.dut_cpu_s.map_or(String::new(), |v| format!("{v:.3}")),
                r.foreign_cpu_s.map_or(String::new(), |v| format!("{v:.3}")),
                r.dut_peak_rss_kib.map_or(String::new(), |v| v.to_string()),
                r.received
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
}
