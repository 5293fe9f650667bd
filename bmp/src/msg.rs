//! BMP messages (RFC 7854 §4, RFC 9069 §4-§5): an encoder for everything a monitored router
//! sends, and a decoder for tests, fuzzing and tooling.
//!
//! BGP PDUs (OPENs, UPDATEs, NOTIFICATIONs) are carried as complete BGP messages, 19-octet
//! header included, in [`Bytes`]; only their header is checked here (RFC 7854 §4.6: the
//! collector parses them with the capabilities of the Peer Up OPENs).

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::header::{
    COMMON_HEADER_LEN, PeerHeader, PeerType, VERSION, address_from, info_type, msg_type,
    put_address, term_type,
};
use crate::pdu::{bgp_type, check_pdu, take_pdu};
use crate::reader::Reader;

/// Initiation (RFC 7854 §4.3): sysDescr and sysName are mandatory, strings optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiation {
    /// sysDescr (TLV type 1).
    pub sys_descr: String,
    /// sysName (TLV type 2).
    pub sys_name: String,
    /// Free-form strings (TLV type 0), in order.
    pub strings: Vec<String>,
}

/// Termination reason codes (RFC 7854 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// 0: session administratively closed.
    AdminClosed,
    /// 1: unspecified.
    Unspecified,
    /// 2: out of resources.
    OutOfResources,
    /// 3: redundant connection.
    RedundantConnection,
    /// 4: session permanently administratively closed.
    PermanentlyAdminClosed,
    /// Any other code, kept as received.
    Other(u16),
}

impl TerminationReason {
    fn code(self) -> u16 {
        match self {
            TerminationReason::AdminClosed => 0,
            TerminationReason::Unspecified => 1,
            TerminationReason::OutOfResources => 2,
            TerminationReason::RedundantConnection => 3,
            TerminationReason::PermanentlyAdminClosed => 4,
            TerminationReason::Other(c) => c,
        }
    }

    fn from_code(c: u16) -> Self {
        match c {
            0 => TerminationReason::AdminClosed,
            1 => TerminationReason::Unspecified,
            2 => TerminationReason::OutOfResources,
            3 => TerminationReason::RedundantConnection,
            4 => TerminationReason::PermanentlyAdminClosed,
            other => TerminationReason::Other(other),
        }
    }
}

/// Termination (RFC 7854 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The reason TLV (type 1), if any.
    pub reason: Option<TerminationReason>,
    /// String TLVs (type 0), in order.
    pub strings: Vec<String>,
}

/// Peer Up information TLVs (RFC 7854 §4.10, RFC 9069 §5.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerInfoTlv {
    /// Type 0: free-form string.
    String(String),
    /// Type 3: VRF/Table Name, 1 to 255 octets of UTF-8.
    VrfTableName(String),
    /// Any other type, kept as received.
    Other {
        /// TLV type.
        kind: u16,
        /// Raw value.
        value: Bytes,
    },
}

/// Peer Up Notification (RFC 7854 §4.10; RFC 9069 §5.2 for Loc-RIB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUp {
    /// The peer.
    pub peer: PeerHeader,
    /// Local address of the session; `0.0.0.0` for Loc-RIB (RFC 9069 §5.2).
    pub local_address: IpAddr,
    /// Local TCP port; 0 for Loc-RIB.
    pub local_port: u16,
    /// Remote TCP port; 0 for Loc-RIB.
    pub remote_port: u16,
    /// The OPEN we sent, a complete BGP message.
    pub sent_open: Bytes,
    /// The OPEN we received, a complete BGP message.
    pub received_open: Bytes,
    /// Optional information TLVs.
    pub info: Vec<PeerInfoTlv>,
}

/// Peer Down reasons (RFC 7854 §4.9, RFC 9069 §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerDownReason {
    /// 1: we closed the session with this NOTIFICATION (a complete BGP message).
    LocalNotification(Bytes),
    /// 2: we closed the session without a NOTIFICATION; the RFC 4271 §8.1 FSM event (0: none).
    LocalNoNotification {
        /// FSM event code.
        fsm_event: u16,
    },
    /// 3: the peer closed the session with this NOTIFICATION.
    RemoteNotification(Bytes),
    /// 4: the peer closed the session without a NOTIFICATION.
    RemoteNoData,
    /// 5: the peer was de-configured; BMP no longer monitors it.
    PeerDeconfigured,
    /// 6: local system closed, TLV data follows (RFC 9069 §5.3; the Loc-RIB peer's reason,
    /// with the VRF/Table Name TLV if the Peer Up had one).
    LocalWithTlvs(Vec<PeerInfoTlv>),
}

/// One statistic (RFC 7854 §4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stat {
    /// A 32-bit counter (types 0-6, 11-13).
    Counter {
        /// Stat type.
        kind: u16,
        /// Value.
        value: u32,
    },
    /// A 64-bit gauge (types 7, 8, 14, 15).
    Gauge {
        /// Stat type.
        kind: u16,
        /// Value.
        value: u64,
    },
    /// A per-AFI/SAFI 64-bit gauge (types 9, 10, 16, 17).
    AfiSafiGauge {
        /// Stat type.
        kind: u16,
        /// Address family.
        afi: u16,
        /// Subsequent address family.
        safi: u8,
        /// Value.
        value: u64,
    },
    /// A type this crate does not know, kept as received.
    Other {
        /// Stat type.
        kind: u16,
        /// Raw value.
        value: Bytes,
    },
}

enum StatShape {
    Counter,
    Gauge,
    AfiSafiGauge,
    Other,
}

fn stat_shape(kind: u16) -> StatShape {
    match kind {
        0..=6 | 11..=13 => StatShape::Counter,
        7 | 8 | 14 | 15 => StatShape::Gauge,
        9 | 10 | 16 | 17 => StatShape::AfiSafiGauge,
        _ => StatShape::Other,
    }
}

/// Statistics Report (RFC 7854 §4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatisticsReport {
    /// The peer.
    pub peer: PeerHeader,
    /// The statistics.
    pub stats: Vec<Stat>,
}

/// A BMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Route Monitoring (§4.6): one complete BGP UPDATE message.
    RouteMonitoring {
        /// The peer (or Loc-RIB) the routes belong to.
        peer: PeerHeader,
        /// The UPDATE.
        update: Bytes,
    },
    /// Statistics Report (§4.8).
    StatisticsReport(StatisticsReport),
    /// Peer Down Notification (§4.9).
    PeerDown {
        /// The peer.
        peer: PeerHeader,
        /// Why it went down.
        reason: PeerDownReason,
    },
    /// Peer Up Notification (§4.10).
    PeerUp(PeerUp),
    /// Initiation (§4.3).
    Initiation(Initiation),
    /// Termination (§4.5).
    Termination(Termination),
}

impl Message {
    /// The BMP message type code (RFC 7854 §4.1).
    pub fn type_code(&self) -> u8 {
        match self {
            Message::RouteMonitoring { .. } => msg_type::ROUTE_MONITORING,
            Message::StatisticsReport(_) => msg_type::STATISTICS_REPORT,
            Message::PeerDown { .. } => msg_type::PEER_DOWN,
            Message::PeerUp(_) => msg_type::PEER_UP,
            Message::Initiation(_) => msg_type::INITIATION,
            Message::Termination(_) => msg_type::TERMINATION,
        }
    }

    /// The message on the wire, common header included.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(128);
        out.put_u8(VERSION);
        out.put_u32(0); // patched below
        out.put_u8(self.type_code());
        match self {
            Message::RouteMonitoring { peer, update } => {
                check_pdu(update, bgp_type::UPDATE).map_err(|problem| EncodeError::BgpPdu {
                    field: "route monitoring UPDATE",
                    problem,
                })?;
                peer.encode(&mut out);
                out.put_slice(update);
            }
            Message::StatisticsReport(s) => {
                s.peer.encode(&mut out);
                let count = u32::try_from(s.stats.len())
                    .map_err(|_| EncodeError::TooLong(s.stats.len()))?;
                out.put_u32(count);
                for st in &s.stats {
                    encode_stat(&mut out, st)?;
                }
            }
            Message::PeerDown { peer, reason } => {
                peer.encode(&mut out);
                encode_peer_down(&mut out, reason)?;
            }
            Message::PeerUp(p) => {
                for (field, pdu) in [
                    ("sent OPEN", &p.sent_open),
                    ("received OPEN", &p.received_open),
                ] {
                    check_pdu(pdu, bgp_type::OPEN)
                        .map_err(|problem| EncodeError::BgpPdu { field, problem })?;
                }
                p.peer.encode(&mut out);
                put_address(&mut out, p.local_address);
                out.put_u16(p.local_port);
                out.put_u16(p.remote_port);
                out.put_slice(&p.sent_open);
                out.put_slice(&p.received_open);
                for t in &p.info {
                    encode_info_tlv(&mut out, t)?;
                }
            }
            Message::Initiation(i) => {
                put_tlv(&mut out, info_type::SYS_DESCR, i.sys_descr.as_bytes())?;
                put_tlv(&mut out, info_type::SYS_NAME, i.sys_name.as_bytes())?;
                for s in &i.strings {
                    put_tlv(&mut out, info_type::STRING, s.as_bytes())?;
                }
            }
            Message::Termination(t) => {
                for s in &t.strings {
                    put_tlv(&mut out, term_type::STRING, s.as_bytes())?;
                }
                if let Some(r) = t.reason {
                    put_tlv(&mut out, term_type::REASON, &r.code().to_be_bytes())?;
                }
            }
        }
        let len = u32::try_from(out.len()).map_err(|_| EncodeError::TooLong(out.len()))?;
        if let Some(field) = out.get_mut(1..5) {
            field.copy_from_slice(&len.to_be_bytes());
        }
        Ok(out.freeze())
    }

    /// Decodes one message from the front of `buf`, returning it and the octets it used.
    /// [`DecodeError::Incomplete`] means `buf` holds only part of a message (read more); every
    /// other error means the stream is corrupt.
    pub fn decode(buf: &[u8]) -> Result<(Message, usize), DecodeError> {
        let len = match frame_len(buf)? {
            Some(l) => l,
            None => {
                return Err(DecodeError::Incomplete {
                    needed: COMMON_HEADER_LEN,
                    available: buf.len(),
                });
            }
        };
        let frame = buf.get(..len).ok_or(DecodeError::Incomplete {
            needed: len,
            available: buf.len(),
        })?;
        let mut r = Reader::new(frame.get(COMMON_HEADER_LEN..).unwrap_or_default());
        let kind = frame.get(5).copied().unwrap_or(u8::MAX);
        let msg = match kind {
            msg_type::ROUTE_MONITORING => {
                let peer = PeerHeader::decode(&mut r)?;
                let update = take_pdu(&mut r, "route monitoring UPDATE", bgp_type::UPDATE)?;
                finish(&r, "route monitoring")?;
                Message::RouteMonitoring { peer, update }
            }
            msg_type::STATISTICS_REPORT => Message::StatisticsReport(decode_stats(&mut r)?),
            msg_type::PEER_DOWN => {
                let peer = PeerHeader::decode(&mut r)?;
                let reason = decode_peer_down(&mut r)?;
                Message::PeerDown { peer, reason }
            }
            msg_type::PEER_UP => Message::PeerUp(decode_peer_up(&mut r)?),
            msg_type::INITIATION => Message::Initiation(decode_initiation(&mut r)?),
            msg_type::TERMINATION => Message::Termination(decode_termination(&mut r)?),
            msg_type::ROUTE_MIRRORING => return Err(DecodeError::UnsupportedType(kind)),
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok((msg, len))
    }
}

/// The length of the message at the front of `buf` (RFC 7854 §4.1), `None` if fewer than
/// [`COMMON_HEADER_LEN`] octets are there yet. Checks the version and length only.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let mut r = Reader::new(buf);
    let (Some(version), Some(len)) = (r.u8(), r.u32()) else {
        return Ok(None);
    };
    if r.is_empty() {
        return Ok(None);
    }
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let l = usize::try_from(len).map_err(|_| DecodeError::BadLength(len))?;
    if l < COMMON_HEADER_LEN {
        return Err(DecodeError::BadLength(len));
    }
    Ok(Some(l))
}

fn finish(r: &Reader<'_>, message: &'static str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Trailing {
            message,
            count: r.len(),
        })
    }
}

fn put_tlv(out: &mut BytesMut, kind: u16, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::TlvLength {
        tlv: kind,
        len: value.len(),
    })?;
    out.put_u16(kind);
    out.put_u16(len);
    out.put_slice(value);
    Ok(())
}

fn encode_info_tlv(out: &mut BytesMut, t: &PeerInfoTlv) -> Result<(), EncodeError> {
    match t {
        PeerInfoTlv::String(s) => put_tlv(out, info_type::STRING, s.as_bytes()),
        PeerInfoTlv::VrfTableName(s) => {
            // RFC 9069 §5.2.1: 1 to 255 octets.
            if s.is_empty() || s.len() > 255 {
                return Err(EncodeError::TlvLength {
                    tlv: info_type::VRF_TABLE_NAME,
                    len: s.len(),
                });
            }
            put_tlv(out, info_type::VRF_TABLE_NAME, s.as_bytes())
        }
        PeerInfoTlv::Other { kind, value } => put_tlv(out, *kind, value),
    }
}

/// One TLV (RFC 7854 §4.4 layout: type 2, length 2, value).
fn take_tlv<'a>(r: &mut Reader<'a>, message: &'static str) -> Result<(u16, &'a [u8]), DecodeError> {
    let avail = r.len();
    let short = |needed| DecodeError::Truncated {
        what: message,
        needed,
        available: avail,
    };
    let kind = r.u16().ok_or_else(|| short(4))?;
    let len = r.u16().ok_or_else(|| short(4))?;
    let value = r
        .take(usize::from(len))
        .ok_or_else(|| short(4 + usize::from(len)))?;
    Ok((kind, value))
}

fn utf8(value: &[u8], message: &'static str, tlv: u16) -> Result<String, DecodeError> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| DecodeError::NotUtf8 { message, tlv })
}

fn decode_info_tlvs(
    r: &mut Reader<'_>,
    message: &'static str,
) -> Result<Vec<PeerInfoTlv>, DecodeError> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let (kind, value) = take_tlv(r, message)?;
        out.push(match kind {
            info_type::STRING => PeerInfoTlv::String(utf8(value, message, kind)?),
            info_type::VRF_TABLE_NAME => {
                if value.is_empty() || value.len() > 255 {
                    return Err(DecodeError::BadTlvLength {
                        message,
                        tlv: kind,
                        len: value.len(),
                    });
                }
                PeerInfoTlv::VrfTableName(utf8(value, message, kind)?)
            }
            _ => PeerInfoTlv::Other {
                kind,
                value: Bytes::copy_from_slice(value),
            },
        });
    }
    Ok(out)
}

fn decode_initiation(r: &mut Reader<'_>) -> Result<Initiation, DecodeError> {
    const M: &str = "initiation";
    let (mut descr, mut name, mut strings) = (None, None, Vec::new());
    while !r.is_empty() {
        let (kind, value) = take_tlv(r, M)?;
        match kind {
            info_type::STRING => strings.push(utf8(value, M, kind)?),
            info_type::SYS_DESCR => descr = Some(utf8(value, M, kind)?),
            info_type::SYS_NAME => name = Some(utf8(value, M, kind)?),
            // Unknown information types are skipped, as a collector would.
            _ => {}
        }
    }
    Ok(Initiation {
        sys_descr: descr.ok_or(DecodeError::MissingTlv {
            message: M,
            tlv: info_type::SYS_DESCR,
        })?,
        sys_name: name.ok_or(DecodeError::MissingTlv {
            message: M,
            tlv: info_type::SYS_NAME,
        })?,
        strings,
    })
}

fn decode_termination(r: &mut Reader<'_>) -> Result<Termination, DecodeError> {
    const M: &str = "termination";
    let mut t = Termination {
        reason: None,
        strings: Vec::new(),
    };
    while !r.is_empty() {
        let (kind, value) = take_tlv(r, M)?;
        match kind {
            term_type::STRING => t.strings.push(utf8(value, M, kind)?),
            term_type::REASON => {
                let code: [u8; 2] = value.try_into().map_err(|_| DecodeError::BadTlvLength {
                    message: M,
                    tlv: kind,
                    len: value.len(),
                })?;
                t.reason = Some(TerminationReason::from_code(u16::from_be_bytes(code)));
            }
            _ => {}
        }
    }
    Ok(t)
}

fn decode_peer_up(r: &mut Reader<'_>) -> Result<PeerUp, DecodeError> {
    let peer = PeerHeader::decode(r)?;
    let avail = r.len();
    let short = || DecodeError::Truncated {
        what: "peer up",
        needed: 20,
        available: avail,
    };
    let raw: [u8; 16] = r.array().ok_or_else(short)?;
    // RFC 7854 §4.10: the local address has the peer's family (V flag); the Loc-RIB peer has
    // no V flag and a zero-filled address (RFC 9069 §5.2), read as IPv4 unless it is not.
    let v6 = match peer.peer_type {
        PeerType::LocRibInstance => raw.get(..12).is_some_and(|h| h.iter().any(|&b| b != 0)),
        _ => peer.address.is_ipv6(),
    };
    let local_address = address_from(raw, v6);
    let local_port = r.u16().ok_or_else(short)?;
    let remote_port = r.u16().ok_or_else(short)?;
    let sent_open = take_pdu(r, "sent OPEN", bgp_type::OPEN)?;
    let received_open = take_pdu(r, "received OPEN", bgp_type::OPEN)?;
    let info = decode_info_tlvs(r, "peer up")?;
    Ok(PeerUp {
        peer,
        local_address,
        local_port,
        remote_port,
        sent_open,
        received_open,
        info,
    })
}

fn encode_peer_down(out: &mut BytesMut, reason: &PeerDownReason) -> Result<(), EncodeError> {
    let notification = |field: &'static str, pdu: &Bytes| {
        check_pdu(pdu, bgp_type::NOTIFICATION)
            .map_err(|problem| EncodeError::BgpPdu { field, problem })
    };
    match reason {
        PeerDownReason::LocalNotification(pdu) => {
            notification("peer down NOTIFICATION", pdu)?;
            out.put_u8(1);
            out.put_slice(pdu);
        }
        PeerDownReason::LocalNoNotification { fsm_event } => {
            out.put_u8(2);
            out.put_u16(*fsm_event);
        }
        PeerDownReason::RemoteNotification(pdu) => {
            notification("peer down NOTIFICATION", pdu)?;
            out.put_u8(3);
            out.put_slice(pdu);
        }
        PeerDownReason::RemoteNoData => out.put_u8(4),
        PeerDownReason::PeerDeconfigured => out.put_u8(5),
        PeerDownReason::LocalWithTlvs(tlvs) => {
            out.put_u8(6);
            for t in tlvs {
                encode_info_tlv(out, t)?;
            }
        }
    }
    Ok(())
}

fn decode_peer_down(r: &mut Reader<'_>) -> Result<PeerDownReason, DecodeError> {
    const M: &str = "peer down";
    let code = r.u8().ok_or(DecodeError::Truncated {
        what: M,
        needed: 1,
        available: 0,
    })?;
    let reason = match code {
        1 => PeerDownReason::LocalNotification(take_pdu(
            r,
            "peer down NOTIFICATION",
            bgp_type::NOTIFICATION,
        )?),
        2 => {
            let ev: [u8; 2] = r
                .rest()
                .try_into()
                .map_err(|_| DecodeError::BadPeerDownData {
                    reason: 2,
                    len: r.len(),
                })?;
            r.take(2);
            PeerDownReason::LocalNoNotification {
                fsm_event: u16::from_be_bytes(ev),
            }
        }
        3 => PeerDownReason::RemoteNotification(take_pdu(
            r,
            "peer down NOTIFICATION",
            bgp_type::NOTIFICATION,
        )?),
        4 => PeerDownReason::RemoteNoData,
        5 => PeerDownReason::PeerDeconfigured,
        6 => PeerDownReason::LocalWithTlvs(decode_info_tlvs(r, M)?),
        other => return Err(DecodeError::UnknownPeerDownReason(other)),
    };
    finish(r, M)?;
    Ok(reason)
}

fn encode_stat(out: &mut BytesMut, s: &Stat) -> Result<(), EncodeError> {
    match s {
        Stat::Counter { kind, value } => put_tlv(out, *kind, &value.to_be_bytes()),
        Stat::Gauge { kind, value } => put_tlv(out, *kind, &value.to_be_bytes()),
        Stat::AfiSafiGauge {
            kind,
            afi,
            safi,
            value,
        } => {
            let mut v = [0u8; 11];
            let mut w = &mut v[..];
            w.put_u16(*afi);
            w.put_u8(*safi);
            w.put_u64(*value);
            put_tlv(out, *kind, &v)
        }
        Stat::Other { kind, value } => put_tlv(out, *kind, value),
    }
}

fn decode_stats(r: &mut Reader<'_>) -> Result<StatisticsReport, DecodeError> {
    const M: &str = "statistics report";
    let peer = PeerHeader::decode(r)?;
    let declared = r.u32().ok_or(DecodeError::Truncated {
        what: M,
        needed: 4,
        available: r.len(),
    })?;
    let mut stats = Vec::new();
    while !r.is_empty() {
        let (kind, value) = take_tlv(r, M)?;
        let bad = || DecodeError::BadStatLength {
            stat: kind,
            len: value.len(),
        };
        let mut v = Reader::new(value);
        stats.push(match stat_shape(kind) {
            StatShape::Counter if value.len() == 4 => Stat::Counter {
                kind,
                value: v.u32().ok_or_else(bad)?,
            },
            StatShape::Gauge if value.len() == 8 => Stat::Gauge {
                kind,
                value: v.u64().ok_or_else(bad)?,
            },
            StatShape::AfiSafiGauge if value.len() == 11 => Stat::AfiSafiGauge {
                kind,
                afi: v.u16().ok_or_else(bad)?,
                safi: v.u8().ok_or_else(bad)?,
                value: v.u64().ok_or_else(bad)?,
            },
            StatShape::Other => Stat::Other {
                kind,
                value: Bytes::copy_from_slice(value),
            },
            _ => return Err(bad()),
        });
    }
    let found = u32::try_from(stats.len()).unwrap_or(u32::MAX);
    if found != declared {
        return Err(DecodeError::StatsCount { declared, found });
    }
    Ok(StatisticsReport { peer, stats })
}
