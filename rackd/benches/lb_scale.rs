//! LB-IPAM at the seeds' on-prem scale, end to end: 27,000 LoadBalancer Services appear in the
//! config directory of a running rackd (peered with an FRR ToR in namespaces); we time config
//! change → every /32 present at the ToR. Target (issue 4): under 5 s.
//!
//! Run (root): `cargo bench -p rackd --bench lb_scale -- [SERVICES] [RUNS]`. Not part of CI.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Lab;

fn services(n: usize) -> String {
    let mut s = String::with_capacity(n * 200);
    s.push_str("apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: scale}\nspec:\n  blocks: [{cidr: 100.64.0.0/16}]\n  serviceSelector: {matchLabels: {scale: \"yes\"}}\n");
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: scale, labels: {{scale: \"yes\"}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv4], ports: [{{port: 80, protocol: TCP}}]}}\n"
        ));
    }
    s
}

fn received(lab: &Lab) -> u64 {
    let j = lab
        .tor
        .json("show bgp ipv4 unicast summary json")
        .unwrap_or_default();
    j["peers"]["10.0.1.2"]["pfxRcd"].as_u64().unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(27_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut times = Vec::new();
    for run in 0..runs {
        let mut lab = Lab::prepare("rk-scale");
        lab.start_rackd();
        lab.tor
            .wait_established("10.0.1.2".parse().unwrap(), Duration::from_secs(60))
            .unwrap();
        let base = {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut b = received(&lab);
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                let now = received(&lab);
                if now == b && now > 0 {
                    break;
                }
                b = now;
            }
            b
        };
        let text = services(n);
        let tmp = lab.cfg.join(".scale.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, lab.cfg.join("scale.yaml")).unwrap();
        let want = base + n as u64;
        loop {
            let got = received(&lab);
            if got >= want {
                break;
            }
            if t0.elapsed() > Duration::from_secs(300) {
                panic!(
                    "only {got}/{want} prefixes after 300 s\n{}",
                    lab.rackd_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "run {run}: {n} services, config change -> all {n} routes at the ToR: {secs:.2} s"
        );
        times.push(secs);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    println!("lb_scale: {n} services, median {median:.2} s over {runs} runs (target < 5 s)");
}
