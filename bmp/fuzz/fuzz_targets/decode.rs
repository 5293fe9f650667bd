#![no_main]
//! The BMP decoder on arbitrary byte streams: never panics, never claims more octets than it
//! was given, and whatever it accepts re-encodes to something that decodes to the same message
//! (RFC 7854 §4). Reserved flag bits and the IPv4 address's leading octets are not carried, so
//! the comparison is on the decoded form.

use bmp::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((m, used)) = Message::decode(rest) {
        assert!(used > 0 && used <= rest.len());
        if let Ok(wire) = m.encode() {
            assert_eq!(Message::decode(&wire).map(|(back, _)| back), Ok(m));
        }
        rest = rest.get(used..).unwrap_or_default();
    }
});
