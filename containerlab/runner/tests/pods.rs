//! The lab's pods, reached directly: the ToR learns each node's PodCIDRs from rackd by BGP,
//! and the client fetches every pod's page over IPv4 and IPv6 and probes its UDP echo through
//! the ToR. Each answer must name the pod and show the client's own address (nothing on the
//! way translates it). Pod to pod across nodes and node to local pod work too. This is the
//! positive control for the service tests: when a VIP does not answer, the pods behind it do.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{Lab, lab_file, text, wait};
use rackd_lab::topo;
use serde::Deserialize as _;
use serde_json::Value;

/// `(pod, node, IPv4, IPv6)`, as in `containerlab/rackd-bgp.clab.yml`.
const PODS: [(&str, &str, &str, &str); 4] = [
    ("deathstar-1", "node1", "10.1.1.11", "fd00:10:1:1::11"),
    ("deathstar-2", "node2", "10.1.2.12", "fd00:10:1:2::12"),
    ("deathstar-3", "node1", "10.1.1.13", "fd00:10:1:1::13"),
    ("deathstar-4", "node2", "10.1.2.14", "fd00:10:1:2::14"),
];

const CLIENT_V4: &str = "10.0.3.2";
const CLIENT_V6: &str = "fd00:10:0:3::2";

/// `pod=NAME client=ADDR:PORT\n` → `(NAME, ADDR:PORT)`.
fn parse_answer(s: &str) -> Result<(String, SocketAddr), String> {
    let line = s
        .strip_suffix('\n')
        .ok_or_else(|| format!("{s:?}: no newline"))?;
    let mut words = line.split(' ');
    let (Some(pod), Some(client), None) = (
        words.next().and_then(|w| w.strip_prefix("pod=")),
        words.next().and_then(|w| w.strip_prefix("client=")),
        words.next(),
    ) else {
        return Err(format!("{s:?} is not `pod=NAME client=ADDR:PORT`"));
    };
    let client = client
        .parse()
        .map_err(|e| format!("{s:?}: client address: {e}"))?;
    Ok((pod.to_owned(), client))
}

fn url(ip: &str) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]/")
    } else {
        format!("http://{ip}/")
    }
}

/// `curl` in `node` until it answers (routes may still be arriving), parsed.
fn fetch(lab: &Lab, node: &str, ip: &str) -> (String, SocketAddr) {
    let u = url(ip);
    wait(&format!("{u} from {node}"), Duration::from_secs(30), || {
        let out = lab.exec(node, &["curl", "-sS", "-g", "--max-time", "2", &u]);
        if !out.status.success() {
            return Err(text(&out));
        }
        parse_answer(&String::from_utf8_lossy(&out.stdout))
    })
}

/// `rackd-lab udp-probe` in `node`, parsed.
fn probe(lab: &Lab, node: &str, ip: &str) -> (String, SocketAddr) {
    let addr = SocketAddr::new(ip.parse().unwrap(), 5353).to_string();
    wait(
        &format!("UDP {addr} from {node}"),
        Duration::from_secs(30),
        || {
            let out = lab.exec(
                node,
                &["rackd-lab", "udp-probe", "--timeout-ms", "1000", &addr],
            );
            if !out.status.success() {
                return Err(text(&out));
            }
            parse_answer(&String::from_utf8_lossy(&out.stdout))
        },
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn client_reaches_every_pod_through_the_tor() {
    common::become_subreaper();
    let lab = Lab::up("pods", lab_file());
    let pids = lab.pids();
    let netns: Vec<String> = lab.state()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["netns"].as_str().unwrap().to_owned())
        .collect();

    // BGP first, so a failure below is about the pods, not the sessions.
    for node in ["node1", "node2"] {
        wait(
            &format!("{node}'s sessions"),
            Duration::from_secs(40),
            || {
                let out = lab.exec(node, &["rackctl", "-o", "json", "bgp", "peers"]);
                let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| text(&out))?;
                let up = v[node]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["session-state"] == "established")
                    .count();
                if up == 2 { Ok(()) } else { Err(v.to_string()) }
            },
        );
    }

    for (pod, _, v4, v6) in PODS {
        for (addr, client) in [(v4, CLIENT_V4), (v6, CLIENT_V6)] {
            let (name, seen) = fetch(&lab, "client", addr);
            assert_eq!(name, pod, "HTTP {addr}");
            assert_eq!(seen.ip(), ip(client), "HTTP {addr}: the pod saw {seen}");
            assert_ne!(seen.port(), 0);
            let (name, seen) = probe(&lab, "client", addr);
            assert_eq!(name, pod, "UDP {addr}");
            assert_eq!(seen.ip(), ip(client), "UDP {addr}: the pod saw {seen}");
        }
    }

    // Pod to pod across nodes (node1 → ToR → node2 and back), with the pod's own address.
    let (name, seen) = fetch(&lab, "deathstar-1", "10.1.2.12");
    assert_eq!((name.as_str(), seen.ip()), ("deathstar-2", ip("10.1.1.11")));
    let (name, seen) = fetch(&lab, "deathstar-4", "fd00:10:1:1::13");
    assert_eq!(
        (name.as_str(), seen.ip()),
        ("deathstar-3", ip("fd00:10:1:2::14"))
    );
    // A node reaches its own pods from its router address on the pod veths.
    let (name, seen) = fetch(&lab, "node1", "10.1.1.13");
    assert_eq!((name.as_str(), seen.ip()), ("deathstar-3", ip("10.1.1.1")));

    // The lab's LoadBalancer (what bootstrap.sh ends with): deathstar's two addresses,
    // forwarded by rackd's eBPF service datapath to a pod (`--kube-proxy-replacement` on
    // both nodes' command lines), over HTTP and the web Service's UDP echo.
    for vip in ["172.18.255.200", "2001:db8:dead:beef::"] {
        let (name, _) = fetch(&lab, "client", vip);
        assert!(name.starts_with("deathstar-"), "{vip}: {name}");
    }
    for web in ["20.0.10.1", "2004::1"] {
        let (name, _) = probe(&lab, "client", web);
        assert!(name.starts_with("deathstar-"), "UDP {web}: {name}");
    }

    // Negative check with the positive control above: an address in a PodCIDR with no pod
    // behind it does not answer.
    let out = lab.exec(
        "client",
        &["curl", "-sS", "--max-time", "2", "http://10.1.1.99/"],
    );
    assert!(!out.status.success(), "{}", text(&out));

    lab.down_and_assert_clean(&netns, &pids);
}

#[test]
fn answers_parse() {
    assert_eq!(
        parse_answer("pod=deathstar-1 client=[fd00:10:0:3::2]:41234\n").unwrap(),
        (
            "deathstar-1".into(),
            "[fd00:10:0:3::2]:41234".parse().unwrap()
        )
    );
    for bad in [
        "",
        "pod=x client=1.2.3.4:5",
        "pod=x\n",
        "pod=x client=nope\n",
        "pod=x client=1.2.3.4:5 more\n",
    ] {
        assert!(parse_answer(bad).is_err(), "{bad:?}");
    }
}

/// Every YAML document of `configs/lab/<file>`, as JSON values.
fn docs(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/lab")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn in_cidr(addr: IpAddr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    match (addr, net.parse::<IpAddr>().unwrap()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The topology, configs/lab's EndpointSlices and Nodes, and the pending Pod objects
/// (configs/lab/pods/) describe the same pods: names, nodes, addresses inside the node's
/// PodCIDRs, labels the deathstar Service selects.
#[test]
fn configs_match_the_topology() {
    let t = topo::load(&lab_file(), None).unwrap();
    let mut want: BTreeSet<(String, String, IpAddr)> = BTreeSet::new();
    for (pod, node, v4, v6) in PODS {
        want.insert((pod.into(), node.into(), ip(v4)));
        want.insert((pod.into(), node.into(), ip(v6)));
    }

    // The topology: each pod linked to its node, its addresses from its exec lines.
    let mut from_topo = BTreeSet::new();
    for (name, n) in t.nodes.iter().filter(|(k, _)| k.starts_with("deathstar-")) {
        let link = t
            .links
            .iter()
            .find(|l| l.a.node == *name || l.b.node == *name)
            .unwrap();
        let node = if link.a.node == *name {
            &link.b.node
        } else {
            &link.a.node
        };
        for (_, words) in &n.exec {
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            if let ["ip", "addr", "add", a, "dev", "eth1", ..] = w.as_slice() {
                let (a, len) = a.split_once('/').unwrap();
                assert!(len == "32" || len == "128", "{name}: {words:?}");
                from_topo.insert((name.clone(), node.clone(), ip(a)));
            }
        }
    }
    assert_eq!(from_topo, want, "topology");

    // Every pod address lies in its node's PodCIDRs.
    let nodes = docs("nodes.yaml");
    for (pod, node, addr) in &want {
        let n = nodes
            .iter()
            .find(|d| d["metadata"]["name"] == node.as_str())
            .unwrap();
        let cidrs = n["spec"]["podCIDRs"].as_array().unwrap();
        assert!(
            cidrs.iter().any(|c| in_cidr(*addr, c.as_str().unwrap())),
            "{pod} {addr} is outside {node}'s {cidrs:?}"
        );
    }

    // EndpointSlices: deathstar (with targetRefs) and web, both families, ready.
    let slices = docs("endpointslices.yaml");
    for svc in ["deathstar", "web"] {
        let mut got = BTreeSet::new();
        let mut families = BTreeSet::new();
        for s in slices
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
        {
            families.insert(s["addressType"].as_str().unwrap().to_owned());
            for e in s["endpoints"].as_array().unwrap() {
                assert_eq!(e["conditions"]["ready"], true, "{e}");
                let node = e["nodeName"].as_str().unwrap();
                let addr = ip(e["addresses"][0].as_str().unwrap());
                let pod = PODS
                    .iter()
                    .find(|p| ip(p.2) == addr || ip(p.3) == addr)
                    .unwrap()
                    .0;
                if svc == "deathstar" {
                    assert_eq!(e["targetRef"]["name"], pod, "{e}");
                }
                got.insert((pod.to_owned(), node.to_owned(), addr));
            }
        }
        assert_eq!(got, want, "{svc}'s EndpointSlices");
        assert_eq!(families.len(), 2, "{svc}: {families:?}");
    }

    // The Pod objects waiting for rackd's model.
    let pods = docs("pods.yaml");
    let services = docs("services.yaml");
    let deathstar = services
        .iter()
        .find(|s| s["metadata"]["name"] == "deathstar")
        .unwrap();
    let selector = deathstar["spec"]["selector"].as_object().unwrap();
    let mut got = BTreeSet::new();
    for p in &pods {
        assert_eq!(p["kind"], "Pod");
        assert_eq!(p["metadata"]["namespace"], "batuu");
        for (k, v) in selector {
            assert_eq!(&p["metadata"]["labels"][k], v, "{p}");
        }
        let name = p["metadata"]["name"].as_str().unwrap();
        let node = p["spec"]["nodeName"].as_str().unwrap();
        for a in p["status"]["podIPs"].as_array().unwrap() {
            got.insert((
                name.to_owned(),
                node.to_owned(),
                ip(a["ip"].as_str().unwrap()),
            ));
        }
    }
    assert_eq!(got, want, "pods.yaml");
}
