/* Unit tests for src/core: time formats, UUIDv7, buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rta/buf.h"
#include "rta/util.h"

static void test_iso8601_roundtrip(void **state)
{
    (void)state;
    char out[40];
    rta_time_iso8601(1764238800123LL, out, sizeof out);
    assert_string_equal(out, "2025-11-27T10:20:00.123Z");
    int64_t ms = 0;
    assert_int_equal(rta_time_parse_iso8601(out, &ms), 0);
    assert_int_equal(ms, 1764238800123LL);
    assert_int_equal(rta_time_parse_iso8601("2025-11-27T12:20:00+02:00", &ms), 0);
    assert_int_equal(ms, 1764238800000LL);
    assert_int_equal(rta_time_parse_iso8601("2025-11-27", &ms), 0);
    assert_int_equal(ms, 1764201600000LL);
}

static void test_iso8601_rejects(void **state)
{
    (void)state;
    int64_t ms;
    const char *bad[] = {"",
                         "2025",
                         "2025-13-01T00:00:00Z",
                         "2025-11-27T10:20:00",
                         "2025-11-27T25:00:00Z",
                         "2025-11-27T10:20:00Zjunk",
                         "x025-11-27"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(bad); i++)
        assert_int_equal(rta_time_parse_iso8601(bad[i], &ms), -1);
}

static void test_uuid_v7_shape_and_order(void **state)
{
    (void)state;
    char a[37], b[37];
    rta_uuid_v7(a);
    rta_uuid_v7(b);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '7');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_true(strcmp(a, b) < 0); /* time-ordered, even within one millisecond */
}

static void test_dbuf_limit(void **state)
{
    (void)state;
    rta_dbuf b;
    rta_dbuf_init(&b, 8);
    assert_int_equal(rta_dbuf_puts(&b, "12345"), 0);
    assert_int_equal(rta_dbuf_puts(&b, "6789"), -1); /* would pass the maximum */
    assert_int_equal(b.len, 5);
    assert_int_equal(rta_dbuf_printf(&b, "%d", 678), 0);
    assert_string_equal(b.data, "12345678");
    rta_dbuf_consume(&b, 3);
    assert_string_equal(b.data, "45678");
    rta_dbuf_free(&b);
}

static void test_rbuf_refcount(void **state)
{
    (void)state;
    rta_rbuf *r = rta_rbuf_new("frame", 5);
    rta_rbuf_ref(r);
    assert_int_equal(r->refcnt, 2);
    rta_rbuf_unref(r);
    assert_int_equal(r->refcnt, 1);
    assert_memory_equal(r->data, "frame", 5);
    rta_rbuf_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601_roundtrip),       cmocka_unit_test(test_iso8601_rejects),
        cmocka_unit_test(test_uuid_v7_shape_and_order), cmocka_unit_test(test_dbuf_limit),
        cmocka_unit_test(test_rbuf_refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
