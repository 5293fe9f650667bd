//! What one Service edit and a burst of routes cost the speaker, at 27,000 exported prefixes
//! on two peers (issue 14: under 20 ms of daemon CPU per changed object):
//!
//! - one export statement changed on both peers: `update_peer` with the whole new
//!   configuration vs `patch_export` of that one prefix;
//! - 27,000 routes originated (and withdrawn): one `add_local_route` call per route vs one
//!   `add_local_routes` (`remove_local_route(s)`).
//!
//! The speaker and this driver share one thread (a current-thread runtime, so the speaker's
//! writer and reader tasks run there too); the two scripted peers run on another thread and
//! count the prefixes they receive. A sample is the driver thread's CPU time
//! (CLOCK_THREAD_CPUTIME_ID) from the call until both peers have received what the change
//! sends: the speaker's whole cost including encoding, none of the peers'. Configurations
//! are built before a sample starts (rendering them is the daemon's cost, not bgpd's).
//!
//! `cargo bench -p bgpd --bench incremental -- --out FILE.json` writes the raw samples with
//! the date, commit and machine; without `--bench` (as `cargo test --benches` runs it) a
//! small smoke run checks the harness and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgpd::policy::{Actions, ExportPatch, Policy, PrefixMatch, Statement};
use bgpd::{Family, PeerConfig, Speaker, SpeakerConfig};
use bgpd_wire::{BgpCodec, Capability, Message, Open, PathAttributes, SessionContext};
use futures::{SinkExt, StreamExt};
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::codec::Framed;

/// Prefixes received by a scripted peer so far.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    announced: u64,
    withdrawn: u64,
}

fn prefix(i: u32) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).expect("a /32"))
}

fn tag(n: u32) -> Actions {
    Actions {
        add_communities: vec![(65001 << 16) | n],
        ..Default::default()
    }
}

fn table(n: u32, changed: Option<(u32, u32)>) -> Policy {
    Policy {
        statements: (0..n)
            .map(|i| Statement {
                prefixes: vec![PrefixMatch::exact(prefix(i))],
                actions: match changed {
                    Some((j, t)) if j == i => tag(t),
                    _ => tag(1),
                },
            })
            .collect(),
        default_accept: false,
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap(),
        u32::try_from(ts.tv_nsec).unwrap(),
    )
}

/// A scripted peer: answers the OPEN (hold time 0: no keepalives) and counts prefixes.
async fn fake_peer(l: TcpListener, tx: watch::Sender<Counts>) {
    let (c, _) = l.accept().await.unwrap();
    let mut f = Framed::new(c, BgpCodec::default());
    let Some(Ok(Message::Open(ours))) = f.next().await else {
        panic!("expected OPEN")
    };
    let theirs = Open {
        version: 4,
        my_as: Open::my_as_field(65002),
        hold_time: 0,
        router_id: Ipv4Addr::new(9, 9, 9, 9),
        capabilities: vec![
            Capability::Multiprotocol(Family::Ipv4Unicast),
            Capability::FourOctetAs(65002),
        ],
    };
    f.codec_mut()
        .set_context(SessionContext::negotiate(&theirs, &ours));
    f.send(Message::Open(theirs)).await.unwrap();
    f.send(Message::Keepalive).await.unwrap();
    while let Some(m) = f.next().await {
        if let Message::Update(u) = m.unwrap() {
            tx.send_modify(|c| {
                c.announced += u64::try_from(u.nlri.len()).unwrap_or(u64::MAX);
                c.withdrawn += u64::try_from(u.withdrawn.len()).unwrap_or(u64::MAX);
            });
        }
    }
}

struct Bench {
    speaker: Speaker,
    peers: Vec<(IpAddr, PeerConfig, watch::Receiver<Counts>)>,
}

impl Bench {
    /// Waits until every peer has `f(counts)` at least `n` more than in `base`.
    async fn wait(&mut self, base: &[Counts], n: u64, f: fn(&Counts) -> u64) {
        for ((_, _, rx), b) in self.peers.iter_mut().zip(base) {
            let want = f(b) + n;
            tokio::time::timeout(Duration::from_secs(600), rx.wait_for(|c| f(c) >= want))
                .await
                .expect("the peer never received it")
                .unwrap();
        }
    }

    fn counts(&self) -> Vec<Counts> {
        self.peers.iter().map(|(_, _, rx)| *rx.borrow()).collect()
    }
}

/// Runs `f` and waits for `n` more prefixes (`f` on the counts) at every peer: thread CPU
/// and wall time.
async fn sample(
    b: &mut Bench,
    n: u64,
    what: fn(&Counts) -> u64,
    f: impl AsyncFnOnce(&Bench),
) -> (Duration, Duration) {
    let base = b.counts();
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    f(b).await;
    b.wait(&base, n, what).await;
    (thread_cpu() - cpu0, wall0.elapsed())
}

fn announced(c: &Counts) -> u64 {
    c.announced
}

fn withdrawn(c: &Counts) -> u64 {
    c.withdrawn
}

#[derive(Default)]
struct Samples(Vec<(&'static str, Duration, Duration)>);

impl Samples {
    fn push(&mut self, name: &'static str, (cpu, wall): (Duration, Duration)) {
        self.0.push((name, cpu, wall));
    }
}

async fn run(n: u32, edits: u32, rounds: u32) -> Samples {
    let speaker = Speaker::start(SpeakerConfig::new(65001, "1.1.1.1".parse().unwrap()))
        .await
        .unwrap();
    let mut peers = Vec::new();
    let (ltx, lrx) = std::sync::mpsc::channel();
    // The peers' thread: their decoding is not the speaker's cost.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for host in ["127.0.0.2", "127.0.0.3"] {
                let l = TcpListener::bind((host.parse::<IpAddr>().unwrap(), 0))
                    .await
                    .unwrap();
                let (tx, rx) = watch::channel(Counts::default());
                ltx.send((l.local_addr().unwrap(), rx)).unwrap();
                tasks.push(tokio::spawn(fake_peer(l, tx)));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    let export = table(n, None);
    for _ in 0..2 {
        let (addr, rx) = lrx.recv().unwrap();
        let mut cfg = PeerConfig::new(addr.ip(), 65002);
        cfg.port = addr.port();
        cfg.hold_time = 0;
        cfg.families = vec![Family::Ipv4Unicast];
        cfg.export = export.clone();
        speaker.add_peer(cfg.clone()).await.unwrap();
        peers.push((addr.ip(), cfg, rx));
    }
    let mut b = Bench { speaker, peers };
    let all: Vec<IpNet> = (0..n).map(prefix).collect();
    let routes = || -> Vec<(IpNet, PathAttributes)> {
        all.iter()
            .map(|p| (*p, PathAttributes::default()))
            .collect()
    };
    let mut out = Samples::default();
    // Originate everything once; the sessions come up meanwhile.
    let base = vec![Counts::default(); 2];
    b.speaker.add_local_routes(routes()).await.unwrap();
    b.wait(&base, u64::from(n), announced).await;

    // One statement changed on both peers, alternating between two communities so that
    // every edit changes what is sent.
    let j = n / 2;
    for k in 0..edits {
        let cfgs: Vec<PeerConfig> = b
            .peers
            .iter()
            .map(|(_, c, _)| PeerConfig {
                export: table(n, Some((j, 2 + k % 2))),
                ..c.clone()
            })
            .collect();
        let s = sample(&mut b, 1, announced, async |b| {
            for c in cfgs {
                b.speaker.update_peer(c).await.unwrap();
            }
        })
        .await;
        out.push("update_peer_one_statement_two_peers", s);
    }
    for k in 0..edits {
        let s = sample(&mut b, 1, announced, async |b| {
            for (a, _, _) in &b.peers {
                let patch = ExportPatch {
                    set: vec![(prefix(j), Some(tag(4 + k % 2)))],
                };
                b.speaker.patch_export(*a, patch).await.unwrap();
            }
        })
        .await;
        out.push("patch_export_one_prefix_two_peers", s);
    }

    // 27,000 routes out and in again, per call and batched, interleaved.
    for _ in 0..rounds {
        let s = sample(&mut b, u64::from(n), withdrawn, async |b| {
            for p in &all {
                b.speaker
                    .remove_local_route(Family::Ipv4Unicast, *p)
                    .await
                    .unwrap();
            }
        })
        .await;
        out.push("remove_local_route_loop", s);
        let s = sample(&mut b, u64::from(n), announced, async |b| {
            for p in &all {
                b.speaker
                    .add_local_route(Family::Ipv4Unicast, *p, PathAttributes::default())
                    .await
                    .unwrap();
            }
        })
        .await;
        out.push("add_local_route_loop", s);
        let prefixes = all.clone();
        let s = sample(&mut b, u64::from(n), withdrawn, async |b| {
            b.speaker.remove_local_routes(prefixes).await.unwrap();
        })
        .await;
        out.push("remove_local_routes_batch", s);
        let batch = routes();
        let s = sample(&mut b, u64::from(n), announced, async |b| {
            b.speaker.add_local_routes(batch).await.unwrap();
        })
        .await;
        out.push("add_local_routes_batch", s);
    }
    b.speaker.shutdown().await.unwrap();
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (n, edits, rounds) = if bench { (27_000, 20, 3) } else { (500, 2, 1) };
    let load_before = read("/proc/loadavg");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = rt.block_on(run(n, edits, rounds));
    let load_after = read("/proc/loadavg");
    let mut names: Vec<&str> = samples.0.iter().map(|(n, _, _)| *n).collect();
    names.dedup();
    names.sort();
    names.dedup();
    println!(
        "{n} exported prefixes, 2 peers; CPU ms of the speaker's thread (median, min-max) / wall ms (median)"
    );
    let mut summary = serde_json::Map::new();
    for name in &names {
        let of = |f: fn(&(&str, Duration, Duration)) -> Duration| -> Vec<Duration> {
            samples.0.iter().filter(|s| s.0 == *name).map(f).collect()
        };
        let (cpu, wall) = (of(|s| s.1), of(|s| s.2));
        let (lo, hi) = (
            cpu.iter().min().copied().unwrap_or_default(),
            cpu.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "{name:40} cpu {:9.3} ({:.3}-{:.3})  wall {:9.3}  n={}",
            ms(median(cpu.clone())),
            ms(lo),
            ms(hi),
            ms(median(wall.clone())),
            cpu.len()
        );
        summary.insert(
            (*name).to_owned(),
            json!({
                "cpu_ms_median": ms(median(cpu.clone())),
                "cpu_ms_min": ms(lo),
                "cpu_ms_max": ms(hi),
                "wall_ms_median": ms(median(wall)),
                "n": cpu.len(),
            }),
        );
    }
    let Some(path) = out.filter(|_| bench) else {
        return;
    };
    let dirty = !command("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let report = json!({
        "benchmark": "bgpd/benches/incremental.rs",
        "command": "cargo bench -p bgpd --bench incremental -- --out FILE",
        "date_utc": command("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "commit": command("git", &["rev-parse", "HEAD"]),
        "worktree_dirty": dirty,
        "machine": {
            "cpu": read("/proc/cpuinfo").lines().find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1)).unwrap_or("").trim(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": read("/proc/sys/kernel/osrelease"),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "prefixes": n,
        "peers": 2,
        "summary": summary,
        "samples": samples.0.iter().map(|(name, cpu, wall)| json!({
            "what": name,
            "cpu_ns": u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX),
            "wall_ns": u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written to {path}");
}
