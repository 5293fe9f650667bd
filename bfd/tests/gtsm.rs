//! RFC 5881 §5 (GTSM) and RFC 5880 §6.8.6 reception checks on the real socket path: a
//! hand-made peer in another namespace sends Control packets with chosen TTLs and contents
//! (needs root).

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use bfd::{BfdHandle, ControlPacket, Diag, PeerConfig, PeerState, State};
use netlab::{Check, Netns, wait_for};
use tokio::sync::watch;

fn down_packet(your_discr: u32) -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state: State::Down,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 0xabcd,
        your_discr,
        desired_min_tx: 1_000_000,
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
    }
}

/// Sends `p` from `from` (source port 49200) to `to:3784` with `ttl`, inside `ns`.
fn send(ns: &Netns, from: IpAddr, to: IpAddr, ttl: u32, wire: &[u8]) {
    ns.enter(|| {
        let s = UdpSocket::bind(SocketAddr::new(from, 49200)).unwrap();
        if from.is_ipv4() {
            s.set_ttl(ttl).unwrap();
        } else {
            socket2::SockRef::from(&s).set_unicast_hops_v6(ttl).unwrap();
        }
        s.send_to(wire, SocketAddr::new(to, 3784)).unwrap();
    })
    .unwrap();
}

fn run(family_v6: bool) {
    let us = Netns::new("bfd-gt-us").unwrap();
    let peer = Netns::new("bfd-gt-pe").unwrap();
    netlab::veth(&us, "eth0", &peer, "eth0").unwrap();
    let (ours, theirs) = if family_v6 {
        us.addr_add("eth0", "fd00::1/64").unwrap();
        peer.addr_add("eth0", "fd00::2/64").unwrap();
        ("fd00::1", "fd00::2")
    } else {
        us.addr_add("eth0", "10.0.0.1/30").unwrap();
        peer.addr_add("eth0", "10.0.0.2/30").unwrap();
        ("10.0.0.1", "10.0.0.2")
    };
    let (ours, theirs): (IpAddr, IpAddr) = (ours.parse().unwrap(), theirs.parse().unwrap());

    let path = us.path();
    let (tx, rx) = std::sync::mpsc::channel::<watch::Receiver<PeerState>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (h, task) = BfdHandle::spawn();
            let st = h
                .add_peer(PeerConfig::single_hop(ours, theirs, Some("eth0")))
                .await
                .unwrap();
            tx.send(st).unwrap();
            let _ = stop_rx.await;
            let _ = h.shutdown().await;
            let _ = task.await;
        });
    });
    let st = rx.recv().unwrap();

    // TTL 254: one hop away, or spoofed from further; discarded.
    for _ in 0..5 {
        send(&peer, theirs, ours, 254, &down_packet(0).encode());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Malformed (multipoint bit) with the right TTL: discarded too (RFC 5880 §6.8.6).
    let mut bad = down_packet(0).encode();
    bad[1] |= 0x01;
    send(&peer, theirs, ours, 255, &bad);
    std::thread::sleep(Duration::from_millis(300));
    let s = st.borrow().clone();
    assert_eq!(s.state, State::Down, "{s:?}");
    assert_eq!(s.remote_discr, 0, "{s:?}");

    // TTL 255: accepted, Down -> Init.
    send(&peer, theirs, ours, 255, &down_packet(0).encode());
    wait_for(
        "Init",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            let s = st.borrow().clone();
            Ok(if s.state == State::Init && s.remote_discr == 0xabcd {
                Check::Ready(())
            } else {
                Check::NotYet(format!("{s:?}"))
            })
        },
    )
    .unwrap();

    let _ = stop_tx.send(());
    thread.join().unwrap();
}

#[test]
fn v4_ttl_below_255_is_discarded() {
    run(false);
}

#[test]
fn v6_hop_limit_below_255_is_discarded() {
    run(true);
}
