/*
 * The store executor: runs storage work off the event loop.
 *
 * One worker thread per store owns the backend connection after rta_store_start(). Callers
 * on the loop thread submit rta_store_job's into a bounded FIFO (mutex + condition variable);
 * the worker runs job->work in submission order, moves each finished job to a "done" list and
 * wakes the loop with a uv_async_t. The async callback runs the observer and job->done on the
 * loop thread, in the same order. The bound (max_queue) counts jobs from submit until their
 * done callback ran, so a stalled loop also pushes back on submitters.
 *
 * Shutdown (rta_store_close) lets the worker finish everything queued, joins it, runs the
 * remaining done callbacks on the calling thread, then uv_close()s the async handle; its
 * memory is freed in the close callback, so the caller must let the loop run once more
 * (uv_run) before uv_loop_close(), as for any libuv handle. This keeps close callable from
 * inside a loop callback (no nested uv_run).
 */
#include "rta/log.h"
#include "rta/store.h"
#include "rta/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct store_exec {
    uv_loop_t *loop;
    uv_async_t *async; /* heap: freed in its close callback, which may run after s is gone */
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    /* Under mu: */
    rta_store_job *q_head, *q_tail; /* waiting for the worker */
    rta_store_job *d_head, *d_tail; /* worked, waiting for done on the loop */
    size_t pending;                 /* submitted and done not yet run */
    int stopping;
    /* Loop thread only: */
    size_t max_queue;
    int started;
    int closing;
    rta_store_observer observer;
    void *observer_ud;
} store_exec;

void rta_key_record_free_fields(rta_key_record *k)
{
    if (k == NULL)
        return;
    free(k->id);
    free(k->user_id);
    free(k->tier);
    free(k->role);
    free(k->label);
    k->id = k->user_id = k->tier = k->role = k->label = NULL;
}

void rta_audit_entry_free_fields(rta_audit_entry *e)
{
    if (e == NULL)
        return;
    free(e->actor);
    free(e->action);
    free(e->target);
    free(e->request_id);
    free(e->source_ip);
    json_decref(e->details);
    e->actor = e->action = e->target = e->request_id = e->source_ip = NULL;
    e->details = NULL;
}

void rta_trigger_record_free_fields(rta_trigger_record *t)
{
    if (t == NULL)
        return;
    free(t->id);
    free(t->rule_id);
    free(t->user_id);
    free(t->series);
    free(t->state);
    free(t->event_id);
    free(t->payload);
    t->id = t->rule_id = t->user_id = t->series = t->state = t->event_id = t->payload = NULL;
}

void rta_delivery_record_free_fields(rta_delivery_record *d)
{
    if (d == NULL)
        return;
    free(d->id);
    free(d->trigger_id);
    free(d->rule_id);
    free(d->user_id);
    free(d->channel);
    free(d->target);
    free(d->status);
    free(d->last_error);
    free(d->note);
    free(d->payload);
    d->id = d->trigger_id = d->rule_id = d->user_id = d->channel = d->target = NULL;
    d->status = d->last_error = d->note = d->payload = NULL;
}

void rta_attempt_record_free_fields(rta_attempt_record *a)
{
    if (a == NULL)
        return;
    free(a->delivery_id);
    free(a->outcome);
    free(a->error);
    a->delivery_id = a->outcome = a->error = NULL;
}

static const rta_store_ops *backend_by_kind(const char *kind)
{
    if (kind != NULL && strcmp(kind, "sqlite") == 0)
        return &rta_store_sqlite_ops;
    return NULL;
}

rta_store *rta_store_open(const char *kind, const char *target, char **err)
{
    *err = NULL;
    const rta_store_ops *ops = backend_by_kind(kind);
    if (ops == NULL) {
        if (asprintf(err, "store: unknown or unavailable backend '%s' (have: sqlite)",
                     kind != NULL ? kind : "(null)") < 0)
            *err = NULL;
        return NULL;
    }
    void *db = NULL;
    if (ops->open(target, &db, err) != 0)
        return NULL;
    if (ops->migrate(db, err) != 0) {
        ops->close(db);
        return NULL;
    }
    rta_store *s = rta_xcalloc(1, sizeof *s);
    store_exec *x = rta_xcalloc(1, sizeof *x);
    s->ops = ops;
    s->db = db;
    s->priv = x;
    return s;
}

/* Store thread: runs jobs in FIFO order until stopping and the queue is empty. */
static void worker_main(void *arg)
{
    rta_store *s = arg;
    store_exec *x = s->priv;
    uv_mutex_lock(&x->mu);
    for (;;) {
        while (x->q_head == NULL && !x->stopping)
            uv_cond_wait(&x->cv, &x->mu);
        rta_store_job *job = x->q_head;
        if (job == NULL)
            break; /* stopping and drained */
        x->q_head = job->next;
        if (x->q_head == NULL)
            x->q_tail = NULL;
        job->next = NULL;
        uv_mutex_unlock(&x->mu);

        uint64_t start = rta_mono_ns();
        job->queued_ns = start - job->queued_ns; /* submit time -> time spent waiting */
        if (job->work != NULL)
            job->work(s, job);
        job->work_ns = rta_mono_ns() - start;

        uv_mutex_lock(&x->mu);
        if (x->d_tail != NULL)
            x->d_tail->next = job;
        else
            x->d_head = job;
        x->d_tail = job;
        uv_async_send(x->async);
    }
    uv_mutex_unlock(&x->mu);
}

/* Runs observer + done for every finished job, oldest first. Loop thread. */
static void deliver_done(rta_store *s)
{
    store_exec *x = s->priv;
    uv_mutex_lock(&x->mu);
    rta_store_job *job = x->d_head;
    x->d_head = x->d_tail = NULL;
    uv_mutex_unlock(&x->mu);
    while (job != NULL) {
        rta_store_job *next = job->next;
        job->next = NULL;
        uv_mutex_lock(&x->mu);
        x->pending--;
        uv_mutex_unlock(&x->mu);
        if (x->observer != NULL)
            x->observer(x->observer_ud, job->op != NULL ? job->op : "unknown", job->status,
                        job->queued_ns, job->work_ns);
        if (job->done != NULL)
            job->done(job); /* may free job; may submit new jobs */
        job = next;
    }
}

static void on_async(uv_async_t *h)
{
    deliver_done(h->data);
}

static void on_async_closed(uv_handle_t *h)
{
    free(h);
}

int rta_store_start(rta_store *s, uv_loop_t *loop, size_t max_queue)
{
    store_exec *x = s->priv;
    if (x->started || loop == NULL || max_queue == 0)
        return -1;
    int rc;
    if ((rc = uv_mutex_init(&x->mu)) != 0)
        goto fail;
    if ((rc = uv_cond_init(&x->cv)) != 0) {
        uv_mutex_destroy(&x->mu);
        goto fail;
    }
    x->async = rta_xcalloc(1, sizeof *x->async);
    if ((rc = uv_async_init(loop, x->async, on_async)) != 0) {
        free(x->async);
        x->async = NULL;
        uv_cond_destroy(&x->cv);
        uv_mutex_destroy(&x->mu);
        goto fail;
    }
    x->async->data = s;
    x->loop = loop;
    x->max_queue = max_queue;
    if ((rc = uv_thread_create(&x->thread, worker_main, s)) != 0) {
        uv_close((uv_handle_t *)x->async, on_async_closed);
        x->async = NULL;
        uv_cond_destroy(&x->cv);
        uv_mutex_destroy(&x->mu);
        goto fail;
    }
    x->started = 1;
    return 0;
fail:
    rta_log(RTA_LOG_ERROR, "store: cannot start worker", "{s:s}", "error", uv_strerror(rc));
    return -1;
}

static int submit(rta_store *s, rta_store_job *job, size_t limit)
{
    store_exec *x = s->priv;
    if (!x->started || x->closing)
        return -1;
    int ret = -1;
    uv_mutex_lock(&x->mu);
    if (x->pending < limit) {
        job->next = NULL;
        job->queued_ns = rta_mono_ns();
        job->work_ns = 0;
        if (x->q_tail != NULL)
            x->q_tail->next = job;
        else
            x->q_head = job;
        x->q_tail = job;
        x->pending++;
        uv_cond_signal(&x->cv);
        ret = 0;
    }
    uv_mutex_unlock(&x->mu);
    return ret;
}

int rta_store_submit(rta_store *s, rta_store_job *job)
{
    return submit(s, job, ((store_exec *)s->priv)->max_queue);
}

int rta_store_submit_critical(rta_store *s, rta_store_job *job)
{
    return submit(s, job, ((store_exec *)s->priv)->max_queue * 4);
}

size_t rta_store_pending(const rta_store *s)
{
    store_exec *x = s->priv;
    if (!x->started)
        return 0;
    uv_mutex_lock(&x->mu);
    size_t n = x->pending;
    uv_mutex_unlock(&x->mu);
    return n;
}

void rta_store_set_observer(rta_store *s, rta_store_observer fn, void *ud)
{
    store_exec *x = s->priv;
    x->observer = fn;
    x->observer_ud = ud;
}

void rta_store_close(rta_store *s)
{
    if (s == NULL)
        return;
    store_exec *x = s->priv;
    if (x->started) {
        x->closing = 1; /* submits from the done callbacks below are refused */
        uv_mutex_lock(&x->mu);
        x->stopping = 1;
        uv_cond_signal(&x->cv);
        uv_mutex_unlock(&x->mu);
        uv_thread_join(&x->thread);
        deliver_done(s);
        uv_close((uv_handle_t *)x->async, on_async_closed);
        uv_cond_destroy(&x->cv);
        uv_mutex_destroy(&x->mu);
    }
    s->ops->close(s->db);
    free(x);
    free(s);
}

/* ---- fire-and-forget audit -------------------------------------------------------------- */

typedef struct audit_job {
    rta_store_job job; /* first: the job pointer is the audit_job pointer */
    rta_audit_entry entry;
} audit_job;

static void audit_work(rta_store *s, rta_store_job *job)
{
    audit_job *aj = (audit_job *)job;
    job->status = s->ops->audit_append(s->db, &aj->entry);
}

static void audit_done(rta_store_job *job)
{
    audit_job *aj = (audit_job *)job;
    if (job->status != 0)
        rta_log(RTA_LOG_ERROR, "store: audit append failed", "{s:s?,s:s?}", "actor",
                aj->entry.actor, "action", aj->entry.action);
    rta_audit_entry_free_fields(&aj->entry);
    free(aj);
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? rta_strdup(s) : NULL;
}

int rta_store_audit(rta_store *s, const char *actor, const char *action, const char *target,
                    const char *request_id, const char *source_ip, json_t *details)
{
    store_exec *x = s->priv;
    audit_job *aj = rta_xcalloc(1, sizeof *aj);
    aj->entry.time_ms = rta_now_ms();
    aj->entry.actor = rta_strdup(actor != NULL ? actor : "system");
    aj->entry.action = rta_strdup(action != NULL ? action : "unknown");
    aj->entry.target = dup_or_null(target);
    aj->entry.request_id = dup_or_null(request_id);
    aj->entry.source_ip = dup_or_null(source_ip);
    aj->entry.details = details;
    aj->job.work = audit_work;
    aj->job.done = audit_done;
    aj->job.op = "audit_append";

    if (!x->started) {
        audit_work(s, &aj->job);
        int ret = aj->job.status == 0 ? 0 : -1;
        audit_done(&aj->job);
        return ret;
    }
    if (rta_store_submit(s, &aj->job) != 0) {
        rta_log(RTA_LOG_WARN, "store: queue full or closing, audit entry dropped", "{s:s,s:s}",
                "actor", aj->entry.actor, "action", aj->entry.action);
        rta_audit_entry_free_fields(&aj->entry);
        free(aj);
        return -1;
    }
    return 0;
}
