//! An L2 segment with three hosts, and a capture that sees ARP and NDP.
#![allow(clippy::unwrap_used)]

use netlab::capture::Capture;
use netlab::{LabDir, Netns, Segment};

#[test]
fn segment_capture_sees_arp_and_ndp() {
    let dir = LabDir::new("nl-l2").unwrap();
    let seg = Segment::new("nl-l2-seg").unwrap();
    let hosts: Vec<Netns> = (0..3).map(|_| Netns::new("nl-l2-h").unwrap()).collect();
    for (i, h) in hosts.iter().enumerate() {
        seg.attach(h, "eth0").unwrap();
        h.addr_add("eth0", &format!("10.5.0.{}/24", i + 1)).unwrap();
        h.addr_add("eth0", &format!("fd00:5::{}/64", i + 1))
            .unwrap();
    }
    let mut cap = Capture::start(&hosts[2], dir.path(), "cap", "eth0", "arp or icmp6").unwrap();
    hosts[0]
        .exec(&["arping", "-c", "1", "-w", "5", "-I", "eth0", "10.5.0.2"])
        .unwrap();
    hosts[0]
        .exec(&["ndisc6", "-1", "-r", "3", "fd00:5::2", "eth0"])
        .unwrap();
    // Broadcast ARP request and multicast NS both reach the third host through the bridge.
    let t = std::time::Duration::from_secs(10);
    cap.wait_for_text("Request who-has 10.5.0.2", t).unwrap();
    cap.wait_for_text("neighbor solicitation, who has fd00:5::2", t)
        .unwrap();
    let text = cap.stop().unwrap();
    assert!(text.contains("Request who-has 10.5.0.2"), "{text}");
}
