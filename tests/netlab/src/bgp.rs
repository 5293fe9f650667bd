//! A peer-neutral BGP configuration model, rendered by [`crate::frr`], [`crate::bird`] and
//! [`crate::gobgp`] into each daemon's own syntax.
//!
//! The fields are what the interop tests vary (`bgp.md` §2): remote ASN, passive, TCP-MD5,
//! multihop, address families, extended next hop (RFC 8950), graceful restart (RFC 4724), hold
//! time, and routes to originate with communities (RFC 1997), large communities (RFC 8092),
//! LOCAL_PREF and MED.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::Result;
use crate::netns::parse_cidr;

/// An address family the session should negotiate (RFC 4760 AFI/SAFI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// AFI 1 / SAFI 1.
    Ipv4Unicast,
    /// AFI 2 / SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// Both unicast families, Cilium's default set.
    pub const DUAL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    /// The family a prefix belongs to.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::Ipv4Unicast
        } else {
            Family::Ipv6Unicast
        }
    }
}

/// One BGP neighbour as configured on the peer daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The neighbour's address.
    pub address: IpAddr,
    /// Its ASN (eBGP when it differs from ours).
    pub remote_as: u32,
    /// Only accept connections, never initiate.
    pub passive: bool,
    /// TCP-MD5 password (RFC 2385), identical on both sides.
    pub password: Option<String>,
    /// eBGP multihop TTL; `None` means directly connected.
    pub multihop: Option<u8>,
    /// Families to negotiate. Empty means "both unicast families".
    pub families: Vec<Family>,
    /// Announce the extended next hop capability (RFC 8950) for IPv4 over an IPv6 session.
    pub extended_nexthop: bool,
    /// Announce graceful restart (RFC 4724) with this restart time in seconds.
    pub graceful_restart: Option<u16>,
    /// Hold time in seconds (keepalive is a third of it); `None` keeps the daemon's default.
    pub hold_time: Option<u16>,
    /// The neighbour's TCP port, if not 179.
    pub remote_port: Option<u16>,
    /// Source address for the session (FRR `update-source`, BIRD `source address`, GoBGP
    /// `local-address`).
    pub local_address: Option<IpAddr>,
}

impl Neighbor {
    /// A dual-stack neighbour with every option off.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        Self {
            address,
            remote_as,
            passive: false,
            password: None,
            multihop: None,
            families: Family::DUAL.to_vec(),
            extended_nexthop: false,
            graceful_restart: None,
            hold_time: None,
            remote_port: None,
            local_address: None,
        }
    }

    /// Only accept incoming connections.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// TCP-MD5 password.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_owned());
        self
    }

    /// eBGP multihop with `ttl`.
    pub fn multihop(mut self, ttl: u8) -> Self {
        self.multihop = Some(ttl);
        self
    }

    /// Negotiate exactly these families.
    pub fn families(mut self, f: &[Family]) -> Self {
        self.families = f.to_vec();
        self
    }

    /// Announce RFC 8950 extended next hop.
    pub fn extended_nexthop(mut self) -> Self {
        self.extended_nexthop = true;
        self
    }

    /// Announce graceful restart with `restart_time` seconds.
    pub fn graceful_restart(mut self, restart_time: u16) -> Self {
        self.graceful_restart = Some(restart_time);
        self
    }

    /// Hold time in seconds (0 or >= 3, RFC 4271 §4.2).
    pub fn hold_time(mut self, secs: u16) -> Self {
        self.hold_time = Some(secs);
        self
    }

    /// The neighbour listens on `port` instead of 179.
    pub fn remote_port(mut self, port: u16) -> Self {
        self.remote_port = Some(port);
        self
    }

    /// Source the session from `addr`.
    pub fn local_address(mut self, addr: IpAddr) -> Self {
        self.local_address = Some(addr);
        self
    }

    /// The families, with "empty" meaning both.
    pub fn effective_families(&self) -> Vec<Family> {
        if self.families.is_empty() {
            Family::DUAL.to_vec()
        } else {
            self.families.clone()
        }
    }

    /// Keepalive interval derived from the hold time (a third, RFC 4271 §10 suggestion).
    pub fn keepalive(&self) -> Option<u16> {
        self.hold_time.map(|h| h / 3)
    }
}

/// A route the peer originates, with optional path attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `ADDR/LEN`.
    pub prefix: String,
    /// Standard communities as `ASN:VALUE` (RFC 1997).
    pub communities: Vec<(u16, u16)>,
    /// Large communities as `(global, local1, local2)` (RFC 8092).
    pub large_communities: Vec<(u32, u32, u32)>,
    /// LOCAL_PREF (only sent over iBGP).
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
}

impl Route {
    /// A route with no extra attributes. Fails on a malformed prefix.
    pub fn new(prefix: &str) -> Result<Self> {
        parse_cidr(prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            communities: Vec::new(),
            large_communities: Vec::new(),
            local_pref: None,
            med: None,
        })
    }

    /// Adds a standard community.
    pub fn community(mut self, asn: u16, value: u16) -> Self {
        self.communities.push((asn, value));
        self
    }

    /// Adds a large community.
    pub fn large_community(mut self, g: u32, l1: u32, l2: u32) -> Self {
        self.large_communities.push((g, l1, l2));
        self
    }

    /// Sets LOCAL_PREF.
    pub fn local_pref(mut self, v: u32) -> Self {
        self.local_pref = Some(v);
        self
    }

    /// Sets MED.
    pub fn med(mut self, v: u32) -> Self {
        self.med = Some(v);
        self
    }

    /// The prefix's family.
    pub fn family(&self) -> Family {
        // `new` validated the prefix; a hand-built struct with garbage counts as IPv4.
        match parse_cidr(&self.prefix) {
            Ok((ip, _)) => Family::of(ip),
            Err(_) => Family::Ipv4Unicast,
        }
    }

    /// Whether any path attribute beyond the defaults is set.
    pub fn has_attributes(&self) -> bool {
        !self.communities.is_empty()
            || !self.large_communities.is_empty()
            || self.local_pref.is_some()
            || self.med.is_some()
    }
}

/// A whole BGP speaker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// Local ASN.
    pub asn: u32,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// TCP port to listen on (179 by default; 0 = do not listen, where supported).
    pub listen_port: Option<u16>,
    /// Neighbours.
    pub neighbors: Vec<Neighbor>,
    /// Routes to originate.
    pub routes: Vec<Route>,
}

impl BgpConfig {
    /// An empty configuration.
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            asn,
            router_id,
            listen_port: None,
            neighbors: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// Adds a neighbour.
    pub fn neighbor(mut self, n: Neighbor) -> Self {
        self.neighbors.push(n);
        self
    }

    /// Adds a route to originate.
    pub fn route(mut self, r: Route) -> Self {
        self.routes.push(r);
        self
    }

    /// Listens on `port`.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }

    /// Routes of one family.
    pub fn routes_of(&self, f: Family) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.family() == f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn route_validation_and_family() {
        assert!(Route::new("10.0.0.0").is_err());
        assert!(Route::new("10.0.0.0/40").is_err());
        assert_eq!(
            Route::new("2001:db8::/32").unwrap().family(),
            Family::Ipv6Unicast
        );
        let r = Route::new("10.0.0.0/8").unwrap().community(1, 2);
        assert!(r.has_attributes());
    }

    #[test]
    fn neighbor_defaults() {
        let n = Neighbor::new("10.0.0.1".parse().unwrap(), 65000).hold_time(9);
        assert_eq!(n.keepalive(), Some(3));
        assert_eq!(n.effective_families(), Family::DUAL.to_vec());
        assert_eq!(n.families(&[]).effective_families(), Family::DUAL.to_vec());
    }
}

/// One path for a prefix as a peer daemon reports it, normalised across FRR, BIRD and GoBGP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    /// `ADDR/LEN`.
    pub prefix: String,
    /// AS_PATH flattened to ASNs (sets included in order).
    pub as_path: Vec<u32>,
    /// Next hops (global first when the daemon reports several).
    pub next_hops: Vec<IpAddr>,
    /// Standard communities as `"ASN:VALUE"`.
    pub communities: Vec<String>,
    /// Large communities as `"G:L1:L2"`.
    pub large_communities: Vec<String>,
    /// LOCAL_PREF if present.
    pub local_pref: Option<u32>,
    /// MED if present.
    pub med: Option<u32>,
    /// Whether the daemon selected this path as best.
    pub best: bool,
}

/// Flattens a textual AS path ("65001 65002 {65003,65004}") into ASNs.
pub(crate) fn parse_as_path(s: &str) -> Vec<u32> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect()
}
