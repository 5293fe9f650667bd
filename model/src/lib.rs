//! rackd's resource model: the Cilium CRDs and core Kubernetes objects rackd reads,
//! label selectors, validation as strict as Cilium's CRD schemas, and the snapshot
//! with its last-good merge. Pure logic: no I/O, no async. See README.md.
//!
//! Typical use (what `rackd` and `rackctl config validate` do):
//!
//! ```
//! use rackd_model::{parse_documents, CheckOptions, Snapshot};
//!
//! let yaml = "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: generic}\nspec: {}\n";
//! let parsed = parse_documents("peers.yaml", yaml);
//! let first = Snapshot::build(&[parsed], &CheckOptions::default());
//! assert!(first.errors.is_empty());
//!
//! // Later: a broken edit keeps the last good version.
//! let bad = parse_documents("peers.yaml", "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: generic}\nspec: {ebgpMultihop: 0}\n");
//! let next = Snapshot::merge(&first.snapshot, &[bad], &CheckOptions::default());
//! assert_eq!(next.errors.len(), 1);
//! assert!(next.snapshot.bgp_peer_config("generic").is_some());
//! ```

mod api;
pub mod cilium;
pub mod crd;
mod error;
mod file;
mod object;
mod parse;
pub mod selector;
mod snapshot;
mod store;
mod validate;

pub use api::load_api_object;
pub use error::{ConfigError, FieldError, Location, ObjectRef, Problem};
pub use file::FileSource;
pub use object::{Kind, Loaded, Object, ObjectKey, Origin};
pub use parse::{DocCache, ParsedSource, parse_documents, parse_documents_cached, yaml_kind};
pub use rackd_types;
pub use snapshot::{
    Change, CheckOptions, MergeOutcome, Snapshot, pod_ips, pod_node, secret_value, slice_service,
    status_ingress_ips,
};
pub use store::{Applied, SourceChange, SourceContent, SourceName, SourceUpdate, Store};
pub use validate::validate;

/// Re-exported so users of the model name the same k8s-openapi types.
pub use k8s_openapi;
