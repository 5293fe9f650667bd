#!/usr/bin/env bash
# The README's first set-up command. On a fresh Debian 12 machine: installs everything
# (scripts/setup.sh: Debian packages, Rust toolchains, cargo-fuzz, bpffs), builds rackd,
# rackctl and rackd-lab in release, brings up the lab of containerlab/rackd-bgp.clab.yml with
# network namespaces (an FRR ToR, two rackd nodes with two pods each, a client), waits for the
# BGP sessions, shows them from rackd's side and the ToR's view of our routes, and fetches a
# pod on each node from the client through the ToR.
# It ends by fetching the deathstar Service's LoadBalancer addresses (172.18.255.200 and
# 2001:db8:dead:beef::) from the client, served by rackd's eBPF service datapath
# (RACKD_LAB_SERVICES=0 skips that step).
# Idempotent: a lab that is already up is taken down first. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
FILE=containerlab/rackd-bgp.clab.yml
LAB=target/release/rackd-lab
TIMEOUT=${RACKD_LAB_TIMEOUT:-90}

./scripts/setup.sh
# setup.sh may have just installed rustup.
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building rackd, rackctl, rackd-lab (release)"
cargo build --release -p rackd -p rackctl -p rackd-lab

if [ -e /run/rackd-lab/rackd-bgp ]; then
  echo "== the lab is up: taking it down first"
fi
# A no-op when the lab is not up.
$SUDO "$LAB" down "$FILE" >/dev/null

echo "== rackd-lab up $FILE"
$SUDO "$LAB" up "$FILE"

established() {
  $SUDO "$LAB" exec "$FILE" "$1" rackctl -o json bgp peers 2>/dev/null |
    grep -c '"session-state": *"established"' || true
}
echo "== waiting up to ${TIMEOUT}s for the BGP sessions (2 per node: IPv4 and IPv6)"
deadline=$((SECONDS + TIMEOUT))
until [ "$(established node1)" -ge 2 ] && [ "$(established node2)" -ge 2 ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "bootstrap: sessions not established after ${TIMEOUT}s" >&2
    $SUDO "$LAB" status "$FILE" >&2 || true
    $SUDO "$LAB" exec "$FILE" tor vtysh -c 'show bgp summary' >&2 || true
    echo "logs: /run/rackd-lab/rackd-bgp/<node>/*.log" >&2
    exit 1
  fi
  sleep 1
done

# ...and for the ToR to hold both nodes' PodCIDRs, so the tables below are complete.
until $SUDO "$LAB" exec "$FILE" tor vtysh -c 'show bgp ipv4 unicast' 2>/dev/null | grep -q 10.1.1.0/24 &&
      $SUDO "$LAB" exec "$FILE" tor vtysh -c 'show bgp ipv4 unicast' 2>/dev/null | grep -q 10.1.2.0/24; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "bootstrap: the ToR has not received the nodes' routes after ${TIMEOUT}s" >&2
    exit 1
  fi
  sleep 1
done
sleep 1

show() {
  local line="" a
  for a in "$@"; do
    case $a in *[[:space:]]*) line+=" '$a'" ;; *) line+=" $a" ;; esac
  done
  echo
  echo "\$ rackd-lab exec $FILE$line"
  $SUDO "$LAB" exec "$FILE" "$@"
}
show node1 rackctl bgp peers
show node2 rackctl bgp peers
show tor vtysh -c 'show bgp ipv4 unicast'
show tor vtysh -c 'show bgp ipv6 unicast'

# curl from the client until it answers (a route may still be on its way) or the deadline
# passes; prints the command and the answer (`pod=NAME client=IP:PORT`).
fetch() {
  local url=$1 out
  echo
  echo "\$ rackd-lab exec $FILE client curl -sS -g $url"
  until out=$($SUDO "$LAB" exec "$FILE" client curl -sS -g --max-time 2 "$url" 2>&1); do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$out" >&2
      return 1
    fi
    sleep 1
  done
  echo "$out"
}

echo
echo "== pods: the client reaches a pod on each node directly, through the ToR (PodCIDRs by BGP)"
deadline=$((SECONDS + TIMEOUT))
for url in http://10.1.1.11/ 'http://[fd00:10:1:2::12]/'; do
  if ! fetch "$url"; then
    echo "bootstrap: no answer from $url after ${TIMEOUT}s (pods: rackd-lab status $FILE; logs: /run/rackd-lab/rackd-bgp/deathstar-*/cmd.log)" >&2
    exit 1
  fi
done

if [ "${RACKD_LAB_SERVICES:-1}" = 1 ]; then
  echo
  echo "== services: the deathstar LoadBalancer from the client, forwarded by rackd's eBPF datapath"
  deadline=$((SECONDS + TIMEOUT))
  for url in http://172.18.255.200/ 'http://[2001:db8:dead:beef::]/'; do
    if ! fetch "$url"; then
      echo "bootstrap: no answer from $url after ${TIMEOUT}s: rackd's service datapath must be on (--kube-proxy-replacement on the nodes' cmd: in $FILE); the pods above answer directly" >&2
      exit 1
    fi
  done
else
  echo
  echo "== services: skipped (RACKD_LAB_SERVICES=0)"
fi

echo
echo "The lab is up. Try:"
echo "  $LAB exec $FILE node1 rackctl bgp routes advertised ipv4 unicast"
echo "  $LAB exec $FILE client ping -c1 10.0.0.1"
echo "  $LAB exec $FILE client curl -sS http://10.1.2.14/"
echo "  $LAB exec $FILE client rackd-lab udp-probe 10.1.1.13:5353"
echo "  $LAB status $FILE"
echo "  $LAB down $FILE"
