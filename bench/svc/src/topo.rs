//! The forwarding topologies, built fresh for every (round, mode) so conntrack, neighbour and
//! socket state never carry over from one measurement to the next. Every namespace is uniquely
//! named and removed on drop (also on failure and panic), with whatever runs inside.
//!
//! Service (modes direct, rackd, iptables, iptables-local, ipvs):
//! ```text
//! [client] c0 10.10.1.2 --- n0 10.10.1.1 [node] nb1 10.10.2.1 --- b0 10.10.2.2 [be1]
//!                                                nb2 10.10.3.1 --- b0 10.10.3.2 [be2]
//! ```
//! The client reaches the frontend 172.18.255.200:80 (a LoadBalancer IP, cluster IP
//! 10.96.0.10) by its default route through the node; the backends listen on :8080 and route
//! back through the node.
//!
//! Masquerade (modes masq-none, masq-iptables, masq-rackd):
//! ```text
//! [pod] c0 10.244.1.2 --- n0 10.244.1.1 [node] nx0 192.168.50.1 --- b0 192.168.50.2 [external]
//! ```
//! The external server has no route to the pod CIDR: replies only come back if the node
//! masquerades (mode masq-none adds that route instead: the ceiling without NAT).
//!
//! Egress gateway (modes egress-none, egress-rackd; issue 17's "SNAT throughput at the
//! gateway"):
//! ```text
//! [pod] c0 10.244.1.2 --- n0 10.244.1.1 [source node] nu0 192.168.60.1
//!   --- nu0 192.168.60.2 [gateway node] nx0 192.168.50.1 --- b0 192.168.50.2 [external]
//! ```
//! The source node routes the server's subnet via the gateway node. The external server has
//! no route to the pod CIDR, and the gateway none either: replies only come back through the
//! egress gateway (SNAT to 192.168.50.1 at the gateway, the tunnel back to the source node).
//! Mode egress-none adds the routes back instead (server and gateway to the pod CIDR): the
//! ceiling of this topology, plain routing over two nodes without NAT or tunnel.

use std::net::Ipv4Addr;

use netlab::{Netns, veth};

use crate::error::Result;

/// The frontend the client connects to in service modes.
pub const VIP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 200);
/// The Service's cluster IP (in kube-proxy's rules; not used by the client).
pub const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Service port on the frontend.
pub const VIP_PORT: u16 = 80;
/// The pod CIDR of the masquerade topology.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The `flows` test's sources in the service topology (outside the client's own /24, whose
/// gateway must stay the node's).
pub const SERVICE_FLOW_SOURCES: Ipv4Addr = Ipv4Addr::new(10, 10, 9, 0);

/// Which topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client, node, two backends.
    Service,
    /// Pod, node, one external server.
    Masquerade,
    /// Pod, source node, gateway node, one external server.
    Egress,
}

/// A built topology.
#[derive(Debug)]
pub struct Lab {
    /// The load generator's namespace (the "pod" in masquerade runs).
    pub client: Netns,
    /// The node under test (the source node in egress runs).
    pub node: Netns,
    /// The gateway node (egress runs only).
    pub gateway: Option<Netns>,
    /// The backends (or the external server).
    pub backends: Vec<Netns>,
    /// Their addresses.
    pub backend_addrs: Vec<Ipv4Addr>,
    /// The node's client-facing device (`n0`).
    pub node_client_dev: &'static str,
    /// The node's address on it.
    pub node_client_addr: Ipv4Addr,
    /// The node's devices towards the backends (in egress runs: towards the gateway node).
    pub node_backend_devs: Vec<&'static str>,
    /// Which topology this is.
    pub kind: Kind,
    /// The /24 the `flows` test sends from: local in the client's namespace (any address in it
    /// is the client's) and routed to the client by the node. Service topology only (see
    /// `Mode::runs_flows`).
    pub flow_sources: Option<Ipv4Addr>,
}

/// Makes the /24 at `net` the client's: local there, routed to `client_addr` by the node.
fn route_flow_sources(
    client: &Netns,
    node: &Netns,
    net: Ipv4Addr,
    client_addr: &str,
) -> Result<()> {
    let prefix = format!("{net}/24");
    client.route_add(&["local", &prefix, "dev", "lo"])?;
    node.route_add(&[&prefix, "via", client_addr])?;
    Ok(())
}

const BACKEND_DEVS: [&str; 2] = ["nb1", "nb2"];

fn quiet(ns: &Netns) -> Result<()> {
    // Larger port range and TIME_WAIT reuse for the connect loop; the backlog for bursts.
    ns.write_sysctls(&[
        ("net.ipv4.ip_local_port_range", "1024 65535"),
        ("net.ipv4.tcp_tw_reuse", "1"),
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.tcp_max_syn_backlog", "4096"),
    ])?;
    Ok(())
}

impl Lab {
    /// Builds the service topology with `backends` (1 or 2) backend namespaces.
    pub fn service(backends: usize) -> Result<Self> {
        let client = Netns::new("sb-cli")?;
        let node = Netns::new("sb-node")?;
        veth(&client, "c0", &node, "n0")?;
        client.addr_add("c0", "10.10.1.2/24")?;
        client.route_add(&["default", "via", "10.10.1.1"])?;
        node.addr_add("n0", "10.10.1.1/24")?;
        node.write_sysctls(&[("net.ipv4.ip_forward", "1")])?;
        quiet(&client)?;
        route_flow_sources(&client, &node, SERVICE_FLOW_SOURCES, "10.10.1.2")?;
        let mut bes = Vec::new();
        let mut addrs = Vec::new();
        let mut devs = Vec::new();
        for (i, dev) in BACKEND_DEVS.iter().take(backends.clamp(1, 2)).enumerate() {
            let be = Netns::new("sb-be")?;
            let net = u8::try_from(i + 2).unwrap_or(2);
            veth(&node, dev, &be, "b0")?;
            node.addr_add(dev, &format!("10.10.{net}.1/24"))?;
            be.addr_add("b0", &format!("10.10.{net}.2/24"))?;
            be.route_add(&["default", "via", &format!("10.10.{net}.1")])?;
            quiet(&be)?;
            addrs.push(Ipv4Addr::new(10, 10, net, 2));
            devs.push(*dev);
            bes.push(be);
        }
        Ok(Self {
            client,
            node,
            backends: bes,
            backend_addrs: addrs,
            gateway: None,
            node_client_dev: "n0",
            node_client_addr: Ipv4Addr::new(10, 10, 1, 1),
            node_backend_devs: devs,
            kind: Kind::Service,
            flow_sources: Some(SERVICE_FLOW_SOURCES),
        })
    }

    /// Builds the masquerade topology; `route_back` gives the external server a route to the
    /// pod CIDR (the no-NAT ceiling).
    pub fn masquerade(route_back: bool) -> Result<Self> {
        let client = Netns::new("sb-pod")?;
        let node = Netns::new("sb-node")?;
        let ext = Netns::new("sb-ext")?;
        veth(&client, "c0", &node, "n0")?;
        client.addr_add("c0", "10.244.1.2/24")?;
        client.route_add(&["default", "via", "10.244.1.1"])?;
        node.addr_add("n0", "10.244.1.1/24")?;
        veth(&node, "nx0", &ext, "b0")?;
        node.addr_add("nx0", "192.168.50.1/24")?;
        ext.addr_add("b0", "192.168.50.2/24")?;
        if route_back {
            ext.route_add(&[POD_CIDR, "via", "192.168.50.1"])?;
        }
        node.write_sysctls(&[("net.ipv4.ip_forward", "1")])?;
        quiet(&client)?;
        quiet(&ext)?;
        Ok(Self {
            client,
            node,
            backends: vec![ext],
            backend_addrs: vec![Ipv4Addr::new(192, 168, 50, 2)],
            gateway: None,
            node_client_dev: "n0",
            node_client_addr: Ipv4Addr::new(10, 244, 1, 1),
            node_backend_devs: vec!["nx0"],
            kind: Kind::Masquerade,
            flow_sources: None,
        })
    }

    /// Builds the egress gateway topology; `route_back` gives the external server and the
    /// gateway node routes to the pod CIDR (the no-NAT, no-tunnel ceiling).
    pub fn egress(route_back: bool) -> Result<Self> {
        let client = Netns::new("sb-pod")?;
        let node = Netns::new("sb-src")?;
        let gw = Netns::new("sb-gw")?;
        let ext = Netns::new("sb-ext")?;
        veth(&client, "c0", &node, "n0")?;
        client.addr_add("c0", "10.244.1.2/24")?;
        client.route_add(&["default", "via", "10.244.1.1"])?;
        node.addr_add("n0", "10.244.1.1/24")?;
        veth(&node, EGRESS_UNDERLAY_DEV, &gw, EGRESS_UNDERLAY_DEV)?;
        node.addr_add(EGRESS_UNDERLAY_DEV, &format!("{EGRESS_SOURCE_NODE}/24"))?;
        gw.addr_add(EGRESS_UNDERLAY_DEV, &format!("{EGRESS_GATEWAY_NODE}/24"))?;
        node.route_add(&[EGRESS_SERVER_CIDR, "via", &EGRESS_GATEWAY_NODE.to_string()])?;
        veth(&gw, EGRESS_EXTERNAL_DEV, &ext, "b0")?;
        gw.addr_add(EGRESS_EXTERNAL_DEV, &format!("{EGRESS_IP}/24"))?;
        ext.addr_add("b0", "192.168.50.2/24")?;
        if route_back {
            gw.route_add(&[POD_CIDR, "via", &EGRESS_SOURCE_NODE.to_string()])?;
            ext.route_add(&[POD_CIDR, "via", &EGRESS_IP.to_string()])?;
        }
        for n in [&node, &gw] {
            n.write_sysctls(&[("net.ipv4.ip_forward", "1")])?;
        }
        quiet(&client)?;
        quiet(&ext)?;
        Ok(Self {
            client,
            node,
            gateway: Some(gw),
            backends: vec![ext],
            backend_addrs: vec![Ipv4Addr::new(192, 168, 50, 2)],
            node_client_dev: "n0",
            node_client_addr: Ipv4Addr::new(10, 244, 1, 1),
            node_backend_devs: vec![EGRESS_UNDERLAY_DEV],
            kind: Kind::Egress,
            flow_sources: None,
        })
    }
}

/// The egress topology's node-to-node device (on both nodes).
pub const EGRESS_UNDERLAY_DEV: &str = "nu0";
/// The gateway node's device towards the external server.
pub const EGRESS_EXTERNAL_DEV: &str = "nx0";
/// The source node's address (the tunnel's far end for replies).
pub const EGRESS_SOURCE_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 60, 1);
/// The gateway node's address (the tunnel's far end for the pod's traffic).
pub const EGRESS_GATEWAY_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 60, 2);
/// The gateway's external address: the egress IP the pod's traffic is SNATed to.
pub const EGRESS_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
/// The policy's destination CIDR (the external server's subnet).
pub const EGRESS_SERVER_CIDR: &str = "192.168.50.0/24";
/// The pod the policy selects.
pub const EGRESS_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
