#!/usr/bin/env bash
# What a fresh machine's CI run costs: clones HEAD into an empty directory and runs `.ci/run`
# there with an empty cargo target, empty Go build and module caches and no cached Kubernetes
# binaries, timestamping every line; then writes OUT.json: date, commit, machine, exit code,
# total and per-stage seconds (test.sh's "== " lines, k8s-build's own timings) and how many
# test binaries passed. What stays warm is said in the file: the Debian packages, the Rust
# toolchains and the crates.io download cache (setup.sh only checks them).
#
#   scripts/measure-fresh-ci.sh OUT.json            # clone, run, summarise (about 30 min)
#   scripts/measure-fresh-ci.sh OUT.json --from-log LOG COMMIT
#                                                   # summarise an earlier run's log
#
# Needs root (as .ci/run does) and ~20 GB free for the clone's target and the Go caches
# (16.7 GB measured at a1a3e74).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
shift

if [ "${1:-}" = "--from-log" ]; then
  log=$2
  commit=$3
else
  commit=$(git rev-parse HEAD)
  work=$(mktemp -d /var/tmp/rackd-fresh-ci.XXXXXX)
  git clone -q "$PWD" "$work/clone"
  log="$work/ci.log"
  (
    cd "$work/clone"
    export CI=true RACKD_CACHE_DIR="$work/cache/rackd" GOCACHE="$work/cache/go-build" \
      GOMODCACHE="$work/cache/gomod"
    # The disk the run takes (clone, target, caches), sampled every 15 s: a CI machine with
    # less free space than the peak fails while linking tests.
    # (`|| true`: du fails when files vanish under it, and this script's `set -e` would end
    # the sampler early.) A last sample after the run: the target only grows.
    while sleep 15; do du -sxb "$work" 2>/dev/null | cut -f1 || true; done >"$work/disk.samples" &
    sampler=$!
    set +e
    .ci/run 2>&1 | while IFS= read -r l; do printf '%(%s)T %s\n' -1 "$l"; done >"$log"
    echo "rc=${PIPESTATUS[0]}" >>"$log"
    kill "$sampler" 2>/dev/null
    du -sxb "$work" 2>/dev/null | cut -f1 >>"$work/disk.samples" || true
    echo "peak_disk_bytes=$(sort -n "$work/disk.samples" | tail -n 1)" >>"$log"
  )
fi

rc=$(sed -n 's/^rc=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
peak=$(sed -n 's/^peak_disk_bytes=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
first=$(head -n 1 "$log" | cut -d' ' -f1)
last=$(grep -v '^rc=\|^peak_disk_bytes=' "$log" | tail -n 1 | cut -d' ' -f1)
passed=$(grep -c 'test result: ok' "$log" || true)
failed=$(grep -c 'test result: FAILED' "$log" || true)
# Each stage: from its "== " line to the next one (the last to the end of the log).
# Before the first "== " line: setup.sh.
stages=$(awk -v end="$last" '
  NR == 1 { name = "setup.sh"; start = $1 }
  / == / { t = $1; sub(/^[0-9]+ == /, ""); gsub(/"/, "\\\"");
           printf "%s    {\"stage\": \"%s\", \"seconds\": %d}", sep, name, t - start; sep = ",\n";
           name = $0; start = t }
  END { printf "%s    {\"stage\": \"%s\", \"seconds\": %d}", sep, name, end - start }' "$log")
k8s=$(grep -o 'k8s-build: [a-z]* built ([0-9]*s)\|k8s-build: done in [0-9]*s' "$log" | sed 's/"/\\"/g' |
  awk '{ printf "%s\"%s\"", sep, $0; sep = ", " }')
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cat >"$out" <<EOF
{
  "what": "a fresh machine's .ci/run: clean clone of the commit, empty cargo target, empty Go build and module caches, no cached Kubernetes binaries",
  "warm": "Debian packages already installed, Rust toolchains (1.95.0, nightly, cargo-fuzz) installed, crates.io download cache present, Go 1.26.8 present",
  "date": "$(date -u -d "@$first" +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$commit",
  "machine": {"uname": "$(uname -srm)", "nproc": $(nproc), "cpu": "$cpu", "mem_kib": $(awk '/MemTotal/ {print $2}' /proc/meminfo)},
  "command": "scripts/measure-fresh-ci.sh OUT.json",
  "rc": ${rc:-null},
  "total_seconds": $((last - first)),
  "peak_disk_bytes": ${peak:-null},
  "test_binaries_passed": $passed,
  "test_binaries_failed": $failed,
  "k8s_build": [$k8s],
  "stages": [
$stages
  ]
}
EOF
echo "wrote $out: rc=${rc:-?}, $((last - first)) s"
