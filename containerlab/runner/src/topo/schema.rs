//! containerlab's topology schema, as rules: which keys each object may hold, their types and
//! the node kinds (written from containerlab's `schemas/clab.schema.json`, srl-labs/
//! containerlab at b11ef1add1ee7a51e37f092d18526d8768e66098), each key with what rackd-lab
//! does with it, and the checker that applies them ([`Cx::check_keys`]).

use serde_yaml_ng::{Mapping, Value};

use super::{join, key_line, line_of_nth_from};
use crate::error::TopoError;

#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
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
    pub(super) fn describe(self) -> String {
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
pub(super) enum Use {
    /// Realised (read by the code below).
    Realised,
    /// Accepted and ignored: it does not change what runs in a node or how nodes are wired.
    Ignored,
    /// Refused: realising it is out of scope and ignoring it would run a different lab.
    Refused(&'static str),
}

pub(super) type Rule = (&'static str, Shape, Use);

pub(super) const NO_PER_NODE_DEFAULTS: &str = "write the settings on each node";

/// Top-level keys; containerlab rejects any other.
pub(super) const ROOT_KEYS: &[Rule] = &[
    ("name", Shape::Str, Use::Realised),
    ("prefix", Shape::Str, Use::Ignored),
    ("mgmt", Shape::NonEmptyObject, Use::Ignored),
    ("topology", Shape::Object, Use::Realised),
    ("settings", Shape::Object, Use::Ignored),
];

/// `topology` keys. containerlab's schema leaves this object open, but a key it does not
/// define would be ignored by containerlab and is likely a typo, so rackd-lab refuses it.
pub(super) const TOPOLOGY_KEYS: &[Rule] = &[
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
pub(super) const LINK_KEYS: &[Rule] = &[
    ("endpoints", Shape::List { min: 2 }, Use::Realised),
    ("vars", Shape::Object, Use::Ignored),
];

pub(super) const PULL_POLICIES: &[&str] = &[
    "always",
    "Always",
    "never",
    "Never",
    "ifnotpresent",
    "IfNotPresent",
];
pub(super) const RUNTIMES: &[&str] = &["docker", "ignite"];

/// Node keys (`topology.nodes.<name>`); containerlab rejects any other.
pub(super) const NODE_KEYS: &[Rule] = &[
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
pub(super) fn kind_of(v: &Value) -> &'static str {
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
pub(super) struct Cx<'a> {
    pub(super) src: &'a str,
    pub(super) file: String,
}

impl Cx<'_> {
    pub(super) fn invalid(
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
    pub(super) fn check_keys(
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

    pub(super) fn check_shape(
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

/// containerlab's rules, one malformed file per rule: each must fail with the path and the
/// words that say why.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::*;

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
