//! `#[repr(C)]` mirrors of the map keys and values in `bpf/lb_common.h`
//! (sizes asserted at compile time; the C side has the same layouts, see the
//! `LB_ADDR` note there), the map names and the counter slots.

/// Frontends: HASH `SvcKey -> SvcVal` (plus one address marker per frontend
/// address: port 0, proto 0).
pub const MAP_SERVICES: &str = "rackd_lb_services_v3";
/// Backends: HASH `u32 backend id -> BackendVal`.
pub const MAP_BACKENDS: &str = "rackd_lb_backends_v3";
/// Maglev tables: HASH `LutKey -> LutChunk`.
pub const MAP_MAGLEV: &str = "rackd_lb_maglev_v3";
/// Frontend of each service id: HASH `u32 -> RevNat`.
pub const MAP_REVNAT: &str = "rackd_lb_revnat_v3";
/// loadBalancerSourceRanges: LPM `{prefixlen; SrcRangeData} -> u8`.
pub const MAP_SRCRANGE: &str = "rackd_lb_srcrange_v3";
/// ClientIP affinity: LRU `AffinityKey -> AffinityVal`.
pub const MAP_AFFINITY: &str = "rackd_lb_affinity_v3";
/// Connection tracking: LRU `Tuple -> CtVal`.
pub const MAP_CT: &str = "rackd_lb_ct_v3";
/// NAT mappings: LRU `Tuple -> NatVal`.
pub const MAP_NAT: &str = "rackd_lb_nat_v3";
/// Runtime configuration: ARRAY of one `Config`.
pub const MAP_CONFIG: &str = "rackd_lb_config_v3";
/// SNAT address per device: HASH `u32 ifindex -> Device`.
pub const MAP_DEVICES: &str = "rackd_lb_devices_v3";
/// Masquerade sources (local pod CIDRs): LPM `{prefixlen; [u8; 16]} -> u8`.
pub const MAP_MASQ_SRC: &str = "rackd_lb_masqsrc_v3";
/// Destinations never masqueraded: LPM `{prefixlen; [u8; 16]} -> u8`.
pub const MAP_NO_MASQ: &str = "rackd_lb_nomasq_v3";
/// Per service id packets and bytes: PERCPU_HASH `u32 -> SvcMetrics`.
pub const MAP_METRICS: &str = "rackd_lb_metrics_v3";
/// Drops by reason: PERCPU_ARRAY of `u64`, [`DROP_SLOTS`] slots.
pub const MAP_DROPS: &str = "rackd_lb_drops_v3";
/// Other events: PERCPU_ARRAY of `u64`, [`EVENT_SLOTS`] slots.
pub const MAP_EVENTS: &str = "rackd_lb_events_v3";
/// Egress-gateway policy: LPM `{prefixlen; EgwKeyData} -> EgwEntry` (`bpf/lb_egw.h`).
pub const MAP_EGW_POLICY: &str = "rackd_egw_policy_v3";
/// Egress-gateway settings: ARRAY of one `EgwConfig`.
pub const MAP_EGW_CONFIG: &str = "rackd_egw_config_v3";
/// Egress-gateway counters: PERCPU_ARRAY of `u64`, [`EGW_STAT_SLOTS`] slots.
pub const MAP_EGW_STATS: &str = "rackd_egw_stats_v3";
/// Every map the load balancer pins.
pub const ALL_MAPS: [&str; 18] = [
    MAP_SERVICES,
    MAP_BACKENDS,
    MAP_MAGLEV,
    MAP_REVNAT,
    MAP_SRCRANGE,
    MAP_AFFINITY,
    MAP_CT,
    MAP_NAT,
    MAP_CONFIG,
    MAP_DEVICES,
    MAP_MASQ_SRC,
    MAP_NO_MASQ,
    MAP_METRICS,
    MAP_DROPS,
    MAP_EVENTS,
    MAP_EGW_POLICY,
    MAP_EGW_CONFIG,
    MAP_EGW_STATS,
];
/// The ingress program.
pub const PROG_IN: &str = "rackd_lb_in";
/// The egress program.
pub const PROG_OUT: &str = "rackd_lb_out";
/// The egress gateway's tunnel-device program.
pub const PROG_TUNNEL: &str = "rackd_egw_tunnel";

/// Bytes per LUT chunk (`LB_LUT_BYTES`): 4,000, so that a chunk's hash element (header, key,
/// value) fits the kernel's 4 KiB allocation size; 4,096 took 8 KiB each.
pub const LUT_BYTES: usize = 4000;
/// `LutKey::chunk` bit of the second generation of a table (`LB_LUT_ALT`).
pub const LUT_ALT: u32 = 0x8000_0000;
/// Largest Maglev table the program accepts (`LB_MAGLEV_MAX`).
pub const MAGLEV_MAX: u32 = 131_071;
/// NAT port allocation attempts (`LB_NAT_RETRIES`).
pub const NAT_RETRIES: u32 = 32;

/// `SvcVal::flags`: externalTrafficPolicy Local.
pub const SVC_LOCAL_ONLY: u32 = 1;
/// `SvcVal::flags`: sessionAffinity ClientIP.
pub const SVC_AFFINITY: u32 = 2;
/// `SvcVal::flags`: loadBalancerSourceRanges present.
pub const SVC_SRC_RANGES: u32 = 4;
/// `SvcVal::flags`: the Maglev table is the generation in the [`LUT_ALT`] chunks.
pub const SVC_LUT_ALT: u32 = 8;
/// `BackendVal::flags`: the backend is on this node.
pub const BACKEND_LOCAL: u8 = 1;

/// `Tuple::dir`: client -> frontend.
pub const DIR_SVC: u8 = 0;
/// `Tuple::dir`: local backend -> client.
pub const DIR_REPLY: u8 = 1;
/// `Tuple::dir`: local pod -> remote client of an inbound connection.
pub const DIR_INBOUND: u8 = 2;
/// `Tuple::dir`: NAT, original source -> destination.
pub const DIR_NAT_OUT: u8 = 3;
/// `Tuple::dir`: NAT, destination -> translated source.
pub const DIR_NAT_IN: u8 = 4;

/// `CtVal::flags`: the flow is SNATed to a remote backend.
pub const CT_F_SNAT: u8 = 1;

/// `EgwEntry::flags`: an excluded CIDR (ordinary masquerade applies).
pub const EGW_F_EXCLUDED: u32 = 1;
/// `EgwEntry::flags`: no gateway node: the traffic is dropped.
pub const EGW_F_NO_GATEWAY: u32 = 2;
/// `EgwEntry::flags`: this node is the active gateway.
pub const EGW_F_LOCAL: u32 = 4;
/// Slots of [`MAP_EGW_STATS`], in `EGW_ST_*` order.
pub const EGW_STAT_SLOTS: u32 = 8;

/// Slots of [`MAP_DROPS`].
pub const DROP_SLOTS: u32 = 10;
/// Slots of [`MAP_EVENTS`].
pub const EVENT_SLOTS: u32 = 8;

/// `struct lb_svc_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SvcKey {
    /// Frontend address (IPv4-mapped for IPv4).
    pub addr: [u8; 16],
    /// Frontend port, network order (0 in an address marker).
    pub port: u16,
    /// IP protocol (0 in an address marker).
    pub proto: u8,
    /// Zero.
    pub pad: u8,
}

/// `struct lb_svc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcVal {
    /// Service id.
    pub svc_id: u32,
    /// `SVC_*` flags.
    pub flags: u32,
    /// ClientIP affinity timeout, seconds.
    pub affinity_timeout_s: u32,
    /// Distinct backends in the LUT; 0 = reject.
    pub backend_count: u32,
}

/// `struct lb_backend`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendVal {
    /// Address (IPv4-mapped for IPv4).
    pub addr: [u8; 16],
    /// Port, network order.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// `BACKEND_*` flags.
    pub flags: u8,
}

/// `struct lb_lut_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LutKey {
    /// Service id.
    pub svc_id: u32,
    /// Chunk index (byte offset in the encoded table / [`LUT_BYTES`]), with [`LUT_ALT`] for
    /// the second generation.
    pub chunk: u32,
}

/// `struct lb_lut_chunk`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LutChunk {
    /// Bytes `chunk * LUT_BYTES ..` of the encoded table
    /// ([`rackd_types::maglev::MaglevTable::encode_into`]).
    pub bytes: [u8; LUT_BYTES],
}

/// `struct lb_rev_nat`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevNat {
    /// Frontend address.
    pub addr: [u8; 16],
    /// Frontend port, network order.
    pub port: u16,
    /// Zero.
    pub pad: [u8; 2],
}

/// The data part of `struct lb_src_range_key` (aya adds the prefix length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrcRangeData {
    /// Service id (always matched: 32 bits of the prefix).
    pub svc_id: u32,
    /// Source prefix (IPv4-mapped for IPv4).
    pub addr: [u8; 16],
}

/// `struct lb_affinity_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityKey {
    /// Service id.
    pub svc_id: u32,
    /// Client address.
    pub client: [u8; 16],
}

/// `struct lb_affinity_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityVal {
    /// Backend chosen for the client.
    pub backend_id: u32,
    /// Zero.
    pub pad: u32,
    /// Last use, CLOCK_MONOTONIC ns.
    pub last_used_ns: u64,
}

/// `struct lb_tuple`: key of the CT and NAT maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source port (ICMP echo request: identifier), network order.
    pub sport: u16,
    /// Destination port (ICMP echo reply: identifier), network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// `DIR_*`.
    pub dir: u8,
    /// Zero.
    pub pad: [u8; 2],
}

/// `struct lb_ct_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtVal {
    /// Expiry, CLOCK_MONOTONIC ns.
    pub expires_ns: u64,
    /// Backend of the flow.
    pub backend_id: u32,
    /// Service of the flow.
    pub svc_id: u32,
    /// TCP flags seen in this direction.
    pub tcp_flags_seen: u8,
    /// TCP state (`LB_CT_*`).
    pub state: u8,
    /// `CT_F_*`.
    pub flags: u8,
    /// Zero.
    pub pad: u8,
    /// Zero.
    pub pad2: u32,
}

/// `struct lb_nat_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatVal {
    /// Expiry, CLOCK_MONOTONIC ns.
    pub expires_ns: u64,
    /// NAT_OUT: translated source; NAT_IN: original source.
    pub addr: [u8; 16],
    /// Port (or ICMP identifier) going with `addr`, network order.
    pub port: u16,
    /// TCP flags seen.
    pub tcp_flags_seen: u8,
    /// TCP state.
    pub state: u8,
    /// NAT_IN of a service flow: its service id (source restored to the
    /// frontend); else 0.
    pub svc_id: u32,
}

/// `struct lb_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Maglev table size M.
    pub maglev_m: u32,
    /// Maglev 5-tuple hash seed.
    pub seed: u32,
    /// NAT port range, host order.
    pub nat_min: u16,
    /// NAT port range, host order.
    pub nat_max: u16,
    /// Masquerade IPv4.
    pub masq_v4: u8,
    /// Masquerade IPv6.
    pub masq_v6: u8,
    /// Zero.
    pub pad: [u8; 2],
}

/// `struct lb_device`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// IPv4 address (mapped), zero = none.
    pub v4: [u8; 16],
    /// IPv6 address, zero = none.
    pub v6: [u8; 16],
}

/// `struct lb_svc_metrics`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcMetrics {
    /// Packets to the frontend.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The data part of `struct egw_key` (aya adds the prefix length: 128 for the source, exact,
/// plus the destination's bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EgwKeyData {
    /// Source pod address (IPv4-mapped for IPv4).
    pub saddr: [u8; 16],
    /// Destination prefix (IPv4-mapped for IPv4).
    pub daddr: [u8; 16],
}

/// `struct egw_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgwEntry {
    /// Address to SNAT to at the gateway; zero = unknown (dropped there).
    pub egress_ip: [u8; 16],
    /// The gateway node's tunnel endpoint.
    pub gateway: [u8; 16],
    /// The pod's node (replies are tunnelled back to it); zero when it is this node.
    pub src_node: [u8; 16],
    /// `EGW_F_*`.
    pub flags: u32,
    /// Zero.
    pub pad: u32,
}

/// `struct egw_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgwConfig {
    /// Non-zero: the programs consult the policy map.
    pub enabled: u32,
    /// The collect-metadata VXLAN device.
    pub tunnel_ifindex: u32,
    /// VXLAN network identifier.
    pub vni: u32,
    /// The MAC every node gives its tunnel device.
    pub tunnel_mac: [u8; 6],
    /// Zero.
    pub pad: [u8; 2],
}

macro_rules! pod {
    ($($t:ty = $n:expr),* $(,)?) => {$(
        // SAFETY: plain-old-data `#[repr(C)]` struct without implicit
        // padding (size asserted), valid for any bit pattern.
        unsafe impl aya::Pod for $t {}
        const _: () = assert!(size_of::<$t>() == $n);
    )*};
}

pod!(
    SvcKey = 20,
    SvcVal = 16,
    BackendVal = 20,
    LutKey = 8,
    LutChunk = 4000,
    RevNat = 20,
    SrcRangeData = 20,
    AffinityKey = 20,
    AffinityVal = 16,
    Tuple = 40,
    CtVal = 24,
    NatVal = 32,
    Config = 16,
    Device = 32,
    SvcMetrics = 16,
    EgwKeyData = 32,
    EgwEntry = 56,
    EgwConfig = 20,
);
