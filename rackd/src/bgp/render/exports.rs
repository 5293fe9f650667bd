//! The export policies of one peer, in Cilium's order, with the index from each prefix to the
//! policies carrying it: what the renderer builds and the reconciler diffs.

use std::sync::Arc;

use bgpd_wire::Family;
use ipnet::IpNet;

use super::Routes;

/// One rendered export policy: Cilium names them `<peer>-<afi>-<Type>[-<resource>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPolicy {
    pub name: String,
    pub family: Family,
    pub prefixes: Vec<IpNet>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub local_pref: Option<u32>,
}

/// What an export policy is about, within its advertisement entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// The node's pod CIDRs.
    PodCidr,
    /// One address kind (its position in the entry's `addresses`) of one Service.
    Service {
        namespace: String,
        name: String,
        address: u8,
    },
    /// One interface's addresses.
    Interface(String),
    /// One egress gateway policy's egress addresses (`EgressGateway`, rackd's extension).
    EgressPolicy(String),
}

/// Where an export policy sits in its peer's ordered list: Cilium's order (the peer's
/// families as configured, advertisements by name, entries as written, then resources).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportKey {
    pub family: u16,
    pub advertisement: String,
    pub entry: u16,
    pub resource: Resource,
}

/// A peer's export policies, in order, with an index from each prefix to the policies that
/// carry it (the first one decides the prefix's attributes, as in a first-match policy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exports {
    pub(super) policies: imbl::OrdMap<ExportKey, Arc<ExportPolicy>>,
    by_prefix: imbl::OrdMap<IpNet, imbl::OrdSet<ExportKey>>,
}

impl Exports {
    /// The policies in order.
    pub fn iter(&self) -> impl Iterator<Item = &ExportPolicy> + '_ {
        self.policies.values().map(|p| &**p)
    }

    /// The policies with their keys, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&ExportKey, &Arc<ExportPolicy>)> + '_ {
        self.policies.iter()
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// True when nothing is exported.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policy that decides `prefix`'s attributes (the first carrying it).
    pub fn first_for(&self, prefix: &IpNet) -> Option<&ExportPolicy> {
        let key = self.by_prefix.get(prefix)?.get_min()?;
        self.policies.get(key).map(|p| &**p)
    }

    /// Every exported prefix.
    pub fn prefixes(&self) -> impl Iterator<Item = &IpNet> + '_ {
        self.by_prefix.keys()
    }

    /// Whether `self` and `other` are the same map (a copy never modified since): O(1).
    pub fn ptr_eq(&self, other: &Exports) -> bool {
        self.policies.ptr_eq(&other.policies)
    }

    /// The keys whose policy differs between `old` and `self`, and the prefixes those
    /// policies carry(carried): what the reconciler must re-export.
    pub fn changed_prefixes(&self, old: &Exports) -> Vec<IpNet> {
        use imbl::ordmap::DiffItem;
        let mut out = Vec::new();
        for d in old.policies.diff(&self.policies) {
            match d {
                DiffItem::Add(_, p) | DiffItem::Remove(_, p) => out.extend(p.prefixes.iter()),
                DiffItem::Update {
                    old: (_, o),
                    new: (_, n),
                } => {
                    out.extend(o.prefixes.iter());
                    out.extend(n.prefixes.iter());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Adds a policy (replacing one with the same key); counts its prefixes into `routes`.
    pub(super) fn insert(&mut self, key: ExportKey, p: ExportPolicy, routes: &mut Routes) {
        self.remove(&key, routes);
        for pfx in &p.prefixes {
            self.by_prefix.entry(*pfx).or_default().insert(key.clone());
            *routes.entry(*pfx).or_insert(0) += 1;
        }
        self.policies.insert(key, Arc::new(p));
    }

    /// Removes a policy; counts its prefixes out of `routes`.
    pub(super) fn remove(&mut self, key: &ExportKey, routes: &mut Routes) -> bool {
        let Some(old) = self.policies.remove(key) else {
            return false;
        };
        for pfx in &old.prefixes {
            if let Some(set) = self.by_prefix.get_mut(pfx) {
                set.remove(key);
                if set.is_empty() {
                    self.by_prefix.remove(pfx);
                }
            }
            if let Some(n) = routes.get_mut(pfx) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    routes.remove(pfx);
                }
            }
        }
        true
    }

    /// The keys in `[from, to]`.
    pub(super) fn keys_in(&self, from: &ExportKey, to: &ExportKey) -> Vec<ExportKey> {
        self.policies
            .range(from.clone()..=to.clone())
            .map(|(k, _)| k.clone())
            .collect()
    }
}
