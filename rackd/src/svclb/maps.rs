//! The kernel half of the service controller: the eBPF load balancer's maps and links behind
//! a trait, so the controller's planning and ordering are tested against a fake and run
//! against [`datapath::lb::ServiceLb`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rackd_services::ids::{BackendId, ServiceId};
use rackd_services::plan::{Op, ServiceValue};
use rackd_services::{Backend, Frontend};

/// A datapath call that failed: what was being done, and the datapath's error.
#[derive(Debug, thiserror::Error)]
#[error("service datapath: {what}")]
pub struct MapsError {
    pub what: String,
    #[source]
    pub source: datapath::Error,
}

/// What pinned maps hold after a restart: frontends and backends with their ids.
pub type Restored = (Vec<(Frontend, u32)>, Vec<(Backend, u32)>);

/// What the controller needs from the datapath.
pub trait LbMaps: Send + 'static {
    /// Applies one planned operation.
    fn apply(&mut self, op: &Op) -> Result<(), MapsError>;
    /// The frontends and backends the maps hold, with their ids (after a restart).
    fn restore(&mut self) -> Result<Restored, MapsError>;
    /// Interfaces the programs are attached to.
    fn attached(&self) -> Result<Vec<u32>, MapsError>;
    /// Attaches both programs to `ifindex` and sets its SNAT addresses.
    fn attach(
        &mut self,
        ifindex: u32,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<(), MapsError>;
    /// Detaches from `ifindex`.
    fn detach(&mut self, ifindex: u32) -> Result<(), MapsError>;
    /// Masquerade switches and CIDR sets.
    fn set_masquerade(&mut self, m: &datapath::lb::MasqConfig) -> Result<(), MapsError>;
    /// Turns the egress gateway on through the tunnel device, or off.
    fn set_egress_tunnel(
        &mut self,
        tunnel: Option<datapath::lb::EgressTunnel>,
    ) -> Result<(), MapsError>;
    /// Makes the egress policy map hold exactly `rules`.
    fn sync_egress(
        &mut self,
        rules: &[datapath::lb::EgressRule],
    ) -> Result<datapath::lb::EgressSync, MapsError>;
}

/// `Some(empty)` source ranges deny everyone: the datapath has no "deny all" entry, so the
/// allow-list gets the one prefix no client can come from (the unspecified address).
fn ranges_for(frontend: IpAddr, r: &Option<Vec<IpNet>>) -> Vec<IpNet> {
    match r {
        None => Vec::new(),
        Some(v) if v.is_empty() => {
            let unspecified = match frontend {
                IpAddr::V4(_) => IpNet::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                IpAddr::V6(_) => IpNet::from(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            };
            vec![unspecified]
        }
        Some(v) => v.clone(),
    }
}

/// The real datapath.
#[derive(Debug)]
pub struct DatapathMaps {
    pub lb: datapath::lb::ServiceLb,
}

impl DatapathMaps {
    /// The error's description is only formatted when there is an error (formatting it for
    /// every write cost a full programming an allocation per map operation).
    fn err<W: Into<String>>(what: impl FnOnce() -> W) -> impl FnOnce(datapath::Error) -> MapsError {
        move |source| MapsError {
            what: what().into(),
            source,
        }
    }
}

impl LbMaps for DatapathMaps {
    fn apply(&mut self, op: &Op) -> Result<(), MapsError> {
        match op {
            Op::UpsertBackend {
                id: BackendId(id),
                value,
            } => self
                .lb
                .upsert_backend(datapath::lb::BackendId(*id), value)
                .map_err(Self::err(|| format!("writing backend {id}"))),
            Op::UpsertService {
                frontend,
                value:
                    ServiceValue {
                        id: ServiceId(id),
                        local_only,
                        affinity_timeout,
                        source_ranges,
                        lut,
                        ..
                    },
            } => {
                let ranges = ranges_for(frontend.addr, source_ranges);
                self.lb
                    .upsert_service(
                        frontend,
                        &datapath::lb::ServiceEntry {
                            id: *id,
                            local_only: *local_only,
                            affinity_timeout: *affinity_timeout,
                            lut,
                            source_ranges: &ranges,
                        },
                    )
                    .map_err(Self::err(|| format!("writing frontend {frontend}")))
            }
            Op::DeleteService { frontend, .. } => self
                .lb
                .delete_service(frontend)
                .map_err(Self::err(|| format!("removing frontend {frontend}"))),
            Op::DeleteBackend { id: BackendId(id) } => self
                .lb
                .delete_backend(datapath::lb::BackendId(*id))
                .map_err(Self::err(|| format!("removing backend {id}"))),
        }
    }

    fn restore(&mut self) -> Result<Restored, MapsError> {
        let services = self
            .lb
            .services()
            .map_err(Self::err(|| "reading the services map"))?
            .into_iter()
            .map(|d| (d.frontend, d.id))
            .collect();
        let backends = self
            .lb
            .backends()
            .map_err(Self::err(|| "reading the backends map"))?
            .into_iter()
            .map(|(id, b)| (b.backend(), id.0))
            .collect();
        Ok((services, backends))
    }

    fn attached(&self) -> Result<Vec<u32>, MapsError> {
        self.lb
            .attached()
            .map_err(Self::err(|| "listing attached interfaces"))
    }

    fn attach(
        &mut self,
        ifindex: u32,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<(), MapsError> {
        self.lb
            .attach(ifindex)
            .map_err(Self::err(|| format!("attaching to ifindex {ifindex}")))?;
        self.lb
            .set_device(ifindex, datapath::lb::DeviceAddrs { v4, v6 })
            .map_err(Self::err(|| {
                format!("setting the addresses of ifindex {ifindex}")
            }))
    }

    fn detach(&mut self, ifindex: u32) -> Result<(), MapsError> {
        self.lb
            .detach(ifindex)
            .map_err(Self::err(|| format!("detaching from ifindex {ifindex}")))
    }

    fn set_masquerade(&mut self, m: &datapath::lb::MasqConfig) -> Result<(), MapsError> {
        self.lb
            .set_masquerade(m)
            .map_err(Self::err(|| "setting masquerade"))
    }

    fn set_egress_tunnel(
        &mut self,
        tunnel: Option<datapath::lb::EgressTunnel>,
    ) -> Result<(), MapsError> {
        self.lb
            .set_egress_tunnel(tunnel)
            .map_err(Self::err(|| "setting the egress gateway's tunnel"))
    }

    fn sync_egress(
        &mut self,
        rules: &[datapath::lb::EgressRule],
    ) -> Result<datapath::lb::EgressSync, MapsError> {
        self.lb
            .sync_egress(rules)
            .map_err(Self::err(|| "writing the egress gateway policy map"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_allow_list_denies_everyone_of_its_family() {
        let v4: IpAddr = "192.0.2.1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(ranges_for(v4, &None).is_empty());
        assert_eq!(
            ranges_for(v4, &Some(Vec::new())),
            vec!["0.0.0.0/32".parse::<IpNet>().unwrap_or_default()]
        );
        let v6: IpAddr = "2001:db8::1"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            ranges_for(v6, &Some(Vec::new())),
            vec!["::/128".parse::<IpNet>().unwrap_or_default()]
        );
    }
}
