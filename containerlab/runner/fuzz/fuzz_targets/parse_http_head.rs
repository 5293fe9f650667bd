//! The echo server's request head parser never panics, whatever a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackd_lab::echo::http;

fuzz_target!(|data: &[u8]| {
    let head = match http::head_len(data) {
        Some(n) => data.get(..n).unwrap_or(data),
        None => data,
    };
    if let Ok(req) = http::parse_head(head) {
        let _ = http::parse_stream_query(req.query.as_deref());
    }
});
