//! A throw-away single-member etcd for tests, examples and benchmarks.
//!
//! Runs Debian's `etcd` (etcd-server 3.4) on free loopback ports with its data in a private
//! temporary directory; dropping the guard kills exactly that process (by its PID) and removes
//! the directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Errors starting the test etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    /// Some I/O step (temp dir, port, spawn) failed.
    #[error("{what}")]
    Io {
        /// The step.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not accept clients in time (its log is in the error).
    #[error("etcd did not become ready: {log}")]
    NotReady {
        /// Tail of etcd's log.
        log: String,
    },
}

/// A running etcd, killed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn free_port() -> Result<u16, EtcdServerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| EtcdServerError::Io {
        what: "binding a free port",
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| EtcdServerError::Io {
            what: "reading a free port",
            source,
        })
}

impl EtcdServer {
    /// Starts etcd. `fast` sets `--heartbeat-interval=10 --election-timeout=100` (ms), which
    /// lowers etcd's minimum lease TTL from 2 s to 1 s (minimum = ceil(1.5 × election
    /// timeout)).
    pub fn start(fast: bool) -> Result<Self, EtcdServerError> {
        Self::start_on(fast, None)
    }

    /// Like [`EtcdServer::start`], with the client port chosen by the caller (e.g. to start
    /// etcd after a client that already points at it).
    pub fn start_on(fast: bool, client_port: Option<u16>) -> Result<Self, EtcdServerError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("l2announcer-etcd-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| EtcdServerError::Io {
            what: "creating the etcd data directory",
            source,
        })?;
        // A port can be taken between probing and etcd binding it; retry a few times.
        let mut last_log = String::new();
        for _ in 0..5 {
            let (cp, pp) = (client_port.map_or_else(free_port, Ok)?, free_port()?);
            let client = format!("http://127.0.0.1:{cp}");
            let peer = format!("http://127.0.0.1:{pp}");
            let log = std::fs::File::create(dir.join("etcd.log")).map_err(|source| {
                EtcdServerError::Io {
                    what: "creating the etcd log",
                    source,
                }
            })?;
            let log2 = log.try_clone().map_err(|source| EtcdServerError::Io {
                what: "duplicating the etcd log",
                source,
            })?;
            let mut cmd = Command::new("etcd");
            cmd.arg("--name=t")
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=t={peer}"))
                .arg("--log-level=info")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            if fast {
                cmd.arg("--heartbeat-interval=10")
                    .arg("--election-timeout=100");
            }
            let child = cmd.spawn().map_err(|source| EtcdServerError::Io {
                what: "spawning etcd (Debian package etcd-server)",
                source,
            })?;
            let mut server = Self {
                child,
                dir: dir.clone(),
                endpoint: client,
            };
            if server.wait_ready(cp) {
                return Ok(server);
            }
            last_log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
            server.kill();
            std::mem::forget(server);
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let tail: String = last_log
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ");
        Err(EtcdServerError::NotReady { log: tail })
    }

    /// Waits until the client port accepts connections and etcd has a leader.
    fn wait_ready(&mut self, port: u16) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                // etcd logs "ready to serve client requests" once it has a leader.
                if log.contains("ready to serve") || start.elapsed() > Duration::from_secs(2) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn kill(&mut self) {
        // Child::kill signals exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The client URL.
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The etcd process ID.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
