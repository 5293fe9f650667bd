//! The daemon-shape benchmark (issue 14), shared by `benches/edit_latency.rs` (full size, two
//! binaries side by side) and `tests/edit_latency_smoke.rs` (smoke size, CI):
//!
//! - (a) one Service added (a new file) or edited (one document of the big file rewritten)
//!   among N: wall time from the file appearing to the route change in the ToR's kernel table
//!   (FRR's zebra installs what bgpd accepted; seen by a netlink watcher in the ToR's
//!   namespace), and the daemon's CPU over that window minus its idle rate;
//! - (b) `rackctl bgp peers` (the admin request it sends) latency while the N Services are
//!   being allocated and rendered, and against the idle daemon;
//! - the harness's own ceilings: the same request loop against an in-process socket that
//!   answers the same bytes instantly, and a route added with `ip route` seen by the watcher.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Lab;
use super::route_watch::{RouteWatch, WireWatch};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub services: usize,
    pub edits: usize,
}

/// One edit's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EditSample {
    /// `add` (a new file with one Service), `withdraw` (a Service of the big file turned into
    /// a ClusterIP: its route goes), `restore` (turned back: its route comes back).
    pub kind: &'static str,
    pub latency_ms: f64,
    /// Edit → the first BGP UPDATE from rackd on the ToR's wire: rackd's share of
    /// `latency_ms` (the rest is FRR's processing and zebra's install).
    pub wire_ms: Option<f64>,
    /// Daemon CPU from the edit to 300 ms after the route change, minus the idle rate over the
    /// same time (clock ticks of 10 ms: meaningful as a mean over many edits).
    pub cpu_ms: f64,
    pub window_ms: f64,
}

/// One binary's run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub label: String,
    pub run: usize,
    /// The N Services written at once: to every route at the ToR.
    pub load_s: f64,
    pub idle_cpu_ms_per_s: f64,
    pub edits: Vec<EditSample>,
    pub peers_idle_ms: Vec<f64>,
    pub peers_loaded_ms: Vec<f64>,
}

fn scale_text(n: usize, withdrawn: Option<usize>) -> String {
    let mut s = String::with_capacity(n * 200);
    s.push_str("apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: scale}\nspec:\n  blocks: [{cidr: 100.64.0.0/14}]\n  serviceSelector: {matchLabels: {scale: \"yes\"}}\n");
    for i in 0..n {
        let ty = if withdrawn == Some(i) {
            "ClusterIP"
        } else {
            "LoadBalancer"
        };
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: scale, labels: {{scale: \"yes\"}}}}\nspec: {{type: {ty}, ipFamilies: [IPv4], ports: [{{port: 80, protocol: TCP}}]}}\n"
        ));
    }
    s
}

fn one_service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: scale, labels: {{scale: \"yes\"}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv4], ports: [{{port: 80, protocol: TCP}}]}}\n"
    )
}

fn in_scale_pool(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 100 && (64..68).contains(&o[1])
}

/// Writes `text` next to `path` and returns a closure-free pair (tmp, path) so the caller can
/// rename at the instant it timestamps.
fn stage(path: &Path, text: &str) -> PathBuf {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    tmp
}

/// utime + stime of `pid`, in clock ticks (every thread, exited ones included).
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: fields count from after the closing parenthesis.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn tick_ms() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1000.0 / hz as f64
}

fn peers_request(sock: &Path) -> Duration {
    let t0 = Instant::now();
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    rackd_api::write_message(&s, &rackd_api::Request::BgpPeers).unwrap();
    let reply: rackd_api::Reply = rackd_api::read_message(BufReader::new(&s)).unwrap();
    assert!(
        matches!(reply, rackd_api::Reply::BgpPeers(ref p) if !p.is_empty()),
        "{reply:?}"
    );
    t0.elapsed()
}

/// `bgp peers` back to back until `stop`; latencies in ms.
fn probe_until(sock: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            out.push(peers_request(&sock).as_secs_f64() * 1e3);
            std::thread::sleep(Duration::from_millis(2));
        }
        out
    })
}

fn wait_count(watch: &RouteWatch, want: usize, timeout: Duration, lab: &Lab) {
    let t0 = Instant::now();
    loop {
        let n = watch
            .present()
            .iter()
            .filter(|ip| in_scale_pool(ip))
            .count();
        if n >= want {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "{n}/{want} routes at the ToR after {timeout:?}\n{}",
            lab.rackd_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the ToR's route count stays the same for a second.
fn settle(watch: &RouteWatch) {
    let mut last = watch.cursor();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = watch.cursor();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(1) {
            return;
        }
    }
}

/// Runs every measurement against one rackd binary.
pub fn run_one(label: &str, bin: &Path, cfg: &Config, run: usize) -> RunResult {
    let mut lab = Lab::prepare("rk-shape");
    let watch = RouteWatch::start(&lab.tor_ns);
    let wire = WireWatch::start(
        &lab.tor_ns,
        "eth1",
        vec![
            "10.0.1.2".parse().unwrap(),
            "fd00:10:0:1::2".parse().unwrap(),
        ],
    );
    lab.start_rackd_bin(bin.to_str().unwrap(), &[]);
    lab.tor
        .wait_established("10.0.1.2".parse().unwrap(), Duration::from_secs(60))
        .unwrap();
    settle(&watch);
    let pid = lab.rackd.as_ref().unwrap().pid();

    // (b) idle, then while the N services load.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe_until(lab.sock.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let peers_idle_ms = probe.join().unwrap();

    let scale = lab.cfg.join("scale.yaml");
    let tmp = stage(&scale, &scale_text(cfg.services, None));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe_until(lab.sock.clone(), stop.clone());
    let t0 = Instant::now();
    std::fs::rename(&tmp, &scale).unwrap();
    wait_count(&watch, cfg.services, Duration::from_secs(600), &lab);
    let load_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peers_loaded_ms = probe.join().unwrap();
    settle(&watch);

    // Idle CPU rate.
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu_ms_per_s = (cpu_ticks(pid) - c0) as f64 * tick_ms() / t0.elapsed().as_secs_f64();

    // (a) edits: add, withdraw, restore, ...
    let mut edits = Vec::new();
    for i in 0..cfg.edits {
        let (kind, tmp, path) = match i % 3 {
            0 => {
                let p = lab.cfg.join(format!("edit-{i}.yaml"));
                ("add", stage(&p, &one_service(&format!("e{i}"))), p)
            }
            1 => {
                let target = (i * 7919) % cfg.services;
                (
                    "withdraw",
                    stage(&scale, &scale_text(cfg.services, Some(target))),
                    scale.clone(),
                )
            }
            _ => (
                "restore",
                stage(&scale, &scale_text(cfg.services, None)),
                scale.clone(),
            ),
        };
        let before = watch.present();
        let cursor = watch.cursor();
        let c0 = cpu_ticks(pid);
        let t0 = Instant::now();
        std::fs::rename(&tmp, &path).unwrap();
        let ev = watch
            .wait(cursor, Duration::from_secs(60), |e| {
                in_scale_pool(&e.ip)
                    && match kind {
                        "withdraw" => !e.added && before.contains(&e.ip),
                        _ => e.added && !before.contains(&e.ip),
                    }
            })
            .unwrap_or_else(|| {
                panic!(
                    "edit {i} ({kind}) never reached the ToR\n{}",
                    lab.rackd_log()
                )
            });
        let latency = ev.at - t0;
        std::thread::sleep(Duration::from_millis(300));
        let window = t0.elapsed();
        let cpu =
            (cpu_ticks(pid) - c0) as f64 * tick_ms() - idle_cpu_ms_per_s * window.as_secs_f64();
        edits.push(EditSample {
            kind,
            latency_ms: latency.as_secs_f64() * 1e3,
            wire_ms: wire
                .first_after(t0)
                .filter(|t| *t <= ev.at)
                .map(|t| (t - t0).as_secs_f64() * 1e3),
            cpu_ms: cpu,
            window_ms: window.as_secs_f64() * 1e3,
        });
    }
    lab.stop_rackd();
    RunResult {
        label: label.to_owned(),
        run,
        load_s,
        idle_cpu_ms_per_s,
        edits,
        peers_idle_ms,
        peers_loaded_ms,
    }
}

/// The request loop against a socket that answers at once with `reply` (what a real daemon
/// answered), for `secs`: the client's and the kernel's share of (b).
pub fn peers_ceiling(reply: &[u8], secs: f64) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ceiling.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let reply = reply.to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for conn in listener.incoming() {
            if s2.load(Ordering::Relaxed) {
                break;
            }
            let mut c = conn.unwrap();
            let mut line = String::new();
            BufReader::new(&c).read_line(&mut line).unwrap();
            c.write_all(&reply).unwrap();
        }
    });
    let probe = probe_until(sock.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let out = probe.join().unwrap();
    // Wake the accept loop so it sees the flag.
    let _ = std::os::unix::net::UnixStream::connect(&sock);
    server.join().unwrap();
    out
}

/// One real `bgp peers` reply of a lab daemon, as bytes on the wire.
pub fn sample_peers_reply(lab: &Lab) -> Vec<u8> {
    let s = std::os::unix::net::UnixStream::connect(&lab.sock).unwrap();
    rackd_api::write_message(&s, &rackd_api::Request::BgpPeers).unwrap();
    let mut line = Vec::new();
    BufReader::new(&s).read_until(b'\n', &mut line).unwrap();
    line
}

/// How long the watcher takes to see a route `ip route add` puts into the ToR's table
/// (process start included): the ceiling of (a)'s measurement.
pub fn watch_ceiling(lab: &Lab, watch: &RouteWatch, n: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        let ip = Ipv4Addr::new(198, 18, 0, u8::try_from(i % 250).unwrap() + 1);
        let cursor = watch.cursor();
        let t0 = Instant::now();
        lab.tor_ns
            .ip(&["route", "add", &format!("{ip}/32"), "dev", "lo"])
            .unwrap();
        let ev = watch
            .wait(cursor, Duration::from_secs(5), |e| e.added && e.ip == ip)
            .unwrap();
        out.push((ev.at - t0).as_secs_f64() * 1e3);
        lab.tor_ns
            .ip(&["route", "del", &format!("{ip}/32"), "dev", "lo"])
            .unwrap();
    }
    out
}

/// Sorted copy's quantile (nearest rank).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}
