//! Pure builders for the Ethernet frames the responder deals with: the
//! gratuitous ARP and unsolicited NA the daemon sends on takeover, and the
//! ARP requests / neighbour solicitations tests and benchmarks feed the
//! programs. No I/O here.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Length of an Ethernet + ARP frame without padding.
pub const ARP_FRAME_LEN: usize = 42;
/// Length of the NA frame the responder and [`unsolicited_na`] build.
pub const NA_FRAME_LEN: usize = 86;
/// ICMPv6 type of a neighbour solicitation (RFC 4861 §4.3).
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a neighbour advertisement (RFC 4861 §4.4).
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
/// NA flag: the advertisement answers a solicitation.
pub const NA_FLAG_SOLICITED: u8 = 0x40;
/// NA flag: the advertisement overrides cached link-layer addresses.
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

const IPPROTO_ICMPV6: u8 = 58;

/// Solicited-node multicast address of `ip` (RFC 4291 §2.7.1): `ff02::1:ff`
/// followed by the low 24 bits of the address.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// Ethernet address an IPv6 multicast group maps to (RFC 2464 §7).
pub fn ipv6_multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn eth_header(buf: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], proto: u16) {
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&proto.to_be_bytes());
}

/// An ARP frame for IPv4 over Ethernet (RFC 826).
#[allow(clippy::too_many_arguments)]
fn arp_frame(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(ARP_FRAME_LEN);
    eth_header(&mut b, eth_dst, eth_src, ETH_P_ARP);
    b.extend_from_slice(&1u16.to_be_bytes()); // hardware type Ethernet
    b.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol type IPv4
    b.push(6);
    b.push(4);
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(&sha);
    b.extend_from_slice(&spa.octets());
    b.extend_from_slice(&tha);
    b.extend_from_slice(&tpa.octets());
    b
}

/// A broadcast ARP request from (`mac`, `sender`) asking for `target`.
pub fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp_frame(BROADCAST, mac, 1, mac, sender, [0; 6], target)
}

/// The ARP reply a responder with `our_mac` sends to `request`'s sender for
/// `target` (what the eBPF program must produce, byte for byte).
pub fn arp_reply(
    our_mac: [u8; 6],
    target: Ipv4Addr,
    asker_mac: [u8; 6],
    asker_ip: Ipv4Addr,
) -> Vec<u8> {
    arp_frame(asker_mac, our_mac, 2, our_mac, target, asker_mac, asker_ip)
}

/// Gratuitous ARP for `ip` owned by `mac`: an ARP announcement (RFC 5227
/// §2.3), a broadcast request whose sender and target address are both `ip`,
/// which updates every neighbour cache that already holds `ip`.
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(BROADCAST, mac, 1, mac, ip, [0; 6], ip)
}

/// Adds `data` to an Internet checksum's running sum (RFC 1071: big-endian
/// 16-bit words, an odd last byte padded with zero). The result is folded to
/// 16 bits, so sums chain over any length; pieces after the first must start
/// at an even offset of the checksummed data. Finish with [`checksum_fold`].
pub fn checksum_add(sum: u32, data: &[u8]) -> u32 {
    let mut s = u64::from(sum);
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        if let [hi, lo] = w {
            s += u64::from(u16::from_be_bytes([*hi, *lo]));
        }
    }
    if let [last] = words.remainder() {
        s += u64::from(*last) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u32 // ≤ 0xffff after the fold
}

/// The checksum of a running sum: its carries folded, then its one's
/// complement. Over data that holds its own checksum, zero means it verifies.
pub fn checksum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMPv6 checksum (RFC 4443 §2.3) of `msg` (its checksum field zeroed or
/// not: pass the message as it is and compare the result with zero to verify).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    // Pseudo-header, RFC 8200 §8.1.
    let mut sum = checksum_add(0, &src.octets());
    sum = checksum_add(sum, &dst.octets());
    sum = checksum_add(sum, &(msg.len() as u32).to_be_bytes());
    sum = checksum_add(sum, &[0, 0, 0, IPPROTO_ICMPV6]);
    checksum_fold(checksum_add(sum, msg))
}

fn ipv6_header(buf: &mut Vec<u8>, payload_len: usize, src: Ipv6Addr, dst: Ipv6Addr) {
    buf.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    buf.extend_from_slice(&(payload_len as u16).to_be_bytes());
    buf.push(IPPROTO_ICMPV6);
    buf.push(255); // hop limit: RFC 4861 §7.1 requires 255
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
}

/// A neighbour advertisement for `target` from `mac` with the given flags and
/// a target link-layer address option (RFC 4861 §4.4).
pub fn neighbour_advertisement(
    eth_dst: [u8; 6],
    mac: [u8; 6],
    target: Ipv6Addr,
    dst: Ipv6Addr,
    flags: u8,
) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ND_NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let csum = icmpv6_checksum(target, dst, &icmp);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());

    let mut b = Vec::with_capacity(NA_FRAME_LEN);
    eth_header(&mut b, eth_dst, mac, ETH_P_IPV6);
    ipv6_header(&mut b, icmp.len(), target, dst);
    b.extend_from_slice(&icmp);
    b
}

/// Unsolicited neighbour advertisement for `ip` owned by `mac` (RFC 4861
/// §7.2.6): to all nodes, Override set, Solicited clear.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    neighbour_advertisement(
        ipv6_multicast_mac(all_nodes),
        mac,
        ip,
        all_nodes,
        NA_FLAG_OVERRIDE,
    )
}

/// A neighbour solicitation for `target` from (`mac`, `src`), sent to the
/// target's solicited-node group, with a source link-layer address option
/// unless `src` is unspecified (duplicate address detection, RFC 4861 §4.3).
pub fn neighbour_solicitation(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ND_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    if !src.is_unspecified() {
        icmp.extend_from_slice(&[1, 1]); // option: source link-layer address
        icmp.extend_from_slice(&mac);
    }
    let csum = icmpv6_checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());

    let mut b = Vec::with_capacity(14 + 40 + icmp.len());
    eth_header(&mut b, ipv6_multicast_mac(dst), mac, ETH_P_IPV6);
    ipv6_header(&mut b, icmp.len(), src, dst);
    b.extend_from_slice(&icmp);
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    #[test]
    fn solicited_node_group_and_mac() {
        let ip: Ipv6Addr = "2001:db8::12:3456".parse().unwrap();
        let g = solicited_node(ip);
        assert_eq!(g, "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ipv6_multicast_mac(g), [0x33, 0x33, 0xff, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn arp_announcement_layout() {
        let ip = Ipv4Addr::new(192, 0, 2, 10);
        let f = arp_announcement(MAC, ip);
        assert_eq!(f.len(), ARP_FRAME_LEN);
        assert_eq!(&f[0..6], &BROADCAST);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &ip.octets(), "sender = ip");
        assert_eq!(&f[38..42], &ip.octets(), "target = ip");
    }

    #[test]
    fn unsolicited_na_checksum_verifies() {
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = unsolicited_na(MAC, ip);
        assert_eq!(f.len(), NA_FRAME_LEN);
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
        assert_eq!(icmpv6_checksum(ip, dst, &f[54..]), 0);
        assert_eq!(f[58], NA_FLAG_OVERRIDE);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    }

    #[test]
    fn checksum_is_rfc1071s_example() {
        // RFC 1071 §3: these bytes sum to ddf2, so the checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_add(0, &data), 0xddf2);
        assert_eq!(checksum_fold(checksum_add(0, &data)), 0x220d);
        // Chained at an even offset, the same sum; with the checksum appended, zero.
        assert_eq!(
            checksum_add(checksum_add(0, &data[..2]), &data[2..]),
            0xddf2
        );
        let mut whole = data.to_vec();
        whole.extend_from_slice(&0x220du16.to_be_bytes());
        assert_eq!(checksum_fold(checksum_add(0, &whole)), 0);
        // A sum that carries out of 32 bits in a plain u32 does not overflow here.
        assert_eq!(checksum_add(0, &[0xff; 1 << 18]), 0xffff);
    }

    #[test]
    fn checksum_matches_rfc1071_example_shape() {
        // Odd-length messages are padded with a zero byte (RFC 1071 §4.1).
        let a = icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, &[0x12]);
        let b = icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, &[0x12, 0]);
        assert_ne!(a, b, "length is part of the pseudo-header");
    }

    #[test]
    fn ns_for_dad_has_no_source_option() {
        let t: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(
            neighbour_solicitation(MAC, Ipv6Addr::UNSPECIFIED, t).len(),
            78
        );
        assert_eq!(neighbour_solicitation(MAC, t, t).len(), 86);
    }
}
