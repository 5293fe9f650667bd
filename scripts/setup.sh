#!/usr/bin/env bash
# Installs everything rackd's build, tests and lab need on a fresh Debian 12 machine.
# Idempotent: a second run only checks. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages:
#   clang-19, llvm-19, libbpf-dev   eBPF programs (datapath/build.rs)
#   frr, bird2, gobgpd              real BGP peers for interop tests and the lab ToR
#   etcd-server, etcd-client        lease backend for L2 announcements
#   arping, ndisc6, tcpdump         L2 tests and failover measurement
#   protobuf-compiler, libprotobuf-dev
#                                   etcd client code generation (protoc, and the well-known
#                                   types it imports: a Recommends, which we do not install)
#   iproute2, procps, psmisc        namespaces, veths, process handling
#   gcc, libc6-dev                  rustc's linker (`cc`) and the C runtime it links against;
#                                   clang-19 does not provide `cc`
#   systemd                         systemd-analyze, which checks the shipped unit
#                                   (configs/systemd/rackd.service)
#   iptables, ipvsadm, curl         the service benchmarks' anchors (kube-proxy's rules, IPVS)
#                                   and the lab's client fetching pods and LoadBalancer IPs
#   openssl                         the PKI of kubelab's test clusters (tests/kubelab); their
#                                   binaries are built with Go by scripts/k8s-build.sh
PKGS=(gcc libc6-dev clang-19 llvm-19 libbpf-dev bpftool frr bird2 gobgpd etcd-server etcd-client
      arping ndisc6 tcpdump protobuf-compiler libprotobuf-dev iproute2 iputils-ping procps psmisc
      ca-certificates curl pkg-config systemd iptables ipvsadm openssl)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The packaged daemons must not run system-wide: our tests and lab start their own
# instances inside network namespaces.
for svc in frr bird gobgpd etcd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done

# Rust: stable 1.95 (rust-toolchain.toml) plus nightly for cargo-fuzz.
# A fresh machine has no Rust: install rustup (curl came with the packages above); the
# toolchain itself comes from rust-toolchain.toml.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
  export PATH="$HOME/.cargo/bin:$PATH"
fi
rustup toolchain list | grep -q '^1.95.0' || rustup toolchain install 1.95.0 --profile minimal -c rustfmt,clippy
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install --locked cargo-fuzz
fi

# bpffs for the datapath's pins.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  $SUDO mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs (eBPF tests will fail)" >&2
fi
echo "setup: ok"
