//! Lease timings: Cilium's flags, defaults and sanitisation order.
//!
//! Cilium's `--l2-announcements-lease-duration`, `--l2-announcements-renew-deadline` and
//! `--l2-announcements-retry-period` (15 s / 5 s / 2 s) are accepted unchanged. Their meaning is
//! kept: other nodes may take over `lease_duration` after the holder's last renewal; the holder
//! gives up (withdraws everything) when it could not renew for `renew_deadline`; renewals are
//! attempted every `retry_period`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The client-go leader-election jitter factor that Cilium's sanitisation compares against.
const JITTER_FACTOR: f64 = 1.2;

/// Lease timings for the node lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimings {
    /// How long other nodes wait after the holder's last renewal before taking over.
    pub lease_duration: Duration,
    /// How long the holder keeps announcing without a successful renewal.
    pub renew_deadline: Duration,
    /// Interval between renewals (and between claim retries).
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    /// Cilium's defaults: 15 s / 5 s / 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One correction made by [`LeaseTimings::sanitise`], for the caller to log as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingFix {
    /// `lease_duration < 1s` was raised to 1 s.
    LeaseDurationRaised,
    /// `renew_deadline < 1ns` was set to 1 s.
    RenewDeadlineDefaulted,
    /// `retry_period < 1ns` was set to 200 ms.
    RetryPeriodDefaulted,
    /// `lease_duration <= renew_deadline`: the deadline was set to half the duration.
    RenewDeadlineHalved,
    /// `renew_deadline <= 1.2 × retry_period`: the retry period was set to half the deadline.
    RetryPeriodHalved,
}

impl LeaseTimings {
    /// The shortest setting etcd can honour: a 1 s TTL (etcd needs `--election-timeout` low
    /// enough for its minimum TTL to be 1 s; see README), renewing every 200 ms and giving up
    /// after 500 ms without a renewal.
    pub const FAST: Self = Self {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(500),
        retry_period: Duration::from_millis(200),
    };

    /// Applies Cilium's sanitisation rules in Cilium's order (v1.17 `l2announcer.go`
    /// `leaseTimings`), returning the corrected timings and the corrections made.
    ///
    /// Rule 5 follows what Cilium's code does (it halves the *renew deadline* into the retry
    /// period: `retry = renew / 2`), not its log text.
    #[must_use]
    pub fn sanitise(self) -> (Self, Vec<TimingFix>) {
        let mut t = self;
        let mut fixes = Vec::new();
        if t.lease_duration < Duration::from_secs(1) {
            t.lease_duration = Duration::from_secs(1);
            fixes.push(TimingFix::LeaseDurationRaised);
        }
        if t.renew_deadline < Duration::from_nanos(1) {
            t.renew_deadline = Duration::from_secs(1);
            fixes.push(TimingFix::RenewDeadlineDefaulted);
        }
        if t.retry_period < Duration::from_nanos(1) {
            t.retry_period = Duration::from_millis(200);
            fixes.push(TimingFix::RetryPeriodDefaulted);
        }
        if t.lease_duration <= t.renew_deadline {
            t.renew_deadline = t.lease_duration / 2;
            fixes.push(TimingFix::RenewDeadlineHalved);
        }
        if t.renew_deadline.as_secs_f64() <= JITTER_FACTOR * t.retry_period.as_secs_f64() {
            t.retry_period = t.renew_deadline / 2;
            fixes.push(TimingFix::RetryPeriodHalved);
        }
        (t, fixes)
    }

    /// The etcd lease TTL in whole seconds (etcd's unit), rounded up so the lease never
    /// outlives less than `lease_duration`.
    #[must_use]
    pub fn ttl_secs(&self) -> i64 {
        let ms = self.lease_duration.as_millis();
        let secs = ms.div_ceil(1000).max(1);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(d: u64, r: u64, p: u64) -> LeaseTimings {
        LeaseTimings {
            lease_duration: Duration::from_millis(d),
            renew_deadline: Duration::from_millis(r),
            retry_period: Duration::from_millis(p),
        }
    }

    #[test]
    fn defaults_are_cilium_and_already_sane() {
        let d = LeaseTimings::default();
        assert_eq!(d, t(15_000, 5_000, 2_000));
        assert_eq!(d.sanitise(), (d, vec![]));
        assert_eq!(d.ttl_secs(), 15);
    }

    #[test]
    fn fast_is_sane() {
        assert_eq!(LeaseTimings::FAST.sanitise().1, vec![]);
        assert_eq!(LeaseTimings::FAST.ttl_secs(), 1);
    }

    #[test]
    fn zeros_follow_cilium_order() {
        let (s, fixes) = t(0, 0, 0).sanitise();
        // 1s, 1s, 200ms -> duration <= deadline -> deadline 500ms -> 500 <= 240? no.
        assert_eq!(s, t(1_000, 500, 200));
        assert_eq!(
            fixes,
            vec![
                TimingFix::LeaseDurationRaised,
                TimingFix::RenewDeadlineDefaulted,
                TimingFix::RetryPeriodDefaulted,
                TimingFix::RenewDeadlineHalved,
            ]
        );
    }

    #[test]
    fn retry_too_close_to_deadline_is_halved() {
        let (s, fixes) = t(15_000, 5_000, 4_500).sanitise();
        assert_eq!(s, t(15_000, 5_000, 2_500));
        assert_eq!(fixes, vec![TimingFix::RetryPeriodHalved]);
    }

    #[test]
    fn deadline_above_duration_is_halved_then_retry() {
        let (s, fixes) = t(4_000, 10_000, 2_000).sanitise();
        assert_eq!(s, t(4_000, 2_000, 1_000));
        assert_eq!(
            fixes,
            vec![TimingFix::RenewDeadlineHalved, TimingFix::RetryPeriodHalved]
        );
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(t(1_500, 500, 200).ttl_secs(), 2);
        assert_eq!(t(2_000, 500, 200).ttl_secs(), 2);
    }
}
