//! Helpers the unit tests of several controllers share: in-memory configurations and the
//! lab's YAML.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use rackd_model::{CheckOptions, Snapshot, parse_documents};

use crate::config::ConfigState;
use crate::controller::Context;

/// A loaded configuration of `text` (one file; it must have no errors).
pub(crate) fn config_state(text: &str) -> Arc<ConfigState> {
    let out = Snapshot::build(&[parse_documents("t.yaml", text)], &CheckOptions::default());
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    Arc::new(ConfigState {
        loaded: true,
        snapshot: out.snapshot,
        ..ConfigState::default()
    })
}

/// A runner context: a full pass or an incremental one.
pub(crate) fn ctx(full: bool) -> Context {
    Context {
        full,
        now: tokio::time::Instant::now(),
    }
}

/// The lab's configuration files (`configs/lab`), in name order, as `(path, text)`.
pub(crate) fn lab_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect()
}
