//! Reading a configuration directory: what the daemon watches and what
//! `rackctl config validate` checks offline, read the same way by both.

use std::path::{Path, PathBuf};

/// One input document set member: a name for error messages and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it came from (a path for the directory source).
    pub name: String,
    pub text: String,
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

/// The directory itself could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read configuration directory {path}")]
pub struct ReadDirError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Whether `p` is a configuration file: `*.yaml`, `*.yml` or `*.json`, not hidden (which
/// also skips Kubernetes ConfigMap's `..data` entries); symlinks are followed.
pub fn is_config_file(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        && p.is_file()
}

/// The configuration files in `dir`, sorted by name (the order of precedence between
/// duplicate definitions).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, ReadDirError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ReadDirError {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_config_file(p))
        .collect();
    paths.sort();
    Ok(paths)
}

/// What reading one configuration file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    Text(String),
    /// Deleted between listing and reading: it is simply gone.
    Gone,
    /// Unreadable or not UTF-8: why, for the error message.
    Problem(String),
}

/// Reads one configuration file.
pub fn read(path: &Path) -> FileRead {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => FileRead::Text(text),
            Err(e) => FileRead::Problem(format!(
                "not UTF-8 text (invalid byte at offset {}); expected a YAML or JSON file",
                e.utf8_error().valid_up_to()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Gone,
        Err(e) => FileRead::Problem(format!("cannot read: {e}")),
    }
}

/// Read the directory now. Files sorted by name; unreadable or non-UTF-8 files become
/// problems, not failures.
pub fn scan(dir: &Path) -> Result<Scan, ReadDirError> {
    let mut scan = Scan::default();
    for p in list(dir)? {
        let name = p.display().to_string();
        match read(&p) {
            FileRead::Text(text) => scan.files.push(SourceFile { name, text }),
            FileRead::Gone => {}
            FileRead::Problem(message) => scan.problems.push(FileProblem { name, message }),
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_problems_not_failures() {
        let dir = std::env::temp_dir().join(format!("rackd-api-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bin.yaml"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(dir.join("ok.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let s = scan(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].message.contains("not UTF-8"));
        assert!(scan(&dir.join("missing")).is_err());
    }
}
