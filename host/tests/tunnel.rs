//! The egress gateway's tunnel device against the real kernel, in its own namespace: created
//! as a collect-metadata VXLAN device, found again unchanged, replaced when a link of its name
//! is something else, deleted; loose rp_filter written. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use netlab::Netns;
use rackd_host::tunnel::{delete_link, ensure_vxlan, loose_rp_filter};
use rackd_host::{MacAddr, VxlanSpec};

fn run_in<F: std::future::Future>(ns: &Netns, f: F) -> F::Output {
    let _inside = ns.enter_guard().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn spec() -> VxlanSpec {
    VxlanSpec {
        name: "rackd_vxlan".into(),
        port: 8472,
        mac: MacAddr([0x0a, 0xce, 0, 0, 0, 1]),
        mtu: None,
    }
}

#[test]
fn tunnel_device_is_created_kept_replaced_and_deleted() {
    let ns = Netns::new("tun").unwrap();
    let first = run_in(&ns, ensure_vxlan(&spec())).unwrap();
    let d = ns.ip(&["-d", "link", "show", "rackd_vxlan"]).unwrap();
    for want in [
        "vxlan external",
        "dstport 8472",
        "nolearning",
        "0a:ce:00:00:00:01",
        "UP",
    ] {
        assert!(d.contains(want), "{want} in {d}");
    }
    // Found again: same device, not recreated.
    assert_eq!(run_in(&ns, ensure_vxlan(&spec())).unwrap(), first);

    // Taken down by someone: brought up again.
    ns.ip(&["link", "set", "rackd_vxlan", "down"]).unwrap();
    assert_eq!(run_in(&ns, ensure_vxlan(&spec())).unwrap(), first);
    assert!(
        ns.ip(&["link", "show", "rackd_vxlan"])
            .unwrap()
            .contains(",UP")
    );

    // Another port: replaced.
    let other = VxlanSpec {
        port: 4789,
        ..spec()
    };
    let second = run_in(&ns, ensure_vxlan(&other)).unwrap();
    assert_ne!(second, first);
    assert!(
        ns.ip(&["-d", "link", "show", "rackd_vxlan"])
            .unwrap()
            .contains("dstport 4789")
    );

    // A veth of that name (this kernel has no dummy driver): replaced by the tunnel.
    run_in(&ns, delete_link("rackd_vxlan")).unwrap();
    ns.ip(&[
        "link",
        "add",
        "rackd_vxlan",
        "type",
        "veth",
        "peer",
        "name",
        "rvx_peer",
    ])
    .unwrap();
    run_in(&ns, ensure_vxlan(&spec())).unwrap();
    assert!(
        ns.ip(&["-d", "link", "show", "rackd_vxlan"])
            .unwrap()
            .contains("vxlan external")
    );

    // rp_filter, written inside the namespace (the test thread enters it).
    {
        let _inside = ns.enter_guard().unwrap();
        loose_rp_filter("rackd_vxlan").unwrap();
        let v = std::fs::read_to_string("/proc/sys/net/ipv4/conf/rackd_vxlan/rp_filter").unwrap();
        assert_eq!(v.trim(), "2");
        assert!(loose_rp_filter("../all").is_err(), "a path, not a device");
    }

    assert!(run_in(&ns, delete_link("rackd_vxlan")).unwrap());
    assert!(!run_in(&ns, delete_link("rackd_vxlan")).unwrap(), "absent");
    assert!(ns.ip(&["link", "show", "rackd_vxlan"]).is_err());
}
