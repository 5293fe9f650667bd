//! Link monitor: the node's network devices and their operational state, from rtnetlink
//! (a dump, then the RTMGRP_LINK multicast group). Up/down changes go straight to the L2
//! ownership task, so an announcing interface that loses carrier gives its groups up at once
//! (Cilium #35507); the device list is published for the desired-state computation.

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use l2announcer::node::NodeSender;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::desired::Device;

/// `RTMGRP_LINK` (linux/rtnetlink.h): link change notifications.
const RTMGRP_LINK: u32 = 1;

/// Link monitor errors.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open or subscribe the rtnetlink socket")]
    Socket(#[source] std::io::Error),
    #[error("cannot list network devices")]
    Dump(#[source] rtnetlink::Error),
}

/// The running monitor.
#[derive(Debug)]
pub struct LinkMonitor {
    devices: watch::Receiver<Vec<Device>>,
    task: JoinHandle<()>,
}

fn device(msg: &LinkMessage) -> Option<Device> {
    let name = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    let flags = msg.header.flags;
    Some(Device {
        name,
        ifindex: msg.header.index,
        ether: msg.header.link_layer_type == LinkLayerType::Ether,
        loopback: flags.contains(LinkFlags::Loopback),
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
    })
}

impl LinkMonitor {
    /// Subscribes first, then dumps, so no change between the two is missed; reports every
    /// device's state to `node` once, then each change.
    pub async fn start(node: NodeSender) -> Result<Self, LinkError> {
        let (mut conn, handle, events) =
            rtnetlink::new_connection_with_strict_check().map_err(LinkError::Socket)?;
        conn.socket_mut()
            .socket_mut()
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(LinkError::Socket)?;
        let conn_task = tokio::spawn(conn);
        let table = dump(&handle).await?;
        for d in table.values() {
            node.link(d.ifindex, d.up);
        }
        info!(
            devices = ?table.values().map(|d| (&d.name, d.up)).collect::<Vec<_>>(),
            "link monitor running"
        );
        let (tx, rx) = watch::channel(table.values().cloned().collect());
        let task = tokio::spawn(async move {
            run(events, handle, table, node, tx).await;
            // Keep the connection alive as long as we listen.
            conn_task.abort();
        });
        Ok(Self { devices: rx, task })
    }

    /// The current devices.
    #[must_use]
    pub fn devices(&self) -> Vec<Device> {
        self.devices.borrow().clone()
    }

    /// Resolves when the device list changed since the last [`LinkMonitor::devices`] call
    /// through this method (never, if the monitor ended).
    pub async fn changed(&mut self) {
        if self.devices.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.devices.mark_unchanged();
    }
}

impl Drop for LinkMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dump(handle: &rtnetlink::Handle) -> Result<BTreeMap<u32, Device>, LinkError> {
    let mut table = BTreeMap::new();
    let mut dump = handle.link().get().execute();
    while let Some(m) = dump.next().await {
        let m = m.map_err(LinkError::Dump)?;
        if let Some(d) = device(&m) {
            table.insert(d.ifindex, d);
        }
    }
    Ok(table)
}

async fn run(
    mut events: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    handle: rtnetlink::Handle,
    mut table: BTreeMap<u32, Device>,
    node: NodeSender,
    tx: watch::Sender<Vec<Device>>,
) {
    while let Some((msg, _)) = events.next().await {
        let changed = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                let Some(d) = device(&m) else { continue };
                let old = table.insert(d.ifindex, d.clone());
                if old.as_ref().is_none_or(|o| o.up != d.up) {
                    info!(device = %d.name, ifindex = d.ifindex, up = d.up, "link state");
                    node.link(d.ifindex, d.up);
                }
                old.as_ref() != Some(&d)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                let idx = m.header.index;
                match table.remove(&idx) {
                    Some(d) => {
                        info!(device = %d.name, ifindex = idx, "link removed");
                        node.link(idx, false);
                        true
                    }
                    None => false,
                }
            }
            NetlinkPayload::Overrun(_) => {
                // Notifications were lost: re-read everything and report what differs.
                warn!("rtnetlink link notifications overran; re-reading all links");
                match dump(&handle).await {
                    Ok(fresh) => {
                        for d in fresh.values() {
                            if table.get(&d.ifindex).is_none_or(|o| o.up != d.up) {
                                node.link(d.ifindex, d.up);
                            }
                        }
                        for idx in table.keys().filter(|i| !fresh.contains_key(i)) {
                            node.link(*idx, false);
                        }
                        let changed = fresh != table;
                        table = fresh;
                        changed
                    }
                    Err(e) => {
                        warn!(error = %e, "re-reading links failed; link states may be stale");
                        false
                    }
                }
            }
            other => {
                debug!(?other, "ignored rtnetlink message");
                false
            }
        };
        if changed {
            // Receivers gone only at shutdown.
            let _ = tx.send(table.values().cloned().collect());
        }
    }
}
