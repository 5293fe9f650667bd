#!/usr/bin/env python3
"""Runs a Criterion benchmark command and keeps its raw samples with their provenance.

Criterion leaves its measurements under the target directory, which is not committed and
carries no commit or machine. This wrapper records the load average before and after the
command, then writes one JSON file with the date, commit (`-dirty` when the tree has
uncommitted changes), machine, the command, and per benchmark Criterion's estimates and raw
samples (iterations and total times), so a figure quoted in a README has its data beside it.

    python3 bgpd/benches/criterion_summary.py --out FILE.json --groups intern,rib_insert \\
        -- cargo bench -p bgpd --bench stages -- --warm-up-time 1 --measurement-time 5

`--groups` lists the Criterion groups to collect (default: every group found). The
Criterion directory is `$CARGO_TARGET_DIR/criterion` (else `target/criterion`).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys


def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def loadavg():
    try:
        return pathlib.Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--groups", default="")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        sys.exit("no command given after --")

    head = sh("git", "rev-parse", "HEAD")
    dirty = sh("git", "status", "--porcelain")
    commit = f"{head}-dirty" if head and dirty else (head or "unknown")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = loadavg()
    # stderr is passed through; lines starting with "record: " (facts a bench prints, such
    # as the bytes a structure allocated) are also kept in the JSON.
    records = []
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.startswith("record: "):
            records.append(line[len("record: "):].strip())
    rc = proc.wait()
    after = loadavg()
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} exited with {rc}")

    root = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    wanted = [g for g in a.groups.split(",") if g]
    results = []
    for bench in sorted(root.glob("*/*/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        if wanted and meta.get("group_id") not in wanted:
            continue
        d = bench.parent
        est = json.loads((d / "estimates.json").read_text())
        sample = json.loads((d / "sample.json").read_text())
        results.append(
            {
                "id": meta.get("full_id"),
                "throughput": meta.get("throughput"),
                "median_ns": est["median"]["point_estimate"],
                "median_ci95_ns": [
                    est["median"]["confidence_interval"]["lower_bound"],
                    est["median"]["confidence_interval"]["upper_bound"],
                ],
                "mean_ns": est["mean"]["point_estimate"],
                "samples": {"iters": sample["iters"], "times_ns": sample["times"]},
            }
        )
    out = {
        "command": " ".join(cmd),
        "regenerate": "python3 bgpd/benches/criterion_summary.py --out FILE"
        + (f" --groups {a.groups}" if a.groups else "")
        + " -- "
        + " ".join(cmd),
        "commit": commit,
        "date_utc": date,
        "machine": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_before": before,
            "loadavg_after": after,
        },
        "records": records,
        "results": results,
    }
    pathlib.Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(f"{r['id']}: median {r['median_ns'] / 1e6:.2f} ms")


if __name__ == "__main__":
    main()
