//! A program running inside a namespace, stopped on drop.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::describe;
use crate::error::{Error, Result};
use crate::netns::{Netns, Spawned};

/// How long [`Process::stop`] (and drop) waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many bytes of the log [`Error::Exited`] and [`Process::log_tail`] include.
const TAIL_BYTES: u64 = 8 * 1024;

/// A child process started with `ip netns exec` (which `exec`s, so the PID is the program's).
///
/// Its stdout and stderr both go to `<log_dir>/<name>.log`. Drop sends SIGTERM, waits up to
/// [`STOP_GRACE`], then SIGKILLs and reaps it. We keep the [`Child`] unreaped until then, so the
/// PID cannot be recycled under us and a signal never reaches a stranger.
#[derive(Debug)]
pub struct Process {
    name: String,
    pid: u32,
    child: Child,
    status: Option<ExitStatus>,
    log: PathBuf,
    cmdline: String,
    registry: Spawned,
}

impl Process {
    /// Spawns `argv` inside `ns` with extra environment `env`.
    pub fn spawn(
        ns: &Netns,
        log_dir: &Path,
        name: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut cmd = ns.command(argv);
        cmd.envs(env.iter().copied());
        Self::spawn_command(ns, log_dir, name, cmd)
    }

    /// Spawns a prepared command that enters `ns` itself (see
    /// [`Netns::command_host_mounts`]).
    pub fn spawn_command(ns: &Netns, log_dir: &Path, name: &str, mut cmd: Command) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let io = |source| Error::Io {
            path: log.clone(),
            source,
        };
        let out = File::create(&log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let cmdline = describe(&cmd);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: cmdline.clone(),
            source,
        })?;
        let registry = ns.spawned().clone();
        if let Ok(mut r) = registry.lock() {
            r.push(child.id());
        }
        Ok(Self {
            name: name.to_owned(),
            pid: child.id(),
            child,
            status: None,
            log,
            cmdline,
            registry,
        })
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process ID (in the host PID namespace).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The command line it was started with.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Where stdout and stderr are captured.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole captured output so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last few KiB of captured output, for error messages.
    pub fn log_tail(&self) -> String {
        let all = self.log();
        let cut = all.len().saturating_sub(TAIL_BYTES as usize);
        // Stay on a char boundary.
        let cut = (cut..=all.len())
            .find(|&i| all.is_char_boundary(i))
            .unwrap_or(all.len());
        all[cut..].to_owned()
    }

    /// Exit status if it has exited (reaps it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| Error::Sys {
                call: "waitpid",
                target: self.pid.to_string(),
                source,
            })?;
            if self.status.is_some() {
                self.unregister();
            }
        }
        Ok(self.status)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// `Ok` while running; [`Error::Exited`] with the log tail if it died.
    pub fn check_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                pid: self.pid,
                status,
                log: self.log.clone(),
                output: self.log_tail(),
            }),
        }
    }

    /// Sends `sig` unless the process has already been reaped.
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid).map_err(|_| Error::Sys {
            call: "kill",
            target: self.pid.to_string(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: kill(2) has no memory-safety preconditions; the PID is our unreaped child.
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(Error::Sys {
                call: "kill",
                target: self.pid.to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// SIGTERM (a graceful stop; does not wait).
    pub fn sigterm(&mut self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// SIGKILL and reap: simulates a crash (no BGP NOTIFICATION, no cleanup).
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal(libc::SIGKILL)?;
        self.wait()
    }

    /// Blocks until it exits.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.child.wait().map_err(|source| Error::Sys {
            call: "waitpid",
            target: self.pid.to_string(),
            source,
        })?;
        self.status = Some(s);
        self.unregister();
        Ok(s)
    }

    /// Reaped: the PID may be recycled from now on, so the namespace must forget it.
    fn unregister(&mut self) {
        if let Ok(mut r) = self.registry.lock() {
            r.retain(|&p| p != self.pid);
        }
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL; returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.sigterm()?;
        if let Some(s) = self.wait_timeout(STOP_GRACE)? {
            return Ok(s);
        }
        self.kill9()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("netlab: stopping {} (pid {}): {e}", self.name, self.pid);
        }
    }
}
