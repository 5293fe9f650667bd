//! This node's `CiliumBGPNodeConfig.status`, as Cilium's agent reports it (v1.17+
//! `reconciler/crd_status.go`, cilium-compat.md §1.5): per instance of the NodeConfig's spec,
//! per configured peer, the session as the speaker runs it. Pure: the peers come in as
//! `rackctl bgp peers` rows.
//!
//! **Rate limit** (so a flapping session or moving route counts cannot storm the API
//! server): a change of anything but the route counts (a peer's state, timers,
//! establishedTime, the set of instances and peers) is written at once, but at most once per
//! [`STATE_INTERVAL`]; a change of route counts alone waits until [`COUNTER_INTERVAL`] has
//! passed since the last write. Cilium's agent writes at most every 5 s whatever changed.

use std::time::Duration;

use rackd_api::BgpPeer;
use rackd_model::cilium::{
    Afi, BGPFamilyRouteCount, CiliumBGPNodeConfigSpec, CiliumBGPNodeConfigStatus,
    CiliumBGPNodeInstanceStatus, CiliumBGPNodePeerStatus, CiliumBGPTimersState, Safi,
};
use rackd_model::k8s_openapi::jiff::{SignedDuration, Timestamp};
use rackd_model::rackd_types::SessionState;
use serde_json::{Value, json};

/// The shortest time between two writes of this node's status.
pub const STATE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a change of route counts alone waits after the last write.
pub const COUNTER_INTERVAL: Duration = Duration::from_secs(10);

/// An establishedTime this close to the one already written is the same session (the
/// uptime is whole seconds, so the derived start wobbles by one).
const SAME_SESSION: i64 = 5;

/// How the desired status differs from what the API holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Nothing to write.
    None,
    /// Only route counts moved.
    Counters,
    /// A state, timer, peer or instance changed.
    State,
}

/// Cilium's spelling of the API's `afi`/`safi` strings, if the CRD knows them.
fn family(afi: &str, safi: &str) -> Option<(Afi, Safi)> {
    Some((
        serde_json::from_value(json!(afi)).ok()?,
        serde_json::from_value(json!(safi)).ok()?,
    ))
}

fn i32_of(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The status of every instance and peer of `spec`, from the speaker's `peers`.
///
/// A running peer belongs to a configured one when the local ASNs agree and either the name
/// or the address does (auto-discovered peers have no address in the spec and get the
/// running one; without either they are left out: `peerAddress` is required). A configured
/// peer the speaker does not run has no `peeringState`, as in Cilium. `previous` keeps a
/// still-established session's `establishedTime` stable.
pub fn node_status(
    spec: &CiliumBGPNodeConfigSpec,
    peers: &[BgpPeer],
    previous: &CiliumBGPNodeConfigStatus,
    now: Timestamp,
) -> Vec<CiliumBGPNodeInstanceStatus> {
    spec.bgp_instances
        .iter()
        .map(|inst| {
            let asn = inst.local_asn.and_then(|a| u32::try_from(a).ok());
            let prev_inst = previous.bgp_instances.iter().find(|i| i.name == inst.name);
            let peers = inst
                .peers
                .iter()
                .filter_map(|p| {
                    let addr = p.peer_address.as_deref();
                    let bare = addr.map(|a| a.split_once('%').map_or(a, |(ip, _)| ip));
                    let running = peers.iter().find(|r| {
                        asn.is_none_or(|a| a == r.local_asn)
                            && ((!r.name.is_empty() && r.name == p.name)
                                || bare.is_some_and(|b| b == r.peer_address))
                    });
                    let peer_address = addr
                        .map(str::to_owned)
                        .or_else(|| running.map(|r| r.peer_address.clone()))?;
                    let mut st = CiliumBGPNodePeerStatus {
                        name: p.name.clone(),
                        peer_address,
                        peer_asn: p.peer_asn,
                        ..Default::default()
                    };
                    let Some(r) = running else {
                        return Some(st);
                    };
                    if p.peer_asn.unwrap_or(0) == 0 && r.peer_asn != 0 {
                        st.peer_asn = Some(i64::from(r.peer_asn));
                    }
                    st.peering_state = Some(r.session_state.as_str().to_owned());
                    st.timers = Some(CiliumBGPTimersState {
                        applied_hold_time_seconds: Some(i32_of(r.applied_hold_time_seconds)),
                        applied_keepalive_seconds: Some(i32_of(r.applied_keep_alive_time_seconds)),
                    });
                    if r.session_state == SessionState::Established {
                        let prev = prev_inst
                            .and_then(|i| i.peers.iter().find(|x| x.name == p.name))
                            .filter(|x| x.peering_state.as_deref() == Some("established"))
                            .and_then(|x| x.established_time.as_deref());
                        st.established_time = Some(established_time(now, r, prev));
                    }
                    st.route_count = r
                        .families
                        .iter()
                        .filter_map(|f| {
                            let (afi, safi) = family(&f.afi, &f.safi)?;
                            Some(BGPFamilyRouteCount {
                                afi,
                                safi,
                                received: Some(i32_of(f.received)),
                                advertised: Some(i32_of(f.advertised)),
                            })
                        })
                        .collect();
                    Some(st)
                })
                .collect();
            CiliumBGPNodeInstanceStatus {
                name: inst.name.clone(),
                local_asn: inst.local_asn,
                peers,
            }
        })
        .collect()
}

/// `now - uptime` in RFC 3339 UTC, or `previous` when that is the same session.
fn established_time(now: Timestamp, r: &BgpPeer, previous: Option<&str>) -> String {
    let secs = i64::try_from(r.uptime_nanoseconds / 1_000_000_000).unwrap_or(i64::MAX);
    let start = now
        .checked_sub(SignedDuration::from_secs(secs))
        .unwrap_or(now);
    if let Some(p) = previous
        && let Ok(t) = p.parse::<Timestamp>()
        && (t.as_second() - start.as_second()).abs() <= SAME_SESSION
    {
        return p.to_owned();
    }
    start.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn without_counts(v: &[CiliumBGPNodeInstanceStatus]) -> Vec<CiliumBGPNodeInstanceStatus> {
    let mut v = v.to_vec();
    for i in &mut v {
        for p in &mut i.peers {
            p.route_count.clear();
        }
    }
    v
}

/// How `desired` differs from `current`.
pub fn classify(
    current: &[CiliumBGPNodeInstanceStatus],
    desired: &[CiliumBGPNodeInstanceStatus],
) -> StatusChange {
    if current == desired {
        StatusChange::None
    } else if without_counts(current) == without_counts(desired) {
        StatusChange::Counters
    } else {
        StatusChange::State
    }
}

/// The status apply for NodeConfig `name` at `resource_version`.
pub fn node_status_patch(
    name: &str,
    resource_version: &str,
    instances: &[CiliumBGPNodeInstanceStatus],
) -> Value {
    json!({
        "apiVersion": super::bgp_plan::API_VERSION,
        "kind": "CiliumBGPNodeConfig",
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": {"bgpInstances": serde_json::to_value(instances).unwrap_or(json!([]))},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_model::cilium::{CiliumBGPNodeInstance, CiliumBGPNodePeer};

    fn spec() -> CiliumBGPNodeConfigSpec {
        CiliumBGPNodeConfigSpec {
            bgp_instances: vec![CiliumBGPNodeInstance {
                name: "i1".into(),
                local_asn: Some(65001),
                peers: vec![
                    CiliumBGPNodePeer {
                        name: "tor".into(),
                        peer_address: Some("10.0.0.1".into()),
                        peer_asn: Some(0),
                        ..Default::default()
                    },
                    CiliumBGPNodePeer {
                        name: "gw".into(),
                        peer_asn: Some(65000),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }
    }

    fn running(state: SessionState, uptime: u64, received: u64) -> BgpPeer {
        BgpPeer {
            name: "tor".into(),
            local_asn: 65001,
            peer_asn: 65000,
            peer_address: "10.0.0.1".into(),
            session_state: state,
            uptime_nanoseconds: uptime * 1_000_000_000,
            applied_hold_time_seconds: 90,
            applied_keep_alive_time_seconds: 30,
            families: vec![rackd_api::PeerFamily {
                afi: "ipv4".into(),
                safi: "unicast".into(),
                received,
                advertised: 2,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn peers_get_the_running_state_and_unknown_ones_none() {
        let st = node_status(
            &spec(),
            &[running(SessionState::Established, 60, 3)],
            &CiliumBGPNodeConfigStatus::default(),
            t("2026-12-06T10:00:00Z"),
        );
        assert_eq!(st.len(), 1);
        let i = &st[0];
        assert_eq!(i.local_asn, Some(65001));
        assert_eq!(
            i.peers.len(),
            1,
            "a peer with no address at all is left out"
        );
        let p = &i.peers[0];
        assert_eq!(p.peering_state.as_deref(), Some("established"));
        assert_eq!(p.peer_asn, Some(65000), "learnt ASN for peerASN 0");
        assert_eq!(p.established_time.as_deref(), Some("2026-12-06T09:59:00Z"));
        assert_eq!(
            p.timers.as_ref().and_then(|t| t.applied_hold_time_seconds),
            Some(90)
        );
        assert_eq!(p.route_count[0].received, Some(3));

        let idle = node_status(&spec(), &[], &Default::default(), Timestamp::now());
        assert_eq!(idle[0].peers[0].peering_state, None);
        let active = node_status(
            &spec(),
            &[running(SessionState::Active, 0, 0)],
            &Default::default(),
            Timestamp::now(),
        );
        assert_eq!(active[0].peers[0].peering_state.as_deref(), Some("active"));
        assert_eq!(active[0].peers[0].established_time, None);
    }

    #[test]
    fn established_time_is_stable_across_a_second_of_uptime_and_moves_on_a_new_session() {
        let first = node_status(
            &spec(),
            &[running(SessionState::Established, 60, 3)],
            &Default::default(),
            t("2026-12-06T10:00:00Z"),
        );
        let prev = CiliumBGPNodeConfigStatus {
            bgp_instances: first.clone(),
            conditions: Vec::new(),
        };
        // 1.9 s later the uptime reads 61 s: the derived start moved by 0.9 s → rounding.
        let later = node_status(
            &spec(),
            &[running(SessionState::Established, 61, 3)],
            &prev,
            t("2026-12-06T10:00:02Z"),
        );
        assert_eq!(classify(&first, &later), StatusChange::None);
        // A new session (uptime reset).
        let new = node_status(
            &spec(),
            &[running(SessionState::Established, 1, 0)],
            &prev,
            t("2026-12-06T10:05:00Z"),
        );
        assert_eq!(classify(&first, &new), StatusChange::State);
        assert_eq!(
            new[0].peers[0].established_time.as_deref(),
            Some("2026-12-06T10:04:59Z")
        );
    }

    #[test]
    fn counters_alone_are_a_lesser_change() {
        let now = Timestamp::now();
        let a = node_status(
            &spec(),
            &[running(SessionState::Established, 9, 3)],
            &Default::default(),
            now,
        );
        let prev = CiliumBGPNodeConfigStatus {
            bgp_instances: a.clone(),
            conditions: Vec::new(),
        };
        let b = node_status(
            &spec(),
            &[running(SessionState::Established, 9, 4)],
            &prev,
            now,
        );
        assert_eq!(classify(&a, &b), StatusChange::Counters);
        let c = node_status(&spec(), &[running(SessionState::Idle, 0, 0)], &prev, now);
        assert_eq!(classify(&a, &c), StatusChange::State);
        assert_eq!(classify(&a, &a), StatusChange::None);
    }

    #[test]
    fn the_patch_is_fenced_and_names_the_node() {
        let p = node_status_patch("node-a", "42", &[]);
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(p["metadata"]["name"], "node-a");
        assert_eq!(p["status"]["bgpInstances"], json!([]));
    }
}
