//! Address families, the `u128` address arithmetic the allocator works in, and pool blocks.

use std::net::{AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::ParseIntError;

use crate::count::IpCount;

/// An IP address family: the workspace's one type (`rackd-types`), Kubernetes' spelling in
/// JSON.
pub use rackd_types::IpFamily as Family;

/// `ip` as (family, integer); IPv4 addresses occupy the low 32 bits.
pub(crate) fn to_u128(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(v4) => (Family::V4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (Family::V6, u128::from(v6)),
    }
}

/// Inverse of [`to_u128`]. For IPv4 only the low 32 bits are used.
pub(crate) fn from_u128(family: Family, value: u128) -> IpAddr {
    match family {
        // Truncation is intended: IPv4 values never exceed u32::MAX by construction.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Why a pool block could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// Neither `cidr` nor `start` was given.
    #[error("block has neither cidr nor start")]
    Empty,
    /// A `cidr` without a `/`.
    #[error("cidr '{value}' has no prefix length")]
    MissingPrefixLength {
        /// The offending text.
        value: String,
    },
    /// An address that does not parse.
    #[error("{field} '{value}' is not an IP address")]
    InvalidAddress {
        /// `cidr`, `start` or `stop`.
        field: &'static str,
        /// The offending text.
        value: String,
        /// The parser's complaint.
        #[source]
        source: AddrParseError,
    },
    /// A prefix length that is not a number.
    #[error("cidr '{value}' has an invalid prefix length")]
    InvalidPrefixLength {
        /// The offending text.
        value: String,
        /// The parser's complaint.
        #[source]
        source: ParseIntError,
    },
    /// A prefix length longer than the address.
    #[error("prefix length {prefix_len} exceeds {max} bits")]
    PrefixTooLong {
        /// The given prefix length.
        prefix_len: u8,
        /// 32 or 128.
        max: u8,
    },
    /// `start` and `stop` are of different families.
    #[error("start {start} and stop {stop} are of different address families")]
    FamilyMismatch {
        /// The range start.
        start: IpAddr,
        /// The range stop.
        stop: IpAddr,
    },
    /// `stop` is below `start`.
    #[error("start {start} is after stop {stop}")]
    StartAfterStop {
        /// The range start.
        start: IpAddr,
        /// The range stop.
        stop: IpAddr,
    },
}

/// One `spec.blocks[]` entry of a `CiliumLoadBalancerIPPool`: a CIDR or an inclusive range.
///
/// Built only through the validating constructors, so `first <= last` and both are of one family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    family: Family,
    first: u128,
    last: u128,
    from_cidr: bool,
}

impl Block {
    /// A CIDR block. Host bits are masked off, as Cilium does (`prefix.Masked()`).
    pub fn cidr(addr: IpAddr, prefix_len: u8) -> Result<Self, BlockError> {
        let (family, value) = to_u128(addr);
        let bits = family.bits();
        if prefix_len > bits {
            return Err(BlockError::PrefixTooLong {
                prefix_len,
                max: bits,
            });
        }
        let host_bits = u32::from(bits - prefix_len);
        let host_mask: u128 = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = value & !host_mask;
        Ok(Block {
            family,
            first,
            last: first | host_mask,
            from_cidr: true,
        })
    }

    /// A `start`/`stop` block; `stop: None` is the single address `start`.
    pub fn range(start: IpAddr, stop: Option<IpAddr>) -> Result<Self, BlockError> {
        let stop_ip = stop.unwrap_or(start);
        let (family, first) = to_u128(start);
        let (stop_family, last) = to_u128(stop_ip);
        if family != stop_family {
            return Err(BlockError::FamilyMismatch {
                start,
                stop: stop_ip,
            });
        }
        if first > last {
            return Err(BlockError::StartAfterStop {
                start,
                stop: stop_ip,
            });
        }
        Ok(Block {
            family,
            first,
            last,
            from_cidr: false,
        })
    }

    /// Builds a block from the CRD's string fields; an empty string means "unset".
    /// A non-empty `cidr` wins over `start`/`stop`, as in Cilium's `ipRangeFromBlock`.
    pub fn parse(cidr: &str, start: &str, stop: &str) -> Result<Self, BlockError> {
        let cidr = cidr.trim();
        if !cidr.is_empty() {
            let (addr, len) =
                cidr.split_once('/')
                    .ok_or_else(|| BlockError::MissingPrefixLength {
                        value: cidr.to_owned(),
                    })?;
            let addr: IpAddr = addr.parse().map_err(|source| BlockError::InvalidAddress {
                field: "cidr",
                value: cidr.to_owned(),
                source,
            })?;
            let len: u8 = len
                .parse()
                .map_err(|source| BlockError::InvalidPrefixLength {
                    value: cidr.to_owned(),
                    source,
                })?;
            return Block::cidr(addr, len);
        }
        let start = start.trim();
        if start.is_empty() {
            return Err(BlockError::Empty);
        }
        let parse = |field: &'static str, s: &str| {
            s.parse::<IpAddr>()
                .map_err(|source| BlockError::InvalidAddress {
                    field,
                    value: s.to_owned(),
                    source,
                })
        };
        let start_ip = parse("start", start)?;
        let stop = stop.trim();
        let stop_ip = if stop.is_empty() {
            None
        } else {
            Some(parse("stop", stop)?)
        };
        Block::range(start_ip, stop_ip)
    }

    /// The block's address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// First address of the block.
    pub fn first(&self) -> IpAddr {
        from_u128(self.family, self.first)
    }

    /// Last address of the block.
    pub fn last(&self) -> IpAddr {
        from_u128(self.family, self.last)
    }

    /// Whether the block came from a `cidr` (only those honour `allowFirstLastIPs: No`).
    pub fn is_cidr(&self) -> bool {
        self.from_cidr
    }

    /// Number of addresses in the block (up to 2^128, hence not a `u128`).
    pub fn size(&self) -> IpCount {
        IpCount::from_span(self.first, self.last)
    }

    pub(crate) fn bounds(&self) -> (u128, u128) {
        (self.first, self.last)
    }

    /// With `allowFirstLastIPs: No`, Cilium reserves the first and last address of CIDR
    /// blocks of three or more addresses (so /31, /32, /127, /128 are unaffected).
    pub(crate) fn reserves_first_last(&self, allow_first_last: bool) -> bool {
        self.from_cidr && !allow_first_last && self.last - self.first >= 2
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_masks_host_bits() {
        let b = Block::parse("10.0.0.5/24", "", "").unwrap();
        assert_eq!(b.first().to_string(), "10.0.0.0");
        assert_eq!(b.last().to_string(), "10.0.0.255");
        assert!(b.is_cidr());
    }

    #[test]
    fn whole_spaces() {
        let b = Block::parse("::/0", "", "").unwrap();
        assert_eq!(
            b.size().to_string(),
            "340282366920938463463374607431768211456"
        );
        let b = Block::parse("0.0.0.0/0", "", "").unwrap();
        assert_eq!(b.size().to_string(), "4294967296");
        let b = Block::parse("2001:db8::1/128", "", "").unwrap();
        assert_eq!(b.size().to_string(), "1");
    }

    #[test]
    fn ranges() {
        let b = Block::parse("", "10.0.0.1", "").unwrap();
        assert_eq!(b.first(), b.last());
        let b = Block::parse("", "10.0.0.1", "10.0.0.10").unwrap();
        assert_eq!(b.size().to_string(), "10");
        assert!(!b.is_cidr());
    }

    #[test]
    fn malformed_blocks() {
        assert_eq!(Block::parse("", "", ""), Err(BlockError::Empty));
        assert!(matches!(
            Block::parse("10.0.0.0", "", ""),
            Err(BlockError::MissingPrefixLength { .. })
        ));
        assert!(matches!(
            Block::parse("10.0.0/8", "", ""),
            Err(BlockError::InvalidAddress { field: "cidr", .. })
        ));
        assert!(matches!(
            Block::parse("10.0.0.0/x", "", ""),
            Err(BlockError::InvalidPrefixLength { .. })
        ));
        assert!(matches!(
            Block::parse("10.0.0.0/33", "", ""),
            Err(BlockError::PrefixTooLong {
                prefix_len: 33,
                max: 32
            })
        ));
        assert!(matches!(
            Block::parse("::/129", "", ""),
            Err(BlockError::PrefixTooLong { .. })
        ));
        assert!(matches!(
            Block::parse("", "10.0.0.1", "::1"),
            Err(BlockError::FamilyMismatch { .. })
        ));
        assert!(matches!(
            Block::parse("", "10.0.0.9", "10.0.0.1"),
            Err(BlockError::StartAfterStop { .. })
        ));
        assert!(matches!(
            Block::parse("", "bogus", ""),
            Err(BlockError::InvalidAddress { field: "start", .. })
        ));
        assert!(matches!(
            Block::parse("", "10.0.0.1", "bogus"),
            Err(BlockError::InvalidAddress { field: "stop", .. })
        ));
    }

    #[test]
    fn first_last_reservation() {
        for (cidr, reserves) in [
            ("10.0.0.0/30", true),
            ("10.0.0.0/31", false),
            ("10.0.0.0/32", false),
            ("2001:db8::/126", true),
            ("2001:db8::/127", false),
            ("2001:db8::/128", false),
        ] {
            let b = Block::parse(cidr, "", "").unwrap();
            assert_eq!(b.reserves_first_last(false), reserves, "{cidr}");
            assert!(!b.reserves_first_last(true));
        }
        let r = Block::parse("", "10.0.0.0", "10.0.0.255").unwrap();
        assert!(!r.reserves_first_last(false));
    }
}
