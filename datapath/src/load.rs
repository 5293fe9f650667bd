//! Loading: the objects build.rs compiled from `bpf/`, embedded here, loaded
//! with aya's `EbpfLoader` so that every map declared `LIBBPF_PIN_BY_NAME`
//! is pinned in the program's folder, or reopened from there when a previous
//! daemon pinned it (which is how maps and their contents survive restarts).
//! Also BPF_PROG_TEST_RUN for every program.

use std::path::Path;
use std::time::Duration;

use aya::maps::Map;
use aya::programs::{Program, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader, TestRun, TestRunOptions};

use crate::error::{Error, Result};
use crate::registry::ProgramKind;

/// `bpf/l2_responder.bpf.c`.
static L2_RESPONDER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l2_responder.bpf.o"));
/// `bpf/probe.bpf.c`.
static PROBE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));
/// `bpf/lb.bpf.c` (both entry points of the service load balancer).
static LB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb.bpf.o"));

const TC_ACT_UNSPEC: u32 = u32::MAX; // -1, TCX_NEXT under TCX
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// The compiled object of a program.
pub fn object(kind: ProgramKind) -> &'static [u8] {
    match kind {
        ProgramKind::L2Responder => L2_RESPONDER,
        ProgramKind::Probe => PROBE,
        ProgramKind::ServiceLb | ProgramKind::ServiceLbEgress | ProgramKind::ServiceLbTunnel => LB,
    }
}

/// Attempts at loading a program the verifier was interrupted on (EAGAIN), as libbpf.
const LOAD_ATTEMPTS: u32 = 5;

/// Loads `kind`'s object with its pinned maps in `dir` (reused when present:
/// aya does not compare their shapes, hence the versioned folders) and every
/// program in it into the kernel (verifier).
///
/// Some maps' `max_entries` can be overridden (name, entries); only maps
/// created now get the size: a pinned map is reused as it is.
pub(crate) fn load_sized(kind: ProgramKind, dir: &Path, sizes: &[(&str, u32)]) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(dir);
    for (name, entries) in sizes {
        loader.map_max_entries(name, *entries);
    }
    let mut ebpf = loader
        .load(object(kind))
        .map_err(|e| Error::Load(Box::new(e)))?;
    for (name, prog) in ebpf.programs_mut() {
        // The verifier gives up with EAGAIN when a signal arrives during a long verification
        // (the service load balancer's programs take a while); libbpf retries, so do we.
        let mut attempts = 0;
        let res = loop {
            let r = match prog {
                Program::SchedClassifier(p) => p.load(),
                Program::Xdp(p) => p.load(),
                // Only tc and XDP programs are built; anything else is a build mismatch.
                _ => {
                    return Err(Error::Unexpected {
                        kind: "program type",
                        name: name.to_owned(),
                    });
                }
            };
            attempts += 1;
            match r {
                Err(aya::programs::ProgramError::LoadError { ref io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EAGAIN)
                        && attempts < LOAD_ATTEMPTS =>
                {
                    tracing::debug!(
                        program = name,
                        attempts,
                        "verifier interrupted: loading again"
                    );
                }
                r => break r,
            }
        };
        res.map_err(|e| Error::Program {
            name: kind.spec().entry,
            op: "load",
            source: Box::new(e),
        })?;
    }
    Ok(ebpf)
}

/// Takes a map out of a loaded object.
pub(crate) fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or(Error::Missing { kind: "map", name })
}

/// The tc program `name` of a loaded object.
pub(crate) fn tc<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a SchedClassifier> {
    ebpf.program(name)
        .ok_or(Error::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| Error::prog(name, "convert", e))
}

/// The tc program `name` of a loaded object, mutably.
pub(crate) fn tc_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or(Error::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| Error::prog(name, "convert", e))
}

/// The XDP program `name` of a loaded object, mutably.
pub(crate) fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or(Error::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| Error::prog(name, "convert", e))
}

/// Which kind of program a test run exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// The tc (`SEC("classifier")`) program, the kind that gets attached.
    Tc,
    /// The XDP variant (the responder keeps one for measurement).
    Xdp,
}

/// What a program decided for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Left to the next program or the stack (`TC_ACT_UNSPEC` / `XDP_PASS`).
    Pass,
    /// Sent back out of the receiving interface (`bpf_redirect` to itself /
    /// `XDP_TX`).
    Reply,
    /// Any other return code.
    Other(u32),
}

/// Result of a BPF_PROG_TEST_RUN.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The decision.
    pub verdict: Verdict,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Kernel-measured average time per run.
    pub duration: Duration,
}

/// Runs program `name` (a `hook` program) of `ebpf` on `packet` with
/// BPF_PROG_TEST_RUN, `repeat` times (the kernel reports the average
/// duration). The packet arrives on the loopback interface, ifindex 1, of the
/// calling thread's namespace; the program sees its live maps.
pub(crate) fn test_run(
    ebpf: &Ebpf,
    hook: Hook,
    name: &'static str,
    packet: &[u8],
    repeat: u32,
) -> Result<RunOutcome> {
    // Room for a reply longer than the request (an NA is built from a shorter NS).
    let mut out = vec![0u8; packet.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        repeat: repeat.max(1),
        ..Default::default()
    };
    let res = match hook {
        Hook::Tc => tc(ebpf, name)?.test_run(opts),
        Hook::Xdp => {
            let p: &Xdp = ebpf
                .program(name)
                .ok_or(Error::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(|e| Error::prog(name, "convert", e))?;
            p.test_run(opts)
        }
    };
    let r = res.map_err(|e| Error::prog(name, "test run", e))?;
    out.truncate(usize::try_from(r.data_size_out).unwrap_or(usize::MAX));
    let verdict = match (hook, r.return_value) {
        (Hook::Tc, TC_ACT_UNSPEC) | (Hook::Xdp, XDP_PASS) => Verdict::Pass,
        (Hook::Tc, TC_ACT_REDIRECT) | (Hook::Xdp, XDP_TX) => Verdict::Reply,
        (_, other) => Verdict::Other(other),
    };
    Ok(RunOutcome {
        verdict,
        packet: out,
        duration: r.duration,
    })
}
