//! IP address families.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// IPv4 or IPv6. Serialised with Kubernetes' spelling (`IPv4`/`IPv6`, as in a Service's
/// `ipFamilies`); [`IpFamily::afi_name`] gives Cilium's and GoBGP's (`ipv4`/`ipv6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    /// IPv4 (Kubernetes `IPv4`).
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6 (Kubernetes `IPv6`).
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    /// Both families, IPv4 first.
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    /// The family of `ip`. IPv4-mapped IPv6 addresses count as IPv6, as in Go's `netip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Parses Kubernetes' spelling (`IPv4` / `IPv6`).
    pub fn from_k8s(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    /// Kubernetes' spelling.
    pub fn as_k8s(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    /// Cilium's and GoBGP's AFI name (`ipv4` / `ipv6`).
    pub fn afi_name(self) -> &'static str {
        match self {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        }
    }

    /// Parses Cilium's AFI name (`ipv4` / `ipv6`).
    pub fn from_afi_name(s: &str) -> Option<Self> {
        match s {
            "ipv4" => Some(IpFamily::V4),
            "ipv6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    /// Address length in bits.
    pub fn bits(self) -> u8 {
        match self {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }

    /// 0 for IPv4, 1 for IPv6 (per-family arrays).
    pub fn index(self) -> usize {
        match self {
            IpFamily::V4 => 0,
            IpFamily::V6 => 1,
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_k8s())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for f in IpFamily::ALL {
            assert_eq!(IpFamily::from_k8s(f.as_k8s()), Some(f));
            assert_eq!(IpFamily::from_afi_name(f.afi_name()), Some(f));
            let j = serde_json::to_string(&f).unwrap();
            assert_eq!(j, format!("\"{}\"", f.as_k8s()));
        }
        assert_eq!(IpFamily::from_k8s("ipv4"), None);
        assert_eq!(IpFamily::from_afi_name("IPv4"), None);
        assert_eq!(
            IpFamily::of("::ffff:1.2.3.4".parse().unwrap()),
            IpFamily::V6
        );
    }
}
