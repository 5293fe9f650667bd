//! The registry of rackd's eBPF programs: what each one is, where it attaches,
//! where it runs among the other programs on that hook, and how its pins are
//! named. Loading ([`crate::load`]), pinning ([`crate::pin`]) and attachment
//! ([`crate::attach`]) work from these entries only, so a new program is one
//! entry here plus its C source and its handle.

use std::fmt;

/// Where a program attaches on a network device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttachPoint {
    /// tc ingress (TCX on Linux >= 6.6, clsact/cls_bpf before).
    TcIngress,
    /// tc egress (TCX on Linux >= 6.6, clsact/cls_bpf before).
    TcEgress,
    /// XDP: one program per device, no chain (no rackd program attaches
    /// here yet; the ordering policy covers it).
    Xdp,
}

impl AttachPoint {
    /// Prefix of a link pin at this point; the ifindex follows.
    pub const fn link_prefix(self) -> &'static str {
        match self {
            AttachPoint::TcIngress => "tc_ingress_",
            AttachPoint::TcEgress => "tc_egress_",
            AttachPoint::Xdp => "xdp_",
        }
    }

    /// Pin name of the link of a program at this point on `ifindex`.
    pub fn link_name(self, ifindex: u32) -> String {
        format!("{}{ifindex}", self.link_prefix())
    }

    /// The ifindex of a link pin named for this point, `None` for any other name.
    pub fn parse_link_name(self, name: &str) -> Option<u32> {
        name.strip_prefix(self.link_prefix())?.parse().ok()
    }
}

/// Which side of the foreign (not rackd's) programs on a hook a program of
/// ours runs. A TCX chain is laid out as: our `BeforeForeign` programs by
/// rank, then foreign programs, then our `AfterForeign` programs by rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Band {
    /// Before every foreign program: used when another program's verdict
    /// (pass to the stack, drop) must not hide packets from ours.
    BeforeForeign,
    /// After every foreign program: sees only what the others hand on.
    AfterForeign,
}

/// One of rackd's programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgramKind {
    /// The ARP/NDP responder ([`crate::Responder`]).
    L2Responder,
    /// A pass-through packet counter ([`crate::Probe`]). rackd never attaches
    /// it; tests use it as a second program of ours to prove the ordering,
    /// adoption and uninstall across programs in the kernel.
    Probe,
    /// The service load balancer's ingress program ([`crate::lb::ServiceLb`]):
    /// DNAT to backends, reverse SNAT.
    ServiceLb,
    /// The service load balancer's egress program: replies of local
    /// backends, masquerade. A second entry point of [`ProgramKind::ServiceLb`]'s
    /// object (see [`ProgramSpec::owner`]).
    ServiceLbEgress,
    /// The egress gateway's program on rackd's tunnel device (tc ingress):
    /// decapsulated traffic SNATed and forwarded. A second entry point of
    /// [`ProgramKind::ServiceLb`]'s object.
    ServiceLbTunnel,
}

/// The pin names of a program's layout from before per-program folders:
/// maps and links pinned flat in the pin root. Adopted by moving them into
/// the folder of `version` (see [`crate::pin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyLayout {
    /// The layout version these pins have (their maps' shapes).
    pub version: u32,
    /// Map pins, by name.
    pub maps: &'static [&'static str],
    /// Prefix of a link pin; the ifindex follows.
    pub link_prefix: &'static str,
}

/// A map of a program whose layout has not changed since `since`: pinned as
/// `<base>_v<N>` in folder `<name>_v<N>` for every version N from `since` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CarriedMap {
    /// The map's name without its `_v<N>` suffix.
    pub base: &'static str,
    /// The first version with today's layout.
    pub since: u32,
}

impl CarriedMap {
    /// Its pin name in the folder of `version`.
    pub fn name(&self, version: u32) -> String {
        format!("{}_v{version}", self.base)
    }
}

/// Everything the crate needs to know about one program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Which program.
    pub kind: ProgramKind,
    /// Base of its pin folder (`<name>_v<version>`).
    pub name: &'static str,
    /// Layout version of its maps. aya 0.14 reuses a pinned map by name
    /// without checking its shape, so any map layout change bumps this: the
    /// folder changes and a new layout never opens an old map. The C map
    /// names carry the same `_v<version>` suffix (a test checks).
    pub version: u32,
    /// The function in the object that gets attached.
    pub entry: &'static str,
    /// Where it attaches.
    pub attach: AttachPoint,
    /// Which side of foreign programs it runs.
    pub band: Band,
    /// Order among our programs in the same band at the same point: lower
    /// runs first. Unique per (point, band).
    pub rank: u16,
    /// Pins of an older, flat layout to adopt, if any.
    pub legacy: Option<LegacyLayout>,
    /// Maps whose layout survived version bumps: an older folder's pin of one of these is
    /// moved into the new folder under the new name instead of being removed, so its
    /// contents (flows, NAT mappings) outlive the upgrade. The rest start empty.
    pub carried_maps: &'static [CarriedMap],
    /// Set for a second entry point of another program's object: loaded with
    /// that program, its links pinned in that program's folder (so `name`
    /// and `version` of the owner apply to folders). Its own `name` only
    /// names it in logs.
    pub owner: Option<ProgramKind>,
}

impl ProgramSpec {
    /// Whether its link pins need their own name: a second entry point attaching where its
    /// owner does shares the owner's folder, and `tc_ingress_<ifindex>` would be the owner's
    /// link (adoption would switch the owner's link to this program).
    fn own_link_names(&self) -> bool {
        matches!(self.owner, Some(o) if o.spec().attach == self.attach)
    }

    /// Pin name of its link on `ifindex`: `<point prefix><ifindex>`, or
    /// `<point prefix><name>_<ifindex>` for a second entry point at its owner's point.
    pub fn link_name(&self, ifindex: u32) -> String {
        if self.own_link_names() {
            format!("{}{}_{ifindex}", self.attach.link_prefix(), self.name)
        } else {
            self.attach.link_name(ifindex)
        }
    }

    /// The ifindex of one of its link pins, `None` for any other name (the owner's links
    /// included).
    pub fn parse_link_name(&self, name: &str) -> Option<u32> {
        let rest = name.strip_prefix(self.attach.link_prefix())?;
        if self.own_link_names() {
            rest.strip_prefix(self.name)?
                .strip_prefix('_')?
                .parse()
                .ok()
        } else {
            rest.parse().ok()
        }
    }
}

/// The ARP/NDP responder's entry.
pub const L2_RESPONDER: ProgramSpec = ProgramSpec {
    kind: ProgramKind::L2Responder,
    name: "l2_responder",
    version: 1,
    entry: "rackd_l2_tc",
    attach: AttachPoint::TcIngress,
    // It answers ARP/ND and hands everything else on with TCX_NEXT, so
    // running first costs the others nothing, while running after a
    // program that returns TCX_PASS or drops would lose solicitations.
    band: Band::BeforeForeign,
    rank: 0,
    // What the first release pinned in the root itself.
    legacy: Some(LegacyLayout {
        version: 1,
        maps: &[
            "rackd_l2_v4_v1",
            "rackd_l2_v6_v1",
            "rackd_l2_if_v1",
            "rackd_l2_cfg_v1",
        ],
        link_prefix: "rackd_l2_tc_v1_",
    }),
    carried_maps: &[],
    owner: None,
};

/// The test probe's entry: after the responder, before foreign programs, so
/// that attaching it places it relative to one of ours.
pub const PROBE: ProgramSpec = ProgramSpec {
    kind: ProgramKind::Probe,
    name: "probe",
    version: 1,
    entry: "rackd_probe_tc",
    attach: AttachPoint::TcIngress,
    band: Band::BeforeForeign,
    rank: 100,
    legacy: None,
    carried_maps: &[],
    owner: None,
};

/// The service load balancer, ingress: frontends to backends (DNAT, SNAT for
/// remote backends), replies of SNATed and masqueraded flows translated back.
pub const SERVICE_LB: ProgramSpec = ProgramSpec {
    kind: ProgramKind::ServiceLb,
    name: "lb",
    // 2: Maglev chunks of 1,000 ids (were 1,024: a 4,096-byte value took an 8 KiB kernel
    // allocation). 3: the Maglev table as backend ids plus a one- or two-byte position per
    // slot, in two generations (flag LB_SVC_LUT_ALT). Every other map kept its layout and is
    // carried over from version 1.
    version: 3,
    entry: "rackd_lb_in",
    attach: AttachPoint::TcIngress,
    // Before foreign programs so that a CNI's or kube-proxy's handling never
    // sees the frontends it does not know, after the responder (ARP/ND is
    // not ours) and it hands every other packet on with TCX_NEXT.
    band: Band::BeforeForeign,
    rank: 10,
    legacy: None,
    carried_maps: &LB_CARRIED,
    owner: None,
};

/// Every load-balancer map but the Maglev table (whose chunks changed in versions 2 and 3)
/// has kept its version 1 layout. The services map's values gained a flag in version 3
/// (`LB_SVC_LUT_ALT`) that version 1 and 2 entries do not have: they name generation 0,
/// which the new Maglev map does not hold until the controller writes it, as for any table
/// of the older layouts.
const LB_CARRIED: [CarriedMap; 17] = {
    const fn v1(base: &'static str) -> CarriedMap {
        CarriedMap { base, since: 1 }
    }
    [
        v1("rackd_lb_services"),
        v1("rackd_lb_backends"),
        v1("rackd_lb_revnat"),
        v1("rackd_lb_srcrange"),
        v1("rackd_lb_affinity"),
        v1("rackd_lb_ct"),
        v1("rackd_lb_nat"),
        v1("rackd_lb_config"),
        v1("rackd_lb_devices"),
        v1("rackd_lb_masqsrc"),
        v1("rackd_lb_nomasq"),
        v1("rackd_lb_metrics"),
        v1("rackd_lb_drops"),
        v1("rackd_lb_events"),
        v1("rackd_egw_policy"),
        v1("rackd_egw_config"),
        v1("rackd_egw_stats"),
    ]
};

/// The service load balancer, egress: local backends' replies back to the
/// frontend, masquerade. Lives in [`SERVICE_LB`]'s object and folder.
pub const SERVICE_LB_EGRESS: ProgramSpec = ProgramSpec {
    kind: ProgramKind::ServiceLbEgress,
    name: "lb_egress",
    version: SERVICE_LB.version,
    entry: "rackd_lb_out",
    attach: AttachPoint::TcEgress,
    band: Band::BeforeForeign,
    rank: 10,
    legacy: None,
    carried_maps: &[],
    owner: Some(ProgramKind::ServiceLb),
};

/// The egress gateway on rackd's tunnel device, tc ingress. Lives in
/// [`SERVICE_LB`]'s object and folder.
pub const SERVICE_LB_TUNNEL: ProgramSpec = ProgramSpec {
    kind: ProgramKind::ServiceLbTunnel,
    name: "lb_tunnel",
    version: SERVICE_LB.version,
    entry: "rackd_egw_tunnel",
    attach: AttachPoint::TcIngress,
    band: Band::BeforeForeign,
    rank: 20,
    legacy: None,
    carried_maps: &[],
    owner: Some(ProgramKind::ServiceLb),
};

/// Every program rackd has.
pub const REGISTRY: [ProgramSpec; 5] = [
    L2_RESPONDER,
    PROBE,
    SERVICE_LB,
    SERVICE_LB_EGRESS,
    SERVICE_LB_TUNNEL,
];

impl ProgramKind {
    /// Every program, in registry order.
    pub fn all() -> impl Iterator<Item = ProgramKind> {
        REGISTRY.iter().map(|s| s.kind)
    }

    /// Its registry entry.
    pub const fn spec(self) -> &'static ProgramSpec {
        match self {
            ProgramKind::L2Responder => &L2_RESPONDER,
            ProgramKind::Probe => &PROBE,
            ProgramKind::ServiceLb => &SERVICE_LB,
            ProgramKind::ServiceLbEgress => &SERVICE_LB_EGRESS,
            ProgramKind::ServiceLbTunnel => &SERVICE_LB_TUNNEL,
        }
    }

    /// The program whose object and folder this one lives in: itself, or
    /// its [`ProgramSpec::owner`].
    pub const fn object_owner(self) -> ProgramKind {
        match self.spec().owner {
            Some(o) => o,
            None => self,
        }
    }

    /// Name of its pin folder for `version` (the owner's for a second entry
    /// point).
    pub fn folder(self, version: u32) -> String {
        format!("{}_v{version}", self.object_owner().spec().name)
    }

    /// The layout version of a folder named `name`, if it is one of this
    /// program's folders (`<name>_v<digits>`, the owner's name for a second
    /// entry point).
    pub fn parse_folder(self, name: &str) -> Option<u32> {
        let v = name
            .strip_prefix(self.object_owner().spec().name)?
            .strip_prefix("_v")?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
}

impl fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once() {
        for kind in [
            ProgramKind::L2Responder,
            ProgramKind::Probe,
            ProgramKind::ServiceLb,
            ProgramKind::ServiceLbEgress,
            ProgramKind::ServiceLbTunnel,
        ] {
            assert_eq!(REGISTRY.iter().filter(|s| s.kind == kind).count(), 1);
            assert_eq!(kind.spec().kind, kind);
        }
    }

    #[test]
    fn link_pins_of_two_programs_at_one_point_never_collide() {
        for a in &REGISTRY {
            for b in REGISTRY
                .iter()
                .filter(|b| b.kind != a.kind && b.attach == a.attach)
            {
                if a.kind.object_owner() != b.kind.object_owner() {
                    continue; // different folders
                }
                assert_ne!(a.link_name(7), b.link_name(7), "{:?} {:?}", a.kind, b.kind);
                assert_eq!(b.parse_link_name(&a.link_name(7)), None);
            }
            assert_eq!(a.parse_link_name(&a.link_name(7)), Some(7));
        }
        assert_eq!(SERVICE_LB.link_name(3), "tc_ingress_3");
        assert_eq!(SERVICE_LB_EGRESS.link_name(3), "tc_egress_3");
        assert_eq!(SERVICE_LB_TUNNEL.link_name(3), "tc_ingress_lb_tunnel_3");
    }

    #[test]
    fn a_second_entry_point_shares_its_owners_folder_and_version() {
        for spec in REGISTRY.iter().filter(|s| s.owner.is_some()) {
            let owner = spec.kind.object_owner();
            assert_ne!(owner, spec.kind);
            assert_eq!(owner.spec().owner, None, "owners are not nested");
            assert_eq!(spec.version, owner.spec().version);
            assert_eq!(spec.kind.folder(1), owner.folder(1));
            // Both pin links in one folder: their names must differ (a second entry point
            // at its owner's point names its own, see ProgramSpec::link_name).
            assert_ne!(spec.link_name(1), owner.spec().link_name(1));
        }
        assert_eq!(ProgramKind::ServiceLbEgress.folder(3), "lb_v3");
        assert_eq!(ProgramKind::ServiceLbEgress.parse_folder("lb_v3"), Some(3));
        assert_eq!(ProgramKind::ServiceLb.parse_folder("lb_egress_v1"), None);
    }

    #[test]
    fn the_load_balancer_carries_every_map_but_its_maglev_table() {
        let spec = ProgramKind::ServiceLb.spec();
        let names: Vec<String> = spec
            .carried_maps
            .iter()
            .map(|c| c.name(spec.version))
            .collect();
        for n in &names {
            assert!(crate::lb::ALL_MAPS.contains(&n.as_str()), "{n}");
        }
        assert!(!names.iter().any(|n| n == crate::lb::MAP_MAGLEV));
        assert_eq!(names.len() + 1, crate::lb::ALL_MAPS.len());
        assert!(spec.carried_maps.iter().all(|c| c.since <= spec.version));
        for s in REGISTRY.iter().filter(|s| s.kind != ProgramKind::ServiceLb) {
            assert!(s.carried_maps.is_empty(), "{}", s.name);
        }
    }

    #[test]
    fn names_ranks_and_versions_are_unambiguous() {
        for (i, a) in REGISTRY.iter().enumerate() {
            assert!(a.version >= 1, "{}", a.name);
            assert!(!a.name.is_empty() && !a.name.contains('/'));
            for b in REGISTRY.iter().skip(i + 1) {
                assert_ne!(a.name, b.name);
                // One name must not be a folder of the other (`x` vs `x_v1`).
                assert!(!b.name.starts_with(&format!("{}_v", a.name)));
                assert!(!a.name.starts_with(&format!("{}_v", b.name)));
                assert!(
                    (a.attach, a.band, a.rank) != (b.attach, b.band, b.rank),
                    "{} and {} need distinct ranks",
                    a.name,
                    b.name
                );
            }
        }
    }

    #[test]
    fn folder_names_round_trip_and_reject_others() {
        let k = ProgramKind::L2Responder;
        assert_eq!(k.folder(1), "l2_responder_v1");
        assert_eq!(k.parse_folder("l2_responder_v1"), Some(1));
        assert_eq!(k.parse_folder("l2_responder_v12"), Some(12));
        for bad in [
            "l2_responder",
            "l2_responder_v",
            "l2_responder_v1x",
            "l2_responder_v+1",
            "l2_responder_v99999999999",
            "probe_v1",
            "xl2_responder_v1",
        ] {
            assert_eq!(k.parse_folder(bad), None, "{bad}");
        }
    }

    #[test]
    fn link_names_round_trip_per_point() {
        let p = AttachPoint::TcIngress;
        assert_eq!(p.link_name(7), "tc_ingress_7");
        assert_eq!(p.parse_link_name("tc_ingress_7"), Some(7));
        assert_eq!(p.parse_link_name("tc_egress_7"), None);
        assert_eq!(
            AttachPoint::TcEgress.parse_link_name("tc_egress_7"),
            Some(7)
        );
        assert_eq!(p.parse_link_name("tc_ingress_"), None);
        assert_eq!(p.parse_link_name("tc_ingress_x"), None);
        assert_eq!(p.parse_link_name("rackd_l2_v4_v1"), None);
    }

    #[test]
    fn legacy_names_carry_their_version() {
        for spec in &REGISTRY {
            if let Some(l) = spec.legacy {
                assert!(l.version <= spec.version);
                let suffix = format!("_v{}", l.version);
                assert!(l.maps.iter().all(|m| m.ends_with(&suffix)), "{l:?}");
                assert!(l.link_prefix.ends_with(&format!("{suffix}_")), "{l:?}");
            }
        }
    }
}
