#!/usr/bin/env bash
# Prints the non-zero slots of rackd_lb_drops_v3 and rackd_lb_events_v3 (summed over CPUs) of the
# newest svc-bench pin root, i.e. of a running `svc-bench forward --mode masq-rackd` (root).
# Slots: datapath/bpf/lb_common.h (LB_DROP_*, LB_EV_*: 0 = NAT port-allocation retries).
d=$(ls -dt /sys/fs/bpf/svc-bench-rackd-*/lb_v3 2>/dev/null | head -1)
for n in rackd_lb_drops_v3 rackd_lb_events_v3; do
  bpftool -j map dump pinned $d/$n | python3 -c "
import json,sys
for e in json.load(sys.stdin):
    k=e['key']; k=k if isinstance(k,int) else int(''.join(reversed([x[2:] for x in k])),16) if isinstance(k,list) else k
    tot=sum(int(v['value']) if not isinstance(v['value'],list) else int(''.join(reversed([x[2:] for x in v['value']])),16) for v in e['values'])
    if tot: print('$n slot', k, tot)
print('$n dumped')
"
done
