//! The operator's view of the egress gateway (issue 17), in the lab of `egresscommon`: the real
//! `rackctl egress policies` and `rackctl bpf egress list` (table and `-o json`) on a source
//! node (node1) and on the gateway (node2) while the seeds' `remote-outpost` policy carries
//! tiefighter's traffic, and the `rackd_egress_packets` series that traffic moved.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod egresscommon;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use egresscommon::{Lab, SEED};
use rackd_api::egress::{EgressMapAction, EgressMapEntry, EgressPolicyView};

/// The `rackctl` binary. Cargo hands an integration test only its own package's binaries
/// (`CARGO_BIN_EXE_*`), so it is built here, into this test's target directory and profile.
fn rackctl_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile dir>/deps/egress_cli-<hash>
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        p => p,
    };
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "rackctl",
            "--bin",
            "rackctl",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .unwrap();
    assert!(status.success(), "building rackctl: {status}");
    profile_dir.join("rackctl")
}

/// Runs rackctl against node `i` (index) and returns (stdout, stderr); it must succeed.
fn rackctl(bin: &Path, lab: &Lab, i: usize, args: &[&str]) -> (String, String) {
    let sock = lab
        .dir
        .path()
        .join(format!("node{}", i + 1))
        .join("admin.sock");
    let out = Command::new(bin)
        .arg("--socket")
        .arg(&sock)
        .args(args)
        .env_remove("RACKD_SOCKET")
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "rackctl {args:?} on node{}: {o}{e}",
        i + 1
    );
    (o, e)
}

/// A table's lines as cells: Go's tabwriter pads with at least three spaces, and no cell
/// holds more than one space in a row.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect()
}

/// The value of one series in node `i`'s metrics, if present.
fn metric(lab: &Lab, i: usize, series: &str) -> Option<u64> {
    let body = lab.nodes[i].http_get("127.0.0.1:9963", "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

const TUNNELLED: &str = "rackd_egress_packets{result=\"tunnelled\"}";
const SNAT: &str = "rackd_egress_packets{result=\"snat\"}";
const REPLY_TUNNELLED: &str = "rackd_egress_packets{result=\"reply_tunnelled\"}";

#[test]
fn egress_views_on_a_source_node_and_the_gateway() {
    let bin = rackctl_bin();
    let mut lab = Lab::new();
    lab.start_rackd(0);
    lab.start_rackd(1);
    lab.wait_seen(0, "10.0.4.2", "10.0.1.2");

    // Without a policy (the baseline): no policy, an empty map, said as cilium-dbg says it.
    let (out, err) = rackctl(&bin, &lab, 0, &["bpf", "egress", "list"]);
    assert_eq!((out.as_str(), err.as_str()), ("", "No entries found.\n"));
    let (out, _) = rackctl(&bin, &lab, 0, &["egress", "policies"]);
    assert_eq!(cells(&out).len(), 1, "only the header: {out}");

    lab.write_config("egress.yaml", SEED);
    lab.wait_seen(0, "10.0.4.2", "10.0.6.2");

    // node1, a source node: tiefighter tunnelled to node2; xwing (not selected) and the
    // other nodes' pods absent.
    let (out, _) = rackctl(&bin, &lab, 0, &["bpf", "egress", "list"]);
    println!("node1$ rackctl bpf egress list\n{out}");
    assert_eq!(
        cells(&out),
        rows(&[
            &["Source IP", "Destination CIDR", "Egress IP", "Gateway IP"],
            &["10.1.1.11", "10.0.4.0/24", "0.0.0.0", "10.0.2.2"],
        ]),
        "{out}"
    );
    // node2, the gateway: every selected pod of the cluster translated to net1's address,
    // with node2's own address as the gateway; still not xwing.
    let (out, _) = rackctl(&bin, &lab, 1, &["bpf", "egress", "list"]);
    assert_eq!(
        cells(&out),
        rows(&[
            &["Source IP", "Destination CIDR", "Egress IP", "Gateway IP"],
            &["10.1.1.11", "10.0.4.0/24", "10.0.6.2", "10.0.2.2"],
            &["10.1.2.13", "10.0.4.0/24", "10.0.6.2", "10.0.2.2"],
            &["10.1.3.14", "10.0.4.0/24", "10.0.6.2", "10.0.2.2"],
        ]),
        "{out}"
    );
    println!("node2$ rackctl bpf egress list\n{out}");
    // The JSON: cilium-dbg's keys, typed, with the action and where replies go.
    let (out, _) = rackctl(&bin, &lab, 0, &["bpf", "egress", "list", "-o", "json"]);
    let m1: Vec<EgressMapEntry> = serde_json::from_str(&out).unwrap();
    assert_eq!(m1.len(), 1, "{out}");
    assert_eq!(m1[0].action, EgressMapAction::Tunnel);
    assert_eq!(m1[0].egress_ip, None);
    let (out, _) = rackctl(&bin, &lab, 1, &["bpf", "egress", "list", "-o", "json"]);
    let m2: Vec<EgressMapEntry> = serde_json::from_str(&out).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(
        m2.iter().all(|e| e.action == EgressMapAction::Snat),
        "{out}"
    );
    assert_eq!(m2[0].reply_to, Some(ip("10.0.1.2")), "tiefighter's node");
    assert_eq!(m2[1].reply_to, None, "mediabot is on the gateway");

    // The policy: three empire pods through node2, which only node2 calls itself.
    let (out, _) = rackctl(&bin, &lab, 0, &["egress", "policies"]);
    println!("node1$ rackctl egress policies\n{out}");
    let t = cells(&out);
    assert_eq!(
        t.get(1),
        Some(
            &rows(&[&[
                "remote-outpost",
                "yes",
                "3",
                "3",
                "egressGateway",
                "interface net1",
                "node2",
                "node2"
            ]])[0]
        ),
        "{out}"
    );
    let (out, _) = rackctl(&bin, &lab, 1, &["egress", "policies"]);
    println!("node2$ rackctl egress policies\n{out}");
    let t = cells(&out);
    assert_eq!(
        t.get(1).map(|r| &r[7..]),
        Some(&rows(&[&["node2 (this node)", "10.0.6.2"]])[0][..]),
        "{out}"
    );
    assert!(!out.contains("Conditions:"), "{out}");
    for (i, local) in [(0, false), (1, true)] {
        let (out, _) = rackctl(&bin, &lab, i, &["egress", "policies", "-o", "json"]);
        let p: Vec<EgressPolicyView> = serde_json::from_str(&out).unwrap();
        assert_eq!(p.len(), 1, "{out}");
        assert!(p[0].enforced && p[0].conditions.is_empty(), "{out}");
        let g = &p[0].gateways[0];
        assert_eq!(
            g.active.as_ref().map(|a| (a.node.as_str(), a.ip)),
            Some(("node2", ip("10.0.2.2")))
        );
        assert_eq!(g.local, local, "{out}");
        let want: Vec<IpAddr> = if local { vec![ip("10.0.6.2")] } else { vec![] };
        assert_eq!(g.local_egress_ips, want, "{out}");
    }

    // The counters (published every 10 s): node1 tunnelled tiefighter's packets and node2
    // translated them and tunnelled the replies back; neither did the other's part.
    netlab::wait_for(
        "egress counters in the metrics",
        Duration::from_secs(40),
        Duration::from_millis(500),
        || {
            let got = (
                metric(&lab, 0, TUNNELLED),
                metric(&lab, 1, SNAT),
                metric(&lab, 1, REPLY_TUNNELLED),
            );
            Ok(match got {
                (Some(t), Some(s), Some(r)) if t > 0 && s > 0 && r > 0 => netlab::Check::Ready(()),
                other => netlab::Check::NotYet(format!("{other:?}")),
            })
        },
    )
    .unwrap();
    assert_eq!(metric(&lab, 0, SNAT), Some(0), "node1 is not the gateway");
    assert_eq!(metric(&lab, 0, REPLY_TUNNELLED), Some(0));
    assert_eq!(
        metric(&lab, 1, TUNNELLED),
        Some(0),
        "node2's own pod is translated there"
    );
    assert_eq!(
        metric(&lab, 0, "rackd_egress_drops{reason=\"no_gateway\"}"),
        Some(0)
    );
}
