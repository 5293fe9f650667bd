//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and extended optional parameters
//! (RFC 9072).

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::context::capability_code as cc;
use crate::error::{DecodeError, OpenMalformation};
use crate::reader::Reader;
use crate::types::{AddPathEntry, Capability, ExtendedNextHopEntry, Family, GracefulRestart, Open};

/// Optional parameter type for capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: non-extended length 255 followed by type 255 marks the extended format.
const PARAM_EXTENDED: u8 = 255;

fn malformed(reason: OpenMalformation) -> DecodeError {
    DecodeError::MalformedOpen { reason }
}

/// Decodes an OPEN body (after the 19-octet header), with the RFC 4271 §6.2 checks.
pub(crate) fn decode_open(body: &Bytes) -> Result<Open, DecodeError> {
    let mut r = Reader::new(body);
    let (Some(version), Some(my_as), Some(hold_time), Some(id), Some(opt_len)) =
        (r.u8(), r.u16(), r.u16(), r.u32(), r.u8())
    else {
        return Err(malformed(OpenMalformation::ParameterLength));
    };
    if version != 4 {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    // RFC 7607: AS 0 is never valid.
    if my_as == 0 {
        return Err(DecodeError::BadPeerAs { asn: 0 });
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::UnacceptableHoldTime { hold_time });
    }
    let router_id = Ipv4Addr::from(id);
    // RFC 6286 §2.1: any non-zero value.
    if id == 0 {
        return Err(DecodeError::BadBgpIdentifier { router_id });
    }

    let rest = r.rest();
    // RFC 9072 §2: "Non-Ext OP Len" 255 and "Non-Ext OP Type" 255 announce 2-octet lengths.
    let extended = opt_len == 255 && rest.first() == Some(&PARAM_EXTENDED);
    let params = if extended {
        let mut r = Reader::new(rest);
        r.u8();
        let len = r
            .u16()
            .ok_or(malformed(OpenMalformation::ParameterLength))?;
        r.take(usize::from(len))
            .ok_or(malformed(OpenMalformation::ParameterLength))?
    } else {
        r.take(usize::from(opt_len))
            .ok_or(malformed(OpenMalformation::ParameterLength))?
    };
    let consumed = if extended {
        3 + params.len()
    } else {
        params.len()
    };
    if consumed != rest.len() {
        return Err(malformed(OpenMalformation::ParameterLength));
    }

    let mut capabilities = Vec::new();
    let mut p = Reader::new(params);
    while !p.is_empty() {
        let param_type = p.u8().ok_or(malformed(OpenMalformation::ParameterLength))?;
        let len = if extended {
            p.u16()
        } else {
            p.u8().map(u16::from)
        }
        .ok_or(malformed(OpenMalformation::ParameterLength))?;
        let value = p
            .take(usize::from(len))
            .ok_or(malformed(OpenMalformation::ParameterLength))?;
        if param_type != PARAM_CAPABILITIES {
            return Err(DecodeError::UnsupportedOptionalParameter { param_type });
        }
        let mut c = Reader::new(value);
        while !c.is_empty() {
            let (Some(code), Some(clen)) = (c.u8(), c.u8()) else {
                return Err(malformed(OpenMalformation::CapabilityOverrun));
            };
            let cval = c
                .take(usize::from(clen))
                .ok_or(malformed(OpenMalformation::CapabilityOverrun))?;
            let cap = decode_capability(code, cval, body)?;
            if let Capability::FourOctetAs(0) = cap {
                return Err(DecodeError::BadPeerAs { asn: 0 });
            }
            capabilities.push(cap);
        }
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        router_id,
        capabilities,
    })
}

fn decode_capability(code: u8, v: &[u8], whole: &Bytes) -> Result<Capability, DecodeError> {
    let bad = || malformed(OpenMalformation::Capability { code });
    let mut r = Reader::new(v);
    let cap = match code {
        cc::MULTIPROTOCOL => {
            let (Some(afi), Some(_reserved), Some(safi), true) =
                (r.u16(), r.u8(), r.u8(), v.len() == 4)
            else {
                return Err(bad());
            };
            Capability::Multiprotocol(Family::from_afi_safi(afi, safi))
        }
        cc::ROUTE_REFRESH if v.is_empty() => Capability::RouteRefresh,
        cc::EXTENDED_MESSAGE if v.is_empty() => Capability::ExtendedMessage,
        cc::ENHANCED_ROUTE_REFRESH if v.is_empty() => Capability::EnhancedRouteRefresh,
        cc::ROUTE_REFRESH | cc::EXTENDED_MESSAGE | cc::ENHANCED_ROUTE_REFRESH => return Err(bad()),
        cc::FOUR_OCTET_AS => match (r.u32(), v.len()) {
            (Some(asn), 4) => Capability::FourOctetAs(asn),
            _ => return Err(bad()),
        },
        cc::EXTENDED_NEXT_HOP => {
            if !v.len().is_multiple_of(6) {
                return Err(bad());
            }
            let mut entries = Vec::with_capacity(v.len() / 6);
            while let (Some(afi), Some(safi), Some(nh)) = (r.u16(), r.u16(), r.u16()) {
                // RFC 8950 §3: the NLRI SAFI is 2 octets here; only values < 256 exist.
                let safi = u8::try_from(safi).map_err(|_| bad())?;
                entries.push(ExtendedNextHopEntry {
                    nlri: Family::from_afi_safi(afi, safi),
                    nexthop_afi: nh,
                });
            }
            Capability::ExtendedNextHop(entries)
        }
        cc::GRACEFUL_RESTART => {
            let Some(head) = r.u16() else {
                return Err(bad());
            };
            if !(v.len() - 2).is_multiple_of(4) {
                return Err(bad());
            }
            let mut families = Vec::with_capacity((v.len() - 2) / 4);
            while let (Some(afi), Some(safi), Some(flags)) = (r.u16(), r.u8(), r.u8()) {
                families.push((Family::from_afi_safi(afi, safi), flags & 0x80 != 0));
            }
            Capability::GracefulRestart(GracefulRestart {
                restarting: head & 0x8000 != 0,
                notification: head & 0x4000 != 0,
                restart_time: head & 0x0fff,
                families,
            })
        }
        cc::ADD_PATH => {
            if !v.len().is_multiple_of(4) {
                return Err(bad());
            }
            let mut entries = Vec::with_capacity(v.len() / 4);
            while let (Some(afi), Some(safi), Some(sr)) = (r.u16(), r.u8(), r.u8()) {
                // RFC 7911 §4: 1 receive, 2 send, 3 both; anything else is malformed.
                if !(1..=3).contains(&sr) {
                    return Err(bad());
                }
                entries.push(AddPathEntry {
                    family: Family::from_afi_safi(afi, safi),
                    receive: sr & 1 != 0,
                    send: sr & 2 != 0,
                });
            }
            Capability::AddPath(entries)
        }
        _ => Capability::Unknown {
            code,
            value: whole.slice_ref(v),
        },
    };
    Ok(cap)
}

impl Capability {
    /// This capability as one TLV in wire format (code, length, value), as it appears in an
    /// OPEN's capabilities parameter (RFC 5492 §4).
    pub fn to_wire(&self) -> bytes::Bytes {
        let mut out = BytesMut::new();
        encode_capability(self, &mut out);
        out.freeze()
    }
}

/// Encodes one capability TLV (code, length, value).
fn encode_capability(cap: &Capability, out: &mut BytesMut) {
    let start = out.len();
    out.put_u8(cap.code());
    out.put_u8(0);
    match cap {
        Capability::Multiprotocol(f) => {
            out.put_u16(f.afi());
            out.put_u8(0);
            out.put_u8(f.safi());
        }
        Capability::RouteRefresh
        | Capability::ExtendedMessage
        | Capability::EnhancedRouteRefresh => {}
        Capability::ExtendedNextHop(entries) => {
            for e in entries {
                out.put_u16(e.nlri.afi());
                out.put_u16(u16::from(e.nlri.safi()));
                out.put_u16(e.nexthop_afi);
            }
        }
        Capability::GracefulRestart(gr) => {
            let mut head = gr.restart_time & 0x0fff;
            if gr.restarting {
                head |= 0x8000;
            }
            if gr.notification {
                head |= 0x4000;
            }
            out.put_u16(head);
            for (f, fwd) in &gr.families {
                out.put_u16(f.afi());
                out.put_u8(f.safi());
                out.put_u8(if *fwd { 0x80 } else { 0 });
            }
        }
        Capability::FourOctetAs(asn) => out.put_u32(*asn),
        Capability::AddPath(entries) => {
            for e in entries {
                out.put_u16(e.family.afi());
                out.put_u8(e.family.safi());
                out.put_u8(u8::from(e.receive) | (u8::from(e.send) << 1));
            }
        }
        Capability::Unknown { value, .. } => out.put_slice(value),
    }
    // A capability value is at most 255 octets; longer ones are cut by the length octet and
    // would be malformed, so clamp the declared length and drop the excess.
    let len = out.len() - start - 2;
    if len > 255 {
        out.truncate(start + 2 + 255);
    }
    out[start + 1] = len.min(255) as u8;
}

/// Encodes an OPEN body (without header). Each capability goes in its own optional parameter
/// (RFC 5492 §4 allows either; FRR, BIRD and GoBGP accept both); when the parameters exceed
/// 255 octets the RFC 9072 extended format is used.
pub(crate) fn encode_open(open: &Open, out: &mut BytesMut) {
    out.put_u8(open.version);
    out.put_u16(open.my_as);
    out.put_u16(open.hold_time);
    out.put_u32(u32::from(open.router_id));
    let mut caps = BytesMut::new();
    let mut tlvs = Vec::with_capacity(open.capabilities.len());
    for cap in &open.capabilities {
        let s = caps.len();
        encode_capability(cap, &mut caps);
        tlvs.push(s..caps.len());
    }
    let short_len: usize = tlvs.iter().map(|t| t.len() + 2).sum();
    if short_len <= 255 {
        out.put_u8(short_len as u8);
        for t in tlvs {
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u8(t.len() as u8);
            out.put_slice(&caps[t]);
        }
    } else {
        let long_len: usize = tlvs.iter().map(|t| t.len() + 3).sum();
        out.put_u8(255);
        out.put_u8(PARAM_EXTENDED);
        out.put_u16(u16::try_from(long_len).unwrap_or(u16::MAX));
        for t in tlvs {
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u16(t.len() as u16);
            out.put_slice(&caps[t]);
        }
    }
}
