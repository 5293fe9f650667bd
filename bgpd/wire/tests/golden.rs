//! Golden tests: messages captured from FRR 8.4, BIRD 2.0.12 and GoBGP 3.10 talking to each
//! other (see `captures/capture.sh`, which produced `captures/messages.txt`), decoded by our
//! codec with the session context negotiated from the captured OPENs.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::{Ipv4Addr, Ipv6Addr};

use bgpd_wire::notification::{cease, code};
use bgpd_wire::*;
use ipnet::IpNet;

const MESSAGES: &str = include_str!("captures/messages.txt");

/// All captured messages of one direction (`from`@addr -> `to`@addr), in stream order.
fn flow(from: &str, to: &str) -> Vec<Vec<u8>> {
    MESSAGES
        .lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let dir = it.next()?;
            let _ty = it.next()?;
            let hex = it.next()?;
            let (f, t) = dir.split_once("->")?;
            (f.ends_with(&format!("@{from}")) && t.ends_with(&format!("@{to}")))
                .then(|| hex::decode(hex).unwrap())
        })
        .collect()
}

fn open_of(from: &str, to: &str) -> (Vec<u8>, Open) {
    let raw = flow(from, to).into_iter().next().unwrap();
    match decode_message(&raw, &SessionContext::default()).unwrap() {
        Message::Open(o) => (raw, o),
        m => panic!("first message is not an OPEN: {m:?}"),
    }
}

/// The context each side of the session from `a` to `b` uses to decode what `b` sends.
fn ctx(a: &str, b: &str) -> SessionContext {
    let (_, oa) = open_of(a, b);
    let (_, ob) = open_of(b, a);
    SessionContext::negotiate(&oa, &ob)
}

fn decode_flow(from: &str, to: &str) -> Vec<(Vec<u8>, Message)> {
    let c = ctx(to, from);
    flow(from, to)
        .into_iter()
        .map(|raw| {
            let m = decode_message(&raw, &c)
                .unwrap_or_else(|e| panic!("{from}->{to}: {e} for {}", hex::encode(&raw)));
            (raw, m)
        })
        .collect()
}

const FRR_GOBGP: &str = "fd00::1";
const GOBGP: &str = "fd00::2";
const FRR_BIRD4: &str = "10.0.1.1";
const BIRD4: &str = "10.0.1.3";
const FRR_BIRD6: &str = "fd01::1";
const BIRD6: &str = "fd01::3";

#[test]
fn dump_everything_decodes() {
    for (a, b) in [
        (FRR_GOBGP, GOBGP),
        (GOBGP, FRR_GOBGP),
        (FRR_BIRD4, BIRD4),
        (BIRD4, FRR_BIRD4),
        (FRR_BIRD6, BIRD6),
        (BIRD6, FRR_BIRD6),
    ] {
        for (_, m) in decode_flow(a, b) {
            println!("{a}->{b}: {m:?}");
        }
    }
}

fn updates(from: &str, to: &str) -> Vec<(Vec<u8>, Update)> {
    decode_flow(from, to)
        .into_iter()
        .filter_map(|(raw, m)| match m {
            Message::Update(u) => Some((raw, u)),
            _ => None,
        })
        .collect()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The first UPDATE announcing `prefix` (classic or MP).
fn announcing(from: &str, to: &str, prefix: &str) -> (Vec<u8>, Update) {
    let p = net(prefix);
    updates(from, to)
        .into_iter()
        .find(|(_, u)| {
            u.nlri.contains(&p) || u.mp_reach.as_ref().is_some_and(|r| r.nlri.contains(&p))
        })
        .unwrap_or_else(|| panic!("no UPDATE from {from} announces {prefix}"))
}

fn reencode(m: &Message, ctx: &SessionContext) -> Vec<u8> {
    encode_to_bytes(m, ctx).unwrap().to_vec()
}

#[test]
fn frr_open_capabilities() {
    let (raw, o) = open_of(FRR_GOBGP, GOBGP);
    assert_eq!(o.version, 4);
    assert_eq!(o.my_as, AS_TRANS);
    assert_eq!(o.asn(), 4_200_000_001);
    assert_eq!(o.hold_time, 180);
    assert_eq!(o.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(
        o.multiprotocol_families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert!(o.route_refresh() && o.enhanced_route_refresh() && o.extended_message());
    assert_eq!(
        o.extended_next_hop().copied().collect::<Vec<_>>(),
        vec![ExtendedNextHopEntry {
            nlri: Family::Ipv4Unicast,
            nexthop_afi: AFI_IPV6
        }]
    );
    let gr = o.graceful_restart().unwrap();
    assert_eq!(gr.restart_time, 120);
    assert!(gr.notification);
    assert_eq!(
        gr.families,
        vec![(Family::Ipv4Unicast, false), (Family::Ipv6Unicast, false)]
    );
    assert!(
        o.add_path()
            .any(|e| e.family == Family::Ipv6Unicast && e.send && e.receive)
    );
    // FQDN (73, hostname "frr-a"), LLGR (71) and the pre-standard route refresh (128) are
    // carried as unknown.
    assert!(o.capabilities.contains(&Capability::Unknown {
        code: capability_code::FQDN,
        value: bytes::Bytes::from_static(b"\x05frr-a\x00"),
    }));
    assert!(o.has_capability(71) && o.has_capability(128));
    // FRR puts each capability in its own optional parameter, as we do: byte-exact.
    assert_eq!(reencode(&Message::Open(o), &SessionContext::default()), raw);
}

#[test]
fn gobgp_and_bird_opens() {
    let (_, g) = open_of(GOBGP, FRR_GOBGP);
    assert_eq!(g.asn(), 4_200_000_002);
    assert_eq!(g.hold_time, 90);
    assert!(g.capabilities.contains(&Capability::Unknown {
        code: capability_code::FQDN,
        value: bytes::Bytes::from_static(b"\x02vm\x00"),
    }));
    let (_, b) = open_of(BIRD4, FRR_BIRD4);
    assert_eq!((b.my_as, b.asn(), b.hold_time), (65003, 65003, 240));
    assert!(b.enhanced_route_refresh());
    // FRR with `dont-capability-negotiate`: a bare RFC 4271 OPEN.
    let (raw, f) = open_of(FRR_BIRD4, BIRD4);
    assert!(f.capabilities.is_empty());
    assert_eq!(f.asn(), u32::from(AS_TRANS));
    assert_eq!(reencode(&Message::Open(f), &SessionContext::default()), raw);
}

#[test]
fn negotiated_contexts() {
    let c = ctx(FRR_GOBGP, GOBGP);
    assert!(c.four_octet_as);
    // GoBGP 3.10 does not send the extended message capability.
    assert!(!c.extended_message);
    assert_eq!(c.max_message_len(), 4096);
    assert_eq!(c.extended_next_hop, vec![Family::Ipv4Unicast]);
    // FRR sends and receives paths for ipv6 (addpath-tx-all-paths); GoBGP likewise.
    assert!(c.add_path_rx(Family::Ipv6Unicast) && c.add_path_tx(Family::Ipv6Unicast));
    assert!(!c.add_path_rx(Family::Ipv4Unicast));
    let c = ctx(FRR_BIRD4, BIRD4);
    assert!(!c.four_octet_as, "FRR sent no capabilities");
    assert_eq!(c.families, vec![Family::Ipv4Unicast]);
    let c = ctx(FRR_BIRD6, BIRD6);
    assert!(c.four_octet_as);
    assert_eq!(c.families, vec![Family::Ipv6Unicast]);
}

#[test]
fn frr_rich_attributes_ipv4_over_ipv6_next_hop() {
    let (_, u) = announcing(FRR_GOBGP, GOBGP, "192.0.2.0/24");
    let a = u.attributes.as_ref().unwrap();
    assert_eq!(a.origin, Origin::Incomplete);
    assert_eq!(
        a.as_path.segments,
        vec![AsSegment::Sequence(vec![4_200_000_001])]
    );
    assert_eq!(a.med, Some(50));
    assert_eq!(
        a.communities,
        vec![Community((4200 << 16) | 100), Community((4200 << 16) | 200)]
    );
    assert_eq!(
        a.large_communities,
        vec![
            LargeCommunity {
                global_admin: 4_200_000_001,
                local1: 1,
                local2: 2
            },
            LargeCommunity {
                global_admin: 4_200_000_001,
                local1: 3,
                local2: 4
            },
        ]
    );
    // Route target 65001:300, 2-octet-AS specific (type 0x00, subtype 0x02).
    assert_eq!(
        a.extended_communities,
        vec![ExtendedCommunity([0, 2, 0xfd, 0xe9, 0, 0, 1, 44])]
    );
    // RFC 8950: IPv4 NLRI in MP_REACH with the IPv6 session address as next hop.
    let r = u.mp_reach.as_ref().unwrap();
    assert_eq!(r.family, Family::Ipv4Unicast);
    assert_eq!(
        r.next_hop,
        NextHop::V6 {
            global: "fd00::1".parse().unwrap(),
            link_local: None
        }
    );
    assert!(u.nlri.is_empty() && a.next_hop.is_none());
}

#[test]
fn frr_aggregates_atomic_aggregate_aggregator_as_set() {
    let (_, u) = announcing(FRR_GOBGP, GOBGP, "100.64.0.0/16");
    let a = u.attributes.as_ref().unwrap();
    assert!(a.atomic_aggregate);
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: 4_200_000_001,
            address: Ipv4Addr::new(10, 0, 0, 1)
        })
    );
    let (_, u) = announcing(FRR_GOBGP, GOBGP, "203.0.113.0/24");
    let a = u.attributes.as_ref().unwrap();
    assert_eq!(
        a.as_path.segments,
        vec![
            AsSegment::Sequence(vec![4_200_000_001, 4_200_000_002]),
            AsSegment::Set(vec![65020])
        ]
    );
    assert_eq!(a.origin, Origin::Egp);
}

#[test]
fn frr_two_octet_session_as4_path_and_as4_aggregator_merged() {
    let c = ctx(BIRD4, FRR_BIRD4);
    let (raw, u) = announcing(FRR_BIRD4, BIRD4, "203.0.113.0/24");
    let a = u.attributes.as_ref().unwrap();
    // On the wire: AS_PATH [23456 23456 65010 23456 {65020}] plus AS4_PATH; merged per
    // RFC 6793 §4.2.3.
    assert_eq!(
        a.as_path.segments,
        vec![
            AsSegment::Sequence(vec![4_200_000_001, 4_200_000_001, 65010, 4_200_000_002]),
            AsSegment::Set(vec![65020]),
        ]
    );
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: 4_200_000_001,
            address: Ipv4Addr::new(10, 0, 0, 1)
        })
    );
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 1, 1)));
    // The raw AS_PATH holds AS_TRANS (0x5ba0) and there is an AS4_PATH (type 17).
    let hex = hex::encode(&raw);
    assert!(hex.contains("5ba05ba0fdf25ba0"), "{hex}");
    assert!(hex.contains("d011"), "{hex}");
    // Re-encoding for the same 2-octet session splits the path again; decoding that gives
    // back the same attributes.
    let again = reencode(&Message::Update(u.clone()), &c);
    match decode_message(&again, &c).unwrap() {
        Message::Update(u2) => assert_eq!(u2.attributes, u.attributes),
        m => panic!("{m:?}"),
    }
}

#[test]
fn bird_ipv6_link_local_next_hop_reencodes_exactly() {
    let c = ctx(FRR_BIRD6, BIRD6);
    let (raw, u) = announcing(BIRD6, FRR_BIRD6, "2001:db8:9::/48");
    let r = u.mp_reach.as_ref().unwrap();
    let NextHop::V6 {
        global,
        link_local: Some(ll),
    } = r.next_hop
    else {
        panic!("{:?}", r.next_hop)
    };
    assert_eq!(global, "fd01::3".parse::<Ipv6Addr>().unwrap());
    assert_eq!(ll.segments()[0], 0xfe80);
    assert_eq!(reencode(&Message::Update(u.clone()), &c), raw);
    // The packing encoder produces the same bytes for one prefix.
    let msgs = encode_updates(u.attributes.as_ref().unwrap(), r.next_hop, &r.nlri, &c).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].to_vec(), raw);
}

#[test]
fn bird_and_gobgp_ipv4_updates_reencode_exactly() {
    let c = ctx(FRR_BIRD4, BIRD4);
    let (raw, u) = announcing(BIRD4, FRR_BIRD4, "192.0.2.128/25");
    let a = u.attributes.as_ref().unwrap();
    assert_eq!(a.communities, vec![Community((65003 << 16) | 7)]);
    assert_eq!(
        a.large_communities,
        vec![LargeCommunity {
            global_admin: 65003,
            local1: 8,
            local2: 9
        }]
    );
    assert_eq!(reencode(&Message::Update(u.clone()), &c), raw);
    let msgs = encode_updates(a, NextHop::V4(a.next_hop.unwrap()), &u.nlri, &c).unwrap();
    assert_eq!(msgs[0].to_vec(), raw);

    let c = ctx(FRR_GOBGP, GOBGP);
    for p in ["203.0.113.0/26", "203.0.113.64/26", "198.18.0.0/15"] {
        let (raw, u) = announcing(GOBGP, FRR_GOBGP, p);
        assert_eq!(reencode(&Message::Update(u.clone()), &c), raw, "{p}");
    }
    let (_, u) = announcing(GOBGP, FRR_GOBGP, "203.0.113.0/26");
    let a = u.attributes.as_ref().unwrap();
    assert_eq!(a.med, Some(10));
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(
        a.large_communities,
        vec![LargeCommunity {
            global_admin: 4_200_000_002,
            local1: 1,
            local2: 1
        }]
    );
}

#[test]
fn end_of_rib_both_families_from_all_three() {
    for (from, to) in [
        (FRR_GOBGP, GOBGP),
        (GOBGP, FRR_GOBGP),
        (BIRD6, FRR_BIRD6),
        (BIRD4, FRR_BIRD4),
        (FRR_BIRD6, BIRD6),
    ] {
        let c = ctx(to, from);
        let eors: Vec<_> = updates(from, to)
            .into_iter()
            .filter_map(|(raw, u)| u.end_of_rib().map(|f| (raw, f)))
            .collect();
        assert!(!eors.is_empty(), "{from}: no End-of-RIB");
        for (raw, f) in eors {
            // Our marker is byte-identical to theirs.
            assert_eq!(
                reencode(&Message::Update(Update::end_of_rib_marker(f)), &c),
                raw,
                "{from} {f:?}"
            );
            let mut b = UpdateBuilder::new(&c);
            b.end_of_rib(f);
            assert_eq!(b.finish().to_vec(), raw);
        }
    }
    let fams = |from, to| -> Vec<Family> {
        updates(from, to)
            .into_iter()
            .filter_map(|(_, u)| u.end_of_rib())
            .collect()
    };
    assert!(fams(GOBGP, FRR_GOBGP).contains(&Family::Ipv4Unicast));
    assert!(fams(GOBGP, FRR_GOBGP).contains(&Family::Ipv6Unicast));
}

#[test]
fn withdrawals() {
    let (_, u) = updates(GOBGP, FRR_GOBGP)
        .into_iter()
        .find(|(_, u)| !u.withdrawn.is_empty())
        .unwrap();
    assert_eq!(u.withdrawn, vec![net("203.0.113.64/26")]);
    let (_, u) = updates(FRR_GOBGP, GOBGP)
        .into_iter()
        .find(|(_, u)| {
            u.mp_unreach
                .as_ref()
                .is_some_and(|m| !m.withdrawn.is_empty())
        })
        .unwrap();
    // FRR sent a path identifier (ADD-PATH negotiated for ipv6); it is stripped.
    assert_eq!(
        u.mp_unreach.unwrap().withdrawn,
        vec![net("2001:db8:3::/48")]
    );
}

#[test]
fn notifications_with_shutdown_communication() {
    let c = SessionContext::default();
    let (raw, m) = decode_flow(FRR_GOBGP, GOBGP)
        .into_iter()
        .find(|(_, m)| matches!(m, Message::Notification(_)))
        .unwrap();
    let Message::Notification(n) = m else {
        unreachable!()
    };
    assert_eq!(
        (n.code, n.subcode),
        (code::CEASE, cease::ADMINISTRATIVE_SHUTDOWN)
    );
    assert_eq!(
        n.shutdown_communication(),
        Some(Ok("rackd golden: maintenance"))
    );
    let ours = Notification::cease_with_communication(
        cease::ADMINISTRATIVE_SHUTDOWN,
        "rackd golden: maintenance",
    );
    assert_eq!(reencode(&Message::Notification(ours), &c), raw);
    assert!(n.to_string().contains("Administrative Shutdown"));

    let (raw, m) = decode_flow(BIRD4, FRR_BIRD4)
        .into_iter()
        .find(|(_, m)| matches!(m, Message::Notification(_)))
        .unwrap();
    let Message::Notification(n) = m else {
        unreachable!()
    };
    assert_eq!(n.shutdown_communication(), Some(Ok("bird says bye")));
    assert_eq!(reencode(&Message::Notification(n), &c), raw);
}

#[test]
fn route_refresh_normal_borr_eorr() {
    let c = SessionContext::default();
    let rr: Vec<_> = [(FRR_GOBGP, GOBGP), (FRR_BIRD6, BIRD6), (BIRD6, FRR_BIRD6)]
        .into_iter()
        .flat_map(|(a, b)| decode_flow(a, b))
        .filter_map(|(raw, m)| match m {
            Message::RouteRefresh(r) => Some((raw, r)),
            _ => None,
        })
        .collect();
    let subtypes: Vec<u8> = rr.iter().map(|(_, r)| r.subtype).collect();
    // FRR asked GoBGP, BIRD asked FRR, FRR answered BIRD with BoRR ... EoRR (RFC 7313).
    assert!(
        subtypes.contains(&0) && subtypes.contains(&1) && subtypes.contains(&2),
        "{subtypes:?}"
    );
    for (raw, r) in rr {
        assert_eq!(r.family, Family::Ipv6Unicast);
        assert_eq!(reencode(&Message::RouteRefresh(r), &c), raw);
    }
}

#[test]
fn keepalives_reencode_exactly() {
    let raw = flow(GOBGP, FRR_GOBGP).into_iter().nth(1).unwrap();
    assert_eq!(
        decode_message(&raw, &SessionContext::default()).unwrap(),
        Message::Keepalive
    );
    assert_eq!(
        reencode(&Message::Keepalive, &SessionContext::default()),
        raw
    );
}

#[test]
fn whole_capture_as_a_stream_through_the_codec() {
    use tokio_util::codec::Decoder;
    let mut codec = BgpCodec::new(ctx(FRR_GOBGP, GOBGP));
    let all: Vec<u8> = flow(GOBGP, FRR_GOBGP).concat();
    let mut buf = bytes::BytesMut::new();
    let mut n = 0;
    // Feed the stream in 7-octet pieces to exercise partial frames.
    for chunk in all.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Some(_m) = codec.decode(&mut buf).unwrap() {
            n += 1;
        }
    }
    assert_eq!(n, flow(GOBGP, FRR_GOBGP).len());
    assert!(buf.is_empty());
}

#[test]
fn ibgp_local_pref_both_ways() {
    const FRR_I: &str = "10.0.2.1";
    const BIRD_I: &str = "10.0.2.3";
    let c = ctx(FRR_I, BIRD_I);
    assert!(c.four_octet_as);
    // FRR's route-map sets local-preference 250; iBGP carries it (RFC 4271 §5.1.5).
    let (_, u) = announcing(FRR_I, BIRD_I, "192.0.2.0/24");
    let a = u.attributes.as_ref().unwrap();
    assert_eq!(a.local_pref, Some(250));
    assert_eq!(a.as_path.segments, vec![], "iBGP: empty AS_PATH");
    assert_eq!(a.med, Some(50));
    // BIRD sends its default LOCAL_PREF 100 on its own route.
    let (raw, u) = announcing(BIRD_I, FRR_I, "192.0.2.128/25");
    assert_eq!(u.attributes.as_ref().unwrap().local_pref, Some(100));
    // BIRD's layout is ours (type order, short lengths): byte-exact.
    assert_eq!(reencode(&Message::Update(u), &c), raw);
}
