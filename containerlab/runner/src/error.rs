//! Errors: one enum for reading a topology, one for running it.

use std::io;
use std::path::PathBuf;

/// A topology file that cannot be used. Every variant names the file and, where it can, the
/// node, link and line involved.
#[derive(Debug, thiserror::Error)]
pub enum TopoError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Not YAML, or YAML of the wrong shape (the source has the field path, line and column).
    #[error("{file}: not a valid topology (at {field})")]
    Yaml {
        /// The file.
        file: String,
        /// The field path where it went wrong (`topology.nodes.tor.exec[2]`), `.` for the root.
        field: String,
        /// The parser's error, with line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A value is present and well-formed YAML but not acceptable.
    #[error("{file}:{line}: {what}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the offending item (0 when unknown).
        line: usize,
        /// Which item, as a path (`topology.nodes.tor.exec[2]`, `topology.links[1].endpoints[0]`).
        what: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A key containerlab's schema does not allow at this place.
    #[error("{file}:{line}: {path}: unknown key; containerlab accepts {allowed}")]
    UnknownKey {
        /// The file.
        file: String,
        /// 1-based line of the key (0 when unknown).
        line: usize,
        /// Its path (`topology.nodes.tor.bogus`).
        path: String,
        /// The keys allowed there, comma-separated.
        allowed: String,
    },
    /// Something containerlab accepts but rackd-lab cannot realise faithfully.
    #[error("{file}:{line}: {path}: not supported by rackd-lab: {reason}")]
    Unsupported {
        /// The file.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// Its path (`topology.defaults`, `topology.nodes.a.kind`).
        path: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// A `cmd:`/`exec:` string that does not split into words.
    #[error("command {line:?}: {reason}")]
    Command {
        /// The command string.
        line: String,
        /// What is wrong.
        reason: String,
    },
}

/// Failures while bringing a lab up or down, running commands in it, or reading its state.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The topology is unusable.
    #[error(transparent)]
    Topo(#[from] TopoError),
    /// `up` on a lab that is already up.
    #[error(
        "lab {lab} is already up (state in {state}); run `rackd-lab down` first, or pass --name to run a second copy"
    )]
    AlreadyUp {
        /// Lab name.
        lab: String,
        /// Its state directory.
        state: PathBuf,
    },
    /// A command for a lab that is not up.
    #[error("lab {lab} is not up (no state in {state})")]
    NotUp {
        /// Lab name.
        lab: String,
        /// The state directory that is missing.
        state: PathBuf,
    },
    /// A namespace we would create already exists but is not recorded as ours.
    #[error(
        "node {node}: network namespace {netns} already exists and is not part of a running lab; remove it with `ip netns del {netns}` if it is a leftover"
    )]
    NetnsExists {
        /// Node.
        node: String,
        /// Namespace name.
        netns: String,
    },
    /// `exec` named a node the lab does not have.
    #[error("lab {lab} has no node {node} (nodes: {known})")]
    NoSuchNode {
        /// Lab name.
        lab: String,
        /// The node asked for.
        node: String,
        /// The nodes it has.
        known: String,
    },
    /// A step for one node failed.
    #[error("node {node}: {step}")]
    Node {
        /// Node.
        node: String,
        /// What was being done (`exec line 3 "ip addr add ..."`, `starting bgpd`).
        step: String,
        /// The cause.
        #[source]
        source: Box<netlab::Error>,
    },
    /// Creating a link failed.
    #[error("link {index} ({a} -- {b}): creating the veth pair")]
    Link {
        /// Index in `topology.links`.
        index: usize,
        /// First endpoint.
        a: String,
        /// Second endpoint.
        b: String,
        /// The cause.
        #[source]
        source: Box<netlab::Error>,
    },
    /// A node needs something the topology or the machine does not provide.
    #[error("node {node}: {reason}")]
    Setup {
        /// Node.
        node: String,
        /// What is missing.
        reason: String,
    },
    /// A daemon exited or never became ready.
    #[error("node {node}: {daemon} did not start: {reason}\n--- {log} ---\n{tail}")]
    Daemon {
        /// Node.
        node: String,
        /// Which daemon.
        daemon: String,
        /// What was observed.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The rackd/rackctl binaries could not be found or built.
    #[error("cannot find or build {what}: {reason}")]
    Binary {
        /// Which binary.
        what: String,
        /// Why.
        reason: String,
    },
    /// State file or directory I/O.
    #[error("I/O error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file is not what we wrote.
    #[error("corrupt state file {path}")]
    State {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// `down` could not remove everything.
    #[error("lab {lab}: teardown incomplete:\n{problems}")]
    Teardown {
        /// Lab name.
        lab: String,
        /// One line per thing left behind.
        problems: String,
    },
    /// Running a command in a node failed to start.
    #[error("node {node}: cannot run {cmd}")]
    Exec {
        /// Node.
        node: String,
        /// The command line.
        cmd: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
