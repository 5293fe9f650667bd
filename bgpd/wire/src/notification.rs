//! NOTIFICATION error codes and subcodes (RFC 4271 §4.5 and the IANA "BGP Error (Notification)
//! Codes" registry), plus helpers for the RFC 9003 shutdown communication and RFC 4486 data.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{Family, Notification};

/// Error codes (RFC 4271 §4.5, RFC 7313 §5).
pub mod code {
    pub const MESSAGE_HEADER_ERROR: u8 = 1;
    pub const OPEN_MESSAGE_ERROR: u8 = 2;
    pub const UPDATE_MESSAGE_ERROR: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// RFC 6608 subcodes.
    pub const FSM_ERROR: u8 = 5;
    /// RFC 4486 subcodes.
    pub const CEASE: u8 = 6;
    /// RFC 7313 §5.
    pub const ROUTE_REFRESH_MESSAGE_ERROR: u8 = 7;
}

/// Subcodes of [`code::MESSAGE_HEADER_ERROR`] (RFC 4271 §6.1).
pub mod header {
    pub const UNSPECIFIC: u8 = 0;
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// Subcodes of [`code::OPEN_MESSAGE_ERROR`] (RFC 4271 §6.2, RFC 5492, RFC 9234).
pub mod open {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// Deprecated (RFC 4271 Appendix A).
    pub const AUTHENTICATION_FAILURE: u8 = 5;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// RFC 5492 §5.
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    /// RFC 9234 §4.2.
    pub const ROLE_MISMATCH: u8 = 11;
}

/// Subcodes of [`code::UPDATE_MESSAGE_ERROR`] (RFC 4271 §6.3).
pub mod update {
    pub const UNSPECIFIC: u8 = 0;
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// Deprecated (RFC 4271 Appendix A).
    pub const AS_ROUTING_LOOP: u8 = 7;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Subcodes of [`code::FSM_ERROR`] (RFC 6608 §3).
pub mod fsm {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Subcodes of [`code::CEASE`] (RFC 4486 §4, RFC 8538 §3, RFC 9384 §3).
pub mod cease {
    pub const UNSPECIFIC: u8 = 0;
    pub const MAX_PREFIXES_REACHED: u8 = 1;
    /// Data may carry an RFC 9003 shutdown communication.
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Data may carry an RFC 9003 shutdown communication.
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// RFC 8538: graceful restart is not retained.
    pub const HARD_RESET: u8 = 9;
    /// RFC 9384.
    pub const BFD_DOWN: u8 = 10;
}

/// Subcodes of [`code::ROUTE_REFRESH_MESSAGE_ERROR`] (RFC 7313 §5).
pub mod route_refresh {
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// RFC 9003 §2: the shutdown communication is at most 255 octets of UTF-8.
pub const SHUTDOWN_COMMUNICATION_MAX: usize = 255;

/// Why an RFC 9003 shutdown communication could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownCommunicationError {
    /// The length octet points past the end of the data.
    #[error("shutdown communication length {declared} exceeds the {available} octets present")]
    Truncated { declared: usize, available: usize },
    /// The text is not UTF-8 (RFC 9003 §2 says it MUST be).
    #[error("shutdown communication is not valid UTF-8")]
    NotUtf8,
}

impl Notification {
    /// A NOTIFICATION with the given code, subcode and data.
    pub fn new(code: u8, subcode: u8, data: impl Into<Bytes>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// A Cease NOTIFICATION (administrative shutdown or reset) carrying an RFC 9003 shutdown
    /// communication; `message` is cut at a character boundary to fit 255 octets.
    pub fn cease_with_communication(subcode: u8, message: &str) -> Self {
        let mut end = message.len().min(SHUTDOWN_COMMUNICATION_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = &message.as_bytes()[..end];
        let mut data = BytesMut::with_capacity(1 + text.len());
        // `end` <= 255 by construction.
        data.put_u8(u8::try_from(end).unwrap_or(u8::MAX));
        data.put_slice(text);
        Notification {
            code: code::CEASE,
            subcode,
            data: data.freeze(),
        }
    }

    /// RFC 4486 §4: Cease / Maximum Number of Prefixes Reached with AFI, SAFI and the limit.
    pub fn max_prefixes(family: Family, limit: u32) -> Self {
        let mut data = BytesMut::with_capacity(7);
        data.put_u16(family.afi());
        data.put_u8(family.safi());
        data.put_u32(limit);
        Notification {
            code: code::CEASE,
            subcode: cease::MAX_PREFIXES_REACHED,
            data: data.freeze(),
        }
    }

    /// The RFC 9003 shutdown communication of a Cease 2 or 4 NOTIFICATION: `None` for other
    /// codes or when the data is empty (senders predating RFC 8203 send none).
    pub fn shutdown_communication(&self) -> Option<Result<&str, ShutdownCommunicationError>> {
        let is_shutdown = self.code == code::CEASE
            && (self.subcode == cease::ADMINISTRATIVE_SHUTDOWN
                || self.subcode == cease::ADMINISTRATIVE_RESET);
        if !is_shutdown {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let len = usize::from(len);
        let Some(text) = rest.get(..len) else {
            return Some(Err(ShutdownCommunicationError::Truncated {
                declared: len,
                available: rest.len(),
            }));
        };
        Some(std::str::from_utf8(text).map_err(|_| ShutdownCommunicationError::NotUtf8))
    }

    /// Name of the error code, for logs.
    pub fn code_name(&self) -> &'static str {
        code_name(self.code)
    }

    /// Name of the subcode, for logs ("unknown" for values no RFC assigns).
    pub fn subcode_name(&self) -> &'static str {
        subcode_name(self.code, self.subcode)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) / {} ({})",
            self.code_name(),
            self.code,
            self.subcode_name(),
            self.subcode
        )?;
        match self.shutdown_communication() {
            Some(Ok(text)) => write!(f, ": {text:?}"),
            _ if self.data.is_empty() => Ok(()),
            _ => write!(f, ", {} octets of data", self.data.len()),
        }
    }
}

/// Name of an error code.
pub fn code_name(c: u8) -> &'static str {
    match c {
        code::MESSAGE_HEADER_ERROR => "Message Header Error",
        code::OPEN_MESSAGE_ERROR => "OPEN Message Error",
        code::UPDATE_MESSAGE_ERROR => "UPDATE Message Error",
        code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        code::FSM_ERROR => "Finite State Machine Error",
        code::CEASE => "Cease",
        code::ROUTE_REFRESH_MESSAGE_ERROR => "ROUTE-REFRESH Message Error",
        _ => "unknown",
    }
}

/// Name of a subcode within an error code.
pub fn subcode_name(c: u8, s: u8) -> &'static str {
    match (c, s) {
        (code::HOLD_TIMER_EXPIRED, 0) => "Unspecific",
        (_, 0) if c != code::FSM_ERROR => "Unspecific",
        (code::MESSAGE_HEADER_ERROR, header::CONNECTION_NOT_SYNCHRONIZED) => {
            "Connection Not Synchronized"
        }
        (code::MESSAGE_HEADER_ERROR, header::BAD_MESSAGE_LENGTH) => "Bad Message Length",
        (code::MESSAGE_HEADER_ERROR, header::BAD_MESSAGE_TYPE) => "Bad Message Type",
        (code::OPEN_MESSAGE_ERROR, open::UNSUPPORTED_VERSION_NUMBER) => {
            "Unsupported Version Number"
        }
        (code::OPEN_MESSAGE_ERROR, open::BAD_PEER_AS) => "Bad Peer AS",
        (code::OPEN_MESSAGE_ERROR, open::BAD_BGP_IDENTIFIER) => "Bad BGP Identifier",
        (code::OPEN_MESSAGE_ERROR, open::UNSUPPORTED_OPTIONAL_PARAMETER) => {
            "Unsupported Optional Parameter"
        }
        (code::OPEN_MESSAGE_ERROR, open::AUTHENTICATION_FAILURE) => "Authentication Failure",
        (code::OPEN_MESSAGE_ERROR, open::UNACCEPTABLE_HOLD_TIME) => "Unacceptable Hold Time",
        (code::OPEN_MESSAGE_ERROR, open::UNSUPPORTED_CAPABILITY) => "Unsupported Capability",
        (code::OPEN_MESSAGE_ERROR, open::ROLE_MISMATCH) => "Role Mismatch",
        (code::UPDATE_MESSAGE_ERROR, update::MALFORMED_ATTRIBUTE_LIST) => {
            "Malformed Attribute List"
        }
        (code::UPDATE_MESSAGE_ERROR, update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE) => {
            "Unrecognized Well-known Attribute"
        }
        (code::UPDATE_MESSAGE_ERROR, update::MISSING_WELL_KNOWN_ATTRIBUTE) => {
            "Missing Well-known Attribute"
        }
        (code::UPDATE_MESSAGE_ERROR, update::ATTRIBUTE_FLAGS_ERROR) => "Attribute Flags Error",
        (code::UPDATE_MESSAGE_ERROR, update::ATTRIBUTE_LENGTH_ERROR) => "Attribute Length Error",
        (code::UPDATE_MESSAGE_ERROR, update::INVALID_ORIGIN_ATTRIBUTE) => {
            "Invalid ORIGIN Attribute"
        }
        (code::UPDATE_MESSAGE_ERROR, update::AS_ROUTING_LOOP) => "AS Routing Loop",
        (code::UPDATE_MESSAGE_ERROR, update::INVALID_NEXT_HOP_ATTRIBUTE) => {
            "Invalid NEXT_HOP Attribute"
        }
        (code::UPDATE_MESSAGE_ERROR, update::OPTIONAL_ATTRIBUTE_ERROR) => {
            "Optional Attribute Error"
        }
        (code::UPDATE_MESSAGE_ERROR, update::INVALID_NETWORK_FIELD) => "Invalid Network Field",
        (code::UPDATE_MESSAGE_ERROR, update::MALFORMED_AS_PATH) => "Malformed AS_PATH",
        (code::FSM_ERROR, fsm::UNSPECIFIED) => "Unspecified Error",
        (code::FSM_ERROR, fsm::UNEXPECTED_IN_OPEN_SENT) => {
            "Receive Unexpected Message in OpenSent State"
        }
        (code::FSM_ERROR, fsm::UNEXPECTED_IN_OPEN_CONFIRM) => {
            "Receive Unexpected Message in OpenConfirm State"
        }
        (code::FSM_ERROR, fsm::UNEXPECTED_IN_ESTABLISHED) => {
            "Receive Unexpected Message in Established State"
        }
        (code::CEASE, cease::MAX_PREFIXES_REACHED) => "Maximum Number of Prefixes Reached",
        (code::CEASE, cease::ADMINISTRATIVE_SHUTDOWN) => "Administrative Shutdown",
        (code::CEASE, cease::PEER_DECONFIGURED) => "Peer De-configured",
        (code::CEASE, cease::ADMINISTRATIVE_RESET) => "Administrative Reset",
        (code::CEASE, cease::CONNECTION_REJECTED) => "Connection Rejected",
        (code::CEASE, cease::OTHER_CONFIGURATION_CHANGE) => "Other Configuration Change",
        (code::CEASE, cease::CONNECTION_COLLISION_RESOLUTION) => "Connection Collision Resolution",
        (code::CEASE, cease::OUT_OF_RESOURCES) => "Out of Resources",
        (code::CEASE, cease::HARD_RESET) => "Hard Reset",
        (code::CEASE, cease::BFD_DOWN) => "BFD Down",
        (code::ROUTE_REFRESH_MESSAGE_ERROR, route_refresh::INVALID_MESSAGE_LENGTH) => {
            "Invalid Message Length"
        }
        _ => "unknown",
    }
}
