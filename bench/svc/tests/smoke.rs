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
use svc_bench::topo::Lab;

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
            Mode::Iptables,
            Mode::IptablesLocal,
            Mode::Ipvs,
            Mode::MasqNone,
            Mode::MasqIptables,
            Mode::MasqRackd,
        ],
        tests: vec![Test::Connect, Test::KeepAlive, Test::Udp],
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
    for mode in ["iptables", "iptables-local", "rackd"] {
        let c = r
            .runs
            .iter()
            .find(|x| x.mode == mode && x.test == "connect")
            .unwrap();
        assert!(c.servers.iter().all(|s| s.accepted > 0), "{c:?}");
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
    };
    let r = lab.client.enter(|| loadgen::run(&cfg)).unwrap().unwrap();
    assert_eq!(r.ops, 0, "{r:?}");
    assert!(!r.errors.is_empty(), "{r:?}");
    drop(srv);
}
