#![no_main]
//! The session FSM driven by arbitrary packets, timers and admin inputs: never panics, never
//! sends a packet with both Poll and Final (RFC 5880 §6.8.7), and always sends valid packets.

use std::time::{Duration, Instant};

use bfd::fsm::{Action, Input, Now, Session, SessionConfig};
use bfd::ControlPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut s = Session::new(SessionConfig {
        local_discr: 7,
        desired_min_tx: 300_000,
        required_min_rx: 300_000,
        detect_mult: 3,
    });
    let t0 = Instant::now();
    let mut t = t0;
    for (i, chunk) in data.chunks(26).enumerate() {
        let Some((&op, rest)) = chunk.split_first() else {
            break;
        };
        t += Duration::from_millis(u64::from(op >> 3) * 10);
        let input = match op & 7 {
            0 => Input::Start,
            1 => Input::TxTimer,
            2 => Input::DetectTimer,
            3 => Input::AdminDown,
            4 => Input::AdminUp,
            5 => Input::SetTimers {
                desired_min_tx: u32::from(rest.first().copied().unwrap_or(1)) * 1000,
                required_min_rx: u32::from(rest.get(1).copied().unwrap_or(1)) * 1000,
                detect_mult: rest.get(2).copied().unwrap_or(1),
            },
            _ => match ControlPacket::decode(rest) {
                Ok(p) => Input::Received(p),
                Err(_) => continue,
            },
        };
        let now = Now {
            at: t,
            random: u32::try_from(i).unwrap_or(0),
        };
        for a in s.handle(input, now) {
            if let Action::Send(p) = a {
                assert!(!(p.poll && p.final_));
                assert_eq!(ControlPacket::decode(&p.encode()).map(|q| q.my_discr), Ok(7));
            }
        }
    }
});
