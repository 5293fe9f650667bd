#![no_main]
//! The Control packet parser on arbitrary datagrams: never panics, and whatever it accepts
//! encodes back to the same fields (RFC 5880 §4.1).

use bfd::ControlPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ControlPacket::decode(data) {
        let wire = p.encode();
        assert_eq!(ControlPacket::decode(&wire), Ok(p));
        // Fields after the first four octets are carried verbatim.
        assert_eq!(wire.get(4..24), data.get(4..24));
    }
});
