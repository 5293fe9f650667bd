//! BIRD 2 (Debian's 2.0.12) running inside a namespace, queried with `birdc`.
//!
//! `bird -f` stays in the foreground under our [`Process`] guard; `-s` puts the control socket
//! and `-P` the PID file in the instance directory, so instances never collide. `log stderr all`
//! sends the log to the captured output. `birdc` talks over the socket from the host namespace.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bgp::{self, BgpConfig, Family, Path};
use crate::cmd;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{Check, wait_for};

/// One line of `show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol instance name (`n0`, `st4`, ...).
    pub name: String,
    /// Protocol type (`BGP`, `Static`, ...).
    pub proto: String,
    /// Table (`---` for BGP, which has one per channel).
    pub table: String,
    /// `up`, `start`, `down`, ...
    pub state: String,
    /// Since when, as printed.
    pub since: String,
    /// Free text; for BGP the FSM state (`Established`, `Active`, `Idle`) and last error.
    pub info: String,
}

/// A running BIRD instance. Dropping it stops the daemon.
#[derive(Debug)]
pub struct Bird {
    dir: PathBuf,
    socket: PathBuf,
    process: Process,
    argv: Vec<String>,
    restarts: u32,
}

impl Bird {
    /// Starts `bird` in `ns` with `conf` (BIRD configuration text) in `<dir>/<name>/` and waits
    /// until `birdc` answers. The configuration is syntax-checked first (`bird -p`) so a typo
    /// fails with BIRD's message rather than a timeout.
    pub fn start(ns: &Netns, dir: &FsPath, name: &str, conf: &str) -> Result<Self> {
        let idir = dir.join(name);
        fs::create_dir_all(&idir).map_err(|source| Error::Io {
            path: idir.clone(),
            source,
        })?;
        let cpath = idir.join("bird.conf");
        fs::write(&cpath, conf).map_err(|source| Error::Io {
            path: cpath.clone(),
            source,
        })?;
        cmd::run(Command::new("bird").arg("-p").arg("-c").arg(&cpath))?;
        let socket = idir.join("bird.ctl");
        let pid = idir.join("bird.pid");
        let (c, s, p) = (
            cpath.to_string_lossy().into_owned(),
            socket.to_string_lossy().into_owned(),
            pid.to_string_lossy().into_owned(),
        );
        let argv: Vec<String> = ["bird", "-f", "-c", &c, "-s", &s, "-P", &p]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let process = ns.spawn(&idir, "bird", &a)?;
        let mut b = Self {
            dir: idir,
            socket,
            process,
            argv,
            restarts: 0,
        };
        b.wait_ready()?;
        Ok(b)
    }

    fn wait_ready(&mut self) -> Result<()> {
        wait_for(
            "bird to answer birdc",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                self.process.check_running()?;
                Ok(match self.birdc(&["show", "status"]) {
                    Ok(_) => Check::Ready(()),
                    Err(e) => Check::NotYet(e.to_string()),
                })
            },
        )
    }

    /// Starts bird again with the same configuration (stopping it first if it runs); output goes
    /// to `bird-<n>.log`.
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        self.process.stop()?;
        self.restarts += 1;
        let a: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        self.process = ns.spawn(&self.dir, &format!("bird-{}", self.restarts), &a)?;
        self.wait_ready()
    }

    /// Replaces the configuration file and asks the running daemon to reload it
    /// (`birdc configure`).
    pub fn reconfigure(&self, conf: &str) -> Result<String> {
        let cpath = self.dir.join("bird.conf");
        fs::write(&cpath, conf).map_err(|source| Error::Io {
            path: cpath.clone(),
            source,
        })?;
        cmd::run(Command::new("bird").arg("-p").arg("-c").arg(&cpath))?;
        self.birdc(&["configure"])
    }

    /// Starts BIRD with a configuration rendered from `cfg` by [`render`].
    pub fn start_with(ns: &Netns, dir: &FsPath, name: &str, cfg: &BgpConfig) -> Result<Self> {
        Self::start(ns, dir, name, &render(cfg))
    }

    /// The instance directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// The daemon process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Runs one `birdc` command (words as separate arguments) and returns its output without
    /// the `BIRD x.y ready.` banner.
    pub fn birdc(&self, words: &[&str]) -> Result<String> {
        let mut c = Command::new("birdc");
        c.arg("-s").arg(&self.socket).args(words);
        let line = cmd::describe(&c);
        let out = cmd::run(&mut c)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // birdc exits 0 even when the daemon rejects a command; BIRD prints errors as
        // "syntax error, ..." or "Unknown protocol" lines.
        if text.contains("syntax error") || text.contains("Unable to connect") {
            return Err(Error::Parse {
                cmd: line,
                reason: "birdc reported an error".into(),
                output: text,
            });
        }
        Ok(text
            .lines()
            .filter(|l| !l.starts_with("BIRD ") || !l.ends_with(" ready."))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// `show protocols`, parsed.
    pub fn protocols(&self) -> Result<Vec<Protocol>> {
        let text = self.birdc(&["show", "protocols"])?;
        parse_protocols(&text).map_err(|reason| Error::Parse {
            cmd: "birdc show protocols".into(),
            reason,
            output: text,
        })
    }

    /// The BGP FSM state of protocol `name` (`"Established"`, `"Active"`, ...).
    pub fn bgp_state(&self, name: &str) -> Result<Option<String>> {
        let text = self.birdc(&["show", "protocols", "all", name])?;
        Ok(text
            .lines()
            .find_map(|l| l.trim().strip_prefix("BGP state:"))
            .map(|s| s.trim().to_owned()))
    }

    /// Waits until BGP protocol `name` is Established; the error shows `show protocols all`.
    pub fn wait_established(&self, name: &str, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("BIRD protocol {name} to be Established"),
            timeout,
            Duration::from_millis(200),
            || {
                Ok(match self.bgp_state(name)? {
                    Some(s) if s == "Established" => Check::Ready(()),
                    _ => Check::NotYet(format!(
                        "{}\n--- bird log ---\n{}",
                        self.birdc(&["show", "protocols", "all", name])
                            .unwrap_or_default(),
                        self.process.log_tail()
                    )),
                })
            },
        )
    }

    /// `show route all` over both master tables, parsed into paths.
    pub fn routes(&self) -> Result<Vec<Path>> {
        let mut out = Vec::new();
        for t in ["master4", "master6"] {
            let text = self.birdc(&["show", "route", "all", "table", t])?;
            out.extend(parse_routes(&text).map_err(|reason| Error::Parse {
                cmd: format!("birdc show route all table {t}"),
                reason,
                output: text.clone(),
            })?);
        }
        Ok(out)
    }

    /// Paths for one prefix.
    pub fn paths(&self, prefix: &str) -> Result<Vec<Path>> {
        crate::netns::parse_cidr(prefix)?;
        Ok(self
            .routes()?
            .into_iter()
            .filter(|p| p.prefix == prefix)
            .collect())
    }

    /// Waits until `prefix` has a best path learnt over BGP (a non-empty AS path or a BGP
    /// next hop) and returns it.
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<Path> {
        wait_for(
            &format!("BIRD to have a best path for {prefix}"),
            timeout,
            Duration::from_millis(200),
            || {
                let paths = self.paths(prefix)?;
                Ok(match paths.iter().find(|p| p.best) {
                    Some(p) => Check::Ready(p.clone()),
                    None => Check::NotYet(
                        self.birdc(&["show", "route", "all"])
                            .unwrap_or_else(|e| e.to_string()),
                    ),
                })
            },
        )
    }
}

/// Renders `cfg` as a BIRD 2 configuration, following `bgp.md` §2:
/// - every family its own channel with explicit `import all; export all;` (RFC 8212 mode
///   otherwise blocks eBGP);
/// - `extended next hop on` in the ipv4 channel when asked (RFC 8950);
/// - `multihop N` when asked, else BIRD's `direct` default for eBGP;
/// - originated routes as `blackhole` static routes whose attribute block sets communities,
///   large communities, MED and LOCAL_PREF.
///
/// BGP protocols are named `n0`, `n1`, ... in neighbour order.
pub fn render(cfg: &BgpConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "router id {};", cfg.router_id);
    let _ = writeln!(s, "log stderr all;");
    let _ = writeln!(s, "protocol device {{ }}");
    for (f, ch) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
        let routes: Vec<_> = cfg.routes_of(f).collect();
        if routes.is_empty() {
            continue;
        }
        let _ = writeln!(s, "protocol static st_{ch} {{\n  {ch};");
        for r in routes {
            let mut attrs = String::new();
            for (a, v) in &r.communities {
                let _ = write!(attrs, " bgp_community.add(({a},{v}));");
            }
            for (g, a, b) in &r.large_communities {
                let _ = write!(attrs, " bgp_large_community.add(({g},{a},{b}));");
            }
            if let Some(m) = r.med {
                let _ = write!(attrs, " bgp_med = {m};");
            }
            if let Some(lp) = r.local_pref {
                let _ = write!(attrs, " bgp_local_pref = {lp};");
            }
            if attrs.is_empty() {
                let _ = writeln!(s, "  route {} blackhole;", r.prefix);
            } else {
                let _ = writeln!(s, "  route {} blackhole {{{attrs} }};", r.prefix);
            }
        }
        let _ = writeln!(s, "}}");
    }
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let _ = writeln!(s, "protocol bgp n{i} {{");
        let _ = writeln!(s, "  local as {};", cfg.asn);
        match n.remote_port {
            Some(p) => {
                let _ = writeln!(s, "  neighbor {} port {p} as {};", n.address, n.remote_as);
            }
            None => {
                let _ = writeln!(s, "  neighbor {} as {};", n.address, n.remote_as);
            }
        }
        if let Some(p) = cfg.listen_port {
            let _ = writeln!(s, "  local port {p};");
        }
        if let Some(l) = n.local_address {
            let _ = writeln!(s, "  source address {l};");
        }
        if n.passive {
            let _ = writeln!(s, "  passive on;");
        }
        if let Some(pw) = &n.password {
            let _ = writeln!(s, "  password \"{pw}\";");
        }
        if let Some(ttl) = n.multihop {
            let _ = writeln!(s, "  multihop {ttl};");
        }
        if let (Some(h), Some(k)) = (n.hold_time, n.keepalive()) {
            let _ = writeln!(s, "  hold time {h};\n  keepalive time {k};");
        }
        if let Some(gr) = n.graceful_restart {
            let _ = writeln!(s, "  graceful restart on;\n  graceful restart time {gr};");
        }
        for f in n.effective_families() {
            match f {
                Family::Ipv4Unicast => {
                    let enh = if n.extended_nexthop {
                        " extended next hop on;"
                    } else {
                        ""
                    };
                    let _ = writeln!(s, "  ipv4 {{ import all; export all;{enh} }};");
                }
                Family::Ipv6Unicast => {
                    let _ = writeln!(s, "  ipv6 {{ import all; export all; }};");
                }
            }
        }
        let _ = writeln!(s, "}}");
    }
    s
}

/// The BGP protocol name [`render`] gives the neighbour at `addr`.
pub fn protocol_name(cfg: &BgpConfig, addr: IpAddr) -> Option<String> {
    cfg.neighbors
        .iter()
        .position(|n| n.address == addr)
        .map(|i| format!("n{i}"))
}

fn parse_protocols(text: &str) -> std::result::Result<Vec<Protocol>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(h) if h.starts_with("Name") => {}
        other => return Err(format!("missing header line, got {other:?}")),
    }
    let mut out = Vec::new();
    for l in lines {
        let mut it = l.split_whitespace();
        let mut col = || {
            it.next()
                .map(str::to_owned)
                .ok_or(format!("short line {l:?}"))
        };
        let (name, proto, table, state, since) = (col()?, col()?, col()?, col()?, col()?);
        let info = it.collect::<Vec<_>>().join(" ");
        out.push(Protocol {
            name,
            proto,
            table,
            state,
            since,
            info,
        });
    }
    Ok(out)
}

/// Parses `show route all` output: a route line (`PREFIX  TYPE [PROTO TIME] * (PREF) ...`, the
/// prefix omitted for further paths of the same prefix) followed by tab-indented attribute lines.
fn parse_routes(text: &str) -> std::result::Result<Vec<Path>, String> {
    let mut out: Vec<Path> = Vec::new();
    let mut prefix = String::new();
    for l in text.lines() {
        if l.trim().is_empty() || l.starts_with("Table ") {
            continue;
        }
        if l.starts_with('\t') {
            let Some(cur) = out.last_mut() else {
                return Err(format!("attribute line before any route: {l:?}"));
            };
            let l = l.trim();
            if let Some(v) = l.strip_prefix("BGP.as_path:") {
                cur.as_path = bgp::parse_as_path(v);
            } else if let Some(v) = l.strip_prefix("BGP.next_hop:") {
                cur.next_hops = v
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect();
            } else if let Some(v) = l.strip_prefix("BGP.local_pref:") {
                cur.local_pref = v.trim().parse().ok();
            } else if let Some(v) = l.strip_prefix("BGP.med:") {
                cur.med = v.trim().parse().ok();
            } else if let Some(v) = l.strip_prefix("BGP.community:") {
                cur.communities = tuples(v, 2);
            } else if let Some(v) = l.strip_prefix("BGP.large_community:") {
                cur.large_communities = tuples(v, 3);
            }
            continue;
        }
        // A route line. A leading space means "same prefix as above".
        let mut words = l.split_whitespace();
        if !l.starts_with(' ') {
            prefix = words
                .next()
                .ok_or_else(|| format!("empty route line {l:?}"))?
                .to_owned();
            crate::netns::parse_cidr(&prefix).map_err(|e| e.to_string())?;
        } else if prefix.is_empty() {
            return Err(format!("continuation line before any prefix: {l:?}"));
        }
        let best = l.contains("] * (");
        out.push(Path {
            prefix: prefix.clone(),
            best,
            ..Path::default()
        });
    }
    Ok(out)
}

/// `(65000,1) (65000,2)` -> `["65000:1", "65000:2"]`; `(65000, 1, 2)` -> `["65000:1:2"]`.
fn tuples(v: &str, arity: usize) -> Vec<String> {
    v.split(')')
        .filter_map(|t| t.trim().strip_prefix('('))
        .map(|t| t.split(',').map(str::trim).collect::<Vec<_>>().join(":"))
        .filter(|t| t.split(':').count() == arity)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bgp::{Neighbor, Route};

    const ROUTES: &str = "Table master4:
192.0.2.0/24         unicast [n0 01:40:00.123] * (100) [AS65001i]
\tvia 10.0.0.1 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65001 65005
\tBGP.next_hop: 10.0.0.1
\tBGP.med: 42
\tBGP.local_pref: 100
\tBGP.community: (65000,7) (65000,8)
\tBGP.large_community: (65000, 1, 2)
                     unicast [n1 01:40:01.000] (100) [AS65003i]
\tvia 10.0.1.1 on eth1
\tBGP.as_path: 65003
\tBGP.next_hop: 10.0.1.1 fe80::1
198.51.100.0/24      blackhole [st_ipv4 01:35:26.942] * (200)
\tType: static univ
";

    #[test]
    fn parses_routes() {
        let r = parse_routes(ROUTES).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].prefix, "192.0.2.0/24");
        assert!(r[0].best);
        assert_eq!(r[0].as_path, vec![65001, 65005]);
        assert_eq!(r[0].communities, vec!["65000:7", "65000:8"]);
        assert_eq!(r[0].large_communities, vec!["65000:1:2"]);
        assert_eq!(r[0].med, Some(42));
        assert_eq!(r[0].local_pref, Some(100));
        assert_eq!(r[1].prefix, "192.0.2.0/24");
        assert!(!r[1].best);
        assert_eq!(r[1].next_hops.len(), 2);
        assert_eq!(r[2].prefix, "198.51.100.0/24");
    }

    #[test]
    fn rejects_malformed_routes() {
        assert!(parse_routes("\tBGP.med: 1\n").is_err());
        assert!(parse_routes("notaprefix unicast [x] *\n").is_err());
        assert!(parse_routes("   unicast [x] *\n").is_err());
        assert!(parse_routes("").unwrap().is_empty());
    }

    #[test]
    fn parses_protocols() {
        let t = "Name       Proto      Table      State  Since         Info
device1    Device     ---        up     01:35:26.942
n0         BGP        ---        start  01:35:26.942  Active        Socket: Connection refused
";
        let p = parse_protocols(t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].info, "Active Socket: Connection refused");
        assert_eq!(p[0].info, "");
        assert!(parse_protocols("garbage").is_err());
        assert!(parse_protocols("Name Proto\nn0 BGP\n").is_err());
    }

    #[test]
    fn render_has_interop_knobs() {
        let cfg = BgpConfig::new(65002, "10.0.0.2".parse().unwrap())
            .neighbor(
                Neighbor::new("fd00::1".parse().unwrap(), 65001)
                    .extended_nexthop()
                    .password("pw")
                    .multihop(2)
                    .hold_time(9)
                    .graceful_restart(60)
                    .passive(),
            )
            .route(Route::new("192.0.2.0/24").unwrap().community(1, 2).med(3));
        let s = render(&cfg);
        for want in [
            "ipv4 { import all; export all; extended next hop on; };",
            "ipv6 { import all; export all; };",
            "neighbor fd00::1 as 65001;",
            "password \"pw\";",
            "multihop 2;",
            "hold time 9;",
            "keepalive time 3;",
            "graceful restart time 60;",
            "passive on;",
            "route 192.0.2.0/24 blackhole { bgp_community.add((1,2)); bgp_med = 3; };",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        assert_eq!(
            protocol_name(&cfg, "fd00::1".parse().unwrap()).as_deref(),
            Some("n0")
        );
    }
}
