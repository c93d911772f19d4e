#!/usr/bin/env bash
# PostgreSQL reference for the advanced-query benchmark.
#
# Loads the same simulated universe rta-querybench builds (exported with --dump-csv) into a
# throw-away PostgreSQL cluster (initdb in a temp dir, Unix socket only, run as the postgres
# user when we are root) and runs the SQL equivalent of each benchmark query with pgbench
# (-M prepared, -c 1 -j 1 and -c 2 -j 2). One "transaction" = everything rtad's answer holds:
# the page (WHERE + ORDER BY + LIMIT), the total count and each aggregation.
#
# Usage: bench/query-pg.sh [-b BUILD_DIR] [-t SECONDS] [-r REPEATS] [-o RESULT_JSON]
# Needs: PostgreSQL server binaries (PGBIN, default /usr/lib/postgresql/15/bin), python3.
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
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
QB=$(realpath "$BUILD/rta-querybench")
[ -x "$QB" ] || { echo "query-pg: $QB not built" >&2; exit 1; }
[ -x "$PGBIN/initdb" ] || { echo "query-pg: no PostgreSQL in $PGBIN" >&2; exit 1; }

TMP=$(mktemp -d /tmp/rta-qpg.XXXXXX)
chmod 755 "$TMP"
AS=()
if [ "$(id -u)" = 0 ]; then
    chown postgres "$TMP"
    AS=(runuser -u postgres --)
fi
PORT=5439 # Unix socket only (listen_addresses=''), in our own directory: no clash possible
DATA=$TMP/data
cleanup() {
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$DATA" -A trust -U postgres >"$TMP/initdb.log" 2>&1
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg.log" -w \
    -o "-p $PORT -k $TMP -c listen_addresses='' -c shared_buffers=128MB -c fsync=off \
        -c synchronous_commit=off -c max_parallel_workers_per_gather=0 -c jit=off" \
    start >/dev/null
PSQL=("${AS[@]}" psql -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PORT" -U postgres -d postgres)
PGBENCH=("${AS[@]}" "$PGBIN/pgbench" -h "$TMP" -p "$PORT" -U postgres -n -M prepared)

# ---- the data: the very universe rta-querybench queries (same seed, same history) ----
"$QB" --dump-csv "$TMP/pairs.csv"
"$QB" --print-queries >"$TMP/queries.tsv"
chmod 644 "$TMP/pairs.csv" "$TMP/queries.tsv"
"${PSQL[@]}" <<SQL
CREATE TABLE pairs (
    protocol   text NOT NULL,
    name       text NOT NULL,
    chain      text NOT NULL,
    category   text NOT NULL,
    tvl        double precision NOT NULL,
    change_1h  double precision,
    change_24h double precision,
    change_7d  double precision,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (protocol, chain)
);
\copy pairs FROM '$TMP/pairs.csv' WITH (FORMAT csv)
CREATE INDEX pairs_tvl ON pairs (tvl DESC, protocol, chain);
CREATE INDEX pairs_chain_tvl ON pairs (chain, tvl DESC);
CREATE INDEX pairs_chain_change24h ON pairs (chain, change_24h);
CREATE INDEX pairs_category ON pairs (category);
VACUUM ANALYZE pairs;
SQL
NROWS=$("${PSQL[@]}" -tAc "SELECT count(*) FROM pairs")

# spec_top2 names the two protocols rta-querybench picked: take them from its query text
TOP2=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    name, body = line.rstrip("\n").split("\t", 1)
    if name == "spec_top2":
        print(",".join("\x27%s\x27" % p for p in json.loads(body)["filters"]["protocols"]))
' "$TMP/queries.tsv")

COLS="protocol, name, chain, category, tvl, change_1h, change_24h, change_7d, updated_at"
spec_where() { # $1 = protocol list
    echo "protocol IN ($1) AND chain IN ('ethereum', 'polygon') AND tvl BETWEEN 1000000 AND 10000000000 AND change_24h BETWEEN -0.1 AND 0.1"
}
write_script() { # $1 = name; the SQL of that query
    local f=$TMP/$1.sql
    case $1 in
    spec_literal | spec_top2)
        local w
        if [ "$1" = spec_literal ]; then w=$(spec_where "'uniswap-v3', 'aave-v3'"); else w=$(spec_where "$TOP2"); fi
        cat >"$f" <<SQL
SELECT $COLS FROM pairs WHERE $w ORDER BY tvl DESC NULLS LAST, protocol, chain LIMIT 100;
SELECT count(*) FROM pairs WHERE $w;
SELECT chain, sum(tvl), count(tvl) FROM pairs WHERE $w GROUP BY chain ORDER BY 2 DESC NULLS LAST, 1;
SQL
        ;;
    top100_tvl)
        cat >"$f" <<SQL
SELECT $COLS FROM pairs ORDER BY tvl DESC NULLS LAST, protocol, chain LIMIT 100;
SELECT count(*) FROM pairs;
SQL
        ;;
    group_category)
        cat >"$f" <<SQL
SELECT $COLS FROM pairs ORDER BY tvl DESC NULLS LAST, protocol, chain LIMIT 10;
SELECT count(*) FROM pairs;
SELECT category, sum(tvl), count(tvl) FROM pairs GROUP BY category ORDER BY 2 DESC NULLS LAST, 1;
SELECT category, avg(change_24h), count(change_24h) FROM pairs GROUP BY category ORDER BY 2 DESC NULLS LAST, 1;
SQL
        ;;
    chain_change24h)
        local w="chain = 'ethereum' AND change_24h BETWEEN -0.05 AND 0.05"
        cat >"$f" <<SQL
SELECT $COLS FROM pairs WHERE $w ORDER BY change_24h DESC NULLS LAST, protocol, chain LIMIT 50;
SELECT count(*) FROM pairs WHERE $w;
SQL
        ;;
    esac
    chmod 644 "$f"
}

# runs pgbench; prints "tps p50_ms p99_ms" (percentiles from the per-transaction log)
run_pgbench() { # $1 = script, $2 = clients
    local dir=$TMP/log.$RANDOM
    mkdir -p "$dir" && chown --reference="$TMP" "$dir"
    local tps
    tps=$(cd "$dir" && "${PGBENCH[@]}" -f "$1" -c "$2" -j "$2" -T "$SECS" -l --log-prefix="$dir/tx" \
        postgres 2>&1 | awk '/^tps/ {print $3; exit}')
    cat "$dir"/tx* | awk '{print $3}' | sort -n | awk -v tps="$tps" \
        '{v[NR]=$1} END {printf "%s %.3f %.3f\n", tps, v[int(NR*0.5)+1]/1000, v[int(NR*0.99)+1]/1000}'
    rm -rf "$dir"
}

echo "query-pg: PostgreSQL $("${PSQL[@]}" -tAc 'SHOW server_version'), $NROWS pairs, pgbench -M prepared, ${SECS}s per run"
printf "%-16s %7s %3s %10s %9s %9s\n" query total c tps p50_ms p99_ms
JSON="{\"bench\":\"query-pg\",\"pairs\":$NROWS,\"seconds\":$SECS,\"queries\":{"
first=1
for q in spec_literal spec_top2 top100_tvl group_category chain_change24h; do
    write_script "$q"
    # the count statement is the second one of each script: run it alone for the check
    total=$("${PSQL[@]}" -tAc "$(sed -n 2p "$TMP/$q.sql")")
    [ "$first" = 1 ] || JSON+=","
    first=0
    JSON+="\"$q\":{\"total\":$total"
    for c in 1 2; do
        reps=1
        case $q in spec_*) [ "$c" = 1 ] && reps=$REPEATS ;; esac
        results=()
        for ((r = 0; r < reps; r++)); do results+=("$(run_pgbench "$TMP/$q.sql" "$c")"); done
        # median run by tps
        med=$(printf '%s\n' "${results[@]}" | sort -n -k1,1 | awk '{v[NR]=$0} END {print v[int((NR+1)/2)]}')
        read -r tps p50 p99 <<<"$med"
        printf "%-16s %7s %3s %10.0f %9.3f %9.3f\n" "$q" "$total" "$c" "$tps" "$p50" "$p99"
        JSON+=",\"c$c\":{\"tps\":$tps,\"p50_ms\":$p50,\"p99_ms\":$p99,\"runs\":$reps}"
    done
    JSON+="}"
done
JSON+="}}"
echo "$JSON"
[ -z "$OUT" ] || echo "$JSON" >"$OUT"
