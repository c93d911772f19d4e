/*
 * Retention of alert data: finished deliveries (with their attempts) and the triggers no
 * delivery refers to any more are deleted once older than alerts.retention_days, and the state
 * rows of deleted rules with them; audit log entries once older than audit.retention_days
 * (every subscription change is one, so a busy streaming server writes many). The store does
 * not grow without bound on a busy server.
 *
 * The housekeeping timer calls rta_retention_tick every second; it submits one prune job
 * through the store executor every 10 minutes. A job deletes a bounded number of rows (one
 * short transaction on the store thread); when it used its whole budget the next tick submits
 * another, so a backlog (first start after an upgrade) drains in steps without starving the
 * other store work. One job at a time.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"

#include <stdlib.h>

#define RETENTION_EVERY_MS 600000 /* 10 minutes */
#define RETENTION_BATCH 10000     /* rows per job (attempt rows of the deleted deliveries aside) */

typedef struct prune_job {
    rta_store_job job;
    rta_app *app;
    int64_t before_ms;       /* alerts */
    int64_t audit_before_ms; /* audit log */
    rta_alerts_prune_counts counts;
    int64_t audit_deleted;
} prune_job;

static void prune_work(rta_store *s, rta_store_job *job)
{
    prune_job *p = (prune_job *)job;
    job->status = s->ops->alerts_prune(s->db, p->before_ms, RETENTION_BATCH, &p->counts);
    if (job->status == 0)
        job->status =
            s->ops->audit_prune(s->db, p->audit_before_ms, RETENTION_BATCH, &p->audit_deleted);
}

static void count(rta_app *app, const char *kind, int64_t n)
{
    char labels[64];
    snprintf(labels, sizeof labels, "kind=\"%s\"", kind);
    rta_counter_add(rta_metrics_counter(app->m_alerts_pruned, labels), (double)n);
}

static void prune_done(rta_store_job *job)
{
    prune_job *p = (prune_job *)job;
    rta_app *app = p->app;
    const rta_alerts_prune_counts *c = &p->counts;
    app->retention_inflight = 0;
    app->retention_more = 0;
    if (job->status != 0) {
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, "op=\"alerts_prune\""));
        rta_log(RTA_LOG_ERROR, "retention: prune failed; retrying at the next run", NULL);
    } else {
        app->retention_more = c->more || p->audit_deleted == RETENTION_BATCH;
        rta_counter_add(rta_metrics_counter(app->m_audit_pruned, ""), (double)p->audit_deleted);
        if (p->audit_deleted > 0)
            rta_log(RTA_LOG_INFO, "audit retention: old audit entries deleted", "{s:I,s:I}",
                    "before_ms", (json_int_t)p->audit_before_ms, "entries",
                    (json_int_t)p->audit_deleted);
        count(app, "deliveries", c->deliveries);
        count(app, "attempts", c->attempts);
        count(app, "triggers", c->triggers);
        count(app, "rule_states", c->rule_states);
        if (c->deliveries + c->attempts + c->triggers + c->rule_states > 0)
            rta_log(RTA_LOG_INFO, "alert retention: old alert data deleted",
                    "{s:I,s:I,s:I,s:I,s:I,s:b,s:f}", "before_ms", (json_int_t)p->before_ms,
                    "deliveries", (json_int_t)c->deliveries, "attempts", (json_int_t)c->attempts,
                    "triggers", (json_int_t)c->triggers, "rule_states", (json_int_t)c->rule_states,
                    "more", c->more, "ms", (double)job->work_ns / 1e6);
    }
    free(p);
}

void rta_retention_init(rta_app *app)
{
    app->m_alerts_pruned = rta_metrics_counter_family(
        "rta_alerts_pruned_total", "Alert rows deleted by retention (alerts.retention_days)");
    static const char *const kinds[] = {"deliveries", "attempts", "triggers", "rule_states"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(kinds); i++)
        count(app, kinds[i], 0); /* the series exist (at 0) before the first deletion */
    app->m_audit_pruned = rta_metrics_counter_family(
        "rta_audit_pruned_total", "Audit log entries deleted by retention (audit.retention_days)");
    rta_counter_add(rta_metrics_counter(app->m_audit_pruned, ""), 0);
}

void rta_retention_tick(rta_app *app)
{
    if (app->retention_inflight || app->shutting_down || app->store == NULL)
        return;
    int64_t now = rta_now_ms();
    if (!app->retention_more && app->retention_last_ms != 0 &&
        now - app->retention_last_ms < RETENTION_EVERY_MS)
        return;
    prune_job *p = rta_xcalloc(1, sizeof *p);
    p->app = app;
    p->before_ms = now - app->cfg->alert_retention_days * 86400000LL;
    p->audit_before_ms = now - app->cfg->audit_retention_days * 86400000LL;
    p->job.work = prune_work;
    p->job.done = prune_done;
    p->job.op = "alerts_prune";
    app->retention_last_ms = now;
    if (rta_store_submit(app->store, &p->job) != 0) {
        /* queue full: the store is busy with live work; try again at the next period */
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, "op=\"alerts_prune_queue_full\""));
        app->retention_more = 0;
        free(p);
        return;
    }
    app->retention_inflight = 1;
}
