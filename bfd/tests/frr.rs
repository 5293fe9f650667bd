//! Interop with FRR 8.4's bfdd in network namespaces (needs root): single-hop sessions over
//! IPv4 and IPv6 with either side starting first, timer negotiation as FRR reports it, and
//! failure detection in both directions (link cut, bfdd killed, our side stopping).
//!
//! Every test builds its own pair of uniquely named namespaces (netlab); everything it starts
//! is owned by a guard that stops it on drop, also when an assertion fails.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use bfd::{Diag, PeerConfig, PeerState, State};
use common::{Ours, T, ip};
use netlab::frr::daemon_argv;
use netlab::{Check, LabDir, Netns, Process, wait_for};
use serde_json::Value;
use tokio::sync::watch;

/// FRR's bfdd (with the zebra it needs for interface names) in a namespace. netlab's `Frr`
/// starts zebra + bgpd only, so this is the same recipe for bfdd. Drop stops bfdd, then zebra.
struct Bfdd {
    dir: PathBuf,
    // Field order is drop order.
    bfdd: Process,
    _zebra: Process,
}

impl Bfdd {
    fn start(ns: &Netns, dir: &Path) -> Self {
        let d = dir.join("frr");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("zebra.conf"), "hostname frr\n").unwrap();
        fs::write(d.join("bfdd.conf"), "").unwrap();
        fs::write(d.join("vtysh.conf"), "").unwrap();
        let pathspace = netlab::names::unique("bfd");
        let argv =
            |daemon: &str| daemon_argv(daemon, &pathspace, &d.join(format!("{daemon}.conf")), &d);
        let zargs = argv("zebra");
        let zargv: Vec<&str> = zargs.iter().map(String::as_str).collect();
        let mut zebra = ns.spawn(&d, "zebra", &zargv).unwrap();
        let zserv = d.join("zserv.api");
        wait_for("zebra's socket", T, Duration::from_millis(20), || {
            zebra.check_running()?;
            Ok(if zserv.exists() {
                Check::Ready(())
            } else {
                Check::NotYet(zebra.log_tail())
            })
        })
        .unwrap();
        let mut bargs = argv("bfdd");
        // The control socket would default to /var/run/frr/<pathspace>/bfdd.sock.
        bargs.push("--bfdctl".into());
        bargs.push(d.join("bfdd.sock").to_string_lossy().into_owned());
        let bargv: Vec<&str> = bargs.iter().map(String::as_str).collect();
        let bfdd = ns.spawn(&d, "bfdd", &bargv).unwrap();
        let mut b = Bfdd {
            dir: d,
            bfdd,
            _zebra: zebra,
        };
        wait_for("bfdd to answer vtysh", T, Duration::from_millis(50), || {
            b.bfdd.check_running()?;
            Ok(match b.try_vtysh(&["show bfd peers json"]) {
                Some(_) => Check::Ready(()),
                None => Check::NotYet(b.bfdd.log_tail()),
            })
        })
        .unwrap();
        b
    }

    fn try_vtysh(&self, cmds: &[&str]) -> Option<String> {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket")
            .arg(&self.dir)
            .arg("--config_dir")
            .arg(&self.dir);
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        let out = c.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn configure(&self, lines: &[&str]) {
        let mut all = vec!["configure terminal", "bfd"];
        all.extend_from_slice(lines);
        self.try_vtysh(&all).expect("vtysh configure");
    }

    /// A single-hop peer with `rx`/`tx` ms and multiplier `mult`.
    fn add_peer(&self, remote: &str, local: &str, rx: u32, tx: u32, mult: u8) {
        let peer = format!("peer {remote} local-address {local} interface eth0");
        let rx = format!("receive-interval {rx}");
        let tx = format!("transmit-interval {tx}");
        let mult = format!("detect-multiplier {mult}");
        self.configure(&[&peer, &rx, &tx, &mult]);
    }

    /// A multihop peer (RFC 5883) with FRR's default timers and minimum TTL.
    fn add_multihop_peer(&self, remote: &str, local: &str) {
        self.configure(&[&format!("peer {remote} multihop local-address {local}")]);
    }

    /// FRR's `show bfd peers json` entry for `remote`.
    fn peer(&self, remote: IpAddr) -> Option<Value> {
        let text = self.try_vtysh(&["show bfd peers json"])?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v.as_array()?
            .iter()
            .find(|p| p.get("peer").and_then(Value::as_str) == Some(&remote.to_string()))
            .cloned()
    }

    fn status(&self, remote: IpAddr) -> String {
        self.peer(remote)
            .and_then(|p| p.get("status").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    }

    fn wait_status(&self, remote: IpAddr, want: &str) -> Value {
        wait_for(
            &format!("FRR to see {remote} {want}"),
            T,
            Duration::from_millis(5),
            || {
                let p = self.peer(remote);
                Ok(match p {
                    Some(p) if p.get("status").and_then(Value::as_str) == Some(want) => {
                        Check::Ready(p)
                    }
                    other => Check::NotYet(format!("{other:?}\n{}", self.bfdd.log_tail())),
                })
            },
        )
        .unwrap()
    }
}

/// Waits until our side of a session satisfies `f`; returns that state.
fn wait_ours(
    rx: &watch::Receiver<PeerState>,
    what: &str,
    frr: &Bfdd,
    f: impl Fn(&PeerState) -> bool,
) -> PeerState {
    wait_for(what, T, Duration::from_millis(5), || {
        let s = rx.borrow().clone();
        Ok(if f(&s) {
            Check::Ready(s)
        } else {
            Check::NotYet(format!("ours: {s:?}\nFRR log:\n{}", frr.bfdd.log_tail()))
        })
    })
    .unwrap()
}

struct Lab {
    // Field order is drop order: our task and bfdd before the namespaces.
    us: Ours,
    frr: Bfdd,
    dir: LabDir,
    frr_ns: Netns,
    _us_ns: Netns,
}

/// Two namespaces joined by veth `eth0`: ours 10.0.0.1/30 + fd00::1/64, FRR's 10.0.0.2/30 +
/// fd00::2/64.
fn lab(name: &str) -> Lab {
    let dir = LabDir::new(name).unwrap();
    let us_ns = Netns::new(&format!("{name}-us")).unwrap();
    let frr_ns = Netns::new(&format!("{name}-fr")).unwrap();
    netlab::veth(&us_ns, "eth0", &frr_ns, "eth0").unwrap();
    us_ns.addr_add("eth0", "10.0.0.1/30").unwrap();
    us_ns.addr_add("eth0", "fd00::1/64").unwrap();
    frr_ns.addr_add("eth0", "10.0.0.2/30").unwrap();
    frr_ns.addr_add("eth0", "fd00::2/64").unwrap();
    let frr = Bfdd::start(&frr_ns, dir.path());
    let us = Ours::start(&us_ns);
    Lab {
        us,
        frr,
        dir,
        frr_ns,
        _us_ns: us_ns,
    }
}

fn ms(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(u64::MAX)
}

fn is_up(s: &PeerState) -> bool {
    s.state == State::Up
}

/// Waits for Up on both sides, and for the Poll Sequence after Up to settle on the 300 ms
/// timers (both sides start at 1 s, RFC 5880 §6.8.3).
fn both_up(l: &Lab, rx: &watch::Receiver<PeerState>, remote_for_frr: IpAddr) -> PeerState {
    let s = wait_ours(rx, "our session Up at 300 ms", &l.frr, |s| {
        is_up(s) && s.tx_interval == Duration::from_millis(300)
    });
    let p = l.frr.wait_status(remote_for_frr, "up");
    assert_eq!(s.remote_discr, ms(&p, "id") as u32, "{p}");
    assert_eq!(u64::from(s.local_discr), ms(&p, "remote-id"), "{p}");
    s
}

#[test]
fn v4_we_start_first_up_then_link_cut() {
    let l = lab("bfd-v4a");
    let rx = l.us.add(PeerConfig::single_hop(
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        Some("eth0"),
    ));
    // We are alone for a while: Down, sending at 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.borrow().state, State::Down);
    l.frr.add_peer("10.0.0.1", "10.0.0.2", 300, 300, 3);
    let s = both_up(&l, &rx, ip("10.0.0.1"));
    assert_eq!(s.detection_time, Duration::from_millis(900));
    let p = wait_for(
        "FRR to take our 300 ms",
        T,
        Duration::from_millis(20),
        || {
            let p = l.frr.peer(ip("10.0.0.1")).unwrap_or_default();
            Ok(if ms(&p, "remote-transmit-interval") == 300 {
                Check::Ready(p)
            } else {
                Check::NotYet(p.to_string())
            })
        },
    )
    .unwrap();
    assert_eq!(ms(&p, "remote-receive-interval"), 300, "{p}");
    assert_eq!(ms(&p, "remote-detect-multiplier"), 3, "{p}");

    // Cut the link on FRR's side: no more packets either way.
    let cut = tokio::time::Instant::now();
    l.frr_ns.link_down("eth0").unwrap();
    let s = wait_ours(&rx, "our session Down", &l.frr, |s| s.state == State::Down);
    let took = s.since.duration_since(cut);
    eprintln!("MEASURED v4 link cut: our detection after {took:?} (detection time 900 ms)");
    assert_eq!(s.local_diag, Diag::ControlDetectionTimeExpired);
    assert!(took <= Duration::from_millis(900 + 200), "{took:?}");
    // FRR's own detection sees us go (its detection time is 3 x 300 ms as well).
    let p = l.frr.wait_status(ip("10.0.0.1"), "down");
    eprintln!("MEASURED v4 link cut: FRR down after {:?}", cut.elapsed());
    assert_eq!(
        p.get("diagnostic").and_then(Value::as_str),
        Some("control detection time expired"),
        "{p}"
    );
    // Back up: the session recovers.
    l.frr_ns.link_up("eth0").unwrap();
    wait_ours(&rx, "our session Up again", &l.frr, is_up);
}

#[test]
fn v4_frr_first_then_we_stop() {
    let mut l = lab("bfd-v4b");
    l.frr.add_peer("10.0.0.1", "10.0.0.2", 300, 300, 3);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(l.frr.status(ip("10.0.0.1")), "down");
    let rx = l.us.add(PeerConfig::single_hop(
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        Some("eth0"),
    ));
    both_up(&l, &rx, ip("10.0.0.1"));
    // Stopping our task sends AdminDown (RFC 5880 §6.8.16): FRR goes down at once, with
    // the remote diagnostic saying why.
    let t0 = Instant::now();
    l.us.stop();
    let p = l.frr.wait_status(ip("10.0.0.1"), "down");
    let took = t0.elapsed();
    eprintln!("MEASURED v4 our task stopped: FRR down after {took:?}: {p}");
    assert_eq!(
        p.get("remote-diagnostic").and_then(Value::as_str),
        Some("administratively down"),
        "{p}"
    );
    assert!(rx.has_changed().is_err(), "the watch closes with the task");
}

#[test]
fn v6_single_hop_up_then_bfdd_killed() {
    let mut l = lab("bfd-v6a");
    let rx = l.us.add(PeerConfig::single_hop(
        ip("fd00::1"),
        ip("fd00::2"),
        Some("eth0"),
    ));
    l.frr.add_peer("fd00::1", "fd00::2", 300, 300, 3);
    both_up(&l, &rx, ip("fd00::1"));
    // A crash: no AdminDown, so only our detection time can notice.
    let t0 = tokio::time::Instant::now();
    l.frr.bfdd.kill9().unwrap();
    let s = wait_ours(&rx, "our session Down", &l.frr, |s| s.state == State::Down);
    let took = s.since.duration_since(t0);
    eprintln!("MEASURED v6 bfdd SIGKILL: our detection after {took:?} (detection time 900 ms)");
    assert_eq!(s.local_diag, Diag::ControlDetectionTimeExpired);
    assert!(took <= Duration::from_millis(900 + 200), "{took:?}");
}

#[test]
fn v6_frr_first_then_peer_removed() {
    let l = lab("bfd-v6b");
    l.frr.add_peer("fd00::1", "fd00::2", 300, 300, 3);
    std::thread::sleep(Duration::from_millis(1200));
    let cfg = PeerConfig::single_hop(ip("fd00::1"), ip("fd00::2"), Some("eth0"));
    let rx = l.us.add(cfg.clone());
    both_up(&l, &rx, ip("fd00::1"));
    let t0 = Instant::now();
    assert!(l.us.remove(&cfg.key()));
    let p = l.frr.wait_status(ip("fd00::1"), "down");
    eprintln!("MEASURED v6 remove_peer: FRR down after {:?}", t0.elapsed());
    assert_eq!(
        p.get("remote-diagnostic").and_then(Value::as_str),
        Some("administratively down"),
        "{p}"
    );
}

#[test]
fn timers_negotiated_as_frr_shows() {
    let l = lab("bfd-tim");
    // FRR: receive 200 ms, transmit 400 ms, multiplier 5. Us: 100 ms / 250 ms / 4.
    l.frr.add_peer("10.0.0.1", "10.0.0.2", 200, 400, 5);
    let mut cfg = PeerConfig::single_hop(ip("10.0.0.1"), ip("10.0.0.2"), Some("eth0"));
    cfg.desired_min_tx = Duration::from_millis(100);
    cfg.required_min_rx = Duration::from_millis(250);
    cfg.detect_mult = 4;
    let rx = l.us.add(cfg);
    // RFC 5880 §6.8.7: we send every max(our 100, FRR's required 200) = 200 ms;
    // §6.8.4: we detect after FRR's 5 x max(our 250, FRR's 400) = 2000 ms.
    let s = wait_ours(&rx, "negotiated timers", &l.frr, |s| {
        is_up(s)
            && s.tx_interval == Duration::from_millis(200)
            && s.detection_time == Duration::from_millis(2000)
    });
    assert_eq!(s.remote_state, State::Up);
    let p = wait_for(
        "FRR's view of our timers",
        T,
        Duration::from_millis(20),
        || {
            let p = l.frr.peer(ip("10.0.0.1")).unwrap_or_default();
            Ok(
                if ms(&p, "remote-transmit-interval") == 100 && p["status"] == "up" {
                    Check::Ready(p)
                } else {
                    Check::NotYet(p.to_string())
                },
            )
        },
    )
    .unwrap();
    eprintln!("FRR peer json: {p}");
    assert_eq!(ms(&p, "remote-receive-interval"), 250, "{p}");
    assert_eq!(ms(&p, "remote-detect-multiplier"), 4, "{p}");
    assert_eq!(ms(&p, "receive-interval"), 200, "{p}");
    assert_eq!(ms(&p, "transmit-interval"), 400, "{p}");
    let _ = &l.dir;
}

#[test]
fn v4_multihop_up_then_link_cut() {
    let l = lab("bfd-mh");
    l.frr.add_multihop_peer("10.0.0.1", "10.0.0.2");
    let rx =
        l.us.add(PeerConfig::multihop(ip("10.0.0.1"), ip("10.0.0.2")));
    let s = both_up(&l, &rx, ip("10.0.0.1"));
    let p = l.frr.peer(ip("10.0.0.1")).unwrap();
    assert_eq!(p.get("multihop"), Some(&Value::Bool(true)), "{p}");
    assert_eq!(s.detection_time, Duration::from_millis(900));
    let cut = tokio::time::Instant::now();
    l.frr_ns.link_down("eth0").unwrap();
    let s = wait_ours(&rx, "our session Down", &l.frr, |s| s.state == State::Down);
    let took = s.since.duration_since(cut);
    eprintln!(
        "MEASURED v4 multihop link cut: our detection after {took:?} (detection time 900 ms)"
    );
    assert_eq!(s.local_diag, Diag::ControlDetectionTimeExpired);
}
