#!/usr/bin/env bash
# End-to-end HTTP benchmark of POST /v1/query/advanced with wrk.
#
# Starts build/rtad --simulate (the simulated universe with 7 days of hourly history) in a temp
# data dir with a generated admin key (enterprise tier, its rate limit raised so that it does
# not cap the benchmark), then measures with wrk (1 thread; 1 and 2 connections):
#   cached    simulator frozen (updates_per_sec 0): the data version never moves, every
#             answer after the first comes from the query cache
#   uncached  simulator frozen, query cache disabled (cache_entries 0): every request parses,
#             executes and encodes
#   live      simulator on at its default 50 updates/s: the version moves every 100 ms tick,
#             so the cache only helps between ticks
# and reports rtad's RSS after the load. Bodies: the spec_top2 / top100_tvl queries of
# rta-querybench (--print-queries). rtad is pinned to CPU 0 and wrk to CPU 1.
#
# Usage: bench/query-http.sh [-b BUILD_DIR] [-t SECONDS] [-r REPEATS] [-o RESULT_JSON]
# Needs: wrk (apt-get install wrk), curl, python3, openssl.
set -euo pipefail

BUILD=build
SECS=10
REPEATS=3
OUT=
while getopts "b:t:r:o:" opt; do
    case $opt in
    b) BUILD=$OPTARG ;;
    t) SECS=$OPTARG ;;
    r) REPEATS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) echo "usage: $0 [-b BUILD_DIR] [-t SECONDS] [-r REPEATS] [-o RESULT_JSON]" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "query-http: wrk is required (apt-get install wrk)" >&2; exit 1; }
RTAD=$(realpath "$BUILD/rtad")
QB=$(realpath "$BUILD/rta-querybench")

TMP=$(mktemp -d /tmp/rta-qhttp.XXXXXX)
PID=
stop_rtad() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
    fi
}
trap 'stop_rtad; rm -rf "$TMP"' EXIT

# rtad on CPU 0 and wrk on CPU 1 when there are two, so that the client does not steal the
# server's core (the machine may still be shared with other work: see the load average).
PIN_SERVER=()
PIN_CLIENT=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SERVER=(taskset -c 0)
    PIN_CLIENT=(taskset -c 1)
fi

KEY="rta_k$(openssl rand -hex 8)_$(openssl rand 32 | openssl base64 -A | tr '+/' '-_' | tr -d '=')"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/v1/query/advanced"
"$QB" --print-queries >"$TMP/queries.tsv"

body_of() { awk -F'\t' -v q="$1" '$1 == q {print $2}' "$TMP/queries.tsv"; }
write_lua() { # $1 = query name
    cat >"$TMP/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$(body_of "$1")]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
rss_mib() { awk -v f="$1" '$1 == f":" {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }

start_rtad() { # $1 = updates_per_sec, $2 = cache_entries
    rm -rf "$TMP/data"
    RTA_ADMIN_KEY=$KEY RTA_TIERS_ENTERPRISE_API_REQUESTS_PER_MINUTE=100000000 \
        RTA_SIMULATOR_UPDATES_PER_SEC=$1 RTA_QUERY_CACHE_ENTRIES=$2 RTA_LOG_LEVEL=warn \
        "${PIN_SERVER[@]}" "$RTAD" --simulate --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" \
        >"$TMP/rtad.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        kill -0 "$PID" 2>/dev/null || { cat "$TMP/rtad.log" >&2; exit 1; }
        sleep 0.1
    done
    # let the first persistence of the seeded universe finish: wait until rtad is nearly idle
    local prev now
    prev=$(cpu_ticks)
    for _ in $(seq 1 60); do
        sleep 1
        now=$(cpu_ticks)
        [ $((now - prev)) -lt 10 ] && break
        prev=$now
    done
}

# wrk; prints "req_per_s p50_ms p99_ms errors"
run_wrk() { # $1 = query name, $2 = connections
    "${PIN_CLIENT[@]}" wrk -t1 -c"$2" -d"${SECS}s" --latency -s "$TMP/$1.lua" "$URL" 2>&1 | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)} /^Requests\/sec/ {rps = $2}
        /Non-2xx/ {err = $NF}
        END {printf "%s %.3f %.3f %d\n", rps, p50, p99, err}'
}

check_answer() { # $1 = query name: one request, shows meta
    curl -fs -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        --data "$(body_of "$1")" "$URL" | python3 -c '
import json, sys
m = json.load(sys.stdin)["meta"]
print("total=%s cached=%s" % (m.get("total"), m.get("cached")))'
}

echo "query-http: rtad --simulate on 127.0.0.1:$PORT, wrk -t1, ${SECS}s per run"
printf "%-9s %-12s %3s %10s %8s %8s %6s\n" mode query c req/s p50_ms p99_ms errors
JSON="{\"bench\":\"query-http\",\"seconds\":$SECS,\"runs\":["
first=1
RSS_JSON=
for mode in cached uncached live; do
    case $mode in
    cached) start_rtad 0 1024 ;;
    uncached) start_rtad 0 0 ;;
    live) start_rtad 50 1024 ;;
    esac
    if [ -z "$RSS_JSON" ]; then
        RSS_JSON="\"rss_loaded_mib\":$(rss_mib VmRSS),\"rss_peak_mib\":$(rss_mib VmHWM)"
        echo "rtad RSS after load: $(rss_mib VmRSS) MiB (peak $(rss_mib VmHWM) MiB)"
    fi
    queries="spec_top2 top100_tvl"
    [ "$mode" = live ] && queries="spec_top2"
    for q in $queries; do
        write_lua "$q"
        echo "  $mode/$q first answer: $(check_answer "$q")"
        for c in 1 2; do
            reps=1
            [ "$mode/$q/$c" = uncached/spec_top2/1 ] && reps=$REPEATS
            results=()
            for ((r = 0; r < reps; r++)); do results+=("$(run_wrk "$q" "$c")"); done
            med=$(printf '%s\n' "${results[@]}" | sort -n -k1,1 | awk '{v[NR]=$0} END {print v[int((NR+1)/2)]}')
            read -r rps p50 p99 err <<<"$med"
            printf "%-9s %-12s %3s %10.0f %8.3f %8.3f %6s\n" "$mode" "$q" "$c" "$rps" "$p50" "$p99" "$err"
            [ "$first" = 1 ] || JSON+=","
            first=0
            JSON+="{\"mode\":\"$mode\",\"query\":\"$q\",\"connections\":$c,\"req_per_s\":$rps,"
            JSON+="\"p50_ms\":$p50,\"p99_ms\":$p99,\"errors\":$err,\"runs\":$reps}"
        done
    done
    echo "  rtad RSS at the end of $mode: $(rss_mib VmRSS) MiB (peak $(rss_mib VmHWM) MiB)"
    stop_rtad
done
JSON+="],$RSS_JSON}"
echo "$JSON"
[ -z "$OUT" ] || echo "$JSON" >"$OUT"
