//! BMP from rackd (issue 18): the lab's `CiliumBGPClusterConfig` gains `bmpServers` (Cilium's
//! shape) naming a pmacct `pmbmpd` on the ToR; the collector learns, without logging into the
//! node, that node1 peers with the ToR (Peer Up) and what it advertises (its Loc-RIB: the
//! PodCIDR, the Service addresses, LB-IPAM's IP), and sees a route go when its Service goes.
//!
//! Needs root and the `pmacct` package (scripts/setup.sh installs it).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::Lab;
use netlab::pmbmpd::{Pmbmpd, records};
use netlab::{Check, wait_for};
use serde_json::Value;

fn wait_log(lab: &Lab, log: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) {
    wait_for(
        what,
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let r = records(log);
            Ok(if pred(&r) {
                Check::Ready(())
            } else {
                Check::NotYet(format!(
                    "{}\nrackd:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default(),
                    lab.rackd_log()
                ))
            })
        },
    )
    .unwrap();
}

fn loc_rib_route(v: &Value, prefix: &str, withdraw: bool) -> bool {
    v["bmp_msg_type"] == "route_monitor"
        && v["is_loc"] == 1
        && v["ip_prefix"] == prefix
        && (v["log_type"] == "withdraw") == withdraw
}

#[test]
fn a_collector_on_the_tor_sees_what_rackd_advertises() {
    assert!(
        netlab::pmbmpd::available(),
        "pmbmpd not installed: scripts/setup.sh installs pmacct"
    );
    let mut lab = Lab::prepare("rk-bmp");
    // The collector on the ToR's loopback.
    let collector = Pmbmpd::start(&lab.tor_ns, &lab.dir, "pmbmpd", "10.0.0.1", 1790).unwrap();
    let log = collector.log.clone();
    let bgp = lab.cfg.join("bgp.yaml");
    let text = std::fs::read_to_string(&bgp).unwrap();
    let anchor = "  - name: \"rack\"\n    localASN: 65001\n";
    assert!(text.contains(anchor), "{text}");
    let text = text.replacen(
        anchor,
        &format!(
            "{anchor}    bmpServers:\n    - name: tor-collector\n      peerAddress: 10.0.0.1\n      \
             peerPort: 1790\n      monitoringPolicy: all\n      statisticsTimeout: 15\n"
        ),
        1,
    );
    std::fs::write(&bgp, text).unwrap();
    lab.start_rackd();

    wait_log(&lab, &log, "node1's Initiation, Peer Up and Loc-RIB", |r| {
        r.iter()
            .any(|v| v["bmp_msg_type"] == "init" && v["bmp_init_info_sysname"] == "node1")
            && r.iter().any(|v| {
                v["bmp_msg_type"] == "peer_up"
                    && v["peer_ip"] == "10.0.0.1"
                    && v["peer_asn"] == 65000
            })
            && r.iter().any(|v| loc_rib_route(v, "10.1.1.0/24", false))
            && r.iter().any(|v| loc_rib_route(v, "20.0.10.1/32", false))
            && r.iter()
                .any(|v| loc_rib_route(v, "172.18.255.200/32", false))
    });
    // The Service with the external IP goes: the collector sees the withdrawal.
    let services = lab.cfg.join("services.yaml");
    let text = std::fs::read_to_string(&services).unwrap();
    assert!(text.contains("20.0.10.1"), "{text}");
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|d| !d.contains("20.0.10.1"))
        .collect();
    std::fs::write(&services, kept.join("\n---\n")).unwrap();
    wait_log(&lab, &log, "the withdrawal of 20.0.10.1/32", |r| {
        r.iter().any(|v| loc_rib_route(v, "20.0.10.1/32", true))
    });
}
