//! The peer monitor: follows the speakers' sessions and publishes Cilium's `BgpPeer` rows
//! through a `watch` channel, so `rackctl bgp peers`, `rackctl status`, the metrics and
//! systemd's STATUS line read the last known state at once instead of queueing behind a
//! speaker that is busy exporting 27,000 routes.
//!
//! It refreshes when the BGP controller publishes (speakers or desired state changed), at
//! once when any speaker reports a session state change, and every second otherwise (the
//! prefix counters move without events).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rackd_model::rackd_types::SessionState;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::BgpStatus;
use super::render;
use crate::metrics::{Metrics, PeerFamilyLabels, PeerLabels};
use crate::views;

/// The peers of every speaker, as `rackctl bgp peers` shows them.
pub type BgpPeers = Arc<[rackd_api::BgpPeer]>;

/// How often the counters are refreshed when nothing else happens.
const REFRESH: Duration = Duration::from_secs(1);

/// The running monitor.
#[derive(Debug)]
pub struct PeerMonitor {
    task: JoinHandle<()>,
}

impl PeerMonitor {
    /// Follows `status`'s speakers until `stop`, publishing into `tx`.
    pub fn start(
        mut status: watch::Receiver<BgpStatus>,
        tx: watch::Sender<BgpPeers>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Self {
        let task = tokio::spawn(async move {
            let wake = Arc::new(Notify::new());
            let mut followers: Vec<(Arc<bgpd::Speaker>, JoinHandle<()>)> = Vec::new();
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    r = status.changed() => if r.is_err() { break },
                    () = wake.notified() => {}
                    _ = tick.tick() => {}
                }
                let st = status.borrow().clone();
                follow(&st, &mut followers, &wake).await;
                let peers = collect(&st).await;
                set_metrics(&metrics, &peers);
                tx.send_replace(peers.into());
            }
            for (_, t) in followers {
                t.abort();
            }
        });
        Self { task }
    }
}

impl Drop for PeerMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one event follower per running speaker: a session state change wakes the monitor.
async fn follow(
    st: &BgpStatus,
    followers: &mut Vec<(Arc<bgpd::Speaker>, JoinHandle<()>)>,
    wake: &Arc<Notify>,
) {
    let same = followers.len() == st.speakers.len()
        && followers
            .iter()
            .zip(st.speakers.iter())
            .all(|((a, _), (_, b, _))| Arc::ptr_eq(a, b));
    if same {
        return;
    }
    for (_, t) in followers.drain(..) {
        t.abort();
    }
    for (_, speaker, _) in st.speakers.iter() {
        let Ok(mut events) = speaker.subscribe().await else {
            continue;
        };
        let wake = wake.clone();
        let t = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if matches!(ev, bgpd::Event::PeerState(_)) {
                    wake.notify_one();
                }
            }
        });
        followers.push((speaker.clone(), t));
    }
}

/// Every speaker's peers, named after the rendered configuration.
async fn collect(st: &BgpStatus) -> Vec<rackd_api::BgpPeer> {
    let mut out = Vec::new();
    for (inst, speaker, asn) in st.speakers.iter() {
        let Ok(peers) = speaker.peers().await else {
            continue;
        };
        let names: BTreeMap<IpAddr, &render::Peer> = st
            .desired
            .instances
            .get(inst)
            .map(|i| i.peers.values().map(|p| (p.address, p)).collect())
            .unwrap_or_default();
        for p in peers {
            out.push(views::bgp_peer(*asn, &p, names.get(&p.address).copied()));
        }
    }
    out
}

fn set_metrics(m: &Metrics, peers: &[rackd_api::BgpPeer]) {
    for p in peers {
        let vrouter = p.local_asn.to_string();
        m.session_established
            .get_or_create(&PeerLabels {
                vrouter: vrouter.clone(),
                peer: p.peer_address.clone(),
            })
            .set(i64::from(p.session_state == SessionState::Established));
        if let Some(b) = &p.bfd {
            let l = PeerLabels {
                vrouter: vrouter.clone(),
                peer: p.peer_address.clone(),
            };
            m.bfd_up.get_or_create(&l).set(i64::from(b.state == "up"));
            m.bfd_transitions
                .get_or_create(&l)
                .set(i64::try_from(b.transitions).unwrap_or(i64::MAX));
        }
        for f in &p.families {
            let l = PeerFamilyLabels {
                vrouter: vrouter.clone(),
                peer: p.peer_address.clone(),
                family: format!("{}/{}", f.afi, f.safi),
            };
            m.prefixes_received
                .get_or_create(&l)
                .set(i64::try_from(f.received).unwrap_or(i64::MAX));
            m.prefixes_advertised
                .get_or_create(&l)
                .set(i64::try_from(f.advertised).unwrap_or(i64::MAX));
        }
    }
}
