//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while building or driving a lab.
///
/// Command failures carry the full command line, exit status, stdout and stderr so a failing test
/// prints what the tool said instead of a bare "exit status 1".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started at all (missing binary, permissions).
    #[error("cannot spawn `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{cmd}` failed with {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard output (lossy UTF-8).
        stdout: String,
        /// Its standard error (lossy UTF-8).
        stderr: String,
    },
    /// A filesystem operation failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call (setns, kill, ...) failed.
    #[error("{call} failed for {target}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// What it was applied to (namespace name, PID).
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An interface name is empty, longer than 15 bytes (IFNAMSIZ - 1) or contains `/` or spaces.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An address was not `ADDR/LEN` with a valid address and prefix length.
    #[error("invalid CIDR {input:?}: {reason}")]
    InvalidCidr {
        /// The rejected input.
        input: String,
        /// Why.
        reason: &'static str,
    },
    /// A tool's output could not be parsed.
    #[error("cannot parse output of `{cmd}`: {reason}\n--- output ---\n{output}")]
    Parse {
        /// The command whose output was parsed.
        cmd: String,
        /// What was wrong.
        reason: String,
        /// The raw output.
        output: String,
    },
    /// A tool printed something that is not valid JSON.
    #[error("invalid JSON from `{cmd}`\n--- output ---\n{output}")]
    Json {
        /// The command whose output was parsed.
        cmd: String,
        /// The raw output.
        output: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// [`crate::wait_until`] gave up; `last` is the last thing the condition observed.
    #[error("timed out after {timeout:?} waiting for {what}; last observation:\n{last}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long we waited.
        timeout: Duration,
        /// The last observation (condition output or last error).
        last: String,
    },
    /// A process exited while it was expected to keep running.
    #[error("process {name} (pid {pid}) exited early with {status}; log {log}:\n{output}")]
    Exited {
        /// Process label.
        name: String,
        /// Its PID.
        pid: u32,
        /// Its exit status.
        status: ExitStatus,
        /// Where its output was captured.
        log: PathBuf,
        /// The tail of that output.
        output: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
