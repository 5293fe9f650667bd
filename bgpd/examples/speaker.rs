//! Run a speaker from a JSON config file until SIGINT/SIGTERM (or SIGKILL, for graceful-restart
//! tests). Usage: `speaker <config.json>`.
//!
//! ```json
//! { "speaker": { "local_as": 65001, "router_id": "10.0.0.1", "listen": ["[::]:179"],
//!                "graceful_restart": { "restart_time": 120, "restarting": true } },
//!   "peers": [ { "address": "10.0.0.2", "peer_as": 65000 } ],
//!   "routes": [ { "prefix": "10.100.0.0/24", "communities": ["65001:100"] } ] }
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bgpd::{Family, PeerConfig, Speaker, SpeakerConfig};
use bgpd_wire::{Community, LargeCommunity, PathAttributes};
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct File {
    speaker: SpeakerConfig,
    #[serde(default)]
    peers: Vec<PeerConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

#[derive(Debug, Deserialize)]
struct RouteConfig {
    prefix: IpNet,
    /// `"asn:value"`.
    #[serde(default)]
    communities: Vec<String>,
    /// `"global:local1:local2"`.
    #[serde(default)]
    large_communities: Vec<String>,
    #[serde(default)]
    local_pref: Option<u32>,
    #[serde(default)]
    med: Option<u32>,
}

fn nums(s: &str) -> Result<Vec<u32>> {
    s.split(':')
        .map(|x| {
            x.parse::<u32>()
                .with_context(|| format!("bad number in {s:?}"))
        })
        .collect()
}

fn attrs(r: &RouteConfig) -> Result<PathAttributes> {
    let mut a = PathAttributes {
        local_pref: r.local_pref,
        med: r.med,
        ..Default::default()
    };
    for c in &r.communities {
        match nums(c)?.as_slice() {
            [hi, lo] if *hi <= 0xffff && *lo <= 0xffff => {
                a.communities.push(Community((hi << 16) | lo))
            }
            _ => bail!("community {c:?} is not asn:value"),
        }
    }
    for c in &r.large_communities {
        match nums(c)?.as_slice() {
            [g, l1, l2] => a.large_communities.push(LargeCommunity {
                global_admin: *g,
                local1: *l1,
                local2: *l2,
            }),
            _ => bail!("large community {c:?} is not global:local1:local2"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: speaker <config.json>")?
        .into();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let speaker = Speaker::start(file.speaker)
        .await
        .context("starting the speaker")?;
    // Local routes first, then peers: the initial advertisement to each peer is then complete
    // and our End-of-RIB follows it (RFC 4724 §4.1).
    for r in &file.routes {
        let family = Family::of_prefix(&r.prefix);
        speaker.add_local_route(family, r.prefix, attrs(r)?).await?;
    }
    for p in file.peers {
        speaker.add_peer(p).await?;
    }
    speaker.set_ready().await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    speaker.shutdown().await?;
    Ok(())
}
