//! The egress gateway's lab (issue 17): three rackd nodes with pods behind a router, a
//! server that reports the source address it saw, and the seeds' `remote-outpost` policy
//! (gateway: the node labelled `egress-gw: 'true'`, egress address: its `net1`).
//!
//! ```text
//!                 ┌─ eth0 node1 10.0.1.2 ── tiefighter 10.1.1.11 (empire), xwing 10.1.1.12
//!  server ── tor ─┼─ eth0 node2 10.0.2.2 ── mediabot 10.1.2.13 (empire)     [gateway]
//!  10.0.4.2       │  net1 node2 10.0.6.2 (the egress address)
//!  10.0.5.2       └─ eth0 node3 10.0.3.2 ── probe 10.1.3.14 (empire)
//! ```
//!
//! The router has no route to the pods: replies reach a pod only through the gateway's
//! tunnel back (egress) or the node's masquerade, so every answer proves its path.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use netlab::echo::{EchoServer, http_get, parse};
use netlab::etcd::Etcd;
use netlab::segment::Segment;
use netlab::{Check, LabDir, Netns, Process, veth, wait_for};

pub const SEED: &str = include_str!("../../../configs/seeds/seed-000-egress-gateway.yaml");

/// IPv6 beside the seed's IPv4 policy, with an excluded address, for the same pods.
pub const V6_POLICY: &str = "\
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: remote-outpost-v6}
spec:
  destinationCIDRs: ['fd00:10:0:4::/64']
  excludedCIDRs: ['fd00:10:0:4::200/128']
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, interface: net1}
";

/// The seeds' policy with a floating `egressIP` instead of `interface: net1`: whichever
/// gateway holds it answers ARP for it on the `net1` segment.
pub const FLOATING: &str = "\
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: remote-outpost}
spec:
  destinationCIDRs: [10.0.4.0/24]
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  egressGateway:
    nodeSelector: {matchLabels: {egress-gw: 'true'}}
    egressIP: 10.0.6.100
";

pub struct PodSpec {
    pub name: &'static str,
    pub node: usize,
    pub org: &'static str,
    pub n: u8,
}

pub const PODS: [PodSpec; 4] = [
    PodSpec {
        name: "tiefighter",
        node: 0,
        org: "empire",
        n: 11,
    },
    PodSpec {
        name: "xwing",
        node: 0,
        org: "alliance",
        n: 12,
    },
    PodSpec {
        name: "mediabot",
        node: 1,
        org: "empire",
        n: 13,
    },
    PodSpec {
        name: "probe",
        node: 2,
        org: "empire",
        n: 14,
    },
];

pub fn pod_v4(p: &PodSpec) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, u8::try_from(p.node + 1).unwrap(), p.n)
}

pub fn pod_v6(p: &PodSpec) -> Ipv6Addr {
    format!("fd00:10:1:{}::{}", p.node + 1, p.n)
        .parse()
        .unwrap()
}

/// Drop order: daemons, server, namespaces, then the directory.
pub struct Lab {
    pub rackd: Vec<Option<Process>>,
    /// The API server (and its etcd) when the nodes run on Kubernetes: objects and L2 leases
    /// from it, with the kubeconfig rackd uses ([`Lab::use_kubernetes`]).
    pub k8s: Option<(kubelab::Cluster, PathBuf)>,
    /// The L2 leases' datastore, when the gateways are elected.
    pub etcd: Option<Etcd>,
    pub server: EchoServer,
    pub pods: Vec<Netns>,
    pub nodes: Vec<Netns>,
    pub server_ns: Netns,
    pub tor: Netns,
    /// The egress interfaces' segment (`net1` of every gateway node).
    pub net1: Segment,
    /// Nodes labelled `egress-gw: 'true'` (indexes).
    pub gateways: Vec<usize>,
    pub cfgs: Vec<PathBuf>,
    pub pin_roots: Vec<PathBuf>,
    pub dir: LabDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for r in &mut self.rackd {
            drop(r.take());
        }
        drop(self.etcd.take());
        for p in &self.pin_roots {
            if let Err(e) = datapath::uninstall(p) {
                eprintln!("uninstalling {}: {e}", p.display());
            }
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// Where the lab's etcd listens (on the router's loopback) when the gateways are elected.
pub const ETCD_IP: &str = "10.99.0.100";

/// The lab's Nodes (`gateways` labelled `egress-gw: 'true'`) and Pods.
pub fn cluster_yaml(gateways: &[usize]) -> String {
    let mut y = String::new();
    for i in 0..3 {
        let x = i + 1;
        let label = if gateways.contains(&i) {
            ", labels: {egress-gw: 'true'}"
        } else {
            ""
        };
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node{x}{label}}}\n\
             spec: {{podCIDRs: [10.1.{x}.0/24, 'fd00:10:1:{x}::/64']}}\n\
             status: {{addresses: [{{type: InternalIP, address: 10.0.{x}.2}}]}}\n"
        ));
    }
    for (k, p) in PODS.iter().enumerate() {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: default, uid: uid-{k}, labels: {{org: {}}}}}\n\
             spec: {{nodeName: node{}}}\n\
             status: {{phase: Running, podIP: {}, podIPs: [{{ip: {}}}, {{ip: '{}'}}]}}\n",
            p.name,
            p.org,
            p.node + 1,
            pod_v4(p),
            pod_v4(p),
            pod_v6(p)
        ));
    }
    y
}

impl Lab {
    /// node2 the only gateway, no leases (Cilium's rule).
    pub fn new() -> Lab {
        Lab::with(&[1], false)
    }

    /// `gateways` labelled and on the `net1` segment; with `elect`, etcd runs on the router
    /// and every rackd elects gateways under L2 leases (1 s / 500 ms / 200 ms).
    pub fn with(gateways: &[usize], elect: bool) -> Lab {
        let dir = LabDir::new("egw").unwrap();
        let tor = Netns::new("eg-tor").unwrap();
        let server_ns = Netns::new("eg-srv").unwrap();
        tor.enable_forwarding().unwrap();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let x = i + 1;
            let n = Netns::new(&format!("eg-n{x}")).unwrap();
            veth(&tor, &format!("eth{x}"), &n, "eth0").unwrap();
            tor.addr_add(&format!("eth{x}"), &format!("10.0.{x}.1/24"))
                .unwrap();
            tor.addr_add(&format!("eth{x}"), &format!("fd00:10:0:{x}::1/64"))
                .unwrap();
            n.addr_add("eth0", &format!("10.0.{x}.2/24")).unwrap();
            n.addr_add("eth0", &format!("fd00:10:0:{x}::2/64")).unwrap();
            n.route_add(&["10.0.0.0/8", "via", &format!("10.0.{x}.1")])
                .unwrap();
            n.route_add(&["fd00::/16", "via", &format!("fd00:10:0:{x}::1")])
                .unwrap();
            n.enable_forwarding().unwrap();
            nodes.push(n);
        }
        // The gateways' egress interfaces, on one segment with the router.
        let net1 = Segment::new("eg-net1").unwrap();
        net1.attach(&tor, "eth6").unwrap();
        tor.addr_add("eth6", "10.0.6.1/24").unwrap();
        tor.addr_add("eth6", "fd00:10:0:6::1/64").unwrap();
        for &g in gateways {
            net1.attach(&nodes[g], "net1").unwrap();
            nodes[g]
                .addr_add("net1", &format!("10.0.6.{}/24", g + 1))
                .unwrap();
            nodes[g]
                .addr_add("net1", &format!("fd00:10:0:6::{}/64", g + 1))
                .unwrap();
        }
        let etcd = elect.then(|| {
            tor.addr_add("lo", &format!("{ETCD_IP}/32")).unwrap();
            Etcd::start_fast(&tor, dir.path(), "etcd", ETCD_IP.parse().unwrap()).unwrap()
        });
        // The server: inside the policy's 10.0.4.0/24 and outside it (10.0.5.2), IPv6 the
        // same (::200 is excluded).
        veth(&tor, "eth4", &server_ns, "eth0").unwrap();
        for (t, s) in [
            ("10.0.4.1/24", "10.0.4.2/24"),
            ("10.0.5.1/24", "10.0.5.2/24"),
            ("fd00:10:0:4::1/64", "fd00:10:0:4::2/64"),
        ] {
            tor.addr_add("eth4", t).unwrap();
            server_ns.addr_add("eth0", s).unwrap();
        }
        server_ns.addr_add("eth0", "fd00:10:0:4::200/64").unwrap();
        server_ns
            .route_add(&["default", "via", "10.0.4.1"])
            .unwrap();
        server_ns
            .route_add(&["default", "via", "fd00:10:0:4::1"])
            .unwrap();
        let server = EchoServer::start(&server_ns, "server", 80, 5353).unwrap();

        let mut pods = Vec::new();
        for p in &PODS {
            let node = &nodes[p.node];
            let x = p.node + 1;
            let ns = Netns::new(&format!("eg-{}", p.name)).unwrap();
            let lxc = format!("lxc{}", p.n);
            veth(node, &lxc, &ns, "eth1").unwrap();
            node.addr_add(&lxc, &format!("10.1.{x}.1/32")).unwrap();
            node.addr_add(&lxc, "fe80::1/64").unwrap();
            node.route_add(&[&format!("{}/32", pod_v4(p)), "dev", &lxc])
                .unwrap();
            node.route_add(&[&format!("{}/128", pod_v6(p)), "dev", &lxc])
                .unwrap();
            ns.addr_add("eth1", &format!("{}/32", pod_v4(p))).unwrap();
            ns.addr_add("eth1", &format!("{}/128", pod_v6(p))).unwrap();
            let gw = format!("10.1.{x}.1");
            ns.route_add(&[&gw, "dev", "eth1", "scope", "link"])
                .unwrap();
            ns.route_add(&["default", "via", &gw, "dev", "eth1"])
                .unwrap();
            ns.route_add(&["default", "via", "fe80::1", "dev", "eth1"])
                .unwrap();
            pods.push(ns);
        }

        let mut cfgs = Vec::new();
        let mut pin_roots = Vec::new();
        for i in 0..3 {
            let cfg = dir.path().join(format!("node{}", i + 1)).join("config");
            std::fs::create_dir_all(&cfg).unwrap();
            std::fs::write(cfg.join("cluster.yaml"), cluster_yaml(gateways)).unwrap();
            cfgs.push(cfg);
            pin_roots.push(PathBuf::from(format!(
                "/sys/fs/bpf/{}-node{}",
                dir.path().file_name().unwrap().to_string_lossy(),
                i + 1
            )));
        }
        Lab {
            rackd: vec![None, None, None],
            k8s: None,
            etcd,
            server,
            pods,
            nodes,
            server_ns,
            tor,
            net1,
            gateways: gateways.to_vec(),
            cfgs,
            pin_roots,
            dir,
        }
    }

    pub fn start_rackd(&mut self, i: usize) {
        let node = format!("node{}", i + 1);
        let d = self.dir.path().join(&node);
        let (state, sock) = (d.join("state"), d.join("admin.sock"));
        let devices = if self.gateways.contains(&i) {
            "eth0,net1"
        } else {
            "eth0"
        };
        let etcd = format!("http://{ETCD_IP}:2379");
        // Where the objects come from: the node's directory, or the API server.
        let source = match &self.k8s {
            Some((_, kubeconfig)) => vec![
                "--k8s-kubeconfig-path",
                kubeconfig.to_str().unwrap(),
                "--k8s-namespace",
                "kube-system",
            ],
            None => vec!["--config-dir", self.cfgs[i].to_str().unwrap()],
        };
        let mut args = vec![env!("CARGO_BIN_EXE_rackd"), "--node-name", &node];
        args.extend(source);
        args.extend([
            "--state-dir",
            state.to_str().unwrap(),
            "--admin-socket",
            sock.to_str().unwrap(),
            "--bpf-pin-root",
            self.pin_roots[i].to_str().unwrap(),
            "--kube-proxy-replacement",
            "--devices",
            devices,
            "--enable-bpf-masquerade",
            "--enable-egress-gateway",
        ]);
        if self.etcd.is_some() || self.k8s.is_some() {
            args.extend_from_slice(&[
                "--enable-l2-announcements",
                "--l2-announcements-lease-duration",
                "1s",
                "--l2-announcements-renew-deadline",
                "500ms",
                "--l2-announcements-retry-period",
                "200ms",
            ]);
            if self.k8s.is_some() {
                args.extend_from_slice(&["--l2-lease-backend", "kubernetes"]);
            } else {
                args.extend_from_slice(&[
                    "--l2-lease-backend",
                    "etcd",
                    "--l2-etcd-endpoints",
                    &etcd,
                ]);
            }
        }
        let p = self.nodes[i]
            .spawn_host_mounts(self.dir.path(), &format!("rackd-{node}"), &args)
            .unwrap();
        self.rackd[i] = Some(p);
    }

    /// Runs the nodes on `cluster` from now on (objects and L2 leases from its API server, as
    /// `kubeconfig`'s ServiceAccount): gateways elected under Kubernetes Leases.
    pub fn use_kubernetes(&mut self, cluster: kubelab::Cluster, kubeconfig: PathBuf) {
        self.k8s = Some((cluster, kubeconfig));
    }

    /// SIGKILL rackd on node `i` (its pinned programs and maps stay).
    pub fn kill_rackd(&mut self, i: usize) {
        if let Some(mut p) = self.rackd[i].take() {
            p.kill9().unwrap();
        }
    }

    /// The node whose `net1` MAC the router has for `ip` (who answers ARP for it), if any.
    pub fn arp_holder(&self, ip: &str) -> Option<usize> {
        let n = self.tor.ip(&["neigh", "show", ip, "dev", "eth6"]).ok()?;
        let mac = n.split_whitespace().skip_while(|w| *w != "lladdr").nth(1)?;
        self.gateways
            .iter()
            .copied()
            .find(|&g| self.nodes[g].mac("net1").is_ok_and(|m| m == mac))
    }

    /// Writes `name` into every node's configuration directory.
    pub fn write_config(&self, name: &str, yaml: &str) {
        for c in &self.cfgs {
            let tmp = c.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, yaml).unwrap();
            std::fs::rename(&tmp, c.join(name)).unwrap();
        }
    }

    pub fn logs(&self) -> String {
        self.rackd
            .iter()
            .flatten()
            .map(|p| p.log_tail())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The source address the server saw for `GET /` from pod `k` to `dst`.
    pub fn seen_from(&self, k: usize, dst: IpAddr) -> netlab::Result<IpAddr> {
        let body = http_get(
            &self.pods[k],
            SocketAddr::new(dst, 80),
            Duration::from_secs(3),
        )?;
        let (_, client) = parse(&body).ok_or_else(|| netlab::Error::Io {
            path: "echo answer".into(),
            source: std::io::Error::other(body.clone()),
        })?;
        Ok(client.ip())
    }

    /// Waits until pod `k`'s requests to `dst` are seen from `want` (the datapath follows
    /// the configuration within a poll or two).
    pub fn wait_seen(&self, k: usize, dst: &str, want: &str) {
        let (dst, want): (IpAddr, IpAddr) = (dst.parse().unwrap(), want.parse().unwrap());
        wait_for(
            &format!("{} -> {dst} seen from {want}", PODS[k].name),
            Duration::from_secs(60),
            Duration::from_millis(300),
            || {
                Ok(match self.seen_from(k, dst) {
                    Ok(ip) if ip == want => Check::Ready(()),
                    other => Check::NotYet(format!("{other:?}\n{}", self.logs())),
                })
            },
        )
        .unwrap();
    }
}
