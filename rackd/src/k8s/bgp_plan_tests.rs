//! The plan's unit tests: selection, first owner wins, stale NodeConfigs, every condition set
//! and cleared, malformed inputs.

use super::*;
use rackd_model::{CheckOptions, Snapshot, parse_documents};

const NOW: &str = "2026-12-06T10:00:00Z";

/// The plan with no configuration errors and nothing fetched.
fn run(
    snapshot: &Snapshot,
    node_configs: &NodeConfigs,
    secrets_namespace: &str,
    now: &str,
) -> Plan {
    plan(&PlanInput {
        snapshot,
        errors: &[],
        served: &Served::default(),
        node_configs,
        secrets_namespace,
        now,
    })
}

fn snap(yaml: &str) -> Snapshot {
    let parsed = parse_documents("test.yaml", yaml);
    let out = Snapshot::build(&[parsed], &CheckOptions::default());
    // Dangling references are what some tests are about; the objects still load.
    assert!(
        out.errors
            .iter()
            .all(|e| matches!(e.problem, rackd_model::Problem::Reference { .. })),
        "{:?}",
        out.errors
    );
    out.snapshot
}

fn node(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n")
}

fn cc(name: &str, selector: &str, peer_config: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {{name: {name}, uid: uid-{name}, resourceVersion: '5', generation: 2}}\nspec:\n  {selector}\n  bgpInstances:\n  - name: i65001\n    localASN: 65001\n    peers:\n    - name: tor\n      peerAddress: 10.0.0.1\n      peerASN: 65000\n      peerConfigRef: {{name: {peer_config}}}\n---\n"
    )
}

fn pc(name: &str, secret: Option<&str>) -> String {
    let auth = secret.map_or(String::new(), |s| format!("authSecretRef: {s}"));
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {{name: {name}, uid: uid-{name}, resourceVersion: '3', generation: 1}}\nspec: {{{auth}}}\n---\n"
    )
}

fn secret(name: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: kube-system}}\ndata: {{{key}: c2VjcmV0}}\n---\n"
    )
}

fn existing(
    name: &str,
    owner: Option<(&str, &str)>,
    spec: Option<CiliumBGPNodeConfigSpec>,
) -> Arc<NodeConfigView> {
    let mut v =
        json!({"metadata": {"name": name, "uid": format!("nc-{name}"), "resourceVersion": "9"}});
    if let Some((n, uid)) = owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "cilium.io/v2",
            "kind": "CiliumBGPClusterConfig", "name": n, "uid": uid, "controller": true}]);
    }
    if let Some(s) = spec {
        v["spec"] = serde_json::to_value(s).unwrap();
    }
    Arc::new(NodeConfigView::from_json(&v).unwrap())
}

fn ncs(items: Vec<Arc<NodeConfigView>>) -> NodeConfigs {
    NodeConfigs {
        synced: true,
        items: items.into_iter().map(|i| (i.name.clone(), i)).collect(),
    }
}

/// The condition `type_` of ClusterConfig (or PeerConfig) `name` in the plan: (status, message).
fn cond(p: &[StatusApply], name: &str, type_: &str) -> Option<(String, String)> {
    let s = p.iter().find(|s| s.name == name)?;
    let c = s.body["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["message"].as_str()?.to_owned(),
    ))
}

/// `yaml` with the plan's status bodies written back as the objects' status: the next
/// plan's input, as the watch would deliver it.
fn with_status(yaml: &str, p: &Plan) -> Snapshot {
    let s = snap(yaml);
    let docs: Vec<String> = s
        .iter()
        .map(|(_, l)| {
            let mut v = l.object.to_json();
            let name = v["metadata"]["name"].clone();
            let kind = v["kind"].clone();
            if let Some(a) = p
                .cluster_status
                .iter()
                .chain(&p.peer_status)
                .find(|a| a.body["kind"] == kind && a.name == name)
            {
                v["status"] = a.body["status"].clone();
            }
            // JSON is YAML.
            v.to_string()
        })
        .collect();
    snap(&docs.join("\n---\n"))
}

#[test]
fn every_selected_node_gets_a_node_config_owned_by_its_cluster_config() {
    let y = format!(
        "{}{}{}{}",
        node("a", "rack: r1"),
        node("b", "rack: r1"),
        node("c", "rack: r2"),
        cc(
            "rack1",
            "nodeSelector: {matchLabels: {rack: r1}}",
            "generic"
        )
    ) + &pc("generic", None);
    let s = snap(&y);
    let p = run(&s, &ncs(vec![]), "kube-system", NOW);
    let names: Vec<&str> = p.apply.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "c is not selected");
    let a = &p.apply[0];
    assert_eq!(a.resource_version, None, "created");
    let owner = &a.body["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], "uid-rack1");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["kind"], "CiliumBGPClusterConfig");
    assert_eq!(a.body["spec"]["bgpInstances"][0]["localASN"], 65001);
    assert_eq!(
        a.body["spec"]["bgpInstances"][0]["peers"][0]["peerConfigRef"]["name"],
        "generic"
    );
    assert!(p.delete.is_empty());
    assert_eq!(
        cond(&p.cluster_status, "rack1", types::NO_MATCHING_NODE),
        Some(("False".into(), "No node matches spec.nodeSelector".into()))
    );
}

#[test]
fn a_nil_selector_selects_every_node_and_the_override_applies() {
    let y = format!(
        "{}{}{}",
        node("a", ""),
        node("b", ""),
        cc("all", "", "generic")
    ) + &pc("generic", None)
        + "apiVersion: cilium.io/v2\nkind: CiliumBGPNodeConfigOverride\nmetadata: {name: b}\nspec:\n  bgpInstances:\n  - name: i65001\n    routerID: 192.0.2.2\n    localPort: 1790\n    peers:\n    - {name: tor, localAddress: 10.0.0.2}\n";
    let p = run(&snap(&y), &ncs(vec![]), "kube-system", NOW);
    assert_eq!(p.apply.len(), 2);
    let b = &p.apply[1].body["spec"]["bgpInstances"][0];
    assert_eq!(b["routerID"], "192.0.2.2");
    assert_eq!(b["localPort"], 1790);
    assert_eq!(b["peers"][0]["localAddress"], "10.0.0.2");
    let a = &p.apply[0].body["spec"]["bgpInstances"][0];
    assert!(a.get("routerID").is_none(), "only b has an override");
}

#[test]
fn an_up_to_date_node_config_is_not_written_and_a_changed_one_is_fenced() {
    let y = format!("{}{}", node("a", ""), cc("all", "", "generic")) + &pc("generic", None);
    let s = snap(&y);
    let first = run(&s, &ncs(vec![]), "kube-system", NOW);
    let spec: CiliumBGPNodeConfigSpec =
        serde_json::from_value(first.apply[0].body["spec"].clone()).unwrap();
    let held = ncs(vec![existing(
        "a",
        Some(("all", "uid-all")),
        Some(spec.clone()),
    )]);
    let s2 = with_status(&y, &first);
    let again = run(&s2, &held, "kube-system", NOW);
    assert!(again.is_empty(), "steady state writes nothing: {again:?}");

    let mut old = spec;
    old.bgp_instances[0].local_asn = Some(64999);
    let stale = ncs(vec![existing("a", Some(("all", "uid-all")), Some(old))]);
    let p = run(&s2, &stale, "kube-system", NOW);
    assert_eq!(p.apply.len(), 1);
    assert_eq!(p.apply[0].resource_version.as_deref(), Some("9"));
    assert_eq!(p.apply[0].body["metadata"]["resourceVersion"], "9");
}

#[test]
fn first_owner_wins_and_the_loser_reports_the_conflict() {
    // "b-late" owns node a's NodeConfig; "a-early" sorts first but came later.
    let y = format!(
        "{}{}{}",
        node("a", ""),
        cc("a-early", "", "generic"),
        cc("b-late", "", "generic")
    ) + &pc("generic", None);
    let s = snap(&y);
    let held = ncs(vec![existing("a", Some(("b-late", "uid-b-late")), None)]);
    let p = run(&s, &held, "kube-system", NOW);
    assert_eq!(p.apply.len(), 1);
    assert_eq!(
        p.apply[0].body["metadata"]["ownerReferences"][0]["name"], "b-late",
        "the owner keeps it"
    );
    assert!(p.delete.is_empty());
    assert_eq!(
        cond(
            &p.cluster_status,
            "a-early",
            types::CONFLICTING_CLUSTER_CONFIG
        ),
        Some((
            "True".into(),
            "Selecting the same node(s) with ClusterConfig(s): [b-late]".into()
        ))
    );
    assert_eq!(
        cond(
            &p.cluster_status,
            "b-late",
            types::CONFLICTING_CLUSTER_CONFIG
        )
        .map(|c| c.0),
        Some("False".into())
    );

    // Nobody owns it yet: the first by name wins.
    let p = run(&s, &ncs(vec![]), "kube-system", NOW);
    assert_eq!(
        p.apply[0].body["metadata"]["ownerReferences"][0]["name"],
        "a-early"
    );
    assert_eq!(
        cond(
            &p.cluster_status,
            "b-late",
            types::CONFLICTING_CLUSTER_CONFIG
        )
        .map(|c| c.0),
        Some("True".into())
    );
}

#[test]
fn stale_node_configs_are_deleted_with_preconditions_and_foreign_ones_kept() {
    let y = format!(
        "{}{}{}",
        node("a", "bgp: 'yes'"),
        node("b", ""),
        cc(
            "sel",
            "nodeSelector: {matchLabels: {bgp: 'yes'}}",
            "generic"
        )
    ) + &pc("generic", None);
    let s = snap(&y);
    let held = ncs(vec![
        existing("b", Some(("sel", "uid-sel")), None), // no longer selected
        existing("gone-node", Some(("sel", "uid-sel")), None), // node deleted
        existing("orphan", Some(("deleted-cc", "uid-x")), None), // owner gone
        existing("manual", None, None),                // not a ClusterConfig's
    ]);
    let p = run(&s, &held, "kube-system", NOW);
    let mut deleted: Vec<&str> = p.delete.iter().map(|d| d.name.as_str()).collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["b", "gone-node", "orphan"]);
    let d = p.delete.iter().find(|d| d.name == "b").unwrap();
    assert_eq!((d.uid.as_str(), d.resource_version.as_str()), ("nc-b", "9"));
    assert_eq!(p.apply.len(), 1, "a is created");

    // Unsynced: nothing created or deleted, no ClusterConfig conditions.
    let mut partial = held.clone();
    partial.synced = false;
    let p = run(&s, &partial, "kube-system", NOW);
    assert!(p.delete.is_empty() && p.apply.is_empty() && p.cluster_status.is_empty());
}

#[test]
fn a_node_config_owned_by_a_cluster_config_that_let_go_moves_after_its_deletion() {
    let y = format!(
        "{}{}{}",
        node("a", "x: '1'"),
        cc("new", "", "generic"),
        cc("old", "nodeSelector: {matchLabels: {x: '2'}}", "generic")
    ) + &pc("generic", None);
    let s = snap(&y);
    let held = ncs(vec![existing("a", Some(("old", "uid-old")), None)]);
    let p = run(&s, &held, "kube-system", NOW);
    assert_eq!(p.delete.len(), 1);
    assert!(
        p.apply.is_empty(),
        "created on the next pass, once the deletion is seen"
    );
    assert_eq!(
        cond(&p.cluster_status, "new", types::CONFLICTING_CLUSTER_CONFIG).map(|c| c.0),
        Some("False".into()),
        "no conflict reported for a NodeConfig on its way out"
    );
    let p = run(&s, &ncs(vec![]), "kube-system", NOW);
    assert_eq!(
        p.apply[0].body["metadata"]["ownerReferences"][0]["name"],
        "new"
    );
}

#[test]
fn no_matching_node_is_set_then_cleared_keeping_its_message() {
    let base = cc(
        "sel",
        "nodeSelector: {matchLabels: {bgp: 'yes'}}",
        "generic",
    ) + &pc("generic", None);
    let y = format!("{}{base}", node("a", ""));
    let p = run(&snap(&y), &ncs(vec![]), "kube-system", NOW);
    assert_eq!(
        cond(&p.cluster_status, "sel", types::NO_MATCHING_NODE),
        Some(("True".into(), "No node matches spec.nodeSelector".into()))
    );
    assert!(p.apply.is_empty());
    // Labelled: cleared (kept as False), transition time moved, NodeConfig created.
    let y2 = format!("{}{base}", node("a", "bgp: 'yes'"));
    let s2 = with_status(&y2, &p);
    let later = "2026-12-06T11:00:00Z";
    let p2 = run(&s2, &ncs(vec![]), "kube-system", later);
    let c = p2.cluster_status[0].body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == types::NO_MATCHING_NODE)
        .unwrap()
        .clone();
    assert_eq!(c["status"], "False");
    assert_eq!(c["lastTransitionTime"], later);
    assert_eq!(c["observedGeneration"], 2);
    assert_eq!(p2.apply.len(), 1);
    // The other conditions did not change status: their transition time stays.
    let other = p2.cluster_status[0].body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == types::MISSING_PEER_CONFIGS)
        .unwrap()
        .clone();
    assert_eq!(other["lastTransitionTime"], NOW);
}

/// The snapshot and its errors, as the config task would hold them.
fn build(yaml: &str) -> (Snapshot, Vec<rackd_model::ConfigError>) {
    let out = Snapshot::build(
        &[parse_documents("test.yaml", yaml)],
        &CheckOptions::default(),
    );
    (out.snapshot, out.errors)
}

#[test]
fn missing_peer_configs_is_set_and_cleared() {
    let y = format!("{}{}", node("a", ""), cc("all", "", "absent"));
    // rackd leaves the ClusterConfig out of its configuration (a broken reference); the
    // condition comes from the error and the object as served.
    let (s, errors) = build(&y);
    assert!(s.bgp_cluster_configs().next().is_none());
    let (ccs, pcs) = objects_in_error(&errors);
    assert_eq!((ccs.len(), pcs.len()), (1, 0));
    let served_cc = snap(&(y.clone() + &pc("absent", None)))
        .bgp_cluster_configs()
        .next()
        .unwrap()
        .clone();
    let served = Served {
        cluster_configs: [("all".to_owned(), served_cc.clone())].into(),
        ..Served::default()
    };
    let none = ncs(vec![]);
    let p = plan(&PlanInput {
        snapshot: &s,
        errors: &errors,
        served: &served,
        node_configs: &none,
        secrets_namespace: "kube-system",
        now: NOW,
    });
    assert_eq!(
        cond(&p.cluster_status, "all", types::MISSING_PEER_CONFIGS),
        Some((
            "True".into(),
            "Referenced CiliumBGPPeerConfig(s) are missing: [absent]".into()
        ))
    );
    assert_eq!(
        cond(&p.cluster_status, "all", types::NO_MATCHING_NODE).map(|c| c.0),
        Some("False".into()),
        "it selects node a all the same"
    );
    assert!(
        p.apply.is_empty(),
        "rackd does not run it, so no NodeConfig"
    );
    // Without the error (positive control): nothing tells the plan about it.
    assert!(
        run(&s, &ncs(vec![]), "kube-system", NOW)
            .cluster_status
            .is_empty()
    );

    // The PeerConfig created: loaded, cleared (kept as False).
    let y2 = y.clone() + &pc("absent", None);
    let s2 = with_status(&y2, &p);
    let p2 = run(&s2, &ncs(vec![]), "kube-system", NOW);
    assert_eq!(
        cond(&p2.cluster_status, "all", types::MISSING_PEER_CONFIGS),
        Some(("False".into(), String::new()))
    );
    assert_eq!(p2.apply.len(), 1);
}

#[test]
fn missing_auth_secret_is_set_for_a_missing_secret_or_key_and_cleared() {
    let y = pc("auth", Some("bgp-pw")) + &pc("plain", None);
    let (s, errors) = build(&y);
    let served_pc = snap(&(y.clone() + &secret("bgp-pw", "password")))
        .bgp_peer_config("auth")
        .unwrap()
        .clone();
    let served = Served {
        peer_configs: [("auth".to_owned(), served_pc)].into(),
        ..Served::default()
    };
    let p = plan(&PlanInput {
        snapshot: &s,
        errors: &errors,
        served: &served,
        node_configs: &ncs(vec![]),
        secrets_namespace: "kube-system",
        now: NOW,
    });
    assert_eq!(
        cond(&p.peer_status, "auth", types::MISSING_AUTH_SECRET),
        Some((
            "True".into(),
            "Referenced Auth Secret \"bgp-pw\" is missing".into()
        ))
    );
    assert_eq!(
        cond(&p.peer_status, "plain", types::MISSING_AUTH_SECRET).map(|c| c.0),
        Some("False".into()),
        "written False as Cilium does"
    );
    // The Secret without its `password` key: rackd cannot authenticate either.
    let wrong_key = y.clone() + &secret("bgp-pw", "pass");
    let (s, errors) = build(&wrong_key);
    let p = plan(&PlanInput {
        snapshot: &s,
        errors: &errors,
        served: &served,
        node_configs: &ncs(vec![]),
        secrets_namespace: "kube-system",
        now: NOW,
    });
    assert_eq!(
        cond(&p.peer_status, "auth", types::MISSING_AUTH_SECRET).map(|c| c.0),
        Some("True".into())
    );
    // The Secret created: cleared, the untouched PeerConfig not written again.
    let good = y.clone() + &secret("bgp-pw", "password");
    let first = run(&snap(&good), &ncs(vec![]), "kube-system", NOW);
    let s = with_status(&good, &first);
    assert!(run(&s, &ncs(vec![]), "kube-system", NOW).is_empty());
    assert_eq!(
        cond(&first.peer_status, "auth", types::MISSING_AUTH_SECRET),
        Some(("False".into(), String::new()))
    );
    // A Secret that vanished but that the snapshot keeps (last good): the error decides.
    let vanished = vec![rackd_model::ConfigError {
        location: rackd_model::Location {
            source: "k8s".into(),
            document: 0,
            line: None,
        },
        object: Some(rackd_model::ObjectRef {
            kind: "CiliumBGPPeerConfig".into(),
            namespace: None,
            name: Some("auth".into()),
        }),
        problem: rackd_model::Problem::Reference {
            path: "spec.authSecretRef".into(),
            target: rackd_model::ObjectKey::namespaced(Kind::Secret, "kube-system", "bgp-pw"),
            reason: "does not exist".into(),
        },
        kept_previous: true,
    }];
    let p = plan(&PlanInput {
        snapshot: &s,
        errors: &vanished,
        served: &Served::default(),
        node_configs: &ncs(vec![]),
        secrets_namespace: "kube-system",
        now: NOW,
    });
    assert_eq!(
        cond(&p.peer_status, "auth", types::MISSING_AUTH_SECRET).map(|c| c.0),
        Some("True".into())
    );
}

#[test]
fn objects_without_a_uid_are_left_out_and_malformed_node_configs_are_tolerated() {
    // From --config-dir: no uid, so no owner and no status.
    let y = node("a", "")
        + "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: file}\nspec:\n  bgpInstances:\n  - {name: i, localASN: 65001}\n---\n"
        + "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: filepc}\nspec: {}\n";
    let p = run(&snap(&y), &ncs(vec![]), "kube-system", NOW);
    assert!(p.is_empty(), "{p:?}");

    for bad in [
        json!(null),
        json!({"metadata": {}}),
        json!({"metadata": {"name": "x"}}),
        json!({"metadata": {"name": 7, "uid": "u"}}),
    ] {
        assert!(NodeConfigView::from_json(&bad).is_none(), "{bad}");
    }
    let v = NodeConfigView::from_json(&json!({
        "metadata": {"name": "x", "uid": "u", "ownerReferences": [{"kind": 3}, "junk"]},
        "spec": {"bgpInstances": "not a list"},
        "status": 5,
    }))
    .unwrap();
    assert!(v.owners.is_empty() && v.spec.is_none() && v.status.bgp_instances.is_empty());
    // An undecodable spec owned by a selecting ClusterConfig is rewritten.
    let y = format!("{}{}", node("x", ""), cc("all", "", "generic")) + &pc("generic", None);
    let mut held = (*existing("x", Some(("all", "uid-all")), None)).clone();
    held.spec = None;
    let p = run(&snap(&y), &ncs(vec![Arc::new(held)]), "kube-system", NOW);
    assert_eq!(p.apply.len(), 1);
    assert_eq!(p.apply[0].resource_version.as_deref(), Some("9"));
}
