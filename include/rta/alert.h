/*
 * Alert rules: the model, parsing and validation of the REST bodies (spec 2.2.2 / 2.3.2), the
 * message templates, and the in-memory rule index that evaluates rules on every event.
 * Pure logic: no I/O, no clocks (callers pass now_ms), single-threaded (loop thread).
 *
 * Rule body (POST /v1/alerts/rules; PUT takes the same, PATCH any subset):
 *   {"name":"Uniswap TVL Alert", "description"?:s, "isActive"?:true, "throttleMinutes"?:5,
 *    "notifyResolved"?:false,
 *    "conditions":[{"metric":"tvl"|"price"|"change_1h"|"change_24h"|"change_7d",
 *                   "protocol"?:slug, "chain"?:slug, "token"?:token,
 *                   "operator":"gt"|"lt"|"eq"|"change_pct"|"crosses_above"|"crosses_below",
 *                   "threshold":n, "timeWindow"?:seconds (change_pct; default 3600, max 7 d),
 *                   "tolerance"?:n (eq; default 1e-9 relative)}],   1..10 conditions, ANDed
 *    "actions":[{"type":"email"|"webhook"|"push", "target":s, "template"?:name}]}  1..10
 * Scope: protocol/chain for tvl and change_* of TVL; token for price and change_* of prices
 * (a condition with token is about that price; otherwise about TVL). Absent protocol/token =
 * any ("wildcard": the rule is evaluated for every series of that kind, with a state per
 * series). change_* and change_pct thresholds are fractions (0.1 = 10%); change_pct fires when
 * |change over timeWindow| >= threshold. crosses_above fires when the previous value was
 * <= threshold and the new one is > threshold (crosses_below mirrors it).
 *
 * State machine per (rule, series): ok -> firing when all conditions hold (notify), firing ->
 * ok when they stop holding ("resolved": notify only when notifyResolved). A level condition
 * notifies on entering firing, not on every event. Crossing operators are edge conditions:
 * each crossing is a new firing. Throttle: at most one notification per (rule, series) per
 * throttleMinutes (cooldown). The same rule never fires twice for one event offset.
 */
#ifndef RTA_ALERT_H
#define RTA_ALERT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rta/event.h"
#include "rta/state.h"

#define RTA_ALERT_MAX_CONDITIONS 10
#define RTA_ALERT_MAX_ACTIONS 10

typedef enum {
    RTA_METRIC_TVL = 0,
    RTA_METRIC_PRICE,
    RTA_METRIC_CHANGE_1H,
    RTA_METRIC_CHANGE_24H,
    RTA_METRIC_CHANGE_7D,
} rta_alert_metric;

typedef enum {
    RTA_OP_GT = 0,
    RTA_OP_LT,
    RTA_OP_EQ,
    RTA_OP_CHANGE_PCT,
    RTA_OP_CROSSES_ABOVE,
    RTA_OP_CROSSES_BELOW,
} rta_alert_op;

typedef enum { RTA_ACTION_EMAIL = 0, RTA_ACTION_WEBHOOK, RTA_ACTION_PUSH } rta_action_type;

typedef struct rta_alert_condition {
    rta_alert_metric metric;
    rta_alert_op op;
    double threshold;
    double tolerance;      /* eq */
    int64_t time_window_s; /* change_pct */
    char *protocol;        /* NULL = any */
    char *chain;           /* NULL = any */
    char *token;           /* NULL = any (price scope) or not a price condition */
    bool price_scope;      /* about prices (token given, or metric price) */
} rta_alert_condition;

typedef struct rta_alert_action {
    rta_action_type type;
    char *target;        /* address, URL or device token */
    char *template_name; /* NULL = the event type's default */
    char *secret;        /* webhook: "whsec_<base64>", generated at creation */
} rta_alert_action;

typedef struct rta_alert_rule {
    char id[37]; /* UUIDv7 */
    char *user_id;
    char *name;
    char *description; /* may be NULL */
    bool is_active;
    int throttle_minutes;
    bool notify_resolved;
    rta_alert_condition conditions[RTA_ALERT_MAX_CONDITIONS];
    size_t nconditions;
    rta_alert_action actions[RTA_ALERT_MAX_ACTIONS];
    size_t nactions;
    int64_t created_ms, updated_ms, last_triggered_ms;
} rta_alert_rule;

/* Parses a create (or full replace) body into a new rule; webhook secrets are generated.
 * Returns NULL and sets *errors = [{path, rule, message}] (caller owns) on invalid input. */
rta_alert_rule *rta_alert_rule_parse(const json_t *body, const char *user_id, int64_t now_ms,
                                     json_t **errors);
/* Applies a PATCH body to a copy of rule; same error contract. Existing webhook secrets are kept
 * for unchanged targets. */
rta_alert_rule *rta_alert_rule_patch(const rta_alert_rule *rule, const json_t *patch,
                                     int64_t now_ms, json_t **errors);
rta_alert_rule *rta_alert_rule_copy(const rta_alert_rule *r);
void rta_alert_rule_free(rta_alert_rule *r);
/* JSON of a rule as the API returns it (ruleId, userId, name, ..., conditions, actions with
 * secrets omitted unless with_secrets). */
json_t *rta_alert_rule_to_json(const rta_alert_rule *r, bool with_secrets);
/* The stored form (everything, secrets included) and back. */
json_t *rta_alert_rule_to_storage(const rta_alert_rule *r);
rta_alert_rule *rta_alert_rule_from_storage(const json_t *j);

/* ---- templates ---- */

/* Named templates: "tvl_change", "price_change", "default". Placeholders {{rule}},
 * {{protocol}}, {{chain}}, {{token}}, {{metric}}, {{value}}, {{previous}}, {{change}} (as
 * percent text), {{threshold}}, {{time}} (ISO), {{event_id}}, {{state}} (firing|resolved). */
bool rta_alert_template_exists(const char *name);
/* Renders subject and body of the named template (NULL name = by event type). Caller frees. */
void rta_alert_template_render(const char *name, const json_t *vars, char **subject, char **body);
/* Checks a template text for unknown placeholders: 0, or -1 with the first unknown in bad. */
int rta_alert_template_check(const char *text, char *bad, size_t badlen);

/* ---- evaluation ---- */

typedef struct rta_alert_engine rta_alert_engine;

/* One notification decision made by evaluation. */
typedef struct rta_alert_trigger {
    const rta_alert_rule *rule; /* borrowed: valid until the next engine change */
    char series[200];           /* "tvl:uniswap-v3:ethereum", "price:coingecko:ethereum" */
    bool resolved;              /* firing -> ok notice (else ok -> firing) */
    double value;               /* the metric value that decided */
    double previous;            /* previous value (NaN if unknown) */
    uint64_t event_offset;
    char event_id[37];
    int64_t at_ms;
} rta_alert_trigger;

typedef void (*rta_alert_trigger_fn)(void *ud, const rta_alert_trigger *t);

rta_alert_engine *rta_alert_engine_new(void);
void rta_alert_engine_free(rta_alert_engine *eng);
/* Adds or replaces a rule (the engine keeps its own copy); state of a replaced rule resets. */
void rta_alert_engine_put(rta_alert_engine *eng, const rta_alert_rule *r);
void rta_alert_engine_remove(rta_alert_engine *eng, const char *rule_id);
const rta_alert_rule *rta_alert_engine_get(const rta_alert_engine *eng, const char *rule_id);
size_t rta_alert_engine_count(const rta_alert_engine *eng); /* all rules */
/* Calls fn for every rule (any order); fn must not change the engine. */
void rta_alert_engine_each(const rta_alert_engine *eng,
                           void (*fn)(void *ud, const rta_alert_rule *r), void *ud);
size_t rta_alert_engine_active(const rta_alert_engine *eng); /* active rules */
size_t rta_alert_engine_user_count(const rta_alert_engine *eng, const char *user_id);
/* Restores persisted per-series state (startup). */
void rta_alert_engine_restore_state(rta_alert_engine *eng, const char *rule_id, const char *series,
                                    bool firing, int64_t last_notified_ms);

/* Evaluates the rules an event can affect, reading values and windows from st. Calls fn for
 * each notification to send (after throttle). Returns the number of rules evaluated. */
size_t rta_alert_engine_evaluate(rta_alert_engine *eng, const rta_state *st, const rta_event *e,
                                 int64_t now_ms, rta_alert_trigger_fn fn, void *ud);

#endif
