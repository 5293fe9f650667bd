//! A new object dropped for a broken reference changes no object in the snapshot, yet its
//! error must be reported (the BGP status writer turns it into Cilium's conditions).

use rackd_model::{
    CheckOptions, Kind, Problem, SourceChange, SourceUpdate, Store, load_api_object,
};
use serde_json::json;

fn update(objects: Vec<serde_json::Value>, kind: Kind) -> SourceUpdate {
    SourceUpdate {
        source: format!("k8s:{}", kind.as_str()).into(),
        change: SourceChange::Update {
            upserts: objects
                .into_iter()
                .map(|v| load_api_object("k8s", kind, v).expect("loads"))
                .collect(),
            deletes: Vec::new(),
            errors: Vec::new(),
            duplicates: Vec::new(),
        },
    }
}

#[test]
fn a_new_object_with_a_broken_reference_alone_reports_its_error() {
    let mut store = Store::new(CheckOptions::default());
    let pc = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumBGPPeerConfig",
        "metadata": {"name": "generic"}, "spec": {}});
    store.apply(vec![update(vec![pc], Kind::BgpPeerConfig)]);
    assert!(store.errors().is_empty());

    let cc = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumBGPClusterConfig",
        "metadata": {"name": "broken"},
        "spec": {"bgpInstances": [{"name": "i", "localASN": 65001,
            "peers": [{"name": "tor", "peerAddress": "192.0.2.1", "peerConfigRef": {"name": "nope"}}]}]}});
    let applied = store.apply(vec![update(vec![cc], Kind::BgpClusterConfig)]);
    assert!(applied.changes.is_empty(), "the ClusterConfig is left out");
    assert!(applied.errors_changed, "but its error is news");
    assert!(
        store
            .errors()
            .iter()
            .any(|e| matches!(e.problem, Problem::Reference { .. }))
    );
}
