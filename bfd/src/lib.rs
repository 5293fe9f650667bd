//! Bidirectional Forwarding Detection: RFC 5880 asynchronous mode over RFC 5881 (single hop)
//! and RFC 5883 (multihop) UDP, IPv4 and IPv6.
//!
//! - [`packet`]: the Control packet codec with the packet-level reception checks.
//! - [`fsm`]: one session as a pure state machine (time and randomness passed in).
//! - [`transport`]: the sockets (ports, GTSM TTL 255, interface binding).
//! - [`BfdHandle`]: the tokio task owning all sessions; `add_peer` returns a
//!   [`tokio::sync::watch`] receiver of the peer's [`PeerState`].
//!
//! Not implemented: authentication (packets with the A bit are discarded), demand mode, the
//! echo function. See README.md.

pub mod error;
pub mod fsm;
pub mod packet;
mod reader;
pub mod session;
pub mod transport;

pub use error::{DecodeError, Error};
pub use packet::{ControlPacket, Diag, State};
pub use session::{BfdHandle, PeerConfig, PeerKey, PeerState};
