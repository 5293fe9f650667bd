//! The set of objects the daemon runs on, with cross-object checks and the
//! last-good merge.
//!
//! [`Snapshot::merge`] takes the previous good snapshot and the freshly parsed
//! sources (all of them: a source that is not passed is treated as deleted) and
//! returns the next snapshot plus every error. The rules, in order:
//!
//! 1. A valid new object replaces its previous version; objects absent from every
//!    source are deleted.
//! 2. An object whose new version is invalid keeps its previous good version.
//! 3. A document that fails before its kind and name are known (bad YAML, no
//!    kind, unreadable source) cannot be matched to an object, so every object
//!    previously loaded from that source and not loaded again is kept: a typo
//!    never withdraws routes. Deletions in that source wait until it parses.
//!    A document with a name but an unknown kind (a misspelt kind) keeps the
//!    previous objects of that name from that source.
//! 4. Duplicate kind/name: the first definition (sources in the order given, then
//!    document order) wins; the other is an error.
//! 5. Cross-object references (ClusterConfig → PeerConfig, PeerConfig → Secret)
//!    are checked on the result. A changed object whose reference is broken falls
//!    back to its previous version (or is left out if new); an unchanged object
//!    whose referent vanished keeps the referent's previous version. Repeated until
//!    stable, so the result is always self-consistent.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cilium::{
    AUTH_SECRET_PASSWORD_KEY, CiliumBGPAdvertisement, CiliumBGPClusterConfig,
    CiliumBGPNodeConfigOverride, CiliumBGPPeerConfig, CiliumEgressGatewayPolicy,
    CiliumL2AnnouncementPolicy, CiliumLoadBalancerIPPool,
};
use crate::error::{ConfigError, ObjectRef, Problem};
use crate::object::{Kind, Loaded, Object, ObjectKey};
use crate::parse::ParsedSource;

/// Settings for cross-object checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Namespace of BGP auth Secrets (Cilium `--bgp-secrets-namespace`; Helm
    /// default `kube-system`).
    pub bgp_secrets_namespace: String,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            bgp_secrets_namespace: "kube-system".into(),
        }
    }
}

/// All objects, keyed by kind/namespace/name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    objects: BTreeMap<ObjectKey, Loaded>,
}

/// How an object differs between two snapshots ([`Snapshot::diff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// New in this snapshot.
    Added,
    /// Present in both, with a different object.
    Updated,
    /// Gone from this snapshot.
    Removed,
}

/// Result of [`Snapshot::merge`].
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOutcome {
    /// The snapshot to run on.
    pub snapshot: Snapshot,
    /// Every error, parse and cross-object, in source order.
    pub errors: Vec<ConfigError>,
}

macro_rules! typed_iter {
    ($(#[$doc:meta])* $fn:ident, $kind:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $fn(&self) -> impl Iterator<Item = &$ty> + '_ {
            self.of_kind(Kind::$kind).filter_map(|l| match &l.object {
                Object::$kind(o) => Some(o),
                _ => None,
            })
        }
    };
}

impl Snapshot {
    /// Builds a snapshot from scratch (no previous version to fall back to).
    pub fn build(sources: &[ParsedSource], opts: &CheckOptions) -> MergeOutcome {
        Self::merge(&Snapshot::default(), sources, opts)
    }

    /// Merges freshly parsed sources over the previous good snapshot; see the
    /// module docs for the rules.
    pub fn merge(
        previous: &Snapshot,
        sources: &[ParsedSource],
        opts: &CheckOptions,
    ) -> MergeOutcome {
        let mut errors = Vec::new();
        let mut next: BTreeMap<ObjectKey, Loaded> = BTreeMap::new();

        // Rules 1 and 4.
        for src in sources {
            for l in &src.objects {
                let key = l.object.key();
                if let Some(first) = next.get(&key) {
                    errors.push(ConfigError {
                        location: l.origin.location.clone(),
                        object: Some(object_ref(&key)),
                        problem: Problem::Duplicate {
                            key: key.clone(),
                            first: first.origin.location.clone(),
                        },
                        kept_previous: false,
                    });
                    continue;
                }
                next.insert(key, l.clone());
            }
        }

        // Rules 2 and 3.
        for src in sources {
            let mut wholesale = false;
            for e in &src.errors {
                let mut e = e.clone();
                let name = e.object.as_ref().and_then(|o| o.name.clone());
                match (identified_key(&e), name) {
                    (Some(key), _) => {
                        if !next.contains_key(&key)
                            && let Some(prev) = previous.objects.get(&key)
                        {
                            next.insert(key, prev.clone());
                            e.kept_previous = true;
                        }
                    }
                    // A misspelt kind: keep whatever this source defined under that name.
                    (None, Some(name)) => {
                        let keep: Vec<_> = previous
                            .objects
                            .iter()
                            .filter(|(k, p)| {
                                k.name == name
                                    && p.origin.location.source == src.source
                                    && !next.contains_key(*k)
                            })
                            .map(|(k, p)| (k.clone(), p.clone()))
                            .collect();
                        e.kept_previous = !keep.is_empty();
                        next.extend(keep);
                    }
                    (None, None) => wholesale = true,
                }
                errors.push(e);
            }
            if wholesale {
                for (key, prev) in &previous.objects {
                    if prev.origin.location.source == src.source && !next.contains_key(key) {
                        next.insert(key.clone(), prev.clone());
                    }
                }
            }
        }

        // Rule 5.
        let mut reported: BTreeSet<(ObjectKey, String)> = BTreeSet::new();
        // Every pass either reverts an object to its previous version, drops it, or
        // restores a previous referent; each can happen once per key.
        for _ in 0..=(next.len() + previous.objects.len()) {
            let broken = broken_references(&next, opts);
            if broken.is_empty() {
                break;
            }
            for (key, path, target, reason) in broken {
                let Some(cur) = next.get(&key).cloned() else {
                    continue;
                };
                let prev = previous.objects.get(&key);
                let unchanged = prev.is_some_and(|p| p.object == cur.object);
                let mut kept_previous = false;
                if !unchanged {
                    match prev {
                        Some(p) => {
                            next.insert(key.clone(), p.clone());
                            kept_previous = true;
                        }
                        None => {
                            next.remove(&key);
                        }
                    }
                } else if let Some(t) = previous.objects.get(&target) {
                    next.insert(target.clone(), t.clone());
                    kept_previous = true;
                } else {
                    next.remove(&key);
                }
                if reported.insert((key.clone(), path.clone())) {
                    let loc = prev.filter(|_| unchanged).map_or_else(
                        || cur.origin.location.clone(),
                        |p| p.origin.location.clone(),
                    );
                    errors.push(ConfigError {
                        location: loc,
                        object: Some(object_ref(&key)),
                        problem: Problem::Reference {
                            path,
                            target,
                            reason,
                        },
                        kept_previous,
                    });
                }
            }
        }

        MergeOutcome {
            snapshot: Snapshot { objects: next },
            errors,
        }
    }

    /// What changed from `previous` to `self`, by key. Only the objects are
    /// compared, not their origin, so moving an object between files is no change.
    pub fn diff(&self, previous: &Snapshot) -> Vec<(ObjectKey, Change)> {
        let mut out = Vec::new();
        for (k, l) in &self.objects {
            match previous.objects.get(k) {
                None => out.push((k.clone(), Change::Added)),
                Some(p) if p.object != l.object => out.push((k.clone(), Change::Updated)),
                Some(_) => {}
            }
        }
        for k in previous.objects.keys() {
            if !self.objects.contains_key(k) {
                out.push((k.clone(), Change::Removed));
            }
        }
        out.sort();
        out
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Looks up one object.
    pub fn get(&self, key: &ObjectKey) -> Option<&Loaded> {
        self.objects.get(key)
    }

    /// Every object, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Loaded)> + '_ {
        self.objects.iter()
    }

    /// Objects of one kind, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Loaded> + '_ {
        self.objects
            .range(
                ObjectKey {
                    kind,
                    namespace: None,
                    name: String::new(),
                }..,
            )
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, l)| l)
    }

    typed_iter!(/// ClusterConfigs by name.
        bgp_cluster_configs, BgpClusterConfig, CiliumBGPClusterConfig);
    typed_iter!(/// PeerConfigs by name.
        bgp_peer_configs, BgpPeerConfig, CiliumBGPPeerConfig);
    typed_iter!(/// Advertisements by name.
        bgp_advertisements, BgpAdvertisement, CiliumBGPAdvertisement);
    typed_iter!(/// NodeConfigOverrides by name.
        bgp_node_config_overrides, BgpNodeConfigOverride, CiliumBGPNodeConfigOverride);
    typed_iter!(/// LB IP pools by name.
        lb_ip_pools, LoadBalancerIPPool, CiliumLoadBalancerIPPool);
    typed_iter!(/// L2 announcement policies by name.
        l2_announcement_policies, L2AnnouncementPolicy, CiliumL2AnnouncementPolicy);
    typed_iter!(/// Egress gateway policies by name.
        egress_gateway_policies, EgressGatewayPolicy, CiliumEgressGatewayPolicy);
    typed_iter!(/// Services by namespace/name.
        services, Service, Service);
    typed_iter!(/// Nodes by name.
        nodes, Node, Node);
    typed_iter!(/// EndpointSlices by namespace/name.
        endpoint_slices, EndpointSlice, EndpointSlice);
    typed_iter!(/// Secrets by namespace/name.
        secrets, Secret, Secret);

    /// The PeerConfig called `name`.
    pub fn bgp_peer_config(&self, name: &str) -> Option<&CiliumBGPPeerConfig> {
        match self
            .objects
            .get(&ObjectKey::cluster(Kind::BgpPeerConfig, name))
            .map(|l| &l.object)
        {
            Some(Object::BgpPeerConfig(o)) => Some(o),
            _ => None,
        }
    }

    /// The Node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        match self
            .objects
            .get(&ObjectKey::cluster(Kind::Node, name))
            .map(|l| &l.object)
        {
            Some(Object::Node(o)) => Some(o),
            _ => None,
        }
    }

    /// The NodeConfigOverride for node `name` (overrides are named after nodes).
    pub fn bgp_node_config_override(&self, name: &str) -> Option<&CiliumBGPNodeConfigOverride> {
        match self
            .objects
            .get(&ObjectKey::cluster(Kind::BgpNodeConfigOverride, name))
            .map(|l| &l.object)
        {
            Some(Object::BgpNodeConfigOverride(o)) => Some(o),
            _ => None,
        }
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        match self
            .objects
            .get(&ObjectKey::namespaced(Kind::Secret, namespace, name))
            .map(|l| &l.object)
        {
            Some(Object::Secret(o)) => Some(o),
            _ => None,
        }
    }
}

/// The addresses in a Service's `status.loadBalancer.ingress[].ip` (validation has checked
/// they parse; anything that does not is skipped).
pub fn status_ingress_ips(svc: &Service) -> Vec<std::net::IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `key` in a Secret, from `data` (already base64-decoded) or
/// `stringData` (which the API server would merge into `data`, winning on conflict).
pub fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(String::as_bytes)
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.as_slice())
        })
}

fn object_ref(key: &ObjectKey) -> ObjectRef {
    ObjectRef {
        kind: key.kind.as_str().to_owned(),
        namespace: key.namespace.clone(),
        name: Some(key.name.clone()),
    }
}

/// The key an error is about, if the document got as far as kind and name.
fn identified_key(e: &ConfigError) -> Option<ObjectKey> {
    let o = e.object.as_ref()?;
    let kind = Kind::parse(&o.kind)?;
    let name = o.name.clone()?;
    Some(ObjectKey {
        kind,
        namespace: if kind.namespaced() {
            Some(o.namespace.clone().unwrap_or_else(|| "default".into()))
        } else {
            None
        },
        name,
    })
}

/// (referring object, field path, referent, what is wrong)
type Broken = (ObjectKey, String, ObjectKey, String);

fn broken_references(objs: &BTreeMap<ObjectKey, Loaded>, opts: &CheckOptions) -> Vec<Broken> {
    let mut out = Vec::new();
    for (key, l) in objs {
        match &l.object {
            Object::BgpClusterConfig(cc) => {
                for (i, inst) in cc.spec.bgp_instances.iter().enumerate() {
                    for (j, p) in inst.peers.iter().enumerate() {
                        let Some(r) = &p.peer_config_ref else {
                            continue;
                        };
                        let target = ObjectKey::cluster(Kind::BgpPeerConfig, &r.name);
                        if !objs.contains_key(&target) {
                            out.push((
                                key.clone(),
                                format!("spec.bgpInstances[{i}].peers[{j}].peerConfigRef.name"),
                                target,
                                "does not exist (condition cilium.io/MissingPeerConfigs)".into(),
                            ));
                        }
                    }
                }
            }
            Object::BgpPeerConfig(pc) => {
                let Some(name) = &pc.spec.auth_secret_ref else {
                    continue;
                };
                let target = ObjectKey::namespaced(Kind::Secret, &opts.bgp_secrets_namespace, name);
                let reason = match objs.get(&target).map(|t| &t.object) {
                    Some(Object::Secret(s)) => {
                        if secret_value(s, AUTH_SECRET_PASSWORD_KEY).is_some() {
                            continue;
                        }
                        format!(
                            "has no key {AUTH_SECRET_PASSWORD_KEY:?} (condition cilium.io/MissingAuthSecret)"
                        )
                    }
                    _ => format!(
                        "does not exist; BGP auth Secrets are read from namespace {} (condition cilium.io/MissingAuthSecret)",
                        opts.bgp_secrets_namespace
                    ),
                };
                out.push((key.clone(), "spec.authSecretRef".into(), target, reason));
            }
            _ => {}
        }
    }
    out
}
