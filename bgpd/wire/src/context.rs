//! The negotiated session context: what both OPENs agreed on, which decides how UPDATEs are
//! laid out on the wire (AS width, message size, ADD-PATH, extended next hop).

use crate::types::{AddPathEntry, Capability, ExtendedNextHopEntry, Family, GracefulRestart, Open};

/// AS_TRANS (RFC 6793 §9): the 2-octet stand-in for a 4-octet ASN.
pub const AS_TRANS: u16 = 23456;
/// RFC 4271 §4: maximum message size without RFC 8654.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 8654 §4: maximum message size once extended messages are negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
/// RFC 4271 §4.1: fixed header length.
pub const HEADER_LEN: usize = 19;
/// AFI values (IANA "Address Family Numbers").
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
/// SAFI value for unicast (IANA "SAFI Values").
pub const SAFI_UNICAST: u8 = 1;

impl Open {
    /// The speaker's ASN: the 4-octet AS capability (RFC 6793 §3) when present, else the
    /// 2-octet "My Autonomous System" field.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// The value of the 4-octet AS capability, if advertised.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The "My Autonomous System" field to send for `asn` (RFC 6793 §4.1: AS_TRANS when it
    /// does not fit in 2 octets).
    pub fn my_as_field(asn: u32) -> u16 {
        u16::try_from(asn).unwrap_or(AS_TRANS)
    }

    /// Whether a capability with this code was advertised.
    pub fn has_capability(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    /// Families advertised with the multiprotocol capability. RFC 4760 §8: a speaker that
    /// sends no multiprotocol capability at all supports IPv4 unicast only.
    pub fn multiprotocol_families(&self) -> Vec<Family> {
        let fams: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if fams.is_empty() && !self.has_capability(capability_code::MULTIPROTOCOL) {
            vec![Family::Ipv4Unicast]
        } else {
            fams
        }
    }

    /// The graceful restart capability, if advertised.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }

    /// Whether route refresh (RFC 2918) was advertised.
    pub fn route_refresh(&self) -> bool {
        self.has_capability(capability_code::ROUTE_REFRESH)
    }

    /// Whether enhanced route refresh (RFC 7313) was advertised.
    pub fn enhanced_route_refresh(&self) -> bool {
        self.has_capability(capability_code::ENHANCED_ROUTE_REFRESH)
    }

    /// Whether extended messages (RFC 8654) were advertised.
    pub fn extended_message(&self) -> bool {
        self.has_capability(capability_code::EXTENDED_MESSAGE)
    }

    /// ADD-PATH tuples advertised (RFC 7911 §4), flattened over repeated capabilities.
    pub fn add_path(&self) -> impl Iterator<Item = &AddPathEntry> {
        self.capabilities.iter().flat_map(|c| match c {
            Capability::AddPath(v) => v.as_slice(),
            _ => &[],
        })
    }

    /// Extended next hop tuples advertised (RFC 8950 §3).
    pub fn extended_next_hop(&self) -> impl Iterator<Item = &ExtendedNextHopEntry> {
        self.capabilities.iter().flat_map(|c| match c {
            Capability::ExtendedNextHop(v) => v.as_slice(),
            _ => &[],
        })
    }
}

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// draft-walton-bgp-hostname-capability; decoded as [`crate::Capability::Unknown`].
    pub const FQDN: u8 = 73;
}

impl Capability {
    /// The capability code on the wire.
    pub fn code(&self) -> u8 {
        use capability_code as c;
        match self {
            Capability::Multiprotocol(_) => c::MULTIPROTOCOL,
            Capability::RouteRefresh => c::ROUTE_REFRESH,
            Capability::ExtendedNextHop(_) => c::EXTENDED_NEXT_HOP,
            Capability::ExtendedMessage => c::EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => c::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => c::FOUR_OCTET_AS,
            Capability::AddPath(_) => c::ADD_PATH,
            Capability::EnhancedRouteRefresh => c::ENHANCED_ROUTE_REFRESH,
            Capability::Unknown { code, .. } => *code,
        }
    }
}

/// What both ends of a session agreed on; decides the wire layout of UPDATEs.
///
/// `Default` is the context before OPENs are exchanged (RFC 4271 only: 2-octet AS, 4096-octet
/// messages, nothing else), which is all that is needed to read OPEN, KEEPALIVE and
/// NOTIFICATION.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionContext {
    /// RFC 6793: both sides sent the 4-octet AS capability; AS_PATH and AGGREGATOR carry
    /// 4-octet ASNs and AS4_PATH/AS4_AGGREGATOR are not used.
    pub four_octet_as: bool,
    /// RFC 8654: both sides sent the extended message capability (65535-octet messages).
    pub extended_message: bool,
    /// RFC 7911: families whose received NLRI carry a path identifier (we advertised receive,
    /// the peer advertised send).
    pub add_path_rx: Vec<Family>,
    /// RFC 7911: families whose sent NLRI must carry a path identifier.
    pub add_path_tx: Vec<Family>,
    /// RFC 8950: NLRI families that may be carried with an IPv6 next hop (both sides advertised
    /// `<family, AFI 2>`).
    pub extended_next_hop: Vec<Family>,
    /// Families both sides advertised with the multiprotocol capability (RFC 4760 §8).
    pub families: Vec<Family>,
}

impl SessionContext {
    /// A context with 4-octet ASNs and nothing else; handy in tests and benches.
    pub fn four_octet() -> Self {
        SessionContext {
            four_octet_as: true,
            ..Default::default()
        }
    }

    /// Negotiate the session from our OPEN and the peer's (RFC 5492: a capability is in effect
    /// only when both sides advertised it).
    pub fn negotiate(local: &Open, remote: &Open) -> Self {
        let four_octet_as = local.four_octet_as().is_some() && remote.four_octet_as().is_some();
        let extended_message = local.extended_message() && remote.extended_message();
        let remote_fams = remote.multiprotocol_families();
        let families: Vec<Family> = local
            .multiprotocol_families()
            .into_iter()
            .filter(|f| remote_fams.contains(f))
            .collect();
        let mut add_path_rx = Vec::new();
        let mut add_path_tx = Vec::new();
        for l in local.add_path() {
            for r in remote.add_path().filter(|r| r.family == l.family) {
                // RFC 7911 §5: receive on our side pairs with send on theirs.
                if l.receive && r.send && !add_path_rx.contains(&l.family) {
                    add_path_rx.push(l.family);
                }
                if l.send && r.receive && !add_path_tx.contains(&l.family) {
                    add_path_tx.push(l.family);
                }
            }
        }
        let extended_next_hop = local
            .extended_next_hop()
            .filter(|l| l.nexthop_afi == AFI_IPV6)
            .filter(|l| remote.extended_next_hop().any(|r| r == *l))
            .map(|l| l.nlri)
            .fold(Vec::new(), |mut acc, f| {
                if !acc.contains(&f) {
                    acc.push(f);
                }
                acc
            });
        SessionContext {
            four_octet_as,
            extended_message,
            add_path_rx,
            add_path_tx,
            extended_next_hop,
            families,
        }
    }

    /// Largest message the peer accepts and we accept (RFC 8654).
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    /// Whether received NLRI of `family` carry path identifiers.
    pub fn add_path_rx(&self, family: Family) -> bool {
        self.add_path_rx.contains(&family)
    }

    /// Whether sent NLRI of `family` must carry path identifiers.
    pub fn add_path_tx(&self, family: Family) -> bool {
        self.add_path_tx.contains(&family)
    }

    /// Whether `family` NLRI may be sent with an IPv6 next hop (RFC 8950).
    pub fn extended_next_hop(&self, family: Family) -> bool {
        self.extended_next_hop.contains(&family)
    }

    /// Whether both sides negotiated `family`.
    pub fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }

    /// Octets of one AS number in AS_PATH and AGGREGATOR.
    pub(crate) fn as_width(&self) -> usize {
        if self.four_octet_as { 4 } else { 2 }
    }
}
