//! The service datapath end to end, in namespaces: an FRR ToR doing ECMP over two rackd
//! nodes, pods behind each node, a client behind the ToR (see `svccommon`).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;
mod svccommon;

use std::net::SocketAddr;
use std::time::Duration;

use svccommon::{CLIENT_V4, CLIENT_V6, SvcLab};

/// The lab's positive control: without any service datapath the client reaches every pod
/// directly through the ToR (rackd advertises both nodes' PodCIDRs), over IPv4 and IPv6, and
/// the pods see the client's own address.
#[test]
fn pods_are_reachable_through_the_tor() {
    let mut lab = SvcLab::prepare("svc-pods");
    lab.start_rackd(0, &[]);
    lab.start_rackd(1, &[]);
    lab.wait_tor_route("10.1.1.0/24", 1, Duration::from_secs(60));
    lab.wait_tor_route("10.1.2.0/24", 1, Duration::from_secs(60));
    lab.wait_tor_route("fd00:10:1:2::/64", 1, Duration::from_secs(60));
    for i in 0..2 {
        let rackd_api::Reply::Status(st) = lab.call(i, &rackd_api::Request::Status) else {
            panic!("status")
        };
        assert!(st.config_errors.is_empty(), "{:?}", st.config_errors);
        assert!(
            st.objects.iter().any(|(k, n)| k == "Pod" && *n == 4),
            "{:?}",
            st.objects
        );
    }
    for p in &lab.pods {
        for (addr, client) in [
            (SocketAddr::new(p.v4.into(), 80), CLIENT_V4.to_string()),
            (SocketAddr::new(p.v6.into(), 80), CLIENT_V6.to_string()),
        ] {
            let a = lab.get(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
            let (name, from) = netlab::echo::parse(&a).unwrap();
            assert_eq!(name, p.name, "{a}");
            assert_eq!(from.ip().to_string(), client, "{a}");
        }
    }
}
