//! The lab the rackd integration tests and benchmarks share: an FRR ToR (AS 65000, loopback
//! 10.0.0.1 / fd00:10::1) and one rackd node (`node1`, 10.0.1.2 / fd00:10:0:1::2) in network
//! namespaces, running a copy of `configs/lab`.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

pub mod route_watch;
pub mod shape_bench;

use std::io::BufReader;
use std::path::{Path, PathBuf};

use netlab::frr::Frr;
use netlab::{LabDir, Netns, Process, veth};
use rackd_api::{Reply, Request};

pub const TOR_CONF: &str = "\
frr defaults traditional
hostname tor
log stdout
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 10.0.1.2 remote-as external
 neighbor 10.0.1.2 update-source 10.0.0.1
 neighbor 10.0.1.2 password cilium123
 neighbor 10.0.1.2 timers connect 1
 neighbor fd00:10:0:1::2 remote-as external
 neighbor fd00:10:0:1::2 update-source fd00:10::1
 neighbor fd00:10:0:1::2 password cilium123
 neighbor fd00:10:0:1::2 capability extended-nexthop
 neighbor fd00:10:0:1::2 timers connect 1
 address-family ipv4 unicast
  neighbor 10.0.1.2 activate
  neighbor fd00:10:0:1::2 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 10.0.1.2 activate
  neighbor fd00:10:0:1::2 activate
 exit-address-family
";

/// Field order is drop order: rackd and FRR stop before their namespaces go, and the directory
/// goes last so a stopping rackd cannot recreate its state directory after the lab removed it.
pub struct Lab {
    pub rackd: Option<Process>,
    pub tor: Frr,
    pub node: Netns,
    pub tor_ns: Netns,
    pub cfg: PathBuf,
    pub sock: PathBuf,
    pub state: PathBuf,
    pub dir: LabDir,
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

impl Lab {
    /// Namespaces, addresses, FRR and a copy of `configs/lab`; rackd not started yet.
    pub fn prepare(prefix: &str) -> Lab {
        let dir = LabDir::new(prefix).unwrap();
        let tor_ns = Netns::new("rk-tor").unwrap();
        let node = Netns::new("rk-node").unwrap();
        veth(&tor_ns, "eth1", &node, "eth0").unwrap();
        // The ToR's loopback addresses (no dummy module on every kernel: use lo).
        tor_ns.addr_add("lo", "10.0.0.1/32").unwrap();
        tor_ns.addr_add("lo", "fd00:10::1/128").unwrap();
        tor_ns.addr_add("eth1", "10.0.1.1/24").unwrap();
        tor_ns.addr_add("eth1", "fd00:10:0:1::1/64").unwrap();
        node.addr_add("eth0", "10.0.1.2/24").unwrap();
        node.addr_add("eth0", "fd00:10:0:1::2/64").unwrap();
        node.route_add(&["10.0.0.0/8", "via", "10.0.1.1"]).unwrap();
        node.route_add(&["fd00::/16", "via", "fd00:10:0:1::1"])
            .unwrap();
        tor_ns.enable_forwarding().unwrap();
        let tor = Frr::start(&tor_ns, dir.path(), "tor", TOR_CONF).unwrap();
        let cfg = dir.path().join("config");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab"),
            &cfg,
        );
        let sock = dir.path().join("admin.sock");
        let state = dir.path().join("state");
        Lab {
            cfg,
            sock,
            state,
            tor,
            node,
            tor_ns,
            rackd: None,
            dir,
        }
    }

    /// The ToR and the node joined by a link with nothing but the kernel's IPv6 link-local
    /// addresses (BGP unnumbered), forwarding on both, FRR running `tor_conf`, and an empty
    /// configuration directory; rackd not started yet.
    pub fn prepare_unnumbered(prefix: &str, tor_conf: &str) -> Lab {
        let dir = LabDir::new(prefix).unwrap();
        let tor_ns = Netns::new("un-tor").unwrap();
        let node = Netns::new("un-node").unwrap();
        veth(&tor_ns, "eth1", &node, "eth0").unwrap();
        tor_ns.enable_forwarding().unwrap();
        node.enable_forwarding().unwrap();
        let tor = Frr::start(&tor_ns, dir.path(), "tor", tor_conf).unwrap();
        let cfg = dir.path().join("config");
        std::fs::create_dir_all(&cfg).unwrap();
        Lab {
            sock: dir.path().join("admin.sock"),
            state: dir.path().join("state"),
            cfg,
            tor,
            node,
            tor_ns,
            rackd: None,
            dir,
        }
    }

    /// [`Lab::prepare`] and start rackd.
    pub fn up(prefix: &str) -> Lab {
        let mut lab = Lab::prepare(prefix);
        lab.start_rackd();
        lab
    }

    pub fn start_rackd(&mut self) {
        self.start_rackd_with(&[]);
    }

    /// Start rackd with extra flags.
    pub fn start_rackd_with(&mut self, extra: &[&str]) {
        self.start_rackd_bin(env!("CARGO_BIN_EXE_rackd"), extra);
    }

    /// Start the rackd binary at `bin` (another build, for side-by-side benchmarks).
    pub fn start_rackd_bin(&mut self, bin: &str, extra: &[&str]) {
        let cfg = self.cfg.to_str().unwrap().to_owned();
        let mut args = vec!["--config-dir", cfg.as_str()];
        args.extend_from_slice(extra);
        self.start_rackd_bare(bin, &args);
    }

    /// Start the rackd binary at `bin` without the lab's configuration directory (the objects
    /// come from wherever `extra` says, e.g. the API server).
    pub fn start_rackd_bare(&mut self, bin: &str, extra: &[&str]) {
        let mut args = vec![
            bin,
            "--node-name",
            "node1",
            "--state-dir",
            self.state.to_str().unwrap(),
            "--admin-socket",
            self.sock.to_str().unwrap(),
            // Inside the node's own namespace, so parallel labs never collide.
            "--metrics-addr",
            "127.0.0.1:9963",
        ];
        args.extend_from_slice(extra);
        let p = self.node.spawn(self.dir.path(), "rackd", &args).unwrap();
        self.rackd = Some(p);
    }

    pub fn call(&self, req: &Request) -> Reply {
        let s = std::os::unix::net::UnixStream::connect(&self.sock).unwrap();
        rackd_api::write_message(&s, req).unwrap();
        rackd_api::read_message(BufReader::new(&s)).unwrap()
    }

    /// SIGTERM rackd and wait (10 s at most) for it to exit; keeps the process for its log.
    pub fn stop_rackd(&mut self) -> std::process::ExitStatus {
        let p = self.rackd.as_mut().expect("rackd is running");
        p.sigterm().unwrap();
        netlab::wait_for(
            "rackd to exit",
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(50),
            || {
                Ok(match p.try_wait()? {
                    Some(st) => netlab::Check::Ready(st),
                    None => netlab::Check::NotYet(p.log_tail()),
                })
            },
        )
        .unwrap()
    }

    pub fn rackd_log(&self) -> String {
        self.rackd
            .as_ref()
            .map(|p| p.log_tail())
            .unwrap_or_default()
    }

    /// FRR's established-connection counter for a neighbour: it grows on every reset.
    /// rackd's Prometheus text, fetched over HTTP inside the node's namespace ("" if it
    /// does not answer).
    pub fn metrics(&self) -> String {
        self.node.http_get("127.0.0.1:9963", "/metrics")
    }

    pub fn established_count(&self, peer: &str) -> u64 {
        let n = self.tor.neighbors().unwrap();
        n[peer]["connectionsEstablished"].as_u64().unwrap_or(0)
    }
}

/// The value after `name` in a benchmark's command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A shell command's trimmed stdout ("" if it cannot run): machine facts for result files.
#[allow(unused_imports)] // this module is compiled into test binaries that do not all use it
pub use netlab::figures::sh;
