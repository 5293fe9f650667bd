//! The public handle. Every method sends a command to the speaker task (which owns all state)
//! and waits for its answer.

use std::net::IpAddr;

use bgpd_wire::{Family, PathAttributes};
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{PeerConfig, SpeakerConfig};
use crate::error::Error;
use crate::events::Event;
use crate::instance::{self, Command};
use crate::policy::ExportPatch;
use crate::query::{PeerStatus, RouteEntry, RouteQuery};

/// A running BGP speaker.
#[derive(Debug)]
pub struct Speaker {
    cmd: mpsc::UnboundedSender<Command>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Speaker {
    /// Validate the configuration, bind the listeners and start the speaker task.
    pub async fn start(config: SpeakerConfig) -> Result<Self, Error> {
        config.validate()?;
        let (cmd, rx) = mpsc::unbounded_channel();
        let task = instance::spawn(config, rx)?;
        Ok(Self {
            cmd,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    async fn call<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(f(tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Add a neighbour and start its session.
    pub async fn add_peer(&self, peer: PeerConfig) -> Result<(), Error> {
        peer.validate()?;
        self.call(|tx| Command::AddPeer(Box::new(peer), tx)).await?
    }

    /// Change a neighbour. Policy-only changes apply without a session reset (export is
    /// recomputed; import changes ask the peer for a route refresh); anything else resets it.
    pub async fn update_peer(&self, peer: PeerConfig) -> Result<(), Error> {
        peer.validate()?;
        self.call(|tx| Command::UpdatePeer(Box::new(peer), tx))
            .await?
    }

    /// Patches `peer`'s export policy in place and re-exports exactly the prefixes named.
    ///
    /// The export policy must be an exact-prefix table ([`crate::policy::NotExact`] says what
    /// that excludes), else [`Error::ExportNotExact`] and nothing changes. The entries are
    /// applied in order ([`crate::policy::PolicyIndex::apply`]): `Some(actions)` replaces the
    /// prefix's statement or appends one, `None` removes it and the last statement takes its
    /// place. The outcome (UPDATEs, Adj-RIB-Out, peer status, [`Speaker::peer_config`]) is
    /// what [`Speaker::update_peer`] with the patched policy gives, at a cost proportional to
    /// the patch: only the named prefixes are exported again, and only those whose
    /// attributes on the wire change are sent (never before the session's initial sync).
    /// A prefix of a family the session does not carry is kept in the policy for when it
    /// does. Unknown peer: [`Error::NoSuchPeer`].
    pub async fn patch_export(&self, peer: IpAddr, patch: ExportPatch) -> Result<(), Error> {
        self.call(|tx| Command::PatchExport(peer, patch, tx))
            .await?
    }

    /// The configuration of `peer` as the speaker holds it (with its export policy as
    /// patched by [`Speaker::patch_export`]).
    pub async fn peer_config(&self, peer: IpAddr) -> Result<PeerConfig, Error> {
        self.call(|tx| Command::PeerConfig(peer, tx)).await?
    }

    /// Stop the session (Cease, peer de-configured) and forget the neighbour and its routes.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), Error> {
        self.call(|tx| Command::RemovePeer(address, tx)).await?
    }

    /// Originate `prefix` with `attrs` (next hop unset = ourselves). Replaces an earlier
    /// origination of the same prefix.
    pub async fn add_local_route(
        &self,
        family: Family,
        prefix: IpNet,
        attrs: PathAttributes,
    ) -> Result<(), Error> {
        check_family(family, &prefix)?;
        self.call(|tx| Command::AddLocal(prefix, Box::new(attrs), tx))
            .await
    }

    /// Stop originating `prefix`.
    pub async fn remove_local_route(&self, family: Family, prefix: IpNet) -> Result<(), Error> {
        check_family(family, &prefix)?;
        self.call(|tx| Command::RemoveLocal(prefix, tx)).await
    }

    /// Originates every prefix given (family from the prefix), in one command.
    ///
    /// The same as [`Speaker::add_local_route`] for each entry in order (a prefix given twice
    /// ends with its last attributes), with the exports to peers computed and sent once for
    /// the whole batch. The family of each route is that of its prefix (IPv4 → ipv4-unicast,
    /// IPv6 → ipv6-unicast) and bgpd has a table for both, so no entry can be refused for its
    /// family: the batch is always applied whole. The only error is [`Error::Stopped`]: the
    /// speaker is gone, and every route with it. Peers whose sessions do not carry a
    /// prefix's family are not sent it, as with the per-route call.
    pub async fn add_local_routes(
        &self,
        routes: Vec<(IpNet, PathAttributes)>,
    ) -> Result<(), Error> {
        self.call(|tx| Command::AddLocals(routes, tx)).await
    }

    /// Stops originating every prefix given, in one command: the same as
    /// [`Speaker::remove_local_route`] for each (a prefix not originated is ignored), with
    /// one export to peers for the batch; applied whole as [`Speaker::add_local_routes`].
    pub async fn remove_local_routes(&self, prefixes: Vec<IpNet>) -> Result<(), Error> {
        self.call(|tx| Command::RemoveLocals(prefixes, tx)).await
    }

    /// Declare the initial set of local routes complete: after a restart (graceful restart
    /// `restarting`), advertisements and End-of-RIB wait for this (RFC 4724 §4.1).
    pub async fn set_ready(&self) -> Result<(), Error> {
        self.call(Command::SetReady).await
    }

    /// Ask a peer to resend its routes of `family` (RFC 2918).
    pub async fn request_route_refresh(&self, peer: IpAddr, family: Family) -> Result<(), Error> {
        self.call(|tx| Command::RouteRefresh(peer, family, tx))
            .await?
    }

    /// Status of every peer.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, Error> {
        self.call(Command::Peers).await
    }

    /// List a RIB.
    pub async fn routes(&self, query: RouteQuery) -> Result<Vec<RouteEntry>, Error> {
        self.call(|tx| Command::Routes(query, tx)).await?
    }

    /// Subscribe to events. The stream starts with the current Loc-RIB as
    /// [`Event::BestPath`] changes, so a late subscriber (the FIB) converges too.
    pub async fn subscribe(&self) -> Result<mpsc::UnboundedReceiver<Event>, Error> {
        self.call(Command::Subscribe).await
    }

    /// Report to these BMP collectors from now on (RFC 7854; RFC 9069 Loc-RIB): collectors
    /// whose configuration is unchanged keep their session, the others are told goodbye
    /// (Termination) or connected. An empty list stops BMP.
    pub async fn set_bmp(&self, servers: Vec<crate::config::BmpServerConfig>) -> Result<(), Error> {
        let weak = self.cmd.downgrade();
        self.call(|tx| Command::SetBmp(servers, weak, tx)).await
    }

    /// Stop every session with Cease / administrative shutdown and end the task.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let r = self.call(Command::Shutdown).await;
        if let Some(t) = self.task.lock().await.take() {
            let _ = t.await;
        }
        r
    }
}

fn check_family(family: Family, prefix: &IpNet) -> Result<(), Error> {
    if family == Family::of_prefix(prefix) {
        Ok(())
    } else {
        Err(Error::FamilyMismatch {
            prefix: *prefix,
            family,
        })
    }
}
