//! The admin API's answers, from what the controllers publish: every request reads `watch`
//! channels (a borrow, no lock any reconcile holds), except route queries, which ask the
//! speakers for their tables.

use std::sync::Arc;
use tokio::time::Instant;

use bgpd::query::{RibKind, RouteQuery};
use bgpd_wire::Family;
use l2announcer::node::NodeSender;
use rackd_api::{Reply, Request, SessionState};
use rackd_model::rackd_types::ObjectCondition;
use tokio::sync::watch;

use crate::admin;
use crate::bgp::{BgpPeers, BgpStatus};
use crate::config::ConfigState;
use crate::controller::RunStates;
use crate::lbipam_ctl::LbStatus;
use crate::views;

/// What the admin API and the service manager read.
#[derive(Debug)]
pub struct Shared {
    node: String,
    started: Instant,
    config: watch::Receiver<Arc<ConfigState>>,
    lb: watch::Receiver<Arc<LbStatus>>,
    bgp: watch::Receiver<BgpStatus>,
    peers: watch::Receiver<BgpPeers>,
    /// The L2 ownership task's query handle, when L2 announcements are on.
    l2: Option<NodeSender>,
    runs: RunStates,
    /// The service datapath's status and flow reader, when it is on.
    services: Option<(
        watch::Receiver<Arc<crate::svclb::SvcStatus>>,
        crate::svclb::housekeeping::SharedReader,
    )>,
}

impl Shared {
    /// Reads these channels.
    pub fn new(
        node: &str,
        config: watch::Receiver<Arc<ConfigState>>,
        lb: watch::Receiver<Arc<LbStatus>>,
        bgp: watch::Receiver<BgpStatus>,
        peers: watch::Receiver<BgpPeers>,
        l2: Option<NodeSender>,
        runs: RunStates,
    ) -> Self {
        Self {
            node: node.to_owned(),
            started: Instant::now(),
            config,
            lb,
            bgp,
            peers,
            l2,
            runs,
            services: None,
        }
    }

    /// Answers the service datapath's requests from `services`.
    #[must_use]
    pub fn with_services(
        mut self,
        services: Option<(
            watch::Receiver<Arc<crate::svclb::SvcStatus>>,
            crate::svclb::housekeeping::SharedReader,
        )>,
    ) -> Self {
        self.services = services;
        self
    }

    /// Every condition, per object: configuration errors, the source's health, and each
    /// controller's findings (whatever controllers run).
    pub fn conditions(&self) -> Vec<ObjectCondition> {
        let mut out = self.config.borrow().conditions();
        out.extend(self.runs.conditions());
        out
    }

    /// Whether the configuration is loaded and every controller has applied it.
    pub fn synced(&self) -> bool {
        self.config.borrow().loaded && self.runs.all_synced()
    }

    /// Controllers busy in one run for longer than `limit`.
    pub fn stuck(&self, limit: std::time::Duration) -> Vec<&'static str> {
        self.runs.stuck(limit)
    }

    /// systemd's `STATUS=` line.
    pub fn status_line(&self) -> String {
        let peers = self.peers.borrow().clone();
        let cfg = self.config.borrow().clone();
        format!(
            "STATUS=BGP sessions established {}/{}, objects {}, config errors {}",
            peers
                .iter()
                .filter(|p| p.session_state == SessionState::Established)
                .count(),
            peers.len(),
            cfg.snapshot.len(),
            cfg.problem_count(),
        )
    }

    fn status(&self) -> rackd_api::Status {
        let cfg = self.config.borrow().clone();
        let peers = self.peers.borrow().clone();
        let mut config_errors: Vec<String> = cfg.errors.iter().map(ToString::to_string).collect();
        if let crate::config::Health::Unavailable { reason } = &cfg.health {
            config_errors.push(format!("{}: {reason}", cfg.source));
        }
        rackd_api::Status {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            config_source: cfg.source.clone(),
            config_generation: cfg.revision,
            objects: cfg
                .snapshot
                .counts()
                .into_iter()
                .map(|(k, n)| (k.as_str().to_owned(), n))
                .collect(),
            config_errors,
            bgp_instances: self.bgp.borrow().desired.instances.len(),
            bgp_peers_established: peers
                .iter()
                .filter(|p| p.session_state == SessionState::Established)
                .count(),
            bgp_peers_total: peers.len(),
            conditions: self.conditions(),
            controllers: self
                .runs
                .snapshot()
                .into_iter()
                .map(|(name, s)| rackd_api::ControllerView {
                    name: name.to_owned(),
                    runs: s.runs,
                    errors: s.errors,
                    synced: s.synced,
                    last_error: s.last_error,
                })
                .collect(),
        }
    }

    async fn bgp_routes(
        &self,
        table: &str,
        afi: &str,
        neighbor: Option<&str>,
        router_asn: Option<u32>,
    ) -> Result<Vec<rackd_api::BgpRoute>, String> {
        let family = Family::from_names(afi, "unicast")
            .ok_or_else(|| format!("unsupported afi {afi:?}: expected ipv4 or ipv6"))?;
        let peer: Option<std::net::IpAddr> = match neighbor {
            None => None,
            Some(n) => Some(
                n.parse()
                    .map_err(|_| format!("invalid neighbor {n:?}: expected an IP address"))?,
            ),
        };
        let rib = match (table, peer) {
            ("loc-rib", None) => RibKind::LocRib,
            ("loc-rib", Some(_)) => return Err("neighbor is not allowed for loc-rib".into()),
            ("adj-rib-in", Some(p)) => RibKind::AdjRibIn(p),
            ("adj-rib-out", Some(p)) => RibKind::AdjRibOut(p),
            ("adj-rib-in" | "adj-rib-out", None) => {
                return Err(format!("{table} needs a neighbor"));
            }
            (t, _) => {
                return Err(format!(
                    "unknown table {t:?}: expected loc-rib, adj-rib-in or adj-rib-out"
                ));
            }
        };
        let speakers = self.bgp.borrow().speakers.clone();
        let mut out = Vec::new();
        for (_, speaker, asn) in speakers.iter() {
            if router_asn.is_some_and(|a| a != *asn) {
                continue;
            }
            let routes = match speaker.routes(RouteQuery { family, rib }).await {
                Ok(r) => r,
                // A neighbour of another instance.
                Err(_) if peer.is_some() => continue,
                Err(e) => return Err(e.to_string()),
            };
            out.extend(views::bgp_routes(*asn, family, peer, &routes));
        }
        Ok(out)
    }
}

impl admin::Handler for Shared {
    async fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Status => Reply::Status(self.status()),
            Request::BgpPeers => Reply::BgpPeers(self.peers.borrow().to_vec()),
            Request::BgpRoutes {
                table,
                afi,
                safi,
                neighbor,
                router_asn,
            } => {
                if safi != "unicast" {
                    return Reply::Error(format!("unsupported safi {safi:?}: expected unicast"));
                }
                match self
                    .bgp_routes(&table, &afi, neighbor.as_deref(), router_asn)
                    .await
                {
                    Ok(r) => Reply::BgpRoutes(r),
                    Err(e) => Reply::Error(e),
                }
            }
            Request::BgpRoutePolicies { router_asn } => {
                let d = self.bgp.borrow().desired.clone();
                Reply::BgpRoutePolicies(views::route_policies(&d, router_asn))
            }
            Request::BgpNodeConfig => {
                let st = self.bgp.borrow().clone();
                let peers = self.peers.borrow().clone();
                Reply::BgpNodeConfig(Box::new(views::node_config(
                    &self.node,
                    &st.desired,
                    &peers,
                    &st.conditions,
                )))
            }
            // Clone the Arc out first: the views are built without holding the channel.
            Request::LbipamPools => Reply::LbipamPools(self.lb.borrow().clone().pool_views()),
            Request::LbipamServices => {
                Reply::LbipamServices(self.lb.borrow().clone().service_views())
            }
            Request::L2Leases | Request::L2Announcements => {
                let Some(l2) = &self.l2 else {
                    return Reply::Error(
                        "L2 announcements are not enabled on this node (--enable-l2-announcements)"
                            .into(),
                    );
                };
                let Some(snap) = l2.snapshot().await else {
                    return Reply::Error("the L2 announcement task has stopped".into());
                };
                if matches!(req, Request::L2Leases) {
                    Reply::L2Leases(crate::l2::lease_views(&snap))
                } else {
                    Reply::L2Announcements(crate::l2::announcement_views(&snap))
                }
            }
            Request::EgressPolicies => {
                let egress = self
                    .services
                    .as_ref()
                    .and_then(|(rx, _)| rx.borrow().egress.clone());
                let snap = self.config.borrow().snapshot.clone();
                Reply::EgressPolicies(views::egress::egress_policies(
                    &self.node,
                    egress.as_deref(),
                    &snap,
                    &self.conditions(),
                ))
            }
            Request::BpfEgressList => {
                match self
                    .services
                    .as_ref()
                    .map(|(rx, _)| rx.borrow().egress.clone())
                {
                    Some(Some(st)) => {
                        Reply::BpfEgressList(views::egress::egress_map(&self.node, &st))
                    }
                    _ => Reply::Error(
                        "the egress gateway is not enabled on this node (--enable-egress-gateway)"
                            .into(),
                    ),
                }
            }
            Request::ServiceList
            | Request::BpfLbList
            | Request::BpfCtList
            | Request::BpfNatList => {
                let Some((rx, reader)) = &self.services else {
                    return Reply::Error(
                        "the service datapath is not enabled on this node (--kube-proxy-replacement)"
                            .into(),
                    );
                };
                let st = rx.borrow().clone();
                let snap = self.config.borrow().snapshot.clone();
                match req {
                    Request::ServiceList => {
                        Reply::ServiceList(crate::svclb::views::services(&st, &snap, &self.node))
                    }
                    Request::BpfLbList => Reply::BpfLbList(crate::svclb::views::lb_map(&st, &snap)),
                    Request::BpfCtList => {
                        match crate::svclb::housekeeping::with_reader(reader, |r| r.ct_entries())
                            .await
                        {
                            Ok(e) => Reply::BpfCtList(crate::svclb::views::ct(
                                &e,
                                datapath::sys::monotonic_ns(),
                            )),
                            Err(e) => Reply::Error(format!("reading the CT map: {e}")),
                        }
                    }
                    _ => match crate::svclb::housekeeping::with_reader(reader, |r| r.nat_entries())
                        .await
                    {
                        Ok(e) => Reply::BpfNatList(crate::svclb::views::nat(
                            &e,
                            datapath::sys::monotonic_ns(),
                        )),
                        Err(e) => Reply::Error(format!("reading the NAT map: {e}")),
                    },
                }
            }
        }
    }
}
