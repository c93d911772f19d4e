/* Unit tests for src/bench: latency histogram, TVL latency encoding, frame scanners. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/bench.h"

static void test_hist_buckets_cover_values(void **state)
{
    (void)state;
    /* Every value falls in a bucket whose lower bound is <= v and within ~3% of it. */
    uint64_t vals[] = {0,   1,   31,   32,   33,   63,     64,        65,
                       100, 999, 1000, 1023, 1024, 123456, 987654321, (uint64_t)1 << 39};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        uint64_t v = vals[k];
        size_t i = rta_bench_hist_index(v);
        assert_true(i < RTA_BENCH_HIST_BUCKETS);
        uint64_t lo = rta_bench_hist_lower(i);
        assert_true(lo <= v);
        if (i + 1 < RTA_BENCH_HIST_BUCKETS)
            assert_true(rta_bench_hist_lower(i + 1) > v);
        assert_true((double)(v - lo) <= 0.032 * (double)v + 1.0);
    }
    /* Buckets are increasing and contiguous. */
    for (size_t i = 1; i < RTA_BENCH_HIST_BUCKETS; i++) {
        assert_true(rta_bench_hist_lower(i) > rta_bench_hist_lower(i - 1));
        assert_int_equal(rta_bench_hist_index(rta_bench_hist_lower(i)), i);
        assert_int_equal(rta_bench_hist_index(rta_bench_hist_lower(i) - 1), i - 1);
    }
    /* Huge values are clamped into the last bucket. */
    assert_int_equal(rta_bench_hist_index(UINT64_MAX), RTA_BENCH_HIST_BUCKETS - 1);
}

static void test_hist_quantiles(void **state)
{
    (void)state;
    rta_bench_hist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_int_equal(rta_bench_hist_quantile(h, 0.5), 0);
    for (uint64_t v = 1; v <= 10000; v++)
        rta_bench_hist_record(h, v);
    assert_int_equal(h->total, 10000);
    assert_int_equal(h->max, 10000);
    uint64_t p50 = rta_bench_hist_quantile(h, 0.50);
    uint64_t p99 = rta_bench_hist_quantile(h, 0.99);
    assert_in_range(p50, 4850, 5150);
    assert_in_range(p99, 9600, 10000);
    assert_int_equal(rta_bench_hist_quantile(h, 1.0), 10000);
    assert_true(rta_bench_hist_quantile(h, 0.0) <= 1);
    free(h);
}

static void test_hist_merge(void **state)
{
    (void)state;
    rta_bench_hist *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 90; i++)
        rta_bench_hist_record(a, 100);
    for (int i = 0; i < 10; i++)
        rta_bench_hist_record(b, 50000);
    rta_bench_hist_merge(a, b);
    assert_int_equal(a->total, 100);
    assert_int_equal(a->max, 50000);
    assert_int_equal(a->sum, 90 * 100 + 10 * 50000);
    assert_in_range(rta_bench_hist_quantile(a, 0.5), 98, 102);
    assert_in_range(rta_bench_hist_quantile(a, 0.95), 48500, 50000);
    rta_bench_hist_reset(a);
    assert_int_equal(a->total, 0);
    free(a);
    free(b);
}

static void test_latency_roundtrip(void **state)
{
    (void)state;
    int64_t sent = 1764238800123456LL;
    for (unsigned parity = 0; parity < 2; parity++) {
        double tvl = rta_bench_tvl_encode(sent, parity);
        assert_true(tvl >= 0 && tvl < 1e15); /* rtad's TVL limit */
        assert_int_equal(rta_bench_latency_us(tvl, sent + 1234), 1234);
        assert_int_equal(rta_bench_latency_us(tvl, sent), 0);
        /* Receiver behind the sender: not a latency. */
        assert_int_equal(rta_bench_latency_us(tvl, sent - 10), -1);
    }
    /* Consecutive values of a series differ a lot (change events at any threshold). */
    double a = rta_bench_tvl_encode(sent, 0), b = rta_bench_tvl_encode(sent + 100, 1);
    assert_true(b / a > 1.5 || a / b > 1.5);
    /* Across the 2^40 us wrap. */
    int64_t wrap = ((int64_t)1 << 40) * 1600 - 5;
    assert_int_equal(rta_bench_latency_us(rta_bench_tvl_encode(wrap, 1), wrap + 20), 20);
    /* Values not made by the encoder. */
    assert_int_equal(rta_bench_latency_us(1.5, sent), -1);
    assert_int_equal(rta_bench_latency_us(-3, sent), -1);
    assert_int_equal(rta_bench_latency_us(1e15, sent), -1);
}

static void test_json_number(void **state)
{
    (void)state;
    const char *t = "{\"protocol\":\"p1\",\"previousTvl\":12.5,\"currentTvl\": 78123456789012,"
                    "\"changePercent\":-3.5e1,\"name\":\"currentTvl\"}";
    double v = 0;
    assert_int_equal(rta_bench_json_number(t, strlen(t), "currentTvl", &v), 0);
    assert_true(v == 78123456789012.0);
    assert_int_equal(rta_bench_json_number(t, strlen(t), "previousTvl", &v), 0);
    assert_true(v == 12.5);
    assert_int_equal(rta_bench_json_number(t, strlen(t), "changePercent", &v), 0);
    assert_true(v == -35.0);
    assert_int_equal(rta_bench_json_number(t, strlen(t), "protocol", &v), -1); /* a string */
    assert_int_equal(rta_bench_json_number(t, strlen(t), "missing", &v), -1);
    /* Truncated input never reads past len. */
    assert_int_equal(rta_bench_json_number(t, 20, "currentTvl", &v), -1);
}

static void test_sio_classify(void **state)
{
    (void)state;
    const char *nsp = "/v1/realtime";
    char ev[32];
#define C(s) rta_bench_sio_classify(s, strlen(s), nsp, ev, sizeof ev)
    assert_int_equal(C("0{\"sid\":\"x\",\"pingInterval\":25000}"), RTA_BENCH_SIO_OPEN);
    assert_int_equal(C("2"), RTA_BENCH_SIO_PING);
    assert_int_equal(C("1"), RTA_BENCH_SIO_CLOSE);
    assert_int_equal(C("40/v1/realtime,{\"sid\":\"abc\"}"), RTA_BENCH_SIO_CONNECT);
    assert_int_equal(C("44/v1/realtime,{\"message\":\"bad key\"}"), RTA_BENCH_SIO_CONNECT_ERROR);
    assert_int_equal(C("41/v1/realtime,"), RTA_BENCH_SIO_DISCONNECT);
    assert_int_equal(C("42/v1/realtime,[\"tvl_change\",{\"currentTvl\":1}]"), RTA_BENCH_SIO_EVENT);
    assert_string_equal(ev, "tvl_change");
    assert_int_equal(C("42/v1/realtime,17[\"subscribed\",{}]"), RTA_BENCH_SIO_EVENT);
    assert_string_equal(ev, "subscribed");
    /* Other namespaces and the root namespace are not ours. */
    assert_int_equal(C("42[\"tvl_change\",{}]"), RTA_BENCH_SIO_OTHER);
    assert_int_equal(C("42/v1/realtimeX,[\"a\"]"), RTA_BENCH_SIO_OTHER);
    assert_int_equal(C("40/other,{}"), RTA_BENCH_SIO_OTHER);
    assert_int_equal(C(""), RTA_BENCH_SIO_OTHER);
    assert_int_equal(rta_bench_sio_classify("42[\"x\"]", 7, "/", ev, sizeof ev),
                     RTA_BENCH_SIO_EVENT);
    assert_string_equal(ev, "x");
#undef C
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets_cover_values),
        cmocka_unit_test(test_hist_quantiles),
        cmocka_unit_test(test_hist_merge),
        cmocka_unit_test(test_latency_roundtrip),
        cmocka_unit_test(test_json_number),
        cmocka_unit_test(test_sio_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
