//! AS_PATH checks for UPDATEs from external peers: the RFC 4271 §6.3 first-AS check and the
//! RFC 5065 §5 confederation-segment check.
//!
//! Both failures are a "Malformed AS_PATH" (RFC 4271 §6.3, RFC 5065 §5), which RFC 7606 §7.2
//! turns from a session reset into treat-as-withdraw: the UPDATE's routes are withdrawn, the
//! session stays up.
//!
//! The checks run on the path as the codec hands it over, which on a 2-octet session is
//! already the path rebuilt from AS_PATH and AS4_PATH (RFC 6793 §4.2.3): the peer's own AS is
//! then the leftmost AS_PATH entry that AS4_PATH does not cover, so it survives the merge.

use bgpd_wire::{AsPath, AsSegment};

/// The kind of AS_PATH segment (RFC 4271 §4.3, RFC 5065 §3), for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

impl SegmentKind {
    /// The kind of `s`.
    pub fn of(s: &AsSegment) -> Self {
        match s {
            AsSegment::Set(_) => Self::Set,
            AsSegment::Sequence(_) => Self::Sequence,
            AsSegment::ConfedSequence(_) => Self::ConfedSequence,
            AsSegment::ConfedSet(_) => Self::ConfedSet,
        }
    }
}

impl std::fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Set => "AS_SET",
            Self::Sequence => "AS_SEQUENCE",
            Self::ConfedSequence => "AS_CONFED_SEQUENCE",
            Self::ConfedSet => "AS_CONFED_SET",
        })
    }
}

/// Why the AS_PATH of an UPDATE from an external peer is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AsPathError {
    /// RFC 4271 §5.1.2: a speaker prepends its own AS when it advertises to an external
    /// peer, so an empty AS_PATH has no leftmost AS to match (first-AS check).
    #[error("empty AS_PATH from external peer AS {peer_as} (its AS must come first)")]
    Empty { peer_as: u32 },
    /// RFC 4271 §5.1.2: the sender puts its AS into a new leading AS_SEQUENCE when the path
    /// starts with an AS_SET, so a leading AS_SET (or a confederation segment) means it did
    /// not prepend; an AS_SET has no order, so there is no leftmost AS either.
    #[error("AS_PATH from external peer AS {peer_as} starts with {kind}, not its AS")]
    FirstSegment { peer_as: u32, kind: SegmentKind },
    /// RFC 4271 §6.3: the leftmost AS is not the peer's.
    #[error("leftmost AS {first} is not external peer AS {peer_as}")]
    FirstAs { peer_as: u32, first: u32 },
    /// RFC 5065 §5: confederation segments from a peer outside our confederation. We run no
    /// confederation, so every external peer is outside it.
    #[error("{kind} segment in the AS_PATH from external peer AS {peer_as}")]
    Confederation { peer_as: u32, kind: SegmentKind },
}

/// The checks for an UPDATE from the external peer `peer_as` (the AS from its OPEN, RFC 6793
/// §4.1 for 4-octet ASNs). `enforce_first_as` is [`crate::PeerConfig::enforce_first_as`];
/// the confederation check always applies, as in FRR.
pub fn check_external(
    path: &AsPath,
    peer_as: u32,
    enforce_first_as: bool,
) -> Result<(), AsPathError> {
    if let Some(kind) = path
        .segments
        .iter()
        .map(SegmentKind::of)
        .find(|k| matches!(k, SegmentKind::ConfedSequence | SegmentKind::ConfedSet))
    {
        return Err(AsPathError::Confederation { peer_as, kind });
    }
    if enforce_first_as {
        first_as(path, peer_as)?;
    }
    Ok(())
}

/// RFC 4271 §6.3 first-AS check alone: the path must start with an AS_SEQUENCE whose first
/// AS is `peer_as`.
pub fn first_as(path: &AsPath, peer_as: u32) -> Result<(), AsPathError> {
    match path.segments.first() {
        None => Err(AsPathError::Empty { peer_as }),
        Some(AsSegment::Sequence(v)) => match v.first() {
            Some(&first) if first == peer_as => Ok(()),
            Some(&first) => Err(AsPathError::FirstAs { peer_as, first }),
            // The codec never yields an empty segment (RFC 7606 §7.2 makes it malformed);
            // a caller-built one has no leftmost AS either.
            None => Err(AsPathError::Empty { peer_as }),
        },
        Some(s) => Err(AsPathError::FirstSegment {
            peer_as,
            kind: SegmentKind::of(s),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: Vec<AsSegment>) -> AsPath {
        AsPath { segments }
    }

    #[test]
    fn leftmost_as_must_be_the_peers() {
        let ok = path(vec![AsSegment::Sequence(vec![65002, 65010])]);
        assert_eq!(first_as(&ok, 65002), Ok(()));
        assert_eq!(
            first_as(&ok, 65003),
            Err(AsPathError::FirstAs {
                peer_as: 65003,
                first: 65002
            })
        );
        // Only the leftmost AS counts, not the peer's AS further down (RFC 4271 §6.3).
        let later = path(vec![AsSegment::Sequence(vec![65010, 65002])]);
        assert_eq!(
            first_as(&later, 65002),
            Err(AsPathError::FirstAs {
                peer_as: 65002,
                first: 65010
            })
        );
        // A sequence after a prepended one: fine.
        let two = path(vec![
            AsSegment::Sequence(vec![65002]),
            AsSegment::Set(vec![1, 2]),
        ]);
        assert_eq!(first_as(&two, 65002), Ok(()));
    }

    #[test]
    fn empty_path_fails() {
        assert_eq!(
            first_as(&AsPath::default(), 65002),
            Err(AsPathError::Empty { peer_as: 65002 })
        );
        assert_eq!(
            first_as(&path(vec![AsSegment::Sequence(vec![])]), 65002),
            Err(AsPathError::Empty { peer_as: 65002 })
        );
    }

    #[test]
    fn leading_as_set_fails_even_when_it_holds_the_peer() {
        // The peer's AS inside a leading set: the peer did not prepend (RFC 4271 §5.1.2).
        let p = path(vec![AsSegment::Set(vec![65002, 65010])]);
        assert_eq!(
            first_as(&p, 65002),
            Err(AsPathError::FirstSegment {
                peer_as: 65002,
                kind: SegmentKind::Set
            })
        );
    }

    #[test]
    fn confederation_segments_from_external_peers_fail() {
        let lead = path(vec![
            AsSegment::ConfedSequence(vec![64512]),
            AsSegment::Sequence(vec![65002]),
        ]);
        let err = Err(AsPathError::Confederation {
            peer_as: 65002,
            kind: SegmentKind::ConfedSequence,
        });
        assert_eq!(check_external(&lead, 65002, true), err);
        // Independent of the first-AS switch (RFC 5065 §5, FRR does the same).
        assert_eq!(check_external(&lead, 65002, false), err);
        let inner = path(vec![
            AsSegment::Sequence(vec![65002]),
            AsSegment::ConfedSet(vec![64512]),
        ]);
        assert_eq!(
            check_external(&inner, 65002, true),
            Err(AsPathError::Confederation {
                peer_as: 65002,
                kind: SegmentKind::ConfedSet
            })
        );
        // The first-AS check alone also refuses a leading confederation segment.
        assert_eq!(
            first_as(&lead, 65002),
            Err(AsPathError::FirstSegment {
                peer_as: 65002,
                kind: SegmentKind::ConfedSequence
            })
        );
    }

    #[test]
    fn switch_off_accepts_a_route_server_path() {
        // RFC 7947 §2.2.2.1: a route server does not prepend its AS.
        let rs = path(vec![AsSegment::Sequence(vec![65010, 65020])]);
        assert!(check_external(&rs, 65002, true).is_err());
        assert_eq!(check_external(&rs, 65002, false), Ok(()));
        assert_eq!(check_external(&AsPath::default(), 65002, false), Ok(()));
    }

    /// An UPDATE on a 2-octet session (RFC 6793: an OLD peer) with `as_path` in 2-octet form
    /// and `as4_path`, decoded by the codec as the session would.
    fn decode_old(as_path: &[u16], as4_path: &[u32]) -> AsPath {
        use bgpd_wire::{Message, SessionContext, decode_message};
        let mut attrs = vec![0x40, 1, 1, 0];
        let seg2: Vec<u8> = as_path.iter().flat_map(|a| a.to_be_bytes()).collect();
        attrs.extend([0x40, 2, 2 + seg2.len() as u8, 2, as_path.len() as u8]);
        attrs.extend(seg2);
        attrs.extend([0x40, 3, 4, 10, 0, 0, 2]);
        let seg4: Vec<u8> = as4_path.iter().flat_map(|a| a.to_be_bytes()).collect();
        attrs.extend([0xc0, 17, 2 + seg4.len() as u8, 2, as4_path.len() as u8]);
        attrs.extend(seg4);
        let mut body = vec![0, 0];
        body.extend((attrs.len() as u16).to_be_bytes());
        body.extend(attrs);
        body.extend([24, 198, 51, 100]);
        let mut msg = vec![0xff; 16];
        msg.extend(((19 + body.len()) as u16).to_be_bytes());
        msg.push(2);
        msg.extend(body);
        match decode_message(&msg, &SessionContext::default()) {
            Ok(Message::Update(u)) => {
                assert_eq!(u.treat_as_withdraw, None, "{u:?}");
                u.attributes.map(|a| a.as_path.clone()).unwrap_or_default()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn as4_checks_the_rebuilt_path() {
        const AS_TRANS: u16 = 23456;
        // An OLD peer 65002 passing on a 4-octet origin: AS_PATH 65002 AS_TRANS, AS4_PATH
        // 4200000001. Rebuilt (RFC 6793 §4.2.3): 65002 4200000001, the peer first.
        let p = decode_old(&[65002, AS_TRANS], &[4_200_000_001]);
        assert_eq!(
            p.segments,
            vec![AsSegment::Sequence(vec![65002, 4_200_000_001])]
        );
        assert_eq!(check_external(&p, 65002, true), Ok(()));
        // The OLD peer did not prepend itself: AS4_PATH covers the whole AS_PATH and the
        // rebuilt path starts with the 4-octet AS, though AS_PATH alone starts with 65002.
        let p = decode_old(&[65002], &[4_200_000_001]);
        assert_eq!(
            check_external(&p, 65002, true),
            Err(AsPathError::FirstAs {
                peer_as: 65002,
                first: 4_200_000_001
            })
        );
    }

    #[test]
    fn messages_name_the_ases() {
        let e = AsPathError::FirstAs {
            peer_as: 65002,
            first: 65099,
        };
        assert_eq!(
            e.to_string(),
            "leftmost AS 65099 is not external peer AS 65002"
        );
        let e = AsPathError::FirstSegment {
            peer_as: 65002,
            kind: SegmentKind::Set,
        };
        assert_eq!(
            e.to_string(),
            "AS_PATH from external peer AS 65002 starts with AS_SET, not its AS"
        );
    }
}
