/*
 * In-memory market state and change detection (see rta/state.h).
 *
 * Every protocol, pair (protocol x chain), chain and token is one heap entry that embeds the
 * public struct first and a uthash handle after it; the entries are indexed by hash (protocol
 * slug, "slug\0chain", chain name, token id) and listed in dense append-only arrays in
 * rta_state for iteration (the query engine scans st->pairs). Nothing is ever removed, so the
 * public pointers stay valid for the life of the state.
 *
 * The hot path (rta_state_apply_tvl on an existing pair) does one hash lookup on a key built on
 * the stack, a few additions to keep the chain and protocol totals current, two history
 * records, and allocates only when it emits an event.
 */
#include "rta/state.h"
#include "rta/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#define LARGE_MOVE 0.1
#define RESUM_EVERY 1024   /* protocol updates between exact resums of its total */
#define PAIR_KEY_STACK 288 /* slugs and chains are <= 128 bytes after ingest validation */

typedef struct {
    rta_protocol p; /* first: an entry pointer is a protocol pointer */
    uint32_t updates_since_resum;
    UT_hash_handle hh;
} protocol_ent;

typedef struct {
    rta_pair p;
    UT_hash_handle hh;
    size_t keylen;
    char key[]; /* "slug\0chain\0", inline: one cache miss less per lookup */
} pair_ent;

typedef struct {
    rta_chain c;
    UT_hash_handle hh;
} chain_ent;

typedef struct {
    rta_token t;
    UT_hash_handle hh;
} token_ent;

typedef struct {
    protocol_ent *protocols;
    pair_ent *pairs;
    chain_ent *chains;
    token_ent *tokens;
} state_index;

#define IDX(st) ((state_index *)(st)->index)

/* Appends item to a growable pointer array. */
#define PUSH(arr, n, cap, item)                                                                    \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? (cap)*2 : 16;                                                          \
            (arr) = rta_xrealloc((arr), (cap) * sizeof *(arr));                                    \
        }                                                                                          \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

rta_state *rta_state_new(const rta_state_options *opts)
{
    rta_state *st = rta_xcalloc(1, sizeof *st);
    if (opts)
        st->opts = *opts;
    st->index = rta_xcalloc(1, sizeof(state_index));
    return st;
}

void rta_state_free(rta_state *st)
{
    if (st == NULL)
        return;
    state_index *ix = IDX(st);
    HASH_CLEAR(hh, ix->protocols);
    HASH_CLEAR(hh, ix->pairs);
    HASH_CLEAR(hh, ix->chains);
    HASH_CLEAR(hh, ix->tokens);
    for (size_t i = 0; i < st->npairs; i++) {
        pair_ent *pe = (pair_ent *)st->pairs[i];
        rta_history_free(&pe->p.hist);
        free(pe);
    }
    for (size_t i = 0; i < st->nprotocols; i++) {
        rta_protocol *p = st->protocols[i];
        free(p->slug);
        free(p->name);
        free(p->category);
        free(p->pairs);
        rta_history_free(&p->total_hist);
        free(p);
    }
    for (size_t i = 0; i < st->nchains; i++) {
        free(st->chains[i]->name);
        free(st->chains[i]);
    }
    for (size_t i = 0; i < st->ntokens; i++) {
        rta_token *t = st->tokens[i];
        free(t->id);
        free(t->symbol);
        rta_history_free(&t->hist);
        free(t);
    }
    free(st->protocols);
    free(st->pairs);
    free(st->chains);
    free(st->tokens);
    free(st->index);
    free(st->journal);
    free(st);
}

/* ---- lookups ---- */

rta_protocol *rta_state_find_protocol(const rta_state *st, const char *slug)
{
    protocol_ent *e = NULL;
    HASH_FIND_STR(IDX(st)->protocols, slug, e);
    return e ? &e->p : NULL;
}

rta_chain *rta_state_find_chain(const rta_state *st, const char *chain)
{
    chain_ent *e = NULL;
    HASH_FIND_STR(IDX(st)->chains, chain, e);
    return e ? &e->c : NULL;
}

rta_token *rta_state_find_token(const rta_state *st, const char *token)
{
    token_ent *e = NULL;
    HASH_FIND_STR(IDX(st)->tokens, token, e);
    return e ? &e->t : NULL;
}

/* Builds "slug\0chain" into buf when it fits, else into a new allocation (*heap set). */
static char *pair_key(const char *slug, const char *chain, char *buf, size_t buflen, size_t *keylen,
                      char **heap)
{
    size_t ls = strlen(slug), lc = strlen(chain);
    *keylen = ls + 1 + lc;
    char *k = buf;
    *heap = NULL;
    if (*keylen + 1 > buflen)
        k = *heap = rta_xmalloc(*keylen + 1);
    memcpy(k, slug, ls + 1);
    memcpy(k + ls + 1, chain, lc + 1);
    return k;
}

rta_pair *rta_state_find_pair(const rta_state *st, const char *slug, const char *chain)
{
    char buf[PAIR_KEY_STACK], *heap;
    size_t keylen;
    char *key = pair_key(slug, chain, buf, sizeof buf, &keylen, &heap);
    pair_ent *e = NULL;
    HASH_FIND(hh, IDX(st)->pairs, key, keylen, e);
    free(heap);
    return e ? &e->p : NULL;
}

/* ---- the journal of touched pairs ---- */

static void journal_pair(rta_state *st, const rta_pair *pr)
{
    if (st->journal == NULL)
        st->journal = rta_xmalloc(RTA_STATE_JOURNAL * sizeof *st->journal);
    st->journal[st->journal_seq++ % RTA_STATE_JOURNAL] = pr->index;
}

static void journal_protocol(rta_state *st, const rta_protocol *p)
{
    for (size_t i = 0; i < p->npairs; i++)
        journal_pair(st, p->pairs[i]);
}

/* ---- creation (the only allocations outside events) ---- */

static rta_protocol *protocol_create(rta_state *st, const char *slug, const char *name,
                                     const char *category)
{
    protocol_ent *e = rta_xcalloc(1, sizeof *e);
    rta_protocol *p = &e->p;
    p->slug = rta_strdup(slug);
    p->name = rta_strdup(name ? name : slug);
    p->category = rta_strdup(category ? category : "");
    rta_history_init(&p->total_hist);
    p->index = (uint32_t)st->nprotocols;
    PUSH(st->protocols, st->nprotocols, st->cap_protocols, p);
    HASH_ADD_KEYPTR(hh, IDX(st)->protocols, p->slug, strlen(p->slug), e);
    return p;
}

static rta_chain *chain_get(rta_state *st, const char *name)
{
    rta_chain *c = rta_state_find_chain(st, name);
    if (c)
        return c;
    chain_ent *e = rta_xcalloc(1, sizeof *e);
    c = &e->c;
    c->name = rta_strdup(name);
    c->index = (uint32_t)st->nchains;
    PUSH(st->chains, st->nchains, st->cap_chains, c);
    HASH_ADD_KEYPTR(hh, IDX(st)->chains, c->name, strlen(c->name), e);
    return c;
}

/* A new pair holding tvl 0: the caller then applies the first value as a change from 0. */
static rta_pair *pair_create(rta_state *st, rta_protocol *p, const char *chain)
{
    char *heap;
    char buf[PAIR_KEY_STACK];
    size_t keylen;
    const char *k = pair_key(p->slug, chain, buf, sizeof buf, &keylen, &heap);
    pair_ent *e = rta_xcalloc(1, sizeof *e + keylen + 1);
    e->keylen = keylen;
    memcpy(e->key, k, keylen + 1);
    free(heap);
    rta_pair *pr = &e->p;
    pr->protocol = p;
    pr->chain = chain_get(st, chain);
    pr->chain->nprotocols++;
    pr->data_ts_ms = INT64_MIN;
    rta_history_init(&pr->hist);
    pr->index = (uint32_t)st->npairs;
    PUSH(st->pairs, st->npairs, st->cap_pairs, pr);
    PUSH(p->pairs, p->npairs, p->cap_pairs, pr);
    HASH_ADD_KEYPTR(hh, IDX(st)->pairs, e->key, e->keylen, e);
    return pr;
}

static rta_token *token_create(rta_state *st, const char *id)
{
    token_ent *e = rta_xcalloc(1, sizeof *e);
    rta_token *t = &e->t;
    t->id = rta_strdup(id);
    t->symbol = rta_strdup("");
    t->confidence = 1.0;
    t->data_ts_ms = INT64_MIN;
    rta_history_init(&t->hist);
    PUSH(st->tokens, st->ntokens, st->cap_tokens, t);
    HASH_ADD_KEYPTR(hh, IDX(st)->tokens, t->id, strlen(t->id), e);
    return t;
}

/* ---- value changes ---- */

static int64_t ts_s_of(int64_t ts_ms)
{
    return ts_ms >= 0 ? ts_ms / 1000 : -((-ts_ms + 999) / 1000);
}

/* Sets a pair's value, keeping the chain and protocol totals current and recording both
 * histories. */
static void pair_set(rta_pair *pr, double tvl, int64_t ts_ms, int64_t now_ms)
{
    double delta = tvl - pr->tvl;
    rta_protocol *p = pr->protocol;
    pr->tvl = tvl;
    pr->data_ts_ms = ts_ms;
    pr->updated_ms = now_ms;
    pr->chain->total_tvl += delta;
    p->total_tvl += delta;
    /* Summing deltas can leave rounding dust below zero when everything went to 0. */
    if (pr->chain->total_tvl < 0)
        pr->chain->total_tvl = 0;
    if (p->total_tvl < 0)
        p->total_tvl = 0;
    /* Summing deltas drifts by rounding; resum exactly now and then (touching every pair on
     * each update would cost a cache miss per chain). */
    protocol_ent *pe = (protocol_ent *)p;
    if (++pe->updates_since_resum >= RESUM_EVERY) {
        double sum = 0;
        for (size_t i = 0; i < p->npairs; i++)
            sum += p->pairs[i]->tvl;
        p->total_tvl = sum;
        pe->updates_since_resum = 0;
    }
    p->updated_ms = now_ms;
    int64_t ts_s = ts_s_of(ts_ms);
    rta_history_record(&pr->hist, ts_s, tvl);
    rta_history_record(&p->total_hist, ts_s, p->total_tvl);
}

static void add_tag(rta_event *e, const char *tag)
{
    json_array_append_new(e->tags, json_string(tag));
}

static void emit(rta_event **out, size_t max_out, size_t *nout, rta_event *e)
{
    if (*nout < max_out)
        out[(*nout)++] = e;
    else
        rta_event_unref(e);
}

/* Replaces *field with value when it differs; 1 when it changed. */
static int set_str(char **field, const char *value)
{
    if (value == NULL || strcmp(*field, value) == 0)
        return 0;
    free(*field);
    *field = rta_strdup(value);
    return 1;
}

static rta_event *protocol_update_event(const rta_protocol *p, const char *chain,
                                        const char *source, int64_t ts_ms)
{
    rta_event *e =
        rta_event_new(RTA_EVENT_PROTOCOL_UPDATE, p->slug, chain ? chain : "", NULL, source);
    e->update = json_object();
    e->data_ts_ms = ts_ms;
    e->confidence = 1.0;
    return e;
}

rta_apply_result rta_state_apply_tvl(rta_state *st, const rta_tvl_update *u, const char *source,
                                     rta_event **out, size_t max_out, size_t *nout)
{
    *nout = 0;
    rta_pair *pr = rta_state_find_pair(st, u->protocol, u->chain);
    int64_t now_ms = rta_now_ms();

    if (pr && u->ts_ms < pr->data_ts_ms) {
        rta_history_record(&pr->hist, ts_s_of(u->ts_ms), u->tvl);
        journal_pair(st, pr);
        return RTA_APPLY_STALE;
    }

    rta_protocol *p = pr ? pr->protocol : rta_state_find_protocol(st, u->protocol);
    int new_protocol = p == NULL, new_pair = pr == NULL;
    rta_event *upd = NULL;

    if (new_protocol) {
        p = protocol_create(st, u->protocol, u->name, u->category);
        upd = protocol_update_event(p, u->chain, source, u->ts_ms);
        json_object_set_new(upd->update, "name", json_string(p->name));
        json_object_set_new(upd->update, "category", json_string(p->category));
        add_tag(upd, "new_protocol");
    } else {
        /* Metadata of an existing protocol. */
        int name_changed = set_str(&p->name, u->name);
        int cat_changed = set_str(&p->category, u->category);
        if (name_changed || cat_changed)
            journal_protocol(st, p);
        if (name_changed || cat_changed || new_pair) {
            upd = protocol_update_event(p, new_pair ? u->chain : "", source, u->ts_ms);
            if (name_changed)
                json_object_set_new(upd->update, "name", json_string(p->name));
            if (cat_changed)
                json_object_set_new(upd->update, "category", json_string(p->category));
            if (new_pair)
                add_tag(upd, "new_chain");
            if (name_changed || cat_changed)
                add_tag(upd, "metadata");
        }
    }
    if (new_pair) {
        pr = pair_create(st, p, u->chain);
        json_object_set_new(upd->update, "chains_added", json_pack("[s]", u->chain));
    }

    double previous = pr->tvl;
    int value_changed = new_pair || u->tvl != previous;
    if (!value_changed) {
        pr->data_ts_ms = u->ts_ms;
        if (upd == NULL)
            return RTA_APPLY_UNCHANGED;
    } else {
        pair_set(pr, u->tvl, u->ts_ms, now_ms);
        journal_pair(st, pr);
    }
    st->version++;

    if (upd) {
        upd->current = new_pair ? pr->tvl : p->total_tvl;
        emit(out, max_out, nout, upd);
    }
    if (!value_changed || new_protocol)
        return RTA_APPLY_CHANGED;

    double change = new_pair ? NAN : rta_change_fraction(previous, u->tvl);
    if (fabs(change) < st->opts.min_change) /* NaN (no previous, or from 0) always emits */
        return RTA_APPLY_CHANGED;
    rta_event *e = rta_event_new(RTA_EVENT_TVL_CHANGE, p->slug, pr->chain->name, NULL, source);
    e->has_previous = !new_pair;
    e->previous = new_pair ? NAN : previous;
    e->current = u->tvl;
    e->change = change;
    e->data_ts_ms = u->ts_ms;
    e->confidence = 1.0;
    add_tag(e, "tvl");
    if (fabs(change) >= LARGE_MOVE)
        add_tag(e, "large_move");
    emit(out, max_out, nout, e);
    return RTA_APPLY_CHANGED;
}

/* Copies the chain prefix of a token id ("coingecko:bitcoin" -> "coingecko") into buf. */
static const char *token_prefix(const char *id, char *buf, size_t buflen)
{
    const char *colon = strchr(id, ':');
    size_t n = colon ? (size_t)(colon - id) : strlen(id);
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, id, n);
    buf[n] = '\0';
    return buf;
}

rta_apply_result rta_state_apply_price(rta_state *st, const rta_price_update *u, const char *source,
                                       rta_event **out, size_t max_out, size_t *nout)
{
    *nout = 0;
    rta_token *t = rta_state_find_token(st, u->token);
    int64_t now_ms = rta_now_ms();
    int64_t ts_s = ts_s_of(u->ts_ms);

    if (t == NULL) {
        t = token_create(st, u->token);
        set_str(&t->symbol, u->symbol);
        t->confidence = u->has_confidence ? u->confidence : 1.0;
        t->price = u->price;
        t->data_ts_ms = u->ts_ms;
        t->updated_ms = now_ms;
        rta_history_record(&t->hist, ts_s, u->price);
        st->version++;
        return RTA_APPLY_CHANGED; /* first price: no event */
    }
    if (u->ts_ms < t->data_ts_ms) {
        rta_history_record(&t->hist, ts_s, u->price);
        return RTA_APPLY_STALE;
    }

    int meta_changed = set_str(&t->symbol, u->symbol);
    if (u->has_confidence && u->confidence != t->confidence) {
        t->confidence = u->confidence;
        meta_changed = 1;
    }
    double previous = t->price;
    if (u->price == previous) {
        t->data_ts_ms = u->ts_ms;
        if (!meta_changed)
            return RTA_APPLY_UNCHANGED;
        st->version++;
        return RTA_APPLY_CHANGED;
    }
    t->price = u->price;
    t->data_ts_ms = u->ts_ms;
    t->updated_ms = now_ms;
    rta_history_record(&t->hist, ts_s, u->price);
    st->version++;

    double change = rta_change_fraction(previous, u->price);
    if (fabs(change) < st->opts.min_change)
        return RTA_APPLY_CHANGED;
    char prefix[64];
    rta_event *e = rta_event_new(RTA_EVENT_PRICE_CHANGE, t->id,
                                 token_prefix(t->id, prefix, sizeof prefix), t->id, source);
    e->has_previous = 1;
    e->previous = previous;
    e->current = u->price;
    e->change = change;
    e->data_ts_ms = u->ts_ms;
    e->confidence = t->confidence;
    add_tag(e, "price");
    if (fabs(change) >= LARGE_MOVE)
        add_tag(e, "large_move");
    emit(out, max_out, nout, e);
    return RTA_APPLY_CHANGED;
}

/* ---- restore (startup): values and history, no events ---- */

void rta_state_restore_tvl(rta_state *st, const rta_tvl_update *u)
{
    rta_pair *pr = rta_state_find_pair(st, u->protocol, u->chain);
    if (pr == NULL) {
        rta_protocol *p = rta_state_find_protocol(st, u->protocol);
        if (p == NULL)
            p = protocol_create(st, u->protocol, u->name, u->category);
        pr = pair_create(st, p, u->chain);
    }
    int meta_changed = set_str(&pr->protocol->name, u->name);
    meta_changed |= set_str(&pr->protocol->category, u->category);
    if (meta_changed)
        journal_protocol(st, pr->protocol);
    if (u->ts_ms < pr->data_ts_ms) {
        rta_history_record(&pr->hist, ts_s_of(u->ts_ms), u->tvl);
        journal_pair(st, pr);
        return;
    }
    pair_set(pr, u->tvl, u->ts_ms, rta_now_ms());
    journal_pair(st, pr);
    st->version++;
}

void rta_state_restore_price(rta_state *st, const rta_price_update *u)
{
    rta_token *t = rta_state_find_token(st, u->token);
    if (t == NULL)
        t = token_create(st, u->token);
    set_str(&t->symbol, u->symbol);
    if (u->has_confidence)
        t->confidence = u->confidence;
    rta_history_record(&t->hist, ts_s_of(u->ts_ms), u->price);
    if (u->ts_ms < t->data_ts_ms)
        return;
    t->price = u->price;
    t->data_ts_ms = u->ts_ms;
    t->updated_ms = rta_now_ms();
    st->version++;
}

/* ---- windows ---- */

static double change_over(const rta_history *h, double current, int64_t window_s, int64_t now_ms)
{
    double old;
    if (rta_history_value_at(h, ts_s_of(now_ms) - window_s, &old) != 0)
        return NAN;
    return rta_change_fraction(old, current);
}

double rta_pair_change(const rta_pair *p, int64_t window_s, int64_t now_ms)
{
    return change_over(&p->hist, p->tvl, window_s, now_ms);
}

double rta_pair_change_until(const rta_pair *p, int64_t window_s, int64_t now_ms, int64_t *until_ms)
{
    double old;
    int64_t until_s;
    int rc = rta_history_value_at_until(&p->hist, ts_s_of(now_ms) - window_s, &old, &until_s);
    /* ts_s_of(now) - window reaches until_s at now = (until_s + window) s */
    *until_ms = until_s > INT64_MAX / 1000 - window_s ? INT64_MAX : (until_s + window_s) * 1000;
    return rc != 0 ? NAN : rta_change_fraction(old, p->tvl);
}

double rta_protocol_change(const rta_protocol *p, int64_t window_s, int64_t now_ms)
{
    return change_over(&p->total_hist, p->total_tvl, window_s, now_ms);
}

double rta_token_change(const rta_token *t, int64_t window_s, int64_t now_ms)
{
    return change_over(&t->hist, t->price, window_s, now_ms);
}

static size_t hist_bytes(const rta_history *h)
{
    return h->rings ? rta_history_bytes() - sizeof *h : 0;
}

size_t rta_state_bytes(const rta_state *st)
{
    /* Entries, their strings, histories, array slots and uthash's per-entry overhead. */
    size_t n = sizeof *st + sizeof(state_index);
    for (size_t i = 0; i < st->nprotocols; i++) {
        const rta_protocol *p = st->protocols[i];
        n += sizeof(protocol_ent) + strlen(p->slug) + strlen(p->name) + strlen(p->category) + 3;
        n += p->cap_pairs * sizeof(rta_pair *) + hist_bytes(&p->total_hist);
    }
    for (size_t i = 0; i < st->npairs; i++) {
        const pair_ent *pe = (const pair_ent *)st->pairs[i];
        n += sizeof(pair_ent) + pe->keylen + 1 + hist_bytes(&pe->p.hist);
    }
    for (size_t i = 0; i < st->nchains; i++)
        n += sizeof(chain_ent) + strlen(st->chains[i]->name) + 1;
    for (size_t i = 0; i < st->ntokens; i++) {
        const rta_token *t = st->tokens[i];
        n += sizeof(token_ent) + strlen(t->id) + strlen(t->symbol) + 2 + hist_bytes(&t->hist);
    }
    n += (st->cap_protocols + st->cap_pairs + st->cap_chains + st->cap_tokens) * sizeof(void *);
    /* uthash buckets: about one 16-byte bucket per entry */
    n += (st->nprotocols + st->npairs + st->nchains + st->ntokens) * 16;
    return n;
}
