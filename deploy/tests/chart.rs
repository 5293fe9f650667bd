//! What the chart renders (with `helm template`, when a helm is at hand; see
//! `rackd_deploy::find_helm`): the DaemonSet a node daemon needs and the least-privilege RBAC,
//! rule for rule, with the default values and with `tests/values/all.yaml`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

fn render(helm: &PathBuf, namespace: &str, values: Option<&str>) -> Vec<Value> {
    let root = rackd_deploy::repo_root();
    let mut cmd = Command::new(helm);
    cmd.args(["template", "rackd"])
        .arg(root.join("deploy/chart/rackd"))
        .args(["--namespace", namespace]);
    if let Some(v) = values {
        cmd.arg("-f").arg(root.join(v));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn helm() -> Option<PathBuf> {
    let h = rackd_deploy::find_helm();
    if h.is_none() {
        eprintln!("SKIP: no helm (set HELM or RACKD_K8S_BIN_DIR)");
    }
    h
}

fn one<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(name_suffix))
        })
        .collect();
    assert_eq!(found.len(), 1, "{kind} *{name_suffix}: {found:#?}");
    found[0]
}

/// (apiGroup, resource, verb) of every rule.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in role["rules"].as_array().unwrap() {
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().to_owned(),
                        res.as_str().unwrap().to_owned(),
                        v.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

fn set(groups: &[&str], resources: &[&str], verbs: &[&str]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for g in groups {
        for r in resources {
            for v in verbs {
                out.insert(((*g).to_owned(), (*r).to_owned(), (*v).to_owned()));
            }
        }
    }
    out
}

const READ: &[&str] = &["get", "list", "watch"];

#[test]
fn rbac_is_exactly_what_rackd_needs() {
    let Some(helm) = helm() else { return };
    let docs = render(&helm, "kube-system", None);
    let mut want = set(
        &["cilium.io"],
        &[
            "ciliumbgpclusterconfigs",
            "ciliumbgppeerconfigs",
            "ciliumbgpadvertisements",
            "ciliumbgpnodeconfigoverrides",
            "ciliumloadbalancerippools",
            "ciliuml2announcementpolicies",
            "ciliumegressgatewaypolicies",
            "ciliumbgppeeringpolicies",
        ],
        READ,
    );
    want.extend(set(
        &["cilium.io"],
        &["ciliumbgpnodeconfigs"],
        &["get", "list", "watch", "create", "patch", "delete"],
    ));
    want.extend(set(
        &["cilium.io"],
        &[
            "ciliumbgpnodeconfigs/status",
            "ciliumbgpclusterconfigs/status",
            "ciliumbgppeerconfigs/status",
        ],
        &["patch"],
    ));
    want.extend(set(
        &["cilium.io"],
        &[
            "ciliumloadbalancerippools/status",
            "ciliuml2announcementpolicies/status",
        ],
        &["update", "patch"],
    ));
    want.extend(set(
        &[""],
        &["services", "nodes", "pods", "namespaces"],
        READ,
    ));
    want.extend(set(&[""], &["services/status"], &["update", "patch"]));
    want.extend(set(&["discovery.k8s.io"], &["endpointslices"], READ));
    want.extend(set(
        &["", "events.k8s.io"],
        &["events"],
        &["create", "patch"],
    ));
    let cluster = one(&docs, "ClusterRole", "rackd");
    assert_eq!(grants(cluster), want);
    assert!(
        !grants(cluster).iter().any(|(_, r, _)| r == "secrets"),
        "no Secrets cluster-wide"
    );

    let secrets = one(&docs, "Role", "-bgp-secrets");
    assert_eq!(secrets["metadata"]["namespace"], "kube-system");
    assert_eq!(grants(secrets), set(&[""], &["secrets"], READ));
    let leases = one(&docs, "Role", "-leases");
    assert_eq!(leases["metadata"]["namespace"], "kube-system");
    assert_eq!(
        grants(leases),
        set(
            &["coordination.k8s.io"],
            &["leases"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete"
            ]
        )
    );
    // Every binding names the chart's ServiceAccount in the release namespace.
    let sa = one(&docs, "ServiceAccount", "rackd");
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in docs.iter().filter(|d| d["kind"] == kind) {
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "kube-system"}])
            );
        }
    }

    // The secrets namespace follows the value; the leases follow the release.
    let docs = render(&helm, "rackd-system", Some("deploy/tests/values/all.yaml"));
    assert_eq!(
        one(&docs, "Role", "-bgp-secrets")["metadata"]["namespace"],
        "bgp-secrets"
    );
    assert_eq!(
        one(&docs, "Role", "-leases")["metadata"]["namespace"],
        "rackd-system"
    );
}

#[test]
fn daemonset_is_a_host_network_node_daemon_without_privilege() {
    let Some(helm) = helm() else { return };
    let docs = render(&helm, "kube-system", None);
    let ds = one(&docs, "DaemonSet", "rackd");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    let caps: BTreeSet<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cap in [
        "NET_ADMIN",
        "NET_RAW",
        "SYS_ADMIN",
        "BPF",
        "PERFMON",
        "SYS_RESOURCE",
    ] {
        assert!(caps.contains(cap), "{cap}");
    }
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    // Node name from the downward API.
    assert!(c["env"].as_array().unwrap().iter().any(|e| e
        == &json!({"name": "RACKD_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})));
    // bpffs: mounted Bidirectional by the (only privileged) init container, seen by rackd.
    let init = &pod["initContainers"][0];
    assert_eq!(init["securityContext"]["privileged"], true);
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "bpf-maps", "mountPath": "/sys/fs/bpf", "mountPropagation": "Bidirectional"}])
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| mounts.iter().find(|m| m["name"] == name).unwrap().clone();
    assert_eq!(mount("bpf-maps")["mountPath"], "/sys/fs/bpf");
    assert_eq!(mount("state")["mountPath"], "/var/lib/rackd");
    assert_eq!(mount("run")["mountPath"], "/run/rackd");
    let vols = pod["volumes"].as_array().unwrap();
    let host = |name: &str| {
        vols.iter().find(|v| v["name"] == name).unwrap()["hostPath"]["path"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(host("bpf-maps"), "/sys/fs/bpf");
    assert_eq!(host("state"), "/var/lib/rackd");
    assert_eq!(host("run"), "/run/rackd");
    // Probes on the metrics port, which listens on the node's addresses.
    for p in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[p]["httpGet"],
            json!({"path": "/metrics", "port": "metrics"})
        );
    }
    assert_eq!(c["ports"][0]["containerPort"], 9963);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for a in [
        "run",
        "--enable-k8s=true",
        "--k8s-namespace=kube-system",
        "--bgp-secrets-namespace=kube-system",
        "--metrics-addr=0.0.0.0:9963",
        "--admin-socket=/run/rackd/admin.sock",
        "--kube-proxy-replacement=false",
    ] {
        assert!(args.contains(&a), "{a} not in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--l2-")), "{args:?}");
}

#[test]
fn every_value_reaches_the_manifests() {
    let Some(helm) = helm() else { return };
    let docs = render(&helm, "rackd-system", Some("deploy/tests/values/all.yaml"));
    let ds = one(&docs, "DaemonSet", "rack-routing");
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example.com/net/rackd:0.1.0-test");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(pod["serviceAccountName"], "rack-routing-sa");
    assert!(pod.get("initContainers").is_none(), "bpf.autoMount off");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for a in [
        "--k8s-namespace=rackd-system",
        "--bgp-secrets-namespace=bgp-secrets",
        "--devices=eth0,bond+",
        "--fib-table=254",
        "--config-dir=/etc/rackd",
        "--enable-l2-announcements",
        "--l2-announcements-lease-duration=20s",
        "--l2-announcements-renew-deadline=8s",
        "--l2-announcements-retry-period=1s",
        "--l2-lease-backend=etcd",
        "--leader-election-lease-duration=30s",
        "--leader-election-renew-deadline=20s",
        "--leader-election-retry-period=4s",
        "--kube-proxy-replacement=true",
        "--enable-bpf-masquerade=true",
        "--enable-egress-gateway=true",
        "--bpf-lb-map-max=131072",
        "--bpf-lb-maglev-table-size=65521",
        "--bpf-lb-maglev-hash-seed=JLfvgnHc2kaSUFaI",
        "--metrics-addr=[::]:9990",
        "--bpf-pin-root=/run/bpffs/rackd",
        "--log-format=json",
        "--l2-etcd-endpoints=http://10.0.0.10:2379",
    ] {
        assert!(args.contains(&a), "{a} not in {args:?}");
    }
    // Helm merges maps with the defaults: the OS selector stays.
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "rackd.io/bgp": "enabled"})
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["terminationGracePeriodSeconds"], 60);
    assert_eq!(ds["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    assert_eq!(c["resources"]["limits"]["memory"], "2Gi");
    assert_eq!(c["livenessProbe"]["periodSeconds"], 15);
    assert_eq!(
        one(&docs, "ServiceMonitor", "rack-routing")["metadata"]["labels"]["release"],
        "prometheus"
    );
    assert_eq!(
        one(&docs, "Service", "-metrics")["spec"]["clusterIP"],
        "None"
    );
}
