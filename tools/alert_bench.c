/*
 * alert_bench: measures the alert rule engine (rule index + evaluation) without I/O.
 *
 * Builds a simulated universe (default 6,700 protocols, 12,000 pairs, 300 tokens) with 7 days
 * of hourly history plus 1.5 h of minute points, parses N random rules through the REST parser
 * (default 100,000) with a realistic mix:
 *   60% scoped to one series (85% a protocol x chain pair, 15% a token),
 *   30% protocol-level (a protocol's total TVL),
 *   10% wildcards (60% any protocol, 15% any protocol on a popular chain, 25% any token),
 * operators gt / lt / change_pct / change_24h / crosses_* with thresholds around the current
 * values, ~10% with a second condition; then applies simulated updates to the state and
 * evaluates every change event, timing only the evaluation (thread CPU time).
 *
 * The first `warmup` events are evaluated untimed, so the firings that a fresh rule set meets
 * in a moving market (the first evaluation of each series) settle before measuring.
 *
 *   alert_bench [rules=100000] [events=100000] [seed=1] [warmup=20000]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rta/alert.h"
#include "rta/simulator.h"
#include "rta/util.h"

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

typedef struct {
    rta_state *st;
    rta_alert_engine *eng;
    int64_t now_ms;
    size_t events, evaluated, triggers, max_events, warmup, timed;
    size_t by_kind[6], resolved;
    uint64_t eval_ns;
} bench;

static void on_trigger(void *ud, const rta_alert_trigger *t)
{
    bench *b = ud;
    b->triggers++;
    b->resolved += t->resolved;
    const rta_alert_condition *c = &t->rule->conditions[0];
    int kind = c->price_scope ? (c->token ? 1 : 5)
               : c->protocol  ? (c->chain ? 0 : 2)
                              : (c->chain ? 4 : 3);
    b->by_kind[kind]++;
}

static void eval_events(bench *b, rta_event **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (out[i]->type != RTA_EVENT_PROTOCOL_UPDATE && b->events < b->max_events) {
            out[i]->offset = ++b->events;
            if (b->events <= b->warmup) {
                rta_alert_engine_evaluate(b->eng, b->st, out[i], b->now_ms, NULL, NULL);
            } else {
                uint64_t t0 = cpu_ns();
                b->evaluated +=
                    rta_alert_engine_evaluate(b->eng, b->st, out[i], b->now_ms, on_trigger, b);
                b->eval_ns += cpu_ns() - t0;
                b->timed++;
            }
        }
        rta_event_unref(out[i]);
    }
}

static void apply_tvl(void *ud, const rta_tvl_update *u)
{
    bench *b = ud;
    rta_event *out[2];
    size_t n = 0;
    rta_state_apply_tvl(b->st, u, "simulator", out, 2, &n);
    eval_events(b, out, n);
}

static void apply_price(void *ud, const rta_price_update *u)
{
    bench *b = ud;
    rta_event *out[2];
    size_t n = 0;
    rta_state_apply_price(b->st, u, "simulator", out, 2, &n);
    eval_events(b, out, n);
}

static void restore_tvl(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(ud, u);
}

static void restore_price(void *ud, const rta_price_update *u)
{
    rta_state_restore_price(ud, u);
}

/* One condition about a value v (current value of the watched series). */
static void condition(char *out, size_t outlen, const char *scope, bool price, double v)
{
    double r = rnd01();
    const char *metric = price ? "price" : "tvl";
    if (r < 0.30)
        snprintf(out, outlen, "{\"metric\":\"%s\",%s\"operator\":\"gt\",\"threshold\":%.6g}",
                 metric, scope, v * (1.05 + 0.3 * rnd01()));
    else if (r < 0.50)
        snprintf(out, outlen, "{\"metric\":\"%s\",%s\"operator\":\"lt\",\"threshold\":%.6g}",
                 metric, scope, v * (0.95 - 0.3 * rnd01()));
    else if (r < 0.70)
        snprintf(out, outlen,
                 "{\"metric\":\"%s\",%s\"operator\":\"change_pct\",\"threshold\":%.3g,"
                 "\"timeWindow\":%d}",
                 metric, scope, 0.05 + 0.2 * rnd01(), rnd() % 2 ? 3600 : 86400);
    else if (r < 0.85)
        snprintf(out, outlen,
                 "{\"metric\":\"change_24h\",%s\"operator\":\"lt\",\"threshold\":%.3g}", scope,
                 -0.05 - 0.3 * rnd01());
    else
        snprintf(out, outlen, "{\"metric\":\"%s\",%s\"operator\":\"%s\",\"threshold\":%.6g}",
                 metric, scope, rnd() % 2 ? "crosses_above" : "crosses_below",
                 v * (0.9 + 0.2 * rnd01()));
}

/* Wildcard conditions: rare events only (as users write them). */
static void wildcard_condition(char *out, size_t outlen, const char *scope, bool price)
{
    double r = rnd01();
    const char *metric = price ? "price" : "tvl";
    if (r < 0.5)
        snprintf(out, outlen,
                 "{\"metric\":\"%s\",%s\"operator\":\"change_pct\",\"threshold\":%.3g,"
                 "\"timeWindow\":3600}",
                 metric, scope, 0.2 + 0.3 * rnd01());
    else if (r < 0.8 && price) /* change_24h without token is about TVL: use a 1-day window */
        snprintf(out, outlen,
                 "{\"metric\":\"price\",\"operator\":\"change_pct\",\"threshold\":%.3g,"
                 "\"timeWindow\":86400}",
                 0.3 + 0.3 * rnd01());
    else if (r < 0.8)
        snprintf(out, outlen,
                 "{\"metric\":\"change_24h\",%s\"operator\":\"lt\",\"threshold\":%.3g}", scope,
                 -0.3 - 0.3 * rnd01());
    else
        snprintf(out, outlen,
                 "{\"metric\":\"%s\",%s\"operator\":\"crosses_above\",\"threshold\":%.6g}", metric,
                 scope, price ? 1e5 : 1e10);
}

int main(int argc, char **argv)
{
    size_t nrules = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t nevents = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    size_t warmup = argc > 4 ? strtoul(argv[4], NULL, 10) : 20000;
    rng_state ^= seed * 0x9e3779b97f4a7c15ull;

    rta_sim *sim = rta_sim_new(&(rta_sim_options){.seed = seed});
    rta_state_options so = {0};
    rta_state *st = rta_state_new(&so);
    int64_t now = rta_now_ms();
    uint64_t t0 = rta_mono_ns();
    rta_sim_history(sim, now - 5400000, 7 * 86400000LL, 3600000, restore_tvl, restore_price, st);
    rta_sim_history(sim, now, 5400000, 60000, restore_tvl, restore_price, st);
    rta_sim_snapshot(sim, now, restore_tvl, restore_price, st);
    printf("state: %zu pairs, %zu protocols, %zu chains, %zu tokens, built in %.1f s\n", st->npairs,
           st->nprotocols, st->nchains, st->ntokens, (double)(rta_mono_ns() - t0) / 1e9);

    rta_alert_engine *eng = rta_alert_engine_new();
    t0 = rta_mono_ns();
    size_t kinds[6] = {0};
    char c1[512], c2[512], scope[400], body[1400];
    for (size_t i = 0; i < nrules; i++) {
        double k = rnd01();
        bool price = false;
        double v = 0;
        int kind;
        if (k < 0.60 * 0.85) {
            const rta_pair *p = st->pairs[rnd() % st->npairs];
            snprintf(scope, sizeof scope, "\"protocol\":\"%s\",\"chain\":\"%s\",",
                     p->protocol->slug, p->chain->name);
            v = p->tvl;
            kind = 0;
        } else if (k < 0.60) {
            const rta_token *t = st->tokens[rnd() % st->ntokens];
            snprintf(scope, sizeof scope, "\"token\":\"%s\",", t->id);
            v = t->price;
            price = true;
            kind = 1;
        } else if (k < 0.90) {
            const rta_protocol *p = st->protocols[rnd() % st->nprotocols];
            snprintf(scope, sizeof scope, "\"protocol\":\"%s\",", p->slug);
            v = p->total_tvl;
            kind = 2;
        } else if (k < 0.90 + 0.1 * 0.60) {
            scope[0] = '\0';
            kind = 3;
        } else if (k < 0.90 + 0.1 * 0.75) {
            snprintf(scope, sizeof scope, "\"chain\":\"%s\",", st->chains[rnd() % 5]->name);
            kind = 4;
        } else {
            scope[0] = '\0';
            price = true;
            kind = 5;
        }
        kinds[kind]++;
        if (kind >= 3)
            wildcard_condition(c1, sizeof c1, scope, price);
        else
            condition(c1, sizeof c1, scope, price, v > 0 ? v : 1);
        c2[0] = '\0';
        if (rnd() % 10 == 0) { /* a second condition on the same series */
            c2[0] = ',';
            if (kind >= 3)
                wildcard_condition(c2 + 1, sizeof c2 - 1, scope, price);
            else
                condition(c2 + 1, sizeof c2 - 1, scope, price, v > 0 ? v : 1);
        }
        snprintf(body, sizeof body,
                 "{\"name\":\"bench %zu\",\"conditions\":[%s%s],\"actions\":[{\"type\":"
                 "\"email\",\"target\":\"u%zu@example.com\"}]}",
                 i, c1, c2, i % 1000);
        json_error_t jerr;
        json_t *j = json_loads(body, 0, &jerr);
        json_t *errors = NULL;
        char user[32];
        snprintf(user, sizeof user, "user-%zu", i % 1000);
        rta_alert_rule *r = j ? rta_alert_rule_parse(j, user, now, &errors) : NULL;
        if (r == NULL) {
            char *e = errors ? json_dumps(errors, 0) : NULL;
            fprintf(stderr, "rule rejected: %s\n%s\n", body, e ? e : jerr.text);
            return 1;
        }
        rta_alert_engine_put(eng, r);
        rta_alert_rule_free(r);
        json_decref(j);
        json_decref(errors);
    }
    printf("rules: %zu (pair %zu, token %zu, protocol %zu, any-protocol %zu, any-on-chain %zu, "
           "any-token %zu), parsed and indexed in %.2f s\n",
           rta_alert_engine_count(eng), kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5],
           (double)(rta_mono_ns() - t0) / 1e9);

    bench b = {
        .st = st, .eng = eng, .now_ms = now, .max_events = warmup + nevents, .warmup = warmup};
    while (b.events < b.max_events) {
        b.now_ms += 10; /* 100 updates per 10 ms: 10,000 updates/s of simulated time */
        rta_sim_step(sim, 100, b.now_ms, apply_tvl, apply_price, &b);
    }
    double secs = (double)b.eval_ns / 1e9;
    printf("triggers by rule kind: pair %zu, token %zu, protocol %zu, any-protocol %zu, "
           "any-on-chain %zu, any-token %zu (%zu resolved notices)\n",
           b.by_kind[0], b.by_kind[1], b.by_kind[2], b.by_kind[3], b.by_kind[4], b.by_kind[5],
           b.resolved);
    printf("events: %zu timed after %zu warm-up, rule evaluations: %zu (%.0f per event), "
           "triggers: %zu\n",
           b.timed, warmup, b.evaluated, (double)b.evaluated / (double)b.timed, b.triggers);
    printf("evaluation CPU: %.3f s = %.0f ns/event, %.0f events/s, %.1f M rule evaluations/s\n",
           secs, (double)b.eval_ns / (double)b.timed, (double)b.timed / secs,
           (double)b.evaluated / secs / 1e6);
    rta_alert_engine_free(eng);
    rta_state_free(st);
    rta_sim_free(sim);
    return 0;
}
