#!/usr/bin/env python3
"""Classifies the handshakes of a masquerade capture (bench/svc/scripts/masq-capture.sh).

For every SYN the external server receives (source 192.168.50.1, the node): the pod's source
port (matched by the SYN's sequence number in the pod-side capture: NAT keeps it), whether
the node port is the pod's own ("identity") or another ("moved"), whether the previous
connection seen on that node port came from the same pod port ("same-tuple"), another one
("other-tuple") or none in the capture ("first"), and the server's answer: SYN-ACK, or a bare
ACK (a TIME_WAIT socket refusing the SYN). For refused SYNs, the time to the client's retry of
the same SYN. Prints JSON.

    masq-handshakes.py CAPDIR [LABEL]
"""
import collections
import json
import re
import statistics
import subprocess
import sys

NODE, SERVER = "192.168.50.1", "192.168.50.2"
RX = re.compile(
    r"^(\S+) IP (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\], (?:seq (\d+)(?::\d+)?, )?"
)


def packets(path):
    out = subprocess.run(
        ["tcpdump", "-nn", "-tt", "-r", path, "tcp"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        m = RX.match(line)
        if m:
            t, src, sp, dst, dp, flags, seq = m.groups()
            yield float(t), src, int(sp), dst, int(dp), flags, int(seq) if seq else None


def nstat(path, names):
    vals = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in names:
                vals[parts[0]] = int(parts[1])
    return {n: vals.get(n, 0) for n in names}


def main():
    d = sys.argv[1]
    ext = list(packets(d + "/ext.pcap"))
    pod_syn = {}
    for t, src, sp, dst, dp, fl, seq in packets(d + "/pod.pcap"):
        if fl == "S":
            pod_syn.setdefault(seq, sp)
    seen, last, pending = set(), {}, {}
    classes = collections.Counter()
    events = collections.defaultdict(list)
    for t, src, sp, dst, dp, fl, seq in ext:
        if src == NODE and fl == "S":
            events[sp].append((t, "syn", seq))
            if (sp, seq) in seen:
                continue
            seen.add((sp, seq))
            pp = pod_syn.get(seq)
            prev = last.get(sp)
            last[sp] = pp
            pending[sp] = (pp, prev)
        elif src == SERVER and dst == NODE and fl in ("S.", "."):
            events[dp].append((t, "synack" if fl == "S." else "ack", None))
            if dp in pending:
                pp, prev = pending.pop(dp)
                answer = "syn-ack" if fl == "S." else ("ack" if fl == "." else fl)
                before = "first" if prev is None else ("same-tuple" if prev == pp else "other-tuple")
                port = "identity" if pp == dp else "moved"
                classes[f"{answer} {before} {port}"] += 1
    stalls = []
    for ev in events.values():
        for i, (t, kind, seq) in enumerate(ev):
            if kind == "syn" and i + 1 < len(ev) and ev[i + 1][1] == "ack":
                retry = [x for x in ev[i + 2 :] if x[1] == "syn" and x[2] == seq]
                if retry:
                    stalls.append((retry[0][0] - t) * 1e3)
    stalls.sort()
    print(
        json.dumps(
            {
                "label": sys.argv[2] if len(sys.argv) > 2 else d,
                "handshakes": dict(sorted(classes.items())),
                "refused_syn_retry_ms": {
                    "count": len(stalls),
                    "min": round(stalls[0], 2) if stalls else None,
                    "median": round(statistics.median(stalls), 2) if stalls else None,
                    "max": round(stalls[-1], 2) if stalls else None,
                },
                "nstat_server": nstat(d + "/nstat-ext.txt", ["TcpExtTW", "TcpExtPAWSTimewait"]),
                "nstat_pod": nstat(
                    d + "/nstat-pod.txt",
                    ["TcpActiveOpens", "TcpOutRsts", "TcpRetransSegs", "TcpExtTCPSynRetrans"],
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
