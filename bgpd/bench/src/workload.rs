//! The synthetic table: deterministic (seeded) prefixes and attribute sets, encoded once into
//! the byte stream the sender writes.
//!
//! Shape (issue 2): N IPv4 /24s from 100.0.0.0 upwards, about a third as many distinct
//! attribute sets, AS paths of 2-6 hops starting with the sender's AS, communities on about
//! 40 % of the sets, a MED on about 30 %. Prefixes are spread over the sets (each set gets one,
//! the rest go at random), so a set carries ~3 prefixes on average, and the sender packs each
//! set's prefixes into as few UPDATEs as fit in 4096 bytes, as a real speaker would.

use std::net::Ipv4Addr;

use crate::bgp;

/// First prefix of the table: 100.0.0.0/24.
pub const PREFIX_BASE: u32 = u32::from_be_bytes([100, 0, 0, 0]);
/// Every prefix is a /24.
pub const PREFIX_LEN: u8 = 24;
/// The largest table that fits between 100.0.0.0 and 223.255.255.0 in /24s.
pub const MAX_PREFIXES: u32 = (0xE000_0000 - PREFIX_BASE) >> 8;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub prefixes: u32,
    pub attr_sets: u32,
    pub seed: u64,
}

impl Workload {
    /// `prefixes` with the default ratio of 0.33 attribute sets per prefix.
    pub fn new(prefixes: u32, seed: u64) -> Self {
        Self {
            prefixes,
            attr_sets: ((u64::from(prefixes) * 33 / 100) as u32).max(1),
            seed,
        }
    }
}

/// The `i`-th prefix's network address.
pub fn prefix(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(PREFIX_BASE + (i << 8))
}

/// Inverse of [`prefix`]: the index of a received prefix, if it is one of ours.
pub fn prefix_index(addr: u32, len: u8, prefixes: u32) -> Option<u32> {
    if len != PREFIX_LEN || addr < PREFIX_BASE || addr & 0xff != 0 {
        return None;
    }
    let i = (addr - PREFIX_BASE) >> 8;
    (i < prefixes).then_some(i)
}

/// SplitMix64: tiny, seeded, good enough to shape a table; no RNG crate needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One attribute set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrSet {
    pub as_path: Vec<u32>,
    pub communities: Vec<u32>,
    pub med: Option<u32>,
    /// 0 IGP, 2 INCOMPLETE.
    pub origin: u8,
}

fn attr_set(rng: &mut Rng, sender_as: u32) -> AttrSet {
    let hops = 2 + rng.below(5) as usize;
    let mut as_path = Vec::with_capacity(hops);
    as_path.push(sender_as);
    while as_path.len() < hops {
        // Mostly 2-octet public ASNs, some 4-octet ones; never our lab's ASNs or AS_TRANS.
        let asn = if rng.below(5) == 0 {
            196_608 + rng.below(200_000) as u32
        } else {
            1 + rng.below(64_000) as u32
        };
        if asn != 23456 {
            as_path.push(asn);
        }
    }
    let communities = if rng.below(10) < 4 {
        (0..1 + rng.below(4))
            .map(|_| ((as_path[1] & 0xffff) << 16) | rng.below(1000) as u32)
            .collect()
    } else {
        Vec::new()
    };
    let med = (rng.below(10) < 3).then(|| rng.below(1000) as u32);
    let origin = if rng.below(10) == 0 { 2 } else { 0 };
    AttrSet {
        as_path,
        communities,
        med,
        origin,
    }
}

/// The sender's whole table as BGP UPDATE messages, back to back.
#[derive(Debug)]
pub struct Table {
    pub bytes: Vec<u8>,
    pub updates: usize,
    /// Attribute sets that carry at least one prefix (all of them unless prefixes < sets).
    pub used_sets: usize,
}

/// Generates the table and encodes it for a sender in `sender_as` with `next_hop`.
pub fn build(w: &Workload, sender_as: u32, next_hop: Ipv4Addr) -> Table {
    let mut rng = Rng::new(w.seed);
    let sets: Vec<AttrSet> = (0..w.attr_sets)
        .map(|_| attr_set(&mut rng, sender_as))
        .collect();
    // Bucket the prefixes by set (counting sort keeps it O(n) and allocation-light).
    // The first `attr_sets` prefixes take one set each so every set is used; the rest are
    // spread at random.
    let owner: Vec<u32> = (0..w.prefixes)
        .map(|p| {
            if p < w.attr_sets {
                p
            } else {
                rng.below(u64::from(w.attr_sets)) as u32
            }
        })
        .collect();
    let mut start = vec![0u32; w.attr_sets as usize + 1];
    for &s in &owner {
        start[s as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut fill = start.clone();
    let mut by_set = vec![0u32; w.prefixes as usize];
    for (p, &s) in owner.iter().enumerate() {
        by_set[fill[s as usize] as usize] = p as u32;
        fill[s as usize] += 1;
    }

    let mut bytes = Vec::with_capacity(w.prefixes as usize * 30);
    let mut updates = 0;
    let mut used_sets = 0;
    let mut attrs = Vec::with_capacity(128);
    for (s, set) in sets.iter().enumerate() {
        let members = &by_set[start[s] as usize..start[s + 1] as usize];
        if members.is_empty() {
            continue;
        }
        used_sets += 1;
        attrs.clear();
        bgp::encode_attributes(&mut attrs, set, next_hop);
        for chunk in members.chunks(bgp::max_nlri_per_update(attrs.len())) {
            bgp::encode_update(&mut bytes, &attrs, chunk.iter().map(|&i| prefix(i)));
            updates += 1;
        }
    }
    Table {
        bytes,
        updates,
        used_sets,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let w = Workload::new(20_000, 7);
        let a = build(&w, 65001, Ipv4Addr::new(10, 0, 1, 2));
        let b = build(&w, 65001, Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(a.bytes, b.bytes);
        // Every prefix exactly once.
        let mut seen = vec![false; 20_000];
        let mut r = bgp::MsgReader::new(&a.bytes[..]);
        while let Some((ty, body)) = r.read_message().unwrap() {
            assert_eq!(ty, bgp::UPDATE);
            bgp::for_each_nlri(body, |addr, len, announce| {
                assert!(announce);
                let i = prefix_index(addr, len, 20_000).unwrap() as usize;
                assert!(!seen[i]);
                seen[i] = true;
            })
            .unwrap();
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(a.used_sets, 6600);
    }

    #[test]
    fn prefix_index_rejects_foreign_prefixes() {
        assert_eq!(prefix_index(PREFIX_BASE + 0x100, 24, 10), Some(1));
        assert_eq!(prefix_index(PREFIX_BASE + 0x100, 23, 10), None);
        assert_eq!(prefix_index(PREFIX_BASE + 0x1000, 24, 10), None);
        assert_eq!(prefix_index(PREFIX_BASE - 0x100, 24, 10), None);
        assert_eq!(prefix_index(PREFIX_BASE + 1, 24, 10), None);
    }
}
