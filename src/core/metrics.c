/*
 * Prometheus metrics registry and text exposition (see rta/metrics.h).
 *
 * One global registry, used from the loop thread only. Families live in a uthash table by name
 * plus a list in registration order; each family keeps its series in a uthash table by label
 * string plus a list in creation order, so rendering is stable and lookups are O(1). Series
 * are individually allocated and never moved, which is what makes cached pointers safe.
 * Histograms store per-bucket counts and cumulate them at render time, so an observation costs
 * a short scan of the bounds and three adds.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "rta/log.h"
#include "rta/metrics.h"
#include "rta/util.h"

typedef enum { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM } fam_type;

struct rta_metric_series {
    rta_metric_family *fam;
    char *labels; /* "" when none */
    double value; /* counter, gauge */
    double (*fn)(void *);
    void *ud;
    double sum; /* histogram */
    uint64_t count;
    UT_hash_handle hh;
    struct rta_metric_series *next;
    uint64_t buckets[]; /* histogram: fam->nbounds non-cumulative counts */
};

struct rta_metric_family {
    char *name;
    char *help;
    fam_type type;
    size_t nbounds;
    double bounds[RTA_METRICS_MAX_BUCKETS];
    struct rta_metric_series *by_labels; /* uthash */
    struct rta_metric_series *first, *last;
    size_t nseries;
    struct rta_metric_series *overflow; /* sink past RTA_METRICS_MAX_SERIES, not rendered */
    UT_hash_handle hh;
    rta_metric_family *next;
};

static struct {
    rta_metric_family *by_name; /* uthash */
    rta_metric_family *first, *last;
} reg;

static const double default_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

static int name_valid(const char *s)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                 (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static rta_metric_family *family_get(const char *name, const char *help, fam_type type,
                                     const double *bounds, size_t nbounds)
{
    if (!name_valid(name))
        return NULL;
    rta_metric_family *f = NULL;
    HASH_FIND_STR(reg.by_name, name, f);
    if (f)
        return f->type == type ? f : NULL;
    f = rta_xcalloc(1, sizeof *f);
    f->name = rta_strdup(name);
    f->help = rta_strdup(help ? help : "");
    f->type = type;
    if (type == FAM_HISTOGRAM) {
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
        f->nbounds = nbounds;
    }
    HASH_ADD_KEYPTR(hh, reg.by_name, f->name, strlen(f->name), f);
    if (reg.last)
        reg.last->next = f;
    else
        reg.first = f;
    reg.last = f;
    return f;
}

/* Registers a counter family (see rta/metrics.h). */
rta_metric_family *rta_metrics_counter_family(const char *name, const char *help)
{
    return family_get(name, help, FAM_COUNTER, NULL, 0);
}

/* Registers a gauge family (see rta/metrics.h). */
rta_metric_family *rta_metrics_gauge_family(const char *name, const char *help)
{
    return family_get(name, help, FAM_GAUGE, NULL, 0);
}

/* Registers a histogram family (see rta/metrics.h). */
rta_metric_family *rta_metrics_histogram_family(const char *name, const char *help,
                                                const double *bounds, size_t nbounds)
{
    if (!bounds || nbounds == 0) {
        bounds = default_bounds;
        nbounds = RTA_ARRAY_LEN(default_bounds);
    }
    if (nbounds > RTA_METRICS_MAX_BUCKETS)
        return NULL;
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;
    }
    return family_get(name, help, FAM_HISTOGRAM, bounds, nbounds);
}

static struct rta_metric_series *series_new(rta_metric_family *f, const char *labels)
{
    size_t nb = f->type == FAM_HISTOGRAM ? f->nbounds : 0;
    struct rta_metric_series *s = rta_xcalloc(1, sizeof *s + nb * sizeof(uint64_t));
    s->fam = f;
    s->labels = rta_strdup(labels);
    return s;
}

static struct rta_metric_series *series_get(rta_metric_family *f, fam_type type, const char *labels)
{
    if (!f || f->type != type)
        return NULL;
    if (!labels)
        labels = "";
    struct rta_metric_series *s = NULL;
    HASH_FIND_STR(f->by_labels, labels, s);
    if (s)
        return s;
    if (f->nseries >= RTA_METRICS_MAX_SERIES) {
        if (!f->overflow) {
            rta_log(RTA_LOG_WARN, "metric series limit reached; further series not exported",
                    "{s:s,s:i}", "metric", f->name, "limit", RTA_METRICS_MAX_SERIES);
            f->overflow = series_new(f, "");
        }
        return f->overflow;
    }
    s = series_new(f, labels);
    HASH_ADD_KEYPTR(hh, f->by_labels, s->labels, strlen(s->labels), s);
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    f->nseries++;
    return s;
}

/* Counter series of fam (see rta/metrics.h). */
rta_counter *rta_metrics_counter(rta_metric_family *fam, const char *labels)
{
    return series_get(fam, FAM_COUNTER, labels);
}

/* Gauge series of fam (see rta/metrics.h). */
rta_gauge *rta_metrics_gauge(rta_metric_family *fam, const char *labels)
{
    return series_get(fam, FAM_GAUGE, labels);
}

/* Histogram series of fam (see rta/metrics.h). */
rta_histogram *rta_metrics_histogram(rta_metric_family *fam, const char *labels)
{
    return series_get(fam, FAM_HISTOGRAM, labels);
}

/* Adds v (>= 0) to a counter. */
void rta_counter_add(rta_counter *c, double v)
{
    if (c && v >= 0)
        c->value += v;
}

/* Current value of a counter (0 for NULL). */
double rta_counter_value(const rta_counter *c)
{
    return c ? c->value : 0;
}

/* Sets a gauge (ignored for computed gauges). */
void rta_gauge_set(rta_gauge *g, double v)
{
    if (g && !g->fn)
        g->value = v;
}

/* Adds v to a gauge (ignored for computed gauges). */
void rta_gauge_add(rta_gauge *g, double v)
{
    if (g && !g->fn)
        g->value += v;
}

/* Current value of a gauge, computed now for callback gauges (0 for NULL). */
double rta_gauge_value(const rta_gauge *g)
{
    if (!g)
        return 0;
    return g->fn ? g->fn(g->ud) : g->value;
}

/* Makes a computed gauge (see rta/metrics.h). */
rta_gauge *rta_metrics_gauge_fn(rta_metric_family *fam, const char *labels, double (*fn)(void *),
                                void *ud)
{
    rta_gauge *g = series_get(fam, FAM_GAUGE, labels);
    if (g && g != fam->overflow) {
        g->fn = fn;
        g->ud = ud;
    }
    return g;
}

/* Records one observation (NaN ignored). */
void rta_histogram_observe(rta_histogram *h, double v)
{
    if (!h || isnan(v))
        return;
    const rta_metric_family *f = h->fam;
    for (size_t i = 0; i < f->nbounds; i++) {
        if (v <= f->bounds[i]) {
            h->buckets[i]++;
            break;
        }
    }
    h->sum += v;
    h->count++;
}

/* Shortest of %.15g / %.17g that reads back exactly; Prometheus spellings for the rest. */
static void fmt_double(double v, char out[40])
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, 40, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 40, "%.17g", v);
    }
}

/* Render state: the first failed append sticks. */
typedef struct {
    rta_dbuf *out;
    int err;
} render_ctx;

static void put(render_ctx *r, const char *s)
{
    if (!r->err && rta_dbuf_puts(r->out, s) != 0)
        r->err = -1;
}

static void put_help(render_ctx *r, const char *help)
{
    for (const char *p = help; *p && !r->err; p++) {
        if (*p == '\\')
            put(r, "\\\\");
        else if (*p == '\n')
            put(r, "\\n");
        else if (rta_dbuf_append(r->out, p, 1) != 0)
            r->err = -1;
    }
}

/* name<suffix>{labels[,extra]} value\n */
static void put_sample(render_ctx *r, const rta_metric_family *f, const char *suffix,
                       const char *labels, const char *extra, const char *value)
{
    put(r, f->name);
    put(r, suffix);
    if (*labels || extra) {
        put(r, "{");
        put(r, labels);
        if (extra) {
            if (*labels)
                put(r, ",");
            put(r, extra);
        }
        put(r, "}");
    }
    put(r, " ");
    put(r, value);
    put(r, "\n");
}

static void render_histogram(render_ctx *r, const rta_metric_family *f,
                             const struct rta_metric_series *s)
{
    char num[40], le[40], extra[64];
    uint64_t cum = 0;
    for (size_t i = 0; i < f->nbounds; i++) {
        cum += s->buckets[i];
        fmt_double(f->bounds[i], le);
        snprintf(extra, sizeof extra, "le=\"%s\"", le);
        snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
        put_sample(r, f, "_bucket", s->labels, extra, num);
    }
    snprintf(num, sizeof num, "%llu", (unsigned long long)s->count);
    put_sample(r, f, "_bucket", s->labels, "le=\"+Inf\"", num);
    fmt_double(s->sum, le);
    put_sample(r, f, "_sum", s->labels, NULL, le);
    put_sample(r, f, "_count", s->labels, NULL, num);
}

/* Appends the exposition text of all families to out (see rta/metrics.h). */
int rta_metrics_render(rta_dbuf *out)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    render_ctx r = {out, 0};
    for (const rta_metric_family *f = reg.first; f && !r.err; f = f->next) {
        put(&r, "# HELP ");
        put(&r, f->name);
        put(&r, " ");
        put_help(&r, f->help);
        put(&r, "\n# TYPE ");
        put(&r, f->name);
        put(&r, " ");
        put(&r, type_names[f->type]);
        put(&r, "\n");
        for (const struct rta_metric_series *s = f->first; s && !r.err; s = s->next) {
            char num[40];
            if (f->type == FAM_HISTOGRAM) {
                render_histogram(&r, f, s);
            } else {
                fmt_double(f->type == FAM_GAUGE ? rta_gauge_value(s) : s->value, num);
                put_sample(&r, f, "", s->labels, NULL, num);
            }
        }
    }
    return r.err;
}

/* Escapes a label value into out (see rta/metrics.h). */
int rta_metrics_escape_label(const char *value, char *out, size_t outlen)
{
    if (outlen == 0)
        return -1;
    size_t o = 0;
    for (const char *p = value ? value : ""; *p; p++) {
        char esc = 0;
        if (*p == '\\')
            esc = '\\';
        else if (*p == '"')
            esc = '"';
        else if (*p == '\n')
            esc = 'n';
        size_t need = esc ? 2 : 1;
        if (o + need + 1 > outlen) {
            out[o] = '\0';
            return -1;
        }
        if (esc) {
            out[o++] = '\\';
            out[o++] = esc;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return 0;
}

static void series_free(struct rta_metric_series *s)
{
    free(s->labels);
    free(s);
}

/* Frees the whole registry (see rta/metrics.h). */
void rta_metrics_shutdown(void)
{
    HASH_CLEAR(hh, reg.by_name); /* frees the table only; families are freed below */
    rta_metric_family *f = reg.first;
    while (f) {
        rta_metric_family *fn = f->next;
        HASH_CLEAR(hh, f->by_labels);
        for (struct rta_metric_series *s = f->first, *sn; s; s = sn) {
            sn = s->next;
            series_free(s);
        }
        if (f->overflow)
            series_free(f->overflow);
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    memset(&reg, 0, sizeof reg);
}
