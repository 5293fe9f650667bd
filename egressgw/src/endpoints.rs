//! What resolution needs from Pods and Nodes, extracted once per [`crate::resolve`] call so
//! that the per-policy loops only match labels and walk CIDRs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod};
use rackd_model::selector::Labels;
use rackd_model::{pod_ips, pod_node};
use rackd_types::cilium::POD_NAMESPACE_LABEL;

/// The label the API server puts on every Namespace (Kubernetes >= 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The label Cilium adds to an endpoint's identity for its ServiceAccount
/// (`io.cilium.k8s.policy.serviceaccount`, `pkg/k8s/apis/cilium.io/const.go`).
pub const POD_SERVICE_ACCOUNT_LABEL: &str = "io.cilium.k8s.policy.serviceaccount";

/// A Node as resolution sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeInfo<'a> {
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The tunnel endpoint: first IPv4 InternalIP, else first IPv6 InternalIP.
    pub ip: Option<IpAddr>,
}

/// Nodes by name (sorted, so candidate lists come out sorted by name for free). A node
/// without a name cannot be referred to by pods or elections and is left out.
pub(crate) fn index_nodes<'a>(nodes: &[&'a Node]) -> BTreeMap<&'a str, NodeInfo<'a>> {
    nodes
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.as_deref().filter(|s| !s.is_empty())?;
            Some((
                name,
                NodeInfo {
                    labels: n.metadata.labels.as_ref(),
                    ip: internal_ip(n),
                },
            ))
        })
        .collect()
}

/// The node's InternalIP, IPv4 preferred: Cilium's gateway IP is an IPv4 node address even in
/// the IPv6 policy map (`cilium_egress_gw_policy_v6` value: `be32 gateway_ip`), so a dual-stack
/// node is reached over IPv4; an IPv6-only node over IPv6.
pub(crate) fn internal_ip(node: &Node) -> Option<IpAddr> {
    let addrs = node.status.as_ref()?.addresses.as_ref()?;
    let mut v6 = None;
    for a in addrs.iter().filter(|a| a.type_ == "InternalIP") {
        match a.address.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V4(_)) => return Some(ip),
            Ok(ip @ IpAddr::V6(_)) if v6.is_none() => v6 = Some(ip),
            _ => {}
        }
    }
    v6
}

/// A Pod that is an egress endpoint (Cilium: a CiliumEndpoint with addresses).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub service_account: Option<&'a str>,
    pub ips: Vec<IpAddr>,
    pub node: &'a str,
    /// FNV-1a (32 bit) of the pod UID: which gateway of a multi-gateway policy it uses.
    pub pin: u32,
}

/// The pods that are endpoints, sorted by namespace/name so every "first wins" is stable.
///
/// Not endpoints (Cilium has no CiliumEndpoint with an address for them): host-network pods
/// (they use the node's address), pods in phase Succeeded or Failed, pods without an address,
/// pods not scheduled to a node.
pub(crate) fn endpoints<'a>(pods: &[&'a Pod]) -> Vec<Endpoint<'a>> {
    let mut out: Vec<Endpoint<'a>> = pods.iter().filter_map(|p| endpoint(p)).collect();
    out.sort_by(|a, b| (a.namespace, a.name).cmp(&(b.namespace, b.name)));
    out
}

fn endpoint(pod: &Pod) -> Option<Endpoint<'_>> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return None;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let ips = pod_ips(pod);
    if ips.is_empty() {
        return None;
    }
    let node = pod_node(pod)?;
    let name = pod.metadata.name.as_deref()?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    // Cilium pins by the CiliumEndpoint's UID; the Pod's UID plays that role here. Pods read
    // from files may have none: their namespace/name is stable for their life too.
    let pin = match pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => fnv1a32(uid.as_bytes()),
        None => fnv1a32(format!("{namespace}/{name}").as_bytes()),
    };
    Some(Endpoint {
        namespace,
        name,
        labels: pod.metadata.labels.as_ref(),
        service_account: spec
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty()),
        ips,
        node,
        pin,
    })
}

/// FNV-1a, 32 bit: the hash Cilium's multi-gateway code spreads endpoint UIDs with.
pub(crate) fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u32::from(*b)).wrapping_mul(PRIME))
}

/// A pod's labels as Cilium's endpoint selectors see them: its own labels plus the
/// namespace and ServiceAccount labels Cilium adds to every identity (so the documented
/// `podSelector: {matchLabels: {io.kubernetes.pod.namespace: default}}` works). The added
/// labels win over a pod label of the same key, as they do in the identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodLabels<'a> {
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub namespace: &'a str,
    pub service_account: Option<&'a str>,
}

impl Labels for PodLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match key {
            POD_NAMESPACE_LABEL => Some(self.namespace),
            POD_SERVICE_ACCOUNT_LABEL => self.service_account,
            _ => self.labels.and_then(|l| l.get(key)).map(String::as_str),
        }
    }
}

/// A namespace's labels, always with `kubernetes.io/metadata.name=<name>` (the API server
/// enforces that label; a namespace rackd has no object for gets only it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NamespaceLabelView<'a> {
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl Labels for NamespaceLabelView<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if key == NAMESPACE_NAME_LABEL {
            return Some(self.name);
        }
        self.labels.and_then(|l| l.get(key)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_reference_vectors() {
        // Published FNV-1a test vectors (Fowler/Noll/Vo).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn namespace_view_always_has_its_name() {
        let v = NamespaceLabelView {
            name: "batuu",
            labels: None,
        };
        assert_eq!(v.label(NAMESPACE_NAME_LABEL), Some("batuu"));
        assert_eq!(v.label("team"), None);
    }
}
