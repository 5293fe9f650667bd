//! kubelab's error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// What can go wrong while building the binaries or running a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `scripts/k8s-build.sh` failed (or could not be run): the Kubernetes, etcd and helm
    /// binaries are not available. `message` holds the tail of its output.
    #[error("building the Kubernetes test binaries with {script} failed: {message}")]
    Build {
        /// The build script that was run.
        script: PathBuf,
        /// Why, with the last lines of the script's stderr.
        message: String,
    },

    /// A binary that the bin dir should hold is not there (or not executable).
    #[error("{path}: missing or not executable (bin dir from {origin})")]
    MissingBinary {
        /// The expected binary.
        path: PathBuf,
        /// Where the bin dir came from (`RACKD_K8S_BIN_DIR` or the build script).
        origin: &'static str,
    },

    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A helper command (kubectl, helm, openssl, ip) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the reader.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its stderr (trimmed).
        stderr: String,
    },

    /// A cluster component (etcd, kube-apiserver, kube-controller-manager) exited or did not
    /// become ready in time.
    #[error("{component} did not start: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    Start {
        /// `etcd`, `kube-apiserver` or `kube-controller-manager`.
        component: &'static str,
        /// What was observed (exit status, or the timeout and the last probe's answer).
        reason: String,
        /// The component's log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A [`crate::ClusterOptions`] value that cannot work.
    #[error("invalid cluster options: {0}")]
    InvalidOptions(String),

    /// An operation that needs a running component found it stopped.
    #[error("{0} is not running")]
    NotRunning(&'static str),
}

/// `Result` with kubelab's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
