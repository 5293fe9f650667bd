//! The daemon proper: one controller task that reads configuration, keeps the last good
//! snapshot, renders and reconciles; the admin socket and metrics endpoint beside it.
//!
//! ```text
//!  ConfigSource (DirSource) ──(whole document set on change)──▶ parse + last-good merge ──▶ Snapshot
//!                                                                             │
//!  resync tick (host facts, counters) ─────────────────────────────▶ render ─┴▶ BGP reconciler ─▶ bgpd speakers
//!  admin socket ◀── queries (peers, routes, policies, status) ── Shared state
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bgpd::query::{RibKind, RouteQuery};
use bgpd_wire::Family;
use rackd_api::{Reply, Request};
use rackd_model::{CheckOptions, Snapshot, parse_documents};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::bgp::reconcile::{NodeAddrs, Reconciler};
use crate::bgp::render::{self, Desired, RenderInput};
use crate::host;
use crate::lbipam_ctl::LbController;
use crate::metrics::{Metrics, PeerFamilyLabels, PeerLabels, PoolLabels};
use crate::sdnotify::Notifier;
use crate::source::{ConfigSource, DirSource};
use crate::state;
use crate::views;

/// How the daemon is run.
#[derive(Debug, Clone)]
pub struct Options {
    pub node_name: String,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    /// How often the configuration directory is polled.
    pub poll_interval: Duration,
    /// How often host facts and counters are refreshed and everything re-reconciled.
    pub resync_interval: Duration,
    /// Namespace of BGP auth Secrets (Cilium `--bgp-secrets-namespace`).
    pub bgp_secrets_namespace: String,
    /// Install received best paths into this routing table (protocol bgp). `None`: no
    /// import, as in Cilium.
    pub fib_table: Option<u32>,
    /// L2 announcements (`None`: off, as Cilium's `--enable-l2-announcements=false`).
    pub l2: Option<crate::l2::L2Options>,
}

/// Fatal daemon errors (start-up only; at run time errors are reported and survived).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("admin socket")]
    Admin(#[from] admin::AdminError),
    #[error("state directory")]
    State(#[from] state::StateError),
    #[error("FIB import")]
    Fib(#[from] bgpd::fib::FibError),
    #[error("L2 announcements")]
    L2(#[from] crate::l2::L2Error),
    #[error("metrics endpoint {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the configuration looks like now, for `rackctl status`.
#[derive(Debug, Default)]
struct ConfigView {
    generation: u64,
    errors: Vec<String>,
    objects: Vec<(String, usize)>,
    desired: Desired,
    /// The last BGP reconcile's errors.
    bgp_errors: Vec<String>,
}

/// State shared between the controller task and the admin socket.
#[derive(Debug)]
pub struct Shared {
    node: String,
    started: Instant,
    config_source: String,
    view: RwLock<ConfigView>,
    bgp: tokio::sync::Mutex<Reconciler>,
    lb: std::sync::Mutex<LbController>,
    metrics: Arc<Metrics>,
    /// Query handle of the L2 ownership task, when L2 announcements are on.
    l2: Option<l2announcer::node::NodeSender>,
    /// L2 policy problems of the last pass.
    l2_problems: std::sync::Mutex<Vec<String>>,
}

fn read_view<T>(s: &Shared, f: impl FnOnce(&ConfigView) -> T) -> T {
    f(&s.view.read().unwrap_or_else(|e| e.into_inner()))
}

impl Shared {
    fn lb(&self) -> std::sync::MutexGuard<'_, LbController> {
        self.lb.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn bgp_peers(&self) -> Vec<rackd_api::BgpPeer> {
        let desired = read_view(self, |v| v.desired.clone());
        let bgp = self.bgp.lock().await;
        let mut out = Vec::new();
        for (inst, speaker, asn) in bgp.speakers() {
            let Ok(peers) = speaker.peers().await else {
                continue;
            };
            let names: BTreeMap<IpAddr, &render::Peer> = desired
                .instances
                .get(inst)
                .map(|i| i.peers.values().map(|p| (p.address, p)).collect())
                .unwrap_or_default();
            for p in peers {
                out.push(views::bgp_peer(asn, &p, names.get(&p.address).copied()));
            }
        }
        out
    }

    async fn bgp_routes(
        &self,
        table: &str,
        afi: &str,
        neighbor: Option<&str>,
        router_asn: Option<u32>,
    ) -> Result<Vec<rackd_api::BgpRoute>, String> {
        let Some(family) = Family::from_names(afi, "unicast") else {
            return Err(format!("unsupported afi {afi:?}: expected ipv4 or ipv6"));
        };
        let peer: Option<IpAddr> = match neighbor {
            None => None,
            Some(n) => Some(
                n.parse()
                    .map_err(|_| format!("invalid neighbor {n:?}: expected an IP address"))?,
            ),
        };
        let rib = match (table, peer) {
            ("loc-rib", None) => RibKind::LocRib,
            ("loc-rib", Some(_)) => return Err("neighbor is not allowed for loc-rib".into()),
            ("adj-rib-in", Some(p)) => RibKind::AdjRibIn(p),
            ("adj-rib-out", Some(p)) => RibKind::AdjRibOut(p),
            ("adj-rib-in" | "adj-rib-out", None) => {
                return Err(format!("{table} needs a neighbor"));
            }
            (t, _) => {
                return Err(format!(
                    "unknown table {t:?}: expected loc-rib, adj-rib-in or adj-rib-out"
                ));
            }
        };
        let bgp = self.bgp.lock().await;
        let mut out = Vec::new();
        for (_, speaker, asn) in bgp.speakers() {
            if router_asn.is_some_and(|a| a != asn) {
                continue;
            }
            let routes = match speaker.routes(RouteQuery { family, rib }).await {
                Ok(r) => r,
                // A neighbour of another instance.
                Err(_) if peer.is_some() => continue,
                Err(e) => return Err(e.to_string()),
            };
            out.extend(views::bgp_routes(asn, family, peer, &routes));
        }
        Ok(out)
    }

    fn route_policies(&self, router_asn: Option<u32>) -> Vec<rackd_api::BgpRoutePolicy> {
        read_view(self, |v| views::route_policies(&v.desired, router_asn))
    }

    async fn status(&self) -> rackd_api::Status {
        let (generation, errors, objects, instances) = read_view(self, |v| {
            (
                v.generation,
                v.errors.clone(),
                v.objects.clone(),
                v.desired.instances.len(),
            )
        });
        let peers = self.bgp_peers().await;
        let mut errors = errors;
        errors.extend(self.lb().problems.iter().cloned());
        errors.extend(
            self.l2_problems
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        rackd_api::Status {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            config_source: self.config_source.clone(),
            config_generation: generation,
            objects,
            config_errors: errors,
            bgp_instances: instances,
            bgp_peers_established: peers
                .iter()
                .filter(|p| p.session_state == "established")
                .count(),
            bgp_peers_total: peers.len(),
        }
    }

    /// Refresh the L2 gauges from the ownership task.
    async fn update_l2_metrics(&self) {
        let Some(l2) = &self.l2 else { return };
        let Some(s) = l2.snapshot().await else { return };
        self.metrics.set_l2(&s);
    }

    /// Refresh the per-peer gauges.
    async fn update_peer_metrics(&self) {
        for p in self.bgp_peers().await {
            let vrouter = p.local_asn.to_string();
            self.metrics
                .session_established
                .get_or_create(&PeerLabels {
                    vrouter: vrouter.clone(),
                    peer: p.peer_address.clone(),
                })
                .set(i64::from(p.session_state == "established"));
            for f in &p.families {
                let l = PeerFamilyLabels {
                    vrouter: vrouter.clone(),
                    peer: p.peer_address.clone(),
                    family: format!("{}/{}", f.afi, f.safi),
                };
                self.metrics
                    .prefixes_received
                    .get_or_create(&l)
                    .set(i64::try_from(f.received).unwrap_or(i64::MAX));
                self.metrics
                    .prefixes_advertised
                    .get_or_create(&l)
                    .set(i64::try_from(f.advertised).unwrap_or(i64::MAX));
            }
        }
    }
}

impl admin::Handler for Shared {
    async fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Status => Reply::Status(self.status().await),
            Request::BgpPeers => Reply::BgpPeers(self.bgp_peers().await),
            Request::BgpRoutes {
                table,
                afi,
                safi,
                neighbor,
                router_asn,
            } => {
                if safi != "unicast" {
                    return Reply::Error(format!("unsupported safi {safi:?}: expected unicast"));
                }
                match self
                    .bgp_routes(&table, &afi, neighbor.as_deref(), router_asn)
                    .await
                {
                    Ok(r) => Reply::BgpRoutes(r),
                    Err(e) => Reply::Error(e),
                }
            }
            Request::BgpRoutePolicies { router_asn } => {
                Reply::BgpRoutePolicies(self.route_policies(router_asn))
            }
            Request::BgpNodeConfig => {
                let peers = self.bgp_peers().await;
                let (desired, errs) =
                    read_view(self, |v| (v.desired.clone(), v.bgp_errors.clone()));
                let mut problems = desired.problems.clone();
                problems.extend(errs);
                Reply::BgpNodeConfig(Box::new(views::node_config(
                    &self.node, &desired, &peers, &problems,
                )))
            }
            Request::LbipamPools => Reply::LbipamPools(self.lb().pool_views()),
            Request::LbipamServices => Reply::LbipamServices(self.lb().service_views()),
            Request::L2Leases | Request::L2Announcements => {
                let Some(l2) = &self.l2 else {
                    return Reply::Error(
                        "L2 announcements are not enabled on this node (--enable-l2-announcements)"
                            .into(),
                    );
                };
                let Some(snap) = l2.snapshot().await else {
                    return Reply::Error("the L2 announcement task has stopped".into());
                };
                if matches!(req, Request::L2Leases) {
                    Reply::L2Leases(crate::l2::lease_views(&snap))
                } else {
                    Reply::L2Announcements(crate::l2::announcement_views(&snap))
                }
            }
        }
    }
}

/// Marker that says a previous run may have left sessions for peers to keep (graceful
/// restart): present while the daemon runs, removed on clean shutdown.
const RUNNING_MARKER: &str = "bgp-running";

/// Run until `stop` is cancelled.
pub async fn run(opts: Options, stop: CancellationToken) -> Result<(), DaemonError> {
    let marker = opts.state_dir.join(RUNNING_MARKER);
    let restarting = state::read(&marker)?.is_some();
    if restarting {
        info!("previous run did not stop cleanly: starting as a graceful-restart speaker");
    }
    state::write_atomic(&marker, std::process::id().to_string().as_bytes())?;

    let lb = LbController::open(&opts.state_dir)?;
    let mut reconciler = Reconciler::new(restarting);
    let mut fib_task = None;
    if let Some(table) = opts.fib_table {
        // Routes left by a previous run stay (stale) until the first full sync.
        let (fib, task) = bgpd::fib::FibSync::spawn(bgpd::fib::FibConfig {
            table,
            ..Default::default()
        })?;
        reconciler = reconciler.with_fib(fib.clone());
        fib_task = Some((fib, task));
        info!(table, "FIB import on");
    }
    let mut l2 = match &opts.l2 {
        Some(o) => Some(crate::l2::L2Controller::start(&opts.node_name, o).await?),
        None => None,
    };
    let metrics = Metrics::new();
    let shared = Arc::new(Shared {
        node: opts.node_name.clone(),
        started: Instant::now(),
        config_source: format!("dir:{}", opts.config_dir.display()),
        view: RwLock::new(ConfigView::default()),
        bgp: tokio::sync::Mutex::new(reconciler),
        lb: std::sync::Mutex::new(lb),
        metrics: metrics.clone(),
        l2: l2.as_ref().map(crate::l2::L2Controller::query),
        l2_problems: std::sync::Mutex::new(Vec::new()),
    });

    let listener = admin::bind(&opts.admin_socket)?;
    let admin_task = tokio::spawn(admin::serve(listener, shared.clone(), stop.clone()));
    let metrics_task = match opts.metrics_addr {
        Some(addr) => {
            // Bind now so a taken port is a start-up error, not a silent absence.
            let probe = std::net::TcpListener::bind(addr)
                .map_err(|source| DaemonError::Metrics { addr, source })?;
            drop(probe);
            Some(tokio::spawn(crate::metrics::serve(
                addr,
                metrics.clone(),
                stop.clone(),
            )))
        }
        None => None,
    };
    info!(node = %opts.node_name, config = %opts.config_dir.display(), "rackd running");

    // A bad NOTIFY_SOCKET is the service manager's problem, not a reason not to route: say so
    // (systemd will then time the start out, naming the unit) and run.
    let notify = Notifier::from_env().unwrap_or_else(|e| {
        error!(error = %e, "cannot notify the service manager");
        None
    });
    let source = DirSource::new(&opts.config_dir, opts.poll_interval);
    controller(source, &opts, &shared, l2.as_mut(), notify.as_ref(), &stop).await;
    tell(notify.as_ref(), "STOPPING=1");

    // Stop answering ARP/NDP and hand the IPs over before anything else goes.
    if let Some(l2) = l2 {
        let report = l2.shutdown().await;
        info!(?report, "L2 announcements handed over");
    }
    shared.bgp.lock().await.shutdown().await;
    if let Some((fib, task)) = fib_task {
        // A clean stop withdraws what we installed; a crash leaves it for the next start.
        let _ = fib.shutdown(false).await;
        let _ = task.await;
    }
    let _ = admin_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&opts.admin_socket);
    let _ = std::fs::remove_file(&marker);
    info!("rackd stopped");
    Ok(())
}

async fn controller(
    mut source: impl ConfigSource,
    opts: &Options,
    shared: &Shared,
    mut l2: Option<&mut crate::l2::L2Controller>,
    notify: Option<&Notifier>,
    stop: &CancellationToken,
) {
    let check = CheckOptions {
        bgp_secrets_namespace: opts.bgp_secrets_namespace.clone(),
    };
    let mut snapshot = Snapshot::default();
    let mut resync = tokio::time::interval(opts.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced_once = false;
    let mut have_config = false;
    let started = Instant::now();
    let mut fib_pending = opts.fib_table.is_some();
    let mut all_up_since: Option<Instant> = None;
    // LB-IPAM depends on nothing but the snapshot: rerun it only when that changed.
    let mut lb_generation = u64::MAX;
    let mut bgp_generation = u64::MAX;
    let mut l2_generation = u64::MAX;
    let mut last_host: Option<crate::bgp::render::HostInfo> = None;
    let mut last_full = Instant::now();
    // Pinged from this loop, so a reconcile that hangs stops the pings.
    let mut watchdog = notify.and_then(|n| n.watchdog).map(tokio::time::interval);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tick(watchdog.as_mut()) => {
                tell(notify, "WATCHDOG=1");
                continue;
            }
            scan = source.next_change() => match scan {
                Ok(scan) => {
                    let t0 = Instant::now();
                    let mut parsed: Vec<_> = scan
                        .files
                        .iter()
                        .map(|f| parse_documents(&f.name, &f.text))
                        .collect();
                    // A file that cannot be read (or is not UTF-8) keeps what it last held:
                    // were it left out, the merge would take it for deleted and withdraw it.
                    parsed.extend(scan.problems.iter().map(|p| {
                        rackd_model::ParsedSource::unreadable(p.name.clone(), p.message.clone())
                    }));
                    let t_parse = t0.elapsed();
                    let out = Snapshot::merge(&snapshot, &parsed, &check);
                    info!(
                        files = scan.files.len(),
                        objects = out.snapshot.len(),
                        errors = out.errors.len(),
                        parse_ms = t_parse.as_millis() as u64,
                        merge_ms = (t0.elapsed() - t_parse).as_millis() as u64,
                        "configuration loaded"
                    );
                    let errors: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
                    for e in &errors {
                        error!(error = %e, "configuration error");
                    }
                    snapshot = out.snapshot;
                    shared.metrics.config_errors.set(i64::try_from(errors.len()).unwrap_or(i64::MAX));
                    shared.metrics.config_applies.inc();
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    for (k, _) in snapshot.iter() {
                        *counts.entry(k.kind.as_str().to_owned()).or_default() += 1;
                    }
                    let mut v = shared.view.write().unwrap_or_else(|e| e.into_inner());
                    v.generation += 1;
                    v.errors = errors;
                    v.objects = counts.into_iter().collect();
                    have_config = true;
                }
                Err(e) => {
                    // Keep running on the last good snapshot.
                    warn!(error = %e, "configuration source unreadable; keeping the last good configuration");
                    let mut v = shared.view.write().unwrap_or_else(|e| e.into_inner());
                    v.errors = vec![format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default())];
                    have_config = true;
                }
            },
            _ = resync.tick() => {}
            () = devices_changed(l2.as_deref_mut()) => l2_generation = u64::MAX,
        }
        if !have_config {
            continue;
        }
        let t0 = Instant::now();
        let generation = read_view(shared, |v| v.generation);
        // A failed pass (state not persisted) is retried on the next tick.
        if generation != lb_generation && reconcile_lbipam(shared, &snapshot) {
            lb_generation = generation;
        }
        let t_lb = t0.elapsed();
        if let Some(l2) = l2.as_deref_mut()
            // After LB-IPAM has run on this generation: its addresses are what L2 announces.
            && ((generation != l2_generation && lb_generation == generation)
                || last_full.elapsed() >= FULL_RESYNC)
        {
            reconcile_l2(shared, l2, &snapshot);
            l2_generation = generation;
        }
        // Rendering is a function of the snapshot and the host facts: redo it when either
        // changed or the last pass failed, and in full every minute anyway to repair drift.
        let host = host::gather();
        if generation != bgp_generation
            || last_host.as_ref() != Some(&host)
            || read_view(shared, |v| !v.bgp_errors.is_empty())
            || last_full.elapsed() >= FULL_RESYNC
        {
            reconcile_bgp(opts, shared, &snapshot, host.clone()).await;
            bgp_generation = generation;
            last_host = Some(host);
            last_full = Instant::now();
        }
        tracing::debug!(
            lbipam_ms = t_lb.as_millis() as u64,
            bgp_ms = (t0.elapsed() - t_lb).as_millis() as u64,
            "reconciled"
        );
        if notify.is_some() {
            let s = shared.status().await;
            let status = format!(
                "STATUS=BGP sessions established {}/{}, objects {}, config errors {}",
                s.bgp_peers_established,
                s.bgp_peers_total,
                s.objects.iter().map(|o| o.1).sum::<usize>(),
                s.config_errors.len()
            );
            if !synced_once {
                // Configuration applied and the admin socket answering: ready.
                tell(notify, &format!("READY=1\n{status}"));
            } else if status != last_status {
                tell(notify, &status);
            }
            last_status = status;
        }
        if !synced_once {
            shared.bgp.lock().await.set_ready().await;
            synced_once = true;
        }
        if fib_pending {
            // Routes adopted from a previous run go only once the peers are back and have
            // had a moment to resend theirs (or after two minutes, whatever happens).
            let peers = shared.bgp_peers().await;
            let up = !peers.is_empty() && peers.iter().all(|p| p.session_state == "established");
            match (up, all_up_since) {
                (true, None) => all_up_since = Some(Instant::now()),
                (false, _) => all_up_since = None,
                _ => {}
            }
            if all_up_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
                || started.elapsed() >= Duration::from_secs(120)
            {
                shared.bgp.lock().await.fib_sync_done().await;
                fib_pending = false;
            }
        }
        shared.update_peer_metrics().await;
        shared.update_l2_metrics().await;
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One message to the service manager, if one asked; a failure is logged, never fatal.
fn tell(notify: Option<&Notifier>, message: &str) {
    if let Some(n) = notify
        && let Err(e) = n.send(message)
    {
        warn!(error = %e, "service manager notification lost");
    }
}

async fn devices_changed(l2: Option<&mut crate::l2::L2Controller>) {
    match l2 {
        Some(l2) => l2.devices_changed().await,
        None => std::future::pending().await,
    }
}

/// One L2 pass: policies and LB-IPAM's addresses to desired groups.
fn reconcile_l2(shared: &Shared, l2: &mut crate::l2::L2Controller, snapshot: &Snapshot) {
    let started = Instant::now();
    let lb_ips = shared.lb().lb_ips();
    l2.reconcile(snapshot, &lb_ips);
    *shared.l2_problems.lock().unwrap_or_else(|e| e.into_inner()) = l2.problems().to_vec();
    shared.metrics.reconciled("l2announcer", started);
}

/// One LB-IPAM pass; false when it failed and must be retried.
fn reconcile_lbipam(shared: &Shared, snapshot: &Snapshot) -> bool {
    let started = Instant::now();
    let mut lb = shared.lb();
    let result = lb.reconcile(snapshot);
    let labels = shared.metrics.reconciled("lbipam", started);
    let ok = match result {
        Ok(()) => true,
        Err(e) => {
            shared.metrics.reconcile_errors.get_or_create(&labels).inc();
            error!(error = %e, cause = ?std::error::Error::source(&e).map(|s| s.to_string()), "LB-IPAM reconcile");
            false
        }
    };
    for (pool, used, available) in lb.pool_counts() {
        let l = PoolLabels { pool };
        shared
            .metrics
            .pool_ips_used
            .get_or_create(&l)
            .set(i64::try_from(used).unwrap_or(i64::MAX));
        shared
            .metrics
            .pool_ips_available
            .get_or_create(&l)
            .set(available);
    }
    ok
}

/// Longest time between two full BGP render-and-reconcile passes when nothing changed.
const FULL_RESYNC: Duration = Duration::from_secs(60);

async fn reconcile_bgp(
    opts: &Options,
    shared: &Shared,
    snapshot: &Snapshot,
    host: crate::bgp::render::HostInfo,
) {
    let started = Instant::now();
    let (h4, h6) = host::first_global(&host);
    let node = snapshot.node(&opts.node_name);
    let from_node = |want_v6: bool| -> Option<IpAddr> {
        node.and_then(|n| n.status.as_ref())
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| {
                a.iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .filter_map(|a| a.address.parse::<IpAddr>().ok())
                    .find(|ip| ip.is_ipv6() == want_v6)
            })
    };
    let on_host = |ip: IpAddr| host.interfaces.values().any(|v| v.contains(&ip));
    let node_v4 = match from_node(false) {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let node_v6 = match from_node(true) {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    };
    let addrs = NodeAddrs {
        v4: node_v4.or(h4),
        v6: node_v6.or(h6),
        source_v4: node_v4.filter(|a| on_host(IpAddr::V4(*a))),
        source_v6: node_v6.filter(|a| on_host(IpAddr::V6(*a))),
    };
    let input = RenderInput {
        node_name: &opts.node_name,
        host,
        lb_ips: shared.lb().lb_ips(),
        secrets_namespace: &opts.bgp_secrets_namespace,
    };
    let desired = render::render(snapshot, &input);
    for p in &desired.problems {
        warn!(problem = %p, "BGP configuration cannot be fully applied");
    }
    let errors = shared.bgp.lock().await.reconcile(&desired, &addrs).await;
    let labels = shared.metrics.reconciled("bgp", started);
    if !errors.is_empty() {
        shared.metrics.reconcile_errors.get_or_create(&labels).inc();
        for e in &errors {
            error!(error = %e, cause = ?std::error::Error::source(e).map(|s| s.to_string()), "BGP reconcile");
        }
    }
    let mut v = shared.view.write().unwrap_or_else(|e| e.into_inner());
    v.desired = desired;
    v.bgp_errors = errors
        .iter()
        .map(|e| match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        })
        .collect();
}
