//! The load balancer attached for real: a client namespace, the node
//! (programs on its client-facing veth) and a backend namespace behind it.
//! Connections to the frontend reach the backend with the client's address
//! (local backend: no SNAT), both families, through the redirect path; the
//! TCX chains hold our programs in the policy's order whatever the attach
//! order; a reopened handle adopts the links in place; uninstall removes
//! everything. Needs root.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Netns, PinDir};
use datapath::lb::*;
use datapath::{AttachPoint, Probe, ProgramKind, Responder, Slot};

const VIP4: &str = "198.18.0.10";
const VIP6: &str = "2001:db8:ff::10";

struct Lab {
    client: Netns,
    node: Netns,
    backend: Netns,
    dir: PinDir,
}

fn lab() -> Lab {
    let dir = PinDir::new();
    let client = Netns::new("dp-lbc").unwrap();
    let node = Netns::new("dp-lbn").unwrap();
    let backend = Netns::new("dp-lbb").unwrap();
    netlab::veth(&client, "vc", &node, "va").unwrap();
    netlab::veth(&node, "vn", &backend, "vb").unwrap();
    client.addr_add("vc", "192.0.2.1/24").unwrap();
    client.addr_add("vc", "2001:db8::1/64").unwrap();
    client
        .route_add(&[&format!("{VIP4}/32"), "via", "192.0.2.2"])
        .unwrap();
    client
        .route_add(&[&format!("{VIP6}/128"), "via", "2001:db8::2"])
        .unwrap();
    node.addr_add("va", "192.0.2.2/24").unwrap();
    node.addr_add("va", "2001:db8::2/64").unwrap();
    node.addr_add("vn", "10.244.0.1/24").unwrap();
    node.addr_add("vn", "fd00:244::1/64").unwrap();
    node.enable_forwarding().unwrap();
    backend.addr_add("vb", "10.244.0.5/24").unwrap();
    backend.addr_add("vb", "fd00:244::5/64").unwrap();
    backend
        .route_add(&["default", "via", "10.244.0.1"])
        .unwrap();
    backend.route_add(&["::/0", "via", "fd00:244::1"]).unwrap();
    Lab {
        client,
        node,
        backend,
        dir,
    }
}

/// A server in the backend namespace that answers each of `n` connections
/// with the address it saw the connection from.
fn serve(ns: &Netns, n: usize) -> std::thread::JoinHandle<()> {
    let (l4, l6) = ns
        .enter(|| {
            (
                TcpListener::bind("0.0.0.0:8080").unwrap(),
                TcpListener::bind("[::]:8081").unwrap(),
            )
        })
        .unwrap();
    std::thread::spawn(move || {
        for i in 0..n {
            let l = if i % 2 == 0 { &l4 } else { &l6 };
            let (mut s, peer) = l.accept().unwrap();
            use std::io::Write;
            s.write_all(peer.ip().to_string().as_bytes()).unwrap();
        }
    })
}

/// Connects from the client namespace and returns what the server said.
fn fetch(ns: &Netns, to: SocketAddr) -> String {
    ns.enter(|| {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .unwrap()
}

fn program(lb: &mut ServiceLb) {
    for (id, addr, port) in [(1, "10.244.0.5", 8080), (2, "fd00:244::5", 8081)] {
        lb.upsert_backend(
            BackendId(id),
            &BackendValue {
                addr: addr.parse().unwrap(),
                port,
                proto: L4Proto::Tcp,
                local: true,
            },
        )
        .unwrap();
    }
    let m = lb.config().maglev_table_size as usize;
    for (id, vip) in [(1u32, VIP4), (2, VIP6)] {
        let lut = rackd_types::maglev::MaglevTable::from_slot_ids(&vec![id; m]).unwrap();
        lb.upsert_service(
            &Frontend {
                addr: vip.parse().unwrap(),
                port: 80,
                proto: L4Proto::Tcp,
            },
            &ServiceEntry {
                id,
                local_only: false,
                affinity_timeout: None,
                lut: &lut,
                source_ranges: &[],
            },
        )
        .unwrap();
    }
}

fn cfg() -> LbConfig {
    LbConfig {
        maglev_table_size: 251,
        sizes: LbSizes {
            ct: 1024,
            nat: 1024,
            lut_chunks: 64,
            ..LbSizes::default()
        },
        ..LbConfig::default()
    }
}

#[test]
fn forwards_to_a_local_backend_in_policy_order_and_uninstalls() {
    let lab = lab();
    let root = lab.dir.path().to_path_buf();
    let _in = lab.node.enter_guard().unwrap();
    let va = datapath::sys::if_index("va").unwrap();

    // Attach in the "wrong" order: probe, load balancer, responder.
    let mut probe = Probe::open_or_create(&root).unwrap();
    probe.attach(va).unwrap();
    let mut lb = ServiceLb::open_or_create(&root, &cfg()).unwrap();
    lb.attach(va).unwrap();
    let mut r = Responder::open_or_create(&root).unwrap();
    r.attach(va).unwrap();
    let ingress = datapath::chain(&root, va, AttachPoint::TcIngress).unwrap();
    assert_eq!(
        ingress,
        [
            Slot::Ours(ProgramKind::L2Responder),
            Slot::Ours(ProgramKind::ServiceLb),
            Slot::Ours(ProgramKind::Probe)
        ]
    );
    let egress = datapath::chain(&root, va, AttachPoint::TcEgress).unwrap();
    assert_eq!(egress, [Slot::Ours(ProgramKind::ServiceLbEgress)]);
    assert_eq!(lb.attached().unwrap(), [va]);

    program(&mut lb);
    let server = serve(&lab.backend, 4);
    let v4: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let v6: SocketAddr = format!("[{VIP6}]:80").parse().unwrap();
    assert_eq!(
        fetch(&lab.client, v4),
        "192.0.2.1",
        "client address preserved"
    );
    assert_eq!(fetch(&lab.client, v6), "2001:db8::1");
    let c = lb.counters().unwrap();
    assert!(c.events.redirected > 0, "{c:?}");
    assert!(c.services.iter().all(|(_, s)| s.packets > 0), "{c:?}");

    // A new handle (daemon restart) adopts both links in place.
    let links = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("tc_"))
            .collect();
        v.sort();
        v
    };
    let dir = lb.pin_dir().to_path_buf();
    assert_eq!(
        links(&dir),
        [format!("tc_egress_{va}"), format!("tc_ingress_{va}")]
    );
    drop(lb);
    let lb = ServiceLb::open_or_create(&root, &cfg()).unwrap();
    assert_eq!(
        datapath::chain(&root, va, AttachPoint::TcIngress).unwrap(),
        ingress
    );
    assert_eq!(
        datapath::chain(&root, va, AttachPoint::TcEgress).unwrap(),
        egress
    );
    assert_eq!(fetch(&lab.client, v4), "192.0.2.1", "after adoption");
    assert_eq!(fetch(&lab.client, v6), "2001:db8::1");
    server.join().unwrap();

    drop((lb, r, probe));
    datapath::uninstall(&root).unwrap();
    assert!(
        datapath::chain(&root, va, AttachPoint::TcIngress)
            .unwrap()
            .is_empty()
    );
    assert!(
        datapath::chain(&root, va, AttachPoint::TcEgress)
            .unwrap()
            .is_empty()
    );
    assert!(!root.exists());
    drop(_in);
    drop(lab.node);
}

/// A remote backend (another namespace behind a second device, which also
/// carries the programs): the backend sees the node's address (SNAT), the
/// client gets its answer from the frontend; a pod connecting out is
/// masqueraded to the node's address and gets its answer back.
#[test]
fn remote_backend_snat_and_masquerade_for_real() {
    let lab = lab();
    let remote = Netns::new("dp-lbr").unwrap();
    netlab::veth(&lab.node, "vr", &remote, "vb").unwrap();
    lab.node.addr_add("vr", "10.244.1.1/24").unwrap();
    lab.node.addr_add("vr", "fd00:244:1::1/64").unwrap();
    remote.addr_add("vb", "10.244.1.9/24").unwrap();
    remote.addr_add("vb", "fd00:244:1::9/64").unwrap();
    remote.route_add(&["default", "via", "10.244.1.1"]).unwrap();
    remote.route_add(&["::/0", "via", "fd00:244:1::1"]).unwrap();
    let root = lab.dir.path().to_path_buf();
    let _in = lab.node.enter_guard().unwrap();
    let va = datapath::sys::if_index("va").unwrap();
    let vr = datapath::sys::if_index("vr").unwrap();
    let mut lb = ServiceLb::open_or_create(&root, &cfg()).unwrap();
    for (dev, v4, v6) in [
        (va, "192.0.2.2", "2001:db8::2"),
        (vr, "10.244.1.1", "fd00:244:1::1"),
    ] {
        lb.attach(dev).unwrap();
        lb.set_device(
            dev,
            DeviceAddrs {
                v4: Some(v4.parse().unwrap()),
                v6: Some(v6.parse().unwrap()),
            },
        )
        .unwrap();
    }
    program(&mut lb);
    for (id, addr, port) in [(1, "10.244.1.9", 8080), (2, "fd00:244:1::9", 8081)] {
        lb.upsert_backend(
            BackendId(id),
            &BackendValue {
                addr: addr.parse().unwrap(),
                port,
                proto: L4Proto::Tcp,
                local: false,
            },
        )
        .unwrap();
    }
    let server = serve(&remote, 2);
    let v4: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let v6: SocketAddr = format!("[{VIP6}]:80").parse().unwrap();
    assert_eq!(
        fetch(&lab.client, v4),
        "192.0.2.2",
        "SNAT to the device address"
    );
    assert_eq!(fetch(&lab.client, v6), "2001:db8::2");
    server.join().unwrap();
    assert!(lb.nat_entries().unwrap().len() >= 4);

    // Masquerade: the backend pod talks to the client network.
    lb.set_masquerade(&MasqConfig {
        v4: true,
        v6: true,
        pod_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:244::/48".parse().unwrap(),
        ],
        non_masq: vec![],
    })
    .unwrap();
    let server = serve(&lab.client, 2);
    let seen4 = fetch(&lab.backend, "192.0.2.1:8080".parse().unwrap());
    let seen6 = fetch(&lab.backend, "[2001:db8::1]:8081".parse().unwrap());
    assert_eq!(
        (seen4.as_str(), seen6.as_str()),
        ("192.0.2.2", "2001:db8::2")
    );
    server.join().unwrap();
    drop(lb);
    datapath::uninstall(&root).unwrap();
    drop(_in);
}

/// A layout version bump of the load balancer (versions 2 and 3 changed the Maglev table): the
/// older folder's links are adopted, and every map whose layout did not change is carried
/// over with its contents, so an established connection goes on through the new program
/// before the control plane has written anything. The Maglev table starts empty (its old
/// layout is unreadable): a new connection is a counted LUT miss until the table is written
/// again (the positive control that the connection above lived on its carried flow entry),
/// then new connections pass.
#[test]
fn a_layout_upgrade_carries_flows_and_services_and_starts_maglev_afresh() {
    use std::io::Write;
    let lab = lab();
    let root = lab.dir.path().to_path_buf();
    let _in = lab.node.enter_guard().unwrap();
    let va = datapath::sys::if_index("va").unwrap();
    let mut lb = ServiceLb::open_or_create(&root, &cfg()).unwrap();
    lb.attach(va).unwrap();
    program(&mut lb);

    // An echo server: every connection gets back what it sends, until it closes.
    let l = lab
        .backend
        .enter(|| TcpListener::bind("0.0.0.0:8080").unwrap())
        .unwrap();
    let server = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            conns.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).unwrap(),
                    }
                }
            }));
        }
        for c in conns {
            c.join().unwrap();
        }
    });
    let v4: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let echo = |s: &mut TcpStream, what: &[u8]| {
        s.write_all(what).unwrap();
        let mut got = vec![0u8; what.len()];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("no echo of {:?}: {e}", String::from_utf8_lossy(what)));
        assert_eq!(got, what);
    };
    let mut conn = lab
        .client
        .enter(|| TcpStream::connect_timeout(&v4, Duration::from_secs(5)).unwrap())
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    echo(&mut conn, b"before");
    let flows = lb.ct_entries().unwrap().len();
    assert!(flows >= 2, "the connection's flow and reply entries");
    let dir = lb.pin_dir().to_path_buf();
    drop(lb);

    // What version 1 left: the same maps under their version 1 names in `lb_v1/`.
    let old = root.join("lb_v1");
    std::fs::rename(&dir, &old).unwrap();
    for e in std::fs::read_dir(&old).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(base) = name.strip_suffix("_v3") {
            std::fs::rename(old.join(&name), old.join(format!("{base}_v1"))).unwrap();
        }
    }

    let mut lb = ServiceLb::open_or_create(&root, &cfg()).unwrap();
    let mut folders: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    folders.sort();
    assert_eq!(folders, ["lb_v3"], "the old folder is gone");
    assert_eq!(lb.attached().unwrap(), [va], "the old link was adopted");
    assert_eq!(lb.ct_entries().unwrap().len(), flows, "flows carried over");
    let services = lb.services().unwrap();
    assert_eq!(services.len(), 2, "frontends carried over: {services:?}");
    assert!(
        services.iter().all(|s| s.backends.is_empty()),
        "the Maglev table starts empty: {services:?}"
    );
    // The established connection goes on through the new program.
    echo(&mut conn, b"after the upgrade");
    // A new connection has no table to pick a backend from: counted, refused.
    let miss = |lb: &ServiceLb| {
        lb.counters()
            .unwrap()
            .drops
            .iter()
            .find(|(r, _)| *r == DropReason::LutMiss)
            .map(|(_, n)| *n)
            .unwrap()
    };
    let misses = miss(&lb);
    let refused = lab
        .client
        .enter(|| TcpStream::connect_timeout(&v4, Duration::from_millis(300)).is_err())
        .unwrap();
    assert!(refused, "a new connection passed without a Maglev table");
    assert!(miss(&lb) > misses, "the miss was counted");
    // The control plane writes the table again: new connections pass.
    program(&mut lb);
    let mut second = lab
        .client
        .enter(|| TcpStream::connect_timeout(&v4, Duration::from_secs(5)).unwrap())
        .unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    echo(&mut second, b"new");
    echo(&mut conn, b"still");
    drop((conn, second));
    server.join().unwrap();

    drop(lb);
    datapath::uninstall(&root).unwrap();
    assert!(!root.exists());
    drop(_in);
    drop(lab.node);
}
