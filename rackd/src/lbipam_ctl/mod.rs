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
    Config, Incremental, Journal, JournalRecord, LbIpam, PersistedState, PoolStatus, ServiceKey,
    ServiceOutcome,
};
use rackd_model::k8s_openapi::api::core::v1::Service;
use rackd_model::rackd_types::condition::types;
use rackd_model::rackd_types::{Condition, ConditionStatus, ObjectCondition};
use rackd_model::{Kind, Object, ObjectKey, Snapshot};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

pub use self::adapt::PoolSelector;
use self::adapt::{pool_key, pool_specs, service_spec};
use crate::config::ConfigState;
use crate::controller::{self, Context, Outcome as RunOutcome};
use crate::metrics::{Metrics, PoolLabels};
use crate::state;

/// A Service's identity as the address map keys it: `(namespace, name)`.
pub type ServiceName = (String, String);

/// LoadBalancer addresses per Service, as LB-IPAM holds them. A persistent map: cloned in
/// O(1) for every reader, diffed in O(changes).
pub type LbIps = imbl::OrdMap<ServiceName, Arc<[IpAddr]>>;

/// What the controller publishes. Cheap to clone: persistent maps updated per changed
/// Service, so publishing after one edit among 27,000 copies nothing.
#[derive(Debug, Clone, Default)]
pub struct LbStatus {
    /// At least one run has completed on a loaded configuration: `ips` is authoritative.
    pub ready: bool,
    /// LB-IPAM has run on a loaded configuration, successfully or not: readers may go ahead
    /// with `ips` (the previous addresses when saving new ones failed), rather than wait.
    pub settled: bool,
    pub ips: LbIps,
    /// Per Service LB-IPAM is responsible for: its addresses and condition.
    pub services: imbl::OrdMap<ServiceKey, Arc<ServiceOutcome>>,
    /// Per pool: counts and conflict.
    pub pools: Arc<BTreeMap<String, PoolStatus>>,
    /// Pools' first-seen times (for AGE).
    pub first_seen: Arc<BTreeMap<String, Instant>>,
    /// Problems: unsatisfied services, conflicting pools, pools that cannot be adapted, an
    /// unreadable state file.
    pub conditions: Arc<[ObjectCondition]>,
}

impl LbStatus {
    /// `rackctl lbipam pools`.
    pub fn pool_views(&self) -> Vec<rackd_api::PoolView> {
        self.pools
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
                conditions: st.conditions(),
            })
            .collect()
    }

    /// `rackctl lbipam services`.
    pub fn service_views(&self) -> Vec<rackd_api::ServiceView> {
        self.services
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
                    condition: o.condition(),
                }
            })
            .collect()
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

/// Compaction: the journal is folded into the snapshot once it outgrows this, or the
/// snapshot itself, whichever is larger.
const COMPACT_AT: u64 = 1 << 20;

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

fn ips_of(o: &ServiceOutcome) -> Option<Arc<[IpAddr]>> {
    (!o.assignments.is_empty()).then(|| o.ips().into())
}

fn svc_key(k: &ServiceKey) -> ObjectKey {
    ObjectKey::namespaced(Kind::Service, &k.namespace, &k.name)
}

/// Moves a state file aside (kept for inspection) and says so as a condition.
fn aside(path: &Path, what: &str, e: &dyn std::fmt::Display) -> ObjectCondition {
    #[allow(
        clippy::disallowed_types,
        reason = "the date names the file kept aside; no timer"
    )]
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let moved = path.with_file_name(format!("{name}.corrupt-{secs}"));
    let _ = std::fs::rename(path, &moved);
    let msg = format!(
        "LB-IPAM {what} {} is unreadable ({e}); moved to {} and left out: addresses are adopted from Services' status where they have one",
        path.display(),
        moved.display()
    );
    error!("{msg}");
    ObjectCondition {
        object: None,
        source: Some(path.display().to_string()),
        condition: Condition::problem(types::INVALID_CONFIGURATION, "CorruptState", msg),
    }
}

/// The controller.
#[derive(Debug)]
pub struct LbIpamController {
    inc: Incremental<PoolSelector>,
    snapshot_path: PathBuf,
    journal_path: PathBuf,
    /// Bytes in the journal file, and in the snapshot last written.
    journal_len: u64,
    snapshot_len: u64,
    /// Journal records taken from the allocator but not yet durable (an append failed):
    /// written before anything else, and nothing is published until they are.
    unsaved: Vec<JournalRecord>,
    /// Services and pools whose outcome changed but is not published yet.
    unpublished: std::collections::BTreeSet<ServiceKey>,
    pools_unpublished: bool,
    pool_problems: Vec<ObjectCondition>,
    /// The snapshot last applied.
    applied: Option<Snapshot>,
    /// Problems found on start (a corrupt state file), reported until restart.
    startup: Vec<ObjectCondition>,
    /// Unsatisfied services and their conditions.
    unsatisfied: imbl::OrdMap<ServiceKey, Condition>,
    status: LbStatus,
    tx: watch::Sender<Arc<LbStatus>>,
    metrics: Arc<Metrics>,
}

impl LbIpamController {
    /// Loads the persisted state: `state_dir/lbipam.json` (the snapshot) plus
    /// `state_dir/lbipam.journal` (the changes since), then compacts them into a fresh
    /// snapshot. Missing files are a first start; a corrupt one is moved aside (kept for
    /// inspection) and reported, and the controller goes on without it, adopting IPs from
    /// Services' status where they have one.
    pub fn open(
        state_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, watch::Receiver<Arc<LbStatus>>), state::StateError> {
        let (tx, rx) = watch::channel(Arc::new(LbStatus::default()));
        Ok((Self::open_with(state_dir, metrics, tx)?, rx))
    }

    /// [`Self::open`], publishing through an existing channel (a controller re-created for
    /// each leadership term keeps its readers).
    pub fn open_with(
        state_dir: &Path,
        metrics: Arc<Metrics>,
        tx: watch::Sender<Arc<LbStatus>>,
    ) -> Result<Self, state::StateError> {
        let snapshot_path = state_dir.join("lbipam.json");
        let journal_path = state_dir.join("lbipam.journal");
        let mut startup = Vec::new();
        let mut st = match state::read(&snapshot_path)? {
            None => PersistedState::empty(),
            Some(bytes) => PersistedState::decode(&bytes).unwrap_or_else(|e| {
                startup.push(aside(&snapshot_path, "state", &e));
                PersistedState::empty()
            }),
        };
        if let Some(bytes) = state::read(&journal_path)? {
            match Journal::decode(&bytes) {
                Ok(j) => {
                    if j.torn {
                        info!(journal = %journal_path.display(), "LB-IPAM journal ends in a torn record (a crash while appending): dropped");
                    }
                    st.apply_all(&j.records);
                }
                Err(e) => startup.push(aside(&journal_path, "journal", &e)),
            }
        }
        let ipam = LbIpam::restore(&st).unwrap_or_else(|e| {
            startup.push(aside(&snapshot_path, "state", &e));
            LbIpam::new()
        });
        // Fold the journal into a fresh snapshot: snapshot first, then an empty journal, so
        // a crash in between replays records the snapshot already holds (harmless).
        let snap = ipam.snapshot().encode();
        state::write_atomic(&snapshot_path, &snap)?;
        state::write_atomic(&journal_path, &Journal::header())?;
        let status = LbStatus {
            conditions: startup.clone().into(),
            ..LbStatus::default()
        };
        tx.send_replace(Arc::new(status.clone()));
        Ok(Self {
            inc: Incremental::new(ipam, Config::default()),
            snapshot_path,
            journal_path,
            journal_len: Journal::header().len() as u64,
            snapshot_len: snap.len() as u64,
            unsaved: Vec::new(),
            unpublished: Default::default(),
            pools_unpublished: true,
            pool_problems: Vec::new(),
            applied: None,
            startup,
            unsatisfied: imbl::OrdMap::new(),
            status,
            tx,
            metrics,
        })
    }

    fn set_pools(&mut self, snap: &Snapshot) {
        let (pools, problems) = pool_specs(snap);
        self.inc.set_pools(pools);
        self.pool_problems = problems;
    }

    /// Hands the allocator what changed in `snap` since the last applied snapshot
    /// (everything on a full pass).
    fn adapt(&mut self, snap: &Snapshot, full: bool) {
        let changes = match (&self.applied, full) {
            (Some(prev), false) => snap.changes_since(prev),
            _ => {
                self.set_pools(snap);
                let keep: std::collections::BTreeSet<ServiceKey> = snap
                    .services()
                    .map(|s| {
                        let spec = service_spec(s);
                        let key = spec.key.clone();
                        self.inc.upsert_service(spec);
                        key
                    })
                    .collect();
                let gone: Vec<ServiceKey> = self
                    .inc
                    .services()
                    .map(|s| s.key.clone())
                    .filter(|k| !keep.contains(k))
                    .collect();
                for k in gone {
                    self.inc.remove_service(&k);
                }
                self.inc.request_full();
                return;
            }
        };
        let mut pools = false;
        for (key, _) in &changes {
            match key.kind {
                Kind::LoadBalancerIPPool => pools = true,
                Kind::Service => match snap.get(key).map(|l| &*l.object) {
                    Some(Object::Service(s)) => self.inc.upsert_service(service_spec(s)),
                    _ => self.inc.remove_service(&ServiceKey::new(
                        key.namespace.as_deref().unwrap_or("default"),
                        &key.name,
                    )),
                },
                _ => {}
            }
        }
        if pools {
            self.set_pools(snap);
        }
    }

    /// Makes the allocator's changes durable: appends the journal records (fdatasync), and
    /// folds the journal into a new snapshot when it has grown. Off the async threads.
    async fn persist(&mut self) -> Result<(), LbError> {
        self.unsaved.extend(self.inc.take_journal());
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let bytes = JournalRecord::encode_lines(&self.unsaved);
        let n = bytes.len() as u64;
        let path = self.journal_path.clone();
        tokio::task::spawn_blocking(move || state::append_durable(&path, &bytes))
            .await
            .map_err(LbError::PersistTask)?
            .map_err(LbError::Persist)?;
        self.unsaved.clear();
        self.journal_len += n;
        if self.journal_len > COMPACT_AT.max(self.snapshot_len) {
            let snap = self.inc.ipam().snapshot().encode();
            let header = Journal::header();
            let (sp, jp) = (self.snapshot_path.clone(), self.journal_path.clone());
            let len = snap.len() as u64;
            let r = tokio::task::spawn_blocking(move || {
                state::write_atomic(&sp, &snap)?;
                state::write_atomic(&jp, &header)
            })
            .await
            .map_err(LbError::PersistTask)?;
            match r {
                Ok(()) => {
                    self.snapshot_len = len;
                    self.journal_len = Journal::header().len() as u64;
                }
                // The journal is still whole: compaction is retried when it grows again.
                Err(e) => warn!(error = %e, "LB-IPAM state compaction failed"),
            }
        }
        Ok(())
    }

    /// Publishes what changed: per changed Service its addresses and condition, the pools
    /// when they changed.
    fn publish(&mut self) {
        let out = self.inc.outcome();
        let mut st = self.status.clone();
        for k in std::mem::take(&mut self.unpublished) {
            let name = (k.namespace.clone(), k.name.clone());
            match out.services.get(&k) {
                Some(o) => {
                    match ips_of(o) {
                        Some(ips) => {
                            st.ips.insert(name, ips);
                        }
                        None => {
                            st.ips.remove(&name);
                        }
                    }
                    if o.satisfied {
                        self.unsatisfied.remove(&k);
                    } else {
                        let c = o.condition();
                        if self.unsatisfied.get(&k) != Some(&c) {
                            warn!(service = %k, condition = %c, "LB-IPAM");
                        }
                        self.unsatisfied.insert(k.clone(), c);
                    }
                    st.services.insert(k, Arc::new(o.clone()));
                }
                None => {
                    st.ips.remove(&name);
                    st.services.remove(&k);
                    self.unsatisfied.remove(&k);
                }
            }
        }
        if std::mem::take(&mut self.pools_unpublished) {
            let now = Instant::now();
            let mut first_seen = (*st.first_seen).clone();
            for p in self.inc.pools() {
                first_seen.entry(p.name.clone()).or_insert(now);
            }
            first_seen.retain(|n, _| out.pools.contains_key(n));
            for (pool, ps) in &out.pools {
                let l = PoolLabels { pool: pool.clone() };
                self.metrics
                    .pool_ips_used
                    .get_or_create(&l)
                    .set(i64::try_from(ps.used).unwrap_or(i64::MAX));
                self.metrics
                    .pool_ips_available
                    .get_or_create(&l)
                    .set(ps.available.to_f64());
            }
            st.pools = Arc::new(out.pools.clone());
            st.first_seen = Arc::new(first_seen);
        }
        let mut conditions = self.startup.clone();
        conditions.extend(self.pool_problems.iter().cloned());
        for (name, ps) in st.pools.iter() {
            if ps.conflict.is_some() {
                for c in ps.conditions() {
                    if c.type_ == types::POOL_CONFLICT && c.status == ConditionStatus::True {
                        conditions.push(ObjectCondition::new(pool_key(name), c));
                    }
                }
            }
        }
        conditions.extend(
            self.unsatisfied
                .iter()
                .map(|(k, c)| ObjectCondition::new(svc_key(k), c.clone())),
        );
        st.conditions = conditions.into();
        st.ready = true;
        st.settled = true;
        self.status = st;
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
            return Ok(RunOutcome::WAITING);
        }
        let snap = &cfg.snapshot;
        self.adapt(snap, ctx.full || self.applied.is_none());
        self.applied = Some(snap.clone());
        let c = self.inc.commit();
        if let Some(reason) = c.full {
            debug!(reason = reason.as_str(), "LB-IPAM full reconcile");
        }
        self.unpublished.extend(c.services);
        self.pools_unpublished |= c.pools_changed;
        if let Err(e) = self.persist().await {
            // Nothing of this commit is published until its records are durable: no unsaved
            // address may reach BGP or L2. Readers may go ahead with what was published.
            if !self.status.settled {
                self.status.settled = true;
                self.tx.send_replace(Arc::new(self.status.clone()));
            }
            return Err(e);
        }
        if !self.unpublished.is_empty() || self.pools_unpublished || !self.status.ready {
            self.publish();
        }
        Ok(RunOutcome::DONE)
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.status.conditions.clone()
    }

    async fn shutdown(&mut self) {
        // A clean stop leaves a compacted state: the next start reads one snapshot.
        if self.unsaved.is_empty() {
            let snap = self.inc.ipam().snapshot().encode();
            if let Err(e) = state::write_atomic(&self.snapshot_path, &snap)
                .and_then(|()| state::write_atomic(&self.journal_path, &Journal::header()))
            {
                warn!(error = %e, "LB-IPAM state compaction at shutdown failed");
            }
        }
    }
}

mod adapt;
#[cfg(test)]
mod tests;
