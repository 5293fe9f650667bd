//! Pure evaluation of `CiliumL2AnnouncementPolicy` objects for one node.
//!
//! Input types here are plain data so this crate does not depend on the resource model: the
//! daemon converts its typed resources into them and supplies label selectors through the
//! [`Selector`] trait.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rackd_types::condition::reasons;
use rackd_types::{Condition, ConditionStatus};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Kubernetes labels.
pub type Labels = BTreeMap<String, String>;

/// The only LoadBalancer class (besides unset) that L2 announcements handle.
pub use rackd_types::cilium::CLASS_L2_ANNOUNCER as L2_ANNOUNCER_CLASS;
/// Synthetic labels carrying the service namespace and name, matched by `serviceSelector` as
/// in Cilium.
pub use rackd_types::cilium::{SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL};

/// Condition types of a policy that cannot be used (Cilium's, defined once in `rackd-types`).
pub use rackd_types::condition::types::{
    BAD_INTERFACE_REGEX as COND_BAD_INTERFACE_REGEX, BAD_NODE_SELECTOR as COND_BAD_NODE_SELECTOR,
    BAD_SERVICE_SELECTOR as COND_BAD_SERVICE_SELECTOR,
};

/// A compiled label selector, implemented by the daemon (e.g. over the model crate's selector).
pub trait Selector {
    /// Whether the selector matches these labels.
    fn matches(&self, labels: &Labels) -> bool;
}

/// A selector field of a policy, after the daemon tried to compile it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorSpec<S> {
    /// The field is absent: it selects everything.
    All,
    /// A valid selector.
    Valid(S),
    /// The selector could not be compiled; the policy does not apply and the reason goes into
    /// the status condition message.
    Invalid {
        /// Human-readable reason, shown in the condition.
        reason: String,
    },
}

impl<S: Selector> SelectorSpec<S> {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Self::All => true,
            Self::Valid(s) => s.matches(labels),
            Self::Invalid { .. } => false,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Self::Invalid { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One `CiliumL2AnnouncementPolicy`, as the evaluator needs it.
#[derive(Debug, Clone)]
pub struct PolicyInput<S> {
    /// `metadata.name`.
    pub name: String,
    /// `spec.nodeSelector`.
    pub node_selector: SelectorSpec<S>,
    /// `spec.serviceSelector`.
    pub service_selector: SelectorSpec<S>,
    /// `spec.interfaces`: Go-syntax regexes, OR-ed, unanchored like Go's `MatchString`;
    /// empty selects every managed device.
    pub interfaces: Vec<String>,
    /// `spec.externalIPs` (default false).
    pub external_ips: bool,
    /// `spec.loadBalancerIPs` (default false).
    pub load_balancer_ips: bool,
}

/// A Service, as the evaluator needs it.
#[derive(Debug, Clone, Default)]
pub struct ServiceInput {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ingress: Vec<IpAddr>,
}

/// A network device the daemon manages (Cilium's `--devices`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Iface {
    /// Interface name.
    pub name: String,
    /// Kernel interface index.
    pub ifindex: u32,
}

/// This node: its name and labels.
#[derive(Debug, Clone, Default)]
pub struct NodeInput {
    /// Node name (also the lease holder identity).
    pub name: String,
    /// Node labels, matched by `nodeSelector`.
    pub labels: Labels,
}

/// `namespace/name` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One IP group this node may announce: every service that has this IP (services sharing an
/// IP through a sharing key land here together, so they get one owner; Cilium #48419), on
/// every interface any matching policy selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredGroup {
    /// Services carrying the IP.
    pub services: BTreeSet<ServiceRef>,
    /// Interfaces to answer on.
    pub interfaces: BTreeSet<Iface>,
}

/// What the policy errors of one policy are, for its status conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyErrors {
    /// Reason the node selector is unusable.
    pub bad_node_selector: Option<String>,
    /// Reason the service selector is unusable.
    pub bad_service_selector: Option<String>,
    /// Reason an interface regex is unusable.
    pub bad_interface_regex: Option<String>,
}

impl PolicyErrors {
    /// Whether the policy has any error (and so does not apply).
    #[must_use]
    pub fn any(&self) -> bool {
        self.bad_node_selector.is_some()
            || self.bad_service_selector.is_some()
            || self.bad_interface_regex.is_some()
    }
}

/// Result of evaluating all policies for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Desired IP groups, keyed by IP (the unit of ownership).
    pub groups: BTreeMap<IpAddr, DesiredGroup>,
    /// Errors per policy name (only policies with at least one error are listed).
    pub errors: BTreeMap<String, PolicyErrors>,
}

/// Evaluates every policy against this node, its devices and the services.
///
/// A policy with any bad selector or regex does not apply at all (and is reported in
/// [`Evaluation::errors`]). A service is considered when its LoadBalancer class is unset or
/// [`L2_ANNOUNCER_CLASS`]; its IPs are taken from `status.loadBalancer.ingress` when the policy
/// sets `loadBalancerIPs` and from `spec.externalIPs` when it sets `externalIPs`.
#[must_use]
pub fn evaluate<S: Selector>(
    node: &NodeInput,
    devices: &[Iface],
    policies: &[PolicyInput<S>],
    services: &[ServiceInput],
) -> Evaluation {
    let mut out = Evaluation::default();
    for policy in policies {
        let (regexes, regex_err) = compile_interfaces(&policy.interfaces);
        let errors = PolicyErrors {
            bad_node_selector: policy.node_selector.error().map(str::to_owned),
            bad_service_selector: policy.service_selector.error().map(str::to_owned),
            bad_interface_regex: regex_err,
        };
        if errors.any() {
            out.errors.insert(policy.name.clone(), errors);
            continue;
        }
        if !policy.node_selector.matches(&node.labels) {
            continue;
        }
        let ifaces: Vec<&Iface> = devices
            .iter()
            .filter(|d| regexes.is_empty() || regexes.iter().any(|r| r.is_match(&d.name)))
            .collect();
        if ifaces.is_empty() || !(policy.external_ips || policy.load_balancer_ips) {
            continue;
        }
        for svc in services {
            if !class_handled(svc.load_balancer_class.as_deref()) {
                continue;
            }
            if !policy.service_selector.matches(&service_labels(svc)) {
                continue;
            }
            let lb = policy
                .load_balancer_ips
                .then_some(svc.load_balancer_ingress.iter())
                .into_iter()
                .flatten();
            let ext = policy
                .external_ips
                .then_some(svc.external_ips.iter())
                .into_iter()
                .flatten();
            for ip in lb.chain(ext) {
                let g = out.groups.entry(*ip).or_default();
                g.services.insert(ServiceRef {
                    namespace: svc.namespace.clone(),
                    name: svc.name.clone(),
                });
                g.interfaces.extend(ifaces.iter().map(|i| (*i).clone()));
            }
        }
    }
    out
}

fn class_handled(class: Option<&str>) -> bool {
    class.is_none_or(|c| c == L2_ANNOUNCER_CLASS)
}

/// The service's labels plus the synthetic namespace/name labels Cilium matches on.
fn service_labels(svc: &ServiceInput) -> Labels {
    let mut l = svc.labels.clone();
    l.insert(SERVICE_NAMESPACE_LABEL.to_owned(), svc.namespace.clone());
    l.insert(SERVICE_NAME_LABEL.to_owned(), svc.name.clone());
    l
}

fn compile_interfaces(patterns: &[String]) -> (Vec<Regex>, Option<String>) {
    let mut out = Vec::with_capacity(patterns.len());
    for p in patterns {
        match Regex::new(p) {
            Ok(r) => out.push(r),
            Err(e) => return (Vec::new(), Some(format!("interface regex {p:?}: {e}"))),
        }
    }
    (out, None)
}

/// Cilium's reason on a policy condition that no longer holds (flipped to `False`).
pub const REASON_RESOLVED: &str = "resolved";

impl PolicyErrors {
    /// Each condition type with the reason it holds, if it does.
    fn by_type(&self) -> [(&'static str, Option<&String>); 3] {
        [
            (COND_BAD_NODE_SELECTOR, self.bad_node_selector.as_ref()),
            (
                COND_BAD_SERVICE_SELECTOR,
                self.bad_service_selector.as_ref(),
            ),
            (COND_BAD_INTERFACE_REGEX, self.bad_interface_regex.as_ref()),
        ]
    }

    /// The policy's current problems as conditions (the workspace's one [`Condition`] type),
    /// in Cilium's polarity: the type names the problem, status `True`, reason `error`.
    pub fn conditions(&self) -> impl Iterator<Item = Condition> + '_ {
        self.by_type()
            .into_iter()
            .filter_map(|(ty, why)| why.map(|m| Condition::problem(ty, reasons::ERROR, m.clone())))
    }
}

/// Computes a policy's new `status.conditions` from its previous ones and its current errors,
/// as Cilium does: a condition is created only on error; on recovery an existing one is set to
/// `False` (reason [`REASON_RESOLVED`]); conditions of other types are kept untouched.
#[must_use]
pub fn conditions(prev: &[Condition], errors: &PolicyErrors) -> Vec<Condition> {
    let mut out: Vec<Condition> = prev.to_vec();
    for (ty, err) in errors.by_type() {
        let existing = out.iter_mut().find(|c| c.type_ == ty);
        match (err, existing) {
            (Some(msg), Some(c)) => {
                c.status = ConditionStatus::True;
                c.reason = reasons::ERROR.into();
                c.message.clone_from(msg);
            }
            (Some(msg), None) => out.push(Condition::problem(ty, reasons::ERROR, msg.clone())),
            (None, Some(c)) => {
                c.status = ConditionStatus::False;
                c.reason = REASON_RESOLVED.into();
                c.message.clear();
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Test selector: equality on every listed label.
    #[derive(Debug, Clone)]
    struct Eq(Vec<(&'static str, &'static str)>);
    impl Selector for Eq {
        fn matches(&self, labels: &Labels) -> bool {
            self.0
                .iter()
                .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn node() -> NodeInput {
        NodeInput {
            name: "n1".into(),
            labels: [("rack".to_owned(), "a".to_owned())].into(),
        }
    }

    fn devs() -> Vec<Iface> {
        vec![
            Iface {
                name: "eth0".into(),
                ifindex: 2,
            },
            Iface {
                name: "eth1".into(),
                ifindex: 3,
            },
            Iface {
                name: "lan0".into(),
                ifindex: 4,
            },
        ]
    }

    fn policy(name: &str) -> PolicyInput<Eq> {
        PolicyInput {
            name: name.into(),
            node_selector: SelectorSpec::All,
            service_selector: SelectorSpec::All,
            interfaces: vec![],
            external_ips: false,
            load_balancer_ips: true,
        }
    }

    fn svc(name: &str, lb: &[&str]) -> ServiceInput {
        ServiceInput {
            namespace: "default".into(),
            name: name.into(),
            load_balancer_ingress: lb.iter().map(|s| ip(s)).collect(),
            external_ips: vec![ip("192.0.2.99")],
            ..Default::default()
        }
    }

    #[test]
    fn both_flags_default_false_announces_nothing() {
        let mut p = policy("p");
        p.load_balancer_ips = false;
        let e = evaluate(&node(), &devs(), &[p], &[svc("a", &["10.0.0.1"])]);
        assert!(e.groups.is_empty());
    }

    #[test]
    fn lb_and_external_ips_follow_flags() {
        let mut p = policy("p");
        let e = evaluate(&node(), &devs(), &[p.clone()], &[svc("a", &["10.0.0.1"])]);
        assert_eq!(
            e.groups.keys().copied().collect::<Vec<_>>(),
            [ip("10.0.0.1")]
        );
        p.external_ips = true;
        p.load_balancer_ips = false;
        let e = evaluate(&node(), &devs(), &[p], &[svc("a", &["10.0.0.1"])]);
        assert_eq!(
            e.groups.keys().copied().collect::<Vec<_>>(),
            [ip("192.0.2.99")]
        );
    }

    #[test]
    fn shared_ip_forms_one_group() {
        let e = evaluate(
            &node(),
            &devs(),
            &[policy("p")],
            &[
                svc("a", &["10.0.0.1"]),
                svc("b", &["10.0.0.1", "2001:db8::1"]),
            ],
        );
        assert_eq!(e.groups.len(), 2);
        let g = &e.groups[&ip("10.0.0.1")];
        assert_eq!(g.services.len(), 2);
        assert_eq!(g.interfaces.len(), 3);
    }

    #[test]
    fn class_filter() {
        let mut a = svc("a", &["10.0.0.1"]);
        a.load_balancer_class = Some(L2_ANNOUNCER_CLASS.into());
        let mut b = svc("b", &["10.0.0.2"]);
        b.load_balancer_class = Some("io.cilium/bgp-control-plane".into());
        let e = evaluate(&node(), &devs(), &[policy("p")], &[a, b]);
        assert_eq!(
            e.groups.keys().copied().collect::<Vec<_>>(),
            [ip("10.0.0.1")]
        );
    }

    #[test]
    fn selectors_and_synthetic_labels() {
        let mut p = policy("p");
        p.service_selector = SelectorSpec::Valid(Eq(vec![(SERVICE_NAME_LABEL, "b")]));
        p.node_selector = SelectorSpec::Valid(Eq(vec![("rack", "a")]));
        let svcs = [svc("a", &["10.0.0.1"]), svc("b", &["10.0.0.2"])];
        let e = evaluate(&node(), &devs(), std::slice::from_ref(&p), &svcs);
        assert_eq!(
            e.groups.keys().copied().collect::<Vec<_>>(),
            [ip("10.0.0.2")]
        );
        p.node_selector = SelectorSpec::Valid(Eq(vec![("rack", "b")]));
        assert!(evaluate(&node(), &devs(), &[p], &svcs).groups.is_empty());
    }

    #[test]
    fn interface_regexes_are_ored_and_unanchored() {
        let mut p = policy("p");
        p.interfaces = vec!["^eth1$".into(), "an".into()];
        let e = evaluate(&node(), &devs(), &[p], &[svc("a", &["10.0.0.1"])]);
        let names: Vec<_> = e.groups[&ip("10.0.0.1")]
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["eth1", "lan0"]);
    }

    #[test]
    fn bad_regex_and_selectors_disable_policy_and_report() {
        let mut p = policy("bad");
        p.interfaces = vec!["eth(".into()];
        p.node_selector = SelectorSpec::Invalid {
            reason: "operator Foo".into(),
        };
        let e = evaluate(
            &node(),
            &devs(),
            &[p, policy("good")],
            &[svc("a", &["10.0.0.1"])],
        );
        assert_eq!(e.groups.len(), 1);
        let err = &e.errors["bad"];
        assert!(err.bad_interface_regex.as_deref().unwrap().contains("eth("));
        assert_eq!(err.bad_node_selector.as_deref(), Some("operator Foo"));
        assert!(err.bad_service_selector.is_none());
        assert!(!e.errors.contains_key("good"));
    }

    #[test]
    fn conditions_created_on_error_and_cleared_on_recovery() {
        let errs = PolicyErrors {
            bad_service_selector: Some("x".into()),
            ..Default::default()
        };
        let c1 = conditions(&[], &errs);
        assert_eq!(c1.len(), 1);
        assert_eq!(c1[0].type_, COND_BAD_SERVICE_SELECTOR);
        assert_eq!(c1[0].status, ConditionStatus::True);
        assert_eq!(c1[0].reason, "error");
        // No error, no previous condition: nothing is created.
        assert!(conditions(&[], &PolicyErrors::default()).is_empty());
        let c2 = conditions(&c1, &PolicyErrors::default());
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].status, ConditionStatus::False);
        assert_eq!(c2[0].reason, REASON_RESOLVED);
        let c3 = conditions(&c2, &errs);
        assert_eq!(c3[0].status, ConditionStatus::True);
        assert_eq!(c3[0].message, "x");
    }

    #[test]
    fn conditions_are_the_workspace_type() {
        let errs = PolicyErrors {
            bad_node_selector: Some("operator Foo".into()),
            bad_interface_regex: Some("eth(".into()),
            ..Default::default()
        };
        // The current problems, one per unusable field, as `rackd_types::Condition`s.
        let now: Vec<rackd_types::Condition> = errs.conditions().collect();
        assert_eq!(
            now,
            vec![
                rackd_types::Condition::problem(
                    rackd_types::condition::types::BAD_NODE_SELECTOR,
                    "error",
                    "operator Foo"
                ),
                rackd_types::Condition::problem(
                    rackd_types::condition::types::BAD_INTERFACE_REGEX,
                    "error",
                    "eth("
                ),
            ]
        );
        assert_eq!(conditions(&[], &errs), now);
        // Conditions of other types are kept untouched.
        let other =
            rackd_types::Condition::new("example.com/Other", ConditionStatus::True, "x", "");
        let c = conditions(std::slice::from_ref(&other), &PolicyErrors::default());
        assert_eq!(c, vec![other]);
        // Serialised as Kubernetes writes `metav1.Condition`.
        let j = serde_json::to_value(&now[0]).unwrap();
        assert_eq!(j["type"], "io.cilium/bad-node-selector");
        assert_eq!(j["status"], "True");
        assert_eq!(j["reason"], "error");
    }
}
