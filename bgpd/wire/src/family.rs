//! Address families: numbers, names and text forms of [`Family`].
//!
//! Names follow GoBGP and Cilium: AFI `ipv4` / `ipv6`, SAFI `unicast`, and the family as
//! `ipv4-unicast` (GoBGP's route family name, also accepted as `ipv4/unicast`). Other pairs
//! are written `afi-<n>-safi-<m>`. With the `serde` feature a family is (de)serialised as that
//! text.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::context::{AFI_IPV4, AFI_IPV6, SAFI_UNICAST};
use crate::types::Family;

impl Family {
    /// The family for an AFI/SAFI pair.
    pub fn from_afi_safi(afi: u16, safi: u8) -> Family {
        match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Family::Ipv4Unicast,
            (AFI_IPV6, SAFI_UNICAST) => Family::Ipv6Unicast,
            (afi, safi) => Family::Other { afi, safi },
        }
    }

    /// Address family identifier.
    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => AFI_IPV4,
            Family::Ipv6Unicast => AFI_IPV6,
            Family::Other { afi, .. } => afi,
        }
    }

    /// Subsequent address family identifier.
    pub fn safi(self) -> u8 {
        match self {
            Family::Ipv4Unicast | Family::Ipv6Unicast => SAFI_UNICAST,
            Family::Other { safi, .. } => safi,
        }
    }

    /// The unicast family of a prefix.
    pub fn of_prefix(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// The unicast family of an address.
    pub fn of_addr(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4Unicast,
            IpAddr::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// The AFI's name as GoBGP and Cilium write it: `ipv4`, `ipv6`, else `unknown`.
    pub fn afi_name(self) -> &'static str {
        match self.afi() {
            AFI_IPV4 => "ipv4",
            AFI_IPV6 => "ipv6",
            _ => "unknown",
        }
    }

    /// The SAFI's name as GoBGP and Cilium write it: `unicast`, else `unknown`.
    pub fn safi_name(self) -> &'static str {
        match self.safi() {
            SAFI_UNICAST => "unicast",
            _ => "unknown",
        }
    }

    /// The family with these AFI and SAFI names ([`Family::afi_name`], [`Family::safi_name`]);
    /// `None` for names other than `ipv4` / `ipv6` and `unicast`.
    pub fn from_names(afi: &str, safi: &str) -> Option<Family> {
        let afi = match afi {
            "ipv4" => AFI_IPV4,
            "ipv6" => AFI_IPV6,
            _ => return None,
        };
        (safi == "unicast").then(|| Family::from_afi_safi(afi, SAFI_UNICAST))
    }
}

/// `ipv4-unicast`, `ipv6-unicast`, `afi-<n>-safi-<m>`.
impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Family::Ipv4Unicast | Family::Ipv6Unicast => {
                write!(f, "{}-{}", self.afi_name(), self.safi_name())
            }
            Family::Other { afi, safi } => write!(f, "afi-{afi}-safi-{safi}"),
        }
    }
}

/// Text that names no family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown address family {text:?}: expected ipv4-unicast, ipv6-unicast (or ipv4/unicast, \
     ipv6/unicast) or afi-<n>-safi-<m>"
)]
pub struct ParseFamilyError {
    pub text: String,
}

/// The [`Display`](fmt::Display) forms, and `ipv4/unicast` / `ipv6/unicast`.
impl FromStr for Family {
    type Err = ParseFamilyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = s
            .split_once(['-', '/'])
            .and_then(|(afi, safi)| Family::from_names(afi, safi));
        let numbered = || {
            let (afi, safi) = s.strip_prefix("afi-")?.split_once("-safi-")?;
            Some(Family::from_afi_safi(decimal(afi)?, decimal(safi)?))
        };
        named
            .or_else(numbered)
            .ok_or_else(|| ParseFamilyError { text: s.to_owned() })
    }
}

/// Plain decimal digits (no sign, no space) that fit `T`.
fn decimal<T: FromStr>(n: &str) -> Option<T> {
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())
        .flatten()
}

#[cfg(feature = "serde")]
impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Family {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let v4 = Family::Ipv4Unicast;
        let v6 = Family::Ipv6Unicast;
        let evpn = Family::from_afi_safi(25, 70);
        assert_eq!(evpn, Family::Other { afi: 25, safi: 70 });
        assert_eq!(Family::from_afi_safi(1, 1), v4);
        assert_eq!((v4.afi(), v4.safi(), v6.afi(), v6.safi()), (1, 1, 2, 1));
        assert_eq!((v4.afi_name(), v4.safi_name()), ("ipv4", "unicast"));
        assert_eq!((v6.afi_name(), v6.safi_name()), ("ipv6", "unicast"));
        assert_eq!((evpn.afi_name(), evpn.safi_name()), ("unknown", "unknown"));
        let v4_multicast = Family::from_afi_safi(1, 2);
        assert_eq!(
            (v4_multicast.afi_name(), v4_multicast.safi_name()),
            ("ipv4", "unknown")
        );
        assert_eq!(Family::from_names("ipv4", "unicast"), Some(v4));
        assert_eq!(Family::from_names("ipv6", "unicast"), Some(v6));
        assert_eq!(Family::from_names("ipv6", "multicast"), None);
        assert_eq!(Family::from_names("l2vpn", "evpn"), None);
        assert_eq!(Family::of_prefix(&"10.0.0.0/8".parse().unwrap()), v4);
        assert_eq!(Family::of_prefix(&"2001:db8::/32".parse().unwrap()), v6);
        assert_eq!(Family::of_addr("::1".parse().unwrap()), v6);
        assert_eq!(Family::of_addr("10.0.0.1".parse().unwrap()), v4);
    }

    #[test]
    fn text_round_trips_and_bad_text_is_an_error() {
        for (f, text) in [
            (Family::Ipv4Unicast, "ipv4-unicast"),
            (Family::Ipv6Unicast, "ipv6-unicast"),
            (Family::Other { afi: 25, safi: 70 }, "afi-25-safi-70"),
        ] {
            assert_eq!(f.to_string(), text);
            assert_eq!(text.parse::<Family>(), Ok(f));
        }
        assert_eq!("ipv4/unicast".parse(), Ok(Family::Ipv4Unicast));
        assert_eq!("ipv6/unicast".parse(), Ok(Family::Ipv6Unicast));
        assert_eq!("afi-2-safi-1".parse(), Ok(Family::Ipv6Unicast));
        for bad in [
            "",
            "ipv4",
            "l2vpn",
            "l2vpn-evpn",
            "ipv4-multicast",
            "IPV4-UNICAST",
            "ipv4--unicast",
            "afi-1",
            "afi-1-safi-",
            "afi-65536-safi-1",
            "afi-1-safi-256",
            "afi--1-safi-1",
            "afi-1-safi-1-",
            "afi-+1-safi-1",
            "afi-1-safi- 1",
        ] {
            assert_eq!(
                bad.parse::<Family>(),
                Err(ParseFamilyError { text: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_uses_the_text_form() {
        let fams = vec![Family::Ipv4Unicast, Family::Other { afi: 25, safi: 70 }];
        let json = serde_json::to_string(&fams).unwrap();
        assert_eq!(json, r#"["ipv4-unicast","afi-25-safi-70"]"#);
        assert_eq!(serde_json::from_str::<Vec<Family>>(&json).unwrap(), fams);
        assert_eq!(
            serde_json::from_str::<Family>(r#""ipv6/unicast""#).unwrap(),
            Family::Ipv6Unicast
        );
        for bad in [r#""l2vpn""#, "1", "null", r#"{"afi":1}"#] {
            assert!(serde_json::from_str::<Family>(bad).is_err(), "{bad}");
        }
    }
}
