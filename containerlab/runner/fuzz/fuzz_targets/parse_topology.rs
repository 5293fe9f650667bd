//! The topology parser and the command splitter never panic, whatever the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rackd_lab::topo::parse(text, std::path::Path::new("/fuzz/t.clab.yml"), None);
    let _ = rackd_lab::shlex::split(text);
});
