//! Shared by the interop tests: our BFD task running in-process inside a namespace.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::net::IpAddr;
use std::time::Duration;

use bfd::{BfdHandle, PeerConfig, PeerKey, PeerState};
use netlab::Netns;
use tokio::sync::watch;

/// Generous convergence timeout (debug builds on a busy 2-core VM).
pub const T: Duration = Duration::from_secs(30);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bfd=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Our BFD task on its own thread inside a namespace, on a current-thread runtime.
pub struct Ours {
    handle: Option<BfdHandle>,
    rt: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ours {
    pub fn start(ns: &Netns) -> Self {
        logs();
        let path = ns.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let f = fs::File::open(&path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (h, task) = BfdHandle::spawn();
                tx.send((h.clone(), tokio::runtime::Handle::current()))
                    .unwrap();
                let _ = stop_rx.await;
                let _ = h.shutdown().await;
                let _ = task.await;
            });
        });
        let (handle, rt) = rx.recv().unwrap();
        Ours {
            handle: Some(handle),
            rt,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn add(&self, cfg: PeerConfig) -> watch::Receiver<PeerState> {
        let h = self.handle.clone().unwrap();
        self.rt.block_on(h.add_peer(cfg)).unwrap()
    }

    pub fn remove(&self, key: &PeerKey) -> bool {
        let h = self.handle.clone().unwrap();
        self.rt.block_on(h.remove_peer(key)).unwrap()
    }

    /// Stops the task (it sends AdminDown on every session first) and joins the thread.
    pub fn stop(&mut self) {
        self.handle = None;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.stop();
    }
}
