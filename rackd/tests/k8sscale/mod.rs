//! The Kubernetes scale benchmark (issue 16), shared by `benches/k8s_scale.rs` (full size)
//! and `tests/k8s_scale_smoke.rs` (smoke size, CI):
//!
//! - N LoadBalancer Services created through a real kube-apiserver (16 requests in flight)
//!   while one rackd (the chart's ServiceAccount and RBAC) peers with an FRR ToR: time from
//!   the first create to every Service showing an EXTERNAL-IP (seen by the harness's own
//!   watch), and to every route at the ToR (FRR's received-prefix count, then its kernel
//!   table);
//! - the API requests rackd makes, per resource and verb, from the API server's audit log
//!   (only rackd's ServiceAccount is audited): in an idle window before the Services, while
//!   they load, and in a steady-state window after;
//! - the ceiling: the API server's own create pace, every 1,000 Services, beside the
//!   EXTERNAL-IPs the harness's watch saw in the same run, so the reader sees whether the API
//!   server or rackd set the pace (rackd cannot allocate a Service that does not exist yet).
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kubelab::{Cluster, ClusterOptions};
use netlab::{Netns, veth};
use serde::Serialize;

use crate::common::Lab;
use crate::k8scommon::prepare_cluster;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub services: usize,
    /// Length of the idle and steady-state windows.
    pub window_s: u64,
}

/// Requests rackd made in one window, per `resource verb`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    pub seconds: f64,
    pub requests: BTreeMap<String, u64>,
    pub per_second: BTreeMap<String, f64>,
    pub total_per_second: f64,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub services: usize,
    /// First create to last create answered.
    pub create_s: f64,
    /// First create to every Service with an EXTERNAL-IP (the harness's watch).
    pub all_ips_s: f64,
    /// First create to FRR having received every Service's route.
    pub all_routes_bgp_s: f64,
    /// First create to every route in the ToR's kernel table.
    pub all_routes_kernel_s: f64,
    /// The ceiling: how fast the API server accepted the creates, every 1,000 (count, seconds
    /// since the first create). rackd cannot allocate a Service before it exists.
    pub created: Vec<(usize, f64)>,
    /// Services with an EXTERNAL-IP as the harness's watch saw them, every 1,000.
    pub with_ip: Vec<(usize, f64)>,
    /// The last EXTERNAL-IP after the last create was answered: how far rackd trails the API
    /// server (`all_ips_s - create_s`).
    pub ip_lag_s: f64,
    pub idle: Window,
    pub load: Window,
    pub steady: Window,
    /// rackd's own count of status writes (`rackd_k8s_status_writes_total`).
    pub status_writes: u64,
    /// rackd's peak RSS (VmHWM) at the end, MiB.
    pub rackd_peak_rss_mib: f64,
}

/// The API server's audit policy: rackd's ServiceAccount at Metadata level, nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
  users: [\"system:serviceaccount:kube-system:rackd\"]
- level: None
";

const API_V4: &str = "10.0.4.2";

fn pool_and_bgp() -> String {
    let dir = crate::k8scommon::workspace().join("configs/lab");
    let mut y = String::from(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: scale\nspec:\n  blocks:\n  - cidr: 172.16.0.0/16\n",
    );
    for f in ["bgp.yaml", "overrides.yaml"] {
        y.push_str("\n---\n");
        y.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    // node1 only: the one rackd of this benchmark.
    y.push_str(
        "\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n  labels: {rackd.io/bgp: enabled}\nspec:\n  podCIDRs: [10.1.1.0/24]\n",
    );
    y
}

fn service(ns: &str, type_: &str, i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": ns},
        "spec": {
            "type": type_,
            "selector": {"app": format!("svc-{i}")},
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    }))
    .map(|mut s: Service| {
        // 27,000 would exhaust the NodePort range (2,768 ports): a bare-metal LB needs none.
        if let Some(spec) = s.spec.as_mut().filter(|_| type_ == "LoadBalancer") {
            spec.allocate_load_balancer_node_ports = Some(false);
        }
        s
    })
    .unwrap()
}

/// A client as the cluster admin. Like every API call of the harness it runs on the
/// runtime's workers, which were started inside the control plane's namespace.
fn admin_client(rt: &tokio::runtime::Runtime, c: &Cluster) -> kube::Client {
    let path = c.admin_kubeconfig().to_path_buf();
    rt.block_on(rt.spawn(async move {
        let kc = kube::config::Kubeconfig::read_from(path).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }))
    .unwrap()
}

/// Creates `n` Services (`type`: LoadBalancer or ClusterIP) in namespace `ns`, 16 in
/// flight; returns when every create was answered.
fn create_services(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    ns: &str,
    type_: &str,
    n: usize,
) -> Vec<(usize, f64)> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let (ns, type_) = (ns.to_owned(), type_.to_owned());
    let t0 = Instant::now();
    let done = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = done.clone();
    rt.block_on(rt.spawn(async move {
        let pp = PostParams::default();
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                let pp = pp.clone();
                let svc = service(&ns, &type_, i);
                let (d, count) = (d.clone(), count.clone());
                async move {
                    // The API server may shed load (429): try again.
                    for _ in 0..50 {
                        let ok = match api.create(&pp, &svc).await {
                            Ok(_) => true,
                            Err(kube::Error::Api(s)) => s.code == 409,
                            Err(_) => false,
                        };
                        if ok {
                            let c = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if (c % 1000 == 0 || c == n)
                                && let Ok(mut v) = d.lock()
                            {
                                v.push((c, t0.elapsed().as_secs_f64()));
                            }
                            return true;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    false
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<bool>>()
            .await
    }))
    .map(|oks| assert!(oks.iter().all(|ok| *ok), "some creates kept failing"))
    .unwrap();
    let mut v = done.lock().map(|v| v.clone()).unwrap_or_default();
    v.sort_by_key(|a| a.0);
    v
}

/// Watches Services in `scale` until `n` have an ingress address; the instant it happened.
fn spawn_ingress_watch(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    n: usize,
    t0: Instant,
) -> tokio::sync::oneshot::Receiver<(Instant, Vec<(usize, f64)>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let api: Api<Service> = Api::namespaced(client.clone(), "scale");
    rt.spawn(async move {
        let mut with_ip = std::collections::HashSet::new();
        let mut timeline = Vec::new();
        let mut s = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let objs = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                _ => continue,
            };
            for o in objs {
                let has = o
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|l| l.ingress.as_ref())
                    .is_some_and(|i| !i.is_empty());
                if has && with_ip.insert(o.metadata.name.unwrap_or_default()) {
                    let c = with_ip.len();
                    if c % 1000 == 0 || c == n {
                        timeline.push((c, t0.elapsed().as_secs_f64()));
                    }
                }
            }
            if with_ip.len() >= n {
                let _ = tx.send((Instant::now(), timeline));
                return;
            }
        }
    });
    rx
}

/// FRR's received IPv4 prefixes from node1.
fn bgp_received(lab: &Lab) -> u64 {
    lab.tor
        .summary()
        .ok()
        .and_then(|v| v["ipv4Unicast"]["peers"]["10.0.1.2"]["pfxRcd"].as_u64())
        .unwrap_or(0)
}

fn kernel_routes(lab: &Lab) -> usize {
    lab.tor_ns
        .ip(&["-4", "route", "show", "proto", "bgp"])
        .map(|s| s.lines().filter(|l| l.starts_with("172.16.")).count())
        .unwrap_or(0)
}

/// The audit log's rackd requests with `requestReceivedTimestamp` in [from, to), per
/// `resource verb`.
fn audit_window(log: &Path, from: wall::Utc, to: wall::Utc) -> Window {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(ts) = v["requestReceivedTimestamp"].as_str().and_then(wall::parse) else {
            continue;
        };
        if ts < from || ts >= to {
            continue;
        }
        let res = v["objectRef"]["resource"].as_str().unwrap_or("-");
        let sub = v["objectRef"]["subresource"].as_str();
        let verb = v["verb"].as_str().unwrap_or("-");
        let key = match sub {
            Some(s) => format!("{res}/{s} {verb}"),
            None => format!("{res} {verb}"),
        };
        *requests.entry(key).or_default() += 1;
    }
    let seconds = (to - from).max(1e-9);
    let per_second: BTreeMap<String, f64> = requests
        .iter()
        .map(|(k, n)| (k.clone(), *n as f64 / seconds))
        .collect();
    let total_per_second = per_second.values().sum();
    Window {
        seconds,
        requests,
        per_second,
        total_per_second,
    }
}

/// Wall-clock instants as seconds since the epoch (the audit log's RFC 3339 timestamps).
mod wall {
    use k8s_openapi::jiff::Timestamp;

    pub type Utc = f64;

    pub fn now() -> Utc {
        Timestamp::now().as_duration().as_secs_f64()
    }

    /// `2026-12-06T22:37:12.812399Z` → seconds since the epoch.
    pub fn parse(s: &str) -> Option<Utc> {
        s.parse::<Timestamp>()
            .ok()
            .map(|t| t.as_duration().as_secs_f64())
    }
}

/// rackd's peak RSS in MiB, from /proc.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn status_writes(lab: &Lab) -> u64 {
    crate::k8scommon::metric_sum(&lab.metrics(), "rackd_k8s_status_writes_total")
}

/// A lab: FRR ToR, node1, and the control plane in its own namespace behind the ToR.
struct K8sLab {
    cluster: Cluster,
    api: Netns,
    lab: Lab,
}

fn start_lab(prefix: &str, audit: &Path) -> K8sLab {
    let lab = Lab::prepare(prefix);
    let api = Netns::new("k8-scl").unwrap();
    veth(&lab.tor_ns, "eth4", &api, "eth0").unwrap();
    lab.tor_ns.addr_add("eth4", "10.0.4.1/24").unwrap();
    api.addr_add("eth0", &format!("{API_V4}/24")).unwrap();
    api.route_add(&["10.0.0.0/8", "via", "10.0.4.1"]).unwrap();
    let policy = audit.with_extension("policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let cluster = Cluster::start(ClusterOptions {
        netns: Some(api.name().to_owned()),
        bind: API_V4.parse().unwrap(),
        // Room for 2 × 27,000 ClusterIPs without the allocator crawling a nearly full /16.
        service_cidrs: vec!["10.96.0.0/12".into(), "fd00:10:96::/108".into()],
        extra_apiserver_args: vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", audit.display()),
            "--audit-log-format=json".into(),
            // Every event written as it happens (the default batches in memory).
            "--audit-log-mode=blocking".into(),
        ],
        ..ClusterOptions::default()
    })
    .expect("etcd and kube-apiserver start");
    K8sLab { cluster, api, lab }
}

/// Runs the benchmark with the rackd binary at `bin`.
pub fn run(bin: &Path, cfg: &Config) -> ScaleResult {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.log");
    let mut k = start_lab("k8s-scale", &audit);
    // The harness talks to the API server from the control plane's namespace: worker threads
    // inherit the namespace of the thread that starts them.
    let rt = k
        .api
        .enter(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .unwrap()
        .unwrap();
    let sa = prepare_cluster(&k.cluster);
    k.cluster
        .kubectl_stdin(&["apply", "-f", "-"], &pool_and_bgp())
        .unwrap();
    k.cluster
        .kubectl_ok(&["create", "namespace", "scale"])
        .unwrap();
    let client = admin_client(&rt, &k.cluster);

    let n = cfg.services;

    let kubeconfig = sa.to_str().unwrap().to_owned();
    k.lab.start_rackd_bare(
        bin.to_str().unwrap(),
        &[
            "--k8s-kubeconfig-path",
            &kubeconfig,
            "--k8s-namespace",
            "kube-system",
        ],
    );
    k.lab
        .tor
        .wait_established("10.0.1.2".parse().unwrap(), Duration::from_secs(90))
        .unwrap();
    // The PodCIDR is the one route before the Services.
    let t = Instant::now();
    while bgp_received(&k.lab) < 1 {
        assert!(t.elapsed() < Duration::from_secs(60), "no PodCIDR route");
        std::thread::sleep(Duration::from_millis(200));
    }
    let base = bgp_received(&k.lab);

    // Idle: rackd with its configuration and no LoadBalancer Services.
    let w0 = wall::now();
    std::thread::sleep(Duration::from_secs(cfg.window_s));
    let idle = audit_window(&audit, w0, wall::now());

    // Load.
    let l0 = wall::now();
    let t0 = Instant::now();
    let ips = spawn_ingress_watch(&rt, &client, n, t0);
    let created = create_services(&rt, &client, "scale", "LoadBalancer", n);
    let create_s = t0.elapsed().as_secs_f64();
    let want = base + u64::try_from(n).unwrap();
    let deadline = Duration::from_secs(600 + u64::try_from(n / 20).unwrap());
    let all_routes_bgp_s = loop {
        if bgp_received(&k.lab) >= want {
            break t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < deadline,
            "routes: {} of {want}\n{}",
            bgp_received(&k.lab),
            k.lab.rackd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ip_at, with_ip) = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), ips).await })
        .ok()
        .and_then(Result::ok)
        .expect("every Service got an EXTERNAL-IP");
    let all_ips_s = ip_at.duration_since(t0).as_secs_f64();
    let all_routes_kernel_s = loop {
        if kernel_routes(&k.lab) >= n {
            break t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < deadline,
            "kernel routes: {}",
            kernel_routes(&k.lab)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let load = audit_window(&audit, l0, wall::now());

    // Steady state: everything allocated, written and advertised.
    std::thread::sleep(Duration::from_secs(3));
    let s0 = wall::now();
    std::thread::sleep(Duration::from_secs(cfg.window_s));
    let steady = audit_window(&audit, s0, wall::now());
    let writes = status_writes(&k.lab);
    let rss = k
        .lab
        .rackd
        .as_ref()
        .map(|p| peak_rss_mib(p.pid()))
        .unwrap_or(0.0);
    drop(k.lab.rackd.take());
    rt.shutdown_background();
    drop(k);

    ScaleResult {
        services: n,
        create_s,
        all_ips_s,
        all_routes_bgp_s,
        all_routes_kernel_s,
        created,
        with_ip,
        ip_lag_s: all_ips_s - create_s,
        idle,
        load,
        steady,
        status_writes: writes,
        rackd_peak_rss_mib: rss,
    }
}

/// Where results go by default.
pub fn default_out() -> PathBuf {
    crate::k8scommon::workspace().join(format!(
        "rackd/benches/data/k8s_scale-{}.json",
        std::process::Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    ))
}
