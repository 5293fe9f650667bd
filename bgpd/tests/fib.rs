//! FIB import against the real kernel, each test in its own network namespace (netlab): routes
//! must be visible in `ip -j route show table N proto bgp`. Needs root.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgpd::fib::{FibConfig, FibNextHop, FibRoute, FibStats, FibSync, StartupPolicy};
use ipnet::IpNet;
use netlab::Netns;
use serde_json::Value;

const TABLE: u32 = 100;

/// A namespace with `d0` (10.99.0.1/24, 2001:db8:99::1/64): next hops 10.99.0.x and
/// 2001:db8:99::x are on-link.
fn lab() -> Netns {
    let ns = Netns::new("fib").unwrap();
    ns.disable_dad().unwrap();
    // A veth pair (this kernel may lack the dummy driver); only d0's subnets matter.
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        .unwrap();
    ns.link_up("d0").unwrap();
    ns.link_up("d1").unwrap();
    ns.addr_add("d0", "10.99.0.1/24").unwrap();
    ns.addr_add("d0", "2001:db8:99::1/64").unwrap();
    ns
}

/// A current-thread runtime; a test keeps one for its whole life so the FIB task survives
/// between [`block_in`] calls.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Drives `f` on `rt` inside `ns`, so the netlink socket is created (and used) there.
fn block_in<F: Future>(ns: &Netns, rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    ns.enter(|| rt.block_on(f)).unwrap()
}

fn config() -> FibConfig {
    FibConfig {
        table: TABLE,
        retry_interval: Duration::from_millis(100),
        ..FibConfig::default()
    }
}

/// `ip -j -<4|6> route show table 100 proto bgp`.
fn routes(ns: &Netns, family: &str) -> Vec<Value> {
    let table = TABLE.to_string();
    match ns
        .ip_json(&[family, "route", "show", "table", &table, "proto", "bgp"])
        .unwrap()
    {
        Value::Array(a) => a,
        other => panic!("unexpected ip output {other}"),
    }
}

fn route<'a>(all: &'a [Value], dst: &str) -> Option<&'a Value> {
    all.iter().find(|r| r["dst"] == dst)
}

/// Gateways of a route: `gateway`, `via.host` (RFC 8950), or each of `nexthops`.
fn gateways(r: &Value) -> Vec<String> {
    let one = |v: &Value| {
        v.get("gateway")
            .or_else(|| v.get("via").and_then(|v| v.get("host")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match r.get("nexthops").and_then(Value::as_array) {
        Some(hops) => {
            let mut g: Vec<String> = hops.iter().filter_map(one).collect();
            g.sort();
            g
        }
        None => one(r).into_iter().collect(),
    }
}

fn fr(prefix: &str, hops: &[&str]) -> FibRoute {
    FibRoute {
        prefix: prefix.parse().unwrap(),
        next_hops: hops
            .iter()
            .map(|h| FibNextHop::from(h.parse::<IpAddr>().unwrap()))
            .collect(),
    }
}

#[test]
fn install_ecmp_replace_withdraw_shutdown() {
    let ns = lab();
    let rt = rt();
    let (fib, task) = block_in(&ns, &rt, async {
        let (fib, task) = FibSync::spawn(config()).unwrap();
        fib.route(fr("10.10.0.0/24", &["10.99.0.2"])).await.unwrap();
        fib.route(fr("10.10.1.0/24", &["10.99.0.3", "10.99.0.2"]))
            .await
            .unwrap();
        fib.route(fr(
            "2001:db8:aa::/48",
            &["2001:db8:99::2", "2001:db8:99::3"],
        ))
        .await
        .unwrap();
        fib.route(fr("2001:db8:bb::/48", &["2001:db8:99::2"]))
            .await
            .unwrap();
        // RFC 8950: an IPv4 route with an IPv6 next hop (RTA_VIA).
        fib.route(fr("10.10.2.0/24", &["2001:db8:99::4"]))
            .await
            .unwrap();
        let s = fib.flush().await.unwrap();
        assert_eq!((s.installed, s.failures), (5, 0), "{s:?}");
        (fib, task)
    });
    let v4 = routes(&ns, "-4");
    let v6 = routes(&ns, "-6");
    let r = route(&v4, "10.10.0.0/24").unwrap_or_else(|| panic!("{v4:#?}"));
    assert_eq!(gateways(r), ["10.99.0.2"]);
    assert_eq!(r["metric"], 20);
    let r = route(&v4, "10.10.1.0/24").unwrap_or_else(|| panic!("{v4:#?}"));
    assert_eq!(gateways(r), ["10.99.0.2", "10.99.0.3"], "{r}");
    let r = route(&v4, "10.10.2.0/24").unwrap_or_else(|| panic!("{v4:#?}"));
    assert_eq!(gateways(r), ["2001:db8:99::4"], "{r}");
    let r = route(&v6, "2001:db8:aa::/48").unwrap_or_else(|| panic!("{v6:#?}"));
    assert_eq!(gateways(r), ["2001:db8:99::2", "2001:db8:99::3"], "{r}");
    assert!(route(&v6, "2001:db8:bb::/48").is_some(), "{v6:#?}");

    // Replace: ECMP -> single, single -> another; withdraw one.
    block_in(&ns, &rt, async {
        fib.route(fr("10.10.1.0/24", &["10.99.0.3"])).await.unwrap();
        fib.route(fr("10.10.0.0/24", &["10.99.0.4"])).await.unwrap();
        fib.route(fr("2001:db8:aa::/48", &["2001:db8:99::3"]))
            .await
            .unwrap();
        fib.withdraw("2001:db8:bb::/48".parse().unwrap())
            .await
            .unwrap();
        let s = fib.flush().await.unwrap();
        assert_eq!((s.installed, s.failures), (4, 0), "{s:?}");
    });
    let v4 = routes(&ns, "-4");
    let v6 = routes(&ns, "-6");
    assert_eq!(v4.len(), 3, "{v4:#?}");
    assert_eq!(gateways(route(&v4, "10.10.1.0/24").unwrap()), ["10.99.0.3"]);
    assert_eq!(gateways(route(&v4, "10.10.0.0/24").unwrap()), ["10.99.0.4"]);
    assert_eq!(v6.len(), 1, "{v6:#?}");
    assert_eq!(
        gateways(route(&v6, "2001:db8:aa::/48").unwrap()),
        ["2001:db8:99::3"]
    );

    // Shutdown without graceful restart removes everything.
    let stats = block_in(&ns, &rt, async {
        fib.shutdown(false).await.unwrap();
        task.await.unwrap().unwrap()
    });
    assert_eq!(stats.installed, 0, "{stats:?}");
    assert!(routes(&ns, "-4").is_empty() && routes(&ns, "-6").is_empty());
}

#[test]
fn graceful_restart_adopts_stale_routes_and_cleans_after_sync() {
    let ns = lab();
    let rt = rt();
    // A route of another protocol in the same table must survive everything below.
    ns.route_add(&[
        "10.20.9.0/24",
        "via",
        "10.99.0.9",
        "table",
        &TABLE.to_string(),
        "proto",
        "static",
    ])
    .unwrap();
    // First run: install, then stop for a graceful restart.
    block_in(&ns, &rt, async {
        let (fib, task) = FibSync::spawn(config()).unwrap();
        for (p, h) in [
            ("10.20.0.0/24", "10.99.0.2"),
            ("10.20.1.0/24", "10.99.0.2"),
            ("10.20.2.0/24", "10.99.0.2"),
        ] {
            fib.route(fr(p, &[h])).await.unwrap();
        }
        fib.route(fr(
            "2001:db8:cc::/48",
            &["2001:db8:99::2", "2001:db8:99::3"],
        ))
        .await
        .unwrap();
        fib.flush().await.unwrap();
        fib.shutdown(true).await.unwrap();
        let s = task.await.unwrap().unwrap();
        assert_eq!(s.installed, 4);
    });
    assert_eq!(routes(&ns, "-4").len(), 3, "kept across the restart");
    assert_eq!(routes(&ns, "-6").len(), 1, "kept across the restart");

    // Second run: adopt as stale, re-learn two (one unchanged, one changed), sync done.
    let (stale, after) = block_in(&ns, &rt, async {
        let (fib, task) = FibSync::spawn(config()).unwrap();
        let stale: FibStats = fib.flush().await.unwrap();
        fib.route(fr("10.20.0.0/24", &["10.99.0.2"])).await.unwrap();
        fib.route(fr("10.20.1.0/24", &["10.99.0.5"])).await.unwrap();
        fib.route(fr(
            "2001:db8:cc::/48",
            &["2001:db8:99::3", "2001:db8:99::2"],
        ))
        .await
        .unwrap();
        let relearned = fib.flush().await.unwrap();
        // Re-learning the unchanged routes (one IPv4, the IPv6 ECMP one) cost nothing.
        assert_eq!(relearned.replaced, 1, "{relearned:?}");
        assert_eq!(relearned.stale, 1, "{relearned:?}");
        fib.sync_done().await.unwrap();
        let after = fib.flush().await.unwrap();
        drop(fib); // like a crash: leaves the routes
        task.await.unwrap().unwrap();
        (stale, after)
    });
    assert_eq!((stale.installed, stale.stale), (4, 4), "{stale:?}");
    assert_eq!(
        (after.installed, after.stale, after.deleted),
        (3, 0, 1),
        "{after:?}"
    );
    let v4 = routes(&ns, "-4");
    assert_eq!(v4.len(), 2, "{v4:#?}");
    assert_eq!(gateways(route(&v4, "10.20.0.0/24").unwrap()), ["10.99.0.2"]);
    assert_eq!(gateways(route(&v4, "10.20.1.0/24").unwrap()), ["10.99.0.5"]);
    assert!(
        route(&v4, "10.20.2.0/24").is_none(),
        "stale route not deleted"
    );
    let v6 = routes(&ns, "-6");
    assert_eq!(
        gateways(route(&v6, "2001:db8:cc::/48").unwrap()),
        ["2001:db8:99::2", "2001:db8:99::3"]
    );
    let all = ns
        .ip(&["route", "show", "table", &TABLE.to_string()])
        .unwrap();
    assert!(
        all.contains("10.20.9.0/24"),
        "foreign route touched:\n{all}"
    );
}

#[test]
fn clean_startup_removes_leftovers() {
    let ns = lab();
    let rt = rt();
    let table = TABLE.to_string();
    ns.route_add(&[
        "10.30.0.0/24",
        "via",
        "10.99.0.2",
        "table",
        &table,
        "proto",
        "bgp",
        "metric",
        "7",
    ])
    .unwrap();
    let stats = block_in(&ns, &rt, async {
        let (fib, task) = FibSync::spawn(FibConfig {
            startup: StartupPolicy::Clean,
            ..config()
        })
        .unwrap();
        let s = fib.flush().await.unwrap();
        fib.shutdown(true).await.unwrap();
        task.await.unwrap().unwrap();
        s
    });
    assert_eq!((stats.installed, stats.deleted), (0, 1), "{stats:?}");
    assert!(routes(&ns, "-4").is_empty());
}

#[test]
fn refused_routes_are_retried() {
    let ns = lab();
    let rt = rt();
    let (fib, task, first) = block_in(&ns, &rt, async {
        let (fib, task) = FibSync::spawn(config()).unwrap();
        // 10.98.0.2 is not on-link yet: the kernel refuses (ENETUNREACH).
        fib.route(fr("10.40.0.0/24", &["10.98.0.2"])).await.unwrap();
        fib.route(fr("10.40.1.0/24", &["10.99.0.2"])).await.unwrap();
        let first = fib.flush().await.unwrap();
        (fib, task, first)
    });
    assert_eq!((first.installed, first.failures), (1, 1), "{first:?}");
    ns.addr_add("d0", "10.98.0.1/24").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let installed = block_in(&ns, &rt, async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = fib.flush().await.unwrap();
            if s.installed == 2 || Instant::now() > deadline {
                fib.shutdown(false).await.unwrap();
                task.await.unwrap().unwrap();
                return s;
            }
        }
    });
    assert_eq!(installed.installed, 2, "{installed:?}");
}

#[test]
fn many_routes_in_batches() {
    let ns = lab();
    let rt = rt();
    let n: u32 = 20_000;
    let prefixes: Vec<IpNet> = (0..n)
        .map(|i| {
            format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
                .parse()
                .unwrap()
        })
        .collect();
    let (installed, elapsed) = block_in(&ns, &rt, async {
        let (fib, task) = FibSync::spawn(config()).unwrap();
        let start = Instant::now();
        for (i, p) in prefixes.iter().enumerate() {
            // Every 1000th next hop is off-link: the kernel refuses exactly those, which
            // checks that answers are matched to the right requests inside a batch.
            let hops = if i % 1000 == 999 {
                vec!["10.98.0.2"]
            } else if i % 2 == 0 {
                vec!["10.99.0.2"]
            } else {
                vec!["10.99.0.2", "10.99.0.3"]
            };
            fib.route(fr(&p.to_string(), &hops)).await.unwrap();
        }
        let s = fib.flush().await.unwrap();
        let elapsed = start.elapsed();
        let listed = routes(&ns, "-4").len();
        assert_eq!(listed, s.installed, "kernel and table disagree");
        fib.shutdown(false).await.unwrap();
        let end = task.await.unwrap().unwrap();
        assert_eq!(end.installed, 0);
        (s, elapsed)
    });
    let refused = (n / 1000) as usize;
    assert_eq!(installed.installed, n as usize - refused, "{installed:?}");
    assert!(installed.failures >= refused as u64, "{installed:?}");
    // Informational only (no timed assertion): the README quotes the release-mode figure.
    eprintln!(
        "installed {n} routes in {elapsed:?} ({:.0} routes/s)",
        f64::from(n) / elapsed.as_secs_f64()
    );
}
