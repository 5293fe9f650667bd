//! `bgpInstances[].bmpServers` (Cilium's BMP shape) to bgpd's BMP collectors.

use std::net::IpAddr;

use rackd_model::rackd_types::ObjectCondition;
use rackd_model::rackd_types::ObjectKey;
use rackd_model::rackd_types::condition::types;

use super::problem;

/// The instance's BMP collectors for bgpd. rackd reports the pre-policy Adj-RIB-In and the
/// Loc-RIB; a policy asking for the post-policy Adj-RIB-In gets the pre-policy one, which is
/// said on the ClusterConfig (with Cilium's reject-all import, post-policy is empty anyway).
pub(super) fn servers(
    cc_key: &ObjectKey,
    inst: &rackd_model::cilium::CiliumBGPInstance,
    node_name: &str,
    problems: &mut Vec<ObjectCondition>,
) -> Vec<bgpd::BmpServerConfig> {
    use rackd_model::cilium::BmpMonitoringPolicy as P;
    let mut out = Vec::new();
    for m in &inst.bmp_servers {
        let Ok(ip) = m.peer_address.trim().parse::<IpAddr>() else {
            continue;
        };
        let Ok(port) = u16::try_from(m.peer_port) else {
            continue;
        };
        let (pre, loc) = match m.monitoring_policy {
            P::Pre | P::Post | P::Both => (true, false),
            P::Local => (false, true),
            P::All => (true, true),
        };
        if matches!(m.monitoring_policy, P::Post | P::Both | P::All) {
            problems.push(problem(
                cc_key.clone(),
                types::UNSUPPORTED,
                "BMPPostPolicy",
                format!(
                    "instance {} BMP server {}: the post-policy Adj-RIB-In is not reported; \
                     the pre-policy one is",
                    inst.name, m.name
                ),
            ));
        }
        out.push(bgpd::BmpServerConfig {
            name: m.name.clone(),
            address: std::net::SocketAddr::new(ip, port),
            sys_name: node_name.to_owned(),
            adj_rib_in_pre: pre,
            loc_rib: loc,
            statistics_interval: m
                .statistics_timeout
                .and_then(|t| u64::try_from(t).ok())
                .map(std::time::Duration::from_secs),
        });
    }
    out
}
