//! The committed CRD manifests are exactly what the model's types generate, so they
//! cannot drift from what rackd reads.

use rackd_deploy::manifests::stale_crds;
use rackd_deploy::repo_root;

#[test]
fn committed_crds_equal_freshly_generated() {
    let stale = match stale_crds(&repo_root()) {
        Ok(s) => s,
        Err(e) => panic!("generating the CRDs: {e}"),
    };
    assert!(
        stale.is_empty(),
        "CRD manifests differ from rackd-model's types: {stale:#?}\n\
         regenerate with: cargo run -p rackd-deploy --bin gen-crds"
    );
}
