//! The closed set of object kinds rackd reads, and an object's identity.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every kind rackd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `CiliumBGPClusterConfig`
    BgpClusterConfig,
    /// `CiliumBGPPeerConfig`
    BgpPeerConfig,
    /// `CiliumBGPAdvertisement`
    BgpAdvertisement,
    /// `CiliumBGPNodeConfigOverride`
    BgpNodeConfigOverride,
    /// `CiliumLoadBalancerIPPool`
    LoadBalancerIPPool,
    /// `CiliumL2AnnouncementPolicy`
    L2AnnouncementPolicy,
    /// `CiliumEgressGatewayPolicy`
    EgressGatewayPolicy,
    /// core/v1 `Service`
    Service,
    /// core/v1 `Node`
    Node,
    /// discovery.k8s.io/v1 `EndpointSlice`
    EndpointSlice,
    /// core/v1 `Secret`
    Secret,
    /// core/v1 `Pod` (what the service datapath needs: node, addresses, labels)
    Pod,
    /// core/v1 `Namespace` (cluster-scoped; its labels, for the egress gateway's
    /// `namespaceSelector`)
    Namespace,
}

impl Kind {
    /// All kinds, in a stable order.
    pub const ALL: [Kind; 13] = [
        Kind::BgpClusterConfig,
        Kind::BgpPeerConfig,
        Kind::BgpAdvertisement,
        Kind::BgpNodeConfigOverride,
        Kind::LoadBalancerIPPool,
        Kind::L2AnnouncementPolicy,
        Kind::EgressGatewayPolicy,
        Kind::Service,
        Kind::Node,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::Pod,
        Kind::Namespace,
    ];

    /// The `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BgpClusterConfig => "CiliumBGPClusterConfig",
            Kind::BgpPeerConfig => "CiliumBGPPeerConfig",
            Kind::BgpAdvertisement => "CiliumBGPAdvertisement",
            Kind::BgpNodeConfigOverride => "CiliumBGPNodeConfigOverride",
            Kind::LoadBalancerIPPool => "CiliumLoadBalancerIPPool",
            Kind::L2AnnouncementPolicy => "CiliumL2AnnouncementPolicy",
            Kind::EgressGatewayPolicy => "CiliumEgressGatewayPolicy",
            Kind::Service => "Service",
            Kind::Node => "Node",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::Pod => "Pod",
            Kind::Namespace => "Namespace",
        }
    }

    /// Looks up a `kind` string (case-sensitive, as Kubernetes is).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The apiVersions accepted for this kind; the first is the one stored.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::BgpClusterConfig
            | Kind::BgpPeerConfig
            | Kind::BgpAdvertisement
            | Kind::BgpNodeConfigOverride
            | Kind::LoadBalancerIPPool => &["cilium.io/v2", "cilium.io/v2alpha1"],
            // Cilium v1.20 serves the L2 policy only as v2alpha1.
            Kind::L2AnnouncementPolicy => &["cilium.io/v2alpha1"],
            Kind::EgressGatewayPolicy => &["cilium.io/v2"],
            Kind::Service | Kind::Node | Kind::Secret | Kind::Pod | Kind::Namespace => &["v1"],
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::Service | Kind::EndpointSlice | Kind::Secret | Kind::Pod
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Kind::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown kind {s:?}; expected one rackd reads"))
        })
    }
}

/// Identity of an object: kind, namespace (namespaced kinds only) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace; `None` for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Key of a cluster-scoped object.
    pub fn cluster(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: None,
            name: name.into(),
        }
    }

    /// Key of a namespaced object.
    pub fn namespaced(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Kind>(&j).unwrap(), k);
        }
        assert!(serde_json::from_str::<Kind>("\"Deployment\"").is_err());
        assert!(serde_json::from_str::<Kind>("\"pod\"").is_err());
        assert!(Kind::Pod.namespaced());
        assert!(
            !Kind::Namespace.namespaced(),
            "a Namespace is cluster-scoped"
        );
        assert_eq!(Kind::parse("Namespace"), Some(Kind::Namespace));
        let key = ObjectKey::namespaced(Kind::Service, "ns", "web");
        let j = serde_json::to_value(&key).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"kind": "Service", "namespace": "ns", "name": "web"})
        );
        assert_eq!(key.to_string(), "Service ns/web");
    }
}
