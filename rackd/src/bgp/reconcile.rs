//! Level-triggered reconciliation of the running speakers towards the rendered
//! [`Desired`] state. Idempotent: calling it again with the same input does nothing.
//! Only what the protocol requires resets a session: a speaker is restarted only when its
//! ASN, router ID, listener or restart time changes; a peer is updated in place (bgpd
//! applies policy-only changes without a reset) and routes are added and removed one by one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bgpd::Speaker;
use bgpd::config::{GracefulRestartConfig, PeerConfig, SpeakerConfig};
use bgpd::policy::{Actions, Policy, PrefixMatch, Statement};
use bgpd_wire::{Family, Origin, PathAttributes};
use ipnet::IpNet;
use tracing::{info, warn};

use super::render::{Desired, Instance, Peer};

/// Reconcile errors: one instance or peer failed; the others were still reconciled.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("BGP instance {instance}: cannot start the speaker")]
    Start {
        instance: String,
        #[source]
        source: bgpd::Error,
    },
    #[error("BGP instance {instance}: peer {peer}")]
    Peer {
        instance: String,
        peer: String,
        #[source]
        source: bgpd::Error,
    },
    #[error("BGP instance {instance}: route {prefix}")]
    Route {
        instance: String,
        prefix: IpNet,
        #[source]
        source: bgpd::Error,
    },
}

/// Node facts the speaker configuration needs beyond the rendering.
#[derive(Debug, Clone, Default)]
pub struct NodeAddrs {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// The node's own address (its Node InternalIP, when configured on this host) per family:
    /// sessions are sourced from it unless an override says otherwise. Left to the kernel,
    /// the source can change under a session (a SLAAC address appearing when the ToR starts
    /// sending router advertisements, as FRR does for extended next hop), and the ToR then
    /// drops the reconnect: the address matches no neighbour and no TCP-MD5 key.
    pub source_v4: Option<Ipv4Addr>,
    pub source_v6: Option<Ipv6Addr>,
}

#[derive(Debug)]
struct Running {
    speaker: Speaker,
    config: SpeakerConfig,
    /// Peer name → what was applied.
    peers: BTreeMap<String, PeerConfig>,
    routes: BTreeSet<IpNet>,
}

/// What the reconciles so far have changed, by kind. A reconcile of unchanged input changes
/// nothing (the reconciler is level-triggered and idempotent), which these counts show.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub speakers_started: u64,
    pub speakers_stopped: u64,
    pub peers_added: u64,
    pub peers_updated: u64,
    pub peers_removed: u64,
    pub routes_added: u64,
    pub routes_removed: u64,
}

/// Owns the speakers, one per BGP instance.
#[derive(Debug, Default)]
pub struct Reconciler {
    running: BTreeMap<String, Running>,
    /// FIB import (off unless the daemon was given a table): every speaker's received best
    /// paths follow into it, and peers' routes are accepted instead of rejected.
    fib: Option<bgpd::fib::FibSync>,
    /// Set after a restart of the daemon (unclean or not): speakers start in graceful
    /// restart "restarting" mode until their first full reconcile.
    restarting: bool,
    applied: Applied,
}

/// What a speaker of `inst` should be started with.
pub fn speaker_config(inst: &Instance, restarting: bool) -> SpeakerConfig {
    let mut c = SpeakerConfig::new(inst.local_asn, inst.router_id);
    if let Some(port) = inst.listen_port {
        c.listen = vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)];
    }
    // Always on at the speaker, whatever the peers say: each peer's own PeerConfig turns the
    // capability on or off and carries its restart time, so enabling graceful restart on one
    // peer, or changing its time, resets that session only and never restarts the speaker.
    // The speaker's time only bounds how long a restart defers our advertisements.
    c.graceful_restart = Some(GracefulRestartConfig {
        restart_time: SPEAKER_RESTART_TIME,
        restarting,
        stale_path_time: 360,
    });
    c
}

/// Cilium's default restart time (`gracefulRestart.restartTimeSeconds`, 120 s).
const SPEAKER_RESTART_TIME: u16 = 120;

/// What bgpd should be told about `peer`.
pub fn peer_config(peer: &Peer, node: &NodeAddrs) -> PeerConfig {
    let mut c = PeerConfig::new(peer.address, peer.peer_asn);
    c.port = peer.peer_port;
    c.hold_time = peer.hold_secs;
    c.keepalive = Some(peer.keepalive_secs);
    c.connect_retry = u16::try_from(peer.connect_retry_secs).unwrap_or(u16::MAX);
    c.source_address = peer.local_address.or(match peer.address {
        // A link-local peer is reached through its interface; let the kernel pick.
        IpAddr::V6(a) if a.is_unicast_link_local() => None,
        IpAddr::V6(_) => node.source_v6.map(IpAddr::V6),
        IpAddr::V4(_) => node.source_v4.map(IpAddr::V4),
    });
    // The override's per-peer localPort: the session's TCP source port (cilium-compat §1.4).
    c.local_port = peer.local_port;
    c.interface = peer
        .interface
        .clone()
        .or_else(|| peer.source_interface.clone());
    c.ttl = Some(peer.ttl);
    c.md5_password = peer
        .password
        .as_ref()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    c.families = peer.families.clone();
    c.extended_next_hop = peer.address.is_ipv6() && c.families.contains(&Family::Ipv4Unicast);
    // Cilium never imports (a global reject-all import policy, cilium-compat §3).
    c.import = Policy::reject_all();
    c.export = Policy {
        statements: peer
            .export
            .iter()
            .map(|e| Statement {
                prefixes: e.prefixes.iter().map(|p| PrefixMatch::exact(*p)).collect(),
                actions: Actions {
                    add_communities: e.communities.clone(),
                    add_large_communities: e.large_communities.clone(),
                    local_pref: e.local_pref,
                    ..Default::default()
                },
            })
            .collect(),
        default_accept: false,
    };
    c.graceful_restart = peer.graceful_restart.is_some();
    c.restart_time = peer.graceful_restart;
    c.next_hop_v4 = node.v4;
    c.next_hop_v6 = node.v6;
    c
}

impl Reconciler {
    /// A reconciler; `restarting` when the previous run left state behind.
    pub fn new(restarting: bool) -> Self {
        Self {
            running: BTreeMap::new(),
            fib: None,
            restarting,
            applied: Applied::default(),
        }
    }

    /// What the reconciles so far have changed.
    pub fn applied(&self) -> Applied {
        self.applied
    }

    /// Install received best paths into the kernel through `fib`.
    pub fn with_fib(mut self, fib: bgpd::fib::FibSync) -> Self {
        self.fib = Some(fib);
        self
    }

    /// The running speakers by instance name.
    pub fn speakers(&self) -> impl Iterator<Item = (&str, &Speaker, u32)> {
        self.running
            .iter()
            .map(|(n, r)| (n.as_str(), &r.speaker, r.config.local_as))
    }

    /// Bring the speakers to `desired`. Returns the errors met; what could be applied was.
    pub async fn reconcile(&mut self, desired: &Desired, node: &NodeAddrs) -> Vec<ReconcileError> {
        let mut errors = Vec::new();
        // Instances that went away or must be restarted.
        let mut stop = Vec::new();
        for (name, run) in &self.running {
            match desired.instances.get(name) {
                None => stop.push(name.clone()),
                Some(inst) => {
                    let want = speaker_config(
                        inst,
                        run.config
                            .graceful_restart
                            .as_ref()
                            .is_some_and(|g| g.restarting),
                    );
                    if want != run.config {
                        stop.push(name.clone());
                    }
                }
            }
        }
        for name in stop {
            if let Some(run) = self.running.remove(&name) {
                info!(instance = %name, "stopping BGP instance");
                self.applied.speakers_stopped += 1;
                if let Err(e) = run.speaker.shutdown().await {
                    warn!(instance = %name, error = %e, "speaker shutdown");
                }
            }
        }
        for (name, inst) in &desired.instances {
            if !self.running.contains_key(name) {
                let config = speaker_config(inst, self.restarting);
                info!(instance = %name, asn = inst.local_asn, router_id = %inst.router_id, "starting BGP instance");
                match Speaker::start(config.clone()).await {
                    Ok(speaker) => {
                        self.applied.speakers_started += 1;
                        if let Some(fib) = &self.fib {
                            match speaker.subscribe().await {
                                Ok(events) => {
                                    let (fib, name) = (fib.clone(), name.clone());
                                    tokio::spawn(async move {
                                        if let Err(e) = bgpd::fib::follow(fib, events).await {
                                            warn!(instance = %name, error = %e, "FIB import stopped");
                                        }
                                    });
                                }
                                Err(e) => {
                                    warn!(instance = %name, error = %e, "FIB import: subscribe")
                                }
                            }
                        }
                        self.running.insert(
                            name.clone(),
                            Running {
                                speaker,
                                config,
                                peers: BTreeMap::new(),
                                routes: BTreeSet::new(),
                            },
                        );
                    }
                    Err(source) => {
                        errors.push(ReconcileError::Start {
                            instance: name.clone(),
                            source,
                        });
                        continue;
                    }
                }
            }
            let self_fib = self.fib.is_some();
            let Some(run) = self.running.get_mut(name) else {
                continue;
            };
            Self::reconcile_instance(
                name,
                inst,
                run,
                node,
                self_fib,
                &mut errors,
                &mut self.applied,
            )
            .await;
        }
        errors
    }

    async fn reconcile_instance(
        name: &str,
        inst: &Instance,
        run: &mut Running,
        node: &NodeAddrs,
        self_fib: bool,
        errors: &mut Vec<ReconcileError>,
        applied: &mut Applied,
    ) {
        // Routes first (added), so a new peer's initial advertisement is complete.
        for prefix in inst.routes.difference(&run.routes.clone()) {
            let attrs = PathAttributes {
                origin: Origin::Igp,
                ..Default::default()
            };
            match run
                .speaker
                .add_local_route(Family::of_prefix(prefix), *prefix, attrs)
                .await
            {
                Ok(()) => {
                    run.routes.insert(*prefix);
                    applied.routes_added += 1;
                }
                Err(source) => errors.push(ReconcileError::Route {
                    instance: name.to_owned(),
                    prefix: *prefix,
                    source,
                }),
            }
        }
        // Peers.
        let gone: Vec<String> = run
            .peers
            .keys()
            .filter(|n| !inst.peers.contains_key(*n))
            .cloned()
            .collect();
        for peer in gone {
            if let Some(cfg) = run.peers.remove(&peer) {
                info!(instance = %name, %peer, "removing BGP peer");
                applied.peers_removed += 1;
                if let Err(source) = run.speaker.remove_peer(cfg.address).await {
                    errors.push(ReconcileError::Peer {
                        instance: name.to_owned(),
                        peer,
                        source,
                    });
                }
            }
        }
        for (pname, peer) in &inst.peers {
            let mut want = peer_config(peer, node);
            if self_fib {
                want.import = Policy::accept_all();
            }
            let result = match run.peers.get(pname) {
                Some(have) if *have == want => continue,
                Some(have) if have.address != want.address => {
                    // A new address is a different neighbour.
                    let _ = run.speaker.remove_peer(have.address).await;
                    applied.peers_removed += 1;
                    applied.peers_added += 1;
                    run.speaker.add_peer(want.clone()).await
                }
                Some(_) => {
                    applied.peers_updated += 1;
                    run.speaker.update_peer(want.clone()).await
                }
                None => {
                    info!(instance = %name, peer = %pname, address = %want.address, "adding BGP peer");
                    applied.peers_added += 1;
                    run.speaker.add_peer(want.clone()).await
                }
            };
            match result {
                Ok(()) => {
                    run.peers.insert(pname.clone(), want);
                }
                Err(source) => errors.push(ReconcileError::Peer {
                    instance: name.to_owned(),
                    peer: pname.clone(),
                    source,
                }),
            }
        }
        // Routes that are no longer wanted, last, so peers see withdrawals only once.
        for prefix in run.routes.clone().difference(&inst.routes) {
            match run
                .speaker
                .remove_local_route(Family::of_prefix(prefix), *prefix)
                .await
            {
                Ok(()) => {
                    run.routes.remove(prefix);
                    applied.routes_removed += 1;
                }
                Err(source) => errors.push(ReconcileError::Route {
                    instance: name.to_owned(),
                    prefix: *prefix,
                    source,
                }),
            }
        }
    }

    /// After the first full reconcile: tell restarting speakers their routes are complete
    /// (graceful restart End-of-RIB, RFC 4724 §4.1).
    pub async fn set_ready(&mut self) {
        if !self.restarting {
            return;
        }
        for (name, run) in &self.running {
            if let Err(e) = run.speaker.set_ready().await {
                warn!(instance = %name, error = %e, "set_ready");
            }
        }
        self.restarting = false;
    }

    /// The first full reconcile is done: FIB routes adopted from a previous run that were not
    /// learnt again can go.
    pub async fn fib_sync_done(&self) {
        if let Some(fib) = &self.fib
            && let Err(e) = fib.sync_done().await
        {
            warn!(error = %e, "FIB sync_done");
        }
    }

    /// Stop every speaker.
    pub async fn shutdown(&mut self) {
        for (name, run) in std::mem::take(&mut self.running) {
            if let Err(e) = run.speaker.shutdown().await {
                warn!(instance = %name, error = %e, "speaker shutdown");
            }
        }
    }
}
