//! Helpers shared by the datapath tests: unique pin folders that clean up
//! after themselves even when a test panics. Namespaces come from `netlab`.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use aya::programs::{SchedClassifier, TcAttachType};
pub use netlab::{EnteredNetns, Netns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin folder under /sys/fs/bpf removed (with everything pinned in it)
/// on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> Self {
        PinDir(PathBuf::from("/sys/fs/bpf").join(unique("rackd-dptest")))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = datapath::uninstall(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `argv` in `ns` whatever its exit status.
pub fn try_exec(ns: &Netns, argv: &[&str]) -> Output {
    ns.command(argv).output().unwrap()
}

pub const VIP4: &str = "192.0.2.10";
pub const VIP6: &str = "2001:db8::10";

/// Two namespaces joined by a veth: `va` in `node`, `vb` (192.0.2.1,
/// 2001:db8::1) in `client`. Fields drop in order.
pub struct Lab {
    pub client: Netns,
    pub node: Netns,
    pub dir: PinDir,
}

impl Lab {
    pub fn new() -> Self {
        let dir = PinDir::new();
        let node = Netns::new("dp-node").unwrap();
        let client = Netns::new("dp-cli").unwrap();
        netlab::veth(&node, "va", &client, "vb").unwrap();
        client.addr_add("vb", "192.0.2.1/24").unwrap();
        client.addr_add("vb", "2001:db8::1/64").unwrap();
        Lab { client, node, dir }
    }

    /// MAC that `arping` saw answering VIP4, if any.
    pub fn arping(&self) -> Option<String> {
        let o = try_exec(
            &self.client,
            &[
                "arping", "-c", "3", "-C", "1", "-w", "3", "-i", "vb", "-r", VIP4,
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout).trim().to_lowercase();
        (o.status.success() && !out.is_empty()).then_some(out)
    }

    /// MAC that `ndisc6` saw answering VIP6, if any.
    pub fn ndisc6(&self) -> Option<String> {
        let o = try_exec(
            &self.client,
            &["ndisc6", "-q", "-r", "3", "-w", "500", VIP6, "vb"],
        );
        let out = String::from_utf8_lossy(&o.stdout).trim().to_lowercase();
        (o.status.success() && !out.is_empty()).then_some(out)
    }
}

pub fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn vip4() -> IpAddr {
    IpAddr::V4(VIP4.parse::<Ipv4Addr>().unwrap())
}
pub fn vip6() -> IpAddr {
    IpAddr::V6(VIP6.parse::<Ipv6Addr>().unwrap())
}

pub fn tcx_programs(ifname: &str) -> usize {
    SchedClassifier::query_tcx(ifname, TcAttachType::Ingress)
        .unwrap()
        .1
        .len()
}
