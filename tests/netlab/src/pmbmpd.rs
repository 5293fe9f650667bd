//! pmacct's BMP collector `pmbmpd` (Debian package `pmacct`), logging every decoded BMP
//! message as one JSON object per line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::Result;
use crate::{Check, LabDir, Netns, Process, wait_for};

/// A running collector and its message log.
#[derive(Debug)]
pub struct Pmbmpd {
    pub process: Process,
    pub log: PathBuf,
}

/// Whether `pmbmpd` can run here (tests fail, never skip, when it cannot).
pub fn available() -> bool {
    std::process::Command::new("pmbmpd")
        .arg("-V")
        .output()
        .is_ok()
}

impl Pmbmpd {
    /// Starts `pmbmpd` in `ns` listening on `ip:port`, its files named after `tag` in `dir`;
    /// returns once it listens.
    pub fn start(ns: &Netns, dir: &LabDir, tag: &str, ip: &str, port: u16) -> Result<Self> {
        let log = dir.path().join(format!("{tag}.json"));
        let conf = dir.write(
            &format!("{tag}.conf"),
            &format!(
                "daemonize: false\nbmp_daemon_ip: {ip}\nbmp_daemon_port: {port}\n\
                 bmp_daemon_msglog_file: {}\nbmp_daemon_msglog_output: json\n",
                log.display()
            ),
        )?;
        let conf = conf.to_string_lossy().into_owned();
        let process = ns.spawn(dir.path(), tag, &["pmbmpd", "-f", &conf])?;
        wait_for(
            "pmbmpd to listen",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let out = ns.output(&["ss", "-Hltn", &format!("sport = :{port}")])?;
                Ok(if out.trim().is_empty() {
                    Check::NotYet(out)
                } else {
                    Check::Ready(())
                })
            },
        )?;
        Ok(Self { process, log })
    }

    /// Every message logged so far.
    pub fn records(&self) -> Vec<Value> {
        records(&self.log)
    }
}

/// The messages in a pmbmpd JSON log (lines that are not JSON are skipped).
pub fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
