//! Errors of the datapath crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong loading, pinning, attaching or driving a
/// program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on the pin folder failed.
    #[error("bpffs: cannot {op} {}", path.display())]
    Bpffs {
        /// What was attempted.
        op: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The pin folder is not on a bpf filesystem (and could not be mounted).
    #[error("{} is not on a bpf filesystem", path.display())]
    NotBpffs {
        /// The pin folder.
        path: PathBuf,
    },
    /// The kernel refused the eBPF object (maps or BTF).
    #[error("loading the eBPF object")]
    Load(#[source] Box<aya::EbpfError>),
    /// The embedded object lacks an expected program or map (build mismatch).
    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// The embedded object holds something this crate does not handle
    /// (build mismatch).
    #[error("the eBPF object has an unexpected {kind} {name}")]
    Unexpected {
        /// What it is.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The program's attach point has no attachment code yet.
    #[error("{program}: attaching at {point:?} is not supported")]
    Unsupported {
        /// The program.
        program: crate::ProgramKind,
        /// Its attach point.
        point: crate::AttachPoint,
    },
    /// The ordering policy has no place for the program on the device.
    #[error("{program} on interface {ifindex}: no place in the chain")]
    Order {
        /// The program.
        program: crate::ProgramKind,
        /// The device.
        ifindex: u32,
        /// Why.
        #[source]
        source: crate::order::OrderError,
    },
    /// A program operation on an interface failed (querying its chain).
    #[error("interface {ifindex}: cannot {op}")]
    InterfaceProgram {
        /// Interface index.
        ifindex: u32,
        /// What was attempted.
        op: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A program operation failed (verifier, attach, test run).
    #[error("program {name}: cannot {op}")]
    Program {
        /// Program name.
        name: &'static str,
        /// What was attempted.
        op: &'static str,
        /// Cause (the verifier log is in here for load errors).
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map operation failed.
    #[error("map {name}: cannot {op}")]
    Map {
        /// Map name.
        name: &'static str,
        /// What was attempted.
        op: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Opening a pinned link failed.
    #[error("link {}: cannot open", path.display())]
    LinkOpen {
        /// Pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: aya::programs::links::LinkError,
    },
    /// Pinning a link failed.
    #[error("link {}: cannot pin", path.display())]
    LinkPin {
        /// Pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: aya::pin::PinError,
    },
    /// The caller asked for something the datapath cannot hold (a LUT of the
    /// wrong size, a backend id that is not written, mixed address families).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was refused.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// An interface lookup or setting failed.
    #[error("interface {ifindex}: cannot {op}")]
    Interface {
        /// Interface index.
        ifindex: u32,
        /// What was attempted.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn map(name: &'static str, op: &'static str, e: aya::maps::MapError) -> Self {
        Error::Map {
            name,
            op,
            source: Box::new(e),
        }
    }

    pub(crate) fn prog(
        name: &'static str,
        op: &'static str,
        e: impl Into<aya::programs::ProgramError>,
    ) -> Self {
        Error::Program {
            name,
            op,
            source: Box::new(e.into()),
        }
    }

    pub(crate) fn iface_prog(
        ifindex: u32,
        op: &'static str,
        e: impl Into<aya::programs::ProgramError>,
    ) -> Self {
        Error::InterfaceProgram {
            ifindex,
            op,
            source: Box::new(e.into()),
        }
    }

    pub(crate) fn iface(ifindex: u32, op: &'static str, source: io::Error) -> Self {
        Error::Interface {
            ifindex,
            op,
            source,
        }
    }
}
