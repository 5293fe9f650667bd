//! Condition types of CiliumEgressGatewayPolicy problems. Cilium gives the CRD no status
//! (`cegp_types.go`: "no status"), so every type is rackd's; they follow Cilium's polarity
//! (the type names the problem, status `True`), so `ObjectCondition::is_problem` counts them.
//! Reasons are the workspace's ([`rackd_types::condition::reasons`]).

/// The policy cannot be used (a selector that does not compile, a CIDR or egressIP that does
/// not parse, both egressIP and interface, a rule with neither namespaceSelector nor
/// podSelector). Like Cilium's parser, rackd then programs nothing for it. Reason `Invalid`.
pub const POLICY_INVALID: &str = "rackd.io/EgressPolicyInvalid";

/// A gateway group has no node: no node matches its `nodeSelector` (or none of those has an
/// InternalIP). Traffic pinned to it is dropped, as in Cilium. Reason `NotFound`.
pub const NO_GATEWAY_NODE: &str = "rackd.io/EgressNoGatewayNode";

/// Some of the policy's (source, destination) keys are also produced by a policy whose name
/// sorts first, which wins them. Reason `Conflict`.
pub const POLICY_OVERLAP: &str = "rackd.io/EgressPolicyOverlap";

/// Two selected pods claim the same address; the first by namespace/name keeps the entries.
/// Reason `Conflict`.
pub const DUPLICATE_POD_IP: &str = "rackd.io/EgressDuplicatePodIP";

/// An `excludedCIDRs` entry lies within no `destinationCIDRs` entry, so it has no effect in the
/// longest-prefix lookup; rackd leaves it out of the map. Reason `Invalid`.
pub const EXCLUDED_CIDR_UNUSED: &str = "rackd.io/EgressExcludedCIDRUnused";

/// A node matches a gateway `nodeSelector` but has no InternalIP to tunnel to, so it is not a
/// candidate (Cilium skips it the same way). Reason `NotFound`.
pub const GATEWAY_NODE_WITHOUT_IP: &str = "rackd.io/EgressGatewayNodeWithoutIP";

/// A selected pod's node is unknown or has no InternalIP: the gateway cannot tunnel replies
/// back to it. Reason `NotFound`.
pub const SOURCE_NODE_WITHOUT_IP: &str = "rackd.io/EgressSourceNodeWithoutIP";

/// The election names a node that is not (or no longer) a candidate of the group; the name
/// rule is used instead until the daemon re-elects. Reason `Invalid`.
pub const ELECTION_NOT_A_CANDIDATE: &str = "rackd.io/EgressElectionNotACandidate";

/// A gateway's `egressIP` is of one family and some `destinationCIDRs` of the other: that
/// traffic has no egress address of its family to be SNATed to (Cilium's gateway drops such
/// traffic, `DROP_NO_EGRESS_IP`). Reason `Invalid`.
pub const EGRESS_IP_FAMILY_MISMATCH: &str = "rackd.io/EgressIPFamilyMismatch";

/// This node is a gateway of the policy, but its egress address cannot be found here: the
/// `egressIP` is on none of its interfaces, or the `interface` (or the default route's) has no
/// address of the family. Cilium's gateway drops such traffic ("No Egress IP configured"),
/// and so does rackd's, counted. Reason `NotFound`.
pub const EGRESS_IP_NOT_ON_GATEWAY: &str = "rackd.io/EgressIPNotOnGateway";

/// A policy exists but `--enable-egress-gateway` is off: nothing is enforced and the pods
/// leave with their node's address. Reason `Invalid`.
pub const GATEWAY_DISABLED: &str = "rackd.io/EgressGatewayDisabled";
