//! Polling for a condition with a deadline, keeping what was last seen.
//!
//! Daemons converge asynchronously, so tests poll. On timeout the error carries the last
//! observation (the peer's own JSON, the last command error) so the failure explains itself.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// One observation of a condition polled by [`wait_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// The condition holds; polling stops and this value is returned.
    Ready(T),
    /// Not yet; the text describes what was seen (reported on timeout).
    NotYet(String),
}

/// Polls `check` every `poll` until it returns [`Check::Ready`] or `timeout` elapses.
///
/// An `Err` from `check` does not stop polling (a daemon's socket may not exist yet); it becomes
/// the last observation. The condition is always evaluated at least once, and once more at the
/// deadline, so a slow machine does not fail a check that would pass.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<Check<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        let last = match check() {
            Ok(Check::Ready(v)) => return Ok(v),
            Ok(Check::NotYet(obs)) => obs,
            Err(e) => format!("error: {e}"),
        };
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        thread::sleep(poll.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Polls a boolean condition; on timeout the error holds the last `Err` seen (or says the
/// condition was still false). Prefer [`wait_for`] when there is something useful to report.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    wait_for(what, timeout, poll, || {
        Ok(if cond()? {
            Check::Ready(())
        } else {
            Check::NotYet("condition still false".into())
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn returns_value_when_ready() {
        let mut n = 0;
        let v = wait_for(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                Ok(if n >= 3 {
                    Check::Ready(n)
                } else {
                    Check::NotYet(format!("n={n}"))
                })
            },
        )
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn timeout_reports_last_observation() {
        let mut n = 0;
        let e = wait_for::<()>("never", Duration::ZERO, Duration::ZERO, || {
            n += 1;
            Ok(Check::NotYet(format!("saw {n}")))
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("saw 1"), "{msg}");
        assert!(msg.contains("never"), "{msg}");
    }

    #[test]
    fn errors_become_observations() {
        let e = wait_until("x", Duration::ZERO, Duration::ZERO, || {
            Err(Error::InvalidCidr {
                input: "peer said no".into(),
                reason: "test",
            })
        })
        .unwrap_err();
        assert!(e.to_string().contains("peer said no"));
    }
}
