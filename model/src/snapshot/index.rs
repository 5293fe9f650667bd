//! The snapshot's secondary indexes, kept by [`super::Snapshot::insert`] and
//! [`super::Snapshot::remove`] as objects come and go, so a lookup never scans a kind:
//!
//! - Service → the EndpointSlices labelled `kubernetes.io/service-name` with it;
//! - Node → the Pods scheduled on it (`spec.nodeName`);
//! - Pod → the EndpointSlices that place an endpoint by it: an endpoint whose `targetRef` is
//!   the Pod and which has no `nodeName` of its own, so its node is the Pod's (what a Pod
//!   change can alter in a Service's backends).
//!
//! The indexes are persistent maps like the objects: a snapshot clone shares them. They are
//! a function of the objects alone; [`Indexes::build`] is that function from scratch, which
//! `tests/store_props.rs` compares the incrementally kept indexes with.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{pod_node, slice_service};
use crate::object::{Object, ObjectKey};

/// `(namespace, name)` of a namespaced object.
pub(super) type NsName = (String, String);

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Indexes {
    /// Service → names of its EndpointSlices (same namespace).
    pub(super) slices: imbl::OrdMap<NsName, imbl::OrdSet<String>>,
    /// Node name → the Pods on it.
    pub(super) pods_by_node: imbl::OrdMap<String, imbl::OrdSet<NsName>>,
    /// Pod → the EndpointSlices with an endpoint whose node is the Pod's.
    pub(super) slices_by_pod: imbl::OrdMap<NsName, imbl::OrdSet<NsName>>,
}

impl Indexes {
    /// The indexes of `objects`, computed from scratch.
    pub(super) fn build<'a>(objects: impl Iterator<Item = (&'a ObjectKey, &'a Object)>) -> Self {
        let mut out = Self::default();
        for (k, o) in objects {
            out.add(k, o);
        }
        out
    }

    /// Indexes `o`, stored under `key`.
    pub(super) fn add(&mut self, key: &ObjectKey, o: &Object) {
        let Some(e) = Entries::of(key, o) else {
            return;
        };
        if let Some(svc) = e.service {
            set_add(&mut self.slices, svc, key.name.clone());
        }
        for pod in e.placing_pods {
            set_add(&mut self.slices_by_pod, pod, e.me.clone());
        }
        if let Some(node) = e.node {
            set_add(&mut self.pods_by_node, node, e.me);
        }
    }

    /// Takes `o`, stored under `key`, out of the indexes.
    pub(super) fn remove(&mut self, key: &ObjectKey, o: &Object) {
        let Some(e) = Entries::of(key, o) else {
            return;
        };
        if let Some(svc) = e.service {
            set_remove(&mut self.slices, &svc, &key.name);
        }
        for pod in e.placing_pods {
            set_remove(&mut self.slices_by_pod, &pod, &e.me);
        }
        if let Some(node) = e.node {
            set_remove(&mut self.pods_by_node, &node, &e.me);
        }
    }
}

/// What one object stands for in the indexes.
struct Entries {
    /// The object's `(namespace, name)`.
    me: NsName,
    /// An EndpointSlice's Service.
    service: Option<NsName>,
    /// The Pods an EndpointSlice's endpoints take their node from.
    placing_pods: Vec<NsName>,
    /// A Pod's node.
    node: Option<String>,
}

impl Entries {
    /// `None` for the kinds no index covers.
    fn of(key: &ObjectKey, o: &Object) -> Option<Self> {
        let ns = key.namespace.clone().unwrap_or_default();
        let mut e = Entries {
            me: (ns.clone(), key.name.clone()),
            service: None,
            placing_pods: Vec::new(),
            node: None,
        };
        match o {
            Object::EndpointSlice(es) => {
                e.service = slice_service(o).map(|s| (ns.clone(), s.to_owned()));
                e.placing_pods = pods_placing(es, &ns);
            }
            Object::Pod(pod) => e.node = pod_node(pod).map(str::to_owned),
            _ => return None,
        }
        Some(e)
    }
}

/// The Pods that endpoints of `es` (in namespace `ns`) take their node from: a `targetRef` of
/// kind Pod (namespace defaulting to the slice's) on an endpoint without `nodeName`. Sorted,
/// without repeats.
pub(super) fn pods_placing(es: &EndpointSlice, ns: &str) -> Vec<NsName> {
    let mut out: Vec<NsName> = es
        .endpoints
        .iter()
        .flatten()
        .filter(|ep| ep.node_name.is_none())
        .filter_map(|ep| {
            let r = ep.target_ref.as_ref()?;
            if r.kind.as_deref() != Some("Pod") {
                return None;
            }
            Some((
                r.namespace.clone().unwrap_or_else(|| ns.to_owned()),
                r.name.clone()?,
            ))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn set_add<K: Ord + Clone, V: Ord + Clone>(map: &mut imbl::OrdMap<K, imbl::OrdSet<V>>, k: K, v: V) {
    map.entry(k).or_default().insert(v);
}

fn set_remove<K: Ord + Clone, V: Ord + Clone>(
    map: &mut imbl::OrdMap<K, imbl::OrdSet<V>>,
    k: &K,
    v: &V,
) {
    if let Some(set) = map.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            map.remove(k);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{CheckOptions, Snapshot, parse_documents};

    fn snap(yaml: &str) -> Snapshot {
        let p = parse_documents("t.yaml", yaml);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        Snapshot::build(&[p], &CheckOptions::default()).snapshot
    }

    const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\nspec: {nodeName: n1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: shop}\nspec: {nodeName: n2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: bar}\nspec: {nodeName: n1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: shop}\n";

    const SLICES: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: a}}\n- {addresses: [10.0.0.2], targetRef: {kind: Pod, name: b}, nodeName: n2}\n- {addresses: [10.0.0.3], targetRef: {kind: Pod, namespace: bar, name: c}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: api-1, namespace: shop, labels: {kubernetes.io/service-name: api}}\naddressType: IPv4\nendpoints:\n- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: a}}\n";

    fn names<'a, T: 'a>(
        it: impl Iterator<Item = &'a T>,
        meta: impl Fn(&T) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Vec<String> {
        it.map(|o| {
            let m = meta(o);
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            )
        })
        .collect()
    }

    #[test]
    fn pods_by_node_and_slices_by_pod() {
        let s = snap(&format!("{PODS}---\n{SLICES}"));
        assert!(s.indexes_match_rebuild());
        assert_eq!(
            names(s.pods_on_node("n1"), |p| &p.metadata),
            ["bar/c", "shop/a"]
        );
        assert_eq!(names(s.pods_on_node("n2"), |p| &p.metadata), ["shop/b"]);
        assert!(s.pods_on_node("n3").next().is_none());
        // Pod a places an endpoint in both slices; b's endpoint has its own node; c is
        // named across namespaces; d in none.
        let placed = |ns, pod| names(s.endpoint_slices_placed_by(ns, pod), |e| &e.metadata);
        assert_eq!(placed("shop", "a"), ["shop/api-1", "shop/web-1"]);
        assert!(placed("shop", "b").is_empty());
        assert_eq!(placed("bar", "c"), ["shop/web-1"]);
        assert!(placed("shop", "c").is_empty());
        assert!(placed("shop", "d").is_empty());
        // A slice names Pods whether they exist or not.
        let slices_only = snap(SLICES);
        assert_eq!(
            names(slices_only.endpoint_slices_placed_by("shop", "a"), |e| &e
                .metadata),
            ["shop/api-1", "shop/web-1"]
        );
        assert!(slices_only.pods_on_node("n1").next().is_none());
    }
}
