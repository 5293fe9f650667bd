//! Incremental persistence: the allocator's changes since the last snapshot, as records that
//! replay onto that snapshot ([`PersistedState::apply`]).
//!
//! A record states the *current value* of one address (or of the pool sequence table), never an
//! operation on it, so replaying is idempotent: a record replayed onto a snapshot that already
//! contains it changes nothing, and replaying a journal twice equals replaying it once.
//!
//! The file is JSON lines: a header line (`{"format":"rackd-lbipam-journal","version":1}`), then
//! one record per line. A crash can cut the last append, so [`Journal::decode`] drops an
//! incomplete or unreadable last line (reported as `torn`); anything wrong before it is
//! corruption and a typed [`StateError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::state::{PersistedAllocation, PersistedPool, PersistedState, StateError};

/// Marker in the journal's header line.
pub const JOURNAL_FORMAT: &str = "rackd-lbipam-journal";

/// The journal format version this build writes and reads.
pub const JOURNAL_VERSION: u32 = 1;

/// One change to the persisted state, as its new value. Encoded as one JSON object per line:
/// `{"op":"set","ip":"10.0.0.1","pool":"p","services":["ns/a"]}`, `{"op":"delete","ip":"10.0.0.1"}`,
/// `{"op":"pools","next_pool_seq":3,"pools":[{"name":"p","seq":0}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum JournalRecord {
    /// The address is allocated as given (replaces whatever the state had for it).
    Set(PersistedAllocation),
    /// The address is free.
    Delete {
        /// The address.
        ip: IpAddr,
    },
    /// The pool sequence table is now this (replaces the state's `next_pool_seq` and `pools`).
    Pools {
        /// Next first-seen sequence number.
        next_pool_seq: u64,
        /// Pools seen, by first-seen order.
        pools: Vec<PersistedPool>,
    },
}

impl JournalRecord {
    /// The record as one JSON line, newline included: what the daemon appends.
    pub fn encode_line(&self) -> Vec<u8> {
        // Serialising plain data structures with string keys cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Several records as consecutive lines (one append).
    pub fn encode_lines(records: &[JournalRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            // Serialising plain data structures with string keys cannot fail.
            if serde_json::to_writer(&mut out, r).is_ok() {
                out.push(b'\n');
            }
        }
        out
    }

    /// Checks the invariants a state built from it must keep (as [`PersistedState::validate`]
    /// for the same data): holders present and distinct, pools and sequence numbers unique and
    /// below `next_pool_seq`.
    pub fn validate(&self) -> Result<(), StateError> {
        match self {
            JournalRecord::Set(a) => a.validate(),
            JournalRecord::Delete { .. } => Ok(()),
            JournalRecord::Pools {
                next_pool_seq,
                pools,
            } => PersistedPool::validate_table(pools, *next_pool_seq),
        }
    }
}

/// A decoded journal file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    /// The records, in file order.
    pub records: Vec<JournalRecord>,
    /// The last line was incomplete (no newline) or unreadable, and was dropped: a crash cut
    /// the last append, whose commit was therefore never published.
    pub torn: bool,
    /// Bytes of the file that hold the header and `records` (up to and including the newline of
    /// the last good line). Truncate the file to this length before appending, or the torn
    /// line would end up in the middle and make the next start refuse the file.
    pub valid_len: usize,
}

/// The header line's content.
#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
}

/// One line as `T`: `Ok(None)` when it does not parse and is the last line (a cut append).
fn parse_line<T: serde::de::DeserializeOwned>(
    line: &[u8],
    line_no: usize,
    last: bool,
) -> Result<Option<T>, StateError> {
    match serde_json::from_slice(line) {
        Ok(v) => Ok(Some(v)),
        Err(_) if last => Ok(None),
        Err(source) => Err(StateError::JournalMalformed {
            line: line_no,
            source,
        }),
    }
}

impl Journal {
    /// The header line a journal file starts with (newline included).
    pub fn header() -> Vec<u8> {
        let mut line = serde_json::to_vec(&Header {
            format: JOURNAL_FORMAT.to_owned(),
            version: JOURNAL_VERSION,
        })
        .unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Decodes a journal file. Empty input is an empty journal. The last line may be torn (see
    /// [`Journal::torn`]); any other line that is not a valid record, a header that is not ours
    /// or of another version, and records that break an invariant are errors.
    pub fn decode(bytes: &[u8]) -> Result<Journal, StateError> {
        let mut records = Vec::new();
        let mut valid_len = 0;
        let mut rest = bytes;
        let mut line_no = 0usize;
        while !rest.is_empty() {
            line_no += 1;
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                // No newline: the append was cut.
                return Ok(Journal {
                    records,
                    torn: true,
                    valid_len,
                });
            };
            let (line, after) = rest.split_at(end);
            let after = after.get(1..).unwrap_or_default();
            // A line that is not JSON is a cut append if it is the last one, corruption
            // anywhere else.
            let torn = Journal {
                records: Vec::new(),
                torn: true,
                valid_len,
            };
            if line_no == 1 {
                let header: Header = match parse_line(line, line_no, after.is_empty())? {
                    Some(h) => h,
                    None => return Ok(torn),
                };
                if header.format != JOURNAL_FORMAT {
                    return Err(StateError::JournalWrongFormat {
                        found: header.format,
                    });
                }
                if header.version != JOURNAL_VERSION {
                    return Err(StateError::JournalUnsupportedVersion {
                        found: header.version,
                        supported: JOURNAL_VERSION,
                    });
                }
            } else {
                let record: JournalRecord = match parse_line(line, line_no, after.is_empty())? {
                    Some(r) => r,
                    None => return Ok(Journal { records, ..torn }),
                };
                // A cut append never yields well-formed JSON, so a broken invariant is
                // corruption even on the last line.
                record
                    .validate()
                    .map_err(|source| StateError::JournalInvalid {
                        line: line_no,
                        source: Box::new(source),
                    })?;
                records.push(record);
            }
            valid_len = bytes.len() - after.len();
            rest = after;
        }
        Ok(Journal {
            records,
            torn: false,
            valid_len,
        })
    }
}

/// Addresses and pool table changed since the journal was last taken (inside the allocator).
/// Kept as plain vectors (IPv4 as `u32`: 4 bytes per change), sorted and deduplicated when
/// taken and whenever they double, so a journal nobody takes stays bounded by about twice the
/// addresses ever touched.
#[derive(Clone, Debug, Default)]
pub(crate) struct JournalLog {
    v4: Vec<u32>,
    v6: Vec<u128>,
    /// Length after the last deduplication.
    compacted: usize,
    pools: bool,
}

impl JournalLog {
    pub(crate) fn address(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.v4.push(u32::from(a)),
            IpAddr::V6(a) => self.v6.push(u128::from(a)),
        }
        if self.v4.len() + self.v6.len() > 2 * self.compacted.max(4096) {
            self.v4.sort_unstable();
            self.v4.dedup();
            self.v6.sort_unstable();
            self.v6.dedup();
            self.compacted = self.v4.len() + self.v6.len();
        }
    }

    pub(crate) fn pools(&mut self) {
        self.pools = true;
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.pools && self.v4.is_empty() && self.v6.is_empty()
    }

    /// Empties the log: whether the pool table changed, and the changed addresses in address
    /// order (IPv4 first), without duplicates.
    pub(crate) fn take(&mut self) -> (bool, impl Iterator<Item = IpAddr> + use<>) {
        let pools = std::mem::take(&mut self.pools);
        self.compacted = 0;
        let (mut v4, mut v6) = (std::mem::take(&mut self.v4), std::mem::take(&mut self.v6));
        v4.sort_unstable();
        v4.dedup();
        v6.sort_unstable();
        v6.dedup();
        let addrs = v4
            .into_iter()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
            .chain(v6.into_iter().map(|v| IpAddr::V6(Ipv6Addr::from(v))));
        (pools, addrs)
    }
}

impl PersistedState {
    /// Replays one journal record. Idempotent. Keeps allocations sorted by address (sorting
    /// them first if they were not); inserting or deleting an address moves the allocations
    /// after it, so replay a whole journal with [`PersistedState::apply_all`].
    pub fn apply(&mut self, record: &JournalRecord) {
        self.apply_all(std::iter::once(record));
    }

    /// Replays records in order, in one pass over the allocations: the same result as
    /// [`PersistedState::apply`] on each, in O(A + R log R). Validate (or restore, which
    /// validates) afterwards.
    pub fn apply_all<'a>(&mut self, records: impl IntoIterator<Item = &'a JournalRecord>) {
        use std::collections::BTreeMap;
        // The last record per address wins, as sequential replay would leave it.
        let mut last: BTreeMap<IpAddr, Option<&PersistedAllocation>> = BTreeMap::new();
        let mut pools = None;
        for r in records {
            match r {
                JournalRecord::Set(a) => {
                    last.insert(a.ip, Some(a));
                }
                JournalRecord::Delete { ip } => {
                    last.insert(*ip, None);
                }
                JournalRecord::Pools {
                    next_pool_seq,
                    pools: p,
                } => pools = Some((*next_pool_seq, p)),
            }
        }
        if let Some((next, p)) = pools {
            self.next_pool_seq = next;
            self.pools.clone_from(p);
        }
        if last.is_empty() {
            return;
        }
        if !self.allocations.is_sorted_by_key(|a| a.ip) {
            self.allocations.sort_by_key(|a| a.ip);
        }
        if last.len() == 1
            && let Some((ip, value)) = last.first_key_value()
        {
            // One address: a binary search, no rebuild.
            match (self.allocations.binary_search_by_key(ip, |a| a.ip), value) {
                (Ok(i), Some(a)) => {
                    if let Some(slot) = self.allocations.get_mut(i) {
                        slot.clone_from(a);
                    }
                }
                (Ok(i), None) => {
                    self.allocations.remove(i);
                }
                (Err(i), Some(a)) => self.allocations.insert(i, (*a).clone()),
                (Err(_), None) => {}
            }
            return;
        }
        let old = std::mem::take(&mut self.allocations);
        let mut merged = Vec::with_capacity(old.len() + last.len());
        let mut changes = last.into_iter().peekable();
        for a in old {
            while let Some((ip, value)) = changes.next_if(|(ip, _)| *ip < a.ip) {
                debug_assert!(ip < a.ip);
                merged.extend(value.cloned());
            }
            match changes.next_if(|(ip, _)| *ip == a.ip) {
                Some((_, value)) => merged.extend(value.cloned()),
                None => merged.push(a),
            }
        }
        merged.extend(changes.filter_map(|(_, v)| v.cloned()));
        self.allocations = merged;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::ServiceKey;
    use crate::state::{STATE_FORMAT, STATE_VERSION};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(addr: &str, pool: &str, holders: &[&str]) -> JournalRecord {
        JournalRecord::Set(PersistedAllocation {
            ip: ip(addr),
            pool: pool.into(),
            services: holders.iter().map(|h| ServiceKey::new("ns", *h)).collect(),
        })
    }

    fn sample() -> Vec<JournalRecord> {
        vec![
            JournalRecord::Pools {
                next_pool_seq: 2,
                pools: vec![
                    PersistedPool {
                        name: "a".into(),
                        seq: 0,
                    },
                    PersistedPool {
                        name: "b".into(),
                        seq: 1,
                    },
                ],
            },
            set("10.0.0.1", "a", &["x", "y"]),
            JournalRecord::Delete {
                ip: ip("2001:db8::1"),
            },
            set("2001:db8::2", "b", &["z"]),
        ]
    }

    fn file(records: &[JournalRecord]) -> Vec<u8> {
        let mut f = Journal::header();
        f.extend(JournalRecord::encode_lines(records));
        f
    }

    /// The sample file with line `n` (1-based; 1 is the header) replaced.
    fn with_line(n: usize, text: &str) -> Vec<u8> {
        let good = String::from_utf8(file(&sample())).unwrap();
        let mut lines: Vec<&str> = good.lines().collect();
        lines[n - 1] = text;
        let mut out = lines.join("\n");
        out.push('\n');
        out.into_bytes()
    }

    #[test]
    fn encoding() {
        assert_eq!(
            Journal::header(),
            b"{\"format\":\"rackd-lbipam-journal\",\"version\":1}\n"
        );
        assert_eq!(
            String::from_utf8(JournalRecord::encode_lines(&sample())).unwrap(),
            concat!(
                r#"{"op":"pools","next_pool_seq":2,"pools":[{"name":"a","seq":0},{"name":"b","seq":1}]}"#,
                "\n",
                r#"{"op":"set","ip":"10.0.0.1","pool":"a","services":["ns/x","ns/y"]}"#,
                "\n",
                r#"{"op":"delete","ip":"2001:db8::1"}"#,
                "\n",
                r#"{"op":"set","ip":"2001:db8::2","pool":"b","services":["ns/z"]}"#,
                "\n",
            )
        );
        let one = sample()[1].encode_line();
        assert_eq!(one.last(), Some(&b'\n'));
        assert_eq!(one.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn round_trip_and_empty() {
        let bytes = file(&sample());
        let j = Journal::decode(&bytes).unwrap();
        assert_eq!(j.records, sample());
        assert!(!j.torn);
        assert_eq!(j.valid_len, bytes.len());
        let empty = Journal::decode(b"").unwrap();
        assert_eq!(
            (empty.records.len(), empty.torn, empty.valid_len),
            (0, false, 0)
        );
        let header_only = Journal::decode(&Journal::header()).unwrap();
        assert_eq!(header_only.records.len(), 0);
        assert!(!header_only.torn);
    }

    #[test]
    fn every_truncation_is_a_prefix() {
        let bytes = file(&sample());
        let records = sample();
        let mut ends = vec![0];
        ends.extend(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        for cut in 0..=bytes.len() {
            let j = Journal::decode(&bytes[..cut]).unwrap();
            let lines = ends[1..].iter().filter(|&&e| e <= cut).count();
            // Records kept: the whole lines after the header.
            assert_eq!(
                j.records[..],
                records[..lines.saturating_sub(1)],
                "cut {cut}"
            );
            assert_eq!(j.torn, !ends.contains(&cut), "cut {cut}");
            assert_eq!(j.valid_len, *ends.iter().rfind(|&&e| e <= cut).unwrap());
        }
    }

    #[test]
    fn torn_last_lines() {
        let mut bytes = file(&sample());
        let n = bytes.len();
        // A zero-filled tail (size extended, data lost).
        bytes.extend_from_slice(&[0; 40]);
        let j = Journal::decode(&bytes).unwrap();
        assert!(j.torn);
        assert_eq!(j.records, sample());
        assert_eq!(j.valid_len, n);
        // A complete but unreadable last line.
        let j = Journal::decode(&with_line(5, "{\"op\":\"set\",\"ip\":\"10.0.0.")).unwrap();
        assert!(j.torn);
        assert_eq!(j.records[..], sample()[..3]);
        // Only a torn header.
        let j = Journal::decode(br#"{"format":"rackd-lb"#).unwrap();
        assert!(j.torn && j.records.is_empty() && j.valid_len == 0);
    }

    #[test]
    fn corruption_before_the_last_line() {
        let malformed = |bytes: &[u8], at: usize| {
            let r = Journal::decode(bytes);
            assert!(
                matches!(r, Err(StateError::JournalMalformed { line, .. }) if line == at),
                "{r:?}"
            );
        };
        // Wrong types, unknown operation, bad address, bad key, missing fields, blank line,
        // binary garbage.
        for bad in [
            r#"{"op":"set","ip":5,"pool":"a","services":["ns/x"]}"#,
            r#"{"op":"set","ip":"10.0.0.1","pool":"a","services":"ns/x"}"#,
            r#"{"op":"set","ip":"10.0.0.1","pool":7,"services":["ns/x"]}"#,
            r#"{"op":"delete","ip":"10.0.0.300"}"#,
            r#"{"op":"set","ip":"10.0.0.1","pool":"a","services":["nsx"]}"#,
            r#"{"op":"set","ip":"10.0.0.1","pool":"a"}"#,
            r#"{"op":"pools","next_pool_seq":-1,"pools":[]}"#,
            r#"{"op":"frobnicate","ip":"10.0.0.1"}"#,
            r#"{"ip":"10.0.0.1"}"#,
            r#""delete""#,
            "",
            "\u{0}\u{0}\u{0}",
        ] {
            malformed(&with_line(3, bad), 3);
        }
        // A header that is not one, with records after it.
        malformed(&with_line(1, "not json"), 1);
        malformed(&with_line(1, r#"{"op":"delete","ip":"10.0.0.1"}"#), 1);
        // Not UTF-8.
        let mut bytes = with_line(2, "x");
        bytes[0] = 0xff;
        malformed(&bytes, 1);
    }

    #[test]
    fn foreign_or_newer_headers() {
        assert!(matches!(
            Journal::decode(&with_line(
                1,
                &format!(r#"{{"format":"{STATE_FORMAT}","version":{STATE_VERSION}}}"#)
            )),
            Err(StateError::JournalWrongFormat { found }) if found == STATE_FORMAT
        ));
        assert!(matches!(
            Journal::decode(&with_line(
                1,
                r#"{"format":"rackd-lbipam-journal","version":2}"#
            )),
            Err(StateError::JournalUnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
        // Even as the only line: a header that parses is checked.
        assert!(matches!(
            Journal::decode(b"{\"format\":\"other\",\"version\":1}\n"),
            Err(StateError::JournalWrongFormat { .. })
        ));
    }

    #[test]
    fn invariant_violations_on_any_line() {
        let invalid = |line_text: &str, at: usize, check: fn(&StateError) -> bool| {
            let r = Journal::decode(&with_line(at, line_text));
            match r {
                Err(StateError::JournalInvalid { line, source }) => {
                    assert_eq!(line, at);
                    assert!(check(&source), "{source:?}");
                }
                other => panic!("{other:?}"),
            }
        };
        for at in [3, 5] {
            invalid(
                r#"{"op":"set","ip":"10.0.0.1","pool":"a","services":[]}"#,
                at,
                |e| matches!(e, StateError::EmptyAllocation { .. }),
            );
            invalid(
                r#"{"op":"set","ip":"10.0.0.1","pool":"a","services":["ns/x","ns/x"]}"#,
                at,
                |e| matches!(e, StateError::DuplicateHolder { .. }),
            );
            invalid(
                r#"{"op":"pools","next_pool_seq":2,"pools":[{"name":"a","seq":0},{"name":"a","seq":1}]}"#,
                at,
                |e| matches!(e, StateError::DuplicatePool { .. }),
            );
            invalid(
                r#"{"op":"pools","next_pool_seq":1,"pools":[{"name":"a","seq":1}]}"#,
                at,
                |e| matches!(e, StateError::BadSequence { .. }),
            );
        }
    }

    #[test]
    fn apply_replaces_values_idempotently() {
        let mut s = PersistedState::empty();
        for r in sample() {
            s.apply(&r);
        }
        let once = s.clone();
        for r in sample() {
            s.apply(&r);
        }
        assert_eq!(s, once);
        assert_eq!(s.next_pool_seq, 2);
        assert_eq!(
            s.allocations.iter().map(|a| a.ip).collect::<Vec<_>>(),
            vec![ip("10.0.0.1"), ip("2001:db8::2")]
        );
        s.validate().unwrap();
        // A later record for an address wins; deleting an absent address is nothing.
        s.apply_all(&[
            set("10.0.0.1", "b", &["w"]),
            JournalRecord::Delete { ip: ip("10.0.0.9") },
            set("10.0.0.0", "a", &["v"]),
            JournalRecord::Delete {
                ip: ip("2001:db8::2"),
            },
        ]);
        assert_eq!(
            s.allocations,
            vec![
                PersistedAllocation {
                    ip: ip("10.0.0.0"),
                    pool: "a".into(),
                    services: vec![ServiceKey::new("ns", "v")],
                },
                PersistedAllocation {
                    ip: ip("10.0.0.1"),
                    pool: "b".into(),
                    services: vec![ServiceKey::new("ns", "w")],
                },
            ]
        );
        // A state written unsorted is sorted first, so the result is the same.
        let mut unsorted = s.clone();
        unsorted.allocations.reverse();
        let mut sorted = s.clone();
        let r = set("10.0.0.5", "a", &["u"]);
        unsorted.apply(&r);
        sorted.apply(&r);
        assert_eq!(unsorted, sorted);
    }

    #[test]
    fn error_messages_name_the_line() {
        let e = Journal::decode(&with_line(3, "{}")).unwrap_err();
        assert_eq!(e.to_string(), "lbipam journal line 3 is malformed");
        assert!(std::error::Error::source(&e).is_some());
        let e = Journal::decode(&with_line(1, r#"{"format":"x","version":1}"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lbipam journal has format 'x', expected 'rackd-lbipam-journal'"
        );
    }
}
