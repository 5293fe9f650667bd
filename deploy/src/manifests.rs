//! CRD manifests as files: one YAML document per CRD, named after its plural.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The header of every generated CRD file.
pub const HEADER: &str = "# Generated from rackd's types (rackd-model) by `cargo run -p rackd-deploy --bin gen-crds`.\n# Do not edit: change the model or rackd_model::crd, then regenerate.\n";

/// Where the generated CRDs live, relative to the repository root.
pub const CRD_DIRS: [&str; 2] = ["deploy/crds", "deploy/chart/rackd/crds"];

/// Errors of generating or writing the manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model's CRDs could not be generated.
    #[error(transparent)]
    Crd(#[from] rackd_model::crd::CrdError),
    /// A CRD could not be turned into JSON.
    #[error("rendering {name}: {source}")]
    Json {
        /// The file being rendered.
        name: String,
        /// The serialisation error.
        #[source]
        source: serde_json::Error,
    },
    /// `helm template` failed.
    #[error("helm template exited with {status}: {stderr}")]
    Helm {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One generated CRD file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdFile {
    /// File name, `<plural>.yaml`.
    pub name: String,
    /// The CRD's `metadata.name` (`<plural>.cilium.io`).
    pub crd: String,
    /// The file's content.
    pub yaml: String,
}

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Every CRD rackd ships, rendered as it is committed.
pub fn crd_files() -> Result<Vec<CrdFile>, Error> {
    rackd_model::crd::crds()?
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.spec.names.plural);
            let crd_name = crd.metadata.name.clone().unwrap_or_default();
            let mut value = serde_json::to_value(&crd).map_err(|source| Error::Json {
                name: name.clone(),
                source,
            })?;
            integral_numbers(&mut value);
            let body = crate::yaml::to_yaml(&value);
            Ok(CrdFile {
                name,
                crd: crd_name,
                yaml: format!("{HEADER}---\n{body}"),
            })
        })
        .collect()
}

/// `JSONSchemaProps` keeps `minimum`/`maximum` as f64; write whole numbers as integers,
/// as Cilium's YAML (and every hand-written CRD) does.
fn integral_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Exact: |f| < 2^53.
                let i = f as i64;
                *v = Value::from(i);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_numbers),
        Value::Object(m) => m.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Writes the CRDs to each of [`CRD_DIRS`] under `root`, removing stale `*.yaml` files there.
pub fn write_crds(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let files = crd_files()?;
    let mut written = Vec::new();
    for dir in CRD_DIRS {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let ours = files
                .iter()
                .any(|f| p.file_name().is_some_and(|n| n == f.name.as_str()));
            if !ours && p.extension().is_some_and(|x| x == "yaml") {
                std::fs::remove_file(&p).map_err(|source| Error::Io {
                    path: p.clone(),
                    source,
                })?;
            }
        }
        for f in &files {
            let p = dir.join(&f.name);
            std::fs::write(&p, &f.yaml).map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
            written.push(p);
        }
    }
    Ok(written)
}

/// Files under `root` that differ from freshly generated CRDs (missing, changed or extra),
/// as paths relative to `root`.
pub fn stale_crds(root: &Path) -> Result<Vec<String>, Error> {
    let files = crd_files()?;
    let mut stale = Vec::new();
    for dir in CRD_DIRS {
        for f in &files {
            let rel = format!("{dir}/{}", f.name);
            match std::fs::read_to_string(root.join(&rel)) {
                Ok(text) if text == f.yaml => {}
                _ => stale.push(rel),
            }
        }
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".yaml") && !files.iter().any(|f| f.name == name) {
                    stale.push(format!("{dir}/{name} (not generated)"));
                }
            }
        }
    }
    Ok(stale)
}

/// The plain manifests rendered from the chart, relative to the repository root.
pub const MANIFEST: &str = "deploy/manifests/rackd.yaml";

/// The namespace the plain manifests install into (Cilium's agent's).
pub const MANIFEST_NAMESPACE: &str = "kube-system";

/// The header of [`MANIFEST`].
pub const MANIFEST_HEADER: &str = "# rackd for `kubectl apply`: deploy/chart/rackd rendered with its default values for the\n# kube-system namespace by scripts/gen-deploy.sh (do not edit; change the chart, then rerun it).\n# The cilium.io CRDs are in deploy/crds/: install them first where Cilium's are absent\n# (`kubectl create -f deploy/crds/`), keep Cilium's where present.\n";

/// Renders the chart under `root` with `helm template` (release `rackd`, default values,
/// namespace [`MANIFEST_NAMESPACE`]) as committed in [`MANIFEST`].
pub fn render_manifest(helm: &Path, root: &Path) -> Result<String, Error> {
    let chart = root.join("deploy/chart/rackd");
    let out = std::process::Command::new(helm)
        .args(["template", "rackd"])
        .arg(&chart)
        .args(["--namespace", MANIFEST_NAMESPACE])
        .output()
        .map_err(|source| Error::Io {
            path: helm.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Helm {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(format!(
        "{MANIFEST_HEADER}{}",
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// The `helm` to render with: `$HELM`, else `$RACKD_K8S_BIN_DIR/helm` (what
/// scripts/k8s-build.sh builds and scripts/test.sh exports), else `helm` on `PATH`.
pub fn find_helm() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HELM") {
        return Some(PathBuf::from(h));
    }
    if let Some(dir) = std::env::var_os("RACKD_K8S_BIN_DIR") {
        let h = PathBuf::from(dir).join("helm");
        if h.is_file() {
            return Some(h);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("helm"))
            .find(|h| h.is_file())
    })
}
