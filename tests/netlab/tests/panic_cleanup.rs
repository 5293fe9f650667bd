//! A panicking test must still remove its namespace and kill its processes.
#![allow(clippy::unwrap_used)]

use std::panic;
use std::path::Path;
use std::sync::Mutex;

use netlab::{LabDir, Netns};

#[test]
fn panic_inside_test_removes_namespace_and_processes() {
    let seen: Mutex<Option<(String, u32, std::path::PathBuf)>> = Mutex::new(None);
    let r = panic::catch_unwind(|| {
        let dir = LabDir::new("nl-panic").unwrap();
        let ns = Netns::new("nl-panic").unwrap();
        let p = ns.spawn(dir.path(), "sleeper", &["sleep", "600"]).unwrap();
        *seen.lock().unwrap() = Some((ns.name().to_owned(), p.pid(), dir.path().to_owned()));
        panic!("simulated test failure");
    });
    assert!(r.is_err());
    let (name, pid, dir) = seen.lock().unwrap().clone().unwrap();
    // The lab directory is deliberately kept after a panic (logs); this test removes it.
    assert!(dir.exists());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        !Path::new("/run/netns").join(&name).exists(),
        "{name} leaked"
    );
    // The process guard reaped it, so its /proc entry is gone (or reused by a stranger, whose
    // namespace then cannot be ours).
    let ns_link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    assert!(ns_link.is_none() || !Path::new("/run/netns").join(&name).exists());
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
