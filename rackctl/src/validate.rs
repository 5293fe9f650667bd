//! `rackctl config validate DIR`: the daemon's checks, offline.

use std::fmt::Write as _;
use std::path::Path;

use rackd_api::configdir;
use rackd_model::{CheckOptions, ParsedSource, Snapshot, parse_documents};

/// The report and whether the directory is clean.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub errors: usize,
}

/// Validate every configuration file in `dir` exactly as rackd would load it.
pub fn validate_dir(
    dir: &Path,
    secrets_namespace: &str,
) -> Result<Report, configdir::ReadDirError> {
    let scan = configdir::scan(dir)?;
    let mut parsed: Vec<_> = scan
        .files
        .iter()
        .map(|f| parse_documents(&f.name, &f.text))
        .collect();
    // As the daemon does: an unreadable file is one error and keeps its source.
    parsed.extend(
        scan.problems
            .iter()
            .map(|p| ParsedSource::unreadable(p.name.clone(), p.message.clone())),
    );
    let out = Snapshot::build(
        &parsed,
        &CheckOptions {
            bgp_secrets_namespace: secrets_namespace.to_owned(),
        },
    );
    let mut text = String::new();
    for e in &out.errors {
        let _ = writeln!(text, "error: {e}");
    }
    let errors = out.errors.len();
    let _ = writeln!(
        text,
        "{}: {} file(s), {} object(s), {} error(s)",
        dir.display(),
        scan.files.len(),
        out.snapshot.len(),
        errors
    );
    Ok(Report { text, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab");
        let r = validate_dir(&dir, "kube-system").unwrap();
        assert_eq!(r.errors, 0, "{}", r.text);
    }

    #[test]
    fn malformed_configs_are_reported_per_document() {
        let dir = std::env::temp_dir().join(format!("rackctl-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p}\nspec: {ebgpMultihop: 0}\n---\nkind: NoSuchKind\napiVersion: v1\nmetadata: {name: x}\n---\n: : bad yaml\n",
        )
        .unwrap();
        std::fs::write(dir.join("b.yaml"), [0xffu8, 0x00]).unwrap();
        let r = validate_dir(&dir, "kube-system").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.errors, 4, "{}", r.text);
        assert!(r.text.contains("a.yaml: document 1"), "{}", r.text);
        assert!(r.text.contains("ebgpMultihop"), "{}", r.text);
        assert!(r.text.contains("NoSuchKind"), "{}", r.text);
        assert!(
            r.text
                .contains("b.yaml: cannot read source: not UTF-8 text"),
            "{}",
            r.text
        );
        assert!(validate_dir(Path::new("/nonexistent/rackd"), "kube-system").is_err());
    }
}
