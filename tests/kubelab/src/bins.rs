//! Locating (and, once per process, building) the Go-built binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Environment variable naming a directory that already holds the five binaries; when set,
/// [`bins`] uses it as is and runs no build.
pub const BIN_DIR_ENV: &str = "RACKD_K8S_BIN_DIR";

/// Paths of the binaries a [`crate::Cluster`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    /// The directory holding them.
    pub dir: PathBuf,
    /// `kube-apiserver` (k8s.io/kubernetes/cmd/kube-apiserver).
    pub kube_apiserver: PathBuf,
    /// `kube-controller-manager` (k8s.io/kubernetes/cmd/kube-controller-manager).
    pub kube_controller_manager: PathBuf,
    /// `kubectl` (k8s.io/kubernetes/cmd/kubectl).
    pub kubectl: PathBuf,
    /// `etcd`: kubelab's small main around go.etcd.io/etcd/server/v3/embed.
    pub etcd: PathBuf,
    /// `helm` (helm.sh/helm/v4/cmd/helm).
    pub helm: PathBuf,
}

impl Bins {
    /// The binaries in `dir`, checked to exist and be executable.
    pub fn in_dir(dir: &Path) -> Result<Bins> {
        Self::in_dir_from(dir, "the caller")
    }

    fn in_dir_from(dir: &Path, origin: &'static str) -> Result<Bins> {
        let bin = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            let executable = std::fs::metadata(&path)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if executable {
                Ok(path)
            } else {
                Err(Error::MissingBinary { path, origin })
            }
        };
        Ok(Bins {
            dir: dir.to_path_buf(),
            kube_apiserver: bin("kube-apiserver")?,
            kube_controller_manager: bin("kube-controller-manager")?,
            kubectl: bin("kubectl")?,
            etcd: bin("etcd")?,
            helm: bin("helm")?,
        })
    }
}

/// The repository's `scripts/k8s-build.sh`.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/k8s-build.sh")
}

/// The binaries: from `RACKD_K8S_BIN_DIR` if set, else from `scripts/k8s-build.sh`, which is
/// run at most once per process (it builds only when its on-disk cache is missing or stale,
/// and prints the bin dir). A failure is remembered and returned again to later callers.
pub fn bins() -> Result<Bins> {
    static BINS: OnceLock<std::result::Result<Bins, String>> = OnceLock::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Bins::in_dir_from(Path::new(&dir), BIN_DIR_ENV);
    }
    let script = build_script();
    BINS.get_or_init(|| run_build(&script).map_err(|e| e.to_string()))
        .clone()
        .map_err(|message| Error::Build { script, message })
}

fn run_build(script: &Path) -> Result<Bins> {
    let out = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {}", script.display()), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("bash {}", script.display()),
            status: out.status,
            stderr: crate::tail(&stderr, 40),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(dir) = stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Err(Error::Build {
            script: script.to_path_buf(),
            message: format!(
                "it printed no bin dir; stderr: {}",
                crate::tail(&stderr, 20)
            ),
        });
    };
    Bins::in_dir_from(Path::new(dir.trim()), "scripts/k8s-build.sh")
}
