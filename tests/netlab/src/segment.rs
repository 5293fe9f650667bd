//! An L2 segment: a bridge in a namespace of its own that other namespaces plug into.
//!
//! The shape the ARP/NDP failover tests need (a client and several nodes on one broadcast
//! domain, `labs-and-testing.md` §6.2), without touching the host's bridges.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Result;
use crate::netns::{Netns, veth};

/// Name of the bridge inside the segment's namespace.
pub const BRIDGE: &str = "br0";

/// A bridge in its own [`Netns`]; dropping it deletes the namespace and with it every port (the
/// veth peers in attached namespaces vanish too).
#[derive(Debug)]
pub struct Segment {
    ns: Netns,
    ports: AtomicU32,
}

impl Segment {
    /// Creates the namespace and an up bridge `br0` in it, with multicast snooping off: the
    /// bridge then floods multicast like a plain switch, so every host sees neighbour
    /// solicitations (sent to solicited-node groups) and captures are predictable.
    pub fn new(prefix: &str) -> Result<Self> {
        let ns = Netns::new(prefix)?;
        ns.ip(&[
            "link",
            "add",
            "name",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ns.link_up(BRIDGE)?;
        Ok(Self {
            ns,
            ports: AtomicU32::new(0),
        })
    }

    /// The segment's own namespace (e.g. to run tcpdump on `br0`, or to take a port down to
    /// simulate a cable pull).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `host` in: a veth with `dev` inside `host` and a bridge port `p<n>` here. Returns
    /// the port's name.
    pub fn attach(&self, host: &Netns, dev: &str) -> Result<String> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        veth(&self.ns, &port, host, dev)?;
        self.ns.set_master(&port, BRIDGE)?;
        Ok(port)
    }
}
