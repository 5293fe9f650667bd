//! Test `flows`: new flows per second through the node, with the generator's own cost kept
//! small.
//!
//! Why a second new-connection test: in the closed-loop `connect` test most of the CPU goes to
//! the client's and the server's TCP stacks (socket, connect, accept, close, TIME_WAIT); the
//! load balancers' share is a few µs out of 50-70 per connection, so on two cores no load
//! balancer can come out more than ~1.3x ahead of another there (the ceiling, no load balancer
//! at all, was 1.19-1.39x kube-proxy's Local rules in the runs of 2026-12-07). Here the generator writes crafted TCP SYNs
//! to a raw socket in batches (`sendmmsg`), each from a fresh (source address, source port),
//! so every SYN is a new flow for whatever load balancer and conntrack is on the path. The
//! backends' listeners answer with SYN-ACKs (SYN cookies once their queues are full), which
//! come back through the node's reverse translation; the client's kernel, having no socket for
//! them, answers each with a RST that goes the same way and clears the backend's state. One
//! operation = one new flow's first round trip (SYN, SYN-ACK, and the RST after it, through the
//! node), counted when its SYN-ACK reaches the generator.
//!
//! How a SYN-ACK is matched to its flow: a flow's index is its SYN's sequence number, so the
//! SYN-ACK's acknowledgement number names it; its addresses and ports must be the ones the
//! index gives. Each flow counts once (its slot is swapped to "done").
//!
//! Sources: a /24 routed to the client and local there (`ip route add local P dev lo`), hosts
//! .1-.254 x ports 1024-61023: 15.2 million distinct flows. Runs in one process continue the
//! index where the last one stopped (warm-up, then the measured run, never reuse a flow) and
//! start over only when the rest of the range is shorter than one run's maximum: a topology
//! (built fresh for every mode and round) sees a flow at most once.
//!
//! The send loop does not pace itself: on a veth path the node's and the backend's packet
//! processing runs in the sender's own softirq context, so the rate settles where the CPU the
//! sender runs on is full. The receiver drains its socket without waiting on it (no wake-up per
//! packet on the sending CPU) and sleeps between drains, so its CPU is its real work.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use datapath::packet::{checksum_add, checksum_fold};

use crate::cpu;
use crate::error::{Error, Result};
use crate::loadgen::{LoadConfig, LoadResult};
use crate::stats::Latency;

/// Source ports per source address.
pub const PORTS: u32 = 60_000;
/// The first source port.
const FIRST_PORT: u16 = 1024;
/// Source hosts in the /24 (.1-.254).
const HOSTS: u32 = 254;
/// Distinct flows the source range holds.
pub const CAPACITY: u32 = PORTS * HOSTS;
/// SYNs per `sendmmsg`, datagrams per `recvmmsg`.
const BATCH: usize = 64;
/// IPv4 header + TCP header with one MSS option.
const PKT_LEN: usize = 44;
/// Most flows one run may send (its latency slots: 4 bytes each).
pub const MAX_FLOWS_PER_RUN: u32 = 1 << 23;
/// A slot whose flow has been counted.
const DONE: u32 = u32::MAX;
/// After the send loop ends, the receiver stops once no reply has come for this long (or
/// after the run's timeout at the latest).
const QUIET: Duration = Duration::from_millis(50);
/// The receiver's sleep between drains.
const NAP: Duration = Duration::from_micros(200);

/// The next flow index of this process (see the module docs).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The source address and port of flow `i` in the /24 at `base`.
pub fn flow_source(base: Ipv4Addr, i: u32) -> (Ipv4Addr, u16) {
    let host = u8::try_from(1 + (i / PORTS) % HOSTS).unwrap_or(1);
    let port = FIRST_PORT.saturating_add(u16::try_from(i % PORTS).unwrap_or(0));
    let [a, b, c, _] = base.octets();
    (Ipv4Addr::new(a, b, c, host), port)
}

/// Writes a TCP SYN (IPv4, DF, TTL 64, MSS 1460, sequence number `seq`) into `buf`. The
/// kernel fills the IP checksum, length and ID of a raw `IPPROTO_RAW` send; the TCP checksum
/// is ours.
pub fn build_syn(buf: &mut [u8; PKT_LEN], src: SocketAddrV4, dst: SocketAddrV4, seq: u32) {
    let len = u16::try_from(PKT_LEN).unwrap_or(0).to_be_bytes();
    let (s, d) = (src.ip().octets(), dst.ip().octets());
    let (sp, dp) = (src.port().to_be_bytes(), dst.port().to_be_bytes());
    let q = seq.to_be_bytes();
    let win = 64240u16.to_be_bytes();
    *buf = [
        0x45, 0, len[0], len[1], 0, 0, 0x40, 0, 64, 6, 0, 0, s[0], s[1], s[2], s[3], d[0], d[1],
        d[2], d[3], // IPv4
        sp[0], sp[1], dp[0], dp[1], q[0], q[1], q[2], q[3], 0, 0, 0, 0, 0x60, 0x02, win[0], win[1],
        0, 0, 0, 0, // TCP: data offset 6 words, SYN
        2, 4, 0x05, 0xb4, // MSS 1460
    ];
    let tcp_len = u16::try_from(PKT_LEN - 20).unwrap_or(0);
    let mut sum = checksum_add(0, &s);
    sum = checksum_add(sum, &d);
    sum += 6 + u32::from(tcp_len);
    sum = checksum_add(sum, buf.get(20..).unwrap_or_default());
    let c = checksum_fold(sum).to_be_bytes();
    if let Some(slot) = buf.get_mut(36..38) {
        slot.copy_from_slice(&c);
    }
}

/// A SYN-ACK's addresses, ports and acknowledgement number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynAck {
    /// Who answered.
    pub from: SocketAddrV4,
    /// Whom it answers.
    pub to: SocketAddrV4,
    /// The acknowledgement number (the SYN's sequence number + 1).
    pub ack: u32,
}

/// Parses an IPv4 packet as read from a raw TCP socket; `None` unless it is a well-formed
/// TCP SYN-ACK (SYN and ACK set, RST not).
pub fn parse_synack(pkt: &[u8]) -> Option<SynAck> {
    let vihl = *pkt.first()?;
    if vihl >> 4 != 4 || *pkt.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = pkt.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let (src, dst) = (addr(12)?, addr(16)?);
    let tcp = pkt.get(ihl..)?;
    let word16 = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tcp.get(at..at + 2)?.try_into().ok()?;
        Some(u16::from_be_bytes(b))
    };
    let ack: [u8; 4] = tcp.get(8..12)?.try_into().ok()?;
    let flags = *tcp.get(13)?;
    if flags & 0x12 != 0x12 || flags & 0x04 != 0 {
        return None;
    }
    Some(SynAck {
        from: SocketAddrV4::new(src, word16(0)?),
        to: SocketAddrV4::new(dst, word16(2)?),
        ack: u32::from_be_bytes(ack),
    })
}

/// A raw socket, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

fn raw_socket(protocol: libc::c_int, what: &str) -> Result<Fd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(Error::Net {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Fd(fd))
}

fn errno_kind() -> String {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(code) => format!("{:?}/{code}", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// What both threads share.
struct Shared {
    /// Send time of flow `first + k` in µs since `t0`, plus 1 (0: not sent; [`DONE`]: counted).
    slots: Vec<AtomicU32>,
    first: u32,
    targets: Vec<SocketAddrV4>,
    sources: Ipv4Addr,
    t0: Instant,
    stop: AtomicBool,
}

impl Shared {
    fn target(&self, i: u32) -> Option<SocketAddrV4> {
        let n = u32::try_from(self.targets.len()).ok()?;
        self.targets
            .get(usize::try_from(i % n.max(1)).ok()?)
            .copied()
    }

    /// Counts a SYN-ACK: its latency in ns when it answers one of our flows for the first time.
    fn complete(&self, s: &SynAck, now_us: u32) -> Option<u64> {
        let i = s.ack.wrapping_sub(1);
        let k = usize::try_from(i.checked_sub(self.first)?).ok()?;
        let slot = self.slots.get(k)?;
        let (src, sport) = flow_source(self.sources, i);
        if s.to != SocketAddrV4::new(src, sport) || Some(s.from) != self.target(i) {
            return None;
        }
        // 0: not sent (a stray SYN-ACK); DONE: counted already.
        let sent = slot.load(Ordering::Acquire);
        if sent == 0 || sent == DONE {
            return None;
        }
        slot.compare_exchange(sent, DONE, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| u64::from(now_us.saturating_sub(sent - 1)) * 1000)
    }
}

struct SendOut {
    sent: u64,
    errors: BTreeMap<String, u64>,
    cpu: Duration,
}

fn send_loop(sh: &Shared, cpus: &[usize], duration: Duration, start: &Barrier) -> Result<SendOut> {
    cpu::pin(cpus);
    let fd = raw_socket(libc::IPPROTO_RAW, "raw socket for SYNs")?;
    let mut bufs = [[0u8; PKT_LEN]; BATCH];
    let mut names = [sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH];
    let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let room = u32::try_from(sh.slots.len()).unwrap_or(0);
    let mut out = SendOut {
        sent: 0,
        errors: BTreeMap::new(),
        cpu: Duration::ZERO,
    };
    let mut next: u32 = 0;
    start.wait();
    let cpu0 = cpu::thread_cpu();
    let end = sh.t0 + duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if next.saturating_add(BATCH as u32) > room {
            *out.errors.entry("flow range used up".into()).or_default() += 1;
            break;
        }
        let stamp = u32::try_from(now.duration_since(sh.t0).as_micros())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
            .min(DONE - 1);
        for (k, (buf, name)) in bufs.iter_mut().zip(names.iter_mut()).enumerate() {
            let off = next + k as u32;
            let i = sh.first + off;
            let (src, sport) = flow_source(sh.sources, i);
            let dst = sh
                .target(i)
                .ok_or_else(|| Error::Config("no target".into()))?;
            build_syn(buf, SocketAddrV4::new(src, sport), dst, i);
            *name = sockaddr(dst);
            if let Some(s) = sh.slots.get(off as usize) {
                // Before the send: the SYN-ACK can be read before sendmmsg returns.
                s.store(stamp, Ordering::Release);
            }
        }
        // The pointers are taken after the last write through the arrays, right before the
        // call, and the arrays do not move until it returns.
        for (((m, iov), buf), name) in msgs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(bufs.iter_mut())
            .zip(names.iter_mut())
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = PKT_LEN;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        // SAFETY: msgs point at the live arrays above, BATCH entries of PKT_LEN bytes each.
        let rc = unsafe { libc::sendmmsg(fd.0, msgs.as_mut_ptr(), BATCH as libc::c_uint, 0) };
        let done = match u32::try_from(rc) {
            Ok(n) => n,
            Err(_) => {
                *out.errors.entry(errno_kind()).or_default() += 1;
                0
            }
        };
        // Unsent SYNs give their slots back (the next batch reuses the indexes).
        for off in next + done..next + BATCH as u32 {
            if let Some(s) = sh.slots.get(off as usize) {
                s.store(0, Ordering::Release);
            }
        }
        next += done;
        out.sent += u64::from(done);
    }
    out.cpu = cpu::thread_cpu().saturating_sub(cpu0);
    Ok(out)
}

struct RecvOut {
    ops: u64,
    lat: Vec<u64>,
    errors: BTreeMap<String, u64>,
    cpu: Duration,
}

fn recv_loop(sh: &Shared, fd: &Fd, cpus: &[usize], timeout: Duration, start: &Barrier) -> RecvOut {
    cpu::pin(cpus);
    let mut bufs = [[0u8; 128]; BATCH];
    let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: an all-zero mmsghdr is valid.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut out = RecvOut {
        ops: 0,
        lat: Vec::with_capacity(1 << 20),
        errors: BTreeMap::new(),
        cpu: Duration::ZERO,
    };
    start.wait();
    let cpu0 = cpu::thread_cpu();
    let mut last_reply = Instant::now();
    let mut stopped: Option<Instant> = None;
    loop {
        // As in the send loop: the pointers are taken right before the call.
        for ((m, iov), buf) in msgs.iter_mut().zip(iovs.iter_mut()).zip(bufs.iter_mut()) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs point at the live arrays above; a null timeout.
        let rc = unsafe {
            libc::recvmmsg(
                fd.0,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let now = Instant::now();
        match usize::try_from(rc) {
            Ok(n) if n > 0 => {
                last_reply = now;
                let us = u32::try_from(now.duration_since(sh.t0).as_micros()).unwrap_or(DONE);
                for (m, buf) in msgs.iter().zip(bufs.iter()).take(n) {
                    let len = usize::try_from(m.msg_len).unwrap_or(0);
                    let Some(s) = buf.get(..len).and_then(parse_synack) else {
                        continue;
                    };
                    if let Some(ns) = sh.complete(&s, us) {
                        out.ops += 1;
                        out.lat.push(ns);
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    *out.errors.entry(errno_kind()).or_default() += 1;
                }
            }
        }
        if sh.stop.load(Ordering::Acquire) {
            // Bounded even if stray packets keep arriving.
            let since = *stopped.get_or_insert(now);
            if now.duration_since(last_reply) >= QUIET || now.duration_since(since) >= timeout {
                break;
            }
        }
        std::thread::sleep(NAP);
    }
    out.cpu = cpu::thread_cpu().saturating_sub(cpu0);
    out
}

/// Runs the `flows` test: `cfg.targets` (IPv4) get new flows in turn from the /24 at
/// `sources`, which must be local in the calling thread's namespace and routed to it. The
/// sender runs on `cfg.cpus`, the receiver on the other CPUs; the receiver waits at most
/// `cfg.timeout` for late SYN-ACKs after the window (`cfg.workers` is not used).
pub fn run(cfg: &LoadConfig, sources: Ipv4Addr) -> Result<LoadResult> {
    let targets: Vec<SocketAddrV4> = cfg
        .targets
        .iter()
        .map(|t| match t {
            SocketAddr::V4(a) => Ok(*a),
            SocketAddr::V6(_) => Err(Error::Config("the flows test is IPv4 only".into())),
        })
        .collect::<Result<_>>()?;
    if targets.is_empty() {
        return Err(Error::Config("the flows test needs a target".into()));
    }
    let mut first = NEXT.load(Ordering::Relaxed);
    if first + u64::from(MAX_FLOWS_PER_RUN) > u64::from(CAPACITY) {
        first = 0;
    }
    let rx = raw_socket(libc::IPPROTO_TCP, "raw socket for SYN-ACKs")?;
    let size: libc::c_int = 64 << 20;
    // SAFETY: setsockopt with a pointer to a local int. Failure only means a smaller buffer.
    unsafe {
        libc::setsockopt(
            rx.0,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let sh = Arc::new(Shared {
        slots: (0..MAX_FLOWS_PER_RUN).map(|_| AtomicU32::new(0)).collect(),
        first: u32::try_from(first).unwrap_or(0),
        targets,
        sources,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
    });
    let rx_cpus: Vec<usize> = if cfg.cpus.is_empty() {
        Vec::new()
    } else {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n).filter(|c| !cfg.cpus.contains(c)).collect()
    };
    let barrier = Arc::new(Barrier::new(3));
    let receiver = {
        let (sh, b, timeout) = (sh.clone(), barrier.clone(), cfg.timeout);
        std::thread::Builder::new()
            .name("flows-rx".into())
            .spawn(move || recv_loop(&sh, &rx, &rx_cpus, timeout, &b))
            .map_err(|source| Error::Net {
                what: "spawn receiver".into(),
                source,
            })?
    };
    let sender = {
        let (sh, b, cpus, d) = (sh.clone(), barrier.clone(), cfg.cpus.clone(), cfg.duration);
        std::thread::Builder::new()
            .name("flows-tx".into())
            .spawn(move || send_loop(&sh, &cpus, d, &b))
            .map_err(|source| Error::Net {
                what: "spawn sender".into(),
                source,
            })?
    };
    // The sender's clock starts at t0, set before the threads: waiting here only lines up
    // their start, the window is [t0, t0 + duration].
    barrier.wait();
    let sent = sender.join();
    sh.stop.store(true, Ordering::Release);
    let got = receiver
        .join()
        .map_err(|_| Error::Check("the flows receiver panicked".into()))?;
    let sent = sent.map_err(|_| Error::Check("the flows sender panicked".into()))??;
    NEXT.store(first + sent.sent, Ordering::Relaxed);
    let mut errors = sent.errors;
    for (k, v) in got.errors {
        *errors.entry(k).or_default() += v;
    }
    let lost = sent.sent.saturating_sub(got.ops);
    if lost > 0 {
        errors.insert("no SYN-ACK".into(), lost);
    }
    let mut lat = got.lat;
    let window = cfg.duration.as_secs_f64();
    Ok(LoadResult {
        ops: got.ops,
        errors,
        late: 0,
        elapsed_s: sh.t0.elapsed().as_secs_f64(),
        ops_per_s: if window > 0.0 {
            got.ops as f64 / window
        } else {
            0.0
        },
        latency: Latency::of(&mut lat),
        cpu_s: (sent.cpu + got.cpu).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_have_distinct_sources_across_the_range() {
        let base = Ipv4Addr::new(10, 10, 9, 0);
        assert_eq!(flow_source(base, 0), (Ipv4Addr::new(10, 10, 9, 1), 1024));
        assert_eq!(
            flow_source(base, PORTS - 1),
            (Ipv4Addr::new(10, 10, 9, 1), 61023)
        );
        assert_eq!(
            flow_source(base, PORTS),
            (Ipv4Addr::new(10, 10, 9, 2), 1024)
        );
        assert_eq!(
            flow_source(base, CAPACITY - 1),
            (Ipv4Addr::new(10, 10, 9, 254), 61023)
        );
    }

    /// A SYN-ACK for the SYN we built parses back to the flow; checksums verify.
    #[test]
    fn a_syn_checksums_and_a_synack_parses() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 10, 9, 7), 4242);
        let dst = SocketAddrV4::new(Ipv4Addr::new(172, 18, 255, 200), 80);
        let mut syn = [0u8; PKT_LEN];
        build_syn(&mut syn, src, dst, 123_456);
        // The TCP checksum over the pseudo-header and the segment folds to zero.
        let mut sum = checksum_add(0, &src.ip().octets());
        sum = checksum_add(sum, &dst.ip().octets());
        sum += 6 + 24;
        sum = checksum_add(sum, &syn[20..]);
        assert_eq!(checksum_fold(sum), 0);
        // A SYN is not a SYN-ACK.
        assert_eq!(parse_synack(&syn), None);
        // Turn it into the answer: swap the ends, set ACK, ack = seq + 1.
        let mut reply = syn;
        reply[12..16].copy_from_slice(&dst.ip().octets());
        reply[16..20].copy_from_slice(&src.ip().octets());
        reply[20..22].copy_from_slice(&80u16.to_be_bytes());
        reply[22..24].copy_from_slice(&4242u16.to_be_bytes());
        reply[28..32].copy_from_slice(&123_457u32.to_be_bytes());
        reply[33] = 0x12;
        assert_eq!(
            parse_synack(&reply),
            Some(SynAck {
                from: dst,
                to: src,
                ack: 123_457
            })
        );
        // A RST+ACK, a truncated packet, IPv6 and a bad IHL are not.
        let mut rst = reply;
        rst[33] = 0x14;
        assert_eq!(parse_synack(&rst), None);
        for n in 0..33 {
            assert_eq!(parse_synack(&reply[..n]), None, "{n} bytes");
        }
        let mut v6 = reply;
        v6[0] = 0x65;
        assert_eq!(parse_synack(&v6), None);
        let mut ihl = reply;
        ihl[0] = 0x44;
        assert_eq!(parse_synack(&ihl), None);
        let mut long = reply;
        long[0] = 0x4f;
        assert_eq!(parse_synack(&long), None);
    }
}
