#!/usr/bin/env bash
# Streaming benchmark: rta-bench against rtad, then against the Node.js reference server
# (bench/reference, socket.io 4), with the same parameters, and both results side by side.
#
#   bench/run-streaming.sh [--connections N] [--rate U] [--rooms R] [--duration S]
#                          [--warmup S] [--mode sio|ws] [--only rtad|reference]
#                          [-- extra rta-bench flags...]
#
# Defaults: 10000 connections, 1000 updates/s, 100 rooms, 20 s measured, 3 s warmup, sio.
# Everything listens on and connects to loopback only; each server is started fresh for its run
# and stopped after it. Env: BUILD_DIR (default build-bench, RelWithDebInfo, shared with
# run-query.sh),
# RTAD_PORT (18080), REF_PORT (18090), OUT_DIR (where the JSON results go; default a temp dir),
# RTAD_ARGS (extra rtad flags, e.g. "--set server.write_threads=0").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CONNECTIONS=10000 RATE=1000 ROOMS=100 DURATION=20 WARMUP=3 MODE=sio ONLY=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --rooms) ROOMS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

BUILD_DIR=${BUILD_DIR:-build-bench}
RTAD_PORT=${RTAD_PORT:-18080}
REF_PORT=${REF_PORT:-18090}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/rta-streaming.XXXXXX)}
mkdir -p "$OUT_DIR"

log() { echo "run-streaming: $*" >&2; }

# ---- build ----
log "building RelWithDebInfo binaries in $BUILD_DIR (incremental)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j2 --target rtad rta-bench >/dev/null
if [ ! -d bench/reference/node_modules ]; then
    log "installing the reference server's packages (npm ci)"
    (cd bench/reference && npm ci --no-audit --no-fund >/dev/null)
fi

# ---- helpers ----
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT INT TERM

wait_http() { # url
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

run_bench() { # name url key
    local name=$1 url=$2 key=$3
    log "$name: rta-bench --connections $CONNECTIONS --rate $RATE --rooms $ROOMS --duration $DURATION --mode $MODE"
    "$BUILD_DIR/rta-bench" --url "$url" --key "$key" --connections "$CONNECTIONS" \
        --rate "$RATE" --rooms "$ROOMS" --duration "$DURATION" --warmup "$WARMUP" \
        --mode "$MODE" --json ${EXTRA[@]+"${EXTRA[@]}"} | tee "$OUT_DIR/$name.txt" || true
    grep '^{' "$OUT_DIR/$name.txt" | tail -1 > "$OUT_DIR/$name.json" || true
}

# ---- rtad ----
if [ -z "$ONLY" ] || [ "$ONLY" = rtad ]; then
    # A throwaway admin key (role admin: subscribe + ingest; tier enterprise), with the tier's
    # limits raised so that one key may hold every benchmark connection and ingest at 100 req/s.
    KEY="rta_k$(openssl rand -hex 8)_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
    DATA=$(mktemp -d /tmp/rtad-bench.XXXXXX)
    RTA_ADMIN_KEY=$KEY "$BUILD_DIR/rtad" --listen "127.0.0.1:$RTAD_PORT" --data-dir "$DATA" \
        --log-level warn \
        --set server.max_connections=19500 \
        --set tiers.enterprise.websocket_connections=1000000 \
        --set tiers.enterprise.api_requests_per_minute=100000000 \
        --set tiers.enterprise.messages_per_minute=100000000 ${RTAD_ARGS:-} \
        >"$OUT_DIR/rtad.log" 2>&1 &
    SERVER_PID=$!
    if wait_http "http://127.0.0.1:$RTAD_PORT/healthz"; then
        run_bench rtad "http://127.0.0.1:$RTAD_PORT" "$KEY"
    else
        log "rtad did not come up; see $OUT_DIR/rtad.log"
    fi
    stop_server
    rm -rf "$DATA"
fi

# ---- reference ----
if [ -z "$ONLY" ] || [ "$ONLY" = reference ]; then
    (cd bench/reference && PORT=$REF_PORT HOST=127.0.0.1 REF_API_KEY=bench exec node server.js) \
        >"$OUT_DIR/reference.log" 2>&1 &
    SERVER_PID=$!
    if wait_http "http://127.0.0.1:$REF_PORT/health"; then
        run_bench reference "http://127.0.0.1:$REF_PORT" bench
    else
        log "the reference server did not come up; see $OUT_DIR/reference.log"
    fi
    stop_server
fi

# ---- side by side ----
node - "$OUT_DIR" <<'EOF'
const fs = require('fs');
const dir = process.argv[2];
const load = (n) => { try { return JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8')); } catch (e) { return null; } };
const a = load('rtad'), b = load('reference');
const rows = [
  ['connections held', (r) => `${r.held}/${r.connections}`],
  ['connect failures', (r) => r.connect_failures],
  ['disconnects', (r) => r.disconnects],
  ['connect phase (s)', (r) => r.connect_all_s.toFixed(1)],
  ['updates ingested', (r) => r.ingest_updates],
  ['deliveries/s', (r) => r.deliveries_per_s.toFixed(0)],
  ['delivered/expected', (r) => `${(r.delivery_ratio * 100).toFixed(1)}%`],
  ['latency p50 (ms)', (r) => r.latency_ms.p50.toFixed(2)],
  ['latency p95 (ms)', (r) => r.latency_ms.p95.toFixed(2)],
  ['latency p99 (ms)', (r) => r.latency_ms.p99.toFixed(2)],
  ['latency max (ms)', (r) => r.latency_ms.max.toFixed(2)],
];
const cell = (r, f) => (r ? String(f(r)) : 'n/a');
console.log('');
console.log(`${'metric'.padEnd(22)}${'rtad'.padStart(16)}${'reference'.padStart(16)}`);
for (const [name, f] of rows) console.log(`${name.padEnd(22)}${cell(a, f).padStart(16)}${cell(b, f).padStart(16)}`);
console.log(`\nJSON results: ${dir}/{rtad,reference}.json`);
EOF
