//! CPU accounting: the machine's /proc/stat columns and our threads' own CPU clocks.
//!
//! Namespaces share the CPUs, so the node's forwarding work (softirq, mostly) cannot be read
//! per namespace: /proc/stat's busy time over a run covers the load generator, the backend
//! server, the node's packet processing, and whatever other agents ran meanwhile. We report it
//! per operation next to the generator's and the server's own thread CPU; the difference
//! between a mode and mode 0 (same generator, same server, same path without a load balancer)
//! is the load balancer's cost. This kernel has no `CONFIG_IRQ_TIME_ACCOUNTING`, so the softirq
//! column is sampled at ticks (250 Hz) and softirq work is also charged to whatever thread it
//! interrupted.

use serde::{Deserialize, Serialize};

/// One /proc/stat `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
}

/// CPU seconds spent between two snapshots, summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// user + nice.
    pub user_s: f64,
    /// system.
    pub system_s: f64,
    /// softirq (tick-sampled).
    pub softirq_s: f64,
    /// hardirq.
    pub irq_s: f64,
    /// idle + iowait.
    pub idle_s: f64,
    /// Everything but idle, iowait and steal.
    pub busy_s: f64,
}

impl Snapshot {
    /// Reads /proc/stat (zeros if unreadable: the figures then show 0 rather than failing).
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = text.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        Self {
            user: g(0),
            nice: g(1),
            system: g(2),
            idle: g(3),
            iowait: g(4),
            irq: g(5),
            softirq: g(6),
            steal: g(7),
        }
    }

    /// Seconds from `self` to `later`.
    pub fn delta(&self, later: &Snapshot) -> Delta {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        let s = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
        let user_s = s(self.user + self.nice, later.user + later.nice);
        let system_s = s(self.system, later.system);
        let softirq_s = s(self.softirq, later.softirq);
        let irq_s = s(self.irq, later.irq);
        let idle_s = s(self.idle + self.iowait, later.idle + later.iowait);
        let _ = (self.steal, later.steal);
        Delta {
            user_s,
            system_s,
            softirq_s,
            irq_s,
            idle_s,
            busy_s: user_s + system_s + softirq_s + irq_s,
        }
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> std::time::Duration {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes into the local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Pins the calling thread to `cpus` (ignored when empty or when the call fails: pinning is an
/// optimisation, and on a machine with fewer CPUs the run should still happen).
pub fn pin(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch
    // the local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
