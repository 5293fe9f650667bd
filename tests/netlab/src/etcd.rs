//! A single-member etcd 3.4 inside a namespace, for the L2 lease tests.

use std::fs;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use crate::cmd;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{Check, wait_for};

/// A running single-member etcd. Dropping it stops the daemon; its data directory lives in the
/// lab directory and goes with it.
#[derive(Debug)]
pub struct Etcd {
    dir: PathBuf,
    ns: String,
    client_url: String,
    process: Process,
}

impl Etcd {
    /// Starts etcd in `ns` serving clients on `http://<client_ip>:2379` (and on `127.0.0.1`
    /// inside the namespace). Peer traffic stays on `127.0.0.1:2380`. Waits until
    /// `etcdctl endpoint health` succeeds.
    pub fn start(ns: &Netns, dir: &FsPath, name: &str, client_ip: IpAddr) -> Result<Self> {
        Self::start_with(ns, dir, name, client_ip, &[])
    }

    /// [`Etcd::start`] with a 10 ms heartbeat and 100 ms election timeout, so etcd honours
    /// lease TTLs down to 1 s (its minimum TTL is 1.5 × the election timeout, rounded up).
    pub fn start_fast(ns: &Netns, dir: &FsPath, name: &str, client_ip: IpAddr) -> Result<Self> {
        Self::start_with(
            ns,
            dir,
            name,
            client_ip,
            &["--heartbeat-interval", "10", "--election-timeout", "100"],
        )
    }

    /// [`Etcd::start`] with extra etcd arguments.
    pub fn start_with(
        ns: &Netns,
        dir: &FsPath,
        name: &str,
        client_ip: IpAddr,
        extra: &[&str],
    ) -> Result<Self> {
        let idir = dir.join(name);
        let data = idir.join("data");
        fs::create_dir_all(&idir).map_err(|source| Error::Io {
            path: idir.clone(),
            source,
        })?;
        let host = match client_ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let client_url = format!("http://{host}:2379");
        let listen = if client_ip.is_loopback() {
            client_url.clone()
        } else {
            format!("{client_url},http://127.0.0.1:2379")
        };
        let peer = "http://127.0.0.1:2380";
        let d = data.to_string_lossy().into_owned();
        let cluster = format!("{name}={peer}");
        let mut argv = vec![
            "etcd",
            "--name",
            name,
            "--data-dir",
            &d,
            "--listen-client-urls",
            &listen,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            &cluster,
            "--initial-cluster-state",
            "new",
        ];
        argv.extend_from_slice(extra);
        let process = ns.spawn(&idir, "etcd", &argv)?;
        let mut e = Self {
            dir: idir,
            ns: ns.name().to_owned(),
            client_url,
            process,
        };
        wait_for(
            &format!("etcd {name} to be healthy"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                e.process.check_running()?;
                Ok(match e.etcdctl(&["endpoint", "health"]) {
                    Ok(_) => Check::Ready(()),
                    Err(err) => Check::NotYet(format!("{err}\n{}", e.process.log_tail())),
                })
            },
        )?;
        Ok(e)
    }

    /// `http://<client_ip>:2379`, for clients in other namespaces.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The instance directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// The daemon process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Runs `etcdctl --endpoints <client_url> args...` (API v3) inside the namespace.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let mut c = std::process::Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            "etcdctl",
            "--endpoints",
            &self.client_url,
        ])
        .args(args)
        .env("ETCDCTL_API", "3");
        let out = cmd::run(&mut c)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `etcdctl put key value`.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.etcdctl(&["put", key, value]).map(drop)
    }

    /// `etcdctl get --print-value-only key`; `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.etcdctl(&["get", "--print-value-only", key])?;
        let v = out.strip_suffix('\n').unwrap_or(&out);
        Ok(if out.is_empty() {
            None
        } else {
            Some(v.to_owned())
        })
    }
}
