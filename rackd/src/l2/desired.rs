//! Pure: the configuration snapshot, this node's devices and LB-IPAM's addresses, turned into
//! the inputs of `l2announcer::policy::evaluate`, and device selection (Cilium's `--devices`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use l2announcer::policy::{
    self, Evaluation, Iface, Labels, NodeInput, PolicyInput, SelectorSpec, ServiceInput,
};
use rackd_model::Snapshot;
use rackd_model::rackd_types::{Kind, ObjectCondition, ObjectKey};
use rackd_model::selector::Selector as ModelSelector;

use crate::lbipam_ctl::LbIps;

/// A network device as the link monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Device {
    pub name: String,
    pub ifindex: u32,
    /// An Ethernet-like device (ARPHRD_ETHER): the only kind ARP/NDP answers make sense on.
    pub ether: bool,
    pub loopback: bool,
    /// Administratively up with carrier.
    pub up: bool,
}

/// The devices L2 announcements may use: those matching `patterns` (Cilium's `--devices`
/// syntax: an exact name, or a prefix ending in `+`), or when `patterns` is empty every
/// Ethernet device that is not loopback. Down devices stay in: the ownership FSM learns their
/// state separately and gives their groups up.
#[must_use]
pub fn select_devices(devices: &[Device], patterns: &[String]) -> Vec<Iface> {
    let wanted = |d: &Device| {
        if patterns.is_empty() {
            d.ether && !d.loopback
        } else {
            d.ether
                && patterns.iter().any(|p| match p.strip_suffix('+') {
                    Some(prefix) => d.name.starts_with(prefix),
                    None => d.name == *p,
                })
        }
    };
    let mut out: Vec<Iface> = devices
        .iter()
        .filter(|d| wanted(d))
        .map(|d| Iface {
            name: d.name.clone(),
            ifindex: d.ifindex,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The model's label selector, seen by the policy evaluator.
#[derive(Debug, Clone)]
pub struct PolicySelector(ModelSelector);

impl policy::Selector for PolicySelector {
    fn matches(&self, labels: &Labels) -> bool {
        self.0.matches(labels)
    }
}

fn selector_spec(
    sel: Option<&rackd_model::selector::LabelSelector>,
) -> SelectorSpec<PolicySelector> {
    match sel {
        None => SelectorSpec::All,
        Some(s) => match ModelSelector::compile(s) {
            Ok(c) => SelectorSpec::Valid(PolicySelector(c)),
            Err(e) => SelectorSpec::Invalid {
                reason: e.to_string(),
            },
        },
    }
}

/// Everything the evaluator needs, from the snapshot. `lb_ips` are LB-IPAM's current
/// assignments by (namespace, name); addresses written in a Service's `status` (assigned by
/// another IPAM) count too, as for BGP.
#[must_use]
pub fn evaluate(snap: &Snapshot, node_name: &str, devices: &[Iface], lb_ips: &LbIps) -> Evaluation {
    let node = NodeInput {
        name: node_name.to_owned(),
        labels: snap
            .node(node_name)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default(),
    };
    let policies: Vec<PolicyInput<PolicySelector>> = snap
        .l2_announcement_policies()
        .map(|p| PolicyInput {
            name: p.metadata.name.clone().unwrap_or_default(),
            node_selector: selector_spec(p.spec.node_selector.as_ref()),
            service_selector: selector_spec(p.spec.service_selector.as_ref()),
            interfaces: p.spec.interfaces.clone().unwrap_or_default(),
            external_ips: p.spec.external_ips,
            load_balancer_ips: p.spec.load_balancer_ips,
        })
        .collect();
    if policies.is_empty() {
        return Evaluation::default();
    }
    let services: Vec<ServiceInput> = snap
        .services()
        .map(|svc| {
            let namespace = svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = svc.metadata.name.clone().unwrap_or_default();
            let spec = svc.spec.as_ref();
            let parse =
                |v: &[String]| -> Vec<IpAddr> { v.iter().filter_map(|s| s.parse().ok()).collect() };
            let ingress = crate::lbipam_ctl::service_addresses(lb_ips, svc, &namespace, &name);
            ServiceInput {
                labels: svc.metadata.labels.clone().unwrap_or_default(),
                load_balancer_class: spec.and_then(|s| s.load_balancer_class.clone()),
                external_ips: parse(
                    spec.and_then(|s| s.external_ips.as_deref())
                        .unwrap_or_default(),
                ),
                load_balancer_ingress: ingress,
                namespace,
                name,
            }
        })
        .collect();
    policy::evaluate(&node, devices, &policies, &services)
}

/// The policies' problems as conditions of the policies (Cilium's types; its reason on
/// these conditions is `error`).
#[must_use]
pub fn policy_conditions(eval: &Evaluation) -> Vec<ObjectCondition> {
    eval.errors
        .iter()
        .flat_map(|(name, e)| {
            e.conditions().map(move |c| {
                ObjectCondition::new(ObjectKey::cluster(Kind::L2AnnouncementPolicy, name), c)
            })
        })
        .collect()
}

/// The set of interfaces any desired group uses (where the responder must be attached).
#[must_use]
pub fn used_interfaces(eval: &Evaluation) -> BTreeSet<Iface> {
    eval.groups
        .values()
        .flat_map(|g| g.interfaces.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackd_model::{CheckOptions, parse_documents};

    fn snapshot(yaml: &str) -> Snapshot {
        let parsed = parse_documents("t.yaml", yaml);
        let out = Snapshot::build(&[parsed], &CheckOptions::default());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.snapshot
    }

    fn dev(name: &str, ifindex: u32) -> Device {
        Device {
            name: name.into(),
            ifindex,
            ether: true,
            loopback: false,
            up: true,
        }
    }

    const CONFIG: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node1
  labels: {rack: r1}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: l2
spec:
  nodeSelector:
    matchLabels: {rack: r1}
  serviceSelector:
    matchLabels: {l2: "yes"}
  interfaces: ["^eth[0-9]+"]
  loadBalancerIPs: true
  externalIPs: true
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {l2: "yes"}
spec:
  type: LoadBalancer
  externalIPs: ["192.0.2.77"]
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: other
  namespace: shop
spec:
  type: LoadBalancer
  ports: [{port: 80}]
"#;

    #[test]
    fn lb_and_external_ips_of_selected_services_on_matching_interfaces() {
        let snap = snapshot(CONFIG);
        let devices = select_devices(&[dev("eth0", 2), dev("eth1", 3), dev("bond0", 4)], &[]);
        let mut lb = LbIps::new();
        let web: Vec<IpAddr> = vec![
            "172.18.255.200".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        lb.insert(("shop".to_owned(), "web".to_owned()), web.into());
        let other: Vec<IpAddr> = vec!["172.18.255.201".parse().unwrap()];
        lb.insert(("shop".to_owned(), "other".to_owned()), other.into());
        let eval = evaluate(&snap, "node1", &devices, &lb);
        let ips: Vec<String> = eval.groups.keys().map(ToString::to_string).collect();
        assert_eq!(ips, ["172.18.255.200", "192.0.2.77", "2001:db8::1"]);
        let g = &eval.groups[&"172.18.255.200".parse::<IpAddr>().unwrap()];
        let names: Vec<&str> = g.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert!(policy_conditions(&eval).is_empty());
        assert_eq!(used_interfaces(&eval).len(), 2);
        // Another node: the node selector does not match.
        assert!(evaluate(&snap, "node2", &devices, &lb).groups.is_empty());
    }

    #[test]
    fn a_bad_regex_is_refused_at_load_and_reported_as_a_condition() {
        // Validation refuses it first (the last good policy stays in force) ...
        let parsed = parse_documents("t.yaml", &CONFIG.replace("^eth[0-9]+", "eth(["));
        let out = Snapshot::build(&[parsed], &CheckOptions::default());
        let e = out
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(e.contains("spec.interfaces[0]"), "{e}");
        // ... and the evaluator's conditions become one status line each.
        let mut eval = Evaluation::default();
        eval.errors.insert(
            "l2".into(),
            policy::PolicyErrors {
                bad_interface_regex: Some("unclosed character class".into()),
                ..Default::default()
            },
        );
        let c = policy_conditions(&eval);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].object,
            Some(ObjectKey::cluster(Kind::L2AnnouncementPolicy, "l2"))
        );
        assert_eq!(c[0].condition.type_, "io.cilium/bad-interface-regex");
        assert_eq!(c[0].condition.reason, "error");
        assert_eq!(c[0].condition.message, "unclosed character class");
    }

    #[test]
    fn device_patterns_follow_cilium() {
        let mut lo = dev("lo", 1);
        lo.loopback = true;
        let mut tun = dev("tun0", 9);
        tun.ether = false;
        let all = [lo, dev("eth0", 2), dev("eth1", 3), dev("ens5", 4), tun];
        let names = |p: &[&str]| -> Vec<String> {
            let p: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
            select_devices(&all, &p)
                .into_iter()
                .map(|i| i.name)
                .collect()
        };
        assert_eq!(names(&[]), ["ens5", "eth0", "eth1"]);
        assert_eq!(names(&["eth+"]), ["eth0", "eth1"]);
        assert_eq!(names(&["ens5", "tun0"]), ["ens5"]);
        assert!(names(&["eth9"]).is_empty());
    }
}
