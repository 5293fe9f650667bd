//! The BPF floor: the same Services written into BPF hash maps shaped like rackd's
//! `rackd_lb_*_v3` maps (16-byte addresses, no preallocation, a Maglev LUT per Service of its
//! backend ids then a one-byte position per slot, two bytes from 256 backends, in chunks of
//! 4,000 bytes), with raw `bpf(2)` calls and no program attached.
//!
//! This is not rackd. It is what any BPF implementation of the brief's design must pay at
//! least (the kernel's map updates, plus computing the Maglev tables), measured in the same run
//! as the anchors, so the rackd figure can be read against it and against iptables. Two
//! variants: one `BPF_MAP_UPDATE_ELEM` per entry (what a simple controller does) and
//! `BPF_MAP_UPDATE_BATCH` in chunks.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::owned_fd;
use crate::model::{Proto, ServiceSpec, Shape, Workload};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_TYPE_HASH: u32 = 1;
/// Allocate elements on update, as every `rackd_lb_*_v1` hash map does.
const BPF_F_NO_PREALLOC: u32 = 1;
/// Bytes per LUT chunk (`LB_LUT_BYTES` in datapath/bpf/lb_common.h): the LUT map's key is
/// (service id, chunk), its value 4,000 bytes of the encoded table.
pub const LUT_BYTES: usize = datapath::lb::LUT_BYTES;
/// Entries per `BPF_MAP_UPDATE_BATCH` call (bounds our buffers for the 64 KiB LUT values).
const BATCH: usize = 1024;

/// `union bpf_attr`, big enough for the commands we use; unused tail bytes stay zero as the
/// kernel requires.
#[repr(C, align(8))]
struct Attr([u8; 64]);

impl Attr {
    fn new() -> Self {
        Self([0; 64])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        if let Some(s) = self.0.get_mut(off..off + 4) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        if let Some(s) = self.0.get_mut(off..off + 8) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
        self
    }
}

fn bpf(
    cmd: libc::c_long,
    name: &'static str,
    attr: &mut Attr,
    size: usize,
) -> Result<libc::c_long> {
    // SAFETY: attr points to a live, initialised buffer of at least `size` bytes, and every
    // pointer stored inside it refers to a buffer the caller keeps alive across the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), size) };
    if rc < 0 {
        return Err(Error::Bpf {
            cmd: name,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(rc)
}

/// A BPF hash map we created.
#[derive(Debug)]
pub(crate) struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl Map {
    pub(crate) fn hash(key_size: usize, value_size: usize, max_entries: u32) -> Result<Self> {
        let mut a = Attr::new();
        let ks = u32::try_from(key_size).map_err(|_| Error::Config("key size".into()))?;
        let vs = u32::try_from(value_size).map_err(|_| Error::Config("value size".into()))?;
        a.u32_at(0, BPF_MAP_TYPE_HASH)
            .u32_at(4, ks)
            .u32_at(8, vs)
            .u32_at(12, max_entries.max(1))
            .u32_at(16, BPF_F_NO_PREALLOC);
        let fd = bpf(BPF_MAP_CREATE, "MAP_CREATE", &mut a, 48)?;
        let fd = libc::c_int::try_from(fd).map_err(|_| Error::Config("fd out of range".into()))?;
        Ok(Self {
            fd: owned_fd(fd),
            key_size,
            value_size,
        })
    }

    fn fd(&self) -> u32 {
        u32::try_from(self.fd.as_raw_fd()).unwrap_or(u32::MAX)
    }

    pub(crate) fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.len() != self.key_size || value.len() != self.value_size {
            return Err(Error::Config("key/value size mismatch".into()));
        }
        let mut a = Attr::new();
        a.u32_at(0, self.fd())
            .u64_at(8, key.as_ptr() as u64)
            .u64_at(16, value.as_ptr() as u64);
        bpf(BPF_MAP_UPDATE_ELEM, "MAP_UPDATE_ELEM", &mut a, 32).map(drop)
    }

    /// `keys` and `values` are `count` packed entries.
    fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<()> {
        let count = keys.len() / self.key_size.max(1);
        if count == 0 {
            return Ok(());
        }
        if keys.len() != count * self.key_size || values.len() != count * self.value_size {
            return Err(Error::Config("batch size mismatch".into()));
        }
        let mut a = Attr::new();
        a.u64_at(16, keys.as_ptr() as u64)
            .u64_at(24, values.as_ptr() as u64)
            .u32_at(32, u32::try_from(count).unwrap_or(0))
            .u32_at(36, self.fd());
        bpf(BPF_MAP_UPDATE_BATCH, "MAP_UPDATE_BATCH", &mut a, 56).map(drop)
    }
}

/// Timings of one floor run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FloorTiming {
    /// Computing every Service's Maglev table (user space, one thread).
    pub maglev_compute_s: f64,
    /// Writing backends, LUTs and frontends into the maps.
    pub map_update_s: f64,
    /// Map entries written.
    pub entries: u64,
}

/// The frontends rackd programs for a Service: its LoadBalancer IPs (rackd does not handle
/// cluster IPs); a ClusterIP-shaped workload uses the cluster IP so both shapes exercise the
/// same path.
fn frontends(w: &Workload, s: &ServiceSpec) -> Vec<[u8; 20]> {
    let addrs: Vec<std::net::Ipv4Addr> = match w.shape {
        Shape::LoadBalancer => s.lb_ips.clone(),
        Shape::ClusterIp => vec![s.cluster_ip],
    };
    addrs
        .into_iter()
        .map(|a| {
            let mut k = [0u8; 20];
            k[..16].copy_from_slice(&a.to_ipv6_mapped().octets());
            k[16..18].copy_from_slice(&s.port.to_be_bytes());
            k[18] = match s.proto {
                Proto::Tcp => 6,
                Proto::Udp => 17,
            };
            k
        })
        .collect()
}

fn backend_value(ep: &std::net::SocketAddrV4) -> [u8; 20] {
    let mut v = [0u8; 20];
    v[..16].copy_from_slice(&ep.ip().to_ipv6_mapped().octets());
    v[16..18].copy_from_slice(&ep.port().to_be_bytes());
    v[18] = 6;
    v
}

fn h(seed: u64, name: &str) -> u64 {
    let mut s = DefaultHasher::new();
    seed.hash(&mut s);
    name.hash(&mut s);
    s.finish()
}

/// Maglev population (Eisenbud et al., NSDI 2016, pseudo-code 1): `m` slots (a prime) filled
/// with indexes into `backends` (fewer than 65,535).
pub fn maglev(backends: &[String], m: u32) -> Vec<u16> {
    let n = backends.len();
    if n == 0 || m < 2 {
        return Vec::new();
    }
    let m64 = u64::from(m);
    // (current slot, skip) of each backend's walk; `slot + skip` (both below m) is below 2m,
    // so one conditional subtraction replaces the modulo (as rackd's own table does: a floor
    // that paid a division per probe would not be the least an implementation pays).
    let mut perm: Vec<(u32, u32)> = backends
        .iter()
        .map(|b| {
            let off = u32::try_from(h(0, b) % m64).unwrap_or(0);
            let skip = u32::try_from(h(1, b) % (m64 - 1) + 1).unwrap_or(1);
            (off, skip)
        })
        .collect();
    let step = |c: u32, skip: u32| {
        let x = c + skip;
        if x >= m { x - m } else { x }
    };
    let mut lut = vec![u16::MAX; m as usize];
    let mut filled = 0u32;
    'outer: loop {
        for (i, (pos, skip)) in perm.iter_mut().enumerate() {
            let mut c = *pos;
            while lut.get(c as usize).is_some_and(|&x| x != u16::MAX) {
                c = step(c, *skip);
            }
            if let Some(slot) = lut.get_mut(c as usize) {
                *slot = u16::try_from(i).unwrap_or(u16::MAX);
            }
            *pos = step(c, *skip);
            filled += 1;
            if filled == m {
                break 'outer;
            }
        }
    }
    lut
}

/// The floor's maps, created (untimed) before a load.
#[derive(Debug)]
pub struct Floor {
    services: Map,
    backends: Map,
    luts: Map,
    lut_size: u32,
}

impl Floor {
    /// Creates empty maps sized for `w` with LUTs of `lut_size` slots, laid out as rackd's
    /// `rackd_lb_*_v3` maps (hash maps without preallocation; the LUT in 4,000-byte chunks).
    pub fn create(w: &Workload, lut_size: u32) -> Result<Self> {
        let be_max = u32::try_from(w.endpoints() + 16)
            .map_err(|_| Error::Config("too many endpoints".into()))?;
        Ok(Self {
            services: Map::hash(20, 16, w.services)?,
            backends: Map::hash(4, 20, be_max)?,
            luts: Map::hash(
                8,
                LUT_BYTES,
                w.services
                    .saturating_mul(datapath::lb::lut_chunks(w.backends as usize, lut_size)),
            )?,
            lut_size,
        })
    }

    fn table(&self, w: &Workload, id: u32, s: &ServiceSpec) -> Vec<u8> {
        let names: Vec<String> = s.endpoints.iter().map(|e| e.to_string()).collect();
        let base = id.saturating_mul(w.backends);
        let n = names.len();
        let chunks = datapath::lb::lut_chunks(n, self.lut_size) as usize;
        let mut bytes = Vec::with_capacity(chunks * LUT_BYTES);
        for j in (0u32..).take(n) {
            bytes.extend_from_slice(&base.saturating_add(j).to_ne_bytes());
        }
        let positions = maglev(&names, self.lut_size);
        if n <= rackd_types::maglev::NARROW_MAX {
            bytes.extend(
                positions
                    .iter()
                    .map(|p| u8::try_from(*p).unwrap_or(u8::MAX)),
            );
        } else {
            for p in positions {
                bytes.extend_from_slice(&p.to_ne_bytes());
            }
        }
        // The last chunk is padded with zeros (never read: the table ends before).
        bytes.resize(chunks * LUT_BYTES, 0);
        bytes
    }

    /// Computes every Service's Maglev table, then writes backends, LUTs and frontends;
    /// `batched` selects `BPF_MAP_UPDATE_BATCH`.
    pub fn load(&self, w: &Workload, batched: bool) -> Result<FloorTiming> {
        let t0 = Instant::now();
        let specs: Vec<ServiceSpec> = w.all().collect();
        let tables: Vec<Vec<u8>> = specs
            .iter()
            .zip(0u32..)
            .map(|(s, id)| self.table(w, id, s))
            .collect();
        let compute = t0.elapsed();
        let t1 = Instant::now();
        let entries = if batched {
            write_batched(
                w,
                &specs,
                &tables,
                &self.services,
                &self.backends,
                &self.luts,
            )?
        } else {
            let mut entries = 0u64;
            for ((s, lut), id) in specs.iter().zip(&tables).zip(0u32..) {
                entries += self.write_one(w, id, s, lut)?;
            }
            entries
        };
        Ok(FloorTiming {
            maglev_compute_s: compute.as_secs_f64(),
            map_update_s: t1.elapsed().as_secs_f64(),
            entries,
        })
    }

    fn write_one(&self, w: &Workload, id: u32, s: &ServiceSpec, lut: &[u8]) -> Result<u64> {
        let mut entries = 0;
        for (ep, j) in s.endpoints.iter().zip(0u32..) {
            let bid = id * w.backends + j;
            self.backends
                .update(&bid.to_ne_bytes(), &backend_value(ep))?;
            entries += 1;
        }
        for (ids, chunk) in lut.chunks(LUT_BYTES).zip(0u32..) {
            self.luts.update(&lut_key(id, chunk), ids)?;
            entries += 1;
        }
        for key in frontends(w, s) {
            self.services.update(&key, &service_value(id, w.backends))?;
            entries += 1;
        }
        Ok(entries)
    }

    /// After [`Floor::load`]: the changed Service's table recomputed and its backends, LUT and
    /// frontend rewritten (what a controller does for one EndpointSlice change).
    pub fn change(&self, w: &Workload) -> Result<FloorTiming> {
        let id = w.changed_index();
        let s = w.service_changed(id);
        let t0 = Instant::now();
        let lut = self.table(w, id, &s);
        let compute = t0.elapsed();
        let t1 = Instant::now();
        let entries = self.write_one(w, id, &s, &lut)?;
        Ok(FloorTiming {
            maglev_compute_s: compute.as_secs_f64(),
            map_update_s: t1.elapsed().as_secs_f64(),
            entries,
        })
    }
}

fn lut_key(id: u32, chunk: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&id.to_ne_bytes());
    k[4..].copy_from_slice(&chunk.to_ne_bytes());
    k
}

fn service_value(id: u32, count: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..4].copy_from_slice(&id.to_ne_bytes());
    v[12..16].copy_from_slice(&count.to_ne_bytes());
    v
}

fn write_batched(
    w: &Workload,
    specs: &[ServiceSpec],
    tables: &[Vec<u8>],
    services: &Map,
    backends: &Map,
    luts: &Map,
) -> Result<u64> {
    let mut entries = 0u64;
    // Same order as the per-entry path, chunk by chunk: backends, LUTs, then frontends.
    for (c, chunk) in specs.chunks(BATCH).enumerate() {
        let first = u32::try_from(c * BATCH).unwrap_or(0);
        let (mut bk, mut bv) = (Vec::new(), Vec::new());
        let (mut lk, mut lv) = (Vec::new(), Vec::new());
        let (mut fk, mut fv) = (Vec::new(), Vec::new());
        for (off, s) in chunk.iter().enumerate() {
            let id = first + u32::try_from(off).unwrap_or(0);
            for (j, ep) in s.endpoints.iter().enumerate() {
                let bid = id * w.backends + u32::try_from(j).unwrap_or(0);
                bk.extend_from_slice(&bid.to_ne_bytes());
                bv.extend_from_slice(&backend_value(ep));
            }
            if let Some(t) = tables.get(id as usize) {
                for (ids, chunk) in t.chunks(LUT_BYTES).zip(0u32..) {
                    lk.extend_from_slice(&lut_key(id, chunk));
                    lv.extend_from_slice(ids);
                }
            }
            for key in frontends(w, s) {
                fk.extend_from_slice(&key);
                fv.extend_from_slice(&service_value(id, w.backends));
            }
        }
        backends.update_batch(&bk, &bv)?;
        luts.update_batch(&lk, &lv)?;
        services.update_batch(&fk, &fv)?;
        entries += ((bk.len() / 4) + (lk.len() / 8) + (fk.len() / 20)) as u64;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maglev_fills_evenly() {
        let b: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}:80")).collect();
        let lut = maglev(&b, 16381);
        assert_eq!(lut.len(), 16381);
        let mut counts = [0u32; 10];
        for x in &lut {
            counts[*x as usize] += 1;
        }
        // Maglev's guarantee: every backend gets floor(M/N) or ceil(M/N) slots (near-perfect).
        assert!(
            counts.iter().all(|&c| (1630..=1647).contains(&c)),
            "{counts:?}"
        );
        // Replacing one backend moves few slots of the others.
        let mut b2 = b.clone();
        b2[0] = "10.0.1.0:80".into();
        let lut2 = maglev(&b2, 16381);
        let moved = lut
            .iter()
            .zip(&lut2)
            .filter(|(a, c)| a != c && **a != 0)
            .count();
        assert!(moved < 16381 / 10, "{moved}");
    }
}
