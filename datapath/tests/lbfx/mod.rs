//! The load balancer tests' fixture: a `ServiceLb` in its own pin folder
//! and namespace (frames arrive on lo, ifindex 1, which has the device
//! addresses 10.0.0.1 / fd00::1), addresses per family, table and frame
//! helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;

use datapath::Verdict;
use datapath::lb::*;
pub use rackd_types::maglev::MaglevTable;

use crate::common::{self, PinDir};
use crate::lbpkt::*;

pub const LO: u32 = 1;
pub const M: u32 = 251;
pub const OK: Verdict = Verdict::Other(0);
pub const SHOT: Verdict = Verdict::Other(2);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Addresses of one family.
#[derive(Clone, Copy, Debug)]
pub struct Fam {
    pub vip: IpAddr,
    pub client: IpAddr,
    pub client2: IpAddr,
    pub node: IpAddr,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub pod: IpAddr,
    pub outside: IpAddr,
}

pub fn v4() -> Fam {
    Fam {
        vip: ip("192.0.2.10"),
        client: ip("198.51.100.7"),
        client2: ip("198.51.100.8"),
        node: ip("10.0.0.1"),
        local: ip("10.244.0.5"),
        remote: ip("10.244.1.9"),
        pod: ip("10.244.0.6"),
        outside: ip("203.0.113.9"),
    }
}

pub fn v6() -> Fam {
    Fam {
        vip: ip("2001:db8::10"),
        client: ip("2001:db8:c::7"),
        client2: ip("2001:db8:c::8"),
        node: ip("fd00::1"),
        local: ip("fd00:244::5"),
        remote: ip("fd00:244:1::9"),
        pod: ip("fd00:244::6"),
        outside: ip("2001:db8:f::9"),
    }
}

pub const FAMS: [fn() -> Fam; 2] = [v4, v6];

pub struct Fx {
    pub lb: ServiceLb,
    _in: common::EnteredNetns,
    _ns: common::Netns,
    _dir: PinDir,
}

pub fn small() -> LbConfig {
    LbConfig {
        maglev_table_size: M,
        hash_seed: 0x5eed,
        sizes: LbSizes {
            ct: 4096,
            nat: 4096,
            lut_chunks: 1024,
            ..LbSizes::default()
        },
        ..LbConfig::default()
    }
}

pub fn fixture_with(cfg: LbConfig) -> Fx {
    let dir = PinDir::new();
    let ns = common::Netns::new("dp-lb").unwrap();
    let entered = ns.enter_guard().unwrap();
    let mut lb = ServiceLb::open_or_create(dir.path(), &cfg).unwrap();
    lb.set_device(
        LO,
        DeviceAddrs {
            v4: Some("10.0.0.1".parse().unwrap()),
            v6: Some("fd00::1".parse().unwrap()),
        },
    )
    .unwrap();
    Fx {
        lb,
        _in: entered,
        _ns: ns,
        _dir: dir,
    }
}

pub fn fixture() -> Fx {
    fixture_with(small())
}

/// A simple table: slot i -> ids[i % n] (the real Maglev permutation is the
/// control plane's; the program only reads slots).
pub fn lut(ids: &[u32]) -> MaglevTable {
    let slots: Vec<u32> = (0..M as usize).map(|i| ids[i % ids.len()]).collect();
    MaglevTable::from_slot_ids(&slots).unwrap()
}

pub fn fe(addr: IpAddr, port: u16, proto: L4Proto) -> Frontend {
    Frontend { addr, port, proto }
}

pub fn backend(lb: &mut ServiceLb, id: u32, addr: IpAddr, port: u16, proto: L4Proto, local: bool) {
    lb.upsert_backend(
        BackendId(id),
        &BackendValue {
            addr,
            port,
            proto,
            local,
        },
    )
    .unwrap();
}

pub fn service(lb: &mut ServiceLb, f: Frontend, id: u32, ids: &[u32]) {
    let table = if ids.is_empty() {
        MaglevTable::empty()
    } else {
        lut(ids)
    };
    lb.upsert_service(
        &f,
        &ServiceEntry {
            id,
            local_only: false,
            affinity_timeout: None,
            lut: &table,
            source_ranges: &[],
        },
    )
    .unwrap();
}

pub fn l4_of(proto: L4Proto, sport: u16, dport: u16) -> L4 {
    match proto {
        L4Proto::Tcp => tcp(sport, dport, SYN),
        L4Proto::Udp => udp(sport, dport),
    }
}

pub fn run(lb: &ServiceLb, hook: LbHook, f: &[u8]) -> datapath::RunOutcome {
    lb.test_run(hook, f).unwrap()
}

pub fn assert_untouched(lb: &ServiceLb, hook: LbHook, f: &[u8], what: &str) {
    let out = run(lb, hook, f);
    assert_eq!(out.verdict, Verdict::Pass, "{what}");
    assert_eq!(out.packet, f, "{what}: untouched");
}

pub fn set_masq(lb: &mut ServiceLb, on: bool) {
    lb.set_masquerade(&MasqConfig {
        v4: on,
        v6: on,
        pod_cidrs: vec![
            "10.244.0.0/24".parse().unwrap(),
            "fd00:244::/64".parse().unwrap(),
        ],
        non_masq: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
    })
    .unwrap();
}

pub fn with_sport(l4: &L4, p: u16) -> L4 {
    let mut l = l4.clone();
    match &mut l {
        L4::Tcp { sport, .. } | L4::Udp { sport, .. } => *sport = p,
        L4::Echo { id, .. } => *id = p,
        L4::Error { .. } => unreachable!(),
    }
    l
}

pub fn with_dport(l4: &L4, p: u16) -> L4 {
    let mut l = l4.clone();
    match &mut l {
        L4::Tcp { dport, .. } | L4::Udp { dport, .. } => *dport = p,
        L4::Echo { id, .. } => *id = p,
        L4::Error { .. } => unreachable!(),
    }
    l
}

/// The quoted packet of an ICMP error frame, parsed (offsets in the whole frame).
pub fn icmp_quote_of(out: &[u8]) -> Parsed {
    let outer = parse(out);
    let mut inner = out[..14].to_vec();
    inner.extend_from_slice(&out[outer.l4_off + 8..]);
    let mut p = parse(&inner);
    p.l4_off += outer.l4_off + 8 - 14;
    p
}

/// An ICMP(v6) error of `fam`'s family: "too big" (fragmentation needed) or unreachable.
pub fn icmp_error(fam: &Fam, too_big: bool, quote: Vec<u8>) -> L4 {
    let (ty, code) = match (fam.vip.is_ipv4(), too_big) {
        (true, true) => (3, 4),
        (true, false) => (3, 3),
        (false, true) => (2, 0),
        (false, false) => (1, 4),
    };
    L4::Error {
        ty,
        code,
        mtu: 1400,
        quote,
    }
}

/// The source port a translated `l4` packet `p` left with (ICMP echo: the identifier).
pub fn sent_port(l4: &L4, p: &Parsed) -> u16 {
    if matches!(l4, L4::Echo { .. }) {
        p.icmp.2
    } else {
        p.sport
    }
}

/// The source port (ICMP echo: the identifier) of `l4`.
pub fn source_port(l4: &L4) -> u16 {
    match l4 {
        L4::Tcp { sport, .. } | L4::Udp { sport, .. } => *sport,
        L4::Echo { id, .. } => *id,
        L4::Error { .. } => unreachable!(),
    }
}

/// The remote end's answer to `l4` sent from `port` (TCP: SYN-ACK; ICMP: the echo reply).
pub fn answer_to(l4: &L4, port: u16) -> L4 {
    match l4 {
        L4::Tcp { dport, .. } => tcp(*dport, port, SYN | ACK),
        L4::Udp { dport, .. } => udp(*dport, port),
        L4::Echo { seq, .. } => L4::Echo {
            id: port,
            seq: *seq,
            reply: true,
        },
        L4::Error { .. } => unreachable!(),
    }
}
