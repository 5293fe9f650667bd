//! The Services every system under test is programmed with, and the synthetic workload of N
//! Services x K backends.
//!
//! One description feeds every generator (kube-proxy's iptables rules, `ipvsadm -R`, the raw BPF
//! floor, rackd's hook), so all of them get the same Services.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which frontends a Service has (kube-proxy writes different chains for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// `type: ClusterIP`: one frontend, the cluster IP.
    ClusterIp,
    /// `type: LoadBalancer` with `allocateLoadBalancerNodePorts: false`: the cluster IP plus one
    /// LoadBalancer IP (what rackd forwards). kube-proxy adds a KUBE-EXT chain per Service.
    LoadBalancer,
}

/// `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// External traffic is masqueraded (kube-proxy marks it for MASQUERADE).
    Cluster,
    /// External traffic keeps its source and goes to local endpoints only (KUBE-SVL chain).
    Local,
}

/// L4 protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Lower-case name as iptables and kube-proxy spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One Service port with its endpoints, as a proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// `namespace/name:portname` (kube-proxy's `ServicePortName.String()`).
    pub port_name: String,
    /// The cluster IP.
    pub cluster_ip: Ipv4Addr,
    /// LoadBalancer ingress IPs (empty for ClusterIP Services).
    pub lb_ips: Vec<Ipv4Addr>,
    /// The Service port.
    pub port: u16,
    /// Its protocol.
    pub proto: Proto,
    /// `externalTrafficPolicy`.
    pub policy: Policy,
    /// Ready endpoints, all on this node (pods behind the node under test).
    pub endpoints: Vec<SocketAddrV4>,
}

/// N Services x K backends with deterministic addresses.
///
/// - cluster IPs from 10.96.0.1 (service CIDR 10.96.0.0/12), LoadBalancer IPs from 100.64.0.1;
/// - endpoints `10.128.0.0/9` (the cluster CIDR): backend j of Service i is
///   `10.128.0.1 + i*K + j`, port 8080; a replaced backend comes from 10.192.0.0/10;
/// - names `bench/svc-<i>:http`, port 80/TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Number of Services (N).
    pub services: u32,
    /// Backends per Service (K).
    pub backends: u32,
    /// Frontends per Service.
    pub shape: Shape,
    /// `externalTrafficPolicy` of every Service.
    pub policy: Policy,
}

/// The cluster CIDR (kube-proxy's local-traffic detector, `--cluster-cidr`).
pub const CLUSTER_CIDR: &str = "10.128.0.0/9";
/// Service port of every synthetic Service.
pub const SERVICE_PORT: u16 = 80;
/// Target port of every synthetic endpoint.
pub const TARGET_PORT: u16 = 8080;

impl Workload {
    /// Checks that the addresses fit their ranges.
    pub fn new(services: u32, backends: u32, shape: Shape, policy: Policy) -> Result<Self> {
        if services == 0 || backends == 0 {
            return Err(Error::Config(
                "need at least one Service and one backend".into(),
            ));
        }
        // 10.96.0.0/12 holds 2^20 cluster IPs; 10.128.0.0/10 holds 2^22 endpoints.
        if services >= (1 << 20) {
            return Err(Error::Config(format!(
                "{services} Services exceed 10.96.0.0/12"
            )));
        }
        if u64::from(services) * u64::from(backends) >= (1 << 22) {
            return Err(Error::Config(format!(
                "{services} x {backends} endpoints exceed 10.128.0.0/10"
            )));
        }
        Ok(Self {
            services,
            backends,
            shape,
            policy,
        })
    }

    /// Total endpoints (N x K).
    pub fn endpoints(&self) -> u64 {
        u64::from(self.services) * u64::from(self.backends)
    }

    /// Service `i` in its initial state.
    pub fn service(&self, i: u32) -> ServiceSpec {
        self.service_gen(i, false)
    }

    /// Service `i` after its first backend was replaced by a new pod (the "one Service's
    /// backends changed" case).
    pub fn service_changed(&self, i: u32) -> ServiceSpec {
        self.service_gen(i, true)
    }

    fn service_gen(&self, i: u32, changed: bool) -> ServiceSpec {
        let cluster_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i);
        let lb_ips = match self.shape {
            Shape::ClusterIp => Vec::new(),
            Shape::LoadBalancer => {
                vec![Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i)]
            }
        };
        let base = u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i * self.backends;
        let mut endpoints: Vec<SocketAddrV4> = (0..self.backends)
            .map(|j| SocketAddrV4::new(Ipv4Addr::from(base + j), TARGET_PORT))
            .collect();
        if changed && let Some(first) = endpoints.first_mut() {
            *first = SocketAddrV4::new(
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 192, 0, 1)) + i),
                TARGET_PORT,
            );
        }
        ServiceSpec {
            port_name: format!("bench/svc-{i:05}:http"),
            cluster_ip,
            lb_ips,
            port: SERVICE_PORT,
            proto: Proto::Tcp,
            policy: self.policy,
            endpoints,
        }
    }

    /// Every Service in its initial state.
    pub fn all(&self) -> impl Iterator<Item = ServiceSpec> + '_ {
        (0..self.services).map(|i| self.service(i))
    }

    /// Every Service, with Service `changed` in its changed state.
    pub fn all_with_change(&self, changed: u32) -> impl Iterator<Item = ServiceSpec> + '_ {
        (0..self.services).map(move |i| {
            if i == changed {
                self.service_changed(i)
            } else {
                self.service(i)
            }
        })
    }

    /// The Service changed in the one-change case: the middle one, so neither end of kube-proxy's
    /// KUBE-SERVICES list is favoured.
    pub fn changed_index(&self) -> u32 {
        self.services / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let w = Workload::new(27_000, 10, Shape::LoadBalancer, Policy::Cluster).unwrap();
        let last = w.service(26_999);
        assert_eq!(last.cluster_ip, Ipv4Addr::new(10, 96, 105, 120));
        assert_eq!(last.endpoints.len(), 10);
        assert!(
            last.endpoints
                .iter()
                .all(|e| (u32::from(*e.ip()) >> 22)
                    == (u32::from(Ipv4Addr::new(10, 128, 0, 0)) >> 22))
        );
        let c = w.service_changed(5);
        assert_ne!(c.endpoints[0], w.service(5).endpoints[0]);
        assert_eq!(c.endpoints[1..], w.service(5).endpoints[1..]);
        assert!(Workload::new(2_000_000, 1, Shape::ClusterIp, Policy::Cluster).is_err());
        assert!(Workload::new(1_000_000, 10, Shape::ClusterIp, Policy::Cluster).is_err());
    }
}
