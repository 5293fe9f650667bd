//! Configuration sources. Every source hands the daemon the **whole** desired state as a set
//! of named text documents (YAML or JSON, multi-document allowed) each time anything
//! changes; parsing, validation and the last-good merge happen once, downstream, for all
//! sources alike. A Kubernetes or etcd source fits the same interface by rendering each
//! object it watches as one JSON document named after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One input document set member: a name for error messages and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it came from (a path for the directory source).
    pub name: String,
    pub text: String,
}

/// Source errors: the whole source could not be read this time (single unreadable files are
/// reported per file instead, see [`DirSource::scan`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read configuration directory {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A problem with one file; the rest of the directory still loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub name: String,
    pub message: String,
}

/// The outcome of scanning the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub files: Vec<SourceFile>,
    pub problems: Vec<FileProblem>,
}

/// What identifies a file version cheaply; contents are re-read only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sig {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

/// A directory of `*.yaml`, `*.yml` and `*.json` files, polled.
///
/// Polling (default every 250 ms) rather than inotify because it sees through every way
/// files get replaced in practice (editors' rename dance, Kubernetes ConfigMap symlink swaps,
/// bind mounts) with one code path, and the directory is small. Hidden entries (`.x`,
/// ConfigMap's `..data`) are skipped; symlinks are followed.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    interval: Duration,
    sigs: BTreeMap<PathBuf, Sig>,
    last: Option<Scan>,
}

impl DirSource {
    /// Watch `dir`, polling every `interval`.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        Self {
            dir: dir.into(),
            interval,
            sigs: BTreeMap::new(),
            last: None,
        }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read the directory now. Files sorted by name; unreadable or non-UTF-8 files become
    /// problems, not failures.
    pub fn scan(dir: &Path) -> Result<Scan, SourceError> {
        let rd = std::fs::read_dir(dir).map_err(|source| SourceError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_config_file(p))
            .collect();
        paths.sort();
        let mut scan = Scan::default();
        for p in paths {
            let name = p.display().to_string();
            match std::fs::read(&p) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => scan.files.push(SourceFile { name, text }),
                    Err(e) => scan.problems.push(FileProblem {
                        name,
                        message: format!(
                            "not UTF-8 text (invalid byte at offset {}); expected a YAML or JSON file",
                            e.utf8_error().valid_up_to()
                        ),
                    }),
                },
                // Deleted between listing and reading: it is simply gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => scan.problems.push(FileProblem {
                    name,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        Ok(scan)
    }

    fn signatures(&self) -> Result<BTreeMap<PathBuf, Sig>, SourceError> {
        use std::os::unix::fs::MetadataExt;
        let rd = std::fs::read_dir(&self.dir).map_err(|source| SourceError::ReadDir {
            path: self.dir.clone(),
            source,
        })?;
        let mut out = BTreeMap::new();
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if !is_config_file(&p) {
                continue;
            }
            if let Ok(m) = std::fs::metadata(&p) {
                out.insert(
                    p,
                    Sig {
                        len: m.len(),
                        modified: m.modified().ok(),
                        ino: m.ino(),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Wait until the directory differs from what was last returned, and return it. The first
    /// call returns at once. A directory that cannot be read is retried every interval; its
    /// error is returned so the daemon can report it while keeping the last good config.
    pub async fn next_change(&mut self) -> Result<Scan, SourceError> {
        loop {
            if self.last.is_some() {
                tokio::time::sleep(self.interval).await;
            }
            let sigs = self.signatures()?;
            // Same names, sizes, mtimes and inodes: nothing to re-read. A same-size edit
            // within the mtime granularity is caught by comparing contents below on the
            // next signature change; the content comparison is what decides.
            if self.last.is_some() && sigs == self.sigs {
                continue;
            }
            self.sigs = sigs;
            let scan = Self::scan(&self.dir)?;
            if self.last.as_ref() == Some(&scan) {
                continue;
            }
            self.last = Some(scan.clone());
            return Ok(scan);
        }
    }
}

fn is_config_file(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        && p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sees_adds_edits_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.yaml"), "kind: A\n").unwrap();
        std::fs::write(d.join(".hidden.yaml"), "x").unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let mut src = DirSource::new(d, Duration::from_millis(10));
        let s = src.next_change().await.unwrap();
        assert_eq!(s.files.len(), 1);
        assert!(s.files[0].name.ends_with("a.yaml"));

        std::fs::write(d.join("b.yml"), "kind: B\n").unwrap();
        let s = src.next_change().await.unwrap();
        assert_eq!(s.files.len(), 2);

        std::fs::write(d.join("a.yaml"), "kind: A2\n").unwrap();
        let s = src.next_change().await.unwrap();
        assert_eq!(s.files[0].text, "kind: A2\n");

        std::fs::remove_file(d.join("b.yml")).unwrap();
        let s = src.next_change().await.unwrap();
        assert_eq!(s.files.len(), 1);
    }

    #[test]
    fn bad_files_are_problems_not_failures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bin.yaml"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(dir.path().join("ok.yaml"), "a: 1\n").unwrap();
        let s = DirSource::scan(dir.path()).unwrap();
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].message.contains("not UTF-8"));
        assert!(matches!(
            DirSource::scan(&dir.path().join("missing")),
            Err(SourceError::ReadDir { .. })
        ));
    }
}
