//! The export rules against RFC 4271 §5.1 (attributes per peer type) and §9.2 (Update-Send),
//! RFC 1997 (well-known communities) and the export policy, without sockets. This file holds
//! the fixtures; the tests are in `update_send.rs` (§9.2, RFC 1997), `attributes.rs` (§5.1,
//! RFC 8950, RFC 4456) and `policy.rs` (export policy, in-place changes).

mod attributes;
mod policy;
mod update_send;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgpd_wire::{AsPath, AsSegment, Community, LargeCommunity, NextHop, PathAttributes};
use ipnet::IpNet;

use super::{Before, Exporter, OutChange, OutEntry, PreviousExport, Target, update_out};
use crate::policy::{
    Actions, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED, Policy, PolicyIndex, PrefixMatch,
    Statement,
};
use crate::rib::{Attrs, LOCAL, Path, PeerId, PrefixMap, SourceInfo, Sources};

const LOCAL_AS: u32 = 65001;
const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The next hop of paths learnt from peers.
const THEIR_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Four peers besides ourselves: two internal, two external.
struct World {
    sources: Sources,
    ibgp: PeerId,
    ibgp2: PeerId,
    ebgp: PeerId,
    ebgp2: PeerId,
}

fn world() -> World {
    let mut sources = Sources::default();
    let mut add = |address: &str, ebgp: bool| {
        let id = sources.allocate();
        sources.set(
            id,
            SourceInfo {
                address: address.parse().unwrap(),
                router_id: Ipv4Addr::new(10, 0, 0, 1),
                ebgp,
            },
        );
        id
    };
    let ibgp = add("10.0.0.2", false);
    let ibgp2 = add("10.0.0.5", false);
    let ebgp = add("10.0.0.3", true);
    let ebgp2 = add("10.0.0.4", true);
    sources.set(
        LOCAL,
        SourceInfo {
            address: IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
            router_id: Ipv4Addr::new(1, 1, 1, 1),
            ebgp: false,
        },
    );
    World {
        sources,
        ibgp,
        ibgp2,
        ebgp,
        ebgp2,
    }
}

/// A session to `peer` with both our next hops, no RFC 8950.
fn target(peer: PeerId, ebgp: bool) -> Target {
    Target {
        local_as: LOCAL_AS,
        peer,
        ebgp,
        nh_v4: Some(OUR_V4),
        nh_v6: Some(OUR_V6),
        ext_nh_v4: false,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A path as learnt from a peer: AS_PATH `65010 65020`, MED 50, LOCAL_PREF 200,
/// ORIGINATOR_ID and CLUSTER_LIST set, one community.
fn learnt() -> PathAttributes {
    PathAttributes {
        as_path: AsPath {
            segments: vec![AsSegment::Sequence(vec![65010, 65020])],
        },
        next_hop: Some(THEIR_V4),
        med: Some(50),
        local_pref: Some(200),
        communities: vec![Community(65010 << 16 | 1)],
        originator_id: Some(Ipv4Addr::new(10, 9, 9, 9)),
        cluster_list: vec![Ipv4Addr::new(10, 8, 8, 8)],
        ..PathAttributes::default()
    }
}

fn path(peer: PeerId, pa: PathAttributes, nh: NextHop) -> Path {
    Path::new(
        peer,
        0,
        Arc::new(Attrs {
            path: Arc::new(pa),
            next_hop: nh,
        }),
        0,
    )
}

/// A path learnt from `peer` with [`learnt`]'s attributes and next hop.
fn from_peer(peer: PeerId) -> Path {
    path(peer, learnt(), NextHop::V4(THEIR_V4))
}

/// A local route as `add_local_route` stores it (unspecified next hop = ourselves).
fn local(pa: PathAttributes, v4: bool) -> Path {
    let nh = if v4 {
        NextHop::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        NextHop::V6 {
            global: Ipv6Addr::UNSPECIFIED,
            link_local: None,
        }
    };
    path(LOCAL, pa, nh)
}

/// The attributes `best` is exported with to `t` under `policy`; `None`: not exported.
fn export_with(
    w: &World,
    t: Target,
    policy: &Policy,
    prefix: &str,
    best: &Path,
) -> Option<Arc<Attrs>> {
    let idx = PolicyIndex::new(policy);
    Exporter::new(t, policy, &idx)
        .export(&net(prefix), Some(best), &w.sources)
        .map(|(_, a)| a)
}

fn export(w: &World, t: Target, prefix: &str, best: &Path) -> Option<Arc<Attrs>> {
    export_with(w, t, &Policy::accept_all(), prefix, best)
}

fn seq(v: &[u32]) -> Vec<AsSegment> {
    vec![AsSegment::Sequence(v.to_vec())]
}

fn statement(prefixes: Vec<PrefixMatch>, actions: Actions) -> Statement {
    Statement { prefixes, actions }
}
