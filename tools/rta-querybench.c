/*
 * rta-querybench: in-process microbenchmark of the advanced query engine and the ingest path.
 *
 * Builds the simulated DeFiLlama-sized universe (rta/simulator.h) with 7 days of hourly
 * history, exactly as `rtad --simulate` seeds a fresh state, then
 *  - runs a handful of representative POST /v1/query/advanced bodies for a fixed time each,
 *    reporting per-query latency p50 / p99 / max and queries per second on one core (the
 *    caller pins the CPU), the way rtad answers a cache miss: json_loads + rta_query_parse,
 *    then rta_query_exec_text with one long-lived rta_query_ctx (--mode text, the default).
 *    --mode json: rta_query_exec_ctx + json_dumps with the long-lived context; --mode fresh:
 *    rta_query_exec (a throw-away context per query) + json_dumps. --live N applies N TVL
 *    updates to the state before every query (outside the timing), so that every query also
 *    pays for bringing the context up to date;
 *  - applies pre-generated TVL updates with rta_state_apply_tvl in batches, with change events
 *    produced (min_change 0) and without (min_change too large to ever fire), and through the
 *    whole POST /v1/ingest body path (json_loads + rta_ingest_parse + apply);
 *  - reports rta_state_bytes and the process RSS after the load.
 * Output is human-readable text followed by one JSON line starting with {"bench":"query".
 *
 * Other modes, so that reference databases can be fed the very same data:
 *   --dump-csv FILE     the pairs as CSV (protocol,name,chain,category,tvl,change_1h,
 *                       change_24h,change_7d,updated_at), changes computed as of the load time
 *   --top-protocols N   the N protocol slugs with the largest total TVL, one per line
 *   --print-queries     the benchmark query bodies, one "name<TAB>json" per line
 */
#include "rta/ingest.h"
#include "rta/query.h"
#include "rta/simulator.h"
#include "rta/state.h"
#include "rta/util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SAMPLES (4u << 20)
#define UPDATES_N 200000
#define MAX_QUERIES 8

typedef struct {
    const char *name;
    char *body; /* owned */
} bench_query;

typedef struct {
    double p50_us, p99_us, max_us, mean_us, qps;
    double cpu_p50_us, cpu_p99_us, cpu_qps; /* thread CPU time: immune to other processes */
    double parse_us, exec_us, encode_us;    /* mean CPU per phase */
    size_t n;
    long long total; /* meta.total of the last answer */
    size_t bytes;    /* response size */
} query_result;

enum { MODE_TEXT = 0, MODE_JSON, MODE_FRESH };
static const char *const mode_names[] = {"text", "json", "fresh"};

static double seconds_per_run = 3.0;
static int mode = MODE_TEXT;
static size_t live_n = 0;
static int repeats = 3;
static uint64_t seed = 42;

/* ------------------------------------------------------------------ loading */

static void restore_tvl(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(ud, u);
}

static void restore_price(void *ud, const rta_price_update *u)
{
    rta_state_restore_price(ud, u);
}

/* Same seeding as rtad's first start with --simulate. */
static rta_state *load_universe(rta_sim *sim, const rta_state_options *so, int64_t now_ms)
{
    rta_state *st = rta_state_new(so);
    rta_sim_history(sim, now_ms, 7 * 86400000LL, 3600000LL, restore_tvl, restore_price, st);
    rta_sim_snapshot(sim, now_ms, restore_tvl, restore_price, st);
    return st;
}

static long proc_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int cmp_total_tvl(const void *a, const void *b)
{
    const rta_protocol *x = *(rta_protocol *const *)a, *y = *(rta_protocol *const *)b;
    if (x->total_tvl != y->total_tvl)
        return x->total_tvl > y->total_tvl ? -1 : 1;
    return strcmp(x->slug, y->slug);
}

/* The protocols by total TVL, largest first (array owned by the caller). */
static rta_protocol **protocols_by_tvl(const rta_state *st)
{
    rta_protocol **v = rta_xmalloc((st->nprotocols ? st->nprotocols : 1) * sizeof *v);
    memcpy(v, st->protocols, st->nprotocols * sizeof *v);
    qsort(v, st->nprotocols, sizeof *v, cmp_total_tvl);
    return v;
}

/* ------------------------------------------------------------------ queries */

static int on_spec_chains(const rta_protocol *p)
{
    for (size_t i = 0; i < p->npairs; i++)
        if (!strcmp(p->pairs[i]->chain->name, "ethereum") ||
            !strcmp(p->pairs[i]->chain->name, "polygon"))
            return 1;
    return 0;
}

static size_t build_queries(const rta_state *st, bench_query *qs)
{
    rta_protocol **top = protocols_by_tvl(st);
    const char *ab[2] = {"none", "none"};
    for (size_t i = 0, k = 0; i < st->nprotocols && k < 2; i++)
        if (on_spec_chains(top[i]))
            ab[k++] = top[i]->slug;
    const char *a = ab[0], *b = ab[1];
    size_t n = 0;
    /* The example body of spec 2.3.2, verbatim (its protocols need not exist here). */
    qs[n].name = "spec_literal";
    qs[n++].body = rta_strdup(
        "{\"filters\":{\"protocols\":[\"uniswap-v3\",\"aave-v3\"],\"chains\":[\"ethereum\","
        "\"polygon\"],\"tvl_range\":{\"min\":1000000,\"max\":10000000000},\"change_24h\":"
        "{\"min\":-0.1,\"max\":0.1}},\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\","
        "\"group_by\":\"chain\"}],\"sort\":{\"field\":\"tvl\",\"order\":\"desc\"},\"limit\":100}");
    /* The same shape over the two largest protocols of the universe that are on ethereum or
     * polygon, so that the protocol and chain filters do select rows. */
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"filters\":{\"protocols\":[\"%s\",\"%s\"],\"chains\":[\"ethereum\","
             "\"polygon\"],\"tvl_range\":{\"min\":1000000,\"max\":10000000000},\"change_24h\":"
             "{\"min\":-0.1,\"max\":0.1}},\"aggregations\":[{\"field\":\"tvl\",\"operation\":"
             "\"sum\",\"group_by\":\"chain\"}],\"sort\":{\"field\":\"tvl\",\"order\":\"desc\"},"
             "\"limit\":100}",
             a, b);
    qs[n].name = "spec_top2";
    qs[n++].body = rta_strdup(buf);
    qs[n].name = "top100_tvl";
    qs[n++].body = rta_strdup("{\"sort\":{\"field\":\"tvl\",\"order\":\"desc\"},\"limit\":100}");
    qs[n].name = "group_category";
    qs[n++].body = rta_strdup(
        "{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"category\"},"
        "{\"field\":\"change_24h\",\"operation\":\"avg\",\"group_by\":\"category\"}],"
        "\"limit\":10}");
    qs[n].name = "chain_change24h";
    qs[n++].body = rta_strdup(
        "{\"filters\":{\"chains\":[\"ethereum\"],\"change_24h\":{\"min\":-0.05,\"max\":0.05}},"
        "\"sort\":{\"field\":\"change_24h\",\"order\":\"desc\"},\"limit\":50}");
    free(top);
    return n;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Called before every query, outside the timing (--live). */
typedef void (*between_fn)(void *ud);

/* One timed run of a query body: parse + exec + encode, as the HTTP handler does on a miss.
 * The clock is the real one (rtad passes rta_now_ms()), so changes age as they would. */
static int run_query(const rta_state *st, rta_query_ctx *ctx, const char *body, double seconds,
                     uint64_t *samples, uint64_t *cpu_samples, query_result *out,
                     between_fn between, void *between_ud)
{
    rta_dbuf text_buf;
    rta_dbuf_init(&text_buf, 512u << 20);
    size_t n = 0;
    uint64_t t_start = rta_mono_ns(), limit_ns = (uint64_t)(seconds * 1e9), sum = 0;
    uint64_t cpu_start = thread_cpu_ns(), ph_parse = 0, ph_exec = 0, ph_encode = 0;
    uint64_t skip_cpu = 0, skip_wall = 0; /* spent in between(): not the query's */
    long long total = -1;
    size_t bytes = 0;
    for (;;) {
        if (between) {
            uint64_t bc = thread_cpu_ns(), bw = rta_mono_ns();
            between(between_ud);
            skip_cpu += thread_cpu_ns() - bc;
            skip_wall += rta_mono_ns() - bw;
        }
        uint64_t c0 = thread_cpu_ns(), t0 = rta_mono_ns();
        int64_t now_ms = rta_now_ms();
        json_error_t jerr;
        json_t *req = json_loads(body, 0, &jerr);
        json_t *errors = NULL;
        rta_query *q = req ? rta_query_parse(req, &errors) : NULL;
        json_decref(req);
        if (q == NULL) {
            char *e = errors ? json_dumps(errors, JSON_COMPACT) : NULL;
            fprintf(stderr, "rta-querybench: invalid query %s: %s\n", body, e ? e : jerr.text);
            free(e);
            json_decref(errors);
            rta_dbuf_free(&text_buf);
            return -1;
        }
        uint64_t ca = thread_cpu_ns();
        json_t *res = NULL;
        char *text = NULL;
        size_t len = 0;
        if (mode == MODE_TEXT) {
            rta_dbuf_reset(&text_buf);
            if (rta_query_exec_text(q, st, ctx, now_ms, &text_buf) != 0)
                abort();
        } else {
            res = mode == MODE_FRESH ? rta_query_exec(q, st, now_ms)
                                     : rta_query_exec_ctx(q, st, ctx, now_ms);
        }
        uint64_t cb = thread_cpu_ns();
        if (mode == MODE_TEXT)
            len = text_buf.len; /* already encoded: the encode phase is empty */
        else
            len = strlen(text = json_dumps(res, JSON_COMPACT | JSON_PRESERVE_ORDER));
        uint64_t t1 = rta_mono_ns(), c1 = thread_cpu_ns();
        ph_parse += ca - c0;
        ph_exec += cb - ca;
        ph_encode += c1 - cb;
        if (n == 0) {
            json_t *doc = res ? json_incref(res) : json_loadb(text_buf.data, len, 0, NULL);
            total = (long long)json_integer_value(
                json_object_get(json_object_get(doc, "meta"), "total"));
            json_decref(doc);
            bytes = len;
        }
        free(text);
        json_decref(res);
        rta_query_free(q);
        if (n < MAX_SAMPLES) {
            cpu_samples[n] = c1 - c0;
            samples[n++] = t1 - t0;
        }
        sum += t1 - t0;
        if (t1 - t_start - skip_wall >= limit_ns || n >= MAX_SAMPLES)
            break;
    }
    rta_dbuf_free(&text_buf);
    double wall = (double)(rta_mono_ns() - t_start - skip_wall) / 1e9;
    double cpu = (double)(thread_cpu_ns() - cpu_start - skip_cpu) / 1e9;
    size_t i99 = (size_t)((double)n * 0.99) < n ? (size_t)((double)n * 0.99) : n - 1;
    qsort(samples, n, sizeof *samples, cmp_u64);
    qsort(cpu_samples, n, sizeof *cpu_samples, cmp_u64);
    out->n = n;
    out->p50_us = (double)samples[n / 2] / 1e3;
    out->p99_us = (double)samples[i99] / 1e3;
    out->cpu_p50_us = (double)cpu_samples[n / 2] / 1e3;
    out->cpu_p99_us = (double)cpu_samples[i99] / 1e3;
    out->cpu_qps = (double)n / cpu;
    out->parse_us = (double)ph_parse / (double)n / 1e3;
    out->exec_us = (double)ph_exec / (double)n / 1e3;
    out->encode_us = (double)ph_encode / (double)n / 1e3;
    out->max_us = (double)samples[n - 1] / 1e3;
    out->mean_us = (double)sum / (double)n / 1e3;
    out->qps = (double)n / wall;
    out->total = total;
    out->bytes = bytes;
    return 0;
}

/* Diagnostic: CPU ns per pair of the cheapest possible scan (read tvl and chain index of every
 * pair through st->pairs), and of one rta_pair_change per pair: the floor under any query that
 * visits every pair, given how the state lays pairs out in memory. */
static void scan_floor(const rta_state *st, int64_t now_ms, double *scan_ns, double *change_ns)
{
    volatile double sink = 0;
    uint64_t c0 = thread_cpu_ns();
    int passes = 200;
    for (int k = 0; k < passes; k++) {
        double acc = 0;
        for (size_t i = 0; i < st->npairs; i++)
            acc += st->pairs[i]->tvl + st->pairs[i]->chain->index;
        sink += acc;
    }
    uint64_t c1 = thread_cpu_ns();
    for (int k = 0; k < passes / 10; k++) {
        double acc = 0;
        for (size_t i = 0; i < st->npairs; i++) {
            double c = rta_pair_change(st->pairs[i], 86400, now_ms);
            acc += isnan(c) ? 0 : c;
        }
        sink += acc;
    }
    uint64_t c2 = thread_cpu_ns();
    (void)sink;
    double n = (double)(st->npairs ? st->npairs : 1);
    *scan_ns = (double)(c1 - c0) / (passes * n);
    *change_ns = (double)(c2 - c1) / ((passes / 10) * n);
}

static int cmp_result_qps(const void *a, const void *b)
{
    const query_result *x = a, *y = b;
    return (x->cpu_qps > y->cpu_qps) - (x->cpu_qps < y->cpu_qps);
}

/* ------------------------------------------------------------------ ingest */

typedef struct {
    char **protocol, **chain;
    double *tvl;
    int64_t *dt_ms; /* offset from the generation start */
    size_t n, cap;
    int64_t t0;
} update_set;

static void collect_tvl(void *ud, const rta_tvl_update *u)
{
    update_set *s = ud;
    if (s->n == s->cap)
        return;
    s->protocol[s->n] = rta_strdup(u->protocol);
    s->chain[s->n] = rta_strdup(u->chain);
    s->tvl[s->n] = u->tvl;
    s->dt_ms[s->n] = u->ts_ms - s->t0;
    s->n++;
}

static void update_set_free(update_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->protocol[i]);
        free(s->chain[i]);
    }
    free(s->protocol);
    free(s->chain);
    free(s->tvl);
    free(s->dt_ms);
}

/* UPDATES_N TVL updates from the simulator's random walk, 1000 per simulated second. */
static void generate_updates(rta_sim *sim, int64_t t0, update_set *s)
{
    memset(s, 0, sizeof *s);
    s->cap = UPDATES_N;
    s->protocol = rta_xcalloc(s->cap, sizeof(char *));
    s->chain = rta_xcalloc(s->cap, sizeof(char *));
    s->tvl = rta_xcalloc(s->cap, sizeof(double));
    s->dt_ms = rta_xcalloc(s->cap, sizeof(int64_t));
    s->t0 = t0;
    for (int64_t k = 1; s->n < s->cap; k++)
        rta_sim_step(sim, 1430, t0 + k * 1000, collect_tvl, NULL, s); /* ~70% are TVL */
}

/* Every pass over the update set (in any run) gets its own number; the values of odd passes are
 * one cent higher, so that replaying the set never repeats a pair's current value (a pair
 * updated once per pass would otherwise come back UNCHANGED and cost less than a real update). */
static unsigned pass_no;

static double pass_tvl(double tvl)
{
    return tvl + (pass_no & 1 ? 0.01 : 0.0);
}

typedef struct {
    double ups;     /* updates per second of elapsed time */
    double cpu_ups; /* updates per second of this thread's CPU time */
    double events_per_update;
    size_t updates;
} ingest_result;

/* Applies the updates in batches of `batch`, looping over the set (each pass later in time)
 * until `seconds` have passed. */
static void run_apply(rta_state *st, const update_set *s, size_t batch, double seconds,
                      int64_t *clock_ms, ingest_result *out)
{
    uint64_t t_start = rta_mono_ns(), limit_ns = (uint64_t)(seconds * 1e9);
    uint64_t c_start = thread_cpu_ns();
    size_t applied = 0, events = 0;
    rta_event *ev[2];
    for (;;) {
        int64_t base = *clock_ms;
        pass_no++;
        for (size_t i = 0; i < s->n; i += batch) {
            size_t end = i + batch < s->n ? i + batch : s->n;
            for (size_t j = i; j < end; j++) {
                rta_tvl_update u = {.protocol = s->protocol[j],
                                    .chain = s->chain[j],
                                    .tvl = pass_tvl(s->tvl[j]),
                                    .ts_ms = base + s->dt_ms[j]};
                size_t nout = 0;
                rta_state_apply_tvl(st, &u, "bench", ev, 2, &nout);
                for (size_t k = 0; k < nout; k++)
                    rta_event_unref(ev[k]);
                events += nout;
            }
            applied += end - i;
            if (rta_mono_ns() - t_start >= limit_ns)
                goto done;
        }
        *clock_ms = base + s->dt_ms[s->n - 1] + 1000;
    }
done:
    /* the next run starts after everything this one may have applied */
    *clock_ms += s->dt_ms[s->n - 1] + 1000;
    out->updates = applied;
    out->ups = (double)applied / ((double)(rta_mono_ns() - t_start) / 1e9);
    out->cpu_ups = (double)applied / ((double)(thread_cpu_ns() - c_start) / 1e9);
    out->events_per_update = applied ? (double)events / (double)applied : 0;
}

/* --live: the next live_n updates of the set, each pass later in time and one cent off. */
typedef struct {
    rta_state *st;
    const update_set *s;
    size_t next;
    int64_t base_ms;
    size_t applied;
} live_feed;

static void live_step(void *ud)
{
    live_feed *f = ud;
    rta_event *ev[2];
    for (size_t k = 0; k < live_n; k++) {
        if (f->next == f->s->n) {
            f->next = 0;
            f->base_ms += f->s->dt_ms[f->s->n - 1] + 1000;
            pass_no++;
        }
        size_t j = f->next++;
        rta_tvl_update u = {.protocol = f->s->protocol[j],
                            .chain = f->s->chain[j],
                            .tvl = pass_tvl(f->s->tvl[j]),
                            .ts_ms = f->base_ms + f->s->dt_ms[j]};
        size_t nout = 0;
        rta_state_apply_tvl(f->st, &u, "bench", ev, 2, &nout);
        for (size_t e = 0; e < nout; e++)
            rta_event_unref(ev[e]);
        f->applied++;
    }
}

/* The POST /v1/ingest body path without HTTP: text -> json_loads -> rta_ingest_parse ->
 * rta_state_apply_tvl, batches of `batch` items. Timestamps are ISO-8601 strings as a client
 * would send. */
static void run_ingest_json(rta_state *st, const update_set *s, size_t batch, double seconds,
                            int64_t *clock_ms, ingest_result *out)
{
    /* Pre-encode one pass worth of bodies with relative timestamps replaced per pass: to keep
     * the encoding out of the measurement the bodies use numeric Unix seconds that are rebuilt
     * once per pass (a pass takes far longer than its encoding). */
    uint64_t t_start = rta_mono_ns(), limit_ns = (uint64_t)(seconds * 1e9), enc_ns = 0;
    uint64_t c_start = thread_cpu_ns(), enc_cpu_ns = 0;
    size_t applied = 0, events = 0;
    size_t nb = (s->n + batch - 1) / batch;
    char **bodies = rta_xcalloc(nb, sizeof(char *));
    rta_event *ev[2];
    for (;;) {
        int64_t base = *clock_ms;
        pass_no++;
        uint64_t e0 = rta_mono_ns(), ec0 = thread_cpu_ns();
        for (size_t b = 0; b < nb; b++) {
            free(bodies[b]);
            size_t cap = batch * 160 + 32, len = 0;
            char *t = rta_xmalloc(cap);
            len += (size_t)snprintf(t + len, cap - len, "{\"tvl\":[");
            for (size_t j = b * batch; j < (b + 1) * batch && j < s->n; j++)
                len += (size_t)snprintf(t + len, cap - len,
                                        "%s{\"protocol\":\"%s\",\"chain\":\"%s\",\"tvl\":%.2f,"
                                        "\"timestamp\":%.3f}",
                                        j == b * batch ? "" : ",", s->protocol[j], s->chain[j],
                                        pass_tvl(s->tvl[j]), (double)(base + s->dt_ms[j]) / 1000.0);
            snprintf(t + len, cap - len, "]}");
            bodies[b] = t;
        }
        enc_ns += rta_mono_ns() - e0;
        enc_cpu_ns += thread_cpu_ns() - ec0;
        for (size_t b = 0; b < nb; b++) {
            json_error_t jerr;
            json_t *body = json_loads(bodies[b], 0, &jerr);
            rta_ingest_batch ib;
            json_t *errors = NULL;
            /* "now" is the end of this pass so that no point is "in the future" */
            if (body == NULL || rta_ingest_parse(body, 100000, base + s->dt_ms[s->n - 1] + 1000,
                                                 &ib, &errors) != 0) {
                char *e = errors ? json_dumps(errors, JSON_COMPACT) : NULL;
                fprintf(stderr, "rta-querybench: ingest body rejected: %.300s\n",
                        e ? e : jerr.text);
                free(e);
                json_decref(errors);
                json_decref(body);
                goto done;
            }
            for (size_t j = 0; j < ib.ntvl; j++) {
                size_t nout = 0;
                rta_state_apply_tvl(st, &ib.tvl[j], "bench", ev, 2, &nout);
                for (size_t k = 0; k < nout; k++)
                    rta_event_unref(ev[k]);
                events += nout;
            }
            applied += ib.ntvl;
            rta_ingest_batch_free(&ib);
            json_decref(body);
            if (rta_mono_ns() - t_start >= limit_ns + enc_ns)
                goto done;
        }
        *clock_ms = base + s->dt_ms[s->n - 1] + 1000;
    }
done:
    *clock_ms += s->dt_ms[s->n - 1] + 1000;
    for (size_t b = 0; b < nb; b++)
        free(bodies[b]);
    free(bodies);
    out->updates = applied;
    out->ups = (double)applied / ((double)(rta_mono_ns() - t_start - enc_ns) / 1e9);
    out->cpu_ups = (double)applied / ((double)(thread_cpu_ns() - c_start - enc_cpu_ns) / 1e9);
    out->events_per_update = applied ? (double)events / (double)applied : 0;
}

static int cmp_ingest_ups(const void *a, const void *b)
{
    const ingest_result *x = a, *y = b;
    return (x->cpu_ups > y->cpu_ups) - (x->cpu_ups < y->cpu_ups);
}

/* ------------------------------------------------------------------ dump */

static void csv_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    /* empty = NULL */
}

static int dump_csv(const rta_state *st, int64_t now_ms, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    for (size_t i = 0; i < st->npairs; i++) {
        const rta_pair *p = st->pairs[i];
        const rta_protocol *pr = p->protocol;
        char ts[40];
        rta_time_iso8601(p->updated_ms, ts, sizeof ts);
        csv_str(f, pr->slug);
        fputc(',', f);
        csv_str(f, pr->name ? pr->name : pr->slug);
        fputc(',', f);
        csv_str(f, p->chain->name);
        fputc(',', f);
        csv_str(f, pr->category ? pr->category : "");
        fputc(',', f);
        csv_num(f, p->tvl);
        fputc(',', f);
        csv_num(f, rta_pair_change(p, 3600, now_ms));
        fputc(',', f);
        csv_num(f, rta_pair_change(p, 86400, now_ms));
        fputc(',', f);
        csv_num(f, rta_pair_change(p, 604800, now_ms));
        fprintf(f, ",%s\n", ts);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: rta-querybench [--seconds S] [--repeats N] [--seed N] [--no-ingest]\n"
            "                      [--only QUERY] [--mode text|json|fresh] [--live N]\n"
            "       rta-querybench --dump-csv FILE | --top-protocols N | --print-queries\n");
}

int main(int argc, char **argv)
{
    const char *dump = NULL;
    const char *only = NULL;
    int top_n = 0, print_queries = 0, no_ingest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--seconds") && v) {
            seconds_per_run = atof(v);
            i++;
        } else if (!strcmp(a, "--repeats") && v) {
            repeats = atoi(v);
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            seed = strtoull(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--dump-csv") && v) {
            dump = v;
            i++;
        } else if (!strcmp(a, "--top-protocols") && v) {
            top_n = atoi(v);
            i++;
        } else if (!strcmp(a, "--print-queries")) {
            print_queries = 1;
        } else if (!strcmp(a, "--only") && v) {
            only = v;
            i++;
        } else if (!strcmp(a, "--mode") && v) {
            mode = -1;
            for (int k = 0; k < 3; k++)
                if (!strcmp(v, mode_names[k]))
                    mode = k;
            if (mode < 0) {
                usage();
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--live") && v) {
            live_n = strtoul(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--no-ingest")) {
            no_ingest = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (seconds_per_run <= 0 || repeats < 1 || repeats > 99) {
        usage();
        return 2;
    }

    long rss0 = proc_status_kb("VmRSS");
    rta_sim_options so = {.seed = seed};
    rta_sim *sim = rta_sim_new(&so);
    rta_sim_get_options(sim, &so);
    int64_t now = rta_now_ms();
    uint64_t l0 = rta_mono_ns();
    rta_state_options sto = {.min_change = 0};
    rta_state *st = load_universe(sim, &sto, now);
    double load_ms = (double)(rta_mono_ns() - l0) / 1e6;
    long rss_loaded = proc_status_kb("VmRSS");
    size_t state_bytes = rta_state_bytes(st);
    int rc = 0;
    bench_query qs[MAX_QUERIES];
    size_t nq = build_queries(st, qs);

    if (dump || top_n > 0 || print_queries) {
        if (dump && dump_csv(st, now, dump) != 0)
            rc = 1;
        if (top_n > 0) {
            rta_protocol **top = protocols_by_tvl(st);
            for (size_t i = 0; i < (size_t)top_n && i < st->nprotocols; i++)
                printf("%s\n", top[i]->slug);
            free(top);
        }
        if (print_queries)
            for (size_t i = 0; i < nq; i++)
                printf("%s\t%s\n", qs[i].name, qs[i].body);
        goto out;
    }

    printf("rta-querybench: seed %llu, %zu protocols, %zu chains, %zu pairs, %zu tokens, "
           "7 days hourly history\n",
           (unsigned long long)so.seed, st->nprotocols, st->nchains, st->npairs, st->ntokens);
    printf("load: %.0f ms; rta_state_bytes %.1f MiB; RSS %.1f MiB (before load %.1f MiB)\n",
           load_ms, (double)state_bytes / 1048576.0, (double)rss_loaded / 1024.0,
           (double)rss0 / 1024.0);
    static const char *const mode_desc[] = {
        "json_loads + rta_query_parse + rta_query_exec_text (long-lived context)",
        "json_loads + rta_query_parse + rta_query_exec_ctx (long-lived context) + json_dumps",
        "json_loads + rta_query_parse + rta_query_exec (fresh context) + json_dumps"};
    printf("queries (mode %s): %s, one thread, %.1f s x %d runs each (median run by q/s)\n",
           mode_names[mode], mode_desc[mode], seconds_per_run, repeats);
    if (live_n)
        printf("live: %zu TVL updates applied before every query (not timed; the query pays for "
               "catching up)\n",
               live_n);
    printf("(wall = elapsed time; cpu = this thread's CPU time, which other processes on a shared "
           "machine do not inflate)\n");
    printf("%-16s %6s %8s %8s %8s %8s %8s %9s %9s %7s\n", "query", "total", "p50 us", "p99 us",
           "max us", "cpu p50", "cpu p99", "q/s wall", "q/s cpu", "bytes");

    double floor_scan_ns, floor_change_ns;
    scan_floor(st, now, &floor_scan_ns, &floor_change_ns);
    printf("scan floor: %.1f ns CPU per pair to read tvl + chain, %.1f ns per rta_pair_change "
           "(24h)\n",
           floor_scan_ns, floor_change_ns);
    uint64_t *samples = rta_xmalloc(MAX_SAMPLES * sizeof *samples);
    uint64_t *cpu_samples = rta_xmalloc(MAX_SAMPLES * sizeof *cpu_samples);
    query_result med[MAX_QUERIES];
    rta_query_ctx *ctx = rta_query_ctx_new();
    update_set live_set;
    live_feed feed = {.st = st, .s = &live_set, .base_ms = now + 1000};
    memset(&live_set, 0, sizeof live_set);
    if (live_n)
        generate_updates(sim, now + 1000, &live_set);
    for (size_t i = 0; i < nq; i++) {
        query_result runs[100];
        memset(&med[i], 0, sizeof med[i]);
        if (only && strcmp(only, qs[i].name) != 0)
            continue;
        for (int r = 0; r < repeats; r++)
            if (run_query(st, ctx, qs[i].body, seconds_per_run, samples, cpu_samples, &runs[r],
                          live_n ? live_step : NULL, &feed) != 0) {
                rc = 1;
                break;
            }
        if (rc)
            break;
        qsort(runs, (size_t)repeats, sizeof runs[0], cmp_result_qps);
        med[i] = runs[repeats / 2];
        printf("%-16s %6lld %8.1f %8.1f %8.1f %8.1f %8.1f %9.0f %9.0f %7zu\n", qs[i].name,
               med[i].total, med[i].p50_us, med[i].p99_us, med[i].max_us, med[i].cpu_p50_us,
               med[i].cpu_p99_us, med[i].qps, med[i].cpu_qps, med[i].bytes);
        printf("%-16s mean CPU us: parse %.1f, exec %.1f, encode %.1f\n", "", med[i].parse_us,
               med[i].exec_us, med[i].encode_us);
    }
    free(samples);
    free(cpu_samples);
    rta_query_ctx_free(ctx);
    update_set_free(&live_set);
    if (rc)
        goto out;
    long rss_queries = proc_status_kb("VmRSS");
    printf("memory after the queries (context included): RSS %.1f MiB\n",
           (double)rss_queries / 1024.0);

    ingest_result ing[3] = {{0}};
    const char *ing_names[3] = {"apply_events", "apply_no_events", "ingest_json_events"};
    if (!no_ingest) {
        update_set us;
        generate_updates(sim, now + 1000, &us);
        int64_t clock = now + 1000;
        rta_state_options quiet = {.min_change = 1e300};
        rta_state *st2 = load_universe(sim, &quiet, now);
        printf("ingest: %zu pre-generated TVL updates, batches of 1000, %.1f s x %d runs "
               "(median)\n",
               us.n, seconds_per_run, repeats);
        for (int kind = 0; kind < 3; kind++) {
            ingest_result runs[100];
            for (int r = 0; r < repeats; r++) {
                if (kind == 0)
                    run_apply(st, &us, 1000, seconds_per_run, &clock, &runs[r]);
                else if (kind == 1)
                    run_apply(st2, &us, 1000, seconds_per_run, &clock, &runs[r]);
                else
                    run_ingest_json(st, &us, 1000, seconds_per_run, &clock, &runs[r]);
            }
            qsort(runs, (size_t)repeats, sizeof runs[0], cmp_ingest_ups);
            ing[kind] = runs[repeats / 2];
            printf("%-20s %10.0f updates/s wall %10.0f updates/s cpu  (%.2f events/update)\n",
                   ing_names[kind], ing[kind].ups, ing[kind].cpu_ups, ing[kind].events_per_update);
        }
        rta_state_free(st2);
        update_set_free(&us);
    }
    long rss_end = proc_status_kb("VmRSS"), hwm = proc_status_kb("VmHWM");
    printf("memory: RSS at end %.1f MiB, peak %.1f MiB (two states loaded during ingest)\n",
           (double)rss_end / 1024.0, (double)hwm / 1024.0);

    json_t *jq = json_object();
    for (size_t i = 0; i < nq; i++)
        if (med[i].n) /* skipped by --only otherwise */
            json_object_set_new(jq, qs[i].name,
                                json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}",
                                          "total", (json_int_t)med[i].total, "p50_us",
                                          med[i].p50_us, "p99_us", med[i].p99_us, "max_us",
                                          med[i].max_us, "mean_us", med[i].mean_us, "qps",
                                          med[i].qps, "cpu_p50_us", med[i].cpu_p50_us, "cpu_p99_us",
                                          med[i].cpu_p99_us, "cpu_qps", med[i].cpu_qps, "parse_us",
                                          med[i].parse_us, "exec_us", med[i].exec_us, "encode_us",
                                          med[i].encode_us, "bytes", (json_int_t)med[i].bytes));
    json_t *ji = json_object();
    if (!no_ingest)
        for (int k = 0; k < 3; k++)
            json_object_set_new(ji, ing_names[k],
                                json_pack("{s:f,s:f,s:f}", "updates_per_s", ing[k].ups,
                                          "cpu_updates_per_s", ing[k].cpu_ups, "events_per_update",
                                          ing[k].events_per_update));
    json_t *all = json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:I,s:f,s:f,s:i,s:f,s:f,s:o,s:o}", "bench", "query",
        "mode", mode_names[mode], "live", (json_int_t)live_n, "seed", (json_int_t)so.seed,
        "protocols", (json_int_t)st->nprotocols, "chains", (json_int_t)st->nchains, "pairs",
        (json_int_t)st->npairs, "load_ms", load_ms, "seconds_per_run", seconds_per_run,
        "state_bytes", (json_int_t)state_bytes, "rss_loaded_mib", (double)rss_loaded / 1024.0,
        "rss_peak_mib", (double)hwm / 1024.0, "repeats", repeats, "scan_ns_per_pair", floor_scan_ns,
        "change_ns_per_pair", floor_change_ns, "queries", jq, "ingest", ji);
    char *line = json_dumps(all, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", line);
    free(line);
    json_decref(all);

out:
    for (size_t i = 0; i < nq; i++)
        free(qs[i].body);
    rta_state_free(st);
    rta_sim_free(sim);
    return rc;
}
