//! BGP Monitoring Protocol, monitored-router side: RFC 7854 with RFC 9069 Loc-RIB.
//!
//! [`msg`] encodes (and, for tests and tooling, decodes) BMP messages; [`client`] keeps one
//! TCP session to one collector alive, replaying the current state on every (re)connect. BGP
//! PDUs travel as complete BGP messages in [`bytes::Bytes`], so this crate does not depend on
//! the speaker.

pub mod client;
pub mod error;
pub mod header;
pub mod msg;
pub mod pdu;
mod reader;

pub use client::{
    BmpHandle, ClientConfig, ConnState, LocRibInfo, LocRibState, PeerInfo, PeerState, Rib,
    Snapshot, SnapshotSource, UNICAST_FAMILIES, spawn,
};
pub use error::{DecodeError, EncodeError, PduProblem};
pub use header::{PeerFlags, PeerHeader, PeerType, Timestamp};
pub use msg::{
    Initiation, Message, PeerDownReason, PeerInfoTlv, PeerUp, Stat, StatisticsReport, Termination,
    TerminationReason, frame_len,
};
pub use pdu::{end_of_rib, loc_rib_open};
