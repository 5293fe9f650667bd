//! A real control plane: etcd, kube-apiserver and optionally kube-controller-manager.
//!
//! Long (~860 lines): starting, stopping and restarting each component and its PKI share the
//! process bookkeeping that makes cleanup by PID reliable; kept in one place on purpose.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::bins::{Bins, bins};
use crate::error::{Error, Result};
use crate::pki::{Pki, run};
use crate::process::{Daemon, log_contains, wrap};

/// The controllers kube-controller-manager runs by default here: what makes EndpointSlices
/// (and legacy Endpoints) from Services and Pods, ServiceAccounts and their tokens, the
/// `kube-root-ca.crt` ConfigMaps, namespace deletion and garbage collection. No node, cloud or
/// workload controllers: there are no kubelets.
pub const DEFAULT_CONTROLLERS: &[&str] = &[
    "endpointslice",
    "endpointslicemirroring",
    "endpoint",
    "serviceaccount",
    "serviceaccount-token",
    "root-ca-cert-publisher",
    "namespace",
    "garbagecollector",
];

/// The dual-stack Service ranges used when [`ClusterOptions::service_cidrs`] is empty (the
/// family of [`ClusterOptions::bind`] goes first, as kube-apiserver requires).
pub const DEFAULT_SERVICE_CIDRS: [&str; 2] = ["10.96.0.0/16", "fd00:10:96::/112"];

/// Environment variable: when set (to anything but `0`), a dropped [`Cluster`] keeps its
/// directory (logs, PKI, kubeconfigs; not etcd's data) and prints where it is. It is also kept
/// when the drop happens during a panic, and when [`Cluster::start`] fails.
pub const KEEP_ENV: &str = "KUBELAB_KEEP";

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Run etcd, kube-apiserver and kube-controller-manager inside this network namespace
    /// (`ip netns exec`); [`Cluster::kubectl`] and [`Cluster::helm`] then run there too. Its
    /// loopback is brought up. Fixed ports are used inside (etcd 2379/2380, API server
    /// [`ClusterOptions::apiserver_port`] or 6443, controller manager 10257): one cluster per
    /// namespace.
    pub netns: Option<String>,
    /// The API server's bind and advertise address (default 127.0.0.1). Its serving
    /// certificate also covers 127.0.0.1, ::1, `localhost`, the `kubernetes` Service's names and
    /// its ClusterIPs. With a loopback address the `kubernetes` Service gets no endpoints
    /// (`--endpoint-reconciler-type=none`: the reconciler refuses loopback addresses).
    pub bind: IpAddr,
    /// The API server's port; `None`: a free port (host namespace) or 6443 (in a namespace).
    pub apiserver_port: Option<u16>,
    /// Also start kube-controller-manager (with the service-account key, so it can mint
    /// tokens), running [`ClusterOptions::controllers`].
    pub controller_manager: bool,
    /// `--controllers` for kube-controller-manager (default [`DEFAULT_CONTROLLERS`]).
    pub controllers: Vec<String>,
    /// `--service-cluster-ip-range` entries; empty: [`DEFAULT_SERVICE_CIDRS`], the family of
    /// `bind` first.
    pub service_cidrs: Vec<String>,
    /// More kube-apiserver flags (appended, so they override the defaults).
    pub extra_apiserver_args: Vec<String>,
    /// More kube-controller-manager flags (appended).
    pub extra_controller_manager_args: Vec<String>,
    /// How long each component may take to become ready.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            netns: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            apiserver_port: None,
            controller_manager: false,
            controllers: DEFAULT_CONTROLLERS.iter().map(|s| s.to_string()).collect(),
            service_cidrs: Vec::new(),
            extra_apiserver_args: Vec::new(),
            extra_controller_manager_args: Vec::new(),
            start_timeout: Duration::from_secs(180),
        }
    }
}

impl ClusterOptions {
    /// The defaults plus kube-controller-manager.
    pub fn with_controller_manager() -> Self {
        ClusterOptions {
            controller_manager: true,
            ..Self::default()
        }
    }

    /// The Service ranges in effect (see [`ClusterOptions::service_cidrs`]).
    pub fn effective_service_cidrs(&self) -> Vec<String> {
        if !self.service_cidrs.is_empty() {
            return self.service_cidrs.clone();
        }
        let mut v: Vec<String> = DEFAULT_SERVICE_CIDRS
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.bind.is_ipv6() {
            v.reverse();
        }
        v
    }
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
}

impl Ports {
    fn pick(opts: &ClusterOptions) -> Result<Ports> {
        if opts.netns.is_some() {
            return Ok(Ports {
                etcd_client: 2379,
                etcd_peer: 2380,
                apiserver: opts.apiserver_port.unwrap_or(6443),
                controller_manager: 10257,
            });
        }
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Held together so that the four are distinct; released just before the daemons bind
        // (a rare steal by another process is retried by `Cluster::start`).
        let etcd_client = free_port(lo)?;
        let etcd_peer = free_port(lo)?;
        let kcm = free_port(lo)?;
        let apiserver = match opts.apiserver_port {
            Some(p) => p,
            None => free_port(opts.bind)?.1,
        };
        Ok(Ports {
            etcd_client: etcd_client.1,
            etcd_peer: etcd_peer.1,
            apiserver,
            controller_manager: kcm.1,
        })
    }
}

fn free_port(ip: IpAddr) -> Result<(TcpListener, u16)> {
    let l = TcpListener::bind((ip, 0))
        .map_err(|e| Error::io(format!("finding a free port on {ip}"), e))?;
    let port = l
        .local_addr()
        .map_err(|e| Error::io(format!("finding a free port on {ip}"), e))?
        .port();
    Ok((l, port))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Etcd,
    Apiserver,
    ControllerManager,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Apiserver => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
        }
    }
}

/// A running control plane: etcd, kube-apiserver (RBAC on, its own PKI, service-account
/// issuer and keys) and, if asked, kube-controller-manager, with an admin kubeconfig.
///
/// Everything lives in a fresh temporary directory (`kubelab-*` under the system temp dir):
/// PKI, etcd data, kubeconfigs, and one log per process in `logs/`. Dropping the cluster stops
/// the processes it started (SIGTERM to each one's process group, by PID, then SIGKILL) and
/// removes the directory (kept in the cases [`KEEP_ENV`] lists).
#[derive(Debug)]
pub struct Cluster {
    opts: ClusterOptions,
    bins: Bins,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    keep: bool,
    pki: Pki,
    ports: Ports,
    admin_kubeconfig: PathBuf,
    kcm_kubeconfig: PathBuf,
    // Drop order: the controller manager, then the API server, then etcd.
    kcm: Option<Daemon>,
    apiserver: Option<Daemon>,
    etcd: Option<Daemon>,
}

impl Cluster {
    /// Starts etcd, then kube-apiserver (waiting for `/readyz` and the `default` namespace),
    /// then kube-controller-manager if [`ClusterOptions::controller_manager`] (waiting for its
    /// `/healthz` and, when its serviceaccount controller runs, the `default` ServiceAccount,
    /// so Pods can be created at once). Builds the binaries first if needed ([`bins`]).
    ///
    /// On failure everything started is stopped again, and the error carries the tail of the
    /// failing component's log; the cluster's directory is then kept (without etcd's data) so
    /// that the whole log can be read.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        if let Some(ns) = &opts.netns {
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        } else if opts.apiserver_port.is_some_and(|p| p == 0) {
            return Err(Error::InvalidOptions("apiserver_port 0".into()));
        }
        if opts.controller_manager && opts.controllers.is_empty() {
            return Err(Error::InvalidOptions(
                "controller_manager without controllers".into(),
            ));
        }
        let bins = bins()?;
        let dir = tempfile::Builder::new()
            .prefix("kubelab-")
            .tempdir()
            .map_err(|e| Error::io("creating the cluster directory", e))?;
        let root = dir.path().to_path_buf();
        for sub in ["logs", "sa", "kubectl-cache", "helm"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(|e| Error::io(format!("creating {sub}/"), e))?;
        }
        let pki = Pki::create(&root.join("pki"), &server_sans(&opts)?)?;
        let ports = Ports::pick(&opts)?;
        let mut cluster = Cluster {
            admin_kubeconfig: root.join("admin.kubeconfig"),
            kcm_kubeconfig: root.join("kube-controller-manager.kubeconfig"),
            opts,
            bins,
            dir: Some(dir),
            root,
            keep: false,
            pki,
            ports,
            kcm: None,
            apiserver: None,
            etcd: None,
        };

        // A port chosen free can be taken before the daemon binds it: start again on new
        // ports (host namespace only; inside a namespace the ports are fixed).
        let mut attempt = 1;
        loop {
            match cluster.boot() {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < 3 && cluster.opts.netns.is_none() && cluster.port_taken() => {
                    eprintln!("kubelab: a port was taken, starting again on new ports: {e}");
                    cluster.stop_all();
                    let logs = cluster.root.join("logs");
                    let old = cluster.root.join(format!("logs.attempt{attempt}"));
                    std::fs::rename(&logs, &old)
                        .and_then(|()| std::fs::create_dir(&logs))
                        .and_then(|()| std::fs::remove_dir_all(cluster.root.join("etcd-data")))
                        .map_err(|e| Error::io("resetting for a new attempt", e))?;
                    cluster.ports = Ports::pick(&cluster.opts)?;
                    attempt += 1;
                }
                Err(e) => {
                    // The error names the log: keep it (Drop still stops every process).
                    cluster.keep = true;
                    return Err(e);
                }
            }
        }
    }

    fn port_taken(&self) -> bool {
        [
            Component::Etcd,
            Component::Apiserver,
            Component::ControllerManager,
        ]
        .iter()
        .any(|c| log_contains(&self.log_path_of(*c), "address already in use"))
    }

    fn boot(&mut self) -> Result<()> {
        self.write_kubeconfig(
            &self.admin_kubeconfig,
            "kubelab-admin",
            &Credentials::Cert {
                crt: &self.pki.admin_crt,
                key: &self.pki.admin_key,
            },
        )?;
        self.write_kubeconfig(
            &self.kcm_kubeconfig,
            "system:kube-controller-manager",
            &Credentials::Cert {
                crt: &self.pki.kcm_crt,
                key: &self.pki.kcm_key,
            },
        )?;
        self.start_etcd()?;
        self.start_apiserver()?;
        let deadline = Instant::now() + self.opts.start_timeout;
        self.wait_ready(Component::Apiserver, deadline, |c| {
            c.probe(&["get", "namespace", "default", "-o", "name"])
        })?;
        if self.opts.controller_manager {
            self.start_controller_manager()?;
        }
        Ok(())
    }

    fn start_etcd(&mut self) -> Result<()> {
        let data = self.root.join("etcd-data");
        let client = format!("http://127.0.0.1:{}", self.ports.etcd_client);
        let peer = format!("http://127.0.0.1:{}", self.ports.etcd_peer);
        let args = vec![
            "--name=kubelab".to_string(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            "--log-level=warn".to_string(),
        ];
        let log = self.log_path_of(Component::Etcd);
        let etcd = self.etcd.insert(Daemon::spawn(
            "etcd",
            &self.bins.etcd,
            &args,
            self.opts.netns.as_deref(),
            &log,
        )?);
        let _ = etcd;
        let deadline = Instant::now() + self.opts.start_timeout;
        // kubelab's etcd main logs this line once the server is ready (go/etcd/main.go).
        self.wait_ready(Component::Etcd, deadline, |c| {
            if log_contains(
                &c.log_path_of(Component::Etcd),
                " ready, serving clients on ",
            ) {
                Ok(())
            } else {
                Err("no ready line in the log yet".into())
            }
        })
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = &self.pki;
        let p = |path: &Path| path.display().to_string();
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{}", self.ports.etcd_client),
            format!("--bind-address={}", self.opts.bind),
            format!("--advertise-address={}", self.opts.bind),
            format!("--secure-port={}", self.ports.apiserver),
            format!("--tls-cert-file={}", p(&pki.server_crt)),
            format!("--tls-private-key-file={}", p(&pki.server_key)),
            format!("--client-ca-file={}", p(&pki.ca_crt)),
            format!("--cert-dir={}", p(&self.root.join("pki"))),
            "--authorization-mode=Node,RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            format!(
                "--service-cluster-ip-range={}",
                self.opts.effective_service_cidrs().join(",")
            ),
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
        ];
        if self.opts.bind.is_loopback() {
            // The endpoint reconciler refuses a loopback advertise address ("may not be in the
            // loopback range"); the `kubernetes` Service then has no endpoints.
            args.push("--endpoint-reconciler-type=none".to_string());
        }
        args.extend(self.opts.extra_apiserver_args.iter().cloned());
        args
    }

    fn controller_manager_args(&self) -> Vec<String> {
        let pki = &self.pki;
        let p = |path: &Path| path.display().to_string();
        let kubeconfig = p(&self.kcm_kubeconfig);
        let mut args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={}", self.ports.controller_manager),
            format!("--tls-cert-file={}", p(&pki.server_crt)),
            format!("--tls-private-key-file={}", p(&pki.server_key)),
            format!("--client-ca-file={}", p(&pki.ca_crt)),
            "--leader-elect=false".to_string(),
            format!("--controllers={}", self.opts.controllers.join(",")),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            format!("--root-ca-file={}", p(&pki.ca_crt)),
            // Each controller acts as its own ServiceAccount (kube-system/<controller>), as
            // kubeadm runs it: RBAC's bootstrap policy grants the controllers' roles to those,
            // not to system:kube-controller-manager.
            "--use-service-account-credentials=true".to_string(),
            "--cluster-name=kubelab".to_string(),
            "--profiling=false".to_string(),
        ];
        args.extend(self.opts.extra_controller_manager_args.iter().cloned());
        args
    }

    /// Starts kube-apiserver again after [`Cluster::stop_apiserver`] or
    /// [`Cluster::kill_apiserver`] (same port, flags and etcd data) and waits for `/readyz`.
    /// Does nothing if it is running.
    pub fn start_apiserver(&mut self) -> Result<()> {
        if let Some(d) = self.apiserver.as_mut()
            && d.exited().is_none()
        {
            return Ok(());
        }
        let args = self.apiserver_args();
        let log = self.log_path_of(Component::Apiserver);
        self.apiserver = Some(Daemon::spawn(
            "kube-apiserver",
            &self.bins.kube_apiserver,
            &args,
            self.opts.netns.as_deref(),
            &log,
        )?);
        let deadline = Instant::now() + self.opts.start_timeout;
        self.wait_ready(Component::Apiserver, deadline, |c| {
            c.probe(&["get", "--raw", "/readyz"])
        })
    }

    /// Stops kube-apiserver (SIGTERM, SIGKILL after 30 s) and waits for it to exit. etcd (and
    /// the controller manager, which keeps retrying) stay up.
    pub fn stop_apiserver(&mut self) -> Result<()> {
        if let Some(mut d) = self.apiserver.take() {
            d.stop(Duration::from_secs(30));
        }
        Ok(())
    }

    /// Kills kube-apiserver with SIGKILL (no graceful shutdown) and waits for it to exit.
    pub fn kill_apiserver(&mut self) -> Result<()> {
        if let Some(mut d) = self.apiserver.take() {
            d.kill();
        }
        Ok(())
    }

    /// Whether kube-apiserver's process is running.
    pub fn apiserver_running(&mut self) -> bool {
        self.apiserver
            .as_mut()
            .is_some_and(|d| d.exited().is_none())
    }

    fn start_controller_manager(&mut self) -> Result<()> {
        let args = self.controller_manager_args();
        let log = self.log_path_of(Component::ControllerManager);
        self.kcm = Some(Daemon::spawn(
            "kube-controller-manager",
            &self.bins.kube_controller_manager,
            &args,
            self.opts.netns.as_deref(),
            &log,
        )?);
        let deadline = Instant::now() + self.opts.start_timeout;
        let healthz = format!("https://127.0.0.1:{}", self.ports.controller_manager);
        self.wait_ready(Component::ControllerManager, deadline, |c| {
            c.probe(&["--server", &healthz, "get", "--raw", "/healthz"])
        })?;
        if self.opts.controllers.iter().any(|c| c == "serviceaccount") {
            self.wait_ready(Component::ControllerManager, deadline, |c| {
                c.probe(&[
                    "get",
                    "serviceaccount",
                    "default",
                    "-n",
                    "default",
                    "-o",
                    "name",
                ])
            })?;
        }
        Ok(())
    }

    /// Polls `probe` until it succeeds; fails with the component's log tail if the process
    /// exits or `deadline` passes.
    fn wait_ready(
        &mut self,
        which: Component,
        deadline: Instant,
        probe: impl Fn(&Cluster) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let mut last = String::from("not probed");
        loop {
            let daemon = match which {
                Component::Etcd => self.etcd.as_mut(),
                Component::Apiserver => self.apiserver.as_mut(),
                Component::ControllerManager => self.kcm.as_mut(),
            }
            .ok_or(Error::NotRunning(which.name()))?;
            if let Some(status) = daemon.exited() {
                return Err(daemon.start_error(format!("it exited ({status})")));
            }
            if Instant::now() > deadline {
                return Err(daemon.start_error(format!(
                    "not ready after {:?}; last probe: {last}",
                    self.opts.start_timeout
                )));
            }
            match probe(self) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One kubectl call as admin with a short request timeout; Err(stderr) on failure.
    fn probe(&self, args: &[&str]) -> std::result::Result<(), String> {
        let mut cmd = self.kubectl_command();
        cmd.arg("--request-timeout=5s").args(args);
        match cmd.stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn stop_all(&mut self) {
        if let Some(mut d) = self.kcm.take() {
            d.stop(Duration::from_secs(5));
        }
        if let Some(mut d) = self.apiserver.take() {
            d.stop(Duration::from_secs(10));
        }
        if let Some(mut d) = self.etcd.take() {
            d.stop(Duration::from_secs(10));
        }
    }

    /// The API server's URL, `https://<bind>:<port>`.
    pub fn server(&self) -> String {
        format!(
            "https://{}",
            SocketAddr::new(self.opts.bind, self.ports.apiserver)
        )
    }

    /// The API server's port.
    pub fn apiserver_port(&self) -> u16 {
        self.ports.apiserver
    }

    /// etcd's client URL (`http://127.0.0.1:<port>`, inside the namespace if any).
    pub fn etcd_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.etcd_client)
    }

    /// A kubeconfig for `system:masters` (client certificate and CA embedded).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The cluster CA's certificate (PEM), which signed the API server's serving certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca_crt
    }

    /// The cluster's directory (PKI, kubeconfigs, `logs/`).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The log file of `component`: `etcd`, `kube-apiserver` or `kube-controller-manager`.
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.root.join("logs").join(format!("{component}.log"))
    }

    fn log_path_of(&self, c: Component) -> PathBuf {
        self.log_path(c.name())
    }

    /// The binaries this cluster runs.
    pub fn bins(&self) -> &Bins {
        &self.bins
    }

    /// The options it was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// PIDs of the running processes it started (etcd, kube-apiserver,
    /// kube-controller-manager, in that order, for those running).
    pub fn pids(&mut self) -> Vec<u32> {
        [
            self.etcd.as_mut(),
            self.apiserver.as_mut(),
            self.kcm.as_mut(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|d| d.exited().is_none().then(|| d.pid()))
        .collect()
    }

    /// A `kubectl` command as admin (`--kubeconfig`, a per-cluster `--cache-dir`, inside the
    /// namespace if any), ready for more arguments, stdin and so on.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = wrap(&self.bins.kubectl, self.opts.netns.as_deref());
        cmd.env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .arg("--cache-dir")
            .arg(self.root.join("kubectl-cache"));
        cmd
    }

    /// Runs `kubectl args...` as admin and returns its output, whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.kubectl_command();
        cmd.args(args).stdin(Stdio::null());
        cmd.output()
            .map_err(|e| Error::io(format!("running {}", crate::display_command(&cmd)), e))
    }

    /// Runs `kubectl args...` as admin; its stdout, or [`Error::Command`] with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.kubectl_command();
        cmd.args(args);
        run(&mut cmd)
    }

    /// Runs `kubectl args...` as admin with `input` on stdin (e.g. `apply -f -`); its stdout,
    /// or [`Error::Command`] with its stderr.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let mut cmd = self.kubectl_command();
        cmd.args(args);
        run_with_stdin(&mut cmd, input)
    }

    /// A `helm` command against this cluster as admin (`KUBECONFIG`, and helm's cache, config
    /// and data homes in the cluster's directory; inside the namespace if any).
    pub fn helm_command(&self) -> Command {
        let mut cmd = wrap(&self.bins.helm, self.opts.netns.as_deref());
        let helm = self.root.join("helm");
        cmd.env("KUBECONFIG", &self.admin_kubeconfig)
            .env("HELM_CACHE_HOME", helm.join("cache"))
            .env("HELM_CONFIG_HOME", helm.join("config"))
            .env("HELM_DATA_HOME", helm.join("data"));
        cmd
    }

    /// Runs `helm args...` against this cluster as admin; its stdout, or [`Error::Command`]
    /// with its stderr.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.helm_command();
        cmd.args(args);
        run(&mut cmd)
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name` with a bound token
    /// (`kubectl create token --duration 24h`) and trusts the cluster CA. Creates the namespace
    /// and the ServiceAccount if missing; grants nothing.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        self.create_if_missing(&["create", "namespace", namespace])?;
        self.create_if_missing(&["create", "serviceaccount", name, "-n", namespace])?;
        let token = self.kubectl_ok(&[
            "create",
            "token",
            name,
            "-n",
            namespace,
            "--duration",
            "24h",
        ])?;
        let path = self
            .root
            .join("sa")
            .join(format!("{namespace}.{name}.kubeconfig"));
        let user = format!("system:serviceaccount:{namespace}:{name}");
        self.write_kubeconfig(&path, &user, &Credentials::Token(token.trim()))?;
        Ok(path)
    }

    fn create_if_missing(&self, args: &[&str]) -> Result<()> {
        match self.kubectl_ok(args) {
            Err(Error::Command { stderr, .. })
                if stderr.contains("AlreadyExists") || stderr.contains("already exists") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    fn write_kubeconfig(&self, path: &Path, user: &str, creds: &Credentials<'_>) -> Result<()> {
        let b64 = |p: &Path| -> Result<String> {
            let bytes =
                std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        let mut y = String::new();
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubelab\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {user:?}\n  user:\n",
            self.server(),
            b64(&self.pki.ca_crt)?
        );
        match creds {
            Credentials::Cert { crt, key } => {
                let _ = write!(
                    y,
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(crt)?,
                    b64(key)?
                );
            }
            Credentials::Token(t) => {
                let _ = writeln!(y, "    token: {t}");
            }
        }
        let _ = write!(
            y,
            "contexts:\n- name: kubelab\n  context:\n    cluster: kubelab\n    user: {user:?}\ncurrent-context: kubelab\n"
        );
        std::fs::write(path, y).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

enum Credentials<'a> {
    Cert { crt: &'a Path, key: &'a Path },
    Token(&'a str),
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
        let keep = self.keep
            || std::thread::panicking()
            || std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        if let Some(dir) = self.dir.take() {
            if keep {
                let path = dir.keep();
                let _ = std::fs::remove_dir_all(path.join("etcd-data"));
                eprintln!("kubelab: kept {} (logs in logs/)", path.display());
            } else if let Err(e) = dir.close() {
                eprintln!("kubelab: cannot remove {}: {e}", self.root.display());
            }
        }
    }
}

/// The serving certificate's subjectAltNames.
fn server_sans(opts: &ClusterOptions) -> Result<Vec<String>> {
    let mut sans = vec![
        format!("IP:{}", opts.bind),
        "IP:127.0.0.1".to_string(),
        "IP:::1".to_string(),
        "DNS:localhost".to_string(),
    ];
    for d in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        sans.push(format!("DNS:{d}"));
    }
    for cidr in opts.effective_service_cidrs() {
        sans.push(format!("IP:{}", first_service_ip(&cidr)?));
    }
    sans.dedup();
    Ok(sans)
}

/// The first address of a Service range (the `kubernetes` Service's ClusterIP).
fn first_service_ip(cidr: &str) -> Result<IpAddr> {
    let bad = || Error::InvalidOptions(format!("service CIDR {cidr:?}"));
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    Ok(match addr {
        IpAddr::V4(a) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).wrapping_add(1).into())
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).wrapping_add(1).into())
        }
        _ => return Err(bad()),
    })
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<String> {
    use std::io::Write as _;
    let shown = crate::display_command(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {shown}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| Error::io(format!("writing stdin of {shown}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("running {shown}"), e))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ips() {
        assert_eq!(
            first_service_ip("10.96.0.0/16").unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_service_ip("fd00:10:96::/112").unwrap().to_string(),
            "fd00:10:96::1"
        );
        assert_eq!(
            first_service_ip("10.96.3.7/24").unwrap().to_string(),
            "10.96.3.1"
        );
        assert!(first_service_ip("10.96.0.0").is_err());
        assert!(first_service_ip("10.96.0.0/33").is_err());
    }

    #[test]
    fn service_cidrs_follow_the_bind_family() {
        let v4 = ClusterOptions::default();
        assert_eq!(v4.effective_service_cidrs(), DEFAULT_SERVICE_CIDRS);
        let v6 = ClusterOptions {
            bind: "::1".parse().unwrap(),
            ..ClusterOptions::default()
        };
        assert_eq!(v6.effective_service_cidrs()[0], "fd00:10:96::/112");
    }
}
