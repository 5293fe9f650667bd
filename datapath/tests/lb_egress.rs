//! BPF_PROG_TEST_RUN tests of the egress gateway (`bpf/lb_egw.h`) on both load balancer
//! programs: the source node's tunnel redirect, the gateway's SNAT to the egress address and
//! its reverse (replies tunnelled back to a remote pod's node), excluded CIDRs, no gateway,
//! unknown egress address, fragments, replies of inbound connections, IPv4 and IPv6, and
//! every truncation of a policy frame. Needs root.
#![allow(clippy::unwrap_used)]

mod common;
mod lbfx;
mod lbpkt;

use std::net::IpAddr;

use datapath::Verdict;
use datapath::lb::*;
use ipnet::IpNet;
use lbfx::*;
use lbpkt::*;

const TUNNEL_MAC: [u8; 6] = [0x0a, 0xce, 0x00, 0x00, 0x00, 0x01];
/// The fixture's namespace has only lo; the redirect is not carried out by a test run, so any
/// ifindex does.
const TUNNEL: EgressTunnel = EgressTunnel {
    ifindex: LO,
    vni: 2,
    mac: TUNNEL_MAC,
};

/// Per family: the policy's destination CIDR, an excluded CIDR inside it with an address in
/// it, the gateway node, the egress address.
struct Egw {
    dst: IpNet,
    excluded: IpNet,
    in_excluded: IpAddr,
    gateway: IpAddr,
    egress_ip: IpAddr,
}

fn egw(fam: &Fam) -> Egw {
    if fam.node.is_ipv4() {
        Egw {
            dst: "203.0.113.0/24".parse().unwrap(),
            excluded: "203.0.113.128/25".parse().unwrap(),
            in_excluded: ip("203.0.113.200"),
            gateway: ip("10.0.0.3"),
            egress_ip: ip("192.0.2.99"),
        }
    } else {
        Egw {
            dst: "2001:db8:f::/48".parse().unwrap(),
            excluded: "2001:db8:f:1::/64".parse().unwrap(),
            in_excluded: ip("2001:db8:f:1::9"),
            gateway: ip("fd00::3"),
            egress_ip: ip("2001:db8:e::99"),
        }
    }
}

fn rule(source: IpAddr, destination: IpNet, action: EgressAction) -> EgressRule {
    EgressRule {
        source,
        destination,
        action,
    }
}

/// A gateway node (masquerade and the tunnel on) whose map SNATs each family's remote pod to
/// the egress address, replies back to `gateway` (standing in for the pod's node).
fn gateway_for_remote_pods() -> Fx {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    fx.lb.set_egress_tunnel(Some(TUNNEL)).unwrap();
    let rules: Vec<EgressRule> = FAMS
        .map(|f| f())
        .iter()
        .map(|fam| {
            let g = egw(fam);
            rule(
                fam.remote,
                g.dst,
                EgressAction::Snat {
                    egress_ip: Some(g.egress_ip),
                    reply_to: Some(g.gateway),
                },
            )
        })
        .collect();
    fx.lb.sync_egress(&rules).unwrap();
    fx
}

/// The frame with its destination MAC replaced by the tunnel device's.
fn to_tunnel(f: &[u8]) -> Vec<u8> {
    let mut v = f.to_vec();
    v[..6].copy_from_slice(&TUNNEL_MAC);
    v
}

/// Source node: a selected pod's packets to the destination go to the gateway through the
/// tunnel, unchanged but for the inner destination MAC; an excluded CIDR and a pod the policy
/// does not select are masqueraded as before; with the gateway switched off nothing is
/// tunnelled.
#[test]
fn source_node_tunnels_selected_pods_to_the_gateway() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    fx.lb.set_egress_tunnel(Some(TUNNEL)).unwrap();
    let mut rules = Vec::new();
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        rules.push(rule(
            fam.local,
            g.dst,
            EgressAction::Tunnel { gateway: g.gateway },
        ));
        rules.push(rule(fam.local, g.excluded, EgressAction::Excluded));
    }
    let st = fx.lb.sync_egress(&rules).unwrap();
    assert_eq!(st.written, 4);
    assert_eq!(fx.lb.sync_egress(&rules).unwrap(), EgressSync::default());

    let mut tunnelled = 0;
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        for l4 in [
            tcp(41000, 443, SYN),
            udp(41001, 53),
            L4::Echo {
                id: 9,
                seq: 1,
                reply: false,
            },
        ] {
            let f = frame(fam.local, fam.outside, &l4);
            let out = run(&fx.lb, LbHook::Egress, &f);
            assert_eq!(out.verdict, Verdict::Reply, "{fam:?} {l4:?}: redirected");
            assert_eq!(out.packet, to_tunnel(&f), "{fam:?} {l4:?}");
            tunnelled += 1;
            // The excluded CIDR and another pod: ordinary masquerade (the positive control
            // that masquerade still works beside the policy).
            for (src, dst, what) in [
                (fam.local, g.in_excluded, "excluded"),
                (fam.pod, fam.outside, "not selected"),
            ] {
                let out = run(&fx.lb, LbHook::Egress, &frame(src, dst, &l4));
                assert_eq!(out.verdict, OK, "{what} {l4:?}");
                assert_eq!(parse(&out.packet).src, fam.node, "{what} {l4:?}");
            }
        }
    }
    assert_eq!(fx.lb.egress_counters().unwrap().tunnelled, tunnelled);
    assert_eq!(fx.lb.egress_rules().unwrap().len(), 4);

    // Switched off: the same packet is masqueraded instead.
    fx.lb.set_egress_tunnel(None).unwrap();
    let fam = v4();
    let out = run(
        &fx.lb,
        LbHook::Egress,
        &frame(fam.local, fam.outside, &tcp(41002, 443, SYN)),
    );
    assert_eq!(out.verdict, OK);
    assert_eq!(parse(&out.packet).src, fam.node);
    assert_eq!(fx.lb.egress_counters().unwrap().tunnelled, tunnelled);
}

/// Gateway node: a remote pod's packet (decapsulated, now leaving) is translated to the
/// egress address; the reply is translated back and tunnelled to the pod's node. A pod on the
/// gateway itself is translated too and its reply forwarded normally.
#[test]
fn gateway_snats_to_the_egress_address_and_tunnels_replies_back() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    fx.lb.set_egress_tunnel(Some(TUNNEL)).unwrap();
    let mut rules = Vec::new();
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        let pod_node = if fam.node.is_ipv4() {
            ip("10.0.0.2")
        } else {
            ip("fd00::2")
        };
        rules.push(rule(
            fam.remote,
            g.dst,
            EgressAction::Snat {
                egress_ip: Some(g.egress_ip),
                reply_to: Some(pod_node),
            },
        ));
        rules.push(rule(
            fam.local,
            g.dst,
            EgressAction::Snat {
                egress_ip: Some(g.egress_ip),
                reply_to: None,
            },
        ));
    }
    fx.lb.sync_egress(&rules).unwrap();

    let mut n = 0;
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        for (pod, remote) in [(fam.remote, true), (fam.local, false)] {
            for l4 in [
                tcp(42000, 443, SYN),
                udp(42001, 53),
                L4::Echo {
                    id: 11,
                    seq: 1,
                    reply: false,
                },
            ] {
                let out = run(&fx.lb, LbHook::Egress, &frame(pod, fam.outside, &l4));
                assert_eq!(out.verdict, OK, "{fam:?} {l4:?}");
                let p = parse(&out.packet);
                assert_eq!(
                    p.src, g.egress_ip,
                    "{l4:?}: the egress address, not the node's"
                );
                assert!(p.csum_ok, "{l4:?}");
                n += 1;
                let port = sent_port(&l4, &p);
                let reply_l4 = answer_to(&l4, port);
                let reply = frame(fam.outside, g.egress_ip, &reply_l4);
                let out = run(&fx.lb, LbHook::Ingress, &reply);
                let orig = source_port(&l4);
                let back = frame(fam.outside, pod, &with_dport(&reply_l4, orig));
                if remote {
                    assert_eq!(out.verdict, Verdict::Reply, "{l4:?}: tunnelled back");
                    assert_eq!(out.packet, to_tunnel(&back), "{l4:?}");
                } else {
                    // Forwarded by the FIB (here: no route in the test namespace, so the
                    // stack), not tunnelled.
                    assert_eq!(out.verdict, OK, "{l4:?}");
                    assert_eq!(parse(&out.packet).dst, pod);
                    assert_eq!(&out.packet[..6], &back[..6], "{l4:?}: MAC untouched");
                }
            }
        }
    }
    let c = fx.lb.egress_counters().unwrap();
    assert_eq!(c.snat, n);
    assert_eq!(c.reply_tunnelled, n / 2);
    assert_eq!(c.tunnelled, 0);
}

/// ICMP errors about a remote pod's egress flow at the gateway: a router's "too big" to the
/// egress address is translated (outer destination and the quote back to the pod) and
/// tunnelled to the pod's node, so path MTU discovery works through the gateway; the pod's own
/// error about a reply leaves from the egress address.
#[test]
fn icmp_errors_about_egress_flows_both_ways() {
    let fx = gateway_for_remote_pods();
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        let router = if fam.node.is_ipv4() {
            ip("192.0.2.254")
        } else {
            ip("2001:db8::fe")
        };
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.remote, fam.outside, &tcp(45000, 443, ACK)),
        );
        assert_eq!(parse(&out.packet).src, g.egress_ip);
        let nport = parse(&out.packet).sport;
        let quote = ip_packet(g.egress_ip, fam.outside, 64, &[], &tcp(nport, 443, ACK));
        let err = frame(router, g.egress_ip, &icmp_error(&fam, true, quote));
        let out = run(&fx.lb, LbHook::Ingress, &err);
        assert_eq!(out.verdict, Verdict::Reply, "{fam:?}: tunnelled");
        assert_eq!(&out.packet[..6], &TUNNEL_MAC);
        let (o, i) = (parse(&out.packet), icmp_quote_of(&out.packet));
        assert_eq!((o.src, o.dst), (router, fam.remote));
        assert_eq!(
            (i.src, i.sport, i.dst, i.dport),
            (fam.remote, 45000, fam.outside, 443)
        );
        assert!(o.csum_ok, "{fam:?}");

        // The pod answers a reply with an error: it leaves from the egress address.
        let quote = ip_packet(fam.outside, fam.remote, 64, &[], &tcp(443, 45000, ACK));
        let out = run(
            &fx.lb,
            LbHook::Egress,
            &frame(fam.remote, fam.outside, &icmp_error(&fam, false, quote)),
        );
        assert_eq!(out.verdict, OK);
        let (o, i) = (parse(&out.packet), icmp_quote_of(&out.packet));
        assert_eq!((o.src, i.dst, i.dport), (g.egress_ip, g.egress_ip, nport));
        assert!(o.csum_ok);
    }
}

/// The tunnel device's program (gateway and pod's node): a decapsulated remote pod's packet
/// is translated to the egress address and forwarded; a decapsulated reply to a pod, and a
/// packet no entry names, are forwarded untouched. Switching the gateway off detaches it.
#[test]
fn tunnel_program_snats_at_the_gateway_and_forwards_replies() {
    let mut fx = gateway_for_remote_pods();
    assert_eq!(fx.lb.tunnel_attached().unwrap(), [LO]);
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        // In the test namespace the FIB has no route: the translated packet goes to the stack.
        let out = run(
            &fx.lb,
            LbHook::Tunnel,
            &frame(fam.remote, fam.outside, &tcp(46000, 443, SYN)),
        );
        assert_eq!(out.verdict, OK, "{fam:?}");
        let p = parse(&out.packet);
        assert_eq!(p.src, g.egress_ip, "{fam:?}");
        assert!(p.csum_ok);
        for f in [
            frame(fam.outside, fam.remote, &tcp(443, 46000, SYN | ACK)),
            frame(fam.local, fam.outside, &tcp(46001, 443, SYN)),
        ] {
            let out = run(&fx.lb, LbHook::Tunnel, &f);
            assert_eq!(out.verdict, OK);
            assert_eq!(out.packet, f, "untouched");
        }
    }
    assert_eq!(fx.lb.egress_counters().unwrap().snat, 2);
    fx.lb.set_egress_tunnel(None).unwrap();
    assert!(fx.lb.tunnel_attached().unwrap().is_empty());
}

/// No gateway: dropped, counted. Gateway here without an egress address: dropped, counted.
/// Fragments at the gateway: dropped, counted (the NAT needs ports). The drops are errors
/// the operator sees, never a leak of the node's address.
#[test]
fn drops_are_counted_by_reason() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    fx.lb.set_egress_tunnel(Some(TUNNEL)).unwrap();
    let a = v4();
    let g = egw(&a);
    fx.lb
        .sync_egress(&[
            rule(a.local, g.dst, EgressAction::NoGateway),
            rule(
                a.pod,
                g.dst,
                EgressAction::Snat {
                    egress_ip: None,
                    reply_to: None,
                },
            ),
            rule(
                a.remote,
                g.dst,
                EgressAction::Snat {
                    egress_ip: Some(g.egress_ip),
                    reply_to: Some(ip("10.0.0.2")),
                },
            ),
        ])
        .unwrap();
    let l4 = tcp(43000, 443, SYN);
    assert_eq!(
        run(&fx.lb, LbHook::Egress, &frame(a.local, a.outside, &l4)).verdict,
        SHOT
    );
    assert_eq!(
        run(&fx.lb, LbHook::Egress, &frame(a.pod, a.outside, &l4)).verdict,
        SHOT
    );
    let first = frag4(frame(a.remote, a.outside, &l4), true, 0);
    assert_eq!(run(&fx.lb, LbHook::Egress, &first).verdict, SHOT);
    let c = fx.lb.egress_counters().unwrap();
    assert_eq!(
        (c.drop_no_gateway, c.drop_no_egress_ip, c.drop_unsupported),
        (1, 1, 1)
    );
    // Control: the whole packet of the same flow is translated.
    let out = run(&fx.lb, LbHook::Egress, &frame(a.remote, a.outside, &l4));
    assert_eq!(out.verdict, OK);
    assert_eq!(parse(&out.packet).src, g.egress_ip);
}

/// A connection from outside to a selected pod: its replies are not the pod's egress and keep
/// the pod's address; the same pod opening a connection is tunnelled (the control).
#[test]
fn replies_of_inbound_connections_are_not_redirected() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    fx.lb.set_egress_tunnel(Some(TUNNEL)).unwrap();
    let fam = v4();
    let g = egw(&fam);
    fx.lb
        .sync_egress(&[rule(
            fam.local,
            g.dst,
            EgressAction::Tunnel { gateway: g.gateway },
        )])
        .unwrap();
    let syn = frame(fam.outside, fam.local, &tcp(33000, 8080, SYN));
    assert_untouched(&fx.lb, LbHook::Ingress, &syn, "inbound to a pod");
    let reply = frame(fam.local, fam.outside, &tcp(8080, 33000, SYN | ACK));
    assert_untouched(&fx.lb, LbHook::Egress, &reply, "its reply");
    let out = run(
        &fx.lb,
        LbHook::Egress,
        &frame(fam.local, fam.outside, &tcp(8081, 33000, SYN)),
    );
    assert_eq!(out.verdict, Verdict::Reply);
}

/// Every truncation of policy frames at both hooks, in both roles: no verdict but pass, drop
/// or the tunnel, and nothing translated to a wrong length. The untruncated frames are the
/// positive control (tunnelled / translated).
#[test]
fn truncated_policy_frames() {
    let mut fx = fixture();
    set_masq(&mut fx.lb, true);
    fx.lb.set_egress_tunnel(Some(TUNNEL)).unwrap();
    let mut rules = Vec::new();
    let mut frames = Vec::new();
    for fam in FAMS.map(|f| f()) {
        let g = egw(&fam);
        rules.push(rule(
            fam.local,
            g.dst,
            EgressAction::Tunnel { gateway: g.gateway },
        ));
        rules.push(rule(
            fam.remote,
            g.dst,
            EgressAction::Snat {
                egress_ip: Some(g.egress_ip),
                reply_to: Some(g.gateway),
            },
        ));
        frames.push((frame(fam.local, fam.outside, &tcp(44000, 443, SYN)), true));
        frames.push((frame(fam.remote, fam.outside, &udp(44001, 53)), false));
    }
    fx.lb.sync_egress(&rules).unwrap();
    let mut runs = 0;
    for (f, tunnel) in &frames {
        let whole = run(&fx.lb, LbHook::Egress, f).verdict;
        assert_eq!(whole, if *tunnel { Verdict::Reply } else { OK });
        for len in 0..f.len() {
            let cut = &f[..len];
            // The kernel refuses frames below its own minimum (an Ethernet header; an IP
            // header for IP) before the program runs.
            if len <= 14 || (f[12] == 0x08 && len < 34) || (f[12] == 0x86 && len < 54) {
                continue;
            }
            for hook in [LbHook::Egress, LbHook::Ingress, LbHook::Tunnel] {
                let out = run(&fx.lb, hook, cut);
                runs += 1;
                assert!(
                    matches!(out.verdict, Verdict::Pass | Verdict::Reply) || out.verdict == SHOT,
                    "{len} {hook:?}: {:?}",
                    out.verdict
                );
                assert_eq!(out.packet.len(), len, "{len} {hook:?}");
            }
        }
    }
    // Every cut from the IP header to the last byte ran, in both programs.
    let expected: usize = frames
        .iter()
        .map(|(f, _)| f.len() - if f[12] == 0x08 { 34 } else { 54 })
        .sum();
    assert!(expected > 50);
    assert_eq!(runs, 3 * expected);
}

/// An IPv4 frame turned into a first fragment (MF set), header checksum fixed.
fn frag4(mut f: Vec<u8>, more: bool, offset: u16) -> Vec<u8> {
    let v = offset | if more { 0x2000 } else { 0 };
    f[20..22].copy_from_slice(&v.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = fold(csum_add(0, &f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}
