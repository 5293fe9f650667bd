//! The directory source: `*.yaml`, `*.yml` and `*.json` files, each file one source of the
//! [`rackd_model::Store`], turned into per-object changes here.
//!
//! - **Seeing changes.** inotify on the directory wakes a scan within a millisecond of a file
//!   being closed after writing, renamed in or out, or deleted; writes alone wait for the
//!   writer to close the file ([`PARTIAL_WRITE_WAIT`] at most), so a file is not read halfway
//!   through a write. Polling (every
//!   `--config-poll-interval`, 250 ms by default) stays as the safety net: it sees through
//!   what inotify cannot (a bind mount replaced from outside, a directory that appears after
//!   the daemon started, inotify being unavailable), with one code path for both.
//! - **Reading little.** A file is re-read only when its size, mtime or inode changed, and
//!   re-parsed only when its text did; then only its new or edited documents are parsed
//!   (`rackd_model::FileSource`), and only objects that differ are handed on. One Service
//!   edited in a file of 27,000 costs one document's parse.
//! - **Errors.** A file that cannot be read (or is not UTF-8) keeps what it last held; a
//!   directory that cannot be read at all is reported once per change of state (the last good
//!   configuration stays), and the source waits for the next poll or event before trying
//!   again: it never spins.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
#[allow(clippy::disallowed_types, reason = "file modification times, see Sig")]
use std::time::{Duration, SystemTime};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rackd_api::configdir::{self, FileRead};
use rackd_model::{FileSource, SourceUpdate};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use super::{Batch, ConfigSource, Health};

/// How long the rest of a burst of file events is gathered before the scan.
pub const SETTLE: Duration = Duration::from_millis(1);
/// How long a file being written (writes seen, not closed yet) is waited for.
pub const PARTIAL_WRITE_WAIT: Duration = Duration::from_millis(100);

/// What the file events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Something is complete to read.
    Complete,
    /// The watch is gone (or unreadable): poll until it is set up again.
    Lost,
}

/// What identifies a file version cheaply; contents are re-read only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::disallowed_types,
    reason = "a file's modification time is a wall-clock time, compared, never waited on"
)]
struct Sig {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

fn sig(p: &Path) -> Option<Sig> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some(Sig {
        len: m.len(),
        modified: m.modified().ok(),
        ino: m.ino(),
    })
}

/// One file as last read.
#[derive(Debug)]
struct FileState {
    sig: Option<Sig>,
    /// Hash of the text last parsed (`None`: last read failed).
    text_hash: Option<u64>,
    source: FileSource,
}

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl std::fmt::Debug for InotifyFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InotifyFd")
    }
}

/// A configuration directory; see the module docs.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    interval: Duration,
    /// Made on the first wait (an `Interval` needs the runtime).
    ticker: Option<tokio::time::Interval>,
    /// `None` until the directory can be watched (it may not exist yet).
    inotify: Option<AsyncFd<InotifyFd>>,
    files: BTreeMap<PathBuf, FileState>,
    health: Health,
    started: bool,
    /// Directory scans so far (a spinning source would show here).
    scans: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A fixed-key hash (the same text hashes the same on every read), fast on megabytes.
fn hash_text(text: &str) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(text)
}

impl DirSource {
    /// Watch `dir`, polling every `interval` besides inotify.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        Self {
            dir: dir.into(),
            interval,
            ticker: None,
            inotify: None,
            files: BTreeMap::new(),
            health: Health::Ok,
            started: false,
            scans: Default::default(),
        }
    }

    /// A counter of directory scans (one per poll tick or burst of file events).
    pub fn scan_counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.scans.clone()
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts watching the directory with inotify if it is not watched yet (best effort:
    /// polling covers whatever inotify cannot).
    fn ensure_watch(&mut self) {
        if self.inotify.is_some() {
            return;
        }
        let Ok(ino) = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) else {
            return;
        };
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        if ino.add_watch(self.dir.as_path(), mask).is_err() {
            return;
        }
        // SAFETY: `InotifyFd` owns the inotify descriptor (nix's `Inotify` holds an
        // `OwnedFd`), so it stays open, and is the same descriptor, for as long as the
        // `AsyncFd` owns it.
        match unsafe {
            AsyncFd::register_with_interest(InotifyFd(ino), tokio::io::Interest::READABLE)
        } {
            Ok(fd) => self.inotify = Some(fd),
            Err(e) => debug!(error = %e, "inotify unavailable; polling only"),
        }
    }

    /// Waits for the next poll tick or file event. Cancel-safe: the tick keeps its deadline
    /// across cancellation, and unread events stay queued.
    ///
    /// A file that was closed after writing, renamed in or out, or deleted is complete: the
    /// scan follows at once (after [`SETTLE`], to take the rest of a burst along). A new file
    /// or writes alone mean a writer is still at it: the scan waits for it to close the file,
    /// [`PARTIAL_WRITE_WAIT`] at most (a symlink created in place is seen then).
    async fn wait(&mut self) {
        let every = self.interval;
        let ticker = self.ticker.get_or_insert_with(|| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let inotify = &self.inotify;
        let events = async {
            let Some(fd) = inotify else {
                return std::future::pending::<Event>().await;
            };
            let mut writing_since: Option<tokio::time::Instant> = None;
            loop {
                let ready = match writing_since {
                    None => fd.readable().await.ok(),
                    Some(t) => {
                        match tokio::time::timeout_at(t + PARTIAL_WRITE_WAIT, fd.readable()).await {
                            Ok(r) => r.ok(),
                            // The writer never closed the file: read what is there.
                            Err(_) => return Event::Complete,
                        }
                    }
                };
                let Some(mut guard) = ready else {
                    return Event::Lost;
                };
                let Ok(read) = guard.try_io(|inner| {
                    inner
                        .get_ref()
                        .0
                        .read_events()
                        .map_err(std::io::Error::from)
                }) else {
                    continue;
                };
                let Ok(evs) = read else {
                    return Event::Lost;
                };
                let mut complete = false;
                for e in &evs {
                    if e.mask.intersects(
                        AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF,
                    ) {
                        // The watch is gone (directory deleted or moved): set it up again
                        // on the next scan.
                        return Event::Lost;
                    }
                    // A new file or writes: its writer may be at it still.
                    complete |= !e
                        .mask
                        .intersects(AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE);
                }
                if complete {
                    return Event::Complete;
                }
                writing_since.get_or_insert_with(tokio::time::Instant::now);
            }
        };
        tokio::select! {
            _ = ticker.tick() => {}
            ev = events => {
                if ev == Event::Lost {
                    self.inotify = None;
                }
                // Take the rest of the burst along.
                tokio::time::sleep(SETTLE).await;
                if let Some(fd) = &self.inotify
                    && let Some(Ok(mut guard)) = futures::FutureExt::now_or_never(fd.readable())
                {
                    let _ = guard.try_io(|inner| {
                        inner.get_ref().0.read_events().map_err(std::io::Error::from)
                    });
                }
            }
        }
    }

    /// Reads what changed since the last scan.
    fn scan(&mut self) -> Result<Vec<SourceUpdate>, configdir::ReadDirError> {
        self.scans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let paths = configdir::list(&self.dir)?;
        let mut updates = Vec::new();
        for p in &paths {
            let now = sig(p);
            let st = self.files.entry(p.clone()).or_insert_with(|| FileState {
                sig: None,
                text_hash: None,
                source: FileSource::new(p.display().to_string()),
            });
            if now.is_some() && st.sig == now {
                continue;
            }
            st.sig = now;
            let update = match configdir::read(p) {
                FileRead::Text(text) => {
                    let h = hash_text(&text);
                    if st.text_hash == Some(h) {
                        continue;
                    }
                    st.text_hash = Some(h);
                    st.source.update(&text)
                }
                // Listed a moment ago: treat as a deletion, next scan will tell.
                FileRead::Gone => continue,
                FileRead::Problem(message) => {
                    st.text_hash = None;
                    st.source.unreadable(message)
                }
            };
            updates.push(update);
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| paths.binary_search(p).is_err())
            .cloned()
            .collect();
        for p in gone {
            if let Some(st) = self.files.remove(&p) {
                updates.push(st.source.removed());
            }
        }
        Ok(updates)
    }
}

impl ConfigSource for DirSource {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    async fn next(&mut self) -> Batch {
        loop {
            if self.started {
                self.wait().await;
            }
            let first = !self.started;
            self.started = true;
            self.ensure_watch();
            match self.scan() {
                Ok(updates) => {
                    let recovered = self.health != Health::Ok;
                    self.health = Health::Ok;
                    if first || recovered || !updates.is_empty() {
                        return Batch {
                            updates,
                            health: (first || recovered).then_some(Health::Ok),
                        };
                    }
                }
                Err(e) => {
                    let h = Health::Unavailable {
                        reason: format!("{e}: {}", e.source),
                    };
                    if h != self.health || first {
                        warn!(dir = %self.dir.display(), error = %e.source, "configuration directory unreadable; keeping the last good configuration");
                        self.health = h.clone();
                        return Batch {
                            updates: Vec::new(),
                            health: Some(h),
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_model::{CheckOptions, Kind, SourceChange, Store};

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: NAME, namespace: ns}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";

    fn svc(name: &str) -> String {
        SVC.replace("NAME", name)
    }

    fn count(b: &Batch) -> (usize, usize) {
        let mut up = 0;
        let mut del = 0;
        for u in &b.updates {
            match &u.change {
                SourceChange::Update {
                    upserts, deletes, ..
                } => {
                    up += upserts.len();
                    del += deletes.len();
                }
                SourceChange::Removed => del += 1,
            }
        }
        (up, del)
    }

    #[tokio::test]
    async fn sees_adds_edits_and_deletes_as_object_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.yaml"), format!("{}---\n{}", svc("a1"), svc("a2"))).unwrap();
        std::fs::write(d.join(".hidden.yaml"), "x").unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let mut src = DirSource::new(d, Duration::from_millis(20));
        let mut store = Store::new(CheckOptions::default());
        let b = src.next().await;
        assert_eq!(b.health, Some(Health::Ok));
        assert_eq!(count(&b), (2, 0));
        store.apply(b.updates);
        assert_eq!(store.snapshot().len(), 2);

        // An edit of one document is one upsert, not the whole file.
        std::fs::write(
            d.join("a.yaml"),
            format!("{}---\n{}", svc("a1"), svc("a2").replace("80", "8080")),
        )
        .unwrap();
        let b = src.next().await;
        assert_eq!(count(&b), (1, 0), "{b:?}");
        let applied = store.apply(b.updates);
        assert_eq!(applied.changes.len(), 1);

        std::fs::write(d.join("b.yml"), svc("b1")).unwrap();
        let b = src.next().await;
        assert_eq!(count(&b), (1, 0));
        store.apply(b.updates);

        std::fs::remove_file(d.join("b.yml")).unwrap();
        let b = src.next().await;
        assert_eq!(count(&b), (0, 1));
        let applied = store.apply(b.updates);
        assert_eq!(applied.changes.len(), 1);
        assert_eq!(
            store.snapshot().of_kind(Kind::Service).count(),
            2,
            "a1 and a2 remain"
        );
    }

    /// inotify wakes the source long before the (here: one hour) poll.
    #[tokio::test]
    async fn a_file_event_is_seen_without_waiting_for_the_poll() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        let mut src = DirSource::new(&d, Duration::from_secs(3600));
        let _ = src.next().await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::fs::write(d.join(".c.yaml.tmp"), svc("c")).unwrap();
            std::fs::rename(d.join(".c.yaml.tmp"), d.join("c.yaml")).unwrap();
        });
        let b = tokio::time::timeout(Duration::from_secs(30), src.next())
            .await
            .expect("seen through inotify, not the hourly poll");
        assert_eq!(count(&b), (1, 0));
        writer.await.unwrap();
    }

    /// A file written in two parts is read once its writer closes it, not halfway (which
    /// would report a parse error for a moment).
    #[tokio::test]
    async fn a_file_is_read_when_its_writer_closes_it() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        let mut src = DirSource::new(&d, Duration::from_secs(3600));
        let _ = src.next().await;
        let text = svc("w");
        let (head, tail) = text.split_at(text.len() / 2);
        let (head, tail) = (head.to_owned(), tail.to_owned());
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::create(d.join("w.yaml")).unwrap();
            f.write_all(head.as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(40));
            f.write_all(tail.as_bytes()).unwrap();
        });
        let b = tokio::time::timeout(Duration::from_secs(30), src.next())
            .await
            .unwrap();
        writer.join().unwrap();
        let errors: usize = b
            .updates
            .iter()
            .map(|u| match &u.change {
                SourceChange::Update { errors, .. } => errors.len(),
                SourceChange::Removed => 0,
            })
            .sum();
        assert_eq!((count(&b), errors), ((1, 0), 0), "{b:?}");
    }

    /// Raced in a `select!` against an event that comes three times per poll interval (the
    /// daemon's watchdog ping can), the source still sees a change within a poll or two.
    #[tokio::test]
    async fn a_change_is_seen_when_faster_events_keep_cancelling_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.yaml"), svc("a")).unwrap();
        let mut src = DirSource::new(d, Duration::from_millis(150));
        let _ = src.next().await;
        // No inotify: only the poll can see it.
        src.inotify = None;
        src.dir = d.to_owned();
        std::fs::write(d.join("a.yaml"), svc("a").replace("80", "81")).unwrap();
        let mut fast = tokio::time::interval(Duration::from_millis(50));
        let (mut other, t0) = (0u32, tokio::time::Instant::now());
        let b = loop {
            tokio::select! {
                b = src.next() => break b,
                _ = fast.tick() => other += 1,
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "starved: {other} other events"
            );
        };
        assert_eq!(count(&b), (1, 0));
        assert!(other >= 2, "the other event did race the source ({other})");
    }

    /// A missing directory is reported once, then the source waits for the next poll (no
    /// busy loop: a handful of scans a second, not thousands), and picks the directory up
    /// when it appears.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_directory_is_reported_once_and_never_spins() {
        let base = tempfile::tempdir().unwrap();
        let d = base.path().join("later");
        let mut src = DirSource::new(&d, Duration::from_millis(100));
        let scans = src.scan_counter();
        let b = src.next().await;
        assert!(
            matches!(b.health, Some(Health::Unavailable { .. })),
            "{b:?}"
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let b = src.next().await;
                if tx.send(b).is_err() {
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = scans.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (3..=20).contains(&n),
            "{n} scans in a second at a 100 ms poll"
        );
        assert!(rx.try_recv().is_err(), "the same error was reported again");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("a.yaml"), svc("a")).unwrap();
        let b = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the directory is picked up when it appears")
            .unwrap();
        assert_eq!(b.health, Some(Health::Ok));
        assert_eq!(count(&b), (1, 0));
        task.abort();
    }
}
