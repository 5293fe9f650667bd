//! The LB-IPAM controller: adapts the snapshot's `CiliumLoadBalancerIPPool`s and `Service`s
//! to the pure allocator (`lbipam`), persists its state **before** any new IP is published
//! (so a crash at any instant never loses or duplicates an allocation), and publishes the
//! result ([`LbStatus`]) for the BGP and L2 controllers and the admin API.
//!
//! Incremental: it keeps the adapted pool and service specs and, on each run, re-adapts only
//! the objects that changed since the snapshot it last applied; the published address map is a
//! persistent map, updated per changed service and handed on in O(1).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lbipam::{
    Block, Config, ExternalTrafficPolicy, IpFamilyPolicy, LbIpam, Outcome, PoolSpec, ServiceKey,
    ServiceOutcome, ServiceSelector, ServiceSpec,
};
use rackd_model::k8s_openapi::api::core::v1::Service;
use rackd_model::rackd_types::condition::{reasons, types};
use rackd_model::rackd_types::{Condition, ConditionStatus, ObjectCondition};
use rackd_model::selector::{NilSelector, Selector};
use rackd_model::{Kind, Object, ObjectKey, Snapshot};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, warn};

use crate::config::ConfigState;
use crate::controller::{self, Context, Outcome as RunOutcome};
use crate::metrics::{Metrics, PoolLabels};
use crate::state;

/// A Service's identity as the address map keys it: `(namespace, name)`.
pub type ServiceName = (String, String);

/// LoadBalancer addresses per Service, as LB-IPAM holds them. A persistent map: cloned in
/// O(1) for every reader, diffed in O(changes).
pub type LbIps = imbl::OrdMap<ServiceName, Arc<[IpAddr]>>;

/// What the controller publishes.
#[derive(Debug, Clone, Default)]
pub struct LbStatus {
    /// At least one run has completed on a loaded configuration: `ips` is authoritative.
    pub ready: bool,
    /// LB-IPAM has run on a loaded configuration, successfully or not: readers may go ahead
    /// with `ips` (the previous addresses when saving new ones failed), rather than wait.
    pub settled: bool,
    pub ips: LbIps,
    /// The allocator's outcome (per service and per pool), for `rackctl lbipam`.
    pub outcome: Arc<Outcome>,
    /// Pools' first-seen times (for AGE).
    pub first_seen: Arc<BTreeMap<String, Instant>>,
    /// Problems: unsatisfied services, conflicting pools, pools that cannot be adapted, an
    /// unreadable state file.
    pub conditions: Arc<[ObjectCondition]>,
}

impl LbStatus {
    /// `rackctl lbipam pools`.
    pub fn pool_views(&self) -> Vec<rackd_api::PoolView> {
        self.outcome
            .pools
            .iter()
            .map(|(name, st)| rackd_api::PoolView {
                name: name.clone(),
                disabled: st.disabled,
                conflicting: st.conflict.is_some(),
                ips_total: st.total.to_string(),
                ips_available: st.available.to_string(),
                ips_used: st.used.to_string(),
                age_seconds: self
                    .first_seen
                    .get(name)
                    .map_or(0, |t| t.elapsed().as_secs()),
                conditions: st.conditions().into_iter().map(condition).collect(),
            })
            .collect()
    }

    /// `rackctl lbipam services`.
    pub fn service_views(&self) -> Vec<rackd_api::ServiceView> {
        self.outcome
            .services
            .iter()
            .map(|(k, o)| {
                let mut pools: Vec<String> =
                    o.assignments.iter().map(|a| a.pool.to_string()).collect();
                pools.sort();
                pools.dedup();
                rackd_api::ServiceView {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                    ips: o.ips().iter().map(ToString::to_string).collect(),
                    pools,
                    condition: condition(o.condition()),
                }
            })
            .collect()
    }
}

/// A pool's compiled service selector.
#[derive(Debug, Clone)]
pub struct PoolSelector(Selector);

impl ServiceSelector for PoolSelector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }

    /// The labels the selector reads, so LB-IPAM evaluates it once per distinct set of their
    /// values instead of once per service.
    fn label_keys(&self) -> Option<Vec<&str>> {
        Some(self.0.requirements().iter().map(|r| r.key()).collect())
    }
}

/// Controller errors.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("LB-IPAM state could not be saved; new allocations are held back")]
    Persist(#[source] state::StateError),
    #[error("the task saving LB-IPAM state stopped")]
    PersistTask(#[source] tokio::task::JoinError),
}

fn pool_key(name: &str) -> ObjectKey {
    ObjectKey::cluster(Kind::LoadBalancerIPPool, name)
}

/// The pools, adapted, and a condition per pool that could not be.
fn pool_specs(snap: &Snapshot) -> (Vec<PoolSpec<PoolSelector>>, Vec<ObjectCondition>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for p in snap.lb_ip_pools() {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut blocks = Vec::new();
        let all = p.spec.blocks.iter().chain(p.spec.cidrs.iter().flatten());
        for b in all {
            match Block::parse(
                b.cidr.as_deref().unwrap_or(""),
                b.start.as_deref().unwrap_or(""),
                b.stop.as_deref().unwrap_or(""),
            ) {
                Ok(b) => blocks.push(b),
                Err(e) => problems.push(ObjectCondition::new(
                    pool_key(&name),
                    Condition::problem(
                        types::INVALID_CONFIGURATION,
                        reasons::INVALID,
                        format!("block: {e}"),
                    ),
                )),
            }
        }
        let selector = match Selector::compile_optional(
            p.spec.service_selector.as_ref(),
            NilSelector::MatchesAll,
        ) {
            Ok(s) if p.spec.service_selector.is_some() => Some(PoolSelector(s)),
            Ok(_) => None,
            Err(e) => {
                problems.push(ObjectCondition::new(
                    pool_key(&name),
                    Condition::problem(
                        types::INVALID_CONFIGURATION,
                        reasons::INVALID,
                        format!("serviceSelector: {e}"),
                    ),
                ));
                continue;
            }
        };
        let mut spec = PoolSpec::new(name, blocks);
        spec.created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second());
        spec.allow_first_last_ips = p.spec.allow_first_last_ips();
        spec.disabled = p.spec.disabled;
        spec.service_selector = selector;
        out.push(spec);
    }
    (out, problems)
}

fn service_spec(s: &Service) -> ServiceSpec {
    let spec = s.spec.clone().unwrap_or_default();
    let families = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| lbipam::Family::from_k8s(f))
        .collect();
    ServiceSpec {
        key: ServiceKey::new(
            s.metadata.namespace.as_deref().unwrap_or("default"),
            s.metadata.name.as_deref().unwrap_or_default(),
        ),
        labels: s.metadata.labels.clone().unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
        is_load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
        load_balancer_class: spec.load_balancer_class.clone(),
        load_balancer_ip: spec.load_balancer_ip.clone(),
        ip_family_policy: spec
            .ip_family_policy
            .as_deref()
            .and_then(IpFamilyPolicy::from_k8s),
        ip_families: families,
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| u16::try_from(p.port).ok())
            .collect(),
        external_traffic_policy: if spec.external_traffic_policy.as_deref() == Some("Local") {
            ExternalTrafficPolicy::Local
        } else {
            ExternalTrafficPolicy::Cluster
        },
        pod_selector: spec.selector.clone().unwrap_or_default(),
        current_ingress: rackd_model::status_ingress_ips(s),
    }
}

/// Every LoadBalancer address of a Service: LB-IPAM's, plus any written in its status (an
/// address assigned elsewhere). What BGP advertises and L2 announces.
pub fn service_addresses(
    lb_ips: &LbIps,
    svc: &Service,
    namespace: &str,
    name: &str,
) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = lb_ips
        .get(&(namespace.to_owned(), name.to_owned()))
        .map(|a| a.to_vec())
        .unwrap_or_default();
    for ip in rackd_model::status_ingress_ips(svc) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

fn service_conditions(outcome: &Outcome) -> Vec<ObjectCondition> {
    let mut out = Vec::new();
    for (k, o) in &outcome.services {
        if !o.satisfied {
            out.push(ObjectCondition::new(
                ObjectKey::namespaced(Kind::Service, &k.namespace, &k.name),
                condition(o.condition()),
            ));
        }
    }
    for (name, st) in &outcome.pools {
        for c in st.conditions().into_iter().map(condition) {
            if c.type_ == types::POOL_CONFLICT && c.status == ConditionStatus::True {
                out.push(ObjectCondition::new(pool_key(name), c));
            }
        }
    }
    out
}

/// LB-IPAM's condition as the workspace's.
fn condition(c: lbipam::Condition) -> Condition {
    let status = match c.status {
        lbipam::ConditionStatus::True => ConditionStatus::True,
        lbipam::ConditionStatus::False => ConditionStatus::False,
        lbipam::ConditionStatus::Unknown => ConditionStatus::Unknown,
    };
    Condition::new(c.type_, status, c.reason, c.message)
}

fn ips_of(o: &ServiceOutcome) -> Option<Arc<[IpAddr]>> {
    (!o.assignments.is_empty()).then(|| o.ips().into())
}

/// The controller.
#[derive(Debug)]
pub struct LbIpamController {
    ipam: LbIpam,
    state_path: PathBuf,
    config: Config,
    pools: Vec<PoolSpec<PoolSelector>>,
    pool_problems: Vec<ObjectCondition>,
    /// Adapted services, in key order (the allocator's preferred input).
    services: BTreeMap<ServiceKey, ServiceSpec>,
    /// The snapshot last applied.
    applied: Option<Snapshot>,
    /// Problems found on start (a corrupt state file), reported until restart.
    startup: Vec<ObjectCondition>,
    status: LbStatus,
    tx: watch::Sender<Arc<LbStatus>>,
    metrics: Arc<Metrics>,
}

impl LbIpamController {
    /// Loads the persisted state from `state_dir/lbipam.json`. A missing file is a first
    /// start; a corrupt one is moved aside (kept for inspection) and reported, and the
    /// controller starts empty, adopting IPs from Services' status where they have one.
    pub fn open(
        state_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, watch::Receiver<Arc<LbStatus>>), state::StateError> {
        let state_path = state_dir.join("lbipam.json");
        let mut startup = Vec::new();
        let ipam = match state::read(&state_path)? {
            None => LbIpam::new(),
            Some(bytes) => match LbIpam::from_bytes(&bytes) {
                Ok(i) => i,
                #[allow(
                    clippy::disallowed_types,
                    reason = "the date names the file kept aside; no timer"
                )]
                Err(e) => {
                    let aside = state_dir.join(format!(
                        "lbipam.json.corrupt-{}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                    ));
                    let _ = std::fs::rename(&state_path, &aside);
                    let msg = format!(
                        "LB-IPAM state {} is unreadable ({e}); moved to {} and starting empty",
                        state_path.display(),
                        aside.display()
                    );
                    error!("{msg}");
                    startup.push(ObjectCondition {
                        object: None,
                        source: Some(state_path.display().to_string()),
                        condition: Condition::problem(
                            types::INVALID_CONFIGURATION,
                            "CorruptState",
                            msg,
                        ),
                    });
                    LbIpam::new()
                }
            },
        };
        let status = LbStatus {
            conditions: startup.clone().into(),
            ..LbStatus::default()
        };
        let (tx, rx) = watch::channel(Arc::new(status.clone()));
        Ok((
            Self {
                ipam,
                state_path,
                config: Config::default(),
                pools: Vec::new(),
                pool_problems: Vec::new(),
                services: BTreeMap::new(),
                applied: None,
                startup,
                status,
                tx,
                metrics,
            },
            rx,
        ))
    }

    /// Re-adapts what changed in `snap` since the last applied snapshot (everything on a
    /// full pass); whether any input of the allocator changed.
    fn adapt(&mut self, snap: &Snapshot, full: bool) -> bool {
        let changes = match (&self.applied, full) {
            (Some(prev), false) => snap.changes_since(prev),
            _ => {
                let (pools, problems) = pool_specs(snap);
                self.pools = pools;
                self.pool_problems = problems;
                self.services = snap
                    .services()
                    .map(|s| {
                        let spec = service_spec(s);
                        (spec.key.clone(), spec)
                    })
                    .collect();
                return true;
            }
        };
        let mut any = false;
        for (key, _) in &changes {
            match key.kind {
                Kind::LoadBalancerIPPool if !any || self.pools.len() < 2 => {
                    let (pools, problems) = pool_specs(snap);
                    self.pools = pools;
                    self.pool_problems = problems;
                    any = true;
                }
                Kind::LoadBalancerIPPool => {}
                Kind::Service => {
                    let skey =
                        ServiceKey::new(key.namespace.as_deref().unwrap_or("default"), &key.name);
                    match snap.get(key).map(|l| &*l.object) {
                        Some(Object::Service(s)) => {
                            self.services.insert(skey, service_spec(s));
                        }
                        _ => {
                            self.services.remove(&skey);
                        }
                    }
                    any = true;
                }
                _ => {}
            }
        }
        any
    }

    /// Saves the allocator's state (off the async threads: an fsync).
    async fn persist(&self) -> Result<(), LbError> {
        let bytes = self.ipam.snapshot().encode();
        let path = self.state_path.clone();
        tokio::task::spawn_blocking(move || state::write_atomic(&path, &bytes))
            .await
            .map_err(LbError::PersistTask)?
            .map_err(LbError::Persist)
    }

    fn publish(&mut self, outcome: Outcome) {
        // The address map changes only where a service's addresses did.
        let mut ips = self.status.ips.clone();
        for (k, o) in &outcome.services {
            let name = (k.namespace.clone(), k.name.clone());
            match ips_of(o) {
                Some(new) => {
                    if ips.get(&name).is_none_or(|old| *old != new) {
                        ips.insert(name, new);
                    }
                }
                None => {
                    ips.remove(&name);
                }
            }
        }
        let gone: Vec<ServiceName> = ips
            .keys()
            .filter(|(ns, n)| {
                !outcome
                    .services
                    .contains_key(&ServiceKey::new(ns.as_str(), n.as_str()))
            })
            .cloned()
            .collect();
        for g in gone {
            ips.remove(&g);
        }
        let now = Instant::now();
        let mut first_seen = (*self.status.first_seen).clone();
        for p in &self.pools {
            first_seen.entry(p.name.clone()).or_insert(now);
        }
        first_seen.retain(|n, _| outcome.pools.contains_key(n));
        for (pool, st) in &outcome.pools {
            let l = PoolLabels { pool: pool.clone() };
            self.metrics
                .pool_ips_used
                .get_or_create(&l)
                .set(i64::try_from(st.used).unwrap_or(i64::MAX));
            self.metrics
                .pool_ips_available
                .get_or_create(&l)
                .set(st.available.to_f64());
        }
        let mut conditions = self.startup.clone();
        conditions.extend(self.pool_problems.iter().cloned());
        conditions.extend(service_conditions(&outcome));
        for c in &conditions {
            if !self.status.conditions.contains(c) {
                warn!(condition = %c, "LB-IPAM");
            }
        }
        self.status = LbStatus {
            ready: true,
            settled: true,
            ips,
            outcome: Arc::new(outcome),
            first_seen: Arc::new(first_seen),
            conditions: conditions.into(),
        };
        self.tx.send_replace(Arc::new(self.status.clone()));
    }
}

impl controller::Controller for LbIpamController {
    const NAME: &'static str = "lbipam";
    type Inputs = watch::Receiver<Arc<ConfigState>>;
    type Error = LbError;

    async fn reconcile(
        &mut self,
        cfg: &Arc<ConfigState>,
        ctx: Context,
    ) -> Result<RunOutcome, LbError> {
        if !cfg.loaded {
            return Ok(RunOutcome::DONE);
        }
        let snap = &cfg.snapshot;
        let changed = self.adapt(snap, ctx.full || self.applied.is_none());
        self.applied = Some(snap.clone());
        if !changed && self.status.ready {
            return Ok(RunOutcome::DONE);
        }
        let services: Vec<ServiceSpec> = self.services.values().cloned().collect();
        let before = self.ipam.snapshot();
        let outcome = self.ipam.reconcile(&self.config, &self.pools, &services);
        if outcome.state_changed
            && let Err(e) = self.persist().await
        {
            // Roll back so the next attempt starts from what is on disk, and publish nothing
            // new: no unsaved address may reach BGP or L2.
            if let Ok(i) = LbIpam::restore(&before) {
                self.ipam = i;
            }
            self.applied = None;
            if !self.status.settled {
                self.status.settled = true;
                self.tx.send_replace(Arc::new(self.status.clone()));
            }
            return Err(e);
        }
        self.publish(outcome);
        Ok(RunOutcome::DONE)
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.status.conditions.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Controller;
    use rackd_model::{CheckOptions, parse_documents};

    const CFG: &str = r#"
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: empire-ip-pool}
spec:
  blocks:
  - cidr: 10.0.10.0/24
  - cidr: "2001:db8:dead:beef::/64"
  serviceSelector:
    matchLabels: {org: empire}
---
apiVersion: v1
kind: Service
metadata: {name: deathstar, namespace: default, labels: {org: empire}}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80, protocol: TCP}]
"#;

    fn state(text: &str) -> Arc<ConfigState> {
        let out = Snapshot::build(&[parse_documents("t.yaml", text)], &CheckOptions::default());
        assert!(out.errors.is_empty(), "{:#?}", out.errors);
        Arc::new(ConfigState {
            loaded: true,
            snapshot: out.snapshot,
            ..ConfigState::default()
        })
    }

    fn ctx(full: bool) -> Context {
        Context {
            full,
            now: Instant::now(),
        }
    }

    fn key(ns: &str, n: &str) -> ServiceName {
        (ns.to_owned(), n.to_owned())
    }

    #[tokio::test]
    async fn allocates_persists_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
        assert!(
            !rx.borrow().ready,
            "nothing is published before the first run"
        );
        c.reconcile(&state(CFG), ctx(true)).await.unwrap();
        let got = rx.borrow().ips[&key("default", "deathstar")].clone();
        assert_eq!(got.len(), 2, "{got:?}");
        let pools = rx.borrow().pool_views();
        assert_eq!(pools[0].name, "empire-ip-pool");
        assert_eq!(pools[0].ips_used, "2");
        // A restart gives the same IPs, even with other services added first.
        let more = format!(
            "{CFG}---\napiVersion: v1\nkind: Service\nmetadata: {{name: aaa, namespace: default, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
        );
        let (mut c2, rx2) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
        c2.reconcile(&state(&more), ctx(true)).await.unwrap();
        assert_eq!(rx2.borrow().ips[&key("default", "deathstar")], got);
    }

    /// An incremental run re-adapts only what changed and publishes a map that shares
    /// everything else with the previous one.
    #[tokio::test]
    async fn a_service_edit_changes_only_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
        let two = format!(
            "{CFG}---\napiVersion: v1\nkind: Service\nmetadata: {{name: other, namespace: default, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv4], ports: [{{port: 80}}]}}\n"
        );
        c.reconcile(&state(&two), ctx(true)).await.unwrap();
        let before = rx.borrow().ips.clone();
        assert_eq!(before.len(), 2);
        // `other` stops being a LoadBalancer: its addresses go, deathstar's stay.
        let edited = two.replace(
            "name: other, namespace: default, labels: {org: empire}}\nspec: {type: LoadBalancer",
            "name: other, namespace: default, labels: {org: empire}}\nspec: {type: ClusterIP",
        );
        assert_ne!(edited, two);
        c.reconcile(&state(&edited), ctx(false)).await.unwrap();
        let after = rx.borrow().ips.clone();
        let diff: Vec<_> = before.diff(&after).collect();
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert_eq!(
            after.get(&key("default", "deathstar")),
            before.get(&key("default", "deathstar"))
        );
        assert!(!after.contains_key(&key("default", "other")));
    }

    /// The seeds' numbers: deathstar gets 172.18.255.200 and 2001:db8:dead:beef:: and the
    /// pool shows 18446744073709551622 available.
    #[tokio::test]
    async fn seed_empire_pool_and_deathstar() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab");
        let mut text = String::new();
        for f in ["lb-pool.yaml", "services.yaml"] {
            text.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
            text.push_str("\n---\n");
        }
        let st = tempfile::tempdir().unwrap();
        let (mut c, rx) = LbIpamController::open(st.path(), Metrics::new()).unwrap();
        c.reconcile(&state(&text), ctx(true)).await.unwrap();
        let s = rx.borrow().clone();
        let want: Vec<IpAddr> = vec![
            "172.18.255.200".parse().unwrap(),
            "2001:db8:dead:beef::".parse().unwrap(),
        ];
        assert_eq!(&*s.ips[&key("batuu", "deathstar")], &want[..]);
        let p = &s.pool_views()[0];
        assert_eq!(
            (p.name.as_str(), p.ips_available.as_str()),
            ("empire-ip-pool", "18446744073709551622")
        );
        let svc = s
            .service_views()
            .into_iter()
            .find(|s| s.name == "deathstar")
            .unwrap();
        assert_eq!(svc.condition.type_, types::IPAM_REQUEST_SATISFIED);
        assert_eq!(svc.condition.status, ConditionStatus::True);
    }

    #[tokio::test]
    async fn corrupt_state_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lbipam.json"), b"{\"format\": 12").unwrap();
        let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
        assert_eq!(rx.borrow().conditions.len(), 1);
        assert_eq!(rx.borrow().conditions[0].condition.reason, "CorruptState");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("lbipam.json.corrupt-")),
            "{names:?}"
        );
        // It stays reported after runs (until a restart), beside the allocator's own.
        c.reconcile(&state(CFG), ctx(true)).await.unwrap();
        assert!(
            rx.borrow()
                .conditions
                .iter()
                .any(|c| c.condition.reason == "CorruptState")
        );
    }

    /// An unsatisfied service is a typed condition on that Service.
    #[tokio::test]
    async fn unsatisfied_services_are_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, rx) = LbIpamController::open(dir.path(), Metrics::new()).unwrap();
        let text = CFG.replace("labels: {org: empire}", "labels: {org: rebels}");
        c.reconcile(&state(&text), ctx(true)).await.unwrap();
        let conds = rx.borrow().conditions.clone();
        assert_eq!(conds.len(), 1, "{conds:?}");
        assert_eq!(
            conds[0].object,
            Some(ObjectKey::namespaced(Kind::Service, "default", "deathstar"))
        );
        assert_eq!(conds[0].condition.reason, "no_pool");
        assert!(conds[0].is_problem());
    }
}
