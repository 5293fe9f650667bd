//! rackd: the node routing daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rackd::options::{self, Flags, LogFormat};
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
    #[command(flatten)]
    flags: Flags,
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(p) => options::load_file(p)?,
        None => options::FileConfig::default(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RACKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match options::log_format(&cli.flags, &file) {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    if let Some(Cmd::Datapath {
        cmd: DatapathCmd::Uninstall,
    }) = &cli.cmd
    {
        let pin_root = options::pin_root(&cli.flags, &file);
        datapath::uninstall(&pin_root)
            .with_context(|| format!("uninstalling the datapath under {}", pin_root.display()))?;
        // The egress gateway's tunnel device goes too (absent is fine).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let device = rackd::daemon::EGRESS_TUNNEL_DEVICE;
        let removed = rt
            .block_on(rackd_host::tunnel::delete_link(device))
            .with_context(|| format!("removing the tunnel device {device}"))?;
        info!(pin_root = %pin_root.display(), tunnel_removed = removed, "datapath uninstalled");
        return Ok(());
    }
    let opts = options::resolve(cli.flags, file, hostname)?;
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
