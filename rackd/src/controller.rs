//! Controllers: one task each, level-triggered, in the shape of kube-rs' runtime.
//!
//! A [`Controller`] reads its inputs (watch channels: the configuration, LB-IPAM's
//! allocations, host facts, ...) through an [`Inputs`] bundle and brings the world in line with
//! them in [`Controller::reconcile`]: idempotent (the same input again changes nothing),
//! incremental where it pays (it keeps what it saw last and works on the difference), with a
//! periodic full pass as the safety net. The [`spawn`]ed runner owns the loop: it waits for any
//! input to change, for a requeue the controller asked for, for its backoff after an error, or
//! for the next full resync; it counts runs, errors and durations, and publishes the
//! controller's [`RunState`] (for readiness, the watchdog and `rackctl status`). What a
//! controller produces for others it publishes itself, through `watch` channels it owns, so
//! readers never wait behind a reconcile.
//!
//! Adding a controller is a module implementing the trait plus one [`Controllers::spawn`] line.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackd_model::rackd_types::ObjectCondition;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span};

use crate::metrics::{ControllerLabels, Metrics};

/// What a reconcile asks of the runner besides the usual triggers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Run again after this long even if no input changes (a timer the controller keeps).
    pub requeue_after: Option<Duration>,
    /// Its inputs are not complete yet (the configuration not loaded, LB-IPAM not settled):
    /// the run applied nothing, so it does not count as synced (readiness waits for a run
    /// that applied them).
    pub waiting: bool,
}

impl Outcome {
    /// Nothing more to do until an input changes.
    pub const DONE: Outcome = Outcome {
        requeue_after: None,
        waiting: false,
    };

    /// The inputs are not complete yet: nothing applied, not synced; runs again on a change.
    pub const WAITING: Outcome = Outcome {
        requeue_after: None,
        waiting: true,
    };

    /// Run again after `d`.
    pub fn requeue(d: Duration) -> Outcome {
        Outcome {
            requeue_after: Some(d),
            waiting: false,
        }
    }
}

/// What the runner tells a reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// A full pass is due (the periodic resync, or the first run): recompute everything
    /// rather than only what changed.
    pub full: bool,
    /// When this run started.
    pub now: Instant,
}

/// A controller; see the module docs.
pub trait Controller: Send + 'static {
    /// Its name in logs, metrics and `rackctl status` (`lbipam`, `bgp`, `l2announcer`).
    const NAME: &'static str;
    /// What it reads.
    type Inputs: Inputs;
    /// Why a reconcile failed; it is retried with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Brings the world in line with `input`.
    fn reconcile(
        &mut self,
        input: &<Self::Inputs as Inputs>::Value,
        ctx: Context,
    ) -> impl Future<Output = Result<Outcome, Self::Error>> + Send;

    /// Problems the controller found with the objects it reads, as conditions of those
    /// objects; published after every run (`rackctl status` lists them per object).
    fn conditions(&self) -> Arc<[ObjectCondition]> {
        Arc::from([])
    }

    /// Called once when the runner stops (before the daemon stops the next controller).
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A set of watched inputs.
pub trait Inputs: Send + 'static {
    /// What a reconcile sees: the current value of every input.
    type Value: Send + Sync + 'static;

    /// Resolves when any input changed since the last [`Inputs::current`]; pending forever
    /// once every sender is gone (the stop token ends the runner).
    fn changed(&mut self) -> impl Future<Output = ()> + Send;

    /// The current values, marking them seen.
    fn current(&mut self) -> Self::Value;
}

async fn changed_or_pending<T: Send + Sync>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl<A: Clone + Send + Sync + 'static> Inputs for watch::Receiver<A> {
    type Value = A;

    async fn changed(&mut self) {
        changed_or_pending(self).await;
    }

    fn current(&mut self) -> A {
        self.borrow_and_update().clone()
    }
}

/// `Inputs` for a tuple of `watch` receivers: a change of any wakes the controller, which then
/// sees all current values.
macro_rules! tuple_inputs {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> Inputs for ($(watch::Receiver<$t>,)+)
        where
            $($t: Clone + Send + Sync + 'static,)+
        {
            type Value = ($($t,)+);

            async fn changed(&mut self) {
                // Each branch is cancel-safe: the ones that lose the race keep their change
                // for next time.
                tokio::select! {
                    $(() = changed_or_pending(&mut self.$i) => {})+
                }
            }

            fn current(&mut self) -> Self::Value {
                ($(self.$i.borrow_and_update().clone(),)+)
            }
        }
    };
}

tuple_inputs!(A 0, B 1);
tuple_inputs!(A 0, B 1, C 2);
tuple_inputs!(A 0, B 1, C 2, D 3);
tuple_inputs!(A 0, B 1, C 2, D 3, E 4);
tuple_inputs!(A 0, B 1, C 2, D 3, E 4, F 5);

/// Exponential backoff after failed reconciles: 100 ms doubling to 30 s, reset by a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next retry (and double it for the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// How a controller's runner is doing, published after every run.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    /// Runs so far.
    pub runs: u64,
    /// Runs that failed so far.
    pub errors: u64,
    /// At least one run succeeded (the controller has applied its inputs once).
    pub synced: bool,
    /// The last run's error, if it failed (with its causes).
    pub last_error: Option<String>,
    /// When the run in progress started (`None`: waiting for work).
    pub busy_since: Option<Instant>,
    /// The controller's [`Controller::conditions`] after its last run.
    pub conditions: Arc<[ObjectCondition]>,
}

/// The runner's settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Longest time between two full passes.
    pub resync: Duration,
    pub backoff: Backoff,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A running controller.
#[derive(Debug)]
pub struct Handle {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<()>,
    state: watch::Receiver<RunState>,
}

impl Handle {
    /// The controller's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its run state.
    pub fn state(&self) -> watch::Receiver<RunState> {
        self.state.clone()
    }

    /// Stops it (after the run in progress) and waits for its `shutdown`.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Starts `c` on `inputs`; see the module docs.
pub fn spawn<C: Controller>(
    mut c: C,
    mut inputs: C::Inputs,
    opts: RunOptions,
    metrics: Arc<Metrics>,
) -> Handle {
    let stop = CancellationToken::new();
    let (state_tx, state) = watch::channel(RunState::default());
    let token = stop.clone();
    let labels = ControllerLabels {
        controller: C::NAME.into(),
    };
    let task = tokio::spawn(
        async move {
            let mut backoff = opts.backoff.clone();
            let mut due: Option<Instant> = None;
            let mut next_full = Instant::now();
            let mut first = true;
            loop {
                if !first {
                    let wait_until = |d: Option<Instant>| async move {
                        match d {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    };
                    let resync = next_full;
                    tokio::select! {
                        biased;
                        () = token.cancelled() => break,
                        () = inputs.changed() => {}
                        () = wait_until(due) => {}
                        () = tokio::time::sleep_until(resync) => {}
                    }
                }
                first = false;
                let input = inputs.current();
                let now = Instant::now();
                let full = now >= next_full;
                state_tx.send_modify(|s| s.busy_since = Some(now));
                let result = c.reconcile(&input, Context { full, now }).await;
                let took = now.elapsed();
                let conditions = c.conditions();
                metrics.reconcile_runs.get_or_create(&labels).inc();
                metrics
                    .reconcile_duration
                    .get_or_create(&labels)
                    .observe(took.as_secs_f64());
                if full {
                    next_full = now + opts.resync;
                }
                match result {
                    Ok(o) => {
                        backoff.reset();
                        due = o.requeue_after.map(|d| Instant::now() + d);
                        debug!(took_ms = took.as_millis() as u64, full, "reconciled");
                        state_tx.send_modify(|s| {
                            s.runs += 1;
                            s.synced |= !o.waiting;
                            s.last_error = None;
                            s.busy_since = None;
                            s.conditions = conditions;
                        });
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        due = Some(Instant::now() + delay);
                        metrics.reconcile_errors.get_or_create(&labels).inc();
                        let text = error_chain(&e);
                        error!(error = %text, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
                        state_tx.send_modify(|s| {
                            s.runs += 1;
                            s.errors += 1;
                            s.last_error = Some(text);
                            s.busy_since = None;
                            s.conditions = conditions;
                        });
                    }
                }
            }
            c.shutdown().await;
        }
        .instrument(info_span!("controller", name = C::NAME)),
    );
    Handle {
        name: C::NAME,
        stop,
        task,
        state,
    }
}

/// The daemon's running controllers, in start order.
#[derive(Debug)]
pub struct Controllers {
    metrics: Arc<Metrics>,
    opts: RunOptions,
    handles: Vec<Handle>,
}

impl Controllers {
    /// No controllers yet.
    pub fn new(metrics: Arc<Metrics>, opts: RunOptions) -> Self {
        Self {
            metrics,
            opts,
            handles: Vec::new(),
        }
    }

    /// Starts `c` on `inputs` and keeps its handle; returns its run state.
    pub fn spawn<C: Controller>(&mut self, c: C, inputs: C::Inputs) -> watch::Receiver<RunState> {
        let h = spawn(c, inputs, self.opts.clone(), self.metrics.clone());
        let state = h.state();
        self.handles.push(h);
        state
    }

    /// Every controller's name and run state.
    pub fn states(&self) -> Vec<(&'static str, watch::Receiver<RunState>)> {
        self.handles.iter().map(|h| (h.name(), h.state())).collect()
    }

    /// A shared view of the run states, for the admin API and the watchdog.
    pub fn watcher(&self) -> RunStates {
        RunStates(Arc::new(Mutex::new(self.states())))
    }

    /// Stops every controller, the last started first (L2 hands its addresses over before
    /// BGP withdraws anything, BGP before LB-IPAM), each after the run in progress.
    pub async fn stop(self) {
        for h in self.handles.into_iter().rev() {
            h.stop().await;
        }
    }
}

/// A controller's name and run state.
type Named = (&'static str, watch::Receiver<RunState>);

/// Every controller's run state (cloneable).
#[derive(Debug, Clone, Default)]
pub struct RunStates(Arc<Mutex<Vec<Named>>>);

impl RunStates {
    /// The current state of each controller.
    pub fn snapshot(&self) -> Vec<(&'static str, RunState)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, rx)| (*n, rx.borrow().clone()))
            .collect()
    }

    /// Every controller's conditions.
    pub fn conditions(&self) -> Vec<ObjectCondition> {
        self.snapshot()
            .into_iter()
            .flat_map(|(_, s)| s.conditions.iter().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Whether every controller has applied its inputs at least once.
    pub fn all_synced(&self) -> bool {
        self.snapshot().iter().all(|(_, s)| s.synced)
    }

    /// The controllers busy in one run for longer than `limit` (a wedged reconcile).
    pub fn stuck(&self, limit: Duration) -> Vec<&'static str> {
        let now = Instant::now();
        self.snapshot()
            .into_iter()
            .filter(|(_, s)| s.busy_since.is_some_and(|t| now.duration_since(t) > limit))
            .map(|(n, _)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failing on purpose")]
    struct Boom;

    /// Records every input it reconciled; fails while the input is odd.
    struct Recorder {
        seen: Arc<Mutex<Vec<(u32, bool)>>>,
    }

    impl Controller for Recorder {
        const NAME: &'static str = "recorder";
        type Inputs = watch::Receiver<u32>;
        type Error = Boom;

        async fn reconcile(&mut self, input: &u32, ctx: Context) -> Result<Outcome, Boom> {
            self.seen.lock().unwrap().push((*input, ctx.full));
            if input % 2 == 1 {
                Err(Boom)
            } else {
                Ok(Outcome::DONE)
            }
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_on_change_retries_with_backoff_and_resyncs() {
        let (tx, rx) = watch::channel(0u32);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let h = spawn(
            Recorder { seen: seen.clone() },
            rx,
            RunOptions {
                resync: Duration::from_secs(60),
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            },
            Metrics::new(),
        );
        settle().await;
        assert_eq!(*seen.lock().unwrap(), vec![(0, true)], "first run is full");
        assert!(h.state().borrow().synced);
        // An error is retried after 100, 200, 400 ms ...
        tx.send(1).unwrap();
        settle().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
        tokio::time::advance(Duration::from_millis(200)).await;
        settle().await;
        assert_eq!(seen.lock().unwrap().len(), 4, "{:?}", seen.lock().unwrap());
        assert_eq!(h.state().borrow().errors, 3);
        // ... until the input is good again, which resets the backoff and stops retries.
        tx.send(2).unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(seen.lock().unwrap().last(), Some(&(2, false)));
        let n = seen.lock().unwrap().len();
        assert_eq!(n, 5, "no retry after a success");
        // Nothing changes: the periodic full pass still comes.
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(seen.lock().unwrap().last(), Some(&(2, true)));
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_and_stuck_detection() {
        struct Slow;
        impl Controller for Slow {
            const NAME: &'static str = "slow";
            type Inputs = watch::Receiver<u32>;
            type Error = Boom;
            async fn reconcile(&mut self, input: &u32, _: Context) -> Result<Outcome, Boom> {
                if *input == 1 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok(Outcome::requeue(Duration::from_secs(1)))
            }
        }
        let (tx, rx) = watch::channel(0u32);
        let mut set = Controllers::new(Metrics::new(), RunOptions::default());
        let state = set.spawn(Slow, rx);
        let states = set.watcher();
        settle().await;
        assert!(states.all_synced());
        tokio::time::advance(Duration::from_millis(1500)).await;
        settle().await;
        assert_eq!(state.borrow().runs, 2, "requeued after 1 s");
        assert!(states.stuck(Duration::from_secs(10)).is_empty());
        tx.send(1).unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(states.stuck(Duration::from_secs(10)), vec!["slow"]);
    }
}
