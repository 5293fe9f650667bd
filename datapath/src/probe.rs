//! The probe: a pass-through packet counter, the second program of the
//! registry. rackd never attaches it; tests use it to prove in the kernel
//! what the registry promises for every program (TCX ordering between ours,
//! adoption, uninstall) and that traffic flows through a chain of them.

use std::path::Path;

use aya::maps::{Array, MapData};

use crate::attach::{Loaded, TcAttach};
use crate::error::{Error, Result};
use crate::load::{self, Hook, RunOutcome};
use crate::maps::{MAP_PROBE, PROBE_ARP, PROBE_IPV4, PROBE_IPV6, PROBE_OTHER, PROG_PROBE};
use crate::registry::ProgramKind;

/// Packets the probe has seen, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    /// ARP frames.
    pub arp: u64,
    /// IPv4 packets.
    pub ipv4: u64,
    /// IPv6 packets.
    pub ipv6: u64,
    /// Anything else.
    pub other: u64,
}

/// Handle on the probe (the same lifecycle as [`crate::Responder`]: pinned
/// in its folder, links adopted when reopened).
pub struct Probe {
    prog: Loaded,
    counts: Array<MapData, u64>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("prog", &self.prog)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// Loads the probe under `pin_root`, reopening its pinned counters and
    /// adopting its pinned links.
    pub fn open_or_create(pin_root: impl AsRef<Path>) -> Result<Self> {
        let mut prog = Loaded::open(pin_root.as_ref(), ProgramKind::Probe, TcAttach::Auto)?;
        let counts = Array::try_from(load::take_map(&mut prog.ebpf, MAP_PROBE)?)
            .map_err(|e| Error::map(MAP_PROBE, "open", e))?;
        Ok(Self { prog, counts })
    }

    /// Attaches the probe at tc ingress of `ifindex`, placed by the ordering
    /// policy. Idempotent.
    pub fn attach(&mut self, ifindex: u32) -> Result<()> {
        self.prog.attach(ifindex)
    }

    /// Detaches the probe from `ifindex`. Idempotent.
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        self.prog.detach(ifindex)
    }

    /// Interfaces with a pinned link of the probe.
    pub fn attached(&self) -> Result<Vec<u32>> {
        self.prog.linked()
    }

    /// The probe's folder under the pin root.
    pub fn pin_dir(&self) -> &Path {
        &self.prog.dir
    }

    /// What the probe has counted.
    pub fn counts(&self) -> Result<ProbeCounts> {
        let get = |slot| {
            self.counts
                .get(&slot, 0)
                .map_err(|e| Error::map(MAP_PROBE, "read", e))
        };
        Ok(ProbeCounts {
            arp: get(PROBE_ARP)?,
            ipv4: get(PROBE_IPV4)?,
            ipv6: get(PROBE_IPV6)?,
            other: get(PROBE_OTHER)?,
        })
    }

    /// Runs the probe on `packet` with BPF_PROG_TEST_RUN (see
    /// [`crate::Responder::test_run`]).
    pub fn test_run(&self, packet: &[u8]) -> Result<RunOutcome> {
        load::test_run(&self.prog.ebpf, Hook::Tc, PROG_PROBE, packet, 1)
    }

    /// Removes what the probe installed (see [`crate::uninstall_program`]).
    pub fn uninstall(self) -> Result<()> {
        let Probe { prog, counts } = self;
        let root = prog.root.clone();
        drop((counts, prog));
        crate::pin::uninstall_program(&root, ProgramKind::Probe)
    }
}
