//! The `rackctl` binary at its edges: `config validate` exit codes and reports, and what an
//! operator sees when rackd is not there or the arguments are wrong. (Against a running
//! rackd: `containerlab/runner/tests/lab.rs`.)
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn rackctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rackctl"))
        .args(args)
        .env_remove("RACKD_SOCKET")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn config_validate_exits_0_on_the_lab_and_1_on_errors() {
    for dir in ["lab", "l2lab", "seeds"] {
        let dir = format!("{}/../configs/{dir}", env!("CARGO_MANIFEST_DIR"));
        let out = rackctl(&["config", "validate", &dir]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(" 0 error(s)"), "{}", text(&out));
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bgp.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: c}\nspec:\n  bgpInstances:\n  - name: i\n    localASN: 0\n",
    )
    .unwrap();
    let out = rackctl(&["config", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("bgp.yaml: document 1"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("localASN"), "{}", text(&out));

    let out = rackctl(&["config", "validate", "/nonexistent/rackd-config"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot read configuration directory /nonexistent/rackd-config"),
        "{}",
        text(&out)
    );
}

#[test]
fn no_daemon_and_bad_arguments_are_clear_errors() {
    let out = rackctl(&["--socket", "/nonexistent/admin.sock", "status"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot connect to rackd at /nonexistent/admin.sock"),
        "{}",
        text(&out)
    );
    // The grammar is checked before the daemon is asked.
    let out = rackctl(&[
        "--socket",
        "/nonexistent/admin.sock",
        "bgp",
        "routes",
        "advertised",
        "ipv4",
    ]);
    assert!(!out.status.success());
    assert!(!text(&out).contains("cannot connect"), "{}", text(&out));
    let out = rackctl(&["bgp", "route-policies", "vrouter", "x"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid vrouter ASN"), "{}", text(&out));
    let out = rackctl(&["-o", "yaml", "status"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("invalid value 'yaml'"),
        "{}",
        text(&out)
    );
}
