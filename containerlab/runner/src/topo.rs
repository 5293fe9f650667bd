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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

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

// ---- containerlab's schema, as rules ------------------------------------------------------
//
// Written from containerlab's topology JSON schema (`schemas/clab.schema.json`, srl-labs/
// containerlab at b11ef1add1ee7a51e37f092d18526d8768e66098): which keys each object may hold,
// their types, and the node kinds. Each key also says what rackd-lab does with it.

/// The shape containerlab's schema requires of a value.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Str,
    Int,
    Bool,
    Object,
    /// An object with at least one key.
    NonEmptyObject,
    /// A string or a number (`user`).
    StrOrNum,
    /// An object whose values are strings or numbers (`env`, `labels`).
    StrOrNumMap,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A list of strings with at least `min` items, distinct if `unique`.
    StrList {
        min: usize,
        unique: bool,
    },
    /// A list with at least `min` items of any shape (checked by the caller).
    List {
        min: usize,
    },
}

impl Shape {
    fn describe(self) -> String {
        match self {
            Self::Str => "a string".into(),
            Self::Int => "an integer".into(),
            Self::Bool => "true or false".into(),
            Self::Object => "a mapping".into(),
            Self::NonEmptyObject => "a mapping with at least one key".into(),
            Self::StrOrNum => "a string or a number".into(),
            Self::StrOrNumMap => "a mapping of strings or numbers".into(),
            Self::OneOf(v) => format!("one of {}", v.join(", ")),
            Self::StrList { min, unique } => format!(
                "a list of {}strings with at least {min} item{}",
                if unique { "distinct " } else { "" },
                if min == 1 { "" } else { "s" }
            ),
            Self::List { min } => format!("a list with at least {min} item"),
        }
    }
}

/// What rackd-lab does with a key containerlab accepts.
#[derive(Debug, Clone, Copy)]
enum Use {
    /// Realised (read by the code below).
    Realised,
    /// Accepted and ignored: it does not change what runs in a node or how nodes are wired.
    Ignored,
    /// Refused: realising it is out of scope and ignoring it would run a different lab.
    Refused(&'static str),
}

type Rule = (&'static str, Shape, Use);

const NO_PER_NODE_DEFAULTS: &str = "write the settings on each node";

/// Top-level keys; containerlab rejects any other.
const ROOT_KEYS: &[Rule] = &[
    ("name", Shape::Str, Use::Realised),
    ("prefix", Shape::Str, Use::Ignored),
    ("mgmt", Shape::NonEmptyObject, Use::Ignored),
    ("topology", Shape::Object, Use::Realised),
    ("settings", Shape::Object, Use::Ignored),
];

/// `topology` keys. containerlab's schema leaves this object open, but a key it does not
/// define would be ignored by containerlab and is likely a typo, so rackd-lab refuses it.
const TOPOLOGY_KEYS: &[Rule] = &[
    ("nodes", Shape::Object, Use::Realised),
    ("kinds", Shape::Object, Use::Refused(NO_PER_NODE_DEFAULTS)),
    (
        "defaults",
        Shape::Object,
        Use::Refused(NO_PER_NODE_DEFAULTS),
    ),
    ("links", Shape::List { min: 1 }, Use::Realised),
];

/// `topology.links[]` keys; open in the schema, closed here for the same reason.
const LINK_KEYS: &[Rule] = &[
    ("endpoints", Shape::List { min: 2 }, Use::Realised),
    ("vars", Shape::Object, Use::Ignored),
];

const PULL_POLICIES: &[&str] = &[
    "always",
    "Always",
    "never",
    "Never",
    "ifnotpresent",
    "IfNotPresent",
];
const RUNTIMES: &[&str] = &["docker", "ignite"];

/// Node keys (`topology.nodes.<name>`); containerlab rejects any other.
const NODE_KEYS: &[Rule] = &[
    ("image", Shape::Str, Use::Realised),
    (
        "image-pull-policy",
        Shape::OneOf(PULL_POLICIES),
        Use::Ignored,
    ),
    ("kind", Shape::Str, Use::Realised),
    ("license", Shape::Str, Use::Ignored),
    ("type", Shape::Str, Use::Ignored),
    ("group", Shape::Str, Use::Ignored),
    ("startup-config", Shape::Str, Use::Ignored),
    ("startup-delay", Shape::Int, Use::Ignored),
    ("enforce-startup-config", Shape::Bool, Use::Ignored),
    ("auto-remove", Shape::Bool, Use::Ignored),
    (
        "exec",
        Shape::StrList {
            min: 1,
            unique: false,
        },
        Use::Realised,
    ),
    (
        "binds",
        Shape::StrList {
            min: 1,
            unique: true,
        },
        Use::Realised,
    ),
    (
        "ports",
        Shape::StrList {
            min: 1,
            unique: true,
        },
        Use::Ignored,
    ),
    ("env", Shape::StrOrNumMap, Use::Realised),
    (
        "user",
        Shape::StrOrNum,
        Use::Refused("commands run as root in the node's namespace"),
    ),
    (
        "entrypoint",
        Shape::Str,
        Use::Refused("what runs is chosen by image (FRR, rackd) and cmd"),
    ),
    ("cmd", Shape::Str, Use::Realised),
    (
        "publish",
        Shape::StrList {
            min: 1,
            unique: true,
        },
        Use::Ignored,
    ),
    ("labels", Shape::StrOrNumMap, Use::Ignored),
    ("runtime", Shape::OneOf(RUNTIMES), Use::Ignored),
    ("mgmt-ipv4", Shape::Str, Use::Ignored),
    ("mgmt-ipv6", Shape::Str, Use::Ignored),
    (
        "network-mode",
        Shape::Str,
        Use::Refused("every node gets its own network namespace"),
    ),
    ("cpu", Shape::Int, Use::Ignored),
    ("memory", Shape::Str, Use::Ignored),
    ("cpu-set", Shape::Str, Use::Ignored),
    ("sandbox", Shape::Str, Use::Ignored),
    ("kernel", Shape::Str, Use::Ignored),
    ("extras", Shape::Object, Use::Ignored),
    ("config", Shape::Object, Use::Ignored),
    (
        "stages",
        Shape::Object,
        Use::Refused("exec lines run once all links exist, in file order; stages are not modelled"),
    ),
    ("dns", Shape::Object, Use::Ignored),
    ("certificate", Shape::Object, Use::Ignored),
    ("healthcheck", Shape::Object, Use::Ignored),
];

/// Every node kind containerlab's schema knows. rackd-lab runs only `linux`.
pub const CONTAINERLAB_KINDS: &[&str] = &[
    "srl",
    "nokia_srlinux",
    "ceos",
    "arista_ceos",
    "crpd",
    "juniper_crpd",
    "sonic-vs",
    "sonic-vm",
    "vr-sros",
    "nokia_sros",
    "vr-nokia_sros",
    "vr-vmx",
    "vr-juniper_vmx",
    "juniper_vmx",
    "vr-vqfx",
    "vr-juniper_vqfx",
    "juniper_vqfx",
    "vr-vsrx",
    "vr-juniper_vsrx",
    "juniper_vsrx",
    "juniper_vjunosrouter",
    "juniper_vjunosswitch",
    "juniper_vjunosevolved",
    "vr-xrv",
    "vr-cisco_xrv",
    "cisco_xrv",
    "vr-xrv9k",
    "vr-cisco_xrv9k",
    "cisco_xrv9k",
    "vr-veos",
    "vr-arista_veos",
    "arista_veos",
    "vr-csr",
    "vr-cisco_csr",
    "cisco_csr1000v",
    "vr-pan",
    "vr-paloalto_panos",
    "paloalto_panos",
    "vr-ros",
    "vr-mikrotik_ros",
    "mikrotik_ros",
    "vr-n9kv",
    "vr-cisco_n9kv",
    "cisco_n9kv",
    "cisco_ftdv",
    "dell_ftosv",
    "dell_sonic",
    "vr-aoscx",
    "vr-aruba_aoscx",
    "aruba_aoscx",
    "linux",
    "bridge",
    "ovs-bridge",
    "border0",
    "host",
    "keysight_ixia-c-one",
    "ipinfusion_ocnos",
    "checkpoint_cloudguard",
    "ext-container",
    "xrd",
    "rare",
    "cisco_xrd",
    "c8000",
    "cisco_c8000",
    "cisco_c8000v",
    "cisco_cat9kv",
    "cisco_iol",
    "cvx",
    "cumulus_cvx",
    "openbsd",
    "freebsd",
    "generic_vm",
    "fortinet_fortigate",
    "k8s-kind",
];

/// The node keys rackd-lab accepts but does not act on (for documentation and tests).
pub fn ignored_node_keys() -> Vec<&'static str> {
    NODE_KEYS
        .iter()
        .filter(|(_, _, u)| matches!(u, Use::Ignored))
        .map(|(k, _, _)| *k)
        .collect()
}

/// What a YAML value is, for error messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Parsing context: the source (to find lines) and the file name (for errors).
struct Cx<'a> {
    src: &'a str,
    file: String,
}

impl Cx<'_> {
    fn invalid(
        &self,
        line: usize,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> TopoError {
        TopoError::Invalid {
            file: self.file.clone(),
            line,
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Checks every key of `map` (at `path`) against `rules`: known, of the right shape, and
    /// not refused. `closed` says whether containerlab itself rejects unknown keys here.
    /// `from` is the line to start looking for keys at (the object's own line).
    fn check_keys(
        &self,
        map: &Mapping,
        path: &str,
        rules: &[Rule],
        closed: bool,
        from: usize,
    ) -> Result<(), TopoError> {
        for (k, v) in map {
            let Value::String(key) = k else {
                return Err(self.invalid(
                    from,
                    format!("{path}: key {k:?}"),
                    "keys must be strings",
                ));
            };
            let kpath = join(path, key);
            let line = key_line(self.src, from, key);
            let Some((_, shape, usage)) = rules.iter().find(|(name, _, _)| name == key) else {
                let allowed = rules
                    .iter()
                    .map(|(name, _, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(if closed {
                    TopoError::UnknownKey {
                        file: self.file.clone(),
                        line,
                        path: kpath,
                        allowed,
                    }
                } else {
                    TopoError::Unsupported {
                        file: self.file.clone(),
                        line,
                        path: kpath,
                        reason: format!(
                            "containerlab's schema does not define this key (containerlab would ignore it); rackd-lab accepts {allowed}"
                        ),
                    }
                });
            };
            self.check_shape(v, &kpath, *shape, line)?;
            if let Use::Refused(why) = usage {
                return Err(TopoError::Unsupported {
                    file: self.file.clone(),
                    line,
                    path: kpath,
                    reason: (*why).into(),
                });
            }
        }
        Ok(())
    }

    fn check_shape(
        &self,
        v: &Value,
        path: &str,
        shape: Shape,
        line: usize,
    ) -> Result<(), TopoError> {
        let wrong = || {
            self.invalid(
                line,
                path,
                format!("expected {}, found {}", shape.describe(), kind_of(v)),
            )
        };
        let ok = match (shape, v) {
            (Shape::Str, Value::String(_)) | (Shape::Bool, Value::Bool(_)) => true,
            (Shape::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Shape::Object, Value::Mapping(_)) => true,
            (Shape::NonEmptyObject, Value::Mapping(m)) => !m.is_empty(),
            (Shape::StrOrNum, Value::String(_) | Value::Number(_)) => true,
            (Shape::StrOrNumMap, Value::Mapping(m)) => {
                for (k, x) in m {
                    if !matches!(x, Value::String(_) | Value::Number(_)) {
                        let name = k.as_str().unwrap_or("?");
                        return Err(self.invalid(
                            key_line(self.src, line, name),
                            join(path, name),
                            format!("expected a string or a number, found {}", kind_of(x)),
                        ));
                    }
                }
                true
            }
            (Shape::OneOf(allowed), Value::String(s)) => allowed.contains(&s.as_str()),
            (Shape::StrList { min, unique }, Value::Sequence(items)) => {
                if items.len() < min {
                    return Err(self.invalid(
                        line,
                        path,
                        format!(
                            "empty list: containerlab requires {}; give at least {min} item or leave the key out",
                            shape.describe()
                        ),
                    ));
                }
                for (i, x) in items.iter().enumerate() {
                    let Value::String(s) = x else {
                        return Err(self.invalid(
                            line,
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", kind_of(x)),
                        ));
                    };
                    if unique && items[..i].contains(x) {
                        return Err(self.invalid(
                            line_of_nth_from(self.src, line, s, 2),
                            format!("{path}[{i}]"),
                            format!("{s:?} is listed twice (containerlab requires distinct items)"),
                        ));
                    }
                }
                true
            }
            (Shape::List { min }, Value::Sequence(items)) => {
                if items.len() < min {
                    return Err(self.invalid(
                        line,
                        path,
                        format!(
                            "{} item(s): containerlab requires at least {min}",
                            items.len()
                        ),
                    ));
                }
                true
            }
            _ => false,
        };
        if ok { Ok(()) } else { Err(wrong()) }
    }
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

/// containerlab's rules, one malformed file per rule: each must fail with the path and the
/// words that say why.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod schema_tests {
    use super::*;

    fn err(src: &str) -> String {
        parse(src, Path::new("/w/t.clab.yml"), None)
            .unwrap_err()
            .to_string()
    }

    /// A minimal valid file with `node` as node `a`'s settings and `links` as the links.
    fn file(node: &str, links: &str) -> String {
        format!(
            "name: t\ntopology:\n  nodes:\n    a: {{kind: linux{node}}}\n    b: {{kind: linux}}\n  links:\n{links}"
        )
    }

    const LINK: &str = "    - endpoints: [\"a:eth1\", \"b:eth1\"]\n";

    fn assert_has(e: &str, words: &[&str]) {
        for w in words {
            assert!(e.contains(w), "error {e:?} lacks {w:?}");
        }
    }

    #[test]
    fn valid_minimal_and_every_ignored_key() {
        parse(&file("", LINK), Path::new("/w/t.clab.yml"), None).unwrap();
        let node = ", image-pull-policy: IfNotPresent, license: l, type: t, group: g, \
            startup-config: c, startup-delay: 3, enforce-startup-config: true, \
            auto-remove: false, ports: [\"80:80\"], publish: [\"tcp/80\"], \
            labels: {a: b, n: 1}, runtime: docker, mgmt-ipv4: 172.20.20.2, \
            mgmt-ipv6: \"2001:db8::2\", cpu: 1, memory: 1Gb, cpu-set: \"0-1\", sandbox: s, \
            kernel: k, extras: {}, config: {vars: {}}, dns: {servers: [1.1.1.1]}, \
            certificate: {issue: true}, healthcheck: {interval: 1}, env: {A: x, B: 2}";
        let links = "    - endpoints: [\"a:eth1\", \"b:eth1\"]\n      vars: {x: 1}\n";
        let src = format!(
            "name: t\nprefix: p\nmgmt: {{network: m}}\nsettings: {{}}\n{}",
            &file(node, links)["name: t\n".len()..]
        );
        let t = parse(&src, Path::new("/w/t.clab.yml"), None).unwrap();
        assert_eq!(
            t.nodes["a"].env,
            [
                ("A".to_owned(), "x".to_owned()),
                ("B".to_owned(), "2".to_owned())
            ]
        );
        // Every ignored node key was in that file.
        for k in ignored_node_keys() {
            assert!(node.contains(&format!(" {k}: ")), "{k} not exercised");
        }
    }

    #[test]
    fn unknown_node_key() {
        let e = err(&file(", bogus: 1", LINK));
        assert_has(
            &e,
            &[
                "t.clab.yml:4:",
                "topology.nodes.a.bogus: unknown key; containerlab accepts image, image-pull-policy, kind,",
                "healthcheck",
            ],
        );
    }

    #[test]
    fn unknown_top_level_key() {
        let e = err(&format!("{}extra: 1\n", file("", LINK)));
        assert_has(
            &e,
            &[
                ":8:",
                "extra: unknown key; containerlab accepts name, prefix, mgmt, topology, settings",
            ],
        );
    }

    #[test]
    fn unknown_topology_and_link_keys_are_refused() {
        let e = err(&file("", LINK).replace("  links:", "  groups: {}\n  links:"));
        assert_has(
            &e,
            &[
                "topology.groups: not supported by rackd-lab",
                "nodes, kinds, defaults, links",
            ],
        );
        let e = err(&file("", &format!("{LINK}      mtu: 9000\n")));
        assert_has(
            &e,
            &[
                "topology.links[0].mtu: not supported by rackd-lab",
                "endpoints, vars",
                ":8:",
            ],
        );
    }

    #[test]
    fn bad_kind() {
        let e = err(&file("", LINK).replace("a: {kind: linux", "a: {kind: linx"));
        assert_has(
            &e,
            &[
                "topology.nodes.a.kind",
                "unknown kind \"linx\"",
                "containerlab accepts srl,",
                "k8s-kind",
            ],
        );
        // A kind containerlab knows but rackd-lab does not run.
        let e = err(&file("", LINK).replace("a: {kind: linux", "a: {kind: ceos"));
        assert_has(
            &e,
            &[
                "topology.nodes.a.kind: not supported by rackd-lab",
                "\"ceos\"",
            ],
        );
        let e = err(&file("", LINK).replace("a: {kind: linux", "a: {kind: 3"));
        assert_has(
            &e,
            &["topology.nodes.a.kind", "expected a string, found a number"],
        );
    }

    #[test]
    fn endpoint_without_colon() {
        for bad in ["aeth1", "a:", ":eth1", "a: eth1"] {
            let e = err(&file(
                "",
                &format!("    - endpoints: [\"{bad}\", \"b:eth1\"]\n"),
            ));
            assert_has(&e, &["topology.links[0].endpoints[0]", "node:iface", ":7:"]);
        }
    }

    #[test]
    fn duplicate_endpoints() {
        let e = err(&file("", "    - endpoints: [\"a:eth1\", \"a:eth1\"]\n"));
        assert_has(
            &e,
            &[
                "topology.links[0].endpoints[1]",
                "listed twice in this link",
                "distinct",
            ],
        );
        // Three distinct endpoints are valid for containerlab, but not a veth.
        let e = err(&file(
            "",
            "    - endpoints: [\"a:eth1\", \"b:eth1\", \"b:eth2\"]\n",
        ));
        assert_has(
            &e,
            &[
                "topology.links[0].endpoints: not supported by rackd-lab",
                "two ends",
            ],
        );
        let e = err(&file("", "    - {}\n"));
        assert_has(&e, &["topology.links[0]", "no endpoints"]);
        let e = err(&file("", "    []\n"));
        assert_has(&e, &["topology.links", "0 item(s)"]);
    }

    #[test]
    fn empty_binds() {
        let e = err(&file(", binds: []", LINK));
        assert_has(&e, &["topology.nodes.a.binds", "empty list", ":4:"]);
    }

    #[test]
    fn duplicate_binds() {
        let e = err(&file(", binds: [\"/x:/y\", \"/x:/y\"]", LINK));
        assert_has(
            &e,
            &["topology.nodes.a.binds[1]", "listed twice", "distinct"],
        );
        let e = err(&file(", binds: [\"/x:/y\", 3]", LINK));
        assert_has(
            &e,
            &[
                "topology.nodes.a.binds[1]",
                "expected a string, found a number",
            ],
        );
    }

    #[test]
    fn non_string_cmd() {
        for (cmd, found) in [
            ("5", "a number"),
            ("true", "a boolean"),
            ("[rackd, -v]", "a list"),
            ("{a: b}", "a mapping"),
            ("null", "nothing"),
        ] {
            let e = err(&file(&format!(", cmd: {cmd}"), LINK));
            assert_has(
                &e,
                &["topology.nodes.a.cmd", "expected a string", found, ":4:"],
            );
        }
        // Quoted, it is a string.
        parse(
            &file(", cmd: \"5\"", LINK),
            Path::new("/w/t.clab.yml"),
            None,
        )
        .unwrap();
    }

    #[test]
    fn other_types() {
        for (node, words) in [
            (
                ", exec: [\"ip link\", 1]",
                &["topology.nodes.a.exec[1]", "found a number"][..],
            ),
            (", exec: []", &["topology.nodes.a.exec", "empty list"]),
            (
                ", env: {A: true}",
                &["topology.nodes.a.env.A", "string or a number"],
            ),
            (
                ", startup-delay: 1.5",
                &["topology.nodes.a.startup-delay", "integer"],
            ),
            (
                ", runtime: podman",
                &["topology.nodes.a.runtime", "docker, ignite"],
            ),
            (
                ", image-pull-policy: sometimes",
                &["image-pull-policy", "IfNotPresent"],
            ),
            (
                ", stages: {}",
                &["topology.nodes.a.stages: not supported by rackd-lab"],
            ),
            (
                ", user: root",
                &["topology.nodes.a.user: not supported by rackd-lab"],
            ),
            (
                ", entrypoint: sh",
                &["topology.nodes.a.entrypoint: not supported"],
            ),
        ] {
            assert_has(&err(&file(node, LINK)), words);
        }
        let e = err(&format!("mgmt: {{}}\n{}", file("", LINK)));
        assert_has(&e, &["mgmt", "at least one key", ":1:"]);
        let e = err(&file("", LINK).replace("name: t", "name: 5"));
        assert_has(&e, &["name", "expected a string, found a number"]);
        let e = err(&file("", LINK).replace("a: {kind: linux}", "a:"));
        assert_has(&e, &["topology.nodes.a: not supported by rackd-lab"]);
        let e = err("- a\n");
        assert_has(
            &e,
            &["expected a mapping with name and topology, found a list"],
        );
        // Merge keys work as in containerlab's YAML library.
        let src = "name: t\nx: &l {kind: linux}\n";
        assert_has(&err(src), &["x: unknown key"]);
        let src = "name: t\ntopology:\n  nodes:\n    a: {<<: {kind: linux}, image: alpine}\n";
        let t = parse(src, Path::new("/w/t.clab.yml"), None).unwrap();
        assert_eq!(t.nodes["a"].image, "alpine");
    }
}
