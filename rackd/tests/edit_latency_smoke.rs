//! The edit-latency benchmark (`benches/edit_latency.rs`) at its smoke size, so CI keeps it
//! working: 200 Services, three edits (add, withdraw, restore) against this build, with the
//! FRR ToR in namespaces. Asserts only that every figure was measured, never how fast.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;

use common::shape_bench::{self, Config};

#[test]
fn edit_latency_benchmark_smoke() {
    let r = shape_bench::run_one(
        "after",
        std::path::Path::new(env!("CARGO_BIN_EXE_rackd")),
        &Config {
            services: 200,
            edits: 3,
        },
        0,
    );
    let kinds: Vec<&str> = r.edits.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["add", "withdraw", "restore"]);
    for e in &r.edits {
        assert!(e.latency_ms > 0.0 && e.window_ms >= e.latency_ms, "{e:?}");
        let wire = e
            .wire_ms
            .unwrap_or_else(|| panic!("no UPDATE seen on the wire: {e:?}"));
        assert!(wire <= e.latency_ms, "{e:?}");
    }
    assert!(r.load_s > 0.0);
    assert!(!r.peers_idle_ms.is_empty() && !r.peers_loaded_ms.is_empty());
    let reply = {
        // The ceiling helpers run too.
        let c = shape_bench::peers_ceiling(b"{\"reply\":\"bgp-peers\",\"data\":[{}]}\n", 0.2);
        c.len()
    };
    assert!(reply > 0);
}
