//! Leader election on a `coordination.k8s.io` Lease: cluster-wide decisions (LB-IPAM
//! allocation, status that only one node may write) have exactly one writer.
//!
//! The rules are client-go's: a Lease held by another is taken over only after it has not
//! changed for its `leaseDurationSeconds`, measured on **this** node's monotonic clock from
//! when this node saw it change (so clocks need not agree); every write carries the
//! resourceVersion it was decided on, so two candidates racing for it cannot both win.
//!
//! Fencing: a leader that cannot renew stops leading at its renew deadline, before the
//! lease can expire for the others (renew deadline < lease duration), and a renewal refused
//! because someone else wrote the Lease ends leadership at once. Writers check
//! [`Leadership::valid_at`] immediately before each write, and write with the
//! resourceVersion of what they read, so a deposed leader's write fails rather than undoing
//! its successor's.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Timings, Cilium operator's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionTimings {
    /// `--leader-election-lease-duration` (15s).
    pub lease_duration: Duration,
    /// `--leader-election-renew-deadline` (10s).
    pub renew_deadline: Duration,
    /// `--leader-election-retry-period` (2s).
    pub retry_period: Duration,
}

impl Default for ElectionTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Who leads, as this node knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// This node leads (until `valid_until`).
    pub leader: bool,
    /// The holder last seen.
    pub holder: Option<String>,
    /// Leadership ends at this instant unless renewed.
    pub valid_until: Option<Instant>,
    /// Terms led by this node so far (a new term: state rebuilt from the API).
    pub term: u64,
}

impl Leadership {
    /// Whether this node may write as the leader at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.leader && self.valid_until.is_some_and(|t| now < t)
    }
}

/// The Lease as read: what decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub resource_version: String,
    pub lease_duration: Option<Duration>,
    pub transitions: i32,
}

impl Record {
    fn of(l: &Lease) -> Self {
        let spec = l.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
        }
    }
}

/// What to do this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease: create it, holding it.
    Create,
    /// Ours: renew it (precondition: this version).
    Renew { resource_version: String },
    /// Free or expired: take it (precondition: this version), one more transition.
    TakeOver {
        resource_version: String,
        transitions: i32,
    },
    /// Another node holds it and it is live.
    Wait { holder: String },
}

/// The decision half: pure, time passed in.
#[derive(Debug)]
pub struct Elector {
    identity: String,
    timings: ElectionTimings,
    /// The version last seen and when this node first saw it.
    observed: Option<(String, Instant)>,
    leadership: Leadership,
}

impl Elector {
    /// A candidate named `identity`.
    pub fn new(identity: impl Into<String>, timings: ElectionTimings) -> Self {
        Self {
            identity: identity.into(),
            timings,
            observed: None,
            leadership: Leadership::default(),
        }
    }

    /// Current leadership.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Decides on the Lease as just read (`None`: absent).
    pub fn decide(&mut self, lease: Option<&Record>, now: Instant) -> Step {
        let Some(r) = lease else {
            self.observed = None;
            return Step::Create;
        };
        if self.observed.as_ref().map(|(v, _)| v) != Some(&r.resource_version) {
            self.observed = Some((r.resource_version.clone(), now));
        }
        let since = self
            .observed
            .as_ref()
            .map_or(Duration::ZERO, |(_, t)| now.saturating_duration_since(*t));
        match &r.holder {
            Some(h) if *h == self.identity => Step::Renew {
                resource_version: r.resource_version.clone(),
            },
            Some(h) if since < r.lease_duration.unwrap_or(self.timings.lease_duration) => {
                self.leadership.holder = Some(h.clone());
                self.lose();
                Step::Wait { holder: h.clone() }
            }
            _ => Step::TakeOver {
                resource_version: r.resource_version.clone(),
                transitions: r.transitions.saturating_add(1),
            },
        }
    }

    /// A write decided at `decided` succeeded.
    pub fn written(&mut self, decided: Instant) {
        if !self.leadership.leader {
            self.leadership.term += 1;
            info!(term = self.leadership.term, "leading (Lease acquired)");
        }
        self.leadership.leader = true;
        self.leadership.holder = Some(self.identity.clone());
        // Counted from when the write was decided, not when it returned: conservative.
        self.leadership.valid_until = Some(decided + self.timings.renew_deadline);
    }

    /// Someone else wrote the Lease first (409): leadership ends now.
    pub fn refused(&mut self) {
        self.lose();
    }

    /// The write could not be made (transport): leading goes on until the renew deadline.
    pub fn failed(&mut self, now: Instant) {
        if self.leadership.valid_until.is_some_and(|t| now >= t) {
            self.lose();
        }
    }

    fn lose(&mut self) {
        if self.leadership.leader {
            warn!("no longer leading (Lease lost)");
        }
        self.leadership.leader = false;
        self.leadership.valid_until = None;
    }
}

/// Where the Lease lives and who asks.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timings: ElectionTimings,
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn lease_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Runs the election until `stop`; then releases the Lease if held, so a successor need not
/// wait for it to expire.
pub fn spawn(
    client: kube::Client,
    cfg: LeaseConfig,
    stop: CancellationToken,
) -> (watch::Receiver<Leadership>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Leadership::default());
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut el = Elector::new(cfg.identity.clone(), cfg.timings);
        let mut tick = tokio::time::interval(cfg.timings.retry_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            round(&api, &cfg, &mut el).await;
            tx.send_if_modified(|l| {
                let changed = *l != *el.leadership();
                if changed {
                    *l = el.leadership().clone();
                }
                changed
            });
        }
        if el.leadership().leader {
            release(&api, &cfg).await;
        }
        tx.send_replace(Leadership::default());
    });
    (rx, task)
}

async fn round(api: &Api<Lease>, cfg: &LeaseConfig, el: &mut Elector) {
    let now = Instant::now();
    let current = match api.get_opt(&cfg.name).await {
        Ok(l) => l,
        Err(e) => {
            warn!(lease = %cfg.name, error = %e, "reading the leader Lease failed");
            el.failed(now);
            return;
        }
    };
    let step = el.decide(current.as_ref().map(Record::of).as_ref(), now);
    let spec = |acquire: bool, transitions: i32, prev: Option<&LeaseSpec>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(lease_secs(cfg.timings.lease_duration)),
        acquire_time: if acquire {
            Some(micro_now())
        } else {
            prev.and_then(|s| s.acquire_time.clone())
        },
        renew_time: Some(micro_now()),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let meta = |rv: Option<String>| ObjectMeta {
        name: Some(cfg.name.clone()),
        namespace: Some(cfg.namespace.clone()),
        resource_version: rv,
        ..ObjectMeta::default()
    };
    let result = match step {
        Step::Wait { .. } => return,
        Step::Create => {
            let l = Lease {
                metadata: meta(None),
                spec: Some(spec(true, 0, None)),
            };
            api.create(&PostParams::default(), &l).await.map(|_| ())
        }
        Step::Renew { resource_version } => {
            let prev = current.as_ref().and_then(|l| l.spec.as_ref());
            let transitions = prev.and_then(|s| s.lease_transitions).unwrap_or(0);
            let l = Lease {
                metadata: meta(Some(resource_version)),
                spec: Some(spec(false, transitions, prev)),
            };
            api.replace(&cfg.name, &PostParams::default(), &l)
                .await
                .map(|_| ())
        }
        Step::TakeOver {
            resource_version,
            transitions,
        } => {
            let l = Lease {
                metadata: meta(Some(resource_version)),
                spec: Some(spec(true, transitions, None)),
            };
            api.replace(&cfg.name, &PostParams::default(), &l)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => el.written(now),
        Err(kube::Error::Api(s)) if s.code == 409 => el.refused(),
        Err(e) => {
            warn!(lease = %cfg.name, error = %e, "writing the leader Lease failed");
            el.failed(Instant::now());
        }
    }
}

/// Gives the Lease up (holder cleared), as client-go's ReleaseOnCancel does.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut l)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let ours =
        l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    if !ours {
        return;
    }
    if let Some(s) = &mut l.spec {
        s.holder_identity = None;
        s.lease_duration_seconds = Some(1);
        s.renew_time = Some(micro_now());
    }
    match api.replace(&cfg.name, &PostParams::default(), &l).await {
        Ok(_) => info!(lease = %cfg.name, "leader Lease released"),
        Err(e) => warn!(lease = %cfg.name, error = %e, "releasing the leader Lease failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, rv: &str) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            resource_version: rv.into(),
            lease_duration: Some(Duration::from_secs(15)),
            transitions: 3,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn takes_a_lease_only_after_it_stood_still_for_its_duration() {
        let mut el = Elector::new("node2", ElectionTimings::default());
        let t0 = Instant::now();
        assert_eq!(
            el.decide(Some(&rec(Some("node1"), "10")), t0),
            Step::Wait {
                holder: "node1".into()
            }
        );
        // Renewed by its holder: the clock starts again.
        let t1 = t0 + Duration::from_secs(10);
        assert!(matches!(
            el.decide(Some(&rec(Some("node1"), "11")), t1),
            Step::Wait { .. }
        ));
        assert!(matches!(
            el.decide(
                Some(&rec(Some("node1"), "11")),
                t1 + Duration::from_secs(14)
            ),
            Step::Wait { .. }
        ));
        assert_eq!(
            el.decide(
                Some(&rec(Some("node1"), "11")),
                t1 + Duration::from_secs(15)
            ),
            Step::TakeOver {
                resource_version: "11".into(),
                transitions: 4
            }
        );
        assert!(!el.leadership().leader);
        el.written(t1 + Duration::from_secs(15));
        assert!(el.leadership().leader);
        assert_eq!(el.leadership().term, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn absent_or_released_leases_are_taken_at_once_and_ours_renewed() {
        let mut el = Elector::new("node1", ElectionTimings::default());
        let t = Instant::now();
        assert_eq!(el.decide(None, t), Step::Create);
        assert!(matches!(
            el.decide(Some(&rec(None, "5")), t),
            Step::TakeOver { .. }
        ));
        assert_eq!(
            el.decide(Some(&rec(Some("node1"), "6")), t),
            Step::Renew {
                resource_version: "6".into()
            }
        );
    }

    /// Fencing: a leader stops at its renew deadline when writes fail, before the others may
    /// take over (lease duration), and at once when its renewal is refused.
    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_stops_before_others_may_start() {
        let timings = ElectionTimings::default();
        let mut el = Elector::new("node1", timings);
        let t0 = Instant::now();
        el.decide(None, t0);
        el.written(t0);
        assert!(el.leadership().valid_at(t0 + Duration::from_secs(9)));
        assert!(!el.leadership().valid_at(t0 + timings.renew_deadline));
        el.failed(t0 + Duration::from_secs(4));
        assert!(el.leadership().leader, "still within the deadline");
        el.failed(t0 + timings.renew_deadline);
        assert!(!el.leadership().leader);
        assert!(timings.renew_deadline < timings.lease_duration);

        el.written(t0 + Duration::from_secs(20));
        assert_eq!(el.leadership().term, 2, "a new term");
        el.refused();
        assert!(!el.leadership().valid_at(t0 + Duration::from_secs(21)));
    }
}
