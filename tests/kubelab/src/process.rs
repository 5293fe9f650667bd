//! Long-running children (etcd, kube-apiserver, kube-controller-manager), each in its own
//! process group, logging to a file, stopped by PID.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A started daemon. It is ours while unreaped, so signalling its PID (and its process group,
/// which it leads) cannot hit a recycled PID.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub(crate) component: &'static str,
    child: Child,
    pub(crate) log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `program args` (inside `netns` through `ip netns exec`, which execs it, so the
    /// PID is the program's own), appending stdout and stderr to `log`.
    pub(crate) fn spawn(
        component: &'static str,
        program: &Path,
        args: &[String],
        netns: Option<&str>,
        log: &Path,
    ) -> Result<Daemon> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let mut cmd = wrap(program, netns);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", program.display()), e))?;
        Ok(Daemon {
            component,
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited (and been reaped).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// A start error carrying the tail of this daemon's log.
    pub(crate) fn start_error(&self, reason: String) -> Error {
        Error::Start {
            component: self.component,
            reason,
            log: self.log.clone(),
            log_tail: log_tail(&self.log, 30),
        }
    }

    fn signal_group(&self, sig: libc::c_int) {
        if self.exited.is_some() {
            return;
        }
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) takes plain integers; the group is led by our unreaped child.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`; waits for the exit.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL to the process group; waits for the exit.
    pub(crate) fn kill(&mut self) {
        if self.exited().is_some() {
            return;
        }
        self.signal_group(libc::SIGKILL);
        if let Ok(status) = self.child.wait() {
            self.exited = Some(status);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// `program`, or `ip netns exec <netns> program`.
pub(crate) fn wrap(program: &Path, netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The last `lines` lines of a log file (or why it could not be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => crate::tail(&String::from_utf8_lossy(&bytes), lines),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Whether a log file contains `needle`.
pub(crate) fn log_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).contains(needle))
        .unwrap_or(false)
}
