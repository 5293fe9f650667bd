//! BMP from the speaker (RFC 7854, RFC 9069 Loc-RIB) to a real collector, pmacct's `pmbmpd`,
//! in our namespace, while FRR peers with us: the collector learns the peer (Peer Up), what it
//! sends us (pre-policy Adj-RIB-In, even though our import policy rejects it), what we selected
//! and advertise (Loc-RIB: our own route), withdrawals of both, statistics, and the Peer Down.
//! A restarted collector gets the whole state again from the snapshot.
//!
//! Needs root and the `pmacct` package (scripts/setup.sh installs it).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bgpd::policy::Policy;
use bgpd::{BmpServerConfig, Family, PeerConfig, SpeakerConfig};
use bgpd_wire::{AsPath, Origin, PathAttributes};
use common::{NsSpeaker, ip};
use netlab::frr::Frr;
use netlab::pmbmpd::{Pmbmpd, records};
use netlab::{BgpConfig, Check, Neighbor, Route, wait_for};
use serde_json::Value;

const PORT: u16 = 1790;
const FRR_PREFIX: &str = "198.51.100.0/24";
const OUR_PREFIX: &str = "203.0.113.0/24";

fn wait_log(log: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_for(
        what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let r = records(log);
            Ok(if pred(&r) {
                Check::Ready(r)
            } else {
                Check::NotYet(std::fs::read_to_string(log).unwrap_or_default())
            })
        },
    )
    .unwrap()
}

fn has(r: &[Value], f: impl Fn(&Value) -> bool) -> bool {
    r.iter().any(f)
}

fn route(v: &Value, prefix: &str, loc: bool, withdraw: bool) -> bool {
    v["bmp_msg_type"] == "route_monitor"
        && v["ip_prefix"] == prefix
        && (v["is_loc"] == 1) == loc
        && (v["log_type"] == "withdraw") == withdraw
}

#[test]
fn the_collector_sees_what_the_node_receives_and_advertises() {
    assert!(
        netlab::pmbmpd::available(),
        "pmbmpd not installed: scripts/setup.sh installs pmacct"
    );
    let (dir, us_ns, frr_ns) = common::pair("bgpbmp");
    let frr_cfg = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(Neighbor::new(ip("10.0.0.1"), 65001).hold_time(9))
        .route(Route::new(FRR_PREFIX).unwrap());
    let frr = Frr::start_with(&frr_ns, dir.path(), "frr", &frr_cfg).unwrap();
    let collector = Pmbmpd::start(&us_ns, &dir, "pmbmpd", "127.0.0.1", PORT).unwrap();
    let log = collector.log.clone();
    let mut sc = SpeakerConfig::new(65001, "10.0.0.1".parse().unwrap());
    sc.listen = vec!["[::]:179".parse().unwrap()];
    let us = NsSpeaker::start(&us_ns, sc);
    let collector_cfg = |name: &str| BmpServerConfig {
        name: name.into(),
        address: format!("127.0.0.1:{PORT}").parse().unwrap(),
        sys_name: "node1".into(),
        adj_rib_in_pre: true,
        loc_rib: true,
        statistics_interval: Some(Duration::from_secs(1)),
    };
    us.block(us.speaker.set_bmp(vec![collector_cfg("pmbmpd")]))
        .unwrap();
    // Cilium's way: nothing imported; the collector still sees what the peer sent.
    let mut p = PeerConfig::new(ip("10.0.0.2"), 65002);
    p.hold_time = 9;
    p.import = Policy::reject_all();
    us.add_peer(p);
    us.block(us.speaker.add_local_route(
        Family::Ipv4Unicast,
        OUR_PREFIX.parse().unwrap(),
        PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            ..Default::default()
        },
    ))
    .unwrap();
    us.wait_established(ip("10.0.0.2"), || frr.logs());

    let r = wait_log(&log, "initiation, peer up, both routes, statistics", |r| {
        has(r, |v| v["bmp_msg_type"] == "init")
            && has(r, |v| {
                v["bmp_msg_type"] == "peer_up"
                    && v["peer_ip"] == "10.0.0.2"
                    && v["peer_asn"] == 65002
            })
            && has(r, |v| {
                route(v, FRR_PREFIX, false, false) && v["peer_ip"] == "10.0.0.2"
            })
            && has(r, |v| route(v, OUR_PREFIX, true, false))
            && has(r, |v| v["bmp_msg_type"] == "stats")
    });
    // FRR's route was rejected by our import policy: received (above), but never selected.
    // (FRR echoes our own route back with its AS prepended; that one is in the pre-policy
    // Adj-RIB-In too, as it was received.)
    assert!(!has(&r, |v| route(v, FRR_PREFIX, true, false)));

    // Withdrawals reach the collector: FRR's route (pre-policy) and ours (Loc-RIB).
    frr.configure(&[
        "router bgp 65002",
        "address-family ipv4 unicast",
        &format!("no network {FRR_PREFIX}"),
    ])
    .unwrap();
    us.block(
        us.speaker
            .remove_local_route(Family::Ipv4Unicast, OUR_PREFIX.parse().unwrap()),
    )
    .unwrap();
    wait_log(&log, "both withdrawals", |r| {
        has(r, |v| route(v, FRR_PREFIX, false, true))
            && has(r, |v| route(v, OUR_PREFIX, true, true))
    });

    // The collector restarts: the client reconnects and the new session starts from the
    // snapshot: the peer (Peer Up), and an announcement made while no collector listened.
    us.block(us.speaker.add_local_route(
        Family::Ipv4Unicast,
        OUR_PREFIX.parse().unwrap(),
        PathAttributes::default(),
    ))
    .unwrap();
    drop(collector);
    std::thread::sleep(Duration::from_millis(200));
    let collector2 = Pmbmpd::start(&us_ns, &dir, "pmbmpd2", "127.0.0.1", PORT).unwrap();
    let log2 = collector2.log.clone();
    wait_log(&log2, "the snapshot after a reconnect", |r| {
        has(r, |v| {
            v["bmp_msg_type"] == "peer_up" && v["peer_ip"] == "10.0.0.2"
        }) && has(r, |v| route(v, OUR_PREFIX, true, false))
    });

    // The peer goes away: Peer Down.
    drop(frr);
    wait_log(&log2, "peer down", |r| {
        has(r, |v| {
            v["bmp_msg_type"] == "peer_down" && v["peer_ip"] == "10.0.0.2"
        })
    });
    drop(us);
    drop(frr_ns);
}
