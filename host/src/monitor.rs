//! The host monitor: one task following rtnetlink notifications and publishing [`HostState`].
//!
//! ```text
//!  kernel ──RTMGRP_LINK, IPV4/IPV6_IFADDR, IPV4/IPV6_ROUTE (+NEIGH)──▶ event socket
//!                                                                        │ (subscribed first)
//!  request socket ◀── dumps: at start, on overrun, default routes ──── monitor task
//!                                                                        │
//!                          LinkCallback (each up/down change, at once) ◀─┤
//!                          watch::Sender<HostState> (per batch)       ◀──┘
//! ```
//!
//! The event socket is subscribed before the first dump, so a change between the two is
//! applied after the dump (a notification carries the object's whole state, so replaying an
//! older one followed by the newer ones ends at the newest). When the kernel drops
//! notifications (`ENOBUFS`, seen as `NetlinkPayload::Overrun`) the monitor dumps everything
//! again. Default gateways are re-read from the main table (in the background, so link reports
//! never wait for a dump) whenever a default route changes, and also when a link goes down or
//! an address goes away, because the kernel removes IPv4 routes then without notifying.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::future::OptionFuture;
use futures::{FutureExt, StreamExt};
use rtnetlink::Handle;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::convert::{address_from_message, link_from_message, neighbour_from_message};
use crate::error::{HostError, Operation};
use crate::netlink::{dump_addresses, dump_links, dump_neighbours, dump_routes};
use crate::state::{Change, Dump, LinkReporter, Tracker};
use crate::types::{
    DefaultGateways, HostState, LinkCallback, RT_TABLE_MAIN, RouteFilter, RouteKind,
};

/// `RTMGRP_*` (linux/rtnetlink.h): the legacy group bits for `bind(2)`.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;

/// Notifications applied before the state is published (a burst becomes one update; link
/// reports are not delayed by it).
const MAX_BATCH: usize = 1024;

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Also follow the ARP/NDP neighbour tables ([`HostState::neighbours`]); off by default,
    /// since on a busy node they change all the time.
    pub neighbours: bool,
    /// Receive buffer asked for the event socket (the kernel caps it at `rmem_max`); a burst
    /// larger than the buffer costs a full re-dump.
    pub receive_buffer: usize,
    /// Wait before retrying a failed dump.
    pub retry: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            neighbours: false,
            receive_buffer: 4 << 20,
            retry: Duration::from_secs(1),
        }
    }
}

/// A running watch on the host: the latest [`HostState`], and (through the [`LinkCallback`]
/// given when it started) every link up/down change. Dropping it stops the monitor.
#[derive(Debug)]
pub struct HostWatch {
    rx: watch::Receiver<HostState>,
    task: Option<JoinHandle<()>>,
    resyncs: Arc<AtomicU64>,
}

impl HostWatch {
    pub(crate) fn new(
        rx: watch::Receiver<HostState>,
        task: Option<JoinHandle<()>>,
        resyncs: Arc<AtomicU64>,
    ) -> Self {
        Self { rx, task, resyncs }
    }

    /// How many times the monitor re-read everything because the kernel dropped
    /// notifications (for a metric; a steady rise means a too small receive buffer).
    #[must_use]
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// The latest state, borrowed (hold it briefly: the monitor waits to publish meanwhile).
    #[must_use]
    pub fn borrow(&self) -> watch::Ref<'_, HostState> {
        self.rx.borrow()
    }

    /// A copy of the latest state.
    #[must_use]
    pub fn state(&self) -> HostState {
        self.rx.borrow().clone()
    }

    /// Another receiver of the same state (it stops updating when this watch is dropped).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<HostState> {
        self.rx.clone()
    }

    /// Waits until the state changed since the last call (or since the start), and marks it
    /// seen. [`HostError::MonitorStopped`] once the monitor has ended.
    pub async fn changed(&mut self) -> Result<(), HostError> {
        self.rx
            .changed()
            .await
            .map_err(|_| HostError::MonitorStopped)
    }
}

impl Drop for HostWatch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts a monitor on its own rtnetlink connections, in the calling thread's network
/// namespace, on the current tokio runtime. Returns after the first dump, when `on_link` has
/// been called once for every link.
pub async fn start(config: MonitorConfig, on_link: LinkCallback) -> Result<HostWatch, HostError> {
    let handle = crate::netlink::request_connection(Operation::Subscribe)?;
    start_with(handle, config, on_link).await
}

/// [`start`], dumping through `handle`.
pub(crate) async fn start_with(
    handle: Handle,
    config: MonitorConfig,
    mut on_link: LinkCallback,
) -> Result<HostWatch, HostError> {
    let socket_err = |source| HostError::Socket {
        op: Operation::Subscribe,
        source,
    };
    let (mut conn, _, events) =
        rtnetlink::new_connection_with_strict_check().map_err(socket_err)?;
    let mut groups = RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_ROUTE;
    if config.neighbours {
        groups |= RTMGRP_NEIGH;
    }
    let socket = conn.socket_mut().socket_mut();
    // Best effort: the kernel caps it at rmem_max, and overruns are handled anyway.
    let rcvbuf = libc::c_int::try_from(config.receive_buffer).unwrap_or(libc::c_int::MAX);
    if let Err(e) = socket.set_rx_buf_sz(rcvbuf) {
        debug!(error = %e, "cannot enlarge the rtnetlink receive buffer");
    }
    socket
        .bind(&SocketAddr::new(0, groups))
        .map_err(socket_err)?;
    // Subscribed: from here on every change is queued for us.
    let conn = AbortOnDrop(tokio::spawn(conn));

    let mut tracker = Tracker::new(config.neighbours);
    tracker.reset(full_dump(&handle, config.neighbours).await?);
    let mut reporter = LinkReporter::default();
    for change in reporter.diff(tracker.links()) {
        on_link(&change);
    }
    let state = tracker.state();
    info!(
        links = state.links.len(),
        addresses = state.addresses.len(),
        gateways = ?state.default_gateways,
        "host monitor running"
    );
    let (tx, rx) = watch::channel(state);
    let resyncs = Arc::new(AtomicU64::new(0));
    let task = Monitor {
        resyncs: resyncs.clone(),
        events,
        handle,
        tracker,
        reporter,
        on_link,
        tx,
        config,
        _conn: conn,
    };
    Ok(HostWatch::new(rx, Some(tokio::spawn(task.run())), resyncs))
}

/// Aborts a task when dropped (the event connection lives as long as the monitor).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn full_dump(handle: &Handle, neighbours: bool) -> Result<Dump, HostError> {
    Ok(Dump {
        links: dump_links(handle).await?,
        addresses: dump_addresses(handle).await?,
        neighbours: if neighbours {
            dump_neighbours(handle).await?
        } else {
            Vec::new()
        },
        gateways: dump_gateways(handle.clone()).await?,
    })
}

async fn dump_gateways(handle: Handle) -> Result<DefaultGateways, HostError> {
    let filter = RouteFilter {
        kind: Some(RouteKind::Unicast),
        ..RouteFilter::main()
    };
    Ok(DefaultGateways::from_routes(
        &dump_routes(&handle, filter).await?,
    ))
}

/// The table a route notification is about (`RTA_TABLE` wins over the header byte).
fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// What a notification means for the published state (`None`: nothing).
pub(crate) fn classify(msg: RouteNetlinkMessage) -> Option<Change> {
    match msg {
        RouteNetlinkMessage::NewLink(m) => link_from_message(&m).map(Change::Link),
        RouteNetlinkMessage::DelLink(m) => {
            (m.header.index != 0).then_some(Change::LinkGone(m.header.index))
        }
        RouteNetlinkMessage::NewAddress(m) => address_from_message(&m).map(Change::Address),
        RouteNetlinkMessage::DelAddress(m) => address_from_message(&m).map(Change::AddressGone),
        RouteNetlinkMessage::NewNeighbour(m) => neighbour_from_message(&m).map(Change::Neighbour),
        RouteNetlinkMessage::DelNeighbour(m) => {
            neighbour_from_message(&m).map(|n| Change::NeighbourGone(n.ifindex, n.ip))
        }
        RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m) => {
            (m.header.destination_prefix_length == 0 && route_table(&m) == RT_TABLE_MAIN)
                .then_some(Change::DefaultRoute)
        }
        _ => None,
    }
}

type GatewayDump = Pin<Box<dyn Future<Output = Result<DefaultGateways, HostError>> + Send>>;

struct Monitor {
    events: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    handle: Handle,
    tracker: Tracker,
    reporter: LinkReporter,
    on_link: LinkCallback,
    tx: watch::Sender<HostState>,
    config: MonitorConfig,
    resyncs: Arc<AtomicU64>,
    _conn: AbortOnDrop,
}

impl Monitor {
    async fn run(mut self) {
        let mut gateway_dump: Option<GatewayDump> = None;
        let mut want_gateways = false;
        let mut want_full = false;
        let mut retry_at: Option<Instant> = None;
        loop {
            let may_dump = retry_at.is_none_or(|t| t <= Instant::now());
            if want_full && may_dump {
                match full_dump(&self.handle, self.config.neighbours).await {
                    Ok(dump) => {
                        want_full = false;
                        retry_at = None;
                        // The full dump read the gateways too; one in flight may be older.
                        gateway_dump = None;
                        want_gateways = false;
                        self.resyncs.fetch_add(1, Ordering::Relaxed);
                        let changed = self.tracker.reset(dump);
                        self.report_links();
                        if changed {
                            self.publish();
                        }
                        info!("host state re-read after lost notifications");
                    }
                    Err(e) => {
                        warn!(error = %e, source = ?std::error::Error::source(&e), "re-reading the host state failed; retrying");
                        retry_at = Some(Instant::now() + self.config.retry);
                    }
                }
            }
            if want_gateways && gateway_dump.is_none() && may_dump {
                want_gateways = false;
                gateway_dump = Some(Box::pin(dump_gateways(self.handle.clone())));
            }
            let retry: OptionFuture<_> = retry_at
                .filter(|_| want_full || want_gateways)
                .map(tokio::time::sleep_until)
                .into();

            tokio::select! {
                first = self.events.next() => {
                    let Some(first) = first else {
                        warn!("the rtnetlink notification socket closed; host monitor stopped");
                        return;
                    };
                    let mut published = false;
                    let mut next = Some(first);
                    let mut n = 0;
                    while let Some((msg, _)) = next.take() {
                        match msg.payload {
                            NetlinkPayload::InnerMessage(inner) => {
                                if let Some(change) = classify(inner) {
                                    let effect = self.tracker.apply(change);
                                    if effect.links {
                                        self.report_links();
                                    }
                                    published |= effect.published;
                                    want_gateways |= effect.gateways_stale;
                                }
                            }
                            NetlinkPayload::Overrun(_) => {
                                warn!("rtnetlink notifications were lost (ENOBUFS); re-reading the host state");
                                want_full = true;
                            }
                            _ => {}
                        }
                        n += 1;
                        if n < MAX_BATCH && !want_full {
                            next = self.events.next().now_or_never().flatten();
                        }
                    }
                    if published {
                        self.publish();
                    }
                }
                Some(result) = OptionFuture::from(gateway_dump.as_mut()) => {
                    gateway_dump = None;
                    match result {
                        Ok(g) => {
                            if self.tracker.set_gateways(g) {
                                info!(v4 = ?g.v4, v6 = ?g.v6, "default gateways");
                                self.publish();
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, source = ?std::error::Error::source(&e), "re-reading the default gateways failed; retrying");
                            want_gateways = true;
                            retry_at = Some(Instant::now() + self.config.retry);
                        }
                    }
                }
                Some(()) = retry => {}
                () = self.tx.closed() => return,
            }
        }
    }

    fn report_links(&mut self) {
        for change in self.reporter.diff(self.tracker.links()) {
            info!(link = %change.name, ifindex = change.ifindex, up = change.up, removed = change.removed, "link state");
            (self.on_link)(&change);
        }
    }

    fn publish(&self) {
        self.tx.send_replace(self.tracker.state());
    }
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
    use rtnetlink::packet_route::route::RouteAddress;
    use rtnetlink::packet_route::{AddressFamily, route::RouteMessage};

    use super::*;

    #[test]
    fn classify_notifications() {
        let mut l = LinkMessage::default();
        l.header.index = 4;
        assert_eq!(
            classify(RouteNetlinkMessage::NewLink(l.clone())),
            None,
            "no name"
        );
        assert_eq!(
            classify(RouteNetlinkMessage::DelLink(l.clone())),
            Some(Change::LinkGone(4))
        );
        l.attributes.push(LinkAttribute::IfName("x".into()));
        assert!(matches!(
            classify(RouteNetlinkMessage::NewLink(l)),
            Some(Change::Link(_))
        ));
        assert_eq!(
            classify(RouteNetlinkMessage::DelLink(LinkMessage::default())),
            None
        );

        let route = |len: u8, table: u8, attr_table: Option<u32>| {
            let mut r = RouteMessage::default();
            r.header.address_family = AddressFamily::Inet;
            r.header.destination_prefix_length = len;
            r.header.table = table;
            if len > 0 {
                r.attributes
                    .push(RouteAttribute::Destination(RouteAddress::Inet(
                        std::net::Ipv4Addr::new(10, 0, 0, 0),
                    )));
            }
            if let Some(t) = attr_table {
                r.attributes.push(RouteAttribute::Table(t));
            }
            r
        };
        let default_main = route(0, 254, Some(254));
        assert_eq!(
            classify(RouteNetlinkMessage::NewRoute(default_main.clone())),
            Some(Change::DefaultRoute)
        );
        assert_eq!(
            classify(RouteNetlinkMessage::DelRoute(default_main)),
            Some(Change::DefaultRoute)
        );
        // Other tables (by attribute, which wins over the header) and other prefixes: nothing.
        assert_eq!(
            classify(RouteNetlinkMessage::NewRoute(route(0, 254, Some(100)))),
            None
        );
        assert_eq!(
            classify(RouteNetlinkMessage::NewRoute(route(8, 254, None))),
            None
        );
        assert_eq!(
            classify(RouteNetlinkMessage::NewRoute(route(0, 255, None))),
            None
        );
    }
}
