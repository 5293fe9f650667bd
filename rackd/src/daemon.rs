//! The daemon: the host layer, the configuration task and one task per controller, wired
//! together by `watch` channels; the admin socket, metrics and the service manager beside
//! them.
//!
//! ```text
//!  host layer (rtnetlink monitor) ──▶ HostInfo, devices, link events
//!  ConfigSource (DirSource) ──▶ config task (Store) ──▶ watch<ConfigState>
//!                                                          │
//!          ┌───────────────────────────────────────────────┼─────────────────────┐
//!          ▼                                               ▼                     ▼
//!   LB-IPAM controller ──▶ watch<LbStatus> ──▶ BGP controller (+ HostInfo)   L2 controller (+ devices)
//!   (state file, fsync)                        ──▶ bgpd speakers               ──▶ ownership task ──▶ eBPF
//!                                               peer monitor ──▶ watch<BgpPeers>
//!  admin socket, metrics, sd_notify ◀── read the watches (never a lock a reconcile holds)
//! ```
//!
//! A new controller is a module implementing [`crate::controller::Controller`] and one
//! `controllers.spawn(..)` line in [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rackd_host::NetlinkHost;
use rackd_model::CheckOptions;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::bgp::reconcile::Reconciler;
use crate::bgp::{BgpController, PeerMonitor};
use crate::config::combined::Combined;
use crate::config::dir::DirSource;
use crate::config::{Batch, ConfigSource};
use crate::controller::{Controllers, RunOptions};
use crate::handler::Shared;
use crate::host::HostFacts;
use crate::k8s::KubeSource;
use crate::k8s::lbipam::ClusterLbIpam;
use crate::lbipam_ctl::LbIpamController;
use crate::metrics::Metrics;
use crate::sdnotify::Notifier;
use crate::state;
use crate::svclb::ServiceLbController;
use crate::svclb::maps::DatapathMaps;

/// How the daemon is run.
#[derive(Debug, Clone)]
pub struct Options {
    pub node_name: String,
    /// The configuration directory; `None` with Kubernetes and no `--config-dir`.
    pub config_dir: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    /// How often the configuration directory is polled (besides inotify).
    pub poll_interval: Duration,
    /// Longest time between two full passes of each controller (the safety net).
    pub resync_interval: Duration,
    /// Namespace of BGP auth Secrets (Cilium `--bgp-secrets-namespace`).
    pub bgp_secrets_namespace: String,
    /// Install received best paths into this routing table (protocol bgp). `None`: no
    /// import, as in Cilium.
    pub fib_table: Option<u32>,
    /// L2 announcements (`None`: off, as Cilium's `--enable-l2-announcements=false`).
    pub l2: Option<crate::l2::L2Options>,
    /// The service datapath (`None`: off, as Cilium without kube-proxy replacement).
    pub services: Option<crate::options::ServiceLbOptions>,
    /// The Kubernetes API as a source (`None`: files only).
    pub k8s: Option<crate::k8s::K8sOptions>,
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
    #[error("cannot load or adopt the eBPF service load balancer under {pin_root}")]
    ServiceLb {
        pin_root: PathBuf,
        #[source]
        source: datapath::Error,
    },
    #[error("service load balancer: reading the pinned maps")]
    ServiceLbMaps(#[from] crate::svclb::SvcError),
    #[error("host network state (rtnetlink)")]
    Host(#[from] rackd_host::HostError),
    #[error("cannot set up the egress gateway's tunnel device {device}")]
    EgressTunnel {
        device: &'static str,
        #[source]
        source: rackd_host::HostError,
    },
    #[error("Kubernetes")]
    K8s(#[from] crate::k8s::K8sError),
    #[error("metrics endpoint {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The configuration sources in force: the directory, the API, or both.
#[derive(Debug)]
enum Sources {
    Dir(DirSource),
    Kube(KubeSource),
    Both(Box<Combined<DirSource, KubeSource>>),
}

impl ConfigSource for Sources {
    fn describe(&self) -> String {
        match self {
            Sources::Dir(s) => s.describe(),
            Sources::Kube(s) => s.describe(),
            Sources::Both(s) => s.describe(),
        }
    }

    async fn next(&mut self) -> Batch {
        match self {
            Sources::Dir(s) => s.next().await,
            Sources::Kube(s) => s.next().await,
            Sources::Both(s) => s.next().await,
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
    let metrics = Metrics::new();
    let facts = HostFacts::start(&NetlinkHost::connect()?).await?;

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

    let config_stop = CancellationToken::new();
    // The API client with its options: both or neither.
    let kube = match &opts.k8s {
        Some(k) => Some((crate::k8s::client(k).await?, k)),
        None => None,
    };
    let source = match (&opts.config_dir, &kube) {
        (Some(dir), None) => Sources::Dir(DirSource::new(dir, opts.poll_interval)),
        (dir, Some(((client, server), _))) => {
            let scope = crate::k8s::Scope {
                node_name: opts.node_name.clone(),
                all_pods: opts.services.as_ref().is_some_and(|o| o.egress_gateway),
                secrets_namespace: opts.bgp_secrets_namespace.clone(),
            };
            let kube = KubeSource::start(client.clone(), server, &scope);
            match dir {
                Some(dir) => Sources::Both(Box::new(Combined::new(
                    DirSource::new(dir, opts.poll_interval),
                    kube,
                ))),
                None => Sources::Kube(kube),
            }
        }
        // Options never leave both off (the directory defaults to /etc/rackd).
        (None, None) => Sources::Dir(DirSource::new("/etc/rackd", opts.poll_interval)),
    };
    let (config, config_task) = crate::config::spawn(
        source,
        CheckOptions {
            bgp_secrets_namespace: opts.bgp_secrets_namespace.clone(),
        },
        metrics.clone(),
        config_stop.clone(),
    );
    let mut controllers = Controllers::new(
        metrics.clone(),
        RunOptions {
            resync: opts.resync_interval,
            ..RunOptions::default()
        },
    );

    // The controllers, one line each (a new one goes here).
    let (peers_tx, peers) = watch::channel(crate::bgp::BgpPeers::from([]));
    let election_stop = CancellationToken::new();
    let mut election_task = None;
    let lb = match &kube {
        Some(((client, _), k)) => {
            // On Kubernetes one rackd allocates (the Lease's holder) and writes status.
            let (lead, task) = crate::k8s::lease::spawn(
                client.clone(),
                crate::k8s::lease::LeaseConfig {
                    namespace: k.namespace.clone(),
                    name: crate::k8s::LBIPAM_LEASE.into(),
                    identity: opts.node_name.clone(),
                    timings: k.election,
                },
                election_stop.clone(),
            );
            election_task = Some(task);
            let (lbipam, lb) = ClusterLbIpam::new(&opts.state_dir, metrics.clone());
            controllers.spawn(lbipam, (config.clone(), lead.clone()));
            let writer = crate::k8s::status::StatusWriter::new(client.clone(), metrics.clone());
            controllers.spawn(writer, (config.clone(), lb.clone(), lead.clone()));
            // NodeConfigs and BGP conditions (the leader), each node's own peer status.
            let (bgp_status, node_configs) = crate::k8s::bgp_status::BgpStatusWriter::start(
                client.clone(),
                &opts.node_name,
                &opts.bgp_secrets_namespace,
                metrics.clone(),
            );
            controllers.spawn(
                bgp_status,
                (config.clone(), lead, peers.clone(), node_configs),
            );
            lb
        }
        None => {
            let (lbipam, lb) = LbIpamController::open(&opts.state_dir, metrics.clone())?;
            controllers.spawn(lbipam, config.clone());
            lb
        }
    };

    let (mut bgp_ctl, bgp) = BgpController::new(
        &opts.node_name,
        &opts.bgp_secrets_namespace,
        reconciler,
        opts.fib_table.is_some(),
        peers.clone(),
    );
    bgp_ctl.set_withdraw_without_backends(opts.services.is_some());
    let egress_on = opts.services.as_ref().is_some_and(|o| o.egress_gateway);
    if egress_on {
        bgp_ctl.set_egress_gateway(opts.l2.is_some());
    }
    // Egress gateways elected under L2 leases: who holds each egress IP (an empty map, never
    // updated, without L2: Cilium's first-by-name rule then). Read by the service datapath
    // (whose tunnels point at the holder) and BGP (the holder announces the egress IP).
    let (holders_tx, holders) =
        watch::channel(Arc::new(crate::svclb::egress::EgressHolders::new()));
    // The host facts with the routers heard on unnumbered links (autoDiscovery Unnumbered).
    let unnumbered_stop = CancellationToken::new();
    let (bgp_host, unnumbered_task) =
        crate::bgp::unnumbered::spawn(config.clone(), facts.info(), unnumbered_stop.clone());
    controllers.spawn(
        bgp_ctl,
        (config.clone(), lb.clone(), bgp_host, holders.clone()),
    );
    let monitor_stop = CancellationToken::new();
    let monitor = PeerMonitor::start(bgp.clone(), peers_tx, metrics.clone(), monitor_stop.clone());

    let mut l2 = None;
    let mut l2_metrics = None;
    if let Some(o) = &opts.l2 {
        let (l2_ctl, query) = crate::l2::L2Controller::start(
            &opts.node_name,
            o,
            &facts,
            kube.as_ref().map(|((c, _), _)| c),
        )
        .await?;
        let l2_ctl = l2_ctl.with_egress_gateway(egress_on);
        controllers.spawn(l2_ctl, (config.clone(), lb.clone(), facts.devices()));
        l2_metrics = Some(crate::l2::metrics_task(
            query.clone(),
            metrics.clone(),
            monitor_stop.clone(),
        ));
        l2 = Some(query);
    }

    let holders_task = match (&l2, egress_on) {
        (Some(q), true) => Some(egress_holders_task(
            q.clone(),
            config.clone(),
            holders_tx,
            monitor_stop.clone(),
        )),
        _ => None,
    };
    let mut svc_status = None;
    let mut masq_task = None;
    let mut housekeeping = None;
    if opts.services.is_none() {
        // Egress policies are still read: report them as not enforced.
        controllers.spawn(
            crate::svclb::egress::UnenforcedReporter::default(),
            config.clone(),
        );
    }
    if let Some(o) = &opts.services {
        let (ctl, status, task) =
            start_service_lb(&opts.node_name, o, monitor_stop.clone()).await?;
        let reader =
            datapath::lb::LbReader::open(&o.pin_root).map_err(|source| DaemonError::ServiceLb {
                pin_root: o.pin_root.clone(),
                source,
            })?;
        let reader = Arc::new(std::sync::Mutex::new(reader));
        housekeeping = Some(crate::svclb::housekeeping::spawn(
            reader.clone(),
            status.clone(),
            metrics.clone(),
            Duration::from_secs(10),
            monitor_stop.clone(),
        ));
        controllers.spawn(
            ctl,
            (
                config.clone(),
                lb.clone(),
                facts.devices(),
                facts.info(),
                task.0,
                holders.clone(),
            ),
        );
        masq_task = Some(task.1);
        svc_status = Some((status, reader));
    }

    let shared = Arc::new(
        Shared::new(
            &opts.node_name,
            config.clone(),
            lb,
            bgp,
            peers,
            l2,
            controllers.watcher(),
        )
        .with_services(svc_status),
    );
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
    info!(node = %opts.node_name, config = %config.borrow().source, "rackd running");

    // A bad NOTIFY_SOCKET is the service manager's problem, not a reason not to route: say so
    // (systemd will then time the start out, naming the unit) and run.
    let notify = Notifier::from_env().unwrap_or_else(|e| {
        error!(error = %e, "cannot notify the service manager");
        None
    });
    service_manager(notify.as_ref(), &shared, &stop).await;
    tell(notify.as_ref(), "STOPPING=1");

    // L2 hands its addresses over first, then BGP sends Cease, then LB-IPAM.
    controllers.stop().await;
    unnumbered_stop.cancel();
    let _ = unnumbered_task.await;
    monitor_stop.cancel();
    drop(monitor);
    if let Some(t) = l2_metrics {
        let _ = t.await;
    }
    if let Some(t) = masq_task {
        let _ = t.await;
    }
    if let Some(t) = holders_task {
        let _ = t.await;
    }
    if let Some(t) = housekeeping {
        let _ = t.await;
    }
    // The Lease is released once nothing writes as its leader any more.
    election_stop.cancel();
    if let Some(t) = election_task {
        let _ = t.await;
    }
    config_stop.cancel();
    let _ = config_task.await;
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

/// The service datapath's controller over the loaded (or adopted) programs, its status
/// channel, and the ip-masq-agent follower (its channel and task).
#[allow(clippy::type_complexity)]
async fn start_service_lb(
    node: &str,
    o: &crate::options::ServiceLbOptions,
    stop: CancellationToken,
) -> Result<
    (
        ServiceLbController<DatapathMaps>,
        watch::Receiver<Arc<crate::svclb::SvcStatus>>,
        (
            watch::Receiver<Arc<crate::svclb::masq::MasqState>>,
            tokio::task::JoinHandle<()>,
        ),
    ),
    DaemonError,
> {
    let cfg = datapath::lb::LbConfig {
        maglev_table_size: o.maglev.table_size.get(),
        // Every node must hash flows alike (Maglev's promise): the seed is cluster-wide.
        hash_seed: o.maglev.seed.jhash0,
        sizes: datapath::lb::LbSizes::for_map_max(o.map_max, o.maglev.table_size.get()),
        ..datapath::lb::LbConfig::default()
    };
    let lb = datapath::lb::ServiceLb::open_or_create(&o.pin_root, &cfg).map_err(|source| {
        DaemonError::ServiceLb {
            pin_root: o.pin_root.clone(),
            source,
        }
    })?;
    let agent = o.masquerade.as_ref().and_then(|m| m.ip_masq_agent.clone());
    let masq = crate::svclb::masq::spawn(agent, Duration::from_secs(1), stop);
    let switches = o.masquerade.as_ref().map(|m| crate::svclb::MasqSwitches {
        ipv4: m.ipv4,
        ipv6: m.ipv6,
    });
    let egress = if o.egress_gateway {
        Some(egress_tunnel().await?)
    } else {
        None
    };
    let (ctl, status) = ServiceLbController::new(
        node,
        &o.devices,
        DatapathMaps { lb },
        o.maglev,
        switches,
        egress,
    )?;
    info!(
        pin_root = %o.pin_root.display(),
        devices = ?o.devices,
        maglev_table_size = o.maglev.table_size.get(),
        masquerade = ?o.masquerade,
        "service datapath on"
    );
    Ok((ctl, status, masq))
}

/// How often the egress gateway asks L2's ownership task who holds each egress IP: the
/// delay this adds to a failover, on top of the lease's own. The query costs O(egress IPs).
const EGRESS_HOLDERS_POLL: Duration = Duration::from_millis(20);

/// Publishes the holder of every policy's egress IP whenever it changes, until `stop`.
fn egress_holders_task(
    l2: l2announcer::node::NodeSender,
    config: watch::Receiver<Arc<crate::config::ConfigState>>,
    tx: watch::Sender<Arc<crate::svclb::egress::EgressHolders>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EGRESS_HOLDERS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ips = crate::svclb::egress::egress_ips(&config.borrow().snapshot);
            // No policy with an egressIP: nothing to ask L2's ownership task.
            let now = if ips.is_empty() {
                crate::svclb::egress::EgressHolders::new()
            } else {
                let Some(h) = l2.holders(ips).await else {
                    return;
                };
                h
            };
            tx.send_if_modified(|cur| {
                let changed = **cur != now;
                if changed {
                    *cur = Arc::new(now);
                }
                changed
            });
        }
    })
}

/// The egress gateway's tunnel device: its name, the UDP port (Cilium's VXLAN port), the VNI
/// rackd's programs stamp and the MAC every node gives the device (locally administered).
pub const EGRESS_TUNNEL_DEVICE: &str = "rackd_vxlan";
const EGRESS_TUNNEL_PORT: u16 = 8472;
const EGRESS_TUNNEL_VNI: u32 = 2;
const EGRESS_TUNNEL_MAC: [u8; 6] = [0x0a, 0xce, 0x00, 0x00, 0x00, 0x01];

/// Creates (or adopts) the tunnel device, with loose rp_filter on it.
async fn egress_tunnel() -> Result<datapath::lb::EgressTunnel, DaemonError> {
    let err = |source| DaemonError::EgressTunnel {
        device: EGRESS_TUNNEL_DEVICE,
        source,
    };
    let spec = rackd_host::VxlanSpec {
        name: EGRESS_TUNNEL_DEVICE.into(),
        port: EGRESS_TUNNEL_PORT,
        mac: rackd_host::MacAddr(EGRESS_TUNNEL_MAC),
        mtu: None,
    };
    let ifindex = rackd_host::tunnel::ensure_vxlan(&spec).await.map_err(err)?;
    rackd_host::tunnel::loose_rp_filter(EGRESS_TUNNEL_DEVICE).map_err(err)?;
    info!(
        device = EGRESS_TUNNEL_DEVICE,
        ifindex, "egress gateway tunnel up"
    );
    Ok(datapath::lb::EgressTunnel {
        ifindex,
        vni: EGRESS_TUNNEL_VNI,
        mac: EGRESS_TUNNEL_MAC,
    })
}

/// How often readiness, status and the watchdog are looked at (the watchdog itself pings at
/// half its period, when that is shorter).
const NOTIFY_TICK: Duration = Duration::from_millis(100);

/// Speaks to the service manager until `stop`: `READY=1` once the configuration is loaded
/// and every controller has applied it (and the admin socket answers: it is bound before),
/// `STATUS=` when the summary changes, `WATCHDOG=1` while no controller is wedged in one
/// run for longer than the watchdog period (a live process alone does not count).
async fn service_manager(notify: Option<&Notifier>, shared: &Shared, stop: &CancellationToken) {
    let Some(n) = notify else {
        stop.cancelled().await;
        return;
    };
    let period = n.watchdog;
    let mut tick = tokio::time::interval(period.map_or(NOTIFY_TICK, |p| (p / 2).min(NOTIFY_TICK)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = tokio::time::Instant::now();
    let mut ready = false;
    let mut last_status = String::new();
    let mut stuck_logged = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let status = shared.status_line();
        if !ready {
            if shared.synced() {
                tell(notify, &format!("READY=1\n{status}"));
                ready = true;
                last_status = status;
            }
        } else if status != last_status {
            tell(notify, &status);
            last_status = status;
        }
        if let Some(p) = period
            && last_ping.elapsed() >= p / 2
        {
            let stuck = shared.stuck(p);
            if stuck.is_empty() {
                tell(notify, "WATCHDOG=1");
                last_ping = tokio::time::Instant::now();
                stuck_logged = false;
            } else if !stuck_logged {
                warn!(controllers = ?stuck, "a controller is stuck in one run; watchdog pings stop");
                stuck_logged = true;
            }
        }
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
