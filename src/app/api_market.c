/*
 * Market data API: ingest, the event log, the advanced query, protocols, chains and prices.
 * Also the engine glue shared by REST ingest and the simulator: apply an update to the state,
 * publish what it produced, mark the series for persistence.
 */
#include "app_internal.h"
#include "rta/ingest.h"
#include "rta/log.h"
#include "rta/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *apply_result_name[] = {"changed", "unchanged", "stale"};

static void publish(rta_app *app, rta_event **evs, size_t n, rta_ingest_counts *counts)
{
    static rta_counter *by_type[3];
    if (by_type[0] == NULL) {
        by_type[0] = rta_metrics_counter(app->m_events, "type=\"tvl_change\"");
        by_type[1] = rta_metrics_counter(app->m_events, "type=\"price_change\"");
        by_type[2] = rta_metrics_counter(app->m_events, "type=\"protocol_update\"");
    }
    for (size_t i = 0; i < n; i++) {
        rta_event *e = evs[i];
        if (app->sim != NULL && strcmp(e->source, "simulator") == 0)
            json_array_append_new(e->tags, json_string("simulated"));
        rta_bus_publish(app->bus, e);
        rta_counter_inc(by_type[e->type]);
        if (counts) {
            if (counts->first_offset == 0)
                counts->first_offset = e->offset;
            counts->last_offset = e->offset;
            counts->events++;
        }
        rta_event_unref(e);
    }
}

/* Counts one applied update in the metrics and, for ingest answers, in counts. */
static void count_item(rta_app *app, const char *kind, const char *source, rta_apply_result r,
                       rta_ingest_counts *counts)
{
    /* this runs per update: the series pointers of the usual sources are looked up once */
    static rta_counter *cache[2][2][3]; /* kind (tvl, price) x source (ingest, simulator) */
    int k = kind[0] == 'p', src = strcmp(source, "ingest") == 0      ? 0
                                  : strcmp(source, "simulator") == 0 ? 1
                                                                     : -1;
    rta_counter *c = src >= 0 ? cache[k][src][r] : NULL;
    if (c == NULL) {
        char labels[128];
        snprintf(labels, sizeof labels, "kind=\"%s\",source=\"%s\",result=\"%s\"", kind, source,
                 apply_result_name[r]);
        c = rta_metrics_counter(app->m_ingest_items, labels);
        if (src >= 0)
            cache[k][src][r] = c;
    }
    rta_counter_inc(c);
    if (counts == NULL)
        return;
    counts->accepted++;
    if (r == RTA_APPLY_CHANGED)
        counts->changed++;
    else if (r == RTA_APPLY_UNCHANGED)
        counts->unchanged++;
    else
        counts->stale++;
}

void rta_app_apply_tvl(rta_app *app, const rta_tvl_update *u, const char *source,
                       rta_ingest_counts *counts)
{
    rta_event *evs[4];
    size_t n = 0;
    rta_apply_result r = rta_state_apply_tvl(app->state, u, source, evs, 4, &n);
    count_item(app, "tvl", source, r, counts);
    if (r != RTA_APPLY_UNCHANGED) {
        rta_pair *p = rta_state_find_pair(app->state, u->protocol, u->chain);
        if (p)
            rta_persist_mark_pair(app, p);
    }
    for (size_t i = 0; i < n; i++)
        if (evs[i]->type == RTA_EVENT_PROTOCOL_UPDATE) {
            rta_protocol *proto = rta_state_find_protocol(app->state, u->protocol);
            if (proto)
                rta_persist_mark_protocol(app, proto);
        }
    publish(app, evs, n, counts);
}

void rta_app_apply_price(rta_app *app, const rta_price_update *u, const char *source,
                         rta_ingest_counts *counts)
{
    rta_event *evs[4];
    size_t n = 0;
    rta_apply_result r = rta_state_apply_price(app->state, u, source, evs, 4, &n);
    count_item(app, "price", source, r, counts);
    if (r != RTA_APPLY_UNCHANGED) {
        rta_token *t = rta_state_find_token(app->state, u->token);
        if (t)
            rta_persist_mark_token(app, t);
    }
    publish(app, evs, n, counts);
}

/* ---- POST /v1/ingest ---- */

void api_ingest(rta_app *app, rta_http_req *req)
{
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    rta_ingest_batch batch;
    json_t *errors = NULL;
    if (rta_ingest_parse(body, (size_t)app->cfg->ingest_max_items, rta_now_ms(), &batch, &errors) !=
        0) {
        rta_counter_inc(rta_metrics_counter(
            app->m_ingest_items, "kind=\"batch\",source=\"ingest\",result=\"rejected\""));
        rta_app_validation_error(req, errors);
        json_decref(body);
        return;
    }
    rta_ingest_counts c = {0};
    uint64_t t0 = rta_mono_ns();
    uint64_t triggers_before = app->triggers_queued;
    for (size_t i = 0; i < batch.ntvl; i++)
        rta_app_apply_tvl(app, &batch.tvl[i], "ingest", &c);
    for (size_t i = 0; i < batch.nprices; i++)
        rta_app_apply_price(app, &batch.prices[i], "ingest", &c);
    double ms = (double)(rta_mono_ns() - t0) / 1e6;
    rta_app_audit(app, req, "ingest.batch", NULL,
                  json_pack("{s:I,s:I,s:I,s:I,s:I}", "tvl", (json_int_t)batch.ntvl, "prices",
                            (json_int_t)batch.nprices, "changed", (json_int_t)c.changed, "events",
                            (json_int_t)c.events, "lastOffset", (json_int_t)c.last_offset));
    rta_log(RTA_LOG_INFO, "ingest batch", "{s:s,s:s,s:I,s:I,s:I,s:I,s:f}", "request_id",
            req->request_id, "key_id", rta_app_actor(req), "items", (json_int_t)c.accepted,
            "changed", (json_int_t)c.changed, "events", (json_int_t)c.events, "first_offset",
            (json_int_t)c.first_offset, "apply_ms", ms);
    rta_ingest_batch_free(&batch);
    json_decref(body);
    json_t *answer = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:I}", "accepted", (json_int_t)c.accepted, "changed",
        (json_int_t)c.changed, "unchanged", (json_int_t)c.unchanged, "stale", (json_int_t)c.stale,
        "events", (json_int_t)c.events, "firstOffset",
        c.first_offset ? json_integer((json_int_t)c.first_offset) : json_null(), "lastOffset",
        c.last_offset ? json_integer((json_int_t)c.last_offset) : json_null(), "dataVersion",
        (json_int_t)app->state->version);
    if (app->triggers_queued != triggers_before) /* alerts fired: answer once they are durable */
        rta_alerts_answer_when_durable(app, req, answer);
    else
        rta_http_send_json(req, 200, answer);
}

/* ---- GET /v1/events ---- */

static int parse_u64_param(rta_http_req *req, const char *name, uint64_t max, uint64_t *out)
{
    char buf[32];
    if (rta_http_query_param(req, name, buf, sizeof buf) == NULL)
        return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || *end != '\0' || buf[0] == '-' || v > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected an integer in [0, %llu]", (unsigned long long)max);
        char path[64];
        snprintf(path, sizeof path, "query.%s", name);
        rta_app_validation_error(
            req, json_pack("[{s:s,s:s,s:s}]", "path", path, "rule", "range", "message", msg));
        return -1;
    }
    *out = v;
    return 1;
}

void api_events(rta_app *app, rta_http_req *req)
{
    uint64_t after = 0, limit = 100;
    if (parse_u64_param(req, "after", UINT64_MAX / 2, &after) < 0 ||
        parse_u64_param(req, "limit", 1000, &limit) < 0)
        return;
    if (limit == 0) {
        rta_app_validation_error(req,
                                 json_pack("[{s:s,s:s,s:s}]", "path", "query.limit", "rule",
                                           "range", "message", "expected an integer in [1, 1000]"));
        return;
    }
    rta_event *evs[1000];
    int complete = 1;
    size_t n = rta_event_log_read(app->event_log, after, evs, (size_t)limit, &complete);
    rta_dbuf out;
    rta_dbuf_init(&out, 256u << 20);
    rta_dbuf_puts(&out, "{\"data\":[");
    for (size_t i = 0; i < n; i++) {
        rta_rbuf *j = rta_event_json(evs[i]);
        if (i)
            rta_dbuf_puts(&out, ",");
        rta_dbuf_append(&out, j->data, j->len);
    }
    rta_dbuf_printf(&out,
                    "],\"meta\":{\"returned\":%zu,\"complete\":%s,\"firstOffset\":%llu,"
                    "\"lastOffset\":%llu,\"nextAfter\":%llu}}",
                    n, complete ? "true" : "false",
                    (unsigned long long)rta_event_log_first_offset(app->event_log),
                    (unsigned long long)rta_event_log_last_offset(app->event_log),
                    (unsigned long long)(n ? evs[n - 1]->offset : after));
    rta_http_send(req, 200, "application/json", out.data, out.len);
    rta_dbuf_free(&out);
}

/* ---- POST /v1/query/advanced ---- */

static void etag_for(const char *canonical, uint64_t version, char out[40])
{
    /* FNV-1a over the canonical query, mixed with the data version */
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = canonical; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    snprintf(out, 40, "\"%016llx-%llx\"", (unsigned long long)h, (unsigned long long)version);
}

static int etag_matches(const char *header, const char *etag)
{
    if (header == NULL)
        return 0;
    if (strcmp(header, "*") == 0)
        return 1;
    const char *p = strstr(header, etag);
    return p != NULL;
}

void api_query_advanced(rta_app *app, rta_http_req *req)
{
    uint64_t t0 = rta_mono_ns();
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    json_t *errors = NULL;
    rta_query *q = rta_query_parse(body, &errors);
    json_decref(body);
    if (q == NULL) {
        rta_app_validation_error(req, errors);
        return;
    }
    uint64_t version = app->state->version;
    const char *canon = rta_query_canonical(q);
    char etag[40];
    etag_for(canon, version, etag);
    rta_http_add_header(req, "ETag", etag);
    rta_http_add_header(req, "Cache-Control", "no-cache");
    if (etag_matches(rta_http_header_get(req, "If-None-Match"), etag)) {
        rta_counter_inc(rta_metrics_counter(app->m_query_cache, "result=\"not_modified\""));
        rta_query_free(q);
        rta_http_send(req, 304, NULL, NULL, 0);
        return;
    }
    size_t clen = 0;
    const char *cached = rta_query_cache_get(app->qcache, canon, version, &clen);
    int hit = cached != NULL;
    char *fresh = NULL;
    if (!hit) {
        uint64_t e0 = rta_mono_ns();
        /* the answer's text straight from the engine (what json_dumps of rta_query_exec_ctx's
         * object would give, without building it) */
        rta_dbuf tb;
        rta_dbuf_init(&tb, 512u << 20);
        if (rta_query_exec_text(q, app->state, app->qctx, rta_now_ms(), &tb) != 0)
            abort(); /* 512 MiB: 1000 rows never come close */
        rta_histogram_observe(app->m_query_exec, (double)(rta_mono_ns() - e0) / 1e9);
        /* cache data + aggregations + total/returned; meta is completed per answer */
        char *text = rta_dbuf_steal(&tb, &clen);
        rta_query_cache_put(app->qcache, canon, version, text, clen);
        fresh = text;
        cached = text;
    }
    rta_counter_inc(
        rta_metrics_counter(app->m_query_cache, hit ? "result=\"hit\"" : "result=\"miss\""));
    /* The stored text ends with ...,"meta":{"total":n,"returned":k}} : splice in the rest. */
    double took = (double)(rta_mono_ns() - t0) / 1e6;
    rta_dbuf out;
    rta_dbuf_init(&out, 512u << 20);
    if (clen >= 2 && cached[clen - 1] == '}' && cached[clen - 2] == '}') {
        rta_dbuf_append(&out, cached, clen - 2);
        rta_dbuf_printf(&out, ",\"cached\":%s,\"dataVersion\":%llu,\"tookMs\":%.3f%s}}",
                        hit ? "true" : "false", (unsigned long long)version, took,
                        app->sim ? ",\"simulated\":true" : "");
    } else {
        rta_dbuf_append(&out, cached, clen);
    }
    rta_query_free(q);
    free(fresh);
    rta_http_send(req, 200, "application/json", out.data, out.len);
    rta_dbuf_free(&out);
}

/* ---- protocols, chains, prices ---- */

static json_t *iso_ms(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[40];
    rta_time_iso8601(ms, buf, sizeof buf);
    return json_string(buf);
}

static void add_changes(json_t *obj, double c1h, double c24h, double c7d)
{
    json_object_set_new(obj, "change_1h", rta_json_number_or_null(c1h));
    json_object_set_new(obj, "change_24h", rta_json_number_or_null(c24h));
    json_object_set_new(obj, "change_7d", rta_json_number_or_null(c7d));
}

static json_t *protocol_summary(const rta_protocol *p, int64_t now)
{
    json_t *chains = json_array();
    for (size_t i = 0; i < p->npairs; i++)
        json_array_append_new(chains, json_string(p->pairs[i]->chain->name));
    json_t *o = json_pack("{s:s,s:s,s:s,s:f,s:o}", "protocol", p->slug, "name", p->name, "category",
                          p->category, "tvl", p->total_tvl, "chains", chains);
    add_changes(o, rta_protocol_change(p, 3600, now), rta_protocol_change(p, 86400, now),
                rta_protocol_change(p, 604800, now));
    json_object_set_new(o, "updatedAt", iso_ms(p->updated_ms));
    return o;
}

static int cmp_protocol_tvl_desc(const void *a, const void *b)
{
    const rta_protocol *x = *(rta_protocol *const *)a, *y = *(rta_protocol *const *)b;
    if (x->total_tvl != y->total_tvl)
        return x->total_tvl < y->total_tvl ? 1 : -1;
    return strcmp(x->slug, y->slug);
}

void api_protocols_list(rta_app *app, rta_http_req *req)
{
    char category[80], chain[140];
    uint64_t limit = 100, offset = 0;
    if (parse_u64_param(req, "limit", 1000, &limit) < 0 ||
        parse_u64_param(req, "offset", 1000000, &offset) < 0)
        return;
    const char *cat = rta_http_query_param(req, "category", category, sizeof category);
    const char *ch = rta_http_query_param(req, "chain", chain, sizeof chain);
    rta_state *st = app->state;
    rta_protocol **sel = rta_xmalloc((st->nprotocols + 1) * sizeof *sel);
    size_t n = 0;
    for (size_t i = 0; i < st->nprotocols; i++) {
        rta_protocol *p = st->protocols[i];
        if (cat && strcmp(p->category, cat) != 0)
            continue;
        if (ch) {
            size_t j = 0;
            while (j < p->npairs && strcmp(p->pairs[j]->chain->name, ch) != 0)
                j++;
            if (j == p->npairs)
                continue;
        }
        sel[n++] = p;
    }
    qsort(sel, n, sizeof *sel, cmp_protocol_tvl_desc);
    int64_t now = rta_now_ms();
    json_t *data = json_array();
    for (size_t i = (size_t)offset; i < n && i < offset + limit; i++)
        json_array_append_new(data, protocol_summary(sel[i], now));
    free(sel);
    json_t *meta =
        json_pack("{s:I,s:I,s:I}", "total", (json_int_t)n, "returned",
                  (json_int_t)json_array_size(data), "dataVersion", (json_int_t)st->version);
    if (app->sim)
        json_object_set_new(meta, "simulated", json_true());
    rta_http_send_json(req, 200, json_pack("{s:o,s:o}", "data", data, "meta", meta));
}

void api_protocol_get(rta_app *app, rta_http_req *req)
{
    const char *slug = req->params[0];
    rta_protocol *p = rta_state_find_protocol(app->state, slug);
    if (p == NULL) {
        rta_http_send_error(req, 404, "protocol_not_found", "no protocol with this slug",
                            json_pack("{s:s}", "protocol", slug));
        return;
    }
    int64_t now = rta_now_ms();
    json_t *o = protocol_summary(p, now);
    json_t *chains = json_array();
    for (size_t i = 0; i < p->npairs; i++) {
        const rta_pair *pr = p->pairs[i];
        json_t *c = json_pack("{s:s,s:f}", "chain", pr->chain->name, "tvl", pr->tvl);
        add_changes(c, rta_pair_change(pr, 3600, now), rta_pair_change(pr, 86400, now),
                    rta_pair_change(pr, 604800, now));
        json_object_set_new(c, "timestamp", iso_ms(pr->data_ts_ms));
        json_object_set_new(c, "updatedAt", iso_ms(pr->updated_ms));
        json_array_append_new(chains, c);
    }
    json_object_set_new(o, "chains", chains);
    if (app->sim)
        json_object_set_new(o, "simulated", json_true());
    rta_http_send_json(req, 200, o);
}

void api_chains_list(rta_app *app, rta_http_req *req)
{
    rta_state *st = app->state;
    json_t *data = json_array();
    for (size_t i = 0; i < st->nchains; i++) {
        const rta_chain *c = st->chains[i];
        json_array_append_new(data,
                              json_pack("{s:s,s:f,s:I}", "chain", c->name, "tvl", c->total_tvl,
                                        "protocols", (json_int_t)c->nprotocols));
    }
    json_t *meta = json_pack("{s:I}", "total", (json_int_t)st->nchains);
    if (app->sim)
        json_object_set_new(meta, "simulated", json_true());
    rta_http_send_json(req, 200, json_pack("{s:o,s:o}", "data", data, "meta", meta));
}

void api_price_get(rta_app *app, rta_http_req *req)
{
    const char *id = req->params[0];
    rta_token *t = rta_state_find_token(app->state, id);
    if (t == NULL) {
        rta_http_send_error(req, 404, "token_not_found", "no price for this token",
                            json_pack("{s:s}", "token", id));
        return;
    }
    int64_t now = rta_now_ms();
    json_t *o = json_pack("{s:s,s:s,s:f,s:f}", "token", t->id, "symbol", t->symbol, "price",
                          t->price, "confidence", t->confidence);
    add_changes(o, rta_token_change(t, 3600, now), rta_token_change(t, 86400, now),
                rta_token_change(t, 604800, now));
    json_object_set_new(o, "timestamp", iso_ms(t->data_ts_ms));
    json_object_set_new(o, "updatedAt", iso_ms(t->updated_ms));
    if (app->sim)
        json_object_set_new(o, "simulated", json_true());
    rta_http_send_json(req, 200, o);
}
