//! Pure conversions between netlink-packet-route messages and this crate's values.
//!
//! Kernel input is untrusted: a message missing what identifies it (a link's name, an
//! address, a neighbour's IP), with a family we do not handle, or whose attributes contradict
//! its header (an IPv6 address in an IPv4 message, a prefix length beyond the address) gives
//! `None` and is skipped by the caller; attributes we do not use are ignored.
//!
//! (About 800 lines: more than half are the malformed-input tests, kept next to the
//! conversions they pin.)

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState as NlNeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol as NlRouteProtocol,
    RouteScope, RouteType, RouteVia,
};

use crate::error::HostError;
use crate::types::{
    Address, Link, LinkKind, MacAddr, Neighbour, NeighbourState, NextHop, Route, RouteFilter,
    RouteKind, RouteProtocol, Scope, unspecified,
};

/// `RT_TABLE_UNSPEC`: the header's table byte when the id travels in `RTA_TABLE` only.
const RT_TABLE_UNSPEC: u8 = 0;

/// A link, if the message names it and has a non-zero index.
#[must_use]
pub fn link_from_message(msg: &LinkMessage) -> Option<Link> {
    let h = &msg.header;
    if h.index == 0 {
        return None;
    }
    let mut name = None;
    let mut mac = None;
    let mut mtu = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(a) => mac = MacAddr::from_slice(a),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            _ => {}
        }
    }
    let kind =
        if h.flags.contains(LinkFlags::Loopback) || h.link_layer_type == LinkLayerType::Loopback {
            LinkKind::Loopback
        } else if h.link_layer_type == LinkLayerType::Ether {
            LinkKind::Ether
        } else {
            LinkKind::Other(u16::from(h.link_layer_type))
        };
    Some(Link {
        ifindex: h.index,
        name: name?,
        kind,
        admin_up: h.flags.contains(LinkFlags::Up),
        lower_up: h.flags.contains(LinkFlags::LowerUp),
        mac,
        mtu,
    })
}

/// `Some(true)` for IPv4, `Some(false)` for IPv6, `None` for other families.
fn is_v4(family: AddressFamily) -> Option<bool> {
    match family {
        AddressFamily::Inet => Some(true),
        AddressFamily::Inet6 => Some(false),
        _ => None,
    }
}

/// An address. The local address is `IFA_LOCAL` when present (on point-to-point links
/// `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`, as `getifaddrs(3)` does.
#[must_use]
pub fn address_from_message(msg: &AddressMessage) -> Option<Address> {
    let h = &msg.header;
    let v4 = is_v4(h.family)?;
    if h.index == 0 {
        return None;
    }
    let mut local = None;
    let mut address = None;
    let mut label = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Label(l) => label = Some(l.clone()),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    if ip.is_ipv4() != v4 {
        return None;
    }
    Some(Address {
        ifindex: h.index,
        addr: IpNet::new(ip, h.prefix_len).ok()?,
        scope: Scope::from_number(u8::from(h.scope)),
        label,
    })
}

/// The request body for adding or deleting `address` (`IFA_LOCAL` and `IFA_ADDRESS` both set
/// to it, as `ip address add` does without `peer`).
#[must_use]
pub fn address_message(address: &Address) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(address.addr.addr());
    msg.header.prefix_len = address.addr.prefix_len();
    msg.header.scope = AddressScope::from(address.scope.number());
    msg.header.index = address.ifindex;
    msg.header.flags = AddressHeaderFlags::empty();
    let ip = address.addr.addr();
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if let Some(label) = &address.label
        && address.addr.addr().is_ipv4()
    {
        msg.attributes.push(AddressAttribute::Label(label.clone()));
    }
    msg
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn route_via(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(a) => Some(IpAddr::V4(*a)),
        RouteVia::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// A route of family IPv4 or IPv6. `RTA_TABLE` wins over the header's table byte; a missing
/// `RTA_DST` means the default route, and is an error for a non-zero prefix length.
#[must_use]
pub fn route_from_message(msg: &RouteMessage) -> Option<Route> {
    let h = &msg.header;
    let v4 = is_v4(h.address_family)?;
    let mut table = u32::from(h.table);
    let mut destination = None;
    let mut metric = 0;
    let mut oif = None;
    let mut gateway = None;
    let mut preferred_source = None;
    let mut multipath: Option<Vec<NextHop>> = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = Some(route_address(a)?),
            RouteAttribute::Priority(m) => metric = *m,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = route_address(a),
            RouteAttribute::Via(v) => gateway = route_via(v),
            RouteAttribute::PrefSource(a) => preferred_source = route_address(a),
            RouteAttribute::MultiPath(hops) => {
                multipath = Some(hops.iter().map(next_hop_from).collect());
            }
            _ => {}
        }
    }
    let destination = match destination {
        Some(d) => d,
        None if h.destination_prefix_length == 0 => unspecified(v4),
        None => return None,
    };
    if destination.is_ipv4() != v4 {
        return None;
    }
    let next_hops = match multipath {
        Some(hops) => hops,
        None if gateway.is_some() || oif.is_some() => vec![NextHop {
            gateway,
            ifindex: oif,
        }],
        None => Vec::new(),
    };
    Some(Route {
        destination: IpNet::new(destination, h.destination_prefix_length).ok()?,
        table,
        protocol: RouteProtocol(u8::from(h.protocol)),
        kind: RouteKind::from_number(u8::from(h.kind)),
        scope: Scope::from_number(u8::from(h.scope)),
        metric,
        preferred_source,
        next_hops,
    })
}

fn next_hop_from(hop: &RouteNextHop) -> NextHop {
    let gateway = hop.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(a) => route_address(a),
        RouteAttribute::Via(v) => route_via(v),
        _ => None,
    });
    NextHop {
        gateway,
        ifindex: (hop.interface_index != 0).then_some(hop.interface_index),
    }
}

/// `RTA_GATEWAY` for a gateway of the route's family, `RTA_VIA` for an IPv6 gateway of an
/// IPv4 route (RFC 8950).
fn gateway_attribute(route: &Route, gateway: IpAddr) -> Result<RouteAttribute, HostError> {
    match (route.destination, gateway) {
        (IpNet::V4(_), IpAddr::V4(a)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet(a))),
        (IpNet::V6(_), IpAddr::V6(a)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet6(a))),
        (IpNet::V4(_), IpAddr::V6(a)) => Ok(RouteAttribute::Via(RouteVia::Inet6(a))),
        (IpNet::V6(_), IpAddr::V4(_)) => Err(HostError::GatewayFamily {
            route: route.destination,
            gateway,
        }),
    }
}

/// The request body for writing `route`. A delete leaves the scope open
/// (`RT_SCOPE_NOWHERE`, as `ip route del` does) and names next hops only when the route has
/// some; everything else is sent as given.
pub fn route_message(route: &Route, delete: bool) -> Result<RouteMessage, HostError> {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family(route.destination.addr());
    h.destination_prefix_length = route.destination.prefix_len();
    h.table = u8::try_from(route.table).unwrap_or(RT_TABLE_UNSPEC);
    h.protocol = NlRouteProtocol::from(route.protocol.0);
    h.scope = if delete {
        RouteScope::NoWhere
    } else {
        RouteScope::from(route.scope.number())
    };
    h.kind = RouteType::from(route.kind.number());
    msg.attributes.push(RouteAttribute::Destination(
        route.destination.network().into(),
    ));
    msg.attributes.push(RouteAttribute::Table(route.table));
    if route.metric != 0 || !delete {
        msg.attributes.push(RouteAttribute::Priority(route.metric));
    }
    if let Some(src) = route.preferred_source {
        msg.attributes.push(RouteAttribute::PrefSource(src.into()));
    }
    match route.next_hops.as_slice() {
        [] => {}
        [one] => {
            if one.gateway.is_none() && one.ifindex.is_none() {
                return Err(HostError::EmptyNextHop {
                    route: route.destination,
                });
            }
            if let Some(gw) = one.gateway {
                msg.attributes.push(gateway_attribute(route, gw)?);
            }
            if let Some(ifindex) = one.ifindex {
                msg.attributes.push(RouteAttribute::Oif(ifindex));
            }
        }
        many => {
            let mut hops = Vec::with_capacity(many.len());
            for nh in many {
                if nh.gateway.is_none() && nh.ifindex.is_none() {
                    return Err(HostError::EmptyNextHop {
                        route: route.destination,
                    });
                }
                let mut hop = RouteNextHop::default();
                hop.interface_index = nh.ifindex.unwrap_or(0);
                if let Some(gw) = nh.gateway {
                    hop.attributes.push(gateway_attribute(route, gw)?);
                }
                hops.push(hop);
            }
            msg.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    Ok(msg)
}

/// The request body of a route dump of one family under `filter`. Strict checking lets the
/// kernel filter by table (`RTA_TABLE`), protocol and type; every other header field must be 0.
#[must_use]
pub fn route_dump_message(v4: bool, filter: &RouteFilter) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    if let Some(table) = filter.table {
        msg.header.table = u8::try_from(table).unwrap_or(RT_TABLE_UNSPEC);
        msg.attributes.push(RouteAttribute::Table(table));
    }
    if let Some(p) = filter.protocol {
        msg.header.protocol = NlRouteProtocol::from(p.0);
    }
    msg.header.kind = filter
        .kind
        .map_or(RouteType::Unspec, |k| RouteType::from(k.number()));
    msg
}

/// A neighbour entry, if it names an IP of its header's family.
#[must_use]
pub fn neighbour_from_message(msg: &NeighbourMessage) -> Option<Neighbour> {
    let h = &msg.header;
    let v4 = is_v4(h.family)?;
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                ip = Some(IpAddr::V4(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::LinkLayerAddress(a) => mac = MacAddr::from_slice(a),
            _ => {}
        }
    }
    let ip = ip?;
    if ip.is_ipv4() != v4 || h.ifindex == 0 {
        return None;
    }
    Some(Neighbour {
        ifindex: h.ifindex,
        ip,
        mac,
        state: NeighbourState::from_number(u16::from(h.state)),
    })
}

/// The request body for adding or replacing `neighbour`.
#[must_use]
pub fn neighbour_message(neighbour: &Neighbour) -> NeighbourMessage {
    let mut msg = neighbour_key_message(neighbour.ifindex, neighbour.ip);
    msg.header.state = NlNeighbourState::from(neighbour.state.number());
    if let Some(mac) = neighbour.mac {
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    }
    msg
}

/// The request body naming one neighbour (for a delete).
#[must_use]
pub fn neighbour_key_message(ifindex: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(ip);
    msg.header.ifindex = ifindex;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    msg
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rtnetlink::packet_core::{DefaultNla, Emitable, Parseable};

    use super::*;
    use crate::types::RT_TABLE_MAIN;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn unknown() -> DefaultNla {
        DefaultNla::new(999, vec![1, 2, 3, 4])
    }

    fn link_msg(index: u32, attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Broadcast;
        m.attributes = attrs;
        m
    }

    #[test]
    fn link_with_everything_and_unknown_attributes() {
        let m = link_msg(
            7,
            vec![
                LinkAttribute::Other(unknown()),
                LinkAttribute::IfName("eth0".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
                LinkAttribute::Mtu(9000),
                LinkAttribute::Carrier(1),
            ],
        );
        let l = link_from_message(&m).expect("a link");
        assert_eq!(
            l,
            Link {
                ifindex: 7,
                name: "eth0".into(),
                kind: LinkKind::Ether,
                admin_up: true,
                lower_up: true,
                mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
                mtu: Some(9000),
            }
        );
        assert!(l.is_up() && l.is_ether() && !l.is_loopback());
    }

    #[test]
    fn link_missing_or_odd_attributes() {
        // No name: not a link we can use.
        assert_eq!(link_from_message(&link_msg(7, vec![])), None);
        // Index 0 never names a link.
        assert_eq!(
            link_from_message(&link_msg(0, vec![LinkAttribute::IfName("x".into())])),
            None
        );
        // A four-byte hardware address (IP tunnel) is not a MAC; no MTU is fine.
        let mut m = link_msg(
            3,
            vec![
                LinkAttribute::IfName("tun0".into()),
                LinkAttribute::Address(vec![10, 0, 0, 1]),
            ],
        );
        m.header.link_layer_type = LinkLayerType::from(768u16);
        m.header.flags = LinkFlags::Up;
        let l = link_from_message(&m).expect("a link");
        assert_eq!((l.mac, l.mtu, l.kind), (None, None, LinkKind::Other(768)));
        assert!(l.admin_up && !l.lower_up && !l.is_up());
        // IFF_LOOPBACK alone makes a loopback.
        m.header.flags = LinkFlags::Loopback | LinkFlags::Up | LinkFlags::LowerUp;
        m.header.link_layer_type = LinkLayerType::Ether;
        assert_eq!(
            link_from_message(&m).map(|l| l.kind),
            Some(LinkKind::Loopback)
        );
    }

    fn addr_msg(family: AddressFamily, len: u8, attrs: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family;
        m.header.prefix_len = len;
        m.header.index = 2;
        m.header.scope = AddressScope::Link;
        m.attributes = attrs;
        m
    }

    #[test]
    fn addresses() {
        // Point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer.
        let m = addr_msg(
            AddressFamily::Inet,
            32,
            vec![
                AddressAttribute::Address(ip("10.0.0.2")),
                AddressAttribute::Other(unknown()),
                AddressAttribute::Local(ip("10.0.0.1")),
                AddressAttribute::Label("eth0:1".into()),
            ],
        );
        let a = address_from_message(&m).expect("an address");
        assert_eq!(a.addr, net("10.0.0.1/32"));
        assert_eq!(a.scope, Scope::Link);
        assert_eq!(a.label.as_deref(), Some("eth0:1"));
        // IPv6 has IFA_ADDRESS only.
        let m = addr_msg(
            AddressFamily::Inet6,
            64,
            vec![AddressAttribute::Address(ip("2001:db8::1"))],
        );
        assert_eq!(
            address_from_message(&m).map(|a| a.addr),
            Some(net("2001:db8::1/64"))
        );
    }

    #[test]
    fn malformed_addresses_are_skipped() {
        // No address at all.
        assert_eq!(
            address_from_message(&addr_msg(AddressFamily::Inet, 24, vec![])),
            None
        );
        // Prefix length beyond the address.
        let m = addr_msg(
            AddressFamily::Inet,
            33,
            vec![AddressAttribute::Local(ip("10.0.0.1"))],
        );
        assert_eq!(address_from_message(&m), None);
        // Family contradicting the header.
        let m = addr_msg(
            AddressFamily::Inet,
            24,
            vec![AddressAttribute::Address(ip("2001:db8::1"))],
        );
        assert_eq!(address_from_message(&m), None);
        // A family we do not handle.
        let m = addr_msg(
            AddressFamily::Packet,
            0,
            vec![AddressAttribute::Address(ip("10.0.0.1"))],
        );
        assert_eq!(address_from_message(&m), None);
    }

    #[test]
    fn address_request_round_trips() {
        let a = Address {
            label: Some("d0:x".into()),
            ..Address::new(4, net("10.1.2.3/24"))
        };
        assert_eq!(address_from_message(&address_message(&a)), Some(a));
        let a = Address::new(4, net("2001:db8::5/64"));
        let m = address_message(&a);
        assert!(
            !m.attributes
                .iter()
                .any(|x| matches!(x, AddressAttribute::Label(_)))
        );
        assert_eq!(address_from_message(&m), Some(a));
    }

    fn route_msg(family: AddressFamily, len: u8, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.destination_prefix_length = len;
        m.header.table = 254;
        m.header.protocol = NlRouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.attributes = attrs;
        m
    }

    #[test]
    fn routes_single_multipath_via_and_defaults() {
        // Default route: no RTA_DST at all.
        let m = route_msg(
            AddressFamily::Inet,
            0,
            vec![
                RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))),
                RouteAttribute::Oif(3),
                RouteAttribute::Other(unknown()),
            ],
        );
        let r = route_from_message(&m).expect("a route");
        assert!(r.is_default() && r.is_ipv4());
        assert_eq!(
            (r.table, r.metric, r.protocol),
            (RT_TABLE_MAIN, 0, RouteProtocol::STATIC)
        );
        assert_eq!((r.gateway(), r.oif()), (Some(ip("10.0.0.1")), Some(3)));
        // RTA_TABLE wins over the header byte; RTA_VIA gives an IPv6 gateway to IPv4.
        let m = route_msg(
            AddressFamily::Inet,
            24,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 9, 0, 0))),
                RouteAttribute::Table(1000),
                RouteAttribute::Priority(20),
                RouteAttribute::Via(RouteVia::Inet6(Ipv6Addr::LOCALHOST)),
            ],
        );
        let r = route_from_message(&m).expect("a route");
        assert_eq!((r.table, r.metric), (1000, 20));
        assert_eq!(r.gateway(), Some(ip("::1")));
        // Multipath: each hop its gateway and interface (0 = none).
        let mut h1 = RouteNextHop::default();
        h1.interface_index = 5;
        h1.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(
                "2001:db8::2".parse().expect("v6"),
            )));
        let h2 = RouteNextHop::default();
        let m = route_msg(
            AddressFamily::Inet6,
            48,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet6(
                    "2001:db8:aa::".parse().expect("v6"),
                )),
                RouteAttribute::MultiPath(vec![h1, h2]),
            ],
        );
        let r = route_from_message(&m).expect("a route");
        assert_eq!(
            r.next_hops,
            vec![
                NextHop {
                    gateway: Some(ip("2001:db8::2")),
                    ifindex: Some(5)
                },
                NextHop {
                    gateway: None,
                    ifindex: None
                },
            ]
        );
        // Blackhole: no next hop.
        let mut m = route_msg(AddressFamily::Inet, 0, vec![]);
        m.header.kind = RouteType::BlackHole;
        let r = route_from_message(&m).expect("a route");
        assert_eq!((r.kind, r.next_hops.len()), (RouteKind::Blackhole, 0));
    }

    #[test]
    fn malformed_routes_are_skipped() {
        // A prefix length without a destination.
        assert_eq!(
            route_from_message(&route_msg(AddressFamily::Inet, 24, vec![])),
            None
        );
        // Destination of the other family.
        let m = route_msg(
            AddressFamily::Inet,
            24,
            vec![RouteAttribute::Destination(RouteAddress::Inet6(
                Ipv6Addr::LOCALHOST,
            ))],
        );
        assert_eq!(route_from_message(&m), None);
        // A destination that is not an IP (MPLS and friends).
        let m = route_msg(
            AddressFamily::Inet,
            24,
            vec![RouteAttribute::Destination(RouteAddress::Other(vec![1, 2]))],
        );
        assert_eq!(route_from_message(&m), None);
        // Prefix length beyond the address.
        let m = route_msg(
            AddressFamily::Inet,
            40,
            vec![RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::LOCALHOST,
            ))],
        );
        assert_eq!(route_from_message(&m), None);
        // Other families (MPLS = 28, IPMR = 128).
        assert_eq!(
            route_from_message(&route_msg(AddressFamily::Mpls, 0, vec![])),
            None
        );
        assert_eq!(
            route_from_message(&route_msg(AddressFamily::from(128u8), 0, vec![])),
            None
        );
    }

    #[test]
    fn route_requests_round_trip_through_bytes() {
        let routes = [
            Route::new(net("10.10.0.0/24"))
                .via(ip("10.99.0.2"))
                .in_table(100)
                .with_protocol(RouteProtocol::BGP)
                .with_metric(20),
            Route::new(net("10.10.1.0/24"))
                .via(ip("10.99.0.2"))
                .via(ip("10.99.0.3"))
                .in_table(1000),
            Route::new(net("10.10.2.0/24")).via(ip("2001:db8:99::4")),
            Route {
                scope: Scope::Link,
                preferred_source: Some(ip("10.99.0.1")),
                next_hops: vec![NextHop::dev(3)],
                ..Route::new(net("10.10.3.0/24"))
            },
            Route {
                next_hops: vec![NextHop {
                    gateway: Some(ip("fe80::1")),
                    ifindex: Some(4),
                }],
                ..Route::new(net("::/0")).with_metric(1024)
            },
            Route {
                kind: RouteKind::Blackhole,
                ..Route::new(net("192.0.2.0/24"))
            },
        ];
        for r in routes {
            let msg = route_message(&r, false).expect("valid");
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.emit(&mut buf);
            let parsed = RouteMessage::parse(buf.as_slice()).expect("our own bytes parse");
            assert_eq!(route_from_message(&parsed).as_ref(), Some(&r), "{r:?}");
        }
    }

    #[test]
    fn route_request_errors_and_delete_shape() {
        let bad = Route::new(net("2001:db8::/32")).via(ip("10.0.0.1"));
        assert!(matches!(
            route_message(&bad, false),
            Err(HostError::GatewayFamily { .. })
        ));
        let empty = Route {
            next_hops: vec![NextHop {
                gateway: None,
                ifindex: None,
            }],
            ..Route::new(net("10.0.0.0/8"))
        };
        assert!(matches!(
            route_message(&empty, false),
            Err(HostError::EmptyNextHop { .. })
        ));
        // A delete leaves the scope open and an unset metric out (any, for IPv6).
        let del = route_message(&Route::new(net("2001:db8::/32")), true).expect("valid");
        assert_eq!(del.header.scope, RouteScope::NoWhere);
        assert!(
            !del.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Priority(_)))
        );
        // Tables above 255 travel in RTA_TABLE only.
        let m = route_message(&Route::new(net("10.0.0.0/8")).in_table(1000), false).expect("valid");
        assert_eq!(m.header.table, RT_TABLE_UNSPEC);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
    }

    #[test]
    fn route_dump_filter_shape() {
        let m = route_dump_message(
            false,
            &RouteFilter {
                table: Some(100),
                protocol: Some(RouteProtocol::BGP),
                kind: Some(RouteKind::Unicast),
            },
        );
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(
            (m.header.table, m.header.protocol),
            (100, NlRouteProtocol::Bgp)
        );
        assert_eq!(m.header.kind, RouteType::Unicast);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert_eq!(m.attributes, vec![RouteAttribute::Table(100)]);
        let all = route_dump_message(true, &RouteFilter::default());
        assert!(all.attributes.is_empty());
        assert_eq!((all.header.table, all.header.kind), (0, RouteType::Unspec));
    }

    #[test]
    fn neighbours() {
        let n = Neighbour {
            ifindex: 3,
            ip: ip("10.0.0.2"),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
            state: NeighbourState::Reachable,
        };
        let mut m = neighbour_message(&n);
        m.attributes.push(NeighbourAttribute::Other(unknown()));
        assert_eq!(neighbour_from_message(&m), Some(n.clone()));
        // Unresolved: no link-layer address.
        let mut m = neighbour_key_message(3, ip("2001:db8::2"));
        m.header.state = NlNeighbourState::Incomplete;
        let u = neighbour_from_message(&m).expect("an entry");
        assert_eq!((u.mac, u.state), (None, NeighbourState::Incomplete));
        // No destination, wrong family, no interface.
        let mut m = neighbour_message(&n);
        m.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::Destination(_)));
        assert_eq!(neighbour_from_message(&m), None);
        let mut m = neighbour_message(&n);
        m.header.family = AddressFamily::Inet6;
        assert_eq!(neighbour_from_message(&m), None);
        let mut m = neighbour_message(&n);
        m.header.ifindex = 0;
        assert_eq!(neighbour_from_message(&m), None);
        let mut m = neighbour_message(&n);
        m.header.family = AddressFamily::Bridge;
        assert_eq!(neighbour_from_message(&m), None);
    }
}
