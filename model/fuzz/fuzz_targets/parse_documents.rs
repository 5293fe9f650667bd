//! `parse_documents` on arbitrary text must never panic, must account for every
//! document (one object or one error each), and the snapshot built from it must
//! be stable under a merge with itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackd_model::{CheckOptions, Snapshot, parse_documents};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_documents("fuzz.yaml", &text);
    // Each document yields at most one entry; document markers bound the count.
    let docs = text.lines().count() + 1;
    assert!(parsed.objects.len() + parsed.errors.len() <= docs);
    for e in &parsed.errors {
        let _ = e.to_string();
    }
    let opts = CheckOptions::default();
    let first = Snapshot::build(std::slice::from_ref(&parsed), &opts);
    let again = Snapshot::merge(&first.snapshot, std::slice::from_ref(&parsed), &opts);
    assert_eq!(first.snapshot, again.snapshot);
});
