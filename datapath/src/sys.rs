//! Thin system-call wrappers: bpffs, interface lookups, raw packet sends and
//! multicast memberships. All calls act in the calling thread's network
//! namespace.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::packet;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs is conventionally mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = cstring(path)?;
    // SAFETY: statfs on a NUL-terminated path into a zeroed, owned struct.
    let mut st: libc::statfs = unsafe { zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Makes sure `pin_root` exists on a bpf filesystem, mounting bpffs on
/// `/sys/fs/bpf` first when the folder lives there and nothing is mounted.
pub fn ensure_pin_root(pin_root: &Path) -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if pin_root.starts_with(root) {
        let mounted = is_bpffs(root).map_err(|source| Error::Bpffs {
            op: "stat",
            path: root.into(),
            source,
        })?;
        if !mounted {
            tracing::info!(path = BPFFS_ROOT, "mounting bpffs");
            let src = c"bpf";
            let target = c"/sys/fs/bpf";
            // SAFETY: constant NUL-terminated strings, no mount data.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    src.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(Error::Bpffs {
                    op: "mount",
                    path: root.into(),
                    source: io::Error::last_os_error(),
                });
            }
        }
    }
    std::fs::create_dir_all(pin_root).map_err(|source| Error::Bpffs {
        op: "create",
        path: pin_root.into(),
        source,
    })?;
    match is_bpffs(pin_root) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::NotBpffs {
            path: pin_root.into(),
        }),
        Err(source) => Err(Error::Bpffs {
            op: "stat",
            path: pin_root.into(),
            source,
        }),
    }
}

/// Name of interface `ifindex`.
pub fn if_name(ifindex: u32) -> Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(Error::iface(ifindex, "find", io::Error::last_os_error()));
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Index of interface `name`.
pub fn if_index(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|e| {
        Error::iface(
            0,
            "parse name",
            io::Error::new(io::ErrorKind::InvalidInput, e),
        )
    })?;
    // SAFETY: NUL-terminated name.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(Error::iface(0, "find", io::Error::last_os_error()));
    }
    Ok(idx)
}

/// (ifindex, name) of every interface of the calling thread's namespace;
/// empty when the list cannot be read.
pub fn interfaces() -> Vec<(u32, String)> {
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry,
    // or NULL; it is freed below and not used after.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut p = list;
    // SAFETY: every entry up to the terminating zero one is valid, with a
    // NUL-terminated name.
    unsafe {
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            out.push((
                (*p).if_index,
                CStr::from_ptr((*p).if_name).to_string_lossy().into_owned(),
            ));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(ifindex: u32) -> Result<libc::ifreq> {
    let name = if_name(ifindex)?;
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IF_NAMESIZE - 1))
    {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// MAC address of interface `ifindex` (SIOCGIFHWADDR).
pub fn if_mac(ifindex: u32) -> Result<[u8; 6]> {
    let mut ifr = ifreq_for(ifindex)?;
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .map_err(|e| Error::iface(ifindex, "open a socket", e))?;
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) } != 0 {
        return Err(Error::iface(
            ifindex,
            "read the MAC address",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the union member written by SIOCGIFHWADDR.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// Adds (`add`) or removes a link-layer multicast address on `ifindex`
/// (SIOCADDMULTI / SIOCDELMULTI). Unlike a socket membership this outlives the
/// process, so the NIC keeps accepting solicitations across a daemon restart.
pub fn link_multicast(ifindex: u32, mac: [u8; 6], add: bool) -> Result<()> {
    let mut ifr = ifreq_for(ifindex)?;
    // SAFETY: writing the hwaddr member of the union we own.
    unsafe {
        ifr.ifr_ifru.ifru_hwaddr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        for (d, s) in ifr.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *d = s as libc::c_char;
        }
    }
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .map_err(|e| Error::iface(ifindex, "open a socket", e))?;
    let req = if add {
        libc::SIOCADDMULTI
    } else {
        libc::SIOCDELMULTI
    };
    // SAFETY: valid ifreq for SIOC{ADD,DEL}MULTI.
    if unsafe { libc::ioctl(s.as_raw_fd(), req, &ifr) } != 0 {
        let e = io::Error::last_os_error();
        // Removing an address that is not there is what we wanted anyway.
        if !add && e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(());
        }
        // EINVAL: the device has no receive filter to program (loopback,
        // tun); it sees every frame anyway.
        if e.raw_os_error() == Some(libc::EINVAL) {
            tracing::debug!(ifindex, "device has no multicast filter");
            return Ok(());
        }
        return Err(Error::iface(ifindex, "change link multicast addresses", e));
    }
    Ok(())
}

/// Membership of an IPv6 solicited-node multicast group on one interface,
/// held by a socket: the kernel sends MLD reports for it (so MLD-snooping
/// switches forward solicitations to us) and programs the NIC filter. Dropping
/// it leaves the group.
#[derive(Debug)]
pub struct SolicitedNodeMembership {
    _sock: OwnedFd,
    /// The group joined.
    pub group: Ipv6Addr,
    /// The interface.
    pub ifindex: u32,
}

/// Joins the solicited-node multicast group of `ip` on `ifindex` (RFC 4861
/// §7.2.1: a node must join it for every address it answers for; without it
/// the NIC may filter the solicitations out before any hook sees them).
pub fn join_solicited_node(ip: Ipv6Addr, ifindex: u32) -> Result<SolicitedNodeMembership> {
    let group = packet::solicited_node(ip);
    let s = socket(libc::AF_INET6, libc::SOCK_DGRAM, 0)
        .map_err(|e| Error::iface(ifindex, "open a socket", e))?;
    set_membership(&s, group, ifindex, true)
        .map_err(|e| Error::iface(ifindex, "join the solicited-node group", e))?;
    Ok(SolicitedNodeMembership {
        _sock: s,
        group,
        ifindex,
    })
}

fn mreq(group: Ipv6Addr, ifindex: u32) -> libc::ipv6_mreq {
    libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    }
}

fn set_membership(fd: &OwnedFd, group: Ipv6Addr, ifindex: u32, join: bool) -> io::Result<()> {
    let m = mreq(group, ifindex);
    let opt = if join {
        libc::IPV6_ADD_MEMBERSHIP
    } else {
        libc::IPV6_DROP_MEMBERSHIP
    };
    // SAFETY: setsockopt with a properly sized ipv6_mreq.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            opt,
            (&m as *const libc::ipv6_mreq).cast(),
            size_of::<libc::ipv6_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Solicited-node group memberships of many announced addresses, shared:
/// one membership per (group, interface) however many addresses map to the
/// group, and a few sockets per interface rather than one per address (a
/// socket's memberships are bounded by `net.core.optmem_max`; when one is
/// full the next is opened).
#[derive(Debug, Default)]
pub struct GroupMemberships {
    sockets: Vec<(u32, OwnedFd)>,
    groups:
        std::collections::HashMap<(Ipv6Addr, u32), (usize, std::collections::BTreeSet<Ipv6Addr>)>,
}

impl GroupMemberships {
    /// Makes sure the solicited-node group of `ip` is joined on `ifindex`.
    pub fn join(&mut self, ip: Ipv6Addr, ifindex: u32) -> Result<()> {
        let group = packet::solicited_node(ip);
        if let Some((_, users)) = self.groups.get_mut(&(group, ifindex)) {
            users.insert(ip);
            return Ok(());
        }
        let mut chosen = None;
        for (i, (idx, fd)) in self.sockets.iter().enumerate() {
            if *idx != ifindex {
                continue;
            }
            match set_membership(fd, group, ifindex, true) {
                Ok(()) => {
                    chosen = Some(i);
                    break;
                }
                // This socket is full; try the next or open one.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM)) => {}
                Err(e) => return Err(Error::iface(ifindex, "join the solicited-node group", e)),
            }
        }
        let i = match chosen {
            Some(i) => i,
            None => {
                let fd = socket(libc::AF_INET6, libc::SOCK_DGRAM, 0)
                    .map_err(|e| Error::iface(ifindex, "open a socket", e))?;
                set_membership(&fd, group, ifindex, true)
                    .map_err(|e| Error::iface(ifindex, "join the solicited-node group", e))?;
                self.sockets.push((ifindex, fd));
                self.sockets.len() - 1
            }
        };
        self.groups
            .insert((group, ifindex), (i, std::iter::once(ip).collect()));
        Ok(())
    }

    /// Forgets `ip`; leaves its group when no other joined address on
    /// `ifindex` needs it. Returns whether the group is now unused.
    pub fn leave(&mut self, ip: Ipv6Addr, ifindex: u32) -> Result<bool> {
        let group = packet::solicited_node(ip);
        let Some((i, users)) = self.groups.get_mut(&(group, ifindex)) else {
            return Ok(true);
        };
        users.remove(&ip);
        if !users.is_empty() {
            return Ok(false);
        }
        let i = *i;
        self.groups.remove(&(group, ifindex));
        if let Some((_, fd)) = self.sockets.get(i) {
            set_membership(fd, group, ifindex, false)
                .map_err(|e| Error::iface(ifindex, "leave the solicited-node group", e))?;
        }
        Ok(true)
    }

    /// Number of (group, interface) memberships held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no membership is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// A raw AF_PACKET socket kept open for sending frames. Opening one per frame is not an
/// option at scale: closing a packet socket waits for an RCU grace period
/// (`synchronize_net` in `packet_release`), milliseconds each, which made 27,000
/// gratuitous ARPs take minutes.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
}

impl FrameSender {
    /// Opens the socket (protocol 0: it receives nothing).
    pub fn new() -> Result<Self> {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map_err(|e| Error::iface(0, "open a packet socket", e))?;
        Ok(Self { fd })
    }

    /// Sends `frame` out of `ifindex` `count` times, back to back.
    pub fn send(&self, ifindex: u32, frame: &[u8], count: u32) -> Result<()> {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            sll.sll_addr[..6].copy_from_slice(dst);
        }
        for _ in 0..count {
            // SAFETY: frame and sll are valid for the duration of the call.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                return Err(Error::iface(
                    ifindex,
                    "send a frame",
                    io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }
}

/// Sends `frame` out of `ifindex` `count` times through a socket opened for the occasion
/// (one-off use; see [`FrameSender`] for many frames).
pub fn send_frame(ifindex: u32, frame: &[u8], count: u32) -> Result<()> {
    FrameSender::new()?.send(ifindex, frame, count)
}

/// `BPF_LINK_DETACH` of `enum bpf_cmd` (linux/bpf.h, Linux 5.9).
const BPF_LINK_DETACH: libc::c_long = 34;

/// Detaches a bpf_link from its hook now (`BPF_LINK_DETACH`), whoever else
/// holds it. Dropping the last reference detaches too, but a bpffs pin's
/// reference goes only after an RCU grace period and a workqueue run, so
/// unpinning alone leaves the program attached for a moment.
pub fn link_detach(link: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    /// `union bpf_attr`'s `link_detach` member.
    #[repr(C)]
    struct LinkDetachAttr {
        link_fd: u32,
    }
    let fd = u32::try_from(link.as_raw_fd())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let attr = LinkDetachAttr { link_fd: fd };
    // SAFETY: bpf(2) reads `size` bytes of a valid, initialised attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &attr as *const LinkDetachAttr,
            size_of::<LinkDetachAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Current CLOCK_MONOTONIC time in nanoseconds: the clock `bpf_ktime_get_ns`
/// reads, so heartbeats written here compare with it in the program.
pub fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime into an owned timespec.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: as above; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
