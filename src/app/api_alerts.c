/*
 * Alerts REST API: rules (CRUD), user preferences, delivery tracking and replay.
 * Rules belong to the key's user; another user's rule answers 404 (admins see all).
 * Writes are store jobs; the in-memory engine changes only once the store has committed.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"
#include "rta/verr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *user_of(const rta_http_req *req)
{
    return ((const rta_key *)req->key)->rec.user_id;
}

static int is_admin(const rta_http_req *req)
{
    return (((const rta_key *)req->key)->perms & RTA_PERM_ADMIN) != 0;
}

static json_t *iso(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char b[40];
    rta_time_iso8601(ms, b, sizeof b);
    return json_string(b);
}

static void store_busy(rta_http_req *req)
{
    rta_http_send_error(req, 503, "store_busy", "the store queue is full; retry", NULL);
}

/* The rule named in the path if the caller may see it; else answers 404 and returns NULL. */
static const rta_alert_rule *owned_rule(rta_app *app, rta_http_req *req)
{
    const rta_alert_rule *r = rta_alert_engine_get(app->alerts, req->params[0]);
    if (r == NULL || (strcmp(r->user_id, user_of(req)) != 0 && !is_admin(req))) {
        rta_http_send_error(req, 404, "rule_not_found", "no such alert rule",
                            json_pack("{s:s}", "ruleId", req->params[0]));
        return NULL;
    }
    return r;
}

/* ---------- create / replace / patch: one job shape ---------- */

typedef struct rule_job {
    rta_store_job job;
    rta_app *app;
    rta_http_req *req;
    rta_alert_rule *rule;
    char *body;      /* storage JSON */
    int status_code; /* 201 create, 200 update */
    const char *action;
    char *prefs_text; /* owner's stored preferences, read in the same job */
    int need_prefs;
    unsigned new_secrets; /* bit i: action i is a webhook target new to this rule (show its
                             secret once) */
} rule_job;

static void rule_work(rta_store *s, rta_store_job *job)
{
    rule_job *rj = (rule_job *)job;
    rta_alert_rule *r = rj->rule;
    job->status = s->ops->rule_upsert(s->db, r->id, r->user_id, rj->body, r->is_active,
                                      r->created_ms, r->updated_ms);
    if (job->status == 0 && rj->need_prefs)
        s->ops->prefs_get(s->db, r->user_id, &rj->prefs_text);
}

static void rule_done(rta_store_job *job)
{
    rule_job *rj = (rule_job *)job;
    rta_app *app = rj->app;
    if (job->status != 0) {
        rta_http_send_error(rj->req, 503, "store_error", "the rule could not be stored", NULL);
    } else {
        if (rj->prefs_text) {
            json_t *p = json_loads(rj->prefs_text, 0, NULL);
            if (p)
                rta_alerts_prefs_set(app, rj->rule->user_id, p);
        }
        rta_alert_engine_put(app->alerts, rj->rule);
        rta_app_audit(
            app, rj->req, rj->action, rj->rule->id,
            json_pack("{s:s,s:b}", "name", rj->rule->name, "active", rj->rule->is_active));
        rta_log(RTA_LOG_INFO, "alert rule saved", "{s:s,s:s,s:s,s:s}", "request_id",
                rj->req->request_id, "rule_id", rj->rule->id, "user", rj->rule->user_id, "action",
                rj->action);
        /* webhook secrets are shown once: at creation, and for a target an update adds */
        json_t *out = rta_alert_rule_to_json(rj->rule, rj->status_code == 201);
        json_t *acts = json_object_get(out, "actions");
        for (size_t i = 0; i < rj->rule->nactions && rj->status_code != 201; i++)
            if ((rj->new_secrets >> i) & 1u)
                json_object_set_new(json_array_get(acts, i), "secret",
                                    json_string(rj->rule->actions[i].secret));
        rta_http_send_json(rj->req, rj->status_code, out);
    }
    free(rj->prefs_text);
    free(rj->body);
    rta_alert_rule_free(rj->rule);
    free(rj);
}

/* Webhook actions of r whose target old does not have (their secrets are new). */
static unsigned new_webhook_targets(const rta_alert_rule *old, const rta_alert_rule *r)
{
    unsigned bits = 0;
    for (size_t i = 0; i < r->nactions; i++) {
        if (r->actions[i].type != RTA_ACTION_WEBHOOK)
            continue;
        int known = 0;
        for (size_t j = 0; old && j < old->nactions; j++)
            known |= old->actions[j].type == RTA_ACTION_WEBHOOK &&
                     strcmp(old->actions[j].target, r->actions[i].target) == 0;
        if (!known)
            bits |= 1u << i;
    }
    return bits;
}

static void save_rule(rta_app *app, rta_http_req *req, rta_alert_rule *r, int status,
                      const char *action, unsigned new_secrets)
{
    rule_job *rj = rta_xcalloc(1, sizeof *rj);
    rj->new_secrets = new_secrets;
    rj->app = app;
    rj->req = req;
    rj->rule = r;
    json_t *st = rta_alert_rule_to_storage(r);
    rj->body = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    rj->status_code = status;
    rj->action = action;
    rj->need_prefs = rta_alerts_prefs(app, r->user_id) == NULL;
    rj->job.work = rule_work;
    rj->job.done = rule_done;
    rj->job.op = "rule_upsert";
    if (rta_store_submit(app->store, &rj->job) != 0) {
        free(rj->body);
        rta_alert_rule_free(r);
        free(rj);
        store_busy(req);
    }
}

void api_rules_create(rta_app *app, rta_http_req *req)
{
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    json_t *errors = NULL;
    rta_alert_rule *r = rta_alert_rule_parse(body, user_of(req), rta_now_ms(), &errors);
    json_decref(body);
    if (r == NULL) {
        rta_app_validation_error(req, errors);
        return;
    }
    const rta_key *key = req->key;
    const rta_tier *tier = rta_tier_find(app->cfg->tiers, key->rec.tier);
    size_t have = rta_alert_engine_user_count(app->alerts, user_of(req));
    if (tier && have >= (size_t)tier->alert_rules) {
        rta_alert_rule_free(r);
        rta_http_send_error(req, 403, "alert_rule_quota_exceeded",
                            "the alert rule quota of this tier is used up",
                            json_pack("{s:s,s:i,s:I}", "tier", key->rec.tier, "limit",
                                      tier->alert_rules, "current", (json_int_t)have));
        return;
    }
    save_rule(app, req, r, 201, "alert_rule.create", 0);
}

typedef struct list_ctx {
    const char *user;
    int active_filter; /* -1 any */
    json_t *data;
    const rta_alert_rule **rules;
    size_t n, cap;
} list_ctx;

static void collect_rule(void *ud, const rta_alert_rule *r)
{
    list_ctx *lc = ud;
    if (lc->user && strcmp(lc->user, r->user_id) != 0)
        return;
    if (lc->active_filter >= 0 && (int)r->is_active != lc->active_filter)
        return;
    if (lc->n == lc->cap) {
        lc->cap = lc->cap ? lc->cap * 2 : 32;
        lc->rules = rta_xrealloc(lc->rules, lc->cap * sizeof *lc->rules);
    }
    lc->rules[lc->n++] = r;
}

static int newest_first(const void *a, const void *b)
{
    const rta_alert_rule *x = *(const rta_alert_rule *const *)a;
    const rta_alert_rule *y = *(const rta_alert_rule *const *)b;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? 1 : -1;
    return strcmp(y->id, x->id);
}

static int uint_param(rta_http_req *req, const char *name, long lo, long hi, long def, long *out)
{
    char buf[32];
    *out = def;
    if (rta_http_query_param(req, name, buf, sizeof buf) == NULL)
        return 0;
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || *end || v < lo || v > hi) {
        char path[64], msg[96];
        snprintf(path, sizeof path, "query.%s", name);
        snprintf(msg, sizeof msg, "expected an integer in [%ld, %ld]", lo, hi);
        rta_app_validation_error(
            req, json_pack("[{s:s,s:s,s:s}]", "path", path, "rule", "range", "message", msg));
        return -1;
    }
    *out = v;
    return 0;
}

void api_rules_list(rta_app *app, rta_http_req *req)
{
    long limit, offset;
    if (uint_param(req, "limit", 1, 1000, 100, &limit) ||
        uint_param(req, "offset", 0, 1000000, 0, &offset))
        return;
    char active[16], user[160];
    list_ctx lc = {.user = user_of(req), .active_filter = -1};
    if (is_admin(req)) /* admins see every user's rules, or one user's with ?user= */
        lc.user = rta_http_query_param(req, "user", user, sizeof user);
    if (rta_http_query_param(req, "active", active, sizeof active)) {
        if (strcmp(active, "true") != 0 && strcmp(active, "false") != 0) {
            rta_app_validation_error(req, json_pack("[{s:s,s:s,s:s}]", "path", "query.active",
                                                    "rule", "enum", "message", "true or false"));
            return;
        }
        lc.active_filter = strcmp(active, "true") == 0;
    }
    rta_alert_engine_each(app->alerts, collect_rule, &lc);
    qsort(lc.rules, lc.n, sizeof *lc.rules, newest_first);
    json_t *data = json_array();
    for (size_t i = (size_t)offset; i < lc.n && i < (size_t)(offset + limit); i++)
        json_array_append_new(data, rta_alert_rule_to_json(lc.rules[i], false));
    free(lc.rules);
    rta_http_send_json(req, 200,
                       json_pack("{s:o,s:{s:I,s:I}}", "data", data, "meta", "total",
                                 (json_int_t)lc.n, "returned", (json_int_t)json_array_size(data)));
}

void api_rule_get(rta_app *app, rta_http_req *req)
{
    const rta_alert_rule *r = owned_rule(app, req);
    if (r)
        rta_http_send_json(req, 200, rta_alert_rule_to_json(r, false));
}

/* PUT: a full body; id, owner and creation time stay; unchanged webhook targets keep secrets. */
void api_rule_replace(rta_app *app, rta_http_req *req)
{
    const rta_alert_rule *old = owned_rule(app, req);
    if (old == NULL)
        return;
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    json_t *errors = NULL;
    rta_alert_rule *r = rta_alert_rule_parse(body, old->user_id, rta_now_ms(), &errors);
    json_decref(body);
    if (r == NULL) {
        rta_app_validation_error(req, errors);
        return;
    }
    memcpy(r->id, old->id, sizeof r->id);
    r->created_ms = old->created_ms;
    r->last_triggered_ms = old->last_triggered_ms;
    for (size_t i = 0; i < r->nactions; i++)
        for (size_t j = 0; j < old->nactions; j++)
            if (r->actions[i].type == RTA_ACTION_WEBHOOK && old->actions[j].secret &&
                old->actions[j].type == RTA_ACTION_WEBHOOK &&
                strcmp(r->actions[i].target, old->actions[j].target) == 0) {
                free(r->actions[i].secret);
                r->actions[i].secret = rta_strdup(old->actions[j].secret);
            }
    save_rule(app, req, r, 200, "alert_rule.update", new_webhook_targets(old, r));
}

void api_rule_patch(rta_app *app, rta_http_req *req)
{
    const rta_alert_rule *old = owned_rule(app, req);
    if (old == NULL)
        return;
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    json_t *errors = NULL;
    rta_alert_rule *r = rta_alert_rule_patch(old, body, rta_now_ms(), &errors);
    json_decref(body);
    if (r == NULL) {
        rta_app_validation_error(req, errors);
        return;
    }
    save_rule(app, req, r, 200, "alert_rule.update", new_webhook_targets(old, r));
}

typedef struct del_job {
    rta_store_job job;
    rta_app *app;
    rta_http_req *req;
    char id[37];
} del_job;

static void del_work(rta_store *s, rta_store_job *job)
{
    del_job *dj = (del_job *)job;
    job->status = s->ops->rule_delete(s->db, dj->id);
}

static void del_done(rta_store_job *job)
{
    del_job *dj = (del_job *)job;
    if (job->status < 0) {
        rta_http_send_error(dj->req, 503, "store_error", "the rule could not be deleted", NULL);
    } else {
        rta_alert_engine_remove(dj->app->alerts, dj->id);
        rta_app_audit(dj->app, dj->req, "alert_rule.delete", dj->id, NULL);
        rta_http_send(dj->req, 204, NULL, NULL, 0);
    }
    free(dj);
}

void api_rule_delete(rta_app *app, rta_http_req *req)
{
    const rta_alert_rule *r = owned_rule(app, req);
    if (r == NULL)
        return;
    del_job *dj = rta_xcalloc(1, sizeof *dj);
    dj->app = app;
    dj->req = req;
    snprintf(dj->id, sizeof dj->id, "%s", r->id);
    dj->job.work = del_work;
    dj->job.done = del_done;
    dj->job.op = "rule_delete";
    if (rta_store_submit(app->store, &dj->job) != 0) {
        free(dj);
        store_busy(req);
    }
}

/* ---------- deliveries ---------- */

static json_t *attempt_json(const rta_attempt_record *a)
{
    return json_pack("{s:i,s:o,s:I,s:o,s:s,s:o}", "attempt", a->attempt, "at", iso(a->at_ms),
                     "latencyMs", (json_int_t)a->latency_ms, "statusCode",
                     a->status_code ? json_integer(a->status_code) : json_null(), "outcome",
                     a->outcome, "error", a->error ? json_string(a->error) : json_null());
}

static json_t *delivery_json(const rta_delivery_record *d)
{
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", d->id, "triggerId",
        d->trigger_id, "ruleId", d->rule_id, "channel", d->channel, "target", d->target, "status",
        d->status, "attempts", d->attempts, "nextAttemptAt",
        strcmp(d->status, "pending") == 0 ? iso(d->next_attempt_ms) : json_null(), "createdAt",
        iso(d->created_ms), "updatedAt", iso(d->updated_ms), "deliveredAt", iso(d->delivered_ms),
        "lastStatusCode", d->last_status_code ? json_integer(d->last_status_code) : json_null(),
        "lastError", d->last_error ? json_string(d->last_error) : json_null(), "note",
        d->note ? json_string(d->note) : json_null());
}

typedef struct dq_job {
    rta_store_job job;
    rta_http_req *req;
    rta_delivery_filter f;
    char user[160], rule[64], channel[16], status[16], before[64];
    rta_delivery_record *out;
    size_t n;
} dq_job;

static void dq_work(rta_store *s, rta_store_job *job)
{
    dq_job *q = (dq_job *)job;
    job->status = s->ops->deliveries_query(s->db, &q->f, &q->out, &q->n);
}

static void dq_done(rta_store_job *job)
{
    dq_job *q = (dq_job *)job;
    if (job->status != 0) {
        rta_http_send_error(q->req, 503, "store_error", "deliveries could not be read", NULL);
    } else {
        json_t *data = json_array();
        for (size_t i = 0; i < q->n; i++)
            json_array_append_new(data, delivery_json(&q->out[i]));
        json_t *next =
            (int)q->n == q->f.limit && q->n ? json_string(q->out[q->n - 1].id) : json_null();
        rta_http_send_json(q->req, 200,
                           json_pack("{s:o,s:{s:o,s:I}}", "data", data, "meta", "nextCursor", next,
                                     "returned", (json_int_t)q->n));
    }
    for (size_t i = 0; i < q->n; i++)
        rta_delivery_record_free_fields(&q->out[i]);
    free(q->out);
    free(q);
}

static int time_param(rta_http_req *req, const char *name, int64_t *out)
{
    char buf[64];
    if (rta_http_query_param(req, name, buf, sizeof buf) == NULL)
        return 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end != buf && *end == '\0') {
        *out = v * 1000;
        return 0;
    }
    if (rta_time_parse_iso8601(buf, out) == 0)
        return 0;
    char path[64];
    snprintf(path, sizeof path, "query.%s", name);
    rta_app_validation_error(req, json_pack("[{s:s,s:s,s:s}]", "path", path, "rule", "timestamp",
                                            "message", "expected ISO-8601 or Unix seconds"));
    return -1;
}

void api_deliveries_list(rta_app *app, rta_http_req *req)
{
    dq_job *q = rta_xcalloc(1, sizeof *q);
    q->req = req;
    long limit;
    if (uint_param(req, "limit", 1, 1000, 100, &limit) ||
        time_param(req, "since", &q->f.since_ms) || time_param(req, "until", &q->f.until_ms)) {
        free(q);
        return;
    }
    q->f.limit = (int)limit;
    q->f.user_id = user_of(req);
    if (is_admin(req)) /* admins may look at anyone's, or everyone's with user=* */
        q->f.user_id = rta_http_query_param(req, "user", q->user, sizeof q->user) ?: user_of(req);
    if (q->f.user_id && strcmp(q->f.user_id, "*") == 0)
        q->f.user_id = NULL;
    q->f.rule_id = rta_http_query_param(req, "rule", q->rule, sizeof q->rule);
    q->f.channel = rta_http_query_param(req, "channel", q->channel, sizeof q->channel);
    q->f.status = rta_http_query_param(req, "status", q->status, sizeof q->status);
    q->f.before_id = rta_http_query_param(req, "cursor", q->before, sizeof q->before);
    const char *channels[] = {"email", "webhook", "push"};
    const char *statuses[] = {"pending", "delivered", "dead", "suppressed", "disabled"};
    int ok = 1;
    if (q->f.channel) {
        ok = 0;
        for (int i = 0; i < 3; i++)
            ok |= strcmp(q->f.channel, channels[i]) == 0;
    }
    if (ok && q->f.status) {
        ok = 0;
        for (int i = 0; i < 5; i++)
            ok |= strcmp(q->f.status, statuses[i]) == 0;
    }
    if (!ok) {
        free(q);
        rta_app_validation_error(req, json_pack("[{s:s,s:s,s:s}]", "path", "query", "rule", "enum",
                                                "message",
                                                "channel: email|webhook|push; status: pending|"
                                                "delivered|dead|suppressed|disabled"));
        return;
    }
    q->job.work = dq_work;
    q->job.done = dq_done;
    q->job.op = "deliveries_query";
    if (rta_store_submit(app->store, &q->job) != 0) {
        free(q);
        store_busy(req);
    }
}

/* One delivery with its attempts; optionally requeued first (POST .../retry). */
typedef struct dg_job {
    rta_store_job job;
    rta_app *app;
    rta_http_req *req;
    char id[64];
    char user[160]; /* the caller; deliveries of other users are "not found" */
    int admin;
    int retry;
    int found, requeue_rc;
    rta_delivery_record d;
    rta_attempt_record *att;
    size_t natt;
} dg_job;

static void dg_work(rta_store *s, rta_store_job *job)
{
    dg_job *g = (dg_job *)job;
    int rc = s->ops->delivery_get(s->db, g->id, &g->d);
    g->found = rc == 0;
    if (rc < 0) {
        job->status = -1;
        return;
    }
    if (g->found && !g->admin && strcmp(g->d.user_id, g->user) != 0) {
        rta_delivery_record_free_fields(&g->d); /* someone else's: never touch it */
        g->found = 0;
    }
    if (g->found && g->retry) {
        g->requeue_rc = s->ops->delivery_requeue(s->db, g->id, rta_now_ms());
        if (g->requeue_rc == 0) {
            rta_delivery_record_free_fields(&g->d);
            s->ops->delivery_get(s->db, g->id, &g->d);
        }
    }
    if (g->found)
        s->ops->attempts_query(s->db, g->id, &g->att, &g->natt);
    job->status = 0;
}

static void dg_done(rta_store_job *job)
{
    dg_job *g = (dg_job *)job;
    rta_http_req *req = g->req;
    if (job->status != 0) {
        rta_http_send_error(req, 503, "store_error", "the delivery could not be read", NULL);
    } else if (!g->found) {
        rta_http_send_error(req, 404, "delivery_not_found", "no such delivery",
                            json_pack("{s:s}", "id", g->id));
    } else if (g->retry && g->requeue_rc == 2) {
        rta_http_send_error(req, 409, "delivery_not_dead", "only dead deliveries can be replayed",
                            json_pack("{s:s,s:s}", "id", g->id, "status", g->d.status));
    } else {
        json_t *o = delivery_json(&g->d);
        json_t *atts = json_array();
        for (size_t i = 0; i < g->natt; i++)
            json_array_append_new(atts, attempt_json(&g->att[i]));
        json_object_set_new(o, "attemptLog", atts);
        if (g->retry) {
            rta_app_audit(g->app, req, "alert_delivery.retry", g->id, NULL);
            rta_alerts_kick(g->app);
        }
        rta_http_send_json(req, g->retry ? 202 : 200, o);
    }
    if (g->found)
        rta_delivery_record_free_fields(&g->d);
    for (size_t i = 0; i < g->natt; i++)
        rta_attempt_record_free_fields(&g->att[i]);
    free(g->att);
    free(g);
}

static void delivery_lookup(rta_app *app, rta_http_req *req, int retry)
{
    dg_job *g = rta_xcalloc(1, sizeof *g);
    g->app = app;
    g->req = req;
    g->retry = retry;
    g->admin = is_admin(req);
    snprintf(g->user, sizeof g->user, "%s", user_of(req));
    snprintf(g->id, sizeof g->id, "%s", req->params[0]);
    g->job.work = dg_work;
    g->job.done = dg_done;
    g->job.op = retry ? "delivery_retry" : "delivery_get";
    if (rta_store_submit(app->store, &g->job) != 0) {
        free(g);
        store_busy(req);
    }
}

void api_delivery_get(rta_app *app, rta_http_req *req)
{
    delivery_lookup(app, req, 0);
}

void api_delivery_retry(rta_app *app, rta_http_req *req)
{
    delivery_lookup(app, req, 1);
}

/* ---------- rule history: triggers with per-channel status and attempts ---------- */

typedef struct hist_job {
    rta_store_job job;
    rta_http_req *req;
    char rule_id[37];
    int64_t before;
    int limit;
    json_t *out;
} hist_job;

static void hist_work(rta_store *s, rta_store_job *job)
{
    hist_job *h = (hist_job *)job;
    rta_trigger_record *t = NULL;
    size_t nt = 0;
    if (s->ops->triggers_query(s->db, h->rule_id, h->before, h->limit, &t, &nt) != 0) {
        job->status = -1;
        return;
    }
    h->out = json_array();
    for (size_t i = 0; i < nt; i++) {
        json_t *payload = t[i].payload ? json_loads(t[i].payload, 0, NULL) : NULL;
        json_t *tj = json_pack(
            "{s:s,s:s,s:s,s:o,s:s,s:I,s:o,s:o}", "triggerId", t[i].id, "series", t[i].series,
            "state", t[i].state, "value", rta_json_number_or_null(t[i].value), "eventId",
            t[i].event_id, "eventOffset", (json_int_t)t[i].event_offset, "at", iso(t[i].at_ms),
            "event", payload ? json_incref(json_object_get(payload, "event")) : json_null());
        json_decref(payload);
        rta_delivery_record *d = NULL;
        size_t nd = 0;
        json_t *dels = json_array();
        if (s->ops->deliveries_for_trigger(s->db, t[i].id, &d, &nd) == 0) {
            for (size_t j = 0; j < nd; j++) {
                json_t *dj = delivery_json(&d[j]);
                rta_attempt_record *a = NULL;
                size_t na = 0;
                json_t *atts = json_array();
                if (s->ops->attempts_query(s->db, d[j].id, &a, &na) == 0)
                    for (size_t k = 0; k < na; k++) {
                        json_array_append_new(atts, attempt_json(&a[k]));
                        rta_attempt_record_free_fields(&a[k]);
                    }
                free(a);
                json_object_set_new(dj, "attemptLog", atts);
                json_array_append_new(dels, dj);
                rta_delivery_record_free_fields(&d[j]);
            }
            free(d);
        }
        json_object_set_new(tj, "deliveries", dels);
        json_array_append_new(h->out, tj);
        rta_trigger_record_free_fields(&t[i]);
    }
    free(t);
    job->status = 0;
}

static void hist_done(rta_store_job *job)
{
    hist_job *h = (hist_job *)job;
    if (job->status != 0) {
        rta_http_send_error(h->req, 503, "store_error", "the history could not be read", NULL);
        json_decref(h->out);
    } else {
        size_t n = json_array_size(h->out);
        json_t *next = json_null();
        if ((int)n == h->limit && n > 0) {
            json_t *last = json_array_get(h->out, n - 1);
            int64_t ms = 0;
            rta_time_parse_iso8601(json_string_value(json_object_get(last, "at")), &ms);
            char cur[32];
            snprintf(cur, sizeof cur, "%lld", (long long)ms);
            next = json_string(cur);
        }
        rta_http_send_json(h->req, 200,
                           json_pack("{s:s,s:o,s:{s:o,s:I}}", "ruleId", h->rule_id, "data", h->out,
                                     "meta", "nextCursor", next, "returned", (json_int_t)n));
    }
    free(h);
}

void api_rule_history(rta_app *app, rta_http_req *req)
{
    const rta_alert_rule *r = owned_rule(app, req);
    if (r == NULL)
        return;
    long limit, cursor;
    if (uint_param(req, "limit", 1, 200, 50, &limit) ||
        uint_param(req, "cursor", 0, 0x7fffffffffffffffL, 0, &cursor))
        return;
    hist_job *h = rta_xcalloc(1, sizeof *h);
    h->req = req;
    snprintf(h->rule_id, sizeof h->rule_id, "%s", r->id);
    h->before = cursor;
    h->limit = (int)limit;
    h->job.work = hist_work;
    h->job.done = hist_done;
    h->job.op = "rule_history";
    if (rta_store_submit(app->store, &h->job) != 0) {
        free(h);
        store_busy(req);
    }
}

/* ---------- preferences ---------- */

static json_t *default_prefs(void)
{
    return json_pack("{s:{s:b,s:b,s:b},s:{},s:n}", "channels", "email", 1, "webhook", 1, "push", 1,
                     "defaults", "quietHours");
}

void api_prefs_get(rta_app *app, rta_http_req *req)
{
    json_t *p = rta_alerts_prefs(app, user_of(req));
    json_t *out = p ? json_deep_copy(p) : default_prefs();
    json_object_set_new(out, "userId", json_string(user_of(req)));
    rta_http_send_json(req, 200, out);
}

/* "channels" ({email|webhook|push: bool}) or "defaults" ({email|webhook|push: target}): copies
 * the valid entries into out, reports the others. */
static void validate_channel_map(json_t *v, const char *section, int booleans, json_t *errors,
                                 json_t *out)
{
    char path[96];
    snprintf(path, sizeof path, "$.%s", section);
    if (!json_is_object(v)) {
        rta_verr_add(errors, path, "type",
                     booleans ? "an object of channel: true|false"
                              : "an object of channel: target");
        return;
    }
    const char *ck;
    json_t *cv;
    json_object_foreach(v, ck, cv)
    {
        char cp[160];
        snprintf(cp, sizeof cp, "$.%s.%.60s", section, ck);
        if (strcmp(ck, "email") && strcmp(ck, "webhook") && strcmp(ck, "push"))
            rta_verr_add(errors, cp, "unknown_field", "the channels are email, webhook, push");
        else if (booleans && !json_is_boolean(cv))
            rta_verr_add(errors, cp, "type", "true or false");
        else if (!booleans && (!json_is_string(cv) || json_string_length(cv) == 0 ||
                               json_string_length(cv) > 2048))
            rta_verr_add(errors, cp, "type", "a target string of 1..2048 characters");
        else
            json_object_set(out, ck, cv);
    }
}

/* Validates a preferences document; returns the normalized copy or NULL with errors. */
static json_t *validate_prefs(json_t *body, json_t *errors)
{
    const char *k;
    json_t *v;
    json_t *out = default_prefs();
    json_object_foreach(body, k, v)
    {
        char path[96];
        snprintf(path, sizeof path, "$.%.60s", k);
        if (strcmp(k, "channels") == 0 || strcmp(k, "defaults") == 0) {
            validate_channel_map(v, k, strcmp(k, "channels") == 0, errors, json_object_get(out, k));
        } else if (strcmp(k, "quietHours") == 0) {
            if (json_is_null(v))
                continue;
            if (!json_is_object(v)) {
                rta_verr_add(errors, path, "type",
                             "an object {start, end, timezone, enabled?} or null");
                continue;
            }
            json_t *q = json_object();
            const char *qk;
            json_t *qv;
            json_object_foreach(v, qk, qv)
            {
                char qp[160];
                snprintf(qp, sizeof qp, "$.quietHours.%.60s", qk);
                if (!strcmp(qk, "start") || !strcmp(qk, "end")) {
                    int h, m;
                    const char *t = json_string_value(qv);
                    if (t == NULL || strlen(t) != 5 || sscanf(t, "%2d:%2d", &h, &m) != 2 || h < 0 ||
                        h > 23 || m < 0 || m > 59)
                        rta_verr_add(errors, qp, "time", "a local time HH:MM");
                    else
                        json_object_set(q, qk, qv);
                } else if (!strcmp(qk, "timezone")) {
                    if (!json_is_string(qv) || !rta_alerts_valid_timezone(json_string_value(qv)))
                        rta_verr_add(errors, qp, "timezone",
                                     "an IANA time zone such as Europe/Paris");
                    else
                        json_object_set(q, qk, qv);
                } else if (!strcmp(qk, "enabled")) {
                    if (!json_is_boolean(qv))
                        rta_verr_add(errors, qp, "type", "true or false");
                    else
                        json_object_set(q, qk, qv);
                } else {
                    rta_verr_add(errors, qp, "unknown_field", "start, end, timezone, enabled");
                }
            }
            if (!json_object_get(v, "start"))
                rta_verr_add(errors, "$.quietHours.start", "required", "start is required");
            if (!json_object_get(v, "end"))
                rta_verr_add(errors, "$.quietHours.end", "required", "end is required");
            if (!json_object_get(q, "timezone"))
                json_object_set_new(q, "timezone", json_string("UTC"));
            json_object_set_new(out, "quietHours", q);
        } else {
            rta_verr_add(errors, path, "unknown_field", "fields: channels, defaults, quietHours");
        }
    }
    if (json_array_size(errors)) {
        json_decref(out);
        return NULL;
    }
    return out;
}

typedef struct prefs_job {
    rta_store_job job;
    rta_app *app;
    rta_http_req *req;
    char *user;
    char *text;
    json_t *prefs;
} prefs_job;

static void prefs_work(rta_store *s, rta_store_job *job)
{
    prefs_job *p = (prefs_job *)job;
    job->status = s->ops->prefs_put(s->db, p->user, p->text);
}

static void prefs_done(rta_store_job *job)
{
    prefs_job *p = (prefs_job *)job;
    if (job->status != 0) {
        rta_http_send_error(p->req, 503, "store_error", "preferences could not be stored", NULL);
        json_decref(p->prefs);
    } else {
        rta_alerts_prefs_set(p->app, p->user, json_incref(p->prefs));
        rta_app_audit(p->app, p->req, "preferences.update", p->user, json_incref(p->prefs));
        json_t *out = json_deep_copy(p->prefs);
        json_decref(p->prefs);
        json_object_set_new(out, "userId", json_string(p->user));
        rta_http_send_json(p->req, 200, out);
    }
    free(p->user);
    free(p->text);
    free(p);
}

void api_prefs_put(rta_app *app, rta_http_req *req)
{
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    json_t *errors = json_array();
    json_t *prefs = validate_prefs(body, errors);
    json_decref(body);
    if (prefs == NULL) {
        rta_app_validation_error(req, errors);
        return;
    }
    json_decref(errors);
    prefs_job *p = rta_xcalloc(1, sizeof *p);
    p->app = app;
    p->req = req;
    p->user = rta_strdup(user_of(req));
    p->prefs = prefs;
    p->text = json_dumps(prefs, JSON_COMPACT);
    p->job.work = prefs_work;
    p->job.done = prefs_done;
    p->job.op = "prefs_put";
    if (rta_store_submit(app->store, &p->job) != 0) {
        json_decref(prefs);
        free(p->user);
        free(p->text);
        free(p);
        store_busy(req);
    }
}
