//! The host layer against the real kernel, each test in its own network namespaces (netlab):
//! namespace `a` holds `v0`, whose veth peer `v1` lives in namespace `b`, so taking `v1` down
//! takes `v0`'s carrier away while `v0` stays administratively up. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use netlab::Netns;
use rackd_host::{
    Address, Host, HostError, HostState, HostWatch, LinkChange, LinkKind, MacAddr, MonitorConfig,
    Neighbour, NeighbourState, NetlinkHost, Operation, RT_TABLE_MAIN, Route, RouteFilter,
    RouteProtocol, RouteRequest, WriteOutcome,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// How long a change may take to show up before the test fails (a failure detector, not a
/// performance assertion).
const PATIENCE: Duration = Duration::from_secs(10);

struct Lab {
    a: Netns,
    _b: Netns,
    b_name: String,
}

/// `a`: v0 10.77.0.1/24, 2001:db8:77::1/64, MAC 02:00:00:00:77:01; `b`: v1 10.77.0.2/24.
fn lab() -> Lab {
    let a = Netns::new("hosta").unwrap();
    let b = Netns::new("hostb").unwrap();
    a.ip(&[
        "link",
        "add",
        "v0",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
        "netns",
        b.name(),
    ])
    .unwrap();
    a.set_mac("v0", "02:00:00:00:77:01").unwrap();
    a.addr_add("v0", "10.77.0.1/24").unwrap();
    a.addr_add("v0", "2001:db8:77::1/64").unwrap();
    b.addr_add("v1", "10.77.0.2/24").unwrap();
    a.link_up("v0").unwrap();
    b.link_up("v1").unwrap();
    let b_name = b.name().to_owned();
    Lab { a, _b: b, b_name }
}

impl Lab {
    /// `ip -n b ...`.
    fn b(&self, args: &[&str]) {
        let mut argv = vec!["-n", self.b_name.as_str()];
        argv.extend_from_slice(args);
        let out = std::process::Command::new("ip")
            .args(&argv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `f` on a current-thread runtime with this thread inside `ns`, so every socket the
/// host layer opens is `ns`'s.
fn run_in<F: Future>(ns: &Netns, f: F) -> F::Output {
    let _inside = ns.enter_guard().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(f)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn dump_sees_links_addresses_routes_and_neighbours() {
    let lab = lab();
    let ns = &lab.a;
    ns.route_add(&[
        "10.78.0.0/24",
        "via",
        "10.77.0.2",
        "proto",
        "static",
        "metric",
        "5",
    ])
    .unwrap();
    ns.route_add(&["default", "via", "10.77.0.254"]).unwrap();
    ns.ip(&["-6", "route", "add", "default", "via", "2001:db8:77::fe"])
        .unwrap();
    ns.route_add(&[
        "10.79.0.0/24",
        "via",
        "10.77.0.2",
        "table",
        "100",
        "proto",
        "static",
    ])
    .unwrap();
    ns.route_add(&[
        "10.79.1.0/24",
        "via",
        "10.77.0.2",
        "table",
        "100",
        "proto",
        "bgp",
    ])
    .unwrap();
    ns.ip(&[
        "neigh",
        "add",
        "10.77.0.9",
        "lladdr",
        "02:00:00:00:00:09",
        "dev",
        "v0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let v0 = ns.ifindex("v0").unwrap();

    run_in(ns, async {
        let host = NetlinkHost::connect().unwrap();
        let links = host.links().await.unwrap();
        let lo = links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!(lo.kind, LinkKind::Loopback);
        let l = links.iter().find(|l| l.name == "v0").expect("v0");
        assert_eq!(l.ifindex, v0);
        assert_eq!(l.kind, LinkKind::Ether);
        assert!(l.admin_up && l.lower_up, "{l:?}");
        assert_eq!(l.mac, Some("02:00:00:00:77:01".parse::<MacAddr>().unwrap()));
        assert_eq!(l.mtu, Some(1500));
        assert!(
            !links.iter().any(|l| l.name == "v1"),
            "the peer is in the other namespace"
        );

        let addrs = host.addresses().await.unwrap();
        for a in ["10.77.0.1/24", "2001:db8:77::1/64"] {
            assert!(
                addrs.iter().any(|x| x.ifindex == v0 && x.addr == net(a)),
                "{a} missing: {addrs:?}"
            );
        }

        let main = host.routes(RouteFilter::main()).await.unwrap();
        assert!(main.iter().all(|r| r.table == RT_TABLE_MAIN), "{main:?}");
        let r = main
            .iter()
            .find(|r| r.destination == net("10.78.0.0/24"))
            .expect("the static route");
        assert_eq!(
            (r.gateway(), r.oif(), r.protocol, r.metric),
            (Some(ip("10.77.0.2")), Some(v0), RouteProtocol::STATIC, 5)
        );
        // The kernel's connected route.
        assert!(main.iter().any(|r| r.destination == net("10.77.0.0/24")
            && r.protocol == RouteProtocol::KERNEL
            && r.gateway().is_none()));
        // Filtered by the kernel: table and protocol.
        let bgp = host
            .routes(RouteFilter {
                protocol: Some(RouteProtocol::BGP),
                ..RouteFilter::table(100)
            })
            .await
            .unwrap();
        assert_eq!(
            bgp.iter().map(|r| r.destination).collect::<Vec<_>>(),
            vec![net("10.79.1.0/24")]
        );
        assert_eq!(host.routes(RouteFilter::table(100)).await.unwrap().len(), 2);

        let neigh = host.neighbours().await.unwrap();
        let n = neigh
            .iter()
            .find(|n| n.ip == ip("10.77.0.9"))
            .unwrap_or_else(|| panic!("{neigh:?}"));
        assert_eq!(
            (n.ifindex, n.mac, n.state),
            (
                v0,
                Some("02:00:00:00:00:09".parse().unwrap()),
                NeighbourState::Permanent
            )
        );

        let g = host.default_gateways().await.unwrap();
        assert_eq!(
            (g.v4, g.v6),
            (Some(ip("10.77.0.254")), Some(ip("2001:db8:77::fe")))
        );

        // What rackd's HostInfo needs, in one read.
        let s = host.snapshot().await.unwrap();
        let v0_ips = &s.interfaces()["v0"];
        assert!(v0_ips.contains(&ip("10.77.0.1")) && v0_ips.contains(&ip("2001:db8:77::1")));
        assert!(s.interfaces()["lo"].contains(&ip("127.0.0.1")));
        assert_eq!(s.default_gateways, g);
    });
}

/// A watch and the link reports it sends.
async fn watch(host: &NetlinkHost) -> (HostWatch, mpsc::UnboundedReceiver<LinkChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let w = host
        .watch(
            MonitorConfig::default(),
            Box::new(move |c: &LinkChange| {
                let _ = tx.send(c.clone());
            }),
        )
        .await
        .unwrap();
    (w, rx)
}

/// Waits until the published state satisfies `ok`.
async fn until(w: &mut HostWatch, what: &str, ok: impl Fn(&HostState) -> bool) {
    let wait = async {
        while !ok(&w.borrow()) {
            w.changed().await.unwrap();
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!("{what}: not seen; state {:#?}", w.state());
    }
}

/// The next link report for `ifindex`.
async fn report(rx: &mut mpsc::UnboundedReceiver<LinkChange>, ifindex: u32) -> LinkChange {
    let wait = async {
        loop {
            let c = rx.recv().await.expect("monitor alive");
            if c.ifindex == ifindex {
                return c;
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no link report for ifindex {ifindex}"))
}

#[test]
fn monitor_follows_carrier_addresses_and_default_routes() {
    let lab = lab();
    let ns = &lab.a;
    let v0 = ns.ifindex("v0").unwrap();
    run_in(ns, async {
        let host = NetlinkHost::connect().unwrap();
        let (mut w, mut links) = watch(&host).await;
        // Every link once at start.
        let first = report(&mut links, v0).await;
        assert!(
            first.up && !first.removed && first.name == "v0",
            "{first:?}"
        );
        assert!(w.borrow().links[&v0].is_up());

        // Carrier lost: the peer goes down, v0 stays administratively up.
        lab.b(&["link", "set", "v1", "down"]);
        let c = report(&mut links, v0).await;
        assert!(!c.up, "{c:?}");
        until(&mut w, "v0 without carrier", |s| {
            s.links.get(&v0).is_some_and(|l| l.admin_up && !l.lower_up)
        })
        .await;
        lab.b(&["link", "set", "v1", "up"]);
        assert!(report(&mut links, v0).await.up);

        // Addresses come and go.
        ns.addr_add("v0", "10.77.1.1/24").unwrap();
        until(&mut w, "address added", |s| {
            s.addresses_of(v0).any(|a| a.addr == net("10.77.1.1/24"))
        })
        .await;
        ns.addr_del("v0", "10.77.1.1/24").unwrap();
        until(&mut w, "address removed", |s| {
            !s.addresses_of(v0).any(|a| a.addr == net("10.77.1.1/24"))
        })
        .await;

        // Default routes: added, replaced, deleted; IPv6 too.
        ns.route_add(&["default", "via", "10.77.0.254"]).unwrap();
        until(&mut w, "default gateway", |s| {
            s.default_gateways.v4 == Some(ip("10.77.0.254"))
        })
        .await;
        ns.ip(&["route", "replace", "default", "via", "10.77.0.253"])
            .unwrap();
        until(&mut w, "replaced default gateway", |s| {
            s.default_gateways.v4 == Some(ip("10.77.0.253"))
        })
        .await;
        ns.ip(&["route", "del", "default"]).unwrap();
        until(&mut w, "default gateway gone", |s| {
            s.default_gateways.v4.is_none()
        })
        .await;
        ns.ip(&["-6", "route", "add", "default", "via", "2001:db8:77::fe"])
            .unwrap();
        until(&mut w, "IPv6 default gateway", |s| {
            s.default_gateways.v6 == Some(ip("2001:db8:77::fe"))
        })
        .await;

        ns.ip(&["-6", "route", "del", "default"]).unwrap();
        until(&mut w, "IPv6 default gateway gone", |s| {
            s.default_gateways.v6.is_none()
        })
        .await;

        // Taking v0 down: reported at once, and the kernel's silent removal of the IPv4
        // default route through it (no RTM_DELROUTE for IPv4 then) is noticed because the
        // gateways are re-read on the link's state change and on its addresses' removal. (No
        // IPv6 default route is left whose notified removal would trigger it instead.)
        ns.route_add(&["default", "via", "10.77.0.254"]).unwrap();
        until(&mut w, "default gateway again", |s| {
            s.default_gateways.v4.is_some()
        })
        .await;
        ns.link_down("v0").unwrap();
        assert!(!report(&mut links, v0).await.up);
        until(&mut w, "routes through a down link gone", |s| {
            s.default_gateways.v4.is_none() && s.links.get(&v0).is_some_and(|l| !l.admin_up)
        })
        .await;

        // Removal: reported as such.
        ns.link_del("v0").unwrap();
        let c = report(&mut links, v0).await;
        assert!(c.removed && !c.up, "{c:?}");
        until(&mut w, "link gone", |s| !s.links.contains_key(&v0)).await;
    });
}

/// `ip -j route show table 100 <dst>`'s gateway.
fn gateway_in_table_100(ns: &Netns, dst: &str) -> Option<String> {
    let v = ns.ip_json(&["route", "show", "table", "100", dst]).unwrap();
    v.as_array()?
        .first()?
        .get("gateway")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `route` as the kernel reports it: each next hop with its resolved interface.
fn resolved(route: &Route, ifindex: u32) -> Route {
    let mut r = route.clone();
    for h in &mut r.next_hops {
        h.ifindex = Some(ifindex);
    }
    r
}

#[test]
fn writes_round_trip_and_are_idempotent() {
    let lab = lab();
    let ns = &lab.a;
    let v0 = ns.ifindex("v0").unwrap();
    run_in(ns, async {
        let host = NetlinkHost::connect().unwrap();

        // Addresses.
        let a = Address::new(v0, net("10.77.5.1/24"));
        assert_eq!(host.address_add(&a).await.unwrap(), WriteOutcome::Applied);
        assert!(ns.addrs("v0").unwrap().iter().any(|x| x == "10.77.5.1/24"));
        assert_eq!(
            host.address_add(&a).await.unwrap(),
            WriteOutcome::AlreadyPresent
        );
        assert_eq!(host.address_del(&a).await.unwrap(), WriteOutcome::Applied);
        assert!(!ns.addrs("v0").unwrap().iter().any(|x| x == "10.77.5.1/24"));
        assert_eq!(
            host.address_del(&a).await.unwrap(),
            WriteOutcome::AlreadyAbsent
        );
        let a6 = Address::new(v0, net("2001:db8:77::5/64"));
        assert_eq!(host.address_add(&a6).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            host.address_add(&a6).await.unwrap(),
            WriteOutcome::AlreadyPresent
        );
        assert_eq!(host.address_del(&a6).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            host.address_del(&a6).await.unwrap(),
            WriteOutcome::AlreadyAbsent
        );
        let e = host
            .address_add(&Address::new(9999, net("10.77.6.1/24")))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                HostError::Kernel {
                    op: Operation::AddressAdd,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.errno(), Some(libc::ENODEV));

        // Routes in a table of ours, with our protocol.
        let r = Route::new(net("10.80.0.0/24"))
            .via(ip("10.77.0.2"))
            .in_table(100)
            .with_protocol(RouteProtocol::BGP)
            .with_metric(20);
        assert_eq!(host.route_add(&r).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            gateway_in_table_100(ns, "10.80.0.0/24").as_deref(),
            Some("10.77.0.2")
        );
        assert_eq!(
            host.route_add(&r).await.unwrap(),
            WriteOutcome::AlreadyPresent
        );
        let moved = Route::new(net("10.80.0.0/24"))
            .via(ip("10.77.0.3"))
            .in_table(100)
            .with_protocol(RouteProtocol::BGP)
            .with_metric(20);
        assert_eq!(
            host.route_replace(&moved).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            gateway_in_table_100(ns, "10.80.0.0/24").as_deref(),
            Some("10.77.0.3")
        );
        let read = host.routes(RouteFilter::table(100)).await.unwrap();
        // As written, plus the interface the kernel resolved the gateway to.
        assert_eq!(
            read,
            vec![resolved(&moved, v0)],
            "a route reads back as written"
        );
        assert_eq!(host.route_del(&moved).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(gateway_in_table_100(ns, "10.80.0.0/24"), None);
        assert_eq!(
            host.route_del(&moved).await.unwrap(),
            WriteOutcome::AlreadyAbsent
        );
        // IPv6, metric left to the kernel (1024).
        let r6 = Route::new(net("2001:db8:80::/48"))
            .via(ip("2001:db8:77::2"))
            .in_table(100);
        assert_eq!(host.route_add(&r6).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            host.route_add(&r6).await.unwrap(),
            WriteOutcome::AlreadyPresent
        );
        let read = host.routes(RouteFilter::table(100)).await.unwrap();
        assert_eq!(read.len(), 1, "{read:?}");
        assert_eq!(read[0].metric, 1024);
        assert_eq!(host.route_del(&r6).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            host.route_del(&r6).await.unwrap(),
            WriteOutcome::AlreadyAbsent
        );
        // A gateway that is not on-link: the kernel's refusal, typed.
        let off = Route::new(net("10.81.0.0/24"))
            .via(ip("10.99.9.9"))
            .in_table(100);
        let e = host.route_add(&off).await.unwrap_err();
        assert!(
            matches!(
                e,
                HostError::Kernel {
                    op: Operation::RouteAdd,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.errno(), Some(libc::ENETUNREACH));

        // The same through a batch, each request its own outcome.
        let x = Route::new(net("10.82.0.0/24"))
            .via(ip("10.77.0.2"))
            .in_table(100);
        let y = Route::new(net("10.82.1.0/24"))
            .via(ip("10.77.0.2"))
            .in_table(100);
        let results = host
            .apply_routes(&[
                RouteRequest::Add(x.clone()),
                RouteRequest::Add(x.clone()),
                RouteRequest::Replace(y.clone()),
                RouteRequest::Delete(Route::new(net("10.82.9.0/24")).in_table(100)),
                RouteRequest::Add(off.clone()),
                RouteRequest::Delete(x.clone()),
            ])
            .await;
        let outcomes: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map_err(HostError::errno).copied())
            .collect();
        assert_eq!(
            outcomes,
            vec![
                Ok(WriteOutcome::Applied),
                Ok(WriteOutcome::AlreadyPresent),
                Ok(WriteOutcome::Applied),
                Ok(WriteOutcome::AlreadyAbsent),
                Err(Some(libc::ENETUNREACH)),
                Ok(WriteOutcome::Applied),
            ]
        );
        let left = host.routes(RouteFilter::table(100)).await.unwrap();
        assert_eq!(
            left,
            vec![resolved(&y, v0)],
            "only the replaced route is left"
        );

        // Neighbours.
        let n = Neighbour {
            ifindex: v0,
            ip: ip("10.77.0.50"),
            mac: Some("02:00:00:00:00:50".parse().unwrap()),
            state: NeighbourState::Permanent,
        };
        assert_eq!(host.neighbour_add(&n).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            host.neighbour_add(&n).await.unwrap(),
            WriteOutcome::AlreadyPresent
        );
        let moved = Neighbour {
            mac: Some("02:00:00:00:00:51".parse().unwrap()),
            ..n.clone()
        };
        assert_eq!(
            host.neighbour_replace(&moved).await.unwrap(),
            WriteOutcome::Applied
        );
        let shown = ns
            .ip(&["neigh", "show", "10.77.0.50", "dev", "v0"])
            .unwrap();
        assert!(
            shown.contains("02:00:00:00:00:51") && shown.contains("PERMANENT"),
            "{shown}"
        );
        let read = host.neighbours().await.unwrap();
        assert!(read.contains(&moved), "{read:?}");
        assert_eq!(
            host.neighbour_del(v0, n.ip).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            host.neighbour_del(v0, n.ip).await.unwrap(),
            WriteOutcome::AlreadyAbsent
        );
        assert!(
            ns.ip(&["neigh", "show", "10.77.0.50", "dev", "v0"])
                .unwrap()
                .trim()
                .is_empty()
        );
    });
}

#[test]
fn monitor_recovers_from_lost_notifications() {
    let lab = lab();
    let ns = &lab.a;
    let v0 = ns.ifindex("v0").unwrap();
    let n = 300;
    let batch: String = (0..n)
        .map(|i| format!("address add 10.90.{}.{}/32 dev v0\n", i / 200, 1 + i % 200))
        .collect();
    run_in(ns, async {
        let host = NetlinkHost::connect().unwrap();
        // The smallest receive buffer the kernel allows: a burst overruns it.
        let (tx, _links) = mpsc::unbounded_channel();
        let mut w = host
            .watch(
                MonitorConfig {
                    receive_buffer: 0,
                    ..MonitorConfig::default()
                },
                Box::new(move |c: &LinkChange| {
                    let _ = tx.send(c.clone());
                }),
            )
            .await
            .unwrap();
        assert_eq!(w.resyncs(), 0);
        // The burst happens while this thread (and so the monitor) is blocked in `ip`.
        let mut child = std::process::Command::new("ip")
            .args(["-n", ns.name(), "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(batch.as_bytes())
                .unwrap();
        }
        assert!(child.wait().unwrap().success());
        until(&mut w, "every address of the burst", |s| {
            s.addresses_of(v0)
                .filter(|a| a.addr.to_string().starts_with("10.90."))
                .count()
                == n
        })
        .await;
        assert!(
            w.resyncs() >= 1,
            "the burst did not overrun the socket; the test proves nothing"
        );
    });
}

#[test]
fn monitor_follows_neighbours_only_when_asked() {
    let lab = lab();
    let ns = &lab.a;
    let v0 = ns.ifindex("v0").unwrap();
    run_in(ns, async {
        let host = NetlinkHost::connect().unwrap();
        let mut with = host
            .watch(
                MonitorConfig {
                    neighbours: true,
                    ..MonitorConfig::default()
                },
                Box::new(|_: &LinkChange| {}),
            )
            .await
            .unwrap();
        let without = host
            .watch(MonitorConfig::default(), Box::new(|_: &LinkChange| {}))
            .await
            .unwrap();
        ns.ip(&[
            "neigh",
            "add",
            "10.77.0.60",
            "lladdr",
            "02:00:00:00:00:60",
            "dev",
            "v0",
            "nud",
            "permanent",
        ])
        .unwrap();
        let entry = Neighbour {
            ifindex: v0,
            ip: ip("10.77.0.60"),
            mac: Some("02:00:00:00:00:60".parse().unwrap()),
            state: NeighbourState::Permanent,
        };
        until(&mut with, "neighbour added", |s| {
            s.neighbours.contains(&entry)
        })
        .await;
        ns.ip(&["neigh", "del", "10.77.0.60", "dev", "v0"]).unwrap();
        until(&mut with, "neighbour removed", |s| {
            !s.neighbours.contains(&entry)
        })
        .await;
        assert!(without.borrow().neighbours.is_empty());
    });
}
