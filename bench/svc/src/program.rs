//! Benchmark A, programming: N Services x K backends from "config change" to "rules/maps ready",
//! and one Service's backends changed among N, for every system in the same run, interleaved
//! repetition by repetition, each in a fresh uniquely named namespace removed even on failure.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bpffloor::Floor;
use crate::error::{Error, Result};
use crate::exec::{Scratch, Timed, output_in_netns, run_in_netns, run_in_netns_limited};
use crate::kubeproxy::{self, Sync};
use crate::machine::{Meta, loadavg};
use crate::model::Workload;
use crate::stats::Spread;
use crate::{ipvs, rackd};

/// A system under test for programming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// kube-proxy's rule set through `iptables-nft-restore --noflush`.
    Iptables,
    /// `ipvsadm -R`.
    Ipvs,
    /// The BPF floor, one `bpf(2)` update per entry (see `bpffloor`).
    BpfFloor,
    /// The BPF floor with `BPF_MAP_UPDATE_BATCH`.
    BpfFloorBatch,
    /// rackd's `datapath::lb` (mode 1; see `rackd`).
    Rackd,
}

impl System {
    /// Name in results.
    pub fn name(self) -> &'static str {
        match self {
            System::Iptables => "iptables-nft",
            System::Ipvs => "ipvs",
            System::BpfFloor => "bpf-floor",
            System::BpfFloorBatch => "bpf-floor-batch",
            System::Rackd => "rackd",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramConfig {
    /// The Services.
    pub workload: Workload,
    /// Repetitions (each system once per repetition, interleaved).
    pub reps: usize,
    /// Systems, in the order run within a repetition.
    pub systems: Vec<System>,
    /// Maglev table size M for the BPF floor and rackd.
    pub lut_size: u32,
    /// Check the installed rule counts after the first repetition (positive control).
    pub verify: bool,
    /// iptables cases to time, in order.
    pub iptables_cases: Vec<IptCase>,
    /// Limit for one timed restore, seconds: past it the tool is killed and the run recorded as
    /// timed out (kube-proxy's `--noflush` restore grows faster than linearly with
    /// iptables-nft 1.8.9).
    pub restore_timeout_s: f64,
}

/// The iptables operations timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IptCase {
    /// Fresh namespace, kube-proxy's exact invocation (`--noflush`).
    Full,
    /// Fresh namespace, the same rules (plus the jump rules) without `--noflush`: the table is
    /// replaced in one go. Equivalent in a fresh namespace; not what kube-proxy runs.
    FullFlush,
    /// kube-proxy's full resync: the full input again over the loaded rules (`--noflush`).
    Resync,
    /// One Service's backends changed: kube-proxy's partial restore (`--noflush`).
    OneChange,
}

/// One timed operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramRun {
    /// System name.
    pub system: String,
    /// `full` (fresh node), `resync` (full input over the loaded rules) or `one-change`.
    pub case: String,
    /// Repetition index.
    pub rep: usize,
    /// Config change to ready, seconds: the restore process's lifetime for the tools, compute
    /// plus map writes for the BPF floor, the controller call for rackd.
    pub wall_s: f64,
    /// The tool's user CPU seconds (tools only).
    pub user_s: Option<f64>,
    /// The tool's system CPU seconds (tools only; the kernel's rule processing is here).
    pub sys_s: Option<f64>,
    /// BPF floor: the Maglev-table computation part of `wall_s`.
    pub compute_s: Option<f64>,
    /// 1-minute load average when the operation started.
    pub load1: f64,
    /// The tool was killed at the time limit: `wall_s` is a lower bound.
    #[serde(default)]
    pub timed_out: bool,
}

/// Median and spread per system and case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramSummary {
    /// System name.
    pub system: String,
    /// Case.
    pub case: String,
    /// Wall seconds over the repetitions.
    pub wall_s: Spread,
    /// iptables-nft's median for the same case divided by this one's (how many times faster).
    pub speedup_vs_iptables: Option<f64>,
    /// Which iptables case the speed-up is against.
    #[serde(default)]
    pub speedup_basis: Option<String>,
    /// Median of the Maglev-computation part (BPF floor).
    #[serde(default)]
    pub compute_s: Option<f64>,
    /// Repetitions killed at the time limit (their wall time is a lower bound).
    #[serde(default)]
    pub timed_out: usize,
}

/// A mode that could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// System or mode name.
    pub system: String,
    /// The reason.
    pub reason: String,
}

/// Sizes of the generated inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputSizes {
    /// Full iptables-restore input, bytes.
    pub iptables_full_bytes: usize,
    /// Its nat rules / nat chains / filter rules.
    pub iptables_full_nat_rules: u64,
    /// nat chains in the full input.
    pub iptables_full_nat_chains: u64,
    /// Partial (one change) input, bytes.
    pub iptables_partial_bytes: usize,
    /// Its nat rules.
    pub iptables_partial_nat_rules: u64,
    /// Seconds our generator took for the full input (Rust; not kube-proxy's Go time).
    pub iptables_generate_s: f64,
    /// `ipvsadm -R` input, bytes, and its virtual services.
    pub ipvs_bytes: usize,
    /// Virtual services.
    pub ipvs_virtual_services: u64,
}

/// The results file of one programming run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramReport {
    /// Always `programming`.
    pub bench: String,
    /// Where and when.
    pub meta: Meta,
    /// What.
    pub config: ProgramConfig,
    /// Input sizes.
    pub inputs: InputSizes,
    /// Every timed operation.
    pub runs: Vec<ProgramRun>,
    /// Medians.
    pub summary: Vec<ProgramSummary>,
    /// Systems that could not run here.
    pub skipped: Vec<Skipped>,
}

struct Inputs {
    full: kubeproxy::RestoreInput,
    partial: kubeproxy::RestoreInput,
    jumps: kubeproxy::RestoreInput,
    ipvs_full: String,
    ipvs_change: String,
    sizes: InputSizes,
}

fn generate(w: &Workload) -> Inputs {
    let t = Instant::now();
    let full = kubeproxy::restore_input(w.all(), w.endpoints(), Sync::Full);
    let gen_s = t.elapsed().as_secs_f64();
    let c = w.changed_index();
    let changed = w.service_changed(c);
    let partial = kubeproxy::restore_input(
        w.all_with_change(c),
        w.endpoints(),
        Sync::Partial(&changed.port_name),
    );
    let (ipvs_full, vs) = ipvs::restore_input(w.all());
    let ipvs_change = ipvs::change_input(&w.service(c), &changed);
    let sizes = InputSizes {
        iptables_full_bytes: full.text.len(),
        iptables_full_nat_rules: full.nat_rules,
        iptables_full_nat_chains: full.nat_chains,
        iptables_partial_bytes: partial.text.len(),
        iptables_partial_nat_rules: partial.nat_rules,
        iptables_generate_s: gen_s,
        ipvs_bytes: ipvs_full.len(),
        ipvs_virtual_services: vs,
    };
    Inputs {
        full,
        partial,
        jumps: kubeproxy::jump_rules(),
        ipvs_full,
        ipvs_change,
        sizes,
    }
}

const RESTORE: &[&str] = &[
    "iptables-nft-restore",
    "-w",
    "5",
    "-W",
    "100000",
    "--noflush",
    "--counters",
];

/// The same without `--noflush`: each table in the input is replaced.
const RESTORE_FLUSH: &[&str] = &[
    "iptables-nft-restore",
    "-w",
    "5",
    "-W",
    "100000",
    "--counters",
];

fn run_of(system: System, case: &str, rep: usize, t: Timed, load1: f64) -> ProgramRun {
    ProgramRun {
        system: system.name().into(),
        case: case.into(),
        rep,
        wall_s: t.wall.as_secs_f64(),
        user_s: Some(t.user.as_secs_f64()),
        sys_s: Some(t.sys.as_secs_f64()),
        compute_s: None,
        load1,
        timed_out: false,
    }
}

fn timed_out_run(case: &str, rep: usize, after: Duration, load1: f64) -> ProgramRun {
    ProgramRun {
        system: System::Iptables.name().into(),
        case: case.into(),
        rep,
        wall_s: after.as_secs_f64(),
        user_s: None,
        sys_s: None,
        compute_s: None,
        load1,
        timed_out: true,
    }
}

fn count_nat_rules(ns: &netlab::Netns) -> Result<u64> {
    let save = output_in_netns(ns, &["iptables-nft-save", "-t", "nat"])?;
    Ok(save.lines().filter(|x| x.starts_with("-A ")).count() as u64)
}

fn iptables_rep(
    cfg: &ProgramConfig,
    inp: &Inputs,
    files: &Files,
    rep: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ProgramRun>> {
    let limit = Some(Duration::from_secs_f64(cfg.restore_timeout_s));
    let want = inp.full.nat_rules + inp.jumps.nat_rules;
    let verify = cfg.verify && rep == 0;
    let mut runs = Vec::new();
    // The namespace with kube-proxy's rules loaded, for resync and one-change.
    let mut loaded: Option<netlab::Netns> = None;
    let scratch = Scratch::new()?;
    for &case in &cfg.iptables_cases {
        let l = loadavg()[0];
        let (name, file, fresh, argv): (&str, &Path, bool, &[&str]) = match case {
            IptCase::Full => ("full", &files.full, true, RESTORE),
            IptCase::FullFlush => ("full-flush", &files.full_flush, true, RESTORE_FLUSH),
            IptCase::Resync => ("resync", &files.full, false, RESTORE),
            IptCase::OneChange => ("one-change", &files.partial, false, RESTORE),
        };
        let fresh_ns = if fresh {
            let ns = netlab::Netns::new("sb-prog")?;
            if case == IptCase::Full {
                run_in_netns(&ns.path(), RESTORE, &files.jumps, &scratch)?;
            }
            Some(ns)
        } else {
            if loaded.is_none() {
                // Untimed: load the rules the fastest way before timing an update over them.
                let ns = netlab::Netns::new("sb-prog")?;
                run_in_netns(&ns.path(), RESTORE_FLUSH, &files.full_flush, &scratch)?;
                loaded = Some(ns);
            }
            None
        };
        let ns = fresh_ns
            .as_ref()
            .or(loaded.as_ref())
            .ok_or_else(|| Error::Check("no namespace".into()))?;
        match run_in_netns_limited(&ns.path(), argv, file, &scratch, limit) {
            Ok(t) => {
                log(&format!(
                    "  iptables-nft {name}: {:.3} s",
                    t.wall.as_secs_f64()
                ));
                runs.push(run_of(System::Iptables, name, rep, t, l));
            }
            Err(Error::Timeout { after, .. }) => {
                log(&format!(
                    "  iptables-nft {name}: killed after {:.0} s",
                    after.as_secs_f64()
                ));
                runs.push(timed_out_run(name, rep, after, l));
                if !fresh {
                    // The killed restore left nothing half-applied (nft commits atomically),
                    // but reload to be sure the next case starts from the full rule set.
                    loaded = None;
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        if verify && fresh {
            let rules = count_nat_rules(ns)?;
            if rules != want {
                return Err(Error::Check(format!(
                    "{name}: iptables-nft-save shows {rules} nat rules, expected {want}"
                )));
            }
        }
        if verify && case == IptCase::OneChange {
            let new = cfg.workload.service_changed(cfg.workload.changed_index());
            let target = new
                .endpoints
                .first()
                .map(|e| format!("--to-destination {e}"))
                .unwrap_or_default();
            let save = output_in_netns(ns, &["iptables-nft-save", "-t", "nat"])?;
            if !save.contains(&target) {
                return Err(Error::Check(format!("partial restore: no rule `{target}`")));
            }
        }
        if let Some(f) = fresh_ns {
            if case == IptCase::FullFlush && loaded.is_none() {
                // Exactly the rule set the later cases start from: keep it (saves a reload).
                loaded = Some(f);
                continue;
            }
            // Flush synchronously (untimed) so the kernel's teardown of ~1M rules does not
            // run in the background of the next measurement.
            run_in_netns(&f.path(), RESTORE_FLUSH, &files.flush, &scratch)?;
        }
    }
    if let Some(ns) = &loaded {
        run_in_netns(&ns.path(), RESTORE_FLUSH, &files.flush, &scratch)?;
    }
    Ok(runs)
}

fn ipvs_rep(files: &Files, rep: usize, log: &mut dyn FnMut(&str)) -> Result<Vec<ProgramRun>> {
    let ns = netlab::Netns::new("sb-prog")?;
    let scratch = Scratch::new()?;
    if let Err(e) = output_in_netns(&ns, &["ipvsadm", "-L", "-n"]) {
        return Err(Error::Unavailable(format!("IPVS not usable here: {e}")));
    }
    let path = ns.path();
    let mut runs = Vec::new();
    let l = loadavg()[0];
    let t = run_in_netns(&path, &["ipvsadm", "-R"], &files.ipvs_full, &scratch)?;
    log(&format!("  ipvs full: {:.3} s", t.wall.as_secs_f64()));
    runs.push(run_of(System::Ipvs, "full", rep, t, l));
    let l = loadavg()[0];
    let t = run_in_netns(&path, &["ipvsadm", "-R"], &files.ipvs_change, &scratch)?;
    runs.push(run_of(System::Ipvs, "one-change", rep, t, l));
    run_in_netns(&path, &["ipvsadm", "-C"], &files.flush, &scratch)?;
    Ok(runs)
}

fn floor_rep(
    cfg: &ProgramConfig,
    system: System,
    rep: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ProgramRun>> {
    let floor = Floor::create(&cfg.workload, cfg.lut_size)?;
    let l = loadavg()[0];
    let full = floor.load(&cfg.workload, system == System::BpfFloorBatch)?;
    let mk = |case: &str, t: crate::bpffloor::FloorTiming, l: f64| ProgramRun {
        system: system.name().into(),
        case: case.into(),
        rep,
        wall_s: t.maglev_compute_s + t.map_update_s,
        user_s: None,
        sys_s: None,
        compute_s: Some(t.maglev_compute_s),
        load1: l,
        timed_out: false,
    };
    log(&format!(
        "  {} full: {:.3} s (Maglev {:.3} s, {} entries)",
        system.name(),
        full.maglev_compute_s + full.map_update_s,
        full.maglev_compute_s,
        full.entries
    ));
    let mut runs = vec![mk("full", full, l)];
    let l = loadavg()[0];
    runs.push(mk("one-change", floor.change(&cfg.workload)?, l));
    Ok(runs)
}

fn rackd_rep(cfg: &ProgramConfig, rep: usize) -> Result<Vec<ProgramRun>> {
    let pins = Scratch::new()?;
    let l = loadavg()[0];
    let (full, mut guard) = rackd::program_full(&cfg.workload, cfg.lut_size, pins.path())?;
    let l2 = loadavg()[0];
    let change = rackd::program_change(&cfg.workload, &mut guard)?;
    drop(guard);
    let mk = |case: &str, d: Duration, l: f64| ProgramRun {
        system: System::Rackd.name().into(),
        case: case.into(),
        rep,
        wall_s: d.as_secs_f64(),
        user_s: None,
        sys_s: None,
        compute_s: None,
        load1: l,
        timed_out: false,
    };
    Ok(vec![
        mk("full", full.total, l),
        mk("one-change", change.total, l2),
    ])
}

struct Files {
    _scratch: Scratch,
    jumps: std::path::PathBuf,
    full: std::path::PathBuf,
    full_flush: std::path::PathBuf,
    partial: std::path::PathBuf,
    flush: std::path::PathBuf,
    ipvs_full: std::path::PathBuf,
    ipvs_change: std::path::PathBuf,
}

fn write_files(inp: &Inputs) -> Result<Files> {
    let s = Scratch::new()?;
    Ok(Files {
        jumps: s.write("jumps.rules", &inp.jumps.text)?,
        full: s.write("full.rules", &inp.full.text)?,
        // Jump rules first, then kube-proxy's input: a whole node's nat and filter tables.
        full_flush: s.write("full-flush.rules", &kubeproxy::with_jumps(&inp.full))?,
        partial: s.write("partial.rules", &inp.partial.text)?,
        flush: s.write("flush.rules", "*nat\nCOMMIT\n*filter\nCOMMIT\n")?,
        ipvs_full: s.write("ipvs.rules", &inp.ipvs_full)?,
        ipvs_change: s.write("ipvs-change.rules", &inp.ipvs_change)?,
        _scratch: s,
    })
}

/// Runs the programming benchmark; `log` receives progress lines.
pub fn run(cfg: &ProgramConfig, log: &mut dyn FnMut(&str)) -> Result<ProgramReport> {
    let mut meta = Meta::collect();
    let w = &cfg.workload;
    log(&format!(
        "generating inputs for {} Services x {} backends",
        w.services, w.backends
    ));
    let inp = generate(w);
    let files = write_files(&inp)?;
    let mut runs = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    for rep in 0..cfg.reps {
        log(&format!("repetition {}/{}", rep + 1, cfg.reps));
        for &system in &cfg.systems {
            if skipped.iter().any(|s| s.system == system.name()) {
                continue;
            }
            let r = match system {
                System::Iptables => iptables_rep(cfg, &inp, &files, rep, log),
                System::Ipvs => ipvs_rep(&files, rep, log),
                System::BpfFloor | System::BpfFloorBatch => floor_rep(cfg, system, rep, log),
                System::Rackd => rackd_rep(cfg, rep),
            };
            match r {
                Ok(mut v) => runs.append(&mut v),
                Err(Error::Unavailable(reason)) => {
                    log(&format!("  {}: skipped: {reason}", system.name()));
                    skipped.push(Skipped {
                        system: system.name().into(),
                        reason,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    meta.finish();
    let summary = summarise(&runs);
    Ok(ProgramReport {
        bench: "programming".into(),
        meta,
        config: cfg.clone(),
        inputs: inp.sizes,
        runs,
        summary,
        skipped,
    })
}

/// Medians per system and case, with the speed-up against iptables-nft: for each case against
/// iptables' same case; for `full` against kube-proxy's `full` if measured, else `full-flush`.
pub fn summarise(runs: &[ProgramRun]) -> Vec<ProgramSummary> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        let k = (r.system.clone(), r.case.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let spread = |sys: &str, case: &str, f: &dyn Fn(&ProgramRun) -> Option<f64>| {
        let v: Vec<f64> = runs
            .iter()
            .filter(|r| r.system == sys && r.case == case)
            .filter_map(f)
            .collect();
        Spread::of(&v)
    };
    let wall = |r: &ProgramRun| Some(r.wall_s);
    let ipt = System::Iptables.name();
    keys.into_iter()
        .filter_map(|(system, case)| {
            let wall_s = spread(&system, &case, &wall)?;
            let basis = [case.as_str(), "full-flush"]
                .into_iter()
                .take(if case == "full" { 2 } else { 1 })
                .find(|c| spread(ipt, c, &wall).is_some())
                .map(str::to_owned);
            let speedup_vs_iptables = basis
                .as_deref()
                .and_then(|b| spread(ipt, b, &wall))
                .filter(|_| wall_s.median > 0.0)
                .map(|b| b.median / wall_s.median);
            Some(ProgramSummary {
                compute_s: spread(&system, &case, &|r: &ProgramRun| r.compute_s).map(|s| s.median),
                timed_out: runs
                    .iter()
                    .filter(|r| r.system == system && r.case == case && r.timed_out)
                    .count(),
                speedup_basis: basis.filter(|_| system != ipt),
                system,
                case,
                wall_s,
                speedup_vs_iptables,
            })
        })
        .collect()
}

/// Writes `report` as pretty JSON.
pub fn save(report: &impl Serialize, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}
