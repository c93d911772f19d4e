/*
 * query_bench: measures the advanced query engine without HTTP or the cache.
 *
 * Builds a simulated universe (default 6,700 protocols, 12,000 pairs) with 7 days of hourly
 * history plus 1.5 h of minute points, then runs a mix of queries (uncached exec + JSON
 * encoding, as the API would on a miss) and prints latency percentiles and throughput.
 *
 *   query_bench [iterations=2000] [seed=1] [only=query index]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rta/query.h"
#include "rta/simulator.h"
#include "rta/util.h"

#include <time.h>

/* CPU time of this thread: on a shared machine it says more than the wall clock. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void restore_tvl(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(ud, u);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static const char *const queries[] = {
    "{}",
    "{\"filters\":{\"chains\":[\"ethereum\",\"arbitrum\"]},\"limit\":50}",
    "{\"filters\":{\"tvl_range\":{\"min\":1000000}},\"sort\":{\"field\":\"change_24h\"},"
    "\"limit\":100}",
    "{\"filters\":{\"change_24h\":{\"min\":-0.1,\"max\":0.1}},\"aggregations\":"
    "[{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"chain\"}],\"limit\":20}",
    "{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"category\"},"
    "{\"field\":\"change_7d\",\"operation\":\"avg\",\"group_by\":\"none\"}],\"limit\":10}",
    "{\"filters\":{\"categories\":[\"Dexes\",\"Lending\"]},\"sort\":{\"field\":\"name\","
    "\"order\":\"asc\"},\"limit\":100,\"offset\":200}",
    "{\"sort\":{\"field\":\"change_1h\",\"order\":\"asc\"},\"limit\":25}",
    "{\"limit\":1}",
};

int main(int argc, char **argv)
{
    size_t iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    long only = argc > 3 ? strtol(argv[3], NULL, 10) : -1;
    rta_sim *sim = rta_sim_new(&(rta_sim_options){.seed = seed});
    rta_state_options so = {0};
    rta_state *st = rta_state_new(&so);
    int64_t now = rta_now_ms();
    uint64_t t0 = rta_mono_ns();
    rta_sim_history(sim, now - 5400000, 7 * 86400000LL, 3600000, restore_tvl, NULL, st);
    rta_sim_history(sim, now, 5400000, 60000, restore_tvl, NULL, st);
    rta_sim_snapshot(sim, now, restore_tvl, NULL, st);
    printf("state: %zu pairs, %zu protocols, %zu chains, built in %.1f s\n", st->npairs,
           st->nprotocols, st->nchains, (double)(rta_mono_ns() - t0) / 1e9);

    size_t nq = RTA_ARRAY_LEN(queries);
    rta_query *q[RTA_ARRAY_LEN(queries)];
    for (size_t i = 0; i < nq; i++) {
        json_t *body = json_loads(queries[i], 0, NULL);
        q[i] = rta_query_parse(body, NULL);
        json_decref(body);
        if (!q[i]) {
            fprintf(stderr, "bad query %s\n", queries[i]);
            return 1;
        }
    }
    uint64_t *lat = calloc(iters, sizeof(uint64_t));
    uint64_t *per_q[RTA_ARRAY_LEN(queries)];
    size_t per_n[RTA_ARRAY_LEN(queries)] = {0};
    for (size_t i = 0; i < nq; i++)
        per_q[i] = calloc(iters, sizeof(uint64_t));
    rta_query_ctx *ctx = rta_query_ctx_new();
    uint64_t exec_cpu = 0;
    uint64_t start = rta_mono_ns(), cpu_start = cpu_ns();
    for (size_t i = 0; i < iters; i++) {
        size_t k = only >= 0 && (size_t)only < nq ? (size_t)only : i % nq;
        uint64_t a = rta_mono_ns();
        uint64_t c0 = cpu_ns();
        json_t *res = rta_query_exec_ctx(q[k], st, ctx, now);
        exec_cpu += cpu_ns() - c0;
        char *text = json_dumps(res, JSON_COMPACT);
        free(text);
        json_decref(res);
        lat[i] = rta_mono_ns() - a;
        per_q[k][per_n[k]++] = lat[i];
    }
    double secs = (double)(rta_mono_ns() - start) / 1e9;
    double cpu_secs = (double)(cpu_ns() - cpu_start) / 1e9;
    printf("exec (without JSON encoding): %.3f ms CPU per query\n",
           (double)exec_cpu / 1e6 / (double)iters);
    qsort(lat, iters, sizeof(uint64_t), cmp_u64);
    printf("all: %zu queries in %.2f s (%.2f s CPU) = %.0f q/s (%.0f per CPU second); "
           "p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
           iters, secs, cpu_secs, (double)iters / secs, (double)iters / cpu_secs,
           (double)lat[iters / 2] / 1e6, (double)lat[iters * 99 / 100] / 1e6,
           (double)lat[iters - 1] / 1e6);
    for (size_t k = 0; k < nq; k++) {
        if (per_n[k] == 0) {
            free(per_q[k]);
            continue;
        }
        qsort(per_q[k], per_n[k], sizeof(uint64_t), cmp_u64);
        printf("  q%zu p50 %.3f ms p99 %.3f ms  %s\n", k, (double)per_q[k][per_n[k] / 2] / 1e6,
               (double)per_q[k][per_n[k] * 99 / 100] / 1e6, queries[k]);
        free(per_q[k]);
    }
    /* The cached path: parse + canonical text + cache lookup (what a repeated query costs). */
    rta_query_cache *cache = rta_query_cache_new(1024, 64u << 20);
    for (size_t k = 0; k < nq; k++) {
        json_t *res = rta_query_exec_ctx(q[k], st, ctx, now);
        char *text = json_dumps(res, JSON_COMPACT);
        rta_query_cache_put(cache, rta_query_canonical(q[k]), st->version, text, strlen(text));
        free(text);
        json_decref(res);
    }
    uint64_t c0 = cpu_ns();
    size_t hits = 0;
    for (size_t i = 0; i < iters * 10; i++) {
        json_t *body = json_loads(queries[i % nq], 0, NULL);
        rta_query *pq = rta_query_parse(body, NULL);
        size_t len;
        hits += rta_query_cache_get(cache, rta_query_canonical(pq), st->version, &len) != NULL;
        rta_query_free(pq);
        json_decref(body);
    }
    double hit_secs = (double)(cpu_ns() - c0) / 1e9;
    printf("cached: %zu/%zu hits, %.1f us CPU per query (parse + canonical + lookup) = %.0f q/s\n",
           hits, iters * 10, hit_secs * 1e6 / (double)(iters * 10),
           (double)(iters * 10) / hit_secs);
    rta_query_cache_free(cache);
    free(lat);
    rta_query_ctx_free(ctx);
    for (size_t k = 0; k < nq; k++)
        rta_query_free(q[k]);
    rta_state_free(st);
    rta_sim_free(sim);
    return 0;
}
