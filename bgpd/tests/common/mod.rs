//! Helpers for the interop tests: our speaker running in-process inside a namespace, the
//! example binary as a separate process, and polling that reports the peer's own output.

#![allow(dead_code, clippy::unwrap_used)]

pub mod fake;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bgpd::fsm::State;
use bgpd::{
    Family, PeerConfig, PeerStatus, RibKind, RouteEntry, RouteQuery, Speaker, SpeakerConfig,
};
use netlab::Netns;

/// Timeout for convergence waits (generous: debug builds on a 2-core VM).
pub const T: Duration = Duration::from_secs(60);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bgpd=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Two namespaces joined by a veth `eth0`: ours (10.0.0.1/30, fd00::1/64) and the peer's
/// (10.0.0.2/30, fd00::2/64), with a lab directory for the peer's files. Keep the returned
/// values alive for the test (drop order: daemons first, then these).
pub fn pair(name: &str) -> (netlab::LabDir, Netns, Netns) {
    let dir = netlab::LabDir::new(name).unwrap();
    let us_ns = Netns::new(&format!("{name}-us")).unwrap();
    let peer_ns = Netns::new(&format!("{name}-peer")).unwrap();
    netlab::veth(&us_ns, "eth0", &peer_ns, "eth0").unwrap();
    us_ns.addr_add("eth0", "10.0.0.1/30").unwrap();
    us_ns.addr_add("eth0", "fd00::1/64").unwrap();
    peer_ns.addr_add("eth0", "10.0.0.2/30").unwrap();
    peer_ns.addr_add("eth0", "fd00::2/64").unwrap();
    (dir, us_ns, peer_ns)
}

/// Runs `f` on a new thread that has entered the namespace at `path` (setns(2) on that thread
/// only, so everything its runtime opens lives there), with a current-thread runtime.
pub fn in_ns_thread(
    path: std::path::PathBuf,
    f: impl FnOnce(&tokio::runtime::Runtime) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        f(&rt);
    })
}

/// Our speaker on its own thread, inside `ns`, on a current-thread runtime.
pub struct NsSpeaker {
    pub speaker: Arc<Speaker>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsSpeaker {
    pub fn start(ns: &Netns, cfg: SpeakerConfig) -> Self {
        logs();
        let path = ns.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = in_ns_thread(path, move |rt| {
            rt.block_on(async move {
                let s = Arc::new(Speaker::start(cfg).await.unwrap());
                tx.send(s.clone()).unwrap();
                let _ = stop_rx.await;
                let _ = s.shutdown().await;
            });
        });
        let speaker = rx.recv().unwrap();
        Self {
            speaker,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn block<F: Future>(&self, f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    pub fn add_peer(&self, p: PeerConfig) {
        self.block(self.speaker.add_peer(p)).unwrap();
    }

    pub fn peer(&self, addr: IpAddr) -> PeerStatus {
        self.block(self.speaker.peers())
            .unwrap()
            .into_iter()
            .find(|p| p.address == addr)
            .unwrap()
    }

    pub fn routes(&self, family: Family, rib: RibKind) -> Vec<RouteEntry> {
        self.block(self.speaker.routes(RouteQuery { family, rib }))
            .unwrap()
    }

    /// Wait until our session with `addr` is Established; on timeout show both sides.
    pub fn wait_established(&self, addr: IpAddr, peer_output: impl Fn() -> String) {
        self.wait(
            "session established",
            || {
                let p = self.peer(addr);
                (p.state == State::Established)
                    .then_some(())
                    .ok_or(format!("{p:?}"))
            },
            peer_output,
        )
    }

    /// Poll `f` until it yields; on timeout panic with our last observation and the peer's
    /// own output (its CLI).
    pub fn wait<R>(
        &self,
        what: &str,
        mut f: impl FnMut() -> Result<R, String>,
        peer_output: impl Fn() -> String,
    ) -> R {
        let end = std::time::Instant::now() + T;
        loop {
            match f() {
                Ok(r) => return r,
                Err(obs) if std::time::Instant::now() > end => {
                    panic!(
                        "timed out waiting for {what}\nour side: {obs}\npeer says:\n{}",
                        peer_output()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    pub fn route(&self, family: Family, prefix: &str) -> Option<RouteEntry> {
        self.routes(family, RibKind::LocRib)
            .into_iter()
            .find(|r| r.prefix.to_string() == prefix && r.best)
    }
}

impl Drop for NsSpeaker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `speaker` example binary (built by `cargo test` along with the tests).
pub fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/speaker
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("speaker")
}
