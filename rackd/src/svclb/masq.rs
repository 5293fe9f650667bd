//! ip-masq-agent's config file (`--ip-masq-agent-config-path`), followed while rackd runs, as
//! Cilium follows it: a missing or empty file means the defaults; a malformed one is reported
//! and the last good configuration stays in force (nothing is masqueraded by surprise).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rackd_model::rackd_types::condition::{reasons, types};
use rackd_model::rackd_types::{Condition, ObjectCondition};
use rackd_services::masq::MasqAgentConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The non-masquerade destinations in force and the file's problem, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasqState {
    /// Destinations never masqueraded (empty when the agent is off: the controller adds the
    /// cluster's pod CIDRs itself).
    pub non_masquerade: Vec<IpNet>,
    /// The file could not be used (the previous configuration stays).
    pub condition: Option<ObjectCondition>,
}

/// One read of the file: `Ok(None)` when it is missing.
fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state after reading `text` (`None`: missing), given the last state.
pub fn evaluate(path: &Path, text: Result<Option<String>, String>, last: &MasqState) -> MasqState {
    let problem = |message: String| MasqState {
        non_masquerade: last.non_masquerade.clone(),
        condition: Some(ObjectCondition {
            object: None,
            source: Some(format!("ip-masq-agent:{}", path.display())),
            condition: Condition::problem(types::INVALID_CONFIGURATION, reasons::INVALID, message),
        }),
    };
    match text {
        Err(e) => problem(format!("cannot read {}: {e}", path.display())),
        Ok(None) => MasqState {
            non_masquerade: MasqAgentConfig::missing().non_masquerade(),
            condition: None,
        },
        Ok(Some(t)) => match MasqAgentConfig::parse(&t) {
            Ok(c) => {
                if !c.ignored_keys.is_empty() {
                    warn!(path = %path.display(), keys = ?c.ignored_keys, "ip-masq-agent: keys ignored");
                }
                MasqState {
                    non_masquerade: c.non_masquerade(),
                    condition: None,
                }
            }
            Err(e) => problem(format!(
                "{}: {e}; the previous configuration stays in force",
                path.display()
            )),
        },
    }
}

/// Follows `path` (polled every `interval`; the file is small) until `stop`; `None` (the
/// agent off) publishes an empty state once.
pub fn spawn(
    path: Option<PathBuf>,
    interval: Duration,
    stop: CancellationToken,
) -> (watch::Receiver<Arc<MasqState>>, tokio::task::JoinHandle<()>) {
    let Some(path) = path else {
        let (tx, rx) = watch::channel(Arc::new(MasqState::default()));
        return (
            rx,
            tokio::spawn(async move {
                stop.cancelled().await;
                drop(tx);
            }),
        );
    };
    let first = evaluate(
        &path,
        read(&path).map_err(|e| e.to_string()),
        &MasqState::default(),
    );
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        let mut last_text: Option<Result<Option<String>, String>> = None;
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let p = path.clone();
            let text = tokio::task::spawn_blocking(move || read(&p).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if last_text.as_ref() == Some(&text) {
                continue;
            }
            last_text = Some(text.clone());
            let cur = tx.borrow().clone();
            let next = evaluate(&path, text, &cur);
            if *cur != next {
                info!(path = %path.display(), entries = next.non_masquerade.len(), problem = next.condition.is_some(), "ip-masq-agent configuration");
                tx.send_replace(Arc::new(next));
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().filter_map(|s| s.parse().ok()).collect()
    }

    #[test]
    fn missing_means_defaults_and_bad_text_keeps_the_last_good() {
        let p = Path::new("/etc/config/ip-masq-agent");
        let d = evaluate(p, Ok(None), &MasqState::default());
        assert!(d.condition.is_none());
        assert!(d.non_masquerade.contains(&nets(&["10.0.0.0/8"])[0]));
        let good = evaluate(
            p,
            Ok(Some("nonMasqueradeCIDRs: [10.1.0.0/16]\n".into())),
            &d,
        );
        assert!(good.condition.is_none());
        assert!(good.non_masquerade.contains(&nets(&["10.1.0.0/16"])[0]));
        assert!(!good.non_masquerade.contains(&nets(&["10.0.0.0/8"])[0]));
        for bad in ["nonMasqueradeCIDRs: [not-a-cidr]\n", "[1, 2]\n", "a: [\n"] {
            let b = evaluate(p, Ok(Some(bad.into())), &good);
            assert_eq!(b.non_masquerade, good.non_masquerade, "{bad}");
            let c = b.condition.unwrap_or_else(|| panic!("{bad}: no condition"));
            assert_eq!(c.condition.type_, types::INVALID_CONFIGURATION);
            assert!(c.condition.message.contains("ip-masq-agent"), "{c:?}");
        }
        let unreadable = evaluate(p, Err("permission denied".into()), &good);
        assert_eq!(unreadable.non_masquerade, good.non_masquerade);
        assert!(unreadable.condition.is_some());
    }
}
