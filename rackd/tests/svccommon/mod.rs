//! The service datapath's lab: the FRR ToR of `containerlab/tor/frr.conf` (AS 65000, ECMP
//! over both nodes with an L4 hash), two rackd nodes (node1 AS 65001, node2 AS 65002, the
//! copies of `configs/lab`), the lab's four pods (two per node) running [`EchoServer`], and a client
//! behind the ToR, all in network namespaces.
//!
//! ```text
//!  client 10.0.3.2 ── tor ──┬── node1 10.0.1.2 ── lxc1/lxc3 ── deathstar-1 10.1.1.11, -3 10.1.1.13
//!                           └── node2 10.0.2.2 ── lxc2/lxc4 ── deathstar-2 10.1.2.12, -4 10.1.2.14
//! ```
//!
//! The pods are the lab's (`containerlab/rackd-bgp.clab.yml`, `configs/lab/pods.yaml` and
//! `endpointslices.yaml`, used as they are): /32 (/128) addresses and a default route via
//! 10.1.X.1 (fe80::1) on their node's end of the veth, which routes the pod's address to that
//! veth (Cilium's native routing shape). rackd advertises each node's PodCIDR, so the ToR and the client reach
//! every pod directly.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_types)]

use std::fmt::Write as _;
use std::io::BufReader;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netlab::echo::EchoServer;
use netlab::frr::Frr;
use netlab::{LabDir, Netns, Process, veth};
use rackd_api::{Reply, Request};

/// One pod: its namespace, node and addresses.
pub struct Pod {
    pub name: String,
    /// Index into [`SvcLab::nodes`].
    pub node: usize,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub ns: Netns,
}

/// Field order is drop order: the daemons and servers stop first, then FRR, then the
/// namespaces, and the directory goes last.
pub struct SvcLab {
    pub rackd: Vec<Option<Process>>,
    pub servers: Vec<Option<EchoServer>>,
    pub tor: Frr,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Netns>,
    pub client: Netns,
    pub tor_ns: Netns,
    pub cfgs: Vec<PathBuf>,
    pub socks: Vec<PathBuf>,
    pub states: Vec<PathBuf>,
    /// Each node's bpffs pin root (on the host's bpffs, so pins outlive a killed rackd).
    pub pin_roots: Vec<PathBuf>,
    pub dir: LabDir,
}

impl Drop for SvcLab {
    fn drop(&mut self) {
        // The daemons first, then what they pinned (their programs stay attached otherwise).
        for r in &mut self.rackd {
            drop(r.take());
        }
        for p in &self.pin_roots {
            if let Err(e) = datapath::uninstall(p) {
                eprintln!("uninstalling {}: {e}", p.display());
            }
            let _ = std::fs::remove_dir(p);
        }
    }
}

pub const NODE_NAMES: [&str; 2] = ["node1", "node2"];
/// The ToR's client-facing address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 3, 0, 0, 0, 2);
/// deathstar's LoadBalancer addresses from LB-IPAM (configs/lab).
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 200);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xdead, 0xbeef, 0, 0, 0, 0);

pub const T: Duration = Duration::from_secs(3);

impl SvcLab {
    /// Namespaces, addresses, FRR, pods with their servers and a copy of `configs/lab` per
    /// node with the pods and deathstar's EndpointSlices; rackd not started.
    pub fn prepare(prefix: &str) -> SvcLab {
        let dir = LabDir::new(prefix).unwrap();
        let tor_ns = Netns::new("sv-tor").unwrap();
        let client = Netns::new("sv-cl").unwrap();
        let mut nodes = Vec::new();
        for (i, _) in NODE_NAMES.iter().enumerate() {
            let n = Netns::new(&format!("sv-n{}", i + 1)).unwrap();
            veth(&tor_ns, &format!("eth{}", i + 1), &n, "eth0").unwrap();
            n.addr_add("eth0", &format!("10.0.{}.2/24", i + 1)).unwrap();
            n.addr_add("eth0", &format!("fd00:10:0:{}::2/64", i + 1))
                .unwrap();
            tor_ns
                .addr_add(&format!("eth{}", i + 1), &format!("10.0.{}.1/24", i + 1))
                .unwrap();
            tor_ns
                .addr_add(
                    &format!("eth{}", i + 1),
                    &format!("fd00:10:0:{}::1/64", i + 1),
                )
                .unwrap();
            n.route_add(&["10.0.0.0/8", "via", &format!("10.0.{}.1", i + 1)])
                .unwrap();
            n.route_add(&["fd00::/16", "via", &format!("fd00:10:0:{}::1", i + 1)])
                .unwrap();
            n.enable_forwarding().unwrap();
            nodes.push(n);
        }
        veth(&tor_ns, "eth3", &client, "eth0").unwrap();
        tor_ns.addr_add("eth3", "10.0.3.1/24").unwrap();
        tor_ns.addr_add("eth3", "fd00:10:0:3::1/64").unwrap();
        client.addr_add("eth0", "10.0.3.2/24").unwrap();
        client.addr_add("eth0", "fd00:10:0:3::2/64").unwrap();
        client.route_add(&["default", "via", "10.0.3.1"]).unwrap();
        client
            .route_add(&["default", "via", "fd00:10:0:3::1"])
            .unwrap();
        tor_ns.addr_add("lo", "10.0.0.1/32").unwrap();
        tor_ns.addr_add("lo", "fd00:10::1/128").unwrap();
        tor_ns.enable_forwarding().unwrap();
        // Spread flows over the ECMP next hops by their ports too.
        tor_ns
            .write_sysctls(&[
                ("net/ipv4/fib_multipath_hash_policy", "1"),
                ("net/ipv6/fib_multipath_hash_policy", "1"),
            ])
            .unwrap();
        let conf = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../containerlab/tor/frr.conf"),
        )
        .unwrap();
        let tor = Frr::start(&tor_ns, dir.path(), "tor", &conf).unwrap();

        // The lab's pods (containerlab/rackd-bgp.clab.yml): deathstar-N on node (N+1)%2+1,
        // 10.1.X.1N behind veth lxcN, the node's end 10.1.X.1 / fe80::1.
        let mut pods = Vec::new();
        let mut servers = Vec::new();
        for n in 1..=4u8 {
            let i = usize::from((n + 1) % 2);
            let x = i + 1;
            let name = format!("deathstar-{n}");
            let v4 = Ipv4Addr::new(10, 1, u8::try_from(x).unwrap(), 10 + n);
            let v6: Ipv6Addr = format!("fd00:10:1:{x}::1{n}").parse().unwrap();
            let ns = Netns::new(&format!("sv-p{n}")).unwrap();
            let lxc = format!("lxc{n}");
            veth(&nodes[i], &lxc, &ns, "eth1").unwrap();
            nodes[i].addr_add(&lxc, &format!("10.1.{x}.1/32")).unwrap();
            nodes[i].addr_add(&lxc, "fe80::1/64").unwrap();
            nodes[i]
                .route_add(&[&format!("{v4}/32"), "dev", &lxc])
                .unwrap();
            nodes[i]
                .route_add(&[&format!("{v6}/128"), "dev", &lxc])
                .unwrap();
            ns.addr_add("eth1", &format!("{v4}/32")).unwrap();
            ns.addr_add("eth1", &format!("{v6}/128")).unwrap();
            let gw = format!("10.1.{x}.1");
            ns.route_add(&[&gw, "dev", "eth1", "scope", "link"])
                .unwrap();
            ns.route_add(&["default", "via", &gw, "dev", "eth1"])
                .unwrap();
            ns.route_add(&["default", "via", "fe80::1", "dev", "eth1"])
                .unwrap();
            servers.push(Some(EchoServer::start(&ns, &name, 80, 5353).unwrap()));
            pods.push(Pod {
                name,
                node: i,
                v4,
                v6,
                ns,
            });
        }

        let mut cfgs = Vec::new();
        let mut socks = Vec::new();
        let mut states = Vec::new();
        let mut pin_roots = Vec::new();
        for n in NODE_NAMES {
            pin_roots.push(PathBuf::from(format!(
                "/sys/fs/bpf/{}-{n}",
                dir.path().file_name().unwrap().to_string_lossy()
            )));
            let cfg = dir.path().join(n).join("config");
            crate::common::copy_dir(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab"),
                &cfg,
            );
            cfgs.push(cfg);
            socks.push(dir.path().join(n).join("admin.sock"));
            states.push(dir.path().join(n).join("state"));
        }
        SvcLab {
            rackd: vec![None, None],
            servers,
            tor,
            pods,
            nodes,
            client,
            tor_ns,
            cfgs,
            socks,
            states,
            pin_roots,
            dir,
        }
    }

    /// Writes `name` into every node's configuration directory.
    pub fn write_config(&self, name: &str, yaml: &str) {
        for c in &self.cfgs {
            let tmp = c.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, yaml).unwrap();
            std::fs::rename(&tmp, c.join(name)).unwrap();
        }
    }

    /// EndpointSlices (IPv4 and IPv6) of Service `ns/svc` with the pods at `pods` (indexes)
    /// ready, on `ports` (name, port, protocol; an empty name for a Service's only, unnamed
    /// port).
    pub fn endpoints_yaml(
        &self,
        svc: &str,
        ns: &str,
        pods: &[usize],
        ports: &[(&str, u16, &str)],
    ) -> String {
        let mut y = String::new();
        for (fam, suffix) in [("IPv4", "v4"), ("IPv6", "v6")] {
            let _ = write!(
                y,
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-{suffix}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: {fam}\nports:\n"
            );
            for (name, port, proto) in ports {
                if name.is_empty() {
                    let _ = writeln!(y, "- {{port: {port}, protocol: {proto}}}");
                } else {
                    let _ = writeln!(y, "- {{name: {name}, port: {port}, protocol: {proto}}}");
                }
            }
            y.push_str("endpoints:");
            if pods.is_empty() {
                y.push_str(" []\n");
                continue;
            }
            y.push('\n');
            for &i in pods {
                let p = &self.pods[i];
                let addr = if fam == "IPv4" {
                    p.v4.to_string()
                } else {
                    format!("\"{}\"", p.v6)
                };
                let _ = writeln!(
                    y,
                    "- {{addresses: [{addr}], nodeName: {}, conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {}, namespace: batuu}}}}",
                    NODE_NAMES[p.node], p.name
                );
            }
        }
        y
    }

    /// Rewrites the lab's `endpointslices.yaml` with the pods at `pods` (indexes into
    /// [`SvcLab::pods`]) as the backends of both deathstar and web, as Kubernetes would after
    /// a scale-down (a pod gone leaves every Service's slices).
    pub fn set_backends(&self, pods: &[usize]) {
        let mut y = self.endpoints_yaml("deathstar", "batuu", pods, &[("", 80, "TCP")]);
        y.push_str(&self.endpoints_yaml(
            "web",
            "default",
            pods,
            &[("http", 80, "TCP"), ("echo", 5353, "UDP")],
        ));
        self.write_config("endpointslices.yaml", &y);
    }

    /// Starts rackd on node `i` with `extra` flags, reading node `i`'s copy of the lab's
    /// configuration directory.
    pub fn start_rackd(&mut self, i: usize, extra: &[&str]) {
        let cfg = self.cfgs[i].to_str().unwrap().to_owned();
        let mut args = vec!["--config-dir", cfg.as_str()];
        args.extend_from_slice(extra);
        self.start_rackd_bare(i, &args);
    }

    /// Starts rackd on node `i` with `extra` flags and no configuration directory (the
    /// objects come from wherever `extra` says, e.g. the API server).
    pub fn start_rackd_bare(&mut self, i: usize, extra: &[&str]) {
        let state = self.states[i].to_str().unwrap().to_owned();
        let sock = self.socks[i].to_str().unwrap().to_owned();
        let pins = self.pin_roots[i].to_str().unwrap().to_owned();
        let mut args = vec![
            env!("CARGO_BIN_EXE_rackd"),
            "--node-name",
            NODE_NAMES[i],
            "--state-dir",
            &state,
            "--admin-socket",
            &sock,
            "--metrics-addr",
            "127.0.0.1:9963",
            "--bpf-pin-root",
            &pins,
        ];
        args.extend_from_slice(extra);
        // Host mounts: the pins live on the host's bpffs, not a private one.
        let p = self.nodes[i]
            .spawn_host_mounts(self.dir.path(), &format!("rackd-{}", NODE_NAMES[i]), &args)
            .unwrap();
        self.rackd[i] = Some(p);
    }

    /// SIGKILL rackd on node `i` (its pinned programs and maps stay).
    pub fn kill_rackd(&mut self, i: usize) {
        if let Some(mut p) = self.rackd[i].take() {
            p.kill9().unwrap();
        }
    }

    pub fn call(&self, i: usize, req: &Request) -> Reply {
        let s = std::os::unix::net::UnixStream::connect(&self.socks[i]).unwrap();
        rackd_api::write_message(&s, req).unwrap();
        rackd_api::read_message(BufReader::new(&s)).unwrap()
    }

    /// [`SvcLab::call`], `None` while node `i`'s admin socket does not answer (a daemon still
    /// starting binds it only once its datapath is loaded).
    pub fn try_call(&self, i: usize, req: &Request) -> Option<Reply> {
        let s = std::os::unix::net::UnixStream::connect(&self.socks[i]).ok()?;
        rackd_api::write_message(&s, req).ok()?;
        rackd_api::read_message(BufReader::new(&s)).ok()
    }

    pub fn log(&self, i: usize) -> String {
        self.rackd[i]
            .as_ref()
            .map(|p| p.log_tail())
            .unwrap_or_default()
    }

    /// Waits until the ToR has `prefix` from `paths` next hops (ECMP) in its kernel table.
    pub fn wait_tor_route(&self, prefix: &str, paths: usize, timeout: Duration) {
        netlab::wait_for(
            &format!("{prefix} with {paths} path(s) on the ToR"),
            timeout,
            Duration::from_millis(200),
            || {
                let r = self
                    .tor_ns
                    .ip(&["route", "show", prefix])
                    .unwrap_or_default();
                let r6 = self
                    .tor_ns
                    .ip(&["-6", "route", "show", prefix])
                    .unwrap_or_default();
                let text = format!("{r}{r6}");
                let n = text.matches("nexthop").count().max(usize::from(
                    !text.trim().is_empty() && !text.contains("nexthop"),
                ));
                Ok(if n >= paths {
                    netlab::Check::Ready(())
                } else {
                    netlab::Check::NotYet(format!("{text}\n{}\n{}", self.log(0), self.log(1)))
                })
            },
        )
        .unwrap();
    }

    /// Waits until node `i`'s service datapath has programmed at least `n` frontends.
    pub fn wait_frontends(&self, i: usize, n: usize, timeout: Duration) {
        netlab::wait_for(
            &format!("{n} frontends on {}", NODE_NAMES[i]),
            timeout,
            Duration::from_millis(200),
            || {
                let got = match std::os::unix::net::UnixStream::connect(&self.socks[i]) {
                    Ok(s) => {
                        rackd_api::write_message(&s, &Request::ServiceList).unwrap();
                        match rackd_api::read_message(BufReader::new(&s)) {
                            Ok(Reply::ServiceList(v)) => v.len(),
                            _ => 0,
                        }
                    }
                    Err(_) => 0,
                };
                Ok(if got >= n {
                    netlab::Check::Ready(())
                } else {
                    netlab::Check::NotYet(format!("{got} frontends\n{}", self.log(i)))
                })
            },
        )
        .unwrap();
    }

    /// Waits until node `i` serves frontend `ip:port` with exactly `n` backends.
    pub fn wait_backends(&self, i: usize, ip: std::net::IpAddr, port: u16, n: usize) {
        netlab::wait_for(
            &format!("{ip}:{port} with {n} backends on {}", NODE_NAMES[i]),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let Some(Reply::ServiceList(v)) = self.try_call(i, &Request::ServiceList) else {
                    return Ok(netlab::Check::NotYet("no service list".to_owned()));
                };
                let got = v
                    .iter()
                    .find(|s| {
                        s.spec.frontend_address.ip == ip.to_string()
                            && s.spec.frontend_address.port == port
                    })
                    .map(|s| s.spec.backend_addresses.len());
                Ok(if got == Some(n) {
                    netlab::Check::Ready(())
                } else {
                    netlab::Check::NotYet(format!("{got:?} backends"))
                })
            },
        )
        .unwrap();
    }

    /// `GET /` from the client to `addr`.
    pub fn get(&self, addr: SocketAddr) -> netlab::Result<String> {
        netlab::echo::http_get(&self.client, addr, T)
    }
}
