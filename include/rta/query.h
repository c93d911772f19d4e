/*
 * The advanced query engine behind POST /v1/query/advanced (spec 2.3.2).
 *
 * Request:
 *   {"filters":{"protocols":[..],"chains":[..],"categories":[..],
 *               "tvl_range":{"min","max"},"change_24h":{"min","max"}},
 *    "aggregations":[{"field":"tvl"|"change_1h"|"change_24h"|"change_7d",
 *                     "operation":"sum"|"avg"|"min"|"max"|"count",
 *                     "group_by":"chain"|"protocol"|"category"|"none"}],
 *    "sort":{"field":"tvl"|"change_1h"|"change_24h"|"change_7d"|"protocol"|"chain"|"name"|
 *            "category"|"updatedAt","order":"asc"|"desc"},
 *    "limit":1..1000 (default 100), "offset":0..1000000 (default 0)}
 * Every part is optional. Unknown fields, wrong types, min > max, out-of-range limit/offset and
 * unknown enum values are errors naming the JSON path ("$.filters.tvl_range.min").
 * change_* are fractions (0.05 = 5%); rows whose change is unknown never match a change filter.
 *
 * Rows are protocol x chain pairs:
 *   {protocol, name, chain, category, tvl, change_1h, change_24h, change_7d, updatedAt}
 * (unknown changes are null). Aggregations:
 *   {"field","operation","group_by","groups":[{"key":"ethereum","value":n,"count":k}]}
 * over all matching rows (not just the returned page); group_by "none" gives one group
 * with key null. Groups are sorted by value descending.
 */
#ifndef RTA_QUERY_H
#define RTA_QUERY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rta/buf.h"
#include "rta/state.h"

#define RTA_QUERY_MAX_LIST 1000 /* entries in protocols/chains/categories filters */
#define RTA_QUERY_MAX_AGGS 16
#define RTA_QUERY_MAX_LIMIT 1000

typedef struct rta_query rta_query; /* opaque, parsed and validated */

/* Parses and validates. Returns a new query, or NULL and *errors = JSON array of
 * {path, rule, message} (caller owns). */
rta_query *rta_query_parse(const json_t *body, json_t **errors);
void rta_query_free(rta_query *q);

/* Canonical text of the query (same meaning -> same text: lists sorted and de-duplicated,
 * defaults filled). Borrowed; lives as long as q. Used as the cache key. */
const char *rta_query_canonical(const rta_query *q);

/* Runs the query over the state as of now_ms. Returns a new object
 * {"data":[rows], "aggregations":[..], "meta":{"total":n,"returned":k}}; the caller adds
 * cached / dataVersion / tookMs. Builds a throw-away context: see rta_query_exec_ctx. */
json_t *rta_query_exec(const rta_query *q, const rta_state *st, int64_t now_ms);

/* Execution context: dense mirrors of the state (pair values, slug/chain ranks, categories,
 * memoized changes, written rows) that make repeated scans cheap. Only the pairs the state's
 * journal names as touched since the last query are re-read, and a change is recomputed only
 * when its pair was touched or its window edge reached a new history point, so between
 * updates a query reads only the context. Use one context per state, on the
 * state's thread, and free it before (or with) the state. */
typedef struct rta_query_ctx rta_query_ctx;

rta_query_ctx *rta_query_ctx_new(void);
void rta_query_ctx_free(rta_query_ctx *c);

/* rta_query_exec with a long-lived context (the fast path for a server). */
json_t *rta_query_exec_ctx(const rta_query *q, const rta_state *st, rta_query_ctx *ctx,
                           int64_t now_ms);

/* The fast path for a server: the same result as json_dumps(rta_query_exec_ctx(...),
 * JSON_COMPACT | JSON_PRESERVE_ORDER), byte for byte, appended to out without building jansson
 * objects (rows are written once and reused from the context while unchanged). Returns 0, or
 * -1 when out hit its maximum (out then holds a partial text). */
int rta_query_exec_text(const rta_query *q, const rta_state *st, rta_query_ctx *ctx, int64_t now_ms,
                        rta_dbuf *out);

/* ---- result cache: canonical query + data version -> encoded body ---- */
typedef struct rta_query_cache rta_query_cache;

rta_query_cache *rta_query_cache_new(size_t max_entries, size_t max_bytes);
void rta_query_cache_free(rta_query_cache *c);
/* Returns the cached JSON text (borrowed until the next put) or NULL. */
const char *rta_query_cache_get(rta_query_cache *c, const char *canonical, uint64_t version,
                                size_t *len);
/* Stores a copy; evicts least recently used entries to stay within bounds. */
void rta_query_cache_put(rta_query_cache *c, const char *canonical, uint64_t version,
                         const char *body, size_t len);
size_t rta_query_cache_count(const rta_query_cache *c);

#endif
