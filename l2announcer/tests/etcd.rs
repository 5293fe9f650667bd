//! The etcd backend against a real etcd (Debian etcd-server 3.4), started per test on free
//! loopback ports and killed by PID.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use l2announcer::LeaseTimings;
use l2announcer::announcer::{AnnounceLog, Recorded, RecordingAnnouncer};
use l2announcer::backend::{BackendEvent, EtcdBackend, EtcdConfig, LeaseBackend};
use l2announcer::fsm::ClaimOutcome;
use l2announcer::node::{NodeConfig, NodeHandle, spawn};
use l2announcer::policy::{DesiredGroup, Iface};
use l2announcer::query::Snapshot;
use l2announcer::testing::EtcdServer;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
}

fn groups(n: u32) -> BTreeMap<IpAddr, DesiredGroup> {
    (0..n)
        .map(|i| {
            let g = DesiredGroup {
                services: BTreeSet::new(),
                interfaces: BTreeSet::from([Iface {
                    name: "eth0".into(),
                    ifindex: 2,
                }]),
            };
            (ip(i), g)
        })
        .collect()
}

struct Cluster {
    etcd: Option<EtcdServer>,
    endpoint: String,
    log: AnnounceLog,
    nodes: BTreeMap<String, NodeHandle>,
}

impl Cluster {
    fn new(fast: bool) -> Self {
        let etcd = EtcdServer::start(fast).unwrap();
        Self {
            endpoint: etcd.endpoint(),
            etcd: Some(etcd),
            log: AnnounceLog::default(),
            nodes: BTreeMap::new(),
        }
    }

    fn add(&mut self, name: &str, timings: LeaseTimings, n: u32) {
        let backend = EtcdBackend::new(EtcdConfig::new(vec![self.endpoint.clone()], name, timings));
        let h = spawn(
            NodeConfig::new(name, timings),
            backend,
            RecordingAnnouncer::new(name, self.log.clone(), true),
        );
        h.set_desired(groups(n));
        self.nodes.insert(name.to_owned(), h);
    }

    /// Starts nodes, waits until each sees all as members, then gives them the groups, so
    /// the start-up order does not decide who gets what.
    async fn start_all(&mut self, names: &[&str], timings: LeaseTimings, n: u32) {
        for name in names {
            self.add(name, timings, 0);
        }
        for _ in 0..400 {
            let snaps = self.snapshots().await;
            if snaps.values().all(|s| s.members.len() == names.len()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for h in self.nodes.values() {
            h.set_desired(groups(n));
        }
    }

    async fn snapshots(&self) -> BTreeMap<String, Snapshot> {
        let mut out = BTreeMap::new();
        for (n, h) in &self.nodes {
            if let Some(s) = h.snapshot().await {
                out.insert(n.clone(), s);
            }
        }
        out
    }

    /// Holders as stored in etcd.
    async fn stored(&self) -> BTreeMap<IpAddr, String> {
        let mut c = Client::connect([self.endpoint.as_str()], None)
            .await
            .unwrap();
        let r = c
            .get("/rackd/l2/groups/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        r.kvs()
            .iter()
            .map(|kv| {
                let k = kv
                    .key_str()
                    .unwrap()
                    .trim_start_matches("/rackd/l2/groups/");
                (k.parse().unwrap(), kv.value_str().unwrap().to_owned())
            })
            .collect()
    }

    /// Waits (generously; this is not a performance assertion) until every group is announced
    /// by exactly one live node and that node is the holder stored in etcd.
    async fn settle(&self, n: u32) -> BTreeMap<IpAddr, String> {
        for _ in 0..600 {
            let snaps = self.snapshots().await;
            let mut announced: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
            for (node, s) in &snaps {
                for a in &s.announcements {
                    announced.entry(a.ip).or_default().push(node.clone());
                }
            }
            if announced.len() == n as usize && announced.values().all(|v| v.len() == 1) {
                let stored = self.stored().await;
                let ok = announced
                    .iter()
                    .all(|(ip, v)| stored.get(ip) == Some(&v[0]));
                if ok && stored.len() == n as usize {
                    return stored;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("did not settle: {:?}", self.stored().await.len());
    }
}

fn by_holder(stored: &BTreeMap<IpAddr, String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for h in stored.values() {
        *m.entry(h.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_claim_100_groups_exactly_once() {
    let mut c = Cluster::new(true);
    c.start_all(&["a", "b", "c"], LeaseTimings::FAST, 100).await;
    let stored = c.settle(100).await;
    assert_eq!(stored.len(), 100);
    // The rendezvous preference spreads groups over the nodes.
    let per = by_holder(&stored);
    assert_eq!(per.len(), 3, "{per:?}");
    assert_eq!(c.log.first_double_owner(&[]), None);
    for (_, h) in std::mem::take(&mut c.nodes) {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_groups_move_each_to_one_survivor() {
    let mut c = Cluster::new(true);
    for n in ["a", "b", "c"] {
        c.add(n, LeaseTimings::FAST, 100);
    }
    let before = c.settle(100).await;
    let victim = by_holder(&before)
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap()
        .0;
    // kill -9: the task and its backend vanish, keepalives stop, entries are left behind.
    c.nodes.remove(&victim).unwrap().abort();
    let after = c.settle(100).await;
    assert!(after.values().all(|h| *h != victim));
    for (ip, h) in &before {
        if *h != victim {
            assert_eq!(
                after.get(ip),
                Some(h),
                "a group that did not need to move moved"
            );
        }
    }
    assert_eq!(c.log.first_double_owner(&[victim.as_str()]), None);
    for (_, h) in std::mem::take(&mut c.nodes) {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_shutdown_hands_over_without_overlap() {
    let mut c = Cluster::new(true);
    for n in ["a", "b", "c"] {
        c.add(n, LeaseTimings::FAST, 60);
    }
    c.settle(60).await;
    let report = c.nodes.remove("b").unwrap().shutdown().await.unwrap();
    assert!(report.revoked);
    let after = c.settle(60).await;
    assert!(after.values().all(|h| h != "b"));
    // Withdraw-then-revoke: at no point did two nodes answer, the leaver included.
    assert_eq!(c.log.first_double_owner(&[]), None);
    for (_, h) in std::mem::take(&mut c.nodes) {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_moves_groups_off_the_node() {
    let mut c = Cluster::new(true);
    for n in ["a", "b"] {
        c.add(n, LeaseTimings::FAST, 40);
    }
    c.settle(40).await;
    c.nodes["a"].link(2, false);
    let after = loop {
        let s = c.settle(40).await;
        if s.values().all(|h| h == "b") {
            break s;
        }
    };
    assert_eq!(after.len(), 40);
    assert_eq!(c.log.first_double_owner(&[]), None);
    for (_, h) in std::mem::take(&mut c.nodes) {
        h.shutdown().await.unwrap();
    }
}

/// Steady state writes only keepalives, one per node per retry period, whatever the number
/// of groups (a count check, not a timing one: a slow machine only sends fewer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_writes_do_not_grow_with_groups() {
    let timings = LeaseTimings {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    };
    for n in [10, 1000] {
        let mut c = Cluster::new(false);
        for name in ["a", "b", "c"] {
            c.add(name, timings, n);
        }
        c.settle(n).await;
        let w0 = c.snapshots().await;
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let w1 = c.snapshots().await;
        let elapsed = start.elapsed();
        let max_keepalives = (elapsed.as_millis() / 200) as u64 + 2;
        for (node, s1) in &w1 {
            let s0 = &w0[node].writes;
            let s1 = &s1.writes;
            assert_eq!(
                s1.txns, s0.txns,
                "{node} wrote claims in steady state ({n} groups)"
            );
            assert_eq!(s1.grants, s0.grants);
            assert_eq!(s1.puts, s0.puts);
            let ka = s1.keepalives - s0.keepalives;
            assert!(
                ka <= max_keepalives,
                "{node}: {ka} keepalives with {n} groups"
            );
        }
        for (_, h) in std::mem::take(&mut c.nodes) {
            h.shutdown().await.unwrap();
        }
    }
}

#[tokio::test]
async fn etcd_minimum_ttl_is_two_seconds_unless_election_timeout_is_lowered() {
    for (fast, want) in [(false, 2), (true, 1)] {
        let etcd = EtcdServer::start(fast).unwrap();
        let mut b = EtcdBackend::new(EtcdConfig::new(
            vec![etcd.endpoint()],
            "n",
            LeaseTimings::FAST,
        ));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        b.start(tx).await.unwrap();
        assert_eq!(b.granted_ttl(), want);
        // Start ends with LeaseAcquired after the listing.
        let mut last = None;
        while let Ok(ev) = rx.try_recv() {
            last = Some(ev);
        }
        assert_eq!(last, Some(BackendEvent::LeaseAcquired));
        b.revoke().await.unwrap();
    }
}

/// Timings are the caller's: a renew deadline too far for the clock (`Instant + Duration`
/// would panic) means the lease is never given up for lack of renewals, and renewals go on.
#[tokio::test]
async fn a_renew_deadline_past_the_clock_does_not_stop_renewals() {
    let etcd = EtcdServer::start(true).unwrap();
    let timings = LeaseTimings {
        renew_deadline: Duration::MAX,
        ..LeaseTimings::FAST
    };
    let mut b = EtcdBackend::new(EtcdConfig::new(vec![etcd.endpoint()], "n", timings));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    b.start(tx).await.unwrap();
    let mut renewed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while renewed < 3 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(BackendEvent::Renewed)) => renewed += 1,
            Ok(Some(BackendEvent::LeaseLost)) => panic!("lease lost"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the backend's tasks ended"),
            Err(_) => panic!("only {renewed} renewal(s) in 10 s"),
        }
    }
    b.revoke().await.unwrap();
}

#[tokio::test]
async fn claims_are_exclusive_and_foreign_keys_are_ignored() {
    let etcd = EtcdServer::start(false).unwrap();
    let mut client = Client::connect([etcd.endpoint()], None).await.unwrap();
    // Malformed keys under the prefix must not disturb anyone.
    client
        .put("/rackd/l2/groups/not-an-ip", "x", None)
        .await
        .unwrap();
    client.put("/rackd/l2/nodes/", "x", None).await.unwrap();
    client.put("/rackd/l2/other", "x", None).await.unwrap();

    let mk = |n: &str| {
        EtcdBackend::new(EtcdConfig::new(
            vec![etcd.endpoint()],
            n,
            LeaseTimings::default(),
        ))
    };
    let (mut a, mut b) = (mk("a"), mk("b"));
    let (ta, mut ra) = tokio::sync::mpsc::unbounded_channel();
    let (tb, _rb) = tokio::sync::mpsc::unbounded_channel();
    a.start(ta).await.unwrap();
    b.start(tb).await.unwrap();
    let ips: Vec<IpAddr> = (0..300).map(ip).collect();
    let wa = a.claim(&ips).await;
    assert!(wa.iter().all(|o| matches!(o, ClaimOutcome::Won { .. })));
    // 300 groups in 3 transactions (127 per request).
    assert_eq!(a.writes().txns, 3);
    assert_eq!(a.writes().keys_created, 300);
    let wb = b.claim(&ips).await;
    assert!(
        wb.iter()
            .all(|o| matches!(o, ClaimOutcome::Held { holder, .. } if holder == "a"))
    );
    // Claiming again is idempotent for the holder.
    assert!(
        a.claim(&ips[..5])
            .await
            .iter()
            .all(|o| matches!(o, ClaimOutcome::Won { .. }))
    );
    // b cannot release a's claims.
    b.release(&ips[..5]).await.unwrap();
    assert_eq!(
        client
            .get(
                "/rackd/l2/groups/",
                Some(GetOptions::new().with_prefix().with_count_only())
            )
            .await
            .unwrap()
            .count(),
        301
    );
    a.release(&ips[..5]).await.unwrap();
    // The release shows up on a's watch as deletions.
    let mut freed = 0;
    while freed < 5 {
        let ev = tokio::time::timeout(Duration::from_secs(10), ra.recv())
            .await
            .unwrap()
            .unwrap();
        if let BackendEvent::Observed {
            owner: l2announcer::fsm::Owner::Free,
            ..
        } = ev
        {
            freed += 1;
        }
    }
    // Revoking a's lease frees the rest at once; b can then take them all.
    a.revoke().await.unwrap();
    let wb = b.claim(&ips).await;
    assert!(wb.iter().all(|o| matches!(o, ClaimOutcome::Won { .. })));
    b.revoke().await.unwrap();
}

/// etcd unreachable: the node stops renewing, withdraws everything once the renew deadline
/// passes (before etcd could hand its IPs to anyone) and stops stamping the datapath guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_fences_the_node() {
    let mut c = Cluster::new(true);
    c.add("a", LeaseTimings::FAST, 20);
    c.settle(20).await;
    assert!(c.log.heartbeats("a") > 0);
    drop(c.etcd.take());
    let mut fenced = false;
    for _ in 0..400 {
        let s = c.nodes["a"].snapshot().await.unwrap();
        if !s.lease_live && s.announcements.is_empty() {
            fenced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fenced);
    let calls = c.log.calls();
    let last_hb = calls
        .iter()
        .rposition(|r| matches!(r, Recorded::Heartbeat { .. }))
        .unwrap();
    let last_withdraw = calls
        .iter()
        .rposition(|r| matches!(r, Recorded::Withdraw { .. }))
        .unwrap();
    assert!(
        last_hb < last_withdraw,
        "heartbeat stamped after the lease was lost"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.log.calls().len(), calls.len(), "activity after fencing");
    for (_, h) in std::mem::take(&mut c.nodes) {
        h.shutdown().await.unwrap();
    }
}

/// The node starts before etcd: it keeps retrying with the desired groups buffered and takes
/// them once etcd is up; a shutdown while waiting ends it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_waits_for_etcd() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let mk = |port: u16, name: &str, log: AnnounceLog| {
        let cfg = EtcdConfig::new(
            vec![format!("http://127.0.0.1:{port}")],
            name,
            LeaseTimings::FAST,
        );
        spawn(
            NodeConfig::new(name, LeaseTimings::FAST),
            EtcdBackend::new(cfg),
            RecordingAnnouncer::new(name, log, true),
        )
    };
    // Shutdown while waiting.
    let h = mk(free(), "gives-up", AnnounceLog::default());
    h.set_desired(groups(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.is_finished());
    let report = h.shutdown().await.unwrap();
    assert_eq!((report.withdrawn, report.revoked), (0, false));

    // etcd comes up late on the port the node points at.
    let port = free();
    let log = AnnounceLog::default();
    let h = mk(port, "early", log.clone());
    h.set_desired(groups(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let etcd = EtcdServer::start_on(true, Some(port)).unwrap();
    let mut c = Cluster {
        endpoint: etcd.endpoint(),
        etcd: Some(etcd),
        log,
        nodes: BTreeMap::from([("early".to_owned(), h)]),
    };
    c.settle(3).await;
    for (_, h) in std::mem::take(&mut c.nodes) {
        h.shutdown().await.unwrap();
    }
}
