//! The exact-prefix index of a [`Policy`]: first-match evaluation in O(1) for the export
//! tables the daemon renders (one exact statement per advertised prefix), and in-place
//! patching of such a table and its index together ([`PolicyIndex::apply`]).

use ipnet::IpNet;

use super::{Actions, Policy, PrefixMatch, Statement, Verdict};

/// A lookup structure for [`Policy::evaluate`] that stays O(1) when a policy has thousands of
/// exact-prefix statements (the daemon renders one statement per advertised Service, as
/// Cilium does; a linear first-match scan made a 27,000-Service export quadratic).
///
/// Statements whose prefixes are all exact go into a hash map (prefix → first statement);
/// the others (ranges, match-all) are checked in order, but only those that come before the
/// exact hit, so first-match-wins semantics are kept exactly.
///
/// When the policy is an exact-prefix table (see [`NotExact`] for what that excludes), the
/// policy and its index can be changed together in place, one prefix at a time
/// ([`PolicyIndex::apply`]), instead of rebuilding the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyIndex {
    exact: std::collections::HashMap<IpNet, usize>,
    others: Vec<usize>,
    /// `None`: the policy is an exact-prefix table; else the first reason it is not.
    not_exact: Option<NotExact>,
}

impl PolicyIndex {
    /// Index `policy`. Rebuild it whenever the policy changes other than through
    /// [`PolicyIndex::apply`].
    pub fn new(policy: &Policy) -> Self {
        let mut idx = PolicyIndex::default();
        let mut not_exact = (policy.default_accept).then_some(NotExact::DefaultAccept);
        for (i, st) in policy.statements.iter().enumerate() {
            let all_exact = !st.prefixes.is_empty()
                && st.prefixes.iter().all(|m| m.ge.is_none() && m.le.is_none());
            if all_exact {
                if st.prefixes.len() != 1 && not_exact.is_none() {
                    not_exact = Some(NotExact::NotOnePrefix { statement: i });
                }
                for m in &st.prefixes {
                    match idx.exact.entry(m.prefix) {
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(i);
                        }
                        std::collections::hash_map::Entry::Occupied(o) => {
                            if not_exact.is_none() {
                                not_exact = Some(NotExact::Duplicate {
                                    prefix: m.prefix,
                                    first: *o.get(),
                                    second: i,
                                });
                            }
                        }
                    }
                }
            } else {
                if not_exact.is_none() {
                    not_exact = Some(if st.prefixes.len() == 1 {
                        NotExact::Range { statement: i }
                    } else {
                        NotExact::NotOnePrefix { statement: i }
                    });
                }
                idx.others.push(i);
            }
        }
        idx.not_exact = not_exact;
        idx
    }

    /// Same answer as `policy.evaluate(prefix)`, for the policy this index was built from.
    pub fn evaluate(&self, policy: &Policy, prefix: &IpNet) -> Verdict {
        let hit = self.exact.get(prefix).copied();
        let first_other = self
            .others
            .iter()
            .copied()
            .take_while(|&i| hit.is_none_or(|h| i < h))
            .find(|&i| {
                policy.statements.get(i).is_some_and(|s| {
                    s.prefixes.is_empty() || s.prefixes.iter().any(|m| m.matches(prefix))
                })
            });
        match first_other
            .or(hit)
            .and_then(|i| policy.statements.get(i).map(|s| (i, s)))
        {
            Some((_, s)) if s.actions.reject => Verdict::Reject,
            Some((i, _)) => Verdict::Accept(Some(i)),
            None if policy.default_accept => Verdict::Accept(None),
            None => Verdict::Reject,
        }
    }

    /// `Ok` when the indexed policy is an exact-prefix table, else the first reason it is
    /// not. O(1): decided when the index was built, and kept by [`PolicyIndex::apply`].
    pub fn exact_table(&self) -> Result<(), NotExact> {
        match &self.not_exact {
            None => Ok(()),
            Some(r) => Err(r.clone()),
        }
    }

    /// The statement that matches `prefix` exactly (in an exact-prefix table, the only one
    /// that matches it at all).
    pub fn exact_statement(&self, prefix: &IpNet) -> Option<usize> {
        self.exact.get(prefix).copied()
    }

    /// Changes the exact-prefix table `policy` (the one this index was built from) and this
    /// index together, in O(1) per entry of `patch`, entries applied in order:
    /// `Some(actions)` replaces the actions of the prefix's statement, or appends a statement
    /// for it; `None` removes its statement, and the last statement takes the freed place
    /// (`Vec::swap_remove`: order does not matter in an exact-prefix table, and the other
    /// statements keep their indexes).
    ///
    /// Returns the prefixes whose statement a removal moved to another index, each once
    /// (what refers to statements by index, such as an Adj-RIB-Out, must follow); any other
    /// prefix whose statement has another index now is one the patch names. If the policy
    /// is not an exact-prefix table nothing is changed and the reason is returned.
    pub fn apply(
        &mut self,
        policy: &mut Policy,
        patch: ExportPatch,
    ) -> Result<Vec<IpNet>, NotExact> {
        self.exact_table()?;
        let mut moved: Vec<IpNet> = patch
            .set
            .into_iter()
            .filter_map(|(prefix, actions)| self.set(policy, prefix, actions))
            .collect();
        moved.sort_unstable();
        moved.dedup();
        // A prefix that moved and was removed later in the same patch has no statement.
        moved.retain(|m| self.exact.contains_key(m));
        Ok(moved)
    }

    /// One entry of [`PolicyIndex::apply`]; returns the prefix whose statement moved.
    fn set(
        &mut self,
        policy: &mut Policy,
        prefix: IpNet,
        actions: Option<Actions>,
    ) -> Option<IpNet> {
        match (actions, self.exact.get(&prefix).copied()) {
            (Some(actions), Some(i)) => {
                if let Some(st) = policy.statements.get_mut(i) {
                    st.actions = actions;
                }
                None
            }
            (Some(actions), None) => {
                self.exact.insert(prefix, policy.statements.len());
                policy.statements.push(Statement {
                    prefixes: vec![PrefixMatch::exact(prefix)],
                    actions,
                });
                None
            }
            (None, Some(i)) => {
                self.exact.remove(&prefix);
                if i >= policy.statements.len() {
                    return None;
                }
                policy.statements.swap_remove(i);
                let last = policy.statements.get(i)?.prefixes.first()?.prefix;
                self.exact.insert(last, i);
                Some(last)
            }
            (None, None) => None,
        }
    }
}

/// Exact-prefix export decisions to change on one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportPatch {
    /// Per prefix: the actions of its export statement, or `None` to remove it.
    pub set: Vec<(IpNet, Option<Actions>)>,
}

/// Why a policy is not an exact-prefix table, the only kind that can be patched in place.
/// An exact-prefix table rejects what it does not list (`default_accept: false`), and each
/// of its statements matches exactly one prefix, exactly (no `ge`/`le`), no two statements
/// the same prefix; so at most one statement applies to a prefix and their order does not
/// matter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotExact {
    #[error("unlisted prefixes are accepted (default_accept)")]
    DefaultAccept,
    #[error("statement {statement} does not match exactly one prefix")]
    NotOnePrefix { statement: usize },
    #[error("statement {statement} matches a range of prefixes (ge/le)")]
    Range { statement: usize },
    #[error("statements {first} and {second} both match {prefix}")]
    Duplicate {
        prefix: IpNet,
        first: usize,
        second: usize,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn index_agrees_with_linear_evaluation() {
        let p4 = |s: &str| -> IpNet { s.parse().unwrap() };
        let pol = Policy {
            statements: vec![
                Statement {
                    prefixes: vec![PrefixMatch::exact(p4("10.0.0.1/32"))],
                    actions: Actions {
                        reject: true,
                        ..Default::default()
                    },
                },
                Statement {
                    prefixes: vec![PrefixMatch::orlonger(p4("10.0.0.0/24"))],
                    actions: Actions::default(),
                },
                Statement {
                    prefixes: vec![
                        PrefixMatch::exact(p4("10.0.0.2/32")),
                        PrefixMatch::exact(p4("10.9.0.0/16")),
                    ],
                    actions: Actions {
                        local_pref: Some(7),
                        ..Default::default()
                    },
                },
                Statement {
                    prefixes: vec![],
                    actions: Actions {
                        med: Some(1),
                        ..Default::default()
                    },
                },
                Statement {
                    prefixes: vec![PrefixMatch::exact(p4("192.0.2.0/24"))],
                    actions: Actions::default(),
                },
            ],
            default_accept: false,
        };
        let idx = PolicyIndex::new(&pol);
        for p in [
            "10.0.0.1/32",
            "10.0.0.2/32",
            "10.0.0.0/24",
            "10.9.0.0/16",
            "192.0.2.0/24",
            "172.16.0.0/12",
            "2001:db8::/32",
        ] {
            let p = p4(p);
            assert_eq!(idx.evaluate(&pol, &p), pol.evaluate(&p), "{p}");
        }
        let empty = Policy::reject_all();
        assert_eq!(
            PolicyIndex::new(&empty).evaluate(&empty, &p4("10.0.0.0/8")),
            Verdict::Reject
        );
    }

    fn tag(c: u32) -> Actions {
        Actions {
            add_communities: vec![c],
            ..Default::default()
        }
    }

    fn table(entries: &[(&str, Actions)]) -> Policy {
        Policy {
            statements: entries
                .iter()
                .map(|(prefix, actions)| Statement {
                    prefixes: vec![PrefixMatch::exact(p(prefix))],
                    actions: actions.clone(),
                })
                .collect(),
            default_accept: false,
        }
    }

    /// Each way a policy can fail to be an exact-prefix table is named, and such a policy is
    /// left alone by `apply`.
    #[test]
    fn not_exact_tables_are_named_and_not_patched() {
        let exact = table(&[("10.0.0.0/24", tag(1)), ("2001:db8::/32", tag(2))]);
        assert_eq!(PolicyIndex::new(&exact).exact_table(), Ok(()));
        assert_eq!(
            PolicyIndex::new(&Policy::reject_all()).exact_table(),
            Ok(())
        );
        let with = |f: &dyn Fn(&mut Policy)| {
            let mut pol = exact.clone();
            f(&mut pol);
            pol
        };
        let cases = [
            (
                with(&|pol| pol.default_accept = true),
                NotExact::DefaultAccept,
            ),
            (Policy::accept_all(), NotExact::DefaultAccept),
            (
                with(&|pol| pol.statements[1].prefixes.clear()),
                NotExact::NotOnePrefix { statement: 1 },
            ),
            (
                with(&|pol| {
                    pol.statements[0]
                        .prefixes
                        .push(PrefixMatch::exact(p("10.9.0.0/16")))
                }),
                NotExact::NotOnePrefix { statement: 0 },
            ),
            (
                with(&|pol| pol.statements[1].prefixes[0].le = Some(48)),
                NotExact::Range { statement: 1 },
            ),
            (
                with(&|pol| pol.statements[1].prefixes[0].ge = Some(32)),
                NotExact::Range { statement: 1 },
            ),
            (
                with(&|pol| pol.statements.push(pol.statements[0].clone())),
                NotExact::Duplicate {
                    prefix: p("10.0.0.0/24"),
                    first: 0,
                    second: 2,
                },
            ),
        ];
        for (pol, why) in cases {
            let mut idx = PolicyIndex::new(&pol);
            assert_eq!(idx.exact_table(), Err(why.clone()), "{pol:?}");
            let (before, before_idx) = (pol.clone(), idx.clone());
            let mut patched = pol;
            let patch = ExportPatch {
                set: vec![(p("10.0.0.0/24"), None), (p("192.0.2.0/24"), Some(tag(3)))],
            };
            assert_eq!(idx.apply(&mut patched, patch), Err(why));
            assert_eq!((patched, idx), (before, before_idx));
        }
    }

    /// Replace in place, append, remove with the last statement moving into the gap (and
    /// reported as moved), and re-adding a removed prefix puts it last.
    #[test]
    fn apply_replaces_appends_removes_and_moves_the_last() {
        let mut pol = table(&[
            ("10.0.0.1/32", tag(1)),
            ("10.0.0.2/32", tag(2)),
            ("10.0.0.3/32", tag(3)),
        ]);
        let mut idx = PolicyIndex::new(&pol);
        let moved = idx
            .apply(
                &mut pol,
                ExportPatch {
                    set: vec![
                        (p("10.0.0.2/32"), Some(tag(22))),
                        (p("10.0.0.4/32"), Some(tag(4))),
                    ],
                },
            )
            .unwrap();
        assert!(moved.is_empty());
        assert_eq!(
            pol,
            table(&[
                ("10.0.0.1/32", tag(1)),
                ("10.0.0.2/32", tag(22)),
                ("10.0.0.3/32", tag(3)),
                ("10.0.0.4/32", tag(4)),
            ])
        );
        // Remove the first: the last takes its place; then re-add it: it comes last. The
        // swap changes no decision.
        let moved = idx
            .apply(
                &mut pol,
                ExportPatch {
                    set: vec![(p("10.0.0.1/32"), None), (p("10.0.0.1/32"), Some(tag(1)))],
                },
            )
            .unwrap();
        assert_eq!(moved, vec![p("10.0.0.4/32")]);
        assert_eq!(
            pol,
            table(&[
                ("10.0.0.4/32", tag(4)),
                ("10.0.0.2/32", tag(22)),
                ("10.0.0.3/32", tag(3)),
                ("10.0.0.1/32", tag(1)),
            ])
        );
        assert_eq!(idx, PolicyIndex::new(&pol));
        assert_eq!(
            idx.evaluate(&pol, &p("10.0.0.4/32")),
            Verdict::Accept(Some(0))
        );
        // Removing the last statement moves nothing; removing an absent prefix does nothing.
        let moved = idx
            .apply(
                &mut pol,
                ExportPatch {
                    set: vec![(p("10.0.0.1/32"), None), (p("10.9.9.9/32"), None)],
                },
            )
            .unwrap();
        assert!(moved.is_empty());
        assert_eq!(pol.statements.len(), 3);
        assert_eq!(idx, PolicyIndex::new(&pol));
        assert_eq!(idx.evaluate(&pol, &p("10.0.0.1/32")), Verdict::Reject);
    }

    mod patch_props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// A small universe so that patches often hit existing statements: 12 IPv4 and 4
        /// IPv6 prefixes, some nested (an exact table must not match the covering ones).
        fn universe() -> Vec<IpNet> {
            let mut u: Vec<IpNet> = (0..8).map(|i| p(&format!("10.0.{i}.0/24"))).collect();
            u.extend(["10.0.0.0/16", "10.0.0.0/25", "10.0.0.1/32", "0.0.0.0/0"].map(p));
            u.extend(["2001:db8::/32", "2001:db8::/48", "2001:db8:1::/48", "::/0"].map(p));
            u
        }

        fn actions() -> impl Strategy<Value = Actions> {
            (any::<bool>(), 0u32..4, proptest::option::of(0u32..3)).prop_map(|(reject, c, med)| {
                Actions {
                    reject,
                    add_communities: vec![c],
                    med,
                    ..Default::default()
                }
            })
        }

        fn entry() -> impl Strategy<Value = (usize, Option<Actions>)> {
            // Removals as likely as settings, so prefixes come and go (and come back).
            (
                0usize..16,
                prop_oneof![Just(None), actions().prop_map(Some)],
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// After every patch of a random sequence (replacements, appends, removals,
            /// re-additions, so statements change order), the patched index is the index a
            /// fresh build of the patched policy gives, answers every prefix as the linear
            /// evaluation does, the policy holds exactly the model's statements once each,
            /// and every prefix whose statement changed index is named by the patch or
            /// reported as moved.
            #[test]
            fn patched_index_equals_a_fresh_one(
                initial in proptest::collection::btree_map(0usize..16, actions(), 0..16),
                patches in proptest::collection::vec(proptest::collection::vec(entry(), 0..8), 1..8),
            ) {
                let u = universe();
                let at = |i: usize| u.get(i).copied().unwrap_or_else(|| p("192.0.2.0/24"));
                let mut model: BTreeMap<IpNet, Actions> =
                    initial.into_iter().map(|(i, a)| (at(i), a)).collect();
                let mut pol = Policy {
                    statements: model
                        .iter()
                        .map(|(prefix, a)| Statement {
                            prefixes: vec![PrefixMatch::exact(*prefix)],
                            actions: a.clone(),
                        })
                        .collect(),
                    default_accept: false,
                };
                let mut idx = PolicyIndex::new(&pol);
                let probes: Vec<IpNet> = u
                    .iter()
                    .copied()
                    .chain(["192.0.2.0/24", "10.0.0.0/8", "2001:db8:2::/48"].map(p))
                    .collect();
                for set in patches {
                    let index_of = |pol: &Policy| -> BTreeMap<IpNet, usize> {
                        pol.statements
                            .iter()
                            .enumerate()
                            .map(|(i, s)| (s.prefixes[0].prefix, i))
                            .collect()
                    };
                    let before = index_of(&pol);
                    let set: Vec<(IpNet, Option<Actions>)> =
                        set.into_iter().map(|(i, a)| (at(i), a)).collect();
                    for (prefix, a) in &set {
                        match a {
                            Some(a) => model.insert(*prefix, a.clone()),
                            None => model.remove(prefix),
                        };
                    }
                    let named: Vec<IpNet> = set.iter().map(|(prefix, _)| *prefix).collect();
                    let moved = idx.apply(&mut pol, ExportPatch { set }).unwrap();
                    prop_assert_eq!(&idx, &PolicyIndex::new(&pol));
                    prop_assert_eq!(idx.exact_table(), Ok(()));
                    for s in &pol.statements {
                        prop_assert_eq!(s.prefixes.len(), 1);
                    }
                    let now = index_of(&pol);
                    prop_assert_eq!(now.len(), pol.statements.len(), "no duplicates");
                    let got: BTreeMap<IpNet, Actions> = pol
                        .statements
                        .iter()
                        .map(|s| (s.prefixes[0].prefix, s.actions.clone()))
                        .collect();
                    prop_assert_eq!(&got, &model);
                    for (prefix, i) in &now {
                        if before.get(prefix).is_some_and(|b| b != i) {
                            prop_assert!(
                                moved.contains(prefix) || named.contains(prefix),
                                "{} moved unreported",
                                prefix
                            );
                        }
                    }
                    for m in &moved {
                        prop_assert!(now.contains_key(m));
                    }
                    let fresh = PolicyIndex::new(&pol);
                    for q in &probes {
                        let v = idx.evaluate(&pol, q);
                        prop_assert_eq!(v, pol.evaluate(q));
                        prop_assert_eq!(v, fresh.evaluate(&pol, q));
                        let want = match model.get(q) {
                            Some(a) if !a.reject => pol.actions(v).cloned(),
                            _ => None,
                        };
                        prop_assert_eq!(pol.actions(v).cloned(), want.clone());
                        prop_assert_eq!(want.as_ref(), model.get(q).filter(|a| !a.reject));
                    }
                }
            }
        }
    }
}
