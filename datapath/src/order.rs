//! The ordering policy between rackd's programs on one hook of one device.
//! Pure: [`crate::attach`] reads the device's chain, asks [`place`] where a
//! program goes and turns the answer into a TCX `LinkOrder`.
//!
//! The policy: a chain is our [`Band::BeforeForeign`] programs by rank, then
//! the foreign programs, then our [`Band::AfterForeign`] programs by rank.
//! Attaching one of ours keeps that shape whatever order our programs are
//! attached in:
//! - `BeforeForeign`: right after our highest-ranked program of the band
//!   that ranks lower, else first of all;
//! - `AfterForeign`: right before our lowest-ranked program of the band that
//!   ranks higher, else last of all.
//!
//! Anchoring on our own programs (never on a foreign one) keeps our relative
//! order even when a foreign program has put itself in between.

use crate::registry::{AttachPoint, Band, ProgramKind, ProgramSpec};

/// Where a program sits in the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Its hook.
    pub attach: AttachPoint,
    /// Its side of the foreign programs.
    pub band: Band,
    /// Its order within the band (lower first).
    pub rank: u16,
}

impl ProgramSpec {
    /// The program's place in the ordering policy.
    pub const fn position(&self) -> Position {
        Position {
            attach: self.attach,
            band: self.band,
            rank: self.rank,
        }
    }
}

/// One program in a device's chain, in chain order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot<K = ProgramKind> {
    /// One of ours.
    Ours(K),
    /// Anybody else's.
    Foreign,
}

/// Where to attach a program in a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor<K = ProgramKind> {
    /// Before every program.
    First,
    /// After every program.
    Last,
    /// Immediately before this program of ours.
    Before(K),
    /// Immediately after this program of ours.
    After(K),
}

/// A program the policy cannot place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError<K: std::fmt::Debug = ProgramKind> {
    /// XDP holds one program per device and one is there.
    #[error("the device's XDP hook is taken by {holder:?}")]
    XdpTaken {
        /// Who holds it.
        holder: Slot<K>,
    },
}

/// Where `new` goes in `chain` (the programs on its hook of one device, in
/// order; `new` itself, if listed, is ignored).
pub fn place(new: ProgramKind, chain: &[Slot]) -> Result<Anchor, OrderError> {
    place_by(new, chain, |k| k.spec().position())
}

/// Whether `chain` has the policy's shape (see the module docs). A foreign
/// program that attached itself first, or last after our `AfterForeign`
/// programs, breaks it; attachment logs that, it cannot prevent it.
pub fn conforms(chain: &[Slot]) -> bool {
    conforms_by(chain, |k| k.spec().position())
}

fn place_by<K: Copy + PartialEq + std::fmt::Debug>(
    new: K,
    chain: &[Slot<K>],
    pos: impl Fn(K) -> Position,
) -> Result<Anchor<K>, OrderError<K>> {
    let me = pos(new);
    let others = chain.iter().filter(|s| **s != Slot::Ours(new));
    if me.attach == AttachPoint::Xdp {
        return match others.copied().next() {
            Some(holder) => Err(OrderError::XdpTaken { holder }),
            None => Ok(Anchor::First),
        };
    }
    let ours_in_band = others.filter_map(|s| match *s {
        Slot::Ours(k) => {
            let p = pos(k);
            (p.attach == me.attach && p.band == me.band).then_some((p.rank, k))
        }
        Slot::Foreign => None,
    });
    Ok(match me.band {
        Band::BeforeForeign => ours_in_band
            .filter(|(rank, _)| *rank < me.rank)
            .max_by_key(|(rank, _)| *rank)
            .map_or(Anchor::First, |(_, k)| Anchor::After(k)),
        Band::AfterForeign => ours_in_band
            .filter(|(rank, _)| *rank > me.rank)
            .min_by_key(|(rank, _)| *rank)
            .map_or(Anchor::Last, |(_, k)| Anchor::Before(k)),
    })
}

fn conforms_by<K: Copy>(chain: &[Slot<K>], pos: impl Fn(K) -> Position) -> bool {
    // Sort key: front band by rank, foreign, back band by rank.
    let key = |s: &Slot<K>| match *s {
        Slot::Ours(k) => {
            let p = pos(k);
            match p.band {
                Band::BeforeForeign => (0u8, p.rank),
                Band::AfterForeign => (2, p.rank),
            }
        }
        Slot::Foreign => (1, 0),
    };
    chain.windows(2).all(|w| match w {
        [a, b] => key(a) <= key(b),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Band = Band::BeforeForeign;
    const B: Band = Band::AfterForeign;

    /// Fake programs: (band, rank) at tc ingress, plus id 9 at XDP.
    fn pos(k: u8) -> Position {
        let (band, rank) = match k {
            0 => (F, 0),
            1 => (F, 10),
            2 => (F, 20),
            3 => (B, 5),
            4 => (B, 50),
            _ => (F, 0),
        };
        let attach = if k == 9 {
            AttachPoint::Xdp
        } else {
            AttachPoint::TcIngress
        };
        Position { attach, band, rank }
    }

    fn place_t(new: u8, chain: &[Slot<u8>]) -> Anchor<u8> {
        place_by(new, chain, pos).unwrap()
    }

    use Slot::{Foreign, Ours};

    #[test]
    fn front_band_goes_after_the_lower_ranked_else_first() {
        assert_eq!(place_t(1, &[]), Anchor::First);
        assert_eq!(place_t(1, &[Foreign]), Anchor::First);
        assert_eq!(place_t(1, &[Ours(0), Foreign]), Anchor::After(0));
        assert_eq!(place_t(1, &[Ours(2), Foreign]), Anchor::First);
        assert_eq!(place_t(2, &[Ours(0), Ours(1), Foreign]), Anchor::After(1));
        assert_eq!(place_t(0, &[Ours(1), Ours(2)]), Anchor::First);
        // The back band does not anchor the front band.
        assert_eq!(place_t(1, &[Foreign, Ours(3)]), Anchor::First);
        // A foreign program that put itself first does not move us behind it
        // when nothing of ours ranks lower...
        assert_eq!(place_t(0, &[Foreign, Ours(1)]), Anchor::First);
        // ...and our relative order wins when something does.
        assert_eq!(place_t(2, &[Foreign, Ours(1)]), Anchor::After(1));
    }

    #[test]
    fn back_band_goes_before_the_higher_ranked_else_last() {
        assert_eq!(place_t(3, &[]), Anchor::Last);
        assert_eq!(place_t(3, &[Ours(0), Foreign]), Anchor::Last);
        assert_eq!(place_t(3, &[Foreign, Ours(4)]), Anchor::Before(4));
        assert_eq!(place_t(4, &[Foreign, Ours(3)]), Anchor::Last);
    }

    #[test]
    fn itself_in_the_chain_is_ignored() {
        assert_eq!(place_t(1, &[Ours(1), Foreign]), Anchor::First);
        assert_eq!(place_t(9, &[Ours(9)]), Anchor::First);
    }

    #[test]
    fn xdp_takes_one_program() {
        assert_eq!(place_t(9, &[]), Anchor::First);
        assert_eq!(
            place_by(9, &[Foreign], pos),
            Err(OrderError::XdpTaken { holder: Foreign })
        );
    }

    fn apply(chain: &mut Vec<Slot<u8>>, new: u8, anchor: Anchor<u8>) {
        let at = |k| chain.iter().position(|s| *s == Ours(k)).unwrap();
        let i = match anchor {
            Anchor::First => 0,
            Anchor::Last => chain.len(),
            Anchor::Before(k) => at(k),
            Anchor::After(k) => at(k) + 1,
        };
        chain.insert(i, Ours(new));
    }

    fn permutations(items: &[u8]) -> Vec<Vec<u8>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for (i, first) in items.iter().enumerate() {
            let mut rest = items.to_vec();
            rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, *first);
                out.push(p);
            }
        }
        out
    }

    /// Every attach order of every subset of our programs, onto chains that
    /// already hold zero, one or two foreign programs, ends in the policy's
    /// order.
    #[test]
    fn any_attach_order_gives_the_policy_order() {
        let ours = [0u8, 1, 2, 3, 4];
        for mask in 1u32..(1 << ours.len()) {
            let subset: Vec<u8> = ours
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, k)| *k)
                .collect();
            let mut want: Vec<Slot<u8>> = Vec::new();
            let mut sorted = subset.clone();
            sorted.sort_by_key(|k| {
                let p = pos(*k);
                (p.band, p.rank)
            });
            for foreign in 0..3 {
                want.clear();
                want.extend(
                    sorted
                        .iter()
                        .filter(|k| pos(**k).band == F)
                        .map(|k| Ours(*k)),
                );
                want.extend(std::iter::repeat_n(Foreign, foreign));
                want.extend(
                    sorted
                        .iter()
                        .filter(|k| pos(**k).band == B)
                        .map(|k| Ours(*k)),
                );
                for order in permutations(&subset) {
                    let mut chain = vec![Foreign; foreign];
                    for k in &order {
                        let a = place_t(*k, &chain);
                        apply(&mut chain, *k, a);
                        assert!(conforms_by(&chain, pos), "{order:?}: {chain:?}");
                    }
                    assert_eq!(chain, want, "attach order {order:?}");
                }
            }
        }
    }

    #[test]
    fn conformance_check() {
        assert!(conforms_by::<u8>(&[], pos));
        assert!(conforms_by(
            &[Ours(0), Ours(1), Foreign, Foreign, Ours(3)],
            pos
        ));
        assert!(!conforms_by(&[Ours(1), Ours(0)], pos));
        assert!(!conforms_by(&[Foreign, Ours(0)], pos));
        assert!(!conforms_by(&[Ours(3), Foreign], pos));
        assert!(!conforms_by(&[Ours(4), Ours(3)], pos));
    }

    #[test]
    fn registry_programs_place_as_documented() {
        let r = ProgramKind::L2Responder;
        let p = ProgramKind::Probe;
        assert_eq!(place(r, &[]), Ok(Anchor::First));
        assert_eq!(place(r, &[Slot::Foreign, Slot::Ours(p)]), Ok(Anchor::First));
        assert_eq!(
            place(p, &[Slot::Ours(r), Slot::Foreign]),
            Ok(Anchor::After(r))
        );
        assert!(conforms(&[Slot::Ours(r), Slot::Ours(p), Slot::Foreign]));
        assert!(!conforms(&[Slot::Ours(p), Slot::Ours(r)]));
    }
}
