//! Exact address counts. A single IPv6 `/0` holds 2^128 addresses, one more than `u128::MAX`,
//! and a pool may hold many blocks, so counts carry 64 extra bits (Cilium uses `big.Int`).

use std::fmt;

use serde::{Serialize, Serializer};

/// A non-negative count of addresses, exact up to 2^192 - 1 (saturating beyond).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpCount {
    // Value = hi * 2^128 + lo. Field order makes the derived Ord numeric.
    hi: u64,
    lo: u128,
}

impl IpCount {
    /// Zero.
    pub const ZERO: IpCount = IpCount { hi: 0, lo: 0 };

    /// The number of addresses in the inclusive span `first..=last` (`first <= last`).
    pub(crate) fn from_span(first: u128, last: u128) -> Self {
        let (lo, carry) = (last - first).overflowing_add(1);
        IpCount {
            hi: u64::from(carry),
            lo,
        }
    }

    /// Adds, saturating at the maximum.
    #[must_use]
    pub fn saturating_add(self, other: IpCount) -> IpCount {
        let (lo, carry) = self.lo.overflowing_add(other.lo);
        match self
            .hi
            .checked_add(other.hi)
            .and_then(|h| h.checked_add(u64::from(carry)))
        {
            Some(hi) => IpCount { hi, lo },
            None => IpCount {
                hi: u64::MAX,
                lo: u128::MAX,
            },
        }
    }

    /// Subtracts, saturating at zero.
    #[must_use]
    pub fn saturating_sub(self, other: IpCount) -> IpCount {
        if other >= self {
            return IpCount::ZERO;
        }
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        IpCount {
            hi: self.hi - other.hi - u64::from(borrow),
            lo,
        }
    }

    /// The value as a `u128`, if it fits.
    pub fn to_u128(self) -> Option<u128> {
        (self.hi == 0).then_some(self.lo)
    }

    /// An approximation for metrics (Cilium exports `ips_available_total` as a float too).
    pub fn to_f64(self) -> f64 {
        // Precision loss is inherent and acceptable for a gauge.
        (self.hi as f64) * 2f64.powi(128) + (self.lo as f64)
    }
}

impl From<u128> for IpCount {
    fn from(lo: u128) -> Self {
        IpCount { hi: 0, lo }
    }
}

impl From<u64> for IpCount {
    fn from(v: u64) -> Self {
        IpCount {
            hi: 0,
            lo: u128::from(v),
        }
    }
}

impl fmt::Display for IpCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hi == 0 {
            return write!(f, "{}", self.lo);
        }
        // Little-endian 64-bit limbs, divided repeatedly by 10^19 (the largest power of ten in a u64).
        const CHUNK: u128 = 10_000_000_000_000_000_000;
        let mut limbs = [self.lo as u64, (self.lo >> 64) as u64, self.hi];
        let mut chunks = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut rem: u128 = 0;
            for limb in limbs.iter_mut().rev() {
                let cur = (rem << 64) | u128::from(*limb);
                *limb = (cur / CHUNK) as u64;
                rem = cur % CHUNK;
            }
            chunks.push(rem as u64);
        }
        let mut out = String::new();
        for (i, c) in chunks.iter().rev().enumerate() {
            if i == 0 {
                out.push_str(&c.to_string());
            } else {
                out.push_str(&format!("{c:019}"));
            }
        }
        f.write_str(&out)
    }
}

impl Serialize for IpCount {
    /// As a decimal string, the form Cilium writes into condition messages.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decimal_beyond_u128() {
        let two_128 = IpCount::from_span(0, u128::MAX);
        assert_eq!(
            two_128.to_string(),
            "340282366920938463463374607431768211456"
        );
        assert_eq!(two_128.to_u128(), None);
        let four = two_128.saturating_add(two_128);
        assert_eq!(four.to_string(), "680564733841876926926749214863536422912");
        assert_eq!(four.saturating_sub(two_128), two_128);
        let minus_one = two_128.saturating_sub(IpCount::from(1u128));
        assert_eq!(minus_one.to_u128(), Some(u128::MAX));
        assert_eq!(IpCount::ZERO.to_string(), "0");
        assert_eq!(IpCount::ZERO.saturating_sub(two_128), IpCount::ZERO);
    }

    #[test]
    fn seed_figure() {
        // empire-ip-pool: 172.18.255.200/29 + 2001:db8:dead:beef::/64, two IPs used.
        let total = IpCount::from(8u128).saturating_add(IpCount::from(1u128 << 64));
        let avail = total.saturating_sub(IpCount::from(2u64));
        assert_eq!(avail.to_string(), "18446744073709551622");
    }
}
