//! Multi-document YAML → typed, validated objects, one error per bad document.
//!
//! The text is split into documents at `---`/`...` marker lines first (markers at
//! column 0 always end a document in YAML, even inside block scalars), so a
//! document that is not valid YAML cannot take its neighbours down, and every
//! error can name its document and a line in the whole source.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cilium::{
    CiliumBGPAdvertisement, CiliumBGPClusterConfig, CiliumBGPNodeConfigOverride,
    CiliumBGPPeerConfig, CiliumEgressGatewayPolicy, CiliumL2AnnouncementPolicy,
    CiliumLoadBalancerIPPool,
};
use crate::error::{ConfigError, Location, ObjectRef, Problem};
use crate::object::{Kind, Loaded, Object, Origin};
use crate::validate::validate_and_convert;

/// Everything read from one source: the good objects and one error per bad document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedSource {
    /// The source name given to [`parse_documents`].
    pub source: String,
    /// Valid objects, in document order.
    pub objects: Vec<Loaded>,
    /// One error per document that could not be loaded.
    pub errors: Vec<ConfigError>,
}

impl ParsedSource {
    /// A source that could not be read at all (for example an I/O error). The
    /// snapshot merge keeps every object previously loaded from it.
    pub fn unreadable(source: impl Into<String>, message: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            errors: vec![ConfigError {
                location: Location {
                    source: source.clone(),
                    document: 0,
                    line: None,
                },
                object: None,
                problem: Problem::Unreadable {
                    message: message.into(),
                },
                kept_previous: false,
            }],
            source,
            objects: Vec::new(),
        }
    }
}

/// Parses every document of a multi-document YAML text.
///
/// `source_name` is only used in errors and origins. Empty documents are skipped.
/// Each document yields either one [`Loaded`] object or one [`ConfigError`]; a bad
/// document never affects the others. Never panics, whatever the input.
pub fn parse_documents(source_name: &str, text: &str) -> ParsedSource {
    let docs = split_documents(text);
    let refs: Vec<&RawDoc<'_>> = docs.iter().collect();
    let results = parse_many(source_name, &refs);
    assemble(source_name, results.into_iter().map(Some))
}

/// What [`parse_documents_cached`] remembers of a source's last parse: the object of every
/// valid document, by the document's exact text.
#[derive(Debug, Default)]
pub struct DocCache {
    pub(crate) docs: hashbrown::HashMap<Box<str>, CachedDoc>,
    pub(crate) generation: u64,
}

#[derive(Debug)]
pub(crate) struct CachedDoc {
    /// The object as last loaded, with the origin it had then.
    pub(crate) loaded: Loaded,
    pub(crate) key: crate::ObjectKey,
    /// The parse that last saw this text; older entries are dropped after each parse.
    pub(crate) seen: u64,
}

impl DocCache {
    /// Documents remembered.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// [`parse_documents`], reusing the previous parse of the same source for every document
/// whose text is unchanged (wherever it moved in the file): only new or edited documents
/// are parsed. The result is what [`parse_documents`] gives for the same text, and unchanged
/// documents keep the same [`Loaded::object`] allocation, so consumers can tell them apart
/// by pointer. Failed documents are always parsed again (their errors carry lines).
pub fn parse_documents_cached(source_name: &str, text: &str, cache: &mut DocCache) -> ParsedSource {
    cache.generation += 1;
    let generation = cache.generation;
    let docs = split_documents(text);
    let mut results: Vec<Option<DocResult>> = Vec::with_capacity(docs.len());
    let mut missing: Vec<&RawDoc<'_>> = Vec::new();
    for d in &docs {
        match cache.docs.get_mut(d.text) {
            Some(c) => {
                c.seen = generation;
                c.loaded.origin.location = Location {
                    source: source_name.to_owned(),
                    document: d.index,
                    line: Some(d.content_line),
                };
                results.push(Some(Ok(Some(c.loaded.clone()))));
            }
            None => {
                results.push(None);
                missing.push(d);
            }
        }
    }
    let parsed = parse_many(source_name, &missing);
    let mut parsed = missing.iter().zip(parsed);
    for (slot, d) in results.iter_mut().zip(&docs) {
        if slot.is_some() {
            continue;
        }
        let Some((m, r)) = parsed.next() else { break };
        debug_assert_eq!(m.index, d.index);
        if let Ok(Some(l)) = &r {
            cache.remember(d.text, l, generation);
        }
        *slot = Some(r);
    }
    cache.docs.retain(|_, c| c.seen == generation);
    assemble(source_name, results.into_iter())
}

impl DocCache {
    /// Remembers a document that loaded as `l`.
    pub(crate) fn remember(&mut self, text: &str, l: &Loaded, generation: u64) {
        self.docs.insert(
            text.into(),
            CachedDoc {
                loaded: l.clone(),
                key: l.object.key(),
                seen: generation,
            },
        );
    }
}

fn assemble(source_name: &str, results: impl Iterator<Item = Option<DocResult>>) -> ParsedSource {
    let mut out = ParsedSource {
        source: source_name.to_owned(),
        ..ParsedSource::default()
    };
    for r in results.flatten() {
        match r {
            Ok(Some(obj)) => out.objects.push(obj),
            Ok(None) => {}
            Err(e) => out.errors.push(*e),
        }
    }
    out
}

/// Parses `docs`, one result each, in order. Many documents (a file of thousands of
/// Services) are parsed on every core: documents are independent, and results are put back
/// in document order.
pub(crate) fn parse_many(source_name: &str, docs: &[&RawDoc<'_>]) -> Vec<DocResult> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if docs.len() >= PARALLEL_MIN_DOCS && threads > 1 {
        let chunk = docs.len().div_ceil(threads);
        let results: Vec<DocResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = docs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|d| parse_one(source_name, d))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                // parse_one does not panic; if it ever did, the short result makes us
                // parse again on this thread below.
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        if results.len() == docs.len() {
            return results;
        }
    }
    docs.iter().map(|d| parse_one(source_name, d)).collect()
}

/// Below this many documents a file is parsed on the calling thread.
const PARALLEL_MIN_DOCS: usize = 256;

/// One document's text (a slice of the source) and where it sits in the source.
#[derive(Debug)]
pub(crate) struct RawDoc<'a> {
    /// 1-based ordinal among non-empty documents.
    pub(crate) index: usize,
    /// 1-based source line of the first line of `text`.
    first_line: usize,
    /// 1-based source line of the first content line.
    pub(crate) content_line: usize,
    pub(crate) text: &'a str,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !(t.is_empty() || t.starts_with('#') || line.starts_with('%'))
}

/// Splits at document markers. A document is always a run of whole, consecutive lines of
/// the source, so it is returned as a slice of it (no copy: a 27,000-document file is split
/// in a few milliseconds).
pub(crate) fn split_documents(text: &str) -> Vec<RawDoc<'_>> {
    let mut docs = Vec::new();
    // The current document: byte range of its lines so far, its first line, and the line of
    // its first content.
    let mut start: Option<usize> = None;
    let mut end = 0usize;
    let mut first_line = 1;
    let mut content_line: Option<usize> = None;
    // The current document has a `---` line (it began with one).
    let mut has_marker = false;
    let mut flush = |start: &mut Option<usize>,
                     end: usize,
                     first_line: usize,
                     content_line: &mut Option<usize>| {
        if let (Some(cl), Some(s)) = (content_line.take(), start.take()) {
            docs.push(RawDoc {
                index: docs.len() + 1,
                first_line,
                content_line: cl,
                text: text.get(s..end).unwrap_or_default(),
            });
        }
        *start = None;
    };
    let mut pos = 0usize;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let line_start = pos;
        pos += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        if is_marker(line, "---") {
            // A start marker ends the previous document only if it had content;
            // directives and comments before it belong to the new one. A document that
            // has only a marker and comments so far is empty: it ends here too (kept, it
            // would reach the YAML parser as two documents).
            if content_line.is_some() {
                flush(&mut start, end, first_line, &mut content_line);
            } else if has_marker {
                start = None;
            }
            if start.is_none() {
                start = Some(line_start);
                first_line = line_no;
            }
            has_marker = true;
            end = pos;
            let rest = &line[3..];
            if is_content(rest) && content_line.is_none() {
                content_line = Some(line_no);
            }
        } else if is_marker(line, "...") {
            flush(&mut start, end, first_line, &mut content_line);
            has_marker = false;
            first_line = line_no + 1;
        } else {
            if start.is_none() {
                start = Some(line_start);
                first_line = line_no;
            }
            end = pos;
            if is_content(line) && content_line.is_none() {
                content_line = Some(line_no);
            }
        }
    }
    flush(&mut start, end, first_line, &mut content_line);
    docs
}

pub(crate) type DocResult = Result<Option<Loaded>, Box<ConfigError>>;

fn parse_one(source: &str, doc: &RawDoc<'_>) -> DocResult {
    let offset = doc.first_line - 1;
    // A parser that hits end-of-document reports the line after it; clamp so the
    // error never points into the next document.
    let last_line = offset + doc.text.lines().count().max(1);
    let loc = |line: Option<usize>| Location {
        source: source.to_owned(),
        document: doc.index,
        line: Some(line.map_or(doc.content_line, |l| (l + offset).min(last_line))),
    };
    let fail = |line: Option<usize>, object: Option<ObjectRef>, problem: Problem| {
        Err(Box::new(ConfigError {
            location: loc(line),
            object,
            problem,
            kept_previous: false,
        }))
    };

    let value: Value = match serde_yaml_ng::from_str(doc.text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            return fail(
                line,
                None,
                Problem::Yaml {
                    message: strip_location(&e.to_string()),
                },
            );
        }
    };
    let map = match &value {
        Value::Null => return Ok(None),
        Value::Mapping(m) => m,
        other => {
            return fail(
                None,
                None,
                Problem::NotAnObject {
                    what: yaml_kind(other).to_owned(),
                },
            );
        }
    };
    let get_str =
        |m: &serde_yaml_ng::Mapping, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let meta = map.get("metadata").and_then(Value::as_mapping);
    let name = meta.and_then(|m| get_str(m, "name"));
    let namespace = meta.and_then(|m| get_str(m, "namespace"));
    let (Some(kind_s), Some(api_version)) = (get_str(map, "kind"), get_str(map, "apiVersion"))
    else {
        let what = match (map.get("kind"), map.get("apiVersion")) {
            (None, _) => "kind is missing",
            (Some(k), _) if k.as_str().is_none() => "kind is not a string",
            (_, None) => "apiVersion is missing",
            _ => "apiVersion is not a string",
        };
        return fail(None, None, Problem::NotAnObject { what: what.into() });
    };
    let Some(kind) = Kind::parse(&kind_s) else {
        return fail(
            None,
            Some(ObjectRef {
                kind: kind_s.clone(),
                namespace,
                name,
            }),
            Problem::UnknownKind {
                kind: kind_s,
                expected: Kind::ALL.map(Kind::as_str).join(", "),
            },
        );
    };
    let objref = ObjectRef {
        kind: kind_s.clone(),
        namespace: kind
            .namespaced()
            .then(|| namespace.clone().unwrap_or_else(|| "default".into())),
        name: name.clone(),
    };
    if !kind.api_versions().contains(&api_version.as_str()) {
        return fail(
            None,
            Some(objref),
            Problem::UnknownApiVersion {
                kind: kind_s,
                api_version,
                expected: kind.api_versions().join(" or "),
            },
        );
    }

    let (text, v) = (doc.text, &value);
    let decoded = match kind {
        Kind::BgpClusterConfig => {
            decode::<CiliumBGPClusterConfig>(text, v).map(Object::BgpClusterConfig)
        }
        Kind::BgpPeerConfig => decode::<CiliumBGPPeerConfig>(text, v).map(Object::BgpPeerConfig),
        Kind::BgpAdvertisement => {
            decode::<CiliumBGPAdvertisement>(text, v).map(Object::BgpAdvertisement)
        }
        Kind::BgpNodeConfigOverride => {
            decode::<CiliumBGPNodeConfigOverride>(text, v).map(Object::BgpNodeConfigOverride)
        }
        Kind::LoadBalancerIPPool => {
            decode::<CiliumLoadBalancerIPPool>(text, v).map(Object::LoadBalancerIPPool)
        }
        Kind::L2AnnouncementPolicy => {
            decode::<CiliumL2AnnouncementPolicy>(text, v).map(Object::L2AnnouncementPolicy)
        }
        Kind::EgressGatewayPolicy => {
            decode::<CiliumEgressGatewayPolicy>(text, v).map(Object::EgressGatewayPolicy)
        }
        Kind::Service => decode::<Service>(text, v).map(Object::Service),
        Kind::Node => decode::<Node>(text, v).map(Object::Node),
        Kind::EndpointSlice => decode::<EndpointSlice>(text, v).map(Object::EndpointSlice),
        Kind::Secret => decode::<Secret>(text, v).map(Object::Secret),
        Kind::Pod => decode::<Pod>(text, v).map(Object::Pod),
        Kind::Namespace => decode::<Namespace>(text, v).map(Object::Namespace),
    };
    let mut object = match decoded {
        Ok(o) => o,
        Err((path, message, line)) => {
            return fail(line, Some(objref), Problem::Decode { path, message });
        }
    };
    if let Some(p) = unknown_key(map, meta, kind) {
        return fail(None, Some(objref), p);
    }
    if let Some(path) = unknown_field(&value, &object.to_json(), &mut String::new()) {
        return fail(
            None,
            Some(objref),
            Problem::Decode {
                path,
                message: format!("unknown field in {kind_s} {api_version}"),
            },
        );
    }
    normalise_namespace(&mut object);
    let mut errs = validate_and_convert(&mut object, &api_version);
    if !errs.is_empty() {
        for f in &mut errs {
            f.line = locate(doc.text, &f.path).map(|l| (l + offset).min(last_line));
        }
        let first = errs.iter().find_map(|f| f.line).map(|l| l - offset);
        return fail(first, Some(objref), Problem::Invalid(errs));
    }
    Ok(Some(Loaded {
        object: Arc::new(object),
        origin: Origin {
            location: loc(None),
            api_version,
        },
    }))
}

/// Line (1-based, within `text`) of the node at `path`, or of its closest
/// ancestor that is written out. serde_yaml_ng only reports positions in errors,
/// so this walks to the node and fails there on purpose.
fn locate(text: &str, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        if let Err(e) = serde::de::DeserializeSeed::deserialize(Seek(p), de)
            && let Some(l) = e.location()
        {
            return Some(l.line());
        }
        // Not written out (a missing field): try the parent.
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

/// Walks a dotted path (`a.b[2].c`; map keys may themselves contain dots) and
/// raises an error at its node.
struct Seek<'a>(&'a str);

const FOUND: &str = "rackd-model: found";

impl<'de> serde::de::DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.0.is_empty() {
            return Err(serde::de::Error::custom(FOUND));
        }
        while let Some(k) = map.next_key::<Value>()? {
            let rest = k.as_str().and_then(|k| {
                let r = self.0.strip_prefix(k)?;
                if r.is_empty() || r.starts_with('[') {
                    Some(r)
                } else {
                    r.strip_prefix('.')
                }
            });
            match rest {
                Some(rest) => map.next_value_seed(Seek(rest))?,
                None => map.next_value::<serde::de::IgnoredAny>().map(|_| ())?,
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(rest) = self.0.strip_prefix('[') else {
            return Err(serde::de::Error::custom(FOUND));
        };
        let (idx, rest) = rest.split_once(']').unwrap_or((rest, ""));
        let want: usize = idx.parse().map_err(|_| serde::de::Error::custom(FOUND))?;
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let mut i = 0;
        while i < want {
            if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
        seq.next_element_seed(Seek(rest)).map(|_| ())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
}

/// Decode from the already-parsed value (fast); only when that fails, decode the text again
/// with path tracking so the error names the field and its line.
fn decode<T: DeserializeOwned>(
    text: &str,
    value: &Value,
) -> Result<T, (String, String, Option<usize>)> {
    // From the parsed tree, borrowed (cloning it allocated the whole document again); the
    // text again only to say where it failed.
    if let Ok(t) = T::deserialize(value) {
        return Ok(t);
    }
    decode_text(text)
}

fn decode_text<T: DeserializeOwned>(text: &str) -> Result<T, (String, String, Option<usize>)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let msg = strip_location(&inner.to_string());
        // serde_yaml_ng already prefixes some messages with the path.
        let msg = msg
            .strip_prefix(&format!("{path}: "))
            .map_or(msg.clone(), str::to_owned);
        (path, msg, line)
    })
}

/// The location is reported separately, relative to the whole source.
fn strip_location(msg: &str) -> String {
    let mut out = msg.to_owned();
    while let Some(i) = out.find(" at line ") {
        let rest = &out[i + " at line ".len()..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let n = digits(rest);
        let Some(after) = rest[n..].strip_prefix(" column ") else {
            break;
        };
        let m = digits(after);
        if n == 0 || m == 0 {
            break;
        }
        let end = i + " at line ".len() + n + " column ".len() + m;
        out.replace_range(i..end, "");
    }
    out
}

/// What a YAML value is, for error messages ("a list", "a string", ...): one wording for every
/// crate that reports a value of the wrong type.
pub fn yaml_kind(v: &Value) -> &'static str {
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

/// kubectl's strict field validation rejects unknown fields, which serde drops
/// silently in the root, `metadata` and the k8s-openapi types. Every key of the
/// input must survive a decode/encode round trip; empty and null values are
/// skipped because the encoders omit them.
fn unknown_field(input: &Value, decoded: &serde_json::Value, path: &mut String) -> Option<String> {
    match (input, decoded) {
        (Value::Mapping(m), serde_json::Value::Object(o)) => {
            for (k, v) in m {
                if is_empty(v) {
                    continue;
                }
                let Some(k) = k.as_str() else {
                    return Some(format!("{path}<non-string key>"));
                };
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = match o.get(k) {
                    None => Some(path.clone()),
                    Some(d) => unknown_field(v, d, path),
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Sequence(s), serde_json::Value::Array(a)) if s.len() == a.len() => {
            for (i, (v, d)) in s.iter().zip(a).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = unknown_field(v, d, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Tagged(t), d) => unknown_field(&t.value, d, path),
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m.is_empty(),
        _ => false,
    }
}

const OBJECT_META_KEYS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "generateName",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

/// kubectl's strict field validation rejects unknown fields; serde would silently
/// drop them at the root and in `metadata` (the derived specs deny them themselves).
fn unknown_key(
    map: &serde_yaml_ng::Mapping,
    meta: Option<&serde_yaml_ng::Mapping>,
    kind: Kind,
) -> Option<Problem> {
    let root: &[&str] = match kind {
        Kind::Service | Kind::Node | Kind::Pod => {
            &["apiVersion", "kind", "metadata", "spec", "status"]
        }
        Kind::Secret => &[
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "stringData",
            "type",
            "immutable",
        ],
        Kind::EndpointSlice => &[
            "apiVersion",
            "kind",
            "metadata",
            "addressType",
            "endpoints",
            "ports",
        ],
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    };
    let check = |m: &serde_yaml_ng::Mapping, allowed: &[&str], prefix: &str| {
        m.keys().find_map(|k| {
            let ks = k.as_str();
            if ks.is_some_and(|s| allowed.contains(&s)) {
                return None;
            }
            Some(Problem::Decode {
                path: format!("{prefix}{}", ks.unwrap_or("<non-string key>")),
                message: format!("unknown field, expected one of {}", allowed.join(", ")),
            })
        })
    };
    check(map, root, "").or_else(|| meta.and_then(|m| check(m, OBJECT_META_KEYS, "metadata.")))
}

/// Namespaced kinds default to `default`; cluster-scoped kinds drop a namespace, as
/// the API server does.
pub(crate) fn normalise_namespace(o: &mut Object) {
    let namespaced = o.kind().namespaced();
    let m = match o {
        Object::BgpClusterConfig(x) => &mut x.metadata,
        Object::BgpPeerConfig(x) => &mut x.metadata,
        Object::BgpAdvertisement(x) => &mut x.metadata,
        Object::BgpNodeConfigOverride(x) => &mut x.metadata,
        Object::LoadBalancerIPPool(x) => &mut x.metadata,
        Object::L2AnnouncementPolicy(x) => &mut x.metadata,
        Object::EgressGatewayPolicy(x) => &mut x.metadata,
        Object::Service(x) => &mut x.metadata,
        Object::Node(x) => &mut x.metadata,
        Object::EndpointSlice(x) => &mut x.metadata,
        Object::Secret(x) => &mut x.metadata,
        Object::Pod(x) => &mut x.metadata,
        Object::Namespace(x) => &mut x.metadata,
    };
    if namespaced {
        if m.namespace.as_deref().is_none_or(str::is_empty) {
            m.namespace = Some("default".into());
        }
    } else {
        m.namespace = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let d = split_documents(
            "# c\n---\na: 1\n---\n---\n# only comment\n---\nb: 2\n...\nignored: x\n",
        );
        let got: Vec<_> = d
            .iter()
            .map(|d| (d.index, d.first_line, d.content_line))
            .collect();
        // `ignored: x` after `...` is a bare document of its own; the document of `b: 2`
        // starts at its own marker (the markers and comment before it are empty documents).
        assert_eq!(got, vec![(1, 1, 3), (2, 7, 8), (3, 10, 10)]);
        assert!(d[0].text.contains("a: 1"));
        assert!(split_documents("").is_empty());
        assert!(split_documents("---\n---\n# x\n").is_empty());
        let d = split_documents("--- {a: 1}\n--- b\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].content_line, 2);
        // A `----` line is content, not a marker.
        assert_eq!(split_documents("a: |\n  x\n----\n").len(), 1);
        // A marker followed only by comments, then another marker: the first is empty.
        let d = split_documents("---\n# about the next one\n---\na: 1\n");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].first_line, d[0].content_line), (3, 4));
        assert_eq!(d[0].text, "---\na: 1\n");
    }
}
