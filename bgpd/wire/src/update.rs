//! UPDATE decoding (RFC 4271 §4.3, §6.3; RFC 7606) and single-message encoding.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::attributes::{self, decode_attributes, flags, type_code as tc};
use crate::context::SessionContext;
use crate::error::DecodeError;
use crate::nlri;
use crate::reader::Reader;
use crate::types::{AttrError, AttrErrorReason, Family, MpUnreach, NextHop, Update};

/// Decodes an UPDATE body (after the header).
pub(crate) fn decode_update(body: &Bytes, ctx: &SessionContext) -> Result<Update, DecodeError> {
    let mut r = Reader::new(body);
    // RFC 4271 §6.3: lengths that overrun the message are a Malformed Attribute List.
    let wlen = r.u16().ok_or(DecodeError::MalformedAttributeList)?;
    let wfield = r
        .take(usize::from(wlen))
        .ok_or(DecodeError::MalformedAttributeList)?;
    let alen = r.u16().ok_or(DecodeError::MalformedAttributeList)?;
    let afield = r
        .take(usize::from(alen))
        .ok_or(DecodeError::MalformedAttributeList)?;
    let nfield = r.rest();

    let v4_add_path = ctx.add_path_rx(Family::Ipv4Unicast);
    let mut withdrawn = Vec::new();
    nlri::decode_v4(wfield, v4_add_path, &mut withdrawn).map_err(|_| {
        DecodeError::InvalidNetworkField {
            family: Family::Ipv4Unicast,
        }
    })?;
    let d = decode_attributes(body, afield, ctx)?;
    let mut nlri_v4 = Vec::new();
    nlri::decode_v4(nfield, v4_add_path, &mut nlri_v4).map_err(|_| {
        DecodeError::InvalidNetworkField {
            family: Family::Ipv4Unicast,
        }
    })?;

    let mut treat_as_withdraw = d.treat_as_withdraw.clone();
    // RFC 7606 §3.d: missing well-known mandatory attributes with NLRI present is
    // treat-as-withdraw. NEXT_HOP is mandatory only for the classic NLRI field (RFC 4760 §3).
    let has_reach = !nlri_v4.is_empty() || d.mp_reach_seen;
    if has_reach && treat_as_withdraw.is_none() {
        let missing = [tc::ORIGIN, tc::AS_PATH]
            .into_iter()
            .chain((!nlri_v4.is_empty()).then_some(tc::NEXT_HOP))
            .find(|&t| !d.seen(t));
        if let Some(type_code) = missing {
            treat_as_withdraw = Some(AttrError {
                type_code,
                reason: AttrErrorReason::MissingMandatory,
            });
        }
    }
    let mut discarded = d.discarded;
    // RFC 7606 §3.h: attribute-discard entries are moot once the whole UPDATE is withdrawn,
    // but they are kept for logging.
    discarded.shrink_to_fit();
    Ok(Update {
        withdrawn,
        attributes: d.any.then(|| Arc::new(d.attrs)),
        nlri: nlri_v4,
        mp_reach: d.mp_reach,
        mp_unreach: d.mp_unreach,
        treat_as_withdraw,
        discarded,
    })
}

impl Update {
    /// RFC 4724 §2: the End-of-RIB marker this UPDATE is, if any: an UPDATE with nothing in
    /// it for IPv4 unicast, or one whose only content is an empty MP_UNREACH_NLRI.
    pub fn end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn.is_empty()
            || !self.nlri.is_empty()
            || self.attributes.is_some()
            || self.mp_reach.is_some()
        {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::Ipv4Unicast),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    /// The End-of-RIB marker for `family` (RFC 4724 §2).
    pub fn end_of_rib_marker(family: Family) -> Update {
        let mp_unreach = (family != Family::Ipv4Unicast).then(|| MpUnreach {
            family,
            withdrawn: Vec::new(),
        });
        Update {
            mp_unreach,
            ..Default::default()
        }
    }

    /// Whether the receiver must withdraw this UPDATE's routes instead of installing them
    /// (RFC 7606 §2).
    pub fn is_treat_as_withdraw(&self) -> bool {
        self.treat_as_withdraw.is_some()
    }
}

/// Writes an MP_REACH_NLRI/MP_UNREACH_NLRI family header.
pub(crate) fn put_afi_safi(out: &mut BytesMut, family: Family) {
    out.put_u16(family.afi());
    out.put_u8(family.safi());
}

/// The next hop field of MP_REACH_NLRI for `family`. IPv6 NLRI with an IPv4 next hop use the
/// IPv4-mapped IPv6 address (the convention FRR and BIRD follow).
pub(crate) fn put_mp_next_hop(out: &mut BytesMut, nh: &NextHop) {
    match nh {
        NextHop::V4(a) => {
            out.put_u8(4);
            out.put_slice(&a.octets());
        }
        NextHop::V6 { global, link_local } => {
            out.put_u8(if link_local.is_some() { 32 } else { 16 });
            out.put_slice(&global.octets());
            if let Some(ll) = link_local {
                out.put_slice(&ll.octets());
            }
        }
    }
}

/// Encodes an arbitrary [`Update`] as one message body (after the header). MP_UNREACH and
/// MP_REACH come first (RFC 7606 §5.1), then the other attributes in type order with NEXT_HOP
/// when the attribute set has one.
pub(crate) fn encode_update(u: &Update, ctx: &SessionContext, out: &mut BytesMut) {
    let v4_ap = ctx.add_path_tx(Family::Ipv4Unicast);
    let wstart = out.len();
    out.put_u16(0);
    for p in &u.withdrawn {
        nlri::encode(p, v4_ap, out);
    }
    let wlen = out.len() - wstart - 2;
    patch_u16(out, wstart, wlen);
    let astart = out.len();
    out.put_u16(0);
    if let Some(un) = &u.mp_unreach {
        let mut v = BytesMut::new();
        put_afi_safi(&mut v, un.family);
        let ap = ctx.add_path_tx(un.family);
        for p in &un.withdrawn {
            nlri::encode(p, ap, &mut v);
        }
        if un.withdrawn.is_empty() {
            // An End-of-RIB marker: FRR, BIRD and GoBGP all send the short form.
            attributes::put_attr(out, flags::OPTIONAL, tc::MP_UNREACH_NLRI, &v);
        } else {
            attributes::put_attr_ext(out, flags::OPTIONAL, tc::MP_UNREACH_NLRI, &v);
        }
    }
    if let Some(re) = &u.mp_reach {
        let mut v = BytesMut::new();
        put_afi_safi(&mut v, re.family);
        let nh = match (re.family, re.next_hop) {
            // IPv6 NLRI need a 16 or 32 octet next hop.
            (Family::Ipv6Unicast, NextHop::V4(a)) => NextHop::V6 {
                global: a.to_ipv6_mapped(),
                link_local: None,
            },
            (_, nh) => nh,
        };
        put_mp_next_hop(&mut v, &nh);
        v.put_u8(0);
        let ap = ctx.add_path_tx(re.family);
        for p in &re.nlri {
            nlri::encode(p, ap, &mut v);
        }
        attributes::put_attr_ext(out, flags::OPTIONAL, tc::MP_REACH_NLRI, &v);
    }
    if let Some(attrs) = &u.attributes {
        let block = attributes::encode_block(attrs, ctx);
        out.put_slice(&block.bytes[..block.split]);
        if let Some(nh) = attrs.next_hop {
            attributes::put_next_hop(out, nh);
        }
        out.put_slice(&block.bytes[block.split..]);
    }
    let alen = out.len() - astart - 2;
    patch_u16(out, astart, alen);
    for p in &u.nlri {
        nlri::encode(p, v4_ap, out);
    }
}

/// Overwrites a 2-octet length placeholder (lengths above 65535 are caught by the message
/// length check of the caller).
pub(crate) fn patch_u16(out: &mut BytesMut, at: usize, v: usize) {
    let v = u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
    out[at..at + 2].copy_from_slice(&v);
}
