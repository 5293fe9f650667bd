//! Rows for `rackctl l2 leases` and `rackctl l2 announcements` (and their `-o json`).

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::backend::WriteStats;

/// One IP group's claim, as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRow {
    /// The group IP.
    pub ip: IpAddr,
    /// Services (`namespace/name`) carrying the IP, as far as this node's policies select them.
    pub services: Vec<String>,
    /// Holder node, if any.
    pub holder: Option<String>,
    /// Seconds since this node saw the current holder take the group.
    pub lease_age_secs: f64,
    /// Whether this node is a candidate for the group.
    pub candidate: bool,
}

/// One (IP, interface) entry this node answers for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementRow {
    /// The IP.
    pub ip: IpAddr,
    /// Services carrying it.
    pub services: Vec<String>,
    /// Interface name.
    pub interface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Holder (this node).
    pub holder: String,
    /// Seconds since the claim was won.
    pub lease_age_secs: f64,
    /// ARP replies / neighbour advertisements sent, if the datapath counts them.
    pub replies_sent: Option<u64>,
}

/// A node instance's state for queries and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Node name.
    pub node: String,
    /// Whether the node lease is live.
    pub lease_live: bool,
    /// Nodes with a live node lease.
    pub members: Vec<String>,
    /// Every group known to this node.
    pub leases: Vec<LeaseRow>,
    /// Entries this node answers for.
    pub announcements: Vec<AnnouncementRow>,
    /// Datastore writes made by this node's backend.
    pub writes: WriteStats,
}

impl Snapshot {
    /// Groups held by this node.
    #[must_use]
    pub fn held(&self) -> usize {
        self.leases
            .iter()
            .filter(|l| l.holder.as_deref() == Some(self.node.as_str()))
            .count()
    }
}

fn svc_list(s: &[String]) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.join(",")
    }
}

/// Renders `rackctl l2 leases` as a tab-separated table.
#[must_use]
pub fn render_leases(rows: &[LeaseRow]) -> String {
    let mut out = String::from("IP\tService\tHolder\tAge\tCandidate\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{:.0}s\t{}",
            r.ip,
            svc_list(&r.services),
            r.holder.as_deref().unwrap_or("-"),
            r.lease_age_secs,
            if r.candidate { "yes" } else { "no" }
        );
    }
    out
}

/// Renders `rackctl l2 announcements` as a tab-separated table.
#[must_use]
pub fn render_announcements(rows: &[AnnouncementRow]) -> String {
    let mut out = String::from("IP\tService\tInterface\tHolder\tAge\tReplies\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{:.0}s\t{}",
            r.ip,
            svc_list(&r.services),
            r.interface,
            r.holder,
            r.lease_age_secs,
            r.replies_sent
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
    }
    out
}
