//! Encoder tests: packing, families and next hops, 2-octet sessions, attribute reuse, and
//! proptest round trips through our own decoder.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::attributes::flags as af;
use bgpd_wire::*;
use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

fn v4_prefixes(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap()))
        .collect()
}

fn v6_prefixes(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            IpNet::V6(
                Ipv6Net::new(
                    Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) << 64)),
                    64,
                )
                .unwrap(),
            )
        })
        .collect()
}

fn attrs() -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(vec![65001, 4_200_000_001])],
        },
        med: Some(5),
        local_pref: Some(200),
        communities: vec![Community(0xfde9_0001), Community(0xffff_ff01)],
        large_communities: vec![LargeCommunity {
            global_admin: 4_200_000_001,
            local1: 1,
            local2: 2,
        }],
        ..Default::default()
    }
}

/// Decodes a batch of messages and collects (reach, unreach) prefixes and the attributes.
fn decode_all(
    msgs: &[Bytes],
    ctx: &SessionContext,
) -> (Vec<IpNet>, Vec<IpNet>, Vec<Arc<PathAttributes>>) {
    let (mut reach, mut unreach, mut attrs) = (Vec::new(), Vec::new(), Vec::new());
    for m in msgs {
        assert!(m.len() <= ctx.max_message_len(), "{} > max", m.len());
        let Message::Update(u) = decode_message(m, ctx).unwrap() else {
            panic!()
        };
        assert_eq!(u.treat_as_withdraw, None);
        reach.extend(u.nlri);
        unreach.extend(u.withdrawn);
        if let Some(r) = u.mp_reach {
            reach.extend(r.nlri);
        }
        if let Some(w) = u.mp_unreach {
            unreach.extend(w.withdrawn);
        }
        attrs.extend(u.attributes);
    }
    (reach, unreach, attrs)
}

#[test]
fn packs_ipv4_into_as_few_updates_as_fit() {
    let ctx = SessionContext::four_octet();
    let prefixes = v4_prefixes(10_000);
    let a = attrs();
    let msgs = encode_updates(
        &a,
        NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)),
        &prefixes,
        &ctx,
    )
    .unwrap();
    let (reach, _, got) = decode_all(&msgs, &ctx);
    assert_eq!(reach, prefixes);
    // Every UPDATE but the last is full to within one prefix.
    for m in &msgs[..msgs.len() - 1] {
        assert!(m.len() > 4096 - 4, "{}", m.len());
    }
    let per_msg = (4096 - 23 - EncodedAttributes::new(&a, &ctx).len() - 7) / 4;
    assert_eq!(msgs.len(), 10_000usize.div_ceil(per_msg));
    let mut expect = a.clone();
    expect.next_hop = Some(Ipv4Addr::new(192, 0, 2, 1));
    assert!(got.iter().all(|g| **g == expect));

    // RFC 8654: 65535-octet messages carry 16x more.
    let ext = SessionContext {
        extended_message: true,
        ..ctx.clone()
    };
    let big = encode_updates(
        &a,
        NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)),
        &prefixes,
        &ext,
    )
    .unwrap();
    assert_eq!(
        big.len(),
        1,
        "40,000 octets of NLRI fit one extended message"
    );
    assert_eq!(decode_all(&big, &ext).0, prefixes);
}

#[test]
fn ipv6_in_mp_reach_and_ipv4_with_ipv6_next_hop_only_with_rfc8950() {
    let ctx = SessionContext::four_octet();
    let nh = NextHop::V6 {
        global: "fd00::1".parse().unwrap(),
        link_local: Some("fe80::1".parse().unwrap()),
    };
    let v6 = v6_prefixes(3000);
    let msgs = encode_updates(&attrs(), nh, &v6, &ctx).unwrap();
    assert!(msgs.len() > 1);
    assert_eq!(decode_all(&msgs, &ctx).0, v6);
    let Message::Update(u) = decode_message(&msgs[0], &ctx).unwrap() else {
        panic!()
    };
    assert_eq!(u.mp_reach.unwrap().next_hop, nh);

    let v4 = v4_prefixes(10);
    assert!(matches!(
        encode_updates(&attrs(), nh, &v4, &ctx),
        Err(EncodeError::NextHopFamily { .. })
    ));
    let enh = SessionContext {
        extended_next_hop: vec![Family::Ipv4Unicast],
        ..ctx.clone()
    };
    let msgs = encode_updates(&attrs(), nh, &v4, &enh).unwrap();
    let Message::Update(u) = decode_message(&msgs[0], &enh).unwrap() else {
        panic!()
    };
    let r = u.mp_reach.unwrap();
    assert_eq!(
        (r.family, r.next_hop, r.nlri),
        (Family::Ipv4Unicast, nh, v4)
    );
    assert!(u.nlri.is_empty());

    // Mixed families with an IPv4 next hop: IPv4 classic, IPv6 with the IPv4-mapped address.
    let mixed: Vec<IpNet> = [v4_prefixes(2), v6_prefixes(2)].concat();
    let msgs = encode_updates(
        &attrs(),
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &mixed,
        &ctx,
    )
    .unwrap();
    assert_eq!(msgs.len(), 2);
    let Message::Update(u) = decode_message(&msgs[1], &ctx).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.mp_reach.unwrap().next_hop,
        NextHop::V6 {
            global: Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(),
            link_local: None
        }
    );
}

#[test]
fn withdrawals_pack_both_families() {
    let ctx = SessionContext::four_octet();
    let all: Vec<IpNet> = [v4_prefixes(5000), v6_prefixes(5000)].concat();
    let msgs = encode_withdrawals(&all, &ctx);
    let (reach, unreach, attrs) = decode_all(&msgs, &ctx);
    assert!(reach.is_empty() && attrs.is_empty());
    assert_eq!(unreach, all);
    assert!(msgs.iter().all(|m| m.len() <= 4096));
    // 5000 /24s at 4 octets in (4096-23)/4 per message, 5000 /64s at 9 octets.
    assert_eq!(
        msgs.len(),
        5000usize.div_ceil((4096 - 23) / 4) + 5000usize.div_ceil((4096 - 30) / 9)
    );
}

#[test]
fn two_octet_session_gets_as_trans_and_as4_path() {
    let ctx = SessionContext::default();
    let mut a = attrs();
    a.aggregator = Some(Aggregator {
        asn: 4_200_000_001,
        address: Ipv4Addr::new(10, 0, 0, 1),
    });
    let msgs = encode_updates(
        &a,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &v4_prefixes(1),
        &ctx,
    )
    .unwrap();
    let hex = hex::encode(&msgs[0]);
    // AS_PATH: sequence of 2 with 65001 and AS_TRANS; AS4_PATH (0xc0 0x11) and AS4_AGGREGATOR (0xc0 0x12).
    assert!(
        hex.contains("40020602 02fde95ba0".replace(' ', "").as_str()),
        "{hex}"
    );
    assert!(hex.contains("c0110a0202"), "{hex}");
    assert!(hex.contains("c01208fa56ea01"), "{hex}");
    let (_, _, got) = decode_all(&msgs, &ctx);
    assert_eq!(got[0].as_path, a.as_path);
    assert_eq!(got[0].aggregator, a.aggregator);
    // A path of 2-octet ASNs needs no AS4_PATH.
    let mut small = attrs();
    small.as_path = AsPath {
        segments: vec![AsSegment::Sequence(vec![65001, 65002])],
    };
    let msgs = encode_updates(
        &small,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &v4_prefixes(1),
        &ctx,
    )
    .unwrap();
    assert!(!hex::encode(&msgs[0]).contains("c011"));
}

#[test]
fn attribute_block_is_encoded_once_and_reused() {
    let ctx = SessionContext::four_octet();
    let enc = EncodedAttributes::new(&attrs(), &ctx);
    let mut b = UpdateBuilder::new(&ctx);
    b.announce(
        &enc,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &v4_prefixes(3),
    )
    .unwrap();
    b.announce(
        &enc,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 2)),
        &v4_prefixes(2),
    )
    .unwrap();
    b.withdraw(&v4_prefixes(1));
    b.end_of_rib(Family::Ipv4Unicast);
    b.end_of_rib(Family::Ipv6Unicast);
    assert_eq!(b.message_count(), 5);
    let all = b.finish();
    // The concatenation decodes as a stream.
    let mut buf = bytes::BytesMut::from(&all[..]);
    let mut n = 0;
    let mut eors = Vec::new();
    while let Some(Message::Update(u)) = decode_frame(&mut buf, &ctx).unwrap() {
        n += 1;
        eors.extend(u.end_of_rib());
    }
    assert_eq!(n, 5);
    assert_eq!(eors, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
}

#[test]
fn oversized_attributes_are_an_error_not_a_panic() {
    let ctx = SessionContext::four_octet();
    let mut a = attrs();
    a.communities = (0..1100).map(Community).collect();
    let r = encode_updates(
        &a,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &v4_prefixes(1),
        &ctx,
    );
    assert!(matches!(r, Err(EncodeError::AttributesTooLong { .. })));
    let big = Update {
        attributes: Some(Arc::new(a)),
        nlri: v4_prefixes(1),
        ..Default::default()
    };
    assert!(matches!(
        encode_to_bytes(&Message::Update(big), &ctx),
        Err(EncodeError::TooLong { .. })
    ));
}

#[test]
fn add_path_tx_and_rx() {
    let ctx = SessionContext {
        add_path_rx: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        add_path_tx: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        ..SessionContext::four_octet()
    };
    let p: Vec<IpNet> = [v4_prefixes(100), v6_prefixes(100)].concat();
    let mut b = UpdateBuilder::new(&ctx);
    let enc = EncodedAttributes::new(&attrs(), &ctx);
    b.announce(
        &enc,
        NextHop::V6 {
            global: "fd00::1".parse().unwrap(),
            link_local: None,
        },
        &p[100..],
    )
    .unwrap();
    b.announce(&enc, NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)), &p[..100])
        .unwrap();
    let (reach, _, _) = decode_all(&b.into_messages(), &ctx);
    assert_eq!(reach.len(), 200);
}

#[test]
fn negotiate_requires_both_sides() {
    let open = |caps: Vec<Capability>| Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: caps,
    };
    let ours = open(vec![
        Capability::Multiprotocol(Family::Ipv4Unicast),
        Capability::Multiprotocol(Family::Ipv6Unicast),
        Capability::FourOctetAs(65001),
        Capability::ExtendedMessage,
        Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
            nlri: Family::Ipv4Unicast,
            nexthop_afi: AFI_IPV6,
        }]),
        Capability::AddPath(vec![AddPathEntry {
            family: Family::Ipv4Unicast,
            receive: true,
            send: false,
        }]),
    ]);
    let plain = open(vec![]);
    let c = SessionContext::negotiate(&ours, &plain);
    assert_eq!(
        c,
        SessionContext {
            families: vec![Family::Ipv4Unicast],
            ..Default::default()
        }
    );
    let c = SessionContext::negotiate(&ours, &ours);
    assert!(c.four_octet_as && c.extended_message);
    assert_eq!(c.extended_next_hop, vec![Family::Ipv4Unicast]);
    // We receive, they only receive too: nothing in either direction.
    assert!(c.add_path_rx.is_empty() && c.add_path_tx.is_empty());
    let theirs = open(vec![Capability::AddPath(vec![AddPathEntry {
        family: Family::Ipv4Unicast,
        receive: false,
        send: true,
    }])]);
    let c = SessionContext::negotiate(&ours, &theirs);
    assert_eq!(c.add_path_rx, vec![Family::Ipv4Unicast]);
    assert_eq!(Open::my_as_field(4_200_000_000), AS_TRANS);
}

// ===== proptest round trips =====

fn asn() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..65535, 65536u32..=u32::MAX]
}

fn segment(confed: bool) -> impl Strategy<Value = AsSegment> {
    let base = prop_oneof![
        prop::collection::vec(asn(), 1..12).prop_map(AsSegment::Sequence),
        prop::collection::vec(asn(), 1..5).prop_map(AsSegment::Set),
    ];
    if confed {
        prop_oneof![
            base,
            prop::collection::vec(asn(), 1..4).prop_map(AsSegment::ConfedSequence),
            prop::collection::vec(asn(), 1..4).prop_map(AsSegment::ConfedSet),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

fn path_attributes(four_octet: bool) -> impl Strategy<Value = PathAttributes> {
    (
        prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ],
        prop::collection::vec(segment(four_octet), 0..4),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        any::<bool>(),
        // On 2-octet sessions a 2-octet AGGREGATOR ASN would (correctly, RFC 6793 §4.2.3) make
        // the receiver ignore AS4_PATH, so only generate ones that go through AS_TRANS.
        prop::option::of((
            if four_octet {
                (1u32..=u32::MAX).boxed()
            } else {
                (65536u32..=u32::MAX).boxed()
            },
            any::<u32>(),
        )),
        prop::collection::vec(any::<u32>().prop_map(Community), 0..20),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..5),
        prop::collection::vec(any::<[u8; 8]>().prop_map(ExtendedCommunity), 0..5),
        prop::collection::vec(
            (
                prop_oneof![Just(11u8), Just(21), Just(35), Just(40), Just(200)],
                prop::collection::vec(any::<u8>(), 0..300),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(origin, segments, med, local_pref, atomic, agg, communities, large, ext, unknown)| {
                let mut unknown: Vec<RawAttribute> = unknown
                    .into_iter()
                    .map(|(t, v)| RawAttribute {
                        flags: af::OPTIONAL | af::TRANSITIVE | af::PARTIAL,
                        type_code: t,
                        value: Bytes::from(v),
                    })
                    .collect();
                unknown.sort_by_key(|u| u.type_code);
                unknown.dedup_by_key(|u| u.type_code);
                PathAttributes {
                    origin,
                    as_path: AsPath { segments },
                    next_hop: None,
                    med,
                    local_pref,
                    atomic_aggregate: atomic,
                    aggregator: agg.map(|(asn, a)| Aggregator {
                        asn,
                        address: Ipv4Addr::from(a),
                    }),
                    communities,
                    large_communities: large
                        .into_iter()
                        .map(|(g, l1, l2)| LargeCommunity {
                            global_admin: g,
                            local1: l1,
                            local2: l2,
                        })
                        .collect(),
                    extended_communities: ext,
                    originator_id: None,
                    cluster_list: vec![],
                    unknown,
                }
            },
        )
}

fn prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn updates_round_trip(
        (four, a) in any::<bool>().prop_flat_map(|four| (Just(four), path_attributes(four))),
        ext in any::<bool>(),
        prefixes in prop::collection::vec(prefix(), 1..400),
    ) {
        let ctx = SessionContext { four_octet_as: four, extended_message: ext, ..Default::default() };
        let nh = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
        let msgs = encode_updates(&a, nh, &prefixes, &ctx).unwrap();
        let (reach, _, got) = decode_all(&msgs, &ctx);
        let v4 = prefixes.iter().filter(|p| matches!(p, IpNet::V4(_)));
        let v6 = prefixes.iter().filter(|p| matches!(p, IpNet::V6(_)));
        prop_assert_eq!(reach, v4.chain(v6).copied().collect::<Vec<_>>());
        for g in got {
            let mut expect = a.clone();
            expect.next_hop = g.next_hop;
            prop_assert_eq!(&*g, &expect);
        }
    }

    #[test]
    fn attributes_round_trip((four, a) in any::<bool>().prop_flat_map(|four| (Just(four), path_attributes(four)))) {
        let ctx = SessionContext { four_octet_as: four, ..Default::default() };
        let u = Update {
            attributes: Some(Arc::new(PathAttributes { next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)), ..a })),
            nlri: v4_prefixes(1),
            ..Default::default()
        };
        let bytes = encode_to_bytes(&Message::Update(u.clone()), &ctx).unwrap();
        prop_assert_eq!(decode_message(&bytes, &ctx).unwrap(), Message::Update(u));
    }

    #[test]
    fn notifications_and_route_refresh_round_trip(c in any::<u8>(), s in any::<u8>(), data in prop::collection::vec(any::<u8>(), 0..100), afi in any::<u16>(), safi in any::<u8>(), st in 0u8..3) {
        let ctx = SessionContext::default();
        for m in [Message::Notification(Notification::new(c, s, data.clone())), Message::RouteRefresh(RouteRefresh { family: Family::from_afi_safi(afi, safi), subtype: st }), Message::Keepalive] {
            let b = encode_to_bytes(&m, &ctx).unwrap();
            prop_assert_eq!(decode_message(&b, &ctx).unwrap(), m);
        }
    }

    #[test]
    fn shutdown_communication_round_trips(text in "\\PC{0,300}") {
        let n = Notification::cease_with_communication(notification::cease::ADMINISTRATIVE_RESET, &text);
        let got = n.shutdown_communication().unwrap().unwrap();
        prop_assert!(got.len() <= 255);
        prop_assert!(text.starts_with(got));
    }
}
