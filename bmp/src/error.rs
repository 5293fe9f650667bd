//! Typed errors of the BMP codec and client.

use thiserror::Error;

/// Why a BGP PDU carried inside a BMP message was rejected (RFC 4271 §4.1 header checks only:
/// BMP carries the PDU opaquely, the collector parses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduProblem {
    /// Fewer than 19 octets, or fewer than the header's length field says.
    Truncated,
    /// The 16-octet marker is not all ones.
    BadMarker,
    /// The header's length field is below 19.
    BadLength(u16),
    /// Not the BGP message type this field carries (OPEN = 1, UPDATE = 2, NOTIFICATION = 3).
    WrongType { expected: u8, found: u8 },
    /// Octets after the PDU where the message should end.
    Trailing(usize),
}

impl std::fmt::Display for PduProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PduProblem::Truncated => write!(f, "truncated"),
            PduProblem::BadMarker => write!(f, "marker is not all ones"),
            PduProblem::BadLength(l) => write!(f, "length field {l} below 19"),
            PduProblem::WrongType { expected, found } => {
                write!(f, "message type {found}, expected {expected}")
            }
            PduProblem::Trailing(n) => write!(f, "{n} octets after the PDU"),
        }
    }
}

/// A BMP message that could not be decoded. The decoder never panics; every malformation of
/// untrusted bytes ends up here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The buffer holds only the first `available` octets of a `needed`-octet message: read
    /// more from the stream and retry.
    #[error("incomplete message: need {needed} octets, have {available}")]
    Incomplete { needed: usize, available: usize },
    /// A part of a message is shorter than its layout (the message's own length is too short).
    #[error("truncated {what}: need {needed} octets, have {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// RFC 7854 §4.1: only version 3 is defined.
    #[error("unsupported BMP version {0}")]
    Version(u8),
    /// The common header's length is shorter than the header itself.
    #[error("message length {0} shorter than the common header")]
    BadLength(u32),
    /// A message type outside RFC 7854 §4.1's list.
    #[error("unknown BMP message type {0}")]
    UnknownType(u8),
    /// A defined type this crate does not decode (Route Mirroring, §4.7).
    #[error("unsupported BMP message type {0}")]
    UnsupportedType(u8),
    /// RFC 7854 §4.2 / RFC 9069 §4.1: peer types 0 to 3 are defined.
    #[error("unknown peer type {0}")]
    UnknownPeerType(u8),
    /// A TLV's length does not fit its type (e.g. a Termination reason that is not 2 octets,
    /// or a VRF/Table Name outside 1..=255 octets, RFC 9069 §5.2.1).
    #[error("TLV type {tlv} in {message}: bad length {len}")]
    BadTlvLength {
        message: &'static str,
        tlv: u16,
        len: usize,
    },
    /// A string TLV that is not UTF-8 (RFC 7854 §4.4 says UTF-8).
    #[error("TLV type {tlv} in {message}: not UTF-8")]
    NotUtf8 { message: &'static str, tlv: u16 },
    /// RFC 7854 §4.3: Initiation MUST carry sysDescr and sysName.
    #[error("{message} lacks the mandatory TLV type {tlv}")]
    MissingTlv { message: &'static str, tlv: u16 },
    /// A carried BGP PDU failed the header checks.
    #[error("{field}: {problem}")]
    BgpPdu {
        field: &'static str,
        problem: PduProblem,
    },
    /// RFC 7854 §4.9 / RFC 9069 §5.3: reasons 1 to 6 are defined.
    #[error("unknown peer down reason {0}")]
    UnknownPeerDownReason(u8),
    /// A Peer Down reason whose data has the wrong size (reason 2: a 2-octet FSM event).
    #[error("peer down reason {reason}: bad data length {len}")]
    BadPeerDownData { reason: u8, len: usize },
    /// A statistics TLV whose length does not fit its type (RFC 7854 §4.8).
    #[error("statistics type {stat}: bad length {len}")]
    BadStatLength { stat: u16, len: usize },
    /// RFC 7854 §4.8: the Stats Count does not match the TLVs present.
    #[error("stats count {declared} but {found} TLVs present")]
    StatsCount { declared: u32, found: u32 },
    /// Octets left over inside a message whose body is fully parsed.
    #[error("{count} trailing octets in {message}")]
    Trailing { message: &'static str, count: usize },
}

/// A message the encoder refuses to build.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A TLV value longer than its 16-bit length (RFC 7854 §4.4), or a VRF/Table Name outside
    /// 1..=255 octets (RFC 9069 §5.2.1).
    #[error("TLV type {tlv}: value length {len} out of range")]
    TlvLength { tlv: u16, len: usize },
    /// The whole message does not fit the 32-bit length of the common header.
    #[error("message of {0} octets does not fit the common header")]
    TooLong(usize),
    /// A BGP PDU handed in for `field` is not a well-formed message of the right type.
    #[error("{field}: {problem}")]
    BgpPdu {
        field: &'static str,
        problem: PduProblem,
    },
}
