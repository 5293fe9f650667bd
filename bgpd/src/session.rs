//! Per-connection I/O tasks. The speaker task owns every session's state; each TCP connection
//! gets a reader task (frames and decodes, so decoding runs in parallel with the RIB) and a
//! writer task (encodes and packs UPDATEs), both talking to the speaker over channels.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bgpd_wire::{
    BgpCodec, DecodeError, EncodedAttributes, Family, Message, Notification, Open, RawMessages,
    SessionContext, UpdateBuilder,
};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::rib::Attrs;

/// What the I/O tasks report to the speaker task.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    Rx {
        peer: IpAddr,
        conn: u64,
        msg: Message,
    },
    /// The decoder found a session-reset error; the NOTIFICATION to send.
    RxError {
        peer: IpAddr,
        conn: u64,
        notification: Notification,
    },
    Closed {
        peer: IpAddr,
        conn: u64,
    },
    Connected {
        peer: IpAddr,
        attempt: u64,
        result: std::io::Result<TcpStream>,
    },
    Accepted {
        stream: TcpStream,
        remote: SocketAddr,
    },
    /// The BFD session of a peer changed state (from its watcher of `generation`).
    Bfd {
        peer: IpAddr,
        generation: u64,
        status: crate::query::BfdStatus,
    },
}

/// Work for a writer task.
#[derive(Debug)]
pub(crate) enum WriterCmd {
    Msg(Message),
    /// The negotiated context, before any UPDATE is queued.
    SetContext(SessionContext),
    /// Announcements grouped by attribute set, and withdrawals.
    Updates {
        announce: Vec<(Arc<Attrs>, Vec<IpNet>)>,
        withdraw: Vec<IpNet>,
    },
    EndOfRib(Family),
    /// Flush what is queued, then close.
    Close,
}

/// A task handle that aborts the task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a closing connection waits for the peer to close its end first.
///
/// Whoever closes first keeps the four-tuple in TIME_WAIT for 60 s. With a fixed source port
/// (`PeerConfig::local_port`) and no TCP timestamps (TCP-MD5 turns them off on Linux) a
/// TIME_WAIT on our side makes the next `connect` from that port fail with `EADDRNOTAVAIL`
/// for that long, so we let the peer, which closes as soon as it has read the NOTIFICATION
/// (RFC 4271 §6), close first. Waiting also means the peer has finished with the old session
/// before we open a new one, instead of rejecting it as a collision (§6.8) with the session
/// it still holds. A peer that does not close in time (it is dead, or slow) gets our FIN.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// The speaker's end of one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<WriterCmd>,
    pub local: SocketAddr,
    /// The peer's end (BMP's Peer Up reports its port).
    pub remote: SocketAddr,
    /// We initiated it (RFC 4271 §6.8 collision resolution needs to know).
    pub outgoing: bool,
    /// Cancelled once the socket is closed (after the writer's linger).
    pub closed: CancellationToken,
    _reader: AbortOnDrop,
}

impl Conn {
    pub fn send(&self, cmd: WriterCmd) {
        // A closed writer means the connection is gone; the reader reports that.
        let _ = self.tx.send(cmd);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.tx.send(WriterCmd::Close);
    }
}

/// Start the reader and writer tasks of a connection.
pub(crate) fn spawn(
    peer: IpAddr,
    id: u64,
    stream: TcpStream,
    outgoing: bool,
    local_open: Open,
    events: mpsc::Sender<ConnEvent>,
    writers: &tokio_util::task::TaskTracker,
) -> std::io::Result<Conn> {
    let local = stream.local_addr()?;
    let remote = stream.peer_addr()?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let closed = CancellationToken::new();
    // Tracked so shutdown can wait for the final NOTIFICATIONs to be written.
    writers.spawn(writer(w, rx, closed.clone().drop_guard()));
    let reader = tokio::spawn(reader(peer, id, r, local_open, events));
    Ok(Conn {
        id,
        tx,
        local,
        remote,
        outgoing,
        closed,
        _reader: AbortOnDrop(reader),
    })
}

async fn reader(
    peer: IpAddr,
    conn: u64,
    r: OwnedReadHalf,
    local_open: Open,
    events: mpsc::Sender<ConnEvent>,
) {
    let mut framed = FramedRead::with_capacity(r, BgpCodec::default(), 64 * 1024);
    while let Some(item) = framed.next().await {
        match item {
            Ok(msg) => {
                // Switch to the negotiated layout before the next frame is decoded: both
                // OPENs are known here, and nothing but the OPEN precedes UPDATEs.
                if let Message::Open(open) = &msg {
                    framed
                        .decoder_mut()
                        .set_context(SessionContext::negotiate(&local_open, open));
                }
                if events
                    .send(ConnEvent::Rx { peer, conn, msg })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(DecodeError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "malformed message");
                let notification = Notification::from(&e);
                let _ = events
                    .send(ConnEvent::RxError {
                        peer,
                        conn,
                        notification,
                    })
                    .await;
                return;
            }
        }
    }
    let _ = events.send(ConnEvent::Closed { peer, conn }).await;
}

/// Writes what the speaker queues; on `Close` (or when the speaker drops the connection)
/// flushes, waits up to [`LINGER`] for the peer to close, then closes. `closed` is cancelled
/// when the socket is gone.
async fn writer(w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<WriterCmd>, closed: DropGuard) {
    let mut framed = FramedWrite::new(w, BgpCodec::default());
    let mut batch = Vec::with_capacity(64);
    loop {
        if rx.recv_many(&mut batch, 64).await == 0 {
            break;
        }
        let mut close = false;
        for cmd in batch.drain(..) {
            let r = match cmd {
                WriterCmd::Msg(m) => framed.feed(m).await,
                WriterCmd::SetContext(ctx) => {
                    framed.encoder_mut().set_context(ctx);
                    Ok(())
                }
                WriterCmd::Updates { announce, withdraw } => {
                    let bytes = build_updates(framed.encoder().context(), &announce, &withdraw);
                    framed.feed(RawMessages(bytes)).await
                }
                WriterCmd::EndOfRib(f) => {
                    let mut b = UpdateBuilder::new(framed.encoder().context());
                    b.end_of_rib(f);
                    framed.feed(RawMessages(b.finish())).await
                }
                WriterCmd::Close => {
                    close = true;
                    break;
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "write failed");
                return;
            }
        }
        if SinkExt::<Message>::flush(&mut framed).await.is_err() {
            return;
        }
        if close {
            break;
        }
    }
    let w = framed.into_inner();
    let _ = tokio::time::timeout(LINGER, peer_closed(w.as_ref())).await;
    // Dropping the write half sends our FIN (shutdown), and with it the socket's last handle.
    drop(w);
    drop(closed);
}

/// Read and discard until the peer's FIN (or an error). The reader task is gone by now, and
/// unread data at `close` would make the kernel answer with a RST instead of a FIN.
async fn peer_closed(s: &TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        if s.readable().await.is_err() {
            return;
        }
        match s.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

fn build_updates(
    ctx: &SessionContext,
    announce: &[(Arc<Attrs>, Vec<IpNet>)],
    withdraw: &[IpNet],
) -> Bytes {
    let mut b = UpdateBuilder::new(ctx);
    if !withdraw.is_empty() {
        b.withdraw(withdraw);
    }
    for (attrs, prefixes) in announce {
        let enc = EncodedAttributes::new(&attrs.path, ctx);
        if let Err(e) = b.announce(&enc, attrs.next_hop, prefixes) {
            tracing::warn!(error = %e, "cannot encode UPDATE; prefixes not sent");
        }
    }
    b.finish()
}
