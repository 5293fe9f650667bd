#!/usr/bin/env bash
# Captures one masquerade connect run for bench/svc/scripts/masq-handshakes.py: runs
# `svc-bench forward --mode MODE --test connect --rounds 1 --duration 3`, and while it runs takes
# tcpdump on the external server's b0 and the pod's c0 (3 s, 80-byte snap) and nstat of the
# pod, node and server namespaces. Root. Used for the handshake stall in README.md.
#
#   bench/svc/scripts/masq-capture.sh BIN MODE OUTDIR
set -euo pipefail
bin=$1 mode=$2 out=$3
mkdir -p "$out"
"$bin" forward --mode "$mode" --test connect --rounds 1 --duration 3 --warmup 0.5 \
  --out "$out/forward.json" >"$out/bench.log" 2>&1 &
bp=$!
ns() { ip netns list | awk '{print $1}' | grep "^$1" | head -1 || true; }
for _ in $(seq 1 200); do
  ext=$(ns sb-ext) pod=$(ns sb-pod) node=$(ns sb-node)
  [ -n "$ext" ] && [ -n "$pod" ] && [ -n "$node" ] && break
  sleep 0.05
done
sleep 0.3
for n in "$ext" "$pod" "$node"; do ip netns exec "$n" nstat -n; done
ip netns exec "$ext" tcpdump -i b0 -s 80 -w "$out/ext.pcap" 2>"$out/td-ext.err" &
t1=$!
ip netns exec "$pod" tcpdump -i c0 -s 80 -w "$out/pod.pcap" 2>"$out/td-pod.err" &
t2=$!
sleep 3
kill "$t1" "$t2"
ip netns exec "$ext" nstat -a >"$out/nstat-ext.txt"
ip netns exec "$pod" nstat -a >"$out/nstat-pod.txt"
ip netns exec "$node" nstat -a >"$out/nstat-node.txt"
wait "$bp"
