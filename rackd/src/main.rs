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
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon (the default).
    Run,
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
                .with_context(|| format!("config file {}: expected keys node-name, config-dir, state-dir, admin-socket, metrics-addr, log-format, bgp-secrets-namespace", p.display()))?
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
    };
    match cli.cmd.unwrap_or(Cmd::Run) {
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
