#!/usr/bin/env python3
"""Heap by allocation site at the largest massif snapshot taken before the table's teardown.

valgrind's massif output of a `bgpd-bench --bgpd-wrapper "valgrind --tool=massif ..."` run is
megabytes of text; this keeps what a README figure needs: for the largest detailed snapshot
whose tree does not yet contain the session teardown (`on_session_down`, which the harness
causes after convergence), the bytes under each allocation site, named by its first frame
in our code (bgpd / bgpd_wire) nearest the allocator, plus the snapshot's total.

    python3 bgpd/bench/massif_sites.py MASSIF_OUT > SUMMARY.txt
"""

import re
import sys

TEARDOWN = ("on_session_down", "drop_paths")
OURS = re.compile(r"(bgpd(_wire)?::[^ ]+(?: \([^)]*\))?)")


def snapshots(text):
    for block in text.split("#-----------\nsnapshot=")[1:]:
        head, _, tree = block.partition("heap_tree=")
        fields = dict(
            line.split("=", 1) for line in head.splitlines()[1:] if "=" in line
        )
        kind, _, body = tree.partition("\n")
        yield int(block.split("\n", 1)[0]), fields, kind.strip(), body


FRAME = re.compile(r"^( *)n(\d+): (\d+) (?:0x[0-9A-Fa-f]+: )?(.*)$")


def ours(fn):
    return re.match(r"<?(bgpd|bgpd_wire)::", fn) is not None


def sites(body):
    """(bytes, site): each allocation attributed to the first bgpd/bgpd_wire frame met when
    walking its stack from the allocator outwards, or to its last frame when none is ours."""
    nodes = []
    for line in body.splitlines():
        m = FRAME.match(line)
        if m:
            nodes.append((len(m.group(1)), int(m.group(3)), m.group(4)))
    out = {}

    def walk(i):
        depth, size, fn = nodes[i]
        children = []
        j = i + 1
        while j < len(nodes) and nodes[j][0] > depth:
            if nodes[j][0] == depth + 1:
                children.append(j)
            j += 1
        if ours(fn) or not children:
            key = fn.split(" (")[0][:120]
            out[key] = out.get(key, 0) + size
        else:
            for c in children:
                walk(c)
        return j

    # The root line ("n5: total (heap allocation functions) ...") has depth 0.
    i = 1 if nodes and nodes[0][0] == 0 else 0
    while i < len(nodes):
        i = walk(i)
    return [(v, k) for k, v in out.items()]


def main():
    text = open(sys.argv[1]).read()
    best = None
    for n, fields, kind, body in snapshots(text):
        if kind != "detailed" or any(t in body for t in TEARDOWN):
            continue
        total = int(fields.get("mem_heap_B", 0)) + int(fields.get("mem_heap_extra_B", 0))
        if best is None or total > best[1]:
            best = (n, total, fields, body)
    if best is None:
        sys.exit("no detailed snapshot before the teardown")
    n, total, fields, body = best
    print(f"snapshot {n}: heap {int(fields['mem_heap_B'])/1e6:.1f} MB useful + "
          f"{int(fields['mem_heap_extra_B'])/1e6:.1f} MB allocator overhead")
    for size, name in sorted(sites(body), reverse=True):
        if size >= 1_000_000:
            print(f"{size/1e6:8.1f} MB  {name}")


if __name__ == "__main__":
    main()
