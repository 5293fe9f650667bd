//! The journal decoder must reject any byte string with a typed error or accept a prefix of
//! whole lines, never panic. Whatever it accepts must describe the same records when cut at
//! its own line ends, re-encode to the same records, and replay (twice or once, alike) onto a
//! state that restores.
#![no_main]

use lbipam::{Journal, JournalRecord, LbIpam, PersistedState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(journal) = Journal::decode(data) else {
        return;
    };
    assert!(journal.valid_len <= data.len());
    // Torn exactly when something after the last good line was dropped.
    assert_eq!(journal.torn, journal.valid_len < data.len());
    // The kept bytes are whole lines that decode to the same records, untorn.
    let kept = Journal::decode(&data[..journal.valid_len]).expect("kept lines decode");
    assert!(!kept.torn);
    assert_eq!(kept.records, journal.records);
    // A cut anywhere before is a prefix.
    let cut = journal.valid_len / 2;
    let part = Journal::decode(&data[..cut]).expect("a truncation of good lines decodes");
    assert!(part.records.len() <= journal.records.len());
    assert_eq!(part.records[..], journal.records[..part.records.len()]);
    // Our own encoding of the records reads back the same.
    let mut again = Journal::header();
    again.extend(JournalRecord::encode_lines(&journal.records));
    let again = Journal::decode(&again).expect("own encoding decodes");
    assert!(!again.torn);
    assert_eq!(again.records, journal.records);
    // Replay: one by one equals in bulk, twice equals once, and the result is a valid state.
    let mut bulk = PersistedState::empty();
    bulk.apply_all(&journal.records);
    let mut single = PersistedState::empty();
    for r in &journal.records {
        single.apply(r);
    }
    assert_eq!(single, bulk);
    let mut twice = bulk.clone();
    twice.apply_all(&journal.records);
    assert_eq!(twice, bulk);
    let ipam = LbIpam::restore(&bulk).expect("a replayed journal restores");
    // Snapshots list pools by sequence number; a record need not.
    let mut expected = bulk;
    expected.pools.sort_by_key(|p| p.seq);
    assert_eq!(ipam.snapshot(), expected);
});
