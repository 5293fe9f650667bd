//! The per-kind tables: what Cilium's CRD of each kind declares beyond the structure
//! kube-derive gives (cilium-compat.md §1.1-§1.9), and how v2alpha1 differs from v2.

use serde_json::{Value, json};

use super::patterns::{
    cidr_pattern, ip_address_pattern, large_community_pattern, standard_community_pattern,
};
use super::{CrdError, Patcher};

const ASN_MAX: u64 = 4_294_967_295;

fn asn(min: u64) -> Value {
    json!({"minimum": min, "maximum": ASN_MAX})
}

fn port() -> Value {
    json!({"minimum": 1, "maximum": 65535})
}

fn name_len() -> Value {
    json!({"minLength": 1, "maxLength": 255})
}

// CEL rules, with Cilium's semantics (cilium-compat.md §1.1-§1.4, §1.9).
const CEL_PEER_LINK_LOCAL: (&str, &str) = (
    "!has(self.peerInterface) || !has(self.peerAddress) || self.peerAddress.startsWith('fe80:') || self.peerAddress.startsWith('FE80:')",
    "peerAddress must be an IPv6 link-local address (fe80::/10) when peerInterface is set",
);
const CEL_PEER_ADDRESS_OR_DISCOVERY: (&str, &str) = (
    "has(self.peerAddress) || has(self.autoDiscovery)",
    "one of peerAddress or autoDiscovery must be set",
);
const CEL_LOCAL_ADDRESS_XOR_INTERFACE: (&str, &str) = (
    "!has(self.peerInterface) || !has(self.localAddress)",
    "localAddress must not be set when peerInterface is set",
);
const CEL_DISCOVERY: [(&str, &str); 2] = [
    (
        "self.mode != 'DefaultGateway' || has(self.defaultGateway)",
        "defaultGateway must be set when mode is DefaultGateway",
    ),
    (
        "self.mode != 'Unnumbered' || (has(self.unnumbered) != has(self.defaultGateway))",
        "exactly one of unnumbered or defaultGateway must be set when mode is Unnumbered",
    ),
];
const CEL_SERVICE_REQUIRED: (&str, &str) = (
    "self.advertisementType != 'Service' || has(self.service)",
    "service field is required for the 'Service' advertisementType",
);
const CEL_SELECTOR_NOT_FOR_POD_CIDR: (&str, &str) = (
    "self.advertisementType != 'PodCIDR' || !has(self.selector)",
    "selector field is not allowed for the 'PodCIDR' advertisementType",
);

// ===== per kind =====

/// cilium-compat.md §1.1.
pub(super) fn cluster_config_v2(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let i = "spec.bgpInstances";
    p.set(i, json!({"minItems": 1, "maxItems": 16}))?;
    p.list_map(i, "name")?;
    p.set(&format!("{i}[].name"), name_len())?;
    p.set(&format!("{i}[].localASN"), asn(1))?;
    p.set(&format!("{i}[].localPort"), port())?;
    let peers = format!("{i}[].peers");
    p.list_map(&peers, "name")?;
    peer_common(p, &peers)?;
    p.set(&format!("{peers}[].name"), name_len())?;
    p.cel(
        &format!("{peers}[]"),
        &[CEL_PEER_LINK_LOCAL, CEL_PEER_ADDRESS_OR_DISCOVERY],
    )?;
    // BMP collectors (Cilium's BMP docs): a list keyed by name.
    let bmp = format!("{i}[].bmpServers");
    p.list_map(&bmp, "name")?;
    p.set(&format!("{bmp}[].name"), name_len())?;
    p.set(
        &format!("{bmp}[].peerAddress"),
        json!({"pattern": ip_address_pattern()}),
    )?;
    p.set(&format!("{bmp}[].peerPort"), port())?;
    p.set(
        &format!("{bmp}[].statisticsTimeout"),
        json!({"minimum": 15, "maximum": 65535}),
    )
}

/// What ClusterConfig and NodeConfig peers share.
fn peer_common(p: &mut Patcher<'_>, peers: &str) -> Result<(), CrdError> {
    p.set(
        &format!("{peers}[].peerAddress"),
        json!({"pattern": ip_address_pattern()}),
    )?;
    p.set(&format!("{peers}[].peerASN"), asn(0))?;
    p.set(&format!("{peers}[].peerInterface"), name_len())?;
    let ad = format!("{peers}[].autoDiscovery");
    p.cel(&ad, &CEL_DISCOVERY)?;
    p.set(&format!("{ad}.unnumbered.interface"), name_len())
}

/// v2alpha1 peers: no auto-discovery, no peerInterface, `peerConfigRef` with group and kind.
fn alpha_peers(p: &mut Patcher<'_>, peers: &str) -> Result<(), CrdError> {
    let item = format!("{peers}[]");
    p.drop_property(&item, "autoDiscovery")?;
    p.drop_property(&item, "peerInterface")?;
    p.unset(&item, &["x-kubernetes-validations"])?;
    let r = format!("{item}.peerConfigRef");
    p.add_property(
        &r,
        "group",
        json!({"type": "string", "default": "cilium.io", "description": "Group of the peer config resource."}),
    )?;
    p.add_property(
        &r,
        "kind",
        json!({"type": "string", "default": "CiliumBGPPeerConfig", "description": "Kind of the peer config resource."}),
    )
}

pub(super) fn cluster_config_v2alpha1(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    p.drop_property("spec.bgpInstances[]", "bmpServers")?;
    alpha_peers(p, "spec.bgpInstances[].peers")
}

/// cilium-compat.md §1.2.
pub(super) fn peer_config_v2(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    p.set("spec.transport.peerPort", port())?;
    p.set(
        "spec.timers.connectRetryTimeSeconds",
        json!({"minimum": 1, "maximum": 2_147_483_647}),
    )?;
    p.set(
        "spec.timers.holdTimeSeconds",
        json!({"minimum": 3, "maximum": 65535}),
    )?;
    p.set(
        "spec.timers.keepAliveTimeSeconds",
        json!({"minimum": 1, "maximum": 65535}),
    )?;
    p.cel(
        "spec.timers",
        &[(
            "self.keepAliveTimeSeconds <= self.holdTimeSeconds",
            "keepAliveTimeSeconds can not be larger than holdTimeSeconds",
        )],
    )?;
    p.set(
        "spec.gracefulRestart.restartTimeSeconds",
        json!({"minimum": 1, "maximum": 4095}),
    )?;
    p.set("spec.ebgpMultihop", json!({"minimum": 1, "maximum": 255}))?;
    bfd(p)
}

/// `spec.bfd` (cilium#48251): ranges, and BFD only for single-hop peers.
fn bfd(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    for f in [
        "desiredMinTxIntervalMicroseconds",
        "requiredMinRxIntervalMicroseconds",
    ] {
        p.set(
            &format!("spec.bfd.{f}"),
            json!({"minimum": 1, "maximum": 4_294_967_295_u64}),
        )?;
    }
    p.set(
        "spec.bfd.detectMultiplier",
        json!({"minimum": 1, "maximum": 255}),
    )?;
    p.cel(
        "spec",
        &[(
            "!has(self.bfd) || !self.bfd.enabled || self.ebgpMultihop <= 1",
            "BFD is supported only for single-hop peers (ebgpMultihop 1)",
        )],
    )
}

pub(super) fn peer_config_v2alpha1(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    p.drop_property("spec.transport", "sourceInterface")?;
    p.add_property(
        "spec.transport",
        "localPort",
        json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535,
               "description": "Deprecated: local port of the session (removed in cilium.io/v2)."}),
    )
}

/// cilium-compat.md §1.3.
pub(super) fn advertisement_v2(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let a = "spec.advertisements[]";
    p.set(&format!("{a}.service.addresses"), json!({"minItems": 1}))?;
    for (field, max) in [
        ("aggregationLengthIPv4", 31),
        ("aggregationLengthIPv6", 127),
    ] {
        let path = format!("{a}.service.{field}");
        p.unset(&path, &["format"])?; // int16: not an OpenAPI format; Cilium has none.
        p.set(&path, json!({"minimum": 0, "maximum": max}))?;
    }
    let c = format!("{a}.attributes.communities");
    p.set(
        &format!("{c}.standard[]"),
        json!({"pattern": standard_community_pattern()}),
    )?;
    p.set(
        &format!("{c}.large[]"),
        json!({"pattern": large_community_pattern()}),
    )?;
    p.cel(
        a,
        &[
            CEL_SERVICE_REQUIRED,
            (
                "self.advertisementType == 'Service' || !has(self.service)",
                "service field is not allowed for non-'Service' advertisementType",
            ),
            (
                "self.advertisementType != 'Interface' || has(self.interface)",
                "interface field is required for the 'Interface' advertisementType",
            ),
            (
                "self.advertisementType == 'Interface' || !has(self.interface)",
                "interface field is not allowed for non-'Interface' advertisementType",
            ),
            CEL_SELECTOR_NOT_FOR_POD_CIDR,
        ],
    )
}

pub(super) fn advertisement_v2alpha1(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let a = "spec.advertisements[]";
    p.set(
        &format!("{a}.advertisementType"),
        json!({"enum": ["PodCIDR", "CiliumPodIPPool", "Service"]}),
    )?;
    p.drop_property(a, "interface")?;
    p.cel(a, &[CEL_SERVICE_REQUIRED, CEL_SELECTOR_NOT_FOR_POD_CIDR])
}

/// cilium-compat.md §1.4 (the v2 schema has no range on the ports).
pub(super) fn node_override_v2(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let i = "spec.bgpInstances";
    p.set(i, json!({"minItems": 1}))?;
    p.list_map(i, "name")?;
    p.set(&format!("{i}[].name"), name_len())?;
    p.set(&format!("{i}[].localASN"), asn(1))?;
    p.set(&format!("{i}[].routerID"), json!({"format": "ipv4"}))?;
    let peers = format!("{i}[].peers");
    p.list_map(&peers, "name")?;
    p.set(&format!("{peers}[].name"), name_len())?;
    p.set(
        &format!("{peers}[].localAddress"),
        json!({"pattern": ip_address_pattern()}),
    )?;
    p.set(&format!("{peers}[].peerInterface"), name_len())?;
    p.cel(&format!("{peers}[]"), &[CEL_LOCAL_ADDRESS_XOR_INTERFACE])
}

pub(super) fn node_override_v2alpha1(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let item = "spec.bgpInstances[].peers[]";
    p.drop_property(item, "peerInterface")?;
    p.unset(item, &["x-kubernetes-validations"])
}

/// cilium-compat.md §1.5: spec as the ClusterConfig's instances plus the override's
/// fields; status with per-instance, per-peer state.
pub(super) fn node_config_v2(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let i = "spec.bgpInstances";
    p.set(i, json!({"minItems": 1, "maxItems": 16}))?;
    p.list_map(i, "name")?;
    p.set(&format!("{i}[].name"), name_len())?;
    p.set(&format!("{i}[].localASN"), asn(1))?;
    p.set(&format!("{i}[].localPort"), port())?;
    p.set(&format!("{i}[].routerID"), json!({"format": "ipv4"}))?;
    let peers = format!("{i}[].peers");
    p.list_map(&peers, "name")?;
    peer_common(p, &peers)?;
    p.set(
        &format!("{peers}[].localAddress"),
        json!({"pattern": ip_address_pattern()}),
    )?;
    p.cel(
        &format!("{peers}[]"),
        &[
            CEL_PEER_LINK_LOCAL,
            CEL_LOCAL_ADDRESS_XOR_INTERFACE,
            CEL_PEER_ADDRESS_OR_DISCOVERY,
        ],
    )?;
    p.list_map("status.bgpInstances", "name")?;
    p.list_map("status.bgpInstances[].peers", "name")
}

pub(super) fn node_config_v2alpha1(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    alpha_peers(p, "spec.bgpInstances[].peers")
}

/// cilium-compat.md §1.7 (v2alpha1 is the same schema, deprecated).
pub(super) fn lb_pool(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    p.set("spec.blocks[].cidr", json!({"format": "cidr"}))
}

/// cilium-compat.md §1.8: the booleans have no OpenAPI default in Cilium's CRD (absent
/// reads as false; the API server does not fill it in).
pub(super) fn l2_policy(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    p.unset("spec.loadBalancerIPs", &["default"])?;
    p.unset("spec.externalIPs", &["default"])
}

/// cilium-compat.md §1.9.
pub(super) fn egress_policy(p: &mut Patcher<'_>) -> Result<(), CrdError> {
    let cidr = json!({"pattern": cidr_pattern()});
    p.set("spec.destinationCIDRs[]", cidr.clone())?;
    p.set("spec.excludedCIDRs[]", cidr)?;
    p.set("spec.egressGateways", json!({"maxItems": 64}))?;
    for g in ["spec.egressGateway", "spec.egressGateways[]"] {
        let ip = format!("{g}.egressIP");
        p.set(&ip, json!({"maxLength": 39}))?;
        p.cel(
            &ip,
            &[(
                "self == '' || isIP(self)",
                "egressIP must be an IPv4 or IPv6 address",
            )],
        )?;
    }
    Ok(())
}
