/*
 * Keeps the in-memory keyring in step with the store: loaded at startup, the admin key
 * bootstrapped on an empty store, and refreshed every few seconds so keys created or revoked
 * by `rtad keys ...` (or another node sharing the store) take effect without a restart.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_all(rta_app *app, rta_key_record *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rta_key *k = rta_keyring_get(app->keys, recs[i].id);
        if (k && k->rec.revoked_ms == recs[i].revoked_ms)
            continue; /* unchanged: keep as is */
        rta_keyring_put(app->keys, &recs[i]);
        if (recs[i].revoked_ms > 0 && app->rt) /* revoked elsewhere (CLI, another node) */
            rta_rt_revoke_key(app->rt, recs[i].id);
    }
}

static void free_all(rta_key_record *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rta_key_record_free_fields(&recs[i]);
    free(recs);
}

int rta_app_keys_load_sync(rta_app *app)
{
    rta_key_record *recs = NULL;
    size_t n = 0;
    if (app->store->ops->key_list(app->store->db, &recs, &n) != 0)
        return -1;
    put_all(app, recs, n);
    free_all(recs, n);
    return 0;
}

int rta_app_keys_bootstrap(rta_app *app)
{
    rta_store *s = app->store;
    int64_t active = 0;
    if (s->ops->key_count(s->db, &active) != 0)
        return -1;
    if (active > 0)
        return 0;
    rta_key_record rec;
    char text[RTA_KEY_TEXT_MAX];
    int64_t now = rta_now_ms();
    int from_env = app->cfg->admin_key[0] != '\0';
    if (from_env) {
        if (rta_key_from_text(app->cfg->admin_key, "admin", "enterprise", "admin", now, &rec) !=
            0) {
            rta_log(RTA_LOG_ERROR, "RTA_ADMIN_KEY is not a well-formed rta key", "{s:s}",
                    "expected", "rta_k<16 hex>_<43 base64url chars>");
            return -1;
        }
    } else {
        rta_key_generate("admin", "enterprise", "admin", "bootstrap", now, &rec, text);
    }
    int rc = s->ops->user_ensure(s->db, "admin", now);
    if (rc == 0)
        rc = s->ops->key_insert(s->db, &rec);
    if (rc == 0) {
        rta_keyring_put(app->keys, &rec);
        rta_store_audit(s, "system", "key.bootstrap", rec.id, NULL, NULL,
                        json_pack("{s:s}", "source", from_env ? "RTA_ADMIN_KEY" : "generated"));
        rta_log(RTA_LOG_INFO, "admin key bootstrapped", "{s:s,s:s}", "key_id", rec.id, "source",
                from_env ? "RTA_ADMIN_KEY" : "generated");
        if (!from_env) {
            /* shown once, on stdout, apart from the logs */
            printf("\nrtad: created the admin key (shown once, store it now):\n\n    %s\n\n", text);
            fflush(stdout);
        }
    }
    rta_key_record_free_fields(&rec);
    return rc;
}

typedef struct refresh_job {
    rta_store_job job;
    rta_app *app;
    rta_key_record *recs;
    size_t n;
} refresh_job;

static void refresh_work(rta_store *s, rta_store_job *job)
{
    refresh_job *rj = (refresh_job *)job;
    job->status = s->ops->key_list(s->db, &rj->recs, &rj->n);
}

static void refresh_done(rta_store_job *job)
{
    refresh_job *rj = (refresh_job *)job;
    rj->app->keys_inflight = 0;
    if (job->status == 0)
        put_all(rj->app, rj->recs, rj->n);
    free_all(rj->recs, rj->n);
    free(rj);
}

void rta_app_keys_refresh(rta_app *app)
{
    if (app->keys_inflight)
        return;
    refresh_job *rj = rta_xcalloc(1, sizeof *rj);
    rj->app = app;
    rj->job.work = refresh_work;
    rj->job.done = refresh_done;
    rj->job.op = "key_list";
    if (rta_store_submit(app->store, &rj->job) != 0) {
        free(rj);
        return;
    }
    app->keys_inflight = 1;
}
