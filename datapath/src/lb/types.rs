//! The control plane's view of the load balancer: what it writes
//! (frontends, backends, services, devices, masquerade) and what it reads
//! back (dumps, counters, GC statistics).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use rackd_types::maglev::MaglevTable;

use super::maps;

pub use rackd_types::service::{BackendValue, Frontend, L4Proto};

/// Identifier of a backend (chosen by the control plane, never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

/// Map sizes; used only when the maps are created (a pinned map keeps its
/// size: changing these needs `uninstall` or a layout bump).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbSizes {
    /// Conntrack entries (LRU). Each flow takes one (remote backends,
    /// masquerade) or two (local backends).
    pub ct: u32,
    /// NAT entries (LRU), two per translated flow.
    pub nat: u32,
    /// Maglev LUT chunks of [`super::maps::LUT_BYTES`]: a service of N backends takes
    /// ceil((4 N + M) / 4000) below 256 backends, ceil((4 N + 2 M) / 4000) from 256 on, and
    /// twice that while its table is rewritten.
    pub lut_chunks: u32,
    /// Frontends (each frontend address also takes one marker entry) and reverse-NAT
    /// entries (Cilium's `--bpf-lb-map-max`).
    pub services: u32,
    /// Backends (Cilium's `--bpf-lb-map-max`).
    pub backends: u32,
}

impl Default for LbSizes {
    fn default() -> Self {
        LbSizes {
            ct: 262_144,
            nat: 262_144,
            lut_chunks: 262_144,
            services: 65_536,
            backends: 65_536,
        }
    }
}

impl LbSizes {
    /// Room for `map_max` frontends and `map_max` backends with Maglev tables of `m` slots:
    /// every frontend's table of up to 255 backends, and two tables of the most backends
    /// being rewritten (the maps are not preallocated: only what is written takes memory).
    pub fn for_map_max(map_max: u32, m: u32) -> Self {
        let narrow = super::lut_chunks(rackd_types::maglev::NARROW_MAX, m);
        let widest = super::lut_chunks(rackd_types::maglev::MAX_BACKENDS, m);
        LbSizes {
            lut_chunks: map_max
                .saturating_mul(narrow)
                .saturating_add(widest.saturating_mul(2)),
            services: map_max.saturating_mul(2),
            backends: map_max,
            ..LbSizes::default()
        }
    }
}

/// Load balancer configuration ([`super::ServiceLb::open_or_create`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbConfig {
    /// Maglev table size M (`--bpf-lb-maglev-table-size`, a prime); every
    /// LUT written must have exactly M entries.
    pub maglev_table_size: u32,
    /// Seed of the 5-tuple hash (`--bpf-lb-maglev-hash-seed`, reduced to 32
    /// bits by the caller); the same on every node.
    pub hash_seed: u32,
    /// NAT source port range, inclusive (Cilium: 32768-65535).
    pub nat_port_min: u16,
    /// See `nat_port_min`.
    pub nat_port_max: u16,
    /// Map sizes at creation.
    pub sizes: LbSizes,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            maglev_table_size: 16_381,
            hash_seed: 0,
            nat_port_min: 32_768,
            nat_port_max: 65_535,
            sizes: LbSizes::default(),
        }
    }
}

/// A device's addresses, the sources of SNAT and masquerade through it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceAddrs {
    /// IPv4 source.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 source.
    pub v6: Option<Ipv6Addr>,
}

/// What a frontend does ([`super::ServiceLb::upsert_service`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceEntry<'a> {
    /// Service id (never 0; the frontend's rev-NAT index).
    pub id: u32,
    /// externalTrafficPolicy Local: no SNAT (the LUT holds local backends).
    pub local_only: bool,
    /// sessionAffinity ClientIP and its timeout.
    pub affinity_timeout: Option<Duration>,
    /// The Maglev table: M slots, or empty for "no backend" (clients
    /// get a TCP RST / ICMP port unreachable).
    pub lut: &'a MaglevTable,
    /// loadBalancerSourceRanges; empty = everyone.
    pub source_ranges: &'a [IpNet],
}

/// Masquerade ([`super::ServiceLb::set_masquerade`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasqConfig {
    /// Masquerade IPv4 (`--enable-ipv4-masquerade`).
    pub v4: bool,
    /// Masquerade IPv6 (`--enable-ipv6-masquerade`).
    pub v6: bool,
    /// Local pod CIDRs: the sources to masquerade.
    pub pod_cidrs: Vec<IpNet>,
    /// Destinations never masqueraded (ip-masq-agent's
    /// `nonMasqueradeCIDRs`; the caller adds the cluster's pod CIDRs and
    /// link-local ranges as ip-masq-agent does).
    pub non_masq: Vec<IpNet>,
}

/// A frontend as stored ([`super::ServiceLb::services`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDump {
    /// The frontend.
    pub frontend: Frontend,
    /// Its service id.
    pub id: u32,
    /// externalTrafficPolicy Local.
    pub local_only: bool,
    /// ClientIP affinity timeout.
    pub affinity_timeout: Option<Duration>,
    /// Whether source ranges are enforced.
    pub source_ranges: bool,
    /// Backends of its LUT with their slot counts, by id.
    pub backends: Vec<(BackendId, u32)>,
}

/// Direction of a CT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDir {
    /// Client -> frontend (the flow's backend).
    Service,
    /// Local backend -> client (translated back at egress).
    Reply,
    /// Local pod -> client of a connection that came in (not masqueraded).
    Inbound,
}

/// A flow's addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTuple {
    /// Source address.
    pub src: IpAddr,
    /// Source port (ICMP echo request: identifier).
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port (ICMP echo reply: identifier).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

/// A conntrack entry ([`super::ServiceLb::ct_entries`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// Its tuple.
    pub tuple: FlowTuple,
    /// Its direction.
    pub dir: CtDir,
    /// Expiry, CLOCK_MONOTONIC ns.
    pub expires_ns: u64,
    /// Backend (Service and Reply entries).
    pub backend: BackendId,
    /// Service id (Service and Reply entries).
    pub svc_id: u32,
    /// TCP flags seen.
    pub tcp_flags_seen: u8,
    /// TCP state: 0 SYN, 1 established, 2 closing, 3 not TCP.
    pub state: u8,
    /// SNATed to a remote backend.
    pub snat: bool,
}

/// A NAT entry ([`super::ServiceLb::nat_entries`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatEntry {
    /// Its tuple.
    pub tuple: FlowTuple,
    /// `true`: forward (original -> translated source); `false`: reverse.
    pub egress: bool,
    /// Forward: the translated source; reverse: the original source.
    pub to_addr: IpAddr,
    /// Port or identifier going with `to_addr`.
    pub to_port: u16,
    /// Reverse entry of a service flow: its service id.
    pub svc_id: u32,
    /// Expiry, CLOCK_MONOTONIC ns.
    pub expires_ns: u64,
}

/// What [`super::ServiceLb::gc`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// CT entries seen.
    pub ct_scanned: u64,
    /// Expired CT entries deleted.
    pub ct_deleted: u64,
    /// NAT entries seen.
    pub nat_scanned: u64,
    /// Expired NAT entries deleted.
    pub nat_deleted: u64,
}

/// Why the programs dropped (or rejected) a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Addressed to a frontend with unusable headers.
    Malformed,
    /// A fragment of a frontend flow or of traffic to masquerade.
    Fragment,
    /// Client outside loadBalancerSourceRanges.
    SourceRange,
    /// No backend: rejected (RST / ICMP unreachable sent).
    NoBackend,
    /// No free NAT port.
    NatExhausted,
    /// The LUT slot is missing (table being rewritten).
    LutMiss,
    /// A tracked flow's backend was removed: reset.
    BackendGone,
    /// A rewrite helper failed.
    Rewrite,
    /// SNAT needed but the device has no address of the family.
    NoDeviceAddr,
    /// Backend of the other address family.
    Family,
}

impl DropReason {
    /// Every reason, in slot order.
    pub const ALL: [DropReason; maps::DROP_SLOTS as usize] = [
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::SourceRange,
        DropReason::NoBackend,
        DropReason::NatExhausted,
        DropReason::LutMiss,
        DropReason::BackendGone,
        DropReason::Rewrite,
        DropReason::NoDeviceAddr,
        DropReason::Family,
    ];

    /// Name for metrics and listings.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Fragment => "fragment",
            DropReason::SourceRange => "source_range",
            DropReason::NoBackend => "no_backend",
            DropReason::NatExhausted => "nat_exhausted",
            DropReason::LutMiss => "lut_miss",
            DropReason::BackendGone => "backend_gone",
            DropReason::Rewrite => "rewrite",
            DropReason::NoDeviceAddr => "no_device_addr",
            DropReason::Family => "family",
        }
    }
}

/// Counters of one service id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Packets to its frontends.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Events other than drops (sums over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbEvents {
    /// NAT port collisions retried.
    pub nat_retries: u64,
    /// TCP resets sent.
    pub rst_sent: u64,
    /// ICMP(v6) unreachables sent.
    pub icmp_sent: u64,
    /// Malformed packets passed on untouched.
    pub malformed_passed: u64,
    /// Translated packets forwarded by redirect.
    pub redirected: u64,
    /// Translated packets handed to the stack.
    pub to_stack: u64,
    /// ICMP errors translated.
    pub icmp_errors: u64,
}

/// Everything [`super::ServiceLb::counters`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbCounters {
    /// Per service id, by id.
    pub services: Vec<(u32, ServiceCounters)>,
    /// Drops by reason (every reason listed).
    pub drops: Vec<(DropReason, u64)>,
    /// Other events.
    pub events: LbEvents,
    /// CT entries present.
    pub ct_entries: u64,
    /// NAT entries present.
    pub nat_entries: u64,
}

impl LbCounters {
    /// The drop count of one reason.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// 16-byte map form of an address (IPv4-mapped for IPv4).
pub fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address of a 16-byte map form (IPv4-mapped -> IPv4).
pub fn ip_of(a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// (prefix length in map form, 16-byte network) of a CIDR.
pub fn prefix16(net: &IpNet) -> (u32, [u8; 16]) {
    match net.trunc() {
        IpNet::V4(n) => (
            96 + u32::from(n.prefix_len()),
            addr16(IpAddr::V4(n.network())),
        ),
        IpNet::V6(n) => (u32::from(n.prefix_len()), n.network().octets()),
    }
}

pub(crate) fn tuple_of(t: &maps::Tuple) -> FlowTuple {
    FlowTuple {
        src: ip_of(t.saddr),
        sport: u16::from_be(t.sport),
        dst: ip_of(t.daddr),
        dport: u16::from_be(t.dport),
        proto: t.proto,
    }
}
