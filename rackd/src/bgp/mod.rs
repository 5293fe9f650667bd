//! The BGP controller: renders this node's desired BGP state from the resource snapshot
//! ([`render`]) and reconciles the running speaker towards it.

pub mod reconcile;
pub mod render;
