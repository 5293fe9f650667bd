//! `rackd-lab echo`: the lab pods' server. Every HTTP/1.1 request on its TCP listeners and
//! every UDP datagram is answered with one line naming the server and the client address and
//! port it saw:
//!
//! ```text
//! pod=deathstar-1 client=10.0.3.2:41234
//! ```
//!
//! so a test can tell which backend answered and whether the source was translated on the way.
//! `GET /stream?bytes=N[&chunk=C][&interval_ms=D]` instead sends N bytes (that line repeated)
//! in chunks of C bytes, D ms apart: a transfer long enough to remove its backend mid-way.
//!
//! IPv6 listeners are `IPV6_V6ONLY`, so `0.0.0.0:80` and `[::]:80` coexist (the defaults) and
//! the address families never depend on the `bindv6only` sysctl. Malformed requests get a 4xx
//! or 5xx answer and the connection is closed; nothing a client sends can panic the server
//! (the parser is in [`http`], bounded and tested against mangled input).

pub mod http;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use self::http::{HeadError, Request};

/// One line to stderr, ignoring failures: `eprintln!` panics when stderr is gone (a closed
/// pipe), and a vanished log reader must not take the server down.
macro_rules! log {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// The HTTP port the lab's pods listen on.
pub const HTTP_PORT: u16 = 80;
/// The UDP echo port the lab's pods listen on.
pub const UDP_PORT: u16 = 5353;

/// How long a connection may sit without sending (between requests, or inside one) before it
/// is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection closed after an error response is drained, so unread input does not
/// turn the close into a reset that destroys the response before the client reads it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Concurrent connections per server; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;

/// What to serve.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// The name in every answer (the pod's name).
    pub name: String,
    /// TCP addresses for HTTP.
    pub http: Vec<SocketAddr>,
    /// UDP addresses for the echo.
    pub udp: Vec<SocketAddr>,
    /// Log one line per HTTP request to stderr (errors are always logged).
    pub log_requests: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// A listener could not be created.
    #[error("cannot listen on {proto} {addr}")]
    Bind {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The name would not fit in a header or a one-line answer.
    #[error("server name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Neither HTTP nor UDP addresses.
    #[error("nothing to serve: no HTTP and no UDP address")]
    NothingToServe,
}

/// The answer line for a client: `pod=<name> client=<ip>:<port>\n` (IPv6 as `[ip]:port`,
/// IPv4-mapped IPv6 shown as IPv4).
pub fn id_line(name: &str, client: SocketAddr) -> String {
    format!("pod={name} client={}\n", canonical(client))
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// A bound server, not yet serving (so a caller can read the ports it got for `:0`).
#[derive(Debug)]
pub struct Echo {
    cx: Arc<Cx>,
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

impl Echo {
    /// Creates every listener (inside a Tokio runtime).
    pub fn bind(cfg: &EchoConfig) -> Result<Self, EchoError> {
        let bad = |reason| EchoError::BadName {
            name: cfg.name.clone(),
            reason,
        };
        if cfg.name.is_empty() {
            return Err(bad("empty"));
        }
        if cfg.name.len() > 253 || !cfg.name.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(bad(
                "expected at most 253 printable ASCII characters without spaces",
            ));
        }
        if cfg.http.is_empty() && cfg.udp.is_empty() {
            return Err(EchoError::NothingToServe);
        }
        let mut tcp = Vec::new();
        for &addr in &cfg.http {
            let err = |source| EchoError::Bind {
                proto: "tcp",
                addr,
                source,
            };
            let s = socket(addr, Type::STREAM, Protocol::TCP).map_err(err)?;
            s.listen(1024).map_err(err)?;
            tcp.push(TcpListener::from_std(s.into()).map_err(err)?);
        }
        let mut udp = Vec::new();
        for &addr in &cfg.udp {
            let err = |source| EchoError::Bind {
                proto: "udp",
                addr,
                source,
            };
            let s = socket(addr, Type::DGRAM, Protocol::UDP).map_err(err)?;
            udp.push(UdpSocket::from_std(s.into()).map_err(err)?);
        }
        Ok(Self {
            cx: Arc::new(Cx {
                name: cfg.name.clone(),
                log_requests: cfg.log_requests,
            }),
            tcp,
            udp,
        })
    }

    /// The HTTP listeners' addresses.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The UDP sockets' addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|u| u.local_addr().ok())
            .collect()
    }

    /// Serves until the task is dropped (the loops only end if one of them panics).
    pub async fn run(self) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        for l in self.tcp {
            tasks.spawn(accept_loop(l, self.cx.clone(), limit.clone()));
        }
        for u in self.udp {
            tasks.spawn(udp_loop(u, self.cx.clone()));
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                log!("echo: a listener task ended: {e}");
            }
        }
    }
}

/// What every connection needs to know.
#[derive(Debug)]
struct Cx {
    name: String,
    log_requests: bool,
}

async fn accept_loop(l: TcpListener, cx: Arc<Cx>, limit: Arc<Semaphore>) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match l.accept().await {
            Ok((s, peer)) => {
                let cx = cx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let peer = canonical(peer);
                    if let Err(e) = serve_conn(s, peer, &cx).await {
                        log!("echo: {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                log!("echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn udp_loop(u: UdpSocket, cx: Arc<Cx>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match u.recv_from(&mut buf).await {
            Ok((_, peer)) => {
                if let Err(e) = u.send_to(id_line(&cx.name, peer).as_bytes(), peer).await {
                    log!("echo: udp reply to {peer}: {e}");
                }
            }
            Err(e) => {
                log!("echo: udp receive: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads into `buf` with the idle timeout; `Ok(0)` on EOF or timeout.
async fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    match timeout(IDLE_TIMEOUT, s.read(&mut chunk)).await {
        Err(_) => Ok(0),
        Ok(Ok(n)) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            Ok(n)
        }
        Ok(Err(e)) => Err(e),
    }
}

/// One connection: requests until the client closes, asks to close, goes idle, or sends
/// something malformed.
async fn serve_conn(mut s: TcpStream, peer: SocketAddr, cx: &Cx) -> io::Result<()> {
    let local = canonical(s.local_addr()?);
    let mut buf = Vec::with_capacity(1024);
    loop {
        let n = loop {
            if let Some(n) = http::head_len(&buf) {
                break n;
            }
            if buf.len() > http::MAX_HEAD {
                return reject(&mut s, &HeadError::TooLarge, cx, peer).await;
            }
            if read_some(&mut s, &mut buf).await? == 0 {
                // Closed or idle. A partial head that will never end is malformed.
                if buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                return reject(&mut s, &HeadError::Bad("incomplete request head"), cx, peer).await;
            }
        };
        let head: Vec<u8> = buf.drain(..n).collect();
        let req = match http::parse_head(&head) {
            Ok(r) => r,
            Err(e) => return reject(&mut s, &e, cx, peer).await,
        };
        // The body is read and thrown away, so the next request starts at the right byte.
        let mut left = req.content_length;
        loop {
            let have = u64::try_from(buf.len()).unwrap_or(u64::MAX).min(left);
            buf.drain(..usize::try_from(have).unwrap_or(buf.len()));
            left -= have;
            if left == 0 {
                break;
            }
            if read_some(&mut s, &mut buf).await? == 0 {
                return Ok(());
            }
        }
        let keep = respond(&mut s, &req, cx, peer, local).await?;
        if !keep {
            close_gently(&mut s).await?;
            return Ok(());
        }
    }
}

fn head_bytes(
    status: (u16, &str),
    len: u64,
    keep: bool,
    name: &str,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len}\r\nConnection: {}\r\nX-Pod: {name}\r\nX-Client: {peer}\r\n",
        status.0,
        status.1,
        if keep { "keep-alive" } else { "close" },
    );
    if let Some(l) = local {
        h.push_str(&format!("X-Server: {l}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Answers a parsed request; returns whether the connection stays open.
async fn respond(
    s: &mut TcpStream,
    req: &Request,
    cx: &Cx,
    peer: SocketAddr,
    local: SocketAddr,
) -> io::Result<bool> {
    let name = cx.name.as_str();
    let line = id_line(name, peer);
    if req.path == "/stream" {
        let p = match http::parse_stream_query(req.query.as_deref()) {
            Ok(p) => p,
            Err(why) => {
                reject(s, &HeadError::Bad(why), cx, peer).await?;
                return Ok(false);
            }
        };
        if cx.log_requests {
            log!(
                "echo: {peer} {} {} -> 200 ({} bytes)",
                req.method,
                req.path,
                p.bytes
            );
        }
        s.write_all(&head_bytes(
            (200, "OK"),
            p.bytes,
            req.keep_alive,
            name,
            peer,
            Some(local),
        ))
        .await?;
        if req.is_head() {
            return Ok(req.keep_alive);
        }
        // The line repeated, so every chunk a client sees names the backend.
        let mut pattern = line.as_bytes().iter().copied().cycle();
        let mut left = p.bytes;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(p.chunk).min(p.chunk);
            let chunk: Vec<u8> = pattern.by_ref().take(n).collect();
            s.write_all(&chunk).await?;
            left = left.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
            if left > 0 && p.interval_ms > 0 {
                tokio::time::sleep(Duration::from_millis(p.interval_ms)).await;
            }
        }
        return Ok(req.keep_alive);
    }
    if cx.log_requests {
        log!("echo: {peer} {} {} -> 200", req.method, req.path);
    }
    let body = line.as_bytes();
    let mut out = head_bytes(
        (200, "OK"),
        u64::try_from(body.len()).unwrap_or(0),
        req.keep_alive,
        name,
        peer,
        Some(local),
    );
    if !req.is_head() {
        out.extend_from_slice(body);
    }
    s.write_all(&out).await?;
    Ok(req.keep_alive)
}

/// Sends an error answer and closes the connection.
async fn reject(s: &mut TcpStream, e: &HeadError, cx: &Cx, peer: SocketAddr) -> io::Result<()> {
    let name = cx.name.as_str();
    let status = e.status();
    if cx.log_requests {
        log!("echo: {peer} -> {} ({e})", status.0);
    }
    let body = format!("{} {}: {e}\n", status.0, status.1);
    let mut out = head_bytes(
        status,
        u64::try_from(body.len()).unwrap_or(0),
        false,
        name,
        peer,
        None,
    );
    out.extend_from_slice(body.as_bytes());
    s.write_all(&out).await?;
    close_gently(s).await
}

/// Half-closes, then drains what the client still sends (bounded), so closing with unread
/// input (pipelined requests after `Connection: close`, the rest of a rejected request) does
/// not reset the connection before the client has read the answer.
async fn close_gently(s: &mut TcpStream) -> io::Result<()> {
    s.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    let _ = timeout(DRAIN_TIMEOUT, async {
        while total < (1 << 20) {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    Ok(())
}

/// What [`udp_probe`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReply {
    /// The reply's text (lossy UTF-8).
    pub text: String,
    /// Where it came from (for a service, this must be the frontend, not the backend).
    pub from: SocketAddr,
    /// Our own address, as the server should have seen it without translation.
    pub local: SocketAddr,
}

/// Sends one datagram to `to` and waits up to `wait` for one answer (from anywhere: a reply
/// from an address other than `to` is returned, not filtered, so a broken reverse
/// translation is visible).
pub fn udp_probe(to: SocketAddr, payload: &[u8], wait: Duration) -> io::Result<ProbeReply> {
    let any: SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.set_read_timeout(Some(wait))?;
    s.send_to(payload, to)?;
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf)?;
    Ok(ProbeReply {
        text: String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned(),
        from: canonical(from),
        local: s.local_addr()?,
    })
}
