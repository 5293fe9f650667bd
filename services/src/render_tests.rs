#![allow(clippy::unwrap_used)]

use super::*;
use rackd_model::{CheckOptions, parse_documents};

fn snap(yaml: &str) -> Snapshot {
    let p = parse_documents("t.yaml", yaml);
    assert!(
        p.errors.is_empty(),
        "{:?}",
        p.errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    Snapshot::build(&[p], &CheckOptions::default()).snapshot
}

fn name(ns: &str, n: &str) -> ServiceName {
    (ns.into(), n.into())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fe(a: &str, port: u16, proto: L4Proto) -> Frontend {
    Frontend {
        addr: ip(a),
        port,
        proto,
    }
}

fn addrs(e: &ServiceEntry) -> Vec<(String, u16, bool)> {
    e.backends
        .iter()
        .map(|b| (b.backend.addr.to_string(), b.backend.port, b.local))
        .collect()
}

fn lb(entries: &[(&str, &str, &[&str])]) -> BTreeMap<ServiceName, Vec<IpAddr>> {
    entries
        .iter()
        .map(|(ns, n, a)| (name(ns, n), a.iter().map(|s| ip(s)).collect()))
        .collect()
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  externalIPs: [192.0.2.10]
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP}
  - {name: sig, port: 2905, protocol: SCTP}
status:
  loadBalancer:
    ingress: [{ip: 172.18.255.201}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v4
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: dns, port: 5353, protocol: UDP}
endpoints:
- addresses: [10.244.1.5]
  nodeName: n1
  conditions: {ready: true}
- addresses: [10.244.2.5]
  nodeName: n2
- addresses: [10.244.2.6]
  nodeName: n2
  conditions: {ready: false, serving: true, terminating: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v6
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
ports:
- {name: http, port: 8080}
endpoints:
- addresses: ["fd00:244:2::5"]
  nodeName: n2
"#;

#[test]
fn lb_and_external_frontends_with_backends() {
    let s = snap(WEB);
    let lbips = lb(&[("shop", "web", &["172.18.255.200", "2001:db8:dead:beef::"])]);
    let r = render_all(&s, &lbips, "n1");
    let fronts: Vec<String> = r.table.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        fronts,
        [
            "172.18.255.200:53/UDP",
            "172.18.255.200:80/TCP",
            "172.18.255.201:53/UDP",
            "172.18.255.201:80/TCP",
            "192.0.2.10:53/UDP",
            "192.0.2.10:80/TCP",
            "[2001:db8:dead:beef::]:53/UDP",
            "[2001:db8:dead:beef::]:80/TCP",
        ]
    );
    let http = r
        .table
        .get(&fe("172.18.255.200", 80, L4Proto::Tcp))
        .unwrap();
    // Ready ones only (10.244.2.6 is terminating while others are ready); ready unset = ready.
    assert_eq!(
        addrs(http),
        [
            ("10.244.1.5".into(), 8080, true),
            ("10.244.2.5".into(), 8080, false)
        ]
    );
    assert!(!http.local_only);
    assert_eq!(http.affinity_timeout, None);
    assert_eq!(http.source_ranges, None);
    assert_eq!(http.service, name("shop", "web"));
    let dns = r.table.get(&fe("192.0.2.10", 53, L4Proto::Udp)).unwrap();
    assert_eq!(dns.backends.len(), 2);
    assert!(
        dns.backends
            .iter()
            .all(|b| b.backend.port == 5353 && b.backend.proto == L4Proto::Udp)
    );
    let v6 = r
        .table
        .get(&fe("2001:db8:dead:beef::", 80, L4Proto::Tcp))
        .unwrap();
    assert_eq!(addrs(v6), [("fd00:244:2::5".into(), 8080, false)]);
    // The v6 slice has no dns port: a frontend with no backends.
    assert!(
        r.table
            .get(&fe("2001:db8:dead:beef::", 53, L4Proto::Udp))
            .unwrap()
            .backends
            .is_empty()
    );
    // SCTP is a typed problem, not a frontend.
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].reason, ProblemReason::SctpUnsupported);
    assert_eq!(
        r.problems[0].object,
        ObjectKey::namespaced(Kind::Service, "shop", "web")
    );
    assert_eq!(
        r.problems[0].to_condition().condition.reason,
        "SCTPUnsupported"
    );
}

#[test]
fn terminating_fallback_and_local_policy() {
    let y = WEB
        .replace("  conditions: {ready: true}\n", "  conditions: {ready: false, serving: true, terminating: true}\n")
        .replace("- addresses: [10.244.2.5]\n  nodeName: n2\n", "- addresses: [10.244.2.5]\n  nodeName: n2\n  conditions: {ready: false, serving: false, terminating: true}\n");
    let s = snap(&y);
    let lbips = lb(&[("shop", "web", &["172.18.255.200"])]);
    let r = render_all(&s, &lbips, "n1");
    let http = r
        .table
        .get(&fe("172.18.255.200", 80, L4Proto::Tcp))
        .unwrap();
    // No ready endpoint: the serving-and-terminating ones; 10.244.2.5 is not serving.
    assert_eq!(
        addrs(http),
        [
            ("10.244.1.5".into(), 8080, true),
            ("10.244.2.6".into(), 8080, false)
        ]
    );

    // externalTrafficPolicy: Local → this node's endpoints only, ready first.
    let y = WEB.replace(
        "  type: LoadBalancer\n",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
    );
    let s = snap(&y);
    let r = render_all(&s, &lbips, "n2");
    let http = r
        .table
        .get(&fe("172.18.255.200", 80, L4Proto::Tcp))
        .unwrap();
    assert!(http.local_only);
    assert_eq!(addrs(http), [("10.244.2.5".into(), 8080, true)]);
    let ext = r.table.get(&fe("192.0.2.10", 80, L4Proto::Tcp)).unwrap();
    assert!(ext.local_only);
    // A node with no local endpoint: frontends without backends.
    let r = render_all(&s, &lbips, "n9");
    assert!(
        r.table
            .get(&fe("172.18.255.200", 80, L4Proto::Tcp))
            .unwrap()
            .backends
            .is_empty()
    );
}

#[test]
fn affinity_and_source_ranges() {
    let y = WEB.replace(
        "  externalIPs: [192.0.2.10]\n",
        "  externalIPs: [192.0.2.10]\n  sessionAffinity: ClientIP\n  loadBalancerSourceRanges: [' 198.51.100.7/24', nope, 203.0.113.0/25]\n",
    );
    let s = snap(&y);
    let lbips = lb(&[("shop", "web", &["172.18.255.200", "2001:db8::1"])]);
    let r = render_all(&s, &lbips, "n1");
    let http = r
        .table
        .get(&fe("172.18.255.200", 80, L4Proto::Tcp))
        .unwrap();
    assert_eq!(http.affinity_timeout, Some(Duration::from_secs(10800)));
    assert_eq!(
        http.source_ranges,
        Some(vec![
            "198.51.100.0/24".parse().unwrap(),
            "203.0.113.0/25".parse().unwrap()
        ])
    );
    // IPv6 clients are not listed: the v6 LB frontend denies everyone.
    let v6 = r.table.get(&fe("2001:db8::1", 80, L4Proto::Tcp)).unwrap();
    assert_eq!(v6.source_ranges, Some(vec![]));
    // External IPs are not restricted (Cilium's default).
    assert_eq!(
        r.table
            .get(&fe("192.0.2.10", 80, L4Proto::Tcp))
            .unwrap()
            .source_ranges,
        None
    );
    let reasons: Vec<_> = r.problems.iter().map(|p| p.reason).collect();
    assert!(
        reasons.contains(&ProblemReason::InvalidSourceRange),
        "{reasons:?}"
    );
    assert!(r.problems.iter().any(|p| p.message.contains("\"nope\"")));

    let y = WEB.replace(
        "  externalIPs: [192.0.2.10]\n",
        "  externalIPs: [192.0.2.10]\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
    );
    let r = render_all(&snap(&y), &lbips, "n1");
    assert_eq!(
        r.table
            .get(&fe("192.0.2.10", 80, L4Proto::Tcp))
            .unwrap()
            .affinity_timeout,
        Some(Duration::from_secs(60))
    );
    let y = y.replace("timeoutSeconds: 60", "timeoutSeconds: 90000");
    let r = render_all(&snap(&y), &lbips, "n1");
    assert_eq!(
        r.table
            .get(&fe("192.0.2.10", 80, L4Proto::Tcp))
            .unwrap()
            .affinity_timeout,
        Some(Duration::from_secs(10800))
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.reason == ProblemReason::InvalidAffinityTimeout)
    );
}

#[test]
fn only_loadbalancers_get_lb_addresses() {
    // A ClusterIP Service: LB-IPAM's entry and a stale status are ignored; externalIPs count.
    let y = WEB.replace("  type: LoadBalancer\n", "  type: ClusterIP\n");
    let lbips = lb(&[("shop", "web", &["172.18.255.200"])]);
    let r = render_all(&snap(&y), &lbips, "n1");
    let fronts: BTreeSet<IpAddr> = r.table.iter().map(|(f, _)| f.addr).collect();
    assert_eq!(fronts, BTreeSet::from([ip("192.0.2.10")]));
    let y = y.replace("  externalIPs: [192.0.2.10]\n", "");
    assert!(render_all(&snap(&y), &lbips, "n1").table.is_empty());
    let y = WEB.replace(
        "  type: LoadBalancer\n",
        "  type: ExternalName\n  externalName: x.example\n",
    );
    assert!(render_all(&snap(&y), &lbips, "n1").table.is_empty());
}

#[test]
fn bad_ports_are_problems() {
    let y = WEB
        .replace(
            "{name: dns, port: 5353, protocol: UDP}",
            "{name: dns, port: 0, protocol: UDP}",
        )
        .replace("  - {name: sig, port: 2905, protocol: SCTP}\n", "");
    let lbips = lb(&[]);
    let r = render_all(&snap(&y), &lbips, "n1");
    assert!(
        r.table
            .get(&fe("192.0.2.10", 53, L4Proto::Udp))
            .unwrap()
            .backends
            .is_empty()
    );
    let p: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.reason == ProblemReason::InvalidPort)
        .collect();
    assert_eq!(p.len(), 1, "{:?}", r.problems);
    assert!(
        p[0].message.contains("EndpointSlice shop/web-v4"),
        "{}",
        p[0]
    );
    // An unnamed port matches an unnamed slice port.
    let y = WEB
        .replace("  - {name: http, port: 80, protocol: TCP, targetPort: 8080}\n", "  - {port: 80}\n")
        .replace("- {name: http, port: 8080, protocol: TCP}\n", "- {port: 8080}\n")
        .replace("  - {name: dns, port: 53, protocol: UDP}\n  - {name: sig, port: 2905, protocol: SCTP}\n", "");
    let r = render_all(&snap(&y), &lbips, "n1");
    assert_eq!(
        r.table
            .get(&fe("192.0.2.10", 80, L4Proto::Tcp))
            .unwrap()
            .backends
            .len(),
        2
    );
}

#[test]
fn pod_gives_locality_without_node_name() {
    let y = format!(
        "{}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop}}\nspec: {{nodeName: n7}}\nstatus: {{podIP: 10.244.1.5}}\n",
        WEB.replace(
            "- addresses: [10.244.1.5]\n  nodeName: n1\n",
            "- addresses: [10.244.1.5]\n  targetRef: {kind: Pod, name: web-0}\n"
        )
    );
    let s = snap(&y);
    let lbips = lb(&[]);
    let r = render_all(&s, &lbips, "n7");
    let http = r.table.get(&fe("192.0.2.10", 80, L4Proto::Tcp)).unwrap();
    assert_eq!(addrs(http)[0], ("10.244.1.5".into(), 8080, true));
    // Moving the Pod affects the Service.
    let moved = snap(&y.replace("nodeName: n7", "nodeName: n8"));
    assert_eq!(
        affected_services(&s, &moved),
        BTreeSet::from([name("shop", "web")])
    );
    assert!(
        !render_all(&moved, &lbips, "n7")
            .table
            .get(&fe("192.0.2.10", 80, L4Proto::Tcp))
            .unwrap()
            .backends[0]
            .local
    );
}

#[test]
fn a_pod_change_touches_only_the_services_it_places() {
    // web's endpoint takes its node from Pod web-0; api's endpoint names web-0 too but has
    // its own node; db's slice names another Pod.
    let svc = |n: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {n}, namespace: shop}}\nspec:\n  externalIPs: [{ip}]\n  ports: [{{port: 80}}]\n"
        )
    };
    let slice = |n: &str, svc: &str, ep: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {n}, namespace: shop, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints:\n- {{addresses: [10.244.1.5], {ep}}}\n"
        )
    };
    let pod = |n: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}, namespace: shop}}\nspec: {{nodeName: {node}}}\n"
        )
    };
    let docs = |web0: &str, db0: &str| {
        [
            svc("web", "192.0.2.10"),
            svc("api", "192.0.2.11"),
            svc("db", "192.0.2.12"),
            slice("web-1", "web", "targetRef: {kind: Pod, name: web-0}"),
            slice(
                "api-1",
                "api",
                "targetRef: {kind: Pod, name: web-0}, nodeName: n1",
            ),
            slice("db-1", "db", "targetRef: {kind: Pod, name: db-0}"),
            pod("web-0", web0),
            pod("db-0", db0),
        ]
        .join("---\n")
    };
    let s = snap(&docs("n1", "n1"));
    let web_moved = snap(&docs("n2", "n1"));
    assert_eq!(
        affected_services(&s, &web_moved),
        BTreeSet::from([name("shop", "web")])
    );
    let both_moved = snap(&docs("n2", "n2"));
    assert_eq!(
        affected_services(&s, &both_moved),
        BTreeSet::from([name("shop", "web"), name("shop", "db")])
    );
    // The Pod going away and coming back: the same Services.
    let no_pods = snap(
        &docs("n1", "n1")
            .split("---\n")
            .take(6)
            .collect::<Vec<_>>()
            .join("---\n"),
    );
    assert_eq!(
        affected_services(&s, &no_pods),
        BTreeSet::from([name("shop", "web"), name("shop", "db")])
    );
    assert_eq!(
        affected_services(&no_pods, &s),
        BTreeSet::from([name("shop", "web"), name("shop", "db")])
    );
    // What the incremental path renders equals a full render.
    let lbips = lb(&[]);
    let mut t = render_all(&s, &lbips, "n1").table;
    for svc in affected_services(&s, &web_moved) {
        let (e, _) = render_service(&web_moved, &lbips, "n1", &svc);
        t.set_service(&svc, e);
    }
    assert_eq!(t, render_all(&web_moved, &lbips, "n1").table);
}

#[test]
fn conflicts_and_incremental_rendering() {
    let other = "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  externalIPs: [192.0.2.10]\n  ports: [{name: http, port: 80}]\n";
    let s = snap(&format!("{WEB}{other}"));
    let lbips = lb(&[]);
    let r = render_all(&s, &lbips, "n1");
    // shop/api < shop/web: api serves 192.0.2.10:80, web's claim is a problem.
    assert_eq!(
        r.table
            .get(&fe("192.0.2.10", 80, L4Proto::Tcp))
            .unwrap()
            .service,
        name("shop", "api")
    );
    let c: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.reason == ProblemReason::FrontendConflict)
        .collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].object.name, "web");

    // Incremental: start from web alone, add api, then remove it again.
    let only_web = snap(WEB);
    let mut t = render_all(&only_web, &lbips, "n1").table;
    let before = t.clone();
    for svc in affected_services(&only_web, &s) {
        let (e, _) = render_service(&s, &lbips, "n1", &svc);
        t.set_service(&svc, e);
    }
    assert_eq!(t, r.table);
    let ch = t.changes_since(&before);
    assert_eq!(ch.len(), 1, "only the contested frontend changes");
    for svc in affected_services(&s, &only_web) {
        let (e, _) = render_service(&only_web, &lbips, "n1", &svc);
        t.set_service(&svc, e);
    }
    assert_eq!(t, before);
    assert_eq!(
        t.get(&fe("192.0.2.10", 80, L4Proto::Tcp)).unwrap().service,
        name("shop", "web")
    );
}

#[test]
fn lbips_type_of_rackd() {
    let m: imbl::OrdMap<ServiceName, Arc<[IpAddr]>> =
        imbl::OrdMap::unit(name("shop", "web"), Arc::from(vec![ip("172.18.255.200")]));
    let r = render_all(&snap(WEB), &m, "n1");
    assert!(
        r.table
            .get(&fe("172.18.255.200", 80, L4Proto::Tcp))
            .is_some()
    );
}
