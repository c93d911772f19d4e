/* Unit tests for src/engine/state.c: market state, totals, change detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "rta/state.h"

#define T0_MS 1764201600000LL /* 2025-11-27T00:00:00Z */

typedef struct {
    rta_event *ev[4];
    size_t n;
} outbox;

static void outbox_clear(outbox *o)
{
    for (size_t i = 0; i < o->n; i++)
        rta_event_unref(o->ev[i]);
    o->n = 0;
}

static rta_apply_result tvl(rta_state *st, outbox *o, const char *proto, const char *chain,
                            double v, int64_t ts_ms)
{
    outbox_clear(o);
    rta_tvl_update u = {.protocol = proto, .chain = chain, .tvl = v, .ts_ms = ts_ms};
    return rta_state_apply_tvl(st, &u, "ingest", o->ev, 2, &o->n);
}

static rta_apply_result price(rta_state *st, outbox *o, const char *token, double v, int64_t ts_ms)
{
    outbox_clear(o);
    rta_price_update u = {.token = token, .price = v, .ts_ms = ts_ms};
    return rta_state_apply_price(st, &u, "simulator", o->ev, 2, &o->n);
}

static int has_tag(const rta_event *e, const char *tag)
{
    size_t i;
    json_t *t;
    json_array_foreach(e->tags, i, t) if (strcmp(json_string_value(t), tag) == 0) return 1;
    return 0;
}

static void test_new_protocol_then_values(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    uint64_t v0 = st->version;

    /* Brand-new protocol: protocol_update only. */
    assert_int_equal(tvl(st, &o, "aave", "ethereum", 1000, T0_MS), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.ev[0]->type, RTA_EVENT_PROTOCOL_UPDATE);
    assert_string_equal(o.ev[0]->protocol, "aave");
    assert_string_equal(o.ev[0]->chain, "ethereum");
    assert_true(has_tag(o.ev[0], "new_protocol"));
    json_t *added = json_object_get(o.ev[0]->update, "chains_added");
    assert_int_equal(json_array_size(added), 1);
    assert_string_equal(json_string_value(json_array_get(added, 0)), "ethereum");
    assert_true(st->version > v0);

    rta_protocol *p = rta_state_find_protocol(st, "aave");
    assert_non_null(p);
    assert_string_equal(p->name, "aave"); /* slug when never given */
    assert_string_equal(p->category, "");
    assert_true(p->total_tvl == 1000);

    /* Next value: tvl_change with the change as a fraction. */
    assert_int_equal(tvl(st, &o, "aave", "ethereum", 1050, T0_MS + 1000), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 1);
    rta_event *e = o.ev[0];
    assert_int_equal(e->type, RTA_EVENT_TVL_CHANGE);
    assert_true(e->has_previous);
    assert_true(e->previous == 1000);
    assert_true(e->current == 1050);
    assert_true(fabs(e->change - 0.05) < 1e-12);
    assert_true(e->confidence == 1.0);
    assert_string_equal(e->source, "ingest");
    assert_int_equal(e->data_ts_ms, T0_MS + 1000);
    assert_true(has_tag(e, "tvl"));
    assert_false(has_tag(e, "large_move"));

    /* A 20% move is tagged large_move. */
    tvl(st, &o, "aave", "ethereum", 1260, T0_MS + 2000);
    assert_int_equal(o.n, 1);
    assert_true(has_tag(o.ev[0], "large_move"));
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_previous_zero_unchanged_stale(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    tvl(st, &o, "p", "a", 0, T0_MS);
    /* From 0: event with no change fraction. */
    assert_int_equal(tvl(st, &o, "p", "a", 10, T0_MS + 120000), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 1);
    assert_true(o.ev[0]->has_previous);
    assert_true(o.ev[0]->previous == 0);
    assert_true(isnan(o.ev[0]->change));

    /* Same value: nothing, no version bump. */
    uint64_t v = st->version;
    assert_int_equal(tvl(st, &o, "p", "a", 10, T0_MS + 180000), RTA_APPLY_UNCHANGED);
    assert_int_equal(o.n, 0);
    assert_int_equal(st->version, v);

    /* Older than current: history only. */
    assert_int_equal(tvl(st, &o, "p", "a", 99, T0_MS + 60000), RTA_APPLY_STALE);
    assert_int_equal(o.n, 0);
    assert_int_equal(st->version, v);
    rta_pair *pr = rta_state_find_pair(st, "p", "a");
    assert_true(pr->tvl == 10);
    assert_int_equal(pr->data_ts_ms, T0_MS + 180000);
    double hv;
    int64_t t0 = T0_MS / 1000;
    assert_int_equal(rta_history_value_at(&pr->hist, t0 + 90, &hv), 0);
    assert_true(hv == 99); /* the stale point took its place in history */
    assert_int_equal(rta_history_value_at(&pr->hist, t0 + 30, &hv), 0);
    assert_true(hv == 0);
    assert_int_equal(rta_history_value_at(&pr->hist, t0 + 120, &hv), 0);
    assert_true(hv == 10);
    assert_true(rta_state_find_protocol(st, "p")->total_tvl == 10); /* totals ignore stale */
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_min_change(void **state)
{
    (void)state;
    rta_state_options opts = {.min_change = 0.01};
    rta_state *st = rta_state_new(&opts);
    outbox o = {0};
    tvl(st, &o, "p", "a", 1000, T0_MS);
    uint64_t v = st->version;
    /* 0.5%: value and version move, no event. */
    assert_int_equal(tvl(st, &o, "p", "a", 1005, T0_MS + 1000), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 0);
    assert_true(st->version > v);
    assert_true(rta_state_find_pair(st, "p", "a")->tvl == 1005);
    /* 2% from the current value: event, previous = current value. */
    tvl(st, &o, "p", "a", 1025.1, T0_MS + 2000);
    assert_int_equal(o.n, 1);
    assert_true(o.ev[0]->previous == 1005);
    /* Same for prices. */
    price(st, &o, "coingecko:bitcoin", 100, T0_MS);
    assert_int_equal(o.n, 0); /* first price: no event */
    price(st, &o, "coingecko:bitcoin", 100.5, T0_MS + 1000);
    assert_int_equal(o.n, 0);
    price(st, &o, "coingecko:bitcoin", 90, T0_MS + 2000);
    assert_int_equal(o.n, 1);
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_new_chain_and_metadata(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    rta_tvl_update u = {.protocol = "aave",
                        .chain = "ethereum",
                        .tvl = 100,
                        .ts_ms = T0_MS,
                        .name = "Aave",
                        .category = "Lending"};
    rta_state_apply_tvl(st, &u, "ingest", o.ev, 2, &o.n);
    assert_int_equal(o.n, 1);
    assert_string_equal(json_string_value(json_object_get(o.ev[0]->update, "name")), "Aave");
    rta_protocol *p = rta_state_find_protocol(st, "aave");
    assert_string_equal(p->name, "Aave");
    assert_string_equal(p->category, "Lending");

    /* New chain for an existing protocol: protocol_update then tvl_change without previous. */
    assert_int_equal(tvl(st, &o, "aave", "base", 50, T0_MS + 1000), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.ev[0]->type, RTA_EVENT_PROTOCOL_UPDATE);
    assert_string_equal(o.ev[0]->chain, "base");
    assert_true(has_tag(o.ev[0], "new_chain"));
    json_t *added = json_object_get(o.ev[0]->update, "chains_added");
    assert_string_equal(json_string_value(json_array_get(added, 0)), "base");
    assert_null(json_object_get(o.ev[0]->update, "name"));
    assert_int_equal(o.ev[1]->type, RTA_EVENT_TVL_CHANGE);
    assert_false(o.ev[1]->has_previous);
    assert_true(isnan(o.ev[1]->change));
    assert_true(o.ev[1]->current == 50);
    assert_int_equal(p->npairs, 2);

    /* Category change alone (value unchanged): protocol_update with chain "". */
    outbox_clear(&o);
    u = (rta_tvl_update){
        .protocol = "aave", .chain = "base", .tvl = 50, .ts_ms = T0_MS + 2000, .category = "CDP"};
    uint64_t v = st->version;
    assert_int_equal(rta_state_apply_tvl(st, &u, "ingest", o.ev, 2, &o.n), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.ev[0]->type, RTA_EVENT_PROTOCOL_UPDATE);
    assert_string_equal(o.ev[0]->chain, "");
    assert_string_equal(json_string_value(json_object_get(o.ev[0]->update, "category")), "CDP");
    assert_null(json_object_get(o.ev[0]->update, "name"));
    assert_null(json_object_get(o.ev[0]->update, "chains_added"));
    assert_true(st->version > v);
    assert_string_equal(p->category, "CDP");
    /* Same metadata again: nothing. */
    outbox_clear(&o);
    assert_int_equal(rta_state_apply_tvl(st, &u, "ingest", o.ev, 2, &o.n), RTA_APPLY_UNCHANGED);
    assert_int_equal(o.n, 0);

    /* max_out = 1 keeps the first event and frees the rest (ASan checks). */
    rta_event *one[1];
    size_t n1;
    rta_tvl_update w = {.protocol = "aave", .chain = "arbitrum", .tvl = 5, .ts_ms = T0_MS};
    rta_state_apply_tvl(st, &w, "ingest", one, 1, &n1);
    assert_int_equal(n1, 1);
    assert_int_equal(one[0]->type, RTA_EVENT_PROTOCOL_UPDATE);
    rta_event_unref(one[0]);
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_totals(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    tvl(st, &o, "aave", "ethereum", 100, T0_MS);
    tvl(st, &o, "aave", "base", 20, T0_MS);
    tvl(st, &o, "uniswap", "ethereum", 300, T0_MS);
    tvl(st, &o, "aave", "ethereum", 80, T0_MS + 1000);
    assert_true(rta_state_find_protocol(st, "aave")->total_tvl == 100);
    assert_true(rta_state_find_protocol(st, "uniswap")->total_tvl == 300);
    rta_chain *eth = rta_state_find_chain(st, "ethereum");
    assert_true(eth->total_tvl == 380);
    assert_int_equal(eth->nprotocols, 2);
    assert_true(rta_state_find_chain(st, "base")->total_tvl == 20);
    assert_int_equal(st->nprotocols, 2);
    assert_int_equal(st->npairs, 3);
    assert_int_equal(st->nchains, 2);
    assert_null(rta_state_find_pair(st, "uniswap", "base"));
    assert_null(rta_state_find_chain(st, "solana"));
    /* Arrays and indexes agree. */
    for (size_t i = 0; i < st->npairs; i++)
        assert_ptr_equal(
            rta_state_find_pair(st, st->pairs[i]->protocol->slug, st->pairs[i]->chain->name),
            st->pairs[i]);
    for (size_t i = 0; i < st->nprotocols; i++)
        assert_int_equal(st->protocols[i]->index, i);
    /* Many protocols on one chain: the incremental sum stays right. */
    char slug[32];
    double want = eth->total_tvl;
    for (int i = 0; i < 500; i++) {
        snprintf(slug, sizeof slug, "p%d", i);
        tvl(st, &o, slug, "ethereum", i * 1.5, T0_MS);
        want += i * 1.5;
        tvl(st, &o, slug, "ethereum", i * 2.0, T0_MS + 1);
        want += i * 0.5;
    }
    assert_true(fabs(eth->total_tvl - want) < 1e-6);
    /* Thousands of updates on one protocol (its total is resummed exactly now and then). */
    rta_protocol *aave = rta_state_find_protocol(st, "aave");
    for (int i = 0; i < 3000; i++)
        tvl(st, &o, "aave", i % 2 ? "base" : "ethereum", 0.1 * i, T0_MS + 2000 + i);
    assert_true(fabs(aave->total_tvl - (0.1 * 2999 + 0.1 * 2998)) < 1e-9);
    assert_int_equal(aave->npairs, 2);
    assert_true(rta_state_bytes(st) > 500 * rta_history_bytes());
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_price_events(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    rta_price_update u = {.token = "ethereum:0xabc",
                          .price = 2,
                          .ts_ms = T0_MS,
                          .confidence = 0.7,
                          .has_confidence = 1,
                          .symbol = "ABC"};
    assert_int_equal(rta_state_apply_price(st, &u, "ingest", o.ev, 2, &o.n), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 0);
    rta_token *t = rta_state_find_token(st, "ethereum:0xabc");
    assert_string_equal(t->symbol, "ABC");
    assert_true(t->confidence == 0.7);
    assert_int_equal(price(st, &o, "ethereum:0xabc", 2.5, T0_MS + 1000), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 1);
    rta_event *e = o.ev[0];
    assert_int_equal(e->type, RTA_EVENT_PRICE_CHANGE);
    assert_string_equal(e->protocol, "ethereum:0xabc");
    assert_string_equal(e->token, "ethereum:0xabc");
    assert_string_equal(e->chain, "ethereum");
    assert_true(e->confidence == 0.7); /* the token's confidence */
    assert_true(fabs(e->change - 0.25) < 1e-12);
    assert_true(has_tag(e, "price"));
    assert_true(has_tag(e, "large_move"));
    assert_int_equal(price(st, &o, "ethereum:0xabc", 2.5, T0_MS + 2000), RTA_APPLY_UNCHANGED);
    assert_int_equal(price(st, &o, "ethereum:0xabc", 3, T0_MS), RTA_APPLY_STALE);
    assert_true(t->price == 2.5);
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_restore_makes_no_events(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    for (int i = 0; i < 10; i++) {
        rta_tvl_update u = {.protocol = "aave",
                            .chain = "ethereum",
                            .tvl = 100 + i,
                            .ts_ms = T0_MS + i * 3600000LL,
                            .name = "Aave"};
        rta_state_restore_tvl(st, &u);
        rta_price_update pu = {
            .token = "coingecko:bitcoin", .price = 50 + i, .ts_ms = T0_MS + i * 3600000LL};
        rta_state_restore_price(st, &pu);
    }
    rta_pair *pr = rta_state_find_pair(st, "aave", "ethereum");
    assert_true(pr->tvl == 109);
    assert_string_equal(pr->protocol->name, "Aave");
    assert_true(rta_state_find_token(st, "coingecko:bitcoin")->price == 59);
    int64_t now = T0_MS + 9 * 3600000LL;
    /* The history is there: change over 5 h = 109/104 - 1. */
    assert_true(fabs(rta_pair_change(pr, 5 * 3600, now) - (109.0 / 104 - 1)) < 1e-6);
    /* The next live update compares against the restored value and emits one event. */
    assert_int_equal(tvl(st, &o, "aave", "ethereum", 110, now + 1000), RTA_APPLY_CHANGED);
    assert_int_equal(o.n, 1);
    assert_true(o.ev[0]->previous == 109);
    outbox_clear(&o);
    rta_state_free(st);
}

static void test_change_windows(void **state)
{
    (void)state;
    rta_state *st = rta_state_new(NULL);
    outbox o = {0};
    /* A value every 10 minutes for 8 days: value = 1000 + hours elapsed. */
    int64_t end = T0_MS + 8 * 86400000LL;
    for (int64_t t = T0_MS; t <= end; t += 600000) {
        double v = 1000 + (double)(t - T0_MS) / 3600000;
        tvl(st, &o, "aave", "ethereum", v, t);
        tvl(st, &o, "aave", "base", 10, t);
        price(st, &o, "coingecko:bitcoin", v / 10, t);
    }
    outbox_clear(&o);
    rta_pair *pr = rta_state_find_pair(st, "aave", "ethereum");
    rta_protocol *p = rta_state_find_protocol(st, "aave");
    rta_token *tk = rta_state_find_token(st, "coingecko:bitcoin");
    double cur = 1000 + 8 * 24;
    /* Ask 14 minutes after the last point: the windows then start 4 minutes after a point. The
     * fine (1 h) and medium (24 h) rings answer exactly; the coarse ring (7 d) keeps each hour's
     * last point (at +50 min), so it answers with the point 10 minutes before the hour. */
    int64_t now = end + 14 * 60000;
    struct {
        int64_t window_s;
        double old;
    } cases[] = {{3600, cur - 1 + 1.0 / 6},
                 {86400, cur - 24 + 1.0 / 6},
                 {7 * 86400, cur - 7 * 24 - 1.0 / 6}};
    for (size_t i = 0; i < 3; i++) {
        double want = cur / cases[i].old - 1;
        double got = rta_pair_change(pr, cases[i].window_s, now);
        assert_true(fabs(got - want) < 1e-6);
        double want_p = (cur + 10) / (cases[i].old + 10) - 1;
        assert_true(fabs(rta_protocol_change(p, cases[i].window_s, now) - want_p) < 1e-6);
        assert_true(fabs(rta_token_change(tk, cases[i].window_s, now) - want) < 1e-6);
    }
    /* Older than the history: NaN. */
    assert_true(isnan(rta_pair_change(pr, 30 * 86400, end)));
    /* A pair without history older than the window. */
    tvl(st, &o, "aave", "solana", 5, end);
    outbox_clear(&o);
    assert_true(isnan(rta_pair_change(rta_state_find_pair(st, "aave", "solana"), 3600, end)));
    rta_state_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_protocol_then_values),
        cmocka_unit_test(test_previous_zero_unchanged_stale),
        cmocka_unit_test(test_min_change),
        cmocka_unit_test(test_new_chain_and_metadata),
        cmocka_unit_test(test_totals),
        cmocka_unit_test(test_price_events),
        cmocka_unit_test(test_restore_makes_no_events),
        cmocka_unit_test(test_change_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
