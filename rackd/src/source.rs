//! Configuration sources. Every source hands the daemon the **whole** desired state as a set
//! of named text documents (YAML or JSON, multi-document allowed) each time anything
//! changes; parsing, validation and the last-good merge happen once, downstream, for all
//! sources alike. A Kubernetes or etcd source fits the same interface by rendering each
//! object it watches as one JSON document named after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use rackd_api::configdir::{FileProblem, ReadDirError as SourceError, Scan, SourceFile};
use rackd_api::configdir::{is_config_file, scan};

/// A configuration source: it hands over the whole document set each time anything in it
/// changes. The daemon runs on any implementation; the directory below is the embedded
/// default, and a Kubernetes or etcd watcher will be another.
pub trait ConfigSource: Send {
    /// Why the source as a whole could not be read this time (the daemon reports it and
    /// keeps the last good configuration).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Wait until the document set differs from what was last returned, and return it; the
    /// first call returns at once.
    fn next_change(&mut self) -> impl Future<Output = Result<Scan, Self::Error>> + Send;
}

impl ConfigSource for DirSource {
    type Error = SourceError;

    fn next_change(&mut self) -> impl Future<Output = Result<Scan, SourceError>> + Send {
        DirSource::next_change(self)
    }
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
/// bind mounts) with one code path, and the directory is small.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    interval: Duration,
    /// Made on the first wait (an `Interval` needs the runtime).
    ticker: Option<tokio::time::Interval>,
    sigs: BTreeMap<PathBuf, Sig>,
    last: Option<Scan>,
}

impl DirSource {
    /// Watch `dir`, polling every `interval`.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        Self {
            dir: dir.into(),
            interval,
            ticker: None,
            sigs: BTreeMap::new(),
            last: None,
        }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn signatures(&self) -> Result<BTreeMap<PathBuf, Sig>, SourceError> {
        use std::os::unix::fs::MetadataExt;
        let rd = std::fs::read_dir(&self.dir).map_err(|source| SourceError {
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
    /// call returns at once. Cancel-safe: a call dropped while it waits loses nothing, and the
    /// next one polls on the same schedule. A directory that cannot be read is returned as an error each
    /// poll, so the daemon can report it while keeping the last good config.
    pub async fn next_change(&mut self) -> Result<Scan, SourceError> {
        loop {
            if self.last.is_some() {
                // An interval, not a sleep: the controller selects over this future and other
                // events, dropping it whenever one of those comes first, and a dropped sleep
                // would start its wait afresh: events more often than the poll interval (a
                // short watchdog, say) would starve the source. `Interval::tick` keeps its
                // deadline across cancellation.
                let every = self.interval;
                self.ticker
                    .get_or_insert_with(|| {
                        let mut i =
                            tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        i
                    })
                    .tick()
                    .await;
            }
            let sigs = self.signatures()?;
            // Same names, sizes, mtimes and inodes: nothing to re-read.
            if self.last.is_some() && sigs == self.sigs {
                continue;
            }
            self.sigs = sigs;
            let scan = scan(&self.dir)?;
            // Contents decide: a touched but unchanged file is no change.
            if self.last.as_ref() == Some(&scan) {
                continue;
            }
            self.last = Some(scan.clone());
            return Ok(scan);
        }
    }
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

    /// Raced in a `select!` against an event that comes three times per poll interval (the
    /// daemon's watchdog ping can), the source still sees a change within a poll or two.
    #[tokio::test]
    async fn a_change_is_seen_when_faster_events_keep_cancelling_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.yaml"), "kind: A\n").unwrap();
        let mut src = DirSource::new(d, Duration::from_millis(150));
        src.next_change().await.unwrap();
        std::fs::write(d.join("a.yaml"), "kind: A2\n").unwrap();
        let mut fast = tokio::time::interval(Duration::from_millis(50));
        let (mut other, t0) = (0u32, tokio::time::Instant::now());
        let s = loop {
            tokio::select! {
                s = src.next_change() => break s.unwrap(),
                _ = fast.tick() => other += 1,
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "starved: {other} other events"
            );
        };
        assert_eq!(s.files[0].text, "kind: A2\n");
        assert!(other >= 2, "the other event did race the source ({other})");
    }
}
