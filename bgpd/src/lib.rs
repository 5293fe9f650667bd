//! A BGP-4 speaker library: session FSM (RFC 4271 §8), transport, RIBs with the §9.1 decision
//! process, export/import policy, graceful restart (RFC 4724) and route refresh (RFC 2918).
//! See README.md for the design.

pub mod config;
pub mod error;
pub mod events;
pub mod fib;
pub mod first_as;
pub mod fsm;
mod instance;
pub mod policy;
pub mod query;
pub mod rib;
mod session;
mod speaker;
pub mod transport;

pub use bgpd_wire::Family;
pub use config::{BfdConfig, BmpServerConfig, GracefulRestartConfig, PeerConfig, SpeakerConfig};
pub use error::Error;
pub use events::{BestPathChange, Event, PeerStateChange, RouteSource};
pub use query::{BfdStatus, FamilyStatus, PeerStatus, RibKind, RouteEntry, RouteQuery};
pub use speaker::Speaker;
