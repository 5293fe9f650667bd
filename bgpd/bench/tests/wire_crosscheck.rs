//! The benchmark's hand-rolled messages decode cleanly with our codec (`bgpd-wire`) and carry
//! exactly the generated table: the instruments speak the same BGP as the speaker they time.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use bgpd_bench::{Workload, bgp, workload};
use bgpd_wire::{AsSegment, Message, SessionContext, decode_message};
use ipnet::IpNet;

#[test]
fn table_and_open_decode_with_bgpd_wire() {
    let ctx = SessionContext::four_octet();
    match decode_message(
        &bgp::open(4_200_000_000, 240, Ipv4Addr::new(10, 0, 1, 2)),
        &ctx,
    )
    .unwrap()
    {
        Message::Open(o) => {
            assert_eq!(o.hold_time, 240);
            assert_eq!(o.router_id, Ipv4Addr::new(10, 0, 1, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decode_message(&bgp::keepalive(), &ctx).unwrap(),
        Message::Keepalive
    );

    let w = Workload::new(5_000, 3);
    let table = workload::build(&w, 65001, Ipv4Addr::new(10, 0, 1, 2));
    let mut reader = bgp::MsgReader::new(&table.bytes[..]);
    let mut seen = vec![false; 5_000];
    let mut whole = Vec::new();
    while let Some((ty, body)) = reader.read_message().unwrap() {
        assert_eq!(ty, bgp::UPDATE);
        whole.clear();
        whole.extend_from_slice(&[0xff; 16]);
        whole.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
        whole.push(ty);
        whole.extend_from_slice(body);
        let Message::Update(u) = decode_message(&whole, &ctx).unwrap() else {
            panic!("not an UPDATE");
        };
        assert!(
            u.treat_as_withdraw.is_none() && u.discarded.is_empty(),
            "{u:?}"
        );
        let attrs = u.attributes.as_ref().unwrap();
        assert_eq!(attrs.next_hop, Some(Ipv4Addr::new(10, 0, 1, 2)));
        match &attrs.as_path.segments[..] {
            [AsSegment::Sequence(path)] => {
                assert_eq!(path[0], 65001);
                assert!((2..=6).contains(&path.len()), "{path:?}");
            }
            other => panic!("{other:?}"),
        }
        for p in &u.nlri {
            let IpNet::V4(p) = p else { panic!("{p}") };
            let i = workload::prefix_index(u32::from(p.network()), p.prefix_len(), 5_000).unwrap();
            assert!(!seen[i as usize]);
            seen[i as usize] = true;
        }
    }
    assert!(seen.iter().all(|s| *s));
}
