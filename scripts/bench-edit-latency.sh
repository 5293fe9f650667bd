#!/usr/bin/env bash
# The daemon-shape benchmark (issue 14): N LoadBalancer Services in a rackd peered with an
# FRR ToR, one Service added or edited at a time, against the rackd built from another commit
# (by default the one before the reshaping) in the same run. Root; not part of CI (CI runs
# its smoke size, rackd/tests/edit_latency_smoke.rs).
#
#   scripts/bench-edit-latency.sh [BEFORE_COMMIT] [OUT.json] [-- extra bench arguments]
#
# The "before" binary is built once in target/bench-before-<commit> (a detached worktree)
# and reused. Results: rackd/benches/data/edit_latency-<date>.json by default.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

before=${1:-7dfcb4c}
out=${2:-rackd/benches/data/edit_latency-$(date -u +%F).json}
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift

sha=$(git rev-parse "$before^{commit}")
dir="$PWD/target/bench-before-${sha:0:12}"
if [ ! -x "$dir/target/release/rackd" ]; then
  [ -d "$dir" ] || git worktree add --detach "$dir" "$sha"
  (cd "$dir" && cargo build --release -p rackd --bin rackd)
fi
RACKD_BEFORE_COMMIT="$sha" cargo bench -p rackd --bench edit_latency -- \
  --before "$dir/target/release/rackd" --out "$out" "$@"
