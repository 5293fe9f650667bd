//! Per-object validation: Cilium's CRD OpenAPI schemas, their CEL rules and the
//! checks Cilium's operator/agent apply when they read an object (selectors compile,
//! regexps compile, ranges parse). Cross-object checks live in [`crate::snapshot`].
//!
//! Where Cilium silently ignores an inconsistent object at run time (an egress
//! gateway with both `egressIP` and `interface`), rackd rejects it instead, so the
//! mistake shows up in `rackctl config validate`.
//!
//! About 1,000 lines: one check per schema rule, kind after kind in the CRDs' order, so a rule
//! is found where the schema has it; splitting by kind would scatter the shared helpers.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::cilium::{
    AdvertisementType, AutoDiscoveryMode, BGPAdvertisement, CiliumBGPAdvertisementSpec,
    CiliumBGPClusterConfigSpec, CiliumBGPNodeConfigOverrideSpec, CiliumBGPPeerConfigSpec,
    CiliumEgressGatewayPolicySpec, CiliumL2AnnouncementPolicySpec, CiliumLoadBalancerIPPoolSpec,
    EgressGateway, GROUP, parse_large_community, parse_standard_community,
};
use crate::error::FieldError;
use crate::object::{Kind, Object};
use crate::selector::{self, SelectorError};

const ASN_MAX: i64 = u32::MAX as i64;
const V2: &str = "cilium.io/v2";
const V2ALPHA1: &str = "cilium.io/v2alpha1";

/// Validates an object as read from `api_version`, converting `v2alpha1`-only
/// fields to their `v2` form in place. Returns every violated rule.
pub fn validate_and_convert(obj: &mut Object, api_version: &str) -> Vec<FieldError> {
    let mut e = Errs::default();
    convert(obj, api_version, &mut e);
    validate_into(obj, &mut e);
    e.0
}

/// Validates an object already in its stored version (e.g. from Kubernetes).
pub fn validate(obj: &Object) -> Vec<FieldError> {
    let mut e = Errs::default();
    validate_into(obj, &mut e);
    e.0
}

fn validate_into(obj: &Object, e: &mut Errs) {
    let kind = obj.kind();
    metadata(obj.metadata(), kind, e);
    match obj {
        Object::BgpClusterConfig(o) => cluster_config(&o.spec, e),
        Object::BgpPeerConfig(o) => peer_config(&o.spec, e),
        Object::BgpAdvertisement(o) => advertisement(&o.spec, e),
        Object::BgpNodeConfigOverride(o) => node_override(&o.spec, e),
        Object::LoadBalancerIPPool(o) => lb_pool(&o.spec, e),
        Object::L2AnnouncementPolicy(o) => l2_policy(&o.spec, e),
        Object::EgressGatewayPolicy(o) => egress(&o.spec, e),
        Object::Service(o) => service(o, e),
        Object::Node(o) => node(o, e),
        Object::EndpointSlice(o) => endpoint_slice(o, e),
        Object::Secret(_) => {}
        Object::Pod(o) => pod(o, e),
        // Only its name and labels are read (checked with the metadata above).
        Object::Namespace(_) => {}
    }
}

#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn push(
        &mut self,
        path: impl Into<String>,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.0.push(FieldError {
            path: path.into(),
            problem: problem.into(),
            expected: expected.into(),
            line: None,
        });
    }

    fn range(&mut self, path: &str, v: i64, lo: i64, hi: i64) {
        if !(lo..=hi).contains(&v) {
            self.push(
                path,
                format!("{v} is out of range"),
                format!("an integer in {lo}..={hi}"),
            );
        }
    }

    fn opt_range<T: Into<i64> + Copy>(&mut self, path: &str, v: Option<T>, lo: i64, hi: i64) {
        if let Some(v) = v {
            self.range(path, v.into(), lo, hi);
        }
    }

    fn len(&mut self, path: &str, s: &str, lo: usize, hi: usize) {
        let n = s.chars().count();
        if n < lo || n > hi {
            self.push(
                path,
                format!("{s:?} has length {n}"),
                format!("a string of length {lo}..={hi}"),
            );
        }
    }

    fn selector(&mut self, path: &str, sel: &LabelSelector) {
        if let Err(err) = selector::validate(sel) {
            self.selector_error(path, &err);
        }
    }

    fn opt_selector(&mut self, path: &str, sel: Option<&LabelSelector>) {
        if let Some(s) = sel {
            self.selector(path, s);
        }
    }

    fn selector_error(&mut self, path: &str, err: &SelectorError) {
        let expected = match err {
            SelectorError::InvalidKey { .. } => {
                "a label key: [prefix/]name, name of 1..=63 alphanumerics, '-', '_', '.' starting and ending alphanumeric; prefix a DNS subdomain"
            }
            SelectorError::InvalidValue { .. } => {
                "a label value: empty or up to 63 alphanumerics, '-', '_', '.' starting and ending alphanumeric"
            }
            SelectorError::UnknownOperator { .. } => "one of In, NotIn, Exists, DoesNotExist",
            SelectorError::ValuesRequired { .. } => "at least one value for In/NotIn",
            SelectorError::ValuesForbidden { .. } => "no values for Exists/DoesNotExist",
        };
        let problem = match err {
            SelectorError::InvalidKey { key, reason, .. } => format!("label key {key:?}: {reason}"),
            SelectorError::InvalidValue { value, reason, .. } => {
                format!("label value {value:?}: {reason}")
            }
            SelectorError::UnknownOperator { operator, .. } => {
                format!("unsupported operator {operator:?}")
            }
            SelectorError::ValuesRequired { operator, .. } => format!("{operator} without values"),
            SelectorError::ValuesForbidden { operator, .. } => format!("{operator} with values"),
        };
        self.push(format!("{path}.{}", err.path()), problem, expected);
    }

    /// Reports every name that occurs a second time (lists with `listType=map`).
    fn unique<'a>(&mut self, list_path: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for (i, n) in names.enumerate() {
            if !seen.insert(n) {
                self.push(
                    format!("{list_path}[{i}].name"),
                    format!("duplicate name {n:?}"),
                    "names unique within the list",
                );
            }
        }
    }

    fn ip(&mut self, path: &str, s: &str, allow_zone: bool) -> Option<IpAddr> {
        match parse_ip(s, allow_zone) {
            Some(ip) => Some(ip),
            None => {
                self.push(
                    path,
                    format!("{s:?} is not an IP address"),
                    if allow_zone {
                        "an IPv4 or IPv6 address (IPv6 may carry a %zone)"
                    } else {
                        "an IPv4 or IPv6 address"
                    },
                );
                None
            }
        }
    }

    fn cidr(&mut self, path: &str, s: &str) -> Option<IpNet> {
        match s.parse::<IpNet>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.push(
                    path,
                    format!("{s:?} is not a CIDR"),
                    "an IPv4 or IPv6 prefix such as 10.0.0.0/24 or 2001:db8::/64",
                );
                None
            }
        }
    }

    fn port(&mut self, path: &str, v: Option<i32>) {
        self.opt_range(path, v, 1, 65535);
    }

    fn asn(&mut self, path: &str, v: Option<i64>, lo: i64) {
        self.opt_range(path, v, lo, ASN_MAX);
    }

    fn forbidden_in(&mut self, path: &str, version: &str, use_instead: &str) {
        self.push(
            path,
            format!("field is not part of {version}"),
            use_instead.to_owned(),
        );
    }
}

/// Parses an address as Cilium's peer-address pattern allows: surrounding
/// whitespace, and a non-empty `%zone` after IPv6 addresses.
pub(crate) fn parse_ip(s: &str, allow_zone: bool) -> Option<IpAddr> {
    let s = s.trim();
    let (addr, zone) = match s.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    match zone {
        None => Some(ip),
        Some(z) if allow_zone && ip.is_ipv6() && !z.is_empty() => Some(ip),
        Some(_) => None,
    }
}

// ===== versions =====

fn convert(obj: &mut Object, api_version: &str, e: &mut Errs) {
    let alpha = api_version == V2ALPHA1;
    match obj {
        Object::BgpClusterConfig(o) => {
            for (i, inst) in o.spec.bgp_instances.iter_mut().enumerate() {
                for (j, p) in inst.peers.iter_mut().enumerate() {
                    let Some(r) = p.peer_config_ref.as_mut() else {
                        continue;
                    };
                    let base = format!("spec.bgpInstances[{i}].peers[{j}].peerConfigRef");
                    let group = r.group.take();
                    let kind = r.kind.take();
                    if !alpha {
                        if group.is_some() {
                            e.forbidden_in(
                                &format!("{base}.group"),
                                V2,
                                "only name (group was removed in cilium.io/v2)",
                            );
                        }
                        if kind.is_some() {
                            e.forbidden_in(
                                &format!("{base}.kind"),
                                V2,
                                "only name (kind was removed in cilium.io/v2)",
                            );
                        }
                        continue;
                    }
                    if let Some(g) = group.filter(|g| g != GROUP) {
                        e.push(
                            format!("{base}.group"),
                            format!("{g:?} is not supported"),
                            "cilium.io",
                        );
                    }
                    if let Some(k) = kind.filter(|k| k != Kind::BgpPeerConfig.as_str()) {
                        e.push(
                            format!("{base}.kind"),
                            format!("{k:?} is not supported"),
                            "CiliumBGPPeerConfig",
                        );
                    }
                }
            }
        }
        Object::BgpPeerConfig(o) => {
            if let Some(t) = o.spec.transport.as_mut() {
                let local_port = t.local_port.take();
                if alpha {
                    e.port("spec.transport.localPort", local_port);
                    if t.source_interface.is_some() {
                        e.forbidden_in(
                            "spec.transport.sourceInterface",
                            V2ALPHA1,
                            "apiVersion cilium.io/v2 to use sourceInterface",
                        );
                    }
                } else if local_port.is_some() {
                    e.forbidden_in(
                        "spec.transport.localPort",
                        V2,
                        "no localPort (removed in cilium.io/v2; set localPort per peer in a CiliumBGPNodeConfigOverride)",
                    );
                }
            }
        }
        Object::LoadBalancerIPPool(o) => {
            if let Some(cidrs) = o.spec.cidrs.take() {
                if alpha {
                    // Pre-1.15 name of `blocks`; both are honoured, as Cilium did.
                    o.spec.blocks.extend(cidrs);
                } else {
                    e.forbidden_in("spec.cidrs", V2, "blocks (cidrs was renamed blocks)");
                }
            }
        }
        _ => {}
    }
}

// ===== metadata =====

fn metadata(m: &ObjectMeta, kind: Kind, e: &mut Errs) {
    match m.name.as_deref() {
        None | Some("") => e.push("metadata.name", "missing", "a non-empty name"),
        Some(n) if kind == Kind::Service => {
            if !is_dns_label(n) || !n.starts_with(|c: char| c.is_ascii_lowercase()) {
                e.push(
                    "metadata.name",
                    format!("{n:?} is not a valid Service name"),
                    "an RFC 1035 label: up to 63 lower-case alphanumerics or '-', starting with a letter, ending alphanumeric",
                );
            }
        }
        // apimachinery's ValidateNamespaceName: a DNS-1123 label (no dots, unlike other names).
        Some(n) if kind == Kind::Namespace => {
            if !is_dns_label(n) {
                e.push(
                    "metadata.name",
                    format!("{n:?} is not a valid Namespace name"),
                    "an RFC 1123 label: up to 63 lower-case alphanumerics or '-', starting and ending alphanumeric",
                );
            }
        }
        Some(n) => {
            if !selector::is_dns_subdomain(n) {
                e.push(
                    "metadata.name",
                    format!("{n:?} is not a valid object name"),
                    "an RFC 1123 subdomain: up to 253 lower-case alphanumerics, '-' or '.', starting and ending alphanumeric",
                );
            }
        }
    }
    if let Some(ns) = &m.namespace
        && kind.namespaced()
        && !is_dns_label(ns)
    {
        e.push(
            "metadata.namespace",
            format!("{ns:?} is not a valid namespace"),
            "an RFC 1123 label: up to 63 lower-case alphanumerics or '-'",
        );
    }
    if let Some(labels) = &m.labels {
        // A label map is a selector's matchLabels in disguise: same key/value rules.
        let as_sel = LabelSelector {
            match_labels: Some(labels.clone()),
            match_expressions: None,
        };
        if let Err(err) = selector::validate(&as_sel) {
            let mut sub = Errs::default();
            sub.selector_error("metadata", &err);
            for mut f in sub.0 {
                f.path = f.path.replace("metadata.matchLabels", "metadata.labels");
                e.0.push(f);
            }
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && selector::is_dns_subdomain(s)
}

// ===== BGP =====

fn cluster_config(s: &CiliumBGPClusterConfigSpec, e: &mut Errs) {
    e.opt_selector("spec.nodeSelector", s.node_selector.as_ref());
    let n = s.bgp_instances.len();
    if !(1..=16).contains(&n) {
        e.push(
            "spec.bgpInstances",
            format!("{n} instances"),
            "between 1 and 16 BGP instances",
        );
    }
    e.unique(
        "spec.bgpInstances",
        s.bgp_instances.iter().map(|i| i.name.as_str()),
    );
    for (i, inst) in s.bgp_instances.iter().enumerate() {
        let b = format!("spec.bgpInstances[{i}]");
        e.len(&format!("{b}.name"), &inst.name, 1, 255);
        e.asn(&format!("{b}.localASN"), inst.local_asn, 1);
        e.port(&format!("{b}.localPort"), inst.local_port);
        e.unique(
            &format!("{b}.peers"),
            inst.peers.iter().map(|p| p.name.as_str()),
        );
        e.unique(
            &format!("{b}.bmpServers"),
            inst.bmp_servers.iter().map(|m| m.name.as_str()),
        );
        for (j, m) in inst.bmp_servers.iter().enumerate() {
            let mb = format!("{b}.bmpServers[{j}]");
            e.len(&format!("{mb}.name"), &m.name, 1, 255);
            e.ip(&format!("{mb}.peerAddress"), &m.peer_address, false);
            e.range(&format!("{mb}.peerPort"), m.peer_port.into(), 1, 65535);
            if let Some(t) = m.statistics_timeout {
                e.range(&format!("{mb}.statisticsTimeout"), t.into(), 15, 65535);
            }
        }
        for (j, p) in inst.peers.iter().enumerate() {
            let pb = format!("{b}.peers[{j}]");
            e.len(&format!("{pb}.name"), &p.name, 1, 255);
            e.range(&format!("{pb}.peerASN"), p.peer_asn, 0, ASN_MAX);
            let addr = p
                .peer_address
                .as_deref()
                .and_then(|a| e.ip(&format!("{pb}.peerAddress"), a, true));
            if let Some(ifname) = &p.peer_interface {
                e.len(&format!("{pb}.peerInterface"), ifname, 1, 255);
                // CEL: peerInterface only with an fe80::/10 peerAddress.
                if let (Some(a), Some(ip)) = (&p.peer_address, addr)
                    && !is_link_local_v6(ip)
                {
                    e.push(
                        format!("{pb}.peerAddress"),
                        format!("{a:?} is not IPv6 link-local but peerInterface is set"),
                        "an fe80::/10 address when peerInterface is set",
                    );
                }
            }
            if p.peer_address.is_none() && p.auto_discovery.is_none() {
                e.push(
                    pb.clone(),
                    "neither peerAddress nor autoDiscovery is set",
                    "one of peerAddress or autoDiscovery",
                );
            }
            if let Some(ad) = &p.auto_discovery {
                let ab = format!("{pb}.autoDiscovery");
                match ad.mode {
                    AutoDiscoveryMode::DefaultGateway => {
                        if ad.default_gateway.is_none() {
                            e.push(
                                format!("{ab}.defaultGateway"),
                                "missing",
                                "defaultGateway when mode is DefaultGateway",
                            );
                        }
                        if ad.unnumbered.is_some() {
                            e.push(
                                format!("{ab}.unnumbered"),
                                "set with mode DefaultGateway",
                                "unnumbered only with mode Unnumbered",
                            );
                        }
                    }
                    AutoDiscoveryMode::Unnumbered => {
                        if ad.unnumbered.is_some() == ad.default_gateway.is_some() {
                            e.push(
                                ab.clone(),
                                "unnumbered and defaultGateway are both set or both missing",
                                "exactly one of unnumbered or defaultGateway when mode is Unnumbered",
                            );
                        }
                    }
                }
                if let Some(u) = &ad.unnumbered {
                    e.len(&format!("{ab}.unnumbered.interface"), &u.interface, 1, 255);
                }
            }
            if let Some(r) = &p.peer_config_ref
                && !selector::is_dns_subdomain(&r.name)
            {
                e.push(
                    format!("{pb}.peerConfigRef.name"),
                    format!("{:?} is not a valid object name", r.name),
                    "the name of a CiliumBGPPeerConfig",
                );
            }
        }
    }
}

fn is_link_local_v6(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

fn peer_config(s: &CiliumBGPPeerConfigSpec, e: &mut Errs) {
    if let Some(t) = &s.transport {
        e.range("spec.transport.peerPort", t.peer_port.into(), 1, 65535);
        if let Some(i) = &t.source_interface
            && i.is_empty()
        {
            e.push(
                "spec.transport.sourceInterface",
                "empty",
                "an interface name",
            );
        }
    }
    if let Some(t) = &s.timers {
        e.range(
            "spec.timers.connectRetryTimeSeconds",
            t.connect_retry_time_seconds.into(),
            1,
            i64::from(i32::MAX),
        );
        e.range(
            "spec.timers.holdTimeSeconds",
            t.hold_time_seconds.into(),
            3,
            65535,
        );
        e.range(
            "spec.timers.keepAliveTimeSeconds",
            t.keep_alive_time_seconds.into(),
            1,
            65535,
        );
        // CEL rule, evaluated after defaulting (so hold 20 with the default keepalive 30 fails).
        if t.keep_alive_time_seconds > t.hold_time_seconds {
            e.push(
                "spec.timers.keepAliveTimeSeconds",
                format!(
                    "keepAliveTimeSeconds {} is larger than holdTimeSeconds {}",
                    t.keep_alive_time_seconds, t.hold_time_seconds
                ),
                "keepAliveTimeSeconds <= holdTimeSeconds",
            );
        }
    }
    if let Some(name) = &s.auth_secret_ref
        && !selector::is_dns_subdomain(name)
    {
        e.push(
            "spec.authSecretRef",
            format!("{name:?} is not a valid Secret name"),
            "the name of a Secret",
        );
    }
    if let Some(gr) = &s.graceful_restart {
        e.range(
            "spec.gracefulRestart.restartTimeSeconds",
            gr.restart_time_seconds.into(),
            1,
            4095,
        );
    }
    e.range("spec.ebgpMultihop", s.ebgp_multihop.into(), 1, 255);
    if let Some(b) = &s.bfd {
        for (field, v) in [
            (
                "desiredMinTxIntervalMicroseconds",
                b.desired_min_tx_interval_microseconds,
            ),
            (
                "requiredMinRxIntervalMicroseconds",
                b.required_min_rx_interval_microseconds,
            ),
        ] {
            e.range(&format!("spec.bfd.{field}"), v, 1, i64::from(u32::MAX));
        }
        e.range(
            "spec.bfd.detectMultiplier",
            b.detect_multiplier.into(),
            1,
            255,
        );
        // cilium#48251: BFD for single-hop peers only (RFC 5881).
        if b.enabled && s.ebgp_multihop > 1 {
            e.push(
                "spec.bfd.enabled",
                format!("BFD with ebgpMultihop {}", s.ebgp_multihop),
                "BFD only for single-hop peers (ebgpMultihop 1)",
            );
        }
    }
    if let Some(fams) = &s.families {
        let mut seen = HashSet::new();
        for (i, f) in fams.iter().enumerate() {
            if !seen.insert((f.afi, f.safi)) {
                e.push(
                    format!("spec.families[{i}]"),
                    "duplicate afi/safi",
                    "each address family at most once",
                );
            }
            e.opt_selector(
                &format!("spec.families[{i}].advertisements"),
                f.advertisements.as_ref(),
            );
        }
    }
}

fn advertisement(s: &CiliumBGPAdvertisementSpec, e: &mut Errs) {
    for (i, a) in s.advertisements.iter().enumerate() {
        one_advertisement(&format!("spec.advertisements[{i}]"), a, e);
    }
}

/// The CRD's rule that `field` is set exactly when `advertisementType` is `want`.
fn only_for_type(
    b: &str,
    field: &str,
    t: AdvertisementType,
    want: AdvertisementType,
    set: bool,
    e: &mut Errs,
) {
    match (t == want, set) {
        (true, false) => e.push(
            format!("{b}.{field}"),
            "missing",
            format!("{field} when advertisementType is {want:?}"),
        ),
        (false, true) => e.push(
            format!("{b}.{field}"),
            format!("set for advertisementType {t:?}"),
            format!("{field} only when advertisementType is {want:?}"),
        ),
        _ => {}
    }
}

fn one_advertisement(b: &str, a: &BGPAdvertisement, e: &mut Errs) {
    let t = a.advertisement_type;
    // The five CEL rules of the CRD.
    only_for_type(
        b,
        "service",
        t,
        AdvertisementType::Service,
        a.service.is_some(),
        e,
    );
    only_for_type(
        b,
        "interface",
        t,
        AdvertisementType::Interface,
        a.interface.is_some(),
        e,
    );
    if t == AdvertisementType::PodCIDR && a.selector.is_some() {
        e.push(
            format!("{b}.selector"),
            "set for advertisementType PodCIDR",
            "no selector for PodCIDR",
        );
    }
    e.opt_selector(&format!("{b}.selector"), a.selector.as_ref());
    if let Some(svc) = &a.service {
        if svc.addresses.is_empty() {
            e.push(
                format!("{b}.service.addresses"),
                "empty",
                "at least one of LoadBalancerIP, ClusterIP, ExternalIP",
            );
        }
        e.opt_range(
            &format!("{b}.service.aggregationLengthIPv4"),
            svc.aggregation_length_ipv4,
            0,
            31,
        );
        e.opt_range(
            &format!("{b}.service.aggregationLengthIPv6"),
            svc.aggregation_length_ipv6,
            0,
            127,
        );
    }
    if let Some(i) = &a.interface
        && i.name.is_empty()
    {
        e.push(format!("{b}.interface.name"), "empty", "an interface name");
    }
    if let Some(attrs) = &a.attributes {
        if let Some(c) = &attrs.communities {
            for (j, s) in c.standard.iter().enumerate() {
                if parse_standard_community(s).is_none() {
                    e.push(
                        format!("{b}.attributes.communities.standard[{j}]"),
                        format!("{s:?} is not a standard community"),
                        "<0-4294967295> or <0-65535>:<0-65535>",
                    );
                }
            }
            for (j, s) in c.large.iter().enumerate() {
                if parse_large_community(s).is_none() {
                    e.push(
                        format!("{b}.attributes.communities.large[{j}]"),
                        format!("{s:?} is not a large community"),
                        "<0-4294967295>:<0-4294967295>:<0-4294967295>",
                    );
                }
            }
        }
        // The CRD allows any int64, but LOCAL_PREF is 32 bits on the wire (RFC 4271 §4.3).
        e.opt_range(
            &format!("{b}.attributes.localPreference"),
            attrs.local_preference,
            0,
            ASN_MAX,
        );
    }
}

fn node_override(s: &CiliumBGPNodeConfigOverrideSpec, e: &mut Errs) {
    if s.bgp_instances.is_empty() {
        e.push("spec.bgpInstances", "empty", "at least one BGP instance");
    }
    e.unique(
        "spec.bgpInstances",
        s.bgp_instances.iter().map(|i| i.name.as_str()),
    );
    let mut router_ids: Vec<(usize, Ipv4Addr)> = Vec::new();
    for (i, inst) in s.bgp_instances.iter().enumerate() {
        let b = format!("spec.bgpInstances[{i}]");
        e.len(&format!("{b}.name"), &inst.name, 1, 255);
        e.asn(&format!("{b}.localASN"), inst.local_asn, 1);
        e.port(&format!("{b}.localPort"), inst.local_port);
        if let Some(rid) = &inst.router_id {
            match rid.parse::<Ipv4Addr>() {
                Ok(ip) => {
                    if let Some((first, _)) = router_ids.iter().find(|(_, r)| *r == ip) {
                        e.push(
                            format!("{b}.routerID"),
                            format!("{rid} is also the routerID of bgpInstances[{first}]"),
                            "a routerID unique across instances",
                        );
                    }
                    router_ids.push((i, ip));
                }
                Err(_) => e.push(
                    format!("{b}.routerID"),
                    format!("{rid:?} is not an IPv4 address"),
                    "an IPv4 address such as 10.0.0.1",
                ),
            }
        }
        e.unique(
            &format!("{b}.peers"),
            inst.peers.iter().map(|p| p.name.as_str()),
        );
        for (j, p) in inst.peers.iter().enumerate() {
            let pb = format!("{b}.peers[{j}]");
            e.len(&format!("{pb}.name"), &p.name, 1, 255);
            if let Some(a) = &p.local_address {
                e.ip(&format!("{pb}.localAddress"), a, true);
            }
            e.port(&format!("{pb}.localPort"), p.local_port);
            if let Some(i) = &p.peer_interface {
                e.len(&format!("{pb}.peerInterface"), i, 1, 255);
                if p.local_address.is_some() {
                    e.push(
                        format!("{pb}.localAddress"),
                        "set together with peerInterface",
                        "localAddress or peerInterface, not both",
                    );
                }
            }
        }
    }
}

// ===== LB-IPAM, L2, egress =====

fn lb_pool(s: &CiliumLoadBalancerIPPoolSpec, e: &mut Errs) {
    e.opt_selector("spec.serviceSelector", s.service_selector.as_ref());
    for (i, blk) in s.blocks.iter().enumerate() {
        let b = format!("spec.blocks[{i}]");
        match (&blk.cidr, &blk.start, &blk.stop) {
            (Some(c), None, None) => {
                e.cidr(&format!("{b}.cidr"), c);
            }
            (Some(_), _, _) => e.push(
                b.clone(),
                "cidr is set together with start/stop",
                "either cidr or start (with optional stop)",
            ),
            (None, None, _) => e.push(
                b.clone(),
                "neither cidr nor start is set",
                "either cidr or start (with optional stop)",
            ),
            (None, Some(start), stop) => {
                let a = e.ip(&format!("{b}.start"), start, false);
                let z = match stop.as_deref() {
                    None | Some("") => a,
                    Some(stop) => e.ip(&format!("{b}.stop"), stop, false),
                };
                if let (Some(a), Some(z)) = (a, z) {
                    if a.is_ipv4() != z.is_ipv4() {
                        e.push(
                            format!("{b}.stop"),
                            format!("{z} is not in the address family of start {a}"),
                            "start and stop of the same address family",
                        );
                    } else if z < a {
                        e.push(
                            format!("{b}.stop"),
                            format!("{z} is lower than start {a}"),
                            "stop >= start",
                        );
                    }
                }
            }
        }
    }
}

fn l2_policy(s: &CiliumL2AnnouncementPolicySpec, e: &mut Errs) {
    e.opt_selector("spec.nodeSelector", s.node_selector.as_ref());
    e.opt_selector("spec.serviceSelector", s.service_selector.as_ref());
    for (i, re) in s.interfaces.iter().flatten().enumerate() {
        // Go's regexp (RE2) and Rust's regex share syntax for what interface patterns use.
        if let Err(err) = regex::Regex::new(re) {
            let msg = err.to_string();
            let last = msg.lines().last().unwrap_or_default().trim().to_owned();
            e.push(
                format!("spec.interfaces[{i}]"),
                format!("{re:?} does not compile: {last}"),
                "a valid regular expression such as ^eth[0-9]+",
            );
        }
    }
}

fn egress(s: &CiliumEgressGatewayPolicySpec, e: &mut Errs) {
    if s.selectors.is_empty() {
        e.push("spec.selectors", "empty", "at least one selector");
    }
    for (i, r) in s.selectors.iter().enumerate() {
        let b = format!("spec.selectors[{i}]");
        e.opt_selector(
            &format!("{b}.namespaceSelector"),
            r.namespace_selector.as_ref(),
        );
        e.opt_selector(&format!("{b}.podSelector"), r.pod_selector.as_ref());
        e.opt_selector(&format!("{b}.nodeSelector"), r.node_selector.as_ref());
        // Cilium's policy parser refuses a rule with neither of these.
        if r.namespace_selector.is_none() && r.pod_selector.is_none() {
            e.push(
                b.clone(),
                "neither namespaceSelector nor podSelector is set",
                "at least one of namespaceSelector or podSelector",
            );
        }
    }
    if s.destination_cidrs.is_empty() {
        e.push(
            "spec.destinationCIDRs",
            "empty",
            "at least one destination CIDR",
        );
    }
    for (i, c) in s.destination_cidrs.iter().enumerate() {
        e.cidr(&format!("spec.destinationCIDRs[{i}]"), c);
    }
    for (i, c) in s.excluded_cidrs.iter().enumerate() {
        // Cilium accepts (and ignores) exclusions outside every destination; so do we.
        e.cidr(&format!("spec.excludedCIDRs[{i}]"), c);
    }
    gateway("spec.egressGateway", &s.egress_gateway, e);
    if s.egress_gateways.len() > 64 {
        e.push(
            "spec.egressGateways",
            format!("{} gateways", s.egress_gateways.len()),
            "at most 64 gateways",
        );
    }
    for (i, g) in s.egress_gateways.iter().enumerate() {
        gateway(&format!("spec.egressGateways[{i}]"), g, e);
    }
}

fn gateway(b: &str, g: &EgressGateway, e: &mut Errs) {
    e.selector(&format!("{b}.nodeSelector"), &g.node_selector);
    let ip = g.egress_ip.as_deref().filter(|s| !s.is_empty());
    if let Some(ip) = ip {
        if ip.len() > 39 {
            e.push(
                format!("{b}.egressIP"),
                format!("{ip:?} is too long"),
                "at most 39 characters",
            );
        } else {
            e.ip(&format!("{b}.egressIP"), ip, false);
        }
    }
    if ip.is_some() && g.interface.as_deref().is_some_and(|i| !i.is_empty()) {
        // Cilium ignores such a policy at run time; rejecting it is clearer.
        e.push(
            b.to_owned(),
            "both egressIP and interface are set",
            "at most one of egressIP or interface",
        );
    }
}

// ===== core objects =====

fn service(svc: &k8s_openapi::api::core::v1::Service, e: &mut Errs) {
    if let Some(spec) = &svc.spec {
        service_spec(spec, e);
    }
    service_status(svc, e);
}

fn service_spec(spec: &k8s_openapi::api::core::v1::ServiceSpec, e: &mut Errs) {
    if let Some(t) = spec.type_.as_deref()
        && !matches!(
            t,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        )
    {
        e.push(
            "spec.type",
            format!("unsupported value {t:?}"),
            "one of ClusterIP, NodePort, LoadBalancer, ExternalName",
        );
    }
    for (f, v) in [
        (
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        ),
        (
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        ),
    ] {
        if let Some(v) = v
            && !matches!(v, "Cluster" | "Local")
        {
            e.push(f, format!("unsupported value {v:?}"), "Cluster or Local");
        }
    }
    if let Some(ip) = spec.cluster_ip.as_deref()
        && !ip.is_empty()
        && ip != "None"
    {
        e.ip("spec.clusterIP", ip, false);
    }
    for (i, ip) in spec.cluster_ips.iter().flatten().enumerate() {
        if ip != "None" {
            e.ip(&format!("spec.clusterIPs[{i}]"), ip, false);
        }
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        e.ip(&format!("spec.externalIPs[{i}]"), ip, false);
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref()
        && !ip.is_empty()
    {
        e.ip("spec.loadBalancerIP", ip, false);
    }
}

fn service_status(svc: &k8s_openapi::api::core::v1::Service, e: &mut Errs) {
    if let Some(st) = &svc.status
        && let Some(lb) = &st.load_balancer
    {
        for (i, ing) in lb.ingress.iter().flatten().enumerate() {
            if let Some(ip) = &ing.ip {
                e.ip(&format!("status.loadBalancer.ingress[{i}].ip"), ip, false);
            }
        }
    }
}

fn node(n: &k8s_openapi::api::core::v1::Node, e: &mut Errs) {
    let Some(spec) = &n.spec else { return };
    if let Some(c) = &spec.pod_cidr {
        e.cidr("spec.podCIDR", c);
    }
    for (i, c) in spec.pod_cidrs.iter().flatten().enumerate() {
        e.cidr(&format!("spec.podCIDRs[{i}]"), c);
    }
}

fn endpoint_slice(es: &k8s_openapi::api::discovery::v1::EndpointSlice, e: &mut Errs) {
    let family = match es.address_type.as_str() {
        "IPv4" => Some(true),
        "IPv6" => Some(false),
        "FQDN" => None,
        other => {
            e.push(
                "addressType",
                if other.is_empty() {
                    "missing".to_owned()
                } else {
                    format!("unsupported value {other:?}")
                },
                "one of IPv4, IPv6, FQDN",
            );
            return;
        }
    };
    let Some(v4) = family else { return };
    for (i, ep) in es.endpoints.iter().flatten().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            let p = format!("endpoints[{i}].addresses[{j}]");
            if let Some(ip) = e.ip(&p, a, false)
                && ip.is_ipv4() != v4
            {
                e.push(
                    p,
                    format!("{a} does not match addressType {}", es.address_type),
                    format!("an {} address", es.address_type),
                );
            }
        }
    }
}

/// The Pod fields the service datapath reads: its addresses (`status.podIP`, `status.podIPs`).
fn pod(p: &k8s_openapi::api::core::v1::Pod, e: &mut Errs) {
    let Some(st) = &p.status else { return };
    if let Some(ip) = st.pod_ip.as_deref().filter(|s| !s.is_empty()) {
        e.ip("status.podIP", ip, false);
    }
    for (i, a) in st.pod_ips.iter().flatten().enumerate() {
        e.ip(&format!("status.podIPs[{i}].ip"), &a.ip, false);
    }
}
