//! The L2 announcement lab shared by `tests/l2_lab.rs` and `benches/l2_failover.rs`
//! (`labs-and-testing.md` §6.2): three rackd nodes and a client on one bridge (kind's
//! 172.18.0.0/16 and fc00:f853:ccd:e793::/64), a management bridge with etcd on it, and a
//! copy of `configs/l2lab` (the seeds' pool, policy and deathstar service).
//!
//! The nodes hold the VIPs on `lo` (standing in for the service datapath that will deliver
//! them) with `arp_ignore=1`, so the kernel never answers ARP for them: only rackd's eBPF
//! responder does. The client's prober sends an ARP request and a neighbour solicitation for
//! the VIPs every 10 ms from a raw socket (a probe that cannot be sent fails the run) and
//! records every reply, gratuitous ARP and unsolicited NA with its source MAC; `run_fault`
//! requires its probes to have been answered, in the windows before the fault by the holder
//! of the time and after the failover by the new holder, each by it alone. `ping -D`
//! measures what a real client sees.
//!
//! Here: the lab itself (namespaces, etcd, the rackd nodes, their admin sockets). The fault
//! runs and their report are in `faults.rs`, the prober and `ping` in `client.rs`, the scale
//! run in `scale.rs`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_types
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netlab::etcd::Etcd;
use netlab::{Check, LabDir, Netns, PacketSocket, Process, Segment, wait_for};
use rackd_api::{Reply, Request};

mod client;
mod faults;
mod scale;

// Each binary that includes the lab (`l2_lab`, `l2_scale`, the `l2_failover` bench) uses a
// part of it.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use faults::*;
#[allow(unused_imports)]
pub use scale::*;

pub const VIP4: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 200);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xdead, 0xbeef, 0, 0, 0, 0);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 100);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfc00, 0xf853, 0xccd, 0xe793, 0, 0, 0, 0x100);
const ETCD_IP: &str = "10.99.0.100";

/// Lease timings given to rackd.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub lease: &'static str,
    pub renew: &'static str,
    pub retry: &'static str,
}

/// The fastest setting etcd honours (1 s TTL with a 100 ms election timeout).
pub const FAST: Timings = Timings {
    lease: "1s",
    renew: "500ms",
    retry: "200ms",
};
/// Cilium's defaults.
pub const CILIUM_DEFAULTS: Timings = Timings {
    lease: "15s",
    renew: "5s",
    retry: "2s",
};

/// Field order is drop order: rackd stops before its namespace goes.
pub struct Node {
    pub rackd: Option<Process>,
    pub name: String,
    pub ns: Netns,
    pub mac: [u8; 6],
    pub sock: PathBuf,
    pub state: PathBuf,
    pub pin_root: PathBuf,
}

/// Field order is drop order: the nodes' rackd processes and etcd stop before the namespaces and
/// segments go, and the directory goes last so nothing recreates files in it after removal.
pub struct L2Lab {
    pub nodes: Vec<Node>,
    /// With [`L2Lab::use_kubernetes`]: the nodes read their objects from this API server and
    /// keep their L2 leases in it, instead of the directory and etcd.
    pub k8s: Option<K8sPlane>,
    pub etcd: Etcd,
    pub client: Netns,
    pub client_mac: [u8; 6],
    pub seg: Segment,
    pub mgmt: Segment,
    pub cfg: PathBuf,
    pub timings: Timings,
    pub dir: LabDir,
}

/// A Kubernetes control plane on the management segment: its API server, its namespace,
/// and the kubeconfig rackd runs with.
pub struct K8sPlane {
    pub cluster: kubelab::Cluster,
    pub ns: Netns,
    pub kubeconfig: PathBuf,
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl L2Lab {
    /// Namespaces, addresses, etcd and a copy of `configs/l2lab`; rackd not started.
    /// `extra_yaml` is written into the config directory as `extra.yaml` when given.
    pub fn prepare(prefix: &str, timings: Timings, extra_yaml: Option<&str>) -> L2Lab {
        let dir = LabDir::new(prefix).unwrap();
        let seg = Segment::new("rk-l2seg").unwrap();
        let mgmt = Segment::new("rk-l2mgmt").unwrap();
        mgmt.netns()
            .addr_add("br0", &format!("{ETCD_IP}/24"))
            .unwrap();
        let etcd =
            Etcd::start_fast(mgmt.netns(), dir.path(), "etcd", ETCD_IP.parse().unwrap()).unwrap();

        let client = Netns::new("rk-l2cli").unwrap();
        seg.attach(&client, "eth0").unwrap();
        client.addr_add("eth0", &format!("{CLIENT4}/16")).unwrap();
        client.addr_add("eth0", &format!("{CLIENT6}/64")).unwrap();
        // The pool's IPv6 block is on this segment too (as kind's LB addresses would be).
        client
            .route_add(&["2001:db8:dead:beef::/64", "dev", "eth0"])
            .unwrap();
        let client_mac = parse_mac(&client.mac("eth0").unwrap());

        let cfg = dir.path().join("config");
        std::fs::create_dir_all(&cfg).unwrap();
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/l2lab"))
            .unwrap()
        {
            let p = e.unwrap().path();
            std::fs::copy(&p, cfg.join(p.file_name().unwrap())).unwrap();
        }
        if let Some(y) = extra_yaml {
            std::fs::write(cfg.join("extra.yaml"), y).unwrap();
        }

        let mut nodes = Vec::new();
        for i in 1..=3u8 {
            let name = format!("node{i}");
            let ns = Netns::new(&format!("rk-l2n{i}")).unwrap();
            // IPv6 addresses survive a link flap (the link-down fault), and the kernel never
            // answers ARP for the VIPs on lo: only the eBPF responder does.
            ns.write_sysctls(&[
                ("net.ipv6.conf.all.keep_addr_on_down", "1"),
                ("net.ipv6.conf.default.keep_addr_on_down", "1"),
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
            ])
            .unwrap();
            seg.attach(&ns, "eth0").unwrap();
            mgmt.attach(&ns, "eth1").unwrap();
            ns.addr_add("eth0", &format!("172.18.0.1{i}/16")).unwrap();
            ns.addr_add("eth0", &format!("fc00:f853:ccd:e793::1{i}/64"))
                .unwrap();
            ns.addr_add("eth1", &format!("10.99.0.1{i}/24")).unwrap();
            ns.addr_add("lo", &format!("{VIP4}/32")).unwrap();
            ns.addr_add("lo", &format!("{VIP6}/128")).unwrap();
            let mac = parse_mac(&ns.mac("eth0").unwrap());
            let pin_root = PathBuf::from(format!(
                "/sys/fs/bpf/{}-{name}",
                dir.path().file_name().unwrap().to_string_lossy()
            ));
            nodes.push(Node {
                sock: dir.path().join(format!("{name}.sock")),
                state: dir.path().join(format!("{name}-state")),
                name,
                ns,
                mac,
                pin_root,
                rackd: None,
            });
        }
        L2Lab {
            dir,
            seg,
            mgmt,
            k8s: None,
            etcd,
            client,
            client_mac,
            nodes,
            cfg,
            timings,
        }
    }

    /// [`L2Lab::prepare`], start rackd on every node, and wait until one node holds the VIPs.
    pub fn up(prefix: &str, timings: Timings) -> L2Lab {
        let mut lab = L2Lab::prepare(prefix, timings, None);
        for i in 0..lab.nodes.len() {
            lab.start(i);
        }
        lab.wait_settled(Duration::from_secs(30));
        lab
    }

    /// Runs the nodes against `plane` from now on: objects and L2 leases from its API server.
    pub fn use_kubernetes(&mut self, plane: K8sPlane) {
        self.k8s = Some(plane);
    }

    pub fn start(&mut self, i: usize) {
        let t = self.timings;
        let etcd = self.etcd.client_url().to_owned();
        let cfg = self.cfg.to_str().unwrap().to_owned();
        // Where the objects and the leases come from.
        let source: Vec<String> = match &self.k8s {
            Some(k) => vec![
                "--k8s-kubeconfig-path".into(),
                k.kubeconfig.display().to_string(),
                "--k8s-namespace".into(),
                "kube-system".into(),
                "--l2-lease-backend".into(),
                "kubernetes".into(),
            ],
            None => vec![
                "--config-dir".into(),
                cfg,
                "--l2-lease-backend".into(),
                "etcd".into(),
                "--l2-etcd-endpoints".into(),
                etcd,
            ],
        };
        let n = &mut self.nodes[i];
        let mut args = vec![
            env!("CARGO_BIN_EXE_rackd"),
            "--node-name",
            &n.name,
            "--state-dir",
            n.state.to_str().unwrap(),
            "--admin-socket",
            n.sock.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:9963",
            "--enable-l2-announcements",
            "--l2-announcements-lease-duration",
            t.lease,
            "--l2-announcements-renew-deadline",
            t.renew,
            "--l2-announcements-retry-period",
            t.retry,
            "--devices",
            "eth0",
            "--bpf-pin-root",
            n.pin_root.to_str().unwrap(),
        ];
        args.extend(source.iter().map(String::as_str));
        let log_name = format!(
            "rackd-{}-{}",
            n.name,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        n.rackd = Some(
            n.ns.spawn_host_mounts(self.dir.path(), &log_name, &args)
                .unwrap(),
        );
        let sock = n.sock.clone();
        wait_for(
            &format!("rackd on {} to answer", n.name),
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                n.rackd.as_mut().unwrap().check_running()?;
                Ok(match try_call(&sock, &Request::L2Leases) {
                    Some(Reply::L2Leases(_)) => netlab::Check::Ready(()),
                    other => netlab::Check::NotYet(format!("{other:?}")),
                })
            },
        )
        .unwrap();
    }

    /// The node's Prometheus text (rackd's metrics endpoint inside its namespace).
    pub fn metrics(&self, i: usize) -> String {
        self.nodes[i].ns.http_get("127.0.0.1:9963", "/metrics")
    }

    /// Datastore writes made so far by every running node (sum of `rackd_l2_datastore_writes`).
    pub fn datastore_writes(&self) -> u64 {
        (0..self.nodes.len())
            .map(|i| {
                self.metrics(i)
                    .lines()
                    .filter(|l| l.starts_with("rackd_l2_datastore_writes{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    pub fn call(&self, i: usize, req: &Request) -> Option<Reply> {
        try_call(&self.nodes[i].sock, req)
    }

    /// Index of the node whose MAC is `mac`.
    pub fn node_of(&self, mac: [u8; 6]) -> Option<usize> {
        self.nodes.iter().position(|n| n.mac == mac)
    }

    /// Nodes whose rackd says it answers for `vip` (from their own `rackctl l2 announcements`).
    pub fn holders(&self, vip: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if let Some(Reply::L2Announcements(a)) = self.call(i, &Request::L2Announcements)
                && a.iter().any(|a| a.ip == vip)
            {
                out.push(i);
            }
        }
        out
    }

    /// Whether the lab is settled for `vip`: exactly one node answers, every running node's
    /// lease table names it, and the client's neighbour entry points at it.
    fn settled(&self, vip: &str) -> Result<usize, String> {
        let h = self.holders(vip);
        let [holder] = h[..] else {
            return Err(format!("{vip}: holders {h:?}"));
        };
        let name = &self.nodes[holder].name;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.rackd.is_none() {
                continue;
            }
            let sees = match self.call(i, &Request::L2Leases) {
                Some(Reply::L2Leases(l)) => l.iter().any(|l| l.ip == vip && l.holder == *name),
                _ => false,
            };
            if !sees {
                return Err(format!("{vip}: {} does not see {name} as holder", n.name));
            }
        }
        if self.client_neigh(vip) != Some(self.nodes[holder].mac) {
            return Err(format!("{vip}: client neighbour entry is not {name}'s MAC"));
        }
        Ok(holder)
    }

    /// Waits until each VIP has exactly one holder that everyone agrees on and the client
    /// reaches both VIPs through their holders; returns (IPv4 holder, IPv6 holder). Each IP is
    /// its own group (its own claim), so the two may be different nodes.
    pub fn wait_settled(&self, timeout: Duration) -> (usize, usize) {
        wait_for(
            "each VIP to have one holder and the client to reach both",
            timeout,
            Duration::from_millis(50),
            || {
                if !self.client_reaches() {
                    return Ok(netlab::Check::NotYet("client cannot reach the VIPs".into()));
                }
                match (
                    self.settled(&VIP4.to_string()),
                    self.settled(&VIP6.to_string()),
                ) {
                    (Ok(a), Ok(b)) => Ok(netlab::Check::Ready((a, b))),
                    (Err(e), _) | (_, Err(e)) => Ok(netlab::Check::NotYet(e)),
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// One ping to each VIP.
    pub fn client_reaches(&self) -> bool {
        [VIP4.to_string(), VIP6.to_string()].iter().all(|ip| {
            self.client
                .exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", ip])
                .is_ok()
        })
    }

    /// The MAC the client's neighbour table holds for `ip`.
    pub fn client_neigh(&self, ip: &str) -> Option<[u8; 6]> {
        let out = self.client.ip(&["neigh", "show", ip]).ok()?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(parse_mac);
            }
        }
        None
    }

    pub fn log(&self, i: usize) -> String {
        self.nodes[i]
            .rackd
            .as_ref()
            .map(Process::log_tail)
            .unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("--- {} ---\n{}", self.nodes[i].name, self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for L2Lab {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            drop(n.rackd.take());
            if let Err(e) = datapath::uninstall(&n.pin_root) {
                eprintln!("uninstalling {}: {e}", n.pin_root.display());
            }
            let _ = std::fs::remove_dir(&n.pin_root);
        }
    }
}

fn try_call(sock: &Path, req: &Request) -> Option<Reply> {
    let s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    rackd_api::write_message(&s, req).ok()?;
    rackd_api::read_message(BufReader::new(&s)).ok()
}
