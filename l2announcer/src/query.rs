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
    /// Interfaces this node would answer on if it held the group (empty when it is not a
    /// candidate).
    #[serde(default)]
    pub interfaces: Vec<String>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_and_json_round_trips() {
        let s = Snapshot {
            node: "a".into(),
            lease_live: true,
            members: vec!["a".into(), "b".into()],
            leases: vec![LeaseRow {
                ip: "192.0.2.1".parse().unwrap(),
                services: vec!["default/web".into()],
                interfaces: vec!["eth0".into()],
                holder: Some("a".into()),
                lease_age_secs: 3.2,
                candidate: true,
            }],
            announcements: vec![AnnouncementRow {
                ip: "192.0.2.1".parse().unwrap(),
                services: vec!["default/web".into()],
                interface: "eth0".into(),
                ifindex: 2,
                holder: "a".into(),
                lease_age_secs: 3.2,
                replies_sent: Some(7),
            }],
            writes: WriteStats {
                keepalives: 5,
                ..Default::default()
            },
        };
        assert_eq!(s.held(), 1);
        assert!(s.writes.by_kind().contains(&("keepalive", 5)));
        let t = render_announcements(&s.announcements);
        assert_eq!(
            t.lines().nth(1),
            Some("192.0.2.1\tdefault/web\teth0\ta\t3s\t7")
        );
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
