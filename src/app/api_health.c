/* /healthz, /readyz and /metrics. */
#include "app_internal.h"
#include "rta/sio_server.h"
#include "rta/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void api_healthz(rta_app *app, rta_http_req *req)
{
    rta_http_send_json(req, 200,
                       json_pack("{s:s,s:I}", "status", app->shutting_down ? "stopping" : "ok",
                                 "uptimeSeconds",
                                 (json_int_t)((rta_now_ms() - app->started_ms) / 1000)));
}

typedef struct ping_job {
    rta_store_job job;
    rta_http_req *req;
    uint64_t start_ns;
} ping_job;

static void ping_work(rta_store *s, rta_store_job *job)
{
    job->status = s->ops->ping(s->db);
}

static void ping_done(rta_store_job *job)
{
    ping_job *pj = (ping_job *)job;
    double ms = (double)(rta_mono_ns() - pj->start_ns) / 1e6;
    if (job->status == 0)
        rta_http_send_json(pj->req, 200,
                           json_pack("{s:s,s:{s:s,s:f}}", "status", "ready", "store", "status",
                                     "ok", "latencyMs", ms));
    else
        rta_http_send_error(pj->req, 503, "store_unavailable", "the store does not answer",
                            json_pack("{s:s}", "store", "error"));
    free(pj);
}

void api_readyz(rta_app *app, rta_http_req *req)
{
    if (app->shutting_down) {
        rta_http_send_error(req, 503, "shutting_down", "rtad is shutting down", NULL);
        return;
    }
    ping_job *pj = rta_xcalloc(1, sizeof *pj);
    pj->job.work = ping_work;
    pj->job.done = ping_done;
    pj->job.op = "ping";
    pj->req = req;
    pj->start_ns = rta_mono_ns();
    if (rta_store_submit(app->store, &pj->job) != 0) {
        free(pj);
        rta_http_send_error(req, 503, "store_busy", "the store queue is full", NULL);
    }
}

static double process_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    long pages_total = 0, pages_rss = 0;
    int n = fscanf(f, "%ld %ld", &pages_total, &pages_rss);
    fclose(f);
    return n == 2 ? (double)pages_rss * (double)sysconf(_SC_PAGESIZE) : 0;
}

static void breaker_gauge(void *ud, const char *host, int state)
{
    char esc[256], labels[320];
    rta_metrics_escape_label(host, esc, sizeof esc);
    snprintf(labels, sizeof labels, "host=\"%s\"", esc);
    rta_gauge_set(rta_metrics_gauge((rta_metric_family *)ud, labels), state);
}

/* Sets a counter to a module's running total (the modules count; /metrics mirrors). */
static void counter_mirror(rta_metric_family *fam, const char *labels, uint64_t total)
{
    rta_counter *c = rta_metrics_counter(fam, labels);
    rta_counter_add(c, (double)total - rta_counter_value(c));
}

void api_metrics(rta_app *app, rta_http_req *req)
{
    /* point-in-time gauges are refreshed here rather than on every change */
    static rta_metric_family *g_rss, *g_conns, *g_state, *g_log, *g_store_q, *g_keys, *g_net,
        *g_version, *g_offset, *g_rules, *g_breaker, *g_outbox;
    if (g_rss == NULL) {
        g_rss = rta_metrics_gauge_family("rta_process_resident_memory_bytes", "Resident set size");
        g_conns = rta_metrics_gauge_family("rta_connections_open", "Open TCP connections");
        g_state = rta_metrics_gauge_family("rta_state_series", "Series held in memory, by kind");
        g_log = rta_metrics_gauge_family("rta_event_log_events", "Events held in the event log");
        g_store_q = rta_metrics_gauge_family("rta_store_queue_jobs", "Store jobs pending");
        g_keys = rta_metrics_gauge_family("rta_api_keys", "API keys known (revoked included)");
        g_net = rta_metrics_counter_family("rta_connections_total",
                                           "Connections accepted or refused, by result");
        g_version = rta_metrics_gauge_family("rta_state_version", "Data version of the state");
        g_offset = rta_metrics_gauge_family("rta_event_offset", "Offset of the last event");
        g_rules = rta_metrics_gauge_family("rta_alert_rules", "Alert rules, by state");
        g_breaker = rta_metrics_gauge_family(
            "rta_notify_breaker_state", "Circuit breaker per host: 0 closed, 1 open, 2 half-open");
        g_outbox =
            rta_metrics_gauge_family("rta_alert_deliveries_in_flight", "Deliveries being sent now");
    }
    size_t nrules = rta_alert_engine_count(app->alerts),
           nactive = rta_alert_engine_active(app->alerts);
    rta_gauge_set(rta_metrics_gauge(g_rules, "state=\"active\""), (double)nactive);
    rta_gauge_set(rta_metrics_gauge(g_rules, "state=\"inactive\""), (double)(nrules - nactive));
    rta_gauge_set(rta_metrics_gauge(g_outbox, ""), (double)app->outbox_in_flight);
    if (app->notify)
        rta_notify_each_breaker(app->notify, breaker_gauge, g_breaker);
    const rta_net_stats *ns = rta_net_get_stats(app->net);
    rta_gauge_set(rta_metrics_gauge(g_rss, ""), process_rss_bytes());
    rta_gauge_set(rta_metrics_gauge(g_conns, ""), (double)ns->open);
    rta_gauge_set(rta_metrics_gauge(g_state, "kind=\"pair\""), (double)app->state->npairs);
    rta_gauge_set(rta_metrics_gauge(g_state, "kind=\"protocol\""), (double)app->state->nprotocols);
    rta_gauge_set(rta_metrics_gauge(g_state, "kind=\"chain\""), (double)app->state->nchains);
    rta_gauge_set(rta_metrics_gauge(g_state, "kind=\"token\""), (double)app->state->ntokens);
    rta_gauge_set(rta_metrics_gauge(g_log, ""), (double)rta_event_log_count(app->event_log));
    rta_gauge_set(rta_metrics_gauge(g_store_q, ""), (double)rta_store_pending(app->store));
    rta_gauge_set(rta_metrics_gauge(g_keys, ""), (double)rta_keyring_count(app->keys));
    rta_gauge_set(rta_metrics_gauge(g_version, ""), (double)app->state->version);
    rta_gauge_set(rta_metrics_gauge(g_offset, ""), (double)rta_bus_last_offset(app->bus));
    counter_mirror(g_net, "result=\"accepted\"", ns->accepted);
    counter_mirror(g_net, "result=\"refused_limit\"", ns->refused_limit);
    counter_mirror(g_net, "result=\"refused_no_fds\"", ns->refused_fds);
    counter_mirror(g_net, "result=\"tls_handshake_failed\"", ns->tls_handshake_failures);
    static rta_metric_family *g_net_bytes;
    if (g_net_bytes == NULL)
        g_net_bytes = rta_metrics_counter_family("rta_network_bytes_total",
                                                 "Bytes read and written on all connections");
    counter_mirror(g_net_bytes, "direction=\"in\"", ns->bytes_in);
    counter_mirror(g_net_bytes, "direction=\"out\"", ns->bytes_out);
    static rta_metric_family *g_net_writes;
    if (g_net_writes == NULL)
        g_net_writes = rta_metrics_counter_family(
            "rta_network_writes_total",
            "Socket writes (one writev each); path=deferred: the socket did not take it all at "
            "once and the rest waited for it to become writable");
    counter_mirror(g_net_writes, "path=\"immediate\"", ns->writes - ns->writes_deferred);
    counter_mirror(g_net_writes, "path=\"deferred\"", ns->writes_deferred);
    static rta_metric_family *g_wjobs;
    if (g_wjobs == NULL)
        g_wjobs = rta_metrics_gauge_family("rta_network_write_jobs",
                                           "Writes handed to the writer threads and not yet back");
    rta_gauge_set(rta_metrics_gauge(g_wjobs, ""), (double)rta_net_write_jobs(app->net));

    /* Engine.IO / Socket.IO protocol counters, mirrored from the server's stats */
    static rta_metric_family *g_sio, *g_sio_sessions, *g_sio_deflate;
    if (g_sio == NULL) {
        g_sio = rta_metrics_counter_family("rta_socketio_total",
                                           "Engine.IO/Socket.IO protocol counters, by kind");
        g_sio_sessions =
            rta_metrics_gauge_family("rta_socketio_sessions", "Engine.IO sessions, by transport");
        g_sio_deflate = rta_metrics_gauge_family(
            "rta_socketio_deflate_sessions",
            "Engine.IO WebSocket sessions that negotiated permessage-deflate");
    }
    const rta_sio_stats *ss = rta_rt_sio_stats(app->rt);
    struct {
        const char *labels;
        uint64_t v;
    } sio_counts[] = {
        {"kind=\"packets_in\"", ss->packets_in},
        {"kind=\"packets_out\"", ss->packets_out},
        {"kind=\"bytes_in\"", ss->bytes_in},
        {"kind=\"bytes_out\"", ss->bytes_out},
        {"kind=\"upgrades\"", ss->upgrades},
        {"kind=\"ping_timeouts\"", ss->ping_timeouts},
        {"kind=\"protocol_errors\"", ss->protocol_errors},
    };
    for (size_t i = 0; i < sizeof sio_counts / sizeof sio_counts[0]; i++) {
        counter_mirror(g_sio, sio_counts[i].labels, sio_counts[i].v);
    }
    rta_gauge_set(rta_metrics_gauge(g_sio_sessions, "transport=\"polling\""),
                  (double)ss->sessions_polling);
    rta_gauge_set(rta_metrics_gauge(g_sio_sessions, "transport=\"websocket\""),
                  (double)ss->sessions_websocket);
    rta_gauge_set(rta_metrics_gauge(g_sio_deflate, ""), (double)ss->sessions_websocket_deflate);

    rta_dbuf out;
    rta_dbuf_init(&out, 64u << 20);
    if (rta_metrics_render(&out) != 0) {
        rta_dbuf_free(&out);
        rta_http_send_error(req, 500, "metrics_too_large", "the metrics text exceeds 64 MiB", NULL);
        return;
    }
    rta_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    rta_dbuf_free(&out);
}
