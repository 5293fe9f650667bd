//! End to end: the responder attached (TCX) to a veth in one network
//! namespace, `arping` / `ndisc6` / a packet socket in another. The node side
//! has no addresses, so any answer comes from the program. Needs root,
//! arping (Habets) and ndisc6.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use aya::programs::{SchedClassifier, TcAttachType};
use common::{Lab, Netns, PinDir, VIP4, VIP6, mac_str, tcx_programs, vip4, vip6};
use datapath::{Responder, TcAttach, packet, sys};

#[test]
fn arping_and_ndisc6_get_our_mac_until_withdrawn() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    let mut r = Responder::open_or_create(lab.dir.path()).unwrap();
    r.heartbeat().unwrap();
    r.attach(ifindex).unwrap();
    r.attach(ifindex).unwrap(); // idempotent: still one program
    assert_eq!(tcx_programs("va"), 1);
    assert_eq!(lab.arping(), None, "nothing announced yet");

    r.announce(vip4(), ifindex).unwrap();
    r.announce(vip6(), ifindex).unwrap();
    // The solicited-node group is joined at link layer and by MLD.
    let maddr = lab.node.ip(&["maddr", "show", "dev", "va"]).unwrap();
    assert!(maddr.contains("33:33:ff:00:00:10"), "{maddr}");
    assert!(maddr.contains("ff02::1:ff00:10"), "{maddr}");

    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));
    assert_eq!(lab.ndisc6().as_deref(), Some(mac.as_str()));
    let counters = r.counters().unwrap();
    assert!(counters.iter().all(|c| c.replies >= 1), "{counters:?}");

    // Another address with the same low 24 bits shares the group.
    let twin: IpAddr = "2001:db8:1::10".parse().unwrap();
    r.announce(twin, ifindex).unwrap();

    r.withdraw(vip4(), ifindex).unwrap();
    r.withdraw(vip6(), ifindex).unwrap();
    assert_eq!(lab.arping(), None);
    assert_eq!(lab.ndisc6(), None);
    let maddr = lab.node.ip(&["maddr", "show", "dev", "va"]).unwrap();
    assert!(
        maddr.contains("33:33:ff:00:00:10"),
        "twin still needs it: {maddr}"
    );
    r.withdraw(twin, ifindex).unwrap();
    let maddr = lab.node.ip(&["maddr", "show", "dev", "va"]).unwrap();
    assert!(!maddr.contains("33:33:ff:00:00:10"), "{maddr}");
    assert!(!maddr.contains("ff02::1:ff00:10"), "{maddr}");

    r.detach(ifindex).unwrap();
    assert_eq!(tcx_programs("va"), 0);
    r.uninstall().unwrap();
}

#[test]
fn restart_keeps_answering_and_adopts_the_pinned_link() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    let first_prog;
    {
        let mut r = Responder::open_or_create(lab.dir.path()).unwrap();
        r.heartbeat().unwrap();
        r.attach(ifindex).unwrap();
        r.announce(vip4(), ifindex).unwrap();
        first_prog = SchedClassifier::query_tcx("va", TcAttachType::Ingress)
            .unwrap()
            .1[0]
            .id();
        // Dropped without uninstall: the daemon exits or crashes.
    }
    assert_eq!(
        lab.arping().as_deref(),
        Some(mac.as_str()),
        "answers with no daemon"
    );

    let r = Responder::open_or_create(lab.dir.path()).unwrap();
    let progs = SchedClassifier::query_tcx("va", TcAttachType::Ingress)
        .unwrap()
        .1;
    assert_eq!(progs.len(), 1, "adopted, not attached twice");
    assert_ne!(
        progs[0].id(),
        first_prog,
        "the link now runs the new program"
    );
    assert_eq!(r.attached().unwrap(), vec![ifindex]);
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));

    r.uninstall().unwrap();
    assert_eq!(tcx_programs("va"), 0, "uninstall detaches");
    assert!(!lab.dir.path().exists(), "uninstall removes the pins");
    assert_eq!(lab.arping(), None);
}

/// A packet socket on `vb`, created in the client namespace.
fn capture_socket(lab: &Lab) -> OwnedFd {
    let _in = lab.client.enter_guard().unwrap();
    let ifindex = sys::if_index("vb").unwrap();
    // SAFETY: plain socket/bind/setsockopt calls on a descriptor we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        );
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        let rc = libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(rc, 0);
        let tv = libc::timeval {
            tv_sec: 3,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
        fd
    }
}

#[test]
fn gratuitous_arp_and_unsolicited_na_reach_the_segment() {
    let lab = Lab::new();
    let sock = capture_socket(&lab);
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let mac = sys::if_mac(ifindex).unwrap();
    datapath::send_gratuitous(vip4(), ifindex, 3).unwrap();
    datapath::send_gratuitous(vip6(), ifindex, 3).unwrap();

    let garp = packet::arp_announcement(mac, VIP4.parse().unwrap());
    let na = packet::unsolicited_na(mac, VIP6.parse().unwrap());
    let (mut n_garp, mut n_na) = (0, 0);
    let mut buf = [0u8; 2048];
    for _ in 0..100 {
        if n_garp == 3 && n_na == 3 {
            break;
        }
        // SAFETY: recv into an owned buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(n > 0, "timed out with {n_garp} GARPs and {n_na} NAs");
        let frame = &buf[..n as usize];
        n_garp += usize::from(frame == &garp[..]);
        n_na += usize::from(frame == &na[..]);
    }
    assert_eq!((n_garp, n_na), (3, 3));
}

#[test]
fn link_of_a_deleted_interface_is_dropped_on_restart() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    {
        let mut r = Responder::open_or_create(lab.dir.path()).unwrap();
        r.heartbeat().unwrap();
        r.attach(ifindex).unwrap();
    }
    // The interface goes away while no daemon runs; a new one appears.
    lab.node.link_del("va").unwrap();
    netlab::veth(&lab.node, "va", &lab.client, "vb").unwrap();
    lab.client.addr_add("vb", "192.0.2.1/24").unwrap();

    let mut r = Responder::open_or_create(lab.dir.path()).unwrap();
    r.heartbeat().unwrap();
    assert!(r.attached().unwrap().is_empty(), "defunct link unpinned");
    let ifindex = sys::if_index("va").unwrap();
    r.attach(ifindex).unwrap();
    r.announce(vip4(), ifindex).unwrap();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));
    r.uninstall().unwrap();
}

/// Cilium #44311: behind an MLD-snooping bridge with a querier, a
/// solicitation to a solicited-node group reaches only ports that joined the
/// group. The responder's MLD join must reach the bridge's group table and
/// `ndisc6` must be answered through it, while an address put in the map
/// without a join (the Cilium bug) goes unanswered: checked over many rounds,
/// each with the joined address answered through the same bridge by the same
/// client, and the unjoined address answered too as soon as its group is
/// joined (so "unanswered" means "not forwarded", not a broken observer).
#[test]
fn ndp_works_through_an_mld_snooping_bridge() {
    let dir = PinDir::new();
    let seg = Netns::new("dp-seg").unwrap();
    let node = Netns::new("dp-node").unwrap();
    let client = Netns::new("dp-cli").unwrap();
    // Own querier, with short intervals so it counts as present quickly.
    seg.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
        "mcast_querier",
        "1",
        "mcast_querier_interval",
        "100",
        "mcast_query_response_interval",
        "100",
    ])
    .unwrap();
    seg.link_up("br0").unwrap();
    netlab::veth(&node, "va", &seg, "pa").unwrap();
    netlab::veth(&client, "vb", &seg, "pb").unwrap();
    seg.set_master("pa", "br0").unwrap();
    seg.set_master("pb", "br0").unwrap();
    client.addr_add("vb", "2001:db8::1/64").unwrap();

    let _in = node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    let mut r = Responder::open_or_create(dir.path()).unwrap();
    // The test outlasts the default 15 s lease; keep the liveness guard
    // out of the picture.
    r.set_lease_duration(Duration::from_secs(3600)).unwrap();
    r.heartbeat().unwrap();
    r.attach(ifindex).unwrap();
    r.announce(vip6(), ifindex).unwrap();
    // The unjoined address: an entry written straight into the pinned map.
    let unjoined: Ipv6Addr = "2001:db8::20".parse().unwrap();
    {
        let data = aya::maps::MapData::from_pin(r.pin_dir().join(datapath::maps::MAP_V6)).unwrap();
        let mut v6: aya::maps::HashMap<_, datapath::maps::V6Key, datapath::maps::Entry> =
            aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).unwrap();
        let key = datapath::maps::V6Key {
            ip6: unjoined.octets(),
            ifindex,
            pad: 0,
        };
        v6.insert(key, datapath::maps::Entry::default(), 0).unwrap();
    }

    let mdb_has = |group: &str| -> netlab::Result<bool> {
        Ok(seg
            .output(&["bridge", "mdb", "show", "dev", "br0"])?
            .lines()
            .any(|l| l.contains("port pa") && l.contains(group)))
    };
    netlab::wait_until(
        "the bridge learns the solicited-node group on pa",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || mdb_has("ff02::1:ff00:10"),
    )
    .unwrap();
    // `tries` solicitations `wait_ms` apart; the first answer ends it.
    let ndisc = |ip: &str, tries: &str, wait_ms: &str| {
        let o = common::try_exec(
            &client,
            &["ndisc6", "-q", "-r", tries, "-w", wait_ms, ip, "vb"],
        );
        let out = String::from_utf8_lossy(&o.stdout).trim().to_lowercase();
        (o.status.success() && !out.is_empty()).then_some(out)
    };
    // Until the bridge sees a querier it floods; wait until it stops.
    netlab::wait_until(
        "the bridge stops flooding the unjoined group",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || Ok(ndisc("2001:db8::20", "1", "300").is_none()),
    )
    .unwrap();
    // Answered while the bridge flooded; from now on it must not move.
    let before = r.replies(IpAddr::V6(unjoined), ifindex).unwrap();
    // The negative, repeated, each round with the positive control through
    // the same bridge and client (generous waits: an answer that is only
    // late must not pass for a missing one).
    for round in 0..8 {
        assert_eq!(
            ndisc("2001:db8::20", "2", "500"),
            None,
            "round {round}: unjoined address answered"
        );
        assert_eq!(
            ndisc(VIP6, "5", "1000").as_deref(),
            Some(mac.as_str()),
            "round {round}: joined address answered"
        );
    }
    // The solicitations never reached the program (not answered and lost).
    assert_eq!(r.replies(IpAddr::V6(unjoined), ifindex).unwrap(), before);
    assert!(!mdb_has("ff02::1:ff00:20").unwrap());

    // The same address, once its group is joined, is answered.
    let membership = datapath::join_solicited_node(unjoined, ifindex).unwrap();
    netlab::wait_until(
        "the bridge learns the second group on pa",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || mdb_has("ff02::1:ff00:20"),
    )
    .unwrap();
    assert_eq!(
        ndisc("2001:db8::20", "5", "1000").as_deref(),
        Some(mac.as_str()),
        "joined now, so answered"
    );
    assert!(r.replies(IpAddr::V6(unjoined), ifindex).unwrap() > before);
    drop(membership);

    r.withdraw(vip6(), ifindex).unwrap();
    netlab::wait_until(
        "the bridge forgets the group on pa",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || mdb_has("ff02::1:ff00:10").map(|b| !b),
    )
    .unwrap();
    r.uninstall().unwrap();
}

/// The pre-6.6 path (clsact + cls_bpf via netlink), forced on this kernel.
#[test]
fn netlink_tc_path_attaches_survives_restart_and_uninstalls() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    let filters = || {
        lab.node
            .output(&["tc", "filter", "show", "dev", "va", "ingress"])
            .unwrap()
            .lines()
            .filter(|l| l.contains("rackd_l2_tc"))
            .count()
    };
    {
        let mut r = Responder::open_with(lab.dir.path(), TcAttach::Netlink).unwrap();
        r.heartbeat().unwrap();
        r.attach(ifindex).unwrap();
        r.announce(vip4(), ifindex).unwrap();
        assert_eq!(tcx_programs("va"), 0, "no TCX link");
        assert_eq!(filters(), 1);
        assert_eq!(r.attached().unwrap(), vec![ifindex]);
    }
    assert_eq!(
        lab.arping().as_deref(),
        Some(mac.as_str()),
        "filter outlives the daemon"
    );
    let mut r = Responder::open_with(lab.dir.path(), TcAttach::Netlink).unwrap();
    r.heartbeat().unwrap();
    r.attach(ifindex).unwrap();
    assert_eq!(filters(), 1, "replaced, not duplicated");
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));
    r.uninstall().unwrap();
    assert_eq!(filters(), 0, "uninstall removes the filter");
    assert_eq!(lab.arping(), None);
}

#[test]
fn thousands_of_ipv6_addresses_share_a_few_sockets() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let mut r = Responder::open_or_create(lab.dir.path()).unwrap();
    r.heartbeat().unwrap();
    r.attach(ifindex).unwrap();
    let ips: Vec<IpAddr> = (0..3000u32)
        .map(|i| {
            IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0002_0000_0000_0000_0000_0000u128 + u128::from(i),
            ))
        })
        .collect();
    for ip in &ips {
        r.announce(*ip, ifindex).unwrap();
    }
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    assert!(fds < 200, "{fds} descriptors open for 3000 memberships");
    let maddr = lab.node.ip(&["maddr", "show", "dev", "va"]).unwrap();
    assert!(maddr.contains("ff02::1:ff00:bb7"), "last group joined");
    assert_eq!(r.counters().unwrap().len(), 3000);
    for ip in &ips {
        r.withdraw(*ip, ifindex).unwrap();
    }
    let maddr = lab.node.ip(&["maddr", "show", "dev", "va"]).unwrap();
    assert!(!maddr.contains("ff02::1:ff00:bb7"), "{maddr}");
    r.uninstall().unwrap();
}
