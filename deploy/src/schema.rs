//! A checker for Kubernetes structural schemas: the OpenAPI v3 subset a CRD's
//! `openAPIV3Schema` uses, applied the way the API server applies it on create.
//!
//! Order, as the API server: drop `null`s of non-nullable fields, apply `default`s, then
//! validate `type`, `properties` (an unknown field is an error, as with kubectl's default
//! strict field validation), `required`, `additionalProperties`, `enum`, `pattern`,
//! `minLength`/`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`, the formats the
//! API server checks (`int32`, `int64`, `cidr`, `ipv4`, `ipv6`, `date-time`), and list
//! types `map` (unique keys) and `set` (unique items). `x-kubernetes-preserve-unknown-fields`
//! and an object schema without `properties` (the root `metadata`) accept any content.
//!
//! Not evaluated: CEL rules (`x-kubernetes-validations`), which [`Report::cel_rules`]
//! counts so a caller can say so; the real API server checks those (deploy's dry-run test).
//! Patterns are compiled with Rust's `regex`, whose syntax is RE2's for what CRD patterns use.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;
use serde_json::{Map, Value};

/// A schema that cannot be used (a pattern that does not compile).
#[derive(Debug, thiserror::Error)]
#[error("{path}: pattern {pattern:?}: {source}")]
pub struct SchemaError {
    /// Where in the schema.
    pub path: String,
    /// The pattern.
    pub pattern: String,
    /// Why it does not compile.
    #[source]
    pub source: regex::Error,
}

/// One way an object breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, `spec.bgpInstances[0].name`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The outcome of checking one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What the object breaks; empty = accepted.
    pub violations: Vec<Violation>,
    /// CEL rules on the fields the object has, not evaluated here.
    pub cel_rules: usize,
    /// The object after pruning `null`s and defaulting, as the API server would store it.
    pub defaulted: Value,
}

/// Checks objects against schemas; caches compiled patterns.
#[derive(Debug, Default)]
pub struct Checker {
    patterns: HashMap<String, Regex>,
}

impl Checker {
    /// A checker with an empty pattern cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `object` against the structural schema `schema`.
    pub fn check(&mut self, schema: &Value, object: &Value) -> Result<Report, SchemaError> {
        let mut defaulted = object.clone();
        prune_and_default(schema, &mut defaulted);
        let mut report = Report::default();
        self.node(schema, &defaulted, "", &mut report)?;
        report.defaulted = defaulted;
        Ok(report)
    }

    fn regex(&mut self, path: &str, pattern: &str) -> Result<&Regex, SchemaError> {
        if !self.patterns.contains_key(pattern) {
            let re = Regex::new(pattern).map_err(|source| SchemaError {
                path: path.to_owned(),
                pattern: pattern.to_owned(),
                source,
            })?;
            self.patterns.insert(pattern.to_owned(), re);
        }
        Ok(&self.patterns[pattern])
    }

    fn node(
        &mut self,
        schema: &Value,
        v: &Value,
        path: &str,
        r: &mut Report,
    ) -> Result<(), SchemaError> {
        if let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            r.cel_rules += rules.len();
        }
        let mut bad = |message: String| {
            r.violations.push(Violation {
                path: if path.is_empty() {
                    "<root>".into()
                } else {
                    path.to_owned()
                },
                message,
            });
        };
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            bad(format!(
                "{v} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
        let ty = schema.get("type").and_then(Value::as_str);
        match ty {
            Some("object") => {
                let Some(obj) = v.as_object() else {
                    bad(format!("{} is not an object", kind_of(v)));
                    return Ok(());
                };
                self.object(schema, obj, path, r)?;
            }
            Some("array") => {
                let Some(items) = v.as_array() else {
                    bad(format!("{} is not an array", kind_of(v)));
                    return Ok(());
                };
                self.array(schema, items, path, r)?;
            }
            Some("string") => {
                let Some(s) = v.as_str() else {
                    bad(format!("{} is not a string", kind_of(v)));
                    return Ok(());
                };
                self.string(schema, s, path, r)?;
            }
            Some("integer") => {
                let n = v.as_i64().map(i128::from).or(v.as_u64().map(i128::from));
                let Some(n) = n else {
                    bad(format!("{} is not an integer", kind_of(v)));
                    return Ok(());
                };
                range(schema, n as f64, &mut bad);
                let (lo, hi) = match schema.get("format").and_then(Value::as_str) {
                    Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
                    _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
                };
                if n < lo || n > hi {
                    bad(format!("{n} does not fit its format"));
                }
            }
            Some("number") => match v.as_f64() {
                Some(f) => range(schema, f, &mut bad),
                None => bad(format!("{} is not a number", kind_of(v))),
            },
            Some("boolean") if !v.is_boolean() => {
                bad(format!("{} is not a boolean", kind_of(v)));
            }
            _ => {}
        }
        Ok(())
    }

    fn object(
        &mut self,
        schema: &Value,
        obj: &Map<String, Value>,
        path: &str,
        r: &mut Report,
    ) -> Result<(), SchemaError> {
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(req) {
                r.violations.push(Violation {
                    path: join(path, req),
                    message: "Required value".into(),
                });
            }
        }
        for (k, v) in obj {
            let sub = join(path, k);
            match (props.and_then(|p| p.get(k)), additional) {
                (Some(s), _) | (None, Some(s)) => self.node(s, v, &sub, r)?,
                (None, None) if preserve || props.is_none() => {}
                (None, None) => r.violations.push(Violation {
                    path: sub,
                    message: "unknown field".into(),
                }),
            }
        }
        Ok(())
    }

    fn array(
        &mut self,
        schema: &Value,
        items: &[Value],
        path: &str,
        r: &mut Report,
    ) -> Result<(), SchemaError> {
        let n = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            r.violations.push(Violation {
                path: path.to_owned(),
                message: format!("{n} items, fewer than {min}"),
            });
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            r.violations.push(Violation {
                path: path.to_owned(),
                message: format!("{n} items, more than {max}"),
            });
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen = HashSet::new();
                for (i, it) in items.iter().enumerate() {
                    let key: Vec<String> = keys
                        .iter()
                        .map(|k| it.get(*k).map(Value::to_string).unwrap_or_default())
                        .collect();
                    if !seen.insert(key.clone()) {
                        r.violations.push(Violation {
                            path: format!("{path}[{i}]"),
                            message: format!("Duplicate value: {}", key.join(",")),
                        });
                    }
                }
            }
            Some("set") => {
                let mut seen = HashSet::new();
                for (i, it) in items.iter().enumerate() {
                    if !seen.insert(it.to_string()) {
                        r.violations.push(Violation {
                            path: format!("{path}[{i}]"),
                            message: format!("Duplicate value: {it}"),
                        });
                    }
                }
            }
            _ => {}
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, it) in items.iter().enumerate() {
                self.node(item_schema, it, &format!("{path}[{i}]"), r)?;
            }
        }
        Ok(())
    }

    fn string(
        &mut self,
        schema: &Value,
        s: &str,
        path: &str,
        r: &mut Report,
    ) -> Result<(), SchemaError> {
        let mut out = Vec::new();
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            out.push(format!("{s:?} is shorter than {min}"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            out.push(format!("{s:?} is longer than {max}"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && !self.regex(path, p)?.is_match(s)
        {
            out.push(format!("{s:?} does not match the pattern"));
        }
        let format_ok = match schema.get("format").and_then(Value::as_str) {
            Some("cidr") => s.parse::<ipnet::IpNet>().is_ok(),
            Some("ipv4") => s.parse::<Ipv4Addr>().is_ok(),
            Some("ipv6") => s.parse::<Ipv6Addr>().is_ok(),
            Some("date-time") => is_rfc3339(s),
            _ => true,
        };
        if !format_ok {
            out.push(format!("{s:?} is not a valid {}", schema["format"]));
        }
        r.violations
            .extend(out.into_iter().map(|message| Violation {
                path: path.to_owned(),
                message,
            }));
        Ok(())
    }
}

fn range(schema: &Value, n: f64, bad: &mut impl FnMut(String)) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        bad(format!("{n} is less than {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        bad(format!("{n} is greater than {max}"));
    }
}

fn is_rfc3339(s: &str) -> bool {
    static RE: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$").ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(s))
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Drops `null`s where the schema is not `nullable`, then fills in `default`s of absent
/// properties, top-down (a default is itself defaulted), as the API server does.
fn prune_and_default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            obj.retain(|k, val| {
                let s = props.and_then(|p| p.get(k)).or(additional);
                !val.is_null() || s.is_some_and(|s| s.get("nullable") == Some(&Value::Bool(true)))
            });
            if let Some(props) = props {
                for (k, s) in props {
                    if !obj.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        obj.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, val) in obj.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    prune_and_default(s, val);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                items.iter_mut().for_each(|it| prune_and_default(s, it));
            }
        }
        _ => {}
    }
}

/// The `openAPIV3Schema` of `kind` at `api_version` (`cilium.io/v2`) among `crds`.
pub fn version_schema(
    crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
    api_version: &str,
    kind: &str,
) -> Option<Value> {
    let (group, version) = api_version.split_once('/')?;
    let crd = crds
        .iter()
        .find(|c| c.spec.group == group && c.spec.names.kind == kind)?;
    let v = crd.spec.versions.iter().find(|v| v.name == version)?;
    let schema = v.schema.as_ref()?.open_api_v3_schema.as_ref()?;
    serde_json::to_value(schema).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535, "default": 179},
                        "name": {"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$"},
                        "mode": {"type": "string", "enum": ["A", "B"]},
                        "cidr": {"type": "string", "format": "cidr"},
                        "list": {
                            "type": "array", "maxItems": 2,
                            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
                        },
                        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 2}},
                        "rule": {"type": "object", "x-kubernetes-validations": [{"rule": "true"}]}
                    }
                }
            }
        })
    }

    fn messages(obj: Value) -> Vec<String> {
        Checker::new()
            .check(&schema(), &obj)
            .unwrap()
            .violations
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn accepts_and_defaults() {
        let r = Checker::new()
            .check(
                &schema(),
                &json!({"metadata": {"name": "x", "anything": 1}, "spec": {"name": "ab", "cidr": "10.0.0.0/8",
                        "list": [{"name": "a"}, {"name": "b"}], "labels": {"k": "v"}, "rule": {}, "mode": null}}),
            )
            .unwrap();
        assert_eq!(r.violations, vec![]);
        assert_eq!(r.defaulted["spec"]["port"], 179);
        assert!(r.defaulted["spec"].get("mode").is_none());
        assert_eq!(r.cel_rules, 1);
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        assert_eq!(messages(json!({})), vec!["spec: Required value"]);
        let m = messages(json!({"spec": {
            "port": 0, "name": "ABCD", "mode": "C", "cidr": "10.0.0.0", "extra": 1,
            "list": [{"name": "a"}, {"name": "a"}, {}], "labels": {"k": "long"}
        }}));
        for want in [
            "spec.port: 0 is less than 1",
            "spec.name: \"ABCD\" is longer than 3",
            "spec.name: \"ABCD\" does not match the pattern",
            "spec.mode: \"C\" is not one of [\"A\",\"B\"]",
            "spec.cidr: \"10.0.0.0\" is not a valid \"cidr\"",
            "spec.extra: unknown field",
            "spec.list: 3 items, more than 2",
            "spec.list[1]: Duplicate value: \"a\"",
            "spec.list[2].name: Required value",
            "spec.labels.k: \"long\" is longer than 2",
        ] {
            assert!(m.contains(&want.to_owned()), "{want} not in {m:#?}");
        }
        assert_eq!(
            messages(json!({"spec": {"port": 4294967296u64}})),
            vec![
                "spec.port: 4294967296 is greater than 65535",
                "spec.port: 4294967296 does not fit its format"
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"port": "179"}})),
            vec!["spec.port: a string is not an integer"]
        );
    }
}
