//! rackd's shared vocabulary: the few types and names every crate means the same thing by.
//! One definition each, so a status condition, an IP family, a BGP session state or one of
//! Cilium's class and annotation names is spelt once in the workspace and compared as a value,
//! never as a string.
//!
//! - [`Condition`] / [`ConditionStatus`] / [`ObjectCondition`]: Kubernetes-style status
//!   conditions with Cilium's types and reasons ([`condition`]), kept per object.
//! - [`Kind`] / [`ObjectKey`]: the kinds rackd reads and an object's identity.
//! - [`IpFamily`]: IPv4 or IPv6, with Kubernetes' and Cilium's spellings.
//! - [`SessionState`]: the RFC 4271 §8.2.2 BGP session states, with Cilium's names.
//! - [`cilium`]: Cilium's LoadBalancer classes, annotations and labels.
//! - [`service`]: the service datapath's frontend, backend and protocol.
//! - [`maglev`]: a Maglev lookup table in the compact form the datapath stores.
//! - [`reader::Reader`]: the bounds-checked cursor every decoder reads untrusted bytes with.
//!
//! No I/O, no dependencies beyond `serde`.

pub mod cilium;
pub mod condition;
mod family;
pub mod maglev;
mod object;
pub mod reader;
pub mod service;
mod session;

pub use condition::{Condition, ConditionStatus, ObjectCondition};
pub use family::IpFamily;
pub use object::{Kind, ObjectKey};
pub use session::SessionState;
