//! UDP sockets for BFD: RFC 5881 (single hop) and RFC 5883 (multihop), IPv4 and IPv6.
//!
//! - Receive sockets listen on port 3784 (single hop, RFC 5881 §4) or 4784 (multihop, RFC
//!   5883 §5) of one local address, optionally bound to an interface (`SO_BINDTODEVICE`), and
//!   ask the kernel for the received TTL / hop limit (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT`), read
//!   back from the control messages of `recvmsg(2)` for the GTSM check (RFC 5881 §5, RFC 5082).
//! - Each session sends from its own socket: a source port in 49152-65535 that stays the same
//!   for the session's lifetime (RFC 5881 §4), TTL / hop limit 255 (RFC 5881 §5; RFC 5883 §5
//!   leaves multihop TTL to the sender, 255 is the natural choice), bound to the interface for
//!   single hop.
//!
//! socket2 creates and configures the sockets (it has `SO_BINDTODEVICE`, `IPV6_V6ONLY`, TTL
//! setters); nix does what socket2 does not: `IP_RECVTTL` and parsing the TTL control
//! message out of `recvmsg(2)`.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::error::Error;

/// RFC 5881 §4: single-hop Control packets go to UDP port 3784.
pub const SINGLE_HOP_PORT: u16 = 3784;
/// RFC 5883 §5: multihop Control packets go to UDP port 4784.
pub const MULTIHOP_PORT: u16 = 4784;
/// RFC 5881 §5: sent with TTL / hop limit 255, and single-hop packets received with any
/// other value are discarded (GTSM, RFC 5082).
pub const GTSM_TTL: u8 = 255;
/// RFC 5881 §4: "The source port MUST be in the range 49152 through 65535."
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Largest datagram we read: a Control packet is 24 octets, 24 + 28 with the longest
/// authentication section; anything longer is cut and still checked by its Length field.
const RECV_BUF: usize = 128;

/// One received datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender.
    pub src: SocketAddr,
    /// The IP TTL / IPv6 hop limit it arrived with, if the kernel told us.
    pub ttl: Option<u8>,
    /// The payload (at most [`RECV_BUF`] octets).
    pub data: Vec<u8>,
}

fn sock_err(what: &'static str, addr: IpAddr) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Socket { what, addr, source }
}

/// The interface index of `name` (for IPv6 link-local scope ids).
pub fn ifindex(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
}

/// A socket address for `ip:port`, with the interface's scope id for IPv6 link-local
/// addresses (the kernel needs it to know which link is meant).
pub fn scoped(ip: IpAddr, port: u16, interface: Option<&str>) -> io::Result<SocketAddr> {
    Ok(match ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            let scope = match interface {
                Some(i) => ifindex(i)?,
                None => 0,
            };
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
        }
        _ => SocketAddr::new(ip, port),
    })
}

fn new_socket(local: IpAddr, interface: Option<&str>) -> Result<Socket, Error> {
    let domain = if local.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(sock_err("socket", local))?;
    if local.is_ipv6() {
        s.set_only_v6(true)
            .map_err(sock_err("IPV6_V6ONLY", local))?;
    }
    if let Some(i) = interface {
        // RFC 5881 §3: a single-hop session is tied to one interface; binding the socket to it
        // keeps packets from other links out and sends ours on the right one.
        s.bind_device(Some(i.as_bytes()))
            .map_err(sock_err("SO_BINDTODEVICE", local))?;
    }
    s.set_nonblocking(true)
        .map_err(sock_err("O_NONBLOCK", local))?;
    Ok(s)
}

/// A receive socket on `local:port` (3784 or 4784), bound to `interface` if given, with TTL /
/// hop limit reporting on.
pub fn rx_socket(local: IpAddr, port: u16, interface: Option<&str>) -> Result<UdpSocket, Error> {
    let s = new_socket(local, interface)?;
    // Several sessions' receive sockets may share the port on different addresses or
    // interfaces.
    s.set_reuse_address(true)
        .map_err(sock_err("SO_REUSEADDR", local))?;
    if local.is_ipv4() {
        nix::sys::socket::setsockopt(&s, sockopt::Ipv4RecvTtl, &true).map_err(|e| {
            Error::Socket {
                what: "IP_RECVTTL",
                addr: local,
                source: e.into(),
            }
        })?;
    } else {
        s.set_recv_hoplimit_v6(true)
            .map_err(sock_err("IPV6_RECVHOPLIMIT", local))?;
    }
    let addr = scoped(local, port, interface).map_err(sock_err("if_nametoindex", local))?;
    s.bind(&SockAddr::from(addr))
        .map_err(sock_err("bind", local))?;
    UdpSocket::from_std(s.into()).map_err(sock_err("register", local))
}

/// A session's send socket: bound to `local` and a free port in [`SOURCE_PORTS`] (tried from
/// `seed` on), TTL / hop limit 255, bound to `interface` if given, connected to
/// `remote:port`.
pub fn tx_socket(
    local: IpAddr,
    remote: SocketAddr,
    interface: Option<&str>,
    seed: u32,
) -> Result<UdpSocket, Error> {
    let s = new_socket(local, interface)?;
    if local.is_ipv4() {
        s.set_ttl_v4(u32::from(GTSM_TTL))
            .map_err(sock_err("IP_TTL", local))?;
    } else {
        s.set_unicast_hops_v6(u32::from(GTSM_TTL))
            .map_err(sock_err("IPV6_UNICAST_HOPS", local))?;
    }
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = None;
    for attempt in 0..64u32 {
        let offset = seed.wrapping_add(attempt.wrapping_mul(7919)) % span;
        let port = u16::try_from(offset)
            .ok()
            .and_then(|o| SOURCE_PORTS.start().checked_add(o))
            .unwrap_or(*SOURCE_PORTS.start());
        let addr = scoped(local, port, interface).map_err(sock_err("if_nametoindex", local))?;
        match s.bind(&SockAddr::from(addr)) {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(sock_err("bind", local)(e)),
        }
    }
    if let Some(e) = last {
        return Err(sock_err("bind source port", local)(e));
    }
    s.connect(&SockAddr::from(remote))
        .map_err(sock_err("connect", remote.ip()))?;
    UdpSocket::from_std(s.into()).map_err(sock_err("register", local))
}

/// Receives one datagram with its TTL / hop limit.
pub async fn recv(sock: &UdpSocket) -> io::Result<Datagram> {
    sock.async_io(Interest::READABLE, || recv_now(sock)).await
}

fn recv_now(sock: &UdpSocket) -> io::Result<Datagram> {
    let mut buf = [0u8; RECV_BUF];
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut ttl = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).ok();
            }
            _ => {}
        }
    }
    let src = msg
        .address
        .and_then(|a: SockaddrStorage| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            } else {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(SocketAddrV6::from(*v6)))
            }
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no source address"))?;
    let n = msg.bytes.min(RECV_BUF);
    let data = buf.get(..n).unwrap_or_default().to_vec();
    Ok(Datagram { src, ttl, data })
}
