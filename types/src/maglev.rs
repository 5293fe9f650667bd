//! A Maglev lookup table in the compact form the datapath stores: the service's backend ids
//! once, then per slot the position of its backend in that list, one byte per slot below 256
//! backends and two bytes otherwise.
//!
//! Cilium stores `M` backend ids of four bytes per service (64 KiB at its default
//! M = 16381). Positions make the table a quarter of that for every Service with fewer than
//! 256 backends, which is what the kernel allocates, what rackd writes on a full programming,
//! and what the table computation touches (16 KiB stays in a core's L1 cache). The datapath
//! reads the position, then the id at that position: one more hash lookup per new flow.
//!
//! Encoded ([`MaglevTable::encode_into`]), native byte order, as the datapath reads it:
//! `ids: [u32; N]` then `slots: [u8; M]` (N ≤ 255) or `[u16; M]` (N ≥ 256).

/// The most backends a table can hold: positions are two bytes.
pub const MAX_BACKENDS: usize = 65535;

/// Up to this many backends, a slot is one byte.
pub const NARROW_MAX: usize = 255;

/// Bytes per slot for a table of `backends` backends.
pub const fn slot_width(backends: usize) -> usize {
    if backends <= NARROW_MAX { 1 } else { 2 }
}

/// Per slot, the position of its backend in the table's id list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slots {
    /// One byte per slot (at most [`NARROW_MAX`] backends).
    Narrow(Box<[u8]>),
    /// Two bytes per slot.
    Wide(Box<[u16]>),
}

impl Slots {
    /// `M`.
    pub fn len(&self) -> usize {
        match self {
            Slots::Narrow(s) => s.len(),
            Slots::Wide(s) => s.len(),
        }
    }

    /// No slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position in slot `i`.
    pub fn get(&self, i: usize) -> Option<usize> {
        match self {
            Slots::Narrow(s) => s.get(i).map(|p| usize::from(*p)),
            Slots::Wide(s) => s.get(i).map(|p| usize::from(*p)),
        }
    }

    fn positions(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match self {
            Slots::Narrow(s) => Box::new(s.iter().map(|p| usize::from(*p))),
            Slots::Wide(s) => Box::new(s.iter().map(|p| usize::from(*p))),
        }
    }
}

/// Why a table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// More than [`MAX_BACKENDS`] backends.
    #[error("{count} backends, a Maglev table holds at most {MAX_BACKENDS}")]
    TooManyBackends {
        /// How many.
        count: usize,
    },
    /// Slots of the wrong width for the number of backends ([`slot_width`]).
    #[error("{backends} backends take {}-byte slots, not {width}", slot_width(*backends))]
    WrongWidth {
        /// Backends.
        backends: usize,
        /// Bytes per slot given.
        width: usize,
    },
    /// A slot names a position past the id list.
    #[error("slot {slot} names backend {position} of {backends}")]
    PositionOutOfRange {
        /// The slot.
        slot: usize,
        /// Its position.
        position: usize,
        /// Backends.
        backends: usize,
    },
    /// Slots without backends, or backends without slots.
    #[error("{backends} backends and {slots} slots")]
    Inconsistent {
        /// Backends.
        backends: usize,
        /// Slots.
        slots: usize,
    },
    /// An encoded table shorter than its backends and slots need.
    #[error("{got} bytes, the table needs {needed}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

/// A service's Maglev table: its backends' ids and, per slot, a position among them. Empty
/// (no backend, no slot) for a frontend without backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    ids: Box<[u32]>,
    slots: Slots,
}

impl Default for MaglevTable {
    fn default() -> Self {
        Self::empty()
    }
}

impl MaglevTable {
    /// No backend, no slot.
    pub fn empty() -> Self {
        Self {
            ids: Box::new([]),
            slots: Slots::Narrow(Box::new([])),
        }
    }

    /// From its parts, checked: the width fits the number of backends and every position
    /// names one of them.
    pub fn new(ids: Vec<u32>, slots: Slots) -> Result<Self, TableError> {
        let n = ids.len();
        if n > MAX_BACKENDS {
            return Err(TableError::TooManyBackends { count: n });
        }
        if (n == 0) != slots.is_empty() {
            return Err(TableError::Inconsistent {
                backends: n,
                slots: slots.len(),
            });
        }
        let width = match slots {
            Slots::Narrow(_) => 1,
            Slots::Wide(_) => 2,
        };
        if n > 0 && width != slot_width(n) {
            return Err(TableError::WrongWidth { backends: n, width });
        }
        // The largest position first (a vectorised pass over the slice); which slot is
        // wrong only when one is.
        // Over values, not references: `iter().max()` tracked the winning element's address
        // in a scalar loop (a tenth of a table's computation at M = 16381).
        let max = match &slots {
            Slots::Narrow(s) => s.iter().copied().max().map(usize::from),
            Slots::Wide(s) => s.iter().copied().max().map(usize::from),
        };
        if max.is_some_and(|m| m >= n)
            && let Some((slot, position)) = slots.positions().enumerate().find(|(_, p)| *p >= n)
        {
            return Err(TableError::PositionOutOfRange {
                slot,
                position,
                backends: n,
            });
        }
        Ok(Self {
            ids: ids.into_boxed_slice(),
            slots,
        })
    }

    /// From one backend id per slot (the form Cilium's table has): the ids in the order they
    /// first appear.
    pub fn from_slot_ids(per_slot: &[u32]) -> Result<Self, TableError> {
        let mut ids: Vec<u32> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut positions = Vec::with_capacity(per_slot.len());
        for id in per_slot {
            let p = *index.entry(*id).or_insert_with(|| {
                ids.push(*id);
                ids.len() - 1
            });
            positions.push(p);
        }
        let slots = if slot_width(ids.len()) == 1 {
            Slots::Narrow(
                positions
                    .iter()
                    .map(|p| u8::try_from(*p).unwrap_or(u8::MAX))
                    .collect(),
            )
        } else {
            Slots::Wide(
                positions
                    .iter()
                    .map(|p| u16::try_from(*p).unwrap_or(u16::MAX))
                    .collect(),
            )
        };
        Self::new(ids, slots)
    }

    /// The backends' ids, in the table's order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The slots.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// `M` (0 when empty).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No backend.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes per slot.
    pub fn width(&self) -> usize {
        slot_width(self.ids.len())
    }

    /// The backend id of slot `i`.
    pub fn slot_id(&self, i: usize) -> Option<u32> {
        self.slots.get(i).and_then(|p| self.ids.get(p).copied())
    }

    /// The backend id of every slot, in order (Cilium's form of the table).
    pub fn slot_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .positions()
            .map(|p| self.ids.get(p).copied().unwrap_or(0))
    }

    /// Per backend (in the table's order), how many slots it has.
    pub fn slots_per_backend(&self) -> Vec<(u32, u32)> {
        let mut counts = vec![0u32; self.ids.len()];
        for p in self.slots.positions() {
            if let Some(c) = counts.get_mut(p) {
                *c += 1;
            }
        }
        self.ids.iter().copied().zip(counts).collect()
    }

    /// Length of [`MaglevTable::encode_into`]'s output.
    pub fn encoded_len(&self) -> usize {
        4 * self.ids.len() + self.width() * self.slots.len()
    }

    /// Appends the encoded table (see the module's documentation) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        for id in self.ids.iter() {
            out.extend_from_slice(&id.to_ne_bytes());
        }
        match &self.slots {
            Slots::Narrow(s) => out.extend_from_slice(s),
            Slots::Wide(s) => {
                for p in s.iter() {
                    out.extend_from_slice(&p.to_ne_bytes());
                }
            }
        }
    }

    /// Writes bytes `offset..` of [`MaglevTable::encode_into`]'s output into `out`, as many
    /// as fit or remain, and returns how many: the datapath's chunks filled straight from
    /// the table, without the whole encoding in between.
    pub fn encode_part(&self, offset: usize, out: &mut [u8]) -> usize {
        let ids_len = 4 * self.ids.len();
        let end = self.encoded_len().min(offset.saturating_add(out.len()));
        let mut written = 0;
        for (pos, o) in (offset..end).zip(out.iter_mut()) {
            if pos >= ids_len {
                break;
            }
            let id = self.ids.get(pos / 4).map_or([0; 4], |id| id.to_ne_bytes());
            *o = id.get(pos % 4).copied().unwrap_or(0);
            written += 1;
        }
        let from = (offset + written).saturating_sub(ids_len);
        let rest = out.get_mut(written..).unwrap_or_default();
        let want = end.saturating_sub(offset + written);
        match &self.slots {
            Slots::Narrow(s) => {
                if let (Some(src), Some(dst)) = (s.get(from..from + want), rest.get_mut(..want)) {
                    dst.copy_from_slice(src);
                    written += want;
                }
            }
            Slots::Wide(s) => {
                for (k, o) in (from..from + want).zip(rest.iter_mut()) {
                    let p = s.get(k / 2).map_or([0; 2], |p| p.to_ne_bytes());
                    *o = p.get(k % 2).copied().unwrap_or(0);
                    written += 1;
                }
            }
        }
        written
    }

    /// Decodes a table of `backends` backends and `m` slots from the start of `bytes`
    /// (what the datapath holds; anything after the table is ignored).
    pub fn decode(bytes: &[u8], backends: usize, m: usize) -> Result<Self, TableError> {
        if backends > MAX_BACKENDS {
            return Err(TableError::TooManyBackends { count: backends });
        }
        let width = slot_width(backends);
        let needed = 4 * backends + width * m;
        let (Some(head), Some(body)) = (bytes.get(..4 * backends), bytes.get(4 * backends..needed))
        else {
            return Err(TableError::Truncated {
                needed,
                got: bytes.len(),
            });
        };
        let ids = head
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let slots = if width == 1 {
            Slots::Narrow(body.into())
        } else {
            Slots::Wide(
                body.chunks_exact(2)
                    .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                    .collect(),
            )
        };
        Self::new(ids, slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ids_round_trip_through_positions_and_bytes() {
        let per_slot = [7, 9, 7, 3, 9, 9, 3];
        let t = MaglevTable::from_slot_ids(&per_slot).unwrap_or_default();
        assert_eq!(t.ids(), &[7, 9, 3]);
        assert_eq!(t.width(), 1);
        assert_eq!(t.slot_ids().collect::<Vec<_>>(), per_slot);
        assert_eq!(t.slots_per_backend(), vec![(7, 2), (9, 3), (3, 2)]);
        let mut bytes = Vec::new();
        t.encode_into(&mut bytes);
        assert_eq!(bytes.len(), t.encoded_len());
        assert_eq!(bytes.len(), 3 * 4 + 7);
        assert_eq!(MaglevTable::decode(&bytes, 3, 7), Ok(t));
    }

    #[test]
    fn parts_of_the_encoding_are_the_encoding() {
        let narrow: Vec<u32> = (0..1021u32).map(|i| 7 + i % 10).collect();
        let wide: Vec<u32> = (0..1021u32).map(|i| 1000 + i % 300).collect();
        for per_slot in [narrow, wide] {
            let t = MaglevTable::from_slot_ids(&per_slot).unwrap_or_default();
            let mut whole = Vec::new();
            t.encode_into(&mut whole);
            for size in [1, 3, 4, 39, 40, 41, 1000, 4000, 5000] {
                let mut joined = Vec::new();
                let mut part = vec![0xAAu8; size];
                loop {
                    let n = t.encode_part(joined.len(), &mut part);
                    joined.extend_from_slice(&part[..n]);
                    if n < size {
                        break;
                    }
                }
                assert_eq!(joined, whole, "parts of {size} bytes, width {}", t.width());
            }
            // Past the end: nothing.
            assert_eq!(t.encode_part(whole.len(), &mut [0; 8]), 0);
            assert_eq!(t.encode_part(usize::MAX, &mut [0; 8]), 0);
        }
    }

    #[test]
    fn many_backends_take_two_bytes() {
        let per_slot: Vec<u32> = (0..1021u32).map(|i| 1000 + i % 300).collect();
        let t = MaglevTable::from_slot_ids(&per_slot).unwrap_or_default();
        assert_eq!((t.ids().len(), t.width()), (300, 2));
        assert_eq!(t.slot_ids().collect::<Vec<_>>(), per_slot);
        let mut bytes = Vec::new();
        t.encode_into(&mut bytes);
        assert_eq!(bytes.len(), 300 * 4 + 2 * 1021);
        assert_eq!(MaglevTable::decode(&bytes, 300, 1021), Ok(t));
        // 255 is the last count of one-byte slots.
        assert_eq!((slot_width(255), slot_width(256)), (1, 2));
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert_eq!(
            MaglevTable::new(vec![1, 2], Slots::Narrow(vec![0, 2].into())),
            Err(TableError::PositionOutOfRange {
                slot: 1,
                position: 2,
                backends: 2
            })
        );
        assert_eq!(
            MaglevTable::new(vec![1], Slots::Wide(vec![0].into())),
            Err(TableError::WrongWidth {
                backends: 1,
                width: 2
            })
        );
        assert!(matches!(
            MaglevTable::new(vec![1], Slots::Narrow(Box::new([]))),
            Err(TableError::Inconsistent { .. })
        ));
        assert!(matches!(
            MaglevTable::new(vec![0; MAX_BACKENDS + 1], Slots::Wide(vec![0].into())),
            Err(TableError::TooManyBackends { .. })
        ));
        assert_eq!(
            MaglevTable::decode(&[0; 10], 2, 3),
            Err(TableError::Truncated {
                needed: 11,
                got: 10
            })
        );
        assert_eq!(MaglevTable::decode(&[], 0, 0), Ok(MaglevTable::empty()));
        // A position past the list in stored bytes is caught too.
        let mut bytes = 5u32.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&[0, 1]);
        assert!(matches!(
            MaglevTable::decode(&bytes, 1, 2),
            Err(TableError::PositionOutOfRange { slot: 1, .. })
        ));
    }
}
