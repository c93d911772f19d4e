/*
 * rta-bench: streaming load generator for the realtime API (rtad, or the Node.js reference
 * server in bench/reference/ that speaks the same protocol).
 *
 * It opens --connections WebSocket clients, either Socket.IO v5 over a direct Engine.IO v4
 * WebSocket (GET /socket.io/?EIO=4&transport=websocket, CONNECT /v1/realtime with
 * {"apiKey"}, emit "subscribe") or plain WebSocket (/v1/realtime/ws?apiKey=, JSON op
 * "subscribe"), spread over loopback source addresses 127.0.0.2.. (bound before connect, so
 * the 4-tuple space is not one address's ~28k ephemeral ports) and over --workers forked
 * processes (each holds at most RTA_BENCH_MAX_PER_WORKER sockets: the fd hard limit is 20,000).
 * Connection i subscribes to protocol "p<i % rooms>", so there are --rooms rooms.
 *
 * The parent process drives ingest itself at --rate updates/s over one keep-alive HTTP
 * connection (a POST /v1/ingest every --ingest-interval ms, 10 by default, carrying the updates
 * due, one POST in flight at most; the update k goes to
 * protocol p<k % rooms>). Each TVL value encodes the sender's wall clock (rta/bench.h), so a
 * receiver computes the delivery latency as its own clock minus the value's: both run on
 * this machine. Workers keep a log-linear histogram and report it, with their counters, to the
 * parent over a pipe every 500 ms and once more at the end.
 *
 * Phases: connect (until every connection is subscribed or failed, bounded by
 * --connect-timeout) -> warmup (ingest runs, nothing counted) -> measure (--duration) ->
 * drain (1 s, late deliveries still counted) -> final reports -> results as text, and as one
 * JSON line with --json. Everything is bounded in time; only loopback targets are accepted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <http_parser.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <wslay/wslay.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "rta/bench.h"
#include "rta/buf.h"
#include "rta/util.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RTA_BENCH_MAX_PER_WORKER 19000
#define MAX_WORKERS 64
#define REPORT_MAGIC 0x52544142u /* "RTAB" */
#define HANDSHAKE_MAX 8192       /* bytes of the HTTP 101 response we accept */
#define CONN_WRITE_MAX 65536     /* a client's unsent bytes before it is failed */
#define INGEST_BATCH_MAX 10000   /* updates in one POST (rtad's default ingest.max_items) */
#define INGEST_BODY_MAX (INGEST_BATCH_MAX * 160 + 64)

enum { MODE_SIO = 0, MODE_WS = 1 };
enum { SUB_PROTOCOL = 0, SUB_TVL_CHANGES = 1 };
enum { INGEST_RTA = 0, INGEST_REFERENCE = 1 };

typedef struct bench_opts {
    char host[64];
    int port;
    char ingest_host[64];
    int ingest_port;
    const char *key;
    const char *ingest_key;
    const char *nsp;
    const char *chain;
    int connections, workers, rooms, source_ips, ramp;
    int ingest_interval_ms; /* a POST of the updates due this often (one in flight at most) */
    double rate, duration, warmup, connect_timeout;
    int mode, sub, ingest_mode, no_ingest, json, chain_in_sub;
    double threshold; /* a fraction, as rtad's changePercent (0.01 = 1%) */
} bench_opts;

static bench_opts O = {
    .port = 8080,
    .key = "bench",
    .nsp = "/v1/realtime",
    .chain = "ethereum",
    .connections = 1000,
    .workers = 0,
    .rooms = 100,
    .source_ips = 16,
    .ramp = 256,
    .ingest_interval_ms = 10,
    .rate = 1000,
    .duration = 20,
    .warmup = 3,
    .connect_timeout = 60,
    .threshold = 0.01,
};

/* ------------------------------------------------------------------------------------------ */
/* Worker -> parent reports                                                                     */

typedef struct bench_report {
    uint32_t magic;
    uint32_t final;
    uint64_t assigned;       /* connections this worker opens */
    uint64_t ready;          /* subscribed and open now */
    uint64_t ever_ready;     /* reached subscribed at some point */
    uint64_t connect_failed; /* TCP, HTTP upgrade, Engine.IO or CONNECT failures */
    uint64_t disconnects;    /* subscribed connections that closed */
    uint64_t deliveries;     /* tvl_change events received while measuring */
    uint64_t deliveries_all; /* since start */
    uint64_t bad_events;     /* events whose latency could not be read */
    uint64_t connect_ms_max; /* slowest time from start of connect to subscribed */
    uint64_t pending;        /* still handshaking or not started */
    rta_bench_hist hist;     /* latency while measuring */
} bench_report;

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Worker: the WebSocket clients                                                                */

enum {
    C_IDLE = 0,
    C_TCP,     /* connecting */
    C_UPGRADE, /* waiting for 101 */
    C_EIO,     /* sio: waiting for the Engine.IO open packet */
    C_SIO,     /* sio: waiting for the namespace CONNECT answer */
    C_READY,   /* subscribed */
    C_CLOSING,
    C_DONE,
};

typedef struct bench_worker bench_worker;

typedef struct bench_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    bench_worker *w;
    wslay_event_context_ptr ws;
    rta_dbuf hs;     /* HTTP response bytes during the upgrade */
    char ws_key[32]; /* Sec-WebSocket-Key sent */
    const char *in;  /* current read chunk fed to wslay */
    size_t in_len;
    size_t write_pending; /* bytes in uv_write requests */
    uint64_t started_ms;
    uint32_t global_index;
    uint8_t state;
    uint8_t was_ready;
} bench_conn;

struct bench_worker {
    uv_loop_t loop;
    int index;
    bench_conn *conns;
    size_t nconns, next_to_start, in_handshake;
    int report_fd;
    uv_pipe_t control;
    uv_timer_t tick;
    int measuring, finishing;
    uint64_t ticks;
    uint64_t xorshift;
    bench_report r;
    char readbuf[65536];
};

typedef struct write_req {
    uv_write_t req;
    bench_conn *c;
    size_t len;
    char data[];
} write_req;

static void conn_start(bench_worker *w, bench_conn *c);
static void worker_start_more(bench_worker *w);

static uint64_t xs_next(bench_worker *w)
{
    uint64_t x = w->xorshift;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->xorshift = x;
}

static void conn_closed_cb(uv_handle_t *h)
{
    bench_conn *c = h->data;
    if (c->ws) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
    rta_dbuf_free(&c->hs);
    c->state = C_DONE;
}

/* Ends a connection; failed = it never reached READY (a connect failure). */
static void conn_fail(bench_conn *c)
{
    bench_worker *w = c->w;
    if (c->state == C_DONE || c->state == C_CLOSING || c->state == C_IDLE)
        return;
    if (c->state == C_READY) {
        w->r.ready--;
        if (!w->finishing)
            w->r.disconnects++;
    } else {
        w->r.connect_failed++;
        w->in_handshake--;
    }
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    if (!w->finishing)
        worker_start_more(w);
}

static void conn_ready(bench_conn *c)
{
    bench_worker *w = c->w;
    c->state = C_READY;
    c->was_ready = 1;
    w->in_handshake--;
    w->r.ready++;
    w->r.ever_ready++;
    uint64_t ms = (uint64_t)rta_now_ms() - c->started_ms;
    if (ms > w->r.connect_ms_max)
        w->r.connect_ms_max = ms;
    worker_start_more(w);
}

static void write_done_cb(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    wr->c->write_pending -= wr->len;
    bench_conn *c = wr->c;
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        conn_fail(c);
}

/* Raw bytes to the socket: try_write first, queue the rest (bounded). */
static int conn_write_raw(bench_conn *c, const char *data, size_t len)
{
    if (c->state == C_CLOSING || c->state == C_DONE)
        return -1;
    size_t off = 0;
    if (c->write_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n >= 0)
            off = (size_t)n;
        else if (n != UV_EAGAIN)
            return -1;
    }
    if (off == len)
        return 0;
    size_t rest = len - off;
    if (c->write_pending + rest > CONN_WRITE_MAX)
        return -1;
    write_req *wr = rta_xmalloc(sizeof *wr + rest);
    wr->c = c;
    wr->len = rest;
    memcpy(wr->data, data + off, rest);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)rest);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, write_done_cb) != 0) {
        free(wr);
        return -1;
    }
    c->write_pending += rest;
    return 0;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *ud)
{
    bench_conn *c = ud;
    if (conn_write_raw(c, (const char *)data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *ud)
{
    bench_conn *c = ud;
    if (c->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = c->in_len < len ? c->in_len : len;
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    bench_conn *c = ud;
    /* Client masking only needs to be unpredictable to intermediaries; this is loopback. */
    for (size_t i = 0; i < len; i += 8) {
        uint64_t x = xs_next(c->w);
        memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
    }
    return 0;
}

static void ws_queue_text(bench_conn *c, const char *text, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (wslay_event_queue_msg(c->ws, &m) != 0)
        conn_fail(c);
}

static void send_subscribe(bench_conn *c)
{
    char sub[256], msg[384];
    int room = (int)(c->global_index % (uint32_t)O.rooms);
    if (O.sub == SUB_TVL_CHANGES) {
        snprintf(sub, sizeof sub, "\"type\":\"tvl_changes\",\"threshold\":%g", O.threshold);
    } else if (O.chain_in_sub) {
        snprintf(sub, sizeof sub, "\"type\":\"protocol\",\"protocol\":\"p%d\",\"chain\":\"%s\"",
                 room, O.chain);
    } else {
        snprintf(sub, sizeof sub, "\"type\":\"protocol\",\"protocol\":\"p%d\"", room);
    }
    int n;
    if (O.mode == MODE_SIO)
        n = snprintf(msg, sizeof msg, "42%s,[\"subscribe\",{%s}]", O.nsp, sub);
    else
        n = snprintf(msg, sizeof msg, "{\"op\":\"subscribe\",%s}", sub);
    ws_queue_text(c, msg, (size_t)n);
}

static void record_event(bench_conn *c, const char *data, size_t len)
{
    bench_worker *w = c->w;
    w->r.deliveries_all++;
    if (!w->measuring)
        return;
    w->r.deliveries++;
    double tvl;
    int64_t lat = -1;
    if (rta_bench_json_number(data, len, "currentTvl", &tvl) == 0)
        lat = rta_bench_latency_us(tvl, rta_now_us());
    if (lat < 0)
        w->r.bad_events++;
    else
        rta_bench_hist_record(&w->r.hist, (uint64_t)lat);
}

static void on_sio_message(bench_conn *c, const char *data, size_t len)
{
    char ev[32];
    switch (rta_bench_sio_classify(data, len, O.nsp, ev, sizeof ev)) {
    case RTA_BENCH_SIO_OPEN:
        if (c->state == C_EIO) {
            char msg[256];
            int n = snprintf(msg, sizeof msg, "40%s,{\"apiKey\":\"%s\"}", O.nsp, O.key);
            c->state = C_SIO;
            ws_queue_text(c, msg, (size_t)n);
        }
        break;
    case RTA_BENCH_SIO_PING:
        ws_queue_text(c, "3", 1);
        break;
    case RTA_BENCH_SIO_CONNECT:
        if (c->state == C_SIO) {
            send_subscribe(c);
            if (c->state == C_SIO)
                conn_ready(c);
        }
        break;
    case RTA_BENCH_SIO_EVENT:
        if (strcmp(ev, "tvl_change") == 0)
            record_event(c, data, len);
        break;
    case RTA_BENCH_SIO_CONNECT_ERROR:
    case RTA_BENCH_SIO_DISCONNECT:
    case RTA_BENCH_SIO_CLOSE:
        conn_fail(c);
        break;
    default:
        break;
    }
}

static void on_ws_message(bench_conn *c, const char *data, size_t len)
{
    if (memmem(data, len, "\"tvl_change\"", 12)) {
        record_event(c, data, len);
    } else if (memmem(data, len, "\"ping\"", 6) && memmem(data, len, "\"type\"", 6)) {
        ws_queue_text(c, "{\"op\":\"pong\"}", 13);
    }
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *ud)
{
    bench_conn *c = ud;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        conn_fail(c);
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    if (O.mode == MODE_SIO)
        on_sio_message(c, (const char *)arg->msg, arg->msg_length);
    else
        on_ws_message(c, (const char *)arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv_cb,
    .send_callback = ws_send_cb,
    .genmask_callback = ws_genmask_cb,
    .on_msg_recv_callback = ws_msg_cb,
};

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)). */
static void ws_accept_for(const char *key, char out[64])
{
    char cat[128];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

/* Feeds bytes to wslay and flushes what it wants to send. */
static void conn_feed_ws(bench_conn *c, const char *data, size_t len)
{
    c->in = data;
    c->in_len = len;
    if (wslay_event_recv(c->ws) != 0) {
        conn_fail(c);
        return;
    }
    if (c->state == C_CLOSING || c->state == C_DONE)
        return;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0)
        conn_fail(c);
}

/* Parses the 101 response once complete; returns bytes of it consumed, 0 when incomplete,
 * -1 on failure. */
static int conn_on_handshake(bench_conn *c)
{
    char *end = memmem(c->hs.data, c->hs.len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    *end = '\0';
    if (strncmp(c->hs.data, "HTTP/1.1 101", 12) != 0)
        return -1;
    char want[64];
    ws_accept_for(c->ws_key, want);
    if (!strcasestr(c->hs.data, want))
        return -1;
    return (int)(end - c->hs.data) + 4;
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    bench_conn *c = h->data;
    *buf = uv_buf_init(c->w->readbuf, sizeof c->w->readbuf);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bench_conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_fail(c);
        return;
    }
    if (c->state == C_UPGRADE) {
        if (rta_dbuf_append(&c->hs, buf->base, (size_t)nread) != 0) {
            conn_fail(c);
            return;
        }
        int used = conn_on_handshake(c);
        if (used < 0) {
            conn_fail(c);
            return;
        }
        if (used == 0)
            return;
        if (wslay_event_context_client_init(&c->ws, &ws_callbacks, c) != 0) {
            conn_fail(c);
            return;
        }
        wslay_event_config_set_max_recv_msg_length(c->ws, 1 << 20);
        size_t rest_len = c->hs.len - (size_t)used;
        char *rest = rest_len ? rta_xmalloc(rest_len) : NULL;
        if (rest_len)
            memcpy(rest, c->hs.data + used, rest_len);
        rta_dbuf_free(&c->hs);
        if (O.mode == MODE_SIO) {
            c->state = C_EIO;
        } else {
            send_subscribe(c);
            if (c->state == C_UPGRADE)
                conn_ready(c);
        }
        if (rest_len && c->state != C_CLOSING)
            conn_feed_ws(c, rest, rest_len);
        else if (c->state != C_CLOSING && wslay_event_want_write(c->ws) &&
                 wslay_event_send(c->ws) != 0)
            conn_fail(c);
        free(rest);
        return;
    }
    conn_feed_ws(c, buf->base, (size_t)nread);
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    bench_conn *c = req->data;
    if (c->state != C_TCP)
        return;
    if (status < 0) {
        conn_fail(c);
        return;
    }
    unsigned char rnd[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t x = xs_next(c->w);
        memcpy(rnd + i, &x, 8);
    }
    EVP_EncodeBlock((unsigned char *)c->ws_key, rnd, 16);
    char req_text[1024];
    int n;
    if (O.mode == MODE_SIO)
        n = snprintf(req_text, sizeof req_text,
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "User-Agent: rta-bench\r\n\r\n",
                     O.host, O.port, c->ws_key);
    else
        n = snprintf(req_text, sizeof req_text,
                     "GET %s/ws?apiKey=%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "User-Agent: rta-bench\r\n\r\n",
                     O.nsp, O.key, O.host, O.port, c->ws_key);
    c->state = C_UPGRADE;
    rta_dbuf_init(&c->hs, HANDSHAKE_MAX);
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) != 0 ||
        conn_write_raw(c, req_text, (size_t)n) != 0)
        conn_fail(c);
}

static void conn_start(bench_worker *w, bench_conn *c)
{
    c->w = w;
    c->started_ms = (uint64_t)rta_now_ms();
    c->tcp.data = c;
    c->connect_req.data = c;
    w->in_handshake++;
    c->state = C_TCP;
    if (uv_tcp_init_ex(&w->loop, &c->tcp, AF_INET) != 0) {
        c->state = C_DONE;
        w->in_handshake--;
        w->r.connect_failed++;
        return;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_in src, dst;
    char src_ip[32];
    snprintf(src_ip, sizeof src_ip, "127.0.0.%d", 2 + (int)(c->global_index % O.source_ips));
    uv_ip4_addr(src_ip, 0, &src);
    uv_ip4_addr(O.host, O.port, &dst);
    if (uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0) != 0 ||
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&dst, conn_connect_cb) !=
            0)
        conn_fail(c);
}

static void worker_start_more(bench_worker *w)
{
    while (!w->finishing && w->in_handshake < (size_t)O.ramp && w->next_to_start < w->nconns)
        conn_start(w, &w->conns[w->next_to_start++]);
}

static void worker_send_report(bench_worker *w, int is_final)
{
    w->r.final = (uint32_t)is_final;
    w->r.pending = w->in_handshake + (w->nconns - w->next_to_start);
    if (write_full(w->report_fd, &w->r, sizeof w->r) != 0)
        w->finishing = 1; /* the parent is gone */
}

static void worker_finish(bench_worker *w)
{
    if (w->finishing)
        return;
    worker_send_report(w, 1);
    w->finishing = 1;
    uv_timer_stop(&w->tick);
    uv_close((uv_handle_t *)&w->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->control))
        uv_close((uv_handle_t *)&w->control, NULL);
    for (size_t i = 0; i < w->nconns; i++)
        conn_fail(&w->conns[i]);
}

static void worker_tick_cb(uv_timer_t *t)
{
    bench_worker *w = t->data;
    /* Handshakes stuck longer than the connect timeout fail. */
    uint64_t now = (uint64_t)rta_now_ms();
    uint64_t limit = (uint64_t)(O.connect_timeout * 1000);
    /* Plain WebSocket clients say something every 30 s (rtad closes silent ones after
     * realtime.ws_idle_timeout_ms); spread over the ticks. Socket.IO clients answer pings. */
    uint64_t tick = w->ticks++;
    for (size_t i = 0; i < w->next_to_start; i++) {
        bench_conn *c = &w->conns[i];
        if (c->state >= C_TCP && c->state < C_READY && now - c->started_ms > limit) {
            conn_fail(c);
        } else if (O.mode == MODE_WS && c->state == C_READY && (tick + i) % 60 == 59) {
            ws_queue_text(c, "{\"op\":\"ping\"}", 13);
            if (c->state == C_READY && wslay_event_want_write(c->ws) &&
                wslay_event_send(c->ws) != 0)
                conn_fail(c);
        }
    }
    worker_send_report(w, 0);
}

static void control_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[64];
    *buf = uv_buf_init(b, sizeof b);
}

static void control_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bench_worker *w = s->data;
    if (nread < 0) {
        worker_finish(w);
        return;
    }
    for (ssize_t i = 0; i < nread; i++) {
        if (buf->base[i] == 'M') {
            w->measuring = 1;
            w->r.deliveries = 0;
            w->r.bad_events = 0;
            rta_bench_hist_reset(&w->r.hist);
        } else if (buf->base[i] == 'E') {
            worker_finish(w);
            return;
        }
    }
}

static int worker_main(int index, uint32_t first, uint32_t count, int control_fd, int report_fd)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* the parent decides when to stop */
    bench_worker *w = rta_xcalloc(1, sizeof *w);
    w->index = index;
    w->report_fd = report_fd;
    w->nconns = count;
    w->r.magic = REPORT_MAGIC;
    w->r.assigned = count;
    w->xorshift = 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 17) ^ (uint64_t)rta_now_us();
    w->conns = rta_xcalloc(count ? count : 1, sizeof *w->conns);
    for (uint32_t i = 0; i < count; i++)
        w->conns[i].global_index = first + i;
    uv_loop_init(&w->loop);
    uv_pipe_init(&w->loop, &w->control, 0);
    w->control.data = w;
    uv_pipe_open(&w->control, control_fd);
    uv_read_start((uv_stream_t *)&w->control, control_alloc_cb, control_read_cb);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, worker_tick_cb, 500, 500);
    worker_start_more(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    free(w->conns);
    free(w);
    close(report_fd);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parent: ingest client, phases, results                                                       */

enum { P_CONNECT = 0, P_WARMUP, P_MEASURE, P_DRAIN, P_FINAL, P_DONE };

typedef struct worker_slot {
    pid_t pid;
    int control_fd;
    int report_fd; /* read end, until the parent's loop opens it as reports */
    uv_pipe_t reports;
    char rbuf[sizeof(bench_report)];
    size_t rlen;
    bench_report last;
    int have_last, final, closed;
} worker_slot;

typedef struct bench_parent {
    uv_loop_t *loop;
    worker_slot workers[MAX_WORKERS];
    int nworkers;
    int phase;
    uint64_t phase_start_ms, start_ms, connect_done_ms;
    uv_timer_t phase_timer, ingest_timer;
    uv_signal_t sigint;
    /* ingest */
    uv_tcp_t itcp;
    uv_connect_t iconnect;
    int iconnected, iconnecting, iclosing, in_flight, iwriting;
    http_parser parser;
    http_parser_settings psettings;
    rta_dbuf body;
    char *req;
    size_t req_cap;
    uv_write_t iwrite;
    uint64_t ingest_start_ms, due_issued; /* updates issued since the ingest start */
    uint64_t update_seq;
    uint8_t *parity;
    uint64_t *room_sent; /* updates per room while measuring */
    uint64_t posts, posts_failed, items_sent, items_measured, items_dropped, conn_errors;
    int last_bad_status;
    uint64_t measure_start_ms, measure_end_ms;
    int exit_code;
} bench_parent;

static bench_parent P;

static void ingest_connect(void);

static void ingest_closed_cb(uv_handle_t *h)
{
    P.iwriting = 0;
    P.iconnected = 0;
    P.iconnecting = 0;
    P.iclosing = 0;
    P.in_flight = 0;
}

static void ingest_drop(void)
{
    if (P.iclosing || (!P.iconnected && !P.iconnecting))
        return;
    P.iclosing = 1;
    if (P.in_flight)
        P.posts_failed++;
    uv_close((uv_handle_t *)&P.itcp, ingest_closed_cb);
}

static int on_ingest_complete(http_parser *hp)
{
    P.in_flight = 0;
    if (hp->status_code >= 200 && hp->status_code < 300) {
        P.posts++;
    } else {
        P.posts_failed++;
        P.last_bad_status = (int)hp->status_code;
    }
    return 0;
}

static void ingest_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[16384];
    *buf = uv_buf_init(b, sizeof b);
}

static void ingest_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread == 0)
        return;
    if (nread < 0) {
        P.conn_errors++;
        ingest_drop();
        return;
    }
    size_t n = http_parser_execute(&P.parser, &P.psettings, buf->base, (size_t)nread);
    if (P.parser.http_errno != HPE_OK || n != (size_t)nread) {
        P.conn_errors++;
        ingest_drop();
    }
}

static void ingest_connect_cb(uv_connect_t *req, int status)
{
    P.iconnecting = 0;
    if (status < 0) {
        P.conn_errors++;
        P.iclosing = 1;
        uv_close((uv_handle_t *)&P.itcp, ingest_closed_cb);
        return;
    }
    P.iconnected = 1;
    http_parser_init(&P.parser, HTTP_RESPONSE);
    uv_read_start((uv_stream_t *)&P.itcp, ingest_alloc_cb, ingest_read_cb);
}

static void ingest_connect(void)
{
    struct sockaddr_in dst;
    uv_ip4_addr(O.ingest_host, O.ingest_port, &dst);
    uv_tcp_init(P.loop, &P.itcp);
    uv_tcp_nodelay(&P.itcp, 1);
    P.iconnecting = 1;
    if (uv_tcp_connect(&P.iconnect, &P.itcp, (const struct sockaddr *)&dst, ingest_connect_cb) !=
        0) {
        P.conn_errors++;
        P.iclosing = 1;
        uv_close((uv_handle_t *)&P.itcp, ingest_closed_cb);
    }
}

static void ingest_write_cb(uv_write_t *req, int status)
{
    P.iwriting = 0;
    if (status < 0) {
        P.conn_errors++;
        ingest_drop();
    }
}

/* Builds and sends one POST with n updates stamped now. */
static void ingest_post(uint64_t n)
{
    int64_t now_us = rta_now_us();
    rta_dbuf_reset(&P.body);
    rta_dbuf_puts(&P.body, "{\"tvl\":[");
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = P.update_seq++;
        uint32_t room = (uint32_t)(k % (uint64_t)O.rooms);
        double tvl = rta_bench_tvl_encode(now_us, P.parity[room]);
        P.parity[room] ^= 1;
        if (P.phase == P_MEASURE) {
            P.room_sent[room]++;
            P.items_measured++;
        }
        rta_dbuf_printf(
            &P.body,
            "%s{\"protocol\":\"p%u\",\"chain\":\"%s\",\"tvl\":%.0f,\"timestamp\":%" PRId64 "}",
            i ? "," : "", room, O.chain, tvl, now_us / 1000000);
    }
    rta_dbuf_puts(&P.body, "]}");
    size_t need = P.body.len + 512;
    if (need > P.req_cap) {
        P.req = rta_xrealloc(P.req, need);
        P.req_cap = need;
    }
    int hl =
        snprintf(P.req, P.req_cap,
                 "POST /v1/ingest HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                 "Authorization: Bearer %s\r\nContent-Length: %zu\r\n\r\n",
                 O.ingest_host, O.ingest_port, O.ingest_key, P.body.len);
    memcpy(P.req + hl, P.body.data, P.body.len);
    uv_buf_t b = uv_buf_init(P.req, (unsigned)(hl + P.body.len));
    P.items_sent += n;
    P.in_flight = 1;
    P.iwriting = 1;
    if (uv_write(&P.iwrite, (uv_stream_t *)&P.itcp, &b, 1, ingest_write_cb) != 0) {
        P.iwriting = 0;
        P.conn_errors++;
        ingest_drop();
    }
}

static void ingest_tick_cb(uv_timer_t *t)
{
    if (P.phase != P_WARMUP && P.phase != P_MEASURE)
        return;
    uint64_t elapsed = (uint64_t)rta_now_ms() - P.ingest_start_ms;
    uint64_t target = (uint64_t)((double)elapsed * O.rate / 1000.0);
    if (target <= P.due_issued)
        return;
    uint64_t due = target - P.due_issued;
    if (!P.iconnected) {
        if (!P.iconnecting && !P.iclosing)
            ingest_connect();
        return; /* updates keep accumulating (bounded below) */
    }
    if (P.in_flight || P.iwriting)
        return;
    if (due > INGEST_BATCH_MAX) {
        /* The server is too slow for the rate: skip what cannot be sent, and say so. */
        P.items_dropped += due - INGEST_BATCH_MAX;
        P.due_issued += due - INGEST_BATCH_MAX;
        due = INGEST_BATCH_MAX;
    }
    P.due_issued += due;
    ingest_post(due);
}

/* ---- reports ---- */

static void reports_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[sizeof(bench_report) * 2];
    *buf = uv_buf_init(b, sizeof b);
}

static void reports_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    worker_slot *ws = s->data;
    if (nread < 0) {
        if (!ws->closed) {
            ws->closed = 1;
            uv_close((uv_handle_t *)s, NULL);
        }
        return;
    }
    size_t off = 0;
    while (off < (size_t)nread) {
        size_t take = sizeof(bench_report) - ws->rlen;
        if (take > (size_t)nread - off)
            take = (size_t)nread - off;
        memcpy(ws->rbuf + ws->rlen, buf->base + off, take);
        ws->rlen += take;
        off += take;
        if (ws->rlen == sizeof(bench_report)) {
            bench_report r;
            memcpy(&r, ws->rbuf, sizeof r);
            ws->rlen = 0;
            if (r.magic == REPORT_MAGIC) {
                ws->last = r;
                ws->have_last = 1;
                if (r.final)
                    ws->final = 1;
            }
        }
    }
}

static void sum_reports(bench_report *t, rta_bench_hist *h)
{
    memset(t, 0, sizeof *t);
    if (h)
        rta_bench_hist_reset(h);
    for (int i = 0; i < P.nworkers; i++) {
        const bench_report *r = &P.workers[i].last;
        if (!P.workers[i].have_last)
            continue;
        t->assigned += r->assigned;
        t->ready += r->ready;
        t->ever_ready += r->ever_ready;
        t->connect_failed += r->connect_failed;
        t->disconnects += r->disconnects;
        t->deliveries += r->deliveries;
        t->pending += r->pending;
        t->deliveries_all += r->deliveries_all;
        t->bad_events += r->bad_events;
        if (r->connect_ms_max > t->connect_ms_max)
            t->connect_ms_max = r->connect_ms_max;
        if (h)
            rta_bench_hist_merge(h, &r->hist);
    }
}

static void send_control(char cmd)
{
    for (int i = 0; i < P.nworkers; i++)
        if (P.workers[i].control_fd >= 0 && write_full(P.workers[i].control_fd, &cmd, 1) != 0) {
            close(P.workers[i].control_fd);
            P.workers[i].control_fd = -1;
        }
}

static void set_phase(int phase)
{
    P.phase = phase;
    P.phase_start_ms = (uint64_t)rta_now_ms();
}

/* Expected deliveries: every update sent while measuring times the subscribers of its room
 * (assumes every assigned connection is subscribed; the ratio shows losses either way). */
static double expected_deliveries(void)
{
    double e = 0;
    if (O.sub == SUB_TVL_CHANGES)
        return (double)P.items_measured * (double)O.connections;
    for (int r = 0; r < O.rooms; r++) {
        uint64_t subs = (uint64_t)(O.connections / O.rooms) +
                        ((uint64_t)r < (uint64_t)(O.connections % O.rooms) ? 1 : 0);
        e += (double)P.room_sent[r] * (double)subs;
    }
    return e;
}

static void print_results(void)
{
    bench_report t;
    rta_bench_hist *h = rta_xcalloc(1, sizeof *h);
    sum_reports(&t, h);
    double secs = (double)(P.measure_end_ms - P.measure_start_ms) / 1000.0;
    if (secs <= 0)
        secs = 1e-9;
    double expect = expected_deliveries();
    double ratio = expect > 0 ? (double)t.deliveries / expect : 0;
    uint64_t p50 = rta_bench_hist_quantile(h, 0.50), p95 = rta_bench_hist_quantile(h, 0.95),
             p99 = rta_bench_hist_quantile(h, 0.99), p999 = rta_bench_hist_quantile(h, 0.999);
    double mean = h->total ? (double)h->sum / (double)h->total : 0;
    const char *mode = O.mode == MODE_SIO ? "sio" : "ws";
    uint64_t connect_s_ms = P.connect_done_ms - P.start_ms;

    printf("rta-bench: mode=%s target=%s:%d connections=%d workers=%d rooms=%d rate=%.0f/s "
           "duration=%.1fs\n",
           mode, O.host, O.port, O.connections, P.nworkers, O.rooms, O.rate, secs);
    printf("  connections: held %" PRIu64 " of %d at end, connect failures %" PRIu64
           ", disconnects %" PRIu64 ", still connecting %" PRIu64
           ", connect phase %.1f s (slowest handshake %.1f s)\n",
           t.ready, O.connections, t.connect_failed, t.disconnects, t.pending,
           connect_s_ms / 1000.0, t.connect_ms_max / 1000.0);
    if (!O.no_ingest)
        printf("  ingest: %" PRIu64 " updates measured (%.0f/s), %" PRIu64 " POSTs ok, %" PRIu64
               " failed (last status %d), %" PRIu64 " connection errors, %" PRIu64
               " updates skipped (server too slow)\n",
               P.items_measured, (double)P.items_measured / secs, P.posts, P.posts_failed,
               P.last_bad_status, P.conn_errors, P.items_dropped);
    printf("  deliveries: %" PRIu64 " (%.0f/s), expected %.0f (%.1f%%), unreadable %" PRIu64 "\n",
           t.deliveries, (double)t.deliveries / secs, expect, ratio * 100.0, t.bad_events);
    printf("  latency ms: p50 %.2f  p95 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f\n",
           p50 / 1000.0, p95 / 1000.0, p99 / 1000.0, p999 / 1000.0, h->max / 1000.0, mean / 1000.0);
    if (O.json) {
        printf("{\"tool\":\"rta-bench\",\"mode\":\"%s\",\"target\":\"%s:%d\",\"connections\":%d,"
               "\"workers\":%d,\"rooms\":%d,\"rate\":%.0f,\"duration_s\":%.3f,"
               "\"held\":%" PRIu64 ",\"connect_failures\":%" PRIu64 ",\"disconnects\":%" PRIu64
               ",\"still_connecting\":%" PRIu64
               ",\"connect_all_s\":%.3f,\"ingest_updates\":%" PRIu64
               ",\"ingest_posts_failed\":%" PRIu64 ",\"ingest_skipped\":%" PRIu64
               ",\"deliveries\":%" PRIu64
               ",\"deliveries_per_s\":%.1f,\"expected_deliveries\":%.0f,\"delivery_ratio\":%.4f,"
               "\"unreadable\":%" PRIu64 ",\"latency_ms\":{\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,"
               "\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}}\n",
               mode, O.host, O.port, O.connections, P.nworkers, O.rooms, O.rate, secs, t.ready,
               t.connect_failed, t.disconnects, t.pending, connect_s_ms / 1000.0, P.items_measured,
               P.posts_failed, P.items_dropped, t.deliveries, (double)t.deliveries / secs, expect,
               ratio, t.bad_events, p50 / 1000.0, p95 / 1000.0, p99 / 1000.0, p999 / 1000.0,
               h->max / 1000.0, mean / 1000.0);
    }
    fflush(stdout);
    if (t.ever_ready == 0)
        P.exit_code = 1;
    free(h);
}

static void shutdown_parent(void)
{
    uv_timer_stop(&P.phase_timer);
    uv_timer_stop(&P.ingest_timer);
    uv_close((uv_handle_t *)&P.phase_timer, NULL);
    uv_close((uv_handle_t *)&P.ingest_timer, NULL);
    uv_close((uv_handle_t *)&P.sigint, NULL);
    if (P.iconnected || P.iconnecting)
        ingest_drop();
    for (int i = 0; i < P.nworkers; i++)
        if (!P.workers[i].closed) {
            P.workers[i].closed = 1;
            uv_close((uv_handle_t *)&P.workers[i].reports, NULL);
        }
}

static void phase_cb(uv_timer_t *t)
{
    uint64_t now = (uint64_t)rta_now_ms();
    uint64_t in_phase = now - P.phase_start_ms;
    bench_report tot;
    sum_reports(&tot, NULL);
    switch (P.phase) {
    case P_CONNECT: {
        int all_reported = 1;
        for (int i = 0; i < P.nworkers; i++)
            all_reported &= P.workers[i].have_last;
        uint64_t settled = tot.ever_ready + tot.connect_failed;
        if ((all_reported && settled >= (uint64_t)O.connections) ||
            in_phase > (uint64_t)(O.connect_timeout * 1000)) {
            P.connect_done_ms = now;
            if (!O.json || isatty(STDERR_FILENO))
                fprintf(stderr,
                        "rta-bench: %" PRIu64 " connected, %" PRIu64
                        " failed in %.1f s; warmup %.0f s\n",
                        tot.ready, tot.connect_failed, (now - P.start_ms) / 1000.0, O.warmup);
            set_phase(P_WARMUP);
            P.ingest_start_ms = now;
        }
        break;
    }
    case P_WARMUP:
        if (in_phase >= (uint64_t)(O.warmup * 1000)) {
            send_control('M');
            set_phase(P_MEASURE);
            P.measure_start_ms = now;
        }
        break;
    case P_MEASURE:
        if (in_phase >= (uint64_t)(O.duration * 1000)) {
            P.measure_end_ms = now;
            set_phase(P_DRAIN);
        }
        break;
    case P_DRAIN:
        if (in_phase >= 1000) {
            send_control('E');
            set_phase(P_FINAL);
        }
        break;
    case P_FINAL: {
        int all = 1;
        for (int i = 0; i < P.nworkers; i++)
            all &= P.workers[i].final || P.workers[i].closed;
        if (all || in_phase > 10000) {
            print_results();
            set_phase(P_DONE);
            shutdown_parent();
        }
        break;
    }
    default:
        break;
    }
}

static void sigint_cb(uv_signal_t *s, int signum)
{
    /* Stop early but still report what was measured. */
    if (P.phase < P_MEASURE) {
        P.measure_start_ms = P.measure_end_ms = (uint64_t)rta_now_ms();
        send_control('M');
    } else if (P.phase == P_MEASURE) {
        P.measure_end_ms = (uint64_t)rta_now_ms();
    }
    if (P.phase < P_DRAIN) {
        set_phase(P_DRAIN);
        P.phase_start_ms -= 1000;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Command line                                                                                  */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rta-bench [options]\n"
            "  --url URL            server, http://127.0.0.1:8080 (loopback only)\n"
            "  --key KEY            API key for the sockets (default \"bench\")\n"
            "  --ingest-key KEY     API key for POST /v1/ingest (default: --key)\n"
            "  --connections N      sockets to open (default 1000)\n"
            "  --workers W          processes holding them (default ceil(N/18000))\n"
            "  --rooms R            connection i subscribes to protocol p<i %% R> (default 100)\n"
            "  --rate U             ingest updates per second (default 1000)\n"
            "  --duration S         measured seconds (default 20)\n"
            "  --warmup S           seconds of ingest before measuring (default 3)\n"
            "  --connect-timeout S  bound on the connect phase (default 60)\n"
            "  --mode sio|ws        Socket.IO over WebSocket, or plain WebSocket (default sio)\n"
            "  --sub protocol|tvl_changes  subscription kind (default protocol)\n"
            "  --threshold F        |changePercent| threshold, a fraction (default 0.01)\n"
            "  --chain C            chain of every update (default ethereum)\n"
            "  --sub-chain          subscribe to protocol+chain instead of protocol\n"
            "  --source-ips K       spread over 127.0.0.2 .. 127.0.0.(K+1) (default 16)\n"
            "  --ramp N             concurrent handshakes per worker (default 256)\n"
            "  --ingest-url URL     where to POST updates (default: --url)\n"
            "  --ingest-mode rta|reference  ingest dialect (same wire format today)\n"
            "  --ingest-interval MS a POST of the updates due every MS ms (default 10)\n"
            "  --no-ingest          do not ingest (events come from elsewhere)\n"
            "  --json               also print the result as one JSON line\n");
}

/* http://HOST:PORT[/], HOST a loopback IPv4 literal or "localhost". */
static int parse_url(const char *url, char *host, size_t hostlen, int *port)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncmp(p, "ws://", 5) == 0)
        p += 5;
    const char *colon = strchr(p, ':');
    size_t hl = colon ? (size_t)(colon - p) : strcspn(p, "/");
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    *port = colon ? atoi(colon + 1) : 80;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return -1;
    if ((ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "rta-bench: %s is not a loopback address; refusing\n", host);
        return -1;
    }
    return *port > 0 && *port < 65536 ? 0 : -1;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, 0, 'u'},
        {"key", required_argument, 0, 'k'},
        {"ingest-key", required_argument, 0, 'K'},
        {"connections", required_argument, 0, 'c'},
        {"workers", required_argument, 0, 'w'},
        {"rooms", required_argument, 0, 'r'},
        {"rate", required_argument, 0, 'R'},
        {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'W'},
        {"connect-timeout", required_argument, 0, 'T'},
        {"mode", required_argument, 0, 'm'},
        {"sub", required_argument, 0, 's'},
        {"threshold", required_argument, 0, 't'},
        {"chain", required_argument, 0, 'C'},
        {"sub-chain", no_argument, 0, 'S'},
        {"source-ips", required_argument, 0, 'i'},
        {"ramp", required_argument, 0, 'p'},
        {"ingest-url", required_argument, 0, 'I'},
        {"ingest-mode", required_argument, 0, 'M'},
        {"ingest-interval", required_argument, 0, 'N'},
        {"no-ingest", no_argument, 0, 'n'},
        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *url = "http://127.0.0.1:8080", *iurl = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 'k':
            O.key = optarg;
            break;
        case 'K':
            O.ingest_key = optarg;
            break;
        case 'c':
            O.connections = atoi(optarg);
            break;
        case 'w':
            O.workers = atoi(optarg);
            break;
        case 'r':
            O.rooms = atoi(optarg);
            break;
        case 'R':
            O.rate = atof(optarg);
            break;
        case 'N':
            O.ingest_interval_ms = atoi(optarg);
            if (O.ingest_interval_ms < 1 || O.ingest_interval_ms > 10000)
                return -1;
            break;
        case 'd':
            O.duration = atof(optarg);
            break;
        case 'W':
            O.warmup = atof(optarg);
            break;
        case 'T':
            O.connect_timeout = atof(optarg);
            break;
        case 'm':
            if (strcmp(optarg, "sio") == 0)
                O.mode = MODE_SIO;
            else if (strcmp(optarg, "ws") == 0)
                O.mode = MODE_WS;
            else
                return -1;
            break;
        case 's':
            if (strcmp(optarg, "protocol") == 0)
                O.sub = SUB_PROTOCOL;
            else if (strcmp(optarg, "tvl_changes") == 0)
                O.sub = SUB_TVL_CHANGES;
            else
                return -1;
            break;
        case 't':
            O.threshold = atof(optarg);
            break;
        case 'C':
            O.chain = optarg;
            break;
        case 'S':
            O.chain_in_sub = 1;
            break;
        case 'i':
            O.source_ips = atoi(optarg);
            break;
        case 'p':
            O.ramp = atoi(optarg);
            break;
        case 'I':
            iurl = optarg;
            break;
        case 'M':
            if (strcmp(optarg, "rta") == 0)
                O.ingest_mode = INGEST_RTA;
            else if (strcmp(optarg, "reference") == 0)
                O.ingest_mode = INGEST_REFERENCE;
            else
                return -1;
            break;
        case 'n':
            O.no_ingest = 1;
            break;
        case 'j':
            O.json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc)
        return -1;
    if (parse_url(url, O.host, sizeof O.host, &O.port) != 0)
        return -1;
    if (parse_url(iurl ? iurl : url, O.ingest_host, sizeof O.ingest_host, &O.ingest_port) != 0)
        return -1;
    if (!O.ingest_key)
        O.ingest_key = O.key;
    if (O.connections < 1 || O.connections > 1000000 || O.rooms < 1 || O.rooms > 1000000 ||
        O.rate < 0 || O.rate > 1e6 || O.duration <= 0 || O.duration > 3600 || O.warmup < 0 ||
        O.warmup > 600 || O.connect_timeout <= 0 || O.source_ips < 1 || O.source_ips > 250 ||
        O.ramp < 1 || O.workers < 0 || O.workers > MAX_WORKERS || O.threshold < 0 ||
        O.threshold > 100)
        return -1;
    if (strlen(O.key) > 150 || strlen(O.ingest_key) > 150 || strlen(O.chain) > 64)
        return -1;
    if (O.workers == 0)
        O.workers = (O.connections + 17999) / 18000;
    if (O.workers > O.connections)
        O.workers = O.connections;
    if ((O.connections + O.workers - 1) / O.workers > RTA_BENCH_MAX_PER_WORKER) {
        fprintf(stderr, "rta-bench: more than %d connections per worker; raise --workers\n",
                RTA_BENCH_MAX_PER_WORKER);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    fflush(stdout);
    fflush(stderr);

    /* Workers first, before the parent has a loop. */
    P.nworkers = O.workers;
    uint32_t first = 0;
    for (int i = 0; i < P.nworkers; i++) {
        uint32_t count = (uint32_t)(O.connections / P.nworkers) +
                         ((uint32_t)i < (uint32_t)(O.connections % P.nworkers) ? 1 : 0);
        int ctl[2], rep[2];
        if (pipe(ctl) != 0 || pipe(rep) != 0) {
            perror("pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(ctl[1]);
            close(rep[0]);
            for (int j = 0; j < i; j++) {
                close(P.workers[j].control_fd);
                close(P.workers[j].report_fd);
            }
            int rc = worker_main(i, first, count, ctl[0], rep[1]);
            exit(rc);
        }
        close(ctl[0]);
        close(rep[1]);
        P.workers[i].pid = pid;
        P.workers[i].control_fd = ctl[1];
        P.workers[i].reports.data = &P.workers[i];
        P.workers[i].report_fd = rep[0];
        first += count;
    }

    P.loop = uv_default_loop();
    P.start_ms = (uint64_t)rta_now_ms();
    rta_dbuf_init(&P.body, INGEST_BODY_MAX);
    P.parity = rta_xcalloc((size_t)O.rooms, 1);
    P.room_sent = rta_xcalloc((size_t)O.rooms, sizeof *P.room_sent);
    memset(&P.psettings, 0, sizeof P.psettings);
    P.psettings.on_message_complete = on_ingest_complete;
    for (int i = 0; i < P.nworkers; i++) {
        worker_slot *ws = &P.workers[i];
        int fd = ws->report_fd;
        uv_pipe_init(P.loop, &ws->reports, 0);
        ws->reports.data = ws;
        uv_pipe_open(&ws->reports, fd);
        uv_read_start((uv_stream_t *)&ws->reports, reports_alloc_cb, reports_read_cb);
    }
    uv_timer_init(P.loop, &P.phase_timer);
    uv_timer_start(&P.phase_timer, phase_cb, 100, 100);
    uv_timer_init(P.loop, &P.ingest_timer);
    if (!O.no_ingest && O.rate > 0)
        uv_timer_start(&P.ingest_timer, ingest_tick_cb, (uint64_t)O.ingest_interval_ms,
                       (uint64_t)O.ingest_interval_ms);
    uv_signal_init(P.loop, &P.sigint);
    uv_signal_start(&P.sigint, sigint_cb, SIGINT);
    set_phase(P_CONNECT);

    uv_run(P.loop, UV_RUN_DEFAULT);

    for (int i = 0; i < P.nworkers; i++) {
        if (P.workers[i].control_fd >= 0)
            close(P.workers[i].control_fd);
    }
    /* Workers exit once they have closed their sockets; bound the wait. */
    for (int i = 0; i < P.nworkers; i++) {
        int status;
        for (int tries = 0; tries < 100; tries++) {
            if (waitpid(P.workers[i].pid, &status, WNOHANG) != 0)
                goto reaped;
            usleep(100000);
        }
        kill(P.workers[i].pid, SIGKILL);
        waitpid(P.workers[i].pid, &status, 0);
    reaped:;
    }
    uv_loop_close(P.loop);
    rta_dbuf_free(&P.body);
    free(P.req);
    free(P.parity);
    free(P.room_sent);
    return P.exit_code;
}
