/* Unit tests for the query engine's fast paths: rta_query_exec_text must write exactly what
 * json_dumps writes for rta_query_exec's answer; a long-lived context must follow every kind of
 * state change (new values, back-dated points, metadata, new pairs, journal overflow, time
 * passing) and answer like a fresh one; rta_history_value_at_until must give intervals over
 * which the answer really holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/buf.h"
#include "rta/history.h"
#include "rta/query.h"
#include "rta/simulator.h"
#include "rta/state.h"
#include "rta/util.h"

#define H (3600LL * 1000)

static const char *const queries[] = {
    "{}",
    "{\"limit\":1000}",
    "{\"sort\":{\"field\":\"change_1h\",\"order\":\"asc\"},\"limit\":30,\"offset\":5}",
    "{\"sort\":{\"field\":\"change_24h\"},\"limit\":7}",
    "{\"sort\":{\"field\":\"change_7d\",\"order\":\"asc\"},\"limit\":1000}",
    "{\"sort\":{\"field\":\"name\",\"order\":\"asc\"},\"limit\":9,\"offset\":3}",
    "{\"sort\":{\"field\":\"name\"},\"limit\":1000}",
    "{\"sort\":{\"field\":\"protocol\"},\"limit\":20}",
    "{\"sort\":{\"field\":\"chain\",\"order\":\"asc\"},\"limit\":20}",
    "{\"sort\":{\"field\":\"category\"},\"limit\":20,\"offset\":100}",
    "{\"sort\":{\"field\":\"updatedAt\"},\"limit\":15}",
    "{\"offset\":100000}",
    "{\"filters\":{\"chains\":[\"chain-1\",\"chain-2\"],\"change_24h\":{\"min\":-0.05,"
    "\"max\":0.05}},\"sort\":{\"field\":\"change_24h\"},\"limit\":50}",
    "{\"filters\":{\"tvl_range\":{\"min\":1000,\"max\":1e9}},\"aggregations\":["
    "{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"chain\"},"
    "{\"field\":\"change_1h\",\"operation\":\"avg\",\"group_by\":\"protocol\"},"
    "{\"field\":\"change_24h\",\"operation\":\"min\",\"group_by\":\"category\"},"
    "{\"field\":\"change_7d\",\"operation\":\"max\",\"group_by\":\"none\"},"
    "{\"field\":\"tvl\",\"operation\":\"count\",\"group_by\":\"category\"}],\"limit\":3}",
    "{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"category\"},"
    "{\"field\":\"change_24h\",\"operation\":\"avg\",\"group_by\":\"category\"}],\"limit\":10}",
    "{\"filters\":{\"categories\":[\"Odd \\\"cat\\\"\",\"Dexes\"]},\"limit\":100}",
    "{\"filters\":{\"protocols\":[\"odd\",\"proto-1\",\"proto-2\",\"nope\"]},"
    "\"sort\":{\"field\":\"name\"},\"aggregations\":[{\"operation\":\"count\","
    "\"group_by\":\"protocol\"}]}",
    "{\"filters\":{\"chains\":[\"nowhere\"]},"
    "\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"avg\"}]}",
};
#define NQ (sizeof queries / sizeof queries[0])

static void restore(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(ud, u);
}

/* A small simulated universe with 26 h of hourly and 90 min of per-minute history, plus one
 * protocol whose name and category need escaping. */
static rta_state *make_state(int64_t now)
{
    rta_sim_options so = {
        .seed = 11, .protocols = 200, .chains = 12, .pairs = 400, .tokens = 2, .categories = 6};
    rta_sim *sim = rta_sim_new(&so);
    rta_state_options o = {0};
    rta_state *st = rta_state_new(&o);
    rta_sim_history(sim, now - 90 * 60000, 26 * H, H, restore, NULL, st);
    rta_sim_history(sim, now, 90 * 60000, 60000, restore, NULL, st);
    rta_sim_snapshot(sim, now, restore, NULL, st);
    rta_tvl_update u = {.protocol = "odd",
                        .chain = "chain-1",
                        .tvl = 0.1,
                        .ts_ms = now - 2 * H,
                        .name = "Odd \"name\" \\ /\n\t\x01 \xc3\xa9\x7f",
                        .category = "Odd \"cat\""};
    rta_state_restore_tvl(st, &u);
    u.tvl = 1e21;
    u.ts_ms = now - 1000;
    rta_state_restore_tvl(st, &u);
    u.chain = "chain-2";
    u.tvl = 123456.789;
    rta_state_restore_tvl(st, &u);
    rta_sim_free(sim);
    return st;
}

static rta_query *parse(const char *text)
{
    json_error_t err;
    json_t *body = json_loads(text, 0, &err);
    if (!body)
        fail_msg("bad JSON %s: %s", text, err.text);
    json_t *errors = NULL;
    rta_query *q = rta_query_parse(body, &errors);
    json_decref(body);
    if (!q) {
        char *e = json_dumps(errors, JSON_COMPACT);
        fail_msg("rejected %s: %s", text, e);
    }
    return q;
}

/* Every query: text through ctx == json_dumps of a fresh execution, byte for byte. */
static void expect_all_equal(const rta_state *st, rta_query_ctx *ctx, int64_t now, const char *when)
{
    for (size_t i = 0; i < NQ; i++) {
        rta_query *q = parse(queries[i]);
        json_t *fresh = rta_query_exec(q, st, now);
        char *want = json_dumps(fresh, JSON_COMPACT | JSON_PRESERVE_ORDER);
        rta_dbuf got;
        rta_dbuf_init(&got, 64u << 20);
        assert_int_equal(rta_query_exec_text(q, st, ctx, now, &got), 0);
        assert_int_equal(rta_dbuf_append(&got, "", 1), 0);
        if (strcmp(got.data, want) != 0)
            fail_msg("%s, query %s:\n got  %.400s\n want %.400s", when, queries[i], got.data, want);
        /* and the jansson answer with the context agrees too */
        json_t *viactx = rta_query_exec_ctx(q, st, ctx, now);
        if (!json_equal(viactx, fresh))
            fail_msg("%s, query %s: exec_ctx differs", when, queries[i]);
        json_decref(viactx);
        rta_dbuf_free(&got);
        free(want);
        json_decref(fresh);
        rta_query_free(q);
    }
}

static void test_text_matches_json(void **state)
{
    (void)state;
    int64_t now = rta_now_ms();
    rta_state *st = make_state(now);
    rta_query_ctx *ctx = rta_query_ctx_new();
    expect_all_equal(st, ctx, now, "first");
    expect_all_equal(st, ctx, now, "again (from the context's caches)");
    /* the escaped name made it through */
    rta_query *q = parse("{\"filters\":{\"protocols\":[\"odd\"]},\"sort\":{\"field\":\"tvl\"}}");
    rta_dbuf got;
    rta_dbuf_init(&got, 1u << 20);
    assert_int_equal(rta_query_exec_text(q, st, ctx, now, &got), 0);
    rta_dbuf_append(&got, "", 1);
    assert_non_null(
        strstr(got.data, "\"name\":\"Odd \\\"name\\\" \\\\ /\\n\\t\\u0001 \xc3\xa9\x7f\""));
    assert_non_null(strstr(got.data, "\"tvl\":1e21,"));
    assert_non_null(strstr(got.data, "\"tvl\":123456.789,"));
    /* a page that does not fit the buffer is an error, not a crash */
    rta_dbuf small;
    rta_dbuf_init(&small, 100);
    assert_int_equal(rta_query_exec_text(q, st, ctx, now, &small), -1);
    rta_dbuf_free(&small);
    rta_dbuf_free(&got);
    rta_query_free(q);
    rta_query_ctx_free(ctx);
    rta_state_free(st);
}

/* Random updates of every kind between queries, with time moving in steps of seconds to
 * hours: the long-lived context answers exactly like a fresh one each time. */
static void test_ctx_incremental(void **state)
{
    (void)state;
    int64_t t0 = rta_now_ms();
    rta_state *st = make_state(t0);
    rta_query_ctx *ctx = rta_query_ctx_new();
    uint64_t rng = 12345;
    int64_t now = t0;
    static const int64_t steps[] = {0, 1, 999, 1000, 29000, 60000, 61000, 15 * 60000, H, 3 * H};
    char name[32], cat[32], chain[32];
    for (int round = 0; round < 24; round++) {
        size_t nupd = round == 10 ? RTA_STATE_JOURNAL + 50 : (size_t)(rng % 20);
        for (size_t k = 0; k < nupd; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = rng >> 33;
            const rta_pair *p = st->pairs[r % st->npairs];
            rta_tvl_update u = {.protocol = p->protocol->slug,
                                .chain = p->chain->name,
                                .tvl = p->tvl * (1.0 + (double)(r % 200) / 1000.0 - 0.1),
                                .ts_ms = now};
            switch ((r >> 8) % 6) {
            case 0: /* back-dated point: history only */
                u.ts_ms = now - (int64_t)((r >> 12) % (30 * H));
                break;
            case 1: /* metadata */
                snprintf(name, sizeof name, "Name %u", (unsigned)(r % 7));
                snprintf(cat, sizeof cat, "Cat %u", (unsigned)(r % 5));
                u.name = name;
                u.category = cat;
                break;
            case 2: /* a new pair (and sometimes a new chain / protocol) */
                snprintf(chain, sizeof chain, "newchain-%u", (unsigned)(r % 9));
                u.chain = chain;
                if ((r >> 20) % 3 == 0) {
                    snprintf(name, sizeof name, "newproto-%u", (unsigned)(r % 11));
                    u.protocol = name;
                }
                break;
            default:
                break;
            }
            rta_event *ev[2];
            size_t nout = 0;
            if (round % 2)
                rta_state_apply_tvl(st, &u, "test", ev, 2, &nout);
            else
                rta_state_restore_tvl(st, &u);
            for (size_t e = 0; e < nout; e++)
                rta_event_unref(ev[e]);
        }
        char when[64];
        snprintf(when, sizeof when, "round %d (now = t0 + %lld ms)", round, (long long)(now - t0));
        expect_all_equal(st, ctx, now, when);
        now += steps[rng % (sizeof steps / sizeof steps[0])];
    }
    rta_query_ctx_free(ctx);
    rta_state_free(st);
}

/* rta_history_value_at_until: the answer at every second of [ts, until) is the answer at ts. */
static void test_history_until(void **state)
{
    (void)state;
    uint64_t rng = 99;
    for (int series = 0; series < 20; series++) {
        rta_history h;
        rta_history_init(&h);
        int64_t base = 1800000000 + series * 7;
        int npoints = series == 0 ? 0 : 5 + series * 10;
        for (int k = 0; k < npoints; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            int64_t ts = base - (int64_t)((rng >> 33) % (8 * 86400));
            rta_history_record(&h, ts, (double)(k + 1));
        }
        for (int probe = 0; probe < 200; probe++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            int64_t ts = base - (int64_t)((rng >> 33) % (8 * 86400 + 7200)) + 3600;
            double v0 = NAN, v = NAN;
            int64_t until;
            int rc0 = rta_history_value_at_until(&h, ts, &v0, &until);
            double vref = NAN;
            assert_int_equal(rc0, rta_history_value_at(&h, ts, &vref));
            if (rc0 == 0)
                assert_true(v0 == vref);
            assert_true(until > ts);
            int64_t end = until - ts > 8000 ? ts + 8000 : until;
            for (int64_t t = ts; t < end; t++) {
                int rc = rta_history_value_at(&h, t, &v);
                assert_int_equal(rc, rc0);
                if (rc == 0 && v != v0)
                    fail_msg("series %d: value at %lld differs from %lld (until %lld)", series,
                             (long long)t, (long long)ts, (long long)until);
            }
        }
        rta_history_free(&h);
    }
}

/* The journal names touched pairs by index, oldest first. */
static void test_state_journal(void **state)
{
    (void)state;
    rta_state_options o = {0};
    rta_state *st = rta_state_new(&o);
    rta_tvl_update u = {.protocol = "a", .chain = "x", .tvl = 1, .ts_ms = 1000000};
    rta_state_restore_tvl(st, &u);
    u.chain = "y";
    rta_state_restore_tvl(st, &u);
    assert_int_equal(st->journal_seq, 2);
    assert_int_equal(st->journal[0], 0);
    assert_int_equal(st->journal[1], 1);
    assert_int_equal(st->pairs[1]->index, 1);
    rta_event *ev[2];
    size_t nout;
    u.tvl = 2;
    u.ts_ms = 500000; /* stale: history only, still journaled */
    rta_state_apply_tvl(st, &u, "t", ev, 2, &nout);
    assert_int_equal(nout, 0);
    assert_int_equal(st->journal_seq, 3);
    assert_int_equal(st->journal[2], 1);
    u.ts_ms = 2000000;
    u.category = "New";
    rta_state_apply_tvl(st, &u, "t", ev, 2, &nout); /* metadata: both pairs of "a", then y */
    for (size_t e = 0; e < nout; e++)
        rta_event_unref(ev[e]);
    assert_int_equal(st->journal_seq, 6);
    assert_int_equal(st->journal[3], 0);
    assert_int_equal(st->journal[4], 1);
    assert_int_equal(st->journal[5], 1);
    double c;
    int64_t until;
    c = rta_pair_change_until(st->pairs[1], 3600, 2000000 + 3600 * 1000LL, &until);
    assert_true(isnan(c) || c == rta_pair_change(st->pairs[1], 3600, 2000000 + 3600 * 1000LL));
    rta_state_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_matches_json),
        cmocka_unit_test(test_ctx_incremental),
        cmocka_unit_test(test_history_until),
        cmocka_unit_test(test_state_journal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
