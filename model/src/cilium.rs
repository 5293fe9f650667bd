//! Cilium custom resources, typed as Cilium v1.20 serves them (`cilium.io/v2`, and
//! `cilium.io/v2alpha1` for the L2 announcement policy).
//!
//! The derived structs are the Kubernetes storage version, so a later Kubernetes
//! source can watch them with `kube` directly. The few fields that only exist in the
//! deprecated `v2alpha1` BGP/LB-IPAM schemas are kept here too, marked
//! `#[schemars(skip)]`, so that a `v2alpha1` file can be read into the same type;
//! the loader rejects them under `v2` and folds them away under `v2alpha1`
//! (see [`crate::validate`]).
//!
//! Defaults the API server applies from the CRD's OpenAPI schema are serde defaults
//! here (so a present `timers: {}` reads as 120/90/30); defaults Cilium applies in
//! code when a whole sub-object is absent (`SetDefaults()`) are the accessor methods
//! such as [`CiliumBGPPeerConfigSpec::timers`].
//!
//! Long (~1,260 lines) on purpose: one file holds every cilium.io type rackd reads, in the
//! order of cilium-compat.md §1, so a field can be checked against Cilium's schema in one place;
//! the types share helper structs (selectors, conditions) that splitting would scatter.
#![allow(missing_docs)] // kube-derive's generated root structs carry their own docs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::selector::{NilSelector, Selector, for_field};

/// Cilium API group.
pub const GROUP: &str = "cilium.io";
/// `DefaultBGPPeerPort`.
pub const DEFAULT_PEER_PORT: i32 = 179;
/// `DefaultBGPEBGPMultihopTTL`.
pub const DEFAULT_EBGP_MULTIHOP: i32 = 1;
/// `DefaultBGPConnectRetryTimeSeconds`.
pub const DEFAULT_CONNECT_RETRY_SECONDS: i32 = 120;
/// `DefaultBGPHoldTimeSeconds`.
pub const DEFAULT_HOLD_TIME_SECONDS: i32 = 90;
/// `DefaultBGPKeepAliveTimeSeconds`.
pub const DEFAULT_KEEPALIVE_SECONDS: i32 = 30;
/// `DefaultBGPGRRestartTimeSeconds` (RFC 4724 §4.2 restart time).
pub const DEFAULT_GR_RESTART_SECONDS: i32 = 120;
/// Cilium's names, defined once for the workspace in `rackd-types`.
pub use rackd_types::cilium::{
    AUTH_SECRET_PASSWORD_KEY, CLASS_BGP_CONTROL_PLANE as BGP_LOAD_BALANCER_CLASS,
    CLASS_L2_ANNOUNCER as L2_LOAD_BALANCER_CLASS,
};

fn default_peer_port() -> i32 {
    DEFAULT_PEER_PORT
}
fn default_ebgp_multihop() -> i32 {
    DEFAULT_EBGP_MULTIHOP
}
fn default_connect_retry() -> i32 {
    DEFAULT_CONNECT_RETRY_SECONDS
}
fn default_hold_time() -> i32 {
    DEFAULT_HOLD_TIME_SECONDS
}
fn default_keepalive() -> i32 {
    DEFAULT_KEEPALIVE_SECONDS
}
fn default_restart_time() -> i32 {
    DEFAULT_GR_RESTART_SECONDS
}

/// Status shared by the BGP CRDs that only report conditions.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionsStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ===== CiliumBGPClusterConfig =====

/// `spec` of a CiliumBGPClusterConfig: which nodes run which BGP instances.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumBGPClusterConfig",
    plural = "ciliumbgpclusterconfigs",
    shortname = "cbgpcluster",
    category = "cilium",
    category = "ciliumbgp",
    status = "ConditionsStatus",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPClusterConfigSpec {
    /// Nodes this config applies to; nil or empty selects all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// 1..=16 BGP instances, unique by name.
    pub bgp_instances: Vec<CiliumBGPInstance>,
}

/// One BGP instance (virtual router).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPInstance {
    pub name: String,
    #[serde(rename = "localASN", default, skip_serializing_if = "Option::is_none")]
    pub local_asn: Option<i64>,
    /// Unset = the instance does not listen for incoming connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<CiliumBGPPeer>,
    /// BMP collectors (RFC 7854) every node of this instance reports to, in the shape of
    /// Cilium's BMP work (cilium#46630 and its docs, `bgp-control-plane-bmp.rst`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bmp_servers: Vec<CiliumBGPBMPServer>,
}

/// One BMP collector (a "monitoring station", RFC 7854 §3.2): the node connects to it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPBMPServer {
    /// Unique within the instance.
    pub name: String,
    /// The collector's IPv4 or IPv6 address.
    pub peer_address: String,
    /// The collector's TCP port (default 11019, the IANA BMP port Cilium's docs name).
    #[serde(default = "default_bmp_port")]
    pub peer_port: i32,
    /// What is reported: `pre` (default), `post`, `both`, `local` (RFC 9069 Loc-RIB) or
    /// `all`.
    #[serde(default)]
    pub monitoring_policy: BmpMonitoringPolicy,
    /// Seconds between Statistics Reports (15..=65535); unset = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics_timeout: Option<i32>,
}

fn default_bmp_port() -> i32 {
    11019
}

/// `monitoringPolicy`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BmpMonitoringPolicy {
    /// Pre-policy Adj-RIB-In.
    #[default]
    Pre,
    /// Post-policy Adj-RIB-In.
    Post,
    /// Both Adj-RIB-In views.
    Both,
    /// The Loc-RIB (RFC 9069).
    Local,
    /// Every view.
    All,
}

/// A peer of a BGP instance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPPeer {
    pub name: String,
    /// IPv4 or IPv6 address, optionally with a `%zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// Local interface for an IPv6 link-local `peerAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_interface: Option<String>,
    /// 0 = learn the ASN from the peer's OPEN.
    #[serde(rename = "peerASN", default)]
    pub peer_asn: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_discovery: Option<BGPAutoDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_config_ref: Option<PeerConfigReference>,
}

/// Peer address auto-discovery.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPAutoDiscovery {
    pub mode: AutoDiscoveryMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_gateway: Option<DefaultGatewayDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unnumbered: Option<UnnumberedDiscovery>,
}

/// `autoDiscovery.mode`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
pub enum AutoDiscoveryMode {
    /// The peer is the node's default gateway.
    DefaultGateway,
    /// Link-local peering over an interface (RFC 8950 style).
    Unnumbered,
}

/// `autoDiscovery.defaultGateway`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultGatewayDiscovery {
    pub address_family: AddressFamily,
}

/// `autoDiscovery.unnumbered`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnnumberedDiscovery {
    pub interface: String,
}

/// `ipv4` or `ipv6`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

/// Reference to a CiliumBGPPeerConfig by name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerConfigReference {
    pub name: String,
    /// v2alpha1 only (default `cilium.io`); rejected under v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub group: Option<String>,
    /// v2alpha1 only (default `CiliumBGPPeerConfig`); rejected under v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub kind: Option<String>,
}

impl CiliumBGPClusterConfigSpec {
    /// Nodes this config applies to (nil = all nodes).
    pub fn node_selector(&self) -> Selector {
        for_field(self.node_selector.as_ref(), NilSelector::MatchesAll)
    }
}

// ===== CiliumBGPPeerConfig =====

/// `spec` of a CiliumBGPPeerConfig: transport, timers, auth, GR and families of a peer.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumBGPPeerConfig",
    plural = "ciliumbgppeerconfigs",
    shortname = "cbgppeer",
    category = "cilium",
    category = "ciliumbgp",
    status = "ConditionsStatus",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPPeerConfigSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<CiliumBGPTransport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<CiliumBGPTimers>,
    /// Secret (in the BGP secrets namespace) whose key `password` is the TCP-MD5 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<CiliumBGPNeighborGracefulRestart>,
    /// TTL for eBGP; 1 = single hop. Ignored for iBGP.
    #[serde(rename = "ebgpMultihop", default = "default_ebgp_multihop")]
    pub ebgp_multihop: i32,
    /// Unset = ipv6/unicast and ipv4/unicast, neither advertising anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<CiliumBGPFamilyWithAdverts>>,
    /// BFD for the peers using this PeerConfig, in the shape of Cilium's open pull request
    /// cilium#48251 (single-hop peers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<CiliumBGPBFD>,
}

impl Default for CiliumBGPPeerConfigSpec {
    fn default() -> Self {
        Self {
            transport: None,
            timers: None,
            auth_secret_ref: None,
            graceful_restart: None,
            ebgp_multihop: DEFAULT_EBGP_MULTIHOP,
            families: None,
            bfd: None,
        }
    }
}

/// `spec.bfd` (cilium#48251, open as of 2026-12): RFC 5880 timers in microseconds, as the
/// pull request has them (its reviewers asked for milliseconds; rackd follows the PR as
/// submitted and will follow it if it changes). `desiredMinTxIntervalMicroseconds` and its
/// default of 1 s are the PR's; the receive interval and multiplier mirror them (RFC 5880
/// §6.8.1's names) with the same 1 s and GoBGP's multiplier 3.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPBFD {
    pub enabled: bool,
    /// bfd.DesiredMinTxInterval (1..=4294967295 µs, default 1 s).
    #[serde(default = "default_bfd_interval_us")]
    pub desired_min_tx_interval_microseconds: i64,
    /// bfd.RequiredMinRxInterval (1..=4294967295 µs, default 1 s).
    #[serde(default = "default_bfd_interval_us")]
    pub required_min_rx_interval_microseconds: i64,
    /// bfd.DetectMult (1..=255, default 3).
    #[serde(default = "default_bfd_detect_multiplier")]
    pub detect_multiplier: i32,
}

fn default_bfd_interval_us() -> i64 {
    1_000_000
}

fn default_bfd_detect_multiplier() -> i32 {
    3
}

/// Effective timers after Cilium's defaulting, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveTimers {
    pub connect_retry: i32,
    pub hold: i32,
    pub keepalive: i32,
}

impl CiliumBGPPeerConfigSpec {
    /// Peer TCP port (default 179).
    pub fn peer_port(&self) -> i32 {
        self.transport
            .as_ref()
            .map_or(DEFAULT_PEER_PORT, |t| t.peer_port)
    }

    /// Timers with Cilium's defaults (120/90/30) for whatever is absent.
    pub fn timers(&self) -> EffectiveTimers {
        self.timers.as_ref().map_or(
            EffectiveTimers {
                connect_retry: DEFAULT_CONNECT_RETRY_SECONDS,
                hold: DEFAULT_HOLD_TIME_SECONDS,
                keepalive: DEFAULT_KEEPALIVE_SECONDS,
            },
            |t| EffectiveTimers {
                connect_retry: t.connect_retry_time_seconds,
                hold: t.hold_time_seconds,
                keepalive: t.keep_alive_time_seconds,
            },
        )
    }

    /// Graceful restart, `{enabled: false, restartTimeSeconds: 120}` when absent
    /// (Cilium `SetDefaults()`).
    pub fn graceful_restart(&self) -> CiliumBGPNeighborGracefulRestart {
        self.graceful_restart
            .clone()
            .unwrap_or(CiliumBGPNeighborGracefulRestart {
                enabled: false,
                restart_time_seconds: DEFAULT_GR_RESTART_SECONDS,
            })
    }

    /// Families, `[ipv6/unicast, ipv4/unicast]` (no advertisements) when absent.
    pub fn families(&self) -> Vec<CiliumBGPFamilyWithAdverts> {
        self.families.clone().unwrap_or_else(|| {
            vec![
                CiliumBGPFamilyWithAdverts {
                    afi: Afi::Ipv6,
                    safi: Safi::Unicast,
                    advertisements: None,
                },
                CiliumBGPFamilyWithAdverts {
                    afi: Afi::Ipv4,
                    safi: Safi::Unicast,
                    advertisements: None,
                },
            ]
        })
    }
}

/// `spec.transport`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPTransport {
    #[serde(default = "default_peer_port")]
    pub peer_port: i32,
    /// Interface whose address is the session source (v2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_interface: Option<String>,
    /// v2alpha1 only (deprecated, dropped in v2); rejected under v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub local_port: Option<i32>,
}

/// `spec.timers`; CEL: `keepAliveTimeSeconds <= holdTimeSeconds` after defaulting.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPTimers {
    #[serde(default = "default_connect_retry")]
    pub connect_retry_time_seconds: i32,
    #[serde(default = "default_hold_time")]
    pub hold_time_seconds: i32,
    #[serde(default = "default_keepalive")]
    pub keep_alive_time_seconds: i32,
}

/// `spec.gracefulRestart` (RFC 4724).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPNeighborGracefulRestart {
    pub enabled: bool,
    #[serde(default = "default_restart_time")]
    pub restart_time_seconds: i32,
}

/// An address family and the advertisements it carries.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPFamilyWithAdverts {
    pub afi: Afi,
    pub safi: Safi,
    /// Selects CiliumBGPAdvertisements; unset = nothing advertised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisements: Option<LabelSelector>,
}

impl CiliumBGPFamilyWithAdverts {
    /// Advertisements carried by this family (nil = none).
    pub fn advertisement_selector(&self) -> Selector {
        for_field(self.advertisements.as_ref(), NilSelector::MatchesNone)
    }
}

/// Address Family Identifier, GoBGP spelling.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Afi {
    Ipv4,
    Ipv6,
    L2vpn,
    Ls,
    Opaque,
}

/// Subsequent Address Family Identifier, GoBGP spelling.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Safi {
    Unicast,
    Multicast,
    MplsLabel,
    Encapsulation,
    Vpls,
    Evpn,
    Ls,
    SrPolicy,
    Mup,
    MplsVpn,
    MplsVpnMulticast,
    RouteTargetConstraints,
    FlowspecUnicast,
    FlowspecVpn,
    KeyValue,
}

// ===== CiliumBGPAdvertisement =====

/// `spec` of a CiliumBGPAdvertisement: what to announce and with which attributes.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumBGPAdvertisement",
    plural = "ciliumbgpadvertisements",
    shortname = "cbgpadvert",
    category = "cilium",
    category = "ciliumbgp",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPAdvertisementSpec {
    pub advertisements: Vec<BGPAdvertisement>,
}

/// One advertisement.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPAdvertisement {
    pub advertisement_type: AdvertisementType,
    /// Required iff the type is `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<BGPServiceOptions>,
    /// Required iff the type is `Interface`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<BGPInterfaceOptions>,
    /// Forbidden for `PodCIDR`; for other types unset selects nothing. For `EgressGateway`
    /// it selects `CiliumEgressGatewayPolicy` objects by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BGPAttributes>,
}

impl BGPAdvertisement {
    /// Objects (Services, pools) this advertisement selects (nil = none). Not used
    /// for `PodCIDR`, which has no selector.
    pub fn object_selector(&self) -> Selector {
        for_field(self.selector.as_ref(), NilSelector::MatchesNone)
    }
}

/// `advertisementType`: Cilium's four values and one of rackd's.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum AdvertisementType {
    PodCIDR,
    CiliumPodIPPool,
    Service,
    Interface,
    /// rackd's extension (cilium#41916, which Cilium has no answer to): the egress addresses
    /// of the `CiliumEgressGatewayPolicy` objects whose labels `selector` matches, advertised
    /// as /32 or /128 by the node that is their active gateway, with this entry's
    /// `attributes`. A new value rather than an annotation because what it needs (which
    /// peers, which attributes, which policies) is exactly an advertisement entry's; only
    /// rackd's CRD (`v2`) accepts it.
    EgressGateway,
}

/// `service` options.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPServiceOptions {
    pub addresses: Vec<ServiceAddressType>,
    #[serde(
        rename = "aggregationLengthIPv4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub aggregation_length_ipv4: Option<i16>,
    #[serde(
        rename = "aggregationLengthIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub aggregation_length_ipv6: Option<i16>,
}

/// Service address kinds that can be advertised.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum ServiceAddressType {
    LoadBalancerIP,
    ClusterIP,
    ExternalIP,
}

/// `interface` options.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPInterfaceOptions {
    pub name: String,
}

/// Path attributes added to advertised routes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<BGPCommunities>,
    /// Unset = no LOCAL_PREF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_preference: Option<i64>,
}

/// Communities to add.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPCommunities {
    /// RFC 1997: `N` (0..=4294967295) or `A:B` (each 0..=65535).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standard: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub well_known: Vec<WellKnownCommunity>,
    /// RFC 8092: `A:B:C`, three u32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large: Vec<String>,
}

/// Well-known communities by GoBGP name.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum WellKnownCommunity {
    Internet,
    PlannedShut,
    AcceptOwn,
    RouteFilterTranslatedV4,
    RouteFilterV4,
    RouteFilterTranslatedV6,
    RouteFilterV6,
    LlgrStale,
    NoLlgr,
    Blackhole,
    NoExport,
    NoAdvertise,
    NoExportSubconfed,
    NoPeer,
}

impl WellKnownCommunity {
    /// The 32-bit community value (RFC 1997, RFC 3765, RFC 7611, RFC 7999, RFC 8326, RFC 9494).
    pub fn value(self) -> u32 {
        match self {
            Self::Internet => 0,
            Self::PlannedShut => 0xffff_0000,
            Self::AcceptOwn => 0xffff_0001,
            Self::RouteFilterTranslatedV4 => 0xffff_0002,
            Self::RouteFilterV4 => 0xffff_0003,
            Self::RouteFilterTranslatedV6 => 0xffff_0004,
            Self::RouteFilterV6 => 0xffff_0005,
            Self::LlgrStale => 0xffff_0006,
            Self::NoLlgr => 0xffff_0007,
            Self::Blackhole => 0xffff_029a,
            Self::NoExport => 0xffff_ff01,
            Self::NoAdvertise => 0xffff_ff02,
            Self::NoExportSubconfed => 0xffff_ff03,
            Self::NoPeer => 0xffff_ff04,
        }
    }
}

/// Parses a standard community (`N` or `A:B`) as the CRD pattern allows it.
pub fn parse_standard_community(s: &str) -> Option<u32> {
    match s.split_once(':') {
        None => parse_decimal::<u32>(s),
        Some((a, b)) => {
            let a = parse_decimal::<u16>(a)?;
            let b = parse_decimal::<u16>(b)?;
            Some((u32::from(a) << 16) | u32::from(b))
        }
    }
}

/// Parses a large community `A:B:C`.
pub fn parse_large_community(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':');
    let a = parse_decimal(it.next()?)?;
    let b = parse_decimal(it.next()?)?;
    let c = parse_decimal(it.next()?)?;
    it.next().is_none().then_some((a, b, c))
}

/// Decimal without sign, leading zeros or whitespace, as the CRD regexes require.
fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    if ok { s.parse().ok() } else { None }
}

// ===== CiliumBGPNodeConfigOverride =====

/// `spec` of a CiliumBGPNodeConfigOverride; the object name is the node name.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumBGPNodeConfigOverride",
    plural = "ciliumbgpnodeconfigoverrides",
    shortname = "cbgpnodeoverride",
    category = "cilium",
    category = "ciliumbgp",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPNodeConfigOverrideSpec {
    pub bgp_instances: Vec<CiliumBGPNodeConfigInstanceOverride>,
}

/// Per-instance override.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPNodeConfigInstanceOverride {
    pub name: String,
    #[serde(rename = "routerID", default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<i32>,
    #[serde(rename = "localASN", default, skip_serializing_if = "Option::is_none")]
    pub local_asn: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<CiliumBGPNodeConfigPeerOverride>,
}

/// Per-peer override.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumBGPNodeConfigPeerOverride {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_interface: Option<String>,
}

// ===== CiliumBGPNodeConfig =====

/// `spec` of a CiliumBGPNodeConfig: the BGP instances one node runs, rendered from the
/// CiliumBGPClusterConfig that selects the node and the node's CiliumBGPNodeConfigOverride.
/// Cilium's operator writes one per node, named after the node; rackd renders it the same way.
// Not `deny_unknown_fields`: it is an output that is read back from the API server, where a
// newer writer may have added fields.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumBGPNodeConfig",
    plural = "ciliumbgpnodeconfigs",
    shortname = "cbgpnode",
    category = "cilium",
    category = "ciliumbgp",
    status = "CiliumBGPNodeConfigStatus",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPNodeConfigSpec {
    /// 1..=16 BGP instances on this node, unique by name.
    pub bgp_instances: Vec<CiliumBGPNodeInstance>,
}

/// One BGP instance (virtual router) on the node.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPNodeInstance {
    /// The ClusterConfig's instance name.
    pub name: String,
    /// Local ASN (from the override, else the ClusterConfig).
    #[serde(rename = "localASN", default, skip_serializing_if = "Option::is_none")]
    pub local_asn: Option<i64>,
    /// Router ID (from the override, else derived from the node's address).
    #[serde(rename = "routerID", default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Listening port; unset = the instance does not listen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<i32>,
    /// The instance's peers, unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<CiliumBGPNodePeer>,
}

/// A peer of a node's BGP instance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPNodePeer {
    /// The ClusterConfig's peer name.
    pub name: String,
    /// IPv4 or IPv6 address, optionally with a `%zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// Local interface for an IPv6 link-local `peerAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_interface: Option<String>,
    /// Peer ASN; 0 = learn it from the peer's OPEN.
    #[serde(rename = "peerASN", default, skip_serializing_if = "Option::is_none")]
    pub peer_asn: Option<i64>,
    /// Peer address auto-discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_discovery: Option<BGPAutoDiscovery>,
    /// Session source address (from the override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
    /// The CiliumBGPPeerConfig this peer uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_config_ref: Option<PeerConfigReference>,
}

/// `status` of a CiliumBGPNodeConfig: what the node's speaker runs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPNodeConfigStatus {
    /// Per-instance status, unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bgp_instances: Vec<CiliumBGPNodeInstanceStatus>,
    /// `cilium.io/BGPReconcileError` and friends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.bgpInstances[]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPNodeInstanceStatus {
    /// Instance name.
    pub name: String,
    /// Local ASN in use.
    #[serde(rename = "localASN", default, skip_serializing_if = "Option::is_none")]
    pub local_asn: Option<i64>,
    /// Per-peer status, unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<CiliumBGPNodePeerStatus>,
}

/// `status.bgpInstances[].peers[]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPNodePeerStatus {
    /// Peer name.
    pub name: String,
    /// Peer address.
    pub peer_address: String,
    /// Peer ASN.
    #[serde(rename = "peerASN", default, skip_serializing_if = "Option::is_none")]
    pub peer_asn: Option<i64>,
    /// Session state in GoBGP's spelling (`established`, `active`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering_state: Option<String>,
    /// Negotiated timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<CiliumBGPTimersState>,
    /// When the session was established, RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_time: Option<String>,
    /// Routes exchanged per AFI/SAFI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_count: Vec<BGPFamilyRouteCount>,
}

/// Negotiated timers of a session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiliumBGPTimersState {
    /// Negotiated hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hold_time_seconds: Option<i32>,
    /// Negotiated keepalive interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_keepalive_seconds: Option<i32>,
}

/// Routes received from and advertised to a peer in one address family.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPFamilyRouteCount {
    /// AFI.
    pub afi: Afi,
    /// SAFI.
    pub safi: Safi,
    /// Routes received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<i32>,
    /// Routes advertised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised: Option<i32>,
}

// ===== CiliumLoadBalancerIPPool =====

/// `spec` of a CiliumLoadBalancerIPPool.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumLoadBalancerIPPool",
    plural = "ciliumloadbalancerippools",
    shortname = "ippools",
    shortname = "ippool",
    shortname = "lbippool",
    shortname = "lbippools",
    category = "cilium",
    status = "ConditionsStatus",
    printcolumn(name = "Disabled", type_ = "boolean", json_path = ".spec.disabled"),
    printcolumn = r#"{"name": "Conflicting", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"cilium.io/PoolConflict\")].status"}"#,
    printcolumn = r#"{"name": "IPs Available", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"cilium.io/IPsAvailable\")].message"}"#,
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumLoadBalancerIPPoolSpec {
    /// Undefined = `Yes` (Cilium ≥ 1.16).
    #[serde(
        rename = "allowFirstLastIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_first_last_ips: Option<YesNo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<CiliumLoadBalancerIPPoolIPBlock>,
    /// No new allocations; existing ones stay.
    #[serde(default)]
    pub disabled: bool,
    /// nil = every service is eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    /// Pre-1.15 `v2alpha1` name of `blocks`; folded into `blocks` on load, rejected under v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub cidrs: Option<Vec<CiliumLoadBalancerIPPoolIPBlock>>,
}

impl CiliumLoadBalancerIPPoolSpec {
    /// Services eligible for this pool (nil = all).
    pub fn service_selector(&self) -> Selector {
        for_field(self.service_selector.as_ref(), NilSelector::MatchesAll)
    }

    /// Whether the first and last address of each CIDR may be allocated (default yes).
    pub fn allow_first_last_ips(&self) -> bool {
        self.allow_first_last_ips != Some(YesNo::No)
    }
}

/// `Yes` / `No` string enum.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
pub enum YesNo {
    Yes,
    No,
}

/// A CIDR or a `start`..`stop` range (empty `stop` = the single IP `start`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumLoadBalancerIPPoolIPBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

// ===== CiliumL2AnnouncementPolicy =====

/// `spec` of a CiliumL2AnnouncementPolicy (served only as `cilium.io/v2alpha1`).
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2alpha1",
    kind = "CiliumL2AnnouncementPolicy",
    plural = "ciliuml2announcementpolicies",
    shortname = "l2announcement",
    category = "cilium",
    status = "ConditionsStatus",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumL2AnnouncementPolicySpec {
    /// nil = all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// nil = all services (whose class is nil or `io.cilium/l2-announcer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    #[serde(rename = "loadBalancerIPs", default)]
    pub load_balancer_ips: bool,
    #[serde(rename = "externalIPs", default)]
    pub external_ips: bool,
    /// Go regexps, OR-ed; nil or empty = all interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
}

impl CiliumL2AnnouncementPolicySpec {
    /// Nodes that may announce (nil = all).
    pub fn node_selector(&self) -> Selector {
        for_field(self.node_selector.as_ref(), NilSelector::MatchesAll)
    }

    /// Services to announce (nil = all).
    pub fn service_selector(&self) -> Selector {
        for_field(self.service_selector.as_ref(), NilSelector::MatchesAll)
    }
}

// ===== CiliumEgressGatewayPolicy =====

/// `spec` of a CiliumEgressGatewayPolicy.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "cilium.io",
    version = "v2",
    kind = "CiliumEgressGatewayPolicy",
    plural = "ciliumegressgatewaypolicies",
    shortname = "cegp",
    category = "cilium",
    category = "ciliumpolicy",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumEgressGatewayPolicySpec {
    pub selectors: Vec<EgressRule>,
    #[serde(rename = "destinationCIDRs")]
    pub destination_cidrs: Vec<String>,
    #[serde(
        rename = "excludedCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_cidrs: Vec<String>,
    /// Ignored when `egressGateways` is non-empty.
    pub egress_gateway: EgressGateway,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_gateways: Vec<EgressGateway>,
}

/// Which source endpoints a policy applies to.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

/// A gateway: the first matching node by name SNATs to `egressIP` or the address of
/// `interface` (both set is rejected; neither = the default-route interface).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressGateway {
    pub node_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(rename = "egressIP", default, skip_serializing_if = "Option::is_none")]
    pub egress_ip: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn communities_parse_like_the_crd_patterns() {
        assert_eq!(parse_standard_community("65000:99"), Some(65000 << 16 | 99));
        assert_eq!(parse_standard_community("4294967295"), Some(u32::MAX));
        assert_eq!(parse_standard_community("0"), Some(0));
        for bad in [
            "",
            "65536:1",
            "1:65536",
            "4294967296",
            "01",
            "-1",
            "1:2:3",
            " 1",
            "a:b",
        ] {
            assert_eq!(parse_standard_community(bad), None, "{bad:?}");
        }
        assert_eq!(parse_large_community("1:2:3"), Some((1, 2, 3)));
        assert_eq!(
            parse_large_community("4294967295:0:4294967295"),
            Some((u32::MAX, 0, u32::MAX))
        );
        for bad in ["1:2", "1:2:3:4", "4294967296:0:0", "1::3", "007:1:1"] {
            assert_eq!(parse_large_community(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn peer_config_defaults_match_cilium() {
        let s = CiliumBGPPeerConfigSpec::default();
        assert_eq!(s.peer_port(), 179);
        assert_eq!(
            s.timers(),
            EffectiveTimers {
                connect_retry: 120,
                hold: 90,
                keepalive: 30
            }
        );
        assert!(!s.graceful_restart().enabled);
        assert_eq!(s.graceful_restart().restart_time_seconds, 120);
        assert_eq!(s.ebgp_multihop, 1);
        let f = s.families();
        assert_eq!((f[0].afi, f[0].safi), (Afi::Ipv6, Safi::Unicast));
        assert_eq!((f[1].afi, f[1].safi), (Afi::Ipv4, Safi::Unicast));

        // A present-but-partial sub-object gets the OpenAPI defaults.
        let s: CiliumBGPPeerConfigSpec = serde_json::from_str(
            r#"{"timers":{"holdTimeSeconds":9},"gracefulRestart":{"enabled":true},"transport":{}}"#,
        )
        .unwrap();
        assert_eq!(s.timers().keepalive, 30);
        assert_eq!(s.timers().connect_retry, 120);
        assert_eq!(s.graceful_restart().restart_time_seconds, 120);
        assert_eq!(s.peer_port(), 179);
    }

    #[test]
    fn field_selectors_apply_cilium_nil_semantics() {
        let labels = std::collections::BTreeMap::new();
        let cc = CiliumBGPClusterConfigSpec {
            node_selector: None,
            bgp_instances: vec![],
        };
        assert!(cc.node_selector().matches(&labels));
        let fam = CiliumBGPFamilyWithAdverts {
            afi: Afi::Ipv4,
            safi: Safi::Unicast,
            advertisements: None,
        };
        assert!(!fam.advertisement_selector().matches(&labels));
        assert!(
            CiliumLoadBalancerIPPoolSpec::default()
                .service_selector()
                .matches(&labels)
        );
        let l2 = CiliumL2AnnouncementPolicySpec::default();
        assert!(l2.node_selector().matches(&labels) && l2.service_selector().matches(&labels));
        let ad = BGPAdvertisement {
            advertisement_type: AdvertisementType::Service,
            service: None,
            interface: None,
            selector: None,
            attributes: None,
        };
        assert!(!ad.object_selector().matches(&labels));
    }

    #[test]
    fn pool_allow_first_last_defaults_to_yes() {
        let mut s = CiliumLoadBalancerIPPoolSpec::default();
        assert!(s.allow_first_last_ips());
        s.allow_first_last_ips = Some(YesNo::No);
        assert!(!s.allow_first_last_ips());
    }

    #[test]
    fn well_known_names() {
        let c: WellKnownCommunity = serde_json::from_str("\"no-export\"").unwrap();
        assert_eq!(c.value(), 0xffff_ff01);
        let c: WellKnownCommunity = serde_json::from_str("\"route-filter-translated-v4\"").unwrap();
        assert_eq!(c, WellKnownCommunity::RouteFilterTranslatedV4);
    }

    #[test]
    fn crds_generate() {
        use kube_core::CustomResourceExt;
        for crd in [
            CiliumBGPClusterConfig::crd(),
            CiliumBGPPeerConfig::crd(),
            CiliumBGPAdvertisement::crd(),
            CiliumBGPNodeConfigOverride::crd(),
            CiliumLoadBalancerIPPool::crd(),
            CiliumL2AnnouncementPolicy::crd(),
            CiliumEgressGatewayPolicy::crd(),
        ] {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Cluster");
        }
    }
}
