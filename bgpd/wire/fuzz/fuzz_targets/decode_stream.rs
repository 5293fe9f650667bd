#![no_main]
//! Whole-message stream decoding through the tokio-util codec, with 2- and 4-octet contexts.

use bgpd_wire::{BgpCodec, Notification};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let mut codec = BgpCodec::new(ctx_from(sel));
    let mut buf = BytesMut::new();
    // Feed in pieces whose size also comes from the selector, to exercise partial frames.
    let step = usize::from(sel >> 5) * 37 + 1;
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let _ = Notification::from(&e).to_string();
                    return;
                }
            }
        }
    }
});
