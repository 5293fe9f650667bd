//! The rtnetlink half of FIB import: route messages, batched requests, the start-up dump.

use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
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
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, TokioSocket};

use super::table::{FibOp, Installed, OpOutcome};
use super::{FibError, FibNextHop};

/// `RT_TABLE_UNSPEC`: the header's table byte when the real id travels in `RTA_TABLE`.
const RT_TABLE_UNSPEC: u8 = 0;
/// `NLMSG_ERROR`: the type of acknowledgements and errors.
const NLMSG_ERROR: u16 = 2;
/// Requests per `sendmsg`. The kernel answers all of them before we read, and every answer
/// is its own skb in our receive buffer (default 208 KiB, ~1 KiB truesize each): staying well
/// below that keeps acknowledgements from being dropped (ENOBUFS).
const CHUNK: usize = 128;

/// The raw write socket (the socket type has no `Debug`).
struct Writer(TokioSocket);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// Our side of one rtnetlink connection: which table and protocol our routes live under.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// rtnetlink connection, for the dump.
    handle: Handle,
    /// A second, raw socket for route writes: netlink-proto sends one queued request per
    /// wake-up, which serialises a pipeline into one round trip per route; here a whole
    /// chunk of requests goes out in one `sendmsg` and the acknowledgements are read back.
    writer: Arc<Writer>,
    seq: Arc<AtomicU32>,
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
        let mut writer = TokioSocket::new(NETLINK_ROUTE).map_err(FibError::Socket)?;
        let sock = writer.socket_mut();
        sock.bind_auto().map_err(FibError::Socket)?;
        sock.set_netlink_get_strict_chk(true)
            .map_err(FibError::Socket)?;
        // Errors need not echo our whole request back.
        sock.set_cap_ack(true).map_err(FibError::Socket)?;
        Ok(Self {
            handle,
            writer: Arc::new(Writer(writer)),
            seq: Arc::new(AtomicU32::new(1)),
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

    /// Applies a batch: requests go out [`CHUNK`] per `sendmsg` (netlink handles one socket's
    /// requests in order, and a batch holds one operation per prefix), then the chunk's
    /// acknowledgements are read back and matched by sequence number.
    pub(crate) async fn apply(&self, ops: Vec<FibOp>) -> Vec<(FibOp, OpOutcome, Option<FibError>)> {
        let mut results: Vec<(FibOp, OpOutcome, Option<FibError>)> = Vec::with_capacity(ops.len());
        // (index into results, is the op's last message, is a delete)
        let mut pending: Vec<(u32, usize, bool, bool)> = Vec::with_capacity(CHUNK * 2);
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 256);
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            buf.clear();
            pending.clear();
            while pending.len() < CHUNK {
                let Some(op) = ops.next() else { break };
                let idx = results.len();
                match self.messages(&op) {
                    Ok(msgs) => {
                        let last = msgs.len() - 1;
                        let op_is_delete = matches!(op, FibOp::Delete { .. });
                        for (i, mut msg) in msgs.into_iter().enumerate() {
                            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                            msg.header.sequence_number = seq;
                            msg.finalize();
                            let start = buf.len();
                            buf.resize(start + msg.buffer_len(), 0);
                            msg.serialize(&mut buf[start..]);
                            pending.push((seq, idx, i == last, op_is_delete || i < last));
                        }
                        results.push((op, OpOutcome::Done, None));
                    }
                    Err(e) => results.push((op, OpOutcome::Failed, Some(e))),
                }
            }
            if pending.is_empty() {
                continue;
            }
            if let Err(source) = self.exchange(&buf, &mut pending, &mut results).await {
                // Whatever was not acknowledged is unknown: retried later.
                for &(_, idx, _, _) in &pending {
                    let r = &mut results[idx];
                    if r.1 != OpOutcome::Failed {
                        r.1 = OpOutcome::Failed;
                        r.2 = Some(FibError::Io {
                            source: std::io::Error::new(source.kind(), source.to_string()),
                        });
                    }
                }
            }
        }
        results
    }

    /// Sends one chunk and reads acknowledgements until every entry of `pending` is answered
    /// (answered entries are removed).
    async fn exchange(
        &self,
        buf: &[u8],
        pending: &mut Vec<(u32, usize, bool, bool)>,
        results: &mut [(FibOp, OpOutcome, Option<FibError>)],
    ) -> std::io::Result<()> {
        let sent = poll_fn(|cx| self.writer.0.poll_send(cx, buf)).await?;
        if sent != buf.len() {
            return Err(std::io::Error::other("short netlink send"));
        }
        let mut rx: Vec<u8> = Vec::with_capacity(1 << 16);
        while !pending.is_empty() {
            rx.clear();
            poll_fn(|cx| self.writer.0.poll_recv(cx, &mut rx)).await?;
            let mut off = 0;
            while rx.len() >= off + 16 {
                let word = |at: usize| {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(&rx[off + at..off + at + 4]);
                    w
                };
                let len = u32::from_ne_bytes(word(0)) as usize;
                let kind = u16::from_ne_bytes([rx[off + 4], rx[off + 5]]);
                let seq = u32::from_ne_bytes(word(8));
                if len < 16 || off + len > rx.len() {
                    break;
                }
                if kind == NLMSG_ERROR
                    && len >= 20
                    && let Some(pos) = pending.iter().position(|p| p.0 == seq)
                {
                    let (_, idx, last, is_delete) = pending.swap_remove(pos);
                    let errno = -i32::from_ne_bytes(word(16));
                    let r = &mut results[idx];
                    if errno == 0 {
                        // ACK
                    } else if is_delete && errno == libc::ESRCH {
                        // Already gone; for the pre-delete of a replace, carry on.
                        if last && r.1 == OpOutcome::Done {
                            r.1 = OpOutcome::AlreadyGone;
                        }
                    } else if r.1 != OpOutcome::Failed {
                        r.1 = OpOutcome::Failed;
                        r.2 = Some(FibError::Kernel {
                            op: if is_delete { "delete" } else { "replace" },
                            prefix: r.0.prefix(),
                            source: std::io::Error::from_raw_os_error(errno),
                        });
                    }
                }
                // NLMSG_ALIGN(len)
                off += (len + 3) & !3;
            }
        }
        Ok(())
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
