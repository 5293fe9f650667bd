//! TCP transport for sessions: outgoing connections and listeners with a source address or
//! interface binding, TTL for (multihop) eBGP, and TCP-MD5 signatures (RFC 2385).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Largest key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>` (libc does not export it).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Install (`Some`) or remove (`None`) the TCP-MD5 key for `peer` on a socket (RFC 2385 §2).
/// On a listening socket this covers connections accepted from that peer; a connecting
/// socket needs it before `connect`.
pub fn set_md5<S: AsRawFd>(
    sock: &S,
    listener_v6: bool,
    peer: IpAddr,
    key: Option<&[u8]>,
) -> io::Result<()> {
    let key = key.unwrap_or_default();
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP-MD5 key longer than 80 octets",
        ));
    }
    // An IPv6 socket sees IPv4 peers as v4-mapped addresses; the key must use that form.
    let peer = match peer {
        IpAddr::V4(v4) if listener_v6 => IpAddr::V6(v4.to_ipv6_mapped()),
        p => p,
    };
    let sa = SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let n = (sa.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are at least `n` bytes long and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (&raw mut sig.addr).cast::<u8>(),
            n,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a valid, fully initialised tcp_md5sig that outlives the call; the
    // length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast::<libc::c_void>(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How to open the TCP connection to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub remote: SocketAddr,
    pub source: Option<IpAddr>,
    /// Source port; `None` = ephemeral.
    pub local_port: Option<u16>,
    /// Bind to this interface (SO_BINDTODEVICE), e.g. a VRF or the link to the ToR.
    pub interface: Option<String>,
    /// IP TTL / IPv6 hop limit of outgoing packets (1 for directly connected eBGP).
    pub ttl: u8,
    pub md5_key: Option<Vec<u8>>,
}

fn new_socket(addr: &SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

/// Set the TTL / hop limit on a connected or connecting socket.
pub fn set_ttl(sock: &Socket, v6: bool, ttl: u8) -> io::Result<()> {
    if v6 {
        sock.set_unicast_hops_v6(u32::from(ttl))
    } else {
        sock.set_ttl_v4(u32::from(ttl))
    }
}

/// Connect to a peer with all transport options applied before the SYN.
///
/// With a fixed source port the socket has SO_REUSEADDR, so binding succeeds while an
/// earlier connection from that port lingers in TIME_WAIT (it did too, so the kernel allows
/// it). Whether the SYN may then reuse that four-tuple is up to Linux: when the old
/// connection used TCP timestamps (the default on Linux peers) it may at once, since PAWS
/// tells old segments apart (`tcp_twsk_unique` for an explicitly bound port, regardless of
/// `tcp_tw_reuse`); without timestamps (TCP-MD5 turns them off) `connect` fails with
/// `EADDRNOTAVAIL` until the TIME_WAIT ends (60 s), and the caller retries (the speaker every
/// 5 s at most). A TIME_WAIT on the peer's side (it closed first, e.g. FRR's `clear bgp`)
/// accepts the new SYN, which is why the speaker lets the peer close first
/// (`session::LINGER`).
pub async fn connect(opts: &ConnectOptions) -> io::Result<TcpStream> {
    let s = new_socket(&opts.remote)?;
    if let Some(dev) = &opts.interface {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    if opts.source.is_some() || opts.local_port.is_some() {
        let ip = opts.source.unwrap_or(match opts.remote {
            SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        });
        if opts.local_port.is_some() {
            s.set_reuse_address(true)?;
        }
        s.bind(&SockAddr::from(SocketAddr::new(
            ip,
            opts.local_port.unwrap_or(0),
        )))?;
    }
    set_ttl(&s, opts.remote.is_ipv6(), opts.ttl)?;
    if let Some(k) = &opts.md5_key {
        set_md5(&s, false, opts.remote.ip(), Some(k))?;
    }
    s.set_tcp_nodelay(true)?;
    let sock = TcpSocket::from_std_stream(std::net::TcpStream::from(s));
    sock.connect(opts.remote).await
}

/// Bind a listening socket (`SO_REUSEADDR`; dual-stack when bound to `::`).
pub fn listen(addr: SocketAddr, interface: Option<&str>) -> io::Result<TcpListener> {
    let s = new_socket(&addr)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(!addr.ip().is_unspecified())?;
    }
    if let Some(dev) = interface {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    TcpListener::from_std(std::net::TcpListener::from(s))
}

/// Canonical form of a peer address (v4-mapped IPv6 back to IPv4).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_connect_with_ttl_and_md5_key_install() {
        let l = listen("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let addr = l.local_addr().unwrap();
        // Installing and removing a key on the listener must work (root or not).
        set_md5(&l, false, "127.0.0.1".parse().unwrap(), Some(b"secret")).unwrap();
        set_md5(&l, false, "127.0.0.1".parse().unwrap(), None).unwrap();
        let opts = ConnectOptions {
            remote: addr,
            source: Some("127.0.0.1".parse().unwrap()),
            local_port: None,
            interface: None,
            ttl: 1,
            md5_key: None,
        };
        let (c, a) = tokio::join!(connect(&opts), l.accept());
        let c = c.unwrap();
        let (_s, from) = a.unwrap();
        assert_eq!(from, c.local_addr().unwrap());
        assert_eq!(socket2::SockRef::from(&c).ttl_v4().unwrap(), 1);
    }

    #[tokio::test]
    async fn fixed_source_port_and_reconnect_over_our_time_wait() {
        let l = listen("127.0.0.1:0".parse().unwrap(), None).unwrap();
        // A port that was free a moment ago.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = ConnectOptions {
            remote: l.local_addr().unwrap(),
            source: None,
            local_port: Some(port),
            interface: None,
            ttl: 64,
            md5_key: None,
        };
        for round in 0..2 {
            let (c, a) = tokio::join!(connect(&opts), l.accept());
            let c = c.unwrap();
            let (mut s, from) = a.unwrap();
            assert_eq!(from.port(), port, "round {round}");
            assert!(socket2::SockRef::from(&c).reuse_address().unwrap());
            // We close first, so our end goes to TIME_WAIT; the next round reconnects from
            // the same port at once (loopback uses TCP timestamps).
            drop(c);
            let mut buf = [0u8; 1];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    }

    #[test]
    fn md5_key_too_long_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = set_md5(&l, false, "127.0.0.1".parse().unwrap(), Some(&[0u8; 81])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn v4_mapped_addresses_are_canonicalised() {
        assert_eq!(
            canonical("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("2001:db8::1".parse().unwrap()),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
