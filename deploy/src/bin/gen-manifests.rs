//! Writes `deploy/manifests/rackd.yaml`: the chart rendered with `helm template` (see
//! [`rackd_deploy::find_helm`] for which helm). `--check` writes nothing and fails when
//! the committed file differs.

use std::process::ExitCode;

use rackd_deploy::manifests::MANIFEST;

fn main() -> ExitCode {
    let root = rackd_deploy::repo_root();
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let Some(helm) = rackd_deploy::find_helm() else {
        eprintln!(
            "gen-manifests: no helm (set HELM or RACKD_K8S_BIN_DIR, or run scripts/gen-deploy.sh)"
        );
        return ExitCode::FAILURE;
    };
    let text = match rackd_deploy::render_manifest(&helm, &root) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gen-manifests: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = root.join(MANIFEST);
    if check {
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return ExitCode::SUCCESS;
        }
        eprintln!("gen-manifests: {MANIFEST} is stale; regenerate with scripts/gen-deploy.sh");
        return ExitCode::FAILURE;
    }
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, text));
    match written {
        Ok(()) => {
            println!("{MANIFEST}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-manifests: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
