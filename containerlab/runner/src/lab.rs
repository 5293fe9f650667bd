//! Bringing a topology up with namespaces, veths and daemons, and taking it down again.
//!
//! Everything `up` creates is recorded in `/run/rackd-lab/<lab>/state.json` *before* it is
//! created (namespace names) or right after (PIDs with their start times), so `down`, or the
//! rollback of a failed `up`, removes exactly what was made: it signals only recorded PIDs whose
//! start time still matches, deletes only recorded namespaces, and then the state directory.
//!
//! One file of about 1,000 lines on purpose: `up`, its rollback and `down` share the state
//! record's invariants and are only checked by reading them side by side.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use netlab::detached::{self, Detached};
use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::topo::{Node, Role, Topology};

/// Where lab state lives.
pub const RUN_ROOT: &str = "/run/rackd-lab";

/// How long a daemon gets to become ready (zserv socket, vty, admin socket).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `down` waits after SIGTERM before SIGKILL (rackd sends NOTIFICATIONs first).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the binaries come from.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Directory holding `rackd` and `rackctl`; default: the more recently built of this
    /// workspace's `target/release` and `target/debug` (debug built if neither exists).
    pub bin_dir: Option<PathBuf>,
}

/// The recorded state of a lab that is up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Lab name.
    pub lab: String,
    /// The topology file it was started from.
    pub file: PathBuf,
    /// Whether `up` finished.
    pub complete: bool,
    /// Nodes in creation order.
    pub nodes: Vec<NodeState>,
    /// Processes we started, in start order.
    pub processes: Vec<ProcState>,
}

/// One node's runtime facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// What runs in it.
    pub role: Role,
    /// Its network namespace.
    pub netns: String,
    /// Its directory (logs, configs, sockets, the rackd node's private root).
    pub dir: PathBuf,
    /// The rackd admin socket (rackd nodes).
    pub admin_socket: Option<PathBuf>,
    /// FRR's `-N` pathspace (FRR nodes), whose `/var/run/frr/<N>` we remove.
    pub frr_pathspace: Option<String>,
    /// The node's `env:`, applied to `exec` too.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// A process we started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcState {
    /// Node it runs in.
    pub node: String,
    /// Label (`zebra`, `bgpd`, `rackd`, `cmd`).
    pub name: String,
    /// PID.
    pub pid: u32,
    /// Start time (clock ticks since boot), to tell it from a recycled PID.
    pub start_time: u64,
    /// Its log file.
    pub log: PathBuf,
}

impl ProcState {
    /// Whether it still runs.
    pub fn is_alive(&self) -> bool {
        detached::is_alive(self.pid, self.start_time)
    }
}

impl State {
    /// The node named `node`.
    pub fn node(&self, node: &str) -> Result<&NodeState, LabError> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .ok_or_else(|| LabError::NoSuchNode {
                lab: self.lab.clone(),
                node: node.to_owned(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// `/run/rackd-lab/<lab>`.
pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(lab)
}

fn state_file(lab: &str) -> PathBuf {
    lab_dir(lab).join("state.json")
}

/// The namespace of `node` in `lab`: stable, so later invocations find it.
pub fn netns_name(lab: &str, node: &str) -> String {
    format!("rlab-{lab}-{node}")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the state of `lab`; [`LabError::NotUp`] if there is none.
pub fn load_state(lab: &str) -> Result<State, LabError> {
    let path = state_file(lab);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LabError::NotUp {
                lab: lab.to_owned(),
                state: lab_dir(lab),
            });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_str(&text).map_err(|source| LabError::State { path, source })
}

fn save_state(st: &State) -> Result<(), LabError> {
    let path = state_file(&st.lab);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(st).map_err(|source| LabError::State {
        path: path.clone(),
        source,
    })?;
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Brings `topo` up. On failure everything created so far is removed again and the error says
/// which node, link or line failed. Progress lines go to `log`.
pub fn up(topo: &Topology, opts: &Options, log: &dyn Fn(&str)) -> Result<State, LabError> {
    let dir = lab_dir(&topo.name);
    // Checks that need nothing created: bind sources, binaries, namespace names.
    for node in topo.nodes.values() {
        for b in &node.binds {
            if !b.host.exists() {
                return Err(LabError::Setup {
                    node: node.name.clone(),
                    reason: format!(
                        "bind source {} (for {}) does not exist",
                        b.host.display(),
                        b.container
                    ),
                });
            }
        }
    }
    let rackd = if topo.nodes.values().any(|n| n.role == Role::Rackd) {
        Some(find_binary("rackd", opts, log)?)
    } else {
        None
    };
    fs::create_dir_all(RUN_ROOT).map_err(io_err(Path::new(RUN_ROOT)))?;
    // create_dir (not _all) is the lock: two `up`s of one lab cannot both pass it.
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(LabError::AlreadyUp {
                lab: topo.name.clone(),
                state: dir,
            });
        }
        Err(e) => return Err(io_err(&dir)(e)),
    }
    let mut st = State {
        lab: topo.name.clone(),
        file: topo.file.clone(),
        complete: false,
        nodes: Vec::new(),
        processes: Vec::new(),
    };
    let result = save_state(&st).and_then(|()| build(topo, rackd.as_deref(), &mut st, log));
    match result {
        Ok(()) => {
            st.complete = true;
            save_state(&st)?;
            Ok(st)
        }
        Err(e) => {
            log(&format!("up failed, removing what was created: {e}"));
            match teardown(&st, log) {
                Ok(_) => {}
                Err(te) => log(&format!("rollback incomplete: {te}")),
            }
            Err(e)
        }
    }
}

fn build(
    topo: &Topology,
    rackd: Option<&Path>,
    st: &mut State,
    log: &dyn Fn(&str),
) -> Result<(), LabError> {
    let lab = topo.name.clone();
    // Namespaces. The name is recorded before `ip netns add`, so a crash in between still
    // leaves a record; teardown ignores a recorded namespace that does not exist.
    for node in topo.nodes.values() {
        let netns = netns_name(&lab, &node.name);
        if netns_exists(&netns) {
            return Err(LabError::NetnsExists {
                node: node.name.clone(),
                netns,
            });
        }
        let ndir = lab_dir(&lab).join(&node.name);
        fs::create_dir_all(&ndir).map_err(io_err(&ndir))?;
        st.nodes.push(NodeState {
            name: node.name.clone(),
            role: node.role,
            netns: netns.clone(),
            dir: ndir,
            admin_socket: None,
            frr_pathspace: None,
            env: node.env.clone(),
        });
        save_state(st)?;
        let step = |step: &str| {
            let node = node.name.clone();
            let step = step.to_owned();
            move |source| LabError::Node {
                node,
                step,
                source: Box::new(source),
            }
        };
        run(Command::new("ip").args(["netns", "add", &netns]))
            .map_err(step(&format!("creating namespace {netns}")))?;
        run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]))
            .map_err(step("bringing lo up"))?;
    }
    log(&format!("{} namespaces created", topo.nodes.len()));
    // Links: created from inside one end with the peer placed straight into the other, so
    // nothing ever appears in the host namespace.
    for (index, l) in topo.links.iter().enumerate() {
        let (na, nb) = (netns_name(&lab, &l.a.node), netns_name(&lab, &l.b.node));
        let err = |source| LabError::Link {
            index,
            a: l.a.to_string(),
            b: l.b.to_string(),
            source: Box::new(source),
        };
        run(Command::new("ip").args([
            "-n", &na, "link", "add", "name", &l.a.iface, "type", "veth", "peer", "name",
            &l.b.iface, "netns", &nb,
        ]))
        .map_err(err)?;
        run(Command::new("ip").args(["-n", &na, "link", "set", &l.a.iface, "up"])).map_err(err)?;
        run(Command::new("ip").args(["-n", &nb, "link", "set", &l.b.iface, "up"])).map_err(err)?;
    }
    log(&format!("{} links created", topo.links.len()));
    // exec lines before the daemons, so they start with their addresses in place (containerlab
    // runs them just after start; FRR and rackd both cope with either order).
    for node in topo.nodes.values() {
        let netns = netns_name(&lab, &node.name);
        for (i, (line, words)) in node.exec.iter().enumerate() {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &netns])
                .args(words)
                .envs(node.env.iter().map(|(k, v)| (k, v)));
            run(&mut c).map_err(|source| LabError::Node {
                node: node.name.clone(),
                step: format!("exec[{i}] {line:?}"),
                source: Box::new(source),
            })?;
        }
    }
    log("exec lines done");
    // Routers first, so `down` (reverse order) stops the rackd nodes while the ToR still
    // listens and sees their NOTIFICATIONs.
    let mut order: Vec<&Node> = topo.nodes.values().collect();
    order.sort_by_key(|n| n.role != Role::Frr);
    for node in order {
        match node.role {
            Role::Frr => start_frr(node, st, log)?,
            Role::Rackd => {
                let bin = rackd.ok_or_else(|| LabError::Binary {
                    what: "rackd".into(),
                    reason: "not resolved".into(),
                })?;
                start_rackd(node, bin, st, log)?;
            }
            Role::Plain => {
                if let Some(cmd) = &node.cmd {
                    let argv = plain_argv(cmd);
                    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
                    let d = spawn(node, "cmd", &words, &[], st)?;
                    log(&format!(
                        "node {}: cmd (pid {}) started: {}",
                        node.name,
                        d.pid,
                        words.join(" ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// This program, for a `cmd:` or `exec` that runs `rackd-lab` (the pods' `rackd-lab echo`):
/// the image has it on its PATH, the host usually does not.
fn self_exe() -> Option<String> {
    std::env::current_exe()
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// A plain node's `cmd:` as run from the host: `rackd-lab` is this binary, anything else
/// is looked up on the host's PATH.
pub fn plain_argv(cmd: &[String]) -> Vec<String> {
    let mut out = cmd.to_vec();
    if let Some(first) = out.first_mut()
        && first == "rackd-lab"
        && let Some(me) = self_exe()
    {
        *first = me;
    }
    out
}

/// Runs a command to completion, errors carrying its output.
fn run(c: &mut Command) -> Result<(), netlab::Error> {
    netlab::cmd::run(c).map(drop)
}

fn node_state<'a>(st: &'a mut State, node: &str) -> Option<&'a mut NodeState> {
    st.nodes.iter_mut().find(|n| n.name == node)
}

/// Starts `argv` detached in the node's namespace and records it.
fn spawn(
    node: &Node,
    name: &str,
    argv: &[&str],
    env: &[(&str, &str)],
    st: &mut State,
) -> Result<Detached, LabError> {
    let ns = node_state(st, &node.name).map(|n| (n.netns.clone(), n.dir.clone()));
    let Some((netns, dir)) = ns else {
        return Err(LabError::Setup {
            node: node.name.clone(),
            reason: "no namespace recorded".into(),
        });
    };
    let log = dir.join(format!("{name}.log"));
    let mut all_env: Vec<(&str, &str)> = node
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all_env.extend_from_slice(env);
    let d = detached::spawn_detached(&netns, argv, &all_env, &log).map_err(|source| {
        LabError::Node {
            node: node.name.clone(),
            step: format!("starting {name}"),
            source: Box::new(source),
        }
    })?;
    st.processes.push(ProcState {
        node: node.name.clone(),
        name: name.to_owned(),
        pid: d.pid,
        start_time: d.start_time,
        log,
    });
    save_state(st)?;
    Ok(d)
}

/// Waits until `ready()` or the process exits or the timeout passes.
fn wait_ready(
    node: &str,
    name: &str,
    d: &mut Detached,
    log: &Path,
    ready: &dyn Fn() -> bool,
) -> Result<(), LabError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let fail = |reason: String| LabError::Daemon {
        node: node.to_owned(),
        daemon: name.to_owned(),
        reason,
        log: log.to_path_buf(),
        tail: tail(log),
    };
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = d.child.try_wait() {
            return Err(fail(format!("exited with {status}")));
        }
        if Instant::now() >= deadline {
            return Err(fail(format!("not ready after {READY_TIMEOUT:?}")));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn tail(log: &Path) -> String {
    let text = fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn start_frr(node: &Node, st: &mut State, log: &dyn Fn(&str)) -> Result<(), LabError> {
    let setup = |reason: String| LabError::Setup {
        node: node.name.clone(),
        reason,
    };
    let conf_src = node
        .bind_for("/etc/frr/frr.conf")
        .ok_or_else(|| setup("an FRR node needs a bind for /etc/frr/frr.conf".into()))?;
    if let Some(d) = node.bind_for("/etc/frr/daemons") {
        let text = fs::read_to_string(&d.host).map_err(io_err(&d.host))?;
        let enabled: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_suffix("=yes"))
            .filter(|d| d.ends_with('d'))
            .collect();
        if !enabled.contains(&"bgpd") {
            return Err(setup(format!(
                "{} does not enable bgpd (bgpd=yes)",
                d.host.display()
            )));
        }
        let ignored: Vec<&str> = enabled.into_iter().filter(|d| *d != "bgpd").collect();
        if !ignored.is_empty() {
            log(&format!(
                "node {}: rackd-lab runs zebra and bgpd only; ignoring {}",
                node.name,
                ignored.join(", ")
            ));
        }
    }
    let Some(ns) = node_state(st, &node.name) else {
        return Err(setup("no namespace recorded".into()));
    };
    let dir = ns.dir.clone();
    let pathspace = ns.netns.clone();
    ns.frr_pathspace = Some(pathspace.clone());
    // A copy, so `write memory` in vtysh never rewrites the repository's file.
    let conf = dir.join("frr.conf");
    fs::copy(&conf_src.host, &conf).map_err(io_err(&conf_src.host))?;
    let zconf = dir.join("zebra.conf");
    fs::write(&zconf, format!("hostname {}\n", node.name)).map_err(io_err(&zconf))?;
    let vconf = dir.join("vtysh.conf");
    fs::write(&vconf, "").map_err(io_err(&vconf))?;

    let zargs = netlab::frr::daemon_argv("zebra", &pathspace, &zconf, &dir);
    let zargv: Vec<&str> = zargs.iter().map(String::as_str).collect();
    let mut zebra = spawn(node, "zebra", &zargv, &[], st)?;
    let zserv = dir.join("zserv.api");
    wait_ready(
        &node.name,
        "zebra",
        &mut zebra,
        &dir.join("zebra.log"),
        &|| zserv.exists(),
    )?;
    let bargs = netlab::frr::daemon_argv("bgpd", &pathspace, &conf, &dir);
    let bargv: Vec<&str> = bargs.iter().map(String::as_str).collect();
    let mut bgpd = spawn(node, "bgpd", &bargv, &[], st)?;
    wait_ready(
        &node.name,
        "bgpd",
        &mut bgpd,
        &dir.join("bgpd.log"),
        &|| {
            Command::new("vtysh")
                .arg("--vty_socket")
                .arg(&dir)
                .arg("--config_dir")
                .arg(&dir)
                .args(["-c", "show bgp summary json"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        },
    )?;
    log(&format!(
        "node {}: FRR zebra (pid {}) and bgpd (pid {}) running",
        node.name, zebra.pid, bgpd.pid
    ));
    Ok(())
}

/// Maps the node's `cmd` to a host command line: the workspace's rackd binary, container paths
/// through the binds, every other absolute path into the node's private root (its own
/// `/var/lib/rackd`, `/run/rackd/admin.sock`), and `--node-name`/`--admin-socket` added if
/// missing (containerlab names the container's hostname after the node; the runner needs the
/// socket's path).
pub fn rackd_argv(node: &Node, rackd: &Path, root: &Path) -> (Vec<String>, PathBuf) {
    let map = |p: &str| -> String {
        if !p.starts_with('/') {
            return p.to_owned();
        }
        node.map_bound(p)
            .unwrap_or_else(|| root.join(p.trim_start_matches('/')))
            .to_string_lossy()
            .into_owned()
    };
    let words = node.cmd.clone().unwrap_or_default();
    let mut out = vec![rackd.to_string_lossy().into_owned()];
    let mut has_name = false;
    let mut socket = None;
    let mut prev_flag = String::new();
    for w in words.iter().skip(1) {
        let mapped = match w.split_once('=') {
            Some((flag, val)) if flag.starts_with("--") => format!("{flag}={}", map(val)),
            _ => map(w),
        };
        let flag = mapped.split_once('=').map_or(mapped.as_str(), |(f, _)| f);
        if flag == "--node-name" {
            has_name = true;
        }
        if let Some(v) = mapped.strip_prefix("--admin-socket=") {
            socket = Some(PathBuf::from(v));
        } else if prev_flag == "--admin-socket" {
            socket = Some(PathBuf::from(&mapped));
        }
        prev_flag = mapped.clone();
        out.push(mapped);
    }
    if !has_name {
        out.extend(["--node-name".to_owned(), node.name.clone()]);
    }
    let socket = match socket {
        Some(s) => s,
        None => {
            let s = root.join("run/rackd/admin.sock");
            out.extend([
                "--admin-socket".to_owned(),
                s.to_string_lossy().into_owned(),
            ]);
            s
        }
    };
    (out, socket)
}

fn start_rackd(
    node: &Node,
    rackd: &Path,
    st: &mut State,
    log: &dyn Fn(&str),
) -> Result<(), LabError> {
    let Some(ns) = node_state(st, &node.name) else {
        return Err(LabError::Setup {
            node: node.name.clone(),
            reason: "no namespace recorded".into(),
        });
    };
    let dir = ns.dir.clone();
    let root = dir.join("root");
    let (argv, socket) = rackd_argv(node, rackd, &root);
    ns.admin_socket = Some(socket.clone());
    // The private root's directories a container image would have.
    for d in ["run/rackd", "var/lib", "etc"] {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    if let Some(parent) = socket.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut d = spawn(node, "rackd", &words, &[], st)?;
    wait_ready(&node.name, "rackd", &mut d, &dir.join("rackd.log"), &|| {
        socket.exists()
    })?;
    log(&format!(
        "node {}: rackd (pid {}) running, admin socket {}",
        node.name,
        d.pid,
        socket.display()
    ));
    Ok(())
}

/// Stops every recorded process (last started first), deletes every recorded namespace and
/// FRR pathspace, then the state directory. Returns warnings (processes inside a namespace
/// that we did not start are reported, not killed); an error if something could not be
/// removed (the state is then kept so `down` can be retried).
pub fn teardown(st: &State, log: &dyn Fn(&str)) -> Result<Vec<String>, LabError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for p in st.processes.iter().rev() {
        match detached::terminate(p.pid, p.start_time, STOP_GRACE) {
            Ok(true) => log(&format!(
                "node {}: stopped {} (pid {})",
                p.node, p.name, p.pid
            )),
            Ok(false) => {}
            Err(e) => problems.push(format!(
                "node {}: cannot stop {} (pid {}): {e}",
                p.node, p.name, p.pid
            )),
        }
    }
    for n in st.nodes.iter().rev() {
        if netns_exists(&n.netns) {
            let others = netlab::cmd::run_stdout("ip", ["netns", "pids", n.netns.as_str()])
                .unwrap_or_default();
            let others: Vec<String> = others
                .split_whitespace()
                .filter(|p| {
                    p.parse::<u32>().is_ok_and(|pid| {
                        detached::start_time(pid).is_some()
                            && !fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                                s.rsplit_once(')')
                                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                            })
                    })
                })
                .map(|p| {
                    let comm = fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                    format!("{p} ({})", comm.trim())
                })
                .collect();
            if !others.is_empty() {
                warnings.push(format!(
                    "node {}: processes not started by rackd-lab up were still in namespace {} and were left running: {}",
                    n.name,
                    n.netns,
                    others.join(", ")
                ));
            }
            if let Err(e) = run(Command::new("ip").args(["netns", "del", &n.netns])) {
                problems.push(format!(
                    "node {}: cannot delete namespace {}: {e}",
                    n.name, n.netns
                ));
            }
        }
        if let Some(ps) = &n.frr_pathspace {
            let _ = fs::remove_dir_all(Path::new("/var/run/frr").join(ps));
        }
    }
    if !problems.is_empty() {
        return Err(LabError::Teardown {
            lab: st.lab.clone(),
            problems: problems.join("\n"),
        });
    }
    let dir = lab_dir(&st.lab);
    fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(warnings)
}

/// Takes lab `lab` down. `Ok(None)` if it was not up.
pub fn down(lab: &str, log: &dyn Fn(&str)) -> Result<Option<Vec<String>>, LabError> {
    let st = match load_state(lab) {
        Ok(st) => st,
        Err(LabError::NotUp { .. }) => {
            // A crash between creating the directory and writing the state leaves only the
            // (empty) directory: remove it so `up` works again.
            let dir = lab_dir(lab);
            if dir.exists() {
                let has_nodes = fs::read_dir(&dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true);
                if !has_nodes {
                    fs::remove_dir(&dir).map_err(io_err(&dir))?;
                }
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    teardown(&st, log).map(Some)
}

/// The command line `exec` runs for `argv` in `node`: `vtysh` pointed at an FRR node's
/// sockets, `rackctl` from the workspace when found, `rackd-lab` as this binary (for
/// `rackd-lab udp-probe`), plus environment (`RACKD_SOCKET` for a
/// rackd node, the node's `env:`).
pub fn exec_command(
    node: &NodeState,
    argv: &[String],
    opts: &Options,
) -> (Vec<String>, BTreeMap<String, String>) {
    let mut env: BTreeMap<String, String> = node.env.iter().cloned().collect();
    let mut out: Vec<String> = argv.to_vec();
    match (node.role, argv.first().map(String::as_str)) {
        (Role::Frr, Some("vtysh")) => {
            let d = node.dir.to_string_lossy().into_owned();
            out.splice(
                1..1,
                [
                    "--vty_socket".to_owned(),
                    d.clone(),
                    "--config_dir".to_owned(),
                    d,
                ],
            );
        }
        (_, Some("rackctl")) => {
            if let Some(p) = existing_binary("rackctl", opts) {
                out[0] = p.to_string_lossy().into_owned();
            }
        }
        (_, Some("rackd-lab")) => out = plain_argv(&out),
        _ => {}
    }
    if let Some(s) = &node.admin_socket {
        env.insert("RACKD_SOCKET".into(), s.to_string_lossy().into_owned());
    }
    (out, env)
}

/// Runs `argv` inside `node` of the lab with the terminal's stdin/stdout/stderr.
pub fn exec(
    st: &State,
    node: &str,
    argv: &[String],
    opts: &Options,
) -> Result<ExitStatus, LabError> {
    let n = st.node(node)?;
    let (argv, env) = exec_command(n, argv, opts);
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &n.netns]).args(&argv).envs(&env);
    c.status().map_err(|source| LabError::Exec {
        node: node.to_owned(),
        cmd: argv.join(" "),
        source,
    })
}

/// A status report: per node its namespace and processes. The flag is false if a namespace
/// is missing or a process has died.
pub fn status(st: &State) -> (String, bool) {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut healthy = st.complete;
    let _ = writeln!(
        s,
        "lab {} ({}){}",
        st.lab,
        st.file.display(),
        if st.complete {
            ""
        } else {
            ": up did not finish"
        }
    );
    let width = st.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for n in &st.nodes {
        let ns_ok = netns_exists(&n.netns);
        healthy &= ns_ok;
        let procs: Vec<String> = st
            .processes
            .iter()
            .filter(|p| p.node == n.name)
            .map(|p| {
                let alive = p.is_alive();
                healthy &= alive;
                format!(
                    "{} {} {}",
                    p.name,
                    p.pid,
                    if alive { "running" } else { "DEAD" }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "  {:<width$} {:<6} netns {}{}  {}",
            n.name,
            n.role.to_string(),
            n.netns,
            if ns_ok { "" } else { " (MISSING)" },
            procs.join(", ")
        );
    }
    (s, healthy)
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target"),
    }
}

/// The workspace this runner was built in (where `cargo build -p rackd` works).
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

fn existing_binary(name: &str, opts: &Options) -> Option<PathBuf> {
    if let Some(d) = &opts.bin_dir {
        let p = d.join(name);
        return p.exists().then_some(p);
    }
    let t = target_dir();
    newest(
        ["release", "debug"]
            .iter()
            .map(|prof| t.join(prof).join(name)),
    )
}

/// The most recently modified of `paths` that exists (the first on a tie). A release build
/// left over from an hour ago must not shadow the debug build made a minute ago: the lab
/// would silently run old code.
fn newest(paths: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for p in paths {
        let Some(m) = std::fs::metadata(&p).ok().and_then(|m| m.modified().ok()) else {
            continue;
        };
        if best.as_ref().is_none_or(|(bm, _)| m > *bm) {
            best = Some((m, p));
        }
    }
    best.map(|(_, p)| p)
}

/// `rackd`/`rackctl`: from `--bin-dir`, else the newer of the workspace's release and debug
/// builds, else builds the debug one (`cargo build -p rackd -p rackctl`).
pub fn find_binary(name: &str, opts: &Options, log: &dyn Fn(&str)) -> Result<PathBuf, LabError> {
    if let Some(p) = existing_binary(name, opts) {
        return Ok(p);
    }
    if let Some(d) = &opts.bin_dir {
        return Err(LabError::Binary {
            what: name.into(),
            reason: format!("{} does not exist", d.join(name).display()),
        });
    }
    let ws = workspace_root();
    log(&format!(
        "{name} is not built; running cargo build -p rackd -p rackctl in {}",
        ws.display()
    ));
    let status = Command::new("cargo")
        .args(["build", "-p", "rackd", "-p", "rackctl"])
        .current_dir(&ws)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| LabError::Binary {
            what: name.into(),
            reason: format!("cannot run cargo: {e}"),
        })?;
    if !status.success() {
        return Err(LabError::Binary {
            what: name.into(),
            reason: format!("cargo build failed with {status}"),
        });
    }
    existing_binary(name, opts).ok_or_else(|| LabError::Binary {
        what: name.into(),
        reason: "cargo build succeeded but the binary is not in target/debug".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rackd_command_line_is_mapped() {
        let topo = crate::topo::parse(
            "name: t\ntopology:\n  nodes:\n    n1:\n      kind: linux\n      image: rackd:dev\n      binds: [\"../cfg:/etc/rackd/config:ro\"]\n      cmd: rackd --config-dir /etc/rackd/config --state-dir=/var/lib/rackd --metrics-addr off\n",
            Path::new("/w/lab/t.clab.yml"),
            None,
        )
        .unwrap();
        let n = &topo.nodes["n1"];
        let (argv, sock) = rackd_argv(n, Path::new("/bin/rackd"), Path::new("/r"));
        assert_eq!(
            argv,
            [
                "/bin/rackd",
                "--config-dir",
                "/w/cfg",
                "--state-dir=/r/var/lib/rackd",
                "--metrics-addr",
                "off",
                "--node-name",
                "n1",
                "--admin-socket",
                "/r/run/rackd/admin.sock"
            ]
        );
        assert_eq!(sock, Path::new("/r/run/rackd/admin.sock"));

        let mut n2 = n.clone();
        n2.cmd = Some(
            ["rackd", "--node-name", "x", "--admin-socket", "/run/a.sock"]
                .map(String::from)
                .to_vec(),
        );
        let (argv, sock) = rackd_argv(&n2, Path::new("/bin/rackd"), Path::new("/r"));
        assert_eq!(argv.len(), 5);
        assert_eq!(sock, Path::new("/r/run/a.sock"));
    }

    #[test]
    fn newest_binary_wins() {
        let d = std::env::temp_dir().join(format!("rackd-lab-newest-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (old, new) = (d.join("release"), d.join("debug"));
        std::fs::write(&old, "").unwrap();
        std::fs::write(&new, "").unwrap();
        let t = std::time::SystemTime::now();
        let set = |p: &Path, t| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        set(&old, t - Duration::from_secs(3600));
        set(&new, t);
        let missing = d.join("nothing");
        assert_eq!(
            newest([missing.clone(), old.clone(), new.clone()]),
            Some(new.clone())
        );
        set(&new, t - Duration::from_secs(7200));
        assert_eq!(newest([old.clone(), new.clone()]), Some(old.clone()));
        assert_eq!(newest([missing]), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn exec_maps_vtysh_and_rackctl_socket() {
        let n = NodeState {
            name: "tor".into(),
            role: Role::Frr,
            netns: "rlab-x-tor".into(),
            dir: "/run/rackd-lab/x/tor".into(),
            admin_socket: None,
            frr_pathspace: None,
            env: vec![],
        };
        let (argv, env) = exec_command(
            &n,
            &["vtysh".into(), "-c".into(), "show bgp summary".into()],
            &Options::default(),
        );
        assert_eq!(
            argv,
            [
                "vtysh",
                "--vty_socket",
                "/run/rackd-lab/x/tor",
                "--config_dir",
                "/run/rackd-lab/x/tor",
                "-c",
                "show bgp summary"
            ]
        );
        assert!(env.is_empty());
        let r = NodeState {
            role: Role::Rackd,
            admin_socket: Some("/s.sock".into()),
            ..n
        };
        let (_, env) = exec_command(&r, &["rackctl".into()], &Options::default());
        assert_eq!(env["RACKD_SOCKET"], "/s.sock");
        // `rackd-lab` is this very binary (the test executable here), other commands stay.
        let me = std::env::current_exe().unwrap();
        let (argv, _) = exec_command(
            &r,
            &[
                "rackd-lab".into(),
                "udp-probe".into(),
                "10.1.1.11:5353".into(),
            ],
            &Options::default(),
        );
        assert_eq!(argv[0], me.to_string_lossy());
        assert_eq!(argv[1..], ["udp-probe", "10.1.1.11:5353"]);
        let cmd = ["rackd-lab", "echo", "--name", "p"].map(String::from);
        assert_eq!(plain_argv(&cmd)[0], me.to_string_lossy());
        assert_eq!(plain_argv(&cmd)[1..], cmd[1..]);
        let other = ["sleep", "rackd-lab"].map(String::from);
        assert_eq!(plain_argv(&other), other);
    }
}
