//! Interop with a real collector: pmacct's `pmbmpd` (Debian package `pmacct`) in a network
//! namespace, logging every decoded BMP message as JSON lines (`bmp_daemon_msglog_file`).
//!
//! Needs root (namespaces). The namespace, the collector process (by PID, via `netlab`) and
//! the scratch directory are cleaned up on drop, also when an assertion fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bmp::{
    ClientConfig, ConnState, LocRibInfo, LocRibState, PeerDownReason, PeerInfo, PeerState, Rib,
    Snapshot, SnapshotSource,
};
use common::{ip, open, updates, withdrawals};
use netlab::pmbmpd::{Pmbmpd, available as pmbmpd_available, records};
use netlab::{LabDir, Netns};
use serde_json::Value;

const PORT: u16 = 1790;

async fn wait_log(log: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..200 {
        let r = records(log);
        if pred(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}; collector log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn of_type<'a>(r: &'a [Value], t: &str) -> Vec<&'a Value> {
    r.iter().filter(|v| v["bmp_msg_type"] == t).collect()
}

fn prefixes(r: &[Value]) -> Vec<String> {
    let mut p: Vec<String> = of_type(r, "route_monitor")
        .iter()
        .filter_map(|v| v["ip_prefix"].as_str().map(str::to_owned))
        .collect();
    p.sort();
    p
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Snapshot>>);

impl SnapshotSource for Shared {
    async fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap().clone()
    }
}

fn peer_info() -> PeerInfo {
    PeerInfo {
        address: ip("192.0.2.2"),
        asn: 65002,
        bgp_id: Ipv4Addr::new(2, 2, 2, 2),
        local_address: ip("192.0.2.1"),
        local_port: 41234,
        remote_port: 179,
        post_policy: false,
        up_since: SystemTime::now(),
        families: bmp::UNICAST_FAMILIES.to_vec(),
    }
}

fn loc_rib_info() -> LocRibInfo {
    LocRibInfo {
        asn: 65001,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        distinguisher: 0,
        table_name: Some("global".into()),
        filtered: false,
        families: bmp::UNICAST_FAMILIES.to_vec(),
    }
}

const PEER_PREFIXES: [&str; 4] = [
    "198.51.100.0/24",
    "203.0.113.0/25",
    "2001:db8:1::/48",
    "2001:db8:2::/48",
];
const LOC_RIB_PREFIXES: [&str; 2] = ["10.10.0.0/16", "2001:db8:aa::/48"];

fn peer_updates() -> Vec<bytes::Bytes> {
    updates(
        &[65002, 65010],
        Ipv4Addr::new(192, 0, 2, 2),
        "2001:db8::2".parse().unwrap(),
        &PEER_PREFIXES,
    )
}

fn loc_rib_updates() -> Vec<bytes::Bytes> {
    updates(
        &[65002],
        Ipv4Addr::new(192, 0, 2, 2),
        "2001:db8::2".parse().unwrap(),
        &LOC_RIB_PREFIXES,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn wait_state(h: &bmp::BmpHandle, pred: impl Fn(&ConnState) -> bool) {
    let mut rx = h.state();
    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|s| pred(s)))
        .await
        .unwrap_or_else(|_| panic!("client state stuck at {:?}", *h.state().borrow()))
        .unwrap();
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new(SocketAddr::from(([127, 0, 0, 1], PORT)), "node-1");
    c.min_backoff = Duration::from_millis(100);
    c.max_backoff = Duration::from_millis(500);
    c
}

/// Live events, one of each message type the router sends, decoded by pmbmpd.
#[test]
fn pmbmpd_decodes_live_events() {
    // A missing collector is a failure, never a silent pass (scripts/setup.sh installs it).
    assert!(
        pmbmpd_available(),
        "pmbmpd not installed: scripts/setup.sh installs pmacct"
    );
    let dir = LabDir::new("bmp").unwrap();
    let ns = Netns::new("bmp").unwrap();
    let mut collector = Pmbmpd::start(&ns, &dir, "pmbmpd", "127.0.0.1", PORT).unwrap();
    let log = collector.log.clone();
    let source = Shared::default();
    ns.enter(|| {
        runtime().block_on(async {
            let (h, task) = bmp::spawn(config(), source.clone());
            wait_state(&h, |s| matches!(s, ConnState::Established { .. })).await;
            let r = wait_log(&log, "init", |r| !of_type(r, "init").is_empty()).await;
            let init = of_type(&r, "init")[0].clone();
            eprintln!("init: {init}");
            assert_eq!(init["bmp_init_info_sysname"], "node-1");

            h.peer_up(
                peer_info(),
                open(65001, Ipv4Addr::new(1, 1, 1, 1)),
                open(65002, Ipv4Addr::new(2, 2, 2, 2)),
            );
            for u in peer_updates() {
                h.route_monitoring(Rib::Peer(ip("192.0.2.2")), u);
            }
            h.loc_rib_up(loc_rib_info());
            for u in loc_rib_updates() {
                h.route_monitoring(Rib::LocRib, u);
            }
            for u in withdrawals(&["203.0.113.0/25"]) {
                h.route_monitoring(Rib::Peer(ip("192.0.2.2")), u);
            }
            h.statistics(
                Rib::Peer(ip("192.0.2.2")),
                vec![bmp::Stat::Gauge {
                    kind: bmp::header::stat_type::ADJ_RIB_IN_ROUTES,
                    value: 3,
                }],
            );
            h.peer_down(ip("192.0.2.2"), PeerDownReason::RemoteNoData);
            h.loc_rib_down();
            h.shutdown().await;
            task.await.unwrap();
            let r = wait_log(&log, "term", |r| !of_type(r, "term").is_empty()).await;
            for v in &r {
                eprintln!("{v}");
            }

            let ups = of_type(&r, "peer_up");
            assert_eq!(ups.len(), 2, "peer up of the peer and of the Loc-RIB");
            assert!(ups.iter().any(|v| v["peer_ip"] == "192.0.2.2"));
            let rm = of_type(&r, "route_monitor");
            let peer_rm: Vec<_> = rm.iter().filter(|v| v["peer_ip"] == "192.0.2.2").collect();
            let mut want: Vec<String> = PEER_PREFIXES
                .iter()
                .chain(LOC_RIB_PREFIXES.iter())
                .map(|s| s.to_string())
                .collect();
            want.push("203.0.113.0/25".into()); // the withdrawal
            want.sort();
            assert_eq!(prefixes(&r), want, "every prefix decoded");
            assert!(
                peer_rm.iter().any(|v| v["log_type"] == "withdraw"),
                "withdrawal decoded"
            );
            let loc: Vec<_> = rm
                .iter()
                .filter(|v| {
                    LOC_RIB_PREFIXES
                        .iter()
                        .any(|p| v["ip_prefix"].as_str() == Some(p))
                })
                .collect();
            assert_eq!(loc.len(), 2);
            for v in &loc {
                // pmacct 1.7.7 decodes peer type 3: is_loc, zero peer address.
                assert_eq!(v["is_loc"], 1, "RFC 9069 Loc-RIB route: {v}");
                assert_eq!(v["peer_ip"], "0.0.0.0");
            }
            let loc_up = ups.iter().find(|v| v["peer_type"] == 3).unwrap();
            assert_eq!(loc_up["peer_asn"], 65001);
            assert_eq!(loc_up["bgp_id"], "1.1.1.1");
            // The VRF/Table Name TLV (type 3), which pmacct prints as hex: "global".
            assert_eq!(loc_up["bmp_peer_up_info_3"], "67-6C-6F-62-61-6C");
            let peer_up = ups.iter().find(|v| v["peer_type"] == 0).unwrap();
            assert_eq!(peer_up["peer_asn"], 65002);
            assert_eq!(peer_up["local_ip"], "192.0.2.1");
            assert_eq!(peer_up["local_port"], 41234);
            let v6 = rm
                .iter()
                .find(|v| v["ip_prefix"] == "2001:db8:1::/48")
                .unwrap();
            assert_eq!(v6["bgp_nexthop"], "2001:db8::2");
            assert_eq!(v6["as_path"], "65002 65010");
            let downs = of_type(&r, "peer_down");
            assert_eq!(downs.len(), 2);
            assert!(
                downs
                    .iter()
                    .any(|v| v["peer_ip"] == "192.0.2.2" && v["reason_type"] == 4)
            );
            assert!(
                downs
                    .iter()
                    .any(|v| v["peer_type"] == 3 && v["reason_type"] == 6)
            );
            let stats = of_type(&r, "stats");
            assert_eq!(stats.len(), 1);
            assert_eq!(stats[0]["counter_type"], 7);
            assert_eq!(stats[0]["counter_value"], 3);
            assert_eq!(
                of_type(&r, "term")[0]["bmp_term_info_reason"],
                "Session administratively closed"
            );
        })
    })
    .unwrap();
    collector.process.check_running().unwrap();
}

/// The collector restarts: the client reconnects and replays Initiation and the state.
#[test]
fn reconnects_and_resyncs_after_collector_restart() {
    // A missing collector is a failure, never a silent pass (scripts/setup.sh installs it).
    assert!(
        pmbmpd_available(),
        "pmbmpd not installed: scripts/setup.sh installs pmacct"
    );
    let dir = LabDir::new("bmp").unwrap();
    let ns = Netns::new("bmp").unwrap();
    let mut first = Pmbmpd::start(&ns, &dir, "pmbmpd-1", "127.0.0.1", PORT).unwrap();
    let log1 = first.log.clone();
    let source = Shared::default();
    *source.0.lock().unwrap() = Snapshot {
        peers: vec![PeerState {
            info: peer_info(),
            sent_open: open(65001, Ipv4Addr::new(1, 1, 1, 1)),
            received_open: open(65002, Ipv4Addr::new(2, 2, 2, 2)),
            updates: peer_updates(),
        }],
        loc_rib: Some(LocRibState {
            info: loc_rib_info(),
            updates: loc_rib_updates(),
        }),
    };
    let rt = runtime();
    let (h, task) = ns
        .enter(|| rt.block_on(async { bmp::spawn(config(), source.clone()) }))
        .unwrap();
    let dump_done = |r: &[Value]| {
        !of_type(r, "init").is_empty()
            && of_type(r, "peer_up").len() == 2
            && prefixes(r).len() == PEER_PREFIXES.len() + LOC_RIB_PREFIXES.len()
    };
    ns.enter(|| {
        rt.block_on(async {
            wait_state(&h, |s| *s == ConnState::Established { session: 1 }).await;
            wait_log(&log1, "first dump", dump_done).await;
        })
    })
    .unwrap();

    // Collector goes away (SIGTERM, then SIGKILL if needed); a fresh one comes up.
    first.process.stop().unwrap();
    ns.enter(|| {
        rt.block_on(async {
            wait_state(&h, |s| !matches!(s, ConnState::Established { .. })).await;
        })
    })
    .unwrap();
    // The state changes while disconnected: one more Loc-RIB prefix.
    source
        .0
        .lock()
        .unwrap()
        .loc_rib
        .as_mut()
        .unwrap()
        .updates
        .extend(updates(
            &[65002],
            Ipv4Addr::new(192, 0, 2, 2),
            "2001:db8::2".parse().unwrap(),
            &["10.20.0.0/16"],
        ));
    let second = Pmbmpd::start(&ns, &dir, "pmbmpd-2", "127.0.0.1", PORT).unwrap();
    let log2 = second.log.clone();
    ns.enter(|| {
        rt.block_on(async {
            wait_state(&h, |s| *s == ConnState::Established { session: 2 }).await;
            let r = wait_log(&log2, "second dump", |r| {
                !of_type(r, "init").is_empty()
                    && of_type(r, "peer_up").len() == 2
                    && prefixes(r).len() == PEER_PREFIXES.len() + LOC_RIB_PREFIXES.len() + 1
            })
            .await;
            assert!(prefixes(&r).contains(&"10.20.0.0/16".to_string()));
            // pmacct 1.7.7 logs nothing for End-of-RIB markers (empty UPDATEs); their shape
            // is checked in tests/codec.rs.
            h.shutdown().await;
            task.await.unwrap();
            wait_log(&log2, "term", |r| !of_type(r, "term").is_empty()).await;
        })
    })
    .unwrap();
}
