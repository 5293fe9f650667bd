//! L2 announcements end to end (issue 5): three rackd nodes with the eBPF responder and the
//! etcd lease backend, a client on the same segment, `configs/l2lab` (the seeds' pool,
//! policy and deathstar). The client reaches the LoadBalancer IPs over IPv4 and IPv6; then
//! each fault (kill -9 of the holder's rackd, a node crash, its interface down, SIGTERM) is injected
//! `RACKD_L2_RUNS` times (default 20): another node must take over, the client must reach the
//! IPs through it, and no 10 ms prober window may ever see two MACs answering.
//!
//! Timings are printed, not asserted (`RACKD_L2_OUT=FILE` also writes them as JSON) (`cargo bench -p rackd --bench l2_failover` reports them).
#![allow(clippy::disallowed_types)]

mod l2common;

use std::time::Duration;

use aya::programs::SchedClassifier;
use aya::programs::tc::TcAttachType;
use l2common::{FAST, L2Lab, VIP4, VIP6};
use rackd_api::{Reply, Request};

fn runs() -> usize {
    std::env::var("RACKD_L2_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[test]
fn client_reaches_the_vips_through_one_node_and_failover_never_shows_two_macs() {
    let mut lab = L2Lab::up("l2-e2e", FAST);
    let (h4, h6) = lab.wait_settled(Duration::from_secs(30));

    // What rackctl shows: each holder answers on eth0 for deathstar's address.
    for (holder, vip) in [(h4, VIP4.to_string()), (h6, VIP6.to_string())] {
        let Some(Reply::L2Announcements(a)) = lab.call(holder, &Request::L2Announcements) else {
            panic!("no announcements from the holder\n{}", lab.logs());
        };
        let a: Vec<_> = a.into_iter().filter(|a| a.ip == vip).collect();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].interface, "eth0");
        assert_eq!(a[0].services, ["batuu/deathstar"]);
        assert_eq!(a[0].holder, lab.nodes[holder].name);
        assert!(a[0].replies_sent > 0, "{a:?}");
        for other in 0..3 {
            let Some(Reply::L2Leases(l)) = lab.call(other, &Request::L2Leases) else {
                panic!("no leases from node {other}");
            };
            let l: Vec<_> = l.into_iter().filter(|l| l.ip == vip).collect();
            assert_eq!(l.len(), 1, "{l:?}");
            assert!(
                l[0].candidate && l[0].holder == lab.nodes[holder].name,
                "{l:?}"
            );
            assert_eq!(l[0].interfaces, ["eth0"]);
        }
    }

    let results = l2common::run_all_faults(&mut lab, runs());
    eprintln!("{}", l2common::report(&results));
    if let Ok(out) = std::env::var("RACKD_L2_OUT") {
        l2common::write_results(std::path::Path::new(&out), "etcd", &results);
    }

    // rackctl's tables, from node1's admin API.
    if let Some(Reply::L2Leases(l)) = lab.call(0, &Request::L2Leases) {
        println!("{}", rackctl::print::leases_table(&l));
    }

    // `rackd datapath uninstall` after a clean stop removes what rackd attached and pinned.
    let tc_on_eth0 = |lab: &L2Lab, k: usize| {
        lab.nodes[k]
            .ns
            .enter(|| {
                SchedClassifier::query_tcx("eth0", TcAttachType::Ingress)
                    .unwrap()
                    .1
                    .len()
            })
            .unwrap()
    };
    // A node that has held a VIP (its responder stays attached and pinned).
    let k = (0..3)
        .find(|k| tc_on_eth0(&lab, *k) == 1)
        .expect("no node has the responder attached");
    let node = &mut lab.nodes[k];
    node.rackd.as_mut().unwrap().sigterm().unwrap();
    let status = node
        .rackd
        .as_mut()
        .unwrap()
        .wait_timeout(Duration::from_secs(10))
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let pin_root = node.pin_root.to_str().unwrap().to_owned();
    node.ns
        .exec_host_mounts(&[
            env!("CARGO_BIN_EXE_rackd"),
            "--bpf-pin-root",
            &pin_root,
            "datapath",
            "uninstall",
        ])
        .unwrap();
    assert!(!node.pin_root.exists(), "{pin_root} still exists");
    assert_eq!(tc_on_eth0(&lab, k), 0, "the responder is still attached");
}
