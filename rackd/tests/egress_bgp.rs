//! ★ Egress addresses announced by BGP (issue 17, cilium#41916), in the lab of
//! `egresscommon` with a real FRR on the router: the policy's `egressIP` is on no interface
//! and no segment; node2 and node3 are its candidate gateways, elected under L2 leases (etcd),
//! and the holder announces it to FRR as a /32 (and the IPv6 sibling as a /128) with the
//! `EgressGateway` advertisement's attributes. FRR installs the route, so the server's replies
//! come back to whichever node SNATs.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod egresscommon;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use egresscommon::Lab;
use netlab::bgp::{BgpConfig, Neighbor};
use netlab::figures::{Summary, provenance};
use netlab::frr::Frr;
use netlab::{Check, wait_for};

/// The router's BGP address (on its loopback; every node routes 10.0.0.0/8 to it).
const TOR_BGP: &str = "10.99.0.1";
const EGRESS_V4: &str = "192.0.2.77";
const EGRESS_V6: &str = "2001:db8:77::1";

/// iBGP in AS 65000 (so LOCAL_PREF is sent, RFC 4271 §5.1.5), short timers.
const BGP: &str = "\
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: rack}
spec:
  bgpInstances:
  - name: rack
    localASN: 65000
    peers:
    - {name: tor, peerASN: 65000, peerAddress: 10.99.0.1, peerConfigRef: {name: tor}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: tor}
spec:
  timers: {connectRetryTimeSeconds: 1, holdTimeSeconds: 3, keepAliveTimeSeconds: 1}
  families:
  - {afi: ipv4, safi: unicast, advertisements: {matchLabels: {advertise: bgp}}}
  - {afi: ipv6, safi: unicast, advertisements: {matchLabels: {advertise: bgp}}}
";

/// The policies: the lab's empire pods to the server's subnets, through node2 or node3
/// (`egress-gw: 'true'`), from addresses no interface holds.
const POLICIES: &str = "\
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: outpost-bgp, labels: {egress-bgp: 'true'}}
spec:
  destinationCIDRs: [10.0.4.0/24]
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, egressIP: 192.0.2.77}
---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: outpost-bgp-v6, labels: {egress-bgp: 'true'}}
spec:
  destinationCIDRs: ['fd00:10:0:4::/64']
  selectors: [{podSelector: {matchLabels: {org: empire}}}]
  egressGateway: {nodeSelector: {matchLabels: {egress-gw: 'true'}}, egressIP: '2001:db8:77::1'}
";

/// rackd's `EgressGateway` advertisement, with attributes.
const ADVERTISEMENT: &str = "\
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: egress-ips, labels: {advertise: bgp}}
spec:
  advertisements:
  - advertisementType: EgressGateway
    selector: {matchLabels: {egress-bgp: 'true'}}
    attributes:
      communities: {standard: ['65000:300'], large: ['65000:0:300']}
      localPreference: 200
";

fn frr(lab: &Lab) -> Frr {
    lab.tor.addr_add("lo", &format!("{TOR_BGP}/32")).unwrap();
    let mut cfg = BgpConfig::new(65000, TOR_BGP.parse().unwrap());
    for x in 1..=3 {
        let mut n = Neighbor::new(format!("10.0.{x}.2").parse().unwrap(), 65000);
        n.passive = true;
        n.hold_time = Some(3);
        n.local_address = Some(TOR_BGP.parse().unwrap());
        cfg.neighbors.push(n);
    }
    Frr::start_with(&lab.tor, lab.dir.path(), "frr", &cfg).unwrap()
}

/// The one best path FRR has for `prefix`, once it has exactly one path, from `via`.
fn wait_single_path(frr: &Frr, prefix: &str, via: IpAddr) -> netlab::bgp::Path {
    wait_for(
        &format!("FRR's only path for {prefix} via {via}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let paths = frr.paths(prefix)?;
            Ok(match paths.as_slice() {
                [p] if p.best && p.next_hops.first() == Some(&via) => Check::Ready(p.clone()),
                _ => Check::NotYet(format!("{paths:?}")),
            })
        },
    )
    .unwrap()
}

/// The node (index) whose eth0 address is `ip`.
fn node_of(ip: IpAddr) -> usize {
    (0..3)
        .find(|i| ip == format!("10.0.{}.2", i + 1).parse::<IpAddr>().unwrap())
        .unwrap_or_else(|| panic!("{ip} is no node's"))
}

#[test]
fn the_active_gateway_announces_the_egress_ip_and_the_route_follows_a_failover() {
    let mut lab = Lab::with(&[1, 2], true);
    let frr = frr(&lab);
    for i in 0..3 {
        lab.start_rackd(i);
    }
    lab.write_config("bgp.yaml", BGP);
    for x in 1..=3 {
        frr.wait_established(
            format!("10.0.{x}.2").parse().unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
    }
    // The positive control of the server's report: without a policy, the node's address.
    lab.wait_seen(0, "10.0.4.2", "10.0.1.2");

    // The policies without the advertisement: the holder SNATs to an address nobody routes,
    // FRR has no route for it and the request gets no answer.
    lab.write_config("egress.yaml", POLICIES);
    wait_for(
        "tiefighter's request to go unanswered (SNATed, not routed back)",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            Ok(match lab.seen_from(0, "10.0.4.2".parse().unwrap()) {
                Err(_) => Check::Ready(()),
                Ok(ip) => Check::NotYet(format!("seen from {ip}")),
            })
        },
    )
    .unwrap();
    assert!(frr.paths(&format!("{EGRESS_V4}/32")).unwrap().is_empty());

    // The advertisement: one path, from the holder, with the entry's attributes.
    lab.write_config("egress-adv.yaml", ADVERTISEMENT);
    let path = frr
        .wait_route(&format!("{EGRESS_V4}/32"), Duration::from_secs(60))
        .unwrap();
    let holder_ip = *path.next_hops.first().unwrap();
    let holder = node_of(holder_ip);
    assert!(
        lab.gateways.contains(&holder),
        "node{} announced",
        holder + 1
    );
    let path = wait_single_path(&frr, &format!("{EGRESS_V4}/32"), holder_ip);
    assert_eq!(path.communities, vec!["65000:300".to_owned()]);
    assert_eq!(path.large_communities, vec!["65000:0:300".to_owned()]);
    assert_eq!(path.local_pref, Some(200));
    let v6 = frr
        .wait_route(&format!("{EGRESS_V6}/128"), Duration::from_secs(60))
        .unwrap();
    assert_eq!(v6.local_pref, Some(200));
    // Pods on every node, the gateways' own included, leave from the egress IPs.
    lab.wait_seen(0, "10.0.4.2", EGRESS_V4);
    lab.wait_seen(2, "10.0.4.2", EGRESS_V4);
    lab.wait_seen(3, "10.0.4.2", EGRESS_V4);
    lab.wait_seen(0, "fd00:10:0:4::2", EGRESS_V6);
    // Outside the policy: the node's address (the control).
    assert_eq!(
        lab.seen_from(0, "10.0.5.2".parse().unwrap()).unwrap(),
        "10.0.1.2".parse::<IpAddr>().unwrap()
    );

    // The holder goes (kill -9, then SIGTERM, the planned handover, alternately): the survivor
    // takes the lease and announces; FRR has one path again, from the survivor, and new
    // connections leave from the same egress IP. Then the old holder's rackd comes back and
    // the next cycle stops the new holder: `RACKD_EGW_BGP_RUNS` cycles of each fault (default
    // 1), `RACKD_EGW_BGP_OUT=FILE` writes the figures.
    let mut holder = holder;
    let mut samples = Vec::new();
    for run in 0..2 * runs() {
        let planned = run % 2 == 1;
        let survivor = if holder == 1 { 2 } else { 1 };
        let survivor_ip: IpAddr = format!("10.0.{}.2", survivor + 1).parse().unwrap();
        let t0 = Instant::now();
        if planned {
            let p = lab.rackd[holder].as_mut().unwrap();
            p.sigterm().unwrap();
        } else {
            lab.kill_rackd(holder);
        }
        wait_single_path(&frr, &format!("{EGRESS_V4}/32"), survivor_ip);
        let routed = t0.elapsed();
        let outage = first_success(&lab, t0);
        eprintln!(
            "run {run} ({}): node{} -> node{}: route moved after {routed:?}, a new connection \
             succeeded after {outage:?}",
            if planned { "SIGTERM" } else { "kill -9" },
            holder + 1,
            survivor + 1
        );
        samples.push((planned, routed, outage));
        if std::env::var_os("RACKD_EGW_BGP_DEBUG").is_some() && outage > Duration::from_secs(3) {
            eprintln!("slow failover; logs:\n{}", lab.logs());
        }
        let survivor_pod = if survivor == 2 { 3 } else { 2 };
        lab.wait_seen(survivor_pod, "10.0.4.2", EGRESS_V4);
        if let Some(p) = lab.rackd[holder].as_mut() {
            // A stopping rackd finishes its shutdown before its successor starts.
            wait_for(
                "the stopped rackd to exit",
                Duration::from_secs(15),
                Duration::from_millis(50),
                || {
                    Ok(match p.try_wait()? {
                        Some(_) => Check::Ready(()),
                        None => Check::NotYet(p.log_tail()),
                    })
                },
            )
            .unwrap();
        }
        lab.start_rackd(holder);
        frr.wait_established(
            format!("10.0.{}.2", holder + 1).parse().unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
        // The restarted node does not take the lease back: one path, from the survivor. And
        // the next fault waits until it is whole again (its datapath loads in seconds): its
        // own pod leaves through the survivor.
        wait_single_path(&frr, &format!("{EGRESS_V4}/32"), survivor_ip);
        let restarted_pod = if holder == 2 { 3 } else { 2 };
        lab.wait_seen(restarted_pod, "10.0.4.2", EGRESS_V4);
        holder = survivor;
    }
    report(&samples);

    // The advertisement removed: the survivor withdraws both routes.
    lab.write_config("egress-adv.yaml", "");
    frr.wait_no_route(&format!("{EGRESS_V4}/32"), Duration::from_secs(30))
        .unwrap();
    frr.wait_no_route(&format!("{EGRESS_V6}/128"), Duration::from_secs(30))
        .unwrap();
}

fn runs() -> usize {
    std::env::var("RACKD_EGW_BGP_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// When a new request from tiefighter (node1) first succeeds from the egress IP after `t0`:
/// a new connection every 20 ms, each given 300 ms.
fn first_success(lab: &Lab, t0: Instant) -> Duration {
    let to = std::net::SocketAddr::new("10.0.4.2".parse().unwrap(), 80);
    loop {
        let body = netlab::echo::http_get(&lab.pods[0], to, Duration::from_millis(300));
        if let Ok(b) = body
            && netlab::echo::parse(&b).is_some_and(|(_, c)| c.ip().to_string() == EGRESS_V4)
        {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no answer after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Per fault: the route moved and new connections, median/p95/max and samples, as JSON.
fn fault_report(samples: &[(bool, Duration, Duration)], planned: bool) -> serde_json::Value {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mine: Vec<_> = samples.iter().filter(|(p, _, _)| *p == planned).collect();
    let routed: Vec<f64> = mine.iter().map(|(_, r, _)| ms(r)).collect();
    let outage: Vec<f64> = mine.iter().map(|(_, _, o)| ms(o)).collect();
    let (r, o) = (Summary::of(&routed), Summary::of(&outage));
    eprintln!(
        "{}: {} runs: route moved median/p95/max {:.0}/{:.0}/{:.0} ms, new connections \
         {:.0}/{:.0}/{:.0} ms",
        if planned { "SIGTERM" } else { "kill -9" },
        mine.len(),
        r.median,
        r.p95,
        r.max,
        o.median,
        o.p95,
        o.max
    );
    serde_json::json!({
        "runs": mine.len(),
        "route_moved_ms": r.json(&routed),
        "new_connections_ms": o.json(&outage),
    })
}

fn report(samples: &[(bool, Duration, Duration)]) {
    let kill9 = fault_report(samples, false);
    let sigterm = fault_report(samples, true);
    if let Ok(out) = std::env::var("RACKD_EGW_BGP_OUT") {
        let mut doc = serde_json::json!({
            "test": "egress IP announced by BGP, failover on kill -9 and SIGTERM of the holder's rackd, alternately (rackd/tests/egress_bgp.rs)",
            "command": "RACKD_EGW_BGP_RUNS=20 RACKD_EGW_BGP_OUT=FILE cargo test -p rackd --test egress_bgp -- --nocapture",
            "lease_timings": {"duration": "1s", "renew_deadline": "500ms", "retry_period": "200ms"},
            "backend": "etcd",
            "peer": "FRR (iBGP, hold 3 s, no graceful restart)",
            "probe": "after the fault: FRR's table polled every 100 ms (one path, from the survivor); a new TCP connection + GET from a pod on node1 every 20 ms, 300 ms each",
            "kill9": kill9,
            "sigterm": sigterm,
        });
        if let (Some(o), serde_json::Value::Object(p)) = (doc.as_object_mut(), provenance()) {
            o.extend(p);
        }
        std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
}
