//! kubelab against the real binaries: a control plane starts, RBAC is enforced, the API
//! server restarts on its data, kube-controller-manager makes EndpointSlices, helm installs a
//! chart, a cluster runs inside a network namespace, and dropping a cluster leaves no process.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kubelab::{Cluster, ClusterOptions};
use serde_json::Value;

/// Polls `f` every 200 ms until it returns `Some`, or panics after `timeout` with the last
/// observation.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not after {timeout:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// kubectl with another kubeconfig (a ServiceAccount's), against the same cluster.
fn kubectl_as(cluster: &Cluster, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new(&cluster.bins().kubectl)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cluster.dir().join("kubectl-cache-sa"))
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Starts a cluster; a failure panics with the error's Display (it carries the log's tail).
fn start(opts: ClusterOptions) -> Cluster {
    Cluster::start(opts).unwrap_or_else(|e| panic!("start cluster: {e}"))
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).expect("kubectl printed JSON")
}

fn cmdline(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

#[test]
fn apiserver_serves_kubectl_and_drop_stops_everything() {
    let mut cluster = start(ClusterOptions::default());
    assert!(
        cluster.server().starts_with("https://127.0.0.1:"),
        "{}",
        cluster.server()
    );

    let ns = cluster
        .kubectl_ok(&["get", "namespaces", "-o", "name"])
        .unwrap();
    for want in ["namespace/default", "namespace/kube-system"] {
        assert!(ns.lines().any(|l| l == want), "{want} missing from:\n{ns}");
    }

    // The binaries carry the release version (k8s-build.sh's ldflags), not v0.0.0-master.
    let version = json(&cluster.kubectl_ok(&["version", "-o", "json"]).unwrap());
    for side in ["clientVersion", "serverVersion"] {
        let v = version[side]["gitVersion"].as_str().unwrap_or_default();
        assert!(v.starts_with("v1."), "{side}: {v:?} in {version}");
    }

    // Both Service ranges are served (dual-stack).
    let kubernetes = json(
        &cluster
            .kubectl_ok(&["get", "service", "kubernetes", "-o", "json"])
            .unwrap(),
    );
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1", "{kubernetes}");

    // A failing kubectl is an error carrying its stderr.
    let err = cluster
        .kubectl_ok(&["get", "nosuchkind"])
        .expect_err("unknown kind must fail");
    assert!(err.to_string().contains("nosuchkind"), "{err}");

    let pids = cluster.pids();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver: {pids:?}");
    let before: Vec<_> = pids.iter().map(|p| cmdline(*p)).collect();
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    for (pid, was) in pids.iter().zip(before) {
        // Reaped by Drop: the PID is gone (or, at worst, reused by something else).
        let now = cmdline(*pid);
        assert!(now.is_none() || now != was, "pid {pid} still runs");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_failed_start_reports_the_log_and_leaves_no_process() {
    let err = Cluster::start(ClusterOptions {
        extra_apiserver_args: vec!["--no-such-flag".into()],
        ..ClusterOptions::default()
    })
    .expect_err("kube-apiserver must refuse an unknown flag");
    let kubelab::Error::Start {
        component,
        log,
        log_tail,
        ..
    } = &err
    else {
        panic!("not a start error: {err}");
    };
    assert_eq!(*component, "kube-apiserver");
    assert!(log_tail.contains("unknown flag: --no-such-flag"), "{err}");
    // The directory is kept for its logs; etcd, started before, was stopped.
    let dir = log.parent().and_then(Path::parent).expect("cluster dir");
    assert!(log.exists(), "{}", log.display());
    let needle = dir.to_str().unwrap().as_bytes();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().parse::<u32>();
        if let Some(cmd) = pid.ok().and_then(cmdline) {
            assert!(
                !cmd.windows(needle.len()).any(|w| w == needle),
                "still running: {}",
                String::from_utf8_lossy(&cmd)
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rbac_forbids_a_service_account_until_a_role_is_bound() {
    let cluster = start(ClusterOptions::default());
    cluster
        .kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            "default",
            "--from-literal=k=v",
        ])
        .unwrap();
    let sa = cluster
        .service_account_kubeconfig("rbac-test", "reader")
        .unwrap();
    cluster
        .kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "s2",
            "-n",
            "rbac-test",
            "--from-literal=k=v",
        ])
        .unwrap();

    // Authenticated (whoami), but not authorized.
    let whoami = kubectl_as(&cluster, &sa, &["auth", "whoami", "-o", "json"]);
    assert!(whoami.status.success(), "{whoami:?}");
    let whoami = json(&String::from_utf8_lossy(&whoami.stdout));
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        "system:serviceaccount:rbac-test:reader"
    );
    let denied = kubectl_as(&cluster, &sa, &["get", "secrets", "-n", "rbac-test"]);
    assert!(!denied.status.success(), "{denied:?}");
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("Forbidden") || stderr.contains("forbidden"),
        "{stderr}"
    );

    // Positive control: bind a Role, and the same kubeconfig can list them.
    cluster
        .kubectl_ok(&[
            "create",
            "role",
            "secret-reader",
            "-n",
            "rbac-test",
            "--verb=get,list",
            "--resource=secrets",
        ])
        .unwrap();
    cluster
        .kubectl_ok(&[
            "create",
            "rolebinding",
            "reader",
            "-n",
            "rbac-test",
            "--role=secret-reader",
            "--serviceaccount=rbac-test:reader",
        ])
        .unwrap();
    let names = wait_for("the bound role to apply", Duration::from_secs(30), || {
        let o = kubectl_as(
            &cluster,
            &sa,
            &["get", "secrets", "-n", "rbac-test", "-o", "name"],
        );
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    });
    assert!(names.lines().any(|l| l == "secret/s2"), "{names}");

    // ...and only there: the Role is namespaced.
    let other = kubectl_as(&cluster, &sa, &["get", "secrets", "-n", "default"]);
    assert!(!other.status.success(), "{other:?}");
}

#[test]
fn apiserver_restart_keeps_data_on_the_same_port() {
    let mut cluster = start(ClusterOptions::default());
    let server = cluster.server();
    cluster
        .kubectl_ok(&[
            "create",
            "configmap",
            "survivor",
            "-n",
            "default",
            "--from-literal=answer=42",
        ])
        .unwrap();
    let rv = |c: &Cluster| {
        c.kubectl_ok(&[
            "get",
            "configmap",
            "survivor",
            "-n",
            "default",
            "-o",
            "jsonpath={.metadata.resourceVersion}/{.data.answer}",
        ])
        .unwrap()
    };
    let before = rv(&cluster);

    cluster.stop_apiserver().unwrap();
    assert!(!cluster.apiserver_running());
    let down = cluster
        .kubectl(&["get", "configmaps", "--request-timeout=5s"])
        .unwrap();
    assert!(!down.status.success(), "API server still answers: {down:?}");

    cluster.start_apiserver().unwrap();
    assert_eq!(cluster.server(), server);
    assert_eq!(rv(&cluster), before);

    // A hard kill too: etcd holds the data, not the API server.
    cluster.kill_apiserver().unwrap();
    cluster.start_apiserver().unwrap();
    assert_eq!(rv(&cluster), before);
    assert!(before.ends_with("/42"), "{before}");
}

#[test]
fn controller_manager_makes_endpointslices_from_ready_pods() {
    let cluster = start(ClusterOptions::with_controller_manager());
    let ns = "web";
    cluster.kubectl_ok(&["create", "namespace", ns]).unwrap();
    // The serviceaccount controller runs: the namespace gets its default ServiceAccount,
    // which Pod admission needs.
    wait_for("default ServiceAccount", Duration::from_secs(60), || {
        cluster
            .kubectl_ok(&["get", "serviceaccount", "default", "-n", ns])
            .map_err(|e| e.to_string())
    });

    // No kubelet: a Node object, a Pod bound to it, and its status written by hand.
    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: web
spec:
  ipFamilyPolicy: PreferDualStack
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: web
  labels:
    app: web
spec:
  nodeName: node-a
  containers:
  - name: web
    image: example.invalid/web:1
    ports:
    - containerPort: 8080
"#,
        )
        .unwrap();
    let svc = json(
        &cluster
            .kubectl_ok(&["get", "service", "web", "-n", ns, "-o", "json"])
            .unwrap(),
    );
    assert_eq!(
        svc["spec"]["ipFamilies"],
        serde_json::json!(["IPv4", "IPv6"]),
        "{svc}"
    );

    let set_status = |ready: &str| {
        let patch = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}],
            "conditions": [{"type": "Ready", "status": ready}],
        }});
        cluster
            .kubectl_ok(&[
                "patch",
                "pod",
                "web-1",
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch.to_string(),
            ])
            .unwrap();
    };
    // (family, address) -> ready, for every endpoint of the Service's slices.
    let endpoints = || -> Vec<(String, String, bool)> {
        let slices = json(
            &cluster
                .kubectl_ok(&[
                    "get",
                    "endpointslices",
                    "-n",
                    ns,
                    "-l",
                    "kubernetes.io/service-name=web",
                    "-o",
                    "json",
                ])
                .unwrap(),
        );
        let mut out = Vec::new();
        for s in slices["items"].as_array().into_iter().flatten() {
            let family = s["addressType"].as_str().unwrap_or_default().to_string();
            for e in s["endpoints"].as_array().into_iter().flatten() {
                for a in e["addresses"].as_array().into_iter().flatten() {
                    out.push((
                        family.clone(),
                        a.as_str().unwrap_or_default().to_string(),
                        e["conditions"]["ready"].as_bool().unwrap_or(false),
                    ));
                }
            }
        }
        out.sort();
        out
    };

    set_status("True");
    let want_ready = vec![
        ("IPv4".to_string(), "10.244.1.5".to_string(), true),
        ("IPv6".to_string(), "fd00:10:244:1::5".to_string(), true),
    ];
    wait_for("ready endpoints", Duration::from_secs(60), || {
        let got = endpoints();
        if got == want_ready {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // The controller follows the Pod: not ready any more.
    set_status("False");
    wait_for("not-ready endpoints", Duration::from_secs(60), || {
        let got = endpoints();
        if got.len() == 2 && got.iter().all(|(_, _, ready)| !ready) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

#[test]
fn helm_installs_a_chart() {
    let cluster = start(ClusterOptions::default());
    let chart = tempfile::tempdir().unwrap();
    std::fs::create_dir(chart.path().join("templates")).unwrap();
    std::fs::write(
        chart.path().join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(chart.path().join("values.yaml"), "greeting: hello\n").unwrap();
    std::fs::write(
        chart.path().join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    )
    .unwrap();
    let chart_dir = chart.path().to_str().unwrap();

    cluster
        .helm(&[
            "install",
            "demo",
            chart_dir,
            "-n",
            "default",
            "--set",
            "greeting=bonjour",
        ])
        .unwrap();
    let greeting = cluster
        .kubectl_ok(&[
            "get",
            "configmap",
            "demo-config",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.greeting}",
        ])
        .unwrap();
    assert_eq!(greeting, "bonjour");
    let list = cluster.helm(&["list", "-n", "default", "-q"]).unwrap();
    assert_eq!(list.trim(), "demo");
    cluster
        .helm(&["uninstall", "demo", "-n", "default"])
        .unwrap();
    let gone = cluster
        .kubectl(&["get", "configmap", "demo-config", "-n", "default"])
        .unwrap();
    assert!(!gone.status.success(), "{gone:?}");
}

#[test]
fn cluster_runs_inside_a_network_namespace() {
    let netns = netlab::Netns::new("kubelab").expect("netns");
    let mut cluster = start(ClusterOptions {
        netns: Some(netns.name().to_string()),
        controller_manager: true,
        ..ClusterOptions::default()
    });
    assert_eq!(cluster.server(), "https://127.0.0.1:6443");
    let ns = cluster
        .kubectl_ok(&["get", "namespaces", "-o", "name"])
        .unwrap();
    assert!(ns.contains("namespace/kube-system"), "{ns}");

    // Every process is inside the namespace.
    let inside = Command::new("ip")
        .args(["netns", "pids", netns.name()])
        .output()
        .expect("ip netns pids");
    let inside = String::from_utf8_lossy(&inside.stdout);
    let pids = cluster.pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    for pid in pids {
        assert!(
            inside.lines().any(|l| l.trim() == pid.to_string()),
            "pid {pid} not in {}: {inside}",
            netns.name()
        );
    }
    // The cluster is dropped before the namespace (declared after it).
}
