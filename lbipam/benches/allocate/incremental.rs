//! One Service added, changed (IPv4 to IPv6: one address freed, one taken) and removed through
//! `Incremental`, at 27,000 and 100,000 Services (`LBIPAM_BENCH_INCR_SIZES=a,b` to change),
//! median and p99 of many, wall and on-CPU; the journal records each commit produces and their
//! encoded size; against what it replaces: a full reconcile plus a full snapshot encode.
//! `LBIPAM_BENCH_JSON=path` also writes every figure, with date, commit and machine, as JSON.

use std::hint::black_box;
use std::time::Instant;

use lbipam::{
    Config, Family, Incremental, IpFamilyPolicy, JournalRecord, LbIpam, PoolSpec, ServiceKey,
    ServiceSpec, service_selector_labels,
};
use serde_json::{Value, json};

use super::{Sel, TENANTS, services_n};

/// Nanoseconds this thread has run on a CPU, exact at the moment of the call (schedstat, used
/// for the 100 ms figures, only advances at scheduler events: too coarse for microseconds).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Commits measured per operation and size.
const ROUNDS: usize = 301;

/// Wall and on-CPU samples of one operation, in microseconds.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Samples {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        let out = f();
        self.cpu.push((thread_cpu_ns() - c) as f64 / 1e3);
        self.wall.push(t.elapsed().as_secs_f64() * 1e6);
        out
    }

    /// (median, p99) of wall and on-CPU.
    fn summary(&mut self) -> Value {
        let q = |v: &mut Vec<f64>, p: f64| {
            v.sort_by(f64::total_cmp);
            let i = ((v.len() - 1) as f64 * p).round() as usize;
            (v[i] * 10.0).round() / 10.0
        };
        json!({
            "n": self.wall.len(),
            "wall_us_median": q(&mut self.wall, 0.5),
            "wall_us_p99": q(&mut self.wall, 0.99),
            "cpu_us_median": q(&mut self.cpu, 0.5),
            "cpu_us_p99": q(&mut self.cpu, 0.99),
        })
    }
}

/// Journal records of one kind of commit: count and encoded bytes, over every round.
#[derive(Default)]
struct Records {
    counts: Vec<usize>,
    bytes: Vec<usize>,
}

impl Records {
    fn note(&mut self, records: &[JournalRecord]) {
        self.counts.push(records.len());
        self.bytes.push(JournalRecord::encode_lines(records).len());
    }

    fn summary(&self) -> Value {
        let max = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
        let min = |v: &[usize]| v.iter().copied().min().unwrap_or(0);
        json!({
            "records_min": min(&self.counts),
            "records_max": max(&self.counts),
            "bytes_min": min(&self.bytes),
            "bytes_max": max(&self.bytes),
        })
    }
}

/// The Service that comes and goes: a tenant's, IPv4, no sharing key (the common case).
fn newcomer(i: usize) -> ServiceSpec {
    let key = ServiceKey::new("bench", format!("new-{i}"));
    let mut s = ServiceSpec {
        key,
        is_load_balancer: true,
        ports: vec![80, 443],
        ..Default::default()
    };
    s.labels
        .insert("tenant".into(), format!("t{}", i % TENANTS));
    s.labels = service_selector_labels(&s.key.namespace, &s.key.name, &s.labels);
    s
}

fn moved_to_v6(mut s: ServiceSpec) -> ServiceSpec {
    s.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
    s.ip_families = vec![Family::V6];
    s
}

fn one_size(cfg: &Config, pools: &[PoolSpec<Sel>], n: usize) -> Value {
    let svcs = services_n(n);
    let mut inc: Incremental<Sel> = Incremental::new(LbIpam::new(), cfg.clone());
    inc.set_pools(pools.to_vec());
    for s in &svcs {
        inc.upsert_service(s.clone());
    }
    let mut initial = Samples::default();
    let c = initial.time(|| inc.commit());
    assert!(c.full.is_some() && c.state_changed);
    let initial_records = inc.take_journal();
    let initial_bytes = JournalRecord::encode_lines(&initial_records).len();

    let (mut add, mut change, mut remove) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut add_j, mut change_j, mut remove_j) =
        (Records::default(), Records::default(), Records::default());
    let mut journal_samples = Samples::default();
    for i in 0..ROUNDS {
        let s = newcomer(i);
        let key = s.key.clone();
        for (what, samples, records) in [
            ("add", &mut add, &mut add_j),
            ("change", &mut change, &mut change_j),
            ("remove", &mut remove, &mut remove_j),
        ] {
            let c = samples.time(|| {
                match what {
                    "add" => inc.upsert_service(s.clone()),
                    "change" => inc.upsert_service(moved_to_v6(s.clone())),
                    _ => inc.remove_service(&key),
                }
                inc.commit()
            });
            // Every one of these must take the incremental path and change exactly one Service.
            assert_eq!(c.full, None, "{what} fell back");
            assert_eq!(c.services, vec![key.clone()], "{what}");
            assert!(c.state_changed);
            let taken = journal_samples.time(|| {
                let r = inc.take_journal();
                let bytes = JournalRecord::encode_lines(&r);
                (r, bytes)
            });
            records.note(&taken.0);
        }
    }
    assert_eq!(inc.outcome().unsatisfied(), 0);

    // What it replaces: the full reconcile of every Service plus the full snapshot encode, as
    // the daemon does for one changed Service today (on a plain allocator in the same state).
    let mut ipam = LbIpam::new();
    drop(ipam.reconcile(cfg, pools, &svcs));
    let mut with_new = svcs.clone();
    with_new.push(newcomer(0));
    let (mut full_reconcile, mut full_encode) = (Samples::default(), Samples::default());
    let mut snapshot_bytes = 0;
    for round in 0..5 {
        let set = if round % 2 == 0 { &with_new } else { &svcs };
        let out = full_reconcile.time(|| ipam.reconcile(cfg, pools, set));
        assert!(out.state_changed);
        let bytes = full_encode.time(|| ipam.snapshot().encode());
        snapshot_bytes = bytes.len();
        black_box(bytes);
    }
    json!({
        "services": n,
        "initial_full_commit": initial.summary(),
        "initial_journal": { "records": initial_records.len(), "bytes": initial_bytes },
        "add": add.summary(),
        "change_v4_to_v6": change.summary(),
        "remove": remove.summary(),
        "take_journal_and_encode": journal_samples.summary(),
        "journal_add": add_j.summary(),
        "journal_change_v4_to_v6": change_j.summary(),
        "journal_remove": remove_j.summary(),
        "full_reconcile": full_reconcile.summary(),
        "full_snapshot_encode": full_encode.summary(),
        "snapshot_bytes": snapshot_bytes,
    })
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    json!({
        "cpu": model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": command("uname", &["-r"]),
        "loadavg_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

/// Prints the figures; writes them to `LBIPAM_BENCH_JSON` if set.
pub(crate) fn figures(cfg: &Config, pools: &[PoolSpec<Sel>]) {
    let sizes: Vec<usize> = std::env::var("LBIPAM_BENCH_INCR_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![27_000, 100_000]);
    let started = command("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let machine = machine();
    let mut rows = Vec::new();
    for n in sizes {
        let row = one_size(cfg, pools, n);
        let us = |op: &str, f: &str| row[op][f].as_f64().unwrap_or(f64::NAN);
        for op in ["add", "change_v4_to_v6", "remove"] {
            println!(
                "lbipam incremental, {n} services, one {op}: median wall {:.0} µs, on-CPU {:.0} µs (p99 {:.0} / {:.0} µs), journal {}-{} records, {}-{} bytes",
                us(op, "wall_us_median"),
                us(op, "cpu_us_median"),
                us(op, "wall_us_p99"),
                us(op, "cpu_us_p99"),
                row[format!("journal_{op}")]["records_min"],
                row[format!("journal_{op}")]["records_max"],
                row[format!("journal_{op}")]["bytes_min"],
                row[format!("journal_{op}")]["bytes_max"],
            );
        }
        println!(
            "lbipam incremental, {n} services: take_journal + encode median {:.0} µs; replaced: full reconcile median {:.1} ms + snapshot encode {:.1} ms ({:.1} MiB)",
            us("take_journal_and_encode", "wall_us_median"),
            us("full_reconcile", "wall_us_median") / 1e3,
            us("full_snapshot_encode", "wall_us_median") / 1e3,
            row["snapshot_bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0),
        );
        rows.push(row);
    }
    if let Some(path) = std::env::var_os("LBIPAM_BENCH_JSON") {
        let dirty = !command("git", &["status", "--porcelain", "--", "."]).is_empty();
        let doc = json!({
            "bench": "lbipam incremental (benches/allocate/incremental.rs)",
            "date": started,
            "commit": command("git", &["rev-parse", "--short=12", "HEAD"]),
            "worktree_dirty": dirty,
            "machine": machine,
            "rounds": ROUNDS,
            "pools": pools.len(),
            "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "sizes": rows,
        });
        let text = serde_json::to_string_pretty(&doc).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
        println!(
            "lbipam incremental figures written to {}",
            path.to_string_lossy()
        );
    }
}
