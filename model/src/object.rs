//! Loaded objects: the closed set of kinds rackd reads (the kinds and their identity are
//! `rackd-types`' [`Kind`] and [`ObjectKey`], shared with every crate), with their origin.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cilium::{
    CiliumBGPAdvertisement, CiliumBGPClusterConfig, CiliumBGPNodeConfigOverride,
    CiliumBGPPeerConfig, CiliumEgressGatewayPolicy, CiliumL2AnnouncementPolicy,
    CiliumLoadBalancerIPPool,
};
use crate::error::Location;

pub use rackd_types::{Kind, ObjectKey};

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
    Pod(Pod),
    Namespace(Namespace),
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
            Object::Pod(_) => Kind::Pod,
            Object::Namespace(_) => Kind::Namespace,
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
            Object::Pod(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
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
            Object::Pod(o) => serde_json::to_value(o),
            Object::Namespace(o) => serde_json::to_value(o),
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

impl Loaded {
    /// Whether `other` holds the same object (origins aside): the same allocation, or equal.
    pub fn same_object(&self, other: &Loaded) -> bool {
        Arc::ptr_eq(&self.object, &other.object) || self.object == other.object
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

/// An object together with its origin. Cheap to clone: the object is shared, so a document
/// that did not change between two reads of its file is the same allocation in both, and
/// moving it to another line only makes a new origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The object, validated and converted to the stored version.
    pub object: Arc<Object>,
    /// Where it came from.
    pub origin: Origin,
}
