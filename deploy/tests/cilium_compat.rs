//! The shipped CRDs (`deploy/crds/*.yaml`, as committed) against Cilium's definitions as
//! `cilium-compat.md` §1 documents them, field for field: names, short names, categories,
//! scope, versions served/stored/deprecated, subresources, printer columns, required
//! fields, enums, defaults, ranges, lengths, patterns, formats, list types and CEL rules.
//! Every expected value is written out here, with the section it comes from.
//!
//! Long (~960 lines): one expected-value table per CRD, each citing its section of
//! cilium-compat.md; splitting per kind would only spread the shared assertions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use regex::Regex;
use serde_json::{Value, json};

fn shipped() -> BTreeMap<String, CustomResourceDefinition> {
    let dir = rackd_deploy::repo_root().join("deploy/crds");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&text).unwrap();
        out.insert(crd.spec.names.kind.clone(), crd);
    }
    out
}

/// One CRD's identity and versions.
struct Expect {
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    /// (name, served, storage, deprecated)
    versions: &'static [(&'static str, bool, bool, bool)],
    status: bool,
    /// (name, type, jsonPath)
    columns: &'static [(&'static str, &'static str, &'static str)],
}

const AGE: (&str, &str, &str) = ("Age", "date", ".metadata.creationTimestamp");
const V2_AND_ALPHA: &[(&str, bool, bool, bool)] =
    &[("v2", true, true, false), ("v2alpha1", true, false, true)];

fn check_names(crds: &BTreeMap<String, CustomResourceDefinition>, e: &Expect) {
    let crd = &crds[e.kind];
    let n = &crd.spec.names;
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some(format!("{}.cilium.io", e.plural).as_str())
    );
    assert_eq!(crd.spec.group, "cilium.io", "{}", e.kind);
    assert_eq!(crd.spec.scope, "Cluster", "{}", e.kind);
    assert_eq!(n.plural, e.plural);
    assert_eq!(n.singular.as_deref(), Some(e.singular));
    assert_eq!(
        n.list_kind.as_deref(),
        Some(format!("{}List", e.kind).as_str())
    );
    assert_eq!(n.short_names.as_deref().unwrap_or_default(), e.short);
    assert_eq!(n.categories.as_deref().unwrap_or_default(), e.categories);
    assert!(crd.spec.conversion.is_none(), "{}: no webhook", e.kind);
    let got: Vec<_> = crd
        .spec
        .versions
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.served,
                v.storage,
                v.deprecated.unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(got, e.versions, "{} versions", e.kind);
    for v in &crd.spec.versions {
        let status = v.subresources.as_ref().and_then(|s| s.status.as_ref());
        assert_eq!(status.is_some(), e.status, "{} {} status", e.kind, v.name);
        assert!(v.subresources.as_ref().unwrap().scale.is_none());
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(cols, e.columns, "{} {} columns", e.kind, v.name);
    }
}

fn schema(crd: &CustomResourceDefinition, version: &str) -> Value {
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .unwrap();
    serde_json::to_value(
        v.schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// The schema at a dotted path (`[]` = array items).
fn at<'a>(s: &'a Value, path: &str) -> &'a Value {
    let mut node = s;
    for seg in path.split('.').filter(|p| !p.is_empty()) {
        let (name, items) = seg.strip_suffix("[]").map_or((seg, false), |n| (n, true));
        node = node
            .get("properties")
            .and_then(|p| p.get(name))
            .unwrap_or_else(|| panic!("no {path} (at {seg})"));
        if items {
            node = &node["items"];
        }
    }
    node
}

fn has(s: &Value, path: &str) -> bool {
    let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
    at(s, parent)
        .get("properties")
        .is_some_and(|p| p.get(name).is_some())
}

#[track_caller]
fn required(s: &Value, path: &str, want: &[&str]) {
    let got: Vec<&str> = at(s, path)["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut got = got;
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "required of {path:?}");
}

#[track_caller]
fn kw(s: &Value, path: &str, want: Value) {
    let node = at(s, path);
    for (k, v) in want.as_object().unwrap() {
        let got = node.get(k).cloned().unwrap_or(Value::Null);
        // minimum/maximum are numbers: compare as f64.
        let same = match (got.as_f64(), v.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => &got == v,
        };
        assert!(same, "{path}.{k}: got {got}, want {v}");
    }
}

#[track_caller]
fn no_kw(s: &Value, path: &str, keys: &[&str]) {
    let node = at(s, path);
    for k in keys {
        assert!(node.get(*k).is_none(), "{path} has {k}: {}", node[*k]);
    }
}

#[track_caller]
fn list_map(s: &Value, path: &str, key: &str) {
    kw(
        s,
        path,
        json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}),
    );
}

#[track_caller]
fn cel(s: &Value, path: &str, rules: &[&str]) {
    let got: Vec<&str> = at(s, path)["x-kubernetes-validations"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["rule"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(got, rules, "CEL rules of {path}");
}

#[track_caller]
fn pattern(s: &Value, path: &str, accept: &[&str], refuse: &[&str]) {
    let re = Regex::new(at(s, path)["pattern"].as_str().unwrap()).unwrap();
    for a in accept {
        assert!(re.is_match(a), "{path} should accept {a:?}");
    }
    for r in refuse {
        assert!(!re.is_match(r), "{path} should refuse {r:?}");
    }
}

/// Cilium's slim LabelSelector (every `*Selector` field of every kind).
#[track_caller]
fn slim_selector(s: &Value, path: &str) {
    kw(
        s,
        path,
        json!({"type": "object", "x-kubernetes-map-type": "atomic"}),
    );
    kw(
        s,
        &format!("{path}.matchExpressions"),
        json!({"x-kubernetes-list-type": "atomic"}),
    );
    required(
        s,
        &format!("{path}.matchExpressions[]"),
        &["key", "operator"],
    );
    kw(
        s,
        &format!("{path}.matchExpressions[].operator"),
        json!({"enum": ["In", "NotIn", "Exists", "DoesNotExist"]}),
    );
    let value = &at(s, &format!("{path}.matchLabels"))["additionalProperties"];
    assert_eq!(value["maxLength"], 63, "{path}");
    let re = Regex::new(value["pattern"].as_str().unwrap()).unwrap();
    for ok in ["", "a", "enabled", "a.b-c_d", "A1"] {
        assert!(re.is_match(ok), "{path}: label value {ok:?}");
    }
    for bad in ["-a", "a-", "a b", "a/b"] {
        assert!(!re.is_match(bad), "{path}: label value {bad:?}");
    }
}

/// `[]metav1.Condition` keyed by type, with its validations.
#[track_caller]
fn conditions(s: &Value, path: &str) {
    list_map(s, path, "type");
    let item = format!("{path}[]");
    required(
        s,
        &item,
        &["lastTransitionTime", "message", "reason", "status", "type"],
    );
    kw(
        s,
        &format!("{item}.status"),
        json!({"enum": ["True", "False", "Unknown"]}),
    );
    kw(
        s,
        &format!("{item}.lastTransitionTime"),
        json!({"format": "date-time"}),
    );
    kw(
        s,
        &format!("{item}.reason"),
        json!({"minLength": 1, "maxLength": 1024}),
    );
    kw(s, &format!("{item}.type"), json!({"maxLength": 316}));
    kw(s, &format!("{item}.message"), json!({"maxLength": 32768}));
    pattern(
        s,
        &format!("{item}.type"),
        &[
            "cilium.io/PoolConflict",
            "io.cilium/bad-node-selector",
            "Ready",
        ],
        &["", "cilium.io/", "Bad Type"],
    );
}

const IPS_OK: &[&str] = &[
    "10.0.0.1",
    "fd00:10::1",
    "fe80::1%eth0",
    "2001:db8::1",
    "::",
];
const IPS_BAD: &[&str] = &[
    "10.0.0.256",
    "10.0.0.1/32",
    "10.0.0.1%eth0",
    "fd00::1::2",
    "tor",
];

fn root(s: &Value, req: &[&str]) {
    required(s, "", req);
    kw(s, "metadata", json!({"type": "object"}));
    kw(s, "apiVersion", json!({"type": "string"}));
    kw(s, "kind", json!({"type": "string"}));
}

/// Nothing Cilium's CRDs do not have.
fn no_nullable(v: &Value, path: &str) {
    match v {
        Value::Object(m) => {
            assert!(!m.contains_key("nullable"), "nullable at {path}");
            if let Some(e) = m.get("enum").and_then(Value::as_array) {
                assert!(!e.contains(&Value::Null), "null in enum at {path}");
            }
            for (k, x) in m {
                no_nullable(x, &format!("{path}/{k}"));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| no_nullable(x, path)),
        _ => {}
    }
}

#[test]
fn every_cilium_kind_rackd_uses_is_shipped() {
    let crds = shipped();
    let kinds: Vec<&str> = crds.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "CiliumBGPAdvertisement",
            "CiliumBGPClusterConfig",
            "CiliumBGPNodeConfig",
            "CiliumBGPNodeConfigOverride",
            "CiliumBGPPeerConfig",
            "CiliumEgressGatewayPolicy",
            "CiliumL2AnnouncementPolicy",
            "CiliumLoadBalancerIPPool",
        ]
    );
    for crd in crds.values() {
        for v in &crd.spec.versions {
            no_nullable(&schema(crd, &v.name), &crd.spec.names.kind);
        }
    }
}

/// §1.0: BGP v2 CRDs are cluster-scoped, category `cilium,ciliumbgp`, only an Age column.
/// §1.1: CiliumBGPClusterConfig.
#[test]
fn bgp_cluster_config() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumBGPClusterConfig",
            plural: "ciliumbgpclusterconfigs",
            singular: "ciliumbgpclusterconfig",
            short: &["cbgpcluster"],
            categories: &["cilium", "ciliumbgp"],
            versions: V2_AND_ALPHA,
            status: true,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumBGPClusterConfig"], "v2");
    root(&s, &["metadata", "spec"]);
    required(&s, "spec", &["bgpInstances"]);
    slim_selector(&s, "spec.nodeSelector");
    let i = "spec.bgpInstances";
    kw(&s, i, json!({"minItems": 1, "maxItems": 16}));
    list_map(&s, i, "name");
    required(&s, &format!("{i}[]"), &["name"]);
    kw(
        &s,
        &format!("{i}[].name"),
        json!({"minLength": 1, "maxLength": 255}),
    );
    kw(
        &s,
        &format!("{i}[].localASN"),
        json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 4294967295u64}),
    );
    kw(
        &s,
        &format!("{i}[].localPort"),
        json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535}),
    );
    no_kw(&s, &format!("{i}[].localPort"), &["default"]); // unset = not listening
    let p = format!("{i}[].peers");
    list_map(&s, &p, "name");
    required(&s, &format!("{p}[]"), &["name"]);
    kw(
        &s,
        &format!("{p}[].name"),
        json!({"minLength": 1, "maxLength": 255}),
    );
    pattern(&s, &format!("{p}[].peerAddress"), IPS_OK, IPS_BAD);
    kw(
        &s,
        &format!("{p}[].peerASN"),
        json!({"format": "int64", "minimum": 0, "maximum": 4294967295u64, "default": 0}),
    );
    let ad = format!("{p}[].autoDiscovery");
    required(&s, &ad, &["mode"]);
    kw(
        &s,
        &format!("{ad}.mode"),
        json!({"enum": ["DefaultGateway", "Unnumbered"]}),
    );
    required(&s, &format!("{ad}.defaultGateway"), &["addressFamily"]);
    kw(
        &s,
        &format!("{ad}.defaultGateway.addressFamily"),
        json!({"enum": ["ipv4", "ipv6"]}),
    );
    cel(
        &s,
        &ad,
        &[
            "self.mode != 'DefaultGateway' || has(self.defaultGateway)",
            "self.mode != 'Unnumbered' || (has(self.unnumbered) != has(self.defaultGateway))",
        ],
    );
    required(&s, &format!("{p}[].peerConfigRef"), &["name"]);
    assert!(
        !has(&s, &format!("{p}[].peerConfigRef.group")),
        "v2 has only name"
    );
    assert!(
        !has(&s, &format!("{p}[].peerConfigRef.kind")),
        "v2 has only name"
    );
    cel(
        &s,
        &format!("{p}[]"),
        &[
            "!has(self.peerInterface) || !has(self.peerAddress) || self.peerAddress.startsWith('fe80:') || self.peerAddress.startsWith('FE80:')",
            "has(self.peerAddress) || has(self.autoDiscovery)",
        ],
    );
    conditions(&s, "status.conditions");

    // v2alpha1 (§0 API timeline: the promotion dropped group/kind from PeerConfigReference).
    let a = schema(&crds["CiliumBGPClusterConfig"], "v2alpha1");
    root(&a, &["metadata", "spec"]);
    kw(
        &a,
        &format!("{p}[].peerConfigRef.group"),
        json!({"type": "string", "default": "cilium.io"}),
    );
    kw(
        &a,
        &format!("{p}[].peerConfigRef.kind"),
        json!({"type": "string", "default": "CiliumBGPPeerConfig"}),
    );
    assert!(!has(&a, &format!("{p}[].autoDiscovery")));
    kw(&a, i, json!({"minItems": 1, "maxItems": 16}));
}

/// §1.2: CiliumBGPPeerConfig.
#[test]
fn bgp_peer_config() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumBGPPeerConfig",
            plural: "ciliumbgppeerconfigs",
            singular: "ciliumbgppeerconfig",
            short: &["cbgppeer"],
            categories: &["cilium", "ciliumbgp"],
            versions: V2_AND_ALPHA,
            status: true,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumBGPPeerConfig"], "v2");
    root(&s, &["metadata", "spec"]);
    required(&s, "spec", &[]);
    kw(
        &s,
        "spec.transport.peerPort",
        json!({"format": "int32", "minimum": 1, "maximum": 65535, "default": 179}),
    );
    kw(
        &s,
        "spec.transport.sourceInterface",
        json!({"type": "string"}),
    );
    assert!(!has(&s, "spec.transport.localPort"), "dropped in v2");
    kw(
        &s,
        "spec.timers.connectRetryTimeSeconds",
        json!({"minimum": 1, "maximum": 2147483647, "default": 120}),
    );
    kw(
        &s,
        "spec.timers.holdTimeSeconds",
        json!({"minimum": 3, "maximum": 65535, "default": 90}),
    );
    kw(
        &s,
        "spec.timers.keepAliveTimeSeconds",
        json!({"minimum": 1, "maximum": 65535, "default": 30}),
    );
    cel(
        &s,
        "spec.timers",
        &["self.keepAliveTimeSeconds <= self.holdTimeSeconds"],
    );
    kw(&s, "spec.authSecretRef", json!({"type": "string"}));
    required(&s, "spec.gracefulRestart", &["enabled"]);
    kw(
        &s,
        "spec.gracefulRestart.enabled",
        json!({"type": "boolean"}),
    );
    no_kw(&s, "spec.gracefulRestart.enabled", &["default"]);
    kw(
        &s,
        "spec.gracefulRestart.restartTimeSeconds",
        json!({"minimum": 1, "maximum": 4095, "default": 120}),
    );
    kw(
        &s,
        "spec.ebgpMultihop",
        json!({"format": "int32", "minimum": 1, "maximum": 255, "default": 1}),
    );
    // The families default ([ipv6, ipv4] unicast) is applied in code, not by the schema.
    no_kw(&s, "spec.families", &["default"]);
    required(&s, "spec.families[]", &["afi", "safi"]);
    kw(
        &s,
        "spec.families[].afi",
        json!({"enum": ["ipv4", "ipv6", "l2vpn", "ls", "opaque"]}),
    );
    kw(
        &s,
        "spec.families[].safi",
        json!({"enum": ["unicast", "multicast", "mpls_label", "encapsulation", "vpls", "evpn", "ls",
                        "sr_policy", "mup", "mpls_vpn", "mpls_vpn_multicast", "route_target_constraints",
                        "flowspec_unicast", "flowspec_vpn", "key_value"]}),
    );
    slim_selector(&s, "spec.families[].advertisements");
    conditions(&s, "status.conditions");

    let a = schema(&crds["CiliumBGPPeerConfig"], "v2alpha1");
    kw(
        &a,
        "spec.transport.localPort",
        json!({"format": "int32", "minimum": 1, "maximum": 65535}),
    );
    assert!(!has(&a, "spec.transport.sourceInterface"));
    kw(&a, "spec.transport.peerPort", json!({"default": 179}));
}

/// §1.3: CiliumBGPAdvertisement (no status).
#[test]
fn bgp_advertisement() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumBGPAdvertisement",
            plural: "ciliumbgpadvertisements",
            singular: "ciliumbgpadvertisement",
            short: &["cbgpadvert"],
            categories: &["cilium", "ciliumbgp"],
            versions: V2_AND_ALPHA,
            status: false,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumBGPAdvertisement"], "v2");
    root(&s, &["metadata", "spec"]);
    assert!(!has(&s, "status"));
    required(&s, "spec", &["advertisements"]);
    let a = "spec.advertisements[]";
    required(&s, a, &["advertisementType"]);
    kw(
        &s,
        &format!("{a}.advertisementType"),
        // Cilium's four values, then rackd's one extension (egress addresses announced by
        // BGP, cilium#41916); v2 only, as below.
        json!({"enum": ["PodCIDR", "CiliumPodIPPool", "Service", "Interface", "EgressGateway"]}),
    );
    required(&s, &format!("{a}.service"), &["addresses"]);
    kw(
        &s,
        &format!("{a}.service.addresses"),
        json!({"minItems": 1}),
    );
    kw(
        &s,
        &format!("{a}.service.addresses[]"),
        json!({"enum": ["LoadBalancerIP", "ClusterIP", "ExternalIP"]}),
    );
    kw(
        &s,
        &format!("{a}.service.aggregationLengthIPv4"),
        json!({"type": "integer", "minimum": 0, "maximum": 31}),
    );
    kw(
        &s,
        &format!("{a}.service.aggregationLengthIPv6"),
        json!({"type": "integer", "minimum": 0, "maximum": 127}),
    );
    no_kw(
        &s,
        &format!("{a}.service.aggregationLengthIPv4"),
        &["format"],
    );
    required(&s, &format!("{a}.interface"), &["name"]);
    slim_selector(&s, &format!("{a}.selector"));
    let c = format!("{a}.attributes.communities");
    pattern(
        &s,
        &format!("{c}.standard[]"),
        &["65000:99", "0", "4294967295", "65535:65535", "0:0"],
        &["4294967296", "65536:1", "1:65536", "01", "1:2:3", "", "a:b"],
    );
    pattern(
        &s,
        &format!("{c}.large[]"),
        &["65000:1:100", "4294967295:0:4294967295"],
        &["1:2", "1:2:3:4", "4294967296:0:0", "1::3", "007:1:1"],
    );
    kw(
        &s,
        &format!("{c}.wellKnown[]"),
        json!({"enum": ["internet", "planned-shut", "accept-own", "route-filter-translated-v4",
                        "route-filter-v4", "route-filter-translated-v6", "route-filter-v6",
                        "llgr-stale", "no-llgr", "blackhole", "no-export", "no-advertise",
                        "no-export-subconfed", "no-peer"]}),
    );
    kw(
        &s,
        &format!("{a}.attributes.localPreference"),
        json!({"type": "integer", "format": "int64"}),
    );
    cel(
        &s,
        a,
        &[
            "self.advertisementType != 'Service' || has(self.service)",
            "self.advertisementType == 'Service' || !has(self.service)",
            "self.advertisementType != 'Interface' || has(self.interface)",
            "self.advertisementType == 'Interface' || !has(self.interface)",
            "self.advertisementType != 'PodCIDR' || !has(self.selector)",
        ],
    );

    let old = schema(&crds["CiliumBGPAdvertisement"], "v2alpha1");
    kw(
        &old,
        &format!("{a}.advertisementType"),
        json!({"enum": ["PodCIDR", "CiliumPodIPPool", "Service"]}),
    );
    assert!(!has(&old, &format!("{a}.interface")));
    cel(
        &old,
        a,
        &[
            "self.advertisementType != 'Service' || has(self.service)",
            "self.advertisementType != 'PodCIDR' || !has(self.selector)",
        ],
    );
}

/// §1.4: CiliumBGPNodeConfigOverride (no status).
#[test]
fn bgp_node_config_override() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumBGPNodeConfigOverride",
            plural: "ciliumbgpnodeconfigoverrides",
            singular: "ciliumbgpnodeconfigoverride",
            short: &["cbgpnodeoverride"],
            categories: &["cilium", "ciliumbgp"],
            versions: V2_AND_ALPHA,
            status: false,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumBGPNodeConfigOverride"], "v2");
    root(&s, &["metadata", "spec"]);
    required(&s, "spec", &["bgpInstances"]);
    let i = "spec.bgpInstances";
    kw(&s, i, json!({"minItems": 1}));
    no_kw(&s, i, &["maxItems"]);
    list_map(&s, i, "name");
    required(&s, &format!("{i}[]"), &["name"]);
    kw(
        &s,
        &format!("{i}[].name"),
        json!({"minLength": 1, "maxLength": 255}),
    );
    kw(&s, &format!("{i}[].routerID"), json!({"format": "ipv4"}));
    kw(&s, &format!("{i}[].localPort"), json!({"format": "int32"}));
    kw(
        &s,
        &format!("{i}[].localASN"),
        json!({"minimum": 1, "maximum": 4294967295u64}),
    );
    let p = format!("{i}[].peers");
    list_map(&s, &p, "name");
    kw(
        &s,
        &format!("{p}[].name"),
        json!({"minLength": 1, "maxLength": 255}),
    );
    pattern(&s, &format!("{p}[].localAddress"), IPS_OK, IPS_BAD);
    kw(&s, &format!("{p}[].localPort"), json!({"format": "int32"}));
    cel(
        &s,
        &format!("{p}[]"),
        &["!has(self.peerInterface) || !has(self.localAddress)"],
    );
    let a = schema(&crds["CiliumBGPNodeConfigOverride"], "v2alpha1");
    assert!(!has(&a, &format!("{p}[].peerInterface")));
    kw(&a, &format!("{i}[].routerID"), json!({"format": "ipv4"}));
}

/// §1.5: CiliumBGPNodeConfig, written by the operator (rackd) with status.
#[test]
fn bgp_node_config() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumBGPNodeConfig",
            plural: "ciliumbgpnodeconfigs",
            singular: "ciliumbgpnodeconfig",
            short: &["cbgpnode"],
            categories: &["cilium", "ciliumbgp"],
            versions: V2_AND_ALPHA,
            status: true,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumBGPNodeConfig"], "v2");
    root(&s, &["metadata", "spec"]);
    let i = "spec.bgpInstances";
    kw(&s, i, json!({"minItems": 1, "maxItems": 16}));
    list_map(&s, i, "name");
    kw(
        &s,
        &format!("{i}[].localASN"),
        json!({"minimum": 1, "maximum": 4294967295u64}),
    );
    kw(&s, &format!("{i}[].routerID"), json!({"format": "ipv4"}));
    kw(
        &s,
        &format!("{i}[].localPort"),
        json!({"minimum": 1, "maximum": 65535}),
    );
    let p = format!("{i}[].peers");
    list_map(&s, &p, "name");
    pattern(&s, &format!("{p}[].peerAddress"), IPS_OK, IPS_BAD);
    pattern(&s, &format!("{p}[].localAddress"), IPS_OK, IPS_BAD);
    kw(
        &s,
        &format!("{p}[].peerASN"),
        json!({"minimum": 0, "maximum": 4294967295u64}),
    );
    required(&s, &format!("{p}[].peerConfigRef"), &["name"]);
    let st = "status.bgpInstances";
    list_map(&s, st, "name");
    required(&s, &format!("{st}[]"), &["name"]);
    list_map(&s, &format!("{st}[].peers"), "name");
    required(&s, &format!("{st}[].peers[]"), &["name", "peerAddress"]);
    for f in ["peeringState", "establishedTime"] {
        kw(
            &s,
            &format!("{st}[].peers[].{f}"),
            json!({"type": "string"}),
        );
    }
    kw(
        &s,
        &format!("{st}[].peers[].timers.appliedHoldTimeSeconds"),
        json!({"type": "integer", "format": "int32"}),
    );
    kw(
        &s,
        &format!("{st}[].peers[].timers.appliedKeepaliveSeconds"),
        json!({"type": "integer", "format": "int32"}),
    );
    required(
        &s,
        &format!("{st}[].peers[].routeCount[]"),
        &["afi", "safi"],
    );
    kw(
        &s,
        &format!("{st}[].peers[].routeCount[].received"),
        json!({"format": "int32"}),
    );
    conditions(&s, "status.conditions");
    let a = schema(&crds["CiliumBGPNodeConfig"], "v2alpha1");
    kw(
        &a,
        &format!("{p}[].peerConfigRef.group"),
        json!({"default": "cilium.io"}),
    );
}

/// §1.7: CiliumLoadBalancerIPPool, v2 stored, v2alpha1 deprecated, four print columns.
#[test]
fn lb_ip_pool() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumLoadBalancerIPPool",
            plural: "ciliumloadbalancerippools",
            singular: "ciliumloadbalancerippool",
            short: &["ippools", "ippool", "lbippool", "lbippools"],
            categories: &["cilium"],
            versions: V2_AND_ALPHA,
            status: true,
            columns: &[
                ("Disabled", "boolean", ".spec.disabled"),
                (
                    "Conflicting",
                    "string",
                    ".status.conditions[?(@.type==\"cilium.io/PoolConflict\")].status",
                ),
                (
                    "IPs Available",
                    "string",
                    ".status.conditions[?(@.type==\"cilium.io/IPsAvailable\")].message",
                ),
                AGE,
            ],
        },
    );
    for v in ["v2", "v2alpha1"] {
        let s = schema(&crds["CiliumLoadBalancerIPPool"], v);
        root(&s, &["metadata", "spec"]);
        required(&s, "spec", &[]);
        slim_selector(&s, "spec.serviceSelector");
        kw(
            &s,
            "spec.allowFirstLastIPs",
            json!({"type": "string", "enum": ["Yes", "No"]}),
        );
        no_kw(&s, "spec.allowFirstLastIPs", &["default"]); // undefined = Yes, in code
        kw(&s, "spec.blocks[].cidr", json!({"format": "cidr"}));
        kw(&s, "spec.blocks[].start", json!({"type": "string"}));
        kw(&s, "spec.blocks[].stop", json!({"type": "string"}));
        required(&s, "spec.blocks[]", &[]);
        kw(
            &s,
            "spec.disabled",
            json!({"type": "boolean", "default": false}),
        );
        assert!(
            !has(&s, "spec.cidrs"),
            "pre-1.15 name, not in 1.20's schema"
        );
        conditions(&s, "status.conditions");
    }
}

/// §1.8: CiliumL2AnnouncementPolicy, v2alpha1 only.
#[test]
fn l2_announcement_policy() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumL2AnnouncementPolicy",
            plural: "ciliuml2announcementpolicies",
            singular: "ciliuml2announcementpolicy",
            short: &["l2announcement"],
            categories: &["cilium"],
            versions: &[("v2alpha1", true, true, false)],
            status: true,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumL2AnnouncementPolicy"], "v2alpha1");
    root(&s, &["metadata"]);
    required(&s, "spec", &[]);
    slim_selector(&s, "spec.nodeSelector");
    slim_selector(&s, "spec.serviceSelector");
    for b in ["spec.loadBalancerIPs", "spec.externalIPs"] {
        kw(&s, b, json!({"type": "boolean"}));
        no_kw(&s, b, &["default"]); // absent = false, not filled in
    }
    kw(
        &s,
        "spec.interfaces",
        json!({"type": "array", "items": {"type": "string"}}),
    );
    conditions(&s, "status.conditions");
}

/// §1.9: CiliumEgressGatewayPolicy (no status, category cilium,ciliumpolicy).
#[test]
fn egress_gateway_policy() {
    let crds = shipped();
    check_names(
        &crds,
        &Expect {
            kind: "CiliumEgressGatewayPolicy",
            plural: "ciliumegressgatewaypolicies",
            singular: "ciliumegressgatewaypolicy",
            short: &["cegp"],
            categories: &["cilium", "ciliumpolicy"],
            versions: &[("v2", true, true, false)],
            status: false,
            columns: &[AGE],
        },
    );
    let s = schema(&crds["CiliumEgressGatewayPolicy"], "v2");
    root(&s, &["metadata"]);
    required(
        &s,
        "spec",
        &["selectors", "destinationCIDRs", "egressGateway"],
    );
    for sel in ["namespaceSelector", "podSelector", "nodeSelector"] {
        slim_selector(&s, &format!("spec.selectors[].{sel}"));
    }
    for c in ["spec.destinationCIDRs[]", "spec.excludedCIDRs[]"] {
        pattern(
            &s,
            c,
            &["10.0.4.0/24", "0.0.0.0/0", "2001:db8::/64", "::/0"],
            &["10.0.4.0", "10.0.4.0/33", "2001:db8::/129", "cidr"],
        );
    }
    kw(&s, "spec.egressGateways", json!({"maxItems": 64}));
    for g in ["spec.egressGateway", "spec.egressGateways[]"] {
        required(&s, g, &["nodeSelector"]);
        slim_selector(&s, &format!("{g}.nodeSelector"));
        kw(&s, &format!("{g}.interface"), json!({"type": "string"}));
        kw(&s, &format!("{g}.egressIP"), json!({"maxLength": 39}));
        cel(&s, &format!("{g}.egressIP"), &["self == '' || isIP(self)"]);
    }
}

/// Every pattern compiles (Rust's regex accepts RE2 syntax for these) and every CEL rule
/// has a message.
#[test]
fn patterns_compile_and_rules_explain_themselves() {
    fn walk(v: &Value, path: &str) {
        if let Value::Object(m) = v {
            if let Some(p) = m.get("pattern").and_then(Value::as_str) {
                assert!(Regex::new(p).is_ok(), "{path}: {p}");
            }
            for r in m
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(
                    r["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{path}"
                );
            }
            for (k, x) in m {
                walk(x, &format!("{path}/{k}"));
            }
        } else if let Value::Array(a) = v {
            a.iter().for_each(|x| walk(x, path));
        }
    }
    for crd in shipped().values() {
        for v in &crd.spec.versions {
            walk(&schema(crd, &v.name), &crd.spec.names.kind);
        }
    }
}
