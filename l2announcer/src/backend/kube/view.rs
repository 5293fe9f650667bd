//! The pure half of the Kubernetes backend: object names and parsing, and the watch's view of
//! node Leases and claims, from which each group's owner is derived.
//!
//! Liveness of other nodes never compares clocks across nodes: like client-go's leader
//! election, a node Lease is live while its `resourceVersion` changed within its
//! `leaseDurationSeconds` of *local* observation (a monotonic [`Instant`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;

use crate::backend::BackendEvent;
use crate::fsm::Owner;

/// Label on every object of this backend; its value says which kind.
pub(crate) const LABEL: &str = "rackd.io/l2";
/// The watch's label selector: node Leases and claims, nothing else in the namespace.
pub(crate) const SELECTOR: &str = "rackd.io/l2 in (node,claim)";
/// Annotation: the claimed IP (also encoded in the name; both must agree).
pub(crate) const ANN_IP: &str = "rackd.io/l2-ip";
/// Annotation: the holder's node Lease `leaseTransitions` when the claim was made.
pub(crate) const ANN_EPOCH: &str = "rackd.io/l2-epoch";
/// Annotation: the holder's node Lease UID when the claim was made (a node Lease deleted and
/// created again starts its transitions at 0 again; the UID tells the two apart).
pub(crate) const ANN_NODE_UID: &str = "rackd.io/l2-node-uid";

const NODE_PREFIX: &str = "rackd-l2-node-";
const CLAIM_PREFIX: &str = "rackd-l2-";

/// Name of `node`'s node Lease, if it makes a valid object name (DNS subdomain).
pub(crate) fn node_lease_name(node: &str) -> Option<String> {
    let name = format!("{NODE_PREFIX}{node}");
    is_dns_subdomain(&name).then_some(name)
}

/// Name of the claim on `ip`: `rackd-l2-10-0-0-1`, or for IPv6 the eight groups in hex,
/// uncompressed (`rackd-l2-2001-db8-0-0-0-0-0-1`), so the name never ends in a dash and four
/// versus eight parts tell the families apart.
pub(crate) fn claim_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            format!("{CLAIM_PREFIX}{a}-{b}-{c}-{d}")
        }
        IpAddr::V6(a) => {
            let parts: Vec<String> = a.segments().iter().map(|s| format!("{s:x}")).collect();
            format!("{CLAIM_PREFIX}{}", parts.join("-"))
        }
    }
}

/// The inverse of [`claim_name`]; `None` for anything it would not produce.
pub(crate) fn ip_of_claim_name(name: &str) -> Option<IpAddr> {
    let rest = name.strip_prefix(CLAIM_PREFIX)?;
    let parts: Vec<&str> = rest.split('-').collect();
    let ip = match parts.as_slice() {
        [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(
            a.parse().ok()?,
            b.parse().ok()?,
            c.parse().ok()?,
            d.parse().ok()?,
        )),
        p if p.len() == 8 => {
            let mut seg = [0u16; 8];
            for (s, part) in seg.iter_mut().zip(p) {
                *s = u16::from_str_radix(part, 16).ok()?;
            }
            IpAddr::V6(Ipv6Addr::from(seg))
        }
        _ => return None,
    };
    // Only the canonical spelling: "010-0-0-1" would be a second name for one IP.
    (claim_name(ip) == name).then_some(ip)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A node Lease as parsed (liveness comes from when it was seen, not from its timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeSeen {
    /// Holder identity (= the name's suffix).
    pub holder: String,
    /// Object UID.
    pub uid: String,
    /// `leaseTransitions`: the epoch, bumped on every (re)acquisition.
    pub transitions: i32,
    /// `resourceVersion` as an integer.
    pub rv: i64,
    /// `leaseDurationSeconds` (or the fallback when absent or not positive).
    pub duration: Duration,
}

/// A claim as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimSeen {
    /// Holder node.
    pub holder: String,
    /// Holder's node Lease UID at claim time.
    pub uid: String,
    /// Holder's node Lease epoch at claim time.
    pub epoch: i32,
    /// `resourceVersion` as an integer.
    pub rv: i64,
}

/// What an object in the namespace is, as far as this backend is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A valid node Lease.
    Node(NodeSeen),
    /// A valid claim.
    Claim(IpAddr, ClaimSeen),
    /// Carries our label and a name of ours but is malformed: it stands for nothing (an
    /// earlier valid object of that name is forgotten).
    BadNode(String),
    /// Likewise for a claim name.
    BadClaim(IpAddr),
    /// Not ours (no label, another value, or a name we never use).
    Foreign,
}

/// `resourceVersion` as an integer. The API calls it opaque, but it is the etcd revision of
/// the write (and Kubernetes 1.35+ documents it as comparable); objects whose version does
/// not parse are not trusted.
pub(crate) fn rv_of(l: &Lease) -> Option<i64> {
    l.metadata.resource_version.as_deref()?.parse().ok()
}

/// Classifies a Lease; `fallback` is the duration assumed when the node Lease has none.
pub(crate) fn parse(l: &Lease, fallback: Duration) -> Parsed {
    let kind = l.metadata.labels.as_ref().and_then(|m| m.get(LABEL));
    let name = l.metadata.name.as_deref().unwrap_or_default();
    let spec = l.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or_default();
    let uid = l.metadata.uid.as_deref().unwrap_or_default();
    match kind.map(String::as_str) {
        Some("node") => {
            let Some(node) = name.strip_prefix(NODE_PREFIX).filter(|n| !n.is_empty()) else {
                return Parsed::Foreign;
            };
            let (Some(rv), false, true) = (rv_of(l), uid.is_empty(), holder == node) else {
                return Parsed::BadNode(node.to_owned());
            };
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map_or(fallback, Duration::from_secs);
            Parsed::Node(NodeSeen {
                holder: node.to_owned(),
                uid: uid.to_owned(),
                transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
                rv,
                duration,
            })
        }
        Some("claim") => {
            let Some(ip) = ip_of_claim_name(name) else {
                return Parsed::Foreign;
            };
            let ann = |k: &str| {
                l.metadata
                    .annotations
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .map(String::as_str)
            };
            let ann_ip = ann(ANN_IP).and_then(|s| s.parse::<IpAddr>().ok());
            let epoch = ann(ANN_EPOCH).and_then(|s| s.parse::<i32>().ok());
            let node_uid = ann(ANN_NODE_UID).filter(|s| !s.is_empty());
            match (rv_of(l), epoch, node_uid) {
                (Some(rv), Some(epoch), Some(node_uid))
                    if ann_ip == Some(ip) && !holder.is_empty() =>
                {
                    Parsed::Claim(
                        ip,
                        ClaimSeen {
                            holder: holder.to_owned(),
                            uid: node_uid.to_owned(),
                            epoch,
                            rv,
                        },
                    )
                }
                _ => Parsed::BadClaim(ip),
            }
        }
        _ => Parsed::Foreign,
    }
}

/// This node's current acquisition of its node Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Epoch {
    /// Node Lease UID.
    pub uid: String,
    /// Its `leaseTransitions` after our write.
    pub transitions: i32,
}

#[derive(Debug, Clone)]
struct NodeObs {
    seen: NodeSeen,
    /// When this node first saw `seen.rv`.
    observed_at: Instant,
    /// Liveness as last evaluated (to notice flips).
    live: bool,
}

impl NodeObs {
    fn live_at(&self, now: Instant) -> bool {
        self.observed_at
            .checked_add(self.seen.duration)
            .is_none_or(|until| now < until)
    }
}

/// Whether a claim is still backed by its holder's node Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The holder's Lease is live at the claim's epoch.
    Valid,
    /// The holder's Lease moved on to a later epoch: the claim is dead for sure.
    Stale,
    /// Our view cannot tell (expired by our observation, not seen, or seen at another UID):
    /// ask the API server before taking over.
    Unsure,
}

/// The watch's state: node Leases, claims, and what was last reported to the owning task.
#[derive(Debug)]
pub(crate) struct View {
    me: String,
    fallback: Duration,
    mine: Option<Epoch>,
    nodes: BTreeMap<String, NodeObs>,
    claims: BTreeMap<IpAddr, ClaimSeen>,
    by_holder: BTreeMap<String, BTreeSet<IpAddr>>,
    reported: BTreeMap<IpAddr, Owner>,
    members: Option<BTreeSet<String>>,
    dirty: BTreeSet<IpAddr>,
    /// Watch position: the highest `resourceVersion` applied. Every `Observed` carries it:
    /// the derived state is the state as of this revision (see the README on ordering).
    pos: i64,
    /// Whether a complete listing has been applied.
    pub(crate) synced: bool,
}

impl View {
    /// An empty view for node `me`; `fallback` is the lease duration assumed for node Leases
    /// without `leaseDurationSeconds`.
    pub(crate) fn new(me: impl Into<String>, fallback: Duration) -> Self {
        Self {
            me: me.into(),
            fallback,
            mine: None,
            nodes: BTreeMap::new(),
            claims: BTreeMap::new(),
            by_holder: BTreeMap::new(),
            reported: BTreeMap::new(),
            members: None,
            dirty: BTreeSet::new(),
            pos: 0,
            synced: false,
        }
    }

    /// Records this node's current epoch (`None` while its lease is lost).
    pub(crate) fn set_mine(&mut self, mine: Option<Epoch>) {
        if self.mine != mine {
            self.mine = mine;
            self.dirty_holder(&self.me.clone());
        }
    }

    fn dirty_holder(&mut self, holder: &str) {
        if let Some(ips) = self.by_holder.get(holder) {
            self.dirty.extend(ips.iter().copied());
        }
    }

    fn bump(&mut self, l: &Lease) {
        if let Some(rv) = rv_of(l) {
            self.pos = self.pos.max(rv);
        }
    }

    /// Applies an added or modified object.
    pub(crate) fn apply(&mut self, l: &Lease, now: Instant) {
        self.bump(l);
        match parse(l, self.fallback) {
            Parsed::Node(seen) => self.put_node(seen, now),
            Parsed::Claim(ip, c) => self.put_claim(ip, c),
            Parsed::BadNode(n) => self.remove_node(&n),
            Parsed::BadClaim(ip) => self.remove_claim(ip),
            Parsed::Foreign => {}
        }
    }

    /// Applies a deletion (the object as last seen, at the deletion's revision).
    pub(crate) fn delete(&mut self, l: &Lease) {
        self.bump(l);
        match parse(l, self.fallback) {
            Parsed::Node(NodeSeen { holder, .. }) | Parsed::BadNode(holder) => {
                self.remove_node(&holder);
            }
            Parsed::Claim(ip, _) | Parsed::BadClaim(ip) => self.remove_claim(ip),
            Parsed::Foreign => {}
        }
    }

    /// Replaces everything with a complete listing, as a diff: objects listed unchanged keep
    /// their observation time (a relist is not a renewal), objects not listed are gone, and
    /// only owners that actually changed get reported, so a relist never looks like a mass
    /// deletion.
    pub(crate) fn relist(&mut self, listed: &[Lease], now: Instant) {
        let mut nodes = BTreeSet::new();
        let mut claims = BTreeSet::new();
        for l in listed {
            self.apply(l, now);
            match parse(l, self.fallback) {
                Parsed::Node(n) => {
                    nodes.insert(n.holder);
                }
                Parsed::Claim(ip, _) => {
                    claims.insert(ip);
                }
                _ => {}
            }
        }
        let gone_nodes: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !nodes.contains(*n))
            .cloned()
            .collect();
        for n in gone_nodes {
            self.remove_node(&n);
        }
        let gone_claims: Vec<IpAddr> = self
            .claims
            .keys()
            .filter(|ip| !claims.contains(*ip))
            .copied()
            .collect();
        for ip in gone_claims {
            self.remove_claim(ip);
        }
        self.synced = true;
    }

    fn put_node(&mut self, seen: NodeSeen, now: Instant) {
        let holder = seen.holder.clone();
        match self.nodes.get_mut(&holder) {
            Some(o) if o.seen.rv == seen.rv => {}
            Some(o) => {
                let epoch_changed =
                    o.seen.uid != seen.uid || o.seen.transitions != seen.transitions;
                o.seen = seen;
                o.observed_at = now;
                if epoch_changed || !o.live {
                    o.live = true;
                    self.dirty_holder(&holder);
                }
            }
            None => {
                self.nodes.insert(
                    holder.clone(),
                    NodeObs {
                        seen,
                        observed_at: now,
                        live: true,
                    },
                );
                self.dirty_holder(&holder);
            }
        }
    }

    fn remove_node(&mut self, holder: &str) {
        if self.nodes.remove(holder).is_some() {
            self.dirty_holder(holder);
        }
    }

    fn put_claim(&mut self, ip: IpAddr, c: ClaimSeen) {
        if let Some(old) = self.claims.get(&ip)
            && old.holder != c.holder
            && let Some(set) = self.by_holder.get_mut(&old.holder)
        {
            set.remove(&ip);
        }
        self.by_holder
            .entry(c.holder.clone())
            .or_default()
            .insert(ip);
        self.claims.insert(ip, c);
        self.dirty.insert(ip);
    }

    fn remove_claim(&mut self, ip: IpAddr) {
        if let Some(old) = self.claims.remove(&ip) {
            if let Some(set) = self.by_holder.get_mut(&old.holder) {
                set.remove(&ip);
                if set.is_empty() {
                    self.by_holder.remove(&old.holder);
                }
            }
            self.dirty.insert(ip);
        }
    }

    /// The claim on `ip` as last watched.
    pub(crate) fn claim(&self, ip: IpAddr) -> Option<&ClaimSeen> {
        self.claims.get(&ip)
    }

    /// The node Lease of `holder` as last watched: (rv, live at `now`, uid, transitions).
    pub(crate) fn node(&self, holder: &str, now: Instant) -> Option<(i64, bool)> {
        self.nodes.get(holder).map(|o| (o.seen.rv, o.live_at(now)))
    }

    /// Whether `c` is backed by its holder's node Lease, as far as this view knows.
    pub(crate) fn verdict(&self, c: &ClaimSeen, now: Instant) -> Verdict {
        match self.nodes.get(&c.holder) {
            Some(o) if o.seen.uid == c.uid => {
                if o.seen.transitions > c.epoch {
                    Verdict::Stale
                } else if o.seen.transitions == c.epoch && o.live_at(now) {
                    Verdict::Valid
                } else {
                    Verdict::Unsure
                }
            }
            _ => Verdict::Unsure,
        }
    }

    /// The owner of `ip` derived from the view.
    pub(crate) fn owner(&self, ip: IpAddr, now: Instant) -> Owner {
        let Some(c) = self.claims.get(&ip) else {
            return Owner::Free;
        };
        // Our own claims at our current epoch are ours for as long as our renewals say so
        // (the renew task fences us); the watch's view of our own Lease may lag.
        if c.holder == self.me
            && self
                .mine
                .as_ref()
                .is_some_and(|m| m.uid == c.uid && m.transitions == c.epoch)
        {
            return Owner::Me;
        }
        match self.verdict(c, now) {
            Verdict::Valid => Owner::Other(c.holder.clone()),
            Verdict::Stale | Verdict::Unsure => Owner::Free,
        }
    }

    /// When the next live node Lease expires by our observation.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.nodes
            .values()
            .filter(|o| o.live)
            .filter_map(|o| o.observed_at.checked_add(o.seen.duration))
            .min()
    }

    /// Re-evaluates liveness and reports what changed since the last call: `Observed` for
    /// every group whose owner changed (at the watch position) and `Members` if the live set
    /// changed. Nothing is reported before the first complete listing.
    pub(crate) fn drain(&mut self, now: Instant) -> Vec<BackendEvent> {
        let flipped: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|(n, o)| {
                let live = o.live_at(now);
                (live != o.live).then(|| {
                    o.live = live;
                    n.clone()
                })
            })
            .collect();
        for n in flipped {
            self.dirty_holder(&n);
        }
        let mut out = Vec::new();
        if !self.synced {
            return out;
        }
        for ip in std::mem::take(&mut self.dirty) {
            let owner = self.owner(ip, now);
            let before = self.reported.get(&ip).unwrap_or(&Owner::Free);
            if *before != owner {
                if owner == Owner::Free {
                    self.reported.remove(&ip);
                } else {
                    self.reported.insert(ip, owner.clone());
                }
                out.push(BackendEvent::Observed {
                    ip,
                    owner,
                    revision: self.pos,
                });
            }
        }
        let mut members: BTreeSet<String> = self
            .nodes
            .iter()
            .filter(|(n, o)| o.live && **n != self.me)
            .map(|(n, _)| n.clone())
            .collect();
        if self.mine.is_some() {
            members.insert(self.me.clone());
        }
        if self.members.as_ref() != Some(&members) {
            self.members = Some(members.clone());
            out.push(BackendEvent::Members(members));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
