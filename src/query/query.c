/*
 * The advanced query engine (POST /v1/query/advanced): parsing and validation of the request
 * body into an rta_query, its canonical text (the cache key), and execution over the in-memory
 * state.
 *
 * Execution is one pass over the candidate pairs (all pairs, or only the pairs of the listed
 * protocols when a protocol filter is given). Chain and category filters are precomputed into
 * per-index marks so each row costs a few loads; change columns are computed only when a
 * filter, the sort or an aggregation needs them. Aggregations are accumulated during the pass.
 * The matching rows (pair pointer + sort key, 16 bytes each, one allocation) are then ordered:
 * a bounded heap selects the first offset+limit rows when that is small against the total,
 * otherwise everything is sorted. JSON is built only for the returned page.
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
static const char *const field_names[] = {"tvl",   "change_1h", "change_24h", "change_7d",
                                          "protocol", "chain",  "name",       "category",
                                          "updatedAt"};
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
    snprintf(out, outlen, "%s.%.64s", base, key);
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
static int parse_enum(vctx *v, const json_t *val, const char *path, const char *const *names,
                      int n, int dflt)
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
    json_object_foreach((json_t *)val, key, m) {
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
    json_object_foreach((json_t *)val, key, m) {
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
    json_array_foreach(val, i, a) {
        char base[64], p[128];
        path_index(base, sizeof base, "$.aggregations", i);
        if (!json_is_object(a)) {
            verr(v, base, "type", "must be an object {field, operation, group_by}");
            continue;
        }
        const char *key;
        const json_t *m;
        json_object_foreach((json_t *)a, key, m) {
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
    json_object_foreach((json_t *)val, key, m) {
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

static json_t *canon_list(const strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->n; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

static json_t *canon_range(const range *r)
{
    json_t *o = json_object();
    if (r->has_min)
        json_object_set_new(o, "min", json_real(r->min));
    if (r->has_max)
        json_object_set_new(o, "max", json_real(r->max));
    return o;
}

/* The canonical text: fixed key order, lists sorted and de-duplicated (empty lists dropped:
 * they mean "no filter"), defaults filled, numbers as reals printed with 17 digits. */
static char *build_canonical(const rta_query *q)
{
    json_t *root = json_object();
    json_t *f = json_object();
    if (q->protocols.n)
        json_object_set_new(f, "protocols", canon_list(&q->protocols));
    if (q->chains.n)
        json_object_set_new(f, "chains", canon_list(&q->chains));
    if (q->categories.n)
        json_object_set_new(f, "categories", canon_list(&q->categories));
    if (q->tvl.has_min || q->tvl.has_max)
        json_object_set_new(f, "tvl_range", canon_range(&q->tvl));
    if (q->change_24h.has_min || q->change_24h.has_max)
        json_object_set_new(f, "change_24h", canon_range(&q->change_24h));
    json_object_set_new(root, "filters", f);
    json_t *aggs = json_array();
    for (size_t i = 0; i < q->naggs; i++)
        json_array_append_new(aggs, json_pack("{s:s,s:s,s:s}", "field",
                                              field_names[q->aggs[i].field], "operation",
                                              op_names[q->aggs[i].op], "group_by",
                                              group_names[q->aggs[i].group]));
    json_object_set_new(root, "aggregations", aggs);
    json_object_set_new(root, "sort",
                        json_pack("{s:s,s:s}", "field", field_names[q->sort_field], "order",
                                  q->sort_desc ? "desc" : "asc"));
    json_object_set_new(root, "limit", json_integer((json_int_t)q->limit));
    json_object_set_new(root, "offset", json_integer((json_int_t)q->offset));
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!s)
        abort(); /* only on out-of-memory */
    return s;
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
    json_object_foreach((json_t *)body, key, m) {
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

/* ---------------------------------------------------------------- execution */

/* The one place changes are computed: NaN when unknown. */
static double pair_change(const rta_pair *p, int which, int64_t now_ms)
{
    return rta_pair_change(p, change_windows[which], now_ms);
}

typedef struct {
    const rta_pair *p;
    double key; /* numeric sort key (NaN = unknown, always last) */
} row;

typedef struct {
    int field;
    int desc;
} sort_ctx;

static const char *row_str(const row *r, int field)
{
    switch (field) {
    case F_PROTOCOL: return r->p->protocol->slug;
    case F_CHAIN: return r->p->chain->name;
    case F_NAME: return r->p->protocol->name;
    default: return r->p->protocol->category;
    }
}

static int field_is_string(int f)
{
    return f == F_PROTOCOL || f == F_CHAIN || f == F_NAME || f == F_CATEGORY;
}

/* < 0 when a comes before b in the result. The tie-breaker (protocol, chain) is always
 * ascending, so the order is total and pages are stable. */
static int row_cmp(const void *va, const void *vb, void *vctx_)
{
    const row *a = va, *b = vb;
    const sort_ctx *c = vctx_;
    int r;
    if (field_is_string(c->field)) {
        r = strcmp(row_str(a, c->field), row_str(b, c->field));
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
    r = strcmp(a->p->protocol->slug, b->p->protocol->slug);
    if (r)
        return r;
    return strcmp(a->p->chain->name, b->p->chain->name);
}

/* Max-heap under row_cmp: the root is the row that sorts last among the kept ones. */
static void heap_sift_down(row *h, size_t n, size_t i, const sort_ctx *c)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && row_cmp(&h[l], &h[m], (void *)c) > 0)
            m = l;
        if (r < n && row_cmp(&h[r], &h[m], (void *)c) > 0)
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
        if (row_cmp(&h[i], &h[parent], (void *)c) <= 0)
            return;
        row t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* Orders rows so that the first k are the k first rows of the full order, sorted.
 * Returns how many leading rows are valid (min(k, n)). */
static size_t order_rows(row *rows, size_t n, size_t k, const sort_ctx *c)
{
    if (k == 0)
        return 0;
    if (k >= n || k > n / 4) {
        qsort_r(rows, n, sizeof(row), row_cmp, (void *)c);
        return k < n ? k : n;
    }
    /* Bounded heap in place: rows[0..k) is the heap; scan the rest. */
    for (size_t i = 1; i < k; i++)
        heap_sift_up(rows, i, c);
    for (size_t i = k; i < n; i++) {
        if (row_cmp(&rows[i], &rows[0], (void *)c) < 0) {
            rows[0] = rows[i];
            heap_sift_down(rows, k, 0, c);
        }
    }
    qsort_r(rows, k, sizeof(row), row_cmp, (void *)c);
    return k;
}

typedef struct {
    double sum, min, max;
    size_t count;
    int32_t key; /* group index (chain / protocol / category id), -1 for none */
} acc;

typedef struct {
    int32_t *slot_of; /* group index -> slot + 1 (0 = none yet) */
    size_t ndomain;
    acc *slots;
    size_t nslots, cap;
} agg_state;

typedef struct cat_entry {
    const char *name; /* borrowed from a protocol */
    int32_t id;
    UT_hash_handle hh;
} cat_entry;

typedef struct {
    cat_entry *by_name;
    cat_entry **all; /* id -> entry */
    size_t n, cap;
    int32_t *of_protocol; /* protocol index -> category id + 1 (0 = not looked up) */
} cat_index;

static int32_t category_id(cat_index *ci, const rta_protocol *p)
{
    int32_t *slot = &ci->of_protocol[p->index];
    if (*slot)
        return *slot - 1;
    const char *name = p->category ? p->category : "";
    cat_entry *e = NULL;
    HASH_FIND_STR(ci->by_name, name, e);
    if (!e) {
        if (ci->n == ci->cap) {
            /* Entries are referenced by the hash: allocate them one by one, keep an id table. */
            ci->cap = ci->cap ? ci->cap * 2 : 64;
            ci->all = rta_xrealloc(ci->all, ci->cap * sizeof(cat_entry *));
        }
        e = rta_xcalloc(1, sizeof *e);
        e->name = name;
        e->id = (int32_t)ci->n;
        ci->all[ci->n++] = e;
        HASH_ADD_KEYPTR(hh, ci->by_name, e->name, strlen(e->name), e);
    }
    *slot = e->id + 1;
    return e->id;
}

static void cat_index_free(cat_index *ci)
{
    HASH_CLEAR(hh, ci->by_name);
    for (size_t i = 0; i < ci->n; i++)
        free(ci->all[i]);
    free(ci->all);
    free(ci->of_protocol);
}

static void acc_add(agg_state *a, int32_t key, double v)
{
    acc *s;
    if (key < 0) {
        s = &a->slots[0];
    } else {
        int32_t *slot = &a->slot_of[key];
        if (!*slot) {
            if (a->nslots == a->cap) {
                a->cap = a->cap ? a->cap * 2 : 16;
                a->slots = rta_xrealloc(a->slots, a->cap * sizeof(acc));
            }
            a->slots[a->nslots] = (acc){.sum = 0, .min = INFINITY, .max = -INFINITY, .key = key};
            *slot = (int32_t)++a->nslots;
        }
        s = &a->slots[*slot - 1];
    }
    if (isnan(v))
        return;
    s->sum += v;
    if (v < s->min)
        s->min = v;
    if (v > s->max)
        s->max = v;
    s->count++;
}

static double acc_value(const acc *s, int op)
{
    switch (op) {
    case OP_SUM: return s->sum;
    case OP_AVG: return s->count ? s->sum / (double)s->count : NAN;
    case OP_MIN: return s->count ? s->min : NAN;
    case OP_MAX: return s->count ? s->max : NAN;
    default: return (double)s->count;
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

static json_t *agg_result(const agg_spec *spec, const agg_state *a, const rta_state *st,
                          const cat_index *ci)
{
    group_out *g = rta_xcalloc(a->nslots ? a->nslots : 1, sizeof *g);
    for (size_t i = 0; i < a->nslots; i++) {
        const acc *s = &a->slots[i];
        g[i].s = s;
        g[i].value = acc_value(s, spec->op);
        switch (spec->group) {
        case G_CHAIN: g[i].key = st->chains[s->key]->name; break;
        case G_PROTOCOL: g[i].key = st->protocols[s->key]->slug; break;
        case G_CATEGORY: g[i].key = ci->all[s->key]->name; break;
        default: g[i].key = NULL; break;
        }
    }
    qsort(g, a->nslots, sizeof *g, group_cmp);
    json_t *groups = json_array();
    for (size_t i = 0; i < a->nslots; i++)
        json_array_append_new(groups, json_pack("{s:o,s:o,s:I}", "key",
                                                g[i].key ? json_string(g[i].key) : json_null(),
                                                "value", jnum(g[i].value), "count",
                                                (json_int_t)g[i].s->count));
    free(g);
    return json_pack("{s:s,s:s,s:s,s:o}", "field", field_names[spec->field], "operation",
                     op_names[spec->op], "group_by", group_names[spec->group], "groups", groups);
}

static json_t *row_json(const rta_pair *p, int64_t now_ms)
{
    char ts[32];
    rta_time_iso8601(p->updated_ms, ts, sizeof ts);
    const rta_protocol *pr = p->protocol;
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:s}", "protocol", pr->slug, "name",
                     pr->name ? pr->name : pr->slug, "chain", p->chain->name, "category",
                     pr->category ? pr->category : "", "tvl", jnum(p->tvl), "change_1h",
                     jnum(pair_change(p, 0, now_ms)), "change_24h",
                     jnum(pair_change(p, 1, now_ms)), "change_7d",
                     jnum(pair_change(p, 2, now_ms)), "updatedAt", ts);
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

json_t *rta_query_exec(const rta_query *q, const rta_state *st, int64_t now_ms)
{
    /* Candidate pairs: the listed protocols' pairs, or all pairs. */
    const rta_protocol **plist = NULL;
    size_t nplist = 0, ncand = st->npairs;
    if (q->protocols.n) {
        plist = rta_xcalloc(q->protocols.n, sizeof *plist);
        ncand = 0;
        for (size_t i = 0; i < q->protocols.n; i++) {
            const rta_protocol *p = rta_state_find_protocol(st, q->protocols.items[i]);
            if (p) {
                plist[nplist++] = p;
                ncand += p->npairs;
            }
        }
    }

    /* Chain filter as a mark per chain index. */
    unsigned char *chain_ok = NULL;
    if (q->chains.n) {
        chain_ok = rta_xcalloc(st->nchains ? st->nchains : 1, 1);
        for (size_t i = 0; i < q->chains.n; i++) {
            const rta_chain *c = rta_state_find_chain(st, q->chains.items[i]);
            if (c)
                chain_ok[c->index] = 1;
        }
    }

    /* Category filter as a lazily filled mark per protocol index: 0 unknown, 1 no, 2 yes. */
    unsigned char *cat_ok = NULL;
    if (q->categories.n)
        cat_ok = rta_xcalloc(st->nprotocols ? st->nprotocols : 1, 1);

    /* Which change columns are needed during the scan. */
    int need[3] = {0, 0, 0};
    if (q->change_24h.has_min || q->change_24h.has_max)
        need[1] = 1;
    if (q->sort_field >= F_CHANGE_1H && q->sort_field <= F_CHANGE_7D)
        need[q->sort_field - F_CHANGE_1H] = 1;

    agg_state aggs[RTA_QUERY_MAX_AGGS];
    memset(aggs, 0, sizeof aggs);
    cat_index ci = {0};
    int need_cat_index = 0;
    for (size_t i = 0; i < q->naggs; i++) {
        const agg_spec *s = &q->aggs[i];
        agg_state *a = &aggs[i];
        if (s->field >= F_CHANGE_1H)
            need[s->field - F_CHANGE_1H] = 1;
        switch (s->group) {
        case G_CHAIN: a->ndomain = st->nchains; break;
        case G_PROTOCOL: a->ndomain = st->nprotocols; break;
        case G_CATEGORY:
            a->ndomain = st->nprotocols; /* category ids < number of protocols */
            need_cat_index = 1;
            break;
        default:
            a->cap = a->nslots = 1;
            a->slots = rta_xcalloc(1, sizeof(acc));
            a->slots[0] = (acc){.sum = 0, .min = INFINITY, .max = -INFINITY, .key = -1};
            break;
        }
        if (s->group != G_NONE)
            a->slot_of = rta_xcalloc(a->ndomain ? a->ndomain : 1, sizeof(int32_t));
    }
    if (need_cat_index)
        ci.of_protocol = rta_xcalloc(st->nprotocols ? st->nprotocols : 1, sizeof(int32_t));

    row *rows = rta_xmalloc((ncand ? ncand : 1) * sizeof(row));
    size_t nrows = 0;
    size_t pi = 0, pj = 0; /* cursor over plist */
    for (size_t idx = 0;; idx++) {
        const rta_pair *p;
        if (plist) {
            while (pi < nplist && pj >= plist[pi]->npairs) {
                pi++;
                pj = 0;
            }
            if (pi >= nplist)
                break;
            p = plist[pi]->pairs[pj++];
        } else {
            if (idx >= st->npairs)
                break;
            p = st->pairs[idx];
        }
        if (chain_ok && !chain_ok[p->chain->index])
            continue;
        if (cat_ok) {
            const rta_protocol *pr = p->protocol;
            unsigned char *m = &cat_ok[pr->index];
            if (!*m) {
                const char *cat = pr->category ? pr->category : "";
                *m = bsearch(&cat, q->categories.items, q->categories.n, sizeof(char *),
                             cmp_str)
                         ? 2
                         : 1;
            }
            if (*m != 2)
                continue;
        }
        if ((q->tvl.has_min || q->tvl.has_max) && !in_range(&q->tvl, p->tvl))
            continue;
        double ch[3] = {NAN, NAN, NAN};
        for (int w = 0; w < 3; w++)
            if (need[w])
                ch[w] = pair_change(p, w, now_ms);
        if (need[1] && (q->change_24h.has_min || q->change_24h.has_max) &&
            !in_range(&q->change_24h, ch[1]))
            continue;

        for (size_t i = 0; i < q->naggs; i++) {
            const agg_spec *s = &q->aggs[i];
            double v = s->field == F_TVL ? p->tvl : ch[s->field - F_CHANGE_1H];
            int32_t key;
            switch (s->group) {
            case G_CHAIN: key = (int32_t)p->chain->index; break;
            case G_PROTOCOL: key = (int32_t)p->protocol->index; break;
            case G_CATEGORY: key = category_id(&ci, p->protocol); break;
            default: key = -1; break;
            }
            acc_add(&aggs[i], key, v);
        }

        row *r = &rows[nrows++];
        r->p = p;
        switch (q->sort_field) {
        case F_TVL: r->key = p->tvl; break;
        case F_CHANGE_1H:
        case F_CHANGE_24H:
        case F_CHANGE_7D: r->key = ch[q->sort_field - F_CHANGE_1H]; break;
        case F_UPDATED: r->key = (double)p->updated_ms; break;
        default: r->key = 0; break;
        }
    }

    sort_ctx sc = {.field = q->sort_field, .desc = q->sort_desc};
    size_t want = q->offset + q->limit;
    size_t have = q->offset < nrows ? order_rows(rows, nrows, want, &sc) : 0;
    json_t *data = json_array();
    for (size_t i = q->offset; i < have; i++)
        json_array_append_new(data, row_json(rows[i].p, now_ms));

    json_t *aggs_out = json_array();
    for (size_t i = 0; i < q->naggs; i++)
        json_array_append_new(aggs_out, agg_result(&q->aggs[i], &aggs[i], st, &ci));

    json_t *res = json_pack("{s:o,s:o,s:{s:I,s:I}}", "data", data, "aggregations", aggs_out,
                            "meta", "total", (json_int_t)nrows, "returned",
                            (json_int_t)json_array_size(data));

    for (size_t i = 0; i < q->naggs; i++) {
        free(aggs[i].slot_of);
        free(aggs[i].slots);
    }
    cat_index_free(&ci);
    free(rows);
    free(cat_ok);
    free(chain_ok);
    free(plist);
    return res;
}
