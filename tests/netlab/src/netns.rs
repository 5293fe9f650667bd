//! Network namespaces as RAII guards, and the links and addresses inside them.

use std::fs::File;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{self, describe};
use crate::error::{Error, Result};
use crate::names;
use crate::process::Process;
use crate::wait::{Check, wait_for};

/// Where `ip netns add` persists namespaces (bind mounts of `/proc/<pid>/ns/net`).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// How long [`Netns`]'s drop waits for SIGTERMed processes before SIGKILLing them.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A named network namespace created with `ip netns add`, deleted on drop.
///
/// Drop (also during a panic's unwinding) first SIGTERMs, then SIGKILLs every process still inside
/// the namespace (found with `ip netns pids`; the name is unique, so they are ours), then runs
/// `ip netns del`. `lo` is brought up at creation so daemons can talk to `127.0.0.1` inside.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// PIDs of unreaped children spawned through this namespace (see [`Process`]). A child
    /// removes itself when reaped, so every PID here is still ours and cannot be recycled.
    spawned: Spawned,
}

/// Shared registry of live children, between a [`Netns`] and its [`Process`]es.
pub(crate) type Spawned = Arc<Mutex<Vec<u32>>>;

impl Netns {
    /// Creates `<prefix>-<pid>-<counter>-<rand>`, brings its loopback up and turns IPv6
    /// duplicate address detection off (see [`Netns::with_dad`] for why and how to keep it).
    pub fn new(prefix: &str) -> Result<Self> {
        let ns = Self::with_dad(prefix)?;
        ns.disable_dad()?;
        Ok(ns)
    }

    /// Like [`Netns::new`] but keeps the kernel's DAD defaults.
    ///
    /// With DAD on, every new interface's link-local address is tentative for about a second
    /// after link-up; daemons that start meanwhile fail in ways that cost a full retry timer
    /// (FRR: "does not have a v6 LL address", then 120 s ConnectRetry). Tests of DAD itself
    /// (NDP announcements) want it on.
    pub fn with_dad(prefix: &str) -> Result<Self> {
        let name = names::unique(prefix);
        cmd::run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on the guard owns the namespace: an error below still deletes it.
        let ns = Self {
            name,
            spawned: Spawned::default(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as shown by `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: open it to `setns(2)` into the namespace.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// A [`Command`] that runs `argv` inside the namespace through `ip netns exec` (which also
    /// remounts `/sys` so tools see this namespace's interfaces).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    /// A [`Command`] that runs `argv` in the namespace's network stack only, through
    /// `nsenter --net` (which `exec`s, so the PID is the program's): the mount namespace stays
    /// the host's, so `/sys/fs/bpf` is the host's bpffs and pins outlive the process, as they
    /// do for a daemon on a real node. (`ip netns exec` gives each process a private mount
    /// namespace where a bpffs mounted by the program, and every pin in it, vanishes when the
    /// process exits.) `/sys/class/net` then shows the host's devices: programs must use
    /// netlink or ioctls, which follow the network namespace.
    pub fn command_host_mounts(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .args(argv);
        c
    }

    /// [`Netns::exec`] through [`Netns::command_host_mounts`].
    pub fn exec_host_mounts(&self, argv: &[&str]) -> Result<()> {
        cmd::run(&mut self.command_host_mounts(argv)).map(drop)
    }

    /// [`Netns::spawn`] through [`Netns::command_host_mounts`].
    pub fn spawn_host_mounts(&self, log_dir: &Path, name: &str, argv: &[&str]) -> Result<Process> {
        Process::spawn_command(self, log_dir, name, self.command_host_mounts(argv))
    }

    /// Runs `argv` inside the namespace; error (with stdout/stderr) unless it exits 0.
    pub fn exec(&self, argv: &[&str]) -> Result<()> {
        cmd::run(&mut self.command(argv)).map(drop)
    }

    /// Runs `argv` inside the namespace and returns its stdout.
    pub fn output(&self, argv: &[&str]) -> Result<String> {
        let out = cmd::run(&mut self.command(argv))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ip -n <ns> args...` (cheaper than `exec(["ip", ...])`: no mount namespace) and returns
    /// stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::run_stdout("ip", ["-n", self.name.as_str()].iter().chain(args))
    }

    /// Runs `ip -j -n <ns> args...` and parses the JSON.
    pub fn ip_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut c = Command::new("ip");
        c.args(["-j", "-n", &self.name]).args(args);
        let line = describe(&c);
        let out = cmd::run(&mut c)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Array(Vec::new()));
        }
        cmd::parse_json(&line, &text)
    }

    /// Starts `argv` inside the namespace as a [`Process`] whose stdout/stderr go to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(&self, log_dir: &Path, name: &str, argv: &[&str]) -> Result<Process> {
        Process::spawn(self, log_dir, name, argv, &[])
    }

    /// Like [`Netns::spawn`] with extra environment variables.
    pub fn spawn_env(
        &self,
        log_dir: &Path,
        name: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Process> {
        Process::spawn(self, log_dir, name, argv, env)
    }

    /// Switches the **current thread** into the namespace, runs `f`, and switches back (also when
    /// `f` panics).
    ///
    /// Sockets created inside keep the namespace after `f` returns; threads spawned inside start
    /// in it. A current-thread tokio runtime built and driven inside `f` does all its I/O here.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let _guard = self.enter_guard()?;
        Ok(f())
    }

    /// `GET path` over plain HTTP/1.1 to `addr` inside the namespace: the whole response
    /// (status line, headers, body), or "" if nothing answers (for polling a daemon's
    /// metrics endpoint until it does).
    pub fn http_get(&self, addr: &str, path: &str) -> String {
        use std::io::{Read, Write};
        self.enter(|| {
            let mut s = std::net::TcpStream::connect(addr).ok()?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                .ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).ok()?;
            Some(body)
        })
        .ok()
        .flatten()
        .unwrap_or_default()
    }

    /// Switches the current thread into the namespace until the returned guard is dropped. The
    /// guard is `!Send`: `setns(2)` affects only the calling thread.
    pub fn enter_guard(&self) -> Result<EnteredNetns> {
        let orig_path = "/proc/thread-self/ns/net";
        let orig = File::open(orig_path).map_err(|source| Error::Io {
            path: orig_path.into(),
            source,
        })?;
        let path = self.path();
        let target = File::open(&path).map_err(|source| Error::Io { path, source })?;
        setns(&target, &self.name)?;
        Ok(EnteredNetns {
            orig,
            _not_send: PhantomData,
        })
    }

    // ---- links -------------------------------------------------------------------------------

    /// Creates `ip link add <dev> type <kind>` (dummy, bridge, ...) inside the namespace.
    pub fn link_add(&self, dev: &str, kind: &str) -> Result<()> {
        names::check_ifname(dev)?;
        self.ip(&["link", "add", "name", dev, "type", kind])
            .map(drop)
    }

    /// Creates a bridge and brings it up.
    pub fn add_bridge(&self, dev: &str) -> Result<()> {
        self.link_add(dev, "bridge")?;
        self.link_up(dev)
    }

    /// Creates a dummy interface and brings it up. Some kernels (this lab VM's) lack the dummy
    /// driver; put loopback-style addresses on `lo` there.
    pub fn add_dummy(&self, dev: &str) -> Result<()> {
        self.link_add(dev, "dummy")?;
        self.link_up(dev)
    }

    /// Enslaves `dev` to `bridge`.
    pub fn set_master(&self, dev: &str, bridge: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", dev, "master", bridge])
            .map(drop)
    }

    /// `ip link set <dev> up`.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", dev, "up"]).map(drop)
    }

    /// `ip link set <dev> down`.
    pub fn link_down(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", dev, "down"]).map(drop)
    }

    /// Deletes a link (a veth's peer goes with it).
    pub fn link_del(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "del", "dev", dev]).map(drop)
    }

    /// Sets a MAC address (`aa:bb:cc:dd:ee:ff`).
    pub fn set_mac(&self, dev: &str, mac: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", dev, "address", mac])
            .map(drop)
    }

    /// The MAC address of `dev`, lower-case `aa:bb:..`.
    pub fn mac(&self, dev: &str) -> Result<String> {
        let v = self.ip_json(&["link", "show", "dev", dev])?;
        v.get(0)
            .and_then(|l| l.get("address"))
            .and_then(|a| a.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Parse {
                cmd: format!("ip -j -n {} link show dev {dev}", self.name),
                reason: "no address field".into(),
                output: v.to_string(),
            })
    }

    /// The interface index of `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> Result<u32> {
        let v = self.ip_json(&["link", "show", "dev", dev])?;
        v.get(0)
            .and_then(|l| l.get("ifindex"))
            .and_then(|a| a.as_u64())
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Error::Parse {
                cmd: format!("ip -j -n {} link show dev {dev}", self.name),
                reason: "no ifindex field".into(),
                output: v.to_string(),
            })
    }

    /// Adds an address given as `ADDR/LEN`. IPv6 addresses are added with `nodad` so they are
    /// usable immediately (no 1-2 s of tentative state).
    pub fn addr_add(&self, dev: &str, cidr: &str) -> Result<()> {
        let (ip, _) = parse_cidr(cidr)?;
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if ip.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// Removes an address given as `ADDR/LEN`.
    pub fn addr_del(&self, dev: &str, cidr: &str) -> Result<()> {
        parse_cidr(cidr)?;
        self.ip(&["addr", "del", cidr, "dev", dev]).map(drop)
    }

    /// `ip route add <args...>`, e.g. `route_add(&["10.0.0.0/8", "via", "10.1.0.1"])`.
    pub fn route_add(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["route", "add"];
        a.extend_from_slice(args);
        self.ip(&a).map(drop)
    }

    /// Writes a sysctl inside the namespace (`net.*` sysctls are per namespace), e.g.
    /// `sysctl("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")])
    }

    /// Reads a sysctl inside the namespace.
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        Ok(self.output(&["sysctl", "-n", key])?.trim().to_owned())
    }

    /// Turns off IPv6 duplicate address detection for `all` and `default` (interfaces created
    /// afterwards inherit `default`), so link-local and global addresses are usable at once.
    pub fn disable_dad(&self) -> Result<()> {
        self.write_sysctls(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.dad_transmits", "0"),
            ("net.ipv6.conf.default.dad_transmits", "0"),
        ])
    }

    /// Writes `net.*` sysctls from this thread switched into the namespace: `/proc/sys/net` is
    /// resolved against the opener's namespace, and this avoids forking `ip netns exec sysctl`.
    pub fn write_sysctls(&self, kv: &[(&str, &str)]) -> Result<()> {
        self.enter(|| {
            for (k, v) in kv {
                let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
                std::fs::write(&path, v).map_err(|source| Error::Io { path, source })?;
            }
            Ok(())
        })?
    }

    /// Enables IPv4 and IPv6 forwarding in the namespace (routers, the DUT).
    pub fn enable_forwarding(&self) -> Result<()> {
        self.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ])
    }

    /// Sets `net.ipv6.conf.<dev>.accept_ra` (0 = ignore router advertisements, 2 = accept even
    /// when forwarding).
    pub fn accept_ra(&self, dev: &str, value: u8) -> Result<()> {
        self.sysctl(
            &format!("net.ipv6.conf.{dev}.accept_ra"),
            &value.to_string(),
        )
    }

    /// IPv6 addresses currently tentative (DAD not finished), as `ADDR/LEN` strings.
    pub fn tentative_ipv6(&self) -> Result<Vec<String>> {
        let v = self.ip_json(&["-6", "addr", "show", "tentative"])?;
        Ok(addrs_of(&v))
    }

    /// Addresses of `dev` as `ADDR/LEN` strings (both families).
    pub fn addrs(&self, dev: &str) -> Result<Vec<String>> {
        let v = self.ip_json(&["addr", "show", "dev", dev])?;
        Ok(addrs_of(&v))
    }

    /// Waits until no IPv6 address in the namespace is tentative (link-locals of new veths stay
    /// tentative for about a second unless DAD is disabled).
    pub fn wait_ipv6_ready(&self, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("IPv6 addresses in {} to leave tentative", self.name),
            timeout,
            Duration::from_millis(50),
            || {
                let t = self.tentative_ipv6()?;
                if t.is_empty() {
                    Ok(Check::Ready(()))
                } else {
                    Ok(Check::NotYet(format!("tentative: {t:?}")))
                }
            },
        )
    }

    /// PIDs of every process inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let out = cmd::run_stdout("ip", ["netns", "pids", self.name.as_str()])?;
        Ok(out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// The registry [`Process::spawn`] records children in.
    pub(crate) fn spawned(&self) -> &Spawned {
        &self.spawned
    }

    /// Everything to stop: processes inside the namespace plus our unreaped children (which
    /// may not have entered it yet: `ip netns exec` between fork and setns).
    fn targets(&self) -> Vec<i32> {
        let mut t = self.pids().unwrap_or_default();
        if let Ok(s) = self.spawned.lock() {
            t.extend(s.iter().filter_map(|&p| i32::try_from(p).ok()));
        }
        t.retain(|&p| p > 0 && !is_zombie_or_gone(p));
        t.sort_unstable();
        t.dedup();
        t
    }

    /// SIGTERM then (after a grace period) SIGKILL everything still in the namespace.
    fn kill_all(&self) {
        let pids = self.targets();
        if pids.is_empty() {
            return;
        }
        for &p in &pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if self.targets().is_empty() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        for p in self.targets() {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` has exited (a zombie awaiting its parent's wait, or no longer present).
fn is_zombie_or_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        if let Err(e) = cmd::run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("netlab: cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// Creates a veth pair with `a_dev` in `a` and `b_dev` in `b`, both up.
///
/// The pair is created from inside `a` with the peer placed directly into `b`, so nothing ever
/// appears in the host namespace and the names only need to be unique within each namespace.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<()> {
    names::check_ifname(a_dev)?;
    names::check_ifname(b_dev)?;
    a.ip(&[
        "link", "add", "name", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ])?;
    a.link_up(a_dev)?;
    b.link_up(b_dev)
}

/// The current thread's stay inside a [`Netns`]; dropping it switches back.
#[derive(Debug)]
pub struct EnteredNetns {
    orig: File,
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnteredNetns {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.orig, "original namespace") {
            // Carrying on would run the rest of the test (and the next test on this thread) in
            // the lab namespace, which is far worse than stopping.
            eprintln!("netlab: cannot restore network namespace: {e}");
            std::process::abort();
        }
    }
}

fn setns(f: &File, what: &str) -> Result<()> {
    // SAFETY: the fd is valid for the duration of the call; setns only changes this thread's
    // network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Sys {
            call: "setns",
            target: what.to_owned(),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Splits and validates `ADDR/LEN`.
pub fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8)> {
    let bad = |reason| Error::InvalidCidr {
        input: cidr.to_owned(),
        reason,
    };
    let (a, l) = cidr.split_once('/').ok_or_else(|| bad("missing /LEN"))?;
    let ip: IpAddr = a.parse().map_err(|_| bad("bad address"))?;
    let len: u8 = l.parse().map_err(|_| bad("bad prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad("prefix length too long"));
    }
    Ok((ip, len))
}

fn addrs_of(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(l), Some(p)) = (
                a.get("local").and_then(|x| x.as_str()),
                a.get("prefixlen").and_then(|x| x.as_u64()),
            ) {
                out.push(format!("{l}/{p}"));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.0.0.1/24").unwrap(),
            ("10.0.0.1".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("fd00::1/64").unwrap().1, 64);
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "fd00::1/129",
            "x/1",
            "10.0.0.1/",
            "/24",
            "",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
