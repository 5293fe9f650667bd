//! Benchmark B, forwarding: connections/s, requests/s and UDP request/response pairs/s through
//! one node namespace, every mode with the same load generator and server, in the same
//! invocation, interleaved round by round (each (round, mode) in a freshly built topology).
//!
//! Modes: `direct` (0: the client talks to the backends' own addresses, routed through the node
//! without any load balancer: the harness's ceiling), `rackd` (1), `iptables` (2: kube-proxy's
//! rules for one LoadBalancer Service, `externalTrafficPolicy: Cluster`, so DNAT + conntrack +
//! MASQUERADE exactly as kube-proxy does it), `iptables-local` (2b: the same with
//! `externalTrafficPolicy: Local`, DNAT + conntrack without SNAT, rackd's case for local
//! backends), `ipvs` (3). Masquerade: `masq-none` (ceiling: routed, no NAT), `masq-iptables`
//! (ip-masq-agent's rules), `masq-rackd`. Egress gateway (issue 17, two nodes): `egress-none`
//! (ceiling: routed over both nodes, no NAT, no tunnel), `egress-rackd` (the pod's traffic
//! tunnelled to the gateway node, SNATed there to its external address, replies tunnelled
//! back).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cpu::{self, Snapshot};
use crate::error::{Error, Result};
use crate::exec::{Scratch, output_in_netns, run_in_netns};
use crate::kubeproxy::{self, Sync};
use crate::loadgen::{self, LoadConfig, LoadResult, Test};
use crate::machine::{Meta, loadavg};
use crate::model::{Policy, Proto, ServiceSpec, Shape, Workload};
use crate::program::{Skipped, save};
use crate::rackd;
use crate::server::{self, Server, ServerStats};
use crate::stats::Spread;
use crate::topo::{
    CLUSTER_IP, EGRESS_EXTERNAL_DEV, EGRESS_GATEWAY_NODE, EGRESS_IP, EGRESS_POD,
    EGRESS_SERVER_CIDR, EGRESS_SOURCE_NODE, EGRESS_UNDERLAY_DEV, Kind, Lab, POD_CIDR, VIP,
    VIP_PORT,
};

/// A forwarding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// (0) No load balancer: the ceiling.
    Direct,
    /// (1) rackd's programs, both backends local (DNAT, no SNAT).
    Rackd,
    /// (1b) rackd's programs, both backends remote (externalTrafficPolicy Cluster: DNAT and
    /// SNAT to the node's address): the same translation kube-proxy's rules do in `iptables`.
    RackdSnat,
    /// (2) kube-proxy's iptables rules, externalTrafficPolicy Cluster.
    Iptables,
    /// (2b) kube-proxy's iptables rules, externalTrafficPolicy Local.
    IptablesLocal,
    /// (3) IPVS.
    Ipvs,
    /// Masquerade ceiling: routed, no NAT.
    MasqNone,
    /// ip-masq-agent's iptables MASQUERADE.
    MasqIptables,
    /// rackd's BPF masquerade.
    MasqRackd,
    /// Egress gateway ceiling: source node and gateway node routing, no NAT, no tunnel.
    EgressNone,
    /// rackd's egress gateway: VXLAN to the gateway node, SNAT to its egress address there.
    EgressRackd,
}

impl Mode {
    /// Name in results.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Rackd => "rackd",
            Mode::RackdSnat => "rackd-snat",
            Mode::Iptables => "iptables",
            Mode::IptablesLocal => "iptables-local",
            Mode::Ipvs => "ipvs",
            Mode::MasqNone => "masq-none",
            Mode::MasqIptables => "masq-iptables",
            Mode::MasqRackd => "masq-rackd",
            Mode::EgressNone => "egress-none",
            Mode::EgressRackd => "egress-rackd",
        }
    }
    fn kind(self) -> Kind {
        match self {
            Mode::MasqNone | Mode::MasqIptables | Mode::MasqRackd => Kind::Masquerade,
            Mode::EgressNone | Mode::EgressRackd => Kind::Egress,
            _ => Kind::Service,
        }
    }
    /// The mode ratios are taken against.
    pub fn ceiling(self) -> Mode {
        match self.kind() {
            Kind::Service => Mode::Direct,
            Kind::Masquerade => Mode::MasqNone,
            Kind::Egress => Mode::EgressNone,
        }
    }
    /// Whether the `flows` test runs in this mode: only where nothing SNATs. Behind a SNAT to
    /// one address a backend can be reached by at most ~64k flows at once (one per source
    /// port), and closed flows stay in the tables for seconds (10 s in conntrack's CLOSE
    /// state), so a flood of new flows exhausts the ports within a second and the test would
    /// measure exhaustion, not forwarding. The like-for-like pair is `rackd` against
    /// `iptables-local`, with `direct` as the ceiling.
    pub fn runs_flows(self) -> bool {
        matches!(
            self,
            Mode::Direct | Mode::Rackd | Mode::IptablesLocal | Mode::Ipvs
        )
    }
    /// The iptables mode ratios are also taken against (none for the egress gateway: no
    /// iptables equivalent is measured).
    pub fn iptables(self) -> Option<Mode> {
        match self.kind() {
            Kind::Service => Some(Mode::Iptables),
            Kind::Masquerade => Some(Mode::MasqIptables),
            Kind::Egress => None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardConfig {
    /// Modes, in the order run within a round.
    pub modes: Vec<Mode>,
    /// Tests run in each mode.
    pub tests: Vec<Test>,
    /// Rounds (every mode once per round).
    pub rounds: usize,
    /// Measured seconds per test.
    pub duration_s: f64,
    /// Unrecorded warm-up seconds before each test.
    pub warmup_s: f64,
    /// Concurrent load generator workers.
    pub workers: usize,
    /// Server threads per backend (TCP; UDP gets half).
    pub server_threads: usize,
    /// CPUs for the generator's workers.
    pub client_cpus: Vec<usize>,
    /// CPUs for the servers' threads.
    pub server_cpus: Vec<usize>,
    /// Services in the iptables/IPVS/rackd tables (the measured one is in the middle of
    /// kube-proxy's KUBE-SERVICES list; the others are synthetic 10-backend Services).
    pub services_loaded: u32,
    /// Per-operation timeout, seconds.
    pub timeout_s: f64,
}

/// One measured test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardRun {
    /// Round index.
    pub round: usize,
    /// Mode name.
    pub mode: String,
    /// Test name.
    pub test: String,
    /// The generator's figures.
    pub load: LoadResult,
    /// Machine CPU over the test (/proc/stat, all CPUs).
    pub cpu: cpu::Delta,
    /// Busy CPU microseconds per operation (generator + server + node + foreign load).
    pub busy_us_per_op: f64,
    /// Softirq microseconds per operation (tick-sampled).
    pub softirq_us_per_op: f64,
    /// Server statistics per backend.
    pub servers: Vec<ServerStats>,
    /// 1-minute load average at the start of the test.
    pub load1: f64,
    /// `egress-rackd` only: the datapath's counters over the test on both nodes (the proof
    /// that the traffic took the egress path, and its drops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressRunCounters>,
}

/// The egress gateway's counters of one node over one test (`datapath::lb::EgressCounters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressCount {
    /// Packets encapsulated to the gateway node.
    pub tunnelled: u64,
    /// Packets SNATed to the egress address.
    pub snat: u64,
    /// Replies sent back through the tunnel.
    pub reply_tunnelled: u64,
    /// Drops: no gateway.
    pub drop_no_gateway: u64,
    /// Drops: egress address unknown.
    pub drop_no_egress_ip: u64,
    /// Drops: fragments, protocols without ports.
    pub drop_unsupported: u64,
    /// Drops: NAT failed (port exhaustion, rewrite).
    pub drop_nat_failed: u64,
    /// Drops: tunnel helpers failed.
    pub drop_tunnel_failed: u64,
}

impl EgressCount {
    fn of(c: &datapath::lb::EgressCounters) -> Self {
        Self {
            tunnelled: c.tunnelled,
            snat: c.snat,
            reply_tunnelled: c.reply_tunnelled,
            drop_no_gateway: c.drop_no_gateway,
            drop_no_egress_ip: c.drop_no_egress_ip,
            drop_unsupported: c.drop_unsupported,
            drop_nat_failed: c.drop_nat_failed,
            drop_tunnel_failed: c.drop_tunnel_failed,
        }
    }
    fn minus(&self, b: &Self) -> Self {
        Self {
            tunnelled: self.tunnelled.saturating_sub(b.tunnelled),
            snat: self.snat.saturating_sub(b.snat),
            reply_tunnelled: self.reply_tunnelled.saturating_sub(b.reply_tunnelled),
            drop_no_gateway: self.drop_no_gateway.saturating_sub(b.drop_no_gateway),
            drop_no_egress_ip: self.drop_no_egress_ip.saturating_sub(b.drop_no_egress_ip),
            drop_unsupported: self.drop_unsupported.saturating_sub(b.drop_unsupported),
            drop_nat_failed: self.drop_nat_failed.saturating_sub(b.drop_nat_failed),
            drop_tunnel_failed: self.drop_tunnel_failed.saturating_sub(b.drop_tunnel_failed),
        }
    }
}

/// Both nodes' egress counters and load balancer drops over one test.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRunCounters {
    /// The source node.
    pub source: EgressCount,
    /// The gateway node.
    pub gateway: EgressCount,
    /// The load balancer's drops by reason on the source node (non-zero only).
    pub source_drops: BTreeMap<String, u64>,
    /// The same on the gateway node.
    pub gateway_drops: BTreeMap<String, u64>,
}

/// A reading of the counters, to subtract.
struct EgressReading {
    counts: Vec<EgressCount>,
    drops: Vec<BTreeMap<String, u64>>,
}

fn egress_reading(g: &rackd::EgressGuard) -> Result<EgressReading> {
    Ok(EgressReading {
        counts: g.counters()?.iter().map(EgressCount::of).collect(),
        drops: g
            .drops()?
            .into_iter()
            .map(|v| v.into_iter().collect())
            .collect(),
    })
}

fn egress_delta(after: &EgressReading, before: &EgressReading) -> EgressRunCounters {
    let count = |i: usize| {
        let b = before.counts.get(i).copied().unwrap_or_default();
        after.counts.get(i).map(|a| a.minus(&b)).unwrap_or_default()
    };
    let drops = |i: usize| -> BTreeMap<String, u64> {
        let empty = BTreeMap::new();
        let b = before.drops.get(i).unwrap_or(&empty);
        after
            .drops
            .get(i)
            .unwrap_or(&empty)
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(b.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    EgressRunCounters {
        source: count(0),
        gateway: count(1),
        source_drops: drops(0),
        gateway_drops: drops(1),
    }
}

/// Medians per mode and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardSummary {
    /// Mode name.
    pub mode: String,
    /// Test name.
    pub test: String,
    /// Operations per second over the rounds.
    pub ops_per_s: Spread,
    /// This mode's median divided by its ceiling's (direct or masq-none).
    pub ratio_to_ceiling: Option<f64>,
    /// This mode's median divided by iptables' (or masq-iptables') for the same test.
    pub ratio_to_iptables: Option<f64>,
    /// Median busy CPU µs per operation.
    pub busy_us_per_op: f64,
    /// That minus the ceiling's: the load balancer's CPU per operation.
    pub lb_us_per_op: Option<f64>,
    /// Median p50 / p99 latency over the rounds, µs.
    pub p50_us: f64,
    /// Median p99.
    pub p99_us: f64,
    /// Failed operations over all rounds.
    pub errors: u64,
}

/// The results file of one forwarding run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardReport {
    /// Always `forwarding`.
    pub bench: String,
    /// Where and when.
    pub meta: Meta,
    /// What.
    pub config: ForwardConfig,
    /// Every measured test.
    pub runs: Vec<ForwardRun>,
    /// Medians.
    pub summary: Vec<ForwardSummary>,
    /// Modes that could not run here.
    pub skipped: Vec<Skipped>,
}

/// The measured Service's TCP and UDP ports with the lab's backends as endpoints.
fn measured(lab: &Lab, policy: Policy) -> Vec<ServiceSpec> {
    let eps: Vec<SocketAddrV4> = lab
        .backend_addrs
        .iter()
        .map(|a| SocketAddrV4::new(*a, server::PORT))
        .collect();
    [(Proto::Tcp, "http"), (Proto::Udp, "udp")]
        .into_iter()
        .map(|(proto, port)| ServiceSpec {
            port_name: format!("bench/fwd:{port}"),
            cluster_ip: CLUSTER_IP,
            lb_ips: vec![VIP],
            port: VIP_PORT,
            proto,
            policy,
            endpoints: eps.clone(),
        })
        .collect()
}

/// The specs loaded into the node: `services_loaded - 1` synthetic ones with the measured
/// Service in the middle.
fn loaded(lab: &Lab, policy: Policy, n: u32) -> Result<(Vec<ServiceSpec>, u64)> {
    let mut specs: Vec<ServiceSpec> = Vec::new();
    let extra = n.saturating_sub(1);
    if extra > 0 {
        let w = Workload::new(extra, 10, Shape::LoadBalancer, policy)?;
        specs.extend(w.all());
    }
    let mid = specs.len() / 2;
    for (i, s) in measured(lab, policy).into_iter().enumerate() {
        specs.insert(mid + i, s);
    }
    let endpoints = specs.iter().map(|s| s.endpoints.len() as u64).sum();
    Ok((specs, endpoints))
}

fn restore(lab: &Lab, text: &str, noflush: bool) -> Result<()> {
    let scratch = Scratch::new()?;
    let f = scratch.write("rules", text)?;
    let mut argv = vec!["iptables-nft-restore"];
    if noflush {
        argv.push("--noflush");
    }
    run_in_netns(&lab.node.path(), &argv, &f, &scratch).map(drop)
}

const MASQ_AGENT_RULES: &str = "*nat\n:IP-MASQ-AGENT - [0:0]\n\
-A POSTROUTING -m comment --comment \"ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL \
destination traffic to our custom IP-MASQ-AGENT chain\" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT\n\
-A IP-MASQ-AGENT -d 169.254.0.0/16 -m comment --comment \"ip-masq-agent: local traffic is not \
subject to MASQUERADE\" -j RETURN\n\
-A IP-MASQ-AGENT -d 10.244.0.0/16 -m comment --comment \"ip-masq-agent: local traffic is not \
subject to MASQUERADE\" -j RETURN\n\
-A IP-MASQ-AGENT -m comment --comment \"ip-masq-agent: outbound traffic is subject to MASQUERADE \
(must be last in chain)\" -j MASQUERADE\nCOMMIT\n";

/// Programs `mode` into the lab's node; the returned guard (rackd) must live for the test.
fn setup(mode: Mode, lab: &Lab, cfg: &ForwardConfig) -> Result<Option<rackd::Guard>> {
    match mode {
        Mode::Direct | Mode::MasqNone | Mode::EgressNone => Ok(None),
        Mode::EgressRackd => {
            let gw = lab
                .gateway
                .as_ref()
                .ok_or_else(|| Error::Config("egress run without a gateway node".into()))?;
            let g = rackd::attach_egress(&egress_nodes(lab, gw)?, POD_CIDR)?;
            Ok(Some(Box::new(g)))
        }
        Mode::Iptables | Mode::IptablesLocal => {
            let policy = if mode == Mode::Iptables {
                Policy::Cluster
            } else {
                Policy::Local
            };
            let (specs, eps) = loaded(lab, policy, cfg.services_loaded)?;
            restore(lab, &kubeproxy::jump_rules().text, true)?;
            let input = kubeproxy::restore_input(specs.into_iter(), eps, Sync::Full);
            restore(lab, &input.text, true)?;
            Ok(None)
        }
        Mode::MasqIptables => restore(lab, MASQ_AGENT_RULES, true).map(|()| None),
        Mode::Ipvs => {
            if let Err(e) = output_in_netns(&lab.node, &["ipvsadm", "-L", "-n"]) {
                return Err(Error::Unavailable(format!("IPVS not usable here: {e}")));
            }
            // IPVS only handles packets addressed to a local address.
            lab.node.addr_add("lo", &format!("{VIP}/32"))?;
            let (specs, _) = loaded(lab, Policy::Cluster, cfg.services_loaded)?;
            let (text, _) = crate::ipvs::restore_input(specs.into_iter());
            let scratch = Scratch::new()?;
            let f = scratch.write("ipvs", &text)?;
            run_in_netns(&lab.node.path(), &["ipvsadm", "-R"], &f, &scratch)?;
            Ok(None)
        }
        Mode::Rackd | Mode::RackdSnat | Mode::MasqRackd => {
            let pins = Scratch::new()?;
            let backends: Vec<SocketAddrV4> = lab
                .backend_addrs
                .iter()
                .map(|a| SocketAddrV4::new(*a, server::PORT))
                .collect();
            let masq = mode == Mode::MasqRackd;
            let dev = if masq {
                lab.node_backend_devs.first().copied().unwrap_or("nx0")
            } else {
                lab.node_client_dev
            };
            let g = rackd::attach_forwarding(&rackd::ForwardingSetup {
                node: &lab.node,
                device: dev,
                device_addr: lab.node_client_addr,
                backend_devices: &lab.node_backend_devs,
                vip: SocketAddrV4::new(VIP, VIP_PORT),
                backends: &backends,
                remote_backends: mode == Mode::RackdSnat,
                masquerade_pod_cidr: masq.then_some(POD_CIDR),
                pin_root: pins.path(),
            })?;
            Ok(Some(Box::new((g, pins))))
        }
    }
}

/// What rackd/src/svclb/egress.rs' render writes on each node for a pod on the source node
/// whose policy's active gateway is the other node (destination: the server's subnet): the
/// source node tunnels to the gateway node, which SNATs to its external address and sends
/// replies back to the source node.
pub fn egress_nodes<'a>(lab: &'a Lab, gw: &'a netlab::Netns) -> Result<[rackd::EgressNode<'a>; 2]> {
    let dst: ipnet::IpNet = EGRESS_SERVER_CIDR
        .parse()
        .map_err(|e| Error::Config(format!("{EGRESS_SERVER_CIDR}: {e}")))?;
    let rule = |action| datapath::lb::EgressRule {
        source: IpAddr::V4(EGRESS_POD),
        destination: dst,
        action,
    };
    Ok([
        rackd::EgressNode {
            ns: &lab.node,
            devices: &[EGRESS_UNDERLAY_DEV],
            rules: vec![rule(datapath::lb::EgressAction::Tunnel {
                gateway: IpAddr::V4(EGRESS_GATEWAY_NODE),
            })],
        },
        rackd::EgressNode {
            ns: gw,
            devices: &[EGRESS_UNDERLAY_DEV, EGRESS_EXTERNAL_DEV],
            rules: vec![rule(datapath::lb::EgressAction::Snat {
                egress_ip: Some(IpAddr::V4(EGRESS_IP)),
                reply_to: Some(IpAddr::V4(EGRESS_SOURCE_NODE)),
            })],
        },
    ])
}

fn targets(mode: Mode, lab: &Lab) -> Vec<SocketAddr> {
    match mode {
        Mode::Direct
        | Mode::MasqNone
        | Mode::MasqIptables
        | Mode::MasqRackd
        | Mode::EgressNone
        | Mode::EgressRackd => lab
            .backend_addrs
            .iter()
            .map(|a| SocketAddr::V4(SocketAddrV4::new(*a, server::PORT)))
            .collect(),
        _ => vec![SocketAddr::V4(SocketAddrV4::new(VIP, VIP_PORT))],
    }
}

fn load(
    lab: &Lab,
    cfg: &ForwardConfig,
    test: Test,
    tg: &[SocketAddr],
    secs: f64,
) -> Result<LoadResult> {
    let lc = LoadConfig {
        test,
        targets: tg.to_vec(),
        workers: cfg.workers,
        duration: Duration::from_secs_f64(secs),
        cpus: cfg.client_cpus.clone(),
        timeout: Duration::from_secs_f64(cfg.timeout_s),
        flow_sources: lab.flow_sources,
    };
    lab.client.enter(|| loadgen::run(&lc))?
}

fn one_mode(
    mode: Mode,
    round: usize,
    cfg: &ForwardConfig,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ForwardRun>> {
    let lab = match mode.kind() {
        Kind::Service => Lab::service(2)?,
        Kind::Masquerade => Lab::masquerade(mode == Mode::MasqNone)?,
        Kind::Egress => Lab::egress(mode == Mode::EgressNone)?,
    };
    let guard = setup(mode, &lab, cfg)?;
    let egress_guard = guard
        .as_ref()
        .and_then(|g| g.downcast_ref::<rackd::EgressGuard>());
    let tg = targets(mode, &lab);
    let tcp_threads = cfg.server_threads.max(cfg.workers + 2);
    let mut out = Vec::new();
    for &test in &cfg.tests {
        if test == Test::Flows && !mode.runs_flows() {
            continue;
        }
        let servers: Vec<Server> = lab
            .backends
            .iter()
            .map(|b| {
                Server::start(
                    b,
                    tcp_threads,
                    (cfg.server_threads / 2).max(1),
                    &cfg.server_cpus,
                )
            })
            .collect::<Result<_>>()?;
        if cfg.warmup_s > 0.0 {
            load(&lab, cfg, test, &tg, cfg.warmup_s)?;
        }
        let before: Vec<ServerStats> = servers.iter().map(Server::snapshot).collect();
        let load1 = loadavg()[0];
        let e0 = egress_guard.map(egress_reading).transpose()?;
        let s0 = Snapshot::now();
        let r = load(&lab, cfg, test, &tg, cfg.duration_s)?;
        let c = s0.delta(&Snapshot::now());
        let egress = match (egress_guard, e0) {
            (Some(g), Some(b)) => Some(egress_delta(&egress_reading(g)?, &b)),
            _ => None,
        };
        let stats: Vec<ServerStats> = servers
            .into_iter()
            .zip(before)
            .map(|(s, b)| {
                let a = s.stop();
                ServerStats {
                    accepted: a.accepted - b.accepted,
                    requests: a.requests - b.requests,
                    datagrams: a.datagrams - b.datagrams,
                    cpu_s: a.cpu_s,
                    last_tcp_peer: a.last_tcp_peer,
                    last_udp_peer: a.last_udp_peer,
                }
            })
            .collect();
        let per = |x: f64| {
            if r.ops > 0 {
                x * 1e6 / r.ops as f64
            } else {
                0.0
            }
        };
        log(&format!(
            "  {:>14} {:>10}: {:>9.0} ops/s  p50 {:>6.0} µs  p99 {:>7.0} µs  busy {:>5.1} µs/op  errors {}",
            mode.name(),
            test.name(),
            r.ops_per_s,
            r.latency.p50_us,
            r.latency.p99_us,
            per(c.busy_s),
            r.errors.values().sum::<u64>()
        ));
        out.push(ForwardRun {
            round,
            mode: mode.name().into(),
            test: test.name().into(),
            busy_us_per_op: per(c.busy_s),
            softirq_us_per_op: per(c.softirq_s),
            cpu: c,
            load: r,
            servers: stats,
            load1,
            egress,
        });
    }
    Ok(out)
}

/// Runs the forwarding benchmark.
pub fn run(cfg: &ForwardConfig, log: &mut dyn FnMut(&str)) -> Result<ForwardReport> {
    let mut meta = Meta::collect();
    let mut runs = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    for round in 0..cfg.rounds {
        log(&format!("round {}/{}", round + 1, cfg.rounds));
        for &mode in &cfg.modes {
            if skipped.iter().any(|s| s.system == mode.name()) {
                continue;
            }
            match one_mode(mode, round, cfg, log) {
                Ok(mut v) => runs.append(&mut v),
                Err(Error::Unavailable(reason)) => {
                    log(&format!("  {}: skipped: {reason}", mode.name()));
                    skipped.push(Skipped {
                        system: mode.name().into(),
                        reason,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    meta.finish();
    let summary = summarise(cfg, &runs);
    Ok(ForwardReport {
        bench: "forwarding".into(),
        meta,
        config: cfg.clone(),
        runs,
        summary,
        skipped,
    })
}

fn med(v: &[f64]) -> f64 {
    Spread::of(v).map_or(0.0, |s| s.median)
}

fn summarise(cfg: &ForwardConfig, runs: &[ForwardRun]) -> Vec<ForwardSummary> {
    let pick = |mode: &str, test: &str| -> Vec<&ForwardRun> {
        runs.iter()
            .filter(|r| r.mode == mode && r.test == test)
            .collect()
    };
    let mut out = Vec::new();
    for &mode in &cfg.modes {
        for &test in &cfg.tests {
            let rs = pick(mode.name(), test.name());
            let Some(ops) = Spread::of(&rs.iter().map(|r| r.load.ops_per_s).collect::<Vec<_>>())
            else {
                continue;
            };
            let median_of = |m: Mode| {
                Spread::of(
                    &pick(m.name(), test.name())
                        .iter()
                        .map(|r| r.load.ops_per_s)
                        .collect::<Vec<_>>(),
                )
                .map(|s| s.median)
                .filter(|x| *x > 0.0)
            };
            let busy = med(&rs.iter().map(|r| r.busy_us_per_op).collect::<Vec<_>>());
            let ceiling_busy = {
                let c = pick(mode.ceiling().name(), test.name());
                (!c.is_empty())
                    .then(|| med(&c.iter().map(|r| r.busy_us_per_op).collect::<Vec<_>>()))
            };
            out.push(ForwardSummary {
                mode: mode.name().into(),
                test: test.name().into(),
                ratio_to_ceiling: median_of(mode.ceiling()).map(|c| ops.median / c),
                ratio_to_iptables: mode.iptables().and_then(median_of).map(|c| ops.median / c),
                busy_us_per_op: busy,
                lb_us_per_op: ceiling_busy.map(|c| busy - c),
                p50_us: med(&rs.iter().map(|r| r.load.latency.p50_us).collect::<Vec<_>>()),
                p99_us: med(&rs.iter().map(|r| r.load.latency.p99_us).collect::<Vec<_>>()),
                errors: rs.iter().map(|r| r.load.errors.values().sum::<u64>()).sum(),
                ops_per_s: ops,
            });
        }
    }
    out
}

/// Writes the report as JSON.
pub fn save_report(r: &ForwardReport, path: &std::path::Path) -> Result<()> {
    save(r, path)
}
