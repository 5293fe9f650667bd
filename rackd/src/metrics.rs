//! Prometheus metrics and the tiny HTTP endpoint that serves them (`GET /metrics`).
//! A full HTTP stack is not worth its weight for one read-only text page.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Labels of per-peer, per-family series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerFamilyLabels {
    pub vrouter: String,
    pub peer: String,
    pub family: String,
}

/// Labels of per-peer series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub vrouter: String,
    pub peer: String,
}

/// Labels of per-controller series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Labels of per-pool series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

/// Labels of per-interface series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub interface: String,
}

/// Labels of datastore write kinds.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteKindLabels {
    pub kind: String,
}

/// Labels of per-frontend series of the service datapath.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendLabels {
    /// `addr:port/PROTO`.
    pub frontend: String,
    pub namespace: String,
    pub service: String,
}

/// Labels of the datapath's drop reasons and events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Labels of what the egress gateway did with a packet it handled.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// All of rackd's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// 1 when the session is established (`rackd_bgp_session_established`).
    pub session_established: Family<PeerLabels, Gauge>,
    /// 1 when the peer's BFD session is up, 0 when it is not; absent without BFD
    /// (`rackd_bgp_bfd_up`).
    pub bfd_up: Family<PeerLabels, Gauge>,
    /// State changes of the peer's BFD session (`rackd_bgp_bfd_transitions`).
    pub bfd_transitions: Family<PeerLabels, Gauge>,
    pub prefixes_received: Family<PeerFamilyLabels, Gauge>,
    pub prefixes_advertised: Family<PeerFamilyLabels, Gauge>,
    pub reconcile_runs: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Current number of configuration errors.
    pub config_errors: Gauge,
    pub config_applies: Counter,
    /// 1 while the configuration source can be read (`rackd_config_source_up`).
    pub config_source_up: Gauge,
    pub pool_ips_used: Family<PoolLabels, Gauge>,
    pub pool_ips_available: Family<PoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub l2_lease_live: Gauge,
    pub l2_members: Gauge,
    pub l2_groups_known: Gauge,
    pub l2_groups_held: Gauge,
    pub l2_announcements: Gauge,
    /// Per interface, not per IP: 27,000 announced IPs would be 27,000 series.
    pub l2_replies_sent: Family<InterfaceLabels, Gauge>,
    pub l2_datastore_writes: Family<WriteKindLabels, Gauge>,
    pub lb_packets: Family<FrontendLabels, Gauge>,
    pub lb_bytes: Family<FrontendLabels, Gauge>,
    pub lb_drops: Family<ReasonLabels, Gauge>,
    pub lb_events: Family<ReasonLabels, Gauge>,
    pub lb_ct_entries: Gauge,
    pub lb_nat_entries: Gauge,
    pub lb_gc_deleted: Counter,
    /// Egress gateway packets by result: `tunnelled` to the gateway, translated (`snat`)
    /// here, replies tunnelled back (`reply_tunnelled`).
    pub egress_packets: Family<ResultLabels, Gauge>,
    /// Egress gateway drops by reason.
    pub egress_drops: Family<ReasonLabels, Gauge>,
    /// Status writes to the Kubernetes API by object kind (`service`, `pool`), and writes
    /// refused with a conflict (`rackd_k8s_status_writes_total`, `..._conflicts_total`).
    pub k8s_status_writes: Family<WriteKindLabels, Counter>,
    pub k8s_status_conflicts: Counter,
}

impl Metrics {
    /// Counts one status write to the API server of `kind` (`rackd_k8s_status_writes_total`).
    pub fn k8s_status_wrote(&self, kind: &str) {
        self.k8s_status_writes
            .get_or_create(&WriteKindLabels { kind: kind.into() })
            .inc();
    }

    /// Create and register everything.
    pub fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("rackd");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            session_established: Family::default(),
            prefixes_received: Family::default(),
            prefixes_advertised: Family::default(),
            reconcile_runs: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new([0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
            }),
            config_errors: Gauge::default(),
            config_applies: Counter::default(),
            config_source_up: Gauge::default(),
            pool_ips_used: Family::default(),
            pool_ips_available: Family::default(),
            l2_lease_live: Gauge::default(),
            l2_members: Gauge::default(),
            l2_groups_known: Gauge::default(),
            l2_groups_held: Gauge::default(),
            l2_announcements: Gauge::default(),
            l2_replies_sent: Family::default(),
            l2_datastore_writes: Family::default(),
            k8s_status_writes: Family::default(),
            k8s_status_conflicts: Counter::default(),
            lb_packets: Family::default(),
            lb_bytes: Family::default(),
            lb_drops: Family::default(),
            lb_events: Family::default(),
            lb_ct_entries: Gauge::default(),
            lb_nat_entries: Gauge::default(),
            lb_gc_deleted: Counter::default(),
            egress_packets: Family::default(),
            egress_drops: Family::default(),
            bfd_up: Family::default(),
            bfd_transitions: Family::default(),
        };
        r.register(
            "bgp_session_established",
            "1 when the BGP session is established",
            m.session_established.clone(),
        );
        r.register(
            "bgp_bfd_up",
            "1 when the peer's BFD session is up (peers with BFD only)",
            m.bfd_up.clone(),
        );
        r.register(
            "bgp_bfd_transitions",
            "State changes of the peer's BFD session since it was created",
            m.bfd_transitions.clone(),
        );
        r.register(
            "bgp_prefixes_received",
            "Prefixes received from the peer, per family",
            m.prefixes_received.clone(),
        );
        r.register(
            "bgp_prefixes_advertised",
            "Prefixes advertised to the peer, per family",
            m.prefixes_advertised.clone(),
        );
        r.register(
            "reconcile_runs",
            "Reconcile runs per controller",
            m.reconcile_runs.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile runs that failed, per controller",
            m.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile run duration per controller",
            m.reconcile_duration.clone(),
        );
        r.register(
            "config_errors",
            "Configuration errors currently reported",
            m.config_errors.clone(),
        );
        r.register(
            "config_source_up",
            "1 while the configuration source can be read (the last good configuration is kept while it cannot)",
            m.config_source_up.clone(),
        );
        r.register(
            "k8s_status_writes",
            "Status writes to the Kubernetes API (server-side apply), by object kind",
            m.k8s_status_writes.clone(),
        );
        r.register(
            "k8s_status_conflicts",
            "Status writes the API server refused with a conflict (retried on the next version)",
            m.k8s_status_conflicts.clone(),
        );
        r.register(
            "config_applies",
            "Configurations applied",
            m.config_applies.clone(),
        );
        r.register(
            "lbipam_pool_ips_used",
            "IPs allocated from the pool",
            m.pool_ips_used.clone(),
        );
        r.register(
            "lbipam_pool_ips_available",
            "IPs still available in the pool (float: IPv6 pools exceed 2^53)",
            m.pool_ips_available.clone(),
        );
        r.register(
            "l2_lease_live",
            "1 while this node's L2 announcement lease is live",
            m.l2_lease_live.clone(),
        );
        r.register(
            "l2_members",
            "Nodes with a live L2 announcement lease",
            m.l2_members.clone(),
        );
        r.register(
            "l2_groups_known",
            "IP groups this node knows of",
            m.l2_groups_known.clone(),
        );
        r.register(
            "l2_groups_held",
            "IP groups this node holds",
            m.l2_groups_held.clone(),
        );
        r.register(
            "l2_announcements",
            "(IP, interface) entries this node answers ARP/NDP for",
            m.l2_announcements.clone(),
        );
        r.register(
            "l2_replies_sent",
            "ARP replies and neighbour advertisements sent by the datapath (monotonic)",
            m.l2_replies_sent.clone(),
        );
        r.register(
            "l2_datastore_writes",
            "Lease datastore writes made by this node, per kind (monotonic)",
            m.l2_datastore_writes.clone(),
        );
        r.register(
            "lb_packets",
            "Packets forwarded by the service datapath per frontend (monotonic)",
            m.lb_packets.clone(),
        );
        r.register(
            "lb_bytes",
            "Bytes forwarded by the service datapath per frontend (monotonic)",
            m.lb_bytes.clone(),
        );
        r.register(
            "lb_drops",
            "Packets the service datapath dropped or rejected, by reason (monotonic; nat_exhausted is NAT port exhaustion)",
            m.lb_drops.clone(),
        );
        r.register(
            "lb_events",
            "Service datapath events: NAT port retries, resets and ICMP errors sent, packets redirected or handed to the stack (monotonic)",
            m.lb_events.clone(),
        );
        r.register(
            "lb_ct_entries",
            "Connection tracking entries in use",
            m.lb_ct_entries.clone(),
        );
        r.register(
            "lb_nat_entries",
            "NAT entries in use (two per translated flow)",
            m.lb_nat_entries.clone(),
        );
        r.register(
            "lb_gc_deleted",
            "Expired CT and NAT entries removed by garbage collection",
            m.lb_gc_deleted.clone(),
        );
        r.register(
            "egress_packets",
            "Packets the egress gateway handled, by result: tunnelled to the gateway node, translated to the egress address here, replies tunnelled back to the pod's node (monotonic)",
            m.egress_packets.clone(),
        );
        r.register(
            "egress_drops",
            "Packets the egress gateway dropped, by reason: no_gateway, no_egress_ip, unsupported (fragment or protocol), nat_failed, tunnel_failed (monotonic)",
            m.egress_drops.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = r;
        Arc::new(m)
    }

    /// Sets the L2 gauges from the ownership task's snapshot.
    pub fn set_l2(&self, s: &l2announcer::query::Snapshot) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let c = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.l2_lease_live.set(i64::from(s.lease_live));
        self.l2_members.set(n(s.members.len()));
        self.l2_groups_known.set(n(s.leases.len()));
        self.l2_groups_held.set(n(s.held()));
        self.l2_announcements.set(n(s.announcements.len()));
        let mut per_if: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for a in &s.announcements {
            *per_if.entry(&a.interface).or_default() += a.replies_sent.unwrap_or(0);
        }
        self.l2_replies_sent.clear();
        for (interface, v) in per_if {
            self.l2_replies_sent
                .get_or_create(&InterfaceLabels {
                    interface: interface.to_owned(),
                })
                .set(c(v));
        }
        for (kind, v) in s.writes.by_kind() {
            self.l2_datastore_writes
                .get_or_create(&WriteKindLabels { kind: kind.into() })
                .set(c(v));
        }
    }

    /// Sets the service datapath's series from its counters; `frontends` names each
    /// service id (`addr:port/PROTO`, namespace, name).
    pub fn set_lb(
        &self,
        c: &datapath::lb::LbCounters,
        frontends: &std::collections::BTreeMap<u32, FrontendLabels>,
    ) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.lb_packets.clear();
        self.lb_bytes.clear();
        for (id, sc) in &c.services {
            if let Some(l) = frontends.get(id) {
                self.lb_packets.get_or_create(l).set(g(sc.packets));
                self.lb_bytes.get_or_create(l).set(g(sc.bytes));
            }
        }
        for (reason, n) in &c.drops {
            self.lb_drops
                .get_or_create(&ReasonLabels {
                    reason: reason.name().into(),
                })
                .set(g(*n));
        }
        let e = &c.events;
        for (reason, n) in [
            ("nat_retries", e.nat_retries),
            ("rst_sent", e.rst_sent),
            ("icmp_sent", e.icmp_sent),
            ("malformed_passed", e.malformed_passed),
            ("redirected", e.redirected),
            ("to_stack", e.to_stack),
            ("icmp_errors_translated", e.icmp_errors),
        ] {
            self.lb_events
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .set(g(n));
        }
        self.lb_ct_entries.set(g(c.ct_entries));
        self.lb_nat_entries.set(g(c.nat_entries));
    }

    /// Sets the egress gateway's series from its counters.
    pub fn set_egress(&self, c: &datapath::lb::EgressCounters) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (result, n) in [
            ("tunnelled", c.tunnelled),
            ("snat", c.snat),
            ("reply_tunnelled", c.reply_tunnelled),
        ] {
            self.egress_packets
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .set(g(n));
        }
        for (reason, n) in [
            ("no_gateway", c.drop_no_gateway),
            ("no_egress_ip", c.drop_no_egress_ip),
            ("unsupported", c.drop_unsupported),
            ("nat_failed", c.drop_nat_failed),
            ("tunnel_failed", c.drop_tunnel_failed),
        ] {
            self.egress_drops
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .set(g(n));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

/// Serve `GET /metrics` until cancelled.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = l.accept() => match r { Ok(s) => s, Err(e) => { warn!(error = %e, "metrics accept"); continue; } },
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match s.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                ("200 OK", m.render())
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_text_format() {
        let m = Metrics::new();
        m.session_established
            .get_or_create(&PeerLabels {
                vrouter: "65001".into(),
                peer: "10.0.1.1".into(),
            })
            .set(1);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let stop = CancellationToken::new();
        let srv = tokio::spawn(serve(addr, m.clone(), stop.clone()));
        let mut body = String::new();
        for _ in 0..50 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
                s.read_to_string(&mut body).await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(
            body.contains("rackd_bgp_session_established{vrouter=\"65001\",peer=\"10.0.1.1\"} 1"),
            "{body}"
        );
        stop.cancel();
        srv.await.unwrap().unwrap();
    }

    #[test]
    fn egress_series() {
        let m = Metrics::new();
        // Nothing before the first set: a node without the egress gateway has no series.
        assert!(!m.render().contains("rackd_egress_"));
        m.set_egress(&datapath::lb::EgressCounters {
            tunnelled: 7,
            reply_tunnelled: 2,
            drop_no_gateway: 1,
            ..Default::default()
        });
        let t = m.render();
        for line in [
            "rackd_egress_packets{result=\"tunnelled\"} 7",
            "rackd_egress_packets{result=\"snat\"} 0",
            "rackd_egress_packets{result=\"reply_tunnelled\"} 2",
            "rackd_egress_drops{reason=\"no_gateway\"} 1",
            "rackd_egress_drops{reason=\"tunnel_failed\"} 0",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
    }
}
