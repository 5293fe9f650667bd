//! The scale scenario on the Kubernetes backend, shared by the benchmark
//! (`benches/kube_scale.rs`, 27,000 groups) and its CI smoke test (`tests/kube.rs`, a few
//! hundred): three nodes claim N groups, run in steady state, and survive a kill -9 of the
//! node holding the most; plus the API server's own create throughput as the ceiling.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use l2announcer::LeaseTimings;
use l2announcer::announcer::Recorded;
use l2announcer::backend::WriteStats;
use serde::Serialize;

use super::Lab;

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRun {
    pub groups: u32,
    /// Desired groups given → every group announced by exactly one node (first gratuitous).
    pub startup_s: f64,
    /// Writes from the desired groups to all claimed (all nodes).
    pub startup_writes: WriteStats,
    /// Groups per node after start-up.
    pub split: BTreeMap<String, usize>,
    /// Longest gap between datapath heartbeat stamps of any node during start-up (the owning
    /// task runs claims inline; normally one retry period).
    pub startup_max_heartbeat_gap_s: f64,
    pub steady_window_s: f64,
    pub steady_writes: WriteStats,
    pub steady_writes_per_s: f64,
    /// Cilium: one Lease per Service renewed every renew deadline.
    pub cilium_writes_per_s: f64,
    pub ratio_to_cilium: f64,
    pub victim: String,
    pub victim_groups: usize,
    /// kill -9 → first / last moved group announced by a survivor.
    pub failover_first_s: f64,
    pub failover_last_s: f64,
    /// Survivors' writes from the kill until every moved group was announced.
    pub failover_writes: WriteStats,
    pub double_owner: Option<IpAddr>,
}

fn sub(a: &WriteStats, b: &WriteStats) -> WriteStats {
    WriteStats {
        grants: a.grants.saturating_sub(b.grants),
        keepalives: a.keepalives.saturating_sub(b.keepalives),
        txns: a.txns.saturating_sub(b.txns),
        puts: a.puts.saturating_sub(b.puts),
        revokes: a.revokes.saturating_sub(b.revokes),
        keys_created: a.keys_created.saturating_sub(b.keys_created),
    }
}

fn sum<'a>(it: impl Iterator<Item = &'a WriteStats>) -> WriteStats {
    let mut t = WriteStats::default();
    for w in it {
        t.grants += w.grants;
        t.keepalives += w.keepalives;
        t.txns += w.txns;
        t.puts += w.puts;
        t.revokes += w.revokes;
        t.keys_created += w.keys_created;
    }
    t
}

async fn writes(c: &Lab) -> BTreeMap<String, WriteStats> {
    c.snapshots()
        .await
        .into_iter()
        .map(|(n, s)| (n, s.writes))
        .collect()
}

/// Delta over nodes present at both points (a killed node's counters vanish with it).
fn delta(a: &BTreeMap<String, WriteStats>, b: &BTreeMap<String, WriteStats>) -> WriteStats {
    sum(b
        .iter()
        .filter_map(|(n, w)| a.get(n).map(|w0| sub(w, w0)))
        .collect::<Vec<_>>()
        .iter())
}

/// First gratuitous announcement per IP after `t0`, by nodes not in `except`.
fn first_announced(c: &Lab, t0: Instant, except: &str) -> BTreeMap<IpAddr, Instant> {
    let mut firsts = BTreeMap::new();
    for (t, r) in c.log.timed() {
        if let Recorded::Gratuitous { node, ip } = r
            && t >= t0
            && node != except
        {
            firsts.entry(ip).or_insert(t);
        }
    }
    firsts
}

/// Longest interval between consecutive heartbeat stamps of one node that overlaps
/// [`from`, `to`] (normally the retry period: one renewal each).
fn max_heartbeat_gap(c: &Lab, from: Instant, to: Instant) -> Duration {
    // Every node's interval starts at `from` (a node may not have renewed before it).
    let mut last: BTreeMap<String, Instant> = c.nodes.keys().map(|n| (n.clone(), from)).collect();
    let mut gap = Duration::ZERO;
    for (t, r) in c.log.timed() {
        if let Recorded::Heartbeat { node } = r
            && t >= from
            && let Some(p) = last.insert(node, t)
            && p <= to
        {
            gap = gap.max(t - p);
        }
    }
    gap
}

/// One run: a fresh namespace on `c`'s API server, three nodes, `n` groups.
pub async fn scale_run(
    c: &mut Lab,
    n: u32,
    timings: LeaseTimings,
    window: Duration,
    limit: Duration,
) -> anyhow::Result<ScaleRun> {
    c.fresh_namespace("l2-scale").await?;
    c.start_all(&["a", "b", "c"], timings, 0).await?;
    let w_start = writes(c).await;
    let t0 = Instant::now();
    c.desire(n);
    let held = c.settle(n, limit, false).await?;
    let firsts = first_announced(c, t0, "");
    let startup = firsts.values().max().map_or(Duration::ZERO, |t| *t - t0);
    let settled_at = Instant::now();
    let w_settled = writes(c).await;
    let stored = c.stored().await?;
    if stored.len() != n as usize || held.iter().any(|(ip, h)| stored.get(ip) != Some(h)) {
        bail!("stored claims disagree with the announcements");
    }

    let w0 = writes(c).await;
    let ts = Instant::now();
    tokio::time::sleep(window).await;
    let w1 = writes(c).await;
    let steady_window = ts.elapsed();
    let steady = delta(&w0, &w1);
    // After the window, so the stamp that ends the start-up's longest gap is in the log.
    let gap = max_heartbeat_gap(c, t0, settled_at);

    let mut split: BTreeMap<String, usize> = BTreeMap::new();
    for h in held.values() {
        *split.entry(h.clone()).or_default() += 1;
    }
    let (victim, victim_groups) = split
        .iter()
        .max_by_key(|(_, k)| **k)
        .map(|(v, k)| (v.clone(), *k))
        .context("nobody holds anything")?;
    let moved: BTreeSet<IpAddr> = held
        .iter()
        .filter(|(_, h)| **h == victim)
        .map(|(ip, _)| *ip)
        .collect();
    let before = writes(c).await;
    let tf = Instant::now();
    c.nodes.remove(&victim).context("victim")?.abort();
    c.settle(n, limit, true).await?;
    let after = writes(c).await;
    let fo = first_announced(c, tf, &victim);
    let times: Vec<Duration> = moved
        .iter()
        .filter_map(|ip| fo.get(ip).map(|t| *t - tf))
        .collect();
    if times.len() != moved.len() {
        bail!("{} of {} moved groups announced", times.len(), moved.len());
    }
    let double_owner = c.log.first_double_owner(&[victim.as_str()]);
    c.shutdown_all().await;

    let steady_total = steady.total() as f64;
    let steady_per_s = steady_total / steady_window.as_secs_f64();
    let cilium = f64::from(n) / timings.renew_deadline.as_secs_f64();
    Ok(ScaleRun {
        groups: n,
        startup_s: startup.as_secs_f64(),
        startup_writes: delta(&w_start, &w_settled),
        split,
        startup_max_heartbeat_gap_s: gap.as_secs_f64(),
        steady_window_s: steady_window.as_secs_f64(),
        steady_writes: steady,
        steady_writes_per_s: steady_per_s,
        cilium_writes_per_s: cilium,
        ratio_to_cilium: steady_per_s / cilium,
        victim,
        victim_groups,
        failover_first_s: times
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        failover_last_s: times
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        failover_writes: delta(&before, &after),
        double_owner,
    })
}

/// The harness's ceiling: Leases created per second by a plain loop with `in_flight`
/// requests outstanding per client and `clients` clients (no watch, no logic).
pub async fn create_ceiling(
    c: &mut Lab,
    n: u32,
    clients: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    c.fresh_namespace("l2-ceiling").await?;
    let mut apis = Vec::new();
    for _ in 0..clients.max(1) {
        let kube = c.kube.as_ref().context("no cluster")?;
        apis.push(Api::<Lease>::namespaced(super::client(kube).await?, &c.ns));
    }
    let t0 = Instant::now();
    let per = n / u32::try_from(apis.len()).unwrap_or(1);
    let tasks = apis.into_iter().enumerate().map(|(k, api)| async move {
        let results: Vec<Result<Lease, kube::Error>> = futures::stream::iter(0..per)
            .map(|i| {
                let api = api.clone();
                async move {
                    let l = Lease {
                        metadata: ObjectMeta {
                            name: Some(format!("ceiling-{k}-{i}")),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some("x".into()),
                            ..LeaseSpec::default()
                        }),
                    };
                    api.create(&PostParams::default(), &l).await
                }
            })
            .buffer_unordered(in_flight.max(1))
            .collect()
            .await;
        results.into_iter().filter(Result::is_ok).count()
    });
    let done: usize = futures::future::join_all(tasks).await.into_iter().sum();
    let rate = done as f64 / t0.elapsed().as_secs_f64();
    if done != (per as usize) * clients.max(1) {
        bail!("only {done} creates succeeded");
    }
    Ok(rate)
}
