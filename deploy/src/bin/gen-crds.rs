//! Writes rackd's CRD manifests (`deploy/crds/*.yaml` and the chart's `crds/` copies) from
//! the model's types. `--check` writes nothing and fails when the committed files differ.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = rackd_deploy::repo_root();
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let result = if check {
        rackd_deploy::manifests::stale_crds(&root).map(|stale| {
            for s in &stale {
                eprintln!("gen-crds: stale: {s}");
            }
            stale.is_empty()
        })
    } else {
        rackd_deploy::manifests::write_crds(&root).map(|written| {
            for p in written {
                println!("{}", p.strip_prefix(&root).unwrap_or(&p).display());
            }
            true
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("gen-crds: regenerate with `cargo run -p rackd-deploy --bin gen-crds`");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gen-crds: {e}");
            ExitCode::FAILURE
        }
    }
}
