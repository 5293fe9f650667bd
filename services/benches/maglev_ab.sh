#!/usr/bin/env bash
# A/B of one Maglev table (M = 16381, 10 and 100 backends) between the Criterion bench `maglev`
# of commit OLD (built in a temporary worktree with its own target directory, so its whole
# crate is OLD's: the table's type may differ; a shared target directory let cargo take one
# tree's artifacts for the other's) and the working tree's; writes OUT (JSON: both medians with their confidence
# intervals, date, commit, machine). The worktree is removed afterwards, also on failure.
#
#   services/benches/maglev_ab.sh OLD OUT
#   e.g. services/benches/maglev_ab.sh 43d761c services/benches/data/maglev-table-2026-12-07b.json
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1 out=$2
root=$(pwd)
wt=$(mktemp -d)
rmdir "$wt"
git worktree add -q --detach "$wt" "$old"
trap 'git worktree remove --force "$wt"' EXIT
bench() {
  CARGO_TARGET_DIR="$1" cargo bench -q -p rackd-services --bench maglev -- \
    --warm-up-time 2 --measurement-time 8 --save-baseline "$2" >/dev/null 2>&1
}
(cd "$wt" && bench "$root/target/maglev-ab-old" ab-old)
bench "$root/target" ab-new
# Criterion keeps each baseline under its target directory.
mkdir -p target/criterion/maglev_lookup_table_16381
for n in 10 100; do
  rm -rf "target/criterion/maglev_lookup_table_16381/$n/ab-old"
  cp -r "target/maglev-ab-old/criterion/maglev_lookup_table_16381/$n/ab-old" \
    "target/criterion/maglev_lookup_table_16381/$n/"
done
python3 - "$old" "$out" <<'PY'
import json, subprocess, sys, platform, datetime, os
old, out = sys.argv[1], sys.argv[2]
def git(*a):
    return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
rows = []
for n in (10, 100):
    for base in ("ab-old", "ab-new"):
        e = json.load(open(f"target/criterion/maglev_lookup_table_16381/{n}/{base}/estimates.json"))
        m = e["median"]
        rows.append({"backends": n, "code": "old" if base == "ab-old" else "new",
                     "median_us": m["point_estimate"] / 1e3,
                     "ci95_us": [m["confidence_interval"]["lower_bound"] / 1e3,
                                 m["confidence_interval"]["upper_bound"] / 1e3]})
doc = {"bench": "maglev lookup_table, M = 16381 (cargo bench -p rackd-services --bench maglev)",
       "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
       "old": git("rev-parse", old), "new_commit": git("rev-parse", "HEAD"),
       "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
       "machine": {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release()},
       "load1_end": os.getloadavg()[0],
       "command": "services/benches/maglev_ab.sh " + " ".join(sys.argv[1:]),
       "rows": rows}
for n in (10, 100):
    o = next(r for r in rows if r["backends"] == n and r["code"] == "old")["median_us"]
    w = next(r for r in rows if r["backends"] == n and r["code"] == "new")["median_us"]
    doc[f"speedup_{n}"] = round(o / w, 2)
json.dump(doc, open(out, "w"), indent=2)
print(json.dumps({k: doc[k] for k in ("speedup_10", "speedup_100")}))
PY
