/*
 * Parsing and validation of POST /v1/ingest bodies:
 *
 *   {"tvl":[{"protocol","chain","tvl","timestamp"?,"name"?,"category"?}],
 *    "prices":[{"token","price","timestamp"?,"confidence"?,"symbol"?}]}
 *
 * All-or-nothing: when any item is invalid nothing is accepted and every problem is reported
 * as {"path":"$.tvl[3].tvl","rule":"non_negative","message":"..."}.
 *
 * Rules (documented in docs/api.md):
 *  - unknown top-level or item fields: rule "unknown_field"
 *  - protocol / chain: lower-case slug [a-z0-9][a-z0-9._-]{0,127} ("slug")
 *  - token: "<prefix>:<id>", prefix [a-z0-9-]{1,32}, id 1..200 printable non-space ("token")
 *  - tvl: finite number >= 0 and <= 1e15 ("finite", "non_negative", "max")
 *  - price: finite number > 0 and <= 1e12 ("positive", "max")
 *  - timestamp: Unix seconds (number) or ISO-8601 string with zone; not before 2015-01-01,
 *    not more than 300 s in the future ("timestamp", "future", "too_old"); default: now
 *  - confidence: 0..1 ("range"); name/symbol: string 1..200; category: string 1..64
 *  - at most max_items items in total ("batch_too_large", path "$")
 *  - both arrays empty or absent: rule "empty" at "$"
 */
#ifndef RTA_INGEST_H
#define RTA_INGEST_H

#include <jansson.h>
#include <stddef.h>

#include "rta/state.h"

typedef struct rta_ingest_batch {
    rta_tvl_update *tvl; /* strings point into the parsed json_t: keep it alive */
    size_t ntvl;
    rta_price_update *prices;
    size_t nprices;
} rta_ingest_batch;

/* Returns 0 and fills out, or -1 and sets *errors to a new JSON array of
 * {path, rule, message} (at most 100 entries; the caller owns it). now_ms is the default
 * timestamp and the reference for "future". */
int rta_ingest_parse(const json_t *body, size_t max_items, int64_t now_ms, rta_ingest_batch *out,
                     json_t **errors);
void rta_ingest_batch_free(rta_ingest_batch *b);

/* Validators shared with other modules (query filters, subscriptions, alert rules). */
int rta_valid_slug(const char *s);
int rta_valid_token(const char *s);

#endif
