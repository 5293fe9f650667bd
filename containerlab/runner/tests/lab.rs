//! The lab file and the runner: the parser against malformed files, then the real
//! `containerlab/rackd-bgp.clab.yml` brought up under a private name with the `rackd-lab`
//! binary, checked (sessions, routes with communities at the ToR, a ping from the client) and
//! taken down without leaving a namespace, process or state file behind.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Lab, lab_file, text, wait};
use rackd_lab::{Role, TopoError, topo};
use serde_json::Value;

fn parse(src: &str) -> Result<topo::Topology, TopoError> {
    topo::parse(src, Path::new("/w/containerlab/t.clab.yml"), None)
}

/// The error with its causes, as the CLI prints it.
fn parse_err(src: &str) -> String {
    let e = parse(src).unwrap_err();
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

const GOOD: &str = "\
name: t
topology:
  nodes:
    a: { kind: linux, image: frrouting/frr:v8.4.0 }
    b: { kind: linux, image: alpine }
  links:
    - endpoints: [\"a:eth1\", \"b:eth1\"]
";

#[test]
fn the_lab_file_parses() {
    let t = topo::load(&lab_file(), None).unwrap();
    assert_eq!(t.name, "rackd-bgp");
    let roles: Vec<(&str, Role)> = t
        .nodes
        .values()
        .map(|n| (n.name.as_str(), n.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("client", Role::Plain),
            ("deathstar-1", Role::Plain),
            ("deathstar-2", Role::Plain),
            ("deathstar-3", Role::Plain),
            ("deathstar-4", Role::Plain),
            ("node1", Role::Rackd),
            ("node2", Role::Rackd),
            ("tor", Role::Frr)
        ]
    );
    assert_eq!(t.links.len(), 7);
    // The pods run this crate's echo server.
    for i in 1..=4 {
        let cmd = t.nodes[&format!("deathstar-{i}")].cmd.clone().unwrap();
        assert_eq!(cmd[..2], ["rackd-lab", "echo"], "{cmd:?}");
    }
    // Bind sources resolve against the file's directory and exist.
    for n in t.nodes.values() {
        for b in &n.binds {
            assert!(b.host.exists(), "{}: {:?}", n.name, b);
        }
    }
    let cfg = t.nodes["node1"].map_bound("/etc/rackd/config").unwrap();
    assert!(cfg.join("bgp.yaml").exists(), "{cfg:?}");
    assert!(
        t.nodes["tor"].bind_for("/etc/frr/frr.conf").is_some(),
        "ToR must bind frr.conf"
    );
    // A name override changes only the name.
    let t2 = topo::load(&lab_file(), Some("other")).unwrap();
    assert_eq!(t2.name, "other");
    assert_eq!(t2.nodes.len(), 8);
    parse(GOOD).unwrap();
}

#[test]
fn malformed_files_give_one_clear_error() {
    // (file, words the error must contain)
    let cases: &[(&str, &[&str])] = &[
        // Not YAML: the parser's line number comes through.
        ("name: t\ntopology: {nodes: [\n", &["t.clab.yml", "line"]),
        // Wrong shape, with the field path.
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, exec: \"ip link\"}\n",
            &["topology.nodes.a.exec", ":4:", "expected a list of strings"],
        ),
        (
            "topology:\n  nodes:\n    a: {kind: linux}\n",
            &["name", "missing", "containerlab requires"],
        ),
        ("name: t\n", &["topology", "missing"]),
        ("name: t\ntopology:\n  nodes: {}\n", &["no nodes"]),
        (
            "name: \"bad/name\"\ntopology:\n  nodes:\n    a: {kind: linux}\n",
            &["name \"bad/name\"", "'/'", ":1:"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: nokia_srlinux}\n",
            &[
                "topology.nodes.a.kind",
                "nokia_srlinux",
                "not supported by rackd-lab",
                "kind: linux",
                ":4:",
            ],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {image: alpine}\n",
            &["topology.nodes.a", "no kind"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, network-mode: host}\n",
            &[
                "topology.nodes.a.network-mode",
                "not supported by rackd-lab",
            ],
        ),
        (
            "name: t\ntopology:\n  defaults: {kind: linux}\n  nodes:\n    a: {kind: linux}\n",
            &["topology.defaults", ":3:", "not supported by rackd-lab"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, binds: [\"x:relative\"]}\n",
            &["topology.nodes.a.binds[0]", "absolute"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, exec: [\"ip addr add 'x\"]}\n",
            &["topology.nodes.a.exec[0]", "unclosed"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, image: rackd:dev}\n",
            &["topology.nodes.a", "cmd"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, exec: []}\n",
            &["topology.nodes.a.exec", "empty list"],
        ),
        // Links: unknown node, duplicate endpoint, interface names, endpoint count.
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"c:eth1\"]\n",
            &[
                "topology.links[0].endpoints[1]",
                "\"c:eth1\"",
                "unknown node \"c\"",
                "nodes: a",
                ":6:",
            ],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth1\", \"b:eth2\"]\n",
            &[
                "topology.links[1].endpoints[0]",
                "\"a:eth1\"",
                "duplicate endpoint",
                ":8:",
            ],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"b:averyveryverylongname\"]\n",
            &["links[0]", "averyveryverylongname", "longer than 15 bytes"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\"]\n",
            &["topology.links[0].endpoints", "1 item(s)", "at least 2"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"aeth1\", \"a:eth2\"]\n",
            &["topology.links[0].endpoints[0]", "node:iface"],
        ),
        (
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [{node: a, interface: eth1}, \"a:eth2\"]\n",
            &["topology.links[0].endpoints[0]", "found a mapping"],
        ),
    ];
    for (src, words) in cases {
        let e = parse_err(src);
        for w in *words {
            assert!(
                e.contains(w),
                "error for\n{src}\nis\n{e}\nwhich lacks {w:?}"
            );
        }
    }
}

// ---- the lab itself ----------------------------------------------------------------------

/// The ToR's paths for `prefix` as `(best, as path, communities, large communities)`.
fn tor_paths(lab: &Lab, prefix: &str) -> Vec<(bool, String, String, String)> {
    let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
    let v = lab.json(
        "tor",
        &[
            "vtysh",
            "-c",
            &format!("show bgp {afi} unicast {prefix} json"),
        ],
    );
    let s = |p: &Value, a: &str, b: &str| p[a][b].as_str().unwrap_or_default().to_owned();
    v["paths"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["bestpath"]["overall"].as_bool().unwrap_or(false),
                        s(p, "aspath", "string"),
                        s(p, "community", "string"),
                        s(p, "largeCommunity", "string"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lab_up_sessions_routes_ping_down() {
    common::become_subreaper();
    let t0 = Instant::now();
    let lab = Lab::up("t", lab_file());
    let state_dir = Path::new("/run/rackd-lab").join(&lab.name);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join("state.json")).unwrap())
            .unwrap();
    let pids: Vec<u32> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        pids.len(),
        8,
        "rackd x2, zebra, bgpd, four pods' echo servers: {state}"
    );
    let netns: Vec<String> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["netns"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(netns.len(), 8);

    // A second `up` of the same lab is refused and says so.
    let again = lab.cmd(&["up", lab.file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already up"), "{}", text(&again));
    // exec on a node the lab does not have.
    let nope = lab.exec("node9", &["true"]);
    assert!(!nope.status.success());
    assert!(text(&nope).contains("no node node9"), "{}", text(&nope));

    // Sessions established, seen from both rackd nodes through rackctl (RACKD_SOCKET is set by
    // exec).
    for node in ["node1", "node2"] {
        wait(
            &format!("{node}'s sessions"),
            Duration::from_secs(40),
            || {
                let out = lab.exec(node, &["rackctl", "-o", "json", "bgp", "peers"]);
                let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| text(&out))?;
                let peers = v[node].as_array().cloned().unwrap_or_default();
                let up = peers
                    .iter()
                    .filter(|p| p["session-state"] == "established")
                    .count();
                if up == 2 { Ok(()) } else { Err(v.to_string()) }
            },
        );
    }
    let table = lab.exec("node1", &["rackctl", "bgp", "peers"]);
    println!("{}", text(&table));
    assert!(text(&table).contains("established"));

    // The ToR holds both nodes' PodCIDRs (community 65000:99) and the service's external IPs
    // (65000:100 and large 65000:1:100) from configs/lab, in both families.
    let expect = [
        ("10.1.1.0/24", Some("65001"), "65000:99", ""),
        ("10.1.2.0/24", Some("65002"), "65000:99", ""),
        ("fd00:10:1:1::/64", Some("65001"), "65000:99", ""),
        ("fd00:10:1:2::/64", Some("65002"), "65000:99", ""),
        ("20.0.10.1/32", None, "65000:100", "65000:1:100"),
        ("2004::1/128", None, "65000:100", "65000:1:100"),
    ];
    for (prefix, asn, comm, large) in expect {
        wait(
            &format!("the ToR's route to {prefix}"),
            Duration::from_secs(20),
            || {
                let paths = tor_paths(&lab, prefix);
                let ok = paths.iter().any(|(best, _, _, _)| *best)
                    && paths.iter().all(|(_, p, c, l)| {
                        asn.is_none_or(|a| p == a)
                            && c.split(' ').any(|x| x == comm)
                            && (large.is_empty() || l.split(' ').any(|x| x == large))
                    });
                if ok {
                    Ok(())
                } else {
                    Err(format!("{paths:?}"))
                }
            },
        );
    }
    // Services come from both nodes.
    let svc: Vec<String> = tor_paths(&lab, "20.0.10.1/32")
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert!(
        svc.contains(&"65001".into()) && svc.contains(&"65002".into()),
        "{svc:?}"
    );

    // The rest of rackctl against the running node1, as an operator would use it.
    let ok = |args: &[&str]| {
        let out = lab.exec("node1", args);
        assert!(out.status.success(), "{args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = ok(&["rackctl", "status"]);
    assert!(status.contains("Node:            node1"), "{status}");
    assert!(
        status.contains("1 instance(s), 2/2 peers established"),
        "{status}"
    );
    assert!(status.contains("Config errors:   none"), "{status}");
    // `available`: what node1 originates (Cilium's columns, next hop 0.0.0.0).
    let avail = ok(&["rackctl", "bgp", "routes", "available", "ipv4", "unicast"]);
    let header = avail.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("Node    VRouter   Prefix")
            && header.contains("NextHop   Age")
            && header.trim_end().ends_with("Attrs"),
        "{avail}"
    );
    assert!(
        avail
            .lines()
            .any(|l| l.starts_with("node1") && l.contains("10.1.1.0/24") && l.contains("0.0.0.0")),
        "{avail}"
    );
    // `advertised` to one peer, and its JSON (Cilium's BgpRoute keys, keyed by node).
    let adv = ok(&[
        "rackctl",
        "bgp",
        "routes",
        "advertised",
        "ipv4",
        "unicast",
        "peer",
        "10.0.0.1",
    ]);
    assert!(
        adv.lines().any(|l| l.contains("10.0.0.1")
            && l.contains("20.0.10.1/32")
            && l.contains("{Communities: 65000:100}")),
        "{adv}"
    );
    let json = ok(&[
        "rackctl",
        "-o",
        "json",
        "bgp",
        "routes",
        "advertised",
        "ipv4",
        "unicast",
        "peer",
        "10.0.0.1",
    ]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let routes = v["node1"].as_array().cloned().unwrap_or_default();
    assert!(
        routes.iter().any(|r| r["prefix"] == "10.1.1.0/24"
            && r["neighbor"] == "10.0.0.1"
            && r["router-asn"] == 65001
            && r["paths"][0]["nlri"]["base64"].is_string()
            && r["paths"][0]["path-attributes"].is_array()),
        "{json}"
    );
    // Route policies rendered from the advertisements, named as Cilium names them.
    let pol = ok(&["rackctl", "bgp", "route-policies"]);
    assert!(
        pol.lines()
            .next()
            .unwrap_or_default()
            .starts_with("VRouter   Policy Name"),
        "{pol}"
    );
    assert!(pol.contains("tor-v4-ipv4-PodCIDR"), "{pol}");
    assert!(pol.contains("10.1.1.0/24"), "{pol}");
    // A bad argument is the CLI's own error, not the daemon's.
    let bad = lab.exec("node1", &["rackctl", "bgp", "routes", "advertised", "ipv4"]);
    assert!(!bad.status.success(), "{}", text(&bad));

    // The client reaches the ToR's loopback over the lab links.
    for dst in ["10.0.0.1", "fd00:10::1"] {
        let ping = lab.exec("client", &["ping", "-c1", "-W2", dst]);
        assert!(ping.status.success(), "ping {dst}:\n{}", text(&ping));
    }
    let st = lab.cmd(&["status", lab.file.to_str().unwrap()]);
    assert!(st.status.success(), "{}", text(&st));
    println!("up and checked in {:?}", t0.elapsed());

    // Down: nothing of ours is left.
    lab.down_and_assert_clean(&netns, &pids);
    let st = lab.cmd(&["status", lab.file.to_str().unwrap()]);
    assert!(!st.status.success());
    assert!(text(&st).contains("not up"), "{}", text(&st));
    // `down` again is a no-op.
    let again = lab.down();
    assert!(again.status.success());
    assert!(text(&again).contains("not up"), "{}", text(&again));
    println!("whole test {:?}", t0.elapsed());
}

#[test]
fn failed_up_names_the_line_and_leaves_nothing() {
    let dir = std::env::temp_dir().join(format!("rackd-lab-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fail.clab.yml");
    std::fs::write(
        &file,
        "name: fail\ntopology:\n  nodes:\n    a:\n      kind: linux\n      exec:\n        - ip link set eth1 up\n        - ip addr add 10.9.0.1/24 dev eth7\n    b: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n",
    )
    .unwrap();
    let lab = Lab {
        name: common::unique("f"),
        file: file.clone(),
    };
    let out = lab.cmd(&["up", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    for w in [
        "node a",
        "exec[1]",
        "ip addr add 10.9.0.1/24 dev eth7",
        "eth7",
    ] {
        assert!(msg.contains(w), "{msg}\nlacks {w:?}");
    }
    for node in ["a", "b"] {
        let ns = format!("rlab-{}-{node}", lab.name);
        assert!(
            !Path::new("/run/netns").join(&ns).exists(),
            "{ns} left behind"
        );
    }
    assert!(!Path::new("/run/rackd-lab").join(&lab.name).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
