//! Control-plane failover and datastore-load benchmark against a real etcd 3.4.
//!
//! `cargo bench -p l2announcer --bench failover` (env: `L2BENCH_RUNS` runs per fault kind,
//! default 20; `L2BENCH_GROUPS` for the scale part, default 27000; `L2BENCH_DEFAULTS=1` also
//! runs kill -9 with Cilium's 15 s / 5 s / 2 s timings).
//!
//! Measures, per fault kind, T_detect = fault → first gratuitous announcement by a survivor
//! for the victim's groups (first group and last group), median / p95 / max, and checks that
//! no IP was ever announced by two nodes at once. The client-side T_outage needs the eBPF
//! responder and a client in namespaces: that is the end-to-end benchmark, not this one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use l2announcer::LeaseTimings;
use l2announcer::announcer::{AnnounceLog, Recorded, RecordingAnnouncer};
use l2announcer::backend::{EtcdBackend, EtcdConfig, WriteStats};
use l2announcer::node::{NodeConfig, NodeHandle, spawn};
use l2announcer::policy::{DesiredGroup, Iface};
use l2announcer::testing::EtcdServer;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
}

fn groups(n: u32) -> BTreeMap<IpAddr, DesiredGroup> {
    let iface = Iface {
        name: "eth0".into(),
        ifindex: 2,
    };
    (0..n)
        .map(|i| {
            let g = DesiredGroup {
                services: BTreeSet::new(),
                interfaces: BTreeSet::from([iface.clone()]),
            };
            (ip(i), g)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Term,
    LinkDown,
}

struct Cluster {
    etcd: EtcdServer,
    log: AnnounceLog,
    nodes: BTreeMap<String, NodeHandle>,
}

impl Cluster {
    async fn start(fast_etcd: bool, timings: LeaseTimings) -> anyhow::Result<Self> {
        let etcd = EtcdServer::start(fast_etcd)?;
        let log = AnnounceLog::default();
        let mut nodes = BTreeMap::new();
        for name in ["a", "b", "c"] {
            let backend = EtcdBackend::new(EtcdConfig::new(vec![etcd.endpoint()], name, timings));
            let h = spawn(
                NodeConfig::new(name, timings),
                backend,
                RecordingAnnouncer::new(name, log.clone(), true),
            );
            nodes.insert(name.to_owned(), h);
        }
        let c = Self { etcd, log, nodes };
        // Everyone sees everyone before groups appear, so the start-up order does not matter.
        for _ in 0..400 {
            let mut ok = true;
            for h in c.nodes.values() {
                ok &= h.snapshot().await.is_some_and(|s| s.members.len() == 3);
            }
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(c)
    }

    fn desire(&self, n: u32) {
        for h in self.nodes.values() {
            h.set_desired(groups(n));
        }
    }

    /// Holder per group once every group is announced by exactly one node.
    async fn settle(&self, n: u32, limit: Duration) -> anyhow::Result<BTreeMap<IpAddr, String>> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let mut held: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
            for (name, h) in &self.nodes {
                if let Some(s) = h.snapshot().await {
                    for a in s.announcements {
                        held.entry(a.ip).or_default().push(name.clone());
                    }
                }
            }
            if held.len() == n as usize && held.values().all(|v| v.len() == 1) {
                return Ok(held
                    .into_iter()
                    .map(|(k, mut v)| (k, v.remove(0)))
                    .collect());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("cluster did not settle within {limit:?}")
    }

    async fn writes(&self) -> BTreeMap<String, WriteStats> {
        let mut out = BTreeMap::new();
        for (n, h) in &self.nodes {
            if let Some(s) = h.snapshot().await {
                out.insert(n.clone(), s.writes);
            }
        }
        out
    }

    async fn stop(mut self) {
        for (_, h) in std::mem::take(&mut self.nodes) {
            h.shutdown().await;
        }
        drop(self.etcd);
    }
}

fn total(w: &BTreeMap<String, WriteStats>) -> u64 {
    w.values().map(WriteStats::total).sum()
}

fn delta(a: &BTreeMap<String, WriteStats>, b: &BTreeMap<String, WriteStats>) -> u64 {
    // Only nodes present in both (a killed node's counters vanish with it).
    b.iter()
        .filter_map(|(n, w)| a.get(n).map(|w0| w.total() - w0.total()))
        .sum()
}

struct Run {
    first: Duration,
    last: Duration,
}

async fn one_failover(
    fault: Fault,
    timings: LeaseTimings,
    fast_etcd: bool,
    n: u32,
) -> anyhow::Result<Run> {
    let mut c = Cluster::start(fast_etcd, timings).await?;
    c.desire(n);
    let held = c.settle(n, Duration::from_secs(60)).await?;
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for h in held.values() {
        *per.entry(h.clone()).or_default() += 1;
    }
    let (victim, _) = per
        .into_iter()
        .max_by_key(|(_, k)| *k)
        .context("nobody holds anything")?;
    let moved: BTreeSet<IpAddr> = held
        .iter()
        .filter(|(_, h)| **h == victim)
        .map(|(ip, _)| *ip)
        .collect();
    let t0 = Instant::now();
    match fault {
        Fault::Kill => c.nodes.remove(&victim).context("victim")?.abort(),
        Fault::Term => {
            let h = c.nodes.remove(&victim).context("victim")?;
            tokio::spawn(h.shutdown());
        }
        Fault::LinkDown => c.nodes[&victim].link(2, false),
    }
    // Wait for every moved group to be announced by a survivor.
    let limit = timings.lease_duration * 3 + Duration::from_secs(10);
    let mut firsts: BTreeMap<IpAddr, Instant> = BTreeMap::new();
    while firsts.len() < moved.len() {
        if t0.elapsed() > limit {
            bail!(
                "{fault:?}: only {} of {} groups moved",
                firsts.len(),
                moved.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (t, r) in c.log.timed() {
            if let Recorded::Gratuitous { node, ip } = r
                && t >= t0
                && node != victim
                && moved.contains(&ip)
            {
                firsts.entry(ip).or_insert(t);
            }
        }
    }
    let ignore: Vec<&str> = if fault == Fault::Kill {
        vec![victim.as_str()]
    } else {
        vec![]
    };
    if let Some(ip) = c.log.first_double_owner(&ignore) {
        bail!("{fault:?}: two nodes answered for {ip}");
    }
    let first = firsts.values().min().map_or(Duration::ZERO, |t| *t - t0);
    let last = firsts.values().max().map_or(Duration::ZERO, |t| *t - t0);
    c.stop().await;
    Ok(Run { first, last })
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let pick = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i].as_secs_f64() * 1000.0
    };
    format!(
        "median {:7.0} ms  p95 {:7.0} ms  max {:7.0} ms",
        pick(0.5),
        pick(0.95),
        pick(1.0)
    )
}

async fn failover_report(
    label: &str,
    fault: Fault,
    timings: LeaseTimings,
    fast_etcd: bool,
    runs: usize,
) -> anyhow::Result<()> {
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    for _ in 0..runs {
        let r = one_failover(fault, timings, fast_etcd, 30).await?;
        firsts.push(r.first);
        lasts.push(r.last);
    }
    println!("{label} ({runs} runs, 30 groups over 3 nodes, no duplicate owner seen)");
    println!("  T_detect first group: {}", stats(firsts));
    println!("  T_detect last group:  {}", stats(lasts));
    Ok(())
}

async fn scale_report(n: u32, timings: LeaseTimings, label: &str) -> anyhow::Result<()> {
    let mut c = Cluster::start(true, timings).await?;
    let w_start = c.writes().await;
    let t0 = Instant::now();
    c.desire(n);
    let held = c.settle(n, Duration::from_secs(600)).await?;
    let converge = t0.elapsed();
    let w_settled = c.writes().await;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let w_steady = c.writes().await;
    let steady = delta(&w_settled, &w_steady) as f64 / window.as_secs_f64();

    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for h in held.values() {
        *per.entry(h.clone()).or_default() += 1;
    }
    let victim = per
        .iter()
        .max_by_key(|(_, k)| **k)
        .map(|(v, _)| v.clone())
        .context("nobody holds anything")?;
    let moved = per[&victim];
    let before = c.writes().await;
    let tf = Instant::now();
    c.nodes.remove(&victim).context("victim")?.abort();
    c.settle(n, Duration::from_secs(600)).await?;
    let failover = tf.elapsed();
    let after = c.writes().await;
    let fo_writes = delta(&before, &after);
    println!("{label}: {n} groups over 3 nodes, timings {timings:?}");
    println!(
        "  start-up: converged in {:.1} s with {} writes ({:?} per node)",
        converge.as_secs_f64(),
        total(&w_settled) - total(&w_start),
        per
    );
    println!(
        "  steady state: {steady:.1} writes/s over {} s (Cilium: one Lease per service, {:.0} writes/s at a {:?} renew deadline)",
        window.as_secs(),
        f64::from(n) / timings.renew_deadline.as_secs_f64(),
        timings.renew_deadline
    );
    println!(
        "  kill -9 of {victim} ({moved} groups): all re-announced after {:.2} s, {fo_writes} writes ({:.0} writes/s over the failover)",
        failover.as_secs_f64(),
        fo_writes as f64 / failover.as_secs_f64()
    );
    c.stop().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("L2BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let n: u32 = std::env::var("L2BENCH_GROUPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(27_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let fast = LeaseTimings::FAST;
        if runs > 0 {
            let kill = "kill -9, FAST 1s/500ms/200ms";
            failover_report(kill, Fault::Kill, fast, true, runs).await?;
            failover_report("SIGTERM, FAST", Fault::Term, fast, true, runs).await?;
            failover_report("link down, FAST", Fault::LinkDown, fast, true, runs).await?;
        }
        if std::env::var("L2BENCH_DEFAULTS").is_ok_and(|v| v == "1") {
            let d = LeaseTimings::default();
            failover_report(
                "kill -9, Cilium defaults 15s/5s/2s",
                Fault::Kill,
                d,
                false,
                3,
            )
            .await?;
        }
        if n > 0 {
            scale_report(n, fast, "scale, FAST").await?;
            scale_report(n, LeaseTimings::default(), "scale, Cilium defaults").await?;
        }
        anyhow::Ok(())
    })
}
