//! What one edit of a 27,000-document file costs the configuration path, by phase:
//! `FileSource::update` (split, one lookup per document, the edited document parsed) and
//! `Store::apply` (the last-good rules on the changed keys), for a document edited in place
//! and for one inserted at the top (every other document moves: new origins, no change).
//! Medians of `--rounds` (default 21), thread CPU time. Against the whole-file path the
//! daemon used before (`parse_documents` + `Snapshot::merge` of everything), in the same run.
//!
//! Run: `cargo bench -p rackd-model --bench edit_cost -- [--docs N] [--rounds R] [--out FILE]`
//! (FILE relative to the workspace root).
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::time::Duration;

use rackd_model::{CheckOptions, FileSource, Snapshot, Store, parse_documents};

fn text(n: usize, edit: Option<usize>) -> String {
    let mut s = String::with_capacity(n * 190);
    for i in 0..n {
        let ty = if edit == Some(i) {
            "ClusterIP"
        } else {
            "LoadBalancer"
        };
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: scale, labels: {{scale: \"yes\"}}}}\nspec: {{type: {ty}, ipFamilies: [IPv4], ports: [{{port: 80, protocol: TCP}}]}}\n"
        ));
    }
    s
}

/// This thread's CPU time.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid clock id and a pointer to our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, "--docs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(27_000);
    let rounds: usize = arg(&args, "--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let opts = CheckOptions::default();
    let base = text(n, None);
    let mut file = FileSource::new("f.yaml");
    let mut store = Store::new(opts.clone());
    store.apply(vec![file.update(&base)]);
    let (mut upd, mut apply) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let t = text(n, Some((r * 7919) % n));
        let c0 = cpu();
        let u = file.update(&t);
        let c1 = cpu();
        let applied = store.apply(vec![u]);
        let c2 = cpu();
        assert!(!applied.changes.is_empty());
        upd.push((c1 - c0).as_secs_f64() * 1e3);
        apply.push((c2 - c1).as_secs_f64() * 1e3);
    }
    // Every document moves: one inserted at the top, then removed again.
    let (mut mv_upd, mut mv_apply) = (Vec::new(), Vec::new());
    let top = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: first, namespace: scale}}\nspec: {{type: ClusterIP, ports: [{{port: 80}}]}}\n{base}"
    );
    for r in 0..rounds.min(5) {
        let t = if r % 2 == 0 { &top } else { &base };
        let c0 = cpu();
        let u = file.update(t);
        let c1 = cpu();
        store.apply(vec![u]);
        let c2 = cpu();
        mv_upd.push((c1 - c0).as_secs_f64() * 1e3);
        mv_apply.push((c2 - c1).as_secs_f64() * 1e3);
    }
    // The whole-file path of before: parse every document, merge everything.
    let mut whole = Vec::new();
    let mut prev = Snapshot::build(&[parse_documents("f.yaml", &base)], &opts).snapshot;
    for r in 0..rounds.min(5) {
        let t = text(n, Some((r * 7919) % n));
        // The parse runs on scoped threads too: wall time, not this thread's CPU alone.
        let w0 = std::time::Instant::now();
        let p = parse_documents("f.yaml", &t);
        prev = Snapshot::merge(&prev, &[p], &opts).snapshot;
        whole.push(w0.elapsed().as_secs_f64() * 1e3);
    }
    let out = serde_json::json!({
        "bench": "model edit_cost",
        "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "commit": sh("git rev-parse HEAD"),
        "dirty": !sh("git status --porcelain --untracked-files=no").is_empty(),
        "machine": {
            "nproc": sh("nproc"),
            "kernel": sh("uname -r"),
            "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "loadavg": sh("cat /proc/loadavg"),
        },
        "docs": n,
        "rounds": rounds,
        "one_document_edited_ms": {
            "file_update_cpu": upd, "store_apply_cpu": apply,
        },
        "every_document_moved_ms": {
            "file_update_cpu": mv_upd, "store_apply_cpu": mv_apply,
        },
        "whole_file_parse_and_merge_wall_ms": whole,
        "medians_ms": {
            "edited_file_update": median(&mut upd.clone()),
            "edited_store_apply": median(&mut apply.clone()),
            "moved_file_update": median(&mut mv_upd.clone()),
            "moved_store_apply": median(&mut mv_apply.clone()),
            "whole_file_parse_and_merge": median(&mut whole.clone()),
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out["medians_ms"]).unwrap()
    );
    if let Some(path) = arg(&args, "--out") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
        println!("raw data: {}", path.display());
    }
}
