//! rackd: the node routing daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser, Debug)]
#[command(
    name = "rackd",
    version,
    about = "Routing control plane for bare-metal racks: BGP, LB-IPAM, L2 announcements, egress SNAT"
)]
struct Cli {
    /// YAML file with any of the options below (keys as the long flag names); flags and
    /// environment variables override it.
    #[arg(long, env = "RACKD_CONFIG")]
    config: Option<PathBuf>,
    /// This node's name: its Node object and CiliumBGPNodeConfigOverride. Default: hostname.
    #[arg(long, env = "RACKD_NODE_NAME")]
    node_name: Option<String>,
    /// Directory of Cilium/Kubernetes YAML files, watched for changes.
    #[arg(long, env = "RACKD_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Where durable state lives (LB-IPAM allocations, restart markers).
    #[arg(long, env = "RACKD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Admin API socket (root only).
    #[arg(long, env = "RACKD_ADMIN_SOCKET")]
    admin_socket: Option<PathBuf>,
    /// Prometheus metrics address (`off` disables).
    #[arg(long, env = "RACKD_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Log format.
    #[arg(long, env = "RACKD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Namespace of BGP auth Secrets (Cilium's --bgp-secrets-namespace).
    #[arg(long, env = "RACKD_BGP_SECRETS_NAMESPACE")]
    bgp_secrets_namespace: Option<String>,
    /// Install routes learnt from peers into this kernel routing table (protocol bgp, ECMP).
    /// Off by default: Cilium never imports.
    #[arg(long, env = "RACKD_FIB_TABLE")]
    fib_table: Option<u32>,
    /// Answer ARP/NDP for LoadBalancer and external IPs per CiliumL2AnnouncementPolicy
    /// (Cilium's flag).
    #[arg(long, env = "RACKD_ENABLE_L2_ANNOUNCEMENTS")]
    enable_l2_announcements: bool,
    /// How long other nodes wait after a holder's last renewal (Go duration; default 15s).
    #[arg(long, env = "RACKD_L2_ANNOUNCEMENTS_LEASE_DURATION")]
    l2_announcements_lease_duration: Option<String>,
    /// How long a holder keeps answering without a renewal (default 5s).
    #[arg(long, env = "RACKD_L2_ANNOUNCEMENTS_RENEW_DEADLINE")]
    l2_announcements_renew_deadline: Option<String>,
    /// Interval between renewals and claim retries (default 2s).
    #[arg(long, env = "RACKD_L2_ANNOUNCEMENTS_RETRY_PERIOD")]
    l2_announcements_retry_period: Option<String>,
    /// Where L2 leases live: `local` (single node) or `etcd`.
    #[arg(long, env = "RACKD_L2_LEASE_BACKEND", value_enum)]
    l2_lease_backend: Option<BackendArg>,
    /// etcd client URLs for the `etcd` lease backend (comma-separated or repeated).
    #[arg(long, env = "RACKD_L2_ETCD_ENDPOINTS", value_delimiter = ',')]
    l2_etcd_endpoints: Vec<String>,
    /// Key prefix in etcd (default /rackd/l2/).
    #[arg(long, env = "RACKD_L2_ETCD_PREFIX")]
    l2_etcd_prefix: Option<String>,
    /// Devices L2 announcements may use, Cilium's syntax (`eth0`, `eth+`); default every
    /// Ethernet device.
    #[arg(long, env = "RACKD_DEVICES", value_delimiter = ',')]
    devices: Vec<String>,
    /// bpffs folder for the datapath's pinned maps and links.
    #[arg(long, env = "RACKD_BPF_PIN_ROOT")]
    bpf_pin_root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon (the default).
    Run,
    /// The eBPF datapath.
    Datapath {
        #[command(subcommand)]
        cmd: DatapathCmd,
    },
}

#[derive(Subcommand, Debug)]
enum DatapathCmd {
    /// Detach and unpin every program, link and map rackd installed under the pin root.
    Uninstall,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendArg {
    Local,
    Etcd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Text,
    Json,
}

/// The config file: the same options as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    node_name: Option<String>,
    config_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    metrics_addr: Option<String>,
    log_format: Option<LogFormat>,
    bgp_secrets_namespace: Option<String>,
    fib_table: Option<u32>,
    enable_l2_announcements: Option<bool>,
    l2_announcements_lease_duration: Option<String>,
    l2_announcements_renew_deadline: Option<String>,
    l2_announcements_retry_period: Option<String>,
    l2_lease_backend: Option<BackendArg>,
    l2_etcd_endpoints: Option<Vec<String>>,
    l2_etcd_prefix: Option<String>,
    devices: Option<Vec<String>>,
    bpf_pin_root: Option<PathBuf>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file: FileConfig = match &cli.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config file {}", p.display()))?;
            serde_yaml_ng::from_str(&text)
                .with_context(|| format!("config file {}: expected the long flag names as keys, e.g. node-name, config-dir, enable-l2-announcements", p.display()))?
        }
        None => FileConfig::default(),
    };
    let log_format = cli
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Text);
    let filter = tracing_subscriber::EnvFilter::try_from_env("RACKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let metrics_addr = match cli.metrics_addr.or(file.metrics_addr).as_deref() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9963))),
        Some("off") => None,
        Some(a) => Some(
            a.parse()
                .with_context(|| format!("--metrics-addr {a:?}: expected ADDRESS:PORT or off"))?,
        ),
    };
    let pin_root = cli
        .bpf_pin_root
        .or(file.bpf_pin_root)
        .unwrap_or_else(|| datapath::DEFAULT_PIN_ROOT.into());
    if let Some(Cmd::Datapath {
        cmd: DatapathCmd::Uninstall,
    }) = &cli.cmd
    {
        datapath::uninstall(&pin_root)
            .with_context(|| format!("uninstalling the datapath under {}", pin_root.display()))?;
        info!(pin_root = %pin_root.display(), "datapath uninstalled");
        return Ok(());
    }
    let l2 = if cli.enable_l2_announcements || file.enable_l2_announcements == Some(true) {
        let dur = |flag: &str, v: Option<String>, default: Duration| -> anyhow::Result<Duration> {
            match v {
                None => Ok(default),
                Some(s) => rackd::l2::parse_go_duration(&s).with_context(|| {
                    format!("--{flag} {s:?}: expected a Go duration like 15s or 500ms")
                }),
            }
        };
        let defaults = l2announcer::LeaseTimings::default();
        let timings = l2announcer::LeaseTimings {
            lease_duration: dur(
                "l2-announcements-lease-duration",
                cli.l2_announcements_lease_duration
                    .or(file.l2_announcements_lease_duration),
                defaults.lease_duration,
            )?,
            renew_deadline: dur(
                "l2-announcements-renew-deadline",
                cli.l2_announcements_renew_deadline
                    .or(file.l2_announcements_renew_deadline),
                defaults.renew_deadline,
            )?,
            retry_period: dur(
                "l2-announcements-retry-period",
                cli.l2_announcements_retry_period
                    .or(file.l2_announcements_retry_period),
                defaults.retry_period,
            )?,
        };
        let endpoints = if cli.l2_etcd_endpoints.is_empty() {
            file.l2_etcd_endpoints.unwrap_or_default()
        } else {
            cli.l2_etcd_endpoints
        };
        let backend = match cli.l2_lease_backend.or(file.l2_lease_backend) {
            Some(BackendArg::Etcd) => {
                if endpoints.is_empty() {
                    anyhow::bail!("--l2-lease-backend etcd needs --l2-etcd-endpoints");
                }
                let mut prefix = cli
                    .l2_etcd_prefix
                    .or(file.l2_etcd_prefix)
                    .unwrap_or_else(|| "/rackd/l2/".into());
                if !prefix.ends_with('/') {
                    prefix.push('/');
                }
                rackd::l2::LeaseBackendKind::Etcd { endpoints, prefix }
            }
            Some(BackendArg::Local) | None => {
                if !endpoints.is_empty() {
                    anyhow::bail!(
                        "--l2-etcd-endpoints given but the lease backend is local: add --l2-lease-backend etcd"
                    );
                }
                rackd::l2::LeaseBackendKind::Local
            }
        };
        Some(rackd::l2::L2Options {
            backend,
            timings,
            devices: if cli.devices.is_empty() {
                file.devices.unwrap_or_default()
            } else {
                cli.devices
            },
            pin_root: pin_root.clone(),
        })
    } else {
        None
    };
    let opts = rackd::daemon::Options {
        node_name: cli.node_name.or(file.node_name).unwrap_or_else(hostname),
        config_dir: cli
            .config_dir
            .or(file.config_dir)
            .unwrap_or_else(|| "/etc/rackd".into()),
        state_dir: cli
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| "/var/lib/rackd".into()),
        admin_socket: cli
            .admin_socket
            .or(file.admin_socket)
            .unwrap_or_else(|| rackd_api::DEFAULT_SOCKET.into()),
        metrics_addr,
        poll_interval: Duration::from_millis(250),
        resync_interval: Duration::from_secs(5),
        bgp_secrets_namespace: cli
            .bgp_secrets_namespace
            .or(file.bgp_secrets_namespace)
            .unwrap_or_else(|| "kube-system".into()),
        fib_table: cli.fib_table.or(file.fib_table).filter(|t| *t != 0),
        l2,
    };
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Datapath { .. } => {}
        Cmd::Run => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(async move {
                let stop = CancellationToken::new();
                let s = stop.clone();
                tokio::spawn(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut term), Ok(mut int)) = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) else {
                        return;
                    };
                    tokio::select! {
                        _ = term.recv() => info!("SIGTERM: shutting down"),
                        _ = int.recv() => info!("SIGINT: shutting down"),
                    }
                    s.cancel();
                });
                rackd::daemon::run(opts, stop).await
            })?;
        }
    }
    Ok(())
}
