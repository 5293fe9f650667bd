//! A CiliumEgressGatewayPolicy compiled once per resolution: selectors compiled with the
//! model's [`Selector`], CIDRs parsed, gateways read. The rules mirror Cilium's `ParseCEGP`
//! (`pkg/egressgateway/policy.go`), which refuses the whole policy on any error; so does this.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use rackd_model::cilium::{CiliumEgressGatewayPolicy, EgressGateway};
use rackd_model::selector::{LabelSelector, Operator, Selector, SelectorError};

use crate::endpoints::{Endpoint, NamespaceLabelView, NodeInfo, PodLabels};
use crate::types::{EgressAddress, GatewaySlot, NamespaceLabels};

/// Why a policy cannot be used. Each names the field, for the condition message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    /// `metadata.name` is missing (Cilium: "must have a name").
    #[error("metadata.name is missing")]
    NoName,
    /// A label selector does not compile.
    #[error("{field}.{source}")]
    Selector {
        field: String,
        source: SelectorError,
    },
    /// A rule selects no pods by itself (Cilium: "cannot have both nil namespace selector and
    /// nil pod selector").
    #[error("{field}: neither namespaceSelector nor podSelector is set")]
    RuleWithoutSelector { field: String },
    /// `selectors` is empty.
    #[error("spec.selectors is empty")]
    NoSelectors,
    /// `destinationCIDRs` is empty (Cilium: "destinationCIDRs can't be empty").
    #[error("spec.destinationCIDRs is empty")]
    NoDestinations,
    /// A CIDR does not parse.
    #[error("{field}: {value:?} is not a CIDR")]
    Cidr { field: String, value: String },
    /// `egressIP` does not parse.
    #[error("{field}.egressIP: {value:?} is not an IP address")]
    EgressIp { field: String, value: String },
    /// Both `egressIP` and `interface` (Cilium: "can't specify both an interface and an egress
    /// IP").
    #[error("{field}: both egressIP and interface are set")]
    EgressIpAndInterface { field: String },
}

/// One `selectors[]` entry's pod half. `None` = the field is absent (no constraint).
#[derive(Debug, Clone)]
struct Rule {
    namespace: Option<Selector>,
    pod: Option<Selector>,
}

/// One gateway slot, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    pub slot: GatewaySlot,
    pub selector: Selector,
    pub egress: EgressAddress,
}

/// A policy ready to be matched.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    rules: Vec<Rule>,
    /// The `nodeSelector`s of all rules, as one list: Cilium keeps `endpointSelectors` and
    /// `nodeSelectors` as two separate lists in `PolicyConfig` and an endpoint matches when
    /// any endpoint selector matches it AND (the node list is empty OR any node selector
    /// matches its node) (`policy.go`, `policy_test.go` TestPolicyConfig_updateMatchedEndpointIDs).
    node_selectors: Vec<Selector>,
    /// Destination prefixes, host bits cleared, duplicates removed, in spec order.
    pub destinations: Vec<IpNet>,
    /// Excluded prefixes that lie within some destination (the only ones with an effect).
    pub excluded: Vec<IpNet>,
    /// Excluded prefixes within no destination: reported, not programmed.
    pub unused_excluded: Vec<IpNet>,
    /// `egressGateways` if non-empty, else `egressGateway` (Cilium ignores the latter then).
    pub gateways: Vec<Gateway>,
}

impl CompiledPolicy {
    /// Cilium's endpoint match (see [`CompiledPolicy::node_selectors`]).
    pub fn selects(
        &self,
        ep: &Endpoint<'_>,
        namespaces: &NamespaceLabels,
        nodes: &BTreeMap<&str, NodeInfo<'_>>,
    ) -> bool {
        let pod = PodLabels {
            labels: ep.labels,
            namespace: ep.namespace,
            service_account: ep.service_account,
        };
        let ns = NamespaceLabelView {
            name: ep.namespace,
            labels: namespaces.get(ep.namespace),
        };
        let by_rule = self.rules.iter().any(|r| {
            r.namespace.as_ref().is_none_or(|s| s.matches(&ns))
                && r.pod.as_ref().is_none_or(|s| s.matches(&pod))
        });
        if !by_rule {
            return false;
        }
        if self.node_selectors.is_empty() {
            return true;
        }
        // An unknown node has no labels, as in Cilium (a nil map from nodesAddresses2Labels).
        let node_labels = nodes.get(ep.node).and_then(|n| n.labels);
        self.node_selectors.iter().any(|s| s.matches(&node_labels))
    }
}

/// Compiles `p`, collecting every error (so one condition lists them all).
pub(crate) fn compile(p: &CiliumEgressGatewayPolicy) -> Result<CompiledPolicy, Vec<PolicyError>> {
    let mut errs = Vec::new();
    if p.metadata.name.as_deref().is_none_or(str::is_empty) {
        errs.push(PolicyError::NoName);
    }
    let spec = &p.spec;

    if spec.selectors.is_empty() {
        errs.push(PolicyError::NoSelectors);
    }
    let mut rules = Vec::with_capacity(spec.selectors.len());
    let mut node_selectors = Vec::new();
    for (i, r) in spec.selectors.iter().enumerate() {
        let base = format!("spec.selectors[{i}]");
        if r.namespace_selector.is_none() && r.pod_selector.is_none() {
            errs.push(PolicyError::RuleWithoutSelector {
                field: base.clone(),
            });
        }
        let namespace = optional(
            r.namespace_selector.as_ref(),
            &base,
            "namespaceSelector",
            &mut errs,
        );
        let pod = optional(r.pod_selector.as_ref(), &base, "podSelector", &mut errs);
        if let Some(s) = optional(r.node_selector.as_ref(), &base, "nodeSelector", &mut errs) {
            node_selectors.push(s);
        }
        rules.push(Rule { namespace, pod });
    }

    if spec.destination_cidrs.is_empty() {
        errs.push(PolicyError::NoDestinations);
    }
    let destinations = cidrs(&spec.destination_cidrs, "spec.destinationCIDRs", &mut errs);
    let all_excluded = cidrs(&spec.excluded_cidrs, "spec.excludedCIDRs", &mut errs);
    // An exclusion works in the LPM only when it is at least as specific as a destination it
    // lies in; a wider or disjoint one is beaten or never consulted.
    let (excluded, unused_excluded) = all_excluded
        .into_iter()
        .partition(|e| destinations.iter().any(|d| d.contains(e)));

    let gateways = if spec.egress_gateways.is_empty() {
        gateway(&spec.egress_gateway, GatewaySlot::Single, &mut errs)
            .into_iter()
            .collect()
    } else {
        spec.egress_gateways
            .iter()
            .enumerate()
            .filter_map(|(i, g)| gateway(g, GatewaySlot::Index(i), &mut errs))
            .collect()
    };

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(CompiledPolicy {
        rules,
        node_selectors,
        destinations,
        excluded,
        unused_excluded,
        gateways,
    })
}

fn optional(
    sel: Option<&LabelSelector>,
    base: &str,
    field: &str,
    errs: &mut Vec<PolicyError>,
) -> Option<Selector> {
    let sel = sel?;
    match Selector::compile(sel) {
        Ok(s) => Some(s),
        Err(source) => {
            errs.push(PolicyError::Selector {
                field: format!("{base}.{field}"),
                source,
            });
            None
        }
    }
}

/// Parses CIDRs like Go's `netip.ParsePrefix(...)` followed by masking: host bits are cleared
/// (`10.0.4.1/24` is `10.0.4.0/24`, the LPM key Cilium writes). Duplicates are dropped.
fn cidrs(values: &[String], field: &str, errs: &mut Vec<PolicyError>) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match v.parse::<IpNet>() {
            Ok(n) => {
                let n = n.trunc();
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            Err(_) => errs.push(PolicyError::Cidr {
                field: format!("{field}[{i}]"),
                value: v.clone(),
            }),
        }
    }
    out
}

fn gateway(g: &EgressGateway, slot: GatewaySlot, errs: &mut Vec<PolicyError>) -> Option<Gateway> {
    let field = format!("spec.{slot}");
    let selector = match Selector::compile(&g.node_selector) {
        Ok(s) => Some(s),
        Err(source) => {
            errs.push(PolicyError::Selector {
                field: format!("{field}.nodeSelector"),
                source,
            });
            None
        }
    };
    let iface = g.interface.as_deref().filter(|s| !s.is_empty());
    let ip = g.egress_ip.as_deref().filter(|s| !s.is_empty());
    let egress = match (iface, ip) {
        (Some(_), Some(_)) => {
            errs.push(PolicyError::EgressIpAndInterface { field });
            return None;
        }
        (Some(i), None) => EgressAddress::Interface(i.to_owned()),
        (None, Some(ip)) => match ip.parse::<IpAddr>() {
            Ok(a) => EgressAddress::Ip(a),
            Err(_) => {
                errs.push(PolicyError::EgressIp {
                    field,
                    value: ip.to_owned(),
                });
                return None;
            }
        },
        (None, None) => EgressAddress::DefaultRoute,
    };
    Some(Gateway {
        slot,
        selector: selector?,
        egress,
    })
}

/// A selector in kubectl's notation (`egress-gw=true,zone in (a,b),!tainted`), for messages.
pub(crate) fn describe(sel: &Selector) -> String {
    if sel.is_everything() {
        return "{} (every node)".to_owned();
    }
    let parts: Vec<String> = sel
        .requirements()
        .iter()
        .map(|r| {
            let vals: Vec<&str> = r.values().iter().map(String::as_str).collect();
            match (r.operator(), vals.as_slice()) {
                (Operator::In, [v]) => format!("{}={v}", r.key()),
                (Operator::In, vs) => format!("{} in ({})", r.key(), vs.join(",")),
                (Operator::NotIn, vs) => format!("{} notin ({})", r.key(), vs.join(",")),
                (Operator::Exists, _) => r.key().to_owned(),
                (Operator::DoesNotExist, _) => format!("!{}", r.key()),
            }
        })
        .collect();
    parts.join(",")
}
