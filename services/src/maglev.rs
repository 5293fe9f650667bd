//! Maglev consistent hashing, computing the same lookup tables as Cilium's `pkg/maglev`
//! (v1.17+: backends sorted by a frozen "hash string", offset and skip from one seeded
//! MurmurHash3 x64-128 of that string, Envoy-style weights), so a flow hashed by one node
//! reaches the same backend as on a Cilium node with the same seed and table size.
//!
//! The algorithm (Eisenbud et al., "Maglev", NSDI 2016, §3.4, Pseudocode 1): every backend
//! `i` gets a permutation of the `M` table slots, `perm[i][j] = (offset_i + j * skip_i) mod M`,
//! with `(h1, h2) = murmur3_x64_128(hash_string_i, seed)`, `offset = h1 mod M` and
//! `skip = h2 mod (M - 1) + 1`. `M` is prime, so every skip in `1..M` walks all slots. The
//! table is filled in turns, `n = 0..M`, backend `n mod N` taking the first free slot of
//! its permutation. Weights (Cilium's addition) skip a backend's turn while
//! `(n + 1) * weight < counter`, the counter starting at `weight / N` and growing by the sum
//! of weights on each slot taken; with equal weights no turn is ever skipped, which is what
//! Kubernetes backends get (Cilium gives each the default weight 100).
//!
//! Here the permutation is walked on the fly (one position per backend) instead of being
//! materialised as an `N × M` array: the same sequence, without the 13 MB at N = 100.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;

use rackd_types::maglev::{MAX_BACKENDS, MaglevTable, Slots, TableError, slot_width};

use crate::table::L4Proto;

/// The table sizes Cilium accepts for `--bpf-lb-maglev-table-size` (primes).
pub const SUPPORTED_TABLE_SIZES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

/// Cilium's default table size.
pub const DEFAULT_TABLE_SIZE: u32 = 16381;

/// Cilium's default `--bpf-lb-maglev-hash-seed` (12 random bytes, base64).
pub const DEFAULT_HASH_SEED: &str = "JLfvgnHc2kaSUFaI";

/// The weight Cilium gives every backend that comes from an EndpointSlice.
pub const DEFAULT_WEIGHT: u16 = 100;

/// Why a Maglev setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    /// `--bpf-lb-maglev-table-size` is not one of Cilium's primes.
    #[error(
        "invalid value for --bpf-lb-maglev-table-size: {size}, supported values are: {SUPPORTED_TABLE_SIZES:?}"
    )]
    UnsupportedTableSize {
        /// The value given.
        size: u64,
    },
    /// `--bpf-lb-maglev-hash-seed` is not standard base64.
    #[error("cannot decode base64 Maglev hash seed {seed:?}: {message}")]
    SeedNotBase64 {
        /// The value given.
        seed: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The seed decodes to other than 12 bytes.
    #[error("decoded Maglev hash seed is {len} bytes (not 12 bytes)")]
    SeedLength {
        /// Decoded length.
        len: usize,
    },
}

/// A validated table size `M`: one of [`SUPPORTED_TABLE_SIZES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableSize(u32);

impl TableSize {
    /// Cilium's default, 16381.
    pub const DEFAULT: TableSize = TableSize(DEFAULT_TABLE_SIZE);

    /// Validates `size`.
    pub fn new(size: u64) -> Result<Self, MaglevError> {
        SUPPORTED_TABLE_SIZES
            .into_iter()
            .find(|s| u64::from(*s) == size)
            .map(TableSize)
            .ok_or(MaglevError::UnsupportedTableSize { size })
    }

    /// `M`.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for TableSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for TableSize {
    type Err = MaglevError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A value that is not even a number is as unsupported as a wrong number.
        s.trim()
            .parse::<u64>()
            .map_err(|_| MaglevError::UnsupportedTableSize { size: 0 })
            .and_then(TableSize::new)
    }
}

/// The cluster-wide hash seed: 12 bytes, big-endian words 0..4 seed MurmurHash3 (the
/// table), 4..8 and 8..12 the datapath's jhash of IPv4 and IPv6 tuples (Cilium's
/// `SeedJhash0`/`SeedJhash1`). Must be the same on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashSeed {
    /// Seed of the table's MurmurHash3.
    pub murmur: u32,
    /// Seed of the IPv4 flow hash in the datapath.
    pub jhash0: u32,
    /// Seed of the IPv6 flow hash in the datapath.
    pub jhash1: u32,
}

impl HashSeed {
    /// From the 12 raw bytes.
    pub fn from_bytes(b: [u8; 12]) -> Self {
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            murmur: w(0),
            jhash0: w(4),
            jhash1: w(8),
        }
    }
}

impl Default for HashSeed {
    fn default() -> Self {
        // The constant is valid; the fallback only keeps this infallible.
        DEFAULT_HASH_SEED
            .parse()
            .unwrap_or_else(|_| Self::from_bytes([0; 12]))
    }
}

impl FromStr for HashSeed {
    type Err = MaglevError;
    /// Cilium's format: standard base64 (with padding) of exactly 12 bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| MaglevError::SeedNotBase64 {
                seed: s.to_owned(),
                message: e.to_string(),
            })?;
        let len = d.len();
        let b: [u8; 12] = d.try_into().map_err(|_| MaglevError::SeedLength { len })?;
        Ok(Self::from_bytes(b))
    }
}

/// Table size and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MaglevConfig {
    /// `M`.
    pub table_size: TableSize,
    /// The cluster-wide seed.
    pub seed: HashSeed,
}

/// One backend as the table sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevBackend {
    /// Cilium's hash string ([`hash_string`]): the sort key and the hashed bytes.
    pub key: String,
    /// What the table holds for it (the node-local backend id).
    pub id: u32,
    /// Relative weight; Kubernetes backends all get [`DEFAULT_WEIGHT`].
    pub weight: u16,
}

/// [`hash_string`] of a backend.
pub fn backend_hash_string(b: &crate::table::Backend) -> String {
    hash_string(b.addr, b.port, b.proto)
}

/// Cilium's frozen backend hash string (`BackendInfo.setHashString`), e.g.
/// `[10.0.0.1:8080/TCP,State:active]` or `[[fd00::1]:53/UDP,State:active]`. Backends of
/// external frontends have no `/i` (internal scope) and cluster id 0.
pub fn hash_string(addr: IpAddr, port: u16, proto: L4Proto) -> String {
    match addr {
        IpAddr::V4(a) => format!("[{a}:{port}/{},State:active]", proto.cilium_name()),
        IpAddr::V6(a) => format!("[[{a}]:{port}/{},State:active]", proto.cilium_name()),
    }
}

/// MurmurHash3 x64 128 (Appleby's `MurmurHash3_x64_128`) with the 32-bit seed in both
/// lanes, input words little-endian: what Cilium's `pkg/murmur3.Hash128` returns on x86-64
/// and arm64.
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mix_k1 = |k: u64| k.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    let mix_k2 = |k: u64| k.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    let (mut h1, mut h2) = (u64::from(seed), u64::from(seed));
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let (lo, hi) = b.split_at(8);
        let k1 = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
        let k2 = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    // The tail's bytes 0..8 form k1 and 8..16 k2, little-endian, zero-padded.
    let word = |bytes: &[u8]| {
        bytes
            .iter()
            .enumerate()
            .fold(0u64, |k, (i, b)| k ^ (u64::from(*b) << (8 * i)))
    };
    if tail.len() > 8 {
        h2 ^= mix_k2(word(tail.get(8..).unwrap_or_default()));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(word(tail.get(..8.min(tail.len())).unwrap_or_default()));
    }
    let len = data.len() as u64; // usize → u64 never truncates on supported targets
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// `(offset, skip)` of a backend's permutation.
pub fn offset_and_skip(key: &str, m: TableSize, seed: u32) -> (u32, u32) {
    let m = u64::from(m.get());
    let (h1, h2) = murmur3_x64_128(key.as_bytes(), seed);
    // Both results are below M ≤ 131071, so they fit.
    let offset = u32::try_from(h1 % m).unwrap_or(0);
    let skip = u32::try_from(h2 % (m - 1) + 1).unwrap_or(1);
    (offset, skip)
}

/// The lookup table: the backends' ids (sorted by key, as Cilium sorts them, so every node
/// builds the same table whatever its ids) and per slot the position of its backend among
/// them. Empty when there is no backend; a key given twice counts once (the first id).
/// [`MaglevTable::slot_ids`] gives Cilium's form (`M` backend ids).
pub fn lookup_table(
    cfg: &MaglevConfig,
    backends: &[MaglevBackend],
) -> Result<MaglevTable, TableError> {
    table_with_tail(cfg, backends, None)
}

/// [`lookup_table`] with the last `tail` slots found by distances (`None`: [`tail_len`]).
fn table_with_tail(
    cfg: &MaglevConfig,
    backends: &[MaglevBackend],
    tail: Option<u32>,
) -> Result<MaglevTable, TableError> {
    let mut bs: Vec<&MaglevBackend> = backends.iter().collect();
    bs.sort_by(|a, b| a.key.cmp(&b.key));
    bs.dedup_by(|a, b| a.key == b.key);
    if bs.is_empty() {
        return Ok(MaglevTable::empty());
    }
    if bs.len() > MAX_BACKENDS {
        return Err(TableError::TooManyBackends { count: bs.len() });
    }
    let ids: Vec<u32> = bs.iter().map(|b| b.id).collect();
    let tail = tail.unwrap_or_else(|| tail_len(cfg.table_size.get(), bs.len()));
    let slots = if slot_width(bs.len()) == 1 {
        Slots::Narrow(fill::<u8>(cfg, &bs, tail).into_boxed_slice())
    } else {
        Slots::Wide(fill::<u16>(cfg, &bs, tail).into_boxed_slice())
    };
    MaglevTable::new(ids, slots)
}

/// A position in the table under construction: one byte below 256 backends, two otherwise
/// (so the table being filled is 16 or 32 KiB at M = 16381 and stays in a core's L1 cache).
trait Position: Copy + Eq {
    /// Marks a free slot: never a position (there are fewer backends than values).
    const FREE: Self;
    /// Position `i`, which is below the number of backends.
    fn at(i: usize) -> Self;
}

impl Position for u8 {
    const FREE: Self = u8::MAX;
    fn at(i: usize) -> Self {
        u8::try_from(i).unwrap_or(Self::FREE)
    }
}

impl Position for u16 {
    const FREE: Self = u16::MAX;
    fn at(i: usize) -> Self {
        u16::try_from(i).unwrap_or(Self::FREE)
    }
}

/// Pseudocode 1 over the sorted, deduplicated, non-empty `bs` (fewer than `P::FREE`).
///
/// The walk finds the first `M - T` slots by probing (one slot at a time while the table is
/// sparse, then groups of slots per branch); the last `T` ([`tail_len`]) are found
/// from the free slots' distances along each backend's walk ([`fill_tail`]): the same slot
/// the probing would reach, without its `M/R` probes per slot when `R` slots are free (by the
/// harmonic sum, the last 256 slots of M = 16381 take about 60% of the probes, though in
/// groups of four far less of the time).
fn fill<P: Position>(cfg: &MaglevConfig, bs: &[&MaglevBackend], tail: u32) -> Vec<P> {
    let m = cfg.table_size.get();
    let mu = m as usize; // u32 → usize: lossless on 32- and 64-bit targets
    let (offs, skips): (Vec<u32>, Vec<u32>) = bs
        .iter()
        .map(|b| offset_and_skip(&b.key, cfg.table_size, cfg.seed.murmur))
        .unzip();
    // Current slot of each backend's permutation walk (`perm[i][next[i]]`).
    let mut pos = offs;
    let mut turns = Turns::new(bs);

    let mut entry = vec![P::FREE; mu];
    // `k * skip mod M` for k in 0..GROUP (the offsets of a group's slots from its first),
    // and `GROUP * skip mod M` (from one group to the next).
    let ahead: Vec<[u32; GROUP]> = skips
        .iter()
        .map(|s| {
            let mut a = [0u32; GROUP];
            for (k, d) in (0u64..).zip(a.iter_mut()) {
                *d = u32::try_from(k * u64::from(*s) % u64::from(m)).unwrap_or(0);
            }
            a
        })
        .collect();
    let ahead_group: Vec<u32> = skips
        .iter()
        .map(|s| u32::try_from(GROUP as u64 * u64::from(*s) % u64::from(m)).unwrap_or(0))
        .collect();
    let head = m.saturating_sub(tail);
    // While the table is sparse, a backend's next slot is almost always free: one probe and
    // a well-predicted branch beat looking at a group.
    let sparse = (u64::from(m) * SPARSE_PERMILLE / 1000).min(u64::from(head));
    for n in 0..sparse {
        let i = turns.next(n);
        let mut c = pos[i];
        while entry[c as usize] != P::FREE {
            c = step(c, skips[i], m);
        }
        entry[c as usize] = P::at(i);
        pos[i] = step(c, skips[i], m);
    }
    for n in sparse..u64::from(head) {
        let i = turns.next(n);
        // M is prime, so the walk visits every slot before repeating: a free one is found
        // (n < M slots are taken).
        let ahead = &ahead[i];
        let mut c = pos[i];
        // The next GROUP slots of the walk are looked at together (independent loads, one
        // branch per group instead of one per probe: the per-probe branch mispredicted
        // whenever the table was half full); the first free one is taken.
        loop {
            let mut free = 0u32;
            let mut at = [0u32; GROUP];
            for (k, (a, d)) in at.iter_mut().zip(ahead.iter()).enumerate() {
                let x = step(c, *d, m);
                *a = x;
                free |= u32::from(entry[x as usize] == P::FREE) << k;
            }
            if free != 0 {
                c = at[free.trailing_zeros() as usize % GROUP];
                break;
            }
            c = step(c, ahead_group[i], m);
        }
        entry[c as usize] = P::at(i);
        pos[i] = step(c, skips[i], m);
    }
    fill_tail(&mut entry, &mut turns, u64::from(head), &pos, &skips, m);
    entry
}

/// `c + skip mod M` with both below M: below 2M, so one conditional subtraction instead of
/// a 64-bit division per probe (the division was most of the table's cost).
fn step(c: u32, skip: u32, m: u32) -> u32 {
    let next = c + skip; // < 2M ≤ 262142: no overflow
    if next >= m { next - m } else { next }
}

/// Whose turn it is: backend `n mod N`, or with unequal weights Cilium's weighted turn.
struct Turns<'a> {
    bs: &'a [&'a MaglevBackend],
    /// Unequal weights whose mean is above 1 (Cilium's condition for weighted turns).
    weighted: bool,
    weight_sum: u64,
    /// Cilium keeps this counter as a float64 starting at weight/N and compares its
    /// truncation; `floor(w/N) + k * sum` is the same integer for every realistic N (the
    /// float keeps the fraction exact below 2^16 backends).
    counter: Vec<u64>,
    /// `n mod N`, kept incrementally.
    turn: usize,
}

impl<'a> Turns<'a> {
    fn new(bs: &'a [&'a MaglevBackend]) -> Self {
        let l = bs.len().max(1) as u64;
        let weight_sum: u64 = bs.iter().map(|b| u64::from(b.weight)).sum();
        // Equal weights never skip a turn (see the module's documentation), so the check is
        // left out for them: Kubernetes backends all weigh the same.
        let equal = bs
            .iter()
            .all(|b| bs.first().is_some_and(|f| f.weight == b.weight));
        Self {
            bs,
            weighted: !equal && weight_sum / l > 1,
            weight_sum,
            counter: bs.iter().map(|b| u64::from(b.weight) / l).collect(),
            turn: 0,
        }
    }

    /// The backend that takes the `n`th slot (called for n = 0, 1, 2, ... in order).
    fn next(&mut self, n: u64) -> usize {
        let len = self.bs.len();
        let mut i = self.turn;
        self.turn = if self.turn + 1 == len {
            0
        } else {
            self.turn + 1
        };
        if self.weighted {
            // Some backend always qualifies (the sum of the conditions contradicts otherwise),
            // so this terminates within N steps; the bound only guards the loop.
            for _ in 0..len {
                if (n + 1) * u64::from(self.bs[i].weight) >= self.counter[i] {
                    break;
                }
                i = (i + 1) % len;
            }
            self.counter[i] += self.weight_sum;
        }
        i
    }
}

/// How many of the last slots [`fill_tail`] finds. Probing for them costs about `M·ln T`;
/// the tail costs `N·T` distances and removals plus `T²/2` comparisons (vectorised), so `T`
/// grows with `M` and shrinks with `N`: 256 at M = 16381 with 10 backends, 80 with 100.
fn tail_len(m: u32, backends: usize) -> u32 {
    let n = u64::try_from(backends.max(1)).unwrap_or(u64::MAX);
    let t = (TAIL_FACTOR * u64::from(m) / n).isqrt();
    u32::try_from(t).unwrap_or(0).min(m / 4)
}

/// See [`tail_len`]: tuned on the Criterion bench `maglev` (10 and 100 backends at
/// M = 16381).
const TAIL_FACTOR: u64 = 40;

/// Fills the free slots left after the first `head` turns. Backend `i`'s walk is at slot
/// `pos[i]` and every slot it passed is taken, so the slot its probing would take next is
/// the free slot `e` fewest steps ahead: `(e - pos[i]) * skip_i⁻¹ mod M` (M is prime, so
/// the inverse exists). Those distances are computed once per (backend, free slot); each
/// turn takes the nearest free slot of its backend and removes that slot from every row.
fn fill_tail<P: Position>(
    entry: &mut [P],
    turns: &mut Turns<'_>,
    head: u64,
    pos: &[u32],
    skips: &[u32],
    m: u32,
) {
    let mut free: Vec<u32> = (0u32..)
        .zip(entry.iter())
        .filter(|(_, p)| **p == P::FREE)
        .map(|(k, _)| k)
        .collect();
    let r = free.len();
    if r == 0 {
        return;
    }
    let modm = ModM::new(m);
    // Row i: the distance along backend i's walk to each free slot, in `free`'s order.
    let mut dist = vec![0u32; r * pos.len()];
    for (row, (p, s)) in dist.chunks_exact_mut(r).zip(pos.iter().zip(skips)) {
        let inv = modm.inverse(*s);
        for (d, e) in row.iter_mut().zip(&free) {
            let diff = if e >= p { e - p } else { e + m - p };
            *d = modm.mul(diff, inv);
        }
    }
    let mut live = r;
    for n in head..u64::from(m) {
        let i = turns.next(n);
        let row = &dist[i * r..i * r + live];
        // Distances of one row are distinct (the walk is a permutation): one minimum.
        let Some(min) = row.iter().copied().min() else {
            break; // no free slot: cannot happen, n < M
        };
        let Some(k) = row.iter().position(|d| *d == min) else {
            break;
        };
        entry[free[k] as usize] = P::at(i);
        live -= 1;
        free.swap(k, live);
        for row in dist.chunks_exact_mut(r) {
            row.swap(k, live);
        }
    }
}

/// Arithmetic modulo a table size (below 2^17, so products fit 34 bits): Barrett reduction
/// with `⌊2^64 / M⌋` instead of a 64-bit division per product.
struct ModM {
    m: u64,
    r: u64,
}

impl ModM {
    fn new(m: u32) -> Self {
        let m = u64::from(m.max(1));
        Self { m, r: u64::MAX / m }
    }

    /// `a * b mod M` for `a, b < M`.
    fn mul(&self, a: u32, b: u32) -> u32 {
        let x = u64::from(a) * u64::from(b);
        // ⌊x·r / 2^64⌋ is ⌊x/M⌋ or one less, so the remainder is below 2M.
        let q = ((u128::from(x) * u128::from(self.r)) >> 64) as u64; // < 2^64 after the shift
        let mut rem = x - q * self.m;
        if rem >= self.m {
            rem -= self.m;
        }
        u32::try_from(rem).unwrap_or(0)
    }

    /// `a⁻¹ mod M` for `a` in `1..M`, M prime (extended Euclid).
    fn inverse(&self, a: u32) -> u32 {
        let m = i64::try_from(self.m).unwrap_or(1);
        let (mut t, mut new_t) = (0i64, 1i64);
        let (mut r, mut new_r) = (m, i64::from(a));
        while new_r != 0 {
            let q = r / new_r;
            (t, new_t) = (new_t, t - q * new_t);
            (r, new_r) = (new_r, r - q * new_r);
        }
        u32::try_from(if t < 0 { t + m } else { t }).unwrap_or(0)
    }
}

/// Slots of a backend's walk looked at per branch: of 2, 4, 8 and 16 tried, 4 was the
/// fastest (the A/B against one slot per branch: `services/benches/data/`).
const GROUP: usize = 4;

/// Up to this share of the table taken (per mille), walks probe one slot at a time: 150,
/// 300, 375 and 450 tried on the Criterion bench `maglev`, 300 the fastest (the kept A/B of
/// the change: `services/benches/data/maglev-table-2026-12-07c.json`).
const SPARSE_PERMILLE: u64 = 300;

impl fmt::Display for TableSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
#[path = "maglev_tests.rs"]
mod tests;
