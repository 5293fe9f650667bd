#![no_main]
//! decode -> encode -> decode must reach a fixpoint: the second decode equals the first for
//! everything our encoder normalises (Partial bit on passed-on attributes, host bits, etc.).

use bgpd_wire::{Message, decode_message, encode_to_bytes};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Some((&t, body)) = rest.split_first() else { return };
    // Same context on both sides so ADD-PATH rx/tx agree.
    let mut ctx = ctx_from(sel);
    ctx.add_path_tx = ctx.add_path_rx.clone();
    let msg = framed(1 + t % 5, body, ctx.max_message_len());
    let Ok(m1) = decode_message(&msg, &ctx) else { return };
    let Ok(b2) = encode_to_bytes(&m1, &ctx) else { return };
    let m2 = decode_message(&b2, &ctx).expect("our own encoding must decode");
    let b3 = encode_to_bytes(&m2, &ctx).expect("re-encode");
    assert_eq!(b2, b3, "encoding is not a fixpoint");
    let m3 = decode_message(&b3, &ctx).expect("decode again");
    assert_eq!(m2, m3);
    // Fields that survive unchanged from the peer's bytes.
    if let (Message::Update(u1), Message::Update(u2)) = (&m1, &m2) {
        assert_eq!(u1.nlri, u2.nlri);
        assert_eq!(u1.withdrawn, u2.withdrawn);
        if u1.treat_as_withdraw.is_none() {
            let (a1, a2) = (u1.attributes.as_deref(), u2.attributes.as_deref());
            assert_eq!(a1.map(|a| &a.as_path), a2.map(|a| &a.as_path));
            assert_eq!(a1.map(|a| &a.communities), a2.map(|a| &a.communities));
        }
    }
});
