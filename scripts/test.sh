#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, interop (FRR/BIRD/GoBGP/etcd in network
# namespaces), eBPF and lab tests. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# setup.sh may have just installed rustup.
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== fuzz targets compile (cargo +nightly fuzz runs them; --locked keeps their lockfiles current)"
for d in */fuzz */*/fuzz; do
  # One target dir for all of them: they share most dependencies, and six copies cost 1.8 GB.
  if [ -f "$d/Cargo.toml" ]; then
    cargo check --quiet --locked --bins --manifest-path "$d/Cargo.toml" --target-dir target/fuzz-check
  fi
done

echo "== cargo build (binaries the lab and integration tests run: rackd, rackctl, rackd-lab)"
cargo build --workspace --bins

# What the tests could leave behind: daemons they start (by name, plus anything run from
# this checkout's target/), and pins under bpffs. Recorded before, compared after, so a
# daemon or pin that was there already is not blamed on the tests.
daemons() {
  # (kube-controller: kube-controller-manager's name as the kernel keeps it, 15 characters.)
  { for n in bgpd zebra watchfrr bfdd bird gobgpd etcd pmbmpd rackd rackd-lab kube-apiserver kube-controller; do
      pgrep -x "$n" || true; done
    pgrep -f "^$PWD/target/" || true; } | sort -u
}
pins() { find /sys/fs/bpf -mindepth 1 2>/dev/null | sort || true; }
# Lab directories (netlab's LabDir) are removed on drop and kept only when a test panics.
labdirs() { find /tmp/netlab -mindepth 1 -maxdepth 1 2>/dev/null | sort || true; }
before_daemons=$(daemons)
before_pins=$(pins)
before_labdirs=$(labdirs)
# Namespaces too: bootstrap.sh leaves its lab up (rlab-*), and that is not the tests' doing.
netns() { ip netns list 2>/dev/null | awk '{print $1}' | sort || true; }
before_netns=$(netns)

echo "== Kubernetes test binaries (scripts/k8s-build.sh; cached, so only a machine's first run builds)"
# Built here, outside any test's time: kube-apiserver, kube-controller-manager, kubectl, etcd
# and helm from their Go modules (tests/kubelab/README.md). The tests then use this bin dir.
RACKD_K8S_BIN_DIR=$(./scripts/k8s-build.sh | tail -n 1)
export RACKD_K8S_BIN_DIR

echo "== cargo test"
# Tests create their own uniquely named namespaces and remove them; they run in parallel.
# (No `set -e` here: a failing run must still reach the leftover checks below.)
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
status=${PIPESTATUS[0]}
set -e

echo "== leftovers"
new_netns=$(comm -13 <(echo "$before_netns") <(netns) || true)
if [ -n "$new_netns" ]; then
  echo "test: namespaces left behind:"; echo "$new_netns"; status=1
fi
new_daemons=$(comm -13 <(echo "$before_daemons") <(daemons) | grep -v "^$$\$" || true)
if [ -n "$new_daemons" ]; then
  echo "test: processes left behind:"; ps -o pid,args -p "$(echo "$new_daemons" | paste -sd,)" || true
  status=1
fi
new_pins=$(comm -13 <(echo "$before_pins") <(pins) || true)
if [ -n "$new_pins" ]; then
  echo "test: bpffs pins left behind:"; echo "$new_pins"; status=1
fi
new_labdirs=$(comm -13 <(echo "$before_labdirs") <(labdirs) || true)
if [ -n "$new_labdirs" ]; then
  echo "test: lab directories left behind:"; echo "$new_labdirs"; status=1
fi
exit "$status"
