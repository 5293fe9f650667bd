//! The pure half of FIB import: what the speaker wants installed, what the kernel has, and the
//! operations that bring the second in line with the first.
//!
//! Level-triggered: events only record the desired state and mark the prefix dirty; the plan
//! compares desired with installed per prefix when the batch is cut. A prefix that changes ten
//! times while a batch is in flight costs one kernel operation, and re-learning a route that
//! survived a restart unchanged costs none.

use std::collections::{HashMap, HashSet, VecDeque};

use ipnet::IpNet;

use super::FibNextHop;

/// What the kernel holds for one of our prefixes (as far as we know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Sorted, without duplicates.
    pub next_hops: Vec<FibNextHop>,
    /// The route's priority (metric): part of the kernel's route key, so a delete must name it.
    pub metric: u32,
}

/// One kernel operation, for one prefix. A batch never holds two operations for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibOp {
    /// Install or replace the route (`RTM_NEWROUTE` with `NLM_F_CREATE | NLM_F_REPLACE`).
    Replace {
        prefix: IpNet,
        next_hops: Vec<FibNextHop>,
        metric: u32,
        /// The route is installed with this other metric (an earlier run's configuration): it
        /// is a different kernel route, so it is deleted first, in the same batch.
        delete_metric: Option<u32>,
    },
    /// Remove the route (`RTM_DELROUTE`).
    Delete { prefix: IpNet, metric: u32 },
}

impl FibOp {
    /// The prefix the operation is about.
    pub fn prefix(&self) -> IpNet {
        match self {
            FibOp::Replace { prefix, .. } | FibOp::Delete { prefix, .. } => *prefix,
        }
    }
}

/// How a kernel operation ended, as far as the table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpOutcome {
    Done,
    /// A delete found nothing to delete: someone else removed it; the goal is reached.
    AlreadyGone,
    /// The kernel refused (unreachable next hop, ...); retried on the next retry tick.
    Failed,
}

/// Counters, for logs and the query API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FibStats {
    /// Routes we believe are in the kernel now.
    pub installed: usize,
    /// Of those, adopted from a previous run and not yet confirmed by the speaker.
    pub stale: usize,
    /// Successful install/replace operations since start.
    pub replaced: u64,
    /// Successful deletes since start.
    pub deleted: u64,
    /// Operations the kernel refused since start.
    pub failures: u64,
}

/// Desired vs installed state with a dirty queue.
#[derive(Debug)]
pub struct FibTable {
    metric: u32,
    desired: HashMap<IpNet, Vec<FibNextHop>>,
    installed: HashMap<IpNet, Installed>,
    /// Adopted at start-up, not (yet) re-learned: kept until [`FibTable::sync_done`].
    stale: HashSet<IpNet>,
    /// FIFO of prefixes to reconcile; `queued` dedupes it.
    dirty: VecDeque<IpNet>,
    queued: HashSet<IpNet>,
    failed: HashSet<IpNet>,
    stats: FibStats,
}

impl FibTable {
    /// An empty table whose routes are installed with `metric`.
    pub fn new(metric: u32) -> Self {
        Self {
            metric,
            desired: HashMap::new(),
            installed: HashMap::new(),
            stale: HashSet::new(),
            dirty: VecDeque::new(),
            queued: HashSet::new(),
            failed: HashSet::new(),
            stats: FibStats::default(),
        }
    }

    fn mark(&mut self, prefix: IpNet) {
        if self.queued.insert(prefix) {
            self.dirty.push_back(prefix);
        }
    }

    /// A route of ours found in the kernel at start-up (graceful restart, RFC 4724 §4.1: the
    /// forwarding state is kept while we restart). With `keep_stale` it stays until the speaker
    /// re-learns it or declares the initial sync done; otherwise it is deleted at once.
    pub fn adopt(&mut self, prefix: IpNet, mut route: Installed, keep_stale: bool) {
        normalize(&mut route.next_hops);
        self.installed.insert(prefix, route);
        if keep_stale {
            self.stale.insert(prefix);
        } else {
            self.mark(prefix);
        }
    }

    /// The best path of `prefix` now has these next hops (empty = no path: withdraw).
    pub fn set(&mut self, prefix: IpNet, mut next_hops: Vec<FibNextHop>) {
        if next_hops.is_empty() {
            self.withdraw(prefix);
            return;
        }
        normalize(&mut next_hops);
        self.stale.remove(&prefix);
        self.desired.insert(prefix, next_hops);
        self.mark(prefix);
    }

    /// `prefix` has no best path any more.
    pub fn withdraw(&mut self, prefix: IpNet) {
        self.stale.remove(&prefix);
        self.desired.remove(&prefix);
        self.mark(prefix);
    }

    /// The speaker finished its initial sync (End-of-RIB from every peer, or the restart timer
    /// ran out): adopted routes that were not re-learned are deleted (RFC 4724 §4.1).
    pub fn sync_done(&mut self) {
        let stale: Vec<IpNet> = self.stale.drain().collect();
        for prefix in stale {
            self.mark(prefix);
        }
    }

    /// Forget every desired route so the next batches delete everything installed.
    pub fn remove_all(&mut self) {
        self.desired.clear();
        self.stale.clear();
        let all: Vec<IpNet> = self.installed.keys().copied().collect();
        for prefix in all {
            self.mark(prefix);
        }
    }

    /// Queue the prefixes whose last operation failed again.
    pub fn retry_failed(&mut self) {
        let failed: Vec<IpNet> = self.failed.drain().collect();
        for prefix in failed {
            self.mark(prefix);
        }
    }

    /// True when nothing is queued.
    pub fn is_idle(&self) -> bool {
        self.dirty.is_empty()
    }

    /// Prefixes that failed and wait for a retry.
    pub fn failed_count(&self) -> usize {
        self.failed.len()
    }

    /// The next operations to send, at most `max` (one per prefix). Prefixes already in the
    /// desired state are dropped from the queue without an operation.
    pub fn next_batch(&mut self, max: usize) -> Vec<FibOp> {
        let mut ops = Vec::new();
        while ops.len() < max {
            let Some(prefix) = self.dirty.pop_front() else {
                break;
            };
            self.queued.remove(&prefix);
            if let Some(op) = self.plan(prefix) {
                ops.push(op);
            }
        }
        ops
    }

    fn plan(&self, prefix: IpNet) -> Option<FibOp> {
        let installed = self.installed.get(&prefix);
        match self.desired.get(&prefix) {
            Some(want) => match installed {
                Some(have) if have.next_hops == *want && have.metric == self.metric => None,
                _ => Some(FibOp::Replace {
                    prefix,
                    next_hops: want.clone(),
                    metric: self.metric,
                    delete_metric: installed.map(|i| i.metric).filter(|m| *m != self.metric),
                }),
            },
            // Stale routes stay until the sync is done (or they are re-learned or withdrawn).
            None if self.stale.contains(&prefix) => None,
            None => installed.map(|have| FibOp::Delete {
                prefix,
                metric: have.metric,
            }),
        }
    }

    /// Record how `op` ended.
    pub fn complete(&mut self, op: FibOp, outcome: OpOutcome) {
        let prefix = op.prefix();
        match (op, outcome) {
            (
                FibOp::Replace {
                    next_hops, metric, ..
                },
                OpOutcome::Done | OpOutcome::AlreadyGone,
            ) => {
                self.failed.remove(&prefix);
                self.installed
                    .insert(prefix, Installed { next_hops, metric });
                self.stats.replaced += 1;
            }
            (FibOp::Delete { .. }, OpOutcome::Done | OpOutcome::AlreadyGone) => {
                self.failed.remove(&prefix);
                self.installed.remove(&prefix);
                self.stats.deleted += 1;
            }
            (_, OpOutcome::Failed) => {
                self.failed.insert(prefix);
                self.stats.failures += 1;
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> FibStats {
        FibStats {
            installed: self.installed.len(),
            stale: self.stale.len(),
            ..self.stats
        }
    }

    /// What we believe the kernel holds for `prefix`.
    pub fn installed(&self, prefix: &IpNet) -> Option<&Installed> {
        self.installed.get(prefix)
    }
}

fn normalize(next_hops: &mut Vec<FibNextHop>) {
    next_hops.sort_unstable();
    next_hops.dedup();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn nh(s: &str) -> FibNextHop {
        FibNextHop::from(s.parse::<IpAddr>().unwrap())
    }
    fn ack_all(t: &mut FibTable) -> Vec<FibOp> {
        let ops = t.next_batch(usize::MAX);
        for op in &ops {
            t.complete(op.clone(), OpOutcome::Done);
        }
        ops
    }

    #[test]
    fn install_replace_withdraw() {
        let mut t = FibTable::new(20);
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.1")]);
        let ops = ack_all(&mut t);
        assert_eq!(
            ops,
            vec![FibOp::Replace {
                prefix: p("10.0.0.0/24"),
                next_hops: vec![nh("192.0.2.1")],
                metric: 20,
                delete_metric: None
            }]
        );
        // Same next hops in another order: nothing to do.
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.1"), nh("192.0.2.1")]);
        assert!(ack_all(&mut t).is_empty());
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.2"), nh("192.0.2.1")]);
        let ops = ack_all(&mut t);
        assert!(
            matches!(&ops[..], [FibOp::Replace { next_hops, .. }] if next_hops.len() == 2),
            "{ops:?}"
        );
        t.set(p("10.0.0.0/24"), vec![]);
        assert_eq!(
            ack_all(&mut t),
            vec![FibOp::Delete {
                prefix: p("10.0.0.0/24"),
                metric: 20
            }]
        );
        assert_eq!(t.stats().installed, 0);
    }

    #[test]
    fn changes_coalesce_per_prefix() {
        let mut t = FibTable::new(20);
        for i in 1..=10 {
            t.set(p("10.0.0.0/24"), vec![nh(&format!("192.0.2.{i}"))]);
        }
        t.set(p("10.0.1.0/24"), vec![nh("192.0.2.1")]);
        t.withdraw(p("10.0.1.0/24"));
        let ops = ack_all(&mut t);
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert!(
            matches!(&ops[0], FibOp::Replace { next_hops, .. } if next_hops == &[nh("192.0.2.10")])
        );
    }

    #[test]
    fn withdraw_of_unknown_prefix_is_a_no_op() {
        let mut t = FibTable::new(20);
        t.withdraw(p("10.0.0.0/24"));
        assert!(ack_all(&mut t).is_empty());
    }

    #[test]
    fn stale_routes_live_until_sync_done() {
        let mut t = FibTable::new(20);
        let old = Installed {
            next_hops: vec![nh("192.0.2.1")],
            metric: 20,
        };
        t.adopt(p("10.0.0.0/24"), old.clone(), true);
        t.adopt(p("10.0.1.0/24"), old.clone(), true);
        t.adopt(p("10.0.2.0/24"), old.clone(), true);
        assert!(ack_all(&mut t).is_empty());
        assert_eq!(t.stats().stale, 3);
        // Re-learned unchanged: adopted without touching the kernel.
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.1")]);
        // Re-learned with another next hop: replaced.
        t.set(p("10.0.1.0/24"), vec![nh("192.0.2.9")]);
        let ops = ack_all(&mut t);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].prefix(), p("10.0.1.0/24"));
        t.sync_done();
        assert_eq!(
            ack_all(&mut t),
            vec![FibOp::Delete {
                prefix: p("10.0.2.0/24"),
                metric: 20
            }]
        );
        assert_eq!(t.stats().installed, 2);
        assert_eq!(t.stats().stale, 0);
    }

    #[test]
    fn clean_startup_deletes_leftovers() {
        let mut t = FibTable::new(20);
        let old = Installed {
            next_hops: vec![nh("192.0.2.1")],
            metric: 7,
        };
        t.adopt(p("10.0.0.0/24"), old, false);
        assert_eq!(
            ack_all(&mut t),
            vec![FibOp::Delete {
                prefix: p("10.0.0.0/24"),
                metric: 7
            }]
        );
    }

    #[test]
    fn metric_change_deletes_the_old_route() {
        let mut t = FibTable::new(20);
        let old = Installed {
            next_hops: vec![nh("192.0.2.1")],
            metric: 7,
        };
        t.adopt(p("10.0.0.0/24"), old, true);
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.1")]);
        let ops = ack_all(&mut t);
        assert!(
            matches!(
                &ops[..],
                [FibOp::Replace {
                    delete_metric: Some(7),
                    metric: 20,
                    ..
                }]
            ),
            "{ops:?}"
        );
    }

    #[test]
    fn failures_are_retried() {
        let mut t = FibTable::new(20);
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.1")]);
        for op in t.next_batch(10) {
            t.complete(op, OpOutcome::Failed);
        }
        assert!(t.is_idle());
        assert_eq!(t.failed_count(), 1);
        assert_eq!(t.stats().installed, 0);
        t.retry_failed();
        assert_eq!(ack_all(&mut t).len(), 1);
        assert_eq!(t.failed_count(), 0);
        assert_eq!(t.stats().installed, 1);
    }

    #[test]
    fn remove_all_deletes_everything_including_stale() {
        let mut t = FibTable::new(20);
        t.set(p("10.0.0.0/24"), vec![nh("192.0.2.1")]);
        ack_all(&mut t);
        t.adopt(
            p("10.0.9.0/24"),
            Installed {
                next_hops: vec![nh("192.0.2.1")],
                metric: 20,
            },
            true,
        );
        t.remove_all();
        let ops = ack_all(&mut t);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|o| matches!(o, FibOp::Delete { .. })));
        assert_eq!(t.stats().installed, 0);
    }

    #[test]
    fn batches_are_bounded_and_fifo() {
        let mut t = FibTable::new(20);
        for i in 0..10u8 {
            t.set(p(&format!("10.0.{i}.0/24")), vec![nh("192.0.2.1")]);
        }
        let first = t.next_batch(4);
        assert_eq!(first.len(), 4);
        assert_eq!(first[0].prefix(), p("10.0.0.0/24"));
        assert_eq!(t.next_batch(100).len(), 6);
    }
}
