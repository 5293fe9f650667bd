//! `rackd-lab up|down|exec|status FILE` and `rackd-lab echo`: see the crate docs and README.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rackd_lab::echo::{self, Echo, EchoConfig};
use rackd_lab::{LabError, Options, lab, topo};

#[derive(Parser, Debug)]
#[command(
    name = "rackd-lab",
    version,
    about = "Run a containerlab topology with network namespaces, FRR and rackd (no containers)"
)]
struct Cli {
    /// Lab name instead of the file's `name:` (to run a private copy next to another).
    #[arg(long, global = true, env = "RACKD_LAB_NAME")]
    name: Option<String>,
    /// Directory with the rackd and rackctl binaries (default: this workspace's target dir,
    /// whichever of release and debug was built last).
    #[arg(long, global = true, env = "RACKD_LAB_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the namespaces and links, run the exec lines, start the daemons.
    /// An error if the lab is already up.
    Up {
        /// The .clab.yml file.
        file: PathBuf,
    },
    /// Stop what `up` started and delete the namespaces and state (nothing to do if not up).
    Down {
        /// The .clab.yml file (only its name is used).
        file: PathBuf,
    },
    /// Run a command inside a node (`vtysh` on FRR nodes and `rackctl` on rackd nodes talk to
    /// that node's daemons).
    Exec {
        /// The .clab.yml file (only its name is used).
        file: PathBuf,
        /// The node.
        node: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Show nodes, namespaces and processes; exit 1 if the lab is not up or something died.
    Status {
        /// The .clab.yml file (only its name is used).
        file: PathBuf,
    },
    /// Serve what the lab's pods serve: every HTTP request on the TCP addresses and every UDP
    /// datagram is answered with `pod=NAME client=IP:PORT`; `GET /stream?bytes=N[&chunk=C]
    /// [&interval_ms=D]` sends N bytes slowly. Runs until killed; needs no root for ports
    /// above 1023.
    Echo {
        /// The name in every answer (default: $POD_NAME, else the host name).
        #[arg(long, env = "POD_NAME")]
        name: Option<String>,
        /// TCP address for HTTP (repeatable; IPv6 addresses are IPv6-only).
        #[arg(long = "http", value_name = "ADDR", default_values = ["0.0.0.0:80", "[::]:80"])]
        http: Vec<SocketAddr>,
        /// UDP address for the echo (repeatable; IPv6 addresses are IPv6-only).
        #[arg(long = "udp", value_name = "ADDR", default_values = ["0.0.0.0:5353", "[::]:5353"])]
        udp: Vec<SocketAddr>,
        /// Serve no HTTP.
        #[arg(long)]
        no_http: bool,
        /// Serve no UDP.
        #[arg(long)]
        no_udp: bool,
    },
    /// Send one UDP datagram and print the answer (the lab's client has no `nc`): exit 0 with
    /// the answer on stdout, 1 if none came within the timeout, 3 if it came from another
    /// address than the one probed (a reverse translation gone wrong).
    UdpProbe {
        /// Where to send it (`10.1.1.11:5353`, `[fd00:10:1:1::11]:5353`).
        addr: SocketAddr,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// The datagram's payload.
        #[arg(long, default_value = "probe")]
        payload: String,
    },
}

fn progress(msg: &str) {
    eprintln!("rackd-lab: {msg}");
}

/// The lab name without insisting on a valid file: `down --name X` must work even after the
/// file was broken or deleted.
fn lab_name(file: &Path, name: Option<&str>) -> anyhow::Result<String> {
    if let Some(n) = name {
        return Ok(n.to_owned());
    }
    Ok(topo::load(file, None)?.name)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rackd-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The host name (containerlab names a container's host after its node).
fn hostname() -> anyhow::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into `buf`, which we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("gethostname");
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned())
}

fn run_echo(cfg: EchoConfig) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    rt.block_on(async {
        let server = Echo::bind(&cfg)?;
        // The first line tells a caller that bound port 0 which ports it got.
        eprintln!(
            "echo: pod={} http {:?} udp {:?}",
            cfg.name,
            server.http_addrs(),
            server.udp_addrs()
        );
        server.run().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::FAILURE)
}

fn real_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let opts = Options {
        bin_dir: cli.bin_dir.clone(),
    };
    let name = cli.name.as_deref();
    // The echo server and the probe need no root (the lab runs it as root for port 80).
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if !matches!(cli.cmd, Cmd::Echo { .. } | Cmd::UdpProbe { .. })
        && unsafe { libc::geteuid() } != 0
    {
        anyhow::bail!(
            "rackd-lab needs root (network namespaces, /run/rackd-lab): run it with sudo"
        );
    }
    match cli.cmd {
        Cmd::Up { file } => {
            let t = topo::load(&file, name)?;
            let st = lab::up(&t, &opts, &progress)?;
            let (report, _) = lab::status(&st);
            print!("{report}");
            let flag = name.map(|n| format!(" --name {n}")).unwrap_or_default();
            println!(
                "lab {} is up; try: rackd-lab{flag} exec {} node1 rackctl bgp peers",
                st.lab,
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { file } => {
            let lab = lab_name(&file, name)?;
            match lab::down(&lab, &progress)? {
                None => println!("lab {lab} is not up; nothing to do"),
                Some(warnings) => {
                    for w in warnings {
                        eprintln!("rackd-lab: warning: {w}");
                    }
                    println!("lab {lab} is down");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { file, node, cmd } => {
            let lab = lab_name(&file, name)?;
            let st = lab::load_state(&lab)?;
            let status = lab::exec(&st, &node, &cmd, &opts)?;
            Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                None => ExitCode::from(128 + 1),
            })
        }
        Cmd::Status { file } => {
            let lab = lab_name(&file, name)?;
            match lab::load_state(&lab) {
                Ok(st) => {
                    let (report, healthy) = lab::status(&st);
                    print!("{report}");
                    Ok(if healthy {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                Err(e @ LabError::NotUp { .. }) => {
                    println!("{e}");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e).context("reading lab state"),
            }
        }
        Cmd::Echo {
            name,
            http,
            udp,
            no_http,
            no_udp,
        } => {
            let name = match name {
                Some(n) => n,
                None => hostname()?,
            };
            run_echo(EchoConfig {
                name,
                http: if no_http { Vec::new() } else { http },
                udp: if no_udp { Vec::new() } else { udp },
                log_requests: true,
            })
        }
        Cmd::UdpProbe {
            addr,
            timeout_ms,
            payload,
        } => {
            let r = echo::udp_probe(
                addr,
                payload.as_bytes(),
                std::time::Duration::from_millis(timeout_ms.max(1)),
            )
            .with_context(|| format!("no UDP answer from {addr} within {timeout_ms} ms"))?;
            print!("{}", r.text);
            if r.from != addr {
                eprintln!(
                    "rackd-lab: the answer came from {}, not from {addr} (probed from {})",
                    r.from, r.local
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
