/* Unit tests for src/sim: determinism, sizes, heavy-tailed TVLs, valid names, updates and
 * back-dated history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uthash.h>

#include "rta/ingest.h"
#include "rta/simulator.h"
#include "rta/state.h"
#include "rta/util.h"

#define NOW 1790000000000LL

/* FNV-1a over everything the callbacks see. */
typedef struct {
    uint64_t h;
    size_t ntvl, nprice;
    size_t named, symbols;
    int bad;
    int64_t min_ts, max_ts;
} digest;

static void mix(digest *d, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        d->h = (d->h ^ b[i]) * 0x100000001b3ULL;
}

static void mix_str(digest *d, const char *s)
{
    if (s)
        mix(d, s, strlen(s) + 1);
    else
        mix(d, "\xff", 1);
}

static void note_ts(digest *d, int64_t ts)
{
    if (ts < d->min_ts)
        d->min_ts = ts;
    if (ts > d->max_ts)
        d->max_ts = ts;
}

static void dig_tvl(void *ud, const rta_tvl_update *u)
{
    digest *d = ud;
    mix_str(d, u->protocol);
    mix_str(d, u->chain);
    mix_str(d, u->name);
    mix_str(d, u->category);
    mix(d, &u->tvl, sizeof u->tvl);
    mix(d, &u->ts_ms, sizeof u->ts_ms);
    d->ntvl++;
    d->named += u->name != NULL;
    if (!rta_valid_slug(u->protocol) || !rta_valid_slug(u->chain) || !isfinite(u->tvl) ||
        u->tvl < 0 || u->tvl > 1e15)
        d->bad++;
    if (u->category && (strlen(u->category) < 1 || strlen(u->category) > 64))
        d->bad++;
    note_ts(d, u->ts_ms);
}

static void dig_price(void *ud, const rta_price_update *u)
{
    digest *d = ud;
    mix_str(d, u->token);
    mix_str(d, u->symbol);
    mix(d, &u->price, sizeof u->price);
    mix(d, &u->confidence, sizeof u->confidence);
    d->nprice++;
    d->symbols += u->symbol != NULL;
    if (!rta_valid_token(u->token) || !isfinite(u->price) || u->price <= 0 || u->price > 1e12 ||
        !u->has_confidence || u->confidence < 0 || u->confidence > 1)
        d->bad++;
    note_ts(d, u->ts_ms);
}

static digest run_digest(uint64_t seed, size_t steps)
{
    rta_sim_options o = {.seed = seed, .protocols = 800, .chains = 60, .pairs = 1500, .tokens = 50};
    rta_sim *s = rta_sim_new(&o);
    digest d = {.h = 0xcbf29ce484222325ULL, .min_ts = INT64_MAX, .max_ts = INT64_MIN};
    rta_sim_snapshot(s, NOW, dig_tvl, dig_price, &d);
    rta_sim_step(s, steps, NOW + 1000, dig_tvl, dig_price, &d);
    rta_sim_history(s, NOW, 3600000, 600000, dig_tvl, dig_price, &d);
    rta_sim_free(s);
    return d;
}

static void test_deterministic(void **state)
{
    (void)state;
    digest a = run_digest(42, 5000), b = run_digest(42, 5000), c = run_digest(43, 5000);
    assert_int_equal(a.h, b.h);
    assert_int_equal(a.ntvl, b.ntvl);
    assert_true(a.h != c.h);
    assert_int_equal(a.bad, 0);
    assert_int_equal(c.bad, 0);
}

/* ---- the default universe ---- */

typedef struct pkey {
    UT_hash_handle hh;
    double tvl;
    size_t nchains;
    char key[];
} pkey;

typedef struct {
    pkey *pairs, *protocols, *chains, *categories, *tokens;
    size_t n, bad_token_shape;
} universe;

static pkey *bump(pkey **set, const char *key)
{
    pkey *e = NULL;
    HASH_FIND_STR(*set, key, e);
    if (!e) {
        size_t n = strlen(key);
        e = calloc(1, sizeof *e + n + 1);
        memcpy(e->key, key, n + 1);
        HASH_ADD_STR(*set, key, e);
    }
    return e;
}

static void set_free(pkey **set)
{
    pkey *e, *t;
    HASH_ITER(hh, *set, e, t)
    {
        HASH_DEL(*set, e);
        free(e);
    }
}

static void uni_tvl(void *ud, const rta_tvl_update *u)
{
    universe *w = ud;
    char k[300];
    snprintf(k, sizeof k, "%s\n%s", u->protocol, u->chain);
    bump(&w->pairs, k)->nchains++;
    pkey *p = bump(&w->protocols, u->protocol);
    p->tvl += u->tvl;
    p->nchains++;
    bump(&w->chains, u->chain)->nchains++;
    bump(&w->categories, u->category);
    w->n++;
}

static int is_hex40(const char *s)
{
    if (strncmp(s, "0x", 2) != 0 || strlen(s) != 42)
        return 0;
    for (const char *p = s + 2; *p; p++)
        if (!strchr("0123456789abcdef", *p))
            return 0;
    return 1;
}

static void uni_price(void *ud, const rta_price_update *u)
{
    universe *w = ud;
    bump(&w->tokens, u->token);
    const char *colon = strchr(u->token, ':');
    if (!colon || !rta_valid_token(u->token) ||
        (strncmp(u->token, "coingecko:", 10) != 0 && !is_hex40(colon + 1)))
        w->bad_token_shape++;
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static void test_default_universe(void **state)
{
    (void)state;
    rta_sim *s = rta_sim_new(&(rta_sim_options){.seed = 1});
    rta_sim_options o;
    rta_sim_get_options(s, &o);
    assert_int_equal(o.protocols, 6700);
    assert_int_equal(o.chains, 450);
    assert_int_equal(o.pairs, 12000);
    assert_int_equal(o.tokens, 300);
    assert_int_equal(o.categories, 96);

    universe w = {0};
    rta_sim_snapshot(s, NOW, uni_tvl, uni_price, &w);
    assert_int_equal(w.n, 12000);
    assert_int_equal(HASH_COUNT(w.pairs), 12000); /* no duplicate pair */
    assert_int_equal(HASH_COUNT(w.protocols), 6700);
    assert_int_equal(HASH_COUNT(w.tokens), 300);
    assert_int_equal(w.bad_token_shape, 0);
    assert_true(HASH_COUNT(w.chains) > 100 && HASH_COUNT(w.chains) <= 450);
    assert_true(HASH_COUNT(w.categories) > 48 && HASH_COUNT(w.categories) <= 96);
    /* Zipf-like chains: ethereum is the most used chain. */
    pkey *eth = NULL, *e, *t;
    HASH_FIND_STR(w.chains, "ethereum", eth);
    assert_non_null(eth);
    HASH_ITER(hh, w.chains, e, t)
    assert_true(e->nchains <= eth->nchains);

    /* Most protocols on one chain, a few on many, none above 54. */
    size_t single = 0, maxk = 0, np = 0;
    double *tvls = calloc(6700, sizeof(double)), total = 0;
    HASH_ITER(hh, w.protocols, e, t)
    {
        single += e->nchains == 1;
        if (e->nchains > maxk)
            maxk = e->nchains;
        tvls[np++] = e->tvl;
        total += e->tvl;
    }
    assert_true(single > 6700 / 2);
    assert_true(maxk >= 20 && maxk <= 54);

    /* Heavy tail: top 1% hold more than half; median around $1M; some above $10B. */
    qsort(tvls, np, sizeof(double), cmp_desc);
    double top = 0;
    for (size_t i = 0; i < np / 100; i++)
        top += tvls[i];
    assert_true(top > 0.5 * total);
    double median = tvls[np / 2];
    assert_true(median > 2e5 && median < 5e6);
    assert_true(tvls[0] >= 1e10);

    free(tvls);
    set_free(&w.pairs);
    set_free(&w.protocols);
    set_free(&w.chains);
    set_free(&w.categories);
    set_free(&w.tokens);
    rta_sim_free(s);
}

/* ---- updates ---- */

static void test_step(void **state)
{
    (void)state;
    rta_sim *s = rta_sim_new(&(rta_sim_options){.seed = 9, .protocols = 500, .pairs = 900});
    digest d = {.h = 1, .min_ts = INT64_MAX, .max_ts = INT64_MIN};
    rta_sim_step(s, 10000, NOW, dig_tvl, dig_price, &d);
    assert_int_equal(d.ntvl + d.nprice, 10000);
    assert_true(d.ntvl > 6000 && d.ntvl < 8000);
    assert_int_equal(d.named, 0); /* steps leave metadata unchanged */
    assert_int_equal(d.symbols, 0);
    assert_int_equal(d.bad, 0);
    assert_int_equal(d.min_ts, NOW);
    assert_int_equal(d.max_ts, NOW);
    /* Callbacks are optional. */
    rta_sim_step(s, 100, NOW, NULL, NULL, NULL);
    rta_sim_free(s);
}

static void to_state(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(ud, u);
}

static void price_to_state(void *ud, const rta_price_update *u)
{
    rta_state_restore_price(ud, u);
}

typedef struct {
    char last_series[300];
    int64_t last_ts;
    int out_of_order;
    size_t n;
} order_check;

static void check_order(void *ud, const rta_tvl_update *u)
{
    order_check *c = ud;
    char k[300];
    snprintf(k, sizeof k, "%s\n%s", u->protocol, u->chain);
    if (strcmp(k, c->last_series) == 0 && u->ts_ms <= c->last_ts)
        c->out_of_order++;
    snprintf(c->last_series, sizeof c->last_series, "%s", k);
    c->last_ts = u->ts_ms;
    c->n++;
}

static void test_history(void **state)
{
    (void)state;
    rta_sim *s = rta_sim_new(
        &(rta_sim_options){.seed = 5, .protocols = 200, .chains = 30, .pairs = 300, .tokens = 20});
    digest d = {.h = 1, .min_ts = INT64_MAX, .max_ts = INT64_MIN};
    int64_t span = 7 * 86400000LL + 3600000, step = 3600000;
    rta_sim_history(s, NOW, span, step, dig_tvl, dig_price, &d);
    assert_int_equal(d.ntvl, 300 * 169);
    assert_int_equal(d.nprice, 20 * 169);
    assert_int_equal(d.bad, 0);
    assert_int_equal(d.min_ts, NOW - span);
    assert_true(d.max_ts < NOW);

    order_check oc = {.last_ts = 0};
    rta_sim_history(s, NOW, span, step, check_order, NULL, &oc);
    assert_int_equal(oc.n, 300 * 169);
    assert_int_equal(oc.out_of_order, 0);

    /* Into a real state: every pair then has 1h, 24h and 7d changes. */
    rta_state_options so = {0};
    rta_state *st = rta_state_new(&so);
    int64_t now = rta_now_ms();
    rta_sim_history(s, now, span, step, to_state, price_to_state, st);
    rta_sim_snapshot(s, now, to_state, price_to_state, st);
    assert_int_equal(st->npairs, 300);
    assert_int_equal(st->ntokens, 20);
    size_t known = 0;
    for (size_t i = 0; i < st->npairs; i++) {
        double c = rta_pair_change(st->pairs[i], 604800, now);
        if (isfinite(c)) {
            known++;
            assert_true(c > -0.99 && c < 100);
        }
    }
    assert_true(known > 290); /* only pairs with zero TVL may lack a change */
    rta_state_free(st);
    rta_sim_free(s);
}

static void test_small_and_clamped(void **state)
{
    (void)state;
    /* Asking for more pairs than protocols x chains can hold clamps; fewer than protocols
     * raises to one per protocol. */
    rta_sim *s = rta_sim_new(&(rta_sim_options){
        .seed = 3, .protocols = 10, .chains = 3, .pairs = 1000, .tokens = 1, .categories = 2});
    rta_sim_options o;
    rta_sim_get_options(s, &o);
    assert_int_equal(o.pairs, 30);
    universe w = {0};
    rta_sim_snapshot(s, NOW, uni_tvl, uni_price, &w);
    assert_int_equal(HASH_COUNT(w.pairs), 30);
    rta_sim_free(s);
    set_free(&w.pairs);
    set_free(&w.protocols);
    set_free(&w.chains);
    set_free(&w.categories);
    set_free(&w.tokens);

    s = rta_sim_new(&(rta_sim_options){.seed = 3, .protocols = 10, .pairs = 2});
    rta_sim_get_options(s, &o);
    assert_int_equal(o.pairs, 10);
    rta_sim_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_default_universe),
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_small_and_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
