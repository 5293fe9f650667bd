//! Status conditions: what Cilium writes into `status.conditions` of its objects
//! (Kubernetes `metav1.Condition`: type, status, reason, message), and rackd's problems in
//! the same shape, kept per object.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ObjectKey;

/// `status` of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    /// Cilium uses it for its pool count conditions.
    Unknown,
}

impl ConditionStatus {
    /// Kubernetes' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status condition, with Cilium's exact type, reason and message where Cilium has one.
/// The type and reason are usually constants ([`types`], [`reasons`]), hence `Cow`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Condition {
    /// Condition type, e.g. `cilium.io/IPAMRequestSatisfied`.
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
    pub status: ConditionStatus,
    /// Machine-readable reason (CamelCase or Cilium's snake_case, as Cilium spells it).
    pub reason: Cow<'static, str>,
    /// For people; empty where Cilium leaves it empty.
    pub message: String,
}

impl Condition {
    /// A condition.
    pub fn new(
        type_: impl Into<Cow<'static, str>>,
        status: ConditionStatus,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A problem in Cilium's polarity: the condition type names the problem and is `True`
    /// while it holds (`cilium.io/MissingAuthSecret: True`).
    pub fn problem(
        type_: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_, ConditionStatus::True, reason, message)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} ({})", self.type_, self.status, self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// A condition of one object: what Cilium would write into that object's `status`, or a
/// problem rackd found with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectCondition {
    /// The object; `None` when a document could not be identified (no kind or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectKey>,
    /// Where the object was read from, when that helps (`file.yaml: document 2 (line 5)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub condition: Condition,
}

impl ObjectCondition {
    /// A condition of `object`.
    pub fn new(object: ObjectKey, condition: Condition) -> Self {
        Self {
            object: Some(object),
            source: None,
            condition,
        }
    }

    /// Whether this is a problem (status `True` on a problem type, or `False` on a
    /// satisfaction type): what `rackctl status` counts as an error.
    pub fn is_problem(&self) -> bool {
        match self.condition.type_.as_ref() {
            types::IPAM_REQUEST_SATISFIED => self.condition.status == ConditionStatus::False,
            types::IPS_TOTAL | types::IPS_AVAILABLE | types::IPS_USED => false,
            // Every other type names a problem, Cilium's way.
            _ => self.condition.status == ConditionStatus::True,
        }
    }
}

impl fmt::Display for ObjectCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.object, &self.source) {
            (Some(o), _) => write!(f, "{o}: ")?,
            (None, Some(s)) => write!(f, "{s}: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.condition)
    }
}

/// Condition types.
pub mod types {
    /// Service: LB-IPAM gave it what it asked for (`lbipam.go`).
    pub const IPAM_REQUEST_SATISFIED: &str = "cilium.io/IPAMRequestSatisfied";
    /// Pool: total addresses (status Unknown, count in the message).
    pub const IPS_TOTAL: &str = "cilium.io/IPsTotal";
    /// Pool: addresses still allocatable.
    pub const IPS_AVAILABLE: &str = "cilium.io/IPsAvailable";
    /// Pool: addresses in use.
    pub const IPS_USED: &str = "cilium.io/IPsUsed";
    /// Pool: overlaps another pool.
    pub const POOL_CONFLICT: &str = "cilium.io/PoolConflict";
    /// ClusterConfig: its nodeSelector selects no node.
    pub const NO_MATCHING_NODE: &str = "cilium.io/NoMatchingNode";
    /// ClusterConfig: a referenced PeerConfig does not exist.
    pub const MISSING_PEER_CONFIGS: &str = "cilium.io/MissingPeerConfigs";
    /// ClusterConfig: another ClusterConfig selects the same node.
    pub const CONFLICTING_CLUSTER_CONFIG: &str = "cilium.io/ConflictingClusterConfig";
    /// PeerConfig: its auth Secret (or the Secret's `password` key) is missing.
    pub const MISSING_AUTH_SECRET: &str = "cilium.io/MissingAuthSecret";
    /// NodeConfig: a BGP instance could not be reconciled.
    pub const BGP_RECONCILE_ERROR: &str = "cilium.io/BGPReconcileError";
    /// L2AnnouncementPolicy: its nodeSelector is unusable.
    pub const BAD_NODE_SELECTOR: &str = "io.cilium/bad-node-selector";
    /// L2AnnouncementPolicy: its serviceSelector is unusable.
    pub const BAD_SERVICE_SELECTOR: &str = "io.cilium/bad-service-selector";
    /// L2AnnouncementPolicy: an `interfaces` entry is not a valid regular expression.
    pub const BAD_INTERFACE_REGEX: &str = "io.cilium/bad-interface-regex";
    /// rackd: the object (or document) could not be loaded as written; its last good version,
    /// if any, stays in force. The reason names the kind of problem.
    pub const INVALID_CONFIGURATION: &str = "rackd.io/InvalidConfiguration";
    /// rackd: a configuration source (a directory, the API server) cannot be read; the last
    /// good configuration stays in force.
    pub const SOURCE_UNAVAILABLE: &str = "rackd.io/SourceUnavailable";
    /// rackd: a controller could not apply what the configuration asks for.
    pub const RECONCILE_ERROR: &str = "rackd.io/ReconcileError";
    /// rackd: the configuration asks for something this node cannot do; it is ignored.
    pub const UNSUPPORTED: &str = "rackd.io/Unsupported";
}

/// Reasons rackd uses (Cilium's own reasons are spelt where they are produced).
pub mod reasons {
    /// Cilium's generic reason on its L2 policy conditions.
    pub const ERROR: &str = "error";
    /// A referenced object is missing.
    pub const NOT_FOUND: &str = "NotFound";
    /// Another object takes precedence.
    pub const CONFLICT: &str = "Conflict";
    /// The value cannot be used.
    pub const INVALID: &str = "Invalid";
    /// The kernel, a peer or a file refused an operation.
    pub const FAILED: &str = "Failed";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn serialises_like_metav1_condition() {
        let c = Condition::new(
            types::IPAM_REQUEST_SATISFIED,
            ConditionStatus::True,
            "satisfied",
            "",
        );
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["type"], "cilium.io/IPAMRequestSatisfied");
        assert_eq!(j["status"], "True");
        assert_eq!(j["reason"], "satisfied");
        let back: Condition = serde_json::from_value(j).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn problem_polarity() {
        let key = ObjectKey::cluster(Kind::BgpPeerConfig, "p");
        let missing = ObjectCondition::new(
            key.clone(),
            Condition::problem(types::MISSING_AUTH_SECRET, reasons::NOT_FOUND, "x"),
        );
        assert!(missing.is_problem());
        let ok = ObjectCondition::new(
            key.clone(),
            Condition::new(
                types::IPAM_REQUEST_SATISFIED,
                ConditionStatus::True,
                "satisfied",
                "",
            ),
        );
        assert!(!ok.is_problem());
        let unsatisfied = ObjectCondition::new(
            key,
            Condition::new(
                types::IPAM_REQUEST_SATISFIED,
                ConditionStatus::False,
                "no_pool",
                "",
            ),
        );
        assert!(unsatisfied.is_problem());
        assert_eq!(
            missing.to_string(),
            "CiliumBGPPeerConfig p: cilium.io/MissingAuthSecret=True (NotFound): x"
        );
    }
}
