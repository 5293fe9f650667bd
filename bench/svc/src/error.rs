//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can stop a benchmark run.
///
/// A mode that cannot run on this machine (no IPVS in the kernel, rackd's datapath not merged)
/// is not an error of the run: it is recorded as skipped, with [`Error::Unavailable`]'s reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building or driving the namespaces failed.
    #[error("lab")]
    Lab(#[from] netlab::Error),
    /// A program could not be started (missing binary, permissions).
    #[error("cannot spawn `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{cmd}` failed with {status}\n--- stderr ---\n{stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error (lossy UTF-8, truncated to 4 KiB).
        stderr: String,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A socket or thread operation of the load generator or the backend server failed.
    #[error("{what}")]
    Net {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `bpf(2)` command failed.
    #[error("bpf({cmd}) failed")]
    Bpf {
        /// The command name.
        cmd: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A timed tool did not finish within its limit and was killed.
    #[error("`{cmd}` still running after {after:?}: killed")]
    Timeout {
        /// The command line.
        cmd: String,
        /// When it was killed.
        after: std::time::Duration,
    },
    /// A mode cannot run here; the reason is recorded with the results.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The installed rules or the traffic did not look as expected (a positive control failed).
    #[error("check failed: {0}")]
    Check(String),
    /// The results file could not be (de)serialised.
    #[error("JSON {path}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
