//! Selector results shared between services that look alike to every pool selector.
//!
//! When every selector reports the label keys it reads ([`ServiceSelector::label_keys`]), a
//! service's answer from a pool depends only on its values for the union of those keys. Services
//! are grouped into classes by those values (typically a handful of classes for 100,000
//! services), and each (class, pool) pair is evaluated once, lazily, on the first service that
//! needs it. Without key information every service is evaluated, as before.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ops::Bound;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::spec::{SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL, ServiceSelector, ServiceSpec};

/// Per reconcile: the class of each service and the memoised answers per (class, pool).
pub(crate) struct Classes {
    /// Class per service (index into the reconcile's service list); empty when disabled.
    class_of: Vec<u32>,
    /// 64-bit words per class in `known` / `value`.
    words: usize,
    /// Bit `pool` of class `c`: answer known (`known`) and what it is (`value`).
    known: Vec<Cell<u64>>,
    value: Vec<Cell<u64>>,
}

impl Classes {
    /// No classes: every (service, pool) question is evaluated (an incremental pass asks for a
    /// handful of services, where grouping would cost more than it saves).
    pub(crate) fn none() -> Self {
        Classes {
            class_of: Vec::new(),
            words: 0,
            known: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Groups `services` by their values for the keys `selectors` read. `selectors` are the pool
    /// selectors in pool-index order (`None`: the pool has none).
    pub(crate) fn build<'v, S: ServiceSelector>(
        selectors: &[Option<&S>],
        services: impl ExactSizeIterator<Item = &'v ServiceSpec>,
    ) -> Self {
        let disabled = Classes::none();
        let mut keys: Vec<&str> = Vec::new();
        for sel in selectors.iter().flatten() {
            match sel.label_keys() {
                Some(k) => keys.extend(k),
                None => return disabled,
            }
        }
        keys.sort_unstable();
        keys.dedup();
        // The name is unique per namespace: one class per service, nothing to share.
        if keys.is_empty() || keys.contains(&SERVICE_NAME_LABEL) {
            return disabled;
        }
        let hasher = DefaultHashBuilder::default();
        let width = keys.len();
        // Values of class c: projections[c * width..(c + 1) * width].
        let mut projections: Vec<Option<&'v str>> = Vec::new();
        let mut table: HashTable<u32> = HashTable::new();
        let mut scratch: Vec<Option<&'v str>> = Vec::with_capacity(width);
        let mut class_of = Vec::with_capacity(services.len());
        for spec in services {
            scratch.clear();
            scratch.extend(keys.iter().map(|&k| {
                // The synthetic label always carries the real namespace (see
                // `service_selector_labels`), whatever the service's own labels say.
                if k == SERVICE_NAMESPACE_LABEL {
                    Some(spec.key.namespace.as_str())
                } else {
                    spec.labels.get(k).map(String::as_str)
                }
            }));
            let hash = hasher.hash_one(&scratch);
            let found = table
                .find(hash, |&c| {
                    let c = c as usize;
                    projections[c * width..(c + 1) * width] == scratch[..]
                })
                .copied();
            let class = match found {
                Some(c) => c,
                None => {
                    // At most one class per service, far below u32::MAX.
                    let c = u32::try_from(projections.len() / width).unwrap_or(u32::MAX);
                    projections.extend_from_slice(&scratch);
                    let p = &projections;
                    table.insert_unique(hash, c, |&c| {
                        let c = c as usize;
                        hasher.hash_one(&p[c * width..(c + 1) * width])
                    });
                    c
                }
            };
            class_of.push(class);
        }
        let classes = projections.len() / width;
        let words = selectors.len().div_ceil(64);
        Classes {
            class_of,
            words,
            known: (0..classes * words).map(|_| Cell::new(0)).collect(),
            value: (0..classes * words).map(|_| Cell::new(0)).collect(),
        }
    }

    /// Whether pool `pool` selects service `service`, evaluating `eval` only if no service of
    /// the same class has been asked before.
    pub(crate) fn selects(&self, service: usize, pool: usize, eval: impl FnOnce() -> bool) -> bool {
        let Some(&class) = self.class_of.get(service) else {
            return eval();
        };
        let word = class as usize * self.words + pool / 64;
        let bit = 1u64 << (pool % 64);
        if self.known[word].get() & bit != 0 {
            return self.value[word].get() & bit != 0;
        }
        let answer = eval();
        self.known[word].set(self.known[word].get() | bit);
        if answer {
            self.value[word].set(self.value[word].get() | bit);
        }
        answer
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.known.len() / self.words.max(1)
    }
}

/// The label set selectors see for a service: its labels plus the synthetic namespace and name
/// labels. Used as is when the caller built it with `service_selector_labels`; otherwise
/// assembled in one scratch map reused from service to service, whose strings keep their
/// capacity, so no allocation per label (a fresh map per service cost two per label).
#[derive(Default)]
pub(crate) struct LabelSets {
    scratch: RefCell<Scratch>,
}

#[derive(Default)]
struct Scratch {
    /// The service whose labels `map` holds (or which needs none built).
    owner: Option<usize>,
    /// The owner's own labels already carry the right synthetic labels.
    prebuilt: bool,
    map: BTreeMap<String, String>,
    /// Strings of earlier services, reused.
    spare: Vec<String>,
}

impl LabelSets {
    /// Evaluates `sel` for `spec`, the service at `service` in the reconcile's list. Calls for
    /// one service come in a row (one pool scan), so one cached label set suffices.
    pub(crate) fn matches<S: ServiceSelector>(
        &self,
        service: usize,
        spec: &ServiceSpec,
        sel: &S,
    ) -> bool {
        let mut s = self.scratch.borrow_mut();
        if s.owner != Some(service) {
            s.owner = Some(service);
            s.prebuilt = prebuilt(spec);
            if !s.prebuilt {
                s.fill(spec);
            }
        }
        if s.prebuilt {
            sel.matches(&spec.labels)
        } else {
            sel.matches(&s.map)
        }
    }
}

/// Whether `spec.labels` already carries the synthetic labels with the service's own values.
fn prebuilt(spec: &ServiceSpec) -> bool {
    // "…service.name" sorts right before "…service.namespace": one tree walk.
    let mut both = spec.labels.range::<str, _>((
        Bound::Included(SERVICE_NAME_LABEL),
        Bound::Included(SERVICE_NAMESPACE_LABEL),
    ));
    matches!(
        (both.next(), both.next()),
        (Some((k1, v1)), Some((k2, v2)))
            if k1 == SERVICE_NAME_LABEL && *v1 == spec.key.name
                && k2 == SERVICE_NAMESPACE_LABEL && *v2 == spec.key.namespace
    )
}

impl Scratch {
    /// What `service_selector_labels` builds, in the reused map.
    fn fill(&mut self, spec: &ServiceSpec) {
        let Scratch { map, spare, .. } = self;
        for (k, v) in std::mem::take(map) {
            spare.push(k);
            spare.push(v);
        }
        let mut copy = |s: &str| {
            let mut t = spare.pop().unwrap_or_default();
            t.clear();
            t.push_str(s);
            t
        };
        for (k, v) in &spec.labels {
            // The real namespace and name override same-named labels.
            if k != SERVICE_NAME_LABEL && k != SERVICE_NAMESPACE_LABEL {
                map.insert(copy(k), copy(v));
            }
        }
        map.insert(copy(SERVICE_NAMESPACE_LABEL), copy(&spec.key.namespace));
        map.insert(copy(SERVICE_NAME_LABEL), copy(&spec.key.name));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::ServiceKey;

    fn svc(ns: &str, name: &str, labels: &[(&str, &str)]) -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey::new(ns, name),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    fn sel(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn classes_by_selected_keys_only() {
        let a = sel(&[("tenant", "a")]);
        let ns = sel(&[(SERVICE_NAMESPACE_LABEL, "x")]);
        let svcs = [
            svc("x", "1", &[("tenant", "a"), ("app", "1")]),
            svc("x", "2", &[("tenant", "a"), ("app", "2")]),
            // Spoofed namespace label: the real namespace decides.
            svc("y", "3", &[("tenant", "a"), (SERVICE_NAMESPACE_LABEL, "x")]),
            svc("x", "4", &[]),
        ];
        let c = Classes::build(&[Some(&a), None, Some(&ns)], svcs.iter());
        assert_eq!(c.count(), 3);
        assert_eq!(c.class_of[0], c.class_of[1]);
        assert_ne!(c.class_of[0], c.class_of[2]);
        let mut evals = 0;
        let mut ask = |s: usize, p: usize, answer: bool| {
            c.selects(s, p, || {
                evals += 1;
                answer
            })
        };
        assert!(ask(0, 0, true));
        // Same class: memoised (the closure's answer is not consulted).
        assert!(ask(1, 0, false));
        assert!(!ask(2, 2, false));
        assert!(!ask(2, 2, true));
        assert_eq!(evals, 2);
    }

    #[test]
    fn disabled_without_keys_or_with_name() {
        struct Opaque;
        impl ServiceSelector for Opaque {
            fn matches(&self, _: &BTreeMap<String, String>) -> bool {
                true
            }
        }
        let svcs = [svc("x", "1", &[])];
        let c = Classes::build(&[Some(&Opaque)], svcs.iter());
        assert!(c.class_of.is_empty());
        let name = sel(&[(SERVICE_NAME_LABEL, "1")]);
        let c = Classes::build(&[Some(&name)], svcs.iter());
        assert!(c.class_of.is_empty());
        let c = Classes::build::<Opaque>(&[None], svcs.iter());
        assert!(c.class_of.is_empty());
        // Disabled: always evaluated.
        let mut evals = 0;
        c.selects(0, 0, || {
            evals += 1;
            true
        });
        c.selects(0, 0, || {
            evals += 1;
            true
        });
        assert_eq!(evals, 2);
    }

    #[test]
    fn label_sets_match_service_selector_labels() {
        struct Exact(BTreeMap<String, String>);
        impl ServiceSelector for Exact {
            fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
                *labels == self.0
            }
        }
        let sets = LabelSets::default();
        let mut a = svc(
            "x",
            "1",
            &[("tenant", "a"), (SERVICE_NAMESPACE_LABEL, "spoof")],
        );
        let b = svc("y", "2", &[("z", "long value that grows a reused string")]);
        let c = svc("x", "3", &[]);
        for (i, s) in [&a, &b, &c, &a].into_iter().enumerate() {
            let want =
                crate::spec::service_selector_labels(&s.key.namespace, &s.key.name, &s.labels);
            assert!(sets.matches(i, s, &Exact(want.clone())), "{i}");
            // Asked again for the same service: the cached set.
            assert!(sets.matches(i, s, &Exact(want)), "{i}");
        }
        // Prebuilt labels are used as they are.
        a.labels = crate::spec::service_selector_labels("x", "1", &a.labels);
        let want = a.labels.clone();
        assert!(sets.matches(9, &a, &Exact(want)));
    }
}
