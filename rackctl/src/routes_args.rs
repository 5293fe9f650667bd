//! The free-form grammar of `cilium bgp routes`:
//! `[available|advertised] [afi] [safi] [vrouter ASN] [peer|neighbor ADDR]`.

use std::net::IpAddr;

/// Parsed `bgp routes` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesArgs {
    /// `loc-rib` (available) or `adj-rib-out` (advertised); `adj-rib-in` via `received`.
    pub table: &'static str,
    pub afi: String,
    pub safi: String,
    pub router_asn: Option<u32>,
    pub neighbor: Option<IpAddr>,
    /// True when nothing was given and Cilium's defaulting notice applies.
    pub defaulted: bool,
}

/// Why `bgp routes` arguments were rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutesArgsError {
    #[error("unknown table {0:?}: expected available, advertised or received")]
    Table(String),
    #[error("unknown afi {0:?}: expected ipv4 or ipv6")]
    Afi(String),
    #[error("unknown safi {0:?}: expected unicast")]
    Safi(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("invalid ASN {0:?} for vrouter: expected 1..4294967295")]
    Asn(String),
    #[error("invalid peer address {0:?}: expected an IPv4 or IPv6 address")]
    Peer(String),
    #[error("{0} routes need a peer: add `peer ADDR`")]
    PeerRequired(&'static str),
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
}

/// Parse the arguments after `bgp routes`.
pub fn parse(args: &[String]) -> Result<RoutesArgs, RoutesArgsError> {
    let mut it = args.iter().peekable();
    let defaulted = args.is_empty();
    let table = match it.peek().map(|s| s.as_str()) {
        Some("available") => {
            it.next();
            "loc-rib"
        }
        Some("advertised") => {
            it.next();
            "adj-rib-out"
        }
        Some("received") => {
            it.next();
            "adj-rib-in"
        }
        Some(t) if !matches!(t, "ipv4" | "ipv6" | "vrouter" | "peer" | "neighbor") => {
            return Err(RoutesArgsError::Table(t.to_owned()));
        }
        _ => "loc-rib",
    };
    let mut afi = "ipv4".to_owned();
    let mut safi = "unicast".to_owned();
    if let Some(a) = it.peek().map(|s| s.as_str())
        && !matches!(a, "vrouter" | "peer" | "neighbor")
    {
        if !matches!(a, "ipv4" | "ipv6") {
            return Err(RoutesArgsError::Afi(a.to_owned()));
        }
        afi = a.to_owned();
        it.next();
        if let Some(s) = it.peek().map(|s| s.as_str())
            && !matches!(s, "vrouter" | "peer" | "neighbor")
        {
            if s != "unicast" {
                return Err(RoutesArgsError::Safi(s.to_owned()));
            }
            safi = s.to_owned();
            it.next();
        }
    }
    let mut router_asn = None;
    let mut neighbor = None;
    while let Some(kw) = it.next() {
        match kw.as_str() {
            "vrouter" => {
                let v = it.next().ok_or(RoutesArgsError::MissingValue("vrouter"))?;
                let asn: u32 = v.parse().map_err(|_| RoutesArgsError::Asn(v.clone()))?;
                if asn == 0 {
                    return Err(RoutesArgsError::Asn(v.clone()));
                }
                router_asn = Some(asn);
            }
            "peer" | "neighbor" => {
                let v = it.next().ok_or(RoutesArgsError::MissingValue("peer"))?;
                neighbor = Some(v.parse().map_err(|_| RoutesArgsError::Peer(v.clone()))?);
            }
            other => return Err(RoutesArgsError::Unexpected(other.to_owned())),
        }
    }
    if table != "loc-rib" && neighbor.is_none() {
        return Err(RoutesArgsError::PeerRequired(if table == "adj-rib-out" {
            "advertised"
        } else {
            "received"
        }));
    }
    Ok(RoutesArgs {
        table,
        afi,
        safi,
        router_asn,
        neighbor,
        defaulted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<RoutesArgs, RoutesArgsError> {
        let v: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        parse(&v)
    }

    #[test]
    fn defaults_to_available_ipv4_unicast() {
        let a = p("").unwrap();
        assert_eq!(
            (a.table, a.afi.as_str(), a.defaulted),
            ("loc-rib", "ipv4", true)
        );
    }

    #[test]
    fn full_grammar() {
        let a = p("advertised ipv6 unicast vrouter 65001 peer fd00:10::1").unwrap();
        assert_eq!(a.table, "adj-rib-out");
        assert_eq!(a.afi, "ipv6");
        assert_eq!(a.router_asn, Some(65001));
        assert_eq!(a.neighbor, Some("fd00:10::1".parse().unwrap()));
        assert!(!a.defaulted);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            p("sideways").unwrap_err(),
            RoutesArgsError::Table("sideways".into())
        );
        assert_eq!(
            p("available ipv5").unwrap_err(),
            RoutesArgsError::Afi("ipv5".into())
        );
        assert_eq!(
            p("available ipv4 multicast").unwrap_err(),
            RoutesArgsError::Safi("multicast".into())
        );
        assert_eq!(
            p("advertised ipv4 unicast").unwrap_err(),
            RoutesArgsError::PeerRequired("advertised")
        );
        assert_eq!(
            p("available ipv4 unicast peer nope").unwrap_err(),
            RoutesArgsError::Peer("nope".into())
        );
        assert_eq!(
            p("available ipv4 unicast vrouter 0").unwrap_err(),
            RoutesArgsError::Asn("0".into())
        );
        assert_eq!(
            p("available ipv4 unicast vrouter").unwrap_err(),
            RoutesArgsError::MissingValue("vrouter")
        );
        assert_eq!(
            p("available ipv4 unicast extra").unwrap_err(),
            RoutesArgsError::Unexpected("extra".into())
        );
    }
}
