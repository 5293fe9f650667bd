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
#   unzip                           unpacks the Go toolchain below when the machine has none
#   pmacct                          pmbmpd, the BMP collector the bmp crate's tests report to
PKGS=(gcc libc6-dev clang-19 llvm-19 libbpf-dev bpftool frr bird2 gobgpd etcd-server etcd-client
      arping ndisc6 tcpdump protobuf-compiler libprotobuf-dev iproute2 iputils-ping procps psmisc
      ca-certificates curl pkg-config systemd iptables ipvsadm openssl unzip pmacct)

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

# Go >= 1.26 builds the Kubernetes test binaries (scripts/k8s-build.sh; test infrastructure
# only, the product is Rust). Debian 12's golang-go is 1.19, too old for Kubernetes 1.37, so a
# machine without a new enough Go gets the official toolchain from the Go module proxy: the
# same zip the go command's GOTOOLCHAIN switch downloads, checked against the SHA-256 pinned
# here, unpacked under /usr/local/lib/rackd-go and linked as /usr/local/bin/go.
GO_VERSION=1.26.8
go_new_enough() {
  local v
  command -v go >/dev/null 2>&1 && v=$(go env GOVERSION 2>/dev/null) &&
    printf 'go1.26\n%s\n' "$v" | sort -V -C
}
if ! go_new_enough; then
  case "$(dpkg --print-architecture)" in
    amd64) go_arch=amd64; go_sha=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7 ;;
    arm64) go_arch=arm64; go_sha=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99 ;;
    *) echo "setup: no pinned Go toolchain for $(dpkg --print-architecture); install Go >= 1.26" >&2; exit 1 ;;
  esac
  proxy=${GOPROXY:-https://proxy.golang.org}
  proxy=${proxy%%,*}
  case "$proxy" in direct|off|"") proxy=https://proxy.golang.org ;; esac
  mod="golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-$go_arch"
  echo "setup: installing Go $GO_VERSION ($mod from $proxy)"
  tmp=$(mktemp -d)
  curl -sSfL -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$go_arch.zip"
  echo "$go_sha  $tmp/go.zip" | sha256sum -c --quiet -
  unzip -q "$tmp/go.zip" -d "$tmp"
  $SUDO rm -rf "/usr/local/lib/rackd-go/go$GO_VERSION"
  $SUDO mkdir -p /usr/local/lib/rackd-go
  $SUDO mv "$tmp/$mod" "/usr/local/lib/rackd-go/go$GO_VERSION"
  $SUDO chmod -R a+rX,u+w "/usr/local/lib/rackd-go/go$GO_VERSION"
  $SUDO ln -sf "/usr/local/lib/rackd-go/go$GO_VERSION/bin/go" /usr/local/bin/go
  rm -rf "$tmp"
  export PATH="/usr/local/bin:$PATH"
  hash -r
  go_new_enough || { echo "setup: Go $GO_VERSION installed but 'go' on PATH is still older" >&2; exit 1; }
fi

# bpffs for the datapath's pins.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  $SUDO mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs (eBPF tests will fail)" >&2
fi
echo "setup: ok"
