//! Several programs of ours on one device, in the kernel: the responder and
//! the probe (a pass-through counter registered after it, before foreign
//! programs) attached to a veth in both orders next to a foreign TCX
//! program, adoption of both after a restart, the first release's flat pins
//! adopted without a gap, and uninstall of everything ours and nothing
//! else. The chain is read with the kernel's TCX query (aya's
//! `query_tcx`), independently of the crate's own reading. Needs root.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use common::{Lab, PinDir, mac_str, vip4};
use datapath::maps::{Entry, Iface, V4Key};
use datapath::{AttachPoint, Probe, ProgramKind, Responder, Slot, sys};

/// A TCX program that is not ours: the probe's object loaded by hand, its map
/// pinned in `map_dir`, attached with an unpinned link this struct holds.
struct Foreign {
    ebpf: Ebpf,
    _link: SchedClassifierLink,
    id: u32,
}

impl Foreign {
    fn attach(ifname: &str, map_dir: &Path) -> Self {
        std::fs::create_dir_all(map_dir).unwrap();
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(map_dir)
            .load(datapath::load::object(ProgramKind::Probe))
            .unwrap();
        let prog: &mut SchedClassifier = ebpf
            .program_mut(datapath::maps::PROG_PROBE)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        let id = prog.info().unwrap().id();
        let link_id = prog
            .attach_with_options(
                ifname,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::last()),
            )
            .unwrap();
        let link = prog.take_link(link_id).unwrap();
        Foreign {
            ebpf,
            _link: link,
            id,
        }
    }

    fn ipv4_packets(&self) -> u64 {
        let map = self.ebpf.map(datapath::maps::MAP_PROBE).unwrap();
        let a: Array<_, u64> = Array::try_from(map).unwrap();
        a.get(&datapath::maps::PROBE_IPV4, 0).unwrap()
    }
}

/// Who runs at tc ingress of `ifname`, in order: "responder", "probe" (ours)
/// or "foreign", told apart by program name and the foreign program's id.
fn tcx_order(ifname: &str, foreign: &Foreign) -> Vec<&'static str> {
    SchedClassifier::query_tcx(ifname, TcAttachType::Ingress)
        .unwrap()
        .1
        .iter()
        .map(|p| match (p.name_as_str(), p.id()) {
            (_, id) if id == foreign.id => "foreign",
            (Some("rackd_l2_tc"), _) => "responder",
            (Some("rackd_probe_tc"), _) => "probe",
            (name, id) => panic!("unexpected program {name:?} ({id})"),
        })
        .collect()
}

/// Link and program id of a pinned link.
fn link_ids(path: &Path) -> (u32, u32) {
    let info = FdLink::from(PinnedLink::from_pin(path).unwrap())
        .info()
        .unwrap();
    (info.id(), info.program_id())
}

fn ping(lab: &Lab) -> bool {
    common::try_exec(
        &lab.client,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.2"],
    )
    .status
    .success()
}

/// Attaches our two programs in `order` next to a foreign one and checks the
/// chain after each step, then traffic, a restart of both and uninstall.
fn attach_in_order(order: [ProgramKind; 2]) {
    let lab = Lab::new();
    lab.node.addr_add("va", "192.0.2.2/24").unwrap();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let root = lab.dir.path();
    // A foreign pin folder inside our root: uninstall must leave it.
    let foreign = Foreign::attach("va", &root.join("other-tool"));
    let mut r = Responder::open_or_create(root).unwrap();
    r.set_lease_duration(Duration::from_secs(3600)).unwrap();
    r.heartbeat().unwrap();
    r.announce(vip4(), ifindex).unwrap();
    let mut p = Probe::open_or_create(root).unwrap();

    for (step, kind) in order.iter().enumerate() {
        match kind {
            ProgramKind::L2Responder => r.attach(ifindex).unwrap(),
            ProgramKind::Probe => p.attach(ifindex).unwrap(),
            // The load balancer's ordering is tested in lb_attach.rs.
            other => unreachable!("{other:?} is not part of this test"),
        }
        let now = tcx_order("va", &foreign);
        let want: &[&str] = match (step, kind) {
            (0, ProgramKind::L2Responder) => &["responder", "foreign"],
            (0, ProgramKind::Probe) => &["probe", "foreign"],
            _ => &["responder", "probe", "foreign"],
        };
        assert_eq!(now, want, "after attaching {order:?}[..={step}]");
    }
    // The crate's own reading agrees with the kernel's.
    assert_eq!(
        datapath::chain(root, ifindex, AttachPoint::TcIngress).unwrap(),
        [
            Slot::Ours(ProgramKind::L2Responder),
            Slot::Ours(ProgramKind::Probe),
            Slot::Foreign
        ]
    );
    // Attaching again changes nothing.
    r.attach(ifindex).unwrap();
    p.attach(ifindex).unwrap();
    assert_eq!(tcx_order("va", &foreign), ["responder", "probe", "foreign"]);

    // Traffic: the responder answers for the VIP; other packets go through
    // the responder, the probe and the foreign program to the stack.
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));
    let (probe_before, foreign_before) = (p.counts().unwrap().ipv4, foreign.ipv4_packets());
    assert!(ping(&lab), "ping through the chain");
    assert!(p.counts().unwrap().ipv4 >= probe_before + 3, "probe saw it");
    assert!(
        foreign.ipv4_packets() >= foreign_before + 3,
        "foreign saw it"
    );

    // Restart both (reopened in the other order): same links, same places,
    // new programs.
    let r_link = r.pin_dir().join(AttachPoint::TcIngress.link_name(ifindex));
    let p_link = p.pin_dir().join(AttachPoint::TcIngress.link_name(ifindex));
    let before = (link_ids(&r_link), link_ids(&p_link));
    drop((r, p));
    let p = Probe::open_or_create(root).unwrap();
    let r = Responder::open_or_create(root).unwrap();
    let after = (link_ids(&r_link), link_ids(&p_link));
    assert_eq!(
        (after.0.0, after.1.0),
        (before.0.0, before.1.0),
        "links kept"
    );
    assert_ne!(after.0.1, before.0.1, "responder link runs the new program");
    assert_ne!(after.1.1, before.1.1, "probe link runs the new program");
    assert_eq!(tcx_order("va", &foreign), ["responder", "probe", "foreign"]);
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));
    assert!(ping(&lab), "ping after the restart");
    drop((r, p));

    // Uninstall: both programs and folders gone, the foreign program and
    // pin folder untouched.
    datapath::uninstall(root).unwrap();
    assert_eq!(tcx_order("va", &foreign), ["foreign"]);
    assert_eq!(entries(root), ["other-tool"]);
    assert!(
        root.join("other-tool")
            .join(datapath::maps::MAP_PROBE)
            .exists()
    );
    assert_eq!(lab.arping(), None, "responder gone");
    assert!(ping(&lab), "the foreign program still passes traffic");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn responder_then_probe_follows_the_policy() {
    attach_in_order([ProgramKind::L2Responder, ProgramKind::Probe]);
}

#[test]
fn probe_then_responder_follows_the_policy() {
    attach_in_order([ProgramKind::Probe, ProgramKind::L2Responder]);
}

/// What the first release left under the pin root when it stopped: its maps
/// pinned flat (`rackd_l2_*_v1`), a TCX link `rackd_l2_tc_v1_<ifindex>`
/// attached first, the interface's MAC, a fresh heartbeat and `vip` announced.
/// Written with today's object, whose map layouts are still those (v1).
fn install_first_release_layout(root: &Path, ifindex: u32, ifname: &str) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(root)
        .load(datapath::load::object(ProgramKind::L2Responder))
        .unwrap();
    let prog: &mut SchedClassifier = ebpf.program_mut("rackd_l2_tc").unwrap().try_into().unwrap();
    prog.load().unwrap();
    let id = prog
        .attach_with_options(
            ifname,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .unwrap();
    let link = FdLink::try_from(prog.take_link(id).unwrap()).unwrap();
    let link_path = root.join(format!("rackd_l2_tc_v1_{ifindex}"));
    link.pin(&link_path).unwrap();
    let mut ifaces: HashMap<_, u32, Iface> =
        HashMap::try_from(ebpf.map_mut("rackd_l2_if_v1").unwrap()).unwrap();
    let mac = sys::if_mac(ifindex).unwrap();
    ifaces
        .insert(ifindex, Iface { mac, pad: [0; 2] }, 0)
        .unwrap();
    let mut cfg: Array<_, u64> = Array::try_from(ebpf.map_mut("rackd_l2_cfg_v1").unwrap()).unwrap();
    cfg.set(1, 3_600_000_000_000, 0).unwrap();
    cfg.set(0, sys::monotonic_ns(), 0).unwrap();
    let mut v4: HashMap<_, V4Key, Entry> =
        HashMap::try_from(ebpf.map_mut("rackd_l2_v4_v1").unwrap()).unwrap();
    let key = V4Key {
        ip4: common::VIP4.parse::<std::net::Ipv4Addr>().unwrap().octets(),
        ifindex,
    };
    v4.insert(key, Entry::default(), 0).unwrap();
    link_path
}

const FLAT: [&str; 4] = [
    "rackd_l2_v4_v1",
    "rackd_l2_v6_v1",
    "rackd_l2_if_v1",
    "rackd_l2_cfg_v1",
];

#[test]
fn first_release_pins_are_adopted_and_keep_answering() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let root = lab.dir.path();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    let legacy_link = install_first_release_layout(root, ifindex, "va");
    let (link_id, old_prog) = link_ids(&legacy_link);
    assert_eq!(
        lab.arping().as_deref(),
        Some(mac.as_str()),
        "old layout answers"
    );
    let answered = MapData::from_pin(root.join("rackd_l2_v4_v1")).unwrap();
    let answered: HashMap<_, V4Key, Entry> =
        HashMap::try_from(aya::maps::Map::HashMap(answered)).unwrap();
    let old_replies: Vec<u64> = answered.iter().map(|kv| kv.unwrap().1.replies).collect();
    assert!(old_replies.iter().all(|n| *n >= 1), "{old_replies:?}");
    drop(answered);

    let r = Responder::open_or_create(root).unwrap();
    // Every flat pin moved into the responder's folder, none left behind.
    assert_eq!(entries(root), ["l2_responder_v1"]);
    let mut want: Vec<String> = FLAT.iter().map(|s| (*s).to_owned()).collect();
    want.push(AttachPoint::TcIngress.link_name(ifindex));
    want.sort();
    assert_eq!(entries(r.pin_dir()), want);
    // The same link, switched to the new program: never detached.
    let new_link = r.pin_dir().join(AttachPoint::TcIngress.link_name(ifindex));
    let (new_link_id, new_prog) = link_ids(&new_link);
    assert_eq!(new_link_id, link_id, "the legacy link itself was adopted");
    assert_ne!(new_prog, old_prog, "and runs the new program");
    assert_eq!(common::tcx_programs("va"), 1);
    assert_eq!(r.attached().unwrap(), [ifindex]);
    // The maps themselves came along: entry, counter, MAC, heartbeat.
    let c = r.counters().unwrap();
    assert_eq!(c.len(), 1);
    assert!(c.iter().all(|c| c.ip == vip4() && c.replies >= 1), "{c:?}");
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()), "still answers");
    assert!(r.replies(vip4(), ifindex).unwrap() > old_replies.first().copied());

    r.uninstall().unwrap();
    assert_eq!(common::tcx_programs("va"), 0);
    assert!(!root.exists());
}

/// Uninstall without any adoption: the first release's flat pins and link,
/// the probe's folder and link (placed after the legacy responder link,
/// which counts as ours), all go; a foreign program stays attached.
#[test]
fn uninstall_removes_legacy_pins_and_every_program() {
    let lab = Lab::new();
    lab.node.addr_add("va", "192.0.2.2/24").unwrap();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let root = lab.dir.path();
    let foreign_dir = PinDir::new();
    let foreign = Foreign::attach("va", foreign_dir.path());
    install_first_release_layout(root, ifindex, "va");
    assert_eq!(tcx_order("va", &foreign), ["responder", "foreign"]);
    let mut p = Probe::open_or_create(root).unwrap();
    p.attach(ifindex).unwrap();
    assert_eq!(tcx_order("va", &foreign), ["responder", "probe", "foreign"]);
    drop(p);
    let mut listed = entries(root);
    listed.retain(|n| !n.starts_with("rackd_l2_"));
    assert_eq!(listed, ["probe_v1"]);

    datapath::uninstall(root).unwrap();
    assert_eq!(tcx_order("va", &foreign), ["foreign"]);
    assert!(!root.exists(), "nothing else was there");
    assert!(ping(&lab), "traffic still passes the foreign program");
    assert!(foreign_dir.path().join(datapath::maps::MAP_PROBE).exists());
}

/// A layout version bump: the folder of the previous version (simulated by
/// renaming today's to `_v0`) hands its links over to the new program, keeps
/// their place, and its maps (a layout the new code cannot read) go; the new
/// layout starts with fresh maps.
#[test]
fn an_older_layout_folder_hands_its_links_over() {
    let lab = Lab::new();
    let _in = lab.node.enter_guard().unwrap();
    let ifindex = sys::if_index("va").unwrap();
    let root = lab.dir.path();
    let foreign_dir = PinDir::new();
    let foreign = Foreign::attach("va", foreign_dir.path());
    {
        let mut r = Responder::open_or_create(root).unwrap();
        r.heartbeat().unwrap();
        r.attach(ifindex).unwrap();
        r.announce(vip4(), ifindex).unwrap();
    }
    std::fs::rename(root.join("l2_responder_v1"), root.join("l2_responder_v0")).unwrap();
    let old_link = root
        .join("l2_responder_v0")
        .join(AttachPoint::TcIngress.link_name(ifindex));
    let (link_id, old_prog) = link_ids(&old_link);

    let mut r = Responder::open_or_create(root).unwrap();
    assert_eq!(entries(root), ["l2_responder_v1"], "the old folder is gone");
    let new_link = r.pin_dir().join(AttachPoint::TcIngress.link_name(ifindex));
    let (new_link_id, new_prog) = link_ids(&new_link);
    assert_eq!(new_link_id, link_id, "the old link itself was adopted");
    assert_ne!(new_prog, old_prog);
    assert_eq!(tcx_order("va", &foreign), ["responder", "foreign"]);
    assert!(
        r.counters().unwrap().is_empty(),
        "fresh maps for the new layout"
    );
    // The control plane repopulates them (without attaching again: the
    // interface is listed as attached) and the adopted link serves them.
    assert_eq!(r.attached().unwrap(), [ifindex]);
    r.heartbeat().unwrap();
    r.announce(vip4(), ifindex).unwrap();
    let mac = mac_str(sys::if_mac(ifindex).unwrap());
    assert_eq!(lab.arping().as_deref(), Some(mac.as_str()));
    assert_eq!(tcx_order("va", &foreign), ["responder", "foreign"]);
    r.uninstall().unwrap();
    assert_eq!(tcx_order("va", &foreign), ["foreign"]);
}
