//! Attachment: one loaded program of the registry ([`Loaded`]) with its TCX
//! links pinned per interface in its folder, adopted after a restart (the
//! pinned link is switched to the new program with `bpf_link_update`, so no
//! packet sees a gap), placed among our other programs by the ordering
//! policy ([`crate::order`]) and detached on request. Kernels without TCX
//! (< 6.6) get clsact + cls_bpf filters, found again by program name.

use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::util::KernelVersion;

use crate::error::{Error, Result};
use crate::order::{self, Anchor, Slot};
use crate::registry::{AttachPoint, ProgramKind, ProgramSpec};
use crate::{load, pin, sys};

/// How tc programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcAttach {
    /// TCX on kernels >= 6.6, netlink otherwise.
    #[default]
    Auto,
    /// TCX bpf_links, pinned (kernel >= 6.6).
    Tcx,
    /// cls_bpf filters on a clsact qdisc via netlink (any kernel); not
    /// pinnable, found again by program name, no ordering policy (each
    /// filter goes first when attached).
    Netlink,
}

impl TcAttach {
    fn uses_tcx(self) -> bool {
        match self {
            // TCX arrived in Linux 6.6.
            TcAttach::Auto => {
                KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
            }
            TcAttach::Tcx => true,
            TcAttach::Netlink => false,
        }
    }
}

/// The tc attach type of a point (`None` for XDP).
pub(crate) fn tc_attach_type(point: AttachPoint) -> Option<TcAttachType> {
    match point {
        AttachPoint::TcIngress => Some(TcAttachType::Ingress),
        AttachPoint::TcEgress => Some(TcAttachType::Egress),
        AttachPoint::Xdp => None,
    }
}

fn tc_type(spec: &ProgramSpec) -> Result<TcAttachType> {
    tc_attach_type(spec.attach).ok_or(Error::Unsupported {
        program: spec.kind,
        point: spec.attach,
    })
}

/// Opens a pinned TCX link.
pub(crate) fn open_link(path: &Path) -> Result<SchedClassifierLink> {
    let pinned = PinnedLink::from_pin(path).map_err(|source| Error::LinkOpen {
        path: path.into(),
        source,
    })?;
    SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|source| Error::LinkOpen {
        path: path.into(),
        source,
    })
}

/// The program a pinned link runs, `None` when it cannot be read.
fn link_program_id(path: &Path) -> Option<u32> {
    let link = FdLink::from(PinnedLink::from_pin(path).ok()?);
    link.info().ok().map(|i| i.program_id())
}

/// One of our programs on a device: which, and its link pin.
#[derive(Debug)]
struct OurLink {
    kind: ProgramKind,
    path: PathBuf,
}

/// The TCX chain at `point` of `ifindex`, in order, with our programs told
/// apart by the links pinned under `pin_root` (any layout folder, or a legacy
/// name); everything else is foreign. Acts in the calling thread's namespace.
pub fn chain(pin_root: &Path, ifindex: u32, point: AttachPoint) -> Result<Vec<Slot>> {
    Ok(chain_with_links(pin_root, ifindex, point)?.0)
}

fn chain_with_links(
    pin_root: &Path,
    ifindex: u32,
    point: AttachPoint,
) -> Result<(Vec<Slot>, Vec<OurLink>)> {
    let Some(ty) = tc_attach_type(point) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let name = sys::if_name(ifindex)?;
    let (_, progs) = SchedClassifier::query_tcx(&name, ty)
        .map_err(|e| Error::iface_prog(ifindex, "query the TCX chain", e))?;
    let mut ours: Vec<(u32, OurLink)> = Vec::new();
    for kind in ProgramKind::all().filter(|k| k.spec().attach == point) {
        for path in pin::link_candidates(pin_root, kind, ifindex)? {
            if let Some(id) = link_program_id(&path) {
                ours.push((id, OurLink { kind, path }));
            }
        }
    }
    let slots = progs
        .iter()
        .map(|p| {
            ours.iter()
                .find(|(id, _)| *id == p.id())
                .map_or(Slot::Foreign, |(_, l)| Slot::Ours(l.kind))
        })
        .collect();
    // Keep only the links whose program is on this chain (a stale pin of a
    // deleted interface whose index was reused is not).
    let on_chain: Vec<OurLink> = ours
        .into_iter()
        .filter(|(id, _)| progs.iter().any(|p| p.id() == *id))
        .map(|(_, l)| l)
        .collect();
    Ok((slots, on_chain))
}

/// A program of the registry, loaded, with its maps pinned in its folder.
pub(crate) struct Loaded {
    pub(crate) spec: &'static ProgramSpec,
    pub(crate) root: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) ebpf: Ebpf,
    pub(crate) tcx: bool,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("program", &self.spec.kind)
            .field("dir", &self.dir)
            .field("tcx", &self.tcx)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// Loads `kind` under `pin_root` (mounting bpffs on `/sys/fs/bpf` if
    /// needed): adopts legacy flat pins, opens or creates its maps in its
    /// folder, switches every link it pinned before (in this layout's folder
    /// or an older one's) to the program just loaded, and removes older
    /// layouts' maps.
    pub(crate) fn open(pin_root: &Path, kind: ProgramKind, tc_attach: TcAttach) -> Result<Self> {
        Self::open_sized(pin_root, kind, tc_attach, &[])
    }

    /// [`Loaded::open`] with map sizes for maps created now (see
    /// [`load::load_sized`]). The links of the object's second entry points
    /// (registry entries whose `owner` is `kind`) are adopted too.
    pub(crate) fn open_sized(
        pin_root: &Path,
        kind: ProgramKind,
        tc_attach: TcAttach,
        sizes: &[(&str, u32)],
    ) -> Result<Self> {
        let spec = kind.spec();
        sys::ensure_pin_root(pin_root)?;
        pin::migrate_legacy(pin_root, spec)?;
        let dir = pin::program_dir(pin_root, kind);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Bpffs {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        pin::carry_maps(pin_root, spec, &dir)?;
        let ebpf = load::load_sized(kind, &dir, sizes)?;
        let mut me = Loaded {
            spec,
            root: pin_root.to_path_buf(),
            dir,
            ebpf,
            tcx: tc_attach.uses_tcx(),
        };
        for s in me.specs() {
            for (ifindex, path) in pin::links_in(&me.dir, s)? {
                me.adopt(s, ifindex, &path)?;
            }
        }
        for (version, old) in pin::version_dirs(pin_root, kind)? {
            if version == spec.version {
                continue;
            }
            let mut old_links = Vec::new();
            for s in me.specs() {
                old_links.extend(pin::links_in(&old, s)?.into_iter().map(|l| (s, l)));
            }
            for (s, (ifindex, path)) in old_links {
                let to = me.link_path(s, ifindex);
                if to.exists() {
                    pin::unpin_link(&path)?;
                } else if me.adopt(s, ifindex, &path)? {
                    std::fs::rename(&path, &to).map_err(|source| Error::Bpffs {
                        op: "move",
                        path: path.clone(),
                        source,
                    })?;
                }
            }
            // Its maps left have a layout this code does not read (the carried ones moved).
            tracing::info!(program = %kind, version, "removing an older layout's maps");
            pin::remove_folder(&old)?;
        }
        Ok(me)
    }

    /// The programs of this object: its own, then its second entry points.
    fn specs(&self) -> impl Iterator<Item = &'static ProgramSpec> + use<> {
        let kind = self.spec.kind;
        std::iter::once(self.spec).chain(
            crate::registry::REGISTRY
                .iter()
                .filter(move |s| s.owner == Some(kind)),
        )
    }

    fn link_path(&self, spec: &ProgramSpec, ifindex: u32) -> PathBuf {
        self.dir.join(spec.link_name(ifindex))
    }

    /// Points the pinned TCX link at our program (bpf_link_update: atomic, it
    /// keeps its place in the chain). A link whose interface vanished is
    /// unpinned and `false` returned.
    fn adopt(&mut self, spec: &'static ProgramSpec, ifindex: u32, path: &Path) -> Result<bool> {
        let link = open_link(path)?;
        let entry = spec.entry;
        let prog = load::tc_mut(&mut self.ebpf, entry)?;
        match prog.attach_to_link(link) {
            Ok(id) => {
                // The pin keeps the link; our handle only needs closing.
                drop(
                    prog.take_link(id)
                        .map_err(|e| Error::prog(entry, "adopt", e))?,
                );
                tracing::debug!(ifindex, path = %path.display(), "adopted pinned link");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(ifindex, error = %e, "pinned link is defunct; removing it");
                pin::remove_pin(path)?;
                Ok(false)
            }
        }
    }

    /// Attaches the program at its point of `ifindex`: with TCX, a link
    /// pinned in the folder, placed by the ordering policy relative to our
    /// other programs there; an existing link is adopted where it is.
    /// Idempotent.
    pub(crate) fn attach(&mut self, ifindex: u32) -> Result<()> {
        self.attach_spec(self.spec, ifindex)
    }

    /// [`Loaded::attach`] for `spec`, this object's own program or one of
    /// its second entry points.
    pub(crate) fn attach_spec(&mut self, spec: &'static ProgramSpec, ifindex: u32) -> Result<()> {
        let ty = tc_type(spec)?;
        let name = sys::if_name(ifindex)?;
        let entry = spec.entry;
        if !self.tcx {
            // cls_bpf filters are not bpf_links and cannot be pinned: they
            // stay until removed by name, so a restart replaces them (a brief
            // gap on these old kernels).
            if let Err(e) = tc::qdisc_add_clsact(&name) {
                tracing::debug!(ifindex, error = %e, "clsact qdisc (probably exists)");
            }
            let _ = tc::qdisc_detach_program(&name, ty, entry);
            let prog = load::tc_mut(&mut self.ebpf, entry)?;
            let id = prog
                .attach_with_options(&name, ty, TcAttachOptions::Netlink(NlOptions::default()))
                .map_err(|e| Error::prog(entry, "attach", e))?;
            let link = prog
                .take_link(id)
                .map_err(|e| Error::prog(entry, "attach", e))?;
            // Dropping the link would remove the filter; it must outlive us.
            std::mem::forget(link);
            return Ok(());
        }
        let path = self.link_path(spec, ifindex);
        if path.exists() && self.adopt(spec, ifindex, &path)? {
            return Ok(());
        }
        let (before, ours) = chain_with_links(&self.root, ifindex, spec.attach)?;
        let anchor = order::place(spec.kind, &before).map_err(|source| Error::Order {
            program: spec.kind,
            ifindex,
            source,
        })?;
        // The anchor's link must stay open until the attach: the order holds
        // its descriptor number.
        let mut anchor_link = None;
        let link_order = match anchor {
            Anchor::First => LinkOrder::first(),
            Anchor::Last => LinkOrder::last(),
            Anchor::Before(k) | Anchor::After(k) => {
                let l = ours.iter().find(|l| l.kind == k).ok_or(Error::Missing {
                    kind: "anchor link",
                    name: k.spec().name,
                })?;
                let link = anchor_link.insert(open_link(&l.path)?);
                let o = if matches!(anchor, Anchor::Before(_)) {
                    LinkOrder::before_link(link)
                } else {
                    LinkOrder::after_link(link)
                };
                o.map_err(|source| Error::LinkOpen {
                    path: l.path.clone(),
                    source,
                })?
            }
        };
        let prog = load::tc_mut(&mut self.ebpf, entry)?;
        let id = prog
            .attach_with_options(&name, ty, TcAttachOptions::TcxOrder(link_order))
            .map_err(|e| Error::prog(entry, "attach", e))?;
        drop(anchor_link);
        let link = prog
            .take_link(id)
            .map_err(|e| Error::prog(entry, "attach", e))?;
        let fd = FdLink::try_from(link).map_err(|source| Error::LinkOpen {
            path: path.clone(),
            source,
        })?;
        fd.pin(&path)
            .map_err(|source| Error::LinkPin { path, source })?;
        let now = chain(&self.root, ifindex, spec.attach)?;
        if order::conforms(&now) {
            tracing::info!(ifindex, interface = %name, program = %spec.kind, ?anchor, ?now, "attached");
        } else {
            // A foreign program placed itself against the policy (first, or
            // last after our back band); ours keep their relative order.
            tracing::warn!(ifindex, interface = %name, program = %spec.kind, ?now, "TCX chain out of policy order");
        }
        Ok(())
    }

    /// Detaches the program from `ifindex`. Idempotent.
    pub(crate) fn detach(&mut self, ifindex: u32) -> Result<()> {
        self.detach_spec(self.spec, ifindex)
    }

    /// [`Loaded::detach`] for `spec` (see [`Loaded::attach_spec`]).
    pub(crate) fn detach_spec(&mut self, spec: &'static ProgramSpec, ifindex: u32) -> Result<()> {
        pin::unpin_link(&self.link_path(spec, ifindex))?;
        if !self.tcx
            && let (Some(ty), Ok(name)) = (tc_attach_type(spec.attach), sys::if_name(ifindex))
        {
            let _ = tc::qdisc_detach_program(&name, ty, spec.entry);
        }
        Ok(())
    }

    /// Interfaces with a pinned link of ours.
    pub(crate) fn linked(&self) -> Result<Vec<u32>> {
        self.linked_spec(self.spec)
    }

    /// [`Loaded::linked`] for `spec` (see [`Loaded::attach_spec`]).
    pub(crate) fn linked_spec(&self, spec: &'static ProgramSpec) -> Result<Vec<u32>> {
        let mut out: Vec<u32> = pin::links_in(&self.dir, spec)?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        out.sort_unstable();
        Ok(out)
    }
}
