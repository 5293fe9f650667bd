//! Typed errors of the host layer.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// What was being done when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    DumpLinks,
    DumpAddresses,
    DumpRoutes,
    DumpNeighbours,
    AddressAdd,
    AddressDel,
    RouteAdd,
    RouteReplace,
    RouteDel,
    NeighbourAdd,
    NeighbourReplace,
    NeighbourDel,
    /// Opening and subscribing the monitor's socket.
    Subscribe,
    LinkAdd,
    LinkSet,
    LinkDel,
    /// Writing a `/proc/sys` setting.
    Sysctl,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DumpLinks => "list links",
            Self::DumpAddresses => "list addresses",
            Self::DumpRoutes => "list routes",
            Self::DumpNeighbours => "list neighbours",
            Self::AddressAdd => "add address",
            Self::AddressDel => "delete address",
            Self::RouteAdd => "add route",
            Self::RouteReplace => "replace route",
            Self::RouteDel => "delete route",
            Self::NeighbourAdd => "add neighbour",
            Self::NeighbourReplace => "replace neighbour",
            Self::NeighbourDel => "delete neighbour",
            Self::Subscribe => "subscribe to rtnetlink notifications",
            Self::LinkAdd => "add link",
            Self::LinkSet => "set link",
            Self::LinkDel => "delete link",
            Self::Sysctl => "write sysctl",
        })
    }
}

/// Host layer errors.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The rtnetlink socket could not be opened, configured or bound.
    #[error("cannot open the rtnetlink socket to {op}")]
    Socket {
        op: Operation,
        #[source]
        source: std::io::Error,
    },
    /// The connection task is gone (its socket failed); no request can be sent.
    #[error("cannot {op}: the rtnetlink connection is closed")]
    Closed { op: Operation },
    /// The kernel answered with an error.
    #[error("kernel refused to {op} {target}")]
    Kernel {
        op: Operation,
        /// What it was about (`10.0.0.0/24 table 100 metric 20`, `10.0.0.1/24 on ifindex 3`).
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed; whether the kernel applied the request is unknown.
    #[error("netlink I/O failed during {op} {target}")]
    Io {
        op: Operation,
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// A dump kept changing under us (`NLM_F_DUMP_INTR` on every attempt).
    #[error("cannot {op}: the kernel's table kept changing during the dump")]
    DumpInconsistent { op: Operation },
    /// A route whose next hop has the wrong family: IPv6 routes need IPv6 gateways (IPv4
    /// routes may have IPv6 ones, RFC 8950).
    #[error("route {route}: gateway {gateway} has the wrong family")]
    GatewayFamily { route: IpNet, gateway: IpAddr },
    /// A next hop with neither gateway nor interface.
    #[error("route {route}: a next hop needs a gateway or an interface")]
    EmptyNextHop { route: IpNet },
    /// The monitor task has stopped (its socket failed; the cause was logged).
    #[error("the host monitor has stopped")]
    MonitorStopped,
}

impl HostError {
    /// The kernel's errno, for [`HostError::Kernel`].
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn kernel(op: Operation, target: impl fmt::Display, errno: i32) -> Self {
        Self::Kernel {
            op,
            target: target.to_string(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}
