//! BPF_PROG_TEST_RUN tests of the service load balancer (`rackd_lb_in`,
//! `rackd_lb_out`): crafted frames in, exact frames, verdicts and counters
//! out, for every path. Each test has its own pin folder and namespace
//! (frames "arrive" on its lo, ifindex 1, where no route exists: forwarded
//! packets go to the stack, verdict TC_ACT_OK, which keeps outputs exact).
//! Needs root.
#![allow(clippy::unwrap_used)]

mod common;
mod lbfx;
mod lbpkt;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::PinDir;
use datapath::Verdict;
use datapath::lb::*;
use ipnet::IpNet;
use lbfx::*;
use lbpkt::*;
use rackd_types::maglev::Slots;

/// DNAT to a local backend, both families and protocols: the exact frame a
/// fresh builder makes for the translated tuple (so every checksum is
/// right), handed to the stack; the reply translated back at egress.
#[test]
fn dnat_to_local_backend_and_reply_back_exact() {
    let mut fx = fixture();
    for (i, fam) in FAMS.iter().map(|f| f()).enumerate() {
        for (j, proto) in [L4Proto::Tcp, L4Proto::Udp].into_iter().enumerate() {
            let id = u32::try_from(10 + i * 2 + j).unwrap();
            backend(&mut fx.lb, id, fam.local, 8080, proto, true);
            service(&mut fx.lb, fe(fam.vip, 80, proto), id, &[id]);
            let req = frame(fam.client, fam.vip, &l4_of(proto, 40000, 80));
            let out = run(&fx.lb, LbHook::Ingress, &req);
            assert_eq!(out.verdict, OK, "{fam:?} {proto:?}");
            let want = frame(fam.client, fam.local, &l4_of(proto, 40000, 8080));
            assert_eq!(out.packet, want, "{fam:?} {proto:?}: DNAT");
            assert!(parse(&out.packet).csum_ok);

            let reply_l4 = match proto {
                L4Proto::Tcp => tcp(8080, 40000, SYN | ACK),
                L4Proto::Udp => udp(8080, 40000),
            };
            let reply = frame(fam.local, fam.client, &reply_l4);
            let out = run(&fx.lb, LbHook::Egress, &reply);
            assert_eq!(out.verdict, OK);
            let mut back_l4 = reply_l4.clone();
            match &mut back_l4 {
                L4::Tcp { sport, .. } | L4::Udp { sport, .. } => *sport = 80,
                _ => unreachable!(),
            }
            assert_eq!(
                out.packet,
                frame(fam.vip, fam.client, &back_l4),
                "reverse DNAT"
            );
            // Positive control: a reply of an unknown flow is not touched.
            let other = frame(fam.local, fam.client2, &reply_l4);
            assert_untouched(&fx.lb, LbHook::Egress, &other, "unknown flow");
        }
    }
    let c = fx.lb.counters().unwrap();
    assert_eq!(c.services.len(), 4);
    for (_, s) in &c.services {
        assert_eq!(s.packets, 1);
        assert!(s.bytes >= 47, "{s:?}"); // the smallest frame: UDP over IPv4
    }
}

/// Non-frontends pass untouched: other port, other protocol, other address.
#[test]
fn non_frontends_pass_untouched() {
    let mut fx = fixture();
    let fam = v4();
    backend(&mut fx.lb, 1, fam.local, 8080, L4Proto::Tcp, true);
    service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), 1, &[1]);
    for (what, f) in [
        (
            "other port",
            frame(fam.client, fam.vip, &tcp(40000, 81, SYN)),
        ),
        ("other proto", frame(fam.client, fam.vip, &udp(40000, 80))),
        (
            "other address",
            frame(fam.client, fam.outside, &tcp(40000, 80, SYN)),
        ),
        (
            "icmp echo",
            frame(
                fam.client,
                fam.vip,
                &L4::Echo {
                    id: 7,
                    seq: 1,
                    reply: false,
                },
            ),
        ),
    ] {
        assert_untouched(&fx.lb, LbHook::Ingress, &f, what);
        assert_untouched(&fx.lb, LbHook::Egress, &f, what);
    }
    // Positive control.
    let out = run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(40000, 80, SYN)),
    );
    assert_eq!(out.verdict, OK);
}

fn backend_of(out: &[u8], by_addr: &BTreeMap<IpAddr, u32>) -> u32 {
    by_addr[&parse(out).dst]
}

/// Runs 2,000 new flows into `table` (M = 4093) over backends `1..=backends` and checks
/// that each backend gets its share of the slots, within 4 standard deviations, and that no
/// lookup missed.
fn flows_follow_the_slots(table: &MaglevTable, backends: u32) {
    const BIG: u32 = 4093;
    let mut cfg = small();
    cfg.maglev_table_size = BIG;
    let mut fx = fixture_with(cfg);
    let fam = v4();
    let mut by_addr = BTreeMap::new();
    for id in 1..=backends {
        let a = IpAddr::V4(Ipv4Addr::new(10, 244, 1, u8::try_from(id).unwrap()));
        backend(&mut fx.lb, id, a, 8080, L4Proto::Tcp, true);
        by_addr.insert(a, id);
    }
    let f = fe(fam.vip, 80, L4Proto::Tcp);
    fx.lb
        .upsert_service(
            &f,
            &ServiceEntry {
                id: 9,
                local_only: false,
                affinity_timeout: None,
                lut: table,
                source_ranges: &[],
            },
        )
        .unwrap();
    let flows = 2000u32;
    let mut hits = BTreeMap::<u32, u32>::new();
    for i in 0..flows {
        let sport = 20000 + u16::try_from(i).unwrap();
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &tcp(sport, 80, SYN)),
        );
        assert_eq!(out.verdict, OK);
        *hits.entry(backend_of(&out.packet, &by_addr)).or_default() += 1;
    }
    let mut slots = BTreeMap::<u32, u32>::new();
    for id in table.slot_ids() {
        *slots.entry(id).or_default() += 1;
    }
    for id in 1..=backends {
        let p = f64::from(slots.get(&id).copied().unwrap_or(0)) / f64::from(BIG);
        let want = p * f64::from(flows);
        let sd = (want * (1.0 - p)).sqrt();
        let got = f64::from(hits.get(&id).copied().unwrap_or(0));
        assert!(
            (got - want).abs() <= 4.0 * sd + 3.0,
            "backend {id}: {got} flows, {want:.0} expected: {hits:?}"
        );
    }
    let c = fx.lb.counters().unwrap();
    assert!(
        c.drops
            .iter()
            .all(|(r, n)| *r != DropReason::LutMiss || *n == 0),
        "{c:?}"
    );
}

/// Chunk of the byte at `offset` of an encoded table.
fn chunk_at(offset: usize) -> usize {
    offset / LUT_BYTES
}

/// A one-byte table of two chunks (M = 4093, 5 backends: 20 bytes of ids, then slots): the
/// slots of each chunk name their own backends, so a wrong chunk number or offset in the
/// program (e.g. positions read as four-byte ids, or the id list not skipped) starves some
/// backends or skews the shares.
#[test]
fn every_chunk_of_a_one_byte_table_is_read() {
    let n = 5usize;
    let positions: Vec<u8> = (0..4093usize)
        .map(|s| {
            let k = chunk_at(4 * n + s);
            u8::try_from(2 * k + s % 2).unwrap()
        })
        .collect();
    let table = MaglevTable::new((1..=5).collect(), Slots::Narrow(positions.into())).unwrap();
    assert_eq!(table.width(), 1);
    assert_eq!(lut_chunks(n, 4093), 2);
    flows_follow_the_slots(&table, 5);
}

/// A two-byte table of four chunks (M = 4093, 1,100 positions: 4,400 bytes of ids spanning
/// chunks 0 and 1, then two bytes per slot in chunks 1 to 3): each backend stands for one
/// (chunk of the slot, chunk of the id) pair.
#[test]
fn every_chunk_of_a_two_byte_table_is_read() {
    let n = 1100usize;
    // Positions 0, 1, 2 (ids in chunk 0) name backends 1-3, positions 1001-1003 (ids in
    // chunk 1) backends 4-6; the other positions backend 7, which no slot names.
    let ids: Vec<u32> = (0..n)
        .map(|p| match p {
            0..=2 => u32::try_from(p).unwrap() + 1,
            1001..=1003 => u32::try_from(p).unwrap() - 997,
            _ => 7,
        })
        .collect();
    let positions: Vec<u16> = (0..4093usize)
        .map(|s| {
            let k = u16::try_from(chunk_at(4 * n + 2 * s)).unwrap(); // 1..=3
            if s % 2 == 0 { k - 1 } else { 1000 + k }
        })
        .collect();
    let table = MaglevTable::new(ids, Slots::Wide(positions.into())).unwrap();
    assert_eq!(table.width(), 2);
    assert_eq!(lut_chunks(n, 4093), 4);
    flows_follow_the_slots(&table, 7);
}

/// A new table is written under the other generation and switched to in one update: chunks
/// being written are not read before the switch, and the old generation is deleted after.
#[test]
fn a_table_being_written_is_not_read_until_the_switch() {
    let mut fx = fixture();
    let fam = v4();
    let (a, b) = (
        IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 244, 1, 2)),
    );
    backend(&mut fx.lb, 1, a, 8080, L4Proto::Tcp, true);
    backend(&mut fx.lb, 2, b, 8080, L4Proto::Tcp, true);
    let f = fe(fam.vip, 80, L4Proto::Tcp);
    service(&mut fx.lb, f, 9, &[1]);
    let dst = |fx: &Fx, sport: u16| {
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &tcp(sport, 80, SYN)),
        );
        assert_eq!(out.verdict, OK);
        parse(&out.packet).dst
    };
    let mut maglev: aya::maps::HashMap<_, LutKey, LutChunk> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(
            aya::maps::MapData::from_pin(fx.lb.pin_dir().join(MAP_MAGLEV)).unwrap(),
        ))
        .unwrap();
    let keys = |m: &aya::maps::HashMap<_, LutKey, LutChunk>| {
        let mut k: Vec<(u32, u32)> = m
            .keys()
            .map(|k| k.unwrap())
            .map(|k| (k.svc_id, k.chunk))
            .collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys(&maglev), [(9, 0)], "generation 0, one chunk");
    // Half a table of backend 2 under the other generation, as a writer would leave it.
    let mut bytes = Vec::new();
    lut(&[2]).encode_into(&mut bytes);
    let mut v = LutChunk {
        bytes: [0; LUT_BYTES],
    };
    v.bytes[..bytes.len().min(LUT_BYTES)].copy_from_slice(&bytes[..bytes.len().min(LUT_BYTES)]);
    maglev
        .insert(
            LutKey {
                svc_id: 9,
                chunk: LUT_ALT,
            },
            v,
            0,
        )
        .unwrap();
    for sport in 30000..30050 {
        assert_eq!(dst(&fx, sport), a, "the table in use is whole");
    }
    // The switch: new flows follow the new table, the old generation is gone.
    service(&mut fx.lb, f, 9, &[2]);
    for sport in 31000..31050 {
        assert_eq!(dst(&fx, sport), b, "the new table");
    }
    assert_eq!(keys(&maglev), [(9, LUT_ALT)]);
    // And back to generation 0.
    service(&mut fx.lb, f, 9, &[1]);
    assert_eq!(dst(&fx, 32000), a);
    assert_eq!(keys(&maglev), [(9, 0)]);
    let s = fx.lb.services().unwrap();
    assert_eq!(s[0].backends, [(BackendId(1), M)]);
}

/// An existing flow keeps its backend when the table changes; new flows
/// follow the new table. Maglev slots spread flows over every backend, the
/// same way for two independent instances with the same seed (two nodes).
#[test]
fn conntrack_keeps_backend_and_maglev_spreads() {
    let mut fx = fixture();
    let fam = v4();
    let mut by_addr = BTreeMap::new();
    for id in 1..=3u32 {
        let a = IpAddr::V4(Ipv4Addr::new(10, 244, 0, u8::try_from(id).unwrap()));
        backend(&mut fx.lb, id, a, 8080, L4Proto::Tcp, true);
        by_addr.insert(a, id);
    }
    let f = fe(fam.vip, 80, L4Proto::Tcp);
    service(&mut fx.lb, f, 7, &[1, 2, 3]);
    let mut hits = BTreeMap::<u32, u32>::new();
    let mut chosen = Vec::new();
    for sport in 40000..40300u16 {
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &tcp(sport, 80, SYN)),
        );
        let b = backend_of(&out.packet, &by_addr);
        *hits.entry(b).or_default() += 1;
        chosen.push(b);
    }
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.values().all(|n| *n >= 50), "{hits:?}");

    // Only backend 3 in the table now: tracked flows stay where they were.
    service(&mut fx.lb, f, 7, &[3]);
    for (i, sport) in (40000..40300u16).enumerate() {
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &tcp(sport, 80, ACK)),
        );
        assert_eq!(
            backend_of(&out.packet, &by_addr),
            chosen[i],
            "flow {sport} moved"
        );
    }
    let out = run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client2, fam.vip, &tcp(50000, 80, SYN)),
    );
    assert_eq!(
        backend_of(&out.packet, &by_addr),
        3,
        "new flows follow the table"
    );

    // A second node (own maps, same seed and table) picks the same backends.
    let dir2 = PinDir::new();
    let mut other = ServiceLb::open_or_create(dir2.path(), &small()).unwrap();
    for (a, id) in &by_addr {
        backend(&mut other, *id, *a, 8080, L4Proto::Tcp, true);
    }
    service(&mut other, f, 7, &[1, 2, 3]);
    for (i, sport) in (40000..40300u16).enumerate() {
        let out = run(
            &other,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &tcp(sport, 80, SYN)),
        );
        assert_eq!(backend_of(&out.packet, &by_addr), chosen[i]);
    }
    other.uninstall().unwrap();
}

/// ClientIP affinity: every flow of a client goes to one backend;
/// without it (control) the same flows spread.
#[test]
fn affinity_pins_a_client_to_one_backend() {
    let mut fx = fixture();
    let fam = v6();
    let mut by_addr = BTreeMap::new();
    for id in 1..=3u32 {
        let a = IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x244,
            0,
            0,
            0,
            0,
            0,
            u16::try_from(id).unwrap(),
        ));
        backend(&mut fx.lb, id, a, 8080, L4Proto::Tcp, true);
        by_addr.insert(a, id);
    }
    let table = lut(&[1, 2, 3]);
    let with = fe(fam.vip, 80, L4Proto::Tcp);
    let without = fe(fam.vip, 81, L4Proto::Tcp);
    let entry = |id, aff| ServiceEntry {
        id,
        local_only: false,
        affinity_timeout: aff,
        lut: &table,
        source_ranges: &[],
    };
    fx.lb
        .upsert_service(&with, &entry(1, Some(Duration::from_secs(10800))))
        .unwrap();
    fx.lb.upsert_service(&without, &entry(2, None)).unwrap();
    for (port, expect_one) in [(80u16, true), (81, false)] {
        let mut seen = std::collections::BTreeSet::new();
        for sport in 40000..40100u16 {
            let out = run(
                &fx.lb,
                LbHook::Ingress,
                &frame(fam.client, fam.vip, &tcp(sport, port, SYN)),
            );
            seen.insert(backend_of(&out.packet, &by_addr));
        }
        assert_eq!(seen.len() == 1, expect_one, "port {port}: {seen:?}");
    }
    assert_eq!(
        fx.lb.services().unwrap()[0].affinity_timeout,
        Some(Duration::from_secs(10800))
    );
    // Deleted and recreated with the same id and another table: the old
    // affinity is gone with the service, the client follows the table.
    let out = run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(41000, 80, SYN)),
    );
    let pinned = backend_of(&out.packet, &by_addr);
    let other = if pinned == 1 { 2 } else { 1 };
    fx.lb.delete_service(&with).unwrap();
    let table = lut(&[other]);
    let entry = ServiceEntry {
        lut: &table,
        ..entry(1, Some(Duration::from_secs(10800)))
    };
    fx.lb.upsert_service(&with, &entry).unwrap();
    let out = run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(41001, 80, SYN)),
    );
    assert_eq!(backend_of(&out.packet, &by_addr), other);
}

/// loadBalancerSourceRanges: inside → DNAT, outside → dropped, counted.
#[test]
fn source_ranges_allow_and_deny() {
    let mut fx = fixture();
    for fam in FAMS.map(|f| f()) {
        let id = if fam.vip.is_ipv4() { 1 } else { 2 };
        backend(&mut fx.lb, id, fam.local, 8080, L4Proto::Tcp, true);
        let table = lut(&[id]);
        let range: IpNet =
            IpNet::new(fam.client, if fam.client.is_ipv4() { 32 } else { 128 }).unwrap();
        fx.lb
            .upsert_service(
                &fe(fam.vip, 80, L4Proto::Tcp),
                &ServiceEntry {
                    id,
                    local_only: false,
                    affinity_timeout: None,
                    lut: &table,
                    source_ranges: &[range],
                },
            )
            .unwrap();
        let ok = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &tcp(40000, 80, SYN)),
        );
        assert_eq!(ok.verdict, OK, "{fam:?}: allowed client");
        assert_eq!(parse(&ok.packet).dst, fam.local);
        let denied = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client2, fam.vip, &tcp(40000, 80, SYN)),
        );
        assert_eq!(denied.verdict, SHOT, "{fam:?}: other client");
    }
    assert_eq!(
        fx.lb.counters().unwrap().drops_of(DropReason::SourceRange),
        2
    );
    assert!(fx.lb.services().unwrap().iter().all(|s| s.source_ranges));
}

/// No backend: a TCP SYN gets an RST (RST|ACK, ack = seq + 1) from the
/// frontend, UDP an ICMP(v6) port unreachable quoting the datagram; both
/// sent back out of the device (redirect), every checksum right.
#[test]
fn no_backend_rejects_with_rst_or_port_unreachable() {
    let mut fx = fixture();
    for fam in FAMS.map(|f| f()) {
        service(
            &mut fx.lb,
            fe(fam.vip, 80, L4Proto::Tcp),
            1 + u32::from(fam.vip.is_ipv6()),
            &[],
        );
        service(
            &mut fx.lb,
            fe(fam.vip, 53, L4Proto::Udp),
            3 + u32::from(fam.vip.is_ipv6()),
            &[],
        );
        let syn = frame(fam.client, fam.vip, &tcp(40000, 80, SYN));
        let out = run(&fx.lb, LbHook::Ingress, &syn);
        assert_eq!(out.verdict, Verdict::Reply, "{fam:?}");
        let p = parse(&out.packet);
        assert_eq!(out.packet[..12], [CLIENT_MAC, NODE_MAC].concat());
        assert_eq!(
            (p.src, p.dst, p.sport, p.dport),
            (fam.vip, fam.client, 80, 40000)
        );
        assert_eq!((p.tcp_flags, p.seq, p.ack), (RST | ACK, 0, 1001));
        assert!(p.csum_ok, "{fam:?}: RST checksums");
        assert_eq!(
            out.packet.len(),
            14 + if fam.vip.is_ipv4() { 20 } else { 40 } + 20
        );

        // An ACK gets a bare RST with seq = its ack.
        let ack = frame(fam.client, fam.vip, &tcp(40001, 80, ACK));
        let p = parse(&run(&fx.lb, LbHook::Ingress, &ack).packet);
        assert_eq!((p.tcp_flags, p.seq), (RST, 5000));

        let dgram = frame(fam.client, fam.vip, &udp(40000, 53));
        let out = run(&fx.lb, LbHook::Ingress, &dgram);
        assert_eq!(out.verdict, Verdict::Reply);
        let p = parse(&out.packet);
        assert_eq!((p.src, p.dst), (fam.vip, fam.client));
        let want = if fam.vip.is_ipv4() { (3, 3) } else { (1, 4) };
        assert_eq!((p.icmp.0, p.icmp.1), want, "port unreachable");
        assert!(p.csum_ok, "{fam:?}: ICMP checksums");
        // The quote is the start of the datagram as the client sent it.
        assert_eq!(out.packet[p.l4_off + 8..], dgram[14..]);
    }
    let c = fx.lb.counters().unwrap();
    assert_eq!(c.drops_of(DropReason::NoBackend), 6);
    assert_eq!((c.events.rst_sent, c.events.icmp_sent), (4, 2));
}

/// A remote backend (externalTrafficPolicy Cluster): DNAT and SNAT to the
/// device address (the client's port kept: it is in the NAT range); the
/// backend's reply to that address:port is translated back to
/// frontend -> client at ingress. With Local (control), no SNAT.
#[test]
fn remote_backend_snat_and_reverse() {
    let mut fx = fixture();
    for fam in FAMS.map(|f| f()) {
        for proto in [L4Proto::Tcp, L4Proto::Udp] {
            let id = 1 + u32::from(fam.vip.is_ipv6()) * 2 + u32::from(proto == L4Proto::Udp);
            backend(&mut fx.lb, id, fam.remote, 8080, proto, false);
            service(&mut fx.lb, fe(fam.vip, 80, proto), id, &[id]);
            let l4 = l4_of(proto, 40000, 80);
            let out = run(&fx.lb, LbHook::Ingress, &frame(fam.client, fam.vip, &l4));
            assert_eq!(out.verdict, OK, "{fam:?} {proto:?}");
            let want = frame(
                fam.node,
                fam.remote,
                &with_sport(&with_dport(&l4, 8080), 40000),
            );
            assert_eq!(out.packet, want, "{fam:?} {proto:?}: DNAT + SNAT");

            let reply_l4 = match proto {
                L4Proto::Tcp => tcp(8080, 40000, SYN | ACK),
                L4Proto::Udp => udp(8080, 40000),
            };
            let reply = frame(fam.remote, fam.node, &reply_l4);
            let out = run(&fx.lb, LbHook::Ingress, &reply);
            assert_eq!(out.verdict, OK);
            let back = frame(fam.vip, fam.client, &with_sport(&reply_l4, 80));
            assert_eq!(out.packet, back, "{fam:?} {proto:?}: reverse SNAT + DNAT");
        }
    }
    let nat = fx.lb.nat_entries().unwrap();
    assert_eq!(nat.len(), 8, "two entries per flow");
    assert!(nat.iter().filter(|n| !n.egress).all(|n| n.svc_id != 0));

    // Local: the client's address is kept.
    let fam = v4();
    backend(&mut fx.lb, 9, fam.remote, 9090, L4Proto::Tcp, false);
    let table = lut(&[9]);
    let entry = ServiceEntry {
        id: 9,
        local_only: true,
        affinity_timeout: None,
        lut: &table,
        source_ranges: &[],
    };
    fx.lb
        .upsert_service(&fe(fam.vip, 90, L4Proto::Tcp), &entry)
        .unwrap();
    let out = run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(40000, 90, SYN)),
    );
    assert_eq!(parse(&out.packet).src, fam.client);
}

/// Masquerade at egress: pod -> outside gets the device address and a port
/// of the range (5555 is outside it: a random one), ICMP echo its
/// identifier; the replies are translated back at ingress. Destinations in
/// the non-masquerade CIDRs, sources outside the pod CIDRs and a disabled
/// family (controls) leave untouched.
#[test]
fn masquerade_and_reverse() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    for fam in FAMS.map(|f| f()) {
        for l4 in [
            tcp(5555, 443, SYN),
            udp(40000, 53),
            L4::Echo {
                id: 77,
                seq: 1,
                reply: false,
            },
        ] {
            let out = run(&fx.lb, LbHook::Egress, &frame(fam.pod, fam.outside, &l4));
            assert_eq!(out.verdict, OK, "{fam:?} {l4:?}");
            let p = parse(&out.packet);
            assert_eq!(p.src, fam.node);
            assert!(p.csum_ok, "{fam:?} {l4:?}");
            let port = sent_port(&l4, &p);
            match l4 {
                L4::Udp { .. } => assert_eq!(port, 40000, "a free port of the range is kept"),
                L4::Tcp { .. } => assert_eq!(port, 5555, "a free port outside it too"),
                // A privileged one (here an echo identifier) goes into the range.
                _ => assert!(port >= 32768, "{l4:?}: {port}"),
            }
            assert_eq!(
                out.packet,
                frame(fam.node, fam.outside, &with_sport(&l4, port)),
                "{fam:?} {l4:?}"
            );
            let reply_l4 = answer_to(&l4, port);
            let out = run(
                &fx.lb,
                LbHook::Ingress,
                &frame(fam.outside, fam.node, &reply_l4),
            );
            assert_eq!(out.verdict, OK);
            let orig = source_port(&l4);
            assert_eq!(
                out.packet,
                frame(fam.outside, fam.pod, &with_dport(&reply_l4, orig)),
                "{fam:?} {l4:?}: reply"
            );
        }
        let l4 = tcp(5556, 443, SYN);
        let inside = if fam.vip.is_ipv4() {
            ip("10.9.9.9")
        } else {
            ip("fd00:9::9")
        };
        assert_untouched(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.pod, inside, &l4),
            "non-masq dst",
        );
        assert_untouched(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.client, fam.outside, &l4),
            "not a pod",
        );
    }
    set_masq(&mut fx.lb, false);
    let fam = v4();
    let f = frame(fam.pod, fam.outside, &tcp(6000, 443, SYN));
    assert_untouched(&fx.lb, LbHook::Egress, &f, "masquerade off");
    set_masq(&mut fx.lb, true);
    assert_eq!(
        run(&fx.lb, LbHook::Egress, &f).verdict,
        OK,
        "control: on again"
    );
}

/// A connection from outside straight to a pod: its replies keep the pod
/// address (not masqueraded).
#[test]
fn replies_of_inbound_connections_are_not_masqueraded() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    let fam = v4();
    let syn = frame(fam.outside, fam.pod, &tcp(33000, 8080, SYN));
    assert_untouched(&fx.lb, LbHook::Ingress, &syn, "inbound to a pod");
    let reply = frame(fam.pod, fam.outside, &tcp(8080, 33000, SYN | ACK));
    assert_untouched(&fx.lb, LbHook::Egress, &reply, "its reply");
    // Control: the same pod opening a connection is masqueraded.
    let out = run(
        &fx.lb,
        LbHook::Egress,
        &frame(fam.pod, fam.outside, &tcp(8081, 33000, SYN)),
    );
    assert_eq!(parse(&out.packet).src, fam.node);
}

/// Port collisions: three pods with the same source port to the same
/// destination, a range of two ports: the first keeps its port, the second
/// gets the other after a retry, the third finds none (counted drop).
#[test]
fn nat_port_collision_retry_and_exhaustion() {
    let mut fx = fixture_with(LbConfig {
        nat_port_min: 40000,
        nat_port_max: 40001,
        ..small()
    });
    set_masq(&mut fx.lb, true);
    let fam = v4();
    let mut ports = Vec::new();
    for pod in ["10.244.0.5", "10.244.0.6"] {
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(ip(pod), fam.outside, &tcp(40000, 443, SYN)),
        );
        assert_eq!(out.verdict, OK);
        ports.push(parse(&out.packet).sport);
    }
    assert_eq!(ports, [40000, 40001]);
    let before = fx.lb.counters().unwrap();
    assert!(before.events.nat_retries >= 1);
    assert_eq!(before.drops_of(DropReason::NatExhausted), 0);
    let out = run(
        &fx.lb,
        LbHook::Egress,
        &frame(ip("10.244.0.7"), fam.outside, &tcp(40000, 443, SYN)),
    );
    assert_eq!(out.verdict, SHOT);
    let after = fx.lb.counters().unwrap();
    assert_eq!(after.drops_of(DropReason::NatExhausted), 1);
    assert_eq!(
        after.events.nat_retries - before.events.nat_retries,
        u64::from(NAT_RETRIES)
    );
    // The existing flows keep their mappings.
    let out = run(
        &fx.lb,
        LbHook::Egress,
        &frame(ip("10.244.0.6"), fam.outside, &tcp(40000, 443, ACK)),
    );
    assert_eq!(parse(&out.packet).sport, 40001);
    // Past the SYN timeout (GC), the first flow's port is free again; the
    // second flow, established by its ACK, keeps both halves (the forward
    // packet refreshed the reverse).
    let nat = fx.lb.nat_entries().unwrap();
    let st = fx
        .lb
        .gc(datapath::sys::monotonic_ns() + 120 * 1_000_000_000)
        .unwrap();
    assert_eq!(st.nat_deleted, 2, "{nat:#?}");
    let reply = frame(fam.outside, fam.node, &tcp(443, 40001, ACK));
    assert_eq!(
        parse(&run(&fx.lb, LbHook::Ingress, &reply).packet).dst,
        ip("10.244.0.6")
    );
    let out = run(
        &fx.lb,
        LbHook::Egress,
        &frame(ip("10.244.0.7"), fam.outside, &tcp(40000, 443, SYN)),
    );
    assert_eq!(parse(&out.packet).sport, 40000);
}

/// A flow keeps its own source port when it is free, outside the NAT range too (what keeps a
/// server's TIME_WAIT of the previous connection on that port one of the same flow's, whose
/// sequence numbers and timestamps the new SYN follows): moved into the range only when the
/// port is taken, or privileged. A reused tuple keeps its mapping, and replies reach each pod.
#[test]
fn a_free_source_port_is_kept_outside_the_range() {
    let mut fx = fixture_with(LbConfig {
        nat_port_min: 40000,
        nat_port_max: 40001,
        ..small()
    });
    set_masq(&mut fx.lb, true);
    let fam = v4();
    let out_port = |pod: &str, sport: u16, flags: u8| {
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(ip(pod), fam.outside, &tcp(sport, 443, flags)),
        );
        assert_eq!(out.verdict, OK, "{pod}:{sport}");
        let p = parse(&out.packet);
        assert_eq!(p.src, fam.node);
        assert!(p.csum_ok);
        p.sport
    };
    // Kept, below and above the range.
    assert_eq!(out_port("10.244.0.5", 5555, SYN), 5555);
    assert_eq!(out_port("10.244.0.5", 50000, SYN), 50000);
    let before = fx.lb.counters().unwrap().events.nat_retries;
    // Another pod with the same port to the same destination: moved into the range.
    let moved = out_port("10.244.0.6", 5555, SYN);
    assert!((40000..=40001).contains(&moved), "{moved}");
    assert!(fx.lb.counters().unwrap().events.nat_retries > before);
    // A privileged source port goes into the range (the other port of it).
    let privileged = out_port("10.244.0.7", 80, SYN);
    assert!((40000..=40001).contains(&privileged), "{privileged}");
    assert_ne!(privileged, moved);
    // The flows keep their mappings.
    assert_eq!(out_port("10.244.0.5", 5555, ACK), 5555);
    assert_eq!(out_port("10.244.0.6", 5555, ACK), moved);
    // Replies go back to their own pod and port.
    for (nport, pod, port) in [
        (5555, "10.244.0.5", 5555),
        (50000, "10.244.0.5", 50000),
        (moved, "10.244.0.6", 5555),
        (privileged, "10.244.0.7", 80),
    ] {
        let reply = frame(fam.outside, fam.node, &tcp(443, nport, SYN | ACK));
        let out = run(&fx.lb, LbHook::Ingress, &reply);
        assert_eq!(out.verdict, OK);
        let p = parse(&out.packet);
        assert_eq!((p.dst, p.dport), (ip(pod), port), "reply to {nport}");
        assert!(p.csum_ok);
    }
    assert_eq!(
        fx.lb.counters().unwrap().drops_of(DropReason::NatExhausted),
        0
    );
}

/// A closed flow's NAT port (FIN seen) goes to a new flow once the closed one has been quiet
/// for a second, as TIME_WAIT reuse does; not before (the new flow is refused while the old
/// one may still send its last ACKs), and a live flow's port never.
#[test]
fn a_closed_flows_port_is_taken_over_after_a_quiet_second() {
    let mut fx = fixture_with(LbConfig {
        nat_port_min: 40000,
        nat_port_max: 40000,
        ..small()
    });
    set_masq(&mut fx.lb, true);
    let fam = v4();
    let syn = |pod: &str| frame(ip(pod), fam.outside, &tcp(40000, 443, SYN));
    let out = run(&fx.lb, LbHook::Egress, &syn("10.244.0.5"));
    assert_eq!(parse(&out.packet).sport, 40000);
    // A live flow holds the only port: a second pod is refused (counted).
    assert_eq!(
        run(&fx.lb, LbHook::Egress, &syn("10.244.0.6")).verdict,
        SHOT
    );
    // The first flow closes; right away its port is still held ...
    let fin = frame(ip("10.244.0.5"), fam.outside, &tcp(40000, 443, FIN | ACK));
    assert_eq!(
        parse(&run(&fx.lb, LbHook::Egress, &fin).packet).sport,
        40000
    );
    assert_eq!(
        run(&fx.lb, LbHook::Egress, &syn("10.244.0.6")).verdict,
        SHOT
    );
    // ... and after a quiet second the new flow takes it over; replies reach the new pod.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(&fx.lb, LbHook::Egress, &syn("10.244.0.6"));
    assert_eq!(out.verdict, OK);
    assert_eq!(parse(&out.packet).sport, 40000);
    let reply = frame(fam.outside, fam.node, &tcp(443, 40000, SYN | ACK));
    assert_eq!(
        parse(&run(&fx.lb, LbHook::Ingress, &reply).packet).dst,
        ip("10.244.0.6")
    );
    assert_eq!(
        fx.lb.counters().unwrap().drops_of(DropReason::NatExhausted),
        2
    );
}
