//! [`NetlinkHost`]: the [`Host`] trait over rtnetlink with strict checking.

use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use tracing::debug;

use crate::Host;
use crate::batch::RouteWriter;
use crate::convert::{
    address_from_message, address_message, link_from_message, neighbour_from_message,
    neighbour_key_message, neighbour_message, route_dump_message, route_from_message,
    route_message,
};
use crate::error::{HostError, Operation};
use crate::monitor::{HostWatch, MonitorConfig};
use crate::types::{
    Address, Link, LinkCallback, Neighbour, Route, RouteFilter, RouteRequest, WriteOutcome,
};

/// Dump attempts while the kernel flags the result as inconsistent (`NLM_F_DUMP_INTR`: the
/// table changed during the dump).
const DUMP_ATTEMPTS: usize = 5;

/// The real host: one rtnetlink connection for dumps and single writes, one raw socket for
/// batched route writes ([`Host::apply_routes`]).
///
/// Sockets belong to the network namespace of the thread that creates them: call
/// [`NetlinkHost::connect`] (and [`Host::watch`], which opens the monitor's socket) in the
/// namespace to manage.
#[derive(Debug, Clone)]
pub struct NetlinkHost {
    handle: Handle,
    writer: Arc<RouteWriter>,
}

impl NetlinkHost {
    /// Opens the sockets with strict checking (`NETLINK_GET_STRICT_CHK`: the kernel filters
    /// dumps itself and rejects malformed requests instead of ignoring fields) and spawns the
    /// connection task on the current tokio runtime; it ends when the last clone is dropped.
    pub fn connect() -> Result<Self, HostError> {
        Ok(Self {
            handle: request_connection(Operation::DumpLinks)?,
            writer: Arc::new(RouteWriter::open()?),
        })
    }

    /// Sends one write and waits for its acknowledgement: `None` when applied, the kernel's
    /// errno when refused.
    async fn write(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: Operation,
        target: &(dyn std::fmt::Display + Sync),
    ) -> Result<Option<i32>, HostError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut replies = handle.request(req).map_err(|_| HostError::Closed { op })?;
        while let Some(reply) = replies.next().await {
            if let NetlinkPayload::Error(e) = reply.payload {
                return Ok(e.code.map(|c| c.get().checked_neg().unwrap_or(libc::EIO)));
            }
        }
        Err(cut_short(op, target))
    }
}

/// Opens a strict-checking request connection and spawns its task; the task ends when the
/// last clone of the handle is dropped. Acknowledgements and `NLMSG_DONE` are passed on to us,
/// so a reply stream cut short by a dying connection is told apart from a success.
pub(crate) fn request_connection(op: Operation) -> Result<Handle, HostError> {
    let (mut conn, handle, _) = rtnetlink::new_connection_with_strict_check()
        .map_err(|source| HostError::Socket { op, source })?;
    conn.set_forward_ack(true);
    conn.set_forward_done(true);
    tokio::spawn(conn);
    Ok(handle)
}

/// The error for a reply stream that ended without its final message.
fn cut_short(op: Operation, target: impl std::fmt::Display) -> HostError {
    HostError::Io {
        op,
        target: target.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the rtnetlink connection ended before the kernel's answer",
        ),
    }
}

/// Runs one dump request, retrying while the kernel flags it interrupted; `pick` turns each
/// reply into a value or skips it.
pub(crate) async fn dump<T>(
    handle: &Handle,
    request: impl Fn() -> RouteNetlinkMessage,
    op: Operation,
    mut pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>, HostError> {
    for _ in 0..DUMP_ATTEMPTS {
        let mut req = NetlinkMessage::from(request());
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut handle = handle.clone();
        let mut replies = handle.request(req).map_err(|_| HostError::Closed { op })?;
        let mut out = Vec::new();
        let mut interrupted = false;
        let mut done = false;
        while let Some(reply) = replies.next().await {
            interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.extend(pick(m)),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(HostError::Kernel {
                        op,
                        target: String::new(),
                        source: e.to_io(),
                    });
                }
                NetlinkPayload::Done(d) if d.code < 0 => {
                    let errno = d.code.checked_neg().unwrap_or(libc::EIO);
                    return Err(HostError::kernel(op, "", errno));
                }
                NetlinkPayload::Done(_) => done = true,
                _ => {}
            }
        }
        if !done {
            return Err(cut_short(op, ""));
        }
        if !interrupted {
            return Ok(out);
        }
        debug!(%op, "dump interrupted by a concurrent change; retrying");
    }
    Err(HostError::DumpInconsistent { op })
}

pub(crate) async fn dump_links(handle: &Handle) -> Result<Vec<Link>, HostError> {
    dump(
        handle,
        || RouteNetlinkMessage::GetLink(LinkMessage::default()),
        Operation::DumpLinks,
        |m| match m {
            RouteNetlinkMessage::NewLink(l) => link_from_message(&l),
            _ => None,
        },
    )
    .await
}

pub(crate) async fn dump_addresses(handle: &Handle) -> Result<Vec<Address>, HostError> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let request = || {
            let mut m = AddressMessage::default();
            m.header.family = family;
            RouteNetlinkMessage::GetAddress(m)
        };
        out.extend(
            dump(handle, request, Operation::DumpAddresses, |m| match m {
                RouteNetlinkMessage::NewAddress(a) => address_from_message(&a),
                _ => None,
            })
            .await?,
        );
    }
    Ok(out)
}

pub(crate) async fn dump_routes(
    handle: &Handle,
    filter: RouteFilter,
) -> Result<Vec<Route>, HostError> {
    let mut out = Vec::new();
    for v4 in [true, false] {
        let request = || RouteNetlinkMessage::GetRoute(route_dump_message(v4, &filter));
        let routes = dump(handle, request, Operation::DumpRoutes, |m| match m {
            RouteNetlinkMessage::NewRoute(r) => {
                route_from_message(&r).filter(|r| filter.matches(r))
            }
            _ => None,
        })
        .await;
        match routes {
            Ok(routes) => out.extend(routes),
            // Filtered by a table this family does not have (yet): no routes.
            Err(e) if filter.table.is_some() && e.errno() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub(crate) async fn dump_neighbours(handle: &Handle) -> Result<Vec<Neighbour>, HostError> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let request = || {
            let mut m = NeighbourMessage::default();
            m.header.family = family;
            RouteNetlinkMessage::GetNeighbour(m)
        };
        out.extend(
            dump(handle, request, Operation::DumpNeighbours, |m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => neighbour_from_message(&n),
                _ => None,
            })
            .await?,
        );
    }
    Ok(out)
}

/// The outcome of a write from the kernel's errno: `exists` / `absent` are the errnos that
/// mean there was nothing to do.
fn outcome(
    refused: Option<i32>,
    op: Operation,
    target: impl std::fmt::Display,
    exists: &[i32],
    absent: &[i32],
) -> Result<WriteOutcome, HostError> {
    match refused {
        None => Ok(WriteOutcome::Applied),
        Some(e) if exists.contains(&e) => Ok(WriteOutcome::AlreadyPresent),
        Some(e) if absent.contains(&e) => Ok(WriteOutcome::AlreadyAbsent),
        Some(e) => Err(HostError::kernel(op, target, e)),
    }
}

struct AddressTarget<'a>(&'a Address);

impl std::fmt::Display for AddressTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on ifindex {}", self.0.addr, self.0.ifindex)
    }
}

struct NeighbourTarget(u32, IpAddr);

impl std::fmt::Display for NeighbourTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on ifindex {}", self.1, self.0)
    }
}

impl Host for NetlinkHost {
    async fn links(&self) -> Result<Vec<Link>, HostError> {
        dump_links(&self.handle).await
    }

    async fn addresses(&self) -> Result<Vec<Address>, HostError> {
        dump_addresses(&self.handle).await
    }

    async fn routes(&self, filter: RouteFilter) -> Result<Vec<Route>, HostError> {
        dump_routes(&self.handle, filter).await
    }

    async fn neighbours(&self) -> Result<Vec<Neighbour>, HostError> {
        dump_neighbours(&self.handle).await
    }

    async fn address_add(&self, address: &Address) -> Result<WriteOutcome, HostError> {
        let op = Operation::AddressAdd;
        let target = AddressTarget(address);
        let msg = RouteNetlinkMessage::NewAddress(address_message(address));
        let refused = self
            .write(msg, NLM_F_CREATE | NLM_F_EXCL, op, &target)
            .await?;
        outcome(refused, op, target, &[libc::EEXIST], &[])
    }

    async fn address_del(&self, address: &Address) -> Result<WriteOutcome, HostError> {
        let op = Operation::AddressDel;
        let target = AddressTarget(address);
        let mut body = address_message(address);
        // The label would narrow the match; the address and prefix length identify it.
        body.attributes
            .retain(|a| !matches!(a, AddressAttribute::Label(_)));
        let msg = RouteNetlinkMessage::DelAddress(body);
        let refused = self.write(msg, 0, op, &target).await?;
        let absent = [libc::EADDRNOTAVAIL, libc::ENOENT, libc::ESRCH];
        outcome(refused, op, target, &[], &absent)
    }

    async fn route_add(&self, route: &Route) -> Result<WriteOutcome, HostError> {
        let op = Operation::RouteAdd;
        let msg = RouteNetlinkMessage::NewRoute(route_message(route, false)?);
        let refused = self
            .write(msg, NLM_F_CREATE | NLM_F_EXCL, op, route)
            .await?;
        outcome(refused, op, route, &[libc::EEXIST], &[])
    }

    async fn route_replace(&self, route: &Route) -> Result<WriteOutcome, HostError> {
        let op = Operation::RouteReplace;
        let msg = RouteNetlinkMessage::NewRoute(route_message(route, false)?);
        let refused = self
            .write(msg, NLM_F_CREATE | NLM_F_REPLACE, op, route)
            .await?;
        outcome(refused, op, route, &[], &[])
    }

    async fn route_del(&self, route: &Route) -> Result<WriteOutcome, HostError> {
        let op = Operation::RouteDel;
        let msg = RouteNetlinkMessage::DelRoute(route_message(route, true)?);
        let refused = self.write(msg, 0, op, route).await?;
        outcome(refused, op, route, &[], &[libc::ESRCH, libc::ENOENT])
    }

    async fn apply_routes(
        &self,
        requests: &[RouteRequest],
    ) -> Vec<Result<WriteOutcome, HostError>> {
        self.writer.apply(requests).await
    }

    async fn neighbour_add(&self, neighbour: &Neighbour) -> Result<WriteOutcome, HostError> {
        let op = Operation::NeighbourAdd;
        let target = NeighbourTarget(neighbour.ifindex, neighbour.ip);
        let msg = RouteNetlinkMessage::NewNeighbour(neighbour_message(neighbour));
        let refused = self
            .write(msg, NLM_F_CREATE | NLM_F_EXCL, op, &target)
            .await?;
        outcome(refused, op, target, &[libc::EEXIST], &[])
    }

    async fn neighbour_replace(&self, neighbour: &Neighbour) -> Result<WriteOutcome, HostError> {
        let op = Operation::NeighbourReplace;
        let target = NeighbourTarget(neighbour.ifindex, neighbour.ip);
        let msg = RouteNetlinkMessage::NewNeighbour(neighbour_message(neighbour));
        let refused = self
            .write(msg, NLM_F_CREATE | NLM_F_REPLACE, op, &target)
            .await?;
        outcome(refused, op, target, &[], &[])
    }

    async fn neighbour_del(&self, ifindex: u32, ip: IpAddr) -> Result<WriteOutcome, HostError> {
        let op = Operation::NeighbourDel;
        let target = NeighbourTarget(ifindex, ip);
        let msg = RouteNetlinkMessage::DelNeighbour(neighbour_key_message(ifindex, ip));
        let refused = self.write(msg, 0, op, &target).await?;
        outcome(refused, op, target, &[], &[libc::ENOENT, libc::ESRCH])
    }

    async fn watch(
        &self,
        config: MonitorConfig,
        on_link: LinkCallback,
    ) -> Result<HostWatch, HostError> {
        crate::monitor::start_with(self.handle.clone(), config, on_link).await
    }
}
