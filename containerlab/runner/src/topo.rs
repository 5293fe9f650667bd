//! The containerlab topology file: the subset rackd-lab realises, parsed and checked.
//!
//! Accepted: `name`, `topology.nodes.<name>.{kind, image, binds, exec, cmd, env}` and
//! `topology.links[].endpoints: ["node:iface", "node:iface"]`. Other node keys containerlab
//! knows (`labels`, `mgmt-ipv4`, `ports`, `startup-delay`, ...) are ignored because they do not
//! change what runs or how it is wired. Keys that would (`network-mode`, `topology.defaults`,
//! `kinds`, `groups`, any `kind` but `linux`) are refused with a message saying so, rather than
//! silently running a different lab than containerlab would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::error::TopoError;
use crate::shlex;

/// A parsed, validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Lab name (the file's `name`, or the override).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Links in file order.
    pub links: Vec<Link>,
}

/// What a node runs, decided by its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An FRR image (`.../frr:<tag>`): zebra and bgpd with the bound `/etc/frr/frr.conf`.
    Frr,
    /// A rackd image (`.../rackd:<tag>`): this workspace's `rackd` with the node's `cmd`.
    Rackd,
    /// Anything else: a namespace with its `exec` lines (and `cmd`, run from the host).
    Plain,
}

impl Role {
    /// The role of an image reference: its repository's last path component, without tag or
    /// digest, `frr` or `rackd`.
    pub fn of_image(image: &str) -> Self {
        let no_digest = image.split('@').next().unwrap_or(image);
        let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
        let repo = last.split(':').next().unwrap_or(last);
        match repo {
            "frr" => Self::Frr,
            "rackd" => Self::Rackd,
            _ => Self::Plain,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Frr => "frr",
            Self::Rackd => "rackd",
            Self::Plain => "linux",
        })
    }
}

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// The image reference (empty if none).
    pub image: String,
    /// What runs in it.
    pub role: Role,
    /// Bind mounts, host side resolved against the topology file's directory.
    pub binds: Vec<Bind>,
    /// `exec:` lines: the original text and its words.
    pub exec: Vec<(String, Vec<String>)>,
    /// `cmd:` split into words.
    pub cmd: Option<Vec<String>>,
    /// `env:`.
    pub env: Vec<(String, String)>,
}

impl Node {
    /// The host path bound at container path `container`, if any.
    pub fn bind_for(&self, container: &str) -> Option<&Bind> {
        self.binds
            .iter()
            .find(|b| b.container.trim_end_matches('/') == container.trim_end_matches('/'))
    }

    /// Maps a container path to the host: through the bind with the longest matching container
    /// prefix, else `None`.
    pub fn map_bound(&self, path: &str) -> Option<PathBuf> {
        self.binds
            .iter()
            .filter_map(|b| {
                let c = b.container.trim_end_matches('/');
                let rest = path.strip_prefix(c)?;
                (rest.is_empty() || rest.starts_with('/')).then_some((c.len(), b, rest))
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, b, rest)| {
                let rest = rest.trim_start_matches('/');
                if rest.is_empty() {
                    b.host.clone()
                } else {
                    b.host.join(rest)
                }
            })
    }
}

/// `host:container[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute path inside the node.
    pub container: String,
    /// `:ro` (recorded; rackd-lab cannot enforce it without a mount namespace per node).
    pub read_only: bool,
}

/// `node:iface`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// Node name.
    pub node: String,
    /// Interface name inside the node.
    pub iface: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.iface)
    }
}

/// A veth between two endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// First endpoint.
    pub a: Endpoint,
    /// Second endpoint.
    pub b: Endpoint,
}

// ---- raw serde shapes --------------------------------------------------------------------

#[derive(Deserialize)]
struct RawFile {
    name: Option<String>,
    topology: Option<RawTopology>,
}

#[derive(Deserialize)]
struct RawTopology {
    #[serde(default)]
    nodes: BTreeMap<String, Option<RawNode>>,
    #[serde(default)]
    links: Vec<RawLink>,
    defaults: Option<Value>,
    kinds: Option<Value>,
    groups: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawNode {
    kind: Option<String>,
    image: Option<String>,
    group: Option<String>,
    binds: Option<Vec<String>>,
    exec: Option<Vec<String>>,
    cmd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    network_mode: Option<Value>,
}

#[derive(Deserialize)]
struct RawLink {
    endpoints: Option<Vec<String>>,
}

/// Reads and checks `path`; `name` overrides the file's lab name (so tests can run a private
/// copy next to a user's lab).
pub fn load(path: &Path, name: Option<&str>) -> Result<Topology, TopoError> {
    let src = std::fs::read_to_string(path).map_err(|source| TopoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let abs = std::path::absolute(path).map_err(|source| TopoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&src, &abs, name)
}

/// Parses topology text `src` as if read from `file` (relative bind paths resolve against its
/// directory).
pub fn parse(src: &str, file: &Path, name: Option<&str>) -> Result<Topology, TopoError> {
    let fname = file.display().to_string();
    let de = serde_yaml_ng::Deserializer::from_str(src);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| TopoError::Yaml {
        file: fname.clone(),
        field: e.path().to_string(),
        source: e.into_inner(),
    })?;
    let invalid = |needle: &str, what: String, reason: String| TopoError::Invalid {
        file: fname.clone(),
        line: line_of(src, needle),
        what,
        reason,
    };
    let lab = match (name, raw.name.as_deref()) {
        (Some(n), _) => n.to_owned(),
        (None, Some(n)) => n.to_owned(),
        (None, None) => {
            return Err(invalid(
                "name:",
                "name".into(),
                "missing: the lab needs a name".into(),
            ));
        }
    };
    check_name(&lab).map_err(|r| invalid("name:", format!("lab name {lab:?}"), r))?;
    let topo = raw.topology.ok_or_else(|| {
        invalid(
            "topology",
            "topology".into(),
            "missing: expected topology.nodes and topology.links".into(),
        )
    })?;
    for (key, v) in [
        ("defaults", &topo.defaults),
        ("kinds", &topo.kinds),
        ("groups", &topo.groups),
    ] {
        if v.is_some() {
            return Err(invalid(
                &format!("{key}:"),
                format!("topology.{key}"),
                "not supported by rackd-lab: write the settings on each node".into(),
            ));
        }
    }
    if topo.nodes.is_empty() {
        return Err(invalid("nodes", "topology.nodes".into(), "no nodes".into()));
    }
    let base = file.parent().unwrap_or(Path::new("/"));
    let mut nodes = BTreeMap::new();
    for (nname, rn) in &topo.nodes {
        let at = format!("{nname}:");
        let what = format!("node {nname}");
        check_name(nname).map_err(|r| invalid(&at, what.clone(), r))?;
        let Some(rn) = rn else {
            return Err(invalid(
                &at,
                what,
                "empty: expected kind: linux and an image".into(),
            ));
        };
        match rn.kind.as_deref() {
            Some("linux") => {}
            Some(k) => {
                return Err(invalid(
                    &at,
                    what,
                    format!(
                        "kind {k:?} is not supported: rackd-lab runs kind: linux nodes (FRR and rackd are recognised by image)"
                    ),
                ));
            }
            None => return Err(invalid(&at, what, "no kind: expected kind: linux".into())),
        }
        if rn.network_mode.is_some() {
            return Err(invalid(
                "network-mode",
                what,
                "network-mode is not supported by rackd-lab (every node gets its own namespace)"
                    .into(),
            ));
        }
        if rn.group.is_some() {
            return Err(invalid(
                "group:",
                what,
                "group is not supported by rackd-lab".into(),
            ));
        }
        // containerlab's schema requires at least one item when the key is present.
        for (key, v) in [("binds", &rn.binds), ("exec", &rn.exec)] {
            if v.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    &format!("{key}:"),
                    format!("{what} {key}"),
                    "empty list: give at least one item or leave the key out".into(),
                ));
            }
        }
        let image = rn.image.clone().unwrap_or_default();
        let mut binds = Vec::new();
        for b in rn.binds.iter().flatten() {
            binds.push(
                parse_bind(b, base).map_err(|r| invalid(b, format!("{what} bind {b:?}"), r))?,
            );
        }
        let mut exec = Vec::new();
        for (i, line) in rn.exec.iter().flatten().enumerate() {
            let words = shlex::split(line)
                .map_err(|e| invalid(line, format!("{what} exec[{i}]"), e.to_string()))?;
            if words.is_empty() {
                return Err(invalid(
                    line,
                    format!("{what} exec[{i}]"),
                    "empty command".into(),
                ));
            }
            exec.push((line.clone(), words));
        }
        let cmd = match &rn.cmd {
            None => None,
            Some(c) => {
                let words = shlex::split(c)
                    .map_err(|e| invalid("cmd:", format!("{what} cmd"), e.to_string()))?;
                if words.is_empty() {
                    return Err(invalid(
                        "cmd:",
                        format!("{what} cmd"),
                        "empty command".into(),
                    ));
                }
                Some(words)
            }
        };
        let role = Role::of_image(&image);
        if role == Role::Rackd && cmd.is_none() {
            return Err(invalid(
                &at,
                what,
                "a rackd node needs cmd: (the rackd command line)".into(),
            ));
        }
        let mut env = Vec::new();
        for (k, v) in &rn.env {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(invalid(
                        k,
                        format!("{what} env {k}"),
                        "expected a string, number or boolean".into(),
                    ));
                }
            };
            env.push((k.clone(), v));
        }
        nodes.insert(
            nname.clone(),
            Node {
                name: nname.clone(),
                image,
                role,
                binds,
                exec,
                cmd,
                env,
            },
        );
    }
    let mut links = Vec::new();
    let mut seen: BTreeSet<Endpoint> = BTreeSet::new();
    for (i, rl) in topo.links.iter().enumerate() {
        let what = format!("links[{i}]");
        let eps = rl.endpoints.as_deref().unwrap_or_default();
        if eps.len() != 2 {
            let needle = eps.first().map_or("endpoints", String::as_str);
            return Err(invalid(
                needle,
                what,
                format!(
                    "expected endpoints: [\"node:iface\", \"node:iface\"], found {} endpoint(s)",
                    eps.len()
                ),
            ));
        }
        let mut pair = Vec::with_capacity(2);
        for e in eps {
            let ewhat = format!("{what} endpoint {e:?}");
            let ep = parse_endpoint(e).map_err(|r| invalid(e, ewhat.clone(), r))?;
            if !nodes.contains_key(&ep.node) {
                let known: Vec<&str> = nodes.keys().map(String::as_str).collect();
                return Err(invalid(
                    e,
                    ewhat,
                    format!("unknown node {:?} (nodes: {})", ep.node, known.join(", ")),
                ));
            }
            if !seen.insert(ep.clone()) {
                // Point at the second use, not the first.
                return Err(TopoError::Invalid {
                    file: fname.clone(),
                    line: line_of_nth(src, e, 2),
                    reason: "duplicate endpoint: this interface is already used by another link"
                        .into(),
                    what: ewhat,
                });
            }
            pair.push(ep);
        }
        let b = pair.pop();
        let a = pair.pop();
        if let (Some(a), Some(b)) = (a, b) {
            links.push(Link { a, b });
        }
    }
    Ok(Topology {
        name: lab,
        file: file.to_path_buf(),
        nodes,
        links,
    })
}

/// Lab and node names end up in namespace names, directories and FRR pathspaces.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("empty".into());
    }
    if n.len() > 48 {
        return Err("longer than 48 bytes".into());
    }
    if n.starts_with(['-', '.']) {
        return Err("must not start with '-' or '.'".into());
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "character {c:?} not allowed (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn parse_endpoint(e: &str) -> Result<Endpoint, String> {
    let (node, iface) = e
        .split_once(':')
        .ok_or_else(|| "expected \"node:iface\"".to_owned())?;
    if node.is_empty() {
        return Err("empty node name".into());
    }
    netlab::names::check_ifname(iface).map_err(|err| err.to_string())?;
    Ok(Endpoint {
        node: node.to_owned(),
        iface: iface.to_owned(),
    })
}

fn parse_bind(b: &str, base: &Path) -> Result<Bind, String> {
    let parts: Vec<&str> = b.split(':').collect();
    let (host, container, opts) = match parts.as_slice() {
        [h, c] => (*h, *c, None),
        [h, c, o] => (*h, *c, Some(*o)),
        _ => return Err("expected HOST:CONTAINER[:ro|rw]".into()),
    };
    if host.is_empty() {
        return Err("empty host path".into());
    }
    if !container.starts_with('/') {
        return Err(format!("container path {container:?} must be absolute"));
    }
    let read_only = match opts {
        None => false,
        Some(o) => {
            let opts: Vec<&str> = o.split(',').collect();
            if let Some(bad) = opts.iter().find(|x| {
                !matches!(
                    **x,
                    "ro" | "rw"
                        | "z"
                        | "Z"
                        | "shared"
                        | "slave"
                        | "private"
                        | "rshared"
                        | "rslave"
                        | "rprivate"
                )
            }) {
                return Err(format!("unknown bind option {bad:?} (expected ro or rw)"));
            }
            opts.contains(&"ro")
        }
    };
    let hp = Path::new(host);
    let host = if hp.is_absolute() {
        hp.to_path_buf()
    } else {
        normalize(&base.join(hp))
    };
    Ok(Bind {
        host,
        container: container.to_owned(),
        read_only,
    })
}

/// Removes `.` and `..` components lexically (the bind source may not exist yet when parsing).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// 1-based number of the first line containing `needle` (0 if none): good enough to point at
/// the item an error is about, since serde only gives positions for syntax and type errors.
fn line_of(src: &str, needle: &str) -> usize {
    line_of_nth(src, needle, 1)
}

/// 1-based number of the line holding the `n`th occurrence of `needle` (0 if none).
fn line_of_nth(src: &str, needle: &str, n: usize) -> usize {
    let mut seen = 0;
    for (i, l) in src.lines().enumerate() {
        seen += l.matches(needle).count();
        if seen >= n {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_images() {
        assert_eq!(Role::of_image("frrouting/frr:v8.4.0"), Role::Frr);
        assert_eq!(Role::of_image("quay.io/frrouting/frr:8.4.0"), Role::Frr);
        assert_eq!(Role::of_image("rackd:dev"), Role::Rackd);
        assert_eq!(
            Role::of_image("localhost:5000/x/rackd@sha256:00"),
            Role::Rackd
        );
        assert_eq!(Role::of_image("nicolaka/netshoot:v0.11"), Role::Plain);
        assert_eq!(Role::of_image(""), Role::Plain);
    }

    #[test]
    fn bind_mapping() {
        let n = Node {
            name: "n".into(),
            image: String::new(),
            role: Role::Plain,
            binds: vec![
                parse_bind(
                    "../configs/lab:/etc/rackd/config:ro",
                    Path::new("/w/containerlab"),
                )
                .unwrap(),
                parse_bind("/x:/etc/rackd", Path::new("/")).unwrap(),
            ],
            exec: vec![],
            cmd: None,
            env: vec![],
        };
        assert_eq!(n.binds[0].host, Path::new("/w/configs/lab"));
        assert!(n.binds[0].read_only);
        assert_eq!(
            n.map_bound("/etc/rackd/config/bgp.yaml").unwrap(),
            Path::new("/w/configs/lab/bgp.yaml")
        );
        assert_eq!(
            n.map_bound("/etc/rackd/other").unwrap(),
            Path::new("/x/other")
        );
        assert_eq!(n.map_bound("/etc/rackd").unwrap(), Path::new("/x"));
        assert_eq!(n.map_bound("/etc/rackdx"), None);
        assert!(n.bind_for("/etc/rackd/config/").is_some());
        for bad in ["nocolon", "a:relative", ":/x", "a:/b:bogus", "a:/b:ro:x"] {
            assert!(parse_bind(bad, Path::new("/")).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        check_name("rackd-bgp").unwrap();
        check_name("t_1.x").unwrap();
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
