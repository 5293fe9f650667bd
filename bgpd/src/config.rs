//! Speaker and peer configuration (serde, so the daemon and the example binary can load it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bgpd_wire::Family;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// The address families this speaker handles; a peer configured with any other is refused
/// ([`ConfigError::UnsupportedFamily`]).
pub const SUPPORTED_FAMILIES: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

/// Graceful restart as restarting speaker (RFC 4724 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestartConfig {
    /// Advertised restart time in seconds (12 bits, 1..=4095).
    pub restart_time: u16,
    /// We are coming back from a restart: set the R bit and the F bits, and defer our
    /// advertisements and End-of-RIB until [`crate::Speaker::set_ready`] (RFC 4724 §4.1).
    #[serde(default)]
    pub restarting: bool,
    /// How long a restarting peer's stale routes are kept after its session is back if its
    /// End-of-RIB never comes (FRR's `stalepath-time`, default 360 s).
    #[serde(default = "default_stale_time")]
    pub stale_path_time: u16,
}

fn default_stale_time() -> u16 {
    360
}

/// The speaker itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Addresses to accept connections on (`[::]:179` is dual-stack); empty = no listener,
    /// every peer must then be active.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Bind the listeners to this interface (SO_BINDTODEVICE).
    #[serde(default)]
    pub listen_interface: Option<String>,
    /// Graceful restart capability; `None` = not advertised (helper mode still works for
    /// peers that advertise it, per peer `graceful_restart`).
    #[serde(default)]
    pub graceful_restart: Option<GracefulRestartConfig>,
}

impl SpeakerConfig {
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_as,
            router_id,
            listen: Vec::new(),
            listen_interface: None,
            graceful_restart: None,
        }
    }
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    pub address: IpAddr,
    /// Expected peer AS; 0 = accept the AS the peer announces.
    pub peer_as: u32,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Never connect; wait for the peer.
    #[serde(default)]
    pub passive: bool,
    #[serde(default = "default_hold")]
    pub hold_time: u16,
    #[serde(default)]
    pub keepalive: Option<u16>,
    #[serde(default = "default_connect_retry")]
    pub connect_retry: u16,
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// TCP source port of our outgoing connections (Cilium's `peers[].localPort` in
    /// CiliumBGPNodeConfigOverride); `None` = an ephemeral port. Bound with SO_REUSEADDR;
    /// see `transport::connect` for what happens while the previous connection on the same
    /// four-tuple is in TIME_WAIT.
    #[serde(default)]
    pub local_port: Option<u16>,
    #[serde(default)]
    pub interface: Option<String>,
    /// eBGP multihop TTL; `None` = 1 for eBGP (directly connected), 255 for iBGP.
    #[serde(default)]
    pub ttl: Option<u8>,
    /// TCP-MD5 password (RFC 2385).
    #[serde(default)]
    pub md5_password: Option<String>,
    /// Address families to negotiate, as text: `ipv4-unicast` (or `ipv4/unicast`),
    /// `ipv6-unicast`; see [`SUPPORTED_FAMILIES`].
    #[serde(default = "default_families")]
    pub families: Vec<Family>,
    /// Offer RFC 8950 (IPv4 NLRI with IPv6 next hops) for IPv4 unicast.
    #[serde(default)]
    pub extended_next_hop: bool,
    /// Import policy; the library default accepts everything.
    #[serde(default)]
    pub import: Policy,
    /// Export policy applied to Loc-RIB best paths; default accepts everything.
    #[serde(default)]
    pub export: Policy,
    /// Act as graceful-restart helper for this peer (keep its routes as stale while it
    /// restarts) and advertise our capability to it when the speaker has one.
    #[serde(default = "default_true")]
    pub graceful_restart: bool,
    /// The restart time we advertise to this peer (RFC 4724 §3, 1..=4095 s); `None` = the
    /// speaker's. Per peer, so changing one peer's time resets that session only.
    #[serde(default)]
    pub restart_time: Option<u16>,
    /// RFC 4271 §6.3 first-AS check on an external peer: an UPDATE whose AS_PATH does not
    /// start with the peer's AS (an empty one included) is treated as a withdraw (RFC 7606
    /// §7.2), the session stays up. On by default, as FRR's `enforce-first-as`. Turn it off
    /// for a route server, which does not prepend its AS (RFC 7947 §2.2.2.1). Ignored for
    /// internal peers. Changing it resets the session, so routes the check refused are
    /// received again.
    #[serde(default = "default_true")]
    pub enforce_first_as: bool,
    /// BFD for this peer (RFC 5880, single hop per RFC 5881; RFC 5882 §4.3 for BGP): the
    /// session is not brought up while BFD is not Up (strict mode), and BFD going down resets
    /// it at once with Cease "BFD Down" (RFC 9384) and withdraws its routes, graceful restart
    /// or not. `None` = no BFD. Changing it re-registers the BFD session without resetting an
    /// established BGP session.
    #[serde(default)]
    pub bfd: Option<BfdConfig>,
    /// Next hop to advertise for IPv4 routes when it cannot be derived from the session.
    #[serde(default)]
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop to advertise for IPv6 routes when it cannot be derived from the session.
    #[serde(default)]
    pub next_hop_v6: Option<Ipv6Addr>,
}

/// A BMP collector this speaker reports to (RFC 7854; `bmpServers` of Cilium's BGP
/// instances). Set with [`crate::Speaker::set_bmp`], apart from the speaker's configuration, so
/// adding a collector never restarts a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmpServerConfig {
    /// Unique among the speaker's collectors.
    pub name: String,
    /// The collector (the router connects to it, RFC 7854 §3.2).
    pub address: SocketAddr,
    /// sysName of the Initiation message (the node name).
    pub sys_name: String,
    /// Report every peer's pre-policy Adj-RIB-In (what the node receives).
    pub adj_rib_in_pre: bool,
    /// Report the Loc-RIB (RFC 9069: what the node selected, its own routes included, so what
    /// it advertises).
    pub loc_rib: bool,
    /// Send a Statistics Report this often (RFC 7854 §4.8; Cilium's `statisticsTimeout`).
    #[serde(default)]
    pub statistics_interval: Option<std::time::Duration>,
}

/// A peer's BFD timers (RFC 5880 §6.8.1), in microseconds as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdConfig {
    /// bfd.DesiredMinTxInterval.
    #[serde(default = "default_bfd_interval")]
    pub desired_min_tx_us: u32,
    /// bfd.RequiredMinRxInterval.
    #[serde(default = "default_bfd_interval")]
    pub required_min_rx_us: u32,
    /// bfd.DetectMult (1..=255).
    #[serde(default = "default_bfd_mult")]
    pub detect_mult: u8,
}

impl Default for BfdConfig {
    fn default() -> Self {
        Self {
            desired_min_tx_us: default_bfd_interval(),
            required_min_rx_us: default_bfd_interval(),
            detect_mult: default_bfd_mult(),
        }
    }
}

/// 300 ms: FRR's and BIRD's default, and what the issue's detection figure uses.
fn default_bfd_interval() -> u32 {
    300_000
}
fn default_bfd_mult() -> u8 {
    3
}

fn default_port() -> u16 {
    179
}
fn default_hold() -> u16 {
    90
}
fn default_connect_retry() -> u16 {
    5
}
fn default_true() -> bool {
    true
}
fn default_families() -> Vec<Family> {
    SUPPORTED_FAMILIES.to_vec()
}

impl PeerConfig {
    /// A peer with defaults: active, hold 90 s, both unicast families, accept-all policies.
    pub fn new(address: IpAddr, peer_as: u32) -> Self {
        Self {
            address,
            peer_as,
            port: default_port(),
            passive: false,
            hold_time: default_hold(),
            keepalive: None,
            connect_retry: default_connect_retry(),
            source_address: None,
            local_port: None,
            interface: None,
            ttl: None,
            md5_password: None,
            families: default_families(),
            extended_next_hop: false,
            import: Policy::accept_all(),
            export: Policy::accept_all(),
            graceful_restart: true,
            restart_time: None,
            enforce_first_as: true,
            bfd: None,
            next_hop_v4: None,
            next_hop_v6: None,
        }
    }

    /// Check what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(ConfigError::HoldTime {
                hold_time: self.hold_time,
            });
        }
        if self.families.is_empty() {
            return Err(ConfigError::NoFamilies { peer: self.address });
        }
        if let Some(&family) = self
            .families
            .iter()
            .find(|f| !SUPPORTED_FAMILIES.contains(f))
        {
            return Err(ConfigError::UnsupportedFamily {
                peer: self.address,
                family,
            });
        }
        if let Some(p) = &self.md5_password
            && (p.is_empty() || p.len() > crate::transport::MD5_MAX_KEY_LEN)
        {
            return Err(ConfigError::Md5KeyLength {
                peer: self.address,
                len: p.len(),
            });
        }
        if self.local_port == Some(0) {
            return Err(ConfigError::LocalPort { peer: self.address });
        }
        if self.ttl == Some(0) {
            return Err(ConfigError::Ttl { peer: self.address });
        }
        if let Some(t) = self.restart_time
            && !(1..=4095).contains(&t)
        {
            return Err(ConfigError::RestartTime { restart_time: t });
        }
        if self.address.is_unspecified() || self.address.is_multicast() {
            return Err(ConfigError::PeerAddress { peer: self.address });
        }
        if let Some(b) = &self.bfd {
            // RFC 5880 §6.8.1: DesiredMinTxInterval MUST NOT be 0, and a RequiredMinRxInterval
            // of 0 would ask the peer to send nothing; §4.1: Detect Mult is never 0.
            if b.desired_min_tx_us == 0 || b.required_min_rx_us == 0 || b.detect_mult == 0 {
                return Err(ConfigError::BfdTimers { peer: self.address });
            }
            // Single hop only (RFC 5881), as Cilium's pull request (cilium#48251) validates.
            if self.ttl.is_some_and(|t| t > 1) {
                return Err(ConfigError::BfdMultihop { peer: self.address });
            }
        }
        Ok(())
    }

    pub(crate) fn connect_retry(&self) -> Duration {
        Duration::from_secs(u64::from(self.connect_retry.max(1)))
    }
}

/// Configuration values that are well-formed but unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold time {hold_time} s: must be 0 or at least 3 (RFC 4271 §4.2)")]
    HoldTime { hold_time: u16 },
    #[error("peer {peer}: no address family configured")]
    NoFamilies { peer: IpAddr },
    #[error(
        "peer {peer}: address family {family} is not supported (only ipv4-unicast and ipv6-unicast)"
    )]
    UnsupportedFamily { peer: IpAddr, family: Family },
    #[error("peer {peer}: TCP-MD5 password length {len} not in 1..=80")]
    Md5KeyLength { peer: IpAddr, len: usize },
    #[error("peer {peer}: local port 0 (leave it unset for an ephemeral port)")]
    LocalPort { peer: IpAddr },
    #[error("peer {peer}: TTL 0")]
    Ttl { peer: IpAddr },
    #[error("peer {peer}: not a unicast address")]
    PeerAddress { peer: IpAddr },
    #[error("router id 0.0.0.0 is not valid (RFC 6286)")]
    RouterId,
    #[error("local AS 0 is not valid (RFC 7607)")]
    LocalAs,
    #[error("graceful restart time {restart_time} s not in 1..=4095 (RFC 4724 §3)")]
    RestartTime { restart_time: u16 },
    #[error("peer {peer}: BFD intervals and detect multiplier must be non-zero (RFC 5880 §6.8.1)")]
    BfdTimers { peer: IpAddr },
    #[error("peer {peer}: BFD runs on single-hop peers only (RFC 5881), not with a multihop TTL")]
    BfdMultihop { peer: IpAddr },
}

impl SpeakerConfig {
    /// Check what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.router_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        if self.local_as == 0 {
            return Err(ConfigError::LocalAs);
        }
        if let Some(gr) = &self.graceful_restart
            && !(1..=4095).contains(&gr.restart_time)
        {
            return Err(ConfigError::RestartTime {
                restart_time: gr.restart_time,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn peer_config_defaults_from_json() {
        let p: PeerConfig =
            serde_json::from_str(r#"{"address":"10.0.0.1","peer_as":65000}"#).unwrap();
        assert_eq!(p, PeerConfig::new("10.0.0.1".parse().unwrap(), 65000));
        p.validate().unwrap();
        // The first-AS check is on unless switched off (a route server's peer).
        assert!(p.enforce_first_as);
        let rs: PeerConfig = serde_json::from_str(
            r#"{"address":"10.0.0.1","peer_as":65000,"enforce_first_as":false}"#,
        )
        .unwrap();
        assert!(!rs.enforce_first_as);
        let p: PeerConfig = serde_json::from_str(
            r#"{"address":"fd00::1","peer_as":0,"families":["ipv6/unicast"],"ttl":3}"#,
        )
        .unwrap();
        assert_eq!(p.families, vec![Family::Ipv6Unicast]);
        // Written back in the same text form, read back the same.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["families"], serde_json::json!(["ipv6-unicast"]));
        assert_eq!(serde_json::from_value::<PeerConfig>(json).unwrap(), p);
        assert_eq!(p.local_port, None);
        let p: PeerConfig =
            serde_json::from_str(r#"{"address":"10.0.0.1","peer_as":1,"local_port":4179}"#)
                .unwrap();
        assert_eq!(p.local_port, Some(4179));
    }

    #[test]
    fn bfd_config_defaults_and_rejects_what_rfc_5880_forbids() {
        let p: PeerConfig =
            serde_json::from_str(r#"{"address":"10.0.0.1","peer_as":65000,"bfd":{}}"#).unwrap();
        assert_eq!(p.bfd, Some(BfdConfig::default()));
        assert_eq!(
            p.bfd
                .as_ref()
                .map(|b| (b.desired_min_tx_us, b.required_min_rx_us, b.detect_mult)),
            Some((300_000, 300_000, 3))
        );
        p.validate().unwrap();
        for (field, value) in [
            ("desired_min_tx_us", "0"),
            ("required_min_rx_us", "0"),
            ("detect_mult", "0"),
        ] {
            let j = format!(r#"{{"address":"10.0.0.1","peer_as":1,"bfd":{{"{field}":{value}}}}}"#);
            let p: PeerConfig = serde_json::from_str(&j).unwrap();
            assert!(
                matches!(p.validate(), Err(ConfigError::BfdTimers { .. })),
                "{j}"
            );
        }
        assert!(
            serde_json::from_str::<PeerConfig>(
                r#"{"address":"10.0.0.1","peer_as":1,"bfd":{"detect_mult":256}}"#
            )
            .is_err()
        );
        let mut p = PeerConfig::new("10.0.0.1".parse().unwrap(), 1);
        p.bfd = Some(BfdConfig::default());
        p.ttl = Some(2);
        assert!(matches!(p.validate(), Err(ConfigError::BfdMultihop { .. })));
        p.ttl = Some(1);
        p.validate().unwrap();
    }

    #[test]
    fn malformed_and_invalid_configs_are_rejected() {
        assert!(
            serde_json::from_str::<PeerConfig>(r#"{"address":"10.0.0.300","peer_as":1}"#).is_err()
        );
        assert!(serde_json::from_str::<PeerConfig>(r#"{"address":"10.0.0.1"}"#).is_err());
        for bad in [r#""x""#, "-1", "65536", "1.5"] {
            let j = format!(r#"{{"address":"10.0.0.1","peer_as":1,"local_port":{bad}}}"#);
            assert!(serde_json::from_str::<PeerConfig>(&j).is_err(), "{j}");
        }
        assert!(
            serde_json::from_str::<PeerConfig>(
                r#"{"address":"10.0.0.1","peer_as":1,"families":["l2vpn"]}"#
            )
            .is_err()
        );
        let evpn: PeerConfig = serde_json::from_str(
            r#"{"address":"10.0.0.1","peer_as":1,"families":["ipv4-unicast","afi-25-safi-70"]}"#,
        )
        .unwrap();
        assert!(matches!(
            evpn.validate(),
            Err(ConfigError::UnsupportedFamily {
                family: Family::Other { afi: 25, safi: 70 },
                ..
            })
        ));
        let mut p = PeerConfig::new("10.0.0.1".parse().unwrap(), 1);
        p.hold_time = 2;
        assert_eq!(p.validate(), Err(ConfigError::HoldTime { hold_time: 2 }));
        p.hold_time = 0;
        p.md5_password = Some("x".repeat(81));
        assert!(matches!(
            p.validate(),
            Err(ConfigError::Md5KeyLength { len: 81, .. })
        ));
        p.md5_password = None;
        p.local_port = Some(0);
        assert_eq!(
            p.validate(),
            Err(ConfigError::LocalPort {
                peer: "10.0.0.1".parse().unwrap()
            })
        );
        p.local_port = Some(179);
        p.validate().unwrap();
        p.families.clear();
        assert!(p.validate().is_err());
        p.families = vec![Family::Ipv4Unicast, Family::Other { afi: 25, safi: 70 }];
        assert_eq!(
            p.validate(),
            Err(ConfigError::UnsupportedFamily {
                peer: "10.0.0.1".parse().unwrap(),
                family: Family::Other { afi: 25, safi: 70 }
            })
        );
        let mut s = SpeakerConfig::new(65001, "0.0.0.0".parse().unwrap());
        assert_eq!(s.validate(), Err(ConfigError::RouterId));
        s.router_id = "1.1.1.1".parse().unwrap();
        s.graceful_restart = Some(GracefulRestartConfig {
            restart_time: 5000,
            restarting: false,
            stale_path_time: 360,
        });
        assert!(s.validate().is_err());
    }
}
