//! The rtnetlink half of FIB import: route messages, batched requests, the start-up dump.

use std::net::IpAddr;

use futures::StreamExt;
use futures::future::join_all;
use ipnet::IpNet;
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::table::{FibOp, Installed, OpOutcome};
use super::{FibError, FibNextHop};

/// `RT_TABLE_UNSPEC`: the header's table byte when the real id travels in `RTA_TABLE`.
const RT_TABLE_UNSPEC: u8 = 0;

/// Our side of one rtnetlink connection: which table and protocol our routes live under.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    handle: Handle,
    table: u32,
    protocol: u8,
}

impl Kernel {
    /// Opens a strict-check rtnetlink socket (`NETLINK_GET_STRICT_CHK`: the kernel filters dumps
    /// by table and protocol and rejects attributes it does not understand instead of ignoring
    /// them) and spawns its connection driver on the current tokio runtime.
    pub(crate) fn connect(table: u32, protocol: u8) -> Result<Self, FibError> {
        let (conn, handle, _) =
            rtnetlink::new_connection_with_strict_check().map_err(FibError::Socket)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            table,
            protocol,
        })
    }

    fn header(&self, prefix: &IpNet) -> RouteHeader {
        RouteHeader {
            address_family: family_of(prefix),
            destination_prefix_length: prefix.prefix_len(),
            table: u8::try_from(self.table).unwrap_or(RT_TABLE_UNSPEC),
            protocol: RouteProtocol::from(self.protocol),
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        }
    }

    fn base_message(&self, prefix: &IpNet, metric: u32) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header = self.header(prefix);
        msg.attributes
            .push(RouteAttribute::Destination(prefix.network().into()));
        msg.attributes.push(RouteAttribute::Table(self.table));
        msg.attributes.push(RouteAttribute::Priority(metric));
        msg
    }

    /// The netlink requests for one operation (two when a replace must first delete a route
    /// under another metric).
    pub(crate) fn messages(
        &self,
        op: &FibOp,
    ) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, FibError> {
        match op {
            FibOp::Delete { prefix, metric } => Ok(vec![self.delete_message(prefix, *metric)]),
            FibOp::Replace {
                prefix,
                next_hops,
                metric,
                delete_metric,
            } => {
                let mut msg = self.base_message(prefix, *metric);
                match next_hops.as_slice() {
                    [] => return Err(FibError::NoNextHop { prefix: *prefix }),
                    [one] => msg.attributes.extend(next_hop_attributes(prefix, one)?),
                    many => {
                        let mut hops = Vec::with_capacity(many.len());
                        for nh in many {
                            let mut hop = RouteNextHop::default();
                            hop.interface_index = nh.ifindex.unwrap_or(0);
                            hop.attributes.push(gateway_attribute(prefix, nh.addr)?);
                            hops.push(hop);
                        }
                        msg.attributes.push(RouteAttribute::MultiPath(hops));
                    }
                }
                let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(msg));
                req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
                let mut out = Vec::with_capacity(2);
                if let Some(old) = delete_metric {
                    out.push(self.delete_message(prefix, *old));
                }
                out.push(req);
                Ok(out)
            }
        }
    }

    fn delete_message(&self, prefix: &IpNet, metric: u32) -> NetlinkMessage<RouteNetlinkMessage> {
        let msg = self.base_message(prefix, metric);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelRoute(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        req
    }

    /// Sends every operation of the batch before awaiting any acknowledgement (netlink keeps
    /// the order of one socket's requests, and a batch holds one operation per prefix), then
    /// collects the outcomes. One round trip per batch instead of one per route.
    pub(crate) async fn apply(&self, ops: Vec<FibOp>) -> Vec<(FibOp, OpOutcome, Option<FibError>)> {
        let mut handle = self.handle.clone();
        let mut pending = Vec::with_capacity(ops.len());
        for op in ops {
            let msgs = match self.messages(&op) {
                Ok(m) => m,
                Err(e) => {
                    pending.push((op, Err(e)));
                    continue;
                }
            };
            let mut streams = Vec::with_capacity(msgs.len());
            let mut failed = None;
            for msg in msgs {
                match handle.request(msg) {
                    Ok(s) => streams.push(s),
                    Err(source) => {
                        failed = Some(FibError::Request { source });
                        break;
                    }
                }
            }
            match failed {
                Some(e) => pending.push((op, Err(e))),
                None => pending.push((op, Ok(streams))),
            }
        }
        let waits = pending.into_iter().map(|(op, streams)| async move {
            let streams = match streams {
                Ok(s) => s,
                Err(e) => return (op, OpOutcome::Failed, Some(e)),
            };
            let last = streams.len().saturating_sub(1);
            let mut outcome = OpOutcome::Done;
            let mut error = None;
            for (i, mut stream) in streams.into_iter().enumerate() {
                while let Some(msg) = stream.next().await {
                    let NetlinkPayload::Error(err) = msg.payload else {
                        continue;
                    };
                    let Some(code) = err.code else {
                        continue; // an ACK
                    };
                    let errno = -code.get();
                    let is_delete = i < last || matches!(op, FibOp::Delete { .. });
                    if is_delete && errno == libc::ESRCH {
                        // Already gone; for the pre-delete of a replace, carry on.
                        if i == last {
                            outcome = OpOutcome::AlreadyGone;
                        }
                    } else if outcome != OpOutcome::Failed {
                        outcome = OpOutcome::Failed;
                        error = Some(FibError::Kernel {
                            op: if is_delete { "delete" } else { "replace" },
                            prefix: op.prefix(),
                            source: std::io::Error::from_raw_os_error(errno),
                        });
                    }
                }
            }
            (op, outcome, error)
        });
        join_all(waits).await
    }

    /// Our routes in our table, both families: what a previous run left behind.
    pub(crate) async fn dump(&self) -> Result<Vec<(IpNet, Installed)>, FibError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            msg.header.table = u8::try_from(self.table).unwrap_or(RT_TABLE_UNSPEC);
            msg.header.protocol = RouteProtocol::from(self.protocol);
            msg.header.kind = RouteType::Unicast;
            msg.attributes.push(RouteAttribute::Table(self.table));
            let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(msg));
            req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            let mut handle = self.handle.clone();
            let mut stream = handle
                .request(req)
                .map_err(|source| FibError::Request { source })?;
            while let Some(msg) = stream.next().await {
                match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => {
                        if let Some(entry) = self.parse(&route) {
                            out.push(entry);
                        }
                    }
                    NetlinkPayload::Error(err) if err.code.is_some() => {
                        return Err(FibError::Dump {
                            table: self.table,
                            source: err.to_io(),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// One dumped route, if it is ours (the strict-check filter is trusted but verified).
    fn parse(&self, route: &RouteMessage) -> Option<(IpNet, Installed)> {
        let h = &route.header;
        if h.protocol != RouteProtocol::from(self.protocol) || h.kind != RouteType::Unicast {
            return None;
        }
        let mut table = u32::from(h.table);
        let mut dest = None;
        let mut metric = 0;
        let mut oif = None;
        let mut gateway = None;
        let mut multipath = Vec::new();
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(a) => dest = address(a),
                RouteAttribute::Priority(m) => metric = *m,
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(a) => gateway = address(a),
                RouteAttribute::Via(v) => gateway = via(v),
                RouteAttribute::MultiPath(hops) => {
                    for hop in hops {
                        let addr = hop.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(a) => address(a),
                            RouteAttribute::Via(v) => via(v),
                            _ => None,
                        });
                        if let Some(addr) = addr {
                            let ifindex = (hop.interface_index != 0).then_some(hop.interface_index);
                            multipath.push(dumped_next_hop(addr, ifindex));
                        }
                    }
                }
                _ => {}
            }
        }
        if table != self.table {
            return None;
        }
        let dest = dest.unwrap_or(match h.address_family {
            AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
            _ => IpAddr::from([0u8; 4]),
        });
        let prefix = IpNet::new(dest, h.destination_prefix_length).ok()?;
        let next_hops = if multipath.is_empty() {
            // Our routes always have a gateway; one without is not something we installed.
            vec![dumped_next_hop(gateway?, oif)]
        } else {
            multipath
        };
        Some((prefix, Installed { next_hops, metric }))
    }
}

/// The kernel reports the resolved outgoing interface of every gateway; we only ever give one
/// for IPv6 link-local next hops, so only those keep it (otherwise an adopted route would never
/// compare equal to the same route re-learned, and would be replaced for nothing).
fn dumped_next_hop(addr: IpAddr, ifindex: Option<u32>) -> FibNextHop {
    let link_local = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
    FibNextHop {
        addr,
        ifindex: ifindex.filter(|_| link_local),
    }
}

fn family_of(prefix: &IpNet) -> AddressFamily {
    match prefix {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

/// RTA_GATEWAY for a next hop of the route's family, RTA_VIA for an IPv6 next hop of an IPv4
/// route (RFC 8950; Linux 5.2+).
fn gateway_attribute(prefix: &IpNet, addr: IpAddr) -> Result<RouteAttribute, FibError> {
    match (prefix, addr) {
        (IpNet::V4(_), IpAddr::V4(a)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet(a))),
        (IpNet::V6(_), IpAddr::V6(a)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet6(a))),
        (IpNet::V4(_), IpAddr::V6(a)) => Ok(RouteAttribute::Via(RouteVia::Inet6(a))),
        (IpNet::V6(_), IpAddr::V4(_)) => Err(FibError::UnsupportedNextHop {
            prefix: *prefix,
            next_hop: addr,
        }),
    }
}

fn next_hop_attributes(prefix: &IpNet, nh: &FibNextHop) -> Result<Vec<RouteAttribute>, FibError> {
    let mut attrs = vec![gateway_attribute(prefix, nh.addr)?];
    if let Some(ifindex) = nh.ifindex {
        attrs.push(RouteAttribute::Oif(ifindex));
    }
    Ok(attrs)
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn via(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(a) => Some(IpAddr::V4(*a)),
        RouteVia::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}
