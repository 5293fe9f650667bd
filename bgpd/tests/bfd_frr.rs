//! BFD tied to BGP, against FRR 8.4's bgpd + bfdd in network namespaces (needs root):
//!
//! - strict mode: with BFD configured on our side, the BGP session does not come up while
//!   FRR runs no bfdd (FRR keeps trying to connect: we refuse), and comes up as soon as bfdd
//!   starts and the BFD session is Up;
//! - a dead forwarding path (every packet dropped in FRR's namespace, links up, BGP hold time
//!   90 s): our BFD declares it down within its detection time, the BGP session is reset with
//!   Cease / BFD Down (RFC 9384) and FRR's routes leave our Loc-RIB at once; the path back
//!   brings BFD and then BGP back.
//!
//! `RACKD_BFD_RUNS` (default 1) cycles of cut and restore are measured, with the second core
//! kept busy by a spinning thread; `RACKD_BFD_OUT=FILE` writes the figures as JSON
//! (`bgpd/bench/results/`, `bgpd/README.md` "BFD").

#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bgpd::fsm::State;
use bgpd::{BfdConfig, Family, PeerConfig, SpeakerConfig};
use common::{NsSpeaker, ip};
use netlab::figures::{Summary, provenance};
use netlab::frr::Frr;
use netlab::{BgpConfig, LabDir, Neighbor, Netns, Route};

const FRR_AS: u32 = 65002;
const PREFIX: &str = "198.51.100.0/24";

struct Lab {
    // Field order is drop order: daemons before their namespaces.
    us: NsSpeaker,
    frr: Frr,
    _dir: LabDir,
    frr_ns: Netns,
    _us_ns: Netns,
}

fn lab(name: &str, bfd: bool) -> Lab {
    let (dir, us_ns, frr_ns) = common::pair(name);
    let cfg = BgpConfig::new(FRR_AS, "10.0.0.2".parse().unwrap())
        .neighbor(Neighbor::new(ip("10.0.0.1"), 65001).hold_time(90))
        .route(Route::new(PREFIX).unwrap());
    let mut text = netlab::frr::render("frr", &cfg);
    // FRR's BFD for the neighbour (its default profile: 300 ms / 300 ms / 3).
    text = text.replace(
        " neighbor 10.0.0.1 remote-as 65001\n",
        " neighbor 10.0.0.1 remote-as 65001\n neighbor 10.0.0.1 bfd\n",
    );
    assert!(text.contains("neighbor 10.0.0.1 bfd"), "{text}");
    let frr = Frr::start(&frr_ns, dir.path(), "frr", &text).unwrap();
    let mut sc = SpeakerConfig::new(65001, "10.0.0.1".parse().unwrap());
    sc.listen = vec!["[::]:179".parse().unwrap()];
    let us = NsSpeaker::start(&us_ns, sc);
    let mut p = PeerConfig::new(ip("10.0.0.2"), FRR_AS);
    p.hold_time = 90;
    p.connect_retry = 1;
    p.bfd = bfd.then(BfdConfig::default);
    us.add_peer(p);
    Lab {
        us,
        frr,
        _dir: dir,
        frr_ns,
        _us_ns: us_ns,
    }
}

fn frr_says(frr: &Frr) -> impl Fn() -> String + '_ {
    || {
        frr.vtysh(&["show bgp summary", "show bfd peers"])
            .unwrap_or_else(|e| format!("vtysh failed: {e}"))
            + &frr.logs()
    }
}

fn peer_ip() -> IpAddr {
    ip("10.0.0.2")
}

/// Every packet into and out of FRR's namespace dropped (links stay up): a dead path.
fn cut(ns: &Netns, on: bool) {
    let op = if on { "-I" } else { "-D" };
    for chain in ["INPUT", "OUTPUT"] {
        ns.exec(&["iptables", op, chain, "-j", "DROP"]).unwrap();
    }
}

/// Keeps one core busy until dropped (the "second core loaded").
struct Spinner(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Spinner {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let mut x: u64 = 0;
            while !s.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Spinner(stop, Some(h))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// The positive control of strict mode: the same FRR, still without bfdd, and our peer
/// without BFD: the session comes up (so it is our BFD that holds it back above, not FRR).
#[test]
fn without_bfd_on_our_side_the_same_peer_comes_up() {
    let l = lab("bgpnobfd", false);
    l.us.wait_established(peer_ip(), frr_says(&l.frr));
    assert!(l.us.peer(peer_ip()).bfd.is_none());
}

fn runs() -> usize {
    std::env::var("RACKD_BFD_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn bfd_gates_the_session_and_its_loss_resets_bgp() {
    let mut l = lab("bgpbfd", true);
    // Strict mode: FRR is configured and reachable, but runs no bfdd. FRR keeps connecting
    // (we refuse) and we do not connect: no session for 5 s.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let p = l.us.peer(peer_ip());
        assert_ne!(p.state, State::Established, "{p:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = l.us.peer(peer_ip());
    let b = p.bfd.clone().expect("our peer reports its BFD session");
    assert_ne!(b.state, bfd::State::Up, "{b:?}");
    assert_eq!(p.state, State::Idle, "{p:?}");

    // bfdd starts: BFD comes Up, then BGP, and FRR's route arrives.
    l.frr.start_bfdd(&l.frr_ns, "").unwrap();
    l.us.wait_established(peer_ip(), frr_says(&l.frr));
    let p = l.us.peer(peer_ip());
    let b = p.bfd.clone().unwrap();
    assert_eq!(b.state, bfd::State::Up, "{b:?}");
    assert_eq!((b.tx_interval_ms, b.detection_time_ms), (300, 900), "{b:?}");
    l.us.wait(
        "FRR's route",
        || {
            l.us.route(Family::Ipv4Unicast, PREFIX)
                .ok_or("absent".to_owned())
        },
        frr_says(&l.frr),
    );

    let mut detect = Vec::new();
    let mut withdrawn = Vec::new();
    for run in 0..runs() {
        let spin = Spinner::start();
        cut(&l.frr_ns, true);
        let t = Instant::now();
        // Our session leaves Established well before the 90 s hold time: BFD's doing.
        loop {
            let p = l.us.peer(peer_ip());
            if p.state != State::Established {
                detect.push(t.elapsed());
                assert!(
                    p.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("BFD down")),
                    "{p:?}"
                );
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no reset: {p:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        while l.us.route(Family::Ipv4Unicast, PREFIX).is_some() {
            assert!(t.elapsed() < Duration::from_secs(30), "route kept");
            std::thread::sleep(Duration::from_millis(5));
        }
        withdrawn.push(t.elapsed());
        drop(spin);
        eprintln!(
            "run {run}: BGP reset after {:?}, route withdrawn after {:?}",
            detect.last().unwrap(),
            withdrawn.last().unwrap()
        );
        // The path back: BFD, then BGP and the route return.
        cut(&l.frr_ns, false);
        l.us.wait_established(peer_ip(), frr_says(&l.frr));
        l.us.wait(
            "FRR's route again",
            || {
                l.us.route(Family::Ipv4Unicast, PREFIX)
                    .ok_or("absent".to_owned())
            },
            frr_says(&l.frr),
        );
    }
    report(&detect, &withdrawn);
}

fn report(detect: &[Duration], withdrawn: &[Duration]) {
    let ms = |v: &[Duration]| -> Vec<f64> { v.iter().map(|d| d.as_secs_f64() * 1e3).collect() };
    let (d, w) = (ms(detect), ms(withdrawn));
    let (ds, ws) = (Summary::of(&d), Summary::of(&w));
    eprintln!(
        "{} runs: BGP reset median/p95/max {:.0}/{:.0}/{:.0} ms, route withdrawn \
         {:.0}/{:.0}/{:.0} ms (BFD 300 ms x 3, hold time 90 s)",
        d.len(),
        ds.median,
        ds.p95,
        ds.max,
        ws.median,
        ws.p95,
        ws.max
    );
    if let Ok(out) = std::env::var("RACKD_BFD_OUT") {
        let mut doc = serde_json::json!({
            "test": "BFD down resets BGP (bgpd/tests/bfd_frr.rs)",
            "command": "RACKD_BFD_RUNS=20 RACKD_BFD_OUT=FILE cargo test -p bgpd --test bfd_frr -- --nocapture",
            "peer": "FRR 8.4 bgpd + bfdd, neighbor bfd (300 ms / 300 ms / 3); our BfdConfig default (300 ms / 300 ms / 3); BGP hold time 90 s",
            "fault": "iptables DROP on INPUT and OUTPUT in FRR's namespace (links up)",
            "load": "one thread spinning on the other core during each cut",
            "probe": "our peer status polled every 5 ms from the cut",
            "bgp_reset_ms": ds.json(&d),
            "route_withdrawn_ms": ws.json(&w),
        });
        if let (Some(o), serde_json::Value::Object(p)) = (doc.as_object_mut(), provenance()) {
            o.extend(p);
        }
        std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
}
