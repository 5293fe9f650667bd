//! What Cilium's operator writes for BGP, as a pure function of the snapshot and the
//! CiliumBGPNodeConfigs the API holds (v1.17 `operator/pkg/bgpv2/cluster.go`, `peer.go`;
//! cilium-compat.md §1.1–1.5). No I/O: [`super::bgp_status`] executes the plan.
//!
//! - **One NodeConfig per selected node**, named after the node, with a controller
//!   ownerReference to its ClusterConfig and `spec.bgpInstances` rendered from the
//!   ClusterConfig and the node's override ([`node_config_spec`]).
//! - **First owner wins.** A NodeConfig owned by a ClusterConfig that still selects the node
//!   stays with it; every other ClusterConfig selecting that node loses and reports
//!   `cilium.io/ConflictingClusterConfig`. Without a NodeConfig the first selecting
//!   ClusterConfig by name wins (the rule this node's renderer uses, so the two agree).
//! - **Stale NodeConfigs are deleted**: owned by a ClusterConfig that no longer selects the
//!   node (or no longer exists). One owned by something else is left alone, and blocks the
//!   node as in Cilium.
//! - **Conditions as Cilium writes them**: every ClusterConfig carries `NoMatchingNode`,
//!   `MissingPeerConfigs` and `ConflictingClusterConfig`, every PeerConfig
//!   `MissingAuthSecret`, each `True` while the problem holds and **kept with `False`** once
//!   it clears (Cilium calls `meta.SetStatusCondition` with `ConditionFalse`; it removes them
//!   only when status reporting is turned off). `lastTransitionTime` changes only with the
//!   status, `observedGeneration` follows the object.
//!
//! Objects without a uid (read from `--config-dir`, not from the API) can own nothing and have
//! no status to write; they are left out.
//!
//! **Conditions describe the API's objects, not rackd's last good configuration.** The
//! snapshot drops a new object with a broken reference and keeps the previous version of a
//! changed one (and the previous version of a referent that vanished), so for conditions the
//! configuration errors count too ([`Problem::Reference`] names exactly Cilium's missing
//! PeerConfig or Secret), and a ClusterConfig or PeerConfig with any error is taken as the API
//! serves it ([`Served`], fetched by the writer), with its current resourceVersion.
//! NodeConfigs still follow the snapshot: they say what the nodes run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rackd_model::cilium::{
    CiliumBGPClusterConfig, CiliumBGPNodeConfigInstanceOverride, CiliumBGPNodeConfigSpec,
    CiliumBGPNodeConfigStatus, CiliumBGPNodeInstance, CiliumBGPNodePeer, CiliumBGPPeerConfig,
};
use rackd_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as K8sCondition;
use rackd_model::rackd_types::condition::types;
use rackd_model::{ConfigError, Kind, Problem, Snapshot};
use serde_json::{Value, json};

use crate::bgp::render::{auth_password, cluster_config_selectors};

/// The API version and kind NodeConfigs are written and owned as.
pub const API_VERSION: &str = "cilium.io/v2";
/// Kind of the owner of a NodeConfig.
pub const CLUSTER_CONFIG_KIND: &str = "CiliumBGPClusterConfig";

/// One ownerReference of a NodeConfig, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

/// A CiliumBGPNodeConfig as the API holds it: what the plan needs, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfigView {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub generation: Option<i64>,
    pub owners: Vec<Owner>,
    /// `None` when the served spec does not decode (it is then rewritten).
    pub spec: Option<CiliumBGPNodeConfigSpec>,
    /// The served status (empty when absent or undecodable).
    pub status: CiliumBGPNodeConfigStatus,
}

impl NodeConfigView {
    /// Parses a served object; `None` without a name or uid.
    pub fn from_json(v: &Value) -> Option<Self> {
        let meta = v.get("metadata")?;
        let s = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_owned);
        let name = s("name").filter(|n| !n.is_empty())?;
        let uid = s("uid").filter(|u| !u.is_empty())?;
        let owners = meta
            .get("ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| {
                        let f = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
                        Some(Owner {
                            api_version: f("apiVersion")?,
                            kind: f("kind")?,
                            name: f("name")?,
                            uid: f("uid")?,
                            controller: r.get("controller").and_then(Value::as_bool) == Some(true),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            name,
            uid,
            resource_version: s("resourceVersion").unwrap_or_default(),
            generation: meta.get("generation").and_then(Value::as_i64),
            owners,
            spec: v
                .get("spec")
                .and_then(|sp| serde_json::from_value(sp.clone()).ok()),
            status: v
                .get("status")
                .and_then(|st| serde_json::from_value(st.clone()).ok())
                .unwrap_or_default(),
        })
    }

    /// The ClusterConfig that owns it (Cilium's `ownerClusterConfigName`: the first
    /// ownerReference of that kind; a NodeConfig has one).
    pub fn cluster_owner(&self) -> Option<&Owner> {
        self.owners
            .iter()
            .find(|o| o.kind == CLUSTER_CONFIG_KIND && o.api_version.starts_with("cilium.io/"))
    }

    /// Whether ClusterConfig `uid` owns it (Cilium's `isOwner`: by uid).
    pub fn owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| o.uid == uid)
    }
}

/// The NodeConfigs the API holds, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeConfigs {
    /// A complete list has been seen (before that nothing may be created or deleted).
    pub synced: bool,
    pub items: BTreeMap<String, Arc<NodeConfigView>>,
}

/// A NodeConfig to create or update by server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfigApply {
    /// Node name.
    pub name: String,
    /// The version decided on; `None`: it does not exist yet.
    pub resource_version: Option<String>,
    /// The apply body: metadata (name, ownerReferences, resourceVersion) and spec.
    pub body: Value,
}

/// A NodeConfig to delete, preconditioned on what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfigDelete {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// A status apply on a ClusterConfig or PeerConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusApply {
    pub name: String,
    pub body: Value,
}

/// Everything the leader should write; empty when the API already holds it all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub delete: Vec<NodeConfigDelete>,
    pub apply: Vec<NodeConfigApply>,
    pub cluster_status: Vec<StatusApply>,
    pub peer_status: Vec<StatusApply>,
}

impl Plan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty()
            && self.apply.is_empty()
            && self.cluster_status.is_empty()
            && self.peer_status.is_empty()
    }
}

/// ClusterConfigs and PeerConfigs as the API serves them now, for those with a configuration
/// error (see the module docs); by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    pub cluster_configs: BTreeMap<String, CiliumBGPClusterConfig>,
    pub peer_configs: BTreeMap<String, CiliumBGPPeerConfig>,
}

/// The ClusterConfigs and PeerConfigs (by name) that have a configuration error: the writer
/// fetches them as served.
pub fn objects_in_error(errors: &[ConfigError]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cc = BTreeSet::new();
    let mut pc = BTreeSet::new();
    for e in errors {
        let Some(o) = &e.object else { continue };
        let Some(name) = o.name.clone() else { continue };
        if o.kind == Kind::BgpClusterConfig.as_str() {
            cc.insert(name);
        } else if o.kind == Kind::BgpPeerConfig.as_str() {
            pc.insert(name);
        }
    }
    (cc, pc)
}

/// Referents the configuration errors report missing: `(referring kind, name)` → the
/// missing objects of `target` kind.
fn reported_missing(
    errors: &[ConfigError],
    from: Kind,
    target: Kind,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in errors {
        let (Some(o), Problem::Reference { target: t, .. }) = (&e.object, &e.problem) else {
            continue;
        };
        if o.kind == from.as_str()
            && t.kind == target
            && let Some(n) = &o.name
        {
            out.entry(n.clone()).or_default().insert(t.name.clone());
        }
    }
    out
}

/// `spec` of the NodeConfig for a node selected by `cc` (Cilium's `toNodeBGPInstance`):
/// the ClusterConfig's instances, with the override's routerID, localPort and localASN per
/// instance and localAddress per peer.
pub fn node_config_spec(
    cc: &CiliumBGPClusterConfig,
    overrides: &[CiliumBGPNodeConfigInstanceOverride],
) -> CiliumBGPNodeConfigSpec {
    let bgp_instances = cc
        .spec
        .bgp_instances
        .iter()
        .map(|inst| {
            let o = overrides.iter().find(|o| o.name == inst.name);
            CiliumBGPNodeInstance {
                name: inst.name.clone(),
                local_asn: o.and_then(|o| o.local_asn).or(inst.local_asn),
                router_id: o.and_then(|o| o.router_id.clone()),
                local_port: o.and_then(|o| o.local_port).or(inst.local_port),
                peers: inst
                    .peers
                    .iter()
                    .map(|p| {
                        let po = o.and_then(|o| o.peers.iter().find(|x| x.name == p.name));
                        CiliumBGPNodePeer {
                            name: p.name.clone(),
                            peer_address: p.peer_address.clone(),
                            peer_interface: p
                                .peer_interface
                                .clone()
                                .or_else(|| po.and_then(|x| x.peer_interface.clone())),
                            peer_asn: Some(p.peer_asn),
                            auto_discovery: p.auto_discovery.clone(),
                            local_address: po.and_then(|x| x.local_address.clone()),
                            peer_config_ref: p.peer_config_ref.clone(),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    CiliumBGPNodeConfigSpec { bgp_instances }
}

/// A ClusterConfig the plan can act for: from the API (a uid) with a usable selector.
struct Candidate<'a> {
    name: String,
    uid: String,
    cc: &'a CiliumBGPClusterConfig,
    selector: rackd_model::selector::Selector,
}

/// What the plan reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub snapshot: &'a Snapshot,
    /// The configuration's current errors.
    pub errors: &'a [ConfigError],
    pub served: &'a Served,
    pub node_configs: &'a NodeConfigs,
    /// Where auth Secrets live.
    pub secrets_namespace: &'a str,
    /// RFC 3339, for new transition times.
    pub now: &'a str,
}

/// The plan; see the module docs.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let PlanInput {
        snapshot: snap,
        errors,
        served,
        node_configs: existing,
        secrets_namespace,
        now,
    } = *input;
    let mut out = Plan::default();
    let mut candidates = Vec::new();
    // ClusterConfigs whose selector cannot be used: Cilium stops at the error, so what they
    // own stays as it is and they get no conditions.
    let mut frozen = BTreeSet::new();
    for cs in cluster_config_selectors(snap) {
        let Some(uid) = cs.config.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            continue;
        };
        match cs.selector {
            Ok(selector) => candidates.push(Candidate {
                name: cs.name,
                uid,
                cc: cs.config,
                selector,
            }),
            Err(_) => {
                frozen.insert(uid);
            }
        }
    }
    let by_uid: BTreeMap<&str, &Candidate<'_>> =
        candidates.iter().map(|c| (c.uid.as_str(), c)).collect();

    // Per ClusterConfig: the nodes it selects, and the ClusterConfigs that beat it to one.
    let mut matching: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut conflicts: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut selected_by: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for node in snap.nodes() {
        let Some(node_name) = node.metadata.name.as_deref() else {
            continue;
        };
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let selecting: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|c| c.selector.matches(&labels))
            .collect();
        for c in &selecting {
            matching
                .entry(c.uid.as_str())
                .or_default()
                .insert(node_name.to_owned());
            selected_by
                .entry(node_name.to_owned())
                .or_default()
                .insert(c.uid.as_str());
        }
        if selecting.is_empty() {
            continue;
        }
        let current = existing.items.get(node_name);
        let winner: Option<(&str, &str)> = match current {
            None => selecting.first().map(|c| (c.uid.as_str(), c.name.as_str())),
            Some(nc) => match nc.cluster_owner() {
                // Its owner still selects the node: it keeps it.
                Some(o) if selecting.iter().any(|c| c.uid == o.uid) => {
                    Some((o.uid.as_str(), o.name.as_str()))
                }
                // An owner whose selector is unusable keeps it too (nothing it owns moves).
                Some(o) if frozen.contains(&o.uid) => Some((o.uid.as_str(), o.name.as_str())),
                // Owned by a ClusterConfig that no longer selects the node or is gone: it is
                // deleted below and given to the first selecting one on the next pass (after
                // the deletion is seen), without a conflict reported meanwhile.
                Some(_) => None,
                // Not a ClusterConfig's: untouchable, and no owner to name (as in Cilium).
                None => {
                    continue;
                }
            },
        };
        let Some((win_uid, win_name)) = winner else {
            continue;
        };
        for c in &selecting {
            if c.uid != win_uid {
                conflicts
                    .entry(c.uid.as_str())
                    .or_default()
                    .insert(win_name.to_owned());
            }
        }
        let Some(w) = by_uid.get(win_uid) else {
            continue;
        };
        let overrides = snap
            .bgp_node_config_override(node_name)
            .map(|o| o.spec.bgp_instances.as_slice())
            .unwrap_or_default();
        let spec = node_config_spec(w.cc, overrides);
        let up_to_date = current.is_some_and(|nc| {
            nc.spec.as_ref() == Some(&spec)
                && nc
                    .owners
                    .iter()
                    .any(|o| o.uid == w.uid && o.controller && o.name == w.name)
        });
        if !up_to_date && existing.synced {
            out.apply
                .push(node_config_apply(node_name, w, current, &spec));
        }
    }

    if existing.synced {
        for nc in existing.items.values() {
            let Some(o) = nc.cluster_owner() else {
                continue;
            };
            if frozen.contains(&o.uid) {
                continue;
            }
            let still = selected_by
                .get(&nc.name)
                .is_some_and(|s| s.contains(o.uid.as_str()));
            if !still {
                out.delete.push(NodeConfigDelete {
                    name: nc.name.clone(),
                    uid: nc.uid.clone(),
                    resource_version: nc.resource_version.clone(),
                });
            }
        }
        // Conflicts depend on the NodeConfigs: only reported from a complete list.
        let reported = reported_missing(errors, Kind::BgpClusterConfig, Kind::BgpPeerConfig);
        let mut ccs: BTreeMap<String, &CiliumBGPClusterConfig> = snap
            .bgp_cluster_configs()
            .filter_map(|cc| Some((cc.metadata.name.clone()?, cc)))
            .collect();
        ccs.extend(served.cluster_configs.iter().map(|(n, cc)| (n.clone(), cc)));
        for (name, cc) in ccs {
            let Some(uid) = cc.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
                continue;
            };
            if frozen.contains(uid) {
                continue;
            }
            // A ClusterConfig rackd does not run (in error) selects nodes all the same.
            let selects_any = matching.get(uid).is_some_and(|m| !m.is_empty())
                || (!by_uid.contains_key(uid) && selects_a_node(snap, cc));
            let mut missing = missing_peer_configs(snap, cc);
            missing.extend(reported.get(&name).into_iter().flatten().cloned());
            let missing: Vec<String> = missing.into_iter().collect();
            let conds = [
                no_matching_node(!selects_any),
                missing_peer_configs_condition(&missing),
                conflicting(conflicts.get(uid)),
            ];
            if let Some(body) = status_body(
                CLUSTER_CONFIG_KIND,
                &cc.metadata,
                cc.status.as_ref().map(|s| s.conditions.as_slice()),
                &conds,
                now,
            ) {
                out.cluster_status.push(StatusApply { name, body });
            }
        }
    }

    let reported = reported_missing(errors, Kind::BgpPeerConfig, Kind::Secret);
    let mut pcs: BTreeMap<String, &CiliumBGPPeerConfig> = snap
        .bgp_peer_configs()
        .filter_map(|pc| Some((pc.metadata.name.clone()?, pc)))
        .collect();
    pcs.extend(served.peer_configs.iter().map(|(n, pc)| (n.clone(), pc)));
    for (name, pc) in pcs {
        if pc.metadata.uid.as_deref().is_none_or(str::is_empty) {
            continue;
        }
        let reported_missing = reported.get(&name).is_some_and(|s| !s.is_empty());
        let cond = missing_auth_secret(
            snap,
            secrets_namespace,
            pc.spec.auth_secret_ref.as_deref(),
            reported_missing,
        );
        if let Some(body) = status_body(
            "CiliumBGPPeerConfig",
            &pc.metadata,
            pc.status.as_ref().map(|s| s.conditions.as_slice()),
            &[cond],
            now,
        ) {
            out.peer_status.push(StatusApply { name, body });
        }
    }
    out
}

fn node_config_apply(
    node: &str,
    w: &Candidate<'_>,
    current: Option<&Arc<NodeConfigView>>,
    spec: &CiliumBGPNodeConfigSpec,
) -> NodeConfigApply {
    let resource_version = current.map(|c| c.resource_version.clone());
    let mut metadata = json!({
        "name": node,
        "ownerReferences": [{
            "apiVersion": API_VERSION,
            "kind": CLUSTER_CONFIG_KIND,
            "name": w.name,
            "uid": w.uid,
            "controller": true,
        }],
    });
    if let Some(rv) = &resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    NodeConfigApply {
        name: node.to_owned(),
        resource_version,
        body: json!({
            "apiVersion": API_VERSION,
            "kind": "CiliumBGPNodeConfig",
            "metadata": metadata,
            "spec": serde_json::to_value(spec).unwrap_or(Value::Null),
        }),
    }
}

/// Whether `cc`'s selector selects any Node.
fn selects_a_node(snap: &Snapshot, cc: &CiliumBGPClusterConfig) -> bool {
    let sel = cc.spec.node_selector();
    snap.nodes()
        .any(|n| sel.matches(&n.metadata.labels.clone().unwrap_or_default()))
}

/// The PeerConfigs `cc` references that do not exist (Cilium's `missingPeerConfigs`).
fn missing_peer_configs(snap: &Snapshot, cc: &CiliumBGPClusterConfig) -> BTreeSet<String> {
    cc.spec
        .bgp_instances
        .iter()
        .flat_map(|i| i.peers.iter())
        .filter_map(|p| p.peer_config_ref.as_ref())
        .filter(|r| snap.bgp_peer_config(&r.name).is_none())
        .map(|r| r.name.clone())
        .collect()
}

/// A condition to write: type, status, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.into_iter().map(String::as_str).collect();
    format!("[{}]", v.join(" "))
}

fn no_matching_node(none: bool) -> Cond {
    // Cilium keeps this message whatever the status.
    Cond {
        type_: types::NO_MATCHING_NODE,
        status: none,
        reason: "NoMatchingNode",
        message: "No node matches spec.nodeSelector".into(),
    }
}

fn missing_peer_configs_condition(missing: &[String]) -> Cond {
    Cond {
        type_: types::MISSING_PEER_CONFIGS,
        status: !missing.is_empty(),
        reason: "MissingPeerConfigs",
        message: if missing.is_empty() {
            String::new()
        } else {
            format!(
                "Referenced CiliumBGPPeerConfig(s) are missing: {}",
                go_list(missing)
            )
        },
    }
}

fn conflicting(winners: Option<&BTreeSet<String>>) -> Cond {
    let w = winners.filter(|w| !w.is_empty());
    Cond {
        type_: types::CONFLICTING_CLUSTER_CONFIG,
        status: w.is_some(),
        reason: "ConflictingClusterConfigs",
        message: w.map_or_else(String::new, |w| {
            format!(
                "Selecting the same node(s) with ClusterConfig(s): {}",
                go_list(w)
            )
        }),
    }
}

/// `MissingAuthSecret`: Cilium checks that the Secret exists; rackd also needs its
/// `password` key (without it no session can be authenticated), so that is reported too.
/// `reported`: the configuration errors say the Secret is missing (the snapshot may still
/// hold a vanished Secret's last version).
fn missing_auth_secret(snap: &Snapshot, ns: &str, secret: Option<&str>, reported: bool) -> Cond {
    let message = match secret {
        None => String::new(),
        Some(s) if reported || snap.secret(ns, s).is_none() => {
            format!("Referenced Auth Secret {s:?} is missing")
        }
        Some(s) if auth_password(snap, ns, s).is_none() => {
            format!("Referenced Auth Secret {s:?} has no key \"password\"")
        }
        Some(_) => String::new(),
    };
    Cond {
        type_: types::MISSING_AUTH_SECRET,
        status: !message.is_empty(),
        reason: "MissingAuthSecret",
        message,
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Whether `cur` already says `c` at `generation` (Cilium's `SetStatusCondition` changes
/// nothing then).
fn holds(cur: &K8sCondition, c: &Cond, generation: Option<i64>) -> bool {
    cur.status == status_str(c.status)
        && cur.reason == c.reason
        && cur.message == c.message
        && cur.observed_generation == generation
}

/// The status apply for `conds` on a ClusterConfig or PeerConfig, fenced by the
/// resourceVersion it was decided on; `None` when the API already holds every condition.
/// Conditions other managers set on the object are not sent, so they stay theirs.
fn status_body(
    kind: &str,
    meta: &rackd_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    current: Option<&[K8sCondition]>,
    conds: &[Cond],
    now: &str,
) -> Option<Value> {
    let current = current.unwrap_or_default();
    let generation = meta.generation;
    let find = |t: &str| current.iter().find(|c| c.type_ == t);
    if conds
        .iter()
        .all(|c| find(c.type_).is_some_and(|cur| holds(cur, c, generation)))
    {
        return None;
    }
    let mut sorted: Vec<&Cond> = conds.iter().collect();
    sorted.sort_by_key(|c| c.type_);
    let conditions: Vec<Value> = sorted
        .into_iter()
        .map(|c| {
            let status = status_str(c.status);
            // Kept while the status stays: only a transition moves it.
            let since = find(c.type_)
                .filter(|cur| cur.status == status)
                .and_then(|cur| serde_json::to_value(&cur.last_transition_time).ok())
                .unwrap_or_else(|| json!(now));
            let mut v = json!({
                "type": c.type_,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
            });
            if let Some(g) = generation {
                v["observedGeneration"] = json!(g);
            }
            v
        })
        .collect();
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": meta.name, "resourceVersion": meta.resource_version},
        "status": {"conditions": conditions},
    }))
}

#[cfg(test)]
#[path = "bgp_plan_tests.rs"]
mod tests;
