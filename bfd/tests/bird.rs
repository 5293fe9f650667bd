//! Interop with BIRD 2's BFD protocol in network namespaces (needs root): a single-hop IPv4
//! session comes Up, BIRD's crash is detected by us with diag 1, and our stopping is seen by
//! BIRD.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bfd::{Diag, PeerConfig, State};
use common::{Ours, T, ip};
use netlab::bird::Bird;
use netlab::{Check, LabDir, Netns, wait_for};

const CONF: &str = r#"
router id 10.0.0.2;
log stderr all;
protocol device {}
protocol bfd bfd1 {
    interface "eth0" {
        min rx interval 300 ms;
        min tx interval 300 ms;
        multiplier 3;
    };
    neighbor 10.0.0.1 dev "eth0" local 10.0.0.2;
}
"#;

struct Lab {
    // Field order is drop order.
    us: Ours,
    bird: Bird,
    _dir: LabDir,
    _bird_ns: Netns,
    _us_ns: Netns,
}

fn lab(name: &str) -> Lab {
    let dir = LabDir::new(name).unwrap();
    let us_ns = Netns::new(&format!("{name}-us")).unwrap();
    let bird_ns = Netns::new(&format!("{name}-bi")).unwrap();
    netlab::veth(&us_ns, "eth0", &bird_ns, "eth0").unwrap();
    us_ns.addr_add("eth0", "10.0.0.1/30").unwrap();
    bird_ns.addr_add("eth0", "10.0.0.2/30").unwrap();
    let bird = Bird::start(&bird_ns, dir.path(), "bird", CONF).unwrap();
    let us = Ours::start(&us_ns);
    Lab {
        us,
        bird,
        _dir: dir,
        _bird_ns: bird_ns,
        _us_ns: us_ns,
    }
}

/// BIRD's state for 10.0.0.1 from `show bfd sessions` ("Up", "Down", "Init", ...).
fn bird_state(b: &Bird) -> String {
    let text = b.birdc(&["show", "bfd", "sessions"]).unwrap_or_default();
    text.lines()
        .find(|l| l.trim_start().starts_with("10.0.0.1 "))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("")
        .to_owned()
        + "\n"
        + &text
}

fn wait_bird(b: &Bird, want: &str) {
    wait_for(
        &format!("BIRD to see us {want}"),
        T,
        Duration::from_millis(5),
        || {
            let s = bird_state(b);
            Ok(if s.starts_with(&format!("{want}\n")) {
                Check::Ready(())
            } else {
                Check::NotYet(s)
            })
        },
    )
    .unwrap();
}

#[test]
fn bird_up_then_bird_killed() {
    let mut l = lab("bfd-bi1");
    let rx = l.us.add(PeerConfig::single_hop(
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        Some("eth0"),
    ));
    wait_bird(&l.bird, "Up");
    let s = wait_for(
        "our session Up at 300 ms",
        T,
        Duration::from_millis(5),
        || {
            let s = rx.borrow().clone();
            Ok(
                if s.state == State::Up && s.tx_interval == Duration::from_millis(300) {
                    Check::Ready(s)
                } else {
                    Check::NotYet(format!("{s:?}"))
                },
            )
        },
    )
    .unwrap();
    assert_eq!(s.detection_time, Duration::from_millis(900));
    let t0 = tokio::time::Instant::now();
    l.bird.process().kill9().unwrap();
    let s = wait_for("our session Down", T, Duration::from_millis(5), || {
        let s = rx.borrow().clone();
        Ok(if s.state == State::Down {
            Check::Ready(s)
        } else {
            Check::NotYet(format!("{s:?}"))
        })
    })
    .unwrap();
    let took = s.since.duration_since(t0);
    eprintln!("MEASURED BIRD SIGKILL: our detection after {took:?} (detection time 900 ms)");
    assert_eq!(s.local_diag, Diag::ControlDetectionTimeExpired);
}

#[test]
fn bird_sees_us_stop() {
    let mut l = lab("bfd-bi2");
    let _rx = l.us.add(PeerConfig::single_hop(
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        Some("eth0"),
    ));
    wait_bird(&l.bird, "Up");
    let t0 = Instant::now();
    l.us.stop();
    wait_bird(&l.bird, "Down");
    eprintln!("MEASURED BIRD sees our AdminDown after {:?}", t0.elapsed());
}
