//! GoBGP 3 (`gobgpd`, Debian's 3.10) running inside a namespace, driven with the `gobgp` CLI.
//!
//! The gRPC API listens on `127.0.0.1:<api_port>` *inside* the namespace, so every instance can
//! use the default port and the CLI runs through `ip netns exec`. pprof (which would bind
//! `localhost:6060`) is disabled. GoBGP 3.10 announces the extended next hop capability on its
//! own (it shows up in `local_cap`); there is no per-neighbour switch for it.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::bgp::{BgpConfig, Family, Path, Route};
use crate::cmd;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{Check, wait_for};

/// gobgpd's default gRPC port.
pub const DEFAULT_API_PORT: u16 = 50051;

/// A running gobgpd. Dropping it stops the daemon.
#[derive(Debug)]
pub struct GoBgp {
    dir: PathBuf,
    ns: String,
    api_port: u16,
    process: Process,
}

impl GoBgp {
    /// Starts gobgpd in `ns` with `toml` as its configuration, in `<dir>/<name>/`, and waits
    /// until the CLI answers. The configuration is checked with `gobgpd -d` first.
    pub fn start(ns: &Netns, dir: &FsPath, name: &str, toml: &str) -> Result<Self> {
        let idir = dir.join(name);
        fs::create_dir_all(&idir).map_err(|source| Error::Io {
            path: idir.clone(),
            source,
        })?;
        let cpath = idir.join("gobgpd.toml");
        fs::write(&cpath, toml).map_err(|source| Error::Io {
            path: cpath.clone(),
            source,
        })?;
        let c = cpath.to_string_lossy().into_owned();
        ns.exec(&["gobgpd", "-d", "-t", "toml", "-f", &c])?;
        let api_port = DEFAULT_API_PORT;
        let api = format!("127.0.0.1:{api_port}");
        let process = ns.spawn(
            &idir,
            "gobgpd",
            &[
                "gobgpd",
                "-f",
                &c,
                "-t",
                "toml",
                "--api-hosts",
                &api,
                "--pprof-disable",
                "--log-plain",
                "-l",
                "info",
            ],
        )?;
        let mut g = Self {
            dir: idir,
            ns: ns.name().to_owned(),
            api_port,
            process,
        };
        wait_for(
            &format!("gobgpd {name} to answer the CLI"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                g.process.check_running()?;
                Ok(match g.cli(&["global"]) {
                    Ok(_) => Check::Ready(()),
                    Err(e) => Check::NotYet(e.to_string()),
                })
            },
        )?;
        Ok(g)
    }

    /// Starts gobgpd from `cfg` ([`render`]) and injects `cfg.routes` into its global RIB.
    pub fn start_with(ns: &Netns, dir: &FsPath, name: &str, cfg: &BgpConfig) -> Result<Self> {
        let g = Self::start(ns, dir, name, &render(cfg))?;
        for r in &cfg.routes {
            g.add_route(r, None)?;
        }
        Ok(g)
    }

    /// The instance directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// The daemon process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Runs `gobgp -p <port> args...` inside the namespace and returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let port = self.api_port.to_string();
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns, "gobgp", "-p", &port])
            .args(args);
        let out = cmd::run(&mut c)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a CLI command with `-j` and parses the JSON.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.push("-j");
        let text = self.cli(&a)?;
        cmd::parse_json(&format!("gobgp {}", a.join(" ")), &text)
    }

    /// `gobgp neighbor -j`.
    pub fn neighbors(&self) -> Result<Value> {
        self.cli_json(&["neighbor"])
    }

    /// Session state of neighbour `addr` as GoBGP's enum name (`"established"`, `"active"`,
    /// ...), `None` if it is not configured.
    pub fn neighbor_state(&self, addr: IpAddr) -> Result<Option<String>> {
        let v = self.neighbors()?;
        let a = addr.to_string();
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .find(|n| n["conf"]["neighbor_address"].as_str() == Some(a.as_str()))
            .map(|n| session_state_name(&n["state"]["session_state"]).to_owned()))
    }

    /// Waits until the session with `addr` is established.
    pub fn wait_established(&self, addr: IpAddr, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("GoBGP session with {addr} to be established"),
            timeout,
            Duration::from_millis(200),
            || {
                Ok(match self.neighbor_state(addr)? {
                    Some(s) if s == "established" => Check::Ready(()),
                    other => Check::NotYet(format!(
                        "state {other:?}\n{}\n--- gobgpd log ---\n{}",
                        self.cli(&["neighbor"]).unwrap_or_default(),
                        self.process.log_tail()
                    )),
                })
            },
        )
    }

    /// `gobgp global rib -a <afi> -j`, raw.
    pub fn rib_json(&self, family: Family) -> Result<Value> {
        self.cli_json(&["global", "rib", "-a", afi(family)])
    }

    /// The global RIB of `family`, parsed into paths.
    pub fn rib(&self, family: Family) -> Result<Vec<Path>> {
        let v = self.rib_json(family)?;
        parse_rib(&v).map_err(|reason| Error::Parse {
            cmd: format!("gobgp global rib -a {} -j", afi(family)),
            reason,
            output: v.to_string(),
        })
    }

    /// Waits until `prefix` has a best path in the global RIB and returns it.
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<Path> {
        let (ip, _) = crate::netns::parse_cidr(prefix)?;
        let f = Family::of(ip);
        wait_for(
            &format!("GoBGP to have a best path for {prefix}"),
            timeout,
            Duration::from_millis(200),
            || {
                let rib = self.rib(f)?;
                Ok(match rib.iter().find(|p| p.prefix == prefix && p.best) {
                    Some(p) => Check::Ready(p.clone()),
                    None => Check::NotYet(format!("{rib:?}")),
                })
            },
        )
    }

    /// Injects `route` into the global RIB (`gobgp global rib add`) with its attributes. The
    /// next hop defaults to `0.0.0.0` / `::`, which GoBGP replaces with the session address.
    pub fn add_route(&self, route: &Route, next_hop: Option<IpAddr>) -> Result<()> {
        let args = rib_add_args(route, next_hop);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&a).map(drop)
    }

    /// Withdraws a route injected with [`GoBgp::add_route`].
    pub fn del_route(&self, prefix: &str) -> Result<()> {
        let (ip, _) = crate::netns::parse_cidr(prefix)?;
        self.cli(&["global", "rib", "del", "-a", afi(Family::of(ip)), prefix])
            .map(drop)
    }
}

fn afi(f: Family) -> &'static str {
    match f {
        Family::Ipv4Unicast => "ipv4",
        Family::Ipv6Unicast => "ipv6",
    }
}

fn afi_safi_name(f: Family) -> &'static str {
    match f {
        Family::Ipv4Unicast => "ipv4-unicast",
        Family::Ipv6Unicast => "ipv6-unicast",
    }
}

/// Names of the gRPC `PeerState.SessionState` enum (the JSON carries the number).
fn session_state_name(v: &Value) -> &'static str {
    match v.as_u64() {
        Some(1) => "idle",
        Some(2) => "connect",
        Some(3) => "active",
        Some(4) => "opensent",
        Some(5) => "openconfirm",
        Some(6) => "established",
        _ => match v.as_str() {
            Some(s) if s.eq_ignore_ascii_case("established") => "established",
            _ => "unknown",
        },
    }
}

/// The `gobgp global rib add` arguments for `route`.
fn rib_add_args(route: &Route, next_hop: Option<IpAddr>) -> Vec<String> {
    let f = route.family();
    let mut a: Vec<String> = ["global", "rib", "add", "-a", afi(f), &route.prefix]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if !route.communities.is_empty() {
        a.push("community".into());
        a.push(
            route
                .communities
                .iter()
                .map(|(x, y)| format!("{x}:{y}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if !route.large_communities.is_empty() {
        a.push("large-community".into());
        a.push(
            route
                .large_communities
                .iter()
                .map(|(g, x, y)| format!("{g}:{x}:{y}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(m) = route.med {
        a.push("med".into());
        a.push(m.to_string());
    }
    if let Some(lp) = route.local_pref {
        a.push("local-pref".into());
        a.push(lp.to_string());
    }
    let nh = next_hop.map(|n| n.to_string()).unwrap_or_else(|| {
        match f {
            Family::Ipv4Unicast => "0.0.0.0",
            Family::Ipv6Unicast => "::",
        }
        .to_owned()
    });
    a.push("nexthop".into());
    a.push(nh);
    a
}

/// Renders `cfg` as gobgpd TOML, following `bgp.md` §2: every neighbour lists its `afi-safis`
/// explicitly (GoBGP otherwise enables only the family of the neighbour's address).
/// `cfg.routes` are not part of the file; [`GoBgp::start_with`] injects them over the API.
pub fn render(cfg: &BgpConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[global.config]\n  as = {}", cfg.asn);
    let _ = writeln!(s, "  router-id = \"{}\"", cfg.router_id);
    if let Some(p) = cfg.listen_port {
        let _ = writeln!(s, "  port = {p}");
    }
    for n in &cfg.neighbors {
        let _ = writeln!(s, "\n[[neighbors]]\n  [neighbors.config]");
        let _ = writeln!(s, "    neighbor-address = \"{}\"", n.address);
        let _ = writeln!(s, "    peer-as = {}", n.remote_as);
        if let Some(pw) = &n.password {
            let _ = writeln!(s, "    auth-password = \"{pw}\"");
        }
        if n.passive || n.remote_port.is_some() || n.local_address.is_some() {
            let _ = writeln!(s, "  [neighbors.transport.config]");
            if n.passive {
                let _ = writeln!(s, "    passive-mode = true");
            }
            if let Some(p) = n.remote_port {
                let _ = writeln!(s, "    remote-port = {p}");
            }
            if let Some(l) = n.local_address {
                let _ = writeln!(s, "    local-address = \"{l}\"");
            }
        }
        if let Some(ttl) = n.multihop {
            let _ = writeln!(
                s,
                "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = {ttl}"
            );
        }
        if let (Some(h), Some(k)) = (n.hold_time, n.keepalive()) {
            let _ = writeln!(
                s,
                "  [neighbors.timers.config]\n    hold-time = {h}\n    keepalive-interval = {k}"
            );
        }
        if let Some(gr) = n.graceful_restart {
            let _ = writeln!(
                s,
                "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = {gr}"
            );
        }
        for f in n.effective_families() {
            let _ = writeln!(
                s,
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{}\"",
                afi_safi_name(f)
            );
            if n.graceful_restart.is_some() {
                let _ = writeln!(
                    s,
                    "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true"
                );
            }
        }
    }
    s
}

/// Parses `gobgp global rib -j`: `{prefix: [path, ...]}` with path attributes as typed objects
/// (type codes from RFC 4271 §5 and RFC 1997/4760/8092).
fn parse_rib(v: &Value) -> std::result::Result<Vec<Path>, String> {
    let map = v.as_object().ok_or("RIB is not a JSON object")?;
    let mut out = Vec::new();
    for (prefix, paths) in map {
        let paths = paths
            .as_array()
            .ok_or_else(|| format!("paths of {prefix} are not an array"))?;
        for p in paths {
            let mut path = Path {
                prefix: prefix.clone(),
                best: p["best"].as_bool().unwrap_or(false),
                ..Path::default()
            };
            for a in p["attrs"].as_array().into_iter().flatten() {
                let num = |k: &str| a[k].as_u64().and_then(|x| u32::try_from(x).ok());
                match a["type"].as_u64() {
                    Some(2) => {
                        for seg in a["as_paths"].as_array().into_iter().flatten() {
                            path.as_path.extend(
                                seg["asns"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|x| x.as_u64())
                                    .filter_map(|x| u32::try_from(x).ok()),
                            );
                        }
                    }
                    Some(3) | Some(14) => {
                        if let Some(nh) = a["nexthop"].as_str().and_then(|s| s.parse().ok()) {
                            path.next_hops.push(nh);
                        }
                    }
                    Some(4) => path.med = num("metric"),
                    Some(5) => path.local_pref = num("value"),
                    Some(8) => {
                        path.communities = a["communities"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                            .collect();
                    }
                    Some(32) => {
                        path.large_communities = a["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| {
                                format!("{}:{}:{}", c["ASN"], c["LocalData1"], c["LocalData2"])
                            })
                            .collect();
                    }
                    _ => {}
                }
            }
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bgp::Neighbor;

    #[test]
    fn parses_rib() {
        let v: Value = serde_json::from_str(
            r#"{"192.0.2.0/24":[{"nlri":{"prefix":"192.0.2.0/24"},"best":true,"attrs":[
            {"type":1,"value":2},{"type":2,"as_paths":[{"segment_type":2,"num":2,"asns":[65001,65002]}]},
            {"type":4,"metric":10},{"type":5,"value":200},{"type":8,"communities":[4259840001]},
            {"type":32,"value":[{"ASN":65000,"LocalData1":1,"LocalData2":2}]},
            {"type":3,"nexthop":"10.0.0.3"}]}]}"#,
        )
        .unwrap();
        let r = parse_rib(&v).unwrap();
        assert_eq!(r.len(), 1);
        let p = &r[0];
        assert!(p.best);
        assert_eq!(p.as_path, vec![65001, 65002]);
        assert_eq!(p.communities, vec!["65000:1"]);
        assert_eq!(p.large_communities, vec!["65000:1:2"]);
        assert_eq!(p.med, Some(10));
        assert_eq!(p.local_pref, Some(200));
        assert_eq!(p.next_hops, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert!(parse_rib(&serde_json::json!([])).is_err());
        assert!(parse_rib(&serde_json::json!({"x": 1})).is_err());
        assert!(parse_rib(&serde_json::json!({})).unwrap().is_empty());
    }

    #[test]
    fn render_lists_families_explicitly() {
        let cfg = BgpConfig::new(65003, "10.0.0.3".parse().unwrap()).neighbor(
            Neighbor::new("10.0.0.1".parse().unwrap(), 65001)
                .password("pw")
                .passive()
                .multihop(4)
                .hold_time(9)
                .graceful_restart(90),
        );
        let s = render(&cfg);
        for want in [
            "afi-safi-name = \"ipv4-unicast\"",
            "afi-safi-name = \"ipv6-unicast\"",
            "auth-password = \"pw\"",
            "passive-mode = true",
            "multihop-ttl = 4",
            "hold-time = 9",
            "keepalive-interval = 3",
            "restart-time = 90",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
    }

    #[test]
    fn rib_add_arguments() {
        let r = Route::new("2001:db8::/48")
            .unwrap()
            .community(1, 2)
            .large_community(3, 4, 5)
            .local_pref(7);
        assert_eq!(
            rib_add_args(&r, None).join(" "),
            "global rib add -a ipv6 2001:db8::/48 community 1:2 large-community 3:4:5 local-pref 7 nexthop ::"
        );
    }
}
