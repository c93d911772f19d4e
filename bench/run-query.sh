#!/usr/bin/env bash
# Query and ingest benchmarks, all three parts, with the machine description:
#   1. rta-querybench   in-process: query latency / q/s on one core, ingest updates/s, memory
#   2. query-pg.sh      the same universe and queries in PostgreSQL 15 with pgbench
#   3. query-http.sh    rtad end to end over HTTP with wrk, cached / uncached / live
# Results go to OUT_DIR (default: a new /tmp/rta-qbench.* directory): one .txt and one .json
# per part. docs/BENCHMARKS.md ("Query and ingest") records a run and how to read it.
#
# Usage: bench/run-query.sh [-b BUILD_DIR] [-t SECONDS] [-r REPEATS] [-o OUT_DIR] [-s PART]...
#   -t   seconds per pgbench / wrk run (default 10); rta-querybench runs are half that
#   -s   skip a part: querybench, pg or http (repeatable)
# Builds BUILD_DIR (default build-bench) as RelWithDebInfo without sanitizers first.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=build-bench
SECS=10
REPEATS=3
OUT=
SKIP=" "
while getopts "b:t:r:o:s:" opt; do
    case $opt in
    b) BUILD=$OPTARG ;;
    t) SECS=$OPTARG ;;
    r) REPEATS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    s) SKIP+="$OPTARG " ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
    esac
done
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/rta-qbench.XXXXXX)
mkdir -p "$OUT"

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRTA_SANITIZE=OFF >/dev/null
cmake --build "$BUILD" -j2 --target rtad rta-querybench >/dev/null

{
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

QSECS=$(awk -v s="$SECS" 'BEGIN {print s / 2}')
if [[ $SKIP != *" querybench "* ]]; then
    echo "== rta-querybench --seconds $QSECS --repeats $REPEATS (pinned to CPU 0)"
    PIN=()
    command -v taskset >/dev/null && PIN=(taskset -c 0)
    "${PIN[@]}" "$BUILD/rta-querybench" --seconds "$QSECS" --repeats "$REPEATS" | tee "$OUT/querybench.txt"
    grep '^{"bench":"query"' "$OUT/querybench.txt" >"$OUT/querybench.json"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [[ $SKIP != *" pg "* ]]; then
    echo "== bench/query-pg.sh -t $SECS -r $REPEATS"
    bench/query-pg.sh -b "$BUILD" -t "$SECS" -r "$REPEATS" -o "$OUT/pg.json" | tee "$OUT/pg.txt"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [[ $SKIP != *" http "* ]]; then
    echo "== bench/query-http.sh -t $SECS -r $REPEATS"
    bench/query-http.sh -b "$BUILD" -t "$SECS" -r "$REPEATS" -o "$OUT/http.json" | tee "$OUT/http.txt"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# Side by side: rtad in-process (CPU-time q/s, one core) vs PostgreSQL pgbench -c 1.
if [ -f "$OUT/querybench.json" ] && [ -f "$OUT/pg.json" ]; then
    python3 - "$OUT/querybench.json" "$OUT/pg.json" <<'PY' | tee "$OUT/compare.txt"
import json, sys
qb = json.load(open(sys.argv[1]))["queries"]
pg = json.load(open(sys.argv[2]))["queries"]
print("%-16s %6s %6s %11s %11s %11s %9s %9s" % ("query", "total", "pg", "rtad q/s", "rtad q/s",
      "pg tps", "ratio", "ratio"))
print("%-16s %6s %6s %11s %11s %11s %9s %9s" % ("", "rtad", "total", "(wall)", "(cpu)", "(c=1)",
      "wall", "cpu"))
for name, r in qb.items():
    p = pg.get(name)
    if not p or not r.get("qps"):
        continue
    tps = p["c1"]["tps"]
    print("%-16s %6d %6d %11.0f %11.0f %11.0f %8.1fx %8.1fx" % (name, r["total"], p["total"],
          r["qps"], r["cpu_qps"], tps, r["qps"] / tps, r["cpu_qps"] / tps))
PY
fi
echo "results in $OUT"
