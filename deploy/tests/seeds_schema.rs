//! Every `cilium.io` document of the seeds, labs and examples (configs/seeds, configs/lab,
//! configs/l2lab, configs/examples) validates against the generated CRD schema of its apiVersion, with
//! [`rackd_deploy::schema::Checker`]; and broken variants of them are refused, so the
//! check is not vacuous. CEL rules are counted, not evaluated: the dry-run test applies
//! the same files to a real API server.
#![allow(clippy::unwrap_used)]

use rackd_deploy::schema::{Checker, version_schema};
use serde::Deserialize;
use serde_json::{Value, json};

/// `(file, apiVersion, kind, document)` of every cilium.io document.
fn cilium_documents() -> Vec<(String, String, String, Value)> {
    let root = rackd_deploy::repo_root();
    let mut out = Vec::new();
    for dir in [
        "configs/seeds",
        "configs/lab",
        "configs/l2lab",
        "configs/examples",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for de in serde_yaml_ng::Deserializer::from_str(&text) {
                let doc = Value::deserialize(de).unwrap();
                let (Some(av), Some(kind)) = (doc["apiVersion"].as_str(), doc["kind"].as_str())
                else {
                    continue;
                };
                if av.starts_with("cilium.io/") {
                    let name = f.strip_prefix(&root).unwrap().display().to_string();
                    out.push((name, av.to_owned(), kind.to_owned(), doc.clone()));
                }
            }
        }
    }
    out
}

fn check(doc: &Value) -> Vec<String> {
    let crds = rackd_model::crd::crds().unwrap();
    let av = doc["apiVersion"].as_str().unwrap();
    let kind = doc["kind"].as_str().unwrap();
    let schema =
        version_schema(&crds, av, kind).unwrap_or_else(|| panic!("no CRD serves {kind} at {av}"));
    Checker::new()
        .check(&schema, doc)
        .unwrap()
        .violations
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn seed_and_lab_cilium_yaml_validates_against_the_generated_crds() {
    let docs = cilium_documents();
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|(_, av, k, _)| format!("{k} {av}"))
        .collect();
    kinds.sort();
    kinds.dedup();
    // What the seeds and labs hold today; a new kind here needs no change, a lost one fails.
    for want in [
        "CiliumBGPAdvertisement cilium.io/v2",
        "CiliumBGPClusterConfig cilium.io/v2",
        "CiliumBGPNodeConfigOverride cilium.io/v2",
        "CiliumBGPPeerConfig cilium.io/v2",
        "CiliumEgressGatewayPolicy cilium.io/v2",
        "CiliumL2AnnouncementPolicy cilium.io/v2alpha1",
        "CiliumLoadBalancerIPPool cilium.io/v2alpha1",
    ] {
        assert!(kinds.contains(&want.to_owned()), "{want} not in {kinds:?}");
    }
    let mut failures = Vec::new();
    for (file, _, kind, doc) in &docs {
        for v in check(doc) {
            failures.push(format!("{file}: {kind} {}: {v}", doc["metadata"]["name"]));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Each seed broken in one way a real API server refuses is refused here too.
#[test]
fn broken_variants_are_refused() {
    let docs = cilium_documents();
    let find = |kind: &str| {
        docs.iter()
            .find(|(_, _, k, _)| k == kind)
            .map(|(_, _, _, d)| d.clone())
            .unwrap()
    };
    type Break = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "CiliumLoadBalancerIPPool",
            Box::new(|d| d["spec"]["allowFirstLastIPs"] = json!("Maybe")),
            "spec.allowFirstLastIPs: \"Maybe\" is not one of",
        ),
        (
            "CiliumLoadBalancerIPPool",
            Box::new(|d| d["spec"]["blocks"][0]["cidr"] = json!("172.18.255.200")),
            "spec.blocks[0].cidr: \"172.18.255.200\" is not a valid \"cidr\"",
        ),
        (
            "CiliumLoadBalancerIPPool",
            Box::new(|d| d["spec"]["cidrs"] = json!([])),
            "spec.cidrs: unknown field",
        ),
        (
            "CiliumL2AnnouncementPolicy",
            Box::new(|d| {
                d["spec"]["nodeSelector"]["matchExpressions"][0]["operator"] = json!("Exist")
            }),
            "spec.nodeSelector.matchExpressions[0].operator: \"Exist\" is not one of",
        ),
        (
            "CiliumL2AnnouncementPolicy",
            Box::new(|d| d["spec"]["loadBalancerIPs"] = json!("yes")),
            "spec.loadBalancerIPs: a string is not a boolean",
        ),
        (
            "CiliumEgressGatewayPolicy",
            Box::new(|d| d["spec"]["destinationCIDRs"][0] = json!("10.0.4.0/40")),
            "spec.destinationCIDRs[0]: \"10.0.4.0/40\" does not match the pattern",
        ),
        (
            "CiliumEgressGatewayPolicy",
            Box::new(|d| {
                d["spec"].as_object_mut().unwrap().remove("egressGateway");
            }),
            "spec.egressGateway: Required value",
        ),
        (
            "CiliumBGPClusterConfig",
            Box::new(|d| {
                d["spec"]["bgpInstances"][0]["peers"][0]["peerASN"] = json!(4294967296u64)
            }),
            "spec.bgpInstances[0].peers[0].peerASN: 4294967296 is greater than 4294967295",
        ),
        (
            "CiliumBGPClusterConfig",
            Box::new(|d| d["spec"]["bgpInstances"][0]["peers"][0]["peerAddress"] = json!("tor")),
            "spec.bgpInstances[0].peers[0].peerAddress: \"tor\" does not match the pattern",
        ),
        (
            "CiliumBGPClusterConfig",
            Box::new(|d| {
                let p = d["spec"]["bgpInstances"][0]["peers"][0].clone();
                d["spec"]["bgpInstances"][0]["peers"]
                    .as_array_mut()
                    .unwrap()
                    .push(p);
            }),
            "spec.bgpInstances[0].peers[2]: Duplicate value",
        ),
        (
            "CiliumBGPPeerConfig",
            Box::new(|d| d["spec"]["timers"]["holdTimeSeconds"] = json!(2)),
            "spec.timers.holdTimeSeconds: 2 is less than 3",
        ),
        (
            "CiliumBGPPeerConfig",
            Box::new(|d| d["spec"]["transport"] = json!({"localPort": 179})),
            "spec.transport.localPort: unknown field",
        ),
        (
            "CiliumBGPAdvertisement",
            Box::new(|d| {
                d["spec"]["advertisements"][0]["attributes"]["communities"]["standard"][0] =
                    json!("65536:1")
            }),
            "communities.standard[0]: \"65536:1\" does not match the pattern",
        ),
        (
            "CiliumBGPNodeConfigOverride",
            Box::new(|d| d["spec"]["bgpInstances"] = json!([])),
            "spec.bgpInstances: 0 items, fewer than 1",
        ),
    ];
    for (kind, break_it, want) in cases {
        let mut d = find(kind);
        break_it(&mut d);
        let got = check(&d);
        assert!(
            got.iter().any(|v| v.contains(want)),
            "{kind}: want {want:?} in {got:#?}"
        );
    }
    // v2alpha1-only fields are accepted under v2alpha1 and refused under v2.
    let mut pc = find("CiliumBGPPeerConfig");
    pc["spec"]["transport"] = json!({"localPort": 179});
    pc["apiVersion"] = json!("cilium.io/v2alpha1");
    assert_eq!(check(&pc), Vec::<String>::new());
}

/// Defaults the API server fills in, as Cilium's CRD declares them (cilium-compat.md §1.2).
#[test]
fn defaults_are_applied_like_the_api_server() {
    let crds = rackd_model::crd::crds().unwrap();
    let schema = version_schema(&crds, "cilium.io/v2", "CiliumBGPPeerConfig").unwrap();
    let r = Checker::new()
        .check(
            &schema,
            &json!({"apiVersion": "cilium.io/v2", "kind": "CiliumBGPPeerConfig", "metadata": {"name": "p"},
                    "spec": {"timers": {}, "gracefulRestart": {"enabled": true}, "transport": {}}}),
        )
        .unwrap();
    assert_eq!(r.violations, vec![]);
    assert_eq!(
        r.defaulted["spec"],
        json!({"timers": {"connectRetryTimeSeconds": 120, "holdTimeSeconds": 90, "keepAliveTimeSeconds": 30},
               "gracefulRestart": {"enabled": true, "restartTimeSeconds": 120},
               "transport": {"peerPort": 179}, "ebgpMultihop": 1})
    );
    assert_eq!(r.cel_rules, 2, "the timers rule and BFD's single-hop rule");
}
