//! Configuration: sources hand over typed per-object changes, one task applies them to the
//! incremental last-good merge ([`rackd_model::Store`]) and publishes the result.
//!
//! ```text
//!  ConfigSource (DirSource; Kubernetes later) ──Batch{per-object changes, health}──▶ config task
//!                                                                                      │ Store::apply
//!  controllers ◀── watch<Arc<ConfigState>> (snapshot: O(1) clone, diffed per controller) ┘
//! ```
//!
//! A source reports its own health; the task turns a source that cannot be read into one
//! log line, a metric and a condition per change of state, and keeps the last good
//! configuration meanwhile.

pub mod combined;
pub mod dir;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use rackd_model::rackd_types::condition::{reasons, types};
use rackd_model::rackd_types::{Condition, ObjectCondition};
use rackd_model::{CheckOptions, ConfigError, Snapshot, SourceUpdate, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::metrics::Metrics;

/// Whether a source as a whole can be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    Ok,
    /// It cannot be read now (why); the last good configuration stays in force.
    Unavailable { reason: String },
}

/// What a source hands over: per-object changes, and its health when that changed.
#[derive(Debug, Default)]
pub struct Batch {
    pub updates: Vec<SourceUpdate>,
    /// `Some` when the source's health changed (and on its first batch).
    pub health: Option<Health>,
}

/// A configuration source.
pub trait ConfigSource: Send + 'static {
    /// How `rackctl status` names it (`dir:/etc/rackd`).
    fn describe(&self) -> String;

    /// Waits for the next changes and returns them. The first call returns the whole
    /// initial content at once (possibly nothing), so the daemon knows the first load is
    /// complete. Later calls return only when something changed, including the source's
    /// health; a source that cannot be read is reported once per change of state and never
    /// makes this return in a loop. Cancel-safe.
    fn next(&mut self) -> impl Future<Output = Batch> + Send;
}

/// The configuration as the controllers see it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    /// Applied changes so far (`rackctl status`' config generation).
    pub revision: u64,
    /// The first load is complete.
    pub loaded: bool,
    pub snapshot: Snapshot,
    /// Every current configuration error.
    pub errors: Arc<[ConfigError]>,
    /// `dir:/etc/rackd`.
    pub source: String,
    pub health: Health,
}

impl ConfigState {
    /// The errors and the source's health as conditions, per object.
    pub fn conditions(&self) -> Vec<ObjectCondition> {
        let mut out: Vec<ObjectCondition> = self.errors.iter().map(|e| e.condition()).collect();
        if let Health::Unavailable { reason } = &self.health {
            out.push(ObjectCondition {
                object: None,
                source: Some(self.source.clone()),
                condition: Condition::problem(
                    types::SOURCE_UNAVAILABLE,
                    reasons::FAILED,
                    reason.clone(),
                ),
            });
        }
        out
    }

    /// Number of problems `rackctl status` counts: errors, plus an unreadable source.
    pub fn problem_count(&self) -> usize {
        self.errors.len() + usize::from(self.health != Health::Ok)
    }
}

/// Runs `source` into a new store until `stop`; returns the state channel at once.
pub fn spawn(
    mut source: impl ConfigSource,
    opts: CheckOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> (
    watch::Receiver<Arc<ConfigState>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Arc::new(ConfigState {
        source: source.describe(),
        ..ConfigState::default()
    }));
    let task = tokio::spawn(async move {
        let mut store = Store::new(opts);
        let mut logged: BTreeSet<String> = BTreeSet::new();
        loop {
            let batch = tokio::select! {
                () = stop.cancelled() => return,
                b = source.next() => b,
            };
            let t0 = tokio::time::Instant::now();
            let prev = tx.borrow().clone();
            let n_updates = batch.updates.len();
            let applied = store.apply(batch.updates);
            let health = batch.health.unwrap_or_else(|| prev.health.clone());
            if !applied.changes.is_empty() {
                metrics.config_applies.inc();
            }
            let health_changed = health != prev.health;
            if applied.changes.is_empty()
                && !applied.errors_changed
                && !health_changed
                && prev.loaded
            {
                continue;
            }
            let errors: Arc<[ConfigError]> = if applied.errors_changed || !prev.loaded {
                store.errors().into()
            } else {
                prev.errors.clone()
            };
            // Each error is logged when it appears and once when it goes, not on every load.
            let now: BTreeSet<String> = errors.iter().map(ToString::to_string).collect();
            for e in now.difference(&logged) {
                error!(error = %e, "configuration error");
            }
            for e in logged.difference(&now) {
                info!(error = %e, "configuration error resolved");
            }
            logged = now;
            metrics
                .config_errors
                .set(i64::try_from(errors.len()).unwrap_or(i64::MAX));
            metrics
                .config_source_up
                .set(i64::from(health == Health::Ok));
            let state = ConfigState {
                revision: prev.revision + u64::from(!applied.changes.is_empty()),
                loaded: true,
                snapshot: store.snapshot().clone(),
                errors,
                source: prev.source.clone(),
                health,
            };
            info!(
                sources = n_updates,
                changed = applied.changes.len(),
                objects = state.snapshot.len(),
                errors = state.errors.len(),
                apply_us = t0.elapsed().as_micros() as u64,
                "configuration applied"
            );
            tx.send_replace(Arc::new(state));
        }
    });
    (rx, task)
}

/// A source that yields batches pushed through a channel: for tests and for embedding
/// (every change is applied through the same store as the directory's).
#[derive(Debug)]
pub struct ChannelSource {
    name: String,
    rx: tokio::sync::mpsc::UnboundedReceiver<Batch>,
}

impl ChannelSource {
    /// A source named `name` and the sender that feeds it.
    pub fn new(name: impl Into<String>) -> (tokio::sync::mpsc::UnboundedSender<Batch>, Self) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            tx,
            Self {
                name: name.into(),
                rx,
            },
        )
    }
}

impl ConfigSource for ChannelSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn next(&mut self) -> Batch {
        match self.rx.recv().await {
            Some(b) => b,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut watch::Receiver<Arc<ConfigState>>) -> Arc<ConfigState> {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.changed())
            .await
            .unwrap()
            .unwrap();
        rx.borrow_and_update().clone()
    }

    /// A source that becomes unreadable: one state change (condition, metric), the last good
    /// objects kept; readable again: the condition and the metric clear.
    #[tokio::test]
    async fn source_health_is_a_condition_and_a_metric() {
        let metrics = Metrics::new();
        let (tx, source) = ChannelSource::new("test:src");
        let stop = CancellationToken::new();
        let (mut rx, task) = spawn(
            source,
            CheckOptions::default(),
            metrics.clone(),
            stop.clone(),
        );
        let parsed = rackd_model::parse_documents(
            "a.yaml",
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  blocks: [{cidr: 10.9.0.0/24}]\n",
        );
        let (u, _) = rackd_model::SourceContent::default().update_to(&parsed);
        tx.send(Batch {
            updates: vec![u],
            health: Some(Health::Ok),
        })
        .unwrap();
        let s = next(&mut rx).await;
        assert!(s.loaded && s.conditions().is_empty());
        assert_eq!((s.revision, s.snapshot.len()), (1, 1));
        assert!(metrics.render().contains("rackd_config_source_up 1"));

        tx.send(Batch {
            updates: Vec::new(),
            health: Some(Health::Unavailable {
                reason: "permission denied".into(),
            }),
        })
        .unwrap();
        let s = next(&mut rx).await;
        let c = s.conditions();
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].condition.type_, types::SOURCE_UNAVAILABLE);
        assert_eq!(c[0].source.as_deref(), Some("test:src"));
        assert_eq!(s.snapshot.len(), 1, "the last good configuration stays");
        assert_eq!(s.problem_count(), 1);
        assert!(metrics.render().contains("rackd_config_source_up 0"));

        tx.send(Batch {
            updates: Vec::new(),
            health: Some(Health::Ok),
        })
        .unwrap();
        let s = next(&mut rx).await;
        assert!(s.conditions().is_empty());
        assert!(metrics.render().contains("rackd_config_source_up 1"));
        stop.cancel();
        task.await.unwrap();
    }
}
