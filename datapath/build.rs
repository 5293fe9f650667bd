//! Compiles the C eBPF programs under `bpf/` with clang into `OUT_DIR`, where
//! `src/` embeds them with `aya::include_bytes_aligned!`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages that provide the compiler and the libbpf headers.
const INSTALL_HINT: &str = "install them with: apt-get install clang-19 libbpf-dev";

/// Objects to build: (source under bpf/, object name in OUT_DIR).
const PROGRAMS: &[(&str, &str)] = &[
    ("l2_responder.bpf.c", "l2_responder.bpf.o"),
    ("probe.bpf.c", "probe.bpf.o"),
    ("lb.bpf.c", "lb.bpf.o"),
];

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = manifest.join("bpf");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=RACKD_CLANG");

    // RACKD_CLANG overrides the compiler (e.g. a clang-20 elsewhere).
    let clang = env::var("RACKD_CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    match Command::new(&clang).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => fail(&format!(
            "`{clang}` was not found or does not run; it compiles the eBPF programs in datapath/bpf; {INSTALL_HINT}"
        )),
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(&format!(
            "libbpf headers (/usr/include/bpf/bpf_helpers.h) are missing; {INSTALL_HINT}"
        ));
    }
    // Debian keeps asm/types.h under the multiarch include directory.
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "x86_64-linux-gnu".to_owned());

    for (src, obj) in PROGRAMS {
        let src_path = bpf_dir.join(src);
        let obj_path = out.join(obj);
        let status = Command::new(&clang)
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-Wall",
                "-Werror",
                "-D__TARGET_ARCH_x86",
            ])
            .arg(format!("-I/usr/include/{multiarch}"))
            .arg(format!("-I{}", bpf_dir.display()))
            .arg("-c")
            .arg(&src_path)
            .arg("-o")
            .arg(&obj_path)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => fail(&format!(
                "{clang} failed ({s}) compiling {}",
                src_path.display()
            )),
            Err(e) => fail(&format!("cannot run {clang}: {e}; {INSTALL_HINT}")),
        }
    }
}

fn fail(msg: &str) -> ! {
    // A panic in a build script is reported by cargo as a build error with this text.
    panic!("datapath build: {msg}");
}
