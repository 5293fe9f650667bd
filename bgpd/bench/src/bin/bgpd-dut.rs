//! Our speaker as the benchmark's device under test: one `bgpd::Speaker` listening on port
//! 179 with passive eBGP peers, accept-all import and export (the same roles BIRD gets).
//!
//! `bgpd-dut --router-id A --local-as N --peer ADDR:AS [--peer ADDR:AS ...]`; exits on SIGTERM
//! without a graceful shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use bgpd::{Family, PeerConfig, Speaker, SpeakerConfig};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    router_id: Ipv4Addr,
    #[arg(long)]
    local_as: u32,
    /// `ADDRESS:AS`, repeated.
    #[arg(long = "peer", required = true)]
    peers: Vec<String>,
}

fn parse_peer(s: &str) -> anyhow::Result<(IpAddr, u32)> {
    let Some((addr, asn)) = s.rsplit_once(':') else {
        bail!("--peer {s:?}: expected ADDRESS:AS");
    };
    Ok((
        addr.parse()
            .with_context(|| format!("--peer {s:?}: address"))?,
        asn.parse().with_context(|| format!("--peer {s:?}: AS"))?,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let peers = args
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut config = SpeakerConfig::new(args.local_as, args.router_id);
    config.listen = vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 179))];
    let speaker = Speaker::start(config)
        .await
        .context("starting the speaker")?;
    for (address, peer_as) in peers {
        let mut peer = PeerConfig::new(address, peer_as);
        peer.passive = true;
        peer.hold_time = 240;
        peer.families = vec![Family::Ipv4Unicast];
        speaker
            .add_peer(peer)
            .await
            .with_context(|| format!("adding peer {address}"))?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // The measurement is over when we are stopped: exit at once instead of tearing down a
    // million routes (which only delays the next run and, under valgrind, the profile).
    std::process::exit(0)
}
