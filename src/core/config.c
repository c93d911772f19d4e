/*
 * Configuration: one option table drives defaults, the INI file, RTA_* environment variables,
 * flags and --print-config, so the four can never disagree about names or types.
 */
#include "rta/config.h"
#include "rta/util.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_STR, OPT_INT, OPT_DOUBLE, OPT_BOOL } opt_type;

typedef struct {
    const char *section;
    const char *key;
    opt_type type;
    size_t offset;
    const char *def;
    int secret;
    int64_t min, max; /* integer bounds */
} option;

#define O(sec, k, t, field, d, lo, hi)                                                             \
    {                                                                                              \
        sec, k, t, offsetof(rta_config, field), d, 0, lo, hi                                       \
    }
#define S(sec, k, field, d)                                                                        \
    {                                                                                              \
        sec, k, OPT_STR, offsetof(rta_config, field), d, 0, 0, 0                                   \
    }

static const option options[] = {
    S("server", "listen", listen, "127.0.0.1:8080"),
    S("server", "data_dir", data_dir, "./var"),
    S("server", "log_level", log_level, "info"),
    O("server", "max_connections", OPT_INT, max_connections, "19000", 1, 1000000),
    O("server", "write_threads", OPT_INT, write_threads, "1", 0, 64),
    O("server", "max_header_bytes", OPT_INT, max_header_bytes, "16384", 1024, 1 << 20),
    O("server", "max_body_bytes", OPT_INT, max_body_bytes, "4194304", 1024, 256 << 20),
    O("server", "header_timeout_ms", OPT_INT, header_timeout_ms, "10000", 100, 3600000),
    O("server", "idle_timeout_ms", OPT_INT, idle_timeout_ms, "60000", 100, 86400000),
    O("server", "body_timeout_ms", OPT_INT, body_timeout_ms, "30000", 100, 3600000),
    O("server", "shutdown_timeout_ms", OPT_INT, shutdown_timeout_ms, "5000", 0, 600000),
    S("server", "cors_origins", cors_origins, "*"),
    {"server", "admin_key", OPT_STR, offsetof(rta_config, admin_key), "", 1, 0, 0},
    S("tls", "listen", tls_listen, ""),
    S("tls", "cert", tls_cert, ""),
    S("tls", "key", tls_key, ""),
    S("tls", "min_version", tls_min_version, "1.3"),
    S("store", "kind", store_kind, "sqlite"),
    S("store", "path", store_path, ""),
    O("store", "max_queue", OPT_INT, store_max_queue, "10000", 16, 10000000),
    O("store", "persist_interval_ms", OPT_INT, persist_interval_ms, "2000", 10, 3600000),
    O("store", "history_retention_s", OPT_INT, history_retention_s, "691200", 3600, 31536000),
    O("ingest", "max_items", OPT_INT, ingest_max_items, "10000", 1, 1000000),
    O("events", "min_change", OPT_DOUBLE, events_min_change, "0", 0, 0),
    O("events", "log_max", OPT_INT, events_log_max, "100000", 16, 10000000),
    O("events", "log_max_age_s", OPT_INT, events_log_max_age_s, "3600", 1, 604800),
    O("query", "cache_entries", OPT_INT, query_cache_entries, "1024", 0, 1000000),
    O("query", "cache_bytes", OPT_INT, query_cache_bytes, "67108864", 0, 1LL << 34),
    O("simulator", "enabled", OPT_BOOL, sim_enabled, "false", 0, 0),
    O("simulator", "seed", OPT_INT, sim_seed, "42", 0, INT64_MAX),
    O("simulator", "protocols", OPT_INT, sim_protocols, "6700", 1, 1000000),
    O("simulator", "chains", OPT_INT, sim_chains, "450", 1, 100000),
    O("simulator", "pairs", OPT_INT, sim_pairs, "12000", 1, 10000000),
    O("simulator", "tokens", OPT_INT, sim_tokens, "300", 1, 1000000),
    O("simulator", "updates_per_sec", OPT_DOUBLE, sim_updates_per_sec, "50", 0, 0),
    O("realtime", "max_subscriptions", OPT_INT, rt_max_subscriptions, "100", 1, 100000),
    O("realtime", "max_queued_bytes", OPT_INT, rt_max_queued_bytes, "1048576", 4096, 1LL << 30),
    S("realtime", "slow_consumer", rt_slow_consumer, "disconnect"),
    S("realtime", "threshold_min_tier", rt_threshold_min_tier, "pro"),
    O("realtime", "recovery_window_ms", OPT_INT, rt_recovery_window_ms, "120000", 0, 86400000),
    O("realtime", "ws_idle_timeout_ms", OPT_INT, rt_ws_idle_timeout_ms, "120000", 0, 86400000),
    O("realtime", "ping_interval_ms", OPT_INT, rt_ping_interval_ms, "25000", 100, 3600000),
    O("realtime", "ping_timeout_ms", OPT_INT, rt_ping_timeout_ms, "20000", 100, 3600000),
    O("realtime", "permessage_deflate", OPT_BOOL, rt_permessage_deflate, "false", 0, 0),
    O("realtime", "sio_permessage_deflate", OPT_BOOL, rt_sio_permessage_deflate, "false", 0, 0),
    S("alerts", "retry_schedule", alert_retry_schedule, "0,5,300,1800,7200,18000,36000,36000"),
    O("alerts", "lease_ms", OPT_INT, alert_lease_ms, "60000", 1000, 3600000),
    O("alerts", "poll_ms", OPT_INT, alert_poll_ms, "250", 10, 60000),
    O("alerts", "max_in_flight", OPT_INT, alert_max_in_flight, "256", 1, 100000),
    S("alerts", "public_url", public_url, "http://127.0.0.1:8080"),
    O("alerts", "retention_days", OPT_INT, alert_retention_days, "30", 1, 3650),
    O("audit", "retention_days", OPT_INT, audit_retention_days, "365", 1, 36500),
    O("webhooks", "timeout_ms", OPT_INT, webhook_timeout_ms, "10000", 100, 600000),
    O("webhooks", "allow_private", OPT_BOOL, webhook_allow_private, "false", 0, 0),
    S("smtp", "url", smtp_url, ""),
    O("smtp", "starttls", OPT_BOOL, smtp_starttls, "false", 0, 0),
    O("smtp", "insecure", OPT_BOOL, smtp_insecure, "false", 0, 0),
    S("smtp", "user", smtp_user, ""),
    {"smtp", "password", OPT_STR, offsetof(rta_config, smtp_password), "", 1, 0, 0},
    S("smtp", "from", smtp_from, "rta alerts <alerts@localhost>"),
    S("push", "fcm_base_url", fcm_base_url, "https://fcm.googleapis.com"),
    S("push", "fcm_project", fcm_project, ""),
    {"push", "fcm_token", OPT_STR, offsetof(rta_config, fcm_token), "", 1, 0, 0},
#define TIER(i, name)                                                                              \
    O("tiers." name, "websocket_connections", OPT_INT, tiers[i].websocket_connections, NULL, 0,    \
      1000000),                                                                                    \
        O("tiers." name, "messages_per_minute", OPT_INT, tiers[i].messages_per_minute, NULL, 0,    \
          100000000),                                                                              \
        O("tiers." name, "api_requests_per_minute", OPT_INT, tiers[i].api_requests_per_minute,     \
          NULL, 0, 100000000),                                                                     \
        O("tiers." name, "alert_rules", OPT_INT, tiers[i].alert_rules, NULL, 0, 10000000)
    TIER(0, "free"),
    TIER(1, "pro"),
    TIER(2, "enterprise"),
#undef TIER
};

static int is_tier_int(const option *o)
{
    return strncmp(o->section, "tiers.", 6) == 0;
}

static int set_option(rta_config *cfg, const option *o, const char *value, char *err, size_t errlen)
{
    void *field = (char *)cfg + o->offset;
    char *end;
    switch (o->type) {
    case OPT_STR:
        free(*(char **)field);
        *(char **)field = rta_strdup(value);
        return 0;
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0' || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s.%s: expected an integer in [%lld, %lld], got \"%s\"",
                     o->section, o->key, (long long)o->min, (long long)o->max, value);
            return -1;
        }
        if (is_tier_int(o))
            *(int *)field = (int)v;
        else
            *(int64_t *)field = v;
        return 0;
    }
    case OPT_DOUBLE: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !isfinite(v) || v < 0) {
            snprintf(err, errlen, "%s.%s: expected a non-negative number, got \"%s\"", o->section,
                     o->key, value);
            return -1;
        }
        *(double *)field = v;
        return 0;
    }
    case OPT_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes") ||
            !strcmp(value, "on")) {
            *(bool *)field = true;
        } else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no") ||
                   !strcmp(value, "off")) {
            *(bool *)field = false;
        } else {
            snprintf(err, errlen, "%s.%s: expected true or false, got \"%s\"", o->section, o->key,
                     value);
            return -1;
        }
        return 0;
    }
    return -1;
}

void rta_config_init(rta_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    rta_tiers_defaults(cfg->tiers);
    char err[256];
    for (size_t i = 0; i < RTA_ARRAY_LEN(options); i++)
        if (options[i].def != NULL)
            set_option(cfg, &options[i], options[i].def, err, sizeof err);
}

void rta_config_free(rta_config *cfg)
{
    free(cfg->config_path);
    cfg->config_path = NULL;
    for (size_t i = 0; i < RTA_ARRAY_LEN(options); i++)
        if (options[i].type == OPT_STR) {
            char **f = (char **)((char *)cfg + options[i].offset);
            free(*f);
            *f = NULL;
        }
}

int rta_config_set(rta_config *cfg, const char *section, const char *key, const char *value,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < RTA_ARRAY_LEN(options); i++)
        if (!strcmp(options[i].section, section) && !strcmp(options[i].key, key))
            return set_option(cfg, &options[i], value, err, errlen);
    snprintf(err, errlen, "unknown option %s.%s", section, key);
    return -1;
}

typedef struct {
    rta_config *cfg;
    char *err;
    size_t errlen;
    int failed;
} ini_ctx;

static int config_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *ctx = user;
    if (ctx->failed)
        return 1;
    if (rta_config_set(ctx->cfg, section, name, value, ctx->err, ctx->errlen) != 0) {
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

int rta_config_load_file(rta_config *cfg, const char *path, char *err, size_t errlen)
{
    ini_ctx ctx = {cfg, err, errlen, 0};
    int rc = ini_parse(path, config_ini_entry, &ctx);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read config file %s", path);
        return -1;
    }
    if (ctx.failed) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (in %s line %d)", path, rc);
        return -1;
    }
    if (rc > 0) {
        snprintf(err, errlen, "%s: syntax error on line %d", path, rc);
        return -1;
    }
    return 0;
}

/* "tiers.free" + "alert_rules" -> "RTA_TIERS_FREE_ALERT_RULES" */
static void env_name(const char *section, const char *key, char *out, size_t outlen)
{
    snprintf(out, outlen, "RTA_%s_%s", section, key);
    for (char *p = out; *p; p++)
        *p = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
}

int rta_config_load_env(rta_config *cfg, char *const *envp, char *err, size_t errlen)
{
    (void)envp;
    char name[128];
    for (size_t i = 0; i < RTA_ARRAY_LEN(options); i++) {
        const option *o = &options[i];
        const char *v = NULL;
        if (!strcmp(o->section, "server")) {
            snprintf(name, sizeof name, "RTA_%s", o->key);
            for (char *p = name; *p; p++)
                *p = (char)toupper((unsigned char)*p);
            v = getenv(name);
        }
        env_name(o->section, o->key, name, sizeof name);
        if (getenv(name) != NULL)
            v = getenv(name);
        if (v != NULL && set_option(cfg, o, v, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int rta_config_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= hostlen)
            return -1;
        memcpy(host, s + 1, n);
        host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= hostlen)
            return -1;
        memcpy(host, s, n);
        host[n] = '\0';
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int rta_config_finish(rta_config *cfg, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (rta_config_split_hostport(cfg->listen, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "server.listen: expected HOST:PORT, got \"%s\"", cfg->listen);
        return -1;
    }
    if (cfg->tls_listen[0] != '\0') {
        if (rta_config_split_hostport(cfg->tls_listen, host, sizeof host, &port) != 0) {
            snprintf(err, errlen, "tls.listen: expected HOST:PORT, got \"%s\"", cfg->tls_listen);
            return -1;
        }
        if (cfg->tls_cert[0] == '\0' || cfg->tls_key[0] == '\0') {
            snprintf(err, errlen, "tls.listen is set: tls.cert and tls.key are required");
            return -1;
        }
    }
    if (strcmp(cfg->tls_min_version, "1.3") != 0 && strcmp(cfg->tls_min_version, "1.2") != 0) {
        snprintf(err, errlen, "tls.min_version: expected 1.2 or 1.3");
        return -1;
    }
    if (strcmp(cfg->store_kind, "sqlite") != 0) {
        snprintf(err, errlen, "store.kind: only \"sqlite\" is available in this build");
        return -1;
    }
    if (cfg->store_path[0] == '\0') {
        free(cfg->store_path);
        size_t n = strlen(cfg->data_dir) + 16;
        cfg->store_path = rta_xmalloc(n);
        snprintf(cfg->store_path, n, "%s/rta.db", cfg->data_dir);
    }
    if (strcmp(cfg->rt_slow_consumer, "disconnect") != 0 &&
        strcmp(cfg->rt_slow_consumer, "drop") != 0) {
        snprintf(err, errlen, "realtime.slow_consumer: expected disconnect or drop");
        return -1;
    }
    if (rta_tier_find(cfg->tiers, cfg->rt_threshold_min_tier) == NULL) {
        snprintf(err, errlen, "realtime.threshold_min_tier: expected free, pro or enterprise");
        return -1;
    }
    {
        const char *p = cfg->alert_retry_schedule;
        int n = 0;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > 7 * 86400 || (*end != ',' && *end != '\0')) {
                snprintf(err, errlen,
                         "alerts.retry_schedule: expected comma-separated seconds, got \"%s\"",
                         cfg->alert_retry_schedule);
                return -1;
            }
            n++;
            p = *end ? end + 1 : end;
        }
        if (n < 1 || n > 32) {
            snprintf(err, errlen, "alerts.retry_schedule: 1 to 32 attempts");
            return -1;
        }
    }
    if (cfg->events_min_change > 100) {
        snprintf(err, errlen, "events.min_change is a fraction (0.05 = 5%%)");
        return -1;
    }
    return 0;
}

void rta_config_print(const rta_config *cfg)
{
    const char *section = "";
    for (size_t i = 0; i < RTA_ARRAY_LEN(options); i++) {
        const option *o = &options[i];
        if (strcmp(section, o->section) != 0) {
            printf("%s[%s]\n", i ? "\n" : "", o->section);
            section = o->section;
        }
        const void *f = (const char *)cfg + o->offset;
        switch (o->type) {
        case OPT_STR: {
            const char *v = *(char *const *)f;
            printf("%s = %s\n", o->key, o->secret && v && v[0] ? "********" : (v ? v : ""));
            break;
        }
        case OPT_INT:
            printf("%s = %lld\n", o->key,
                   is_tier_int(o) ? (long long)*(const int *)f : (long long)*(const int64_t *)f);
            break;
        case OPT_DOUBLE:
            printf("%s = %g\n", o->key, *(const double *)f);
            break;
        case OPT_BOOL:
            printf("%s = %s\n", o->key, *(const bool *)f ? "true" : "false");
            break;
        }
    }
}
