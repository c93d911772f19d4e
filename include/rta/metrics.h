/*
 * Prometheus metrics: a process-wide registry of counters, gauges and histograms, rendered in
 * the text exposition format (version 0.0.4) for GET /metrics.
 *
 * A family has a name, help text and type; each family holds series told apart by a label
 * string preformatted by the caller, e.g. `route="/v1/query",status="200"` (no braces; "" or
 * NULL for none). Escaping label values is the caller's job (rta_metrics_escape_label).
 *
 * Series are created on first use and never freed before rta_metrics_shutdown(), so the
 * pointer returned for a (family, labels) pair is stable: look it up once and cache it at the
 * call site; updates are then a plain add with no lookup.
 *
 * Loop thread only: nothing here locks. Work done on other threads reports its numbers to the
 * loop (e.g. the store executor's observer) before they are recorded.
 *
 * Cardinality is bounded: a family holds at most RTA_METRICS_MAX_SERIES series. Past that,
 * lookups return the family's overflow series, which accepts updates but is never rendered
 * (a warning is logged once per family).
 */
#ifndef RTA_METRICS_H
#define RTA_METRICS_H

#include <stddef.h>

#include "rta/buf.h"

#define RTA_METRICS_MAX_SERIES 2000
#define RTA_METRICS_MAX_BUCKETS 32

typedef struct rta_metric_family rta_metric_family;
typedef struct rta_metric_series rta_counter;
typedef struct rta_metric_series rta_gauge;
typedef struct rta_metric_series rta_histogram;

/* Registers (or returns the already registered) family. name must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*. Returns NULL when the name is invalid or is already registered
 * with another type. name and help are copied. */
rta_metric_family *rta_metrics_counter_family(const char *name, const char *help);
rta_metric_family *rta_metrics_gauge_family(const char *name, const char *help);
/* bounds: strictly increasing, finite upper bounds (the +Inf bucket is implicit), at most
 * RTA_METRICS_MAX_BUCKETS; NULL/0 = the default latency buckets in seconds, 0.0001 .. 10.
 * Returns NULL on invalid bounds. An existing family keeps its original bounds. */
rta_metric_family *rta_metrics_histogram_family(const char *name, const char *help,
                                                const double *bounds, size_t nbounds);

/* The series of family with these labels, created at zero on first use. Never NULL for a
 * family of the right type (NULL only when fam is NULL or of another type). */
rta_counter *rta_metrics_counter(rta_metric_family *fam, const char *labels);
rta_gauge *rta_metrics_gauge(rta_metric_family *fam, const char *labels);
rta_histogram *rta_metrics_histogram(rta_metric_family *fam, const char *labels);

/* Counters only go up: negative or NaN amounts are ignored. NULL c is a no-op. */
void rta_counter_add(rta_counter *c, double v);
static inline void rta_counter_inc(rta_counter *c)
{
    rta_counter_add(c, 1.0);
}
double rta_counter_value(const rta_counter *c);

void rta_gauge_set(rta_gauge *g, double v);
void rta_gauge_add(rta_gauge *g, double v); /* negative to decrease */
double rta_gauge_value(const rta_gauge *g); /* calls the callback for computed gauges */

/* A gauge computed at render time by fn(ud) (e.g. open connections, queue depth). Replaces
 * any previous callback of that series; set/add on it are then ignored. Returns the gauge. */
rta_gauge *rta_metrics_gauge_fn(rta_metric_family *fam, const char *labels, double (*fn)(void *),
                                void *ud);

/* Counts v into the first bucket whose bound is >= v, and into _sum and _count. */
void rta_histogram_observe(rta_histogram *h, double v);

/* Appends the exposition text of every family (registration order, series in creation order)
 * to out. Families without series are rendered as HELP/TYPE only. 0, or -1 when out's maximum
 * was reached (out then holds a truncated text; answer 500). */
int rta_metrics_render(rta_dbuf *out);

/* Escapes a label value (\ -> \\, " -> \", newline -> \n) into out (NUL-terminated).
 * Returns 0, or -1 when it did not fit (out then holds a truncated, still valid, prefix). */
int rta_metrics_escape_label(const char *value, char *out, size_t outlen);

/* Frees every family and series: all pointers handed out become invalid. For exit and tests. */
void rta_metrics_shutdown(void);

#endif
