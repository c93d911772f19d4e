/*
 * The alert rule engine: an index of active rules by the series they watch, and the per
 * (rule, series) state machine that turns events into notifications (rta/alert.h).
 *
 * Index. Every active rule sits in exactly one bucket, chosen by its FIRST condition's scope:
 *   "tvl|<protocol>|<chain>"  pair series                 "tvl:<protocol>:<chain>"
 *   "tvl|*|<chain>"           any protocol on the chain    "tvl:<protocol>:<chain>"
 *   "tvl|<protocol>|*"        the protocol's total TVL     "tvl:<protocol>"
 *   "tvl|*|*"                 any protocol's total TVL     "tvl:<protocol>"
 *   "price|<token>", "price|*"                            "price:<token>"
 * A tvl_change for (p, c) looks up the four tvl buckets, a price_change for t the two price
 * buckets; protocol_update events evaluate nothing (a new pair's first value arrives as a
 * tvl_change of its own). So an event touches only rules that can match it. The other
 * conditions of a rule are evaluated when the first holds: a condition without protocol
 * (TVL) or token (price) binds to the event's protocol / token; a condition without chain is
 * about the protocol's total TVL; a condition naming another series reads that series from
 * the state as it is (it did not move with this event, so it cannot "cross").
 *
 * Bucket entries are 32-byte records in one array per bucket, holding the first condition
 * (metric, operator, threshold) and the number of series of that rule that are firing: the
 * hot loop decides "first condition false and nothing firing" from the array alone, without
 * touching the rule or any hash. Values of the event's series (current, previous, change over a
 * window) are computed once per event and memoised. Evaluation allocates only when a new
 * (rule, series) state appears (and when a series name is first seen).
 *
 * Previous values (crosses_*) come from the event itself: the event's previous value for a pair
 * or token; for a protocol total, total - (current - previous) of the pair that moved. A
 * change_* metric's previous is the change of that previous value against the same old point.
 *
 * State machine per (rule, series): see rta/alert.h. Details chosen here:
 *  - Throttle: a firing notice is sent only when the last one for this (rule, series) is at
 *    least throttleMinutes old. A firing entered during the cooldown is remembered
 *    (firing, not notified) and notified at the first event after the cooldown while it still
 *    holds.
 *  - Resolved notices are sent when notifyResolved and the firing they close was notified;
 *    they are not throttled (they pair with a firing notice) and do not restart the cooldown.
 *  - Rules with a crosses_* condition are edge rules: every event where all conditions hold is
 *    a new firing (throttled); they have no firing state and send no resolved notices.
 *  - An event offset seen before for a (rule, series) is ignored (replays after restart).
 * States are bounded (MAX_STATES); when full, new (rule, series) states are not created and
 * such firings are dropped (rare: states exist only for series that fired).
 */
#include "rta/alert.h"
#include "rta/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#define MAX_STATES 2000000
#define KEY_MAX 400
#define MEMO_N 8

typedef struct bucket bucket;
typedef struct rule_ent rule_ent;
typedef struct rstate rstate;

/* One rule in a bucket: its first condition, inline. */
typedef struct {
    double threshold;
    double param;        /* eq: tolerance; change_pct: window seconds */
    rule_ent *re;
    uint32_t nfiring;    /* series of this rule in the firing state */
    uint8_t metric, op;
    uint8_t single;      /* one condition only */
    uint8_t edge;        /* has a crossing condition */
} bent;

struct bucket {
    char *key;
    bent *v;
    size_t n, cap;
    UT_hash_handle hh;
};

struct rule_ent {
    rta_alert_rule *rule;
    uint64_t seq;        /* unique per put: the state key */
    bucket *bucket;      /* NULL when inactive */
    size_t pos;          /* index in bucket->v */
    rstate *states;      /* this rule's states (list through next) */
    UT_hash_handle hh;   /* by rule id */
};

typedef struct {
    uint64_t rule_seq;
    uint64_t series_id;
} state_key;

struct rstate {
    state_key key;
    rstate *next;        /* in the rule's list */
    int64_t last_notified_ms; /* INT64_MIN = never */
    uint64_t last_offset;
    bool firing;
    bool notified;       /* the current firing was notified */
    UT_hash_handle hh;
};

typedef struct {
    char *name;
    uint64_t id;
    UT_hash_handle hh;
} series_ent;

typedef struct {
    char *user_id;
    size_t n;
    UT_hash_handle hh;
} user_ent;

struct rta_alert_engine {
    rule_ent *rules;     /* by id */
    bucket *buckets;     /* by key */
    rstate *states;      /* by (rule seq, series id) */
    series_ent *series;  /* by name */
    user_ent *users;
    size_t nrules, nactive, nstates;
    uint64_t next_seq, next_series;
};

/* ---- values of one series as of the event ---- */

enum { SER_NONE = 0, SER_PAIR, SER_PROTO, SER_TOKEN };

typedef struct {
    int kind;
    bool ready;
    const rta_history *hist;  /* NULL: no history (changes unknown) */
    double cur, prev;         /* prev NaN when unknown (or unmoved: == cur) */
    char name[KEY_MAX];       /* series name */
    int64_t series_id;        /* -1 = not looked up, -2 = not interned */
    int nmemo;
    int64_t memo_win[MEMO_N];
    double memo_cur[MEMO_N], memo_prev[MEMO_N];
} serctx;

typedef struct {
    const rta_state *st;
    const rta_event *e;
    int64_t now_ms;
    serctx pair, proto, tok; /* the event's series */
} evctx;

static int64_t ts_s_of(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

/* Change over window_s, current and previous, memoised per series and window. */
static void series_change(serctx *s, int64_t window_s, int64_t now_ms, double *cur, double *prev)
{
    for (int i = 0; i < s->nmemo; i++) {
        if (s->memo_win[i] == window_s) {
            *cur = s->memo_cur[i];
            *prev = s->memo_prev[i];
            return;
        }
    }
    double old;
    int64_t first_ts;
    int64_t from = ts_s_of(now_ms) - window_s;
    int have = s->hist != NULL && rta_history_value_at(s->hist, from, &old) == 0;
    /* a series younger than the window: measure from its first value */
    if (!have && s->hist != NULL && rta_history_first(s->hist, &first_ts, &old) == 0 &&
        first_ts >= from)
        have = 1;
    if (!have) {
        *cur = *prev = NAN;
    } else {
        *cur = rta_change_fraction(old, s->cur);
        *prev = isnan(s->prev) ? NAN : rta_change_fraction(old, s->prev);
    }
    int slot = s->nmemo < MEMO_N ? s->nmemo++ : (int)(window_s % MEMO_N);
    s->memo_win[slot] = window_s;
    s->memo_cur[slot] = *cur;
    s->memo_prev[slot] = *prev;
}

static int64_t metric_window(int metric)
{
    switch (metric) {
    case RTA_METRIC_CHANGE_1H:
        return 3600;
    case RTA_METRIC_CHANGE_24H:
        return 86400;
    case RTA_METRIC_CHANGE_7D:
        return 7 * 86400;
    default:
        return 0;
    }
}

/* Whether one condition holds on series s; *val and *pval get the metric's value and previous. */
static bool cond_eval(serctx *s, int metric, int op, double th, double param, int64_t now_ms,
                      double *val, double *pval)
{
    double v, pv;
    if (op == RTA_OP_CHANGE_PCT) {
        series_change(s, (int64_t)param, now_ms, &v, &pv);
        *val = v;
        *pval = pv;
        return fabs(v) >= th; /* NaN: false */
    }
    int64_t w = metric_window(metric);
    if (w) {
        series_change(s, w, now_ms, &v, &pv);
    } else {
        v = s->cur;
        pv = s->prev;
    }
    *val = v;
    *pval = pv;
    switch (op) {
    case RTA_OP_GT:
        return v > th;
    case RTA_OP_LT:
        return v < th;
    case RTA_OP_EQ:
        return fabs(v - th) <= param * (th != 0 ? fabs(th) : 1.0);
    case RTA_OP_CROSSES_ABOVE:
        return pv <= th && v > th;
    case RTA_OP_CROSSES_BELOW:
        return pv >= th && v < th;
    default:
        return false;
    }
}

static void ser_pair(serctx *s, const rta_pair *p, const char *proto, const char *chain)
{
    s->kind = SER_PAIR;
    s->hist = &p->hist;
    s->cur = s->prev = p->tvl;
    snprintf(s->name, sizeof s->name, "tvl:%s:%s", proto, chain);
}

static void ser_proto(serctx *s, const rta_protocol *p)
{
    s->kind = SER_PROTO;
    s->hist = &p->total_hist;
    s->cur = s->prev = p->total_tvl;
    snprintf(s->name, sizeof s->name, "tvl:%s", p->slug);
}

static void ser_token(serctx *s, const rta_token *t)
{
    s->kind = SER_TOKEN;
    s->hist = &t->hist;
    s->cur = s->prev = t->price;
    snprintf(s->name, sizeof s->name, "price:%s", t->id);
}

/* The event's own series, set up on first use. */
static serctx *ev_series(evctx *x, int kind)
{
    const rta_event *e = x->e;
    serctx *s = kind == SER_PAIR ? &x->pair : kind == SER_PROTO ? &x->proto : &x->tok;
    if (s->ready)
        return s;
    s->ready = true;
    s->series_id = -1;
    s->nmemo = 0;
    double eprev = e->has_previous ? e->previous : NAN;
    if (kind == SER_PAIR) {
        const rta_pair *p = rta_state_find_pair(x->st, e->protocol, e->chain);
        if (p)
            ser_pair(s, p, e->protocol, e->chain);
        else
            snprintf(s->name, sizeof s->name, "tvl:%s:%s", e->protocol, e->chain);
        s->kind = SER_PAIR;
        s->cur = e->current;
        s->prev = eprev;
    } else if (kind == SER_PROTO) {
        const rta_protocol *p = rta_state_find_protocol(x->st, e->protocol);
        if (p) {
            ser_proto(s, p);
            s->prev = s->cur - (e->current - (e->has_previous ? e->previous : 0.0));
        } else {
            s->kind = SER_PROTO;
            s->cur = s->prev = NAN;
            snprintf(s->name, sizeof s->name, "tvl:%s", e->protocol);
        }
    } else {
        const char *id = e->token ? e->token : e->protocol;
        const rta_token *t = rta_state_find_token(x->st, id);
        if (t)
            ser_token(s, t);
        else
            snprintf(s->name, sizeof s->name, "price:%s", id);
        s->kind = SER_TOKEN;
        s->cur = e->current;
        s->prev = eprev;
    }
    return s;
}

static void aux_init(serctx *s)
{
    s->ready = true;
    s->nmemo = 0;
    s->series_id = -1;
}

/* The series a non-first condition is about: one of the event's, or aux read from the state.
 * NULL when it cannot be bound or does not exist yet. */
static serctx *bind_condition(evctx *x, const rta_alert_condition *c, serctx *aux)
{
    const rta_event *e = x->e;
    bool tvl_event = e->type == RTA_EVENT_TVL_CHANGE;
    if (c->price_scope) {
        const char *etok = tvl_event ? NULL : (e->token ? e->token : e->protocol);
        const char *tok = c->token ? c->token : etok;
        if (tok == NULL)
            return NULL;
        if (etok && strcmp(tok, etok) == 0)
            return ev_series(x, SER_TOKEN);
        const rta_token *t = rta_state_find_token(x->st, tok);
        if (t == NULL)
            return NULL;
        aux_init(aux);
        ser_token(aux, t);
        return aux;
    }
    const char *proto = c->protocol ? c->protocol : (tvl_event ? e->protocol : NULL);
    if (proto == NULL)
        return NULL;
    bool same_proto = tvl_event && strcmp(proto, e->protocol) == 0;
    if (c->chain == NULL) {
        if (same_proto)
            return ev_series(x, SER_PROTO);
        const rta_protocol *p = rta_state_find_protocol(x->st, proto);
        if (p == NULL)
            return NULL;
        aux_init(aux);
        ser_proto(aux, p);
        return aux;
    }
    if (same_proto && strcmp(c->chain, e->chain) == 0)
        return ev_series(x, SER_PAIR);
    const rta_pair *p = rta_state_find_pair(x->st, proto, c->chain);
    if (p == NULL)
        return NULL;
    aux_init(aux);
    ser_pair(aux, p, proto, c->chain);
    return aux;
}

static bool rest_hold(evctx *x, const rta_alert_rule *r)
{
    for (size_t i = 1; i < r->nconditions; i++) {
        const rta_alert_condition *c = &r->conditions[i];
        serctx aux;
        serctx *s = bind_condition(x, c, &aux);
        if (s == NULL)
            return false;
        double param = c->op == RTA_OP_EQ ? c->tolerance : (double)c->time_window_s;
        double v, pv;
        if (!cond_eval(s, c->metric, c->op, c->threshold, param, x->now_ms, &v, &pv))
            return false;
    }
    return true;
}

/* ---- series names and states ---- */

static int64_t series_lookup(rta_alert_engine *eng, serctx *s, bool create)
{
    if (s->series_id >= 0 || (s->series_id == -2 && !create))
        return s->series_id;
    series_ent *se = NULL;
    HASH_FIND_STR(eng->series, s->name, se);
    if (se == NULL && create) {
        se = rta_xcalloc(1, sizeof *se);
        se->name = rta_strdup(s->name);
        se->id = eng->next_series++;
        HASH_ADD_KEYPTR(hh, eng->series, se->name, strlen(se->name), se);
    }
    s->series_id = se ? (int64_t)se->id : -2;
    return s->series_id;
}

static rstate *state_find(rta_alert_engine *eng, uint64_t seq, int64_t sid)
{
    if (sid < 0)
        return NULL;
    state_key k = {seq, (uint64_t)sid};
    rstate *st = NULL;
    HASH_FIND(hh, eng->states, &k, sizeof k, st);
    return st;
}

static rstate *state_create(rta_alert_engine *eng, rule_ent *re, uint64_t sid)
{
    if (eng->nstates >= MAX_STATES)
        return NULL;
    rstate *st = rta_xcalloc(1, sizeof *st);
    st->key.rule_seq = re->seq;
    st->key.series_id = sid;
    st->last_notified_ms = INT64_MIN;
    st->next = re->states;
    re->states = st;
    HASH_ADD(hh, eng->states, key, sizeof st->key, st);
    eng->nstates++;
    return st;
}

static void states_drop(rta_alert_engine *eng, rule_ent *re)
{
    rstate *st = re->states;
    while (st) {
        rstate *next = st->next;
        HASH_DEL(eng->states, st);
        free(st);
        eng->nstates--;
        st = next;
    }
    re->states = NULL;
}

/* ---- index ---- */

static void bucket_key(const rta_alert_condition *c, char *out, size_t outlen)
{
    if (c->price_scope)
        snprintf(out, outlen, "price|%s", c->token ? c->token : "*");
    else
        snprintf(out, outlen, "tvl|%s|%s", c->protocol ? c->protocol : "*",
                 c->chain ? c->chain : "*");
}

static bool rule_is_edge(const rta_alert_rule *r)
{
    for (size_t i = 0; i < r->nconditions; i++)
        if (r->conditions[i].op == RTA_OP_CROSSES_ABOVE ||
            r->conditions[i].op == RTA_OP_CROSSES_BELOW)
            return true;
    return false;
}

static void index_add(rta_alert_engine *eng, rule_ent *re)
{
    const rta_alert_rule *r = re->rule;
    const rta_alert_condition *c = &r->conditions[0];
    char key[KEY_MAX];
    bucket_key(c, key, sizeof key);
    bucket *b = NULL;
    HASH_FIND_STR(eng->buckets, key, b);
    if (b == NULL) {
        b = rta_xcalloc(1, sizeof *b);
        b->key = rta_strdup(key);
        HASH_ADD_KEYPTR(hh, eng->buckets, b->key, strlen(b->key), b);
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->v = rta_xrealloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n] = (bent){
        .threshold = c->threshold,
        .param = c->op == RTA_OP_EQ ? c->tolerance : (double)c->time_window_s,
        .re = re,
        .nfiring = 0,
        .metric = (uint8_t)c->metric,
        .op = (uint8_t)c->op,
        .single = r->nconditions == 1,
        .edge = rule_is_edge(r),
    };
    re->bucket = b;
    re->pos = b->n++;
}

static void index_remove(rta_alert_engine *eng, rule_ent *re)
{
    bucket *b = re->bucket;
    if (b == NULL)
        return;
    b->v[re->pos] = b->v[--b->n];
    if (re->pos < b->n)
        b->v[re->pos].re->pos = re->pos;
    re->bucket = NULL;
    if (b->n == 0) {
        HASH_DEL(eng->buckets, b);
        free(b->key);
        free(b->v);
        free(b);
    }
}

static void user_adjust(rta_alert_engine *eng, const char *user_id, int delta)
{
    const char *u = user_id ? user_id : "";
    user_ent *ue = NULL;
    HASH_FIND_STR(eng->users, u, ue);
    if (ue == NULL) {
        if (delta < 0)
            return;
        ue = rta_xcalloc(1, sizeof *ue);
        ue->user_id = rta_strdup(u);
        HASH_ADD_KEYPTR(hh, eng->users, ue->user_id, strlen(ue->user_id), ue);
    }
    ue->n = (size_t)((ptrdiff_t)ue->n + delta);
    if (ue->n == 0) {
        HASH_DEL(eng->users, ue);
        free(ue->user_id);
        free(ue);
    }
}

static void rule_ent_free(rta_alert_engine *eng, rule_ent *re)
{
    index_remove(eng, re);
    states_drop(eng, re);
    if (re->rule->is_active)
        eng->nactive--;
    user_adjust(eng, re->rule->user_id, -1);
    eng->nrules--;
    HASH_DEL(eng->rules, re);
    rta_alert_rule_free(re->rule);
    free(re);
}

/* ---- public ---- */

rta_alert_engine *rta_alert_engine_new(void)
{
    rta_alert_engine *eng = rta_xcalloc(1, sizeof *eng);
    eng->next_seq = 1;
    return eng;
}

void rta_alert_engine_free(rta_alert_engine *eng)
{
    if (eng == NULL)
        return;
    rule_ent *re, *rtmp;
    HASH_ITER(hh, eng->rules, re, rtmp)
    {
        rule_ent_free(eng, re);
    }
    series_ent *se, *stmp;
    HASH_ITER(hh, eng->series, se, stmp)
    {
        HASH_DEL(eng->series, se);
        free(se->name);
        free(se);
    }
    free(eng);
}

void rta_alert_engine_put(rta_alert_engine *eng, const rta_alert_rule *r)
{
    rule_ent *re = NULL;
    HASH_FIND_STR(eng->rules, r->id, re);
    if (re)
        rule_ent_free(eng, re);
    re = rta_xcalloc(1, sizeof *re);
    re->rule = rta_alert_rule_copy(r);
    re->seq = eng->next_seq++;
    HASH_ADD_KEYPTR(hh, eng->rules, re->rule->id, strlen(re->rule->id), re);
    eng->nrules++;
    user_adjust(eng, r->user_id, +1);
    if (r->is_active) {
        eng->nactive++;
        if (r->nconditions > 0)
            index_add(eng, re);
    }
}

void rta_alert_engine_remove(rta_alert_engine *eng, const char *rule_id)
{
    rule_ent *re = NULL;
    HASH_FIND_STR(eng->rules, rule_id, re);
    if (re)
        rule_ent_free(eng, re);
}

const rta_alert_rule *rta_alert_engine_get(const rta_alert_engine *eng, const char *rule_id)
{
    rule_ent *re = NULL;
    HASH_FIND_STR(eng->rules, rule_id, re);
    return re ? re->rule : NULL;
}

size_t rta_alert_engine_count(const rta_alert_engine *eng)
{
    return eng->nrules;
}

size_t rta_alert_engine_active(const rta_alert_engine *eng)
{
    return eng->nactive;
}

size_t rta_alert_engine_user_count(const rta_alert_engine *eng, const char *user_id)
{
    user_ent *ue = NULL;
    HASH_FIND_STR(eng->users, user_id ? user_id : "", ue);
    return ue ? ue->n : 0;
}

void rta_alert_engine_restore_state(rta_alert_engine *eng, const char *rule_id,
                                    const char *series, bool firing, int64_t last_notified_ms)
{
    rule_ent *re = NULL;
    HASH_FIND_STR(eng->rules, rule_id, re);
    if (re == NULL || series == NULL || strlen(series) >= KEY_MAX)
        return;
    serctx s = {.series_id = -1};
    snprintf(s.name, sizeof s.name, "%s", series);
    int64_t sid = series_lookup(eng, &s, true);
    rstate *st = state_find(eng, re->seq, sid);
    if (st == NULL && (st = state_create(eng, re, (uint64_t)sid)) == NULL)
        return;
    bool edge = re->bucket ? re->bucket->v[re->pos].edge : rule_is_edge(re->rule);
    bool now_firing = firing && !edge;
    if (re->bucket && now_firing && !st->firing)
        re->bucket->v[re->pos].nfiring++;
    else if (re->bucket && !now_firing && st->firing)
        re->bucket->v[re->pos].nfiring--;
    st->firing = now_firing;
    st->notified = now_firing; /* a persisted firing was notified (or due) before the restart */
    st->last_notified_ms = last_notified_ms > 0 ? last_notified_ms : INT64_MIN;
}

static bool cooled(const rta_alert_rule *r, const rstate *st, int64_t now_ms)
{
    return st->last_notified_ms == INT64_MIN ||
           now_ms - st->last_notified_ms >= (int64_t)r->throttle_minutes * 60000;
}

static void emit(const evctx *x, const rule_ent *re, const serctx *s, bool resolved, double v,
                 double pv, rta_alert_trigger_fn fn, void *ud)
{
    if (fn == NULL)
        return;
    rta_alert_trigger t = {
        .rule = re->rule,
        .resolved = resolved,
        .value = v,
        .previous = pv,
        .event_offset = x->e->offset,
        .at_ms = x->now_ms,
    };
    snprintf(t.series, sizeof t.series, "%s", s->name);
    memcpy(t.event_id, x->e->id, sizeof t.event_id);
    fn(ud, &t);
}

/* Evaluates the rules of one bucket on series s. Returns how many were evaluated. */
static size_t eval_bucket(rta_alert_engine *eng, evctx *x, bucket *b, serctx *s,
                          rta_alert_trigger_fn fn, void *ud)
{
    size_t n = b->n;
    for (size_t i = 0; i < n; i++) {
        bent *be = &b->v[i];
        double v, pv;
        bool hold = cond_eval(s, be->metric, be->op, be->threshold, be->param, x->now_ms, &v, &pv);
        if (!hold && be->nfiring == 0)
            continue;
        rule_ent *re = be->re;
        if (hold && !be->single)
            hold = rest_hold(x, re->rule);
        if (!hold && be->nfiring == 0)
            continue;

        rstate *st = state_find(eng, re->seq, series_lookup(eng, s, hold));
        uint64_t off = x->e->offset;
        if (hold) {
            if (st == NULL && (st = state_create(eng, re, (uint64_t)s->series_id)) == NULL)
                continue;
            if (off != 0 && st->last_offset == off)
                continue;
            st->last_offset = off;
            rta_alert_rule *r = re->rule;
            if (!be->edge && !st->firing) {
                st->firing = true;
                st->notified = false;
                be->nfiring++;
            }
            if ((be->edge || !st->notified) && cooled(r, st, x->now_ms)) {
                st->notified = !be->edge;
                st->last_notified_ms = x->now_ms;
                r->last_triggered_ms = x->now_ms;
                emit(x, re, s, false, v, pv, fn, ud);
            }
        } else if (st && st->firing) {
            if (off != 0 && st->last_offset == off)
                continue;
            st->last_offset = off;
            st->firing = false;
            be->nfiring--;
            bool was_notified = st->notified;
            st->notified = false;
            if (was_notified && re->rule->notify_resolved)
                emit(x, re, s, true, v, pv, fn, ud);
        }
    }
    return n;
}

static size_t eval_key(rta_alert_engine *eng, evctx *x, const char *key, int kind,
                       rta_alert_trigger_fn fn, void *ud)
{
    bucket *b = NULL;
    HASH_FIND_STR(eng->buckets, key, b);
    if (b == NULL)
        return 0;
    return eval_bucket(eng, x, b, ev_series(x, kind), fn, ud);
}

size_t rta_alert_engine_evaluate(rta_alert_engine *eng, const rta_state *st, const rta_event *e,
                                 int64_t now_ms, rta_alert_trigger_fn fn, void *ud)
{
    if (eng->buckets == NULL || e->protocol == NULL)
        return 0;
    evctx x = {.st = st, .e = e, .now_ms = now_ms};
    x.pair.ready = x.proto.ready = x.tok.ready = false;
    char key[KEY_MAX];
    size_t n = 0;
    int len;
    if (e->type == RTA_EVENT_TVL_CHANGE) {
        if (e->chain == NULL)
            return 0;
        len = snprintf(key, sizeof key, "tvl|%s|%s", e->protocol, e->chain);
        if (len < 0 || (size_t)len >= sizeof key)
            return 0;
        n += eval_key(eng, &x, key, SER_PAIR, fn, ud);
        snprintf(key, sizeof key, "tvl|*|%s", e->chain);
        n += eval_key(eng, &x, key, SER_PAIR, fn, ud);
        snprintf(key, sizeof key, "tvl|%s|*", e->protocol);
        n += eval_key(eng, &x, key, SER_PROTO, fn, ud);
        n += eval_key(eng, &x, "tvl|*|*", SER_PROTO, fn, ud);
    } else if (e->type == RTA_EVENT_PRICE_CHANGE) {
        len = snprintf(key, sizeof key, "price|%s", e->token ? e->token : e->protocol);
        if (len < 0 || (size_t)len >= sizeof key)
            return 0;
        n += eval_key(eng, &x, key, SER_TOKEN, fn, ud);
        n += eval_key(eng, &x, "price|*", SER_TOKEN, fn, ud);
    }
    return n;
}

void rta_alert_engine_each(const rta_alert_engine *eng,
                           void (*fn)(void *ud, const rta_alert_rule *r), void *ud)
{
    for (const rule_ent *re = eng->rules; re != NULL; re = re->hh.next)
        fn(ud, re->rule);
}
