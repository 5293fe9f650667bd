//! The client against an in-process collector on loopback: the session order (RFC 7854 §3.3,
//! §5), replay suppression, and the slow-collector policy (queue overflow: Termination "out of
//! resources", reconnect, full resync).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bmp::{
    ClientConfig, ConnState, Message, PeerInfo, PeerState, PeerType, Rib, Snapshot, SnapshotSource,
    TerminationReason,
};
use common::{ip, open, updates};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Snapshot>>);

impl SnapshotSource for Shared {
    async fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap().clone()
    }
}

fn peer() -> PeerInfo {
    PeerInfo {
        address: ip("2001:db8::2"),
        asn: 65002,
        bgp_id: Ipv4Addr::new(2, 2, 2, 2),
        local_address: ip("2001:db8::1"),
        local_port: 179,
        remote_port: 40000,
        post_policy: true,
        up_since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        families: vec![(2, 1)],
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        peers: vec![PeerState {
            info: peer(),
            sent_open: open(65001, Ipv4Addr::new(1, 1, 1, 1)),
            received_open: open(65002, Ipv4Addr::new(2, 2, 2, 2)),
            updates: updates(
                &[65002],
                Ipv4Addr::new(192, 0, 2, 2),
                "2001:db8::2".parse().unwrap(),
                &["2001:db8:1::/48"],
            ),
        }],
        loc_rib: None,
    }
}

/// Reads messages until `n` are in or the peer closes.
async fn read_messages(s: &mut TcpStream, n: usize) -> Vec<Message> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        loop {
            match Message::decode(&buf) {
                Ok((m, used)) => {
                    out.push(m);
                    buf.drain(..used);
                }
                Err(bmp::DecodeError::Incomplete { .. }) => break,
                Err(e) => panic!("collector got garbage: {e}"),
            }
        }
        if out.len() >= n {
            break;
        }
        let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        if got == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..got).unwrap());
    }
    out
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn config(addr: SocketAddr) -> ClientConfig {
    let mut c = ClientConfig::new(addr, "node-1");
    c.min_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(200);
    c
}

#[tokio::test]
async fn session_order_and_replay_suppression() {
    let (l, addr) = listener().await;
    let source = Shared(Arc::new(Mutex::new(snapshot())));
    let (h, task) = bmp::spawn(config(addr), source);
    let (mut s, _) = l.accept().await.unwrap();
    // Initiation, Peer Up, one UPDATE, End-of-RIB (IPv6 unicast).
    let first = read_messages(&mut s, 4).await;
    assert!(matches!(first.first(), Some(Message::Initiation(i)) if i.sys_name == "node-1"));
    let Some(Message::PeerUp(up)) = first.get(1) else {
        panic!("{first:?}")
    };
    assert_eq!(up.peer.address, ip("2001:db8::2"));
    assert!(up.peer.flags.post_policy);
    assert!(matches!(
        first.get(2),
        Some(Message::RouteMonitoring { .. })
    ));
    let Some(Message::RouteMonitoring { update, .. }) = first.get(3) else {
        panic!("{first:?}")
    };
    assert_eq!(update, &bmp::end_of_rib(2, 1));

    // The speaker re-announces the same session (an event queued before the snapshot): no
    // second Peer Up. A route for an unknown peer is dropped. Then a Loc-RIB Peer Up.
    h.peer_up(
        peer(),
        open(65001, Ipv4Addr::new(1, 1, 1, 1)),
        open(65002, Ipv4Addr::new(2, 2, 2, 2)),
    );
    h.route_monitoring(Rib::Peer(ip("192.0.2.99")), bmp::end_of_rib(1, 1));
    h.loc_rib_up(bmp::LocRibInfo {
        asn: 65001,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        distinguisher: 0,
        table_name: None,
        filtered: false,
        families: vec![(1, 1)],
    });
    h.shutdown().await;
    task.await.unwrap();
    let rest = read_messages(&mut s, 2).await;
    assert_eq!(rest.len(), 2, "{rest:?}");
    let Some(Message::PeerUp(lr)) = rest.first() else {
        panic!("{rest:?}")
    };
    assert_eq!(lr.peer.peer_type, PeerType::LocRibInstance);
    assert_eq!(lr.sent_open, lr.received_open);
    let Some(Message::Termination(t)) = rest.get(1) else {
        panic!("{rest:?}")
    };
    assert_eq!(t.reason, Some(TerminationReason::AdminClosed));
    assert_eq!(*h.state().borrow(), ConnState::Stopped);
}

#[tokio::test]
async fn queue_overflow_forces_a_resync() {
    let (l, addr) = listener().await;
    let source = Shared(Arc::new(Mutex::new(snapshot())));
    let mut c = config(addr);
    c.queue_len = 4;
    let (h, task) = bmp::spawn(c, source);
    let (mut s1, _) = l.accept().await.unwrap();
    let _ = read_messages(&mut s1, 4).await;
    let mut st = h.state();
    st.wait_for(|s| *s == ConnState::Established { session: 1 })
        .await
        .unwrap();
    // The task cannot run between these calls (current-thread runtime): the queue of 4
    // overflows, and the speaker is never blocked.
    let u = updates(
        &[65002],
        Ipv4Addr::new(192, 0, 2, 2),
        "2001:db8::2".parse().unwrap(),
        &["2001:db8:5::/48"],
    )
    .remove(0);
    for _ in 0..100 {
        h.route_monitoring(Rib::Peer(ip("2001:db8::2")), u.clone());
    }
    // Old session: whatever fit, then Termination "out of resources" and close.
    let old = read_messages(&mut s1, usize::MAX).await;
    assert!(
        matches!(old.last(), Some(Message::Termination(t)) if t.reason == Some(TerminationReason::OutOfResources)),
        "{old:?}"
    );
    // New session: Initiation and the full state again.
    let (mut s2, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
        .await
        .unwrap()
        .unwrap();
    let again = read_messages(&mut s2, 4).await;
    assert!(matches!(again.first(), Some(Message::Initiation(_))));
    assert!(matches!(again.get(1), Some(Message::PeerUp(_))));
    st.wait_for(|s| *s == ConnState::Established { session: 2 })
        .await
        .unwrap();
    h.shutdown().await;
    task.await.unwrap();
}

#[tokio::test]
async fn retries_until_the_collector_appears() {
    // Reserve a port, close it: connects are refused until we listen again.
    let (l, addr) = listener().await;
    drop(l);
    let (h, task) = bmp::spawn(config(addr), Shared::default());
    let mut st = h.state();
    st.wait_for(|s| matches!(s, ConnState::Backoff { .. }))
        .await
        .unwrap();
    let l = TcpListener::bind(addr).await.unwrap();
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
        .await
        .unwrap()
        .unwrap();
    let m = read_messages(&mut s, 1).await;
    assert!(matches!(m.first(), Some(Message::Initiation(_))));
    h.shutdown().await;
    task.await.unwrap();
}
