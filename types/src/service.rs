//! The service datapath's vocabulary, shared by the pure planner (`rackd-services`), the eBPF
//! handle (`datapath::lb`) and the daemon: a frontend, a backend's identity and a backend as
//! the backends map stores it.

use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a frontend or backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl L4Proto {
    /// IANA protocol number, as the maps key it.
    pub const fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
        }
    }

    /// From an IP protocol number (`None` for any other protocol).
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(L4Proto::Tcp),
            17 => Some(L4Proto::Udp),
            _ => None,
        }
    }

    /// Cilium's and Kubernetes' spelling (`TCP`, `UDP`).
    pub const fn cilium_name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "TCP",
            L4Proto::Udp => "UDP",
        }
    }
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cilium_name())
    }
}

fn fmt_endpoint(
    f: &mut fmt::Formatter<'_>,
    addr: IpAddr,
    port: u16,
    proto: L4Proto,
) -> fmt::Result {
    match addr {
        IpAddr::V4(a) => write!(f, "{a}:{port}/{proto}"),
        IpAddr::V6(a) => write!(f, "[{a}]:{port}/{proto}"),
    }
}

/// Where clients connect: address, port, protocol (the key of the services map).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    /// LoadBalancer IP or external IP.
    pub addr: IpAddr,
    /// Service port.
    pub port: u16,
    /// Protocol.
    pub proto: L4Proto,
}

impl fmt::Display for Frontend {
    /// `10.0.0.1:80/TCP`, `[2001:db8::1]:53/UDP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_endpoint(f, self.addr, self.port, self.proto)
    }
}

/// A backend's identity: address, port, protocol (what a backend id stands for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// Endpoint address.
    pub addr: IpAddr,
    /// Endpoint (target) port.
    pub port: u16,
    /// Protocol.
    pub proto: L4Proto,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_endpoint(f, self.addr, self.port, self.proto)
    }
}

/// A backend as the backends map stores it: its identity and whether it is on this node
/// (reached without SNAT, replies translated at egress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendValue {
    /// Address (the family must match its frontends').
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub proto: L4Proto,
    /// On this node.
    pub local: bool,
}

impl BackendValue {
    /// Its identity.
    pub const fn backend(&self) -> Backend {
        Backend {
            addr: self.addr,
            port: self.port,
            proto: self.proto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_display() {
        for p in [L4Proto::Tcp, L4Proto::Udp] {
            assert_eq!(L4Proto::from_number(p.number()), Some(p));
        }
        assert_eq!(L4Proto::from_number(1), None);
        let f = Frontend {
            addr: IpAddr::from([10, 0, 0, 1]),
            port: 80,
            proto: L4Proto::Tcp,
        };
        assert_eq!(f.to_string(), "10.0.0.1:80/TCP");
        let b = Backend {
            addr: "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16])),
            port: 53,
            proto: L4Proto::Udp,
        };
        assert_eq!(b.to_string(), "[2001:db8::1]:53/UDP");
        let v = BackendValue {
            addr: b.addr,
            port: 53,
            proto: L4Proto::Udp,
            local: true,
        };
        assert_eq!(v.backend(), b);
    }
}
