/*
 * Unit tests for the Engine.IO / Socket.IO server's pure parts: request verification (the
 * reference server's error codes and their order), the outgoing queue and its polling payload
 * form, the broadcast encoder, and server setup/teardown on a loop (leaks show under ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rta/sio_server.h"
#include "socketio/server_internal.h"

/* A fake session table: "pollsid" is a polling session, "wssid" a websocket one. */
static int fake_lookup(void *ud, const char *sid)
{
    (void)ud;
    if (strcmp(sid, "pollsid") == 0)
        return RTA_SIO__POLLING;
    if (strcmp(sid, "wssid") == 0)
        return RTA_SIO__WEBSOCKET;
    return -1;
}

static int verify(const char *method, const char *query, int upgrade, rta_sio__reqinfo *info)
{
    return rta_sio__verify(method, query, upgrade, fake_lookup, NULL, info);
}

static void test_verify_handshake(void **state)
{
    rta_sio__reqinfo info;
    assert_int_equal(verify("GET", "EIO=4&transport=polling", 0, &info), -1);
    assert_int_equal(info.transport, RTA_SIO__POLLING);
    assert_false(info.has_sid);
    assert_int_equal(verify("GET", "EIO=4&transport=websocket", 1, &info), -1);
    assert_int_equal(info.transport, RTA_SIO__WEBSOCKET);
    /* the suite's failures */
    assert_int_equal(verify("GET", "transport=polling", 0, &info),
                     RTA_SIO__ERR_UNSUPPORTED_PROTOCOL_VERSION);
    assert_int_equal(verify("GET", "EIO=abc&transport=polling", 0, &info),
                     RTA_SIO__ERR_UNSUPPORTED_PROTOCOL_VERSION);
    assert_int_equal(verify("GET", "EIO=3&transport=polling", 0, &info),
                     RTA_SIO__ERR_UNSUPPORTED_PROTOCOL_VERSION);
    assert_int_equal(verify("GET", "EIO=4", 0, &info), RTA_SIO__ERR_UNKNOWN_TRANSPORT);
    assert_int_equal(verify("GET", "EIO=4&transport=abc", 0, &info),
                     RTA_SIO__ERR_UNKNOWN_TRANSPORT);
    assert_int_equal(verify("POST", "EIO=4&transport=polling", 0, &info),
                     RTA_SIO__ERR_BAD_HANDSHAKE_METHOD);
    assert_int_equal(verify("PUT", "EIO=4&transport=polling", 0, &info),
                     RTA_SIO__ERR_BAD_HANDSHAKE_METHOD);
    /* websocket only as an upgrade */
    assert_int_equal(verify("GET", "EIO=4&transport=websocket", 0, &info),
                     RTA_SIO__ERR_BAD_REQUEST);
    /* transport is checked before anything else */
    assert_int_equal(verify("PUT", "EIO=9", 0, &info), RTA_SIO__ERR_UNKNOWN_TRANSPORT);
}

static void test_verify_sid(void **state)
{
    rta_sio__reqinfo info;
    assert_int_equal(verify("GET", "EIO=4&transport=polling&sid=pollsid", 0, &info), -1);
    assert_true(info.has_sid);
    assert_string_equal(info.sid, "pollsid");
    assert_int_equal(verify("POST", "EIO=4&transport=polling&sid=pollsid", 0, &info), -1);
    assert_int_equal(verify("GET", "EIO=4&transport=polling&sid=nope", 0, &info),
                     RTA_SIO__ERR_UNKNOWN_SID);
    /* polling request for a session that upgraded: bad request */
    assert_int_equal(verify("GET", "EIO=4&transport=polling&sid=wssid", 0, &info),
                     RTA_SIO__ERR_BAD_REQUEST);
    /* the upgrade itself may change transport */
    assert_int_equal(verify("GET", "EIO=4&transport=websocket&sid=pollsid", 1, &info), -1);
    /* with a sid, EIO and method are not the handshake's business */
    assert_int_equal(verify("GET", "transport=polling&sid=pollsid", 0, &info), -1);
    /* a sid longer than any we hand out is unknown, not truncated into a match */
    char q[256];
    memset(q, 0, sizeof q);
    strcpy(q, "EIO=4&transport=polling&sid=pollsid");
    memset(q + strlen(q), 'x', 100);
    assert_int_equal(verify("GET", q, 0, &info), RTA_SIO__ERR_UNKNOWN_SID);
    /* empty sid = handshake */
    assert_int_equal(verify("GET", "EIO=4&transport=polling&sid=", 0, &info), -1);
    assert_false(info.has_sid);
}

static void test_query_raw(void **state)
{
    char buf[16];
    assert_string_equal(rta_sio__query_raw("a=1&EIO=4&b", "EIO", buf, sizeof buf), "4");
    assert_string_equal(rta_sio__query_raw("a=1&EIO=4&b", "b", buf, sizeof buf), "");
    assert_null(rta_sio__query_raw("xEIO=4", "EIO", buf, sizeof buf));
    assert_null(rta_sio__query_raw("", "EIO", buf, sizeof buf));
    assert_null(rta_sio__query_raw("EIO=0123456789abcdefgh", "EIO", buf, sizeof buf));
    assert_string_equal(rta_sio__error_message(1), "Session ID unknown");
    assert_string_equal(rta_sio__error_message(5), "Unsupported protocol version");
}

static void push_text(rta_sio__outq *q, const char *s)
{
    rta_rbuf *b = rta_rbuf_new(s, strlen(s));
    rta_sio__outq_push(q, b, NULL, 0);
    rta_rbuf_unref(b);
}

static void test_outq_payload(void **state)
{
    rta_sio__outq q;
    rta_sio__outq_init(&q);
    push_text(&q, "4hello");
    const unsigned char bin[] = {1, 2, 3, 4};
    rta_rbuf *b = rta_rbuf_new(bin, sizeof bin);
    rta_sio__outq_push(&q, b, NULL, 1);
    rta_rbuf_unref(b);
    push_text(&q, "2");
    assert_int_equal(q.count, 3);
    assert_int_equal(q.bytes, 6 + 4 + 1);

    /* too small an output: nothing consumed, output unchanged */
    rta_dbuf small;
    rta_dbuf_init(&small, 8);
    assert_int_equal(rta_sio__outq_payload(&q, &small), -1);
    assert_int_equal(small.len, 0);
    assert_int_equal(q.count, 3);
    rta_dbuf_free(&small);

    rta_dbuf out;
    rta_dbuf_init(&out, 1024);
    assert_int_equal(rta_sio__outq_payload(&q, &out), 0);
    assert_string_equal(out.data, "4hello\x1e" "bAQIDBA==\x1e" "2");
    assert_int_equal(q.count, 0);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
    /* appending to a non-empty payload adds a separator first */
    push_text(&q, "6");
    assert_int_equal(rta_sio__outq_payload(&q, &out), 0);
    assert_string_equal(out.data, "4hello\x1e" "bAQIDBA==\x1e" "2\x1e" "6");
    rta_dbuf_free(&out);
}

static void test_outq_pop_order_and_refs(void **state)
{
    rta_sio__outq q;
    rta_sio__outq_init(&q);
    rta_rbuf *shared = rta_rbuf_new("42[\"tick\",1]", 12);
    rta_rbuf *frame = rta_rbuf_new("\x81\x0c" "42[\"tick\",1]", 14);
    rta_sio__outq_push(&q, shared, frame, 0);
    push_text(&q, "2");
    assert_int_equal(shared->refcnt, 2);
    assert_int_equal(frame->refcnt, 2);
    rta_sio__outpkt *p = rta_sio__outq_pop(&q);
    assert_ptr_equal(p->data, shared);
    assert_ptr_equal(p->frame, frame);
    assert_int_equal(q.bytes, 1);
    rta_sio__outpkt_free(p);
    assert_int_equal(shared->refcnt, 1);
    p = rta_sio__outq_pop(&q);
    assert_memory_equal(p->data->data, "2", 1);
    rta_sio__outpkt_free(p);
    assert_null(rta_sio__outq_pop(&q));
    assert_null(q.tail);
    /* clear releases what is left */
    rta_sio__outq_push(&q, shared, NULL, 0);
    rta_sio__outq_clear(&q);
    assert_int_equal(shared->refcnt, 1);
    assert_int_equal(q.count, 0);
    rta_rbuf_unref(shared);
    rta_rbuf_unref(frame);
}

static void expect_broadcast(const char *nsp, const char *event, const char *arg,
                             const char *offset, const char *want)
{
    rta_rbuf *b = rta_sio_encode_broadcast(nsp, event, arg, arg ? strlen(arg) : 0, offset);
    assert_non_null(b);
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    rta_rbuf_unref(b);
}

static void test_encode_broadcast(void **state)
{
    expect_broadcast("/", "tick", "{\"p\":1}", NULL, "42[\"tick\",{\"p\":1}]");
    expect_broadcast("/feed", "tick", "[1,2]", "1700000000000-7",
                     "42/feed,[\"tick\",[1,2],\"1700000000000-7\"]");
    expect_broadcast("/", "a\"b", NULL, NULL, "42[\"a\\\"b\"]");
    assert_null(rta_sio_encode_broadcast("feed", "x", NULL, 0, NULL));
    assert_null(rta_sio_encode_broadcast("/a,b", "x", NULL, 0, NULL));
}

static int dummy_connect(void *ud, rta_sio_socket *s, json_t *auth, const rta_sio_handshake *hs,
                         json_t **err)
{
    return RTA_SIO_ACCEPT;
}

static void test_server_lifecycle(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rta_sio_options o;
    rta_sio_options_default(&o);
    assert_int_equal(o.ping_interval_ms, 25000);
    assert_int_equal(o.ping_timeout_ms, 20000);
    assert_int_equal(o.max_payload, 1000000);
    assert_string_equal(o.path, "/socket.io/");
    o.path = "/rt"; /* a trailing slash is added */
    rta_sio_server *srv = rta_sio_server_new(&loop, &o);
    assert_non_null(srv);
    rta_sio_namespace_handler h = {.on_connect = dummy_connect};
    assert_int_equal(rta_sio_server_namespace(srv, "/", &h, NULL), 0);
    assert_int_equal(rta_sio_server_namespace(srv, "/feed", &h, NULL), 0);
    assert_int_equal(rta_sio_server_namespace(srv, "/feed", &h, NULL), -1); /* duplicate */
    assert_int_equal(rta_sio_server_namespace(srv, "feed", &h, NULL), -1);
    assert_int_equal(rta_sio_server_namespace(srv, "/a,b", &h, NULL), -1);
    const rta_sio_stats *st = rta_sio_server_stats(srv);
    assert_int_equal(st->sessions_polling + st->sessions_websocket, 0);
    /* requests outside the path are not taken */
    rta_http_req req;
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.path = "/v1/protocols";
    req.query = "";
    assert_int_equal(rta_sio_server_handle_http(srv, &req), 0);
    req.path = "/rtx/";
    assert_int_equal(rta_sio_server_handle_http(srv, &req), 0);
    rta_sio_server_shutdown(srv);
    rta_sio_server_free(srv);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_handshake),
        cmocka_unit_test(test_verify_sid),
        cmocka_unit_test(test_query_raw),
        cmocka_unit_test(test_outq_payload),
        cmocka_unit_test(test_outq_pop_order_and_refs),
        cmocka_unit_test(test_encode_broadcast),
        cmocka_unit_test(test_server_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
