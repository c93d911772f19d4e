/*
 * Unit tests for src/ws/ws.c: a real libuv loop with an rta_net listener on 127.0.0.1:0 and
 * the HTTP server, whose upgrade handler accepts WebSockets on /echo (an echo route that
 * exists only here). The client side is a plain non-blocking TCP socket driven from the test:
 * raw HTTP upgrade requests, raw masked frames, server frames parsed by hand. Single thread:
 * the test pumps the loop (UV_RUN_NOWAIT) while it waits for bytes, with iteration caps only
 * as a safety net.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <zlib.h>

#include "rta/http.h"
#include "rta/log.h"
#include "rta/net.h"
#include "rta/ws.h"

#define MAX_WS 8

typedef struct {
    uv_loop_t loop;
    rta_net *net;
    rta_http_server *http;
    int port;
    rta_ws_options opts;
    int echo;
    rta_ws *ws[MAX_WS]; /* accepted, in order; NULL once closed */
    size_t nws;
    int closes;
    int close_code[MAX_WS];
    char close_reason[MAX_WS][64];
    int messages;
    int writable_calls;
} harness;

static harness H;

/* ---- server side ---- */

static int slot_of(rta_ws *ws)
{
    return (int)(intptr_t)rta_ws_get_data(ws);
}

static void on_message(rta_ws *ws, int opcode, const char *data, size_t len)
{
    H.messages++;
    if (len == 12 && memcmp(data, "please close", 12) == 0) {
        rta_ws_close(ws, 4001, "asked");
        return;
    }
    if (len == 12 && memcmp(data, "please abort", 12) == 0) {
        rta_ws_abort(ws, "asked");
        assert_int_equal(H.closes, 0); /* deferred: we are inside a ws callback */
        return;
    }
    if (H.echo)
        rta_ws_send(ws, opcode, data, len);
}

static void on_writable(rta_ws *ws)
{
    H.writable_calls++;
}

static void on_close(rta_ws *ws, int code, const char *reason)
{
    int i = slot_of(ws);
    H.ws[i] = NULL;
    H.close_code[i] = code;
    snprintf(H.close_reason[i], sizeof H.close_reason[i], "%s", reason);
    H.closes++;
}

static const rta_ws_handler handler = {
    .on_message = on_message,
    .on_writable = on_writable,
    .on_close = on_close,
};

static void on_upgrade(void *ud, rta_http_req *req, rta_conn *conn, const char *leftover,
                       size_t len)
{
    if (strcmp(req->path, "/echo") != 0) {
        rta_http_send_error(req, 404, "not_found", "no such websocket endpoint", NULL);
        return;
    }
    int slot = (int)H.nws;
    rta_ws *ws = rta_ws_accept(req, conn, leftover, len, &H.opts, &handler, (void *)(intptr_t)slot);
    if (ws) {
        assert_true(H.nws < MAX_WS);
        H.ws[H.nws++] = ws;
    }
}

static void on_request(void *ud, rta_http_req *req)
{
    rta_http_send_error(req, 404, "not_found", "not found", NULL);
}

static void on_accept(void *ud, rta_conn *c)
{
    rta_http_server_accept(H.http, c);
}

/* Writer threads for the conns' writes (rta_net_set_writers): the whole suite runs without
 * and then with them, since every behaviour must be the same either way. */
static unsigned use_writers;

static int setup(void **state)
{
    memset(&H, 0, sizeof H);
    rta_log_set_level(RTA_LOG_WARN);
    assert_int_equal(uv_loop_init(&H.loop), 0);
    rta_http_limits lim = {
        .max_header_bytes = 16384,
        .max_body_bytes = 65536,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
    };
    H.http = rta_http_server_new(&lim, on_request, NULL);
    rta_http_server_set_upgrade(H.http, on_upgrade);
    H.net = rta_net_new(&H.loop, 64, on_accept, NULL);
    assert_int_equal(rta_net_set_writers(H.net, use_writers), 0);
    assert_int_equal(rta_net_writers(H.net), use_writers);
    assert_int_equal(rta_net_listen(H.net, "127.0.0.1", 0, NULL), 0);
    H.port = rta_net_bound_port(H.net);
    rta_ws_options_default(&H.opts);
    H.echo = 1;
    return 0;
}

static int teardown(void **state)
{
    rta_net_stop_listening(H.net);
    rta_net_close_all(H.net);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    rta_net_free(H.net);
    rta_http_server_free(H.http);
    assert_int_equal(uv_loop_close(&H.loop), 0);
    return 0;
}

static void pump(int n)
{
    for (int i = 0; i < n; i++)
        uv_run(&H.loop, UV_RUN_NOWAIT);
}

/* ---- client side ---- */

typedef struct {
    int fd;
    char buf[1 << 20];
    size_t len;
    int eof;
} client;

static client *client_connect(void)
{
    client *cl = calloc(1, sizeof *cl);
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(cl->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)H.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(cl->fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK);
    return cl;
}

static void client_free(client *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    free(cl);
}

static void client_send(client *cl, const void *data, size_t len)
{
    const char *p = data;
    int spins = 0;
    while (len > 0) {
        ssize_t n = send(cl->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else {
            assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            assert_true(++spins < 100000);
            pump(1);
        }
    }
}

/* One loop turn and whatever the socket has now. */
static void client_poll(client *cl)
{
    pump(1);
    while (!cl->eof && cl->len < sizeof cl->buf) {
        ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len, 0);
        if (n > 0)
            cl->len += (size_t)n;
        else if (n == 0)
            cl->eof = 1;
        else if (errno == ECONNRESET)
            cl->eof = 1;
        else
            break;
    }
}

/* Pumps until cond holds; fails the test after ~5 s of nothing. */
#define WAIT_UNTIL(cl, cond)                                                                       \
    do {                                                                                           \
        int spins_ = 0;                                                                            \
        while (!(cond)) {                                                                          \
            client_poll(cl);                                                                       \
            if (cond)                                                                              \
                break;                                                                             \
            assert_true(++spins_ < 5000);                                                          \
            usleep(1000);                                                                          \
        }                                                                                          \
    } while (0)

static void client_consume(client *cl, size_t n)
{
    memmove(cl->buf, cl->buf + n, cl->len - n);
    cl->len -= n;
}

/* A client frame: masked unless told otherwise. */
static size_t build_frame(unsigned char *out, int fin, int op, int masked, const void *payload,
                          size_t len)
{
    size_t h = 0;
    out[h++] = (unsigned char)((fin ? 0x80 : 0) | op);
    unsigned char m = masked ? 0x80 : 0;
    if (len < 126) {
        out[h++] = (unsigned char)(m | len);
    } else if (len <= 0xffff) {
        out[h++] = m | 126;
        out[h++] = (unsigned char)(len >> 8);
        out[h++] = (unsigned char)len;
    } else {
        out[h++] = m | 127;
        for (int i = 0; i < 8; i++)
            out[h++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (masked) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++)
        out[h + i] = masked ? (unsigned char)(p[i] ^ key[i % 4]) : p[i];
    return h + len;
}

static void client_send_frame(client *cl, int fin, int op, int masked, const void *payload,
                              size_t len)
{
    unsigned char *f = malloc(len + 14);
    size_t n = build_frame(f, fin, op, masked, payload, len);
    client_send(cl, f, n);
    free(f);
}

/* Parses one server frame at the head of the buffer; 0 when incomplete. */
static size_t parse_frame(const client *cl, int *fin, int *op, size_t *plen, size_t *poff)
{
    const unsigned char *b = (const unsigned char *)cl->buf;
    if (cl->len < 2)
        return 0;
    *fin = b[0] >> 7;
    *op = b[0] & 0x0f;
    assert_int_equal(b[1] & 0x80, 0); /* server frames are never masked */
    size_t len = b[1] & 0x7f, h = 2;
    if (len == 126) {
        if (cl->len < 4)
            return 0;
        len = ((size_t)b[2] << 8) | b[3];
        h = 4;
    } else if (len == 127) {
        if (cl->len < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | b[2 + i];
        h = 10;
    }
    if (cl->len < h + len)
        return 0;
    *plen = len;
    *poff = h;
    return h + len;
}

typedef struct {
    int fin, op, rsv1;
    size_t len;
    char data[70000];
} frame;

static int have_frame(const client *cl)
{
    int fin, op;
    size_t plen = 0, poff = 0;
    return parse_frame(cl, &fin, &op, &plen, &poff) > 0;
}

static void client_read_frame(client *cl, frame *f)
{
    WAIT_UNTIL(cl, have_frame(cl) || cl->eof);
    size_t poff = 0;
    size_t n = parse_frame(cl, &f->fin, &f->op, &f->len, &poff);
    assert_true(n > 0);
    f->rsv1 = ((unsigned char)cl->buf[0] >> 6) & 1;
    assert_true(f->len < sizeof f->data);
    memcpy(f->data, cl->buf + poff, f->len);
    f->data[f->len] = 0;
    client_consume(cl, n);
}

static int close_code(const frame *f)
{
    assert_int_equal(f->op, RTA_WS_OP_CLOSE);
    assert_true(f->len >= 2);
    return ((unsigned char)f->data[0] << 8) | (unsigned char)f->data[1];
}

static void client_wait_eof(client *cl)
{
    WAIT_UNTIL(cl, cl->eof);
}

#define REQ_FMT                                                                                    \
    "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"                                 \
    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n%s\r\n"
static const char *sample_key = "dGhlIHNhbXBsZSBub25jZQ==";

/* Reads an HTTP response head (and its Content-Length body) into out. */
static void client_read_http(client *cl, char *out, size_t outlen)
{
    WAIT_UNTIL(cl, memmem(cl->buf, cl->len, "\r\n\r\n", 4) != NULL || cl->eof);
    char *end = memmem(cl->buf, cl->len, "\r\n\r\n", 4);
    assert_non_null(end);
    size_t head = (size_t)(end - cl->buf) + 4;
    size_t body = 0;
    char *cl_hdr = memmem(cl->buf, head, "Content-Length: ", 16);
    if (cl_hdr)
        body = strtoul(cl_hdr + 16, NULL, 10);
    WAIT_UNTIL(cl, cl->len >= head + body || cl->eof);
    assert_true(cl->len >= head + body);
    size_t n = head + body < outlen - 1 ? head + body : outlen - 1;
    memcpy(out, cl->buf, n);
    out[n] = 0;
    client_consume(cl, head + body);
}

/* Connects and completes the opening handshake on /echo. */
static client *ws_connect(void)
{
    client *cl = client_connect();
    char req[1024];
    snprintf(req, sizeof req, REQ_FMT, "/echo", sample_key, "13", "");
    client_send(cl, req, strlen(req));
    char resp[4096];
    size_t before = H.nws;
    client_read_http(cl, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 101 "));
    assert_int_equal(H.nws, before + 1);
    return cl;
}

/* ---- tests ---- */

static void test_handshake_ok(void **state)
{
    client *cl = client_connect();
    char req[1024];
    snprintf(req, sizeof req, REQ_FMT, "/echo", sample_key, "13",
             "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    client_send(cl, req, strlen(req));
    char resp[4096];
    client_read_http(cl, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr(resp, "Upgrade: websocket\r\n"));
    assert_non_null(strstr(resp, "Connection: Upgrade\r\n"));
    /* RFC 6455 section 1.3 sample */
    assert_non_null(strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    /* permessage-deflate is off unless opts.permessage_deflate */
    assert_null(strstr(resp, "Sec-WebSocket-Extensions"));
    assert_int_equal(H.nws, 1);
    assert_non_null(rta_ws_conn(H.ws[0]));
    client_free(cl); /* TCP gone without a close frame */
    for (int i = 0; H.closes == 0; i++) {
        assert_true(i < 5000);
        pump(1);
        usleep(1000);
    }
    assert_int_equal(H.close_code[0], 1006);
}

static void test_handshake_subprotocol(void **state)
{
    H.opts.subprotocol = "rta.v1";
    client *cl = client_connect();
    char req[1024];
    snprintf(req, sizeof req, REQ_FMT, "/echo", sample_key, "13",
             "Sec-WebSocket-Protocol: chat, rta.v1\r\n");
    client_send(cl, req, strlen(req));
    char resp[4096];
    client_read_http(cl, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 101 "));
    assert_non_null(strstr(resp, "Sec-WebSocket-Protocol: rta.v1\r\n"));
    client_free(cl);
}

static void expect_refusal(const char *key, const char *version, int status, const char *code)
{
    client *cl = client_connect();
    char req[1024];
    snprintf(req, sizeof req, REQ_FMT, "/echo", key, version, "");
    client_send(cl, req, strlen(req));
    char resp[4096];
    client_read_http(cl, resp, sizeof resp);
    char want[64];
    snprintf(want, sizeof want, "HTTP/1.1 %d ", status);
    assert_non_null(strstr(resp, want));
    assert_non_null(strstr(resp, code));
    if (status == 426)
        assert_non_null(strstr(resp, "Sec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(resp, "Connection: close\r\n"));
    client_wait_eof(cl);
    client_free(cl);
    assert_int_equal(H.nws, 0);
}

static void test_handshake_failures(void **state)
{
    expect_refusal("not-a-key", "13", 400, "\"invalid_websocket_key\"");
    expect_refusal(sample_key, "8", 426, "\"upgrade_required\"");

    /* no Upgrade token: the HTTP layer does not even see an upgrade -> ordinary 404 here;
     * a missing Connection: upgrade token the same. A missing Host is refused by ws. */
    client *cl = client_connect();
    const char *req = "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n";
    client_send(cl, req, strlen(req));
    char resp[4096];
    client_read_http(cl, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 400 "));
    assert_non_null(strstr(resp, "\"invalid_host\""));
    client_wait_eof(cl);
    client_free(cl);

    /* the upgrade handler may refuse for its own reasons too */
    cl = client_connect();
    char req2[1024];
    snprintf(req2, sizeof req2, REQ_FMT, "/nope", sample_key, "13", "");
    client_send(cl, req2, strlen(req2));
    client_read_http(cl, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 404 "));
    client_wait_eof(cl);
    client_free(cl);
    assert_int_equal(H.nws, 0);
}

static void test_echo_text_and_binary(void **state)
{
    client *cl = ws_connect();
    frame f;
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, "héllo", strlen("héllo"));
    client_read_frame(cl, &f);
    assert_int_equal(f.op, RTA_WS_OP_TEXT);
    assert_int_equal(f.fin, 1);
    assert_string_equal(f.data, "héllo");

    unsigned char bin[300];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7);
    client_send_frame(cl, 1, RTA_WS_OP_BINARY, 1, bin, sizeof bin); /* 16-bit length */
    client_read_frame(cl, &f);
    assert_int_equal(f.op, RTA_WS_OP_BINARY);
    assert_int_equal(f.len, sizeof bin);
    assert_memory_equal(f.data, bin, sizeof bin);

    char *big = malloc(66000); /* 64-bit length both ways */
    memset(big, 'x', 66000);
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, big, 66000);
    client_read_frame(cl, &f);
    assert_int_equal(f.len, 66000);
    assert_memory_equal(f.data, big, 66000);
    free(big);

    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, "", 0);
    client_read_frame(cl, &f);
    assert_int_equal(f.op, RTA_WS_OP_TEXT);
    assert_int_equal(f.len, 0);
    assert_int_equal(H.messages, 4);
    client_free(cl);
}

static void test_fragments_and_ping(void **state)
{
    client *cl = ws_connect();
    frame f;
    client_send_frame(cl, 0, RTA_WS_OP_TEXT, 1, "Hel", 3);
    client_send_frame(cl, 1, RTA_WS_OP_PING, 1, "p1", 2); /* control frame between fragments */
    client_send_frame(cl, 0, RTA_WS_OP_CONT, 1, "lo, ", 4);
    client_send_frame(cl, 1, RTA_WS_OP_CONT, 1, "world", 5);
    client_read_frame(cl, &f);
    assert_int_equal(f.op, RTA_WS_OP_PONG);
    assert_string_equal(f.data, "p1");
    client_read_frame(cl, &f);
    assert_int_equal(f.op, RTA_WS_OP_TEXT);
    assert_string_equal(f.data, "Hello, world");
    assert_int_equal(H.messages, 1);

    /* a ping alone, and a pong from the client is ignored */
    client_send_frame(cl, 1, RTA_WS_OP_PONG, 1, "x", 1);
    client_send_frame(cl, 1, RTA_WS_OP_PING, 1, "", 0);
    client_read_frame(cl, &f);
    assert_int_equal(f.op, RTA_WS_OP_PONG);
    assert_int_equal(f.len, 0);
    assert_int_equal(H.messages, 1);
    client_free(cl);
}

/* The peer breaks a rule: the server sends close with code, then drops the connection. */
static void expect_protocol_close(client *cl, int code)
{
    frame f;
    client_read_frame(cl, &f);
    assert_int_equal(close_code(&f), code);
    client_wait_eof(cl);
    WAIT_UNTIL(cl, H.closes == 1);
    assert_int_equal(H.close_code[0], code);
    client_free(cl);
}

static void test_unmasked_frame(void **state)
{
    client *cl = ws_connect();
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 0, "hi", 2);
    expect_protocol_close(cl, 1002);
    assert_int_equal(H.messages, 0);
}

static void test_bad_control_frame(void **state)
{
    client *cl = ws_connect();
    client_send_frame(cl, 0, RTA_WS_OP_PING, 1, "x", 1); /* fragmented control frame */
    expect_protocol_close(cl, 1002);
}

static void test_bad_continuation(void **state)
{
    client *cl = ws_connect();
    client_send_frame(cl, 1, RTA_WS_OP_CONT, 1, "x", 1); /* nothing to continue */
    expect_protocol_close(cl, 1002);
}

static void test_invalid_utf8(void **state)
{
    client *cl = ws_connect();
    const char bad[] = {'o', 'k', (char)0xc3, (char)0x28};
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, bad, sizeof bad);
    expect_protocol_close(cl, 1007);
    assert_int_equal(H.messages, 0);
}

static void test_invalid_utf8_across_fragments(void **state)
{
    client *cl = ws_connect();
    const char part[] = {'a', (char)0xe2, (char)0x82}; /* euro sign cut short... */
    client_send_frame(cl, 0, RTA_WS_OP_TEXT, 1, part, sizeof part);
    client_send_frame(cl, 1, RTA_WS_OP_CONT, 1, "b", 1); /* ...and never finished */
    expect_protocol_close(cl, 1007);
}

static void test_oversize_message(void **state)
{
    H.opts.max_message_bytes = 1000;
    H.opts.max_frame_bytes = 1000;
    client *cl = ws_connect();
    char buf[1200];
    memset(buf, 'a', sizeof buf);
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, buf, 1001);
    expect_protocol_close(cl, 1009);
    assert_int_equal(H.messages, 0);
}

static void test_oversize_fragmented(void **state)
{
    H.opts.max_message_bytes = 1000;
    client *cl = ws_connect();
    char buf[600];
    memset(buf, 'a', sizeof buf);
    client_send_frame(cl, 0, RTA_WS_OP_TEXT, 1, buf, sizeof buf);
    client_send_frame(cl, 1, RTA_WS_OP_CONT, 1, buf, sizeof buf);
    expect_protocol_close(cl, 1009);
    assert_int_equal(H.messages, 0);
}

static void test_oversize_frame(void **state)
{
    H.opts.max_frame_bytes = 100;
    client *cl = ws_connect();
    char buf[200];
    memset(buf, 'a', sizeof buf);
    client_send_frame(cl, 1, RTA_WS_OP_BINARY, 1, buf, sizeof buf);
    expect_protocol_close(cl, 1009);
    assert_int_equal(H.messages, 0);
}

static void test_close_from_client(void **state)
{
    client *cl = ws_connect();
    unsigned char payload[] = {0x03, 0xe8, 'b', 'y', 'e'}; /* 1000 "bye" */
    client_send_frame(cl, 1, RTA_WS_OP_CLOSE, 1, payload, sizeof payload);
    frame f;
    client_read_frame(cl, &f);
    assert_int_equal(close_code(&f), 1000); /* answered with the same code */
    client_wait_eof(cl);
    WAIT_UNTIL(cl, H.closes == 1);
    assert_int_equal(H.close_code[0], 1000);
    client_free(cl);
}

static void test_close_from_server(void **state)
{
    client *cl = ws_connect();
    rta_ws *ws = H.ws[0];
    assert_int_equal(rta_ws_send(ws, RTA_WS_OP_TEXT, "last", 4), RTA_WS_OK);
    rta_ws_close(ws, 4000, "bye now");
    /* nothing can be queued after the close frame */
    assert_int_equal(rta_ws_send(ws, RTA_WS_OP_TEXT, "late", 4), RTA_WS_CLOSED);
    frame f;
    client_read_frame(cl, &f);
    assert_string_equal(f.data, "last"); /* in order: data, then close */
    client_read_frame(cl, &f);
    assert_int_equal(close_code(&f), 4000);
    assert_string_equal(f.data + 2, "bye now");
    assert_int_equal(H.closes, 0);          /* waiting for the peer's close */
    unsigned char payload[] = {0x0f, 0xa0}; /* 4000 */
    client_send_frame(cl, 1, RTA_WS_OP_CLOSE, 1, payload, sizeof payload);
    client_wait_eof(cl);
    WAIT_UNTIL(cl, H.closes == 1);
    assert_int_equal(H.close_code[0], 4000);
    /* the server sent exactly one close frame */
    assert_int_equal(cl->len, 0);
    client_free(cl);
}

static void test_close_timeout(void **state)
{
    H.opts.close_timeout_ms = 50;
    client *cl = ws_connect();
    rta_ws_close(H.ws[0], 1001, "going away");
    frame f;
    client_read_frame(cl, &f);
    assert_int_equal(close_code(&f), 1001);
    /* the client never answers: the server drops the conn after close_timeout_ms */
    client_wait_eof(cl);
    WAIT_UNTIL(cl, H.closes == 1);
    assert_int_equal(H.close_code[0], 1001);
    client_free(cl);
}

static void test_idle_timeout(void **state)
{
    H.opts.idle_timeout_ms = 50;
    H.opts.close_timeout_ms = 50;
    client *cl = ws_connect();
    frame f;
    client_read_frame(cl, &f);
    assert_int_equal(close_code(&f), 1001);
    client_wait_eof(cl);
    client_free(cl);
}

static void test_abort(void **state)
{
    client *cl = ws_connect();
    rta_ws_abort(H.ws[0], "abusive");
    assert_int_equal(H.closes, 1); /* outside any ws callback: at once */
    assert_int_equal(H.close_code[0], 1006);
    assert_string_equal(H.close_reason[0], "abusive");
    client_wait_eof(cl);
    assert_int_equal(cl->len, 0); /* no close frame */
    client_free(cl);
}

static void test_leftover_after_upgrade(void **state)
{
    client *cl = client_connect();
    char req[2048];
    snprintf(req, sizeof req, REQ_FMT, "/echo", sample_key, "13", "");
    size_t n = strlen(req);
    n += build_frame((unsigned char *)req + n, 1, RTA_WS_OP_TEXT, 1, "early", 5);
    client_send(cl, req, n); /* request and first frame in one segment */
    char resp[4096];
    client_read_http(cl, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 101 "));
    frame f;
    client_read_frame(cl, &f);
    assert_string_equal(f.data, "early");
    client_free(cl);
}

static void test_shared_frame(void **state)
{
    H.echo = 0;
    client *cl[3];
    for (int i = 0; i < 3; i++)
        cl[i] = ws_connect();
    rta_rbuf *fr = rta_ws_frame(RTA_WS_OP_TEXT, "tick", 4);
    assert_int_equal(fr->len, 6);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rta_ws_send_frame(H.ws[i], fr), RTA_WS_OK);
    assert_int_equal(fr->refcnt, 4); /* one buffer, referenced by every queue */
    rta_rbuf_unref(fr);
    for (int i = 0; i < 3; i++) {
        frame f;
        client_read_frame(cl[i], &f);
        assert_int_equal(f.op, RTA_WS_OP_TEXT);
        assert_string_equal(f.data, "tick");
        client_free(cl[i]);
    }
}

static void test_frame_encoding(void **state)
{
    rta_rbuf *f = rta_ws_frame(RTA_WS_OP_BINARY, "ab", 2);
    assert_int_equal(f->len, 4);
    assert_int_equal((unsigned char)f->data[0], 0x82);
    assert_int_equal((unsigned char)f->data[1], 2);
    rta_rbuf_unref(f);
    char *p = calloc(1, 70000);
    f = rta_ws_frame(RTA_WS_OP_TEXT, p, 125);
    assert_int_equal(f->len, 127);
    rta_rbuf_unref(f);
    f = rta_ws_frame(RTA_WS_OP_TEXT, p, 126);
    assert_int_equal(f->len, 130);
    assert_int_equal((unsigned char)f->data[1], 126);
    assert_int_equal((unsigned char)f->data[2], 0);
    assert_int_equal((unsigned char)f->data[3], 126);
    rta_rbuf_unref(f);
    f = rta_ws_frame(RTA_WS_OP_TEXT, p, 65536);
    assert_int_equal(f->len, 65536 + 10);
    assert_int_equal((unsigned char)f->data[1], 127);
    assert_int_equal((unsigned char)f->data[7], 1); /* 0x00..0x010000 big-endian */
    assert_int_equal((unsigned char)f->data[8], 0);
    rta_rbuf_unref(f);
    free(p);
}

static void test_coalescing(void **state)
{
    H.echo = 0;
    client *cl = ws_connect();
    rta_ws *ws = H.ws[0];
    rta_conn *c = rta_ws_conn(ws);
    WAIT_UNTIL(cl, c->writes_in_flight == 0);
    uint64_t writes_before = rta_net_get_stats(c->net)->writes;
    /* three sends in one loop turn ... */
    assert_int_equal(rta_ws_send(ws, RTA_WS_OP_TEXT, "one", 3), RTA_WS_OK);
    assert_int_equal(rta_ws_send(ws, RTA_WS_OP_TEXT, "two", 3), RTA_WS_OK);
    assert_int_equal(rta_ws_send(ws, RTA_WS_OP_TEXT, "three", 5), RTA_WS_OK);
    assert_int_equal(rta_ws_queued_bytes(ws), 5 + 5 + 7);
    /* nothing written before the check phase */
    assert_int_equal(rta_net_get_stats(c->net)->writes, writes_before);
    pump(1);
    /* ... leave in one write */
    assert_int_equal(rta_net_get_stats(c->net)->writes, writes_before + 1);
    const char *want[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        frame f;
        client_read_frame(cl, &f);
        assert_string_equal(f.data, want[i]);
    }
    client_free(cl);
}

static void test_backpressure(void **state)
{
    H.echo = 0;
    H.opts.max_queued_bytes = 256 * 1024;
    client *cl = ws_connect();
    rta_ws *ws = H.ws[0];

    char *chunk = malloc(16384);
    memset(chunk, 'z', 16384);
    rta_rbuf *fr = rta_ws_frame(RTA_WS_OP_BINARY, chunk, 16384);
    int rc = RTA_WS_OK, sent = 0;
    /* the client does not read: the kernel buffers fill, then our cap */
    for (int i = 0; i < 20000 && rc == RTA_WS_OK; i++) {
        rc = rta_ws_send_frame(ws, fr);
        if (rc == RTA_WS_OK)
            sent++;
        pump(1);
    }
    assert_int_equal(rc, RTA_WS_FULL);
    assert_true(rta_ws_queued_bytes(ws) + fr->len > H.opts.max_queued_bytes);
    assert_true(rta_ws_queued_bytes(ws) <= H.opts.max_queued_bytes);
    assert_int_equal(H.writable_calls, 0);
    /* the client reads everything: on_writable fires once the queue has drained */
    size_t expected = (size_t)sent * fr->len;
    size_t got = 0;
    int spins = 0;
    while (H.writable_calls == 0 || got < expected) {
        client_poll(cl);
        if (cl->len == 0)
            usleep(200);
        got += cl->len;
        cl->len = 0;
        if (++spins >= 100000)
            fail_msg("got %zu of %zu, writable %d, queued %zu", got, expected, H.writable_calls,
                     rta_ws_queued_bytes(ws));
    }
    assert_int_equal(got, expected);
    assert_int_equal(H.writable_calls, 1);
    assert_int_equal(rta_ws_send_frame(ws, fr), RTA_WS_OK);
    rta_rbuf_unref(fr);
    free(chunk);
    client_free(cl);
}

static void test_close_inside_callback(void **state)
{
    client *cl = ws_connect();
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, "please close", 12);
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, "after", 5); /* read, not answered */
    frame f;
    client_read_frame(cl, &f);
    assert_int_equal(close_code(&f), 4001);
    unsigned char payload[] = {0x0f, 0xa1};
    client_send_frame(cl, 1, RTA_WS_OP_CLOSE, 1, payload, sizeof payload);
    client_wait_eof(cl);
    WAIT_UNTIL(cl, H.closes == 1);
    assert_int_equal(H.close_code[0], 4001);
    assert_int_equal(cl->len, 0);
    client_free(cl);
}

static void test_abort_inside_callback(void **state)
{
    client *cl = ws_connect();
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, "please abort", 12);
    client_wait_eof(cl);
    assert_int_equal(H.closes, 1);
    assert_int_equal(H.close_code[0], 1006);
    assert_string_equal(H.close_reason[0], "asked");
    assert_int_equal(cl->len, 0);
    assert_int_equal(rta_net_open_count(H.net), 0);
    client_free(cl);
}

/* ---- permessage-deflate ---- */

/* Connects to /echo offering ext (a Sec-WebSocket-Extensions value, NULL = none); resp gets
 * the 101 head. */
static client *ws_connect_ext(const char *ext, char *resp, size_t resplen)
{
    client *cl = client_connect();
    char hdr[512] = "", req[1024];
    if (ext)
        snprintf(hdr, sizeof hdr, "Sec-WebSocket-Extensions: %s\r\n", ext);
    snprintf(req, sizeof req, REQ_FMT, "/echo", sample_key, "13", hdr);
    client_send(cl, req, strlen(req));
    size_t before = H.nws;
    client_read_http(cl, resp, resplen);
    assert_non_null(strstr(resp, "HTTP/1.1 101 "));
    assert_int_equal(H.nws, before + 1);
    return cl;
}

/* A client-side compressor: raw deflate, sync flush, the 00 00 ff ff tail removed. */
typedef struct {
    z_stream z;
} zc;

static void zc_init(zc *c, int bits)
{
    memset(c, 0, sizeof *c);
    assert_int_equal(deflateInit2(&c->z, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
}

static size_t zc_compress(zc *c, const void *in, size_t len, unsigned char *out, size_t cap)
{
    c->z.next_in = (Bytef *)(uintptr_t)in;
    c->z.avail_in = (uInt)len;
    c->z.next_out = out;
    c->z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&c->z, Z_SYNC_FLUSH), Z_OK);
    assert_int_equal(c->z.avail_in, 0);
    size_t n = cap - c->z.avail_out;
    assert_true(n >= 4);
    assert_memory_equal(out + n - 4, "\0\0\xff\xff", 4);
    return n - 4;
}

/* Inflates a server message with a fresh stream (the server never keeps context). */
static size_t inflate_fresh(const void *in, size_t len, char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, -15), Z_OK);
    unsigned char *buf = malloc(len + 4);
    memcpy(buf, in, len);
    memcpy(buf + len, "\0\0\xff\xff", 4);
    z.next_in = buf;
    z.avail_in = (uInt)(len + 4);
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    assert_true(rc == Z_OK || rc == Z_STREAM_END);
    assert_int_equal(z.avail_in, 0);
    size_t n = cap - z.avail_out;
    inflateEnd(&z);
    free(buf);
    return n;
}

/* Sends a compressed message (RSV1 on its only frame). */
static void send_compressed(client *cl, zc *c, int op, const void *msg, size_t len)
{
    size_t cap = len + 64;
    unsigned char *z = malloc(cap), *f = malloc(cap + 14);
    size_t zn = zc_compress(c, msg, len, z, cap);
    size_t n = build_frame(f, 1, op, 1, z, zn);
    f[0] |= 0x40;
    client_send(cl, f, n);
    free(z);
    free(f);
}

static void fill_text(char *buf, size_t len, unsigned seed)
{
    static const char *words[] = {"uniswap",    "ethereum",      "tvl_change",
                                  "aave",       "arbitrum",      "previousTvl",
                                  "currentTvl", "changePercent", "1234.5678"};
    size_t i = 0;
    while (i < len) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % 9];
        for (size_t k = 0; w[k] && i < len; k++)
            buf[i++] = w[k];
        if (i < len)
            buf[i++] = ' ';
    }
}

static void test_deflate_negotiation(void **state)
{
    char resp[4096];
    client *off = ws_connect_ext("permessage-deflate; client_max_window_bits", resp, sizeof resp);
    assert_null(strstr(resp, "Sec-WebSocket-Extensions")); /* off by default */
    assert_int_equal(rta_ws_deflate_enabled(H.ws[0]), 0);

    H.opts.permessage_deflate = 1;
    client *a = ws_connect_ext("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
                               resp, sizeof resp);
    assert_non_null(strstr(
        resp, "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"));
    assert_int_equal(rta_ws_deflate_enabled(H.ws[1]), 1);

    client *b = ws_connect_ext(NULL, resp, sizeof resp);
    assert_null(strstr(resp, "Sec-WebSocket-Extensions"));
    assert_int_equal(rta_ws_deflate_enabled(H.ws[2]), 0);

    client *c = ws_connect_ext("permessage-deflate; client_no_context_takeover; "
                               "server_max_window_bits=10",
                               resp, sizeof resp);
    assert_non_null(strstr(resp, "Sec-WebSocket-Extensions: permessage-deflate; "
                                 "server_no_context_takeover; client_no_context_takeover; "
                                 "server_max_window_bits=10\r\n"));
    assert_int_equal(rta_ws_deflate_enabled(H.ws[3]), 1);

    /* an offer the server cannot accept (unknown parameter) is declined, not refused */
    client *d = ws_connect_ext("permessage-deflate; foo=1", resp, sizeof resp);
    assert_null(strstr(resp, "Sec-WebSocket-Extensions"));

    /* a malformed header is refused */
    client *e = client_connect();
    char req[1024];
    snprintf(req, sizeof req, REQ_FMT, "/echo", sample_key, "13",
             "Sec-WebSocket-Extensions: permessage-deflate; ;\r\n");
    client_send(e, req, strlen(req));
    client_read_http(e, resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 400 "));
    assert_non_null(strstr(resp, "invalid_websocket_extensions"));
    assert_int_equal(H.nws, 5);

    client_free(off);
    client_free(a);
    client_free(b);
    client_free(c);
    client_free(d);
    client_free(e);
}

static void test_deflate_echo(void **state)
{
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate; client_max_window_bits", resp, sizeof resp);
    zc c;
    zc_init(&c, 15);
    static char msg[20000], out[70000];
    fill_text(msg, sizeof msg, 1);
    for (int round = 0; round < 2; round++) {
        /* client -> server compressed; server -> client compressed (echo) */
        send_compressed(cl, &c, RTA_WS_OP_TEXT, msg, sizeof msg);
        frame *f = malloc(sizeof *f);
        client_read_frame(cl, f);
        assert_int_equal(f->op, RTA_WS_OP_TEXT);
        assert_int_equal(f->rsv1, 1);
        assert_true(f->len < sizeof msg / 2);
        /* each server message inflates on its own: no context kept between them */
        size_t n = inflate_fresh(f->data, f->len, out, sizeof out);
        assert_int_equal(n, sizeof msg);
        assert_memory_equal(out, msg, n);
        free(f);
    }
    /* binary, compressed */
    unsigned char bin[3000];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i % 7);
    send_compressed(cl, &c, RTA_WS_OP_BINARY, bin, sizeof bin);
    frame *f = malloc(sizeof *f);
    client_read_frame(cl, f);
    assert_int_equal(f->op, RTA_WS_OP_BINARY);
    assert_int_equal(f->rsv1, 1);
    assert_int_equal(inflate_fresh(f->data, f->len, out, sizeof out), sizeof bin);
    assert_memory_equal(out, bin, sizeof bin);
    /* an uncompressed message on a deflate connection is fine; a short answer goes plain */
    client_send_frame(cl, 1, RTA_WS_OP_TEXT, 1, "hi", 2);
    client_read_frame(cl, f);
    assert_int_equal(f->rsv1, 0);
    assert_string_equal(f->data, "hi");
    free(f);
    assert_int_equal(H.messages, 4);
    deflateEnd(&c.z);
    client_free(cl);
}

static void test_deflate_context_takeover(void **state)
{
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    assert_null(strstr(resp, "client_no_context_takeover"));
    zc c;
    zc_init(&c, 15);
    static char msg[4000], out[70000];
    fill_text(msg, sizeof msg, 7);
    frame *f = malloc(sizeof *f);
    for (int round = 0; round < 3; round++) {
        /* rounds 2 and 3 compress to a few bytes: back references into round 1 */
        send_compressed(cl, &c, RTA_WS_OP_TEXT, msg, sizeof msg);
        client_read_frame(cl, f);
        assert_int_equal(f->op, RTA_WS_OP_TEXT);
        size_t n = f->rsv1 ? inflate_fresh(f->data, f->len, out, sizeof out) : f->len;
        assert_int_equal(n, sizeof msg);
        assert_memory_equal(f->rsv1 ? out : f->data, msg, n);
    }
    assert_int_equal(H.messages, 3);
    deflateEnd(&c.z);
    client_free(cl);

    /* with client_no_context_takeover the server resets: a message that still refers to
     * the previous one cannot be inflated (1007) */
    cl = ws_connect_ext("permessage-deflate; client_no_context_takeover", resp, sizeof resp);
    assert_non_null(strstr(resp, "client_no_context_takeover"));
    zc_init(&c, 15);
    send_compressed(cl, &c, RTA_WS_OP_TEXT, msg, sizeof msg);
    client_read_frame(cl, f);
    assert_int_equal(H.messages, 4);
    send_compressed(cl, &c, RTA_WS_OP_TEXT, msg, sizeof msg); /* context kept: wrong */
    client_read_frame(cl, f);
    assert_int_equal(close_code(f), 1007);
    assert_int_equal(H.messages, 4);
    free(f);
    deflateEnd(&c.z);
    client_wait_eof(cl);
    client_free(cl);
}

static void test_deflate_shared_frame(void **state)
{
    H.echo = 0;
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl[3];
    cl[0] = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    cl[1] = ws_connect_ext("permessage-deflate; client_max_window_bits", resp, sizeof resp);
    cl[2] = ws_connect_ext(NULL, resp, sizeof resp);
    static char msg[2000];
    fill_text(msg, sizeof msg, 3);
    rta_rbuf *plain = rta_ws_frame(RTA_WS_OP_TEXT, msg, sizeof msg);
    rta_rbuf *def = rta_ws_frame_deflated(RTA_WS_OP_TEXT, msg, sizeof msg);
    assert_non_null(def);
    assert_int_equal((unsigned char)def->data[0], 0xc1); /* FIN + RSV1 + text */
    assert_true(def->len < plain->len / 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rta_ws_send_frames(H.ws[i], plain, def), RTA_WS_OK);
    assert_int_equal(def->refcnt, 3); /* one compressed buffer for both deflate clients */
    assert_int_equal(plain->refcnt, 2);
    for (int i = 0; i < 2; i++) {
        WAIT_UNTIL(cl[i], cl[i]->len >= def->len);
        assert_int_equal(cl[i]->len, def->len);
        assert_memory_equal(cl[i]->buf, def->data, def->len); /* identical bytes */
        char out[4000];
        assert_int_equal(inflate_fresh(cl[i]->buf + 4, def->len - 4, out, sizeof out), sizeof msg);
        assert_memory_equal(out, msg, sizeof msg);
    }
    frame *f = malloc(sizeof *f);
    client_read_frame(cl[2], f);
    assert_int_equal(f->rsv1, 0);
    assert_int_equal(f->len, sizeof msg);
    free(f);
    rta_rbuf_unref(plain);
    rta_rbuf_unref(def);
    /* NULL deflated frame: plain for everyone */
    rta_rbuf *tiny = rta_ws_frame(RTA_WS_OP_TEXT, "ok", 2);
    assert_null(rta_ws_frame_deflated(RTA_WS_OP_TEXT, "ok", 2)); /* would not shrink */
    assert_int_equal(rta_ws_send_frames(H.ws[0], tiny, NULL), RTA_WS_OK);
    rta_rbuf_unref(tiny);
    for (int i = 0; i < 3; i++)
        client_free(cl[i]);
}

static void test_deflate_small_server_window(void **state)
{
    H.echo = 0;
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate; server_max_window_bits=9", resp, sizeof resp);
    assert_non_null(strstr(resp, "server_max_window_bits=9"));
    static char big[2000], small[500];
    fill_text(big, sizeof big, 5);
    fill_text(small, sizeof small, 5);
    rta_rbuf *p1 = rta_ws_frame(RTA_WS_OP_TEXT, big, sizeof big);
    rta_rbuf *d1 = rta_ws_frame_deflated(RTA_WS_OP_TEXT, big, sizeof big);
    rta_rbuf *p2 = rta_ws_frame(RTA_WS_OP_TEXT, small, sizeof small);
    rta_rbuf *d2 = rta_ws_frame_deflated(RTA_WS_OP_TEXT, small, sizeof small);
    assert_non_null(d1);
    assert_non_null(d2);
    /* compressed with a 15-bit window: only messages within 512 bytes are safe to send */
    assert_int_equal(rta_ws_send_frames(H.ws[0], p1, d1), RTA_WS_OK);
    assert_int_equal(rta_ws_send_frames(H.ws[0], p2, d2), RTA_WS_OK);
    frame *f = malloc(sizeof *f);
    client_read_frame(cl, f);
    assert_int_equal(f->rsv1, 0);
    assert_int_equal(f->len, sizeof big);
    client_read_frame(cl, f);
    assert_int_equal(f->rsv1, 1);
    free(f);
    rta_rbuf_unref(p1);
    rta_rbuf_unref(d1);
    rta_rbuf_unref(p2);
    rta_rbuf_unref(d2);
    client_free(cl);
}

static void test_deflate_inflate_limit(void **state)
{
    H.opts.permessage_deflate = 1;
    H.opts.max_message_bytes = 1000;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    zc c;
    zc_init(&c, 15);
    static char bomb[300000]; /* deflates to ~300 bytes, under wslay's cap on the wire */
    memset(bomb, 'a', sizeof bomb);
    send_compressed(cl, &c, RTA_WS_OP_BINARY, bomb, sizeof bomb);
    expect_protocol_close(cl, 1009);
    assert_int_equal(H.messages, 0);
    deflateEnd(&c.z);
}

static void test_deflate_at_limit(void **state)
{
    H.opts.permessage_deflate = 1;
    H.opts.max_message_bytes = 1000;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    zc c;
    zc_init(&c, 15);
    char msg[1000];
    memset(msg, 'b', sizeof msg);
    send_compressed(cl, &c, RTA_WS_OP_TEXT, msg, sizeof msg); /* exactly the cap: fine */
    frame *f = malloc(sizeof *f);
    client_read_frame(cl, f);
    assert_int_equal(f->rsv1, 1);
    free(f);
    assert_int_equal(H.messages, 1);
    send_compressed(cl, &c, RTA_WS_OP_TEXT, msg, 1000);
    send_compressed(cl, &c, RTA_WS_OP_TEXT, "c", 1);
    f = malloc(sizeof *f);
    client_read_frame(cl, f);
    client_read_frame(cl, f);
    free(f);
    assert_int_equal(H.messages, 3);
    deflateEnd(&c.z);
    client_free(cl);
}

static void test_rsv1_without_negotiation(void **state)
{
    char resp[4096];
    H.opts.permessage_deflate = 1;
    client *cl = ws_connect_ext(NULL, resp, sizeof resp); /* no offer: nothing negotiated */
    zc c;
    zc_init(&c, 15);
    send_compressed(cl, &c, RTA_WS_OP_TEXT, "hello hello hello", 17);
    expect_protocol_close(cl, 1002);
    assert_int_equal(H.messages, 0);
    deflateEnd(&c.z);
}

static void test_rsv1_on_control_frame(void **state)
{
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    unsigned char f[32];
    size_t n = build_frame(f, 1, RTA_WS_OP_PING, 1, "x", 1);
    f[0] |= 0x40;
    client_send(cl, f, n);
    expect_protocol_close(cl, 1002);
}

static void test_deflate_corrupt(void **state)
{
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x01, 0x02}; /* invalid block type */
    unsigned char f[32];
    size_t n = build_frame(f, 1, RTA_WS_OP_BINARY, 1, junk, sizeof junk);
    f[0] |= 0x40;
    client_send(cl, f, n);
    expect_protocol_close(cl, 1007);
    assert_int_equal(H.messages, 0);
}

static void test_deflate_invalid_utf8(void **state)
{
    H.opts.permessage_deflate = 1;
    char resp[4096];
    client *cl = ws_connect_ext("permessage-deflate", resp, sizeof resp);
    zc c;
    zc_init(&c, 15);
    char bad[200];
    memset(bad, 'x', sizeof bad);
    bad[100] = (char)0xc3;
    bad[101] = (char)0x28;
    send_compressed(cl, &c, RTA_WS_OP_TEXT, bad, sizeof bad); /* wslay cannot check this one */
    expect_protocol_close(cl, 1007);
    assert_int_equal(H.messages, 0);
    deflateEnd(&c.z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_encoding),
        cmocka_unit_test_setup_teardown(test_handshake_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_subprotocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_text_and_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragments_and_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmasked_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_control_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_continuation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_across_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_after_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalescing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_context_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_shared_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_small_server_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_inflate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_at_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rsv1_without_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rsv1_on_control_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deflate_invalid_utf8, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("ws, writes on the loop thread", tests, NULL, NULL);
    use_writers = 2;
    failed += cmocka_run_group_tests_name("ws, writes by two writer threads", tests, NULL, NULL);
    return failed;
}
