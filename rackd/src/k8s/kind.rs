//! One watched kind as a configuration source: watch events in, per-object changes out.
//! Pure (no client, no clock), so relists, errors and deletes are tested without a server.
//!
//! The rule that matters: **a relist never looks like a mass deletion.** Between the
//! watcher's `Init` and `InitDone` (a first list, a `410 Gone`, a watch restarted after the
//! API server went away for minutes) listed objects are only buffered; the last good content
//! stays in force until the list is complete, and then only the difference is handed on: the
//! objects that changed, and the keys that really are gone. A list that fails halfway never
//! reaches `InitDone`, so it changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rackd_model::{ConfigError, Kind, Loaded, ObjectKey, SourceChange, SourceUpdate};
use serde_json::Value;

/// A watch event, with the object as the API served it.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// A (re)list starts.
    Init,
    /// An object of the list.
    InitApply(Value),
    /// The list is complete.
    InitDone,
    /// Added or modified.
    Apply(Value),
    /// Deleted.
    Delete(Value),
}

/// The key of an object as served, even when the object itself is unusable.
fn key_of(kind: Kind, v: &Value) -> Option<ObjectKey> {
    let meta = v.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_owned();
    let namespace = kind.namespaced().then(|| {
        meta.get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned()
    });
    Some(ObjectKey {
        kind,
        namespace,
        name,
    })
}

/// What one object is now: loaded, or the error that stops it from loading.
type Entry = Result<Loaded, Box<ConfigError>>;

/// One kind's content as a source of the store.
#[derive(Debug)]
pub struct KindSource {
    kind: Kind,
    name: Arc<str>,
    /// The content in force: valid objects.
    objects: HashMap<ObjectKey, Loaded>,
    /// Objects whose current version cannot be used (their last good version, if any, stays
    /// in `objects`).
    errors: BTreeMap<ObjectKey, ConfigError>,
    /// Objects of a list in progress.
    relist: Option<HashMap<ObjectKey, Entry>>,
    /// A list has completed at least once.
    synced: bool,
}

impl KindSource {
    /// A source for `kind`, named `name` in the store (its order among sources decides
    /// duplicates).
    pub fn new(kind: Kind, name: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            name: name.into(),
            objects: HashMap::new(),
            errors: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The store's name for this source.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A first list has completed (or the kind is known not to be served).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Valid objects in force.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether no valid object is in force.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The kind is not served by this API server (no CRD installed): it is synced and empty.
    /// Objects seen before stay (a CRD being reinstalled is no reason to withdraw).
    pub fn not_served(&mut self) {
        self.synced = true;
        self.relist = None;
    }

    fn load(&self, v: Value) -> Option<(ObjectKey, Entry)> {
        let key = key_of(self.kind, &v)?;
        Some((key, rackd_model::load_api_object(&self.name, self.kind, v)))
    }

    /// Applies one event; returns the change for the store, if anything changed.
    pub fn apply(&mut self, ev: WatchEvent) -> Option<SourceUpdate> {
        match ev {
            WatchEvent::Init => {
                self.relist = Some(HashMap::new());
                None
            }
            WatchEvent::InitApply(v) => {
                let (key, entry) = self.load(v)?;
                // An InitApply outside a list (not expected from the watcher) starts one, so
                // nothing is ever deleted on the strength of a partial list.
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key, entry);
                None
            }
            WatchEvent::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                self.synced = true;
                self.replace(listed)
            }
            WatchEvent::Apply(v) => {
                let (key, entry) = self.load(v)?;
                if let Some(r) = &mut self.relist {
                    // Applied during a list: part of the list's result.
                    r.insert(key, entry);
                    return None;
                }
                self.upsert(key, entry)
            }
            WatchEvent::Delete(v) => {
                let key = key_of(self.kind, &v)?;
                if let Some(r) = &mut self.relist {
                    r.remove(&key);
                    return None;
                }
                let had = self.objects.remove(&key).is_some();
                let had_error = self.errors.remove(&key).is_some();
                (had || had_error)
                    .then(|| self.update(Vec::new(), if had { vec![key] } else { Vec::new() }))
            }
        }
    }

    fn upsert(&mut self, key: ObjectKey, entry: Entry) -> Option<SourceUpdate> {
        match entry {
            Ok(l) => {
                let had_error = self.errors.remove(&key).is_some();
                let same = self.objects.get(&key).is_some_and(|o| o.same_object(&l));
                if same && !had_error {
                    return None;
                }
                let upserts = if same { Vec::new() } else { vec![l.clone()] };
                self.objects.insert(key, l);
                Some(self.update(upserts, Vec::new()))
            }
            Err(e) => {
                if self.errors.get(&key) == Some(&*e) {
                    return None;
                }
                // The last good version (if any) stays in force; the error claims the key.
                self.errors.insert(key, *e);
                Some(self.update(Vec::new(), Vec::new()))
            }
        }
    }

    /// Replaces the content with a complete list: only differences are handed on.
    fn replace(&mut self, listed: HashMap<ObjectKey, Entry>) -> Option<SourceUpdate> {
        let mut upserts = Vec::new();
        let mut errors_changed = false;
        let deletes: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| !listed.contains_key(*k))
            .cloned()
            .collect();
        for k in &deletes {
            self.objects.remove(k);
        }
        let gone_errors: Vec<ObjectKey> = self
            .errors
            .keys()
            .filter(|k| !listed.contains_key(*k))
            .cloned()
            .collect();
        for k in gone_errors {
            self.errors.remove(&k);
            errors_changed = true;
        }
        for (key, entry) in listed {
            match entry {
                Ok(l) => {
                    errors_changed |= self.errors.remove(&key).is_some();
                    if !self.objects.get(&key).is_some_and(|o| o.same_object(&l)) {
                        upserts.push(l.clone());
                        self.objects.insert(key, l);
                    }
                }
                Err(e) => {
                    if self.errors.get(&key) != Some(&*e) {
                        self.errors.insert(key, *e);
                        errors_changed = true;
                    }
                }
            }
        }
        (!upserts.is_empty() || !deletes.is_empty() || errors_changed)
            .then(|| self.update(upserts, deletes))
    }

    fn update(&self, upserts: Vec<Loaded>, deletes: Vec<ObjectKey>) -> SourceUpdate {
        SourceUpdate {
            source: self.name.clone(),
            change: SourceChange::Update {
                upserts,
                deletes,
                errors: self.errors.values().cloned().collect(),
                duplicates: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_model::{CheckOptions, Store};
    use serde_json::json;

    fn svc(name: &str, port: u16) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}})
    }

    fn bad_svc(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"ports": "eighty"}})
    }

    fn counts(u: &SourceUpdate) -> (usize, usize, usize) {
        match &u.change {
            SourceChange::Update {
                upserts,
                deletes,
                errors,
                ..
            } => (upserts.len(), deletes.len(), errors.len()),
            SourceChange::Removed => panic!("removed"),
        }
    }

    fn list(src: &mut KindSource, objs: Vec<Value>) -> Option<SourceUpdate> {
        assert!(src.apply(WatchEvent::Init).is_none());
        for o in objs {
            assert!(src.apply(WatchEvent::InitApply(o)).is_none(), "buffered");
        }
        src.apply(WatchEvent::InitDone)
    }

    #[test]
    fn first_list_then_events() {
        let mut s = KindSource::new(Kind::Service, "k8s:Service");
        assert!(!s.synced());
        let u = list(&mut s, vec![svc("a", 80), svc("b", 80)]).unwrap();
        assert!(s.synced());
        assert_eq!(counts(&u), (2, 0, 0));
        assert_eq!(
            counts(&s.apply(WatchEvent::Apply(svc("a", 81))).unwrap()),
            (1, 0, 0)
        );
        assert!(
            s.apply(WatchEvent::Apply(svc("a", 81))).is_none(),
            "unchanged"
        );
        assert_eq!(
            counts(&s.apply(WatchEvent::Delete(svc("b", 80))).unwrap()),
            (0, 1, 0)
        );
        assert!(
            s.apply(WatchEvent::Delete(svc("b", 80))).is_none(),
            "already gone"
        );
        assert_eq!(s.len(), 1);
    }

    /// A relist (410 Gone, a restarted watch) with the same objects changes nothing, and one
    /// that misses an object deletes exactly that one, only once the list is complete.
    #[test]
    fn a_relist_is_not_a_mass_deletion() {
        let mut s = KindSource::new(Kind::Service, "k8s:Service");
        let all: Vec<Value> = (0..100).map(|i| svc(&format!("s{i}"), 80)).collect();
        list(&mut s, all.clone()).unwrap();
        assert!(
            list(&mut s, all.clone()).is_none(),
            "same list: no change at all"
        );

        // A list that fails halfway (Init, some objects, then the stream errors and starts
        // over): nothing is handed on until a list completes.
        assert!(s.apply(WatchEvent::Init).is_none());
        for o in all.iter().take(10).cloned() {
            assert!(s.apply(WatchEvent::InitApply(o)).is_none());
        }
        assert_eq!(s.len(), 100, "the last good content stays during a list");
        let u = list(&mut s, all[1..].to_vec()).unwrap();
        assert_eq!(counts(&u), (0, 1, 0), "only the missing object is deleted");
    }

    #[test]
    fn an_unusable_version_keeps_the_last_good_one_and_is_an_error() {
        let mut s = KindSource::new(Kind::Service, "k8s:Service");
        list(&mut s, vec![svc("a", 80)]).unwrap();
        let u = s.apply(WatchEvent::Apply(bad_svc("a"))).unwrap();
        assert_eq!(counts(&u), (0, 0, 1));
        assert!(
            s.apply(WatchEvent::Apply(bad_svc("a"))).is_none(),
            "same error again"
        );
        assert_eq!(s.len(), 1);

        // In the store: the previous version is kept, marked by the error.
        let mut store = Store::new(CheckOptions::default());
        let mut s2 = KindSource::new(Kind::Service, "k8s:Service");
        store.apply(vec![list(&mut s2, vec![svc("a", 80)]).unwrap()]);
        store.apply(vec![s2.apply(WatchEvent::Apply(bad_svc("a"))).unwrap()]);
        assert_eq!(store.snapshot().len(), 1);
        assert_eq!(store.errors().len(), 1);
        // Fixed: the error clears.
        let u = s2.apply(WatchEvent::Apply(svc("a", 82))).unwrap();
        assert_eq!(counts(&u), (1, 0, 0));
        store.apply(vec![u]);
        assert!(store.errors().is_empty());

        // A relist without the broken object drops its error too.
        s.apply(WatchEvent::Apply(bad_svc("z")));
        let u = list(&mut s, vec![svc("a", 80)]).unwrap();
        assert_eq!(
            counts(&u),
            (0, 0, 0),
            "both errors gone (z is not listed, a is valid again), a unchanged"
        );
    }

    #[test]
    fn events_during_a_list_belong_to_it() {
        let mut s = KindSource::new(Kind::Service, "k8s:Service");
        list(&mut s, vec![svc("a", 80), svc("b", 80)]).unwrap();
        assert!(s.apply(WatchEvent::Init).is_none());
        assert!(s.apply(WatchEvent::InitApply(svc("a", 80))).is_none());
        assert!(s.apply(WatchEvent::Apply(svc("c", 80))).is_none());
        assert!(s.apply(WatchEvent::Delete(svc("a", 80))).is_none());
        let u = s.apply(WatchEvent::InitDone).unwrap();
        assert_eq!(counts(&u), (1, 2, 0), "c added; a and b gone");
    }

    #[test]
    fn objects_without_a_name_are_ignored() {
        let mut s = KindSource::new(Kind::Node, "k8s:Node");
        assert!(
            s.apply(WatchEvent::Apply(json!({"metadata": {}})))
                .is_none()
        );
        assert!(s.apply(WatchEvent::Apply(json!(null))).is_none());
        assert!(s.apply(WatchEvent::Delete(json!([1, 2]))).is_none());
    }

    #[test]
    fn a_kind_not_served_is_synced_and_keeps_what_it_had() {
        let mut s = KindSource::new(Kind::Service, "k8s:Service");
        list(&mut s, vec![svc("a", 80)]).unwrap();
        s.apply(WatchEvent::Init);
        s.not_served();
        assert!(s.synced());
        assert_eq!(s.len(), 1);
    }
}
