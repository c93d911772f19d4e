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
 * Inside a bucket, rules are grouped by their first condition's metric, operator and window,
 * and each group is an array of 32-byte entries sorted by threshold. Every operator but eq
 * holds for one contiguous range of thresholds (gt: th < v; lt: th > v; change_pct:
 * th <= |change|; crosses_above: prev <= th < v; crosses_below: v < th <= prev), so a group
 * costs one metric computation and a binary search, plus the work for the rules that hold;
 * eq groups are scanned. Values of the event's series (current, previous, change over a window)
 * are computed once per event and memoised. Evaluation allocates only when a new
 * (rule, series) state appears (and when a series name is first seen).
 *
 * Firing states are linked per series. After the buckets of a series are evaluated, the firing
 * states of that series that were not confirmed by this evaluation are resolved: every rule with
 * a state for the series sits in a bucket evaluated for every event of the series, so "not
 * confirmed" means "no longer holds". Rules that do not hold cost nothing beyond the search.
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

#define HASH_FUNCTION HASH_FNV /* cheaper than the default Jenkins hash for 16-byte keys */
#include <uthash.h>

#define MAX_STATES 2000000
#define KEY_MAX 400
#define MEMO_N 8

typedef struct bucket bucket;
typedef struct rule_ent rule_ent;
typedef struct rstate rstate;

/* One rule in a group: its first condition's threshold, inline. */
typedef struct {
    double threshold;
    double tolerance; /* eq */
    rule_ent *re;
    uint8_t single; /* one condition only */
    uint8_t edge;   /* has a crossing condition */
} bent;

/* The rules of a bucket whose first condition has the same metric, operator and window, sorted
 * by threshold: all but eq hold for one contiguous range of thresholds. */
typedef struct {
    uint8_t metric, op;
    int64_t window; /* change_pct: seconds; else 0 */
    bent *v;
    size_t n, cap;
} group;

struct bucket {
    char *key;
    group *g;
    size_t ng, capg;
    size_t n; /* rules in all groups */
    UT_hash_handle hh;
};

struct rule_ent {
    rta_alert_rule *rule;
    uint64_t seq;      /* unique per put: the state key */
    bucket *bucket;    /* NULL when inactive */
    rstate *states;    /* this rule's states (list through next) */
    UT_hash_handle hh; /* by rule id */
};

typedef struct {
    uint64_t rule_seq;
    uint64_t series_id;
} state_key;

typedef struct series_ent series_ent;

struct rstate {
    state_key key;
    rule_ent *re;
    series_ent *se;
    rstate *next;             /* in the rule's list */
    rstate *fprev, *fnext;    /* in the series' firing list while firing */
    int64_t last_notified_ms; /* INT64_MIN = never */
    uint64_t last_offset;
    uint64_t touched; /* evaluation sequence in which the rule last held */
    bool firing;
    bool notified; /* the current firing was notified */
    UT_hash_handle hh;
};

struct series_ent {
    char *name;
    uint64_t id;
    rstate *firing; /* level states of this series that are firing */
    UT_hash_handle hh;
};

typedef struct {
    char *user_id;
    size_t n;
    UT_hash_handle hh;
} user_ent;

struct rta_alert_engine {
    rule_ent *rules;    /* by id */
    bucket *buckets;    /* by key */
    rstate *states;     /* by (rule seq, series id) */
    series_ent *series; /* by name */
    user_ent *users;
    size_t nrules, nactive, nstates;
    uint64_t next_seq, next_series;
    uint64_t eval_seq; /* bumped per evaluate call */
};

/* ---- values of one series as of the event ---- */

enum { SER_NONE = 0, SER_PAIR, SER_PROTO, SER_TOKEN };

typedef struct {
    int kind;
    bool ready;
    const rta_history *hist; /* NULL: no history (changes unknown) */
    double cur, prev;        /* prev NaN when unknown (or unmoved: == cur) */
    char name[KEY_MAX];      /* series name */
    series_ent *se;          /* interned name (NULL until looked up or when unknown) */
    bool se_looked;
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
    s->se = NULL;
    s->se_looked = false;
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
    s->se = NULL;
    s->se_looked = false;
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

static series_ent *series_get(rta_alert_engine *eng, serctx *s, bool create)
{
    if (s->se || (s->se_looked && !create))
        return s->se;
    series_ent *se = NULL;
    HASH_FIND_STR(eng->series, s->name, se);
    if (se == NULL && create) {
        se = rta_xcalloc(1, sizeof *se);
        se->name = rta_strdup(s->name);
        se->id = eng->next_series++;
        HASH_ADD_KEYPTR(hh, eng->series, se->name, strlen(se->name), se);
    }
    s->se_looked = true;
    s->se = se;
    return se;
}

static rstate *state_find(rta_alert_engine *eng, uint64_t seq, const series_ent *se)
{
    state_key k = {seq, se->id};
    rstate *st = NULL;
    HASH_FIND(hh, eng->states, &k, sizeof k, st);
    return st;
}

static rstate *state_create(rta_alert_engine *eng, rule_ent *re, series_ent *se)
{
    if (eng->nstates >= MAX_STATES)
        return NULL;
    rstate *st = rta_xcalloc(1, sizeof *st);
    st->key.rule_seq = re->seq;
    st->key.series_id = se->id;
    st->re = re;
    st->se = se;
    st->last_notified_ms = INT64_MIN;
    st->next = re->states;
    re->states = st;
    HASH_ADD(hh, eng->states, key, sizeof st->key, st);
    eng->nstates++;
    return st;
}

static void set_firing(rstate *st, bool firing)
{
    if (st->firing == firing)
        return;
    st->firing = firing;
    series_ent *se = st->se;
    if (firing) {
        st->fprev = NULL;
        st->fnext = se->firing;
        if (se->firing)
            se->firing->fprev = st;
        se->firing = st;
    } else {
        if (st->fprev)
            st->fprev->fnext = st->fnext;
        else
            se->firing = st->fnext;
        if (st->fnext)
            st->fnext->fprev = st->fprev;
        st->fprev = st->fnext = NULL;
    }
}

static void states_drop(rta_alert_engine *eng, rule_ent *re)
{
    rstate *st = re->states;
    while (st) {
        rstate *next = st->next;
        set_firing(st, false);
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

static int64_t cond_window(const rta_alert_condition *c)
{
    return c->op == RTA_OP_CHANGE_PCT ? c->time_window_s : 0;
}

/* First index in g with threshold >= x (strict: > x). */
static size_t lower_bound(const group *g, double x, bool strict)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strict ? g->v[mid].threshold <= x : g->v[mid].threshold < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static group *group_find(bucket *b, const rta_alert_condition *c)
{
    for (size_t i = 0; i < b->ng; i++)
        if (b->g[i].metric == c->metric && b->g[i].op == c->op && b->g[i].window == cond_window(c))
            return &b->g[i];
    return NULL;
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
    group *g = group_find(b, c);
    if (g == NULL) {
        if (b->ng == b->capg) {
            b->capg = b->capg ? b->capg * 2 : 2;
            b->g = rta_xrealloc(b->g, b->capg * sizeof *b->g);
        }
        g = &b->g[b->ng++];
        *g = (group){.metric = (uint8_t)c->metric, .op = (uint8_t)c->op, .window = cond_window(c)};
    }
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4;
        g->v = rta_xrealloc(g->v, g->cap * sizeof *g->v);
    }
    size_t at = lower_bound(g, c->threshold, true);
    memmove(&g->v[at + 1], &g->v[at], (g->n - at) * sizeof *g->v);
    g->v[at] = (bent){
        .threshold = c->threshold,
        .tolerance = c->tolerance,
        .re = re,
        .single = r->nconditions == 1,
        .edge = rule_is_edge(r),
    };
    g->n++;
    b->n++;
    re->bucket = b;
}

static void index_remove(rta_alert_engine *eng, rule_ent *re)
{
    bucket *b = re->bucket;
    if (b == NULL)
        return;
    const rta_alert_condition *c = &re->rule->conditions[0];
    group *g = group_find(b, c);
    size_t i = g ? lower_bound(g, c->threshold, false) : 0;
    while (g && i < g->n && g->v[i].re != re)
        i++;
    if (g && i < g->n) {
        memmove(&g->v[i], &g->v[i + 1], (g->n - i - 1) * sizeof *g->v);
        g->n--;
        b->n--;
        if (g->n == 0) {
            free(g->v);
            *g = b->g[--b->ng];
        }
    }
    re->bucket = NULL;
    if (b->n == 0) {
        HASH_DEL(eng->buckets, b);
        free(b->key);
        free(b->g);
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

void rta_alert_engine_restore_state(rta_alert_engine *eng, const char *rule_id, const char *series,
                                    bool firing, int64_t last_notified_ms)
{
    rule_ent *re = NULL;
    HASH_FIND_STR(eng->rules, rule_id, re);
    if (re == NULL || series == NULL || strlen(series) >= KEY_MAX)
        return;
    serctx s = {0};
    snprintf(s.name, sizeof s.name, "%s", series);
    series_ent *se = series_get(eng, &s, true);
    rstate *st = state_find(eng, re->seq, se);
    if (st == NULL && (st = state_create(eng, re, se)) == NULL)
        return;
    bool now_firing = firing && !rule_is_edge(re->rule);
    set_firing(st, now_firing);
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

/* A rule whose first condition holds on s (value v, previous pv): checks the others, then
 * enters or stays in firing, notifying when due. */
static void on_hold(rta_alert_engine *eng, evctx *x, const bent *be, serctx *s, double v, double pv,
                    rta_alert_trigger_fn fn, void *ud)
{
    rule_ent *re = be->re;
    if (!be->single && !rest_hold(x, re->rule))
        return;
    series_ent *se = series_get(eng, s, true);
    rstate *st = state_find(eng, re->seq, se);
    if (st == NULL && (st = state_create(eng, re, se)) == NULL)
        return;
    st->touched = eng->eval_seq;
    uint64_t off = x->e->offset;
    if (off != 0 && st->last_offset == off)
        return;
    st->last_offset = off;
    rta_alert_rule *r = re->rule;
    if (!be->edge && !st->firing) {
        set_firing(st, true);
        st->notified = false;
    }
    if ((be->edge || !st->notified) && cooled(r, st, x->now_ms)) {
        st->notified = !be->edge;
        st->last_notified_ms = x->now_ms;
        r->last_triggered_ms = x->now_ms;
        emit(x, re, s, false, v, pv, fn, ud);
    }
}

/* Evaluates the rules of one bucket on series s: per group, the metric is computed once and
 * the rules that hold are found by binary search on the sorted thresholds (eq is scanned).
 * Firing states whose rule no longer holds are resolved by resolve_series. Returns how many
 * rules the bucket holds (all of them were decided). */
static size_t eval_bucket(rta_alert_engine *eng, evctx *x, bucket *b, serctx *s,
                          rta_alert_trigger_fn fn, void *ud)
{
    for (size_t gi = 0; gi < b->ng; gi++) {
        group *g = &b->g[gi];
        double v, pv;
        /* Any threshold serves to compute the value; the range below decides. */
        double param = g->op == RTA_OP_CHANGE_PCT ? (double)g->window : 0.0;
        cond_eval(s, g->metric, g->op, 0.0, param, x->now_ms, &v, &pv);
        if (isnan(v))
            continue;
        size_t from = 0, to = 0;
        switch (g->op) {
        case RTA_OP_GT: /* th < v */
            to = lower_bound(g, v, false);
            break;
        case RTA_OP_LT: /* th > v */
            from = lower_bound(g, v, true);
            to = g->n;
            break;
        case RTA_OP_CHANGE_PCT: /* th <= |change| */
            to = lower_bound(g, fabs(v), true);
            break;
        case RTA_OP_CROSSES_ABOVE: /* pv <= th < v */
            if (isnan(pv) || !(pv < v))
                break;
            from = lower_bound(g, pv, false);
            to = lower_bound(g, v, false);
            break;
        case RTA_OP_CROSSES_BELOW: /* v < th <= pv */
            if (isnan(pv) || !(v < pv))
                break;
            from = lower_bound(g, v, true);
            to = lower_bound(g, pv, true);
            break;
        case RTA_OP_EQ:
            for (size_t i = 0; i < g->n; i++) {
                const bent *be = &g->v[i];
                double th = be->threshold;
                if (fabs(v - th) <= be->tolerance * (th != 0 ? fabs(th) : 1.0))
                    on_hold(eng, x, be, s, v, pv, fn, ud);
            }
            break;
        }
        for (size_t i = from; i < to; i++)
            on_hold(eng, x, &g->v[i], s, v, pv, fn, ud);
    }
    return b->n;
}

/* Resolves the firing states of series s whose rule did not hold in this evaluation (every rule
 * with a state for s sits in a bucket evaluated for every event of s). */
static void resolve_series(rta_alert_engine *eng, evctx *x, serctx *s, rta_alert_trigger_fn fn,
                           void *ud)
{
    series_ent *se = series_get(eng, s, false);
    if (se == NULL)
        return;
    uint64_t off = x->e->offset;
    rstate *st = se->firing;
    while (st) {
        rstate *next = st->fnext;
        rule_ent *re = st->re;
        if (st->touched != eng->eval_seq && re->bucket != NULL &&
            !(off != 0 && st->last_offset == off)) {
            st->last_offset = off;
            set_firing(st, false);
            bool was_notified = st->notified;
            st->notified = false;
            if (was_notified && re->rule->notify_resolved) {
                const rta_alert_condition *c = &re->rule->conditions[0];
                double param = c->op == RTA_OP_EQ ? c->tolerance : (double)c->time_window_s;
                double v, pv;
                cond_eval(s, c->metric, c->op, c->threshold, param, x->now_ms, &v, &pv);
                emit(x, re, s, true, v, pv, fn, ud);
            }
        }
        st = next;
    }
}

/* Evaluates the two buckets of one series of the event, then resolves what stopped holding. */
static size_t eval_series(rta_alert_engine *eng, evctx *x, const char *key1, const char *key2,
                          int kind, rta_alert_trigger_fn fn, void *ud)
{
    bucket *b1 = NULL, *b2 = NULL;
    HASH_FIND_STR(eng->buckets, key1, b1);
    HASH_FIND_STR(eng->buckets, key2, b2);
    if (b1 == NULL && b2 == NULL)
        return 0;
    serctx *s = ev_series(x, kind);
    size_t n = 0;
    if (b1)
        n += eval_bucket(eng, x, b1, s, fn, ud);
    if (b2)
        n += eval_bucket(eng, x, b2, s, fn, ud);
    resolve_series(eng, x, s, fn, ud);
    return n;
}

size_t rta_alert_engine_evaluate(rta_alert_engine *eng, const rta_state *st, const rta_event *e,
                                 int64_t now_ms, rta_alert_trigger_fn fn, void *ud)
{
    if (eng->buckets == NULL || e->protocol == NULL)
        return 0;
    evctx x = {.st = st, .e = e, .now_ms = now_ms};
    eng->eval_seq++;
    char k1[KEY_MAX], k2[KEY_MAX];
    size_t n = 0;
    int len;
    if (e->type == RTA_EVENT_TVL_CHANGE) {
        if (e->chain == NULL)
            return 0;
        len = snprintf(k1, sizeof k1, "tvl|%s|%s", e->protocol, e->chain);
        if (len < 0 || (size_t)len >= sizeof k1)
            return 0;
        snprintf(k2, sizeof k2, "tvl|*|%s", e->chain);
        n += eval_series(eng, &x, k1, k2, SER_PAIR, fn, ud);
        snprintf(k1, sizeof k1, "tvl|%s|*", e->protocol);
        n += eval_series(eng, &x, k1, "tvl|*|*", SER_PROTO, fn, ud);
    } else if (e->type == RTA_EVENT_PRICE_CHANGE) {
        len = snprintf(k1, sizeof k1, "price|%s", e->token ? e->token : e->protocol);
        if (len < 0 || (size_t)len >= sizeof k1)
            return 0;
        n += eval_series(eng, &x, k1, "price|*", SER_TOKEN, fn, ud);
    }
    return n;
}

void rta_alert_engine_each(const rta_alert_engine *eng,
                           void (*fn)(void *ud, const rta_alert_rule *r), void *ud)
{
    for (const rule_ent *re = eng->rules; re != NULL; re = re->hh.next)
        fn(ud, re->rule);
}
