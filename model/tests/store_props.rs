//! Property: the incremental [`Store`], fed each file's changes as a source would, always
//! holds what the whole-input [`Snapshot::merge`] computes from every file over the previous
//! result: the same objects (with their origins) and the same errors. The documents mix
//! every rule of the merge: valid, changed and invalid objects, broken YAML, misspelt kinds,
//! unnamed documents, duplicates within and across files, BGP references to PeerConfigs and
//! Secrets that come and go, unreadable and deleted files, Pods and EndpointSlices that move
//! (so the snapshot's indexes, kept object by object, are checked against a rebuild).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rackd_model::{
    CheckOptions, DocCache, FileSource, ParsedSource, Snapshot, SourceChange, SourceContent,
    SourceUpdate, Store, parse_documents, parse_documents_cached,
};

fn doc(i: u8) -> String {
    let pool = |name: &str, third: u32| {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: {name}\nspec:\n  blocks:\n  - cidr: 10.0.{third}.0/24\n"
        )
    };
    let peer = |name: &str, secret: Option<&str>| {
        let auth = secret
            .map(|s| format!("  authSecretRef: {s}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: {name}\nspec:\n  ebgpMultihop: 1\n{auth}"
        )
    };
    let cluster = |peer_ref: &str| {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata:\n  name: cc\nspec:\n  bgpInstances:\n  - name: i\n    localASN: 65001\n    peers:\n    - name: tor\n      peerAddress: 10.0.0.1\n      peerASN: 65000\n      peerConfigRef:\n        name: {peer_ref}\n"
        )
    };
    let secret = |key: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s0\n  namespace: kube-system\nstringData:\n  {key}: s3cret\n"
        )
    };
    let pod = |name: &str, node: Option<&str>| {
        let spec = node
            .map(|n| format!("spec: {{nodeName: {n}}}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\n{spec}status: {{podIP: 10.244.0.9}}\n"
        )
    };
    // An EndpointSlice: its Service, then one endpoint per (targetRef Pod, nodeName).
    let slice = |name: &str, svc: &str, eps: &[(&str, Option<&str>)]| {
        let eps: String = eps
            .iter()
            .map(|(pod, node)| {
                let node = node
                    .map(|n| format!("  nodeName: {n}\n"))
                    .unwrap_or_default();
                let target = match pod.split_once('/') {
                    Some((ns, p)) => format!("{{kind: Pod, namespace: {ns}, name: {p}}}"),
                    None => format!("{{kind: Pod, name: {pod}}}"),
                };
                format!("- addresses: [10.244.0.9]\n  targetRef: {target}\n{node}")
            })
            .collect();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nendpoints:\n{eps}"
        )
    };
    match i % 30 {
        0 => pool("p0", 1),
        1 => pool("p0", 2),
        2 => pool("p0", 999),
        3 => pool("p1", 1),
        4 => pool("p1", 3),
        5 => pool("p2", 4),
        6 => "kind: [\n".into(),
        7 => "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPol\nmetadata:\n  name: p1\nspec: {}\n".into(),
        8 => "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {}\nspec: {}\n".into(),
        9 => peer("pc0", None),
        10 => peer("pc0", Some("s0")),
        11 => peer("pc1", None),
        12 => peer("pc1", Some("s0")),
        13 => cluster("pc0"),
        14 => cluster("pc1"),
        15 => secret("password"),
        16 => secret("other"),
        17 => "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n".into(),
        18 => "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 8080}]}\n".into(),
        19 => "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: Nope}\n".into(),
        // Pods coming, going and moving between nodes; slices naming them (with or without a
        // node of their own), moving between Services, one Pod named twice.
        20 => pod("p0", Some("n1")),
        21 => pod("p0", Some("n2")),
        22 => pod("p0", None),
        23 => pod("p1", Some("n1")),
        24 => slice("s0", "web", &[("p0", None), ("p1", None)]),
        25 => slice("s0", "web", &[("p0", Some("n1")), ("p1", None)]),
        26 => slice("s0", "api", &[("other/p1", None), ("p0", None), ("p0", None)]),
        27 => slice("s1", "web", &[("p0", None)]),
        28 => slice("s1", "web", &[("p1", Some("n2"))]),
        _ => "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, namespace: shop}\naddressType: IPv4\nendpoints: [{addresses: [10.244.0.9], targetRef: {kind: Pod, name: p1}}]\n".into(),
    }
}

#[derive(Debug, Clone)]
enum File {
    Missing,
    Unreadable,
    Docs(Vec<u8>),
}

fn file() -> impl Strategy<Value = File> {
    prop_oneof![
        1 => Just(File::Missing),
        1 => Just(File::Unreadable),
        8 => proptest::collection::vec(any::<u8>(), 0..5).prop_map(File::Docs),
    ]
}

fn text(docs: &[u8]) -> String {
    docs.iter()
        .map(|d| doc(*d))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn sorted_errors(v: &[rackd_model::ConfigError]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

const FILES: usize = 3;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn store_equals_merge(steps in proptest::collection::vec(
        proptest::collection::vec(file(), FILES..=FILES), 1..8)) {
        let opts = CheckOptions::default();
        let mut merged = Snapshot::default();
        let mut store = Store::new(opts.clone());
        // The same files through `FileSource` (what the directory source runs).
        let mut store2 = Store::new(opts.clone());
        let mut files: BTreeMap<usize, FileSource> = BTreeMap::new();
        // What each file's source last said, and its document cache.
        let mut contents: BTreeMap<usize, SourceContent> = BTreeMap::new();
        let mut caches: BTreeMap<usize, DocCache> = BTreeMap::new();
        for step in &steps {
            let mut sources = Vec::new();
            let mut updates = Vec::new();
            let mut updates2 = Vec::new();
            for (i, f) in step.iter().enumerate() {
                let name = format!("f{i}.yaml");
                match f {
                    File::Missing => {
                        if let Some(fs) = files.remove(&i) {
                            updates2.push(fs.removed());
                        }
                    }
                    File::Unreadable => {
                        updates2.push(files.entry(i).or_insert_with(|| FileSource::new(&name)).unreadable("permission denied"));
                    }
                    File::Docs(d) => {
                        updates2.push(files.entry(i).or_insert_with(|| FileSource::new(&name)).update(&text(d)));
                    }
                }
                let parsed = match f {
                    File::Missing => {
                        if contents.remove(&i).is_some() {
                            updates.push(SourceUpdate {
                                source: name.as_str().into(),
                                change: SourceChange::Removed,
                            });
                        }
                        caches.remove(&i);
                        continue;
                    }
                    File::Unreadable => ParsedSource::unreadable(&name, "permission denied"),
                    File::Docs(d) => {
                        let t = text(d);
                        let cached = parse_documents_cached(&name, &t, caches.entry(i).or_default());
                        // The cache never changes what a parse gives.
                        prop_assert_eq!(&cached, &parse_documents(&name, &t));
                        cached
                    }
                };
                let (update, next) = contents.get(&i).cloned().unwrap_or_default().update_to(&parsed);
                contents.insert(i, next);
                updates.push(update);
                sources.push(parsed);
            }
            let out = Snapshot::merge(&merged, &sources, &opts);
            let applied = store.apply(updates);
            prop_assert_eq!(store.snapshot(), &out.snapshot);
            // The indexes kept object by object equal the ones built from scratch.
            prop_assert!(store.snapshot().indexes_match_rebuild(), "store's indexes");
            prop_assert!(out.snapshot.indexes_match_rebuild(), "merge's indexes");
            prop_assert_eq!(sorted_errors(&store.errors()), sorted_errors(&out.errors));
            let applied2 = store2.apply(updates2);
            prop_assert_eq!(store2.snapshot(), &out.snapshot, "through FileSource");
            prop_assert_eq!(sorted_errors(&store2.errors()), sorted_errors(&out.errors));
            prop_assert_eq!(&applied2.changes, &applied.changes);
            // What the store says changed is exactly the difference of the two snapshots.
            prop_assert_eq!(&applied.changes, &out.snapshot.changes_since(&merged));
            merged = out.snapshot;
        }
    }
}
