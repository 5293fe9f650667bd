//! `deploy/manifests/rackd.yaml` is the chart as it renders now (when a helm is at hand:
//! `$HELM`, `$RACKD_K8S_BIN_DIR/helm` as scripts/test.sh exports it, or `helm` on PATH).

use rackd_deploy::manifests::MANIFEST;
use rackd_deploy::{find_helm, render_manifest, repo_root};

#[test]
fn committed_manifests_equal_the_rendered_chart() {
    let Some(helm) = find_helm() else {
        eprintln!("SKIP: no helm (set HELM or RACKD_K8S_BIN_DIR); {MANIFEST} not checked");
        return;
    };
    let root = repo_root();
    let fresh = match render_manifest(&helm, &root) {
        Ok(t) => t,
        Err(e) => panic!("rendering the chart with {}: {e}", helm.display()),
    };
    let committed = std::fs::read_to_string(root.join(MANIFEST)).unwrap_or_default();
    assert!(
        committed == fresh,
        "{MANIFEST} differs from the chart rendered by {}; regenerate with: scripts/gen-deploy.sh",
        helm.display()
    );
}
