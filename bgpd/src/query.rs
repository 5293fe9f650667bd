//! Serialisable views of peers and routes for the CLI (`rackctl bgp peers` / `bgp routes`,
//! shaped like `cilium bgp peers` / `cilium bgp routes`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgpd_wire::{AsSegment, Capability, Family, Origin, PathAttributes};
use ipnet::IpNet;
use serde::Serialize;

use crate::fsm::State;

/// One peer, as `cilium bgp peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub port: u16,
    pub local_address: Option<IpAddr>,
    /// TCP port of our end of the established session.
    pub local_port: Option<u16>,
    pub local_as: u32,
    /// Configured peer AS (0 = any) until established, then the AS the peer announced.
    pub peer_as: u32,
    pub peer_router_id: Option<Ipv4Addr>,
    pub state: State,
    /// Seconds since the session reached Established.
    pub uptime_secs: Option<u64>,
    pub hold_time: Option<u16>,
    pub keepalive: Option<u16>,
    pub families: Vec<FamilyStatus>,
    /// Capabilities in effect (both sides advertised them).
    pub capabilities: Vec<String>,
    /// What we advertise in our OPEN, and (once a session is up) what the peer advertised,
    /// exactly; the daemon reports them in wire form like Cilium does.
    #[serde(skip)]
    pub local_capabilities: Vec<Capability>,
    #[serde(skip)]
    pub remote_capabilities: Vec<Capability>,
    /// The peer is restarting and its routes are kept as stale (RFC 4724 helper).
    pub stale_routes: usize,
    /// UPDATEs of the current session whose routes were withdrawn instead of installed:
    /// RFC 7606 attribute errors and malformed AS_PATHs from external peers (the RFC 4271
    /// §6.3 first-AS check, RFC 5065 §5). 0 without a session.
    pub treat_as_withdraw: u64,
    pub last_error: Option<String>,
    /// The peer's BFD session, when it has one (RFC 5880 §6.8.1 variables).
    pub bfd: Option<BfdStatus>,
}

/// A BFD session as the query API and the daemon show it (the protocol's own types; names in
/// JSON, as FRR prints them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BfdStatus {
    /// bfd.SessionState.
    #[serde(serialize_with = "display")]
    pub state: bfd::State,
    /// bfd.LocalDiag: why our side last went down.
    #[serde(serialize_with = "display")]
    pub local_diag: bfd::Diag,
    /// The remote's state and diag as it last sent them.
    #[serde(serialize_with = "display")]
    pub remote_state: bfd::State,
    #[serde(serialize_with = "display")]
    pub remote_diag: bfd::Diag,
    /// Negotiated transmit interval and detection time, in milliseconds.
    pub tx_interval_ms: u64,
    pub detection_time_ms: u64,
    /// State changes since the session was created.
    pub transitions: u64,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl From<&bfd::PeerState> for BfdStatus {
    fn from(s: &bfd::PeerState) -> Self {
        Self {
            state: s.state,
            local_diag: s.local_diag,
            remote_state: s.remote_state,
            remote_diag: s.remote_diag,
            tx_interval_ms: u64::try_from(s.tx_interval.as_millis()).unwrap_or(u64::MAX),
            detection_time_ms: u64::try_from(s.detection_time.as_millis()).unwrap_or(u64::MAX),
            transitions: s.transitions,
        }
    }
}

/// Per-family counters of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyStatus {
    pub family: Family,
    /// Paths held in Adj-RIB-In (including those the import policy rejected).
    pub received: usize,
    /// Paths the import policy accepted.
    pub accepted: usize,
    /// Prefixes in Adj-RIB-Out.
    pub advertised: usize,
}

/// Which table to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RibKind {
    LocRib,
    AdjRibIn(IpAddr),
    AdjRibOut(IpAddr),
}

/// A route listing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteQuery {
    /// One of [`crate::config::SUPPORTED_FAMILIES`]; others get
    /// [`crate::Error::UnsupportedFamily`].
    pub family: Family,
    pub rib: RibKind,
}

/// One path, as `cilium bgp routes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    pub prefix: IpNet,
    pub next_hop: IpAddr,
    /// Peer it came from; `None` for locally originated routes.
    pub source: Option<IpAddr>,
    pub best: bool,
    pub stale: bool,
    /// Refused by the import policy (Adj-RIB-In only).
    pub rejected: bool,
    /// AS path in the usual text form, sets in braces: `65000 65001 {1 2}`.
    pub as_path: String,
    pub origin: &'static str,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// `asn:value`.
    pub communities: Vec<String>,
    /// `global:local1:local2`.
    pub large_communities: Vec<String>,
    /// The attributes themselves, for callers that need the wire form (Cilium's JSON carries
    /// each attribute base64-encoded).
    #[serde(skip)]
    pub attributes: std::sync::Arc<PathAttributes>,
    /// Time since the path was learnt or originated, or last changed its attributes (an
    /// identical re-announcement does not restart it). One-second resolution, rounded up by
    /// less than a second. Adj-RIB-Out entries carry the age of their Loc-RIB source path.
    /// Serialised as whole seconds (`age_secs`); Cilium's `age-nanoseconds` is
    /// `age.as_nanos()`.
    #[serde(rename = "age_secs", serialize_with = "whole_secs")]
    pub age: Duration,
}

fn whole_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl RouteEntry {
    pub(crate) fn new(
        prefix: IpNet,
        next_hop: IpAddr,
        source: Option<IpAddr>,
        pa: &PathAttributes,
    ) -> Self {
        Self {
            prefix,
            next_hop,
            source,
            best: false,
            stale: false,
            rejected: false,
            as_path: as_path_string(pa),
            origin: match pa.origin {
                Origin::Igp => "i",
                Origin::Egp => "e",
                Origin::Incomplete => "?",
            },
            med: pa.med,
            local_pref: pa.local_pref,
            communities: pa
                .communities
                .iter()
                .map(|c| format!("{}:{}", c.0 >> 16, c.0 & 0xffff))
                .collect(),
            large_communities: pa
                .large_communities
                .iter()
                .map(|l| format!("{}:{}:{}", l.global_admin, l.local1, l.local2))
                .collect(),
            attributes: std::sync::Arc::new(pa.clone()),
            age: Duration::ZERO,
        }
    }
}

/// `65000 65001 {1 2}`.
pub fn as_path_string(pa: &PathAttributes) -> String {
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    pa.as_path
        .segments
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => join(v),
            AsSegment::Set(v) => format!("{{{}}}", join(v)),
            AsSegment::ConfedSequence(v) => format!("({})", join(v)),
            AsSegment::ConfedSet(v) => format!("[{}]", join(v)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Display name of a capability.
pub fn capability_name(c: &Capability) -> String {
    match c {
        Capability::Multiprotocol(f) => format!("multiprotocol({f:?})"),
        Capability::RouteRefresh => "route-refresh".into(),
        Capability::ExtendedNextHop(_) => "extended-next-hop".into(),
        Capability::ExtendedMessage => "extended-message".into(),
        Capability::GracefulRestart(g) => format!("graceful-restart(time {})", g.restart_time),
        Capability::FourOctetAs(_) => "4-octet-as".into(),
        Capability::AddPath(_) => "add-path".into(),
        Capability::EnhancedRouteRefresh => "enhanced-route-refresh".into(),
        Capability::Unknown { code, .. } => format!("unknown({code})"),
    }
}
