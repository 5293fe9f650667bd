//! BGP PDUs for the tests, built with the speaker's own codec (bgpd-wire).
#![allow(clippy::unwrap_used, dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpd_wire::{
    AsPath, AsSegment, Capability, EncodedAttributes, Family, Message, NextHop, Notification, Open,
    Origin, PathAttributes, SessionContext, UpdateBuilder, encode_to_bytes,
};
use bytes::Bytes;
use ipnet::IpNet;

/// An OPEN from `asn`/`id` with IPv4 and IPv6 unicast and 4-octet AS.
pub fn open(asn: u32, id: Ipv4Addr) -> Bytes {
    let msg = Message::Open(Open {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(23456),
        hold_time: 90,
        router_id: id,
        capabilities: vec![
            Capability::Multiprotocol(Family::Ipv4Unicast),
            Capability::Multiprotocol(Family::Ipv6Unicast),
            Capability::FourOctetAs(asn),
        ],
    });
    encode_to_bytes(&msg, &SessionContext::four_octet()).unwrap()
}

/// A NOTIFICATION (Cease / administrative shutdown).
pub fn notification() -> Bytes {
    let msg = Message::Notification(Notification {
        code: 6,
        subcode: 2,
        data: Bytes::new(),
    });
    encode_to_bytes(&msg, &SessionContext::four_octet()).unwrap()
}

/// UPDATEs announcing `prefixes` with AS path `path`, IPv4 next hop `nh4` (IPv6 ones get
/// `nh6`).
pub fn updates(path: &[u32], nh4: Ipv4Addr, nh6: Ipv6Addr, prefixes: &[&str]) -> Vec<Bytes> {
    let ctx = SessionContext::four_octet();
    let attrs = PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(path.to_vec())],
        },
        ..Default::default()
    };
    let enc = EncodedAttributes::new(&attrs, &ctx);
    let nets: Vec<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
    let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = nets.iter().partition(|n| n.addr().is_ipv4());
    let mut b = UpdateBuilder::new(&ctx);
    if !v4.is_empty() {
        b.announce(&enc, NextHop::V4(nh4), &v4).unwrap();
    }
    if !v6.is_empty() {
        b.announce(
            &enc,
            NextHop::V6 {
                global: nh6,
                link_local: None,
            },
            &v6,
        )
        .unwrap();
    }
    b.into_messages()
}

/// UPDATEs withdrawing `prefixes`.
pub fn withdrawals(prefixes: &[&str]) -> Vec<Bytes> {
    let nets: Vec<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
    bgpd_wire::encode_withdrawals(&nets, &SessionContext::four_octet())
}

/// An address as a peer key.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
