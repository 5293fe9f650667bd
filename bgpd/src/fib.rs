//! Optional FIB import: the speaker's best routes installed into a Linux routing table.
//!
//! Off by default: nothing here runs unless the daemon calls [`FibSync::spawn`]. One task owns
//! the host connection (the `rackd-host` crate's rtnetlink layer) and is fed by a channel
//! ([`FibSync`]); the pure reconciler ([`FibTable`]) decides what to send, the kernel half
//! turns it into batched route requests.
//!
//! Behaviour:
//! - routes carry protocol `bgp` (RTPROT_BGP, 186) in a configurable table, with a configurable
//!   metric; equal-cost paths become one `RTA_MULTIPATH` route; a change is one
//!   `NLM_F_REPLACE`; a withdraw (also the withdraws the speaker emits when a session is lost)
//!   is a delete; IPv4 routes with IPv6 next hops use `RTA_VIA` (RFC 8950, Linux 5.2+).
//! - graceful restart (RFC 4724 §4.1): [`FibSync::shutdown`] with `retain` leaves the routes in
//!   the kernel so forwarding continues while we restart; at start-up routes of our protocol
//!   found in the table are adopted as stale ([`StartupPolicy::AdoptStale`]) and deleted by
//!   [`FibSync::sync_done`] unless the speaker re-learned them. Re-learning an unchanged route
//!   costs no kernel operation.
//! - batching: route writes go through rackd-host's batched writer, which bypasses
//!   netlink-proto (one queued request per wake-up) on a raw socket, 128 requests per
//!   `sendmsg`, acknowledgements matched by sequence number; changes that arrive while a batch
//!   is in flight coalesce per prefix.
//!
//! The table should be one we own: `NLM_F_REPLACE` replaces any route with the same
//! destination and metric in it, whatever its protocol.

mod kernel;
mod table;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::future::OptionFuture;
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use table::{FibOp, FibStats, FibTable, Installed, OpOutcome};

use crate::events::{BestPathChange, RouteSource};
use kernel::Kernel;

/// `RTPROT_BGP` from `rtnetlink.h`: what `ip route` shows as `proto bgp`.
pub const RTPROT_BGP: u8 = 186;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;

/// One next hop of a FIB route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FibNextHop {
    pub addr: IpAddr,
    /// Outgoing interface; required for IPv6 link-local next hops, optional otherwise.
    pub ifindex: Option<u32>,
}

impl From<IpAddr> for FibNextHop {
    fn from(addr: IpAddr) -> Self {
        Self {
            addr,
            ifindex: None,
        }
    }
}

/// A best route to install: one next hop, or several equal-cost ones (ECMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibRoute {
    pub prefix: IpNet,
    /// Empty means withdraw.
    pub next_hops: Vec<FibNextHop>,
}

impl FibRoute {
    /// The FIB's view of a Loc-RIB change. A locally originated best path is never installed
    /// (it points at ourselves): it becomes a withdraw, so a peer's route it displaced leaves
    /// the kernel. A stale best path stays installed with the next hops it has.
    pub fn from_best_path(change: &BestPathChange) -> Self {
        let next_hops = if change.source == Some(RouteSource::Local) {
            Vec::new()
        } else {
            change
                .next_hops
                .iter()
                .copied()
                .map(FibNextHop::from)
                .collect()
        };
        Self {
            prefix: change.prefix,
            next_hops,
        }
    }
}

/// What to do with routes of our protocol already in the table at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartupPolicy {
    /// Keep them as stale until [`FibSync::sync_done`] (we are a restarting speaker).
    #[default]
    AdoptStale,
    /// Delete them at once.
    Clean,
}

/// FIB import settings. The feature is off unless the daemon spawns [`FibSync`].
#[derive(Debug, Clone)]
pub struct FibConfig {
    /// Routing table id (`ip route show table N`); 254 is `main`.
    pub table: u32,
    /// Route protocol stamped on our routes and used to find them again.
    pub protocol: u8,
    /// Route priority (`metric`); 20 like FRR's eBGP routes.
    pub metric: u32,
    pub startup: StartupPolicy,
    /// Operations taken from the queue per batch (they go to the kernel 128 per `sendmsg`);
    /// changes arriving meanwhile coalesce per prefix.
    pub batch_size: usize,
    /// How often routes the kernel refused are tried again.
    pub retry_interval: Duration,
    /// Capacity of the command channel.
    pub channel_capacity: usize,
}

impl Default for FibConfig {
    fn default() -> Self {
        Self {
            table: RT_TABLE_MAIN,
            protocol: RTPROT_BGP,
            metric: 20,
            startup: StartupPolicy::AdoptStale,
            batch_size: 1024,
            retry_interval: Duration::from_secs(30),
            channel_capacity: 4096,
        }
    }
}

/// FIB import errors.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    #[error("cannot open the rtnetlink socket")]
    Socket(#[source] std::io::Error),
    #[error("cannot send a netlink request")]
    Request {
        #[source]
        source: rackd_host::HostError,
    },
    #[error("kernel refused to {op} {prefix}")]
    Kernel {
        op: &'static str,
        prefix: IpNet,
        #[source]
        source: std::io::Error,
    },
    #[error("dumping routing table {table} failed")]
    Dump {
        table: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{prefix}: a route needs at least one next hop")]
    NoNextHop { prefix: IpNet },
    #[error("{prefix}: next hop {next_hop} has the wrong family (IPv6 routes need IPv6 next hops)")]
    UnsupportedNextHop { prefix: IpNet, next_hop: IpAddr },
    #[error("netlink socket I/O failed")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("the FIB task has stopped")]
    Stopped,
}

enum Command {
    Route(FibRoute),
    SyncDone,
    Flush(oneshot::Sender<FibStats>),
    Shutdown { retain: bool },
}

/// Handle to the FIB task. Cheap to clone; dropping every clone stops the task and leaves
/// the routes installed (as a crash would; the next start adopts them).
#[derive(Debug, Clone)]
pub struct FibSync {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Route(r) => f.debug_tuple("Route").field(r).finish(),
            Command::SyncDone => f.write_str("SyncDone"),
            Command::Flush(_) => f.write_str("Flush"),
            Command::Shutdown { retain } => {
                f.debug_struct("Shutdown").field("retain", retain).finish()
            }
        }
    }
}

impl FibSync {
    /// Opens the netlink socket and spawns the FIB task on the current tokio runtime. The task
    /// first dumps the table for routes of our protocol (see [`StartupPolicy`]), then follows
    /// the commands; it returns its final counters after [`FibSync::shutdown`].
    pub fn spawn(
        config: FibConfig,
    ) -> Result<(Self, JoinHandle<Result<FibStats, FibError>>), FibError> {
        let kernel = Kernel::connect(config.table, config.protocol)?;
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let task = tokio::spawn(run(config, kernel, rx));
        Ok((Self { tx }, task))
    }

    async fn send(&self, cmd: Command) -> Result<(), FibError> {
        self.tx.send(cmd).await.map_err(|_| FibError::Stopped)
    }

    /// Install or replace `route` (withdraw when it has no next hop).
    pub async fn route(&self, route: FibRoute) -> Result<(), FibError> {
        self.send(Command::Route(route)).await
    }

    /// Remove the route for `prefix`.
    pub async fn withdraw(&self, prefix: IpNet) -> Result<(), FibError> {
        self.route(FibRoute {
            prefix,
            next_hops: Vec::new(),
        })
        .await
    }

    /// Follow one Loc-RIB change (locally originated best paths are not installed).
    pub async fn best_path(&self, change: &BestPathChange) -> Result<(), FibError> {
        self.route(FibRoute::from_best_path(change)).await
    }

    /// The speaker's initial sync is complete: delete adopted routes not re-learned.
    pub async fn sync_done(&self) -> Result<(), FibError> {
        self.send(Command::SyncDone).await
    }

    /// Waits until every command sent before has reached the kernel; returns the counters.
    pub async fn flush(&self) -> Result<FibStats, FibError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Flush(tx)).await?;
        rx.await.map_err(|_| FibError::Stopped)
    }

    /// Stops the task. With `retain` (graceful restart) the routes stay in the kernel;
    /// otherwise they are all deleted first. Await the task's `JoinHandle` to know when.
    pub async fn shutdown(&self, retain: bool) -> Result<(), FibError> {
        self.send(Command::Shutdown { retain }).await
    }
}

type Batch = Pin<Box<dyn Future<Output = Vec<(FibOp, OpOutcome, Option<FibError>)>> + Send>>;

async fn run(
    config: FibConfig,
    kernel: Kernel,
    mut rx: mpsc::Receiver<Command>,
) -> Result<FibStats, FibError> {
    let mut table = FibTable::new(config.metric);
    let keep = config.startup == StartupPolicy::AdoptStale;
    let found = kernel.dump().await?;
    info!(
        table = config.table,
        routes = found.len(),
        adopt = keep,
        "FIB import started"
    );
    for (prefix, route) in found {
        table.adopt(prefix, route, keep);
    }

    let mut batch: Option<Batch> = None;
    let mut flushes: Vec<oneshot::Sender<FibStats>> = Vec::new();
    let mut stopping = false;
    let mut retry = tokio::time::interval(config.retry_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let batch_size = config.batch_size.max(1);

    loop {
        if batch.is_none() && !table.is_idle() {
            let ops = table.next_batch(batch_size);
            if !ops.is_empty() {
                let k = kernel.clone();
                batch = Some(Box::pin(async move { k.apply(ops).await }));
            }
        }
        if batch.is_none() {
            let stats = table.stats();
            for f in flushes.drain(..) {
                let _ = f.send(stats); // the waiter may have given up
            }
            if stopping {
                info!(?stats, "FIB import stopped");
                return Ok(stats);
            }
        }

        tokio::select! {
            Some(results) = OptionFuture::from(batch.as_mut()) => {
                batch = None;
                let mut failed = 0usize;
                for (op, outcome, err) in results {
                    if let Some(err) = err {
                        if failed == 0 {
                            warn!(error = %err, source = ?std::error::Error::source(&err), "FIB operation failed");
                        }
                        failed += 1;
                    }
                    table.complete(op, outcome);
                }
                if failed > 1 {
                    warn!(failed, "FIB operations failed in this batch; retried later");
                }
            }
            cmd = rx.recv(), if !stopping => {
                // `None`: every handle dropped. Stop as a crash would, leaving the routes.
                let mut next = cmd;
                stopping = next.is_none();
                // Drain what is already queued so changes coalesce before the next batch.
                let mut budget = batch_size * 4;
                while let Some(cmd) = next.take() {
                    match cmd {
                        Command::Route(r) => table.set(r.prefix, r.next_hops),
                        Command::SyncDone => table.sync_done(),
                        Command::Flush(tx) => flushes.push(tx),
                        Command::Shutdown { retain } => {
                            stopping = true;
                            if !retain {
                                table.remove_all();
                            }
                            debug!(retain, "FIB import shutting down");
                            break;
                        }
                    }
                    budget -= 1;
                    if budget == 0 {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
            }
            _ = retry.tick(), if table.failed_count() > 0 => table.retry_failed(),
        }
    }
}

/// Feed a speaker's event stream (from [`crate::Speaker::subscribe`], which starts with the
/// whole current Loc-RIB) into the FIB until the speaker stops. This is all the wiring FIB
/// import needs: received best paths are installed, replaced and withdrawn as they change.
pub async fn follow(
    fib: FibSync,
    mut events: tokio::sync::mpsc::UnboundedReceiver<crate::events::Event>,
) -> Result<(), FibError> {
    while let Some(ev) = events.recv().await {
        if let crate::events::Event::BestPath(change) = ev {
            fib.best_path(&change).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use bgpd_wire::{Family, PathAttributes};

    use super::*;

    fn change(source: Option<RouteSource>, hops: &[&str]) -> BestPathChange {
        BestPathChange {
            family: Family::Ipv4Unicast,
            prefix: "10.0.0.0/24".parse().unwrap(),
            next_hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
            attributes: source.map(|_| Arc::new(PathAttributes::default())),
            source,
            stale: false,
        }
    }

    #[test]
    fn best_path_changes_map_to_fib_routes() {
        let peer = Some(RouteSource::Peer("192.0.2.1".parse().unwrap()));
        let r = FibRoute::from_best_path(&change(peer, &["192.0.2.1", "192.0.2.2"]));
        assert_eq!(r.next_hops.len(), 2);
        // Withdrawn: no next hops.
        assert!(
            FibRoute::from_best_path(&change(None, &[]))
                .next_hops
                .is_empty()
        );
        // Locally originated: never installed, and it displaces an installed peer route.
        let local = FibRoute::from_best_path(&change(Some(RouteSource::Local), &["0.0.0.0"]));
        assert!(local.next_hops.is_empty());
    }

    #[test]
    fn defaults_are_bgp_protocol_in_main() {
        let c = FibConfig::default();
        assert_eq!(
            (c.table, c.protocol, c.metric),
            (RT_TABLE_MAIN, RTPROT_BGP, 20)
        );
        assert_eq!(c.startup, StartupPolicy::AdoptStale);
    }
}
