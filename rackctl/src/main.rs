//! rackctl: the rackd CLI.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rackctl::{print, print_egress, print_lb, routes_args};

/// Write to stdout; a closed pipe (`rackctl ... | head`) ends the program quietly instead of
/// panicking like `print!` does.
fn write_out(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("Error: writing output: {e}");
        std::process::exit(1);
    }
}

macro_rules! out {
    ($($t:tt)*) => { write_out(&format!($($t)*)) };
}

macro_rules! outln {
    ($($t:tt)*) => { write_out(&format!("{}\n", format!($($t)*))) };
}
use rackd_api::{Reply, Request};

#[derive(Parser, Debug)]
#[command(name = "rackctl", version, about = "Control and inspect rackd")]
struct Cli {
    /// Admin socket of the rackd to talk to.
    #[arg(long, global = true, env = "RACKD_SOCKET", default_value = rackd_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Daemon summary.
    Status,
    /// BGP control plane.
    Bgp {
        #[command(subcommand)]
        cmd: BgpCmd,
    },
    /// LoadBalancer IPAM.
    Lbipam {
        #[command(subcommand)]
        cmd: LbipamCmd,
    },
    /// L2 announcements.
    L2 {
        #[command(subcommand)]
        cmd: L2Cmd,
    },
    /// The service datapath (like `cilium service ...`).
    Service {
        #[command(subcommand)]
        cmd: ServiceCmd,
    },
    /// The egress gateway's policies, their gateways and this node's part.
    Egress {
        #[command(subcommand)]
        cmd: EgressCmd,
    },
    /// The datapath's maps (like `cilium-dbg bpf ...`).
    Bpf {
        #[command(subcommand)]
        cmd: BpfCmd,
    },
    /// Offline configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Check a configuration directory exactly as rackd would load it; exits 1 on errors.
    Validate {
        dir: PathBuf,
        /// Namespace of BGP auth Secrets (Cilium's --bgp-secrets-namespace).
        #[arg(long, default_value = "kube-system")]
        bgp_secrets_namespace: String,
    },
}

#[derive(Subcommand, Debug)]
enum BgpCmd {
    /// Peers and their per-family route counts (like `cilium bgp peers`).
    #[command(alias = "neighbors")]
    Peers,
    /// `routes [available|advertised|received] [afi] [safi] [vrouter ASN] [peer ADDR]`.
    Routes {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// This node's CiliumBGPNodeConfig: the instances and peers it runs, with their status.
    NodeConfig,
    /// Route policies rendered from advertisements.
    #[command(alias = "rps")]
    RoutePolicies {
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum LbipamCmd {
    /// Pools, like `kubectl get ciliumloadbalancerippools`.
    Pools,
    /// Services with their LoadBalancer IPs and condition.
    Services,
}

#[derive(Subcommand, Debug)]
enum L2Cmd {
    /// IP groups, their lease holder and age.
    Leases,
    /// What this node's datapath answers for.
    Announcements,
}

#[derive(Subcommand, Debug)]
enum ServiceCmd {
    /// Frontends and their backends (`cilium service list`).
    List,
}

#[derive(Subcommand, Debug)]
enum EgressCmd {
    /// Each CiliumEgressGatewayPolicy: selected pods, gateway groups (candidates, active
    /// node, egress address), entries and conditions.
    Policies,
}

#[derive(Subcommand, Debug)]
enum BpfCmd {
    /// Service map entries (`cilium-dbg bpf lb list`).
    Lb {
        #[command(subcommand)]
        cmd: ListCmd,
    },
    /// Connection tracking entries (`cilium-dbg bpf ct list global`).
    Ct {
        #[command(subcommand)]
        cmd: CtCmd,
    },
    /// NAT entries (`cilium-dbg bpf nat list`).
    Nat {
        #[command(subcommand)]
        cmd: ListCmd,
    },
    /// Egress gateway policy entries (`cilium-dbg bpf egress list`).
    Egress {
        #[command(subcommand)]
        cmd: ListCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ListCmd {
    /// List the entries.
    #[command(alias = "ls")]
    List,
}

#[derive(Subcommand, Debug)]
enum CtCmd {
    /// List the entries (`global` accepted, as in Cilium: rackd has one table).
    List {
        #[arg(value_parser = ["global"])]
        table: Option<String>,
    },
}

fn call(socket: &Path, req: &Request) -> anyhow::Result<Reply> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to rackd at {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    rackd_api::write_message(&stream, req).context("sending request")?;
    let reply: Reply = rackd_api::read_message(BufReader::new(&stream)).context("reading reply")?;
    if let Reply::Error(e) = reply {
        bail!("rackd: {e}");
    }
    Ok(reply)
}

/// Cilium prints JSON with one-space indentation.
fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(out)?)
}

fn node_name(socket: &Path) -> anyhow::Result<String> {
    match call(socket, &Request::Status)? {
        Reply::Status(s) => Ok(s.node),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let sock = &cli.socket;
    let is_json = cli.output == Output::Json;
    match cli.cmd {
        Cmd::Config {
            cmd:
                ConfigCmd::Validate {
                    dir,
                    bgp_secrets_namespace,
                },
        } => {
            let r = rackctl::validate::validate_dir(&dir, &bgp_secrets_namespace)?;
            out!("{}", r.text);
            if r.errors > 0 {
                std::process::exit(1);
            }
        }
        Cmd::Status => match call(sock, &Request::Status)? {
            Reply::Status(s) if is_json => outln!("{}", json(&s)?),
            Reply::Status(s) => out!("{}", print::status_text(&s)),
            other => bail!("unexpected reply {other:?}"),
        },
        Cmd::Bgp { cmd: BgpCmd::Peers } => {
            let node = node_name(sock)?;
            let Reply::BgpPeers(peers) = call(sock, &Request::BgpPeers)? else {
                bail!("unexpected reply");
            };
            if is_json {
                let m: BTreeMap<_, _> = [(node, peers)].into_iter().collect();
                outln!("{}", json(&m)?);
            } else {
                out!("{}", print::peers_table(&[(node, peers)]));
            }
        }
        Cmd::Bgp {
            cmd: BgpCmd::Routes { args },
        } => {
            let a = routes_args::parse(&args)?;
            let node = node_name(sock)?;
            let req = Request::BgpRoutes {
                table: a.table.to_owned(),
                afi: a.afi.clone(),
                safi: a.safi.clone(),
                neighbor: a.neighbor.map(|n| n.to_string()),
                router_asn: a.router_asn,
            };
            let Reply::BgpRoutes(routes) = call(sock, &req)? else {
                bail!("unexpected reply");
            };
            if is_json {
                let m: BTreeMap<_, _> = [(node, routes)].into_iter().collect();
                outln!("{}", json(&m)?);
            } else {
                if a.defaulted {
                    outln!(
                        "(Defaulting to `available ipv4 unicast` routes, please see help for more options)\n"
                    );
                }
                out!(
                    "{}",
                    print::routes_table(&node, a.table == "adj-rib-out", &routes)
                );
            }
        }
        Cmd::Bgp {
            cmd: BgpCmd::NodeConfig,
        } => {
            let Reply::BgpNodeConfig(nc) = call(sock, &Request::BgpNodeConfig)? else {
                bail!("unexpected reply");
            };
            if is_json {
                outln!("{}", json(&nc)?);
            } else {
                out!("{}", serde_yaml_ng::to_string(&nc)?);
            }
        }
        Cmd::Bgp {
            cmd: BgpCmd::RoutePolicies { args },
        } => {
            let router_asn = match args.as_slice() {
                [] => None,
                [kw, asn] if kw == "vrouter" => Some(
                    asn.parse::<u32>()
                        .with_context(|| format!("invalid vrouter ASN {asn:?}"))?,
                ),
                _ => bail!("usage: rackctl bgp route-policies [vrouter ASN]"),
            };
            let Reply::BgpRoutePolicies(p) = call(sock, &Request::BgpRoutePolicies { router_asn })?
            else {
                bail!("unexpected reply");
            };
            if is_json {
                outln!("{}", json(&p)?);
            } else {
                out!("{}", print::route_policies_table(&p));
            }
        }
        Cmd::Lbipam { cmd } => {
            let req = match cmd {
                LbipamCmd::Pools => Request::LbipamPools,
                LbipamCmd::Services => Request::LbipamServices,
            };
            match call(sock, &req)? {
                Reply::LbipamPools(p) if is_json => outln!("{}", json(&p)?),
                Reply::LbipamPools(p) => out!("{}", print::pools_table(&p)),
                Reply::LbipamServices(s) if is_json => outln!("{}", json(&s)?),
                Reply::LbipamServices(s) => out!("{}", print::services_table(&s)),
                other => bail!("unexpected reply {other:?}"),
            }
        }
        Cmd::Service {
            cmd: ServiceCmd::List,
        } => match call(sock, &Request::ServiceList)? {
            Reply::ServiceList(s) if is_json => outln!("{}", json(&s)?),
            Reply::ServiceList(s) => out!("{}", print_lb::services_table(&s)),
            other => bail!("unexpected reply {other:?}"),
        },
        Cmd::Bpf { cmd } => {
            let req = match cmd {
                BpfCmd::Lb { .. } => Request::BpfLbList,
                BpfCmd::Ct { .. } => Request::BpfCtList,
                BpfCmd::Nat { .. } => Request::BpfNatList,
                BpfCmd::Egress { .. } => Request::BpfEgressList,
            };
            match call(sock, &req)? {
                Reply::BpfLbList(e) if is_json => outln!("{}", json(&e)?),
                Reply::BpfLbList(e) => out!("{}", print_lb::lb_map_table(&e)),
                Reply::BpfCtList(e) if is_json => outln!("{}", json(&e)?),
                Reply::BpfCtList(e) => out!("{}", print_lb::ct_list(&e)),
                Reply::BpfNatList(e) if is_json => outln!("{}", json(&e)?),
                Reply::BpfNatList(e) => out!("{}", print_lb::nat_list(&e)),
                Reply::BpfEgressList(e) if is_json => outln!("{}", json(&e)?),
                // cilium-dbg's words, on stderr, when the map is empty.
                Reply::BpfEgressList(e) if e.is_empty() => eprintln!("No entries found."),
                Reply::BpfEgressList(e) => out!("{}", print_egress::egress_list(&e)),
                other => bail!("unexpected reply {other:?}"),
            }
        }
        Cmd::Egress {
            cmd: EgressCmd::Policies,
        } => match call(sock, &Request::EgressPolicies)? {
            Reply::EgressPolicies(p) if is_json => outln!("{}", json(&p)?),
            Reply::EgressPolicies(p) => out!("{}", print_egress::egress_policies(&p)),
            other => bail!("unexpected reply {other:?}"),
        },
        Cmd::L2 { cmd } => {
            let req = match cmd {
                L2Cmd::Leases => Request::L2Leases,
                L2Cmd::Announcements => Request::L2Announcements,
            };
            match call(sock, &req)? {
                Reply::L2Leases(l) if is_json => outln!("{}", json(&l)?),
                Reply::L2Leases(l) => out!("{}", print::leases_table(&l)),
                Reply::L2Announcements(a) if is_json => outln!("{}", json(&a)?),
                Reply::L2Announcements(a) => out!("{}", print::announcements_table(&a)),
                other => bail!("unexpected reply {other:?}"),
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
