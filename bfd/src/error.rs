//! Errors of the codec and of the runtime half.
//!
//! Every [`DecodeError`] means "discard the packet" (RFC 5880 §6.8.6): BFD has no error
//! messages, so the variants exist for logs and counters, and for tests to say which check
//! fired.

use std::io;
use std::net::IpAddr;

use crate::packet::State;

/// Why a received datagram is not a BFD Control packet this crate accepts. The order of the
/// checks (and so which variant a packet with several faults gets) follows RFC 5880 §6.8.6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer octets than the 24-octet mandatory section (RFC 5880 §4.1).
    #[error("datagram of {len} octets is shorter than a BFD Control packet")]
    Truncated {
        /// Datagram length.
        len: usize,
    },
    /// RFC 5880 §6.8.6: "If the version number is not correct (1), the packet MUST be
    /// discarded."
    #[error("unsupported BFD version {version}")]
    UnsupportedVersion {
        /// The Vers field.
        version: u8,
    },
    /// RFC 5880 §6.8.6: the Length field is less than the minimum (24 without
    /// authentication, 26 with).
    #[error("length field {length} is below the minimum {min}")]
    LengthTooSmall {
        /// The Length field.
        length: u8,
        /// The minimum for this packet (24, or 26 with the A bit).
        min: u8,
    },
    /// RFC 5880 §6.8.6: the Length field is greater than the payload of the datagram.
    #[error("length field {length} exceeds the datagram payload of {datagram} octets")]
    LengthExceedsDatagram {
        /// The Length field.
        length: u8,
        /// Datagram payload length.
        datagram: usize,
    },
    /// RFC 5880 §6.8.6: Detect Mult is zero.
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    /// RFC 5880 §6.8.6: the Multipoint (M) bit is set.
    #[error("multipoint bit is set")]
    Multipoint,
    /// RFC 5880 §6.8.6: My Discriminator is zero.
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    /// RFC 5880 §6.8.6: Your Discriminator is zero and the State field is not Down or
    /// AdminDown.
    #[error("your discriminator is zero in state {state:?}")]
    ZeroYourDiscriminator {
        /// The State field.
        state: State,
    },
    /// The A bit is set. This crate implements no authentication (RFC 5880 §6.7), and an
    /// unauthenticated session "MUST" discard packets with the A bit (§6.8.6).
    #[error("authentication present (auth type {auth_type:?}), not supported")]
    AuthenticationPresent {
        /// The Auth Type octet when the section is there.
        auth_type: Option<u8>,
    },
}

/// Errors of the runtime half ([`crate::BfdHandle`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket could not be opened or configured.
    #[error("socket {what} for {addr}: {source}")]
    Socket {
        /// The step that failed (bind, setsockopt ...).
        what: &'static str,
        /// The address involved.
        addr: IpAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The local and remote addresses are not of the same family.
    #[error("local {local} and remote {remote} are of different address families")]
    FamilyMismatch {
        /// Local address.
        local: IpAddr,
        /// Remote address.
        remote: IpAddr,
    },
    /// A peer with this (local, remote, interface, hop mode) already exists.
    #[error("a BFD session with {remote} already exists")]
    Duplicate {
        /// Remote address.
        remote: IpAddr,
    },
    /// The configuration is out of range (e.g. detect multiplier 0, zero intervals).
    #[error("invalid peer configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: &'static str,
    },
    /// The owning task has stopped.
    #[error("the BFD task has stopped")]
    Stopped,
}
