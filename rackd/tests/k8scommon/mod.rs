//! What the tests against a real API server (`kubelab`) share: rackd's CRDs and the chart's
//! RBAC installed as the cluster admin, and kubectl queries the assertions use.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubelab::Cluster;

/// LB-IPAM leader election fast enough for tests (lease 4 s, renew deadline 3 s, retry 1 s).
pub const FAST_ELECTION: [&str; 6] = [
    "--leader-election-lease-duration",
    "4s",
    "--leader-election-renew-deadline",
    "3s",
    "--leader-election-retry-period",
    "1s",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Installs rackd's generated CRDs (`deploy/crds`).
pub fn install_crds(c: &Cluster) {
    c.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &workspace().join("deploy/crds").display().to_string(),
    ])
    .expect("rackd's CRDs install");
}

/// The chart's RBAC (ServiceAccount, roles and bindings), applied as the cluster admin: what
/// rackd runs with in these tests.
pub fn apply_chart_rbac(c: &Cluster) {
    let rendered = c
        .helm(&[
            "template",
            "rackd",
            &workspace().join("deploy/chart/rackd").display().to_string(),
            "--namespace",
            "kube-system",
        ])
        .expect("helm template of the chart");
    let rbac: Vec<&str> = rendered
        .split("\n---")
        .filter(|doc| {
            doc.lines().any(|l| {
                matches!(
                    l.trim(),
                    "kind: ServiceAccount"
                        | "kind: ClusterRole"
                        | "kind: ClusterRoleBinding"
                        | "kind: Role"
                        | "kind: RoleBinding"
                )
            })
        })
        .collect();
    assert!(rbac.len() >= 3, "the chart renders its RBAC: {rendered}");
    c.kubectl_stdin(&["apply", "-f", "-"], &rbac.join("\n---\n"))
        .expect("chart RBAC applies");
}

/// CRDs, the chart's RBAC, and a kubeconfig with the chart's ServiceAccount token: rackd
/// runs with exactly the rights the chart grants.
pub fn prepare_cluster(c: &Cluster) -> PathBuf {
    install_crds(c);
    apply_chart_rbac(c);
    c.service_account_kubeconfig("kube-system", "rackd")
        .expect("the chart's ServiceAccount token")
}

/// Polls `f` every 200 ms until it returns `Some`, panicking after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `status.loadBalancer.ingress[*].ip` of Service `ns/svc`, sorted (empty if unreadable).
pub fn ingress(c: &Cluster, ns: &str, svc: &str) -> Vec<String> {
    let out = c
        .kubectl_ok(&[
            "get",
            "svc",
            svc,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
        .unwrap_or_default();
    let mut v: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
    v.sort();
    v
}

/// The holder of Lease `kube-system/name`, if any.
pub fn lease_holder(c: &Cluster, name: &str) -> Option<String> {
    c.kubectl_ok(&[
        "get",
        "lease",
        name,
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .ok()
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
}

/// The status of condition `type_` of `kind/name` (`-n ns` when namespaced).
pub fn condition_status(
    c: &Cluster,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    type_: &str,
) -> String {
    let jp = format!(r#"jsonpath={{.status.conditions[?(@.type=="{type_}")].status}}"#);
    let mut args = vec!["get", kind, name, "-o", jp.as_str()];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    c.kubectl_ok(&args).unwrap_or_default().trim().to_owned()
}

/// The sum of every series of counter `name` in a Prometheus text exposition (0 if absent).
pub fn metric_sum(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
