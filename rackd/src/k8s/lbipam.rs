//! LB-IPAM on Kubernetes: allocation runs in exactly one rackd, the Lease's holder.
//!
//! - **Leader.** Each term starts a fresh allocator (the node's state from an earlier term
//!   may be stale: another node led since) that adopts every address already in a
//!   Service's status, so a new leader changes no IP; then it allocates as on plain Linux,
//!   and [`super::status::StatusWriter`] writes the results. The Services' status is the
//!   durable record, so the local journal of a term is scratch.
//! - **Follower.** Allocates nothing and publishes no address of its own: BGP, L2 and the
//!   service datapath take every Service's addresses from its status
//!   ([`crate::lbipam_ctl::service_addresses`]), where the leader wrote them.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::info;

use super::lease::Leadership;
use crate::config::ConfigState;
use crate::controller::{Context, Controller, Outcome};
use crate::lbipam_ctl::{LbError, LbIpamController, LbStatus};
use crate::metrics::Metrics;

/// See the module docs.
#[derive(Debug)]
pub struct ClusterLbIpam {
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    /// The allocator of the current term, and the term.
    inner: Option<(u64, LbIpamController)>,
    tx: watch::Sender<Arc<LbStatus>>,
}

/// Errors of the leader-gated controller.
#[derive(Debug, thiserror::Error)]
pub enum ClusterLbError {
    #[error(transparent)]
    Lb(#[from] LbError),
    #[error("preparing LB-IPAM's scratch state for a new term")]
    State(#[from] crate::state::StateError),
}

impl ClusterLbIpam {
    /// A controller keeping its per-term scratch state under `state_dir/k8s-lbipam`.
    pub fn new(
        state_dir: &std::path::Path,
        metrics: Arc<Metrics>,
    ) -> (Self, watch::Receiver<Arc<LbStatus>>) {
        let (tx, rx) = watch::channel(Arc::new(LbStatus::default()));
        (
            Self {
                state_dir: state_dir.join("k8s-lbipam"),
                metrics,
                inner: None,
                tx,
            },
            rx,
        )
    }
}

impl Controller for ClusterLbIpam {
    const NAME: &'static str = "lbipam";
    type Inputs = (
        watch::Receiver<Arc<ConfigState>>,
        watch::Receiver<Leadership>,
    );
    type Error = ClusterLbError;

    async fn reconcile(
        &mut self,
        (cfg, lead): &(Arc<ConfigState>, Leadership),
        ctx: Context,
    ) -> Result<Outcome, ClusterLbError> {
        if !cfg.loaded {
            return Ok(Outcome::WAITING);
        }
        if lead.valid_at(Instant::now()) {
            if self.inner.as_ref().map(|(t, _)| *t) != Some(lead.term) {
                // A new term: start from the API's record alone.
                let _ = std::fs::remove_dir_all(&self.state_dir);
                std::fs::create_dir_all(&self.state_dir).map_err(|source| {
                    crate::state::StateError::CreateDir {
                        path: self.state_dir.clone(),
                        source,
                    }
                })?;
                let c = LbIpamController::open_with(
                    &self.state_dir,
                    self.metrics.clone(),
                    self.tx.clone(),
                )?;
                info!(
                    term = lead.term,
                    "LB-IPAM: leading; allocator rebuilt from Services' status"
                );
                self.inner = Some((lead.term, c));
            }
            if let Some((_, c)) = &mut self.inner {
                return Ok(c.reconcile(cfg, ctx).await?);
            }
            return Ok(Outcome::DONE);
        }
        if self.inner.take().is_some() {
            info!("LB-IPAM: no longer leading; addresses come from Services' status");
        }
        // A follower publishes nothing of its own: the last term's services, pools and
        // conditions all go.
        self.tx.send_if_modified(|s| {
            let stale = !(s.ready
                && s.settled
                && s.services.is_empty()
                && s.ips.is_empty()
                && s.pools.is_empty()
                && s.conditions.is_empty());
            if stale {
                *s = Arc::new(LbStatus {
                    ready: true,
                    settled: true,
                    ..LbStatus::default()
                });
            }
            stale
        });
        Ok(Outcome::DONE)
    }

    fn conditions(&self) -> Arc<[rackd_model::rackd_types::ObjectCondition]> {
        self.inner
            .as_ref()
            .map_or_else(|| Arc::from([]), |(_, c)| c.conditions())
    }
}
