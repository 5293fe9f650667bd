//! Go `time.Duration` strings, as Cilium's flags take them.
//!
//! The grammar and the limit are Go's `time.ParseDuration` (`src/time/format.go`): a sequence
//! of decimal numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`,
//! `s`, `m`, `h`), adding up to at most `i64::MAX` nanoseconds (`2562047h47m16.854775807s`,
//! about 292 years), computed in integers the way Go does (a fraction is scaled through a
//! float only below its unit, so `1.5h` is exact). Two deliberate differences: surrounding
//! white space is trimmed, and negative durations are refused (Go accepts `-1s`; no flag of
//! ours means anything by it).

use std::time::Duration;

/// The largest duration Go's `time.Duration` holds: `i64::MAX` nanoseconds.
pub const GO_MAX_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

/// Errors of [`parse_go_duration`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid number in duration at {at:?}")]
    Number { at: String },
    #[error("unknown or missing unit in duration at {at:?} (ns, us, ms, s, m, h)")]
    Unit { at: String },
    #[error("negative durations are not allowed")]
    Negative,
    #[error(
        "duration out of range: Go's time.Duration holds at most 2562047h47m16.854775807s (about 292 years)"
    )]
    Overflow,
}

/// `1 << 63`: Go's bound on every intermediate sum (the last one must be one less).
const LIMIT: u64 = 1 << 63;

/// Parses a Go `time.Duration` string as Cilium's flags take them: `15s`, `500ms`, `1m30s`,
/// `1.5s`, `.5s`, `0`. Accepts exactly what Go's `time.ParseDuration` accepts (trimmed,
/// non-negative; see the module docs), up to [`GO_MAX_DURATION`].
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Number { at: s.into() });
    }
    let mut rest = s;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let at = rest;
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(DurationError::Number { at: at.into() });
        }
        let (whole, tail) = split_digits(rest);
        let v = leading_int(whole)?;
        let (frac, tail) = match tail.strip_prefix('.') {
            Some(t) => split_digits(t),
            None => ("", tail),
        };
        if whole.is_empty() && frac.is_empty() {
            // No digits (`.s`).
            return Err(DurationError::Number { at: at.into() });
        }
        let unit_len = tail
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let unit: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::Unit { at: tail.into() }),
        };
        if v > LIMIT / unit {
            return Err(DurationError::Overflow);
        }
        let mut v = v * unit;
        let (f, scale) = leading_fraction(frac);
        if f > 0 {
            // As Go: the fraction of one unit (at most 3.6e12 ns, an hour) through a float,
            // which is nanosecond-exact at that size.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "Go's arithmetic, on values below 2^53"
            )]
            let part = (f as f64 * (unit as f64 / scale)) as u64;
            v += part;
            if v > LIMIT {
                return Err(DurationError::Overflow);
            }
        }
        // Both at most 2^63: no wrap.
        total += v;
        if total > LIMIT {
            return Err(DurationError::Overflow);
        }
        rest = next;
    }
    if total > LIMIT - 1 {
        return Err(DurationError::Overflow);
    }
    Ok(Duration::from_nanos(total))
}

/// The leading ASCII digits of `s`, and the rest.
fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// Go's `leadingInt`: the digits' value, refusing anything above 2^63.
fn leading_int(digits: &str) -> Result<u64, DurationError> {
    let mut x: u64 = 0;
    for b in digits.bytes() {
        if x > LIMIT / 10 {
            return Err(DurationError::Overflow);
        }
        x = x * 10 + u64::from(b - b'0');
        if x > LIMIT {
            return Err(DurationError::Overflow);
        }
    }
    Ok(x)
}

/// Go's `leadingFraction`: the digits' value and 10^(digits used); digits past what fits in
/// 63 bits are ignored (they cannot change the result by a nanosecond).
fn leading_fraction(digits: &str) -> (u64, f64) {
    let mut x: u64 = 0;
    let mut scale = 1f64;
    for b in digits.bytes() {
        if x > (LIMIT - 1) / 10 {
            break;
        }
        let y = x * 10 + u64::from(b - b'0');
        if y > LIMIT {
            break;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn go_durations() {
        assert_eq!(ok("15s"), Duration::from_secs(15));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("200us"), Duration::from_micros(200));
        assert_eq!(ok("200µs"), Duration::from_micros(200));
        assert_eq!(ok("200μs"), Duration::from_micros(200));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
        // Go's own cases (`time_test.go`): fractions of an hour are nanosecond-exact.
        assert_eq!(ok("0.3333333333333333333h"), Duration::from_secs(1200));
        assert_eq!(ok("0.100000000000000000000h"), Duration::from_secs(360));
        assert_eq!(ok("1.004h"), Duration::new(3614, 400_000_000));
    }

    #[test]
    fn refused_like_go() {
        for bad in [
            "",
            "15",
            "s",
            "1x",
            "1.2.3s",
            "5 s",
            ".s",
            ".",
            "+",
            "1s2",
            "1sm",
            "3000000h.",
            "9.3e-3s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Negative));
        assert!(matches!(
            parse_go_duration("1d"),
            Err(DurationError::Unit { .. })
        ));
    }

    #[test]
    fn the_limit_is_gos() {
        // Exactly i64::MAX nanoseconds, however it is written, and not one more.
        assert_eq!(ok("9223372036854775807ns"), GO_MAX_DURATION);
        assert_eq!(ok("2562047h47m16.854775807s"), GO_MAX_DURATION);
        assert_eq!(ok("9223372036.854775807s"), GO_MAX_DURATION);
        assert_eq!(ok("9223372036s854775807ns"), GO_MAX_DURATION);
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * 3600));
        for over in [
            "9223372036854775808ns",
            "2562047h47m16.854775808s",
            "9223372036.854775808s",
            "2562048h",
            "153722868m",
            "9223372037s",
            "9223372036s854775808ns",
            "1ns9223372036854775807ns",
            // The audit's case: accepted before (Rust's Duration holds it) and then fatal to
            // `Instant + renew_deadline`.
            "4700000000000000h",
            "99999999999999999999h",
            "184467440737095516160s",
            "9999999999999999999999999999999999999999999999999999999999999h",
        ] {
            assert_eq!(
                parse_go_duration(over),
                Err(DurationError::Overflow),
                "{over:?}"
            );
        }
        // The message states the limit that is applied.
        let msg = DurationError::Overflow.to_string();
        assert!(msg.contains("2562047h47m16.854775807s"), "{msg}");
        assert!(msg.contains("292 years"), "{msg}");
        assert_eq!(
            GO_MAX_DURATION.as_nanos(),
            u128::try_from(i64::MAX).unwrap()
        );
    }
}
