//! Rust mirrors of the map keys and values in `bpf/l2_responder.h` and
//! `bpf/probe.bpf.c`, and the names of the maps. Each program's maps are pinned
//! in its folder (see [`crate::pin`]); their names end in the program's
//! layout version (`_v1`, [`crate::ProgramSpec::version`]), bumped with any
//! layout change.
/// Announced IPv4 entries: HASH `V4Key -> Entry`.
pub const MAP_V4: &str = "rackd_l2_v4_v1";
/// Announced IPv6 entries: HASH `V6Key -> Entry`.
pub const MAP_V6: &str = "rackd_l2_v6_v1";
/// Per-interface MAC used in replies: HASH `u32 ifindex -> Iface`.
pub const MAP_IFACE: &str = "rackd_l2_if_v1";
/// Liveness guard: ARRAY of two `u64` (`CFG_HEARTBEAT_NS`, `CFG_LEASE_NS`).
pub const MAP_CFG: &str = "rackd_l2_cfg_v1";
/// Every map the responder pins.
pub const ALL_MAPS: [&str; 4] = [MAP_V4, MAP_V6, MAP_IFACE, MAP_CFG];
/// tc program (attached).
pub const PROG_TC: &str = "rackd_l2_tc";
/// XDP variant (loaded for measurement and tests only).
pub const PROG_XDP: &str = "rackd_l2_xdp";

/// Slot of `MAP_CFG` holding the last heartbeat, CLOCK_MONOTONIC nanoseconds.
pub const CFG_HEARTBEAT_NS: u32 = 0;
/// Slot of `MAP_CFG` holding the lease duration in nanoseconds.
pub const CFG_LEASE_NS: u32 = 1;

/// The probe's counters: ARRAY of `PROBE_SLOTS` `u64`, indexed by `PROBE_*`.
pub const MAP_PROBE: &str = "rackd_probe_v1";
/// The probe program.
pub const PROG_PROBE: &str = "rackd_probe_tc";
/// Probe slot: ARP frames.
pub const PROBE_ARP: u32 = 0;
/// Probe slot: IPv4 packets.
pub const PROBE_IPV4: u32 = 1;
/// Probe slot: IPv6 packets.
pub const PROBE_IPV6: u32 = 2;
/// Probe slot: anything else.
pub const PROBE_OTHER: u32 = 3;

/// `struct l2_v4_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V4Key {
    /// IPv4 address in network byte order (the octets in memory order).
    pub ip4: [u8; 4],
    /// Interface the request must arrive on.
    pub ifindex: u32,
}

/// `struct l2_v6_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V6Key {
    /// IPv6 address octets.
    pub ip6: [u8; 16],
    /// Interface the solicitation must arrive on.
    pub ifindex: u32,
    /// Always zero (hash keys compare every byte).
    pub pad: u32,
}

/// `struct l2_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Replies sent for this entry.
    pub replies: u64,
}

/// `struct l2_iface`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// MAC address put into replies.
    pub mac: [u8; 6],
    /// Always zero.
    pub pad: [u8; 2],
}

// SAFETY: plain-old-data `#[repr(C)]` structs without implicit padding (sizes
// asserted below), valid for any bit pattern.
unsafe impl aya::Pod for V4Key {}
// SAFETY: as above.
unsafe impl aya::Pod for V6Key {}
// SAFETY: as above.
unsafe impl aya::Pod for Entry {}
// SAFETY: as above.
unsafe impl aya::Pod for Iface {}

const _: () = assert!(size_of::<V4Key>() == 8);
const _: () = assert!(size_of::<V6Key>() == 24);
const _: () = assert!(size_of::<Entry>() == 8);
const _: () = assert!(size_of::<Iface>() == 8);
