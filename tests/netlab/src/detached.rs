//! Processes that outlive the program that started them (the lab runner's daemons).
//!
//! [`crate::Process`] ties a daemon's life to a guard; a lab brought up by one command and taken
//! down by another needs the opposite: start a program inside a named namespace, detached from
//! our process group (so Ctrl-C on the caller does not reach it), remember its PID *and* its
//! start time, and later stop exactly that process. The start time (field 22 of
//! `/proc/<pid>/stat`, clock ticks since boot) is what makes a remembered PID safe to signal
//! after the original parent exited: a recycled PID has a different start time.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::describe;
use crate::error::{Error, Result};

/// A process started by [`spawn_detached`].
#[derive(Debug)]
pub struct Detached {
    /// The still unreaped child handle, to notice an early exit (`try_wait`) while the caller
    /// runs. Dropping it neither kills nor waits: the process lives on.
    pub child: Child,
    /// Its PID (the program's own: `ip netns exec` execs it).
    pub pid: u32,
    /// Its start time in clock ticks since boot, see [`start_time`].
    pub start_time: u64,
    /// The command line, for messages.
    pub cmdline: String,
}

/// Starts `argv` inside the named namespace (`ip netns exec <netns> argv...`) in its own process
/// group, stdin from `/dev/null`, stdout and stderr appended to `log`, with extra `env`.
pub fn spawn_detached(
    netns: &str,
    argv: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> Result<Detached> {
    let io = |source| Error::Io {
        path: log.to_path_buf(),
        source,
    };
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let cmdline = describe(&cmd);
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        cmd: cmdline.clone(),
        source,
    })?;
    let pid = child.id();
    // The child is unreaped, so this PID is still ours and its start time is the right one.
    let start_time = start_time(pid).ok_or_else(|| Error::Sys {
        call: "read /proc/<pid>/stat",
        target: pid.to_string(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    Ok(Detached {
        child,
        pid,
        start_time,
        cmdline,
    })
}

/// `(state, start time)` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain ')' and spaces): state is
    // field 3, starttime field 22, so index 0 and 19 of the rest.
    let (_, rest) = s.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(((*f.first()?).to_owned(), f.get(19)?.parse().ok()?))
}

/// The start time of `pid` (clock ticks since boot), `None` if there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// Whether the process `pid` started at `start_time` still runs (exists, is not a zombie, and
/// its PID was not recycled).
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    matches!(stat(pid), Some((state, t)) if t == start_time && state != "Z" && state != "X")
}

/// Stops the process `pid` started at `start_time`: SIGTERM, up to `grace` for it to exit,
/// then SIGKILL. Returns `Ok(false)` if it was already gone (nothing was signalled), `Ok(true)`
/// once it is gone. Never signals a process whose start time differs.
pub fn terminate(pid: u32, start_time: u64, grace: Duration) -> Result<bool> {
    if !is_alive(pid, start_time) {
        return Ok(false);
    }
    let ipid = i32::try_from(pid).map_err(|_| Error::Sys {
        call: "kill",
        target: pid.to_string(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    let kill = |sig| -> Result<()> {
        // SAFETY: kill(2) has no memory-safety preconditions; the PID was checked against its
        // start time just before, so it is the process we started.
        if unsafe { libc::kill(ipid, sig) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::Sys {
                    call: "kill",
                    target: pid.to_string(),
                    source: e,
                });
            }
        }
        Ok(())
    };
    kill(libc::SIGTERM)?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_alive(pid, start_time) {
            return Ok(true);
        }
        thread::sleep(Duration::from_millis(20));
    }
    if is_alive(pid, start_time) {
        kill(libc::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_alive(pid, start_time) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id();
        let t = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(t));
        assert!(is_alive(me, t));
        assert!(
            !is_alive(me, t + 1),
            "a different start time is another process"
        );
        assert_eq!(start_time(u32::MAX), None);
    }
}
