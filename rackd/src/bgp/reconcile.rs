//! Level-triggered reconciliation of the running speakers towards the rendered
//! [`Desired`] state. Idempotent: calling it again with the same input does nothing.
//! Only what the protocol requires resets a session: a speaker is restarted only when its
//! ASN, router ID, listener or restart time changes; a peer is updated in place (bgpd
//! applies policy-only changes without a reset).
//!
//! Incremental: the reconciler keeps what it applied and works on the difference. Routes are
//! added and removed in batches of exactly the prefixes that changed; a peer whose session
//! settings are unchanged gets an export patch of exactly the prefixes whose decision
//! changed (`Speaker::patch_export`), so one Service among 27,000 costs one route and one
//! prefix per peer, not a policy of 27,000 statements.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bgpd::Speaker;
use bgpd::config::{GracefulRestartConfig, PeerConfig, SpeakerConfig};
use bgpd::policy::{Actions, ExportPatch, Policy, PrefixMatch, Statement};
use bgpd_wire::{Origin, PathAttributes};
use ipnet::IpNet;
use tracing::{info, warn};

use super::render::{Desired, ExportPolicy, Exports, Instance, Peer, Routes};

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
    #[error("BGP instance {instance}: {count} route(s) from {first}")]
    Routes {
        instance: String,
        first: IpNet,
        count: usize,
        #[source]
        source: bgpd::Error,
    },
    #[error("BGP instance {instance}: BMP collectors")]
    Bmp {
        instance: String,
        #[source]
        source: bgpd::Error,
    },
}

impl ReconcileError {
    /// The BGP instance it concerns.
    pub fn instance(&self) -> &str {
        match self {
            ReconcileError::Start { instance, .. }
            | ReconcileError::Peer { instance, .. }
            | ReconcileError::Routes { instance, .. }
            | ReconcileError::Bmp { instance, .. } => instance,
        }
    }
}

/// Node facts the speaker configuration needs beyond the rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// A peer as applied: its session settings (export aside) and the exports they were sent
/// with.
#[derive(Debug, Clone)]
struct AppliedPeer {
    session: PeerConfig,
    export: Exports,
}

#[derive(Debug)]
struct Running {
    speaker: Arc<Speaker>,
    config: SpeakerConfig,
    /// Peer name → what was applied.
    peers: BTreeMap<String, AppliedPeer>,
    routes: Routes,
    /// BMP collectors as last given to the speaker.
    bmp: Vec<bgpd::BmpServerConfig>,
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
    /// Export patches sent (a peer whose only change is what it exports).
    pub exports_patched: u64,
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

/// The actions of one export policy.
fn actions(p: &ExportPolicy) -> Actions {
    Actions {
        add_communities: p.communities.clone(),
        add_large_communities: p.large_communities.clone(),
        local_pref: p.local_pref,
        ..Default::default()
    }
}

/// What bgpd should be told about `peer`'s session, export aside (an empty export policy).
pub fn session_config(peer: &Peer, node: &NodeAddrs, fib: bool) -> PeerConfig {
    let mut c = PeerConfig::new(peer.address, peer.peer_asn);
    let link_local = matches!(peer.address, IpAddr::V6(a) if a.is_unicast_link_local());
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
    c.extended_next_hop =
        peer.address.is_ipv6() && c.families.contains(&bgpd_wire::Family::Ipv4Unicast);
    // Cilium never imports (a global reject-all import policy, cilium-compat §3); with FIB
    // import on, the daemon accepts what the peers send.
    c.import = if fib {
        Policy::accept_all()
    } else {
        Policy::reject_all()
    };
    c.export = Policy::reject_all();
    c.graceful_restart = peer.graceful_restart.is_some();
    c.restart_time = peer.graceful_restart;
    c.bfd = peer.bfd.clone();
    if link_local {
        // Unnumbered (RFC 8950 over a link-local session): the node's addresses are not on
        // the link, so every route goes out with our link-local address on it as next hop,
        // which bgpd takes from the session.
        c.next_hop_v4 = None;
        c.next_hop_v6 = None;
    } else {
        c.next_hop_v4 = node.v4;
        c.next_hop_v6 = node.v6;
    }
    c
}

/// The export policy bgpd runs for `export`: one exact-prefix statement per exported
/// prefix, with the attributes of the first policy carrying it (first match wins, as in
/// Cilium's ordered policies), so single prefixes can later be patched.
pub fn export_policy(export: &Exports) -> Policy {
    Policy {
        statements: export
            .prefixes()
            .filter_map(|p| {
                export.first_for(p).map(|pol| Statement {
                    prefixes: vec![PrefixMatch::exact(*p)],
                    actions: actions(pol),
                })
            })
            .collect(),
        default_accept: false,
    }
}

/// What bgpd should be told about `peer`: its session and its whole export policy.
pub fn peer_config(peer: &Peer, node: &NodeAddrs) -> PeerConfig {
    let mut c = session_config(peer, node, false);
    c.export = export_policy(&peer.export);
    c
}

/// The patch that turns `old` into `new` for bgpd: the prefixes whose deciding policy's
/// attributes changed, appeared or went.
fn export_patch(old: &Exports, new: &Exports) -> ExportPatch {
    let mut set = Vec::new();
    for p in new.changed_prefixes(old) {
        let was = old.first_for(&p).map(actions);
        let now = new.first_for(&p).map(actions);
        if was != now {
            set.push((p, now));
        }
    }
    ExportPatch { set }
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

    /// The running speakers: instance name, speaker, local ASN.
    pub fn speakers(&self) -> impl Iterator<Item = (&str, &Arc<Speaker>, u32)> {
        self.running
            .iter()
            .map(|(n, r)| (n.as_str(), &r.speaker, r.config.local_as))
    }

    /// Brings the speakers to `desired`. Returns the errors met; what could be applied was.
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
                match self.start(name, inst).await {
                    Ok(run) => {
                        self.running.insert(name.clone(), run);
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
            let fib = self.fib.is_some();
            let Some(run) = self.running.get_mut(name) else {
                continue;
            };
            reconcile_instance(name, inst, run, node, fib, &mut errors, &mut self.applied).await;
            if run.bmp != inst.bmp {
                match run.speaker.set_bmp(inst.bmp.clone()).await {
                    Ok(()) => run.bmp = inst.bmp.clone(),
                    Err(source) => errors.push(ReconcileError::Bmp {
                        instance: name.clone(),
                        source,
                    }),
                }
            }
        }
        errors
    }

    async fn start(&mut self, name: &str, inst: &Instance) -> Result<Running, bgpd::Error> {
        let config = speaker_config(inst, self.restarting);
        info!(instance = %name, asn = inst.local_asn, router_id = %inst.router_id, "starting BGP instance");
        let speaker = Speaker::start(config.clone()).await?;
        self.applied.speakers_started += 1;
        if let Some(fib) = &self.fib {
            match speaker.subscribe().await {
                Ok(events) => {
                    let (fib, name) = (fib.clone(), name.to_owned());
                    tokio::spawn(async move {
                        if let Err(e) = bgpd::fib::follow(fib, events).await {
                            warn!(instance = %name, error = %e, "FIB import stopped");
                        }
                    });
                }
                Err(e) => warn!(instance = %name, error = %e, "FIB import: subscribe"),
            }
        }
        Ok(Running {
            speaker: Arc::new(speaker),
            config,
            peers: BTreeMap::new(),
            routes: Routes::new(),
            bmp: Vec::new(),
        })
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

async fn reconcile_instance(
    name: &str,
    inst: &Instance,
    run: &mut Running,
    node: &NodeAddrs,
    fib: bool,
    errors: &mut Vec<ReconcileError>,
    applied: &mut Applied,
) {
    let route_err = |first: IpNet, count: usize, source| ReconcileError::Routes {
        instance: name.to_owned(),
        first,
        count,
        source,
    };
    // Routes first (added), so a new peer's initial advertisement is complete.
    let (added, removed) = route_changes(&run.routes, &inst.routes);
    let mut route_failed = false;
    if let Some(first) = added.first().copied() {
        let batch: Vec<(IpNet, PathAttributes)> = added
            .iter()
            .map(|p| {
                (
                    *p,
                    PathAttributes {
                        origin: Origin::Igp,
                        ..Default::default()
                    },
                )
            })
            .collect();
        match run.speaker.add_local_routes(batch).await {
            Ok(()) => {
                for p in &added {
                    run.routes.insert(*p, 1);
                }
                applied.routes_added += added.len() as u64;
            }
            Err(source) => {
                route_failed = true;
                errors.push(route_err(first, added.len(), source));
            }
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
        if let Some(have) = run.peers.remove(&peer) {
            info!(instance = %name, %peer, "removing BGP peer");
            applied.peers_removed += 1;
            if let Err(source) = run.speaker.remove_peer(have.session.address).await {
                errors.push(ReconcileError::Peer {
                    instance: name.to_owned(),
                    peer,
                    source,
                });
            }
        }
    }
    for (pname, peer) in &inst.peers {
        let session = session_config(peer, node, fib);
        let full = |s: &PeerConfig| {
            let mut c = s.clone();
            c.export = export_policy(&peer.export);
            c
        };
        let result = match run.peers.get(pname) {
            Some(have) if have.session == session => {
                if have.export.ptr_eq(&peer.export) || have.export == peer.export {
                    continue;
                }
                let patch = export_patch(&have.export, &peer.export);
                if patch.set.is_empty() {
                    Ok(())
                } else {
                    applied.exports_patched += 1;
                    run.speaker.patch_export(session.address, patch).await
                }
            }
            Some(have) if have.session.address != session.address => {
                // A new address is a different neighbour.
                let _ = run.speaker.remove_peer(have.session.address).await;
                applied.peers_removed += 1;
                applied.peers_added += 1;
                run.speaker.add_peer(full(&session)).await
            }
            Some(_) => {
                applied.peers_updated += 1;
                run.speaker.update_peer(full(&session)).await
            }
            None => {
                info!(instance = %name, peer = %pname, address = %session.address, "adding BGP peer");
                applied.peers_added += 1;
                run.speaker.add_peer(full(&session)).await
            }
        };
        match result {
            Ok(()) => {
                run.peers.insert(
                    pname.clone(),
                    AppliedPeer {
                        session,
                        export: peer.export.clone(),
                    },
                );
            }
            Err(source) => errors.push(ReconcileError::Peer {
                instance: name.to_owned(),
                peer: pname.clone(),
                source,
            }),
        }
    }
    // Routes that are no longer wanted, last, so peers see withdrawals only once.
    if let Some(first) = removed.first().copied() {
        match run.speaker.remove_local_routes(removed.clone()).await {
            Ok(()) => {
                for p in &removed {
                    run.routes.remove(p);
                }
                applied.routes_removed += removed.len() as u64;
            }
            Err(source) => {
                route_failed = true;
                errors.push(route_err(first, removed.len(), source));
            }
        }
    }
    // Everything applied: keep the desired map itself, so the next diff skips what the two
    // share and costs only what changes.
    if !route_failed {
        run.routes = inst.routes.clone();
    }
}

/// Prefixes in `want` and not in `have`, and the other way round, in O(changes) when
/// `want` was derived from `have`.
fn route_changes(have: &Routes, want: &Routes) -> (Vec<IpNet>, Vec<IpNet>) {
    use imbl::ordmap::DiffItem;
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for d in have.diff(want) {
        match d {
            DiffItem::Add(p, _) => added.push(*p),
            DiffItem::Remove(p, _) => removed.push(*p),
            // A refcount change: the route stays.
            DiffItem::Update { .. } => {}
        }
    }
    (added, removed)
}
