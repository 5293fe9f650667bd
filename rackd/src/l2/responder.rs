//! The eBPF responder as the ownership task's [`Announcer`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use datapath::Responder;
use l2announcer::Announcer;
use tracing::{info, warn};

/// Attaches the responder to an interface the first time an entry is programmed on it (the
/// program then stays attached and pinned; `rackd datapath uninstall` removes it).
#[derive(Debug)]
pub struct DatapathAnnouncer {
    responder: Responder,
    attached: BTreeSet<u32>,
}

impl DatapathAnnouncer {
    /// Takes over a freshly opened responder. Entries a previous daemon left behind are
    /// withdrawn before the first heartbeat: this daemon holds no claim yet, and another node
    /// may own those IPs by now (the liveness guard keeps them silent meanwhile).
    pub fn new(mut responder: Responder) -> Result<Self, datapath::Error> {
        let left = responder.counters()?;
        for c in &left {
            responder.withdraw(c.ip, c.ifindex)?;
        }
        if !left.is_empty() {
            info!(
                entries = left.len(),
                "withdrew responder entries left by a previous run"
            );
        }
        let attached = responder.attached()?.into_iter().collect();
        Ok(Self {
            responder,
            attached,
        })
    }
}

impl Announcer for DatapathAnnouncer {
    type Error = datapath::Error;

    fn announce(&mut self, ip: IpAddr, ifindex: u32) -> Result<(), Self::Error> {
        if !self.attached.contains(&ifindex) {
            self.responder.attach(ifindex)?;
            self.attached.insert(ifindex);
            info!(ifindex, "ARP/NDP responder attached");
        }
        self.responder.announce(ip, ifindex)
    }

    fn withdraw(&mut self, ip: IpAddr, ifindex: u32) -> Result<(), Self::Error> {
        self.responder.withdraw(ip, ifindex)
    }

    fn gratuitous(&mut self, ip: IpAddr, ifindex: u32, count: u32) -> Result<(), Self::Error> {
        self.responder.send_gratuitous(ip, ifindex, count)
    }

    fn heartbeat(&mut self) -> Result<(), Self::Error> {
        self.responder.heartbeat()
    }

    fn replies(&self, ip: IpAddr, ifindex: u32) -> Option<u64> {
        match self.responder.replies(ip, ifindex) {
            Ok(n) => n,
            Err(e) => {
                warn!(%ip, ifindex, error = %e, "reading responder counters");
                None
            }
        }
    }
}
