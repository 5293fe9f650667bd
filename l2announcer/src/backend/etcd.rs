//! The `etcd` backend (etcd v3 API).
//!
//! Layout under the prefix (default `/rackd/l2/`):
//! - `nodes/<node>` = node name, attached to the node's lease: the member list.
//! - `groups/<ip>` = holder node name, attached to the holder's node lease, created only if
//!   absent (`create_revision == 0` in a transaction).
//!
//! Steady state costs one keepalive per node per retry period, whatever the number of groups.
//! When a node dies its lease expires and etcd deletes all its keys at one revision; every
//! survivor sees the deletions on its watch and races a create-if-absent per group, which
//! exactly one wins. Claims and releases are batched as nested transactions (etcd ≥ 3.3), 127
//! per request (etcd's default `--max-txn-ops` of 128 minus the outer level).

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::{BackendError, BackendEvent, Counters, LeaseBackend, Write, WriteStats};
use crate::fsm::{ClaimOutcome, Owner};
use crate::timing::LeaseTimings;

/// Groups per claim/release request. etcd's default `--max-txn-ops` is 128, and etcd 3.4
/// checks nested transactions against what the outer one leaves (128 − outer ops), so 127
/// one-op nested transactions is the most one request can carry (128 is rejected).
const MAX_TXN_OPS: usize = 127;

/// Configuration of the etcd backend.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix; must end with `/`.
    pub prefix: String,
    /// This node's name.
    pub node: String,
    /// Lease timings (already sanitised).
    pub timings: LeaseTimings,
}

impl EtcdConfig {
    /// Configuration with the default prefix `/rackd/l2/`.
    #[must_use]
    pub fn new(endpoints: Vec<String>, node: impl Into<String>, timings: LeaseTimings) -> Self {
        Self {
            endpoints,
            prefix: "/rackd/l2/".to_owned(),
            node: node.into(),
            timings,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// Current node lease ID; 0 while none is live.
    lease: AtomicI64,
    /// TTL etcd actually granted (it raises TTLs below its minimum).
    granted_ttl: AtomicI64,
    counters: Counters,
}

/// etcd v3 lease backend.
pub struct EtcdBackend {
    cfg: EtcdConfig,
    client: Option<Client>,
    shared: Arc<Shared>,
    keepalive: Option<JoinHandle<()>>,
    watch: Option<JoinHandle<()>>,
}

impl EtcdBackend {
    /// A backend that connects on [`LeaseBackend::start`].
    #[must_use]
    pub fn new(cfg: EtcdConfig) -> Self {
        Self {
            cfg,
            client: None,
            shared: Arc::new(Shared::default()),
            keepalive: None,
            watch: None,
        }
    }

    /// The TTL (seconds) etcd granted the current node lease; etcd raises requests below its
    /// minimum (see README).
    #[must_use]
    pub fn granted_ttl(&self) -> i64 {
        self.shared.granted_ttl.load(Ordering::Relaxed)
    }

    /// The current node lease ID (0 if none).
    #[must_use]
    pub fn lease_id(&self) -> i64 {
        self.shared.lease.load(Ordering::Relaxed)
    }

    /// Stops renewing the node lease without revoking it, as a crashed node would: for
    /// fault-injection in tests and benchmarks. The lease then expires after its TTL.
    pub fn stop_keepalive(&mut self) {
        if let Some(h) = self.keepalive.take() {
            h.abort();
        }
    }
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("cfg", &self.cfg)
            .field("connected", &self.client.is_some())
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdBackend {
    fn drop(&mut self) {
        if let Some(h) = self.keepalive.take() {
            h.abort();
        }
        if let Some(h) = self.watch.take() {
            h.abort();
        }
    }
}

fn group_key(prefix: &str, ip: IpAddr) -> String {
    format!("{prefix}groups/{ip}")
}

fn node_key(prefix: &str, node: &str) -> String {
    format!("{prefix}nodes/{node}")
}

/// What a key under the prefix names.
enum KeyKind {
    Group(IpAddr),
    Node(String),
}

fn classify(prefix: &str, key: &[u8]) -> Option<KeyKind> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    if let Some(ip) = key.strip_prefix("groups/") {
        return ip.parse().ok().map(KeyKind::Group);
    }
    key.strip_prefix("nodes/")
        .filter(|n| !n.is_empty())
        .map(|n| KeyKind::Node(n.to_owned()))
}

fn owner_of(kv: &KeyValue, lease: i64) -> Owner {
    if lease != 0 && kv.lease() == lease {
        Owner::Me
    } else {
        Owner::Other(String::from_utf8_lossy(kv.value()).into_owned())
    }
}

async fn grant_and_register(
    client: &mut Client,
    cfg: &EtcdConfig,
    shared: &Shared,
) -> Result<i64, BackendError> {
    shared.counters.add(Write::Grant);
    let grant = client
        .lease_grant(cfg.timings.ttl_secs(), None)
        .await
        .map_err(|source| BackendError::Etcd {
            op: "lease grant",
            source,
        })?;
    if grant.ttl() <= 0 {
        return Err(BackendError::BadGrant { ttl: grant.ttl() });
    }
    if grant.ttl() != cfg.timings.ttl_secs() {
        warn!(
            requested = cfg.timings.ttl_secs(),
            granted = grant.ttl(),
            "etcd raised the node lease TTL to its minimum"
        );
    }
    shared.granted_ttl.store(grant.ttl(), Ordering::Relaxed);
    let id = grant.id();
    shared.counters.add(Write::Put);
    client
        .put(
            node_key(&cfg.prefix, &cfg.node),
            cfg.node.as_bytes(),
            Some(PutOptions::new().with_lease(id)),
        )
        .await
        .map_err(|source| BackendError::Etcd {
            op: "register node",
            source,
        })?;
    shared.lease.store(id, Ordering::Relaxed);
    Ok(id)
}

/// Lists the prefix and reports its full state; returns the listing revision and members.
async fn list(
    client: &mut Client,
    cfg: &EtcdConfig,
    shared: &Shared,
    known: &mut BTreeSet<IpAddr>,
    events: &UnboundedSender<BackendEvent>,
) -> Result<(i64, BTreeSet<String>), BackendError> {
    let resp = client
        .get(cfg.prefix.as_bytes(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|source| BackendError::Etcd { op: "list", source })?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let lease = shared.lease.load(Ordering::Relaxed);
    let mut members = BTreeSet::new();
    let mut present = BTreeSet::new();
    for kv in resp.kvs() {
        match classify(&cfg.prefix, kv.key()) {
            Some(KeyKind::Group(ip)) => {
                present.insert(ip);
                let ev = BackendEvent::Observed {
                    ip,
                    owner: owner_of(kv, lease),
                    revision: kv.mod_revision(),
                };
                events.send(ev).map_err(|_| BackendError::ChannelClosed)?;
            }
            Some(KeyKind::Node(n)) => {
                members.insert(n);
            }
            None => debug!(key = ?String::from_utf8_lossy(kv.key()), "ignoring foreign key"),
        }
    }
    for gone in known.difference(&present) {
        let ev = BackendEvent::Observed {
            ip: *gone,
            owner: Owner::Free,
            revision,
        };
        events.send(ev).map_err(|_| BackendError::ChannelClosed)?;
    }
    *known = present;
    events
        .send(BackendEvent::Members(members.clone()))
        .map_err(|_| BackendError::ChannelClosed)?;
    Ok((revision, members))
}

impl LeaseBackend for EtcdBackend {
    fn node(&self) -> &str {
        &self.cfg.node
    }

    async fn start(&mut self, events: UnboundedSender<BackendEvent>) -> Result<(), BackendError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
        let mut client = Client::connect(&self.cfg.endpoints, Some(opts))
            .await
            .map_err(|source| BackendError::Connect {
                endpoints: self.cfg.endpoints.clone(),
                source,
            })?;
        let lease = grant_and_register(&mut client, &self.cfg, &self.shared).await?;
        info!(node = %self.cfg.node, lease, ttl = self.granted_ttl(), "node lease granted");
        let mut known = BTreeSet::new();
        let (revision, members) =
            list(&mut client, &self.cfg, &self.shared, &mut known, &events).await?;
        self.watch = Some(tokio::spawn(watch_loop(
            client.clone(),
            self.cfg.clone(),
            Arc::clone(&self.shared),
            revision + 1,
            known,
            members,
            events.clone(),
        )));
        self.keepalive = Some(tokio::spawn(keepalive_loop(
            client.clone(),
            self.cfg.clone(),
            Arc::clone(&self.shared),
            events.clone(),
        )));
        self.client = Some(client);
        events
            .send(BackendEvent::LeaseAcquired)
            .map_err(|_| BackendError::ChannelClosed)
    }

    async fn claim(&self, ips: &[IpAddr]) -> Vec<ClaimOutcome> {
        let lease = self.shared.lease.load(Ordering::Relaxed);
        let Some(client) = self.client.as_ref().filter(|_| lease != 0) else {
            return vec![ClaimOutcome::Failed; ips.len()];
        };
        let mut client = client.clone();
        let mut out = Vec::with_capacity(ips.len());
        for chunk in ips.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|ip| {
                    let key = group_key(&self.cfg.prefix, *ip);
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(
                                key.clone(),
                                self.cfg.node.as_bytes(),
                                Some(PutOptions::new().with_lease(lease)),
                            )])
                            .or_else([TxnOp::get(key, None)]),
                    )
                })
                .collect();
            self.shared.counters.add(Write::Txn);
            let resp = match timeout(
                self.cfg.timings.renew_deadline,
                client.txn(Txn::new().and_then(ops)),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    warn!(error = %e, groups = chunk.len(), "claim transaction failed");
                    // Leaves them to the next tick.
                    out.extend(std::iter::repeat_n(ClaimOutcome::Failed, chunk.len()));
                    continue;
                }
                Err(_) => {
                    warn!(groups = chunk.len(), "claim transaction timed out");
                    out.extend(std::iter::repeat_n(ClaimOutcome::Failed, chunk.len()));
                    continue;
                }
            };
            let revision = resp.header().map_or(0, |h| h.revision());
            let before = out.len();
            let mut created = 0;
            for r in resp.op_responses() {
                let outcome = match r {
                    TxnOpResponse::Txn(t) if t.succeeded() => {
                        created += 1;
                        ClaimOutcome::Won { revision }
                    }
                    TxnOpResponse::Txn(t) => match t.op_responses().first() {
                        Some(TxnOpResponse::Get(g)) => match g.kvs().first() {
                            Some(kv) if kv.lease() == lease => ClaimOutcome::Won {
                                revision: kv.mod_revision(),
                            },
                            Some(kv) => ClaimOutcome::Held {
                                holder: String::from_utf8_lossy(kv.value()).into_owned(),
                                revision: kv.mod_revision(),
                            },
                            None => ClaimOutcome::Failed,
                        },
                        _ => ClaimOutcome::Failed,
                    },
                    _ => ClaimOutcome::Failed,
                };
                out.push(outcome);
            }
            self.shared.counters.add(Write::KeysCreated(created));
            // A short response (should not happen) leaves the rest to be retried.
            out.resize(before + chunk.len(), ClaimOutcome::Failed);
        }
        out
    }

    async fn release(&self, ips: &[IpAddr]) -> Result<(), BackendError> {
        let lease = self.shared.lease.load(Ordering::Relaxed);
        let Some(client) = self.client.as_ref().filter(|_| lease != 0) else {
            return Err(BackendError::NoLease);
        };
        let mut client = client.clone();
        for chunk in ips.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|ip| {
                    let key = group_key(&self.cfg.prefix, *ip);
                    // Only delete our own claim: it may have expired and been re-won.
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
                            .and_then([TxnOp::delete(key, None)]),
                    )
                })
                .collect();
            self.shared.counters.add(Write::Txn);
            client
                .txn(Txn::new().and_then(ops))
                .await
                .map_err(|source| BackendError::Etcd {
                    op: "release",
                    source,
                })?;
        }
        Ok(())
    }

    async fn revoke(&self) -> Result<(), BackendError> {
        if let Some(h) = &self.keepalive {
            h.abort();
        }
        let lease = self.shared.lease.swap(0, Ordering::Relaxed);
        let Some(client) = self.client.as_ref().filter(|_| lease != 0) else {
            return Err(BackendError::NoLease);
        };
        self.shared.counters.add(Write::Revoke);
        client
            .clone()
            .lease_revoke(lease)
            .await
            .map_err(|source| BackendError::Etcd {
                op: "lease revoke",
                source,
            })?;
        Ok(())
    }

    fn writes(&self) -> WriteStats {
        self.shared.counters.snapshot()
    }
}

/// Renews the node lease every retry period. Declares it lost when no renewal succeeded
/// within the renew deadline (measured from when the last acknowledged request was *sent*,
/// so the server's TTL never outlives our belief), then tries to obtain a new one.
async fn keepalive_loop(
    mut client: Client,
    cfg: EtcdConfig,
    shared: Arc<Shared>,
    events: UnboundedSender<BackendEvent>,
) {
    let t = cfg.timings;
    let mut lease = shared.lease.load(Ordering::Relaxed);
    let mut last_ok = Instant::now();
    let mut live = lease != 0;
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut tick = tokio::time::interval(t.retry_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !live {
            match grant_and_register(&mut client, &cfg, &shared).await {
                Ok(id) => {
                    info!(node = %cfg.node, lease = id, "node lease re-granted");
                    lease = id;
                    last_ok = Instant::now();
                    live = true;
                    stream = None;
                    in_flight.clear();
                    if events.send(BackendEvent::LeaseAcquired).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "lease grant failed; retrying");
                    sleep(t.retry_period).await;
                }
            }
            continue;
        }
        let deadline = renewal_deadline(last_ok, t.renew_deadline);
        tokio::select! {
            () = sleep_until_or_never(deadline) => {
                warn!(node = %cfg.node, lease, "node lease not renewed within the renew deadline");
                lose(&shared, &events, &mut live);
            }
            _ = tick.tick() => {
                match stream.as_mut() {
                    Some((keeper, _)) => {
                        shared.counters.add(Write::Keepalive);
                        in_flight.push_back(Instant::now());
                        if keeper.keep_alive().await.is_err() {
                            stream = None;
                        }
                    }
                    None => {
                        shared.counters.add(Write::Keepalive);
                        let sent = Instant::now();
                        match timeout(t.retry_period, client.lease_keep_alive(lease)).await {
                            // Opening the stream renews once and reads that response.
                            Ok(Ok(s)) => {
                                last_ok = sent;
                                in_flight.clear();
                                stream = Some(s);
                                let _ = events.send(BackendEvent::Renewed);
                            }
                            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                                warn!(node = %cfg.node, lease, error = %e, "node lease gone");
                                lose(&shared, &events, &mut live);
                            }
                            Ok(Err(e)) => debug!(error = %e, "keepalive stream failed"),
                            Err(_) => debug!("keepalive stream timed out"),
                        }
                    }
                }
            }
            msg = next_keepalive(&mut stream) => match msg {
                Some(ttl) if ttl > 0 => {
                    if let Some(sent) = in_flight.pop_front() {
                        last_ok = sent;
                    }
                    let _ = events.send(BackendEvent::Renewed);
                }
                Some(_) => {
                    warn!(node = %cfg.node, lease, "node lease expired");
                    lose(&shared, &events, &mut live);
                }
                None => {
                    stream = None;
                    in_flight.clear();
                }
            },
        }
        if events.is_closed() {
            return;
        }
    }
}

/// When the lease counts as lost without a renewal: `last_ok + renew_deadline`, or `None`
/// (never) when the clock cannot represent that instant. Timings are the caller's, and a
/// deadline of centuries must not panic the task (`Instant + Duration` does on overflow).
fn renewal_deadline(last_ok: Instant, renew_deadline: Duration) -> Option<Instant> {
    last_ok.checked_add(renew_deadline)
}

/// Sleeps until `deadline`; never returns for `None`.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn lose(shared: &Shared, events: &UnboundedSender<BackendEvent>, live: &mut bool) {
    *live = false;
    shared.lease.store(0, Ordering::Relaxed);
    // If the owner is gone there is nobody to tell; the loop ends on its next pass.
    let _ = events.send(BackendEvent::LeaseLost);
}

/// The TTL of the next keepalive response, or `None` when the stream ended or failed.
async fn next_keepalive(
    stream: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
) -> Option<i64> {
    match stream {
        Some((_, s)) => match s.message().await {
            Ok(Some(r)) => Some(r.ttl()),
            _ => None,
        },
        None => std::future::pending().await,
    }
}

/// Watches the prefix from `from_rev` and reports changes; on a compacted or broken watch,
/// re-lists and reports the full state.
async fn watch_loop(
    mut client: Client,
    cfg: EtcdConfig,
    shared: Arc<Shared>,
    mut from_rev: i64,
    mut known: BTreeSet<IpAddr>,
    mut members: BTreeSet<String>,
    events: UnboundedSender<BackendEvent>,
) {
    let mut need_list = false;
    loop {
        if need_list {
            match list(&mut client, &cfg, &shared, &mut known, &events).await {
                Ok((rev, m)) => {
                    from_rev = rev + 1;
                    need_list = false;
                    members = m;
                }
                Err(BackendError::ChannelClosed) => return,
                Err(e) => {
                    debug!(error = %e, "re-list failed");
                    sleep(cfg.timings.retry_period).await;
                    continue;
                }
            }
        }
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_rev);
        let mut ws = match client.watch(cfg.prefix.as_bytes(), Some(opts)).await {
            Ok(ws) => ws,
            Err(e) => {
                debug!(error = %e, "watch failed");
                sleep(cfg.timings.retry_period).await;
                continue;
            }
        };
        loop {
            let resp = match ws.message().await {
                Ok(Some(r)) => r,
                Ok(None) | Err(_) => break,
            };
            if resp.compact_revision() > 0 || resp.canceled() {
                warn!(
                    compact = resp.compact_revision(),
                    "watch cancelled; re-listing"
                );
                need_list = true;
                break;
            }
            let lease = shared.lease.load(Ordering::Relaxed);
            let mut members_changed = false;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                from_rev = from_rev.max(kv.mod_revision() + 1);
                let put = ev.event_type() == EventType::Put;
                match classify(&cfg.prefix, kv.key()) {
                    Some(KeyKind::Group(ip)) => {
                        let owner = if put {
                            known.insert(ip);
                            owner_of(kv, lease)
                        } else {
                            known.remove(&ip);
                            Owner::Free
                        };
                        let ev = BackendEvent::Observed {
                            ip,
                            owner,
                            revision: kv.mod_revision(),
                        };
                        if events.send(ev).is_err() {
                            return;
                        }
                    }
                    Some(KeyKind::Node(n)) => {
                        members_changed = true;
                        if put {
                            members.insert(n);
                        } else {
                            members.remove(&n);
                        }
                    }
                    None => {}
                }
            }
            if members_changed {
                let m = members.clone();
                if events.send(BackendEvent::Members(m)).is_err() {
                    return;
                }
            }
        }
        sleep(cfg.timings.retry_period.min(Duration::from_millis(200))).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_clock_is_never_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            renewal_deadline(now, Duration::from_secs(5)),
            Some(now + Duration::from_secs(5))
        );
        // 2^63 s and more: what `Instant + Duration` panics on.
        for huge in [Duration::from_secs(1 << 63), Duration::MAX] {
            assert_eq!(renewal_deadline(now, huge), None, "{huge:?}");
        }
    }
}
