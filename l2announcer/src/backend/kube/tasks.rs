//! The Kubernetes backend's two tasks: renewing this node's Lease (and fencing when renewals
//! stop succeeding) and watching the namespace's node Leases and claims.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc::UnboundedSender, oneshot};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until};
use tracing::{debug, info, warn};

use super::view::{self, SELECTOR};
use super::{KubeConfig, Shared, bounded, epoch_of, micro_now, status};
use crate::backend::{BackendError, BackendEvent, Counters, Write};

/// (Re)acquires this node's Lease: creates it, or takes the existing one (left by an earlier
/// run or lost) with `leaseTransitions` + 1, which invalidates every claim made under an
/// earlier acquisition. One write, counted as a grant.
pub(super) async fn acquire(
    api: &Api<Lease>,
    cfg: &KubeConfig,
    name: &str,
    counters: &Counters,
) -> Result<Lease, BackendError> {
    let limit = cfg.request_timeout;
    let current = bounded("get node lease", limit, api.get_opt(name)).await?;
    let now = micro_now();
    let spec = |transitions: i32| LeaseSpec {
        holder_identity: Some(cfg.node.clone()),
        lease_duration_seconds: Some(cfg.lease_secs()),
        acquire_time: Some(now.clone()),
        renew_time: Some(now.clone()),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let meta = |rv: Option<String>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(BTreeMap::from([(
            view::LABEL.to_owned(),
            "node".to_owned(),
        )])),
        resource_version: rv,
        ..ObjectMeta::default()
    };
    let next = current.as_ref().map(|l| {
        l.spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0)
            .checked_add(1)
    });
    counters.add(Write::Grant);
    match (current, next) {
        (Some(l), Some(Some(transitions))) => {
            let l = Lease {
                metadata: meta(l.metadata.resource_version),
                spec: Some(spec(transitions)),
            };
            bounded(
                "take node lease",
                limit,
                api.replace(name, &PostParams::default(), &l),
            )
            .await
        }
        (Some(l), _) => {
            // The epoch cannot grow any more: a new object (new UID) is a new epoch too.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: l.metadata.resource_version,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            bounded("delete node lease", limit, api.delete(name, &dp)).await?;
            Err(BackendError::BadObject {
                what: "node Lease at the largest epoch (deleted; retrying)",
            })
        }
        (None, _) => {
            let l = Lease {
                metadata: meta(None),
                spec: Some(spec(0)),
            };
            bounded(
                "create node lease",
                limit,
                api.create(&PostParams::default(), &l),
            )
            .await
        }
    }
}

/// Renews the node Lease every retry period (one update, whatever the number of groups).
/// Declares it lost when no renewal succeeded within the renew deadline, measured from when
/// the last successful request was *sent*: others wait `leaseDurationSeconds` from when they
/// *saw* that write, which is later, so this node has stopped answering before anyone may
/// take over (client-go's rule). Then re-acquires it, which starts a new epoch.
pub(super) async fn renew_loop(
    api: Api<Lease>,
    cfg: KubeConfig,
    name: String,
    shared: Arc<Shared>,
    lease: Lease,
    acquired_at: Instant,
    events: UnboundedSender<BackendEvent>,
) {
    let t = cfg.timings;
    let mut held = Some(lease);
    let mut last_ok = acquired_at;
    let mut tick = interval(t.retry_period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate; the acquisition just renewed.
    tick.tick().await;
    loop {
        if events.is_closed() {
            return;
        }
        let Some(current) = held.clone() else {
            let sent = Instant::now();
            match acquire(&api, &cfg, &name, &shared.counters).await {
                Ok(l) => match epoch_of(&l) {
                    Some(e) => {
                        info!(node = %cfg.node, epoch = e.transitions, "node Lease re-acquired");
                        shared.epoch.send_replace(Some(e));
                        held = Some(l);
                        last_ok = sent;
                        let _ = events.send(BackendEvent::LeaseAcquired);
                    }
                    None => sleep(t.retry_period).await,
                },
                Err(e) => {
                    debug!(error = %e, "re-acquiring the node Lease failed; retrying");
                    sleep(t.retry_period).await;
                }
            }
            continue;
        };
        let deadline = last_ok.checked_add(t.renew_deadline);
        tokio::select! {
            () = sleep_until_or_never(deadline) => {
                lose(&cfg, &shared, &events, &mut held);
                continue;
            }
            _ = tick.tick() => {}
        }
        let mut next = current.clone();
        if let Some(s) = next.spec.as_mut() {
            s.renew_time = Some(micro_now());
        }
        shared.counters.add(Write::Keepalive);
        let sent = Instant::now();
        // Never wait past the deadline: a hung request must not delay fencing.
        let limit = deadline
            .map(|d| d.saturating_duration_since(sent))
            .unwrap_or(cfg.request_timeout)
            .min(cfg.request_timeout);
        match bounded(
            "renew node lease",
            limit,
            api.replace(&name, &PostParams::default(), &next),
        )
        .await
        {
            Ok(l) => {
                held = Some(l);
                last_ok = sent;
                shared
                    .renewals
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                let _ = events.send(BackendEvent::Renewed);
            }
            Err(e) if status(&e).is_some_and(kube::core::Status::is_conflict) => {
                // Someone else wrote our Lease. Still ours at our epoch: adopt its version
                // (this renewal did not count); otherwise it is lost.
                match bounded("get node lease", limit, api.get_opt(&name)).await {
                    Ok(Some(l)) if same_acquisition(&l, &current, &cfg.node) => held = Some(l),
                    Ok(_) => lose(&cfg, &shared, &events, &mut held),
                    Err(e) => debug!(error = %e, "reading the node Lease failed"),
                }
            }
            Err(e) if status(&e).is_some_and(kube::core::Status::is_not_found) => {
                warn!(node = %cfg.node, "node Lease deleted by someone else");
                lose(&cfg, &shared, &events, &mut held);
            }
            Err(e) => debug!(error = %e, "renewing the node Lease failed"),
        }
    }
}

fn same_acquisition(now: &Lease, ours: &Lease, node: &str) -> bool {
    let holder = now.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
    holder == Some(node) && epoch_of(now).is_some() && epoch_of(now) == epoch_of(ours)
}

fn lose(
    cfg: &KubeConfig,
    shared: &Shared,
    events: &UnboundedSender<BackendEvent>,
    held: &mut Option<Lease>,
) {
    warn!(node = %cfg.node, "node Lease not renewed within the renew deadline: fencing");
    *held = None;
    shared
        .renewals
        .store(0, std::sync::atomic::Ordering::Release);
    shared.epoch.send_replace(None);
    let _ = events.send(BackendEvent::LeaseLost);
}

/// Sleeps until `deadline`; never returns for `None` (a deadline past what the clock holds).
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Watcher events taken in one go before the view is drained.
const BURST: usize = 4096;

/// Watches the namespace's node Leases and claims (label-selected) with kube-runtime's
/// watcher, keeps the view, and reports what changed. A relist (first start, `410 Gone`, a
/// broken watch) is buffered until complete and applied as a diff. Also wakes when a node
/// Lease expires by our observation, and when our own epoch changes.
pub(super) async fn watch_loop(
    api: Api<Lease>,
    shared: Arc<Shared>,
    events: UnboundedSender<BackendEvent>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut epoch_rx = shared.epoch.subscribe();
    shared.view().set_mine(epoch_rx.borrow_and_update().clone());
    let cfg = watcher::Config::default().labels(SELECTOR);
    let stream = watcher::watcher(api, cfg).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut relist: Option<Vec<Lease>> = None;
    let mut failing = false;
    loop {
        let next_expiry = shared.view().next_expiry().map(Instant::from_std);
        let mut batch = Vec::new();
        tokio::select! {
            item = stream.next() => match item {
                Some(item) => batch.push(item),
                None => return,
            },
            changed = epoch_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                shared.view().set_mine(epoch_rx.borrow_and_update().clone());
            }
            () = sleep_until_or_never(next_expiry) => {}
        }
        // Take what else is ready, so a burst is applied (and its claims sent) together.
        while batch.len() < BURST {
            match futures::FutureExt::now_or_never(stream.next()) {
                Some(Some(item)) => batch.push(item),
                Some(None) => return,
                None => break,
            }
        }
        let now = Instant::now().into_std();
        let mut synced_now = false;
        {
            let mut v = shared.view();
            for item in batch {
                match item {
                    Ok(ev) => {
                        if failing {
                            info!("Lease watch recovered");
                            failing = false;
                        }
                        match ev {
                            Event::Init => relist = Some(Vec::new()),
                            Event::InitApply(l) => match relist.as_mut() {
                                Some(buf) => buf.push(l),
                                None => v.apply(&l, now),
                            },
                            Event::InitDone => {
                                v.relist(&relist.take().unwrap_or_default(), now);
                                synced_now = true;
                            }
                            Event::Apply(l) => v.apply(&l, now),
                            Event::Delete(l) => v.delete(&l),
                        }
                    }
                    Err(e) => {
                        // The watcher retries with backoff; say so once per outage.
                        if !failing {
                            warn!(error = %e, "Lease watch failed; retrying");
                            failing = true;
                        } else {
                            debug!(error = %e, "Lease watch still failing");
                        }
                    }
                }
            }
            for ev in v.drain(now) {
                if events.send(ev).is_err() {
                    return;
                }
            }
        }
        if synced_now && let Some(r) = ready.take() {
            let _ = r.send(());
        }
    }
}
