#![no_main]
//! OPEN bodies: parameters, RFC 9072 extended parameters, capabilities, negotiation.

use bgpd_wire::{Message, SessionContext, decode_message, encode_to_bytes};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let msg = framed(1, data, 4096);
    if let Ok(Message::Open(o)) = decode_message(&msg, &SessionContext::default()) {
        let _ = o.asn();
        let ctx = SessionContext::negotiate(&o, &o);
        let _ = ctx.max_message_len();
        let _ = encode_to_bytes(&Message::Open(o), &ctx);
    }
});
