/*
 * rtad application lifecycle: build every part from the configuration, start listening and
 * the timers, and shut down gracefully. See rta/app.h.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SIM_TICK_MS 100
#define KEYS_REFRESH_MS 2000
#define HOUSEKEEPING_MS 1000

static void on_store_op(void *ud, const char *op, int status, uint64_t queued_ns, uint64_t work_ns)
{
    rta_app *app = ud;
    char labels[96];
    snprintf(labels, sizeof labels, "op=\"%s\"", op ? op : "other");
    rta_histogram_observe(rta_metrics_histogram(app->m_store_seconds, labels),
                          (double)(queued_ns + work_ns) / 1e9);
    if (status < 0)
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, labels));
}

static int make_dir(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static void sim_apply_tvl(void *ud, const rta_tvl_update *u)
{
    rta_app_apply_tvl(ud, u, "simulator", NULL);
}

static void sim_apply_price(void *ud, const rta_price_update *u)
{
    rta_app_apply_price(ud, u, "simulator", NULL);
}

static void sim_restore_tvl(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(((rta_app *)ud)->state, u);
}

static void sim_restore_price(void *ud, const rta_price_update *u)
{
    rta_state_restore_price(((rta_app *)ud)->state, u);
}

/* First start with the simulator: a universe with 7 days of hourly history, no events. */
static void sim_seed_state(rta_app *app)
{
    int64_t now = rta_now_ms();
    uint64_t t0 = rta_mono_ns();
    rta_sim_history(app->sim, now, 7 * 86400000LL, 3600000LL, sim_restore_tvl, sim_restore_price,
                    app);
    rta_sim_snapshot(app->sim, now, sim_restore_tvl, sim_restore_price, app);
    for (size_t i = 0; i < app->state->npairs; i++)
        rta_persist_mark_pair(app, app->state->pairs[i]);
    for (size_t i = 0; i < app->state->ntokens; i++)
        rta_persist_mark_token(app, app->state->tokens[i]);
    for (size_t i = 0; i < app->state->nprotocols; i++)
        rta_persist_mark_protocol(app, app->state->protocols[i]);
    rta_log(RTA_LOG_INFO, "simulated universe generated (data is SIMULATED, not real)",
            "{s:I,s:I,s:I,s:I,s:f}", "protocols", (json_int_t)app->state->nprotocols, "pairs",
            (json_int_t)app->state->npairs, "chains", (json_int_t)app->state->nchains, "tokens",
            (json_int_t)app->state->ntokens, "ms", (double)(rta_mono_ns() - t0) / 1e6);
}

rta_app *rta_app_init(rta_config *cfg, uv_loop_t *loop)
{
    rta_app *app = rta_xcalloc(1, sizeof *app);
    app->loop = loop;
    app->cfg = cfg;
    app->started_ms = rta_now_ms();
    rta_app_metrics_init(app);
    rta_retention_init(app);
    if (make_dir(cfg->data_dir) != 0) {
        rta_log(RTA_LOG_ERROR, "cannot create the data directory", "{s:s,s:s}", "data_dir",
                cfg->data_dir, "error", strerror(errno));
        goto fail;
    }
    char *err = NULL;
    app->store = rta_store_open(cfg->store_kind, cfg->store_path, &err);
    if (app->store == NULL) {
        rta_log(RTA_LOG_ERROR, "cannot open the store", "{s:s,s:s,s:s}", "kind", cfg->store_kind,
                "path", cfg->store_path, "error", err ? err : "unknown");
        free(err);
        goto fail;
    }
    app->keys = rta_keyring_new();
    if (rta_app_keys_load_sync(app) != 0 || rta_app_keys_bootstrap(app) != 0)
        goto fail;
    rta_state_options so = {.min_change = cfg->events_min_change};
    app->state = rta_state_new(&so);
    app->event_log =
        rta_event_log_new((size_t)cfg->events_log_max, cfg->events_log_max_age_s * 1000);
    app->bus = rta_bus_new(app->event_log);
    app->qcache =
        rta_query_cache_new((size_t)cfg->query_cache_entries, (size_t)cfg->query_cache_bytes);
    app->qctx = rta_query_ctx_new();
    rta_rt_options ro;
    rta_rt_options_default(&ro);
    ro.max_subscriptions = (size_t)cfg->rt_max_subscriptions;
    ro.max_queued_bytes = (size_t)cfg->rt_max_queued_bytes;
    ro.slow_consumer_drop = strcmp(cfg->rt_slow_consumer, "drop") == 0;
    ro.threshold_min_tier = cfg->rt_threshold_min_tier;
    ro.recovery_window_ms = (uint64_t)cfg->rt_recovery_window_ms;
    ro.ws_idle_timeout_ms = (uint64_t)cfg->rt_ws_idle_timeout_ms;
    ro.ping_interval_ms = (uint64_t)cfg->rt_ping_interval_ms;
    ro.ping_timeout_ms = (uint64_t)cfg->rt_ping_timeout_ms;
    ro.permessage_deflate = cfg->rt_permessage_deflate;
    ro.sio_permessage_deflate = cfg->rt_sio_permessage_deflate;
    ro.tiers = cfg->tiers;
    app->rt = rta_rt_new(loop, &ro, app->keys, app->event_log, app->store, cfg->cors_origins);
    rta_bus_subscribe(app->bus, rta_rt_on_event, app->rt);
    if (rta_persist_load(app) != 0) {
        rta_log(RTA_LOG_ERROR, "cannot load the state from the store", NULL);
        goto fail;
    }
    if (rta_alerts_init(app) != 0) {
        rta_log(RTA_LOG_ERROR, "cannot load the alert rules from the store", NULL);
        goto fail;
    }
    rta_bus_subscribe(app->bus, rta_alerts_on_event, app);
    if (cfg->sim_enabled) {
        rta_sim_options so2 = {
            .seed = (uint64_t)cfg->sim_seed,
            .protocols = (size_t)cfg->sim_protocols,
            .chains = (size_t)cfg->sim_chains,
            .pairs = (size_t)cfg->sim_pairs,
            .tokens = (size_t)cfg->sim_tokens,
        };
        app->sim = rta_sim_new(&so2);
        if (app->state->npairs == 0)
            sim_seed_state(app);
    }
    return app;
fail:
    rta_app_free(app);
    return NULL;
}

static void on_sim_tick(uv_timer_t *t)
{
    rta_app *app = t->data;
    app->sim_carry += app->cfg->sim_updates_per_sec * SIM_TICK_MS / 1000.0;
    size_t n = (size_t)app->sim_carry;
    app->sim_carry -= (double)n;
    if (n > 0)
        rta_sim_step(app->sim, n, rta_now_ms(), sim_apply_tvl, sim_apply_price, app);
}

static void on_persist_tick(uv_timer_t *t)
{
    rta_app *app = t->data;
    if (app->ndirty > 0)
        rta_persist_flush(app, 0);
}

static void on_keys_tick(uv_timer_t *t)
{
    rta_app_keys_refresh(t->data);
}

static void on_housekeeping(uv_timer_t *t)
{
    rta_app *app = t->data;
    rta_event_log_trim(app->event_log, rta_now_ms());
    rta_retention_tick(app);
}

static void on_signal(uv_signal_t *s, int signum)
{
    rta_app *app = s->data;
    if (app->shutting_down) {
        rta_log(RTA_LOG_WARN, "second signal: closing connections now", NULL);
        app->cfg->shutdown_timeout_ms = 0;
        return;
    }
    rta_app_begin_shutdown(app, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_upgrade(void *ud, rta_http_req *req, rta_conn *conn, const char *leftover,
                       size_t len)
{
    rta_app *app = ud;
    if (app->shutting_down) {
        rta_http_send_error(req, 503, "shutting_down", "rtad is shutting down", NULL);
        return;
    }
    if (!rta_rt_handle_upgrade(app->rt, req, conn, leftover, len))
        rta_http_send_error(req, 404, "not_found", "no WebSocket endpoint at this path",
                            json_pack("{s:s}", "path", req->path));
}

/* SIGHUP: re-reads the config file and RTA_* environment and applies what can change at run
 * time: log level, tier limits, CORS origins, the minimum change to emit. Flags given at start
 * are not re-applied. Everything else needs a restart (logged). */
static void reload_config(rta_app *app)
{
    rta_config next;
    char err[512];
    rta_config_init(&next);
    int rc = 0;
    if (app->cfg->config_path)
        rc = rta_config_load_file(&next, app->cfg->config_path, err, sizeof err);
    if (rc == 0)
        rc = rta_config_load_env(&next, NULL, err, sizeof err);
    if (rc == 0)
        rc = rta_config_finish(&next, err, sizeof err);
    if (rc != 0 || rta_log_level_parse(next.log_level) < 0) {
        rta_log(RTA_LOG_ERROR, "config reload refused; keeping the running configuration", "{s:s}",
                "error", rc ? err : "server.log_level");
        rta_store_audit(app->store, "system", "config.reload", app->cfg->config_path, NULL, NULL,
                        json_pack("{s:b,s:s}", "applied", 0, "error", rc ? err : "log_level"));
        rta_config_free(&next);
        return;
    }
    json_t *changed = json_array();
    if (strcmp(next.log_level, app->cfg->log_level) != 0) {
        json_array_append_new(changed, json_string("server.log_level"));
        free(app->cfg->log_level);
        app->cfg->log_level = rta_strdup(next.log_level);
        rta_log_set_level((rta_log_level)rta_log_level_parse(next.log_level));
    }
    if (memcmp(next.tiers, app->cfg->tiers, sizeof next.tiers) != 0) {
        json_array_append_new(changed, json_string("tiers"));
        memcpy(app->cfg->tiers, next.tiers, sizeof next.tiers);
    }
    if (strcmp(next.cors_origins, app->cfg->cors_origins) != 0) {
        json_array_append_new(changed, json_string("server.cors_origins"));
        free(app->cfg->cors_origins);
        app->cfg->cors_origins = rta_strdup(next.cors_origins);
        rta_http_server_set_cors(app->http, next.cors_origins);
    }
    if (next.events_min_change != app->cfg->events_min_change) {
        json_array_append_new(changed, json_string("events.min_change"));
        app->cfg->events_min_change = next.events_min_change;
        app->state->opts.min_change = next.events_min_change;
    }
    rta_log(RTA_LOG_INFO, "config reloaded", "{s:O}", "changed", changed);
    rta_store_audit(app->store, "system", "config.reload", app->cfg->config_path, NULL, NULL,
                    json_pack("{s:b,s:o}", "applied", 1, "changed", changed));
    rta_config_free(&next);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    reload_config(s->data);
}

static void on_accept(void *ud, rta_conn *c)
{
    rta_app *app = ud;
    rta_http_server_accept(app->http, c);
}

static int listen_on(rta_app *app, const char *hostport, SSL_CTX *ctx)
{
    char host[256];
    int port;
    rta_config_split_hostport(hostport, host, sizeof host, &port);
    int rc = rta_net_listen(app->net, host, port, ctx);
    if (rc != 0) {
        rta_log(RTA_LOG_ERROR, "cannot listen", "{s:s,s:s}", "address", hostport, "error",
                uv_strerror(rc));
        return -1;
    }
    return 0;
}

int rta_app_start(rta_app *app)
{
    rta_config *cfg = app->cfg;
    if (rta_store_start(app->store, app->loop, (size_t)cfg->store_max_queue) != 0) {
        rta_log(RTA_LOG_ERROR, "cannot start the store thread", NULL);
        return -1;
    }
    rta_store_set_observer(app->store, on_store_op, app);
    rta_http_limits lim = {
        .max_header_bytes = (size_t)cfg->max_header_bytes,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .header_timeout_ms = (uint64_t)cfg->header_timeout_ms,
        .body_timeout_ms = (uint64_t)cfg->body_timeout_ms,
        .idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms,
    };
    app->http = rta_http_server_new(&lim, rta_app_handle_request, app);
    rta_http_server_set_observer(app->http, rta_app_observe_request);
    rta_http_server_set_upgrade(app->http, on_upgrade);
    rta_http_server_set_cors(app->http, cfg->cors_origins);
    app->net = rta_net_new(app->loop, (size_t)cfg->max_connections, on_accept, app);
    if (rta_net_set_writers(app->net, (unsigned)cfg->write_threads) != 0) {
        rta_log(RTA_LOG_ERROR, "cannot start writer threads", "{s:I}", "write_threads",
                (json_int_t)cfg->write_threads);
        return -1;
    }
    rta_rt_set_net(app->rt, app->net);
    if (listen_on(app, cfg->listen, NULL) != 0)
        return -1;
    if (cfg->tls_listen[0]) {
        char err[512];
        app->ssl_ctx =
            rta_tls_server_ctx(cfg->tls_cert, cfg->tls_key, cfg->tls_min_version, err, sizeof err);
        if (app->ssl_ctx == NULL) {
            rta_log(RTA_LOG_ERROR, "tls setup failed", "{s:s}", "error", err);
            return -1;
        }
        if (listen_on(app, cfg->tls_listen, app->ssl_ctx) != 0)
            return -1;
    }
    uv_timer_t *timers[] = {&app->sim_timer, &app->persist_timer, &app->keys_timer,
                            &app->housekeeping_timer, &app->shutdown_timer};
    for (size_t i = 0; i < RTA_ARRAY_LEN(timers); i++) {
        uv_timer_init(app->loop, timers[i]);
        timers[i]->data = app;
    }
    if (app->sim && cfg->sim_updates_per_sec > 0)
        uv_timer_start(&app->sim_timer, on_sim_tick, SIM_TICK_MS, SIM_TICK_MS);
    uv_timer_start(&app->persist_timer, on_persist_tick, (uint64_t)cfg->persist_interval_ms,
                   (uint64_t)cfg->persist_interval_ms);
    uv_timer_start(&app->keys_timer, on_keys_tick, KEYS_REFRESH_MS, KEYS_REFRESH_MS);
    uv_timer_start(&app->housekeeping_timer, on_housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
    rta_alerts_start(app);
    uv_signal_init(app->loop, &app->sigterm);
    uv_signal_init(app->loop, &app->sigint);
    app->sigterm.data = app->sigint.data = app;
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_init(app->loop, &app->sighup);
    app->sighup.data = app;
    uv_signal_start(&app->sighup, on_sighup, SIGHUP);

    char host[256];
    int port;
    rta_config_split_hostport(cfg->listen, host, sizeof host, &port);
    rta_log(RTA_LOG_INFO, "listening", "{s:s,s:i,s:s,s:s,s:s,s:b,s:i,s:s}", "host", host, "port",
            rta_net_bound_port(app->net), "tls_listen", cfg->tls_listen, "store", cfg->store_kind,
            "store_path", cfg->store_path, "simulator", app->sim != NULL, "write_threads",
            (int)rta_net_writers(app->net), "version", "0.1.0");
    return 0;
}

static void finish_shutdown(rta_app *app)
{
    uv_timer_stop(&app->shutdown_timer);
    rta_persist_flush(app, 1);
    rta_net_close_all(app->net);
    rta_alerts_stop(app);
    if (app->notify) { /* in-flight sends end as retries, recorded before the store closes */
        rta_notify_free(app->notify);
        app->notify = NULL;
    }
    rta_alerts_flush(app);
    /* Drains every queued job (the final flush included) and runs their done callbacks. */
    rta_store_close(app->store);
    app->store = NULL;
    uv_timer_t *timers[] = {&app->sim_timer, &app->persist_timer, &app->keys_timer,
                            &app->housekeeping_timer, &app->shutdown_timer};
    for (size_t i = 0; i < RTA_ARRAY_LEN(timers); i++)
        uv_close((uv_handle_t *)timers[i], NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
    rta_log(RTA_LOG_INFO, "shutdown complete", "{s:I}", "last_offset",
            (json_int_t)rta_bus_last_offset(app->bus));
}

/* Finishes once in-flight requests are answered and every connection (realtime clients
 * finishing their close handshakes included) has closed, or at the deadline. */
static void on_shutdown_check(uv_timer_t *t)
{
    rta_app *app = t->data;
    if (rta_rt_open_sessions(app->rt) == 0) /* realtime clients told: now idle conns can go */
        rta_http_server_drain(app->http, app->net);
    size_t inflight = rta_http_server_inflight(app->http);
    size_t open = rta_net_open_count(app->net);
    if ((inflight == 0 && open == 0) || rta_now_ms() >= app->shutdown_deadline_ms ||
        app->cfg->shutdown_timeout_ms == 0) {
        if (inflight > 0 || open > 0)
            rta_log(RTA_LOG_WARN, "shutdown timeout: closing what is left", "{s:I,s:I}", "inflight",
                    (json_int_t)inflight, "connections", (json_int_t)open);
        finish_shutdown(app);
    }
}

void rta_app_begin_shutdown(rta_app *app, const char *reason)
{
    if (app->shutting_down)
        return;
    app->shutting_down = 1;
    app->shutdown_deadline_ms = rta_now_ms() + app->cfg->shutdown_timeout_ms;
    rta_log(RTA_LOG_INFO, "shutdown", "{s:s,s:I,s:I}", "reason", reason, "inflight",
            (json_int_t)rta_http_server_inflight(app->http), "connections",
            (json_int_t)rta_net_open_count(app->net));
    rta_store_audit(app->store, "system", "server.shutdown", NULL, NULL, NULL,
                    json_pack("{s:s}", "reason", reason));
    rta_net_stop_listening(app->net);
    uv_timer_stop(&app->sim_timer);
    rta_rt_shutdown(app->rt);
    rta_http_server_set_draining(app->http, app->net);
    uv_timer_start(&app->shutdown_timer, on_shutdown_check, 0, 20);
}

void rta_app_free(rta_app *app)
{
    if (app == NULL)
        return;
    if (app->store)
        rta_store_close(app->store);
    rta_persist_free(app);
    rta_alerts_free(app);
    rta_rt_free(app->rt);
    if (app->sim)
        rta_sim_free(app->sim);
    if (app->qcache)
        rta_query_cache_free(app->qcache);
    if (app->qctx)
        rta_query_ctx_free(app->qctx);
    if (app->bus)
        rta_bus_free(app->bus);
    if (app->event_log)
        rta_event_log_free(app->event_log);
    if (app->state)
        rta_state_free(app->state);
    if (app->keys)
        rta_keyring_free(app->keys);
    if (app->http)
        rta_http_server_free(app->http);
    if (app->net)
        rta_net_free(app->net);
    if (app->ssl_ctx)
        SSL_CTX_free(app->ssl_ctx);
    rta_metrics_shutdown();
    free(app);
}
