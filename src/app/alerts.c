/*
 * Alerting glue: evaluates rules on every bus event, turns triggers into durable outbox rows
 * (trigger + deliveries + rule state in one store transaction), and runs the outbox worker
 * that leases due deliveries, sends them through the notification channels and records every
 * attempt with its outcome and the next retry.
 *
 * Durability: a delivery is only sent after its row is committed; the row is leased while in
 * flight; a crash leaves it leased, and it becomes claimable again when the lease expires
 * (alerts.lease_ms). So every notification is delivered at least once, and a duplicate carries
 * the same delivery id.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#define CLAIM_BATCH 64

struct prefs_entry {
    char *user_id;
    json_t *prefs;
    UT_hash_handle hh;
};

static const char *channel_names[] = {"email", "webhook", "push"};

/* ---------- preferences ---------- */

json_t *rta_alerts_prefs(rta_app *app, const char *user_id)
{
    prefs_entry *p;
    HASH_FIND_STR(app->prefs, user_id, p);
    return p ? p->prefs : NULL;
}

void rta_alerts_prefs_set(rta_app *app, const char *user_id, json_t *prefs)
{
    prefs_entry *p;
    HASH_FIND_STR(app->prefs, user_id, p);
    if (p == NULL) {
        p = rta_xcalloc(1, sizeof *p);
        p->user_id = rta_strdup(user_id);
        HASH_ADD_KEYPTR(hh, app->prefs, p->user_id, strlen(p->user_id), p);
    } else {
        json_decref(p->prefs);
    }
    p->prefs = prefs;
}

static int channel_enabled(json_t *prefs, const char *channel)
{
    json_t *c = json_object_get(json_object_get(prefs, "channels"), channel);
    return c == NULL || json_is_true(c);
}

/* Minutes since midnight in tz at now_ms; -1 when tz is unknown. */
static int local_minutes(const char *tz, int64_t now_ms)
{
    char path[256];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", tz);
    if (strstr(tz, "..") || access(path, R_OK) != 0)
        return strcmp(tz, "UTC") == 0 ? (int)((now_ms / 60000) % 1440) : -1;
    char *old = getenv("TZ") ? rta_strdup(getenv("TZ")) : NULL;
    setenv("TZ", tz, 1);
    tzset();
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    if (old) {
        setenv("TZ", old, 1);
        free(old);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return tm.tm_hour * 60 + tm.tm_min;
}

static int parse_hhmm(const char *s)
{
    int h, m;
    if (s == NULL || sscanf(s, "%2d:%2d", &h, &m) != 2 || h < 0 || h > 23 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

int rta_alerts_valid_timezone(const char *tz)
{
    return tz && tz[0] && strlen(tz) < 64 && local_minutes(tz, 0) >= 0;
}

/* When quiet hours apply now, returns the ms until they end (> 0); else 0. */
static int64_t quiet_delay_ms(json_t *prefs, int64_t now_ms)
{
    json_t *q = json_object_get(prefs, "quietHours");
    if (!json_is_object(q) || json_is_false(json_object_get(q, "enabled")))
        return 0;
    int start = parse_hhmm(json_string_value(json_object_get(q, "start")));
    int end = parse_hhmm(json_string_value(json_object_get(q, "end")));
    const char *tz = json_string_value(json_object_get(q, "timezone"));
    int now = local_minutes(tz ? tz : "UTC", now_ms);
    if (start < 0 || end < 0 || now < 0 || start == end)
        return 0;
    int inside = start < end ? (now >= start && now < end) : (now >= start || now < end);
    if (!inside)
        return 0;
    int minutes = (end - now + 1440) % 1440;
    return (int64_t)minutes * 60000 - (now_ms % 60000);
}

/* ---------- triggers -> outbox ---------- */

/* One trigger to persist: rule state + trigger + its deliveries. */
typedef struct trigger_job {
    rta_app *app;
    rta_trigger_record trig;
    rta_delivery_record *dels;
    size_t ndels;
    char *rule_id_state, *series_state;
    int firing;
    int64_t notified_ms;
} trigger_job;

/* One delivery attempt to record. */
typedef struct attempt_job {
    rta_attempt_record a;
    char *status;
    int64_t next_ms;
} attempt_job;

/* The outbox writes of one loop turn, in one transaction: every trigger decided and every
 * attempt finished since the last flush. Batching is what keeps the per-notification cost of
 * the store low under bursts (one commit instead of one per trigger and per attempt). */
typedef struct outbox_batch {
    rta_store_job job;
    rta_app *app;
    trigger_job **trigs;
    size_t ntrigs, captrigs;
    attempt_job **atts;
    size_t natts, capatts;
    size_t attempt_errors;
    /* ingest answers held until these triggers are durable */
    rta_http_req **waiters;
    json_t **answers;
    size_t nwaiters;
} outbox_batch;

#define BATCH_FLUSH_AT 512 /* items: flush at once past this, else at the end of the turn */

static int trigger_apply(rta_store *s, const trigger_job *tj)
{
    void *db = s->db;
    int rc = s->ops->rule_state_put(db, tj->rule_id_state, tj->series_state, tj->firing,
                                    tj->notified_ms);
    if (rc == 0)
        rc = s->ops->trigger_insert(db, &tj->trig);
    for (size_t i = 0; rc == 0 && i < tj->ndels; i++)
        rc = s->ops->delivery_insert(db, &tj->dels[i]);
    return rc;
}

static void batch_work(rta_store *s, rta_store_job *job)
{
    outbox_batch *b = (outbox_batch *)job;
    void *db = s->db;
    int rc = s->ops->begin(db);
    for (size_t i = 0; rc == 0 && i < b->ntrigs; i++)
        rc = trigger_apply(s, b->trigs[i]);
    /* an attempt that cannot be recorded (its lease was taken over meanwhile) only loses its
     * own row: the delivery is tried again when the lease expires */
    for (size_t i = 0; rc == 0 && i < b->natts; i++)
        if (s->ops->delivery_record_attempt(db, &b->atts[i]->a, b->atts[i]->status,
                                            b->atts[i]->next_ms) != 0)
            b->attempt_errors++;
    if (rc == 0)
        rc = s->ops->commit(db);
    else
        s->ops->rollback(db);
    job->status = rc;
}

static void trigger_job_free(trigger_job *tj)
{
    rta_trigger_record_free_fields(&tj->trig);
    for (size_t i = 0; i < tj->ndels; i++)
        rta_delivery_record_free_fields(&tj->dels[i]);
    free(tj->dels);
    free(tj->rule_id_state);
    free(tj->series_state);
    free(tj);
}

static void attempt_job_free(attempt_job *aj)
{
    rta_attempt_record_free_fields(&aj->a);
    free(aj->status);
    free(aj);
}

static void batch_done(rta_store_job *job)
{
    outbox_batch *b = (outbox_batch *)job;
    rta_app *app = b->app;
    if (job->status != 0) {
        rta_counter_add(rta_metrics_counter(app->m_store_errors, "op=\"trigger\""),
                        (double)b->ntrigs);
        for (size_t i = 0; i < b->ntrigs; i++)
            rta_log(RTA_LOG_ERROR, "alert trigger could not be stored", "{s:s,s:s,s:s}", "rule_id",
                    b->trigs[i]->trig.rule_id, "event_id", b->trigs[i]->trig.event_id, "trigger_id",
                    b->trigs[i]->trig.id);
    }
    if (b->attempt_errors)
        rta_counter_add(rta_metrics_counter(app->m_store_errors, "op=\"attempt\""),
                        (double)b->attempt_errors);
    for (size_t i = 0; i < b->nwaiters; i++) /* the ingest is acknowledged now */
        rta_http_send_json(b->waiters[i], 200, b->answers[i]);
    free(b->waiters);
    free(b->answers);
    for (size_t i = 0; i < b->ntrigs; i++)
        trigger_job_free(b->trigs[i]);
    for (size_t i = 0; i < b->natts; i++)
        attempt_job_free(b->atts[i]);
    free(b->trigs);
    free(b->atts);
    int had_triggers = b->ntrigs > 0 && job->status == 0;
    free(b);
    if (had_triggers)
        rta_alerts_kick(app);
}

/* Submits what the current batch holds. */
static void batch_flush(rta_app *app)
{
    outbox_batch *b = app->outbox_batch;
    if (b == NULL)
        return;
    app->outbox_batch = NULL;
    b->job.work = batch_work;
    b->job.done = batch_done;
    b->job.op = "outbox_write";
    if (rta_store_submit_critical(app->store, &b->job) != 0) {
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, "op=\"outbox_queue_full\""));
        rta_log(RTA_LOG_ERROR, "outbox batch dropped: store queue full", "{s:I,s:I}", "triggers",
                (json_int_t)b->ntrigs, "attempts", (json_int_t)b->natts);
        b->job.status = -1;
        batch_done(&b->job);
    }
}

static void on_batch_timer(uv_timer_t *t)
{
    batch_flush(t->data);
}

static outbox_batch *batch_get(rta_app *app)
{
    if (app->outbox_batch == NULL) {
        app->outbox_batch = rta_xcalloc(1, sizeof(outbox_batch));
        ((outbox_batch *)app->outbox_batch)->app = app;
        uv_timer_start(&app->batch_timer, on_batch_timer, 0, 0); /* end of this loop turn */
    }
    return app->outbox_batch;
}

static void batch_add_trigger(rta_app *app, trigger_job *tj)
{
    app->triggers_queued++;
    outbox_batch *b = batch_get(app);
    if (b->ntrigs == b->captrigs) {
        b->captrigs = b->captrigs ? b->captrigs * 2 : 16;
        b->trigs = rta_xrealloc(b->trigs, b->captrigs * sizeof *b->trigs);
    }
    b->trigs[b->ntrigs++] = tj;
    if (b->ntrigs + b->natts >= BATCH_FLUSH_AT)
        batch_flush(app);
}

static void batch_add_attempt(rta_app *app, attempt_job *aj)
{
    outbox_batch *b = batch_get(app);
    if (b->natts == b->capatts) {
        b->capatts = b->capatts ? b->capatts * 2 : 16;
        b->atts = rta_xrealloc(b->atts, b->capatts * sizeof *b->atts);
    }
    b->atts[b->natts++] = aj;
    if (b->ntrigs + b->natts >= BATCH_FLUSH_AT)
        batch_flush(app);
}

static json_t *template_vars(const rta_alert_trigger *t, const rta_event *e)
{
    const rta_alert_rule *r = t->rule;
    const rta_alert_condition *c = &r->conditions[0];
    static const char *metric_names[] = {"tvl", "price", "change_1h", "change_24h", "change_7d"};
    char when[40], value[64], prev[64], change[64], thr[64];
    rta_time_iso8601(t->at_ms, when, sizeof when);
    snprintf(value, sizeof value, "%.10g", t->value);
    snprintf(prev, sizeof prev, isfinite(t->previous) ? "%.10g" : "n/a", t->previous);
    double ch = isfinite(e->change) ? e->change * 100.0 : NAN;
    snprintf(change, sizeof change, isfinite(ch) ? "%+.2f%%" : "n/a", ch);
    snprintf(thr, sizeof thr, "%.10g", c->threshold);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "rule", r->name,
                     "protocol", e->type == RTA_EVENT_PRICE_CHANGE ? "" : e->protocol, "chain",
                     e->chain ? e->chain : "", "token", e->token ? e->token : "", "metric",
                     metric_names[c->metric], "value", value, "previous", prev, "change", change,
                     "threshold", thr, "time", when, "event_id", t->event_id, "state",
                     t->resolved ? "resolved" : "firing");
}

typedef struct eval_ctx {
    rta_app *app;
    const rta_event *e;
} eval_ctx;

static void on_trigger(void *ud, const rta_alert_trigger *t)
{
    eval_ctx *ec = ud;
    rta_app *app = ec->app;
    const rta_event *e = ec->e;
    const rta_alert_rule *r = t->rule;
    int64_t now = t->at_ms;
    const char *state = t->resolved ? "resolved" : "firing";

    trigger_job *tj = rta_xcalloc(1, sizeof *tj);
    tj->app = app;
    char tid[37];
    rta_uuid_v7(tid);
    json_t *event_json = rta_event_to_json(e);
    json_t *rule_json = json_pack("{s:s,s:s}", "id", r->id, "name", r->name);
    json_t *payload =
        json_pack("{s:O,s:O,s:s,s:s,s:o,s:o}", "rule", rule_json, "event", event_json, "series",
                  t->series, "state", state, "value", rta_json_number_or_null(t->value), "previous",
                  rta_json_number_or_null(t->previous));
    tj->trig = (rta_trigger_record){
        .id = rta_strdup(tid),
        .rule_id = rta_strdup(r->id),
        .user_id = rta_strdup(r->user_id),
        .series = rta_strdup(t->series),
        .state = rta_strdup(state),
        .value = t->value,
        .event_id = rta_strdup(t->event_id),
        .event_offset = (int64_t)t->event_offset,
        .at_ms = now,
        .payload = json_dumps(payload, JSON_COMPACT),
    };
    tj->rule_id_state = rta_strdup(r->id);
    tj->series_state = rta_strdup(t->series);
    tj->firing = !t->resolved;
    tj->notified_ms = now;

    json_t *prefs = rta_alerts_prefs(app, r->user_id);
    int64_t quiet = quiet_delay_ms(prefs, now);
    json_t *vars = template_vars(t, e);
    tj->dels = rta_xcalloc(r->nactions ? r->nactions : 1, sizeof *tj->dels);
    for (size_t i = 0; i < r->nactions; i++) {
        const rta_alert_action *a = &r->actions[i];
        const char *channel = channel_names[a->type];
        char did[37];
        rta_uuid_v7(did);
        char *subject = NULL, *text = NULL;
        const char *tmpl = a->template_name;
        if (tmpl == NULL)
            tmpl = e->type == RTA_EVENT_PRICE_CHANGE ? "price_change"
                   : e->type == RTA_EVENT_TVL_CHANGE ? "tvl_change"
                                                     : "default";
        rta_alert_template_render(tmpl, vars, &subject, &text);
        char ts[40];
        rta_time_iso8601(now, ts, sizeof ts);
        json_t *hook =
            json_pack("{s:s,s:s,s:{s:O,s:O,s:s,s:s,s:o,s:o,s:s,s:s}}", "type",
                      t->resolved ? "alert.resolved" : "alert.firing", "timestamp", ts, "data",
                      "rule", rule_json, "event", event_json, "series", t->series, "state", state,
                      "value", rta_json_number_or_null(t->value), "previous",
                      rta_json_number_or_null(t->previous), "triggerId", tid, "deliveryId", did);
        char *hook_text = json_dumps(hook, JSON_COMPACT);
        json_t *dp = json_pack("{s:s,s:s,s:s,s:s?}", "subject", subject, "text", text, "body_json",
                               hook_text, "secret", a->secret);
        const char *status = "pending";
        char note[160] = "";
        int64_t next = now;
        if (!channel_enabled(prefs, channel)) {
            status = "suppressed";
            snprintf(note, sizeof note, "%s notifications are off in the user's preferences",
                     channel);
        } else if (rta_alerts_target_disabled(app, channel, a->target)) {
            status = "disabled";
            snprintf(note, sizeof note, "target disabled after a permanent refusal");
        } else if (quiet > 0 && a->type != RTA_ACTION_WEBHOOK) {
            next = now + quiet;
            char until[40];
            rta_time_iso8601(next, until, sizeof until);
            snprintf(note, sizeof note, "delayed by quiet hours until %s", until);
        }
        tj->dels[tj->ndels++] = (rta_delivery_record){
            .id = rta_strdup(did),
            .trigger_id = rta_strdup(tid),
            .rule_id = rta_strdup(r->id),
            .user_id = rta_strdup(r->user_id),
            .channel = rta_strdup(channel),
            .target = rta_strdup(a->target),
            .status = rta_strdup(status),
            .next_attempt_ms = next,
            .created_ms = now,
            .updated_ms = now,
            .note = note[0] ? rta_strdup(note) : NULL,
            .payload = json_dumps(dp, JSON_COMPACT),
        };
        char labels[96];
        snprintf(labels, sizeof labels, "channel=\"%s\",status=\"%s\"", channel, status);
        if (strcmp(status, "pending") != 0)
            rta_counter_inc(rta_metrics_counter(app->m_notifications, labels));
        json_decref(dp);
        free(hook_text);
        json_decref(hook);
        free(subject);
        free(text);
    }
    json_decref(vars);
    json_decref(payload);
    json_decref(rule_json);
    json_decref(event_json);

    char labels[64];
    snprintf(labels, sizeof labels, "state=\"%s\"", state);
    rta_counter_inc(rta_metrics_counter(app->m_triggers, labels));
    rta_log(RTA_LOG_INFO, "alert triggered", "{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "event_id",
            t->event_id, "rule_id", r->id, "trigger_id", tid, "series", t->series, "state", state,
            "offset", (json_int_t)t->event_offset, "deliveries", (json_int_t)tj->ndels);

    /* the owner's live sockets hear about it at once */
    json_t *live =
        json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:I}", "ruleId", r->id, "name", r->name, "state", state,
                  "series", t->series, "value", rta_json_number_or_null(t->value), "eventId",
                  t->event_id, "offset", (json_int_t)t->event_offset);
    rta_rt_notify_user(app->rt, r->user_id, "alert", live);
    json_decref(live);

    batch_add_trigger(app, tj);
}

void rta_alerts_on_event(void *ud, rta_event *e)
{
    rta_app *app = ud;
    eval_ctx ec = {app, e};
    size_t n = rta_alert_engine_evaluate(app->alerts, app->state, e, rta_now_ms(), on_trigger, &ec);
    if (n)
        rta_counter_add(app->m_evaluations, (double)n);
}

/* ---------- disabled targets (webhook 410, FCM unregistered) ---------- */

struct disabled_target {
    char *key; /* "channel\ttarget" */
    UT_hash_handle hh;
};

int rta_alerts_target_disabled(rta_app *app, const char *channel, const char *target)
{
    char key[4200];
    snprintf(key, sizeof key, "%s\t%s", channel, target);
    disabled_target *d;
    HASH_FIND_STR(app->disabled_targets, key, d);
    return d != NULL;
}

#define MAX_DISABLED_TARGETS 100000

typedef struct kv_job {
    rta_store_job job;
    char *value;
} kv_job;

static void kv_work(rta_store *s, rta_store_job *job)
{
    job->status = s->ops->kv_set(s->db, "disabled_targets", ((kv_job *)job)->value);
}

static void kv_done(rta_store_job *job)
{
    free(((kv_job *)job)->value);
    free(job);
}

/* Writes the whole set (small: targets refused permanently) so a restart keeps it. */
static void save_disabled_targets(rta_app *app)
{
    json_t *arr = json_array();
    for (disabled_target *d = app->disabled_targets; d; d = d->hh.next)
        json_array_append_new(arr, json_string(d->key));
    kv_job *k = rta_xcalloc(1, sizeof *k);
    k->value = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    k->job.work = kv_work;
    k->job.done = kv_done;
    k->job.op = "kv_set";
    if (rta_store_submit_critical(app->store, &k->job) != 0)
        kv_done(&k->job);
}

static void add_disabled(rta_app *app, const char *key)
{
    disabled_target *d = rta_xcalloc(1, sizeof *d);
    d->key = rta_strdup(key);
    HASH_ADD_KEYPTR(hh, app->disabled_targets, d->key, strlen(d->key), d);
}

static void disable_target(rta_app *app, const char *channel, const char *target)
{
    if (rta_alerts_target_disabled(app, channel, target) ||
        HASH_COUNT(app->disabled_targets) >= MAX_DISABLED_TARGETS)
        return;
    size_t n = strlen(channel) + strlen(target) + 2;
    char *key = rta_xmalloc(n);
    snprintf(key, n, "%s\t%s", channel, target);
    add_disabled(app, key);
    free(key);
    save_disabled_targets(app);
    rta_store_audit(app->store, "system", "alert.target_disabled", target, NULL, NULL,
                    json_pack("{s:s}", "channel", channel));
    rta_log(RTA_LOG_WARN, "notification target disabled", "{s:s,s:s}", "channel", channel, "target",
            target);
}

/* ---------- the outbox worker ---------- */

/* A delivery being sent. */
typedef struct in_flight {
    rta_app *app;
    rta_delivery_record d;
    json_t *payload;
    uint64_t started_ns;
} in_flight;

static int64_t retry_delay_ms(rta_app *app, int attempt_done_count)
{
    /* schedule[i] = delay before attempt i+1; attempt_done_count attempts made so far */
    const char *p = app->cfg->alert_retry_schedule;
    int i = 0;
    long v = -1;
    while (*p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (i == attempt_done_count) {
            v = x;
            break;
        }
        i++;
        p = *end ? end + 1 : end;
    }
    if (v < 0)
        return -1; /* no attempts left */
    unsigned char r[2];
    rta_random_bytes(r, 2);
    double jitter = 0.9 + 0.2 * ((double)(r[0] << 8 | r[1]) / 65535.0); /* +-10% */
    return (int64_t)((double)v * 1000.0 * jitter);
}

static void on_sent(void *ud, const rta_notify_result *res)
{
    in_flight *f = ud;
    rta_app *app = f->app;
    app->outbox_in_flight--;
    rta_delivery_record *d = &f->d;
    int attempt = d->attempts + 1;
    int64_t now = rta_now_ms();
    const char *status, *outcome;
    int64_t next = 0;
    switch (res->outcome) {
    case RTA_NOTIFY_OK:
        status = "delivered";
        outcome = "success";
        break;
    case RTA_NOTIFY_PERMANENT:
        status = "dead";
        outcome = "dead";
        break;
    case RTA_NOTIFY_DISABLE_TARGET:
        status = "disabled";
        outcome = "disabled";
        disable_target(app, d->channel, d->target);
        break;
    default: {
        int64_t delay = retry_delay_ms(app, attempt);
        if (delay < 0) {
            status = "dead";
            outcome = "dead";
        } else {
            if (res->retry_after_ms > delay)
                delay = res->retry_after_ms;
            status = "pending";
            outcome = "retry";
            next = now + delay;
        }
    }
    }
    char labels[96];
    snprintf(labels, sizeof labels, "channel=\"%s\",status=\"%s\"", d->channel, status);
    rta_counter_inc(rta_metrics_counter(app->m_notifications, labels));
    int delivered = res->outcome == RTA_NOTIFY_OK;
    if (next != 0)
        rta_counter_inc(rta_metrics_counter(app->m_retries, ""));
    else if (!delivered && res->outcome != RTA_NOTIFY_DISABLE_TARGET)
        rta_counter_inc(rta_metrics_counter(app->m_dead, ""));
    if (delivered) {
        snprintf(labels, sizeof labels, "channel=\"%s\"", d->channel);
        rta_histogram_observe(rta_metrics_histogram(app->m_delivery_latency, labels),
                              (double)(now - d->created_ms) / 1000.0);
    }
    rta_log(delivered ? RTA_LOG_INFO : RTA_LOG_WARN, "delivery attempt",
            "{s:s,s:s,s:s,s:s,s:i,s:s,s:i,s:I,s:s}", "delivery_id", d->id, "rule_id", d->rule_id,
            "trigger_id", d->trigger_id, "channel", d->channel, "attempt", attempt, "outcome",
            outcome, "status_code", res->status_code, "latency_ms", (json_int_t)res->latency_ms,
            "error", res->error);
    attempt_job *aj = rta_xcalloc(1, sizeof *aj);
    aj->a = (rta_attempt_record){
        .delivery_id = rta_strdup(d->id),
        .attempt = attempt,
        .at_ms = now,
        .latency_ms = res->latency_ms,
        .status_code = res->status_code,
        .outcome = rta_strdup(outcome),
        .error = res->error[0] ? rta_strdup(res->error) : NULL,
    };
    aj->status = rta_strdup(status);
    aj->next_ms = next;
    batch_add_attempt(app, aj);
    rta_delivery_record_free_fields(d);
    json_decref(f->payload);
    free(f);
    rta_alerts_kick(app);
}

static void send_one(rta_app *app, rta_delivery_record *d)
{
    in_flight *f = rta_xcalloc(1, sizeof *f);
    f->app = app;
    f->d = *d; /* takes over the fields */
    memset(d, 0, sizeof *d);
    f->payload = json_loads(f->d.payload ? f->d.payload : "{}", 0, NULL);
    rta_notify_request req = {
        .channel = strcmp(f->d.channel, "email") == 0     ? RTA_CHANNEL_EMAIL
                   : strcmp(f->d.channel, "webhook") == 0 ? RTA_CHANNEL_WEBHOOK
                                                          : RTA_CHANNEL_PUSH,
        .delivery_id = f->d.id,
        .target = f->d.target,
        .attempt = f->d.attempts + 1,
        .timestamp_s = rta_now_ms() / 1000,
        .body_json = json_string_value(json_object_get(f->payload, "body_json")),
        .secret = json_string_value(json_object_get(f->payload, "secret")),
        .subject = json_string_value(json_object_get(f->payload, "subject")),
        .text = json_string_value(json_object_get(f->payload, "text")),
    };
    app->outbox_in_flight++;
    if (rta_notify_send(app->notify, &req, on_sent, f) != 0) {
        rta_notify_result r = {.outcome = RTA_NOTIFY_RETRY, .retry_after_ms = -1};
        snprintf(r.error, sizeof r.error, "too many notifications in flight");
        on_sent(f, &r);
    }
}

typedef struct claim_job {
    rta_store_job job;
    rta_app *app;
    size_t max;
    int64_t now;
    rta_delivery_record *dels;
    size_t n;
} claim_job;

static void claim_work(rta_store *s, rta_store_job *job)
{
    claim_job *cj = (claim_job *)job;
    job->status = s->ops->deliveries_claim(s->db, cj->now, cj->now + cj->app->cfg->alert_lease_ms,
                                           cj->max, &cj->dels, &cj->n);
}

static void claim_done(rta_store_job *job)
{
    claim_job *cj = (claim_job *)job;
    rta_app *app = cj->app;
    app->outbox_claiming = 0;
    if (job->status == 0) {
        for (size_t i = 0; i < cj->n; i++) {
            if (app->shutting_down) /* leave it leased: the next start takes it */
                rta_delivery_record_free_fields(&cj->dels[i]);
            else
                send_one(app, &cj->dels[i]);
        }
    }
    free(cj->dels);
    int full = job->status == 0 && cj->n == cj->max;
    free(cj);
    if (full)
        rta_alerts_kick(app);
}

void rta_alerts_kick(rta_app *app)
{
    if (app->outbox_claiming || app->shutting_down || app->notify == NULL)
        return;
    int64_t room = app->cfg->alert_max_in_flight - (int64_t)app->outbox_in_flight;
    if (room <= 0)
        return;
    claim_job *cj = rta_xcalloc(1, sizeof *cj);
    cj->app = app;
    cj->max = room < CLAIM_BATCH ? (size_t)room : CLAIM_BATCH;
    cj->now = rta_now_ms();
    cj->job.work = claim_work;
    cj->job.done = claim_done;
    cj->job.op = "delivery_claim";
    if (rta_store_submit(app->store, &cj->job) != 0) {
        free(cj);
        return;
    }
    app->outbox_claiming = 1;
}

static void on_outbox_tick(uv_timer_t *t)
{
    rta_alerts_kick(t->data);
}

/* ---------- startup ---------- */

static int load_rule(void *ud, const char *rule_id, const char *user_id, const char *body_json)
{
    rta_app *app = ud;
    json_t *j = json_loads(body_json, 0, NULL);
    rta_alert_rule *r = j ? rta_alert_rule_from_storage(j) : NULL;
    json_decref(j);
    if (r == NULL) {
        rta_log(RTA_LOG_ERROR, "stored alert rule unreadable; skipped", "{s:s,s:s}", "rule_id",
                rule_id, "user_id", user_id);
        return 0;
    }
    rta_alert_engine_put(app->alerts, r);
    rta_alert_rule_free(r);
    if (rta_alerts_prefs(app, user_id) == NULL) { /* startup: read the owner's preferences */
        char *text = NULL;
        if (app->store->ops->prefs_get(app->store->db, user_id, &text) == 0 && text) {
            json_t *p = json_loads(text, 0, NULL);
            if (p)
                rta_alerts_prefs_set(app, user_id, p);
        }
        free(text);
    }
    return 0;
}

static int load_state(void *ud, const char *rule_id, const char *series, int firing,
                      int64_t last_notified_ms)
{
    rta_app *app = ud;
    rta_alert_engine_restore_state(app->alerts, rule_id, series, firing != 0, last_notified_ms);
    return 0;
}

int rta_alerts_init(rta_app *app)
{
    rta_config *cfg = app->cfg;
    app->alerts = rta_alert_engine_new();
    rta_store *s = app->store;
    if (s->ops->rules_load(s->db, load_rule, app) != 0 ||
        s->ops->rule_states_load(s->db, load_state, app) != 0)
        return -1;
    char *disabled = NULL;
    if (s->ops->kv_get(s->db, "disabled_targets", &disabled) == 0 && disabled) {
        json_t *arr = json_loads(disabled, 0, NULL);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) if (json_is_string(v))
            add_disabled(app, json_string_value(v));
        json_decref(arr);
    }
    free(disabled);
    rta_notify_options no = {
        .webhook_timeout_ms = (uint64_t)cfg->webhook_timeout_ms,
        .allow_private_targets = cfg->webhook_allow_private,
        .smtp_url = cfg->smtp_url[0] ? cfg->smtp_url : NULL,
        .smtp_starttls = cfg->smtp_starttls,
        .smtp_insecure = cfg->smtp_insecure,
        .smtp_user = cfg->smtp_user[0] ? cfg->smtp_user : NULL,
        .smtp_password = cfg->smtp_password[0] ? cfg->smtp_password : NULL,
        .mail_from = cfg->smtp_from,
        .fcm_base_url = cfg->fcm_base_url,
        .fcm_project = cfg->fcm_project[0] ? cfg->fcm_project : NULL,
        .fcm_token = cfg->fcm_token[0] ? cfg->fcm_token : NULL,
        .breaker_failures = 5,
        .breaker_open_ms = 60000,
        .max_in_flight = (size_t)cfg->alert_max_in_flight,
    };
    char unsub[512];
    snprintf(unsub, sizeof unsub, "%s/v1/users/me/preferences", cfg->public_url);
    no.unsubscribe_url = unsub;
    app->notify = rta_notify_new(app->loop, &no);
    app->m_evaluations = rta_metrics_counter(
        rta_metrics_counter_family("rta_alert_evaluations_total", "Rule evaluations"), "");
    app->m_triggers = rta_metrics_counter_family("rta_alert_triggers_total",
                                                 "Rule firings and resolutions, by state");
    app->m_notifications = rta_metrics_counter_family("rta_alert_notifications_total",
                                                      "Delivery outcomes, by channel and status");
    app->m_retries = rta_metrics_counter_family("rta_alert_retries_total",
                                                "Delivery attempts that will be retried");
    app->m_dead =
        rta_metrics_counter_family("rta_alert_dead_letters_total", "Deliveries that gave up");
    app->m_delivery_latency = rta_metrics_histogram_family(
        "rta_alert_delivery_seconds", "Trigger to successful delivery, by channel", NULL, 0);
    uv_timer_init(app->loop, &app->outbox_timer);
    app->outbox_timer.data = app;
    uv_timer_init(app->loop, &app->batch_timer);
    app->batch_timer.data = app;
    rta_log(RTA_LOG_INFO, "alert rules loaded", "{s:I,s:I}", "rules",
            (json_int_t)rta_alert_engine_count(app->alerts), "active",
            (json_int_t)rta_alert_engine_active(app->alerts));
    return 0;
}

void rta_alerts_start(rta_app *app)
{
    uv_timer_start(&app->outbox_timer, on_outbox_tick, 0, (uint64_t)app->cfg->alert_poll_ms);
}

void rta_alerts_stop(rta_app *app)
{
    uv_timer_stop(&app->outbox_timer);
    if (!uv_is_closing((uv_handle_t *)&app->outbox_timer)) {
        uv_close((uv_handle_t *)&app->outbox_timer, NULL);
        uv_close((uv_handle_t *)&app->batch_timer, NULL);
    }
}

void rta_alerts_flush(rta_app *app)
{
    batch_flush(app);
}

void rta_alerts_answer_when_durable(rta_app *app, rta_http_req *req, json_t *answer)
{
    outbox_batch *b = batch_get(app);
    b->waiters = rta_xrealloc(b->waiters, (b->nwaiters + 1) * sizeof *b->waiters);
    b->answers = rta_xrealloc(b->answers, (b->nwaiters + 1) * sizeof *b->answers);
    b->waiters[b->nwaiters] = req;
    b->answers[b->nwaiters] = answer;
    b->nwaiters++;
    batch_flush(app); /* now: the client is waiting */
}

void rta_alerts_free(rta_app *app)
{
    if (app->notify)
        rta_notify_free(app->notify);
    if (app->alerts)
        rta_alert_engine_free(app->alerts);
    prefs_entry *p, *pt;
    HASH_ITER(hh, app->prefs, p, pt)
    {
        HASH_DEL(app->prefs, p);
        json_decref(p->prefs);
        free(p->user_id);
        free(p);
    }
    disabled_target *d, *dt;
    HASH_ITER(hh, app->disabled_targets, d, dt)
    {
        HASH_DEL(app->disabled_targets, d);
        free(d->key);
        free(d);
    }
}
