//! Crash injection for LB-IPAM's "stable for life" promise: rackd is killed with SIGKILL at
//! random moments while services churn; after every restart, every service that existed
//! before the kill still has exactly the IPs it had, and no IP is held by two services.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rackd_api::{Reply, Request};

const POOL: &str = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: pool}\nspec:\n  blocks: [{cidr: 10.77.0.0/24}, {cidr: \"fd77::/120\"}]\n";

fn services_yaml(ids: &[u32]) -> String {
    let mut s = String::new();
    for id in ids {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{id}, namespace: churn}}\nspec:\n  type: LoadBalancer\n  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]\n  ports: [{{port: 80, protocol: TCP}}]\n"
        ));
    }
    s
}

/// Tiny deterministic PRNG (xorshift) so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cfg: &Path, state: &Path, sock: &Path, log: &Path) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rackd"))
        .args(["--node-name", "n1", "--metrics-addr", "off", "--config-dir"])
        .arg(cfg)
        .arg("--state-dir")
        .arg(state)
        .arg("--admin-socket")
        .arg(sock)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    Daemon { child }
}

/// Services and their IPs, once the daemon has reconciled `expect` services.
fn wait_services(sock: &Path, expect: usize, log: &Path) -> BTreeMap<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(sock) {
            rackd_api::write_message(&s, &Request::LbipamServices).unwrap();
            if let Ok(Reply::LbipamServices(v)) = rackd_api::read_message(BufReader::new(&s)) {
                let m: BTreeMap<String, Vec<String>> =
                    v.into_iter().map(|s| (s.name, s.ips)).collect();
                if m.len() == expect && m.values().all(|ips| ips.len() == 2) {
                    return m;
                }
                last = format!("{m:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "rackd did not reconcile {expect} services: {last}\nlog:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn no_duplicates(m: &BTreeMap<String, Vec<String>>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (svc, ips) in m {
        for ip in ips {
            if let Some(other) = seen.insert(ip, svc) {
                panic!("{ip} held by both {other} and {svc}");
            }
        }
    }
}

#[test]
fn kill9_during_churn_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: PathBuf = dir.path().join("cfg");
    let state = dir.path().join("state");
    let sock = dir.path().join("admin.sock");
    let log = dir.path().join("rackd.log");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("pool.yaml"), POOL).unwrap();
    let seed = std::env::var("RACKD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15_u64);
    let mut rng = Rng(seed);
    let mut ids: Vec<u32> = (0..40).collect();
    let mut next_id = 40;
    std::fs::write(cfg.join("svc.yaml"), services_yaml(&ids)).unwrap();
    let mut d = start(&cfg, &state, &sock, &log);
    let mut known = wait_services(&sock, ids.len(), &log);
    no_duplicates(&known);

    for round in 0..12 {
        // Churn: drop a few services, add a few, and kill the daemon at a random moment
        // while it is applying that (between 0 and 400 ms after the write).
        for _ in 0..rng.below(5) {
            let i = rng.below(ids.len() as u64) as usize;
            let gone = ids.remove(i);
            known.remove(&format!("s{gone}"));
        }
        for _ in 0..rng.below(6) + 1 {
            ids.push(next_id);
            next_id += 1;
        }
        std::fs::write(cfg.join("svc.yaml"), services_yaml(&ids)).unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        d.child.kill().unwrap();
        d.child.wait().unwrap();

        d = start(&cfg, &state, &sock, &log);
        let now = wait_services(&sock, ids.len(), &log);
        no_duplicates(&now);
        for (svc, ips) in &known {
            assert_eq!(
                now.get(svc),
                Some(ips),
                "round {round} (seed {seed}): {svc} changed its IPs across a kill -9"
            );
        }
        known = now;
    }
}
