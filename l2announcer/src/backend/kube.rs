//! The `kube` backend: `coordination.k8s.io/v1` Leases on a Kubernetes API server, keeping
//! rackd's O(nodes) design (not Cilium's one Lease per Service).
//!
//! Layout in one namespace (all objects are Leases, selected by the label `rackd.io/l2`):
//! - `rackd-l2-node-<node>` (`rackd.io/l2=node`): the node's liveness Lease, holder = node,
//!   renewed (one update) every retry period whatever the number of groups. Each
//!   (re)acquisition bumps `leaseTransitions`: that and the Lease's UID are the node's
//!   **epoch**.
//! - `rackd-l2-<ip>` (`rackd.io/l2=claim`; IPv4 `10-0-0-1`, IPv6 the eight groups in hex): one
//!   claim per IP group, holder = node, annotated with the IP and the holder's epoch. Created
//!   only if absent (POST; 409 AlreadyExists means someone has it). A claim is valid only while
//!   its holder's node Lease is live at the claim's epoch; an invalid claim is taken over with
//!   an update preconditioned on its `resourceVersion`, so exactly one contender wins.
//!
//! Liveness of other nodes is judged like client-go's leader election, from when this node
//! saw a node Lease's `resourceVersion` change (never from timestamps written by another
//! clock). When a holder's node Lease expires or is deleted, its claims are reported free, as
//! etcd deletes an expired lease's keys; a planned shutdown deletes the node Lease, so others
//! take over as soon as their watch shows the deletion. See the crate README.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::sync::{mpsc::UnboundedSender, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use super::{BackendError, BackendEvent, Counters, LeaseBackend, Write, WriteStats};
use crate::fsm::ClaimOutcome;
use crate::timing::LeaseTimings;

mod tasks;
mod view;

use view::{ClaimSeen, Epoch, NodeSeen, Parsed, Verdict, View};

/// Claim requests in flight at once, per node: enough to keep a loopback API server busy,
/// few enough that 27,000 claims at start do not swamp a small control plane.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// Configuration of the Kubernetes backend.
#[derive(Clone)]
pub struct KubeConfig {
    /// API client (its identity needs get/list/watch/create/update/delete on Leases in
    /// `namespace`).
    pub client: kube::Client,
    /// Namespace of the node Leases and claims.
    pub namespace: String,
    /// This node's name (holder identity; part of its node Lease's name).
    pub node: String,
    /// Lease timings (already sanitised). `leaseDurationSeconds` is the duration rounded up.
    pub timings: LeaseTimings,
    /// Claim, release and takeover requests in flight at once.
    pub max_in_flight: usize,
    /// Limit on each claim or release request (a hung API server must not hold the owning
    /// task for long).
    pub request_timeout: Duration,
}

impl KubeConfig {
    /// Configuration with [`DEFAULT_MAX_IN_FLIGHT`] and a 5 s request timeout.
    #[must_use]
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        node: impl Into<String>,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            node: node.into(),
            timings,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            request_timeout: Duration::from_secs(5),
        }
    }

    fn lease_secs(&self) -> i32 {
        i32::try_from(self.timings.ttl_secs()).unwrap_or(i32::MAX)
    }
}

impl std::fmt::Debug for KubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeConfig")
            .field("namespace", &self.namespace)
            .field("node", &self.node)
            .field("timings", &self.timings)
            .field("max_in_flight", &self.max_in_flight)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// State shared by the backend and its renew and watch tasks.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// Our current epoch; `None` while the node Lease is not held.
    epoch: watch::Sender<Option<Epoch>>,
    /// Renewals acknowledged under the current acquisition; zeroed *before* `LeaseLost` is
    /// sent, so a stamp taken from it never outlives the lease.
    renewals: std::sync::atomic::AtomicU64,
    view: Mutex<View>,
}

impl Shared {
    fn view(&self) -> MutexGuard<'_, View> {
        // A panic while holding the lock leaves a view that is still consistent enough to
        // read: every mutation is a map update.
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn epoch(&self) -> Option<Epoch> {
        self.epoch.borrow().clone()
    }
}

/// Kubernetes Lease backend. See the module documentation.
pub struct KubeBackend {
    cfg: KubeConfig,
    api: Api<Lease>,
    shared: Arc<Shared>,
    renew: Option<JoinHandle<()>>,
    watch: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBackend")
            .field("cfg", &self.cfg)
            .field("epoch", &self.shared.epoch())
            .finish_non_exhaustive()
    }
}

impl Drop for KubeBackend {
    fn drop(&mut self) {
        for h in [self.renew.take(), self.watch.take()].into_iter().flatten() {
            h.abort();
        }
    }
}

fn kube_err(op: &'static str) -> impl FnOnce(kube::Error) -> BackendError {
    move |source| BackendError::Kube { op, source }
}

/// Runs one API request under `limit`.
async fn bounded<T>(
    op: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, BackendError> {
    match timeout(limit, fut).await {
        Ok(r) => r.map_err(kube_err(op)),
        Err(_) => Err(BackendError::Timeout { op, after: limit }),
    }
}

/// The API status of a failed request (`None` for transport errors and timeouts).
fn status(e: &BackendError) -> Option<&kube::core::Status> {
    match e {
        BackendError::Kube {
            source: kube::Error::Api(s),
            ..
        } => Some(s),
        _ => None,
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn epoch_of(l: &Lease) -> Option<Epoch> {
    Some(Epoch {
        uid: l.metadata.uid.clone().filter(|u| !u.is_empty())?,
        transitions: l
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0),
    })
}

impl KubeBackend {
    /// A backend that acquires its node Lease on [`LeaseBackend::start`].
    #[must_use]
    pub fn new(cfg: KubeConfig) -> Self {
        let api = Api::namespaced(cfg.client.clone(), &cfg.namespace);
        let view = View::new(cfg.node.clone(), cfg.timings.lease_duration);
        Self {
            api,
            shared: Arc::new(Shared {
                counters: Counters::default(),
                epoch: watch::channel(None).0,
                renewals: std::sync::atomic::AtomicU64::new(0),
                view: Mutex::new(view),
            }),
            cfg,
            renew: None,
            watch: None,
        }
    }

    /// The current epoch of this node's Lease: (UID, `leaseTransitions`), `None` while it is
    /// not held.
    #[must_use]
    pub fn epoch(&self) -> Option<(String, i32)> {
        self.shared.epoch().map(|e| (e.uid, e.transitions))
    }

    /// Stops renewing the node Lease without deleting it, as a crashed node would: for fault
    /// injection in tests and benchmarks. Others take over once it has not changed for
    /// `leaseDurationSeconds` by their own clocks.
    pub fn stop_keepalive(&mut self) {
        if let Some(h) = self.renew.take() {
            h.abort();
        }
        // A crashed node stamps nothing more either.
        self.shared.renewals.store(0, Ordering::Release);
    }

    fn claim_lease(&self, ip: IpAddr, epoch: &Epoch, rv: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(view::claim_name(ip)),
                namespace: Some(self.cfg.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    view::LABEL.to_owned(),
                    "claim".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([
                    (view::ANN_IP.to_owned(), ip.to_string()),
                    (view::ANN_EPOCH.to_owned(), epoch.transitions.to_string()),
                    (view::ANN_NODE_UID.to_owned(), epoch.uid.clone()),
                ])),
                resource_version: rv,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.node.clone()),
                lease_duration_seconds: Some(self.cfg.lease_secs()),
                acquire_time: Some(micro_now()),
                ..LeaseSpec::default()
            }),
        }
    }

    fn is_mine(&self, c: &ClaimSeen, epoch: &Epoch) -> bool {
        c.holder == self.cfg.node && c.uid == epoch.uid && c.epoch == epoch.transitions
    }

    /// One group's claim: see the module documentation for the rules.
    async fn claim_one(&self, ip: IpAddr, epoch: &Epoch, batch: &Batch) -> ClaimOutcome {
        // Lost (or re-acquired) meanwhile, or the API server stopped answering: the rest of
        // the batch is left to the next tick.
        if batch.broken.load(Ordering::Relaxed) || self.shared.epoch().as_ref() != Some(epoch) {
            return ClaimOutcome::Failed;
        }
        let limit = self.cfg.request_timeout;
        // What the watch already knows spares a request (the owning task may not have
        // processed those events yet).
        let cached = self.shared.view().claim(ip).cloned();
        let existing = match cached {
            Some(c) => Existing::Claim(c),
            None => {
                self.shared.counters.add(Write::Txn);
                let l = self.claim_lease(ip, epoch, None);
                match bounded(
                    "create claim",
                    limit,
                    self.api.create(&PostParams::default(), &l),
                )
                .await
                {
                    Ok(l) => {
                        self.shared.counters.add(Write::KeysCreated(1));
                        return ClaimOutcome::Won {
                            revision: view::rv_of(&l).unwrap_or(0),
                        };
                    }
                    Err(e) if status(&e).is_some_and(|s| s.is_already_exists()) => {
                        match self.read_claim(ip).await {
                            Ok(Some(x)) => x,
                            Ok(None) => return ClaimOutcome::Failed,
                            Err(e) => return batch.fail(&e),
                        }
                    }
                    Err(e) => return batch.fail(&e),
                }
            }
        };
        let (c, rv) = match existing {
            Existing::Claim(c) => {
                if self.is_mine(&c, epoch) {
                    return ClaimOutcome::Won { revision: c.rv };
                }
                let now = Instant::now().into_std();
                let verdict = self.shared.view().verdict(&c, now);
                let dead = match verdict {
                    Verdict::Valid => false,
                    Verdict::Stale => true,
                    Verdict::Unsure => match batch.fresh_node(self, &c.holder).await {
                        Ok(fresh) => {
                            let seen = self.shared.view().node(&c.holder, now);
                            holder_dead(&c, fresh.as_ref(), seen)
                        }
                        Err(e) => return batch.fail(&e),
                    },
                };
                if !dead {
                    return ClaimOutcome::Held {
                        holder: c.holder,
                        revision: c.rv,
                    };
                }
                let rv = c.rv;
                (Some(c), rv)
            }
            Existing::Garbled(rv) => (None, rv),
        };
        // Take over: exactly one contender's update passes the precondition.
        self.shared.counters.add(Write::Txn);
        let l = self.claim_lease(ip, epoch, Some(rv.to_string()));
        match bounded(
            "take over claim",
            limit,
            self.api
                .replace(&view::claim_name(ip), &PostParams::default(), &l),
        )
        .await
        {
            Ok(l) => {
                self.shared.counters.add(Write::KeysCreated(1));
                if let Some(c) = c {
                    debug!(%ip, from = %c.holder, "took over an invalid claim");
                }
                ClaimOutcome::Won {
                    revision: view::rv_of(&l).unwrap_or(0),
                }
            }
            // Someone else took it (409) or it was deleted (404): the watch will say.
            Err(e) if status(&e).is_some() => ClaimOutcome::Failed,
            Err(e) => batch.fail(&e),
        }
    }

    /// Reads the claim object on `ip` (after a create found it present).
    async fn read_claim(&self, ip: IpAddr) -> Result<Option<Existing>, BackendError> {
        let name = view::claim_name(ip);
        let l = bounded(
            "get claim",
            self.cfg.request_timeout,
            self.api.get_opt(&name),
        )
        .await?;
        let Some(l) = l else { return Ok(None) };
        Ok(match view::parse(&l, self.cfg.timings.lease_duration) {
            Parsed::Claim(_, c) => Some(Existing::Claim(c)),
            // Ours by label and name, but unreadable: replaceable like an invalid claim.
            Parsed::BadClaim(_) => view::rv_of(&l).map(Existing::Garbled),
            _ => {
                warn!(%name, "a Lease without rackd's claim label sits at a claim's name");
                None
            }
        })
    }

    /// Deletes our claim on one group (only at our current epoch, preconditioned on its
    /// `resourceVersion`).
    async fn release_one(&self, ip: IpAddr, epoch: &Epoch) -> Result<(), BackendError> {
        let limit = self.cfg.request_timeout;
        let name = view::claim_name(ip);
        for _ in 0..2 {
            let cached = self.shared.view().claim(ip).cloned();
            let c = match cached {
                Some(c) => c,
                None => match self.read_claim(ip).await? {
                    Some(Existing::Claim(c)) => c,
                    _ => return Ok(()),
                },
            };
            if !self.is_mine(&c, epoch) {
                return Ok(());
            }
            self.shared.counters.add(Write::Txn);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(c.rv.to_string()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match bounded("release claim", limit, self.api.delete(&name, &dp)).await {
                Ok(_) => return Ok(()),
                Err(e) if status(&e).is_some_and(kube::core::Status::is_not_found) => {
                    return Ok(());
                }
                // Changed since we saw it: look again (once) from the API server.
                Err(e) if status(&e).is_some_and(kube::core::Status::is_conflict) => {
                    if let Some(Existing::Claim(c)) = self.read_claim(ip).await?
                        && self.is_mine(&c, epoch)
                    {
                        continue;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What sits at a claim's name.
enum Existing {
    Claim(ClaimSeen),
    /// Labelled as a claim but malformed, at this `resourceVersion`.
    Garbled(i64),
}

/// Whether a claim's holder is dead, given a fresh read of its node Lease (`None`: absent or
/// malformed) and this node's observation of it ((rv, live)). Errs towards alive: taking
/// over a live holder's group would make two nodes answer.
fn holder_dead(c: &ClaimSeen, fresh: Option<&NodeSeen>, seen: Option<(i64, bool)>) -> bool {
    match fresh {
        None => true,
        // Deleted and created again, or re-acquired, since the claim was made.
        Some(n) if n.uid != c.uid || n.transitions > c.epoch => true,
        Some(n) if n.transitions < c.epoch => false,
        // Same epoch: dead only if it has not changed since we saw it expire.
        Some(n) => matches!(seen, Some((rv, false)) if rv == n.rv),
    }
}

/// Per-`claim` call state: a circuit breaker and one fresh read per holder.
#[derive(Default)]
struct Batch {
    broken: AtomicBool,
    fresh: tokio::sync::Mutex<BTreeMap<String, Option<NodeSeen>>>,
}

impl Batch {
    /// A transport error or timeout stops the rest of the batch (each would wait the request
    /// timeout); an API error status concerns this group only.
    fn fail(&self, e: &BackendError) -> ClaimOutcome {
        if status(e).is_none() && !self.broken.swap(true, Ordering::Relaxed) {
            warn!(error = %e, "claim request failed; leaving the rest of the batch to the next tick");
        } else {
            debug!(error = %e, "claim request failed");
        }
        ClaimOutcome::Failed
    }

    /// The holder's node Lease as the API server has it now, read once per batch.
    async fn fresh_node(
        &self,
        b: &KubeBackend,
        holder: &str,
    ) -> Result<Option<NodeSeen>, BackendError> {
        let mut cache = self.fresh.lock().await;
        if let Some(n) = cache.get(holder) {
            return Ok(n.clone());
        }
        let Some(name) = view::node_lease_name(holder) else {
            return Ok(None);
        };
        let l = bounded(
            "get node lease",
            b.cfg.request_timeout,
            b.api.get_opt(&name),
        )
        .await?;
        let n = l.and_then(|l| match view::parse(&l, b.cfg.timings.lease_duration) {
            Parsed::Node(n) => Some(n),
            _ => None,
        });
        cache.insert(holder.to_owned(), n.clone());
        Ok(n)
    }
}

impl LeaseBackend for KubeBackend {
    fn node(&self) -> &str {
        &self.cfg.node
    }

    async fn start(&mut self, events: UnboundedSender<BackendEvent>) -> Result<(), BackendError> {
        for h in [self.renew.take(), self.watch.take()].into_iter().flatten() {
            h.abort();
        }
        let name =
            view::node_lease_name(&self.cfg.node).ok_or_else(|| BackendError::InvalidNodeName {
                node: self.cfg.node.clone(),
                name: format!("rackd-l2-node-{}", self.cfg.node),
            })?;
        *self.shared.view() = View::new(self.cfg.node.clone(), self.cfg.timings.lease_duration);
        let sent = Instant::now();
        let lease = tasks::acquire(&self.api, &self.cfg, &name, &self.shared.counters).await?;
        let epoch = epoch_of(&lease).ok_or(BackendError::BadObject {
            what: "node Lease without a UID",
        })?;
        info!(node = %self.cfg.node, uid = %epoch.uid, epoch = epoch.transitions, "node Lease acquired");
        self.shared.epoch.send_replace(Some(epoch));
        // The first listing is reported before LeaseAcquired, so the owning task knows the
        // existing claims before it claims anything.
        let (ready_tx, ready_rx) = oneshot::channel();
        self.watch = Some(tokio::spawn(tasks::watch_loop(
            self.api.clone(),
            Arc::clone(&self.shared),
            events.clone(),
            ready_tx,
        )));
        let wait = self.cfg.request_timeout.max(Duration::from_secs(30));
        match timeout(wait, ready_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(BackendError::ChannelClosed),
            Err(_) => {
                if let Some(h) = self.watch.take() {
                    h.abort();
                }
                return Err(BackendError::Timeout {
                    op: "initial list",
                    after: wait,
                });
            }
        }
        self.renew = Some(tokio::spawn(tasks::renew_loop(
            self.api.clone(),
            self.cfg.clone(),
            name,
            Arc::clone(&self.shared),
            lease,
            sent,
            events.clone(),
        )));
        events
            .send(BackendEvent::LeaseAcquired)
            .map_err(|_| BackendError::ChannelClosed)
    }

    async fn claim(&self, ips: &[IpAddr]) -> Vec<ClaimOutcome> {
        let Some(epoch) = self.shared.epoch() else {
            return vec![ClaimOutcome::Failed; ips.len()];
        };
        let batch = Batch::default();
        // `buffered` keeps the outcomes in the order of `ips`, at most `max_in_flight` at once.
        futures::stream::iter(ips.iter().copied())
            .map(|ip| self.claim_one(ip, &epoch, &batch))
            .buffered(self.cfg.max_in_flight.max(1))
            .collect()
            .await
    }

    async fn release(&self, ips: &[IpAddr]) -> Result<(), BackendError> {
        let Some(epoch) = self.shared.epoch() else {
            return Err(BackendError::NoLease);
        };
        let results: Vec<Result<(), BackendError>> = futures::stream::iter(ips.iter().copied())
            .map(|ip| self.release_one(ip, &epoch))
            .buffer_unordered(self.cfg.max_in_flight.max(1))
            .collect()
            .await;
        // The owning task retries every group of a failed release; deleting is idempotent.
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    async fn revoke(&self) -> Result<(), BackendError> {
        if let Some(h) = &self.renew {
            h.abort();
        }
        self.shared.renewals.store(0, Ordering::Release);
        let Some(epoch) = self.shared.epoch.send_replace(None) else {
            return Err(BackendError::NoLease);
        };
        let Some(name) = view::node_lease_name(&self.cfg.node) else {
            return Err(BackendError::NoLease);
        };
        self.shared.counters.add(Write::Revoke);
        // The UID, not the resourceVersion: an aborted renewal may still have landed.
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: None,
                uid: Some(epoch.uid),
            }),
            ..DeleteParams::default()
        };
        match bounded(
            "delete node lease",
            self.cfg.request_timeout,
            self.api.delete(&name, &dp),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e).is_some_and(kube::core::Status::is_not_found) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn writes(&self) -> WriteStats {
        self.shared.counters.snapshot()
    }

    /// 16 rounds of `max_in_flight` requests: a fraction of a second on a loopback API
    /// server, so a failover of thousands of groups announces as it goes.
    fn claim_chunk(&self) -> usize {
        self.cfg.max_in_flight.max(1).saturating_mul(16)
    }

    fn renewals(&self) -> Option<u64> {
        Some(self.shared.renewals.load(Ordering::Acquire))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claim(epoch: i32) -> ClaimSeen {
        ClaimSeen {
            holder: "a".into(),
            uid: "u1".into(),
            epoch,
            rv: 10,
        }
    }

    fn node(uid: &str, transitions: i32, rv: i64) -> NodeSeen {
        NodeSeen {
            holder: "a".into(),
            uid: uid.into(),
            transitions,
            rv,
            duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_holder_is_dead_only_when_sure() {
        let c = claim(3);
        // Node Lease gone, recreated (new UID) or re-acquired (later epoch).
        assert!(holder_dead(&c, None, None));
        assert!(holder_dead(&c, Some(&node("u2", 3, 50)), Some((40, true))));
        assert!(holder_dead(&c, Some(&node("u1", 4, 50)), Some((40, true))));
        // Same epoch: dead only if unchanged since we saw it expire.
        assert!(holder_dead(&c, Some(&node("u1", 3, 40)), Some((40, false))));
        assert!(!holder_dead(
            &c,
            Some(&node("u1", 3, 41)),
            Some((40, false))
        ));
        assert!(!holder_dead(&c, Some(&node("u1", 3, 40)), Some((40, true))));
        assert!(!holder_dead(&c, Some(&node("u1", 3, 40)), None));
        // A claim newer than the read (should not happen): alive.
        assert!(!holder_dead(
            &claim(5),
            Some(&node("u1", 3, 40)),
            Some((40, false))
        ));
    }
}
