//! The three namespaces: sender -- DUT -- receiver, two veth links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use netlab::{LabDir, Netns, veth};

use crate::BenchError;
use crate::peers::PeerSpec;

/// Addresses and ASNs of the lab.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    pub sender: Ipv4Addr,
    pub sender_as: u32,
    pub dut_sender_side: Ipv4Addr,
    pub dut_receiver_side: Ipv4Addr,
    pub dut_as: u32,
    pub receiver: Ipv4Addr,
    pub receiver_as: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            sender: Ipv4Addr::new(10, 0, 1, 2),
            sender_as: 65001,
            dut_sender_side: Ipv4Addr::new(10, 0, 1, 1),
            dut_receiver_side: Ipv4Addr::new(10, 0, 2, 1),
            dut_as: 65000,
            receiver: Ipv4Addr::new(10, 0, 2, 2),
            receiver_as: 65002,
        }
    }
}

impl Topology {
    pub fn dut_for_sender(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.dut_sender_side), 179)
    }
    pub fn dut_for_receiver(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.dut_receiver_side), 179)
    }
}

/// The namespaces and a directory for configs and logs, all removed on drop.
#[derive(Debug)]
pub struct Lab {
    pub topo: Topology,
    pub sender: Netns,
    pub dut: Netns,
    pub receiver: Netns,
    pub dir: LabDir,
}

impl Lab {
    /// A listener at `at` in the DUT's namespace, for a harness role standing in the DUT's
    /// place (sink, floor, relay).
    pub fn listen_as_dut(
        &self,
        role: &'static str,
        at: SocketAddr,
    ) -> Result<TcpListener, BenchError> {
        self.dut
            .enter(|| TcpListener::bind(at))?
            .map_err(|source| BenchError::Peer {
                role,
                what: "listen",
                source,
            })
    }

    /// The sender's session: from the sender's namespace to the DUT's sender side.
    pub fn sender_spec(&self) -> PeerSpec {
        let t = &self.topo;
        PeerSpec {
            dut: t.dut_for_sender(),
            my_as: t.sender_as,
            router_id: t.sender,
        }
    }

    /// The receiver's session: from the receiver's namespace to the DUT's receiver side.
    pub fn receiver_spec(&self) -> PeerSpec {
        let t = &self.topo;
        PeerSpec {
            dut: t.dut_for_receiver(),
            my_as: t.receiver_as,
            router_id: t.receiver,
        }
    }

    pub fn new() -> Result<Self, BenchError> {
        let topo = Topology::default();
        let sender = Netns::new("bench-snd")?;
        let dut = Netns::new("bench-dut")?;
        let receiver = Netns::new("bench-rcv")?;
        veth(&sender, "s0", &dut, "d1")?;
        veth(&dut, "d2", &receiver, "r0")?;
        sender.addr_add("s0", &format!("{}/24", topo.sender))?;
        dut.addr_add("d1", &format!("{}/24", topo.dut_sender_side))?;
        dut.addr_add("d2", &format!("{}/24", topo.dut_receiver_side))?;
        receiver.addr_add("r0", &format!("{}/24", topo.receiver))?;
        let dir = LabDir::new("bgpd-bench")?;
        Ok(Self {
            topo,
            sender,
            dut,
            receiver,
            dir,
        })
    }
}
