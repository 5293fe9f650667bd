//! The Kubernetes backend against a real kube-apiserver and etcd (kubelab, built from the
//! Kubernetes Go modules by `scripts/k8s-build.sh`), one control plane and a fresh namespace
//! per test, stopped by PID when the test ends.
#![allow(clippy::unwrap_used)]

mod kubecommon;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kubecommon::{Lab, by_holder, ip};
use l2announcer::LeaseTimings;
use l2announcer::announcer::Recorded;
use l2announcer::backend::{BackendEvent, LeaseBackend};
use l2announcer::fsm::{ClaimOutcome, Owner};
use tokio::sync::mpsc;

const SETTLE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_claim_100_groups_exactly_once() {
    let mut c = Lab::new("l2-three").await.unwrap();
    c.start_all(&["a", "b", "c"], LeaseTimings::FAST, 100)
        .await
        .unwrap();
    let held = c.settle(100, SETTLE, true).await.unwrap();
    // Positive control: every group has a holder, stored and announced.
    assert_eq!(held.len(), 100);
    assert_eq!(c.stored().await.unwrap().len(), 100);
    // The rendezvous preference spreads groups over the nodes.
    let per = by_holder(&held);
    assert_eq!(per.len(), 3, "{per:?}");
    assert_eq!(c.log.first_double_owner(&[]), None);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_groups_move_each_to_one_survivor() {
    let mut c = Lab::new("l2-crash").await.unwrap();
    c.start_all(&["a", "b", "c"], LeaseTimings::FAST, 100)
        .await
        .unwrap();
    let before = c.settle(100, SETTLE, true).await.unwrap();
    let victim = by_holder(&before)
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap()
        .0;
    // kill -9: the task and its backend vanish, renewals stop, entries are left behind; the
    // node Lease stays until it has not changed for its duration in the survivors' eyes.
    c.nodes.remove(&victim).unwrap().abort();
    let after = c.settle(100, SETTLE, true).await.unwrap();
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
    c.stop().await;
}

/// SIGTERM: withdraw, then delete the node Lease; survivors take over as soon as their
/// watch shows the deletion, not after a lease duration (15 s here, Cilium's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_shutdown_hands_over_fast_without_overlap() {
    let timings = LeaseTimings::default();
    let mut c = Lab::new("l2-term").await.unwrap();
    c.start_all(&["a", "b", "c"], timings, 60).await.unwrap();
    c.settle(60, SETTLE, true).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let report = c.nodes.remove("b").unwrap().shutdown().await.unwrap();
    assert!(report.revoked);
    let after = c.settle(60, SETTLE, true).await.unwrap();
    let took = t0.elapsed();
    assert!(after.values().all(|h| h != "b"));
    assert!(
        took < Duration::from_secs(5),
        "handover took {took:?}: it waited for expiry"
    );
    // Withdraw-then-delete: at no point did two nodes answer, the leaver included.
    assert_eq!(c.log.first_double_owner(&[]), None);
    assert!(!c.node_leases().await.unwrap().contains_key("b"));
    c.stop().await;
}

/// Steady state writes only renewals, one per node per retry period, whatever the number of
/// groups (a count check, not a timing one: a slow machine only sends fewer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_writes_do_not_grow_with_groups() {
    let timings = LeaseTimings {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    };
    let mut c = Lab::new("l2-steady").await.unwrap();
    for n in [10, 1000] {
        c.fresh_namespace("l2-steady").await.unwrap();
        c.start_all(&["a", "b", "c"], timings, n).await.unwrap();
        c.settle(n, SETTLE, true).await.unwrap();
        let w0 = c.snapshots().await;
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let w1 = c.snapshots().await;
        let elapsed = start.elapsed();
        let max_renewals = (elapsed.as_millis() / 200) as u64 + 2;
        for (node, s1) in &w1 {
            let s0 = &w0[node].writes;
            let s1 = &s1.writes;
            assert_eq!(
                s1.txns, s0.txns,
                "{node} wrote claims in steady state ({n} groups)"
            );
            assert_eq!(s1.grants, s0.grants);
            assert_eq!(s1.puts, s0.puts);
            assert_eq!(s1.revokes, s0.revokes);
            let r = s1.keepalives - s0.keepalives;
            assert!(r <= max_renewals, "{node}: {r} renewals with {n} groups");
            assert!(r >= 2, "{node}: only {r} renewals in {elapsed:?}");
        }
        c.shutdown_all().await;
    }
    c.stop().await;
}

/// The API server goes away: the node stops renewing, withdraws everything once the renew
/// deadline passes (before anyone could take over) and stops stamping the datapath guard;
/// when it is back, the node re-acquires its Lease (a new epoch) and announces again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_api_server_fences_the_node_and_it_recovers() {
    let mut c = Lab::new("l2-fence").await.unwrap();
    c.add("a", LeaseTimings::FAST, 20).await.unwrap();
    c.settle(20, SETTLE, true).await.unwrap();
    let epoch0 = c.node_leases().await.unwrap()["a"].1;
    // Renewals stamp the datapath guard (the first one a retry period after start).
    for _ in 0..200 {
        if c.log.heartbeats("a") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(c.log.heartbeats("a") > 0);
    let mut kube = c.kube.take().unwrap();
    let mut kube = tokio::task::spawn_blocking(move || {
        kube.kill_apiserver().unwrap();
        kube
    })
    .await
    .unwrap();
    let mut fenced = false;
    for _ in 0..400 {
        let s = c.nodes["a"].snapshot().await.unwrap();
        if !s.lease_live && s.announcements.is_empty() {
            fenced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fenced, "the node kept announcing without its API server");
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

    let kube = tokio::task::spawn_blocking(move || {
        kube.start_apiserver().unwrap();
        kube
    })
    .await
    .unwrap();
    c.kube = Some(kube);
    let held = c.settle(20, SETTLE, true).await.unwrap();
    assert!(held.values().all(|h| h == "a"));
    let epoch1 = c.node_leases().await.unwrap()["a"].1;
    assert!(epoch1 > epoch0, "re-acquiring did not start a new epoch");
    c.stop().await;
}

fn foreign(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Lease {
    let map = |kv: &[(&str, &str)]| {
        Some(
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("intruder".into()),
            lease_duration_seconds: Some(3600),
            ..LeaseSpec::default()
        }),
    }
}

async fn next_free(rx: &mut mpsc::UnboundedReceiver<BackendEvent>) -> IpAddr {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let BackendEvent::Observed {
            ip,
            owner: Owner::Free,
            ..
        } = ev
        {
            return ip;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_exclusive_and_foreign_objects_are_ignored() {
    let c = Lab::new("l2-claims").await.unwrap();
    let api: Api<Lease> = Api::namespaced(c.client.clone(), &c.ns);
    // Foreign and malformed Leases in the namespace must not disturb anyone: no label, a
    // node Lease whose holder does not match its name, a claim without its annotations (at
    // the name of 10.0.0.250), a claim name that is no IP.
    let pp = PostParams::default();
    for l in [
        foreign("rackd-l2-10-0-0-200", &[], &[]),
        foreign("rackd-l2-node-ghost", &[("rackd.io/l2", "node")], &[]),
        foreign("rackd-l2-10-0-0-250", &[("rackd.io/l2", "claim")], &[]),
        foreign(
            "rackd-l2-nonsense",
            &[("rackd.io/l2", "claim")],
            &[("rackd.io/l2-ip", "10.0.0.1")],
        ),
        foreign("kube-scheduler", &[("rackd.io/l2", "other")], &[]),
    ] {
        api.create(&pp, &l).await.unwrap();
    }
    let timings = LeaseTimings::FAST;
    let (mut a, mut b) = (
        c.backend("a", timings).await.unwrap(),
        c.backend("b", timings).await.unwrap(),
    );
    let (ta, mut ra) = mpsc::unbounded_channel();
    let (tb, mut rb) = mpsc::unbounded_channel();
    a.start(ta).await.unwrap();
    b.start(tb).await.unwrap();
    // Only real members, and nothing observed from the foreign objects.
    let mut evs = Vec::new();
    while let Ok(ev) = rb.try_recv() {
        evs.push(ev);
    }
    assert!(
        evs.iter()
            .all(|e| !matches!(e, BackendEvent::Observed { .. })),
        "{evs:?}"
    );
    let ips: Vec<IpAddr> = (0..300).map(ip).collect();
    let wa = a.claim(&ips).await;
    // Everything but the foreign object's name (no label: not ours to replace).
    let only_200_failed = |w: &[ClaimOutcome]| {
        w.iter().enumerate().all(|(i, o)| match o {
            ClaimOutcome::Failed => i == 200,
            _ => i != 200,
        })
    };
    assert!(only_200_failed(&wa), "{wa:?}");
    assert!(wa.iter().all(|o| !matches!(o, ClaimOutcome::Held { .. })));
    // One write per group (no batched writes in the Kubernetes API): 300 creates (two
    // refused), plus one takeover of the malformed object at 10.0.0.250's name, which
    // carries our label.
    assert_eq!(a.writes().keys_created, 299);
    assert_eq!(a.writes().txns, 301, "{:?}", a.writes());
    // The unlabelled object at 10.0.0.200's name was not touched.
    let l200 = api.get("rackd-l2-10-0-0-200").await.unwrap();
    assert_eq!(
        l200.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("intruder")
    );
    let wb = b.claim(&ips).await;
    assert!(
        wb.iter().enumerate().all(|(i, o)| match o {
            ClaimOutcome::Held { holder, .. } => holder == "a",
            // The foreign object's name: neither can have it.
            ClaimOutcome::Failed => i == 200,
            ClaimOutcome::Won { .. } => false,
        }),
        "{wb:?}"
    );
    let b_writes = b.writes();
    // Claiming again is idempotent for the holder and costs nothing once watched.
    let again = a.claim(&ips[..5]).await;
    assert!(again.iter().all(|o| matches!(o, ClaimOutcome::Won { .. })));
    // b cannot release a's claims.
    b.release(&ips[..5]).await.unwrap();
    assert_eq!(b.writes().txns, b_writes.txns);
    assert_eq!(c.stored().await.unwrap().len(), 299);
    a.release(&ips[..5]).await.unwrap();
    // Both watches show the releases as deletions.
    for rx in [&mut ra, &mut rb] {
        let mut freed = std::collections::BTreeSet::new();
        while freed.len() < 5 {
            freed.insert(next_free(rx).await);
        }
        assert_eq!(freed, ips[..5].iter().copied().collect());
    }
    // a crashes (renewals stop): b sees its claims freed after the lease duration and takes
    // them over, exactly once each; a's epoch is dead.
    a.stop_keepalive();
    let t0 = tokio::time::Instant::now();
    let first = next_free(&mut rb).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "freed after {waited:?}: before a's lease could expire"
    );
    assert!(ips.contains(&first));
    let wb = b.claim(&ips).await;
    let won = wb
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Won { .. }))
        .count();
    assert_eq!(won, 299, "{wb:?}");
    let stored = c.stored().await.unwrap();
    assert_eq!(
        stored.values().filter(|h| *h == "b").count(),
        299,
        "{stored:?}"
    );
    // a restarted (same name): a new epoch, and b's claims are untouched by it.
    let (e0, _) = a.epoch().unwrap();
    drop(a);
    let mut a2 = c.backend("a", timings).await.unwrap();
    let (ta2, _ra2) = mpsc::unbounded_channel();
    a2.start(ta2).await.unwrap();
    let (e1, t1) = a2.epoch().unwrap();
    assert_eq!(e0, e1, "same node Lease object");
    assert!(t1 >= 1);
    assert!(
        a2.claim(&ips[5..10])
            .await
            .iter()
            .all(|o| matches!(o, ClaimOutcome::Held { holder, .. } if holder == "b"))
    );
    // Revoking b's Lease frees its groups at once: a2 takes them without waiting.
    b.revoke().await.unwrap();
    let mut tries = 0;
    let won = loop {
        let w = a2.claim(&ips[5..10]).await;
        if w.iter().all(|o| matches!(o, ClaimOutcome::Won { .. })) || tries > 40 {
            break w;
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        won.iter().all(|o| matches!(o, ClaimOutcome::Won { .. })),
        "{won:?}"
    );
    assert!(tries < 20, "took {tries} rounds after the revoke");
    a2.revoke().await.unwrap();
    c.stop().await;
}

/// The benchmark's scenario at CI size (`cargo bench -p l2announcer --bench kube_scale` runs
/// it at 27,000 groups): everything claimed once, steady-state writes are renewals only,
/// kill -9 moves the victim's groups each to one survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_smoke() {
    let mut c = Lab::new("l2-smoke").await.unwrap();
    // Roomy timings: this runs beside other API servers on a small CI machine, and a node
    // that misses its renew deadline correctly fences and re-claims, which is not what this
    // test counts.
    let timings = LeaseTimings {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    };
    let r = kubecommon::scale::scale_run(&mut c, 600, timings, Duration::from_secs(2), SETTLE)
        .await
        .unwrap();
    assert_eq!(r.split.values().sum::<usize>(), 600, "{r:?}");
    assert_eq!(r.split.len(), 3, "{r:?}");
    // Every group created once (a refused create is no key).
    assert!(r.startup_writes.keys_created >= 600, "{r:?}");
    assert!(r.startup_writes.keys_created <= 600 + 10, "{r:?}");
    assert_eq!(r.steady_writes.txns, 0, "{r:?}");
    assert_eq!(r.steady_writes.grants, 0, "{r:?}");
    assert!(r.steady_writes.keepalives > 0, "{r:?}");
    assert_eq!(
        r.failover_writes.keys_created, r.victim_groups as u64,
        "{r:?}"
    );
    assert_eq!(r.double_owner, None);
    let ceiling = kubecommon::scale::create_ceiling(&mut c, 200, 1, 16)
        .await
        .unwrap();
    assert!(ceiling > 0.0);
    c.stop().await;
}
