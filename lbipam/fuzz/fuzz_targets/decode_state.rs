//! The persisted-state decoder must reject any byte string with a typed error, never panic;
//! whatever it accepts must restore, re-encode equivalently, and reconcile without panicking to
//! a fixed point that agrees with the allocator's own record and survives a restart.
#![no_main]

use lbipam::{Block, Config, LbIpam, PersistedState, PoolSpec, ServiceSpec};
use libfuzzer_sys::fuzz_target;

type Sel = std::collections::BTreeMap<String, String>;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = PersistedState::decode(data) else {
        return;
    };
    let Ok(mut ipam) = LbIpam::restore(&state) else {
        return;
    };
    let again = PersistedState::decode(&ipam.snapshot().encode()).expect("own encoding decodes");
    // Snapshots list allocations in address order; the input need not.
    let mut expected = state.allocations.clone();
    expected.sort_by_key(|a| a.ip);
    assert_eq!(again.allocations, expected);

    // Reconcile with every holder present and pools covering everything.
    let mut keys: Vec<_> = state
        .allocations
        .iter()
        .flat_map(|a| a.services.iter().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    let services: Vec<ServiceSpec> = keys
        .into_iter()
        .map(|key| ServiceSpec {
            key,
            is_load_balancer: true,
            ..Default::default()
        })
        .collect();
    let pools: Vec<PoolSpec<Sel>> = vec![
        PoolSpec::new("v4", vec![Block::parse("0.0.0.0/0", "", "").expect("valid")]),
        PoolSpec::new("v6", vec![Block::parse("::/0", "", "").expect("valid")]),
    ];
    let out = ipam.reconcile(&Config::default(), &pools, &services);
    // Nobody without a sharing key may share an address.
    for s in out.services.values() {
        for a in &s.assignments {
            assert!(a.shared_with.is_empty());
        }
    }
    // The allocator's record (interned holders) agrees with what it published.
    let mut recorded = std::collections::BTreeMap::new();
    for (ip, _, holders) in ipam.allocations() {
        for k in holders {
            recorded.entry(k.clone()).or_insert_with(Vec::new).push(ip);
        }
    }
    for (k, s) in &out.services {
        assert_eq!(recorded.remove(k).unwrap_or_default(), s.ips(), "{k}");
    }
    assert!(recorded.is_empty());
    // One reconcile reaches the fixed point, with or without a restart in between.
    let again = ipam.reconcile(&Config::default(), &pools, &services);
    assert!(!again.state_changed);
    assert_eq!(again.services, out.services);
    let mut restarted = LbIpam::restore(&ipam.snapshot()).expect("own snapshot restores");
    let after = restarted.reconcile(&Config::default(), &pools, &services);
    assert!(!after.state_changed);
    assert_eq!(after.services, out.services);
});
