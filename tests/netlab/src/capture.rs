//! Packet capture with tcpdump inside a namespace, for ARP/NDP assertions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd;
use crate::error::Result;
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{Check, wait_for};

/// A running `tcpdump -w` on one interface. [`Capture::stop`] (or drop) ends it.
#[derive(Debug)]
pub struct Capture {
    pcap: PathBuf,
    process: Process,
}

impl Capture {
    /// Starts `tcpdump -i <dev> -U -w <dir>/<name>.pcap [filter]` in `ns` and waits until it
    /// reports "listening on", so packets sent afterwards are captured.
    pub fn start(ns: &Netns, dir: &Path, name: &str, dev: &str, filter: &str) -> Result<Self> {
        let pcap = dir.join(format!("{name}.pcap"));
        let p = pcap.to_string_lossy().into_owned();
        // --immediate-mode: without it TPACKET_V3 hands packets over in blocks, and a capture
        // stopped soon after the traffic loses the last block (seen here: "2 packets received
        // by filter, 1 captured"). -U flushes the file per packet so `text` works mid-capture.
        // -Z root keeps tcpdump from dropping privileges to a user that cannot write our dir.
        let mut argv = vec![
            "tcpdump",
            "-i",
            dev,
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-w",
            &p,
        ];
        argv.extend(filter.split_whitespace());
        let mut process = ns.spawn(dir, name, &argv)?;
        wait_for(
            &format!("tcpdump on {dev} to listen"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                process.check_running()?;
                Ok(if process.log().contains("listening on") {
                    Check::Ready(())
                } else {
                    Check::NotYet(process.log_tail())
                })
            },
        )?;
        Ok(Self { pcap, process })
    }

    /// The pcap file.
    pub fn pcap(&self) -> &Path {
        &self.pcap
    }

    /// Decodes what has been captured so far: one line per packet, `tcpdump -nn -e -r` format
    /// (link-layer headers included, e.g. `... ethertype ARP (0x0806) ... Reply 10.0.0.5 is-at ...`).
    pub fn text(&self) -> Result<String> {
        let out = cmd::run(
            Command::new("tcpdump")
                .args(["-nn", "-e", "-r"])
                .arg(&self.pcap),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the decoded capture contains `needle`; returns the whole text. On timeout the
    /// error shows everything captured.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) -> Result<String> {
        wait_for(
            &format!("capture to contain {needle:?}"),
            timeout,
            Duration::from_millis(50),
            || {
                let t = self.text()?;
                Ok(if t.contains(needle) {
                    Check::Ready(t)
                } else {
                    Check::NotYet(t)
                })
            },
        )
    }

    /// Stops tcpdump (flushing the file) and returns the decoded packets.
    pub fn stop(&mut self) -> Result<String> {
        self.process.stop()?;
        self.text()
    }
}
