//! kubelab: a real Kubernetes control plane for rackd's tests.
//!
//! - [`bins`]: kube-apiserver, kube-controller-manager, kubectl, etcd and helm, built from
//!   their Go modules by `scripts/k8s-build.sh` (cached on disk; once per process), or taken
//!   from `RACKD_K8S_BIN_DIR`.
//! - [`Cluster`]: etcd + kube-apiserver (RBAC on, its own PKI made with `openssl`,
//!   service-account issuer and keys) + optionally kube-controller-manager, in a temporary
//!   directory, on free ports or inside a network namespace; admin and ServiceAccount
//!   kubeconfigs; kubectl and helm against it; stopping and restarting the API server on the
//!   same port and data. Dropping it stops exactly the processes it started.
//!
//! Synchronous (std::process); see README.md for how the binaries are built and cached.

mod bins;
mod cluster;
mod error;
mod pki;
mod process;

pub use bins::{BIN_DIR_ENV, Bins, bins, build_script};
pub use cluster::{Cluster, ClusterOptions, DEFAULT_CONTROLLERS, DEFAULT_SERVICE_CIDRS, KEEP_ENV};
pub use error::{Error, Result};

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A command line for messages.
pub(crate) fn display_command(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
