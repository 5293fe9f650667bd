//! Benchmark D (`svc-bench chunk-sizes`): what one Maglev chunk costs the kernel by its value
//! size. The same number of `BPF_MAP_UPDATE_ELEM`s of new keys into a hash map without
//! preallocation (as `rackd_lb_maglev_v*`), with values of 4,096 bytes (1,024 ids, the
//! datapath's layout version 1) and 4,000 bytes (1,000 ids, version 2), interleaved per
//! repetition: wall time per update and the growth of the kernel's unreclaimable slab
//! (`SUnreclaim` in /proc/meminfo) while the map holds them.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bpffloor::Map;
use crate::error::{Error, Result};
use crate::machine::Meta;
use crate::stats::Spread;

/// Value sizes compared, bytes: version 1's chunk and version 2's.
pub const SIZES: [usize; 2] = [4096, 4000];

/// One map filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRun {
    /// Repetition, from 1.
    pub rep: usize,
    /// Value size, bytes.
    pub value_bytes: usize,
    /// Updates (new keys).
    pub entries: u32,
    /// Wall time of all of them.
    pub seconds: f64,
    /// `SUnreclaim` growth from before the first update to after the last, KiB.
    pub slab_kib: i64,
}

/// The file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkReport {
    /// Always `chunk-sizes`.
    pub bench: String,
    /// Where and when.
    pub meta: Meta,
    /// Every map filled, in order.
    pub runs: Vec<ChunkRun>,
}

fn sunreclaim_kib() -> Result<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|source| Error::Io {
        path: "/proc/meminfo".into(),
        source,
    })?;
    text.lines()
        .find(|l| l.starts_with("SUnreclaim:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| Error::Config("no SUnreclaim in /proc/meminfo".into()))
}

/// Fills a fresh map of each size with `entries` new keys, `reps` times, interleaved.
pub fn run(entries: u32, reps: usize, log: &mut dyn FnMut(&str)) -> Result<ChunkReport> {
    let mut meta = Meta::collect();
    let mut runs = Vec::new();
    for rep in 1..=reps {
        for value_bytes in SIZES {
            let map = Map::hash(8, value_bytes, entries)?;
            let value = vec![7u8; value_bytes];
            let before = sunreclaim_kib()?;
            let t = Instant::now();
            for i in 0..entries {
                let mut key = [0u8; 8];
                key[..4].copy_from_slice(&i.to_ne_bytes());
                map.update(&key, &value)?;
            }
            let seconds = t.elapsed().as_secs_f64();
            let slab_kib = sunreclaim_kib()? - before;
            drop(map);
            log(&format!(
                "rep {rep}: {value_bytes} B x {entries}: {seconds:.3} s, {:.2} µs per update, slab +{} MiB",
                seconds * 1e6 / f64::from(entries.max(1)),
                slab_kib / 1024
            ));
            runs.push(ChunkRun {
                rep,
                value_bytes,
                entries,
                seconds,
                slab_kib,
            });
            // The kernel frees map elements after an RCU grace period: let it, so the next
            // map's slab growth is its own.
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    meta.finish();
    Ok(ChunkReport {
        bench: "chunk-sizes".into(),
        meta,
        runs,
    })
}

/// The table of a report: per value size, µs per update and slab per entry (median, min-max),
/// and the ratios of 4,096 to 4,000.
pub fn table(r: &ChunkReport, file: &str) -> String {
    let mut out = crate::report::header(&r.meta, file);
    out.push_str(
        "| value bytes | updates | µs per update, median | min | max | slab bytes per entry, median | min | max | n |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut medians = Vec::new();
    for size in SIZES {
        let rs: Vec<&ChunkRun> = r.runs.iter().filter(|x| x.value_bytes == size).collect();
        let us: Vec<f64> = rs
            .iter()
            .map(|x| x.seconds * 1e6 / f64::from(x.entries.max(1)))
            .collect();
        let slab: Vec<f64> = rs
            .iter()
            .map(|x| x.slab_kib as f64 * 1024.0 / f64::from(x.entries.max(1)))
            .collect();
        let (Some(u), Some(b)) = (Spread::of(&us), Spread::of(&slab)) else {
            continue;
        };
        out.push_str(&format!(
            "| {size} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} |\n",
            rs.first().map_or(0, |x| x.entries),
            u.median,
            u.min,
            u.max,
            b.median,
            b.min,
            b.max,
            rs.len()
        ));
        medians.push((u.median, b.median));
    }
    if let [(u1, b1), (u2, b2)] = medians[..] {
        out.push_str(&format!(
            "\n4,096-byte values against 4,000-byte ones: {:.2}x the time per update, {:.2}x the slab per entry.\n",
            u1 / u2,
            b1 / b2
        ));
    }
    out
}
