//! A scripted BGP peer over loopback (real clock, no namespace): it accepts our speaker's
//! connection, answers its OPEN with hold time 0 (so no KEEPALIVE ever interleaves) and
//! decodes what it is sent into per-prefix changes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bgpd::PeerConfig;
use bgpd_wire::{
    BgpCodec, Capability, Family, Message, NextHop, Open, PathAttributes, SessionContext, Update,
};
use futures::{SinkExt, StreamExt};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// The AS of the scripted peer (eBGP to our 65001).
pub const PEER_AS: u32 = 65002;
/// How long a read may wait before the test fails (debug build, shared 2-core machine).
const READ: Duration = Duration::from_secs(60);

/// What one prefix was sent as: its attributes and, for MP_REACH, the next hop there
/// (`None` in a withdrawal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub attrs: Arc<PathAttributes>,
    pub mp_next_hop: Option<NextHop>,
}

/// Per-prefix changes in the order received: `Some` announced, `None` withdrawn.
pub type Changes = Vec<(IpNet, Option<Sent>)>;

/// A listener for one speaker's peer on 127.0.0.1.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The peer configuration that points a speaker at `l`: active, hold time 0.
pub fn peer_config(l: &TcpListener, families: &[Family]) -> PeerConfig {
    let mut p = PeerConfig::new("127.0.0.1".parse().unwrap(), PEER_AS);
    p.port = l.local_addr().unwrap().port();
    p.hold_time = 0;
    p.connect_retry = 1;
    p.families = families.to_vec();
    p
}

/// The scripted side of one session.
#[derive(Debug)]
pub struct FakePeer {
    f: Framed<TcpStream, BgpCodec>,
    /// UPDATE messages received so far (End-of-RIB markers included).
    pub updates: usize,
}

impl FakePeer {
    /// Accepts the speaker's connection on `l` and brings the session up, offering
    /// `families`.
    pub async fn accept(l: &TcpListener, families: &[Family]) -> Self {
        let (c, _) = tokio::time::timeout(READ, l.accept())
            .await
            .expect("the speaker never connected")
            .unwrap();
        let mut f = Framed::new(c, BgpCodec::default());
        let Message::Open(ours) = next(&mut f).await else {
            panic!("expected OPEN")
        };
        let mut capabilities: Vec<Capability> = families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        capabilities.push(Capability::FourOctetAs(PEER_AS));
        capabilities.push(Capability::RouteRefresh);
        let theirs = Open {
            version: 4,
            my_as: Open::my_as_field(PEER_AS),
            hold_time: 0,
            router_id: Ipv4Addr::new(9, 9, 9, 9),
            capabilities,
        };
        f.codec_mut()
            .set_context(SessionContext::negotiate(&theirs, &ours));
        f.send(Message::Open(theirs)).await.unwrap();
        f.send(Message::Keepalive).await.unwrap();
        assert_eq!(next(&mut f).await, Message::Keepalive);
        Self { f, updates: 0 }
    }

    /// Sends `m` to the speaker.
    pub async fn send(&mut self, m: Message) {
        self.f.send(m).await.unwrap();
    }

    /// The next UPDATE; anything else but a KEEPALIVE fails the test.
    pub async fn update(&mut self) -> Update {
        loop {
            match next(&mut self.f).await {
                Message::Update(u) => {
                    self.updates += 1;
                    return u;
                }
                Message::Keepalive => {}
                m => panic!("unexpected {m:?}"),
            }
        }
    }

    /// Everything up to the End-of-RIB of each of `families` (the initial advertisement).
    pub async fn initial(&mut self, families: &[Family]) -> Changes {
        let mut eor: Vec<Family> = Vec::new();
        let mut out = Vec::new();
        while !families.iter().all(|f| eor.contains(f)) {
            let u = self.update().await;
            match u.end_of_rib() {
                Some(f) => eor.push(f),
                None => out.extend(changes(&u)),
            }
        }
        out
    }

    /// Everything up to and including the UPDATE that announces `prefix`.
    pub async fn until_announced(&mut self, prefix: IpNet) -> Changes {
        let mut out = Vec::new();
        loop {
            let u = self.update().await;
            assert!(u.end_of_rib().is_none(), "unexpected End-of-RIB");
            let c = changes(&u);
            let done = c.iter().any(|(p, s)| *p == prefix && s.is_some());
            out.extend(c);
            if done {
                return out;
            }
        }
    }
}

async fn next(f: &mut Framed<TcpStream, BgpCodec>) -> Message {
    tokio::time::timeout(READ, f.next())
        .await
        .expect("nothing received")
        .expect("connection closed")
        .unwrap()
}

/// The per-prefix changes one UPDATE carries.
pub fn changes(u: &Update) -> Changes {
    let mut out: Changes = u.withdrawn.iter().map(|p| (*p, None)).collect();
    if let Some(mu) = &u.mp_unreach {
        out.extend(mu.withdrawn.iter().map(|p| (*p, None)));
    }
    if let Some(a) = &u.attributes {
        out.extend(u.nlri.iter().map(|p| {
            (
                *p,
                Some(Sent {
                    attrs: a.clone(),
                    mp_next_hop: None,
                }),
            )
        }));
        if let Some(mr) = &u.mp_reach {
            out.extend(mr.nlri.iter().map(|p| {
                (
                    *p,
                    Some(Sent {
                        attrs: a.clone(),
                        mp_next_hop: Some(mr.next_hop),
                    }),
                )
            }));
        }
    }
    out
}

/// The state the changes leave, per prefix (`None`: withdrawn last).
pub fn fold(c: &Changes) -> BTreeMap<IpNet, Option<Sent>> {
    c.iter().cloned().collect()
}

/// Prefixes that occur more than once in `c`.
pub fn repeated(c: &Changes) -> Vec<IpNet> {
    let mut n: BTreeMap<IpNet, usize> = BTreeMap::new();
    for (p, _) in c {
        *n.entry(*p).or_default() += 1;
    }
    n.into_iter()
        .filter(|(_, k)| *k > 1)
        .map(|(p, _)| p)
        .collect()
}
