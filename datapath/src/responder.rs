//! The ARP/NDP responder: loader, attach/adopt/detach, map API and the
//! liveness guard. See README.md for the map layouts and the restart story.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::xdp::XdpLink;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfLoader, TestRun, TestRunOptions};

use crate::error::{Error, Result};
use crate::maps::*;
use crate::packet;
use crate::sys::{self, GroupMemberships};

/// The compiled programs (built by build.rs from `bpf/l2_responder.bpf.c`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l2_responder.bpf.o"));

/// Default pin folder of the daemon.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/rackd";
/// Lease duration the guard uses until `set_lease_duration` is called
/// (Cilium's `--l2-announcements-lease-duration` default).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// `BPF_NOEXIST`: insert only, keeping the counter of an existing entry.
const BPF_NOEXIST: u64 = 1;
const TC_ACT_UNSPEC: u32 = u32::MAX; // -1
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// How tc programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcAttach {
    /// TCX on kernels >= 6.6, netlink otherwise.
    #[default]
    Auto,
    /// TCX bpf_links, pinned (kernel >= 6.6).
    Tcx,
    /// cls_bpf filters on a clsact qdisc via netlink (any kernel); not
    /// pinnable, found again by program name.
    Netlink,
}

/// Which variant of the program a test run exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `rackd_l2_tc`, the one `attach` uses.
    Tc,
    /// `rackd_l2_xdp`, kept for measurement.
    Xdp,
}

/// What the program decided for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Left to the stack (`TC_ACT_UNSPEC` / `XDP_PASS`).
    Pass,
    /// Answered back out of the receiving interface (`bpf_redirect` to
    /// itself / `XDP_TX`).
    Reply,
    /// Any other return code (a bug).
    Other(u32),
}

/// Result of [`Responder::test_run`].
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The decision.
    pub verdict: Verdict,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Kernel-measured average time per run.
    pub duration: Duration,
}

/// An XDP attachment made by [`Responder::attach_xdp_unpinned`]; dropping
/// it detaches the program.
#[derive(Debug)]
pub struct XdpAttachment {
    _link: XdpLink,
}

/// One announced (IP, interface) entry and its reply counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The announced address.
    pub ip: IpAddr,
    /// The interface it is answered on.
    pub ifindex: u32,
    /// ARP replies or neighbour advertisements sent by the program.
    pub replies: u64,
}

/// Handle on the responder datapath (see the crate docs for the lifecycle).
///
/// All calls act in the calling thread's network namespace (interface
/// indexes, MAC lookups, sockets).
pub struct Responder {
    pin_root: PathBuf,
    ebpf: Ebpf,
    v4: HashMap<MapData, V4Key, Entry>,
    v6: HashMap<MapData, V6Key, Entry>,
    ifaces: HashMap<MapData, u32, Iface>,
    cfg: Array<MapData, u64>,
    memberships: GroupMemberships,
    tcx: bool,
    /// Kept open: see [`sys::FrameSender`].
    sender: sys::FrameSender,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("pin_root", &self.pin_root)
            .field("tcx", &self.tcx)
            .field("groups", &self.memberships.len())
            .finish_non_exhaustive()
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or(Error::Missing { kind: "map", name })
}

fn is_not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn is_exists(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EEXIST))
}

/// Whether tc programs go through TCX (bpf_link, pinnable) rather than
/// netlink cls_bpf on a clsact qdisc: TCX arrived in Linux 6.6.
fn kernel_has_tcx() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

impl Responder {
    /// Loads the programs and opens the pinned maps under `pin_root` (creating
    /// and pinning them on first use), then adopts every link a previous
    /// daemon pinned there by switching it atomically to the programs just
    /// loaded, so traffic is never interrupted. Mounts bpffs on
    /// `/sys/fs/bpf` if needed. Does not stamp the heartbeat: the program
    /// answers only after [`Responder::heartbeat`] (and, after a restart,
    /// only while the previous daemon's last stamp is still fresh). Entries
    /// left by a previous daemon stay; the caller withdraws those it no
    /// longer holds (see [`Responder::counters`]) before its first heartbeat.
    pub fn open_or_create(pin_root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(pin_root, TcAttach::Auto)
    }

    /// [`Responder::open_or_create`] with an explicit tc attach method
    /// (tests use [`TcAttach::Netlink`] to exercise the pre-6.6 path here).
    pub fn open_with(pin_root: impl AsRef<Path>, tc_attach: TcAttach) -> Result<Self> {
        let pin_root = pin_root.as_ref().to_path_buf();
        sys::ensure_pin_root(&pin_root)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_root)
            .load(OBJECT)
            .map_err(|e| Error::Load(Box::new(e)))?;

        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC)
            .ok_or(Error::Missing {
                kind: "program",
                name: PROG_TC,
            })?
            .try_into()
            .map_err(|e| Error::prog(PROG_TC, "convert", e))?;
        tc.load().map_err(|e| Error::prog(PROG_TC, "load", e))?;
        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP)
            .ok_or(Error::Missing {
                kind: "program",
                name: PROG_XDP,
            })?
            .try_into()
            .map_err(|e| Error::prog(PROG_XDP, "convert", e))?;
        xdp.load().map_err(|e| Error::prog(PROG_XDP, "load", e))?;

        let v4 = HashMap::try_from(take_map(&mut ebpf, MAP_V4)?)
            .map_err(|e| Error::map(MAP_V4, "open", e))?;
        let v6 = HashMap::try_from(take_map(&mut ebpf, MAP_V6)?)
            .map_err(|e| Error::map(MAP_V6, "open", e))?;
        let ifaces = HashMap::try_from(take_map(&mut ebpf, MAP_IFACE)?)
            .map_err(|e| Error::map(MAP_IFACE, "open", e))?;
        let cfg = Array::try_from(take_map(&mut ebpf, MAP_CFG)?)
            .map_err(|e| Error::map(MAP_CFG, "open", e))?;

        let mut me = Responder {
            pin_root,
            ebpf,
            v4,
            v6,
            ifaces,
            cfg,
            memberships: GroupMemberships::default(),
            sender: sys::FrameSender::new()?,
            tcx: match tc_attach {
                TcAttach::Auto => kernel_has_tcx(),
                TcAttach::Tcx => true,
                TcAttach::Netlink => false,
            },
        };
        let lease = me
            .cfg
            .get(&CFG_LEASE_NS, 0)
            .map_err(|e| Error::map(MAP_CFG, "read", e))?;
        if lease == 0 {
            me.set_lease_duration(DEFAULT_LEASE)?;
        }
        // No heartbeat here: a daemon restarted after its leases expired
        // must not revive the answers of the entries it left behind (another
        // node may own those IPs now). Only the control plane, once it holds
        // its lease again, stamps.
        for (ifindex, path) in me.pinned_links()? {
            me.adopt(ifindex, &path)?;
        }
        Ok(me)
    }

    /// The pin folder in use.
    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    fn link_path(&self, ifindex: u32) -> PathBuf {
        self.pin_root.join(format!("{LINK_PREFIX}{ifindex}"))
    }

    /// (ifindex, pin path) of every responder link pinned under the root.
    fn pinned_links(&self) -> Result<Vec<(u32, PathBuf)>> {
        pinned_links(&self.pin_root)
    }

    fn tc_prog(&mut self) -> Result<&mut SchedClassifier> {
        self.ebpf
            .program_mut(PROG_TC)
            .ok_or(Error::Missing {
                kind: "program",
                name: PROG_TC,
            })?
            .try_into()
            .map_err(|e| Error::prog(PROG_TC, "convert", e))
    }

    /// Points the pinned TCX link at our program (bpf_link_update: atomic,
    /// no packet sees a gap). A link whose interface vanished is unpinned
    /// and `false` returned.
    fn adopt(&mut self, ifindex: u32, path: &Path) -> Result<bool> {
        let pinned = PinnedLink::from_pin(path).map_err(|source| Error::LinkOpen {
            path: path.into(),
            source,
        })?;
        let link = SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|source| {
            Error::LinkOpen {
                path: path.into(),
                source,
            }
        })?;
        let prog = self.tc_prog()?;
        match prog.attach_to_link(link) {
            Ok(id) => {
                // The pin keeps the link; our handle only needs closing.
                drop(
                    prog.take_link(id)
                        .map_err(|e| Error::prog(PROG_TC, "adopt", e))?,
                );
                tracing::debug!(ifindex, path = %path.display(), "adopted pinned link");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(ifindex, error = %e, "pinned link is defunct; removing it");
                std::fs::remove_file(path).map_err(|source| Error::Bpffs {
                    op: "remove",
                    path: path.into(),
                    source,
                })?;
                Ok(false)
            }
        }
    }

    /// Attaches the responder to tc ingress of `ifindex` (TCX link pinned
    /// under the root; clsact/cls_bpf on kernels without TCX) and records the
    /// interface's MAC for the replies. Idempotent; call again after a MAC
    /// change.
    pub fn attach(&mut self, ifindex: u32) -> Result<()> {
        let mac = sys::if_mac(ifindex)?;
        self.set_mac(ifindex, mac)?;
        let name = sys::if_name(ifindex)?;
        let path = self.link_path(ifindex);
        if self.tcx {
            if path.exists() && self.adopt(ifindex, &path)? {
                return Ok(());
            }
            let prog = self.tc_prog()?;
            let id = prog
                .attach_with_options(
                    &name,
                    TcAttachType::Ingress,
                    // First in the chain: another program's TCX_PASS or
                    // drop must not keep ARP/ND from us, and we hand every
                    // other packet on with TCX_NEXT.
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )
                .map_err(|e| Error::prog(PROG_TC, "attach", e))?;
            let link = prog
                .take_link(id)
                .map_err(|e| Error::prog(PROG_TC, "attach", e))?;
            let fd = FdLink::try_from(link).map_err(|source| Error::LinkOpen {
                path: path.clone(),
                source,
            })?;
            fd.pin(&path)
                .map_err(|source| Error::LinkPin { path, source })?;
        } else {
            // cls_bpf filters are not bpf_links and cannot be pinned: they
            // stay until removed by name, so restarts replace them (a brief
            // gap on these old kernels).
            if let Err(e) = tc::qdisc_add_clsact(&name) {
                tracing::debug!(ifindex, error = %e, "clsact qdisc (probably exists)");
            }
            let _ = tc::qdisc_detach_program(&name, TcAttachType::Ingress, PROG_TC);
            let prog = self.tc_prog()?;
            let id = prog
                .attach_with_options(
                    &name,
                    TcAttachType::Ingress,
                    TcAttachOptions::Netlink(NlOptions::default()),
                )
                .map_err(|e| Error::prog(PROG_TC, "attach", e))?;
            let link = prog
                .take_link(id)
                .map_err(|e| Error::prog(PROG_TC, "attach", e))?;
            // Dropping the link would remove the filter; it must outlive us.
            std::mem::forget(link);
        }
        tracing::info!(ifindex, interface = %name, tcx = self.tcx, "responder attached");
        Ok(())
    }

    /// Sets the MAC the program answers with on `ifindex` without attaching
    /// anything ([`Responder::attach`] does this from the interface itself).
    /// Lets tests and benchmarks drive the program through `test_run`.
    pub fn set_mac(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        self.ifaces
            .insert(ifindex, Iface { mac, pad: [0; 2] }, 0)
            .map_err(|e| Error::map(MAP_IFACE, "insert", e))
    }

    /// Detaches the responder from `ifindex` and forgets its MAC. Entries on
    /// that interface stay (withdraw them separately). Idempotent.
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        let path = self.link_path(ifindex);
        if path.exists() {
            unpin_link(&path)?;
        }
        if !self.tcx
            && let Ok(name) = sys::if_name(ifindex)
        {
            let _ = tc::qdisc_detach_program(&name, TcAttachType::Ingress, PROG_TC);
        }
        match self.ifaces.remove(&ifindex) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::map(MAP_IFACE, "remove", e)),
        }
    }

    /// Attaches the XDP variant to `ifindex` in `mode`, unpinned: it stays
    /// only as long as the returned handle. For the tc-vs-XDP comparison
    /// (see README.md); production uses [`Responder::attach`]. Also records
    /// the interface MAC like `attach`.
    pub fn attach_xdp_unpinned(&mut self, ifindex: u32, mode: XdpMode) -> Result<XdpAttachment> {
        let mac = sys::if_mac(ifindex)?;
        self.set_mac(ifindex, mac)?;
        let name = sys::if_name(ifindex)?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_XDP)
            .ok_or(Error::Missing {
                kind: "program",
                name: PROG_XDP,
            })?
            .try_into()
            .map_err(|e| Error::prog(PROG_XDP, "convert", e))?;
        let id = prog
            .attach(&name, mode)
            .map_err(|e| Error::prog(PROG_XDP, "attach", e))?;
        let link = prog
            .take_link(id)
            .map_err(|e| Error::prog(PROG_XDP, "attach", e))?;
        Ok(XdpAttachment { _link: link })
    }

    /// Interfaces the responder is attached to: those with a pinned link
    /// (TCX), or those with a recorded MAC (netlink, where filters have no
    /// pins).
    pub fn attached(&self) -> Result<Vec<u32>> {
        if self.tcx {
            return Ok(self.pinned_links()?.into_iter().map(|(i, _)| i).collect());
        }
        let mut out = Vec::new();
        for k in self.ifaces.keys() {
            out.push(k.map_err(|e| Error::map(MAP_IFACE, "iterate", e))?);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Starts answering for `ip` on `ifindex`. For IPv6 also joins the
    /// solicited-node group there (socket membership for MLD, plus a
    /// link-layer filter entry that survives restarts). Idempotent: an
    /// existing entry keeps its counter.
    pub fn announce(&mut self, ip: IpAddr, ifindex: u32) -> Result<()> {
        match ip {
            IpAddr::V4(ip) => {
                let key = V4Key {
                    ip4: ip.octets(),
                    ifindex,
                };
                match self.v4.insert(key, Entry::default(), BPF_NOEXIST) {
                    Ok(()) => Ok(()),
                    Err(e) if is_exists(&e) => Ok(()),
                    Err(e) => Err(Error::map(MAP_V4, "insert", e)),
                }
            }
            IpAddr::V6(ip) => {
                let group = packet::solicited_node(ip);
                sys::link_multicast(ifindex, packet::ipv6_multicast_mac(group), true)?;
                self.memberships.join(ip, ifindex)?;
                let key = v6_key(ip, ifindex);
                match self.v6.insert(key, Entry::default(), BPF_NOEXIST) {
                    Ok(()) => Ok(()),
                    Err(e) if is_exists(&e) => Ok(()),
                    Err(e) => Err(Error::map(MAP_V6, "insert", e)),
                }
            }
        }
    }

    /// Stops answering for `ip` on `ifindex` (takes effect for the next
    /// packet). Idempotent.
    pub fn withdraw(&mut self, ip: IpAddr, ifindex: u32) -> Result<()> {
        match ip {
            IpAddr::V4(ip) => match self.v4.remove(&V4Key {
                ip4: ip.octets(),
                ifindex,
            }) {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(Error::map(MAP_V4, "remove", e)),
            },
            IpAddr::V6(ip) => {
                match self.v6.remove(&v6_key(ip, ifindex)) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(Error::map(MAP_V6, "remove", e)),
                }
                // Several addresses can share a solicited-node group; keep
                // the group and the filter while another one needs them.
                // Best effort: the entry is gone, which is what stops the
                // answers, and the interface itself may be gone too.
                let group = packet::solicited_node(ip);
                let cleanup = self.memberships.leave(ip, ifindex).and_then(|unused| {
                    if unused {
                        sys::link_multicast(ifindex, packet::ipv6_multicast_mac(group), false)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = cleanup {
                    tracing::warn!(%ip, ifindex, error = %e, "leaving the solicited-node group");
                }
                Ok(())
            }
        }
    }

    /// Replies sent for one entry, `None` when it is not announced.
    pub fn replies(&self, ip: IpAddr, ifindex: u32) -> Result<Option<u64>> {
        let got = match ip {
            IpAddr::V4(ip) => self
                .v4
                .get(
                    &V4Key {
                        ip4: ip.octets(),
                        ifindex,
                    },
                    0,
                )
                .map_err(|e| (MAP_V4, e)),
            IpAddr::V6(ip) => self
                .v6
                .get(&v6_key(ip, ifindex), 0)
                .map_err(|e| (MAP_V6, e)),
        };
        match got {
            Ok(entry) => Ok(Some(entry.replies)),
            Err((_, e)) if is_not_found(&e) => Ok(None),
            Err((name, e)) => Err(Error::map(name, "read", e)),
        }
    }

    /// Every announced entry with its reply counter.
    pub fn counters(&self) -> Result<Vec<Counter>> {
        let mut out = Vec::new();
        for item in self.v4.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_V4, "iterate", e))?;
            out.push(Counter {
                ip: IpAddr::V4(Ipv4Addr::from(k.ip4)),
                ifindex: k.ifindex,
                replies: v.replies,
            });
        }
        for item in self.v6.iter() {
            let (k, v) = item.map_err(|e| Error::map(MAP_V6, "iterate", e))?;
            out.push(Counter {
                ip: IpAddr::V6(Ipv6Addr::from(k.ip6)),
                ifindex: k.ifindex,
                replies: v.replies,
            });
        }
        Ok(out)
    }

    /// Stamps the liveness heartbeat (now, CLOCK_MONOTONIC). The program
    /// answers only while the stamp is younger than the lease duration; call
    /// this well within it (Cilium refreshes every second).
    pub fn heartbeat(&mut self) -> Result<()> {
        self.cfg
            .set(CFG_HEARTBEAT_NS, sys::monotonic_ns(), 0)
            .map_err(|e| Error::map(MAP_CFG, "write heartbeat", e))
    }

    /// Sets how long the program keeps answering after the last heartbeat
    /// (normally the lease duration of the control plane).
    pub fn set_lease_duration(&mut self, lease: Duration) -> Result<()> {
        let ns = u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX);
        self.cfg
            .set(CFG_LEASE_NS, ns, 0)
            .map_err(|e| Error::map(MAP_CFG, "write lease", e))
    }

    /// Sends `count` gratuitous ARPs (RFC 5227 announcements) for an IPv4
    /// address, or unsolicited neighbour advertisements (RFC 4861 §7.2.6) for
    /// an IPv6 address, out of `ifindex` with its MAC, back to back. Callers
    /// that want them spaced call again later.
    pub fn send_gratuitous(&self, ip: IpAddr, ifindex: u32, count: u32) -> Result<()> {
        // The MAC the program answers with; the kernel's if it is not attached there.
        let mac = match self.ifaces.get(&ifindex, 0) {
            Ok(i) => i.mac,
            Err(_) => sys::if_mac(ifindex)?,
        };
        self.sender.send(ifindex, &gratuitous_frame(ip, mac), count)
    }

    /// Runs one variant of the program on `packet` with BPF_PROG_TEST_RUN
    /// (`repeat` times; the kernel reports the average duration). The packet
    /// arrives on the loopback interface, ifindex 1, of the calling thread's
    /// namespace. For tests and benchmarks; it touches the live maps.
    pub fn test_run(&self, hook: Hook, packet: &[u8], repeat: u32) -> Result<RunOutcome> {
        let mut out = vec![0u8; packet.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..Default::default()
        };
        let (name, res) = match hook {
            Hook::Tc => {
                let p: &SchedClassifier = self
                    .ebpf
                    .program(PROG_TC)
                    .ok_or(Error::Missing {
                        kind: "program",
                        name: PROG_TC,
                    })?
                    .try_into()
                    .map_err(|e| Error::prog(PROG_TC, "convert", e))?;
                (PROG_TC, p.test_run(opts))
            }
            Hook::Xdp => {
                let p: &Xdp = self
                    .ebpf
                    .program(PROG_XDP)
                    .ok_or(Error::Missing {
                        kind: "program",
                        name: PROG_XDP,
                    })?
                    .try_into()
                    .map_err(|e| Error::prog(PROG_XDP, "convert", e))?;
                (PROG_XDP, p.test_run(opts))
            }
        };
        let r = res.map_err(|e| Error::prog(name, "test run", e))?;
        out.truncate(r.data_size_out as usize);
        let verdict = match (hook, r.return_value) {
            (Hook::Tc, TC_ACT_UNSPEC) | (Hook::Xdp, XDP_PASS) => Verdict::Pass,
            (Hook::Tc, TC_ACT_REDIRECT) | (Hook::Xdp, XDP_TX) => Verdict::Reply,
            (_, other) => Verdict::Other(other),
        };
        Ok(RunOutcome {
            verdict,
            packet: out,
            duration: r.duration,
        })
    }

    /// Removes everything the responder attached and pinned under the root:
    /// links (detaching the program), link-layer multicast filters of
    /// announced IPv6 addresses, and the maps. The folder itself is removed
    /// when nothing else (another program's pins) is left in it.
    pub fn uninstall(self) -> Result<()> {
        let Responder {
            pin_root,
            ebpf,
            v4,
            v6,
            ifaces,
            cfg,
            memberships,
            tcx: _,
            sender,
        } = self;
        drop((memberships, v4, v6, ifaces, cfg, ebpf, sender));
        uninstall(&pin_root)
    }
}

fn v6_key(ip: Ipv6Addr, ifindex: u32) -> V6Key {
    V6Key {
        ip6: ip.octets(),
        ifindex,
        pad: 0,
    }
}

fn pinned_links(root: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Bpffs {
                op: "list",
                path: root.into(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(idx) = name.strip_prefix(LINK_PREFIX).and_then(|s| s.parse().ok()) {
            out.push((idx, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn unpin_link(path: &Path) -> Result<()> {
    let pinned = PinnedLink::from_pin(path).map_err(|source| Error::LinkOpen {
        path: path.into(),
        source,
    })?;
    // Removing the pin drops the last reference once our fd closes, which
    // detaches the program.
    let fd = pinned.unpin().map_err(|source| Error::Bpffs {
        op: "unpin",
        path: path.into(),
        source,
    })?;
    drop(fd);
    Ok(())
}

/// Sends gratuitous ARP / unsolicited NA for `ip` on `ifindex` without a
/// loaded responder (see [`Responder::send_gratuitous`]).
pub fn send_gratuitous(ip: IpAddr, ifindex: u32, count: u32) -> Result<()> {
    let mac = sys::if_mac(ifindex)?;
    sys::send_frame(ifindex, &gratuitous_frame(ip, mac), count)
}

fn gratuitous_frame(ip: IpAddr, mac: [u8; 6]) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => packet::arp_announcement(mac, ip),
        IpAddr::V6(ip) => packet::unsolicited_na(mac, ip),
    }
}

/// Removes everything the responder pinned under `pin_root` without loading
/// anything (what `rackd datapath uninstall` runs): see
/// [`Responder::uninstall`]. Safe to run when nothing is installed.
pub fn uninstall(pin_root: &Path) -> Result<()> {
    for (_, path) in pinned_links(pin_root)? {
        unpin_link(&path)?;
    }
    // Netlink (pre-TCX) filters and IPv6 multicast filters are found through
    // the pinned maps.
    let if_path = pin_root.join(MAP_IFACE);
    if let Ok(data) = MapData::from_pin(&if_path)
        && let Ok(ifaces) = HashMap::<_, u32, Iface>::try_from(Map::HashMap(data))
    {
        for ifindex in ifaces.keys().flatten() {
            if let Ok(name) = sys::if_name(ifindex) {
                let _ = tc::qdisc_detach_program(&name, TcAttachType::Ingress, PROG_TC);
            }
        }
    }
    let v6_path = pin_root.join(MAP_V6);
    if let Ok(data) = MapData::from_pin(&v6_path)
        && let Ok(v6) = HashMap::<_, V6Key, Entry>::try_from(Map::HashMap(data))
    {
        for key in v6.keys().flatten() {
            let group = packet::solicited_node(Ipv6Addr::from(key.ip6));
            if let Err(e) =
                sys::link_multicast(key.ifindex, packet::ipv6_multicast_mac(group), false)
            {
                tracing::debug!(error = %e, "multicast filter already gone");
            }
        }
    }
    for name in ALL_MAPS {
        let p = pin_root.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Bpffs {
                    op: "remove",
                    path: p,
                    source,
                });
            }
        }
    }
    match std::fs::remove_dir(pin_root) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
        {
            Ok(())
        }
        Err(source) => Err(Error::Bpffs {
            op: "remove",
            path: pin_root.into(),
            source,
        }),
    }
}
