//! A PeerConfig's `families[]` entry (`{afi, safi}` in GoBGP's spelling, as Cilium's CRD
//! writes it) as the workspace's one family type, [`bgpd_wire::Family`], by IANA number
//! (RFC 4760: AFI from "Address Family Numbers", SAFI from "SAFI Values"; GoBGP's constants
//! for the same names). Every AFI and SAFI the CRD allows has its number, so nothing is
//! mapped to another family; which families rackd's speaker runs is decided on the `Family`.

use std::fmt;

use bgpd_wire::Family;
use rackd_model::cilium::{Afi, Safi};

/// A family the CRD allows that rackd's BGP speaker does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedFamily {
    pub afi: Afi,
    pub safi: Safi,
    /// The same pair as the wire type (`afi-1-safi-2`).
    pub family: Family,
}

impl fmt::Display for UnsupportedFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "family {}/{} ({}) is not supported; rackd runs ipv4/unicast and ipv6/unicast",
            afi(self.afi).1,
            safi(self.safi).1,
            self.family
        )
    }
}

impl std::error::Error for UnsupportedFamily {}

/// The family a PeerConfig names, if rackd's speaker runs it.
pub fn family_of(a: Afi, s: Safi) -> Result<Family, UnsupportedFamily> {
    match Family::from_afi_safi(afi(a).0, safi(s).0) {
        f @ (Family::Ipv4Unicast | Family::Ipv6Unicast) => Ok(f),
        family => Err(UnsupportedFamily {
            afi: a,
            safi: s,
            family,
        }),
    }
}

/// IANA number and GoBGP name of an AFI.
fn afi(a: Afi) -> (u16, &'static str) {
    match a {
        Afi::Ipv4 => (1, "ipv4"),
        Afi::Ipv6 => (2, "ipv6"),
        Afi::L2vpn => (25, "l2vpn"),
        Afi::Ls => (16388, "ls"),
        Afi::Opaque => (16397, "opaque"),
    }
}

/// IANA number and GoBGP name of a SAFI.
fn safi(s: Safi) -> (u8, &'static str) {
    match s {
        Safi::Unicast => (1, "unicast"),
        Safi::Multicast => (2, "multicast"),
        Safi::MplsLabel => (4, "mpls_label"),
        Safi::Encapsulation => (7, "encapsulation"),
        Safi::Vpls => (65, "vpls"),
        Safi::Evpn => (70, "evpn"),
        Safi::Ls => (71, "ls"),
        Safi::SrPolicy => (73, "sr_policy"),
        Safi::Mup => (85, "mup"),
        Safi::MplsVpn => (128, "mpls_vpn"),
        Safi::MplsVpnMulticast => (129, "mpls_vpn_multicast"),
        Safi::RouteTargetConstraints => (132, "route_target_constraints"),
        Safi::FlowspecUnicast => (133, "flowspec_unicast"),
        Safi::FlowspecVpn => (134, "flowspec_vpn"),
        Safi::KeyValue => (241, "key_value"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const AFIS: [Afi; 5] = [Afi::Ipv4, Afi::Ipv6, Afi::L2vpn, Afi::Ls, Afi::Opaque];
    const SAFIS: [Safi; 15] = [
        Safi::Unicast,
        Safi::Multicast,
        Safi::MplsLabel,
        Safi::Encapsulation,
        Safi::Vpls,
        Safi::Evpn,
        Safi::Ls,
        Safi::SrPolicy,
        Safi::Mup,
        Safi::MplsVpn,
        Safi::MplsVpnMulticast,
        Safi::RouteTargetConstraints,
        Safi::FlowspecUnicast,
        Safi::FlowspecVpn,
        Safi::KeyValue,
    ];

    #[test]
    fn only_the_unicast_families_run_and_nothing_is_mapped_to_another() {
        for a in AFIS {
            for s in SAFIS {
                let got = family_of(a, s);
                match (a, s) {
                    (Afi::Ipv4, Safi::Unicast) => assert_eq!(got, Ok(Family::Ipv4Unicast)),
                    (Afi::Ipv6, Safi::Unicast) => assert_eq!(got, Ok(Family::Ipv6Unicast)),
                    _ => {
                        let e = got.unwrap_err();
                        assert_eq!((e.afi, e.safi), (a, s));
                        // The unsupported family keeps its own numbers.
                        assert_eq!((e.family.afi(), e.family.safi()), (afi(a).0, safi(s).0));
                    }
                }
            }
        }
    }

    #[test]
    fn names_are_the_crds() {
        // The names in messages are the spelling the CRD accepts.
        for a in AFIS {
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json.as_str(), Some(afi(a).1));
        }
        for s in SAFIS {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json.as_str(), Some(safi(s).1));
        }
        let e = family_of(Afi::Ipv4, Safi::Multicast).unwrap_err();
        assert_eq!(
            e.to_string(),
            "family ipv4/multicast (afi-1-safi-2) is not supported; rackd runs ipv4/unicast and ipv6/unicast"
        );
    }
}
