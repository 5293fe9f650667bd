//! The host's objects as plain values: what the kernel reports and what we ask it to install.
//!
//! These types carry no netlink types, so controllers and their tests depend on this crate only
//! (netlink-packet-route's enums are `#[non_exhaustive]` and change between releases).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// `RT_TABLE_MAIN`: the table `ip route` shows.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_TABLE_LOCAL`: local and broadcast addresses, maintained by the kernel.
pub const RT_TABLE_LOCAL: u32 = 255;

/// An EUI-48 (Ethernet) hardware address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The address from exactly six bytes (a link-layer attribute of another length, e.g. an
    /// IP tunnel's four, is not a MAC).
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Self)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets separated by colons")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

/// What kind of link layer a link has (`ARPHRD_*`), as far as our controllers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKind {
    /// `ARPHRD_ETHER`: Ethernet-like (also veth, bridge, bond, VLAN, macvlan, ...), where
    /// ARP/NDP answers make sense.
    Ether,
    /// `ARPHRD_LOOPBACK` or `IFF_LOOPBACK`.
    Loopback,
    /// Anything else, with its `ARPHRD_*` number (778 = IP-in-IP, 65534 = none, ...).
    Other(u16),
}

/// A network device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// Interface index (never 0).
    pub ifindex: u32,
    pub name: String,
    pub kind: LinkKind,
    /// `IFF_UP`: administratively up (`ip link set up`).
    pub admin_up: bool,
    /// `IFF_LOWER_UP`: the lower layer (carrier) is up.
    pub lower_up: bool,
    /// The hardware address, when it is six bytes long.
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
}

impl Link {
    /// Usable: administratively up with carrier.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.admin_up && self.lower_up
    }

    #[must_use]
    pub fn is_ether(&self) -> bool {
        self.kind == LinkKind::Ether
    }

    #[must_use]
    pub fn is_loopback(&self) -> bool {
        self.kind == LinkKind::Loopback
    }
}

/// Address and route scope (`RT_SCOPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Scope {
    /// `global`.
    #[default]
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl Scope {
    /// The kernel's number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::Universe => 0,
            Self::Site => 200,
            Self::Link => 253,
            Self::Host => 254,
            Self::Nowhere => 255,
            Self::Other(n) => n,
        }
    }

    /// From the kernel's number.
    #[must_use]
    pub fn from_number(n: u8) -> Self {
        match n {
            0 => Self::Universe,
            200 => Self::Site,
            253 => Self::Link,
            254 => Self::Host,
            255 => Self::Nowhere,
            other => Self::Other(other),
        }
    }
}

/// An address on a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub ifindex: u32,
    /// The local address with its prefix length (`10.0.0.1/24`: host bits kept).
    pub addr: IpNet,
    pub scope: Scope,
    /// IPv4 label (`eth0:1`), when the kernel reports one; ignored on delete.
    pub label: Option<String>,
}

impl Address {
    /// An address of global scope without label.
    #[must_use]
    pub fn new(ifindex: u32, addr: IpNet) -> Self {
        Self {
            ifindex,
            addr,
            scope: Scope::Universe,
            label: None,
        }
    }

    /// The address without its prefix length.
    #[must_use]
    pub fn ip(&self) -> IpAddr {
        self.addr.addr()
    }
}

/// The routing protocol that installed a route (`RTPROT_*`, `proto` in `ip route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RouteProtocol(pub u8);

impl RouteProtocol {
    /// `RTPROT_UNSPEC`: as a filter or on delete, any protocol.
    pub const UNSPEC: Self = Self(0);
    /// `RTPROT_REDIRECT`.
    pub const REDIRECT: Self = Self(1);
    /// `RTPROT_KERNEL`: added by the kernel (connected routes).
    pub const KERNEL: Self = Self(2);
    /// `RTPROT_BOOT`: `ip route add` without `proto`.
    pub const BOOT: Self = Self(3);
    /// `RTPROT_STATIC`.
    pub const STATIC: Self = Self(4);
    /// `RTPROT_RA`: IPv6 router advertisements.
    pub const RA: Self = Self(9);
    /// `RTPROT_DHCP`.
    pub const DHCP: Self = Self(16);
    /// `RTPROT_BGP`.
    pub const BGP: Self = Self(186);
}

/// Route type (`RTN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RouteKind {
    #[default]
    Unicast,
    Local,
    Broadcast,
    Anycast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Other(u8),
}

impl RouteKind {
    /// The kernel's number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::Unicast => 1,
            Self::Local => 2,
            Self::Broadcast => 3,
            Self::Anycast => 4,
            Self::Multicast => 5,
            Self::Blackhole => 6,
            Self::Unreachable => 7,
            Self::Prohibit => 8,
            Self::Throw => 9,
            Self::Other(n) => n,
        }
    }

    /// From the kernel's number.
    #[must_use]
    pub fn from_number(n: u8) -> Self {
        match n {
            1 => Self::Unicast,
            2 => Self::Local,
            3 => Self::Broadcast,
            4 => Self::Anycast,
            5 => Self::Multicast,
            6 => Self::Blackhole,
            7 => Self::Unreachable,
            8 => Self::Prohibit,
            9 => Self::Throw,
            other => Self::Other(other),
        }
    }
}

/// One next hop of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    /// The gateway; an IPv6 gateway of an IPv4 route travels as `RTA_VIA` (RFC 8950,
    /// Linux 5.2+).
    pub gateway: Option<IpAddr>,
    /// The outgoing interface; required for IPv6 link-local gateways.
    pub ifindex: Option<u32>,
}

impl NextHop {
    /// Through `gateway`, outgoing interface left to the kernel.
    #[must_use]
    pub fn via(gateway: IpAddr) -> Self {
        Self {
            gateway: Some(gateway),
            ifindex: None,
        }
    }

    /// Directly out of `ifindex` (a device route).
    #[must_use]
    pub fn dev(ifindex: u32) -> Self {
        Self {
            gateway: None,
            ifindex: Some(ifindex),
        }
    }
}

/// A route: what a dump reports and what a write installs.
///
/// Identity in the kernel is (table, destination, metric) (plus TOS for IPv4, always 0
/// here): adding a second route with the same identity fails with
/// [`WriteOutcome::AlreadyPresent`] whatever its next hops, replacing swaps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub destination: IpNet,
    pub table: u32,
    pub protocol: RouteProtocol,
    pub kind: RouteKind,
    /// [`Scope::Universe`] for routes through a gateway, [`Scope::Link`] for IPv4 device
    /// routes (`ip route` picks the same); IPv6 ignores it.
    pub scope: Scope,
    /// `RTA_PRIORITY`; 0 on an IPv6 write means the kernel's default 1024.
    pub metric: u32,
    /// `RTA_PREFSRC`: the source address for locally originated traffic.
    pub preferred_source: Option<IpAddr>,
    /// Empty for routes without next hop (blackhole, unreachable, ...); several for ECMP
    /// (`RTA_MULTIPATH`).
    pub next_hops: Vec<NextHop>,
}

impl Route {
    /// A unicast route in the main table, protocol `boot` (as `ip route add` without `proto`),
    /// metric 0, no next hop yet.
    #[must_use]
    pub fn new(destination: IpNet) -> Self {
        Self {
            destination,
            table: RT_TABLE_MAIN,
            protocol: RouteProtocol::BOOT,
            kind: RouteKind::Unicast,
            scope: Scope::Universe,
            metric: 0,
            preferred_source: None,
            next_hops: Vec::new(),
        }
    }

    /// With one more next hop through `gateway`.
    #[must_use]
    pub fn via(mut self, gateway: IpAddr) -> Self {
        self.next_hops.push(NextHop::via(gateway));
        self
    }

    /// In `table`.
    #[must_use]
    pub fn in_table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Stamped with `protocol`.
    #[must_use]
    pub fn with_protocol(mut self, protocol: RouteProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// With `metric`.
    #[must_use]
    pub fn with_metric(mut self, metric: u32) -> Self {
        self.metric = metric;
        self
    }

    /// The first next hop's gateway.
    #[must_use]
    pub fn gateway(&self) -> Option<IpAddr> {
        self.next_hops.iter().find_map(|h| h.gateway)
    }

    /// The first next hop's outgoing interface.
    #[must_use]
    pub fn oif(&self) -> Option<u32> {
        self.next_hops.iter().find_map(|h| h.ifindex)
    }

    /// `0.0.0.0/0` or `::/0`.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }

    /// The route's family is IPv4.
    #[must_use]
    pub fn is_ipv4(&self) -> bool {
        matches!(self.destination, IpNet::V4(_))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} table {} metric {}",
            self.destination, self.table, self.metric
        )
    }
}

/// Which routes a dump returns. The kernel filters by table, protocol and type itself
/// (strict checking); `Default` is every route of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteFilter {
    pub table: Option<u32>,
    pub protocol: Option<RouteProtocol>,
    pub kind: Option<RouteKind>,
}

impl RouteFilter {
    /// Every route in `table`.
    #[must_use]
    pub fn table(table: u32) -> Self {
        Self {
            table: Some(table),
            ..Self::default()
        }
    }

    /// Every route in the main table.
    #[must_use]
    pub fn main() -> Self {
        Self::table(RT_TABLE_MAIN)
    }

    /// Whether `route` passes (the kernel's filter is trusted but verified).
    #[must_use]
    pub fn matches(&self, route: &Route) -> bool {
        self.table.is_none_or(|t| t == route.table)
            && self.protocol.is_none_or(|p| p == route.protocol)
            && self.kind.is_none_or(|k| k == route.kind)
    }
}

/// Neighbour cache entry state (`NUD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum NeighbourState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    NoArp,
    #[default]
    Permanent,
    None,
    /// A combination of bits or a state this crate does not know.
    Other(u16),
}

impl NeighbourState {
    /// The kernel's number.
    #[must_use]
    pub fn number(self) -> u16 {
        match self {
            Self::Incomplete => 0x01,
            Self::Reachable => 0x02,
            Self::Stale => 0x04,
            Self::Delay => 0x08,
            Self::Probe => 0x10,
            Self::Failed => 0x20,
            Self::NoArp => 0x40,
            Self::Permanent => 0x80,
            Self::None => 0x00,
            Self::Other(n) => n,
        }
    }

    /// From the kernel's number.
    #[must_use]
    pub fn from_number(n: u16) -> Self {
        match n {
            0x01 => Self::Incomplete,
            0x02 => Self::Reachable,
            0x04 => Self::Stale,
            0x08 => Self::Delay,
            0x10 => Self::Probe,
            0x20 => Self::Failed,
            0x40 => Self::NoArp,
            0x80 => Self::Permanent,
            0x00 => Self::None,
            other => Self::Other(other),
        }
    }
}

/// An ARP (IPv4) or NDP (IPv6) neighbour cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// `None` while unresolved (incomplete, failed).
    pub mac: Option<MacAddr>,
    pub state: NeighbourState,
}

/// The default gateway of each family: the gateway of the lowest-metric unicast default
/// route in the main table (the first such route on a tie), as `/proc/net/route` lists it.
/// Default routes without a gateway of their own family (device routes, RFC 8950 `via`) give
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DefaultGateways {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
}

impl DefaultGateways {
    /// Picks the gateways from `routes` (any tables; only the main table counts).
    #[must_use]
    pub fn from_routes<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Self {
        let mut v4: Option<(u32, IpAddr)> = None;
        let mut v6: Option<(u32, IpAddr)> = None;
        for r in routes {
            if !r.is_default() || r.table != RT_TABLE_MAIN || r.kind != RouteKind::Unicast {
                continue;
            }
            let same_family = |g: &IpAddr| g.is_ipv4() == r.is_ipv4();
            let Some(gw) = r
                .next_hops
                .iter()
                .filter_map(|h| h.gateway)
                .find(same_family)
            else {
                continue;
            };
            let slot = if r.is_ipv4() { &mut v4 } else { &mut v6 };
            if slot.is_none_or(|(metric, _)| r.metric < metric) {
                *slot = Some((r.metric, gw));
            }
        }
        Self {
            v4: v4.map(|(_, g)| g),
            v6: v6.map(|(_, g)| g),
        }
    }
}

/// What [`crate::HostWatch`] publishes: the links, their addresses, the default gateways and,
/// when asked for, the neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostState {
    /// Links by interface index.
    pub links: BTreeMap<u32, Link>,
    /// Every address, ordered by interface index then address.
    pub addresses: Vec<Address>,
    pub default_gateways: DefaultGateways,
    /// Empty unless [`crate::MonitorConfig::neighbours`] is set.
    pub neighbours: Vec<Neighbour>,
}

impl HostState {
    /// The link called `name`.
    #[must_use]
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }

    /// The addresses of one link.
    pub fn addresses_of(&self, ifindex: u32) -> impl Iterator<Item = &Address> {
        self.addresses.iter().filter(move |a| a.ifindex == ifindex)
    }

    /// Addresses per link name, sorted and without duplicates; links without an address are
    /// left out (what `getifaddrs(3)` gives, except that IPv4 labels such as `eth0:1` are
    /// folded into their link).
    #[must_use]
    pub fn interfaces(&self) -> BTreeMap<String, Vec<IpAddr>> {
        let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for a in &self.addresses {
            if let Some(link) = self.links.get(&a.ifindex) {
                out.entry(link.name.clone()).or_default().push(a.ip());
            }
        }
        for v in out.values_mut() {
            v.sort();
            v.dedup();
        }
        out
    }
}

/// One link's state as the link callback reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    pub ifindex: u32,
    pub name: String,
    /// [`Link::is_up`]; `false` once removed.
    pub up: bool,
    /// The link is gone.
    pub removed: bool,
}

/// Called by the monitor (and the fake) in its own task: once per link after the first dump,
/// then at once on every change of [`Link::is_up`] and on every removal. It must not block.
pub type LinkCallback = Box<dyn FnMut(&LinkChange) + Send>;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// The kernel applied it.
    Applied,
    /// An add found the object there already (`EEXIST`); nothing changed (for a route, the
    /// existing one may have other next hops: use a replace to set them).
    AlreadyPresent,
    /// A delete found nothing to delete (`ESRCH`, `ENOENT`, `EADDRNOTAVAIL`).
    AlreadyAbsent,
}

/// One route write of a batch ([`crate::Host::apply_routes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRequest {
    /// Create; [`WriteOutcome::AlreadyPresent`] if a route with its identity exists.
    Add(Route),
    /// Create or replace.
    Replace(Route),
    /// Delete: the route with this table, destination and metric (0 = any for IPv6), and
    /// protocol when not [`RouteProtocol::UNSPEC`], and these next hops when any are given.
    Delete(Route),
}

impl RouteRequest {
    /// The route the request is about.
    #[must_use]
    pub fn route(&self) -> &Route {
        match self {
            Self::Add(r) | Self::Replace(r) | Self::Delete(r) => r,
        }
    }
}

pub(crate) fn unspecified(v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "02:00:0a:FF:00:01".parse().expect("valid");
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        for bad in [
            "",
            "02:00:0a:ff:00",
            "02:00:0a:ff:00:01:02",
            "0200:0a:ff:00:01:0",
            "zz:00:00:00:00:00",
            "2::::::",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4]), None);
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn numbers_round_trip() {
        for n in 0..=255u8 {
            assert_eq!(Scope::from_number(n).number(), n);
            assert_eq!(RouteKind::from_number(n).number(), n);
        }
        for n in 0..=0x1ffu16 {
            assert_eq!(NeighbourState::from_number(n).number(), n);
        }
    }

    #[test]
    fn default_gateway_is_lowest_metric_of_its_family_in_main() {
        let routes = [
            Route::new(net("0.0.0.0/0"))
                .via(ip("10.0.0.9"))
                .with_metric(100),
            Route::new(net("0.0.0.0/0"))
                .via(ip("10.0.0.1"))
                .with_metric(10),
            Route::new(net("0.0.0.0/0"))
                .via(ip("10.0.0.2"))
                .with_metric(10),
            // Other table, not default, no gateway, other family's gateway, other type.
            Route::new(net("0.0.0.0/0"))
                .via(ip("10.0.0.3"))
                .in_table(100),
            Route::new(net("10.0.0.0/8")).via(ip("10.0.0.4")),
            Route {
                next_hops: vec![NextHop::dev(2)],
                ..Route::new(net("0.0.0.0/0"))
            },
            Route::new(net("0.0.0.0/0")).via(ip("fe80::1")),
            Route {
                kind: RouteKind::Unreachable,
                ..Route::new(net("::/0")).via(ip("fe80::9"))
            },
            Route::new(net("::/0")).via(ip("fe80::1")).with_metric(1024),
        ];
        let g = DefaultGateways::from_routes(&routes);
        assert_eq!(g.v4, Some(ip("10.0.0.1")));
        assert_eq!(g.v6, Some(ip("fe80::1")));
        assert_eq!(
            DefaultGateways::from_routes(&[]),
            DefaultGateways::default()
        );
    }

    #[test]
    fn interfaces_fold_addresses_per_link_name() {
        let mut s = HostState::default();
        for (i, name) in [(1, "lo"), (2, "eth0"), (3, "eth1")] {
            s.links.insert(
                i,
                Link {
                    ifindex: i,
                    name: name.into(),
                    kind: LinkKind::Ether,
                    admin_up: true,
                    lower_up: true,
                    mac: None,
                    mtu: None,
                },
            );
        }
        s.addresses = vec![
            Address::new(1, net("127.0.0.1/8")),
            Address::new(2, net("10.0.0.2/24")),
            Address::new(2, net("10.0.0.1/24")),
            Address::new(2, net("10.0.0.1/32")),
            // A link we do not know (raced with its removal): left out.
            Address::new(9, net("10.9.0.1/24")),
        ];
        let i = s.interfaces();
        assert_eq!(i.len(), 2, "{i:?}");
        assert_eq!(i["eth0"], vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(s.link_by_name("eth1").map(|l| l.ifindex), Some(3));
        assert_eq!(s.addresses_of(2).count(), 3);
    }
}
