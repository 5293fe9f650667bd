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

mod index;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rackd_types::cilium::ENDPOINTSLICE_SERVICE_NAME_LABEL;

use crate::cilium::{
    AUTH_SECRET_PASSWORD_KEY, CiliumBGPAdvertisement, CiliumBGPClusterConfig,
    CiliumBGPNodeConfigOverride, CiliumBGPPeerConfig, CiliumEgressGatewayPolicy,
    CiliumL2AnnouncementPolicy, CiliumLoadBalancerIPPool,
};
use crate::error::{ConfigError, ObjectRef, Problem};
use crate::object::{Kind, Loaded, Object, ObjectKey};
use crate::parse::ParsedSource;

use self::index::Indexes;

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
            bgp_secrets_namespace: rackd_types::cilium::DEFAULT_BGP_SECRETS_NAMESPACE.into(),
        }
    }
}

/// A stored object: shared, so a snapshot clone copies pointers and two snapshots compare
/// unchanged objects by address first.
#[derive(Debug, Clone)]
struct Entry(Arc<Loaded>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

/// All objects, keyed by kind/namespace/name, with the indexes controllers need (module
/// `index`: a Service's EndpointSlices, the Pods on a node, the EndpointSlices whose endpoints
/// a Pod places; a Node is found by its key).
///
/// Persistent maps (`imbl`): a clone is O(1) and shares everything, an update copies one path
/// of the tree, and [`Snapshot::changes_since`] skips the subtrees two snapshots share, so
/// handing every controller the current snapshot and asking it what changed costs in
/// proportion to the change, not to the 27,000 objects.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    objects: imbl::OrdMap<ObjectKey, Entry>,
    index: Indexes,
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        // The indexes are derived from the objects.
        self.objects == other.objects
    }
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
            self.of_kind(Kind::$kind).filter_map(|l| match &*l.object {
                Object::$kind(o) => Some(o),
                _ => None,
            })
        }
    };
}

macro_rules! typed_get {
    ($(#[$doc:meta])* $fn:ident, $kind:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $fn(&self, name: &str) -> Option<&$ty> {
            match self
                .get(&ObjectKey::cluster(Kind::$kind, name))
                .map(|l| &*l.object)
            {
                Some(Object::$kind(o)) => Some(o),
                _ => None,
            }
        }
    };
}

impl Snapshot {
    /// Builds a snapshot from scratch (no previous version to fall back to).
    pub fn build(sources: &[ParsedSource], opts: &CheckOptions) -> MergeOutcome {
        Self::merge(&Snapshot::default(), sources, opts)
    }

    /// Merges freshly parsed sources over the previous good snapshot; see the
    /// module docs for the rules. This is the whole-input form (`rackctl config validate`,
    /// and the reference [`crate::Store`] is tested against); the daemon applies changes
    /// incrementally through [`crate::Store`].
    pub fn merge(
        previous: &Snapshot,
        sources: &[ParsedSource],
        opts: &CheckOptions,
    ) -> MergeOutcome {
        let mut errors = Vec::new();
        let mut next: BTreeMap<ObjectKey, Arc<Loaded>> = BTreeMap::new();
        let prev = |k: &ObjectKey| previous.objects.get(k).map(|e| e.0.clone());

        // Rules 1 and 4.
        for src in sources {
            for l in &src.objects {
                let key = l.object.key();
                if let Some(first) = next.get(&key) {
                    errors.push(duplicate(&key, l, first));
                    continue;
                }
                next.insert(key, Arc::new(l.clone()));
            }
        }

        // Rules 2 and 3.
        for src in sources {
            let mut wholesale = false;
            for e in &src.errors {
                let mut e = e.clone();
                match claim_of(&e) {
                    Claim::Key(key) => {
                        if !next.contains_key(&key)
                            && let Some(p) = prev(&key)
                        {
                            next.insert(key, p);
                            e.kept_previous = true;
                        }
                    }
                    // A misspelt kind: keep whatever this source defined under that name.
                    Claim::Name(name) => {
                        let keep: Vec<_> = previous
                            .objects
                            .iter()
                            .filter(|(k, p)| {
                                k.name == name
                                    && p.0.origin.location.source == src.source
                                    && !next.contains_key(*k)
                            })
                            .map(|(k, p)| (k.clone(), p.0.clone()))
                            .collect();
                        e.kept_previous = !keep.is_empty();
                        next.extend(keep);
                    }
                    Claim::Source => wholesale = true,
                    Claim::None => {}
                }
                errors.push(e);
            }
            if wholesale {
                for (key, p) in previous.objects.iter() {
                    if p.0.origin.location.source == src.source && !next.contains_key(key) {
                        next.insert(key.clone(), p.0.clone());
                    }
                }
            }
        }

        // Rule 5.
        let passes = next.len() + previous.len();
        errors.extend(resolve_references(&mut next, &prev, opts, passes));

        let mut snapshot = Snapshot::default();
        for (k, l) in next {
            snapshot.insert(k, l);
        }
        MergeOutcome { snapshot, errors }
    }

    /// Inserts or replaces one object, keeping the indexes.
    pub(crate) fn insert(&mut self, key: ObjectKey, l: Arc<Loaded>) {
        if let Some(old) = self.objects.get(&key) {
            self.index.remove(&key, &old.0.object);
        }
        self.index.add(&key, &l.object);
        self.objects.insert(key, Entry(l));
    }

    /// Removes one object, keeping the indexes.
    pub(crate) fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Loaded>> {
        let old = self.objects.remove(key)?;
        self.index.remove(key, &old.0.object);
        Some(old.0)
    }

    /// Whether the indexes, kept up to date object by object, equal the indexes built from
    /// scratch over the objects (for tests: `tests/store_props.rs`).
    #[doc(hidden)]
    pub fn indexes_match_rebuild(&self) -> bool {
        let rebuilt = Indexes::build(self.objects.iter().map(|(k, e)| (k, &*e.0.object)));
        rebuilt == self.index
    }

    /// What changed from `previous` to `self`, by key. Only the objects are
    /// compared, not their origin, so moving an object between files is no change.
    pub fn diff(&self, previous: &Snapshot) -> Vec<(ObjectKey, Change)> {
        self.changes_since(previous)
    }

    /// What changed from `previous` to `self`, in key order, in time proportional to the
    /// change when `self` was derived from `previous` (shared subtrees are skipped). Only
    /// the objects are compared, not their origin.
    pub fn changes_since(&self, previous: &Snapshot) -> Vec<(ObjectKey, Change)> {
        use imbl::ordmap::DiffItem;
        previous
            .objects
            .diff(&self.objects)
            .filter_map(|d| match d {
                DiffItem::Add(k, _) => Some((k.clone(), Change::Added)),
                DiffItem::Remove(k, _) => Some((k.clone(), Change::Removed)),
                DiffItem::Update {
                    old: (k, o),
                    new: (_, n),
                } => (!o.0.same_object(&n.0)).then(|| (k.clone(), Change::Updated)),
            })
            .collect()
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
        self.objects.get(key).map(|e| &*e.0)
    }

    /// The stored key equal to `key` (borrowed from the snapshot).
    pub fn key(&self, key: &ObjectKey) -> Option<&ObjectKey> {
        self.objects.get_key_value(key).map(|(k, _)| k)
    }

    /// Looks up one object, shared.
    pub fn get_shared(&self, key: &ObjectKey) -> Option<Arc<Loaded>> {
        self.objects.get(key).map(|e| e.0.clone())
    }

    /// Every object, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Loaded)> + '_ {
        self.objects.iter().map(|(k, e)| (k, &*e.0))
    }

    /// Number of objects of each kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut out = BTreeMap::new();
        for k in Kind::ALL {
            let n = self.keys_of_kind(k).count();
            if n > 0 {
                out.insert(k, n);
            }
        }
        out
    }

    fn keys_of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Entry)> + '_ {
        self.objects
            .range(
                ObjectKey {
                    kind,
                    namespace: None,
                    name: String::new(),
                }..,
            )
            .take_while(move |(k, _)| k.kind == kind)
    }

    /// Objects of one kind, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Loaded> + '_ {
        self.keys_of_kind(kind).map(|(_, e)| &*e.0)
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
    typed_iter!(/// Pods by namespace/name.
        pods, Pod, Pod);
    typed_iter!(/// Namespaces by name (only their labels are read: the egress gateway's
        /// `namespaceSelector`).
        namespaces, Namespace, Namespace);

    typed_get!(/// The PeerConfig called `name`.
        bgp_peer_config, BgpPeerConfig, CiliumBGPPeerConfig);
    typed_get!(/// The Node called `name`.
        node, Node, Node);
    typed_get!(/// The NodeConfigOverride for node `name` (overrides are named after nodes).
        bgp_node_config_override, BgpNodeConfigOverride, CiliumBGPNodeConfigOverride);

    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        match self
            .get(&ObjectKey::namespaced(Kind::Service, namespace, name))
            .map(|l| &*l.object)
        {
            Some(Object::Service(o)) => Some(o),
            _ => None,
        }
    }

    /// The Pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        match self
            .get(&ObjectKey::namespaced(Kind::Pod, namespace, name))
            .map(|l| &*l.object)
        {
            Some(Object::Pod(o)) => Some(o),
            _ => None,
        }
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        match self
            .get(&ObjectKey::namespaced(Kind::Secret, namespace, name))
            .map(|l| &*l.object)
        {
            Some(Object::Secret(o)) => Some(o),
            _ => None,
        }
    }

    /// The EndpointSlices of Service `namespace/name` (labelled `kubernetes.io/service-name`
    /// in the same namespace), from the index: no scan of every slice.
    pub fn endpoint_slices_of<'a>(
        &'a self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        let names = self
            .index
            .slices
            .get(&(namespace.to_owned(), service.to_owned()))
            .cloned()
            .unwrap_or_default();
        let ns = namespace.to_owned();
        names
            .into_iter()
            .filter_map(move |n| self.endpoint_slice(&ns, &n))
    }

    /// The EndpointSlices with an endpoint that takes its node from Pod `namespace/pod` (its
    /// `targetRef`, with no `nodeName` of its own), from the index: the slices whose meaning a
    /// change of that Pod can change.
    pub fn endpoint_slices_placed_by<'a>(
        &'a self,
        namespace: &str,
        pod: &str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        let slices = self
            .index
            .slices_by_pod
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
            .unwrap_or_default();
        slices
            .into_iter()
            .filter_map(move |(ns, n)| self.endpoint_slice(&ns, &n))
    }

    /// The Pods scheduled on node `node` (`spec.nodeName`), from the index.
    pub fn pods_on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Pod> + 'a {
        let pods = self
            .index
            .pods_by_node
            .get(node)
            .cloned()
            .unwrap_or_default();
        pods.into_iter()
            .filter_map(move |(ns, n)| self.pod(&ns, &n))
    }

    /// The EndpointSlice `namespace/name`.
    pub fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<&EndpointSlice> {
        match self
            .get(&ObjectKey::namespaced(Kind::EndpointSlice, namespace, name))
            .map(|l| &*l.object)
        {
            Some(Object::EndpointSlice(o)) => Some(o),
            _ => None,
        }
    }
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_service(o: &Object) -> Option<&str> {
    match o {
        Object::EndpointSlice(es) => es
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ENDPOINTSLICE_SERVICE_NAME_LABEL))
            .map(String::as_str),
        _ => None,
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

/// A Pod's addresses: `status.podIPs[].ip`, else `status.podIP` (validation has checked they
/// parse; anything that does not is skipped).
pub fn pod_ips(pod: &Pod) -> Vec<std::net::IpAddr> {
    let Some(st) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<std::net::IpAddr> = st
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|a| a.ip.parse().ok())
        .collect();
    // `podIP` is `podIPs[0]` when both are set; older writers set only `podIP`.
    if let Some(ip) = st.pod_ip.as_deref().and_then(|s| s.parse().ok())
        && !ips.contains(&ip)
    {
        ips.insert(0, ip);
    }
    ips
}

/// The node a Pod is scheduled on (`spec.nodeName`), if any.
pub fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
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

pub(crate) fn object_ref(key: &ObjectKey) -> ObjectRef {
    ObjectRef {
        kind: key.kind.as_str().to_owned(),
        namespace: key.namespace.clone(),
        name: Some(key.name.clone()),
    }
}

/// The error for a second definition of `key` (`dup`) after `first`.
pub(crate) fn duplicate(key: &ObjectKey, dup: &Loaded, first: &Loaded) -> ConfigError {
    ConfigError {
        location: dup.origin.location.clone(),
        object: Some(object_ref(key)),
        problem: Problem::Duplicate {
            key: key.clone(),
            first: first.origin.location.clone(),
        },
        kept_previous: false,
    }
}

/// Which previous objects a parse error keeps in force (rules 2 and 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The object the failed document defines.
    Key(ObjectKey),
    /// Every object of this name from the same source (the kind is misspelt).
    Name(String),
    /// Every object from the same source (the document could not be identified).
    Source,
    /// Nothing (an error that is not about a document's content).
    None,
}

pub(crate) fn claim_of(e: &ConfigError) -> Claim {
    if matches!(
        e.problem,
        Problem::Duplicate { .. } | Problem::Reference { .. }
    ) {
        return Claim::None;
    }
    match (
        identified_key(e),
        e.object.as_ref().and_then(|o| o.name.clone()),
    ) {
        (Some(k), _) => Claim::Key(k),
        (None, Some(name)) => Claim::Name(name),
        (None, None) => Claim::Source,
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

/// Rule 5 on `next`: a changed object whose reference is broken falls back to its previous
/// version (or goes, if new); an unchanged object whose referent vanished keeps the
/// referent's previous version. Repeated until stable. `prev` looks up the previous good
/// version of a key; `passes` bounds the repetitions (one per key involved is enough).
/// Returns one error per broken reference.
pub(crate) fn resolve_references(
    next: &mut BTreeMap<ObjectKey, Arc<Loaded>>,
    prev: &dyn Fn(&ObjectKey) -> Option<Arc<Loaded>>,
    opts: &CheckOptions,
    passes: usize,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut reported: BTreeSet<(ObjectKey, String)> = BTreeSet::new();
    // Every pass either reverts an object to its previous version, drops it, or
    // restores a previous referent; each can happen once per key.
    for _ in 0..=passes {
        let broken = broken_references(next, opts);
        if broken.is_empty() {
            break;
        }
        for (key, path, target, reason) in broken {
            let Some(cur) = next.get(&key).cloned() else {
                continue;
            };
            let p = prev(&key);
            let unchanged = p.as_ref().is_some_and(|p| p.same_object(&cur));
            let mut kept_previous = false;
            if !unchanged {
                match &p {
                    Some(p) => {
                        next.insert(key.clone(), p.clone());
                        kept_previous = true;
                    }
                    None => {
                        next.remove(&key);
                    }
                }
            } else if let Some(t) = prev(&target) {
                next.insert(target.clone(), t);
                kept_previous = true;
            } else {
                next.remove(&key);
            }
            if reported.insert((key.clone(), path.clone())) {
                let loc = p.filter(|_| unchanged).map_or_else(
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
    errors
}

/// (referring object, field path, referent, what is wrong)
type Broken = (ObjectKey, String, ObjectKey, String);

/// Whether objects of `kind` take part in cross-object references (as referrer or referent).
pub(crate) fn in_references(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::BgpClusterConfig | Kind::BgpPeerConfig | Kind::Secret
    )
}

fn broken_references(objs: &BTreeMap<ObjectKey, Arc<Loaded>>, opts: &CheckOptions) -> Vec<Broken> {
    let mut out = Vec::new();
    for (key, l) in objs {
        match &*l.object {
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
                let reason = match objs.get(&target).map(|t| &*t.object) {
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
