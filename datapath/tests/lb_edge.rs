//! BPF_PROG_TEST_RUN tests of the load balancer's edges: fragments, IPv6
//! extension headers, malformed and truncated frames, backends removed
//! under live flows, ICMP errors in both directions, CT state timeouts and
//! GC, restart and uninstall. Needs root.
#![allow(clippy::unwrap_used)]

mod common;
mod lbfx;
mod lbpkt;

use datapath::Verdict;
use datapath::lb::*;
use lbfx::*;
use lbpkt::*;

const NS: u64 = 1_000_000_000;

/// An IPv4 frame turned into a fragment (MF set, fragment `offset` in
/// 8-byte units), header checksum fixed.
fn frag4(mut f: Vec<u8>, more: bool, offset: u16) -> Vec<u8> {
    let v = offset | if more { 0x2000 } else { 0 };
    f[20..22].copy_from_slice(&v.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = fold(csum_add(0, &f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn fragments_to_a_frontend_are_dropped_counted() {
    let mut fx = fixture();
    let (a, b) = (v4(), v6());
    for fam in [a, b] {
        let id = 1 + u32::from(fam.vip.is_ipv6());
        backend(&mut fx.lb, id, fam.local, 8080, L4Proto::Tcp, true);
        service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), id, &[id]);
    }
    let first = frag4(frame(a.client, a.vip, &tcp(40000, 80, SYN)), true, 0);
    let later = frag4(frame(a.client, a.vip, &tcp(40000, 80, SYN)), false, 185);
    // IPv6: a fragment header (first fragment, M set) before TCP.
    let mut f6 = frame_ext(b.client, b.vip, &[(44, 0)], &tcp(40000, 80, SYN));
    f6[54 + 3] = 1;
    for (what, f) in [("first", &first), ("later", &later), ("v6", &f6)] {
        let out = run(&fx.lb, LbHook::Ingress, f);
        assert_eq!(out.verdict, SHOT, "{what}");
    }
    assert_eq!(fx.lb.counters().unwrap().drops_of(DropReason::Fragment), 3);
    // Fragments to other addresses are none of our business.
    let other = frag4(frame(a.client, a.outside, &tcp(40000, 80, SYN)), true, 0);
    assert_untouched(&fx.lb, LbHook::Ingress, &other, "fragment elsewhere");
    // Control: the unfragmented packet is translated.
    let whole = frame(a.client, a.vip, &tcp(40000, 80, SYN));
    assert_eq!(run(&fx.lb, LbHook::Ingress, &whole).verdict, OK);
}

/// Hop-by-hop and destination options before TCP: translated at the right
/// offsets, extension headers kept. A routing header with segments left
/// (not the final destination) passes untouched.
#[test]
fn ipv6_extension_headers() {
    let mut fx = fixture();
    let fam = v6();
    backend(&mut fx.lb, 1, fam.local, 8080, L4Proto::Tcp, true);
    service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), 1, &[1]);
    let hdrs = [(0u8, 0u8), (60, 1), (43, 0)];
    let req = frame_ext(fam.client, fam.vip, &hdrs, &tcp(40000, 80, SYN));
    let out = run(&fx.lb, LbHook::Ingress, &req);
    assert_eq!(out.verdict, OK);
    assert_eq!(
        out.packet,
        frame_ext(fam.client, fam.local, &hdrs, &tcp(40000, 8080, SYN))
    );
    assert!(parse(&out.packet).csum_ok);
    let mut routed = frame_ext(fam.client, fam.vip, &[(43, 0)], &tcp(40001, 80, SYN));
    routed[54 + 3] = 1; // segments left
    assert_untouched(
        &fx.lb,
        LbHook::Ingress,
        &routed,
        "routing header in transit",
    );
}

/// Ethernet padding after a short IP packet is kept and not summed.
#[test]
fn padded_frames_are_translated() {
    let mut fx = fixture();
    let fam = v4();
    backend(&mut fx.lb, 1, fam.local, 8080, L4Proto::Udp, true);
    service(&mut fx.lb, fe(fam.vip, 53, L4Proto::Udp), 1, &[1]);
    let mut req = frame(fam.client, fam.vip, &udp(40000, 53));
    req.resize(60, 0);
    let out = run(&fx.lb, LbHook::Ingress, &req);
    let mut want = frame(fam.client, fam.local, &udp(40000, 8080));
    want.resize(60, 0);
    assert_eq!(out.packet, want);
}

/// Whether the IP packet in `f` is whole per its own length field.
fn complete(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x00]) => {
            f.len() >= 34 && f.len() >= 14 + usize::from(u16::from_be_bytes([f[16], f[17]]))
        }
        Some([0x86, 0xdd]) => {
            f.len() >= 54 && f.len() >= 54 + usize::from(u16::from_be_bytes([f[18], f[19]]))
        }
        _ => false,
    }
}

/// Every truncation of valid frames, and frames with broken headers, in
/// both programs: passed untouched, or dropped with a counted reason;
/// nothing else, never an error from the kernel beyond its own minimums.
#[test]
fn malformed_and_truncated_frames_pass_or_drop_counted() {
    let mut fx = fixture();
    for fam in [v4(), v6()] {
        let id = 1 + u32::from(fam.vip.is_ipv6()) * 2;
        backend(&mut fx.lb, id, fam.remote, 8080, L4Proto::Tcp, false);
        backend(&mut fx.lb, id + 1, fam.local, 8080, L4Proto::Udp, true);
        service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), id, &[id]);
        service(&mut fx.lb, fe(fam.vip, 53, L4Proto::Udp), id + 1, &[id + 1]);
    }
    set_masq(&mut fx.lb, true);
    let mut frames = Vec::new();
    for fam in [v4(), v6()] {
        frames.push(frame(fam.client, fam.vip, &tcp(40000, 80, SYN)));
        frames.push(frame(fam.client, fam.vip, &udp(40000, 53)));
        frames.push(frame(fam.pod, fam.outside, &tcp(5555, 443, SYN)));
        frames.push(frame(
            fam.pod,
            fam.outside,
            &L4::Echo {
                id: 9,
                seq: 1,
                reply: false,
            },
        ));
        let quote = ip_packet(fam.node, fam.outside, 64, &[], &tcp(40000, 443, SYN));
        let ty = if fam.vip.is_ipv4() { 3 } else { 1 };
        frames.push(frame(
            fam.outside,
            fam.node,
            &L4::Error {
                ty,
                code: 4,
                mtu: 1400,
                quote,
            },
        ));
    }
    frames.push(frame_ext(
        v6().client,
        v6().vip,
        &[(0, 0), (60, 1)],
        &tcp(40000, 80, SYN),
    ));
    let mut corpus = Vec::new();
    for f in &frames {
        for len in 0..f.len() {
            corpus.push(f[..len].to_vec());
        }
        // Broken IPv4/IPv6 headers.
        let mut bad = f.clone();
        bad[14] = if f[12] == 0x08 { 0x44 } else { 0x40 }; // IHL 4 / version 4 in v6
        corpus.push(bad);
        let mut bad = f.clone();
        bad[14] = if f[12] == 0x08 { 0x4f } else { 0x70 }; // IHL 15 / version 7
        corpus.push(bad);
        let mut bad = f.clone();
        bad[16..18].copy_from_slice(&[0xff, 0xff]); // length beyond the frame
        corpus.push(bad);
        let mut bad = f.clone();
        bad[16..18].copy_from_slice(&[0, 8]); // length shorter than the header
        corpus.push(bad);
        let mut bad = f.clone();
        if let Some(b) = bad.get_mut(14 + 20 + 12) {
            *b = 0x10; // TCP data offset 1 (v4 frames)
        }
        corpus.push(bad);
    }
    let mut runs = 0;
    for f in &corpus {
        for hook in [LbHook::Ingress, LbHook::Egress] {
            let before = fx.lb.counters().unwrap();
            let out = match fx.lb.test_run(hook, f) {
                Ok(o) => o,
                // The kernel refuses frames below its own minimum (more
                // than an Ethernet header; an IP header for IP) before the
                // program runs.
                Err(_)
                    if f.len() <= 14
                        || (f[12] == 0x08 && f.len() < 34)
                        || (f[12] == 0x86 && f.len() < 54) =>
                {
                    continue;
                }
                Err(e) => panic!("{f:02x?}: {e:?}"),
            };
            runs += 1;
            let after = fx.lb.counters().unwrap();
            let dropped: u64 = after.drops.iter().map(|d| d.1).sum::<u64>()
                - before.drops.iter().map(|d| d.1).sum::<u64>();
            match out.verdict {
                Verdict::Pass => assert_eq!(&out.packet, f, "untouched ({hook:?})"),
                v if v == SHOT => assert_eq!(dropped, 1, "{f:02x?}: drop counted ({hook:?})"),
                // Translated: only complete packets, in place.
                v if v == OK => {
                    assert!(complete(f), "{f:02x?} ({hook:?})");
                    assert_eq!(out.packet.len(), f.len());
                }
                v => panic!("{f:02x?}: {v:?} ({hook:?})"),
            }
        }
    }
    assert!(runs > 600, "{runs}");
    assert!(fx.lb.counters().unwrap().events.malformed_passed > 100);
}

/// A backend removed under live flows: its flows are reset (TCP RST, ICMP
/// unreachable for UDP) and forgotten, flows of other backends continue.
#[test]
fn removed_backend_resets_only_its_flows() {
    let mut fx = fixture();
    let fam = v4();
    for proto in [L4Proto::Tcp, L4Proto::Udp] {
        let base = if proto == L4Proto::Tcp { 1 } else { 11 };
        let port = if proto == L4Proto::Tcp { 80 } else { 53 };
        backend(&mut fx.lb, base, ip("10.244.0.1"), 8080, proto, true);
        backend(&mut fx.lb, base + 1, ip("10.244.0.2"), 8080, proto, true);
        service(
            &mut fx.lb,
            fe(fam.vip, port, proto),
            base,
            &[base, base + 1],
        );
        // One flow on each backend.
        let mut on = [None, None];
        for sport in 40000..40100u16 {
            let out = run(
                &fx.lb,
                LbHook::Ingress,
                &frame(fam.client, fam.vip, &l4_of(proto, sport, port)),
            );
            let i = usize::from(parse(&out.packet).dst == ip("10.244.0.2"));
            on[i].get_or_insert(sport);
        }
        let (gone, kept) = (on[0].unwrap(), on[1].unwrap());
        service(&mut fx.lb, fe(fam.vip, port, proto), base, &[base + 1]);
        fx.lb.delete_backend(BackendId(base)).unwrap();
        let next = |sport| match proto {
            L4Proto::Tcp => tcp(sport, port, ACK),
            L4Proto::Udp => udp(sport, port),
        };
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &next(gone)),
        );
        assert_eq!(out.verdict, Verdict::Reply, "{proto:?}: reset");
        let p = parse(&out.packet);
        assert_eq!(p.dst, fam.client);
        match proto {
            L4Proto::Tcp => assert_eq!(p.tcp_flags, RST),
            L4Proto::Udp => assert_eq!(p.icmp.0, 3),
        }
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &next(kept)),
        );
        assert_eq!(
            (out.verdict, parse(&out.packet).dst),
            (OK, ip("10.244.0.2")),
            "{proto:?}"
        );
        // The reset flow's entry is gone: its next packet is a new flow.
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &next(gone)),
        );
        assert_eq!(parse(&out.packet).dst, ip("10.244.0.2"));
    }
    assert_eq!(
        fx.lb.counters().unwrap().drops_of(DropReason::BackendGone),
        2
    );
}

/// ICMP errors about translated flows, both ways: outer address and the
/// quoted packet's addresses and ports are translated, the ICMP checksum
/// and the quoted IPv4 header checksum stay right.
#[test]
fn icmp_errors_are_translated_both_ways() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    for fam in [v4(), v6()] {
        let router = if fam.vip.is_ipv4() {
            ip("192.0.2.254")
        } else {
            ip("2001:db8::fe")
        };
        // Masqueraded pod flow; a router says "too big" to the node.
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.pod, fam.outside, &tcp(5555, 443, ACK)),
        );
        let nport = parse(&out.packet).sport;
        let quote = ip_packet(fam.node, fam.outside, 64, &[], &tcp(nport, 443, ACK));
        let err = frame(router, fam.node, &icmp_error(&fam, true, quote));
        let out = run(&fx.lb, LbHook::Ingress, &err);
        assert_eq!(out.verdict, OK, "{fam:?}");
        let (o, i) = (parse(&out.packet), icmp_quote_of(&out.packet));
        assert_eq!((o.src, o.dst), (router, fam.pod));
        assert_eq!(
            (i.src, i.sport, i.dst, i.dport),
            (fam.pod, 5555, fam.outside, 443)
        );
        assert!(o.csum_ok, "{fam:?}: outer checksums");
        if fam.vip.is_ipv4() {
            assert_eq!(
                fold(csum_add(0, &out.packet[o.l4_off + 8..o.l4_off + 28])),
                0,
                "inner IPv4 header"
            );
        }
        // The pod answers an outside packet with an error: node's address.
        let quote = ip_packet(fam.outside, fam.pod, 64, &[], &tcp(443, 5555, ACK));
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.pod, fam.outside, &icmp_error(&fam, false, quote)),
        );
        assert_eq!(out.verdict, OK);
        let (o, i) = (parse(&out.packet), icmp_quote_of(&out.packet));
        assert_eq!((o.src, i.dst, i.dport), (fam.node, fam.node, nport));
        assert!(o.csum_ok);

        // Local backend of a service: its error about the client's packet
        // comes from the frontend; a router's error about a reply reaches
        // the backend.
        let id = 1 + u32::from(fam.vip.is_ipv6());
        backend(&mut fx.lb, id, fam.local, 8080, L4Proto::Udp, true);
        service(&mut fx.lb, fe(fam.vip, 53, L4Proto::Udp), id, &[id]);
        run(
            &fx.lb,
            LbHook::Ingress,
            &frame(fam.client, fam.vip, &udp(40000, 53)),
        );
        let quote = ip_packet(fam.client, fam.local, 64, &[], &udp(40000, 8080));
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.local, fam.client, &icmp_error(&fam, false, quote)),
        );
        assert_eq!(out.verdict, OK);
        let (o, i) = (parse(&out.packet), icmp_quote_of(&out.packet));
        assert_eq!((o.src, o.dst), (fam.vip, fam.client));
        assert_eq!(
            (i.src, i.sport, i.dst, i.dport),
            (fam.client, 40000, fam.vip, 53)
        );
        assert!(o.csum_ok);
        let quote = ip_packet(fam.vip, fam.client, 64, &[], &udp(53, 40000));
        let out = run(
            &fx.lb,
            LbHook::Ingress,
            &frame(router, fam.vip, &icmp_error(&fam, true, quote)),
        );
        assert_eq!(out.verdict, OK);
        let (o, i) = (parse(&out.packet), icmp_quote_of(&out.packet));
        assert_eq!((o.src, o.dst), (router, fam.local));
        assert_eq!(
            (i.src, i.sport, i.dst, i.dport),
            (fam.local, 8080, fam.client, 40000)
        );
        assert!(o.csum_ok);
        // Control: an error about an unknown flow is untouched.
        let quote = ip_packet(fam.node, fam.outside, 64, &[], &tcp(1234, 443, ACK));
        let f = frame(router, fam.node, &icmp_error(&fam, true, quote));
        assert_untouched(&fx.lb, LbHook::Ingress, &f, "unknown flow");
    }
    assert_eq!(fx.lb.counters().unwrap().events.icmp_errors, 8);
}

fn expiry_of(lb: &ServiceLb, sport: u16) -> (u8, u64) {
    let e = lb
        .ct_entries()
        .unwrap()
        .into_iter()
        .find(|e| e.dir == CtDir::Service && e.tuple.sport == sport)
        .unwrap();
    (e.state, e.expires_ns)
}

/// TCP states and their lifetimes (SYN 60 s, established 21600 s, FIN/RST
/// 10 s; UDP 60 s), and GC deleting exactly the expired entries.
#[test]
fn ct_state_timeouts_and_gc() {
    let mut fx = fixture();
    let fam = v4();
    backend(&mut fx.lb, 1, fam.local, 8080, L4Proto::Tcp, true);
    backend(&mut fx.lb, 2, fam.local, 8053, L4Proto::Udp, true);
    service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), 1, &[1]);
    service(&mut fx.lb, fe(fam.vip, 53, L4Proto::Udp), 2, &[2]);
    let cases: [(u16, &[u8], u8, u64); 3] = [
        (40000, &[SYN], 0, 60),
        (40001, &[SYN, ACK], 1, 21600),
        (40002, &[SYN, ACK, FIN | ACK], 2, 10),
    ];
    for (sport, flags, state, life) in cases {
        let t0 = datapath::sys::monotonic_ns();
        for f in flags {
            run(
                &fx.lb,
                LbHook::Ingress,
                &frame(fam.client, fam.vip, &tcp(sport, 80, *f)),
            );
        }
        let t1 = datapath::sys::monotonic_ns();
        let (st, exp) = expiry_of(&fx.lb, sport);
        assert_eq!(st, state, "{sport}");
        assert!(
            exp >= t0 + life * NS && exp <= t1 + life * NS,
            "{sport}: {exp} {t0} {t1}"
        );
    }
    run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &udp(40003, 53)),
    );
    assert_eq!(expiry_of(&fx.lb, 40003).0, 3);
    // 4 service entries + 4 reply entries.
    assert_eq!(fx.lb.counters().unwrap().ct_entries, 8);
    let now = datapath::sys::monotonic_ns();
    let st = fx.lb.gc(now).unwrap();
    assert_eq!(
        (st.ct_scanned, st.ct_deleted),
        (8, 0),
        "nothing expired yet"
    );
    let st = fx.lb.gc(now + 61 * NS).unwrap();
    // SYN, FIN and UDP flows' entries (both directions); established stays.
    assert_eq!(st.ct_deleted, 6);
    assert_eq!(fx.lb.ct_entries().unwrap().len(), 2);
    let st = fx.lb.gc(now + 21601 * NS).unwrap();
    assert_eq!(st.ct_deleted, 2);
}

/// Restart: a new handle on the same pins sees the services, backends,
/// flows and counters, and keeps translating tracked flows the same way;
/// uninstall removes the folder.
#[test]
fn state_survives_restart_and_uninstall_removes_it() {
    let mut fx = fixture();
    let fam = v4();
    backend(&mut fx.lb, 5, fam.remote, 8080, L4Proto::Tcp, false);
    service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), 42, &[5]);
    let first = run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(40000, 80, SYN)),
    );
    let services = fx.lb.services().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].id, 42);
    assert_eq!(services[0].backends, [(BackendId(5), M)]);
    let root = fx.lb.pin_root().to_path_buf();
    let again = ServiceLb::open_or_create(&root, &small()).unwrap();
    assert_eq!(again.services().unwrap(), services);
    assert_eq!(again.backends().unwrap().len(), 1);
    assert_eq!(
        again.counters().unwrap().services,
        [(
            42,
            ServiceCounters {
                packets: 1,
                bytes: first.packet.len() as u64
            }
        )]
    );
    let next = run(
        &again,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(40000, 80, ACK)),
    );
    assert_eq!(
        parse(&next.packet).sport,
        parse(&first.packet).sport,
        "same NAT mapping"
    );
    let dir = again.pin_dir().to_path_buf();
    for m in ALL_MAPS {
        assert!(dir.join(m).exists(), "{m}");
    }
    // Deleting the frontend removes its marker, LUT and counters.
    let mut again = again;
    again
        .delete_service(&fe(fam.vip, 80, L4Proto::Tcp))
        .unwrap();
    assert!(again.services().unwrap().is_empty());
    let frag = {
        let mut f = frame(fam.client, fam.vip, &tcp(40000, 80, SYN));
        f[20] = 0x20;
        f[24..26].copy_from_slice(&[0, 0]);
        let c = fold(csum_add(0, &f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    assert_untouched(&again, LbHook::Ingress, &frag, "no marker left");
    again.uninstall().unwrap();
    assert!(!dir.exists());
}

/// A table naming a backend that is not written, or one of the other family, is refused;
/// the handle knows the backends written through it, deleted through it, and (after a
/// restart) those the pinned map holds. Positive controls: the same frontend with a written
/// backend of its family is accepted, before and after the restart.
#[test]
fn a_table_of_unwritten_or_other_family_backends_is_refused() {
    let mut fx = fixture();
    let (f4, f6) = (v4(), v6());
    let front = fe(f4.vip, 80, L4Proto::Tcp);
    let upsert = |lb: &mut ServiceLb, ids: &[u32]| {
        let table = lut(ids);
        lb.upsert_service(
            &front,
            &ServiceEntry {
                id: 7,
                local_only: false,
                affinity_timeout: None,
                lut: &table,
                source_ranges: &[],
            },
        )
    };
    let refused = |r: Result<(), datapath::Error>, why: &str| match r {
        Err(datapath::Error::Invalid { what, reason }) => {
            assert_eq!((what, reason.as_str()), ("Maglev table", why));
        }
        other => panic!("{why}: {other:?}"),
    };
    backend(&mut fx.lb, 1, f4.remote, 8080, L4Proto::Tcp, false);
    backend(&mut fx.lb, 3, f6.remote, 8080, L4Proto::Tcp, false);
    refused(upsert(&mut fx.lb, &[2]), "backend 2 is not written");
    refused(
        upsert(&mut fx.lb, &[1, 3]),
        "backend 3 is of the other address family",
    );
    upsert(&mut fx.lb, &[1]).unwrap();
    fx.lb.delete_backend(BackendId(1)).unwrap();
    refused(upsert(&mut fx.lb, &[1]), "backend 1 is not written");
    backend(&mut fx.lb, 4, f4.remote, 8081, L4Proto::Tcp, false);
    let root = fx.lb.pin_root().to_path_buf();
    let mut again = ServiceLb::open_or_create(&root, &small()).unwrap();
    upsert(&mut again, &[4]).unwrap();
    refused(upsert(&mut again, &[1]), "backend 1 is not written");
    refused(
        upsert(&mut again, &[4, 3]),
        "backend 3 is of the other address family",
    );
}

/// A reader opened from the pins alone (what the daemon's admin API and garbage collector
/// use beside the controller) sees the flows and counters the programs write and collects
/// their garbage; a pin root without the load balancer is an error.
#[test]
fn a_reader_from_the_pins_lists_counts_and_collects() {
    let mut fx = fixture();
    let fam = v4();
    backend(&mut fx.lb, 1, fam.local, 8080, L4Proto::Tcp, true);
    service(&mut fx.lb, fe(fam.vip, 80, L4Proto::Tcp), 1, &[1]);
    run(
        &fx.lb,
        LbHook::Ingress,
        &frame(fam.client, fam.vip, &tcp(40000, 80, SYN)),
    );
    let mut r = LbReader::open(fx.lb.pin_root()).unwrap();
    let flows = fx.lb.ct_entries().unwrap();
    assert_eq!(flows.len(), 2, "the service entry and its reply entry");
    assert_eq!(r.ct_entries().unwrap(), flows);
    let c = r.counters().unwrap();
    assert_eq!(c.ct_entries, 2);
    assert_eq!(
        c.services
            .iter()
            .find(|(id, _)| *id == 1)
            .unwrap()
            .1
            .packets,
        1
    );
    let st = r.gc(datapath::sys::monotonic_ns() + 61 * NS).unwrap();
    assert_eq!(st.ct_deleted, 2);
    assert!(
        fx.lb.ct_entries().unwrap().is_empty(),
        "deleted for the owner too"
    );
    assert!(LbReader::open(fx.lb.pin_root().join("nothing-here")).is_err());
}
