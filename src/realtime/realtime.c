/*
 * The realtime API: clients (Socket.IO sockets on /v1/realtime and plain WebSocket clients on
 * /v1/realtime/ws), their subscriptions, the room index and the fan-out of bus events.
 * See rta/realtime.h for the semantics.
 *
 * Index: protocol and price subscriptions live in rooms (hash by name, array of subscriptions,
 * swap-remove with a back index); threshold subscriptions live in two flat arrays scanned per
 * event (a comparison each: cheaper than keeping them sorted under churn). Each client keeps
 * the offset of the last event it was given, so overlapping subscriptions deliver once.
 */
#include "rta/realtime.h"
#include "rta/ingest.h"
#include "rta/log.h"
#include "rta/metrics.h"
#include "rta/sio_server.h"
#include "rta/util.h"
#include "rta/ws.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

#define NSP "/v1/realtime"
#define RT_QUEUE_MAX (1u << 20) /* events waiting for fan-out before pacing gives up */
#define SUB_NAME_MAX 320

enum { SUB_PROTOCOL = 0, SUB_TVL_CHANGES, SUB_PRICE, SUB_PRICE_CHANGES, SUB_NTYPES };
static const char *sub_type_names[SUB_NTYPES] = {"protocol", "tvl_changes", "price",
                                                 "price_changes"};

typedef enum { CL_SIO, CL_WS } client_kind;

typedef struct client client;
typedef struct room room;

typedef struct sub {
    int type;
    room *room;       /* protocol / price subscriptions */
    size_t idx;       /* position in room->subs or in the threshold array */
    double threshold; /* threshold subscriptions */
    char *protocol, *chain, *token;
    client *cl;
    char name[]; /* the room name, allocated with the struct (most are short) */
} sub;

struct room {
    char *name;
    sub **subs;
    size_t n, cap;
    UT_hash_handle hh;
};

struct client {
    client_kind kind;
    rta_rt *rt;
    rta_sio_socket *sio;
    rta_ws *ws;
    char key_id[RTA_KEY_ID_LEN + 1];
    char *user_id; /* owned copy, "" when the key has none */
    char tier[16];
    char transport[16]; /* metrics label, fixed at connect so increments and decrements match */
    char remote_ip[46];
    char pid[40];
    sub **subs;
    size_t nsubs;
    uint64_t last_offset_sent;
    rta_bucket msg_bucket;
    int msgs_per_minute;
    int tier_rank;
    int doomed;                /* a slow-consumer close is pending */
    uint64_t lag_from, lag_to; /* drop policy: missed offsets not yet reported */
    int64_t connected_ms;
    int recovering; /* Socket.IO session restored: replay after recover_from */
    uint64_t recover_from;
    /* catch-up (recovery / resume): reading the event log, paced, until live */
    int catching;
    int catch_ws_resume; /* plain WS resume (answer "resumed") vs Socket.IO recovery */
    int catch_complete;
    uint64_t catch_from, catch_cursor;
    size_t catch_count;
    json_t *catch_id;             /* plain WS: the resume message's id, echoed */
    uint64_t catch_blocked_until; /* loop ms: its backlog was full */
    client *catch_next;
    client *prev, *next;
};

typedef struct saved_session {
    char pid[40];
    char sid[64]; /* the Socket.IO socket id, kept on recovery */
    char key_id[RTA_KEY_ID_LEN + 1];
    json_t *subs; /* array of subscription payloads */
    int64_t expires_ms;
    UT_hash_handle hh;
} saved_session;

struct rta_rt {
    uv_loop_t *loop;
    rta_rt_options opts;
    const rta_tier *tiers; /* the configuration's (follows reloads) or defaults */
    rta_tier default_tiers[RTA_TIER_COUNT];
    rta_keyring *keys;
    rta_event_log *log;
    rta_store *store;
    rta_sio_server *sio;
    room *rooms;
    sub **thr[2]; /* [0] tvl_changes, [1] price_changes */
    size_t nthr[2], capthr[2];
    client *clients;
    client **scratch; /* recipients of the event being fanned out */
    size_t scratch_cap;
    saved_session *saved;
    size_t nsaved;
    rta_rt_stats stats;
    uint64_t last_event_offset;
    /* metrics */
    rta_metric_family *m_conn, *m_subs, *m_msgs, *m_bytes, *m_slow, *m_auth, *m_deliveries;
    rta_histogram *m_lag;
    rta_counter *c_bytes_out;
    /* paced fan-out: events wait here and go out a slice per loop turn, so one big ingest
     * batch cannot fill every subscriber's backlog in a single turn */
    rta_event **queue;
    size_t qhead, qlen, qcap;
    uv_idle_t pump;
    rta_net *net;          /* for write barriers; NULL: writes are made when queued */
    int slice_unfenced;    /* the last slice's writes were queued: fence them on the next run */
    int slices_in_flight;  /* slices fenced and not yet back from the writer threads */
    uv_timer_t pump_retry; /* catch-ups whose clients are all blocked: retry shortly */
    int pump_on;
    int closed;       /* shut down: no more fan-out */
    client *catching; /* clients catching up from the event log */
};

/* ---------- small helpers ---------- */

static int tier_rank(const char *tier)
{
    if (strcmp(tier, "enterprise") == 0)
        return 2;
    if (strcmp(tier, "pro") == 0)
        return 1;
    return 0;
}

static const rta_tier *tier_of(rta_rt *rt, const char *name)
{
    return rta_tier_find(rt->tiers, name);
}

static json_t *error_obj(const char *code, const char *message, const char *field, const char *rule)
{
    json_t *e = json_pack("{s:s,s:s}", "code", code, "message", message);
    if (field)
        json_object_set_new(e, "field", json_string(field));
    if (rule)
        json_object_set_new(e, "rule", json_string(rule));
    return e;
}

static void count_conn(rta_rt *rt, client *cl, int delta)
{
    char labels[96];
    if (cl->transport[0] == '\0')
        snprintf(cl->transport, sizeof cl->transport, "%s", cl->kind == CL_WS ? "ws" : "socket.io");
    snprintf(labels, sizeof labels, "transport=\"%s\",tier=\"%s\"", cl->transport, cl->tier);
    rta_gauge_add(rta_metrics_gauge(rt->m_conn, labels), delta);
    if (cl->kind == CL_WS)
        rt->stats.clients_ws += (size_t)delta;
    else
        rt->stats.clients_sio += (size_t)delta;
}

static void count_sub(rta_rt *rt, int type, int delta)
{
    char labels[64];
    snprintf(labels, sizeof labels, "type=\"%s\"", sub_type_names[type]);
    rta_gauge_add(rta_metrics_gauge(rt->m_subs, labels), delta);
    size_t *c[] = {&rt->stats.subs_protocol, &rt->stats.subs_tvl_changes, &rt->stats.subs_price,
                   &rt->stats.subs_price_changes};
    *c[type] += (size_t)delta;
}

/* ---------- rooms and the subscription index ---------- */

static room *room_get(rta_rt *rt, const char *name, int create)
{
    room *r;
    HASH_FIND_STR(rt->rooms, name, r);
    if (r == NULL && create) {
        r = rta_xcalloc(1, sizeof *r);
        r->name = rta_strdup(name);
        HASH_ADD_KEYPTR(hh, rt->rooms, r->name, strlen(r->name), r);
    }
    return r;
}

static void index_add(rta_rt *rt, sub *s)
{
    sub ***arr;
    size_t *n, *cap;
    if (s->type == SUB_PROTOCOL || s->type == SUB_PRICE) {
        s->room = room_get(rt, s->name, 1);
        arr = &s->room->subs;
        n = &s->room->n;
        cap = &s->room->cap;
    } else {
        int k = s->type == SUB_TVL_CHANGES ? 0 : 1;
        arr = &rt->thr[k];
        n = &rt->nthr[k];
        cap = &rt->capthr[k];
    }
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *arr = rta_xrealloc(*arr, *cap * sizeof **arr);
    }
    s->idx = *n;
    (*arr)[(*n)++] = s;
    count_sub(rt, s->type, 1);
}

static void index_remove(rta_rt *rt, sub *s)
{
    sub **arr;
    size_t *n;
    if (s->room) {
        arr = s->room->subs;
        n = &s->room->n;
    } else {
        int k = s->type == SUB_TVL_CHANGES ? 0 : 1;
        arr = rt->thr[k];
        n = &rt->nthr[k];
    }
    sub *last = arr[*n - 1];
    arr[s->idx] = last;
    last->idx = s->idx;
    (*n)--;
    if (s->room && s->room->n == 0) {
        room *r = s->room;
        HASH_DEL(rt->rooms, r);
        free(r->subs);
        free(r->name);
        free(r);
    }
    count_sub(rt, s->type, -1);
}

static void sub_free(sub *s)
{
    free(s->protocol);
    free(s->chain);
    free(s->token);
    free(s);
}

/* ---------- subscription requests ---------- */

typedef struct sub_spec {
    int type;
    const char *protocol, *chain, *token;
    double threshold;
    int has_threshold;
} sub_spec;

/* Validates a subscribe/unsubscribe payload. Returns NULL and fills spec, or an error object.
 * skip: extra top-level fields to ignore (plain WS "op" and "id"). */
static json_t *parse_spec(json_t *p, int unsubscribe, sub_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    if (!json_is_object(p))
        return error_obj("invalid_subscription", "the payload must be an object", "$", "type");
    json_t *t = json_object_get(p, "type");
    if (t == NULL)
        return error_obj("invalid_subscription", "type is required", "type", "required");
    if (!json_is_string(t))
        return error_obj("invalid_subscription", "type must be a string", "type", "type");
    spec->type = -1;
    for (int i = 0; i < SUB_NTYPES; i++)
        if (strcmp(json_string_value(t), sub_type_names[i]) == 0)
            spec->type = i;
    if (spec->type < 0)
        return error_obj("invalid_subscription",
                         "type must be one of protocol, tvl_changes, price, price_changes", "type",
                         "enum");
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        if (strcmp(k, "type") == 0 || strcmp(k, "op") == 0 || strcmp(k, "id") == 0)
            continue;
        int allowed =
            (spec->type == SUB_PROTOCOL && (!strcmp(k, "protocol") || !strcmp(k, "chain"))) ||
            ((spec->type == SUB_TVL_CHANGES || spec->type == SUB_PRICE_CHANGES) &&
             !strcmp(k, "threshold")) ||
            (spec->type == SUB_PRICE && !strcmp(k, "token"));
        if (!allowed) {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown field \"%.60s\" for type %s", k,
                     sub_type_names[spec->type]);
            json_t *e = error_obj("invalid_subscription", msg, k, "unknown_field");
            return e;
        }
        if (strcmp(k, "threshold") == 0) {
            if (!json_is_number(v))
                return error_obj("invalid_subscription", "threshold must be a number", "threshold",
                                 "type");
            double th = json_number_value(v);
            if (!isfinite(th) || th <= 0 || th > 100)
                return error_obj("invalid_subscription",
                                 "threshold is a fraction in (0, 100] (0.05 = 5%)", "threshold",
                                 "range");
            spec->threshold = th;
            spec->has_threshold = 1;
        } else if (!json_is_string(v)) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s must be a string", k);
            return error_obj("invalid_subscription", msg, k, "type");
        } else if (strcmp(k, "token") == 0) {
            if (!rta_valid_token(json_string_value(v)))
                return error_obj("invalid_subscription",
                                 "token must look like coingecko:ethereum or ethereum:0x...",
                                 "token", "token");
            spec->token = json_string_value(v);
        } else {
            if (!rta_valid_slug(json_string_value(v)))
                return error_obj("invalid_subscription",
                                 "must be a lower-case slug [a-z0-9][a-z0-9._-]{0,127}", k, "slug");
            if (strcmp(k, "protocol") == 0)
                spec->protocol = json_string_value(v);
            else
                spec->chain = json_string_value(v);
        }
    }
    if (spec->type == SUB_PROTOCOL && spec->protocol == NULL)
        return error_obj("invalid_subscription", "protocol is required", "protocol", "required");
    if (spec->type == SUB_PRICE && spec->token == NULL)
        return error_obj("invalid_subscription", "token is required", "token", "required");
    if ((spec->type == SUB_TVL_CHANGES || spec->type == SUB_PRICE_CHANGES) &&
        !spec->has_threshold && !unsubscribe)
        return error_obj("invalid_subscription", "threshold is required", "threshold", "required");
    return NULL;
}

static void spec_name(const sub_spec *sp, char *out, size_t len)
{
    switch (sp->type) {
    case SUB_PROTOCOL:
        if (sp->chain)
            snprintf(out, len, "protocol:%s:%s", sp->protocol, sp->chain);
        else
            snprintf(out, len, "protocol:%s", sp->protocol);
        break;
    case SUB_PRICE:
        snprintf(out, len, "price:%s", sp->token);
        break;
    default:
        snprintf(out, len, "%s:%.17g", sub_type_names[sp->type], sp->threshold);
    }
}

static json_t *sub_json(const sub *s)
{
    json_t *o = json_pack("{s:s}", "type", sub_type_names[s->type]);
    if (s->protocol)
        json_object_set_new(o, "protocol", json_string(s->protocol));
    if (s->chain)
        json_object_set_new(o, "chain", json_string(s->chain));
    if (s->token)
        json_object_set_new(o, "token", json_string(s->token));
    if (s->type == SUB_TVL_CHANGES || s->type == SUB_PRICE_CHANGES)
        json_object_set_new(o, "threshold", json_real(s->threshold));
    return o;
}

static void audit_sub(rta_rt *rt, client *cl, const char *action, const char *target)
{
    rta_store_audit(rt->store, cl->key_id, action, target, NULL, cl->remote_ip,
                    json_pack("{s:s}", "transport", cl->kind == CL_WS ? "ws" : "socket.io"));
}

/* Applies a subscribe; returns the reply object ({ok:true,...} or {ok:false,error}). */
static json_t *do_subscribe(rta_rt *rt, client *cl, json_t *payload, int audit)
{
    sub_spec sp;
    json_t *err = parse_spec(payload, 0, &sp);
    if (err)
        return json_pack("{s:b,s:o}", "ok", 0, "error", err);
    if ((sp.type == SUB_TVL_CHANGES || sp.type == SUB_PRICE_CHANGES) &&
        cl->tier_rank < tier_rank(rt->opts.threshold_min_tier)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s feeds need the %s tier or higher (this key: %s)",
                 sub_type_names[sp.type], rt->opts.threshold_min_tier, cl->tier);
        return json_pack("{s:b,s:o}", "ok", 0, "error",
                         error_obj("tier_not_allowed", msg, "type", "tier"));
    }
    char name[SUB_NAME_MAX];
    spec_name(&sp, name, sizeof name);
    for (size_t i = 0; i < cl->nsubs; i++)
        if (strcmp(cl->subs[i]->name, name) == 0) /* idempotent */
            return json_pack("{s:b,s:o,s:s,s:b}", "ok", 1, "subscription", sub_json(cl->subs[i]),
                             "room", name, "existing", 1);
    if (cl->nsubs >= rt->opts.max_subscriptions) {
        char msg[96];
        snprintf(msg, sizeof msg, "at most %zu subscriptions per connection",
                 rt->opts.max_subscriptions);
        return json_pack("{s:b,s:o}", "ok", 0, "error",
                         error_obj("subscription_limit", msg, "type", "max_subscriptions"));
    }
    size_t name_len = strlen(name);
    sub *s = rta_xcalloc(1, sizeof *s + name_len + 1);
    s->type = sp.type;
    s->cl = cl;
    s->threshold = sp.threshold;
    s->protocol = rta_strdup(sp.protocol);
    s->chain = rta_strdup(sp.chain);
    s->token = rta_strdup(sp.token);
    memcpy(s->name, name, name_len + 1);
    index_add(rt, s);
    cl->subs = rta_xrealloc(cl->subs, (cl->nsubs + 1) * sizeof *cl->subs);
    cl->subs[cl->nsubs++] = s;
    if (audit)
        audit_sub(rt, cl, "subscription.create", name);
    return json_pack("{s:b,s:o,s:s}", "ok", 1, "subscription", sub_json(s), "room", name);
}

static void remove_sub_at(rta_rt *rt, client *cl, size_t i)
{
    sub *s = cl->subs[i];
    index_remove(rt, s);
    cl->subs[i] = cl->subs[--cl->nsubs];
    sub_free(s);
}

static json_t *do_unsubscribe(rta_rt *rt, client *cl, json_t *payload)
{
    sub_spec sp;
    json_t *err = parse_spec(payload, 1, &sp);
    if (err)
        return json_pack("{s:b,s:o}", "ok", 0, "error", err);
    json_t *removed = json_array();
    for (size_t i = cl->nsubs; i-- > 0;) {
        sub *s = cl->subs[i];
        if (s->type != sp.type)
            continue;
        int match = 0;
        switch (sp.type) {
        case SUB_PROTOCOL: /* no chain: every subscription of that protocol */
            match = strcmp(s->protocol, sp.protocol) == 0 &&
                    (sp.chain == NULL || (s->chain && strcmp(s->chain, sp.chain) == 0));
            break;
        case SUB_PRICE:
            match = strcmp(s->token, sp.token) == 0;
            break;
        default: /* no threshold: every feed of that type */
            match = !sp.has_threshold || s->threshold == sp.threshold;
        }
        if (match) {
            json_array_append_new(removed, json_string(s->name));
            audit_sub(rt, cl, "subscription.delete", s->name);
            remove_sub_at(rt, cl, i);
        }
    }
    return json_pack("{s:b,s:o}", "ok", 1, "removed", removed);
}

/* ---------- sending ---------- */

static void client_close_slow(rta_rt *rt, client *cl);

/* An event encoded once for every recipient. The compressed frames (plain WS, Socket.IO over
 * WebSocket) are built on first use, i.e. only when a recipient negotiated permessage-deflate,
 * and shared by all such recipients. */
typedef struct encoded {
    rta_rbuf *sio_text, *sio_frame, *ws_frame;
    rta_dbuf ws_text;       /* what ws_frame holds, kept for compressing */
    rta_rbuf *ws_deflated;  /* NULL: not built yet, or compression did not help */
    rta_rbuf *sio_deflated; /* the same for sio_frame */
    int deflate_tried, sio_deflate_tried;
} encoded;

/* Queues shared buffers on a client. Returns 0, or -1 when its backlog is full. */
static int client_send(rta_rt *rt, client *cl, encoded *x)
{
    int rc;
    size_t bytes;
    if (cl->kind == CL_WS) {
        if (!x->deflate_tried && rta_ws_deflate_enabled(cl->ws)) {
            x->deflate_tried = 1;
            x->ws_deflated = rta_ws_frame_deflated(RTA_WS_OP_TEXT, x->ws_text.data, x->ws_text.len);
        }
        /* what was queued (the plain or the compressed frame) is what goes on the wire */
        size_t before = rta_ws_queued_bytes(cl->ws);
        rc = rta_ws_send_frames(cl->ws, x->ws_frame, x->ws_deflated);
        bytes = rta_ws_queued_bytes(cl->ws) - before;
    } else if (rta_sio_socket_deflate(cl->sio)) {
        if (!x->sio_deflate_tried) {
            x->sio_deflate_tried = 1;
            x->sio_deflated =
                rta_ws_frame_deflated(RTA_WS_OP_TEXT, x->sio_text->data, x->sio_text->len);
        }
        /* counted as the plain-WS path does: the frame that was queued (compressed or not) */
        size_t before = rta_sio_socket_queued_bytes(cl->sio);
        rc = rta_sio_send_packet_deflated(cl->sio, x->sio_text, x->sio_frame, x->sio_deflated);
        bytes = rc == 0 ? rta_sio_socket_queued_bytes(cl->sio) - before : 0;
    } else {
        rc = rta_sio_send_packet(cl->sio, x->sio_text, x->sio_frame);
        bytes = x->sio_text->len;
    }
    if (rc == 0) {
        rt->stats.bytes_out += bytes;
        rta_counter_add(rt->c_bytes_out, (double)bytes);
        return 0;
    }
    return -1;
}

/* The client-facing payload of an event, as in spec 2.3.1, plus eventId and offset. */
static json_t *event_payload(const rta_event *e, const char **name)
{
    char ts[40];
    rta_time_iso8601(e->data_ts_ms, ts, sizeof ts);
    json_t *o;
    switch (e->type) {
    case RTA_EVENT_TVL_CHANGE:
        *name = "tvl_change";
        o = json_pack("{s:s,s:s,s:o,s:f,s:o,s:s}", "protocol", e->protocol, "chain",
                      e->chain ? e->chain : "", "previousTvl",
                      e->has_previous ? json_real(e->previous) : json_null(), "currentTvl",
                      e->current, "changePercent",
                      isfinite(e->change) ? json_real(e->change) : json_null(), "timestamp", ts);
        break;
    case RTA_EVENT_PRICE_CHANGE:
        *name = "price_change";
        o = json_pack("{s:s,s:o,s:f,s:o,s:s}", "token", e->token ? e->token : e->protocol,
                      "previousPrice", e->has_previous ? json_real(e->previous) : json_null(),
                      "currentPrice", e->current, "changePercent",
                      isfinite(e->change) ? json_real(e->change) : json_null(), "timestamp", ts);
        break;
    default:
        *name = "protocol_update";
        o = json_pack("{s:s,s:s,s:O?,s:f,s:s}", "protocol", e->protocol, "chain",
                      e->chain ? e->chain : "", "update", e->update, "currentTvl", e->current,
                      "timestamp", ts);
    }
    json_object_set_new(o, "eventId", json_string(e->id));
    json_object_set_new(o, "offset", json_integer((json_int_t)e->offset));
    json_object_set_new(o, "source", json_string(e->source ? e->source : ""));
    return o;
}

static void encode_event(const rta_event *e, int want_sio, int want_ws, encoded *out)
{
    const char *name;
    json_t *p = event_payload(e, &name);
    char *text = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t len = strlen(text);
    memset(out, 0, sizeof *out);
    if (want_sio) {
        char off[24];
        snprintf(off, sizeof off, "%llu", (unsigned long long)e->offset);
        out->sio_text = rta_sio_encode_broadcast(NSP, name, text, len, off);
        out->sio_frame = rta_ws_frame(RTA_WS_OP_TEXT, out->sio_text->data, out->sio_text->len);
    }
    if (want_ws) {
        rta_dbuf *b = &out->ws_text;
        rta_dbuf_init(b, len + 64);
        rta_dbuf_printf(b, "{\"type\":\"%s\",\"data\":", name);
        rta_dbuf_append(b, text, len);
        rta_dbuf_puts(b, "}");
        out->ws_frame = rta_ws_frame(RTA_WS_OP_TEXT, b->data, b->len);
    }
    free(text);
    json_decref(p);
}

static void encoded_release(encoded *x)
{
    if (x->sio_text)
        rta_rbuf_unref(x->sio_text);
    if (x->sio_frame)
        rta_rbuf_unref(x->sio_frame);
    if (x->ws_frame)
        rta_rbuf_unref(x->ws_frame);
    if (x->ws_deflated)
        rta_rbuf_unref(x->ws_deflated);
    if (x->sio_deflated)
        rta_rbuf_unref(x->sio_deflated);
    rta_dbuf_free(&x->ws_text);
}

static int sub_matches(const sub *s, const rta_event *e)
{
    double ch = fabs(e->change);
    switch (s->type) {
    case SUB_PROTOCOL:
        return e->type != RTA_EVENT_PRICE_CHANGE && strcmp(s->protocol, e->protocol) == 0 &&
               (s->chain == NULL || (e->chain && strcmp(s->chain, e->chain) == 0));
    case SUB_PRICE:
        return e->type == RTA_EVENT_PRICE_CHANGE && e->token && strcmp(s->token, e->token) == 0;
    case SUB_TVL_CHANGES:
        return e->type == RTA_EVENT_TVL_CHANGE && isfinite(ch) && ch >= s->threshold;
    default:
        return e->type == RTA_EVENT_PRICE_CHANGE && isfinite(ch) && ch >= s->threshold;
    }
}

static int client_matches(const client *cl, const rta_event *e)
{
    for (size_t i = 0; i < cl->nsubs; i++)
        if (sub_matches(cl->subs[i], e))
            return 1;
    return 0;
}

static void add_recipient(rta_rt *rt, size_t *n, client *cl, uint64_t offset)
{
    if (offset <= cl->last_offset_sent || cl->doomed || cl->catching)
        return; /* once per event; catching-up clients read the log instead */
    cl->last_offset_sent = offset;
    if (*n == rt->scratch_cap) {
        rt->scratch_cap = rt->scratch_cap ? rt->scratch_cap * 2 : 256;
        rt->scratch = rta_xrealloc(rt->scratch, rt->scratch_cap * sizeof *rt->scratch);
    }
    rt->scratch[(*n)++] = cl;
}

static void add_room(rta_rt *rt, size_t *n, const char *name, const rta_event *e)
{
    room *r = room_get(rt, name, 0);
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        add_recipient(rt, n, r->subs[i]->cl, e->offset);
}

static size_t client_backlog(const client *cl)
{
    return cl->kind == CL_WS ? rta_ws_queued_bytes(cl->ws) : rta_sio_socket_queued_bytes(cl->sio);
}

static void lagged_notice(rta_rt *rt, client *cl)
{
    json_t *o = json_pack("{s:I,s:I,s:s}", "fromOffset", (json_int_t)cl->lag_from, "toOffset",
                          (json_int_t)cl->lag_to, "message",
                          "events were dropped because this connection read too slowly; fetch "
                          "them from GET /v1/events");
    int ok;
    if (cl->kind == CL_SIO) {
        ok = rta_sio_emit(cl->sio, "lagged", o) == 0;
    } else {
        json_t *w = json_pack("{s:s,s:O}", "type", "lagged", "data", o);
        char *t = json_dumps(w, JSON_COMPACT);
        ok = rta_ws_send(cl->ws, RTA_WS_OP_TEXT, t, strlen(t)) == RTA_WS_OK;
        free(t);
        json_decref(w);
    }
    json_decref(o);
    if (ok)
        cl->lag_from = cl->lag_to = 0;
}

/* Delivers e to its recipients; returns the size of the largest frame written (0 when nobody
 * wanted it), which the pump counts against its per-turn byte budget. */
static size_t fan_out(rta_rt *rt, rta_event *e)
{
    size_t n = 0;
    char name[SUB_NAME_MAX];
    if (e->type == RTA_EVENT_PRICE_CHANGE) {
        if (e->token) {
            snprintf(name, sizeof name, "price:%s", e->token);
            add_room(rt, &n, name, e);
        }
    } else {
        snprintf(name, sizeof name, "protocol:%s", e->protocol);
        add_room(rt, &n, name, e);
        if (e->chain && e->chain[0]) {
            snprintf(name, sizeof name, "protocol:%s:%s", e->protocol, e->chain);
            add_room(rt, &n, name, e);
        }
    }
    if (e->type != RTA_EVENT_PROTOCOL_UPDATE) {
        int k = e->type == RTA_EVENT_TVL_CHANGE ? 0 : 1;
        double ch = fabs(e->change);
        if (isfinite(ch))
            for (size_t i = 0; i < rt->nthr[k]; i++)
                if (ch >= rt->thr[k][i]->threshold)
                    add_recipient(rt, &n, rt->thr[k][i]->cl, e->offset);
    }
    if (n == 0)
        return 0;
    int want_sio = 0, want_ws = 0;
    for (size_t i = 0; i < n; i++) {
        if (rt->scratch[i]->kind == CL_SIO)
            want_sio = 1;
        else
            want_ws = 1;
    }
    encoded enc;
    encode_event(e, want_sio, want_ws, &enc);
    size_t frame_bytes = enc.sio_frame ? enc.sio_frame->len : 0;
    if (enc.ws_frame && enc.ws_frame->len > frame_bytes)
        frame_bytes = enc.ws_frame->len;
    double lag = (double)(rta_now_us() - e->created_us) / 1e6;
    size_t delivered = 0;
    for (size_t i = 0; i < n; i++) {
        client *cl = rt->scratch[i];
        if (cl->lag_to && !rt->opts.slow_consumer_drop)
            continue;
        if (cl->lag_to && client_backlog(cl) < rt->opts.max_queued_bytes / 2)
            lagged_notice(rt, cl); /* it caught up: say what it missed, then go on */
        if (client_send(rt, cl, &enc) == 0) {
            delivered++;
            continue;
        }
        if (rt->opts.slow_consumer_drop) {
            if (cl->lag_from == 0)
                cl->lag_from = e->offset;
            cl->lag_to = e->offset;
            rt->stats.slow_drops++;
            rta_counter_inc(rta_metrics_counter(rt->m_slow, "action=\"drop\""));
        } else {
            cl->doomed = 1;
        }
    }
    rt->stats.deliveries += delivered;
    rta_counter_add(rta_metrics_counter(rt->m_deliveries, ""), (double)delivered);
    rta_counter_add(rta_metrics_counter(rt->m_msgs, "direction=\"out\""), (double)delivered);
    rta_histogram_observe(rt->m_lag, lag);
    encoded_release(&enc);
    /* slow consumers are closed after the loop: closing may free clients */
    for (size_t i = 0; i < n; i++)
        if (rt->scratch[i]->doomed == 1) {
            rt->scratch[i]->doomed = 2;
            client_close_slow(rt, rt->scratch[i]);
        }
    return frame_bytes;
}

/* ---------- client lifecycle ---------- */

static client *client_new(rta_rt *rt, client_kind kind, rta_key *key, const char *ip)
{
    client *cl = rta_xcalloc(1, sizeof *cl);
    cl->kind = kind;
    cl->rt = rt;
    snprintf(cl->key_id, sizeof cl->key_id, "%s", key->rec.id);
    cl->user_id = rta_strdup(key->rec.user_id ? key->rec.user_id : "");
    snprintf(cl->tier, sizeof cl->tier, "%s", key->rec.tier);
    snprintf(cl->remote_ip, sizeof cl->remote_ip, "%s", ip ? ip : "");
    const rta_tier *t = tier_of(rt, key->rec.tier);
    cl->msgs_per_minute = t ? t->messages_per_minute : 0;
    cl->tier_rank = tier_rank(key->rec.tier);
    cl->connected_ms = rta_now_ms();
    cl->last_offset_sent = 0;
    key->connections++;
    cl->next = rt->clients;
    if (rt->clients)
        rt->clients->prev = cl;
    rt->clients = cl;
    return cl;
}

static void save_session(rta_rt *rt, client *cl)
{
    if (cl->pid[0] == '\0' || cl->nsubs == 0 || rt->opts.recovery_window_ms == 0)
        return;
    if (rt->nsaved >= rt->opts.recovery_max_sessions) { /* evict the oldest */
        saved_session *old = rt->saved;
        HASH_DEL(rt->saved, old);
        json_decref(old->subs);
        free(old);
        rt->nsaved--;
    }
    saved_session *ss = rta_xcalloc(1, sizeof *ss);
    snprintf(ss->pid, sizeof ss->pid, "%s", cl->pid);
    snprintf(ss->sid, sizeof ss->sid, "%s", cl->sio ? rta_sio_socket_id(cl->sio) : "");
    snprintf(ss->key_id, sizeof ss->key_id, "%s", cl->key_id);
    ss->subs = json_array();
    for (size_t i = 0; i < cl->nsubs; i++)
        json_array_append_new(ss->subs, sub_json(cl->subs[i]));
    ss->expires_ms = rta_now_ms() + (int64_t)rt->opts.recovery_window_ms;
    saved_session *prev;
    HASH_FIND_STR(rt->saved, ss->pid, prev);
    if (prev) {
        HASH_DEL(rt->saved, prev);
        json_decref(prev->subs);
        free(prev);
        rt->nsaved--;
    }
    HASH_ADD_STR(rt->saved, pid, ss);
    rt->nsaved++;
}

static void client_free(rta_rt *rt, client *cl, const char *reason)
{
    if (cl->catching) {
        client **pp = &rt->catching;
        while (*pp && *pp != cl)
            pp = &(*pp)->catch_next;
        if (*pp)
            *pp = cl->catch_next;
    }
    json_decref(cl->catch_id);
    rta_key *key = rta_keyring_get(rt->keys, cl->key_id);
    if (key && key->connections > 0)
        key->connections--;
    count_conn(rt, cl, -1);
    while (cl->nsubs)
        remove_sub_at(rt, cl, cl->nsubs - 1);
    free(cl->subs);
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        rt->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    rta_log(RTA_LOG_INFO, "realtime disconnect", "{s:s,s:s,s:s,s:s,s:I}", "transport",
            cl->kind == CL_WS ? "ws" : "socket.io", "key_id", cl->key_id, "remote_ip",
            cl->remote_ip, "reason", reason, "connected_ms",
            (json_int_t)(rta_now_ms() - cl->connected_ms));
    free(cl->user_id);
    free(cl);
}

static void client_close_slow(rta_rt *rt, client *cl)
{
    rt->stats.slow_disconnects++;
    rta_counter_inc(rta_metrics_counter(rt->m_slow, "action=\"disconnect\""));
    rta_log(RTA_LOG_WARN, "slow consumer disconnected", "{s:s,s:s,s:I}", "key_id", cl->key_id,
            "remote_ip", cl->remote_ip, "last_offset", (json_int_t)cl->last_offset_sent);
    if (cl->kind == CL_SIO)
        rta_sio_disconnect(cl->sio, "slow consumer");
    else
        rta_ws_close(cl->ws, 1008, "slow consumer: backlog over the limit");
}

/* Rate limit on client messages; returns 1 when allowed. */
static int client_take_message(rta_rt *rt, client *cl)
{
    rt->stats.messages_in++;
    rta_counter_inc(rta_metrics_counter(rt->m_msgs, "direction=\"in\""));
    int rem, reset, retry;
    return rta_bucket_take(&cl->msg_bucket, cl->msgs_per_minute, rta_now_ms(), &rem, &reset,
                           &retry);
}

/* ---------- pacing: the event queue and catch-up from the log ---------- */

#define PUMP_EVENTS 4096 /* events fanned out per loop turn (the byte budget binds first) */
#define CATCH_READ 128   /* log entries a catching-up client reads per loop turn */
#define CATCH_RETRY_MS 20
#define SLICES_IN_FLIGHT 2 /* fan-out slices handed to writer threads and not yet written */

static void pump_start(rta_rt *rt);
static void ws_send_json(client *cl, json_t *o);

static void pump_start_timer_cb(uv_timer_t *t)
{
    pump_start(t->data);
}

static void catch_finish(rta_rt *rt, client *cl)
{
    cl->catching = 0;
    client **pp = &rt->catching;
    while (*pp && *pp != cl)
        pp = &(*pp)->catch_next;
    if (*pp)
        *pp = cl->catch_next;
    cl->catch_next = NULL;
    rt->stats.replayed += cl->catch_count;
    json_t *info = json_pack("{s:b,s:I,s:I,s:I}", "complete", cl->catch_complete, "replayed",
                             (json_int_t)cl->catch_count, "fromOffset", (json_int_t)cl->catch_from,
                             "lastOffset", (json_int_t)cl->catch_cursor);
    if (cl->kind == CL_SIO) {
        rta_sio_emit(cl->sio, "recovery", info);
    } else {
        json_object_set_new(info, "type", json_string("resumed"));
        if (cl->catch_id)
            json_object_set(info, "id", cl->catch_id);
        ws_send_json(cl, info);
    }
    json_decref(info);
    json_decref(cl->catch_id);
    cl->catch_id = NULL;
    rta_log(RTA_LOG_INFO, "realtime catch-up done", "{s:s,s:s,s:I,s:b,s:I}", "key_id", cl->key_id,
            "transport", cl->kind == CL_WS ? "ws" : "socket.io", "replayed",
            (json_int_t)cl->catch_count, "complete", cl->catch_complete, "to_offset",
            (json_int_t)cl->catch_cursor);
}

/* Starts reading the log for cl from offset `after`, a slice per loop turn, until it has
 * caught up with the live stream (then live fan-out takes over without gap or duplicate). */
static void catch_start(rta_rt *rt, client *cl, uint64_t after, int ws_resume, json_t *id)
{
    if (cl->catching) { /* a new resume replaces the running one */
        json_decref(cl->catch_id);
    } else {
        cl->catch_next = rt->catching;
        rt->catching = cl;
    }
    cl->catching = 1;
    cl->catch_ws_resume = ws_resume;
    cl->catch_complete = 1;
    cl->catch_from = cl->catch_cursor = after;
    cl->catch_count = 0;
    cl->catch_blocked_until = 0;
    cl->catch_id = id ? json_incref(id) : NULL;
    if (after < cl->last_offset_sent) /* never send again what this connection already has */
        cl->last_offset_sent = after;
    pump_start(rt);
}

/* One slice of catch-up for cl. Returns 1 when it is still catching up. */
static int catch_step(rta_rt *rt, client *cl, uint64_t now)
{
    if (cl->catch_blocked_until > now)
        return 1;
    rta_event *batch[CATCH_READ];
    int complete = 1;
    size_t n = rta_event_log_read(rt->log, cl->catch_cursor, batch, CATCH_READ, &complete);
    if (!complete)
        cl->catch_complete = 0;
    for (size_t i = 0; i < n; i++) {
        rta_event *e = batch[i];
        if (cl->catch_count >= rt->opts.replay_max_events) {
            cl->catch_complete = 0; /* the rest is not replayed: the client is told */
            cl->catch_cursor = rta_event_log_last_offset(rt->log);
            cl->last_offset_sent = cl->catch_cursor;
            return 0;
        }
        if (e->offset > cl->last_offset_sent && client_matches(cl, e)) {
            encoded enc;
            encode_event(e, cl->kind == CL_SIO, cl->kind == CL_WS, &enc);
            int rc = client_send(rt, cl, &enc);
            encoded_release(&enc);
            if (rc != 0) { /* backlog full: try again shortly from this event */
                cl->catch_blocked_until = now + CATCH_RETRY_MS;
                return 1;
            }
            cl->last_offset_sent = e->offset;
            cl->catch_count++;
        }
        cl->catch_cursor = e->offset;
    }
    return n == CATCH_READ; /* fewer than asked: this is the end of the log, caught up */
}

static void on_slice_written(void *ud)
{
    rta_rt *rt = ud;
    rt->slices_in_flight--;
    pump_start(rt);
}

static void on_pump(uv_idle_t *h)
{
    rta_rt *rt = h->data;
    /* With writer threads a slice is written after this turn, not in it: the previous turn's
     * writes (queued by the check phase since) get a fence, and at most SLICES_IN_FLIGHT
     * slices are on their way, so a reading client still never holds more than
     * SLICES_IN_FLIGHT budgets of one burst. */
    if (rt->slice_unfenced && rt->net && rta_net_write_barrier(rt->net, on_slice_written, rt))
        rt->slices_in_flight++;
    rt->slice_unfenced = 0;
    if (rt->slices_in_flight >= SLICES_IN_FLIGHT) {
        uv_idle_stop(&rt->pump); /* on_slice_written starts it again */
        rt->pump_on = 0;
        return;
    }
    /* per turn: at most PUMP_EVENTS events and a quarter of the backlog cap in frame bytes, so
     * a client that reads never sees its backlog fill from one burst */
    size_t budget = rt->opts.max_queued_bytes / 4, spent = 0;
    for (int i = 0; i < PUMP_EVENTS && rt->qlen > 0 && spent < budget; i++) {
        rta_event *e = rt->queue[rt->qhead];
        rt->qhead = (rt->qhead + 1) % rt->qcap;
        rt->qlen--;
        spent += fan_out(rt, e);
        rta_event_unref(e);
    }
    if (spent > 0)
        rt->slice_unfenced = 1;
    uint64_t now = uv_now(rt->loop);
    int blocked_only = 1;
    client *cl = rt->catching;
    while (cl) {
        client *next = cl->catch_next;
        if (!catch_step(rt, cl, now))
            catch_finish(rt, cl);
        else if (cl->catch_blocked_until <= now)
            blocked_only = 0;
        cl = next;
    }
    if (rt->qlen == 0 && (rt->catching == NULL || blocked_only)) {
        uv_idle_stop(&rt->pump);
        rt->pump_on = 0;
        if (rt->catching) /* every catching client waits for its backlog: poll gently */
            uv_timer_start(&rt->pump_retry, pump_start_timer_cb, CATCH_RETRY_MS, 0);
    }
}

static void pump_start(rta_rt *rt)
{
    if (!rt->pump_on && !rt->closed) {
        rt->pump_on = 1;
        uv_idle_start(&rt->pump, on_pump);
    }
}

void rta_rt_on_event(void *ud, rta_event *e)
{
    rta_rt *rt = ud;
    rt->stats.events_in++;
    rt->last_event_offset = e->offset;
    if (rt->closed)
        return;
    if (rt->qlen == rt->qcap) {
        size_t cap = rt->qcap ? rt->qcap * 2 : 1024;
        if (cap > RT_QUEUE_MAX) { /* far behind: deliver this one now rather than grow */
            fan_out(rt, e);
            return;
        }
        rta_event **q = rta_xmalloc(cap * sizeof *q);
        for (size_t i = 0; i < rt->qlen; i++)
            q[i] = rt->queue[(rt->qhead + i) % rt->qcap];
        free(rt->queue);
        rt->queue = q;
        rt->qcap = cap;
        rt->qhead = 0;
    }
    rt->queue[(rt->qhead + rt->qlen) % rt->qcap] = rta_event_ref(e);
    rt->qlen++;
    pump_start(rt);
}

/* ---------- Socket.IO namespace ---------- */

static const char *auth_key_from(json_t *auth, const rta_sio_handshake *hs, char *buf,
                                 size_t buflen)
{
    json_t *k = json_object_get(auth, "apiKey");
    if (json_is_string(k))
        return json_string_value(k);
    if (hs->query) { /* ?apiKey=... */
        const char *p = hs->query;
        while (p && *p) {
            if (strncmp(p, "apiKey=", 7) == 0) {
                size_t n = strcspn(p + 7, "&");
                if (n >= buflen)
                    n = buflen - 1;
                memcpy(buf, p + 7, n);
                buf[n] = '\0';
                return buf;
            }
            p = strchr(p, '&');
            if (p)
                p++;
        }
    }
    if (hs->authorization && strncasecmp(hs->authorization, "Bearer ", 7) == 0)
        return hs->authorization + 7;
    return NULL;
}

static void auth_failed(rta_rt *rt, const char *code)
{
    rt->stats.auth_failures++;
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", code);
    rta_counter_inc(rta_metrics_counter(rt->m_auth, labels));
}

/* Shared key checks for both transports. Returns NULL and sets *code and *message on failure. */
static rta_key *check_key(rta_rt *rt, const char *key_text, const char **code, const char **message,
                          int *limit)
{
    rta_key *key = NULL;
    rta_auth_result r = rta_keyring_verify(rt->keys, key_text, &key);
    if (r != RTA_AUTH_OK) {
        *code = rta_auth_result_code(r);
        *message = "unauthorized";
        return NULL;
    }
    if (!(key->perms & RTA_PERM_SUBSCRIBE)) {
        *code = "forbidden";
        *message = "this key may not subscribe";
        return NULL;
    }
    const rta_tier *t = tier_of(rt, key->rec.tier);
    *limit = t ? t->websocket_connections : 0;
    if (key->connections >= *limit) {
        *code = "too_many_connections";
        *message = "connection limit of this key's tier reached";
        return NULL;
    }
    return key;
}

static int sio_on_connect(void *ud, rta_sio_socket *s, json_t *auth, const rta_sio_handshake *hs,
                          json_t **err_data)
{
    rta_rt *rt = ud;
    char buf[RTA_KEY_TEXT_MAX + 8];
    const char *text = auth_key_from(auth, hs, buf, sizeof buf);
    const char *code = NULL, *message = NULL;
    int limit = 0;
    rta_key *key = check_key(rt, text, &code, &message, &limit);
    if (key == NULL) {
        auth_failed(rt, code);
        rta_log(RTA_LOG_INFO, "realtime connect refused", "{s:s,s:s,s:s}", "transport", "socket.io",
                "remote_ip", hs->remote_ip ? hs->remote_ip : "", "code", code);
        json_t *data = json_pack("{s:s}", "code", code);
        if (strcmp(code, "too_many_connections") == 0)
            json_object_set_new(data, "limit", json_integer(limit));
        *err_data =
            json_pack("{s:s,s:o}", "message",
                      strcmp(message, "unauthorized") == 0 ? "unauthorized" : code, "data", data);
        return RTA_SIO_REJECT;
    }
    client *cl = client_new(rt, CL_SIO, key, hs->remote_ip);
    cl->sio = s;
    rta_sio_socket_set_data(s, cl);
    /* connection state recovery: same pid (and key) within the window */
    const char *pid = NULL;
    json_t *jp = json_object_get(auth, "pid");
    if (json_is_string(jp))
        pid = json_string_value(jp);
    saved_session *ss = NULL;
    if (pid)
        HASH_FIND_STR(rt->saved, pid, ss);
    if (ss && strcmp(ss->key_id, cl->key_id) == 0 && ss->expires_ms > rta_now_ms()) {
        snprintf(cl->pid, sizeof cl->pid, "%s", ss->pid);
        if (ss->sid[0])
            rta_sio_socket_set_id(s, ss->sid);
        size_t i;
        json_t *spec;
        json_array_foreach(ss->subs, i, spec)
        {
            json_t *r = do_subscribe(rt, cl, spec, 0);
            json_decref(r);
        }
        HASH_DEL(rt->saved, ss);
        json_decref(ss->subs);
        free(ss);
        rt->nsaved--;
        json_t *jo = json_object_get(auth, "offset");
        cl->recovering = 1;
        cl->recover_from = json_is_string(jo) ? strtoull(json_string_value(jo), NULL, 10) : 0;
    } else {
        rta_uuid_v7(cl->pid);
    }
    rta_sio_socket_set_pid(s, cl->pid);
    count_conn(rt, cl, 1);
    rta_log(RTA_LOG_INFO, "realtime connect", "{s:s,s:s,s:s,s:s,s:b}", "transport", "socket.io",
            "key_id", cl->key_id, "tier", cl->tier, "remote_ip", cl->remote_ip, "recovered",
            cl->nsubs > 0);
    return RTA_SIO_ACCEPT;
}

static void sio_on_connected(void *ud, rta_sio_socket *s)
{
    rta_rt *rt = ud;
    client *cl = rta_sio_socket_get_data(s);
    if (cl == NULL || !cl->recovering)
        return;
    cl->recovering = 0;
    /* replay what it missed from its last offset, then live ("recovery" tells when done) */
    catch_start(rt, cl, cl->recover_from, 0, NULL);
    rta_log(RTA_LOG_INFO, "realtime session recovered", "{s:s,s:I}", "key_id", cl->key_id,
            "from_offset", (json_int_t)cl->recover_from);
}

static void sio_reply(rta_sio_socket *s, int64_t ack_id, json_t *reply, const char *event)
{
    if (ack_id >= 0) {
        json_t *args = json_pack("[O]", reply);
        rta_sio_ack(s, ack_id, args);
        json_decref(args);
    } else if (!json_is_true(json_object_get(reply, "ok"))) {
        json_t *err = json_deep_copy(json_object_get(reply, "error"));
        json_object_set_new(err, "event", json_string(event));
        rta_sio_emit(s, "rta_error", err);
        json_decref(err);
    }
}

/* The main namespace "/": Socket.IO servers always have it and some clients (Artillery, for
 * one) connect to it before their own namespace, so it is accepted, without a key, and holds
 * nothing: a session that joins only "/" is closed at the connect timeout, as one that joins
 * nothing. An event sent there by mistake is answered with the namespace to use. */
static int root_on_connect(void *ud, rta_sio_socket *s, json_t *auth, const rta_sio_handshake *hs,
                           json_t **err_data)
{
    return RTA_SIO_ACCEPT;
}

static void root_on_event(void *ud, rta_sio_socket *s, const char *event, json_t *args,
                          int64_t ack_id)
{
    json_t *reply =
        json_pack("{s:b,s:o}", "ok", 0, "error",
                  error_obj("wrong_namespace",
                            "the main namespace has no realtime API: connect to " NSP " instead",
                            "namespace", "the realtime API is in namespace " NSP));
    sio_reply(s, ack_id, reply, event);
    json_decref(reply);
}

static const rta_sio_namespace_handler root_handler = {
    .on_connect = root_on_connect,
    .on_event = root_on_event,
    .guest = 1,
};

static void sio_on_event(void *ud, rta_sio_socket *s, const char *event, json_t *args,
                         int64_t ack_id)
{
    rta_rt *rt = ud;
    client *cl = rta_sio_socket_get_data(s);
    if (cl == NULL)
        return;
    json_t *reply;
    if (!client_take_message(rt, cl)) {
        reply = json_pack("{s:b,s:o}", "ok", 0, "error",
                          error_obj("rate_limited", "too many messages for this key's tier",
                                    "event", "messages_per_minute"));
    } else if (strcmp(event, "subscribe") == 0) {
        reply = do_subscribe(rt, cl, json_array_get(args, 0), 1);
    } else if (strcmp(event, "unsubscribe") == 0) {
        reply = do_unsubscribe(rt, cl, json_array_get(args, 0));
    } else if (strcmp(event, "ping") == 0) {
        reply = json_pack("{s:b,s:I}", "ok", 1, "lastOffset", (json_int_t)rt->last_event_offset);
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown event \"%.60s\" (expected subscribe, unsubscribe)",
                 event);
        reply = json_pack("{s:b,s:o}", "ok", 0, "error",
                          error_obj("unknown_event", msg, "event", "enum"));
    }
    sio_reply(s, ack_id, reply, event);
    json_decref(reply);
}

static void sio_on_disconnect(void *ud, rta_sio_socket *s, const char *reason)
{
    rta_rt *rt = ud;
    client *cl = rta_sio_socket_get_data(s);
    if (cl == NULL)
        return;
    if (strcmp(reason, "client namespace disconnect") != 0 &&
        strcmp(reason, "server namespace disconnect") != 0)
        save_session(rt, cl);
    client_free(rt, cl, reason);
    rta_sio_socket_set_data(s, NULL);
}

static const rta_sio_namespace_handler sio_handler = {
    .on_connect = sio_on_connect,
    .on_connected = sio_on_connected,
    .on_event = sio_on_event,
    .on_disconnect = sio_on_disconnect,
};

/* ---------- plain WebSocket endpoint ---------- */

static void ws_send_json(client *cl, json_t *o)
{
    char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (t && rta_ws_send(cl->ws, RTA_WS_OP_TEXT, t, strlen(t)) == RTA_WS_OK)
        cl->rt->stats.bytes_out += strlen(t);
    free(t);
}

static void ws_reply(client *cl, const char *type, json_t *reply, json_t *id)
{
    json_t *o;
    if (json_is_true(json_object_get(reply, "ok"))) {
        o = json_deep_copy(reply);
        json_object_del(o, "ok");
        json_object_set_new(o, "type", json_string(type));
    } else {
        o = json_pack("{s:s,s:O}", "type", "error", "error", json_object_get(reply, "error"));
    }
    if (id)
        json_object_set(o, "id", id);
    ws_send_json(cl, o);
    json_decref(o);
}

static void ws_on_message(rta_ws *ws, int opcode, const char *data, size_t len)
{
    client *cl = rta_ws_get_data(ws);
    rta_rt *rt = cl->rt;
    rta_counter_add(rta_metrics_counter(rt->m_bytes, "direction=\"in\""), (double)len);
    json_t *reply = NULL;
    const char *type = "error";
    json_t *msg = NULL, *id = NULL;
    if (opcode == RTA_WS_OP_TEXT) { /* parsed first, so every answer can echo its id */
        json_error_t jerr0;
        msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr0);
        id = json_object_get(msg, "id");
    }
    if (!client_take_message(rt, cl)) {
        reply = json_pack("{s:b,s:o}", "ok", 0, "error",
                          error_obj("rate_limited", "too many messages for this key's tier", "op",
                                    "messages_per_minute"));
        goto answer;
    }
    if (opcode != RTA_WS_OP_TEXT) {
        reply =
            json_pack("{s:b,s:o}", "ok", 0, "error",
                      error_obj("invalid_message", "messages are JSON text frames", "$", "text"));
        goto answer;
    }
    if (!json_is_object(msg)) {
        json_error_t jerr;
        json_t *again = msg ? NULL : json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        json_decref(again);
        reply =
            json_pack("{s:b,s:o}", "ok", 0, "error",
                      error_obj("invalid_message",
                                msg ? "a message must be a JSON object" : jerr.text, "$", "json"));
        goto answer;
    }
    json_t *op = json_object_get(msg, "op");
    const char *ops = json_string_value(op);
    if (ops == NULL) {
        reply = json_pack("{s:b,s:o}", "ok", 0, "error",
                          error_obj("invalid_message", "op is required", "op", "required"));
    } else if (strcmp(ops, "subscribe") == 0) {
        type = "subscribed";
        reply = do_subscribe(rt, cl, msg, 1);
    } else if (strcmp(ops, "unsubscribe") == 0) {
        type = "unsubscribed";
        reply = do_unsubscribe(rt, cl, msg);
    } else if (strcmp(ops, "resume") == 0) {
        json_t *off = json_object_get(msg, "offset");
        if (!json_is_integer(off) || json_integer_value(off) < 0) {
            reply = json_pack("{s:b,s:o}", "ok", 0, "error",
                              error_obj("invalid_message", "offset must be a non-negative integer",
                                        "offset", "type"));
        } else {
            /* the events follow, then {"type":"resumed",...} once caught up */
            catch_start(rt, cl, (uint64_t)json_integer_value(off), 1, id);
            json_decref(msg);
            return;
        }
    } else if (strcmp(ops, "ping") == 0) {
        type = "pong";
        reply = json_pack("{s:b,s:I}", "ok", 1, "lastOffset", (json_int_t)rt->last_event_offset);
    } else {
        reply =
            json_pack("{s:b,s:o}", "ok", 0, "error",
                      error_obj("invalid_message",
                                "op must be subscribe, unsubscribe, resume or ping", "op", "enum"));
    }
answer:
    ws_reply(cl, type, reply, id);
    json_decref(reply);
    json_decref(msg);
}

static void ws_on_writable(rta_ws *ws)
{
    client *cl = rta_ws_get_data(ws);
    if (cl && cl->lag_to)
        lagged_notice(cl->rt, cl);
}

static void ws_on_close(rta_ws *ws, int code, const char *reason)
{
    client *cl = rta_ws_get_data(ws);
    if (cl == NULL)
        return;
    char r[96];
    snprintf(r, sizeof r, "close %d %s", code, reason ? reason : "");
    client_free(cl->rt, cl, r);
}

static const rta_ws_handler ws_handler = {
    .on_message = ws_on_message,
    .on_writable = ws_on_writable,
    .on_close = ws_on_close,
};

static int handle_ws_upgrade(rta_rt *rt, rta_http_req *req, rta_conn *conn, const char *leftover,
                             size_t len)
{
    char buf[RTA_KEY_TEXT_MAX + 8];
    const char *text = rta_http_query_param(req, "apiKey", buf, sizeof buf);
    const char *auth = rta_http_header_get(req, "Authorization");
    if (text == NULL && auth && strncasecmp(auth, "Bearer ", 7) == 0)
        text = auth + 7;
    const char *code = NULL, *message = NULL;
    int limit = 0;
    rta_key *key = check_key(rt, text, &code, &message, &limit);
    if (key == NULL) {
        auth_failed(rt, code);
        int status = strcmp(code, "forbidden") == 0              ? 403
                     : strcmp(code, "too_many_connections") == 0 ? 429
                                                                 : 401;
        rta_log(RTA_LOG_INFO, "realtime connect refused", "{s:s,s:s,s:s}", "transport", "ws",
                "remote_ip", req->remote_ip, "code", code);
        if (status == 401)
            rta_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"rta\"");
        rta_http_send_error(req, status, code, message,
                            status == 429 ? json_pack("{s:i}", "connectionLimit", limit) : NULL);
        return 1;
    }
    rta_ws_options o;
    rta_ws_options_default(&o);
    o.max_queued_bytes = rt->opts.max_queued_bytes;
    o.idle_timeout_ms = rt->opts.ws_idle_timeout_ms;
    o.max_message_bytes = 65536;
    o.max_frame_bytes = 65536;
    o.permessage_deflate = rt->opts.permessage_deflate;
    client *cl = client_new(rt, CL_WS, key, req->remote_ip);
    rta_ws *ws = rta_ws_accept(req, conn, leftover, len, &o, &ws_handler, cl);
    if (ws == NULL) {
        cl->kind = CL_WS;
        count_conn(rt, cl, 1);
        client_free(rt, cl, "handshake failed");
        return 1;
    }
    cl->ws = ws;
    count_conn(rt, cl, 1);
    rta_log(RTA_LOG_INFO, "realtime connect", "{s:s,s:s,s:s,s:s}", "transport", "ws", "key_id",
            cl->key_id, "tier", cl->tier, "remote_ip", cl->remote_ip);
    json_t *hello = json_pack("{s:s,s:I,s:I}", "type", "welcome", "lastOffset",
                              (json_int_t)rt->last_event_offset, "maxSubscriptions",
                              (json_int_t)rt->opts.max_subscriptions);
    ws_send_json(cl, hello);
    json_decref(hello);
    return 1;
}

/* ---------- public ---------- */

void rta_rt_options_default(rta_rt_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_subscriptions = 100;
    o->max_queued_bytes = 1u << 20;
    o->threshold_min_tier = "pro";
    o->recovery_window_ms = 120000;
    o->recovery_max_sessions = 10000;
    o->replay_max_events = 10000;
    o->ws_idle_timeout_ms = 120000;
    o->ping_interval_ms = 25000;
    o->ping_timeout_ms = 20000;
}

rta_rt *rta_rt_new(uv_loop_t *loop, const rta_rt_options *opts, rta_keyring *keys,
                   rta_event_log *log, rta_store *store, const char *cors_origins)
{
    rta_rt *rt = rta_xcalloc(1, sizeof *rt);
    rt->loop = loop;
    rt->opts = *opts;
    rta_tiers_defaults(rt->default_tiers);
    rt->tiers = opts->tiers ? opts->tiers : rt->default_tiers;
    rt->keys = keys;
    rt->log = log;
    rt->store = store;
    uv_idle_init(loop, &rt->pump);
    rt->pump.data = rt;
    uv_timer_init(loop, &rt->pump_retry);
    rt->pump_retry.data = rt;
    rta_sio_options so;
    rta_sio_options_default(&so);
    so.cors_origins = cors_origins;
    so.recovery = 1;
    so.max_queued_bytes = opts->max_queued_bytes;
    so.ping_interval_ms = opts->ping_interval_ms;
    so.ping_timeout_ms = opts->ping_timeout_ms;
    so.ws_permessage_deflate = opts->sio_permessage_deflate;
    rt->sio = rta_sio_server_new(loop, &so);
    rta_sio_server_namespace(rt->sio, NSP, &sio_handler, rt);
    rta_sio_server_namespace(rt->sio, "/", &root_handler, rt);
    rt->m_conn = rta_metrics_gauge_family("rta_realtime_connections",
                                          "Realtime connections, by transport and tier");
    rt->m_subs =
        rta_metrics_gauge_family("rta_realtime_subscriptions", "Realtime subscriptions, by type");
    rt->m_msgs = rta_metrics_counter_family("rta_realtime_messages_total",
                                            "Realtime client messages, by direction");
    rt->m_bytes =
        rta_metrics_counter_family("rta_realtime_bytes_total", "Realtime bytes, by direction");
    rt->m_slow = rta_metrics_counter_family("rta_realtime_slow_consumers_total",
                                            "Slow-consumer actions, by action");
    rt->m_auth = rta_metrics_counter_family("rta_realtime_auth_failures_total",
                                            "Refused realtime connections, by reason");
    rt->c_bytes_out = rta_metrics_counter(rt->m_bytes, "direction=\"out\"");
    rt->m_deliveries = rta_metrics_counter_family("rta_realtime_deliveries_total",
                                                  "Events written to realtime clients");
    rt->m_lag = rta_metrics_histogram(
        rta_metrics_histogram_family("rta_realtime_delivery_lag_seconds",
                                     "Event creation to write, per fanned-out event", NULL, 0),
        "");
    return rt;
}

void rta_rt_set_net(rta_rt *rt, rta_net *net)
{
    rt->net = net;
}

void rta_rt_shutdown(rta_rt *rt)
{
    /* events still queued go out now: the clients are told to leave right after */
    while (rt->qlen > 0) {
        rta_event *e = rt->queue[rt->qhead];
        rt->qhead = (rt->qhead + 1) % rt->qcap;
        rt->qlen--;
        fan_out(rt, e);
        rta_event_unref(e);
    }
    rt->closed = 1;
    uv_idle_stop(&rt->pump);
    if (!uv_is_closing((uv_handle_t *)&rt->pump)) {
        uv_close((uv_handle_t *)&rt->pump, NULL);
        uv_close((uv_handle_t *)&rt->pump_retry, NULL);
    }
    rta_sio_server_shutdown(rt->sio);
    client *cl = rt->clients;
    while (cl) {
        client *next = cl->next;
        if (cl->kind == CL_WS)
            rta_ws_close(cl->ws, 1001, "server shutting down");
        cl = next;
    }
}

void rta_rt_free(rta_rt *rt)
{
    if (rt == NULL)
        return;
    rta_sio_server_free(rt->sio);
    for (size_t i = 0; i < rt->qlen; i++)
        rta_event_unref(rt->queue[(rt->qhead + i) % rt->qcap]);
    free(rt->queue);
    saved_session *ss, *tmp;
    HASH_ITER(hh, rt->saved, ss, tmp)
    {
        HASH_DEL(rt->saved, ss);
        json_decref(ss->subs);
        free(ss);
    }
    free(rt->thr[0]);
    free(rt->thr[1]);
    free(rt->scratch);
    free(rt);
}

int rta_rt_handle_http(rta_rt *rt, rta_http_req *req)
{
    const char *route = req->route;
    req->route = "/socket.io/";
    if (rta_sio_server_handle_http(rt->sio, req))
        return 1;
    req->route = route;
    return 0;
}

int rta_rt_handle_upgrade(rta_rt *rt, rta_http_req *req, rta_conn *conn, const char *leftover,
                          size_t len)
{
    if (strcmp(req->path, "/v1/realtime/ws") == 0)
        return handle_ws_upgrade(rt, req, conn, leftover, len);
    return rta_sio_server_handle_upgrade(rt->sio, req, conn, leftover, len);
}

void rta_rt_revoke_key(rta_rt *rt, const char *key_id)
{
    client *cl = rt->clients;
    while (cl) {
        client *next = cl->next;
        if (strcmp(cl->key_id, key_id) == 0 && !cl->doomed) {
            cl->doomed = 2;
            rta_log(RTA_LOG_INFO, "realtime client closed: key revoked", "{s:s,s:s}", "key_id",
                    key_id, "remote_ip", cl->remote_ip);
            if (cl->kind == CL_SIO)
                rta_sio_disconnect(cl->sio, "key revoked");
            else
                rta_ws_close(cl->ws, 1008, "key revoked");
        }
        cl = next;
    }
}

void rta_rt_notify_user(rta_rt *rt, const char *user_id, const char *event, json_t *payload)
{
    for (client *cl = rt->clients; cl; cl = cl->next) {
        if (strcmp(cl->user_id, user_id) != 0 || cl->doomed)
            continue;
        if (cl->kind == CL_SIO) {
            rta_sio_emit(cl->sio, event, payload);
        } else {
            json_t *o = json_pack("{s:s,s:O}", "type", event, "data", payload);
            ws_send_json(cl, o);
            json_decref(o);
        }
    }
}

const rta_sio_stats *rta_rt_sio_stats(const rta_rt *rt)
{
    return rta_sio_server_stats(rt->sio);
}

size_t rta_rt_open_sessions(const rta_rt *rt)
{
    const rta_sio_stats *ss = rta_sio_server_stats(rt->sio);
    return ss->sessions_polling + ss->sessions_websocket + rt->stats.clients_ws;
}

const rta_rt_stats *rta_rt_get_stats(const rta_rt *rt)
{
    return &rt->stats;
}
