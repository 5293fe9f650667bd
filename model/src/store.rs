//! The incremental form of the last-good merge: a [`Store`] keeps what every source said and
//! the resulting [`Snapshot`], and applies one source's changes in time proportional to them.
//!
//! A source (a file of the configuration directory, the Kubernetes API) hands over typed
//! per-object changes ([`SourceUpdate`]): objects added or changed, keys deleted, and the
//! source's current errors. The store applies the rules of [`Snapshot::merge`] (module
//! `snapshot`) to the keys those changes touch only:
//!
//! - a key's value is its first valid definition in source order (rules 1 and 4); other
//!   definitions are duplicates;
//! - with no valid definition, the previous value stays while an error claims it (rules 2
//!   and 3: a failed document naming it, a misspelt kind of its name in the source it came
//!   from, or an unidentifiable document in that source);
//! - cross-object references (rule 5) are resolved over the few kinds that take part in
//!   them (ClusterConfigs, PeerConfigs, Secrets), which are re-examined on every apply.
//!
//! The result after any sequence of updates equals [`Snapshot::merge`] of the sources' whole
//! contents over the previous result (`tests/store_props.rs` checks it on random edit
//! sequences), so the daemon and `rackctl config validate` agree.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::error::{ConfigError, Location};
use crate::object::{Loaded, ObjectKey};
use crate::parse::ParsedSource;
use crate::snapshot::{
    Change, CheckOptions, Claim, Snapshot, claim_of, duplicate, in_references, resolve_references,
};

/// Name of a source; their order (lexicographic) is the order of precedence between
/// duplicate definitions, as the files of a directory are read in name order.
pub type SourceName = Arc<str>;

/// What one source says now, as a change to what it said before.
#[derive(Debug, Clone)]
pub struct SourceUpdate {
    pub source: SourceName,
    pub change: SourceChange,
}

/// See [`SourceUpdate`].
#[derive(Debug, Clone)]
pub enum SourceChange {
    /// Objects added or changed and keys deleted since the source's last update, and its
    /// complete current list of errors (usually empty).
    Update {
        /// Valid objects that are new or differ (one per key: the first definition in the
        /// source).
        upserts: Vec<Loaded>,
        /// Keys the source no longer defines.
        deletes: Vec<ObjectKey>,
        /// Every current error of the source: documents that failed, in document order.
        errors: Vec<ConfigError>,
        /// Every current later definition of a key the source already defines (each is a
        /// duplicate of whichever definition wins overall).
        duplicates: Vec<Loaded>,
    },
    /// The source is gone (a deleted file).
    Removed,
}

/// What a source has said so far: its valid objects by key (first definition wins), as a
/// source keeps it to compute its next [`SourceUpdate`].
#[derive(Debug, Clone, Default)]
pub struct SourceContent {
    objects: HashMap<ObjectKey, Loaded>,
}

impl SourceContent {
    /// The update that turns `self` into `parsed` (a whole new parse of the source), and the
    /// new content. Unchanged objects (same allocation, or equal with the same origin) are
    /// not repeated.
    pub fn update_to(&self, parsed: &ParsedSource) -> (SourceUpdate, SourceContent) {
        let mut next: HashMap<ObjectKey, Loaded> = HashMap::with_capacity(parsed.objects.len());
        let mut duplicates = Vec::new();
        let mut upserts = Vec::new();
        for l in &parsed.objects {
            let key = l.object.key();
            if next.contains_key(&key) {
                duplicates.push(l.clone());
                continue;
            }
            let same = self
                .objects
                .get(&key)
                .is_some_and(|old| old.same_object(l) && old.origin == l.origin);
            if !same {
                upserts.push(l.clone());
            }
            next.insert(key, l.clone());
        }
        let deletes = self
            .objects
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        (
            SourceUpdate {
                source: Arc::from(parsed.source.as_str()),
                change: SourceChange::Update {
                    upserts,
                    deletes,
                    errors: parsed.errors.clone(),
                    duplicates,
                },
            },
            SourceContent { objects: next },
        )
    }

    /// Whether the source defines `key`.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.objects.contains_key(key)
    }

    /// Applies a delta computed elsewhere (documents known to define distinct keys).
    pub(crate) fn apply(&mut self, upserts: &[Loaded], deletes: &[ObjectKey]) {
        for k in deletes {
            self.objects.remove(k);
        }
        for l in upserts {
            self.objects.insert(l.object.key(), l.clone());
        }
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when the source defines nothing.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// One source as the store keeps it.
#[derive(Debug, Default)]
struct SourceState {
    objects: HashMap<ObjectKey, Arc<Loaded>>,
    errors: Vec<ConfigError>,
    /// Later definitions of keys in `objects`.
    duplicates: Vec<Loaded>,
    /// Keys named by failed documents.
    claimed_keys: BTreeSet<ObjectKey>,
    /// Names of documents with a misspelt kind.
    claimed_names: BTreeSet<String>,
    /// A document could not be identified at all.
    claims_all: bool,
}

/// What one [`Store::apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Every key whose object changed, in key order (origins aside).
    pub changes: Vec<(ObjectKey, Change)>,
    /// Whether the list of errors may have changed.
    pub errors_changed: bool,
}

/// The sources' contributions and the merged snapshot.
#[derive(Debug, Default)]
pub struct Store {
    opts: CheckOptions,
    snapshot: Snapshot,
    sources: BTreeMap<SourceName, SourceState>,
    /// Key → the sources defining it validly.
    defined_by: HashMap<ObjectKey, BTreeSet<SourceName>>,
    /// Keys more than one source defines (duplicates across sources).
    multi_defined: BTreeSet<ObjectKey>,
    /// Key → the sources with a failed document naming it.
    claimed_by: HashMap<ObjectKey, BTreeSet<SourceName>>,
    /// Source → keys whose current value came from it (`origin.location.source`).
    from_source: HashMap<String, HashSet<ObjectKey>>,
    /// Keys of the kinds taking part in references that are defined, claimed or present.
    reference_keys: BTreeSet<ObjectKey>,
    /// Errors of the last reference resolution.
    reference_errors: Vec<ConfigError>,
}

impl Store {
    /// An empty store.
    pub fn new(opts: CheckOptions) -> Self {
        Self {
            opts,
            ..Default::default()
        }
    }

    /// The current snapshot (cheap to clone).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Number of sources.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Applies updates from any number of sources at once.
    pub fn apply(&mut self, updates: Vec<SourceUpdate>) -> Applied {
        let mut affected: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut errors_changed = false;
        for u in updates {
            errors_changed |= self.apply_source(u, &mut affected);
        }
        // Values first, all from the snapshot as it was (the "previous" of the rules).
        let staged: Vec<(ObjectKey, Option<Arc<Loaded>>)> = affected
            .iter()
            .filter(|k| !in_references(k.kind))
            .map(|k| (k.clone(), self.value_of(k)))
            .collect();
        let reference_errors_before = self.reference_errors.clone();
        let reference_updates = self.resolve_references(&affected);
        // A new object dropped for a broken reference changes no object, but its error is
        // news all the same.
        errors_changed |= self.reference_errors != reference_errors_before;
        let mut changes = Vec::new();
        for (k, v) in staged.into_iter().chain(reference_updates) {
            if let Some(c) = self.set(&k, v) {
                changes.push((k, c));
            }
        }
        changes.sort();
        errors_changed |= !changes.is_empty();
        Applied {
            changes,
            errors_changed,
        }
    }

    /// Records one source's update; returns whether its errors changed.
    fn apply_source(&mut self, u: SourceUpdate, affected: &mut BTreeSet<ObjectKey>) -> bool {
        let name = u.source;
        let state = self.sources.entry(name.clone()).or_default();
        // What the old claims covered is affected whatever the update says.
        affected.extend(state.claimed_keys.iter().cloned());
        let claims_before = (state.claims_all, state.claimed_names.clone());
        let (upserts, deletes, errors, duplicates) = match u.change {
            SourceChange::Update {
                upserts,
                deletes,
                errors,
                duplicates,
            } => (upserts, deletes, errors, duplicates),
            SourceChange::Removed => {
                let keys: Vec<ObjectKey> = state.objects.keys().cloned().collect();
                (Vec::new(), keys, Vec::new(), Vec::new())
            }
        };
        for k in deletes {
            if state.objects.remove(&k).is_some() {
                if let Some(set) = self.defined_by.get_mut(&k) {
                    set.remove(&name);
                    match set.len() {
                        0 => {
                            self.defined_by.remove(&k);
                        }
                        1 => {
                            self.multi_defined.remove(&k);
                        }
                        _ => {}
                    }
                }
                affected.insert(k);
            }
        }
        for l in upserts {
            let k = l.object.key();
            // The same object at a new place in its file (lines moved): only its origin
            // changes. Where it is the value in force, the snapshot takes the new origin in
            // place; no rule is re-evaluated.
            // (Not for the kinds in references: their errors cite their place.)
            if let Some(old) = state.objects.get(&k)
                && Arc::ptr_eq(&old.object, &l.object)
                && !in_references(k.kind)
            {
                let old = old.clone();
                let new = Arc::new(l);
                if self
                    .snapshot
                    .get_shared(&k)
                    .is_some_and(|cur| Arc::ptr_eq(&cur, &old))
                {
                    self.snapshot.insert(k.clone(), new.clone());
                }
                state.objects.insert(k, new);
                continue;
            }
            let set = self.defined_by.entry(k.clone()).or_default();
            set.insert(name.clone());
            if set.len() > 1 {
                self.multi_defined.insert(k.clone());
            }
            state.objects.insert(k.clone(), Arc::new(l));
            affected.insert(k);
        }
        for k in &state.claimed_keys {
            if let Some(set) = self.claimed_by.get_mut(k) {
                set.remove(&name);
                if set.is_empty() {
                    self.claimed_by.remove(k);
                }
            }
        }
        let errors_changed = errors != state.errors || duplicates != state.duplicates;
        state.duplicates = duplicates;
        state.claimed_keys.clear();
        state.claimed_names.clear();
        state.claims_all = false;
        for e in &errors {
            match claim_of(e) {
                Claim::Key(k) => {
                    state.claimed_keys.insert(k);
                }
                Claim::Name(n) => {
                    state.claimed_names.insert(n);
                }
                Claim::Source => state.claims_all = true,
                Claim::None => {}
            }
        }
        state.errors = errors;
        for k in &state.claimed_keys {
            self.claimed_by
                .entry(k.clone())
                .or_default()
                .insert(name.clone());
            affected.insert(k.clone());
        }
        // Objects this source put in the snapshot, when its name or whole-source claims
        // changed (or it went): they may now be kept or dropped.
        let claims_after = (state.claims_all, state.claimed_names.clone());
        let gone =
            state.objects.is_empty() && state.errors.is_empty() && state.duplicates.is_empty();
        if (claims_before != claims_after || gone)
            && let Some(keys) = self.from_source.get(name.as_ref())
        {
            let names: BTreeSet<&String> = claims_before
                .1
                .iter()
                .chain(claims_after.1.iter())
                .collect();
            let all = claims_before.0 || claims_after.0 || gone;
            affected.extend(
                keys.iter()
                    .filter(|k| all || names.contains(&k.name))
                    .cloned(),
            );
        }
        if gone {
            self.sources.remove(&name);
        }
        for k in affected.iter() {
            if in_references(k.kind) {
                self.reference_keys.insert(k.clone());
            }
        }
        errors_changed
    }

    /// A key's value by rules 1-4, with the current snapshot as the previous version.
    fn value_of(&self, k: &ObjectKey) -> Option<Arc<Loaded>> {
        if let Some(first) = self.defined_by.get(k).and_then(|s| s.iter().next())
            && let Some(l) = self.sources.get(first).and_then(|s| s.objects.get(k))
        {
            return Some(l.clone());
        }
        let prev = self.snapshot.get_shared(k)?;
        if self.claimed_by.contains_key(k) {
            return Some(prev);
        }
        let src = self
            .sources
            .get(prev.origin.location.source.as_str())
            .filter(|s| s.claims_all || s.claimed_names.contains(&k.name));
        src.map(|_| prev)
    }

    /// Rule 5 over the reference kinds: their values by rules 1-4, then resolution against
    /// the current snapshot. Returns the values to set.
    fn resolve_references(
        &mut self,
        affected: &BTreeSet<ObjectKey>,
    ) -> Vec<(ObjectKey, Option<Arc<Loaded>>)> {
        // Unless one of those kinds changed, the last resolution stands: resolving the same
        // values again against its own result changes nothing (the merge is idempotent).
        if !affected.iter().any(|k| in_references(k.kind)) {
            return Vec::new();
        }
        let keys: Vec<ObjectKey> = self.reference_keys.iter().cloned().collect();
        let mut next: BTreeMap<ObjectKey, Arc<Loaded>> = BTreeMap::new();
        for k in &keys {
            if let Some(v) = self.value_of(k) {
                next.insert(k.clone(), v);
            }
        }
        let snapshot = &self.snapshot;
        let prev = |k: &ObjectKey| snapshot.get_shared(k);
        let passes = next.len() + keys.len();
        self.reference_errors = resolve_references(&mut next, &prev, &self.opts, passes);
        let mut out = Vec::new();
        for k in keys {
            let v = next.remove(&k);
            if v.is_none() && !self.defined_by.contains_key(&k) && !self.claimed_by.contains_key(&k)
            {
                self.reference_keys.remove(&k);
            }
            out.push((k, v));
        }
        // Referents restored from the previous version that were not in the key set.
        out.extend(next.into_iter().map(|(k, v)| (k, Some(v))));
        out
    }

    /// Sets one key in the snapshot; the kind of change, if the object changed.
    fn set(&mut self, k: &ObjectKey, v: Option<Arc<Loaded>>) -> Option<Change> {
        let old = self.snapshot.get_shared(k);
        if let Some(o) = &old
            && let Some(set) = self.from_source.get_mut(&o.origin.location.source)
        {
            set.remove(k);
            if set.is_empty() {
                self.from_source.remove(&o.origin.location.source);
            }
        }
        let change = match (&old, &v) {
            (None, None) => None,
            (None, Some(_)) => Some(Change::Added),
            (Some(_), None) => Some(Change::Removed),
            (Some(o), Some(n)) => (!o.same_object(n)).then_some(Change::Updated),
        };
        match v {
            Some(n) => {
                self.from_source
                    .entry(n.origin.location.source.clone())
                    .or_default()
                    .insert(k.clone());
                // Same object, new origin (moved lines or files): stored, not a change.
                let same = old.as_ref().is_some_and(|o| Arc::ptr_eq(o, &n));
                if !same {
                    self.snapshot.insert(k.clone(), n);
                }
            }
            None => {
                self.snapshot.remove(k);
            }
        }
        change
    }

    /// Every current error: duplicates across sources, each source's own errors (in source
    /// order, with `kept_previous` set where the previous version is in force), then broken
    /// references.
    pub fn errors(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        // Duplicates across sources, in (source, document) order.
        let mut dups: Vec<(&SourceName, ConfigError)> = Vec::new();
        for k in &self.multi_defined {
            let Some(srcs) = self.defined_by.get(k) else {
                continue;
            };
            let mut it = srcs.iter();
            let Some(first) = it
                .next()
                .and_then(|s| self.sources.get(s))
                .and_then(|s| s.objects.get(k))
            else {
                continue;
            };
            for s in it {
                if let Some(l) = self.sources.get(s).and_then(|st| st.objects.get(k)) {
                    dups.push((s, duplicate(k, l, first)));
                }
            }
        }
        // Later definitions within a source: duplicates of the overall winner.
        for (name, st) in &self.sources {
            for l in &st.duplicates {
                let k = l.object.key();
                let first = self
                    .defined_by
                    .get(&k)
                    .and_then(|s| s.iter().next())
                    .and_then(|s| self.sources.get(s))
                    .and_then(|s| s.objects.get(&k));
                if let Some(first) = first {
                    dups.push((name, duplicate(&k, l, first)));
                }
            }
        }
        dups.sort_by(|a, b| {
            (a.0, a.1.location.document, &a.1.location).cmp(&(
                b.0,
                b.1.location.document,
                &b.1.location,
            ))
        });
        out.extend(dups.into_iter().map(|(_, e)| e));
        // Each source's errors, with the flags of the merge: the first claim that restores a
        // previous version says so.
        let mut restored: HashSet<&ObjectKey> = HashSet::new();
        for (name, st) in &self.sources {
            let from = self.from_source.get(name.as_ref());
            let mut wholesale = false;
            for e in &st.errors {
                let mut e = e.clone();
                match claim_of(&e) {
                    Claim::Key(k) => {
                        if self.restored(&k)
                            && let Some(key) = self.snapshot.key(&k)
                        {
                            e.kept_previous = restored.insert(key);
                        }
                    }
                    Claim::Name(n) => {
                        let mut any = false;
                        for k in from.into_iter().flatten() {
                            if k.name == n && self.restored(k) && restored.insert(k) {
                                any = true;
                            }
                        }
                        e.kept_previous = any;
                    }
                    // Applied after the source's other errors, as the merge does.
                    Claim::Source => wholesale = true,
                    Claim::None => {}
                }
                out.push(e);
            }
            if wholesale {
                for k in from.into_iter().flatten() {
                    if self.restored(k) {
                        restored.insert(k);
                    }
                }
            }
        }
        out.extend(self.reference_errors.iter().cloned());
        out
    }

    /// Whether `k`'s current value is a previous version kept by a claim (no source
    /// defines it).
    fn restored(&self, k: &ObjectKey) -> bool {
        !self.defined_by.contains_key(k) && self.snapshot.get(k).is_some()
    }

    /// Where the object `k` was read from, if it is loaded.
    pub fn location(&self, k: &ObjectKey) -> Option<&Location> {
        self.snapshot.get(k).map(|l| &l.origin.location)
    }
}
