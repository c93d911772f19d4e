/*
 * rtad configuration: one table of options, each settable from (lowest to highest precedence)
 * built-in defaults, an INI file (--config FILE, parsed with inih), environment variables and
 * command-line flags.
 *
 *   file:   [section] key = value           e.g. [server] listen = 0.0.0.0:8080
 *   env:    RTA_<SECTION>_<KEY>             e.g. RTA_SERVER_LISTEN; options of [server] also
 *           answer to RTA_<KEY> (RTA_LISTEN, RTA_DATA_DIR)
 *   flags:  --listen, --data-dir, --simulate, --log-level, and --set section.key=value
 *
 * docs/configuration.md lists every option; rtad --print-config shows the effective values
 * with secrets masked.
 */
#ifndef RTA_CONFIG_H
#define RTA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rta/auth.h"

typedef struct rta_config {
    char *config_path; /* --config FILE, NULL when none (not an option itself) */
    /* [server] */
    char *listen; /* HOST:PORT */
    char *data_dir;
    char *log_level;
    int64_t max_connections;
    int64_t write_threads; /* WebSocket writes off the loop thread; 0 = on it */
    int64_t max_header_bytes;
    int64_t max_body_bytes;
    int64_t header_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t body_timeout_ms;
    int64_t shutdown_timeout_ms;
    char *cors_origins; /* "*" or comma-separated origins; "" = CORS off */
    char *admin_key;    /* RTA_ADMIN_KEY bootstrap (secret) */
    /* [tls] */
    char *tls_listen; /* "" = no TLS listener */
    char *tls_cert;
    char *tls_key;
    char *tls_min_version; /* "1.3" (default) or "1.2" */
    /* [store] */
    char *store_kind; /* "sqlite" */
    char *store_path; /* default <data_dir>/rta.db */
    int64_t store_max_queue;
    int64_t persist_interval_ms;
    int64_t history_retention_s;
    /* [ingest] */
    int64_t ingest_max_items;
    /* [events] */
    double events_min_change;
    int64_t events_log_max;
    int64_t events_log_max_age_s;
    /* [query] */
    int64_t query_cache_entries;
    int64_t query_cache_bytes;
    /* [simulator] */
    bool sim_enabled;
    int64_t sim_seed;
    int64_t sim_protocols;
    int64_t sim_chains;
    int64_t sim_pairs;
    int64_t sim_tokens;
    double sim_updates_per_sec;
    /* [realtime] */
    int64_t rt_max_subscriptions;
    int64_t rt_max_queued_bytes;
    char *rt_slow_consumer;      /* "disconnect" | "drop" */
    char *rt_threshold_min_tier; /* lowest tier allowed tvl_changes / price_changes */
    int64_t rt_recovery_window_ms;
    int64_t rt_ws_idle_timeout_ms;
    int64_t rt_ping_interval_ms;
    int64_t rt_ping_timeout_ms;
    bool rt_permessage_deflate;     /* plain WebSocket compression (RFC 7692) */
    bool rt_sio_permessage_deflate; /* the same for Socket.IO's WebSocket transport */
    /* [alerts] */
    char *alert_retry_schedule; /* seconds between attempts, comma-separated */
    int64_t alert_lease_ms;
    int64_t alert_poll_ms;
    int64_t alert_max_in_flight;
    char *public_url;             /* base URL for links in notifications */
    int64_t alert_retention_days; /* finished deliveries and old triggers kept this long */
    int64_t audit_retention_days; /* audit log entries kept this long */
    /* [webhooks] */
    int64_t webhook_timeout_ms;
    bool webhook_allow_private;
    /* [smtp] */
    char *smtp_url; /* "" = email off */
    bool smtp_starttls;
    bool smtp_insecure;
    char *smtp_user;
    char *smtp_password; /* secret */
    char *smtp_from;
    /* [push] */
    char *fcm_base_url;
    char *fcm_project; /* "" = push off */
    char *fcm_token;   /* secret */
    /* [tiers.*] */
    rta_tier tiers[RTA_TIER_COUNT];
} rta_config;

/* Fills defaults. */
void rta_config_init(rta_config *cfg);
void rta_config_free(rta_config *cfg);

/* Sets "section.key" (or the flag name) to a textual value. Returns 0, or -1 and writes a
 * message to err (unknown option, bad number). */
int rta_config_set(rta_config *cfg, const char *section, const char *key, const char *value,
                   char *err, size_t errlen);
/* Loads an INI file. 0 or -1 with err. */
int rta_config_load_file(rta_config *cfg, const char *path, char *err, size_t errlen);
/* Applies RTA_* environment variables. 0 or -1 with err. */
int rta_config_load_env(rta_config *cfg, char *const *envp, char *err, size_t errlen);
/* Derived values (store path from data dir) and cross-field checks. 0 or -1 with err. */
int rta_config_finish(rta_config *cfg, char *err, size_t errlen);
/* Writes the effective configuration as INI text, secrets masked, to stdout. */
void rta_config_print(const rta_config *cfg);
/* Splits "host:port" / "[v6]:port". 0 or -1. */
int rta_config_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
