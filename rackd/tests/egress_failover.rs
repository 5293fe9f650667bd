//! ★ Egress gateway failover under faults (issue 17), in the lab of `egresscommon`: node2 and
//! node3 are gateway candidates for the floating egress IP 10.0.6.100, elected under L2
//! announcements' etcd leases (1 s / 500 ms / 200 ms). Each fault kind (kill -9 of the
//! holder's rackd; a node crash, kill -9 and every link down; its links down with rackd alive;
//! SIGTERM, the planned handover) is injected `RACKD_EGW_RUNS` times (default 1, the smoke
//! size CI runs; 20 for the figures) while:
//!
//! - a pod on node1 opens a new connection to the server every 10 ms (50 ms connect
//!   timeout) and records the source address the server saw: T_outage is the longest gap
//!   between two successful new connections across the fault;
//! - the router sends an ARP request for the egress IP every 10 ms on the gateways' segment
//!   and tcpdump records every reply: no 10 ms window may hold replies from two MACs, and the
//!   holder must have answered before the fault and the survivor after it.
//!
//! Figures are printed; `RACKD_EGW_OUT=FILE` writes them as JSON (bench/egress/README.md).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod egresscommon;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use egresscommon::{FLOATING, Lab};
use netlab::figures::{Summary, sh};
use netlab::{Check, wait_for};

const EGRESS_IP: &str = "10.0.6.100";
const SERVER: &str = "10.0.4.2:80";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill9,
    Crash,
    LinkDown,
    Sigterm,
}

impl Fault {
    const ALL: [Fault; 4] = [Fault::Kill9, Fault::Crash, Fault::LinkDown, Fault::Sigterm];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::Crash => "node crash (kill -9 + links down)",
            Fault::LinkDown => "links down",
            Fault::Sigterm => "SIGTERM",
        }
    }
}

fn runs() -> usize {
    std::env::var("RACKD_EGW_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// New connections from tiefighter (node1) to the server, one every 10 ms (a lost SYN costs
/// the 50 ms connect timeout: the figures' resolution), until stopped:
/// (start, end, source the server saw) of each that succeeded.
struct Prober {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, Instant, IpAddr)>>,
}

impl Prober {
    fn start(lab: &Lab) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let ns = lab.pods[0].name().to_owned();
        let handle = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let to: SocketAddr = SERVER.parse().unwrap();
            let mut out = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                if let Some(src) = one(to) {
                    out.push((t0, Instant::now(), src));
                }
                std::thread::sleep(Duration::from_millis(10).saturating_sub(t0.elapsed()));
            }
            out
        });
        Prober { stop, handle }
    }

    fn stop(self) -> Vec<(Instant, Instant, IpAddr)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// One new connection and `GET /`: the source the server reports.
fn one(to: SocketAddr) -> Option<IpAddr> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(50)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some(netlab::echo::parse(body)?.1.ip())
}

/// ARP requests for the egress IP from the router every 10 ms, and every reply on the segment
/// (tcpdump in the segment's namespace): reply times and MACs.
struct ArpWatch {
    arping: netlab::Process,
    tcpdump: netlab::Process,
    file: std::path::PathBuf,
}

impl ArpWatch {
    fn start(lab: &Lab, tag: &str) -> ArpWatch {
        let file = lab.dir.path().join(format!("arp-{tag}.txt"));
        let f = file.to_str().unwrap().to_owned();
        let tcpdump = lab
            .net1
            .netns()
            .spawn(
                lab.dir.path(),
                &format!("tcpdump-{tag}"),
                &[
                    "sh",
                    "-c",
                    &format!(
                        "exec tcpdump -l -n -e -tt -i br0 'arp and arp[6:2] = 2' > {f} 2>/dev/null"
                    ),
                ],
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let arping = lab
            .tor
            .spawn(
                lab.dir.path(),
                &format!("arping-{tag}"),
                &["arping", "-q", "-W", "0.01", "-i", "eth6", EGRESS_IP],
            )
            .unwrap();
        ArpWatch {
            arping,
            tcpdump,
            file,
        }
    }

    /// (wall-clock seconds, MAC) of every reply.
    fn stop(mut self) -> Vec<(f64, String)> {
        let _ = self.arping.sigterm();
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.tcpdump.sigterm();
        let _ = self.tcpdump.wait_timeout(Duration::from_secs(5));
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(&format!("Reply {EGRESS_IP} is-at")))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let t: f64 = w.next()?.parse().ok()?;
                let mac = l.split("is-at ").nth(1)?.split([',', ' ']).next()?;
                Some((t, mac.to_owned()))
            })
            .collect()
    }
}

fn wall(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[derive(Debug)]
struct RunResult {
    fault: Fault,
    old: usize,
    new: usize,
    /// Longest gap between successful new connections across the fault.
    outage: Duration,
    /// 10 ms windows with ARP replies from two MACs.
    double: usize,
    /// Replies from the holder before the fault, from the survivor after the failover.
    before: usize,
    after: usize,
}

/// Restores node `i`'s links and the routes the kernel dropped with them.
fn links_up(lab: &Lab, i: usize) {
    let n = &lab.nodes[i];
    let x = i + 1;
    n.ip(&["link", "set", "eth0", "up"]).unwrap();
    n.ip(&["link", "set", "net1", "up"]).unwrap();
    let _ = n.route_add(&["10.0.0.0/8", "via", &format!("10.0.{x}.1")]);
    let _ = n.route_add(&["fd00::/16", "via", &format!("fd00:10:0:{x}::1")]);
}

fn links_down(lab: &Lab, i: usize) {
    for dev in ["net1", "eth0"] {
        lab.nodes[i].ip(&["link", "set", dev, "down"]).unwrap();
    }
}

/// Waits until one gateway answers ARP for the egress IP and new connections leave from it.
fn settled(lab: &Lab) -> usize {
    lab.wait_seen(0, "10.0.4.2", EGRESS_IP);
    wait_for(
        "a gateway answering for the egress IP",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let _ = lab
                .tor
                .output(&["arping", "-c", "1", "-w", "1", "-i", "eth6", EGRESS_IP]);
            Ok(match lab.arp_holder(EGRESS_IP) {
                Some(h) => Check::Ready(h),
                None => Check::NotYet(lab.logs()),
            })
        },
    )
    .unwrap()
}

fn run_fault(lab: &mut Lab, fault: Fault, tag: &str) -> RunResult {
    let old = settled(lab);
    let survivor = if old == 1 { 2 } else { 1 };
    let arp = ArpWatch::start(lab, tag);
    let prober = Prober::start(lab);
    std::thread::sleep(Duration::from_millis(500));
    let t_fault = Instant::now();
    let w_fault = wall(SystemTime::now());
    match fault {
        Fault::Kill9 => lab.kill_rackd(old),
        Fault::Crash => {
            lab.kill_rackd(old);
            links_down(lab, old);
        }
        Fault::LinkDown => links_down(lab, old),
        Fault::Sigterm => lab.rackd[old].as_mut().unwrap().sigterm().unwrap(),
    }
    // The survivor answers for the egress IP, and new connections leave from it again.
    wait_for(
        "the survivor to answer for the egress IP",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            Ok(if lab.arp_holder(EGRESS_IP) == Some(survivor) {
                Check::Ready(())
            } else {
                Check::NotYet(lab.logs())
            })
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let w_settled = wall(SystemTime::now());
    let conns = prober.stop();
    let replies = arp.stop();

    let egress: IpAddr = EGRESS_IP.parse().unwrap();
    assert!(
        conns.iter().all(|c| c.2 == egress),
        "a new connection left from another address: {conns:?}"
    );
    let before_fault = conns.iter().filter(|c| c.1 <= t_fault).count();
    let after = conns.iter().filter(|c| c.0 > t_fault).count();
    assert!(
        before_fault > 0 && after > 0,
        "{}: {before_fault} connections before the fault, {after} after\n{}",
        fault.name(),
        lab.logs()
    );
    let mut ends: Vec<Instant> = conns.iter().map(|c| c.1).collect();
    ends.sort();
    let outage = ends
        .windows(2)
        .filter(|w| w[1] > t_fault)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();

    let mac = |i: usize| lab.nodes[i].mac("net1").unwrap();
    let mut windows: BTreeMap<u64, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (t, m) in &replies {
        windows
            .entry((t * 100.0) as u64)
            .or_default()
            .insert(m.clone());
    }
    let double = windows.values().filter(|s| s.len() > 1).count();
    let before = replies
        .iter()
        .filter(|(t, m)| *t < w_fault && *m == mac(old))
        .count();
    let after_replies = replies
        .iter()
        .filter(|(t, m)| *t > w_settled - 1.0 && *m == mac(survivor))
        .count();

    // Restore the faulted node; it rejoins as a candidate without taking the IP back.
    match fault {
        Fault::Kill9 => lab.start_rackd(old),
        Fault::Crash => {
            links_up(lab, old);
            lab.start_rackd(old);
        }
        Fault::LinkDown => links_up(lab, old),
        Fault::Sigterm => {
            let st = lab.rackd[old]
                .as_mut()
                .unwrap()
                .wait_timeout(Duration::from_secs(10))
                .unwrap();
            assert!(st.is_some_and(|s| s.success()), "SIGTERM exit: {st:?}");
            lab.start_rackd(old);
        }
    }
    RunResult {
        fault,
        old,
        new: survivor,
        outage,
        double,
        before,
        after: after_replies,
    }
}

/// (median, p95, max) in ms.
fn stats(v: Vec<f64>) -> (f64, f64, f64) {
    let s = Summary::of(&v);
    (s.median, s.p95, s.max)
}

#[test]
fn egress_gateway_fails_over_under_every_fault_and_never_answers_twice() {
    let mut lab = Lab::with(&[1, 2], true);
    for i in 0..3 {
        lab.start_rackd(i);
    }
    lab.write_config("egress.yaml", FLOATING);
    let mut results = Vec::new();
    for fault in Fault::ALL {
        for run in 0..runs() {
            let r = run_fault(&mut lab, fault, &format!("{fault:?}-{run}"));
            eprintln!(
                "{} run {run}: node{} -> node{}, T_outage {:?}, ARP replies {} before / {} after, two MACs in {} windows",
                fault.name(),
                r.old + 1,
                r.new + 1,
                r.outage,
                r.before,
                r.after,
                r.double
            );
            assert_eq!(
                r.double, 0,
                "two gateways answered for the egress IP: {r:?}"
            );
            assert!(
                r.before > 0 && r.after > 0,
                "the ARP watch saw no answer from the holder before or the survivor after: {r:?}"
            );
            results.push(r);
        }
    }
    let mut table = String::from(
        "| fault | runs | T_outage new connections median / p95 / max (ms) | two MACs |\n|---|---|---|---|\n",
    );
    let mut by_fault = Vec::new();
    for fault in Fault::ALL {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.fault == fault)
            .map(|r| r.outage.as_secs_f64() * 1000.0)
            .collect();
        let (m, p, x) = stats(v.clone());
        table.push_str(&format!(
            "| {} | {} | {m:.0} / {p:.0} / {x:.0} | 0 |\n",
            fault.name(),
            v.len()
        ));
        by_fault.push(serde_json::json!({
            "fault": fault.name(), "runs": v.len(),
            "outage_ms": {"median": m, "p95": p, "max": x}, "samples_ms": v,
        }));
    }
    eprintln!("{table}");
    if let Ok(out) = std::env::var("RACKD_EGW_OUT") {
        let doc = serde_json::json!({
            "test": "egress gateway failover (rackd/tests/egress_failover.rs)",
            "command": "RACKD_EGW_RUNS=20 RACKD_EGW_OUT=FILE cargo test -p rackd --test egress_failover -- --nocapture",
            "lease_timings": {"duration": "1s", "renew_deadline": "500ms", "retry_period": "200ms"},
            "backend": "etcd",
            "probe": "new TCP connection + GET from a pod on a third node every 10 ms, 50 ms connect timeout",
            "date": sh("date -u +%FT%TZ"),
            "commit": sh("git rev-parse HEAD"),
            "dirty": !sh("git status --porcelain -uno").is_empty(),
            "machine": {"cpus": sh("nproc"), "kernel": sh("uname -r"), "loadavg": sh("cat /proc/loadavg")},
            "report": table,
            "faults": by_fault,
        });
        std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
}
