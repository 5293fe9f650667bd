//! FIB import end to end (needs root): FRR 8.4 announces routes to our speaker, which
//! installs its best paths into a Linux routing table (protocol bgp) in its namespace through
//! `bgpd::fib::follow`; a withdraw at FRR removes them.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bgpd::fib::{FibConfig, FibSync};
use bgpd::{PeerConfig, SpeakerConfig};
use common::{NsSpeaker, ip};
use netlab::frr::Frr;
use netlab::{BgpConfig, Family, Neighbor, Netns, Route};

const TABLE: u32 = 142;

fn table(ns: &Netns, fam: &str) -> String {
    ns.ip(&[
        fam,
        "route",
        "show",
        "table",
        &TABLE.to_string(),
        "proto",
        "bgp",
    ])
    .unwrap_or_default()
}

fn wait(what: &str, ns: &Netns, frr: &Frr, mut ok: impl FnMut(&str, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (v4, v6) = (table(ns, "-4"), table(ns, "-6"));
        if ok(&v4, &v6) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: table {TABLE} is\n{v4}{v6}\nFRR says:\n{}",
                frr.vtysh(&[
                    "show bgp summary",
                    "show bgp ipv4 unicast",
                    "show bgp ipv6 unicast"
                ])
                .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn received_best_paths_land_in_the_kernel_table() {
    let (dir, us_ns, frr_ns) = common::pair("fibimp");
    let frr_cfg = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
        .neighbor(
            Neighbor::new(ip("10.0.0.1"), 65001)
                .families(&[Family::Ipv4Unicast, Family::Ipv6Unicast])
                .hold_time(9),
        )
        .route(Route::new("198.51.100.0/24").unwrap())
        .route(Route::new("2001:db8:77::/48").unwrap());
    let frr = Frr::start_with(&frr_ns, dir.path(), "frr", &frr_cfg).unwrap();
    let us = NsSpeaker::start(
        &us_ns,
        SpeakerConfig::new(65001, "10.0.0.1".parse().unwrap()),
    );
    us.add_peer(PeerConfig::new(ip("10.0.0.2"), 65002));

    // The FIB task runs on its own thread inside our namespace, following the speaker.
    let events = us.block(us.speaker.subscribe()).unwrap();
    let path = us_ns.path();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let fib_thread = common::in_ns_thread(path, move |rt| {
        rt.block_on(async move {
            let (fib, task) = FibSync::spawn(FibConfig {
                table: TABLE,
                ..FibConfig::default()
            })
            .unwrap();
            let follower = tokio::spawn(bgpd::fib::follow(fib.clone(), events));
            let _ = stop_rx.await;
            follower.abort();
            fib.shutdown(false).await.unwrap();
            task.await.unwrap().unwrap();
        });
    });

    wait("both routes installed via FRR", &us_ns, &frr, |v4, v6| {
        v4.contains("198.51.100.0/24 via 10.0.0.2") && v6.contains("2001:db8:77::/48 via fd00::2")
    });

    // Withdrawn at FRR: gone from the kernel.
    frr.configure(&[
        "router bgp 65002",
        "address-family ipv4 unicast",
        "no network 198.51.100.0/24",
    ])
    .unwrap();
    wait("the withdrawn route removed", &us_ns, &frr, |v4, v6| {
        !v4.contains("198.51.100.0/24") && v6.contains("2001:db8:77::/48")
    });

    stop_tx.send(()).unwrap();
    fib_thread.join().unwrap();
    // Shutdown without retain removes what we installed.
    assert_eq!(table(&us_ns, "-4").trim(), "");
    assert_eq!(table(&us_ns, "-6").trim(), "");
}
