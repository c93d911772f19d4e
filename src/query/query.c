/*
 * The advanced query engine (POST /v1/query/advanced): parsing and validation of the request
 * body into an rta_query, its canonical text (the cache key), and execution over the in-memory
 * state.
 *
 * Execution is one pass over the candidate pairs (all pairs, or only the pairs of the listed
 * protocols when a protocol filter is given) in the context's dense mirrors (see "execution
 * context" below). Chain and category filters are precomputed into per-index marks so each
 * row costs a few loads; change columns are read only when a filter, the sort or an
 * aggregation needs them. Aggregations are accumulated during the pass. The matching rows
 * (pair index + sort key + ranks, 24 bytes each, one allocation) are then ordered: a bounded
 * heap selects the first offset+limit rows when that is small against the total, otherwise
 * everything is sorted. Output is built only for the returned page: jansson objects
 * (rta_query_exec_ctx), or text written directly (rta_query_exec_text) from per-row texts
 * cached in the context.
 */
#include "rta/query.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "rta/ingest.h"
#include "rta/util.h"

#define MAX_ERRORS 100
#define MAX_CATEGORY_LEN 64

enum field {
    F_TVL = 0,
    F_CHANGE_1H,
    F_CHANGE_24H,
    F_CHANGE_7D,
    F_PROTOCOL,
    F_CHAIN,
    F_NAME,
    F_CATEGORY,
    F_UPDATED,
};
static const char *const field_names[] = {"tvl",       "change_1h", "change_24h",
                                          "change_7d", "protocol",  "chain",
                                          "name",      "category",  "updatedAt"};
#define N_AGG_FIELDS 4 /* aggregations take the numeric fields only: F_TVL..F_CHANGE_7D */
#define N_SORT_FIELDS 9
static const int64_t change_windows[3] = {3600, 86400, 604800};

enum op { OP_SUM = 0, OP_AVG, OP_MIN, OP_MAX, OP_COUNT };
static const char *const op_names[] = {"sum", "avg", "min", "max", "count"};

enum group { G_CHAIN = 0, G_PROTOCOL, G_CATEGORY, G_NONE };
static const char *const group_names[] = {"chain", "protocol", "category", "none"};

typedef struct {
    int has_min, has_max;
    double min, max;
} range;

typedef struct {
    char **items;
    size_t n;
} strlist;

typedef struct {
    int field, op, group;
} agg_spec;

struct rta_query {
    strlist protocols, chains, categories;
    range tvl, change_24h;
    agg_spec aggs[RTA_QUERY_MAX_AGGS];
    size_t naggs;
    int sort_field;
    int sort_desc;
    size_t limit, offset;
    char *canonical;
};

/* ---------------------------------------------------------------- validation */

typedef struct {
    json_t *errors;
} vctx;

static void verr(vctx *v, const char *path, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void verr(vctx *v, const char *path, const char *rule, const char *fmt, ...)
{
    if (json_array_size(v->errors) >= MAX_ERRORS)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(v->errors,
                          json_pack("{s:s,s:s,s:s}", "path", path, "rule", rule, "message", msg));
}

/* "$.a" + ".key" -> out; keys are cut at 64 bytes so paths stay bounded. */
static void path_key(char *out, size_t outlen, const char *base, const char *key)
{
    size_t n = 0;
    for (const char *p = base; *p && n + 1 < outlen; p++)
        out[n++] = *p;
    if (n + 1 < outlen)
        out[n++] = '.';
    for (size_t k = 0; key[k] && k < 64 && n + 1 < outlen; k++)
        out[n++] = key[k];
    out[n] = '\0';
}

static void path_index(char *out, size_t outlen, const char *base, size_t i)
{
    snprintf(out, outlen, "%s[%zu]", base, i);
}

static int lookup_enum(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Parses an optional enum member; returns its index, dflt when absent/null, -1 on error. */
static int parse_enum(vctx *v, const json_t *val, const char *path, const char *const *names, int n,
                      int dflt)
{
    if (!val || json_is_null(val))
        return dflt;
    if (!json_is_string(val)) {
        verr(v, path, "type", "must be a string");
        return -1;
    }
    int i = lookup_enum(json_string_value(val), names, n);
    if (i < 0) {
        char allowed[256] = "";
        size_t len = 0;
        for (int k = 0; k < n && len < sizeof allowed; k++)
            len += (size_t)snprintf(allowed + len, sizeof allowed - len, "%s%s", k ? ", " : "",
                                    names[k]);
        verr(v, path, "enum", "must be one of: %s", allowed);
    }
    return i;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* kind: 0 = slug, 1 = category (any string of 1..64 bytes). */
static void parse_list(vctx *v, const json_t *val, const char *path, int kind, strlist *out)
{
    if (!val || json_is_null(val))
        return;
    if (!json_is_array(val)) {
        verr(v, path, "type", "must be an array of strings");
        return;
    }
    size_t n = json_array_size(val);
    if (n > RTA_QUERY_MAX_LIST) {
        verr(v, path, "too_many", "at most %d entries", RTA_QUERY_MAX_LIST);
        return;
    }
    out->items = n ? rta_xcalloc(n, sizeof(char *)) : NULL;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(val, i);
        char p[128];
        path_index(p, sizeof p, path, i);
        if (!json_is_string(e)) {
            verr(v, p, "type", "must be a string");
            bad = 1;
            continue;
        }
        const char *s = json_string_value(e);
        if (kind == 0 && !rta_valid_slug(s)) {
            verr(v, p, "slug", "must match [a-z0-9][a-z0-9._-]{0,127}");
            bad = 1;
            continue;
        }
        size_t len = json_string_length(e);
        if (kind == 1 && (len < 1 || len > MAX_CATEGORY_LEN || strlen(s) != len)) {
            verr(v, p, "length", "must be 1..%d bytes", MAX_CATEGORY_LEN);
            bad = 1;
            continue;
        }
        if (!bad)
            out->items[out->n++] = rta_strdup(s);
    }
    if (bad) {
        strlist_free(out);
        return;
    }
    if (out->n > 1)
        qsort(out->items, out->n, sizeof(char *), cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (w > 0 && strcmp(out->items[w - 1], out->items[i]) == 0)
            free(out->items[i]);
        else
            out->items[w++] = out->items[i];
    }
    out->n = w;
}

static void parse_range(vctx *v, const json_t *val, const char *path, range *out)
{
    if (!val || json_is_null(val))
        return;
    if (!json_is_object(val)) {
        verr(v, path, "type", "must be an object {min, max}");
        return;
    }
    const char *key;
    const json_t *m;
    char p[128];
    json_object_foreach((json_t *)val, key, m)
    {
        path_key(p, sizeof p, path, key);
        int is_min = strcmp(key, "min") == 0;
        if (!is_min && strcmp(key, "max") != 0) {
            verr(v, p, "unknown_field", "unknown field");
            continue;
        }
        if (json_is_null(m))
            continue;
        if (!json_is_number(m)) {
            verr(v, p, "type", "must be a number");
            continue;
        }
        double d = json_number_value(m);
        if (d == 0)
            d = 0; /* -0 and 0 mean the same: one canonical text */
        if (is_min) {
            out->has_min = 1;
            out->min = d;
        } else {
            out->has_max = 1;
            out->max = d;
        }
    }
    if (out->has_min && out->has_max && out->min > out->max)
        verr(v, path, "min_gt_max", "min must not be greater than max");
}

static void parse_filters(vctx *v, const json_t *val, rta_query *q)
{
    if (!val || json_is_null(val))
        return;
    if (!json_is_object(val)) {
        verr(v, "$.filters", "type", "must be an object");
        return;
    }
    const char *key;
    const json_t *m;
    char p[128];
    json_object_foreach((json_t *)val, key, m)
    {
        path_key(p, sizeof p, "$.filters", key);
        if (strcmp(key, "protocols") == 0)
            parse_list(v, m, p, 0, &q->protocols);
        else if (strcmp(key, "chains") == 0)
            parse_list(v, m, p, 0, &q->chains);
        else if (strcmp(key, "categories") == 0)
            parse_list(v, m, p, 1, &q->categories);
        else if (strcmp(key, "tvl_range") == 0)
            parse_range(v, m, p, &q->tvl);
        else if (strcmp(key, "change_24h") == 0)
            parse_range(v, m, p, &q->change_24h);
        else
            verr(v, p, "unknown_field", "unknown field");
    }
}

static void parse_aggs(vctx *v, const json_t *val, rta_query *q)
{
    if (!val || json_is_null(val))
        return;
    if (!json_is_array(val)) {
        verr(v, "$.aggregations", "type", "must be an array");
        return;
    }
    if (json_array_size(val) > RTA_QUERY_MAX_AGGS) {
        verr(v, "$.aggregations", "too_many", "at most %d aggregations", RTA_QUERY_MAX_AGGS);
        return;
    }
    size_t i;
    const json_t *a;
    json_array_foreach(val, i, a)
    {
        char base[64], p[128];
        path_index(base, sizeof base, "$.aggregations", i);
        if (!json_is_object(a)) {
            verr(v, base, "type", "must be an object {field, operation, group_by}");
            continue;
        }
        const char *key;
        const json_t *m;
        json_object_foreach((json_t *)a, key, m)
        {
            if (strcmp(key, "field") && strcmp(key, "operation") && strcmp(key, "group_by")) {
                path_key(p, sizeof p, base, key);
                verr(v, p, "unknown_field", "unknown field");
            }
        }
        agg_spec s;
        const json_t *op = json_object_get(a, "operation");
        path_key(p, sizeof p, base, "operation");
        if (!op || json_is_null(op)) {
            verr(v, p, "required", "operation is required");
            s.op = -1;
        } else {
            s.op = parse_enum(v, op, p, op_names, 5, -1);
        }
        const json_t *f = json_object_get(a, "field");
        path_key(p, sizeof p, base, "field");
        if ((!f || json_is_null(f)) && s.op != OP_COUNT) {
            verr(v, p, "required", "field is required (except for count)");
            s.field = -1;
        } else {
            s.field = parse_enum(v, f, p, field_names, N_AGG_FIELDS, F_TVL);
        }
        path_key(p, sizeof p, base, "group_by");
        s.group = parse_enum(v, json_object_get(a, "group_by"), p, group_names, 4, G_NONE);
        if (s.op >= 0 && s.field >= 0 && s.group >= 0)
            q->aggs[q->naggs++] = s;
    }
}

static void parse_sort(vctx *v, const json_t *val, rta_query *q)
{
    if (!val || json_is_null(val))
        return;
    if (!json_is_object(val)) {
        verr(v, "$.sort", "type", "must be an object {field, order}");
        return;
    }
    const char *key;
    const json_t *m;
    char p[128];
    json_object_foreach((json_t *)val, key, m)
    {
        path_key(p, sizeof p, "$.sort", key);
        if (strcmp(key, "field") == 0) {
            int f = parse_enum(v, m, p, field_names, N_SORT_FIELDS, F_TVL);
            if (f >= 0)
                q->sort_field = f;
        } else if (strcmp(key, "order") == 0) {
            static const char *const orders[] = {"asc", "desc"};
            int o = parse_enum(v, m, p, orders, 2, 1);
            if (o >= 0)
                q->sort_desc = o;
        } else {
            verr(v, p, "unknown_field", "unknown field");
        }
    }
}

static void parse_count(vctx *v, const json_t *val, const char *path, long long lo, long long hi,
                        size_t *out)
{
    if (!val || json_is_null(val))
        return;
    if (!json_is_integer(val)) {
        verr(v, path, "type", "must be an integer");
        return;
    }
    json_int_t n = json_integer_value(val);
    if (n < lo || n > hi) {
        verr(v, path, "range", "must be %lld..%lld", lo, hi);
        return;
    }
    *out = (size_t)n;
}

static void canon_string(rta_dbuf *out, const char *str)
{
    rta_dbuf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        if (*p == '"' || *p == '\\')
            rta_dbuf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            rta_dbuf_printf(out, "\\u%04x", *p);
        else
            rta_dbuf_append(out, p, 1);
    }
    rta_dbuf_puts(out, "\"");
}

static void canon_list(rta_dbuf *out, int *first, const char *name, const strlist *l)
{
    if (l->n == 0)
        return; /* an empty list means no filter */
    rta_dbuf_printf(out, "%s\"%s\":[", *first ? "" : ",", name);
    *first = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            rta_dbuf_puts(out, ",");
        canon_string(out, l->items[i]);
    }
    rta_dbuf_puts(out, "]");
}

static void canon_range(rta_dbuf *out, int *first, const char *name, const range *r)
{
    if (!r->has_min && !r->has_max)
        return;
    rta_dbuf_printf(out, "%s\"%s\":{", *first ? "" : ",", name);
    *first = 0;
    /* %a (hex float) is exact and an order of magnitude cheaper than %.17g */
    if (r->has_min)
        rta_dbuf_printf(out, "\"min\":\"%a\"", r->min);
    if (r->has_max)
        rta_dbuf_printf(out, "%s\"max\":\"%a\"", r->has_min ? "," : "", r->max);
    rta_dbuf_puts(out, "}");
}

/* The canonical text (the cache key): fixed key order, lists sorted and de-duplicated (empty
 * lists dropped: they mean "no filter"), defaults filled, numbers as exact hex floats. Written
 * straight into a buffer: it is built for every request, cache hits included. */
static char *build_canonical(const rta_query *q)
{
    rta_dbuf out;
    rta_dbuf_init(&out, SIZE_MAX / 4);
    int first = 1;
    rta_dbuf_puts(&out, "{\"filters\":{");
    canon_list(&out, &first, "protocols", &q->protocols);
    canon_list(&out, &first, "chains", &q->chains);
    canon_list(&out, &first, "categories", &q->categories);
    canon_range(&out, &first, "tvl_range", &q->tvl);
    canon_range(&out, &first, "change_24h", &q->change_24h);
    rta_dbuf_puts(&out, "},\"aggregations\":[");
    for (size_t i = 0; i < q->naggs; i++)
        rta_dbuf_printf(&out, "%s{\"field\":\"%s\",\"operation\":\"%s\",\"group_by\":\"%s\"}",
                        i ? "," : "", field_names[q->aggs[i].field], op_names[q->aggs[i].op],
                        group_names[q->aggs[i].group]);
    rta_dbuf_printf(&out,
                    "],\"sort\":{\"field\":\"%s\",\"order\":\"%s\"},\"limit\":%zu,\"offset\":%zu}",
                    field_names[q->sort_field], q->sort_desc ? "desc" : "asc", q->limit, q->offset);
    return rta_dbuf_steal(&out, NULL);
}

rta_query *rta_query_parse(const json_t *body, json_t **errors)
{
    vctx v = {.errors = json_array()};
    rta_query *q = rta_xcalloc(1, sizeof *q);
    q->sort_field = F_TVL;
    q->sort_desc = 1;
    q->limit = 100;
    q->offset = 0;

    if (!body || !json_is_object(body)) {
        verr(&v, "$", "type", "body must be a JSON object");
        goto out;
    }
    const char *key;
    const json_t *m;
    json_object_foreach((json_t *)body, key, m)
    {
        char p[128];
        path_key(p, sizeof p, "$", key);
        if (strcmp(key, "filters") == 0)
            parse_filters(&v, m, q);
        else if (strcmp(key, "aggregations") == 0)
            parse_aggs(&v, m, q);
        else if (strcmp(key, "sort") == 0)
            parse_sort(&v, m, q);
        else if (strcmp(key, "limit") == 0)
            parse_count(&v, m, p, 1, RTA_QUERY_MAX_LIMIT, &q->limit);
        else if (strcmp(key, "offset") == 0)
            parse_count(&v, m, p, 0, 1000000, &q->offset);
        else
            verr(&v, p, "unknown_field", "unknown field");
    }
out:
    if (json_array_size(v.errors) > 0) {
        rta_query_free(q);
        if (errors)
            *errors = v.errors;
        else
            json_decref(v.errors);
        return NULL;
    }
    json_decref(v.errors);
    if (errors)
        *errors = NULL;
    q->canonical = build_canonical(q);
    return q;
}

void rta_query_free(rta_query *q)
{
    if (!q)
        return;
    strlist_free(&q->protocols);
    strlist_free(&q->chains);
    strlist_free(&q->categories);
    free(q->canonical);
    free(q);
}

const char *rta_query_canonical(const rta_query *q)
{
    return q->canonical;
}

/* ---------------------------------------------------------------- execution context */

/* A full scan that follows st->pairs touches 12,000 structs scattered across the heap (each
 * pair sits next to its history block), and a change computed from the history costs several
 * cache misses more. The context keeps dense mirrors of what a scan reads, indexed like
 * st->pairs, and keeps them current incrementally:
 *  - per pair (pair_col): value, update time, protocol / chain index, interned category id and
 *    a generation bumped whenever anything a row shows may have changed. Only the pairs named
 *    in the state's journal of touched pairs (rta_state.journal) are re-read; everything is
 *    re-read when the journal overflowed between two queries or the state is new;
 *  - per protocol / chain: rank of its slug / name in sorted order, so sorting and the
 *    (protocol, chain) tie-breaker compare integers (rebuilt only when protocols or chains are
 *    added: names never change);
 *  - per protocol: the interned category id (re-read with its pairs: a metadata change
 *    journals every pair of the protocol);
 *  - per pair and window (memo_entry): the last computed change and the interval of "now" over
 *    which it holds. rta_pair_change_until gives the time at which the window edge reaches the
 *    next point of the history; until then (and until the pair is touched) the value is exact,
 *    so a change is recomputed only when its pair changed or its window edge crossed a point;
 *  - per pair (row_text): the row's JSON text as last written, reused while the generation and
 *    the three changes are the same.
 * Between updates, queries read only these arrays. */
typedef struct {
    int64_t from_ms, until_ms; /* the change holds for now in [from_ms, until_ms) */
} memo_entry;

/* One change column: values (dense, what scans read), their validity, and the validity of the
 * whole column (every entry valid for now in [from_ms, until_ms) unless dirty). */
#define DIRTY_MAX 1024 /* touched pairs remembered per change column before a full pass */
typedef struct {
    double *val;
    memo_entry *memo;
    int64_t from_ms, until_ms;
    uint32_t dirty[DIRTY_MAX]; /* pairs touched since the last pass, when !all_dirty */
    size_t ndirty;
    int all_dirty; /* every entry must be checked (also: never computed) */
} change_col;

typedef struct {
    double tvl;
    int64_t updated_ms;
    uint32_t protocol, chain;
    int32_t cat;  /* interned category id */
    uint32_t gen; /* bumped on every re-read: 0 = never read */
} pair_col;

typedef struct {
    char *text;
    uint32_t len, cap;
    uint32_t gen; /* pair_col.gen the text was written for; 0 = none */
    double ch[3]; /* the changes it shows */
} row_text;

/* A real's text as jansson writes it: "%.17g" through glibc costs ~1 us, and aggregation
 * values repeat from one query to the next while the data stands still. */
#define NUM_CACHE 1024
typedef struct num_text {
    uint64_t bits;
    uint8_t len; /* 0 = empty */
    char text[23];
} num_text;

typedef struct cat_ent {
    UT_hash_handle hh;
    int32_t id;
    char name[];
} cat_ent;

struct rta_query_ctx {
    const rta_state *st;
    int valid;
    uint64_t seen_seq; /* journal entries consumed */
    size_t npairs, cap_pairs;
    pair_col *cols;
    change_col ch[3];
    row_text *texts;
    size_t nprank, nparr; /* protocols ranked / allocated */
    uint32_t *prank;
    size_t ncrank, ncarr;
    uint32_t *crank;
    int32_t *cat_of; /* protocol index -> category id */
    cat_ent *cat_by_name;
    cat_ent **cats; /* id -> entry */
    size_t ncats, cap_cats;
    rta_dbuf scratch;      /* one row's text while it is written */
    struct num_text *nums; /* NUM_CACHE formatted reals, direct-mapped by their bits */
};

rta_query_ctx *rta_query_ctx_new(void)
{
    return rta_xcalloc(1, sizeof(rta_query_ctx));
}

static void ctx_clear(rta_query_ctx *c)
{
    for (int w = 0; w < 3; w++) {
        free(c->ch[w].val);
        free(c->ch[w].memo);
    }
    if (c->texts)
        for (size_t i = 0; i < c->npairs; i++)
            free(c->texts[i].text);
    free(c->texts);
    free(c->cols);
    free(c->prank);
    free(c->crank);
    free(c->cat_of);
    HASH_CLEAR(hh, c->cat_by_name);
    for (size_t i = 0; i < c->ncats; i++)
        free(c->cats[i]);
    free(c->cats);
    rta_dbuf_free(&c->scratch);
    free(c->nums);
    memset(c, 0, sizeof *c);
}

void rta_query_ctx_free(rta_query_ctx *c)
{
    if (!c)
        return;
    ctx_clear(c);
    free(c);
}

static int cmp_proto_slug(const void *a, const void *b, void *st_)
{
    const rta_state *st = st_;
    return strcmp(st->protocols[*(const uint32_t *)a]->slug,
                  st->protocols[*(const uint32_t *)b]->slug);
}

static int cmp_chain_name(const void *a, const void *b, void *st_)
{
    const rta_state *st = st_;
    return strcmp(st->chains[*(const uint32_t *)a]->name, st->chains[*(const uint32_t *)b]->name);
}

/* rank[i] = position of entry i in sorted order. */
static void rank_by_name(const rta_state *st, size_t n, uint32_t *rank,
                         int (*cmp)(const void *, const void *, void *))
{
    uint32_t *order = rta_xmalloc((n ? n : 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    qsort_r(order, n, sizeof(uint32_t), cmp, (void *)st);
    for (size_t i = 0; i < n; i++)
        rank[order[i]] = (uint32_t)i;
    free(order);
}

static int32_t intern_category(rta_query_ctx *c, const char *name)
{
    cat_ent *e = NULL;
    HASH_FIND_STR(c->cat_by_name, name, e);
    if (e)
        return e->id;
    if (c->ncats == c->cap_cats) {
        c->cap_cats = c->cap_cats ? c->cap_cats * 2 : 64;
        c->cats = rta_xrealloc(c->cats, c->cap_cats * sizeof(cat_ent *));
    }
    size_t len = strlen(name);
    e = rta_xmalloc(sizeof *e + len + 1);
    memcpy(e->name, name, len + 1);
    e->id = (int32_t)c->ncats;
    c->cats[c->ncats++] = e;
    HASH_ADD_STR(c->cat_by_name, name, e);
    return e->id;
}

static int32_t protocol_category(rta_query_ctx *c, const rta_protocol *p)
{
    int32_t id = intern_category(c, p->category ? p->category : "");
    c->cat_of[p->index] = id;
    return id;
}

/* Re-reads pair i; cat is its protocol's category id, or -1 to look it up. */
static void ctx_read_pair(rta_query_ctx *c, const rta_state *st, size_t i, int32_t cat)
{
    const rta_pair *p = st->pairs[i];
    pair_col *m = &c->cols[i];
    m->tvl = p->tvl;
    m->updated_ms = p->updated_ms;
    m->protocol = p->protocol->index;
    m->chain = p->chain->index;
    m->cat = cat >= 0 ? cat : protocol_category(c, p->protocol);
    if (++m->gen == 0)
        m->gen = 1;
    for (int w = 0; w < 3; w++) {
        change_col *col = &c->ch[w];
        col->memo[i] = (memo_entry){.from_ms = INT64_MAX, .until_ms = INT64_MIN};
        if (col->ndirty < DIRTY_MAX)
            col->dirty[col->ndirty++] = (uint32_t)i;
        else
            col->all_dirty = 1;
    }
}

/* Brings the mirrors up to date with st. */
static void ctx_sync(rta_query_ctx *c, const rta_state *st)
{
    if (c->st != st)
        ctx_clear(c);
    c->st = st;
    if (c->valid && c->seen_seq == st->journal_seq && c->npairs == st->npairs &&
        c->nprank == st->nprotocols && c->ncrank == st->nchains)
        return;

    if (st->npairs > c->cap_pairs) {
        size_t cap = st->npairs + st->npairs / 2 + 64, old = c->cap_pairs;
        for (int w = 0; w < 3; w++) {
            c->ch[w].val = rta_xrealloc(c->ch[w].val, cap * sizeof(double));
            c->ch[w].memo = rta_xrealloc(c->ch[w].memo, cap * sizeof(memo_entry));
        }
        c->cols = rta_xrealloc(c->cols, cap * sizeof(pair_col));
        memset(c->cols + old, 0, (cap - old) * sizeof(pair_col));
        c->texts = rta_xrealloc(c->texts, cap * sizeof(row_text));
        memset(c->texts + old, 0, (cap - old) * sizeof(row_text));
        c->cap_pairs = cap;
    }
    if (st->nprotocols > c->nparr) {
        c->nparr = st->nprotocols + st->nprotocols / 2 + 64;
        c->prank = rta_xrealloc(c->prank, c->nparr * sizeof(uint32_t));
        c->cat_of = rta_xrealloc(c->cat_of, c->nparr * sizeof(int32_t));
    }
    if (c->nprank != st->nprotocols) {
        rank_by_name(st, st->nprotocols, c->prank, cmp_proto_slug);
        c->nprank = st->nprotocols;
    }
    if (c->ncrank != st->nchains) {
        if (st->nchains > c->ncarr) {
            c->ncarr = st->nchains + st->nchains / 2 + 16;
            c->crank = rta_xrealloc(c->crank, c->ncarr * sizeof(uint32_t));
        }
        rank_by_name(st, st->nchains, c->crank, cmp_chain_name);
        c->ncrank = st->nchains;
    }

    if (!c->valid || st->journal_seq - c->seen_seq > RTA_STATE_JOURNAL) {
        /* Everything: categories per protocol first, then the pairs. */
        for (size_t i = 0; i < st->nprotocols; i++) {
            if (i + 8 < st->nprotocols)
                __builtin_prefetch(st->protocols[i + 8]);
            protocol_category(c, st->protocols[i]);
        }
        for (size_t i = 0; i < st->npairs; i++) {
            if (i + 8 < st->npairs)
                __builtin_prefetch(st->pairs[i + 8]); /* overlap the cache misses */
            ctx_read_pair(c, st, i, c->cat_of[st->pairs[i]->protocol->index]);
        }
    } else {
        for (uint64_t s = c->seen_seq; s < st->journal_seq; s++) {
            uint32_t i = st->journal[s % RTA_STATE_JOURNAL];
            if (i < st->npairs)
                ctx_read_pair(c, st, i, -1);
        }
        for (size_t i = c->npairs; i < st->npairs; i++) /* new pairs are journaled too */
            if (c->cols[i].gen == 0)
                ctx_read_pair(c, st, i, -1);
    }
    c->npairs = st->npairs;
    c->seen_seq = st->journal_seq;
    c->valid = 1;
}

static int64_t sec_floor_ms(int64_t ms)
{
    int64_t s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    return s * 1000;
}

/* Recomputes entry i of column `which` when it does not hold at now_ms. */
static inline void refresh_change(rta_query_ctx *c, change_col *col, int which, size_t i,
                                  int64_t now_ms)
{
    memo_entry *e = &col->memo[i];
    if (!(now_ms >= e->from_ms && now_ms < e->until_ms)) {
        col->val[i] =
            rta_pair_change_until(c->st->pairs[i], change_windows[which], now_ms, &e->until_ms);
        e->from_ms = sec_floor_ms(now_ms); /* the history answers per whole second */
    }
}

/* Brings change column `which` up to date for now_ms: the one place changes are computed (NaN
 * when unknown). Costs nothing when no pair was touched and no window edge was reached since
 * the last call; only the touched pairs when the column's interval still holds; otherwise one
 * pass over the validity entries, recomputing the stale ones. */
static void ensure_changes(rta_query_ctx *c, int which, int64_t now_ms)
{
    change_col *col = &c->ch[which];
    int in_time = now_ms >= col->from_ms && now_ms < col->until_ms;
    if (in_time && !col->all_dirty) {
        for (size_t k = 0; k < col->ndirty; k++) {
            size_t i = col->dirty[k];
            refresh_change(c, col, which, i, now_ms);
            if (col->memo[i].from_ms > col->from_ms)
                col->from_ms = col->memo[i].from_ms;
            if (col->memo[i].until_ms < col->until_ms)
                col->until_ms = col->memo[i].until_ms;
        }
        col->ndirty = 0;
        return;
    }
    int64_t from = INT64_MIN, until = INT64_MAX;
    for (size_t i = 0; i < c->npairs; i++) {
        refresh_change(c, col, which, i, now_ms);
        const memo_entry *e = &col->memo[i];
        if (e->from_ms > from)
            from = e->from_ms;
        if (e->until_ms < until)
            until = e->until_ms;
    }
    col->from_ms = from;
    col->until_ms = until;
    col->ndirty = 0;
    col->all_dirty = 0;
}

static double pair_change(rta_query_ctx *c, size_t i, int which, int64_t now_ms)
{
    ensure_changes(c, which, now_ms);
    return c->ch[which].val[i];
}

/* ---------------------------------------------------------------- JSON text */

/* Writes exactly what json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) writes for the same
 * values, without building jansson objects. */
typedef struct {
    rta_dbuf *b;
    int err;
} jw;

static void jw_raw(jw *w, const char *s, size_t n)
{
    if (rta_dbuf_append(w->b, s, n) != 0)
        w->err = 1;
}

#define JW_LIT(w, s) jw_raw((w), (s), sizeof(s) - 1)

/* jansson's escaping: '"', '\\' and control characters; everything else (UTF-8 included)
 * verbatim. */
static void jw_str(jw *w, const char *s)
{
    JW_LIT(w, "\"");
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        unsigned char ch = *p;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        jw_raw(w, run, (size_t)((const char *)p - run));
        if (ch == 0)
            break;
        char esc[8];
        const char *t = esc;
        size_t n = 2;
        switch (ch) {
        case '"':
            t = "\\\"";
            break;
        case '\\':
            t = "\\\\";
            break;
        case '\b':
            t = "\\b";
            break;
        case '\f':
            t = "\\f";
            break;
        case '\n':
            t = "\\n";
            break;
        case '\r':
            t = "\\r";
            break;
        case '\t':
            t = "\\t";
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", (unsigned)ch);
            n = 6;
            break;
        }
        jw_raw(w, t, n);
        run = (const char *)p + 1;
    }
    JW_LIT(w, "\"");
}

/* A finite real as jansson prints it ("%.17g", then ".0" when it would read back as an
 * integer, exponent without '+' and leading zeros) into buf (>= 32 bytes); returns the length,
 * or 0 when it does not fit. */
static size_t fmt_real(char *buf, size_t size, double d)
{
    int n = snprintf(buf, size - 3, "%.17g", d);
    if (n < 0 || n >= (int)size - 3)
        return 0;
    size_t len = (size_t)n;
    if (!strchr(buf, '.') && !strchr(buf, 'e')) {
        buf[len++] = '.';
        buf[len++] = '0';
        buf[len] = '\0';
    }
    char *e = strchr(buf, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf) + 1);
            len -= (size_t)(end - start);
        }
    }
    return len;
}

/* The real d, or null when it is not finite (like jnum()); through the context's cache of
 * formatted numbers when cache is not NULL. */
static void jw_real_c(jw *w, double d, num_text *cache)
{
    if (!isfinite(d)) {
        JW_LIT(w, "null");
        return;
    }
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    num_text *e = NULL;
    if (cache) {
        e = &cache[(bits * 0x9E3779B97F4A7C15ULL) >> 54]; /* 10 bits: NUM_CACHE */
        if (e->len && e->bits == bits) {
            jw_raw(w, e->text, e->len);
            return;
        }
    }
    char buf[48];
    size_t len = fmt_real(buf, sizeof buf, d);
    if (len == 0) {
        w->err = 1;
        return;
    }
    if (e && len <= sizeof e->text) {
        e->bits = bits;
        e->len = (uint8_t)len;
        memcpy(e->text, buf, len);
    }
    jw_raw(w, buf, len);
}

static void jw_real(jw *w, double d)
{
    jw_real_c(w, d, NULL);
}

static void jw_int(jw *w, long long v)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", v);
    jw_raw(w, buf, (size_t)n);
}

/* ---------------------------------------------------------------- execution */

typedef struct {
    double key;     /* numeric sort key (NaN = unknown, always last); ranks for string fields */
    uint32_t idx;   /* position in st->pairs */
    uint32_t prank; /* tie-breakers: rank of the protocol slug, of the chain name */
    uint32_t crank;
} row;

typedef struct {
    const rta_state *st; /* for display names (the one string field without a rank) */
    int by_name;
    int desc;
} sort_ctx;

/* < 0 when a comes before b in the result. The tie-breaker (protocol, chain) is always
 * ascending, so the order is total and pages are stable. */
static inline int row_cmp(const row *a, const row *b, const sort_ctx *c)
{
    int r;
    if (c->by_name) {
        r = strcmp(c->st->pairs[a->idx]->protocol->name, c->st->pairs[b->idx]->protocol->name);
        if (c->desc)
            r = -r;
    } else {
        int an = isnan(a->key), bn = isnan(b->key);
        if (an || bn)
            r = an - bn; /* unknown values last in both orders */
        else
            r = (a->key > b->key) - (a->key < b->key);
        if (c->desc && !(an || bn))
            r = -r;
    }
    if (r)
        return r;
    if (a->prank != b->prank)
        return a->prank < b->prank ? -1 : 1;
    return (a->crank > b->crank) - (a->crank < b->crank);
}

/* 1 when a row with key a sorts strictly after one with key b, whatever their tie-breakers
 * (row_cmp's order on keys alone). */
static inline int key_after(double a, double b, int desc)
{
    int an = isnan(a), bn = isnan(b);
    if (an || bn)
        return an && !bn;
    return desc ? a < b : a > b;
}

static int row_cmp_q(const void *a, const void *b, void *c)
{
    return row_cmp(a, b, c);
}

/* Max-heap under row_cmp: the root is the row that sorts last among the kept ones. */
static void heap_sift_down(row *h, size_t n, size_t i, const sort_ctx *c)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && row_cmp(&h[l], &h[m], c) > 0)
            m = l;
        if (r < n && row_cmp(&h[r], &h[m], c) > 0)
            m = r;
        if (m == i)
            return;
        row t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_sift_up(row *h, size_t i, const sort_ctx *c)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (row_cmp(&h[i], &h[parent], c) <= 0)
            return;
        row t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* Orders rows so that the first min(k, n) are the first rows of the full order, sorted.
 * Returns min(k, n). */
static size_t order_rows(row *rows, size_t n, size_t k, const sort_ctx *c)
{
    if (k == 0)
        return 0;
    if (k >= n || k > n / 4) {
        qsort_r(rows, n, sizeof(row), row_cmp_q, (void *)c);
        return k < n ? k : n;
    }
    /* Bounded heap in place: rows[0..k) is the heap; scan the rest. */
    for (size_t i = 1; i < k; i++)
        heap_sift_up(rows, i, c);
    for (size_t i = k; i < n; i++) {
        if (row_cmp(&rows[i], &rows[0], c) < 0) {
            rows[0] = rows[i];
            heap_sift_down(rows, k, 0, c);
        }
    }
    qsort_r(rows, k, sizeof(row), row_cmp_q, (void *)c);
    return k;
}

typedef struct {
    double sum, min, max;
    size_t count;
    int32_t key; /* group index (chain / protocol / category id), -1 for none */
} acc;

typedef struct {
    int32_t *slot_of; /* group index -> slot + 1 (0 = none yet) */
    acc *slots;
    size_t nslots, cap;
} agg_state;

static inline acc *acc_slot(agg_state *a, int32_t key)
{
    if (key < 0)
        return &a->slots[0];
    int32_t *slot = &a->slot_of[key];
    if (!*slot) {
        if (a->nslots == a->cap) {
            a->cap = a->cap ? a->cap * 2 : 16;
            a->slots = rta_xrealloc(a->slots, a->cap * sizeof(acc));
        }
        a->slots[a->nslots] = (acc){.sum = 0, .min = INFINITY, .max = -INFINITY, .key = key};
        *slot = (int32_t)++a->nslots;
    }
    return &a->slots[*slot - 1];
}

/* Unknown values (NaN) create the group but are not counted. min / max are kept only when the
 * operation shows them (minmax). */
static inline void acc_add(agg_state *a, int32_t key, double v, int minmax)
{
    acc *s = acc_slot(a, key);
    int known = !isnan(v);
    s->sum += known ? v : 0.0;
    s->count += (size_t)known;
    if (minmax && known) {
        if (v < s->min)
            s->min = v;
        if (v > s->max)
            s->max = v;
    }
}

static double acc_value(const acc *s, int op)
{
    switch (op) {
    case OP_SUM:
        return s->sum;
    case OP_AVG:
        return s->count ? s->sum / (double)s->count : NAN;
    case OP_MIN:
        return s->count ? s->min : NAN;
    case OP_MAX:
        return s->count ? s->max : NAN;
    default:
        return (double)s->count;
    }
}

static json_t *jnum(double d)
{
    return isfinite(d) ? json_real(d) : json_null();
}

typedef struct {
    const acc *s;
    double value;
    const char *key;
} group_out;

static int group_cmp(const void *va, const void *vb)
{
    const group_out *a = va, *b = vb;
    int an = isnan(a->value), bn = isnan(b->value);
    if (an || bn) {
        if (an != bn)
            return an - bn;
    } else if (a->value != b->value) {
        return a->value > b->value ? -1 : 1;
    }
    if (!a->key || !b->key)
        return 0;
    return strcmp(a->key, b->key);
}

/* The groups of one aggregation in output order (caller frees). */
static group_out *agg_groups(const agg_spec *spec, const agg_state *a, const rta_state *st,
                             const rta_query_ctx *c)
{
    group_out *g = rta_xcalloc(a->nslots ? a->nslots : 1, sizeof *g);
    for (size_t i = 0; i < a->nslots; i++) {
        const acc *s = &a->slots[i];
        g[i].s = s;
        g[i].value = acc_value(s, spec->op);
        switch (spec->group) {
        case G_CHAIN:
            g[i].key = st->chains[s->key]->name;
            break;
        case G_PROTOCOL:
            g[i].key = st->protocols[s->key]->slug;
            break;
        case G_CATEGORY:
            g[i].key = c->cats[s->key]->name;
            break;
        default:
            g[i].key = NULL;
            break;
        }
    }
    qsort(g, a->nslots, sizeof *g, group_cmp);
    return g;
}

static json_t *agg_result(const agg_spec *spec, const agg_state *a, const rta_state *st,
                          const rta_query_ctx *c)
{
    group_out *g = agg_groups(spec, a, st, c);
    json_t *groups = json_array();
    for (size_t i = 0; i < a->nslots; i++)
        json_array_append_new(groups,
                              json_pack("{s:o,s:o,s:I}", "key",
                                        g[i].key ? json_string(g[i].key) : json_null(), "value",
                                        jnum(g[i].value), "count", (json_int_t)g[i].s->count));
    free(g);
    return json_pack("{s:s,s:s,s:s,s:o}", "field", field_names[spec->field], "operation",
                     op_names[spec->op], "group_by", group_names[spec->group], "groups", groups);
}

static void agg_text(jw *w, const agg_spec *spec, const agg_state *a, const rta_state *st,
                     rta_query_ctx *c)
{
    if (!c->nums)
        c->nums = rta_xcalloc(NUM_CACHE, sizeof(num_text));
    group_out *g = agg_groups(spec, a, st, c);
    JW_LIT(w, "{\"field\":");
    jw_str(w, field_names[spec->field]);
    JW_LIT(w, ",\"operation\":");
    jw_str(w, op_names[spec->op]);
    JW_LIT(w, ",\"group_by\":");
    jw_str(w, group_names[spec->group]);
    JW_LIT(w, ",\"groups\":[");
    for (size_t i = 0; i < a->nslots; i++) {
        if (i)
            JW_LIT(w, ",");
        JW_LIT(w, "{\"key\":");
        if (g[i].key)
            jw_str(w, g[i].key);
        else
            JW_LIT(w, "null");
        JW_LIT(w, ",\"value\":");
        jw_real_c(w, g[i].value, c->nums);
        JW_LIT(w, ",\"count\":");
        jw_int(w, (long long)g[i].s->count);
        JW_LIT(w, "}");
    }
    JW_LIT(w, "]}");
    free(g);
}

static json_t *row_json(rta_query_ctx *c, size_t idx, int64_t now_ms)
{
    const rta_pair *p = c->st->pairs[idx];
    char ts[32];
    rta_time_iso8601(p->updated_ms, ts, sizeof ts);
    const rta_protocol *pr = p->protocol;
    /* Built member by member: json_pack's format parsing costs more than the row. */
    json_t *o = json_object();
    json_object_set_new_nocheck(o, "protocol", json_string_nocheck(pr->slug));
    json_object_set_new_nocheck(o, "name", json_string(pr->name ? pr->name : pr->slug));
    json_object_set_new_nocheck(o, "chain", json_string_nocheck(p->chain->name));
    json_object_set_new_nocheck(o, "category", json_string(pr->category ? pr->category : ""));
    json_object_set_new_nocheck(o, "tvl", jnum(p->tvl));
    json_object_set_new_nocheck(o, "change_1h", jnum(pair_change(c, idx, 0, now_ms)));
    json_object_set_new_nocheck(o, "change_24h", jnum(pair_change(c, idx, 1, now_ms)));
    json_object_set_new_nocheck(o, "change_7d", jnum(pair_change(c, idx, 2, now_ms)));
    json_object_set_new_nocheck(o, "updatedAt", json_string_nocheck(ts));
    return o;
}

/* The same row as text, from the row cache when nothing it shows has changed. */
static int row_text_put(jw *w, rta_query_ctx *c, size_t idx, int64_t now_ms)
{
    double ch[3];
    for (int k = 0; k < 3; k++)
        ch[k] = pair_change(c, idx, k, now_ms);
    row_text *t = &c->texts[idx];
    const pair_col *m = &c->cols[idx];
    if (!(t->text && t->gen == m->gen && memcmp(t->ch, ch, sizeof ch) == 0)) {
        const rta_pair *p = c->st->pairs[idx];
        const rta_protocol *pr = p->protocol;
        char ts[32];
        rta_time_iso8601(p->updated_ms, ts, sizeof ts);
        if (c->scratch.max == 0)
            rta_dbuf_init(&c->scratch, 1u << 20);
        rta_dbuf_reset(&c->scratch);
        jw rw = {.b = &c->scratch};
        JW_LIT(&rw, "{\"protocol\":");
        jw_str(&rw, pr->slug);
        JW_LIT(&rw, ",\"name\":");
        jw_str(&rw, pr->name ? pr->name : pr->slug);
        JW_LIT(&rw, ",\"chain\":");
        jw_str(&rw, p->chain->name);
        JW_LIT(&rw, ",\"category\":");
        jw_str(&rw, pr->category ? pr->category : "");
        JW_LIT(&rw, ",\"tvl\":");
        jw_real(&rw, p->tvl);
        JW_LIT(&rw, ",\"change_1h\":");
        jw_real(&rw, ch[0]);
        JW_LIT(&rw, ",\"change_24h\":");
        jw_real(&rw, ch[1]);
        JW_LIT(&rw, ",\"change_7d\":");
        jw_real(&rw, ch[2]);
        JW_LIT(&rw, ",\"updatedAt\":");
        jw_str(&rw, ts);
        JW_LIT(&rw, "}");
        if (rw.err)
            return -1;
        size_t len = c->scratch.len;
        if (len > t->cap) {
            t->cap = (uint32_t)len;
            t->text = rta_xrealloc(t->text, len);
        }
        memcpy(t->text, c->scratch.data, len);
        t->len = (uint32_t)len;
        t->gen = m->gen;
        memcpy(t->ch, ch, sizeof ch);
    }
    jw_raw(w, t->text, t->len);
    return 0;
}

static int in_range(const range *r, double v)
{
    if (isnan(v))
        return 0;
    if (r->has_min && v < r->min)
        return 0;
    if (r->has_max && v > r->max)
        return 0;
    return 1;
}

static int cmp_cat_name(const void *a, const void *b)
{
    return strcmp((*(cat_ent *const *)a)->name, (*(cat_ent *const *)b)->name);
}

/* What one execution found: the matching rows (the page is rows[first, have)), in order, and
 * the aggregations' accumulators. */
typedef struct {
    row *rows;
    size_t nrows, first, have;
    agg_state aggs[RTA_QUERY_MAX_AGGS];
    size_t naggs;
} exec_out;

static void exec_out_free(exec_out *o)
{
    for (size_t i = 0; i < o->naggs; i++) {
        free(o->aggs[i].slot_of);
        free(o->aggs[i].slots);
    }
    free(o->rows);
}

static void exec_run(const rta_query *q, const rta_state *st, rta_query_ctx *c, int64_t now_ms,
                     exec_out *o)
{
    ctx_sync(c, st);
    memset(o, 0, sizeof *o);

    /* Candidate pairs: the listed protocols' pairs, or all pairs. */
    uint32_t *cand = NULL;
    size_t ncand = st->npairs;
    if (q->protocols.n) {
        size_t n = 0;
        const rta_protocol **plist = rta_xcalloc(q->protocols.n, sizeof *plist);
        size_t nplist = 0;
        for (size_t i = 0; i < q->protocols.n; i++) {
            const rta_protocol *p = rta_state_find_protocol(st, q->protocols.items[i]);
            if (p) {
                plist[nplist++] = p;
                n += p->npairs;
            }
        }
        cand = rta_xmalloc((n ? n : 1) * sizeof *cand);
        ncand = 0;
        for (size_t i = 0; i < nplist; i++)
            for (size_t j = 0; j < plist[i]->npairs; j++)
                cand[ncand++] = plist[i]->pairs[j]->index;
        free(plist);
    }

    /* Chain filter as a mark per chain index. */
    unsigned char *chain_ok = NULL;
    if (q->chains.n) {
        chain_ok = rta_xcalloc(st->nchains ? st->nchains : 1, 1);
        for (size_t i = 0; i < q->chains.n; i++) {
            const rta_chain *ch = rta_state_find_chain(st, q->chains.items[i]);
            if (ch)
                chain_ok[ch->index] = 1;
        }
    }

    /* Category filter as a mark per interned category; category sort as a rank per id. */
    unsigned char *cat_ok = NULL;
    if (q->categories.n) {
        cat_ok = rta_xcalloc(c->ncats ? c->ncats : 1, 1);
        for (size_t i = 0; i < c->ncats; i++) {
            const char *name = c->cats[i]->name;
            cat_ok[i] = bsearch(&name, q->categories.items, q->categories.n, sizeof(char *),
                                cmp_str) != NULL;
        }
    }
    uint32_t *cat_rank = NULL;
    if (q->sort_field == F_CATEGORY) {
        cat_ent **sorted = rta_xmalloc((c->ncats ? c->ncats : 1) * sizeof(cat_ent *));
        memcpy(sorted, c->cats, c->ncats * sizeof(cat_ent *));
        qsort(sorted, c->ncats, sizeof(cat_ent *), cmp_cat_name);
        cat_rank = rta_xmalloc((c->ncats ? c->ncats : 1) * sizeof(uint32_t));
        for (size_t i = 0; i < c->ncats; i++)
            cat_rank[sorted[i]->id] = (uint32_t)i;
        free(sorted);
    }

    /* Which change columns are needed during the scan. */
    int need[3] = {0, 0, 0};
    int change_filter = q->change_24h.has_min || q->change_24h.has_max;
    int tvl_filter = q->tvl.has_min || q->tvl.has_max;
    if (change_filter)
        need[1] = 1;
    if (q->sort_field >= F_CHANGE_1H && q->sort_field <= F_CHANGE_7D)
        need[q->sort_field - F_CHANGE_1H] = 1;

    o->naggs = q->naggs;
    for (size_t i = 0; i < q->naggs; i++) {
        const agg_spec *s = &q->aggs[i];
        agg_state *a = &o->aggs[i];
        size_t ndomain = 0;
        if (s->field >= F_CHANGE_1H)
            need[s->field - F_CHANGE_1H] = 1;
        switch (s->group) {
        case G_CHAIN:
            ndomain = st->nchains;
            break;
        case G_PROTOCOL:
            ndomain = st->nprotocols;
            break;
        case G_CATEGORY:
            ndomain = c->ncats;
            break;
        default:
            a->cap = a->nslots = 1;
            a->slots = rta_xcalloc(1, sizeof(acc));
            a->slots[0] = (acc){.sum = 0, .min = INFINITY, .max = -INFINITY, .key = -1};
            break;
        }
        if (s->group != G_NONE)
            a->slot_of = rta_xcalloc(ndomain ? ndomain : 1, sizeof(int32_t));
    }

    const double *chv[3] = {NULL, NULL, NULL};
    for (int w = 0; w < 3; w++)
        if (need[w]) {
            ensure_changes(c, w, now_ms);
            chv[w] = c->ch[w].val;
        }

    /* The scan: filters, then one row (sort key + tie-breakers) per match. When the page ends
     * early in a long list, only the first `want` rows are kept, in a bounded heap (a max-heap
     * under row_cmp: the root sorts last among the kept ones), so most rows cost one compare;
     * otherwise every row is kept and sorted afterwards. The matches' indices are kept for the
     * aggregations. */
    sort_ctx sc = {.st = st, .by_name = q->sort_field == F_NAME, .desc = q->sort_desc};
    size_t want = q->offset + q->limit;
    int use_heap = want > 0 && want <= ncand / 4;
    size_t rows_cap = use_heap ? want : ncand;
    row *rows = rta_xmalloc((rows_cap ? rows_cap : 1) * sizeof(row));
    uint32_t *sel = q->naggs ? rta_xmalloc((ncand ? ncand : 1) * sizeof(uint32_t)) : NULL;
    size_t nrows = 0, nkept = 0;
    const double *sort_ch = q->sort_field >= F_CHANGE_1H && q->sort_field <= F_CHANGE_7D
                                ? chv[q->sort_field - F_CHANGE_1H]
                                : NULL;
    for (size_t k = 0; k < ncand; k++) {
        size_t idx = cand ? cand[k] : k;
        const pair_col *m = &c->cols[idx];
        if (chain_ok && !chain_ok[m->chain])
            continue;
        if (cat_ok && !cat_ok[m->cat])
            continue;
        if (tvl_filter && !in_range(&q->tvl, m->tvl))
            continue;
        if (change_filter && !in_range(&q->change_24h, chv[1][idx]))
            continue;
        if (sel)
            sel[nrows] = (uint32_t)idx;
        nrows++;
        row tmp, *r = use_heap ? &tmp : &rows[nkept++];
        r->idx = (uint32_t)idx;
        switch (q->sort_field) {
        case F_TVL:
            r->key = m->tvl;
            break;
        case F_CHANGE_1H:
        case F_CHANGE_24H:
        case F_CHANGE_7D:
            r->key = sort_ch[idx];
            break;
        case F_UPDATED:
            r->key = (double)m->updated_ms;
            break;
        case F_PROTOCOL:
            r->key = c->prank[m->protocol];
            break;
        case F_CHAIN:
            r->key = c->crank[m->chain];
            break;
        case F_CATEGORY:
            r->key = cat_rank[m->cat];
            break;
        default:
            r->key = 0;
            break; /* F_NAME compares strings */
        }
        /* A full heap rejects most rows on the key alone, before the tie-breakers are read. */
        if (use_heap && nkept == want && !sc.by_name && key_after(r->key, rows[0].key, sc.desc))
            continue;
        r->prank = c->prank[m->protocol];
        r->crank = c->crank[m->chain];
        if (use_heap) {
            if (nkept < want) {
                rows[nkept] = tmp;
                heap_sift_up(rows, nkept++, &sc);
            } else if (row_cmp(&tmp, &rows[0], &sc) < 0) {
                rows[0] = tmp;
                heap_sift_down(rows, nkept, 0, &sc);
            }
        }
    }

    /* Aggregations over the matching rows, one tight loop each (before the rows are reordered;
     * the order of additions is the scan order, as it always was). */
    for (size_t i = 0; i < q->naggs; i++) {
        const agg_spec *s = &q->aggs[i];
        agg_state *a = &o->aggs[i];
        const double *vals = s->field == F_TVL ? NULL : chv[s->field - F_CHANGE_1H];
        int minmax = s->op == OP_MIN || s->op == OP_MAX;
#define AGG_LOOP(KEY)                                                                              \
    for (size_t k = 0; k < nrows; k++) {                                                           \
        uint32_t idx = sel[k];                                                                     \
        const pair_col *m = &c->cols[idx];                                                         \
        acc_add(a, (KEY), vals ? vals[idx] : m->tvl, minmax);                                      \
    }
        switch (s->group) {
        case G_CHAIN:
            AGG_LOOP((int32_t)m->chain)
            break;
        case G_PROTOCOL:
            AGG_LOOP((int32_t)m->protocol)
            break;
        case G_CATEGORY:
            AGG_LOOP(m->cat)
            break;
        default:
            AGG_LOOP(-1)
            break;
        }
#undef AGG_LOOP
    }

    o->rows = rows;
    o->nrows = nrows;
    o->first = q->offset;
    if (use_heap) {
        qsort_r(rows, nkept, sizeof(row), row_cmp_q, &sc);
        o->have = nkept;
    } else {
        o->have = q->offset < nkept ? order_rows(rows, nkept, want, &sc) : 0;
    }
    free(sel);
    if (o->have < o->first)
        o->have = o->first;
    free(cat_rank);
    free(cat_ok);
    free(chain_ok);
    free(cand);
}

json_t *rta_query_exec_ctx(const rta_query *q, const rta_state *st, rta_query_ctx *c,
                           int64_t now_ms)
{
    exec_out o;
    exec_run(q, st, c, now_ms, &o);
    json_t *data = json_array();
    for (size_t i = o.first; i < o.have; i++)
        json_array_append_new(data, row_json(c, o.rows[i].idx, now_ms));
    json_t *aggs_out = json_array();
    for (size_t i = 0; i < q->naggs; i++)
        json_array_append_new(aggs_out, agg_result(&q->aggs[i], &o.aggs[i], st, c));
    json_t *res =
        json_pack("{s:o,s:o,s:{s:I,s:I}}", "data", data, "aggregations", aggs_out, "meta", "total",
                  (json_int_t)o.nrows, "returned", (json_int_t)json_array_size(data));
    exec_out_free(&o);
    return res;
}

int rta_query_exec_text(const rta_query *q, const rta_state *st, rta_query_ctx *c, int64_t now_ms,
                        rta_dbuf *out)
{
    exec_out o;
    exec_run(q, st, c, now_ms, &o);
    jw w = {.b = out};
    int rc = 0;
    JW_LIT(&w, "{\"data\":[");
    for (size_t i = o.first; i < o.have && rc == 0; i++) {
        if (i > o.first)
            JW_LIT(&w, ",");
        rc = row_text_put(&w, c, o.rows[i].idx, now_ms);
    }
    JW_LIT(&w, "],\"aggregations\":[");
    for (size_t i = 0; i < q->naggs; i++) {
        if (i)
            JW_LIT(&w, ",");
        agg_text(&w, &q->aggs[i], &o.aggs[i], st, c);
    }
    JW_LIT(&w, "],\"meta\":{\"total\":");
    jw_int(&w, (long long)o.nrows);
    JW_LIT(&w, ",\"returned\":");
    jw_int(&w, (long long)(o.have - o.first));
    JW_LIT(&w, "}}");
    exec_out_free(&o);
    return rc != 0 || w.err ? -1 : 0;
}

json_t *rta_query_exec(const rta_query *q, const rta_state *st, int64_t now_ms)
{
    rta_query_ctx c;
    memset(&c, 0, sizeof c);
    json_t *res = rta_query_exec_ctx(q, st, &c, now_ms);
    ctx_clear(&c);
    return res;
}
