//! Timers: the next deadline the run loop sleeps until (FSM timers of every slot, the
//! graceful-restart stale-path timers and the restarting speaker's deferral), and what
//! happens when they expire.

use std::net::IpAddr;

use tokio::time::Instant;

use super::Instance;
use super::peers::Which;
use crate::fsm::{Input, Timer};

impl Instance {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = self.deferral_deadline;
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        for p in self.peers.values() {
            p.main.timers.iter().for_each(|t| take(*t));
            if let Some(a) = &p.alt {
                a.timers.iter().for_each(|t| take(*t));
            }
            take(p.stale_deadline);
        }
        d
    }

    pub(super) fn timers(&mut self) {
        let now = Instant::now();
        if self.deferral_deadline.is_some_and(|d| d <= now) {
            self.deferral_deadline = None;
            tracing::info!("graceful restart deferral expired");
            self.check_ready();
        }
        const KINDS: [Timer; Timer::COUNT] = [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ];
        let mut due = Vec::new();
        for (a, p) in &self.peers {
            for t in KINDS {
                if p.main.timers[t.index()].is_some_and(|d| d <= now) {
                    due.push((*a, Which::Main, Some(t)));
                }
                if p.alt
                    .as_ref()
                    .is_some_and(|s| s.timers[t.index()].is_some_and(|d| d <= now))
                {
                    due.push((*a, Which::Alt, Some(t)));
                }
            }
            if p.stale_deadline.is_some_and(|d| d <= now) {
                due.push((*a, Which::Main, None));
            }
        }
        for (a, w, t) in due {
            match t {
                Some(t) => {
                    // An earlier expiry in this round may have stopped it (e.g. hold expiry
                    // stops keepalive).
                    let Some(s) = self.slot_mut(a, w) else {
                        continue;
                    };
                    if s.timers[t.index()].is_none_or(|d| d > now) {
                        continue;
                    }
                    s.timers[t.index()] = None;
                    tracing::trace!(peer = %a, timer = ?t, "timer expired");
                    self.drive(a, w, Input::TimerExpired(t));
                }
                None => {
                    // RFC 4724 §4.2: restart time or stale-path time ran out.
                    let Some(p) = self.peers.get_mut(&a) else {
                        continue;
                    };
                    tracing::info!(peer = %a, "dropping stale routes: peer did not re-sync in time");
                    p.stale_deadline = None;
                    p.stale_families.clear();
                    let id = p.id;
                    self.drop_paths(id, None, true);
                }
            }
        }
    }
}

/// A factor in [0.75, 1.0) from a cheap hash of a counter, the peer and the clock.
pub(super) fn jitter(n: u64, addr: IpAddr) -> f64 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one((n, addr));
    0.75 + (h % 1000) as f64 / 4000.0
}
