/*
 * Parsing and validation of POST /v1/ingest bodies into rta_tvl_update / rta_price_update
 * arrays (see rta/ingest.h for the rules). All-or-nothing: every item is checked, every problem
 * is reported with its JSON path and rule name (up to 100), and nothing is returned unless the
 * whole batch is valid. The returned updates borrow their strings from the parsed body.
 *
 * Besides the rules listed in the header, two structural rules exist: "required" (a required
 * field is missing) and "type" (the body, an array or an item has the wrong JSON type, or a
 * name/symbol/category is not a string); "length" reports a name/symbol/category of bad length.
 */
#include "rta/ingest.h"
#include "rta/util.h"
#include "rta/verr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS 100
#define MAX_TVL 1e15
#define MAX_PRICE 1e12
#define MIN_TS_MS 1420070400000LL /* 2015-01-01T00:00:00Z */
#define MAX_FUTURE_MS 300000LL

typedef struct {
    json_t *errors;
    int64_t now_ms;
} ctx;

static void add_error(ctx *c, const char *path, const char *rule, const char *message)
{
    rta_verr_add(c->errors, path, rule, message);
}

static void add_errorf(ctx *c, const char *base, const char *field, const char *rule,
                       const char *message)
{
    rta_verr_add_field(c->errors, base, field, rule, message);
}

int rta_valid_slug(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char ch = *p;
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (n == 0 ? !alnum : !(alnum || ch == '.' || ch == '_' || ch == '-'))
            return 0;
        if (n >= 128)
            return 0;
    }
    return n >= 1;
}

int rta_valid_token(const char *s)
{
    if (s == NULL)
        return 0;
    const char *colon = strchr(s, ':');
    if (colon == NULL)
        return 0;
    size_t plen = (size_t)(colon - s);
    if (plen < 1 || plen > 32)
        return 0;
    for (const char *p = s; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    size_t ilen = 0;
    for (const char *p = colon + 1; *p; p++, ilen++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || ilen >= 200)
            return 0;
    return ilen >= 1;
}

/* Timestamp field (absent = now). Returns 0 and *ms, or -1 after reporting. */
static int parse_timestamp(ctx *c, const char *base, const json_t *v, int64_t *ms)
{
    if (v == NULL) {
        *ms = c->now_ms;
        return 0;
    }
    if (json_is_number(v)) {
        double secs = json_number_value(v);
        if (!isfinite(secs) || fabs(secs) > 1e13) {
            add_errorf(c, base, "timestamp", "timestamp", "timestamp is out of range");
            return -1;
        }
        *ms = llround(secs * 1000.0);
    } else if (json_is_string(v)) {
        if (rta_time_parse_iso8601(json_string_value(v), ms) != 0) {
            add_errorf(c, base, "timestamp", "timestamp",
                       "timestamp must be Unix seconds or an ISO-8601 time with a zone");
            return -1;
        }
    } else {
        add_errorf(c, base, "timestamp", "timestamp",
                   "timestamp must be Unix seconds or an ISO-8601 time with a zone");
        return -1;
    }
    if (*ms < MIN_TS_MS) {
        add_errorf(c, base, "timestamp", "too_old", "timestamp is before 2015-01-01");
        return -1;
    }
    if (*ms > c->now_ms + MAX_FUTURE_MS) {
        add_errorf(c, base, "timestamp", "future", "timestamp is more than 300 s in the future");
        return -1;
    }
    return 0;
}

/* Optional string field of 1..maxlen bytes. Returns 0 (and *out, NULL when absent) or -1. */
static int parse_opt_string(ctx *c, const char *base, const char *field, const json_t *item,
                            size_t maxlen, const char **out)
{
    const json_t *v = json_object_get(item, field);
    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        add_errorf(c, base, field, "type", "must be a string");
        return -1;
    }
    size_t n = json_string_length(v);
    if (n < 1 || n > maxlen) {
        char msg[64];
        snprintf(msg, sizeof msg, "must be 1..%zu characters", maxlen);
        add_errorf(c, base, field, "length", msg);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* A required slug field: 0 and *out, or -1 after reporting. */
static int parse_slug(ctx *c, const char *base, const json_t *item, const char *field,
                      const char **out)
{
    const json_t *v = json_object_get(item, field);
    if (v == NULL) {
        add_errorf(c, base, field, "required", "field is required");
        return -1;
    }
    if (!json_is_string(v) || !rta_valid_slug(json_string_value(v))) {
        add_errorf(c, base, field, "slug", "must be a lower-case slug [a-z0-9][a-z0-9._-]{0,127}");
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int parse_tvl_item(ctx *c, const json_t *item, size_t i, rta_tvl_update *u)
{
    char base[64];
    snprintf(base, sizeof base, "$.tvl[%zu]", i);
    if (!json_is_object(item)) {
        add_error(c, base, "type", "item must be an object");
        return -1;
    }
    static const char *const known[] = {"protocol",  "chain", "tvl",
                                        "timestamp", "name",  "category"};
    size_t before = json_array_size(c->errors);
    rta_verr_unknown_fields(c->errors, base, item, known, RTA_ARRAY_LEN(known));
    parse_slug(c, base, item, "protocol", &u->protocol);
    parse_slug(c, base, item, "chain", &u->chain);

    const json_t *v = json_object_get(item, "tvl");
    if (v == NULL) {
        add_errorf(c, base, "tvl", "required", "field is required");
    } else if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        add_errorf(c, base, "tvl", "finite", "tvl must be a finite number");
    } else if (json_number_value(v) < 0) {
        add_errorf(c, base, "tvl", "non_negative", "tvl must be >= 0");
    } else if (json_number_value(v) > MAX_TVL) {
        add_errorf(c, base, "tvl", "max", "tvl must be <= 1e15");
    } else {
        u->tvl = json_number_value(v);
    }
    parse_timestamp(c, base, json_object_get(item, "timestamp"), &u->ts_ms);
    parse_opt_string(c, base, "name", item, 200, &u->name);
    parse_opt_string(c, base, "category", item, 64, &u->category);
    return json_array_size(c->errors) == before ? 0 : -1;
}

static int parse_price_item(ctx *c, const json_t *item, size_t i, rta_price_update *u)
{
    char base[64];
    snprintf(base, sizeof base, "$.prices[%zu]", i);
    if (!json_is_object(item)) {
        add_error(c, base, "type", "item must be an object");
        return -1;
    }
    static const char *const known[] = {"token", "price", "timestamp", "confidence", "symbol"};
    size_t before = json_array_size(c->errors);
    rta_verr_unknown_fields(c->errors, base, item, known, RTA_ARRAY_LEN(known));

    const json_t *v = json_object_get(item, "token");
    if (v == NULL)
        add_errorf(c, base, "token", "required", "field is required");
    else if (!json_is_string(v) || !rta_valid_token(json_string_value(v)))
        add_errorf(c, base, "token", "token", "must be \"<prefix>:<id>\", e.g. coingecko:bitcoin");
    else
        u->token = json_string_value(v);

    v = json_object_get(item, "price");
    if (v == NULL)
        add_errorf(c, base, "price", "required", "field is required");
    else if (!json_is_number(v) || !isfinite(json_number_value(v)))
        add_errorf(c, base, "price", "finite", "price must be a finite number");
    else if (json_number_value(v) <= 0)
        add_errorf(c, base, "price", "positive", "price must be > 0");
    else if (json_number_value(v) > MAX_PRICE)
        add_errorf(c, base, "price", "max", "price must be <= 1e12");
    else
        u->price = json_number_value(v);

    parse_timestamp(c, base, json_object_get(item, "timestamp"), &u->ts_ms);

    v = json_object_get(item, "confidence");
    if (v != NULL) {
        double conf = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(conf >= 0.0 && conf <= 1.0)) {
            add_errorf(c, base, "confidence", "range", "confidence must be a number in 0..1");
        } else {
            u->confidence = conf;
            u->has_confidence = 1;
        }
    }
    if (!u->has_confidence)
        u->confidence = 1.0;
    parse_opt_string(c, base, "symbol", item, 200, &u->symbol);
    return json_array_size(c->errors) == before ? 0 : -1;
}

/* The array under key (NULL when absent); -1 after reporting when it is not an array. */
static int get_array(ctx *c, const json_t *body, const char *key, const json_t **out)
{
    const json_t *v = json_object_get(body, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v)) {
        char path[32];
        snprintf(path, sizeof path, "$.%s", key);
        add_error(c, path, "type", "must be an array");
        return -1;
    }
    *out = v;
    return 0;
}

int rta_ingest_parse(const json_t *body, size_t max_items, int64_t now_ms, rta_ingest_batch *out,
                     json_t **errors)
{
    ctx c = {.errors = json_array(), .now_ms = now_ms};
    memset(out, 0, sizeof *out);
    *errors = NULL;
    int rc = -1;

    if (!json_is_object(body)) {
        add_error(&c, "$", "type", "body must be a JSON object");
        goto out;
    }
    static const char *const known[] = {"tvl", "prices"};
    rta_verr_unknown_fields(c.errors, "$", body, known, RTA_ARRAY_LEN(known));
    const json_t *tvl, *prices;
    int bad_arrays = get_array(&c, body, "tvl", &tvl);
    bad_arrays |= get_array(&c, body, "prices", &prices);
    if (bad_arrays)
        goto out;

    size_t ntvl = json_array_size(tvl), nprices = json_array_size(prices);
    if (ntvl + nprices == 0) {
        add_error(&c, "$", "empty", "no tvl or prices items");
        goto out;
    }
    if (ntvl + nprices > max_items) {
        char msg[96];
        snprintf(msg, sizeof msg, "at most %zu items per batch", max_items);
        add_error(&c, "$", "batch_too_large", msg);
        goto out;
    }

    out->tvl = ntvl ? rta_xcalloc(ntvl, sizeof *out->tvl) : NULL;
    out->prices = nprices ? rta_xcalloc(nprices, sizeof *out->prices) : NULL;
    out->ntvl = ntvl;
    out->nprices = nprices;
    for (size_t i = 0; i < ntvl && json_array_size(c.errors) < MAX_ERRORS; i++)
        parse_tvl_item(&c, json_array_get(tvl, i), i, &out->tvl[i]);
    for (size_t i = 0; i < nprices && json_array_size(c.errors) < MAX_ERRORS; i++)
        parse_price_item(&c, json_array_get(prices, i), i, &out->prices[i]);
    if (json_array_size(c.errors) == 0)
        rc = 0;

out:
    if (rc == 0) {
        json_decref(c.errors);
    } else {
        rta_ingest_batch_free(out);
        *errors = c.errors;
    }
    return rc;
}

void rta_ingest_batch_free(rta_ingest_batch *b)
{
    free(b->tvl);
    free(b->prices);
    memset(b, 0, sizeof *b);
}
