//! The ip-masq-agent config file (`--ip-masq-agent-config-path`, default
//! `/etc/config/ip-masq-agent`), read as Cilium's `pkg/ipmasq` reads it: JSON or YAML with
//! the keys `nonMasqueradeCIDRs` (list of CIDR strings; host bits are cleared),
//! `masqLinkLocal` and `masqLinkLocalIPv6` (booleans). Keys match case-insensitively, as Go's
//! `encoding/json` does; other keys (upstream ip-masq-agent's `resyncInterval`, ...) are
//! ignored by Cilium and listed here in [`MasqAgentConfig::ignored_keys`].
//!
//! The destinations never masqueraded ([`MasqAgentConfig::non_masquerade`]): the file's
//! CIDRs, or, when the file is missing or empty (zero bytes), the defaults of
//! kubernetes-sigs/ip-masq-agent ([`DEFAULT_NON_MASQUERADE_CIDRS`]); plus `169.254.0.0/16`
//! unless `masqLinkLocal: true` and `fe80::/10` unless `masqLinkLocalIPv6: true`. As in
//! Cilium, a file that exists but lists no CIDR (`{}`, `nonMasqueradeCIDRs: []`, only
//! comments) gets no defaults: only the link-local ranges.

use ipnet::IpNet;
use rackd_model::yaml_kind;
use serde_yaml_ng::Value;

/// Cilium's (and ip-masq-agent's) defaults when the config is missing or empty.
pub const DEFAULT_NON_MASQUERADE_CIDRS: [&str; 11] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
];

/// IPv4 link-local, not masqueraded unless `masqLinkLocal: true`.
pub const LINK_LOCAL_V4: &str = "169.254.0.0/16";
/// IPv6 link-local, not masqueraded unless `masqLinkLocalIPv6: true`.
pub const LINK_LOCAL_V6: &str = "fe80::/10";

/// Why the file could not be used (the previous configuration should stay in force).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasqConfigError {
    /// Neither JSON nor YAML.
    #[error("ip-masq-agent config: not JSON or YAML{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Syntax {
        /// 1-based line, when known.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The document is not a mapping (a list, a string, ...).
    #[error(
        "ip-masq-agent config: expected a mapping with nonMasqueradeCIDRs, masqLinkLocal, masqLinkLocalIPv6; found {found}"
    )]
    NotAMapping {
        /// What was found.
        found: &'static str,
    },
    /// A known key with a value of the wrong type.
    #[error("ip-masq-agent config: {key}: expected {expected}, found {found}")]
    WrongType {
        /// The key (or `nonMasqueradeCIDRs[i]`).
        key: String,
        /// What it must be.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// A CIDR that does not parse.
    #[error("ip-masq-agent config: nonMasqueradeCIDRs[{index}]: invalid CIDR {value:?}")]
    InvalidCidr {
        /// Position in the list.
        index: usize,
        /// The text.
        value: String,
    },
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasqAgentConfig {
    /// `nonMasqueradeCIDRs` as written (host bits cleared), in file order.
    pub non_masquerade_cidrs: Vec<IpNet>,
    /// `masqLinkLocal`.
    pub masq_link_local: bool,
    /// `masqLinkLocalIPv6`.
    pub masq_link_local_ipv6: bool,
    /// The file was missing or empty: the defaults apply.
    pub defaults: bool,
    /// Keys Cilium ignores, for a warning.
    pub ignored_keys: Vec<String>,
}

impl MasqAgentConfig {
    /// The config when the file does not exist (Cilium: defaults, link-local not masqueraded).
    pub fn missing() -> Self {
        Self {
            defaults: true,
            ..Self::default()
        }
    }

    /// Parses the file's content.
    pub fn parse(text: &str) -> Result<Self, MasqConfigError> {
        if text.is_empty() {
            return Ok(Self::missing());
        }
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| MasqConfigError::Syntax {
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        let map = match v {
            // Only comments or whitespace: JSON `null`, which Cilium decodes into nothing.
            Value::Null => return Ok(Self::default()),
            Value::Mapping(m) => m,
            other => {
                return Err(MasqConfigError::NotAMapping {
                    found: yaml_kind(&other),
                });
            }
        };
        let mut out = Self::default();
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                out.ignored_keys.push(format!("{k:?}"));
                continue;
            };
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if is("nonMasqueradeCIDRs") {
                out.non_masquerade_cidrs = cidrs(key, v)?;
            } else if is("masqLinkLocal") {
                out.masq_link_local = boolean(key, &v)?;
            } else if is("masqLinkLocalIPv6") {
                out.masq_link_local_ipv6 = boolean(key, &v)?;
            } else {
                out.ignored_keys.push(key.to_owned());
            }
        }
        Ok(out)
    }

    /// Every destination prefix not to masquerade, sorted, each once.
    pub fn non_masquerade(&self) -> Vec<IpNet> {
        let mut out = self.non_masquerade_cidrs.clone();
        if self.defaults {
            out.extend(
                DEFAULT_NON_MASQUERADE_CIDRS
                    .iter()
                    .filter_map(|c| c.parse::<IpNet>().ok()),
            );
        }
        if !self.masq_link_local {
            out.extend(LINK_LOCAL_V4.parse::<IpNet>().ok());
        }
        if !self.masq_link_local_ipv6 {
            out.extend(LINK_LOCAL_V6.parse::<IpNet>().ok());
        }
        out.sort();
        out.dedup();
        out
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool, MasqConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        // JSON null leaves Go's field at its zero value.
        Value::Null => Ok(false),
        other => Err(MasqConfigError::WrongType {
            key: key.to_owned(),
            expected: "true or false",
            found: yaml_kind(other),
        }),
    }
}

fn cidrs(key: &str, v: Value) -> Result<Vec<IpNet>, MasqConfigError> {
    let items = match v {
        Value::Sequence(s) => s,
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(MasqConfigError::WrongType {
                key: key.to_owned(),
                expected: "a list of CIDR strings",
                found: yaml_kind(&other),
            });
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let Value::String(s) = item else {
            return Err(MasqConfigError::WrongType {
                key: format!("{key}[{index}]"),
                expected: "a CIDR string such as \"10.0.0.0/8\"",
                found: yaml_kind(&item),
            });
        };
        match s.parse::<IpNet>() {
            Ok(n) => out.push(n.trunc()),
            Err(_) => return Err(MasqConfigError::InvalidCidr { index, value: s }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        let mut n: Vec<IpNet> = v.iter().map(|s| s.parse().unwrap()).collect();
        n.sort();
        n
    }

    #[test]
    fn json_and_yaml() {
        let j = MasqAgentConfig::parse(
            r#"{"nonMasqueradeCIDRs": ["10.0.0.0/8", "fd00::1/64"], "masqLinkLocal": true}"#,
        )
        .unwrap();
        let y = MasqAgentConfig::parse(
            "# comment\nnonMasqueradeCIDRs:\n- 10.0.0.0/8\n- fd00::1/64\nmasqLinkLocal: true\n",
        )
        .unwrap();
        assert_eq!(j, y);
        assert_eq!(
            j.non_masquerade(),
            nets(&["10.0.0.0/8", "fd00::/64", "fe80::/10"])
        );
        assert!(!j.defaults);
    }

    #[test]
    fn defaults_only_when_missing_or_empty() {
        let mut want: Vec<&str> = DEFAULT_NON_MASQUERADE_CIDRS.to_vec();
        want.extend([LINK_LOCAL_V4, LINK_LOCAL_V6]);
        assert_eq!(MasqAgentConfig::missing().non_masquerade(), nets(&want));
        assert_eq!(
            MasqAgentConfig::parse("").unwrap().non_masquerade(),
            nets(&want)
        );
        // Present but listing nothing: link-local only (Cilium's behaviour).
        for text in ["{}", "nonMasqueradeCIDRs: []\n", "# nothing\n", "\n"] {
            let c = MasqAgentConfig::parse(text).unwrap();
            assert_eq!(
                c.non_masquerade(),
                nets(&[LINK_LOCAL_V4, LINK_LOCAL_V6]),
                "{text:?}"
            );
        }
        let c = MasqAgentConfig::parse("masqLinkLocal: true\nmasqLinkLocalIPv6: true\n").unwrap();
        assert!(c.non_masquerade().is_empty());
    }

    #[test]
    fn keys_as_go_reads_them() {
        let c = MasqAgentConfig::parse(
            "NonMasqueradeCIDRs: [192.168.0.0/16]\nresyncInterval: 60s\nmasqlinklocal: true\n",
        )
        .unwrap();
        assert_eq!(c.non_masquerade_cidrs, nets(&["192.168.0.0/16"]));
        assert!(c.masq_link_local);
        assert_eq!(c.ignored_keys, ["resyncInterval"]);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let e = MasqAgentConfig::parse("nonMasqueradeCIDRs: [10.0.0.0/8\n").unwrap_err();
        assert!(matches!(e, MasqConfigError::Syntax { .. }), "{e}");
        assert!(matches!(
            MasqAgentConfig::parse("- 10.0.0.0/8\n"),
            Err(MasqConfigError::NotAMapping { found: "a list" })
        ));
        assert!(matches!(
            MasqAgentConfig::parse("\"x\""),
            Err(MasqConfigError::NotAMapping { found: "a string" })
        ));
        assert_eq!(
            MasqAgentConfig::parse("nonMasqueradeCIDRs: 10.0.0.0/8\n"),
            Err(MasqConfigError::WrongType {
                key: "nonMasqueradeCIDRs".into(),
                expected: "a list of CIDR strings",
                found: "a string"
            })
        );
        assert!(matches!(
            MasqAgentConfig::parse("nonMasqueradeCIDRs: [10]\n"),
            Err(MasqConfigError::WrongType {
                found: "a number",
                ..
            })
        ));
        assert_eq!(
            MasqAgentConfig::parse("nonMasqueradeCIDRs: [10.0.0.0/8, 10.0.0.0/33]\n"),
            Err(MasqConfigError::InvalidCidr {
                index: 1,
                value: "10.0.0.0/33".into()
            })
        );
        assert!(matches!(
            MasqAgentConfig::parse("nonMasqueradeCIDRs: [10.0.0.1]\n"),
            Err(MasqConfigError::InvalidCidr { index: 0, .. })
        ));
        // YAML 1.1's `yes` is a string to a YAML 1.2 reader: say so rather than guess.
        let e = MasqAgentConfig::parse("masqLinkLocal: yes\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("masqLinkLocal: expected true or false, found a string"),
            "{e}"
        );
        let e = MasqAgentConfig::parse("masqLinkLocal: true\nmasqLinkLocal: false\n").unwrap_err();
        assert!(
            matches!(e, MasqConfigError::Syntax { line: Some(_), .. }),
            "{e}"
        );
        // Host bits are cleared, as Cilium's Masked() does.
        let c = MasqAgentConfig::parse("nonMasqueradeCIDRs: [10.1.2.3/8]\n").unwrap();
        assert_eq!(c.non_masquerade_cidrs, nets(&["10.0.0.0/8"]));
    }
}
