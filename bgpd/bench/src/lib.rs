//! bgperf's method without Docker: a sender, the device under test and a receiver in three
//! network namespaces; the sender pushes a synthetic full table, the DUT re-advertises it, the
//! receiver timestamps the moment it holds every prefix. BIRD 2 and our speaker run in the same
//! roles, interleaved, in one invocation. See README.md.

pub mod bgp;
pub mod dut;
pub mod lab;
pub mod peers;
pub mod report;
pub mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use dut::DutKind;
pub use report::{Report, RunResult};
pub use workload::Workload;

use dut::Dut;
use lab::Lab;

/// Benchmark errors.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("lab setup")]
    Lab(#[from] netlab::Error),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Proc { path: String, detail: String },
    #[error("{role}: cannot {what}")]
    Peer {
        role: &'static str,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{role}: {detail}")]
    Handshake { role: &'static str, detail: String },
    #[error(
        "{dut} run {run}: {what} not reached within {timeout:?} (receiver: {seen}); DUT log tail:\n{log}"
    )]
    Timeout {
        dut: &'static str,
        run: usize,
        what: &'static str,
        timeout: Duration,
        seen: String,
        log: String,
    },
    #[error("{dut} run {run}: a peer thread panicked")]
    Panicked { dut: &'static str, run: usize },
    #[error("CPU clock of process {pid}")]
    CpuClock {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// The CPU readings of a run contradict each other: its CPU figures would be wrong.
    #[error("{dut} run {run}: CPU figures")]
    CpuAccounting {
        dut: &'static str,
        run: usize,
        #[source]
        source: dut::CpuAccountingError,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub workload: Workload,
    /// Runs per DUT (and of the sender ceiling); medians are reported.
    pub runs: usize,
    pub duts: Vec<DutKind>,
    /// Per-run limit for establishing and converging.
    pub timeout: Duration,
}

/// Builds the lab, measures the sender ceiling, the floor, the relay and every DUT `runs`
/// times (interleaved: ceiling, floor, relay, DUT A, DUT B, ceiling, ...), and returns every
/// run.
pub fn run(cfg: &BenchConfig, mut progress: impl FnMut(&RunResult)) -> Result<Report, BenchError> {
    let lab = Lab::new()?;
    let t = lab.topo;
    let table = workload::build(&cfg.workload, t.sender_as, t.sender);
    let mut report = Report::new(
        cfg.workload,
        table.bytes.len(),
        table.updates,
        table.used_sets,
    );
    report.machine = report::Machine::detect();
    for run in 0..cfg.runs {
        let start = report::RunStart::now();
        let mut r = ceiling(&lab, &table.bytes, run, cfg)?;
        r.start = start;
        progress(&r);
        report.runs.push(r);
        let start = report::RunStart::now();
        let mut r = floor(&lab, &table.bytes, run, cfg)?;
        r.start = start;
        progress(&r);
        report.runs.push(r);
        let start = report::RunStart::now();
        let mut r = relay(&lab, &table.bytes, run, cfg)?;
        r.start = start;
        progress(&r);
        report.runs.push(r);
        for kind in &cfg.duts {
            let start = report::RunStart::now();
            let mut r = one_run(&lab, kind, &table.bytes, run, cfg)?;
            r.start = start;
            progress(&r);
            report.runs.push(r);
        }
    }
    Ok(report)
}

/// The floor: the sender straight into the receiver's counting code, placed where the DUT
/// listens (one TCP hop, no speaker). A DUT's convergence cannot be below it.
fn floor(lab: &Lab, table: &[u8], run: usize, cfg: &BenchConfig) -> Result<RunResult, BenchError> {
    let t = lab.topo;
    let listener = lab.listen_as_dut("floor", t.dut_for_sender())?;
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + cfg.timeout;
    let spec = lab.sender_spec();
    let (tx, _rx) = mpsc::channel();
    let (full_tx, _full_rx) = mpsc::channel();
    let expected = cfg.workload.prefixes;
    let cpu0 = own_cpu_s();
    let (sent, counted) = std::thread::scope(|s| {
        let counter = s.spawn(|| peers::floor_receiver(listener, t.dut_as, expected, full_tx));
        let sender = s.spawn(|| {
            let _in = lab.sender.enter_guard()?;
            peers::sender(spec, table, true, &stop, deadline, tx)
        });
        (sender.join(), counter.join())
    });
    let cpu1 = own_cpu_s();
    let panicked = || BenchError::Panicked { dut: "floor", run };
    let sent = sent.map_err(|_| panicked())??;
    let counted = counted.map_err(|_| panicked())??;
    let Some(full) = counted.full else {
        return Err(BenchError::Timeout {
            dut: "floor",
            run,
            what: "full table at the floor's receiver",
            timeout: cfg.timeout,
            seen: format!("{counted:?}"),
            log: String::new(),
        });
    };
    Ok(RunResult {
        peers_cpu_s: cpu0.zip(cpu1).map(|(a, b)| (b - a).max(0.0)),
        ..received("floor", run, &sent, &counted, full)
    })
}

/// The relay in the DUT's place ([`peers::relay`]): the sender's bytes copied through a
/// process to the receiver, which counts them as it does behind a DUT. No speaker can be
/// faster than it: a speaker also parses, stores, decides and encodes.
fn relay(lab: &Lab, table: &[u8], run: usize, cfg: &BenchConfig) -> Result<RunResult, BenchError> {
    const NAME: &str = "relay";
    let t = lab.topo;
    let from_sender = lab.listen_as_dut(NAME, t.dut_for_sender())?;
    let from_receiver = lab.listen_as_dut(NAME, t.dut_for_receiver())?;
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + cfg.timeout;
    let (rspec, sspec) = (lab.receiver_spec(), lab.sender_spec());
    let expected = cfg.workload.prefixes;
    let cpu0 = own_cpu_s();
    let outcome = std::thread::scope(|s| {
        let (est_tx, est_rx) = mpsc::channel();
        let (full_tx, full_rx) = mpsc::channel();
        let (start_tx, start_rx) = mpsc::channel();
        let relay =
            s.spawn(|| peers::relay(&from_sender, &from_receiver, t.dut_as, &stop, deadline));
        let receiver = s.spawn(|| {
            let _in = lab.receiver.enter_guard()?;
            peers::receiver(rspec, expected, &stop, deadline, est_tx, full_tx)
        });
        let waited = (|| {
            let left = || deadline.saturating_duration_since(Instant::now());
            est_rx
                .recv_timeout(left())
                .map_err(|_| "receiver session")?;
            let sender = s.spawn(|| {
                let _in = lab.sender.enter_guard()?;
                peers::sender(sspec, table, false, &stop, deadline, start_tx)
            });
            start_rx
                .recv_timeout(left())
                .map_err(|_| "sender session")?;
            let full = full_rx
                .recv_timeout(left())
                .map_err(|_| "full table at the receiver")?;
            Ok((sender, full, own_cpu_s()))
        })();
        stop.store(true, Ordering::Relaxed);
        let rec = receiver.join();
        let relayed = relay.join();
        match waited {
            Ok((sender, full, cpu1)) => Ok((sender.join(), rec, relayed, full, cpu1)),
            Err(what) => Err((what, joined(rec), joined(relayed))),
        }
    });
    let panicked = || BenchError::Panicked { dut: NAME, run };
    match outcome {
        Ok((sent, rec, relayed, full, cpu1)) => {
            let sent = sent.map_err(|_| panicked())??;
            let rec = rec.map_err(|_| panicked())??;
            let relayed = relayed.map_err(|_| panicked())??;
            Ok(RunResult {
                dut_cpu_s: Some(relayed.cpu.as_secs_f64()),
                // The relay's thread is ours too: its copying is the DUT's share.
                peers_cpu_s: cpu0
                    .zip(cpu1)
                    .map(|(a, b)| (b - a - relayed.cpu.as_secs_f64()).max(0.0)),
                ..received(NAME, run, &sent, &rec, full)
            })
        }
        Err((what, rec, relayed)) => Err(BenchError::Timeout {
            dut: NAME,
            run,
            what,
            timeout: cfg.timeout,
            seen: rec,
            log: format!("relay: {relayed}"),
        }),
    }
}

/// The sender alone into a sink in the DUT's place: how fast can the table be offered at all.
fn ceiling(
    lab: &Lab,
    table: &[u8],
    run: usize,
    cfg: &BenchConfig,
) -> Result<RunResult, BenchError> {
    let t = lab.topo;
    let listener = lab.listen_as_dut("sink", t.dut_for_sender())?;
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + cfg.timeout;
    let spec = lab.sender_spec();
    let (tx, _rx) = mpsc::channel();
    let cpu0 = own_cpu_s();
    let (sent, sunk) = std::thread::scope(|s| {
        let sink = s.spawn(|| peers::sink(listener, t.dut_as));
        let sender = s.spawn(|| {
            let _in = lab.sender.enter_guard()?;
            peers::sender(spec, table, true, &stop, deadline, tx)
        });
        (sender.join(), sink.join())
    });
    let cpu1 = own_cpu_s();
    let panicked = || BenchError::Panicked { dut: "sender", run };
    let sent = sent.map_err(|_| panicked())??;
    let (end, bytes) = sunk.map_err(|_| panicked())??;
    Ok(RunResult {
        dut: "sender-ceiling",
        run,
        convergence_s: end.duration_since(sent.t0).as_secs_f64(),
        sender_s: sent.written.duration_since(sent.t0).as_secs_f64(),
        first_s: None,
        dut_cpu_s: None,
        peers_cpu_s: cpu0.zip(cpu1).map(|(a, b)| (b - a).max(0.0)),
        foreign_cpu_s: None,
        dut_peak_rss_kib: None,
        received: bytes,
        start: report::RunStart::default(),
    })
}

/// A run's timings from the sender's and the receiver's reports (`full`: when the receiver
/// had the whole table); the CPU and memory readings are left for the caller.
fn received(
    dut: &'static str,
    run: usize,
    sent: &peers::SenderReport,
    rec: &peers::ReceiverReport,
    full: Instant,
) -> RunResult {
    RunResult {
        dut,
        run,
        convergence_s: full.duration_since(sent.t0).as_secs_f64(),
        sender_s: sent.written.duration_since(sent.t0).as_secs_f64(),
        first_s: rec
            .first
            .map(|f| f.saturating_duration_since(sent.t0).as_secs_f64()),
        dut_cpu_s: None,
        peers_cpu_s: None,
        foreign_cpu_s: None,
        dut_peak_rss_kib: None,
        received: u64::from(rec.distinct),
        start: report::RunStart::default(),
    }
}

/// This process's CPU clock (the harness's peers run as its threads), seconds.
fn own_cpu_s() -> Option<f64> {
    dut::process_cpu_ns(std::process::id())
        .ok()
        .map(|ns| Duration::from_nanos(ns).as_secs_f64())
}

/// What a joined peer thread ended with, for an error message.
fn joined<T: std::fmt::Debug>(r: std::thread::Result<Result<T, BenchError>>) -> String {
    match r {
        Ok(Ok(v)) => format!("{v:?}"),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "panicked".into(),
    }
}

fn one_run(
    lab: &Lab,
    kind: &DutKind,
    table: &[u8],
    run: usize,
    cfg: &BenchConfig,
) -> Result<RunResult, BenchError> {
    let t = lab.topo;
    let name = kind.name();
    let mut dut = Dut::start(kind, &t, &lab.dut, lab.dir.path(), run)?;
    let expected = cfg.workload.prefixes;
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + cfg.timeout;
    let (rspec, sspec) = (lab.receiver_spec(), lab.sender_spec());

    let outcome = std::thread::scope(|s| {
        let (est_tx, est_rx) = mpsc::channel();
        let (full_tx, full_rx) = mpsc::channel();
        let (start_tx, start_rx) = mpsc::channel();
        let receiver = s.spawn(|| {
            let _in = lab.receiver.enter_guard()?;
            peers::receiver(rspec, expected, &stop, deadline, est_tx, full_tx)
        });
        let waited = (|| {
            let left = || deadline.saturating_duration_since(Instant::now());
            if est_rx.recv_timeout(left()).is_err() {
                return Err("receiver session");
            }
            let cpu0 = dut::CpuSample::begin(dut.process.pid()).ok();
            let sender = s.spawn(|| {
                let _in = lab.sender.enter_guard()?;
                peers::sender(sspec, table, false, &stop, deadline, start_tx)
            });
            if start_rx.recv_timeout(left()).is_err() {
                return Err("sender session");
            }
            let full = full_rx
                .recv_timeout(left())
                .map_err(|_| "full table at the receiver")?;
            let cpu1 = dut::CpuSample::end(dut.process.pid()).ok();
            let rss = dut.peak_rss_kib().ok();
            Ok((sender, full, cpu0, cpu1, rss))
        })();
        stop.store(true, Ordering::Relaxed);
        let rec = receiver.join();
        match waited {
            Ok((sender, full, cpu0, cpu1, rss)) => {
                let sent = sender.join();
                Ok((sent, rec, full, cpu0, cpu1, rss))
            }
            Err(what) => Err((what, rec)),
        }
    });
    let panicked = || BenchError::Panicked { dut: name, run };
    let result = match outcome {
        Ok((sent, rec, full, cpu0, cpu1, rss)) => {
            let sent = sent.map_err(|_| panicked())??;
            let rec = rec.map_err(|_| panicked())??;
            let cpu = cpu0
                .zip(cpu1)
                .map(|(a, b)| a.delta(&b))
                .transpose()
                .map_err(|source| BenchError::CpuAccounting {
                    dut: name,
                    run,
                    source,
                })?;
            Ok(RunResult {
                dut_cpu_s: cpu.map(|c| c.dut.as_secs_f64()),
                peers_cpu_s: cpu.map(|c| c.peers.as_secs_f64()),
                foreign_cpu_s: cpu.map(|c| c.foreign.as_secs_f64()),
                dut_peak_rss_kib: rss,
                ..received(name, run, &sent, &rec, full)
            })
        }
        Err((what, rec)) => Err(BenchError::Timeout {
            dut: name,
            run,
            what,
            timeout: cfg.timeout,
            seen: joined(rec),
            log: dut.process.log_tail(),
        }),
    };
    let _ = dut.process.stop();
    result
}
