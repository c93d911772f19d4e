/* Unit tests for src/engine/history.c: tiered rings answering "value at time T". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "rta/history.h"

#define T0 1764201600LL /* 2025-11-27T00:00:00Z, aligned to every bucket width */

static double at(const rta_history *h, int64_t ts)
{
    double v = -12345;
    if (rta_history_value_at(h, ts, &v) != 0)
        return NAN;
    return v;
}

static void test_empty(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    double v;
    assert_int_equal(rta_history_value_at(&h, T0, &v), -1);
    assert_null(h.rings); /* nothing allocated until the first record */
    rta_history_free(&h);
    rta_history_free(&h); /* idempotent */
}

static void test_fine_resolution(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    /* One point per minute for an hour: value = minute number. */
    for (int m = 0; m <= 60; m++)
        rta_history_record(&h, T0 + m * 60 + 5, m);
    assert_non_null(h.rings);
    assert_true(at(&h, T0 + 30 * 60 + 5) == 30);
    assert_true(at(&h, T0 + 30 * 60 + 59) == 30);
    /* Before the point in minute 30 was recorded: minute 29's value was in effect. */
    assert_true(at(&h, T0 + 30 * 60 + 4) == 29);
    /* After the newest point: the newest value. */
    assert_true(at(&h, T0 + 100 * 60) == 60);
    /* Before the first point: nothing. */
    assert_true(isnan(at(&h, T0 + 4)));
    assert_true(isnan(at(&h, T0 - 3600)));
    rta_history_free(&h);
}

static void test_three_resolutions(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    /* A point every 5 minutes for 8 days: value = minutes since T0. */
    const int64_t end = T0 + 8 * 86400;
    for (int64_t t = T0; t <= end; t += 300)
        rta_history_record(&h, t, (double)(t - T0) / 60);
    /* Within the fine ring (last 90 min): exact to the point. */
    assert_true(at(&h, end - 3600) == (double)(end - 3600 - T0) / 60);
    assert_true(at(&h, end - 3600 + 299) == (double)(end - 3600 - T0) / 60);
    /* 3 h ago: medium ring (15-min buckets). That bucket keeps its last point (+10 min), which
     * is after the query time, so the answer is the previous bucket's last point (-5 min). */
    assert_true(at(&h, end - 3 * 3600) == (double)(end - 3 * 3600 - 300 - T0) / 60);
    /* 3 h ago + 10 min: the medium bucket's last point (at +10 min) is at or before: exact. */
    assert_true(at(&h, end - 3 * 3600 + 600) == (double)(end - 3 * 3600 + 600 - T0) / 60);
    /* 3 h ago + 7 min: bucket's last point (+10 min) is after; falls back to previous bucket's
     * last point (-5 min). Resolution 15 min. */
    double v = at(&h, end - 3 * 3600 + 420);
    assert_true(v == (double)(end - 3 * 3600 - 300 - T0) / 60);
    /* 24 h ago: still medium; 24 h ago + 14 min sees the bucket's last point (+10 min). */
    assert_true(at(&h, end - 86400) == (double)(end - 86400 - 300 - T0) / 60);
    assert_true(at(&h, end - 86400 + 840) == (double)(end - 86400 + 600 - T0) / 60);
    /* 7 d ago: coarse ring (1-h buckets): hour + 59 min sees the hour's last point (+55). */
    assert_true(at(&h, end - 7 * 86400 + 3599) == (double)(end - 7 * 86400 + 3300 - T0) / 60);
    assert_true(at(&h, end - 7 * 86400) == (double)(end - 7 * 86400 - 300 - T0) / 60);
    /* 7 d ago + 30 min: the hour's last point is at +55 min, after: previous hour's last. */
    v = at(&h, end - 7 * 86400 + 1800);
    assert_true(v == (double)(end - 7 * 86400 - 300 - T0) / 60);
    /* Beyond the coarse span (170 h): nothing. */
    assert_true(isnan(at(&h, end - 8 * 86400)));
    rta_history_free(&h);
}

static void test_bucket_alignment(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    /* One point just before a minute boundary, one on it (two buckets). */
    rta_history_record(&h, T0 + 59, 1.0);
    rta_history_record(&h, T0 + 60, 2.0);
    assert_true(at(&h, T0 + 59) == 1.0);
    assert_true(at(&h, T0 + 60) == 2.0);
    /* Last value in a bucket wins. */
    rta_history_record(&h, T0 + 61, 3.0);
    assert_true(at(&h, T0 + 119) == 3.0);
    assert_true(at(&h, T0 + 60) == 1.0); /* the bucket's kept point (61) is after 60 */
    rta_history_free(&h);
}

static void test_out_of_order(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    rta_history_record(&h, T0 + 600, 10.0);
    rta_history_record(&h, T0 + 300, 5.0); /* older bucket, still within the span */
    assert_true(at(&h, T0 + 300) == 5.0);
    assert_true(at(&h, T0 + 599) == 5.0);
    assert_true(at(&h, T0 + 600) == 10.0);
    /* Within one bucket, an older point does not replace a newer one. */
    rta_history_record(&h, T0 + 630, 11.0);
    rta_history_record(&h, T0 + 610, 99.0);
    assert_true(at(&h, T0 + 659) == 11.0);
    /* Far older than every ring spans: ignored. */
    rta_history_record(&h, T0 - 30 * 86400, 1.0);
    assert_true(isnan(at(&h, T0 - 30 * 86400)));
    /* Non-finite values are not data. */
    rta_history_record(&h, T0 + 700, NAN);
    assert_true(at(&h, T0 + 700) == 11.0);
    rta_history_free(&h);
}

static void test_gap_clears_old_laps(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    rta_history_record(&h, T0, 1.0);
    /* Exactly one lap of the fine ring later (same slot): the old value must not show up as the
     * value of the new lap's neighbours. */
    rta_history_record(&h, T0 + RTA_HISTORY_FINE_N * 60 + 120, 2.0);
    assert_true(at(&h, T0 + RTA_HISTORY_FINE_N * 60 + 60) == 1.0); /* from a coarser ring */
    assert_true(at(&h, T0 + RTA_HISTORY_FINE_N * 60 + 120) == 2.0);
    /* A jump of two weeks empties everything older. */
    rta_history_record(&h, T0 + 14 * 86400, 3.0);
    assert_true(isnan(at(&h, T0 + 14 * 86400 - 8 * 86400)));
    assert_true(at(&h, T0 + 14 * 86400) == 3.0);
    rta_history_free(&h);
}

static void test_window_7d(void **state)
{
    (void)state;
    rta_history h;
    rta_history_init(&h);
    /* Hourly points for 7 days + 2 hours. */
    for (int i = 0; i <= 7 * 24 + 2; i++)
        rta_history_record(&h, T0 + i * 3600, 100.0 + i);
    int64_t now = T0 + (7 * 24 + 2) * 3600;
    assert_true(at(&h, now - RTA_HISTORY_MAX_WINDOW_SECS) == 102.0);
    assert_true(at(&h, now - 86400) == 100.0 + 7 * 24 + 2 - 24);
    assert_true(at(&h, now - 3600) == 100.0 + 7 * 24 + 1);
    rta_history_free(&h);
}

static void test_memory_bound(void **state)
{
    (void)state;
    size_t bytes = rta_history_bytes();
    size_t slots = RTA_HISTORY_FINE_N + RTA_HISTORY_MEDIUM_N + RTA_HISTORY_COARSE_N;
    assert_true(bytes >= slots * 4);
    assert_true(bytes <= 2600);
    /* Many records of a single series never grow it (ASan would catch overruns). */
    rta_history h;
    rta_history_init(&h);
    for (int64_t i = 0; i < 200000; i++)
        rta_history_record(&h, T0 + i * 7, (double)i);
    assert_true(at(&h, T0 + 199999 * 7) == 199999.0);
    rta_history_free(&h);
}

static void test_change_fraction(void **state)
{
    (void)state;
    assert_true(fabs(rta_change_fraction(100, 105) - 0.05) < 1e-12);
    assert_true(fabs(rta_change_fraction(100, 50) + 0.5) < 1e-12);
    assert_true(isnan(rta_change_fraction(0, 5)));
    assert_true(isnan(rta_change_fraction(NAN, 5)));
    assert_true(isnan(rta_change_fraction(5, INFINITY)));
    assert_true(rta_change_fraction(7, 7) == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_fine_resolution),
        cmocka_unit_test(test_three_resolutions),
        cmocka_unit_test(test_bucket_alignment),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_gap_clears_old_laps),
        cmocka_unit_test(test_window_7d),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_change_fraction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
