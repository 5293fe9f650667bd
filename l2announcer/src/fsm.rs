//! Ownership of IP groups as a pure state machine: `step(now, input) -> Vec<Action>`.
//!
//! The FSM never talks to the datastore or the datapath itself; the owning task
//! ([`crate::node`]) executes the actions in order and feeds results back as inputs.
//!
//! Safety rules it enforces, whatever order inputs arrive in:
//! - a responder entry is programmed only while this node holds the group's claim under a
//!   live node lease and the interface is up;
//! - on losing a group (or the lease, or at shutdown) the `Unprogram` actions come *before*
//!   the `Release`/`RevokeLease` action, so another node can only win after we stopped
//!   answering;
//! - when every interface a group is announced on is down, the group is released so a node
//!   with a working link takes it (Cilium #35507).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::policy::{DesiredGroup, Iface};

/// Who holds a group's claim, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Nobody (or not known yet).
    Free,
    /// This node, under its current node lease.
    Me,
    /// Another node (or an earlier incarnation of this node, under a dead lease).
    Other(String),
}

/// Result of an atomic claim attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The claim was created (or already existed) under this node's current lease.
    Won {
        /// Datastore revision of the claim.
        revision: i64,
    },
    /// Someone else holds it.
    Held {
        /// Holder identity (node name).
        holder: String,
        /// Revision at which the claim was last modified.
        revision: i64,
    },
    /// The datastore could not be asked; retried on the next tick.
    Failed,
}

/// Inputs to the FSM.
#[derive(Debug, Clone)]
pub enum Input {
    /// The full set of groups this node may announce (level-triggered).
    Desired(BTreeMap<IpAddr, DesiredGroup>),
    /// An interface went up or down. Unknown interfaces count as up.
    Link {
        /// Interface index.
        ifindex: u32,
        /// Operational state.
        up: bool,
    },
    /// The node lease is live (first grant, or a new lease after a loss).
    LeaseAcquired,
    /// The node lease could not be renewed within the renew deadline: stop answering now.
    LeaseLost,
    /// Nodes that currently hold a live node lease (used to prefer one claimant per group).
    Members(BTreeSet<String>),
    /// The datastore reported a group's claim state (watch event or initial listing).
    Observed {
        /// Group.
        ip: IpAddr,
        /// Owner at `revision`.
        owner: Owner,
        /// Datastore revision of the observation.
        revision: i64,
    },
    /// Result of a [`Action::Claim`].
    ClaimResult {
        /// Group.
        ip: IpAddr,
        /// Outcome.
        outcome: ClaimOutcome,
    },
    /// A [`Action::Release`] could not be executed; it is retried on the next tick.
    ReleaseFailed(IpAddr),
    /// Periodic tick (retry period): retries failed or deferred claims and releases.
    Tick,
    /// Planned shutdown: withdraw everything, then revoke the node lease.
    Shutdown,
}

/// Actions for the owning task, to be executed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add the responder entry (IP, interface).
    Program {
        /// IP.
        ip: IpAddr,
        /// Interface.
        iface: Iface,
    },
    /// Remove the responder entry (IP, interface).
    Unprogram {
        /// IP.
        ip: IpAddr,
        /// Interface.
        iface: Iface,
    },
    /// Send gratuitous ARP (IPv4) or unsolicited NA (IPv6) `count` times, spaced out.
    Gratuitous {
        /// IP.
        ip: IpAddr,
        /// Interface.
        iface: Iface,
        /// Number of announcements.
        count: u32,
    },
    /// Try to claim the group atomically against the node lease.
    Claim(IpAddr),
    /// Delete this node's claim on the group.
    Release(IpAddr),
    /// Revoke the node lease (drops every claim at once); last action of a shutdown.
    RevokeLease,
}

/// FSM configuration.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    /// This node's name (lease holder identity).
    pub node: String,
    /// Gratuitous announcements sent on gaining a group.
    pub gratuitous_count: u32,
    /// How long a node that is not the preferred claimant of a free group waits before
    /// claiming it anyway (the preferred node may not be a candidate for it).
    pub claim_delay: Duration,
}

#[derive(Debug, Clone)]
struct Group {
    desired: Option<DesiredGroup>,
    owner: Owner,
    revision: i64,
    claiming: bool,
    /// A claim failed (datastore unreachable): wait for the next tick before retrying.
    backoff: bool,
    releasing: bool,
    programmed: BTreeSet<Iface>,
    /// When the current owner was first seen (for lease age).
    since: Instant,
    /// When the group was seen free (for the claim delay).
    free_since: Instant,
    /// The node that held the group before it became free: it just gave the group up (link
    /// down, policy change, shutdown), so it is left out of the claim preference.
    last_holder: Option<String>,
}

impl Group {
    fn new(now: Instant) -> Self {
        Self {
            desired: None,
            owner: Owner::Free,
            revision: 0,
            claiming: false,
            backoff: false,
            releasing: false,
            programmed: BTreeSet::new(),
            since: now,
            free_since: now,
            last_holder: None,
        }
    }
}

/// A read-only view of one group, for queries.
#[derive(Debug, Clone)]
pub struct GroupView<'a> {
    /// The group IP.
    pub ip: IpAddr,
    /// What policies want for it on this node, if anything.
    pub desired: Option<&'a DesiredGroup>,
    /// Current owner.
    pub owner: &'a Owner,
    /// When the current owner was first seen or the claim won.
    pub since: Instant,
    /// Interfaces this node has programmed.
    pub programmed: &'a BTreeSet<Iface>,
}

/// The ownership state machine for one node.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    groups: BTreeMap<IpAddr, Group>,
    links_down: BTreeSet<u32>,
    members: BTreeSet<String>,
    lease_live: bool,
    shutting_down: bool,
}

impl Fsm {
    /// A new FSM: no lease yet, nothing desired.
    #[must_use]
    pub fn new(cfg: FsmConfig) -> Self {
        Self {
            cfg,
            groups: BTreeMap::new(),
            links_down: BTreeSet::new(),
            members: BTreeSet::new(),
            lease_live: false,
            shutting_down: false,
        }
    }

    /// This node's name.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// Whether the node lease is believed live.
    #[must_use]
    pub fn lease_live(&self) -> bool {
        self.lease_live
    }

    /// Nodes with a live node lease, as last reported.
    #[must_use]
    pub fn members(&self) -> &BTreeSet<String> {
        &self.members
    }

    /// Whether (ip, interface) is currently programmed.
    #[must_use]
    pub fn is_programmed(&self, ip: IpAddr, ifindex: u32) -> bool {
        self.groups
            .get(&ip)
            .is_some_and(|g| g.programmed.iter().any(|i| i.ifindex == ifindex))
    }

    /// The owner of group `ip` as this node knows it (`Free` when unknown).
    #[must_use]
    pub fn owner(&self, ip: IpAddr) -> Owner {
        self.groups
            .get(&ip)
            .map_or(Owner::Free, |g| g.owner.clone())
    }

    /// All known groups (desired here or observed in the datastore).
    pub fn groups(&self) -> impl Iterator<Item = GroupView<'_>> {
        self.groups.iter().map(|(ip, g)| GroupView {
            ip: *ip,
            desired: g.desired.as_ref(),
            owner: &g.owner,
            since: g.since,
            programmed: &g.programmed,
        })
    }

    /// Feeds one input, returning the actions to execute in order.
    pub fn step(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Desired(desired) => {
                for g in self.groups.values_mut() {
                    g.desired = None;
                }
                for (ip, d) in desired {
                    self.groups
                        .entry(ip)
                        .or_insert_with(|| Group::new(now))
                        .desired = Some(d);
                }
                self.reconcile_all(now, &mut out);
                self.gc();
            }
            Input::Link { ifindex, up } => {
                if up {
                    self.links_down.remove(&ifindex);
                } else {
                    self.links_down.insert(ifindex);
                }
                self.reconcile_all(now, &mut out);
            }
            Input::LeaseAcquired => {
                self.lease_live = true;
                self.reconcile_all(now, &mut out);
            }
            Input::LeaseLost => {
                self.lease_live = false;
                for g in self.groups.values_mut() {
                    if g.owner == Owner::Me {
                        // Our claims die with the lease; what is left in the datastore until
                        // then belongs to a dead lease, which a later claim reports as Held.
                        g.owner = Owner::Free;
                        g.free_since = now;
                    }
                    g.releasing = false;
                }
                self.reconcile_all(now, &mut out);
            }
            Input::Members(m) => {
                self.members = m;
                self.reconcile_all(now, &mut out);
            }
            Input::Observed {
                ip,
                owner,
                revision,
            } => {
                let g = self.groups.entry(ip).or_insert_with(|| Group::new(now));
                if revision >= g.revision {
                    g.revision = revision;
                    set_owner(g, owner, now);
                }
                self.reconcile(now, ip, &mut out);
            }
            Input::ClaimResult { ip, outcome } => {
                let g = self.groups.entry(ip).or_insert_with(|| Group::new(now));
                g.claiming = false;
                match outcome {
                    ClaimOutcome::Won { revision } if revision >= g.revision => {
                        g.revision = revision;
                        // A claim won after the lease was lost is under the dead lease.
                        if self.lease_live {
                            set_owner(g, Owner::Me, now);
                        }
                    }
                    ClaimOutcome::Held { holder, revision } if revision >= g.revision => {
                        g.revision = revision;
                        set_owner(g, Owner::Other(holder), now);
                    }
                    ClaimOutcome::Failed => g.backoff = true,
                    _ => {}
                }
                self.reconcile(now, ip, &mut out);
            }
            Input::ReleaseFailed(ip) => {
                if let Some(g) = self.groups.get_mut(&ip) {
                    g.releasing = false;
                }
                // Not retried at once: the next tick does it.
            }
            Input::Tick => {
                for g in self.groups.values_mut() {
                    g.backoff = false;
                }
                self.reconcile_all(now, &mut out);
                // Here and on Desired only: per-event GC would be quadratic in groups.
                self.gc();
            }
            Input::Shutdown => {
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.reconcile_all(now, &mut out);
                    if self.lease_live {
                        out.push(Action::RevokeLease);
                    }
                    self.lease_live = false;
                }
            }
        }
        out
    }

    fn reconcile_all(&mut self, now: Instant, out: &mut Vec<Action>) {
        let ips: Vec<IpAddr> = self.groups.keys().copied().collect();
        // Unprograms of every group come before any claim or release.
        let mut tail = Vec::new();
        for ip in ips {
            self.reconcile_into(now, ip, out, &mut tail);
        }
        out.append(&mut tail);
    }

    fn reconcile(&mut self, now: Instant, ip: IpAddr, out: &mut Vec<Action>) {
        let mut tail = Vec::new();
        self.reconcile_into(now, ip, out, &mut tail);
        out.append(&mut tail);
    }

    /// Level-triggered reconciliation of one group. Withdrawals go to `out` at once; claims,
    /// releases and programming go to `tail`, which the caller appends after all withdrawals.
    fn reconcile_into(
        &mut self,
        now: Instant,
        ip: IpAddr,
        out: &mut Vec<Action>,
        tail: &mut Vec<Action>,
    ) {
        let Some(g) = self.groups.get_mut(&ip) else {
            return;
        };
        // Held elsewhere and not programmed here: nothing can change until an observation
        // does (the common case on every tick at scale).
        if matches!(g.owner, Owner::Other(_)) && g.programmed.is_empty() {
            return;
        }
        let preferred = preferred(&self.cfg.node, &self.members, g.last_holder.as_deref(), ip);
        let up: BTreeSet<Iface> = g
            .desired
            .iter()
            .flat_map(|d| d.interfaces.iter())
            .filter(|i| !self.links_down.contains(&i.ifindex))
            .cloned()
            .collect();
        let eligible = self.lease_live && !self.shutting_down && !up.is_empty();
        let want: BTreeSet<Iface> = if eligible && g.owner == Owner::Me && !g.releasing {
            up
        } else {
            BTreeSet::new()
        };
        for iface in g.programmed.difference(&want) {
            out.push(Action::Unprogram {
                ip,
                iface: iface.clone(),
            });
        }
        for iface in want.difference(&g.programmed) {
            tail.push(Action::Program {
                ip,
                iface: iface.clone(),
            });
            tail.push(Action::Gratuitous {
                ip,
                iface: iface.clone(),
                count: self.cfg.gratuitous_count,
            });
        }
        g.programmed = want;

        if g.owner == Owner::Me && !eligible && self.lease_live && !self.shutting_down {
            if !g.releasing {
                g.releasing = true;
                tail.push(Action::Release(ip));
            }
        } else if g.owner == Owner::Free
            && eligible
            && !g.claiming
            && !g.backoff
            && (preferred || now.saturating_duration_since(g.free_since) >= self.cfg.claim_delay)
        {
            g.claiming = true;
            tail.push(Action::Claim(ip));
        }
    }

    /// Forgets groups nobody wants and nobody holds.
    fn gc(&mut self) {
        self.groups.retain(|_, g| {
            g.desired.is_some() || g.owner != Owner::Free || g.claiming || !g.programmed.is_empty()
        });
    }
}

/// Whether `me` is the rendezvous-hash choice for `ip` among live members (less the node
/// that just gave the group up), so free groups spread over nodes instead of going to
/// whoever is fastest, and survivors do not all race for every group.
fn preferred(me: &str, members: &BTreeSet<String>, exclude: Option<&str>, ip: IpAddr) -> bool {
    let mine = rendezvous(me, ip);
    members
        .iter()
        .filter(|m| m.as_str() != me && Some(m.as_str()) != exclude)
        .all(|m| (rendezvous(m, ip), m.as_str()) < (mine, me))
}

fn set_owner(g: &mut Group, owner: Owner, now: Instant) {
    if g.owner != owner {
        g.since = now;
        g.releasing = false;
        if owner == Owner::Free {
            g.free_since = now;
            if let Owner::Other(prev) = &g.owner {
                g.last_holder = Some(prev.clone());
            }
        }
        g.owner = owner;
    }
}

/// FNV-1a over `node`, a separator and the IP: stable across builds and processes, unlike
/// `std`'s hasher, so every node computes the same preference.
fn rendezvous(node: &str, ip: IpAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    node.bytes().for_each(&mut feed);
    feed(b'#');
    match ip {
        IpAddr::V4(a) => a.octets().into_iter().for_each(&mut feed),
        IpAddr::V6(a) => a.octets().into_iter().for_each(&mut feed),
    }
    // A final avalanche step: FNV's low bits mix poorly for short inputs.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
