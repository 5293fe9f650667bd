//! The owning task: one per node instance. It feeds the FSM from channels (desired groups,
//! interface state, backend events, ticks, shutdown) and executes the FSM's actions against
//! the lease backend and the [`Announcer`], in order.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until};
use tracing::{debug, info, warn};

use crate::announcer::Announcer;
use crate::backend::{BackendError, BackendEvent, LeaseBackend};
use crate::fsm::{Action, Fsm, FsmConfig, Input, Owner};
use crate::policy::DesiredGroup;
use crate::query::{AnnouncementRow, LeaseRow, Snapshot};
use crate::timing::LeaseTimings;

/// Configuration of a node instance.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name (holder identity).
    pub node: String,
    /// Lease timings (sanitised by the caller).
    pub timings: LeaseTimings,
    /// Gratuitous ARP / unsolicited NA frames per gained (IP, interface).
    pub gratuitous_count: u32,
    /// Spacing of those frames.
    pub gratuitous_interval: Duration,
}

impl NodeConfig {
    /// Defaults: 3 announcements 200 ms apart.
    #[must_use]
    pub fn new(node: impl Into<String>, timings: LeaseTimings) -> Self {
        Self {
            node: node.into(),
            timings,
            gratuitous_count: 3,
            gratuitous_interval: Duration::from_millis(200),
        }
    }
}

/// Errors that end a node instance.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The backend failed for good.
    #[error("lease backend failed")]
    Backend(#[source] BackendError),
}

/// What a planned shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Entries withdrawn.
    pub withdrawn: usize,
    /// Whether the node lease was revoked (false if it was already lost or revoking failed).
    pub revoked: bool,
}

enum Command {
    Desired(BTreeMap<IpAddr, DesiredGroup>),
    Link { ifindex: u32, up: bool },
    Query(oneshot::Sender<Snapshot>),
    Holders(Vec<IpAddr>, oneshot::Sender<BTreeMap<IpAddr, String>>),
    Shutdown(oneshot::Sender<ShutdownReport>),
}

/// Handle to a running node instance.
#[derive(Debug)]
pub struct NodeHandle {
    tx: mpsc::UnboundedSender<Command>,
    join: JoinHandle<Result<(), NodeError>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Desired(d) => write!(f, "Desired({} groups)", d.len()),
            Self::Link { ifindex, up } => write!(f, "Link({ifindex}, {up})"),
            Self::Query(_) => f.write_str("Query"),
            Self::Holders(ips, _) => write!(f, "Holders({})", ips.len()),
            Self::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

/// A cloneable sender of desired groups and link events, for tasks that do not own the
/// [`NodeHandle`] (e.g. a link monitor).
#[derive(Debug, Clone)]
pub struct NodeSender {
    tx: mpsc::UnboundedSender<Command>,
}

impl NodeSender {
    /// Replaces the desired groups (level-triggered).
    pub fn set_desired(&self, groups: BTreeMap<IpAddr, DesiredGroup>) {
        let _ = self.tx.send(Command::Desired(groups));
    }

    /// Reports an interface's operational state.
    pub fn link(&self, ifindex: u32, up: bool) {
        let _ = self.tx.send(Command::Link { ifindex, up });
    }

    /// A snapshot for queries; `None` if the task has ended.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Query(tx)).ok()?;
        rx.await.ok()
    }

    /// The holders of `ips` (those with one), in O(ips · log groups): cheap enough to poll
    /// often, unlike [`NodeSender::snapshot`], which lists every group. `None` if the task has
    /// ended.
    pub async fn holders(&self, ips: Vec<IpAddr>) -> Option<BTreeMap<IpAddr, String>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Holders(ips, tx)).ok()?;
        rx.await.ok()
    }
}

impl NodeHandle {
    /// A cloneable sender for desired groups and link events.
    #[must_use]
    pub fn sender(&self) -> NodeSender {
        NodeSender {
            tx: self.tx.clone(),
        }
    }

    /// Replaces the desired groups (level-triggered).
    pub fn set_desired(&self, groups: BTreeMap<IpAddr, DesiredGroup>) {
        let _ = self.tx.send(Command::Desired(groups));
    }

    /// Reports an interface's operational state.
    pub fn link(&self, ifindex: u32, up: bool) {
        let _ = self.tx.send(Command::Link { ifindex, up });
    }

    /// A snapshot for queries; `None` if the task has ended.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.sender().snapshot().await
    }

    /// Planned shutdown: withdraw every entry, then revoke the node lease.
    pub async fn shutdown(self) -> Option<ShutdownReport> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Shutdown(tx)).ok()?;
        let report = rx.await.ok();
        let _ = self.join.await;
        report
    }

    /// Ends the task without any cleanup, as `kill -9` would (the backend, dropped with the
    /// task, stops renewing; entries stay programmed in the announcer).
    pub fn abort(self) {
        self.join.abort();
    }

    /// Whether the task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

/// Spawns a node instance on the current tokio runtime.
pub fn spawn<B, A>(cfg: NodeConfig, backend: B, announcer: A) -> NodeHandle
where
    B: LeaseBackend,
    A: Announcer + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let join = tokio::spawn(run(cfg, backend, announcer, rx));
    NodeHandle { tx, join }
}

/// Backend events folded into one round of actions at most.
const MAX_BURST: usize = 100_000;

struct Garp {
    due: Instant,
    ip: IpAddr,
    ifindex: u32,
    remaining: u32,
}

struct Task<B, A> {
    cfg: NodeConfig,
    fsm: Fsm,
    backend: B,
    announcer: A,
    garps: VecDeque<Garp>,
    /// The backend's renewal count at the last stamp between claim chunks.
    stamped_renewals: u64,
}

async fn run<B, A>(
    cfg: NodeConfig,
    mut backend: B,
    announcer: A,
    mut rx: mpsc::UnboundedReceiver<Command>,
) -> Result<(), NodeError>
where
    B: LeaseBackend,
    A: Announcer + Send + 'static,
{
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    // The datastore may come up after the daemon: keep trying, buffering commands, and
    // honour a shutdown meanwhile.
    let mut pending = Vec::new();
    loop {
        match backend.start(ev_tx.clone()).await {
            Ok(()) => break,
            Err(e) => warn!(node = %cfg.node, error = %e, "lease backend not ready; retrying"),
        }
        let wake = sleep(cfg.timings.retry_period);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                cmd = rx.recv() => match cmd {
                    Some(Command::Shutdown(reply)) => {
                        let _ = reply.send(ShutdownReport { withdrawn: 0, revoked: false });
                        return Ok(());
                    }
                    None => return Ok(()),
                    Some(c) => pending.push(c),
                },
            }
        }
    }
    drop(ev_tx);
    let fsm = Fsm::new(FsmConfig {
        node: cfg.node.clone(),
        gratuitous_count: cfg.gratuitous_count,
        claim_delay: cfg.timings.retry_period,
    });
    let mut tick = interval(cfg.timings.retry_period.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut t = Task {
        cfg,
        fsm,
        backend,
        announcer,
        garps: VecDeque::new(),
        stamped_renewals: 0,
    };
    for cmd in pending {
        if t.command(Some(cmd)).await {
            return Ok(());
        }
    }
    loop {
        let next_garp = t.garps.front().map(|g| g.due);
        tokio::select! {
            biased;
            cmd = rx.recv() => if t.command(cmd).await {
                return Ok(());
            },
            ev = ev_rx.recv() => match ev {
                Some(ev) => {
                    // Take the whole burst (one watch response can free thousands of groups)
                    // so its claims go out in a few batched requests, not one per event.
                    let mut actions = t.backend_event(ev);
                    for _ in 0..MAX_BURST {
                        let Ok(ev) = ev_rx.try_recv() else { break };
                        actions.extend(t.backend_event(ev));
                    }
                    t.execute(actions).await;
                }
                None => {
                    warn!("lease backend event channel closed");
                    sleep(t.cfg.timings.retry_period).await;
                }
            },
            () = sleep_until(next_garp.unwrap_or_else(Instant::now)), if next_garp.is_some() => {
                t.fire_garps();
            }
            _ = tick.tick() => {
                if !t.backend.reports_renewals() {
                    t.heartbeat();
                }
                t.input(Input::Tick).await;
            }
        }
    }
}

impl<B, A> Task<B, A>
where
    B: LeaseBackend,
    A: Announcer + Send + 'static,
{
    /// Handles one command; `true` when the task must end.
    async fn command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            Some(Command::Shutdown(reply)) => {
                let report = self.shutdown().await;
                let _ = reply.send(report);
                true
            }
            Some(Command::Desired(d)) => {
                self.input(Input::Desired(d)).await;
                false
            }
            Some(Command::Link { ifindex, up }) => {
                self.input(Input::Link { ifindex, up }).await;
                false
            }
            Some(Command::Query(reply)) => {
                let _ = reply.send(self.snapshot());
                false
            }
            Some(Command::Holders(ips, reply)) => {
                let out = ips
                    .into_iter()
                    .filter_map(|ip| match self.fsm.owner(ip) {
                        Owner::Free => None,
                        Owner::Me => Some((ip, self.cfg.node.clone())),
                        Owner::Other(n) => Some((ip, n)),
                    })
                    .collect();
                let _ = reply.send(out);
                false
            }
            // Every handle is gone: behave as a planned shutdown.
            None => {
                self.shutdown().await;
                true
            }
        }
    }

    /// Stamps the datapath liveness guard, only while the lease is believed live.
    fn heartbeat(&mut self) {
        if self.fsm.lease_live()
            && let Err(e) = self.announcer.heartbeat()
        {
            warn!(error = %e, "datapath heartbeat failed");
        }
    }

    fn backend_event(&mut self, ev: BackendEvent) -> Vec<Action> {
        let input = match ev {
            BackendEvent::Renewed => {
                self.heartbeat();
                return Vec::new();
            }
            BackendEvent::LeaseAcquired => {
                info!(node = %self.cfg.node, "node lease live");
                Input::LeaseAcquired
            }
            BackendEvent::LeaseLost => {
                warn!(node = %self.cfg.node, "node lease lost: withdrawing everything");
                Input::LeaseLost
            }
            BackendEvent::Members(m) => Input::Members(m),
            BackendEvent::Observed {
                ip,
                owner,
                revision,
            } => Input::Observed {
                ip,
                owner,
                revision,
            },
        };
        self.fsm.step(Instant::now().into_std(), input)
    }

    async fn input(&mut self, input: Input) {
        let actions = self.fsm.step(Instant::now().into_std(), input);
        self.execute(actions).await;
    }

    /// Executes actions in order. Datapath actions run at once; claims and releases are
    /// batched at the end of each round (the FSM already put every withdrawal before them),
    /// and claim results feed the next round.
    async fn execute(&mut self, actions: Vec<Action>) -> bool {
        let mut queue = actions;
        let mut revoked = false;
        while !queue.is_empty() {
            let mut claims = Vec::new();
            let mut releases = Vec::new();
            let mut revoke = false;
            for (n, a) in std::mem::take(&mut queue).into_iter().enumerate() {
                // Thousands of datapath calls in one round (a failover at scale) must not
                // hold a runtime worker for long: the lease keepalive shares the runtime.
                if n % 1024 == 1023 {
                    tokio::task::yield_now().await;
                }
                match a {
                    Action::Program { ip, iface } => {
                        if let Err(e) = self.announcer.announce(ip, iface.ifindex) {
                            warn!(%ip, iface = %iface.name, error = %e, "programming responder failed");
                        }
                    }
                    Action::Unprogram { ip, iface } => {
                        if let Err(e) = self.announcer.withdraw(ip, iface.ifindex) {
                            warn!(%ip, iface = %iface.name, error = %e, "removing responder entry failed");
                        }
                    }
                    Action::Gratuitous { ip, iface, count } => {
                        self.gratuitous(ip, iface.ifindex);
                        // The repeats, unless the interval is past what the clock holds.
                        if count > 1
                            && let Some(due) =
                                Instant::now().checked_add(self.cfg.gratuitous_interval)
                        {
                            self.garps.push_back(Garp {
                                due,
                                ip,
                                ifindex: iface.ifindex,
                                remaining: count - 1,
                            });
                        }
                    }
                    Action::Claim(ip) => claims.push(ip),
                    Action::Release(ip) => releases.push(ip),
                    Action::RevokeLease => revoke = true,
                }
            }
            if !releases.is_empty()
                && let Err(e) = self.backend.release(&releases).await
            {
                warn!(error = %e, groups = releases.len(), "release failed; retrying on tick");
                for ip in releases {
                    self.fsm
                        .step(Instant::now().into_std(), Input::ReleaseFailed(ip));
                }
            }
            if !claims.is_empty() {
                // Claim a chunk, then program what it won before claiming the rest (queued
                // after the chunk's actions, so this step's order is kept).
                let rest = claims.split_off(claims.len().min(self.backend.claim_chunk().max(1)));
                debug!(node = %self.cfg.node, groups = claims.len(), later = rest.len(), "claiming");
                let outcomes = self.backend.claim(&claims).await;
                let now = Instant::now().into_std();
                for (ip, outcome) in claims.into_iter().zip(outcomes) {
                    queue.extend(self.fsm.step(now, Input::ClaimResult { ip, outcome }));
                }
                queue.extend(rest.into_iter().map(Action::Claim));
                // Renewals that succeeded during the chunk (their events wait behind this
                // burst) stamp the datapath guard now, or a long burst would silence the
                // datapath while the lease is fine.
                if let Some(n) = self.backend.renewals()
                    && n > 0
                    && n != self.stamped_renewals
                {
                    self.stamped_renewals = n;
                    self.heartbeat();
                }
            }
            if revoke {
                match self.backend.revoke().await {
                    Ok(()) => revoked = true,
                    Err(e) => warn!(error = %e, "revoking node lease failed"),
                }
            }
        }
        revoked
    }

    fn gratuitous(&mut self, ip: IpAddr, ifindex: u32) {
        if let Err(e) = self.announcer.gratuitous(ip, ifindex, 1) {
            warn!(%ip, ifindex, error = %e, "gratuitous announcement failed");
        }
    }

    fn fire_garps(&mut self) {
        let now = Instant::now();
        while let Some(g) = self.garps.front() {
            if g.due > now {
                break;
            }
            let Some(mut g) = self.garps.pop_front() else {
                break;
            };
            // Only while we still answer for it.
            if self.fsm.is_programmed(g.ip, g.ifindex) {
                self.gratuitous(g.ip, g.ifindex);
                g.remaining -= 1;
                if g.remaining > 0
                    && let Some(due) = now.checked_add(self.cfg.gratuitous_interval)
                {
                    g.due = due;
                    self.garps.push_back(g);
                }
            }
        }
    }

    async fn shutdown(&mut self) -> ShutdownReport {
        let actions = self.fsm.step(Instant::now().into_std(), Input::Shutdown);
        let withdrawn = actions
            .iter()
            .filter(|a| matches!(a, Action::Unprogram { .. }))
            .count();
        let revoked = self.execute(actions).await;
        info!(node = %self.cfg.node, withdrawn, revoked, "shut down");
        ShutdownReport { withdrawn, revoked }
    }

    fn snapshot(&self) -> Snapshot {
        let now = Instant::now().into_std();
        let node = self.cfg.node.clone();
        let mut leases = Vec::new();
        let mut announcements = Vec::new();
        for g in self.fsm.groups() {
            let services: Vec<String> = g
                .desired
                .map(|d| d.services.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let holder = match g.owner {
                Owner::Free => None,
                Owner::Me => Some(node.clone()),
                Owner::Other(n) => Some(n.clone()),
            };
            let age = now.saturating_duration_since(g.since).as_secs_f64();
            for iface in g.programmed {
                announcements.push(AnnouncementRow {
                    ip: g.ip,
                    services: services.clone(),
                    interface: iface.name.clone(),
                    ifindex: iface.ifindex,
                    holder: node.clone(),
                    lease_age_secs: age,
                    replies_sent: self.announcer.replies(g.ip, iface.ifindex),
                });
            }
            leases.push(LeaseRow {
                ip: g.ip,
                services,
                interfaces: g
                    .desired
                    .map(|d| d.interfaces.iter().map(|i| i.name.clone()).collect())
                    .unwrap_or_default(),
                holder,
                lease_age_secs: age,
                candidate: g.desired.is_some(),
            });
        }
        Snapshot {
            node,
            lease_live: self.fsm.lease_live(),
            members: self.fsm.members().iter().cloned().collect(),
            leases,
            announcements,
            writes: self.backend.writes(),
        }
    }
}
