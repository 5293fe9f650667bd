//! BGP objects written back to the API, as Cilium's operator and agents write them: one
//! `CiliumBGPNodeConfig` per selected node, the ClusterConfigs' and PeerConfigs' conditions
//! (the plan is [`super::bgp_plan`]), and each node's own NodeConfig status (its sessions,
//! [`super::bgp_node_status`]).
//!
//! ```text
//!  NodeConfigs ──watch──▶ NodeConfigs ─┐
//!  ConfigState (snapshot) ─────────────┼─▶ BgpStatusWriter ──SSA (field manager rackd)──▶ API
//!  Leadership (Lease rackd-lbipam) ────┤     leader: NodeConfigs (spec, ownerReferences),
//!  BgpPeers (this node's sessions) ────┘             deletes, ClusterConfig/PeerConfig status
//!                                             every node: its own NodeConfig's status
//! ```
//!
//! - **Output only.** NodeConfigs are watched here, for their owners, versions and status;
//!   rackd never reads them as configuration (the source lists only input kinds).
//! - **One writer of cluster-level objects.** Only the LB-IPAM leader creates, updates and
//!   deletes NodeConfigs and writes ClusterConfig/PeerConfig conditions, checking
//!   [`Leadership::valid_at`] before each request. Each node writes only its own NodeConfig's
//!   status.
//! - **No fighting.** Server-side apply under the field manager `rackd` (spec and
//!   ownerReferences on the object, conditions and peers on the status subresource), never
//!   forced: a field another manager owns is a conflict, counted and retried, not taken.
//! - **Fenced.** Updates carry the resourceVersion they were decided on, deletes a uid and
//!   resourceVersion precondition: a deposed leader's stale write fails with 409.
//! - **Level-triggered, incremental.** The cluster plan is recomputed only when a BGP kind, a
//!   Node, a Secret, the NodeConfigs or the term changed (or on a full pass, or after a
//!   refused write), and it contains only what differs from what the API holds, so steady
//!   state makes no requests. Node status follows the rate limit in
//!   [`super::bgp_node_status`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rackd_model::{Kind, Object, Snapshot};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::bgp_node_status::{
    COUNTER_INTERVAL, STATE_INTERVAL, StatusChange, classify, node_status, node_status_patch,
};
use super::bgp_plan::{
    NodeConfigView, NodeConfigs, Plan, PlanInput, Served, objects_in_error, plan,
};
use super::lease::Leadership;
use super::status::FIELD_MANAGER;
use crate::bgp::BgpPeers;
use crate::config::ConfigState;
use crate::controller::{Context, Controller, Outcome};
use crate::metrics::Metrics;

/// How soon a refused (409) write is tried again.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// Write failures: the run is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum BgpStatusError {
    #[error("writing {object}")]
    Write {
        object: String,
        #[source]
        source: kube::Error,
    },
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "cilium.io".into(),
        version: "v2".into(),
        api_version: super::bgp_plan::API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn node_config_resource() -> ApiResource {
    resource("CiliumBGPNodeConfig", "ciliumbgpnodeconfigs")
}

/// See the module docs.
pub struct BgpStatusWriter {
    client: kube::Client,
    metrics: Arc<Metrics>,
    node_name: String,
    secrets_namespace: String,
    watcher: JoinHandle<()>,
    /// The cluster plan's inputs last looked at (`None`: look at everything next time).
    seen: Option<Seen>,
    /// This node's last status write: when, and what, on which NodeConfig.
    last_node_write: Option<(
        Instant,
        String,
        Vec<rackd_model::cilium::CiliumBGPNodeInstanceStatus>,
    )>,
}

struct Seen {
    snapshot: Snapshot,
    errors: Arc<[rackd_model::ConfigError]>,
    node_configs: Arc<NodeConfigs>,
    term: u64,
}

impl std::fmt::Debug for BgpStatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BgpStatusWriter")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl Drop for BgpStatusWriter {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl BgpStatusWriter {
    /// A writer for node `node_name` on `client` (auth Secrets in `secrets_namespace`),
    /// counting its writes in `rackd_k8s_status_writes_total{kind}`; starts the NodeConfig
    /// watch whose receiver is one of its inputs. Must be called inside a runtime.
    pub fn start(
        client: kube::Client,
        node_name: &str,
        secrets_namespace: &str,
        metrics: Arc<Metrics>,
    ) -> (Self, watch::Receiver<Arc<NodeConfigs>>) {
        let (tx, rx) = watch::channel(Arc::new(NodeConfigs::default()));
        let watcher = tokio::spawn(watch_node_configs(client.clone(), tx));
        (
            Self {
                client,
                metrics,
                node_name: node_name.to_owned(),
                secrets_namespace: secrets_namespace.to_owned(),
                watcher,
                seen: None,
                last_node_write: None,
            },
            rx,
        )
    }

    fn wrote(&self, kind: &str) {
        self.metrics.k8s_status_wrote(kind);
    }

    /// Whether the cluster plan's inputs changed since the last run of this term.
    fn cluster_inputs_changed(
        &self,
        cfg: &ConfigState,
        ncs: &Arc<NodeConfigs>,
        term: u64,
        full: bool,
    ) -> bool {
        let Some(s) = self.seen.as_ref().filter(|s| !full && s.term == term) else {
            return true;
        };
        if !Arc::ptr_eq(&s.node_configs, ncs) && *s.node_configs != **ncs {
            return true;
        }
        if !Arc::ptr_eq(&s.errors, &cfg.errors) && *s.errors != *cfg.errors {
            return true;
        }
        let snap = &cfg.snapshot;
        snap.changes_since(&s.snapshot).iter().any(|(k, _)| {
            matches!(
                k.kind,
                Kind::BgpClusterConfig
                    | Kind::BgpPeerConfig
                    | Kind::BgpNodeConfigOverride
                    | Kind::Node
                    | Kind::Secret
            )
        })
    }

    /// The ClusterConfigs and PeerConfigs with a configuration error, as the API serves them
    /// (the snapshot holds an older version or none). One GET each, only when the plan's
    /// inputs changed; one that is gone or does not decode is left out.
    async fn fetch_served(
        &self,
        errors: &[rackd_model::ConfigError],
    ) -> Result<Served, BgpStatusError> {
        let (ccs, pcs) = objects_in_error(errors);
        debug!(?ccs, ?pcs, errors = errors.len(), "BGP objects in error");
        let mut served = Served::default();
        let cc_api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &resource("CiliumBGPClusterConfig", "ciliumbgpclusterconfigs"),
        );
        for name in ccs {
            if let Some(v) = get_json(&cc_api, &name).await?
                && let Some(Object::BgpClusterConfig(cc)) = served_object(Kind::BgpClusterConfig, v)
            {
                served.cluster_configs.insert(name, cc);
            }
        }
        let pc_api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &resource("CiliumBGPPeerConfig", "ciliumbgppeerconfigs"),
        );
        for name in pcs {
            if let Some(v) = get_json(&pc_api, &name).await?
                && let Some(Object::BgpPeerConfig(pc)) = served_object(Kind::BgpPeerConfig, v)
            {
                served.peer_configs.insert(name, pc);
            }
        }
        Ok(served)
    }

    /// The leader's writes. Returns the number of conflicts.
    async fn write_plan(&mut self, p: &Plan, lead: &Leadership) -> Result<u64, BgpStatusError> {
        let ncs: Api<DynamicObject> = Api::all_with(self.client.clone(), &node_config_resource());
        let pp = PatchParams::apply(FIELD_MANAGER);
        let mut conflicts = 0;
        let valid = || lead.valid_at(Instant::now());
        for d in &p.delete {
            if !valid() {
                return Ok(conflicts);
            }
            self.wrote("bgpnodeconfig_delete");
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(d.uid.clone()),
                    resource_version: Some(d.resource_version.clone()),
                }),
                ..DeleteParams::default()
            };
            info!(node_config = %d.name, "deleting stale CiliumBGPNodeConfig");
            match ncs.delete(&d.name, &dp).await {
                Ok(_) => {}
                Err(e) => conflicts += self.refused(e, "CiliumBGPNodeConfig", &d.name)?,
            }
        }
        for a in &p.apply {
            if !valid() {
                return Ok(conflicts);
            }
            self.wrote("bgpnodeconfig");
            debug!(node_config = %a.name, create = a.resource_version.is_none(), "applying CiliumBGPNodeConfig");
            match ncs.patch(&a.name, &pp, &Patch::Apply(&a.body)).await {
                Ok(_) => {}
                Err(e) => conflicts += self.refused(e, "CiliumBGPNodeConfig", &a.name)?,
            }
        }
        let targets = [
            (
                &p.cluster_status,
                resource("CiliumBGPClusterConfig", "ciliumbgpclusterconfigs"),
                "bgpclusterconfig",
            ),
            (
                &p.peer_status,
                resource("CiliumBGPPeerConfig", "ciliumbgppeerconfigs"),
                "bgppeerconfig",
            ),
        ];
        for (writes, ar, label) in targets {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            for s in writes {
                if !valid() {
                    return Ok(conflicts);
                }
                self.wrote(label);
                match api.patch_status(&s.name, &pp, &Patch::Apply(&s.body)).await {
                    Ok(_) => {}
                    Err(e) => conflicts += self.refused(e, &ar.kind, &s.name)?,
                }
            }
        }
        Ok(conflicts)
    }

    /// 409 (stale version, a field another manager owns) and 404 (gone meanwhile) are
    /// expected: 1 or 0 conflicts. Anything else fails the run.
    fn refused(&self, e: kube::Error, kind: &str, name: &str) -> Result<u64, BgpStatusError> {
        match e {
            kube::Error::Api(s) if s.code == 409 => {
                debug!(kind, name, message = %s.message, "write refused; retried on the next version");
                Ok(1)
            }
            kube::Error::Api(s) if s.code == 404 => Ok(0),
            source => Err(BgpStatusError::Write {
                object: format!("{kind} {name}"),
                source,
            }),
        }
    }

    /// This node's NodeConfig status. Returns when to look again, if a write is held back.
    async fn write_node_status(
        &mut self,
        ncs: &NodeConfigs,
        peers: &BgpPeers,
        now: Instant,
    ) -> Result<Option<Duration>, BgpStatusError> {
        let Some(nc) = ncs.items.get(&self.node_name) else {
            self.last_node_write = None;
            return Ok(None);
        };
        let Some(spec) = nc.spec.as_ref() else {
            return Ok(None);
        };
        let desired = node_status(
            spec,
            peers,
            &nc.status,
            rackd_model::k8s_openapi::jiff::Timestamp::now(),
        );
        let change = classify(&nc.status.bgp_instances, &desired);
        if change == StatusChange::None {
            return Ok(None);
        }
        if let Some((at, uid, written)) = &self.last_node_write {
            // Already written, not yet seen back through the watch.
            if *uid == nc.uid && *written == desired {
                return Ok(None);
            }
            let wait = match change {
                StatusChange::Counters => COUNTER_INTERVAL,
                _ => STATE_INTERVAL,
            };
            let due = *at + wait;
            if *uid == nc.uid && now < due {
                return Ok(Some(due - now));
            }
        }
        let body = node_status_patch(&nc.name, &nc.resource_version, &desired);
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &node_config_resource());
        self.wrote("bgpnodeconfig_status");
        self.last_node_write = Some((now, nc.uid.clone(), desired));
        match api
            .patch_status(
                &nc.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => {
                let c = self.refused(e, "CiliumBGPNodeConfig status", &nc.name)?;
                self.metrics.k8s_status_conflicts.inc_by(c);
                // Refused: not written after all, so the next version is tried at once.
                if let Some(w) = &mut self.last_node_write {
                    w.2.clear();
                }
                Ok((c > 0).then_some(STATE_INTERVAL))
            }
        }
    }
}

impl Controller for BgpStatusWriter {
    const NAME: &'static str = "k8s-bgp-status";
    type Inputs = (
        watch::Receiver<Arc<ConfigState>>,
        watch::Receiver<Leadership>,
        watch::Receiver<BgpPeers>,
        watch::Receiver<Arc<NodeConfigs>>,
    );
    type Error = BgpStatusError;

    async fn reconcile(
        &mut self,
        (cfg, lead, peers, ncs): &(Arc<ConfigState>, Leadership, BgpPeers, Arc<NodeConfigs>),
        ctx: Context,
    ) -> Result<Outcome, BgpStatusError> {
        if !cfg.loaded {
            return Ok(Outcome::WAITING);
        }
        let mut requeue = self.write_node_status(ncs, peers, ctx.now).await?;
        if !lead.valid_at(Instant::now()) {
            self.seen = None;
        } else if self.cluster_inputs_changed(cfg, ncs, lead.term, ctx.full) {
            let now = rackd_model::k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let served = self
                .fetch_served(&cfg.errors)
                .await
                .inspect_err(|_| self.seen = None)?;
            let p = plan(&PlanInput {
                snapshot: &cfg.snapshot,
                errors: &cfg.errors,
                served: &served,
                node_configs: ncs,
                secrets_namespace: &self.secrets_namespace,
                now: &now,
            });
            debug!(
                in_error = served.cluster_configs.len() + served.peer_configs.len(),
                delete = p.delete.len(),
                apply = p.apply.len(),
                cluster_status = p.cluster_status.len(),
                peer_status = p.peer_status.len(),
                "BGP plan"
            );
            let conflicts = if p.is_empty() {
                0
            } else {
                self.write_plan(&p, lead)
                    .await
                    .inspect_err(|_| self.seen = None)?
            };
            self.metrics.k8s_status_conflicts.inc_by(conflicts);
            // A refused write is looked at again even if nothing else changes.
            self.seen = (conflicts == 0).then(|| Seen {
                snapshot: cfg.snapshot.clone(),
                errors: cfg.errors.clone(),
                node_configs: ncs.clone(),
                term: lead.term,
            });
            if conflicts > 0 {
                requeue = Some(requeue.map_or(CONFLICT_RETRY, |r| r.min(CONFLICT_RETRY)));
            }
        }
        Ok(requeue.map_or(Outcome::DONE, Outcome::requeue))
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = ()> + Send {
        self.watcher.abort();
        async {}
    }
}

/// A served object decoded as the configuration source decodes it (unknown fields of a newer
/// Cilium ignored); `None`, with the reason logged, when rackd cannot use it.
fn served_object(kind: Kind, v: serde_json::Value) -> Option<Object> {
    match rackd_model::load_api_object("k8s", kind, v) {
        Ok(l) => Some((*l.object).clone()),
        Err(e) => {
            debug!(kind = %kind, error = %e, "served object not usable for its conditions");
            None
        }
    }
}

/// The object `name` as JSON without managedFields; `None` if it does not exist.
async fn get_json(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<serde_json::Value>, BgpStatusError> {
    let o = api
        .get_opt(name)
        .await
        .map_err(|source| BgpStatusError::Write {
            object: format!("{} {name} (reading it)", api.resource_url()),
            source,
        })?;
    Ok(o.and_then(|o| serde_json::to_value(&o).ok()).map(|mut v| {
        if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("managedFields");
        }
        v
    }))
}

/// Watches every CiliumBGPNodeConfig and publishes them, complete lists only (a relist is
/// buffered, as the configuration source does, so it never looks like mass deletion).
async fn watch_node_configs(client: kube::Client, tx: watch::Sender<Arc<NodeConfigs>>) {
    let api: Api<DynamicObject> = Api::all_with(client, &node_config_resource());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Option<std::collections::BTreeMap<String, Arc<NodeConfigView>>> = None;
    let view = |o: DynamicObject| {
        let mut v = serde_json::to_value(&o).ok()?;
        if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("managedFields");
        }
        NodeConfigView::from_json(&v).map(Arc::new)
    };
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist = Some(Default::default()),
            Ok(Event::InitApply(o)) => {
                if let Some(v) = view(o) {
                    relist
                        .get_or_insert_with(Default::default)
                        .insert(v.name.clone(), v);
                }
            }
            Ok(Event::InitDone) => {
                let items = relist.take().unwrap_or_default();
                tx.send_if_modified(|cur| {
                    let next = NodeConfigs {
                        synced: true,
                        items,
                    };
                    let changed = **cur != next;
                    if changed {
                        *cur = Arc::new(next);
                    }
                    changed
                });
            }
            Ok(Event::Apply(o)) => {
                let Some(v) = view(o) else { continue };
                if let Some(r) = &mut relist {
                    r.insert(v.name.clone(), v);
                    continue;
                }
                tx.send_if_modified(|cur| {
                    if cur.items.get(&v.name) == Some(&v) {
                        return false;
                    }
                    let mut next = (**cur).clone();
                    next.items.insert(v.name.clone(), v);
                    *cur = Arc::new(next);
                    true
                });
            }
            Ok(Event::Delete(o)) => {
                let Some(name) = o.metadata.name.clone() else {
                    continue;
                };
                if let Some(r) = &mut relist {
                    r.remove(&name);
                    continue;
                }
                tx.send_if_modified(|cur| {
                    if !cur.items.contains_key(&name) {
                        return false;
                    }
                    let mut next = (**cur).clone();
                    next.items.remove(&name);
                    *cur = Arc::new(next);
                    true
                });
            }
            Err(e) => warn!(error = %e, "watching CiliumBGPNodeConfigs"),
        }
    }
}
