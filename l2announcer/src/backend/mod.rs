//! Lease backends: node liveness (one lease per node) and atomic per-group claims.
//!
//! Every backend keeps rackd's O(nodes) rule: one liveness lease per node renewed every retry
//! period, and one claim per IP group naming the node whose lease it depends on, created only
//! if absent. `etcd` ties claims to the node lease's ID; `kube` (one `coordination.k8s.io`
//! Lease per node, one Lease per group) ties them to the node Lease's UID and epoch.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fsm::{ClaimOutcome, Owner};

pub mod etcd;
pub mod kube;
pub mod local;

pub use self::kube::{KubeBackend, KubeConfig};
pub use etcd::{EtcdBackend, EtcdConfig};
pub use local::LocalBackend;

/// Events a backend reports to the owning task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// The node lease is live (first grant or a new grant after a loss).
    LeaseAcquired,
    /// The node lease was not renewed within the renew deadline, or it expired.
    LeaseLost,
    /// A renewal was acknowledged: the owning task stamps the datapath liveness guard, so the
    /// datapath stops answering when renewals stop, however the node fails.
    Renewed,
    /// Nodes that hold a live node lease.
    Members(BTreeSet<String>),
    /// A group's claim changed (or was listed at start or resync).
    Observed {
        /// Group.
        ip: IpAddr,
        /// Owner at `revision`.
        owner: Owner,
        /// Datastore revision.
        revision: i64,
    },
}

/// Errors of lease backends.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Connecting to etcd failed.
    #[error("connecting to etcd at {endpoints:?}")]
    Connect {
        /// Endpoints tried.
        endpoints: Vec<String>,
        /// Cause.
        #[source]
        source: etcd_client::Error,
    },
    /// An etcd request failed.
    #[error("etcd {op} failed")]
    Etcd {
        /// Which request.
        op: &'static str,
        /// Cause.
        #[source]
        source: etcd_client::Error,
    },
    /// etcd granted a lease with a non-positive TTL.
    #[error("etcd granted lease with TTL {ttl}")]
    BadGrant {
        /// TTL returned.
        ttl: i64,
    },
    /// A Kubernetes API request failed (an error status or a transport error).
    #[error("Kubernetes API {op} failed")]
    Kube {
        /// Which request.
        op: &'static str,
        /// Cause.
        #[source]
        source: ::kube::Error,
    },
    /// A Kubernetes API request did not complete in time.
    #[error("Kubernetes API {op} timed out after {after:?}")]
    Timeout {
        /// Which request.
        op: &'static str,
        /// The limit.
        after: std::time::Duration,
    },
    /// The node name does not make a valid object name for its node Lease.
    #[error("node name {node:?} does not make a valid Lease name ({name:?})")]
    InvalidNodeName {
        /// The node.
        node: String,
        /// The Lease name it would give.
        name: String,
    },
    /// The API server answered with an object this backend cannot use.
    #[error("unusable {what} from the API server")]
    BadObject {
        /// What was wrong.
        what: &'static str,
    },
    /// The operation needs a live node lease.
    #[error("no live node lease")]
    NoLease,
    /// The owning task's event channel is closed.
    #[error("event channel closed")]
    ChannelClosed,
}

/// Datastore write counters (monotonic), so benchmarks can report writes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStats {
    /// Lease grants (etcd: lease grants; Kubernetes: node Lease creates and takeovers).
    pub grants: u64,
    /// Lease renewals (etcd: keepalive requests; Kubernetes: node Lease updates).
    pub keepalives: u64,
    /// Claim and release requests (etcd: transactions carrying up to 127 groups; Kubernetes:
    /// one create, update or delete of one claim each, there being no batched writes).
    pub txns: u64,
    /// Plain puts (membership keys).
    pub puts: u64,
    /// Lease revocations (Kubernetes: node Lease deletes).
    pub revokes: u64,
    /// Groups claimed successfully (keys created).
    pub keys_created: u64,
}

impl WriteStats {
    /// All write requests sent to the datastore.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.grants + self.keepalives + self.txns + self.puts + self.revokes
    }

    /// Each counter with its metric label: grant, keepalive, txn, put, revoke.
    #[must_use]
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("grant", self.grants),
            ("keepalive", self.keepalives),
            ("txn", self.txns),
            ("put", self.puts),
            ("revoke", self.revokes),
        ]
    }
}

/// Atomic write counters shared by a backend's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    grants: AtomicU64,
    keepalives: AtomicU64,
    txns: AtomicU64,
    puts: AtomicU64,
    revokes: AtomicU64,
    keys_created: AtomicU64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write {
    Grant,
    Keepalive,
    Txn,
    Put,
    Revoke,
    KeysCreated(u64),
}

impl Counters {
    pub(crate) fn add(&self, w: Write) {
        let (c, n) = match w {
            Write::Grant => (&self.grants, 1),
            Write::Keepalive => (&self.keepalives, 1),
            Write::Txn => (&self.txns, 1),
            Write::Put => (&self.puts, 1),
            Write::Revoke => (&self.revokes, 1),
            Write::KeysCreated(n) => (&self.keys_created, n),
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            grants: self.grants.load(Ordering::Relaxed),
            keepalives: self.keepalives.load(Ordering::Relaxed),
            txns: self.txns.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            revokes: self.revokes.load(Ordering::Relaxed),
            keys_created: self.keys_created.load(Ordering::Relaxed),
        }
    }
}

/// A lease backend: one liveness lease per node, and per-IP-group claims tied to it.
pub trait LeaseBackend: Send + Sync + 'static {
    /// This node's identity.
    fn node(&self) -> &str;

    /// Grants the node lease, lists existing claims and members, starts renewing and
    /// watching. Reports through `events`, ending with [`BackendEvent::LeaseAcquired`].
    fn start(
        &mut self,
        events: mpsc::UnboundedSender<BackendEvent>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Claims each group atomically against the node lease: created only if absent.
    /// Returns one outcome per IP, in order ([`ClaimOutcome::Failed`] on transport errors).
    fn claim(&self, ips: &[IpAddr]) -> impl Future<Output = Vec<ClaimOutcome>> + Send;

    /// Deletes this node's claims on these groups (only claims under its current lease).
    fn release(&self, ips: &[IpAddr]) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Revokes the node lease, dropping every claim at once, and stops renewing.
    fn revoke(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Write counters so far.
    fn writes(&self) -> WriteStats;

    /// Most groups the owning task hands to one [`LeaseBackend::claim`] call before it
    /// programs what that call won: a backend that writes one request per group bounds it, so
    /// the first groups of a large failover are announced before the last are claimed.
    fn claim_chunk(&self) -> usize {
        usize::MAX
    }

    /// How many renewals have succeeded so far under the current lease (0 while none is
    /// live), for the owning task to stamp the datapath guard between claim chunks of a long
    /// burst, when it cannot read events. `None`: not tracked (stamps wait for the events).
    fn renewals(&self) -> Option<u64> {
        None
    }

    /// Whether this backend reports [`BackendEvent::Renewed`]; if not, the owning task stamps
    /// the datapath liveness guard on its own ticks.
    fn reports_renewals(&self) -> bool {
        true
    }
}
