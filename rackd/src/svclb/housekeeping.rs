//! Beside the controller: garbage collection of expired flows and the datapath's counters
//! (the egress gateway's too, when it is on) into metrics, every few seconds, through an
//! [`LbReader`] opened from the pins (the controller's maps and programs are not touched, so
//! neither waits for the other), and the CT/NAT listings of the admin API through the same
//! reader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datapath::lb::LbReader;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SvcStatus;
use crate::metrics::Metrics;

/// The reader, shared by the housekeeping task and the admin API (each use is a short
/// blocking call on a blocking thread).
pub type SharedReader = Arc<Mutex<LbReader>>;

/// Runs `f` on the reader on a blocking thread.
pub async fn with_reader<T: Send + 'static>(
    reader: &SharedReader,
    f: impl FnOnce(&mut LbReader) -> Result<T, datapath::Error> + Send + 'static,
) -> Result<T, String> {
    let r = reader.clone();
    tokio::task::spawn_blocking(move || {
        let mut g = r.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g).map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Every `interval` until `stop`: collect expired CT and NAT entries, then publish the
/// counters.
pub fn spawn(
    reader: SharedReader,
    status: watch::Receiver<Arc<SvcStatus>>,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // The egress series exist only where the egress gateway runs, as Cilium's.
            let egress_on = status.borrow().egress.is_some();
            let r = with_reader(&reader, move |r| {
                let gc = r.gc(datapath::sys::monotonic_ns())?;
                let egress = egress_on.then(|| r.egress_counters()).transpose()?;
                Ok((gc, r.counters()?, egress))
            })
            .await;
            match r {
                Ok((gc, counters, egress)) => {
                    metrics.lb_gc_deleted.inc_by(gc.ct_deleted + gc.nat_deleted);
                    let labels = super::views::frontend_labels(&status.borrow().clone());
                    metrics.set_lb(&counters, &labels);
                    if let Some(e) = &egress {
                        metrics.set_egress(e);
                    }
                }
                Err(e) => warn!(error = %e, "service datapath housekeeping failed"),
            }
        }
    })
}
