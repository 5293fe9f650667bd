//! The datapath seen from the control plane: program and remove responder entries, send
//! gratuitous ARP / unsolicited NA. The daemon plugs in the eBPF responder; tests use
//! [`RecordingAnnouncer`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::info;

/// What the ownership task needs from the ARP/NDP responder.
pub trait Announcer {
    /// Error of the underlying datapath.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Starts answering ARP (IPv4) or NS (IPv6) for `ip` on `ifindex`.
    fn announce(&mut self, ip: IpAddr, ifindex: u32) -> Result<(), Self::Error>;

    /// Stops answering for `ip` on `ifindex`.
    fn withdraw(&mut self, ip: IpAddr, ifindex: u32) -> Result<(), Self::Error>;

    /// Sends `count` gratuitous ARP / unsolicited NA frames back to back (the task spaces
    /// repetitions out itself, calling this with `count = 1`).
    fn gratuitous(&mut self, ip: IpAddr, ifindex: u32, count: u32) -> Result<(), Self::Error>;

    /// Stamps the datapath liveness guard. Called on every acknowledged lease renewal (or
    /// every tick with the `local` backend), never after the lease is lost. The datapath
    /// should stop answering when the stamp is older than the *renew deadline*: renewals then
    /// stop counting before etcd can expire the lease and hand the IPs to another node, so
    /// even a node killed with `kill -9` never answers alongside its successor.
    fn heartbeat(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Replies sent for (ip, ifindex), if the datapath counts them.
    fn replies(&self, _ip: IpAddr, _ifindex: u32) -> Option<u64> {
        None
    }
}

/// Never fails.
#[derive(Debug, thiserror::Error)]
#[error("infallible")]
pub struct Infallible;

/// One call recorded by [`RecordingAnnouncer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `announce`.
    Announce {
        /// Node that called.
        node: String,
        /// IP.
        ip: IpAddr,
        /// Interface index.
        ifindex: u32,
    },
    /// `withdraw`.
    Withdraw {
        /// Node that called.
        node: String,
        /// IP.
        ip: IpAddr,
        /// Interface index.
        ifindex: u32,
    },
    /// `gratuitous`.
    Gratuitous {
        /// Node that called.
        node: String,
        /// IP.
        ip: IpAddr,
    },
    /// `heartbeat`.
    Heartbeat {
        /// Node that called.
        node: String,
    },
}

/// A shared, ordered log of announcer calls across several nodes, so tests can replay it and
/// check that no IP was ever announced by two nodes at once.
#[derive(Debug, Clone, Default)]
pub struct AnnounceLog(Arc<Mutex<Vec<(Instant, Recorded)>>>);

impl AnnounceLog {
    /// All calls so far, in order.
    #[must_use]
    pub fn calls(&self) -> Vec<Recorded> {
        self.timed().into_iter().map(|(_, r)| r).collect()
    }

    /// All calls so far with the time they were made, in order.
    #[must_use]
    pub fn timed(&self) -> Vec<(Instant, Recorded)> {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Number of calls so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.lock().map(|g| g.len()).unwrap_or_default()
    }

    /// Whether no call was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, r: Recorded) {
        if let Ok(mut g) = self.0.lock() {
            g.push((Instant::now(), r));
        }
    }

    /// Replays the log and returns the first IP that two nodes announced at the same time,
    /// ignoring calls by nodes in `ignore` (e.g. a node killed with its entries left behind,
    /// which the datapath liveness guard would retire).
    #[must_use]
    pub fn first_double_owner(&self, ignore: &[&str]) -> Option<IpAddr> {
        use std::collections::BTreeMap;
        let mut live: BTreeMap<IpAddr, BTreeMap<String, u32>> = BTreeMap::new();
        for c in self.calls() {
            match c {
                Recorded::Announce { node, .. } | Recorded::Withdraw { node, .. }
                    if ignore.contains(&node.as_str()) => {}
                Recorded::Announce { node, ip, .. } => {
                    let nodes = live.entry(ip).or_default();
                    *nodes.entry(node).or_default() += 1;
                    if nodes.len() > 1 {
                        return Some(ip);
                    }
                }
                Recorded::Withdraw { node, ip, .. } => {
                    if let Some(nodes) = live.get_mut(&ip)
                        && let Some(n) = nodes.get_mut(&node)
                    {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            nodes.remove(&node);
                        }
                    }
                }
                Recorded::Gratuitous { .. } | Recorded::Heartbeat { .. } => {}
            }
        }
        None
    }

    /// Heartbeats stamped by `node` so far.
    #[must_use]
    pub fn heartbeats(&self, node: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Recorded::Heartbeat { node: n } if n == node))
            .count()
    }

    /// Which nodes currently announce `ip` (after replaying the log).
    #[must_use]
    pub fn announcing(&self, ip: IpAddr) -> Vec<String> {
        use std::collections::BTreeMap;
        let mut live: BTreeMap<String, i64> = BTreeMap::new();
        for c in self.calls() {
            match c {
                Recorded::Announce { node, ip: i, .. } if i == ip => {
                    *live.entry(node).or_default() += 1;
                }
                Recorded::Withdraw { node, ip: i, .. } if i == ip => {
                    *live.entry(node).or_default() -= 1;
                }
                _ => {}
            }
        }
        live.into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k)
            .collect()
    }
}

/// An [`Announcer`] that records calls into a shared [`AnnounceLog`] (and logs them).
#[derive(Debug, Clone)]
pub struct RecordingAnnouncer {
    node: String,
    log: AnnounceLog,
    quiet: bool,
}

impl RecordingAnnouncer {
    /// Records as `node` into `log`; `quiet` suppresses the per-call log line.
    #[must_use]
    pub fn new(node: impl Into<String>, log: AnnounceLog, quiet: bool) -> Self {
        Self {
            node: node.into(),
            log,
            quiet,
        }
    }
}

impl Announcer for RecordingAnnouncer {
    type Error = Infallible;

    fn announce(&mut self, ip: IpAddr, ifindex: u32) -> Result<(), Infallible> {
        if !self.quiet {
            info!(node = %self.node, %ip, ifindex, "announce");
        }
        self.log.push(Recorded::Announce {
            node: self.node.clone(),
            ip,
            ifindex,
        });
        Ok(())
    }

    fn withdraw(&mut self, ip: IpAddr, ifindex: u32) -> Result<(), Infallible> {
        if !self.quiet {
            info!(node = %self.node, %ip, ifindex, "withdraw");
        }
        self.log.push(Recorded::Withdraw {
            node: self.node.clone(),
            ip,
            ifindex,
        });
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<(), Infallible> {
        self.log.push(Recorded::Heartbeat {
            node: self.node.clone(),
        });
        Ok(())
    }

    fn gratuitous(&mut self, ip: IpAddr, ifindex: u32, count: u32) -> Result<(), Infallible> {
        if !self.quiet {
            info!(node = %self.node, %ip, ifindex, count, "gratuitous");
        }
        self.log.push(Recorded::Gratuitous {
            node: self.node.clone(),
            ip,
        });
        Ok(())
    }
}
