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

echo "== cargo build (binaries the lab and integration tests run: rackd, rackctl, rackd-lab)"
cargo build --workspace --bins

echo "== cargo test"
# Tests create their own uniquely named namespaces and remove them; they run in parallel.
cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
status=${PIPESTATUS[0]}

echo "== leftovers"
left=$(ip netns list 2>/dev/null | wc -l)
if [ "$left" -ne 0 ]; then
  echo "test: namespaces left behind:"; ip netns list; status=1
fi
exit "$status"
