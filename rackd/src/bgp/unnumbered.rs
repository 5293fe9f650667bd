//! BGP unnumbered (`autoDiscovery.mode: Unnumbered`, the shape of Cilium's pull request
//! cilium#47394): a peer given by interface, reached at the link-local address of the router
//! on the other end, with IPv4 carried over the IPv6 session (RFC 8950).
//!
//! One task per interface some ClusterConfig peers over ([`interfaces`]): it announces this
//! node with Router Advertisements of lifetime 0 (the router learns our link-local address from
//! them, as FRR's `neighbor IFACE interface` does) and solicits the router (Router Solicitation,
//! echo to all-routers), every second until it is heard and every 10 s after. What was heard
//! is merged into the renderer's [`HostInfo`] (`link_neighbours`), so the BGP controller
//! renders the peer at that address and re-renders when it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use rackd_model::Snapshot;
use rackd_model::cilium::AutoDiscoveryMode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::render::HostInfo;
use crate::config::ConfigState;

/// Probing interval before the router was heard, and after.
const SEARCHING: Duration = Duration::from_secs(1);
const KEEPALIVE: Duration = Duration::from_secs(10);

/// The interfaces some ClusterConfig peer is unnumbered over (`autoDiscovery.unnumbered`, or
/// the peer's `peerInterface`).
pub fn interfaces(snap: &Snapshot) -> BTreeSet<String> {
    snap.bgp_cluster_configs()
        .flat_map(|cc| cc.spec.bgp_instances.iter())
        .flat_map(|i| i.peers.iter())
        .filter_map(|p| {
            let ad = p.auto_discovery.as_ref()?;
            if ad.mode != AutoDiscoveryMode::Unnumbered {
                return None;
            }
            ad.unnumbered
                .as_ref()
                .map(|u| u.interface.clone())
                .or_else(|| p.peer_interface.clone())
        })
        .collect()
}

/// Starts the discovery; returns the host facts with `link_neighbours` filled in.
pub fn spawn(
    config: watch::Receiver<Arc<ConfigState>>,
    mut host: watch::Receiver<Arc<HostInfo>>,
    stop: CancellationToken,
) -> (watch::Receiver<Arc<HostInfo>>, JoinHandle<()>) {
    let first = host.borrow().clone();
    let (out_tx, out) = watch::channel(first);
    let (heard_tx, mut heard) = watch::channel(BTreeMap::<String, Ipv6Addr>::new());
    let heard_tx = Arc::new(heard_tx);
    let task = tokio::spawn(async move {
        let mut config = config;
        let mut probers: BTreeMap<String, CancellationToken> = BTreeMap::new();
        loop {
            // Interfaces wanted now: start and stop probers.
            let want = interfaces(&config.borrow().snapshot);
            probers.retain(|name, tok| {
                let keep = want.contains(name);
                if !keep {
                    tok.cancel();
                    heard_tx.send_modify(|m| {
                        m.remove(name);
                    });
                }
                keep
            });
            for name in &want {
                if !probers.contains_key(name) {
                    let tok = stop.child_token();
                    tokio::spawn(probe_link(name.clone(), heard_tx.clone(), tok.clone()));
                    probers.insert(name.clone(), tok);
                }
            }
            // Publish the host facts with what was heard.
            let mut merged = (**host.borrow()).clone();
            merged.link_neighbours = heard.borrow().clone();
            out_tx.send_if_modified(|cur| {
                let changed = **cur != merged;
                if changed {
                    *cur = Arc::new(merged);
                }
                changed
            });
            tokio::select! {
                () = stop.cancelled() => return,
                r = config.changed() => if r.is_err() { return },
                r = host.changed() => if r.is_err() { return },
                r = heard.changed() => if r.is_err() { return },
            }
        }
    });
    (out, task)
}

/// One interface's prober: open the socket (retrying while the interface is missing), then
/// announce and solicit, recording the router's link-local address.
async fn probe_link(
    name: String,
    heard: Arc<watch::Sender<BTreeMap<String, Ipv6Addr>>>,
    stop: CancellationToken,
) {
    let mut prober = loop {
        let opened = nix::net::if_::if_nametoindex(name.as_str())
            .map_err(std::io::Error::from)
            .and_then(|ifindex| rackd_host::nd::LinkProber::open(&name, ifindex));
        match opened {
            Ok(p) => break p,
            Err(e) => {
                warn!(interface = %name, error = %e, "unnumbered BGP: cannot probe the link yet");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(SEARCHING) => {}
                }
            }
        }
    };
    let mut known: Option<Ipv6Addr> = None;
    loop {
        if let Err(e) = prober.probe().await {
            warn!(interface = %name, error = %e, "unnumbered BGP: probe not sent");
        }
        let wait = if known.is_some() {
            KEEPALIVE
        } else {
            SEARCHING
        };
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut deadline => break,
                r = prober.heard() => match r {
                    Ok(ll) if known != Some(ll) => {
                        info!(interface = %name, neighbour = %ll, "unnumbered BGP: router found");
                        known = Some(ll);
                        heard.send_modify(|m| {
                            m.insert(name.clone(), ll);
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(interface = %name, error = %e, "unnumbered BGP: receive failed");
                        break;
                    }
                },
            }
        }
    }
}
