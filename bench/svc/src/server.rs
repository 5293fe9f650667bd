//! The backend: a tiny HTTP-ish TCP server and a UDP echo server, run as threads inside a
//! backend namespace.
//!
//! TCP: read a request (up to the blank line), write [`RESPONSE`]; if the request says
//! `Connection: close`, close (the server closes first, as an HTTP/1.0 server does, so TIME_WAIT
//! stays on the server side and the client's ports are not exhausted), otherwise wait for the
//! next request. A pool of threads blocks in `accept` on one listener: no thread is spawned
//! per connection. UDP: echo every datagram back to its sender.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cpu;
use crate::error::{Error, Result};

/// The fixed response.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// Port of both servers in every backend.
pub const PORT: u16 = 8080;

/// What a server saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// HTTP requests answered.
    pub requests: u64,
    /// UDP datagrams echoed.
    pub datagrams: u64,
    /// CPU seconds of the server's threads.
    pub cpu_s: f64,
    /// The source address of the last TCP connection accepted (IPv4): whom the backend
    /// believes it talks to, i.e. whether the node translated the client's address.
    #[serde(default)]
    pub last_tcp_peer: Option<Ipv4Addr>,
    /// The source address of the last UDP datagram echoed.
    #[serde(default)]
    pub last_udp_peer: Option<Ipv4Addr>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    requests: AtomicU64,
    datagrams: AtomicU64,
    cpu_ns: AtomicU64,
    /// `u32::from(Ipv4Addr)`, 0 for none (one relaxed store per operation in every mode).
    tcp_peer: AtomicU32,
    udp_peer: AtomicU32,
}

fn peer_v4(a: SocketAddr) -> u32 {
    match a {
        SocketAddr::V4(a) => u32::from(*a.ip()),
        SocketAddr::V6(_) => 0,
    }
}

fn stored(v: u32) -> Option<Ipv4Addr> {
    (v != 0).then(|| Ipv4Addr::from(v))
}

/// A running server; [`Server::stop`] (or drop) stops and joins its threads.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    listener: Option<TcpListener>,
    threads: Vec<JoinHandle<()>>,
}

fn net(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Net {
        what: what.to_owned(),
        source,
    }
}

impl Server {
    /// Starts `tcp_threads` TCP and `udp_threads` UDP threads listening on 0.0.0.0:[`PORT`] in
    /// `ns`, pinned to `cpus`.
    pub fn start(
        ns: &netlab::Netns,
        tcp_threads: usize,
        udp_threads: usize,
        cpus: &[usize],
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT));
        let (listener, udp) = ns.enter(|| -> Result<(TcpListener, UdpSocket)> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .map_err(net("tcp socket"))?;
            s.set_reuse_address(true).map_err(net("SO_REUSEADDR"))?;
            s.bind(&addr.into()).map_err(net("bind tcp"))?;
            s.listen(4096).map_err(net("listen"))?;
            let udp = UdpSocket::bind(addr).map_err(net("bind udp"))?;
            udp.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(net("udp timeout"))?;
            Ok((s.into(), udp))
        })??;
        let mut threads = Vec::new();
        for _ in 0..tcp_threads.max(1) {
            let l = listener.try_clone().map_err(net("clone listener"))?;
            let (stop, c, cpus) = (stop.clone(), counters.clone(), cpus.to_vec());
            threads.push(std::thread::spawn(move || {
                cpu::pin(&cpus);
                tcp_loop(&l, &stop, &c);
                c.cpu_ns
                    .fetch_add(cpu::thread_cpu().as_nanos() as u64, Ordering::Relaxed);
            }));
        }
        for _ in 0..udp_threads.max(1) {
            let u = udp.try_clone().map_err(net("clone udp"))?;
            let (stop, c, cpus) = (stop.clone(), counters.clone(), cpus.to_vec());
            threads.push(std::thread::spawn(move || {
                cpu::pin(&cpus);
                udp_loop(&u, &stop, &c);
                c.cpu_ns
                    .fetch_add(cpu::thread_cpu().as_nanos() as u64, Ordering::Relaxed);
            }));
        }
        Ok(Self {
            stop,
            counters,
            listener: Some(listener),
            threads,
        })
    }

    /// Counters so far (the CPU time is only known after [`Server::stop`]).
    pub fn snapshot(&self) -> ServerStats {
        let c = &self.counters;
        ServerStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            datagrams: c.datagrams.load(Ordering::Relaxed),
            cpu_s: c.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            last_tcp_peer: stored(c.tcp_peer.load(Ordering::Relaxed)),
            last_udp_peer: stored(c.udp_peer.load(Ordering::Relaxed)),
        }
    }

    /// Stops every thread and returns the totals.
    pub fn stop(mut self) -> ServerStats {
        self.shutdown();
        self.snapshot()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(l) = self.listener.take() {
            // shutdown(2) on a listening socket wakes every thread blocked in accept (EINVAL).
            // SAFETY: the fd is open (we own `l` until the end of this block).
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn tcp_loop(l: &TcpListener, stop: &AtomicBool, c: &Counters) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, from)) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                c.tcp_peer.store(peer_v4(from), Ordering::Relaxed);
                serve(s, stop, c);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::InvalidInput => return,
            // ECONNABORTED and friends: the client went away before accept; keep going.
            Err(_) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => return,
        }
    }
}

fn serve(mut s: TcpStream, stop: &AtomicBool, c: &Counters) {
    let _ = s.set_nodelay(true);
    // A client that stops sending must not hold this thread past the end of the run.
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 1024];
    let mut have = 0usize;
    loop {
        let n = match s.read(buf.get_mut(have..).unwrap_or_default()) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        have += n;
        let Some(req) = buf.get(..have) else { return };
        let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
            if have == buf.len() {
                return; // not a request we sent
            }
            continue;
        };
        let close = req.get(..end).is_some_and(|h| {
            h.windows(17)
                .any(|w| w.eq_ignore_ascii_case(b"connection: close"))
        });
        if s.write_all(RESPONSE).is_err() {
            return;
        }
        c.requests.fetch_add(1, Ordering::Relaxed);
        if close {
            return;
        }
        // Pipelining is not used by our client: anything after the request is dropped.
        have = 0;
    }
}

fn udp_loop(u: &UdpSocket, stop: &AtomicBool, c: &Counters) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match u.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(d) = buf.get(..n)
                    && u.send_to(d, from).is_ok()
                {
                    c.datagrams.fetch_add(1, Ordering::Relaxed);
                    c.udp_peer.store(peer_v4(from), Ordering::Relaxed);
                }
            }
            Err(_) => continue,
        }
    }
}
