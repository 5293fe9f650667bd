//! The owning task with the `local` backend and a recording announcer.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use l2announcer::LeaseTimings;
use l2announcer::announcer::{AnnounceLog, RecordingAnnouncer};
use l2announcer::backend::LocalBackend;
use l2announcer::node::{NodeConfig, spawn};
use l2announcer::policy::{DesiredGroup, Iface, ServiceRef};

fn groups(n: u32) -> BTreeMap<IpAddr, DesiredGroup> {
    (0..n)
        .map(|i| {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let g = DesiredGroup {
                services: BTreeSet::from([ServiceRef {
                    namespace: "default".into(),
                    name: format!("svc{i}"),
                }]),
                interfaces: BTreeSet::from([Iface {
                    name: "eth0".into(),
                    ifindex: 2,
                }]),
            };
            (ip, g)
        })
        .collect()
}

#[tokio::test]
async fn local_backend_always_holds_and_shutdown_withdraws() {
    let log = AnnounceLog::default();
    let timings = LeaseTimings {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(500),
        retry_period: Duration::from_millis(100),
    };
    let h = spawn(
        NodeConfig::new("solo", timings),
        LocalBackend::new("solo"),
        RecordingAnnouncer::new("solo", log.clone(), true),
    );
    h.set_desired(groups(10));
    let mut snap = None;
    for _ in 0..200 {
        let s = h.snapshot().await.unwrap();
        if s.announcements.len() == 10 {
            snap = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snap = snap.unwrap();
    assert_eq!(snap.held(), 10);
    assert_eq!(snap.writes.total(), 0);
    let json = serde_json::to_string(&snap.announcements).unwrap();
    assert!(json.contains("\"interface\":\"eth0\""));
    let table = l2announcer::query::render_leases(&snap.leases);
    assert!(table.starts_with("IP\tService\tHolder"));
    assert!(table.contains("default/svc3"));

    // Interface down: all withdrawn; the local backend has nobody else to hand over to.
    h.link(2, false);
    let s = loop {
        let s = h.snapshot().await.unwrap();
        if s.announcements.is_empty() {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(s.announcements.is_empty());
    h.link(2, true);
    loop {
        if h.snapshot().await.unwrap().announcements.len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let report = h.shutdown().await.unwrap();
    assert_eq!(report.withdrawn, 10);
    let ip0: IpAddr = "10.0.0.0".parse().unwrap();
    assert!(log.announcing(ip0).is_empty());
    assert_eq!(log.first_double_owner(&[]), None);
}
