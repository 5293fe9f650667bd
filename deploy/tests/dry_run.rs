//! Everything deploy/ ships, against a real kube-apiserver (kubelab: built from the
//! Kubernetes Go modules, RBAC on):
//! 1. the generated CRDs are created for real and become Established;
//! 2. every manifest the chart renders, with its default values and with
//!    `tests/values/all.yaml`, passes `kubectl apply --server-side --dry-run=server`;
//!    a deliberately broken one is refused (negative control);
//! 3. every cilium.io document of configs/seeds, configs/lab, configs/l2lab and
//!    configs/examples passes the same dry-run against the installed CRDs, and broken variants (a pattern, a CEL rule, an
//!    enum, a v2-only field under v2alpha1) are refused by the server;
//! 4. the chart applied for real, the ServiceAccount's permissions as the authorizer sees them
//!    (`kubectl auth can-i --as`): what rackd needs, and not Secrets outside the BGP secrets
//!    namespace, nor deleting what it only reads.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use kubelab::{Cluster, ClusterOptions};
use serde::Deserialize;
use serde_json::{Value, json};

fn start() -> Cluster {
    Cluster::start(ClusterOptions::default()).unwrap_or_else(|e| panic!("start cluster: {e}"))
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| format!("---\n{}", serde_yaml_ng::to_string(d).unwrap()))
        .collect()
}

/// `kubectl apply --server-side --dry-run=server -f -` of `docs`: Ok(stdout) or Err(the
/// error, with stderr).
fn dry_run(cluster: &Cluster, docs: &[Value]) -> Result<String, String> {
    cluster
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=rackd-deploy-test",
                "-f",
                "-",
            ],
            &to_yaml(docs),
        )
        .map_err(|e| e.to_string())
}

fn render(cluster: &Cluster, namespace: &str, values: Option<&Path>) -> Vec<Value> {
    let chart = rackd_deploy::repo_root().join("deploy/chart/rackd");
    let chart = chart.to_str().unwrap();
    let mut args = vec!["template", "rackd", chart, "--namespace", namespace];
    if let Some(v) = values {
        args.extend(["-f", v.to_str().unwrap()]);
    }
    let text = cluster.helm(&args).unwrap();
    yaml_docs(&text)
}

fn cilium_seed_docs() -> Vec<(String, Value)> {
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
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            for d in yaml_docs(&std::fs::read_to_string(&f).unwrap()) {
                if d["apiVersion"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("cilium.io/"))
                {
                    let name = f.strip_prefix(&root).unwrap().display().to_string();
                    out.push((name, d));
                }
            }
        }
    }
    out
}

/// prometheus-operator's CRD is not ours to ship; a permissive stand-in lets the dry-run
/// reach the rendered ServiceMonitor (it checks apiVersion, kind and metadata only).
const SERVICE_MONITOR_STUB: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn everything_deploy_ships_is_accepted_by_a_real_api_server() {
    let cluster = start();
    let root = rackd_deploy::repo_root();

    // 1. The CRDs, for real.
    let crds = root.join("deploy/crds");
    cluster
        .kubectl_ok(&["create", "-f", crds.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("creating the CRDs: {e}"));
    cluster
        .kubectl_stdin(&["create", "-f", "-"], SERVICE_MONITOR_STUB)
        .unwrap();
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])
        .unwrap();
    // The API server reads them as the field-for-field test does: names, versions, columns.
    let served = cluster
        .kubectl_ok(&["api-resources", "--api-group=cilium.io", "-o", "wide"])
        .unwrap();
    for (plural, short) in [
        ("ciliumbgpclusterconfigs", "cbgpcluster"),
        ("ciliumbgppeerconfigs", "cbgppeer"),
        ("ciliumbgpadvertisements", "cbgpadvert"),
        ("ciliumbgpnodeconfigoverrides", "cbgpnodeoverride"),
        ("ciliumbgpnodeconfigs", "cbgpnode"),
        (
            "ciliumloadbalancerippools",
            "ippools,ippool,lbippool,lbippools",
        ),
        ("ciliuml2announcementpolicies", "l2announcement"),
        ("ciliumegressgatewaypolicies", "cegp"),
    ] {
        let line = served
            .lines()
            .find(|l| l.split_whitespace().next() == Some(plural))
            .unwrap_or_else(|| panic!("{plural} not served:\n{served}"));
        assert!(line.contains(short), "{plural}: {line}");
        assert!(line.contains("false"), "{plural} is cluster-scoped: {line}");
    }

    // 2. The chart, with its defaults (rackd's namespace kube-system, as Cilium's agent) and
    //    with every value set (another namespace and secrets namespace, made for real first).
    for ns in ["rackd-system", "bgp-secrets"] {
        cluster.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    let defaults = render(&cluster, "kube-system", None);
    let all = render(
        &cluster,
        "rackd-system",
        Some(&root.join("deploy/tests/values/all.yaml")),
    );
    for (what, docs) in [("default values", &defaults), ("all values", &all)] {
        assert!(docs.len() >= 8, "{what}: {} documents", docs.len());
        for d in docs.iter() {
            let id = format!("{} {}", d["kind"], d["metadata"]["name"]);
            if let Err(e) = dry_run(&cluster, std::slice::from_ref(d)) {
                panic!("{what}: {id} refused by the API server: {e}");
            }
        }
        // And all at once, as `kubectl apply -f` of the rendered chart.
        dry_run(&cluster, docs).unwrap();
    }

    // Negative control: the server does refuse a broken manifest. Bidirectional propagation
    // in the unprivileged rackd container is why the chart mounts bpffs in an init container.
    let mut ds = defaults
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap()
        .clone();
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] =
        json!("Bidirectional");
    let err = dry_run(&cluster, &[ds]).unwrap_err();
    assert!(
        err.contains("Bidirectional mount propagation is available only to privileged containers"),
        "{err}"
    );
    let mut role = defaults
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap()
        .clone();
    role["rules"][0]["verbs"] = json!([]);
    let err = dry_run(&cluster, &[role]).unwrap_err();
    assert!(err.contains("verbs"), "{err}");

    // 3. The seeds' and labs' cilium.io YAML against the installed CRDs.
    let seeds = cilium_seed_docs();
    assert!(seeds.len() >= 10, "{} cilium.io documents", seeds.len());
    for (file, d) in &seeds {
        if let Err(e) = dry_run(&cluster, std::slice::from_ref(d)) {
            panic!(
                "{file}: {} {} refused: {e}",
                d["kind"], d["metadata"]["name"]
            );
        }
    }
    let find = |kind: &str| {
        seeds
            .iter()
            .find(|(_, d)| d["kind"] == kind)
            .unwrap()
            .1
            .clone()
    };
    type Break = fn(&mut Value);
    let broken: [(&str, Break, &str); 7] = [
        (
            "CiliumBGPClusterConfig",
            |d| d["spec"]["bgpInstances"][0]["peers"][0]["peerAddress"] = json!("tor"),
            "peerAddress",
        ),
        (
            // CEL, evaluated after defaulting: keepalive 30 (default) > hold 20.
            "CiliumBGPPeerConfig",
            |d| d["spec"]["timers"] = json!({"holdTimeSeconds": 20}),
            "keepAliveTimeSeconds can not be larger than holdTimeSeconds",
        ),
        (
            // cilium#48251's rule, ours as CEL: BFD on single-hop peers only.
            "CiliumBGPPeerConfig",
            |d| {
                d["spec"]["bfd"] = json!({"enabled": true});
                d["spec"]["ebgpMultihop"] = json!(2);
            },
            "BFD is supported only for single-hop peers",
        ),
        (
            "CiliumBGPAdvertisement",
            |d| d["spec"]["advertisements"][0]["selector"] = json!({"matchLabels": {"a": "b"}}),
            "selector field is not allowed for the 'PodCIDR' advertisementType",
        ),
        (
            "CiliumLoadBalancerIPPool",
            |d| d["spec"]["allowFirstLastIPs"] = json!("Maybe"),
            "allowFirstLastIPs",
        ),
        (
            "CiliumEgressGatewayPolicy",
            |d| d["spec"]["egressGateway"]["egressIP"] = json!("10.0.0.300"),
            "egressIP",
        ),
        (
            "CiliumBGPNodeConfigOverride",
            |d| d["spec"]["bgpInstances"] = json!([]),
            "bgpInstances",
        ),
    ];
    for (kind, break_it, want) in broken {
        let mut d = find(kind);
        break_it(&mut d);
        let err = dry_run(&cluster, &[d]).expect_err(kind);
        assert!(err.contains(want), "{kind}: want {want:?} in {err}");
    }
    // A v2-only field under the deprecated v2alpha1 is pruned, as with Cilium's CRDs (kubectl's
    // strict field validation reports it as unknown).
    let mut pc = find("CiliumBGPPeerConfig");
    pc["apiVersion"] = json!("cilium.io/v2alpha1");
    pc["spec"]["transport"] = json!({"sourceInterface": "lo"});
    let err = dry_run(&cluster, &[pc]).unwrap_err();
    assert!(err.contains("sourceInterface"), "{err}");

    // 4. The chart for real (no nodes, so no Pods), then what its ServiceAccount may do.
    //    (ciliumbgppeeringpolicies is in the ClusterRole for clusters that still have Cilium's
    //    BGPv1 CRD; it is not served here, so `can-i` cannot resolve it.)
    cluster
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=rackd-deploy-test",
                "-f",
                "-",
            ],
            &to_yaml(&defaults),
        )
        .unwrap();
    let sa = "system:serviceaccount:kube-system:rackd";
    let can = |verb: &str, resource: &str, ns: Option<&str>| -> bool {
        let (resource, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(format!("--subresource={s}"))),
            None => (resource, None),
        };
        let mut args = vec!["auth", "can-i", verb, resource, "--as", sa];
        if let Some(s) = &sub {
            args.push(s);
        }
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let out = cluster.kubectl(&args).unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for (verb, resource, ns) in [
        ("watch", "ciliumbgpclusterconfigs.cilium.io", None),
        ("watch", "ciliuml2announcementpolicies.cilium.io", None),
        ("watch", "ciliumegressgatewaypolicies.cilium.io", None),
        ("create", "ciliumbgpnodeconfigs.cilium.io", None),
        ("patch", "ciliumbgpnodeconfigs.cilium.io", None),
        ("delete", "ciliumbgpnodeconfigs.cilium.io", None),
        ("watch", "ciliumbgpnodeconfigs.cilium.io", None),
        ("patch", "ciliumbgpnodeconfigs.cilium.io/status", None),
        ("patch", "ciliumloadbalancerippools.cilium.io/status", None),
        ("patch", "ciliumbgpclusterconfigs.cilium.io/status", None),
        ("patch", "ciliumbgppeerconfigs.cilium.io/status", None),
        (
            "patch",
            "ciliuml2announcementpolicies.cilium.io/status",
            None,
        ),
        ("watch", "services", Some("default")),
        ("patch", "services/status", Some("default")),
        ("watch", "endpointslices.discovery.k8s.io", Some("default")),
        ("watch", "nodes", None),
        ("watch", "pods", Some("default")),
        ("watch", "namespaces", None),
        ("get", "secrets", Some("kube-system")),
        ("create", "leases.coordination.k8s.io", Some("kube-system")),
        ("delete", "leases.coordination.k8s.io", Some("kube-system")),
        ("create", "events", Some("default")),
        ("create", "events.events.k8s.io", Some("default")),
    ] {
        assert!(
            can(verb, resource, ns),
            "rackd cannot {verb} {resource} in {ns:?}"
        );
    }
    for (verb, resource, ns) in [
        ("get", "secrets", Some("default")),
        ("list", "secrets", None),
        ("create", "leases.coordination.k8s.io", Some("default")),
        ("update", "ciliumloadbalancerippools.cilium.io", None),
        ("update", "ciliumbgpnodeconfigs.cilium.io", None),
        ("update", "ciliumbgpnodeconfigs.cilium.io/status", None),
        ("update", "ciliumbgpclusterconfigs.cilium.io/status", None),
        ("delete", "ciliumbgpclusterconfigs.cilium.io", None),
        (
            "patch",
            "ciliumegressgatewaypolicies.cilium.io/status",
            None,
        ),
        ("delete", "services", Some("default")),
        ("update", "services", Some("default")),
        ("patch", "nodes", None),
        ("create", "pods", Some("kube-system")),
        ("get", "configmaps", Some("kube-system")),
    ] {
        assert!(
            !can(verb, resource, ns),
            "rackd may {verb} {resource} in {ns:?}"
        );
    }
}
