//! A pod's server for service tests: inside a namespace, HTTP on a TCP port and an echo on a
//! UDP port, both answering with one line that names the server and the client address it
//! saw (`pod=<name> client=<addr:port>`), so a test can tell which backend answered and
//! whether the client's address was preserved or translated. Threads in the test process
//! serve the sockets (bound inside the namespace); dropping the server stops them.
//!
//! `GET /stream?bytes=N` sends N bytes in 1 KiB pieces, 10 ms apart (a long transfer for
//! "a backend goes away mid-transfer" tests).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// How often the serving threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// A running server; stops (and joins its threads) on drop.
#[derive(Debug)]
pub struct EchoServer {
    name: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

fn io(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: what.into(),
        source,
    }
}

impl EchoServer {
    /// Serves on `[::]:tcp_port` (IPv4 too: dual-stack socket) and `[::]:udp_port` inside `ns`.
    pub fn start(ns: &Netns, name: &str, tcp_port: u16, udp_port: u16) -> Result<Self> {
        let (tcp, udp) = ns
            .enter(|| -> std::io::Result<(TcpListener, UdpSocket)> {
                let t = TcpListener::bind(("::", tcp_port))?;
                let u = UdpSocket::bind(("::", udp_port))?;
                Ok((t, u))
            })?
            .map_err(|e| io(&format!("echo server {name} bind"), e))?;
        tcp.set_nonblocking(true).map_err(|e| io("echo tcp", e))?;
        udp.set_read_timeout(Some(POLL))
            .map_err(|e| io("echo udp", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            let (stop, served, name) = (stop.clone(), served.clone(), name.to_owned());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((s, peer)) => {
                            served.fetch_add(1, Ordering::Relaxed);
                            let (name, stop) = (name.clone(), stop.clone());
                            // One thread per connection: long streams must not block others.
                            std::thread::spawn(move || serve_http(s, peer, &name, &stop));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            }));
        }
        {
            let (stop, served, name) = (stop.clone(), served.clone(), name.to_owned());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                        served.fetch_add(1, Ordering::Relaxed);
                        let _ = udp.send_to(line(&name, peer).as_bytes(), peer);
                    }
                }
            }));
        }
        Ok(Self {
            name: name.to_owned(),
            stop,
            served,
            threads,
        })
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections and datagrams served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `pod=<name> client=<addr:port>` with IPv4-mapped addresses shown as IPv4.
fn line(name: &str, peer: SocketAddr) -> String {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    format!("pod={name} client={}\n", SocketAddr::new(ip, peer.port()))
}

fn serve_http(mut s: TcpStream, peer: SocketAddr, name: &str, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let head = String::from_utf8_lossy(&req);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let body = line(name, peer);
    if let Some(n) = path
        .strip_prefix("/stream?bytes=")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let header = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            n + body.len()
        );
        if s.write_all(header.as_bytes()).is_err() {
            return;
        }
        let mut left = n;
        while left > 0 && !stop.load(Ordering::Relaxed) {
            let k = left.min(1024);
            if s.write_all(&vec![b'.'; k]).is_err() {
                return;
            }
            left -= k;
            std::thread::sleep(Duration::from_millis(10));
        }
        return;
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes());
}

/// `GET /` to `addr` from inside `ns`: the body (`pod=... client=...`), or an error (refused,
/// reset, timed out).
pub fn http_get(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<String> {
    let r = ns.enter(|| -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?;
    let text = r.map_err(|e| io(&format!("GET http://{addr}/"), e))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(Error::Io {
            path: format!("GET http://{addr}/").into(),
            source: std::io::Error::other(format!("unexpected reply {text:?}")),
        }),
    }
}

/// One datagram to `addr` from inside `ns` and its answer.
pub fn udp_echo(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<String> {
    let r = ns.enter(|| -> std::io::Result<String> {
        let any: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        } else {
            "[::]:0".parse().map_err(std::io::Error::other)?
        };
        let s = UdpSocket::bind(any)?;
        s.set_read_timeout(Some(timeout))?;
        s.send_to(b"hello", addr)?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned())
    })?;
    r.map_err(|e| io(&format!("udp {addr}"), e))
}

/// The `pod=` and `client=` fields of an answer.
pub fn parse(answer: &str) -> Option<(String, SocketAddr)> {
    let mut pod = None;
    let mut client = None;
    for f in answer.split_whitespace() {
        if let Some(v) = f.strip_prefix("pod=") {
            pod = Some(v.to_owned());
        } else if let Some(v) = f.strip_prefix("client=") {
            client = v.parse().ok();
        }
    }
    Some((pod?, client?))
}
