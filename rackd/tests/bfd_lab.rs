//! BFD on rackd's BGP peers (issue 18), end to end against the lab's FRR ToR with bfdd: the
//! lab's `CiliumBGPPeerConfig` gains `bfd` (cilium#48251's shape), FRR's neighbours
//! `neighbor X bfd`. Single-hop BFD (RFC 5881) runs between the link's addresses, so here the
//! sessions peer with the ToR's link addresses rather than its loopback. rackd's sessions come up with BFD Up; `rackctl bgp peers` shows the
//! BFD column and the metrics `rackd_bgp_bfd_up`; when every packet between the node and the
//! ToR is dropped (links up, BGP hold time 9 s) the ToR loses rackd's routes through BFD;
//! when the path is back, BFD and then BGP return.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::Lab;
use netlab::{Check, wait_for};
use rackd_api::{Reply, Request};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `bfd` added to the lab's PeerConfig (300 ms / 300 ms / 3, as FRR's default profile).
fn with_bfd(peer_config: &str) -> String {
    let bfd = "  bfd:\n    enabled: true\n    desiredMinTxIntervalMicroseconds: 300000\n    \
               requiredMinRxIntervalMicroseconds: 300000\n    detectMultiplier: 3\n";
    let anchor = "  gracefulRestart:\n";
    assert!(peer_config.contains(anchor));
    peer_config.replacen(anchor, &format!("{bfd}{anchor}"), 1)
}

/// Every packet on the node's link to the ToR dropped, both ways (the link stays up; the
/// node's loopback, where its metrics answer, is untouched).
fn cut(lab: &Lab, on: bool) {
    let op = if on { "-I" } else { "-D" };
    for tool in ["iptables", "ip6tables"] {
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            lab.node
                .exec(&[tool, op, chain, dir, "eth0", "-j", "DROP"])
                .unwrap();
        }
    }
}

fn peers(lab: &Lab) -> Vec<rackd_api::BgpPeer> {
    match lab.call(&Request::BgpPeers) {
        Reply::BgpPeers(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn bfd_guards_rackds_sessions_with_frr() {
    let mut lab = Lab::prepare("rk-bfd");
    let bgp = lab.cfg.join("bgp.yaml");
    let text = std::fs::read_to_string(&bgp).unwrap();
    let text = text
        .replace("peerAddress: 10.0.0.1", "peerAddress: 10.0.1.1")
        .replace("peerAddress: fd00:10::1", "peerAddress: fd00:10:0:1::1");
    std::fs::write(&bgp, with_bfd(&text)).unwrap();
    lab.tor.start_bfdd(&lab.tor_ns, "").unwrap();
    lab.tor
        .configure(&[
            "router bgp 65000",
            "no neighbor 10.0.1.2 update-source",
            "no neighbor fd00:10:0:1::2 update-source",
            "neighbor 10.0.1.2 bfd",
            "neighbor fd00:10:0:1::2 bfd",
        ])
        .unwrap();
    lab.start_rackd();
    let t = Duration::from_secs(60);
    for peer in ["10.0.1.2", "fd00:10:0:1::2"] {
        if let Err(e) = lab.tor.wait_established(ip(peer), t) {
            panic!(
                "{e}\nFRR:\n{}\nrackd:\n{}",
                lab.tor
                    .vtysh(&["show bgp summary", "show bfd peers"])
                    .unwrap_or_default(),
                lab.rackd_log()
            );
        }
    }
    lab.tor.wait_route("10.1.1.0/24", t).unwrap();
    // rackd's view: both peers' BFD sessions up, in the table and the metrics.
    let ps = wait_for(
        "rackd's BFD sessions up",
        t,
        Duration::from_millis(200),
        || {
            let ps = peers(&lab);
            Ok(
                if ps.len() == 2
                    && ps
                        .iter()
                        .all(|p| p.bfd.as_ref().is_some_and(|b| b.state == "up"))
                {
                    Check::Ready(ps)
                } else {
                    Check::NotYet(format!("{ps:#?}"))
                },
            )
        },
    )
    .unwrap();
    let table = rackctl::print::peers_table(&[("node1".into(), ps.clone())]);
    println!("{table}");
    assert!(table.lines().next().unwrap().contains("BFD"), "{table}");
    for p in &ps {
        let b = p.bfd.as_ref().unwrap();
        assert_eq!(
            (
                b.transmit_interval_milliseconds,
                b.detection_time_milliseconds
            ),
            (300, 900)
        );
    }
    let m = lab.metrics();
    assert!(
        m.contains("rackd_bgp_bfd_up{vrouter=\"65001\",peer=\"10.0.1.1\"} 1"),
        "{m}"
    );

    // A dead path, links up: the ToR's routes from rackd go well before the 9 s hold time,
    // and rackd's session is down by BFD.
    cut(&lab, true);
    let t0 = Instant::now();
    lab.tor
        .wait_no_route("10.1.1.0/24", Duration::from_secs(30))
        .unwrap();
    let gone = t0.elapsed();
    eprintln!("ToR lost rackd's PodCIDR {gone:?} after the cut (BFD 300 ms x 3, hold 9 s)");
    assert!(
        gone < Duration::from_secs(9),
        "routes went with the hold timer, not BFD: {gone:?}"
    );
    let ps = wait_for(
        "rackd's sessions reset by BFD",
        t,
        Duration::from_millis(100),
        || {
            let ps = peers(&lab);
            Ok(
                if ps
                    .iter()
                    .all(|p| p.bfd.as_ref().is_some_and(|b| b.state != "up"))
                {
                    Check::Ready(ps)
                } else {
                    Check::NotYet(format!("{ps:#?}"))
                },
            )
        },
    )
    .unwrap();
    assert!(
        ps.iter()
            .all(|p| p.session_state != rackd_api::SessionState::Established),
        "{ps:#?}"
    );
    let m = lab.metrics();
    assert!(
        m.contains("rackd_bgp_bfd_up{vrouter=\"65001\",peer=\"10.0.1.1\"} 0"),
        "{m}"
    );

    // The path back: BFD, then BGP, then the routes.
    cut(&lab, false);
    lab.tor.wait_established(ip("10.0.1.2"), t).unwrap();
    lab.tor.wait_route("10.1.1.0/24", t).unwrap();
}
