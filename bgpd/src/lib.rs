//! A BGP-4 speaker library: session FSM (RFC 4271 §8), transport, RIBs with the §9.1 decision
//! process, export/import policy, graceful restart (RFC 4724) and route refresh (RFC 2918).
//! See README.md for the design.

pub mod events;
pub mod fib;
pub mod fsm;
pub mod policy;
pub mod rib;

pub use events::{BestPathChange, Event, PeerStateChange, RouteSource};
