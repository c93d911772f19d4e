/*
 * WebSocket (RFC 6455) server connections on rta_net. See rta/ws.h for the contract.
 *
 * Receive: bytes from the conn go to our frame parser (src/ws/rx.c, one small rta_ws__rx per
 * ws, buffers allocated only while a message or control frame is in progress): it checks
 * masking, opcodes, control frame rules, UTF-8 of text messages and close frames, the frame
 * and message size caps, reassembles fragmented messages and reports messages and control
 * frames to the callbacks here, which answer pings with pongs and closes with closes. A
 * violation makes it return the close code; we then send that close and shut the conn down
 * after the flush.
 *
 * Send: rta_ws_frame() builds a complete server frame into one rbuf that any number of ws
 * share; rta_ws_send_frame() appends a reference to the ws's pending array and puts the ws on
 * its loop's flush list. Our own control frames (pong, close) are appended to the same array,
 * so the wire order is the order of the calls. A uv_check handle per loop (with a uv_idle
 * handle that keeps the poll phase from blocking while something is pending) flushes every
 * listed ws with one rta_conn_writev per loop turn; the pending array is freed once drained,
 * so an idle ws holds no send memory.
 *
 * permessage-deflate (when opts.permessage_deflate and the client offered it): the answer
 * always carries server_no_context_takeover, so rta_ws_frame_deflated() compresses each message
 * with a fresh raw deflate stream (one per thread, reset per message) and the result is valid
 * for every ws; rta_ws_send_frames() picks it or the plain frame. The parser is told RSV1 is
 * allowed (it then rejects RSV1 on control and continuation frames with 1002 and skips its
 * UTF-8 check for compressed text); rx_on_message inflates messages with RSV1 through one
 * z_stream per ws (kept across messages when the client uses context takeover), stops at
 * max_message_bytes of output (1009) and validates UTF-8 of text itself (1007).
 *
 * Lifetime: the ws is freed after its handler's on_close returned, which happens inside the
 * conn's proto on_close. Callbacks into the handler (on_message) run inside the parser, so a
 * close or abort asked for there is deferred until it has returned (busy counter).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* ws_handshake.h and ws.h both name an RTA_WS_OK enumerator (same value 0): keep the
 * handshake one under another name in this file. */
#define RTA_WS_OK RTA_WS_HS_OK_
#include "rta/ws_handshake.h"
#undef RTA_WS_OK

#include "rta/log.h"
#include "rta/util.h"
#include "rta/ws.h"
#include "ws/ws_internal.h"

#define WS_MAGIC 0x77736f6bu /* "wsok" */
#define WS_MAX_HEADER_JOIN 8192

typedef struct ws_loop ws_loop;

#define INLINE_PENDING 3 /* frames a ws queues in a turn without an array of its own */

struct rta_ws {
    unsigned magic;
    rta_conn *conn; /* NULL once the conn is gone */
    /* send: the fan-out path touches these, so they come first and together */
    rta_rbuf **pending; /* inline_pending, or an array of cap_pending when more were queued */
    size_t npending, cap_pending;
    size_t pending_bytes;
    size_t max_queued_bytes; /* opts.max_queued_bytes */
    rta_ws *flush_next;
    ws_loop *wl;
    rta_rbuf *inline_pending[INLINE_PENDING];
    unsigned listed : 1;        /* on wl's flush list (or being flushed) */
    unsigned full : 1;          /* a send returned RTA_WS_FULL: call on_writable later */
    unsigned close_started : 1; /* rta_ws_close sent our close frame */
    unsigned close_after_flush : 1;
    unsigned abort_pending : 1;
    unsigned failed : 1; /* protocol error: deliver nothing more */
    unsigned closed_notified : 1;
    unsigned dead : 1;           /* conn gone while busy: free when busy drops to 0 */
    unsigned close_sent : 1;     /* a close frame of ours is queued: nothing may follow it */
    unsigned close_received : 1; /* the peer's close frame arrived */
    /* permessage-deflate */
    unsigned deflate : 1; /* negotiated */
    rta_ws__rx rx;        /* receive-side parser */
    rta_ws_options opts;
    rta_ws_handler h;
    void *ud;
    char *held; /* leftover bytes after the upgrade head, fed on the first flush */
    size_t held_len;
    rta_ws_deflate_params dp;
    z_stream *inf; /* created on the first compressed message */
    int busy;
    int close_code; /* for on_close: sent or received, 1006 until known */
    char close_reason[64];
};

/* One per libuv loop with live ws: the flush list and its handles. */
struct ws_loop {
    uv_loop_t *loop;
    rta_net *net; /* whose writes this flush queued (one server per loop) */
    uv_check_t check;
    uv_idle_t idle;
    rta_ws *head, *tail;
    size_t nws;
    int in_flush;
    int closing_handles;
    ws_loop *next;
};

static pthread_mutex_t loops_mu = PTHREAD_MUTEX_INITIALIZER;
static ws_loop *loops;

static void ws_flush_one(rta_ws *ws);
static void ws_on_read(rta_conn *c, const char *data, size_t len);
static void ws_on_drain(rta_conn *c);

/* ---- per-loop flusher ---- */

static void on_loop_handle_closed(uv_handle_t *h)
{
    ws_loop *wl = h->data;
    if (--wl->closing_handles == 0)
        free(wl);
}

static void loop_release(ws_loop *wl)
{
    if (--wl->nws > 0 || wl->in_flush)
        return;
    pthread_mutex_lock(&loops_mu);
    for (ws_loop **p = &loops; *p; p = &(*p)->next)
        if (*p == wl) {
            *p = wl->next;
            break;
        }
    pthread_mutex_unlock(&loops_mu);
    wl->closing_handles = 2;
    uv_close((uv_handle_t *)&wl->check, on_loop_handle_closed);
    uv_close((uv_handle_t *)&wl->idle, on_loop_handle_closed);
}

static void on_idle(uv_idle_t *h)
{
    /* nothing: an active idle handle only keeps the poll phase from blocking */
}

static void on_check(uv_check_t *h)
{
    ws_loop *wl = h->data;
    wl->in_flush = 1;
    while (wl->head) {
        rta_ws *ws = wl->head;
        wl->head = ws->flush_next;
        if (wl->head == NULL)
            wl->tail = NULL;
        ws->flush_next = NULL;
        ws_flush_one(ws); /* clears ws->listed; may free ws */
    }
    if (wl->net) {
        rta_net_flush_writes(wl->net);
        wl->net = NULL;
    }
    uv_idle_stop(&wl->idle);
    uv_check_stop(&wl->check);
    wl->in_flush = 0;
    if (wl->nws == 0) {
        wl->nws = 1;
        loop_release(wl);
    }
}

static ws_loop *loop_acquire(uv_loop_t *loop)
{
    pthread_mutex_lock(&loops_mu);
    ws_loop *wl = loops;
    while (wl && wl->loop != loop)
        wl = wl->next;
    if (wl == NULL) {
        wl = rta_xcalloc(1, sizeof *wl);
        wl->loop = loop;
        uv_check_init(loop, &wl->check);
        uv_idle_init(loop, &wl->idle);
        wl->check.data = wl;
        wl->idle.data = wl;
        wl->next = loops;
        loops = wl;
    }
    wl->nws++;
    pthread_mutex_unlock(&loops_mu);
    return wl;
}

static void schedule_flush(rta_ws *ws)
{
    if (ws->listed)
        return;
    ws->listed = 1;
    ws_loop *wl = ws->wl;
    if (wl->tail)
        wl->tail->flush_next = ws;
    else
        wl->head = ws;
    wl->tail = ws;
    if (!uv_is_active((uv_handle_t *)&wl->check)) {
        uv_check_start(&wl->check, on_check);
        uv_idle_start(&wl->idle, on_idle);
    }
}

static void unlist(rta_ws *ws)
{
    if (!ws->listed)
        return;
    ws_loop *wl = ws->wl;
    rta_ws *prev = NULL;
    for (rta_ws *p = wl->head; p; prev = p, p = p->flush_next)
        if (p == ws) {
            if (prev)
                prev->flush_next = ws->flush_next;
            else
                wl->head = ws->flush_next;
            if (wl->tail == ws)
                wl->tail = prev;
            break;
        }
    ws->flush_next = NULL;
    ws->listed = 0;
}

/* ---- lifetime ---- */

static void drop_pending(rta_ws *ws)
{
    for (size_t i = 0; i < ws->npending; i++)
        rta_rbuf_unref(ws->pending[i]);
    ws->npending = 0;
    ws->pending_bytes = 0;
}

static void ws_free(rta_ws *ws)
{
    drop_pending(ws);
    if (ws->pending != ws->inline_pending)
        free(ws->pending);
    free(ws->held);
    rta_ws__inflate_free(ws->inf);
    rta_ws__rx_free(&ws->rx);
    ws_loop *wl = ws->wl;
    ws->magic = 0;
    free(ws);
    loop_release(wl);
}

static void busy_enter(rta_ws *ws)
{
    ws->busy++;
}

/* Returns 1 when ws was freed. Runs deferred aborts when the outermost caller leaves. */
static int busy_leave(rta_ws *ws)
{
    if (--ws->busy > 0)
        return 0;
    if (ws->abort_pending && ws->conn) {
        ws->abort_pending = 0;
        ws->busy++;
        rta_conn_close(ws->conn);
        ws->busy--;
    }
    if (ws->dead) {
        ws_free(ws);
        return 1;
    }
    return 0;
}

static void set_close(rta_ws *ws, int code, const char *reason)
{
    ws->close_code = code;
    snprintf(ws->close_reason, sizeof ws->close_reason, "%s", reason ? reason : "");
}

/* proto on_close: the conn is going away (by us or by the peer). */
static void ws_conn_on_close(rta_conn *c)
{
    rta_ws *ws = c->proto_data;
    if (ws == NULL)
        return;
    ws->conn = NULL;
    unlist(ws);
    drop_pending(ws);
    if (!ws->closed_notified) {
        ws->closed_notified = 1;
        if (ws->h.on_close) {
            busy_enter(ws);
            ws->h.on_close(ws, ws->close_code, ws->close_reason);
            ws->busy--;
        }
    }
    if (ws->busy > 0)
        ws->dead = 1;
    else
        ws_free(ws);
}

/* ---- send path ---- */

/* Appends b (the caller's reference is taken over) and lists ws for the next flush. */
static void push_pending(rta_ws *ws, rta_rbuf *b)
{
    if (ws->pending == NULL) {
        ws->pending = ws->inline_pending;
        ws->cap_pending = INLINE_PENDING;
    } else if (ws->npending == ws->cap_pending) {
        size_t cap = ws->cap_pending * 2;
        if (ws->pending == ws->inline_pending) {
            ws->pending = rta_xmalloc(cap * sizeof *ws->pending);
            memcpy(ws->pending, ws->inline_pending, sizeof ws->inline_pending);
        } else {
            ws->pending = rta_xrealloc(ws->pending, cap * sizeof *ws->pending);
        }
        ws->cap_pending = cap;
    }
    ws->pending[ws->npending++] = b;
    ws->pending_bytes += b->len;
    schedule_flush(ws);
}

/* Called by the loop's check handle for a ws just taken off the flush list: feeds the
 * upgrade leftover if any, then hands everything pending to the conn in one writev. ws->listed
 * stays set meanwhile so that sends made here do not list it again. May free ws. */
static void ws_flush_one(rta_ws *ws)
{
    if (ws->conn == NULL) {
        ws->listed = 0;
        return;
    }
    busy_enter(ws);
    if (ws->held) { /* bytes that came with the upgrade request */
        char *held = ws->held;
        size_t len = ws->held_len;
        ws->held = NULL;
        ws->held_len = 0;
        ws_on_read(ws->conn, held, len);
        free(held);
    }
    if (ws->conn && ws->npending) {
        ws->wl->net = ws->conn->net; /* writer threads get the turn's writes in one hand-over */
        rta_conn_writev(ws->conn, ws->pending, ws->npending);
        drop_pending(ws);
    }
    if (ws->pending != ws->inline_pending)
        free(ws->pending); /* idle connections hold no send array */
    ws->pending = NULL;
    ws->cap_pending = 0;
    ws->listed = 0;
    if (ws->conn && ws->conn->writes_in_flight == 0) /* the socket took it all at once */
        ws_on_drain(ws->conn);
    if (ws->conn && ws->close_after_flush && !ws->conn->closing)
        rta_conn_close_graceful(ws->conn);
    busy_leave(ws);
}

/* Queues one of our control frames (pong, close) behind what is already pending. */
static void push_control(rta_ws *ws, int opcode, const void *payload, size_t len)
{
    push_pending(ws, rta_ws_frame(opcode, payload, len));
}

/* parser: a frame header arrived (any frame counts as activity) */
static void rx_on_frame(void *ud)
{
    rta_ws *ws = ud;
    if (ws->conn && !ws->close_started && !ws->close_sent)
        rta_conn_set_timeout(ws->conn, ws->opts.idle_timeout_ms);
}

int rta_ws__utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return 0;
        if (n - i <= need)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

void rta_ws__inflate_free(z_stream *z)
{
    if (z) {
        inflateEnd(z);
        free(z);
    }
}

int rta_ws__inflate(z_stream **zp, int window_bits, int no_context_takeover, size_t max,
                    const uint8_t *in, size_t len, char **out, size_t *olen)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    *out = NULL;
    *olen = 0;
    if (*zp == NULL) {
        /* zlib cannot deflate with an 8-bit window and uses 9: inflate with at least 9 */
        int bits = window_bits < 9 ? 9 : window_bits > 15 ? 15 : window_bits;
        *zp = rta_xcalloc(1, sizeof **zp);
        if (inflateInit2(*zp, -bits) != Z_OK) {
            free(*zp);
            *zp = NULL;
            return 1011;
        }
    } else if (no_context_takeover) {
        inflateReset(*zp);
    }
    z_stream *z = *zp;
    size_t cap = len * 4 + 64;
    if (cap > max + 1)
        cap = max + 1;
    char *buf = rta_xmalloc(cap);
    size_t used = 0;
    int phase = 0, code = 0;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)len;
    for (;;) {
        if (z->avail_in == 0 && phase == 0) {
            phase = 1;
            z->next_in = (Bytef *)(uintptr_t)tail;
            z->avail_in = sizeof tail;
        }
        if (used == cap) {
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            buf = rta_xrealloc(buf, cap);
        }
        z->next_out = (Bytef *)buf + used;
        z->avail_out = (uInt)(cap - used);
        int rc = inflate(z, Z_SYNC_FLUSH);
        used = cap - z->avail_out;
        if (used > max) {
            code = 1009; /* never inflate more than the cap (zip bombs) */
            break;
        }
        if (rc == Z_STREAM_END) {
            /* the client ended the deflate stream (BFINAL): a later message starts a new
             * one, with the window kept when the client uses context takeover */
            if (!no_context_takeover) {
                Bytef *dict = rta_xmalloc(32768);
                uInt dlen = 32768;
                inflateGetDictionary(z, dict, &dlen);
                inflateReset(z);
                inflateSetDictionary(z, dict, dlen);
                free(dict);
            } else {
                inflateReset(z);
            }
            break;
        }
        if (rc == Z_MEM_ERROR) {
            code = 1011;
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            code = 1007;
            break;
        }
        if (z->avail_in == 0 && phase == 1 && z->avail_out > 0)
            break; /* all input used, all output flushed */
        if (rc == Z_BUF_ERROR && z->avail_in > 0 && z->avail_out > 0) {
            code = 1007;
            break;
        }
    }
    z->next_in = NULL;
    z->next_out = NULL;
    if (code) {
        free(buf); /* the connection is failed: the stream is not used again */
        return code;
    }
    *out = buf;
    *olen = used;
    return 0;
}

static void fail_with(rta_ws *ws, int code, const char *reason);

/* parser: a complete data message. Nonzero stops the parser (the ws is failing or gone). */
static int rx_on_message(void *ud, int op, int rsv1, const char *data, size_t len)
{
    rta_ws *ws = ud;
    if (ws->failed || ws->conn == NULL || ws->abort_pending)
        return 1;
    if (!rsv1) {
        if (len > ws->opts.max_message_bytes) { /* the parser's cap has slack (deflate) */
            fail_with(ws, 1009, "message too big");
            return 1;
        }
        if (ws->h.on_message)
            ws->h.on_message(ws, op, data, len);
        return ws->failed || ws->conn == NULL || ws->abort_pending;
    }
    if (!ws->deflate) { /* the parser only lets RSV1 through when we allowed it */
        fail_with(ws, 1002, "protocol error");
        return 1;
    }
    char *msg;
    size_t mlen;
    int code =
        rta_ws__inflate(&ws->inf, ws->dp.client_max_window_bits, ws->dp.client_no_context_takeover,
                        ws->opts.max_message_bytes, (const uint8_t *)data, len, &msg, &mlen);
    if (code == 0 && op == RTA_WS_OP_TEXT && !rta_ws__utf8_valid((const unsigned char *)msg, mlen))
        code = 1007;
    if (code) {
        free(msg);
        fail_with(ws, code,
                  code == 1009   ? "message too big"
                  : code == 1007 ? "invalid compressed data or UTF-8"
                                 : "out of memory");
        return 1;
    }
    if (ws->h.on_message)
        ws->h.on_message(ws, op, msg, mlen);
    free(msg);
    return ws->failed || ws->conn == NULL || ws->abort_pending;
}

/* Fails the connection: our close frame with code (unless one was sent), then shutdown. */
static void fail_with(rta_ws *ws, int code, const char *reason)
{
    ws->failed = 1;
    if (ws->close_after_flush || ws->conn == NULL)
        return;
    unsigned char payload[2 + 64];
    size_t rlen = strlen(reason);
    if (rlen > 64)
        rlen = 64;
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)(code & 0xff);
    memcpy(payload + 2, reason, rlen);
    if (!ws->close_sent) {
        ws->close_sent = 1;
        push_control(ws, RTA_WS_OP_CLOSE, payload, 2 + rlen);
    }
    rta_ws__rx_free(&ws->rx); /* reads nothing more */
    set_close(ws, code, reason);
    ws->close_after_flush = 1;
    rta_conn_set_timeout(ws->conn, ws->opts.close_timeout_ms);
    schedule_flush(ws);
    rta_log(RTA_LOG_INFO, "websocket protocol error", "{s:s,s:i,s:s}", "remote_ip",
            ws->conn->remote_ip, "code", code, "reason", reason);
}

/* parser: a control frame. Pings are answered, pongs ignored, a close is answered (unless
 * ours was sent: then the handshake is complete) and the conn shut down after the flush. */
static int rx_on_control(void *ud, int op, const uint8_t *payload, size_t len)
{
    rta_ws *ws = ud;
    if (ws->failed || ws->conn == NULL || ws->abort_pending)
        return 1;
    if (op == RTA_WS_OP_PING) {
        if (!ws->close_sent)
            push_control(ws, RTA_WS_OP_PONG, payload, len);
        return 0;
    }
    if (op != RTA_WS_OP_CLOSE)
        return 0;
    ws->close_received = 1;
    if (!ws->close_sent) { /* the peer started: echo its code and reason */
        ws->close_sent = 1;
        push_control(ws, RTA_WS_OP_CLOSE, payload, len);
        int code = len >= 2 ? (payload[0] << 8) | payload[1] : 1005;
        set_close(ws, code, "closed by peer");
    }
    ws->close_after_flush = 1;
    rta_conn_set_timeout(ws->conn, ws->opts.close_timeout_ms);
    schedule_flush(ws);
    return 1;
}

static const rta_ws__rx_cb rx_cb = {
    .on_frame = rx_on_frame,
    .on_message = rx_on_message,
    .on_control = rx_on_control,
};

static void ws_on_read(rta_conn *c, const char *data, size_t len)
{
    rta_ws *ws = c->proto_data;
    if (ws->failed || ws->close_after_flush)
        return;
    busy_enter(ws);
    if (ws->held) { /* leftover from the upgrade first: order matters */
        char *held = ws->held;
        size_t hlen = ws->held_len;
        ws->held = NULL;
        ws->held_len = 0;
        ws_on_read(c, held, hlen);
        free(held);
    }
    if (ws->conn && !ws->failed && !ws->close_after_flush && !ws->close_received) {
        int rc = rta_ws__rx_feed(&ws->rx, (const uint8_t *)data, len, &rx_cb, ws);
        if (rc > 0 && ws->conn && !ws->abort_pending && !ws->failed)
            fail_with(ws, rc, ws->rx.err_reason ? ws->rx.err_reason : "protocol error");
    }
    busy_leave(ws);
}

static void ws_on_timeout(rta_conn *c)
{
    rta_ws *ws = c->proto_data;
    if (ws->close_started || ws->close_after_flush || ws->close_sent) {
        /* the peer did not finish the close handshake (or read our close) in time */
        rta_conn_close(c);
        return;
    }
    rta_log(RTA_LOG_INFO, "websocket idle timeout", "{s:s}", "remote_ip", c->remote_ip);
    rta_ws_close(ws, 1001, "idle timeout");
}

static void ws_on_drain(rta_conn *c)
{
    rta_ws *ws = c->proto_data;
    if (!ws->full)
        return;
    if (rta_ws_queued_bytes(ws) > ws->max_queued_bytes / 2) {
        c->drain_wanted = 1; /* not yet: ask again when what is in flight now is written */
        return;
    }
    ws->full = 0;
    if (ws->h.on_writable && !ws->close_started && !ws->close_after_flush) {
        busy_enter(ws);
        ws->h.on_writable(ws);
        busy_leave(ws);
    }
}

static const rta_conn_proto ws_proto = {
    .name = "ws",
    .on_read = ws_on_read,
    .on_drain = ws_on_drain,
    .on_timeout = ws_on_timeout,
    .on_close = ws_conn_on_close,
};

/* ---- handshake ---- */

typedef struct {
    const rta_http_req *req;
    rta_dbuf joined[8]; /* one per looked-up name, alive until the check returns */
    size_t njoined;
} hdr_lookup;

static const char *lookup_header(void *ud, const char *name, size_t *len)
{
    hdr_lookup *lk = ud;
    const rta_http_req *req = lk->req;
    const char *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) {
            if (first == NULL)
                first = req->headers[i].value;
            count++;
        }
    if (count <= 1 || lk->njoined == sizeof lk->joined / sizeof lk->joined[0]) {
        if (first)
            *len = strlen(first);
        return first;
    }
    rta_dbuf *b = &lk->joined[lk->njoined++];
    rta_dbuf_init(b, WS_MAX_HEADER_JOIN);
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) {
            if (b->len)
                rta_dbuf_puts(b, ", ");
            rta_dbuf_puts(b, req->headers[i].value);
        }
    *len = b->len;
    return b->data ? b->data : "";
}

static const char *error_code_for(int rc)
{
    switch (rc) {
    case RTA_WS_ERR_METHOD:
        return "invalid_method";
    case RTA_WS_ERR_HTTP_VERSION:
        return "invalid_http_version";
    case RTA_WS_ERR_HOST:
        return "invalid_host";
    case RTA_WS_ERR_UPGRADE:
        return "invalid_upgrade";
    case RTA_WS_ERR_CONNECTION:
        return "invalid_connection";
    case RTA_WS_ERR_VERSION:
        return "upgrade_required";
    case RTA_WS_ERR_KEY:
        return "invalid_websocket_key";
    case RTA_WS_ERR_EXTENSIONS:
        return "invalid_websocket_extensions";
    default:
        return "internal";
    }
}

/* Is token in the comma-separated list (case-sensitive, as subprotocol names are)? */
static int list_has_token(const char *list, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e2 = end;
        while (e2 > p && (e2[-1] == ' ' || e2[-1] == '\t'))
            e2--;
        if ((size_t)(e2 - p) == tlen && memcmp(p, token, tlen) == 0)
            return 1;
        p = end;
    }
    return 0;
}

void rta_ws_options_default(rta_ws_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_frame_bytes = 1 << 20;
    o->max_message_bytes = 1 << 20;
    o->max_queued_bytes = 1 << 20;
    o->close_timeout_ms = 5000;
    o->idle_timeout_ms = 0;
    o->permessage_deflate = 0;
    o->subprotocol = NULL;
}

rta_ws *rta_ws_accept(rta_http_req *req, rta_conn *conn, const char *leftover, size_t len,
                      const rta_ws_options *opts, const rta_ws_handler *handler, void *ud)
{
    rta_ws_options defaults;
    if (opts == NULL) {
        rta_ws_options_default(&defaults);
        opts = &defaults;
    }
    char accept[RTA_WS_ACCEPT_LEN + 1];
    hdr_lookup lk = {.req = req};
    int rc = rta_ws_handshake_check(req->method ? req->method : "", 1, req->http_minor,
                                    lookup_header, &lk, accept);
    for (size_t i = 0; i < lk.njoined; i++)
        rta_dbuf_free(&lk.joined[i]);
    if (rc != 0) {
        int status = rta_ws_handshake_status(rc);
        const char *hname = rta_ws_handshake_header(rc);
        if (rc == RTA_WS_ERR_VERSION)
            rta_http_add_header(req, "Sec-WebSocket-Version", "13");
        rta_log(RTA_LOG_INFO, "websocket handshake refused", "{s:s,s:s}", "remote_ip",
                conn->remote_ip, "error", rta_ws_handshake_strerror(rc));
        rta_http_send_error(req, status, error_code_for(rc), rta_ws_handshake_strerror(rc),
                            hname ? json_pack("{s:s}", "header", hname) : NULL);
        return NULL;
    }

    rta_ws_deflate_params dp;
    char ext[RTA_WS_EXT_RESPONSE_MAX] = "";
    int deflate = 0;
    if (opts->permessage_deflate) {
        /* the server never keeps a compression context (so broadcasts compress once); it
         * reads with the client's context takeover and any window the client uses */
        rta_ws_deflate_config dc;
        rta_ws_deflate_config_default(&dc);
        dc.server_no_context_takeover = true;
        hdr_lookup lx = {.req = req};
        size_t xlen = 0;
        const char *xv = lookup_header(&lx, "Sec-WebSocket-Extensions", &xlen);
        deflate = rta_ws_deflate_negotiate(xv, xv ? xlen : 0, &dc, &dp, ext);
        for (size_t i = 0; i < lx.njoined; i++)
            rta_dbuf_free(&lx.joined[i]);
        if (deflate < 0) {
            rta_log(RTA_LOG_INFO, "websocket handshake refused", "{s:s,s:s}", "remote_ip",
                    conn->remote_ip, "error", rta_ws_handshake_strerror(deflate));
            rta_http_send_error(req, 400, error_code_for(deflate),
                                rta_ws_handshake_strerror(deflate),
                                json_pack("{s:s}", "header", "Sec-WebSocket-Extensions"));
            return NULL;
        }
    }

    rta_dbuf out;
    rta_dbuf_init(&out, 4096);
    rta_dbuf_printf(&out,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                    accept);
    if (deflate == 1)
        rta_dbuf_printf(&out, "Sec-WebSocket-Extensions: %s\r\n", ext);
    const char *offered = rta_http_header_get(req, "Sec-WebSocket-Protocol");
    if (opts->subprotocol && offered && list_has_token(offered, opts->subprotocol))
        rta_dbuf_printf(&out, "Sec-WebSocket-Protocol: %s\r\n", opts->subprotocol);
    rta_dbuf_puts(&out, "\r\n");
    rta_rbuf *head = rta_rbuf_from_dbuf(&out);
    rta_dbuf_free(&out);

    rta_ws *ws = rta_xcalloc(1, sizeof *ws);
    ws->magic = WS_MAGIC;
    ws->conn = conn;
    ws->opts = *opts;
    ws->opts.subprotocol = NULL; /* not kept: the caller's string may not outlive us */
    if (ws->opts.max_frame_bytes == 0)
        ws->opts.max_frame_bytes = 1 << 20;
    if (ws->opts.max_message_bytes == 0)
        ws->opts.max_message_bytes = 1 << 20;
    if (ws->opts.max_queued_bytes == 0)
        ws->opts.max_queued_bytes = 1 << 20;
    ws->max_queued_bytes = ws->opts.max_queued_bytes;
    if (handler)
        ws->h = *handler;
    ws->ud = ud;
    ws->close_code = 1006;
    snprintf(ws->close_reason, sizeof ws->close_reason, "connection lost");
    size_t max_msg = ws->opts.max_message_bytes;
    if (deflate == 1) {
        ws->deflate = 1;
        ws->dp = dp;
        /* the parser caps the compressed size; the inflated size is checked in rx_on_message.
         * Leave room for deflate's worst-case growth of incompressible data. */
        max_msg = max_msg + max_msg / 1024 + 64;
    }
    rta_ws__rx_init(&ws->rx, ws->opts.max_frame_bytes, max_msg, ws->deflate);
    ws->wl = loop_acquire(conn->tcp.loop);

    rta_conn_set_proto(conn, &ws_proto, ws);
    rta_conn_write(conn, head);
    rta_rbuf_unref(head);
    rta_conn_offload_writes(conn); /* fan-out writes go to a writer thread, when there are any */
    rta_conn_set_timeout(conn, ws->opts.idle_timeout_ms);
    rta_conn_resume_read(conn);
    if (len > 0) {
        /* fed on the first flush (this loop turn), so that the caller holds the ws before
         * any callback about it runs */
        ws->held = rta_xmalloc(len);
        memcpy(ws->held, leftover, len);
        ws->held_len = len;
        schedule_flush(ws);
    }
    return ws;
}

void *rta_ws_get_data(const rta_ws *ws)
{
    return ws->ud;
}

void rta_ws_set_data(rta_ws *ws, void *ud)
{
    ws->ud = ud;
}

rta_conn *rta_ws_conn(const rta_ws *ws)
{
    return ws->conn;
}

/* A server frame: FIN, RSV1 when rsv1, no mask. */
static rta_rbuf *frame_build(int opcode, int rsv1, const void *payload, size_t len)
{
    unsigned char hdr[10];
    size_t hlen;
    hdr[0] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    if (len < 126) {
        hdr[1] = (unsigned char)len;
        hlen = 2;
    } else if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        hlen = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hlen = 10;
    }
    rta_rbuf *b = rta_rbuf_new(NULL, hlen + len);
    memcpy(b->data, hdr, hlen);
    if (len)
        memcpy(b->data + hlen, payload, len);
    return b;
}

rta_rbuf *rta_ws_frame(int opcode, const void *payload, size_t len)
{
    return frame_build(opcode, 0, payload, len);
}

/* One raw deflate stream per thread, reset for each message (rbufs and ws live on one loop
 * thread, but several loops may compress at once). Freed when the thread exits. */
static pthread_key_t deflater_key;
static pthread_once_t deflater_once = PTHREAD_ONCE_INIT;

static void deflater_free(void *p)
{
    deflateEnd(p);
    free(p);
}

static void deflater_key_init(void)
{
    if (pthread_key_create(&deflater_key, deflater_free) != 0)
        abort();
}

static z_stream *deflater_get(void)
{
    pthread_once(&deflater_once, deflater_key_init);
    z_stream *z = pthread_getspecific(deflater_key);
    if (z) {
        deflateReset(z);
        return z;
    }
    z = rta_xcalloc(1, sizeof *z);
    /* 15-bit window; memLevel 8 (zlib's default) */
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    pthread_setspecific(deflater_key, z);
    return z;
}

rta_rbuf *rta_ws_frame_deflated(int opcode, const void *payload, size_t len)
{
    z_stream *z = deflater_get();
    if (z == NULL)
        return NULL;
    size_t cap = deflateBound(z, (uLong)len) + 16;
    unsigned char *buf = rta_xmalloc(cap);
    z->next_in = (Bytef *)(uintptr_t)payload;
    z->avail_in = (uInt)len;
    z->next_out = buf;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, Z_SYNC_FLUSH);
    size_t n = cap - z->avail_out;
    z->next_in = NULL;
    z->next_out = NULL;
    rta_rbuf *f = NULL;
    /* a sync flush ends with an empty stored block 00 00 ff ff, which RFC 7692 removes */
    if (rc == Z_OK && z->avail_in == 0 && n >= 4 && memcmp(buf + n - 4, "\0\0\xff\xff", 4) == 0) {
        n -= 4;
        if (n < len)
            f = frame_build(opcode, 1, buf, n);
    }
    free(buf);
    return f;
}

static int ws_is_closed(const rta_ws *ws)
{
    return ws->conn == NULL || ws->conn->closing || ws->conn->shutting_down || ws->close_started ||
           ws->close_after_flush || ws->abort_pending || ws->close_sent;
}

size_t rta_ws_queued_bytes(const rta_ws *ws)
{
    return ws->pending_bytes + (ws->conn ? ws->conn->write_queued_bytes : 0);
}

int rta_ws_send_frame(rta_ws *ws, rta_rbuf *frame)
{
    if (ws_is_closed(ws))
        return RTA_WS_CLOSED;
    size_t queued = rta_ws_queued_bytes(ws);
    /* a frame larger than the whole cap still goes out when nothing else is queued */
    if (queued > 0 && queued + frame->len > ws->max_queued_bytes) {
        ws->full = 1;
        ws->conn->drain_wanted = 1; /* ws_on_drain: tell the sender when there is room */
        return RTA_WS_FULL;
    }
    push_pending(ws, rta_rbuf_ref(frame));
    return RTA_WS_OK;
}

/* Payload length of a server frame built by frame_build. */
static size_t frame_payload_len(const rta_rbuf *f)
{
    const unsigned char *d = (const unsigned char *)f->data;
    return f->len - ((d[1] & 0x7f) < 126 ? 2 : (d[1] & 0x7f) == 126 ? 4 : 10);
}

int rta_ws_deflate_enabled(const rta_ws *ws)
{
    return ws->deflate;
}

int rta_ws_send_frames(rta_ws *ws, rta_rbuf *plain, rta_rbuf *deflated)
{
    if (deflated && ws->deflate) {
        /* compressed with a 15-bit window: a client that asked for a smaller one can still
         * read it when the message is no longer than its window (no distance can be longer
         * than what was already output) */
        int bits = ws->dp.server_max_window_bits;
        if (bits >= 15 || frame_payload_len(plain) <= ((size_t)1 << bits))
            return rta_ws_send_frame(ws, deflated);
    }
    return rta_ws_send_frame(ws, plain);
}

int rta_ws_send(rta_ws *ws, int opcode, const void *data, size_t len)
{
    if (ws_is_closed(ws))
        return RTA_WS_CLOSED;
    rta_rbuf *f = rta_ws_frame(opcode, data, len);
    rta_rbuf *d = ws->deflate ? rta_ws_frame_deflated(opcode, data, len) : NULL;
    int rc = rta_ws_send_frames(ws, f, d);
    rta_rbuf_unref(f);
    if (d)
        rta_rbuf_unref(d);
    return rc;
}

void rta_ws_close(rta_ws *ws, int code, const char *reason)
{
    if (ws_is_closed(ws))
        return;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123)
        rlen = 123;
    unsigned char payload[2 + 123];
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)(code & 0xff);
    if (rlen)
        memcpy(payload + 2, reason, rlen);
    ws->close_sent = 1;
    ws->close_started = 1;
    push_control(ws, RTA_WS_OP_CLOSE, payload, 2 + rlen);
    set_close(ws, code, reason);
    rta_conn_set_timeout(ws->conn, ws->opts.close_timeout_ms);
}

void rta_ws_abort(rta_ws *ws, const char *reason)
{
    if (ws->conn == NULL || ws->abort_pending)
        return;
    if (ws->close_code == 1006 || !ws->close_started)
        set_close(ws, 1006, reason ? reason : "aborted");
    if (ws->busy > 0) {
        ws->abort_pending = 1; /* inside a callback: closed when it returns */
        return;
    }
    rta_conn_close(ws->conn);
}
