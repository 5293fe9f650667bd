//! Every malformed-input class, with the NOTIFICATION (session reset) or the RFC 7606 action
//! (treat-as-withdraw, attribute-discard) we expect. One file of about 900 lines on purpose:
//! one case per error class, in the order of RFC 4271 §6 and RFC 7606, over the message
//! builders at the top; it grows with the classes.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use bgpd_wire::attributes::{flags as af, type_code as tc};
use bgpd_wire::notification::{code, header, open, route_refresh, update};
use bgpd_wire::*;
use bytes::BytesMut;
use tokio_util::codec::Decoder;

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(body.len() + 19).unwrap().to_be_bytes());
    m.push(t);
    m.extend_from_slice(body);
    m
}

fn attr(fl: u8, t: u8, v: &[u8]) -> Vec<u8> {
    let mut a = vec![fl, t];
    if fl & af::EXTENDED_LENGTH != 0 {
        a.extend_from_slice(&u16::try_from(v.len()).unwrap().to_be_bytes());
    } else {
        a.push(u8::try_from(v.len()).unwrap());
    }
    a.extend_from_slice(v);
    a
}

const WK: u8 = af::TRANSITIVE;
const OPT: u8 = af::OPTIONAL;
const OPT_T: u8 = af::OPTIONAL | af::TRANSITIVE;

fn origin() -> Vec<u8> {
    attr(WK, tc::ORIGIN, &[0])
}
fn as_path4() -> Vec<u8> {
    attr(WK, tc::AS_PATH, &[2, 1, 0, 0, 0xfd, 0xe9])
}
fn next_hop() -> Vec<u8> {
    attr(WK, tc::NEXT_HOP, &[10, 0, 0, 1])
}
fn base() -> Vec<u8> {
    [origin(), as_path4(), next_hop()].concat()
}
const NLRI: &[u8] = &[24, 192, 0, 2];

fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = u16::try_from(withdrawn.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

fn ctx4() -> SessionContext {
    SessionContext::four_octet()
}

fn decode_update(attrs: &[u8], nlri: &[u8], ctx: &SessionContext) -> Result<Update, DecodeError> {
    match decode_message(&msg(2, &update_body(&[], attrs, nlri)), ctx)? {
        Message::Update(u) => Ok(u),
        m => panic!("{m:?}"),
    }
}

fn notif(e: &DecodeError) -> (u8, u8, Vec<u8>) {
    let n = Notification::from(e);
    (n.code, n.subcode, n.data.to_vec())
}

fn reset(attrs: &[u8], nlri: &[u8]) -> (u8, u8, Vec<u8>) {
    notif(&decode_update(attrs, nlri, &ctx4()).unwrap_err())
}

/// Expects treat-as-withdraw caused by `type_code`; the NLRI are still reported.
fn taw(attrs: &[u8], type_code: u8, reason: AttrErrorReason) {
    let u = decode_update(attrs, NLRI, &ctx4()).unwrap();
    assert_eq!(
        u.treat_as_withdraw,
        Some(AttrError { type_code, reason }),
        "{u:?}"
    );
    assert_eq!(u.nlri, vec!["192.0.2.0/24".parse().unwrap()]);
}

/// Expects attribute-discard of `type_code` and a usable UPDATE.
fn discard(attrs: &[u8], type_code: u8) -> Update {
    let u = decode_update(attrs, NLRI, &ctx4()).unwrap();
    assert_eq!(u.treat_as_withdraw, None, "{u:?}");
    assert!(
        u.discarded.iter().any(|e| e.type_code == type_code),
        "{u:?}"
    );
    u
}

// ===== RFC 4271 §6.1 header errors =====

#[test]
fn header_bad_marker() {
    let mut m = msg(4, &[]);
    m[3] = 0;
    let e = decode_message(&m, &SessionContext::default()).unwrap_err();
    assert!(matches!(e, DecodeError::ConnectionNotSynchronized));
    assert_eq!(
        notif(&e),
        (
            code::MESSAGE_HEADER_ERROR,
            header::CONNECTION_NOT_SYNCHRONIZED,
            vec![]
        )
    );
}

#[test]
fn header_bad_lengths_carry_the_length_field() {
    let c = SessionContext::default();
    let cases: Vec<(u16, u8)> = vec![
        (18, 4),   // below the header
        (20, 4),   // KEEPALIVE must be 19
        (28, 1),   // OPEN below 29
        (22, 2),   // UPDATE below 23
        (20, 3),   // NOTIFICATION below 21
        (22, 5),   // ROUTE-REFRESH below 23
        (4097, 2), // above 4096 without RFC 8654
    ];
    for (len, t) in cases {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&len.to_be_bytes());
        m.push(t);
        let mut buf = BytesMut::from(&m[..]);
        let e = decode_frame(&mut buf, &c).unwrap_err();
        assert_eq!(
            notif(&e),
            (
                code::MESSAGE_HEADER_ERROR,
                header::BAD_MESSAGE_LENGTH,
                len.to_be_bytes().to_vec()
            ),
            "len {len} type {t}"
        );
    }
}

#[test]
fn extended_message_lengths() {
    let ext = SessionContext {
        extended_message: true,
        ..ctx4()
    };
    // A 5000-octet UPDATE (one long unknown optional transitive attribute) is fine once
    // RFC 8654 is negotiated, and a bad length without it.
    let big = attr(OPT_T | af::EXTENDED_LENGTH, 99, &vec![7; 4900]);
    let m = msg(2, &update_body(&[], &[base(), big].concat(), NLRI));
    assert!(m.len() > 4096);
    assert!(decode_message(&m, &ext).is_ok());
    assert!(matches!(
        decode_message(&m, &ctx4()),
        Err(DecodeError::BadMessageLength { .. })
    ));
    // RFC 8654 §4: OPEN stays within 4096 octets even then.
    let mut h = vec![0xff; 16];
    h.extend_from_slice(&5000u16.to_be_bytes());
    h.push(1);
    let e = decode_frame(&mut BytesMut::from(&h[..]), &ext).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::BadMessageLength {
            length: 5000,
            msg_type: 1
        }
    ));
}

#[test]
fn header_bad_type() {
    let e = decode_message(&msg(6, &[]), &SessionContext::default()).unwrap_err();
    assert_eq!(
        notif(&e),
        (
            code::MESSAGE_HEADER_ERROR,
            header::BAD_MESSAGE_TYPE,
            vec![6]
        )
    );
}

#[test]
fn partial_frames_wait_and_reserve_at_most_one_message() {
    let mut codec = BgpCodec::default();
    let m = msg(4, &[]);
    let mut buf = BytesMut::from(&m[..10]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    // A header announcing 4096 octets reserves no more than that.
    let mut h = vec![0xff; 16];
    h.extend_from_slice(&4096u16.to_be_bytes());
    h.push(2);
    let mut buf = BytesMut::from(&h[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() <= 8192);
    // Two messages in one buffer come out one by one.
    let mut buf = BytesMut::from(&[m.clone(), m].concat()[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Message::Keepalive));
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Message::Keepalive));
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn route_refresh_lengths_rfc7313() {
    let c = SessionContext::default();
    // BoRR with trailing octets: ROUTE-REFRESH Message Error / Invalid Message Length.
    let bad = msg(5, &[0, 1, 1, 1, 0]);
    let e = decode_message(&bad, &c).unwrap_err();
    assert_eq!(
        notif(&e),
        (
            code::ROUTE_REFRESH_MESSAGE_ERROR,
            route_refresh::INVALID_MESSAGE_LENGTH,
            bad
        )
    );
    // A normal request with ORF entries is accepted (entries ignored).
    let m = decode_message(&msg(5, &[0, 1, 0, 1, 1, 2, 3]), &c).unwrap();
    assert_eq!(
        m,
        Message::RouteRefresh(RouteRefresh {
            family: Family::Ipv4Unicast,
            subtype: 0
        })
    );
    // Unknown subtypes are passed up for the speaker to ignore (RFC 7313 §3.2).
    let m = decode_message(&msg(5, &[0, 2, 9, 1]), &c).unwrap();
    assert_eq!(
        m,
        Message::RouteRefresh(RouteRefresh {
            family: Family::Ipv6Unicast,
            subtype: 9
        })
    );
}

// ===== RFC 4271 §6.2 OPEN errors =====

fn open_body(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(u8::try_from(params.len()).unwrap());
    b.extend_from_slice(params);
    b
}

fn open_err(body: &[u8]) -> (u8, u8, Vec<u8>) {
    notif(&decode_message(&msg(1, body), &SessionContext::default()).unwrap_err())
}

const ID: [u8; 4] = [10, 0, 0, 1];

#[test]
fn open_errors() {
    assert_eq!(
        open_err(&open_body(3, 65001, 90, ID, &[])),
        (
            code::OPEN_MESSAGE_ERROR,
            open::UNSUPPORTED_VERSION_NUMBER,
            vec![0, 4]
        )
    );
    assert_eq!(open_err(&open_body(4, 0, 90, ID, &[])).1, open::BAD_PEER_AS);
    for hold in [1, 2] {
        assert_eq!(
            open_err(&open_body(4, 65001, hold, ID, &[])).1,
            open::UNACCEPTABLE_HOLD_TIME
        );
    }
    assert_eq!(
        open_err(&open_body(4, 65001, 90, [0; 4], &[])).1,
        open::BAD_BGP_IDENTIFIER
    );
    // Optional parameter type 1 (deprecated authentication).
    assert_eq!(
        open_err(&open_body(4, 65001, 90, ID, &[1, 1, 0])).1,
        open::UNSUPPORTED_OPTIONAL_PARAMETER
    );
    // Capability TLV running past its parameter.
    assert_eq!(
        open_err(&open_body(4, 65001, 90, ID, &[2, 3, 65, 4, 0])).1,
        open::UNSPECIFIC
    );
    // Parameter running past the message.
    let mut b = open_body(4, 65001, 90, ID, &[2, 6, 65, 4, 0, 0]);
    b[9] = 8;
    assert_eq!(open_err(&b).1, open::UNSPECIFIC);
    // 4-octet AS capability of the wrong size, or AS 0 in it.
    assert_eq!(
        open_err(&open_body(4, 65001, 90, ID, &[2, 5, 65, 3, 0, 0, 1])).1,
        open::UNSPECIFIC
    );
    assert_eq!(
        open_err(&open_body(4, 65001, 90, ID, &[2, 6, 65, 4, 0, 0, 0, 0])).1,
        open::BAD_PEER_AS
    );
    // ADD-PATH send/receive value 0 is malformed.
    assert_eq!(
        open_err(&open_body(4, 65001, 90, ID, &[2, 6, 69, 4, 0, 1, 1, 0])).1,
        open::UNSPECIFIC
    );
}

#[test]
fn open_hold_times_zero_and_three_are_fine_and_unknown_capabilities_kept() {
    for hold in [0, 3] {
        let m = decode_message(
            &msg(1, &open_body(4, 65001, hold, ID, &[2, 3, 200, 1, 9])),
            &SessionContext::default(),
        )
        .unwrap();
        let Message::Open(o) = m else { panic!() };
        assert_eq!(o.hold_time, hold);
        assert_eq!(
            o.capabilities,
            vec![Capability::Unknown {
                code: 200,
                value: bytes::Bytes::from_static(&[9])
            }]
        );
    }
}

#[test]
fn open_rfc9072_extended_parameters() {
    // Hand-built: non-ext length 255, type 255, 2-octet length, then type + 2-octet length.
    let caps = [65u8, 4, 0, 1, 0, 0];
    let mut p = vec![2u8];
    p.extend_from_slice(&u16::try_from(caps.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&caps);
    let mut b = vec![4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 255, 255];
    b.extend_from_slice(&u16::try_from(p.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&p);
    let Message::Open(o) = decode_message(&msg(1, &b), &SessionContext::default()).unwrap() else {
        panic!()
    };
    assert_eq!(o.asn(), 65536);
    // Our encoder switches to the extended form when the capabilities exceed 255 octets.
    let many = Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        router_id: "10.0.0.1".parse().unwrap(),
        capabilities: (0..100)
            .map(|i| Capability::Unknown {
                code: 200,
                value: bytes::Bytes::from(vec![i; 3]),
            })
            .collect(),
    };
    let bytes = encode_to_bytes(&Message::Open(many.clone()), &SessionContext::default()).unwrap();
    assert_eq!(bytes[28], 255);
    assert_eq!(
        decode_message(&bytes, &SessionContext::default()).unwrap(),
        Message::Open(many)
    );
}

// ===== RFC 4271 §6.3 + RFC 7606 UPDATE errors =====

#[test]
fn update_length_fields_overrun_is_malformed_attribute_list() {
    let c = ctx4();
    let mut b = update_body(&[], &base(), NLRI);
    b[1] = 200; // withdrawn length past the end
    let e = decode_message(&msg(2, &b), &c).unwrap_err();
    assert_eq!(
        notif(&e),
        (
            code::UPDATE_MESSAGE_ERROR,
            update::MALFORMED_ATTRIBUTE_LIST,
            vec![]
        )
    );
    let mut b = update_body(&[], &base(), NLRI);
    b[3] = 250; // total attribute length past the end
    let e = decode_message(&msg(2, &b), &c).unwrap_err();
    assert_eq!(notif(&e).1, update::MALFORMED_ATTRIBUTE_LIST);
}

#[test]
fn update_bad_prefixes_are_invalid_network_field() {
    assert_eq!(
        reset(&base(), &[33, 1, 2, 3, 4, 5]).1,
        update::INVALID_NETWORK_FIELD
    );
    assert_eq!(reset(&base(), &[24, 1, 2]).1, update::INVALID_NETWORK_FIELD);
    let b = update_body(&[40, 1, 2, 3, 4, 5], &[], &[]);
    let e = decode_message(&msg(2, &b), &ctx4()).unwrap_err();
    assert_eq!(notif(&e).1, update::INVALID_NETWORK_FIELD);
}

#[test]
fn treat_as_withdraw_attributes() {
    use AttrErrorReason::*;
    let [o, p, n] = [origin(), as_path4(), next_hop()];
    taw(
        &[attr(WK, tc::ORIGIN, &[3]), p.clone(), n.clone()].concat(),
        tc::ORIGIN,
        BadValue,
    );
    taw(
        &[attr(WK, tc::ORIGIN, &[0, 0]), p.clone(), n.clone()].concat(),
        tc::ORIGIN,
        BadLength,
    );
    taw(
        &[attr(OPT, tc::ORIGIN, &[0]), p.clone(), n.clone()].concat(),
        tc::ORIGIN,
        BadFlags,
    );
    // AS_PATH: unknown segment type, zero-length segment, overrun, lone trailing octet.
    for bad in [
        &[5u8, 1, 0, 0, 0, 1][..],
        &[2, 0],
        &[2, 2, 0, 0, 0, 1],
        &[2, 1, 0, 0, 0, 1, 2],
    ] {
        taw(
            &[o.clone(), attr(WK, tc::AS_PATH, bad), n.clone()].concat(),
            tc::AS_PATH,
            BadValue,
        );
    }
    taw(
        &[
            o.clone(),
            p.clone(),
            attr(WK, tc::NEXT_HOP, &[1, 2, 3, 4, 5]),
        ]
        .concat(),
        tc::NEXT_HOP,
        BadLength,
    );
    taw(
        &[o.clone(), p.clone(), attr(WK, tc::NEXT_HOP, &[0, 0, 0, 0])].concat(),
        tc::NEXT_HOP,
        BadNextHop,
    );
    taw(
        &[
            o.clone(),
            p.clone(),
            attr(WK, tc::NEXT_HOP, &[224, 0, 0, 1]),
        ]
        .concat(),
        tc::NEXT_HOP,
        BadNextHop,
    );
    taw(
        &[base(), attr(OPT, tc::MULTI_EXIT_DISC, &[0, 0, 1])].concat(),
        tc::MULTI_EXIT_DISC,
        BadLength,
    );
    taw(
        &[base(), attr(WK, tc::LOCAL_PREF, &[0, 1])].concat(),
        tc::LOCAL_PREF,
        BadLength,
    );
    taw(
        &[base(), attr(OPT_T, tc::COMMUNITIES, &[0, 1, 0, 1, 9])].concat(),
        tc::COMMUNITIES,
        BadLength,
    );
    taw(
        &[base(), attr(OPT_T, tc::COMMUNITIES, &[])].concat(),
        tc::COMMUNITIES,
        BadLength,
    );
    taw(
        &[base(), attr(OPT, tc::ORIGINATOR_ID, &[1, 2, 3])].concat(),
        tc::ORIGINATOR_ID,
        BadLength,
    );
    taw(
        &[base(), attr(OPT, tc::CLUSTER_LIST, &[])].concat(),
        tc::CLUSTER_LIST,
        BadLength,
    );
    taw(
        &[base(), attr(OPT_T, tc::EXTENDED_COMMUNITIES, &[0; 7])].concat(),
        tc::EXTENDED_COMMUNITIES,
        BadLength,
    );
    taw(
        &[base(), attr(OPT_T, tc::LARGE_COMMUNITY, &[0; 11])].concat(),
        tc::LARGE_COMMUNITY,
        BadLength,
    );
    // Flags conflicting with the type (well-known sent as optional, and vice versa).
    taw(
        &[base(), attr(WK, tc::COMMUNITIES, &[0, 1, 0, 1])].concat(),
        tc::COMMUNITIES,
        BadFlags,
    );
}

#[test]
fn rfc7606_section4_attribute_overruns_still_locate_nlri() {
    // The last attribute claims more octets than the field holds.
    let mut a = base();
    a.extend_from_slice(&[OPT, tc::MULTI_EXIT_DISC, 9, 0, 0]);
    taw(&a, tc::MULTI_EXIT_DISC, AttrErrorReason::BadLength);
    // Fewer than 3 octets left for an attribute header.
    let mut a = base();
    a.extend_from_slice(&[OPT, tc::MULTI_EXIT_DISC]);
    taw(&a, tc::MULTI_EXIT_DISC, AttrErrorReason::BadLength);
    let mut a = base();
    a.push(OPT);
    taw(&a, 0, AttrErrorReason::BadLength);
}

#[test]
fn attribute_discard() {
    let u = discard(
        &[base(), attr(WK, tc::ATOMIC_AGGREGATE, &[1])].concat(),
        tc::ATOMIC_AGGREGATE,
    );
    assert!(!u.attributes.unwrap().atomic_aggregate);
    let u = discard(
        &[base(), attr(OPT_T, tc::AGGREGATOR, &[0; 5])].concat(),
        tc::AGGREGATOR,
    );
    assert_eq!(u.attributes.unwrap().aggregator, None);
    // AGGREGATOR with the flags of a well-known attribute: discard too (RFC 7606 §7.7).
    discard(
        &[base(), attr(WK, tc::AGGREGATOR, &[0, 0, 0, 1, 1, 2, 3, 4])].concat(),
        tc::AGGREGATOR,
    );
}

#[test]
fn duplicates() {
    // A second ORIGIN is discarded, the first one kept (RFC 7606 §3.g).
    let u = discard(&[base(), attr(WK, tc::ORIGIN, &[2])].concat(), tc::ORIGIN);
    assert_eq!(u.attributes.unwrap().origin, Origin::Igp);
    // MP_REACH_NLRI twice: Malformed Attribute List.
    let mp = attr(
        OPT | af::EXTENDED_LENGTH,
        tc::MP_REACH_NLRI,
        &[
            0, 2, 1, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 32, 0x20, 1,
            0xd, 0xb8,
        ],
    );
    assert_eq!(
        reset(&[mp.clone(), origin(), as_path4(), mp].concat(), &[]).1,
        update::MALFORMED_ATTRIBUTE_LIST
    );
}

#[test]
fn missing_mandatory_attributes() {
    use AttrErrorReason::MissingMandatory;
    taw(
        &[as_path4(), next_hop()].concat(),
        tc::ORIGIN,
        MissingMandatory,
    );
    taw(
        &[origin(), next_hop()].concat(),
        tc::AS_PATH,
        MissingMandatory,
    );
    taw(
        &[origin(), as_path4()].concat(),
        tc::NEXT_HOP,
        MissingMandatory,
    );
    taw(&[], tc::ORIGIN, MissingMandatory);
    // No NLRI: nothing is mandatory (a withdrawal).
    let u = decode_update(&[], &[], &ctx4()).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    // MP_REACH only: NEXT_HOP is not needed (RFC 4760 §3), ORIGIN and AS_PATH are.
    let mp = attr(
        OPT | af::EXTENDED_LENGTH,
        tc::MP_REACH_NLRI,
        &[
            0, 2, 1, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 32, 0x20, 1,
            0xd, 0xb8,
        ],
    );
    let u = decode_update(&[mp.clone(), origin(), as_path4()].concat(), &[], &ctx4()).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    let u = decode_update(&[mp, origin()].concat(), &[], &ctx4()).unwrap();
    assert_eq!(
        u.treat_as_withdraw,
        Some(AttrError {
            type_code: tc::AS_PATH,
            reason: MissingMandatory
        })
    );
}

#[test]
fn mp_reach_and_unreach_errors_reset_the_session() {
    let c = ctx4();
    // IPv6 next hop of 5 octets: the NLRI cannot be located (RFC 7606 §7.11).
    let bad_nh = attr(
        OPT,
        tc::MP_REACH_NLRI,
        &[0, 2, 1, 5, 1, 2, 3, 4, 5, 0, 32, 0x20, 1, 0xd, 0xb8],
    );
    let e = decode_update(&[bad_nh.clone(), origin(), as_path4()].concat(), &[], &c).unwrap_err();
    let (cd, sc, data) = notif(&e);
    assert_eq!(
        (cd, sc),
        (code::UPDATE_MESSAGE_ERROR, update::OPTIONAL_ATTRIBUTE_ERROR)
    );
    assert_eq!(data, bad_nh, "data is the erroneous attribute");
    // Truncated, and a prefix longer than 128.
    assert_eq!(
        reset(&attr(OPT, tc::MP_REACH_NLRI, &[0, 2]), &[]).1,
        update::OPTIONAL_ATTRIBUTE_ERROR
    );
    let long = attr(
        OPT,
        tc::MP_REACH_NLRI,
        &[
            0, 2, 1, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 129,
        ],
    );
    assert_eq!(reset(&long, &[]).1, update::OPTIONAL_ATTRIBUTE_ERROR);
    assert_eq!(
        reset(&attr(OPT, tc::MP_UNREACH_NLRI, &[0, 2, 1, 64, 1]), &[]).1,
        update::OPTIONAL_ATTRIBUTE_ERROR
    );
    // Wrong flags on MP_REACH: Attribute Flags Error.
    let good = [
        0, 2, 1, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 32, 0x20, 1, 0xd,
        0xb8,
    ];
    assert_eq!(
        reset(&attr(OPT_T, tc::MP_REACH_NLRI, &good), &[]).1,
        update::ATTRIBUTE_FLAGS_ERROR
    );
    // A family we do not carry is skipped, not an error.
    let u = decode_update(
        &[
            attr(OPT, tc::MP_REACH_NLRI, &[0, 25, 70, 4, 1, 2, 3, 4, 0, 9, 9]),
            origin(),
            as_path4(),
        ]
        .concat(),
        &[],
        &c,
    )
    .unwrap();
    assert!(u.mp_reach.is_none() && u.treat_as_withdraw.is_none());
}

#[test]
fn unknown_attributes() {
    // Well-known but unrecognised: session reset with the attribute as data.
    let a = attr(WK, 99, &[1, 2]);
    assert_eq!(
        reset(&[base(), a.clone()].concat(), NLRI),
        (
            code::UPDATE_MESSAGE_ERROR,
            update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            a
        )
    );
    // Optional non-transitive: quietly dropped.
    let u = decode_update(&[base(), attr(OPT, 99, &[1, 2])].concat(), NLRI, &ctx4()).unwrap();
    assert!(u.attributes.as_ref().unwrap().unknown.is_empty());
    // Optional transitive: kept, and passed on with the Partial bit.
    let u = decode_update(&[base(), attr(OPT_T, 99, &[1, 2])].concat(), NLRI, &ctx4()).unwrap();
    let attrs = u.attributes.clone().unwrap();
    assert_eq!(
        attrs.unknown,
        vec![RawAttribute {
            flags: OPT_T,
            type_code: 99,
            value: bytes::Bytes::from_static(&[1, 2])
        }]
    );
    let out = encode_to_bytes(&Message::Update(u), &ctx4()).unwrap();
    assert!(
        hex::encode(&out).contains("e0630201 02".replace(' ', "").as_str()),
        "{}",
        hex::encode(&out)
    );
}

#[test]
fn as4_attributes() {
    let c2 = SessionContext::default();
    // AS4_PATH with a confederation segment on a 2-octet session: discarded (RFC 6793 §6).
    let bad = attr(OPT_T, tc::AS4_PATH, &[3, 1, 0, 1, 0, 0]);
    let p2 = attr(WK, tc::AS_PATH, &[2, 1, 0x5b, 0xa0]);
    let u = decode_update(&[origin(), p2.clone(), next_hop(), bad].concat(), NLRI, &c2).unwrap();
    assert!(u.discarded.iter().any(|e| e.type_code == tc::AS4_PATH));
    assert_eq!(
        u.attributes.unwrap().as_path.segments,
        vec![AsSegment::Sequence(vec![23456])]
    );
    // A good AS4_PATH is merged.
    let good = attr(OPT_T, tc::AS4_PATH, &[2, 1, 0, 1, 0, 0]);
    let u = decode_update(
        &[origin(), p2, next_hop(), good.clone()].concat(),
        NLRI,
        &c2,
    )
    .unwrap();
    assert_eq!(
        u.attributes.unwrap().as_path.segments,
        vec![AsSegment::Sequence(vec![65536])]
    );
    // On a 4-octet session AS4_PATH is ignored (RFC 6793 §4.1).
    let u = decode_update(&[base(), good].concat(), NLRI, &ctx4()).unwrap();
    assert_eq!(
        u.attributes.unwrap().as_path.segments,
        vec![AsSegment::Sequence(vec![65001])]
    );
    // AS4_AGGREGATOR of the wrong length: discarded.
    let p2 = attr(WK, tc::AS_PATH, &[2, 1, 0x5b, 0xa0]);
    let u = decode_update(
        &[
            origin(),
            p2.clone(),
            next_hop(),
            attr(OPT_T, tc::AS4_AGGREGATOR, &[0; 7]),
        ]
        .concat(),
        NLRI,
        &c2,
    )
    .unwrap();
    assert!(
        u.discarded
            .iter()
            .any(|e| e.type_code == tc::AS4_AGGREGATOR)
    );
    // AGGREGATOR AS_TRANS + AS4_AGGREGATOR merge to the 4-octet aggregator.
    let agg = attr(OPT_T, tc::AGGREGATOR, &[0x5b, 0xa0, 10, 0, 0, 9]);
    let agg4 = attr(OPT_T, tc::AS4_AGGREGATOR, &[0, 1, 0, 0, 10, 0, 0, 9]);
    let u = decode_update(&[origin(), p2, next_hop(), agg, agg4].concat(), NLRI, &c2).unwrap();
    assert_eq!(
        u.attributes.unwrap().aggregator,
        Some(Aggregator {
            asn: 65536,
            address: "10.0.0.9".parse().unwrap()
        })
    );
}

#[test]
fn strongest_action_wins() {
    let u = decode_update(
        &[
            origin(),
            as_path4(),
            next_hop(),
            attr(WK, tc::ATOMIC_AGGREGATE, &[1]),
            attr(OPT_T, tc::COMMUNITIES, &[1]),
        ]
        .concat(),
        NLRI,
        &ctx4(),
    )
    .unwrap();
    assert_eq!(
        u.treat_as_withdraw.as_ref().map(|e| e.type_code),
        Some(tc::COMMUNITIES)
    );
    assert!(
        u.discarded
            .iter()
            .any(|e| e.type_code == tc::ATOMIC_AGGREGATE)
    );
}

#[test]
fn action_table_matches_rfc7606() {
    for t in [
        tc::ORIGIN,
        tc::AS_PATH,
        tc::NEXT_HOP,
        tc::MULTI_EXIT_DISC,
        tc::LOCAL_PREF,
        tc::COMMUNITIES,
        tc::ORIGINATOR_ID,
        tc::CLUSTER_LIST,
        tc::EXTENDED_COMMUNITIES,
        tc::LARGE_COMMUNITY,
    ] {
        assert_eq!(action_for(t), ErrorAction::TreatAsWithdraw, "{t}");
    }
    for t in [
        tc::ATOMIC_AGGREGATE,
        tc::AGGREGATOR,
        tc::AS4_PATH,
        tc::AS4_AGGREGATOR,
    ] {
        assert_eq!(action_for(t), ErrorAction::AttributeDiscard, "{t}");
    }
    for t in [tc::MP_REACH_NLRI, tc::MP_UNREACH_NLRI] {
        assert_eq!(action_for(t), ErrorAction::SessionReset, "{t}");
    }
}

#[test]
fn io_errors_send_nothing() {
    let e = DecodeError::from(std::io::Error::other("x"));
    assert!(!e.sends_notification());
    assert!(e.notification().is_none());
}

// ===== no panics on arbitrary input (the fuzz targets' invariant, on stable in CI) =====

mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    fn ctx_from(b: u8) -> SessionContext {
        let both = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
        SessionContext {
            four_octet_as: b & 1 != 0,
            extended_message: b & 2 != 0,
            add_path_rx: if b & 4 != 0 { both.clone() } else { Vec::new() },
            add_path_tx: Vec::new(),
            extended_next_hop: Vec::new(),
            families: both,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_body_of_any_type_decodes_or_errors(sel in any::<u8>(), t in 1u8..=5, body in prop::collection::vec(any::<u8>(), 0..600)) {
            let ctx = ctx_from(sel);
            match decode_message(&msg(t, &body), &ctx) {
                Ok(m) => {
                    // Whatever decodes re-encodes (or is reported too long) without panicking.
                    let _ = encode_to_bytes(&m, &ctx);
                }
                Err(e) => {
                    let n = Notification::from(&e);
                    prop_assert!(n.code >= 1 && n.code <= 7);
                }
            }
        }

        #[test]
        fn any_attribute_soup_decodes_or_errors(sel in any::<u8>(), attrs in prop::collection::vec((any::<u8>(), 0u8..40, prop::collection::vec(any::<u8>(), 0..40)), 0..8), nlri in prop::collection::vec(any::<u8>(), 0..20)) {
            let ctx = ctx_from(sel);
            let field: Vec<u8> = attrs.iter().flat_map(|(f, t, v)| attr(f & !af::EXTENDED_LENGTH, *t, v)).collect();
            let _ = decode_update(&field, &nlri, &ctx);
        }

        #[test]
        fn any_stream_in_any_pieces(sel in any::<u8>(), data in prop::collection::vec(any::<u8>(), 0..2000), step in 1usize..64) {
            let mut codec = BgpCodec::new(ctx_from(sel));
            let mut buf = BytesMut::new();
            // Start with a valid marker half the time so framing gets past the first check.
            if sel & 8 != 0 {
                buf.extend_from_slice(&[0xff; 16]);
            }
            'outer: for chunk in data.chunks(step) {
                buf.extend_from_slice(chunk);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            prop_assert!(buf.capacity() <= 2 * 65_535 + 4096);
        }
    }
}
