//! What can be checked of `deploy/Dockerfile` without Docker (which cannot run on the
//! machine rackd is developed on): it builds with the toolchain rust-toolchain.toml pins and
//! the clang datapath/build.rs calls, installs both binaries, and runs on bookworm-slim.

fn read(rel: &str) -> String {
    let p = rackd_deploy::repo_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn dockerfile_matches_the_toolchain_and_the_datapath_build() {
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .unwrap_or_else(|| panic!("no channel in rust-toolchain.toml"));
    let docker = read("deploy/Dockerfile");
    assert!(
        docker.contains(&format!("ARG RUST_VERSION={channel}\n")),
        "deploy/Dockerfile's RUST_VERSION is not rust-toolchain.toml's {channel}"
    );
    assert!(docker.contains("FROM rust:${RUST_VERSION}-bookworm AS build"));
    assert!(docker.contains("\nFROM debian:bookworm-slim\n"));

    // datapath/build.rs runs clang-N (or $RACKD_CLANG); the image installs that N.
    let build_rs = read("datapath/build.rs");
    let clang = build_rs
        .split('"')
        .find(|s| s.starts_with("clang-") && s[6..].chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no clang-N in datapath/build.rs"));
    assert!(
        docker.contains(&format!("ARG LLVM_VERSION={}\n", &clang[6..])),
        "deploy/Dockerfile does not install {clang}"
    );
    for want in [
        "libbpf-dev",
        "protobuf-compiler",
        "cargo build --release --locked -p rackd -p rackctl",
        "iproute2",
        "COPY --from=build /out/rackd /out/rackctl /usr/local/bin/",
        "ENTRYPOINT [\"/usr/local/bin/rackd\"]",
    ] {
        assert!(docker.contains(want), "deploy/Dockerfile lacks {want:?}");
    }
}
