//! The pods' echo server (`rackd-lab echo`), on loopback: the answer line over HTTP (IPv4 and
//! IPv6) and UDP, keep-alive with bodies in between, HEAD, `/stream`, every kind of malformed
//! request answered with its status and the connection closed, and the server still answering
//! afterwards. Then the binary itself, as the lab runs it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use rackd_lab::echo::{Echo, EchoConfig, EchoError, id_line};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Splits everything a connection returned into responses (by Content-Length).
fn responses(mut raw: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head end in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: BTreeMap<String, String> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        let len: usize = headers["content-length"].parse().unwrap();
        let rest = &raw[end + 4..];
        out.push(Resp {
            status,
            headers,
            body: rest[..len.min(rest.len())].to_vec(),
        });
        raw = &rest[len.min(rest.len())..];
    }
    out
}

/// Sends `req`, half-closes, reads until the server closes. Returns the raw bytes and our
/// own address.
async fn exchange(addr: SocketAddr, req: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(req).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    (out, me)
}

async fn start(
    name: &str,
) -> (
    Vec<SocketAddr>,
    Vec<SocketAddr>,
    tokio::task::JoinHandle<()>,
) {
    let e = Echo::bind(&EchoConfig {
        name: name.into(),
        http: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        udp: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        log_requests: false,
    })
    .unwrap();
    let (h, u) = (e.http_addrs(), e.udp_addrs());
    (h, u, tokio::spawn(e.run()))
}

#[tokio::test]
async fn answers_name_the_pod_and_the_client() {
    let (http, udp, task) = start("deathstar-9").await;
    for addr in &http {
        let (raw, me) = exchange(
            *addr,
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: t\r\n\r\n").as_bytes(),
        )
        .await;
        let r = responses(&raw);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        let line = format!("pod=deathstar-9 client={me}\n");
        assert_eq!(String::from_utf8_lossy(&r[0].body), line);
        assert_eq!(r[0].headers["x-pod"], "deathstar-9");
        assert_eq!(r[0].headers["x-client"], me.to_string());
        assert_eq!(r[0].headers["x-server"], addr.to_string());
        assert_eq!(r[0].headers["connection"], "keep-alive");
    }
    for addr in &udp {
        let bind: SocketAddr = if addr.is_ipv4() {
            "127.0.0.1:0".parse().unwrap()
        } else {
            "[::1]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(bind).await.unwrap();
        s.send_to(b"hello", addr).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = s.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, *addr);
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            id_line("deathstar-9", s.local_addr().unwrap())
        );
        // An empty datagram is answered too.
        s.send_to(b"", addr).await.unwrap();
        let (n, _) = s.recv_from(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"pod=deathstar-9 client="));
    }
    assert_eq!(
        id_line("p", "[::ffff:10.0.3.2]:41234".parse().unwrap()),
        "pod=p client=10.0.3.2:41234\n"
    );
    task.abort();
}

#[tokio::test]
async fn keep_alive_bodies_head_and_close() {
    let (http, _, task) = start("p").await;
    let addr = http[0];
    // Three pipelined requests: a POST whose body must be skipped, a GET, then a HEAD asking
    // to close; then bytes after the close that must be ignored.
    let req = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello worldGET /y?z HTTP/1.1\r\nHost: h\r\n\r\nHEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let (raw, me) = exchange(addr, req).await;
    let r = responses(&raw);
    assert_eq!(r.len(), 3, "{}", String::from_utf8_lossy(&raw));
    let line = format!("pod=p client={me}\n");
    assert_eq!((r[0].status, r[0].body.as_slice()), (200, line.as_bytes()));
    assert_eq!(r[1].headers["connection"], "keep-alive");
    assert_eq!(r[1].body, line.as_bytes());
    // HEAD (last, so the parser here sees no body): the GET's Content-Length, no body.
    assert_eq!(r[2].status, 200);
    assert_eq!(r[2].headers["content-length"], line.len().to_string());
    assert!(r[2].body.is_empty());
    assert_eq!(r[2].headers["connection"], "close");
    // HTTP/1.0 without keep-alive closes after one answer.
    let (raw, _) = exchange(addr, b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(responses(&raw).len(), 1);
    // Bare LF line ends (nc users).
    let (raw, _) = exchange(addr, b"GET / HTTP/1.1\nHost: h\n\n").await;
    assert_eq!(responses(&raw)[0].status, 200);
    task.abort();
}

#[tokio::test]
async fn stream_sends_n_bytes_in_chunks() {
    let (http, _, task) = start("streamer").await;
    let addr = http[1];
    let (raw, me) = exchange(
        addr,
        b"GET /stream?bytes=2500&chunk=1000&interval_ms=5 HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let r = responses(&raw);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].headers["content-length"], "2500");
    assert_eq!(r[0].body.len(), 2500);
    let line = format!("pod=streamer client={me}\n");
    let expect: Vec<u8> = line.bytes().cycle().take(2500).collect();
    assert_eq!(r[0].body, expect);
    // Zero bytes, and HEAD.
    let (raw, _) = exchange(addr, b"GET /stream?bytes=0 HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(responses(&raw)[0].body.len(), 0);
    let (raw, _) = exchange(addr, b"HEAD /stream?bytes=99 HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let r = responses(&raw);
    assert_eq!((r[0].status, r[0].body.len()), (200, 0));
    assert_eq!(r[0].headers["content-length"], "99");
    // Bad parameters are a 400 that says why.
    for q in ["", "?bytes=x", "?bytes=1&chunk=0", "?bytes=1&speed=2"] {
        let (raw, _) = exchange(
            addr,
            format!("GET /stream{q} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        )
        .await;
        let r = responses(&raw);
        assert_eq!(r[0].status, 400, "{q}");
        assert_eq!(r[0].headers["connection"], "close");
    }
    task.abort();
}

#[tokio::test]
async fn malformed_requests_get_their_status_and_a_close() {
    let (http, _, task) = start("p").await;
    let addr = http[0];
    let long = "a".repeat(9000);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "request line"),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, "Host"),
        (
            b"\x00\x01\x02\xff\xfe\r\n\r\n".to_vec(),
            400,
            "request line",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\n bad fold\r\n\r\n".to_vec(),
            400,
            "folding",
        ),
        (
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n".to_vec(),
            505,
            "version",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            501,
            "transfer-encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
            413,
            "too large",
        ),
        // A head that never ends, longer than the limit.
        (format!("GET /{long}").into_bytes(), 431, "too large"),
        // A head cut short by the client's close.
        (b"GET / HTT".to_vec(), 400, "incomplete"),
    ];
    for (req, status, words) in &cases {
        let (raw, _) = exchange(addr, req).await;
        let r = responses(&raw);
        assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r[0].status, *status, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r[0].headers["connection"], "close");
        let body = String::from_utf8_lossy(&r[0].body);
        assert!(body.contains(words), "{body:?} lacks {words:?}");
    }
    // A good request before a bad one on the same connection is answered; the bad one gets
    // its 400 and the connection ends there.
    let (raw, _) = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nBAD\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let r = responses(&raw);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 400]);
    // A client that connects and closes at once gets nothing and breaks nothing.
    let (raw, _) = exchange(addr, b"").await;
    assert!(raw.is_empty());
    // Positive control: after all that, the server still answers.
    let (raw, me) = exchange(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(
        responses(&raw)[0].body,
        format!("pod=p client={me}\n").as_bytes()
    );
    task.abort();
}

#[tokio::test]
async fn bind_errors_name_the_problem() {
    let cfg = |name: &str, http: Vec<SocketAddr>, udp: Vec<SocketAddr>| EchoConfig {
        name: name.into(),
        http,
        udp,
        log_requests: false,
    };
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for bad in ["", "two words", "tab\tname", "ünicode"] {
        let e = Echo::bind(&cfg(bad, vec![lo], vec![])).unwrap_err();
        assert!(matches!(e, EchoError::BadName { .. }), "{bad:?}: {e}");
    }
    let e = Echo::bind(&cfg("p", vec![], vec![])).unwrap_err();
    assert!(matches!(e, EchoError::NothingToServe), "{e}");
    // A port that is taken (listening, without SO_REUSEPORT).
    let taken = std::net::TcpListener::bind(lo).unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Echo::bind(&cfg("p", vec![addr], vec![])).unwrap_err();
    assert!(e.to_string().contains(&format!("tcp {addr}")), "{e}");
    // IPv4 and IPv6 wildcards on one port coexist (IPv6 sockets are IPv6-only).
    let e = Echo::bind(&cfg("p", vec![], vec!["0.0.0.0:0".parse().unwrap()])).unwrap();
    let port = e.udp_addrs()[0].port();
    Echo::bind(&cfg(
        "p",
        vec![],
        vec![SocketAddr::new("::".parse().unwrap(), port)],
    ))
    .unwrap();
}

/// The binary as the lab runs it: it prints its addresses, answers, and is stopped by PID.
#[test]
fn the_binary_serves_until_killed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rackd-lab"))
        .args([
            "echo",
            "--name",
            "bin-pod",
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // The pipe is closed after the first line: the server's later log lines then fail, which
    // must not disturb it.
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // "echo: pod=bin-pod http [127.0.0.1:P] udp [127.0.0.1:Q]"
    let addrs: Vec<SocketAddr> = first
        .split(['[', ']', ' ', ','])
        .filter_map(|w| w.parse().ok())
        .collect();
    let result = std::panic::catch_unwind(|| {
        assert!(first.starts_with("echo: pod=bin-pod"), "{first}");
        assert_eq!(addrs.len(), 2, "{first}");
        let mut s = std::net::TcpStream::connect(addrs[0]).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let me = s.local_addr().unwrap();
        assert!(
            out.ends_with(&format!("\r\n\r\npod=bin-pod client={me}\n")),
            "{out}"
        );
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        u.send_to(b"x", addrs[1]).unwrap();
        let mut buf = [0u8; 256];
        let n = u.recv(&mut buf).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            format!("pod=bin-pod client={}\n", u.local_addr().unwrap())
        );
    });
    child.kill().unwrap();
    child.wait().unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    // Without root, the echo command still runs (bad flags are clap's errors, not a root
    // check).
    let out = Command::new(env!("CARGO_BIN_EXE_rackd-lab"))
        .args(["echo", "--http", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http"));
}

/// `rackd-lab udp-probe`: the answer on stdout; exit 3 when it comes from another address than
/// the one probed (here a wildcard-bound server probed at 127.0.0.2 answers from 127.0.0.1,
/// the way a missing reverse translation shows), 1 when none comes.
#[tokio::test]
async fn udp_probe_reports_the_answer_and_its_source() {
    let e = Echo::bind(&EchoConfig {
        name: "probed".into(),
        http: vec![],
        udp: vec!["0.0.0.0:0".parse().unwrap()],
        log_requests: false,
    })
    .unwrap();
    let port = e.udp_addrs()[0].port();
    let task = tokio::spawn(e.run());
    let probe = |addr: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rackd-lab"))
            .args(["udp-probe", "--timeout-ms", "2000", &addr])
            .output()
            .await
            .unwrap()
    };
    let out = probe(format!("127.0.0.1:{port}")).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("pod=probed client=127.0.0.1:"),
        "{out:?}"
    );
    let out = probe(format!("127.0.0.2:{port}")).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pod=probed "));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("came from 127.0.0.1:{port}")),
        "{out:?}"
    );
    task.abort();
    // Nobody answers on a port nothing listens on (the server is gone).
    let _ = task.await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rackd-lab"))
        .args([
            "udp-probe",
            "--timeout-ms",
            "200",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no UDP answer"));
}
