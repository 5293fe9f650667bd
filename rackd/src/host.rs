//! Host facts for the renderers: interface addresses and default gateways.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bgp::render::HostInfo;

/// Read the host's interface addresses and default gateways. Best effort: what cannot be
/// read is left out (the renderer reports peers it cannot resolve).
pub fn gather() -> HostInfo {
    let mut interfaces: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            interfaces.entry(a.interface_name).or_default().push(ip);
        }
    }
    for v in interfaces.values_mut() {
        v.sort();
        v.dedup();
    }
    HostInfo {
        interfaces,
        default_gateway_v4: std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|s| parse_route_v4(&s)),
        default_gateway_v6: std::fs::read_to_string("/proc/net/ipv6_route")
            .ok()
            .and_then(|s| parse_route_v6(&s)),
    }
}

/// The gateway of the first default route in `/proc/net/route` format.
fn parse_route_v4(text: &str) -> Option<IpAddr> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            return None;
        }
        // Little-endian hex of the gateway.
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        (gw != 0).then(|| IpAddr::V4(Ipv4Addr::from(gw.swap_bytes())))
    })
}

/// The gateway of the first `::/0` route in `/proc/net/ipv6_route` format.
fn parse_route_v6(text: &str) -> Option<IpAddr> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[0] != "00000000000000000000000000000000" || f[1] != "00" {
            return None;
        }
        let gw = u128::from_str_radix(f[4], 16).ok()?;
        (gw != 0).then(|| IpAddr::V6(Ipv6Addr::from(gw)))
    })
}

/// The first global unicast address of each family on the host (skipping loopback and
/// link-local), used as next hops when the Node object does not say.
pub fn first_global(h: &HostInfo) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    for (name, ips) in &h.interfaces {
        if name == "lo" {
            continue;
        }
        for ip in ips {
            match ip {
                IpAddr::V4(a) if v4.is_none() && !a.is_loopback() && !a.is_link_local() => {
                    v4 = Some(*a)
                }
                IpAddr::V6(a) if v6.is_none() && !a.is_loopback() && !a.is_unicast_link_local() => {
                    v6 = Some(*a)
                }
                _ => {}
            }
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(parse_route_v4(v4), Some("10.0.1.1".parse().unwrap()));
        assert_eq!(parse_route_v4("garbage\n\n1 2 3"), None);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000010000000010000000000000001 00000400 00000001 00000000 00000003 eth0\n";
        assert_eq!(parse_route_v6(v6), Some("fd00:10:0:1::1".parse().unwrap()));
        assert_eq!(parse_route_v6("zz"), None);
    }

    #[test]
    fn gathers_loopback() {
        let h = gather();
        assert!(
            h.interfaces
                .get("lo")
                .is_some_and(|v| v.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
    }
}
