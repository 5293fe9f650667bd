//! The admin API between `rackd` and `rackctl`.
//!
//! Transport: a Unix stream socket that only root can open. One request per connection:
//! the client writes one JSON [`Request`] and a newline, the daemon answers one JSON
//! [`Reply`] and a newline, then closes. The BGP shapes are Cilium's (`api/v1/models/bgp_*.go`,
//! kebab-case keys, empty values omitted) so scripts written for `cilium bgp ... -o json`
//! keep working on `rackctl ... -o json`.

pub mod configdir;
pub mod egress;
pub mod lb;

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

pub use rackd_types::{Condition, ConditionStatus, Kind, ObjectCondition, ObjectKey, SessionState};

/// Largest request or reply line accepted; bounds what a peer on the socket can make us buffer.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// Default path of the admin socket.
pub const DEFAULT_SOCKET: &str = "/run/rackd/admin.sock";

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Daemon summary: node, config generation and errors, controllers.
    Status,
    /// BGP peers, one entry per (instance, peer).
    BgpPeers,
    /// Routes from one table.
    BgpRoutes {
        /// `loc-rib`, `adj-rib-in` or `adj-rib-out`.
        table: String,
        afi: String,
        safi: String,
        /// Required for adj-rib-in/out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        neighbor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        router_asn: Option<u32>,
    },
    /// The export/import policies rendered from the advertisements.
    BgpRoutePolicies {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        router_asn: Option<u32>,
    },
    /// This node's `CiliumBGPNodeConfig` (spec as rendered, status as running).
    BgpNodeConfig,
    /// LB-IPAM pools.
    LbipamPools,
    /// LB-IPAM services.
    LbipamServices,
    /// L2 announcement leases.
    L2Leases,
    /// L2 announcements programmed in the datapath.
    L2Announcements,
    /// The service datapath's frontends and backends (`cilium service list`).
    ServiceList,
    /// The service map entries (`cilium-dbg bpf lb list`).
    BpfLbList,
    /// Connection tracking entries (`cilium-dbg bpf ct list global`).
    BpfCtList,
    /// NAT entries (`cilium-dbg bpf nat list`).
    BpfNatList,
    /// The egress gateway policies, their gateways and this node's part
    /// (`rackctl egress policies`).
    EgressPolicies,
    /// This node's egress gateway policy map (`cilium-dbg bpf egress list`).
    BpfEgressList,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "data", rename_all = "kebab-case")]
pub enum Reply {
    Status(Status),
    BgpPeers(Vec<BgpPeer>),
    BgpRoutes(Vec<BgpRoute>),
    BgpRoutePolicies(Vec<BgpRoutePolicy>),
    BgpNodeConfig(Box<NodeConfig>),
    LbipamPools(Vec<PoolView>),
    LbipamServices(Vec<ServiceView>),
    L2Leases(Vec<LeaseView>),
    L2Announcements(Vec<AnnouncementView>),
    ServiceList(Vec<lb::LbService>),
    BpfLbList(Vec<lb::LbMapEntry>),
    BpfCtList(Vec<lb::CtEntry>),
    BpfNatList(Vec<lb::NatEntry>),
    EgressPolicies(Vec<egress::EgressPolicyView>),
    BpfEgressList(Vec<egress::EgressMapEntry>),
    /// The request could not be answered.
    Error(String),
}

/// `rackctl status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    pub node: String,
    pub version: String,
    pub uptime_seconds: u64,
    /// Source of configuration (e.g. `dir:/etc/rackd`).
    pub config_source: String,
    /// Number of times a new configuration was applied.
    pub config_generation: u64,
    /// Objects currently loaded, by kind.
    pub objects: Vec<(String, usize)>,
    /// Current configuration errors (the last good version of each object stays in force).
    pub config_errors: Vec<String>,
    pub bgp_instances: usize,
    pub bgp_peers_established: usize,
    pub bgp_peers_total: usize,
    /// Every problem, per object, as Cilium would write it into the object's status
    /// (configuration errors, an unreadable source, and each controller's findings).
    #[serde(default)]
    pub conditions: Vec<ObjectCondition>,
    /// Each controller's runs.
    #[serde(default)]
    pub controllers: Vec<ControllerView>,
}

/// One controller in `rackctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControllerView {
    pub name: String,
    pub runs: u64,
    pub errors: u64,
    /// It has applied its inputs at least once.
    pub synced: bool,
    /// Why its last run failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// Cilium `BgpPeer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BgpPeer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub local_asn: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub peer_asn: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub peer_port: u32,
    /// `idle connect active open_sent open_confirm established`.
    #[serde(default)]
    pub session_state: SessionState,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub uptime_nanoseconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub configured_hold_time_seconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub applied_hold_time_seconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub configured_keep_alive_time_seconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub applied_keep_alive_time_seconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub connect_retry_time_seconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ebgp_multihop_ttl: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tcp_password_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<GracefulRestart>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<PeerFamily>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_capabilities: Vec<Capabilities>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_capabilities: Vec<Capabilities>,
    /// The peer's BFD session, when its PeerConfig enables BFD (cilium#48251 shows the BFD
    /// state in the peer output; absent otherwise, so Cilium's shape is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdPeerState>,
}

/// A BGP peer's BFD session (RFC 5880 §6.8.1 variables).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BfdPeerState {
    /// `admin_down`, `down`, `init` or `up`.
    pub state: String,
    /// Why the session last went down on our side (RFC 5880 §4.1 diagnostic).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_diagnostic: String,
    /// The remote's state and diagnostic as it last sent them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_diagnostic: String,
    /// Negotiated transmit interval and detection time.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub transmit_interval_milliseconds: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub detection_time_milliseconds: u64,
    /// State changes since the session was created.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub transitions: u64,
}

/// Cilium `BgpGracefulRestart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GracefulRestart {
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub restart_time_seconds: u64,
}

/// Cilium `BgpPeerFamilies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerFamily {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub afi: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub safi: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub received: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub accepted: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub advertised: u64,
}

/// One capability TLV in wire format, base64 (Cilium `BgpCapabilities`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capabilities: String,
}

/// Cilium `BgpRoute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BgpRoute {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub router_asn: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub neighbor: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<BgpPath>,
}

/// Cilium `BgpPath`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BgpPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlri: Option<Base64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_attributes: Vec<Base64>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub age_nanoseconds: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub best: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stale: bool,
    /// Not in Cilium's model: the decoded next hop and attributes, so `rackctl` can print
    /// the table without a second BGP decoder. Cilium's CLI ignores unknown keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rackd_next_hop: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rackd_attrs: String,
}

/// Cilium `BgpFamily`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub afi: String,
    pub safi: String,
}

/// A base64 blob (`{"base64": "..."}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base64 {
    pub base64: String,
}

/// Cilium `BgpRoutePolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BgpRoutePolicy {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub router_asn: u32,
    pub name: String,
    /// `export` or `import`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<PolicyStatement>,
}

/// Cilium `BgpRoutePolicyStatement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyStatement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_neighbors: Option<MatchNeighbors>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_families: Vec<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_prefixes: Option<MatchPrefixes>,
    /// `none`, `accept` or `reject`.
    pub route_action: String,
    #[serde(default)]
    pub add_communities: Vec<String>,
    #[serde(default)]
    pub add_large_communities: Vec<String>,
    /// -1 = no action (Cilium's encoding).
    pub set_local_preference: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<NextHopAction>,
}

/// Cilium `BgpRoutePolicyNeighborMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchNeighbors {
    #[serde(rename = "type")]
    pub kind: String,
    pub neighbors: Vec<String>,
}

/// Cilium `BgpRoutePolicyPrefixMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchPrefixes {
    #[serde(rename = "type")]
    pub kind: String,
    pub prefixes: Vec<PrefixMatch>,
}

/// Cilium `BgpRoutePolicyPrefix`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrefixMatch {
    pub cidr: String,
    pub prefix_len_min: u8,
    pub prefix_len_max: u8,
}

/// Cilium `BgpRoutePolicyNexthopAction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHopAction {
    #[serde(rename = "self")]
    pub self_: bool,
    pub unchanged: bool,
}

/// Cilium's `CiliumBGPNodeConfig` (`cilium.io/v2`), which the operator renders per node and the
/// agent reports status into; rackd renders it itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    pub api_version: String,
    pub kind: String,
    pub metadata: NodeConfigMeta,
    pub spec: NodeConfigSpec,
    pub status: NodeConfigStatus,
}

/// `metadata` (the node's name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeConfigMeta {
    pub name: String,
}

/// `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigSpec {
    pub bgp_instances: Vec<NodeInstanceSpec>,
}

/// `spec.bgpInstances[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInstanceSpec {
    pub name: String,
    #[serde(rename = "localASN")]
    pub local_asn: u32,
    #[serde(rename = "routerID")]
    pub router_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    pub peers: Vec<NodePeerSpec>,
}

/// `spec.bgpInstances[].peers[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePeerSpec {
    pub name: String,
    pub peer_address: String,
    #[serde(rename = "peerASN")]
    pub peer_asn: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigStatus {
    pub bgp_instances: Vec<NodeInstanceStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.bgpInstances[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInstanceStatus {
    pub name: String,
    #[serde(rename = "localASN")]
    pub local_asn: u32,
    pub peers: Vec<NodePeerStatus>,
}

/// `status.bgpInstances[].peers[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePeerStatus {
    pub name: String,
    pub peer_address: String,
    #[serde(rename = "peerASN")]
    pub peer_asn: u32,
    pub peering_state: SessionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<NodePeerTimers>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_count: Vec<RouteCount>,
}

/// `timers` of a peer's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePeerTimers {
    pub applied_hold_time_seconds: u64,
    pub applied_keepalive_seconds: u64,
}

/// `routeCount[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteCount {
    pub afi: String,
    pub safi: String,
    pub received: u64,
    pub advertised: u64,
}

/// A row of `rackctl lbipam pools`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PoolView {
    pub name: String,
    pub disabled: bool,
    pub conflicting: bool,
    /// Exact decimal (IPv6 pools exceed u64).
    pub ips_total: String,
    pub ips_available: String,
    pub ips_used: String,
    pub age_seconds: u64,
    /// Condition type, status, reason, message.
    pub conditions: Vec<Condition>,
}

/// A row of `rackctl lbipam services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<String>,
    pub pools: Vec<String>,
    pub condition: Condition,
}

/// A row of `rackctl l2 leases`: one IP group (all services sharing the IP) and who holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseView {
    pub ip: String,
    /// `namespace/name` of every service carrying the IP.
    pub services: Vec<String>,
    /// Interfaces this node answers (or would answer) on.
    pub interfaces: Vec<String>,
    /// Holder node; empty while nobody holds the group.
    pub holder: String,
    /// Seconds since this node saw the current holder take the group.
    pub lease_age_seconds: f64,
    /// Whether this node's policies select it for the group.
    pub candidate: bool,
    /// ARP replies / neighbour advertisements this node sent for the IP (0 unless it holds it).
    pub replies_sent: u64,
}

/// A row of `rackctl l2 announcements`: one (IP, interface) entry this node answers for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AnnouncementView {
    pub ip: String,
    pub services: Vec<String>,
    pub interface: String,
    pub holder: String,
    pub lease_age_seconds: f64,
    pub replies_sent: u64,
}

/// Framing errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("admin socket I/O failed")]
    Io(#[source] std::io::Error),
    #[error("admin message is not valid JSON for this API")]
    Json(#[source] serde_json::Error),
    #[error("admin message longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("admin connection closed before a full message arrived")]
    Closed,
}

/// Write one message as a JSON line.
pub fn write_message<T: Serialize, W: Write>(mut w: W, msg: &T) -> Result<(), FrameError> {
    let mut buf = serde_json::to_vec(msg).map_err(FrameError::Json)?;
    buf.push(b'\n');
    w.write_all(&buf).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Read one JSON line, bounded by [`MAX_LINE`].
pub fn read_message<T: for<'de> Deserialize<'de>, R: BufRead>(r: R) -> Result<T, FrameError> {
    let mut buf = Vec::new();
    let n = r
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(FrameError::Io)?;
    if n == 0 {
        return Err(FrameError::Closed);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n > MAX_LINE {
            FrameError::TooLong
        } else {
            FrameError::Closed
        });
    }
    serde_json::from_slice(&buf).map_err(FrameError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = Request::BgpRoutes {
            table: "loc-rib".into(),
            afi: "ipv4".into(),
            safi: "unicast".into(),
            neighbor: None,
            router_asn: Some(65001),
        };
        let mut buf = Vec::new();
        write_message(&mut buf, &r).unwrap();
        let back: Request = read_message(&buf[..]).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn peer_json_matches_cilium_keys() {
        let p = BgpPeer {
            local_asn: 65001,
            peer_asn: 65000,
            peer_address: "fd00:10::1".into(),
            peer_port: 179,
            session_state: SessionState::Established,
            families: vec![PeerFamily {
                afi: "ipv4".into(),
                safi: "unicast".into(),
                received: 2,
                accepted: 2,
                advertised: 2,
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["local-asn"], 65001);
        assert_eq!(v["peer-address"], "fd00:10::1");
        assert_eq!(v["families"][0]["advertised"], 2);
        // Empty values are omitted, as Go's omitempty does.
        assert!(v.get("uptime-nanoseconds").is_none());
        assert!(v.get("graceful-restart").is_none());
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(matches!(
            read_message::<Request, _>(&b"{\"request\":\"nope\"}\n"[..]),
            Err(FrameError::Json(_))
        ));
        assert!(matches!(
            read_message::<Request, _>(&b"{\"request\":\"status\"}"[..]),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_message::<Request, _>(&b""[..]),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_message::<Request, _>(&b"not json\n"[..]),
            Err(FrameError::Json(_))
        ));
        // A line over the cap is refused after reading at most the cap plus one byte.
        let long = std::io::Read::chain(&b"\""[..], std::io::repeat(b'a'));
        assert!(matches!(
            read_message::<Request, _>(std::io::BufReader::new(long)),
            Err(FrameError::TooLong)
        ));
    }
}
