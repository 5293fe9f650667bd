//! Pure host-state tracking shared by the monitor and the fake: the tables a notification
//! updates, and which link up/down changes the callback has not heard of yet.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::types::{Address, DefaultGateways, HostState, Link, LinkChange, Neighbour};

/// One notification, reduced to what the published state needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Link(Link),
    LinkGone(u32),
    Address(Address),
    AddressGone(Address),
    Neighbour(Neighbour),
    NeighbourGone(u32, IpAddr),
    /// A default route of the main table was added, changed or removed.
    DefaultRoute,
}

/// What applying a [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Effect {
    /// The published state changed.
    pub published: bool,
    /// Links were added, removed or changed (report up/down changes).
    pub links: bool,
    /// The default gateways may have changed: re-read them. The kernel removes IPv4 routes
    /// without notifications when their link goes down or their address goes away, so these
    /// events count too.
    pub gateways_stale: bool,
}

/// Everything a full dump gives.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dump {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub neighbours: Vec<Neighbour>,
    pub gateways: DefaultGateways,
}

/// The published tables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    links: BTreeMap<u32, Link>,
    addresses: BTreeMap<(u32, IpNet), Address>,
    neighbours: BTreeMap<(u32, IpAddr), Neighbour>,
    gateways: DefaultGateways,
    track_neighbours: bool,
}

impl Tracker {
    pub(crate) fn new(track_neighbours: bool) -> Self {
        Self {
            track_neighbours,
            ..Self::default()
        }
    }

    pub(crate) fn apply(&mut self, change: Change) -> Effect {
        match change {
            Change::Link(link) => {
                let old = self.links.insert(link.ifindex, link.clone());
                let changed = old.as_ref() != Some(&link);
                Effect {
                    published: changed,
                    links: changed,
                    gateways_stale: old
                        .is_none_or(|o| o.admin_up != link.admin_up || o.lower_up != link.lower_up),
                }
            }
            Change::LinkGone(ifindex) => {
                let gone = self.links.remove(&ifindex).is_some();
                self.addresses.retain(|(i, _), _| *i != ifindex);
                self.neighbours.retain(|(i, _), _| *i != ifindex);
                Effect {
                    published: gone,
                    links: gone,
                    gateways_stale: gone,
                }
            }
            Change::Address(a) => {
                let old = self.addresses.insert((a.ifindex, a.addr), a.clone());
                Effect {
                    published: old.as_ref() != Some(&a),
                    ..Effect::default()
                }
            }
            Change::AddressGone(a) => {
                let gone = self.addresses.remove(&(a.ifindex, a.addr)).is_some();
                Effect {
                    published: gone,
                    gateways_stale: true,
                    ..Effect::default()
                }
            }
            Change::Neighbour(n) if self.track_neighbours => {
                let old = self.neighbours.insert((n.ifindex, n.ip), n.clone());
                Effect {
                    published: old.as_ref() != Some(&n),
                    ..Effect::default()
                }
            }
            Change::NeighbourGone(ifindex, ip) if self.track_neighbours => Effect {
                published: self.neighbours.remove(&(ifindex, ip)).is_some(),
                ..Effect::default()
            },
            Change::Neighbour(_) | Change::NeighbourGone(..) => Effect::default(),
            Change::DefaultRoute => Effect {
                gateways_stale: true,
                ..Effect::default()
            },
        }
    }

    /// Replaces everything with a fresh dump; whether the published state changed.
    pub(crate) fn reset(&mut self, dump: Dump) -> bool {
        let before = self.state();
        self.links = dump.links.into_iter().map(|l| (l.ifindex, l)).collect();
        self.addresses = dump
            .addresses
            .into_iter()
            .map(|a| ((a.ifindex, a.addr), a))
            .collect();
        self.neighbours = if self.track_neighbours {
            dump.neighbours
                .into_iter()
                .map(|n| ((n.ifindex, n.ip), n))
                .collect()
        } else {
            BTreeMap::new()
        };
        self.gateways = dump.gateways;
        self.state() != before
    }

    /// Sets the default gateways; whether they changed.
    pub(crate) fn set_gateways(&mut self, gateways: DefaultGateways) -> bool {
        let changed = self.gateways != gateways;
        self.gateways = gateways;
        changed
    }

    pub(crate) fn links(&self) -> &BTreeMap<u32, Link> {
        &self.links
    }

    pub(crate) fn state(&self) -> HostState {
        HostState {
            links: self.links.clone(),
            addresses: self.addresses.values().cloned().collect(),
            default_gateways: self.gateways,
            neighbours: self.neighbours.values().cloned().collect(),
        }
    }
}

/// Which up/down state each link was last reported with.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkReporter {
    reported: BTreeMap<u32, (String, bool)>,
}

impl LinkReporter {
    /// The reports `links` calls for: links whose [`Link::is_up`] differs from what was last
    /// reported (all of them the first time), and removals.
    pub(crate) fn diff(&mut self, links: &BTreeMap<u32, Link>) -> Vec<LinkChange> {
        let mut out = Vec::new();
        self.reported.retain(|ifindex, (name, _)| {
            let keep = links.contains_key(ifindex);
            if !keep {
                out.push(LinkChange {
                    ifindex: *ifindex,
                    name: name.clone(),
                    up: false,
                    removed: true,
                });
            }
            keep
        });
        for link in links.values() {
            let up = link.is_up();
            let entry = self.reported.get(&link.ifindex);
            if entry.is_none_or(|(_, was)| *was != up) {
                out.push(LinkChange {
                    ifindex: link.ifindex,
                    name: link.name.clone(),
                    up,
                    removed: false,
                });
            }
            if entry.is_none_or(|(name, was)| *was != up || *name != link.name) {
                self.reported.insert(link.ifindex, (link.name.clone(), up));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LinkKind, Scope};

    fn link(ifindex: u32, name: &str, admin: bool, lower: bool) -> Link {
        Link {
            ifindex,
            name: name.into(),
            kind: LinkKind::Ether,
            admin_up: admin,
            lower_up: lower,
            mac: None,
            mtu: Some(1500),
        }
    }

    fn addr(ifindex: u32, a: &str) -> Address {
        Address {
            ifindex,
            addr: a.parse().expect("prefix"),
            scope: Scope::Universe,
            label: None,
        }
    }

    #[test]
    fn link_changes_are_reported_once_each() {
        let mut t = Tracker::new(false);
        let mut r = LinkReporter::default();
        t.reset(Dump {
            links: vec![link(1, "lo", true, true), link(2, "eth0", true, false)],
            ..Dump::default()
        });
        let first = r.diff(t.links());
        assert_eq!(first.len(), 2, "every link once at start: {first:?}");
        assert!(first.iter().any(|c| c.ifindex == 2 && !c.up));
        // Carrier comes: one report; the same state again: none.
        let e = t.apply(Change::Link(link(2, "eth0", true, true)));
        assert!(e.published && e.links && e.gateways_stale);
        assert_eq!(
            r.diff(t.links()),
            vec![LinkChange {
                ifindex: 2,
                name: "eth0".into(),
                up: true,
                removed: false
            }]
        );
        let e = t.apply(Change::Link(link(2, "eth0", true, true)));
        assert_eq!(e, Effect::default());
        assert!(r.diff(t.links()).is_empty());
        // An MTU change is published but is no up/down report and no gateway re-read.
        let mut l = link(2, "eth0", true, true);
        l.mtu = Some(9000);
        let e = t.apply(Change::Link(l));
        assert!(e.published && !e.gateways_stale);
        assert!(r.diff(t.links()).is_empty());
        // Removal: reported down and removed, its addresses go with it.
        t.apply(Change::Address(addr(2, "10.0.0.1/24")));
        let e = t.apply(Change::LinkGone(2));
        assert!(e.published && e.gateways_stale);
        assert!(t.state().addresses.is_empty());
        assert_eq!(
            r.diff(t.links()),
            vec![LinkChange {
                ifindex: 2,
                name: "eth0".into(),
                up: false,
                removed: true
            }]
        );
        // Removing an unknown link changes nothing.
        assert_eq!(t.apply(Change::LinkGone(99)), Effect::default());
    }

    #[test]
    fn addresses_neighbours_and_gateways() {
        let mut t = Tracker::new(false);
        assert!(t.apply(Change::Address(addr(2, "10.0.0.1/24"))).published);
        assert!(!t.apply(Change::Address(addr(2, "10.0.0.1/24"))).published);
        let e = t.apply(Change::AddressGone(addr(2, "10.0.0.1/24")));
        assert!(e.published && e.gateways_stale);
        // Untracked neighbours are ignored.
        let n = Neighbour {
            ifindex: 2,
            ip: "10.0.0.2".parse().expect("ip"),
            mac: None,
            state: crate::types::NeighbourState::Incomplete,
        };
        assert_eq!(t.apply(Change::Neighbour(n.clone())), Effect::default());
        let mut t = Tracker::new(true);
        assert!(t.apply(Change::Neighbour(n.clone())).published);
        assert_eq!(t.state().neighbours, vec![n.clone()]);
        assert!(t.apply(Change::NeighbourGone(n.ifindex, n.ip)).published);
        // Default routes only ask for a re-read.
        assert_eq!(
            t.apply(Change::DefaultRoute),
            Effect {
                gateways_stale: true,
                ..Effect::default()
            }
        );
        let g = DefaultGateways {
            v4: Some("10.0.0.1".parse().expect("ip")),
            v6: None,
        };
        assert!(t.set_gateways(g));
        assert!(!t.set_gateways(g));
        assert_eq!(t.state().default_gateways, g);
    }
}
