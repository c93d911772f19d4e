/*
 * Private to src/app: the rta_app struct and the handler signatures shared by the API files.
 */
#ifndef RTA_APP_INTERNAL_H
#define RTA_APP_INTERNAL_H

#include "rta/app.h"
#include "rta/alert.h"
#include "rta/metrics.h"
#include "rta/notify.h"
#include "rta/realtime.h"
#include "rta/simulator.h"

#include <jansson.h>

typedef struct dirty_entry dirty_entry;
typedef struct prefs_entry prefs_entry;
typedef struct disabled_target disabled_target;

struct rta_app {
    uv_loop_t *loop;
    rta_config *cfg;
    rta_store *store;
    rta_keyring *keys;
    rta_state *state;
    rta_event_log *event_log;
    rta_bus *bus;
    rta_query_cache *qcache;
    rta_query_ctx *qctx; /* compact copies of the state the query engine scans */
    rta_net *net;
    rta_http_server *http;
    SSL_CTX *ssl_ctx;
    rta_sim *sim;
    rta_rt *rt; /* realtime API: Socket.IO + plain WebSocket clients */
    int64_t started_ms;

    uv_timer_t sim_timer;
    uv_timer_t persist_timer;
    uv_timer_t keys_timer;
    uv_timer_t housekeeping_timer;
    uv_timer_t shutdown_timer;
    uv_signal_t sigterm, sigint, sighup;
    double sim_carry; /* fractional updates owed by the simulator timer */
    int shutting_down;
    int64_t shutdown_deadline_ms;
    int persist_inflight; /* a flush job is queued: do not start another */
    int keys_inflight;
    /* alert data retention (retention.c) */
    int retention_inflight;
    int retention_more; /* the last prune used its whole budget: run again soon */
    int64_t retention_last_ms;
    rta_metric_family *m_alerts_pruned;
    rta_metric_family *m_audit_pruned;

    /* write-behind of changed series (see persist.c) */
    dirty_entry *dirty; /* uthash set of series changed since the last flush */
    size_t ndirty;

    /* alerting (alerts.c) */
    rta_alert_engine *alerts;
    rta_notify *notify;
    uv_timer_t outbox_timer;
    uv_timer_t batch_timer;   /* flushes the outbox writes of a loop turn */
    void *outbox_batch;       /* outbox writes not yet submitted (alerts.c) */
    uint64_t triggers_queued; /* triggers ever decided (ingest waits for its own) */
    prefs_entry *prefs;       /* user preferences cache (uthash) */
    disabled_target *disabled_targets;
    size_t outbox_in_flight;
    int outbox_claiming;
    rta_counter *m_evaluations;
    rta_metric_family *m_triggers, *m_notifications, *m_retries, *m_dead, *m_delivery_latency;

    /* metrics */
    rta_metric_family *m_requests, *m_request_seconds, *m_ingest_items, *m_events, *m_query_cache,
        *m_rate_limited, *m_store_seconds, *m_auth_failures, *m_store_errors;
    rta_histogram *m_query_exec;
};

/* routes.c */
void rta_app_handle_request(void *ud, rta_http_req *req);
void rta_app_observe_request(void *ud, const rta_http_req *req);
void rta_app_metrics_init(rta_app *app);

/* api_*.c handlers */
typedef void (*rta_app_handler)(rta_app *app, rta_http_req *req);
void api_healthz(rta_app *app, rta_http_req *req);
void api_readyz(rta_app *app, rta_http_req *req);
void api_metrics(rta_app *app, rta_http_req *req);
void api_keys_create(rta_app *app, rta_http_req *req);
void api_keys_list(rta_app *app, rta_http_req *req);
void api_keys_revoke(rta_app *app, rta_http_req *req);
void api_audit_list(rta_app *app, rta_http_req *req);
void api_ingest(rta_app *app, rta_http_req *req);
void api_events(rta_app *app, rta_http_req *req);
void api_query_advanced(rta_app *app, rta_http_req *req);
void api_protocols_list(rta_app *app, rta_http_req *req);
void api_protocol_get(rta_app *app, rta_http_req *req);
void api_chains_list(rta_app *app, rta_http_req *req);
void api_price_get(rta_app *app, rta_http_req *req);

/* helpers shared by handlers (routes.c) */
/* Parses the JSON body; on failure answers 400 invalid_json and returns NULL. */
json_t *rta_app_body_json(rta_http_req *req);
void rta_app_validation_error(rta_http_req *req, json_t *errors /* stolen */);
/* Key id of the caller or "anonymous". */
const char *rta_app_actor(const rta_http_req *req);
/* Number or null for NaN. */
json_t *rta_json_number_or_null(double v);
/* Audit entry through the store executor (fire and forget). */
void rta_app_audit(rta_app *app, const rta_http_req *req, const char *action, const char *target,
                   json_t *details);

/* ingest path shared by REST ingest and the simulator (engine glue, api_market.c) */
typedef struct rta_ingest_counts {
    size_t accepted, changed, unchanged, stale, events;
    uint64_t first_offset, last_offset;
} rta_ingest_counts;
void rta_app_apply_tvl(rta_app *app, const rta_tvl_update *u, const char *source,
                       rta_ingest_counts *counts);
void rta_app_apply_price(rta_app *app, const rta_price_update *u, const char *source,
                         rta_ingest_counts *counts);

/* retention.c: pruning of old alert data (alerts.retention_days) */
void rta_retention_init(rta_app *app);
/* Called every housekeeping tick: submits a prune job every 10 minutes, or at once while the
 * previous one left work behind. */
void rta_retention_tick(rta_app *app);

/* persist.c */
void rta_persist_mark_pair(rta_app *app, rta_pair *p);
void rta_persist_mark_token(rta_app *app, rta_token *t);
void rta_persist_mark_protocol(rta_app *app, rta_protocol *p);
/* Queues a flush job; final = 1 at shutdown (flush even if one is in flight). */
void rta_persist_flush(rta_app *app, int final);
/* Loads state from the store (startup, synchronous). */
int rta_persist_load(rta_app *app);
void rta_persist_free(rta_app *app);

/* alerts.c */
int rta_alerts_init(rta_app *app);   /* loads rules, states, prefs; creates channels */
void rta_alerts_start(rta_app *app); /* starts the outbox worker */
void rta_alerts_stop(rta_app *app);
void rta_alerts_flush(rta_app *app); /* submits pending outbox writes now */
/* Answers req with answer (stolen) once the outbox writes queued so far are committed: an
 * ingest that triggered alerts is acknowledged only when its notifications are durable. */
void rta_alerts_answer_when_durable(rta_app *app, rta_http_req *req, json_t *answer);
void rta_alerts_free(rta_app *app);
void rta_alerts_on_event(void *app, rta_event *e);           /* bus subscriber */
void rta_alerts_kick(rta_app *app);                          /* claim due deliveries now */
json_t *rta_alerts_prefs(rta_app *app, const char *user_id); /* borrowed or NULL */
void rta_alerts_prefs_set(rta_app *app, const char *user_id, json_t *prefs); /* stolen */
int rta_alerts_valid_timezone(const char *tz);
int rta_alerts_target_disabled(rta_app *app, const char *channel, const char *target);

/* api_alerts.c */
void api_rules_create(rta_app *app, rta_http_req *req);
void api_rules_list(rta_app *app, rta_http_req *req);
void api_rule_get(rta_app *app, rta_http_req *req);
void api_rule_replace(rta_app *app, rta_http_req *req);
void api_rule_patch(rta_app *app, rta_http_req *req);
void api_rule_delete(rta_app *app, rta_http_req *req);
void api_rule_history(rta_app *app, rta_http_req *req);
void api_deliveries_list(rta_app *app, rta_http_req *req);
void api_delivery_get(rta_app *app, rta_http_req *req);
void api_delivery_retry(rta_app *app, rta_http_req *req);
void api_prefs_get(rta_app *app, rta_http_req *req);
void api_prefs_put(rta_app *app, rta_http_req *req);

/* keys_sync.c */
int rta_app_keys_load_sync(rta_app *app);
int rta_app_keys_bootstrap(rta_app *app);
void rta_app_keys_refresh(rta_app *app);

#endif
