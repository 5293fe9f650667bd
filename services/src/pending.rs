//! A plan whose Maglev tables are still being computed, and the pipeline that applies it.
//!
//! A full programming of 27,000 Services at M = 16381 is seconds of table computation and
//! seconds of map writes (system calls on the writing thread); one after the other they
//! added up. Here the tables are computed on other threads from the moment the planner has
//! decided enough of them ([`Tables::push`], while it goes on planning), in the plan's order,
//! and [`PendingPlan::apply_each`] writes the operations meanwhile, taking each table when
//! it reaches its service upsert (the backends, written first, need none).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rackd_types::maglev::MaglevTable;

use crate::maglev::{MaglevBackend, MaglevConfig, lookup_table};
use crate::plan::{Op, Plan, PlanFailure};

/// Below this many tables, the writing thread computes each as it reaches it (threads cost
/// more than they save).
pub(crate) const PARALLEL_TABLES: usize = 64;

/// Tables a computing thread takes at a time: small enough that the writer waits little
/// for the first, large enough that handing them over costs nothing.
const CHUNK: usize = 32;

/// The plan refused frontends with more backends than a table holds, the only error.
fn table(cfg: &MaglevConfig, input: &[MaglevBackend]) -> Arc<MaglevTable> {
    Arc::new(lookup_table(cfg, input).unwrap_or_default())
}

/// A chunk of inputs, shared with the thread computing it (and kept, so its tables can be
/// computed here should that thread fail).
type Inputs = Arc<[Vec<MaglevBackend>]>;

/// The tables of a plan being made, in the order of its service upserts.
#[derive(Debug)]
pub(crate) struct Tables {
    maglev: MaglevConfig,
    /// Inputs not handed over yet.
    buffered: Vec<Vec<MaglevBackend>>,
    /// Every chunk handed over, in order.
    chunks: Vec<Inputs>,
    /// Running once [`PARALLEL_TABLES`] inputs were pushed (and there is a second core).
    workers: Option<Workers>,
}

#[derive(Debug)]
struct Workers {
    /// Closed when the plan is made: the threads end when the queue is empty.
    jobs: Option<mpsc::Sender<(usize, Inputs)>>,
    done: mpsc::Receiver<(usize, Vec<Arc<MaglevTable>>)>,
    handles: Vec<JoinHandle<()>>,
}

impl Tables {
    pub(crate) fn new(maglev: MaglevConfig) -> Self {
        Self {
            maglev,
            buffered: Vec::new(),
            chunks: Vec::new(),
            workers: None,
        }
    }

    /// The next service upsert's input.
    pub(crate) fn push(&mut self, input: Vec<MaglevBackend>) {
        self.buffered.push(input);
        if self.workers.is_none()
            && self.buffered.len() + self.chunks.len() * CHUNK >= PARALLEL_TABLES
        {
            self.workers = self.start();
        }
        if self.workers.is_some() && self.buffered.len() >= CHUNK {
            self.hand_over();
        }
    }

    /// Threads on every core but none on a single one (the writer computes there).
    fn start(&self) -> Option<Workers> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if threads < 2 {
            return None;
        }
        let (jobs, queue) = mpsc::channel::<(usize, Inputs)>();
        let queue = Arc::new(Mutex::new(queue));
        let (results, done) = mpsc::channel();
        let maglev = self.maglev;
        let handles = (0..threads)
            .filter_map(|i| {
                let (queue, results) = (queue.clone(), results.clone());
                std::thread::Builder::new()
                    .name(format!("maglev-{i}"))
                    .spawn(move || {
                        loop {
                            // The lock is only held to take a job; a poisoned one means a
                            // sibling panicked, and this thread stops too.
                            let job = match queue.lock() {
                                Ok(q) => q.recv(),
                                Err(_) => break,
                            };
                            let Ok((c, inputs)) = job else { break };
                            let tables = inputs.iter().map(|b| table(&maglev, b)).collect();
                            if results.send((c, tables)).is_err() {
                                break; // the plan was dropped
                            }
                        }
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        (!handles.is_empty()).then_some(Workers {
            jobs: Some(jobs),
            done,
            handles,
        })
    }

    fn hand_over(&mut self) {
        let inputs: Inputs = std::mem::take(&mut self.buffered).into();
        let c = self.chunks.len();
        self.chunks.push(inputs.clone());
        if let Some(jobs) = self.workers.as_ref().and_then(|w| w.jobs.as_ref()) {
            // A send fails only when every thread is gone: the writer computes the chunk.
            let _ = jobs.send((c, inputs));
        }
    }

    /// Threads are computing.
    #[cfg(test)]
    pub(crate) fn started(&self) -> bool {
        self.workers.is_some()
    }

    /// Every input pushed: the last chunk goes, the queue closes.
    fn finish(&mut self) {
        if self.workers.is_some() && !self.buffered.is_empty() {
            self.hand_over();
        }
        if let Some(w) = &mut self.workers {
            w.jobs = None;
        }
    }

    /// How many inputs were pushed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() + self.buffered.len()
    }
}

/// [`crate::plan::Planner::plan_pending`]'s result: the operations in order, every service
/// upsert's table being computed.
#[derive(Debug)]
pub struct PendingPlan {
    /// In order; service upserts carry an empty table until theirs is taken.
    pub(crate) ops: Vec<Op>,
    /// One per service upsert, in the order of `ops`.
    pub(crate) tables: Tables,
    /// Frontends left out (their previous state, if any, stays programmed).
    pub failures: Vec<PlanFailure>,
}

impl PendingPlan {
    pub(crate) fn new(ops: Vec<Op>, mut tables: Tables, failures: Vec<PlanFailure>) -> Self {
        tables.finish();
        Self {
            ops,
            tables,
            failures,
        }
    }

    /// How many operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// No operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Every table taken, the plan whole.
    pub fn complete(self) -> Plan {
        let failures = self.failures.clone();
        let mut ops = Vec::with_capacity(self.ops.len());
        let done: Result<(), std::convert::Infallible> = self.apply_each(|op| {
            ops.push(op);
            Ok(())
        });
        match done {
            Ok(()) => Plan { ops, failures },
        }
    }

    /// Calls `apply` on each operation in order, each service upsert with its table, taken
    /// from the computing threads (waiting when `apply` catches up with them) or computed
    /// here when there are none. Stops at `apply`'s first error and returns it (the threads
    /// stop after the tables they are computing).
    pub fn apply_each<E>(self, mut apply: impl FnMut(Op) -> Result<(), E>) -> Result<(), E> {
        let PendingPlan {
            ops, mut tables, ..
        } = self;
        let maglev = tables.maglev;
        let (done, handles) = match tables.workers.take() {
            Some(w) => (Some(w.done), w.handles),
            None => (None, Vec::new()),
        };
        let mut taken = Taken {
            done,
            early: BTreeMap::new(),
            chunks: tables.chunks.into_iter(),
            current: None,
            next_chunk: 0,
            buffered: tables.buffered.into_iter(),
        };
        let mut result = Ok(());
        for mut op in ops {
            if let Op::UpsertService { value, .. } = &mut op
                && let Some(t) = taken.next(&maglev)
            {
                value.lut = t;
            }
            if let Err(e) = apply(op) {
                result = Err(e);
                break;
            }
        }
        // Closing the results channel stops the threads after their current chunk.
        drop(taken);
        for h in handles {
            // A panicked thread's tables were computed here; nothing else to recover.
            let _ = h.join();
        }
        result
    }
}

/// The tables taken in the plan's order, whatever order the chunks arrive in.
struct Taken {
    done: Option<mpsc::Receiver<(usize, Vec<Arc<MaglevTable>>)>>,
    /// Chunks that arrived before the ones ahead of them.
    early: BTreeMap<usize, Vec<Arc<MaglevTable>>>,
    /// The inputs of every chunk handed over, in order.
    chunks: std::vec::IntoIter<Inputs>,
    /// The chunk being taken: its tables, or its inputs when no thread computed it.
    current: Option<Current>,
    next_chunk: usize,
    /// Inputs never handed over (no threads): computed here.
    buffered: std::vec::IntoIter<Vec<MaglevBackend>>,
}

enum Current {
    Computed(std::vec::IntoIter<Arc<MaglevTable>>),
    Here(Inputs, usize),
}

impl Taken {
    /// The next service upsert's table.
    fn next(&mut self, maglev: &MaglevConfig) -> Option<Arc<MaglevTable>> {
        loop {
            match &mut self.current {
                Some(Current::Computed(it)) => {
                    if let Some(t) = it.next() {
                        return Some(t);
                    }
                }
                Some(Current::Here(inputs, k)) => {
                    if let Some(input) = inputs.get(*k) {
                        *k += 1;
                        return Some(table(maglev, input));
                    }
                }
                None => {}
            }
            let Some(inputs) = self.chunks.next() else {
                return self.buffered.next().map(|b| table(maglev, &b));
            };
            let c = self.next_chunk;
            self.next_chunk += 1;
            self.current = Some(match self.wait_for(c) {
                Some(tables) if tables.len() == inputs.len() => {
                    Current::Computed(tables.into_iter())
                }
                // No thread is left to send it (one panicked): computed here.
                _ => Current::Here(inputs, 0),
            });
        }
    }

    fn wait_for(&mut self, c: usize) -> Option<Vec<Arc<MaglevTable>>> {
        loop {
            if let Some(t) = self.early.remove(&c) {
                return Some(t);
            }
            let (got, tables) = self.done.as_ref()?.recv().ok()?;
            self.early.insert(got, tables);
        }
    }
}
