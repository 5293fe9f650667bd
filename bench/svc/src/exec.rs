//! Running a tool inside a namespace with its wall time and CPU time measured.
//!
//! The child enters the namespace itself (`setns` between fork and exec) rather than through
//! `ip netns exec`, whose mount-namespace setup would add a few milliseconds to every timing.
//! Its input comes from a file, so our own writing speed is not part of the measurement.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a timed run took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// Spawn to exit.
    pub wall: Duration,
    /// The child's user CPU time.
    pub user: Duration,
    /// The child's system CPU time (the kernel's work on its netlink messages included).
    pub sys: Duration,
}

/// A per-run scratch directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates `<tmp>/svc-bench-<pid>-<n>-<rand>`.
    pub fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(netlab::names::unique("svc-bench"));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Writes `text` to `<dir>/<name>` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tv(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// Runs `argv` inside the namespace at `netns_path` (a `/run/netns/<name>` file) with `stdin`
/// as its standard input; error unless it exits 0.
pub fn run_in_netns(
    netns_path: &Path,
    argv: &[&str],
    stdin: &Path,
    scratch: &Scratch,
) -> Result<Timed> {
    run_in_netns_limited(netns_path, argv, stdin, scratch, None)
}

/// [`run_in_netns`] with a time limit: past `limit` the child (ours, unreaped, so its PID cannot
/// have been reused) is SIGKILLed and [`Error::Timeout`] returned.
pub fn run_in_netns_limited(
    netns_path: &Path,
    argv: &[&str],
    stdin: &Path,
    scratch: &Scratch,
    limit: Option<Duration>,
) -> Result<Timed> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Config("empty command".into()))?;
    let line = argv.join(" ");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let ns = File::open(netns_path).map_err(io(netns_path))?;
    let input = File::open(stdin).map_err(io(stdin))?;
    let err_path = scratch.path().join("stderr");
    let err = File::create(&err_path).map_err(io(&err_path))?;
    let ns_fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::from(err));
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; setns(2) is a
    // plain system call on an fd that stays open in the parent until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        cmd: line.clone(),
        source,
    })?;
    let pid =
        libc::pid_t::try_from(child.id()).map_err(|_| Error::Config("pid out of range".into()))?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 instead of Child::wait: it also returns the child's CPU times. The pid is our own
    // unreaped child, so it cannot name another process. Polled (WNOHANG) so a limit can be
    // enforced without a second thread racing the reaping; the poll interval bounds the timing
    // error (0.1 ms for the first 10 ms, then 1 ms).
    let mut killed = false;
    let rc = loop {
        // SAFETY: valid pointers to locals for the duration of the call.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc != 0 {
            break rc;
        }
        let elapsed = start.elapsed();
        if !killed && limit.is_some_and(|l| elapsed > l) {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(if elapsed < Duration::from_millis(10) {
            Duration::from_micros(100)
        } else {
            Duration::from_millis(1)
        });
    };
    let wall = start.elapsed();
    if killed {
        return Err(Error::Timeout {
            cmd: line,
            after: wall,
        });
    }
    drop(ns);
    if rc != pid {
        return Err(Error::Spawn {
            cmd: line,
            source: std::io::Error::last_os_error(),
        });
    }
    let status = ExitStatus::from_raw(status);
    if !status.success() {
        let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        stderr.truncate(4096);
        return Err(Error::Command {
            cmd: line,
            status,
            stderr,
        });
    }
    Ok(Timed {
        wall,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
    })
}

/// Runs `argv` inside the namespace (untimed) and returns its stdout.
pub fn output_in_netns(ns: &netlab::Netns, argv: &[&str]) -> Result<String> {
    let out = ns
        .command_host_mounts(argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            cmd: argv.join(" "),
            source,
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.truncate(4096);
        return Err(Error::Command {
            cmd: argv.join(" "),
            status: out.status,
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An fd we opened, closed on drop (for maps of the raw BPF floor).
pub fn owned_fd(raw: libc::c_int) -> OwnedFd {
    // SAFETY: callers pass an fd returned by a successful system call that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}
