//! Efficient UPDATE encoding: the attribute block of one attribute set is encoded once
//! ([`EncodedAttributes`]) and copied into every UPDATE that carries it, and each UPDATE is
//! packed with as many NLRI as the negotiated maximum size allows.

use std::net::{IpAddr, Ipv4Addr};

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;

use crate::attributes::{self, encode_block, flags, type_code as tc};
use crate::codec::{MARKER, msg_type};
use crate::context::{HEADER_LEN, SessionContext};
use crate::error::EncodeError;
use crate::nlri;
use crate::types::{Family, NextHop, PathAttributes};
use crate::update::{patch_u16, put_afi_safi, put_mp_next_hop};

/// The path attributes of one attribute set, encoded once for a session (everything except
/// NEXT_HOP and MP_REACH_NLRI, which depend on the prefixes carried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAttributes {
    block: Bytes,
    /// Attributes with type codes up to NEXT_HOP end here; NEXT_HOP is inserted at this offset.
    split: usize,
}

impl EncodedAttributes {
    /// Encodes `attrs` for `ctx` (AS width, AS4_PATH for 2-octet sessions). `attrs.next_hop` is
    /// ignored: the next hop is given per announcement.
    pub fn new(attrs: &PathAttributes, ctx: &SessionContext) -> Self {
        let b = encode_block(attrs, ctx);
        EncodedAttributes {
            block: b.bytes,
            split: b.split,
        }
    }

    /// Encoded size in octets.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Always false: ORIGIN and AS_PATH are always encoded.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }
}

/// Largest encoded prefix (IPv6 /128 with a path identifier).
const MAX_PREFIX_LEN: usize = 1 + 16 + 4;
/// MP_REACH_NLRI overhead before the next hop: flags, type, 2-octet length, AFI, SAFI, NH length.
const MP_REACH_HEAD: usize = 4 + 3 + 1;
/// MP_UNREACH_NLRI overhead: flags, type, 2-octet length, AFI, SAFI.
const MP_UNREACH_HEAD: usize = 4 + 3;

/// Packs announcements and withdrawals into UPDATE messages, back to back in one buffer.
#[derive(Debug)]
pub struct UpdateBuilder<'c> {
    ctx: &'c SessionContext,
    buf: BytesMut,
    /// End offset of each message in `buf`.
    ends: Vec<usize>,
}

impl<'c> UpdateBuilder<'c> {
    /// A builder for a session with this context.
    pub fn new(ctx: &'c SessionContext) -> Self {
        UpdateBuilder {
            ctx,
            buf: BytesMut::new(),
            ends: Vec::new(),
        }
    }

    /// A builder whose buffer starts with room for `bytes` octets (e.g. one socket write).
    pub fn with_capacity(ctx: &'c SessionContext, bytes: usize) -> Self {
        UpdateBuilder {
            ctx,
            buf: BytesMut::with_capacity(bytes),
            ends: Vec::new(),
        }
    }

    /// Takes the messages built so far (back to back) and starts over with an empty buffer of
    /// the same capacity, so a sender can flush every few kilobytes.
    pub fn take(&mut self) -> Bytes {
        self.ends.clear();
        let cap = self.buf.capacity();
        let out = self.buf.split().freeze();
        self.buf.reserve(cap);
        out
    }

    /// Number of messages built so far.
    pub fn message_count(&self) -> usize {
        self.ends.len()
    }

    /// Octets built so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was built.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All messages back to back, ready to write to the socket (or to send as
    /// [`crate::RawMessages`]).
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }

    /// The messages one by one (zero-copy slices of one buffer).
    pub fn into_messages(self) -> Vec<Bytes> {
        let all = self.buf.freeze();
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let m = all.slice(start..end);
                start = end;
                m
            })
            .collect()
    }

    fn begin(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.put_slice(&MARKER);
        self.buf.put_u16(0);
        self.buf.put_u8(msg_type::UPDATE);
        start
    }

    fn end(&mut self, start: usize) {
        let len = self.buf.len() - start;
        patch_u16(&mut self.buf, start + 16, len);
        self.ends.push(self.buf.len());
    }

    /// Announces `prefixes` with `attrs` and `next_hop`. IPv4 prefixes go in the classic NLRI
    /// field with NEXT_HOP when the next hop is IPv4, or in MP_REACH_NLRI with an IPv6 next hop
    /// when RFC 8950 is negotiated; IPv6 prefixes go in MP_REACH_NLRI (an IPv4 next hop is sent
    /// as its IPv4-mapped IPv6 address).
    pub fn announce(
        &mut self,
        attrs: &EncodedAttributes,
        next_hop: NextHop,
        prefixes: &[IpNet],
    ) -> Result<(), EncodeError> {
        let v4 = prefixes.iter().filter(|p| matches!(p, IpNet::V4(_)));
        match next_hop {
            NextHop::V4(nh) => self.announce_classic(attrs, nh, v4)?,
            NextHop::V6 { global, .. } => {
                if prefixes.iter().any(|p| matches!(p, IpNet::V4(_))) {
                    if !self.ctx.extended_next_hop(Family::Ipv4Unicast) {
                        return Err(EncodeError::NextHopFamily {
                            family: Family::Ipv4Unicast,
                            next_hop: IpAddr::V6(global),
                        });
                    }
                    self.announce_mp(attrs, Family::Ipv4Unicast, &next_hop, v4)?;
                }
            }
        }
        let v6_nh = match next_hop {
            NextHop::V4(a) => NextHop::V6 {
                global: a.to_ipv6_mapped(),
                link_local: None,
            },
            nh => nh,
        };
        let v6 = prefixes.iter().filter(|p| matches!(p, IpNet::V6(_)));
        self.announce_mp(attrs, Family::Ipv6Unicast, &v6_nh, v6)
    }

    fn announce_classic<'p>(
        &mut self,
        a: &EncodedAttributes,
        nh: Ipv4Addr,
        prefixes: impl Iterator<Item = &'p IpNet>,
    ) -> Result<(), EncodeError> {
        let ap = self.ctx.add_path_tx(Family::Ipv4Unicast);
        let max = self.ctx.max_message_len();
        // NEXT_HOP is 7 octets.
        let attr_len = a.block.len() + 7;
        if HEADER_LEN + 4 + attr_len + MAX_PREFIX_LEN > max {
            return Err(EncodeError::AttributesTooLong { length: attr_len });
        }
        let mut start: Option<usize> = None;
        for p in prefixes {
            let sz = nlri::encoded_len(p, ap);
            let fits = start.is_some_and(|s| self.buf.len() - s + sz <= max);
            if !fits {
                if let Some(s) = start {
                    self.end(s);
                }
                let s = self.begin();
                self.buf.put_u16(0);
                self.buf.put_u16(attr_len as u16);
                self.buf.put_slice(&a.block[..a.split]);
                attributes::put_next_hop(&mut self.buf, nh);
                self.buf.put_slice(&a.block[a.split..]);
                start = Some(s);
            }
            nlri::encode(p, ap, &mut self.buf);
        }
        if let Some(s) = start {
            self.end(s);
        }
        Ok(())
    }

    fn announce_mp<'p>(
        &mut self,
        a: &EncodedAttributes,
        family: Family,
        nh: &NextHop,
        prefixes: impl Iterator<Item = &'p IpNet>,
    ) -> Result<(), EncodeError> {
        let ap = self.ctx.add_path_tx(family);
        let max = self.ctx.max_message_len();
        let nh_len = match nh {
            NextHop::V4(_) => 4,
            NextHop::V6 {
                link_local: None, ..
            } => 16,
            NextHop::V6 {
                link_local: Some(_),
                ..
            } => 32,
        };
        let fixed = HEADER_LEN + 4 + MP_REACH_HEAD + nh_len + 1 + a.block.len();
        if fixed + MAX_PREFIX_LEN > max {
            return Err(EncodeError::AttributesTooLong {
                length: a.block.len(),
            });
        }
        // (message start, MP_REACH length field offset)
        let mut open: Option<(usize, usize)> = None;
        for p in prefixes {
            let sz = nlri::encoded_len(p, ap);
            match open {
                Some((s, _)) if self.buf.len() - s + sz + a.block.len() <= max => {}
                _ => {
                    if let Some((s, l)) = open {
                        self.close_mp(a, s, l);
                    }
                    let s = self.begin();
                    self.buf.put_u16(0);
                    self.buf.put_u16(0);
                    self.buf.put_u8(flags::OPTIONAL | flags::EXTENDED_LENGTH);
                    self.buf.put_u8(tc::MP_REACH_NLRI);
                    let l = self.buf.len();
                    self.buf.put_u16(0);
                    put_afi_safi(&mut self.buf, family);
                    put_mp_next_hop(&mut self.buf, nh);
                    self.buf.put_u8(0);
                    open = Some((s, l));
                }
            }
            nlri::encode(p, ap, &mut self.buf);
        }
        if let Some((s, l)) = open {
            self.close_mp(a, s, l);
        }
        Ok(())
    }

    /// Patches the MP attribute length, appends the attribute block, patches the total
    /// attribute length and ends the message.
    fn close_mp(&mut self, a: &EncodedAttributes, start: usize, len_at: usize) {
        let mp_len = self.buf.len() - len_at - 2;
        patch_u16(&mut self.buf, len_at, mp_len);
        self.buf.put_slice(&a.block);
        let attr_len = self.buf.len() - start - HEADER_LEN - 4;
        patch_u16(&mut self.buf, start + HEADER_LEN + 2, attr_len);
        self.end(start);
    }

    /// Withdraws `prefixes`: IPv4 in the classic withdrawn routes field, IPv6 in
    /// MP_UNREACH_NLRI.
    pub fn withdraw(&mut self, prefixes: &[IpNet]) {
        let ap4 = self.ctx.add_path_tx(Family::Ipv4Unicast);
        let ap6 = self.ctx.add_path_tx(Family::Ipv6Unicast);
        let max = self.ctx.max_message_len();
        let mut open: Option<usize> = None;
        for p in prefixes.iter().filter(|p| matches!(p, IpNet::V4(_))) {
            let sz = nlri::encoded_len(p, ap4);
            match open {
                // Room for the 2-octet total attribute length that closes the message.
                Some(s) if self.buf.len() - s + sz + 2 <= max => {}
                _ => {
                    if let Some(s) = open {
                        self.close_withdraw_v4(s);
                    }
                    let s = self.begin();
                    self.buf.put_u16(0);
                    open = Some(s);
                }
            }
            nlri::encode(p, ap4, &mut self.buf);
        }
        if let Some(s) = open {
            self.close_withdraw_v4(s);
        }
        let mut open: Option<usize> = None;
        for p in prefixes.iter().filter(|p| matches!(p, IpNet::V6(_))) {
            let sz = nlri::encoded_len(p, ap6);
            match open {
                Some(s) if self.buf.len() - s + sz <= max => {}
                _ => {
                    if let Some(s) = open {
                        self.close_withdraw_mp(s);
                    }
                    let s = self.begin();
                    self.buf.put_u16(0);
                    self.buf.put_u16(0);
                    self.buf.put_u8(flags::OPTIONAL | flags::EXTENDED_LENGTH);
                    self.buf.put_u8(tc::MP_UNREACH_NLRI);
                    self.buf.put_u16(0);
                    put_afi_safi(&mut self.buf, Family::Ipv6Unicast);
                    open = Some(s);
                }
            }
            nlri::encode(p, ap6, &mut self.buf);
        }
        if let Some(s) = open {
            self.close_withdraw_mp(s);
        }
    }

    fn close_withdraw_v4(&mut self, start: usize) {
        let wlen = self.buf.len() - start - HEADER_LEN - 2;
        patch_u16(&mut self.buf, start + HEADER_LEN, wlen);
        self.buf.put_u16(0);
        self.end(start);
    }

    fn close_withdraw_mp(&mut self, start: usize) {
        let attr_len = self.buf.len() - start - HEADER_LEN - 4;
        patch_u16(&mut self.buf, start + HEADER_LEN + 2, attr_len);
        // MP_UNREACH length: after flags(1), type(1), length(2).
        patch_u16(&mut self.buf, start + HEADER_LEN + 6, attr_len - 4);
        self.end(start);
    }

    /// Appends the End-of-RIB marker for `family` (RFC 4724 §2).
    pub fn end_of_rib(&mut self, family: Family) {
        let s = self.begin();
        self.buf.put_u16(0);
        if family == Family::Ipv4Unicast {
            self.buf.put_u16(0);
        } else {
            // Short form, as FRR, BIRD and GoBGP send it.
            self.buf.put_u16(MP_UNREACH_HEAD as u16 - 1);
            self.buf.put_u8(flags::OPTIONAL);
            self.buf.put_u8(tc::MP_UNREACH_NLRI);
            self.buf.put_u8(3);
            put_afi_safi(&mut self.buf, family);
        }
        self.end(s);
    }
}

/// Encodes announcements of `prefixes` with one attribute set into as few UPDATEs as possible.
pub fn encode_updates(
    attrs: &PathAttributes,
    next_hop: NextHop,
    prefixes: &[IpNet],
    ctx: &SessionContext,
) -> Result<Vec<Bytes>, EncodeError> {
    let enc = EncodedAttributes::new(attrs, ctx);
    let mut b = UpdateBuilder::new(ctx);
    b.announce(&enc, next_hop, prefixes)?;
    Ok(b.into_messages())
}

/// Encodes withdrawals of `prefixes` into as few UPDATEs as possible.
pub fn encode_withdrawals(prefixes: &[IpNet], ctx: &SessionContext) -> Vec<Bytes> {
    let mut b = UpdateBuilder::new(ctx);
    b.withdraw(prefixes);
    b.into_messages()
}
