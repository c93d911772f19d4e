/*
 * Admin API: keys (create, list, revoke) and the audit log. Writes go through the store
 * executor; the in-memory keyring is updated when the store has accepted the change, so a key
 * is never usable before it is durable.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"
#include "rta/verr.h"

#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *iso_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[40];
    rta_time_iso8601(ms, buf, sizeof buf);
    return json_string(buf);
}

static json_t *key_json(const rta_key_record *k)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o}", "id", k->id, "user", k->user_id, "tier",
                     k->tier, "role", k->role, "label",
                     k->label ? json_string(k->label) : json_null(), "createdAt",
                     iso_or_null(k->created_ms), "revokedAt", iso_or_null(k->revoked_ms));
}

/* ---- create ---- */

typedef struct create_job {
    rta_store_job job;
    rta_app *app;
    rta_http_req *req;
    rta_key_record rec;
    char key_text[RTA_KEY_TEXT_MAX];
} create_job;

static void create_work(rta_store *s, rta_store_job *job)
{
    create_job *cj = (create_job *)job;
    void *db = s->db;
    int rc = s->ops->begin(db);
    if (rc == 0)
        rc = s->ops->user_ensure(db, cj->rec.user_id, cj->rec.created_ms);
    if (rc == 0)
        rc = s->ops->key_insert(db, &cj->rec);
    if (rc == 0)
        rc = s->ops->commit(db);
    else
        s->ops->rollback(db);
    job->status = rc;
}

static void create_done(rta_store_job *job)
{
    create_job *cj = (create_job *)job;
    rta_app *app = cj->app;
    if (job->status != 0) {
        rta_http_send_error(cj->req, 503, "store_error", "the key could not be stored", NULL);
    } else {
        rta_keyring_put(app->keys, &cj->rec);
        rta_app_audit(app, cj->req, "key.create", cj->rec.id,
                      json_pack("{s:s,s:s,s:s}", "user", cj->rec.user_id, "tier", cj->rec.tier,
                                "role", cj->rec.role));
        rta_log(RTA_LOG_INFO, "key created", "{s:s,s:s,s:s,s:s,s:s}", "request_id",
                cj->req->request_id, "key_id", cj->rec.id, "user", cj->rec.user_id, "tier",
                cj->rec.tier, "role", cj->rec.role);
        json_t *body = key_json(&cj->rec);
        json_object_set_new(body, "key", json_string(cj->key_text));
        rta_http_send_json(cj->req, 201, body);
    }
    OPENSSL_cleanse(cj->key_text, sizeof cj->key_text);
    rta_key_record_free_fields(&cj->rec);
    free(cj);
}

static int valid_user(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || s[i] == 0x7f)
            return 0;
    return 1;
}

void api_keys_create(rta_app *app, rta_http_req *req)
{
    json_t *body = rta_app_body_json(req);
    if (body == NULL)
        return;
    json_t *errors = json_array();
    const char *user = NULL, *tier = "free", *role = "user", *label = NULL;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        char path[80];
        snprintf(path, sizeof path, "$.%.60s", k);
        if (strcmp(k, "user") == 0) {
            if (!json_is_string(v) || !valid_user(json_string_value(v)))
                rta_verr_add(errors, path, "user", "a string of 1-128 visible characters");
            else
                user = json_string_value(v);
        } else if (strcmp(k, "tier") == 0) {
            if (!json_is_string(v) || rta_tier_find(app->cfg->tiers, json_string_value(v)) == NULL)
                rta_verr_add(errors, path, "enum", "one of free, pro, enterprise");
            else
                tier = json_string_value(v);
        } else if (strcmp(k, "role") == 0) {
            if (!json_is_string(v) || !rta_role_valid(json_string_value(v)))
                rta_verr_add(errors, path, "enum", "one of user, reader, ingest, admin");
            else
                role = json_string_value(v);
        } else if (strcmp(k, "label") == 0) {
            if (!json_is_string(v) || strlen(json_string_value(v)) > 200)
                rta_verr_add(errors, path, "string", "a string of at most 200 characters");
            else
                label = json_string_value(v);
        } else {
            rta_verr_add(errors, path, "unknown_field", "not a field of this request");
        }
    }
    if (user == NULL && json_object_get(body, "user") == NULL)
        rta_verr_add(errors, "$.user", "required", "the key's user is required");
    if (json_array_size(errors) > 0) {
        rta_app_validation_error(req, errors);
        json_decref(body);
        return;
    }
    json_decref(errors);
    create_job *cj = rta_xcalloc(1, sizeof *cj);
    cj->app = app;
    cj->req = req;
    cj->job.work = create_work;
    cj->job.done = create_done;
    cj->job.op = "key_create";
    rta_key_generate(user, tier, role, label, rta_now_ms(), &cj->rec, cj->key_text);
    json_decref(body);
    if (rta_store_submit(app->store, &cj->job) != 0) {
        rta_key_record_free_fields(&cj->rec);
        free(cj);
        rta_http_send_error(req, 503, "store_busy", "the store queue is full; retry", NULL);
    }
}

/* ---- list ---- */

typedef struct list_ctx {
    json_t *data;
    const char *user;
    int include_revoked;
} list_ctx;

static void list_one(void *ud, rta_key *k)
{
    list_ctx *lc = ud;
    if (lc->user && strcmp(lc->user, k->rec.user_id) != 0)
        return;
    if (!lc->include_revoked && k->rec.revoked_ms > 0)
        return;
    json_array_append_new(lc->data, key_json(&k->rec));
}

void api_keys_list(rta_app *app, rta_http_req *req)
{
    char user[160], rev[16];
    list_ctx lc = {json_array(), rta_http_query_param(req, "user", user, sizeof user), 1};
    if (rta_http_query_param(req, "revoked", rev, sizeof rev) && strcmp(rev, "false") == 0)
        lc.include_revoked = 0;
    rta_keyring_each(app->keys, list_one, &lc);
    rta_http_send_json(req, 200,
                       json_pack("{s:o,s:{s:I}}", "data", lc.data, "meta", "total",
                                 (json_int_t)json_array_size(lc.data)));
}

/* ---- revoke ---- */

typedef struct revoke_job {
    rta_store_job job;
    rta_app *app;
    rta_http_req *req;
    char id[RTA_KEY_ID_LEN + 1];
    int64_t when_ms;
} revoke_job;

static void revoke_work(rta_store *s, rta_store_job *job)
{
    revoke_job *rj = (revoke_job *)job;
    job->status = s->ops->key_revoke(s->db, rj->id, rj->when_ms);
}

static void revoke_done(rta_store_job *job)
{
    revoke_job *rj = (revoke_job *)job;
    rta_app *app = rj->app;
    if (job->status < 0) {
        rta_http_send_error(rj->req, 503, "store_error", "the revocation could not be stored",
                            NULL);
    } else if (job->status == 1) {
        rta_http_send_error(rj->req, 404, "key_not_found", "no active key with this id",
                            json_pack("{s:s}", "id", rj->id));
    } else {
        rta_key *k = rta_keyring_get(app->keys, rj->id);
        if (k)
            k->rec.revoked_ms = rj->when_ms;
        rta_rt_revoke_key(app->rt, rj->id);
        rta_app_audit(app, rj->req, "key.revoke", rj->id, NULL);
        rta_log(RTA_LOG_INFO, "key revoked", "{s:s,s:s}", "request_id", rj->req->request_id,
                "key_id", rj->id);
        rta_http_send_json(
            rj->req, 200,
            json_pack("{s:s,s:o}", "id", rj->id, "revokedAt", iso_or_null(rj->when_ms)));
    }
    free(rj);
}

void api_keys_revoke(rta_app *app, rta_http_req *req)
{
    const char *id = req->params[0];
    rta_key *k = rta_keyring_get(app->keys, id);
    if (k == NULL || k->rec.revoked_ms > 0) {
        rta_http_send_error(req, 404, "key_not_found", "no active key with this id",
                            json_pack("{s:s}", "id", id));
        return;
    }
    revoke_job *rj = rta_xcalloc(1, sizeof *rj);
    rj->app = app;
    rj->req = req;
    snprintf(rj->id, sizeof rj->id, "%s", id);
    rj->when_ms = rta_now_ms();
    rj->job.work = revoke_work;
    rj->job.done = revoke_done;
    rj->job.op = "key_revoke";
    if (rta_store_submit(app->store, &rj->job) != 0) {
        free(rj);
        rta_http_send_error(req, 503, "store_busy", "the store queue is full; retry", NULL);
    }
}

/* ---- audit ---- */

typedef struct audit_job {
    rta_store_job job;
    rta_http_req *req;
    rta_audit_filter f;
    char actor[128], action[128], target[256];
    rta_audit_entry *entries;
    size_t n;
} audit_job;

static void audit_work(rta_store *s, rta_store_job *job)
{
    audit_job *aj = (audit_job *)job;
    job->status = s->ops->audit_query(s->db, &aj->f, &aj->entries, &aj->n);
}

static void audit_done(rta_store_job *job)
{
    audit_job *aj = (audit_job *)job;
    if (job->status != 0) {
        rta_http_send_error(aj->req, 503, "store_error", "the audit log could not be read", NULL);
    } else {
        json_t *data = json_array();
        for (size_t i = 0; i < aj->n; i++) {
            rta_audit_entry *e = &aj->entries[i];
            json_array_append_new(
                data,
                json_pack("{s:I,s:o,s:s,s:s,s:o,s:o,s:o,s:O?}", "id", (json_int_t)e->id, "time",
                          iso_or_null(e->time_ms), "actor", e->actor, "action", e->action, "target",
                          e->target ? json_string(e->target) : json_null(), "requestId",
                          e->request_id ? json_string(e->request_id) : json_null(), "sourceIp",
                          e->source_ip ? json_string(e->source_ip) : json_null(), "details",
                          e->details));
        }
        json_t *next = json_null();
        if (aj->n > 0 && (int)aj->n == aj->f.limit) {
            char cur[32];
            snprintf(cur, sizeof cur, "%lld", (long long)aj->entries[aj->n - 1].id);
            json_decref(next);
            next = json_string(cur);
        }
        rta_http_send_json(aj->req, 200,
                           json_pack("{s:o,s:{s:o,s:I}}", "data", data, "meta", "nextCursor", next,
                                     "returned", (json_int_t)aj->n));
    }
    for (size_t i = 0; i < aj->n; i++)
        rta_audit_entry_free_fields(&aj->entries[i]);
    free(aj->entries);
    free(aj);
}

/* Parses an integer query parameter; returns 0 absent, 1 ok, -1 malformed (answered). */
static int int_param(rta_http_req *req, const char *name, long long lo, long long hi,
                     long long *out)
{
    char buf[64];
    if (rta_http_query_param(req, name, buf, sizeof buf) == NULL)
        return 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end != '\0' || v < lo || v > hi) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected an integer in [%lld, %lld]", lo, hi);
        json_t *errors = json_array();
        char path[80];
        snprintf(path, sizeof path, "query.%s", name);
        rta_verr_add(errors, path, "range", msg);
        rta_app_validation_error(req, errors);
        return -1;
    }
    *out = v;
    return 1;
}

/* Time parameter: ISO-8601 or Unix seconds. */
static int time_param(rta_http_req *req, const char *name, int64_t *out_ms)
{
    char buf[64];
    if (rta_http_query_param(req, name, buf, sizeof buf) == NULL)
        return 0;
    char *end;
    long long secs = strtoll(buf, &end, 10);
    if (end != buf && *end == '\0') {
        *out_ms = secs * 1000;
        return 1;
    }
    if (rta_time_parse_iso8601(buf, out_ms) == 0)
        return 1;
    json_t *errors = json_array();
    char path[80];
    snprintf(path, sizeof path, "query.%s", name);
    rta_verr_add(errors, path, "timestamp", "expected ISO-8601 or Unix seconds");
    rta_app_validation_error(req, errors);
    return -1;
}

void api_audit_list(rta_app *app, rta_http_req *req)
{
    audit_job *aj = rta_xcalloc(1, sizeof *aj);
    aj->req = req;
    aj->f.limit = 100;
    long long v;
    int rc;
    if ((rc = int_param(req, "limit", 1, 1000, &v)) < 0)
        goto fail;
    if (rc)
        aj->f.limit = (int)v;
    if ((rc = int_param(req, "cursor", 1, INT64_MAX, &v)) < 0)
        goto fail;
    if (rc)
        aj->f.before_id = v;
    if (time_param(req, "since", &aj->f.since_ms) < 0 ||
        time_param(req, "until", &aj->f.until_ms) < 0)
        goto fail;
    aj->f.actor = rta_http_query_param(req, "actor", aj->actor, sizeof aj->actor);
    aj->f.action = rta_http_query_param(req, "action", aj->action, sizeof aj->action);
    aj->f.target = rta_http_query_param(req, "target", aj->target, sizeof aj->target);
    aj->job.work = audit_work;
    aj->job.done = audit_done;
    aj->job.op = "audit_query";
    if (rta_store_submit(app->store, &aj->job) != 0) {
        free(aj);
        rta_http_send_error(req, 503, "store_busy", "the store queue is full; retry", NULL);
    }
    return;
fail:
    free(aj);
}
