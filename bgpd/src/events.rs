//! Events the speaker emits for the daemon and the FIB module to follow.
//!
//! This module is the single definition of [`BestPathChange`]: the FIB importer (`fib.rs`)
//! and the daemon consume it; nobody else defines an equivalent type.

use std::net::IpAddr;
use std::sync::Arc;

use bgpd_wire::{Family, PathAttributes};
use ipnet::IpNet;
use serde::Serialize;

use crate::fsm::State;

/// Something that happened inside the speaker.
#[derive(Debug, Clone)]
pub enum Event {
    /// A peer's session changed state.
    PeerState(PeerStateChange),
    /// The best path of a prefix in the Loc-RIB changed (added, replaced or removed).
    BestPath(BestPathChange),
}

/// A peer's FSM moved from one state to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStateChange {
    /// The peer's configured address.
    pub peer: IpAddr,
    pub from: State,
    pub to: State,
}

/// Where a Loc-RIB path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RouteSource {
    /// Originated by this speaker (`Speaker::add_local_route`): never install into the FIB.
    Local,
    /// Learned from the peer at this address.
    Peer(IpAddr),
}

/// The best path for `prefix` changed.
///
/// `next_hops` is empty when the prefix no longer has any usable path (withdrawn or lost with
/// its session): the FIB must then remove the route. Otherwise it holds the best path's next
/// hop first, followed by the next hops of every other path that ties with it through step e)
/// of RFC 4271 §9.1.2.2 (equal-cost multipath), without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestPathChange {
    pub family: Family,
    pub prefix: IpNet,
    pub next_hops: Vec<IpAddr>,
    /// Attributes of the best path; `None` when withdrawn.
    pub attributes: Option<Arc<PathAttributes>>,
    /// Origin of the best path; `None` when withdrawn.
    pub source: Option<RouteSource>,
    /// The best path is stale: kept while its peer restarts (RFC 4724 §4.2). The FIB keeps
    /// such routes installed.
    pub stale: bool,
}

impl BestPathChange {
    /// True when the prefix lost its last path.
    pub fn is_withdraw(&self) -> bool {
        self.next_hops.is_empty() && self.attributes.is_none()
    }
}
