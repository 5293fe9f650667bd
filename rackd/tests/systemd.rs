//! rackd under systemd: the notify protocol spoken by the real daemon to a socket of the
//! test's (standing in for the service manager), and the shipped unit and environment file
//! checked with systemd's own `systemd-analyze verify` and against rackd's options.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::BufReader;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rackd_api::{Reply, Request};

const CONFIG: &str = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: pool}\nspec:\n  blocks: [{cidr: 10.78.0.0/24}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80, protocol: TCP}]\n";

fn workspace_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts rackd with its files in `dir` and `env` added; returns it with its admin socket and
/// log paths.
fn start(dir: &Path, config: Option<&str>, env: &[(&str, &OsStr)]) -> (Daemon, PathBuf, PathBuf) {
    let (cfg, state) = (dir.join("cfg"), dir.join("state"));
    std::fs::create_dir(&cfg).unwrap();
    if let Some(c) = config {
        std::fs::write(cfg.join("lb.yaml"), c).unwrap();
    }
    let (sock, log) = (dir.join("admin.sock"), dir.join("rackd.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rackd"));
    cmd.args(["--node-name", "n1", "--metrics-addr", "off", "--config-dir"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .arg("--admin-socket")
        .arg(&sock)
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out));
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Daemon(cmd.spawn().unwrap()), sock, log)
}

/// The next message, or `None` once `until` has passed.
fn recv(rx: &UnixDatagram, until: Instant) -> Option<String> {
    let left = until.checked_duration_since(Instant::now())?;
    rx.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = rx.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads messages until one satisfies `want`; returns it.
fn wait_message(
    rx: &UnixDatagram,
    what: &str,
    seen: &mut Vec<String>,
    log: &Path,
    want: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    while let Some(m) = recv(rx, until) {
        seen.push(m.clone());
        if want(&m) {
            return m;
        }
    }
    panic!(
        "no {what} from rackd; messages: {seen:?}\nlog:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn call(sock: &Path, req: &Request) -> Reply {
    let s = UnixStream::connect(sock).unwrap();
    rackd_api::write_message(&s, req).unwrap();
    rackd_api::read_message(BufReader::new(&s)).unwrap()
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let rx = UnixDatagram::bind(&notify).unwrap();
    // A 400 ms watchdog: pings every 200 ms.
    let (mut daemon, sock, log) = start(
        dir.path(),
        Some(CONFIG),
        &[
            ("NOTIFY_SOCKET", notify.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("400000")),
        ],
    );
    let cfg = dir.path().join("cfg");
    let mut seen = Vec::new();

    // READY=1 means what systemd's dependants take it to mean: the configuration is applied
    // (the Service has its LoadBalancer IP) and the admin socket answers, right now.
    let ready = wait_message(&rx, "READY=1", &mut seen, &log, |m| {
        m.lines().any(|l| l == "READY=1")
    });
    let Reply::LbipamServices(svcs) = call(&sock, &Request::LbipamServices) else {
        panic!("no LB-IPAM reply");
    };
    assert!(
        svcs.iter()
            .any(|s| s.name.ends_with("web") && s.ips.iter().any(|ip| ip.starts_with("10.78.0."))),
        "{svcs:?}"
    );
    assert!(
        ready
            .lines()
            .any(|l| l == "STATUS=BGP sessions established 0/0, objects 2, config errors 0"),
        "{ready:?}"
    );

    // Watchdog pings keep coming (from the controller loop).
    for _ in 0..3 {
        wait_message(&rx, "WATCHDOG=1", &mut seen, &log, |m| m == "WATCHDOG=1");
    }

    // A bad file is one config error, and `systemctl status` hears of it.
    std::fs::write(cfg.join("bad.yaml"), "kind: Service\nmetadata: [\n").unwrap();
    wait_message(&rx, "a STATUS with the error", &mut seen, &log, |m| {
        m.starts_with("STATUS=") && m.ends_with("config errors 1")
    });
    std::fs::remove_file(cfg.join("bad.yaml")).unwrap();
    wait_message(&rx, "a STATUS without it", &mut seen, &log, |m| {
        m.starts_with("STATUS=") && m.ends_with("config errors 0")
    });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_message(&rx, "STOPPING=1", &mut seen, &log, |m| m == "STOPPING=1");
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "admin socket left behind");
    // Every message is one the protocol knows.
    for m in &seen {
        for l in m.lines() {
            assert!(
                ["READY=1", "WATCHDOG=1", "STOPPING=1"].contains(&l) || l.starts_with("STATUS="),
                "{l:?} in {seen:?}"
            );
        }
    }
}

/// A bad NOTIFY_SOCKET is reported and rackd runs on (it still serves its admin socket).
#[test]
fn a_bad_notify_socket_is_one_clear_error_and_rackd_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, sock, log) = start(
        dir.path(),
        None,
        &[("NOTIFY_SOCKET", OsStr::new("relative/notify"))],
    );
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            rackd_api::write_message(&s, &Request::Status).unwrap();
            if let Ok(Reply::Status(_)) = rackd_api::read_message(BufReader::new(&s)) {
                break;
            }
        }
        assert!(Instant::now() < until, "rackd did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("NOTIFY_SOCKET=\"relative/notify\": expected an absolute socket path")
            .count(),
        1,
        "{text}"
    );
}

/// A bad WATCHDOG_USEC is one clear error; readiness still reaches the service manager and no
/// watchdog ping is sent.
#[test]
fn a_bad_watchdog_value_is_one_clear_error_and_ready_still_goes_out() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let rx = UnixDatagram::bind(&notify).unwrap();
    let (_daemon, _sock, log) = start(
        dir.path(),
        None,
        &[
            ("NOTIFY_SOCKET", notify.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("30s")),
        ],
    );
    let mut seen = Vec::new();
    wait_message(&rx, "READY=1", &mut seen, &log, |m| {
        m.lines().any(|l| l == "READY=1")
    });
    // Were the watchdog on, a ping would come at once (the first tick is immediate).
    let until = Instant::now() + Duration::from_secs(1);
    while let Some(m) = recv(&rx, until) {
        seen.push(m);
    }
    assert!(!seen.iter().any(|m| m == "WATCHDOG=1"), "{seen:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("WATCHDOG_USEC=\"30s\": expected a positive whole number")
            .count(),
        1,
        "{text}"
    );
}

/// The shipped unit passes systemd's own checks (with ExecStart pointing at this build: the
/// verifier insists the binary exists), warnings included.
#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(workspace_file("configs/systemd/rackd.service")).unwrap();
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nWatchdogSec="));
    let exec = "ExecStart=/usr/local/bin/rackd run";
    assert_eq!(unit.matches(exec).count(), 1, "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rackd.service");
    std::fs::write(
        &path,
        unit.replace(
            exec,
            &format!("ExecStart={} run", env!("CARGO_BIN_EXE_rackd")),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/setup.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// `rackd run` is what the unit starts; the environment file names every variable rackd reads
/// and nothing else (a misspelt name there would be silently ignored).
#[test]
fn the_environment_file_matches_rackds_options() {
    let help = Command::new(env!("CARGO_BIN_EXE_rackd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut known: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split_once('=').map(|(k, _)| k.to_owned()))
        .collect();
    // The options file is for running by hand; the unit passes options as variables.
    assert!(known.remove("RACKD_CONFIG"), "{known:?}");
    let env = std::fs::read_to_string(workspace_file("configs/systemd/rackd.env")).unwrap();
    let named: BTreeSet<String> = env
        .lines()
        .map(|l| l.trim_start_matches('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k.to_owned())
        .filter(|k| k.starts_with("RACKD_"))
        .collect();
    // RACKD_LOG is the log filter (tracing's EnvFilter), not a flag.
    known.insert("RACKD_LOG".into());
    assert_eq!(named, known);
    let run = Command::new(env!("CARGO_BIN_EXE_rackd"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(run.status.success());
}
