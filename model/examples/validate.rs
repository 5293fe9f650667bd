//! Offline check of YAML files or directories, the way `rackctl config validate`
//! uses this crate: `cargo run -p rackd-model --example validate -- configs/`.
//! Prints one line per error and exits 1 if there were any.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rackd_model::{CheckOptions, ParsedSource, Snapshot, parse_documents};

fn yaml_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => {
                out.push(p.to_owned());
                return;
            }
        };
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                yaml_files(&e, out);
            }
        }
    } else {
        out.push(p.to_owned());
    }
}

fn main() -> ExitCode {
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        yaml_files(Path::new(&a), &mut files);
    }
    let sources: Vec<ParsedSource> = files
        .iter()
        .map(|f| {
            let name = f.display().to_string();
            match std::fs::read_to_string(f) {
                Ok(text) => parse_documents(&name, &text),
                Err(e) => ParsedSource::unreadable(name, e.to_string()),
            }
        })
        .collect();
    let out = Snapshot::build(&sources, &CheckOptions::default());
    for e in &out.errors {
        eprintln!("{e}");
    }
    println!(
        "{} objects valid, {} errors",
        out.snapshot.len(),
        out.errors.len()
    );
    if out.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
