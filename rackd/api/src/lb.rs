//! The service datapath's shapes: `rackctl service list` (Cilium's `models.Service`, as
//! `cilium service list -o json` prints it) and `rackctl bpf lb|ct|nat list` (one entry per map
//! entry, the fields `cilium-dbg bpf ... list` prints).

use serde::{Deserialize, Serialize};

/// One frontend and its backends, Cilium's `models.Service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbService {
    pub spec: LbServiceSpec,
}

/// Cilium's `models.ServiceSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LbServiceSpec {
    /// The service id (Cilium's rev-NAT index).
    pub id: u32,
    pub frontend_address: FrontendAddress,
    #[serde(default)]
    pub backend_addresses: Vec<BackendAddress>,
    pub flags: ServiceSpecFlags,
}

/// Cilium's `models.FrontendAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendAddress {
    pub ip: String,
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// `external` (every frontend rackd serves is reached from outside the node).
    pub scope: String,
}

/// Cilium's `models.BackendAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendAddress {
    pub ip: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// `active` (ready) or `terminating` (serving and terminating, used only while no ready
    /// one exists).
    pub state: String,
    #[serde(rename = "nodeName", default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The backend's id in the datapath's backend map.
    #[serde(rename = "backendID", default)]
    pub backend_id: u32,
}

/// Cilium's `models.ServiceSpecFlags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpecFlags {
    /// `LoadBalancer` or `ExternalIPs`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `Cluster` or `Local` (Service `externalTrafficPolicy`).
    pub ext_traffic_policy: String,
    pub namespace: String,
    pub name: String,
    /// `ClientIP` affinity timeout in seconds; 0 when affinity is off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub session_affinity_timeout_sec: u32,
    /// `loadBalancerSourceRanges` in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// One row of `rackctl bpf lb list`: a frontend (slot 0) or one of its backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LbMapEntry {
    /// `addr:port/PROTO` of the frontend.
    pub service_address: String,
    /// 0 for the frontend row, then 1.. per backend.
    pub slot: u32,
    /// `addr:port` of the backend; `0.0.0.0:0` on the frontend row.
    pub backend_address: String,
    pub rev_nat_id: u32,
    /// On the frontend row: the service's type and flags (`LoadBalancer`, `Local`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// One connection-tracking entry (`rackctl bpf ct list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CtEntry {
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`.
    pub proto: String,
    /// `OUT` (client → frontend, the forward entry) or `IN` (the reply entry).
    pub direction: String,
    /// `addr:port`.
    pub source: String,
    pub destination: String,
    /// Seconds until the entry expires (0: expired, waiting for garbage collection).
    pub expires_in_sec: u64,
    pub rev_nat_id: u32,
    pub backend_id: u32,
    /// TCP state flags seen (`SYN`, `ESTABLISHED`, `CLOSING`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// One NAT entry (`rackctl bpf nat list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NatEntry {
    pub proto: String,
    /// `OUT` (translate the source) or `IN` (translate the destination back).
    pub direction: String,
    pub source: String,
    pub destination: String,
    /// `XLATE_SRC addr:port` or `XLATE_DST addr:port`.
    pub xlate: String,
    /// Seconds until the mapping expires with its flow (rackd keeps no creation time).
    pub expires_in_sec: u64,
}
