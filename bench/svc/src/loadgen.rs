//! The load generator: closed-loop workers on plain threads with blocking sockets, one socket
//! operation at a time, every operation timed.
//!
//! - [`Test::Connect`]: connect, send a `Connection: close` request, read the response and the
//!   server's FIN, close. One operation = one new connection (conn/s).
//! - [`Test::KeepAlive`]: one connection per worker, request/response in a loop (req/s).
//! - [`Test::Udp`]: one socket (one flow) per worker, send a datagram, wait for its echo
//!   (packets/s counted as request/response pairs).
//! - [`Test::Flows`]: SYNs from a raw socket, each a new flow, counted by their SYN-ACKs
//!   ([`crate::flows`], its own sender and receiver instead of these workers).
//!
//! Called from a thread already inside the client namespace: the workers it spawns start there.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cpu;
use crate::error::{Error, Result};
use crate::server::RESPONSE;
use crate::stats::Latency;

/// Which loop the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Test {
    /// New TCP connection per request.
    Connect,
    /// Requests on persistent connections.
    KeepAlive,
    /// UDP request/response.
    Udp,
    /// New flows' first round trips from a raw socket ([`crate::flows`]).
    Flows,
}

impl Test {
    /// Name in results.
    pub fn name(self) -> &'static str {
        match self {
            Test::Connect => "connect",
            Test::KeepAlive => "keep-alive",
            Test::Udp => "udp",
            Test::Flows => "flows",
        }
    }
}

/// One load run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// The loop.
    pub test: Test,
    /// Worker i talks to `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
    /// Concurrent workers.
    pub workers: usize,
    /// Measured time.
    pub duration: Duration,
    /// CPUs the workers are pinned to (empty: not pinned).
    pub cpus: Vec<usize>,
    /// Per-operation timeout (connect, read, UDP reply; `flows`: the longest wait for late
    /// SYN-ACKs after the window).
    pub timeout: Duration,
    /// `flows` only: the /24 the SYNs come from, local in the client's namespace and routed to
    /// it ([`crate::topo::Lab::flow_sources`]).
    pub flow_sources: Option<Ipv4Addr>,
}

/// What a load run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// Completed operations.
    pub ops: u64,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
    /// Operations that completed after the window closed (not counted in `ops`).
    #[serde(default)]
    pub late: u64,
    /// Wall time from the common start to the last worker's end, seconds (the window plus the
    /// operations still in flight when it closed).
    pub elapsed_s: f64,
    /// Operations completed inside the window per second of the window.
    pub ops_per_s: f64,
    /// Latency of completed operations.
    pub latency: Latency,
    /// CPU seconds of the worker threads.
    pub cpu_s: f64,
}

const REQ_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const REQ_KEEP: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

struct Worker {
    ops: u64,
    late: u64,
    errors: BTreeMap<String, u64>,
    lat: Vec<u64>,
    cpu: Duration,
}

impl Worker {
    fn err(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }
}

fn kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}/{code}", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}

fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut have = 0;
    while have < RESPONSE.len() {
        match s.read(buf.get_mut(have..).unwrap_or_default())? {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            n => have += n,
        }
    }
    if buf.get(..RESPONSE.len()) == Some(RESPONSE) {
        Ok(())
    } else {
        Err(ErrorKind::InvalidData.into())
    }
}

fn connect_once(target: SocketAddr, timeout: Duration, buf: &mut [u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&target, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    s.write_all(REQ_CLOSE)?;
    read_response(&mut s, buf)?;
    // Wait for the server's FIN so the server closes first (TIME_WAIT on its side).
    match s.read(buf)? {
        0 => Ok(()),
        _ => Err(ErrorKind::InvalidData.into()),
    }
}

fn run_worker(test: Test, target: SocketAddr, cfg: &LoadConfig, start: &Barrier) -> Worker {
    cpu::pin(&cfg.cpus);
    let mut w = Worker {
        ops: 0,
        late: 0,
        errors: BTreeMap::new(),
        lat: Vec::with_capacity(1 << 16),
        cpu: Duration::ZERO,
    };
    let mut buf = [0u8; 256];
    let mut keep: Option<TcpStream> = None;
    let mut udp: Option<UdpSocket> = None;
    let mut seq: u64 = 0;
    start.wait();
    let t0 = Instant::now();
    let cpu0 = cpu::thread_cpu();
    let end = t0 + cfg.duration;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        let r = match test {
            Test::Connect => connect_once(target, cfg.timeout, &mut buf),
            Test::KeepAlive => keepalive_once(&mut keep, target, cfg.timeout, &mut buf),
            Test::Udp => udp_once(&mut udp, target, cfg.timeout, &mut seq, &mut buf),
            // Run by `crate::flows`, never by these workers.
            Test::Flows => Err(ErrorKind::Unsupported.into()),
        };
        let done = Instant::now();
        match r {
            // Only operations completed inside the window count: one finishing after it (a
            // SYN retransmitted at 1 s, say) would otherwise stretch the divisor.
            Ok(()) if done > end => w.late += 1,
            Ok(()) => {
                w.ops += 1;
                w.lat.push(done.duration_since(t).as_nanos() as u64);
            }
            Err(e) => {
                w.err(&kind(&e));
                keep = None;
                if test != Test::Udp {
                    // Do not spin on a broken path: it would only measure error handling.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    w.cpu = cpu::thread_cpu().saturating_sub(cpu0);
    w
}

fn keepalive_once(
    keep: &mut Option<TcpStream>,
    target: SocketAddr,
    timeout: Duration,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let s = match keep {
        Some(s) => s,
        None => {
            let s = TcpStream::connect_timeout(&target, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_nodelay(true)?;
            keep.insert(s)
        }
    };
    s.write_all(REQ_KEEP)?;
    read_response(s, buf)
}

fn udp_once(
    udp: &mut Option<UdpSocket>,
    target: SocketAddr,
    timeout: Duration,
    seq: &mut u64,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let u = match udp {
        Some(u) => u,
        None => {
            let u = UdpSocket::bind("0.0.0.0:0")?;
            u.connect(target)?;
            u.set_read_timeout(Some(timeout))?;
            udp.insert(u)
        }
    };
    *seq += 1;
    let mut msg = [0u8; 32];
    msg[..8].copy_from_slice(&seq.to_be_bytes());
    u.send(&msg)?;
    loop {
        let n = u.recv(buf)?;
        // A late echo of an earlier (timed out) datagram: skip it.
        if n == msg.len() && buf.get(..8) == Some(&msg[..8]) {
            return Ok(());
        }
    }
}

/// Runs `cfg.workers` workers for `cfg.duration` and merges their results.
pub fn run(cfg: &LoadConfig) -> Result<LoadResult> {
    if cfg.test == Test::Flows {
        let sources = cfg.flow_sources.ok_or_else(|| {
            Error::Config("the flows test needs a source range routed to the client".into())
        })?;
        return crate::flows::run(cfg, sources);
    }
    if cfg.targets.is_empty() || cfg.workers == 0 {
        return Err(Error::Config(
            "load generator needs targets and workers".into(),
        ));
    }
    let barrier = Arc::new(Barrier::new(cfg.workers + 1));
    let cfg_arc = Arc::new(cfg.clone());
    let mut handles = Vec::with_capacity(cfg.workers);
    for i in 0..cfg.workers {
        let target = cfg
            .targets
            .get(i % cfg.targets.len())
            .copied()
            .ok_or_else(|| Error::Config("no target".into()))?;
        let (b, c) = (barrier.clone(), cfg_arc.clone());
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .spawn(move || run_worker(c.test, target, &c, &b))
            .map_err(|source| Error::Net {
                what: "spawn worker".into(),
                source,
            })?;
        handles.push(h);
    }
    barrier.wait();
    let t0 = Instant::now();
    let mut out = LoadResult::default();
    let mut lat = Vec::new();
    let mut cpu = Duration::ZERO;
    for h in handles {
        let w = h
            .join()
            .map_err(|_| Error::Check("a load generator worker panicked".into()))?;
        out.ops += w.ops;
        out.late += w.late;
        for (k, v) in w.errors {
            *out.errors.entry(k).or_default() += v;
        }
        lat.extend(w.lat);
        cpu += w.cpu;
    }
    out.elapsed_s = t0.elapsed().as_secs_f64();
    let window = cfg.duration.as_secs_f64();
    out.ops_per_s = if window > 0.0 {
        out.ops as f64 / window
    } else {
        0.0
    };
    out.latency = Latency::of(&mut lat);
    out.cpu_s = cpu.as_secs_f64();
    Ok(out)
}
