//! Mode (1): rackd's own code. Programming runs the daemon's service controller
//! (`rackd::svclb::ServiceLbController` over `datapath::lb::ServiceLb`) on the Services as
//! Kubernetes objects, from parsing their YAML to the last map write: the same path a
//! configuration change takes in the daemon (source parse, the last-good store, render,
//! planner with Maglev, ordered map writes). Forwarding programs rackd's eBPF programs on the
//! node's device directly (what the controller would write for that one Service).

use std::any::Any;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath::lb::{
    BackendId, BackendValue, DeviceAddrs, Frontend, L4Proto, LbConfig, LbSizes, MasqConfig,
    ServiceEntry, ServiceLb,
};
use rackd::controller::{Context, Controller};
use rackd::svclb::ServiceLbController;
use rackd::svclb::maps::DatapathMaps;
use rackd_model::{CheckOptions, SourceChange, SourceUpdate, Store, parse_documents};
use rackd_services::maglev::{HashSeed, MaglevBackend, MaglevConfig, TableSize, lookup_table};

use crate::error::{Error, Result};
use crate::model::{Policy, ServiceSpec, Workload};

/// A programmed rackd datapath; dropping it must detach the programs and remove the pins.
pub type Guard = Box<dyn Any>;

/// Timings of one programming run of rackd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RackdTiming {
    /// Config change to maps ready: from handing the desired Services to the controller code to
    /// the last map write returning (Maglev tables included).
    pub total: Duration,
}

/// The node name the Services' endpoints are on (every backend local, as in the other
/// systems' runs).
const NODE: &str = "bench-node";

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("rackd: {what}: {e}"))
}

/// `svc-<i>` in namespace `bench` as Kubernetes objects: the Service (LoadBalancer, its
/// address in status, as LB-IPAM or another controller wrote it) and its EndpointSlice.
fn service_yaml(out: &mut String, i: u32, s: &ServiceSpec) {
    let policy = match s.policy {
        Policy::Cluster => "Cluster",
        Policy::Local => "Local",
    };
    let ingress: Vec<String> = s.lb_ips.iter().map(|ip| format!("{{ip: {ip}}}")).collect();
    let _ = write!(
        out,
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: bench}}\n\
         spec:\n  type: LoadBalancer\n  externalTrafficPolicy: {policy}\n  clusterIP: {}\n  \
         ports: [{{name: http, port: {}, protocol: TCP}}]\n\
         status: {{loadBalancer: {{ingress: [{}]}}}}\n",
        s.cluster_ip,
        s.port,
        ingress.join(", ")
    );
    slice_yaml(out, i, s);
}

fn slice_yaml(out: &mut String, i: u32, s: &ServiceSpec) {
    let _ = write!(
        out,
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: svc-{i}-x, namespace: bench, labels: {{kubernetes.io/service-name: svc-{i}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {}, protocol: TCP}}]\nendpoints:\n",
        s.endpoints.first().map_or(8080, |e| e.port())
    );
    for e in &s.endpoints {
        let _ = writeln!(
            out,
            "- {{addresses: [{}], nodeName: {NODE}, conditions: {{ready: true}}}}",
            e.ip()
        );
    }
}

/// The daemon's pieces for one run; dropping it removes the pins.
struct Programmed {
    ctl: ServiceLbController<DatapathMaps>,
    store: Store,
    rt: tokio::runtime::Runtime,
    pin_root: PathBuf,
}

impl Drop for Programmed {
    fn drop(&mut self) {
        let _ = datapath::uninstall(&self.pin_root);
        let _ = std::fs::remove_dir(&self.pin_root);
    }
}

type Inputs = (
    Arc<rackd::config::ConfigState>,
    Arc<rackd::lbipam_ctl::LbStatus>,
    Arc<[rackd::l2::desired::Device]>,
    Arc<rackd::bgp::render::HostInfo>,
    Arc<rackd::svclb::masq::MasqState>,
    Arc<rackd::svclb::egress::EgressHolders>,
);

impl Programmed {
    /// One source update through the store, then one controller run: what the daemon does
    /// when a configuration file changes.
    fn apply(&mut self, text: &str) -> Result<()> {
        let parsed = parse_documents("bench.yaml", text);
        if let Some(e) = parsed.errors.first() {
            return Err(err("generated YAML", e));
        }
        self.store.apply(vec![SourceUpdate {
            source: Arc::from("bench.yaml"),
            change: SourceChange::Update {
                upserts: parsed.objects,
                deletes: Vec::new(),
                errors: Vec::new(),
                duplicates: Vec::new(),
            },
        }]);
        let cfg = rackd::config::ConfigState {
            loaded: true,
            snapshot: self.store.snapshot().clone(),
            ..Default::default()
        };
        let lb = rackd::lbipam_ctl::LbStatus {
            ready: true,
            settled: true,
            ..Default::default()
        };
        let inputs: Inputs = (
            Arc::new(cfg),
            Arc::new(lb),
            Arc::from(Vec::new()),
            Arc::new(rackd::bgp::render::HostInfo::default()),
            Arc::new(rackd::svclb::masq::MasqState::default()),
            Arc::new(rackd::svclb::egress::EgressHolders::default()),
        );
        let ctx = Context {
            full: false,
            now: tokio::time::Instant::now(),
        };
        let ctl = &mut self.ctl;
        self.rt
            .block_on(async { ctl.reconcile(&inputs, ctx).await })
            .map_err(|e| err("reconcile", format!("{e:#}")))?;
        Ok(())
    }
}

/// A unique pin root on bpffs (the datapath refuses anything else).
fn pin_root() -> PathBuf {
    PathBuf::from("/sys/fs/bpf").join(netlab::names::unique("svc-bench-rackd"))
}

/// Loads every Service of `w` through rackd's service controller into a fresh `ServiceLb`
/// (opened before the timer, as a daemon does at start) and returns the time from the
/// configuration's text to the last map write (parse, store, render, plan with Maglev tables,
/// writes), plus what [`program_change`] needs.
pub fn program_full(w: &Workload, lut_size: u32, _scratch: &Path) -> Result<(RackdTiming, Guard)> {
    let table_size = TableSize::new(u64::from(lut_size)).map_err(|e| err("table size", e))?;
    let maglev = MaglevConfig {
        table_size,
        seed: HashSeed::default(),
    };
    // Room for every backend plus the churn of a change (a new backend is written before the
    // one it replaces is deleted), as an operator sizes --bpf-lb-map-max.
    let map_max = u32::try_from(w.endpoints())
        .unwrap_or(u32::MAX)
        .max(w.services.saturating_mul(2))
        .saturating_add(1024)
        .max(65_536);
    let cfg = LbConfig {
        maglev_table_size: lut_size,
        hash_seed: maglev.seed.jhash0,
        sizes: LbSizes::for_map_max(map_max, lut_size),
        ..LbConfig::default()
    };
    let root = pin_root();
    let lb = ServiceLb::open_or_create(&root, &cfg).map_err(|e| err("opening the datapath", e))?;
    let (ctl, _status) =
        ServiceLbController::new(NODE, &[], DatapathMaps { lb }, maglev, None, None)
            .map_err(|e| err("controller", e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| err("runtime", e))?;
    let mut p = Programmed {
        ctl,
        store: Store::new(CheckOptions::default()),
        rt,
        pin_root: root,
    };
    let mut text = String::with_capacity(w.services as usize * 400);
    for (i, s) in (0..).zip(w.all()) {
        service_yaml(&mut text, i, &s);
    }
    let t = Instant::now();
    p.apply(&text)?;
    let total = t.elapsed();
    // The positive control (untimed): every Service is in the maps with all its backends.
    let lb = &p.ctl.maps().lb;
    let services = lb.services().map_err(|e| err("reading back", e))?;
    let backends = lb.backends().map_err(|e| err("reading back", e))?.len() as u64;
    if services.len() != w.services as usize || backends != w.endpoints() {
        return Err(err(
            "reading back",
            format!(
                "{} frontends and {backends} backends programmed, {} and {} expected",
                services.len(),
                w.services,
                w.endpoints()
            ),
        ));
    }
    Ok((RackdTiming { total }, Box::new(p)))
}

/// With `guard` from [`program_full`]: Service `w.changed_index()`'s EndpointSlice gets
/// `w.service_changed(..)`'s endpoints (one backend replaced), as a file edit would bring it:
/// the changed document parsed, the store's delta, the controller's incremental run (only
/// that Service rendered and planned). Returns config change to maps ready.
pub fn program_change(w: &Workload, guard: &mut Guard) -> Result<RackdTiming> {
    let p = guard
        .downcast_mut::<Programmed>()
        .ok_or_else(|| err("guard", "not rackd's"))?;
    let i = w.changed_index();
    let mut text = String::new();
    slice_yaml(&mut text, i, &w.service_changed(i));
    let t = Instant::now();
    p.apply(&text)?;
    let total = t.elapsed();
    // The positive control (untimed): the new backend is in the maps.
    let new = w.service_changed(i);
    let first = new.endpoints.first().map(|e| IpAddr::V4(*e.ip()));
    let found = p
        .ctl
        .maps()
        .lb
        .backends()
        .map_err(|e| err("reading back", e))?
        .iter()
        .any(|(_, b)| Some(b.addr) == first);
    if !found {
        return Err(err(
            "reading back",
            "the changed Service's new backend is not in the maps",
        ));
    }
    Ok(RackdTiming { total })
}

/// Where the forwarding topology needs rackd's programs.
#[derive(Debug, Clone)]
pub struct ForwardingSetup<'a> {
    /// The node's namespace (programs are attached from inside it).
    pub node: &'a netlab::Netns,
    /// The node's client-facing device (`--devices`): ingress gets `rackd_lb_in`, egress
    /// `rackd_lb_out`.
    pub device: &'a str,
    /// The node's address on that device (for SNAT when a backend is remote).
    pub device_addr: Ipv4Addr,
    /// The node's devices towards the backends (attach too if the design needs the reply path
    /// there: replies from local backends enter the node on these).
    pub backend_devices: &'a [&'a str],
    /// The frontend (VIP:port, TCP and UDP).
    pub vip: SocketAddrV4,
    /// The backends.
    pub backends: &'a [SocketAddrV4],
    /// Program the backends as remote ones (`local: false`, externalTrafficPolicy Cluster):
    /// DNAT plus SNAT to the node's address, as rackd treats a backend on another node and
    /// kube-proxy every backend of an external client's flow. The programs then also go on
    /// `backend_devices` (`--devices`), where the translated replies come back in.
    pub remote_backends: bool,
    /// For masquerade runs: the pod CIDR whose traffic leaving `device` is SNATed.
    pub masquerade_pod_cidr: Option<&'a str>,
    /// Pin root for this run (unique, removed by the caller).
    pub pin_root: &'a Path,
}

/// The first IPv4 address of `dev` in `node`, if it has one.
fn first_v4(node: &netlab::Netns, dev: &str) -> Result<Option<Ipv4Addr>> {
    Ok(node
        .addrs(dev)?
        .iter()
        .find_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok()))
}

/// Attaches rackd's programs to `setup.device` in the node's namespace and programs one
/// Service (TCP and UDP frontends on the VIP, Maglev over the backends: local ones DNAT
/// without SNAT, as for pods behind the node; remote ones DNAT and SNAT, with the programs on
/// the backend devices too) or, for masquerade runs, BPF masquerade of the pod CIDR to the
/// device's address. The guard's drop detaches and unpins everything.
pub fn attach_forwarding(setup: &ForwardingSetup<'_>) -> Result<Guard> {
    struct Attached {
        pin_root: PathBuf,
    }
    impl Drop for Attached {
        fn drop(&mut self) {
            let _ = datapath::uninstall(&self.pin_root);
            let _ = std::fs::remove_dir(&self.pin_root);
        }
    }
    let root = pin_root();
    let guard = Attached {
        pin_root: root.clone(),
    };
    let ifindex = setup.node.ifindex(setup.device)?;
    // The device's own IPv4 address: the SNAT source (the external server's only way back
    // in masquerade runs).
    let dev_addr = first_v4(setup.node, setup.device)?.unwrap_or(setup.device_addr);
    // The backend devices with their addresses (only used with remote backends).
    let mut backend_devs = Vec::new();
    if setup.remote_backends {
        for dev in setup.backend_devices {
            let addr = first_v4(setup.node, dev)?
                .ok_or_else(|| err("backend device", format!("{dev} has no IPv4 address")))?;
            backend_devs.push((setup.node.ifindex(dev)?, addr));
        }
    }
    let maglev = MaglevConfig::default();
    let m = maglev.table_size.get();
    let cfg = LbConfig {
        maglev_table_size: m,
        hash_seed: maglev.seed.jhash0,
        ..LbConfig::default()
    };
    setup.node.enter(|| -> Result<()> {
        let mut lb =
            ServiceLb::open_or_create(&root, &cfg).map_err(|e| err("opening the datapath", e))?;
        lb.attach(ifindex).map_err(|e| err("attach", e))?;
        lb.set_device(
            ifindex,
            DeviceAddrs {
                v4: Some(dev_addr),
                v6: None,
            },
        )
        .map_err(|e| err("device", e))?;
        if setup.remote_backends {
            for (dev, addr) in &backend_devs {
                lb.attach(*dev).map_err(|e| err("attach", e))?;
                lb.set_device(
                    *dev,
                    DeviceAddrs {
                        v4: Some(*addr),
                        v6: None,
                    },
                )
                .map_err(|e| err("device", e))?;
            }
        }
        if let Some(cidr) = setup.masquerade_pod_cidr {
            let pod: ipnet::IpNet = cidr.parse().map_err(|e| err("pod CIDR", e))?;
            let link_local: ipnet::IpNet =
                "169.254.0.0/16".parse().map_err(|e| err("link-local", e))?;
            lb.set_masquerade(&MasqConfig {
                v4: true,
                v6: false,
                pod_cidrs: vec![pod],
                non_masq: vec![pod, link_local],
            })
            .map_err(|e| err("masquerade", e))?;
            return Ok(());
        }
        for (k, proto) in [L4Proto::Tcp, L4Proto::Udp].into_iter().enumerate() {
            let mut mb = Vec::new();
            for (j, b) in setup.backends.iter().enumerate() {
                let id = u32::try_from(k * 1000 + j + 1).unwrap_or(u32::MAX);
                lb.upsert_backend(
                    BackendId(id),
                    &BackendValue {
                        addr: IpAddr::V4(*b.ip()),
                        port: b.port(),
                        proto,
                        local: !setup.remote_backends,
                    },
                )
                .map_err(|e| err("backend", e))?;
                mb.push(MaglevBackend {
                    key: rackd_services::maglev::hash_string(IpAddr::V4(*b.ip()), b.port(), proto),
                    id,
                    weight: rackd_services::maglev::DEFAULT_WEIGHT,
                });
            }
            let lut = lookup_table(&maglev, &mb).map_err(|e| err("Maglev table", e))?;
            lb.upsert_service(
                &Frontend {
                    addr: IpAddr::V4(*setup.vip.ip()),
                    port: setup.vip.port(),
                    proto,
                },
                &ServiceEntry {
                    id: u32::try_from(k + 1).unwrap_or(1),
                    local_only: false,
                    affinity_timeout: None,
                    lut: &lut,
                    source_ranges: &[],
                },
            )
            .map_err(|e| err("service", e))?;
        }
        Ok(())
    })??;
    Ok(Box::new(guard))
}

/// The daemon's tunnel device (`rackd::daemon::EGRESS_TUNNEL_DEVICE`) and the settings it
/// gives it (`rackd/src/daemon.rs`: Cilium's VXLAN port, VNI 2, one locally administered MAC
/// on every node; private there, mirrored here).
pub const EGRESS_TUNNEL_DEVICE: &str = rackd::daemon::EGRESS_TUNNEL_DEVICE;
/// UDP port of the tunnel device.
pub const EGRESS_TUNNEL_PORT: u16 = 8472;
/// VNI rackd's programs stamp.
pub const EGRESS_TUNNEL_VNI: u32 = 2;
/// The MAC every node gives the tunnel device.
pub const EGRESS_TUNNEL_MAC: [u8; 6] = [0x0a, 0xce, 0x00, 0x00, 0x00, 0x01];

/// One node of the egress gateway runs: its namespace, the devices rackd's programs go on
/// (`--devices`) with their addresses, and its policy map.
#[derive(Debug, Clone)]
pub struct EgressNode<'a> {
    /// The node's namespace.
    pub ns: &'a netlab::Netns,
    /// `--devices`: `rackd_lb_in`/`rackd_lb_out` on each.
    pub devices: &'a [&'a str],
    /// The node's policy map, as `rackd/src/svclb/egress.rs`' render writes it.
    pub rules: Vec<datapath::lb::EgressRule>,
}

/// The egress programs of both nodes (source, gateway), kept open to read the counters;
/// dropping it detaches the programs and removes the pins (the tunnel devices go with the
/// namespaces).
pub struct EgressGuard {
    lbs: Vec<ServiceLb>,
    roots: Vec<PathBuf>,
}

impl std::fmt::Debug for EgressGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressGuard")
            .field("pin_roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Drop for EgressGuard {
    fn drop(&mut self) {
        self.lbs.clear();
        for r in &self.roots {
            let _ = datapath::uninstall(r);
            let _ = std::fs::remove_dir(r);
        }
    }
}

impl EgressGuard {
    /// The egress counters of each node, in the order given to [`attach_egress`].
    pub fn counters(&self) -> Result<Vec<datapath::lb::EgressCounters>> {
        self.lbs
            .iter()
            .map(|lb| lb.egress_counters().map_err(|e| err("egress counters", e)))
            .collect()
    }

    /// The load balancer's drops (reason name, count) of each node, non-zero only.
    pub fn drops(&self) -> Result<Vec<Vec<(String, u64)>>> {
        self.lbs
            .iter()
            .map(|lb| {
                let c = lb.counters().map_err(|e| err("counters", e))?;
                Ok(c.drops
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (format!("{r:?}"), *n))
                    .collect())
            })
            .collect()
    }
}

/// Programs each node as the daemon does with `--kube-proxy-replacement
/// --enable-bpf-masquerade --enable-egress-gateway`: its own collect-metadata VXLAN device made
/// inside its namespace with `rackd_host::tunnel::ensure_vxlan` (loose rp_filter on it, as
/// `rackd/src/daemon.rs` does), rackd's programs in their own pin root on `devices` (each
/// device's address for SNAT), BPF masquerade of `pod_cidr` (the daemon's default
/// non-masquerade list: the pod CIDR and link-local), the tunnel handed to the programs
/// (`set_egress_tunnel`, which attaches `rackd_egw_tunnel` at the device's ingress) and the
/// node's policy map (`sync_egress`).
pub fn attach_egress(nodes: &[EgressNode<'_>], pod_cidr: &str) -> Result<EgressGuard> {
    let mut guard = EgressGuard {
        lbs: Vec::new(),
        roots: Vec::new(),
    };
    let maglev = MaglevConfig::default();
    let cfg = LbConfig {
        maglev_table_size: maglev.table_size.get(),
        hash_seed: maglev.seed.jhash0,
        ..LbConfig::default()
    };
    let pod: ipnet::IpNet = pod_cidr.parse().map_err(|e| err("pod CIDR", e))?;
    let link_local: ipnet::IpNet = "169.254.0.0/16".parse().map_err(|e| err("link-local", e))?;
    for n in nodes {
        let root = pin_root();
        guard.roots.push(root.clone());
        let mut devs = Vec::new();
        for d in n.devices {
            let v4 =
                n.ns.addrs(d)?
                    .iter()
                    .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
                    .next();
            devs.push((n.ns.ifindex(d)?, v4));
        }
        let lb = n.ns.enter(|| -> Result<ServiceLb> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| err("runtime", e))?;
            let spec = rackd_host::VxlanSpec {
                name: EGRESS_TUNNEL_DEVICE.into(),
                port: EGRESS_TUNNEL_PORT,
                mac: rackd_host::MacAddr(EGRESS_TUNNEL_MAC),
                mtu: None,
            };
            let tunnel = rt
                .block_on(rackd_host::tunnel::ensure_vxlan(&spec))
                .map_err(|e| err("tunnel device", e))?;
            rackd_host::tunnel::loose_rp_filter(EGRESS_TUNNEL_DEVICE)
                .map_err(|e| err("rp_filter", e))?;
            let mut lb = ServiceLb::open_or_create(&root, &cfg)
                .map_err(|e| err("opening the datapath", e))?;
            for (ifindex, v4) in &devs {
                lb.attach(*ifindex).map_err(|e| err("attach", e))?;
                lb.set_device(*ifindex, DeviceAddrs { v4: *v4, v6: None })
                    .map_err(|e| err("device", e))?;
            }
            lb.set_masquerade(&MasqConfig {
                v4: true,
                v6: false,
                pod_cidrs: vec![pod],
                non_masq: vec![pod, link_local],
            })
            .map_err(|e| err("masquerade", e))?;
            lb.set_egress_tunnel(Some(datapath::lb::EgressTunnel {
                ifindex: tunnel,
                vni: EGRESS_TUNNEL_VNI,
                mac: EGRESS_TUNNEL_MAC,
            }))
            .map_err(|e| err("egress tunnel", e))?;
            lb.sync_egress(&n.rules)
                .map_err(|e| err("egress policy", e))?;
            // The positive control: the map holds exactly the rules.
            let back = lb.egress_rules().map_err(|e| err("reading back", e))?;
            let mut want = n.rules.clone();
            want.sort_by_key(|r| (r.source, r.destination));
            if back != want {
                return Err(err(
                    "reading back",
                    format!("policy map {back:?}, {want:?} expected"),
                ));
            }
            Ok(lb)
        })??;
        guard.lbs.push(lb);
    }
    Ok(guard)
}
