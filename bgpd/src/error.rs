//! Errors of the speaker API.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use bgpd_wire::Family;

use crate::config::ConfigError;
use crate::policy::NotExact;

/// Why a speaker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the TCP-MD5 key for peer {peer} on the listener")]
    Md5 {
        peer: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("peer {0} already exists")]
    PeerExists(IpAddr),
    #[error("no such peer {0}")]
    NoSuchPeer(IpAddr),
    #[error("prefix {prefix} is not in family {family}")]
    FamilyMismatch { prefix: IpNet, family: Family },
    #[error("address family {family} is not supported (only ipv4-unicast and ipv6-unicast)")]
    UnsupportedFamily { family: Family },
    #[error("peer {peer}: session not established or route refresh not negotiated")]
    RouteRefreshUnavailable { peer: IpAddr },
    /// [`crate::Speaker::patch_export`] needs the peer's export policy to be an
    /// exact-prefix table; nothing was changed.
    #[error("peer {peer}: the export policy cannot be patched in place")]
    ExportNotExact {
        peer: IpAddr,
        #[source]
        reason: NotExact,
    },
    #[error("the speaker has stopped")]
    Stopped,
}
