//! Objects as the Kubernetes API serves them, loaded into the same typed, validated form as a
//! file's documents.
//!
//! Two differences from files, both because the API server already checked the object
//! against its schema and a newer Cilium may add fields rackd does not know:
//! - unknown fields are ignored instead of refused (a file's unknown field is usually a typo;
//!   an API object's is a newer version's field);
//! - server-maintained metadata that rackd never reads (`managedFields`) is dropped before
//!   decoding, which keeps 27,000 cached Services small.
//!
//! rackd's own rules (the CEL rules and cross-field checks of [`crate::validate`]) still
//! apply: an object the API server accepted but rackd cannot use is a [`ConfigError`] for
//! that object alone, and the store keeps its last good version.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;

use crate::cilium::{
    CiliumBGPAdvertisement, CiliumBGPClusterConfig, CiliumBGPNodeConfigOverride,
    CiliumBGPPeerConfig, CiliumEgressGatewayPolicy, CiliumL2AnnouncementPolicy,
    CiliumLoadBalancerIPPool,
};
use crate::error::{ConfigError, Location, ObjectRef, Problem};
use crate::object::{Kind, Loaded, Object, Origin};
use crate::parse::normalise_namespace;
use crate::validate::validate_and_convert;

/// Loads one object of `kind` as served by the API (a watch event's object, as JSON).
///
/// `source` names where it came from in errors and origins (`k8s:Service`). The object's
/// `apiVersion` must be one rackd reads for `kind` (it is converted to the stored version,
/// as a file's would be).
pub fn load_api_object(
    source: &str,
    kind: Kind,
    mut value: serde_json::Value,
) -> Result<Loaded, Box<ConfigError>> {
    let str_at = |v: &serde_json::Value, ptr: &str| {
        v.pointer(ptr)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let name = str_at(&value, "/metadata/name");
    let namespace = str_at(&value, "/metadata/namespace");
    let objref = ObjectRef {
        kind: kind.as_str().to_owned(),
        namespace: kind
            .namespaced()
            .then(|| namespace.unwrap_or_else(|| "default".into())),
        name,
    };
    let location = Location {
        source: source.to_owned(),
        document: 0,
        line: None,
    };
    let fail = |problem: Problem| {
        Box::new(ConfigError {
            location: location.clone(),
            object: Some(objref.clone()),
            problem,
            kept_previous: false,
        })
    };
    let api_version = str_at(&value, "/apiVersion").unwrap_or_default();
    if !kind.api_versions().contains(&api_version.as_str()) {
        return Err(fail(Problem::UnknownApiVersion {
            kind: kind.as_str().to_owned(),
            api_version,
            expected: kind.api_versions().join(" or "),
        }));
    }
    if let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        meta.remove("managedFields");
    }
    let decoded = match kind {
        Kind::BgpClusterConfig => {
            decode::<CiliumBGPClusterConfig>(value).map(Object::BgpClusterConfig)
        }
        Kind::BgpPeerConfig => decode::<CiliumBGPPeerConfig>(value).map(Object::BgpPeerConfig),
        Kind::BgpAdvertisement => {
            decode::<CiliumBGPAdvertisement>(value).map(Object::BgpAdvertisement)
        }
        Kind::BgpNodeConfigOverride => {
            decode::<CiliumBGPNodeConfigOverride>(value).map(Object::BgpNodeConfigOverride)
        }
        Kind::LoadBalancerIPPool => {
            decode::<CiliumLoadBalancerIPPool>(value).map(Object::LoadBalancerIPPool)
        }
        Kind::L2AnnouncementPolicy => {
            decode::<CiliumL2AnnouncementPolicy>(value).map(Object::L2AnnouncementPolicy)
        }
        Kind::EgressGatewayPolicy => {
            decode::<CiliumEgressGatewayPolicy>(value).map(Object::EgressGatewayPolicy)
        }
        Kind::Service => decode::<Service>(value).map(Object::Service),
        Kind::Node => decode::<Node>(value).map(Object::Node),
        Kind::EndpointSlice => decode::<EndpointSlice>(value).map(Object::EndpointSlice),
        Kind::Secret => decode::<Secret>(value).map(Object::Secret),
        Kind::Pod => decode::<Pod>(value).map(Object::Pod),
        Kind::Namespace => decode::<Namespace>(value).map(Object::Namespace),
    };
    let mut object = decoded.map_err(|(path, message)| fail(Problem::Decode { path, message }))?;
    if object.metadata().name.as_deref().is_none_or(str::is_empty) {
        return Err(fail(Problem::NotAnObject {
            what: "metadata.name is missing".into(),
        }));
    }
    normalise_namespace(&mut object);
    let errs = validate_and_convert(&mut object, &api_version);
    if !errs.is_empty() {
        return Err(fail(Problem::Invalid(errs)));
    }
    Ok(Loaded {
        object: Arc::new(object),
        origin: Origin {
            location,
            api_version,
        },
    })
}

fn decode<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_as_served_loads_and_drops_managed_fields() {
        let v = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "deathstar", "namespace": "default", "resourceVersion": "42",
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                     "someFutureField": true},
            "status": {"loadBalancer": {}}
        });
        let l = load_api_object("k8s:Service", Kind::Service, v).unwrap();
        let Object::Service(s) = &*l.object else {
            panic!("not a service")
        };
        assert!(s.metadata.managed_fields.is_none());
        assert_eq!(s.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(l.object.key().to_string(), "Service default/deathstar");
    }

    #[test]
    fn an_invalid_pool_is_an_error_for_that_object() {
        let v = json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "p"},
            "spec": {"blocks": [{"cidr": "not-a-cidr"}]}
        });
        let e = load_api_object("k8s:CiliumLoadBalancerIPPool", Kind::LoadBalancerIPPool, v)
            .unwrap_err();
        assert!(matches!(e.problem, Problem::Invalid(_)), "{e}");
        assert_eq!(e.object.as_ref().and_then(|o| o.name.as_deref()), Some("p"));
    }

    #[test]
    fn wrong_types_and_versions_are_errors_not_panics() {
        let bad_type = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s"}, "spec": {"ports": "eighty"}});
        let e = load_api_object("k8s:Service", Kind::Service, bad_type).unwrap_err();
        assert!(
            matches!(&e.problem, Problem::Decode { path, .. } if path == "spec.ports"),
            "{e}"
        );
        let bad_version = json!({"apiVersion": "cilium.io/v1", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "p"}, "spec": {}});
        let e = load_api_object("k8s:pool", Kind::LoadBalancerIPPool, bad_version).unwrap_err();
        assert!(
            matches!(e.problem, Problem::UnknownApiVersion { .. }),
            "{e}"
        );
        let e = load_api_object("k8s:Node", Kind::Node, json!(17)).unwrap_err();
        assert!(
            matches!(e.problem, Problem::UnknownApiVersion { .. }),
            "{e}"
        );
        let no_name = json!({"apiVersion": "v1", "kind": "Node", "metadata": {}});
        let e = load_api_object("k8s:Node", Kind::Node, no_name).unwrap_err();
        assert!(matches!(e.problem, Problem::NotAnObject { .. }), "{e}");
    }

    #[test]
    fn a_namespace_as_served_is_cluster_scoped_and_keeps_its_labels() {
        let v = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "hoth", "resourceVersion": "7",
                         "labels": {"kubernetes.io/metadata.name": "hoth", "tier": "outpost"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active", "someFutureField": 1}
        });
        let l = load_api_object("k8s:Namespace", Kind::Namespace, v).unwrap();
        assert_eq!(l.object.key().to_string(), "Namespace hoth");
        let Object::Namespace(ns) = &*l.object else {
            panic!("not a namespace")
        };
        assert!(ns.metadata.managed_fields.is_none());
        assert_eq!(
            ns.metadata.labels.as_ref().and_then(|m| m.get("tier")),
            Some(&"outpost".to_owned())
        );
        let dotted = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "out.post"}});
        let e = load_api_object("k8s:Namespace", Kind::Namespace, dotted).unwrap_err();
        assert!(matches!(e.problem, Problem::Invalid(_)), "{e}");
        assert_eq!(e.object.as_ref().and_then(|o| o.namespace.as_deref()), None);
    }

    #[test]
    fn v2alpha1_is_converted_to_the_stored_version() {
        let v = json!({
            "apiVersion": "cilium.io/v2alpha1", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "p"},
            "spec": {"blocks": [{"cidr": "10.0.10.0/24"}]}
        });
        let l = load_api_object("k8s:pool", Kind::LoadBalancerIPPool, v).unwrap();
        assert_eq!(l.origin.api_version, "cilium.io/v2alpha1");
    }
}
