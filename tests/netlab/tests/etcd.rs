//! etcd starts inside a namespace and answers etcdctl, also from another namespace.
#![allow(clippy::unwrap_used)]

use netlab::etcd::Etcd;
use netlab::{LabDir, Netns, veth};

#[test]
fn etcd_put_get() {
    let dir = LabDir::new("nl-etcd").unwrap();
    let ens = Netns::new("nl-etcd").unwrap();
    let cns = Netns::new("nl-etcdc").unwrap();
    veth(&ens, "eth0", &cns, "eth0").unwrap();
    ens.addr_add("eth0", "10.0.2.1/30").unwrap();
    cns.addr_add("eth0", "10.0.2.2/30").unwrap();
    let etcd = Etcd::start(&ens, dir.path(), "e1", "10.0.2.1".parse().unwrap()).unwrap();
    etcd.put("/rackd/lease/a", "node-1").unwrap();
    assert_eq!(
        etcd.get("/rackd/lease/a").unwrap().as_deref(),
        Some("node-1")
    );
    assert_eq!(etcd.get("/rackd/lease/missing").unwrap(), None);
    // A client in another namespace reaches it over the veth.
    let out = cns
        .output(&[
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            "--endpoints",
            etcd.client_url(),
            "get",
            "--print-value-only",
            "/rackd/lease/a",
        ])
        .unwrap();
    assert_eq!(out.trim(), "node-1");
}
