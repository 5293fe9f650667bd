//! The fixed parts of BMP: constants, the common header's fields and the per-peer header
//! (RFC 7854 §4.1-§4.2, RFC 9069 §4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;
use crate::reader::Reader;

/// RFC 7854 §4.1: the only version this crate speaks.
pub const VERSION: u8 = 3;
/// RFC 7854 §4.1: version (1) + message length (4) + message type (1).
pub const COMMON_HEADER_LEN: usize = 6;
/// RFC 7854 §4.2: type 1, flags 1, distinguisher 8, address 16, AS 4, BGP ID 4, timestamp 8.
pub const PER_PEER_HEADER_LEN: usize = 42;
/// RFC 4271 §4.1: marker (16) + length (2) + type (1).
pub const BGP_HEADER_LEN: usize = 19;

/// BMP message types (RFC 7854 §4.1).
pub mod msg_type {
    /// Route Monitoring (§4.6).
    pub const ROUTE_MONITORING: u8 = 0;
    /// Statistics Report (§4.8).
    pub const STATISTICS_REPORT: u8 = 1;
    /// Peer Down Notification (§4.9).
    pub const PEER_DOWN: u8 = 2;
    /// Peer Up Notification (§4.10).
    pub const PEER_UP: u8 = 3;
    /// Initiation (§4.3).
    pub const INITIATION: u8 = 4;
    /// Termination (§4.5).
    pub const TERMINATION: u8 = 5;
    /// Route Mirroring (§4.7); not produced nor decoded here.
    pub const ROUTE_MIRRORING: u8 = 6;
}

/// Information TLV types (RFC 7854 §4.4, RFC 9069 §5.2.1; IANA "BMP Initiation and Peer Up
/// Information TLVs").
pub mod info_type {
    /// Free-form UTF-8 string; may repeat.
    pub const STRING: u16 = 0;
    /// sysDescr (Initiation only).
    pub const SYS_DESCR: u16 = 1;
    /// sysName (Initiation only).
    pub const SYS_NAME: u16 = 2;
    /// VRF/Table Name (RFC 9069 §5.2.1; Peer Up and reason-6 Peer Down).
    pub const VRF_TABLE_NAME: u16 = 3;
}

/// Termination TLV types (RFC 7854 §4.5).
pub mod term_type {
    /// Free-form UTF-8 string.
    pub const STRING: u16 = 0;
    /// 2-octet reason code.
    pub const REASON: u16 = 1;
}

/// Statistics types (RFC 7854 §4.8, RFC 8671 §5, IANA "BMP Statistics Types").
pub mod stat_type {
    /// 32-bit counter: prefixes rejected by inbound policy.
    pub const REJECTED_PREFIXES: u16 = 0;
    /// 32-bit counter: duplicate prefix advertisements.
    pub const DUPLICATE_PREFIXES: u16 = 1;
    /// 32-bit counter: duplicate withdraws.
    pub const DUPLICATE_WITHDRAWS: u16 = 2;
    /// 64-bit gauge: routes in Adj-RIBs-In.
    pub const ADJ_RIB_IN_ROUTES: u16 = 7;
    /// 64-bit gauge: routes in Loc-RIB (also the Loc-RIB peer's, RFC 9069 §5.6).
    pub const LOC_RIB_ROUTES: u16 = 8;
    /// AFI (2), SAFI (1), 64-bit gauge: routes in per-AFI/SAFI Adj-RIB-In.
    pub const PER_AFI_SAFI_ADJ_RIB_IN_ROUTES: u16 = 9;
    /// AFI (2), SAFI (1), 64-bit gauge: routes in per-AFI/SAFI Loc-RIB (RFC 9069 §5.6).
    pub const PER_AFI_SAFI_LOC_RIB_ROUTES: u16 = 10;
    /// 32-bit counter: updates treated as withdraw (RFC 7606).
    pub const TREAT_AS_WITHDRAW_UPDATES: u16 = 11;
    /// 32-bit counter: prefixes treated as withdraw.
    pub const TREAT_AS_WITHDRAW_PREFIXES: u16 = 12;
    /// 32-bit counter: duplicate UPDATE messages.
    pub const DUPLICATE_UPDATES: u16 = 13;
    /// 64-bit gauge: routes in pre-policy Adj-RIB-Out (RFC 8671).
    pub const PRE_POLICY_ADJ_RIB_OUT_ROUTES: u16 = 14;
    /// 64-bit gauge: routes in post-policy Adj-RIB-Out (RFC 8671).
    pub const POST_POLICY_ADJ_RIB_OUT_ROUTES: u16 = 15;
    /// AFI/SAFI gauge: per-AFI/SAFI pre-policy Adj-RIB-Out (RFC 8671).
    pub const PER_AFI_SAFI_PRE_POLICY_ADJ_RIB_OUT_ROUTES: u16 = 16;
    /// AFI/SAFI gauge: per-AFI/SAFI post-policy Adj-RIB-Out (RFC 8671).
    pub const PER_AFI_SAFI_POST_POLICY_ADJ_RIB_OUT_ROUTES: u16 = 17;
}

/// Peer types (RFC 7854 §4.2, RFC 9069 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// 0: a peer of the global (default) instance.
    GlobalInstance,
    /// 1: a peer of an RD (VRF) instance.
    RdInstance,
    /// 2: a peer of a local instance.
    LocalInstance,
    /// 3: the Loc-RIB of an instance (RFC 9069).
    LocRibInstance,
}

impl PeerType {
    fn code(self) -> u8 {
        match self {
            PeerType::GlobalInstance => 0,
            PeerType::RdInstance => 1,
            PeerType::LocalInstance => 2,
            PeerType::LocRibInstance => 3,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            0 => PeerType::GlobalInstance,
            1 => PeerType::RdInstance,
            2 => PeerType::LocalInstance,
            3 => PeerType::LocRibInstance,
            other => return Err(DecodeError::UnknownPeerType(other)),
        })
    }
}

/// Per-peer flags. Peer types 0-2 use V/L/A/O (RFC 7854 §4.2, RFC 8671 §4); the Loc-RIB peer
/// type uses only F in the same first bit position as V (RFC 9069 §4.2). V is not stored: it
/// follows from the peer address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerFlags {
    /// L: post-policy Adj-RIB-In (types 0-2).
    pub post_policy: bool,
    /// A: AS_PATH in the legacy 2-octet format (types 0-2).
    pub legacy_as_path: bool,
    /// O: Adj-RIB-Out rather than Adj-RIB-In (types 0-2, RFC 8671).
    pub adj_rib_out: bool,
    /// F: the Loc-RIB is filtered (type 3, RFC 9069 §4.2).
    pub filtered: bool,
}

const FLAG_V: u8 = 0x80;
const FLAG_L: u8 = 0x40;
const FLAG_A: u8 = 0x20;
const FLAG_O: u8 = 0x10;
const FLAG_F: u8 = 0x80;

/// Seconds and microseconds since the UNIX epoch (RFC 7854 §4.2); zero means unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timestamp {
    /// Whole seconds.
    pub secs: u32,
    /// Microseconds within the second.
    pub micros: u32,
}

impl Timestamp {
    /// `t` as a BMP timestamp; times outside the 32-bit range become zero ("unavailable").
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => match u32::try_from(d.as_secs()) {
                Ok(secs) => Timestamp {
                    secs,
                    micros: d.subsec_micros(),
                },
                Err(_) => Timestamp::default(),
            },
            Err(_) => Timestamp::default(),
        }
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }
}

/// The per-peer header (RFC 7854 §4.2; RFC 9069 §5.1 for the Loc-RIB peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerHeader {
    /// Which kind of peer.
    pub peer_type: PeerType,
    /// The type-specific flags.
    pub flags: PeerFlags,
    /// Route distinguisher or instance id; zero for the global instance.
    pub distinguisher: u64,
    /// The peer's address (the V flag follows from it); zero-filled for Loc-RIB
    /// (RFC 9069 §5.1), decoded as `0.0.0.0`.
    pub address: IpAddr,
    /// The peer's AS; for Loc-RIB the router's own AS.
    pub asn: u32,
    /// The peer's BGP identifier; for Loc-RIB the router's own.
    pub bgp_id: Ipv4Addr,
    /// When the routes were received (or installed in the Loc-RIB).
    pub timestamp: Timestamp,
}

impl PeerHeader {
    /// A peer of the global instance (peer type 0).
    pub fn global(address: IpAddr, asn: u32, bgp_id: Ipv4Addr, timestamp: Timestamp) -> Self {
        PeerHeader {
            peer_type: PeerType::GlobalInstance,
            flags: PeerFlags::default(),
            distinguisher: 0,
            address,
            asn,
            bgp_id,
            timestamp,
        }
    }

    /// The Loc-RIB peer (type 3): zero address, own AS and BGP identifier (RFC 9069 §5.1).
    pub fn loc_rib(
        distinguisher: u64,
        asn: u32,
        bgp_id: Ipv4Addr,
        filtered: bool,
        timestamp: Timestamp,
    ) -> Self {
        PeerHeader {
            peer_type: PeerType::LocRibInstance,
            flags: PeerFlags {
                filtered,
                ..PeerFlags::default()
            },
            distinguisher,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            asn,
            bgp_id,
            timestamp,
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.peer_type.code());
        let mut flags = 0;
        if self.peer_type == PeerType::LocRibInstance {
            // RFC 9069 §4.2: only F; the rest is transmitted as zero.
            if self.flags.filtered {
                flags |= FLAG_F;
            }
        } else {
            if self.address.is_ipv6() {
                flags |= FLAG_V;
            }
            if self.flags.post_policy {
                flags |= FLAG_L;
            }
            if self.flags.legacy_as_path {
                flags |= FLAG_A;
            }
            if self.flags.adj_rib_out {
                flags |= FLAG_O;
            }
        }
        out.put_u8(flags);
        out.put_u64(self.distinguisher);
        if self.peer_type == PeerType::LocRibInstance {
            // RFC 9069 §5.1: zero-filled, whatever the caller put there.
            out.put_bytes(0, 16);
        } else {
            put_address(out, self.address);
        }
        out.put_u32(self.asn);
        out.put_slice(&self.bgp_id.octets());
        out.put_u32(self.timestamp.secs);
        out.put_u32(self.timestamp.micros);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let avail = r.len();
        let short = || DecodeError::Truncated {
            what: "per-peer header",
            needed: PER_PEER_HEADER_LEN,
            available: avail,
        };
        let peer_type = PeerType::from_code(r.u8().ok_or_else(short)?)?;
        let raw = r.u8().ok_or_else(short)?;
        let distinguisher = r.u64().ok_or_else(short)?;
        let addr: [u8; 16] = r.array().ok_or_else(short)?;
        let asn = r.u32().ok_or_else(short)?;
        let bgp_id = Ipv4Addr::from(r.array::<4>().ok_or_else(short)?);
        let secs = r.u32().ok_or_else(short)?;
        let micros = r.u32().ok_or_else(short)?;
        let (flags, address) = if peer_type == PeerType::LocRibInstance {
            // Reserved bits are ignored on receipt (RFC 9069 §4.2), so is the address (§5.1).
            let flags = PeerFlags {
                filtered: raw & FLAG_F != 0,
                ..PeerFlags::default()
            };
            (flags, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        } else {
            let flags = PeerFlags {
                post_policy: raw & FLAG_L != 0,
                legacy_as_path: raw & FLAG_A != 0,
                adj_rib_out: raw & FLAG_O != 0,
                filtered: false,
            };
            (flags, address_from(addr, raw & FLAG_V != 0))
        };
        Ok(PeerHeader {
            peer_type,
            flags,
            distinguisher,
            address,
            asn,
            bgp_id,
            timestamp: Timestamp { secs, micros },
        })
    }
}

/// RFC 7854 §4.2/§4.10: an IPv4 address goes in the low 4 octets, the 12 leading ones zero.
pub(crate) fn put_address(out: &mut BytesMut, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            out.put_bytes(0, 12);
            out.put_slice(&v4.octets());
        }
        IpAddr::V6(v6) => out.put_slice(&v6.octets()),
    }
}

pub(crate) fn address_from(raw: [u8; 16], ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(raw))
    } else {
        let [.., a, b, c, d] = raw;
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
}
