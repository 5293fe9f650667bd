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
    pub etcd: Etcd,
    pub client: Netns,
    pub client_mac: [u8; 6],
    pub seg: Segment,
    pub mgmt: Segment,
    pub cfg: PathBuf,
    pub timings: Timings,
    pub dir: LabDir,
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

    pub fn start(&mut self, i: usize) {
        let t = self.timings;
        let etcd = self.etcd.client_url().to_owned();
        let n = &mut self.nodes[i];
        let args = [
            env!("CARGO_BIN_EXE_rackd"),
            "--node-name",
            &n.name,
            "--config-dir",
            self.cfg.to_str().unwrap(),
            "--state-dir",
            n.state.to_str().unwrap(),
            "--admin-socket",
            n.sock.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:9963",
            "--enable-l2-announcements",
            "--l2-lease-backend",
            "etcd",
            "--l2-etcd-endpoints",
            &etcd,
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

// ---- the fault runs ---------------------------------------------------------------------------

/// A fault injected into the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of rackd (the node's kernel keeps running and still delivers traffic that
    /// reaches it).
    Kill9,
    /// The node dies: `kill -9` of rackd and its eth0 down at once (power loss, cable pull).
    Crash,
    /// `ip link set eth0 down` on the holder.
    LinkDown,
    /// SIGTERM: planned handover.
    Sigterm,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Kill9, Fault::Crash, Fault::LinkDown, Fault::Sigterm];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::Crash => "node crash (kill -9 + link down)",
            Fault::LinkDown => "link down",
            Fault::Sigterm => "SIGTERM",
        }
    }
}

/// What one fault run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub fault: Fault,
    /// The faulted node and the nodes holding (IPv4, IPv6) afterwards.
    pub old: usize,
    pub new: (usize, usize),
    /// Fault → first gratuitous ARP / unsolicited NA from the new owner, for the families
    /// the faulted node held.
    pub detect4: Option<Duration>,
    pub detect6: Option<Duration>,
    /// Longest gap between two ping replies after the fault, for the families the faulted
    /// node held.
    pub outage4: Option<Duration>,
    pub outage6: Option<Duration>,
    /// Prober windows (10 ms) in which two MACs answered, per family.
    pub double4: usize,
    pub double6: usize,
    /// Prober windows: each one an ARP request and a neighbour solicitation sent.
    pub requests: usize,
    /// Answers to the prober in the windows before the fault, per family (expected: only
    /// from the holders then, `before_holders`).
    pub before4: Answered,
    pub before6: Answered,
    pub before_holders: (usize, usize),
    /// Answers in the windows after the new holders (`new`) were settled, per family.
    pub after4: Answered,
    pub after6: Answered,
}

/// Answers of one family in the prober windows of one phase of a fault run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    /// Windows in the phase (each one a probe sent).
    pub windows: usize,
    /// How many of those windows each MAC answered in.
    pub by: BTreeMap<[u8; 6], usize>,
}

impl Answered {
    /// Problems, if the phase had no probes, or `owner` did not answer, or another MAC did.
    fn problems(&self, phase: &str, family: &str, lab: &L2Lab, owner: usize) -> Vec<String> {
        let owner_mac = lab.nodes[owner].mac;
        let name = |mac: &[u8; 6]| {
            lab.node_of(*mac)
                .map_or_else(|| mac_str(mac), |i| lab.nodes[i].name.clone())
        };
        let mut out = Vec::new();
        if self.windows == 0 {
            out.push(format!("{phase}: no {family} probe was sent"));
        } else if self.by.get(&owner_mac).copied().unwrap_or(0) == 0 {
            out.push(format!(
                "{phase}: {} (the holder) answered none of {} {family} probes",
                lab.nodes[owner].name, self.windows
            ));
        }
        for (mac, n) in &self.by {
            if *mac != owner_mac {
                out.push(format!(
                    "{phase}: {} answered {n} of {} {family} probes, but {} holds the address",
                    name(mac),
                    self.windows,
                    lab.nodes[owner].name
                ));
            }
        }
        out
    }
}

/// Injects `fault` into the holder of the IPv4 VIP (`target_v6`: of the IPv6 VIP), waits for
/// another node to answer for every VIP it held and for the client to follow, restores the
/// faulted node, and returns the figures.
pub fn run_fault(lab: &mut L2Lab, fault: Fault, target_v6: bool) -> RunResult {
    let (h4, h6) = lab.wait_settled(Duration::from_secs(60));
    let old = if target_v6 { h6 } else { h4 };
    let (moves4, moves6) = (h4 == old, h6 == old);
    let prober = Prober::start(lab, Duration::from_millis(10));
    let ping4 = Ping::start(lab, &VIP4.to_string());
    let ping6 = Ping::start(lab, &VIP6.to_string());
    std::thread::sleep(Duration::from_millis(300));
    let t_fault = Instant::now();
    let wall_fault = SystemTime::now();
    match fault {
        Fault::Kill9 => {
            lab.nodes[old].rackd.as_mut().unwrap().kill9().unwrap();
        }
        Fault::Crash => {
            lab.nodes[old].rackd.as_mut().unwrap().kill9().unwrap();
            lab.nodes[old].ns.link_down("eth0").unwrap();
        }
        Fault::LinkDown => lab.nodes[old].ns.link_down("eth0").unwrap(),
        Fault::Sigterm => lab.nodes[old].rackd.as_mut().unwrap().sigterm().unwrap(),
    }
    let new = wait_for(
        "other nodes to take the faulted node's VIPs over and the client to follow",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            if !lab.client_reaches() {
                return Ok(netlab::Check::NotYet("client cannot reach the VIPs".into()));
            }
            let mut got = Vec::new();
            for vip in [VIP4.to_string(), VIP6.to_string()] {
                let h: Vec<usize> = lab
                    .holders(&vip)
                    .into_iter()
                    .filter(|h| *h != old)
                    .collect();
                match h[..] {
                    [n] if lab.client_neigh(&vip) == Some(lab.nodes[n].mac) => got.push(n),
                    _ => return Ok(netlab::Check::NotYet(format!("{vip}: holders {h:?}"))),
                }
            }
            Ok(netlab::Check::Ready((got[0], got[1])))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let t_settled = Instant::now();
    // Some steady state under the new owners.
    std::thread::sleep(Duration::from_millis(300));
    let events = prober.stop();
    let outage4 = ping4.stop_and_max_gap(wall_fault);
    let outage6 = ping6.stop_and_max_gap(wall_fault);
    let first = |kind: Kind, n: usize| {
        let mac = lab.nodes[n].mac;
        events
            .events
            .iter()
            .find(|e| e.kind == kind && e.mac == mac && e.t >= t_fault)
            .map(|e| e.t - t_fault)
            .unwrap_or_else(|| {
                panic!(
                    "no {kind:?} from the new owner {}\n{}",
                    lab.nodes[n].name,
                    lab.logs()
                )
            })
    };
    let r = RunResult {
        fault,
        old,
        new,
        detect4: moves4.then(|| first(Kind::Garp4, new.0)),
        detect6: moves6.then(|| first(Kind::Una6, new.1)),
        outage4: moves4.then_some(outage4),
        outage6: moves6.then_some(outage6),
        double4: events.double_answers(Kind::Reply4),
        double6: events.double_answers(Kind::Reply6),
        requests: events.requests.len(),
        // Windows wholly before the fault, and those begun once the new holders were settled
        // (the ones in between see the handover).
        before4: events.answered(Kind::Reply4, |_, end| end.is_some_and(|e| e <= t_fault)),
        before6: events.answered(Kind::Reply6, |_, end| end.is_some_and(|e| e <= t_fault)),
        before_holders: (h4, h6),
        after4: events.answered(Kind::Reply4, |start, _| start >= t_settled),
        after6: events.answered(Kind::Reply6, |start, _| start >= t_settled),
    };
    // The prober is only evidence if it probed and was answered, by the holder of the time,
    // before the fault and after the failover.
    let problems: Vec<String> = [
        r.before4.problems("before the fault", "ARP", lab, h4),
        r.before6.problems("before the fault", "NS", lab, h6),
        r.after4.problems("after the failover", "ARP", lab, new.0),
        r.after6.problems("after the failover", "NS", lab, new.1),
    ]
    .concat();
    assert!(
        problems.is_empty(),
        "{} of {}: {}\n{r:?}\n{}",
        fault.name(),
        lab.nodes[old].name,
        problems.join("; "),
        lab.logs()
    );

    // Restore the faulted node; it rejoins without taking anything back.
    match fault {
        Fault::Kill9 => lab.start(old),
        Fault::Crash => {
            lab.nodes[old].ns.link_up("eth0").unwrap();
            lab.start(old);
        }
        Fault::Sigterm => {
            let status = lab.nodes[old]
                .rackd
                .as_mut()
                .unwrap()
                .wait_timeout(Duration::from_secs(10))
                .unwrap();
            assert!(
                status.is_some_and(|s| s.success()),
                "rackd did not exit cleanly on SIGTERM: {status:?}\n{}",
                lab.log(old)
            );
            lab.start(old);
        }
        Fault::LinkDown => lab.nodes[old].ns.link_up("eth0").unwrap(),
    }
    r
}

// ---- the prober ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ARP reply to the client.
    Reply4,
    /// Gratuitous ARP for the VIP.
    Garp4,
    /// Solicited NA to the client.
    Reply6,
    /// Unsolicited NA for the VIP.
    Una6,
}

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub t: Instant,
    pub kind: Kind,
    pub mac: [u8; 6],
}

#[derive(Debug, Default)]
pub struct Events {
    pub requests: Vec<Instant>,
    pub events: Vec<Event>,
}

impl Events {
    /// The request windows: from one request to the next (the last one: until the prober
    /// stopped, `None`).
    fn windows(&self) -> impl Iterator<Item = (Instant, Option<Instant>)> + '_ {
        self.requests
            .iter()
            .enumerate()
            .map(|(k, start)| (*start, self.requests.get(k + 1).copied()))
    }

    /// The MACs that sent `kind` in the window from `start` to `end`.
    fn macs_in(&self, kind: Kind, start: Instant, end: Option<Instant>) -> BTreeSet<[u8; 6]> {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.t >= start && end.is_none_or(|end| e.t < end))
            .map(|e| e.mac)
            .collect()
    }

    /// Request windows in which replies came from two MACs.
    pub fn double_answers(&self, kind: Kind) -> usize {
        self.windows()
            .filter(|(start, end)| self.macs_in(kind, *start, *end).len() > 1)
            .count()
    }

    /// The windows `(start, end)` selected by `phase`, and which MACs answered them.
    pub fn answered(
        &self,
        kind: Kind,
        phase: impl Fn(Instant, Option<Instant>) -> bool,
    ) -> Answered {
        let mut a = Answered::default();
        for (start, end) in self.windows().filter(|(s, e)| phase(*s, *e)) {
            a.windows += 1;
            for mac in self.macs_in(kind, start, end) {
                *a.by.entry(mac).or_default() += 1;
            }
        }
        a
    }
}

/// Raw-socket ARP/NS prober on the client's eth0.
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<std::io::Result<Events>>,
}

impl Prober {
    pub fn start(lab: &L2Lab, interval: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mac = lab.client_mac;
        let sock = PacketSocket::open(&lab.client, "eth0").unwrap();
        let handle = std::thread::spawn(move || probe_loop(&sock, mac, interval, &s));
        Prober { stop, handle }
    }

    /// Stops the prober; panics if it could not send a probe.
    pub fn stop(self) -> Events {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("prober: {e}"))
    }
}

/// Sends an ARP request and a neighbour solicitation every `interval` and records what
/// comes back, until `stop`. A probe that cannot be sent ends it with the error: a window
/// only counts once both frames of its probe went out.
fn probe_loop(
    sock: &PacketSocket,
    mac: [u8; 6],
    interval: Duration,
    stop: &AtomicBool,
) -> std::io::Result<Events> {
    let arp = datapath::packet::arp_request(mac, CLIENT4, VIP4);
    let ns = datapath::packet::neighbour_solicitation(mac, CLIENT6, VIP6);
    let mut ev = Events::default();
    let mut buf = [0u8; 2048];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            let failed = |what: &str, e: std::io::Error| {
                std::io::Error::new(
                    e.kind(),
                    format!("sending the {what} (probe {}): {e}", ev.requests.len() + 1),
                )
            };
            sock.send(&arp).map_err(|e| failed("ARP request", e))?;
            sock.send(&ns)
                .map_err(|e| failed("neighbour solicitation", e))?;
            ev.requests.push(now);
            next = now + interval;
        }
        let wait = next.saturating_duration_since(Instant::now());
        if !sock.wait_readable(wait.max(Duration::from_millis(1))) {
            continue;
        }
        while let Some(frame) = sock.recv_nowait(&mut buf) {
            let t = Instant::now();
            if let Some((kind, src)) = classify(frame, mac) {
                ev.events.push(Event { t, kind, mac: src });
            }
        }
    }
    Ok(ev)
}

/// ARP replies to us / gratuitous ARP for VIP4, solicited NA to us / unsolicited NA for VIP6.
fn classify(f: &[u8], me: [u8; 6]) -> Option<(Kind, [u8; 6])> {
    if f.len() < 14 {
        return None;
    }
    let src: [u8; 6] = f[6..12].try_into().ok()?;
    if src == me {
        return None;
    }
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0806 if f.len() >= 42 => {
            let op = u16::from_be_bytes([f[20], f[21]]);
            let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
            let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
            if spa != VIP4 {
                return None;
            }
            if op == 2 && tpa == CLIENT4 {
                Some((Kind::Reply4, src))
            } else if tpa == VIP4 {
                Some((Kind::Garp4, src))
            } else {
                None
            }
        }
        0x86dd if f.len() >= 78 && f[20] == 58 && f[54] == 136 => {
            let target: [u8; 16] = f[62..78].try_into().ok()?;
            if Ipv6Addr::from(target) != VIP6 {
                return None;
            }
            let solicited = f[58] & 0x40 != 0;
            Some((if solicited { Kind::Reply6 } else { Kind::Una6 }, src))
        }
        _ => None,
    }
}

// ---- ping ----------------------------------------------------------------------------------

/// `ping -D -i 0.01` from the client: what a real client experiences.
pub struct Ping {
    p: Process,
}

impl Ping {
    pub fn start(lab: &L2Lab, ip: &str) -> Ping {
        let name = format!(
            "ping-{}-{}",
            ip.replace(':', "_"),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let p = lab
            .client
            .spawn(
                lab.dir.path(),
                &name,
                &["ping", "-n", "-D", "-i", "0.01", "-W", "0.1", ip],
            )
            .unwrap();
        Ping { p }
    }

    /// Stops ping and returns the longest gap between two consecutive replies that spans or
    /// follows `fault`.
    pub fn stop_and_max_gap(mut self, fault: SystemTime) -> Duration {
        let _ = self.p.sigterm();
        let _ = self.p.wait_timeout(Duration::from_secs(5));
        let log = self.p.log();
        let fault = fault.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let times: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| {
                let s = l.strip_prefix('[')?;
                s[..s.find(']')?].parse().ok()
            })
            .collect();
        let mut max = 0f64;
        for w in times.windows(2) {
            if w[1] >= fault {
                max = max.max(w[1] - w[0]);
            }
        }
        if times.last().is_none_or(|l| *l < fault) {
            // No reply after the fault at all.
            return Duration::MAX;
        }
        Duration::from_secs_f64(max)
    }
}

// ---- statistics ------------------------------------------------------------------------------

/// (median, p95, max) in milliseconds.
pub fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = v.len();
    let median = if n % 2 == 1 {
        ms(v[n / 2])
    } else {
        (ms(v[n / 2 - 1]) + ms(v[n / 2])) / 2.0
    };
    let p95 = ms(v[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1]);
    (median, p95, ms(v[n - 1]))
}

/// A table of figures per fault kind.
pub fn report(results: &[RunResult]) -> String {
    let mut out = String::from(
        "| fault | runs | T_detect IPv4 median / p95 / max | T_detect IPv6 | T_outage IPv4 (ping) | T_outage IPv6 | two MACs |\n|---|---|---|---|---|---|---|\n",
    );
    for fault in Fault::ALL {
        let r: Vec<&RunResult> = results.iter().filter(|r| r.fault == fault).collect();
        if r.is_empty() {
            continue;
        }
        let f = |v: Vec<Duration>| {
            if v.is_empty() {
                return "-".to_owned();
            }
            let n = v.len();
            let (a, b, c) = stats(v);
            format!("{a:.0} / {b:.0} / {c:.0} ms (n={n})")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            fault.name(),
            r.len(),
            f(r.iter().filter_map(|r| r.detect4).collect()),
            f(r.iter().filter_map(|r| r.detect6).collect()),
            f(r.iter().filter_map(|r| r.outage4).collect()),
            f(r.iter().filter_map(|r| r.outage6).collect()),
            r.iter().map(|r| r.double4 + r.double6).sum::<usize>(),
        ));
    }
    out
}

// ---- scale ---------------------------------------------------------------------------------

/// Extra configuration: a /17 pool, a policy on eth0 and `n` single-stack LoadBalancer
/// Services (labelled `tier: scale`), each getting its own IPv4 address.
pub fn scale_yaml(n: usize) -> String {
    let mut y = String::with_capacity(n * 200 + 1024);
    y.push_str(
        "apiVersion: cilium.io/v2alpha1\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: scale-pool\nspec:\n  blocks:\n  - cidr: 10.200.0.0/17\n  serviceSelector:\n    matchLabels: {tier: scale}\n---\napiVersion: cilium.io/v2alpha1\nkind: CiliumL2AnnouncementPolicy\nmetadata:\n  name: scale\nspec:\n  serviceSelector:\n    matchLabels: {tier: scale}\n  interfaces: [\"^eth0$\"]\n  loadBalancerIPs: true\n",
    );
    for i in 0..n {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc{i}\n  namespace: scale\n  labels: {{tier: scale}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
        ));
    }
    y
}

/// Every address of 10.200.0.0/17 that answered an ARP request from the client, with the MACs
/// that answered it. Requests go out in bursts (a veth queue holds ~1,000 frames); addresses
/// that got no answer are asked again up to `rounds` times.
pub fn arp_sweep(
    lab: &L2Lab,
    targets: &[Ipv4Addr],
    rounds: usize,
) -> std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>> {
    let sock = PacketSocket::open(&lab.client, "eth0").unwrap();
    let mac = lab.client_mac;
    let targets = targets.to_vec();
    std::thread::spawn(move || {
        let mut answers: std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>> =
            std::collections::BTreeMap::new();
        let mut buf = [0u8; 2048];
        let mut drain = |answers: &mut std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>>,
                         wait: Duration| {
            loop {
                if !sock.wait_readable(wait) {
                    return;
                }
                let Some(f) = sock.recv_nowait(&mut buf) else {
                    continue;
                };
                if f.len() >= 42
                    && u16::from_be_bytes([f[12], f[13]]) == 0x0806
                    && u16::from_be_bytes([f[20], f[21]]) == 2
                    && Ipv4Addr::new(f[38], f[39], f[40], f[41]) == CLIENT4
                {
                    let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                    answers
                        .entry(spa)
                        .or_default()
                        .insert(f[22..28].try_into().unwrap());
                }
            }
        };
        for _ in 0..rounds {
            let todo: Vec<Ipv4Addr> = targets
                .iter()
                .filter(|t| !answers.contains_key(t))
                .copied()
                .collect();
            if todo.is_empty() {
                break;
            }
            for chunk in todo.chunks(256) {
                for t in chunk {
                    // A request the veth queue drops is asked again next round; what is
                    // checked is that every address answered.
                    let _ = sock.send(&datapath::packet::arp_request(mac, CLIENT4, *t));
                }
                drain(&mut answers, Duration::from_millis(2));
            }
            drain(&mut answers, Duration::from_millis(500));
        }
        answers
    })
    .join()
    .unwrap()
}

/// Peak RSS of a node's rackd, in MiB.
pub fn rackd_peak_rss_mib(lab: &L2Lab, i: usize) -> f64 {
    let pid = lab.nodes[i].rackd.as_ref().unwrap().pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// (IP, interface) entries each node answers for.
pub fn announced_counts(lab: &L2Lab) -> Vec<usize> {
    (0..lab.nodes.len())
        .map(|i| match lab.call(i, &Request::L2Announcements) {
            Some(Reply::L2Announcements(a)) => a.len(),
            _ => 0,
        })
        .collect()
}

/// Figures of [`scale_run`].
#[derive(Debug, Clone)]
pub struct ScaleFigures {
    pub services: usize,
    pub t_all_announced: Duration,
    pub split: Vec<usize>,
    pub t_sweep: Duration,
    pub peak_rss_mib: Vec<f64>,
    pub steady_writes_per_sec: f64,
    pub victim_groups: usize,
    pub t_failover: Duration,
    pub split_after: Vec<usize>,
    /// Claim/release transactions and all writes the survivors made for the failover.
    pub failover_txns: u64,
    pub failover_writes: u64,
}

/// Sum of one kind (or every kind, `None`) of `rackd_l2_datastore_writes` over `nodes`.
pub fn writes_of(lab: &L2Lab, nodes: &[usize], kind: Option<&str>) -> u64 {
    nodes
        .iter()
        .map(|i| {
            lab.metrics(*i)
                .lines()
                .filter(|l| l.starts_with("rackd_l2_datastore_writes{"))
                .filter(|l| kind.is_none_or(|k| l.contains(&format!("kind=\"{k}\""))))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Writes per second summed over the nodes, each measured between two refreshes of its own
/// metrics (rackd refreshes them every resync, 5 s), over at least `window`.
pub fn writes_per_sec(lab: &L2Lab, window: Duration) -> f64 {
    let next_change = |i: usize, after: u64| -> (Instant, u64) {
        loop {
            let v = writes_of(lab, &[i], None);
            if v != after {
                return (Instant::now(), v);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut total = 0.0;
    for i in 0..lab.nodes.len() {
        let (t0, v0) = next_change(i, writes_of(lab, &[i], None));
        std::thread::sleep(window);
        let (t1, v1) = next_change(i, writes_of(lab, &[i], None));
        total += (v1 - v0) as f64 / (t1 - t0).as_secs_f64();
    }
    total
}

/// `n` services over three nodes: all must answer ARP from exactly one MAC, spread over the
/// nodes; then kill -9 of the busiest node, and every address must answer again from a
/// survivor only. Panics on any violation. `measure_writes` adds the datastore write figures
/// (about a minute of sampling).
pub fn scale_run(n: usize, timings: Timings, measure_writes: bool) -> ScaleFigures {
    let t0 = Instant::now();
    let mut lab = L2Lab::prepare("l2-scale", timings, Some(&scale_yaml(n)));
    lab.client
        .route_add(&["10.200.0.0/17", "dev", "eth0"])
        .unwrap();
    for i in 0..3 {
        lab.start(i);
    }
    // LB-IPAM's addresses for the scale services, from node1.
    let targets: Vec<Ipv4Addr> = wait_for(
        "LB-IPAM to give every scale service an address",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let Some(Reply::LbipamServices(s)) = lab.call(0, &Request::LbipamServices) else {
                return Ok(Check::NotYet("no answer".into()));
            };
            let ips: Vec<Ipv4Addr> = s
                .iter()
                .filter(|s| s.namespace == "scale")
                .filter_map(|s| s.ips.first()?.parse().ok())
                .collect();
            Ok(if ips.len() == n {
                Check::Ready(ips)
            } else {
                Check::NotYet(format!("{} of {n}", ips.len()))
            })
        },
    )
    .unwrap();
    // +2: deathstar's two addresses.
    let announced = wait_for(
        "every address to be announced by some node",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let c = announced_counts(&lab);
            Ok(if c.iter().sum::<usize>() == n + 2 {
                Check::Ready(c)
            } else {
                Check::NotYet(format!("{c:?}"))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let t_up = t0.elapsed();
    assert!(
        announced.iter().all(|c| *c > 0),
        "all groups on one node: {announced:?}"
    );

    let check = |answers: &std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>>,
                 dead: Option<[u8; 6]>| {
        let missing = targets.iter().filter(|t| !answers.contains_key(t)).count();
        assert_eq!(missing, 0, "{missing} of {n} addresses got no ARP answer");
        let doubles: Vec<_> = answers
            .iter()
            .filter(|(_, m)| m.len() > 1)
            .take(5)
            .collect();
        assert!(doubles.is_empty(), "answered by two MACs: {doubles:?}");
        if let Some(dead) = dead {
            let from_dead = answers.values().filter(|m| m.contains(&dead)).count();
            assert_eq!(from_dead, 0, "{from_dead} answers from the killed node");
        }
    };
    let t = Instant::now();
    let answers = arp_sweep(&lab, &targets, 5);
    let t_sweep = t.elapsed();
    check(&answers, None);
    let peak_rss_mib: Vec<f64> = (0..3).map(|i| rackd_peak_rss_mib(&lab, i)).collect();
    let steady = if measure_writes {
        writes_per_sec(&lab, Duration::from_secs(10))
    } else {
        0.0
    };

    // kill -9 of the busiest node: its groups move to the survivors.
    let victim = (0..3).max_by_key(|i| announced[*i]).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let announced_before_kill = announced[victim];
    let dead_mac = lab.nodes[victim].mac;
    // Survivors' counters, freshly refreshed (metrics follow each 5 s resync).
    if measure_writes {
        std::thread::sleep(Duration::from_secs(6));
    }
    let (txn0, w0) = (
        writes_of(&lab, &survivors, Some("txn")),
        writes_of(&lab, &survivors, None),
    );
    let t = Instant::now();
    lab.nodes[victim].rackd.as_mut().unwrap().kill9().unwrap();
    let after = wait_for(
        "the survivors to announce everything",
        Duration::from_secs(240),
        Duration::from_millis(200),
        || {
            let c = announced_counts(&lab);
            let survivors: usize = (0..3).filter(|i| *i != victim).map(|i| c[i]).sum();
            Ok(if survivors == n + 2 {
                Check::Ready(c)
            } else {
                Check::NotYet(format!("{c:?}"))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let t_move = t.elapsed();
    // The killed node's datapath went quiet on its own (liveness guard): sweep again.
    let answers = arp_sweep(&lab, &targets, 5);
    check(&answers, Some(dead_mac));
    if measure_writes {
        std::thread::sleep(Duration::from_secs(6));
    }
    let failover_txns = writes_of(&lab, &survivors, Some("txn")).saturating_sub(txn0);
    let failover_writes = writes_of(&lab, &survivors, None).saturating_sub(w0);
    ScaleFigures {
        services: n,
        t_all_announced: t_up,
        split: announced.clone(),
        t_sweep,
        peak_rss_mib,
        steady_writes_per_sec: steady,
        victim_groups: announced_before_kill,
        t_failover: t_move,
        split_after: after,
        failover_txns,
        failover_writes,
    }
}
