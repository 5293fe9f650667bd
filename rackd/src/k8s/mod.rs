//! Kubernetes: rackd as a DaemonSet against the API server.
//!
//! ```text
//!  API server ──watch per kind──▶ KubeSource ──per-object changes──▶ config task (Store)
//!                                      (relists buffered: never a mass deletion)
//! ```
//!
//! The API is one more [`crate::config::ConfigSource`]; with `--config-dir` as well, both
//! feed one store ([`crate::config::combined`] says which wins on a conflict).

pub mod bgp_node_status;
pub mod bgp_plan;
pub mod bgp_status;
pub mod kind;
pub mod lbipam;
pub mod lease;
pub mod source;
pub mod status;

use std::path::PathBuf;

pub use source::{KubeSource, Scope};

/// How rackd reaches the API server (Cilium's flag names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sOptions {
    /// `--k8s-kubeconfig-path`; `None`: in-cluster (the Pod's ServiceAccount), else the usual
    /// kubeconfig search (`KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// `--k8s-api-server`: overrides the kubeconfig's server URL.
    pub api_server: Option<String>,
    /// `--k8s-namespace`: where rackd runs and keeps its Leases (Cilium's flag; default
    /// `kube-system`).
    pub namespace: String,
    /// The LB-IPAM leader election's timings (Cilium operator's flags and defaults).
    pub election: lease::ElectionTimings,
}

impl Default for K8sOptions {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            api_server: None,
            namespace: "kube-system".into(),
            election: lease::ElectionTimings::default(),
        }
    }
}

/// The Lease that elects LB-IPAM's one allocator (and status writer).
pub const LBIPAM_LEASE: &str = "rackd-lbipam";

/// Errors reaching the API server at start.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("reading kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (not in a cluster, no kubeconfig)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("--k8s-api-server {url:?} is not a URL")]
    ApiServer {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("creating the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// The client configuration `o` describes.
pub async fn client_config(o: &K8sOptions) -> Result<kube::Config, K8sError> {
    let mut cfg = match &o.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                K8sError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| K8sError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(K8sError::Infer)?,
    };
    if let Some(url) = &o.api_server {
        cfg.cluster_url = url.parse().map_err(|source| K8sError::ApiServer {
            url: url.clone(),
            source,
        })?;
    }
    Ok(cfg)
}

/// A client for `o`, and the server URL it talks to.
pub async fn client(o: &K8sOptions) -> Result<(kube::Client, String), K8sError> {
    let cfg = client_config(o).await?;
    let server = cfg.cluster_url.to_string();
    let c = kube::Client::try_from(cfg).map_err(K8sError::Client)?;
    Ok((c, server))
}
