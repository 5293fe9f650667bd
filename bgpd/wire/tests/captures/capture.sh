#!/usr/bin/env bash
# One-off capture of real BGP messages from FRR 8.4, BIRD 2.0.12 and GoBGP 3.10 (Debian
# packages) for the golden tests in ../golden.rs. Run as root: `bash capture.sh` writes
# capture.pcap and, through extract.py, messages.txt (one message per line: sender@addr->receiver@addr, type, hex).
#
# Topology (namespaces are named with this script's PID and removed on exit):
#   B: gobgpd AS 4200000002  fd00::2 ---- fd00::1 A: FRR bgpd AS 4200000001 10.0.1.1 ---- 10.0.1.3 C: BIRD AS 65003
#   A-B: IPv6 session, ipv4+ipv6 unicast, extended next hop, GR, add-path (ipv6), 4-octet AS.
#   A-C: IPv4 session, FRR with `dont-capability-negotiate` (2-octet session: FRR
#        sends AS_TRANS + AS4_PATH), and an
#        IPv6 session on the same link (BIRD sends a global + link-local next hop), and an
#        iBGP IPv4 session (10.0.2.1-10.0.2.3, both AS 4200000001: LOCAL_PREF).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/bgpwire-cap.XXXXXX)
A=bgpwcap-a-$$; B=bgpwcap-b-$$; C=bgpwcap-c-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1
  ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; ip netns del "$C" 2>/dev/null || true
}
trap cleanup EXIT
for n in "$A" "$B" "$C"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add ab-$$ netns "$A" type veth peer name ba-$$ netns "$B"
ip link add ac-$$ netns "$A" type veth peer name ca-$$ netns "$C"
ip -n "$A" addr add 10.0.0.1/24 dev ab-$$; ip -n "$A" addr add fd00::1/64 dev ab-$$ nodad
ip -n "$B" addr add 10.0.0.2/24 dev ba-$$; ip -n "$B" addr add fd00::2/64 dev ba-$$ nodad
ip -n "$A" addr add 10.0.1.1/24 dev ac-$$; ip -n "$C" addr add 10.0.1.3/24 dev ca-$$
ip -n "$A" addr add fd01::1/64 dev ac-$$ nodad; ip -n "$C" addr add fd01::3/64 dev ca-$$ nodad
ip -n "$A" addr add 10.0.2.1/24 dev ac-$$; ip -n "$C" addr add 10.0.2.3/24 dev ca-$$
for x in "$A ab-$$" "$B ba-$$" "$A ac-$$" "$C ca-$$"; do set -- $x; ip -n "$1" link set "$2" up; done
sleep 2

ip netns exec "$A" tcpdump -i any -U -s 0 -w "$W/capture.pcap" 'tcp port 179' >/dev/null 2>&1 &
PIDS+=($!)

cat > "$W/frr.conf" <<CONF
frr defaults traditional
hostname frr-a
log stdout
!
bgp community-list standard X permit 1:1
route-map RICH permit 10
 set community 4200:100 4200:200
 set large-community 4200000001:1:2 4200000001:3:4
 set extcommunity rt 65001:300
 set metric 50
 set local-preference 250
 set origin incomplete
!
route-map PREP permit 10
 set as-path prepend 4200000001 65010
!
router bgp 4200000001
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart
 neighbor fd00::2 remote-as 4200000002
 neighbor fd00::2 capability extended-nexthop
 neighbor 10.0.1.3 remote-as 65003
 neighbor 10.0.1.3 dont-capability-negotiate
 neighbor fd01::3 remote-as 65003
 neighbor 10.0.2.3 remote-as 4200000001
 address-family ipv4 unicast
  network 192.0.2.0/24 route-map RICH
  network 198.51.100.0/24
  network 100.64.1.0/24
  aggregate-address 100.64.0.0/16
  aggregate-address 203.0.113.0/24 as-set summary-only
  neighbor fd00::2 activate
  neighbor 10.0.1.3 activate
  neighbor 10.0.1.3 route-map PREP out
  neighbor 10.0.2.3 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:1::/48 route-map RICH
  network 2001:db8:2::/48
  neighbor fd00::2 activate
  neighbor fd00::2 addpath-tx-all-paths
  neighbor fd01::3 activate
 exit-address-family
!
CONF
ip netns exec "$A" /usr/lib/frr/bgpd -Z -S -n -f "$W/frr.conf" -i "$W/bgpd.pid" --vty_socket "$W" -P 0 --log "file:$W/bgpd.log" &
PIDS+=($!)

cat > "$W/gobgp.toml" <<CONF
[global.config]
  as = 4200000002
  router-id = "10.0.0.2"
  local-address-list = ["fd00::2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00::1"
    peer-as = 4200000001
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
    [neighbors.afi-safis.add-paths.config]
      receive = true
      send-max = 2
CONF
ip netns exec "$B" gobgpd -f "$W/gobgp.toml" --api-hosts 127.0.0.1:50051 -p >"$W/gobgpd.log" 2>&1 &
PIDS+=($!)

cat > "$W/bird.conf" <<CONF
router id 10.0.1.3;
protocol device {}
protocol static s4 {
  ipv4;
  route 192.0.2.128/25 blackhole { bgp_community.add((65003,7)); bgp_large_community.add((65003,8,9)); bgp_med = 77; };
}
protocol bgp frr {
  local 10.0.1.3 as 65003;
  neighbor 10.0.1.1 as 23456;
  graceful restart on;
  ipv4 { import all; export all; };
}
protocol bgp frri {
  local 10.0.2.3 as 4200000001;
  neighbor 10.0.2.1 as 4200000001;
  ipv4 { import all; export all; next hop self; };
}
protocol static s6 {
  ipv6;
  route 2001:db8:9::/48 blackhole;
}
protocol bgp frr6 {
  local fd01::3 as 65003;
  neighbor fd01::1 as 4200000001;
  graceful restart on;
  ipv6 { import all; export all; };
}
CONF
ip netns exec "$C" bird -c "$W/bird.conf" -s "$W/bird.ctl" -P "$W/bird.pid"

G() { ip netns exec "$B" gobgp -u 127.0.0.1 -p 50051 "$@"; }
sleep 8
G global rib add -a ipv4 203.0.113.0/26 origin igp med 10 community 65002:10 large-community 4200000002:1:1 nexthop 10.0.0.2
G global rib add -a ipv4 203.0.113.64/26 origin egp aspath 65020 nexthop 10.0.0.2
G global rib add -a ipv6 2001:db8:3::/48 community 65002:20 nexthop fd00::2
G global rib add -a ipv4 198.18.0.0/15 rt 65002:30 nexthop 10.0.0.2 || true
sleep 6
V() { ip netns exec "$A" vtysh --vty_socket "$W" -c "$@"; }
V "show bgp summary" || true
V "show bgp ipv4 unicast" || true
G neighbor || true
ip netns exec "$C" birdc -s "$W/bird.ctl" show route || true
# ROUTE-REFRESH from each implementation.
V "clear bgp ipv6 unicast fd00::2 soft in" || true
G neighbor fd00::1 softresetin -a ipv4 || true
ip netns exec "$C" birdc -s "$W/bird.ctl" reload in frr6 || true
sleep 3
# Withdrawals from GoBGP (v4 classic/MP and v6).
G global rib del -a ipv4 203.0.113.64/26 || true
G global rib del -a ipv6 2001:db8:3::/48 || true
sleep 3
# NOTIFICATION with an RFC 9003 shutdown communication from FRR and from BIRD.
ip netns exec "$A" vtysh --vty_socket "$W" -c "configure terminal" -c "router bgp 4200000001" -c "neighbor fd00::2 shutdown message rackd golden: maintenance" || true
ip netns exec "$C" birdc -s "$W/bird.ctl" 'disable frr "bird says bye"' || true
sleep 3
cp "$W/capture.pcap" "$HERE/capture.pcap"
cp "$W"/bgpd.log "$W"/gobgpd.log /tmp/ 2>/dev/null || true
python3 "$HERE/extract.py" "$HERE/capture.pcap" > "$HERE/messages.txt"
echo "wrote $HERE/messages.txt"
