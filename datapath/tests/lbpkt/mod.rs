//! Frame builders and checkers for the load balancer's tests (and the fuzz
//! target's seeds): Ethernet + IPv4/IPv6 (optionally with extension
//! headers) + TCP/UDP/ICMP(v6), every checksum computed; a parser that
//! reads a frame back and verifies its checksums independently.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMP6: u8 = 58;
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

/// An L4 header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// ICMP(v6) echo request (reply = false) or reply.
    Echo { id: u16, seq: u16, reply: bool },
    /// ICMP(v6) error of `kind` (type, code) quoting `quote` (an IP packet).
    Error {
        ty: u8,
        code: u8,
        mtu: u32,
        quote: Vec<u8>,
    },
}

pub fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        seq: 1000,
        ack: if flags & ACK != 0 { 5000 } else { 0 },
        flags,
        payload: Vec::new(),
    }
}

pub fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp {
        sport,
        dport,
        payload: b"hello".to_vec(),
    }
}

/// The datapath's Internet checksum, under the names these tests use.
pub use datapath::packet::{checksum_add as csum_add, checksum_fold as fold};

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut s = 0;
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s = csum_add(s, &a.octets());
            s = csum_add(s, &b.octets());
            s = csum_add(s, &[0, proto]);
            s = csum_add(s, &(len as u16).to_be_bytes());
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            s = csum_add(s, &a.octets());
            s = csum_add(s, &b.octets());
            s = csum_add(s, &(len as u32).to_be_bytes());
            s = csum_add(s, &[0, 0, 0, proto]);
        }
        _ => panic!("mixed families"),
    }
    s
}

/// The L4 bytes of `l4` between `src` and `dst`, checksum filled in.
pub fn l4_bytes(src: IpAddr, dst: IpAddr, l4: &L4) -> (u8, Vec<u8>) {
    let v6 = src.is_ipv6();
    let (proto, mut b, csum_at, use_pseudo) = match l4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            payload,
        } => {
            let mut b = Vec::new();
            b.extend(sport.to_be_bytes());
            b.extend(dport.to_be_bytes());
            b.extend(seq.to_be_bytes());
            b.extend(ack.to_be_bytes());
            b.extend([5 << 4, *flags]);
            b.extend(64240u16.to_be_bytes());
            b.extend([0, 0, 0, 0]);
            b.extend(payload);
            (TCP, b, 16, true)
        }
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut b = Vec::new();
            b.extend(sport.to_be_bytes());
            b.extend(dport.to_be_bytes());
            b.extend(((8 + payload.len()) as u16).to_be_bytes());
            b.extend([0, 0]);
            b.extend(payload);
            (UDP, b, 6, true)
        }
        L4::Echo { id, seq, reply } => {
            let ty = match (v6, reply) {
                (false, false) => 8,
                (false, true) => 0,
                (true, false) => 128,
                (true, true) => 129,
            };
            let mut b = vec![ty, 0, 0, 0];
            b.extend(id.to_be_bytes());
            b.extend(seq.to_be_bytes());
            b.extend(b"pingdata");
            (if v6 { ICMP6 } else { ICMP }, b, 2, v6)
        }
        L4::Error {
            ty,
            code,
            mtu,
            quote,
        } => {
            let mut b = vec![*ty, *code, 0, 0];
            b.extend(mtu.to_be_bytes());
            b.extend(quote);
            (if v6 { ICMP6 } else { ICMP }, b, 2, v6)
        }
    };
    let start = if use_pseudo {
        pseudo(src, dst, proto, b.len())
    } else {
        0
    };
    let mut c = fold(csum_add(start, &b));
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    b[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    (proto, b)
}

/// An IP packet (no Ethernet header) of `l4` from `src` to `dst`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, ttl: u8, ext: &[u8], l4: &L4) -> Vec<u8> {
    let (proto, body) = l4_bytes(src, dst, l4);
    ip_raw(src, dst, ttl, ext, proto, &body)
}

/// An IP packet around `body` (checksums of `body` are the caller's).
/// `ext`: IPv6 extension headers as `ext_chain` builds them.
pub fn ip_raw(src: IpAddr, dst: IpAddr, ttl: u8, ext: &[u8], proto: u8, body: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mut h = vec![0x45, 0];
            h.extend(((20 + body.len()) as u16).to_be_bytes());
            h.extend([0x12, 0x34, 0x40, 0, ttl, proto, 0, 0]);
            h.extend(a.octets());
            h.extend(b.octets());
            let c = fold(csum_add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend(body);
            h
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            // The last extension header's next header is `proto`; the IPv6
            // header's (the first extension header's type) is the caller's
            // to set when there are any (see `frame_ext`).
            let mut ext = ext.to_vec();
            let mut off = 0;
            while off + 1 < ext.len() {
                let next = off + (usize::from(ext[off + 1]) + 1) * 8;
                if next >= ext.len() {
                    ext[off] = proto;
                }
                off = next;
            }
            let mut h = vec![0x60, 0, 0, 0];
            h.extend(((ext.len() + body.len()) as u16).to_be_bytes());
            h.extend([if ext.is_empty() { proto } else { 0xff }, ttl]);
            h.extend(a.octets());
            h.extend(b.octets());
            h.extend(ext);
            h.extend(body);
            h
        }
        _ => panic!("mixed families"),
    }
}

/// Builds an IPv6 extension header chain: `(type, len in 8-byte units - 1)`
/// list; returns (first header type, bytes). Use `frame_ext`.
pub fn ext_chain(hdrs: &[(u8, u8)]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, (_, len)) in hdrs.iter().enumerate() {
        let next = hdrs.get(i + 1).map_or(0xff, |h| h.0);
        let mut h = vec![0u8; (usize::from(*len) + 1) * 8];
        h[0] = next;
        h[1] = *len;
        if hdrs[i].0 == 60 || hdrs[i].0 == 0 {
            // PadN option filling the header.
            h[2] = 1;
            h[3] = (h.len() - 4) as u8;
        }
        out.extend(h);
    }
    (hdrs.first().map_or(0, |h| h.0), out)
}

pub fn eth(ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = NODE_MAC.to_vec();
    f.extend(CLIENT_MAC);
    f.extend(ethertype.to_be_bytes());
    f.extend(ip);
    f
}

/// A frame from the client side: Ethernet to the node, `l4` from `src` to `dst`.
pub fn frame(src: IpAddr, dst: IpAddr, l4: &L4) -> Vec<u8> {
    let et = if src.is_ipv4() { 0x0800 } else { 0x86dd };
    eth(et, &ip_packet(src, dst, 64, &[], l4))
}

/// An IPv6 frame with extension headers `hdrs` ((type, len)) before `l4`.
pub fn frame_ext(src: IpAddr, dst: IpAddr, hdrs: &[(u8, u8)], l4: &L4) -> Vec<u8> {
    let (first, ext) = ext_chain(hdrs);
    let (proto, body) = l4_bytes(src, dst, l4);
    let mut ip = ip_raw(src, dst, 64, &ext, proto, &body);
    if !hdrs.is_empty() {
        ip[6] = first;
    }
    eth(0x86dd, &ip)
}

/// What a frame holds, read back independently of the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub proto: u8,
    /// Offset of the L4 header in the frame.
    pub l4_off: usize,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// ICMP: type, code, identifier.
    pub icmp: (u8, u8, u16),
    /// Every checksum (IPv4 header, L4 with its pseudo-header) verifies.
    pub csum_ok: bool,
}

pub fn parse(f: &[u8]) -> Parsed {
    let et = u16::from_be_bytes([f[12], f[13]]);
    let ip = &f[14..];
    let (src, dst, ttl, mut proto, mut off, end, mut ok) = if et == 0x0800 {
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let s = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
        let d = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
        (
            s,
            d,
            ip[8],
            ip[9],
            ihl,
            tot,
            fold(csum_add(0, &ip[..ihl])) == 0,
        )
    } else {
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let s = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
        let d = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
        (s, d, ip[7], ip[6], 40, 40 + plen, true)
    };
    while matches!(proto, 0 | 43 | 60) && src.is_ipv6() {
        let len = (usize::from(ip[off + 1]) + 1) * 8;
        proto = ip[off];
        off += len;
    }
    let l4 = &ip[off..end];
    let mut p = Parsed {
        src,
        dst,
        ttl,
        proto,
        l4_off: 14 + off,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        seq: 0,
        ack: 0,
        icmp: (0, 0, 0),
        csum_ok: false,
    };
    let be16 = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
    match proto {
        TCP => {
            p.sport = be16(0);
            p.dport = be16(2);
            p.seq = be32(4);
            p.ack = be32(8);
            p.tcp_flags = l4[13];
            ok &= fold(csum_add(pseudo(src, dst, TCP, l4.len()), l4)) == 0;
        }
        UDP => {
            p.sport = be16(0);
            p.dport = be16(2);
            ok &= be16(6) == 0 && src.is_ipv4()
                || fold(csum_add(pseudo(src, dst, UDP, l4.len()), l4)) == 0;
        }
        ICMP => {
            p.icmp = (l4[0], l4[1], be16(4));
            ok &= fold(csum_add(0, l4)) == 0;
        }
        ICMP6 => {
            p.icmp = (l4[0], l4[1], be16(4));
            ok &= fold(csum_add(pseudo(src, dst, ICMP6, l4.len()), l4)) == 0;
        }
        _ => {}
    }
    p.csum_ok = ok;
    p
}
