//! CustomResourceDefinitions for the `cilium.io` kinds rackd reads and writes, generated
//! from the types in [`crate::cilium`] and completed to match Cilium's own CRDs field for
//! field (cilium-compat.md §1), so that a cluster that already runs Cilium's CRDs serves
//! rackd unchanged and a cluster without them gets equivalent ones.
//!
//! kube-derive gives the names, scope, printer columns, status subresource and the
//! structure of each schema (properties, types, `required`, enums, the OpenAPI defaults
//! that are serde defaults in the model). What derive attributes cannot say is applied
//! here, as a table per kind that reads like Cilium's CRD:
//! - ranges, lengths, patterns, formats and list types (`x-kubernetes-list-type: map`);
//! - the CEL rules (`x-kubernetes-validations`);
//! - Cilium's "slim" LabelSelector (operator enum, label-value pattern, atomic map) and
//!   `metav1.Condition`'s validations, found by shape wherever they occur;
//! - the deprecated `v2alpha1` versions Cilium still serves, derived from v2 with the
//!   differences of the v2 promotion (`peerConfigRef.group/kind`, `transport.localPort`,
//!   no `autoDiscovery`/`peerInterface`/`Interface` advertisements), `served: true`,
//!   `storage: false`, `deprecated: true`;
//! - no `nullable` (Cilium's CRDs have none: a `null` is pruned, not stored).
//!
//! A patch that names a field the types do not have is an error ([`CrdError`]), so a
//! change to the model cannot silently drop a validation.
//!
//! `CiliumBGPPeeringPolicy` (BGPv1) is not generated: the model does not read it, and
//! Cilium removed it in v1.19 (cilium-compat.md, API timeline).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, CustomResourceSubresources,
    CustomResourceValidation, JSONSchemaProps,
};
use kube_core::CustomResourceExt;
use serde_json::{Map, Value, json};

use crate::cilium::{
    CiliumBGPAdvertisement, CiliumBGPClusterConfig, CiliumBGPNodeConfig,
    CiliumBGPNodeConfigOverride, CiliumBGPPeerConfig, CiliumEgressGatewayPolicy,
    CiliumL2AnnouncementPolicy, CiliumLoadBalancerIPPool,
};

mod kinds;
mod patterns;

pub use patterns::{
    cidr_pattern, decimal_upto, ip_address_pattern, large_community_pattern,
    standard_community_pattern,
};

/// The storage version of every kind but the L2 announcement policy.
pub const V2: &str = "v2";
/// The deprecated version Cilium still serves (and the only one of the L2 policy).
pub const V2ALPHA1: &str = "v2alpha1";

/// Why a CRD could not be generated; each is a mismatch between the model and the
/// patch table in this module, caught by the model's and rackd-deploy's tests.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// kube-derive produced a CRD without the expected single version and schema.
    #[error("{crd}: kube-derive produced no schema")]
    NoSchema {
        /// CRD name (`<plural>.cilium.io`).
        crd: String,
    },
    /// A patch names a field the generated schema does not have.
    #[error("{crd} {version}: the schema has no {path:?}")]
    NoSuchField {
        /// CRD name.
        crd: String,
        /// API version being patched.
        version: &'static str,
        /// Dotted path, `[]` for array items.
        path: String,
    },
    /// The patched schema no longer fits `JSONSchemaProps`.
    #[error("{crd} {version}: patched schema is not a JSONSchemaProps")]
    Schema {
        /// CRD name.
        crd: String,
        /// API version being patched.
        version: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// Every CRD rackd ships, in a stable order (BGP, LB-IPAM, L2, egress).
pub fn crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    Ok(vec![
        build(
            CiliumBGPClusterConfig::crd(),
            &["metadata", "spec"],
            kinds::cluster_config_v2,
            Some(kinds::cluster_config_v2alpha1),
        )?,
        build(
            CiliumBGPPeerConfig::crd(),
            &["metadata", "spec"],
            kinds::peer_config_v2,
            Some(kinds::peer_config_v2alpha1),
        )?,
        build(
            CiliumBGPAdvertisement::crd(),
            &["metadata", "spec"],
            kinds::advertisement_v2,
            Some(kinds::advertisement_v2alpha1),
        )?,
        build(
            CiliumBGPNodeConfigOverride::crd(),
            &["metadata", "spec"],
            kinds::node_override_v2,
            Some(kinds::node_override_v2alpha1),
        )?,
        build(
            CiliumBGPNodeConfig::crd(),
            &["metadata", "spec"],
            kinds::node_config_v2,
            Some(kinds::node_config_v2alpha1),
        )?,
        build(
            CiliumLoadBalancerIPPool::crd(),
            &["metadata", "spec"],
            kinds::lb_pool,
            Some(|_| Ok(())),
        )?,
        build(
            CiliumL2AnnouncementPolicy::crd(),
            &["metadata"],
            kinds::l2_policy,
            None,
        )?,
        build(
            CiliumEgressGatewayPolicy::crd(),
            &["metadata"],
            kinds::egress_policy,
            None,
        )?,
    ])
}

type Patch = fn(&mut Patcher<'_>) -> Result<(), CrdError>;

/// Completes a derived CRD: patches its (single) version's schema, and appends a
/// deprecated `v2alpha1` derived from it when `alpha` is given.
fn build(
    mut crd: CustomResourceDefinition,
    root_required: &[&str],
    patch: Patch,
    alpha: Option<Patch>,
) -> Result<CustomResourceDefinition, CrdError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let kind = crd.spec.names.kind.clone();
    crd.spec.names.list_kind = Some(format!("{kind}List"));
    let Some(mut main) = crd.spec.versions.pop() else {
        return Err(CrdError::NoSchema { crd: name });
    };
    let mut schema = main
        .schema
        .take()
        .and_then(|s| s.open_api_v3_schema)
        .ok_or_else(|| CrdError::NoSchema { crd: name.clone() })
        .and_then(|s| {
            serde_json::to_value(s).map_err(|source| CrdError::Schema {
                crd: name.clone(),
                version: V2,
                source,
            })
        })?;
    let version: &'static str = if main.name == V2 { V2 } else { V2ALPHA1 };
    normalise(&mut schema, &kind, version, root_required);
    patch(&mut Patcher {
        crd: &name,
        version,
        root: &mut schema,
    })?;
    // No status: Cilium writes an explicit empty `subresources: {}`.
    main.subresources
        .get_or_insert_with(CustomResourceSubresources::default);
    let mut versions = Vec::new();
    if let Some(alpha) = alpha {
        let mut old = schema.clone();
        set_root_description(&mut old, &kind, V2ALPHA1);
        alpha(&mut Patcher {
            crd: &name,
            version: V2ALPHA1,
            root: &mut old,
        })?;
        versions.push(CustomResourceDefinitionVersion {
            name: V2ALPHA1.into(),
            served: true,
            storage: false,
            deprecated: Some(true),
            schema: Some(validation(&name, V2ALPHA1, old)?),
            ..main.clone()
        });
    }
    main.schema = Some(validation(&name, version, schema)?);
    versions.insert(0, main);
    crd.spec.versions = versions;
    Ok(crd)
}

fn validation(
    crd: &str,
    version: &'static str,
    schema: Value,
) -> Result<CustomResourceValidation, CrdError> {
    let props: JSONSchemaProps =
        serde_json::from_value(schema).map_err(|source| CrdError::Schema {
            crd: crd.to_owned(),
            version,
            source,
        })?;
    Ok(CustomResourceValidation {
        open_api_v3_schema: Some(props),
    })
}

// ===== shape-wide normalisation =====

/// What every Cilium CRD has: `apiVersion`/`kind`/`metadata` at the root, no `nullable`,
/// Cilium's slim LabelSelector and `metav1.Condition` with its validations.
fn normalise(schema: &mut Value, kind: &str, version: &str, root_required: &[&str]) {
    strip_nullable(schema);
    rewrite_shapes(schema);
    let Some(root) = schema.as_object_mut() else {
        return;
    };
    root.remove("title");
    root.insert("required".into(), json!(root_required));
    let props = root
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}),
        );
        props.insert(
            "kind".into(),
            json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}),
        );
        props.insert("metadata".into(), json!({"type": "object"}));
    }
    set_root_description(schema, kind, version);
}

fn set_root_description(schema: &mut Value, kind: &str, version: &str) {
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "description".into(),
            json!(format!(
                "{kind} (cilium.io/{version}), as rackd reads and writes it: Cilium's schema, generated from rackd's types."
            )),
        );
    }
}

/// Removes `nullable` and the `null` kube-derive adds to an optional enum's values.
fn strip_nullable(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("nullable").is_some_and(Value::is_boolean) {
                m.remove("nullable");
            }
            if let Some(Value::Array(values)) = m.get_mut("enum") {
                values.retain(|e| !e.is_null());
            }
            m.values_mut().for_each(strip_nullable);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

/// Replaces k8s-openapi's LabelSelector and Condition schemas (recognised by their
/// properties) with the validated forms Cilium's CRDs carry.
fn rewrite_shapes(v: &mut Value) {
    let Value::Object(m) = v else {
        if let Value::Array(a) = v {
            a.iter_mut().for_each(rewrite_shapes);
        }
        return;
    };
    if has_properties(m, &["matchExpressions", "matchLabels"]) {
        let description = m.get("description").cloned();
        *m = slim_label_selector();
        if let Some(d) = description {
            m.insert("description".into(), d);
        }
        return;
    }
    if m.get("type").and_then(Value::as_str) == Some("array")
        && m.get("items").and_then(Value::as_object).is_some_and(|i| {
            has_properties(
                i,
                &[
                    "lastTransitionTime",
                    "message",
                    "observedGeneration",
                    "reason",
                    "status",
                    "type",
                ],
            )
        })
    {
        let description = m.get("description").cloned();
        *m = conditions();
        if let Some(d) = description {
            m.insert("description".into(), d);
        }
        return;
    }
    m.values_mut().for_each(rewrite_shapes);
}

fn has_properties(m: &Map<String, Value>, names: &[&str]) -> bool {
    m.get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.len() == names.len() && names.iter().all(|n| p.contains_key(*n)))
}

/// Cilium's `slimv1.LabelSelector` schema.
fn slim_label_selector() -> Map<String, Value> {
    let v = json!({
        "type": "object",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "matchExpressions": {
                "description": "matchExpressions is a list of label selector requirements. The requirements are ANDed.",
                "type": "array",
                "x-kubernetes-list-type": "atomic",
                "items": {
                    "description": "A label selector requirement: a key, an operator and values.",
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"description": "The label key that the selector applies to.", "type": "string"},
                        "operator": {
                            "description": "The key's relationship to the values.",
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "description": "Non-empty for In and NotIn, empty for Exists and DoesNotExist.",
                            "type": "array",
                            "x-kubernetes-list-type": "atomic",
                            "items": {"type": "string"}
                        }
                    }
                }
            },
            "matchLabels": {
                "description": "matchLabels is a map of {key,value} pairs, each equivalent to an In requirement with that single value. The requirements are ANDed.",
                "type": "object",
                "additionalProperties": {
                    "description": "A label value.",
                    "type": "string",
                    "maxLength": 63,
                    "pattern": LABEL_VALUE
                }
            }
        }
    });
    object(v)
}

/// A label value: empty, or up to 63 alphanumerics, `-`, `_`, `.`, starting and ending
/// alphanumeric (length checked separately).
pub const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// `metav1.Condition.reason`.
pub const CONDITION_REASON: &str = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";
/// `metav1.Condition.type`: an optional DNS-subdomain prefix and a qualified name.
pub const CONDITION_TYPE: &str = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";

/// `[]metav1.Condition` as a map keyed by `type`, with the validations of its Go markers.
fn conditions() -> Map<String, Value> {
    object(json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "description": "Condition contains details for one aspect of the current state of this API Resource.",
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": {"description": "When the condition last changed status.", "type": "string", "format": "date-time"},
                "message": {"description": "Human-readable details; may be empty.", "type": "string", "maxLength": 32768},
                "observedGeneration": {"description": "The .metadata.generation the condition was set for.", "type": "integer", "format": "int64", "minimum": 0},
                "reason": {"description": "Programmatic CamelCase identifier of the last transition.", "type": "string", "minLength": 1, "maxLength": 1024, "pattern": CONDITION_REASON},
                "status": {"description": "True, False or Unknown.", "type": "string", "enum": ["True", "False", "Unknown"]},
                "type": {"description": "Condition type, CamelCase or foo.example.com/CamelCase.", "type": "string", "maxLength": 316, "pattern": CONDITION_TYPE}
            }
        }
    }))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

// ===== patching =====

/// Edits one version's schema by dotted path (`spec.bgpInstances[].peers[].name`, where
/// `[]` steps into array items).
struct Patcher<'a> {
    crd: &'a str,
    version: &'static str,
    root: &'a mut Value,
}

impl Patcher<'_> {
    fn at(&mut self, path: &str) -> Result<&mut Map<String, Value>, CrdError> {
        let err = || CrdError::NoSuchField {
            crd: self.crd.to_owned(),
            version: self.version,
            path: path.to_owned(),
        };
        let mut node: &mut Value = self.root;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            let (name, items) = match seg.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (seg, false),
            };
            node = node
                .get_mut("properties")
                .and_then(|p| p.get_mut(name))
                .ok_or_else(err)?;
            if items {
                node = node.get_mut("items").ok_or_else(err)?;
            }
        }
        node.as_object_mut().ok_or_else(err)
    }

    /// Sets (or replaces) keywords of the schema at `path`.
    fn set(&mut self, path: &str, keywords: Value) -> Result<(), CrdError> {
        let node = self.at(path)?;
        for (k, v) in object(keywords) {
            node.insert(k, v);
        }
        Ok(())
    }

    /// Removes keywords of the schema at `path`; each must be there.
    fn unset(&mut self, path: &str, keywords: &[&str]) -> Result<(), CrdError> {
        let crd = self.crd.to_owned();
        let version = self.version;
        let node = self.at(path)?;
        for k in keywords {
            if node.remove(*k).is_none() {
                return Err(CrdError::NoSuchField {
                    crd,
                    version,
                    path: format!("{path} ({k})"),
                });
            }
        }
        Ok(())
    }

    /// Adds the property `name` to the object schema at `path`.
    fn add_property(&mut self, path: &str, name: &str, schema: Value) -> Result<(), CrdError> {
        let node = self.at(path)?;
        if let Some(p) = node
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            p.insert(name.into(), schema);
        }
        Ok(())
    }

    /// Removes the property `name` (and its `required` entry) from the object at `path`.
    fn drop_property(&mut self, path: &str, name: &str) -> Result<(), CrdError> {
        let full = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        self.at(&full)?;
        let node = self.at(path)?;
        if let Some(p) = node.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove(name);
        }
        if let Some(r) = node.get_mut("required").and_then(Value::as_array_mut) {
            r.retain(|v| v.as_str() != Some(name));
        }
        Ok(())
    }

    /// `x-kubernetes-list-type: map` keyed by `key` on the array at `path`.
    fn list_map(&mut self, path: &str, key: &str) -> Result<(), CrdError> {
        self.set(
            path,
            json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}),
        )
    }

    /// Replaces the CEL rules of the schema at `path`.
    fn cel(&mut self, path: &str, rules: &[(&str, &str)]) -> Result<(), CrdError> {
        let rules: Vec<Value> = rules
            .iter()
            .map(|(rule, message)| json!({"rule": rule, "message": message}))
            .collect();
        self.set(path, json!({"x-kubernetes-validations": rules}))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_generates() {
        let crds = crds().unwrap();
        assert_eq!(crds.len(), 8);
        for crd in &crds {
            assert!(crd.spec.versions.iter().filter(|v| v.storage).count() == 1);
        }
    }
}
