//! rackd end to end against a real FRR ToR in network namespaces: Cilium's BGPv2 YAML from
//! `configs/lab` in, sessions and routes with communities at FRR out; live config edits,
//! a broken file that must not disturb anything, and a clean SIGTERM.
#![allow(clippy::unwrap_used)]

use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netlab::frr::Frr;
use netlab::{Check, LabDir, Netns, Process, veth, wait_for};
use rackd_api::{Reply, Request};

const TOR_CONF: &str = "\
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

struct Lab {
    _dir: LabDir,
    cfg: PathBuf,
    sock: PathBuf,
    state: PathBuf,
    tor: Frr,
    node: Netns,
    _tor_ns: Netns,
    rackd: Option<Process>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

impl Lab {
    fn up(prefix: &str) -> Lab {
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
        let mut lab = Lab {
            cfg,
            sock,
            state,
            tor,
            node,
            _tor_ns: tor_ns,
            rackd: None,
            _dir: dir,
        };
        lab.start_rackd();
        lab
    }

    fn start_rackd(&mut self) {
        let args = [
            env!("CARGO_BIN_EXE_rackd"),
            "--node-name",
            "node1",
            "--config-dir",
            self.cfg.to_str().unwrap(),
            "--state-dir",
            self.state.to_str().unwrap(),
            "--admin-socket",
            self.sock.to_str().unwrap(),
            "--metrics-addr",
            "off",
        ];
        let p = self.node.spawn(self._dir.path(), "rackd", &args).unwrap();
        self.rackd = Some(p);
    }

    fn call(&self, req: &Request) -> Reply {
        let s = std::os::unix::net::UnixStream::connect(&self.sock).unwrap();
        rackd_api::write_message(&s, req).unwrap();
        rackd_api::read_message(BufReader::new(&s)).unwrap()
    }

    fn rackd_log(&self) -> String {
        self.rackd
            .as_ref()
            .map(|p| p.log_tail())
            .unwrap_or_default()
    }

    /// FRR's established-connection counter for a neighbour: it grows on every reset.
    fn established_count(&self, peer: &str) -> u64 {
        let n = self.tor.neighbors().unwrap();
        n[peer]["connectionsEstablished"].as_u64().unwrap_or(0)
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn rackd_peers_with_frr_from_cilium_yaml() {
    let mut lab = Lab::up("rk-frr");
    let t = Duration::from_secs(60);
    for peer in ["10.0.1.2", "fd00:10:0:1::2"] {
        if let Err(e) = lab.tor.wait_established(ip(peer), t) {
            panic!(
                "{e}\nFRR:\n{}\nrackd:\n{}",
                lab.tor.vtysh(&["show bgp summary"]).unwrap_or_default(),
                lab.rackd_log()
            );
        }
    }
    // PodCIDR with its community, the service's external IPs with standard and large
    // communities, both families, our AS first.
    let pod = lab.tor.wait_route("10.1.1.0/24", t).unwrap();
    assert_eq!(pod.as_path, vec![65001]);
    assert!(pod.communities.contains(&"65000:99".to_owned()), "{pod:?}");
    let svc = lab.tor.wait_route("20.0.10.1/32", t).unwrap();
    assert!(svc.communities.contains(&"65000:100".to_owned()), "{svc:?}");
    assert_eq!(svc.large_communities, vec!["65000:1:100".to_owned()]);
    lab.tor.wait_route("fd00:10:1:1::/64", t).unwrap();
    lab.tor.wait_route("2004::1/128", t).unwrap();
    // LB-IPAM: the seeds' deathstar gets its IPs from empire-ip-pool, advertised as /32 and
    // /128 with the Service advertisement's communities.
    let lb4 = lab.tor.wait_route("172.18.255.200/32", t).unwrap();
    assert!(lb4.communities.contains(&"65000:100".to_owned()), "{lb4:?}");
    lab.tor.wait_route("2001:db8:dead:beef::/128", t).unwrap();
    let Reply::LbipamPools(pools) = lab.call(&Request::LbipamPools) else {
        panic!("no pools reply");
    };
    println!("{}", rackctl::print::pools_table(&pools));
    assert_eq!(pools[0].ips_available, "18446744073709551622");

    // rackctl's view, through the admin socket, printed like `cilium bgp peers`.
    let Reply::BgpPeers(peers) = lab.call(&Request::BgpPeers) else {
        panic!("no peers reply");
    };
    let table = rackctl::print::peers_table(&[("node1".into(), peers.clone())]);
    println!("{table}");
    assert_eq!(peers.len(), 2, "{table}");
    assert!(
        peers.iter().all(|p| p.session_state == "established"),
        "{table}"
    );
    assert!(
        table.starts_with("Node    Local AS   Peer AS   Peer Address"),
        "{table}"
    );
    let v4 = peers
        .iter()
        .find(|p| p.peer_address == "10.0.1.2" || p.peer_address == "10.0.0.1")
        .unwrap();
    let fam4 = v4.families.iter().find(|f| f.afi == "ipv4").unwrap();
    // PodCIDR, the external IP and the LoadBalancer IP.
    assert_eq!(fam4.advertised, 3, "{table}");

    // The node's CiliumBGPNodeConfig, with Cilium's status fields.
    let Reply::BgpNodeConfig(nc) = lab.call(&Request::BgpNodeConfig) else {
        panic!("no node config reply");
    };
    let st = &nc.status.bgp_instances[0];
    assert_eq!(st.local_asn, 65001);
    assert!(
        st.peers
            .iter()
            .all(|p| p.peering_state == "established" && p.established_time.is_some()),
        "{nc:#?}"
    );
    assert!(
        st.peers.iter().all(|p| p
            .timers
            .as_ref()
            .is_some_and(|t| t.applied_hold_time_seconds == 9)),
        "{nc:#?}"
    );

    // Live edit: drop the IPv4 external IP. The route goes, the sessions stay.
    let before = (
        lab.established_count("10.0.1.2"),
        lab.established_count("fd00:10:0:1::2"),
    );
    let svc_path = lab.cfg.join("services.yaml");
    let text = std::fs::read_to_string(&svc_path).unwrap();
    std::fs::write(&svc_path, text.replace("\"20.0.10.1\", ", "")).unwrap();
    lab.tor
        .wait_no_route("20.0.10.1/32", Duration::from_secs(10))
        .unwrap();

    // Unselecting the service from its pool releases the IPs and withdraws the routes.
    let text = std::fs::read_to_string(&svc_path).unwrap();
    std::fs::write(
        &svc_path,
        text.replace("    org: empire\nspec:", "    org: rebel\nspec:"),
    )
    .unwrap();
    lab.tor
        .wait_no_route("172.18.255.200/32", Duration::from_secs(10))
        .unwrap();
    lab.tor
        .wait_no_route("2001:db8:dead:beef::/128", Duration::from_secs(10))
        .unwrap();

    // A broken file: one clear error, nothing withdrawn, no session reset.
    std::fs::write(lab.cfg.join("broken.yaml"), "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: x}\nspec: {ebgpMultihop: 0}\n---\n: : :\n").unwrap();
    let status = wait_for(
        "the config error to show",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let Reply::Status(s) = lab.call(&Request::Status) else {
                return Ok(Check::NotYet("no status".into()));
            };
            Ok(if s.config_errors.len() >= 2 {
                Check::Ready(s)
            } else {
                Check::NotYet(format!("{:?}", s.config_errors))
            })
        },
    );
    let status = match status {
        Ok(s) => s,
        Err(e) => panic!("{e}\nrackd:\n{}", lab.rackd_log()),
    };
    assert!(
        status
            .config_errors
            .iter()
            .all(|e| e.contains("broken.yaml")),
        "{:?}",
        status.config_errors
    );
    std::thread::sleep(Duration::from_secs(2));
    lab.tor
        .wait_route("10.1.1.0/24", Duration::from_secs(1))
        .unwrap();
    lab.tor
        .wait_route("2004::1/128", Duration::from_secs(1))
        .unwrap();
    let after = (
        lab.established_count("10.0.1.2"),
        lab.established_count("fd00:10:0:1::2"),
    );
    assert_eq!(before, after, "a config edit reset a session");

    // SIGTERM: clean stop, socket removed, FRR sees the sessions go.
    let mut p = lab.rackd.take().unwrap();
    p.sigterm().unwrap();
    let st = wait_for(
        "rackd to exit",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            Ok(match p.try_wait()? {
                Some(st) => Check::Ready(st),
                None => Check::NotYet(String::new()),
            })
        },
    )
    .unwrap();
    assert!(st.success(), "exit {st:?}\n{}", p.log_tail());
    assert!(!lab.sock.exists());
    lab.tor
        .wait_no_route("10.1.1.0/24", Duration::from_secs(10))
        .unwrap();
}

/// Graceful restart of our side (RFC 4724): rackd killed with SIGKILL, the ToR keeps our
/// routes (marked stale) while we are away, and takes them fresh again after we re-sync.
#[test]
fn rackd_kill9_keeps_routes_at_the_tor_until_resync() {
    let mut lab = Lab::up("rk-gr");
    let t = Duration::from_secs(60);
    lab.tor.wait_route("10.1.1.0/24", t).unwrap();
    lab.tor.wait_route("172.18.255.200/32", t).unwrap();
    lab.rackd.as_mut().unwrap().kill9().unwrap();
    // Well inside the 15 s restart time of configs/lab: the route is still there, stale.
    let stale = wait_for(
        "the ToR to mark our route stale",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            let j = lab.tor.json("show bgp ipv4 unicast 10.1.1.0/24 json")?;
            let paths = j["paths"].as_array().cloned().unwrap_or_default();
            Ok(
                if paths.iter().any(|p| p["stale"].as_bool() == Some(true)) {
                    Check::Ready(j)
                } else {
                    Check::NotYet(j.to_string())
                },
            )
        },
    );
    if let Err(e) = stale {
        panic!(
            "{e}\n{}",
            lab.tor
                .vtysh(&["show bgp neighbors 10.0.1.2"])
                .unwrap_or_default()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    lab.tor
        .wait_route("10.1.1.0/24", Duration::from_secs(1))
        .unwrap();
    lab.tor
        .wait_route("172.18.255.200/32", Duration::from_secs(1))
        .unwrap();

    // Back: the same IP for the LoadBalancer (persisted), and fresh routes.
    lab.start_rackd();
    lab.tor.wait_established(ip("10.0.1.2"), t).unwrap();
    wait_for(
        "fresh routes after re-sync",
        t,
        Duration::from_millis(100),
        || {
            let j = lab.tor.json("show bgp ipv4 unicast 10.1.1.0/24 json")?;
            let paths = j["paths"].as_array().cloned().unwrap_or_default();
            Ok(
                if !paths.is_empty() && paths.iter().all(|p| p["stale"].as_bool() != Some(true)) {
                    Check::Ready(())
                } else {
                    Check::NotYet(j.to_string())
                },
            )
        },
    )
    .unwrap();
    lab.tor
        .wait_route("172.18.255.200/32", Duration::from_secs(5))
        .unwrap();
}
