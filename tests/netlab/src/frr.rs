//! FRR (`zebra` + `bgpd`, Debian's 8.4) running inside a namespace, with `vtysh` JSON queries.
//!
//! How Debian's FRR 8.4 behaves when started by hand (found on this machine, see README.md):
//! - `-u root -g root` is refused: `privs_init: user(root) is not part of vty group
//!   specified(frrvty)`. The group given with `-g` is the one checked, so we use
//!   `-u root -g frrvty`: root keeps its powers and the check passes without editing
//!   `/etc/group`. `zebra` then logs a harmless "could chown socket".
//! - Every path is overridden per instance, so instances never share anything: `-f` config,
//!   `-i` PID file, `-z` zserv socket (shared by this instance's zebra and bgpd only),
//!   `--vty_socket` directory (vtysh finds the daemons there), `--config_dir` for vtysh. `-N` is
//!   still passed so any path we did not think of lands in `/var/run/frr/<N>`, removed on drop.
//! - `-P 0` disables the TCP vty (it would otherwise bind 2601/2605 in the namespace).
//! - `bgpd` without `zebra` still runs, but cannot resolve next hops: received routes are not
//!   installed and next-hop tracking marks paths inaccessible. We always start `zebra` first.
//! - `vtysh` talks over the UNIX sockets, so queries run from the host namespace (no fork of
//!   `ip netns exec`).

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::bgp::{self, BgpConfig, Family, Path};
use crate::cmd;
use crate::error::{Error, Result};
use crate::names;
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{Check, wait_for};

/// Where Debian installs the daemons.
pub const FRR_SBIN: &str = "/usr/lib/frr";

/// The command line of FRR daemon `daemon` (`zebra`, `bgpd`, ...) for an instance living in
/// `dir`: config `conf`, PID file `<dir>/<daemon>.pid`, zserv socket `<dir>/zserv.api`, vty
/// sockets in `dir` (so `vtysh --vty_socket <dir>` finds them), pathspace `-N pathspace`, log to
/// stdout, no TCP vty, `-u root -g frrvty` (see the module docs for why).
pub fn daemon_argv(daemon: &str, pathspace: &str, conf: &FsPath, dir: &FsPath) -> Vec<String> {
    let s = |p: &FsPath| p.to_string_lossy().into_owned();
    vec![
        format!("{FRR_SBIN}/{daemon}"),
        "-N".into(),
        pathspace.to_owned(),
        "-u".into(),
        "root".into(),
        "-g".into(),
        "frrvty".into(),
        "-f".into(),
        s(conf),
        "-i".into(),
        s(&dir.join(format!("{daemon}.pid"))),
        "-z".into(),
        s(&dir.join("zserv.api")),
        "--vty_socket".into(),
        s(dir),
        "--log".into(),
        "stdout".into(),
        "-P".into(),
        "0".into(),
    ]
}

/// A running FRR instance (zebra + bgpd) in one namespace. Dropping it stops both daemons.
#[derive(Debug)]
pub struct Frr {
    dir: PathBuf,
    pathspace: String,
    // Field order matters: bfdd and bgpd are dropped (stopped) before zebra.
    bfdd: Option<Process>,
    bgpd: Process,
    zebra: Process,
    bgpd_argv: Vec<String>,
    restarts: u32,
}

impl Frr {
    /// Starts zebra and bgpd in `ns` with `bgpd_conf` (FRR configuration text), using
    /// `<dir>/<name>/` for everything. Returns once vtysh answers.
    pub fn start(ns: &Netns, dir: &FsPath, name: &str, bgpd_conf: &str) -> Result<Self> {
        let idir = dir.join(name);
        fs::create_dir_all(&idir).map_err(|source| Error::Io {
            path: idir.clone(),
            source,
        })?;
        let write = |file: &str, text: &str| -> Result<PathBuf> {
            let p = idir.join(file);
            fs::write(&p, text).map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
            Ok(p)
        };
        let zconf = write("zebra.conf", &format!("hostname {name}\n"))?;
        let bconf = write("bgpd.conf", bgpd_conf)?;
        write("vtysh.conf", "")?;
        let pathspace = names::unique("nl");
        let zserv = idir.join("zserv.api");
        let common = |daemon: &str, conf: &PathBuf| -> Vec<String> {
            daemon_argv(daemon, &pathspace, conf, &idir)
        };
        let zargs = common("zebra", &zconf);
        let zargv: Vec<&str> = zargs.iter().map(String::as_str).collect();
        let mut zebra = ns.spawn(&idir, "zebra", &zargv)?;
        // bgpd gives up on zebra for a while if the socket is missing, so wait for it.
        wait_for(
            "zebra's zserv socket",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                zebra.check_running()?;
                Ok(if zserv.exists() {
                    Check::Ready(())
                } else {
                    Check::NotYet(zebra.log_tail())
                })
            },
        )?;
        let bargs = common("bgpd", &bconf);
        let bargv: Vec<&str> = bargs.iter().map(String::as_str).collect();
        let bgpd = ns.spawn(&idir, "bgpd", &bargv)?;
        let mut frr = Self {
            dir: idir,
            pathspace,
            bfdd: None,
            bgpd,
            zebra,
            bgpd_argv: bargs,
            restarts: 0,
        };
        frr.wait_vty()?;
        Ok(frr)
    }

    fn wait_vty(&mut self) -> Result<()> {
        wait_for(
            "bgpd to answer vtysh",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                self.bgpd.check_running()?;
                Ok(match self.vtysh(&["show bgp summary json"]) {
                    Ok(_) => Check::Ready(()),
                    Err(e) => Check::NotYet(format!("{e}\nbgpd log:\n{}", self.bgpd.log_tail())),
                })
            },
        )
    }

    /// Starts bfdd beside zebra and bgpd (same pathspace, so `neighbor X bfd` in bgpd reaches
    /// it through zebra), with `bfdd_conf` (FRR's `bfd` block, may be empty). Returns once
    /// vtysh answers `show bfd peers`.
    pub fn start_bfdd(&mut self, ns: &Netns, bfdd_conf: &str) -> Result<()> {
        let conf = self.dir.join("bfdd.conf");
        fs::write(&conf, bfdd_conf).map_err(|source| Error::Io {
            path: conf.clone(),
            source,
        })?;
        let mut args = daemon_argv("bfdd", &self.pathspace, &conf, &self.dir);
        // The control socket would default to /var/run/frr/<pathspace>/bfdd.sock.
        args.push("--bfdctl".into());
        args.push(self.dir.join("bfdd.sock").to_string_lossy().into_owned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.bfdd = Some(ns.spawn(&self.dir, "bfdd", &argv)?);
        wait_for(
            "bfdd to answer vtysh",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                if let Some(b) = self.bfdd.as_mut() {
                    b.check_running()?;
                }
                Ok(match self.vtysh(&["show bfd peers json"]) {
                    Ok(_) => Check::Ready(()),
                    Err(e) => Check::NotYet(e.to_string()),
                })
            },
        )
    }

    /// The bfdd process, once [`Frr::start_bfdd`] ran.
    pub fn bfdd(&mut self) -> Option<&mut Process> {
        self.bfdd.as_mut()
    }

    /// Starts bgpd again with the same configuration (after [`Process::kill9`] or
    /// [`Process::stop`] on [`Frr::bgpd`], e.g. to test graceful restart helper mode). A running
    /// bgpd is stopped first. The new output goes to `bgpd-<n>.log`; zebra keeps running.
    pub fn restart_bgpd(&mut self, ns: &Netns) -> Result<()> {
        self.bgpd.stop()?;
        self.restarts += 1;
        let argv: Vec<&str> = self.bgpd_argv.iter().map(String::as_str).collect();
        self.bgpd = ns.spawn(&self.dir, &format!("bgpd-{}", self.restarts), &argv)?;
        self.wait_vty()
    }

    /// Starts FRR with a configuration rendered from `cfg` by [`render`].
    pub fn start_with(ns: &Netns, dir: &FsPath, name: &str, cfg: &BgpConfig) -> Result<Self> {
        Self::start(ns, dir, name, &render(name, cfg))
    }

    /// The instance directory (configs, sockets, PID files, logs).
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// The bgpd process (to kill it, read its log).
    pub fn bgpd(&mut self) -> &mut Process {
        &mut self.bgpd
    }

    /// The zebra process.
    pub fn zebra(&mut self) -> &mut Process {
        &mut self.zebra
    }

    /// Both daemons' log tails, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- bgpd ---\n{}\n--- zebra ---\n{}",
            self.bgpd.log_tail(),
            self.zebra.log_tail()
        )
    }

    /// Runs vtysh commands (each one a `-c`; configuration commands need `configure terminal`
    /// first) and returns the output.
    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket")
            .arg(&self.dir)
            .arg("--config_dir")
            .arg(&self.dir);
        for cmd in commands {
            c.args(["-c", cmd]);
        }
        let out = cmd::run(&mut c)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs one `show ... json` command and parses it.
    pub fn json(&self, command: &str) -> Result<Value> {
        let text = self.vtysh(&[command])?;
        cmd::parse_json(command, &text)
    }

    /// Applies configuration lines (`configure terminal` is added), e.g.
    /// `configure(&["router bgp 65001", "neighbor 10.0.0.2 shutdown"])`.
    pub fn configure(&self, lines: &[&str]) -> Result<String> {
        let mut all = vec!["configure terminal"];
        all.extend_from_slice(lines);
        self.vtysh(&all)
    }

    /// `show bgp summary json`.
    pub fn summary(&self) -> Result<Value> {
        self.json("show bgp summary json")
    }

    /// `show bgp ipv4 unicast json` / `show bgp ipv6 unicast json`.
    pub fn rib(&self, family: Family) -> Result<Value> {
        self.json(&format!("show bgp {} unicast json", afi(family)))
    }

    /// `show bgp neighbors json`.
    pub fn neighbors(&self) -> Result<Value> {
        self.json("show bgp neighbors json")
    }

    /// The FSM state of neighbour `addr` (`"Established"`, `"Active"`, ...), `None` if unknown.
    pub fn neighbor_state(&self, addr: IpAddr) -> Result<Option<String>> {
        let v = self.json(&format!("show bgp neighbors {addr} json"))?;
        Ok(v.get(addr.to_string())
            .and_then(|n| n.get("bgpState"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// Waits until the session with `addr` is Established; on timeout the error holds the last
    /// `show bgp neighbors` output for it and bgpd's log.
    pub fn wait_established(&self, addr: IpAddr, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("FRR session with {addr} to be Established"),
            timeout,
            Duration::from_millis(200),
            || {
                Ok(match self.neighbor_state(addr)? {
                    Some(s) if s == "Established" => Check::Ready(()),
                    other => Check::NotYet(format!(
                        "state {other:?}\n{}\n{}",
                        self.vtysh(&[&format!("show bgp neighbors {addr}")])
                            .unwrap_or_default(),
                        self.bgpd.log_tail()
                    )),
                })
            },
        )
    }

    /// The prefixes currently in the BGP table of `family`.
    pub fn prefixes(&self, family: Family) -> Result<Vec<String>> {
        let v = self.rib(family)?;
        Ok(v.get("routes")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// All paths for `prefix` with their attributes (`show bgp <afi> unicast <prefix> json`);
    /// empty when the prefix is unknown.
    pub fn paths(&self, prefix: &str) -> Result<Vec<Path>> {
        let (ip, _) = crate::netns::parse_cidr(prefix)?;
        let command = format!("show bgp {} unicast {prefix} json", afi(Family::of(ip)));
        let v = self.json(&command)?;
        parse_paths(prefix, &v).map_err(|reason| Error::Parse {
            cmd: command,
            reason,
            output: v.to_string(),
        })
    }

    /// Waits until `prefix` has a best path and returns it; on timeout the error shows the table.
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<Path> {
        let (ip, _) = crate::netns::parse_cidr(prefix)?;
        wait_for(
            &format!("FRR to have a best path for {prefix}"),
            timeout,
            Duration::from_millis(200),
            || {
                let paths = self.paths(prefix)?;
                Ok(match paths.into_iter().find(|p| p.best) {
                    Some(p) => Check::Ready(p),
                    None => Check::NotYet(
                        self.rib(Family::of(ip))
                            .map(|v| v.to_string())
                            .unwrap_or_else(|e| e.to_string()),
                    ),
                })
            },
        )
    }

    /// Waits until `prefix` is gone from the table.
    pub fn wait_no_route(&self, prefix: &str, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("FRR to withdraw {prefix}"),
            timeout,
            Duration::from_millis(200),
            || {
                let paths = self.paths(prefix)?;
                Ok(if paths.is_empty() {
                    Check::Ready(())
                } else {
                    Check::NotYet(format!("{paths:?}"))
                })
            },
        )
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        // The daemons are stopped by their Process guards (bgpd first, by field order); only
        // the -N pathspace directory is ours to clean here.
        let p = FsPath::new("/var/run/frr").join(&self.pathspace);
        let _ = fs::remove_dir_all(p);
    }
}

fn afi(f: Family) -> &'static str {
    match f {
        Family::Ipv4Unicast => "ipv4",
        Family::Ipv6Unicast => "ipv6",
    }
}

/// Renders `cfg` as an FRR 8.4 configuration, following `bgp.md` §2:
/// - `no bgp ebgp-requires-policy` (RFC 8212 mode is on in the traditional profile and would
///   make FRR accept and announce nothing);
/// - families activated explicitly per neighbour (`no bgp default ipv4-unicast` + `activate`),
///   which covers `bgp default ipv6-unicast` while honouring single-family neighbours;
/// - `no bgp network import-check` so `network` statements announce without a matching kernel
///   route;
/// - one route-map per originated route that carries attributes.
pub fn render(hostname: &str, cfg: &BgpConfig) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; `let _` keeps clippy quiet without unwrap.
    let _ = writeln!(s, "frr defaults traditional\nhostname {hostname}\n!");
    for (i, r) in cfg.routes.iter().enumerate() {
        if !r.has_attributes() {
            continue;
        }
        let _ = writeln!(s, "route-map NL-ORIG-{i} permit 10");
        if !r.communities.is_empty() {
            let c: Vec<String> = r
                .communities
                .iter()
                .map(|(a, v)| format!("{a}:{v}"))
                .collect();
            let _ = writeln!(s, " set community {}", c.join(" "));
        }
        if !r.large_communities.is_empty() {
            let c: Vec<String> = r
                .large_communities
                .iter()
                .map(|(g, a, b)| format!("{g}:{a}:{b}"))
                .collect();
            let _ = writeln!(s, " set large-community {}", c.join(" "));
        }
        if let Some(lp) = r.local_pref {
            let _ = writeln!(s, " set local-preference {lp}");
        }
        if let Some(m) = r.med {
            let _ = writeln!(s, " set metric {m}");
        }
        let _ = writeln!(s, "exit\n!");
    }
    let _ = writeln!(s, "router bgp {}", cfg.asn);
    let _ = writeln!(s, " bgp router-id {}", cfg.router_id);
    let _ = writeln!(s, " no bgp ebgp-requires-policy");
    let _ = writeln!(s, " no bgp default ipv4-unicast");
    let _ = writeln!(s, " no bgp network import-check");
    if let Some(gr) = cfg
        .neighbors
        .iter()
        .filter_map(|n| n.graceful_restart)
        .max()
    {
        let _ = writeln!(s, " bgp graceful-restart");
        let _ = writeln!(s, " bgp graceful-restart restart-time {gr}");
    }
    for n in &cfg.neighbors {
        let a = n.address;
        let _ = writeln!(s, " neighbor {a} remote-as {}", n.remote_as);
        if n.passive {
            let _ = writeln!(s, " neighbor {a} passive");
        }
        if let Some(pw) = &n.password {
            let _ = writeln!(s, " neighbor {a} password {pw}");
        }
        if let Some(ttl) = n.multihop {
            let _ = writeln!(s, " neighbor {a} ebgp-multihop {ttl}");
        }
        if let (Some(h), Some(k)) = (n.hold_time, n.keepalive()) {
            let _ = writeln!(s, " neighbor {a} timers {k} {h}");
        }
        if let Some(p) = n.remote_port {
            let _ = writeln!(s, " neighbor {a} port {p}");
        }
        if let Some(l) = n.local_address {
            let _ = writeln!(s, " neighbor {a} update-source {l}");
        }
        if n.extended_nexthop {
            let _ = writeln!(s, " neighbor {a} capability extended-nexthop");
        }
        if n.graceful_restart.is_some() {
            let _ = writeln!(s, " neighbor {a} graceful-restart");
        }
    }
    for f in Family::DUAL {
        let _ = writeln!(s, " address-family {} unicast", afi(f));
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.family() != f {
                continue;
            }
            if r.has_attributes() {
                let _ = writeln!(s, "  network {} route-map NL-ORIG-{i}", r.prefix);
            } else {
                let _ = writeln!(s, "  network {}", r.prefix);
            }
        }
        for n in cfg.neighbors.iter() {
            if n.effective_families().contains(&f) {
                let _ = writeln!(s, "  neighbor {} activate", n.address);
            }
        }
        let _ = writeln!(s, " exit-address-family");
    }
    let _ = writeln!(s, "exit\n!");
    s
}

/// Parses the `show bgp <afi> unicast <prefix> json` detail output.
fn parse_paths(prefix: &str, v: &Value) -> std::result::Result<Vec<Path>, String> {
    let Some(paths) = v.get("paths") else {
        // FRR prints `{}` for an unknown prefix.
        return Ok(Vec::new());
    };
    let paths = paths.as_array().ok_or("`paths` is not an array")?;
    let mut out = Vec::new();
    for p in paths {
        let as_path = p
            .get("aspath")
            .and_then(|a| a.get("string"))
            .and_then(Value::as_str)
            .map(bgp::parse_as_path)
            .unwrap_or_default();
        let list = |key: &str| -> Vec<String> {
            p.get(key)
                .and_then(|c| c.get("list"))
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .or_else(|| {
                    p.get(key)
                        .and_then(|c| c.get("string"))
                        .and_then(Value::as_str)
                        .map(|s| s.split_whitespace().map(str::to_owned).collect())
                })
                .unwrap_or_default()
        };
        let next_hops = p
            .get("nexthops")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|n| n.get("ip").and_then(Value::as_str))
                    .filter_map(|s| s.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let num = |key: &str| {
            p.get(key)
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
        };
        let best = p
            .get("bestpath")
            .and_then(|b| b.get("overall"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.push(Path {
            prefix: prefix.to_owned(),
            as_path,
            next_hops,
            communities: list("community"),
            large_communities: list("largeCommunity"),
            local_pref: num("locPrf"),
            med: num("metric"),
            best,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bgp::{Neighbor, Route};

    #[test]
    fn render_has_interop_knobs() {
        let cfg = BgpConfig::new(65001, "10.0.0.1".parse().unwrap())
            .neighbor(
                Neighbor::new("fd00::2".parse().unwrap(), 65002)
                    .password("pw")
                    .multihop(3)
                    .hold_time(9)
                    .extended_nexthop()
                    .graceful_restart(120)
                    .passive(),
            )
            .neighbor(
                Neighbor::new("10.0.0.2".parse().unwrap(), 65003).families(&[Family::Ipv4Unicast]),
            )
            .route(
                Route::new("192.0.2.0/24")
                    .unwrap()
                    .community(65000, 1)
                    .large_community(65000, 1, 2)
                    .med(5),
            )
            .route(Route::new("2001:db8::/48").unwrap());
        let s = render("r1", &cfg);
        for want in [
            "no bgp ebgp-requires-policy",
            "neighbor fd00::2 password pw",
            "neighbor fd00::2 ebgp-multihop 3",
            "neighbor fd00::2 timers 3 9",
            "neighbor fd00::2 capability extended-nexthop",
            "neighbor fd00::2 passive",
            "bgp graceful-restart restart-time 120",
            "set community 65000:1",
            "set large-community 65000:1:2",
            "set metric 5",
            "network 192.0.2.0/24 route-map NL-ORIG-0",
            "  network 2001:db8::/48\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        // 10.0.0.2 is IPv4-only: activated once (in ipv4), fd00::2 twice.
        assert_eq!(s.matches("neighbor 10.0.0.2 activate").count(), 1);
        assert_eq!(s.matches("neighbor fd00::2 activate").count(), 2);
    }

    #[test]
    fn parse_detail_and_malformed() {
        let v: Value = serde_json::from_str(
            r#"{"prefix":"192.0.2.0/24","paths":[{"aspath":{"string":"65002 65003","segments":[]},
            "community":{"string":"65000:1 65000:2","list":["65000:1","65000:2"]},
            "largeCommunity":{"string":"65000:1:2","list":["65000:1:2"]},
            "locPrf":100,"metric":5,"nexthops":[{"ip":"10.0.0.2","afi":"ipv4"}],
            "bestpath":{"overall":true}}]}"#,
        )
        .unwrap();
        let p = parse_paths("192.0.2.0/24", &v).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].as_path, vec![65002, 65003]);
        assert_eq!(p[0].communities, vec!["65000:1", "65000:2"]);
        assert_eq!(p[0].large_communities, vec!["65000:1:2"]);
        assert_eq!(p[0].local_pref, Some(100));
        assert_eq!(p[0].med, Some(5));
        assert!(p[0].best);
        assert!(parse_paths("x", &serde_json::json!({})).unwrap().is_empty());
        assert!(parse_paths("x", &serde_json::json!({"paths": 3})).is_err());
    }
}
