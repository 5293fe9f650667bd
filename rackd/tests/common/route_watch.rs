//! Kernel route changes inside a namespace, timestamped on arrival: a NETLINK_ROUTE socket
//! opened in the namespace (it stays there after we leave) and bound to the IPv4 route group,
//! read by a thread. The benchmarks use it to see the moment a route reaches the ToR's kernel
//! table (FRR's zebra installs what bgpd accepted), without polling `vtysh`.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlab::Netns;

const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const NLMSG_HDRLEN: usize = 16;
const RTMSG_LEN: usize = 12;
const RT_TABLE_MAIN: u32 = 254;

/// One change of an IPv4 host route (/32) in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEvent {
    pub at: Instant,
    pub added: bool,
    pub ip: Ipv4Addr,
}

/// The watcher; dropping it stops the thread.
pub struct RouteWatch {
    events: Arc<Mutex<Vec<RouteEvent>>>,
    overrun: Arc<AtomicBool>,
    _reader: Reader,
}

/// A socket opened inside `ns` (it stays there after we leave), with a 100 ms receive
/// timeout so its reader notices when to stop.
fn socket_in(ns: &Netns, domain: i32, ty: i32, proto: i32) -> OwnedFd {
    let fd = ns
        .enter(|| {
            // SAFETY: plain socket(2); the result is checked before use.
            let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: we own the fresh descriptor.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .unwrap();
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: setsockopt with a correctly sized value on our socket.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as u32,
        );
    }
    fd
}

/// Binds `fd` to `addr` (a sockaddr of the socket's family).
fn bind<A>(fd: &OwnedFd, addr: &A) {
    // SAFETY: bind with the address's own size on our socket.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const A).cast(),
            size_of::<A>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
}

/// A thread reading datagrams from a socket, each handed with its arrival time to a
/// callback (errors too); stopped and joined on drop.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn spawn(
        fd: OwnedFd,
        mut on: impl FnMut(Result<&[u8], std::io::Error>, Instant) + Send + 'static,
    ) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !s.load(Ordering::Relaxed) {
                // SAFETY: recv into our buffer, length bounded by it.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let at = Instant::now();
                match usize::try_from(n) {
                    Ok(n) => on(Ok(&buf[..n]), at),
                    Err(_) => on(Err(std::io::Error::last_os_error()), at),
                }
            }
        });
        Reader {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The host-route events in one datagram (bounds-checked: a short or odd message ends the walk).
fn parse(buf: &[u8], at: Instant, out: &mut Vec<RouteEvent>) {
    let mut off = 0;
    while let (Some(len), Some(ty)) = (u32_at(buf, off), u16_at(buf, off + 4)) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return;
        }
        let msg = &buf[off + NLMSG_HDRLEN..off + len];
        off += (len + 3) & !3;
        if ty != RTM_NEWROUTE && ty != RTM_DELROUTE {
            continue;
        }
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let (Some(&family), Some(&dst_len), Some(&table)) = (msg.first(), msg.get(1), msg.get(4))
        else {
            continue;
        };
        if family != libc::AF_INET as u8 || dst_len != 32 {
            continue;
        }
        let mut table = u32::from(table);
        let mut dst = None;
        let mut a = RTMSG_LEN;
        while let (Some(alen), Some(aty)) = (u16_at(msg, a), u16_at(msg, a + 2)) {
            let alen = usize::from(alen);
            if alen < 4 || a + alen > msg.len() {
                break;
            }
            let val = &msg[a + 4..a + alen];
            match aty {
                RTA_DST if val.len() == 4 => {
                    dst = Some(Ipv4Addr::new(val[0], val[1], val[2], val[3]))
                }
                RTA_TABLE => table = u32_at(val, 0).unwrap_or(table),
                _ => {}
            }
            a += (alen + 3) & !3;
        }
        if let (Some(ip), true) = (dst, table == RT_TABLE_MAIN) {
            out.push(RouteEvent {
                at,
                added: ty == RTM_NEWROUTE,
                ip,
            });
        }
    }
}

impl RouteWatch {
    /// Starts watching `ns`'s IPv4 routes.
    pub fn start(ns: &Netns) -> RouteWatch {
        let fd = socket_in(ns, libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
        // 27,000 routes arrive within a second or two: a deep queue, so none is lost (loss
        // would show as ENOBUFS, which fails the run).
        let big: libc::c_int = 64 << 20;
        // SAFETY: setsockopt with a correctly sized value on our socket.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const big).cast(),
                size_of::<libc::c_int>() as u32,
            );
        }
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_IPV4_ROUTE;
        bind(&fd, &sa);
        let events = Arc::new(Mutex::new(Vec::new()));
        let overrun = Arc::new(AtomicBool::new(false));
        let (e, o) = (events.clone(), overrun.clone());
        let mut batch = Vec::new();
        let reader = Reader::spawn(fd, move |r, at| match r {
            Ok(buf) => {
                batch.clear();
                parse(buf, at, &mut batch);
                if !batch.is_empty() {
                    e.lock().unwrap().extend_from_slice(&batch);
                }
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                o.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        });
        RouteWatch {
            events,
            overrun,
            _reader: reader,
        }
    }

    /// Number of events so far (a cursor for [`RouteWatch::wait`]).
    pub fn cursor(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<RouteEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Routes present now, from every event seen (the watch starts before the routes come).
    pub fn present(&self) -> std::collections::BTreeSet<Ipv4Addr> {
        let mut s = std::collections::BTreeSet::new();
        for e in self.events.lock().unwrap().iter() {
            if e.added {
                s.insert(e.ip);
            } else {
                s.remove(&e.ip);
            }
        }
        s
    }

    /// Waits for the first event at or after `cursor` that `want` accepts.
    pub fn wait(
        &self,
        cursor: usize,
        timeout: Duration,
        want: impl Fn(&RouteEvent) -> bool,
    ) -> Option<RouteEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                !self.overrun.load(Ordering::Relaxed),
                "route events were lost (ENOBUFS)"
            );
            if let Some(e) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .skip(cursor)
                .find(|e| want(e))
            {
                return Some(*e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// BGP UPDATE messages arriving at an interface of a namespace from one sender, timestamped
/// on arrival: an AF_PACKET socket opened in the namespace, read by a thread. Tells rackd's
/// share of an end-to-end time (edit → UPDATE on the wire) from the peer's (UPDATE → route
/// in the kernel: FRR holds its route processing queue for up to 50 ms).
pub struct WireWatch {
    updates: Arc<Mutex<Vec<Instant>>>,
    _reader: Reader,
}

/// Whether `frame` (Ethernet) is an IPv4 or IPv6 TCP segment from one of `from` carrying a
/// BGP UPDATE (marker, then type 2). Bounds-checked throughout.
fn is_update_from(frame: &[u8], from: &[std::net::IpAddr]) -> bool {
    let Some(ethertype) = frame.get(12..14) else {
        return false;
    };
    let (src, l4, proto) = match ethertype {
        [0x08, 0x00] => {
            let ip = &frame[14..];
            let Some(&vihl) = ip.first() else {
                return false;
            };
            let ihl = usize::from(vihl & 0x0f) * 4;
            let (Some(s), Some(&p)) = (ip.get(12..16), ip.get(9)) else {
                return false;
            };
            let src: [u8; 4] = s.try_into().unwrap_or_default();
            (std::net::IpAddr::from(src), ip.get(ihl..), p)
        }
        [0x86, 0xdd] => {
            let ip = &frame[14..];
            let (Some(s), Some(&p)) = (ip.get(8..24), ip.get(6)) else {
                return false;
            };
            let src: [u8; 16] = s.try_into().unwrap_or_default();
            (std::net::IpAddr::from(src), ip.get(40..), p)
        }
        _ => return false,
    };
    if proto != 6 || !from.contains(&src) {
        return false;
    }
    let Some(tcp) = l4 else { return false };
    let Some(&off) = tcp.get(12) else {
        return false;
    };
    let Some(payload) = tcp.get(usize::from(off >> 4) * 4..) else {
        return false;
    };
    // Any BGP message in the segment: 16 bytes of 0xff, length (2), type (1).
    payload
        .windows(19)
        .any(|w| w[..16].iter().all(|b| *b == 0xff) && w[18] == 2)
}

impl WireWatch {
    /// Starts watching `dev` in `ns` for UPDATEs sent by any of `from`.
    pub fn start(ns: &Netns, dev: &str, from: Vec<std::net::IpAddr>) -> WireWatch {
        let sock = netlab::PacketSocket::open(ns, dev).unwrap();
        sock.set_recv_timeout(Duration::from_millis(100)).unwrap();
        let updates = Arc::new(Mutex::new(Vec::new()));
        let u = updates.clone();
        let reader = Reader::spawn(sock.into(), move |r, at| {
            if let Ok(frame) = r
                && is_update_from(frame, &from)
            {
                u.lock().unwrap().push(at);
            }
        });
        WireWatch {
            updates,
            _reader: reader,
        }
    }

    /// The first UPDATE seen at or after `t0`.
    pub fn first_after(&self, t0: Instant) -> Option<Instant> {
        self.updates
            .lock()
            .unwrap()
            .iter()
            .find(|t| **t >= t0)
            .copied()
    }
}
