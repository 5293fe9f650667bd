//! The desired service state of one node: frontends with their backends and options
//! ([`ServiceTable`]), and the problems found on the way ([`Problem`]).
//!
//! A frontend can be claimed by more than one Service (two Services listing the same
//! externalIP and port). The table keeps every claim and serves the one of the smallest
//! Service name, whatever order the claims arrived in, so replacing Services one at a time
//! ([`ServiceTable::set_service`]) gives the same table as rendering them all.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rackd_types::{Condition, Kind, ObjectCondition, ObjectKey};

/// A Service's identity: `(namespace, name)` (as `rackd`'s `ServiceName`).
pub type ServiceName = (String, String);

pub use rackd_types::service::{Backend, Frontend, L4Proto};

/// A backend of one frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendRef {
    /// Which backend.
    pub backend: Backend,
    /// The endpoint runs on this node (its `nodeName`, or its Pod's, is ours).
    pub local: bool,
}

/// What one frontend does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceEntry {
    /// The Service it comes from.
    pub service: ServiceName,
    /// Its backends, sorted by backend, each once.
    pub backends: Vec<BackendRef>,
    /// `externalTrafficPolicy: Local`: `backends` holds local ones only, and the client
    /// source is kept (no SNAT).
    pub local_only: bool,
    /// `sessionAffinity: ClientIP` with its timeout.
    pub affinity_timeout: Option<Duration>,
    /// `loadBalancerSourceRanges` of the frontend's family; `None` = no restriction.
    /// `Some(empty)` denies everyone: the Service restricts clients but lists none of this
    /// family (or none that parse), and an allow-list must fail closed.
    pub source_ranges: Option<Vec<IpNet>>,
}

/// Why something in a Service could not be served as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemReason {
    /// An SCTP port: the datapath handles TCP and UDP only.
    SctpUnsupported,
    /// A protocol that is not TCP, UDP or SCTP.
    UnknownProtocol,
    /// A Service or endpoint port outside 1..=65535.
    InvalidPort,
    /// A `loadBalancerSourceRanges` entry that is not a CIDR.
    InvalidSourceRange,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` outside 1..=86400.
    InvalidAffinityTimeout,
    /// An unknown `sessionAffinity` or `externalTrafficPolicy` value.
    UnsupportedPolicy,
    /// Another Service already serves this address, port and protocol.
    FrontendConflict,
}

impl ProblemReason {
    /// CamelCase reason, for conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemReason::SctpUnsupported => "SCTPUnsupported",
            ProblemReason::UnknownProtocol => "UnknownProtocol",
            ProblemReason::InvalidPort => "InvalidPort",
            ProblemReason::InvalidSourceRange => "InvalidSourceRange",
            ProblemReason::InvalidAffinityTimeout => "InvalidAffinityTimeout",
            ProblemReason::UnsupportedPolicy => "UnsupportedPolicy",
            ProblemReason::FrontendConflict => "FrontendConflict",
        }
    }
}

/// One problem with one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Problem {
    /// The object (a Service, or the EndpointSlice with a bad port).
    pub object: ObjectKey,
    /// What kind of problem.
    pub reason: ProblemReason,
    /// For people: what, where, and what happens instead.
    pub message: String,
}

impl Problem {
    /// A problem of Service `svc`.
    pub fn service(svc: &ServiceName, reason: ProblemReason, message: impl Into<String>) -> Self {
        Self {
            object: ObjectKey::namespaced(Kind::Service, &svc.0, &svc.1),
            reason,
            message: message.into(),
        }
    }

    /// As a status condition (`rackd.io/Unsupported` for SCTP, else
    /// `rackd.io/InvalidConfiguration`).
    pub fn to_condition(&self) -> ObjectCondition {
        use rackd_types::condition::types;
        let t = if self.reason == ProblemReason::SctpUnsupported {
            types::UNSUPPORTED
        } else {
            types::INVALID_CONFIGURATION
        };
        ObjectCondition::new(
            self.object.clone(),
            Condition::problem(t, self.reason.as_str(), self.message.clone()),
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.object,
            self.reason.as_str(),
            self.message
        )
    }
}

/// The desired frontends of one node. Persistent maps: a clone is O(1), and
/// [`ServiceTable::changes_since`] costs what changed.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    /// Every claim on a frontend, by Service; the first (smallest name) is served.
    claims: imbl::OrdMap<Frontend, imbl::OrdMap<ServiceName, Arc<ServiceEntry>>>,
    /// The frontends each Service claims.
    by_service: imbl::OrdMap<ServiceName, imbl::OrdSet<Frontend>>,
}

impl PartialEq for ServiceTable {
    fn eq(&self, other: &Self) -> bool {
        self.claims == other.claims
    }
}

impl ServiceTable {
    /// Replaces everything Service `svc` claims with `entries` (empty: the Service is gone).
    pub fn set_service(&mut self, svc: &ServiceName, entries: Vec<(Frontend, ServiceEntry)>) {
        if let Some(old) = self.by_service.remove(svc) {
            for f in old {
                if let Some(c) = self.claims.get_mut(&f) {
                    c.remove(svc);
                    if c.is_empty() {
                        self.claims.remove(&f);
                    }
                }
            }
        }
        if entries.is_empty() {
            return;
        }
        let mut mine = imbl::OrdSet::new();
        for (f, e) in entries {
            mine.insert(f);
            self.claims
                .entry(f)
                .or_default()
                .insert(svc.clone(), Arc::new(e));
        }
        self.by_service.insert(svc.clone(), mine);
    }

    /// The entry served at `f`.
    pub fn get(&self, f: &Frontend) -> Option<&ServiceEntry> {
        self.claims
            .get(f)
            .and_then(|c| c.get_min())
            .map(|(_, e)| &**e)
    }

    /// Every served frontend, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Frontend, &ServiceEntry)> + '_ {
        self.claims
            .iter()
            .filter_map(|(f, c)| c.get_min().map(|(_, e)| (f, &**e)))
    }

    /// Number of served frontends.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// True when nothing is served.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// The frontends Service `svc` claims (served or not).
    pub fn frontends_of(&self, svc: &ServiceName) -> impl Iterator<Item = &Frontend> + '_ {
        self.by_service.get(svc).into_iter().flatten()
    }

    /// Frontends claimed by more than one Service: one [`ProblemReason::FrontendConflict`]
    /// per losing claim.
    pub fn conflicts(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (f, c) in self.claims.iter().filter(|(_, c)| c.len() > 1) {
            let Some((winner, _)) = c.get_min() else {
                continue;
            };
            for (svc, _) in c.iter().skip(1) {
                out.push(Problem::service(
                    svc,
                    ProblemReason::FrontendConflict,
                    format!(
                        "{f} is already served by Service {}/{}; not served for this one",
                        winner.0, winner.1
                    ),
                ));
            }
        }
        out
    }

    /// Frontends whose served entry differs between `previous` and `self`: `(frontend,
    /// old, new)`, in frontend order. Shared subtrees are skipped, so the cost follows the
    /// change when `self` was derived from `previous`.
    pub fn changes_since<'a>(
        &'a self,
        previous: &'a ServiceTable,
    ) -> Vec<(Frontend, Option<&'a ServiceEntry>, Option<&'a ServiceEntry>)> {
        use imbl::ordmap::DiffItem;
        let served =
            |c: &'a imbl::OrdMap<ServiceName, Arc<ServiceEntry>>| c.get_min().map(|(_, e)| &**e);
        previous
            .claims
            .diff(&self.claims)
            .filter_map(|d| match d {
                DiffItem::Add(f, c) => Some((*f, None, served(c))),
                DiffItem::Remove(f, c) => Some((*f, served(c), None)),
                DiffItem::Update {
                    old: (f, o),
                    new: (_, n),
                } => {
                    let (o, n) = (served(o), served(n));
                    (o != n).then_some((*f, o, n))
                }
            })
            .collect()
    }
}
