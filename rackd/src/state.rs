//! Durable state under the state directory: whole-file writes that are atomic and durable
//! (write a temporary file, fsync it, rename over the target, fsync the directory), so a
//! crash at any instant leaves either the old or the new content, never a torn file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// State file errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Atomically replace `path` with `data`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    // The rename is only durable once the directory entry is on disk.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}

/// Appends `data` to `path` (which must exist) and makes it durable (fdatasync) before
/// returning: the journal half of a snapshot-plus-journal state.
pub fn append_durable(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new().append(true).open(path).map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_data().map_err(err)
}

/// Cuts `path` to `len` bytes, durably (a torn last journal line goes before anything is
/// appended after it).
pub fn truncate_durable(path: &Path, len: u64) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.set_len(len).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Read a state file; `Ok(None)` when it does not exist yet.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        assert_eq!(read(&p).unwrap(), None);
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some(&b"two"[..]));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn append_and_truncate_are_durable_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        write_atomic(&p, b"head\n").unwrap();
        append_durable(&p, b"one\n").unwrap();
        append_durable(&p, b"two\n").unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some(&b"head\none\ntwo\n"[..]));
        truncate_durable(&p, 9).unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some(&b"head\none\n"[..]));
        // Appending to a file that is not there is an error (it must be created first, with
        // its header, atomically).
        assert!(matches!(
            append_durable(&dir.path().join("missing"), b"x"),
            Err(StateError::Write { .. })
        ));
    }

    #[test]
    fn unreadable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where a file is expected.
        let p = dir.path().join("d");
        fs::create_dir(&p).unwrap();
        assert!(matches!(read(&p), Err(StateError::Read { .. })));
        assert!(matches!(
            write_atomic(&p, b"x"),
            Err(StateError::Write { .. })
        ));
    }
}
