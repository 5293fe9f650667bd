//! Kubernetes label selectors as Cilium evaluates them.
//!
//! A [`LabelSelector`] (the k8s-openapi wire type) is compiled into a [`Selector`]
//! once, which validates keys, values and operators exactly like
//! apimachinery's `LabelSelectorAsSelector` (the function Cilium's slim copy calls
//! for every selector in the BGP, LB-IPAM, L2 and egress CRDs). Matching a compiled
//! selector against a label map cannot fail.
//!
//! **nil versus empty.** An empty selector (`{}`) matches everything, as in
//! Kubernetes. What an *absent* selector means depends on the field, and Cilium is
//! not uniform about it, so callers state it with [`NilSelector`]:
//!
//! | Field | nil means |
//! |---|---|
//! | `CiliumBGPClusterConfig.spec.nodeSelector` | all nodes |
//! | `CiliumBGPPeerConfig.spec.families[].advertisements` | nothing |
//! | `CiliumBGPAdvertisement.spec.advertisements[].selector` (not PodCIDR) | nothing |
//! | `CiliumLoadBalancerIPPool.spec.serviceSelector` | all services |
//! | `CiliumL2AnnouncementPolicy.spec.{nodeSelector,serviceSelector}` | all |
//! | `CiliumEgressGatewayPolicy.spec.selectors[]` | present-but-empty = all; how nil combines is the egress crate's business |
//!
//! Service selectors additionally see two synthetic labels, [`SERVICE_NAMESPACE_LABEL`]
//! and [`SERVICE_NAME_LABEL`] (Cilium `lbipam.go`, `l2announcer.go`, BGP
//! `service.go`); [`ServiceLabels`] overlays them without copying the map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Pod label Cilium uses to match an egress policy's namespace.
pub use rackd_types::cilium::POD_NAMESPACE_LABEL;
/// Synthetic label carrying a Service's name, visible to service selectors.
pub use rackd_types::cilium::SERVICE_NAME_LABEL;
/// Synthetic label carrying a Service's namespace, visible to service selectors.
pub use rackd_types::cilium::SERVICE_NAMESPACE_LABEL;

/// Read access to a set of labels.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

impl<L: Labels> Labels for Option<L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_ref().and_then(|l| l.label(key))
    }
}

/// A Service's labels plus the synthetic `io.kubernetes.service.{namespace,name}`
/// labels, which take precedence over real labels of the same key (Cilium adds
/// them after copying the object's labels).
#[derive(Debug, Clone, Copy)]
pub struct ServiceLabels<'a, L: Labels> {
    /// The Service's own `.metadata.labels`.
    pub labels: L,
    /// `.metadata.namespace`.
    pub namespace: &'a str,
    /// `.metadata.name`.
    pub name: &'a str,
}

impl<L: Labels> Labels for ServiceLabels<'_, L> {
    fn label(&self, key: &str) -> Option<&str> {
        match key {
            SERVICE_NAMESPACE_LABEL => Some(self.namespace),
            SERVICE_NAME_LABEL => Some(self.name),
            _ => self.labels.label(key),
        }
    }
}

/// What an absent (`nil`) selector field selects. Differs per field, see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NilSelector {
    /// nil selects every object.
    MatchesAll,
    /// nil selects no object.
    MatchesNone,
}

/// Operator of a set-based requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// The label is present and its value is one of the values.
    In,
    /// The label is absent, or present with a value not among the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Operator {
    /// Parses the operator spelling used in `matchExpressions` (case-sensitive, as the
    /// CRD enum is).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One compiled requirement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    key: String,
    op: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The operator.
    pub fn operator(&self) -> Operator {
        self.op
    }
    /// The values (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    fn matches(&self, labels: &impl Labels) -> bool {
        let v = labels.label(&self.key);
        match self.op {
            Operator::In => v.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => v.is_some(),
            Operator::DoesNotExist => v.is_none(),
        }
    }
}

/// A validated selector, ready to match. Requirements are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// `None` = matches nothing (a nil selector where nil means nothing).
    requirements: Option<Vec<Requirement>>,
}

/// Why a selector is invalid. `path` is relative to the selector
/// (`matchLabels.app`, `matchExpressions[2].values[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label key is not a valid qualified name.
    #[error("{path}: invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// Field path inside the selector.
        path: String,
        /// The offending key.
        key: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A label value is not a valid label value.
    #[error("{path}: invalid label value {value:?}: {reason}")]
    InvalidValue {
        /// Field path inside the selector.
        path: String,
        /// The offending value.
        value: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// The operator is not one of In, NotIn, Exists, DoesNotExist.
    #[error(
        "{path}: unsupported operator {operator:?}, expected one of In, NotIn, Exists, DoesNotExist"
    )]
    UnknownOperator {
        /// Field path inside the selector.
        path: String,
        /// The operator as written.
        operator: String,
    },
    /// `In`/`NotIn` without values.
    #[error("{path}: operator {operator} needs at least one value")]
    ValuesRequired {
        /// Field path inside the selector.
        path: String,
        /// The operator.
        operator: Operator,
    },
    /// `Exists`/`DoesNotExist` with values.
    #[error("{path}: operator {operator} takes no values")]
    ValuesForbidden {
        /// Field path inside the selector.
        path: String,
        /// The operator.
        operator: Operator,
    },
}

impl SelectorError {
    /// The field path inside the selector.
    pub fn path(&self) -> &str {
        match self {
            Self::InvalidKey { path, .. }
            | Self::InvalidValue { path, .. }
            | Self::UnknownOperator { path, .. }
            | Self::ValuesRequired { path, .. }
            | Self::ValuesForbidden { path, .. } => path,
        }
    }
}

impl Selector {
    /// A selector that matches every label set.
    pub fn everything() -> Self {
        Self {
            requirements: Some(Vec::new()),
        }
    }

    /// A selector that matches nothing.
    pub fn nothing() -> Self {
        Self { requirements: None }
    }

    /// Compiles and validates a present selector. An empty selector matches everything.
    pub fn compile(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if let Some(ml) = &sel.match_labels {
            for (k, v) in ml {
                let path = format!("matchLabels.{k}");
                validate_key(k, &path)?;
                validate_value(v, &path)?;
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Operator::In,
                    values: BTreeSet::from([v.clone()]),
                });
            }
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let base = format!("matchExpressions[{i}]");
            validate_key(&e.key, &format!("{base}.key"))?;
            let op =
                Operator::parse(&e.operator).ok_or_else(|| SelectorError::UnknownOperator {
                    path: format!("{base}.operator"),
                    operator: e.operator.clone(),
                })?;
            let values = e.values.as_deref().unwrap_or_default();
            match op {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(SelectorError::ValuesRequired {
                        path: format!("{base}.values"),
                        operator: op,
                    });
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(SelectorError::ValuesForbidden {
                        path: format!("{base}.values"),
                        operator: op,
                    });
                }
                _ => {}
            }
            for (j, v) in values.iter().enumerate() {
                validate_value(v, &format!("{base}.values[{j}]"))?;
            }
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
                values: values.iter().cloned().collect(),
            });
        }
        // Sorted so two selectors that differ only in order compare equal.
        reqs.sort();
        reqs.dedup();
        Ok(Self {
            requirements: Some(reqs),
        })
    }

    /// Compiles an optional selector field, with the field's meaning of nil.
    pub fn compile_optional(
        sel: Option<&LabelSelector>,
        nil: NilSelector,
    ) -> Result<Self, SelectorError> {
        match (sel, nil) {
            (Some(s), _) => Self::compile(s),
            (None, NilSelector::MatchesAll) => Ok(Self::everything()),
            (None, NilSelector::MatchesNone) => Ok(Self::nothing()),
        }
    }

    /// Does this selector select an object with these labels?
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.requirements
            .as_ref()
            .is_some_and(|r| r.iter().all(|r| r.matches(labels)))
    }

    /// True when the selector matches every label set.
    pub fn is_everything(&self) -> bool {
        self.requirements.as_ref().is_some_and(Vec::is_empty)
    }

    /// True when the selector matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.requirements.is_none()
    }

    /// The compiled requirements (empty for everything/nothing).
    pub fn requirements(&self) -> &[Requirement] {
        self.requirements.as_deref().unwrap_or_default()
    }
}

/// Compiles a selector field of an already validated object (anything in a
/// [`crate::Snapshot`]), applying the field's nil meaning. An invalid selector,
/// which validation rules out, fails closed: it selects nothing.
pub fn for_field(sel: Option<&LabelSelector>, nil: NilSelector) -> Selector {
    Selector::compile_optional(sel, nil).unwrap_or_else(|_| Selector::nothing())
}

/// Validates `sel` without keeping the compiled form.
pub fn validate(sel: &LabelSelector) -> Result<(), SelectorError> {
    Selector::compile(sel).map(|_| ())
}

/// One-shot convenience: compile and match. Prefer [`Selector`] in loops.
pub fn matches(
    sel: Option<&LabelSelector>,
    nil: NilSelector,
    labels: &impl Labels,
) -> Result<bool, SelectorError> {
    Ok(Selector::compile_optional(sel, nil)?.matches(labels))
}

const NAME_MAX: usize = 63;
const PREFIX_MAX: usize = 253;

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the apimachinery "qualified name" part.
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// RFC 1123 DNS subdomain: lower-case labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?` joined by dots.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= PREFIX_MAX
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
                && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_key(key: &str, path: &str) -> Result<(), SelectorError> {
    let err = |reason| SelectorError::InvalidKey {
        path: path.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err(err("prefix part must be non-empty"));
        }
        if !is_dns_subdomain(p) {
            return Err(err(
                "prefix part must be a lower-case DNS subdomain of at most 253 characters",
            ));
        }
    }
    if name.is_empty() {
        return Err(err("name part must be non-empty"));
    }
    if name.len() > NAME_MAX {
        return Err(err("name part must be at most 63 characters"));
    }
    if !is_name_part(name) {
        return Err(err(
            "name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
        ));
    }
    Ok(())
}

fn validate_value(value: &str, path: &str) -> Result<(), SelectorError> {
    let err = |reason| SelectorError::InvalidValue {
        path: path.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if value.len() > NAME_MAX {
        return Err(err("must be at most 63 characters"));
    }
    // The CRD pattern `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`: empty is allowed.
    if !value.is_empty() && !is_name_part(value) {
        return Err(err(
            "must be empty or consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| (*v).to_owned()).collect())
            },
        }
    }

    fn sel(ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: if ml.is_empty() {
                None
            } else {
                Some(labels(ml))
            },
            match_expressions: if me.is_empty() { None } else { Some(me) },
        }
    }

    #[test]
    fn empty_matches_everything_nil_depends_on_field() {
        let l = labels(&[("a", "b")]);
        assert!(
            Selector::compile(&LabelSelector::default())
                .unwrap()
                .matches(&l)
        );
        assert!(matches(None, NilSelector::MatchesAll, &l).unwrap());
        assert!(!matches(None, NilSelector::MatchesNone, &l).unwrap());
        assert!(!Selector::nothing().matches(&BTreeMap::new()));
        assert!(Selector::everything().matches(&BTreeMap::new()));
    }

    #[test]
    fn match_labels_are_anded() {
        let s = Selector::compile(&sel(&[("org", "empire"), ("class", "x")], vec![])).unwrap();
        assert!(s.matches(&labels(&[("org", "empire"), ("class", "x"), ("z", "1")])));
        assert!(!s.matches(&labels(&[("org", "empire")])));
        assert!(!s.matches(&labels(&[("org", "alliance"), ("class", "x")])));
    }

    #[test]
    fn operators() {
        let in_ = Selector::compile(&sel(&[], vec![expr("k", "In", &["a", "b"])])).unwrap();
        assert!(in_.matches(&labels(&[("k", "a")])));
        assert!(!in_.matches(&labels(&[("k", "c")])));
        assert!(!in_.matches(&labels(&[])));

        let notin = Selector::compile(&sel(&[], vec![expr("k", "NotIn", &["a"])])).unwrap();
        assert!(notin.matches(&labels(&[])), "NotIn matches an absent key");
        assert!(notin.matches(&labels(&[("k", "b")])));
        assert!(!notin.matches(&labels(&[("k", "a")])));

        let ex = Selector::compile(&sel(&[], vec![expr("k", "Exists", &[])])).unwrap();
        assert!(ex.matches(&labels(&[("k", "")])));
        assert!(!ex.matches(&labels(&[])));

        let dne = Selector::compile(&sel(&[], vec![expr("k", "DoesNotExist", &[])])).unwrap();
        assert!(dne.matches(&labels(&[])));
        assert!(!dne.matches(&labels(&[("k", "v")])));
    }

    #[test]
    fn cilium_select_every_service_idiom() {
        // Cilium docs: NotIn on a never-used value selects every service.
        let s = Selector::compile(&sel(
            &[],
            vec![expr("somekey", "NotIn", &["never-used-value"])],
        ))
        .unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("app", "x")])));
    }

    #[test]
    fn service_synthetic_labels() {
        let own = labels(&[("app", "web"), (SERVICE_NAME_LABEL, "spoofed")]);
        let sl = ServiceLabels {
            labels: &own,
            namespace: "batuu",
            name: "deathstar",
        };
        let s = Selector::compile(&sel(
            &[
                (SERVICE_NAMESPACE_LABEL, "batuu"),
                (SERVICE_NAME_LABEL, "deathstar"),
            ],
            vec![],
        ))
        .unwrap();
        assert!(s.matches(&sl));
        assert_eq!(sl.label("app"), Some("web"));
    }

    #[test]
    fn order_does_not_matter_for_equality() {
        let a = Selector::compile(&sel(
            &[],
            vec![expr("a", "Exists", &[]), expr("b", "In", &["1"])],
        ));
        let b = Selector::compile(&sel(
            &[],
            vec![expr("b", "In", &["1"]), expr("a", "Exists", &[])],
        ));
        assert_eq!(a.unwrap(), b.unwrap());
    }

    #[test]
    fn malformed_unknown_operator() {
        let e = Selector::compile(&sel(&[], vec![expr("k", "in", &["a"])])).unwrap_err();
        assert!(matches!(e, SelectorError::UnknownOperator { .. }), "{e}");
        assert_eq!(e.path(), "matchExpressions[0].operator");
        let e = Selector::compile(&sel(&[], vec![expr("k", "Gt", &["1"])])).unwrap_err();
        assert!(matches!(e, SelectorError::UnknownOperator { .. }), "{e}");
    }

    #[test]
    fn malformed_values_required_or_forbidden() {
        let e = Selector::compile(&sel(&[], vec![expr("k", "In", &[])])).unwrap_err();
        assert!(matches!(e, SelectorError::ValuesRequired { .. }), "{e}");
        let e = Selector::compile(&sel(&[], vec![expr("k", "NotIn", &[])])).unwrap_err();
        assert!(matches!(e, SelectorError::ValuesRequired { .. }), "{e}");
        let e = Selector::compile(&sel(&[], vec![expr("k", "Exists", &["v"])])).unwrap_err();
        assert!(matches!(e, SelectorError::ValuesForbidden { .. }), "{e}");
        let e = Selector::compile(&sel(&[], vec![expr("k", "DoesNotExist", &["v"])])).unwrap_err();
        assert!(matches!(e, SelectorError::ValuesForbidden { .. }), "{e}");
    }

    #[test]
    fn malformed_keys() {
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "/a",
            "Example.com/a",
            "a/",
            "a/b/c",
            &"x".repeat(64),
            &format!("{}/a", "p".repeat(254)),
        ] {
            let e = Selector::compile(&sel(&[(bad, "v")], vec![])).unwrap_err();
            assert!(
                matches!(e, SelectorError::InvalidKey { .. }),
                "{bad:?}: {e}"
            );
            let e = Selector::compile(&sel(&[], vec![expr(bad, "Exists", &[])])).unwrap_err();
            assert!(
                matches!(e, SelectorError::InvalidKey { .. }),
                "{bad:?}: {e}"
            );
        }
        for good in [
            "a",
            "node-role.kubernetes.io/control-plane",
            "kubernetes.io/hostname",
            "A_b.C",
            &"x".repeat(63),
        ] {
            Selector::compile(&sel(&[(good, "v")], vec![])).unwrap();
        }
    }

    #[test]
    fn malformed_values() {
        for bad in ["-a", "a-", "a b", "a/b", &"v".repeat(64)] {
            let e = Selector::compile(&sel(&[("k", bad)], vec![])).unwrap_err();
            assert!(
                matches!(e, SelectorError::InvalidValue { .. }),
                "{bad:?}: {e}"
            );
            let e = Selector::compile(&sel(&[], vec![expr("k", "In", &["ok", bad])])).unwrap_err();
            assert_eq!(e.path(), "matchExpressions[0].values[1]");
        }
        // Empty values are valid label values.
        let s = Selector::compile(&sel(&[("k", "")], vec![])).unwrap();
        assert!(s.matches(&labels(&[("k", "")])));
    }
}
