//! tc vs XDP for the responder, measured side by side (root required):
//!
//! A. Program cost with BPF_PROG_TEST_RUN on crafted frames, both variants.
//!    Reply paths rewrite the frame, so a `repeat` loop would measure the
//!    reply only once; they run with repeat = 1 many times (median of the
//!    kernel-reported durations, which include one clock read). Pass paths
//!    use a repeat loop.
//! B. Live ARP round trip over a veth between two namespaces: tc (TCX),
//!    generic XDP and native XDP on the node side, requests sent and replies
//!    received by a packet socket in the client namespace.
//!
//! Run: `cargo bench -p datapath --bench tc_vs_xdp`.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{Netns, PinDir};
use datapath::{Hook, Responder, Verdict, XdpMode, packet, sys};

const OUR_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
const ASKER_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const SAMPLES: usize = 20_000;
const RTT_SAMPLES: usize = 500;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn micro() {
    let dir = PinDir::new();
    let ns = Netns::new("dp-bench").unwrap();
    let _in = ns.enter_guard().unwrap();
    let mut r = Responder::open_or_create(dir.path()).unwrap();
    r.set_lease_duration(Duration::from_secs(3600)).unwrap();
    r.heartbeat().unwrap();
    r.set_mac(1, OUR_MAC).unwrap();
    let vip4 = Ipv4Addr::new(192, 0, 2, 10);
    let vip6: Ipv6Addr = "2001:db8::10".parse().unwrap();
    r.announce(IpAddr::V4(vip4), 1).unwrap();
    r.announce(IpAddr::V6(vip6), 1).unwrap();
    // Fill the maps a bit so lookups are not in a one-entry table.
    for i in 0..10_000u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        r.announce(IpAddr::V4(ip), 1).unwrap();
    }

    let arp = packet::arp_request(ASKER_MAC, Ipv4Addr::new(192, 0, 2, 1), vip4);
    let ns_pkt = packet::neighbour_solicitation(ASKER_MAC, "2001:db8::1".parse().unwrap(), vip6);
    let arp_miss = packet::arp_request(
        ASKER_MAC,
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 99),
    );
    let mut ipv4 = packet::arp_request(ASKER_MAC, Ipv4Addr::new(192, 0, 2, 1), vip4);
    ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());

    println!("A. BPF_PROG_TEST_RUN, ns per packet (tc / xdp, ratio tc:xdp)");
    for (name, pkt, reply) in [
        ("ARP request, announced -> reply", &arp, true),
        ("NS, announced -> NA", &ns_pkt, true),
        ("ARP request, other IP -> pass", &arp_miss, false),
        ("IPv4 frame -> pass", &ipv4, false),
    ] {
        let mut res = Vec::new();
        for hook in [Hook::Tc, Hook::Xdp] {
            let ns = if reply {
                let mut d: Vec<Duration> = (0..SAMPLES)
                    .map(|_| {
                        let o = r.test_run(hook, pkt, 1).unwrap();
                        assert_eq!(o.verdict, Verdict::Reply);
                        o.duration
                    })
                    .collect();
                percentile(&mut d, 0.5).as_nanos() as f64
            } else {
                let o = r.test_run(hook, pkt, 1_000_000).unwrap();
                assert_eq!(o.verdict, Verdict::Pass);
                o.duration.as_nanos() as f64
            };
            res.push(ns);
        }
        println!(
            "  {name:34} tc {:6.0}  xdp {:6.0}  ratio {:.2}",
            res[0],
            res[1],
            res[0] / res[1].max(1.0)
        );
    }
    r.uninstall().unwrap();
}

/// A packet socket on `ifname` in the current namespace receiving ARP only,
/// with a 1 s receive timeout.
fn arp_socket(ifname: &str) -> (OwnedFd, u32) {
    let ifindex = sys::if_index(ifname).unwrap();
    let proto = (0x0806u16).to_be();
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        );
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        assert_eq!(
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32
            ),
            0
        );
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
        (fd, ifindex)
    }
}

/// Median and p99 ARP round trip and the number of requests left
/// unanswered (1 s each), or None if nothing answers at all.
fn rtt(
    sock: &OwnedFd,
    ifindex: u32,
    req: &[u8],
    vip: Ipv4Addr,
) -> Option<(Duration, Duration, usize)> {
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    let mut lost = 0;
    let mut buf = [0u8; 256];
    for _ in 0..RTT_SAMPLES {
        if samples.is_empty() && lost >= 5 {
            return None;
        }
        let start = Instant::now();
        sys::send_frame(ifindex, req, 1).unwrap();
        loop {
            // SAFETY: recv into an owned buffer.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                lost += 1; // timeout
                break;
            }
            let f = &buf[..n as usize];
            if f.len() >= 42 && f[20..22] == [0, 2] && f[28..32] == vip.octets() {
                samples.push(start.elapsed());
                break;
            }
        }
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    Some((p50, p99, lost))
}

fn live() {
    let dir = PinDir::new();
    let peer_dir = PinDir::new();
    let node = Netns::new("dp-bnode").unwrap();
    let client = Netns::new("dp-bcli").unwrap();
    netlab::veth(&node, "va", &client, "vb").unwrap();
    client.addr_add("vb", "192.0.2.1/24").unwrap();
    let vip = Ipv4Addr::new(192, 0, 2, 10);

    let (sock, vb_index, vb_mac) = {
        let _c = client.enter_guard().unwrap();
        let (s, i) = arp_socket("vb");
        (s, i, sys::if_mac(i).unwrap())
    };
    let req = packet::arp_request(vb_mac, Ipv4Addr::new(192, 0, 2, 1), vip);
    let send_from_client = |label: &str| {
        let _c = client.enter_guard().unwrap();
        match rtt(&sock, vb_index, &req, vip) {
            Some((p50, p99, lost)) => println!(
                "  {label:40} median {:5.1} us  p99 {:5.1} us  unanswered {lost}",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            ),
            None => println!("  {label:40} NO REPLY"),
        }
    };

    println!("B. live ARP round trip over a veth ({RTT_SAMPLES} requests each)");
    let _n = node.enter_guard().unwrap();
    let va = sys::if_index("va").unwrap();
    let mut r = Responder::open_or_create(dir.path()).unwrap();
    // The run is long on a loaded machine; keep the liveness guard out of it.
    r.set_lease_duration(Duration::from_secs(3600)).unwrap();
    r.heartbeat().unwrap();
    r.announce(IpAddr::V4(vip), va).unwrap();

    r.attach(va).unwrap();
    send_from_client("tc (TCX) ingress + bpf_redirect");
    r.detach(va).unwrap();

    {
        let _x = r.attach_xdp_unpinned(va, XdpMode::Skb).unwrap();
        send_from_client("XDP generic (skb) + XDP_TX");
    }
    {
        let _x = r.attach_xdp_unpinned(va, XdpMode::Driver).unwrap();
        send_from_client("XDP native, peer without XDP");
        // A (do-nothing here) XDP program on the peer enables its NAPI
        // receive path, which native XDP_TX on veth needs.
        let mut peer = {
            let _c = client.enter_guard().unwrap();
            Responder::open_or_create(peer_dir.path()).unwrap()
        };
        let _px = {
            let _c = client.enter_guard().unwrap();
            peer.attach_xdp_unpinned(vb_index, XdpMode::Driver).unwrap()
        };
        send_from_client("XDP native, peer with an XDP program");
    }
    r.uninstall().unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    micro();
    live();
}
