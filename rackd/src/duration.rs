//! Go `time.Duration` strings, as Cilium's flags take them.

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
    #[error("duration out of range (at most about 584 years)")]
    Overflow,
}

/// Parses a Go `time.Duration` string as Cilium's flags take them: `15s`, `500ms`, `1m30s`,
/// `1.5s`, `0`.
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let v: f64 = num
            .parse()
            .map_err(|_| DurationError::Number { at: rest.into() })?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DurationError::Unit { at: tail.into() }),
        };
        total += v * scale;
        rest = next;
    }
    // `from_secs_f64` panics on values it cannot represent (`99999999999999999999h`).
    std::time::Duration::try_from_secs_f64(total).map_err(|_| DurationError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("15s"), Duration::from_secs(15));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("200us"), Duration::from_micros(200));
        for bad in ["", "15", "s", "1x", "-1s", "1.2.3s", "5 s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        // Too large for a Duration: an error, never a panic.
        for huge in [
            "99999999999999999999h",
            "184467440737095516160s",
            "9999999999999999999999999999999999999999999999999999999999999h",
        ] {
            assert_eq!(
                parse_go_duration(huge),
                Err(DurationError::Overflow),
                "{huge:?}"
            );
        }
    }
}
