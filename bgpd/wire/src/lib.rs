//! BGP-4 wire codec: messages, capabilities and path attributes (RFC 4271 and extensions),
//! on `bytes` + `tokio_util::codec`. See README.md.

pub mod types;

pub use types::*;
