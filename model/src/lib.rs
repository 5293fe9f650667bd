//! rackd's resource model: the Cilium CRDs and core Kubernetes objects rackd reads,
//! label selectors, validation as strict as Cilium's CRD schemas, and the snapshot
//! with its last-good merge. Pure logic: no I/O, no async. See README.md.

pub mod selector;
