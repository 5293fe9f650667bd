//! Markdown tables computed from results files (`svc-bench table FILE...`), so every figure in
//! the README is regenerated from the committed JSON rather than typed in.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::forward::ForwardReport;
use crate::machine::Meta;
use crate::program::ProgramReport;

/// The provenance line every table starts with.
pub(crate) fn header(m: &Meta, file: &str) -> String {
    format!(
        "`{file}`: {} UTC, commit `{}`{}, {} ({} CPUs, {} MiB), kernel {}, {}; load average \
         {:.2} at start, {:.2} at end. Command: `{}`\n\n",
        m.date,
        m.commit.get(..12).unwrap_or(&m.commit),
        if m.dirty { " (dirty)" } else { "" },
        m.cpu_model,
        m.cpus,
        m.mem_mib,
        m.kernel,
        m.iptables,
        m.loadavg_start[0],
        m.loadavg_end[0],
        m.command
    )
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn secs(x: f64) -> String {
    if x >= 1.0 {
        format!("{x:.2} s")
    } else if x >= 1e-3 {
        format!("{:.1} ms", x * 1e3)
    } else {
        format!("{:.0} µs", x * 1e6)
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("---"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table of a programming report.
pub fn program_table(r: &ProgramReport, file: &str) -> String {
    let mut s = header(&r.meta, file);
    let w = &r.config.workload;
    let _ = writeln!(
        s,
        "{} Services x {} backends ({:?}, externalTrafficPolicy {:?}), {} repetitions, Maglev M = \
         {}. iptables input: {:.1} MB, {} nat rules, {} nat chains; one-change input {:.1} MB.\n",
        w.services,
        w.backends,
        w.shape,
        w.policy,
        r.config.reps,
        r.config.lut_size,
        r.inputs.iptables_full_bytes as f64 / 1e6,
        r.inputs.iptables_full_nat_rules,
        r.inputs.iptables_full_nat_chains,
        r.inputs.iptables_partial_bytes as f64 / 1e6,
    );
    s.push_str(
        "| system | case | median | min | max | n | of which Maglev | iptables-nft / this |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    // Recomputed from the runs, so summaries improve without re-measuring.
    for x in crate::program::summarise(&r.runs) {
        let speedup = match (&x.speedup_basis, x.speedup_vs_iptables) {
            (Some(b), Some(v)) => format!("{v:.1} (vs {b})"),
            _ => "-".into(),
        };
        let timed_out = if x.timed_out > 0 {
            format!(" ({} killed at the limit: lower bound)", x.timed_out)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {}{timed_out} | {} | {} | {} | {} | {speedup} |",
            x.system,
            x.case,
            secs(x.wall_s.median),
            secs(x.wall_s.min),
            secs(x.wall_s.max),
            x.wall_s.n,
            x.compute_s.map_or_else(|| "-".into(), secs),
        );
    }
    for k in &r.skipped {
        let _ = writeln!(
            s,
            "| {} | skipped | {} | | | | | |",
            k.system,
            one_line(&k.reason)
        );
    }
    s
}

/// The table of a forwarding report.
pub fn forward_table(r: &ForwardReport, file: &str) -> String {
    let mut s = header(&r.meta, file);
    let c = &r.config;
    let _ = writeln!(
        s,
        "{} rounds x {} s per test, {} workers (CPUs {:?}), servers on CPUs {:?}, {} Service(s) \
         loaded.\n",
        c.rounds, c.duration_s, c.workers, c.client_cpus, c.server_cpus, c.services_loaded
    );
    s.push_str(
        "| mode | test | ops/s median | min | max | / ceiling | / iptables | p50 µs | p99 µs | \
         busy CPU µs/op | LB µs/op | errors |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for x in &r.summary {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {:.1} | {} | {} |",
            x.mode,
            x.test,
            x.ops_per_s.median,
            x.ops_per_s.min,
            x.ops_per_s.max,
            opt(x.ratio_to_ceiling, 2),
            opt(x.ratio_to_iptables, 2),
            x.p50_us,
            x.p99_us,
            x.busy_us_per_op,
            opt(x.lb_us_per_op, 1),
            x.errors
        );
    }
    for k in &r.skipped {
        let _ = writeln!(
            s,
            "| {} | skipped: {} | | | | | | | | | | |",
            k.system,
            one_line(&k.reason)
        );
    }
    egress_tables(&mut s, r);
    s
}

/// With the egress gateway's modes beside the one-node masquerade: what the second node and
/// the tunnel cost (medians of the same run), and the datapath's counters proving the path.
fn egress_tables(s: &mut String, r: &ForwardReport) {
    let get = |mode: &str, test: &str| r.summary.iter().find(|x| x.mode == mode && x.test == test);
    let tests: Vec<&str> = r
        .summary
        .iter()
        .filter(|x| x.mode == "egress-rackd")
        .map(|x| x.test.as_str())
        .collect();
    if tests.is_empty() {
        return;
    }
    s.push_str(
        "\nThe egress gateway against one node's masquerade (medians of this run; busy CPU \
         µs/op differences):\n\n| test | egress-rackd / masq-rackd | egress-rackd / \
         masq-iptables | egress-none / masq-none | egress-rackd − masq-rackd µs/op | \
         egress-none − masq-none µs/op |\n|---|---|---|---|---|---|\n",
    );
    for t in &tests {
        let ratio = |a: &str, b: &str| match (get(a, t), get(b, t)) {
            (Some(x), Some(y)) if y.ops_per_s.median > 0.0 => {
                format!("{:.2}", x.ops_per_s.median / y.ops_per_s.median)
            }
            _ => "-".into(),
        };
        let diff = |a: &str, b: &str| match (get(a, t), get(b, t)) {
            (Some(x), Some(y)) => format!("{:.1}", x.busy_us_per_op - y.busy_us_per_op),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {t} | {} | {} | {} | {} | {} |",
            ratio("egress-rackd", "masq-rackd"),
            ratio("egress-rackd", "masq-iptables"),
            ratio("egress-none", "masq-none"),
            diff("egress-rackd", "masq-rackd"),
            diff("egress-none", "masq-none"),
        );
    }
    s.push_str(
        "\negress-rackd's datapath counters, summed over the rounds (source node: tunnelled; \
         gateway: SNATed, replies tunnelled back; drops on both):\n\n| test | operations | \
         tunnelled | SNATed | replies tunnelled | egress drops | load balancer drops |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for t in &tests {
        let runs: Vec<_> = r
            .runs
            .iter()
            .filter(|x| x.mode == "egress-rackd" && x.test == *t)
            .collect();
        let mut drops = std::collections::BTreeMap::<String, u64>::new();
        let (mut ops, mut tun, mut snat, mut back, mut edrops) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for x in &runs {
            ops += x.load.ops;
            if let Some(e) = &x.egress {
                tun += e.source.tunnelled;
                snat += e.gateway.snat;
                back += e.gateway.reply_tunnelled;
                for c in [&e.source, &e.gateway] {
                    edrops += c.drop_no_gateway
                        + c.drop_no_egress_ip
                        + c.drop_unsupported
                        + c.drop_nat_failed
                        + c.drop_tunnel_failed;
                }
                for (k, v) in e.source_drops.iter().chain(&e.gateway_drops) {
                    *drops.entry(k.clone()).or_default() += v;
                }
            }
        }
        let lb = if drops.is_empty() {
            "0".to_owned()
        } else {
            drops
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {t} | {ops} | {tun} | {snat} | {back} | {edrops} | {lb} |"
        );
    }
}

/// Reads a results file and renders its table.
pub fn table(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let json = |source| Error::Json {
        path: path.to_owned(),
        source,
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(json)?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match v.get("bench").and_then(|b| b.as_str()) {
        Some("programming") => Ok(program_table(
            &serde_json::from_value(v).map_err(json)?,
            &file,
        )),
        Some("forwarding") => Ok(forward_table(
            &serde_json::from_value(v).map_err(json)?,
            &file,
        )),
        Some("chunk-sizes") => Ok(crate::chunks::table(
            &serde_json::from_value(v).map_err(json)?,
            &file,
        )),
        other => Err(Error::Config(format!(
            "unknown bench {other:?} in {}",
            path.display()
        ))),
    }
}
