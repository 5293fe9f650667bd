#![no_main]
//! Random frames through both load balancer programs (`rackd_lb_in`,
//! `rackd_lb_out`) with BPF_PROG_TEST_RUN, against maps holding services
//! (local, remote, no backend, affinity, source ranges), NAT mappings and
//! masquerade. Needs root (BPF, bpffs) and runs in a private network
//! namespace; nothing stays pinned (the pins are removed right after
//! loading, the process holds the maps).
//!
//! Input: byte 0 picks the program (bit 0) and the mode (bit 1): raw (the
//! rest is the frame) or structured (the rest chooses a well-formed frame
//! of the programs' interest, then mutates and truncates it), so both
//! parsers' edges and the deep paths get exercised.
//!
//! Invariants: the kernel accepts the run (except below its own minimum
//! sizes), the verdict is one the programs return, a passed frame is
//! untouched, a translated one keeps its length, a drop is counted.

use std::net::IpAddr;
use std::sync::OnceLock;

use datapath::Verdict;
use datapath::lb::*;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/lbpkt/mod.rs"]
#[allow(dead_code, unused_imports)]
mod lbpkt;

use lbpkt::*;

struct Held(ServiceLb);
// SAFETY-free: ServiceLb is Send; libFuzzer runs the target on one thread.
static LB: OnceLock<std::sync::Mutex<Held>> = OnceLock::new();

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

const ADDRS4: [&str; 6] = [
    "192.0.2.10",
    "198.51.100.7",
    "10.0.0.1",
    "10.244.0.5",
    "10.244.1.9",
    "203.0.113.9",
];
const ADDRS6: [&str; 6] = [
    "2001:db8::10",
    "2001:db8:c::7",
    "fd00::1",
    "fd00:244::5",
    "fd00:244:1::9",
    "2001:db8:f::9",
];
const PORTS: [u16; 6] = [80, 53, 8080, 40000, 443, 32768];

fn setup() -> ServiceLb {
    // SAFETY: unshare affects only this process (single-threaded here).
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET) needs root");
    let root = std::path::PathBuf::from(format!("/sys/fs/bpf/rackd-fuzz-{}", std::process::id()));
    let cfg = LbConfig {
        maglev_table_size: 251,
        nat_port_min: 40000,
        nat_port_max: 40007,
        sizes: LbSizes {
            ct: 4096,
            nat: 4096,
            lut_chunks: 64,
            ..LbSizes::default()
        },
        ..LbConfig::default()
    };
    let mut lb = ServiceLb::open_or_create(&root, &cfg).expect("load the programs");
    // The loaded maps stay alive through the handle: no pin needs to.
    datapath::uninstall(&root).expect("unpin");
    lb.set_device(
        1,
        DeviceAddrs {
            v4: Some("10.0.0.1".parse().expect("v4")),
            v6: Some("fd00::1".parse().expect("v6")),
        },
    )
    .expect("device");
    for (fam, addrs) in [(0u32, ADDRS4), (1, ADDRS6)] {
        let vip = ip(addrs[0]);
        for (i, (local, addr)) in [(true, addrs[3]), (false, addrs[4])]
            .into_iter()
            .enumerate()
        {
            for (j, proto) in [L4Proto::Tcp, L4Proto::Udp].into_iter().enumerate() {
                let id = 1 + fam * 8 + u32::try_from(i * 2 + j).expect("small");
                lb.upsert_backend(
                    BackendId(id),
                    &BackendValue {
                        addr: ip(addr),
                        port: 8080,
                        proto,
                        local,
                    },
                )
                .expect("backend");
                let lut = rackd_types::maglev::MaglevTable::from_slot_ids(&[id; 251]).expect("table");
                let range: ipnet::IpNet = if fam == 0 {
                    "198.51.100.0/24"
                } else {
                    "2001:db8:c::/48"
                }
                .parse()
                .expect("net");
                let ranges = [range];
                lb.upsert_service(
                    &Frontend {
                        addr: vip,
                        port: 80 + u16::try_from(i * 2 + j).expect("small"),
                        proto,
                    },
                    &ServiceEntry {
                        id,
                        local_only: i == 1 && j == 1,
                        affinity_timeout: (j == 0).then(|| std::time::Duration::from_secs(60)),
                        lut: &lut,
                        source_ranges: if i == 0 && j == 1 { &ranges } else { &[] },
                    },
                )
                .expect("service");
            }
        }
        let none = Frontend {
            addr: vip,
            port: 53,
            proto: L4Proto::Udp,
        };
        lb.upsert_service(
            &none,
            &ServiceEntry {
                id: 100 + fam,
                local_only: false,
                affinity_timeout: None,
                lut: &rackd_types::maglev::MaglevTable::empty(),
                source_ranges: &[],
            },
        )
        .expect("empty service");
    }
    lb.set_masquerade(&MasqConfig {
        v4: true,
        v6: true,
        pod_cidrs: vec![
            "10.244.0.0/16".parse().expect("net"),
            "fd00:244::/32".parse().expect("net"),
        ],
        non_masq: vec!["10.0.0.0/24".parse().expect("net")],
    })
    .expect("masquerade");
    // Egress-gateway entries for every role: a local pod tunnelled, a remote pod SNATed here
    // (replies tunnelled back), a pod without gateway, an excluded CIDR.
    let tunnel = |g: &str| EgressAction::Tunnel { gateway: ip(g) };
    let snat = |e: &str, n: &str| EgressAction::Snat {
        egress_ip: Some(ip(e)),
        reply_to: Some(ip(n)),
    };
    let rule = |s: &str, d: &str, action| EgressRule {
        source: ip(s),
        destination: d.parse().expect("net"),
        action,
    };
    lb.set_egress_tunnel(Some(EgressTunnel {
        ifindex: 1,
        vni: 2,
        mac: [0x0a, 0xce, 0, 0, 0, 1],
    }))
    .expect("egress tunnel");
    lb.sync_egress(&[
        rule("10.244.0.5", "203.0.113.0/24", tunnel("10.0.0.3")),
        rule("10.244.0.5", "198.51.100.0/24", EgressAction::Excluded),
        rule("10.244.1.9", "203.0.113.0/24", snat("192.0.2.99", "10.0.0.2")),
        rule("10.244.1.9", "198.51.100.0/24", EgressAction::NoGateway),
        rule("fd00:244::5", "2001:db8:f::/48", tunnel("fd00::3")),
        rule("fd00:244:1::9", "2001:db8:f::/48", snat("2001:db8::10", "fd00::2")),
        rule("fd00:244:1::9", "2001:db8:c::/48", EgressAction::NoGateway),
    ])
    .expect("egress rules");
    lb
}

/// A well-formed frame chosen by `d`, then mutated and truncated by it.
fn structured(d: &[u8]) -> Vec<u8> {
    let b = |i: usize| d.get(i).copied().unwrap_or(0);
    let v6 = b(0) & 1 == 1;
    let addrs = if v6 { ADDRS6 } else { ADDRS4 };
    let src = ip(addrs[usize::from(b(1)) % addrs.len()]);
    let dst = ip(addrs[usize::from(b(2)) % addrs.len()]);
    let sport = PORTS[usize::from(b(3)) % PORTS.len()];
    let dport = PORTS[usize::from(b(4)) % PORTS.len()];
    let l4 = match b(5) % 5 {
        0 => tcp(sport, dport, b(6)),
        1 => udp(sport, dport),
        2 => L4::Echo {
            id: sport,
            seq: 1,
            reply: b(6) & 1 == 1,
        },
        3 => {
            let quote = ip_packet(dst, src, 64, &[], &tcp(dport, sport, 0x10));
            L4::Error {
                ty: if v6 { 2 } else { 3 },
                code: if v6 { 0 } else { 4 },
                mtu: 1400,
                quote,
            }
        }
        _ => tcp(sport, dport, 0x02),
    };
    let mut f = if v6 && b(7) & 1 == 1 {
        frame_ext(src, dst, &[(0, 0), (60, 0)], &l4)
    } else {
        frame(src, dst, &l4)
    };
    // Flip bytes: pairs (offset, xor) from the rest of the input.
    for pair in d.get(9..).unwrap_or(&[]).chunks_exact(2).take(4) {
        let at = usize::from(pair[0]) % f.len();
        f[at] ^= pair[1];
    }
    if b(8) != 0 {
        f.truncate(usize::from(b(8)).max(14));
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let cell = LB.get_or_init(|| std::sync::Mutex::new(Held(setup())));
    let held = cell.lock().expect("one fuzz thread");
    let lb = &held.0;
    let hook = match sel & 1 | (sel >> 1) & 2 {
        0 | 2 => LbHook::Ingress,
        1 => LbHook::Egress,
        _ => LbHook::Tunnel,
    };
    let frame = if sel & 2 == 0 {
        rest.to_vec()
    } else {
        structured(rest)
    };
    let before = (lb.counters().expect("counters"), lb.egress_counters().expect("egress"));
    let out = match lb.test_run(hook, &frame) {
        Ok(o) => o,
        Err(e) => {
            let et = frame.get(12..14);
            let min = match et {
                Some([0x08, 0x00]) => 34,
                Some([0x86, 0xdd]) => 54,
                _ => 15,
            };
            assert!(
                frame.len() < min || frame.len() > 4000,
                "test run refused a {}-byte frame: {e:?}",
                frame.len()
            );
            return;
        }
    };
    match out.verdict {
        Verdict::Pass => assert_eq!(out.packet, frame, "passed frames are untouched"),
        Verdict::Other(0) => assert_eq!(out.packet.len(), frame.len(), "translated in place"),
        Verdict::Other(2) => {
            let after = (lb.counters().expect("counters"), lb.egress_counters().expect("egress"));
            let sum = |(c, e): &(LbCounters, EgressCounters)| {
                c.drops.iter().map(|d| d.1).sum::<u64>()
                    + e.drop_no_gateway
                    + e.drop_no_egress_ip
                    + e.drop_unsupported
                    + e.drop_nat_failed
                    + e.drop_tunnel_failed
            };
            assert!(sum(&after) > sum(&before), "drops are counted");
        }
        Verdict::Reply => {}
        v => panic!("unexpected verdict {v:?}"),
    }
});
