//! The Cilium YAML from the seeds (copied verbatim into `configs/seeds/`, fragments into
//! `tests/fixtures/`) loads and validates.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use rackd_model::cilium::{AddressFamily, Afi, Safi, YesNo};
use rackd_model::selector::{NilSelector, Selector, ServiceLabels};
use rackd_model::{CheckOptions, Kind, Object, ObjectKey, Snapshot, parse_documents};

/// A seed document: whole objects live in `configs/seeds/` (shipped as example configuration),
/// fragments in `tests/fixtures/`.
fn fixture(name: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{root}/../configs/seeds/{name}"))
        .or_else(|_| std::fs::read_to_string(format!("{root}/tests/fixtures/{name}")))
        .unwrap()
}

fn load_one(name: &str) -> Object {
    let p = parse_documents(name, &fixture(name));
    assert!(p.errors.is_empty(), "{name}: {:#?}", p.errors);
    assert_eq!(p.objects.len(), 1, "{name}");
    (*p.objects.into_iter().next().unwrap().object).clone()
}

#[test]
fn lb_pool_seed() {
    let Object::LoadBalancerIPPool(pool) = load_one("seed-000-lb-pool.yaml") else {
        panic!()
    };
    assert_eq!(pool.metadata.name.as_deref(), Some("empire-ip-pool"));
    assert_eq!(pool.spec.blocks.len(), 2);
    assert!(pool.spec.allow_first_last_ips());
    assert!(!pool.spec.disabled);
    let sel =
        Selector::compile_optional(pool.spec.service_selector.as_ref(), NilSelector::MatchesAll)
            .unwrap();
    let labels = BTreeMap::from([("org".to_owned(), "empire".to_owned())]);
    assert!(sel.matches(&ServiceLabels {
        labels: &labels,
        namespace: "batuu",
        name: "deathstar"
    }));
}

#[test]
fn l2_policy_seed() {
    let Object::L2AnnouncementPolicy(p) = load_one("seed-000-l2-policy.yaml") else {
        panic!()
    };
    assert!(p.spec.external_ips && p.spec.load_balancer_ips);
    assert_eq!(
        p.spec.interfaces.as_deref(),
        Some(&["^eth[0-9]+".to_owned()][..])
    );
    let nodes =
        Selector::compile_optional(p.spec.node_selector.as_ref(), NilSelector::MatchesAll).unwrap();
    let worker = BTreeMap::from([("kubernetes.io/hostname".to_owned(), "w1".to_owned())]);
    let cp = BTreeMap::from([(
        "node-role.kubernetes.io/control-plane".to_owned(),
        String::new(),
    )]);
    assert!(nodes.matches(&worker));
    assert!(!nodes.matches(&cp));
}

#[test]
fn egress_seed() {
    let Object::EgressGatewayPolicy(p) = load_one("seed-000-egress-gateway.yaml") else {
        panic!()
    };
    assert_eq!(p.spec.destination_cidrs, vec!["10.0.4.0/24".to_owned()]);
    assert_eq!(p.spec.egress_gateway.interface.as_deref(), Some("net1"));
}

#[test]
fn service_seed() {
    let Object::Service(s) = load_one("seed-002-service.yaml") else {
        panic!()
    };
    assert_eq!(s.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(s.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
}

/// The seed shows only `.spec` of a ClusterConfig (from `yq '.spec'`); it carries
/// v2alpha1's `peerConfigRef.group/kind`, so wrap it as a v2alpha1 object.
#[test]
fn cluster_config_seed_spec() {
    let spec: String = fixture("seed-000-cluster-config-spec.yaml")
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let peer = "apiVersion: cilium.io/v2alpha1\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: generic\nspec: {}\n";
    let text = format!(
        "{peer}---\napiVersion: cilium.io/v2alpha1\nkind: CiliumBGPClusterConfig\nmetadata:\n  name: control-plane\nspec:\n{spec}"
    );
    let p = parse_documents("cluster.yaml", &text);
    assert!(p.errors.is_empty(), "{:#?}", p.errors);
    let out = Snapshot::build(&[p], &CheckOptions::default());
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let cc = out.snapshot.bgp_cluster_configs().next().unwrap();
    let peer = &cc.spec.bgp_instances[0].peers[0];
    assert_eq!(peer.peer_asn, 65000);
    let r = peer.peer_config_ref.as_ref().unwrap();
    assert_eq!(r.name, "generic");
    // Converted to the stored (v2) shape.
    assert!(r.group.is_none() && r.kind.is_none());
    let pc = out.snapshot.bgp_peer_config("generic").unwrap();
    let fams = pc.spec.families();
    assert_eq!((fams[0].afi, fams[0].safi), (Afi::Ipv6, Safi::Unicast));
    // The same spec as v2 is rejected: group/kind were removed.
    let v2 = text.replace(
        "cilium.io/v2alpha1\nkind: CiliumBGPClusterConfig",
        "cilium.io/v2\nkind: CiliumBGPClusterConfig",
    );
    let p = parse_documents("cluster.yaml", &v2);
    assert_eq!(p.errors.len(), 1);
    let msg = p.errors[0].to_string();
    assert!(msg.contains("peerConfigRef.group"), "{msg}");
}

#[test]
fn all_seeds_in_one_snapshot() {
    let sources: Vec<_> = [
        "seed-000-lb-pool.yaml",
        "seed-000-l2-policy.yaml",
        "seed-000-egress-gateway.yaml",
        "seed-002-service.yaml",
    ]
    .into_iter()
    .map(|n| parse_documents(n, &fixture(n)))
    .collect();
    let out = Snapshot::build(&sources, &CheckOptions::default());
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.snapshot.len(), 4);
    assert!(
        out.snapshot
            .get(&ObjectKey::namespaced(Kind::Service, "default", "svc"))
            .is_some()
    );
    // Unused imports guard: these enums are part of the public API used above.
    let _ = (AddressFamily::Ipv4, YesNo::Yes);
}
