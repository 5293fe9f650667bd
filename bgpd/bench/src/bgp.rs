//! The few BGP messages the benchmark peers need, hand-rolled (RFC 4271 §4, RFC 6793 4-octet
//! AS paths, RFC 4760 MP_REACH for IPv4 when a DUT uses it).
//!
//! The peers are measuring instruments: they must be much faster than any DUT and must not
//! depend on the codec under test, so they encode and skim messages directly on byte slices.

use std::io::{self, Read};
use std::net::Ipv4Addr;

use crate::workload::AttrSet;

pub const OPEN: u8 = 1;
pub const UPDATE: u8 = 2;
pub const NOTIFICATION: u8 = 3;
pub const KEEPALIVE: u8 = 4;

const HEADER: usize = 19;
/// RFC 4271 §4: without the extended-message capability (RFC 8654).
pub const MAX_MESSAGE: usize = 4096;
/// AS_TRANS (RFC 6793).
const AS_TRANS: u16 = 23456;

fn header(out: &mut Vec<u8>, len: usize, ty: u8) {
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(ty);
}

/// OPEN with multiprotocol IPv4 unicast (RFC 4760) and 4-octet AS (RFC 6793) capabilities.
pub fn open(my_as: u32, hold_time: u16, router_id: Ipv4Addr) -> Vec<u8> {
    let caps: [u8; 14] = {
        let a = my_as.to_be_bytes();
        [2, 12, 1, 4, 0, 1, 0, 1, 65, 4, a[0], a[1], a[2], a[3]]
    };
    let len = HEADER + 10 + caps.len();
    let mut out = Vec::with_capacity(len);
    header(&mut out, len, OPEN);
    out.push(4);
    let as2 = u16::try_from(my_as).unwrap_or(AS_TRANS);
    out.extend_from_slice(&as2.to_be_bytes());
    out.extend_from_slice(&hold_time.to_be_bytes());
    out.extend_from_slice(&router_id.octets());
    out.push(caps.len() as u8);
    out.extend_from_slice(&caps);
    out
}

/// KEEPALIVE.
pub fn keepalive() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER);
    header(&mut out, HEADER, KEEPALIVE);
    out
}

fn attr(out: &mut Vec<u8>, flags: u8, ty: u8, value: &[u8]) {
    if value.len() > 255 {
        out.extend_from_slice(&[flags | 0x10, ty]);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags, ty, value.len() as u8]);
    }
    out.extend_from_slice(value);
}

/// ORIGIN, AS_PATH (one AS_SEQUENCE of 4-octet ASNs), NEXT_HOP, MED, COMMUNITIES.
pub fn encode_attributes(out: &mut Vec<u8>, set: &AttrSet, next_hop: Ipv4Addr) {
    attr(out, 0x40, 1, &[set.origin]);
    let mut path = Vec::with_capacity(2 + 4 * set.as_path.len());
    path.extend_from_slice(&[2, set.as_path.len() as u8]);
    for asn in &set.as_path {
        path.extend_from_slice(&asn.to_be_bytes());
    }
    attr(out, 0x40, 2, &path);
    attr(out, 0x40, 3, &next_hop.octets());
    if let Some(med) = set.med {
        attr(out, 0x80, 4, &med.to_be_bytes());
    }
    if !set.communities.is_empty() {
        let c: Vec<u8> = set
            .communities
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        attr(out, 0xc0, 8, &c);
    }
}

/// How many /24 NLRI (4 bytes each) fit in one UPDATE next to `attrs_len` bytes of attributes.
pub fn max_nlri_per_update(attrs_len: usize) -> usize {
    ((MAX_MESSAGE - HEADER - 4 - attrs_len) / 4).max(1)
}

/// One UPDATE announcing `nlri` (all /24s) with pre-encoded attributes.
pub fn encode_update(
    out: &mut Vec<u8>,
    attrs: &[u8],
    nlri: impl ExactSizeIterator<Item = Ipv4Addr>,
) {
    let len = HEADER + 4 + attrs.len() + 4 * nlri.len();
    header(out, len, UPDATE);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    out.extend_from_slice(attrs);
    for p in nlri {
        out.push(24);
        out.extend_from_slice(&p.octets()[..3]);
    }
}

/// A message that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("malformed BGP message: {0}")]
pub struct Malformed(pub &'static str);

/// Reads whole messages from a byte stream through one large buffer.
#[derive(Debug)]
pub struct MsgReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> MsgReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
        }
    }

    /// The next message as (type, body). `Ok(None)` at a clean end of stream. A read timeout
    /// on the socket surfaces as an `io::Error` of kind `WouldBlock`/`TimedOut` with no
    /// partial message lost.
    pub fn read_message(&mut self) -> io::Result<Option<(u8, &[u8])>> {
        loop {
            let avail = self.end - self.start;
            if avail >= HEADER {
                let h = &self.buf[self.start..self.start + HEADER];
                let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
                if !(HEADER..=65535).contains(&len) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        Malformed("bad length"),
                    ));
                }
                if avail >= len {
                    let ty = h[18];
                    let body = self.start + HEADER..self.start + len;
                    self.start += len;
                    return Ok(Some((ty, &self.buf[body])));
                }
            }
            if self.start > 0 && self.buf.len() - self.end < 65536 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.inner.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return if self.end == self.start {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.end += n;
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

fn prefixes(
    mut b: &[u8],
    announce: bool,
    f: &mut impl FnMut(u32, u8, bool),
) -> Result<(), Malformed> {
    while let Some((&len, rest)) = b.split_first() {
        if len > 32 {
            return Err(Malformed("prefix length > 32"));
        }
        let n = usize::from(len).div_ceil(8);
        if rest.len() < n {
            return Err(Malformed("truncated prefix"));
        }
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(&rest[..n]);
        f(u32::from_be_bytes(a), len, announce);
        b = &rest[n..];
    }
    Ok(())
}

/// Calls `f(address, length, announced)` for every IPv4 unicast prefix an UPDATE body
/// withdraws or announces, in the classic fields or in MP_REACH/MP_UNREACH (AFI 1, SAFI 1).
pub fn for_each_nlri(body: &[u8], mut f: impl FnMut(u32, u8, bool)) -> Result<(), Malformed> {
    let short = || Malformed("truncated UPDATE");
    let wlen = usize::from(u16::from_be_bytes([
        *body.first().ok_or_else(short)?,
        *body.get(1).ok_or_else(short)?,
    ]));
    let withdrawn = body.get(2..2 + wlen).ok_or_else(short)?;
    prefixes(withdrawn, false, &mut f)?;
    let rest = &body[2 + wlen..];
    let alen = usize::from(u16::from_be_bytes([
        *rest.first().ok_or_else(short)?,
        *rest.get(1).ok_or_else(short)?,
    ]));
    let mut attrs = rest.get(2..2 + alen).ok_or_else(short)?;
    let nlri = &rest[2 + alen..];
    while !attrs.is_empty() {
        let flags = attrs[0];
        let ty = *attrs.get(1).ok_or_else(short)?;
        let (len, hdr) = if flags & 0x10 != 0 {
            let l = attrs.get(2..4).ok_or_else(short)?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), 4)
        } else {
            (usize::from(*attrs.get(2).ok_or_else(short)?), 3)
        };
        let value = attrs.get(hdr..hdr + len).ok_or_else(short)?;
        match ty {
            // MP_REACH_NLRI: AFI, SAFI, next hop, reserved, NLRI.
            14 if value.get(..3) == Some(&[0, 1, 1]) => {
                let nh = usize::from(*value.get(3).ok_or_else(short)?);
                let n = value.get(5 + nh..).ok_or_else(short)?;
                prefixes(n, true, &mut f)?;
            }
            // MP_UNREACH_NLRI: AFI, SAFI, withdrawn.
            15 if value.get(..3) == Some(&[0, 1, 1]) => prefixes(&value[3..], false, &mut f)?,
            _ => {}
        }
        attrs = &attrs[hdr + len..];
    }
    prefixes(nlri, true, &mut f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn update_round_trip_and_truncation() {
        let set = AttrSet {
            as_path: vec![65001, 3356, 200_000],
            communities: vec![0xfde9_0001],
            med: Some(5),
            origin: 0,
        };
        let mut attrs = Vec::new();
        encode_attributes(&mut attrs, &set, Ipv4Addr::new(10, 0, 1, 2));
        let mut msg = Vec::new();
        let p = [Ipv4Addr::new(100, 0, 0, 0), Ipv4Addr::new(100, 0, 1, 0)];
        encode_update(&mut msg, &attrs, p.into_iter());
        let mut r = MsgReader::new(&msg[..]);
        let (ty, body) = r.read_message().unwrap().unwrap();
        assert_eq!(ty, UPDATE);
        let mut got = Vec::new();
        for_each_nlri(body, |a, l, ann| got.push((a, l, ann))).unwrap();
        assert_eq!(got, vec![(0x6400_0000, 24, true), (0x6400_0100, 24, true)]);
        for cut in 0..body.len() {
            // Never panics on a truncated body.
            let _ = for_each_nlri(&body[..cut], |_, _, _| {});
        }
        assert!(r.read_message().unwrap().is_none());
    }

    #[test]
    fn open_is_well_formed() {
        let o = open(4_200_000_000, 240, Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(usize::from(u16::from_be_bytes([o[16], o[17]])), o.len());
        assert_eq!(&o[20..22], &AS_TRANS.to_be_bytes());
    }
}
