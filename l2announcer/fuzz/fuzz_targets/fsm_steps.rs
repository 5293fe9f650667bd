//! Arbitrary input sequences into the ownership FSM; checks its safety rules after every step.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use l2announcer::fsm::{Action, ClaimOutcome, Fsm, FsmConfig, Input, Owner};
use l2announcer::policy::{DesiredGroup, Iface};
use libfuzzer_sys::fuzz_target;

fn ip(b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, b % 8))
}

fn iface(i: u8) -> Iface {
    Iface {
        name: format!("eth{}", i % 2),
        ifindex: 2 + u32::from(i % 2),
    }
}

fn owner(b: u8) -> Owner {
    match b % 3 {
        0 => Owner::Free,
        1 => Owner::Me,
        _ => Owner::Other(format!("n{}", b % 4)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut f = Fsm::new(FsmConfig {
        node: "me".into(),
        gratuitous_count: 3,
        claim_delay: Duration::from_millis(200),
    });
    let mut now = Instant::now();
    for c in data.chunks(3) {
        let [op, a, b] = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let input = match op % 10 {
            0 => Input::Desired(
                (0..8u8)
                    .filter(|i| a & (1 << i) != 0)
                    .map(|i| {
                        let ifs = (0..2u8).filter(|j| b & (1 << j) != 0).map(iface).collect();
                        (
                            ip(i),
                            DesiredGroup {
                                services: BTreeSet::new(),
                                interfaces: ifs,
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>(),
            ),
            1 => Input::Link {
                ifindex: 2 + u32::from(a % 2),
                up: b % 2 == 0,
            },
            2 => Input::LeaseAcquired,
            3 => Input::LeaseLost,
            4 => Input::Members(
                (0..4u8)
                    .filter(|i| a & (1 << i) != 0)
                    .map(|i| format!("n{i}"))
                    .collect(),
            ),
            5 => Input::Observed {
                ip: ip(a),
                owner: owner(b),
                revision: i64::from(b),
            },
            6 => Input::ClaimResult {
                ip: ip(a),
                outcome: match b % 3 {
                    0 => ClaimOutcome::Won {
                        revision: i64::from(b),
                    },
                    1 => ClaimOutcome::Held {
                        holder: "n1".into(),
                        revision: i64::from(b),
                    },
                    _ => ClaimOutcome::Failed,
                },
            },
            7 => {
                now += Duration::from_millis(u64::from(a) * 10);
                Input::Tick
            }
            8 => Input::ReleaseFailed(ip(a)),
            _ => Input::Shutdown,
        };
        let actions = f.step(now, input);
        // Withdrawals come before anything that lets another node win.
        let last_unprogram = actions
            .iter()
            .rposition(|a| matches!(a, Action::Unprogram { .. }));
        let first_handover = actions.iter().position(|a| {
            matches!(
                a,
                Action::Release(_) | Action::RevokeLease | Action::Claim(_)
            )
        });
        if let (Some(u), Some(h)) = (last_unprogram, first_handover) {
            assert!(u < h, "unprogram after handover: {actions:?}");
        }
        // Programmed only while holding under a live lease.
        for g in f.groups() {
            if !g.programmed.is_empty() {
                assert!(f.lease_live(), "programmed without lease");
                assert_eq!(*g.owner, Owner::Me, "programmed without holding");
            }
        }
    }
});
