//! The daemon's own options: command-line flags, their environment variables and the
//! optional `--config` file, merged into [`daemon::Options`](crate::daemon::Options).
//!
//! Precedence is flag (or its environment variable, which clap folds into the flag) over the
//! file over the built-in default. Everything here is pure so that each malformed input has a
//! test; the binary only reads the file and reports the error.
//!
//! Long (~900 lines, half of it tests): every flag, its file key and its malformed-input test
//! sit together so that no option can be added without its check.

use std::net::{AddrParseError, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use rackd_services::maglev::{HashSeed, TableSize};

use crate::duration::DurationError;
use crate::l2::{L2Options, LeaseBackendKind};

/// Where the metrics endpoint listens unless told otherwise (Cilium's agent uses 9962, its
/// operator 9963).
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9963);

/// The daemon's flags (each also read from the environment variable it names).
#[derive(Args, Debug, Default, Clone)]
pub struct Flags {
    /// This node's name: its Node object and CiliumBGPNodeConfigOverride. Default: hostname.
    #[arg(long, env = "RACKD_NODE_NAME")]
    pub node_name: Option<String>,
    /// Directory of Cilium/Kubernetes YAML files, watched for changes.
    #[arg(long, env = "RACKD_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Where durable state lives (LB-IPAM allocations, restart markers).
    #[arg(long, env = "RACKD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Admin API socket (root only).
    #[arg(long, env = "RACKD_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
    /// Prometheus metrics address (`off` disables; default 127.0.0.1:9963).
    #[arg(long, env = "RACKD_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Log format.
    #[arg(long, env = "RACKD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Namespace of BGP auth Secrets (Cilium's --bgp-secrets-namespace).
    #[arg(long, env = "RACKD_BGP_SECRETS_NAMESPACE")]
    pub bgp_secrets_namespace: Option<String>,
    /// Install routes learnt from peers into this kernel routing table (protocol bgp, ECMP).
    /// Off by default: Cilium never imports.
    #[arg(long, env = "RACKD_FIB_TABLE")]
    pub fib_table: Option<u32>,
    /// Answer ARP/NDP for LoadBalancer and external IPs per CiliumL2AnnouncementPolicy
    /// (Cilium's flag).
    #[arg(long, env = "RACKD_ENABLE_L2_ANNOUNCEMENTS")]
    pub enable_l2_announcements: bool,
    /// How long other nodes wait after a holder's last renewal (Go duration; default 15s).
    #[arg(long, env = "RACKD_L2_ANNOUNCEMENTS_LEASE_DURATION")]
    pub l2_announcements_lease_duration: Option<String>,
    /// How long a holder keeps answering without a renewal (default 5s).
    #[arg(long, env = "RACKD_L2_ANNOUNCEMENTS_RENEW_DEADLINE")]
    pub l2_announcements_renew_deadline: Option<String>,
    /// Interval between renewals and claim retries (default 2s).
    #[arg(long, env = "RACKD_L2_ANNOUNCEMENTS_RETRY_PERIOD")]
    pub l2_announcements_retry_period: Option<String>,
    /// Where L2 leases live: `local` (single node), `etcd`, or `kubernetes` (the default with
    /// `--enable-k8s`).
    #[arg(long, env = "RACKD_L2_LEASE_BACKEND", value_enum)]
    pub l2_lease_backend: Option<BackendArg>,
    /// etcd client URLs for the `etcd` lease backend (comma-separated or repeated).
    #[arg(long, env = "RACKD_L2_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub l2_etcd_endpoints: Vec<String>,
    /// Key prefix in etcd (default /rackd/l2/).
    #[arg(long, env = "RACKD_L2_ETCD_PREFIX")]
    pub l2_etcd_prefix: Option<String>,
    /// Devices L2 announcements may use, Cilium's syntax (`eth0`, `eth+`); default every
    /// Ethernet device.
    #[arg(long, env = "RACKD_DEVICES", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// bpffs folder for the datapath's pinned maps and links.
    #[arg(long, env = "RACKD_BPF_PIN_ROOT")]
    pub bpf_pin_root: Option<PathBuf>,
    /// Forward LoadBalancer and external IPs of Services to their backends on rackd's eBPF
    /// datapath, at tc on `--devices` (Cilium's flag; `--kube-proxy-replacement=true`).
    #[arg(long, env = "RACKD_KUBE_PROXY_REPLACEMENT", num_args = 0..=1, default_missing_value = "true")]
    pub kube_proxy_replacement: Option<bool>,
    /// Backend selection: `maglev` (rackd's only algorithm; Cilium's `random` is accepted and
    /// served by Maglev, which gives every node the same choice).
    #[arg(long, env = "RACKD_BPF_LB_ALGORITHM", value_enum)]
    pub bpf_lb_algorithm: Option<LbAlgorithm>,
    /// Room for this many frontends and backends in the service maps (Cilium's flag; default
    /// 65536). The maps are not preallocated: only what is programmed takes memory.
    #[arg(long, env = "RACKD_BPF_LB_MAP_MAX")]
    pub bpf_lb_map_max: Option<u32>,
    /// Maglev lookup table size per service: one of Cilium's primes (default 16381).
    #[arg(long, env = "RACKD_BPF_LB_MAGLEV_TABLE_SIZE")]
    pub bpf_lb_maglev_table_size: Option<u32>,
    /// Maglev hash seed, base64 of 12 bytes, the same on every node (Cilium's format and
    /// default).
    #[arg(long, env = "RACKD_BPF_LB_MAGLEV_HASH_SEED")]
    pub bpf_lb_maglev_hash_seed: Option<String>,
    /// SNAT pod traffic leaving the node to the device's address in eBPF (Cilium's flag).
    #[arg(long, env = "RACKD_ENABLE_BPF_MASQUERADE", num_args = 0..=1, default_missing_value = "true")]
    pub enable_bpf_masquerade: Option<bool>,
    /// Masquerade IPv4 (default true, as Cilium).
    #[arg(long, env = "RACKD_ENABLE_IPV4_MASQUERADE", num_args = 0..=1, default_missing_value = "true")]
    pub enable_ipv4_masquerade: Option<bool>,
    /// Masquerade IPv6 (default true, as Cilium).
    #[arg(long, env = "RACKD_ENABLE_IPV6_MASQUERADE", num_args = 0..=1, default_missing_value = "true")]
    pub enable_ipv6_masquerade: Option<bool>,
    /// Take the non-masquerade destinations from ip-masq-agent's config file (Cilium's flag).
    #[arg(long, env = "RACKD_ENABLE_IP_MASQ_AGENT", num_args = 0..=1, default_missing_value = "true")]
    pub enable_ip_masq_agent: Option<bool>,
    /// ip-masq-agent's config file (default /etc/config/ip-masq-agent), watched.
    #[arg(long, env = "RACKD_IP_MASQ_AGENT_CONFIG_PATH")]
    pub ip_masq_agent_config_path: Option<PathBuf>,
    /// Enforce CiliumEgressGatewayPolicy on the service datapath: selected pods leave through
    /// the gateway node's egress address (Cilium's flag; needs --kube-proxy-replacement and
    /// --enable-bpf-masquerade, as in Cilium).
    #[arg(long, env = "RACKD_ENABLE_EGRESS_GATEWAY", num_args = 0..=1, default_missing_value = "true")]
    pub enable_egress_gateway: Option<bool>,
    /// Read objects from the Kubernetes API (watches) and write status back (Cilium's flag;
    /// rackd's default is off, for plain Linux). Implied by `--k8s-kubeconfig-path`.
    #[arg(long, env = "RACKD_ENABLE_K8S", num_args = 0..=1, default_missing_value = "true")]
    pub enable_k8s: Option<bool>,
    /// kubeconfig to reach the API server (Cilium's flag); default: in-cluster (the Pod's
    /// ServiceAccount), else `KUBECONFIG`.
    #[arg(long, env = "RACKD_K8S_KUBECONFIG_PATH")]
    pub k8s_kubeconfig_path: Option<PathBuf>,
    /// API server URL, overriding the kubeconfig's (Cilium's flag).
    #[arg(long, env = "RACKD_K8S_API_SERVER")]
    pub k8s_api_server: Option<String>,
    /// Namespace rackd runs in and keeps its Leases in (Cilium's flag; default kube-system).
    #[arg(long, env = "RACKD_K8S_NAMESPACE")]
    pub k8s_namespace: Option<String>,
    /// How long the LB-IPAM leader's Lease lasts without renewal (Go duration; Cilium
    /// operator's flag, default 15s).
    #[arg(long, env = "RACKD_LEADER_ELECTION_LEASE_DURATION")]
    pub leader_election_lease_duration: Option<String>,
    /// How long the leader keeps leading without a successful renewal (default 10s).
    #[arg(long, env = "RACKD_LEADER_ELECTION_RENEW_DEADLINE")]
    pub leader_election_renew_deadline: Option<String>,
    /// Interval between election attempts and renewals (default 2s).
    #[arg(long, env = "RACKD_LEADER_ELECTION_RETRY_PERIOD")]
    pub leader_election_retry_period: Option<String>,
}

/// `--bpf-lb-algorithm`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbAlgorithm {
    Maglev,
    Random,
}

/// The service datapath's options (`--kube-proxy-replacement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLbOptions {
    /// Devices to attach to (Cilium's syntax); empty: every Ethernet device with an address.
    pub devices: Vec<String>,
    pub pin_root: PathBuf,
    /// Maglev table size and cluster-wide seed, validated.
    pub maglev: rackd_services::maglev::MaglevConfig,
    /// `--bpf-lb-map-max`: frontends and backends the maps hold.
    pub map_max: u32,
    /// BPF masquerade; `None` when off.
    pub masquerade: Option<MasqueradeOptions>,
    /// `--enable-egress-gateway`.
    pub egress_gateway: bool,
}

/// `--enable-bpf-masquerade` and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqueradeOptions {
    pub ipv4: bool,
    pub ipv6: bool,
    /// ip-masq-agent's config file, when `--enable-ip-masq-agent`.
    pub ip_masq_agent: Option<PathBuf>,
}

/// Cilium's default `--bpf-lb-map-max`.
pub const DEFAULT_LB_MAP_MAX: u32 = 65536;

/// Cilium's default `--ip-masq-agent-config-path`.
pub const DEFAULT_IP_MASQ_AGENT_CONFIG: &str = "/etc/config/ip-masq-agent";

/// `--l2-lease-backend`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendArg {
    Local,
    Etcd,
    /// `coordination.k8s.io` Leases in `--k8s-namespace` (the default with `--enable-k8s`).
    Kubernetes,
}

/// `--log-format`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `--config` file: the same options as the flags, keyed by the long flag names.
/// Unknown keys are refused (a misspelt key must not silently fall back to a default).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub node_name: Option<String>,
    pub config_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub admin_socket: Option<PathBuf>,
    pub metrics_addr: Option<String>,
    pub log_format: Option<LogFormat>,
    pub bgp_secrets_namespace: Option<String>,
    pub fib_table: Option<u32>,
    pub enable_l2_announcements: Option<bool>,
    pub l2_announcements_lease_duration: Option<String>,
    pub l2_announcements_renew_deadline: Option<String>,
    pub l2_announcements_retry_period: Option<String>,
    pub l2_lease_backend: Option<BackendArg>,
    pub l2_etcd_endpoints: Option<Vec<String>>,
    pub l2_etcd_prefix: Option<String>,
    pub devices: Option<Vec<String>>,
    pub bpf_pin_root: Option<PathBuf>,
    pub kube_proxy_replacement: Option<bool>,
    pub bpf_lb_algorithm: Option<LbAlgorithm>,
    pub bpf_lb_map_max: Option<u32>,
    pub bpf_lb_maglev_table_size: Option<u32>,
    pub bpf_lb_maglev_hash_seed: Option<String>,
    pub enable_bpf_masquerade: Option<bool>,
    pub enable_ipv4_masquerade: Option<bool>,
    pub enable_ipv6_masquerade: Option<bool>,
    pub enable_ip_masq_agent: Option<bool>,
    pub ip_masq_agent_config_path: Option<PathBuf>,
    pub enable_egress_gateway: Option<bool>,
    pub enable_k8s: Option<bool>,
    pub k8s_kubeconfig_path: Option<PathBuf>,
    pub k8s_api_server: Option<String>,
    pub k8s_namespace: Option<String>,
    pub leader_election_lease_duration: Option<String>,
    pub leader_election_renew_deadline: Option<String>,
    pub leader_election_retry_period: Option<String>,
}

/// A bad option: which one, what it held and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("cannot read config file {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {path}: not a valid options file (expected a YAML mapping keyed by the long flag names: node-name, config-dir, state-dir, admin-socket, metrics-addr, log-format, enable-l2-announcements, ...)"
    )]
    ParseFile {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("--metrics-addr {value:?}: expected ADDRESS:PORT (e.g. 127.0.0.1:9963) or off")]
    MetricsAddr {
        value: String,
        #[source]
        source: AddrParseError,
    },
    #[error("--{flag} {value:?}: expected a Go duration like 15s or 500ms")]
    Duration {
        flag: &'static str,
        value: String,
        #[source]
        source: DurationError,
    },
    #[error(
        "--enable-bpf-masquerade needs --kube-proxy-replacement (BPF masquerade runs on the service datapath's programs, as in Cilium)"
    )]
    MasqueradeWithoutDatapath,
    #[error(
        "--enable-egress-gateway needs --kube-proxy-replacement and --enable-bpf-masquerade (the gateway SNATs with BPF masquerade's NAT engine, as in Cilium)"
    )]
    EgressGatewayWithoutMasquerade,
    #[error("--bpf-lb-map-max 0: the service maps need room for at least one entry")]
    LbMapMax,
    /// `--bpf-lb-maglev-table-size` or `--bpf-lb-maglev-hash-seed` (the message names which).
    #[error(transparent)]
    Maglev(rackd_services::maglev::MaglevError),
    #[error(
        "leader election timings: need 0 < retry period ({retry_period:?}) < renew deadline ({renew_deadline:?}) < lease duration ({lease_duration:?})"
    )]
    ElectionTimings {
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    },
    #[error("--l2-lease-backend etcd needs --l2-etcd-endpoints")]
    EtcdWithoutEndpoints,
    #[error(
        "--l2-etcd-endpoints given but the lease backend is local: add --l2-lease-backend etcd"
    )]
    EndpointsWithoutEtcd,
    #[error("--l2-lease-backend kubernetes needs the Kubernetes API: add --enable-k8s")]
    KubernetesBackendWithoutK8s,
}

/// Parses the text of a `--config` file (`path` only names it in errors). An empty file is
/// an empty configuration.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, OptionsError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(text).map_err(|source| OptionsError::ParseFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads and parses a `--config` file.
pub fn load_file(path: &Path) -> Result<FileConfig, OptionsError> {
    let text = std::fs::read_to_string(path).map_err(|source| OptionsError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

/// The log format in force.
pub fn log_format(flags: &Flags, file: &FileConfig) -> LogFormat {
    flags.log_format.or(file.log_format).unwrap_or_default()
}

/// The bpffs folder in force (all `rackd datapath uninstall` needs, so it is resolved apart
/// from the rest and a bad L2 flag cannot stop an uninstall).
pub fn pin_root(flags: &Flags, file: &FileConfig) -> PathBuf {
    flags
        .bpf_pin_root
        .clone()
        .or_else(|| file.bpf_pin_root.clone())
        .unwrap_or_else(|| datapath::DEFAULT_PIN_ROOT.into())
}

/// A Go duration option (`flag` names it in the error), or `default` when not given.
fn dur(flag: &'static str, v: Option<String>, default: Duration) -> Result<Duration, OptionsError> {
    match v {
        None => Ok(default),
        Some(value) => {
            crate::duration::parse_go_duration(&value).map_err(|source| OptionsError::Duration {
                flag,
                value,
                source,
            })
        }
    }
}

/// Merges flags over the file over the defaults; `hostname` is asked only when neither names
/// the node.
pub fn resolve(
    flags: Flags,
    file: FileConfig,
    hostname: impl FnOnce() -> String,
) -> Result<crate::daemon::Options, OptionsError> {
    let pin_root = pin_root(&flags, &file);
    let devices = if flags.devices.is_empty() {
        file.devices.clone().unwrap_or_default()
    } else {
        flags.devices.clone()
    };
    let services = service_lb(&flags, &file, &devices, &pin_root)?;
    let kubeconfig = flags
        .k8s_kubeconfig_path
        .clone()
        .or_else(|| file.k8s_kubeconfig_path.clone());
    let k8s = if flags.enable_k8s.or(file.enable_k8s) == Some(true) || kubeconfig.is_some() {
        let d = crate::k8s::lease::ElectionTimings::default();
        let election = crate::k8s::lease::ElectionTimings {
            lease_duration: dur(
                "leader-election-lease-duration",
                flags
                    .leader_election_lease_duration
                    .clone()
                    .or_else(|| file.leader_election_lease_duration.clone()),
                d.lease_duration,
            )?,
            renew_deadline: dur(
                "leader-election-renew-deadline",
                flags
                    .leader_election_renew_deadline
                    .clone()
                    .or_else(|| file.leader_election_renew_deadline.clone()),
                d.renew_deadline,
            )?,
            retry_period: dur(
                "leader-election-retry-period",
                flags
                    .leader_election_retry_period
                    .clone()
                    .or_else(|| file.leader_election_retry_period.clone()),
                d.retry_period,
            )?,
        };
        // client-go's rule: the leader must give up before others may take over.
        if election.renew_deadline >= election.lease_duration
            || election.retry_period.is_zero()
            || election.retry_period >= election.renew_deadline
        {
            return Err(OptionsError::ElectionTimings {
                lease_duration: election.lease_duration,
                renew_deadline: election.renew_deadline,
                retry_period: election.retry_period,
            });
        }
        Some(crate::k8s::K8sOptions {
            kubeconfig,
            api_server: flags
                .k8s_api_server
                .clone()
                .or_else(|| file.k8s_api_server.clone()),
            namespace: flags
                .k8s_namespace
                .clone()
                .or_else(|| file.k8s_namespace.clone())
                .unwrap_or_else(|| "kube-system".into()),
            election,
        })
    } else {
        None
    };
    let metrics_addr = match flags.metrics_addr.or(file.metrics_addr).as_deref() {
        None => Some(DEFAULT_METRICS_ADDR),
        Some("off") => None,
        Some(a) => Some(a.parse().map_err(|source| OptionsError::MetricsAddr {
            value: a.to_owned(),
            source,
        })?),
    };
    let l2 = if flags.enable_l2_announcements || file.enable_l2_announcements == Some(true) {
        let defaults = l2announcer::LeaseTimings::default();
        let timings = l2announcer::LeaseTimings {
            lease_duration: dur(
                "l2-announcements-lease-duration",
                flags
                    .l2_announcements_lease_duration
                    .or(file.l2_announcements_lease_duration),
                defaults.lease_duration,
            )?,
            renew_deadline: dur(
                "l2-announcements-renew-deadline",
                flags
                    .l2_announcements_renew_deadline
                    .or(file.l2_announcements_renew_deadline),
                defaults.renew_deadline,
            )?,
            retry_period: dur(
                "l2-announcements-retry-period",
                flags
                    .l2_announcements_retry_period
                    .or(file.l2_announcements_retry_period),
                defaults.retry_period,
            )?,
        };
        let endpoints = if flags.l2_etcd_endpoints.is_empty() {
            file.l2_etcd_endpoints.unwrap_or_default()
        } else {
            flags.l2_etcd_endpoints
        };
        let backend = match flags.l2_lease_backend.or(file.l2_lease_backend) {
            Some(BackendArg::Etcd) => {
                if endpoints.is_empty() {
                    return Err(OptionsError::EtcdWithoutEndpoints);
                }
                let mut prefix = flags
                    .l2_etcd_prefix
                    .or(file.l2_etcd_prefix)
                    .unwrap_or_else(|| "/rackd/l2/".into());
                if !prefix.ends_with('/') {
                    prefix.push('/');
                }
                LeaseBackendKind::Etcd { endpoints, prefix }
            }
            Some(BackendArg::Kubernetes) => match &k8s {
                Some(k) if endpoints.is_empty() => LeaseBackendKind::Kubernetes {
                    namespace: k.namespace.clone(),
                },
                Some(_) => return Err(OptionsError::EndpointsWithoutEtcd),
                None => return Err(OptionsError::KubernetesBackendWithoutK8s),
            },
            // On Kubernetes the nodes share the API server: its Leases are the default, as
            // Cilium's are.
            None if k8s.is_some() && endpoints.is_empty() => LeaseBackendKind::Kubernetes {
                namespace: k8s
                    .as_ref()
                    .map(|k| k.namespace.clone())
                    .unwrap_or_default(),
            },
            Some(BackendArg::Local) | None => {
                if !endpoints.is_empty() {
                    return Err(OptionsError::EndpointsWithoutEtcd);
                }
                LeaseBackendKind::Local
            }
        };
        Some(L2Options {
            backend,
            timings,
            devices,
            pin_root,
        })
    } else {
        None
    };
    Ok(crate::daemon::Options {
        node_name: flags.node_name.or(file.node_name).unwrap_or_else(hostname),
        // With Kubernetes the directory is read only when named (node-local files beside the
        // API); alone it is the configuration, /etc/rackd by default.
        config_dir: match (flags.config_dir.or(file.config_dir), &k8s) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some("/etc/rackd".into()),
        },
        state_dir: flags
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| "/var/lib/rackd".into()),
        admin_socket: flags
            .admin_socket
            .or(file.admin_socket)
            .unwrap_or_else(|| rackd_api::DEFAULT_SOCKET.into()),
        metrics_addr,
        poll_interval: Duration::from_millis(250),
        resync_interval: Duration::from_secs(60),
        bgp_secrets_namespace: flags
            .bgp_secrets_namespace
            .or(file.bgp_secrets_namespace)
            .unwrap_or_else(|| "kube-system".into()),
        // Table 0 is no table (the kernel's "unspecified"): treat it as off.
        fib_table: flags.fib_table.or(file.fib_table).filter(|t| *t != 0),
        l2,
        services,
        k8s,
    })
}

/// The service datapath's options, `None` unless `--kube-proxy-replacement`.
fn service_lb(
    flags: &Flags,
    file: &FileConfig,
    devices: &[String],
    pin_root: &Path,
) -> Result<Option<ServiceLbOptions>, OptionsError> {
    let on = |f: Option<bool>, file: Option<bool>, default: bool| f.or(file).unwrap_or(default);
    let kpr = on(
        flags.kube_proxy_replacement,
        file.kube_proxy_replacement,
        false,
    );
    let masq = on(
        flags.enable_bpf_masquerade,
        file.enable_bpf_masquerade,
        false,
    );
    let egress_gateway = on(
        flags.enable_egress_gateway,
        file.enable_egress_gateway,
        false,
    );
    if egress_gateway && !(kpr && masq) {
        return Err(OptionsError::EgressGatewayWithoutMasquerade);
    }
    if !kpr {
        return if masq {
            Err(OptionsError::MasqueradeWithoutDatapath)
        } else {
            Ok(None)
        };
    }
    let masquerade = masq.then(|| MasqueradeOptions {
        ipv4: on(
            flags.enable_ipv4_masquerade,
            file.enable_ipv4_masquerade,
            true,
        ),
        ipv6: on(
            flags.enable_ipv6_masquerade,
            file.enable_ipv6_masquerade,
            true,
        ),
        ip_masq_agent: on(flags.enable_ip_masq_agent, file.enable_ip_masq_agent, false).then(
            || {
                flags
                    .ip_masq_agent_config_path
                    .clone()
                    .or_else(|| file.ip_masq_agent_config_path.clone())
                    .unwrap_or_else(|| DEFAULT_IP_MASQ_AGENT_CONFIG.into())
            },
        ),
    });
    let table_size = match flags
        .bpf_lb_maglev_table_size
        .or(file.bpf_lb_maglev_table_size)
    {
        None => TableSize::DEFAULT,
        Some(n) => TableSize::new(u64::from(n)).map_err(OptionsError::Maglev)?,
    };
    let seed = match flags
        .bpf_lb_maglev_hash_seed
        .as_deref()
        .or(file.bpf_lb_maglev_hash_seed.as_deref())
    {
        None => HashSeed::default(),
        Some(s) => s.parse().map_err(OptionsError::Maglev)?,
    };
    let maglev = rackd_services::maglev::MaglevConfig { table_size, seed };
    Ok(Some(ServiceLbOptions {
        devices: devices.to_vec(),
        pin_root: pin_root.to_owned(),
        maglev,
        map_max: match flags.bpf_lb_map_max.or(file.bpf_lb_map_max) {
            None => DEFAULT_LB_MAP_MAX,
            Some(0) => return Err(OptionsError::LbMapMax),
            Some(n) => n,
        },
        masquerade,
        egress_gateway,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileConfig, OptionsError> {
        parse_file(Path::new("rackd.yaml"), text)
    }

    fn host() -> String {
        "from-hostname".into()
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let o = resolve(Flags::default(), FileConfig::default(), host).unwrap();
        assert_eq!(o.node_name, "from-hostname");
        assert_eq!(o.config_dir, Some(PathBuf::from("/etc/rackd")));
        assert_eq!(o.state_dir, PathBuf::from("/var/lib/rackd"));
        assert_eq!(o.admin_socket, PathBuf::from(rackd_api::DEFAULT_SOCKET));
        assert_eq!(o.metrics_addr, Some(DEFAULT_METRICS_ADDR));
        assert_eq!(o.bgp_secrets_namespace, "kube-system");
        assert_eq!(o.fib_table, None);
        assert!(o.l2.is_none());
        assert_eq!(
            log_format(&Flags::default(), &FileConfig::default()),
            LogFormat::Text
        );
    }

    #[test]
    fn the_file_sets_options_and_flags_win_over_it() {
        let f = file(
            "node-name: node7\nconfig-dir: /srv/cfg\nmetrics-addr: off\nlog-format: json\n\
             fib-table: 150\nenable-l2-announcements: true\nl2-lease-backend: etcd\n\
             l2-etcd-endpoints: [http://10.0.0.5:2379]\nl2-etcd-prefix: /x\n\
             l2-announcements-lease-duration: 1s\ndevices: [eth+]\nbpf-pin-root: /sys/fs/bpf/r\n",
        )
        .unwrap();
        let flags = Flags {
            node_name: Some("node8".into()),
            log_format: Some(LogFormat::Text),
            ..Flags::default()
        };
        assert_eq!(log_format(&flags, &f), LogFormat::Text);
        assert_eq!(log_format(&Flags::default(), &f), LogFormat::Json);
        let o = resolve(flags, f, || unreachable!("the name is given")).unwrap();
        assert_eq!(o.node_name, "node8");
        assert_eq!(o.config_dir, Some(PathBuf::from("/srv/cfg")));
        assert_eq!(o.metrics_addr, None);
        assert_eq!(o.fib_table, Some(150));
        let l2 = o.l2.unwrap();
        assert_eq!(l2.timings.lease_duration, Duration::from_secs(1));
        assert_eq!(l2.devices, vec!["eth+".to_owned()]);
        assert_eq!(l2.pin_root, PathBuf::from("/sys/fs/bpf/r"));
        match l2.backend {
            LeaseBackendKind::Etcd { endpoints, prefix } => {
                assert_eq!(endpoints, vec!["http://10.0.0.5:2379".to_owned()]);
                assert_eq!(prefix, "/x/");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_file_is_an_empty_configuration() {
        assert!(file("").unwrap().node_name.is_none());
        assert!(file("# only a comment\n").unwrap().node_name.is_none());
    }

    #[test]
    fn malformed_files_are_refused_with_the_file_named() {
        for (text, want) in [
            ("node-nmae: x\n", "unknown field `node-nmae`"),
            ("fib-table: main\n", "fib-table"),
            ("fib-table: -1\n", "fib-table"),
            ("log-format: xml\n", "unknown variant `xml`"),
            (
                "enable-l2-announcements: maybe\n",
                "enable-l2-announcements",
            ),
            ("devices: eth0\n", "devices"),
            ("- node-name: x\n", "expected struct FileConfig"),
            ("just a string\n", "expected struct FileConfig"),
            ("node-name: [unclosed\n", "node-name"),
            ("node-name: a\nnode-name: b\n", "duplicate"),
        ] {
            let e = file(text).unwrap_err();
            let OptionsError::ParseFile {
                ref path,
                ref source,
            } = e
            else {
                panic!("{text:?}: {e:?}");
            };
            assert_eq!(path, Path::new("rackd.yaml"));
            let msg = source.to_string();
            assert!(msg.contains(want), "{text:?}: {msg}");
            assert!(e.to_string().contains("rackd.yaml"), "{e}");
        }
    }

    #[test]
    fn an_unreadable_file_names_the_path() {
        let e = load_file(Path::new("/nonexistent/rackd.yaml")).unwrap_err();
        assert!(matches!(e, OptionsError::ReadFile { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/rackd.yaml"), "{e}");
    }

    #[test]
    fn l2_on_kubernetes_defaults_to_kubernetes_leases_and_needs_the_api() {
        let l2k8s = |b: Option<BackendArg>, k8s: bool| Flags {
            enable_l2_announcements: true,
            l2_lease_backend: b,
            enable_k8s: k8s.then_some(true),
            k8s_namespace: Some("rackd".into()),
            ..Flags::default()
        };
        for b in [None, Some(BackendArg::Kubernetes)] {
            let o = resolve(l2k8s(b, true), FileConfig::default(), host).unwrap();
            assert!(
                matches!(
                    o.l2.unwrap().backend,
                    LeaseBackendKind::Kubernetes { ref namespace } if namespace == "rackd"
                ),
                "{b:?}"
            );
        }
        // Without the API: local stays the default, and kubernetes is refused.
        let o = resolve(l2k8s(None, false), FileConfig::default(), host).unwrap();
        assert!(matches!(o.l2.unwrap().backend, LeaseBackendKind::Local));
        let e = resolve(
            l2k8s(Some(BackendArg::Kubernetes), false),
            FileConfig::default(),
            host,
        )
        .unwrap_err();
        assert!(
            matches!(e, OptionsError::KubernetesBackendWithoutK8s),
            "{e:?}"
        );
        // etcd stays available on Kubernetes when asked for.
        let o = resolve(
            Flags {
                l2_etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
                ..l2k8s(Some(BackendArg::Etcd), true)
            },
            FileConfig::default(),
            host,
        )
        .unwrap();
        assert!(matches!(
            o.l2.unwrap().backend,
            LeaseBackendKind::Etcd { .. }
        ));
    }

    #[test]
    fn bad_values_name_the_option_and_what_was_expected() {
        let bad_metrics = Flags {
            metrics_addr: Some("localhost".into()),
            ..Flags::default()
        };
        let e = resolve(bad_metrics, FileConfig::default(), host).unwrap_err();
        assert!(matches!(e, OptionsError::MetricsAddr { .. }), "{e:?}");
        assert!(e.to_string().contains("\"localhost\""), "{e}");

        let l2 = |f: Flags| Flags {
            enable_l2_announcements: true,
            ..f
        };
        let e = resolve(
            l2(Flags {
                l2_announcements_renew_deadline: Some("5 seconds".into()),
                ..Flags::default()
            }),
            FileConfig::default(),
            host,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("--l2-announcements-renew-deadline \"5 seconds\""),
            "{e}"
        );
        let e = resolve(
            l2(Flags::default()),
            file("l2-announcements-retry-period: -2s\n").unwrap(),
            host,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                OptionsError::Duration {
                    source: DurationError::Negative,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = resolve(
            l2(Flags {
                l2_lease_backend: Some(BackendArg::Etcd),
                ..Flags::default()
            }),
            FileConfig::default(),
            host,
        )
        .unwrap_err();
        assert!(matches!(e, OptionsError::EtcdWithoutEndpoints), "{e:?}");
        let e = resolve(
            l2(Flags {
                l2_etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
                ..Flags::default()
            }),
            FileConfig::default(),
            host,
        )
        .unwrap_err();
        assert!(matches!(e, OptionsError::EndpointsWithoutEtcd), "{e:?}");
    }

    #[test]
    fn l2_flags_are_not_checked_while_l2_is_off_and_table_zero_is_off() {
        let o = resolve(
            Flags {
                l2_announcements_lease_duration: Some("nonsense".into()),
                fib_table: Some(0),
                ..Flags::default()
            },
            FileConfig::default(),
            host,
        )
        .unwrap();
        assert!(o.l2.is_none());
        assert_eq!(o.fib_table, None);
    }

    #[test]
    fn service_datapath_flags_follow_cilium_names_and_defaults() {
        let o = resolve(Flags::default(), FileConfig::default(), host).unwrap();
        assert_eq!(o.services, None, "off unless --kube-proxy-replacement");
        let f = file(
            "kube-proxy-replacement: true\ndevices: [eth1]\nenable-bpf-masquerade: true\n\
             enable-ipv6-masquerade: false\nenable-ip-masq-agent: true\n\
             bpf-lb-maglev-table-size: 1021\nbpf-lb-algorithm: maglev\n",
        )
        .unwrap();
        let s = resolve(Flags::default(), f, host)
            .unwrap()
            .services
            .unwrap();
        assert_eq!(s.devices, vec!["eth1".to_owned()]);
        assert_eq!(s.maglev.table_size.get(), 1021);
        assert_eq!(s.maglev.seed, HashSeed::default());
        assert_eq!(s.map_max, DEFAULT_LB_MAP_MAX);
        let m = s.masquerade.unwrap();
        assert!(m.ipv4 && !m.ipv6);
        assert_eq!(
            m.ip_masq_agent,
            Some(PathBuf::from(DEFAULT_IP_MASQ_AGENT_CONFIG))
        );
        // A flag wins over the file, and `--flag=false` turns a file's `true` off.
        let s = resolve(
            Flags {
                kube_proxy_replacement: Some(true),
                bpf_lb_maglev_table_size: Some(251),
                ..Flags::default()
            },
            file("bpf-lb-maglev-table-size: 1021\n").unwrap(),
            host,
        )
        .unwrap()
        .services
        .unwrap();
        assert_eq!((s.maglev.table_size.get(), s.masquerade), (251, None));
        let o = resolve(
            Flags {
                kube_proxy_replacement: Some(false),
                ..Flags::default()
            },
            file("kube-proxy-replacement: true\n").unwrap(),
            host,
        )
        .unwrap();
        assert_eq!(o.services, None);
    }

    #[test]
    fn masquerade_needs_the_service_datapath_and_bad_values_are_refused() {
        let e = resolve(
            Flags {
                enable_bpf_masquerade: Some(true),
                ..Flags::default()
            },
            FileConfig::default(),
            host,
        )
        .unwrap_err();
        assert!(
            matches!(e, OptionsError::MasqueradeWithoutDatapath),
            "{e:?}"
        );
        for (text, want) in [
            ("kube-proxy-replacement: strict\n", "kube-proxy-replacement"),
            (
                "bpf-lb-algorithm: roundrobin\n",
                "unknown variant `roundrobin`",
            ),
            ("bpf-lb-maglev-table-size: -3\n", "bpf-lb-maglev-table-size"),
            ("enable-bpf-masquerade: 2\n", "enable-bpf-masquerade"),
        ] {
            let e = file(text).unwrap_err();
            assert!(e.to_string().contains("rackd.yaml"), "{e}");
            let OptionsError::ParseFile { source, .. } = e else {
                panic!("{text:?}")
            };
            assert!(source.to_string().contains(want), "{text:?}: {source}");
        }
    }

    #[test]
    fn kubernetes_follows_cilium_flags_and_reads_the_directory_only_when_named() {
        let o = resolve(Flags::default(), FileConfig::default(), host).unwrap();
        assert!(o.k8s.is_none(), "off by default (plain Linux)");

        let o = resolve(
            Flags {
                enable_k8s: Some(true),
                ..Flags::default()
            },
            FileConfig::default(),
            host,
        )
        .unwrap();
        assert_eq!(o.k8s, Some(crate::k8s::K8sOptions::default()), "in-cluster");
        assert_eq!(
            o.config_dir, None,
            "no /etc/rackd beside the API unless named"
        );

        let o = resolve(
            Flags {
                k8s_kubeconfig_path: Some("/etc/kubernetes/rackd.conf".into()),
                config_dir: Some("/etc/rackd/local".into()),
                ..Flags::default()
            },
            parse_file(
                Path::new("rackd.yaml"),
                "k8s-api-server: https://10.0.0.1:6443\n",
            )
            .unwrap(),
            host,
        )
        .unwrap();
        let k = o.k8s.unwrap();
        assert_eq!(
            k.kubeconfig.as_deref(),
            Some(Path::new("/etc/kubernetes/rackd.conf")),
            "a kubeconfig implies --enable-k8s"
        );
        assert_eq!(k.api_server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(o.config_dir, Some(PathBuf::from("/etc/rackd/local")));

        let e = resolve(
            Flags {
                enable_k8s: Some(true),
                leader_election_renew_deadline: Some("20s".into()),
                ..Flags::default()
            },
            FileConfig::default(),
            host,
        )
        .unwrap_err();
        assert!(matches!(e, OptionsError::ElectionTimings { .. }), "{e:?}");
        assert!(e.to_string().contains("renew deadline (20s)"), "{e}");

        let e = parse_file(Path::new("rackd.yaml"), "enable-k8s: maybe\n").unwrap_err();
        assert!(e.to_string().contains("rackd.yaml"), "{e}");
    }
}
