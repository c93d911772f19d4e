/*
 * Routing and the request pipeline every API call goes through:
 *   match route (404 / 405) -> authenticate (401) -> authorize (403) -> rate limit (429)
 *   -> handler; then the observer logs the request and records its metrics.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct route {
    const char *method;
    const char *pattern; /* segments; "{name}" captures one */
    uint32_t perm;       /* 0 = public */
    rta_app_handler fn;
} route;

static const route routes[] = {
    {"GET", "/healthz", 0, api_healthz},
    {"GET", "/readyz", 0, api_readyz},
    {"GET", "/metrics", 0, api_metrics},
    {"POST", "/v1/admin/keys", RTA_PERM_ADMIN, api_keys_create},
    {"GET", "/v1/admin/keys", RTA_PERM_ADMIN, api_keys_list},
    {"DELETE", "/v1/admin/keys/{id}", RTA_PERM_ADMIN, api_keys_revoke},
    {"GET", "/v1/admin/audit", RTA_PERM_ADMIN, api_audit_list},
    {"POST", "/v1/ingest", RTA_PERM_INGEST, api_ingest},
    {"GET", "/v1/events", RTA_PERM_READ, api_events},
    {"POST", "/v1/query/advanced", RTA_PERM_QUERY, api_query_advanced},
    {"GET", "/v1/protocols", RTA_PERM_READ, api_protocols_list},
    {"GET", "/v1/protocols/{slug}", RTA_PERM_READ, api_protocol_get},
    {"GET", "/v1/chains", RTA_PERM_READ, api_chains_list},
    {"GET", "/v1/prices/{token}", RTA_PERM_READ, api_price_get},
    {"POST", "/v1/alerts/rules", RTA_PERM_ALERTS, api_rules_create},
    {"GET", "/v1/alerts/rules", RTA_PERM_ALERTS, api_rules_list},
    {"GET", "/v1/alerts/rules/{id}", RTA_PERM_ALERTS, api_rule_get},
    {"PUT", "/v1/alerts/rules/{id}", RTA_PERM_ALERTS, api_rule_replace},
    {"PATCH", "/v1/alerts/rules/{id}", RTA_PERM_ALERTS, api_rule_patch},
    {"DELETE", "/v1/alerts/rules/{id}", RTA_PERM_ALERTS, api_rule_delete},
    {"GET", "/v1/alerts/rules/{id}/history", RTA_PERM_ALERTS, api_rule_history},
    {"GET", "/v1/alerts/deliveries", RTA_PERM_ALERTS, api_deliveries_list},
    {"GET", "/v1/alerts/deliveries/{id}", RTA_PERM_ALERTS, api_delivery_get},
    {"POST", "/v1/alerts/deliveries/{id}/retry", RTA_PERM_ALERTS, api_delivery_retry},
    {"GET", "/v1/users/me/preferences", RTA_PERM_ALERTS, api_prefs_get},
    {"PUT", "/v1/users/me/preferences", RTA_PERM_ALERTS, api_prefs_put},
};

/* Matches path against pattern; on success stores captures in req->params. */
static int match(const char *pattern, const char *path, rta_http_req *req, int capture)
{
    const char *p = pattern, *s = path;
    size_t nparams = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            const char *se = strchr(s, '/');
            size_t len = se ? (size_t)(se - s) : strlen(s);
            if (len == 0 || nparams == RTA_HTTP_MAX_PARAMS)
                return 0;
            if (capture) {
                req->params[nparams] = rta_xmalloc(len + 1);
                memcpy(req->params[nparams], s, len);
                req->params[nparams][len] = '\0';
                req->nparams = nparams + 1;
            }
            nparams++;
            p = pe + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    if (*s == '/' && s[1] == '\0' && *p == '\0') /* tolerate one trailing slash */
        s++;
    return *p == '\0' && *s == '\0';
}

static int is_head_of_get(const rta_http_req *req, const route *r)
{
    return strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
}

json_t *rta_json_number_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

const char *rta_app_actor(const rta_http_req *req)
{
    const rta_key *k = req->key;
    return k ? k->rec.id : "anonymous";
}

void rta_app_validation_error(rta_http_req *req, json_t *errors)
{
    char msg[160];
    size_t n = json_array_size(errors);
    json_t *first = json_array_get(errors, 0);
    snprintf(msg, sizeof msg, "%zu invalid field%s; first: %s: %s", n, n == 1 ? "" : "s",
             json_string_value(json_object_get(first, "path")) ?: "$",
             json_string_value(json_object_get(first, "message")) ?: "invalid");
    rta_http_send_error(req, 400, "validation_failed", msg, json_pack("{s:o}", "errors", errors));
}

json_t *rta_app_body_json(rta_http_req *req)
{
    if (req->body == NULL || req->body_len == 0) {
        rta_http_send_error(req, 400, "invalid_json", "a JSON request body is required", NULL);
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL) {
        rta_http_send_error(req, 400, "invalid_json", err.text,
                            json_pack("{s:i,s:i,s:i}", "line", err.line, "column", err.column,
                                      "position", err.position));
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        rta_http_send_error(req, 400, "invalid_json", "the request body must be a JSON object",
                            NULL);
        return NULL;
    }
    return j;
}

void rta_app_audit(rta_app *app, const rta_http_req *req, const char *action, const char *target,
                   json_t *details)
{
    if (rta_store_audit(app->store, req ? rta_app_actor(req) : "system", action, target,
                        req ? req->request_id : NULL, req ? req->remote_ip : NULL, details) != 0)
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, "op=\"audit\""));
}

static void auth_failure(rta_app *app, rta_http_req *req, int status, const char *code,
                         const char *message, json_t *details)
{
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", code);
    rta_counter_inc(rta_metrics_counter(app->m_auth_failures, labels));
    if (status == 401)
        rta_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"rta\"");
    rta_http_send_error(req, status, code, message, details);
}

static const char *bearer_token(const rta_http_req *req)
{
    const char *h = rta_http_header_get(req, "Authorization");
    if (h == NULL)
        return NULL;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return "";
    h += 7;
    while (*h == ' ')
        h++;
    return h;
}

/* Returns 1 when the request may go on; otherwise it has been answered. */
static int authenticate(rta_app *app, rta_http_req *req, uint32_t perm)
{
    const char *token = bearer_token(req);
    rta_key *key = NULL;
    rta_auth_result r = rta_keyring_verify(app->keys, token, &key);
    static const char *messages[] = {
        [RTA_AUTH_MISSING] = "an API key is required: Authorization: Bearer <key>",
        [RTA_AUTH_MALFORMED] = "the API key is not well-formed",
        [RTA_AUTH_UNKNOWN] = "the API key is not valid",
        [RTA_AUTH_REVOKED] = "the API key has been revoked",
    };
    if (r != RTA_AUTH_OK) {
        auth_failure(app, req, 401, rta_auth_result_code(r), messages[r], NULL);
        return 0;
    }
    req->key = key;
    const rta_tier *tier = rta_tier_find(app->cfg->tiers, key->rec.tier);
    int limit = tier ? tier->api_requests_per_minute : 0;
    int remaining = 0, reset_s = 0, retry_after = 0;
    int ok =
        rta_bucket_take(&key->api_bucket, limit, rta_now_ms(), &remaining, &reset_s, &retry_after);
    char v[32];
    snprintf(v, sizeof v, "%d", limit);
    rta_http_add_header(req, "RateLimit-Limit", v);
    snprintf(v, sizeof v, "%d", remaining);
    rta_http_add_header(req, "RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%d", reset_s);
    rta_http_add_header(req, "RateLimit-Reset", v);
    if (!ok) {
        snprintf(v, sizeof v, "%d", retry_after);
        rta_http_add_header(req, "Retry-After", v);
        char labels[64];
        snprintf(labels, sizeof labels, "tier=\"%s\"", key->rec.tier);
        rta_counter_inc(rta_metrics_counter(app->m_rate_limited, labels));
        rta_http_send_error(req, 429, "rate_limited", "too many requests for this key's tier",
                            json_pack("{s:s,s:i,s:i}", "tier", key->rec.tier, "limitPerMinute",
                                      limit, "retryAfterSeconds", retry_after));
        return 0;
    }
    /* after the rate limit: refused requests cost a token too, and carry its headers */
    if ((key->perms & perm) != perm) {
        char need[64], have[128];
        rta_perms_format(perm, need, sizeof need);
        rta_perms_format(key->perms, have, sizeof have);
        auth_failure(
            app, req, 403, "forbidden", "this key lacks the permission for this route",
            json_pack("{s:s,s:s,s:s}", "required", need, "granted", have, "role", key->rec.role));
        return 0;
    }
    return 1;
}

void rta_app_handle_request(void *ud, rta_http_req *req)
{
    rta_app *app = ud;
    if (rta_rt_handle_http(app->rt, req)) /* Socket.IO long-polling under /socket.io/ */
        return;
    const route *found = NULL;
    char allow[128] = "";
    for (size_t i = 0; i < RTA_ARRAY_LEN(routes); i++) {
        const route *r = &routes[i];
        if (!match(r->pattern, req->path, req, 0))
            continue;
        if (strcmp(r->method, req->method) == 0 || is_head_of_get(req, r)) {
            found = r;
            break;
        }
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", r->method);
    }
    if (found == NULL) {
        req->route = allow[0] ? "(method not allowed)" : "(not found)";
        if (allow[0]) {
            rta_http_add_header(req, "Allow", allow);
            rta_http_send_error(req, 405, "method_not_allowed",
                                "this path does not accept this method",
                                json_pack("{s:s,s:s}", "method", req->method, "allow", allow));
        } else {
            rta_http_send_error(req, 404, "not_found", "no such endpoint",
                                json_pack("{s:s}", "path", req->path));
        }
        return;
    }
    req->route = found->pattern;
    match(found->pattern, req->path, req, 1);
    if (found->perm && !authenticate(app, req, found->perm))
        return;
    found->fn(app, req);
}

void rta_app_observe_request(void *ud, const rta_http_req *req)
{
    rta_app *app = ud;
    double secs = (double)(rta_mono_ns() - req->start_ns) / 1e9;
    const char *route_name = req->route ? req->route : "(unrouted)";
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\",status=\"%d\"", route_name,
             req->method ? req->method : "", req->status);
    rta_counter_inc(rta_metrics_counter(app->m_requests, labels));
    snprintf(labels, sizeof labels, "route=\"%s\"", route_name);
    rta_histogram_observe(rta_metrics_histogram(app->m_request_seconds, labels), secs);
    rta_log(req->status >= 500 ? RTA_LOG_ERROR : RTA_LOG_INFO, "request",
            "{s:s,s:s,s:s,s:s,s:i,s:f,s:s,s:s,s:I}", "request_id", req->request_id, "method",
            req->method ? req->method : "", "path", req->path ? req->path : "", "route", route_name,
            "status", req->status, "ms", secs * 1000.0, "remote_ip", req->remote_ip, "key_id",
            rta_app_actor(req), "bytes", (json_int_t)req->response_bytes);
}

void rta_app_metrics_init(rta_app *app)
{
    app->m_requests = rta_metrics_counter_family("rta_http_requests_total",
                                                 "HTTP requests answered, by route and status");
    app->m_request_seconds = rta_metrics_histogram_family(
        "rta_http_request_duration_seconds", "HTTP request latency, by route", NULL, 0);
    app->m_ingest_items = rta_metrics_counter_family(
        "rta_ingest_items_total", "Ingested updates, by kind, source and result");
    app->m_events = rta_metrics_counter_family("rta_events_total", "Events published, by type");
    app->m_query_cache = rta_metrics_counter_family("rta_query_cache_total",
                                                    "Advanced query cache lookups, by result");
    app->m_rate_limited = rta_metrics_counter_family("rta_rate_limited_total",
                                                     "Requests refused by rate limits, by tier");
    app->m_store_seconds = rta_metrics_histogram_family(
        "rta_store_op_duration_seconds", "Store job latency (queue + work), by op", NULL, 0);
    app->m_auth_failures =
        rta_metrics_counter_family("rta_auth_failures_total", "Refused authentications, by reason");
    app->m_store_errors = rta_metrics_counter_family("rta_store_errors_total",
                                                     "Store jobs that failed or were refused");
    app->m_query_exec = rta_metrics_histogram(
        rta_metrics_histogram_family("rta_query_exec_seconds",
                                     "Advanced query execution time (cache misses)", NULL, 0),
        "");
}
