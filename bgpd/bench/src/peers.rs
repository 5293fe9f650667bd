//! The two measuring peers (sender and receiver), the sink used for the sender's ceiling and
//! the receiver in the DUT's place used for the floor.
//! Each runs on its own thread, switched into its namespace with `Netns::enter_guard`.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::bgp::{self, MsgReader};
use crate::workload;

/// Hold time we offer; keepalives go out every third of it (RFC 4271 §4.4).
const HOLD_TIME: u16 = 240;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// Read timeout: how often a blocked reader looks at the stop flag and the keepalive timer.
const TICK: Duration = Duration::from_millis(200);

fn io_err(role: &'static str, what: &'static str) -> impl FnOnce(io::Error) -> BenchError {
    move |source| BenchError::Peer { role, what, source }
}

/// Connects to `dut` until it accepts or `deadline` passes (the DUT may still be starting).
fn connect(
    role: &'static str,
    dut: SocketAddr,
    deadline: Instant,
) -> Result<TcpStream, BenchError> {
    loop {
        match TcpStream::connect_timeout(&dut, Duration::from_secs(1)) {
            Ok(s) => {
                s.set_nodelay(true)
                    .map_err(io_err(role, "set TCP_NODELAY"))?;
                return Ok(s);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(BenchError::Peer {
                    role,
                    what: "connect to the DUT",
                    source: e,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// OPEN both ways, then KEEPALIVE both ways (RFC 4271 §8: Established).
fn handshake(
    role: &'static str,
    stream: &mut TcpStream,
    reader: &mut MsgReader<TcpStream>,
    my_as: u32,
    router_id: Ipv4Addr,
    deadline: Instant,
) -> Result<(), BenchError> {
    stream
        .write_all(&bgp::open(my_as, HOLD_TIME, router_id))
        .map_err(io_err(role, "send OPEN"))?;
    let mut got_open = false;
    loop {
        if Instant::now() >= deadline {
            return Err(BenchError::Handshake {
                role,
                detail: "no OPEN/KEEPALIVE from the DUT in time".into(),
            });
        }
        match reader.read_message() {
            Ok(Some((bgp::OPEN, _))) => {
                got_open = true;
                stream
                    .write_all(&bgp::keepalive())
                    .map_err(io_err(role, "send KEEPALIVE"))?;
            }
            Ok(Some((bgp::KEEPALIVE, _))) if got_open => return Ok(()),
            Ok(Some((bgp::NOTIFICATION, body))) => {
                return Err(BenchError::Handshake {
                    role,
                    detail: format!(
                        "DUT sent NOTIFICATION {}/{}",
                        body.first().copied().unwrap_or(0),
                        body.get(1).copied().unwrap_or(0)
                    ),
                });
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(BenchError::Handshake {
                    role,
                    detail: "DUT closed the connection".into(),
                });
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(io_err(role, "read from the DUT")(e)),
        }
    }
}

/// Connects and establishes, starting over while the DUT refuses or drops us before
/// `deadline` (a DUT that listens before its peers are configured closes early connections).
fn establish(
    role: &'static str,
    spec: &PeerSpec,
    deadline: Instant,
) -> Result<(TcpStream, MsgReader<TcpStream>), BenchError> {
    loop {
        let attempt = (|| {
            let mut stream = connect(role, spec.dut, deadline)?;
            stream
                .set_read_timeout(Some(TICK))
                .map_err(io_err(role, "set read timeout"))?;
            let mut reader =
                MsgReader::new(stream.try_clone().map_err(io_err(role, "clone socket"))?);
            handshake(
                role,
                &mut stream,
                &mut reader,
                spec.my_as,
                spec.router_id,
                deadline,
            )?;
            Ok((stream, reader))
        })();
        match attempt {
            Err(_) if Instant::now() + Duration::from_millis(200) < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Who a peer is.
#[derive(Debug, Clone, Copy)]
pub struct PeerSpec {
    pub dut: SocketAddr,
    pub my_as: u32,
    pub router_id: Ipv4Addr,
}

/// What the sender measured.
#[derive(Debug, Clone, Copy)]
pub struct SenderReport {
    /// Session established, first UPDATE byte about to be written: time zero of the run.
    pub t0: Instant,
    /// The last byte of the table was accepted by the kernel.
    pub written: Instant,
}

/// Sends the table: connects, establishes, writes every UPDATE back to back.
///
/// With `close` the write side is shut down after the table (the sink's end marker);
/// otherwise the session stays up, kept alive and drained, until `stop`.
pub fn sender(
    spec: PeerSpec,
    table: &[u8],
    close: bool,
    stop: &AtomicBool,
    deadline: Instant,
    started: mpsc::Sender<Instant>,
) -> Result<SenderReport, BenchError> {
    const ROLE: &str = "sender";
    let (mut stream, mut reader) = establish(ROLE, &spec, deadline)?;

    // Drain whatever the DUT sends us while we write, so neither side can block the other.
    std::thread::scope(|s| {
        let drain = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match reader.read_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
        });
        let t0 = Instant::now();
        let _ = started.send(t0);
        let result = stream
            .write_all(table)
            .map_err(io_err(ROLE, "write the table"))
            .map(|()| Instant::now());
        let written = match result {
            Ok(t) => t,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = drain.join();
                return Err(e);
            }
        };
        if close {
            let _ = stream.shutdown(Shutdown::Write);
        } else {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                if last.elapsed() >= KEEPALIVE_EVERY {
                    let _ = stream.write_all(&bgp::keepalive());
                    last = Instant::now();
                }
            }
        }
        let _ = drain.join();
        Ok(SenderReport { t0, written })
    })
}

/// What the receiver saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiverReport {
    /// When the first table prefix arrived (a DUT that advertises while it still receives
    /// shows it long before `full`).
    pub first: Option<Instant>,
    /// When the last missing prefix arrived.
    pub full: Option<Instant>,
    pub distinct: u32,
    pub announcements: u64,
    pub withdrawals: u64,
    pub foreign: u64,
    pub updates: u64,
}

/// Counts distinct table prefixes until it has all `expected`, tells `full`, then keeps the
/// session alive (and drained) until `stop`.
pub fn receiver(
    spec: PeerSpec,
    expected: u32,
    stop: &AtomicBool,
    deadline: Instant,
    established: mpsc::Sender<()>,
    full: mpsc::Sender<Instant>,
) -> Result<ReceiverReport, BenchError> {
    const ROLE: &str = "receiver";
    let (stream, reader) = establish(ROLE, &spec, deadline)?;
    let _ = established.send(());
    count(ROLE, stream, reader, expected, stop, full)
}

/// The harness's floor: the receiver itself in the DUT's place, so the sender's table goes
/// straight into the code that counts it (one TCP hop, no speaker in between). Answers OPEN
/// and KEEPALIVE at once like [`sink`], then counts as [`receiver`] does until the sender
/// closes.
pub fn floor_receiver(
    listener: TcpListener,
    my_as: u32,
    expected: u32,
    full: mpsc::Sender<Instant>,
) -> Result<ReceiverReport, BenchError> {
    const ROLE: &str = "floor";
    let (mut stream, _) = listener.accept().map_err(io_err(ROLE, "accept"))?;
    stream
        .set_read_timeout(Some(TICK))
        .map_err(io_err(ROLE, "set read timeout"))?;
    let mut hello = bgp::open(my_as, HOLD_TIME, Ipv4Addr::new(10, 255, 255, 1));
    hello.extend_from_slice(&bgp::keepalive());
    stream
        .write_all(&hello)
        .map_err(io_err(ROLE, "send OPEN"))?;
    let reader = MsgReader::new(stream.try_clone().map_err(io_err(ROLE, "clone socket"))?);
    // The sender's OPEN and KEEPALIVE are skipped by the counting loop; it ends at the
    // sender's close.
    let never = AtomicBool::new(false);
    count(ROLE, stream, reader, expected, &never, full)
}

/// Counts distinct table prefixes in the UPDATEs read from `reader` until `stop` or the
/// peer's close; tells `full` when all `expected` are there.
fn count(
    role: &'static str,
    mut stream: TcpStream,
    mut reader: MsgReader<TcpStream>,
    expected: u32,
    stop: &AtomicBool,
    full: mpsc::Sender<Instant>,
) -> Result<ReceiverReport, BenchError> {
    let mut have = vec![0u64; (expected as usize).div_ceil(64)];
    let mut r = ReceiverReport::default();
    let mut last_ka = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_message() {
            // Once full, only drain: the counts describe the table at convergence (the
            // teardown that follows makes the DUT withdraw everything).
            Ok(Some((bgp::UPDATE, _))) if r.full.is_some() => {}
            Ok(Some((bgp::UPDATE, body))) => {
                r.updates += 1;
                bgp::for_each_nlri(body, |addr, len, announce| {
                    let Some(i) = workload::prefix_index(addr, len, expected) else {
                        r.foreign += 1;
                        return;
                    };
                    let (w, bit) = (i as usize / 64, 1u64 << (i % 64));
                    if announce {
                        if r.first.is_none() {
                            r.first = Some(Instant::now());
                        }
                        r.announcements += 1;
                        if have[w] & bit == 0 {
                            have[w] |= bit;
                            r.distinct += 1;
                        }
                    } else {
                        r.withdrawals += 1;
                        if have[w] & bit != 0 {
                            have[w] &= !bit;
                            r.distinct -= 1;
                        }
                    }
                })
                .map_err(|e| BenchError::Handshake {
                    role,
                    detail: e.to_string(),
                })?;
                if r.full.is_none() && r.distinct == expected {
                    let now = Instant::now();
                    r.full = Some(now);
                    let _ = full.send(now);
                }
            }
            Ok(Some((bgp::NOTIFICATION, body))) => {
                return Err(BenchError::Handshake {
                    role,
                    detail: format!(
                        "DUT sent NOTIFICATION {}/{} after {} prefixes",
                        body.first().copied().unwrap_or(0),
                        body.get(1).copied().unwrap_or(0),
                        r.distinct
                    ),
                });
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(io_err(role, "read from the DUT")(e)),
        }
        if last_ka.elapsed() >= KEEPALIVE_EVERY {
            stream
                .write_all(&bgp::keepalive())
                .map_err(io_err(role, "send KEEPALIVE"))?;
            last_ka = Instant::now();
        }
    }
    Ok(r)
}

/// The DUT's stand-in for the sender's ceiling: answers OPEN and KEEPALIVE at once, then only
/// reads until the sender closes. Returns when the last byte arrived and how many there were.
pub fn sink(listener: TcpListener, my_as: u32) -> Result<(Instant, u64), BenchError> {
    const ROLE: &str = "sink";
    let (mut stream, _) = listener.accept().map_err(io_err(ROLE, "accept"))?;
    let mut hello = bgp::open(my_as, HOLD_TIME, Ipv4Addr::new(10, 255, 255, 1));
    hello.extend_from_slice(&bgp::keepalive());
    stream
        .write_all(&hello)
        .map_err(io_err(ROLE, "send OPEN"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = io::Read::read(&mut stream, &mut buf).map_err(io_err(ROLE, "read"))?;
        if n == 0 {
            return Ok((Instant::now(), total));
        }
        total += n as u64;
    }
}

/// What the relay did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayReport {
    /// Bytes copied from the sender to the receiver after the sender's handshake.
    pub bytes: u64,
    /// CPU time of the copying thread, handshake to the sender's close or `stop`.
    pub cpu: Duration,
}

/// Accepts one connection on `listener`, polling so that `stop` and `deadline` are seen.
fn accept_until(
    role: &'static str,
    listener: &TcpListener,
    stop: &AtomicBool,
    deadline: Instant,
) -> Result<TcpStream, BenchError> {
    listener
        .set_nonblocking(true)
        .map_err(io_err(role, "poll the listener"))?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(io_err(role, "make the socket blocking"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    return Err(BenchError::Handshake {
                        role,
                        detail: "no connection in time".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io_err(role, "accept")(e)),
        }
    }
}

/// Reads one whole message with blocking reads and returns its type.
fn read_whole_message(role: &'static str, stream: &mut TcpStream) -> Result<u8, BenchError> {
    let mut header = [0u8; 19];
    io::Read::read_exact(stream, &mut header).map_err(io_err(role, "read the handshake"))?;
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let Some(rest) = len.checked_sub(header.len()) else {
        return Err(BenchError::Handshake {
            role,
            detail: format!("message length {len} below the header's"),
        });
    };
    let mut body = vec![0u8; rest];
    io::Read::read_exact(stream, &mut body).map_err(io_err(role, "read the handshake"))?;
    Ok(header[18])
}

/// This thread's CPU time; zero if the clock cannot be read (the relay's CPU figure is then
/// zero, which the smoke test notices).
fn thread_cpu() -> Duration {
    Duration::from_nanos(crate::dut::thread_cpu_ns().unwrap_or(0))
}

/// The harness's relay, in the DUT's place: the least any speaker must do with the table,
/// and nothing more. It reads the sender's stream into its own memory and writes it to the
/// receiver, one `read` and one `write` per chunk: no parsing, no table, no encoding. Both
/// peers get OPEN and KEEPALIVE from it at once, as from [`floor_receiver`]; the sender's OPEN
/// and KEEPALIVE are read off whole and not forwarded (the receiver has its own session with
/// the relay); everything after them is copied until the sender closes or `stop`.
///
/// A DUT's convergence measured against the relay's shows what its routing work costs; the
/// relay's against the floor, what the extra hop through a process costs on this machine.
pub fn relay(
    from_sender: &TcpListener,
    from_receiver: &TcpListener,
    my_as: u32,
    stop: &AtomicBool,
    deadline: Instant,
) -> Result<RelayReport, BenchError> {
    const ROLE: &str = "relay";
    let mut hello = bgp::open(my_as, HOLD_TIME, Ipv4Addr::new(10, 255, 255, 1));
    hello.extend_from_slice(&bgp::keepalive());

    let mut downstream = accept_until(ROLE, from_receiver, stop, deadline)?;
    downstream
        .set_nodelay(true)
        .map_err(io_err(ROLE, "set TCP_NODELAY"))?;
    downstream
        .write_all(&hello)
        .map_err(io_err(ROLE, "send OPEN to the receiver"))?;
    // The receiver's OPEN, KEEPALIVE and keepalives: read and dropped, so it never blocks.
    let mut drain = downstream
        .try_clone()
        .map_err(io_err(ROLE, "clone socket"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(io::Read::read(&mut drain, &mut buf), Ok(n) if n > 0) {}
        });
        let result = (|| {
            let mut upstream = accept_until(ROLE, from_sender, stop, deadline)?;
            upstream
                .write_all(&hello)
                .map_err(io_err(ROLE, "send OPEN to the sender"))?;
            upstream
                .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
                .map_err(io_err(ROLE, "set read timeout"))?;
            // OPEN then KEEPALIVE (RFC 4271 §8): after that the sender writes the table.
            while read_whole_message(ROLE, &mut upstream)? != bgp::KEEPALIVE {}
            upstream
                .set_read_timeout(Some(TICK))
                .map_err(io_err(ROLE, "set read timeout"))?;
            let cpu0 = thread_cpu();
            let mut buf = vec![0u8; 1 << 20];
            let mut bytes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = match io::Read::read(&mut upstream, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if is_timeout(&e) => continue,
                    Err(e) => return Err(io_err(ROLE, "read from the sender")(e)),
                };
                let chunk = buf.get(..n).unwrap_or_default();
                downstream
                    .write_all(chunk)
                    .map_err(io_err(ROLE, "write to the receiver"))?;
                bytes += n as u64;
            }
            Ok(RelayReport {
                bytes,
                cpu: thread_cpu().saturating_sub(cpu0),
            })
        })();
        // Ends the drain thread (and tells the receiver) whatever happened.
        let _ = downstream.shutdown(Shutdown::Both);
        result
    })
}
