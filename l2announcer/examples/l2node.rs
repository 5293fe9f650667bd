//! One L2 announcer node against etcd with a logging announcer: a building block for the
//! end-to-end failover test (the daemon plugs in the eBPF responder instead).
//!
//! ```text
//! cargo run -p l2announcer --example l2node -- --etcd http://127.0.0.1:2379 --node a \
//!     --iface eth0:2 --ip 192.0.2.10 --ip 2001:db8::10 --lease-duration 1s
//! ```
//! SIGTERM or Ctrl-C: withdraw everything, then revoke the node lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use l2announcer::LeaseTimings;
use l2announcer::announcer::{AnnounceLog, RecordingAnnouncer};
use l2announcer::backend::{EtcdBackend, EtcdConfig};
use l2announcer::node::{NodeConfig, spawn};
use l2announcer::policy::{DesiredGroup, Iface};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

#[derive(Debug, Parser)]
struct Args {
    /// etcd client URL(s).
    #[arg(long, required = true)]
    etcd: Vec<String>,
    /// Node name.
    #[arg(long)]
    node: String,
    /// Interface as NAME:IFINDEX.
    #[arg(long, required = true)]
    iface: Vec<String>,
    /// IP to announce (repeat).
    #[arg(long)]
    ip: Vec<IpAddr>,
    /// Additionally announce N IPs from 10.200.0.0 upwards (scale runs).
    #[arg(long, default_value_t = 0)]
    generate: u32,
    /// Lease duration, e.g. 15s or 1s.
    #[arg(long, default_value = "15s")]
    lease_duration: String,
    /// Renew deadline.
    #[arg(long, default_value = "5s")]
    renew_deadline: String,
    /// Retry period.
    #[arg(long, default_value = "2s")]
    retry_period: String,
    /// Key prefix in etcd.
    #[arg(long, default_value = "/rackd/l2/")]
    prefix: String,
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => bail!("bad duration unit in {s:?} (ms, s, m)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_iface(s: &str) -> anyhow::Result<Iface> {
    let (name, idx) = s
        .split_once(':')
        .with_context(|| format!("--iface {s:?} is not NAME:IFINDEX"))?;
    Ok(Iface {
        name: name.to_owned(),
        ifindex: idx
            .parse()
            .with_context(|| format!("bad ifindex in {s:?}"))?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let (timings, fixes) = LeaseTimings {
        lease_duration: parse_duration(&args.lease_duration)?,
        renew_deadline: parse_duration(&args.renew_deadline)?,
        retry_period: parse_duration(&args.retry_period)?,
    }
    .sanitise();
    for f in fixes {
        warn!(?f, "lease timings corrected");
    }
    let ifaces: BTreeSet<Iface> = args
        .iface
        .iter()
        .map(|s| parse_iface(s))
        .collect::<anyhow::Result<_>>()?;
    let mut groups = BTreeMap::new();
    let generated = (0..args.generate).map(|i| IpAddr::V4((0x0ac8_0000 + i).into()));
    for ip in args.ip.iter().copied().chain(generated) {
        groups.insert(
            ip,
            DesiredGroup {
                services: BTreeSet::new(),
                interfaces: ifaces.clone(),
            },
        );
    }
    let mut cfg = EtcdConfig::new(args.etcd.clone(), &args.node, timings);
    cfg.prefix = args.prefix.clone();
    let quiet = groups.len() > 64;
    let h = spawn(
        NodeConfig::new(&args.node, timings),
        EtcdBackend::new(cfg),
        RecordingAnnouncer::new(&args.node, AnnounceLog::default(), quiet),
    );
    h.set_desired(groups);
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
    }
    let start = std::time::Instant::now();
    let report = h.shutdown().await;
    info!(?report, elapsed = ?start.elapsed(), "handed over");
    Ok(())
}
