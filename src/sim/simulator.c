/*
 * Deterministic DeFi market simulator (see rta/simulator.h).
 *
 * Everything random comes from one xoshiro256** generator seeded with splitmix64, so a seed
 * fixes the universe and the update sequence. The universe is built once in rta_sim_new:
 * chains with Zipf(1.1) popularity, protocols with unique syllable-made slugs, a chain count
 * per protocol (75% on one chain, the rest Pareto-distributed up to 54, then nudged so the
 * total hits the requested pair count), log-normal protocol TVLs (median $1M, sigma 2.8: the
 * top 1% hold roughly two thirds of the total) split unevenly over the protocol's chains, and
 * tokens with log-normal prices (stablecoins pinned near $1).
 */
#include "rta/simulator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "rta/util.h"

#define DEF_PROTOCOLS 6700
#define DEF_CHAINS 450
#define DEF_PAIRS 12000
#define DEF_TOKENS 300
#define DEF_CATEGORIES 96
#define MAX_CHAINS_PER_PROTOCOL 54
#define MAX_TVL 1e15
#define MIN_PRICE 1e-9
#define MAX_PRICE 1e12

typedef struct {
    uint64_t s[4];
} rng;

typedef struct {
    char *slug;
    char *name;
    const char *category;
} sim_protocol;

typedef struct {
    uint32_t protocol, chain;
    double tvl;
} sim_pair;

typedef struct {
    char *id;
    char *symbol;
    double price;
    double sigma; /* per-update volatility */
} sim_token;

struct rta_sim {
    rta_sim_options opts;
    rng r;
    char **chains;
    double *chain_cdf; /* cumulative Zipf weights */
    char **categories;
    sim_protocol *protocols;
    sim_pair *pairs;
    sim_token *tokens;
    uint64_t history_calls;
};

/* ---------------------------------------------------------------- randomness */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double rng_unif(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n). */
static size_t rng_below(rng *r, size_t n)
{
    return n ? (size_t)(rng_unif(r) * (double)n) % n : 0;
}

static double rng_normal(rng *r)
{
    double u1 = rng_unif(r), u2 = rng_unif(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---------------------------------------------------------------- names */

static const char *const real_chains[] = {
    "ethereum",      "solana",    "bsc",      "tron",      "arbitrum",    "base",   "bitcoin",
    "avalanche",     "polygon",   "sui",      "optimism",  "hyperliquid", "aptos",  "sonic",
    "mantle",        "blast",     "linea",    "scroll",    "zksync-era",  "cronos", "fantom",
    "near",          "ton",       "starknet", "gnosis",    "kava",        "celo",   "moonbeam",
    "osmosis",       "injective", "sei",      "berachain", "metis",       "manta",  "mode",
    "polygon-zkevm", "klaytn",    "aurora",   "harmony",   "algorand",
};

static const char *const real_categories[] = {
    "Dexes",
    "Lending",
    "Liquid Staking",
    "Bridge",
    "CDP",
    "Yield",
    "Restaking",
    "Liquid Restaking",
    "Derivatives",
    "Yield Aggregator",
    "Services",
    "Basis Trading",
    "RWA",
    "Launchpad",
    "Algo-Stables",
    "Farm",
    "Insurance",
    "Options",
    "Indexes",
    "NFT Marketplace",
    "Staking Pool",
    "Privacy",
    "Payments",
    "Gaming",
    "Prediction Market",
    "Synthetics",
    "Leveraged Farming",
    "Cross Chain",
    "Launchpad DEX",
    "NFT Lending",
    "Uncollateralized Lending",
    "SoFi",
    "Reserve Currency",
    "Chain",
    "Oracle",
    "Wallets",
};

static const char *const syllables[] = {
    "ae",  "ba",  "cu",  "da",  "el",  "fi",  "ga",  "ho",  "io",  "ju",
    "ka",  "lo",  "mi",  "no",  "or",  "pe",  "qua", "ra",  "si",  "ta",
    "ul",  "va",  "we",  "xo",  "ya",  "ze",  "ven", "lux", "nex", "sol",
    "tri", "zen", "mor", "pha", "kri", "dex", "fin", "swa", "len", "vau",
};

static const char *const name_suffixes[] = {"",      " Finance", " Protocol", " Swap",
                                            " Labs", " DAO",     " Exchange", " Markets"};
static const char *const slug_versions[] = {"", "", "", "", "-v2", "-v3", "-finance", "-swap"};

static const char *const real_tokens[] = {
    "bitcoin",     "ethereum",        "tether",       "usd-coin",  "dai",     "solana",
    "binancecoin", "wrapped-bitcoin", "staked-ether", "chainlink", "uniswap", "aave"};

typedef struct seen {
    UT_hash_handle hh;
    char key[];
} seen;

/* Returns 1 when key was new (and records it). */
static int seen_add(seen **set, const char *key)
{
    seen *e = NULL;
    HASH_FIND_STR(*set, key, e);
    if (e)
        return 0;
    size_t n = strlen(key);
    e = rta_xmalloc(sizeof *e + n + 1);
    memcpy(e->key, key, n + 1);
    HASH_ADD_STR(*set, key, e);
    return 1;
}

static void seen_free(seen **set)
{
    seen *e, *tmp;
    HASH_ITER(hh, *set, e, tmp)
    {
        HASH_DEL(*set, e);
        free(e);
    }
}

static void make_word(rng *r, char *out, size_t outlen)
{
    size_t n = 2 + rng_below(r, 2), len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s",
                                syllables[rng_below(r, RTA_ARRAY_LEN(syllables))]);
}

/* ---------------------------------------------------------------- universe */

static void build_chains(rta_sim *s)
{
    size_t n = s->opts.chains;
    s->chains = rta_xcalloc(n, sizeof(char *));
    s->chain_cdf = rta_xcalloc(n, sizeof(double));
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (i < RTA_ARRAY_LEN(real_chains)) {
            s->chains[i] = rta_strdup(real_chains[i]);
        } else {
            char buf[32];
            snprintf(buf, sizeof buf, "chain-%04zu", i);
            s->chains[i] = rta_strdup(buf);
        }
        acc += 1.0 / pow((double)(i + 1), 1.1);
        s->chain_cdf[i] = acc;
    }
}

static size_t pick_chain(rta_sim *s)
{
    double x = rng_unif(&s->r) * s->chain_cdf[s->opts.chains - 1];
    size_t lo = 0, hi = s->opts.chains - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->chain_cdf[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void build_categories(rta_sim *s)
{
    size_t n = s->opts.categories;
    s->categories = rta_xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if (i < RTA_ARRAY_LEN(real_categories)) {
            s->categories[i] = rta_strdup(real_categories[i]);
        } else {
            char buf[32];
            snprintf(buf, sizeof buf, "Category %zu", i);
            s->categories[i] = rta_strdup(buf);
        }
    }
}

static void build_protocols(rta_sim *s)
{
    size_t n = s->opts.protocols;
    s->protocols = rta_xcalloc(n, sizeof(sim_protocol));
    seen *slugs = NULL;
    for (size_t i = 0; i < n; i++) {
        char word[32], slug[64], name[96];
        make_word(&s->r, word, sizeof word);
        const char *ver = slug_versions[rng_below(&s->r, RTA_ARRAY_LEN(slug_versions))];
        snprintf(slug, sizeof slug, "%s%s", word, ver);
        for (unsigned k = 2; !seen_add(&slugs, slug); k++)
            snprintf(slug, sizeof slug, "%s%s-%u", word, ver, k);
        snprintf(name, sizeof name, "%c%s%s", word[0] - 'a' + 'A', word + 1,
                 name_suffixes[rng_below(&s->r, RTA_ARRAY_LEN(name_suffixes))]);
        s->protocols[i].slug = rta_strdup(slug);
        s->protocols[i].name = rta_strdup(name);
        /* Categories are skewed too: the first ones (Dexes, Lending, ...) are the common ones. */
        double u = rng_unif(&s->r);
        s->protocols[i].category = s->categories[(size_t)(u * u * (double)s->opts.categories)];
    }
    seen_free(&slugs);
}

static void build_pairs(rta_sim *s)
{
    size_t np = s->opts.protocols, maxk = MAX_CHAINS_PER_PROTOCOL;
    if (maxk > s->opts.chains)
        maxk = s->opts.chains;
    size_t *k = rta_xcalloc(np, sizeof(size_t));
    size_t total = 0;
    for (size_t i = 0; i < np; i++) {
        size_t c = 1;
        if (rng_unif(&s->r) >= 0.75) /* Pareto(alpha 1.2) tail of multi-chain protocols */
            c = 1 + (size_t)(pow(1.0 - rng_unif(&s->r), -1.0 / 1.2));
        if (c > maxk)
            c = maxk;
        k[i] = c;
        total += c;
    }
    /* Nudge the counts until the total is exactly the requested number of pairs. */
    while (total < s->opts.pairs) {
        size_t i = rng_below(&s->r, np);
        if (k[i] < maxk) {
            k[i]++;
            total++;
        }
    }
    while (total > s->opts.pairs) {
        size_t i = rng_below(&s->r, np);
        if (k[i] > 1) {
            k[i]--;
            total--;
        }
    }

    s->pairs = rta_xcalloc(total, sizeof(sim_pair));
    unsigned char *used = rta_xcalloc(s->opts.chains, 1);
    size_t *picked = rta_xcalloc(maxk, sizeof(size_t));
    size_t w = 0;
    for (size_t i = 0; i < np; i++) {
        /* Total TVL: log-normal, median $1M, sigma 2.8. */
        double tvl = exp(log(1e6) + 2.8 * rng_normal(&s->r));
        if (tvl > 1e11)
            tvl = 1e11 * (1 + rng_unif(&s->r));
        size_t got = 0;
        for (unsigned tries = 0; got < k[i] && tries < 1000; tries++) {
            size_t c = pick_chain(s);
            if (!used[c]) {
                used[c] = 1;
                picked[got++] = c;
            }
        }
        for (size_t c = 0; got < k[i] && c < s->opts.chains; c++)
            if (!used[c]) {
                used[c] = 1;
                picked[got++] = c;
            }
        /* Uneven split: weights exp(1.5 N); the first picked chain (often a big one) gets a
         * head start. */
        double wsum = 0, ws[MAX_CHAINS_PER_PROTOCOL];
        for (size_t j = 0; j < got; j++) {
            ws[j] = exp(1.5 * rng_normal(&s->r)) * (j == 0 ? 4.0 : 1.0);
            wsum += ws[j];
        }
        for (size_t j = 0; j < got; j++) {
            used[picked[j]] = 0;
            s->pairs[w].protocol = (uint32_t)i;
            s->pairs[w].chain = (uint32_t)picked[j];
            s->pairs[w].tvl = round(tvl * ws[j] / wsum * 100.0) / 100.0;
            w++;
        }
    }
    s->opts.pairs = w;
    free(picked);
    free(used);
    free(k);
}

static void build_tokens(rta_sim *s)
{
    size_t n = s->opts.tokens;
    s->tokens = rta_xcalloc(n, sizeof(sim_token));
    seen *ids = NULL;
    static const char *const evm[] = {"ethereum", "bsc",      "arbitrum", "base",
                                      "polygon",  "optimism", "avalanche"};
    for (size_t i = 0; i < n; i++) {
        sim_token *t = &s->tokens[i];
        char id[96], sym[16];
        double price = exp(2.5 * rng_normal(&s->r)); /* median $1 */
        t->sigma = 0.01;
        if (i < RTA_ARRAY_LEN(real_tokens)) {
            static const double known[] = {65000, 3200, 1, 1, 1, 150, 580, 65000, 3200, 15, 8, 160};
            snprintf(id, sizeof id, "coingecko:%s", real_tokens[i]);
            price = known[i];
            if (price == 1)
                t->sigma = 0.0005; /* stablecoins */
        } else if (rng_unif(&s->r) < 0.3) {
            char word[32];
            make_word(&s->r, word, sizeof word);
            snprintf(id, sizeof id, "coingecko:%s", word);
        } else {
            int len = snprintf(id, sizeof id, "%s:0x", evm[rng_below(&s->r, RTA_ARRAY_LEN(evm))]);
            for (int j = 0; j < 40; j++)
                id[len + j] = "0123456789abcdef"[rng_next(&s->r) & 15];
            id[len + 40] = '\0';
        }
        if (!seen_add(&ids, id)) { /* a generated name may repeat: make it unique */
            size_t len = strlen(id);
            snprintf(id + len, sizeof id - len, "-%zu", i);
            seen_add(&ids, id);
        }
        const char *colon = strchr(id, ':');
        size_t sl = 0;
        for (const char *p = colon + 1; *p && sl < 5; p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9' && sl > 0))
                sym[sl++] = (char)(*p >= 'a' ? *p - 'a' + 'A' : *p);
        if (sl < 3) {
            for (; sl < 4; sl++)
                sym[sl] = (char)('A' + rng_below(&s->r, 26));
        }
        sym[sl] = '\0';
        if (price < MIN_PRICE)
            price = MIN_PRICE;
        if (price > MAX_PRICE)
            price = MAX_PRICE;
        t->id = rta_strdup(id);
        t->symbol = rta_strdup(sym);
        t->price = price;
    }
    seen_free(&ids);
}

rta_sim *rta_sim_new(const rta_sim_options *opts)
{
    rta_sim *s = rta_xcalloc(1, sizeof *s);
    if (opts)
        s->opts = *opts;
    rta_sim_options *o = &s->opts;
    if (!o->protocols)
        o->protocols = DEF_PROTOCOLS;
    if (!o->chains)
        o->chains = DEF_CHAINS;
    if (!o->pairs)
        o->pairs = DEF_PAIRS;
    if (!o->tokens)
        o->tokens = DEF_TOKENS;
    if (!o->categories)
        o->categories = DEF_CATEGORIES;
    size_t maxk = o->chains < MAX_CHAINS_PER_PROTOCOL ? o->chains : MAX_CHAINS_PER_PROTOCOL;
    if (o->pairs < o->protocols)
        o->pairs = o->protocols;
    if (o->pairs > o->protocols * maxk)
        o->pairs = o->protocols * maxk;
    rng_seed(&s->r, o->seed);
    build_chains(s);
    build_categories(s);
    build_protocols(s);
    build_pairs(s);
    build_tokens(s);
    return s;
}

void rta_sim_free(rta_sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->opts.chains; i++)
        free(s->chains[i]);
    for (size_t i = 0; i < s->opts.categories; i++)
        free(s->categories[i]);
    for (size_t i = 0; i < s->opts.protocols; i++) {
        free(s->protocols[i].slug);
        free(s->protocols[i].name);
    }
    for (size_t i = 0; i < s->opts.tokens; i++) {
        free(s->tokens[i].id);
        free(s->tokens[i].symbol);
    }
    free(s->chains);
    free(s->chain_cdf);
    free(s->categories);
    free(s->protocols);
    free(s->pairs);
    free(s->tokens);
    free(s);
}

void rta_sim_get_options(const rta_sim *s, rta_sim_options *out)
{
    *out = s->opts;
}

/* ---------------------------------------------------------------- updates */

static void emit_pair(const rta_sim *s, const sim_pair *p, double tvl, int64_t ts_ms, int full,
                      rta_sim_tvl_fn fn, void *ud)
{
    const sim_protocol *pr = &s->protocols[p->protocol];
    rta_tvl_update u = {
        .protocol = pr->slug,
        .chain = s->chains[p->chain],
        .tvl = tvl,
        .ts_ms = ts_ms,
        .name = full ? pr->name : NULL,
        .category = full ? pr->category : NULL,
    };
    fn(ud, &u);
}

static void emit_token(const sim_token *t, double price, int64_t ts_ms, int full, double conf,
                       rta_sim_price_fn fn, void *ud)
{
    rta_price_update u = {
        .token = t->id,
        .price = price,
        .ts_ms = ts_ms,
        .confidence = conf,
        .has_confidence = 1,
        .symbol = full ? t->symbol : NULL,
    };
    fn(ud, &u);
}

void rta_sim_snapshot(rta_sim *s, int64_t now_ms, rta_sim_tvl_fn tvl_fn, rta_sim_price_fn price_fn,
                      void *ud)
{
    if (tvl_fn)
        for (size_t i = 0; i < s->opts.pairs; i++)
            emit_pair(s, &s->pairs[i], s->pairs[i].tvl, now_ms, 1, tvl_fn, ud);
    if (price_fn)
        for (size_t i = 0; i < s->opts.tokens; i++)
            emit_token(&s->tokens[i], s->tokens[i].price, now_ms, 1, 0.99, price_fn, ud);
}

/* One move of a geometric walk: normal step plus, with probability pjump, a jump of 5..30%. */
static double walk(rng *r, double v, double sigma, double pjump)
{
    double f = exp(sigma * rng_normal(r));
    if (rng_unif(r) < pjump) {
        double j = 0.05 + 0.25 * rng_unif(r);
        f *= rng_unif(r) < 0.5 ? 1.0 - j : 1.0 + j;
    }
    return v * f;
}

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void rta_sim_step(rta_sim *s, size_t n, int64_t now_ms, rta_sim_tvl_fn tvl_fn,
                  rta_sim_price_fn price_fn, void *ud)
{
    for (size_t k = 0; k < n; k++) {
        if (rng_unif(&s->r) < 0.7 || !s->opts.tokens) {
            sim_pair *p = &s->pairs[rng_below(&s->r, s->opts.pairs)];
            double v = walk(&s->r, p->tvl, 0.003, 0.01);
            p->tvl = clamp(round(v * 100.0) / 100.0, 0, MAX_TVL);
            if (tvl_fn)
                emit_pair(s, p, p->tvl, now_ms, 0, tvl_fn, ud);
        } else {
            sim_token *t = &s->tokens[rng_below(&s->r, s->opts.tokens)];
            t->price = clamp(walk(&s->r, t->price, t->sigma, t->sigma > 0.001 ? 0.02 : 0),
                             MIN_PRICE, MAX_PRICE);
            double conf = 0.9 + 0.1 * rng_unif(&s->r);
            if (price_fn)
                emit_token(t, t->price, now_ms, 0, conf, price_fn, ud);
        }
    }
}

/* Fills path[0..n) with a walk backwards from current: path[n-1] is one step before now. */
static void back_walk(rng *r, double current, double sigma, double pjump, double *path, size_t n)
{
    double v = current;
    for (size_t i = n; i-- > 0;) {
        v = walk(r, v, sigma, pjump);
        path[i] = v;
    }
}

void rta_sim_history(rta_sim *s, int64_t now_ms, int64_t span_ms, int64_t step_ms,
                     rta_sim_tvl_fn tvl_fn, rta_sim_price_fn price_fn, void *ud)
{
    if (step_ms <= 0 || span_ms <= 0)
        return;
    size_t n = (size_t)((span_ms + step_ms - 1) / step_ms); /* points at now-span + i*step < now */
    double *path = rta_xmalloc(n * sizeof(double));
    /* Volatility scales with sqrt(step): TVL ~1%/h, prices ~3%/h (stablecoins ~0.05%/h). */
    double hours = (double)step_ms / 3600000.0, sq = sqrt(hours);
    double pjump = clamp(0.01 * hours, 0, 0.5);
    rng r;
    rng_seed(&r, s->opts.seed ^ (0x5bd1e995ULL * ++s->history_calls));
    int64_t t0 = now_ms - span_ms;
    if (tvl_fn)
        for (size_t i = 0; i < s->opts.pairs; i++) {
            const sim_pair *p = &s->pairs[i];
            back_walk(&r, p->tvl, 0.01 * sq, pjump, path, n);
            for (size_t j = 0; j < n; j++)
                emit_pair(s, p, clamp(round(path[j] * 100.0) / 100.0, 0, MAX_TVL),
                          t0 + (int64_t)j * step_ms, 1, tvl_fn, ud);
        }
    if (price_fn)
        for (size_t i = 0; i < s->opts.tokens; i++) {
            const sim_token *t = &s->tokens[i];
            int stable = t->sigma < 0.001;
            back_walk(&r, t->price, (stable ? 0.0005 : 0.03) * sq, stable ? 0 : pjump, path, n);
            for (size_t j = 0; j < n; j++)
                emit_token(t, clamp(path[j], MIN_PRICE, MAX_PRICE), t0 + (int64_t)j * step_ms, 1,
                           0.99, price_fn, ud);
        }
    free(path);
}
