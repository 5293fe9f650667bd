//! The containerlab topology file: checked against containerlab's own rules, then against
//! what rackd-lab realises.
//!
//! We cannot run containerlab here, so this parser stands in for its validation: every key
//! is checked against the keys, types and node kinds of containerlab's topology schema (see
//! the tables below), so a file rackd-lab accepts is one containerlab accepts. Unknown keys
//! are errors naming their path and the keys allowed there. Of the keys containerlab knows,
//! rackd-lab realises `name`, `topology.nodes.<name>.{kind, image, binds, exec, cmd, env}` and
//! `topology.links[].endpoints`; it ignores those that do not change what runs or how nodes
//! are wired ([`ignored_node_keys`], `prefix`, `mgmt`, `settings`, link `vars`) and refuses
//! those that would (`network-mode`, `user`, `entrypoint`, `stages`, `topology.defaults`,
//! `topology.kinds`, any `kind` but `linux`) rather than silently run a different lab.
//!
//! The schema's rules and their checker are in `topo/schema.rs`; here, the topology types and
//! the parse that checks a file against them and realises it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::error::TopoError;
use crate::shlex;

mod schema;

use self::schema::*;
pub use self::schema::{CONTAINERLAB_KINDS, ignored_node_keys};

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

/// `a.b`, or `b` at the root.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn get<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.get(Value::String(key.to_owned()))
}

fn get_str<'a>(m: &'a Mapping, key: &str) -> Option<&'a str> {
    get(m, key).and_then(Value::as_str)
}

fn str_items<'a>(m: &'a Mapping, key: &str) -> Vec<&'a str> {
    match get(m, key) {
        Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
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
/// directory). First every key is checked against containerlab's schema (so a file rackd-lab
/// accepts is one containerlab accepts), then against what rackd-lab can realise.
pub fn parse(src: &str, file: &Path, name: Option<&str>) -> Result<Topology, TopoError> {
    let fname = file.display().to_string();
    let yaml_err = |field: String, source| TopoError::Yaml {
        file: fname.clone(),
        field,
        source,
    };
    let de = serde_yaml_ng::Deserializer::from_str(src);
    let mut root: Value = serde_path_to_error::deserialize(de)
        .map_err(|e| yaml_err(e.path().to_string(), e.into_inner()))?;
    // containerlab's YAML library applies `<<: *anchor` merge keys; so do we.
    root.apply_merge().map_err(|e| yaml_err(".".into(), e))?;
    let cx = Cx {
        src,
        file: fname.clone(),
    };
    let Value::Mapping(top) = &root else {
        return Err(cx.invalid(
            1,
            "(file)",
            format!(
                "expected a mapping with name and topology, found {}",
                kind_of(&root)
            ),
        ));
    };
    cx.check_keys(top, "", ROOT_KEYS, true, 1)?;
    // containerlab requires `name` even when rackd-lab is told to use another one.
    let Some(file_name) = get_str(top, "name") else {
        return Err(cx.invalid(0, "name", "missing: containerlab requires the lab's name"));
    };
    let lab = name.unwrap_or(file_name).to_owned();
    check_name(&lab)
        .map_err(|r| cx.invalid(key_line(src, 1, "name"), format!("name {lab:?}"), r))?;
    let Some(Value::Mapping(topo)) = get(top, "topology") else {
        return Err(cx.invalid(
            0,
            "topology",
            "missing: containerlab requires topology (with topology.nodes)",
        ));
    };
    let topo_line = key_line(src, 1, "topology");
    cx.check_keys(topo, "topology", TOPOLOGY_KEYS, false, topo_line)?;
    let Some(Value::Mapping(raw_nodes)) = get(topo, "nodes") else {
        return Err(cx.invalid(
            topo_line,
            "topology.nodes",
            "missing: containerlab requires topology.nodes",
        ));
    };
    let nodes_line = key_line(src, topo_line, "nodes");
    if raw_nodes.is_empty() {
        return Err(cx.invalid(nodes_line, "topology.nodes", "no nodes"));
    }
    let base = file.parent().unwrap_or(Path::new("/"));
    let mut nodes = BTreeMap::new();
    for (k, rn) in raw_nodes {
        let Some(nname) = k.as_str() else {
            return Err(cx.invalid(
                nodes_line,
                format!("topology.nodes: key {k:?}"),
                "node names must be strings",
            ));
        };
        let what = format!("topology.nodes.{nname}");
        let at = key_line(src, nodes_line, nname);
        check_name(nname).map_err(|r| cx.invalid(at, what.clone(), r))?;
        let rn = match rn {
            Value::Mapping(m) => m,
            // containerlab allows a bare `name:` (everything from defaults/kinds), which
            // rackd-lab does not model.
            Value::Null => {
                return Err(TopoError::Unsupported {
                    file: fname.clone(),
                    line: at,
                    path: what,
                    reason: "a node without settings takes them from topology.defaults/kinds; write kind: linux and an image".into(),
                });
            }
            other => {
                return Err(cx.invalid(
                    at,
                    what,
                    format!(
                        "expected a mapping of node settings, found {}",
                        kind_of(other)
                    ),
                ));
            }
        };
        cx.check_keys(rn, &what, NODE_KEYS, true, at)?;
        match get_str(rn, "kind") {
            Some("linux") => {}
            Some(k) if CONTAINERLAB_KINDS.contains(&k) => {
                return Err(TopoError::Unsupported {
                    file: fname.clone(),
                    line: key_line(src, at, "kind"),
                    path: format!("{what}.kind"),
                    reason: format!(
                        "kind {k:?}: rackd-lab runs kind: linux nodes (FRR and rackd are recognised by image)"
                    ),
                });
            }
            Some(k) => {
                return Err(cx.invalid(
                    key_line(src, at, "kind"),
                    format!("{what}.kind"),
                    format!(
                        "unknown kind {k:?}; containerlab accepts {} (rackd-lab runs linux)",
                        CONTAINERLAB_KINDS.join(", ")
                    ),
                ));
            }
            None => {
                return Err(cx.invalid(
                    at,
                    what,
                    "no kind: expected kind: linux (topology.defaults/kinds are not supported)",
                ));
            }
        }
        let image = get_str(rn, "image").unwrap_or_default().to_owned();
        let mut binds = Vec::new();
        for (i, b) in str_items(rn, "binds").into_iter().enumerate() {
            binds.push(parse_bind(b, base).map_err(|r| {
                cx.invalid(
                    line_of_nth_from(src, at, b, 1),
                    format!("{what}.binds[{i}]"),
                    r,
                )
            })?);
        }
        let mut exec = Vec::new();
        for (i, line) in str_items(rn, "exec").into_iter().enumerate() {
            let ewhat = format!("{what}.exec[{i}]");
            let eline = line_of_nth_from(src, at, line, 1);
            let words =
                shlex::split(line).map_err(|e| cx.invalid(eline, ewhat.clone(), e.to_string()))?;
            if words.is_empty() {
                return Err(cx.invalid(eline, ewhat, "empty command"));
            }
            exec.push((line.to_owned(), words));
        }
        let cmd = match get_str(rn, "cmd") {
            None => None,
            Some(c) => {
                let cline = key_line(src, at, "cmd");
                let words = shlex::split(c)
                    .map_err(|e| cx.invalid(cline, format!("{what}.cmd"), e.to_string()))?;
                if words.is_empty() {
                    return Err(cx.invalid(cline, format!("{what}.cmd"), "empty command"));
                }
                Some(words)
            }
        };
        let role = Role::of_image(&image);
        if role == Role::Rackd && cmd.is_none() {
            return Err(cx.invalid(at, what, "a rackd node needs cmd: (the rackd command line)"));
        }
        let mut env = Vec::new();
        if let Some(Value::Mapping(m)) = get(rn, "env") {
            for (k, v) in m {
                let (Some(k), Some(v)) = (
                    k.as_str(),
                    match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    },
                ) else {
                    // check_keys verified the shape.
                    continue;
                };
                env.push((k.to_owned(), v));
            }
        }
        nodes.insert(
            nname.to_owned(),
            Node {
                name: nname.to_owned(),
                image,
                role,
                binds,
                exec,
                cmd,
                env,
            },
        );
    }
    let links = parse_links(&cx, topo, topo_line, &nodes)?;
    Ok(Topology {
        name: lab,
        file: file.to_path_buf(),
        nodes,
        links,
    })
}

/// `topology.links`: containerlab's rules (a mapping per link, endpoints `^\S+:\S+$`, at
/// least two, distinct), then rackd-lab's (exactly two, known nodes, kernel interface names,
/// each interface in one link only).
fn parse_links(
    cx: &Cx<'_>,
    topo: &Mapping,
    topo_line: usize,
    nodes: &BTreeMap<String, Node>,
) -> Result<Vec<Link>, TopoError> {
    let src = cx.src;
    let items = match get(topo, "links") {
        Some(Value::Sequence(s)) => s.as_slice(),
        _ => &[],
    };
    let links_line = key_line(src, topo_line, "links");
    let mut links = Vec::new();
    let mut seen: BTreeSet<Endpoint> = BTreeSet::new();
    for (i, rl) in items.iter().enumerate() {
        let what = format!("topology.links[{i}]");
        let Value::Mapping(rl) = rl else {
            return Err(cx.invalid(
                links_line,
                what,
                format!("expected a mapping with endpoints, found {}", kind_of(rl)),
            ));
        };
        // The i-th `endpoints:` after `links:` (one per link in any sane file).
        let at = line_of_nth_from(src, links_line, "endpoints", i + 1);
        cx.check_keys(rl, &what, LINK_KEYS, false, at)?;
        let Some(Value::Sequence(eps)) = get(rl, "endpoints") else {
            return Err(cx.invalid(
                at,
                what,
                "no endpoints: expected [\"node:iface\", \"node:iface\"]",
            ));
        };
        let mut names = Vec::with_capacity(eps.len());
        for (j, e) in eps.iter().enumerate() {
            let ewhat = format!("{what}.endpoints[{j}]");
            let Value::String(e) = e else {
                return Err(cx.invalid(
                    at,
                    ewhat,
                    format!("expected a \"node:iface\" string, found {}", kind_of(e)),
                ));
            };
            if !clab_endpoint_syntax(e) {
                return Err(cx.invalid(
                    at,
                    ewhat,
                    format!(
                        "{e:?}: expected \"node:iface\" (containerlab requires non-blank text on both sides of a ':' and no spaces)"
                    ),
                ));
            }
            if names.contains(&e.as_str()) {
                return Err(cx.invalid(
                    at,
                    ewhat,
                    format!("{e:?} is listed twice in this link (containerlab requires distinct endpoints)"),
                ));
            }
            names.push(e.as_str());
        }
        if names.len() != 2 {
            return Err(TopoError::Unsupported {
                file: cx.file.clone(),
                line: at,
                path: format!("{what}.endpoints"),
                reason: format!(
                    "{} endpoints: a veth has two ends, expected [\"node:iface\", \"node:iface\"]",
                    names.len()
                ),
            });
        }
        let mut pair = Vec::with_capacity(2);
        for (j, e) in names.iter().enumerate() {
            let ewhat = format!("{what}.endpoints[{j}] {e:?}");
            let ep = parse_endpoint(e).map_err(|r| cx.invalid(at, ewhat.clone(), r))?;
            if !nodes.contains_key(&ep.node) {
                let known: Vec<&str> = nodes.keys().map(String::as_str).collect();
                return Err(cx.invalid(
                    at,
                    ewhat,
                    format!("unknown node {:?} (nodes: {})", ep.node, known.join(", ")),
                ));
            }
            if !seen.insert(ep.clone()) {
                return Err(cx.invalid(
                    at,
                    ewhat,
                    "duplicate endpoint: this interface is already used by another link",
                ));
            }
            pair.push(ep);
        }
        let b = pair.pop();
        let a = pair.pop();
        if let (Some(a), Some(b)) = (a, b) {
            links.push(Link { a, b });
        }
    }
    Ok(links)
}

/// containerlab's endpoint pattern `^\S+:\S+$`: no whitespace, and a ':' with at least one
/// character on each side.
fn clab_endpoint_syntax(e: &str) -> bool {
    !e.chars().any(char::is_whitespace)
        && e.char_indices()
            .any(|(i, c)| c == ':' && i > 0 && i + 1 < e.len())
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

/// 1-based line of `key:` as a mapping key (after the start of the line, a space, `{`, `,` or
/// `-`), searching from line `from` on, then from the top; 0 if absent. serde gives positions
/// only for syntax errors, so this points at the item an error is about.
fn key_line(src: &str, from: usize, key: &str) -> usize {
    let is_key_at = |l: &str| {
        l.match_indices(key).any(|(i, _)| {
            let before = l[..i].chars().next_back();
            let after = &l[i + key.len()..];
            matches!(before, None | Some(' ' | '\t' | '{' | ',' | '-'))
                && after.starts_with(':')
                && (after.len() == 1 || after[1..].starts_with([' ', '\t']))
        })
    };
    let lines: Vec<&str> = src.lines().collect();
    let start = from.saturating_sub(1);
    (start..lines.len())
        .chain(0..start)
        .find(|&i| lines.get(i).is_some_and(|l| is_key_at(l)))
        .map_or(0, |i| i + 1)
}

/// 1-based line holding the `n`th occurrence of `needle` at or after line `from` (falling back
/// to the whole file; 0 if none).
fn line_of_nth_from(src: &str, from: usize, needle: &str, n: usize) -> usize {
    let mut seen = 0;
    for (i, l) in src.lines().enumerate().skip(from.saturating_sub(1)) {
        seen += l.matches(needle).count();
        if seen >= n {
            return i + 1;
        }
    }
    if from > 1 {
        line_of_nth_from(src, 1, needle, n)
    } else {
        0
    }
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
