//! Configuration errors: where (file, document, line, object, field) and what.

use std::fmt;

use rackd_types::{Condition, Kind, ObjectCondition};

use crate::object::ObjectKey;

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The source name given to [`crate::parse_documents`] (usually a file path).
    pub source: String,
    /// 1-based index of the document among the non-empty documents of the source
    /// (0 when the error is about the whole source).
    pub document: usize,
    /// 1-based line in the source, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Documents count from 1; 0 stands for the source as a whole (unreadable).
        if self.document == 0 {
            write!(f, "{}", self.source)?;
        } else {
            write!(f, "{}: document {}", self.source, self.document)?;
        }
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        Ok(())
    }
}

/// Identifies the object an error is about, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `kind` as written.
    pub kind: String,
    /// Namespace, for namespaced kinds (defaulted to `default`).
    pub namespace: Option<String>,
    /// `metadata.name`, if present.
    pub name: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => write!(f, " {ns}/{n}"),
            (None, Some(n)) => write!(f, " {n}"),
            (_, None) => f.write_str(" (unnamed)"),
        }
    }
}

/// One field that violates a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {problem}; expected {expected}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct FieldError {
    /// Field path from the object root, e.g. `spec.bgpInstances[0].localASN`.
    pub path: String,
    /// What is wrong, usually quoting the value.
    pub problem: String,
    /// What would have been accepted.
    pub expected: String,
    /// 1-based source line of the field (or of its closest written ancestor), when known.
    pub line: Option<usize>,
}

/// What is wrong with a document or object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The YAML itself does not parse.
    #[error("invalid YAML: {message}")]
    Yaml {
        /// The parser's message.
        message: String,
    },
    /// The source could not be read at all (reported by the caller).
    #[error("cannot read source: {message}")]
    Unreadable {
        /// The I/O error text.
        message: String,
    },
    /// The document is not a mapping with `apiVersion`/`kind`.
    #[error(
        "document is not a Kubernetes object: {what}; expected a mapping with apiVersion, kind and metadata"
    )]
    NotAnObject {
        /// What was found instead.
        what: String,
    },
    /// `kind` is not one rackd understands.
    #[error("unknown kind {kind:?}; expected one of {expected}")]
    UnknownKind {
        /// The kind as written.
        kind: String,
        /// Supported kinds.
        expected: String,
    },
    /// `apiVersion` is not served for this kind.
    #[error("unsupported apiVersion {api_version:?} for kind {kind}; expected {expected}")]
    UnknownApiVersion {
        /// The kind.
        kind: String,
        /// The apiVersion as written.
        api_version: String,
        /// Accepted apiVersions.
        expected: String,
    },
    /// A field has the wrong type, is unknown, or a required field is missing.
    #[error("{path}: {message}")]
    Decode {
        /// Field path (`.` = the document root).
        path: String,
        /// The decoder's message, including what was expected.
        message: String,
    },
    /// One or more fields violate the CRD schema or a CEL rule.
    #[error("{}", join(.0))]
    Invalid(Vec<FieldError>),
    /// Another document already defined an object of this kind and name.
    #[error(
        "duplicate {key}: already defined at {first}; expected names to be unique within a kind"
    )]
    Duplicate {
        /// The clashing object.
        key: ObjectKey,
        /// Where the first definition is.
        first: Location,
    },
    /// The object refers to another object that does not exist (or is unusable).
    #[error("{path}: {target} {reason}")]
    Reference {
        /// Field path of the reference.
        path: String,
        /// The object referred to.
        target: ObjectKey,
        /// What is wrong with it.
        reason: String,
    },
}

fn join(v: &[FieldError]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One error about one document or object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where.
    pub location: Location,
    /// Which object, when it could be identified.
    pub object: Option<ObjectRef>,
    /// What. Not a `#[source]`: `Display` already includes it, and a source would
    /// print it twice in error chains.
    pub problem: Problem,
    /// True when the previous good version of the object is still in use.
    pub kept_previous: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        write!(f, ": {}", self.problem)?;
        if self.kept_previous {
            f.write_str(" (keeping the last good version)")?;
        }
        Ok(())
    }
}

impl Problem {
    /// The reason of the condition this problem is reported as.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Yaml { .. } => "InvalidYAML",
            Problem::Unreadable { .. } => "Unreadable",
            Problem::NotAnObject { .. } => "NotAnObject",
            Problem::UnknownKind { .. } => "UnknownKind",
            Problem::UnknownApiVersion { .. } => "UnknownAPIVersion",
            Problem::Decode { .. } => "DecodeError",
            Problem::Invalid(_) => "SchemaViolation",
            Problem::Duplicate { .. } => "Duplicate",
            Problem::Reference { .. } => "BrokenReference",
        }
    }
}

impl ConfigError {
    /// This error as a condition of the object it is about (`None` when the document could
    /// not be identified): Cilium's condition where Cilium has one (a PeerConfig that is
    /// missing is `cilium.io/MissingPeerConfigs` on the ClusterConfig, a missing Secret is
    /// `cilium.io/MissingAuthSecret` on the PeerConfig), otherwise
    /// `rackd.io/InvalidConfiguration` with the kind of problem as the reason.
    pub fn condition(&self) -> ObjectCondition {
        use rackd_types::condition::types;
        let object = self.object.as_ref().and_then(|o| {
            let kind = Kind::parse(&o.kind)?;
            let name = o.name.clone()?;
            Some(ObjectKey {
                kind,
                namespace: kind
                    .namespaced()
                    .then(|| o.namespace.clone().unwrap_or_else(|| "default".into())),
                name,
            })
        });
        let type_ = match &self.problem {
            Problem::Reference { target, .. } if target.kind == Kind::BgpPeerConfig => {
                types::MISSING_PEER_CONFIGS
            }
            Problem::Reference { target, .. } if target.kind == Kind::Secret => {
                types::MISSING_AUTH_SECRET
            }
            _ => types::INVALID_CONFIGURATION,
        };
        let mut message = self.problem.to_string();
        if self.kept_previous {
            message.push_str(" (keeping the last good version)");
        }
        ObjectCondition {
            object,
            source: Some(self.location.to_string()),
            condition: Condition::problem(type_, self.problem.reason(), message),
        }
    }
}
