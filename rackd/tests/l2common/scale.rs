//! The scale run: thousands of single-stack LoadBalancer Services on one policy, swept by ARP
//! from the client, with rackd's memory and the lease backend's write rate.

use super::*;

/// Extra configuration: a /17 pool, a policy on eth0 and `n` single-stack LoadBalancer
/// Services (labelled `tier: scale`), each getting its own IPv4 address.
pub fn scale_yaml(n: usize) -> String {
    let mut y = String::with_capacity(n * 200 + 1024);
    y.push_str(
        "apiVersion: cilium.io/v2alpha1\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: scale-pool\nspec:\n  blocks:\n  - cidr: 10.200.0.0/17\n  serviceSelector:\n    matchLabels: {tier: scale}\n---\napiVersion: cilium.io/v2alpha1\nkind: CiliumL2AnnouncementPolicy\nmetadata:\n  name: scale\nspec:\n  serviceSelector:\n    matchLabels: {tier: scale}\n  interfaces: [\"^eth0$\"]\n  loadBalancerIPs: true\n",
    );
    for i in 0..n {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc{i}\n  namespace: scale\n  labels: {{tier: scale}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
        ));
    }
    y
}

/// Every address of 10.200.0.0/17 that answered an ARP request from the client, with the MACs
/// that answered it. Requests go out in bursts (a veth queue holds ~1,000 frames); addresses
/// that got no answer are asked again up to `rounds` times.
pub fn arp_sweep(
    lab: &L2Lab,
    targets: &[Ipv4Addr],
    rounds: usize,
) -> std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>> {
    let sock = PacketSocket::open(&lab.client, "eth0").unwrap();
    let mac = lab.client_mac;
    let targets = targets.to_vec();
    std::thread::spawn(move || {
        let mut answers: std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>> =
            std::collections::BTreeMap::new();
        let mut buf = [0u8; 2048];
        let mut drain = |answers: &mut std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>>,
                         wait: Duration| {
            loop {
                if !sock.wait_readable(wait) {
                    return;
                }
                let Some(f) = sock.recv_nowait(&mut buf) else {
                    continue;
                };
                if f.len() >= 42
                    && u16::from_be_bytes([f[12], f[13]]) == 0x0806
                    && u16::from_be_bytes([f[20], f[21]]) == 2
                    && Ipv4Addr::new(f[38], f[39], f[40], f[41]) == CLIENT4
                {
                    let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                    answers
                        .entry(spa)
                        .or_default()
                        .insert(f[22..28].try_into().unwrap());
                }
            }
        };
        for _ in 0..rounds {
            let todo: Vec<Ipv4Addr> = targets
                .iter()
                .filter(|t| !answers.contains_key(t))
                .copied()
                .collect();
            if todo.is_empty() {
                break;
            }
            for chunk in todo.chunks(256) {
                for t in chunk {
                    // A request the veth queue drops is asked again next round; what is
                    // checked is that every address answered.
                    let _ = sock.send(&datapath::packet::arp_request(mac, CLIENT4, *t));
                }
                drain(&mut answers, Duration::from_millis(2));
            }
            drain(&mut answers, Duration::from_millis(500));
        }
        answers
    })
    .join()
    .unwrap()
}

/// Peak RSS of a node's rackd, in MiB.
pub fn rackd_peak_rss_mib(lab: &L2Lab, i: usize) -> f64 {
    let pid = lab.nodes[i].rackd.as_ref().unwrap().pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// (IP, interface) entries each node answers for.
pub fn announced_counts(lab: &L2Lab) -> Vec<usize> {
    (0..lab.nodes.len())
        .map(|i| match lab.call(i, &Request::L2Announcements) {
            Some(Reply::L2Announcements(a)) => a.len(),
            _ => 0,
        })
        .collect()
}

/// Figures of [`scale_run`].
#[derive(Debug, Clone)]
pub struct ScaleFigures {
    pub services: usize,
    pub t_all_announced: Duration,
    pub split: Vec<usize>,
    pub t_sweep: Duration,
    pub peak_rss_mib: Vec<f64>,
    pub steady_writes_per_sec: f64,
    pub victim_groups: usize,
    pub t_failover: Duration,
    pub split_after: Vec<usize>,
    /// Claim/release transactions and all writes the survivors made for the failover.
    pub failover_txns: u64,
    pub failover_writes: u64,
}

/// Sum of one kind (or every kind, `None`) of `rackd_l2_datastore_writes` over `nodes`.
pub fn writes_of(lab: &L2Lab, nodes: &[usize], kind: Option<&str>) -> u64 {
    nodes
        .iter()
        .map(|i| {
            lab.metrics(*i)
                .lines()
                .filter(|l| l.starts_with("rackd_l2_datastore_writes{"))
                .filter(|l| kind.is_none_or(|k| l.contains(&format!("kind=\"{k}\""))))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Writes per second summed over the nodes, each measured between two refreshes of its own
/// metrics (rackd refreshes them every resync, 5 s), over at least `window`.
pub fn writes_per_sec(lab: &L2Lab, window: Duration) -> f64 {
    let next_change = |i: usize, after: u64| -> (Instant, u64) {
        loop {
            let v = writes_of(lab, &[i], None);
            if v != after {
                return (Instant::now(), v);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut total = 0.0;
    for i in 0..lab.nodes.len() {
        let (t0, v0) = next_change(i, writes_of(lab, &[i], None));
        std::thread::sleep(window);
        let (t1, v1) = next_change(i, writes_of(lab, &[i], None));
        total += (v1 - v0) as f64 / (t1 - t0).as_secs_f64();
    }
    total
}

/// `n` services over three nodes: all must answer ARP from exactly one MAC, spread over the
/// nodes; then kill -9 of the busiest node, and every address must answer again from a
/// survivor only. Panics on any violation. `measure_writes` adds the datastore write figures
/// (about a minute of sampling).
pub fn scale_run(n: usize, timings: Timings, measure_writes: bool) -> ScaleFigures {
    let t0 = Instant::now();
    let mut lab = L2Lab::prepare("l2-scale", timings, Some(&scale_yaml(n)));
    lab.client
        .route_add(&["10.200.0.0/17", "dev", "eth0"])
        .unwrap();
    for i in 0..3 {
        lab.start(i);
    }
    // LB-IPAM's addresses for the scale services, from node1.
    let targets: Vec<Ipv4Addr> = wait_for(
        "LB-IPAM to give every scale service an address",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let Some(Reply::LbipamServices(s)) = lab.call(0, &Request::LbipamServices) else {
                return Ok(Check::NotYet("no answer".into()));
            };
            let ips: Vec<Ipv4Addr> = s
                .iter()
                .filter(|s| s.namespace == "scale")
                .filter_map(|s| s.ips.first()?.parse().ok())
                .collect();
            Ok(if ips.len() == n {
                Check::Ready(ips)
            } else {
                Check::NotYet(format!("{} of {n}", ips.len()))
            })
        },
    )
    .unwrap();
    // +2: deathstar's two addresses.
    let announced = wait_for(
        "every address to be announced by some node",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let c = announced_counts(&lab);
            Ok(if c.iter().sum::<usize>() == n + 2 {
                Check::Ready(c)
            } else {
                Check::NotYet(format!("{c:?}"))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let t_up = t0.elapsed();
    assert!(
        announced.iter().all(|c| *c > 0),
        "all groups on one node: {announced:?}"
    );

    let check = |answers: &std::collections::BTreeMap<Ipv4Addr, BTreeSet<[u8; 6]>>,
                 dead: Option<[u8; 6]>| {
        let missing = targets.iter().filter(|t| !answers.contains_key(t)).count();
        assert_eq!(missing, 0, "{missing} of {n} addresses got no ARP answer");
        let doubles: Vec<_> = answers
            .iter()
            .filter(|(_, m)| m.len() > 1)
            .take(5)
            .collect();
        assert!(doubles.is_empty(), "answered by two MACs: {doubles:?}");
        if let Some(dead) = dead {
            let from_dead = answers.values().filter(|m| m.contains(&dead)).count();
            assert_eq!(from_dead, 0, "{from_dead} answers from the killed node");
        }
    };
    let t = Instant::now();
    let answers = arp_sweep(&lab, &targets, 5);
    let t_sweep = t.elapsed();
    check(&answers, None);
    let peak_rss_mib: Vec<f64> = (0..3).map(|i| rackd_peak_rss_mib(&lab, i)).collect();
    let steady = if measure_writes {
        writes_per_sec(&lab, Duration::from_secs(10))
    } else {
        0.0
    };

    // kill -9 of the busiest node: its groups move to the survivors.
    let victim = (0..3).max_by_key(|i| announced[*i]).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let announced_before_kill = announced[victim];
    let dead_mac = lab.nodes[victim].mac;
    // Survivors' counters, freshly refreshed (metrics follow each 5 s resync).
    if measure_writes {
        std::thread::sleep(Duration::from_secs(6));
    }
    let (txn0, w0) = (
        writes_of(&lab, &survivors, Some("txn")),
        writes_of(&lab, &survivors, None),
    );
    let t = Instant::now();
    lab.nodes[victim].rackd.as_mut().unwrap().kill9().unwrap();
    let after = wait_for(
        "the survivors to announce everything",
        Duration::from_secs(240),
        Duration::from_millis(200),
        || {
            let c = announced_counts(&lab);
            let survivors: usize = (0..3).filter(|i| *i != victim).map(|i| c[i]).sum();
            Ok(if survivors == n + 2 {
                Check::Ready(c)
            } else {
                Check::NotYet(format!("{c:?}"))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let t_move = t.elapsed();
    // The killed node's datapath went quiet on its own (liveness guard): sweep again.
    let answers = arp_sweep(&lab, &targets, 5);
    check(&answers, Some(dead_mac));
    if measure_writes {
        std::thread::sleep(Duration::from_secs(6));
    }
    let failover_txns = writes_of(&lab, &survivors, Some("txn")).saturating_sub(txn0);
    let failover_writes = writes_of(&lab, &survivors, None).saturating_sub(w0);
    ScaleFigures {
        services: n,
        t_all_announced: t_up,
        split: announced.clone(),
        t_sweep,
        peak_rss_mib,
        steady_writes_per_sec: steady,
        victim_groups: announced_before_kill,
        t_failover: t_move,
        split_after: after,
        failover_txns,
        failover_writes,
    }
}
