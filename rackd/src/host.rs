//! Host facts for the controllers, from the host layer (`rackd-host`): one monitor of the
//! kernel's links, addresses and default routes, turned into what each controller reads.
//!
//! - [`HostInfo`] (interface addresses, default gateways) for the BGP renderer;
//! - the device list ([`Device`]) for L2 announcements;
//! - every link up/down change, at once, to whoever registered ([`HostFacts::on_link`]): the
//!   L2 ownership task gives an announcing link's addresses up within milliseconds of carrier
//!   loss (Cilium #35507), without waiting for a reconcile.
//!
//! Each is published through a `watch` channel only when it changed, so a new address on an
//! unrelated interface wakes the BGP controller but not L2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use rackd_host::{Host, HostError, HostState, HostWatch, LinkChange, MonitorConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::bgp::render::HostInfo;
use crate::l2::desired::Device;

/// A link up/down listener: `(ifindex, up)`.
pub type LinkListener = Box<dyn FnMut(u32, bool) + Send>;

type Listeners = Arc<Mutex<Vec<LinkListener>>>;

/// The running host layer.
pub struct HostFacts {
    watch: HostWatch,
    info: watch::Receiver<Arc<HostInfo>>,
    devices: watch::Receiver<Arc<[Device]>>,
    listeners: Listeners,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for HostFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFacts")
            .field("info", &*self.info.borrow())
            .finish_non_exhaustive()
    }
}

/// The renderer's host facts from the host state.
pub fn host_info(s: &HostState) -> HostInfo {
    // The interface with an on-link subnet holding the gateway (a gateway's route is via that
    // interface); a link-local IPv6 gateway matches the fe80::/64 of any link, so the first.
    let via = |gw: Option<IpAddr>| {
        let gw = gw?;
        s.addresses
            .iter()
            .find(|a| a.addr.contains(&gw))
            .and_then(|a| s.links.get(&a.ifindex))
            .map(|l| l.name.clone())
    };
    HostInfo {
        interfaces: s.interfaces(),
        default_gateway_v4: s.default_gateways.v4,
        default_gateway_v6: s.default_gateways.v6,
        default_interface_v4: via(s.default_gateways.v4),
        default_interface_v6: via(s.default_gateways.v6),
        // Filled in by the unnumbered discovery (`bgp::unnumbered`), which merges it.
        link_neighbours: Default::default(),
    }
}

/// L2's device list from the host state, by interface index.
pub fn devices(s: &HostState) -> Vec<Device> {
    s.links
        .values()
        .map(|l| Device {
            name: l.name.clone(),
            ifindex: l.ifindex,
            ether: l.is_ether(),
            loopback: l.is_loopback(),
            up: l.is_up(),
        })
        .collect()
}

impl HostFacts {
    /// Starts the monitor on `host` (the kernel, or a fake in tests).
    pub async fn start(host: &impl Host) -> Result<Self, HostError> {
        let listeners: Listeners = Arc::default();
        let l = listeners.clone();
        let watch = host
            .watch(
                MonitorConfig::default(),
                Box::new(move |c: &LinkChange| {
                    for f in l.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
                        f(c.ifindex, c.up && !c.removed);
                    }
                }),
            )
            .await?;
        let state = watch.state();
        let (info_tx, info) = watch::channel(Arc::new(host_info(&state)));
        let (dev_tx, devs) = watch::channel(Arc::<[Device]>::from(devices(&state)));
        let mut rx = watch.subscribe();
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update().clone();
                let i = host_info(&s);
                info_tx.send_if_modified(|cur| {
                    let changed = **cur != i;
                    if changed {
                        *cur = Arc::new(i);
                    }
                    changed
                });
                let d = devices(&s);
                dev_tx.send_if_modified(|cur| {
                    let changed = **cur != *d;
                    if changed {
                        *cur = d.into();
                    }
                    changed
                });
            }
        });
        Ok(Self {
            watch,
            info,
            devices: devs,
            listeners,
            task,
        })
    }

    /// The renderer's host facts.
    pub fn info(&self) -> watch::Receiver<Arc<HostInfo>> {
        self.info.clone()
    }

    /// The device list.
    pub fn devices(&self) -> watch::Receiver<Arc<[Device]>> {
        self.devices.clone()
    }

    /// Calls `f(ifindex, up)` for every link now, then at once on every change.
    pub fn on_link(&self, mut f: LinkListener) {
        // Under the listeners' lock, so a change cannot slip between the replay and the
        // registration (it waits, and comes after the replay).
        let mut ls = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for l in self.watch.borrow().links.values() {
            f(l.ifindex, l.is_up());
        }
        ls.push(f);
    }
}

impl Drop for HostFacts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first global unicast address of each family on the host (skipping loopback and
/// link-local), used as next hops when the Node object does not say.
pub fn first_global(h: &HostInfo) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    for (name, ips) in &h.interfaces {
        if name == "lo" {
            continue;
        }
        for ip in ips {
            match ip {
                IpAddr::V4(a) if v4.is_none() && !a.is_loopback() && !a.is_link_local() => {
                    v4 = Some(*a)
                }
                IpAddr::V6(a) if v6.is_none() && !a.is_loopback() && !a.is_unicast_link_local() => {
                    v6 = Some(*a)
                }
                _ => {}
            }
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_host::{Address, FakeHost, Link, LinkKind, Route};

    fn eth(ifindex: u32, name: &str) -> Link {
        Link {
            ifindex,
            name: name.into(),
            kind: LinkKind::Ether,
            admin_up: true,
            lower_up: true,
            mac: None,
            mtu: Some(1500),
        }
    }

    /// Against the fake host: facts, devices and link events follow its changes, and an
    /// unchanged fact wakes nobody.
    #[tokio::test]
    async fn follows_the_host() {
        let host = FakeHost::new();
        host.set_link(eth(2, "eth0"));
        host.set_address(Address::new(2, "10.0.1.2/24".parse().unwrap()));
        host.set_route(Route::new("0.0.0.0/0".parse().unwrap()).via("10.0.1.1".parse().unwrap()));
        let facts = HostFacts::start(&host).await.unwrap();
        let mut info = facts.info();
        let mut devs = facts.devices();
        assert_eq!(
            info.borrow().interfaces["eth0"],
            vec!["10.0.1.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            info.borrow().default_gateway_v4,
            Some("10.0.1.1".parse().unwrap())
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = events.clone();
        facts.on_link(Box::new(move |i, up| e.lock().unwrap().push((i, up))));
        assert_eq!(
            *events.lock().unwrap(),
            vec![(2, true)],
            "current state replayed"
        );

        info.mark_unchanged();
        devs.mark_unchanged();
        host.set_carrier(2, false);
        devs.changed().await.unwrap();
        assert!(!devs.borrow()[0].up);
        assert_eq!(events.lock().unwrap().last(), Some(&(2, false)));
        assert!(
            !info.has_changed().unwrap(),
            "carrier alone changes no address or gateway"
        );

        host.set_address(Address::new(2, "10.0.1.3/24".parse().unwrap()));
        info.changed().await.unwrap();
        assert_eq!(info.borrow().interfaces["eth0"].len(), 2);
    }

    #[test]
    fn first_global_skips_loopback_and_link_local() {
        let mut h = HostInfo::default();
        h.interfaces
            .insert("lo".into(), vec!["127.0.0.1".parse().unwrap()]);
        h.interfaces.insert(
            "eth0".into(),
            vec![
                "169.254.0.1".parse().unwrap(),
                "fe80::1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                "fd00::2".parse().unwrap(),
            ],
        );
        assert_eq!(
            first_global(&h),
            (
                Some("10.0.0.2".parse().unwrap()),
                Some("fd00::2".parse().unwrap())
            )
        );
    }
}
