/*
 * RealtimeEvent objects (spec 2.2.3): creation, refcounting and the JSON encoding sent to
 * clients, logged and stored. An event is encoded once, on first use after publication, and
 * the encoded bytes are shared (rta_rbuf) by every subscriber that writes it out.
 */
#include "rta/event.h"
#include "rta/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    return s ? rta_strdup(s) : NULL;
}

rta_event *rta_event_new(rta_event_type type, const char *protocol, const char *chain,
                         const char *token, const char *source)
{
    rta_event *e = rta_xcalloc(1, sizeof *e);
    e->refcnt = 1;
    rta_uuid_v7(e->id);
    e->type = type;
    e->protocol = dup_or_null(protocol);
    e->chain = dup_or_null(chain);
    e->token = dup_or_null(token);
    e->source = dup_or_null(source);
    e->previous = NAN;
    e->current = 0.0;
    e->change = NAN;
    e->confidence = 1.0;
    e->created_us = rta_now_us();
    e->tags = json_array();
    if (e->tags == NULL)
        abort(); /* jansson out of memory: nothing sensible left to do */
    return e;
}

rta_event *rta_event_ref(rta_event *e)
{
    e->refcnt++;
    return e;
}

void rta_event_unref(rta_event *e)
{
    if (e == NULL || --e->refcnt > 0)
        return;
    free(e->protocol);
    free(e->chain);
    free(e->token);
    free(e->source);
    json_decref(e->tags);
    json_decref(e->update);
    rta_rbuf_unref(e->json);
    free(e);
}

const char *rta_event_type_name(rta_event_type t)
{
    switch (t) {
    case RTA_EVENT_TVL_CHANGE:
        return "tvl_change";
    case RTA_EVENT_PRICE_CHANGE:
        return "price_change";
    case RTA_EVENT_PROTOCOL_UPDATE:
        return "protocol_update";
    }
    return "unknown";
}

static json_t *number_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *rta_event_to_json(const rta_event *e)
{
    char ts[40], created[40];
    rta_time_iso8601(e->data_ts_ms, ts, sizeof ts);
    rta_time_iso8601(e->created_us / 1000, created, sizeof created);

    json_t *data = json_object();
    json_object_set_new(data, "previousValue",
                        e->has_previous ? number_or_null(e->previous) : json_null());
    json_object_set_new(data, "currentValue", number_or_null(e->current));
    json_object_set_new(data, "changePercent", number_or_null(e->change));
    json_object_set_new(data, "timestamp", json_string(ts));
    if (e->update)
        json_object_set_new(data, "update", json_deep_copy(e->update));

    json_t *meta = json_object();
    json_object_set_new(meta, "source", json_string(e->source ? e->source : ""));
    json_object_set_new(meta, "confidence", json_real(e->confidence));
    /* Copies, so that a caller editing the returned object cannot change the event. */
    json_object_set_new(meta, "tags", e->tags ? json_deep_copy(e->tags) : json_array());

    json_t *o = json_object();
    json_object_set_new(o, "eventId", json_string(e->id));
    json_object_set_new(o, "eventType", json_string(rta_event_type_name(e->type)));
    json_object_set_new(o, "protocol", json_string(e->protocol ? e->protocol : ""));
    json_object_set_new(o, "chain", json_string(e->chain ? e->chain : ""));
    if (e->token)
        json_object_set_new(o, "token", json_string(e->token));
    json_object_set_new(o, "data", data);
    json_object_set_new(o, "metadata", meta);
    json_object_set_new(o, "createdAt", json_string(created));
    json_object_set_new(o, "offset", json_integer((json_int_t)e->offset));
    return o;
}

rta_rbuf *rta_event_json(rta_event *e)
{
    if (e->json)
        return e->json;
    json_t *o = rta_event_to_json(e);
    /* 15 significant digits: round-trips every decimal a client sends, without the noise of 17
     * (0.1 stays "0.1"). */
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (s == NULL)
        abort(); /* out of memory */
    e->json = rta_rbuf_new(s, strlen(s));
    free(s);
    return e->json;
}
