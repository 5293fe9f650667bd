//! Status written back to the API, as Cilium's operator writes it: each LB-IPAM Service's
//! `status.loadBalancer.ingress` and its `cilium.io/IPAMRequestSatisfied` condition, and each
//! pool's conditions (`cilium.io/IPsTotal`, `IPsAvailable`, `IPsUsed`, `PoolConflict`).
//!
//! - **One writer.** Only the LB-IPAM leader writes, and only while its Lease is valid
//!   ([`super::lease::Leadership::valid_at`], checked before every write).
//! - **No fighting.** Writes are server-side apply on the status subresource under the field
//!   manager `rackd`, so conditions other controllers set on the same object are theirs and
//!   untouched, and a field another manager owns is a conflict that is reported, never
//!   forced.
//! - **Fenced.** Every apply carries the resourceVersion of the object the decision was made
//!   on: a deposed leader acting on stale reads gets 409 instead of undoing its successor.
//! - **Level-triggered, incremental.** What is written is compared with what the API holds
//!   (the watched object): an equal status is not written again, so steady state makes no
//!   requests. A run looks only at the Services whose LB-IPAM outcome or object changed since
//!   the last (both inputs are persistent maps, diffed in O(changes)), plus those whose write
//!   was refused; a full pass (periodic resync, a new term) looks at all of them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use lbipam::ServiceKey;
use rackd_model::rackd_types::{Condition, ConditionStatus};
use rackd_model::{Kind, Object, ObjectKey, Snapshot};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::lease::Leadership;
use crate::config::ConfigState;
use crate::controller::{Context, Controller, Outcome};
use crate::lbipam_ctl::LbStatus;
use crate::metrics::Metrics;

/// The field manager rackd applies status as.
pub const FIELD_MANAGER: &str = "rackd";

/// How soon a write refused with a conflict is tried again (on the next watched version).
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// Write failures: the run is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("writing status of {object}")]
    Write {
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// The status writer; see the module docs.
pub struct StatusWriter {
    client: kube::Client,
    metrics: Arc<Metrics>,
    /// What the last run looked at, to find the Services that changed since.
    last: Option<Seen>,
    /// Services to look at again: a write refused (conflict, transport) or not reached.
    pending: std::collections::BTreeSet<ServiceKey>,
}

/// The inputs of a run, kept to diff the next run's against (both are persistent maps:
/// cloned in O(1), diffed in O(changes)).
struct Seen {
    lb: Arc<LbStatus>,
    snapshot: Snapshot,
    term: u64,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter").finish_non_exhaustive()
    }
}

impl StatusWriter {
    /// A writer on `client`, counting its writes in `rackd_k8s_status_writes_total`.
    pub fn new(client: kube::Client, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            metrics,
            last: None,
            pending: Default::default(),
        }
    }

    /// The Services to look at this run ([`changed_services`] plus those left pending).
    fn services_to_examine(
        &mut self,
        cfg: &ConfigState,
        lb: &Arc<LbStatus>,
        term: u64,
        full: bool,
    ) -> Vec<ServiceKey> {
        let prev = if full { None } else { self.last.as_ref() };
        let mut todo = changed_services(prev, &cfg.snapshot, lb, term);
        todo.append(&mut self.pending);
        self.last = Some(Seen {
            lb: lb.clone(),
            snapshot: cfg.snapshot.clone(),
            term,
        });
        todo.into_iter().collect()
    }

    fn wrote(&self, kind: &str) {
        self.metrics.k8s_status_wrote(kind);
    }
}

/// The Services whose status may differ from what should be written: with no previous run
/// of the same term, every one LB-IPAM handles; otherwise those whose LB-IPAM outcome or whose
/// Service object changed since.
fn changed_services(
    prev: Option<&Seen>,
    snapshot: &Snapshot,
    lb: &LbStatus,
    term: u64,
) -> std::collections::BTreeSet<ServiceKey> {
    let Some(prev) = prev.filter(|p| p.term == term) else {
        return lb.services.keys().cloned().collect();
    };
    use imbl::ordmap::DiffItem;
    let mut out = std::collections::BTreeSet::new();
    for d in prev.lb.services.diff(&lb.services) {
        let k = match d {
            DiffItem::Add(k, _) | DiffItem::Remove(k, _) => k,
            DiffItem::Update { new: (k, _), .. } => k,
        };
        out.insert(k.clone());
    }
    for (key, _) in snapshot.changes_since(&prev.snapshot) {
        if key.kind == Kind::Service {
            out.insert(ServiceKey::new(
                key.namespace.as_deref().unwrap_or("default"),
                &key.name,
            ));
        }
    }
    out
}

/// A condition as `metav1.Condition` JSON, keeping the transition time when the status did
/// not change.
fn condition_json(c: &Condition, previous: Option<&Value>, generation: Option<i64>) -> Value {
    let status = match c.status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    };
    let same_status = previous
        .and_then(|p| p.get("status"))
        .and_then(Value::as_str)
        == Some(status);
    let since = previous
        .filter(|_| same_status)
        .and_then(|p| p.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| Value::String(now_rfc3339()));
    let reason = if c.reason.is_empty() {
        "noreason"
    } else {
        &c.reason
    };
    let mut v = json!({
        "type": c.type_,
        "status": status,
        "reason": reason,
        "message": c.message,
        "lastTransitionTime": since,
    });
    if let Some(g) = generation {
        v["observedGeneration"] = json!(g);
    }
    v
}

fn now_rfc3339() -> String {
    // Seconds, as metav1.Time serialises.
    let t = k8s_openapi::jiff::Timestamp::now();
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether `current` (conditions as served) already says `c`.
fn has_condition(current: &[Value], c: &Condition) -> Option<bool> {
    let cur = current
        .iter()
        .find(|v| v.get("type").and_then(Value::as_str) == Some(&*c.type_))?;
    let status = match c.status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    };
    let reason = if c.reason.is_empty() {
        "noreason"
    } else {
        &c.reason
    };
    Some(
        cur.get("status").and_then(Value::as_str) == Some(status)
            && cur.get("reason").and_then(Value::as_str) == Some(reason)
            && cur.get("message").and_then(Value::as_str).unwrap_or("") == c.message,
    )
}

/// The Service status to apply, or `None` when the API already holds it.
pub fn service_patch(svc: &Service, ips: &[IpAddr], cond: &Condition) -> Option<Value> {
    let current_ips = rackd_model::status_ingress_ips(svc);
    let conditions: Vec<Value> = svc
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut want: Vec<IpAddr> = ips.to_vec();
    want.sort();
    let mut have = current_ips;
    have.sort();
    if want == have && has_condition(&conditions, cond) == Some(true) {
        return None;
    }
    let previous = conditions
        .iter()
        .find(|v| v.get("type").and_then(Value::as_str) == Some(&*cond.type_));
    let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    Some(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": svc.metadata.name,
            "namespace": svc.metadata.namespace,
            "resourceVersion": svc.metadata.resource_version,
        },
        "status": {
            "loadBalancer": {"ingress": ingress},
            "conditions": [condition_json(cond, previous, svc.metadata.generation)],
        }
    }))
}

/// The pool status to apply, or `None` when the API already holds it.
pub fn pool_patch(pool: &Value, conds: &[Condition]) -> Option<Value> {
    let current: Vec<Value> = pool
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conds
        .iter()
        .all(|c| has_condition(&current, c) == Some(true))
    {
        return None;
    }
    let generation = pool.pointer("/metadata/generation").and_then(Value::as_i64);
    let conditions: Vec<Value> = conds
        .iter()
        .map(|c| {
            let prev = current
                .iter()
                .find(|v| v.get("type").and_then(Value::as_str) == Some(&*c.type_));
            condition_json(c, prev, generation)
        })
        .collect();
    Some(json!({
        "apiVersion": pool.get("apiVersion").cloned().unwrap_or(json!("cilium.io/v2")),
        "kind": "CiliumLoadBalancerIPPool",
        "metadata": {
            "name": pool.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "resourceVersion": pool.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
        },
        "status": {"conditions": conditions},
    }))
}

fn service_of<'a>(snap: &'a Snapshot, k: &ServiceKey) -> Option<&'a Service> {
    let key = ObjectKey::namespaced(Kind::Service, &k.namespace, &k.name);
    match snap.get(&key).map(|l| &*l.object) {
        Some(Object::Service(s)) => Some(s),
        _ => None,
    }
}

impl Controller for StatusWriter {
    const NAME: &'static str = "k8s-status";
    type Inputs = (
        watch::Receiver<Arc<ConfigState>>,
        watch::Receiver<Arc<LbStatus>>,
        watch::Receiver<Leadership>,
    );
    type Error = StatusError;

    async fn reconcile(
        &mut self,
        (cfg, lb, lead): &(Arc<ConfigState>, Arc<LbStatus>, Leadership),
        ctx: Context,
    ) -> Result<Outcome, StatusError> {
        if !cfg.loaded || !lb.ready || !lead.leader {
            self.last = None;
            self.pending.clear();
            return Ok(Outcome::DONE);
        }
        let snap = &cfg.snapshot;
        let pp = PatchParams::apply(FIELD_MANAGER);
        let mut conflicts = 0u64;
        let todo = self.services_to_examine(cfg, lb, lead.term, ctx.full);
        for (i, k) in todo.iter().enumerate() {
            let Some(outcome) = lb.services.get(k) else {
                continue;
            };
            let Some(svc) = service_of(snap, k) else {
                continue;
            };
            let Some(patch) = service_patch(svc, &outcome.ips(), &outcome.condition()) else {
                continue;
            };
            if !lead.valid_at(Instant::now()) {
                // The Lease ran out while writing: stop; the next term looks at everything.
                self.pending.extend(todo[i..].iter().cloned());
                return Ok(Outcome::DONE);
            }
            let api: Api<Service> = Api::namespaced(self.client.clone(), &k.namespace);
            self.wrote("service");
            match api.patch_status(&k.name, &pp, &Patch::Apply(&patch)).await {
                Ok(_) => debug!(service = %k, "status written"),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    conflicts += 1;
                    self.pending.insert(k.clone());
                    debug!(service = %k, message = %s.message, "status write conflict; retried on the next version");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    self.pending.extend(todo[i..].iter().cloned());
                    return Err(StatusError::Write {
                        object: format!("Service {k}"),
                        source,
                    });
                }
            }
        }
        let ar: ApiResource = super::source::api_resource(Kind::LoadBalancerIPPool, "cilium.io/v2");
        let pools: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        for (name, ps) in lb.pools.iter() {
            let key = ObjectKey::cluster(Kind::LoadBalancerIPPool, name);
            let Some(l) = snap.get(&key) else {
                continue;
            };
            let v = l.object.to_json();
            let Some(patch) = pool_patch(&v, &ps.conditions()) else {
                continue;
            };
            if !lead.valid_at(Instant::now()) {
                return Ok(Outcome::DONE);
            }
            self.wrote("pool");
            match pools.patch_status(name, &pp, &Patch::Apply(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    warn!(pool = %name, error = %source, "pool status write failed");
                    return Err(StatusError::Write {
                        object: format!("CiliumLoadBalancerIPPool {name}"),
                        source,
                    });
                }
            }
        }
        self.metrics.k8s_status_conflicts.inc_by(conflicts);
        Ok(if conflicts > 0 {
            Outcome::requeue(CONFLICT_RETRY)
        } else {
            Outcome::DONE
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ips: &[&str], cond: Option<(&str, &str)>) -> Service {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "deathstar", "namespace": "default", "resourceVersion": "7", "generation": 2},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}}
        });
        if let Some((status, reason)) = cond {
            v["status"]["conditions"] = json!([{
                "type": "cilium.io/IPAMRequestSatisfied", "status": status, "reason": reason,
                "message": "", "lastTransitionTime": "2026-12-06T00:00:00Z"
            }]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn satisfied() -> Condition {
        Condition::new(
            "cilium.io/IPAMRequestSatisfied",
            ConditionStatus::True,
            "satisfied",
            String::new(),
        )
    }

    fn outcome(ip: &str) -> Arc<lbipam::ServiceOutcome> {
        Arc::new(lbipam::ServiceOutcome {
            assignments: vec![lbipam::Assignment {
                ip: ip.parse().unwrap(),
                pool: "p".into(),
                shared_with: Vec::new(),
            }],
            satisfied: true,
            reason: lbipam::Reason::Satisfied,
            message: String::new(),
            invalid_requested_ips: Vec::new(),
        })
    }

    fn svcs(names: &[&str]) -> String {
        names
            .iter()
            .map(|n| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {n}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// A run looks only at what changed since the last one: outcomes added, changed or gone,
    /// and Service objects edited; everything on a new term.
    #[test]
    fn only_changed_services_are_examined() {
        let k = |n: &str| ServiceKey::new("default", n);
        let mut lb = LbStatus::default();
        lb.services.insert(k("a"), outcome("10.0.0.1"));
        lb.services.insert(k("b"), outcome("10.0.0.2"));
        lb.services.insert(k("c"), outcome("10.0.0.3"));
        let cfg = crate::testing::config_state(&svcs(&["a", "b", "c"]));
        let prev = Seen {
            lb: Arc::new(lb.clone()),
            snapshot: cfg.snapshot.clone(),
            term: 1,
        };
        assert!(changed_services(Some(&prev), &cfg.snapshot, &lb, 1).is_empty());

        lb.services.insert(k("b"), outcome("10.0.0.9"));
        lb.services.remove(&k("c"));
        lb.services.insert(k("d"), outcome("10.0.0.4"));
        let edited = crate::testing::config_state(&svcs(&["a", "b", "c", "e"]));
        let got = changed_services(Some(&prev), &edited.snapshot, &lb, 1);
        assert_eq!(got, [k("b"), k("c"), k("d"), k("e")].into_iter().collect());

        let all = changed_services(Some(&prev), &cfg.snapshot, &lb, 2);
        assert_eq!(
            all.len(),
            lb.services.len(),
            "a new term looks at everything"
        );
        assert_eq!(changed_services(None, &cfg.snapshot, &lb, 1).len(), 3);
    }

    #[test]
    fn steady_state_writes_nothing() {
        let s = svc(&["172.18.255.200"], Some(("True", "satisfied")));
        let ips = ["172.18.255.200".parse().unwrap()];
        assert!(service_patch(&s, &ips, &satisfied()).is_none());
    }

    #[test]
    fn a_new_address_is_applied_with_its_condition_and_the_version_it_was_decided_on() {
        let s = svc(&[], None);
        let ips: Vec<IpAddr> = vec![
            "172.18.255.200".parse().unwrap(),
            "2001:db8:dead:beef::".parse().unwrap(),
        ];
        let p = service_patch(&s, &ips, &satisfied()).unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "7", "fenced");
        assert_eq!(
            p["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "172.18.255.200"}, {"ip": "2001:db8:dead:beef::"}])
        );
        let c = &p["status"]["conditions"][0];
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["observedGeneration"].as_i64()
            ),
            (
                Some("cilium.io/IPAMRequestSatisfied"),
                Some("True"),
                Some(2)
            )
        );
    }

    #[test]
    fn a_changed_condition_keeps_its_transition_time_only_when_the_status_stays() {
        let s = svc(&["172.18.255.200"], Some(("True", "other")));
        let ips = ["172.18.255.200".parse().unwrap()];
        let p = service_patch(&s, &ips, &satisfied()).unwrap();
        assert_eq!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2026-12-06T00:00:00Z"
        );
        let s = svc(&["172.18.255.200"], Some(("False", "no_pool")));
        let p = service_patch(&s, &ips, &satisfied()).unwrap();
        assert_ne!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2026-12-06T00:00:00Z"
        );
    }

    #[test]
    fn pool_conditions_are_written_once() {
        let conds = vec![Condition::new(
            "cilium.io/IPsTotal",
            ConditionStatus::Unknown,
            "noreason",
            "256".to_owned(),
        )];
        let pool = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "p", "resourceVersion": "3", "generation": 1}});
        let p = pool_patch(&pool, &conds).unwrap();
        assert_eq!(p["status"]["conditions"][0]["message"], "256");
        let mut written = pool.clone();
        written["status"] = p["status"].clone();
        assert!(pool_patch(&written, &conds).is_none());
    }
}
