//! Property: whatever mix of edits, corruptions and deletions hits a set of files,
//! the merge keeps every object whose new version is bad at its last good version,
//! applies every good edit, and drops what was deleted from a parseable file.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rackd_model::{CheckOptions, ParsedSource, Snapshot, parse_documents};

#[derive(Debug, Clone, Copy)]
enum Edit {
    Keep,
    Change,
    InvalidValue,
    BrokenYaml,
    Delete,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Keep),
        Just(Edit::Change),
        Just(Edit::InvalidValue),
        Just(Edit::BrokenYaml),
        Just(Edit::Delete),
    ]
}

fn pool(name: &str, third: u32) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: {name}\nspec:\n  blocks:\n  - cidr: 10.0.{third}.0/24\n"
    )
}

fn cidr(s: &Snapshot, name: &str) -> Option<String> {
    s.lb_ip_pools()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.spec.blocks[0].cidr.clone())
}

proptest! {
    #[test]
    fn last_good_merge(edits in proptest::collection::vec(edit(), 1..12)) {
        // Objects spread over three files, round-robin.
        let files = 3;
        let names: Vec<String> = (0..edits.len()).map(|i| format!("p{i}")).collect();
        let text = |f: usize, version: &dyn Fn(usize) -> Option<String>| {
            (0..names.len()).filter(|i| i % files == f).filter_map(version).collect::<Vec<_>>().join("---\n")
        };
        let before: Vec<ParsedSource> = (0..files)
            .map(|f| parse_documents(&format!("f{f}.yaml"), &text(f, &|i| Some(pool(&names[i], 1)))))
            .collect();
        let first = Snapshot::build(&before, &CheckOptions::default());
        prop_assert!(first.errors.is_empty());

        let after: Vec<ParsedSource> = (0..files)
            .map(|f| {
                let t = text(f, &|i| match edits[i] {
                    Edit::Keep => Some(pool(&names[i], 1)),
                    Edit::Change => Some(pool(&names[i], 2)),
                    Edit::InvalidValue => Some(pool(&names[i], 999)),
                    Edit::BrokenYaml => Some("kind: [\n".to_owned()),
                    Edit::Delete => None,
                });
                parse_documents(&format!("f{f}.yaml"), &t)
            })
            .collect();
        let next = Snapshot::merge(&first.snapshot, &after, &CheckOptions::default());

        let broken_file: Vec<bool> = (0..files)
            .map(|f| (0..names.len()).any(|i| i % files == f && matches!(edits[i], Edit::BrokenYaml)))
            .collect();
        for (i, n) in names.iter().enumerate() {
            let got = cidr(&next.snapshot, n);
            let old = Some("10.0.1.0/24".to_owned());
            match edits[i] {
                Edit::Keep | Edit::InvalidValue | Edit::BrokenYaml => prop_assert_eq!(got, old, "{}", n),
                Edit::Change => prop_assert_eq!(got, Some("10.0.2.0/24".to_owned()), "{}", n),
                // A deletion waits while its file has an unidentifiable document.
                Edit::Delete if broken_file[i % files] => prop_assert_eq!(got, old, "{}", n),
                Edit::Delete => prop_assert_eq!(got, None, "{}", n),
            }
        }
        let bad = edits.iter().filter(|e| matches!(e, Edit::InvalidValue | Edit::BrokenYaml)).count();
        prop_assert_eq!(next.errors.len(), bad);
        // Merging the same input again changes nothing.
        let again = Snapshot::merge(&next.snapshot, &after, &CheckOptions::default());
        prop_assert_eq!(again.snapshot, next.snapshot);
    }
}
