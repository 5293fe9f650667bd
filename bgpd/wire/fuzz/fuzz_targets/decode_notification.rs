#![no_main]
//! NOTIFICATION bodies, RFC 9003 shutdown communication and the display names.

use bgpd_wire::{Message, SessionContext, decode_message};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let msg = framed(3, data, 4096);
    if let Ok(Message::Notification(n)) = decode_message(&msg, &SessionContext::default()) {
        let _ = n.shutdown_communication();
        let _ = n.to_string();
    }
});
