//! The BGP PDUs BMP carries: header checks on what goes in, and the PDUs the client makes
//! itself (End-of-RIB markers, the Loc-RIB peer's fabricated OPEN).

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, PduProblem};
use crate::header::BGP_HEADER_LEN;
use crate::reader::Reader;

/// BGP message types carried inside BMP (RFC 4271 §4.1).
pub(crate) mod bgp_type {
    pub(crate) const OPEN: u8 = 1;
    pub(crate) const UPDATE: u8 = 2;
    pub(crate) const NOTIFICATION: u8 = 3;
}

/// RFC 4271 §4.1 header checks on a PDU that must be exactly one message of type `ty`.
pub(crate) fn check_pdu(pdu: &[u8], ty: u8) -> Result<(), PduProblem> {
    let len = pdu_len(pdu, ty)?;
    if len != pdu.len() {
        return Err(PduProblem::Trailing(pdu.len().saturating_sub(len)));
    }
    Ok(())
}

/// The length of the BGP message of type `ty` at the front of `buf`.
pub(crate) fn pdu_len(buf: &[u8], ty: u8) -> Result<usize, PduProblem> {
    let mut r = Reader::new(buf);
    let marker: [u8; 16] = r.array().ok_or(PduProblem::Truncated)?;
    let len = r.u16().ok_or(PduProblem::Truncated)?;
    let found = r.u8().ok_or(PduProblem::Truncated)?;
    if marker != [0xff; 16] {
        return Err(PduProblem::BadMarker);
    }
    if usize::from(len) < BGP_HEADER_LEN {
        return Err(PduProblem::BadLength(len));
    }
    if found != ty {
        return Err(PduProblem::WrongType {
            expected: ty,
            found,
        });
    }
    if usize::from(len) > buf.len() {
        return Err(PduProblem::Truncated);
    }
    Ok(usize::from(len))
}

pub(crate) fn take_pdu(
    r: &mut Reader<'_>,
    field: &'static str,
    ty: u8,
) -> Result<Bytes, DecodeError> {
    let len = pdu_len(r.rest(), ty).map_err(|problem| DecodeError::BgpPdu { field, problem })?;
    let pdu = r.take(len).ok_or(DecodeError::BgpPdu {
        field,
        problem: PduProblem::Truncated,
    })?;
    Ok(Bytes::copy_from_slice(pdu))
}

/// The End-of-RIB marker for `afi`/`safi` (RFC 4724 §2), sent after the initial dump of
/// each family (RFC 7854 §5): an empty UPDATE for IPv4 unicast, otherwise an UPDATE whose
/// only attribute is an empty MP_UNREACH_NLRI.
pub fn end_of_rib(afi: u16, safi: u8) -> Bytes {
    let mut out = BytesMut::with_capacity(30);
    out.put_bytes(0xff, 16);
    if afi == 1 && safi == 1 {
        out.put_u16(23);
        out.put_u8(bgp_type::UPDATE);
        out.put_u16(0); // withdrawn routes length
        out.put_u16(0); // total path attribute length
    } else {
        out.put_u16(29);
        out.put_u8(bgp_type::UPDATE);
        out.put_u16(0);
        out.put_u16(6);
        out.put_u8(0x80); // optional, non-transitive
        out.put_u8(15); // MP_UNREACH_NLRI (RFC 4760 §4)
        out.put_u8(3);
        out.put_u16(afi);
        out.put_u8(safi);
    }
    out.freeze()
}

/// The fabricated OPEN of the Loc-RIB peer's Peer Up (RFC 9069 §5.2): own AS and BGP
/// identifier, the 4-octet AS capability (mandatory there) and one Multiprotocol capability per
/// family carried.
pub fn loc_rib_open(asn: u32, bgp_id: Ipv4Addr, families: &[(u16, u8)]) -> Bytes {
    let mut params = BytesMut::new();
    // Each capability in its own optional parameter of type 2 (RFC 5492 §4); every value
    // here is 4 octets: parameter length 6, capability length 4.
    let mut cap = |code: u8, value: [u8; 4]| {
        params.put_u8(2);
        params.put_u8(6);
        params.put_u8(code);
        params.put_u8(4);
        params.put_slice(&value);
    };
    for &(afi, safi) in families {
        let [a, b] = afi.to_be_bytes();
        cap(1, [a, b, 0, safi]);
    }
    cap(65, asn.to_be_bytes());
    // The 1-octet parameter length holds 42 capabilities; past that, keep the first ones.
    params.truncate(252);
    let plen = u8::try_from(params.len()).unwrap_or(u8::MAX);
    let total = BGP_HEADER_LEN + 10 + params.len();
    let mut out = BytesMut::with_capacity(total);
    out.put_bytes(0xff, 16);
    out.put_u16(u16::try_from(total).unwrap_or(u16::MAX));
    out.put_u8(bgp_type::OPEN);
    out.put_u8(4);
    // RFC 6793 §4.1: AS_TRANS in My AS when the AS does not fit 2 octets.
    out.put_u16(u16::try_from(asn).unwrap_or(23456));
    out.put_u16(0); // hold time: no session, nothing to negotiate
    out.put_slice(&bgp_id.octets());
    out.put_u8(plen);
    out.put_slice(&params);
    out.freeze()
}
