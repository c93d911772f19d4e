/*
 * Engine.IO v4 + Socket.IO v5 server: sessions, the long-polling and WebSocket transports, the
 * polling -> websocket upgrade, heartbeats, and Socket.IO namespaces on top (rta/sio_server.h).
 *
 * A session is created by a handshake (polling GET or WebSocket upgrade without sid) and lives
 * in a uthash table keyed by its sid. Outgoing Engine.IO packets of a polling session wait in
 * a bounded queue (server_internal.h) until a GET is pending; a per-server uv_idle (active
 * only while needed) drains every session that got packets during the loop turn, so emits of
 * one turn leave as one '\x1e' payload. WebSocket sessions send at once (rta_ws batches
 * writes itself). Each session has one uv_timer for its nearest deadline (ping, pong,
 * namespace connect, probe, close); session memory is released in that timer's close
 * callback, so a session pointer stays valid for the whole callback stack that closed it
 * (state == S_CLOSED tells it is gone).
 */
#include "rta/sio_server.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "rta/eio.h"
#include "rta/log.h"
#include "rta/sio.h"
#include "rta/util.h"
#include "rta/ws.h"
#include "socketio/server_internal.h"

#define PROBE_TIMEOUT_MS 10000   /* reference upgradeTimeout */
#define CLOSE_DRAIN_MS 5000      /* a closing polling session waits this long for its last GET */
#define MAX_PAYLOAD_PACKETS 4096 /* packets in one POST body */
#define MAX_ATTACHMENTS 16
#define CONTROL_HEADROOM 4096 /* control packets may pass the backlog cap by this much */
/* Packets framed here (acks, CONNECT answers, pings, ...) are compressed per message on a ws
 * that negotiated permessage-deflate when at least this long: shorter ones seldom shrink. */
#define DEFLATE_MIN_BYTES 128

enum { S_OPEN = 0, S_CLOSING = 1, S_CLOSED = 2 };
/* How a session ends: who asked, and so what a pending GET is answered with. */
enum { END_CLIENT, END_ERROR, END_SERVER };

typedef struct nsp_entry {
    char *name;
    rta_sio_namespace_handler h;
    void *ud;
    struct nsp_entry *next;
} nsp_entry;

typedef struct sess sess;

struct rta_sio_socket {
    sess *sess;
    nsp_entry *nsp;
    char id[RTA_SIO__SID_MAX + 1];
    char pid[RTA_SIO__SID_MAX + 1];
    void *data;
    int in_connect;
    int disconnect_requested; /* rta_sio_disconnect during on_connect */
    rta_sio_socket *next;
};

struct sess {
    UT_hash_handle hh;
    char sid[RTA_EIO_SID_LEN + 1];
    rta_sio_server *srv;
    uv_timer_t timer;
    int transport;
    int state;
    rta_http_req *get; /* pending long-polling GET */
    rta_ws *ws;        /* the WebSocket transport */
    rta_ws *probe;     /* a WebSocket being probed for the upgrade */
    int accepting;     /* 1: rta_ws_accept for the main ws running, 2: for a probe */
    int upgrading;     /* probe answered 3probe */
    int deflate;       /* ws negotiated permessage-deflate (counted in the stats) */
    rta_sio__outq q;
    uint64_t next_ping_at, pong_deadline, connect_deadline, probe_deadline, close_deadline;
    rta_sio_socket *sockets;
    rta_sio_packet bin; /* binary packet waiting for attachments */
    int bin_pending;
    sess *dirty_prev, *dirty_next;
    int dirty;
    char *query, *authorization, *user_agent;
    char remote_ip[46];
};

struct rta_sio_server {
    uv_loop_t *loop;
    rta_sio_options o;
    char *path;     /* "/socket.io/" */
    char *cors;     /* NULL = none */
    sess *sessions; /* uthash */
    nsp_entry *nsps;
    sess *dirty;    /* sessions with packets to flush this turn */
    uv_idle_t idle; /* active only while something waits to be flushed */
    size_t handles; /* open uv handles (idle + session timers) */
    int freeing;
    rta_sio_stats stats;
};

static void sess_end(sess *s, int how, const char *reason);
static void sess_arm(sess *s);
static void handle_eio_packet(sess *s, const rta_eio_packet *p);
static const rta_ws_handler ws_handler;

/* ---- options ---- */

void rta_sio_options_default(rta_sio_options *o)
{
    memset(o, 0, sizeof *o);
    o->ping_interval_ms = 25000;
    o->ping_timeout_ms = 20000;
    o->connect_timeout_ms = 45000;
    o->max_payload = 1000000;
    o->max_queued_bytes = 1 << 20;
    o->max_sessions = 19000;
    o->cors_origins = "";
    o->path = "/socket.io/";
}

/* ---- server lifetime ---- */

static void server_release(rta_sio_server *srv)
{
    nsp_entry *n = srv->nsps;
    while (n) {
        nsp_entry *next = n->next;
        free(n->name);
        free(n);
        n = next;
    }
    free(srv->path);
    free(srv->cors);
    free(srv);
}

static void handle_closed(rta_sio_server *srv)
{
    if (--srv->handles == 0 && srv->freeing)
        server_release(srv);
}

static void idle_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void flush_dirty(uv_idle_t *h);

rta_sio_server *rta_sio_server_new(uv_loop_t *loop, const rta_sio_options *opts)
{
    rta_sio_server *srv = rta_xcalloc(1, sizeof *srv);
    srv->loop = loop;
    if (opts)
        srv->o = *opts;
    else
        rta_sio_options_default(&srv->o);
    rta_sio_options def;
    rta_sio_options_default(&def);
    if (srv->o.ping_interval_ms == 0)
        srv->o.ping_interval_ms = def.ping_interval_ms;
    if (srv->o.ping_timeout_ms == 0)
        srv->o.ping_timeout_ms = def.ping_timeout_ms;
    if (srv->o.connect_timeout_ms == 0)
        srv->o.connect_timeout_ms = def.connect_timeout_ms;
    if (srv->o.max_payload == 0)
        srv->o.max_payload = def.max_payload;
    if (srv->o.max_queued_bytes == 0)
        srv->o.max_queued_bytes = def.max_queued_bytes;
    if (srv->o.max_sessions == 0)
        srv->o.max_sessions = def.max_sessions;
    const char *path = srv->o.path && srv->o.path[0] == '/' ? srv->o.path : def.path;
    size_t plen = strlen(path);
    srv->path = rta_xmalloc(plen + 2);
    memcpy(srv->path, path, plen + 1);
    if (path[plen - 1] != '/') {
        srv->path[plen] = '/';
        srv->path[plen + 1] = '\0';
    }
    srv->o.path = srv->path;
    srv->cors =
        srv->o.cors_origins && srv->o.cors_origins[0] ? rta_strdup(srv->o.cors_origins) : NULL;
    srv->o.cors_origins = srv->cors ? srv->cors : "";
    uv_idle_init(loop, &srv->idle);
    srv->idle.data = srv;
    srv->handles = 1;
    return srv;
}

int rta_sio_server_namespace(rta_sio_server *srv, const char *nsp,
                             const rta_sio_namespace_handler *h, void *ud)
{
    if (nsp == NULL || nsp[0] != '/' || strlen(nsp) > RTA_SIO_NSP_MAX || strchr(nsp, ',') ||
        h == NULL)
        return -1;
    for (nsp_entry *n = srv->nsps; n; n = n->next)
        if (strcmp(n->name, nsp) == 0)
            return -1;
    nsp_entry *n = rta_xcalloc(1, sizeof *n);
    n->name = rta_strdup(nsp);
    n->h = *h;
    n->ud = ud;
    n->next = srv->nsps;
    srv->nsps = n;
    return 0;
}

static nsp_entry *nsp_find(rta_sio_server *srv, const char *name)
{
    for (nsp_entry *n = srv->nsps; n; n = n->next)
        if (strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static void end_all(rta_sio_server *srv, int how, const char *reason)
{
    sess *s, *tmp;
    HASH_ITER(hh, srv->sessions, s, tmp)
    {
        sess_end(s, how, reason);
    }
}

void rta_sio_server_shutdown(rta_sio_server *srv)
{
    end_all(srv, END_SERVER, "server shutting down");
}

void rta_sio_server_free(rta_sio_server *srv)
{
    if (srv == NULL || srv->freeing)
        return;
    end_all(srv, END_SERVER, "server shutting down");
    /* sessions still draining their last GET are dropped now */
    sess *s, *tmp;
    HASH_ITER(hh, srv->sessions, s, tmp)
    {
        sess_end(s, END_ERROR, "server shutting down");
    }
    srv->freeing = 1;
    uv_idle_stop(&srv->idle);
    uv_close((uv_handle_t *)&srv->idle, idle_closed);
}

const rta_sio_stats *rta_sio_server_stats(const rta_sio_server *srv)
{
    return &srv->stats;
}

/* ---- sessions ---- */

static int lookup_transport(void *ud, const char *sid)
{
    rta_sio_server *srv = ud;
    sess *s = NULL;
    HASH_FIND_STR(srv->sessions, sid, s); /* closed sessions are no longer in the table */
    return s == NULL ? -1 : s->transport;
}

static sess *sess_find(rta_sio_server *srv, const char *sid)
{
    sess *s = NULL;
    HASH_FIND_STR(srv->sessions, sid, s);
    return s;
}

static void count_transport(rta_sio_server *srv, int transport, int delta)
{
    if (transport == RTA_SIO__POLLING)
        srv->stats.sessions_polling += (size_t)delta;
    else
        srv->stats.sessions_websocket += (size_t)delta;
}

static void timer_closed(uv_handle_t *h)
{
    sess *s = h->data;
    rta_sio_server *srv = s->srv;
    free(s->query);
    free(s->authorization);
    free(s->user_agent);
    free(s);
    handle_closed(srv);
}

static void sess_timer_cb(uv_timer_t *t);

static sess *sess_new(rta_sio_server *srv, rta_http_req *req, int transport)
{
    sess *s = rta_xcalloc(1, sizeof *s);
    if (rta_eio_sid_generate(s->sid) != 0) {
        free(s);
        return NULL;
    }
    s->srv = srv;
    s->transport = transport;
    rta_sio__outq_init(&s->q);
    s->query = rta_strdup(req->query ? req->query : "");
    const char *a = rta_http_header_get(req, "Authorization");
    s->authorization = a ? rta_strdup(a) : NULL;
    const char *ua = rta_http_header_get(req, "User-Agent");
    s->user_agent = ua ? rta_strdup(ua) : NULL;
    snprintf(s->remote_ip, sizeof s->remote_ip, "%s", req->remote_ip);
    uv_timer_init(srv->loop, &s->timer);
    s->timer.data = s;
    srv->handles++;
    uint64_t now = uv_now(srv->loop);
    s->next_ping_at = now + srv->o.ping_interval_ms;
    if (!srv->o.eio_echo)
        s->connect_deadline = now + srv->o.connect_timeout_ms;
    HASH_ADD_STR(srv->sessions, sid, s);
    count_transport(srv, transport, 1);
    sess_arm(s);
    return s;
}

static void dirty_unlink(sess *s)
{
    if (!s->dirty)
        return;
    if (s->dirty_prev)
        s->dirty_prev->dirty_next = s->dirty_next;
    else
        s->srv->dirty = s->dirty_next;
    if (s->dirty_next)
        s->dirty_next->dirty_prev = s->dirty_prev;
    s->dirty_prev = s->dirty_next = NULL;
    s->dirty = 0;
}

/* Makes the loop run one more turn without blocking in poll: packets queued from a timer
 * callback leave in this iteration (our idle flushes polling sessions, and rta_ws's own
 * uv_check runs right after a non-blocking poll). */
static void kick(rta_sio_server *srv)
{
    if (!srv->freeing && !uv_is_active((uv_handle_t *)&srv->idle))
        uv_idle_start(&srv->idle, flush_dirty);
}

static void dirty_mark(sess *s)
{
    kick(s->srv);
    if (s->dirty)
        return;
    s->dirty = 1;
    s->dirty_prev = NULL;
    s->dirty_next = s->srv->dirty;
    if (s->dirty_next)
        s->dirty_next->dirty_prev = s;
    s->srv->dirty = s;
}

static void sess_arm(sess *s)
{
    if (s->state == S_CLOSED)
        return;
    uint64_t next = s->pong_deadline ? s->pong_deadline : s->next_ping_at;
    uint64_t cand[] = {s->connect_deadline, s->probe_deadline, s->close_deadline};
    for (size_t i = 0; i < RTA_ARRAY_LEN(cand); i++)
        if (cand[i] && cand[i] < next)
            next = cand[i];
    uint64_t now = uv_now(s->srv->loop);
    uv_timer_start(&s->timer, sess_timer_cb, next > now ? next - now : 0, 0);
}

/* ---- HTTP answers ---- */

static void add_cors(rta_sio_server *srv, rta_http_req *req)
{
    if (srv->cors == NULL)
        return;
    const char *origin = rta_http_header_get(req, "Origin");
    if (origin == NULL)
        return;
    if (strcmp(srv->cors, "*") != 0) {
        size_t olen = strlen(origin);
        const char *p = srv->cors;
        int ok = 0;
        while (*p && !ok) {
            while (*p == ' ' || *p == ',')
                p++;
            const char *e = p;
            while (*e && *e != ',')
                e++;
            const char *e2 = e;
            while (e2 > p && e2[-1] == ' ')
                e2--;
            ok = (size_t)(e2 - p) == olen && strncmp(p, origin, olen) == 0;
            p = e;
        }
        if (!ok)
            return;
        rta_http_add_header(req, "Access-Control-Allow-Origin", origin);
        rta_http_add_header(req, "Vary", "Origin");
        return;
    }
    rta_http_add_header(req, "Access-Control-Allow-Origin", "*");
}

static void send_eio_error(rta_sio_server *srv, rta_http_req *req, int status, int code,
                           const char *message)
{
    char body[160];
    int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code,
                     message ? message : rta_sio__error_message(code));
    add_cors(srv, req);
    rta_http_send(req, status, "application/json", body, (size_t)n);
}

static void send_text(rta_sio_server *srv, rta_http_req *req, const char *ctype, const char *body,
                      size_t len)
{
    add_cors(srv, req);
    rta_http_send(req, 200, ctype, body, len);
}

/* Answers the pending GET with the queued packets, plus a last packet ("1" or "6") when
 * given. The GET is detached from the session before rta_http_send, which may dispatch a
 * pipelined request that re-enters the server. */
static void answer_get(sess *s, const char *last)
{
    rta_http_req *req = s->get;
    if (req == NULL)
        return;
    s->get = NULL;
    rta_dbuf body;
    rta_dbuf_init(&body, SIZE_MAX / 4);
    rta_sio__outq_payload(&s->q, &body);
    if (last) {
        if (body.len)
            rta_dbuf_append(&body, "\x1e", 1);
        rta_dbuf_puts(&body, last);
    }
    s->srv->stats.bytes_out += body.len;
    send_text(s->srv, req, "text/plain; charset=UTF-8", body.data ? body.data : "", body.len);
    rta_dbuf_free(&body);
}

/* Sends what is queued on a polling session when its GET is there. */
static void sess_flush(sess *s)
{
    if (s->state == S_CLOSED || s->transport != RTA_SIO__POLLING || s->get == NULL)
        return;
    if (s->get->hc == NULL) { /* the client gave up on this GET */
        sess_end(s, END_ERROR, "transport close");
        return;
    }
    if (s->state == S_CLOSING) {
        answer_get(s, "1");
        sess_end(s, END_ERROR, NULL);
        return;
    }
    if (s->q.count > 0)
        answer_get(s, NULL);
}

static void flush_dirty(uv_idle_t *h)
{
    rta_sio_server *srv = h->data;
    while (srv->dirty) {
        sess *s = srv->dirty;
        dirty_unlink(s);
        sess_flush(s);
    }
    uv_idle_stop(&srv->idle);
}

/* ---- sending ---- */

static size_t backlog(const sess *s)
{
    if (s->transport == RTA_SIO__WEBSOCKET && s->ws)
        return rta_ws_queued_bytes(s->ws);
    return s->q.bytes;
}

/* Queues one Engine.IO packet (data = text form, or raw bytes when binary). Takes its own
 * references. frame: the ws frame of data prebuilt by the caller (a broadcast), with deflated
 * its compressed form (NULL: none, send frame as is); frame NULL: framed here, and compressed
 * when the ws negotiated permessage-deflate and data is DEFLATE_MIN_BYTES or longer. The cap
 * check uses the uncompressed length (an upper bound of what goes on the wire); the ws then
 * checks what is really queued. force: a control packet, allowed CONTROL_HEADROOM past the cap.
 * 0, -1 full, -2 closed. */
static int sess_push_frames(sess *s, rta_rbuf *data, rta_rbuf *frame, rta_rbuf *deflated,
                            int binary, int force)
{
    rta_sio_server *srv = s->srv;
    if (s->state != S_OPEN)
        return -2;
    size_t cap = srv->o.max_queued_bytes + (force ? CONTROL_HEADROOM : 0);
    if (backlog(s) + data->len > cap)
        return -1;
    srv->stats.packets_out++;
    if (s->transport == RTA_SIO__WEBSOCKET) {
        if (s->ws == NULL)
            return -2;
        int op = binary ? RTA_WS_OP_BINARY : RTA_WS_OP_TEXT;
        rta_rbuf *f = frame ? rta_rbuf_ref(frame) : rta_ws_frame(op, data->data, data->len);
        rta_rbuf *d = NULL;
        if (frame)
            d = deflated ? rta_rbuf_ref(deflated) : NULL;
        else if (data->len >= DEFLATE_MIN_BYTES && rta_ws_deflate_enabled(s->ws))
            d = rta_ws_frame_deflated(op, data->data, data->len);
        int rc = rta_ws_send_frames(s->ws, f, d);
        rta_rbuf_unref(f);
        if (d)
            rta_rbuf_unref(d);
        kick(srv);
        if (rc == RTA_WS_OK) {
            srv->stats.bytes_out += data->len;
            return 0;
        }
        return rc == RTA_WS_FULL ? -1 : -2;
    }
    rta_sio__outq_push(&s->q, data, frame, binary);
    if (s->get)
        dirty_mark(s);
    return 0;
}

static int sess_push(sess *s, rta_rbuf *data, rta_rbuf *frame, int binary, int force)
{
    return sess_push_frames(s, data, frame, NULL, binary, force);
}

/* Binds the session's WebSocket transport and counts it when it negotiated deflate. */
static void sess_set_ws(sess *s, rta_ws *ws)
{
    s->ws = ws;
    if (!s->deflate && rta_ws_deflate_enabled(ws)) {
        s->deflate = 1;
        s->srv->stats.sessions_websocket_deflate++;
    }
}

static int sess_push_text(sess *s, const char *text, size_t len, int force)
{
    rta_rbuf *b = rta_rbuf_new(text, len);
    int rc = sess_push(s, b, NULL, 0, force);
    rta_rbuf_unref(b);
    return rc;
}

/* Sends a Socket.IO packet ("4" + encoded text, then one binary message per attachment),
 * all or nothing against the backlog cap. */
static int sess_send_sio(sess *s, const rta_sio_packet *p, int force)
{
    if (s->state != S_OPEN)
        return -2;
    rta_dbuf out;
    rta_dbuf_init(&out, s->srv->o.max_queued_bytes + CONTROL_HEADROOM);
    rta_sio_bin att[MAX_ATTACHMENTS];
    size_t natt = 0;
    int rc = -1;
    if (rta_dbuf_append(&out, "4", 1) != 0 ||
        rta_sio_encode(p, &out, att, MAX_ATTACHMENTS, &natt) != 0)
        goto out;
    size_t total = out.len;
    for (size_t i = 0; i < natt; i++)
        total += att[i].len;
    size_t cap = s->srv->o.max_queued_bytes + (force ? CONTROL_HEADROOM : 0);
    if (backlog(s) + total > cap)
        goto out;
    rc = sess_push_text(s, out.data, out.len, 1);
    for (size_t i = 0; rc == 0 && i < natt; i++) {
        rta_rbuf *b = rta_rbuf_new(att[i].data, att[i].len);
        rc = sess_push(s, b, NULL, 1, 1);
        rta_rbuf_unref(b);
    }
out:
    rta_dbuf_free(&out);
    return rc;
}

/* ---- Socket.IO sockets ---- */

static void socket_unlink(sess *s, rta_sio_socket *so)
{
    for (rta_sio_socket **pp = &s->sockets; *pp; pp = &(*pp)->next) {
        if (*pp == so) {
            *pp = so->next;
            so->next = NULL;
            return;
        }
    }
}

static rta_sio_socket *socket_find(sess *s, const char *nsp)
{
    for (rta_sio_socket *so = s->sockets; so; so = so->next)
        if (strcmp(so->nsp->name, nsp) == 0)
            return so;
    return NULL;
}

static void socket_gone(rta_sio_socket *so, const char *reason)
{
    if (so->nsp->h.on_disconnect)
        so->nsp->h.on_disconnect(so->nsp->ud, so, reason);
    free(so);
}

/* ---- ending sessions ---- */

static void sess_destroy(sess *s, int how, const char *reason)
{
    rta_sio_server *srv = s->srv;
    rta_log(RTA_LOG_DEBUG, "sio session closed", "{s:s,s:s,s:i}", "sid", s->sid, "reason",
            reason ? reason : "-", "how", how);
    s->state = S_CLOSED;
    HASH_DEL(srv->sessions, s);
    dirty_unlink(s);
    count_transport(srv, s->transport, -1);
    if (s->deflate) {
        s->deflate = 0;
        srv->stats.sessions_websocket_deflate--;
    }
    if (s->bin_pending) {
        rta_sio_packet_clear(&s->bin);
        s->bin_pending = 0;
    }
    if (s->get) { /* a client close gets a noop, anything else the close packet */
        rta_sio__outq_clear(&s->q);
        answer_get(s, how == END_CLIENT ? "6" : "1");
    }
    rta_sio__outq_clear(&s->q);
    if (s->probe) {
        rta_ws *p = s->probe;
        s->probe = NULL;
        rta_ws_set_data(p, NULL);
        rta_ws_close(p, 1000, "");
    }
    if (s->ws) {
        rta_ws *w = s->ws;
        s->ws = NULL;
        rta_ws_set_data(w, NULL);
        rta_ws_close(w, how == END_SERVER ? 1001 : 1000, "");
    }
    rta_sio_socket *so;
    while ((so = s->sockets) != NULL) {
        s->sockets = so->next;
        socket_gone(so, reason ? reason : "transport close");
    }
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, timer_closed);
}

/* Ends a session. END_SERVER drains what is queued first (a polling session without a GET
 * waits up to CLOSE_DRAIN_MS for one); the Socket.IO sockets learn `reason` at once. */
static void sess_end(sess *s, int how, const char *reason)
{
    if (s->state == S_CLOSED)
        return;
    if (how == END_SERVER && s->state == S_OPEN && s->transport == RTA_SIO__POLLING &&
        s->get == NULL) { /* the next GET gets what is queued and the close packet */
        s->state = S_CLOSING;
        rta_sio_socket *so;
        while ((so = s->sockets) != NULL) {
            s->sockets = so->next;
            socket_gone(so, reason ? reason : "server shutting down");
        }
        s->close_deadline = uv_now(s->srv->loop) + CLOSE_DRAIN_MS;
        sess_arm(s);
        return;
    }
    if (how == END_SERVER && s->get)
        answer_get(s, "1");
    sess_destroy(s, how, reason);
}

static void protocol_error(sess *s, const char *what)
{
    s->srv->stats.protocol_errors++;
    rta_log(RTA_LOG_DEBUG, "sio protocol error", "{s:s,s:s}", "sid", s->sid, "error", what);
    sess_end(s, END_ERROR, "parse error");
}

static void sess_timer_cb(uv_timer_t *t)
{
    sess *s = t->data;
    rta_sio_server *srv = s->srv;
    uint64_t now = uv_now(srv->loop);
    if (s->state == S_CLOSED)
        return;
    if (s->get && s->get->hc == NULL) {
        sess_end(s, END_ERROR, "transport close");
        return;
    }
    if (s->close_deadline && now >= s->close_deadline) {
        sess_destroy(s, END_ERROR, NULL);
        return;
    }
    if (s->pong_deadline && now >= s->pong_deadline) {
        srv->stats.ping_timeouts++;
        sess_end(s, END_ERROR, "ping timeout");
        return;
    }
    if (s->connect_deadline && now >= s->connect_deadline) {
        sess_end(s, END_ERROR, NULL);
        return;
    }
    if (s->probe_deadline && now >= s->probe_deadline) {
        s->probe_deadline = 0;
        s->upgrading = 0;
        if (s->probe) {
            rta_ws *p = s->probe;
            s->probe = NULL;
            rta_ws_set_data(p, NULL);
            rta_ws_close(p, 1000, "upgrade timeout");
        }
    }
    if (s->state == S_OPEN && !s->pong_deadline && now >= s->next_ping_at) {
        s->pong_deadline = now + srv->o.ping_timeout_ms;
        sess_push_text(s, "2", 1, 1);
    }
    sess_arm(s);
}

/* ---- Socket.IO packets ---- */

static void fill_handshake(sess *s, rta_sio_handshake *hs)
{
    hs->query = s->query;
    hs->authorization = s->authorization;
    hs->remote_ip = s->remote_ip;
    hs->user_agent = s->user_agent;
    hs->transport = s->transport == RTA_SIO__WEBSOCKET ? "websocket" : "polling";
}

static void send_connect_error(sess *s, const char *nsp, json_t *data /* stolen */)
{
    rta_sio_packet p;
    rta_sio_packet_init(&p, RTA_SIO_CONNECT_ERROR);
    snprintf(p.nsp, sizeof p.nsp, "%s", nsp);
    p.data = data;
    sess_send_sio(s, &p, 1);
    rta_sio_packet_clear(&p);
}

static void on_sio_connect(sess *s, rta_sio_packet *pkt)
{
    rta_sio_server *srv = s->srv;
    nsp_entry *n = nsp_find(srv, pkt->nsp);
    if (n == NULL) {
        send_connect_error(s, pkt->nsp, json_pack("{s:s}", "message", "Invalid namespace"));
        return;
    }
    rta_sio_socket *so = rta_xcalloc(1, sizeof *so);
    so->sess = s;
    so->nsp = n;
    if (rta_eio_sid_generate(so->id) != 0) {
        free(so);
        sess_end(s, END_ERROR, "transport error");
        return;
    }
    rta_sio_handshake hs;
    fill_handshake(s, &hs);
    json_t *err = NULL;
    int rc = RTA_SIO_ACCEPT;
    so->in_connect = 1;
    if (n->h.on_connect)
        rc = n->h.on_connect(n->ud, so, pkt->data, &hs, &err);
    so->in_connect = 0;
    if (s->state != S_OPEN || so->disconnect_requested) {
        json_decref(err);
        free(so);
        return;
    }
    if (rc != RTA_SIO_ACCEPT) {
        if (err == NULL || !(json_is_object(err) || json_is_string(err))) {
            json_decref(err);
            err = json_pack("{s:s}", "message", "Not authorized");
        }
        send_connect_error(s, pkt->nsp, err);
        free(so);
        return;
    }
    json_decref(err);
    if (srv->o.recovery && so->pid[0] == '\0')
        rta_eio_sid_generate(so->pid);
    so->next = s->sockets;
    s->sockets = so;
    if (!n->h.guest)
        s->connect_deadline = 0;
    sess_arm(s);
    rta_sio_packet ans;
    rta_sio_packet_init(&ans, RTA_SIO_CONNECT);
    snprintf(ans.nsp, sizeof ans.nsp, "%s", pkt->nsp);
    ans.data = rta_sio_connect_payload(so->id, srv->o.recovery ? so->pid : NULL);
    sess_send_sio(s, &ans, 1);
    rta_sio_packet_clear(&ans);
    if (n->h.on_connected)
        n->h.on_connected(n->ud, so);
}

static void on_sio_packet(sess *s, rta_sio_packet *pkt)
{
    rta_sio_socket *so = socket_find(s, pkt->nsp);
    switch (pkt->type) {
    case RTA_SIO_CONNECT:
        if (so != NULL) { /* the reference server closes on a second CONNECT */
            protocol_error(s, "duplicate connect");
            return;
        }
        on_sio_connect(s, pkt);
        return;
    case RTA_SIO_DISCONNECT:
        if (so == NULL) {
            protocol_error(s, "disconnect from unknown namespace");
            return;
        }
        socket_unlink(s, so);
        socket_gone(so, "client namespace disconnect");
        return;
    case RTA_SIO_EVENT:
    case RTA_SIO_BINARY_EVENT: {
        if (so == NULL) {
            protocol_error(s, "event for unknown namespace");
            return;
        }
        json_t *name = json_incref(json_array_get(pkt->data, 0));
        json_array_remove(pkt->data, 0);
        if (so->nsp->h.on_event)
            so->nsp->h.on_event(so->nsp->ud, so, json_string_value(name), pkt->data, pkt->id);
        json_decref(name);
        return;
    }
    case RTA_SIO_ACK:
    case RTA_SIO_BINARY_ACK:
        if (so == NULL)
            protocol_error(s, "ack for unknown namespace");
        return; /* the server asks for no acks: nothing to match */
    default:    /* CONNECT_ERROR from a client */
        protocol_error(s, "unexpected packet type");
        return;
    }
}

static void on_message(sess *s, const rta_eio_packet *p)
{
    rta_sio_server *srv = s->srv;
    if (srv->o.eio_echo) { /* Engine.IO compliance server: echo */
        rta_rbuf *b;
        if (p->binary) {
            b = rta_rbuf_new(p->data, p->len);
        } else {
            b = rta_rbuf_new(NULL, p->len + 1);
            b->data[0] = '4';
            if (p->len)
                memcpy(b->data + 1, p->data, p->len);
        }
        sess_push(s, b, NULL, p->binary, 0);
        rta_rbuf_unref(b);
        return;
    }
    if (p->binary) {
        if (!s->bin_pending) {
            protocol_error(s, "unexpected binary message");
            return;
        }
        int rc = rta_sio_attach(&s->bin, p->data, p->len);
        if (rc < 0) {
            protocol_error(s, rta_sio_strerror(rc));
            return;
        }
        if (rc == 0) {
            rta_sio_packet pkt = s->bin;
            s->bin_pending = 0;
            memset(&s->bin, 0, sizeof s->bin);
            on_sio_packet(s, &pkt);
            rta_sio_packet_clear(&pkt);
        }
        return;
    }
    if (s->bin_pending) {
        protocol_error(s, "text while waiting for attachments");
        return;
    }
    rta_sio_packet pkt;
    rta_sio_limits lim = {RTA_SIO_DEFAULT_MAX_DEPTH, MAX_ATTACHMENTS};
    int rc = rta_sio_decode(p->data ? p->data : "", p->len, &lim, &pkt);
    if (rc != 0) {
        protocol_error(s, rta_sio_strerror(rc));
        return;
    }
    if (rta_sio_needs_attachments(&pkt)) {
        s->bin = pkt;
        s->bin_pending = 1;
        return;
    }
    on_sio_packet(s, &pkt);
    rta_sio_packet_clear(&pkt);
}

static void handle_eio_packet(sess *s, const rta_eio_packet *p)
{
    rta_sio_server *srv = s->srv;
    if (s->state != S_OPEN)
        return;
    srv->stats.packets_in++;
    switch (p->type) {
    case RTA_EIO_PONG:
        s->pong_deadline = 0;
        s->next_ping_at = uv_now(srv->loop) + srv->o.ping_interval_ms;
        sess_arm(s);
        return;
    case RTA_EIO_CLOSE:
        sess_end(s, END_CLIENT, "transport close");
        return;
    case RTA_EIO_MESSAGE:
        on_message(s, p);
        return;
    case RTA_EIO_PING: /* v4: the server pings, never the client */
        protocol_error(s, "invalid heartbeat direction");
        return;
    default: /* open, upgrade, noop: ignored as the reference server does */
        return;
    }
}

/* ---- long-polling ---- */

static void poll_get(sess *s, rta_http_req *req)
{
    if (s->get != NULL) {
        /* a second GET (or a first one the client abandoned): the session is broken */
        sess_end(s, END_ERROR, "transport error");
        send_eio_error(s->srv, req, 400, RTA_SIO__ERR_BAD_REQUEST, NULL);
        return;
    }
    s->get = req;
    if (s->state == S_CLOSING || s->q.count > 0) {
        sess_flush(s);
        return;
    }
    if (s->upgrading) /* end this poll so the client can finish the upgrade */
        answer_get(s, "6");
}

static size_t count_packets(const char *body, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += body[i] == RTA_EIO_SEPARATOR;
    return n;
}

static void poll_post(sess *s, rta_http_req *req)
{
    rta_sio_server *srv = s->srv;
    if (req->body_len > srv->o.max_payload) {
        send_eio_error(srv, req, 413, RTA_SIO__ERR_BAD_REQUEST, "Payload too large");
        sess_end(s, END_ERROR, "transport error");
        return;
    }
    srv->stats.bytes_in += req->body_len;
    size_t n = req->body ? count_packets(req->body, req->body_len) : 1;
    if (n > MAX_PAYLOAD_PACKETS) {
        send_eio_error(srv, req, 400, RTA_SIO__ERR_BAD_REQUEST, NULL);
        protocol_error(s, "too many packets");
        return;
    }
    rta_eio_packet *pkts = rta_xcalloc(n, sizeof *pkts);
    size_t count = 0;
    rta_eio_limits lim = {MAX_PAYLOAD_PACKETS, srv->o.max_payload};
    char empty[1] = "";
    int rc =
        rta_eio_decode_payload(req->body ? req->body : empty, req->body_len, &lim, pkts, n, &count);
    if (rc != 0) {
        free(pkts);
        send_eio_error(srv, req, 400, RTA_SIO__ERR_BAD_REQUEST, NULL);
        protocol_error(s, rta_eio_strerror(rc));
        return;
    }
    for (size_t i = 0; i < count && s->state == S_OPEN; i++)
        handle_eio_packet(s, &pkts[i]);
    free(pkts);
    send_text(srv, req, "text/html", "ok", 2);
}

static void handshake_polling(rta_sio_server *srv, rta_http_req *req)
{
    if (HASH_COUNT(srv->sessions) >= srv->o.max_sessions) {
        send_eio_error(srv, req, 503, RTA_SIO__ERR_FORBIDDEN, "Too many sessions");
        return;
    }
    sess *s = sess_new(srv, req, RTA_SIO__POLLING);
    if (s == NULL) {
        send_eio_error(srv, req, 500, RTA_SIO__ERR_BAD_REQUEST, "Internal error");
        return;
    }
    rta_dbuf out;
    rta_dbuf_init(&out, 1024);
    rta_eio_encode_open(&out, s->sid, true, (unsigned)srv->o.ping_interval_ms,
                        (unsigned)srv->o.ping_timeout_ms, srv->o.max_payload);
    srv->stats.packets_out++;
    srv->stats.bytes_out += out.len;
    send_text(srv, req, "text/plain; charset=UTF-8", out.data, out.len);
    rta_dbuf_free(&out);
}

static int path_match(const rta_sio_server *srv, const char *path)
{
    size_t plen = strlen(srv->path);
    if (strncmp(path, srv->path, plen) == 0)
        return 1;
    return strlen(path) == plen - 1 && strncmp(path, srv->path, plen - 1) == 0;
}

int rta_sio_server_handle_http(rta_sio_server *srv, rta_http_req *req)
{
    if (req->path == NULL || !path_match(srv, req->path))
        return 0;
    if (srv->freeing) {
        send_eio_error(srv, req, 503, RTA_SIO__ERR_BAD_REQUEST, "Server shutting down");
        return 1;
    }
    if (strcmp(req->method, "OPTIONS") == 0 && srv->cors) {
        add_cors(srv, req);
        rta_http_add_header(req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        rta_http_add_header(req, "Access-Control-Allow-Headers", "Content-Type, Authorization");
        rta_http_send(req, 204, NULL, NULL, 0);
        return 1;
    }
    rta_sio__reqinfo info;
    int code = rta_sio__verify(req->method, req->query, 0, lookup_transport, srv, &info);
    if (code >= 0) {
        send_eio_error(srv, req, code == RTA_SIO__ERR_FORBIDDEN ? 403 : 400, code, NULL);
        return 1;
    }
    if (!info.has_sid) {
        handshake_polling(srv, req);
        return 1;
    }
    sess *s = sess_find(srv, info.sid);
    if (strcmp(req->method, "GET") == 0)
        poll_get(s, req);
    else if (strcmp(req->method, "POST") == 0)
        poll_post(s, req);
    else
        send_eio_error(srv, req, 400, RTA_SIO__ERR_BAD_REQUEST, NULL);
    return 1;
}

/* ---- WebSocket ---- */

/* Binds a ws that rta_ws_accept is still setting up (callbacks may run before it returns). */
static sess *ws_session(rta_ws *ws)
{
    sess *s = rta_ws_get_data(ws);
    if (s == NULL || s->state == S_CLOSED)
        return s;
    if (s->accepting == 1 && s->ws == NULL) {
        sess_set_ws(s, ws);
        s->accepting = 0;
        rta_dbuf out;
        rta_dbuf_init(&out, 1024);
        rta_eio_encode_open(&out, s->sid, false, (unsigned)s->srv->o.ping_interval_ms,
                            (unsigned)s->srv->o.ping_timeout_ms, s->srv->o.max_payload);
        sess_push_text(s, out.data, out.len, 1);
        rta_dbuf_free(&out);
    } else if (s->accepting == 2 && s->probe == NULL) {
        s->probe = ws;
        s->accepting = 0;
    }
    return s;
}

static void upgrade_complete(sess *s)
{
    rta_sio_server *srv = s->srv;
    rta_ws *ws = s->probe;
    s->probe = NULL;
    s->probe_deadline = 0;
    s->upgrading = 0;
    if (s->get) { /* ends the poll with a bare noop: what is queued goes over the ws below */
        rta_http_req *req = s->get;
        s->get = NULL;
        send_text(srv, req, "text/plain; charset=UTF-8", "6", 1);
    }
    count_transport(srv, s->transport, -1);
    s->transport = RTA_SIO__WEBSOCKET;
    sess_set_ws(s, ws);
    count_transport(srv, s->transport, 1);
    srv->stats.upgrades++;
    dirty_unlink(s);
    rta_sio__outpkt *p;
    while (s->state == S_OPEN && (p = rta_sio__outq_pop(&s->q)) != NULL) {
        int rc = sess_push(s, p->data, p->frame, p->binary, 1);
        rta_sio__outpkt_free(p);
        if (rc == -1) {
            sess_end(s, END_ERROR, "transport error");
            return;
        }
    }
    sess_arm(s);
}

static void on_probe_message(sess *s, rta_ws *ws, int opcode, const char *data, size_t len)
{
    if (opcode == RTA_WS_OP_TEXT && len == 6 && memcmp(data, "2probe", 6) == 0) {
        rta_ws_send(ws, RTA_WS_OP_TEXT, "3probe", 6);
        kick(s->srv);
        s->upgrading = 1;
        if (s->get && s->q.count == 0)
            answer_get(s, "6");
        return;
    }
    if (opcode == RTA_WS_OP_TEXT && len == 1 && data[0] == '5') {
        upgrade_complete(s);
        return;
    }
    s->probe = NULL;
    s->upgrading = 0;
    s->probe_deadline = 0;
    rta_ws_set_data(ws, NULL);
    rta_ws_close(ws, 1002, "unexpected packet during upgrade");
}

static void ws_on_message(rta_ws *ws, int opcode, const char *data, size_t len)
{
    sess *s = ws_session(ws);
    if (s == NULL || s->state != S_OPEN)
        return;
    s->srv->stats.bytes_in += len;
    if (ws == s->probe) {
        on_probe_message(s, ws, opcode, data, len);
        return;
    }
    if (ws != s->ws)
        return;
    rta_eio_packet p;
    if (opcode == RTA_WS_OP_BINARY) {
        rta_eio_decode_binary(data, len, &p);
        handle_eio_packet(s, &p);
        return;
    }
    char *copy = rta_xmalloc(len + 1);
    memcpy(copy, data, len);
    copy[len] = '\0';
    int rc = rta_eio_decode_packet(copy, len, &p);
    if (rc != 0)
        protocol_error(s, rta_eio_strerror(rc));
    else
        handle_eio_packet(s, &p);
    free(copy);
}

static void ws_on_close(rta_ws *ws, int code, const char *reason)
{
    sess *s = rta_ws_get_data(ws);
    if (s == NULL || s->state == S_CLOSED)
        return;
    if (ws == s->probe) {
        s->probe = NULL;
        s->upgrading = 0;
        s->probe_deadline = 0;
        return;
    }
    if (ws == s->ws) {
        s->ws = NULL;
        sess_end(s, END_CLIENT, "transport close");
    }
}

static const rta_ws_handler ws_handler = {
    .on_message = ws_on_message,
    .on_writable = NULL,
    .on_close = ws_on_close,
};

int rta_sio_server_handle_upgrade(rta_sio_server *srv, rta_http_req *req, rta_conn *conn,
                                  const char *leftover, size_t len)
{
    if (req->path == NULL || !path_match(srv, req->path))
        return 0;
    if (srv->freeing) {
        send_eio_error(srv, req, 503, RTA_SIO__ERR_BAD_REQUEST, "Server shutting down");
        return 1;
    }
    rta_sio__reqinfo info;
    int code = rta_sio__verify(req->method, req->query, 1, lookup_transport, srv, &info);
    if (code < 0 && info.transport != RTA_SIO__WEBSOCKET)
        code = RTA_SIO__ERR_BAD_REQUEST;
    sess *s = NULL;
    if (code < 0 && !info.has_sid && HASH_COUNT(srv->sessions) >= srv->o.max_sessions) {
        send_eio_error(srv, req, 503, RTA_SIO__ERR_FORBIDDEN, "Too many sessions");
        return 1;
    }
    if (code >= 0) { /* answered like any request; the HTTP server then closes the conn */
        send_eio_error(srv, req, code == RTA_SIO__ERR_FORBIDDEN ? 403 : 400, code, NULL);
        return 1;
    }
    rta_ws_options wo;
    rta_ws_options_default(&wo);
    wo.max_frame_bytes = srv->o.max_payload;
    wo.max_message_bytes = srv->o.max_payload;
    wo.max_queued_bytes = srv->o.max_queued_bytes + CONTROL_HEADROOM;
    wo.permessage_deflate = srv->o.ws_permessage_deflate;
    if (info.has_sid) {
        s = sess_find(srv, info.sid);
        if (s->state != S_OPEN || s->transport != RTA_SIO__POLLING || s->probe || s->accepting) {
            /* already upgraded or upgrading: like the reference server, open and close it */
            rta_ws *ws = rta_ws_accept(req, conn, leftover, len, &wo, &ws_handler, NULL);
            if (ws)
                rta_ws_close(ws, 1000, "");
            return 1;
        }
    }
    int created = s == NULL;
    if (created) {
        s = sess_new(srv, req, RTA_SIO__WEBSOCKET);
        if (s == NULL) {
            send_eio_error(srv, req, 500, RTA_SIO__ERR_BAD_REQUEST, "Internal error");
            return 1;
        }
    }
    s->accepting = created ? 1 : 2;
    rta_ws *ws = rta_ws_accept(req, conn, leftover, len, &wo, &ws_handler, s);
    if (ws == NULL) {
        s->accepting = 0;
        if (created)
            sess_destroy(s, END_ERROR, NULL);
        return 1;
    }
    ws_session(ws); /* binds it if no callback did yet */
    if (!created && s->probe == ws) {
        s->probe_deadline = uv_now(srv->loop) + PROBE_TIMEOUT_MS;
        sess_arm(s);
    }
    return 1;
}

/* ---- socket API ---- */

const char *rta_sio_socket_id(const rta_sio_socket *s)
{
    return s->id;
}

const char *rta_sio_socket_transport(const rta_sio_socket *s)
{
    return s->sess->transport == RTA_SIO__WEBSOCKET ? "websocket" : "polling";
}

void *rta_sio_socket_get_data(const rta_sio_socket *s)
{
    return s->data;
}

void rta_sio_socket_set_data(rta_sio_socket *s, void *ud)
{
    s->data = ud;
}

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > RTA_SIO__SID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x21 || id[i] == '"' || id[i] == '\\' ||
            (unsigned char)id[i] > 0x7e)
            return 0;
    return 1;
}

void rta_sio_socket_set_pid(rta_sio_socket *s, const char *pid)
{
    if (s->in_connect && pid && valid_id(pid))
        snprintf(s->pid, sizeof s->pid, "%s", pid);
}

void rta_sio_socket_set_id(rta_sio_socket *s, const char *id)
{
    if (s->in_connect && id && valid_id(id))
        snprintf(s->id, sizeof s->id, "%s", id);
}

size_t rta_sio_socket_queued_bytes(const rta_sio_socket *s)
{
    return backlog(s->sess);
}

int rta_sio_emit_args(rta_sio_socket *s, const char *event, json_t *args)
{
    sess *se = s->sess;
    if (se->state != S_OPEN)
        return -2;
    if (event == NULL || (args && !json_is_array(args)))
        return -1;
    rta_dbuf out;
    rta_dbuf_init(&out, se->srv->o.max_queued_bytes + CONTROL_HEADROOM);
    int rc;
    if (rta_dbuf_append(&out, "4", 1) == 0 &&
        rta_sio_encode_event(&out, s->nsp->name, event, args, NULL, -1) == 0) {
        rc = backlog(se) + out.len > se->srv->o.max_queued_bytes
                 ? -1
                 : sess_push_text(se, out.data, out.len, 0);
        rta_dbuf_free(&out);
        return rc;
    }
    rta_dbuf_free(&out);
    /* blobs inside: the general encoder makes a BINARY_EVENT with attachments */
    rta_sio_packet p;
    rta_sio_packet_init(&p, RTA_SIO_EVENT);
    snprintf(p.nsp, sizeof p.nsp, "%s", s->nsp->name);
    p.data = json_pack("[s]", event);
    if (p.data == NULL)
        return -1;
    if (args)
        json_array_extend(p.data, args);
    rc = sess_send_sio(se, &p, 0);
    rta_sio_packet_clear(&p);
    return rc;
}

int rta_sio_emit(rta_sio_socket *s, const char *event, json_t *arg)
{
    json_t *args = arg ? json_pack("[O]", arg) : NULL;
    if (arg && args == NULL)
        return -1;
    int rc = rta_sio_emit_args(s, event, args);
    json_decref(args);
    return rc;
}

int rta_sio_ack(rta_sio_socket *s, int64_t ack_id, json_t *args)
{
    if (ack_id < 0 || (args && !json_is_array(args)))
        return -1;
    rta_sio_packet p;
    rta_sio_packet_init(&p, RTA_SIO_ACK);
    snprintf(p.nsp, sizeof p.nsp, "%s", s->nsp->name);
    p.id = ack_id;
    p.data = args ? json_incref(args) : json_array();
    int rc = sess_send_sio(s->sess, &p, 0);
    rta_sio_packet_clear(&p);
    return rc;
}

void rta_sio_disconnect(rta_sio_socket *s, const char *reason)
{
    if (s->in_connect) {
        s->disconnect_requested = 1;
        return;
    }
    sess *se = s->sess;
    if (se->state == S_OPEN) {
        rta_sio_packet p;
        rta_sio_packet_init(&p, RTA_SIO_DISCONNECT);
        snprintf(p.nsp, sizeof p.nsp, "%s", s->nsp->name);
        sess_send_sio(se, &p, 1);
    }
    socket_unlink(se, s);
    socket_gone(s, reason ? reason : "server namespace disconnect");
}

/* ---- broadcast fast path ---- */

static int append_json_string(rta_dbuf *out, const char *s)
{
    json_t *j = json_string(s);
    if (j == NULL)
        return -1;
    char *t = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    if (t == NULL)
        return -1;
    int rc = rta_dbuf_puts(out, t);
    free(t);
    return rc;
}

rta_rbuf *rta_sio_encode_broadcast(const char *nsp, const char *event, const char *json_arg,
                                   size_t json_len, const char *offset)
{
    if (nsp == NULL || nsp[0] != '/' || strchr(nsp, ',') || event == NULL)
        return NULL;
    rta_dbuf out;
    rta_dbuf_init(&out, SIZE_MAX / 4);
    int rc = rta_dbuf_puts(&out, "42");
    if (rc == 0 && strcmp(nsp, "/") != 0)
        rc = rta_dbuf_printf(&out, "%s,", nsp);
    rc = rc || rta_dbuf_puts(&out, "[") || append_json_string(&out, event);
    if (rc == 0 && json_arg && json_len)
        rc = rta_dbuf_puts(&out, ",") || rta_dbuf_append(&out, json_arg, json_len);
    if (rc == 0 && offset)
        rc = rta_dbuf_puts(&out, ",") || append_json_string(&out, offset);
    rc = rc || rta_dbuf_puts(&out, "]");
    rta_rbuf *b = rc == 0 ? rta_rbuf_from_dbuf(&out) : NULL;
    rta_dbuf_free(&out);
    return b;
}

int rta_sio_send_packet(rta_sio_socket *s, rta_rbuf *eio_text, rta_rbuf *ws_frame)
{
    return sess_push(s->sess, eio_text, ws_frame, 0, 0);
}

int rta_sio_socket_deflate(const rta_sio_socket *s)
{
    const sess *se = s->sess;
    return se->deflate && se->state == S_OPEN && se->transport == RTA_SIO__WEBSOCKET && se->ws;
}

int rta_sio_send_packet_deflated(rta_sio_socket *s, rta_rbuf *eio_text, rta_rbuf *ws_frame,
                                 rta_rbuf *ws_deflated)
{
    return sess_push_frames(s->sess, eio_text, ws_frame, ws_deflated, 0, 0);
}
