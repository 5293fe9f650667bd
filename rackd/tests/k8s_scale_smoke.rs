//! The Kubernetes scale benchmark (`benches/k8s_scale.rs`) at its smoke size, so CI keeps it
//! working: 200 Services through a real API server to an FRR ToR, 5 s windows, with the
//! API server's create pace beside it. Asserts only that every figure was measured, never how fast.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;
mod k8scommon;
mod k8sscale;

#[test]
fn k8s_scale_benchmark_smoke() {
    let r = k8sscale::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_rackd")),
        &k8sscale::Config {
            services: 200,
            window_s: 5,
        },
    );
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(r.create_s > 0.0 && r.all_ips_s > 0.0, "{r:?}");
    assert!(
        r.all_routes_kernel_s > 0.0 && r.all_routes_bgp_s > 0.0,
        "{r:?}"
    );
    assert_eq!(r.created.last().map(|c| c.0), Some(200), "{r:?}");
    assert_eq!(r.with_ip.last().map(|c| c.0), Some(200), "{r:?}");
    // rackd's requests were audited: it watched, and the leader wrote 200 statuses.
    assert!(
        r.load
            .requests
            .keys()
            .any(|k| k.starts_with("services/status")),
        "{:?}",
        r.load.requests
    );
    assert!(r.status_writes >= 200, "{r:?}");
    assert!(r.steady.seconds >= 5.0 && r.idle.seconds >= 5.0, "{r:?}");
}
