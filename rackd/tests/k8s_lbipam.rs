//! rackd against a real kube-apiserver (built from the Kubernetes Go modules by
//! `scripts/k8s-build.sh`, run by `kubelab`): two rackd nodes with the chart's
//! ServiceAccount and RBAC, LB-IPAM elected on a Lease.
//!
//! - a pool and a dual-stack LoadBalancer Service applied with kubectl: the Service shows both
//!   addresses as EXTERNAL-IP with `cilium.io/IPAMRequestSatisfied`, the pool its counts;
//! - the allocating rackd killed with SIGKILL: the other takes the Lease, no address changes,
//!   and a new Service gets one from the new leader;
//! - the API server stopped for a minute and started again: nothing reallocated, and the
//!   rackd that stayed up reports the source unavailable meanwhile and recovers.

#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

mod k8scommon;

use k8scommon::{ingress, lease_holder, prepare_cluster, wait_for};
use kubelab::{Cluster, ClusterOptions};

const POOL_AND_SERVICE: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata:
  name: lab-pool
spec:
  blocks:
  - cidr: 172.18.255.200/29
  - cidr: 2001:db8:dead:beef::/64
---
apiVersion: v1
kind: Service
metadata:
  name: deathstar
  namespace: default
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {class: deathstar}
  ports:
  - port: 80
    protocol: TCP
"#;

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n    protocol: TCP\n"
    )
}

struct Rackd {
    name: String,
    child: Child,
    dir: tempfile::TempDir,
    metrics: std::net::SocketAddr,
}

impl Rackd {
    fn start(name: &str, kubeconfig: &Path, metrics: std::net::SocketAddr) -> Rackd {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("rackd.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rackd"))
            .args(["--node-name", name, "--k8s-kubeconfig-path"])
            .arg(kubeconfig)
            .args(["--k8s-namespace", "kube-system", "--metrics-addr"])
            .arg(metrics.to_string())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--admin-socket")
            .arg(dir.path().join("rackd.sock"))
            .args(k8scommon::FAST_ELECTION)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rackd starts");
        Rackd {
            name: name.into(),
            child,
            dir,
            metrics,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rackd.log")).unwrap_or_default()
    }

    /// `rackctl status` over the admin socket.
    fn status(&self) -> Option<rackd_api::Status> {
        let sock =
            std::os::unix::net::UnixStream::connect(self.dir.path().join("rackd.sock")).ok()?;
        rackd_api::write_message(&sock, &rackd_api::Request::Status).ok()?;
        match rackd_api::read_message(std::io::BufReader::new(&sock)).ok()? {
            rackd_api::Reply::Status(s) => Some(s),
            _ => None,
        }
    }

    fn source_unavailable(&self) -> Option<bool> {
        let s = self.status()?;
        Some(
            s.conditions
                .iter()
                .any(|c| c.condition.type_ == "rackd.io/SourceUnavailable"),
        )
    }

    fn services_loaded(&self) -> usize {
        self.status()
            .map(|s| {
                s.objects
                    .iter()
                    .filter(|(k, _)| k == "Service")
                    .map(|(_, n)| *n)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// `rackd_k8s_status_writes_total`, every kind, from the metrics endpoint.
    fn status_writes(&self) -> u64 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.metrics) else {
            return 0;
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        k8scommon::metric_sum(&body, "rackd_k8s_status_writes_total")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Rackd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn lbipam_on_kubernetes_elects_writes_status_and_survives_failover_and_an_api_outage() {
    let mut c = Cluster::start(ClusterOptions::default()).expect("kube-apiserver starts");
    let sa = prepare_cluster(&c);
    c.kubectl_stdin(&["apply", "-f", "-"], POOL_AND_SERVICE)
        .expect("pool and Service apply");

    // Metrics ports for the steady-state check, held together so the two differ.
    let ports: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<std::net::SocketAddr> = ports.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(ports);
    let mut nodes = vec![
        Rackd::start("node-a", &sa, addrs[0]),
        Rackd::start("node-b", &sa, addrs[1]),
    ];

    // EXTERNAL-IP: both families, from the pool, as kubectl shows it.
    let ips = wait_for("deathstar's EXTERNAL-IP", Duration::from_secs(60), || {
        let v = ingress(&c, "default", "deathstar");
        (v.len() == 2).then_some(v)
    });
    assert!(
        ips.iter().any(|i| i.starts_with("172.18.255."))
            && ips.iter().any(|i| i.starts_with("2001:db8:dead:beef:")),
        "{ips:?}\n{}\n{}",
        nodes[0].log(),
        nodes[1].log()
    );
    let wide = c
        .kubectl_ok(&["get", "svc", "deathstar", "-n", "default"])
        .unwrap();
    assert!(
        wide.contains("172.18.255."),
        "kubectl get svc shows it:\n{wide}"
    );
    let cond = c
        .kubectl_ok(&[
            "get",
            "svc",
            "deathstar",
            "-n",
            "default",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="cilium.io/IPAMRequestSatisfied")].status}"#,
        ])
        .unwrap();
    assert_eq!(cond.trim(), "True");
    let managers = c
        .kubectl_ok(&[
            "get",
            "svc",
            "deathstar",
            "-n",
            "default",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .unwrap();
    assert!(
        managers.contains("rackd"),
        "status applied as field manager rackd: {managers}"
    );
    let total = wait_for("pool status", Duration::from_secs(30), || {
        let t = c
            .kubectl_ok(&[
                "get",
                "ciliumloadbalancerippool",
                "lab-pool",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="cilium.io/IPsTotal")].message}"#,
            ])
            .ok()?;
        (!t.trim().is_empty()).then(|| t.trim().to_owned())
    });
    assert!(
        total.parse::<f64>().is_ok_and(|n| n > 8.0),
        "IPsTotal {total}"
    );

    // One writer: the Lease names one of them, and only that one allocated.
    for n in &mut nodes {
        assert!(n.alive(), "{} runs:\n{}", n.name, n.log());
    }
    let first = wait_for("a Lease holder", Duration::from_secs(30), || {
        lease_holder(&c, "rackd-lbipam")
    });
    let (leader, other) = if first == "node-a" { (0, 1) } else { (1, 0) };
    assert_eq!(nodes[leader].name, first);
    assert!(nodes[leader].log().contains("LB-IPAM: leading"));
    assert!(
        !nodes[other].log().contains("LB-IPAM: leading"),
        "{}",
        nodes[other].log()
    );
    assert_eq!(
        nodes[other].status_writes(),
        0,
        "a follower writes no status"
    );

    // Steady state: the leader wrote (Service and pool), and writes nothing more while
    // nothing changes.
    let settled = nodes[leader].status_writes();
    assert!(settled >= 2, "the leader's writes are counted: {settled}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        nodes[leader].status_writes(),
        settled,
        "no writes in steady state"
    );

    // The allocator killed: the other takes over within the lease time, no IP changes, and
    // allocates for a new Service.
    nodes[leader].kill();
    let second = wait_for("the Lease to move", Duration::from_secs(30), || {
        lease_holder(&c, "rackd-lbipam").filter(|h| *h != first)
    });
    assert_eq!(second, nodes[other].name);
    c.kubectl_stdin(&["apply", "-f", "-"], &service("tie-fighter"))
        .unwrap();
    let new_ip = wait_for(
        "a new Service's address from the new leader",
        Duration::from_secs(30),
        || ingress(&c, "default", "tie-fighter").into_iter().next(),
    );
    assert!(
        !ips.contains(&new_ip),
        "{new_ip} is not one of deathstar's {ips:?}"
    );
    assert_eq!(
        ingress(&c, "default", "deathstar"),
        ips,
        "the failover changed no address"
    );

    // The API server away for a minute: the surviving rackd keeps its objects and says the
    // source is unavailable; back, nothing is reallocated.
    let survivor = &mut nodes[other];
    assert_eq!(survivor.source_unavailable(), Some(false));
    // deathstar, tie-fighter and the API server's own `kubernetes` Service.
    let loaded = survivor.services_loaded();
    assert_eq!(loaded, 3);
    c.stop_apiserver().unwrap();
    wait_for(
        "the source reported unavailable",
        Duration::from_secs(60),
        || (survivor.source_unavailable() == Some(true)).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(60));
    assert!(survivor.alive(), "rackd survives the outage");
    assert_eq!(
        survivor.services_loaded(),
        loaded,
        "the last good objects stay in force while the API server is away"
    );
    c.start_apiserver().unwrap();
    wait_for("the source recovered", Duration::from_secs(90), || {
        (survivor.source_unavailable() == Some(false)).then_some(())
    });
    let name = survivor.name.clone();
    wait_for("the Lease held again", Duration::from_secs(30), || {
        lease_holder(&c, "rackd-lbipam").filter(|h| *h == name)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        ingress(&c, "default", "deathstar"),
        ips,
        "nothing reallocated after the outage"
    );
    assert_eq!(ingress(&c, "default", "tie-fighter"), vec![new_ip]);
    drop(nodes);
}
