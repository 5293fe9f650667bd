#!/usr/bin/env bash
# Regenerates every results file the README's figures come from, with the commands they were
# produced by, then prints the tables. Root; ~70 minutes on a 2-vCPU VM. Not part of CI (CI
# runs the smoke sizes: `cargo test -p svc-bench`).
#
#   bench/svc/scripts/run-all.sh [DATE]     # DATE names the files (default: today, UTC)
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PATH="$HOME/.cargo/bin:$PATH"
date=${1:-$(date -u +%F)}
res=bench/svc/results
cargo build --release -p svc-bench
bin=target/release/svc-bench

# A. Programming at full size. kube-proxy's own --noflush full load does not finish at this
# size with iptables-nft 1.8.9 (it grows faster than linearly), so the full size times the
# fresh-namespace load without --noflush and kube-proxy's partial (--noflush) update (up to
# 300 s each: one load took 173 s on a busy day)...
for m in 16381 1021; do
  $bin program --services 27000 --backends 10 --reps 2 \
    --system iptables --system bpf-floor --system rackd --system ipvs \
    --iptables-case full-flush --iptables-case one-change --restore-timeout 300 --lut-size $m \
    --out "$res/program-27000x10-m$m-$date.json"
done
# ...and every case, kube-proxy's exact full load included, at sizes where it finishes.
for n in 1000 2000; do
  $bin program --services "$n" --backends 10 --reps 3 --restore-timeout 300 \
    --out "$res/program-${n}x10-$date.json"
done

# D. One Maglev chunk's kernel cost by value size (the datapath's layout versions 1 and 2).
$bin chunk-sizes --entries 200000 --reps 5 --out "$res/chunk-sizes-$date.json"

# B. Forwarding: every mode, 5 rounds x 5 s per test.
$bin forward --out "$res/forward-$date.json"
$bin forward --mode masq-none --mode masq-iptables --mode masq-rackd --out "$res/forward-masq-$date.json"
# New flows/s (the flows test) beside new connections, with 1 and with 1,000 Services loaded.
$bin forward --mode direct --mode rackd --mode iptables-local --mode ipvs --test connect \
  --test flows --out "$res/forward-flows-$date.json"
$bin forward --mode direct --mode rackd --mode iptables-local --mode ipvs --test connect \
  --test flows --services-loaded 1000 --out "$res/forward-flows-1000svc-$date.json"
# The egress gateway (issue 17: SNAT throughput at the gateway) on two nodes, with one node's
# masquerade beside it in the same run so the tunnel's cost shows.
$bin forward --mode egress-none --mode egress-rackd --mode masq-none --mode masq-rackd \
  --mode masq-iptables --out "$res/forward-egress-$date.json"

$bin table "$res"/*-"$date".json
