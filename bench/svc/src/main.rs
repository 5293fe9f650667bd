//! `svc-bench`: the service datapath benchmarks (see README.md).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use svc_bench::forward::{self, ForwardConfig, Mode};
use svc_bench::loadgen::Test;
use svc_bench::model::{Policy, Shape, Workload};
use svc_bench::program::{self, IptCase, ProgramConfig, System};
use svc_bench::{kubeproxy, report};

#[derive(Debug, Parser)]
#[command(about = "Service datapath benchmarks: rackd vs kube-proxy's iptables and IPVS")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Benchmark A: programming N Services x K backends, and one Service changed.
    Program {
        /// Services.
        #[arg(long, default_value_t = 27_000)]
        services: u32,
        /// Backends per Service.
        #[arg(long, default_value_t = 10)]
        backends: u32,
        /// Service shape.
        #[arg(long, value_enum, default_value_t = Shape::LoadBalancer)]
        shape: Shape,
        /// externalTrafficPolicy.
        #[arg(long, value_enum, default_value_t = Policy::Cluster)]
        policy: Policy,
        /// Repetitions.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Systems (repeatable; default: all).
        #[arg(long = "system", value_enum)]
        systems: Vec<System>,
        /// Maglev table size (a Cilium prime).
        #[arg(long, default_value_t = 16381)]
        lut_size: u32,
        /// iptables cases (repeatable; default: full-flush, full, resync, one-change).
        #[arg(long = "iptables-case", value_enum)]
        iptables_cases: Vec<IptCase>,
        /// Time limit of one restore, seconds (killed and recorded as timed out past it).
        #[arg(long, default_value_t = 300.0)]
        restore_timeout: f64,
        /// CI size: 100 Services, 2 repetitions, M = 251.
        #[arg(long)]
        smoke: bool,
        /// Results file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Benchmark D: the kernel's cost of one Maglev chunk, 4,096-byte values against
    /// 4,000-byte ones (the datapath's layout versions 1 and 2).
    ChunkSizes {
        /// Updates per map.
        #[arg(long, default_value_t = 200_000)]
        entries: u32,
        /// Repetitions (each fills one map of each size).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Results file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Benchmark B: forwarding through one node (two for the egress gateway).
    Forward {
        /// Modes (repeatable; default: the service modes, then the masquerade ones; the egress
        /// gateway's, egress-none and egress-rackd, only when asked for).
        #[arg(long = "mode", value_enum)]
        modes: Vec<Mode>,
        /// Tests (repeatable; default: connect, keep-alive, udp, flows; flows runs only in the
        /// modes without SNAT).
        #[arg(long = "test", value_enum)]
        tests: Vec<Test>,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds per test.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Warm-up seconds before each test.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Load generator workers.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Server threads per backend.
        #[arg(long, default_value_t = 16)]
        server_threads: usize,
        /// Generator CPUs (comma separated; default 0).
        #[arg(long, value_delimiter = ',')]
        client_cpus: Option<Vec<usize>>,
        /// Server CPUs (comma separated; default 1).
        #[arg(long, value_delimiter = ',')]
        server_cpus: Option<Vec<usize>>,
        /// Services loaded into iptables/IPVS/rackd around the measured one.
        #[arg(long, default_value_t = 1)]
        services_loaded: u32,
        /// CI size: 1 round, 1 s tests, 2 workers.
        #[arg(long)]
        smoke: bool,
        /// Results file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prints the Markdown table of results files (what the README shows).
    Table {
        /// JSON results files.
        files: Vec<PathBuf>,
    },
    /// Prints kube-proxy's iptables-restore input for a workload (for inspection).
    GenIptables {
        /// Services.
        #[arg(long, default_value_t = 3)]
        services: u32,
        /// Backends per Service.
        #[arg(long, default_value_t = 3)]
        backends: u32,
        /// Service shape.
        #[arg(long, value_enum, default_value_t = Shape::LoadBalancer)]
        shape: Shape,
        /// externalTrafficPolicy.
        #[arg(long, value_enum, default_value_t = Policy::Cluster)]
        policy: Policy,
    },
    /// Prints the `ipvsadm -R` input for a workload.
    GenIpvs {
        /// Services.
        #[arg(long, default_value_t = 3)]
        services: u32,
        /// Backends per Service.
        #[arg(long, default_value_t = 3)]
        backends: u32,
    },
}

fn date() -> String {
    svc_bench::machine::utc(std::time::SystemTime::now())
        .get(..10)
        .unwrap_or("undated")
        .to_owned()
}

fn log(line: &str) {
    eprintln!("{line}");
}

fn main() -> ExitCode {
    svc_bench::cleanup::install();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("svc-bench: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprint!(": {s}");
                src = s.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> svc_bench::Result<()> {
    match cli.cmd {
        Cmd::Program {
            services,
            backends,
            shape,
            policy,
            reps,
            systems,
            lut_size,
            iptables_cases,
            restore_timeout,
            smoke,
            out,
        } => {
            let (services, reps, lut_size) = if smoke {
                (100, 2, 251)
            } else {
                (services, reps, lut_size)
            };
            let systems = if systems.is_empty() {
                vec![
                    System::Iptables,
                    System::Ipvs,
                    System::BpfFloor,
                    System::BpfFloorBatch,
                    System::Rackd,
                ]
            } else {
                systems
            };
            let cfg = ProgramConfig {
                workload: Workload::new(services, backends, shape, policy)?,
                reps,
                systems,
                lut_size,
                verify: true,
                iptables_cases: if iptables_cases.is_empty() {
                    vec![
                        IptCase::FullFlush,
                        IptCase::Full,
                        IptCase::Resync,
                        IptCase::OneChange,
                    ]
                } else {
                    iptables_cases
                },
                restore_timeout_s: restore_timeout,
            };
            let r = program::run(&cfg, &mut |l: &str| log(l))?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "svc-bench-program-{services}x{backends}-{}.json",
                    date()
                ))
            });
            program::save(&r, &out)?;
            println!("{}", report::program_table(&r, &out.display().to_string()));
            Ok(())
        }
        Cmd::Forward {
            modes,
            tests,
            rounds,
            duration,
            warmup,
            workers,
            server_threads,
            client_cpus,
            server_cpus,
            services_loaded,
            smoke,
            out,
        } => {
            let modes = if modes.is_empty() {
                vec![
                    Mode::Direct,
                    Mode::Rackd,
                    Mode::RackdSnat,
                    Mode::Iptables,
                    Mode::IptablesLocal,
                    Mode::Ipvs,
                    Mode::MasqNone,
                    Mode::MasqIptables,
                    Mode::MasqRackd,
                ]
            } else {
                modes
            };
            let tests = if tests.is_empty() {
                vec![Test::Connect, Test::KeepAlive, Test::Udp, Test::Flows]
            } else {
                tests
            };
            let two = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
            let cfg = ForwardConfig {
                modes,
                tests,
                rounds: if smoke { 1 } else { rounds },
                duration_s: if smoke { 1.0 } else { duration },
                warmup_s: if smoke { 0.2 } else { warmup },
                workers: if smoke { 2 } else { workers },
                server_threads: if smoke { 4 } else { server_threads },
                client_cpus: client_cpus.unwrap_or_else(|| if two { vec![0] } else { vec![] }),
                server_cpus: server_cpus.unwrap_or_else(|| if two { vec![1] } else { vec![] }),
                services_loaded: services_loaded.max(1),
                timeout_s: 2.0,
            };
            let r = forward::run(&cfg, &mut |l: &str| log(l))?;
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("svc-bench-forward-{}.json", date())));
            forward::save_report(&r, &out)?;
            println!("{}", report::forward_table(&r, &out.display().to_string()));
            Ok(())
        }
        Cmd::ChunkSizes { entries, reps, out } => {
            let r = svc_bench::chunks::run(entries, reps, &mut |l: &str| log(l))?;
            let out = out
                .unwrap_or_else(|| PathBuf::from(format!("svc-bench-chunk-sizes-{}.json", date())));
            program::save(&r, &out)?;
            println!(
                "{}",
                svc_bench::chunks::table(&r, &out.display().to_string())
            );
            Ok(())
        }
        Cmd::Table { files } => {
            for f in files {
                println!("{}", report::table(&f)?);
            }
            Ok(())
        }
        Cmd::GenIptables {
            services,
            backends,
            shape,
            policy,
        } => {
            let w = Workload::new(services, backends, shape, policy)?;
            let r = kubeproxy::restore_input(w.all(), w.endpoints(), kubeproxy::Sync::Full);
            let _ = std::io::stdout().write_all(r.text.as_bytes());
            Ok(())
        }
        Cmd::GenIpvs { services, backends } => {
            let w = Workload::new(services, backends, Shape::LoadBalancer, Policy::Cluster)?;
            let (text, _) = svc_bench::ipvs::restore_input(w.all());
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(())
        }
    }
}
