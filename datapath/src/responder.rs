//! The ARP/NDP responder: its handle, map API and liveness guard, on top of
//! the generic loading, pinning and attachment. See README.md for the map
//! layouts and the restart story.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use aya::programs::XdpMode;
use aya::programs::xdp::XdpLink;

use crate::attach::{Loaded, TcAttach};
use crate::error::{Error, Result};
use crate::load::{self, Hook, RunOutcome};
use crate::maps::*;
use crate::packet;
use crate::registry::ProgramKind;
use crate::sys::{self, GroupMemberships};

/// Default pin folder of the daemon.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/rackd";
/// Lease duration the guard uses until `set_lease_duration` is called
/// (Cilium's `--l2-announcements-lease-duration` default).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// `BPF_NOEXIST`: insert only, keeping the counter of an existing entry.
const BPF_NOEXIST: u64 = 1;

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
    prog: Loaded,
    v4: HashMap<MapData, V4Key, Entry>,
    v6: HashMap<MapData, V6Key, Entry>,
    ifaces: HashMap<MapData, u32, Iface>,
    cfg: Array<MapData, u64>,
    memberships: GroupMemberships,
    /// Kept open: see [`sys::FrameSender`].
    sender: sys::FrameSender,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("prog", &self.prog)
            .field("groups", &self.memberships.len())
            .finish_non_exhaustive()
    }
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

impl Responder {
    /// Loads the programs and opens the pinned maps in the responder's folder
    /// under `pin_root` (creating and pinning them on first use; moving the
    /// first release's flat pins there), then adopts every link a previous
    /// daemon pinned by switching it atomically to the program just loaded,
    /// so traffic is never interrupted. Mounts bpffs on `/sys/fs/bpf` if
    /// needed. Does not stamp the heartbeat: the program answers only after
    /// [`Responder::heartbeat`] (and, after a restart, only while the
    /// previous daemon's last stamp is still fresh). Entries left by a
    /// previous daemon stay; the caller withdraws those it no longer holds
    /// (see [`Responder::counters`]) before its first heartbeat.
    pub fn open_or_create(pin_root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(pin_root, TcAttach::Auto)
    }

    /// [`Responder::open_or_create`] with an explicit tc attach method
    /// (tests use [`TcAttach::Netlink`] to exercise the pre-6.6 path here).
    pub fn open_with(pin_root: impl AsRef<Path>, tc_attach: TcAttach) -> Result<Self> {
        let mut prog = Loaded::open(pin_root.as_ref(), ProgramKind::L2Responder, tc_attach)?;
        let ebpf = &mut prog.ebpf;
        let v4 = HashMap::try_from(load::take_map(ebpf, MAP_V4)?)
            .map_err(|e| Error::map(MAP_V4, "open", e))?;
        let v6 = HashMap::try_from(load::take_map(ebpf, MAP_V6)?)
            .map_err(|e| Error::map(MAP_V6, "open", e))?;
        let ifaces = HashMap::try_from(load::take_map(ebpf, MAP_IFACE)?)
            .map_err(|e| Error::map(MAP_IFACE, "open", e))?;
        let cfg = Array::try_from(load::take_map(ebpf, MAP_CFG)?)
            .map_err(|e| Error::map(MAP_CFG, "open", e))?;
        let mut me = Responder {
            prog,
            v4,
            v6,
            ifaces,
            cfg,
            memberships: GroupMemberships::default(),
            sender: sys::FrameSender::new()?,
        };
        let lease = me
            .cfg
            .get(&CFG_LEASE_NS, 0)
            .map_err(|e| Error::map(MAP_CFG, "read", e))?;
        if lease == 0 {
            me.set_lease_duration(DEFAULT_LEASE)?;
        }
        // Every adopted link needs its interface's MAC. The map keeps it
        // across restarts, but a layout bump starts with fresh maps while
        // the links come along, and the control plane does not re-attach
        // interfaces that `attached()` lists.
        for ifindex in me.prog.linked()? {
            if me.ifaces.get(&ifindex, 0).is_err() {
                match sys::if_mac(ifindex) {
                    Ok(mac) => me.set_mac(ifindex, mac)?,
                    Err(e) => tracing::warn!(ifindex, error = %e, "adopted link's interface"),
                }
            }
        }
        // No heartbeat here: a daemon restarted after its leases expired
        // must not revive the answers of the entries it left behind (another
        // node may own those IPs now). Only the control plane, once it holds
        // its lease again, stamps.
        Ok(me)
    }

    /// The pin root in use.
    pub fn pin_root(&self) -> &Path {
        &self.prog.root
    }

    /// The responder's own folder under the pin root.
    pub fn pin_dir(&self) -> &Path {
        &self.prog.dir
    }

    /// Attaches the responder to tc ingress of `ifindex` (a TCX link pinned
    /// in its folder, placed by the ordering policy: first, before foreign
    /// programs; clsact/cls_bpf on kernels without TCX) and records the
    /// interface's MAC for the replies. Idempotent; call again after a MAC
    /// change.
    pub fn attach(&mut self, ifindex: u32) -> Result<()> {
        let mac = sys::if_mac(ifindex)?;
        self.set_mac(ifindex, mac)?;
        self.prog.attach(ifindex)?;
        tracing::info!(ifindex, tcx = self.prog.tcx, "responder attached");
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
        self.prog.detach(ifindex)?;
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
        let prog = load::xdp_mut(&mut self.prog.ebpf, PROG_XDP)?;
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
        if self.prog.tcx {
            return self.prog.linked();
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
        let name = match hook {
            Hook::Tc => PROG_TC,
            Hook::Xdp => PROG_XDP,
        };
        load::test_run(&self.prog.ebpf, hook, name, packet, repeat)
    }

    /// Removes everything the responder attached and pinned under the root
    /// (see [`crate::uninstall_program`]): links (detaching the program),
    /// link-layer multicast filters of announced IPv6 addresses, its maps
    /// and folders. Other programs' pins stay; the root goes when empty.
    pub fn uninstall(self) -> Result<()> {
        let Responder {
            prog,
            v4,
            v6,
            ifaces,
            cfg,
            memberships,
            sender,
        } = self;
        let root = prog.root.clone();
        drop((memberships, v4, v6, ifaces, cfg, prog, sender));
        crate::pin::uninstall_program(&root, ProgramKind::L2Responder)
    }
}

fn v6_key(ip: Ipv6Addr, ifindex: u32) -> V6Key {
    V6Key {
        ip6: ip.octets(),
        ifindex,
        pad: 0,
    }
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

/// Undoes what the responder changed outside bpffs, found through its maps
/// in `dir` (a layout folder, or the root for the legacy flat pins): the
/// link-layer multicast filters of announced IPv6 addresses. Best effort;
/// only layouts this code knows are read.
pub(crate) fn release_outside_bpffs(dir: &Path, version: u32) {
    if version != ProgramKind::L2Responder.spec().version {
        return;
    }
    let Ok(data) = MapData::from_pin(dir.join(MAP_V6)) else {
        return;
    };
    let Ok(v6) = HashMap::<_, V6Key, Entry>::try_from(Map::HashMap(data)) else {
        return;
    };
    for key in v6.keys().flatten() {
        let group = packet::solicited_node(Ipv6Addr::from(key.ip6));
        if let Err(e) = sys::link_multicast(key.ifindex, packet::ipv6_multicast_mac(group), false) {
            tracing::debug!(error = %e, "multicast filter already gone");
        }
    }
}
