/*
 * A deterministic DeFi market simulator for tests, benchmarks and the load generator.
 *
 * From a seed it builds a universe shaped like DeFiLlama's: protocols spread over chains whose
 * popularity is Zipf-like ("ethereum", "bsc", "arbitrum", ... then "chain-0042"), most
 * protocols on one chain and a few on dozens, heavy-tailed TVLs (log-normal: median ~$1M, a
 * handful above $10B, the top 1% holding most of the total), ~96 categories, and tokens
 * ("coingecko:ethereum", "ethereum:0x<40 hex>") with log-normal prices.
 *
 * Updates are delivered through callbacks as rta_tvl_update / rta_price_update (rta/state.h);
 * their strings are borrowed for the duration of the call. Every name produced passes the
 * ingest rules (protocol / chain slugs [a-z0-9][a-z0-9._-]{0,127}, tokens "<prefix>:<id>").
 * The same seed and options always give the same universe and the same update sequence.
 * Not thread-safe: one simulator per thread.
 */
#ifndef RTA_SIMULATOR_H
#define RTA_SIMULATOR_H

#include <stddef.h>
#include <stdint.h>

#include "rta/state.h"

typedef struct rta_sim_options {
    uint64_t seed;
    size_t protocols;  /* 0 = 6,700 */
    size_t chains;     /* 0 = 450 */
    size_t pairs;      /* protocol x chain pairs; 0 = 12,000 (clamped to what fits) */
    size_t tokens;     /* 0 = 300 */
    size_t categories; /* 0 = 96 */
} rta_sim_options;

typedef struct rta_sim rta_sim;

typedef void (*rta_sim_tvl_fn)(void *ud, const rta_tvl_update *u);
typedef void (*rta_sim_price_fn)(void *ud, const rta_price_update *u);

/* Builds a universe (opts may be NULL: all defaults, seed 0). Free with rta_sim_free. */
rta_sim *rta_sim_new(const rta_sim_options *opts);
void rta_sim_free(rta_sim *s);

/* The effective sizes after defaults and clamping (seed included). */
void rta_sim_get_options(const rta_sim *s, rta_sim_options *out);

/* Emits the whole universe once at now_ms: every pair (with name and category) and every token
 * (with symbol and confidence). Either callback may be NULL. */
void rta_sim_snapshot(rta_sim *s, int64_t now_ms, rta_sim_tvl_fn tvl_fn, rta_sim_price_fn price_fn,
                      void *ud);

/* Emits n random updates at now_ms and moves the simulated market: ~70% TVL updates (geometric
 * random walk, small sigma, occasional jumps of 5..30%), ~30% price updates (more volatile).
 * name / category / symbol are NULL (unchanged). */
void rta_sim_step(rta_sim *s, size_t n, int64_t now_ms, rta_sim_tvl_fn tvl_fn,
                  rta_sim_price_fn price_fn, void *ud);

/* Emits back-dated points for every pair and token at now_ms - span_ms, then every step_ms,
 * strictly before now_ms; each series is a random walk ending near its current value.
 * Series are emitted one after the other, each in timestamp order (what rta_state_restore_*
 * requires). Does not move the current market. step_ms must be > 0. */
void rta_sim_history(rta_sim *s, int64_t now_ms, int64_t span_ms, int64_t step_ms,
                     rta_sim_tvl_fn tvl_fn, rta_sim_price_fn price_fn, void *ud);

#endif
