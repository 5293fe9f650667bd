//! The BGP controller with in-memory inputs (a configuration, LB-IPAM's addresses, host
//! facts) against in-process bgpd speakers whose peers are closed loopback ports: what one
//! edit costs, and that the incremental path renders what a full render would.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use super::*;
use crate::lbipam_ctl::LbStatus;
use crate::testing::{config_state as state, ctx, lab_files};

fn lab(extra: &str, closed: u16) -> String {
    let mut text = String::new();
    for (_, t) in lab_files() {
        text.push_str(&t);
        text.push_str("\n---\n");
    }
    // Peers on closed loopback ports: sessions never come up, nothing leaves the machine.
    let with_port = format!("name: cilium-peer\nspec:\n  transport: {{peerPort: {closed}}}\n");
    assert!(text.contains("name: cilium-peer\nspec:\n"));
    let text = text
        .replace("peerAddress: 10.0.0.1", "peerAddress: 127.0.0.10")
        .replace("peerAddress: fd00:10::1", "peerAddress: 127.0.0.11")
        .replacen("name: cilium-peer\nspec:\n", &with_port, 1);
    format!("{text}{extra}")
}

fn no_holders() -> Arc<EgressHolders> {
    Arc::new(EgressHolders::new())
}

fn svc(i: usize) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: scale, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

fn lb_for(cfg: &ConfigState, first: u8) -> Arc<LbStatus> {
    let mut ips = crate::lbipam_ctl::LbIps::new();
    for (i, s) in cfg.snapshot.services().enumerate() {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        if ns != "scale" {
            continue;
        }
        let ip: IpAddr = format!("100.64.{first}.{}", i % 250 + 1).parse().unwrap();
        ips.insert(
            (ns, s.metadata.name.clone().unwrap_or_default()),
            Arc::from([ip]),
        );
    }
    Arc::new(LbStatus {
        ready: true,
        settled: true,
        ips,
        ..LbStatus::default()
    })
}

/// One Service added among many: one route added, one export patch per peer, no peer
/// update and no new speaker; and what the controller holds equals a full render.
#[tokio::test]
async fn one_service_edit_is_one_route_and_one_patch_per_peer() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let many: String = (0..200).map(svc).collect();
    let (_peers_tx, peers) = watch::channel(BgpPeers::from([]));
    let (mut c, status) =
        BgpController::new("node1", "kube-system", Reconciler::new(false), false, peers);
    let host = Arc::new(HostInfo::default());
    let cfg = state(&lab(&many, closed));
    let lb = lb_for(&cfg, 0);
    c.reconcile(
        &(cfg.clone(), lb.clone(), host.clone(), no_holders()),
        ctx(true),
    )
    .await
    .unwrap();
    let first = c.applied();
    assert_eq!(first.speakers_started, 1);
    assert_eq!(first.peers_added, 2);
    assert!(first.routes_added > 200, "{first:?}");
    assert!(
        status.borrow().conditions.is_empty(),
        "{:?}",
        status.borrow().conditions
    );

    // The same inputs again: nothing.
    c.reconcile(
        &(cfg.clone(), lb.clone(), host.clone(), no_holders()),
        ctx(false),
    )
    .await
    .unwrap();
    assert_eq!(c.applied(), first);

    // One more Service with its address.
    let cfg2 = state(&lab(&format!("{many}{}", svc(200)), closed));
    let lb2 = lb_for(&cfg2, 0);
    c.reconcile(
        &(cfg2.clone(), lb2.clone(), host.clone(), no_holders()),
        ctx(false),
    )
    .await
    .unwrap();
    let second = c.applied();
    assert_eq!(
        second,
        reconcile::Applied {
            routes_added: first.routes_added + 1,
            exports_patched: first.exports_patched + 2,
            ..first
        }
    );
    let full = render::render(
        &cfg2.snapshot,
        &RenderInput {
            node_name: "node1",
            host: HostInfo::default(),
            lb_ips: lb2.ips.clone(),
            secrets_namespace: "kube-system",
            withdraw_without_backends: false,
            egress: Default::default(),
        },
    );
    assert_eq!(*status.borrow().desired, full, "incremental == full render");

    // Its address moves: one route out, one in; the Service goes: one route out.
    let lb3 = lb_for(&cfg2, 1);
    c.reconcile(
        &(cfg2.clone(), lb3.clone(), host.clone(), no_holders()),
        ctx(false),
    )
    .await
    .unwrap();
    let third = c.applied();
    assert_eq!(third.routes_added - second.routes_added, 201);
    assert_eq!(third.routes_removed - second.routes_removed, 201);
    assert_eq!(third.peers_updated, first.peers_updated);
    c.stop_speakers().await;
}

/// The incremental render equals the full one after every kind of Service-side change:
/// labels (selected or not), type, traffic policy with and without a local endpoint, an
/// EndpointSlice moving between Services, addresses moving.
#[test]
fn update_services_equals_render_through_edits() {
    let base = r#"---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: shop, labels: {org: empire}}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: shop}
spec: {type: LoadBalancer, externalIPs: [192.0.2.9], ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, namespace: shop, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
endpoints: [{addresses: [10.1.1.5], nodeName: node1}]
"#;
    let edits: Vec<(&str, &str)> = vec![
        ("nodeName: node1", "nodeName: node2"),
        (
            "externalTrafficPolicy: Local",
            "externalTrafficPolicy: Cluster",
        ),
        (
            "kubernetes.io/service-name: a",
            "kubernetes.io/service-name: b",
        ),
        (
            "externalIPs: [192.0.2.9]",
            "externalIPs: [192.0.2.10, 192.0.2.11]",
        ),
        (
            "{name: b, namespace: shop}",
            "{name: b, namespace: shop, labels: {bgp: never-used-value}}",
        ),
        (
            "type: LoadBalancer, externalTrafficPolicy",
            "type: ClusterIP, externalTrafficPolicy",
        ),
    ];
    let closed = 1;
    let mut text = lab(base, closed);
    let input = |_: &ConfigState, lb: &Arc<LbStatus>| RenderInput {
        node_name: "node1",
        host: HostInfo::default(),
        lb_ips: lb.ips.clone(),
        secrets_namespace: "kube-system",
        withdraw_without_backends: false,
        egress: Default::default(),
    };
    let mut prev = state(&text);
    let mut lb = Arc::new(LbStatus::default());
    let mut d = render::render(&prev.snapshot, &input(&prev, &lb));
    for (i, (from, to)) in edits.iter().enumerate() {
        assert!(text.contains(from), "edit {i}: {from}");
        text = text.replacen(from, to, 1);
        let next = state(&text);
        let mut ips = crate::lbipam_ctl::LbIps::new();
        let ip: IpAddr = format!("20.0.10.{}", 50 + i).parse().unwrap();
        ips.insert(("shop".to_owned(), "a".to_owned()), Arc::from([ip]));
        let next_lb = Arc::new(LbStatus {
            ips,
            ..LbStatus::default()
        });
        let services: BTreeSet<ServiceName> = [
            ("shop".to_owned(), "a".to_owned()),
            ("shop".to_owned(), "b".to_owned()),
        ]
        .into_iter()
        .collect();
        render::update_services(&mut d, &next.snapshot, &input(&next, &next_lb), &services);
        let full = render::render(&next.snapshot, &input(&next, &next_lb));
        assert_eq!(d, full, "after edit {i}: {from} -> {to}");
        prev = next;
        lb = next_lb;
    }
    let _ = (prev, lb);
}

/// A reconcile error is a condition of an object key (this node's Node, standing for its
/// CiliumBGPNodeConfig), not of a text label, and goes when the error does.
#[tokio::test]
async fn reconcile_errors_are_conditions_of_the_node() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The instance's listening port is taken: the speaker cannot start.
    let busy = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let listen = |port: u16| {
        format!(
            "---\napiVersion: cilium.io/v2\nkind: CiliumBGPNodeConfigOverride\nmetadata: {{name: node1}}\nspec:\n  bgpInstances:\n  - name: rack\n    localPort: {port}\n"
        )
    };
    let (_peers_tx, peers) = watch::channel(BgpPeers::from([]));
    let (mut c, status) =
        BgpController::new("node1", "kube-system", Reconciler::new(false), false, peers);
    let host = Arc::new(HostInfo::default());
    let lb = Arc::new(LbStatus {
        ready: true,
        settled: true,
        ..LbStatus::default()
    });
    let cfg = state(&lab(&listen(port), closed));
    let err = c
        .reconcile(
            &(cfg.clone(), lb.clone(), host.clone(), no_holders()),
            ctx(true),
        )
        .await
        .unwrap_err();
    assert_eq!(err.count, 1, "{err}");
    let conds = status.borrow().conditions.clone();
    assert_eq!(conds.len(), 1, "{conds:?}");
    let cond = &conds[0];
    assert_eq!(
        cond.object,
        Some(rackd_model::rackd_types::ObjectKey::cluster(
            Kind::Node,
            "node1"
        ))
    );
    assert_eq!(cond.object, Some(reconcile_error_object("node1")));
    assert_eq!(cond.source, None);
    assert_eq!(cond.condition.type_, types::BGP_RECONCILE_ERROR);
    assert_eq!(cond.condition.reason, reasons::FAILED);
    assert!(
        cond.condition
            .message
            .starts_with("BGP instance rack: cannot start the speaker"),
        "{cond}"
    );
    assert!(cond.is_problem());
    // The port freed: the retry starts the speaker and the condition goes.
    drop(busy);
    c.reconcile(&(cfg, lb, host, no_holders()), ctx(false))
        .await
        .unwrap();
    assert!(
        status.borrow().conditions.is_empty(),
        "{:?}",
        status.borrow().conditions
    );
    c.stop_speakers().await;
}
