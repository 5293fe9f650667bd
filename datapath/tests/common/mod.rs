//! Helpers shared by the datapath tests: unique pin folders that clean up
//! after themselves even when a test panics. Namespaces come from `netlab`.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

pub use netlab::{EnteredNetns, Netns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin folder under /sys/fs/bpf removed (with everything pinned in it)
/// on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> Self {
        PinDir(PathBuf::from("/sys/fs/bpf").join(unique("rackd-dptest")))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = datapath::uninstall(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `argv` in `ns` whatever its exit status.
pub fn try_exec(ns: &Netns, argv: &[&str]) -> Output {
    ns.command(argv).output().unwrap()
}
