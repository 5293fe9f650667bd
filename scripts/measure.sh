#!/usr/bin/env bash
# Times a command and records the result with the machine it ran on: the raw data behind a
# time or size quoted in a README (project rule: date, commit and machine beside every figure,
# and the command that regenerates it).
#
#   scripts/measure.sh OUT.json REPS -- COMMAND [ARGS...]
#
# Runs COMMAND REPS times in a row from the repository root and writes OUT.json: the date,
# `git rev-parse HEAD` (and which tracked files were modified: the tree may be shared),
# `uname -srm`, `nproc`, the CPU model, the load average before and after, the command (its
# argv), the wall-clock seconds of every run and their median, and the last run's stdout (its
# first 4 KiB). COMMAND's stderr passes through. A run that fails stops the measurement, and
# nothing is written.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: scripts/measure.sh OUT.json REPS -- COMMAND [ARGS...]" >&2
  exit 2
fi
out=$1
reps=$2
shift 3
case $reps in '' | *[!0-9]* | 0) echo "measure: REPS must be a positive integer" >&2; exit 2 ;; esac

# A JSON string: backslash, quote and control characters escaped.
json_str() {
  local s=$1 o="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      '\') o+='\\' ;;
      '"') o+='\"' ;;
      $'\n') o+='\n' ;;
      $'\t') o+='\t' ;;
      $'\r') o+='\r' ;;
      [[:cntrl:]]) o+=$(printf '\\u%04x' "'$c") ;;
      *) o+=$c ;;
    esac
  done
  printf '"%s"' "$o"
}

now() { date +%s.%N; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
argv=""
for a in "$@"; do argv+="${argv:+, }$(json_str "$a")"; done

times=()
stdout=""
for ((r = 1; r <= reps; r++)); do
  t0=$(now)
  stdout=$("$@")
  t1=$(now)
  times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
  echo "measure: run $r/$reps: ${times[-1]} s" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
dirty=false
git diff --quiet HEAD -- 2>/dev/null || dirty=true

mkdir -p "$(dirname "$out")"
{
  echo "{"
  echo "  \"date\": $(json_str "$date"),"
  echo "  \"commit\": $(json_str "$(git rev-parse HEAD)"),"
  echo "  \"dirty\": $dirty,"
  echo "  \"modified\": $(json_str "$(git diff --name-only HEAD -- | tr '\n' ' ' | sed 's/ $//')"),"
  echo "  \"machine\": {"
  echo "    \"uname\": $(json_str "$(uname -srm)"),"
  echo "    \"nproc\": $(nproc),"
  echo "    \"cpu\": $(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"),"
  echo "    \"mem_total\": $(json_str "$(grep -m1 MemTotal /proc/meminfo | awk '{ print $2, $3 }')")"
  echo "  },"
  echo "  \"loadavg_before\": $(json_str "$load_before"),"
  echo "  \"loadavg_after\": $(json_str "$load_after"),"
  echo "  \"command\": [$argv],"
  echo "  \"reps\": $reps,"
  echo "  \"wall_s\": [$(IFS=,; echo "${times[*]}" | sed 's/,/, /g')],"
  echo "  \"wall_s_median\": $median,"
  echo "  \"last_stdout\": $(json_str "${stdout:0:4096}")"
  echo "}"
} >"$out"
echo "measure: wrote $out (median $median s)" >&2
