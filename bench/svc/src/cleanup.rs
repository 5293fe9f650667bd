//! Cleanup when the manual run is interrupted (Ctrl-C, SIGTERM, SIGHUP).
//!
//! Inside a run, every namespace and scratch directory is an RAII guard, so errors and panics
//! clean up. A signal would end the process without unwinding, so the binary blocks these
//! signals and a dedicated thread waits for them: it removes what carries our PID in its name
//! (namespaces `sb-*-<pid>-*`, whose processes are ours, and `/tmp/svc-bench-<pid>-*`) and
//! exits with 128 + the signal.

use std::process::Command;

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and modify the local set only.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Removes every namespace and scratch directory named after this process.
pub fn remove_ours() {
    let pid = std::process::id();
    let tag = format!("-{pid}-");
    if let Ok(dir) = std::fs::read_dir(netlab::netns::NETNS_RUN_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("sb-") && name.contains(&tag)) {
                continue;
            }
            // Processes inside a namespace named after our PID are ours (restore tools).
            if let Ok(o) = Command::new("ip").args(["netns", "pids", &name]).output() {
                for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(p) = p.parse::<i32>() {
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("svc-bench-{pid}-")) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Blocks the signals in the calling thread (call first in `main`, so every thread inherits
/// the mask) and starts the thread that handles them.
pub fn install() {
    let s = set();
    // SAFETY: pthread_sigmask with a valid set and a null old-set pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: valid pointers to the set and a local.
            if unsafe { libc::sigwait(&s, &mut sig) } == 0 {
                eprintln!("svc-bench: signal {sig}: removing our namespaces");
                remove_ours();
                std::process::exit(128 + sig);
            }
        });
}
