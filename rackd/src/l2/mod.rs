//! L2 announcements in the daemon: `CiliumL2AnnouncementPolicy` from the snapshot and
//! LB-IPAM's addresses become desired IP groups for the `l2announcer` ownership task, which
//! claims them under leases (`local` or `etcd`) and programs the eBPF ARP/NDP responder.
//!
//! ```text
//!  snapshot + LB-IPAM ─▶ desired::evaluate ─▶ NodeHandle::set_desired ─▶ ownership task ─▶ Responder (eBPF)
//!  rtnetlink links ───▶ LinkMonitor ───────────▶ NodeSender::link ─────────┘     │
//!                                                           lease backend ◀───────┘
//! ```

pub mod desired;
pub mod links;
pub mod responder;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use l2announcer::LeaseTimings;
use l2announcer::backend::{EtcdBackend, EtcdConfig, LocalBackend};
use l2announcer::node::{NodeConfig, NodeHandle, NodeSender, ShutdownReport, spawn};
use l2announcer::policy::{DesiredGroup, Evaluation};
use rackd_model::Snapshot;
use tracing::{info, warn};

use self::links::LinkMonitor;
use self::responder::DatapathAnnouncer;

/// Where node leases and group claims live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseBackendKind {
    /// This node alone: it holds every group it is a candidate for. Single-node clusters only.
    Local,
    /// etcd v3: one lease per node, one create-if-absent key per IP group.
    Etcd {
        endpoints: Vec<String>,
        /// Key prefix, ending in `/`.
        prefix: String,
    },
}

/// How L2 announcements run.
#[derive(Debug, Clone)]
pub struct L2Options {
    pub backend: LeaseBackendKind,
    /// As given (sanitised at start, with a warning per correction, like Cilium).
    pub timings: LeaseTimings,
    /// Cilium's `--devices`: names or `prefix+`; empty = every Ethernet device.
    pub devices: Vec<String>,
    /// bpffs folder of the datapath's pins.
    pub pin_root: PathBuf,
}

/// Start-up errors of L2 announcements.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("cannot load or adopt the eBPF ARP/NDP responder under {pin_root}")]
    Datapath {
        pin_root: PathBuf,
        #[source]
        source: datapath::Error,
    },
    #[error("cannot monitor network links")]
    Links(#[from] links::LinkError),
}

/// The running L2 announcement controller.
#[derive(Debug)]
pub struct L2Controller {
    node: NodeHandle,
    links: LinkMonitor,
    patterns: Vec<String>,
    last: Option<BTreeMap<IpAddr, DesiredGroup>>,
    problems: Vec<String>,
    node_name: String,
}

impl L2Controller {
    /// Loads (or adopts) the responder, starts the ownership task on the chosen backend and
    /// the link monitor.
    pub async fn start(node_name: &str, opts: &L2Options) -> Result<Self, L2Error> {
        let (timings, fixes) = opts.timings.sanitise();
        for f in fixes {
            warn!(fix = ?f, ?timings, "L2 announcement lease timings corrected (as Cilium does)");
        }
        let dp_err = |source| L2Error::Datapath {
            pin_root: opts.pin_root.clone(),
            source,
        };
        let mut responder = datapath::Responder::open_or_create(&opts.pin_root).map_err(dp_err)?;
        // The program stops answering when the daemon's stamp is older than the renew
        // deadline: a hung or killed daemon goes quiet before its lease can expire and
        // another node take over (l2announcer README, "Timings and fencing").
        responder
            .set_lease_duration(timings.renew_deadline)
            .map_err(dp_err)?;
        let announcer = DatapathAnnouncer::new(responder).map_err(dp_err)?;
        let cfg = NodeConfig::new(node_name, timings);
        let node = match &opts.backend {
            LeaseBackendKind::Local => {
                warn!(
                    "L2 lease backend `local`: this node answers for every IP it is a candidate for; use etcd with more than one node"
                );
                spawn(cfg, LocalBackend::new(node_name), announcer)
            }
            LeaseBackendKind::Etcd { endpoints, prefix } => {
                let mut ecfg = EtcdConfig::new(endpoints.clone(), node_name, timings);
                ecfg.prefix.clone_from(prefix);
                spawn(cfg, EtcdBackend::new(ecfg), announcer)
            }
        };
        let links = LinkMonitor::start(node.sender()).await?;
        info!(backend = ?opts.backend, ?timings, pin_root = %opts.pin_root.display(), "L2 announcements on");
        Ok(Self {
            node,
            links,
            patterns: opts.devices.clone(),
            last: None,
            problems: Vec::new(),
            node_name: node_name.to_owned(),
        })
    }

    /// Recomputes the desired groups (level-triggered; the task only hears of changes).
    pub fn reconcile(&mut self, snap: &Snapshot, lb_ips: &BTreeMap<(String, String), Vec<IpAddr>>) {
        let devices = desired::select_devices(&self.links.devices(), &self.patterns);
        let eval: Evaluation = desired::evaluate(snap, &self.node_name, &devices, lb_ips);
        let problems = desired::problems(&eval);
        if problems != self.problems {
            for p in &problems {
                warn!(problem = %p, "L2 announcement policy");
            }
            self.problems = problems;
        }
        if self.last.as_ref() != Some(&eval.groups) {
            info!(groups = eval.groups.len(), "L2 desired groups changed");
            self.node.set_desired(eval.groups.clone());
            self.last = Some(eval.groups);
        }
    }

    /// Policy problems of the last reconcile, one line each.
    #[must_use]
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The device list changed (resolves once per change).
    pub async fn devices_changed(&mut self) {
        self.links.changed().await;
    }

    /// A cloneable handle for queries (the admin socket and metrics).
    #[must_use]
    pub fn query(&self) -> NodeSender {
        self.node.sender()
    }

    /// Withdraw every entry, then revoke the node lease (SIGTERM).
    pub async fn shutdown(self) -> Option<ShutdownReport> {
        let Self { node, links, .. } = self;
        drop(links);
        node.shutdown().await
    }
}

/// `rackctl l2 leases` rows: one per IP group this node knows of.
#[must_use]
pub fn lease_views(s: &l2announcer::query::Snapshot) -> Vec<rackd_api::LeaseView> {
    s.leases
        .iter()
        .map(|l| rackd_api::LeaseView {
            ip: l.ip.to_string(),
            services: l.services.clone(),
            interfaces: l.interfaces.clone(),
            holder: l.holder.clone().unwrap_or_default(),
            lease_age_seconds: l.lease_age_secs,
            candidate: l.candidate,
            replies_sent: s
                .announcements
                .iter()
                .filter(|a| a.ip == l.ip)
                .filter_map(|a| a.replies_sent)
                .sum(),
        })
        .collect()
}

/// `rackctl l2 announcements` rows: one per (IP, interface) this node answers for.
#[must_use]
pub fn announcement_views(s: &l2announcer::query::Snapshot) -> Vec<rackd_api::AnnouncementView> {
    s.announcements
        .iter()
        .map(|a| rackd_api::AnnouncementView {
            ip: a.ip.to_string(),
            services: a.services.clone(),
            interface: a.interface.clone(),
            holder: a.holder.clone(),
            lease_age_seconds: a.lease_age_secs,
            replies_sent: a.replies_sent.unwrap_or(0),
        })
        .collect()
}

/// Errors of [`parse_go_duration`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid number in duration at {at:?}")]
    Number { at: String },
    #[error("unknown or missing unit in duration at {at:?} (ns, us, ms, s, m, h)")]
    Unit { at: String },
    #[error("negative durations are not allowed")]
    Negative,
}

/// Parses a Go `time.Duration` string as Cilium's flags take them: `15s`, `500ms`, `1m30s`,
/// `1.5s`, `0`.
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let v: f64 = num
            .parse()
            .map_err(|_| DurationError::Number { at: rest.into() })?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DurationError::Unit { at: tail.into() }),
        };
        total += v * scale;
        rest = next;
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("15s"), Duration::from_secs(15));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("200us"), Duration::from_micros(200));
        for bad in ["", "15", "s", "1x", "-1s", "1.2.3s", "5 s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
