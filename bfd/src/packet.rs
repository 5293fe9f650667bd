//! The BFD Control packet (RFC 5880 §4.1) and its codec.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! ```
//!
//! [`ControlPacket::decode`] runs every reception check of RFC 5880 §6.8.6 that needs only the
//! packet itself; the checks that need session state (discriminator lookup, state
//! transitions) are in [`crate::fsm`].

use crate::error::DecodeError;
use crate::reader::Reader;

/// Length of the mandatory section, and of every packet this crate sends (no authentication).
pub const CONTROL_LEN: usize = 24;

/// The only protocol version (RFC 5880 §4.1).
pub const VERSION: u8 = 1;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// Session state as carried in the Sta field (RFC 5880 §4.1, §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0: administratively held down.
    AdminDown,
    /// 1: down (initial state).
    Down,
    /// 2: the remote said Down; waiting for it to see us.
    Init,
    /// 3: up.
    Up,
}

impl State {
    /// The two-bit wire value.
    pub fn to_bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// From the two-bit wire value (higher bits ignored).
    pub fn from_bits(b: u8) -> Self {
        match b & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

/// Diagnostic code (RFC 5880 §4.1): why the sender's session last went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: No Diagnostic.
    None,
    /// 1: Control Detection Time Expired.
    ControlDetectionTimeExpired,
    /// 2: Echo Function Failed.
    EchoFunctionFailed,
    /// 3: Neighbor Signaled Session Down.
    NeighborSignaledDown,
    /// 4: Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdminDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9-31: reserved; kept so a received value is not lost.
    Reserved(u8),
}

impl Diag {
    /// The five-bit wire value.
    pub fn to_bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(v) => v & 0x1f,
        }
    }

    /// From the five-bit wire value (higher bits ignored).
    pub fn from_bits(b: u8) -> Self {
        match b & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            v => Diag::Reserved(v),
        }
    }
}

impl std::fmt::Display for State {
    /// Lower case, as FRR prints it: `admin_down`, `down`, `init`, `up`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        })
    }
}

impl std::fmt::Display for Diag {
    /// As RFC 5880 §4.1 names the diagnostics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diag::None => f.write_str("none"),
            Diag::ControlDetectionTimeExpired => f.write_str("control detection time expired"),
            Diag::EchoFunctionFailed => f.write_str("echo function failed"),
            Diag::NeighborSignaledDown => f.write_str("neighbor signaled session down"),
            Diag::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diag::PathDown => f.write_str("path down"),
            Diag::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diag::AdminDown => f.write_str("administratively down"),
            Diag::ReverseConcatenatedPathDown => f.write_str("reverse concatenated path down"),
            Diag::Reserved(v) => write!(f, "reserved ({v})"),
        }
    }
}

/// A BFD Control packet without authentication section. Intervals are in microseconds, as
/// on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    /// Diag.
    pub diag: Diag,
    /// Sta.
    pub state: State,
    /// P: the sender asks for a Final (poll sequence, §6.5).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub cpi: bool,
    /// D: demand mode (not implemented here; we never set it and ignore it on receive).
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discr: u32,
    /// Your Discriminator.
    pub your_discr: u32,
    /// Desired Min TX Interval, µs.
    pub desired_min_tx: u32,
    /// Required Min RX Interval, µs.
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval, µs (we always send 0: no echo function).
    pub required_min_echo_rx: u32,
}

impl ControlPacket {
    /// Parses and checks one datagram payload (RFC 5880 §6.8.6, in its order). Never panics.
    ///
    /// Octets past the Length field are ignored, as the RFC's check is only "Length greater
    /// than the payload".
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        let truncated = DecodeError::Truncated {
            len: datagram.len(),
        };
        let mut r = Reader::new(datagram);
        let [b0, b1, detect_mult, length] = r.array::<4>().ok_or(truncated.clone())?;
        let version = b0 >> 5;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let auth = b1 & FLAG_AUTH != 0;
        // §6.8.6: "less than the minimum correct value (24 if the A bit is clear, 26
        // otherwise)".
        let min: u8 = if auth { 26 } else { 24 };
        if length < min {
            return Err(DecodeError::LengthTooSmall { length, min });
        }
        if usize::from(length) > datagram.len() {
            return Err(DecodeError::LengthExceedsDatagram {
                length,
                datagram: datagram.len(),
            });
        }
        // From here the datagram holds at least `length` >= 24 octets.
        let my_discr = r.u32().ok_or(truncated.clone())?;
        let your_discr = r.u32().ok_or(truncated.clone())?;
        let desired_min_tx = r.u32().ok_or(truncated.clone())?;
        let required_min_rx = r.u32().ok_or(truncated.clone())?;
        let required_min_echo_rx = r.u32().ok_or(truncated)?;
        let state = State::from_bits(b1 >> 6);
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if b1 & FLAG_MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        if my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::ZeroYourDiscriminator { state });
        }
        if auth {
            // §6.8.6: with bfd.AuthType zero (no authentication configured), "If the A bit is
            // set and no authentication is in use (bfd.AuthType is zero), the packet MUST be
            // discarded."
            return Err(DecodeError::AuthenticationPresent { auth_type: r.u8() });
        }
        Ok(ControlPacket {
            diag: Diag::from_bits(b0),
            state,
            poll: b1 & FLAG_POLL != 0,
            final_: b1 & FLAG_FINAL != 0,
            cpi: b1 & FLAG_CPI != 0,
            demand: b1 & FLAG_DEMAND != 0,
            detect_mult,
            my_discr,
            your_discr,
            desired_min_tx,
            required_min_rx,
            required_min_echo_rx,
        })
    }

    /// The 24-octet wire form (A and M bits clear, Length 24).
    ///
    /// A packet with both P and F set is encoded as given; RFC 5880 §6.8.7 forbids sending it,
    /// which the FSM guarantees.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut flags = self.state.to_bits() << 6;
        for (on, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.cpi, FLAG_CPI),
            (self.demand, FLAG_DEMAND),
        ] {
            if on {
                flags |= bit;
            }
        }
        let mut out = [0u8; CONTROL_LEN];
        let head = [
            (VERSION << 5) | self.diag.to_bits(),
            flags,
            self.detect_mult,
            24,
        ];
        let words = [
            self.my_discr,
            self.your_discr,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ];
        let (h, rest) = out.split_at_mut(4);
        h.copy_from_slice(&head);
        for (chunk, w) in rest.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diag::ControlDetectionTimeExpired,
            state: State::Up,
            poll: true,
            final_: false,
            cpi: true,
            demand: false,
            detect_mult: 3,
            my_discr: 0x0102_0304,
            your_discr: 0xa0b0_c0d0,
            desired_min_tx: 300_000,
            required_min_rx: 250_000,
            required_min_echo_rx: 0,
        }
    }

    #[test]
    fn encodes_rfc_layout() {
        let b = sample().encode();
        assert_eq!(b[0], 0x21, "version 1, diag 1");
        assert_eq!(b[1], 0xc0 | 0x20 | 0x08, "Up, P, C");
        assert_eq!(b[2], 3);
        assert_eq!(b[3], 24);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[8..12], &[0xa0, 0xb0, 0xc0, 0xd0]);
        assert_eq!(&b[12..16], &300_000u32.to_be_bytes());
        assert_eq!(&b[16..20], &250_000u32.to_be_bytes());
        assert_eq!(&b[20..24], &[0, 0, 0, 0]);
    }

    #[test]
    fn round_trips_every_state_diag_and_flag() {
        for s in 0..4 {
            for d in 0..32 {
                for flags in 0..16u8 {
                    let mut p = sample();
                    p.state = State::from_bits(s);
                    p.diag = Diag::from_bits(d);
                    p.poll = flags & 1 != 0;
                    p.final_ = flags & 2 != 0;
                    p.cpi = flags & 4 != 0;
                    p.demand = flags & 8 != 0;
                    let back = ControlPacket::decode(&p.encode()).unwrap();
                    assert_eq!(back, p);
                    assert_eq!(back.diag.to_bits(), d);
                }
            }
        }
    }

    #[test]
    fn decodes_an_initial_down_packet() {
        // Hand-written in the shape of a first packet: Down, no remote discriminator yet,
        // 1 s / 300 ms, echo 50 ms (the values FRR 8.4 advertises).
        let b = [
            0x20, 0x40, 0x03, 0x18, 0x5a, 0x1e, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f,
            0x42, 0x40, 0x00, 0x04, 0x93, 0xe0, 0x00, 0x00, 0xc3, 0x50,
        ];
        let p = ControlPacket::decode(&b).unwrap();
        assert_eq!(p.state, State::Down);
        assert_eq!(p.diag, Diag::None);
        assert_eq!(p.my_discr, 0x5a1e_0007);
        assert_eq!(p.your_discr, 0);
        assert_eq!(p.desired_min_tx, 1_000_000);
        assert_eq!(p.required_min_rx, 300_000);
        assert_eq!(p.required_min_echo_rx, 50_000);
    }

    #[test]
    fn trailing_octets_are_ignored() {
        let mut b = sample().encode().to_vec();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(ControlPacket::decode(&b).unwrap(), sample());
    }

    fn with(f: impl FnOnce(&mut [u8; 24])) -> Result<ControlPacket, DecodeError> {
        let mut b = sample().encode();
        f(&mut b);
        ControlPacket::decode(&b)
    }

    #[test]
    fn rejects_short_datagrams() {
        let b = sample().encode();
        for n in 0..24 {
            let e = ControlPacket::decode(&b[..n]).unwrap_err();
            // A header that claims 24 octets in a shorter datagram fails the length check;
            // fewer than 4 octets fail before any field is read.
            assert!(
                matches!(
                    e,
                    DecodeError::Truncated { .. } | DecodeError::LengthExceedsDatagram { .. }
                ),
                "{n}: {e:?}"
            );
        }
        assert_eq!(
            ControlPacket::decode(&[]),
            Err(DecodeError::Truncated { len: 0 })
        );
    }

    #[test]
    fn rejects_wrong_version() {
        for v in [0u8, 2, 7] {
            assert_eq!(
                with(|b| b[0] = (v << 5) | 1),
                Err(DecodeError::UnsupportedVersion { version: v })
            );
        }
    }

    #[test]
    fn rejects_bad_length_fields() {
        assert_eq!(
            with(|b| b[3] = 23),
            Err(DecodeError::LengthTooSmall {
                length: 23,
                min: 24
            })
        );
        assert_eq!(
            with(|b| b[3] = 25),
            Err(DecodeError::LengthExceedsDatagram {
                length: 25,
                datagram: 24
            })
        );
        // With the A bit the minimum is 26.
        assert_eq!(
            with(|b| {
                b[1] |= FLAG_AUTH;
                b[3] = 24;
            }),
            Err(DecodeError::LengthTooSmall {
                length: 24,
                min: 26
            })
        );
    }

    #[test]
    fn rejects_zero_detect_mult_multipoint_and_zero_discriminators() {
        assert_eq!(with(|b| b[2] = 0), Err(DecodeError::ZeroDetectMult));
        assert_eq!(
            with(|b| b[1] |= FLAG_MULTIPOINT),
            Err(DecodeError::Multipoint)
        );
        assert_eq!(
            with(|b| b[4..8].fill(0)),
            Err(DecodeError::ZeroMyDiscriminator)
        );
        assert_eq!(
            with(|b| b[8..12].fill(0)),
            Err(DecodeError::ZeroYourDiscriminator { state: State::Up })
        );
        // Your Discriminator 0 is fine in Down and AdminDown (the remote does not know us yet).
        for st in [State::Down, State::AdminDown] {
            let p = with(|b| {
                b[1] = (b[1] & 0x3f) | (st.to_bits() << 6);
                b[8..12].fill(0);
            })
            .unwrap();
            assert_eq!(p.state, st);
            assert_eq!(p.your_discr, 0);
        }
    }

    #[test]
    fn rejects_authentication() {
        let mut b = [0u8; 28];
        b[..24].copy_from_slice(&sample().encode());
        b[1] |= FLAG_AUTH;
        b[3] = 28;
        b[24] = 1; // Simple Password
        b[25] = 4;
        assert_eq!(
            ControlPacket::decode(&b),
            Err(DecodeError::AuthenticationPresent { auth_type: Some(1) })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep (the fuzz target does the real work): every prefix of
        // a pseudo-random stream, and every single-octet mutation of a valid packet.
        let mut x: u32 = 0x1234_5678;
        let mut buf = Vec::new();
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf.push(x.to_be_bytes()[0]);
            let _ = ControlPacket::decode(&buf[buf.len().saturating_sub(40)..]);
        }
        let good = sample().encode();
        for i in 0..good.len() {
            for v in 0..=255u8 {
                let mut b = good;
                b[i] = v;
                if let Ok(p) = ControlPacket::decode(&b) {
                    assert_eq!(p.encode()[4..], b[4..], "fields survive");
                }
            }
        }
    }
}
