//! NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5, RFC 7911 §3).

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A prefix list could not be parsed (RFC 7606 §5.3: session reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadNlri;

/// Decodes IPv4 prefixes from `buf` into `out`. Host bits beyond the prefix length are cleared
/// so equal prefixes compare equal. `add_path`: each prefix is preceded by a 4-octet path
/// identifier (RFC 7911 §3), which is skipped.
pub(crate) fn decode_v4(buf: &[u8], add_path: bool, out: &mut Vec<IpNet>) -> Result<(), BadNlri> {
    // Each prefix takes at least one octet, so this bounds the reservation by the input.
    out.reserve(buf.len() / if add_path { 6 } else { 4 });
    let mut i = 0usize;
    while i < buf.len() {
        if add_path {
            i = i.checked_add(4).filter(|&j| j < buf.len()).ok_or(BadNlri)?;
        }
        let len = buf[i];
        if len > 32 {
            return Err(BadNlri);
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = buf.get(i + 1..i + 1 + n).ok_or(BadNlri)?;
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(bytes);
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        let addr = Ipv4Addr::from(u32::from_be_bytes(a) & mask);
        out.push(IpNet::V4(Ipv4Net::new(addr, len).map_err(|_| BadNlri)?));
        i += 1 + n;
    }
    Ok(())
}

/// Decodes IPv6 prefixes, as [`decode_v4`].
pub(crate) fn decode_v6(buf: &[u8], add_path: bool, out: &mut Vec<IpNet>) -> Result<(), BadNlri> {
    out.reserve(buf.len() / if add_path { 8 } else { 6 });
    let mut i = 0usize;
    while i < buf.len() {
        if add_path {
            i = i.checked_add(4).filter(|&j| j < buf.len()).ok_or(BadNlri)?;
        }
        let len = buf[i];
        if len > 128 {
            return Err(BadNlri);
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = buf.get(i + 1..i + 1 + n).ok_or(BadNlri)?;
        let mut a = [0u8; 16];
        a[..n].copy_from_slice(bytes);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        let addr = Ipv6Addr::from(u128::from_be_bytes(a) & mask);
        out.push(IpNet::V6(Ipv6Net::new(addr, len).map_err(|_| BadNlri)?));
        i += 1 + n;
    }
    Ok(())
}

/// Encoded size of one prefix.
pub(crate) fn encoded_len(p: &IpNet, add_path: bool) -> usize {
    1 + usize::from(p.prefix_len()).div_ceil(8) + if add_path { 4 } else { 0 }
}

/// Path identifier we send when ADD-PATH transmit is negotiated: we only ever advertise one
/// path per prefix (RFC 7911 §3 leaves the value to the sender).
pub(crate) const PATH_ID: u32 = 1;

/// Appends one prefix.
pub(crate) fn encode(p: &IpNet, add_path: bool, out: &mut BytesMut) {
    if add_path {
        out.put_u32(PATH_ID);
    }
    let len = p.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.put_u8(len);
    match p {
        IpNet::V4(v4) => out.put_slice(&v4.network().octets()[..n]),
        IpNet::V6(v6) => out.put_slice(&v6.network().octets()[..n]),
    }
}
