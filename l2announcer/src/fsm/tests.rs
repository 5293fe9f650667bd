//! Unit tests of the ownership state machine: claims under the lease, fencing and stale
//! observations, interfaces going down, lease loss and shutdown ordering, and a few nodes
//! stepped together (settling, crash, handover, link down).

use super::*;
use std::collections::VecDeque;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
}

fn iface(n: u32) -> Iface {
    Iface {
        name: format!("eth{n}"),
        ifindex: n + 2,
    }
}

fn desired(ips: impl IntoIterator<Item = u32>, ifaces: &[u32]) -> BTreeMap<IpAddr, DesiredGroup> {
    ips.into_iter()
        .map(|i| {
            (
                ip(i),
                DesiredGroup {
                    services: BTreeSet::new(),
                    interfaces: ifaces.iter().map(|n| iface(*n)).collect(),
                },
            )
        })
        .collect()
}

fn fsm(node: &str) -> Fsm {
    Fsm::new(FsmConfig {
        node: node.into(),
        gratuitous_count: 3,
        claim_delay: Duration::from_secs(2),
    })
}

/// A node holding `ip(1)` on eth0 (and eth1 if `two`).
fn holding(two: bool) -> (Fsm, Instant) {
    let now = Instant::now();
    let mut f = fsm("a");
    f.step(now, Input::LeaseAcquired);
    let ifs: &[u32] = if two { &[0, 1] } else { &[0] };
    let a = f.step(now, Input::Desired(desired([1], ifs)));
    assert_eq!(a, vec![Action::Claim(ip(1))]);
    let a = f.step(
        now,
        Input::ClaimResult {
            ip: ip(1),
            outcome: ClaimOutcome::Won { revision: 5 },
        },
    );
    let programs = a
        .iter()
        .filter(|x| matches!(x, Action::Program { .. }))
        .count();
    assert_eq!(programs, ifs.len());
    // Program comes before its gratuitous announcement.
    assert!(matches!(a[0], Action::Program { .. }));
    assert!(matches!(a[1], Action::Gratuitous { count: 3, .. }));
    (f, now)
}

#[test]
fn no_claim_without_lease() {
    let mut f = fsm("a");
    let a = f.step(Instant::now(), Input::Desired(desired([1], &[0])));
    assert!(a.is_empty());
    let a = f.step(Instant::now(), Input::LeaseAcquired);
    assert_eq!(a, vec![Action::Claim(ip(1))]);
}

#[test]
fn claim_held_elsewhere_then_freed() {
    let now = Instant::now();
    let mut f = fsm("a");
    f.step(now, Input::LeaseAcquired);
    f.step(now, Input::Desired(desired([1], &[0])));
    let a = f.step(
        now,
        Input::ClaimResult {
            ip: ip(1),
            outcome: ClaimOutcome::Held {
                holder: "b".into(),
                revision: 3,
            },
        },
    );
    assert!(a.is_empty());
    let a = f.step(
        now,
        Input::Observed {
            ip: ip(1),
            owner: Owner::Free,
            revision: 9,
        },
    );
    assert_eq!(a, vec![Action::Claim(ip(1))]);
}

#[test]
fn losing_desire_withdraws_before_release() {
    let (mut f, now) = holding(true);
    let a = f.step(now, Input::Desired(BTreeMap::new()));
    assert_eq!(
        a,
        vec![
            Action::Unprogram {
                ip: ip(1),
                iface: iface(0)
            },
            Action::Unprogram {
                ip: ip(1),
                iface: iface(1)
            },
            Action::Release(ip(1)),
        ]
    );
    // Idempotent while the release is in flight.
    assert!(f.step(now, Input::Tick).is_empty());
}

#[test]
fn other_owner_observed_fences_at_once() {
    let (mut f, now) = holding(false);
    let a = f.step(
        now,
        Input::Observed {
            ip: ip(1),
            owner: Owner::Other("b".into()),
            revision: 7,
        },
    );
    assert_eq!(
        a,
        vec![Action::Unprogram {
            ip: ip(1),
            iface: iface(0)
        }]
    );
}

#[test]
fn stale_observation_is_ignored() {
    let (mut f, now) = holding(false);
    // The previous holder's deletion (revision 4) arrives after our win at 5.
    let a = f.step(
        now,
        Input::Observed {
            ip: ip(1),
            owner: Owner::Free,
            revision: 4,
        },
    );
    assert!(a.is_empty());
    assert!(f.is_programmed(ip(1), 2));
}

#[test]
fn interface_down_gives_up_group() {
    let (mut f, now) = holding(false);
    let a = f.step(
        now,
        Input::Link {
            ifindex: 2,
            up: false,
        },
    );
    assert_eq!(
        a,
        vec![
            Action::Unprogram {
                ip: ip(1),
                iface: iface(0)
            },
            Action::Release(ip(1)),
        ]
    );
    // Deletion observed; link back up: claim again.
    f.step(
        now,
        Input::Observed {
            ip: ip(1),
            owner: Owner::Free,
            revision: 6,
        },
    );
    let a = f.step(
        now,
        Input::Link {
            ifindex: 2,
            up: true,
        },
    );
    assert_eq!(a, vec![Action::Claim(ip(1))]);
}

#[test]
fn one_of_two_interfaces_down_keeps_group() {
    let (mut f, now) = holding(true);
    let a = f.step(
        now,
        Input::Link {
            ifindex: 3,
            up: false,
        },
    );
    assert_eq!(
        a,
        vec![Action::Unprogram {
            ip: ip(1),
            iface: iface(1)
        }]
    );
    let a = f.step(
        now,
        Input::Link {
            ifindex: 3,
            up: true,
        },
    );
    assert_eq!(
        a[0],
        Action::Program {
            ip: ip(1),
            iface: iface(1)
        }
    );
}

#[test]
fn shutdown_withdraws_all_then_revokes() {
    let (mut f, now) = holding(true);
    let a = f.step(now, Input::Shutdown);
    assert_eq!(a.len(), 3);
    assert!(a[..2].iter().all(|x| matches!(x, Action::Unprogram { .. })));
    assert_eq!(a[2], Action::RevokeLease);
    // Nothing after shutdown programs again.
    let a = f.step(
        now,
        Input::ClaimResult {
            ip: ip(1),
            outcome: ClaimOutcome::Won { revision: 99 },
        },
    );
    assert!(a.is_empty());
    assert!(f.step(now, Input::Shutdown).is_empty());
}

#[test]
fn lease_lost_withdraws_without_release_and_reclaims_later() {
    let (mut f, now) = holding(false);
    let a = f.step(now, Input::LeaseLost);
    assert_eq!(
        a,
        vec![Action::Unprogram {
            ip: ip(1),
            iface: iface(0)
        }]
    );
    assert!(f.step(now, Input::Tick).is_empty());
    let a = f.step(now, Input::LeaseAcquired);
    assert_eq!(a, vec![Action::Claim(ip(1))]);
    // The old claim is still there under the dead lease: reported as held.
    let a = f.step(
        now,
        Input::ClaimResult {
            ip: ip(1),
            outcome: ClaimOutcome::Held {
                holder: "a".into(),
                revision: 5,
            },
        },
    );
    assert!(a.is_empty());
}

#[test]
fn failed_claim_waits_for_tick() {
    let now = Instant::now();
    let mut f = fsm("a");
    f.step(now, Input::LeaseAcquired);
    f.step(now, Input::Desired(desired([1], &[0])));
    let a = f.step(
        now,
        Input::ClaimResult {
            ip: ip(1),
            outcome: ClaimOutcome::Failed,
        },
    );
    assert!(a.is_empty());
    assert_eq!(f.step(now, Input::Tick), vec![Action::Claim(ip(1))]);
}

#[test]
fn non_preferred_node_defers_claim() {
    let now = Instant::now();
    let mut f = fsm("a");
    f.step(now, Input::LeaseAcquired);
    f.step(now, Input::Members(["a".into(), "b".into()].into()));
    let a = f.step(now, Input::Desired(desired(0..100, &[0])));
    let claimed = a.len();
    assert!(claimed > 20 && claimed < 80, "claimed {claimed} of 100");
    // After the claim delay the rest is claimed too.
    let later = now + Duration::from_secs(3);
    assert_eq!(f.step(later, Input::Tick).len(), 100 - claimed);
}

// ---- A small simulation: several FSMs against an atomic in-memory store. ----

struct Sim {
    nodes: Vec<Fsm>,
    alive: Vec<bool>,
    inbox: Vec<VecDeque<Input>>,
    /// ip -> (holder index, lease epoch of the holder when claimed)
    store: BTreeMap<IpAddr, usize>,
    rev: i64,
    programmed: BTreeMap<IpAddr, BTreeSet<usize>>,
    now: Instant,
    rng: u64,
}

impl Sim {
    fn new(n: usize, groups: u32) -> Self {
        let now = Instant::now();
        let names: BTreeSet<String> = (0..n).map(|i| format!("n{i}")).collect();
        let mut s = Sim {
            nodes: (0..n).map(|i| fsm(&format!("n{i}"))).collect(),
            alive: vec![true; n],
            inbox: vec![VecDeque::new(); n],
            store: BTreeMap::new(),
            rev: 0,
            programmed: BTreeMap::new(),
            now,
            rng: 0x1234_5678,
        };
        for q in &mut s.inbox {
            q.push_back(Input::Members(names.clone()));
            q.push_back(Input::LeaseAcquired);
            q.push_back(Input::Desired(desired(0..groups, &[0])));
        }
        s
    }

    fn rand(&mut self, n: usize) -> usize {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        usize::try_from(self.rng >> 33).unwrap() % n
    }

    fn broadcast(&mut self, ip: IpAddr, holder: Option<usize>) {
        for (i, q) in self.inbox.iter_mut().enumerate() {
            let owner = match holder {
                None => Owner::Free,
                Some(h) if h == i => Owner::Me,
                Some(h) => Owner::Other(format!("n{h}")),
            };
            q.push_back(Input::Observed {
                ip,
                owner,
                revision: self.rev,
            });
        }
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Program { ip, .. } => {
                    assert_eq!(
                        self.store.get(&ip),
                        Some(&i),
                        "n{i} programs {ip} without holding it"
                    );
                    let p = self.programmed.entry(ip).or_default();
                    p.insert(i);
                    assert_eq!(p.len(), 1, "two nodes answer for {ip}: {p:?}");
                }
                Action::Unprogram { ip, .. } => {
                    if let Some(p) = self.programmed.get_mut(&ip) {
                        p.remove(&i);
                    }
                }
                Action::Gratuitous { .. } => {}
                Action::Claim(ip) => {
                    let outcome = match self.store.get(&ip) {
                        None => {
                            self.rev += 1;
                            self.store.insert(ip, i);
                            self.broadcast(ip, Some(i));
                            ClaimOutcome::Won { revision: self.rev }
                        }
                        Some(h) if *h == i => ClaimOutcome::Won { revision: self.rev },
                        Some(h) => ClaimOutcome::Held {
                            holder: format!("n{h}"),
                            revision: self.rev,
                        },
                    };
                    self.inbox[i].push_back(Input::ClaimResult { ip, outcome });
                }
                Action::Release(ip) => {
                    if self.store.get(&ip) == Some(&i) {
                        assert!(
                            !self.programmed.get(&ip).is_some_and(|p| p.contains(&i)),
                            "n{i} released {ip} while still answering"
                        );
                        self.rev += 1;
                        self.store.remove(&ip);
                        self.broadcast(ip, None);
                    }
                }
                Action::RevokeLease => self.expire(i),
            }
        }
    }

    /// The store drops every claim of node `i` (lease expired or revoked).
    fn expire(&mut self, i: usize) {
        let held: Vec<IpAddr> = self
            .store
            .iter()
            .filter(|(_, h)| **h == i)
            .map(|(ip, _)| *ip)
            .collect();
        if !self.alive[i] {
            // A dead node stopped answering: its datapath liveness guard fired.
            for p in self.programmed.values_mut() {
                p.remove(&i);
            }
        }
        self.rev += 1;
        for ip in held {
            self.store.remove(&ip);
            self.broadcast(ip, None);
        }
        let members: BTreeSet<String> = (0..self.nodes.len())
            .filter(|j| *j != i && self.alive[*j])
            .map(|j| format!("n{j}"))
            .collect();
        for q in &mut self.inbox {
            q.push_back(Input::Members(members.clone()));
        }
    }

    /// Delivers inputs in a pseudo-random interleaving until quiet.
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            let ready: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.alive[*i] && !self.inbox[*i].is_empty())
                .collect();
            if ready.is_empty() {
                // Let deferred claims happen.
                self.now += Duration::from_secs(3);
                let mut any = false;
                for i in 0..self.nodes.len() {
                    if self.alive[i] {
                        let a = self.nodes[i].step(self.now, Input::Tick);
                        any |= !a.is_empty();
                        self.apply(i, a);
                    }
                }
                if !any {
                    return;
                }
                continue;
            }
            let i = ready[self.rand(ready.len())];
            if let Some(input) = self.inbox[i].pop_front() {
                let a = self.nodes[i].step(self.now, input);
                self.apply(i, a);
            }
        }
        panic!("simulation did not settle");
    }

    fn check_one_owner_each(&self, groups: u32) {
        for g in 0..groups {
            let holder = self.store.get(&ip(g)).copied();
            let p = self.programmed.get(&ip(g)).cloned().unwrap_or_default();
            assert!(holder.is_some(), "{} unowned", ip(g));
            assert_eq!(p.into_iter().collect::<Vec<_>>(), vec![holder.unwrap()]);
        }
    }

    fn held_by(&self, i: usize) -> usize {
        self.store.values().filter(|h| **h == i).count()
    }
}

#[test]
fn three_nodes_settle_with_one_owner_each_and_spread() {
    let mut s = Sim::new(3, 300);
    s.run();
    s.check_one_owner_each(300);
    for i in 0..3 {
        assert!(s.held_by(i) > 50, "n{i} holds {}", s.held_by(i));
    }
}

#[test]
fn crash_moves_groups_to_exactly_one_survivor() {
    for seed in 0..5 {
        let mut s = Sim::new(3, 120);
        s.rng = seed;
        s.run();
        s.alive[1] = false;
        s.expire(1);
        s.run();
        s.check_one_owner_each(120);
        assert_eq!(s.held_by(1), 0);
    }
}

#[test]
fn shutdown_hands_over_without_overlap() {
    let mut s = Sim::new(3, 120);
    s.run();
    let a = s.nodes[0].step(s.now, Input::Shutdown);
    s.apply(0, a);
    s.alive[0] = false;
    s.run();
    s.check_one_owner_each(120);
}

#[test]
fn link_down_on_holder_moves_groups() {
    let mut s = Sim::new(2, 60);
    s.run();
    s.inbox[0].push_back(Input::Link {
        ifindex: 2,
        up: false,
    });
    s.run();
    s.check_one_owner_each(60);
    assert_eq!(s.held_by(0), 0);
    assert_eq!(s.held_by(1), 60);
}
