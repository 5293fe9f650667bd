//! Per-peer import and export policy: an ordered list of statements, first match wins.
//!
//! Deliberately small (what Cilium's advertisements and the daemon need): match on prefix
//! (with length range), then accept with attribute changes or reject. The exact-prefix index
//! that evaluates and patches the daemon's large export tables is in `index.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpd_wire::{Community, LargeCommunity, PathAttributes};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod index;

pub use index::{ExportPatch, NotExact, PolicyIndex};

/// A prefix filter entry: `prefix` itself or, with a range, any more specific prefix inside it
/// whose length is in `ge..=le` (FRR/Cisco prefix-list semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixMatch {
    pub prefix: IpNet,
    #[serde(default)]
    pub ge: Option<u8>,
    #[serde(default)]
    pub le: Option<u8>,
}

impl PrefixMatch {
    /// Exact match on `prefix`.
    pub fn exact(prefix: IpNet) -> Self {
        Self {
            prefix,
            ge: None,
            le: None,
        }
    }

    /// Any prefix inside `prefix` (including itself).
    pub fn orlonger(prefix: IpNet) -> Self {
        Self {
            prefix,
            ge: None,
            le: Some(prefix.max_prefix_len()),
        }
    }

    pub fn matches(&self, p: &IpNet) -> bool {
        if self.ge.is_none() && self.le.is_none() {
            return self.prefix == *p;
        }
        let lo = self.ge.unwrap_or(self.prefix.prefix_len());
        let hi = self.le.unwrap_or(p.max_prefix_len());
        self.prefix.contains(p) && (lo..=hi).contains(&p.prefix_len())
    }
}

/// What a statement does to a matching route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actions {
    /// Reject the route instead of accepting it.
    #[serde(default)]
    pub reject: bool,
    /// Standard communities to add (RFC 1997), as 32-bit values (`asn << 16 | value`).
    #[serde(default)]
    pub add_communities: Vec<u32>,
    /// Large communities to add (RFC 8092) as `[global admin, local 1, local 2]`.
    #[serde(default)]
    pub add_large_communities: Vec<[u32; 3]>,
    /// LOCAL_PREF to set (sent to iBGP peers; on import, the degree of preference).
    #[serde(default)]
    pub local_pref: Option<u32>,
    /// MED to set.
    #[serde(default)]
    pub med: Option<u32>,
    /// Rewrite the next hop to our own address even towards iBGP peers.
    #[serde(default)]
    pub next_hop_self: bool,
}

/// One policy statement: if any of `prefixes` matches (or the list is empty), apply `actions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(default)]
    pub prefixes: Vec<PrefixMatch>,
    #[serde(default)]
    pub actions: Actions,
}

/// Ordered statements, first match wins; `default_accept` decides unmatched routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub statements: Vec<Statement>,
    pub default_accept: bool,
}

impl Policy {
    /// Accept everything unchanged.
    pub fn accept_all() -> Self {
        Self {
            statements: Vec::new(),
            default_accept: true,
        }
    }

    /// Reject everything (RFC 8212 default for eBGP without configured policy).
    pub fn reject_all() -> Self {
        Self {
            statements: Vec::new(),
            default_accept: false,
        }
    }

    /// The statement that applies to `prefix`: `Ok(Some(i))` statement i accepted it,
    /// `Ok(None)` accepted by default, `Err(())` rejected.
    pub fn evaluate(&self, prefix: &IpNet) -> Verdict {
        for (i, s) in self.statements.iter().enumerate() {
            if s.prefixes.is_empty() || s.prefixes.iter().any(|m| m.matches(prefix)) {
                return if s.actions.reject {
                    Verdict::Reject
                } else {
                    Verdict::Accept(Some(i))
                };
            }
        }
        if self.default_accept {
            Verdict::Accept(None)
        } else {
            Verdict::Reject
        }
    }

    /// The actions of an accepting verdict.
    pub fn actions(&self, verdict: Verdict) -> Option<&Actions> {
        match verdict {
            Verdict::Accept(Some(i)) => self.statements.get(i).map(|s| &s.actions),
            _ => None,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::accept_all()
    }
}

/// Outcome of evaluating a policy for a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Accepted, by the given statement or (None) by default.
    Accept(Option<usize>),
    Reject,
}

impl Actions {
    /// The standard communities to add, typed.
    pub fn communities(&self) -> impl Iterator<Item = Community> + '_ {
        self.add_communities.iter().map(|c| Community(*c))
    }

    /// The large communities to add, typed.
    pub fn large_communities(&self) -> impl Iterator<Item = LargeCommunity> + '_ {
        self.add_large_communities.iter().map(|l| LargeCommunity {
            global_admin: l[0],
            local1: l[1],
            local2: l[2],
        })
    }

    /// Add this statement's communities and large communities to `pa`, each at most once.
    pub fn add_communities_to(&self, pa: &mut PathAttributes) {
        for c in self.communities() {
            if !pa.communities.contains(&c) {
                pa.communities.push(c);
            }
        }
        for l in self.large_communities() {
            if !pa.large_communities.contains(&l) {
                pa.large_communities.push(l);
            }
        }
    }
}

/// Well-known communities (RFC 1997 §"Well-known Communities"): not outside the AS (or
/// confederation), to no peer at all, to no external peer.
pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);

/// An unspecified address of the family of `prefix`, used as the "self" next-hop marker.
pub fn unspecified_for(prefix: &IpNet) -> IpAddr {
    match prefix {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_match_exact_and_ranges() {
        assert!(PrefixMatch::exact(p("10.0.0.0/24")).matches(&p("10.0.0.0/24")));
        assert!(!PrefixMatch::exact(p("10.0.0.0/24")).matches(&p("10.0.0.0/25")));
        let o = PrefixMatch::orlonger(p("10.0.0.0/8"));
        assert!(o.matches(&p("10.1.0.0/16")));
        assert!(o.matches(&p("10.0.0.0/8")));
        assert!(!o.matches(&p("11.0.0.0/16")));
        let r = PrefixMatch {
            prefix: p("10.0.0.0/8"),
            ge: Some(24),
            le: Some(28),
        };
        assert!(!r.matches(&p("10.1.0.0/16")));
        assert!(r.matches(&p("10.1.2.0/24")));
        assert!(!r.matches(&p("10.1.2.0/29")));
        assert!(!PrefixMatch::orlonger(p("10.0.0.0/8")).matches(&p("::/0")));
    }

    #[test]
    fn first_match_wins_and_default() {
        let pol = Policy {
            statements: vec![
                Statement {
                    prefixes: vec![PrefixMatch::orlonger(p("10.0.0.0/8"))],
                    actions: Actions {
                        reject: true,
                        ..Default::default()
                    },
                },
                Statement {
                    prefixes: vec![PrefixMatch::orlonger(p("0.0.0.0/0"))],
                    actions: Actions {
                        local_pref: Some(200),
                        ..Default::default()
                    },
                },
            ],
            default_accept: false,
        };
        assert_eq!(pol.evaluate(&p("10.1.0.0/16")), Verdict::Reject);
        let v = pol.evaluate(&p("192.0.2.0/24"));
        assert_eq!(v, Verdict::Accept(Some(1)));
        assert_eq!(pol.actions(v).unwrap().local_pref, Some(200));
        assert_eq!(pol.evaluate(&p("2001:db8::/32")), Verdict::Reject);
        assert_eq!(
            Policy::accept_all().evaluate(&p("2001:db8::/32")),
            Verdict::Accept(None)
        );
    }

    #[test]
    fn policy_from_json_and_malformed() {
        let pol: Policy = serde_json::from_str(
            r#"{"default_accept":true,"statements":[{"prefixes":[{"prefix":"10.0.0.0/8","le":32}],
               "actions":{"add_communities":[65000100],"local_pref":50}}]}"#,
        )
        .unwrap();
        assert_eq!(pol.statements[0].actions.add_communities, vec![65000100]);
        assert!(serde_json::from_str::<Policy>(r#"{"statements":[]}"#).is_err());
        assert!(
            serde_json::from_str::<Policy>(
                r#"{"default_accept":true,"statements":[{"prefixes":[{"prefix":"10.0.0.0/33"}]}]}"#
            )
            .is_err()
        );
    }
}
