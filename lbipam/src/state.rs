//! The persisted state: everything needed so that a restart re-creates exactly the same
//! allocations before any new one is made. Encoded as versioned JSON; the daemon writes it
//! atomically (write, fsync, rename).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::journal::JOURNAL_FORMAT;
use crate::spec::ServiceKey;

/// The format version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Marker distinguishing our file from any other JSON.
pub const STATE_FORMAT: &str = "rackd-lbipam-state";

/// One allocated address and who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedAllocation {
    /// The address.
    pub ip: IpAddr,
    /// The pool it is attributed to (re-attributed on restore if that pool is gone).
    pub pool: String,
    /// Holders in join order (several when shared via a sharing key); the earliest keeps the
    /// address if the holders stop being compatible.
    pub services: Vec<ServiceKey>,
}

/// A pool and the order in which it was first seen (precedence among pools without a
/// creation time, and allocation order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedPool {
    /// Pool name.
    pub name: String,
    /// First-seen sequence number.
    pub seq: u64,
}

/// Serialisable allocator state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Always [`STATE_FORMAT`].
    pub format: String,
    /// Always [`STATE_VERSION`] when written by this build.
    pub version: u32,
    /// Next first-seen sequence number.
    pub next_pool_seq: u64,
    /// Pools seen, by first-seen order.
    pub pools: Vec<PersistedPool>,
    /// Allocations, sorted by address.
    pub allocations: Vec<PersistedAllocation>,
}

/// Why a persisted state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not JSON, truncated, or the wrong shape.
    #[error("lbipam state is malformed")]
    Malformed(#[source] serde_json::Error),
    /// Some other file.
    #[error("lbipam state has format '{found}', expected '{STATE_FORMAT}'")]
    WrongFormat {
        /// The format marker found.
        found: String,
    },
    /// Written by a different build.
    #[error("lbipam state version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The same address appears twice.
    #[error("lbipam state allocates {ip} twice")]
    DuplicateAllocation {
        /// The address.
        ip: IpAddr,
    },
    /// An allocation without holders.
    #[error("lbipam state allocation {ip} has no services")]
    EmptyAllocation {
        /// The address.
        ip: IpAddr,
    },
    /// A service listed twice on one address.
    #[error("lbipam state lists {service} twice on {ip}")]
    DuplicateHolder {
        /// The address.
        ip: IpAddr,
        /// The service.
        service: ServiceKey,
    },
    /// A pool listed twice, or two pools with one sequence number.
    #[error("lbipam state lists pool '{name}' or its sequence number twice")]
    DuplicatePool {
        /// The pool.
        name: String,
    },
    /// A journal line (the header or a record, not the last line) is not JSON of the right shape.
    #[error("lbipam journal line {line} is malformed")]
    JournalMalformed {
        /// 1-based line number (the header is line 1).
        line: usize,
        /// What the JSON decoder found.
        #[source]
        source: serde_json::Error,
    },
    /// A journal record breaks an invariant of the state.
    #[error("lbipam journal line {line} is invalid")]
    JournalInvalid {
        /// 1-based line number.
        line: usize,
        /// The invariant broken.
        #[source]
        source: Box<StateError>,
    },
    /// The journal header names another format.
    #[error("lbipam journal has format '{found}', expected '{JOURNAL_FORMAT}'")]
    JournalWrongFormat {
        /// The format marker found.
        found: String,
    },
    /// The journal was written by a different build.
    #[error(
        "lbipam journal version {found} is not supported (this build reads version {supported})"
    )]
    JournalUnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A sequence number at or above `next_pool_seq`.
    #[error("lbipam state pool '{name}' has sequence {seq} not below next_pool_seq {next}")]
    BadSequence {
        /// The pool.
        name: String,
        /// Its sequence number.
        seq: u64,
        /// The recorded next sequence number.
        next: u64,
    },
}

/// Only the header, read first so an old or foreign file gets a precise error.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

impl PersistedState {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data structures with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and validates bytes written by [`PersistedState::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let header: Header = serde_json::from_slice(bytes).map_err(StateError::Malformed)?;
        if header.format != STATE_FORMAT {
            return Err(StateError::WrongFormat {
                found: header.format,
            });
        }
        if header.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                found: header.version,
                supported: STATE_VERSION,
            });
        }
        let state: PersistedState = serde_json::from_slice(bytes).map_err(StateError::Malformed)?;
        state.validate()?;
        Ok(state)
    }

    /// Checks the invariants the allocator relies on.
    pub fn validate(&self) -> Result<(), StateError> {
        if self.format != STATE_FORMAT {
            return Err(StateError::WrongFormat {
                found: self.format.clone(),
            });
        }
        if self.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                found: self.version,
                supported: STATE_VERSION,
            });
        }
        PersistedPool::validate_table(&self.pools, self.next_pool_seq)?;
        // We write allocations sorted by address; then strictly increasing means no duplicate,
        // checked in one pass. Anything else is checked with a set.
        let sorted = self.allocations.windows(2).all(|w| w[0].ip < w[1].ip);
        let mut ips = BTreeSet::new();
        for a in &self.allocations {
            if !sorted && !ips.insert(a.ip) {
                return Err(StateError::DuplicateAllocation { ip: a.ip });
            }
            a.validate()?;
        }
        Ok(())
    }

    /// The state of an allocator that has seen nothing ([`crate::LbIpam::new`]): what a journal
    /// replays onto when there is no snapshot file.
    pub fn empty() -> Self {
        PersistedState {
            format: STATE_FORMAT.to_owned(),
            version: STATE_VERSION,
            next_pool_seq: 0,
            pools: Vec::new(),
            allocations: Vec::new(),
        }
    }
}

impl PersistedAllocation {
    /// Holders present and distinct.
    pub(crate) fn validate(&self) -> Result<(), StateError> {
        if self.services.is_empty() {
            return Err(StateError::EmptyAllocation { ip: self.ip });
        }
        if self.services.len() > 1 {
            let mut seen = BTreeSet::new();
            for s in &self.services {
                if !seen.insert(s) {
                    return Err(StateError::DuplicateHolder {
                        ip: self.ip,
                        service: s.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl PersistedPool {
    /// Names and sequence numbers unique, sequence numbers below `next`.
    pub(crate) fn validate_table(pools: &[PersistedPool], next: u64) -> Result<(), StateError> {
        let mut names = BTreeSet::new();
        let mut seqs = BTreeSet::new();
        for p in pools {
            if !names.insert(p.name.as_str()) || !seqs.insert(p.seq) {
                return Err(StateError::DuplicatePool {
                    name: p.name.clone(),
                });
            }
            if p.seq >= next {
                return Err(StateError::BadSequence {
                    name: p.name.clone(),
                    seq: p.seq,
                    next,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> PersistedState {
        PersistedState {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
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
            allocations: vec![PersistedAllocation {
                ip: "10.0.0.1".parse().unwrap(),
                pool: "a".into(),
                services: vec![ServiceKey::new("ns", "x"), ServiceKey::new("ns", "y")],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(PersistedState::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn malformed_inputs() {
        let good = sample().encode();
        // Every truncation is rejected with a typed error, never a panic.
        for cut in 0..good.len() {
            let r = PersistedState::decode(&good[..cut]);
            assert!(r.is_err(), "truncated at {cut} accepted");
        }
        assert!(matches!(
            PersistedState::decode(b"\xff\xfe garbage"),
            Err(StateError::Malformed(_))
        ));
        assert!(matches!(
            PersistedState::decode(br#"{"format":"other","version":1}"#),
            Err(StateError::WrongFormat { .. })
        ));
        assert!(matches!(
            PersistedState::decode(br#"{"format":"rackd-lbipam-state","version":0,"x":[]}"#),
            Err(StateError::UnsupportedVersion {
                found: 0,
                supported: 1
            })
        ));
        let text = String::from_utf8(good).unwrap();
        let bad_ip = text.replace("10.0.0.1", "10.0.0.300");
        assert!(matches!(
            PersistedState::decode(bad_ip.as_bytes()),
            Err(StateError::Malformed(_))
        ));
        let bad_key = text.replace("ns/x", "nsx");
        assert!(matches!(
            PersistedState::decode(bad_key.as_bytes()),
            Err(StateError::Malformed(_))
        ));
    }

    #[test]
    fn invariant_violations() {
        let mut s = sample();
        s.allocations.push(s.allocations[0].clone());
        assert!(matches!(
            PersistedState::decode(&s.encode()),
            Err(StateError::DuplicateAllocation { .. })
        ));
        let mut s = sample();
        s.allocations[0].services.clear();
        assert!(matches!(
            PersistedState::decode(&s.encode()),
            Err(StateError::EmptyAllocation { .. })
        ));
        let mut s = sample();
        s.allocations[0].services[1] = ServiceKey::new("ns", "x");
        assert!(matches!(
            PersistedState::decode(&s.encode()),
            Err(StateError::DuplicateHolder { .. })
        ));
        let mut s = sample();
        s.pools[1].name = "a".into();
        assert!(matches!(
            PersistedState::decode(&s.encode()),
            Err(StateError::DuplicatePool { .. })
        ));
        let mut s = sample();
        s.next_pool_seq = 1;
        assert!(matches!(
            PersistedState::decode(&s.encode()),
            Err(StateError::BadSequence { .. })
        ));
    }
}
