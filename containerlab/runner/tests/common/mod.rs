//! What the lab tests share: a lab brought up under a private name through the `rackd-lab`
//! binary and taken down when dropped (with the ToR's tables and the rackd logs printed first
//! if the test is failing), polling waits, and reaping of the daemons `up` leaves behind.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The repository's lab file, `containerlab/rackd-bgp.clab.yml`.
pub fn lab_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rackd-bgp.clab.yml")
}

/// A name no other test, run or parallel suite uses: `<prefix><pid>-<counter>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A lab under a private name; dropped = `rackd-lab down`.
pub struct Lab {
    pub name: String,
    pub file: PathBuf,
}

impl Lab {
    /// `rackd-lab --name <prefix><pid>-<n> up <file>`; panics with the runner's output if it
    /// fails (a failed `up` removes what it created).
    pub fn up(prefix: &str, file: PathBuf) -> Lab {
        let lab = Lab {
            name: unique(prefix),
            file,
        };
        let out = lab.cmd(&["up", lab.file.to_str().unwrap()]);
        assert!(out.status.success(), "up failed:\n{}", text(&out));
        lab
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rackd-lab"))
            .arg("--name")
            .arg(&self.name)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn exec(&self, node: &str, argv: &[&str]) -> Output {
        let mut a = vec!["exec", self.file.to_str().unwrap(), node];
        a.extend_from_slice(argv);
        self.cmd(&a)
    }

    pub fn json(&self, node: &str, argv: &[&str]) -> Value {
        let out = self.exec(node, argv);
        assert!(out.status.success(), "{argv:?} on {node}:\n{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `vtysh -c c1 -c c2 ...` on the ToR in one call, one JSON document per command
    /// (vtysh prints them back to back).
    pub fn vtysh_json(&self, cmds: &[&str]) -> Result<Vec<Value>, String> {
        let mut argv = vec!["vtysh"];
        for c in cmds {
            argv.extend(["-c", c]);
        }
        let out = self.exec("tor", &argv);
        if !out.status.success() {
            return Err(text(&out));
        }
        let docs: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<Value>()
            .collect();
        match docs {
            Ok(d) if d.len() == cmds.len() => Ok(d),
            _ => Err(format!("{cmds:?} gave:\n{}", text(&out))),
        }
    }

    /// The lab's directory: state file, per-node directories with the daemons' logs.
    pub fn dir(&self) -> PathBuf {
        Path::new("/run/rackd-lab").join(&self.name)
    }

    /// The recorded state (`state.json`).
    pub fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("state.json")).unwrap())
            .unwrap()
    }

    /// PIDs of every process `up` started.
    pub fn pids(&self) -> Vec<u32> {
        self.state()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap() as u32)
            .collect()
    }

    pub fn down(&self) -> Output {
        self.cmd(&["down", self.file.to_str().unwrap()])
    }

    /// `down`, then check that it was quiet and that none of `netns`, the lab's directory or
    /// the processes `pids` are left.
    pub fn down_and_assert_clean(&self, netns: &[String], pids: &[u32]) {
        let out = self.down();
        assert!(out.status.success(), "{}", text(&out));
        assert!(!text(&out).contains("warning"), "{}", text(&out));
        for ns in netns {
            assert!(
                !Path::new("/run/netns").join(ns).exists(),
                "{ns} left behind"
            );
        }
        assert!(!self.dir().exists(), "state left behind");
        assert_stopped_and_reap(pids);
    }

    /// What a failing test needs to see: the lab's processes, the ToR's sessions and both
    /// tables as JSON, and the end of each rackd log.
    pub fn diagnostics(&self) -> String {
        let mut s = text(&self.cmd(&["status", self.file.to_str().unwrap()]));
        for c in [
            "show bgp summary",
            "show bgp ipv4 unicast json",
            "show bgp ipv6 unicast json",
        ] {
            let out = self.exec("tor", &["vtysh", "-c", c]);
            s.push_str(&format!("\n--- ToR: {c}\n{}", text(&out)));
        }
        let Ok(st) = std::fs::read_to_string(self.dir().join("state.json")) else {
            return s;
        };
        let st: Value = serde_json::from_str(&st).unwrap_or_default();
        for n in st["nodes"].as_array().into_iter().flatten() {
            if n["role"] != "rackd" {
                continue;
            }
            let log = Path::new(n["dir"].as_str().unwrap_or_default()).join("rackd.log");
            let body = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            s.push_str(&format!(
                "\n--- {} (last 80 lines)\n{tail}\n",
                log.display()
            ));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lab {} at failure:\n{}", self.name, self.diagnostics());
        }
        let _ = self.down();
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` every 250 ms until it is `Ok`; after `timeout` panics with its last error.
pub fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last:\n{last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Orphaned daemons (their parent, `rackd-lab up`, exits at once) are re-parented to us
/// rather than to PID 1, so [`reap`] can collect them after `down` and leave no zombie even on
/// machines whose PID 1 does not reap.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// The one-letter state of `pid` from `/proc/<pid>/stat`, `None` if it is gone.
pub fn pid_state(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// After `down`: every PID of ours is gone or a zombie, which is reaped here (we are its
/// subreaper). A recycled PID is impossible this fast, so a live one means `down` missed it.
pub fn assert_stopped_and_reap(pids: &[u32]) {
    for &pid in pids {
        if let Some(s) = pid_state(pid) {
            assert_eq!(s, "Z", "pid {pid} still running");
            let mut status = 0;
            // SAFETY: waitpid on a specific PID that was re-parented to us.
            unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        }
    }
}
