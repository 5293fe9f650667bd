#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::maps::{LbMaps, MapsError};
use super::*;
use crate::testing::{config_state, ctx};

/// The maps as a model: what a real datapath would hold, and every call made.
#[derive(Debug, Default)]
struct FakeMaps {
    services: BTreeMap<Frontend, (u32, usize)>,
    backends: BTreeMap<u32, (Backend, bool)>,
    attached: BTreeMap<u32, (Option<Ipv4Addr>, Option<Ipv6Addr>)>,
    masq: Option<datapath::lb::MasqConfig>,
    egress_tunnel: Option<datapath::lb::EgressTunnel>,
    egress: Vec<datapath::lb::EgressRule>,
    egress_syncs: usize,
    ops: Vec<Op>,
    /// Fail the n-th apply from now.
    fail_at: Option<usize>,
}

impl LbMaps for FakeMaps {
    fn apply(&mut self, op: &Op) -> Result<(), MapsError> {
        if let Some(n) = self.fail_at.as_mut() {
            if *n == 0 {
                self.fail_at = None;
                return Err(MapsError {
                    what: "injected".into(),
                    source: datapath::Error::Invalid {
                        what: "test",
                        reason: "injected failure".into(),
                    },
                });
            }
            *n -= 1;
        }
        self.ops.push(op.clone());
        match op {
            Op::UpsertBackend { id, value } => {
                let b = value.backend();
                self.backends.insert(id.0, (b, value.local));
            }
            Op::DeleteBackend { id } => {
                self.backends.remove(&id.0);
            }
            Op::UpsertService { frontend, value } => {
                // Every LUT entry names a backend already written (the plan's order).
                for id in value.lut.ids() {
                    assert!(
                        self.backends.contains_key(id),
                        "LUT names backend {id} not written"
                    );
                }
                self.services
                    .insert(*frontend, (value.id.0, value.lut.ids().len()));
            }
            Op::DeleteService { frontend, .. } => {
                self.services.remove(frontend);
            }
        }
        Ok(())
    }

    fn restore(&mut self) -> Result<super::maps::Restored, MapsError> {
        Ok((
            self.services.iter().map(|(f, (id, _))| (*f, *id)).collect(),
            self.backends.iter().map(|(id, (b, _))| (*b, *id)).collect(),
        ))
    }

    fn attached(&self) -> Result<Vec<u32>, MapsError> {
        Ok(self.attached.keys().copied().collect())
    }

    fn attach(
        &mut self,
        ifindex: u32,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<(), MapsError> {
        self.attached.insert(ifindex, (v4, v6));
        Ok(())
    }

    fn detach(&mut self, ifindex: u32) -> Result<(), MapsError> {
        self.attached.remove(&ifindex);
        Ok(())
    }

    fn set_masquerade(&mut self, m: &datapath::lb::MasqConfig) -> Result<(), MapsError> {
        self.masq = Some(m.clone());
        Ok(())
    }

    fn set_egress_tunnel(
        &mut self,
        tunnel: Option<datapath::lb::EgressTunnel>,
    ) -> Result<(), MapsError> {
        self.egress_tunnel = tunnel;
        Ok(())
    }

    fn sync_egress(
        &mut self,
        rules: &[datapath::lb::EgressRule],
    ) -> Result<datapath::lb::EgressSync, MapsError> {
        self.egress_syncs += 1;
        self.egress = rules.to_vec();
        Ok(datapath::lb::EgressSync::default())
    }
}

const BASE: &str = "\
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDRs: [10.1.1.0/24]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: ClusterIP
  externalIPs: [20.0.10.1]
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v4
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints:
- {addresses: [10.1.1.11], nodeName: node1, conditions: {ready: true}}
- {addresses: [10.1.2.12], nodeName: node2, conditions: {ready: true}}
";

fn maglev() -> MaglevConfig {
    MaglevConfig {
        table_size: rackd_services::maglev::TableSize::new(251).unwrap(),
        seed: rackd_services::maglev::HashSeed::default(),
    }
}

fn devices() -> Arc<[Device]> {
    Arc::from(vec![
        Device {
            name: "lo".into(),
            ifindex: 1,
            ether: false,
            loopback: true,
            up: true,
        },
        Device {
            name: "eth0".into(),
            ifindex: 2,
            ether: true,
            loopback: false,
            up: true,
        },
        Device {
            name: "lxc1".into(),
            ifindex: 3,
            ether: true,
            loopback: false,
            up: true,
        },
    ])
}

fn host() -> Arc<HostInfo> {
    let mut h = HostInfo::default();
    h.interfaces.insert(
        "eth0".into(),
        vec![
            "10.0.1.2".parse().unwrap(),
            "fd00:10:0:1::2".parse().unwrap(),
        ],
    );
    h.interfaces
        .insert("lxc1".into(), vec!["10.1.1.1".parse().unwrap()]);
    Arc::new(h)
}

type Inputs = (
    Arc<ConfigState>,
    Arc<LbStatus>,
    Arc<[Device]>,
    Arc<HostInfo>,
    Arc<MasqState>,
    Arc<egress::EgressHolders>,
);

fn inputs(text: &str) -> Inputs {
    let lb = LbStatus {
        settled: true,
        ready: true,
        ..LbStatus::default()
    };
    (
        config_state(text),
        Arc::new(lb),
        devices(),
        host(),
        Arc::new(MasqState::default()),
        Arc::default(),
    )
}

fn controller(maps: FakeMaps) -> ServiceLbController<FakeMaps> {
    ServiceLbController::new("node1", &["eth0".into()], maps, maglev(), None, None)
        .unwrap()
        .0
}

#[tokio::test]
async fn programs_frontends_on_the_chosen_devices_and_is_idempotent() {
    let mut c = controller(FakeMaps::default());
    let i = inputs(BASE);
    c.reconcile(&i, ctx(true)).await.unwrap();
    let m = c.maps();
    assert_eq!(
        m.attached.keys().copied().collect::<Vec<_>>(),
        [2],
        "eth0 only"
    );
    assert_eq!(
        m.attached[&2],
        (
            Some("10.0.1.2".parse().unwrap()),
            Some("fd00:10:0:1::2".parse().unwrap())
        )
    );
    assert_eq!(m.services.len(), 1);
    assert_eq!(m.backends.len(), 2);
    // The local backend is marked local, the other not.
    let local: Vec<bool> = m.backends.values().map(|(_, l)| *l).collect();
    assert_eq!(local, [true, false]);
    let n = m.ops.len();
    // Nothing changed: nothing written, on an incremental run or a full one.
    c.reconcile(&i, ctx(false)).await.unwrap();
    c.reconcile(&i, ctx(true)).await.unwrap();
    assert_eq!(c.maps().ops.len(), n);
    assert!(c.conditions().is_empty());
}

#[tokio::test]
async fn a_removed_backend_is_deleted_after_the_table_that_used_it() {
    let mut c = controller(FakeMaps::default());
    c.reconcile(&inputs(BASE), ctx(true)).await.unwrap();
    let before = c.maps().ops.len();
    let fewer = BASE.replace(
        "- {addresses: [10.1.2.12], nodeName: node2, conditions: {ready: true}}\n",
        "",
    );
    c.reconcile(&inputs(&fewer), ctx(false)).await.unwrap();
    let ops = &c.maps().ops[before..];
    assert!(
        matches!(ops, [Op::UpsertService { .. }, Op::DeleteBackend { .. }]),
        "{ops:#?}"
    );
    assert_eq!(c.maps().backends.len(), 1);
}

#[tokio::test]
async fn a_restart_keeps_ids_and_prunes_what_nothing_claims() {
    let mut c = controller(FakeMaps::default());
    c.reconcile(&inputs(BASE), ctx(true)).await.unwrap();
    let maps = std::mem::take(&mut c.maps);
    let ids_before = maps.services.clone();
    let backends_before = maps.backends.clone();
    // A second Service that is gone by the time the daemon restarts.
    let mut maps = maps;
    maps.services.insert(
        Frontend {
            addr: "20.0.10.9".parse().unwrap(),
            port: 80,
            proto: rackd_services::L4Proto::Tcp,
        },
        (77, 0),
    );
    let mut c = controller(maps);
    c.reconcile(&inputs(BASE), ctx(true)).await.unwrap();
    assert_eq!(
        c.maps().services,
        ids_before,
        "same ids, the stale frontend pruned"
    );
    assert_eq!(c.maps().backends, backends_before, "backend ids kept");
}

#[tokio::test]
async fn a_failed_apply_is_retried_from_the_maps() {
    let maps = FakeMaps {
        fail_at: Some(1),
        ..FakeMaps::default()
    };
    let mut c = controller(maps);
    assert!(c.reconcile(&inputs(BASE), ctx(true)).await.is_err());
    // The next run rebuilds from what the maps hold and completes the table.
    c.reconcile(&inputs(BASE), ctx(false)).await.unwrap();
    assert_eq!(c.maps().services.len(), 1);
    assert_eq!(c.maps().backends.len(), 2);
}

#[tokio::test]
async fn masquerade_takes_the_node_pod_cidrs_and_the_agent_list() {
    let (mut c, _) = ServiceLbController::new(
        "node1",
        &["eth0".into()],
        FakeMaps::default(),
        maglev(),
        Some(MasqSwitches {
            ipv4: true,
            ipv6: false,
        }),
        None,
    )
    .unwrap();
    let mut i = inputs(BASE);
    i.4 = Arc::new(MasqState {
        non_masquerade: vec!["10.0.0.0/8".parse().unwrap()],
        condition: None,
    });
    c.reconcile(&i, ctx(true)).await.unwrap();
    let m = c.maps().masq.clone().unwrap();
    assert!(m.v4 && !m.v6);
    assert_eq!(m.pod_cidrs, vec!["10.1.1.0/24".parse::<IpNet>().unwrap()]);
    assert!(m.non_masq.contains(&"10.0.0.0/8".parse().unwrap()));
}

#[tokio::test]
async fn problems_are_conditions_of_their_service() {
    let sctp = BASE.replace(
        "ports: [{port: 80, protocol: TCP}]\n---\napiVersion: discovery",
        "ports: [{port: 80, protocol: SCTP}]\n---\napiVersion: discovery",
    );
    let mut c = controller(FakeMaps::default());
    c.reconcile(&inputs(&sctp), ctx(true)).await.unwrap();
    let conds = c.conditions();
    assert_eq!(conds.len(), 1, "{conds:?}");
    assert_eq!(
        conds[0].object.as_ref().map(|o| o.name.as_str()),
        Some("web")
    );
    // Positive control: the TCP version has none (first test).
}

#[test]
fn device_selection_follows_patterns_or_global_addresses() {
    let d = devices();
    let h = host();
    let names = |p: &[&str]| {
        let p: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
        select_devices(&d, &h, &p)
            .into_iter()
            .map(|(d, _, _)| d.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&["eth0"]), ["eth0"]);
    assert_eq!(names(&["eth+"]), ["eth0"]);
    assert_eq!(names(&["lxc+", "eth0"]), ["eth0", "lxc1"]);
    // No pattern: Ethernet devices with a global address (lo never).
    assert_eq!(names(&[]), ["eth0", "lxc1"]);
}

/// node1 (BASE) with a pod selected by the seeds' policy, and node2 the gateway.
const EGRESS: &str = "\
---
apiVersion: v1
kind: Node
metadata: {name: node2, labels: {egress-gw: 'true'}}
spec: {podCIDRs: [10.1.2.0/24]}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tiefighter, namespace: default, uid: u1, labels: {org: empire}}
spec: {nodeName: node1}
status: {phase: Running, podIP: 10.1.1.5, podIPs: [{ip: 10.1.1.5}]}
---
";

const TUNNEL: datapath::lb::EgressTunnel = datapath::lb::EgressTunnel {
    ifindex: 9,
    vni: 2,
    mac: [0x0a, 0xce, 0, 0, 0, 1],
};

/// With the gateway on: the tunnel is set once, node1's pod is tunnelled to node2, an
/// unchanged input does not rewrite the map, a Service change does not re-resolve, a Pod
/// change does.
#[tokio::test]
async fn egress_gateway_rules_follow_pods_and_policies() {
    let seed = include_str!("../../../configs/seeds/seed-000-egress-gateway.yaml");
    let text = format!("{BASE}{EGRESS}{seed}").replace(
        "spec: {podCIDRs: [10.1.1.0/24]}",
        "spec: {podCIDRs: [10.1.1.0/24]}\nstatus: {addresses: [{type: InternalIP, address: 192.168.0.1}]}",
    );
    let mut c = ServiceLbController::new(
        "node1",
        &["eth0".into()],
        FakeMaps::default(),
        maglev(),
        None,
        Some(TUNNEL),
    )
    .unwrap()
    .0;
    c.reconcile(&inputs(&text), ctx(true)).await.unwrap();
    let m = c.maps();
    assert_eq!(m.egress_tunnel, Some(TUNNEL));
    assert_eq!(
        m.egress,
        [datapath::lb::EgressRule {
            source: "10.1.1.5".parse().unwrap(),
            destination: "10.0.4.0/24".parse().unwrap(),
            action: datapath::lb::EgressAction::Tunnel {
                gateway: "192.168.0.2".parse().unwrap()
            },
        }]
    );
    assert_eq!(m.egress_syncs, 1);
    assert!(c.conditions().is_empty(), "{:?}", c.conditions());
    // Unchanged, and then an unrelated change: no new sync.
    c.reconcile(&inputs(&text), ctx(false)).await.unwrap();
    let other = text.replace("port: 80", "port: 81");
    assert_ne!(other, text);
    c.reconcile(&inputs(&other), ctx(false)).await.unwrap();
    assert_eq!(c.maps().egress_syncs, 1);
    // The pod moves away from the policy: its entry goes.
    let gone = other.replace(
        "uid: u1, labels: {org: empire}",
        "uid: u1, labels: {org: rebel}",
    );
    assert_ne!(gone, other);
    c.reconcile(&inputs(&gone), ctx(false)).await.unwrap();
    assert_eq!(c.maps().egress_syncs, 2);
    assert!(c.maps().egress.is_empty());
}

/// With the gateway off, a policy is reported as not enforced (never silently ignored); the
/// positive control is the test above, where the same policy has no condition.
#[tokio::test]
async fn a_policy_without_the_gateway_on_is_reported() {
    let seed = include_str!("../../../configs/seeds/seed-000-egress-gateway.yaml");
    let mut c = controller(FakeMaps::default());
    c.reconcile(&inputs(&format!("{BASE}{EGRESS}{seed}")), ctx(true))
        .await
        .unwrap();
    let conds = c.conditions();
    assert_eq!(conds.len(), 1, "{conds:?}");
    assert_eq!(
        conds[0].condition.type_,
        egressgw::conditions::GATEWAY_DISABLED
    );
    assert_eq!(
        conds[0].object.as_ref().map(|o| o.name.as_str()),
        Some("remote-outpost")
    );
    assert!(c.maps().egress.is_empty());
    assert_eq!(c.maps().egress_tunnel, None);
}
