//! `detached`: a process started in a namespace survives its handle and is stopped by PID and
//! start time only.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netlab::detached::{is_alive, spawn_detached, start_time, terminate};
use netlab::{LabDir, Netns};

#[test]
fn detached_process_outlives_its_handle_and_is_terminated_by_identity() {
    let dir = LabDir::new("nl-det").unwrap();
    let ns = Netns::new("nl-det").unwrap();
    let log = dir.path().join("sleep.log");
    let mut d = spawn_detached(ns.name(), &["sleep", "600"], &[("A", "b")], &log).unwrap();
    assert_eq!(start_time(d.pid), Some(d.start_time));
    assert!(d.child.try_wait().unwrap().is_none());
    // `ip netns exec` forks before it enters the namespace: wait for the program to be inside.
    netlab::wait_until(
        "the detached process to be inside the namespace",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || Ok(ns.pids()?.contains(&(d.pid as i32))),
    )
    .unwrap();
    // A wrong start time never gets a signal.
    assert!(!terminate(d.pid, d.start_time + 1, Duration::from_secs(1)).unwrap());
    assert!(is_alive(d.pid, d.start_time));
    assert!(terminate(d.pid, d.start_time, Duration::from_secs(5)).unwrap());
    // Our own child: reap it so nothing is left (a zombie counts as not alive already).
    d.child.wait().unwrap();
    assert!(!is_alive(d.pid, d.start_time));
    assert!(!terminate(d.pid, d.start_time, Duration::from_secs(1)).unwrap());
}
