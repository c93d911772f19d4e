/* Unit tests for src/engine/event.c, event_log.c and bus.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "rta/event.h"
#include "rta/util.h"

static json_t *parse_rbuf(rta_rbuf *b)
{
    json_error_t err;
    json_t *o = json_loadb(b->data, b->len, 0, &err);
    assert_non_null(o);
    return o;
}

static void test_tvl_change_json(void **state)
{
    (void)state;
    rta_event *e = rta_event_new(RTA_EVENT_TVL_CHANGE, "aave", "ethereum", NULL, "ingest");
    e->has_previous = 1;
    e->previous = 1000;
    e->current = 1100;
    e->change = 0.1;
    e->data_ts_ms = 1764238800123LL;
    e->offset = 42;
    json_array_append_new(e->tags, json_string("tvl"));
    rta_rbuf *b = rta_event_json(e);
    assert_ptr_equal(rta_event_json(e), b);                     /* cached */
    assert_non_null(strstr(b->data, "\"changePercent\":0.1,")); /* no 17-digit noise */
    json_t *o = parse_rbuf(b);
    assert_string_equal(json_string_value(json_object_get(o, "eventId")), e->id);
    assert_int_equal(strlen(e->id), 36);
    assert_string_equal(json_string_value(json_object_get(o, "eventType")), "tvl_change");
    assert_string_equal(json_string_value(json_object_get(o, "protocol")), "aave");
    assert_string_equal(json_string_value(json_object_get(o, "chain")), "ethereum");
    assert_null(json_object_get(o, "token"));
    json_t *d = json_object_get(o, "data");
    assert_true(json_number_value(json_object_get(d, "previousValue")) == 1000);
    assert_true(json_number_value(json_object_get(d, "currentValue")) == 1100);
    assert_true(json_number_value(json_object_get(d, "changePercent")) == 0.1);
    assert_string_equal(json_string_value(json_object_get(d, "timestamp")),
                        "2025-11-27T10:20:00.123Z");
    assert_null(json_object_get(d, "update"));
    json_t *m = json_object_get(o, "metadata");
    assert_string_equal(json_string_value(json_object_get(m, "source")), "ingest");
    assert_true(json_number_value(json_object_get(m, "confidence")) == 1.0);
    assert_int_equal(json_array_size(json_object_get(m, "tags")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "tags"), 0)), "tvl");
    const char *created = json_string_value(json_object_get(o, "createdAt"));
    int64_t created_ms;
    assert_int_equal(rta_time_parse_iso8601(created, &created_ms), 0);
    assert_int_equal(created_ms, e->created_us / 1000);
    assert_int_equal(json_integer_value(json_object_get(o, "offset")), 42);
    json_decref(o);
    rta_event_unref(e);
}

static void test_first_value_json_nulls(void **state)
{
    (void)state;
    rta_event *e = rta_event_new(RTA_EVENT_TVL_CHANGE, "aave", "base", NULL, "ingest");
    e->current = 5;
    json_t *o = rta_event_to_json(e);
    json_t *d = json_object_get(o, "data");
    assert_true(json_is_null(json_object_get(d, "previousValue")));
    assert_true(json_is_null(json_object_get(d, "changePercent")));
    assert_true(json_number_value(json_object_get(d, "currentValue")) == 5);
    json_decref(o);
    rta_event_unref(e);
}

static void test_price_change_json(void **state)
{
    (void)state;
    rta_event *e = rta_event_new(RTA_EVENT_PRICE_CHANGE, "coingecko:bitcoin", "coingecko",
                                 "coingecko:bitcoin", "simulator");
    e->has_previous = 1;
    e->previous = 100;
    e->current = 90;
    e->change = -0.1;
    e->confidence = 0.8;
    json_t *o = rta_event_to_json(e);
    assert_string_equal(json_string_value(json_object_get(o, "eventType")), "price_change");
    assert_string_equal(json_string_value(json_object_get(o, "token")), "coingecko:bitcoin");
    assert_string_equal(json_string_value(json_object_get(o, "chain")), "coingecko");
    json_t *m = json_object_get(o, "metadata");
    assert_true(json_number_value(json_object_get(m, "confidence")) == 0.8);
    assert_string_equal(json_string_value(json_object_get(m, "source")), "simulator");
    json_decref(o);
    rta_event_unref(e);
}

static void test_protocol_update_json(void **state)
{
    (void)state;
    rta_event *e = rta_event_new(RTA_EVENT_PROTOCOL_UPDATE, "aave", "", NULL, "ingest");
    e->update = json_pack("{s:s}", "category", "Lending");
    json_t *o = rta_event_to_json(e);
    assert_string_equal(json_string_value(json_object_get(o, "eventType")), "protocol_update");
    assert_string_equal(json_string_value(json_object_get(o, "chain")), "");
    json_t *u = json_object_get(json_object_get(o, "data"), "update");
    assert_string_equal(json_string_value(json_object_get(u, "category")), "Lending");
    /* The returned object is a copy: editing it leaves the event alone. */
    json_object_set_new(u, "category", json_string("x"));
    assert_string_equal(json_string_value(json_object_get(e->update, "category")), "Lending");
    json_decref(o);
    assert_string_equal(rta_event_type_name(RTA_EVENT_TVL_CHANGE), "tvl_change");
    rta_event_unref(e);
}

static rta_event *mk(void)
{
    return rta_event_new(RTA_EVENT_TVL_CHANGE, "p", "c", NULL, "ingest");
}

static void test_log_count_bound(void **state)
{
    (void)state;
    rta_event_log *log = rta_event_log_new(4, 0);
    rta_bus *bus = rta_bus_new(log);
    for (int i = 0; i < 10; i++) {
        rta_event *e = mk();
        rta_bus_publish(bus, e);
        rta_event_unref(e);
    }
    assert_int_equal(rta_event_log_count(log), 4);
    assert_int_equal(rta_event_log_first_offset(log), 7);
    assert_int_equal(rta_event_log_last_offset(log), 10);

    rta_event *out[16];
    int complete = -1;
    size_t n = rta_event_log_read(log, 8, out, 16, &complete);
    assert_int_equal(n, 2);
    assert_int_equal(out[0]->offset, 9);
    assert_int_equal(out[1]->offset, 10);
    assert_int_equal(complete, 1);
    /* Offset 7 is still there: a reader at 6 missed nothing. */
    n = rta_event_log_read(log, 6, out, 16, &complete);
    assert_int_equal(n, 4);
    assert_int_equal(complete, 1);
    /* A reader at 3 missed 4..6. */
    n = rta_event_log_read(log, 3, out, 16, &complete);
    assert_int_equal(n, 4);
    assert_int_equal(out[0]->offset, 7);
    assert_int_equal(complete, 0);
    /* limit respected */
    n = rta_event_log_read(log, 0, out, 2, &complete);
    assert_int_equal(n, 2);
    assert_int_equal(out[1]->offset, 8);
    /* Up to date reader. */
    n = rta_event_log_read(log, 10, out, 16, &complete);
    assert_int_equal(n, 0);
    assert_int_equal(complete, 1);
    rta_bus_free(bus);
    rta_event_log_free(log);
}

static void test_log_age_bound(void **state)
{
    (void)state;
    rta_event_log *log = rta_event_log_new(100, 60000);
    rta_bus *bus = rta_bus_new(log);
    int64_t now_ms = rta_now_ms();
    for (int i = 0; i < 5; i++) {
        rta_event *e = mk();
        e->created_us = (now_ms - 120000 + i * 20000) * 1000; /* -120 s .. -40 s */
        rta_bus_publish(bus, e);
        rta_event_unref(e);
    }
    rta_event_log_trim(log, now_ms);
    /* Kept: -60 s (not older than the bound), -40 s. */
    assert_int_equal(rta_event_log_count(log), 2);
    assert_int_equal(rta_event_log_first_offset(log), 4);
    rta_event *out[8];
    int complete;
    assert_int_equal(rta_event_log_read(log, 2, out, 8, &complete), 2);
    assert_int_equal(complete, 0);
    rta_event_log_trim(log, now_ms + 3600000);
    assert_int_equal(rta_event_log_count(log), 0);
    assert_int_equal(rta_event_log_first_offset(log), 0);
    assert_int_equal(rta_event_log_read(log, 5, out, 8, &complete), 0);
    assert_int_equal(complete, 1);
    assert_int_equal(rta_event_log_read(log, 4, out, 8, &complete), 0);
    assert_int_equal(complete, 0);
    rta_bus_free(bus);
    rta_event_log_free(log);
}

typedef struct {
    int id;
    int *order;
    int *norder;
    uint64_t offsets[16];
    size_t noffsets;
    rta_event *kept;
} sub_ctx;

static void on_event(void *ud, rta_event *e)
{
    sub_ctx *c = ud;
    c->order[(*c->norder)++] = c->id;
    c->offsets[c->noffsets++] = e->offset;
    if (c->kept == NULL && c->id == 2)
        c->kept = rta_event_ref(e); /* keeps it past the callback */
}

static void test_bus_order_and_offsets(void **state)
{
    (void)state;
    rta_bus *bus = rta_bus_new(NULL);
    int order[64], norder = 0;
    sub_ctx a = {.id = 1, .order = order, .norder = &norder};
    sub_ctx b = {.id = 2, .order = order, .norder = &norder};
    assert_int_equal(rta_bus_subscribe(bus, on_event, &a), 0);
    assert_int_equal(rta_bus_subscribe(bus, on_event, &b), 0);
    rta_bus_set_last_offset(bus, 100); /* continue after a restart */
    for (int i = 0; i < 3; i++) {
        rta_event *e = mk();
        rta_event_json(e); /* encoded before publication: re-encoded with the offset */
        rta_bus_publish(bus, e);
        json_t *o = parse_rbuf(rta_event_json(e));
        assert_int_equal(json_integer_value(json_object_get(o, "offset")), e->offset);
        json_decref(o);
        rta_event_unref(e);
    }
    assert_int_equal(norder, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(order[i], i % 2 + 1);
    assert_int_equal(a.offsets[0], 101);
    assert_int_equal(a.offsets[1], 102);
    assert_int_equal(a.offsets[2], 103);
    assert_int_equal(b.offsets[2], 103);
    assert_int_equal(rta_bus_last_offset(bus), 103);
    /* b kept the first event: still alive, with one reference left. */
    assert_non_null(b.kept);
    assert_int_equal(b.kept->refcnt, 1);
    assert_int_equal(b.kept->offset, 101);
    rta_event_unref(b.kept);
    rta_bus_free(bus);
}

static void noop(void *ud, rta_event *e)
{
    (void)ud;
    (void)e;
}

static void test_bus_subscriber_limit(void **state)
{
    (void)state;
    rta_bus *bus = rta_bus_new(NULL);
    for (int i = 0; i < 32; i++)
        assert_int_equal(rta_bus_subscribe(bus, noop, NULL), 0);
    assert_int_equal(rta_bus_subscribe(bus, noop, NULL), -1);
    rta_bus_free(bus);
}

static void test_refcounts(void **state)
{
    (void)state;
    rta_event_log *log = rta_event_log_new(2, 0);
    rta_bus *bus = rta_bus_new(log);
    rta_event *e = mk();
    rta_bus_publish(bus, e);
    assert_int_equal(e->refcnt, 2); /* ours + the log's */
    rta_rbuf *json = rta_rbuf_ref(rta_event_json(e));
    rta_event *f = mk(), *g = mk();
    rta_bus_publish(bus, f);
    rta_bus_publish(bus, g); /* pushes e out of the log */
    assert_int_equal(e->refcnt, 1);
    rta_event_unref(e);
    assert_non_null(strstr(json->data, "\"offset\":1")); /* the rbuf outlives the event */
    rta_rbuf_unref(json);
    rta_event_unref(f);
    rta_event_unref(g);
    rta_bus_free(bus);
    rta_event_log_free(log); /* drops f and g: ASan reports any leak */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tvl_change_json),
        cmocka_unit_test(test_first_value_json_nulls),
        cmocka_unit_test(test_price_change_json),
        cmocka_unit_test(test_protocol_update_json),
        cmocka_unit_test(test_log_count_bound),
        cmocka_unit_test(test_log_age_bound),
        cmocka_unit_test(test_bus_order_and_offsets),
        cmocka_unit_test(test_bus_subscriber_limit),
        cmocka_unit_test(test_refcounts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
