//! The closed set of object kinds rackd reads, and their identity.

use std::fmt;

use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cilium::{
    CiliumBGPAdvertisement, CiliumBGPClusterConfig, CiliumBGPNodeConfigOverride,
    CiliumBGPPeerConfig, CiliumEgressGatewayPolicy, CiliumL2AnnouncementPolicy,
    CiliumLoadBalancerIPPool,
};
use crate::error::Location;

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
}

impl Kind {
    /// All kinds, in a stable order.
    pub const ALL: [Kind; 11] = [
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
            Kind::Service | Kind::Node | Kind::Secret => &["v1"],
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::Service | Kind::EndpointSlice | Kind::Secret)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind, namespace (namespaced kinds only) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace; `None` for cluster-scoped kinds.
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

/// A loaded, validated object.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs, clippy::large_enum_variant)]
pub enum Object {
    BgpClusterConfig(CiliumBGPClusterConfig),
    BgpPeerConfig(CiliumBGPPeerConfig),
    BgpAdvertisement(CiliumBGPAdvertisement),
    BgpNodeConfigOverride(CiliumBGPNodeConfigOverride),
    LoadBalancerIPPool(CiliumLoadBalancerIPPool),
    L2AnnouncementPolicy(CiliumL2AnnouncementPolicy),
    EgressGatewayPolicy(CiliumEgressGatewayPolicy),
    Service(Service),
    Node(Node),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::BgpClusterConfig(_) => Kind::BgpClusterConfig,
            Object::BgpPeerConfig(_) => Kind::BgpPeerConfig,
            Object::BgpAdvertisement(_) => Kind::BgpAdvertisement,
            Object::BgpNodeConfigOverride(_) => Kind::BgpNodeConfigOverride,
            Object::LoadBalancerIPPool(_) => Kind::LoadBalancerIPPool,
            Object::L2AnnouncementPolicy(_) => Kind::L2AnnouncementPolicy,
            Object::EgressGatewayPolicy(_) => Kind::EgressGatewayPolicy,
            Object::Service(_) => Kind::Service,
            Object::Node(_) => Kind::Node,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Secret(_) => Kind::Secret,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::BgpClusterConfig(o) => &o.metadata,
            Object::BgpPeerConfig(o) => &o.metadata,
            Object::BgpAdvertisement(o) => &o.metadata,
            Object::BgpNodeConfigOverride(o) => &o.metadata,
            Object::LoadBalancerIPPool(o) => &o.metadata,
            Object::L2AnnouncementPolicy(o) => &o.metadata,
            Object::EgressGatewayPolicy(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
        }
    }

    /// The object as JSON, in its stored apiVersion.
    pub fn to_json(&self) -> serde_json::Value {
        let r = match self {
            Object::BgpClusterConfig(o) => serde_json::to_value(o),
            Object::BgpPeerConfig(o) => serde_json::to_value(o),
            Object::BgpAdvertisement(o) => serde_json::to_value(o),
            Object::BgpNodeConfigOverride(o) => serde_json::to_value(o),
            Object::LoadBalancerIPPool(o) => serde_json::to_value(o),
            Object::L2AnnouncementPolicy(o) => serde_json::to_value(o),
            Object::EgressGatewayPolicy(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::Node(o) => serde_json::to_value(o),
            Object::EndpointSlice(o) => serde_json::to_value(o),
            Object::Secret(o) => serde_json::to_value(o),
        };
        // These types only contain maps with string keys, so encoding cannot fail.
        r.unwrap_or(serde_json::Value::Null)
    }

    /// The object's key. The loader guarantees a name and, for namespaced kinds, a
    /// namespace (defaulted to `default`).
    pub fn key(&self) -> ObjectKey {
        let kind = self.kind();
        let m = self.metadata();
        ObjectKey {
            kind,
            namespace: kind
                .namespaced()
                .then(|| m.namespace.clone().unwrap_or_else(|| "default".into())),
            name: m.name.clone().unwrap_or_default(),
        }
    }
}

/// Where a loaded object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Source, document and line of the object's first line.
    pub location: Location,
    /// The apiVersion as written (objects are stored in the first version of
    /// [`Kind::api_versions`]).
    pub api_version: String,
}

/// An object together with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The object, validated and converted to the stored version.
    pub object: Object,
    /// Where it came from.
    pub origin: Origin,
}
