/*
 * Unit tests for the Engine.IO / Socket.IO server's pure parts: request verification (the
 * reference server's error codes and their order), the outgoing queue and its polling payload
 * form, the broadcast encoder, and server setup/teardown on a loop (leaks show under ASan);
 * a polling session and WebSocket sessions with and without permessage-deflate on loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "rta/http.h"
#include "rta/net.h"
#include "rta/sio_server.h"
#include "rta/ws.h"
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
    assert_string_equal(out.data, "4hello\x1e"
                                  "bAQIDBA==\x1e"
                                  "2");
    assert_int_equal(q.count, 0);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
    /* appending to a non-empty payload adds a separator first */
    push_text(&q, "6");
    assert_int_equal(rta_sio__outq_payload(&q, &out), 0);
    assert_string_equal(out.data, "4hello\x1e"
                                  "bAQIDBA==\x1e"
                                  "2\x1e"
                                  "6");
    rta_dbuf_free(&out);
}

static void test_outq_pop_order_and_refs(void **state)
{
    rta_sio__outq q;
    rta_sio__outq_init(&q);
    rta_rbuf *shared = rta_rbuf_new("42[\"tick\",1]", 12);
    rta_rbuf *frame = rta_rbuf_new("\x81\x0c"
                                   "42[\"tick\",1]",
                                   14);
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

/* ---- a real server on loopback, driven by a blocking client thread ---- */

typedef struct {
    uv_loop_t loop;
    uv_async_t done;
    rta_net *net;
    rta_http_server *http;
    rta_sio_server *sio;
    int port;
    /* recorded on the loop thread */
    char events[512];
    char disconnects[256];
    /* recorded by the client thread: each answer as "<status> <body>" */
    char answers[16][512];
    int nanswers;
} fixture;

static int fx_connect(void *ud, rta_sio_socket *s, json_t *auth, const rta_sio_handshake *hs,
                      json_t **err)
{
    const char *who = auth ? json_string_value(json_object_get(auth, "user")) : NULL;
    if (who && strcmp(who, "mallory") == 0) {
        *err = json_pack("{s:s}", "message", "nope");
        return RTA_SIO_REJECT;
    }
    rta_sio_socket_set_id(s, "fixed-socket-id");
    return RTA_SIO_ACCEPT;
}

static void fx_event(void *ud, rta_sio_socket *s, const char *event, json_t *args, int64_t id)
{
    fixture *fx = ud;
    char *a = json_dumps(args, JSON_COMPACT);
    size_t n = strlen(fx->events);
    snprintf(fx->events + n, sizeof fx->events - n, "%s%s:%lld;", event, a, (long long)id);
    free(a);
    if (strcmp(event, "hello") == 0)
        rta_sio_emit(s, "hi", json_array_get(args, 0));
    if (strcmp(event, "bcast") == 0) { /* the broadcast path, with its shared compressed frame */
        const char *arg = json_string_value(json_array_get(args, 0));
        char *js = json_dumps(json_array_get(args, 0), JSON_ENCODE_ANY);
        rta_rbuf *txt = rta_sio_encode_broadcast("/", "tick", js, strlen(js), "7");
        rta_rbuf *frm = rta_ws_frame(RTA_WS_OP_TEXT, txt->data, txt->len);
        rta_rbuf *dfl = rta_sio_socket_deflate(s)
                            ? rta_ws_frame_deflated(RTA_WS_OP_TEXT, txt->data, txt->len)
                            : NULL;
        n = strlen(fx->events);
        snprintf(fx->events + n, sizeof fx->events - n, "deflate=%d,%zu,%d;",
                 rta_sio_socket_deflate(s),
                 rta_sio_server_stats(fx->sio)->sessions_websocket_deflate, arg != NULL);
        rta_sio_send_packet_deflated(s, txt, frm, dfl);
        if (dfl)
            rta_rbuf_unref(dfl);
        rta_rbuf_unref(frm);
        rta_rbuf_unref(txt);
        free(js);
    }
    if (id >= 0)
        rta_sio_ack(s, id, args);
    if (strcmp(event, "kick") == 0)
        rta_sio_disconnect(s, "server namespace disconnect");
}

static void fx_disconnect(void *ud, rta_sio_socket *s, const char *reason)
{
    fixture *fx = ud;
    size_t n = strlen(fx->disconnects);
    snprintf(fx->disconnects + n, sizeof fx->disconnects - n, "%s;", reason);
}

static void fx_request(void *ud, rta_http_req *req)
{
    fixture *fx = ud;
    if (!rta_sio_server_handle_http(fx->sio, req))
        rta_http_send_error(req, 404, "not_found", "no such route", NULL);
}

static void fx_accept(void *ud, rta_conn *c)
{
    rta_http_server_accept(((fixture *)ud)->http, c);
}

static void fx_done(uv_async_t *a)
{
    fixture *fx = a->data;
    rta_sio_server_free(fx->sio);
    rta_net_stop_listening(fx->net);
    rta_net_close_all(fx->net);
    uv_close((uv_handle_t *)&fx->done, NULL);
}

/* One HTTP/1.0-style exchange (Connection: close); returns the status, body into out. */
static int http_call(int port, const char *method, const char *target, const char *body, char *out,
                     size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, target, body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char resp[8192];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    resp[got] = '\0';
    int status = 0;
    sscanf(resp, "HTTP/1.1 %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(out, outlen, "%s", b ? b + 4 : "");
    return status;
}

static void record(fixture *fx, int status, const char *body)
{
    if (fx->nanswers < 16)
        snprintf(fx->answers[fx->nanswers++], sizeof fx->answers[0], "%d %s", status, body);
}

static void *client_polling(void *arg)
{
    fixture *fx = arg;
    char body[4096], target[256], sid[64] = "";
    int st =
        http_call(fx->port, "GET", "/socket.io/?EIO=4&transport=polling", NULL, body, sizeof body);
    record(fx, st, st == 200 ? "open" : body);
    const char *p = strstr(body, "\"sid\":\"");
    if (p)
        sscanf(p + 7, "%63[^\"]", sid);
    snprintf(target, sizeof target, "/socket.io/?EIO=4&transport=polling&sid=%s", sid);
#define CALL(m, b)                                                                                 \
    do {                                                                                           \
        st = http_call(fx->port, m, target, b, body, sizeof body);                                 \
        record(fx, st, body);                                                                      \
    } while (0)
    CALL("POST", "40\x1e"
                 "40/nope,\x1e"
                 "40/feed,{\"user\":\"mallory\"}"); /* 1 */
    CALL("GET", NULL);                              /* 2 */
    CALL("POST", "42[\"hello\",1]\x1e"
                 "427[\"ask\",2]");  /* 3 */
    CALL("GET", NULL);               /* 4 */
    CALL("POST", "42[\"kick\"]");    /* 5 */
    CALL("GET", NULL);               /* 6 */
    CALL("POST", "42[\"hello\",1]"); /* 7: closes */
    CALL("GET", NULL);               /* 8 */
#undef CALL
    uv_async_send(&fx->done);
    return NULL;
}

/* Two polling sessions against a guest "/" and a 300 ms connect timeout: one joins only "/",
 * one joins "/" and then "/feed"; both wait 700 ms and then send an event. */
static void *client_guest(void *arg)
{
    fixture *fx = arg;
    for (int joins_feed = 0; joins_feed <= 1; joins_feed++) {
        char body[4096], target[256], sid[64] = "";
        int st = http_call(fx->port, "GET", "/socket.io/?EIO=4&transport=polling", NULL, body,
                           sizeof body);
        const char *p = strstr(body, "\"sid\":\"");
        if (p)
            sscanf(p + 7, "%63[^\"]", sid);
        snprintf(target, sizeof target, "/socket.io/?EIO=4&transport=polling&sid=%s", sid);
        st = http_call(fx->port, "POST", target,
                       joins_feed ? "40\x1e"
                                    "40/feed,"
                                  : "40",
                       body, sizeof body);
        st = http_call(fx->port, "GET", target, NULL, body, sizeof body); /* the CONNECT answers */
        record(fx, st, body);
        usleep(700 * 1000); /* past the connect timeout */
        st = http_call(fx->port, "POST", target,
                       joins_feed ? "42/feed,[\"hello\",2]" : "42[\"hello\",1]", body, sizeof body);
        record(fx, st, body);
    }
    uv_async_send(&fx->done);
    return NULL;
}

/* ---- a WebSocket client (blocking, masked with a zero key, reads server frames) ---- */

static int fx_deflate_opt; /* rta_sio_options.ws_permessage_deflate for run_with_client */
static int fx_guest_root;  /* "/" registered as a guest namespace, with a 300 ms connect timeout */

static void fx_upgrade(void *ud, rta_http_req *req, rta_conn *conn, const char *left, size_t n)
{
    fixture *fx = ud;
    if (!rta_sio_server_handle_upgrade(fx->sio, req, conn, left, n))
        rta_http_send_error(req, 404, "not_found", "no such route", NULL);
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void ws_send_text(int fd, const char *text)
{
    size_t n = strlen(text);
    unsigned char h[8] = {0x81};
    size_t hl;
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
        hl = 2;
    } else {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    }
    memset(h + hl, 0, 4); /* mask key 0: the payload goes as is */
    if (write(fd, h, hl + 4) != (ssize_t)(hl + 4) || write(fd, text, n) != (ssize_t)n)
        fprintf(stderr, "ws client: short write\n");
}

/* Reads one server frame into out (inflated when RSV1 is set): "<rsv1> <text>", "" on error. */
static void ws_read_text(int fd, char *out, size_t outlen)
{
    unsigned char h[10];
    out[0] = '\0';
    if (read_full(fd, h, 2) != 0)
        return;
    int rsv1 = (h[0] & 0x40) != 0;
    size_t n = h[1] & 0x7f;
    if (n == 126) {
        if (read_full(fd, h + 2, 2) != 0)
            return;
        n = ((size_t)h[2] << 8) | h[3];
    } else if (n == 127) {
        return;
    }
    unsigned char *pl = malloc(n + 4);
    if (read_full(fd, pl, n) != 0) {
        free(pl);
        return;
    }
    char text[4096];
    size_t tl = 0;
    if (rsv1) {
        memcpy(pl + n, "\0\0\xff\xff", 4);
        z_stream z;
        memset(&z, 0, sizeof z);
        inflateInit2(&z, -15);
        z.next_in = pl;
        z.avail_in = (uInt)(n + 4);
        z.next_out = (Bytef *)text;
        z.avail_out = sizeof text - 1;
        inflate(&z, Z_SYNC_FLUSH);
        tl = sizeof text - 1 - z.avail_out;
        inflateEnd(&z);
    } else {
        tl = n < sizeof text - 1 ? n : sizeof text - 1;
        memcpy(text, pl, tl);
    }
    text[tl] = '\0';
    free(pl);
    snprintf(out, outlen, "%d %s", rsv1, text);
}

static void *client_websocket(void *arg)
{
    fixture *fx = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char *req = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Extensions: permessage-deflate; "
                          "client_max_window_bits\r\n\r\n";
        if (write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
            char head[2048];
            size_t hl = 0;
            while (hl < sizeof head - 1 && read(fd, head + hl, 1) == 1) {
                hl++;
                if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
                    break;
            }
            head[hl] = '\0';
            const char *ext = strstr(head, "Sec-WebSocket-Extensions: ");
            char line[256] = "none";
            if (ext)
                sscanf(ext + 26, "%255[^\r]", line);
            record(fx, strncmp(head, "HTTP/1.1 101", 12) == 0 ? 101 : 0, line);
            char frame[512];
            ws_read_text(fd, frame, sizeof frame); /* the open packet */
            record(fx, 0, frame[0] ? (strncmp(frame, "0 0{", 4) == 0 ? "open" : frame) : "");
            ws_send_text(fd, "40");
            ws_read_text(fd, frame, sizeof frame);
            record(fx, 1, frame);
            char big[400];
            snprintf(big, sizeof big, "421[\"hello\",\"%0200d\"]", 0);
            ws_send_text(fd, big);
            ws_read_text(fd, frame, sizeof frame); /* the emit, framed by the server */
            record(fx, 2, frame);
            ws_read_text(fd, frame, sizeof frame); /* the ack */
            record(fx, 3, frame);
            snprintf(big, sizeof big, "42[\"bcast\",\"%0200d\"]", 1);
            ws_send_text(fd, big);
            ws_read_text(fd, frame, sizeof frame); /* the broadcast */
            record(fx, 4, frame);
        }
    }
    close(fd);
    uv_async_send(&fx->done);
    return NULL;
}

static void run_with_client(fixture *fx, void *(*client)(void *))
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_async_init(&fx->loop, &fx->done, fx_done);
    fx->done.data = fx;
    rta_sio_options o;
    rta_sio_options_default(&o);
    o.ping_interval_ms = 60000; /* no pings in the way of the script */
    o.ws_permessage_deflate = fx_deflate_opt;
    if (fx_guest_root)
        o.connect_timeout_ms = 300;
    fx->sio = rta_sio_server_new(&fx->loop, &o);
    rta_sio_namespace_handler h = {fx_connect, NULL, fx_event, fx_disconnect, 0};
    rta_sio_namespace_handler root = h;
    root.guest = fx_guest_root;
    assert_int_equal(rta_sio_server_namespace(fx->sio, "/", &root, fx), 0);
    assert_int_equal(rta_sio_server_namespace(fx->sio, "/feed", &h, fx), 0);
    rta_http_limits lim = {16384, 2000000, 5000, 5000, 5000};
    fx->http = rta_http_server_new(&lim, fx_request, fx);
    rta_http_server_set_upgrade(fx->http, fx_upgrade);
    fx->net = rta_net_new(&fx->loop, 64, fx_accept, fx);
    assert_int_equal(rta_net_listen(fx->net, "127.0.0.1", 0, NULL), 0);
    fx->port = rta_net_bound_port(fx->net);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client, fx), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    rta_net_free(fx->net);
    rta_http_server_free(fx->http);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void test_polling_socketio_session(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    run_with_client(fx, client_polling);
    assert_int_equal(fx->nanswers, 9);
    assert_string_equal(fx->answers[0], "200 open");
    assert_string_equal(fx->answers[1], "200 ok");
    /* CONNECT answers in order: accepted with the id set by the handler, unknown namespace,
     * refused by the handler with its error */
    assert_string_equal(fx->answers[2], "200 40{\"sid\":\"fixed-socket-id\"}\x1e"
                                        "44/nope,{\"message\":\"Invalid namespace\"}\x1e"
                                        "44/feed,{\"message\":\"nope\"}");
    assert_string_equal(fx->answers[3], "200 ok");
    /* the emit and the ack of one POST leave in one payload */
    assert_string_equal(fx->answers[4], "200 42[\"hi\",1]\x1e"
                                        "437[2]");
    assert_string_equal(fx->answers[6], "200 41");
    /* an event for a namespace the client is not in closes the session */
    assert_string_equal(fx->answers[7], "200 ok");
    assert_string_equal(fx->answers[8], "400 {\"code\":1,\"message\":\"Session ID unknown\"}");
    assert_string_equal(fx->events, "hello[1]:-1;ask[2]:7;kick[]:-1;");
    assert_string_equal(fx->disconnects, "server namespace disconnect;");
    free(fx);
}

/* A guest namespace does not hold a session: joined alone, the session is closed at the connect
 * timeout; joined beside a real one, the session lives on. */
static void test_guest_namespace(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx_guest_root = 1;
    run_with_client(fx, client_guest);
    fx_guest_root = 0;
    assert_int_equal(fx->nanswers, 4);
    assert_string_equal(fx->answers[0], "200 40{\"sid\":\"fixed-socket-id\"}");
    assert_string_equal(fx->answers[1], "400 {\"code\":1,\"message\":\"Session ID unknown\"}");
    assert_string_equal(fx->answers[2], "200 40{\"sid\":\"fixed-socket-id\"}\x1e"
                                        "40/feed,{\"sid\":\"fixed-socket-id\"}");
    assert_string_equal(fx->answers[3], "200 ok");
    assert_string_equal(fx->events, "hello[2]:-1;");
    free(fx);
}

/* The WebSocket transport with a client offering permessage-deflate: with the option on, the
 * 101 answers it, short packets go plain, the emit and ack (framed by the server, >= 128 bytes)
 * and the broadcast (shared compressed frame) go compressed and inflate to the exact packets;
 * with it off, no extension and everything plain. */
static void ws_session(int deflate)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx_deflate_opt = deflate;
    run_with_client(fx, client_websocket);
    fx_deflate_opt = 0;
    assert_int_equal(fx->nanswers, 6);
    char want[1024], zeros[201];
    memset(zeros, '0', 200);
    zeros[200] = '\0';
    assert_string_equal(fx->answers[0], deflate ? "101 permessage-deflate; "
                                                  "server_no_context_takeover"
                                                : "101 none");
    assert_string_equal(fx->answers[1], "0 open");
    assert_string_equal(fx->answers[2], "1 0 40{\"sid\":\"fixed-socket-id\"}");
    snprintf(want, sizeof want, "2 %d 42[\"hi\",\"%s\"]", deflate, zeros);
    assert_string_equal(fx->answers[3], want);
    snprintf(want, sizeof want, "3 %d 431[\"%s\"]", deflate, zeros);
    assert_string_equal(fx->answers[4], want);
    zeros[199] = '1';
    snprintf(want, sizeof want, "4 %d 42[\"tick\",\"%s\",\"7\"]", deflate, zeros);
    assert_string_equal(fx->answers[5], want);
    /* the stats count the session while it is open, and only when it negotiated deflate */
    snprintf(want, sizeof want, "hello[\"%0200d\"]:1;bcast[\"%0200d\"]:-1;deflate=%d,%d,1;", 0, 1,
             deflate, deflate);
    assert_string_equal(fx->events, want);
    free(fx);
}

static void test_websocket_deflate(void **state)
{
    ws_session(1);
}

static void test_websocket_no_deflate(void **state)
{
    ws_session(0);
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
        cmocka_unit_test(test_polling_socketio_session),
        cmocka_unit_test(test_guest_namespace),
        cmocka_unit_test(test_websocket_deflate),
        cmocka_unit_test(test_websocket_no_deflate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
