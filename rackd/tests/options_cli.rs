//! The daemon's own options at the binary's edge: a bad `--config` file, flag or environment
//! variable stops rackd before it starts anything, with one clear error naming the file or
//! option, what it held and what was expected. (The merge rules themselves are unit-tested
//! in `src/options.rs`.)
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::process::{Command, Output};

fn rackd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rackd"));
    c.args(args).env_remove("RACKD_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn fails_with(out: &Output, wants: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rackd started: {err}");
    for w in wants {
        assert!(err.contains(w), "missing {w:?} in:\n{err}");
    }
}

#[test]
fn a_malformed_config_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rackd.yaml");
    std::fs::write(&path, "node-name: n1\nmetrics-adr: 127.0.0.1:1\n").unwrap();
    let p = path.to_str().unwrap();
    fails_with(
        &rackd(&["--config", p], &[]),
        &[p, "unknown field `metrics-adr`", "expected a YAML mapping"],
    );
    // The same through the environment variable.
    fails_with(
        &rackd(&[], &[("RACKD_CONFIG", p)]),
        &[p, "unknown field `metrics-adr`"],
    );
    std::fs::write(&path, "fib-table: main\n").unwrap();
    fails_with(&rackd(&["--config", p], &[]), &[p, "fib-table"]);
    let missing = dir.path().join("missing.yaml");
    fails_with(
        &rackd(&["--config", missing.to_str().unwrap()], &[]),
        &["cannot read config file", "missing.yaml"],
    );
}

#[test]
fn bad_flag_and_environment_values_are_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    fails_with(
        &rackd(&["--state-dir", state, "--metrics-addr", "localhost"], &[]),
        &["--metrics-addr \"localhost\"", "ADDRESS:PORT"],
    );
    fails_with(
        &rackd(&["--state-dir", state], &[("RACKD_METRICS_ADDR", "9963")]),
        &["--metrics-addr \"9963\""],
    );
    fails_with(
        &rackd(
            &[
                "--state-dir",
                state,
                "--enable-l2-announcements",
                "--l2-announcements-lease-duration",
                "15 s",
            ],
            &[],
        ),
        &["--l2-announcements-lease-duration \"15 s\"", "Go duration"],
    );
    // A duration too large for the clock is a clear error, not a panic at start.
    let huge = rackd(
        &[
            "--state-dir",
            state,
            "--enable-l2-announcements",
            "--l2-announcements-lease-duration",
            "99999999999999999999h",
        ],
        &[],
    );
    fails_with(
        &huge,
        &[
            "--l2-announcements-lease-duration \"99999999999999999999h\"",
            "out of range",
        ],
    );
    assert!(
        !String::from_utf8_lossy(&huge.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&huge.stderr)
    );
    fails_with(
        &rackd(&["--log-format", "xml"], &[]),
        &["invalid value 'xml'", "text", "json"],
    );
    fails_with(
        &rackd(&["--fib-table=-3"], &[]),
        &["invalid value '-3'", "--fib-table"],
    );
    fails_with(
        &rackd(&["--state-dir", state, "--enable-bpf-masquerade"], &[]),
        &["--enable-bpf-masquerade needs --kube-proxy-replacement"],
    );
    fails_with(
        &rackd(&["--kube-proxy-replacement=strict"], &[]),
        &["invalid value 'strict'", "--kube-proxy-replacement"],
    );
    fails_with(
        &rackd(&["--bpf-lb-algorithm", "rr"], &[]),
        &["invalid value 'rr'", "maglev"],
    );
    // Nothing was started: the state directory is untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn log_format_json_gives_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("no-pins");
    let pins = pins.to_str().unwrap();
    // `datapath uninstall` on an empty pin root: a quick run that logs one line and exits 0.
    for (args, env) in [
        (vec!["--log-format", "json", "--bpf-pin-root", pins], vec![]),
        (
            vec!["--bpf-pin-root", pins],
            vec![("RACKD_LOG_FORMAT", "json")],
        ),
    ] {
        let mut a = args.clone();
        a.extend(["datapath", "uninstall"]);
        let out = rackd(&a, &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().next().unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
        assert_eq!(v["level"], "INFO", "{v}");
        assert_eq!(v["fields"]["message"], "datapath uninstalled", "{v}");
        assert_eq!(v["fields"]["pin_root"], pins, "{v}");
    }
    // The default is text.
    let out = rackd(&["--bpf-pin-root", pins, "datapath", "uninstall"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("datapath uninstalled"), "{stdout}");
    assert!(serde_json::from_str::<serde_json::Value>(stdout.trim()).is_err());
}
