//! The lab's pods, reached directly: the ToR learns each node's PodCIDRs from rackd by BGP,
//! and the client fetches every pod's page over IPv4 and IPv6 and probes its UDP echo through
//! the ToR. Each answer must name the pod and show the client's own address (nothing on the
//! way translates it). Pod to pod across nodes and node to local pod work too. This is the
//! positive control for the service tests: when a VIP does not answer, the pods behind it do.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Lab, lab_file, text, wait};
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
