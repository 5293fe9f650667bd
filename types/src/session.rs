//! BGP session states.

use serde::{Deserialize, Serialize};

/// RFC 4271 §8.2.2 session states. Spelt as Cilium's `BgpPeer.session-state` and
/// `peeringState` spell them (`open_sent`, ...), everywhere: logs, the admin API, metrics.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    #[default]
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    /// Every state, in RFC order.
    pub const ALL: [SessionState; 6] = [
        SessionState::Idle,
        SessionState::Connect,
        SessionState::Active,
        SessionState::OpenSent,
        SessionState::OpenConfirm,
        SessionState::Established,
    ];

    /// Cilium's name (`idle`, `connect`, `active`, `open_sent`, `open_confirm`, `established`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "idle",
            SessionState::Connect => "connect",
            SessionState::Active => "active",
            SessionState::OpenSent => "open_sent",
            SessionState::OpenConfirm => "open_confirm",
            SessionState::Established => "established",
        }
    }

    /// Parses Cilium's name.
    pub fn parse(s: &str) -> Option<Self> {
        SessionState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_everywhere() {
        for s in SessionState::ALL {
            assert_eq!(SessionState::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(SessionState::OpenSent.as_str(), "open_sent");
        assert_eq!(SessionState::parse("open-sent"), None);
    }
}
