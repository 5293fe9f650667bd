//! The Kubernetes source: one watcher (reflector) per kind rackd reads, turned into the same
//! per-object changes as the directory's files (see [`super::kind`]).
//!
//! - **Kinds and versions.** Every kind of [`rackd_model::Kind`]: the cilium.io kinds in their
//!   stored version (`v2`), falling back to the next version rackd reads (`v2alpha1`) when
//!   the API server does not serve it; a kind whose CRD is not installed at all counts as
//!   listed and empty, and is looked for again every [`NOT_SERVED_RETRY`]. Secrets only in
//!   the BGP secrets namespace; Pods only on this node (what the service datapath needs);
//!   Namespaces cluster-wide (their labels, for the egress gateway's `namespaceSelector`).
//! - **Starting.** The first batch is handed over when every kind has been listed once, so
//!   the controllers never act on half a cluster.
//! - **Errors.** A watch that fails (the API server gone, RBAC refusing) is retried with
//!   client-go's backoff (800 ms doubling to 30 s, jittered); the source reports itself
//!   unavailable once per change of the error set, and the last good objects stay in force:
//!   nothing is withdrawn or released because the API server went away. `410 Gone` (the
//!   watch's resourceVersion compacted away, which is what a restarted API server answers
//!   first) is not a failure to back off from: the server answered, so the relist starts at
//!   once instead of after the backoff the outage built up ([`retry_delay`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use rackd_model::Kind;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::kind::{KindSource, WatchEvent};
use crate::config::{Batch, ConfigSource, Health};

/// How often a kind that is not served (no CRD) is looked for again.
pub const NOT_SERVED_RETRY: Duration = Duration::from_secs(30);

/// List page size: large lists (27,000 Services) come in pages, each a bounded response.
const PAGE_SIZE: u32 = 500;

/// What a kind's watcher task reports.
#[derive(Debug)]
enum Msg {
    Event(WatchEvent),
    Error(String),
    NotServed,
}

/// The resource names of `kind` at `api_version`.
pub fn api_resource(kind: Kind, api_version: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        Kind::BgpClusterConfig => "ciliumbgpclusterconfigs",
        Kind::BgpPeerConfig => "ciliumbgppeerconfigs",
        Kind::BgpAdvertisement => "ciliumbgpadvertisements",
        Kind::BgpNodeConfigOverride => "ciliumbgpnodeconfigoverrides",
        Kind::LoadBalancerIPPool => "ciliumloadbalancerippools",
        Kind::L2AnnouncementPolicy => "ciliuml2announcementpolicies",
        Kind::EgressGatewayPolicy => "ciliumegressgatewaypolicies",
        Kind::Service => "services",
        Kind::Node => "nodes",
        Kind::EndpointSlice => "endpointslices",
        Kind::Secret => "secrets",
        Kind::Pod => "pods",
        Kind::Namespace => "namespaces",
    };
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: kind.as_str().to_owned(),
        plural: plural.to_owned(),
    }
}

/// Where the source looks.
#[derive(Debug, Clone)]
pub struct Scope {
    /// This node (Pods are watched on it only, unless `all_pods`).
    pub node_name: String,
    /// Watch every Pod of the cluster: the egress gateway programs the pods of every node
    /// that use this node as their gateway (Cilium's agents watch every CiliumEndpoint when
    /// the egress gateway is on, for the same reason).
    pub all_pods: bool,
    /// Namespace of the BGP auth Secrets (the only Secrets read).
    pub secrets_namespace: String,
}

/// The Kubernetes source; see the module docs.
#[derive(Debug)]
pub struct KubeSource {
    describe: String,
    kinds: HashMap<Kind, KindSource>,
    rx: mpsc::Receiver<(Kind, Msg)>,
    /// The watcher tasks; aborted when the source is dropped.
    _tasks: JoinSet<()>,
    started: bool,
    health: Health,
    /// Current error per kind (what makes the source unavailable).
    failing: BTreeMap<Kind, String>,
}

impl KubeSource {
    /// Starts one watcher per kind on `client`. Must be called inside a runtime.
    pub fn start(client: kube::Client, server: &str, scope: &Scope) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let mut tasks = JoinSet::new();
        let mut kinds = HashMap::new();
        for kind in Kind::ALL {
            kinds.insert(
                kind,
                KindSource::new(kind, format!("k8s:{}", kind.as_str())),
            );
            let (namespace, fields) = match kind {
                Kind::Secret => (Some(scope.secrets_namespace.clone()), None),
                Kind::Pod if !scope.all_pods => {
                    (None, Some(format!("spec.nodeName={}", scope.node_name)))
                }
                _ => (None, None),
            };
            tasks.spawn(watch_kind(
                client.clone(),
                kind,
                namespace,
                fields,
                tx.clone(),
            ));
        }
        Self {
            describe: format!("k8s:{server}"),
            kinds,
            rx,
            _tasks: tasks,
            started: false,
            health: Health::Ok,
            failing: BTreeMap::new(),
        }
    }

    fn handle(&mut self, kind: Kind, msg: Msg, out: &mut Vec<rackd_model::SourceUpdate>) {
        let Some(src) = self.kinds.get_mut(&kind) else {
            return;
        };
        match msg {
            Msg::Event(ev) => {
                if let Some(reason) = self.failing.remove(&kind) {
                    info!(kind = %kind, was = %reason, "Kubernetes watch recovered");
                }
                out.extend(src.apply(ev));
            }
            Msg::NotServed => {
                if !src.synced() {
                    info!(kind = %kind, "kind not served by the API server (CRD not installed): empty until it is");
                }
                self.failing.remove(&kind);
                src.not_served();
            }
            Msg::Error(e) => {
                if self.failing.get(&kind) != Some(&e) {
                    warn!(kind = %kind, error = %e, "Kubernetes watch failing; last good objects stay");
                }
                self.failing.insert(kind, e);
            }
        }
    }

    fn current_health(&self) -> Health {
        if self.failing.is_empty() {
            Health::Ok
        } else {
            Health::Unavailable {
                reason: self
                    .failing
                    .iter()
                    .map(|(k, e)| format!("{k}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        }
    }
}

impl ConfigSource for KubeSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn next(&mut self) -> Batch {
        let mut updates = Vec::new();
        loop {
            let Some((kind, msg)) = self.rx.recv().await else {
                // Every watcher ended (only when the runtime shuts down).
                return std::future::pending().await;
            };
            self.handle(kind, msg, &mut updates);
            // Whatever else is already queued goes into the same batch.
            while let Ok((kind, msg)) = self.rx.try_recv() {
                self.handle(kind, msg, &mut updates);
            }
            let health = self.current_health();
            if !self.started {
                if self.kinds.values().all(KindSource::synced) {
                    self.started = true;
                    info!(
                        objects = self.kinds.values().map(KindSource::len).sum::<usize>(),
                        "Kubernetes: every kind listed"
                    );
                    self.health = health.clone();
                    return Batch {
                        updates,
                        health: Some(health),
                    };
                }
                continue;
            }
            let health_changed = health != self.health;
            if updates.is_empty() && !health_changed {
                continue;
            }
            self.health = health.clone();
            return Batch {
                updates,
                health: health_changed.then_some(health),
            };
        }
    }
}

/// The watch event as the kind source takes it: JSON with `apiVersion` and `kind` set (list
/// items come without them).
fn to_value(ar: &ApiResource, o: DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(ar.api_version.clone()));
        m.entry("kind")
            .or_insert_with(|| Value::String(ar.kind.clone()));
    }
    v
}

fn is_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 404,
        _ => false,
    }
}

/// One kind's watcher, run until the source is dropped.
async fn watch_kind(
    client: kube::Client,
    kind: Kind,
    namespace: Option<String>,
    fields: Option<String>,
    tx: mpsc::Sender<(Kind, Msg)>,
) {
    let versions = kind.api_versions();
    let mut vi = 0;
    loop {
        let Some(version) = versions.get(vi) else {
            if tx.send((kind, Msg::NotServed)).await.is_err() {
                return;
            }
            tokio::time::sleep(NOT_SERVED_RETRY).await;
            vi = 0;
            continue;
        };
        let ar = api_resource(kind, version);
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let mut cfg = watcher::Config::default().page_size(PAGE_SIZE);
        if let Some(f) = &fields {
            cfg = cfg.fields(f);
        }
        let mut stream = watcher::watcher(api, cfg).boxed();
        let mut backoff = DefaultBackoff::default();
        let mut not_found = false;
        while let Some(item) = stream.next().await {
            let mut delay = None;
            match &item {
                Ok(_) => backoff.reset(),
                Err(e) => delay = Some(retry_delay(e, &mut backoff)),
            }
            let msg = match item {
                Ok(Event::Init) => Msg::Event(WatchEvent::Init),
                Ok(Event::InitApply(o)) => Msg::Event(WatchEvent::InitApply(to_value(&ar, o))),
                Ok(Event::InitDone) => Msg::Event(WatchEvent::InitDone),
                Ok(Event::Apply(o)) => Msg::Event(WatchEvent::Apply(to_value(&ar, o))),
                Ok(Event::Delete(o)) => Msg::Event(WatchEvent::Delete(to_value(&ar, o))),
                Err(e) if is_not_found(&e) => {
                    not_found = true;
                    break;
                }
                Err(e) => Msg::Error(error_text(&e)),
            };
            if tx.send((kind, msg)).await.is_err() {
                return;
            }
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
        }
        if not_found {
            debug!(kind = %kind, version, "not served");
            vi += 1;
        }
    }
}

/// How long to wait before the watcher's next step after `e`: nothing after `410 Gone` (the
/// server answered; the watcher relists), else the next backoff step.
fn retry_delay(e: &watcher::Error, backoff: &mut DefaultBackoff) -> Duration {
    if is_gone(e) {
        backoff.reset();
        return Duration::ZERO;
    }
    backoff.next().unwrap_or(MAX_RETRY)
}

/// The watcher's own backoff never ends; this bounds it if that changes.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// `410 Gone`: the resourceVersion the watch resumed from is compacted away.
fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// The error with its causes, as one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_relists_at_once_and_other_errors_back_off() {
        let mut b = DefaultBackoff::default();
        let down = || watcher::Error::NoResourceVersion;
        let first = retry_delay(&down(), &mut b);
        let mut last = first;
        for _ in 0..10 {
            last = retry_delay(&down(), &mut b);
        }
        assert!(first < Duration::from_secs(2), "{first:?}");
        assert!(
            last >= Duration::from_secs(15),
            "the outage built a backoff: {last:?}"
        );
        let gone = watcher::Error::WatchError(
            kube::core::Status::failure("too old resource version", "Expired")
                .with_code(410)
                .boxed(),
        );
        assert_eq!(retry_delay(&gone, &mut b), Duration::ZERO);
        // The backoff starts over after the server answered.
        assert!(retry_delay(&down(), &mut b) < Duration::from_secs(2));
        let forbidden = watcher::Error::WatchError(
            kube::core::Status::failure("no", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        assert!(retry_delay(&forbidden, &mut b) > Duration::ZERO);
    }

    #[test]
    fn resources_are_named_as_the_api_server_serves_them() {
        let ar = api_resource(Kind::L2AnnouncementPolicy, "cilium.io/v2alpha1");
        assert_eq!(
            (ar.group.as_str(), ar.version.as_str(), ar.plural.as_str()),
            ("cilium.io", "v2alpha1", "ciliuml2announcementpolicies")
        );
        let ar = api_resource(Kind::Service, "v1");
        assert_eq!((ar.group.as_str(), ar.version.as_str()), ("", "v1"));
        let ar = api_resource(Kind::EndpointSlice, "discovery.k8s.io/v1");
        assert_eq!(ar.group, "discovery.k8s.io");
        let ar = api_resource(Kind::Namespace, "v1");
        assert_eq!(
            (ar.group.as_str(), ar.version.as_str(), ar.plural.as_str()),
            ("", "v1", "namespaces")
        );
        for k in Kind::ALL {
            for v in k.api_versions() {
                let ar = api_resource(k, v);
                assert_eq!(ar.kind, k.as_str());
                assert!(ar.plural.ends_with('s'));
            }
        }
    }
}
