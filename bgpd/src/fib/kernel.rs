//! The kernel half of FIB import, over the `rackd-host` crate: the route requests for an
//! operation, one batch of them (rackd-host's batched writer: 128 requests per `sendmsg`,
//! acknowledgements matched by sequence number), the start-up dump.

use std::net::IpAddr;

use ipnet::IpNet;
use rackd_host::{
    Host, HostError, NetlinkHost, NextHop, Route, RouteFilter, RouteKind, RouteProtocol,
    RouteRequest, Scope, WriteOutcome,
};

use super::table::{FibOp, Installed, OpOutcome};
use super::{FibError, FibNextHop};

/// Our side of the host: which table and protocol our routes live under.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    host: NetlinkHost,
    ours: Ours,
}

/// Which table and protocol our routes live under (the pure half of [`Kernel`]).
#[derive(Debug, Clone, Copy)]
struct Ours {
    table: u32,
    protocol: u8,
}

impl Kernel {
    /// Opens the host's rtnetlink sockets with strict checking (`NETLINK_GET_STRICT_CHK`: the
    /// kernel filters dumps by table and protocol and rejects attributes it does not
    /// understand instead of ignoring them) on the current tokio runtime.
    pub(crate) fn connect(table: u32, protocol: u8) -> Result<Self, FibError> {
        let host = NetlinkHost::connect().map_err(|e| match e {
            HostError::Socket { source, .. } => FibError::Socket(source),
            other => FibError::Socket(std::io::Error::other(other)),
        })?;
        Ok(Self {
            host,
            ours: Ours { table, protocol },
        })
    }

    /// Applies a batch in order (netlink handles one socket's requests in order, and a batch
    /// holds one operation per prefix); one result per operation.
    pub(crate) async fn apply(&self, ops: Vec<FibOp>) -> Vec<(FibOp, OpOutcome, Option<FibError>)> {
        let mut requests: Vec<RouteRequest> = Vec::with_capacity(ops.len());
        // Per operation: how many requests it has, or why it has none.
        let mut planned = Vec::with_capacity(ops.len());
        for op in ops {
            match self.ours.requests(&op) {
                Ok(reqs) => {
                    planned.push((op, Ok(reqs.len())));
                    requests.extend(reqs);
                }
                Err(e) => planned.push((op, Err(e))),
            }
        }
        let results = self.host.apply_routes(&requests).await;
        let mut answers = requests.iter().zip(results);
        planned
            .into_iter()
            .map(|(op, plan)| match plan {
                Err(e) => (op, OpOutcome::Failed, Some(e)),
                Ok(n) => {
                    let (outcome, err) = combine(&op, n, answers.by_ref().take(n));
                    (op, outcome, err)
                }
            })
            .collect()
    }

    /// Our routes in our table, both families: what a previous run left behind.
    pub(crate) async fn dump(&self) -> Result<Vec<(IpNet, Installed)>, FibError> {
        let Ours { table, protocol } = self.ours;
        let filter = RouteFilter {
            table: Some(table),
            protocol: Some(RouteProtocol(protocol)),
            kind: Some(RouteKind::Unicast),
        };
        let routes = self.host.routes(filter).await.map_err(|e| match e {
            HostError::Kernel { source, .. } => FibError::Dump { table, source },
            other => FibError::Request { source: other },
        })?;
        Ok(routes.iter().filter_map(|r| self.ours.parse(r)).collect())
    }
}

impl Ours {
    /// Our route for `prefix` under `metric`, without next hops yet.
    fn route(&self, prefix: &IpNet, metric: u32) -> Route {
        Route {
            destination: *prefix,
            table: self.table,
            protocol: RouteProtocol(self.protocol),
            kind: RouteKind::Unicast,
            scope: Scope::Universe,
            metric,
            preferred_source: None,
            next_hops: Vec::new(),
        }
    }

    /// The requests for one operation (two when a replace must first delete a route under
    /// another metric).
    fn requests(&self, op: &FibOp) -> Result<Vec<RouteRequest>, FibError> {
        match op {
            FibOp::Delete { prefix, metric } => {
                Ok(vec![RouteRequest::Delete(self.route(prefix, *metric))])
            }
            FibOp::Replace {
                prefix,
                next_hops,
                metric,
                delete_metric,
            } => {
                if next_hops.is_empty() {
                    return Err(FibError::NoNextHop { prefix: *prefix });
                }
                let mut route = self.route(prefix, *metric);
                for nh in next_hops {
                    // IPv4 routes may have IPv6 next hops (RFC 8950), not the reverse.
                    if matches!((prefix, nh.addr), (IpNet::V6(_), IpAddr::V4(_))) {
                        return Err(FibError::UnsupportedNextHop {
                            prefix: *prefix,
                            next_hop: nh.addr,
                        });
                    }
                    route.next_hops.push(NextHop {
                        gateway: Some(nh.addr),
                        ifindex: nh.ifindex,
                    });
                }
                let mut out = Vec::with_capacity(2);
                if let Some(old) = delete_metric {
                    out.push(RouteRequest::Delete(self.route(prefix, *old)));
                }
                out.push(RouteRequest::Replace(route));
                Ok(out)
            }
        }
    }

    /// One dumped route, if it is ours (the strict-check filter is trusted but verified).
    fn parse(&self, route: &Route) -> Option<(IpNet, Installed)> {
        if route.protocol != RouteProtocol(self.protocol)
            || route.kind != RouteKind::Unicast
            || route.table != self.table
        {
            return None;
        }
        // Our routes always have gateways; one without is not something we installed.
        let next_hops: Vec<FibNextHop> = route
            .next_hops
            .iter()
            .filter_map(|h| Some(dumped_next_hop(h.gateway?, h.ifindex)))
            .collect();
        if next_hops.is_empty() {
            return None;
        }
        Some((
            route.destination,
            Installed {
                next_hops,
                metric: route.metric,
            },
        ))
    }
}

/// One operation's outcome from the answers to its `expected` requests: the first refusal
/// fails it (a delete of a route already gone does not, also for the delete before a
/// replace); a delete that found nothing is [`OpOutcome::AlreadyGone`]; a request left
/// unanswered is an I/O failure (retried later).
fn combine<'a>(
    op: &FibOp,
    expected: usize,
    answers: impl Iterator<Item = (&'a RouteRequest, Result<WriteOutcome, HostError>)>,
) -> (OpOutcome, Option<FibError>) {
    let mut outcome = OpOutcome::Done;
    let mut err = None;
    let mut last_absent = false;
    let mut answered = 0;
    for (req, answer) in answers {
        answered += 1;
        last_absent = false;
        let error = match answer {
            Ok(WriteOutcome::AlreadyAbsent) => {
                last_absent = true;
                continue;
            }
            Ok(_) => continue,
            Err(HostError::Kernel { source, .. }) => FibError::Kernel {
                op: if matches!(req, RouteRequest::Delete(_)) {
                    "delete"
                } else {
                    "replace"
                },
                prefix: op.prefix(),
                source,
            },
            Err(HostError::Io { source, .. }) => FibError::Io { source },
            Err(other) => FibError::Io {
                source: std::io::Error::other(other),
            },
        };
        if outcome != OpOutcome::Failed {
            outcome = OpOutcome::Failed;
            err = Some(error);
        }
    }
    if answered < expected && outcome != OpOutcome::Failed {
        outcome = OpOutcome::Failed;
        err = Some(FibError::Io {
            source: std::io::Error::other("no answer from the kernel"),
        });
    }
    if last_absent && outcome == OpOutcome::Done && matches!(op, FibOp::Delete { .. }) {
        outcome = OpOutcome::AlreadyGone;
    }
    (outcome, err)
}

/// The kernel reports the resolved outgoing interface of every gateway; we only ever give one
/// for IPv6 link-local next hops, so only those keep it (otherwise an adopted route would never
/// compare equal to the same route re-learned, and would be replaced for nothing).
fn dumped_next_hop(addr: IpAddr, ifindex: Option<u32>) -> FibNextHop {
    let link_local = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
    FibNextHop {
        addr,
        ifindex: ifindex.filter(|_| link_local),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OURS: Ours = Ours {
        table: 100,
        protocol: 186,
    };

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn hop(s: &str) -> FibNextHop {
        FibNextHop::from(s.parse::<IpAddr>().unwrap())
    }

    fn kernel_err(errno: i32) -> Result<WriteOutcome, HostError> {
        Err(HostError::Kernel {
            op: rackd_host::Operation::RouteReplace,
            target: String::new(),
            source: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn requests_for_operations() {
        let del = FibOp::Delete {
            prefix: p("10.0.0.0/24"),
            metric: 20,
        };
        let reqs = OURS.requests(&del).unwrap();
        assert_eq!(reqs.len(), 1);
        let RouteRequest::Delete(r) = &reqs[0] else {
            panic!("{reqs:?}")
        };
        assert_eq!(
            (r.table, r.protocol, r.metric),
            (100, RouteProtocol(186), 20)
        );
        assert!(r.next_hops.is_empty(), "a delete names no next hop");

        // A replace under a new metric deletes the old one first; ECMP and link-local hops.
        let mut ll = hop("fe80::1");
        ll.ifindex = Some(3);
        let rep = FibOp::Replace {
            prefix: p("2001:db8::/32"),
            next_hops: vec![hop("2001:db8::2"), ll],
            metric: 20,
            delete_metric: Some(7),
        };
        let reqs = OURS.requests(&rep).unwrap();
        assert!(matches!(&reqs[0], RouteRequest::Delete(r) if r.metric == 7));
        let RouteRequest::Replace(r) = &reqs[1] else {
            panic!("{reqs:?}")
        };
        assert_eq!(
            r.next_hops,
            vec![
                NextHop {
                    gateway: Some("2001:db8::2".parse().unwrap()),
                    ifindex: None
                },
                NextHop {
                    gateway: Some("fe80::1".parse().unwrap()),
                    ifindex: Some(3)
                },
            ]
        );

        // Our own validation errors, before anything reaches the kernel.
        let none = FibOp::Replace {
            prefix: p("10.0.0.0/24"),
            next_hops: vec![],
            metric: 20,
            delete_metric: None,
        };
        assert!(matches!(
            OURS.requests(&none),
            Err(FibError::NoNextHop { .. })
        ));
        let v4_hop = FibOp::Replace {
            prefix: p("2001:db8::/32"),
            next_hops: vec![hop("10.0.0.1")],
            metric: 20,
            delete_metric: None,
        };
        assert!(matches!(
            OURS.requests(&v4_hop),
            Err(FibError::UnsupportedNextHop { .. })
        ));
        // RFC 8950: IPv6 next hop for an IPv4 prefix is fine.
        let v6_hop = FibOp::Replace {
            prefix: p("10.0.0.0/24"),
            next_hops: vec![hop("2001:db8::1")],
            metric: 20,
            delete_metric: None,
        };
        assert!(OURS.requests(&v6_hop).is_ok());
    }

    #[test]
    fn outcomes_combine_like_the_kernel_answered() {
        let del = FibOp::Delete {
            prefix: p("10.0.0.0/24"),
            metric: 20,
        };
        let rep = FibOp::Replace {
            prefix: p("10.0.0.0/24"),
            next_hops: vec![hop("10.9.0.1")],
            metric: 20,
            delete_metric: Some(7),
        };
        let reqs = OURS.requests(&rep).unwrap();
        let run =
            |op: &FibOp, reqs: &[RouteRequest], answers: Vec<Result<WriteOutcome, HostError>>| {
                combine(op, reqs.len(), reqs.iter().zip(answers))
            };
        // Delete: done, or already gone.
        let dreqs = OURS.requests(&del).unwrap();
        assert_eq!(
            run(&del, &dreqs, vec![Ok(WriteOutcome::Applied)]).0,
            OpOutcome::Done
        );
        assert_eq!(
            run(&del, &dreqs, vec![Ok(WriteOutcome::AlreadyAbsent)]).0,
            OpOutcome::AlreadyGone
        );
        // The pre-delete of a replace finding nothing is fine.
        let (o, e) = run(
            &rep,
            &reqs,
            vec![Ok(WriteOutcome::AlreadyAbsent), Ok(WriteOutcome::Applied)],
        );
        assert_eq!((o, e.is_none()), (OpOutcome::Done, true));
        // A refused replace: failed, with the errno and the operation named.
        let (o, e) = run(
            &rep,
            &reqs,
            vec![Ok(WriteOutcome::Applied), kernel_err(libc::ENETUNREACH)],
        );
        assert_eq!(o, OpOutcome::Failed);
        match e {
            Some(FibError::Kernel { op, prefix, source }) => {
                assert_eq!((op, prefix), ("replace", p("10.0.0.0/24")));
                assert_eq!(source.raw_os_error(), Some(libc::ENETUNREACH));
            }
            other => panic!("{other:?}"),
        }
        // A refused pre-delete is named as such, and the first error is kept.
        let (o, e) = run(
            &rep,
            &reqs,
            vec![kernel_err(libc::EPERM), kernel_err(libc::ENETUNREACH)],
        );
        assert_eq!(o, OpOutcome::Failed);
        assert!(
            matches!(e, Some(FibError::Kernel { op: "delete", .. })),
            "{e:?}"
        );
        // No answer at all: an I/O failure, retried later.
        let (o, e) = run(&rep, &reqs, vec![Ok(WriteOutcome::AlreadyAbsent)]);
        assert_eq!(o, OpOutcome::Failed);
        assert!(matches!(e, Some(FibError::Io { .. })), "{e:?}");
    }

    #[test]
    fn dumped_routes_that_are_ours() {
        let r = |gw: Option<&str>, ifindex: Option<u32>| Route {
            next_hops: vec![NextHop {
                gateway: gw.map(|g| g.parse().unwrap()),
                ifindex,
            }],
            ..OURS.route(&p("10.0.0.0/24"), 20)
        };
        // The resolved interface of an ordinary gateway is dropped; a link-local one keeps it.
        let (prefix, inst) = OURS.parse(&r(Some("10.9.0.1"), Some(4))).unwrap();
        assert_eq!(prefix, p("10.0.0.0/24"));
        assert_eq!(inst.next_hops, vec![hop("10.9.0.1")]);
        assert_eq!(inst.metric, 20);
        let (_, inst) = OURS.parse(&r(Some("fe80::1"), Some(4))).unwrap();
        assert_eq!(inst.next_hops[0].ifindex, Some(4));
        // Without a gateway, of another protocol, table or type: not ours.
        assert!(OURS.parse(&r(None, Some(4))).is_none());
        let mut other = r(Some("10.9.0.1"), None);
        other.protocol = RouteProtocol::STATIC;
        assert!(OURS.parse(&other).is_none());
        let mut other = r(Some("10.9.0.1"), None);
        other.table = 254;
        assert!(OURS.parse(&other).is_none());
        let mut other = r(Some("10.9.0.1"), None);
        other.kind = RouteKind::Blackhole;
        assert!(OURS.parse(&other).is_none());
    }
}
