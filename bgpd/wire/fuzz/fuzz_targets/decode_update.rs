#![no_main]
//! UPDATE bodies: attributes with RFC 7606 handling, MP_REACH/MP_UNREACH, NLRI, ADD-PATH.

use bgpd_wire::{Message, Notification, decode_message};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let ctx = ctx_from(sel);
    let msg = framed(2, body, ctx.max_message_len());
    match decode_message(&msg, &ctx) {
        Ok(Message::Update(u)) => {
            let _ = u.end_of_rib();
        }
        Ok(_) => {}
        Err(e) => {
            let _ = Notification::from(&e);
        }
    }
});
