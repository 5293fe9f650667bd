//! Graceful restart (RFC 4724) against FRR 8.4 in namespaces (needs root).
//! - Restarting speaker: our example binary is killed with SIGKILL; FRR keeps our route
//!   (stale) during the restart time; the restarted speaker (R bit, F bit) re-syncs and sends
//!   End-of-RIB; FRR's route is fresh again and was never withdrawn.
//! - Helper: FRR's bgpd is killed with SIGKILL; we keep its routes as stale until it comes back
//!   and sends End-of-RIB.

#![allow(clippy::unwrap_used)]

mod common;

use bgpd::{Family, GracefulRestartConfig, PeerConfig, SpeakerConfig};
use common::{NsSpeaker, T, example_bin, ip};
use netlab::frr::Frr;
use netlab::{BgpConfig, Family as LabFamily, Neighbor, Route};
use serde_json::json;

fn frr_says(frr: &Frr) -> String {
    frr.vtysh(&[
        "show bgp summary",
        "show bgp ipv4 unicast",
        "show bgp ipv4 unicast 10.100.1.0/24",
    ])
    .unwrap_or_else(|e| format!("vtysh failed: {e}"))
        + &frr.logs()
}

/// FRR's view of a prefix: None if absent, else Some(stale).
fn frr_stale(frr: &Frr, prefix: &str) -> Option<bool> {
    let v = frr
        .json(&format!("show bgp ipv4 unicast {prefix} json"))
        .ok()?;
    let p = v.get("paths")?.as_array()?.first()?.clone();
    Some(p.get("stale").and_then(|s| s.as_bool()).unwrap_or(false))
}

fn wait(what: &str, mut f: impl FnMut() -> bool, says: impl Fn() -> String) {
    let end = std::time::Instant::now() + T;
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}\npeer says:\n{}",
            says()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn we_restart_with_sigkill_and_frr_keeps_our_routes() {
    let (dir, us_ns, frr_ns) = common::pair("bgpd-gr");
    let frr_cfg = BgpConfig::new(65000, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .graceful_restart(120)
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap());
    let frr = Frr::start_with(&frr_ns, dir.path(), "frr", &frr_cfg).unwrap();
    let config = |restarting: bool| {
        json!({
            "speaker": {
                "local_as": 65001, "router_id": "10.0.0.1", "listen": ["0.0.0.0:179"],
                "graceful_restart": { "restart_time": 120, "restarting": restarting }
            },
            "peers": [ { "address": "10.0.0.2", "peer_as": 65000, "families": ["ipv4-unicast"],
                         "hold_time": 9, "connect_retry": 1 } ],
            "routes": [ { "prefix": "10.100.1.0/24", "communities": ["65001:7"] } ]
        })
        .to_string()
    };
    let c1 = dir.write("speaker1.json", &config(false)).unwrap();
    let bin = example_bin();
    let bin = bin.to_str().unwrap();
    let mut sp = us_ns
        .spawn(dir.path(), "speaker1", &[bin, c1.to_str().unwrap()])
        .unwrap();
    let says = || frr_says(&frr) + &sp_log(dir.path());
    frr.wait_established(ip("10.0.0.1"), T)
        .unwrap_or_else(|e| panic!("{e}\n{}", says()));
    frr.wait_route("10.100.1.0/24", T).unwrap();
    assert_eq!(frr_stale(&frr, "10.100.1.0/24"), Some(false));

    // kill -9: no NOTIFICATION, the kernel closes the socket. FRR keeps the route, stale.
    sp.kill9().unwrap();
    wait(
        "FRR marks our route stale",
        || frr_stale(&frr, "10.100.1.0/24") == Some(true),
        says,
    );

    // Restart with the R bit; the route must stay present the whole time and become fresh.
    let c2 = dir.write("speaker2.json", &config(true)).unwrap();
    let _sp2 = us_ns
        .spawn(dir.path(), "speaker2", &[bin, c2.to_str().unwrap()])
        .unwrap();
    wait(
        "our route fresh again after re-sync",
        || {
            let s = frr_stale(&frr, "10.100.1.0/24");
            assert!(
                s.is_some(),
                "route withdrawn during the restart\n{}",
                says()
            );
            s == Some(false)
        },
        says,
    );
    frr.wait_established(ip("10.0.0.1"), T).unwrap();
    let p = frr.wait_route("10.100.1.0/24", T).unwrap();
    assert_eq!(p.communities, vec!["65001:7"]);
}

fn sp_log(dir: &std::path::Path) -> String {
    let mut s = String::new();
    for f in ["speaker1.log", "speaker2.log"] {
        if let Ok(t) = std::fs::read_to_string(dir.join(f)) {
            s += &format!("\n--- {f} ---\n{t}");
        }
    }
    s
}

#[test]
fn frr_restarts_and_we_keep_its_routes_as_stale() {
    let (dir, us_ns, frr_ns) = common::pair("bgpd-grh");
    let frr_cfg = BgpConfig::new(65000, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[LabFamily::Ipv4Unicast])
                .graceful_restart(60)
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap());
    // F bit set after FRR's restart, so its stale routes may be kept until its End-of-RIB
    // (RFC 4724 §4.2: without it the receiver must drop them at once).
    let conf = netlab::frr::render("frr", &frr_cfg).replace(
        " bgp graceful-restart\n",
        " bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n",
    );
    assert!(conf.contains("preserve-fw-state"));
    let mut frr = Frr::start(&frr_ns, dir.path(), "frr", &conf).unwrap();
    let mut cfg = SpeakerConfig::new(65001, "10.0.0.1".parse().unwrap());
    cfg.listen = vec!["0.0.0.0:179".parse().unwrap()];
    cfg.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: false,
        stale_path_time: 360,
    });
    let us = NsSpeaker::start(&us_ns, cfg);
    let mut p = PeerConfig::new(ip("10.0.0.2"), 65000);
    p.families = vec![Family::Ipv4Unicast];
    p.hold_time = 9;
    p.connect_retry = 1;
    us.add_peer(p);
    us.wait_established(ip("10.0.0.2"), || frr_says(&frr));
    let r = us.wait(
        "FRR route",
        || {
            us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .ok_or_else(String::new)
        },
        || frr_says(&frr),
    );
    assert!(!r.stale);
    let mut events = us.block(us.speaker.subscribe()).unwrap();

    frr.bgpd().kill9().unwrap();
    let r = us.wait(
        "FRR route stale",
        || {
            us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .filter(|r| r.stale)
                .ok_or(format!("{:?}", us.peer(ip("10.0.0.2"))))
        },
        || String::from("(FRR bgpd killed)"),
    );
    assert!(r.stale);
    assert!(us.peer(ip("10.0.0.2")).stale_routes >= 1);

    frr.restart_bgpd(&frr_ns).unwrap();
    us.wait_established(ip("10.0.0.2"), || frr_says(&frr));
    us.wait(
        "FRR route fresh after its End-of-RIB",
        || {
            us.route(Family::Ipv4Unicast, "198.51.100.0/24")
                .filter(|r| !r.stale)
                .ok_or(format!("{:?}", us.peer(ip("10.0.0.2"))))
        },
        || frr_says(&frr),
    );
    // The FIB-facing event stream never withdrew the prefix during the restart.
    while let Ok(ev) = events.try_recv() {
        if let bgpd::Event::BestPath(c) = ev {
            assert!(
                !(c.prefix.to_string() == "198.51.100.0/24" && c.is_withdraw()),
                "withdrawn during GR: {c:?}"
            );
        }
    }
    drop(us);
}
