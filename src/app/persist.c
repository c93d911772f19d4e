/*
 * Write-behind persistence of the market state.
 *
 * Every accepted change marks its series dirty (a set, so a series that changes 100 times
 * between flushes is written once). A timer (store.persist_interval_ms) turns the dirty set
 * into one store job: points + protocol/token metadata + the last event offset, in one
 * transaction, on the store thread. At startup rta_persist_load replays the stored points of
 * the retention window into the state, oldest first, so values and history survive restarts.
 *
 * Strings in the job: pair/token keys (slug, chain, token id) are immutable for the life of
 * the state and are borrowed; protocol names and categories can change and are copied.
 */
#include "app_internal.h"
#include "rta/log.h"
#include "rta/util.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

enum { DIRTY_PAIR, DIRTY_TOKEN, DIRTY_PROTOCOL };

struct dirty_entry {
    const void *ptr; /* rta_pair*, rta_token*, rta_protocol* */
    int kind;
    UT_hash_handle hh;
};

static void mark(rta_app *app, const void *ptr, int kind)
{
    dirty_entry *d;
    HASH_FIND_PTR(app->dirty, &ptr, d);
    if (d != NULL)
        return;
    d = rta_xmalloc(sizeof *d);
    d->ptr = ptr;
    d->kind = kind;
    HASH_ADD_PTR(app->dirty, ptr, d);
    app->ndirty++;
}

void rta_persist_mark_pair(rta_app *app, rta_pair *p)
{
    mark(app, p, DIRTY_PAIR);
}

void rta_persist_mark_token(rta_app *app, rta_token *t)
{
    mark(app, t, DIRTY_TOKEN);
}

void rta_persist_mark_protocol(rta_app *app, rta_protocol *p)
{
    mark(app, p, DIRTY_PROTOCOL);
}

typedef struct flush_job {
    rta_store_job job;
    rta_app *app;
    rta_point *points;
    size_t npoints;
    rta_protocol_meta *protos;
    char **proto_strings; /* owned copies, 3 per protocol */
    size_t nprotos;
    rta_token_meta *tokens;
    char **token_symbols;
    size_t ntokens;
    char offset_text[32];
    int64_t prune_before_ms;
    uint64_t started_ns;
} flush_job;

static void flush_work(rta_store *s, rta_store_job *job)
{
    flush_job *f = (flush_job *)job;
    void *db = s->db;
    int rc = s->ops->begin(db);
    if (rc == 0 && f->nprotos)
        rc = s->ops->protocols_upsert(db, f->protos, f->nprotos);
    if (rc == 0 && f->ntokens)
        rc = s->ops->tokens_upsert(db, f->tokens, f->ntokens);
    if (rc == 0 && f->npoints)
        rc = s->ops->points_append(db, f->points, f->npoints);
    if (rc == 0)
        rc = s->ops->kv_set(db, "last_event_offset", f->offset_text);
    if (rc == 0)
        rc = s->ops->commit(db);
    else
        s->ops->rollback(db);
    if (rc == 0 && f->prune_before_ms > 0)
        s->ops->points_prune(db, f->prune_before_ms);
    job->status = rc;
}

static void flush_free(flush_job *f)
{
    for (size_t i = 0; i < f->nprotos * 3; i++)
        free(f->proto_strings[i]);
    for (size_t i = 0; i < f->ntokens; i++)
        free(f->token_symbols[i]);
    free(f->proto_strings);
    free(f->token_symbols);
    free(f->points);
    free(f->protos);
    free(f->tokens);
    free(f);
}

static void flush_done(rta_store_job *job)
{
    flush_job *f = (flush_job *)job;
    rta_app *app = f->app;
    app->persist_inflight = 0;
    if (job->status != 0) {
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, "op=\"persist\""));
        rta_log(RTA_LOG_ERROR, "state flush failed; will retry with the next changes", "{s:I}",
                "points", (json_int_t)f->npoints);
    } else {
        rta_log(RTA_LOG_DEBUG, "state flushed", "{s:I,s:I,s:I,s:f}", "points",
                (json_int_t)f->npoints, "protocols", (json_int_t)f->nprotos, "tokens",
                (json_int_t)f->ntokens, "ms", (double)(rta_mono_ns() - f->started_ns) / 1e6);
    }
    flush_free(f);
}

void rta_persist_flush(rta_app *app, int final)
{
    if (app->persist_inflight && !final)
        return;
    flush_job *f = rta_xcalloc(1, sizeof *f);
    f->app = app;
    f->started_ns = rta_mono_ns();
    size_t n = app->ndirty;
    f->points = rta_xmalloc((n + 1) * sizeof *f->points);
    f->protos = rta_xmalloc((n + 1) * sizeof *f->protos);
    f->proto_strings = rta_xmalloc((3 * n + 1) * sizeof(char *));
    f->tokens = rta_xmalloc((n + 1) * sizeof *f->tokens);
    f->token_symbols = rta_xmalloc((n + 1) * sizeof(char *));
    dirty_entry *d, *tmp;
    HASH_ITER(hh, app->dirty, d, tmp)
    {
        if (d->kind == DIRTY_PAIR) {
            const rta_pair *p = d->ptr;
            f->points[f->npoints++] =
                (rta_point){0, p->protocol->slug, p->chain->name, p->tvl, p->data_ts_ms};
        } else if (d->kind == DIRTY_TOKEN) {
            const rta_token *t = d->ptr;
            f->points[f->npoints++] = (rta_point){1, t->id, "", t->price, t->data_ts_ms};
            char *sym = rta_strdup(t->symbol);
            f->token_symbols[f->ntokens] = sym;
            f->tokens[f->ntokens++] = (rta_token_meta){t->id, sym, t->confidence};
        } else {
            const rta_protocol *p = d->ptr;
            char **s = &f->proto_strings[3 * f->nprotos];
            s[0] = rta_strdup(p->slug);
            s[1] = rta_strdup(p->name);
            s[2] = rta_strdup(p->category);
            f->protos[f->nprotos++] = (rta_protocol_meta){s[0], s[1], s[2]};
        }
        HASH_DEL(app->dirty, d);
        free(d);
    }
    app->ndirty = 0;
    snprintf(f->offset_text, sizeof f->offset_text, "%llu",
             (unsigned long long)rta_bus_last_offset(app->bus));
    static int64_t last_prune_ms;
    int64_t now = rta_now_ms();
    if (now - last_prune_ms > 600000) { /* prune the history table every 10 minutes */
        last_prune_ms = now;
        f->prune_before_ms = now - app->cfg->history_retention_s * 1000;
    }
    f->job.work = flush_work;
    f->job.done = flush_done;
    f->job.op = "persist";
    if (rta_store_submit(app->store, &f->job) != 0) {
        /* queue full: put the series back so the next flush retries them */
        for (size_t i = 0; i < f->npoints; i++) {
            const rta_point *p = &f->points[i];
            if (p->kind == 0)
                mark(app, rta_state_find_pair(app->state, p->key1, p->key2), DIRTY_PAIR);
            else
                mark(app, rta_state_find_token(app->state, p->key1), DIRTY_TOKEN);
        }
        for (size_t i = 0; i < f->nprotos; i++)
            mark(app, rta_state_find_protocol(app->state, f->protos[i].slug), DIRTY_PROTOCOL);
        rta_counter_inc(rta_metrics_counter(app->m_store_errors, "op=\"persist_queue_full\""));
        flush_free(f);
        return;
    }
    app->persist_inflight = 1;
}

void rta_persist_free(rta_app *app)
{
    dirty_entry *d, *tmp;
    HASH_ITER(hh, app->dirty, d, tmp)
    {
        HASH_DEL(app->dirty, d);
        free(d);
    }
    app->ndirty = 0;
}

/* ---- startup load ---- */

typedef struct meta_entry {
    char *slug, *name, *category;
    UT_hash_handle hh;
} meta_entry;

typedef struct token_entry {
    char *id, *symbol;
    double confidence;
    UT_hash_handle hh;
} token_entry;

typedef struct load_ctx {
    rta_app *app;
    meta_entry *protos;
    token_entry *tokens;
    size_t points;
} load_ctx;

static int load_proto_meta(void *ud, const rta_protocol_meta *m)
{
    load_ctx *lc = ud;
    meta_entry *e = rta_xcalloc(1, sizeof *e);
    e->slug = rta_strdup(m->slug);
    e->name = rta_strdup(m->name);
    e->category = rta_strdup(m->category);
    HASH_ADD_KEYPTR(hh, lc->protos, e->slug, strlen(e->slug), e);
    return 0;
}

static int load_token_meta(void *ud, const rta_token_meta *m)
{
    load_ctx *lc = ud;
    token_entry *e = rta_xcalloc(1, sizeof *e);
    e->id = rta_strdup(m->id);
    e->symbol = rta_strdup(m->symbol);
    e->confidence = m->confidence;
    HASH_ADD_KEYPTR(hh, lc->tokens, e->id, strlen(e->id), e);
    return 0;
}

static int load_point(void *ud, const rta_point *p)
{
    load_ctx *lc = ud;
    lc->points++;
    if (p->kind == 0) {
        rta_tvl_update u = {p->key1, p->key2, p->value, p->ts_ms, NULL, NULL};
        meta_entry *m;
        HASH_FIND_STR(lc->protos, p->key1, m);
        if (m) {
            u.name = m->name;
            u.category = m->category;
        }
        rta_state_restore_tvl(lc->app->state, &u);
    } else {
        rta_price_update u = {p->key1, p->value, p->ts_ms, 1.0, 0, NULL};
        token_entry *t;
        HASH_FIND_STR(lc->tokens, p->key1, t);
        if (t) {
            u.confidence = t->confidence;
            u.has_confidence = 1;
            u.symbol = t->symbol;
        }
        rta_state_restore_price(lc->app->state, &u);
    }
    return 0;
}

int rta_persist_load(rta_app *app)
{
    rta_store *s = app->store;
    load_ctx lc = {app, NULL, NULL, 0};
    uint64_t t0 = rta_mono_ns();
    int rc = s->ops->protocols_load(s->db, load_proto_meta, &lc);
    if (rc == 0)
        rc = s->ops->tokens_load(s->db, load_token_meta, &lc);
    int64_t since = rta_now_ms() - app->cfg->history_retention_s * 1000;
    if (rc == 0)
        rc = s->ops->points_load(s->db, since, load_point, &lc);
    char *offset = NULL;
    if (rc == 0 && s->ops->kv_get(s->db, "last_event_offset", &offset) == 0 && offset) {
        rta_bus_set_last_offset(app->bus, strtoull(offset, NULL, 10));
    }
    free(offset);
    meta_entry *m, *mt;
    HASH_ITER(hh, lc.protos, m, mt)
    {
        HASH_DEL(lc.protos, m);
        free(m->slug);
        free(m->name);
        free(m->category);
        free(m);
    }
    token_entry *t, *tt;
    HASH_ITER(hh, lc.tokens, t, tt)
    {
        HASH_DEL(lc.tokens, t);
        free(t->id);
        free(t->symbol);
        free(t);
    }
    rta_log(RTA_LOG_INFO, "state loaded", "{s:I,s:I,s:I,s:I,s:I,s:f}", "points",
            (json_int_t)lc.points, "protocols", (json_int_t)app->state->nprotocols, "pairs",
            (json_int_t)app->state->npairs, "tokens", (json_int_t)app->state->ntokens,
            "last_offset", (json_int_t)rta_bus_last_offset(app->bus), "ms",
            (double)(rta_mono_ns() - t0) / 1e6);
    return rc;
}
