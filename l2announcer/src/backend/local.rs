//! The `local` backend: a single node that always holds every group it claims.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::mpsc;

use super::{BackendError, BackendEvent, LeaseBackend, WriteStats};
use crate::fsm::{ClaimOutcome, Owner};

/// Single-node backend without a datastore: claims always win, nothing is written.
#[derive(Debug)]
pub struct LocalBackend {
    node: String,
    revision: AtomicI64,
    events: Mutex<Option<mpsc::UnboundedSender<BackendEvent>>>,
}

impl LocalBackend {
    /// A local backend for `node`.
    #[must_use]
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            revision: AtomicI64::new(0),
            events: Mutex::new(None),
        }
    }

    fn next_rev(&self) -> i64 {
        self.revision.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn sender(&self) -> Option<mpsc::UnboundedSender<BackendEvent>> {
        self.events.lock().ok().and_then(|g| g.clone())
    }
}

impl LeaseBackend for LocalBackend {
    fn node(&self) -> &str {
        &self.node
    }

    async fn start(
        &mut self,
        events: mpsc::UnboundedSender<BackendEvent>,
    ) -> Result<(), BackendError> {
        if let Ok(mut g) = self.events.lock() {
            *g = Some(events.clone());
        }
        events
            .send(BackendEvent::Members([self.node.clone()].into()))
            .map_err(|_| BackendError::ChannelClosed)?;
        events
            .send(BackendEvent::LeaseAcquired)
            .map_err(|_| BackendError::ChannelClosed)
    }

    async fn claim(&self, ips: &[IpAddr]) -> Vec<ClaimOutcome> {
        ips.iter()
            .map(|_| ClaimOutcome::Won {
                revision: self.next_rev(),
            })
            .collect()
    }

    async fn release(&self, ips: &[IpAddr]) -> Result<(), BackendError> {
        // No watch here: report the deletions ourselves so the owner learns the group is free.
        if let Some(tx) = self.sender() {
            for ip in ips {
                let ev = BackendEvent::Observed {
                    ip: *ip,
                    owner: Owner::Free,
                    revision: self.next_rev(),
                };
                tx.send(ev).map_err(|_| BackendError::ChannelClosed)?;
            }
        }
        Ok(())
    }

    async fn revoke(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn writes(&self) -> WriteStats {
        WriteStats::default()
    }

    fn reports_renewals(&self) -> bool {
        false
    }
}
