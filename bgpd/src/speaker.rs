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
