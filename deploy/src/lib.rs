//! rackd's deployment artefacts, and the code that keeps them honest.
//!
//! - [`manifests`]: the CRD manifests, rendered from [`rackd_model::crd::crds`] (the
//!   `gen-crds` binary writes them to `deploy/crds/` and the chart's `crds/`).
//! - [`schema`]: a checker for Kubernetes structural OpenAPI schemas, so tests can
//!   validate YAML against the generated CRDs without an API server.
//! - [`yaml`]: the YAML writer for the manifests, unambiguous for YAML 1.1 readers.
//!
//! The Helm chart (`deploy/chart/rackd`), the plain manifests rendered from it
//! (`deploy/manifests/rackd.yaml`) and the Dockerfile are files; see `deploy/README.md`.

pub mod manifests;
pub mod schema;
pub mod yaml;

pub use manifests::{CrdFile, Error, crd_files, find_helm, render_manifest, repo_root};
