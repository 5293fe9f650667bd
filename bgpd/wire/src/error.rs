//! Decode and encode errors. Every [`DecodeError`] is a session-reset error: it maps to the
//! NOTIFICATION to send before closing ([`Notification::from`]). Errors that RFC 7606 lets the
//! session survive are not errors here; they are reported inside the decoded
//! [`crate::Update`] (`treat_as_withdraw`, `discarded`).

use std::io;
use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::notification::{code, header, open, route_refresh, update};
use crate::types::{AttrError, Family, Notification};

/// A received message that ends the session.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The transport failed (required by `tokio_util::codec::Decoder`); nothing to send.
    #[error("transport error")]
    Io(#[source] io::Error),

    /// RFC 4271 §6.1: the marker is not all ones.
    #[error("message header marker is not all ones")]
    ConnectionNotSynchronized,
    /// RFC 4271 §6.1: length out of range for the message type (or the session).
    #[error("bad message length {length} for message type {msg_type}")]
    BadMessageLength { length: u16, msg_type: u8 },
    /// RFC 4271 §6.1: unknown message type.
    #[error("bad message type {msg_type}")]
    BadMessageType { msg_type: u8 },

    /// RFC 4271 §6.2: version other than 4.
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion { version: u8 },
    /// RFC 7607: AS 0 in the OPEN (either field).
    #[error("bad peer AS {asn}")]
    BadPeerAs { asn: u32 },
    /// RFC 4271 §6.2 / RFC 6286: BGP identifier 0.
    #[error("bad BGP identifier {router_id}")]
    BadBgpIdentifier { router_id: Ipv4Addr },
    /// RFC 4271 §6.2: optional parameter other than capabilities (RFC 5492).
    #[error("unsupported optional parameter type {param_type}")]
    UnsupportedOptionalParameter { param_type: u8 },
    /// RFC 4271 §6.2: hold time 1 or 2 seconds.
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime { hold_time: u16 },
    /// The OPEN's parameters or a known capability are malformed (OPEN Message Error,
    /// unspecific subcode).
    #[error("malformed OPEN: {reason}")]
    MalformedOpen { reason: OpenMalformation },

    /// RFC 4271 §6.3 / RFC 7606 §3-§5: an UPDATE error that requires a session reset;
    /// `subcode` is the UPDATE Message Error subcode and `data` the NOTIFICATION data (the
    /// offending attribute where the RFC asks for it).
    #[error("UPDATE error (subcode {subcode}): attribute {}: {:?}", .error.type_code, .error.reason)]
    Update {
        subcode: u8,
        error: AttrError,
        data: Bytes,
    },
    /// RFC 4271 §6.3: withdrawn routes or NLRI field syntactically wrong (RFC 7606 §5.3 keeps
    /// this a session reset).
    #[error("invalid network field in {family:?}")]
    InvalidNetworkField { family: Family },
    /// RFC 4271 §6.3 / RFC 7606 §4: the withdrawn routes or total attribute length overruns
    /// the message.
    #[error("malformed attribute list: field lengths exceed the UPDATE")]
    MalformedAttributeList,

    /// RFC 7313 §5: a BoRR/EoRR ROUTE-REFRESH whose length is not 4 octets of body;
    /// `message` is the whole erroneous message, the NOTIFICATION data.
    #[error("ROUTE-REFRESH with subtype {subtype} has invalid length {length}")]
    RouteRefreshLength {
        subtype: u8,
        length: u16,
        message: Bytes,
    },
}

impl From<io::Error> for DecodeError {
    fn from(e: io::Error) -> Self {
        DecodeError::Io(e)
    }
}

/// What was wrong with an OPEN beyond the named RFC 4271 §6.2 cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenMalformation {
    /// The optional parameter lengths do not add up to the message length.
    #[error("optional parameters length does not match the message")]
    ParameterLength,
    /// A capability TLV runs past its parameter.
    #[error("capability TLV overruns its parameter")]
    CapabilityOverrun,
    /// A known capability has a value of the wrong size or content.
    #[error("capability {code} is malformed")]
    Capability { code: u8 },
}

impl DecodeError {
    /// Whether a NOTIFICATION should be sent for this error (not for transport errors).
    pub fn sends_notification(&self) -> bool {
        !matches!(self, DecodeError::Io(_))
    }

    /// The NOTIFICATION this error calls for; `None` for transport errors.
    pub fn notification(&self) -> Option<Notification> {
        self.sends_notification().then(|| Notification::from(self))
    }
}

fn u16_data(v: u16) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

impl From<&DecodeError> for Notification {
    /// The NOTIFICATION named by the RFCs for this error. Transport errors map to a bare Cease,
    /// which callers should not send (see [`DecodeError::sends_notification`]).
    fn from(e: &DecodeError) -> Self {
        use DecodeError as E;
        let (c, s, data) = match e {
            E::Io(_) => (code::CEASE, 0, Bytes::new()),
            E::ConnectionNotSynchronized => (
                code::MESSAGE_HEADER_ERROR,
                header::CONNECTION_NOT_SYNCHRONIZED,
                Bytes::new(),
            ),
            // §6.1: data is the erroneous Length field.
            E::BadMessageLength { length, .. } => (
                code::MESSAGE_HEADER_ERROR,
                header::BAD_MESSAGE_LENGTH,
                u16_data(*length),
            ),
            // §6.1: data is the erroneous Type field.
            E::BadMessageType { msg_type } => (
                code::MESSAGE_HEADER_ERROR,
                header::BAD_MESSAGE_TYPE,
                Bytes::copy_from_slice(&[*msg_type]),
            ),
            // §6.2: data is the largest locally supported version, 2 octets.
            E::UnsupportedVersion { .. } => (
                code::OPEN_MESSAGE_ERROR,
                open::UNSUPPORTED_VERSION_NUMBER,
                u16_data(4),
            ),
            E::BadPeerAs { .. } => (code::OPEN_MESSAGE_ERROR, open::BAD_PEER_AS, Bytes::new()),
            E::BadBgpIdentifier { .. } => (
                code::OPEN_MESSAGE_ERROR,
                open::BAD_BGP_IDENTIFIER,
                Bytes::new(),
            ),
            E::UnsupportedOptionalParameter { .. } => (
                code::OPEN_MESSAGE_ERROR,
                open::UNSUPPORTED_OPTIONAL_PARAMETER,
                Bytes::new(),
            ),
            E::UnacceptableHoldTime { .. } => (
                code::OPEN_MESSAGE_ERROR,
                open::UNACCEPTABLE_HOLD_TIME,
                Bytes::new(),
            ),
            E::MalformedOpen { .. } => (code::OPEN_MESSAGE_ERROR, open::UNSPECIFIC, Bytes::new()),
            E::Update { subcode, data, .. } => (code::UPDATE_MESSAGE_ERROR, *subcode, data.clone()),
            E::InvalidNetworkField { .. } => (
                code::UPDATE_MESSAGE_ERROR,
                update::INVALID_NETWORK_FIELD,
                Bytes::new(),
            ),
            E::MalformedAttributeList => (
                code::UPDATE_MESSAGE_ERROR,
                update::MALFORMED_ATTRIBUTE_LIST,
                Bytes::new(),
            ),
            // RFC 7313 §5: data is the complete erroneous message.
            E::RouteRefreshLength { message, .. } => (
                code::ROUTE_REFRESH_MESSAGE_ERROR,
                route_refresh::INVALID_MESSAGE_LENGTH,
                message.clone(),
            ),
        };
        Notification {
            code: c,
            subcode: s,
            data,
        }
    }
}

impl From<DecodeError> for Notification {
    fn from(e: DecodeError) -> Self {
        Notification::from(&e)
    }
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The transport failed (required by `tokio_util::codec::Encoder`).
    #[error("transport error")]
    Io(#[source] io::Error),
    /// The message is larger than the session allows (RFC 4271 §4 / RFC 8654).
    #[error("message of {length} octets exceeds the session maximum {max}")]
    TooLong { length: usize, max: usize },
    /// A single attribute set does not fit into one UPDATE together with one prefix.
    #[error("path attributes of {length} octets leave no room for NLRI")]
    AttributesTooLong { length: usize },
    /// A prefix of this family cannot be sent with this next hop on this session (e.g. IPv4
    /// NLRI with an IPv6 next hop without RFC 8950).
    #[error("cannot send {family:?} NLRI with next hop {next_hop}")]
    NextHopFamily {
        family: Family,
        next_hop: std::net::IpAddr,
    },
}

impl From<io::Error> for EncodeError {
    fn from(e: io::Error) -> Self {
        EncodeError::Io(e)
    }
}

/// Builds the NOTIFICATION data for an attribute (RFC 4271 §6.3: "the Data field MUST contain
/// the erroneous attribute (type, length, and value)").
pub(crate) fn attribute_data(flags: u8, type_code: u8, value: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + value.len());
    let ext = value.len() > 255;
    b.put_u8(if ext { flags | 0x10 } else { flags & !0x10 });
    b.put_u8(type_code);
    if ext {
        b.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
    } else {
        b.put_u8(value.len() as u8);
    }
    b.put_slice(value);
    b.freeze()
}
