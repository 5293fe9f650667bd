//! [`FakeHost`]: an in-memory [`Host`] for controller tests.
//!
//! It keeps links, addresses, routes and neighbours in tables, answers writes with the kernel's
//! idempotency rules (add of an existing object: [`WriteOutcome::AlreadyPresent`], delete of a
//! missing one: [`WriteOutcome::AlreadyAbsent`], an unknown interface: `ENODEV`), and drives
//! every [`HostWatch`] it handed out exactly as the monitor does: the state is published after
//! each change, and the link callback hears every up/down change and removal.
//!
//! Callbacks run inside the fake's lock, synchronously with the mutation: they must not call
//! back into the fake (sending on a channel, as `NodeSender::link` does, is fine).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ipnet::IpNet;
use tokio::sync::watch;

use crate::Host;
use crate::error::{HostError, Operation};
use crate::monitor::{HostWatch, MonitorConfig};
use crate::state::LinkReporter;
use crate::types::{
    Address, DefaultGateways, HostState, Link, LinkCallback, Neighbour, Route, RouteFilter,
    RouteProtocol, RouteRequest, WriteOutcome,
};

/// IPv6 routes written with metric 0 get this one, as in the kernel.
const IP6_RT_PRIO_USER: u32 = 1024;

/// A write the fake received, for tests that check what a controller did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeWrite {
    AddressAdd(Address),
    AddressDel(Address),
    Route(RouteRequest),
    NeighbourAdd(Neighbour),
    NeighbourReplace(Neighbour),
    NeighbourDel(u32, IpAddr),
}

/// An in-memory host. Clones share the same tables.
#[derive(Debug, Clone, Default)]
pub struct FakeHost {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    links: BTreeMap<u32, Link>,
    addresses: BTreeMap<(u32, IpNet), Address>,
    routes: Vec<Route>,
    neighbours: BTreeMap<(u32, IpAddr), Neighbour>,
    subscribers: Vec<Subscriber>,
    failures: Vec<(Operation, i32)>,
    writes: Vec<FakeWrite>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("links", &self.links)
            .field("addresses", &self.addresses)
            .field("routes", &self.routes)
            .field("neighbours", &self.neighbours)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

struct Subscriber {
    tx: watch::Sender<HostState>,
    on_link: LinkCallback,
    reporter: LinkReporter,
    neighbours: bool,
}

/// A route's identity in a table: (table, destination, metric).
fn same_route(a: &Route, b: &Route) -> bool {
    a.table == b.table && a.destination == b.destination && a.metric == b.metric
}

/// Whether a delete request `del` names `route` (metric 0 and protocol unspec are wildcards,
/// next hops narrow the match when given), as the kernel matches deletes.
fn delete_matches(del: &Route, route: &Route) -> bool {
    del.table == route.table
        && del.destination == route.destination
        && (del.metric == 0 || del.metric == route.metric)
        && (del.protocol == RouteProtocol::UNSPEC || del.protocol == route.protocol)
        && (del.next_hops.is_empty() || del.next_hops == route.next_hops)
}

fn normalise(route: &Route) -> Route {
    let mut r = route.clone();
    if !r.is_ipv4() && r.metric == 0 {
        r.metric = IP6_RT_PRIO_USER;
    }
    r
}

impl Inner {
    fn state(&self, neighbours: bool) -> HostState {
        HostState {
            links: self.links.clone(),
            addresses: self.addresses.values().cloned().collect(),
            default_gateways: DefaultGateways::from_routes(&self.routes),
            neighbours: if neighbours {
                self.neighbours.values().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Publishes to every live subscriber and reports link changes.
    fn notify(&mut self) {
        let full = self.state(true);
        let bare = HostState {
            neighbours: Vec::new(),
            ..full.clone()
        };
        self.subscribers.retain(|s| !s.tx.is_closed());
        for s in &mut self.subscribers {
            let state = if s.neighbours { &full } else { &bare };
            s.tx.send_if_modified(|current| {
                let changed = current != state;
                if changed {
                    current.clone_from(state);
                }
                changed
            });
            for change in s.reporter.diff(&full.links) {
                (s.on_link)(&change);
            }
        }
    }

    /// A programmed failure for `op`, if any (each fires once).
    fn failure(&mut self, op: Operation, target: impl std::fmt::Display) -> Result<(), HostError> {
        match self.failures.iter().position(|(o, _)| *o == op) {
            Some(pos) => {
                let (_, errno) = self.failures.remove(pos);
                Err(HostError::kernel(op, target, errno))
            }
            None => Ok(()),
        }
    }

    fn need_link(
        &self,
        op: Operation,
        ifindex: u32,
        target: impl std::fmt::Display,
    ) -> Result<(), HostError> {
        if self.links.contains_key(&ifindex) {
            Ok(())
        } else {
            Err(HostError::kernel(op, target, libc::ENODEV))
        }
    }

    fn route(&mut self, req: &RouteRequest) -> Result<WriteOutcome, HostError> {
        let (op, route) = match req {
            RouteRequest::Add(r) => (Operation::RouteAdd, r),
            RouteRequest::Replace(r) => (Operation::RouteReplace, r),
            RouteRequest::Delete(r) => (Operation::RouteDel, r),
        };
        // Validation as for the real request.
        crate::convert::route_message(route, matches!(req, RouteRequest::Delete(_)))?;
        self.failure(op, route)?;
        if !matches!(req, RouteRequest::Delete(_)) {
            for ifindex in route.next_hops.iter().filter_map(|h| h.ifindex) {
                self.need_link(op, ifindex, route)?;
            }
        }
        self.writes.push(FakeWrite::Route(req.clone()));
        let outcome = match req {
            RouteRequest::Add(r) | RouteRequest::Replace(r) => {
                let r = normalise(r);
                match self.routes.iter().position(|x| same_route(x, &r)) {
                    Some(_) if matches!(req, RouteRequest::Add(_)) => WriteOutcome::AlreadyPresent,
                    Some(pos) => {
                        if let Some(slot) = self.routes.get_mut(pos) {
                            *slot = r;
                        }
                        WriteOutcome::Applied
                    }
                    None => {
                        self.routes.push(r);
                        WriteOutcome::Applied
                    }
                }
            }
            RouteRequest::Delete(r) => {
                match self.routes.iter().position(|x| delete_matches(r, x)) {
                    Some(pos) => {
                        self.routes.remove(pos);
                        WriteOutcome::Applied
                    }
                    None => WriteOutcome::AlreadyAbsent,
                }
            }
        };
        Ok(outcome)
    }
}

impl FakeHost {
    /// An empty host (not even `lo`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves consistent enough tables.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to the tables, then publishes.
    fn mutate<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self.lock();
        let out = f(&mut inner);
        inner.notify();
        out
    }

    /// Adds or replaces a link (by index).
    pub fn set_link(&self, link: Link) {
        self.mutate(|i| {
            i.links.insert(link.ifindex, link);
        });
    }

    /// Changes one link in place; `false` if there is no such link.
    pub fn update_link(&self, ifindex: u32, f: impl FnOnce(&mut Link)) -> bool {
        self.mutate(|i| i.links.get_mut(&ifindex).map(f).is_some())
    }

    /// Sets a link's carrier (`IFF_LOWER_UP`); `false` if there is no such link.
    pub fn set_carrier(&self, ifindex: u32, up: bool) -> bool {
        self.update_link(ifindex, |l| l.lower_up = up)
    }

    /// Sets a link's administrative state (`IFF_UP`); `false` if there is no such link.
    pub fn set_admin_up(&self, ifindex: u32, up: bool) -> bool {
        self.update_link(ifindex, |l| l.admin_up = up)
    }

    /// Removes a link with its addresses, neighbours and the routes through it, as the kernel
    /// does.
    pub fn remove_link(&self, ifindex: u32) -> bool {
        self.mutate(|i| {
            let gone = i.links.remove(&ifindex).is_some();
            i.addresses.retain(|(x, _), _| *x != ifindex);
            i.neighbours.retain(|(x, _), _| *x != ifindex);
            i.routes
                .retain(|r| !r.next_hops.iter().any(|h| h.ifindex == Some(ifindex)));
            gone
        })
    }

    /// Adds or replaces a route (as the kernel's own routes appear, without a write record).
    pub fn set_route(&self, route: Route) {
        self.mutate(|i| {
            let route = normalise(&route);
            i.routes.retain(|r| !same_route(r, &route));
            i.routes.push(route);
        });
    }

    /// Removes routes matching `route` as a delete would; whether any was there.
    pub fn remove_route(&self, route: &Route) -> bool {
        self.mutate(|i| {
            let before = i.routes.len();
            i.routes.retain(|r| !delete_matches(route, r));
            i.routes.len() != before
        })
    }

    /// Adds or replaces an address (without a write record).
    pub fn set_address(&self, address: Address) {
        self.mutate(|i| {
            i.addresses.insert((address.ifindex, address.addr), address);
        });
    }

    /// Removes an address (without a write record); whether it was there.
    pub fn remove_address(&self, ifindex: u32, addr: IpNet) -> bool {
        self.mutate(|i| i.addresses.remove(&(ifindex, addr)).is_some())
    }

    /// Adds or replaces a neighbour entry (as the kernel learns them).
    pub fn set_neighbour(&self, neighbour: Neighbour) {
        self.mutate(|i| {
            i.neighbours
                .insert((neighbour.ifindex, neighbour.ip), neighbour);
        });
    }

    /// Makes the next write of kind `op` fail with `errno` (queued: several calls fail several
    /// writes).
    pub fn fail_next(&self, op: Operation, errno: i32) {
        self.lock().failures.push((op, errno));
    }

    /// Takes the record of writes received so far (refused writes are not recorded).
    #[must_use]
    pub fn take_writes(&self) -> Vec<FakeWrite> {
        std::mem::take(&mut self.lock().writes)
    }

    /// The current state, neighbours included.
    #[must_use]
    pub fn current_state(&self) -> HostState {
        self.lock().state(true)
    }

    /// The current routes of every table.
    #[must_use]
    pub fn current_routes(&self) -> Vec<Route> {
        self.lock().routes.clone()
    }
}

struct AddrTarget<'a>(&'a Address);

impl std::fmt::Display for AddrTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on ifindex {}", self.0.addr, self.0.ifindex)
    }
}

impl Host for FakeHost {
    async fn links(&self) -> Result<Vec<Link>, HostError> {
        Ok(self.lock().links.values().cloned().collect())
    }

    async fn addresses(&self) -> Result<Vec<Address>, HostError> {
        Ok(self.lock().addresses.values().cloned().collect())
    }

    async fn routes(&self, filter: RouteFilter) -> Result<Vec<Route>, HostError> {
        Ok(self
            .lock()
            .routes
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect())
    }

    async fn neighbours(&self) -> Result<Vec<Neighbour>, HostError> {
        Ok(self.lock().neighbours.values().cloned().collect())
    }

    async fn address_add(&self, address: &Address) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| {
            let op = Operation::AddressAdd;
            i.failure(op, AddrTarget(address))?;
            i.need_link(op, address.ifindex, AddrTarget(address))?;
            i.writes.push(FakeWrite::AddressAdd(address.clone()));
            let key = (address.ifindex, address.addr);
            if i.addresses.contains_key(&key) {
                return Ok(WriteOutcome::AlreadyPresent);
            }
            i.addresses.insert(key, address.clone());
            Ok(WriteOutcome::Applied)
        })
    }

    async fn address_del(&self, address: &Address) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| {
            let op = Operation::AddressDel;
            i.failure(op, AddrTarget(address))?;
            i.need_link(op, address.ifindex, AddrTarget(address))?;
            i.writes.push(FakeWrite::AddressDel(address.clone()));
            Ok(match i.addresses.remove(&(address.ifindex, address.addr)) {
                Some(_) => WriteOutcome::Applied,
                None => WriteOutcome::AlreadyAbsent,
            })
        })
    }

    async fn route_add(&self, route: &Route) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| i.route(&RouteRequest::Add(route.clone())))
    }

    async fn route_replace(&self, route: &Route) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| i.route(&RouteRequest::Replace(route.clone())))
    }

    async fn route_del(&self, route: &Route) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| i.route(&RouteRequest::Delete(route.clone())))
    }

    async fn apply_routes(
        &self,
        requests: &[RouteRequest],
    ) -> Vec<Result<WriteOutcome, HostError>> {
        self.mutate(|i| requests.iter().map(|r| i.route(r)).collect())
    }

    async fn neighbour_add(&self, neighbour: &Neighbour) -> Result<WriteOutcome, HostError> {
        self.neighbour_write(neighbour, false)
    }

    async fn neighbour_replace(&self, neighbour: &Neighbour) -> Result<WriteOutcome, HostError> {
        self.neighbour_write(neighbour, true)
    }

    async fn neighbour_del(&self, ifindex: u32, ip: IpAddr) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| {
            let op = Operation::NeighbourDel;
            let target = format!("{ip} on ifindex {ifindex}");
            i.failure(op, &target)?;
            i.need_link(op, ifindex, &target)?;
            i.writes.push(FakeWrite::NeighbourDel(ifindex, ip));
            Ok(match i.neighbours.remove(&(ifindex, ip)) {
                Some(_) => WriteOutcome::Applied,
                None => WriteOutcome::AlreadyAbsent,
            })
        })
    }

    async fn watch(
        &self,
        config: MonitorConfig,
        mut on_link: LinkCallback,
    ) -> Result<HostWatch, HostError> {
        let mut inner = self.lock();
        let mut reporter = LinkReporter::default();
        for change in reporter.diff(&inner.links) {
            on_link(&change);
        }
        let (tx, rx) = watch::channel(inner.state(config.neighbours));
        inner.subscribers.push(Subscriber {
            tx,
            on_link,
            reporter,
            neighbours: config.neighbours,
        });
        Ok(HostWatch::new(rx, None, Default::default()))
    }
}

impl FakeHost {
    fn neighbour_write(
        &self,
        neighbour: &Neighbour,
        replace: bool,
    ) -> Result<WriteOutcome, HostError> {
        self.mutate(|i| {
            let op = if replace {
                Operation::NeighbourReplace
            } else {
                Operation::NeighbourAdd
            };
            let target = format!("{} on ifindex {}", neighbour.ip, neighbour.ifindex);
            i.failure(op, &target)?;
            i.need_link(op, neighbour.ifindex, &target)?;
            i.writes.push(if replace {
                FakeWrite::NeighbourReplace(neighbour.clone())
            } else {
                FakeWrite::NeighbourAdd(neighbour.clone())
            });
            let key = (neighbour.ifindex, neighbour.ip);
            if !replace && i.neighbours.contains_key(&key) {
                return Ok(WriteOutcome::AlreadyPresent);
            }
            i.neighbours.insert(key, neighbour.clone());
            Ok(WriteOutcome::Applied)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::types::{LinkChange, LinkKind, MacAddr, NeighbourState, NextHop};

    fn link(ifindex: u32, name: &str) -> Link {
        Link {
            ifindex,
            name: name.into(),
            kind: LinkKind::Ether,
            admin_up: true,
            lower_up: true,
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            mtu: Some(1500),
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn callback() -> (LinkCallback, mpsc::Receiver<LinkChange>) {
        let (tx, rx) = mpsc::channel();
        (
            Box::new(move |c: &LinkChange| {
                let _ = tx.send(c.clone());
            }),
            rx,
        )
    }

    #[tokio::test]
    async fn watch_follows_links_addresses_and_gateways() {
        let host = FakeHost::new();
        host.set_link(link(1, "eth0"));
        host.set_link(Link {
            lower_up: false,
            ..link(2, "eth1")
        });
        let (cb, links) = callback();
        let mut w = host
            .watch(MonitorConfig::default(), cb)
            .await
            .expect("fake watch");
        let first: Vec<_> = links.try_iter().map(|c| (c.ifindex, c.up)).collect();
        assert_eq!(first, vec![(1, true), (2, false)]);

        // Carrier: reported at once and published.
        assert!(host.set_carrier(1, false));
        assert_eq!(
            links
                .try_iter()
                .map(|c| (c.ifindex, c.up))
                .collect::<Vec<_>>(),
            vec![(1, false)]
        );
        w.changed().await.expect("published");
        assert!(!w.borrow().links[&1].lower_up);
        // A change that is no up/down change: published, not reported.
        host.update_link(1, |l| l.mtu = Some(9000));
        w.changed().await.expect("published");
        assert_eq!(links.try_iter().count(), 0);

        // Address and default route writes show up in the watch.
        let a = Address::new(1, net("10.0.0.1/24"));
        assert_eq!(host.address_add(&a).await.ok(), Some(WriteOutcome::Applied));
        w.changed().await.expect("published");
        assert_eq!(w.state().interfaces()["eth0"], vec![ip("10.0.0.1")]);
        let default = Route::new(net("0.0.0.0/0")).via(ip("10.0.0.254"));
        assert_eq!(
            host.route_replace(&default).await.ok(),
            Some(WriteOutcome::Applied)
        );
        w.changed().await.expect("published");
        assert_eq!(w.borrow().default_gateways.v4, Some(ip("10.0.0.254")));
        assert!(host.remove_route(&Route::new(net("0.0.0.0/0"))));
        w.changed().await.expect("published");
        assert_eq!(w.borrow().default_gateways.v4, None);

        // Removal: reported, and the link's addresses go.
        assert!(host.remove_link(1));
        let gone: Vec<_> = links.try_iter().collect();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].removed && !gone[0].up);
        w.changed().await.expect("published");
        assert!(w.borrow().addresses.is_empty());

        // A dropped watch is forgotten at the next change.
        drop(w);
        host.set_link(link(3, "eth2"));
        assert_eq!(host.lock().subscribers.len(), 0);
    }

    #[tokio::test]
    async fn writes_are_idempotent_and_failures_programmable() {
        let host = FakeHost::new();
        host.set_link(link(1, "eth0"));
        let a = Address::new(1, net("10.0.0.1/24"));
        assert_eq!(host.address_add(&a).await.ok(), Some(WriteOutcome::Applied));
        assert_eq!(
            host.address_add(&a).await.ok(),
            Some(WriteOutcome::AlreadyPresent)
        );
        assert_eq!(host.address_del(&a).await.ok(), Some(WriteOutcome::Applied));
        assert_eq!(
            host.address_del(&a).await.ok(),
            Some(WriteOutcome::AlreadyAbsent)
        );
        let e = host
            .address_add(&Address::new(9, net("10.0.0.1/24")))
            .await
            .expect_err("no such link");
        assert_eq!(e.errno(), Some(libc::ENODEV));

        let r = Route::new(net("10.1.0.0/24"))
            .via(ip("10.0.0.2"))
            .in_table(100);
        assert_eq!(host.route_add(&r).await.ok(), Some(WriteOutcome::Applied));
        let other_hop = Route::new(net("10.1.0.0/24"))
            .via(ip("10.0.0.3"))
            .in_table(100);
        assert_eq!(
            host.route_add(&other_hop).await.ok(),
            Some(WriteOutcome::AlreadyPresent)
        );
        assert_eq!(
            host.route_replace(&other_hop).await.ok(),
            Some(WriteOutcome::Applied)
        );
        assert_eq!(
            host.routes(RouteFilter::table(100)).await.expect("routes"),
            vec![other_hop.clone()]
        );
        assert_eq!(
            host.route_del(&r).await.ok(),
            Some(WriteOutcome::AlreadyAbsent),
            "other next hop"
        );
        let any = Route::new(net("10.1.0.0/24")).in_table(100);
        assert_eq!(host.route_del(&any).await.ok(), Some(WriteOutcome::Applied));
        assert_eq!(
            host.route_del(&any).await.ok(),
            Some(WriteOutcome::AlreadyAbsent)
        );
        // IPv6 metric 0 becomes 1024, as in the kernel.
        let v6 = Route::new(net("2001:db8::/32")).via(ip("fe80::1"));
        host.route_add(&v6).await.expect("add");
        assert_eq!(host.current_routes()[0].metric, 1024);
        // Invalid requests are refused before anything else.
        let bad = Route::new(net("2001:db8::/32")).via(ip("10.0.0.1"));
        assert!(matches!(
            host.route_add(&bad).await,
            Err(HostError::GatewayFamily { .. })
        ));
        let dev = Route {
            next_hops: vec![NextHop::dev(7)],
            ..Route::new(net("10.7.0.0/24"))
        };
        assert_eq!(
            host.route_add(&dev).await.expect_err("no link 7").errno(),
            Some(libc::ENODEV)
        );

        host.fail_next(Operation::RouteReplace, libc::ENETUNREACH);
        let e = host.route_replace(&r).await.expect_err("programmed");
        assert_eq!(e.errno(), Some(libc::ENETUNREACH));
        assert_eq!(
            host.route_replace(&r).await.ok(),
            Some(WriteOutcome::Applied)
        );

        let batch = host
            .apply_routes(&[
                RouteRequest::Delete(any.clone()),
                RouteRequest::Delete(any.clone()),
            ])
            .await;
        let outcomes: Vec<_> = batch.into_iter().map(Result::ok).collect();
        assert_eq!(
            outcomes,
            vec![
                Some(WriteOutcome::Applied),
                Some(WriteOutcome::AlreadyAbsent)
            ]
        );

        let n = Neighbour {
            ifindex: 1,
            ip: ip("10.0.0.2"),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
            state: NeighbourState::Permanent,
        };
        assert_eq!(
            host.neighbour_add(&n).await.ok(),
            Some(WriteOutcome::Applied)
        );
        assert_eq!(
            host.neighbour_add(&n).await.ok(),
            Some(WriteOutcome::AlreadyPresent)
        );
        assert_eq!(
            host.neighbour_replace(&n).await.ok(),
            Some(WriteOutcome::Applied)
        );
        assert_eq!(
            host.neighbour_del(1, n.ip).await.ok(),
            Some(WriteOutcome::Applied)
        );
        assert_eq!(
            host.neighbour_del(1, n.ip).await.ok(),
            Some(WriteOutcome::AlreadyAbsent)
        );

        let writes = host.take_writes();
        assert!(writes.contains(&FakeWrite::Route(RouteRequest::Add(r.clone()))));
        assert!(
            !writes
                .iter()
                .any(|w| matches!(w, FakeWrite::Route(RouteRequest::Add(x)) if *x == bad))
        );
        assert!(host.take_writes().is_empty());
    }
}
