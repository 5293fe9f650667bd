//! rackd's host layer: links, addresses, routes and neighbours over rtnetlink.
//!
//! - [`Host`]: the reads and writes controllers need, as a trait, so a controller is tested
//!   against [`FakeHost`] and runs against [`NetlinkHost`].
//! - [`NetlinkHost`]: rtnetlink with strict checking; dumps and single writes on one
//!   connection, batched route writes ([`Host::apply_routes`]) on a raw socket.
//! - [`monitor`]: one task following the kernel's notifications, publishing [`HostState`]
//!   through a `tokio::sync::watch` channel and every link up/down change through a
//!   [`LinkCallback`] at once; [`Host::watch`] starts it (the fake drives the same
//!   [`HostWatch`]).
//! - [`convert`]: the pure conversions between netlink messages and this crate's values.
//! - [`nd`]: the router at the other end of a link, by its IPv6 link-local address (BGP
//!   unnumbered peering).
//!
//! This crate knows nothing of rackd or bgpd; see README.md for the design.

mod batch;
pub mod convert;
mod error;
pub mod fake;
pub mod monitor;
pub mod nd;
mod netlink;
mod state;
pub mod tunnel;
mod types;

use std::future::Future;
use std::net::IpAddr;

pub use error::{HostError, Operation};
pub use fake::{FakeHost, FakeWrite};
pub use monitor::{HostWatch, MonitorConfig};
pub use netlink::NetlinkHost;
pub use tunnel::VxlanSpec;
pub use types::{
    Address, DefaultGateways, HostState, Link, LinkCallback, LinkChange, LinkKind, MacAddr,
    Neighbour, NeighbourState, NextHop, ParseMacError, RT_TABLE_LOCAL, RT_TABLE_MAIN, Route,
    RouteFilter, RouteKind, RouteProtocol, RouteRequest, Scope, WriteOutcome,
};

/// The host's network configuration: what controllers read and write.
///
/// Writes are idempotent where the kernel lets them be: an add of something present answers
/// [`WriteOutcome::AlreadyPresent`], a delete of something absent
/// [`WriteOutcome::AlreadyAbsent`]; every other refusal is [`HostError::Kernel`] with the
/// errno.
pub trait Host: Send + Sync + 'static {
    /// Every link.
    fn links(&self) -> impl Future<Output = Result<Vec<Link>, HostError>> + Send;

    /// Every IPv4 and IPv6 address of every link.
    fn addresses(&self) -> impl Future<Output = Result<Vec<Address>, HostError>> + Send;

    /// The IPv4 and IPv6 routes `filter` selects.
    fn routes(
        &self,
        filter: RouteFilter,
    ) -> impl Future<Output = Result<Vec<Route>, HostError>> + Send;

    /// Every ARP and NDP neighbour entry.
    fn neighbours(&self) -> impl Future<Output = Result<Vec<Neighbour>, HostError>> + Send;

    /// The default gateway of each family, from the main table.
    fn default_gateways(&self) -> impl Future<Output = Result<DefaultGateways, HostError>> + Send {
        async move {
            let filter = RouteFilter {
                kind: Some(RouteKind::Unicast),
                ..RouteFilter::main()
            };
            Ok(DefaultGateways::from_routes(&self.routes(filter).await?))
        }
    }

    /// Links, addresses and default gateways read once (no neighbours), for callers that do
    /// not keep a [`HostWatch`].
    fn snapshot(&self) -> impl Future<Output = Result<HostState, HostError>> + Send {
        async move {
            let links = self.links().await?;
            let mut addresses = self.addresses().await?;
            addresses.sort();
            Ok(HostState {
                links: links.into_iter().map(|l| (l.ifindex, l)).collect(),
                addresses,
                default_gateways: self.default_gateways().await?,
                neighbours: Vec::new(),
            })
        }
    }

    /// `ip address add`.
    fn address_add(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// `ip address del` (by link, address and prefix length).
    fn address_del(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// `ip route add`.
    fn route_add(
        &self,
        route: &Route,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// `ip route replace`.
    fn route_replace(
        &self,
        route: &Route,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// `ip route del`; see [`RouteRequest::Delete`] for what is matched.
    fn route_del(
        &self,
        route: &Route,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// Many route writes at once, in order, one result each (for [`NetlinkHost`]: 128
    /// requests per `sendmsg` instead of a round trip each).
    fn apply_routes(
        &self,
        requests: &[RouteRequest],
    ) -> impl Future<Output = Vec<Result<WriteOutcome, HostError>>> + Send;

    /// `ip neighbour add`.
    fn neighbour_add(
        &self,
        neighbour: &Neighbour,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// `ip neighbour replace`.
    fn neighbour_replace(
        &self,
        neighbour: &Neighbour,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// `ip neighbour del`.
    fn neighbour_del(
        &self,
        ifindex: u32,
        ip: IpAddr,
    ) -> impl Future<Output = Result<WriteOutcome, HostError>> + Send;

    /// Starts watching: `on_link` is called once per link before this returns, then on every
    /// up/down change and removal; the returned [`HostWatch`] follows [`HostState`].
    fn watch(
        &self,
        config: MonitorConfig,
        on_link: LinkCallback,
    ) -> impl Future<Output = Result<HostWatch, HostError>> + Send;
}
