//! Round trips and malformed input for every message type (RFC 7854 §4, RFC 9069 §4-§5).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bmp::error::{DecodeError, EncodeError, PduProblem};
use bmp::header::{COMMON_HEADER_LEN, PER_PEER_HEADER_LEN, stat_type};
use bmp::{
    Initiation, Message, PeerDownReason, PeerFlags, PeerHeader, PeerInfoTlv, PeerType, PeerUp,
    Stat, StatisticsReport, Termination, TerminationReason, Timestamp, end_of_rib, frame_len,
    loc_rib_open,
};
use bytes::Bytes;
use common::{ip, notification, open, updates};

const TS: Timestamp = Timestamp {
    secs: 1_700_000_000,
    micros: 123_456,
};

fn v4_peer() -> PeerHeader {
    PeerHeader::global(ip("192.0.2.2"), 65002, Ipv4Addr::new(2, 2, 2, 2), TS)
}

fn v6_peer() -> PeerHeader {
    let mut h = PeerHeader::global(
        ip("2001:db8::2"),
        4_200_000_000,
        Ipv4Addr::new(9, 9, 9, 9),
        TS,
    );
    h.flags.post_policy = true;
    h
}

fn loc_rib() -> PeerHeader {
    PeerHeader::loc_rib(0, 65001, Ipv4Addr::new(1, 1, 1, 1), true, TS)
}

fn upd() -> Bytes {
    updates(
        &[65002, 65010],
        Ipv4Addr::new(192, 0, 2, 2),
        "2001:db8::2".parse().unwrap(),
        &["198.51.100.0/24"],
    )
    .remove(0)
}

fn all_messages() -> Vec<Message> {
    let o1 = open(65001, Ipv4Addr::new(1, 1, 1, 1));
    let o2 = open(65002, Ipv4Addr::new(2, 2, 2, 2));
    vec![
        Message::Initiation(Initiation {
            sys_descr: "rackd".into(),
            sys_name: "node-1".into(),
            strings: vec!["hello".into(), "ünïcode".into()],
        }),
        Message::Termination(Termination {
            reason: Some(TerminationReason::AdminClosed),
            strings: vec!["bye".into()],
        }),
        Message::Termination(Termination {
            reason: Some(TerminationReason::Other(77)),
            strings: vec![],
        }),
        Message::PeerUp(PeerUp {
            peer: v4_peer(),
            local_address: ip("192.0.2.1"),
            local_port: 40000,
            remote_port: 179,
            sent_open: o1.clone(),
            received_open: o2.clone(),
            info: vec![PeerInfoTlv::String("tor1".into())],
        }),
        Message::PeerUp(PeerUp {
            peer: v6_peer(),
            local_address: ip("2001:db8::1"),
            local_port: 179,
            remote_port: 51000,
            sent_open: o1.clone(),
            received_open: o2,
            info: vec![],
        }),
        Message::PeerUp(PeerUp {
            peer: loc_rib(),
            local_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            local_port: 0,
            remote_port: 0,
            sent_open: loc_rib_open(65001, Ipv4Addr::new(1, 1, 1, 1), &[(1, 1), (2, 1)]),
            received_open: loc_rib_open(65001, Ipv4Addr::new(1, 1, 1, 1), &[(1, 1), (2, 1)]),
            info: vec![
                PeerInfoTlv::VrfTableName("global".into()),
                PeerInfoTlv::Other {
                    kind: 4,
                    value: Bytes::from_static(b"x"),
                },
            ],
        }),
        Message::RouteMonitoring {
            peer: v4_peer(),
            update: upd(),
        },
        Message::RouteMonitoring {
            peer: loc_rib(),
            update: end_of_rib(2, 1),
        },
        Message::RouteMonitoring {
            peer: v6_peer(),
            update: end_of_rib(1, 1),
        },
        Message::PeerDown {
            peer: v4_peer(),
            reason: PeerDownReason::LocalNotification(notification()),
        },
        Message::PeerDown {
            peer: v4_peer(),
            reason: PeerDownReason::LocalNoNotification { fsm_event: 18 },
        },
        Message::PeerDown {
            peer: v6_peer(),
            reason: PeerDownReason::RemoteNotification(notification()),
        },
        Message::PeerDown {
            peer: v6_peer(),
            reason: PeerDownReason::RemoteNoData,
        },
        Message::PeerDown {
            peer: v6_peer(),
            reason: PeerDownReason::PeerDeconfigured,
        },
        Message::PeerDown {
            peer: loc_rib(),
            reason: PeerDownReason::LocalWithTlvs(vec![PeerInfoTlv::VrfTableName("global".into())]),
        },
        Message::StatisticsReport(StatisticsReport {
            peer: v4_peer(),
            stats: vec![
                Stat::Counter {
                    kind: stat_type::REJECTED_PREFIXES,
                    value: 3,
                },
                Stat::Gauge {
                    kind: stat_type::ADJ_RIB_IN_ROUTES,
                    value: 1_000_000,
                },
                Stat::AfiSafiGauge {
                    kind: stat_type::PER_AFI_SAFI_ADJ_RIB_IN_ROUTES,
                    afi: 2,
                    safi: 1,
                    value: 42,
                },
                Stat::Other {
                    kind: 40_000,
                    value: Bytes::from_static(&[1, 2, 3]),
                },
            ],
        }),
        Message::StatisticsReport(StatisticsReport {
            peer: loc_rib(),
            stats: vec![
                Stat::Gauge {
                    kind: stat_type::LOC_RIB_ROUTES,
                    value: 7,
                },
                Stat::AfiSafiGauge {
                    kind: stat_type::PER_AFI_SAFI_LOC_RIB_ROUTES,
                    afi: 1,
                    safi: 1,
                    value: 5,
                },
            ],
        }),
    ]
}

#[test]
fn every_message_round_trips() {
    for m in all_messages() {
        let wire = m.encode().unwrap();
        assert_eq!(wire.first(), Some(&3), "version");
        let len = u32::from_be_bytes(wire.get(1..5).unwrap().try_into().unwrap());
        assert_eq!(len as usize, wire.len(), "length field of {m:?}");
        assert_eq!(frame_len(&wire), Ok(Some(wire.len())));
        let (back, used) = Message::decode(&wire).unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(back, m);
        // Every strict prefix is incomplete (framing) or, once the header is there, an error
        // that is not a panic.
        for cut in 0..wire.len() {
            assert!(
                Message::decode(wire.get(..cut).unwrap()).is_err(),
                "prefix {cut} of {m:?}"
            );
        }
    }
}

#[test]
fn stream_of_messages_decodes_in_order() {
    let msgs = all_messages();
    let mut stream = Vec::new();
    for m in &msgs {
        stream.extend_from_slice(&m.encode().unwrap());
    }
    let mut at = 0;
    let mut out = Vec::new();
    while at < stream.len() {
        let (m, used) = Message::decode(stream.get(at..).unwrap()).unwrap();
        out.push(m);
        at += used;
    }
    assert_eq!(out, msgs);
}

#[test]
fn per_peer_header_layout() {
    // RFC 7854 §4.2: IPv4 in the low 4 octets, V flag clear; IPv6 sets V; L for post-policy.
    let m = Message::RouteMonitoring {
        peer: v4_peer(),
        update: upd(),
    };
    let w = m.encode().unwrap();
    let h = w
        .get(COMMON_HEADER_LEN..COMMON_HEADER_LEN + PER_PEER_HEADER_LEN)
        .unwrap();
    assert_eq!(h.first(), Some(&0), "peer type 0");
    assert_eq!(h.get(1), Some(&0), "no flags");
    assert_eq!(h.get(10..22).unwrap(), &[0u8; 12]);
    assert_eq!(h.get(22..26).unwrap(), &[192, 0, 2, 2]);
    assert_eq!(h.get(26..30).unwrap(), &65002u32.to_be_bytes());

    let w = Message::RouteMonitoring {
        peer: v6_peer(),
        update: upd(),
    }
    .encode()
    .unwrap();
    assert_eq!(w.get(COMMON_HEADER_LEN + 1), Some(&0xc0), "V and L");

    // RFC 9069 §4.1-§4.2, §5.1: type 3, F flag in the first bit, zero address.
    let mut lr = loc_rib();
    lr.address = ip("203.0.113.9"); // ignored on encode
    let w = Message::RouteMonitoring {
        peer: lr,
        update: upd(),
    }
    .encode()
    .unwrap();
    let h = w
        .get(COMMON_HEADER_LEN..COMMON_HEADER_LEN + PER_PEER_HEADER_LEN)
        .unwrap();
    assert_eq!(h.first(), Some(&3));
    assert_eq!(h.get(1), Some(&0x80));
    assert_eq!(h.get(10..26).unwrap(), &[0u8; 16]);
}

#[test]
fn loc_rib_open_has_four_octet_as_and_families() {
    let o = loc_rib_open(4_200_000_001, Ipv4Addr::new(1, 1, 1, 1), &[(1, 1), (2, 1)]);
    let ctx = bgpd_wire::SessionContext::four_octet();
    let decoded = bgpd_wire::decode_message(&o, &ctx).unwrap();
    let bgpd_wire::Message::Open(open) = decoded else {
        panic!("not an OPEN: {decoded:?}");
    };
    assert_eq!(open.my_as, 23456, "AS_TRANS (RFC 6793)");
    assert_eq!(open.four_octet_as(), Some(4_200_000_001));
    assert_eq!(
        open.multiprotocol_families(),
        vec![
            bgpd_wire::Family::Ipv4Unicast,
            bgpd_wire::Family::Ipv6Unicast
        ]
    );
}

#[test]
fn end_of_rib_markers_are_updates() {
    let ctx = bgpd_wire::SessionContext::four_octet();
    for (afi, safi) in [(1, 1), (2, 1)] {
        let eor = end_of_rib(afi, safi);
        let m = bgpd_wire::decode_message(&eor, &ctx).unwrap();
        let bgpd_wire::Message::Update(u) = m else {
            panic!("not an UPDATE");
        };
        assert!(u.nlri.is_empty() && u.withdrawn.is_empty() && u.mp_reach.is_none());
    }
}

fn encoded(m: &Message) -> Vec<u8> {
    m.encode().unwrap().to_vec()
}

/// Rewrites the common header's length after a test edits the body.
fn fix_len(mut w: Vec<u8>) -> Vec<u8> {
    let len = u32::try_from(w.len()).unwrap().to_be_bytes();
    w.get_mut(1..5).unwrap().copy_from_slice(&len);
    w
}

#[test]
fn malformed_common_header() {
    let good = encoded(&all_messages().remove(0));
    let mut bad = good.clone();
    *bad.get_mut(0).unwrap() = 1;
    assert_eq!(Message::decode(&bad), Err(DecodeError::Version(1)));
    let mut bad = good.clone();
    bad.get_mut(1..5)
        .unwrap()
        .copy_from_slice(&5u32.to_be_bytes());
    assert_eq!(Message::decode(&bad), Err(DecodeError::BadLength(5)));
    let mut bad = good.clone();
    *bad.get_mut(5).unwrap() = 6;
    assert_eq!(Message::decode(&bad), Err(DecodeError::UnsupportedType(6)));
    *bad.get_mut(5).unwrap() = 99;
    assert_eq!(Message::decode(&bad), Err(DecodeError::UnknownType(99)));
    assert_eq!(frame_len(&[3, 0, 0]), Ok(None));
    assert!(matches!(
        Message::decode(good.get(..10).unwrap()),
        Err(DecodeError::Incomplete { .. })
    ));
}

#[test]
fn malformed_initiation_and_termination() {
    // Initiation without sysName (RFC 7854 §4.3 makes it mandatory).
    let w = fix_len(vec![3, 0, 0, 0, 0, 4, 0, 1, 0, 1, b'x']);
    assert_eq!(
        Message::decode(&w),
        Err(DecodeError::MissingTlv {
            message: "initiation",
            tlv: 2
        })
    );
    // TLV length past the end.
    let w = fix_len(vec![3, 0, 0, 0, 0, 4, 0, 1, 0, 9, b'x']);
    assert!(matches!(
        Message::decode(&w),
        Err(DecodeError::Truncated { .. })
    ));
    // Not UTF-8.
    let w = fix_len(vec![3, 0, 0, 0, 0, 4, 0, 1, 0, 1, 0xff, 0, 2, 0, 1, b'n']);
    assert_eq!(
        Message::decode(&w),
        Err(DecodeError::NotUtf8 {
            message: "initiation",
            tlv: 1
        })
    );
    // Termination reason of 3 octets.
    let w = fix_len(vec![3, 0, 0, 0, 0, 5, 0, 1, 0, 3, 0, 0, 1]);
    assert_eq!(
        Message::decode(&w),
        Err(DecodeError::BadTlvLength {
            message: "termination",
            tlv: 1,
            len: 3
        })
    );
}

#[test]
fn malformed_per_peer_header_and_route_monitoring() {
    let rm = encoded(&Message::RouteMonitoring {
        peer: v4_peer(),
        update: upd(),
    });
    let mut bad = rm.clone();
    *bad.get_mut(COMMON_HEADER_LEN).unwrap() = 4;
    assert_eq!(Message::decode(&bad), Err(DecodeError::UnknownPeerType(4)));
    // Per-peer header cut short (message length says so).
    let short = fix_len(rm.get(..COMMON_HEADER_LEN + 20).unwrap().to_vec());
    assert!(matches!(
        Message::decode(&short),
        Err(DecodeError::Truncated {
            what: "per-peer header",
            ..
        })
    ));
    // The UPDATE's marker broken.
    let mut bad = rm.clone();
    *bad.get_mut(COMMON_HEADER_LEN + PER_PEER_HEADER_LEN)
        .unwrap() = 0;
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::BgpPdu {
            field: "route monitoring UPDATE",
            problem: PduProblem::BadMarker
        })
    );
    // An OPEN where an UPDATE belongs.
    let mut bad = rm.clone();
    *bad.get_mut(COMMON_HEADER_LEN + PER_PEER_HEADER_LEN + 18)
        .unwrap() = 1;
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::BgpPdu {
            problem: PduProblem::WrongType {
                expected: 2,
                found: 1
            },
            ..
        })
    ));
    // BGP length below 19, and past the BMP message.
    let at = COMMON_HEADER_LEN + PER_PEER_HEADER_LEN + 16;
    let mut bad = rm.clone();
    bad.get_mut(at..at + 2).unwrap().copy_from_slice(&[0, 3]);
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::BgpPdu {
            problem: PduProblem::BadLength(3),
            ..
        })
    ));
    let mut bad = rm.clone();
    bad.get_mut(at..at + 2)
        .unwrap()
        .copy_from_slice(&[0x0f, 0xff]);
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::BgpPdu {
            problem: PduProblem::Truncated,
            ..
        })
    ));
    // Trailing octets after the UPDATE.
    let mut bad = rm.clone();
    bad.push(0);
    let bad = fix_len(bad);
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::Trailing {
            message: "route monitoring",
            count: 1
        })
    );
}

#[test]
fn malformed_peer_up_and_down() {
    let up = encoded(&all_messages().remove(3));
    // Cut inside the received OPEN.
    let cut = fix_len(up.get(..up.len() - 20).unwrap().to_vec());
    assert!(matches!(
        Message::decode(&cut),
        Err(DecodeError::BgpPdu {
            field: "received OPEN",
            ..
        }) | Err(DecodeError::Truncated { .. })
    ));
    // VRF/Table Name of zero length (RFC 9069 §5.2.1: 1 to 255).
    let lr = encoded(&all_messages().remove(14));
    let mut bad = lr
        .get(..COMMON_HEADER_LEN + PER_PEER_HEADER_LEN + 1)
        .unwrap()
        .to_vec();
    bad.extend_from_slice(&[0, 3, 0, 0]);
    assert_eq!(
        Message::decode(&fix_len(bad)),
        Err(DecodeError::BadTlvLength {
            message: "peer down",
            tlv: 3,
            len: 0
        })
    );
    let base = v4_peer();
    let mk = |tail: &[u8]| {
        let mut w = encoded(&Message::PeerDown {
            peer: base,
            reason: PeerDownReason::RemoteNoData,
        });
        w.pop();
        w.extend_from_slice(tail);
        fix_len(w)
    };
    assert_eq!(
        Message::decode(&mk(&[9])),
        Err(DecodeError::UnknownPeerDownReason(9))
    );
    assert_eq!(
        Message::decode(&mk(&[2, 0])),
        Err(DecodeError::BadPeerDownData { reason: 2, len: 1 })
    );
    assert_eq!(
        Message::decode(&mk(&[4, 0])),
        Err(DecodeError::Trailing {
            message: "peer down",
            count: 1
        })
    );
    assert!(Message::decode(&mk(&[])).is_err());
}

#[test]
fn malformed_statistics() {
    let mut w = encoded(&Message::StatisticsReport(StatisticsReport {
        peer: v4_peer(),
        stats: vec![Stat::Counter { kind: 0, value: 1 }],
    }));
    // Count says 2, one TLV present.
    let at = COMMON_HEADER_LEN + PER_PEER_HEADER_LEN;
    w.get_mut(at..at + 4)
        .unwrap()
        .copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(
        Message::decode(&w),
        Err(DecodeError::StatsCount {
            declared: 2,
            found: 1
        })
    );
    // A gauge type with a counter's length.
    let mut w = encoded(&Message::StatisticsReport(StatisticsReport {
        peer: v4_peer(),
        stats: vec![Stat::Counter { kind: 0, value: 1 }],
    }));
    w.get_mut(at + 4..at + 6)
        .unwrap()
        .copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        Message::decode(&w),
        Err(DecodeError::BadStatLength { stat: 7, len: 4 })
    );
}

#[test]
fn encoder_rejects_bad_input() {
    let wrong = Message::RouteMonitoring {
        peer: v4_peer(),
        update: open(65001, Ipv4Addr::LOCALHOST),
    };
    assert!(matches!(
        wrong.encode(),
        Err(EncodeError::BgpPdu {
            problem: PduProblem::WrongType { .. },
            ..
        })
    ));
    let two = Message::RouteMonitoring {
        peer: v4_peer(),
        update: [upd(), upd()].concat().into(),
    };
    assert!(matches!(
        two.encode(),
        Err(EncodeError::BgpPdu {
            problem: PduProblem::Trailing(_),
            ..
        })
    ));
    let long = Message::PeerUp(PeerUp {
        peer: loc_rib(),
        local_address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        local_port: 0,
        remote_port: 0,
        sent_open: loc_rib_open(1, Ipv4Addr::LOCALHOST, &[]),
        received_open: loc_rib_open(1, Ipv4Addr::LOCALHOST, &[]),
        info: vec![PeerInfoTlv::VrfTableName("x".repeat(256))],
    });
    assert_eq!(
        long.encode(),
        Err(EncodeError::TlvLength { tlv: 3, len: 256 })
    );
    let init = Message::Initiation(Initiation {
        sys_descr: "d".repeat(70_000),
        sys_name: "n".into(),
        strings: vec![],
    });
    assert_eq!(
        init.encode(),
        Err(EncodeError::TlvLength {
            tlv: 1,
            len: 70_000
        })
    );
}

#[test]
fn flags_and_types_decode() {
    let mut h = v4_peer();
    h.flags = PeerFlags {
        post_policy: true,
        legacy_as_path: true,
        adj_rib_out: true,
        filtered: false,
    };
    h.peer_type = PeerType::RdInstance;
    h.distinguisher = 0x0001_0002_0003_0004;
    let m = Message::RouteMonitoring {
        peer: h,
        update: upd(),
    };
    assert_eq!(Message::decode(&m.encode().unwrap()).unwrap().0, m);
}
