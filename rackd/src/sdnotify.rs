//! The service manager's readiness protocol (`sd_notify(3)`), so rackd runs as a systemd
//! `Type=notify` unit with a watchdog: `READY=1` once the first configuration is applied,
//! `STATUS=` lines for `systemctl status`, `WATCHDOG=1` from the controller loop (a wedged
//! reconcile stops the pings and systemd restarts rackd), `STOPPING=1` on shutdown.
//!
//! The protocol is one datagram per message to the Unix socket named by `NOTIFY_SOCKET` (a path,
//! or `@name` in the abstract namespace); it needs no library. Parsing the environment is pure
//! so that every malformed value has a test.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// A bad `NOTIFY_SOCKET` / `WATCHDOG_*` value, or a failed send.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "NOTIFY_SOCKET={value:?}: expected an absolute socket path or @name (abstract namespace)"
    )]
    Socket { value: String },
    #[error("WATCHDOG_USEC={value:?}: expected a positive whole number of microseconds")]
    WatchdogUsec { value: String },
    #[error("WATCHDOG_PID={value:?}: expected a process ID")]
    WatchdogPid { value: String },
    #[error("NOTIFY_SOCKET {addr}: cannot open a datagram socket to it")]
    Open {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("NOTIFY_SOCKET {addr}: cannot send {message:?}")]
    Send {
        addr: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    Path(PathBuf),
    /// The name after `@`, in Linux's abstract socket namespace.
    Abstract(Vec<u8>),
}

impl std::fmt::Display for NotifyAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyAddr::Path(p) => write!(f, "{}", p.display()),
            NotifyAddr::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// `NOTIFY_SOCKET`'s value. Unset or empty means "not run by a service manager" (`None`).
pub fn parse_socket(value: Option<&str>) -> Result<Option<NotifyAddr>, NotifyError> {
    let bad = || NotifyError::Socket {
        value: value.unwrap_or_default().to_owned(),
    };
    match value {
        None | Some("") => Ok(None),
        Some(v) if v.starts_with('/') => Ok(Some(NotifyAddr::Path(v.into()))),
        // `@` alone would be the unnamed socket: nothing can be sent there.
        Some(v) => match v.strip_prefix('@') {
            Some(name) if !name.is_empty() => Ok(Some(NotifyAddr::Abstract(name.into()))),
            // Relative paths, `vsock:` (systemd 254 and later, for VMs) and anything else.
            _ => Err(bad()),
        },
    }
}

/// How often to send `WATCHDOG=1`, after `sd_watchdog_enabled(3)`: `WATCHDOG_USEC` set, and
/// `WATCHDOG_PID` unset or this process. Half the timeout, as that page advises, so one late
/// ping does not get the service killed.
pub fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    me: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let timeout =
        usec.parse::<u64>()
            .ok()
            .filter(|&u| u > 0)
            .ok_or_else(|| NotifyError::WatchdogUsec {
                value: usec.to_owned(),
            })?;
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        let pid = pid.parse::<u32>().map_err(|_| NotifyError::WatchdogPid {
            value: pid.to_owned(),
        })?;
        if pid != me {
            // Meant for another process (a wrapper that exec'd us keeps it, say).
            return Ok(None);
        }
    }
    // Never zero (WATCHDOG_USEC=1): a zero-period timer is not a timer.
    Ok(Some(
        Duration::from_micros(timeout / 2).max(Duration::from_millis(1)),
    ))
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    shown: String,
    /// Send `WATCHDOG=1` this often (`None`: no watchdog asked for).
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// From this process's environment; `Ok(None)` when no service manager asked. A bad
    /// watchdog value is logged and leaves the watchdog off: READY=1 must still go out, or
    /// systemd would fail the start over a setting it can live without.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        let var = |k: &str| std::env::var(k).ok();
        let Some(addr) = parse_socket(var("NOTIFY_SOCKET").as_deref())? else {
            return Ok(None);
        };
        let watchdog = watchdog_interval(
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "watchdog off");
            None
        });
        Self::open(&addr, watchdog).map(Some)
    }

    /// A notifier for `addr`.
    pub fn open(addr: &NotifyAddr, watchdog: Option<Duration>) -> Result<Self, NotifyError> {
        let shown = addr.to_string();
        let open_err = |source| NotifyError::Open {
            addr: shown.clone(),
            source,
        };
        let sa = match addr {
            NotifyAddr::Path(p) => SocketAddr::from_pathname(p),
            NotifyAddr::Abstract(n) => SocketAddr::from_abstract_name(n),
        }
        .map_err(open_err)?;
        let sock = UnixDatagram::unbound().map_err(open_err)?;
        // Never stall the controller on a full socket buffer: a lost STATUS is harmless, and a
        // lost watchdog ping is followed by the next.
        sock.set_nonblocking(true).map_err(open_err)?;
        Ok(Self {
            sock,
            addr: sa,
            shown,
            watchdog,
        })
    }

    /// Sends one message (`KEY=value` lines).
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        self.sock
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(drop)
            .map_err(|source| NotifyError::Send {
                addr: self.shown.clone(),
                message: message.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn socket_values() {
        assert_eq!(parse_socket(None).unwrap(), None);
        assert_eq!(parse_socket(Some("")).unwrap(), None);
        assert_eq!(
            parse_socket(Some("/run/systemd/notify")).unwrap(),
            Some(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_socket(Some("@rackd/x")).unwrap(),
            Some(NotifyAddr::Abstract(b"rackd/x".to_vec()))
        );
        for bad in ["run/notify", "@", "vsock:2:1234", " /x"] {
            let e = parse_socket(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("NOTIFY_SOCKET={bad:?}")) && e.contains("expected"),
                "{e}"
            );
        }
    }

    #[test]
    fn watchdog_values() {
        let w = |u, p| watchdog_interval(u, p, 42);
        assert_eq!(w(None, None).unwrap(), None);
        assert_eq!(w(Some(""), None).unwrap(), None);
        assert_eq!(
            w(Some("30000000"), None).unwrap(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            w(Some("30000000"), Some("42")).unwrap(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(w(Some("1"), None).unwrap(), Some(Duration::from_millis(1)));
        // Another process's watchdog.
        assert_eq!(w(Some("30000000"), Some("41")).unwrap(), None);
        for bad in ["0", "-1", "30s", "1e6", " 5"] {
            let e = w(Some(bad), None).unwrap_err().to_string();
            assert!(e.contains(&format!("WATCHDOG_USEC={bad:?}")), "{e}");
        }
        let e = w(Some("1000"), Some("x")).unwrap_err().to_string();
        assert!(e.contains("WATCHDOG_PID=\"x\""), "{e}");
    }

    #[test]
    fn messages_arrive_at_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::open(&NotifyAddr::Path(path.clone()), None).unwrap();
        n.send("READY=1\nSTATUS=ok").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
        // The receiver gone: one clear error naming the socket and the message.
        drop(rx);
        let e = n.send("WATCHDOG=1").unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains(&path.display().to_string()) && shown.contains("WATCHDOG=1"),
            "{shown}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn messages_arrive_at_an_abstract_socket() {
        let name = format!("rackd-sdnotify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let addr = parse_socket(Some(&format!("@{name}"))).unwrap().unwrap();
        Notifier::open(&addr, None)
            .unwrap()
            .send("STOPPING=1")
            .unwrap();
        let mut buf = [0u8; 16];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
