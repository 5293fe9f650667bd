//! A configuration directory that is missing (plain `rackd` on a machine without
//! `/etc/rackd`) is one error, reported once per change of state (log, metric, `rackctl
//! status`), and rackd waits for the next poll instead of spinning: it used to log the error
//! about 6,600 times a second and burn a core. When the directory appears, it is read.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rackd_api::{Reply, Request};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(sock: &Path) -> Option<rackd_api::Status> {
    let s = UnixStream::connect(sock).ok()?;
    rackd_api::write_message(&s, &Request::Status).ok()?;
    match rackd_api::read_message(BufReader::new(&s)).ok()? {
        Reply::Status(st) => Some(st),
        _ => None,
    }
}

/// utime + stime of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / hz
}

#[test]
fn a_missing_config_dir_is_reported_once_and_never_spins() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("etc-rackd");
    let (sock, log) = (dir.path().join("admin.sock"), dir.path().join("rackd.log"));
    let out = std::fs::File::create(&log).unwrap();
    let d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rackd"))
            .args(["--node-name", "n1", "--metrics-addr", "off", "--config-dir"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--admin-socket")
            .arg(&sock)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    let st = loop {
        if let Some(s) = status(&sock)
            && !s.config_errors.is_empty()
        {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rackd did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // `rackctl status`: the source, as a condition and an error line.
    assert!(
        st.conditions
            .iter()
            .any(|c| c.condition.type_ == "rackd.io/SourceUnavailable"
                && c.condition.message.contains("etc-rackd")),
        "{:?}",
        st.conditions
    );
    assert_eq!(st.config_errors.len(), 1, "{:?}", st.config_errors);

    // Two seconds at the 250 ms poll: eight or so scans, one log line, and the process
    // mostly idle (a spinning loop burns the whole two seconds of CPU).
    let cpu0 = cpu_seconds(d.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds(d.0.id()) - cpu0;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("configuration directory unreadable").count(),
        1,
        "{text}"
    );
    assert!(
        cpu < 1.0,
        "{cpu:.2} s of CPU in 2 s: the source spins\n{text}"
    );
    assert!(status(&sock).is_some(), "still serving");

    // The directory appears: it is read, and the problem is gone.
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(
        cfg.join("pool.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  blocks: [{cidr: 10.9.0.0/24}]\n",
    )
    .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(s) = status(&sock)
            && s.config_errors.is_empty()
            && s.objects
                .iter()
                .any(|(k, n)| k == "CiliumLoadBalancerIPPool" && *n == 1)
        {
            assert!(s.conditions.is_empty(), "{:?}", s.conditions);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the directory was not read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
