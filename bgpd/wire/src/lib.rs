//! BGP-4 wire codec: messages, capabilities and path attributes (RFC 4271 and extensions),
//! on `bytes` + `tokio_util::codec`. See README.md.
//!
//! - [`BgpCodec`]: framing and decoding for `tokio_util::codec::Framed`, parameterised by the
//!   negotiated [`SessionContext`] ([`SessionContext::negotiate`]).
//! - [`DecodeError`]: the session-reset errors, each mapping to its NOTIFICATION; RFC 7606
//!   treat-as-withdraw and attribute-discard outcomes are reported inside [`Update`].
//! - [`UpdateBuilder`] / [`encode_updates`]: packed UPDATE encoding with one encoding of each
//!   attribute set ([`EncodedAttributes`]).
//!
//! ```
//! use bgpd_wire::{BgpCodec, Message, SessionContext, encode_to_bytes};
//! use tokio_util::codec::Decoder;
//!
//! let wire = encode_to_bytes(&Message::Keepalive, &SessionContext::default())?;
//! let mut codec = BgpCodec::default(); // then `set_context(SessionContext::negotiate(..))`
//! let mut buf = bytes::BytesMut::from(&wire[..]);
//! assert_eq!(codec.decode(&mut buf)?, Some(Message::Keepalive));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attributes;
mod builder;
mod codec;
mod context;
mod error;
mod family;
mod nlri;
pub mod notification;
mod open;
mod reader;
pub mod types;
mod update;

pub use attributes::{ErrorAction, action_for};
pub use builder::{EncodedAttributes, UpdateBuilder, encode_updates, encode_withdrawals};
pub use codec::{
    BgpCodec, MARKER, RawMessages, decode_frame, decode_message, encode_message, encode_to_bytes,
    msg_type,
};
pub use context::{
    AFI_IPV4, AFI_IPV6, AS_TRANS, HEADER_LEN, MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN,
    SAFI_UNICAST, SessionContext, capability_code,
};
pub use error::{DecodeError, EncodeError, OpenMalformation};
pub use family::ParseFamilyError;
pub use types::*;
