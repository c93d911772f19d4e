/*
 * In-memory market state: TVL per protocol x chain ("pair"), per-protocol totals, token prices,
 * each with a bounded history (rta/history.h), plus change detection that turns accepted
 * updates into RealtimeEvents.
 *
 * Owned and used by the loop thread only. Pointers returned (protocols, pairs, tokens, chains)
 * stay valid for the life of the state: entries are never removed, only added.
 */
#ifndef RTA_STATE_H
#define RTA_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "rta/event.h"
#include "rta/history.h"

typedef struct rta_protocol rta_protocol;

typedef struct rta_chain {
    char *name;          /* lower-case chain id, e.g. "ethereum" */
    uint32_t index;      /* position in rta_state.chains */
    double total_tvl;    /* sum of pair TVLs on this chain, kept current */
    uint32_t nprotocols; /* pairs on this chain */
} rta_chain;

typedef struct rta_pair {
    rta_protocol *protocol;
    rta_chain *chain;
    double tvl;
    int64_t data_ts_ms; /* timestamp of the current value */
    int64_t updated_ms; /* wall clock when it last changed */
    rta_history hist;
    uint32_t index; /* position in rta_state.pairs */
} rta_pair;

struct rta_protocol {
    char *slug;
    char *name;       /* display name; slug when never given */
    char *category;   /* "" when never given */
    rta_pair **pairs; /* this protocol's chains */
    size_t npairs, cap_pairs;
    double total_tvl; /* sum over pairs */
    int64_t updated_ms;
    rta_history total_hist;
    uint32_t index; /* position in rta_state.protocols */
};

typedef struct rta_token {
    char *id;     /* "coingecko:ethereum", "ethereum:0xabc..." */
    char *symbol; /* "" when never given */
    double price;
    double confidence;
    int64_t data_ts_ms;
    int64_t updated_ms;
    rta_history hist;
} rta_token;

typedef struct rta_state_options {
    double min_change; /* emit a change event only when |change| >= this (fraction); 0 = every
                          change */
} rta_state_options;

typedef struct rta_state {
    rta_state_options opts;
    rta_protocol **protocols;
    size_t nprotocols, cap_protocols;
    rta_pair **pairs;
    size_t npairs, cap_pairs;
    rta_chain **chains;
    size_t nchains, cap_chains;
    rta_token **tokens;
    size_t ntokens, cap_tokens;
    uint64_t version; /* bumped by every applied change: the query cache key */
    void *index;      /* private hash indexes */
    /* Journal of touched pairs, for incremental readers (the query engine's context): the
     * rta_pair.index of every pair whose value, timestamps, history or protocol metadata
     * changed (new pairs included), oldest first, in a ring of RTA_STATE_JOURNAL entries.
     * journal_seq counts every entry ever written; entry k is journal[k % RTA_STATE_JOURNAL].
     * A reader that has consumed entries [0, s) re-reads the pairs of [s, journal_seq) when
     * journal_seq - s <= RTA_STATE_JOURNAL, and everything otherwise. NULL until first use. */
    uint32_t *journal;
    uint64_t journal_seq;
} rta_state;

#define RTA_STATE_JOURNAL 8192

/* One TVL update as accepted by ingest (strings borrowed for the call). */
typedef struct rta_tvl_update {
    const char *protocol;
    const char *chain;
    double tvl;
    int64_t ts_ms;
    const char *name;     /* NULL = unchanged */
    const char *category; /* NULL = unchanged */
} rta_tvl_update;

typedef struct rta_price_update {
    const char *token;
    double price;
    int64_t ts_ms;
    double confidence; /* used when has_confidence, else 1.0 for new tokens / unchanged */
    int has_confidence;
    const char *symbol; /* NULL = unchanged */
} rta_price_update;

/* What applying one update did. */
typedef enum {
    RTA_APPLY_CHANGED = 0, /* value changed; events may have been produced */
    RTA_APPLY_UNCHANGED,   /* same value as current: nothing to emit */
    RTA_APPLY_STALE,       /* older than the current value: kept in history only, no event */
} rta_apply_result;

rta_state *rta_state_new(const rta_state_options *opts);
void rta_state_free(rta_state *st);

/* Applies a TVL update. Appends produced events (refcnt 1 each, caller owns) to out, at most
 * max_out (2 suffice: one protocol_update for a new chain / name / category change, and one
 * tvl_change). A first-ever value for a pair produces tvl_change with has_previous = 0 only
 * when the protocol already existed; a brand-new protocol produces protocol_update only.
 * *nout receives the count. source is copied into events. */
rta_apply_result rta_state_apply_tvl(rta_state *st, const rta_tvl_update *u, const char *source,
                                     rta_event **out, size_t max_out, size_t *nout);
/* Same for prices: price_change (first price of a token: no event). */
rta_apply_result rta_state_apply_price(rta_state *st, const rta_price_update *u, const char *source,
                                       rta_event **out, size_t max_out, size_t *nout);

/* Restore path (startup): sets value and history without producing events or bumping version
 * semantics beyond the value itself. Points must come in timestamp order per series. */
void rta_state_restore_tvl(rta_state *st, const rta_tvl_update *u);
void rta_state_restore_price(rta_state *st, const rta_price_update *u);

rta_protocol *rta_state_find_protocol(const rta_state *st, const char *slug);
rta_pair *rta_state_find_pair(const rta_state *st, const char *slug, const char *chain);
rta_chain *rta_state_find_chain(const rta_state *st, const char *chain);
rta_token *rta_state_find_token(const rta_state *st, const char *token);

/* Change over the last window_s seconds, as of now_ms, as a fraction; NaN when the history has
 * no value that old (or it was 0). */
double rta_pair_change(const rta_pair *p, int64_t window_s, int64_t now_ms);
double rta_protocol_change(const rta_protocol *p, int64_t window_s, int64_t now_ms);
double rta_token_change(const rta_token *t, int64_t window_s, int64_t now_ms);
/* rta_pair_change, and *until_ms: the value stays the same for every now in
 * [now_ms, *until_ms) as long as the pair is not touched (see rta_state.journal); INT64_MAX when
 * only a touch can change it. */
double rta_pair_change_until(const rta_pair *p, int64_t window_s, int64_t now_ms,
                             int64_t *until_ms);

/* Approximate bytes held by the state (for metrics and docs). */
size_t rta_state_bytes(const rta_state *st);

#endif
