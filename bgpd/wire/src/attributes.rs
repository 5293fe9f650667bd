//! Path attribute decoding with RFC 7606 error classification, and encoding.
//!
//! Each attribute type has one error action (RFC 7606 §7, RFC 6793 §6, RFC 8092 §6), listed in
//! [`action_for`]; the README has the same table.
//!
//! About 800 lines on purpose: each attribute's decoding and encoding side by side, so the
//! encoder writes exactly what the decoder's rules accept (the `roundtrip` fuzz target checks
//! that the pair reaches a fixpoint).

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::context::{AS_TRANS, SessionContext};
use crate::error::{DecodeError, attribute_data};
use crate::nlri;
use crate::notification::update as sub;
use crate::reader::Reader;
use crate::types::{
    Aggregator, AsPath, AsSegment, AttrError, AttrErrorReason, Community, ExtendedCommunity,
    Family, LargeCommunity, MpReach, MpUnreach, NextHop, Origin, PathAttributes, RawAttribute,
};

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod type_code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

use flags::{EXTENDED_LENGTH, OPTIONAL, PARTIAL, TRANSITIVE};
use type_code as tc;

/// What RFC 7606 says to do with a malformed attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorAction {
    /// Drop the attribute and go on (RFC 7606 §2).
    AttributeDiscard,
    /// Withdraw every route in the UPDATE (RFC 7606 §2).
    TreatAsWithdraw,
    /// NOTIFICATION and close (RFC 4271 §6).
    SessionReset,
}

/// The RFC 7606 action for a malformed attribute of this type (flags, length or value).
pub fn action_for(type_code: u8) -> ErrorAction {
    match type_code {
        // §7.1-§7.5, §7.8-§7.10, §7.14, RFC 8092 §6.
        tc::ORIGIN
        | tc::AS_PATH
        | tc::NEXT_HOP
        | tc::MULTI_EXIT_DISC
        | tc::LOCAL_PREF
        | tc::COMMUNITIES
        | tc::ORIGINATOR_ID
        | tc::CLUSTER_LIST
        | tc::EXTENDED_COMMUNITIES
        | tc::LARGE_COMMUNITY => ErrorAction::TreatAsWithdraw,
        // §7.6, §7.7, RFC 6793 §6.
        tc::ATOMIC_AGGREGATE | tc::AGGREGATOR | tc::AS4_PATH | tc::AS4_AGGREGATOR => {
            ErrorAction::AttributeDiscard
        }
        // §7.11, §7.12 (we do not implement "AFI/SAFI disable").
        tc::MP_REACH_NLRI | tc::MP_UNREACH_NLRI => ErrorAction::SessionReset,
        // Unknown optional attributes are never malformed; unknown well-known ones reset.
        _ => ErrorAction::SessionReset,
    }
}

/// Optional and Transitive bits each known type must carry (RFC 4271 §5, per-attribute RFCs).
fn expected_flags(type_code: u8) -> Option<u8> {
    match type_code {
        tc::ORIGIN | tc::AS_PATH | tc::NEXT_HOP | tc::LOCAL_PREF | tc::ATOMIC_AGGREGATE => {
            Some(TRANSITIVE)
        }
        tc::MULTI_EXIT_DISC
        | tc::ORIGINATOR_ID
        | tc::CLUSTER_LIST
        | tc::MP_REACH_NLRI
        | tc::MP_UNREACH_NLRI => Some(OPTIONAL),
        tc::AGGREGATOR
        | tc::COMMUNITIES
        | tc::EXTENDED_COMMUNITIES
        | tc::AS4_PATH
        | tc::AS4_AGGREGATOR
        | tc::LARGE_COMMUNITY => Some(OPTIONAL | TRANSITIVE),
        _ => None,
    }
}

/// Everything the attribute block of one UPDATE yielded.
#[derive(Debug, Default)]
pub(crate) struct DecodedAttributes {
    pub attrs: PathAttributes,
    /// Whether any attribute other than MP_REACH/MP_UNREACH was present.
    pub any: bool,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Whether an MP_REACH_NLRI attribute was present, even one for a family we skip.
    pub mp_reach_seen: bool,
    pub treat_as_withdraw: Option<AttrError>,
    pub discarded: Vec<AttrError>,
    seen: [u64; 4],
}

impl DecodedAttributes {
    pub(crate) fn seen(&self, t: u8) -> bool {
        self.seen[usize::from(t / 64)] & (1 << (t % 64)) != 0
    }

    fn mark(&mut self, t: u8) {
        self.seen[usize::from(t / 64)] |= 1 << (t % 64);
    }

    /// Records an error with the given action (RFC 7606 §3.h: the strongest action wins; the
    /// first treat-as-withdraw cause is kept for logs).
    fn fail(&mut self, type_code: u8, reason: AttrErrorReason, action: ErrorAction) {
        let e = AttrError { type_code, reason };
        match action {
            ErrorAction::AttributeDiscard => self.discarded.push(e),
            ErrorAction::TreatAsWithdraw | ErrorAction::SessionReset => {
                if self.treat_as_withdraw.is_none() {
                    self.treat_as_withdraw = Some(e);
                }
            }
        }
    }
}

/// Decodes the path attribute field of an UPDATE. `body` is the whole message body (for
/// zero-copy slices of unknown attributes); `field` is the attribute field within it.
///
/// Errors returned are session resets; everything RFC 7606 lets through is recorded in the
/// result.
pub(crate) fn decode_attributes(
    body: &Bytes,
    field: &[u8],
    ctx: &SessionContext,
) -> Result<DecodedAttributes, DecodeError> {
    let mut d = DecodedAttributes::default();
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let mut r = Reader::new(field);
    while !r.is_empty() {
        // RFC 7606 §4: an attribute header or value overrunning the field is treat-as-withdraw,
        // and the field's total length still locates the NLRI.
        let (Some(fl), Some(t)) = (r.u8(), r.u8()) else {
            d.fail(0, AttrErrorReason::BadLength, ErrorAction::TreatAsWithdraw);
            break;
        };
        let len = if fl & EXTENDED_LENGTH != 0 {
            r.u16()
        } else {
            r.u8().map(u16::from)
        };
        let Some(value) = len.and_then(|l| r.take(usize::from(l))) else {
            d.fail(t, AttrErrorReason::BadLength, ErrorAction::TreatAsWithdraw);
            break;
        };

        // RFC 7606 §3.g: MP_REACH/MP_UNREACH twice is a session reset; other duplicates are
        // discarded after the first.
        if d.seen(t) {
            if t == tc::MP_REACH_NLRI || t == tc::MP_UNREACH_NLRI {
                return Err(reset(
                    sub::MALFORMED_ATTRIBUTE_LIST,
                    t,
                    AttrErrorReason::Duplicate,
                    Bytes::new(),
                ));
            }
            d.discarded.push(AttrError {
                type_code: t,
                reason: AttrErrorReason::Duplicate,
            });
            continue;
        }
        d.mark(t);
        if t != tc::MP_REACH_NLRI && t != tc::MP_UNREACH_NLRI {
            d.any = true;
        }

        // RFC 7606 §3.c: Optional/Transitive bits in conflict make the attribute malformed.
        if let Some(want) = expected_flags(t)
            && fl & (OPTIONAL | TRANSITIVE) != want
        {
            match action_for(t) {
                ErrorAction::SessionReset => {
                    return Err(reset(
                        sub::ATTRIBUTE_FLAGS_ERROR,
                        t,
                        AttrErrorReason::BadFlags,
                        attribute_data(fl, t, value),
                    ));
                }
                action => {
                    d.fail(t, AttrErrorReason::BadFlags, action);
                    continue;
                }
            }
        }

        let outcome = match t {
            tc::ORIGIN => match value {
                [0] => {
                    d.attrs.origin = Origin::Igp;
                    Ok(())
                }
                [1] => {
                    d.attrs.origin = Origin::Egp;
                    Ok(())
                }
                [2] => {
                    d.attrs.origin = Origin::Incomplete;
                    Ok(())
                }
                [_] => Err(AttrErrorReason::BadValue),
                _ => Err(AttrErrorReason::BadLength),
            },
            tc::AS_PATH => match decode_as_path(value, ctx.as_width()) {
                Some(p) => {
                    d.attrs.as_path = p;
                    Ok(())
                }
                None => Err(AttrErrorReason::BadValue),
            },
            tc::NEXT_HOP => match value {
                [a, b, c, e] => {
                    let nh = Ipv4Addr::new(*a, *b, *c, *e);
                    // RFC 4271 §6.3 / RFC 7606 §7.3: not a valid host address.
                    if nh.is_unspecified() || nh.is_broadcast() || nh.is_multicast() {
                        Err(AttrErrorReason::BadNextHop)
                    } else {
                        {
                            d.attrs.next_hop = Some(nh);
                            Ok(())
                        }
                    }
                }
                _ => Err(AttrErrorReason::BadLength),
            },
            tc::MULTI_EXIT_DISC => u32_value(value).map(|v| d.attrs.med = Some(v)),
            tc::LOCAL_PREF => u32_value(value).map(|v| d.attrs.local_pref = Some(v)),
            tc::ATOMIC_AGGREGATE => {
                if value.is_empty() {
                    {
                        d.attrs.atomic_aggregate = true;
                        Ok(())
                    }
                } else {
                    Err(AttrErrorReason::BadLength)
                }
            }
            tc::AGGREGATOR => match decode_aggregator(value, ctx.as_width()) {
                Some(a) => {
                    d.attrs.aggregator = Some(a);
                    Ok(())
                }
                None => Err(AttrErrorReason::BadLength),
            },
            tc::COMMUNITIES => chunks::<4>(value).map(|it| {
                d.attrs.communities = it.map(|c| Community(u32::from_be_bytes(c))).collect();
            }),
            tc::ORIGINATOR_ID => {
                u32_value(value).map(|v| d.attrs.originator_id = Some(Ipv4Addr::from(v)))
            }
            tc::CLUSTER_LIST => chunks::<4>(value).map(|it| {
                d.attrs.cluster_list = it.map(Ipv4Addr::from).collect();
            }),
            tc::EXTENDED_COMMUNITIES => chunks::<8>(value).map(|it| {
                d.attrs.extended_communities = it.map(ExtendedCommunity).collect();
            }),
            tc::LARGE_COMMUNITY => chunks::<12>(value).map(|it| {
                d.attrs.large_communities = it
                    .map(|c| {
                        let w = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                        LargeCommunity {
                            global_admin: w(0),
                            local1: w(4),
                            local2: w(8),
                        }
                    })
                    .collect();
            }),
            tc::AS4_PATH => {
                if ctx.four_octet_as {
                    // RFC 6793 §4.1: a NEW speaker ignores AS4_PATH from a NEW speaker.
                    Ok(())
                } else {
                    match decode_as_path(value, 4) {
                        // RFC 6793 §6: confederation segments in AS4_PATH make it malformed.
                        Some(p) if !p.segments.iter().any(is_confed) => {
                            as4_path = Some(p);
                            Ok(())
                        }
                        _ => Err(AttrErrorReason::BadValue),
                    }
                }
            }
            tc::AS4_AGGREGATOR => {
                if ctx.four_octet_as {
                    Ok(())
                } else {
                    match decode_aggregator(value, 4) {
                        Some(a) => {
                            as4_aggregator = Some(a);
                            Ok(())
                        }
                        None => Err(AttrErrorReason::BadLength),
                    }
                }
            }
            tc::MP_REACH_NLRI => {
                d.mp_reach_seen = true;
                d.mp_reach = decode_mp_reach(value, ctx).map_err(|reason| {
                    reset(
                        sub::OPTIONAL_ATTRIBUTE_ERROR,
                        t,
                        reason,
                        attribute_data(fl, t, value),
                    )
                })?;
                Ok(())
            }
            tc::MP_UNREACH_NLRI => {
                d.mp_unreach = decode_mp_unreach(value, ctx).map_err(|reason| {
                    reset(
                        sub::OPTIONAL_ATTRIBUTE_ERROR,
                        t,
                        reason,
                        attribute_data(fl, t, value),
                    )
                })?;
                Ok(())
            }
            _ => {
                if fl & OPTIONAL == 0 {
                    // RFC 4271 §6.3: an unrecognized well-known attribute.
                    return Err(reset(
                        sub::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                        t,
                        AttrErrorReason::BadFlags,
                        attribute_data(fl, t, value),
                    ));
                }
                // RFC 4271 §5: optional transitive attributes are passed on, non-transitive
                // ones are quietly ignored.
                if fl & TRANSITIVE != 0 {
                    d.attrs.unknown.push(RawAttribute {
                        flags: fl & (OPTIONAL | TRANSITIVE | PARTIAL),
                        type_code: t,
                        value: body.slice_ref(value),
                    });
                }
                Ok(())
            }
        };
        if let Err(reason) = outcome {
            d.fail(t, reason, action_for(t));
        }
    }

    // RFC 6793 §4.2.3: rebuild the 4-octet path on a 2-octet session.
    if !ctx.four_octet_as {
        merge_as4(&mut d.attrs, as4_path, as4_aggregator);
    }
    // Attributes are kept "in type order"; the wire order is only a SHOULD.
    d.attrs.unknown.sort_by_key(|a| a.type_code);
    Ok(d)
}

fn reset(subcode: u8, type_code: u8, reason: AttrErrorReason, data: Bytes) -> DecodeError {
    DecodeError::Update {
        subcode,
        error: AttrError { type_code, reason },
        data,
    }
}

fn u32_value(v: &[u8]) -> Result<u32, AttrErrorReason> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .map_err(|_| AttrErrorReason::BadLength)
}

/// Splits a list attribute into N-octet items; empty or ragged lists are malformed
/// (RFC 7606 §7.8, §7.10, §7.14, RFC 8092 §6).
fn chunks<const N: usize>(v: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, AttrErrorReason> {
    if v.is_empty() || !v.len().is_multiple_of(N) {
        return Err(AttrErrorReason::BadLength);
    }
    Ok(v.chunks_exact(N)
        .filter_map(|c| <[u8; N]>::try_from(c).ok()))
}

fn is_confed(s: &AsSegment) -> bool {
    matches!(s, AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_))
}

/// AS_PATH / AS4_PATH with `width`-octet ASNs. RFC 7606 §7.2: unknown segment types, zero-length
/// segments, overruns and trailing octets make the path malformed.
pub(crate) fn decode_as_path(v: &[u8], width: usize) -> Option<AsPath> {
    let mut r = Reader::new(v);
    // Sized for the usual single segment: `push` on an empty Vec reserves four (128 bytes
    // per interned attribute set, 40 MB of a 330,000-set table); the rare longer path is
    // shrunk to fit below.
    let mut segments = Vec::with_capacity(1);
    while !r.is_empty() {
        let (seg_type, n) = (r.u8()?, r.u8()?);
        if n == 0 {
            return None;
        }
        let raw = r.take(usize::from(n) * width)?;
        let asns: Vec<u32> = if width == 4 {
            raw.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            raw.chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        };
        segments.push(match seg_type {
            1 => AsSegment::Set(asns),
            2 => AsSegment::Sequence(asns),
            3 => AsSegment::ConfedSequence(asns),
            4 => AsSegment::ConfedSet(asns),
            _ => return None,
        });
    }
    segments.shrink_to_fit();
    Some(AsPath { segments })
}

fn decode_aggregator(v: &[u8], width: usize) -> Option<Aggregator> {
    let mut r = Reader::new(v);
    if v.len() != width + 4 {
        return None;
    }
    let asn = if width == 4 {
        r.u32()?
    } else {
        u32::from(r.u16()?)
    };
    Some(Aggregator {
        asn,
        address: Ipv4Addr::from(r.u32()?),
    })
}

/// RFC 6793 §4.2.3.
fn merge_as4(
    attrs: &mut PathAttributes,
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
) {
    if let Some(agg) = attrs.aggregator {
        // "If the AGGREGATOR attribute ... carries an AS number other than AS_TRANS, then
        // AS4_AGGREGATOR and AS4_PATH MUST be ignored."
        if agg.asn != u32::from(AS_TRANS) {
            return;
        }
        if let Some(a4) = as4_aggregator {
            attrs.aggregator = Some(a4);
        }
    }
    let Some(as4) = as4_path else { return };
    let n2 = path_len(&attrs.as_path);
    let n4 = path_len(&as4);
    // "If the number of AS numbers in the AS_PATH attribute is less than the number of AS
    // numbers in the AS4_PATH attribute, then the AS4_PATH attribute SHALL be ignored."
    if n2 < n4 {
        return;
    }
    // Keep the leading n2 - n4 ASNs of AS_PATH, then append AS4_PATH.
    let mut keep = n2 - n4;
    let mut merged = Vec::with_capacity(attrs.as_path.segments.len() + as4.segments.len());
    for seg in &attrs.as_path.segments {
        // Confederation segments count zero and never appear in AS4_PATH, so they are kept
        // even once the AS count is used up.
        if keep == 0 && !is_confed(seg) {
            break;
        }
        match seg {
            AsSegment::Sequence(v) => {
                let k = keep.min(v.len());
                merged.push(AsSegment::Sequence(v[..k].to_vec()));
                keep -= k;
            }
            AsSegment::Set(_) => {
                merged.push(seg.clone());
                keep -= 1;
            }
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => merged.push(seg.clone()),
        }
    }
    let joins = matches!(
        (merged.last(), as4.segments.first()),
        (Some(AsSegment::Sequence(_)), Some(AsSegment::Sequence(_)))
    );
    let mut rest = as4.segments.into_iter();
    // A sequence cut from AS_PATH continues into AS4_PATH's leading sequence: join them.
    if joins
        && let (Some(AsSegment::Sequence(head)), Some(AsSegment::Sequence(tail))) =
            (merged.last_mut(), rest.next())
    {
        head.extend(tail);
    }
    merged.extend(rest);
    attrs.as_path = AsPath { segments: merged };
}

/// Path length for RFC 6793 §4.2.3 counting: each AS_SET counts 1, confederation segments 0.
fn path_len(p: &AsPath) -> usize {
    p.segments
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
        })
        .sum()
}

/// RFC 4760 §3 / RFC 2545 §3 / RFC 8950 §3. `Ok(None)` for families we do not carry.
fn decode_mp_reach(v: &[u8], ctx: &SessionContext) -> Result<Option<MpReach>, AttrErrorReason> {
    let mut r = Reader::new(v);
    let (Some(afi), Some(safi), Some(nh_len)) = (r.u16(), r.u8(), r.u8()) else {
        return Err(AttrErrorReason::BadLength);
    };
    let nh = r
        .take(usize::from(nh_len))
        .ok_or(AttrErrorReason::BadLength)?;
    // Reserved octet (formerly the SNPA count), ignored on receipt.
    r.u8().ok_or(AttrErrorReason::BadLength)?;
    let family = Family::from_afi_safi(afi, safi);
    let v6 = |b: &[u8]| <[u8; 16]>::try_from(b).map(Ipv6Addr::from).ok();
    let next_hop = match (family, nh.len()) {
        (Family::Other { .. }, _) => return Ok(None),
        (Family::Ipv4Unicast, 4) => NextHop::V4(Ipv4Addr::from(
            u32_value(nh).map_err(|_| AttrErrorReason::BadNextHop)?,
        )),
        (_, 16) => NextHop::V6 {
            global: v6(nh).ok_or(AttrErrorReason::BadNextHop)?,
            link_local: None,
        },
        (_, 32) => NextHop::V6 {
            global: v6(&nh[..16]).ok_or(AttrErrorReason::BadNextHop)?,
            link_local: Some(v6(&nh[16..]).ok_or(AttrErrorReason::BadNextHop)?),
        },
        // RFC 7606 §7.11: an unexpected next hop length makes the NLRI unlocatable.
        _ => return Err(AttrErrorReason::BadNextHop),
    };
    let mut prefixes = Vec::new();
    let add_path = ctx.add_path_rx(family);
    let ok = match family {
        Family::Ipv4Unicast => nlri::decode_v4(r.rest(), add_path, &mut prefixes),
        _ => nlri::decode_v6(r.rest(), add_path, &mut prefixes),
    };
    ok.map_err(|_| AttrErrorReason::BadValue)?;
    Ok(Some(MpReach {
        family,
        next_hop,
        nlri: prefixes,
    }))
}

/// RFC 4760 §4. `Ok(None)` for families we do not carry, unless empty (an End-of-RIB marker).
fn decode_mp_unreach(v: &[u8], ctx: &SessionContext) -> Result<Option<MpUnreach>, AttrErrorReason> {
    let mut r = Reader::new(v);
    let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
        return Err(AttrErrorReason::BadLength);
    };
    let family = Family::from_afi_safi(afi, safi);
    let mut withdrawn = Vec::new();
    let add_path = ctx.add_path_rx(family);
    let ok = match family {
        Family::Ipv4Unicast => nlri::decode_v4(r.rest(), add_path, &mut withdrawn),
        Family::Ipv6Unicast => nlri::decode_v6(r.rest(), add_path, &mut withdrawn),
        Family::Other { .. } if r.is_empty() => Ok(()),
        Family::Other { .. } => return Ok(None),
    };
    ok.map_err(|_| AttrErrorReason::BadValue)?;
    Ok(Some(MpUnreach { family, withdrawn }))
}

// ===== encoding =====

/// Appends one attribute header + value, choosing the extended length form when needed.
pub(crate) fn put_attr(out: &mut BytesMut, fl: u8, t: u8, value: &[u8]) {
    if value.len() > 255 {
        out.put_u8(fl | EXTENDED_LENGTH);
        out.put_u8(t);
        out.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
    } else {
        out.put_u8(fl & !EXTENDED_LENGTH);
        out.put_u8(t);
        out.put_u8(value.len() as u8);
    }
    out.put_slice(value);
}

/// Appends one attribute always in the extended length form (used for MP_REACH/MP_UNREACH,
/// whose length is patched after the NLRI are written; FRR does the same).
pub(crate) fn put_attr_ext(out: &mut BytesMut, fl: u8, t: u8, value: &[u8]) {
    out.put_u8(fl | EXTENDED_LENGTH);
    out.put_u8(t);
    out.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
    out.put_slice(value);
}

/// Encodes segments with `width`-octet ASNs; a 2-octet encoding replaces larger ASNs with
/// AS_TRANS. Segments longer than 255 ASNs are split. Returns whether AS_TRANS was used.
fn encode_as_path(path: &AsPath, width: usize, skip_confed: bool, out: &mut BytesMut) -> bool {
    let mut trans = false;
    for seg in &path.segments {
        let (kind, asns) = match seg {
            AsSegment::Set(v) => (1u8, v),
            AsSegment::Sequence(v) => (2, v),
            AsSegment::ConfedSequence(v) => (3, v),
            AsSegment::ConfedSet(v) => (4, v),
        };
        if skip_confed && kind >= 3 {
            continue;
        }
        for chunk in asns.chunks(255) {
            out.put_u8(kind);
            out.put_u8(chunk.len() as u8);
            for &asn in chunk {
                if width == 4 {
                    out.put_u32(asn);
                } else {
                    let a = u16::try_from(asn).unwrap_or(AS_TRANS);
                    trans |= asn > u32::from(u16::MAX);
                    out.put_u16(a);
                }
            }
        }
    }
    trans
}

/// The encoded attribute block of one attribute set, split around where NEXT_HOP goes so the
/// same bytes serve classic IPv4 UPDATEs (with NEXT_HOP) and MP_REACH ones (without).
pub(crate) struct AttrBlock {
    pub bytes: Bytes,
    /// Offset of the first attribute with a type code above NEXT_HOP.
    pub split: usize,
}

/// Encodes every attribute of `attrs` except NEXT_HOP, in type order.
pub(crate) fn encode_block(attrs: &PathAttributes, ctx: &SessionContext) -> AttrBlock {
    let mut out = BytesMut::with_capacity(64);
    let mut unknown = attrs
        .unknown
        .iter()
        .filter(|u| expected_flags(u.type_code).is_none())
        .peekable();
    let mut flush_below = |out: &mut BytesMut, t: u8| {
        while let Some(u) = unknown.next_if(|u| u.type_code < t) {
            let mut fl = u.flags & (OPTIONAL | TRANSITIVE | PARTIAL);
            // RFC 4271 §5: an unrecognised optional transitive attribute is passed on with
            // the Partial bit set.
            if fl & (OPTIONAL | TRANSITIVE) == OPTIONAL | TRANSITIVE {
                fl |= PARTIAL;
            }
            put_attr(out, fl, u.type_code, &u.value);
        }
    };
    let width = ctx.as_width();
    let mut scratch = BytesMut::with_capacity(64);

    flush_below(&mut out, tc::ORIGIN);
    put_attr(&mut out, TRANSITIVE, tc::ORIGIN, &[attrs.origin as u8]);
    flush_below(&mut out, tc::AS_PATH);
    let needs_as4_path = encode_as_path(&attrs.as_path, width, false, &mut scratch);
    put_attr(&mut out, TRANSITIVE, tc::AS_PATH, &scratch);
    flush_below(&mut out, tc::NEXT_HOP + 1);
    let split = out.len();
    flush_below(&mut out, tc::MULTI_EXIT_DISC);
    if let Some(med) = attrs.med {
        put_attr(&mut out, OPTIONAL, tc::MULTI_EXIT_DISC, &med.to_be_bytes());
    }
    flush_below(&mut out, tc::LOCAL_PREF);
    if let Some(lp) = attrs.local_pref {
        put_attr(&mut out, TRANSITIVE, tc::LOCAL_PREF, &lp.to_be_bytes());
    }
    flush_below(&mut out, tc::ATOMIC_AGGREGATE);
    if attrs.atomic_aggregate {
        put_attr(&mut out, TRANSITIVE, tc::ATOMIC_AGGREGATE, &[]);
    }
    flush_below(&mut out, tc::AGGREGATOR);
    let mut as4_aggregator = None;
    if let Some(agg) = attrs.aggregator {
        scratch.clear();
        if width == 4 {
            scratch.put_u32(agg.asn);
        } else {
            let a = u16::try_from(agg.asn).unwrap_or(AS_TRANS);
            if u32::from(a) != agg.asn {
                as4_aggregator = Some(agg);
            }
            scratch.put_u16(a);
        }
        scratch.put_slice(&agg.address.octets());
        put_attr(&mut out, OPTIONAL | TRANSITIVE, tc::AGGREGATOR, &scratch);
    }
    flush_below(&mut out, tc::COMMUNITIES);
    if !attrs.communities.is_empty() {
        scratch.clear();
        for c in &attrs.communities {
            scratch.put_u32(c.0);
        }
        put_attr(&mut out, OPTIONAL | TRANSITIVE, tc::COMMUNITIES, &scratch);
    }
    flush_below(&mut out, tc::ORIGINATOR_ID);
    if let Some(id) = attrs.originator_id {
        put_attr(&mut out, OPTIONAL, tc::ORIGINATOR_ID, &id.octets());
    }
    flush_below(&mut out, tc::CLUSTER_LIST);
    if !attrs.cluster_list.is_empty() {
        scratch.clear();
        for id in &attrs.cluster_list {
            scratch.put_slice(&id.octets());
        }
        put_attr(&mut out, OPTIONAL, tc::CLUSTER_LIST, &scratch);
    }
    flush_below(&mut out, tc::EXTENDED_COMMUNITIES);
    if !attrs.extended_communities.is_empty() {
        scratch.clear();
        for c in &attrs.extended_communities {
            scratch.put_slice(&c.0);
        }
        put_attr(
            &mut out,
            OPTIONAL | TRANSITIVE,
            tc::EXTENDED_COMMUNITIES,
            &scratch,
        );
    }
    flush_below(&mut out, tc::AS4_PATH);
    // RFC 6793 §4.2.2: a 2-octet session gets AS4_PATH when the path holds 4-octet ASNs.
    if needs_as4_path {
        scratch.clear();
        encode_as_path(&attrs.as_path, 4, true, &mut scratch);
        put_attr(&mut out, OPTIONAL | TRANSITIVE, tc::AS4_PATH, &scratch);
    }
    flush_below(&mut out, tc::AS4_AGGREGATOR);
    if let Some(agg) = as4_aggregator {
        scratch.clear();
        scratch.put_u32(agg.asn);
        scratch.put_slice(&agg.address.octets());
        put_attr(
            &mut out,
            OPTIONAL | TRANSITIVE,
            tc::AS4_AGGREGATOR,
            &scratch,
        );
    }
    flush_below(&mut out, tc::LARGE_COMMUNITY);
    if !attrs.large_communities.is_empty() {
        scratch.clear();
        for c in &attrs.large_communities {
            scratch.put_u32(c.global_admin);
            scratch.put_u32(c.local1);
            scratch.put_u32(c.local2);
        }
        put_attr(
            &mut out,
            OPTIONAL | TRANSITIVE,
            tc::LARGE_COMMUNITY,
            &scratch,
        );
    }
    flush_below(&mut out, u8::MAX);
    // Type 255 is reserved for development; still pass it on if present.
    for u in unknown {
        put_attr(&mut out, u.flags, u.type_code, &u.value);
    }
    AttrBlock {
        bytes: out.freeze(),
        split,
    }
}

/// NEXT_HOP attribute (7 octets).
pub(crate) fn put_next_hop(out: &mut BytesMut, nh: Ipv4Addr) {
    put_attr(out, TRANSITIVE, tc::NEXT_HOP, &nh.octets());
}
