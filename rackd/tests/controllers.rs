//! The daemon's controller wiring with in-memory inputs: a configuration fed through a
//! channel source (the same store and task as the directory's), LB-IPAM as the daemon runs
//! it, and a second, dummy controller plugged in with one line. The dummy reconciles on
//! every change, its conditions reach `rackctl status` per object with no other wiring, and
//! the admin API answers while a controller is busy.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackd::admin::Handler;
use rackd::config::{self, Batch, ChannelSource, ConfigState, Health};
use rackd::controller::{Context, Controller, Controllers, Outcome, RunOptions};
use rackd::handler::Shared;
use rackd::lbipam_ctl::LbIpamController;
use rackd::metrics::Metrics;
use rackd_api::{Reply, Request};
use rackd_model::rackd_types::{Condition, Kind, ObjectCondition, ObjectKey};
use rackd_model::{CheckOptions, SourceContent, parse_documents};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Records the revisions it saw; flags every Service named `bad`.
struct Dummy {
    seen: Arc<Mutex<Vec<u64>>>,
    gate: Arc<tokio::sync::Semaphore>,
    flagged: Arc<[ObjectCondition]>,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Controller for Dummy {
    const NAME: &'static str = "dummy";
    type Inputs = watch::Receiver<Arc<ConfigState>>;
    type Error = Never;

    async fn reconcile(&mut self, cfg: &Arc<ConfigState>, _: Context) -> Result<Outcome, Never> {
        // Held while the test wants the controller busy.
        let _permit = self.gate.acquire().await;
        self.seen.lock().unwrap().push(cfg.revision);
        self.flagged = cfg
            .snapshot
            .services()
            .filter(|s| s.metadata.name.as_deref() == Some("bad"))
            .map(|s| {
                ObjectCondition::new(
                    ObjectKey::namespaced(
                        Kind::Service,
                        s.metadata.namespace.clone().unwrap_or_default(),
                        "bad",
                    ),
                    Condition::problem("example.com/Bad", "Named", "this Service is called bad"),
                )
            })
            .collect();
        Ok(Outcome::DONE)
    }

    fn conditions(&self) -> Arc<[ObjectCondition]> {
        self.flagged.clone()
    }
}

const POOL: &str = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  blocks: [{cidr: 10.9.0.0/24}]\n";

fn svc(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

async fn status(shared: &Shared) -> rackd_api::Status {
    match shared.handle(Request::Status).await {
        Reply::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_controller_plugs_in_with_one_line() {
    let state_dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (feed, source) = ChannelSource::new("test:channel");
    let stop = CancellationToken::new();
    let (config, config_task) = config::spawn(
        source,
        CheckOptions::default(),
        metrics.clone(),
        stop.clone(),
    );
    let mut controllers = Controllers::new(metrics.clone(), RunOptions::default());
    let (lbipam, lb) = LbIpamController::open(state_dir.path(), metrics.clone()).unwrap();
    controllers.spawn(lbipam, config.clone());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(1));
    let dummy = Dummy {
        seen: seen.clone(),
        gate: gate.clone(),
        flagged: Arc::from([]),
    };
    // The one line:
    controllers.spawn(dummy, config.clone());

    let (_bgp_tx, bgp) = watch::channel(rackd::bgp::BgpStatus::default());
    let (_peers_tx, peers) = watch::channel(rackd::bgp::BgpPeers::from([]));
    let shared = Shared::new(
        "n1",
        config.clone(),
        lb.clone(),
        bgp,
        peers,
        None,
        controllers.watcher(),
    );

    // A file's worth of objects, as a source hands them over.
    let mut content = SourceContent::default();
    let mut push = |text: &str| {
        let (u, next) = content.update_to(&parse_documents("objects.yaml", text));
        content = next;
        feed.send(Batch {
            updates: vec![u],
            health: Some(Health::Ok),
        })
        .unwrap();
    };
    push(&format!("{POOL}{}", svc("good")));
    until("both controllers synced", async || shared.synced()).await;
    assert!(seen.lock().unwrap().contains(&1));
    let s = status(&shared).await;
    assert!(
        s.controllers.iter().any(|c| c.name == "dummy" && c.synced),
        "{:?}",
        s.controllers
    );
    assert!(s.conditions.is_empty(), "{:?}", s.conditions);

    // A change reaches it, and its conditions reach `rackctl status` per object.
    push(&format!("{POOL}{}{}", svc("good"), svc("bad")));
    until("the dummy's condition in status", async || {
        status(&shared)
            .await
            .conditions
            .iter()
            .any(|c| c.condition.type_ == "example.com/Bad")
    })
    .await;
    let s = status(&shared).await;
    let c = s
        .conditions
        .iter()
        .find(|c| c.condition.type_ == "example.com/Bad")
        .unwrap();
    assert_eq!(
        c.object,
        Some(ObjectKey::namespaced(Kind::Service, "default", "bad"))
    );
    // LB-IPAM ran on the same change (its address for `bad` is out).
    until("LB-IPAM served bad", async || {
        lb.borrow()
            .ips
            .contains_key(&("default".into(), "bad".into()))
    })
    .await;

    // While the dummy is wedged in a run, the admin API still answers at once.
    let held = gate.clone().acquire_owned().await.unwrap();
    push(&format!("{POOL}{}", svc("good")));
    until("the dummy is busy", async || {
        shared.stuck(Duration::ZERO).contains(&"dummy")
    })
    .await;
    // (It would wait forever if it queued behind the run: the gate opens only below.)
    let s = tokio::time::timeout(Duration::from_secs(5), status(&shared))
        .await
        .expect("status answered while a controller is busy");
    assert_eq!(s.node, "n1");
    drop(held);
    until("the dummy's condition cleared", async || {
        !status(&shared)
            .await
            .conditions
            .iter()
            .any(|c| c.condition.type_ == "example.com/Bad")
    })
    .await;

    controllers.stop().await;
    stop.cancel();
    config_task.await.unwrap();
}
