//! Both benchmarks end to end at smoke size (100 Services; 1 s forwarding tests): proves the
//! generators, the restore runner, the BPF floor, the namespaces, the load generator and the
//! reports work. Needs root, `iptables-nft-restore` (Debian `iptables`) and bpf(2). No timing is
//! asserted; the figures come from the manual full-size runs (README.md).

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use svc_bench::forward::{self, ForwardConfig, Mode};
use svc_bench::loadgen::{self, LoadConfig, Test};
use svc_bench::model::{Policy, Shape, Workload};
use svc_bench::program::{self, IptCase, ProgramConfig, System};
use svc_bench::server::{self, Server};
use svc_bench::topo::{self, Lab};

/// The tests run one at a time: each checks that it left no namespace behind, which a
/// concurrent test's live namespaces would confuse (and they would disturb each other's load).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn our_namespaces() -> Vec<String> {
    let pid = std::process::id();
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("sb-") && n.contains(&format!("-{pid}-")))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn programming_smoke() {
    let _serial = serial();
    let cfg = ProgramConfig {
        workload: Workload::new(100, 10, Shape::LoadBalancer, Policy::Cluster).unwrap(),
        reps: 1,
        systems: vec![
            System::Iptables,
            System::Ipvs,
            System::BpfFloor,
            System::BpfFloorBatch,
            System::Rackd,
        ],
        lut_size: 251,
        // The positive control: iptables-nft-save must show every generated nat rule, and the
        // changed Service's new DNAT target after the partial restore.
        verify: true,
        iptables_cases: vec![
            IptCase::FullFlush,
            IptCase::Full,
            IptCase::Resync,
            IptCase::OneChange,
        ],
        restore_timeout_s: 120.0,
    };
    let r = program::run(&cfg, &mut |l: &str| eprintln!("{l}")).unwrap_or_else(|e| panic!("{e:?}"));
    for case in ["full-flush", "full", "resync", "one-change"] {
        assert!(
            r.runs
                .iter()
                .any(|x| x.system == "iptables-nft" && x.case == case && x.wall_s > 0.0),
            "{case}: {:?}",
            r.runs
        );
    }
    for sys in ["bpf-floor", "bpf-floor-batch"] {
        let full = r
            .runs
            .iter()
            .find(|x| x.system == sys && x.case == "full")
            .unwrap();
        assert!(full.compute_s.is_some(), "{full:?}");
    }
    // rackd ran both cases (each checks what it wrote); IPVS ran or says why not.
    for case in ["full", "one-change"] {
        assert!(
            r.runs
                .iter()
                .any(|x| x.system == "rackd" && x.case == case && x.wall_s > 0.0),
            "rackd {case}: {:?} {:?}",
            r.runs,
            r.skipped
        );
    }
    // IPVS ran or says why not (this kernel may lack it).
    let ran = r.runs.iter().any(|x| x.system == "ipvs");
    let skipped = r
        .skipped
        .iter()
        .any(|s| s.system == "ipvs" && !s.reason.is_empty());
    assert!(ran != skipped, "ipvs: ran {ran}, skipped {skipped}");
    assert_eq!(r.inputs.iptables_full_nat_rules, 100 * 35 + 5);
    let table = svc_bench::report::program_table(&r, "smoke");
    assert!(table.contains("| iptables-nft | full |"), "{table}");
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
}

#[test]
fn forwarding_smoke() {
    let _serial = serial();
    let cfg = ForwardConfig {
        modes: vec![
            Mode::Direct,
            Mode::Rackd,
            Mode::RackdSnat,
            Mode::Iptables,
            Mode::IptablesLocal,
            Mode::Ipvs,
            Mode::MasqNone,
            Mode::MasqIptables,
            Mode::MasqRackd,
        ],
        tests: vec![Test::Connect, Test::KeepAlive, Test::Udp, Test::Flows],
        rounds: 1,
        duration_s: 1.0,
        warmup_s: 0.1,
        workers: 2,
        server_threads: 4,
        client_cpus: vec![],
        server_cpus: vec![],
        services_loaded: 3,
        timeout_s: 2.0,
    };
    let r = forward::run(&cfg, &mut |l: &str| eprintln!("{l}")).unwrap_or_else(|e| panic!("{e:?}"));
    for mode in [
        "direct",
        "rackd",
        "rackd-snat",
        "iptables",
        "iptables-local",
        "masq-none",
        "masq-iptables",
        "masq-rackd",
    ] {
        for test in ["connect", "keep-alive", "udp"] {
            let run = r
                .runs
                .iter()
                .find(|x| x.mode == mode && x.test == test)
                .unwrap_or_else(|| panic!("no {mode}/{test}"));
            assert!(run.load.ops > 0, "{run:?}");
            assert!(run.load.errors.is_empty(), "{run:?}");
            // The servers saw the traffic the generator counted.
            let served: u64 = run
                .servers
                .iter()
                .map(|s| match test {
                    "connect" => s.accepted,
                    "keep-alive" => s.requests,
                    _ => s.datagrams,
                })
                .sum();
            assert!(served >= run.load.ops, "{run:?}");
        }
    }
    // Through kube-proxy's rules and rackd's programs both backends are chosen (the DNAT
    // really load-balances).
    for mode in ["iptables", "iptables-local", "rackd", "rackd-snat"] {
        let c = r
            .runs
            .iter()
            .find(|x| x.mode == mode && x.test == "connect")
            .unwrap();
        assert!(c.servers.iter().all(|s| s.accepted > 0), "{c:?}");
    }
    // Whom the backends saw: the client itself through rackd's local DNAT and kube-proxy's
    // eTP Local rules; the node's address on the backend's link (10.10.<n>.1) through rackd's
    // SNAT for remote backends and kube-proxy's MASQUERADE, over TCP and UDP.
    let client: std::net::Ipv4Addr = "10.10.1.2".parse().unwrap();
    for (mode, translated) in [
        ("rackd", false),
        ("iptables-local", false),
        ("rackd-snat", true),
        ("iptables", true),
    ] {
        for test in ["connect", "udp"] {
            let run = r
                .runs
                .iter()
                .find(|x| x.mode == mode && x.test == test)
                .unwrap();
            // Only servers that got traffic saw anyone: with two UDP flows, Maglev may put
            // both on one backend.
            let peers: Vec<_> = run
                .servers
                .iter()
                .filter_map(|s| {
                    if test == "udp" {
                        (s.datagrams > 0).then_some(s.last_udp_peer)
                    } else {
                        (s.accepted > 0).then_some(s.last_tcp_peer)
                    }
                })
                .collect();
            assert!(!peers.is_empty(), "{mode}/{test}: no server got traffic");
            for peer in peers {
                let peer = peer.unwrap_or_else(|| panic!("{mode}/{test}: traffic, no peer"));
                if translated {
                    assert_ne!(peer, client, "{mode}/{test}: not translated");
                    assert_eq!(
                        peer.octets()[3],
                        1,
                        "{mode}/{test}: {peer} is not the node's"
                    );
                } else {
                    assert_eq!(peer, client, "{mode}/{test}");
                }
            }
        }
    }
    // New flows: SYN-ACKs came back through the modes without SNAT, each matched to a SYN
    // sent in the window (a flow counts once), and nothing failed but flows left unanswered;
    // the SNAT modes do not run the test.
    for mode in [
        "rackd-snat",
        "iptables",
        "masq-none",
        "masq-iptables",
        "masq-rackd",
    ] {
        assert!(
            !r.runs.iter().any(|x| x.mode == mode && x.test == "flows"),
            "{mode}"
        );
    }
    for mode in ["direct", "rackd", "iptables-local"] {
        let run = r
            .runs
            .iter()
            .find(|x| x.mode == mode && x.test == "flows")
            .unwrap_or_else(|| panic!("no {mode}/flows"));
        let unanswered = run.load.errors.get("no SYN-ACK").copied().unwrap_or(0);
        assert!(run.load.ops > 1000, "{run:?}");
        assert!(unanswered * 10 < run.load.ops, "{run:?}");
        assert_eq!(
            run.load.errors.len(),
            usize::from(unanswered > 0),
            "{run:?}"
        );
        assert!(run.load.latency.p50_us > 0.0, "{run:?}");
        // SYNs are not connections: no backend accepted one.
        assert_eq!(run.servers.iter().map(|s| s.accepted).sum::<u64>(), 0);
    }
    let ran = r.runs.iter().any(|x| x.mode == "ipvs");
    let skipped = r.skipped.iter().any(|s| s.system == "ipvs");
    assert!(ran != skipped, "ipvs: ran {ran}, skipped {skipped}");
    let table = svc_bench::report::forward_table(&r, "smoke");
    assert!(table.contains("| iptables | connect |"), "{table}");
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
}

/// Negative control for the masquerade runs: without MASQUERADE (and without the route back)
/// the external server's replies cannot reach the pod, so masq-iptables' success above is the
/// masquerade's doing.
#[test]
fn masquerade_is_needed_without_route_back() {
    let _serial = serial();
    let lab = Lab::masquerade(false).unwrap();
    let ext = lab.backends.first().unwrap();
    let srv = Server::start(ext, 2, 1, &[]).unwrap();
    let target = SocketAddr::V4(SocketAddrV4::new(
        *lab.backend_addrs.first().unwrap(),
        server::PORT,
    ));
    let cfg = LoadConfig {
        test: Test::Connect,
        targets: vec![target],
        workers: 1,
        duration: Duration::from_millis(300),
        cpus: vec![],
        timeout: Duration::from_millis(100),
        flow_sources: None,
    };
    let r = lab.client.enter(|| loadgen::run(&cfg)).unwrap().unwrap();
    assert_eq!(r.ops, 0, "{r:?}");
    assert!(!r.errors.is_empty(), "{r:?}");
    drop(srv);
}

/// The flows test counts SYN-ACKs only: a backend with no listener answers every SYN with a
/// RST, and none counts (negative control); the same lab with the server listening answers
/// them (positive control).
#[test]
fn flows_count_only_synacks() {
    let _serial = serial();
    let lab = Lab::service(1).unwrap();
    let be = lab.backends.first().unwrap();
    let cfg = LoadConfig {
        test: Test::Flows,
        targets: vec![SocketAddr::V4(SocketAddrV4::new(
            *lab.backend_addrs.first().unwrap(),
            server::PORT,
        ))],
        workers: 1,
        duration: Duration::from_millis(300),
        cpus: vec![],
        timeout: Duration::from_millis(100),
        flow_sources: lab.flow_sources,
    };
    let r = lab.client.enter(|| loadgen::run(&cfg)).unwrap().unwrap();
    assert_eq!(r.ops, 0, "{r:?}");
    assert!(
        r.errors.get("no SYN-ACK").is_some_and(|n| *n > 1000),
        "{r:?}"
    );
    let srv = Server::start(be, 2, 1, &[]).unwrap();
    let r = lab.client.enter(|| loadgen::run(&cfg)).unwrap().unwrap();
    assert!(r.ops > 1000, "{r:?}");
    // Flows continue where the last run stopped: none is sent twice, so none can be counted
    // twice, and the counted ones are at most the sent ones.
    let unanswered = r.errors.get("no SYN-ACK").copied().unwrap_or(0);
    assert!(unanswered * 10 < r.ops, "{r:?}");
    assert_eq!(srv.stop().accepted, 0);
}

fn our_pins() -> Vec<String> {
    let pid = std::process::id();
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("svc-bench-") && n.contains(&format!("-{pid}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// The egress gateway's modes at smoke size (issue 17's "SNAT throughput at the gateway"):
/// both run every test without errors, the server sees what the generator counted, and in
/// egress-rackd the datapath's counters prove the path (the source node tunnelled, the
/// gateway SNATed and tunnelled the replies back, nothing dropped).
#[test]
fn egress_smoke() {
    let _serial = serial();
    let cfg = ForwardConfig {
        modes: vec![Mode::EgressNone, Mode::EgressRackd],
        tests: vec![Test::Connect, Test::KeepAlive, Test::Udp],
        rounds: 1,
        duration_s: 1.0,
        warmup_s: 0.1,
        workers: 2,
        server_threads: 4,
        client_cpus: vec![],
        server_cpus: vec![],
        services_loaded: 1,
        timeout_s: 2.0,
    };
    let r = forward::run(&cfg, &mut |l: &str| eprintln!("{l}")).unwrap_or_else(|e| panic!("{e:?}"));
    for mode in ["egress-none", "egress-rackd"] {
        for test in ["connect", "keep-alive", "udp"] {
            let run = r
                .runs
                .iter()
                .find(|x| x.mode == mode && x.test == test)
                .unwrap_or_else(|| panic!("no {mode}/{test}"));
            assert!(run.load.ops > 0, "{run:?}");
            assert!(run.load.errors.is_empty(), "{run:?}");
            let served: u64 = run
                .servers
                .iter()
                .map(|s| match test {
                    "connect" => s.accepted,
                    "keep-alive" => s.requests,
                    _ => s.datagrams,
                })
                .sum();
            assert!(served >= run.load.ops, "{run:?}");
            if mode == "egress-none" {
                assert!(run.egress.is_none(), "{run:?}");
                continue;
            }
            let e = run.egress.as_ref().unwrap();
            // One request and one reply at least per operation took the egress path.
            assert!(e.source.tunnelled >= run.load.ops, "{e:?}");
            assert!(e.gateway.snat >= run.load.ops, "{e:?}");
            assert!(e.gateway.reply_tunnelled >= run.load.ops, "{e:?}");
            for c in [&e.source, &e.gateway] {
                assert_eq!(
                    c.drop_no_gateway
                        + c.drop_no_egress_ip
                        + c.drop_unsupported
                        + c.drop_nat_failed
                        + c.drop_tunnel_failed,
                    0,
                    "{e:?}"
                );
            }
        }
    }
    let s = r.summary.iter().find(|x| x.mode == "egress-rackd").unwrap();
    assert!(
        s.ratio_to_ceiling.is_some() && s.lb_us_per_op.is_some(),
        "{s:?}"
    );
    let table = svc_bench::report::forward_table(&r, "smoke");
    assert!(table.contains("| egress-rackd | connect |"), "{table}");
    assert!(table.contains("replies tunnelled"), "{table}");
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
    assert!(our_pins().is_empty(), "{:?}", our_pins());
}

fn connects(lab: &Lab) -> loadgen::LoadResult {
    let target = SocketAddr::V4(SocketAddrV4::new(
        *lab.backend_addrs.first().unwrap(),
        server::PORT,
    ));
    let cfg = LoadConfig {
        test: Test::Connect,
        targets: vec![target],
        workers: 1,
        duration: Duration::from_millis(300),
        cpus: vec![],
        timeout: Duration::from_millis(100),
        flow_sources: None,
    };
    lab.client.enter(|| loadgen::run(&cfg)).unwrap().unwrap()
}

/// Negative controls for egress-rackd: without the route back (egress-none's) and without the
/// egress path, the server's replies cannot reach the pod: with no programs, and with rackd's
/// programs and masquerade loaded on both nodes but no tunnel entry on the source node (the
/// pod is then masqueraded to the source node's address, which the server cannot reach
/// either). The positive control is the same lab with both entries: connections succeed.
#[test]
fn egress_path_is_needed_without_route_back() {
    let _serial = serial();
    {
        let lab = Lab::egress(false).unwrap();
        let srv = Server::start(lab.backends.first().unwrap(), 2, 1, &[]).unwrap();
        let r = connects(&lab);
        assert_eq!(r.ops, 0, "no programs: {r:?}");
        assert!(!r.errors.is_empty(), "{r:?}");

        let gw = lab.gateway.as_ref().unwrap();
        let [mut source, gateway] = forward::egress_nodes(&lab, gw).unwrap();
        source.rules.clear();
        let g = svc_bench::rackd::attach_egress(&[source, gateway], topo::POD_CIDR).unwrap();
        let r = connects(&lab);
        assert_eq!(r.ops, 0, "no tunnel entry: {r:?}");
        let c = g.counters().unwrap();
        assert_eq!(c[0].tunnelled, 0, "{c:?}");
        assert_eq!(c[1].snat, 0, "{c:?}");
        drop(g);
        assert!(our_pins().is_empty(), "{:?}", our_pins());

        let nodes = forward::egress_nodes(&lab, gw).unwrap();
        let g = svc_bench::rackd::attach_egress(&nodes, topo::POD_CIDR).unwrap();
        let r = connects(&lab);
        assert!(r.ops > 0 && r.errors.is_empty(), "both entries: {r:?}");
        let c = g.counters().unwrap();
        assert!(c[0].tunnelled > 0 && c[1].snat > 0, "{c:?}");
        drop(g);
        drop(srv);
    }
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
    assert!(our_pins().is_empty(), "{:?}", our_pins());
}

/// Benchmark D at smoke size: both sizes filled in every repetition, the table renders.
#[test]
fn chunk_sizes_smoke() {
    let r = svc_bench::chunks::run(2_000, 1, &mut |l: &str| eprintln!("{l}")).unwrap();
    assert_eq!(r.runs.len(), 2);
    for (run, size) in r.runs.iter().zip(svc_bench::chunks::SIZES) {
        assert_eq!(run.value_bytes, size);
        assert_eq!(run.entries, 2_000);
        assert!(run.seconds > 0.0);
    }
    let t = svc_bench::chunks::table(&r, "smoke");
    assert!(t.contains("| 4096 | 2000 |"), "{t}");
    assert!(t.contains("| 4000 | 2000 |"), "{t}");
}
