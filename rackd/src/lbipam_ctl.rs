//! The LB-IPAM controller: adapts the snapshot's `CiliumLoadBalancerIPPool`s and `Service`s to
//! the pure allocator (`lbipam`), persists its state **before** any new IP is used (so a crash
//! at any instant never loses or duplicates an allocation), and publishes the result to the
//! BGP renderer and the admin API.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use lbipam::{
    Block, Config, ExternalTrafficPolicy, Family, IpFamilyPolicy, LbIpam, Outcome, PoolSpec,
    ServiceKey, ServiceSelector, ServiceSpec,
};
use rackd_model::Snapshot;
use rackd_model::k8s_openapi::api::core::v1::Service;
use rackd_model::selector::{NilSelector, Selector};
use tracing::{error, warn};

use crate::state;

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
}

/// The controller.
#[derive(Debug)]
pub struct LbController {
    ipam: LbIpam,
    state_path: PathBuf,
    config: Config,
    outcome: Outcome,
    /// Pools' first-seen ages (seconds since this controller saw them).
    first_seen: BTreeMap<String, std::time::Instant>,
    /// Problems found on start (a corrupt state file) or when adapting objects.
    pub problems: Vec<String>,
}

fn pool_specs(snap: &Snapshot, problems: &mut Vec<String>) -> Vec<PoolSpec<PoolSelector>> {
    let mut out = Vec::new();
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
                Err(e) => problems.push(format!("CiliumLoadBalancerIPPool {name}: block: {e}")),
            }
        }
        let selector = match Selector::compile_optional(
            p.spec.service_selector.as_ref(),
            NilSelector::MatchesAll,
        ) {
            Ok(s) if p.spec.service_selector.is_some() => Some(PoolSelector(s)),
            Ok(_) => None,
            Err(e) => {
                problems.push(format!(
                    "CiliumLoadBalancerIPPool {name}: serviceSelector: {e}"
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
    out
}

fn service_spec(s: &Service) -> ServiceSpec {
    let spec = s.spec.clone().unwrap_or_default();
    let families = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| Family::from_k8s(f))
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
    lb_ips: &BTreeMap<(String, String), Vec<IpAddr>>,
    svc: &rackd_model::k8s_openapi::api::core::v1::Service,
    namespace: &str,
    name: &str,
) -> Vec<IpAddr> {
    let mut ips = lb_ips
        .get(&(namespace.to_owned(), name.to_owned()))
        .cloned()
        .unwrap_or_default();
    for ip in rackd_model::status_ingress_ips(svc) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

impl LbController {
    /// Load the persisted state from `state_dir/lbipam.json`. A missing file is a first start;
    /// a corrupt one is moved aside (kept for inspection) and reported, and the controller
    /// starts empty, adopting IPs from Services' status where they have one.
    pub fn open(state_dir: &std::path::Path) -> Result<Self, state::StateError> {
        let state_path = state_dir.join("lbipam.json");
        let mut problems = Vec::new();
        let ipam = match state::read(&state_path)? {
            None => LbIpam::new(),
            Some(bytes) => match LbIpam::from_bytes(&bytes) {
                Ok(i) => i,
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
                    problems.push(msg);
                    LbIpam::new()
                }
            },
        };
        Ok(Self {
            ipam,
            state_path,
            config: Config::default(),
            outcome: Outcome::default(),
            first_seen: BTreeMap::new(),
            problems,
        })
    }

    /// Reconcile with the snapshot; persists before returning when anything changed. On a
    /// persistence failure the previous outcome stays published, so no unsaved IP is used.
    pub fn reconcile(&mut self, snap: &Snapshot) -> Result<(), LbError> {
        let mut problems = Vec::new();
        let pools = pool_specs(snap, &mut problems);
        let services: Vec<ServiceSpec> = snap.services().map(service_spec).collect();
        let before = self.ipam.snapshot();
        let outcome = self.ipam.reconcile(&self.config, &pools, &services);
        if outcome.state_changed
            && let Err(e) = state::write_atomic(&self.state_path, &self.ipam.snapshot().encode())
        {
            // Roll back so the next attempt starts from what is on disk.
            if let Ok(i) = LbIpam::restore(&before) {
                self.ipam = i;
            }
            return Err(LbError::Persist(e));
        }
        let now = std::time::Instant::now();
        for p in &pools {
            self.first_seen.entry(p.name.clone()).or_insert(now);
        }
        self.first_seen.retain(|n, _| outcome.pools.contains_key(n));
        for p in &problems {
            warn!(problem = %p, "LB-IPAM input");
        }
        self.problems.retain(|p| p.contains("unreadable"));
        self.problems.extend(problems);
        self.outcome = outcome;
        Ok(())
    }

    /// LoadBalancer IPs per `(namespace, name)`, for the BGP renderer.
    pub fn lb_ips(&self) -> BTreeMap<(String, String), Vec<IpAddr>> {
        self.outcome
            .services
            .iter()
            .filter(|(_, o)| !o.assignments.is_empty())
            .map(|(k, o)| ((k.namespace.clone(), k.name.clone()), o.ips()))
            .collect()
    }

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
                conditions: st
                    .conditions()
                    .into_iter()
                    .map(|c| rackd_api::Condition {
                        kind: c.type_.to_owned(),
                        status: c.status.as_str().to_owned(),
                        reason: c.reason.to_owned(),
                        message: c.message,
                    })
                    .collect(),
            })
            .collect()
    }

    /// `rackctl lbipam services`.
    pub fn service_views(&self) -> Vec<rackd_api::ServiceView> {
        self.outcome
            .services
            .iter()
            .map(|(k, o)| {
                let c = o.condition();
                let mut pools: Vec<String> =
                    o.assignments.iter().map(|a| a.pool.to_string()).collect();
                pools.sort();
                pools.dedup();
                rackd_api::ServiceView {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                    ips: o.ips().iter().map(ToString::to_string).collect(),
                    pools,
                    condition: rackd_api::Condition {
                        kind: c.type_.to_owned(),
                        status: c.status.as_str().to_owned(),
                        reason: c.reason.to_owned(),
                        message: c.message,
                    },
                }
            })
            .collect()
    }

    /// Per-pool (used, available) for metrics.
    pub fn pool_counts(&self) -> Vec<(String, u64, f64)> {
        self.outcome
            .pools
            .iter()
            .map(|(n, st)| (n.clone(), st.used, st.available.to_f64()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_model::{CheckOptions, parse_documents};
    use std::path::Path;

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

    fn snap(text: &str) -> Snapshot {
        let out = Snapshot::build(&[parse_documents("t.yaml", text)], &CheckOptions::default());
        assert!(out.errors.is_empty(), "{:#?}", out.errors);
        out.snapshot
    }

    #[test]
    fn allocates_persists_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = snap(CFG);
        let mut c = LbController::open(dir.path()).unwrap();
        c.reconcile(&s).unwrap();
        let ips = c.lb_ips();
        let got = &ips[&("default".to_owned(), "deathstar".to_owned())];
        assert_eq!(got.len(), 2, "{got:?}");
        let pools = c.pool_views();
        assert_eq!(pools[0].name, "empire-ip-pool");
        assert_eq!(pools[0].ips_used, "2");
        // A restart gives the same IPs, even with other services added first.
        let more = format!(
            "{CFG}---\napiVersion: v1\nkind: Service\nmetadata: {{name: aaa, namespace: default, labels: {{org: empire}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
        );
        let mut c2 = LbController::open(dir.path()).unwrap();
        c2.reconcile(&snap(&more)).unwrap();
        assert_eq!(
            &c2.lb_ips()[&("default".to_owned(), "deathstar".to_owned())],
            got
        );
    }

    /// The seeds' numbers: deathstar gets 172.18.255.200 and 2001:db8:dead:beef:: and the
    /// pool shows 18446744073709551622 available.
    #[test]
    fn seed_empire_pool_and_deathstar() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab");
        let mut text = String::new();
        for f in ["lb-pool.yaml", "services.yaml"] {
            text.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
            text.push_str("\n---\n");
        }
        let state = tempfile::tempdir().unwrap();
        let mut c = LbController::open(state.path()).unwrap();
        c.reconcile(&snap(&text)).unwrap();
        let ips = &c.lb_ips()[&("batuu".to_owned(), "deathstar".to_owned())];
        let want: Vec<IpAddr> = vec![
            "172.18.255.200".parse().unwrap(),
            "2001:db8:dead:beef::".parse().unwrap(),
        ];
        assert_eq!(ips, &want);
        let p = &c.pool_views()[0];
        assert_eq!(
            (p.name.as_str(), p.ips_available.as_str()),
            ("empire-ip-pool", "18446744073709551622")
        );
        let svc = c
            .service_views()
            .into_iter()
            .find(|s| s.name == "deathstar")
            .unwrap();
        assert_eq!(svc.condition.kind, "cilium.io/IPAMRequestSatisfied");
        assert_eq!(svc.condition.status, "True");
    }

    #[test]
    fn corrupt_state_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lbipam.json"), b"{\"format\": 12").unwrap();
        let c = LbController::open(dir.path()).unwrap();
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("lbipam.json.corrupt-")),
            "{names:?}"
        );
    }
}
