#!/usr/bin/env bash
# Alert benchmark: (1) the rule engine in process (tools/alert_bench: 100k rules, evaluation cost
# per event), (2) rtad end to end: rules created over the REST API fire on ingested updates and
# notify a local webhook receiver and SMTP server (bench/alerts/receiver.mjs), which measure
# trigger -> webhook received and trigger -> SMTP accepted.
#
#   bench/run-alerts.sh [--webhook-rules 200] [--email-rules 50] [--protocols 50]
#                       [--trigger-rate 50] [--background-rate 1000] [--idle-rules 0]
#                       [--duration 30] [--drain 15] [--engine-rules 100000]
#                       [--engine-events 100000] [--skip engine|e2e]
#
# --trigger-rate: updates/s to the protocols the rules watch; each such update notifies every
# rule of its protocol ((webhook+email rules)/protocols of them). --background-rate: updates/s
# to 1000 other protocols no notifying rule watches. Details: bench/alerts/drive.mjs.
# Loopback only; every phase is bounded (ingest --duration s, drain at most --drain s).
# Env: BUILD_DIR (build-bench, RelWithDebInfo, shared with the other bench scripts), RTAD_PORT
# (18080), HOOK_PORT (18181), SMTP_PORT (18125), OUT_DIR (default: a new /tmp/rta-alerts.*).
set -euo pipefail
cd "$(dirname "$0")/.."

WEBHOOK_RULES=200 EMAIL_RULES=50 PROTOCOLS=50 TRIGGER_RATE=50 BACKGROUND_RATE=1000 IDLE_RULES=0
DURATION=30 DRAIN=15 ENGINE_RULES=100000 ENGINE_EVENTS=100000 SKIP=" "
while [ $# -gt 0 ]; do
    case "$1" in
    --webhook-rules) WEBHOOK_RULES=$2; shift 2 ;;
    --email-rules) EMAIL_RULES=$2; shift 2 ;;
    --protocols) PROTOCOLS=$2; shift 2 ;;
    --trigger-rate) TRIGGER_RATE=$2; shift 2 ;;
    --background-rate) BACKGROUND_RATE=$2; shift 2 ;;
    --idle-rules) IDLE_RULES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --drain) DRAIN=$2; shift 2 ;;
    --engine-rules) ENGINE_RULES=$2; shift 2 ;;
    --engine-events) ENGINE_EVENTS=$2; shift 2 ;;
    --skip) SKIP+="$2 "; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

BUILD_DIR=${BUILD_DIR:-build-bench}
RTAD_PORT=${RTAD_PORT:-18080}
HOOK_PORT=${HOOK_PORT:-18181}
SMTP_PORT=${SMTP_PORT:-18125}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/rta-alerts.XXXXXX)}
mkdir -p "$OUT_DIR"
log() { echo "run-alerts: $*" >&2; }

# ---- build ----
log "building RelWithDebInfo binaries in $BUILD_DIR (incremental)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRTA_SANITIZE=OFF >/dev/null
cmake --build "$BUILD_DIR" -j2 --target rtad alert_bench >/dev/null
if [ ! -d bench/alerts/node_modules ]; then
    log "installing the receiver's packages (npm ci)"
    (cd bench/alerts && npm ci --no-audit --no-fund >/dev/null)
fi

# ---- processes we start, stopped by pid on exit ----
RTAD_PID="" RECV_PID="" LOAD_PID="" DATA=""
stop_pid() { # pid
    local pid=$1
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$RTAD_PID"; RTAD_PID=""
    stop_pid "$RECV_PID"; RECV_PID=""
    stop_pid "$LOAD_PID"; LOAD_PID=""
    [ -z "$DATA" ] || rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

wait_http() { # url
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ---- machine ----
{
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "node: $(node --version)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT_DIR/machine.txt"
# load average every 2 s for the whole run (the machine is shared)
(while :; do echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 2; done) >"$OUT_DIR/loadavg.txt" &
LOAD_PID=$!

# ---- 1. rule engine in process ----
if [[ $SKIP != *" engine "* ]]; then
    log "alert_bench $ENGINE_RULES rules, $ENGINE_EVENTS events"
    "$BUILD_DIR/alert_bench" "$ENGINE_RULES" "$ENGINE_EVENTS" | tee "$OUT_DIR/alert_bench.txt"
    NS=$(sed -n 's/.*= \([0-9]*\) ns\/event.*/\1/p' "$OUT_DIR/alert_bench.txt")
    if [ -n "$NS" ]; then
        awk -v ns="$NS" 'BEGIN { printf "at 10,000 updates/s: %.1f%% of one core for rule evaluation (%s ns/event); one core keeps up to %.0f events/s\n", ns * 10000 / 1e7, ns, 1e9 / ns }' |
            tee -a "$OUT_DIR/alert_bench.txt"
    fi
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# ---- 2. end to end ----
if [[ $SKIP != *" e2e "* ]]; then
    node bench/alerts/receiver.mjs --http-port "$HOOK_PORT" --smtp-port "$SMTP_PORT" \
        --out "$OUT_DIR/receiver.json" >"$OUT_DIR/receiver.txt" 2>"$OUT_DIR/receiver.log" &
    RECV_PID=$!
    # A throwaway admin key (tier enterprise) with the tier's request and rule limits raised.
    KEY="rta_k$(openssl rand -hex 8)_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
    DATA=$(mktemp -d /tmp/rtad-alerts.XXXXXX)
    RULES_MAX=$((WEBHOOK_RULES + EMAIL_RULES + IDLE_RULES + 10))
    RTA_ADMIN_KEY=$KEY RTA_WEBHOOKS_ALLOW_PRIVATE=true RTA_SMTP_URL="smtp://127.0.0.1:$SMTP_PORT" \
    RTA_TIERS_ENTERPRISE_ALERT_RULES=$RULES_MAX \
    RTA_TIERS_ENTERPRISE_API_REQUESTS_PER_MINUTE=100000000 \
    RTA_ALERTS_PUBLIC_URL="http://127.0.0.1:$RTAD_PORT" \
        "$BUILD_DIR/rtad" --listen "127.0.0.1:$RTAD_PORT" --data-dir "$DATA" --log-level warn \
        >"$OUT_DIR/rtad.log" 2>&1 &
    RTAD_PID=$!
    if ! wait_http "http://127.0.0.1:$RTAD_PORT/healthz"; then
        log "rtad did not come up; see $OUT_DIR/rtad.log"
        exit 1
    fi
    wait_http "http://127.0.0.1:$HOOK_PORT/_counts" || { log "receiver did not come up"; exit 1; }
    node bench/alerts/drive.mjs --url "http://127.0.0.1:$RTAD_PORT" --key "$KEY" \
        --receiver "http://127.0.0.1:$HOOK_PORT" --webhook-rules "$WEBHOOK_RULES" \
        --email-rules "$EMAIL_RULES" --protocols "$PROTOCOLS" --trigger-rate "$TRIGGER_RATE" \
        --background-rate "$BACKGROUND_RATE" --idle-rules "$IDLE_RULES" --duration "$DURATION" \
        --drain "$DRAIN" --out "$OUT_DIR/drive.json" >/dev/null
    RSS=$(awk '/VmHWM/ {print $2 " kB"}' "/proc/$RTAD_PID/status" 2>/dev/null || echo "?")
    CPU=$(awk '{printf "%.1f s", ($14 + $15) / 100}' "/proc/$RTAD_PID/stat" 2>/dev/null || echo "?")
    # schedstat per thread: ns on CPU, ns runnable but waiting for a CPU (the shared machine)
    SCHED=$(cat /proc/"$RTAD_PID"/task/*/schedstat 2>/dev/null |
        awk '{ run += $1; wait += $2 } END { printf "%.1f s on CPU, %.1f s runnable but waiting for a CPU", run / 1e9, wait / 1e9 }')
    echo "rtad: peak RSS $RSS, CPU (user+sys) $CPU; all threads since start: $SCHED" | tee "$OUT_DIR/rtad-usage.txt"
    stop_pid "$RTAD_PID"; RTAD_PID=""
    stop_pid "$RECV_PID"; RECV_PID=""
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

    node - "$OUT_DIR" <<'EOF'
const fs = require('fs');
const dir = process.argv[2];
const d = JSON.parse(fs.readFileSync(`${dir}/drive.json`, 'utf8'));
const r = d.receiver;
const p = d.params;
console.log(`\nrules: ${d.rules.created}/${d.rules.asked} created in ${d.rules.seconds.toFixed(1)} s ` +
  `(${p.webhookRules} webhook, ${p.emailRules} email over ${p.protocols} protocols, ${p.idleRules} idle)`);
const i = d.ingest;
console.log(`ingest: ${i.seconds} s, ${i.triggerUpdates} alert-protocol + ${i.backgroundUpdates} background updates ` +
  `(${i.updatesPerSecond}/s), ${i.skipped} skipped, ${i.posts} POSTs, ${i.postFailures} failed, ` +
  `POST p50/p99/max ${[i.postMs.p50, i.postMs.p99, i.postMs.max].map((x) => (x ?? 0).toFixed(1)).join(' / ')} ms`);
const perUpdate = (p.webhookRules + p.emailRules) / p.protocols;
console.log(`expected notifications: ~${Math.round(i.triggerUpdates * perUpdate)} ` +
  `(${i.triggerUpdates} updates x ${perUpdate} rules; webhook ~${Math.round(i.triggerUpdates * p.webhookRules / p.protocols)}, ` +
  `email ~${Math.round(i.triggerUpdates * p.emailRules / p.protocols)})`);
console.log(`drain: ${d.drain.seconds} s, pending at end: ${d.drain.pendingAtEnd}\n`);
const f = (s, k) => (s ? s[k].toFixed(1) : '-').padStart(9);
console.log(`${'latency (ms)'.padEnd(28)}${'count'.padStart(8)}${'dup'.padStart(6)}` +
  ['p50', 'p95', 'p99', 'max', 'mean'].map((x) => x.padStart(9)).join(''));
for (const [name, c, key] of [['webhook trigger->received', r.webhook, 'latencyMsFromTrigger'],
                              ['webhook event->received', r.webhook, 'latencyMsFromEvent'],
                              ['email trigger->accepted', r.email, 'latencyMsFromTrigger']]) {
  const s = c[key];
  console.log(`${name.padEnd(28)}${String(c.received).padStart(8)}${String(c.duplicates).padStart(6)}` +
    ['p50', 'p95', 'p99', 'max', 'mean'].map((k) => f(s, k)).join(''));
}
console.log(`webhook ${JSON.stringify(r.webhook.byType)} over ${r.webhook.spanSeconds} s; ` +
  `email ${JSON.stringify(r.email.byType)} over ${r.email.spanSeconds} s`);
console.log(`\ndeliveries (GET /v1/alerts/deliveries): ${d.deliveries.total} ${JSON.stringify(d.deliveries.byChannelStatus)}`);
for (const [ch, s] of Object.entries(d.deliveries.createdToDeliveredMs || {}))
  console.log(`  rtad's view, ${ch} createdAt->deliveredAt ms: p50 ${s.p50} p95 ${s.p95} p99 ${s.p99} max ${s.max} (n ${s.n})`);
console.log('\n/metrics after the run:');
for (const l of d.metrics) console.log(`  ${l}`);
console.log(`\nresults: ${dir}/drive.json (everything), receiver.json, alert_bench.txt, loadavg.txt, rtad.log`);
EOF
fi

stop_pid "$LOAD_PID"; LOAD_PID=""
awk '{ if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; s += $2; n++ }
     END { if (n) printf "load average (1 min) during the run: min %.2f, mean %.2f, max %.2f over %d samples\n", min, s / n, max, n }' \
    "$OUT_DIR/loadavg.txt" | tee "$OUT_DIR/load-summary.txt"
