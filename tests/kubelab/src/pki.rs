//! The cluster's PKI, made with `openssl`: a CA, the API server's serving certificate, client
//! certificates (admin, kube-controller-manager) and the service-account signing key. ECDSA
//! P-256 throughout (fast to generate; Kubernetes accepts it everywhere).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Paths of the PEM files in the cluster's `pki/` directory.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub(crate) ca_crt: PathBuf,
    pub(crate) ca_key: PathBuf,
    pub(crate) server_crt: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) admin_crt: PathBuf,
    pub(crate) admin_key: PathBuf,
    pub(crate) kcm_crt: PathBuf,
    pub(crate) kcm_key: PathBuf,
    pub(crate) sa_key: PathBuf,
    pub(crate) sa_pub: PathBuf,
}

/// A minimal openssl config, so that no system default (extensions, prompts) leaks in.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
";

const DAYS: &str = "3650";

impl Pki {
    /// Generates everything into `dir`. `server_sans` is the serving certificate's
    /// subjectAltName list (`IP:...`, `DNS:...`).
    pub(crate) fn create(dir: &Path, server_sans: &[String]) -> Result<Pki> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF)
            .map_err(|e| Error::io(format!("writing {}", cnf.display()), e))?;
        let p = |n: &str| dir.join(n);
        let pki = Pki {
            ca_crt: p("ca.crt"),
            ca_key: p("ca.key"),
            server_crt: p("apiserver.crt"),
            server_key: p("apiserver.key"),
            admin_crt: p("admin.crt"),
            admin_key: p("admin.key"),
            kcm_crt: p("kube-controller-manager.crt"),
            kcm_key: p("kube-controller-manager.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
        };

        let req = |key: &Path, crt: &Path| {
            let mut c = Command::new("openssl");
            c.arg("req").arg("-config").arg(&cnf);
            c.args(["-x509", "-new", "-newkey", "ec", "-pkeyopt"]);
            c.args(["ec_paramgen_curve:prime256v1", "-noenc", "-days", DAYS]);
            c.arg("-keyout").arg(key).arg("-out").arg(crt);
            c
        };
        let signed = |key: &Path, crt: &Path, subject: &str| {
            let mut c = req(key, crt);
            c.args(["-subj", subject]);
            c.arg("-CA").arg(&pki.ca_crt).arg("-CAkey").arg(&pki.ca_key);
            c.args(["-addext", "basicConstraints=critical,CA:FALSE"]);
            c.args(["-addext", "keyUsage=critical,digitalSignature"]);
            c
        };

        let mut ca = req(&pki.ca_key, &pki.ca_crt);
        ca.args(["-subj", "/CN=kubelab-ca", "-extensions", "ca"]);
        run(&mut ca)?;

        let mut server = signed(&pki.server_key, &pki.server_crt, "/CN=kube-apiserver");
        server.args([
            "-addext",
            &format!("subjectAltName={}", server_sans.join(",")),
        ]);
        server.args(["-addext", "extendedKeyUsage=serverAuth,clientAuth"]);
        run(&mut server)?;

        // system:masters: the admin bypasses authorization, as kubeadm's admin.conf.
        let mut admin = signed(
            &pki.admin_key,
            &pki.admin_crt,
            "/O=system:masters/CN=kubelab-admin",
        );
        admin.args(["-addext", "extendedKeyUsage=clientAuth"]);
        run(&mut admin)?;

        // The user RBAC's bootstrap policy grants the controller manager's roles to.
        let mut kcm = signed(
            &pki.kcm_key,
            &pki.kcm_crt,
            "/CN=system:kube-controller-manager",
        );
        kcm.args(["-addext", "extendedKeyUsage=clientAuth"]);
        run(&mut kcm)?;

        let mut sa = Command::new("openssl");
        sa.args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]);
        sa.arg("-out").arg(&pki.sa_key);
        run(&mut sa)?;
        let mut sa_pub = Command::new("openssl");
        sa_pub.arg("pkey").arg("-in").arg(&pki.sa_key);
        sa_pub.arg("-pubout").arg("-out").arg(&pki.sa_pub);
        run(&mut sa_pub)?;
        Ok(pki)
    }
}

/// Runs a command to completion; a non-zero exit is an [`Error::Command`] with its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {}", crate::display_command(cmd)), e))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: crate::display_command(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
