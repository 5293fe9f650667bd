//! Arbitrary interface regexes, device names and flags through policy evaluation: no panics,
//! and a bad regex is always reported and disables the policy.
#![no_main]

use std::collections::BTreeMap;

use l2announcer::policy::{
    Iface, Labels, NodeInput, PolicyInput, Selector, SelectorSpec, ServiceInput, evaluate,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Any;
impl Selector for Any {
    fn matches(&self, _: &Labels) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let flags = parts.next().map_or(0, |s| s.len());
    let patterns: Vec<String> = parts
        .next()
        .unwrap_or("")
        .split('\t')
        .map(str::to_owned)
        .collect();
    let devices: Vec<Iface> = parts
        .enumerate()
        .map(|(i, n)| Iface {
            name: n.to_owned(),
            ifindex: u32::try_from(i).unwrap_or(0),
        })
        .collect();
    let policy = PolicyInput::<Any> {
        name: "p".into(),
        node_selector: SelectorSpec::All,
        service_selector: SelectorSpec::All,
        interfaces: patterns,
        external_ips: flags & 1 != 0,
        load_balancer_ips: flags & 2 != 0,
    };
    let svc = ServiceInput {
        namespace: "ns".into(),
        name: "s".into(),
        labels: BTreeMap::new(),
        load_balancer_class: None,
        external_ips: vec![
            "192.0.2.1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        ],
        load_balancer_ingress: vec![
            "2001:db8::1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        ],
    };
    let e = evaluate(&NodeInput::default(), &devices, &[policy], &[svc]);
    if e.errors.contains_key("p") {
        assert!(e.groups.is_empty());
    }
});
