//! `advertisementType: EgressGateway`, rackd's extension (★, cilium#41916): the egress
//! addresses of the `CiliumEgressGatewayPolicy` objects an advertisement entry selects, as
//! host routes from the node that is their active gateway, with the entry's attributes. The
//! router then brings the replies to whichever node SNATs, and the egress address needs no
//! interface and no shared segment (Cilium 1.18+ drops such a policy's traffic).
//!
//! Which addresses this node announces is decided by the egress gateway
//! ([`crate::svclb::egress::announced`]); this module only selects policies and renders.

use std::collections::BTreeSet;

use bgpd_wire::Family;
use ipnet::IpNet;
use rackd_model::Snapshot;
use rackd_model::cilium::{AdvertisementType, BGPAdvertisement};
use rackd_model::selector::{NilSelector, Selector, SelectorError};

use super::{host_route, in_family};

/// The names of the policies some `EgressGateway` entry of any CiliumBGPAdvertisement selects:
/// their `egressIP` is routed by BGP, so a gateway may SNAT to it without the address being on
/// one of its interfaces. Entries with a malformed selector select nothing (the renderer
/// reports them).
pub fn advertised_policies(snap: &Snapshot) -> BTreeSet<String> {
    let selectors: Vec<Selector> = snap
        .bgp_advertisements()
        .flat_map(|a| a.spec.advertisements.iter())
        .filter(|e| e.advertisement_type == AdvertisementType::EgressGateway)
        .filter_map(|e| {
            Selector::compile_optional(e.selector.as_ref(), NilSelector::MatchesNone).ok()
        })
        .collect();
    if selectors.is_empty() {
        return BTreeSet::new();
    }
    snap.egress_gateway_policies()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            selectors.iter().any(|s| s.matches(&labels))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// One `EgressGateway` entry's routes for `family`: per selected policy (by name), the host
/// routes of the addresses this node announces for it (`announced`). Policies with nothing to
/// announce here are left out.
pub(super) fn entry_routes(
    snap: &Snapshot,
    adv: &BGPAdvertisement,
    family: Family,
    announced: &crate::svclb::egress::EgressAnnounced,
) -> Result<Vec<(String, Vec<IpNet>)>, SelectorError> {
    let sel = Selector::compile_optional(adv.selector.as_ref(), NilSelector::MatchesNone)?;
    if announced.is_empty() {
        return Ok(Vec::new());
    }
    Ok(snap
        .egress_gateway_policies()
        .filter(|p| sel.matches(&p.metadata.labels.as_ref()))
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let prefixes: Vec<IpNet> = announced
                .get(&name)?
                .iter()
                .filter(|ip| in_family(ip, family))
                .map(|ip| host_route(*ip))
                .collect();
            (!prefixes.is_empty()).then_some((name, prefixes))
        })
        .collect())
}
