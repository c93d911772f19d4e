/* Unit tests for src/core/metrics.c: series identity, rendered exposition text, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/buf.h"
#include "rta/metrics.h"

static int teardown(void **state)
{
    (void)state;
    rta_metrics_shutdown();
    return 0;
}

/* Renders the registry into a fresh NUL-terminated string (caller frees). */
static char *render(void)
{
    rta_dbuf b;
    rta_dbuf_init(&b, 1 << 20);
    assert_int_equal(rta_metrics_render(&b), 0);
    rta_dbuf_puts(&b, ""); /* make sure data is allocated and terminated */
    return rta_dbuf_steal(&b, NULL);
}

static void test_counter_and_gauge_text(void **state)
{
    (void)state;
    rta_metric_family *req =
        rta_metrics_counter_family("rta_http_requests_total", "HTTP requests by route and status.");
    assert_non_null(req);
    rta_counter *ok = rta_metrics_counter(req, "route=\"/v1/query\",status=\"200\"");
    rta_counter *bad = rta_metrics_counter(req, "route=\"/v1/query\",status=\"400\"");
    assert_ptr_equal(ok, rta_metrics_counter(req, "route=\"/v1/query\",status=\"200\""));
    assert_ptr_not_equal(ok, bad);
    assert_ptr_equal(req, rta_metrics_counter_family("rta_http_requests_total", "again"));
    rta_counter_inc(ok);
    rta_counter_add(ok, 2);
    rta_counter_add(ok, -5); /* ignored: counters only go up */
    rta_counter_add(bad, 0.5);
    assert_true(rta_counter_value(ok) == 3.0);

    rta_metric_family *conns = rta_metrics_gauge_family("rta_connections", "Open connections.");
    rta_gauge *g = rta_metrics_gauge(conns, NULL);
    rta_gauge_set(g, 10);
    rta_gauge_add(g, -3);
    assert_true(rta_gauge_value(g) == 7.0);

    char *text = render();
    const char *want = "# HELP rta_http_requests_total HTTP requests by route and status.\n"
                       "# TYPE rta_http_requests_total counter\n"
                       "rta_http_requests_total{route=\"/v1/query\",status=\"200\"} 3\n"
                       "rta_http_requests_total{route=\"/v1/query\",status=\"400\"} 0.5\n"
                       "# HELP rta_connections Open connections.\n"
                       "# TYPE rta_connections gauge\n"
                       "rta_connections 7\n";
    assert_string_equal(text, want);
    free(text);
}

static double seven_and_a_half(void *ud)
{
    int *calls = ud;
    (*calls)++;
    return 7.5;
}

static void test_gauge_fn(void **state)
{
    (void)state;
    int calls = 0;
    rta_metric_family *q = rta_metrics_gauge_family("rta_store_queue_depth", "Jobs queued.");
    rta_gauge *g = rta_metrics_gauge_fn(q, "store=\"sqlite\"", seven_and_a_half, &calls);
    assert_non_null(g);
    rta_gauge_set(g, 100); /* ignored for computed gauges */
    char *text = render();
    assert_non_null(strstr(text, "rta_store_queue_depth{store=\"sqlite\"} 7.5\n"));
    assert_int_equal(calls, 1);
    free(text);
}

static void test_histogram_text(void **state)
{
    (void)state;
    const double bounds[] = {0.1, 0.5, 1};
    rta_metric_family *lat = rta_metrics_histogram_family(
        "rta_query_seconds", "Query latency.\nIn seconds \\ wall.", bounds, 3);
    assert_non_null(lat);
    rta_histogram *h = rta_metrics_histogram(lat, "kind=\"tvl\"");
    rta_histogram_observe(h, 0.05);
    rta_histogram_observe(h, 0.1); /* le is inclusive */
    rta_histogram_observe(h, 0.3);
    rta_histogram_observe(h, 2);
    rta_metric_family *plain = rta_metrics_histogram_family("rta_plain_seconds", "x", bounds, 3);
    rta_histogram_observe(rta_metrics_histogram(plain, ""), 0.7);

    char *text = render();
    const char *want = "# HELP rta_query_seconds Query latency.\\nIn seconds \\\\ wall.\n"
                       "# TYPE rta_query_seconds histogram\n"
                       "rta_query_seconds_bucket{kind=\"tvl\",le=\"0.1\"} 2\n"
                       "rta_query_seconds_bucket{kind=\"tvl\",le=\"0.5\"} 3\n"
                       "rta_query_seconds_bucket{kind=\"tvl\",le=\"1\"} 3\n"
                       "rta_query_seconds_bucket{kind=\"tvl\",le=\"+Inf\"} 4\n"
                       "rta_query_seconds_sum{kind=\"tvl\"} 2.45\n"
                       "rta_query_seconds_count{kind=\"tvl\"} 4\n"
                       "# HELP rta_plain_seconds x\n"
                       "# TYPE rta_plain_seconds histogram\n"
                       "rta_plain_seconds_bucket{le=\"0.1\"} 0\n"
                       "rta_plain_seconds_bucket{le=\"0.5\"} 0\n"
                       "rta_plain_seconds_bucket{le=\"1\"} 1\n"
                       "rta_plain_seconds_bucket{le=\"+Inf\"} 1\n"
                       "rta_plain_seconds_sum 0.7\n"
                       "rta_plain_seconds_count 1\n";
    assert_string_equal(text, want);
    free(text);
}

static void test_histogram_default_buckets(void **state)
{
    (void)state;
    rta_metric_family *f = rta_metrics_histogram_family("rta_lat_seconds", "L.", NULL, 0);
    rta_histogram_observe(rta_metrics_histogram(f, NULL), 0.003);
    char *text = render();
    assert_non_null(strstr(text, "rta_lat_seconds_bucket{le=\"0.0001\"} 0\n"));
    assert_non_null(strstr(text, "rta_lat_seconds_bucket{le=\"0.0025\"} 0\n"));
    assert_non_null(strstr(text, "rta_lat_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(text, "rta_lat_seconds_bucket{le=\"10\"} 1\n"));
    assert_non_null(strstr(text, "rta_lat_seconds_bucket{le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(text, "rta_lat_seconds_sum 0.003\n"));
    free(text);
}

static void test_rejects(void **state)
{
    (void)state;
    assert_null(rta_metrics_counter_family("9bad", "x"));
    assert_null(rta_metrics_counter_family("has-dash", "x"));
    assert_null(rta_metrics_counter_family("", "x"));
    assert_non_null(rta_metrics_counter_family("rta_ns:ok_total", "x"));
    rta_metric_family *c = rta_metrics_counter_family("rta_x_total", "x");
    assert_null(rta_metrics_gauge_family("rta_x_total", "x")); /* type clash */
    assert_null(rta_metrics_gauge(c, NULL));                   /* wrong series type */
    const double unsorted[] = {1, 0.5};
    assert_null(rta_metrics_histogram_family("rta_h", "x", unsorted, 2));
    rta_counter_add(NULL, 1); /* no-op, no crash */
    rta_histogram_observe(NULL, 1);
}

static void test_series_limit(void **state)
{
    (void)state;
    rta_metric_family *f = rta_metrics_counter_family("rta_many_total", "Many.");
    char labels[32];
    for (int i = 0; i < RTA_METRICS_MAX_SERIES; i++) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        rta_counter_inc(rta_metrics_counter(f, labels));
    }
    rta_counter *over = rta_metrics_counter(f, "i=\"overflow\"");
    assert_non_null(over);
    rta_counter_inc(over);
    assert_ptr_equal(over, rta_metrics_counter(f, "i=\"another\""));
    char *text = render();
    assert_null(strstr(text, "overflow"));
    assert_non_null(strstr(text, "rta_many_total{i=\"1999\"} 1\n"));
    free(text);
}

static void test_render_bounded(void **state)
{
    (void)state;
    rta_metric_family *f = rta_metrics_counter_family("rta_big_total", "Big.");
    rta_counter_inc(rta_metrics_counter(f, "a=\"1\""));
    rta_dbuf b;
    rta_dbuf_init(&b, 32);
    assert_int_equal(rta_metrics_render(&b), -1);
    assert_true(b.len <= 32);
    rta_dbuf_free(&b);
}

static void test_escape_label(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(rta_metrics_escape_label("a\"b\\c\nd", out, sizeof out), 0);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    char small[4];
    assert_int_equal(rta_metrics_escape_label("ab\"c", small, sizeof small), -1);
    assert_string_equal(small, "ab"); /* never half an escape */
    assert_int_equal(rta_metrics_escape_label("", out, sizeof out), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_counter_and_gauge_text, teardown),
        cmocka_unit_test_teardown(test_gauge_fn, teardown),
        cmocka_unit_test_teardown(test_histogram_text, teardown),
        cmocka_unit_test_teardown(test_histogram_default_buckets, teardown),
        cmocka_unit_test_teardown(test_rejects, teardown),
        cmocka_unit_test_teardown(test_series_limit, teardown),
        cmocka_unit_test_teardown(test_render_bounded, teardown),
        cmocka_unit_test_teardown(test_escape_label, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
