//! A panicking test must still remove its namespace and kill its processes.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::panic;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netlab::detached::{is_alive, start_time};
use netlab::{LabDir, Netns};

/// (device, inode) of a namespace file: equal for two references to the same namespace.
fn ns_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What the test saw of its namespace and process before it panicked.
#[derive(Debug, Clone)]
struct Seen {
    ns: String,
    pid: u32,
    /// The process's start time (`/proc/<pid>/stat` field 22): a recycled PID has another.
    started: u64,
    dir: PathBuf,
}

#[test]
fn panic_inside_test_removes_namespace_and_processes() {
    let seen: Mutex<Option<Seen>> = Mutex::new(None);
    let r = panic::catch_unwind(|| {
        let dir = LabDir::new("nl-panic").unwrap();
        let ns = Netns::new("nl-panic").unwrap();
        let p = ns.spawn(dir.path(), "sleeper", &["sleep", "600"]).unwrap();
        let pid = p.pid();
        // Positive control: the process runs, as `sleep` (`ip netns exec` has exec'd), inside
        // our namespace; its start time identifies it from now on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .as_deref()
            != Some("sleep\n")
        {
            assert!(Instant::now() < deadline, "pid {pid} never became sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = start_time(pid).unwrap();
        assert!(is_alive(pid, started));
        let netns_path = format!("/run/netns/{}", ns.name());
        assert!(ns_id(&netns_path).is_some());
        assert_eq!(
            ns_id(&format!("/proc/{pid}/ns/net")),
            ns_id(&netns_path),
            "pid {pid} is not in {netns_path}"
        );
        *seen.lock().unwrap() = Some(Seen {
            ns: ns.name().to_owned(),
            pid,
            started,
            dir: dir.path().to_owned(),
        });
        panic!("simulated test failure");
    });
    assert!(r.is_err());
    let Seen {
        ns: name,
        pid,
        started,
        dir,
    } = seen.lock().unwrap().clone().unwrap();
    // The lab directory is deliberately kept after a panic (logs); this test removes it.
    assert!(dir.exists());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        !Path::new("/run/netns").join(&name).exists(),
        "{name} leaked"
    );
    // The process guard killed and reaped it: no process with that PID and start time is left,
    // not even a zombie (a PID recycled since then has another start time) ...
    assert_ne!(
        start_time(pid),
        Some(started),
        "pid {pid} (started at {started}) survived the panic: {:?}",
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
    );
    // ... and it is no longer our child: it was reaped, not left for us to wait for.
    let ipid = i32::try_from(pid).unwrap();
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`; WNOHANG never blocks.
    let rc = unsafe { libc::waitpid(ipid, &mut status, libc::WNOHANG) };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, -1, "pid {pid} was still our child to reap");
    assert_eq!(err.raw_os_error(), Some(libc::ECHILD), "waitpid: {err}");
    assert!(
        !std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout
            .windows(name.len())
            .any(|w| w == name.as_bytes())
    );
}
