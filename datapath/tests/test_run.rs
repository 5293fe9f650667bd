//! BPF_PROG_TEST_RUN tests of every program: the responder (both the tc and
//! the XDP variant) and the probe; crafted frames in, exact frames and
//! verdicts out. Needs root (CAP_BPF, CAP_SYS_ADMIN for bpffs). Packets
//! "arrive" on ifindex 1 (lo).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::PinDir;
use datapath::packet::{self, NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED};
use datapath::{Hook, Probe, ProbeCounts, ProgramKind, Responder, Verdict};

const OUR_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
const ASKER_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const LO: u32 = 1;
const HOOKS: [Hook; 2] = [Hook::Tc, Hook::Xdp];

fn vip4() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10)
}
fn asker4() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1)
}
fn vip6() -> Ipv6Addr {
    "2001:db8::10".parse().unwrap()
}
fn asker6() -> Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}

/// A responder in a private network namespace (so group joins on lo touch
/// nothing shared) with our MAC on lo and both VIPs announced there.
/// Fields drop in order: responder, namespace, pins.
struct Fixture {
    r: Responder,
    _entered: common::EnteredNetns,
    _ns: common::Netns,
    _dir: PinDir,
}

fn setup() -> Fixture {
    let dir = PinDir::new();
    let ns = common::Netns::new("dp-run").unwrap();
    let entered = ns.enter_guard().unwrap();
    let mut r = Responder::open_or_create(dir.path()).unwrap();
    r.set_mac(LO, OUR_MAC).unwrap();
    r.announce(IpAddr::V4(vip4()), LO).unwrap();
    r.announce(IpAddr::V6(vip6()), LO).unwrap();
    r.heartbeat().unwrap();
    Fixture {
        r,
        _entered: entered,
        _ns: ns,
        _dir: dir,
    }
}

fn replies(r: &Responder, ip: IpAddr) -> u64 {
    let listed = r
        .counters()
        .unwrap()
        .into_iter()
        .find(|c| c.ip == ip && c.ifindex == LO)
        .map(|c| c.replies);
    assert_eq!(
        listed,
        r.replies(ip, LO).unwrap(),
        "counters() and replies() agree"
    );
    listed.unwrap_or(0)
}

fn assert_pass(r: &Responder, pkt: &[u8], what: &str) {
    for hook in HOOKS {
        let out = match r.test_run(hook, pkt, 1) {
            Ok(out) => out,
            // The kernel's skb test run refuses IPv6 frames shorter than an
            // IPv6 header (EINVAL) before the program runs; XDP covers them.
            Err(_) if hook == Hook::Tc && pkt[12..14] == [0x86, 0xdd] && pkt.len() < 54 => continue,
            Err(e) => panic!("{what} ({hook:?}): {e:?}"),
        };
        assert_eq!(out.verdict, Verdict::Pass, "{what} ({hook:?})");
        assert_eq!(
            out.packet, pkt,
            "{what}: packet must pass untouched ({hook:?})"
        );
    }
}

#[test]
fn programs_load_and_pin_their_maps() {
    let dir = PinDir::new();
    let r = Responder::open_or_create(dir.path()).unwrap();
    let folder = dir.path().join("l2_responder_v1");
    assert_eq!(r.pin_dir(), folder);
    for m in datapath::maps::ALL_MAPS {
        assert!(
            folder.join(m).exists(),
            "{m} pinned in the responder's folder"
        );
        assert!(!dir.path().join(m).exists(), "{m} not flat in the root");
    }
    r.uninstall().unwrap();
    assert!(!dir.path().exists(), "uninstall removes the folder");
}

/// Every map a program pins lives in its folder and carries the folder's
/// layout version, so a version bump in the registry without one in the C
/// names (or the reverse) fails here.
#[test]
fn every_pinned_map_carries_its_program_version() {
    let dir = PinDir::new();
    let r = Responder::open_or_create(dir.path()).unwrap();
    let p = Probe::open_or_create(dir.path()).unwrap();
    let lb =
        datapath::lb::ServiceLb::open_or_create(dir.path(), &datapath::lb::LbConfig::default())
            .unwrap();
    for kind in ProgramKind::all() {
        let spec = kind.spec();
        let folder = datapath::program_dir(dir.path(), kind);
        assert_eq!(
            folder.file_name().unwrap().to_str().unwrap(),
            // A second entry point lives in its owner's folder.
            format!("{}_v{}", kind.object_owner().spec().name, spec.version)
        );
        let names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.is_empty(), "{kind}: no maps pinned");
        for n in &names {
            assert!(n.ends_with(&format!("_v{}", spec.version)), "{kind}: {n}");
        }
    }
    // Nothing of ours is flat in the root.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["l2_responder_v1", "lb_v3", "probe_v1"]);
    lb.uninstall().unwrap();
    r.uninstall().unwrap();
    assert!(dir.path().exists(), "the probe's folder keeps the root");
    p.uninstall().unwrap();
    assert!(!dir.path().exists());
}

/// The probe counts by EtherType and passes every frame on untouched,
/// whatever its shape (including truncated ones).
#[test]
fn probe_counts_and_passes_everything_untouched() {
    let dir = PinDir::new();
    let ns = common::Netns::new("dp-run").unwrap();
    let _in = ns.enter_guard().unwrap();
    let p = Probe::open_or_create(dir.path()).unwrap();
    let arp = packet::arp_request(ASKER_MAC, asker4(), vip4());
    let ns6 = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    let mut ipv4 = packet::arp_request(ASKER_MAC, asker4(), vip4());
    ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut lldp = packet::arp_request(ASKER_MAC, asker4(), vip4());
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let mut frames = vec![arp.clone(), ns6, ipv4, lldp];
    frames.extend((14..arp.len()).map(|len| arp[..len].to_vec()));
    for f in &frames {
        let out = p.test_run(f).unwrap();
        assert_eq!(out.verdict, Verdict::Pass, "{f:02x?}");
        assert_eq!(&out.packet, f, "untouched");
    }
    let c = p.counts().unwrap();
    // The truncated ARP frames still carry the ARP EtherType.
    let want = ProbeCounts {
        arp: 1 + (arp.len() - 14) as u64,
        ipv4: 1,
        ipv6: 1,
        other: 1,
    };
    assert_eq!(c, want);
    // Counters are pinned: a reopened probe sees them.
    drop(p);
    let p = Probe::open_or_create(dir.path()).unwrap();
    assert_eq!(p.counts().unwrap(), want);
    p.uninstall().unwrap();
}

#[test]
fn arp_request_gets_exact_reply() {
    let f = setup();
    let r = &f.r;
    let req = packet::arp_request(ASKER_MAC, asker4(), vip4());
    let want = packet::arp_reply(OUR_MAC, vip4(), ASKER_MAC, asker4());
    for (i, hook) in HOOKS.into_iter().enumerate() {
        let out = r.test_run(hook, &req, 1).unwrap();
        assert_eq!(out.verdict, Verdict::Reply, "{hook:?}");
        assert_eq!(out.packet, want, "{hook:?}");
        assert_eq!(replies(r, IpAddr::V4(vip4())), i as u64 + 1, "counter");
    }
}

#[test]
fn padded_arp_request_keeps_its_length() {
    let f = setup();
    let r = &f.r;
    let mut req = packet::arp_request(ASKER_MAC, asker4(), vip4());
    req.resize(60, 0); // minimum Ethernet frame
    let want = packet::arp_reply(OUR_MAC, vip4(), ASKER_MAC, asker4());
    for hook in HOOKS {
        let out = r.test_run(hook, &req, 1).unwrap();
        assert_eq!(out.verdict, Verdict::Reply);
        assert_eq!(out.packet.len(), 60);
        assert_eq!(&out.packet[..42], &want[..]);
        assert_eq!(&out.packet[42..], &[0u8; 18][..]);
    }
}

fn check_na(frame: &[u8], eth_dst: [u8; 6], dst: Ipv6Addr, flags: u8) {
    let want = packet::neighbour_advertisement(eth_dst, OUR_MAC, vip6(), dst, flags);
    assert_eq!(frame, &want[..]);
    // Independent check of the checksum the program computed.
    assert_eq!(packet::icmpv6_checksum(vip6(), dst, &frame[54..]), 0);
    assert_eq!(frame[54], packet::ND_NEIGHBOR_ADVERT);
    assert_eq!(frame[58], flags);
    assert_eq!(&frame[78..80], &[2, 1], "target link-layer address option");
    assert_eq!(&frame[80..86], &OUR_MAC);
}

#[test]
fn neighbour_solicitation_gets_exact_advertisement() {
    let f = setup();
    let r = &f.r;
    let ns = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    assert_eq!(ns.len(), 86);
    for (i, hook) in HOOKS.into_iter().enumerate() {
        let out = r.test_run(hook, &ns, 1).unwrap();
        assert_eq!(out.verdict, Verdict::Reply, "{hook:?}");
        check_na(
            &out.packet,
            ASKER_MAC,
            asker6(),
            NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
        );
        assert_eq!(replies(r, IpAddr::V6(vip6())), i as u64 + 1);
    }
}

#[test]
fn solicitation_without_option_or_with_extra_option_is_resized() {
    let f = setup();
    let r = &f.r;
    let full = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    // Without the source link-layer option (78 bytes): the reply must grow.
    let mut short = full[..78].to_vec();
    short[18..20].copy_from_slice(&24u16.to_be_bytes());
    // With a trailing nonce option (RFC 3971 style, 8 bytes): must shrink.
    let mut long = full.clone();
    long.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
    long[18..20].copy_from_slice(&40u16.to_be_bytes());
    for pkt in [short, long] {
        for hook in HOOKS {
            let out = r.test_run(hook, &pkt, 1).unwrap();
            assert_eq!(out.verdict, Verdict::Reply, "{hook:?} len {}", pkt.len());
            check_na(
                &out.packet,
                ASKER_MAC,
                asker6(),
                NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
            );
        }
    }
}

#[test]
fn duplicate_address_detection_is_answered_to_all_nodes() {
    let f = setup();
    let r = &f.r;
    let ns = packet::neighbour_solicitation(ASKER_MAC, Ipv6Addr::UNSPECIFIED, vip6());
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    for hook in HOOKS {
        let out = r.test_run(hook, &ns, 1).unwrap();
        assert_eq!(out.verdict, Verdict::Reply);
        check_na(
            &out.packet,
            [0x33, 0x33, 0, 0, 0, 1],
            all_nodes,
            NA_FLAG_OVERRIDE,
        );
    }
}

#[test]
fn everything_else_passes_untouched() {
    let mut f = setup();
    let r = &mut f.r;
    let other4 = Ipv4Addr::new(192, 0, 2, 99);
    let other6: Ipv6Addr = "2001:db8::99".parse().unwrap();

    assert_pass(
        r,
        &packet::arp_request(ASKER_MAC, asker4(), other4),
        "ARP for another IP",
    );
    assert_pass(
        r,
        &packet::neighbour_solicitation(ASKER_MAC, asker6(), other6),
        "NS for another IP",
    );

    // ARP reply (op 2) for our IP: not a question.
    let reply = packet::arp_reply(ASKER_MAC, vip4(), OUR_MAC, asker4());
    assert_pass(r, &reply, "ARP reply");
    // Someone else's announcement of our IP.
    assert_pass(
        r,
        &packet::arp_announcement(ASKER_MAC, vip4()),
        "gratuitous ARP",
    );
    // ARP with a non-IPv4 protocol type.
    let mut odd = packet::arp_request(ASKER_MAC, asker4(), vip4());
    odd[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_pass(r, &odd, "ARP ptype IPv6");

    // Other ethertypes: IPv4 UDP, VLAN-tagged ARP, LLDP-ish.
    let mut ipv4 = packet::arp_request(ASKER_MAC, asker4(), vip4());
    ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_pass(r, &ipv4, "IPv4 ethertype");
    let mut vlan = packet::arp_request(ASKER_MAC, asker4(), vip4());
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    assert_pass(r, &vlan, "802.1Q tagged ARP");

    // NS with a hop limit other than 255 (RFC 4861 §7.1.1: forged/off-link).
    let mut hop = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    hop[21] = 64;
    assert_pass(r, &hop, "NS with hop limit 64");
    // Other ICMPv6 (echo request shape) and NS with code != 0.
    let mut echo = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    echo[54] = 128;
    assert_pass(r, &echo, "ICMPv6 echo");
    let mut code = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    code[55] = 1;
    assert_pass(r, &code, "NS code 1");
    // Not ICMPv6 (UDP next header).
    let mut udp = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    udp[20] = 17;
    assert_pass(r, &udp, "IPv6 UDP");

    // Truncated frames, from a bare Ethernet header up to one byte short.
    let arp = packet::arp_request(ASKER_MAC, asker4(), vip4());
    for len in 14..arp.len() {
        assert_pass(r, &arp[..len], &format!("ARP truncated to {len}"));
    }
    let ns = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    for len in 14..78 {
        assert_pass(r, &ns[..len], &format!("NS truncated to {len}"));
    }

    // Right IP, wrong interface: the entry is per ifindex.
    r.withdraw(IpAddr::V4(vip4()), LO).unwrap();
    r.withdraw(IpAddr::V6(vip6()), LO).unwrap();
    r.announce(IpAddr::V4(vip4()), 2).unwrap();
    r.set_mac(2, OUR_MAC).unwrap();
    assert_pass(
        r,
        &packet::arp_request(ASKER_MAC, asker4(), vip4()),
        "entry on ifindex 2",
    );
    // Entry present but no MAC known for the interface.
    r.announce(IpAddr::V4(vip4()), LO).unwrap();
    r.detach(LO).unwrap(); // nothing attached on lo; just forgets the MAC
    assert_pass(
        r,
        &packet::arp_request(ASKER_MAC, asker4(), vip4()),
        "no MAC for lo",
    );

    assert!(r.counters().unwrap().iter().all(|c| c.replies == 0));
}

#[test]
fn withdrawn_entry_is_not_answered() {
    let mut f = setup();
    let r = &mut f.r;
    r.withdraw(IpAddr::V4(vip4()), LO).unwrap();
    r.withdraw(IpAddr::V6(vip6()), LO).unwrap();
    r.withdraw(IpAddr::V6(vip6()), LO).unwrap(); // idempotent
    assert_pass(
        r,
        &packet::arp_request(ASKER_MAC, asker4(), vip4()),
        "withdrawn v4",
    );
    assert_pass(
        r,
        &packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6()),
        "withdrawn v6",
    );
    assert!(r.counters().unwrap().is_empty());
    assert_eq!(r.replies(IpAddr::V4(vip4()), LO).unwrap(), None);
}

#[test]
fn stale_heartbeat_stops_answers() {
    let mut f = setup();
    let r = &mut f.r;
    let arp = packet::arp_request(ASKER_MAC, asker4(), vip4());
    let ns = packet::neighbour_solicitation(ASKER_MAC, asker6(), vip6());
    r.set_lease_duration(Duration::from_millis(1)).unwrap();
    r.heartbeat().unwrap();
    // Not a timing assertion: after sleeping past the lease the stamp is
    // stale by definition (same monotonic clock on both sides).
    std::thread::sleep(Duration::from_millis(20));
    assert_pass(r, &arp, "stale heartbeat, ARP");
    assert_pass(r, &ns, "stale heartbeat, NS");

    r.set_lease_duration(Duration::from_secs(3600)).unwrap();
    r.heartbeat().unwrap();
    for hook in HOOKS {
        assert_eq!(r.test_run(hook, &arp, 1).unwrap().verdict, Verdict::Reply);
        assert_eq!(r.test_run(hook, &ns, 1).unwrap().verdict, Verdict::Reply);
    }
}

#[test]
fn maps_survive_a_restart_and_keep_counters() {
    let dir = PinDir::new();
    {
        let mut r = Responder::open_or_create(dir.path()).unwrap();
        r.set_mac(LO, OUR_MAC).unwrap();
        r.announce(IpAddr::V4(vip4()), LO).unwrap();
        r.heartbeat().unwrap();
        let req = packet::arp_request(ASKER_MAC, asker4(), vip4());
        assert_eq!(
            r.test_run(Hook::Tc, &req, 1).unwrap().verdict,
            Verdict::Reply
        );
        // Dropped without uninstall: a crash or restart.
    }
    let mut r = Responder::open_or_create(dir.path()).unwrap();
    assert_eq!(replies(&r, IpAddr::V4(vip4())), 1, "counter survived");
    // Re-announcing keeps the counter.
    r.announce(IpAddr::V4(vip4()), LO).unwrap();
    assert_eq!(replies(&r, IpAddr::V4(vip4())), 1);
    let req = packet::arp_request(ASKER_MAC, asker4(), vip4());
    assert_eq!(
        r.test_run(Hook::Tc, &req, 1).unwrap().verdict,
        Verdict::Reply
    );
    assert_eq!(replies(&r, IpAddr::V4(vip4())), 2);
    r.uninstall().unwrap();
    assert!(!dir.path().exists());
}

#[test]
fn no_answers_before_the_first_heartbeat_nor_after_a_late_restart() {
    let dir = PinDir::new();
    let ns = common::Netns::new("dp-run").unwrap();
    let _in = ns.enter_guard().unwrap();
    let req = packet::arp_request(ASKER_MAC, asker4(), vip4());
    {
        let mut r = Responder::open_or_create(dir.path()).unwrap();
        r.set_mac(LO, OUR_MAC).unwrap();
        r.announce(IpAddr::V4(vip4()), LO).unwrap();
        assert_pass(&r, &req, "fresh maps, never stamped");
        r.set_lease_duration(Duration::from_millis(1)).unwrap();
        r.heartbeat().unwrap();
        // The daemon dies; its lease runs out.
    }
    std::thread::sleep(Duration::from_millis(20));
    let mut r = Responder::open_or_create(dir.path()).unwrap();
    assert_pass(&r, &req, "restarted daemon must not revive stale entries");
    r.set_lease_duration(Duration::from_secs(3600)).unwrap();
    r.heartbeat().unwrap();
    assert_eq!(
        r.test_run(Hook::Tc, &req, 1).unwrap().verdict,
        Verdict::Reply
    );
    r.uninstall().unwrap();
}

#[test]
fn pin_root_outside_bpffs_is_a_clear_error() {
    let dir = std::env::temp_dir().join(common::unique("rackd-not-bpffs"));
    let err = Responder::open_or_create(&dir).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(err, datapath::Error::NotBpffs { .. }), "{err}");
}
