//! The tunnel device the egress gateway sends through: one collect-metadata ("external")
//! VXLAN device per node, created over rtnetlink. The eBPF programs choose the far end of
//! every packet (`bpf_skb_set_tunnel_key`), so the device has no remote, no VNI of its own and
//! no learning; every node gives it the same MAC, so a decapsulated frame, which carries the
//! sender's idea of that MAC as destination, is addressed to the receiving device.
//!
//! Kept apart from the [`crate::Host`] trait: only the egress gateway's controller creates
//! links, and it does so once at start.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVxlan};

use crate::error::{HostError, Operation};
use crate::types::MacAddr;

/// The device to make sure of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Its name (at most 15 bytes).
    pub name: String,
    /// The UDP port it listens on and sends to (Cilium's tunnel port is 8472).
    pub port: u16,
    /// The MAC every node gives it.
    pub mac: MacAddr,
    /// The MTU; `None` leaves the kernel's (the underlay's minus the 50-byte overhead).
    pub mtu: Option<u32>,
}

fn kernel_error(op: Operation, target: &str, e: rtnetlink::Error) -> HostError {
    match e {
        rtnetlink::Error::NetlinkError(m) => HostError::Kernel {
            op,
            target: target.to_owned(),
            source: std::io::Error::from_raw_os_error(
                m.code
                    .map_or(libc::EIO, |c| c.get().checked_neg().unwrap_or(libc::EIO)),
            ),
        },
        other => HostError::Io {
            op,
            target: target.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// A connection for rtnetlink's own request API (which expects acknowledgements to be
/// consumed, unlike [`crate::netlink`]'s connection); its task ends with the handle.
fn connection(op: Operation) -> Result<rtnetlink::Handle, HostError> {
    let (conn, handle, _) = rtnetlink::new_connection_with_strict_check()
        .map_err(|source| HostError::Socket { op, source })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Whether `msg` is a collect-metadata VXLAN device on `port` with MAC `mac`.
fn matches(msg: &LinkMessage, spec: &VxlanSpec) -> bool {
    let mut kind_ok = false;
    let mut external = false;
    let mut port = None;
    let mut mac_ok = false;
    for a in &msg.attributes {
        match a {
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(InfoKind::Vxlan) => kind_ok = true,
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            for x in v {
                                match x {
                                    InfoVxlan::CollectMetadata(b) => external = *b,
                                    InfoVxlan::Port(p) => port = Some(*p),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            LinkAttribute::Address(a) => mac_ok = a.as_slice() == spec.mac.0,
            _ => {}
        }
    }
    kind_ok && external && port == Some(spec.port) && mac_ok
}

/// The link called `name`, if any.
async fn get(handle: &rtnetlink::Handle, name: &str) -> Result<Option<LinkMessage>, HostError> {
    let mut s = handle.link().get().match_name(name.to_owned()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        // No such device.
        Err(rtnetlink::Error::NetlinkError(m))
            if m.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
        {
            Ok(None)
        }
        Err(e) => Err(kernel_error(Operation::DumpLinks, name, e)),
    }
}

/// Makes sure the device exists as `spec` says and is up, and returns its ifindex. A link of
/// that name that is not such a device (another kind, another port or MAC: a previous
/// version's, or an operator's) is replaced: the name is rackd's.
pub async fn ensure_vxlan(spec: &VxlanSpec) -> Result<u32, HostError> {
    let handle = connection(Operation::LinkAdd)?;
    if let Some(m) = get(&handle, &spec.name).await? {
        if matches(&m, spec) {
            let index = m.header.index;
            handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| kernel_error(Operation::LinkSet, &spec.name, e))?;
            return Ok(index);
        }
        tracing::warn!(device = %spec.name, "replacing a link that is not rackd's tunnel device");
        handle
            .link()
            .del(m.header.index)
            .execute()
            .await
            .map_err(|e| kernel_error(Operation::LinkDel, &spec.name, e))?;
    }
    let mut b = LinkMessageBuilder::<LinkVxlan>::new(&spec.name)
        .collect_metadata(true)
        .port(spec.port)
        .learning(false)
        .address(spec.mac.0.to_vec())
        .up();
    if let Some(mtu) = spec.mtu {
        b = b.mtu(mtu);
    }
    handle
        .link()
        .add(b.build())
        .execute()
        .await
        .map_err(|e| kernel_error(Operation::LinkAdd, &spec.name, e))?;
    let m = get(&handle, &spec.name)
        .await?
        .ok_or_else(|| HostError::Io {
            op: Operation::LinkAdd,
            target: spec.name.clone(),
            source: std::io::Error::other("the new device is not there"),
        })?;
    Ok(m.header.index)
}

/// Deletes the link called `name`; `false` when there was none.
pub async fn delete_link(name: &str) -> Result<bool, HostError> {
    let handle = connection(Operation::LinkDel)?;
    let Some(m) = get(&handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(m.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
        {
            Ok(false)
        }
        Err(e) => Err(kernel_error(Operation::LinkDel, name, e)),
    }
}

/// Sets `net.ipv4.conf.<device>.rp_filter` to 2 (loose): packets arriving through the tunnel
/// have sources (remote pods, remote servers) the device has no route back to, and the
/// effective value is the larger of the device's and `all`'s, so loose mode holds even on a
/// host whose `all` is strict (1).
pub fn loose_rp_filter(device: &str) -> Result<(), HostError> {
    if device.is_empty() || device.contains('/') || device.contains("..") {
        return Err(HostError::Io {
            op: Operation::Sysctl,
            target: device.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    let path = format!("/proc/sys/net/ipv4/conf/{device}/rp_filter");
    std::fs::write(&path, "2").map_err(|source| HostError::Io {
        op: Operation::Sysctl,
        target: path,
        source,
    })
}
