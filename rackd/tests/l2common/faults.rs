//! The fault runs: a fault injected into the holder while the client probes and pings, what
//! each run measured ([`RunResult`]), the answers it requires in each window, and the table
//! of figures per fault kind.

use super::*;
use netlab::figures::sh;

/// A fault injected into the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of rackd (the node's kernel keeps running and still delivers traffic that
    /// reaches it).
    Kill9,
    /// The node dies: `kill -9` of rackd and its eth0 down at once (power loss, cable pull).
    Crash,
    /// `ip link set eth0 down` on the holder.
    LinkDown,
    /// SIGTERM: planned handover.
    Sigterm,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Kill9, Fault::Crash, Fault::LinkDown, Fault::Sigterm];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::Crash => "node crash (kill -9 + link down)",
            Fault::LinkDown => "link down",
            Fault::Sigterm => "SIGTERM",
        }
    }
}

/// What one fault run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub fault: Fault,
    /// The faulted node and the nodes holding (IPv4, IPv6) afterwards.
    pub old: usize,
    pub new: (usize, usize),
    /// Fault → first gratuitous ARP / unsolicited NA from the new owner, for the families
    /// the faulted node held.
    pub detect4: Option<Duration>,
    pub detect6: Option<Duration>,
    /// Longest gap between two ping replies after the fault, for the families the faulted
    /// node held.
    pub outage4: Option<Duration>,
    pub outage6: Option<Duration>,
    /// Prober windows (10 ms) in which two MACs answered, per family.
    pub double4: usize,
    pub double6: usize,
    /// Prober windows: each one an ARP request and a neighbour solicitation sent.
    pub requests: usize,
    /// Answers to the prober in the windows before the fault, per family (expected: only
    /// from the holders then, `before_holders`).
    pub before4: Answered,
    pub before6: Answered,
    pub before_holders: (usize, usize),
    /// Answers in the windows after the new holders (`new`) were settled, per family.
    pub after4: Answered,
    pub after6: Answered,
}

/// Answers of one family in the prober windows of one phase of a fault run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    /// Windows in the phase (each one a probe sent).
    pub windows: usize,
    /// How many of those windows each MAC answered in.
    pub by: BTreeMap<[u8; 6], usize>,
}

impl Answered {
    /// Problems, if the phase had no probes, or `owner` did not answer, or another MAC did.
    fn problems(&self, phase: &str, family: &str, lab: &L2Lab, owner: usize) -> Vec<String> {
        let owner_mac = lab.nodes[owner].mac;
        let name = |mac: &[u8; 6]| {
            lab.node_of(*mac)
                .map_or_else(|| mac_str(mac), |i| lab.nodes[i].name.clone())
        };
        let mut out = Vec::new();
        if self.windows == 0 {
            out.push(format!("{phase}: no {family} probe was sent"));
        } else if self.by.get(&owner_mac).copied().unwrap_or(0) == 0 {
            out.push(format!(
                "{phase}: {} (the holder) answered none of {} {family} probes",
                lab.nodes[owner].name, self.windows
            ));
        }
        for (mac, n) in &self.by {
            if *mac != owner_mac {
                out.push(format!(
                    "{phase}: {} answered {n} of {} {family} probes, but {} holds the address",
                    name(mac),
                    self.windows,
                    lab.nodes[owner].name
                ));
            }
        }
        out
    }
}

/// Injects `fault` into the holder of the IPv4 VIP (`target_v6`: of the IPv6 VIP), waits for
/// another node to answer for every VIP it held and for the client to follow, restores the
/// faulted node, and returns the figures.
pub fn run_fault(lab: &mut L2Lab, fault: Fault, target_v6: bool) -> RunResult {
    let (h4, h6) = lab.wait_settled(Duration::from_secs(60));
    let old = if target_v6 { h6 } else { h4 };
    let (moves4, moves6) = (h4 == old, h6 == old);
    let prober = Prober::start(lab, Duration::from_millis(10));
    let ping4 = Ping::start(lab, &VIP4.to_string());
    let ping6 = Ping::start(lab, &VIP6.to_string());
    std::thread::sleep(Duration::from_millis(300));
    let t_fault = Instant::now();
    let wall_fault = SystemTime::now();
    match fault {
        Fault::Kill9 => {
            lab.nodes[old].rackd.as_mut().unwrap().kill9().unwrap();
        }
        Fault::Crash => {
            lab.nodes[old].rackd.as_mut().unwrap().kill9().unwrap();
            lab.nodes[old].ns.link_down("eth0").unwrap();
        }
        Fault::LinkDown => lab.nodes[old].ns.link_down("eth0").unwrap(),
        Fault::Sigterm => lab.nodes[old].rackd.as_mut().unwrap().sigterm().unwrap(),
    }
    let new = wait_for(
        "other nodes to take the faulted node's VIPs over and the client to follow",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            if !lab.client_reaches() {
                return Ok(netlab::Check::NotYet("client cannot reach the VIPs".into()));
            }
            let mut got = Vec::new();
            for vip in [VIP4.to_string(), VIP6.to_string()] {
                let h: Vec<usize> = lab
                    .holders(&vip)
                    .into_iter()
                    .filter(|h| *h != old)
                    .collect();
                match h[..] {
                    [n] if lab.client_neigh(&vip) == Some(lab.nodes[n].mac) => got.push(n),
                    _ => return Ok(netlab::Check::NotYet(format!("{vip}: holders {h:?}"))),
                }
            }
            Ok(netlab::Check::Ready((got[0], got[1])))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let t_settled = Instant::now();
    // Some steady state under the new owners.
    std::thread::sleep(Duration::from_millis(300));
    let events = prober.stop();
    let outage4 = ping4.stop_and_max_gap(wall_fault);
    let outage6 = ping6.stop_and_max_gap(wall_fault);
    let first = |kind: Kind, n: usize| {
        let mac = lab.nodes[n].mac;
        events
            .events
            .iter()
            .find(|e| e.kind == kind && e.mac == mac && e.t >= t_fault)
            .map(|e| e.t - t_fault)
            .unwrap_or_else(|| {
                panic!(
                    "no {kind:?} from the new owner {}\n{}",
                    lab.nodes[n].name,
                    lab.logs()
                )
            })
    };
    let r = RunResult {
        fault,
        old,
        new,
        detect4: moves4.then(|| first(Kind::Garp4, new.0)),
        detect6: moves6.then(|| first(Kind::Una6, new.1)),
        outage4: moves4.then_some(outage4),
        outage6: moves6.then_some(outage6),
        double4: events.double_answers(Kind::Reply4),
        double6: events.double_answers(Kind::Reply6),
        requests: events.requests.len(),
        // Windows wholly before the fault, and those begun once the new holders were settled
        // (the ones in between see the handover).
        before4: events.answered(Kind::Reply4, |_, end| end.is_some_and(|e| e <= t_fault)),
        before6: events.answered(Kind::Reply6, |_, end| end.is_some_and(|e| e <= t_fault)),
        before_holders: (h4, h6),
        after4: events.answered(Kind::Reply4, |start, _| start >= t_settled),
        after6: events.answered(Kind::Reply6, |start, _| start >= t_settled),
    };
    // The prober is only evidence if it probed and was answered, by the holder of the time,
    // before the fault and after the failover.
    let problems: Vec<String> = [
        r.before4.problems("before the fault", "ARP", lab, h4),
        r.before6.problems("before the fault", "NS", lab, h6),
        r.after4.problems("after the failover", "ARP", lab, new.0),
        r.after6.problems("after the failover", "NS", lab, new.1),
    ]
    .concat();
    assert!(
        problems.is_empty(),
        "{} of {}: {}\n{r:?}\n{}",
        fault.name(),
        lab.nodes[old].name,
        problems.join("; "),
        lab.logs()
    );

    // Restore the faulted node; it rejoins without taking anything back.
    match fault {
        Fault::Kill9 => lab.start(old),
        Fault::Crash => {
            lab.nodes[old].ns.link_up("eth0").unwrap();
            lab.start(old);
        }
        Fault::Sigterm => {
            let status = lab.nodes[old]
                .rackd
                .as_mut()
                .unwrap()
                .wait_timeout(Duration::from_secs(10))
                .unwrap();
            assert!(
                status.is_some_and(|s| s.success()),
                "rackd did not exit cleanly on SIGTERM: {status:?}\n{}",
                lab.log(old)
            );
            lab.start(old);
        }
        Fault::LinkDown => lab.nodes[old].ns.link_up("eth0").unwrap(),
    }
    r
}

// ---- statistics ------------------------------------------------------------------------------

/// Every fault kind `runs` times on `lab`, asserting each time that another node took over
/// and that no prober window saw two MACs; prints each run's figures.
pub fn run_all_faults(lab: &mut L2Lab, runs: usize) -> Vec<RunResult> {
    let mut results = Vec::new();
    for fault in Fault::ALL {
        for run in 0..runs {
            let r = run_fault(lab, fault, run % 2 == 1);
            assert!(r.new.0 != r.old && r.new.1 != r.old, "{r:?}");
            assert_eq!(
                (r.double4, r.double6),
                (0, 0),
                "{} run {run}: two MACs answered in the same prober window\n{r:?}\n{}",
                fault.name(),
                lab.logs()
            );
            eprintln!(
                "{} run {run}: {} -> {}/{}, detect {:?}/{:?}, outage {:?}/{:?}, {} probes",
                fault.name(),
                lab.nodes[r.old].name,
                lab.nodes[r.new.0].name,
                lab.nodes[r.new.1].name,
                r.detect4,
                r.detect6,
                r.outage4,
                r.outage6,
                r.requests
            );
            results.push(r);
        }
    }
    results
}

/// (median, p95, max) in milliseconds.
pub fn stats(v: Vec<Duration>) -> (f64, f64, f64) {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let s = netlab::figures::Summary::of(&ms);
    (s.median, s.p95, s.max)
}

/// A table of figures per fault kind.
pub fn report(results: &[RunResult]) -> String {
    let mut out = String::from(
        "| fault | runs | T_detect IPv4 median / p95 / max | T_detect IPv6 | T_outage IPv4 (ping) | T_outage IPv6 | two MACs |\n|---|---|---|---|---|---|---|\n",
    );
    for fault in Fault::ALL {
        let r: Vec<&RunResult> = results.iter().filter(|r| r.fault == fault).collect();
        if r.is_empty() {
            continue;
        }
        let f = |v: Vec<Duration>| {
            if v.is_empty() {
                return "-".to_owned();
            }
            let n = v.len();
            let (a, b, c) = stats(v);
            format!("{a:.0} / {b:.0} / {c:.0} ms (n={n})")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            fault.name(),
            r.len(),
            f(r.iter().filter_map(|r| r.detect4).collect()),
            f(r.iter().filter_map(|r| r.detect6).collect()),
            f(r.iter().filter_map(|r| r.outage4).collect()),
            f(r.iter().filter_map(|r| r.outage6).collect()),
            r.iter().map(|r| r.double4 + r.double6).sum::<usize>(),
        ));
    }
    out
}

/// The fault runs as JSON at `out`, with the lease backend, the timings, date, commit and
/// machine.
pub fn write_results(out: &Path, backend: &str, results: &[RunResult]) {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let runs: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "fault": r.fault.name(),
                "detect4_ms": ms(r.detect4),
                "detect6_ms": ms(r.detect6),
                "outage4_ms": ms(r.outage4),
                "outage6_ms": ms(r.outage6),
                "two_macs_windows": r.double4 + r.double6,
                "probes": r.requests,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "test": "l2 fault runs",
        "backend": backend,
        "timings": {"lease": FAST.lease, "renew": FAST.renew, "retry": FAST.retry},
        "date": sh("date -u +%FT%TZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain -uno").is_empty(),
        "machine": {
            "cpus": sh("nproc"),
            "kernel": sh("uname -r"),
            "loadavg": sh("cat /proc/loadavg"),
        },
        "report": report(results),
        "runs": runs,
    });
    if let Err(e) = std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap_or_default()) {
        panic!("writing {}: {e}", out.display());
    }
}
