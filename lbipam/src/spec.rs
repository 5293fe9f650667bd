//! Plain input types. The daemon adapts its resource model (Cilium CRDs, Kubernetes Services)
//! to these, so this crate depends on none of our other crates.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::addr::{Block, Family};

/// Cilium's annotations, classes and synthetic labels, defined once in `rackd-types`.
pub use rackd_types::cilium::{
    ANNOTATION_IPS, ANNOTATION_IPS_ALIAS, ANNOTATION_SHARING_CROSS_NAMESPACE,
    ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS, ANNOTATION_SHARING_KEY, ANNOTATION_SHARING_KEY_ALIAS,
    CLASS_BGP_CONTROL_PLANE, CLASS_L2_ANNOUNCER, SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL,
};

/// A pool's `serviceSelector`, implemented by the daemon for its label selector type.
pub trait ServiceSelector {
    /// Whether a service with `labels` (built by [`service_selector_labels`]) is selected.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool;

    /// Every label key [`matches`](Self::matches) reads, if the selector can tell (for a label
    /// selector: the keys of `matchLabels` and `matchExpressions`). Services that agree on the
    /// values of these labels (absent counts as a value) must then get the same answer, so the
    /// allocator evaluates the selector once per distinct combination, not once per service, and
    /// builds a service's label set only when a combination is new. `None` (the default): any
    /// label may matter, so every service is evaluated.
    fn label_keys(&self) -> Option<Vec<&str>> {
        None
    }
}

/// `matchLabels` semantics: every pair must be present. Handy for tests and simple callers.
impl ServiceSelector for BTreeMap<String, String> {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    fn label_keys(&self) -> Option<Vec<&str>> {
        Some(self.keys().map(String::as_str).collect())
    }
}

/// The label set pool selectors see: the service's labels plus the synthetic
/// [`SERVICE_NAMESPACE_LABEL`] and [`SERVICE_NAME_LABEL`] (which override same-named labels).
pub fn service_selector_labels(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    out.insert(SERVICE_NAMESPACE_LABEL.to_owned(), namespace.to_owned());
    out.insert(SERVICE_NAME_LABEL.to_owned(), name.to_owned());
    out
}

/// A `CiliumLoadBalancerIPPool`.
#[derive(Clone, Debug)]
pub struct PoolSpec<S> {
    /// `metadata.name`; unique. Later duplicates in the input are ignored.
    pub name: String,
    /// `metadata.creationTimestamp` (any monotonic unit, e.g. Unix seconds). On overlap the newer
    /// pool is marked conflicting. `None` (pools from files) sorts after all known times; ties
    /// are broken by the order in which this allocator first saw each pool (persisted).
    pub created: Option<i64>,
    /// `spec.blocks`.
    pub blocks: Vec<Block>,
    /// `spec.allowFirstLastIPs`; `true` (`Yes`) is the default.
    pub allow_first_last_ips: bool,
    /// `spec.disabled`: no new allocations; existing ones are kept.
    pub disabled: bool,
    /// `spec.serviceSelector`; `None` selects every service.
    pub service_selector: Option<S>,
}

impl<S> PoolSpec<S> {
    /// A pool with Cilium's defaults (first/last allowed, enabled, no selector).
    pub fn new(name: impl Into<String>, blocks: Vec<Block>) -> Self {
        PoolSpec {
            name: name.into(),
            created: None,
            blocks,
            allow_first_last_ips: true,
            disabled: false,
            service_selector: None,
        }
    }

    /// The same pool with its selector converted (e.g. wrapped in another selector type).
    pub fn map_selector<T>(self, f: impl FnOnce(S) -> T) -> PoolSpec<T> {
        PoolSpec {
            name: self.name,
            created: self.created,
            blocks: self.blocks,
            allow_first_last_ips: self.allow_first_last_ips,
            disabled: self.disabled,
            service_selector: self.service_selector.map(f),
        }
    }
}

/// A service's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Serialize for ServiceKey {
    /// As `namespace/name` (neither may contain `/` in Kubernetes).
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServiceKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Splits the text where the decoder has it, rather than via an intermediate String
        // (a state file holds one key per allocation).
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = ServiceKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service key namespace/name")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ServiceKey, E> {
                match s.split_once('/') {
                    Some((ns, name))
                        if !ns.is_empty() && !name.is_empty() && !name.contains('/') =>
                    {
                        Ok(ServiceKey::new(ns, name))
                    }
                    _ => Err(E::custom(format!(
                        "service key '{s}' is not namespace/name"
                    ))),
                }
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamilyPolicy {
    /// `SingleStack`.
    SingleStack,
    /// `PreferDualStack`.
    PreferDualStack,
    /// `RequireDualStack`.
    RequireDualStack,
}

impl IpFamilyPolicy {
    /// Parses the Kubernetes spelling.
    pub fn from_k8s(s: &str) -> Option<Self> {
        match s {
            "SingleStack" => Some(Self::SingleStack),
            "PreferDualStack" => Some(Self::PreferDualStack),
            "RequireDualStack" => Some(Self::RequireDualStack),
            _ => None,
        }
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalTrafficPolicy {
    /// `Cluster` (the Kubernetes default).
    #[default]
    Cluster,
    /// `Local`.
    Local,
}

/// The parts of a Kubernetes `Service` LB-IPAM looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Namespace and name.
    pub key: ServiceKey,
    /// `metadata.labels`. Best passed through [`service_selector_labels`] once when the
    /// service changes; otherwise every reconcile builds that map again for pools with selectors.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations` (only the LB-IPAM ones are read).
    pub annotations: BTreeMap<String, String>,
    /// `spec.type == LoadBalancer`.
    pub is_load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `spec.loadBalancerIP` (deprecated in Kubernetes but honoured, as by Cilium).
    pub load_balancer_ip: Option<String>,
    /// `spec.ipFamilyPolicy`.
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// `spec.ipFamilies`, in order.
    pub ip_families: Vec<Family>,
    /// `spec.ports[].port` (protocol is ignored for sharing, as the datapath cannot tell them apart).
    pub ports: Vec<u16>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: ExternalTrafficPolicy,
    /// `spec.selector` (pod selector); compared when sharing with `externalTrafficPolicy: Local`.
    pub pod_selector: BTreeMap<String, String>,
    /// `status.loadBalancer.ingress[].ip` as currently published. Adopted when this allocator
    /// holds nothing for the service (e.g. migrating from Cilium or after losing the state file).
    pub current_ingress: Vec<IpAddr>,
}

impl Default for ServiceKey {
    fn default() -> Self {
        ServiceKey::new("default", "unnamed")
    }
}

/// Cluster-wide LB-IPAM settings (the operator flags Cilium has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// IPv4 enabled in the cluster.
    pub ipv4_enabled: bool,
    /// IPv6 enabled in the cluster.
    pub ipv6_enabled: bool,
    /// Handle class `io.cilium/bgp-control-plane` (the BGP control plane is on).
    pub bgp_control_plane: bool,
    /// Handle class `io.cilium/l2-announcer` (L2 announcements are on).
    pub l2_announcer: bool,
    /// `--lbipam-require-lb-class`: ignore services without a class.
    pub require_lb_class: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ipv4_enabled: true,
            ipv6_enabled: true,
            bgp_control_plane: true,
            l2_announcer: true,
            require_lb_class: false,
        }
    }
}

impl Config {
    /// Whether LB-IPAM is responsible for this service (Cilium `isResponsibleForSVC`).
    /// Services it is not responsible for get no condition at all.
    pub fn handles(&self, svc: &ServiceSpec) -> bool {
        if !svc.is_load_balancer {
            return false;
        }
        match svc.load_balancer_class.as_deref() {
            None => !self.require_lb_class,
            Some(CLASS_BGP_CONTROL_PLANE) => self.bgp_control_plane,
            Some(CLASS_L2_ANNOUNCER) => self.l2_announcer,
            Some(_) => false,
        }
    }

    /// The families a service without specific IP requests wants (Cilium `serviceIPFamilyRequest`).
    pub fn requested_families(&self, svc: &ServiceSpec) -> (bool, bool) {
        let first_enabled = || {
            if self.ipv4_enabled {
                (true, false)
            } else if self.ipv6_enabled {
                (false, true)
            } else {
                (false, false)
            }
        };
        let first_listed = |f: Family| match f {
            Family::V4 => (true, false),
            Family::V6 => (false, true),
        };
        match svc.ip_family_policy {
            None | Some(IpFamilyPolicy::SingleStack) => match svc.ip_families.first() {
                Some(f) => first_listed(*f),
                None => first_enabled(),
            },
            Some(IpFamilyPolicy::PreferDualStack) => {
                if svc.ip_families.is_empty() {
                    (self.ipv4_enabled, self.ipv6_enabled)
                } else {
                    (
                        self.ipv4_enabled && svc.ip_families.contains(&Family::V4),
                        self.ipv6_enabled && svc.ip_families.contains(&Family::V6),
                    )
                }
            }
            Some(IpFamilyPolicy::RequireDualStack) => (self.ipv4_enabled, self.ipv6_enabled),
        }
    }
}

/// Reads an annotation by its name, then by its alias (Cilium `annotation.Get`).
pub(crate) fn annotation<'a>(svc: &'a ServiceSpec, key: &str, alias: &str) -> Option<&'a str> {
    svc.annotations
        .get(key)
        .or_else(|| svc.annotations.get(alias))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The specific IPs a service requests: `spec.loadBalancerIP` first, then the annotation,
/// without duplicates. Unparseable entries are returned separately (Cilium logs and skips them).
pub fn requested_ips(svc: &ServiceSpec) -> (Vec<IpAddr>, Vec<String>) {
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut invalid = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim();
        if s.is_empty() {
            return;
        }
        match s.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => invalid.push(s.to_owned()),
        }
    };
    if let Some(lb) = svc.load_balancer_ip.as_deref() {
        push(lb);
    }
    if let Some(list) = annotation(svc, ANNOTATION_IPS, ANNOTATION_IPS_ALIAS) {
        for part in list.split(',') {
            push(part);
        }
    }
    (ips, invalid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn svc() -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey::new("ns", "a"),
            is_load_balancer: true,
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        let cfg = Config::default();
        let mut s = svc();
        assert!(cfg.handles(&s));
        s.load_balancer_class = Some(CLASS_L2_ANNOUNCER.into());
        assert!(cfg.handles(&s));
        s.load_balancer_class = Some(CLASS_BGP_CONTROL_PLANE.into());
        assert!(cfg.handles(&s));
        assert!(
            !Config {
                bgp_control_plane: false,
                ..Config::default()
            }
            .handles(&s)
        );
        s.load_balancer_class = Some("example.com/other".into());
        assert!(!cfg.handles(&s));
        s.load_balancer_class = None;
        assert!(
            !Config {
                require_lb_class: true,
                ..Config::default()
            }
            .handles(&s)
        );
        s.is_load_balancer = false;
        assert!(!cfg.handles(&s));
    }

    #[test]
    fn families() {
        let cfg = Config::default();
        let mut s = svc();
        assert_eq!(cfg.requested_families(&s), (true, false));
        s.ip_families = vec![Family::V6, Family::V4];
        assert_eq!(cfg.requested_families(&s), (false, true));
        s.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
        assert_eq!(cfg.requested_families(&s), (true, true));
        s.ip_families = vec![Family::V6];
        assert_eq!(cfg.requested_families(&s), (false, true));
        s.ip_family_policy = Some(IpFamilyPolicy::RequireDualStack);
        assert_eq!(cfg.requested_families(&s), (true, true));
        let v6only = Config {
            ipv4_enabled: false,
            ..Config::default()
        };
        s.ip_families.clear();
        s.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
        assert_eq!(v6only.requested_families(&s), (false, true));
    }

    #[test]
    fn requested_ip_parsing() {
        let mut s = svc();
        s.load_balancer_ip = Some("10.0.0.1".into());
        s.annotations.insert(
            ANNOTATION_IPS_ALIAS.into(),
            " 10.0.0.2, bogus,10.0.0.1,,2001:db8::1".into(),
        );
        let (ips, bad) = requested_ips(&s);
        assert_eq!(
            ips,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(bad, vec!["bogus".to_owned()]);
        // The primary name wins over the alias.
        s.annotations
            .insert(ANNOTATION_IPS.into(), "10.0.0.3".into());
        s.load_balancer_ip = None;
        assert_eq!(
            requested_ips(&s).0,
            vec!["10.0.0.3".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn selector_labels() {
        let mut l = BTreeMap::new();
        l.insert("org".to_owned(), "empire".to_owned());
        let all = service_selector_labels("batuu", "deathstar", &l);
        assert_eq!(all.get(SERVICE_NAMESPACE_LABEL).unwrap(), "batuu");
        assert_eq!(all.get(SERVICE_NAME_LABEL).unwrap(), "deathstar");
        assert!(l.matches(&all));
    }

    #[test]
    fn service_key_serde() {
        let k: ServiceKey = serde_json::from_str("\"ns/a\"").unwrap();
        assert_eq!(k, ServiceKey::new("ns", "a"));
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"ns/a\"");
        for bad in ["\"nsa\"", "\"/a\"", "\"ns/\"", "\"a/b/c\"", "3"] {
            assert!(serde_json::from_str::<ServiceKey>(bad).is_err(), "{bad}");
        }
    }
}
