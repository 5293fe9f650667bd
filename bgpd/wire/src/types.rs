//! The message model: what the codec decodes into and encodes from.
//!
//! This file is the contract between the codec and the speaker (`bgpd`): add to it freely,
//! but keep existing names and meanings so the speaker keeps compiling.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::Bytes;
use ipnet::IpNet;

/// Address family + subsequent address family (RFC 4760 §3, IANA registries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
    /// Any other pair: parsed and carried, never acted on.
    Other { afi: u16, safi: u8 },
}

/// A BGP message (RFC 4271 §4.1: type 1-4, RFC 2918: type 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN (RFC 4271 §4.2) with its capabilities (RFC 5492) flattened out of the optional
/// parameters (RFC 9072 extended parameter length accepted on decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Always 4 on encode; a decoded OPEN with another version is an error (§6.2).
    pub version: u8,
    /// The 2-octet "My Autonomous System" field as sent (AS_TRANS 23456 for 4-octet ASNs).
    pub my_as: u16,
    pub hold_time: u16,
    /// BGP identifier (RFC 6286: any non-zero 4 octets).
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// Capabilities (RFC 5492 and the per-capability RFCs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1 (RFC 4760 §8).
    Multiprotocol(Family),
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 5 (RFC 8950): NLRI family carried with next hops of `nexthop_afi`.
    ExtendedNextHop(Vec<ExtendedNextHopEntry>),
    /// Code 6 (RFC 8654).
    ExtendedMessage,
    /// Code 64 (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// Code 65 (RFC 6793).
    FourOctetAs(u32),
    /// Code 69 (RFC 7911).
    AddPath(Vec<AddPathEntry>),
    /// Code 70 (RFC 7313).
    EnhancedRouteRefresh,
    /// Anything else, kept as received and ignored (RFC 5492 §3).
    Unknown { code: u8, value: Bytes },
}

/// One RFC 8950 tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedNextHopEntry {
    pub nlri: Family,
    pub nexthop_afi: u16,
}

/// RFC 4724 §3 capability value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restarting: bool,
    /// N bit (RFC 8538): graceful notification supported.
    pub notification: bool,
    /// Restart time in seconds, 12 bits.
    pub restart_time: u16,
    /// Families with their F (forwarding state preserved) bit.
    pub families: Vec<(Family, bool)>,
}

/// RFC 7911 §4 tuple: send/receive bits per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddPathEntry {
    pub family: Family,
    pub receive: bool,
    pub send: bool,
}

/// UPDATE (RFC 4271 §4.3), with MP_REACH/MP_UNREACH (RFC 4760) lifted out of the attributes.
///
/// An End-of-RIB marker (RFC 4724 §2) is an UPDATE with nothing in it (IPv4) or with only an
/// empty MP_UNREACH for the family; [`Update::end_of_rib`] tells which.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// IPv4 unicast withdrawn routes.
    pub withdrawn: Vec<IpNet>,
    /// Path attributes other than MP_REACH/MP_UNREACH; `None` when the UPDATE carried none.
    pub attributes: Option<Arc<PathAttributes>>,
    /// IPv4 unicast NLRI.
    pub nlri: Vec<IpNet>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// RFC 7606 §2: set when an attribute error requires treat-as-withdraw; the receiver must
    /// withdraw every NLRI in this UPDATE (reach and unreach alike) instead of installing it.
    pub treat_as_withdraw: Option<AttrError>,
    /// RFC 7606 attribute-discard errors that were applied while decoding (for logging).
    pub discarded: Vec<AttrError>,
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<IpNet>,
}

/// Next hop as carried in NEXT_HOP or MP_REACH (RFC 2545 §3, RFC 8950).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    #[default]
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// One AS_PATH segment (RFC 4271 §4.3, RFC 6793 4-octet form internally).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
    /// RFC 5065 confederation segments, parsed and carried.
    ConfedSequence(Vec<u32>),
    ConfedSet(Vec<u32>),
}

/// The AS path, always held with 4-octet ASNs; AS4_PATH is merged on decode (RFC 6793 §4.2.3)
/// and split again on encode for 2-octet sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

/// AGGREGATOR / AS4_AGGREGATOR merged (RFC 6793).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// A standard community (RFC 1997) as its 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

/// A large community (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local1: u32,
    pub local2: u32,
}

/// An extended community (RFC 4360), 8 octets, carried opaquely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedCommunity(pub [u8; 8]);

/// An attribute we do not interpret, kept for pass-through (RFC 4271 §5: optional transitive
/// attributes are passed on with the Partial bit set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Bytes,
}

/// The path attributes of a route, shared (behind `Arc`) by every prefix that carries them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: AsPath,
    /// NEXT_HOP (IPv4 unicast NLRI only; MP families carry theirs in MP_REACH).
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
    pub extended_communities: Vec<ExtendedCommunity>,
    /// RFC 4456 ORIGINATOR_ID / CLUSTER_LIST, parsed for completeness.
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Unrecognised attributes, in type order.
    pub unknown: Vec<RawAttribute>,
}

/// NOTIFICATION (RFC 4271 §4.5); codes and subcodes in [`crate::notification`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

/// ROUTE-REFRESH (RFC 2918 §3; subtype per RFC 7313 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    /// 0 = normal request, 1 = BoRR, 2 = EoRR (RFC 7313).
    pub subtype: u8,
}

/// An attribute error classified per RFC 7606 §3-§7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    /// Attribute type code the error was found in (0 when structural).
    pub type_code: u8,
    /// What was wrong, for logs.
    pub reason: AttrErrorReason,
}

/// Why an attribute was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrErrorReason {
    /// Attribute flags do not match the attribute type (RFC 4271 §6.3).
    BadFlags,
    /// Attribute length wrong for the type.
    BadLength,
    /// Value out of range or ill-formed (e.g. ORIGIN 3, bad AS_PATH segment).
    BadValue,
    /// A well-known mandatory attribute is missing (RFC 4271 §6.3, RFC 7606 §3.d).
    MissingMandatory,
    /// An attribute appeared twice (RFC 7606 §3.g).
    Duplicate,
    /// NEXT_HOP invalid (RFC 4271 §6.3).
    BadNextHop,
}
