//! Two sources as one: the configuration directory beside the Kubernetes API.
//!
//! Both feed the same store, each object under its own source name, so a key defined by both
//! follows the store's rule for duplicates: the first source in name order wins. The
//! directory's sources are absolute file paths (`/etc/rackd/...`) and the API's are
//! `k8s:<Kind>`; `/` sorts before `k`, so **a node-local file wins over the API** on a
//! conflict, and the API's definition is reported as a duplicate. That is the operator's
//! escape hatch on one node (pin a pool or a peer while the cluster's copy is being fixed);
//! it is a condition on the object, never silent.

use super::{Batch, ConfigSource, Health};

/// `a` and `b` as one source; see the module docs.
#[derive(Debug)]
pub struct Combined<A, B> {
    a: A,
    b: B,
    started: (bool, bool),
    health: (Health, Health),
    reported: Option<Health>,
    pending: Vec<rackd_model::SourceUpdate>,
}

impl<A: ConfigSource, B: ConfigSource> Combined<A, B> {
    /// Both sources, `a` first in `rackctl status`.
    pub fn new(a: A, b: B) -> Self {
        Self {
            a,
            b,
            started: (false, false),
            health: (Health::Ok, Health::Ok),
            reported: None,
            pending: Vec::new(),
        }
    }

    fn merged_health(&self) -> Health {
        let reasons: Vec<String> = [
            (&self.health.0, self.a.describe()),
            (&self.health.1, self.b.describe()),
        ]
        .into_iter()
        .filter_map(|(h, name)| match h {
            Health::Ok => None,
            Health::Unavailable { reason } => Some(format!("{name}: {reason}")),
        })
        .collect();
        if reasons.is_empty() {
            Health::Ok
        } else {
            Health::Unavailable {
                reason: reasons.join("; "),
            }
        }
    }
}

impl<A: ConfigSource + Send, B: ConfigSource + Send> ConfigSource for Combined<A, B>
where
    A: std::fmt::Debug,
    B: std::fmt::Debug,
{
    fn describe(&self) -> String {
        format!("{} + {}", self.a.describe(), self.b.describe())
    }

    async fn next(&mut self) -> Batch {
        loop {
            // Both `next`s are cancel-safe, so losing the race loses nothing.
            let (batch, from_a) = tokio::select! {
                b = self.a.next() => (b, true),
                b = self.b.next() => (b, false),
            };
            if from_a {
                self.started.0 = true;
                if let Some(h) = batch.health {
                    self.health.0 = h;
                }
            } else {
                self.started.1 = true;
                if let Some(h) = batch.health {
                    self.health.1 = h;
                }
            }
            self.pending.extend(batch.updates);
            if !(self.started.0 && self.started.1) {
                continue;
            }
            let health = self.merged_health();
            let changed = self.reported.as_ref() != Some(&health);
            if self.pending.is_empty() && !changed {
                continue;
            }
            if changed {
                self.reported = Some(health.clone());
            }
            return Batch {
                updates: std::mem::take(&mut self.pending),
                health: changed.then_some(health),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelSource;

    fn pool(name: &str) -> rackd_model::SourceUpdate {
        let parsed = rackd_model::parse_documents(
            name,
            "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  blocks: [{cidr: 10.9.0.0/24}]\n",
        );
        rackd_model::SourceContent::default().update_to(&parsed).0
    }

    #[tokio::test]
    async fn waits_for_both_then_merges_health() {
        let (ta, a) = ChannelSource::new("dir:/etc/rackd");
        let (tb, b) = ChannelSource::new("k8s:https://api");
        let mut c = Combined::new(a, b);
        assert_eq!(c.describe(), "dir:/etc/rackd + k8s:https://api");
        ta.send(Batch {
            updates: vec![pool("/etc/rackd/p.yaml")],
            health: Some(Health::Ok),
        })
        .unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_millis(50), c.next()).await;
        assert!(
            first.is_err(),
            "no first batch before both sources are loaded"
        );
        tb.send(Batch {
            updates: vec![pool("k8s:CiliumLoadBalancerIPPool")],
            health: Some(Health::Ok),
        })
        .unwrap();
        let b = c.next().await;
        assert_eq!(
            b.updates.len(),
            2,
            "the first batch holds both sources' content"
        );
        assert_eq!(b.health, Some(Health::Ok));

        tb.send(Batch {
            updates: Vec::new(),
            health: Some(Health::Unavailable {
                reason: "connection refused".into(),
            }),
        })
        .unwrap();
        let b = c.next().await;
        assert_eq!(
            b.health,
            Some(Health::Unavailable {
                reason: "k8s:https://api: connection refused".into()
            })
        );
        // The same health again is no batch; a change of content is one without health.
        tb.send(Batch {
            updates: Vec::new(),
            health: Some(Health::Unavailable {
                reason: "connection refused".into(),
            }),
        })
        .unwrap();
        ta.send(Batch {
            updates: vec![pool("/etc/rackd/q.yaml")],
            health: None,
        })
        .unwrap();
        let b = c.next().await;
        assert_eq!((b.updates.len(), b.health), (1, None));
    }

    /// The store's rule for a key both define: the node-local file wins, the API's copy is a
    /// duplicate.
    #[test]
    fn a_local_file_wins_over_the_api() {
        let mut store = rackd_model::Store::new(rackd_model::CheckOptions::default());
        store.apply(vec![
            pool("k8s:CiliumLoadBalancerIPPool"),
            pool("/etc/rackd/p.yaml"),
        ]);
        let errs = store.errors();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].location.source, "k8s:CiliumLoadBalancerIPPool");
    }
}
