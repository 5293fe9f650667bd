//! The namespace, link and process basics (needs root).
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use netlab::{LabDir, Netns, veth};

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[test]
fn namespace_is_created_and_removed() {
    let ns = Netns::new("nl-basic").unwrap();
    let name = ns.name().to_owned();
    assert!(netns_exists(&name));
    let lo = ns.ip_json(&["link", "show", "dev", "lo"]).unwrap();
    assert!(lo.to_string().contains("LOWER_UP"), "{lo}");
    drop(ns);
    assert!(!netns_exists(&name));
}

#[test]
fn exec_error_carries_output() {
    let ns = Netns::new("nl-err").unwrap();
    let e = ns
        .exec(&["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("to-out") && msg.contains("to-err"), "{msg}");
    assert!(
        ns.output(&["echo", "hi"]).unwrap().trim() == "hi",
        "output helper"
    );
}

#[test]
fn veth_addresses_and_ping() {
    let a = Netns::new("nl-va").unwrap();
    let b = Netns::new("nl-vb").unwrap();
    veth(&a, "eth0", &b, "eth0").unwrap();
    a.addr_add("eth0", "10.9.0.1/24").unwrap();
    b.addr_add("eth0", "10.9.0.2/24").unwrap();
    a.addr_add("eth0", "fd00:9::1/64").unwrap();
    b.addr_add("eth0", "fd00:9::2/64").unwrap();
    a.set_mac("eth0", "02:00:00:00:09:01").unwrap();
    assert_eq!(a.mac("eth0").unwrap(), "02:00:00:00:09:01");
    a.wait_ipv6_ready(Duration::from_secs(5)).unwrap();
    b.wait_ipv6_ready(Duration::from_secs(5)).unwrap();
    assert!(a.addrs("eth0").unwrap().contains(&"10.9.0.1/24".to_owned()));
    a.exec(&["ping", "-c1", "-W2", "10.9.0.2"]).unwrap();
    a.exec(&["ping", "-6", "-c1", "-W2", "fd00:9::2"]).unwrap();
    assert_eq!(
        a.sysctl_get("net.ipv6.conf.default.accept_dad").unwrap(),
        "0"
    );
    a.link_down("eth0").unwrap();
    assert!(a.exec(&["ping", "-c1", "-W1", "10.9.0.2"]).is_err());
}

#[test]
fn bridge_joins_three_namespaces() {
    let sw = Netns::new("nl-sw").unwrap();
    sw.add_bridge("br0").unwrap();
    let hosts: Vec<Netns> = (0..2).map(|_| Netns::new("nl-h").unwrap()).collect();
    for (i, h) in hosts.iter().enumerate() {
        let port = format!("p{i}");
        veth(&sw, &port, h, "eth0").unwrap();
        sw.set_master(&port, "br0").unwrap();
        h.addr_add("eth0", &format!("10.8.0.{}/24", i + 1)).unwrap();
    }
    hosts[0].exec(&["ping", "-c1", "-W2", "10.8.0.2"]).unwrap();
}

#[test]
fn enter_switches_thread_namespace() {
    let ns = Netns::new("nl-enter").unwrap();
    ns.addr_add("lo", "10.7.0.1/32").unwrap();
    // Bind inside: the address exists only in the namespace.
    let listener = ns
        .enter(|| TcpListener::bind("10.7.0.1:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    // Back outside: the address is not ours here.
    assert!(TcpListener::bind("10.7.0.1:0").is_err());
    // The socket stays in the namespace; connect from inside to prove it.
    ns.enter(|| TcpStream::connect(("10.7.0.1", port)).unwrap())
        .unwrap();
}

#[test]
fn process_is_stopped_and_logged() {
    let dir = LabDir::new("nl-proc").unwrap();
    let ns = Netns::new("nl-proc").unwrap();
    let mut p = ns
        .spawn(
            dir.path(),
            "sleeper",
            &["sh", "-c", "echo started; exec sleep 600"],
        )
        .unwrap();
    netlab::wait_until(
        "log line",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || Ok(p.log().contains("started")),
    )
    .unwrap();
    assert!(p.is_running());
    assert_eq!(ns.pids().unwrap(), vec![p.pid() as i32]);
    let st = p.kill9().unwrap();
    assert!(!st.success());
    assert!(p.check_running().is_err());
}

/// Reaps `pid` (our child), giving up after 10 s (then kills it so the test leaks nothing).
fn reap(pid: u32) -> bool {
    let pid = pid as i32;
    let mut status = 0;
    for _ in 0..1000 {
        // SAFETY: waitpid on our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: still our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    false
}

#[test]
fn namespace_drop_kills_leaked_and_just_spawned_children() {
    let dir = LabDir::new("nl-leak").unwrap();
    // Dropping right after spawn races `ip netns exec` (forked, not yet inside the namespace);
    // the namespace's own child registry must catch it anyway.
    for _ in 0..10 {
        let ns = Netns::new("nl-leak").unwrap();
        let p = ns.spawn(dir.path(), "sleeper", &["sleep", "600"]).unwrap();
        let pid = p.pid();
        std::mem::forget(p); // a leaked guard: only the namespace can stop it now
        drop(ns);
        assert!(reap(pid), "pid {pid} survived its namespace");
    }
}

#[test]
fn dad_is_off_by_default_and_only_inside() {
    let host = std::fs::read_to_string("/proc/sys/net/ipv6/conf/default/accept_dad").unwrap();
    let ns = Netns::new("nl-dad").unwrap();
    assert_eq!(
        ns.sysctl_get("net.ipv6.conf.default.accept_dad").unwrap(),
        "0"
    );
    let kept = Netns::with_dad("nl-dad").unwrap();
    assert_ne!(
        kept.sysctl_get("net.ipv6.conf.default.accept_dad").unwrap(),
        "0"
    );
    kept.sysctl("net.ipv6.conf.default.accept_ra", "0").unwrap();
    assert_eq!(
        kept.sysctl_get("net.ipv6.conf.default.accept_ra").unwrap(),
        "0"
    );
    let after = std::fs::read_to_string("/proc/sys/net/ipv6/conf/default/accept_dad").unwrap();
    assert_eq!(host, after, "host sysctl must not change");
}

#[test]
fn tokio_runtime_inside_namespace() {
    let srv = Netns::new("nl-tokio").unwrap();
    let cli = Netns::new("nl-tokioc").unwrap();
    veth(&srv, "eth0", &cli, "eth0").unwrap();
    srv.addr_add("eth0", "10.6.0.1/30").unwrap();
    cli.addr_add("eth0", "10.6.0.2/30").unwrap();
    let got = srv
        .enter(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use tokio::io::AsyncReadExt;
                let l = tokio::net::TcpListener::bind("10.6.0.1:0").await.unwrap();
                let port = l.local_addr().unwrap().port();
                // The client runs in the other namespace, reaching us over the veth.
                let client = cli
                    .command(&[
                        "bash",
                        "-c",
                        &format!("echo hello >/dev/tcp/10.6.0.1/{port}"),
                    ])
                    .spawn()
                    .unwrap();
                // Bounded so a broken lab fails instead of hanging the suite.
                let (mut s, peer) = tokio::time::timeout(Duration::from_secs(30), l.accept())
                    .await
                    .unwrap()
                    .unwrap();
                let mut buf = String::new();
                s.read_to_string(&mut buf).await.unwrap();
                (client, peer, buf)
            })
        })
        .unwrap();
    let (mut client, peer, buf) = got;
    assert!(client.wait().unwrap().success());
    assert_eq!(peer.ip().to_string(), "10.6.0.2");
    assert_eq!(buf, "hello\n");
}

/// The service tests' pod server: HTTP and UDP answers name the server and show the address
/// the client came from, over IPv4 and IPv6; a refused connection is an error.
#[test]
fn echo_server_names_itself_and_the_client() {
    use netlab::echo::{EchoServer, http_get, parse, udp_echo};
    let pod = Netns::new("nl-pod").unwrap();
    let cl = Netns::new("nl-cl").unwrap();
    veth(&pod, "eth0", &cl, "eth0").unwrap();
    pod.addr_add("eth0", "10.9.0.1/24").unwrap();
    cl.addr_add("eth0", "10.9.0.2/24").unwrap();
    pod.addr_add("eth0", "fd00:9::1/64").unwrap();
    cl.addr_add("eth0", "fd00:9::2/64").unwrap();
    let t = Duration::from_secs(3);
    // Nothing listens yet: refused (the negative case of the checks below).
    assert!(http_get(&cl, "10.9.0.1:80".parse().unwrap(), t).is_err());
    let srv = EchoServer::start(&pod, "web-1", 80, 5353).unwrap();
    for (to, from) in [("10.9.0.1", "10.9.0.2"), ("[fd00:9::1]", "fd00:9::2")] {
        let a = http_get(&cl, format!("{to}:80").parse().unwrap(), t).unwrap();
        let (name, client) = parse(&a).unwrap();
        assert_eq!(name, "web-1", "{a}");
        assert_eq!(client.ip().to_string(), from, "{a}");
        let u = udp_echo(&cl, format!("{to}:5353").parse().unwrap(), t).unwrap();
        assert_eq!(parse(&u).unwrap().1.ip().to_string(), from, "{u}");
    }
    assert_eq!(srv.served(), 4);
}
