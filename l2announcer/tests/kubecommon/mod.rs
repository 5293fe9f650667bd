//! Shared by `tests/kube.rs` and `benches/failover.rs`: a real kube-apiserver (kubelab), a
//! client from its admin kubeconfig, a fresh namespace, and node instances on the
//! Kubernetes backend with a recording announcer.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use l2announcer::LeaseTimings;
use l2announcer::announcer::{AnnounceLog, RecordingAnnouncer};
use l2announcer::backend::{KubeBackend, KubeConfig};
use l2announcer::node::{NodeConfig, NodeHandle, spawn};
use l2announcer::policy::{DesiredGroup, Iface};
use l2announcer::query::Snapshot;

pub mod scale;

pub fn ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
}

pub fn groups(n: u32) -> BTreeMap<IpAddr, DesiredGroup> {
    let iface = Iface {
        name: "eth0".into(),
        ifindex: 2,
    };
    (0..n)
        .map(|i| {
            let g = DesiredGroup {
                services: BTreeSet::new(),
                interfaces: BTreeSet::from([iface.clone()]),
            };
            (ip(i), g)
        })
        .collect()
}

/// Starts etcd + kube-apiserver (blocking work, off the runtime's workers).
pub async fn start_cluster() -> anyhow::Result<kubelab::Cluster> {
    tokio::task::spawn_blocking(|| kubelab::Cluster::start(kubelab::ClusterOptions::default()))
        .await?
        .context("starting kubelab (run scripts/k8s-build.sh if the binaries are missing)")
}

/// A client from the cluster's admin kubeconfig (a new connection pool each call, as each
/// node would have its own).
pub async fn client(c: &kubelab::Cluster) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(c.admin_kubeconfig())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

static NS: AtomicU32 = AtomicU32::new(0);

/// Creates a namespace unique to this process and call.
pub async fn namespace(client: &kube::Client, prefix: &str) -> anyhow::Result<String> {
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NS.fetch_add(1, Ordering::Relaxed)
    );
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}

/// Node instances on one namespace of one API server.
pub struct Lab {
    pub kube: Option<kubelab::Cluster>,
    pub client: kube::Client,
    pub ns: String,
    pub log: AnnounceLog,
    pub nodes: BTreeMap<String, NodeHandle>,
    /// How often `settle` polls the nodes (a snapshot of thousands of groups is not free).
    pub poll: Duration,
}

impl Lab {
    pub async fn new(prefix: &str) -> anyhow::Result<Self> {
        let kube = start_cluster().await?;
        let client = client(&kube).await?;
        let ns = namespace(&client, prefix).await?;
        Ok(Self {
            kube: Some(kube),
            client,
            ns,
            log: AnnounceLog::default(),
            nodes: BTreeMap::new(),
            poll: Duration::from_millis(50),
        })
    }

    /// Another namespace on the same API server, with no nodes.
    pub async fn fresh_namespace(&mut self, prefix: &str) -> anyhow::Result<()> {
        self.ns = namespace(&self.client, prefix).await?;
        self.log = AnnounceLog::default();
        Ok(())
    }

    pub async fn backend(&self, name: &str, timings: LeaseTimings) -> anyhow::Result<KubeBackend> {
        let c = match &self.kube {
            Some(k) => client(k).await?,
            None => self.client.clone(),
        };
        Ok(KubeBackend::new(KubeConfig::new(
            c,
            self.ns.clone(),
            name,
            timings,
        )))
    }

    pub async fn add(&mut self, name: &str, timings: LeaseTimings, n: u32) -> anyhow::Result<()> {
        let backend = self.backend(name, timings).await?;
        let h = spawn(
            NodeConfig::new(name, timings),
            backend,
            RecordingAnnouncer::new(name, self.log.clone(), true),
        );
        h.set_desired(groups(n));
        self.nodes.insert(name.to_owned(), h);
        Ok(())
    }

    /// Starts nodes, waits until each sees all as members, then gives them the groups, so the
    /// start-up order does not decide who gets what.
    pub async fn start_all(
        &mut self,
        names: &[&str],
        timings: LeaseTimings,
        n: u32,
    ) -> anyhow::Result<()> {
        for name in names {
            self.add(name, timings, 0).await?;
        }
        for _ in 0..800 {
            let snaps = self.snapshots().await;
            if snaps.values().all(|s| s.members.len() == names.len()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.desire(n);
        Ok(())
    }

    pub fn desire(&self, n: u32) {
        for h in self.nodes.values() {
            h.set_desired(groups(n));
        }
    }

    pub async fn snapshots(&self) -> BTreeMap<String, Snapshot> {
        let mut out = BTreeMap::new();
        for (n, h) in &self.nodes {
            if let Some(s) = h.snapshot().await {
                out.insert(n.clone(), s);
            }
        }
        out
    }

    /// Claims as stored in the API server: IP → holder.
    pub async fn stored(&self) -> anyhow::Result<BTreeMap<IpAddr, String>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api
            .list(&ListParams::default().labels("rackd.io/l2=claim"))
            .await?;
        Ok(list
            .items
            .iter()
            .filter_map(|l| {
                let ip = l
                    .metadata
                    .annotations
                    .as_ref()?
                    .get("rackd.io/l2-ip")?
                    .parse()
                    .ok()?;
                // Only at the claim's own name (tests put impostors in the namespace).
                let want = match ip {
                    IpAddr::V4(a) => format!("rackd-l2-{}", a.to_string().replace('.', "-")),
                    IpAddr::V6(_) => return None,
                };
                if l.metadata.name.as_deref() != Some(want.as_str()) {
                    return None;
                }
                let holder = l.spec.as_ref()?.holder_identity.clone()?;
                Some((ip, holder))
            })
            .collect())
    }

    /// Node Leases as stored: holder → (resourceVersion, leaseTransitions).
    pub async fn node_leases(&self) -> anyhow::Result<BTreeMap<String, (String, i32)>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api
            .list(&ListParams::default().labels("rackd.io/l2=node"))
            .await?;
        Ok(list
            .items
            .iter()
            .filter_map(|l| {
                let s = l.spec.as_ref()?;
                Some((
                    s.holder_identity.clone()?,
                    (
                        l.metadata.resource_version.clone()?,
                        s.lease_transitions.unwrap_or(0),
                    ),
                ))
            })
            .collect())
    }

    /// Holder per group once every group is announced by exactly one node (the announcers'
    /// view); `stored_too` also requires the API server's claims to name that node.
    pub async fn settle(
        &self,
        n: u32,
        limit: Duration,
        stored_too: bool,
    ) -> anyhow::Result<BTreeMap<IpAddr, String>> {
        let start = tokio::time::Instant::now();
        let mut last = 0;
        while start.elapsed() < limit {
            let snaps = self.snapshots().await;
            let mut announced: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
            for (node, s) in &snaps {
                for a in &s.announcements {
                    announced.entry(a.ip).or_default().push(node.clone());
                }
            }
            last = announced.len();
            if announced.len() == n as usize && announced.values().all(|v| v.len() == 1) {
                let held: BTreeMap<IpAddr, String> = announced
                    .into_iter()
                    .map(|(ip, mut v)| (ip, v.remove(0)))
                    .collect();
                if !stored_too {
                    return Ok(held);
                }
                let stored = self.stored().await?;
                if held.iter().all(|(ip, h)| stored.get(ip) == Some(h)) {
                    return Ok(held);
                }
            }
            tokio::time::sleep(self.poll).await;
        }
        anyhow::bail!("did not settle within {limit:?}: {last} of {n} groups announced")
    }

    pub async fn shutdown_all(&mut self) {
        for (_, h) in std::mem::take(&mut self.nodes) {
            h.shutdown().await;
        }
    }

    /// Stops the nodes, then the API server and etcd (blocking, off the workers).
    pub async fn stop(mut self) {
        self.shutdown_all().await;
        if let Some(k) = self.kube.take() {
            let _ = tokio::task::spawn_blocking(move || drop(k)).await;
        }
    }
}

pub fn by_holder(stored: &BTreeMap<IpAddr, String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for h in stored.values() {
        *m.entry(h.clone()).or_default() += 1;
    }
    m
}
