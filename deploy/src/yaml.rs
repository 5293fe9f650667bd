//! A YAML emitter for JSON values that reads the same under YAML 1.1 and 1.2.
//!
//! serde_yaml_ng writes YAML 1.2, where `Yes`, `No`, `on` and `y` are plain strings; Go's
//! `sigs.k8s.io/yaml` (kubectl, helm) reads YAML 1.1, where they are booleans, so
//! Cilium's `allowFirstLastIPs` enum `["Yes", "No"]` would load as `[true, false]`. Here a
//! string is written plain only when it is unambiguous in both; otherwise it is a
//! double-quoted scalar with JSON escapes (a subset of YAML's).

use serde_json::Value;

/// Renders `v` as a block-style YAML document (no leading `---`), ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => mapping(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(v, 0, &mut out),
        _ => {
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn mapping(v: &Value, indent: usize, out: &mut String) {
    let Value::Object(m) = v else { return };
    for (i, (k, val)) in m.iter().enumerate() {
        // The first key of a sequence item goes on the `- ` line (indent already written).
        if i > 0 {
            pad(indent, out);
        }
        out.push_str(&string(k));
        out.push(':');
        match val {
            Value::Object(_) if is_block(val) => {
                out.push('\n');
                pad(indent + 2, out);
                mapping(val, indent + 2, out);
            }
            Value::Array(_) if is_block(val) => {
                out.push('\n');
                sequence(val, indent, out);
            }
            _ => {
                out.push(' ');
                out.push_str(&scalar(val));
                out.push('\n');
            }
        }
    }
}

fn sequence(v: &Value, indent: usize, out: &mut String) {
    let Value::Array(a) = v else { return };
    for item in a {
        pad(indent, out);
        out.push_str("- ");
        match item {
            Value::Object(_) if is_block(item) => mapping(item, indent + 2, out),
            Value::Array(_) if is_block(item) => {
                out.push('\n');
                sequence(item, indent + 2, out);
            }
            _ => {
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Plain when unambiguous in YAML 1.1 and 1.2, else double-quoted.
fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn is_plain_safe(s: &str) -> bool {
    const RESERVED: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "",
    ];
    let first_ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '.');
    let last_ok = s.ends_with(|c: char| c.is_ascii_alphanumeric() || "_.)".contains(c));
    let body_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _./-,()'=".contains(c));
    first_ok
        && last_ok
        && body_ok
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
        // `.inf`, `.nan` and base-60 or float-like forms all start with a dot or digit.
        && !s.starts_with('.')
        && !s.contains("  ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trips_and_quotes_yaml11_keywords() {
        let v = json!({
            "enum": ["Yes", "No", "y", "On", "True", "null", "179", "1.5", "a: b", "#x", "- x", "ok"],
            "nested": {"list": [{"a": 1, "b": [1, 2]}, [], {}], "empty": {}, "e2": []},
            "text": "line one\nline two \"quoted\" \\d",
            "plain": "Kind is a string value (the REST resource).",
            "n": 4294967295u64, "f": 1.5, "t": true, "z": null
        });
        let y = to_yaml(&v);
        for quoted in [
            "\"Yes\"", "\"No\"", "\"y\"", "\"On\"", "\"True\"", "\"null\"", "\"179\"",
        ] {
            assert!(y.contains(quoted), "{quoted} in\n{y}");
        }
        assert!(y.contains("- ok\n"), "{y}");
        assert!(
            y.contains("plain: Kind is a string value (the REST resource).\n"),
            "{y}"
        );
        let back: Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(back, v, "{y}");
    }
}
