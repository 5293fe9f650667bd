//! Pinning: where rackd's objects live on bpffs, and their removal.
//!
//! ```text
//! <pin root>/                      default /sys/fs/bpf/rackd
//!   l2_responder_v1/               one folder per program and layout version
//!     rackd_l2_v4_v1 ...           its maps, pinned by name
//!     tc_ingress_<ifindex>         its TCX links, one per interface
//!   probe_v1/
//!     ...
//! ```
//!
//! A layout version bump changes the folder, so a new layout never opens an
//! old map by name (aya 0.14 does not check shapes); the program's links in
//! the old folder are adopted and the old maps removed. The first release
//! pinned the responder flat in the root (`rackd_l2_*_v1`,
//! `rackd_l2_tc_v1_<ifindex>`); [`migrate_legacy`] moves those pins into
//! `l2_responder_v1/` (bpffs supports rename; the running program does not
//! notice, it holds the maps, not their names).

use std::io;
use std::path::{Path, PathBuf};

use aya::programs::MultiProgLink;

use crate::error::{Error, Result};
use crate::registry::{ProgramKind, ProgramSpec};
use crate::{responder, sys};

/// The folder of `kind`'s current layout under `pin_root`.
pub fn program_dir(pin_root: &Path, kind: ProgramKind) -> PathBuf {
    pin_root.join(kind.folder(kind.spec().version))
}

/// Names and paths of the entries of `dir`; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Bpffs {
                op: "list",
                path: dir.into(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| Error::Bpffs {
            op: "list",
            path: dir.into(),
            source,
        })?;
        // Names we did not write (not UTF-8) are not ours.
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every layout folder of `kind` under the root, by version.
pub(crate) fn version_dirs(pin_root: &Path, kind: ProgramKind) -> Result<Vec<(u32, PathBuf)>> {
    let mut out: Vec<_> = entries(pin_root)?
        .into_iter()
        .filter_map(|(name, path)| Some((kind.parse_folder(&name)?, path)))
        .filter(|(_, path)| path.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// (ifindex, path) of every link pin of `spec`'s attach point in `dir`.
pub(crate) fn links_in(dir: &Path, spec: &ProgramSpec) -> Result<Vec<(u32, PathBuf)>> {
    Ok(entries(dir)?
        .into_iter()
        .filter_map(|(name, path)| Some((spec.parse_link_name(&name)?, path)))
        .collect())
}

/// (ifindex, path) of every legacy (flat) link pin of `spec` in the root.
pub(crate) fn legacy_links(pin_root: &Path, spec: &ProgramSpec) -> Result<Vec<(u32, PathBuf)>> {
    let Some(legacy) = spec.legacy else {
        return Ok(Vec::new());
    };
    Ok(entries(pin_root)?
        .into_iter()
        .filter_map(|(name, path)| {
            let idx = name.strip_prefix(legacy.link_prefix)?.parse().ok()?;
            Some((idx, path))
        })
        .collect())
}

/// Every pin path that may hold `kind`'s link on `ifindex`: each layout
/// folder, then the legacy flat name. Only paths that exist.
pub(crate) fn link_candidates(
    pin_root: &Path,
    kind: ProgramKind,
    ifindex: u32,
) -> Result<Vec<PathBuf>> {
    let spec = kind.spec();
    let mut out: Vec<PathBuf> = version_dirs(pin_root, kind)?
        .into_iter()
        .map(|(_, dir)| dir.join(spec.link_name(ifindex)))
        .collect();
    if let Some(legacy) = spec.legacy {
        out.push(pin_root.join(format!("{}{ifindex}", legacy.link_prefix)));
    }
    out.retain(|p| p.exists());
    Ok(out)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| Error::Bpffs {
        op: "move",
        path: from.into(),
        source,
    })
}

/// Moves the maps of older layout folders whose layout `spec` still has
/// ([`crate::registry::CarriedMap`]) into `dir` under today's names, before the
/// program opens its maps by name there: it then reuses them, contents and
/// all, and the old program keeps using the same maps until its links are
/// switched. A name already in `dir` wins (it is today's map); folders of a
/// newer layout are never carried from (their shapes are unknown here).
pub(crate) fn carry_maps(pin_root: &Path, spec: &ProgramSpec, dir: &Path) -> Result<()> {
    if spec.carried_maps.is_empty() {
        return Ok(());
    }
    for (version, old) in version_dirs(pin_root, spec.kind)? {
        if version >= spec.version {
            continue;
        }
        for m in spec.carried_maps.iter().filter(|m| m.since <= version) {
            let from = old.join(m.name(version));
            let to = dir.join(m.name(spec.version));
            if from.exists() && !to.exists() {
                tracing::info!(
                    program = %spec.kind,
                    from = %from.display(),
                    to = %to.display(),
                    "carrying a map over to the new layout"
                );
                rename(&from, &to)?;
            }
        }
    }
    Ok(())
}

/// Removes a pin; one already gone is fine.
pub(crate) fn remove_pin(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Bpffs {
            op: "remove",
            path: path.into(),
            source,
        }),
    }
}

/// Detaches a pinned TCX link (at once: see [`sys::link_detach`]) and
/// removes its pin. Any other pin is just removed.
pub(crate) fn unpin_link(path: &Path) -> Result<()> {
    if let Ok(link) = crate::attach::open_link(path) {
        let detached = MultiProgLink::fd(&link)
            .map_err(io::Error::other)
            .and_then(sys::link_detach);
        if let Err(e) = detached {
            // Removing the pin still detaches it, a moment later.
            tracing::warn!(path = %path.display(), error = %e, "detaching a link");
        }
    }
    remove_pin(path)
}

/// Removes a folder if it is empty; a missing or non-empty one is fine.
pub(crate) fn remove_dir_if_empty(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
        {
            Ok(())
        }
        Err(source) => Err(Error::Bpffs {
            op: "remove",
            path: dir.into(),
            source,
        }),
    }
}

/// Removes every pin of one of our folders (links first, which detaches
/// them), then the folder.
pub(crate) fn remove_folder(dir: &Path) -> Result<()> {
    let all = entries(dir)?;
    for (_, path) in &all {
        unpin_link(path)?;
    }
    remove_dir_if_empty(dir)
}

/// Moves `spec`'s legacy flat pins, if any, into the folder of their layout
/// version. A pin whose new name is taken loses to the one already there (a
/// duplicate link is unpinned, which detaches it). Safe to repeat: an
/// interrupted move resumes.
pub(crate) fn migrate_legacy(pin_root: &Path, spec: &ProgramSpec) -> Result<()> {
    let Some(legacy) = spec.legacy else {
        return Ok(());
    };
    let maps: Vec<PathBuf> = legacy
        .maps
        .iter()
        .map(|m| pin_root.join(m))
        .filter(|p| p.exists())
        .collect();
    let links = legacy_links(pin_root, spec)?;
    if maps.is_empty() && links.is_empty() {
        return Ok(());
    }
    let dir = pin_root.join(spec.kind.folder(legacy.version));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Bpffs {
        op: "create",
        path: dir.clone(),
        source,
    })?;
    for from in maps {
        let Some(name) = from.file_name() else {
            continue;
        };
        let to = dir.join(name);
        if to.exists() {
            tracing::warn!(pin = %from.display(), "legacy map pin shadowed by the folder's; removed");
            remove_pin(&from)?;
        } else {
            rename(&from, &to)?;
        }
    }
    for (ifindex, from) in links {
        let to = dir.join(spec.link_name(ifindex));
        if to.exists() {
            tracing::warn!(pin = %from.display(), "duplicate legacy link; detached");
            unpin_link(&from)?;
        } else {
            rename(&from, &to)?;
        }
    }
    tracing::info!(program = %spec.kind, folder = %dir.display(), "adopted the legacy flat pins");
    Ok(())
}

/// Removes everything `kind` installed under `pin_root`, without loading it:
/// what it changed outside bpffs (found through its maps), its links in every
/// layout folder and under legacy names (detaching it), tc filters of the
/// pre-TCX path (by program name, on every interface of the calling thread's
/// namespace), its maps and folders. The root goes too when left empty.
pub fn uninstall_program(pin_root: &Path, kind: ProgramKind) -> Result<()> {
    let spec = kind.spec();
    let dirs = version_dirs(pin_root, kind)?;
    // Outside bpffs first: the maps say what to undo.
    if kind == ProgramKind::L2Responder {
        for (version, dir) in &dirs {
            responder::release_outside_bpffs(dir, *version);
        }
        if let Some(legacy) = spec.legacy {
            responder::release_outside_bpffs(pin_root, legacy.version);
        }
    }
    for (_, path) in legacy_links(pin_root, spec)? {
        unpin_link(&path)?;
    }
    if let Some(legacy) = spec.legacy {
        for m in legacy.maps {
            remove_pin(&pin_root.join(m))?;
        }
    }
    for (_, dir) in &dirs {
        remove_folder(dir)?;
    }
    if let Some(ty) = crate::attach::tc_attach_type(spec.attach) {
        for (_, name) in sys::interfaces() {
            // Most interfaces have no clsact qdisc or no such filter.
            let _ = aya::programs::tc::qdisc_detach_program(&name, ty, spec.entry);
        }
    }
    remove_dir_if_empty(pin_root)
}

/// Removes whatever rackd installed under `pin_root`, every program of the
/// registry (see [`uninstall_program`]), and nothing else: pins and folders
/// rackd does not name stay, and so does the root then. Safe to run when
/// nothing is installed. What `rackd datapath uninstall` runs.
pub fn uninstall(pin_root: &Path) -> Result<()> {
    for kind in ProgramKind::all() {
        uninstall_program(pin_root, kind)?;
    }
    remove_dir_if_empty(pin_root)
}
