//! Finding the router at the other end of a link by its IPv6 link-local address, for BGP
//! unnumbered peering (RFC 8950 sessions over link-local addresses, as FRR's
//! `neighbor IFACE interface`):
//!
//! - we announce ourselves with Router Advertisements (RFC 4861 §4.2) whose router lifetime is
//!   0, so no host takes us as its default router (§6.2.3) but a BGP router learns our
//!   link-local address from them (FRR's zebra does);
//! - we solicit the other side with a Router Solicitation (§4.1) and an echo request to
//!   all-routers (RFC 4443 §4.1), and take the link-local source of the first Router
//!   Advertisement or echo reply that is not ours.
//!
//! The packet builders and [`classify`] are pure; [`LinkProber`] is one raw ICMPv6 socket on
//! one interface. The kernel fills in ICMPv6 checksums on raw sockets (RFC 3542 §3.1).

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// ICMPv6 types (RFC 4443 §2.1, RFC 4861 §4).
pub mod icmp6 {
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICITATION: u8 = 133;
    pub const ROUTER_ADVERTISEMENT: u8 = 134;
}

/// All-nodes and all-routers link-local multicast (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// A Router Advertisement with router lifetime 0 (we are a BGP speaker, not a default router)
/// and no options: type, code, checksum (kernel), cur hop limit 0 (unspecified), flags 0,
/// router lifetime 0, reachable time 0, retrans timer 0 (RFC 4861 §4.2).
pub fn router_advertisement() -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = icmp6::ROUTER_ADVERTISEMENT;
    p
}

/// A Router Solicitation without options (RFC 4861 §4.1).
pub fn router_solicitation() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[0] = icmp6::ROUTER_SOLICITATION;
    p
}

/// An echo request (RFC 4443 §4.1) with identifier `id` and sequence number `seq`.
pub fn echo_request(id: u16, seq: u16) -> [u8; 8] {
    let mut p = [0u8; 8];
    p[0] = icmp6::ECHO_REQUEST;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p
}

/// What a received ICMPv6 message says of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// A Router Advertisement (the sender is a router on the link).
    RouterAdvertisement,
    /// An echo reply to one of our requests with identifier `id`.
    EchoReply { id: u16 },
    /// Anything else (including what is too short to be a message).
    Other,
}

/// Classifies a received ICMPv6 message (untrusted bytes: read with bounds checks only).
pub fn classify(msg: &[u8]) -> Heard {
    match (msg.first(), msg.get(1)) {
        (Some(&icmp6::ROUTER_ADVERTISEMENT), Some(0)) if msg.len() >= 16 => {
            Heard::RouterAdvertisement
        }
        (Some(&icmp6::ECHO_REPLY), Some(0)) => match (msg.get(4), msg.get(5)) {
            (Some(&a), Some(&b)) => Heard::EchoReply {
                id: u16::from_be_bytes([a, b]),
            },
            _ => Heard::Other,
        },
        _ => Heard::Other,
    }
}

/// A raw ICMPv6 socket on one interface: sends our announcements and probes, returns the
/// link-local sources of the answers.
#[derive(Debug)]
pub struct LinkProber {
    /// The raw socket behind tokio's datagram type: its `send_to` / `recv_from` are the plain
    /// sendto(2) / recvfrom(2) a raw socket needs, registered with the runtime without unsafe
    /// code (tokio's `AsyncFd::register` is unsafe).
    sock: UdpSocket,
    ifindex: u32,
    id: u16,
    seq: u16,
}

impl LinkProber {
    /// Opens the socket on interface `name` (index `ifindex`): hop limit 255 as Neighbor
    /// Discovery requires (RFC 4861 §6.1.2, §7.1), bound to the device so only its traffic
    /// is seen. Needs CAP_NET_RAW.
    pub fn open(name: &str, ifindex: u32) -> io::Result<Self> {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        s.set_nonblocking(true)?;
        s.bind_device(Some(name.as_bytes()))?;
        s.set_multicast_hops_v6(255)?;
        s.set_unicast_hops_v6(255)?;
        s.set_multicast_if_v6(ifindex)?;
        s.set_multicast_loop_v6(false)?;
        // A per-process identifier for our echo requests (RFC 4443 §4.1 leaves it to us).
        let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
        let std_sock = std::net::UdpSocket::from(std::os::fd::OwnedFd::from(s));
        Ok(Self {
            sock: UdpSocket::from_std(std_sock)?,
            ifindex,
            id,
            seq: 0,
        })
    }

    fn scoped(&self, group: Ipv6Addr) -> SocketAddrV6 {
        // Port 0: raw sockets have none (the kernel ignores it).
        SocketAddrV6::new(group, 0, 0, self.ifindex)
    }

    /// Sends a Router Advertisement to all nodes, and a Router Solicitation and an echo
    /// request to all routers.
    pub async fn probe(&mut self) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let sends: [(&[u8], Ipv6Addr); 3] = [
            (&router_advertisement(), ALL_NODES),
            (&router_solicitation(), ALL_ROUTERS),
            (&echo_request(self.id, self.seq), ALL_ROUTERS),
        ];
        for (pkt, to) in sends {
            self.sock.send_to(pkt, self.scoped(to)).await?;
        }
        Ok(())
    }

    /// The next link-local address heard from a router: a Router Advertisement's source, or
    /// the source of a reply to our echo requests. Other messages are skipped.
    pub async fn heard(&self) -> io::Result<Ipv6Addr> {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = self.sock.recv_from(&mut buf).await?;
            let (Some(msg), std::net::SocketAddr::V6(src)) = (buf.get(..n), from) else {
                continue;
            };
            let heard = classify(msg);
            let ours = matches!(heard, Heard::EchoReply { id } if id == self.id);
            if (ours || heard == Heard::RouterAdvertisement) && src.ip().is_unicast_link_local() {
                return Ok(*src.ip());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_follow_rfc_4861_and_4443() {
        let ra = router_advertisement();
        assert_eq!((ra[0], ra[1], ra.len()), (134, 0, 16));
        // Router lifetime (octets 6-7) 0: never a default router.
        assert_eq!(&ra[6..8], &[0, 0]);
        assert_eq!(router_solicitation(), [133, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(echo_request(0x1234, 7), [128, 0, 0, 0, 0x12, 0x34, 0, 7]);
    }

    #[test]
    fn classify_reads_only_what_is_there() {
        assert_eq!(
            classify(&router_advertisement()),
            Heard::RouterAdvertisement
        );
        assert_eq!(classify(&[134, 0, 0]), Heard::Other, "truncated RA");
        assert_eq!(
            classify(&[134, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Heard::Other
        );
        assert_eq!(
            classify(&[129, 0, 0, 0, 0xab, 0xcd, 0, 1]),
            Heard::EchoReply { id: 0xabcd }
        );
        assert_eq!(
            classify(&[129, 0, 0, 0, 0xab]),
            Heard::Other,
            "truncated reply"
        );
        assert_eq!(classify(&[]), Heard::Other);
        assert_eq!(classify(&[128, 0, 0, 0, 0, 0, 0, 0]), Heard::Other);
    }
}
