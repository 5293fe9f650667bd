//! Per-test scratch directories for configs, sockets, PID files and logs.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::names;

/// Root under which every lab directory is created.
pub const ROOT: &str = "/tmp/netlab";

/// A uniquely named directory under [`ROOT`], removed on drop unless the thread is panicking (then
/// it is kept so the logs can be read; its path is printed to stderr).
///
/// Paths stay short on purpose: UNIX socket paths (BIRD's control socket, FRR's vty sockets) are
/// limited to 107 bytes.
#[derive(Debug)]
pub struct LabDir {
    path: PathBuf,
    keep: bool,
}

impl LabDir {
    /// Creates `/tmp/netlab/<prefix>-<pid>-<n>-<rand>`.
    pub fn new(prefix: &str) -> Result<Self> {
        let path = Path::new(ROOT).join(names::unique(prefix));
        fs::create_dir_all(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path, keep: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (if needed) and returns a subdirectory.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        fs::create_dir_all(&p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }

    /// Writes `contents` to `name` inside the directory and returns the full path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        fs::write(&p, contents).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }

    /// Keeps the directory after drop (for debugging a passing test).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            eprintln!("netlab: keeping {} for inspection", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}
