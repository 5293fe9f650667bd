//! The LB-IPAM controller on in-memory configurations, with its state files in a temporary
//! directory.

use super::*;
use crate::controller::Controller;

const CFG: &str = r#"
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: empire-ip-pool}
spec:
  blocks:
  - cidr: 10.0.10.0/24
  - cidr: "2001:db8:dead:beef::/64"
  serviceSelector:
    matchLabels: {org: empire}
---
apiVersion: v1
kind: Service
metadata: {name: deathstar, namespace: default, labels: {org: empire}}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80, protocol: TCP}]
"#;

use crate::testing::{config_state as state, ctx};

fn key(ns: &str, n: &str) -> ServiceName {
    (ns.to_owned(), n.to_owned())
}

#[tokio::test]
async fn allocates_persists_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    assert!(
        !rx.borrow().ready,
        "nothing is published before the first run"
    );
    c.reconcile(&state(CFG), ctx(true)).await.unwrap();
    let got = rx.borrow().ips[&key("default", "deathstar")].clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let pools = rx.borrow().pool_views();
    assert_eq!(pools[0].name, "empire-ip-pool");
    assert_eq!(pools[0].ips_used, "2");
    // A restart gives the same IPs, even with other services added first.
    let more = format!(
        "{CFG}---\napiVersion: v1\nkind: Service\nmetadata: {{name: aaa, namespace: default, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
    );
    let (mut c2, rx2) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    c2.reconcile(&state(&more), ctx(true)).await.unwrap();
    assert_eq!(rx2.borrow().ips[&key("default", "deathstar")], got);
}

/// An incremental run re-adapts only what changed and publishes a map that shares
/// everything else with the previous one.
#[tokio::test]
async fn a_service_edit_changes_only_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    let two = format!(
        "{CFG}---\napiVersion: v1\nkind: Service\nmetadata: {{name: other, namespace: default, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv4], ports: [{{port: 80}}]}}\n"
    );
    c.reconcile(&state(&two), ctx(true)).await.unwrap();
    let before = rx.borrow().ips.clone();
    assert_eq!(before.len(), 2);
    // `other` stops being a LoadBalancer: its addresses go, deathstar's stay.
    let edited = two.replace(
        "name: other, namespace: default, labels: {org: empire}}\nspec: {type: LoadBalancer",
        "name: other, namespace: default, labels: {org: empire}}\nspec: {type: ClusterIP",
    );
    assert_ne!(edited, two);
    c.reconcile(&state(&edited), ctx(false)).await.unwrap();
    let after = rx.borrow().ips.clone();
    let diff: Vec<_> = before.diff(&after).collect();
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert_eq!(
        after.get(&key("default", "deathstar")),
        before.get(&key("default", "deathstar"))
    );
    assert!(!after.contains_key(&key("default", "other")));
}

/// The seeds' numbers: deathstar gets 172.18.255.200 and 2001:db8:dead:beef:: and the
/// pool shows 18446744073709551622 available.
#[tokio::test]
async fn seed_empire_pool_and_deathstar() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab");
    let mut text = String::new();
    for f in ["lb-pool.yaml", "services.yaml"] {
        text.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
        text.push_str("\n---\n");
    }
    let st = tempfile::tempdir().unwrap();
    let (mut c, rx) = LbIpamController::open(st.path(), Metrics::new()).unwrap();
    c.reconcile(&state(&text), ctx(true)).await.unwrap();
    let s = rx.borrow().clone();
    let want: Vec<IpAddr> = vec![
        "172.18.255.200".parse().unwrap(),
        "2001:db8:dead:beef::".parse().unwrap(),
    ];
    assert_eq!(&*s.ips[&key("batuu", "deathstar")], &want[..]);
    let p = &s.pool_views()[0];
    assert_eq!(
        (p.name.as_str(), p.ips_available.as_str()),
        ("empire-ip-pool", "18446744073709551622")
    );
    let svc = s
        .service_views()
        .into_iter()
        .find(|s| s.name == "deathstar")
        .unwrap();
    assert_eq!(svc.condition.type_, types::IPAM_REQUEST_SATISFIED);
    assert_eq!(svc.condition.status, ConditionStatus::True);
}

#[tokio::test]
async fn corrupt_state_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lbipam.json"), b"{\"format\": 12").unwrap();
    let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    assert_eq!(rx.borrow().conditions.len(), 1);
    assert_eq!(rx.borrow().conditions[0].condition.reason, "CorruptState");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("lbipam.json.corrupt-")),
        "{names:?}"
    );
    // It stays reported after runs (until a restart), beside the allocator's own.
    c.reconcile(&state(CFG), ctx(true)).await.unwrap();
    assert!(
        rx.borrow()
            .conditions
            .iter()
            .any(|c| c.condition.reason == "CorruptState")
    );
}

/// An unsatisfied service is a typed condition on that Service.
#[tokio::test]
async fn unsatisfied_services_are_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    let text = CFG.replace("labels: {org: empire}", "labels: {org: rebels}");
    c.reconcile(&state(&text), ctx(true)).await.unwrap();
    let conds = rx.borrow().conditions.clone();
    assert_eq!(conds.len(), 1, "{conds:?}");
    assert_eq!(
        conds[0].object,
        Some(ObjectKey::namespaced(Kind::Service, "default", "deathstar"))
    );
    assert_eq!(conds[0].condition.reason, "no_pool");
    assert!(conds[0].is_problem());
}

/// Allocations live in the journal until compaction: a crash before it (no clean
/// shutdown) loses nothing, and a torn last record is dropped, the rest replayed.
#[tokio::test]
async fn the_journal_carries_allocations_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    c.reconcile(&state(CFG), ctx(true)).await.unwrap();
    let got = rx.borrow().ips[&key("default", "deathstar")].clone();
    // No shutdown: the snapshot on disk is the empty one written at open.
    let snap = std::fs::read(dir.path().join("lbipam.json")).unwrap();
    assert!(
        PersistedState::decode(&snap)
            .unwrap()
            .allocations
            .is_empty(),
        "compaction would hide what this test is about"
    );
    drop(c);
    // A crash in the middle of the next append leaves half a line.
    state::append_durable(
        &dir.path().join("lbipam.journal"),
        b"{\"set\":{\"ip\":\"10.0",
    )
    .unwrap();
    let (mut c2, rx2) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    assert!(
        rx2.borrow().conditions.is_empty(),
        "{:?}",
        rx2.borrow().conditions
    );
    // The other order of services would allocate differently from scratch.
    let more = format!(
        "{CFG}---\napiVersion: v1\nkind: Service\nmetadata: {{name: aaa, namespace: default, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
    );
    c2.reconcile(&state(&more), ctx(true)).await.unwrap();
    assert_eq!(rx2.borrow().ips[&key("default", "deathstar")], got);
}

/// A journal that cannot be written holds back what it would have recorded: nothing is
/// published (no unsaved address reaches BGP or L2), the error is returned for a retry,
/// and once the file can be written the same commit is saved and published.
#[tokio::test]
async fn nothing_unsaved_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
    let journal = dir.path().join("lbipam.journal");
    std::fs::remove_file(&journal).unwrap();
    std::fs::create_dir(&journal).unwrap();
    assert!(c.reconcile(&state(CFG), ctx(true)).await.is_err());
    assert!(rx.borrow().ips.is_empty());
    assert!(!rx.borrow().ready);
    assert!(
        rx.borrow().settled,
        "readers may go ahead without LB-IPAM's addresses"
    );
    std::fs::remove_dir(&journal).unwrap();
    state::write_atomic(&journal, &Journal::header()).unwrap();
    c.reconcile(&state(CFG), ctx(false)).await.unwrap();
    assert_eq!(rx.borrow().ips[&key("default", "deathstar")].len(), 2);
    let j = Journal::decode(&std::fs::read(&journal).unwrap()).unwrap();
    assert!(!j.records.is_empty() && !j.torn);
}
