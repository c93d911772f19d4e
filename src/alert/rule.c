/*
 * Alert rules: parsing and validation of the REST bodies (create, full replace, PATCH), copies,
 * the API JSON and the stored JSON (see rta/alert.h for the model).
 *
 * Parsing is all-or-nothing like ingest (src/engine/ingest.c): every problem is reported as
 * {"path":"$.conditions[0].threshold","rule":"range","message":"..."} (at most 100), and no
 * rule is returned unless the whole body is valid. Rule names used:
 *   type, required, unknown_field, enum, slug, token, finite, range, length, count,
 *   operator (operator not valid for the metric), scope (protocol/chain/token not valid for
 *   the metric, or a wildcard condition of another kind than the first condition),
 *   not_applicable (timeWindow without change_pct, tolerance without eq), email, url,
 *   device_token, template.
 * Read-only fields a client may send back from a GET (ruleId, userId, createdAt, updatedAt,
 * lastTriggered) are accepted and ignored, so GET -> PUT round trips.
 *
 * The stored form is the API form with secrets plus "createdMs", "updatedMs",
 * "lastTriggeredMs"; it is read back through the same parser (storage mode), so a stored rule
 * is always a valid rule.
 */
#include "rta/alert.h"
#include "rta/ingest.h"
#include "rta/util.h"
#include "rta/verr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define MAX_ERRORS 100
#define NAME_MAX_LEN 200
#define DESC_MAX_LEN 2000
#define THROTTLE_MAX_MIN 10080
#define THROTTLE_DEFAULT_MIN 5
#define WINDOW_MIN_S 60
#define WINDOW_MAX_S 604800
#define WINDOW_DEFAULT_S 3600
#define CHANGE_MAX 100.0
#define TOLERANCE_DEFAULT 1e-9
#define URL_MAX_LEN 2048
#define EMAIL_MAX_LEN 254
#define DEVICE_TOKEN_MAX_LEN 4096
#define SECRET_LEN 64

typedef struct {
    json_t *errors;
    bool storage;               /* reading the stored form: secrets and times accepted */
    bool allow_secret;          /* action "secret" accepted (storage, or unpatched actions) */
    const rta_alert_rule *prev; /* PATCH: secrets of unchanged webhook targets are kept */
} ctx;

static const char *const metric_names[] = {"tvl", "price", "change_1h", "change_24h", "change_7d"};
static const char *const op_names[] = {"gt",           "lt", "eq", "change_pct", "crosses_above",
                                       "crosses_below"};
static const char *const action_names[] = {"email", "webhook", "push"};

static void add_error(ctx *c, const char *path, const char *rule, const char *message)
{
    rta_verr_add(c->errors, path, rule, message);
}

static void add_errorf(ctx *c, const char *base, const char *field, const char *rule,
                       const char *message)
{
    rta_verr_add_field(c->errors, base, field, rule, message);
}

static size_t nerrors(const ctx *c)
{
    return json_array_size(c->errors);
}

/* Index of s in names, or -1. */
static int lookup_name(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

/* ---- webhook secrets ---- */

/* "whsec_" + base64 of 24 random bytes. Same format as rta_webhook_secret_new (rta/notify.h);
 * generated here so the rule module does not depend on the notification module. */
static void alert_secret_generate(char *out, size_t outlen)
{
    unsigned char raw[24];
    unsigned char b64[33];
    if (rta_random_bytes(raw, sizeof raw) != 0)
        abort(); /* no randomness: refuse to make guessable secrets */
    EVP_EncodeBlock(b64, raw, (int)sizeof raw);
    snprintf(out, outlen, "whsec_%s", (const char *)b64);
}

/* ---- target syntax ---- */

static bool email_local_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$%&'*+/=?^_`{|}~-.", ch) != NULL;
}

/* local@domain: dot-atom local part (1..64), domain of >= 2 labels [A-Za-z0-9-], each 1..63
 * and not starting or ending with '-'. No quoted local parts, no IP literals. */
static bool valid_email(const char *s)
{
    size_t n = strlen(s);
    const char *at = strrchr(s, '@');
    if (n > EMAIL_MAX_LEN || at == NULL)
        return false;
    size_t llen = (size_t)(at - s);
    if (llen < 1 || llen > 64 || s[0] == '.' || at[-1] == '.')
        return false;
    for (const char *p = s; p < at; p++)
        if (!email_local_char(*p) || (*p == '.' && p[1] == '.'))
            return false;
    const char *d = at + 1;
    int labels = 0;
    while (1) {
        const char *start = d;
        while ((*d >= 'a' && *d <= 'z') || (*d >= 'A' && *d <= 'Z') || (*d >= '0' && *d <= '9') ||
               *d == '-')
            d++;
        size_t len = (size_t)(d - start);
        if (len < 1 || len > 63 || start[0] == '-' || d[-1] == '-')
            return false;
        labels++;
        if (*d == '\0')
            break;
        if (*d != '.')
            return false;
        d++;
    }
    return labels >= 2;
}

/* http:// or https:// URL with a non-empty host, no userinfo, no spaces or control bytes. */
static bool valid_url(const char *s)
{
    size_t n = strlen(s);
    if (n > URL_MAX_LEN)
        return false;
    const char *rest;
    if (strncasecmp(s, "https://", 8) == 0)
        rest = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        rest = s + 7;
    else
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    size_t alen = strcspn(rest, "/?#");
    if (memchr(rest, '@', alen) != NULL)
        return false;
    const char *host = rest, *end = rest + alen;
    const char *hend;
    if (host < end && *host == '[') {
        hend = memchr(host, ']', alen);
        if (hend == NULL || hend == host + 1)
            return false;
        hend++;
    } else {
        hend = memchr(host, ':', alen);
        if (hend == NULL)
            hend = end;
        if (hend == host)
            return false;
        for (const char *p = host; p < hend; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
                return false;
    }
    if (hend < end) { /* port */
        if (*hend != ':' || hend + 1 == end || end - hend > 6)
            return false;
        for (const char *p = hend + 1; p < end; p++)
            if (*p < '0' || *p > '9')
                return false;
    }
    return true;
}

static bool valid_device_token(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++, n++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || n >= DEVICE_TOKEN_MAX_LEN)
            return false;
    return n >= 1;
}

/* ---- fields ---- */

/* Optional string of minlen..maxlen bytes (null = absent). 0 (*out NULL when absent) or -1. */
static int get_string(ctx *c, const char *base, const json_t *obj, const char *field, size_t minlen,
                      size_t maxlen, bool required, const char **out)
{
    const json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (v == NULL || (json_is_null(v) && !required)) {
        if (required)
            add_errorf(c, base, field, "required", "field is required");
        return required ? -1 : 0;
    }
    if (!json_is_string(v)) {
        add_errorf(c, base, field, "type", "must be a string");
        return -1;
    }
    size_t n = json_string_length(v);
    if (n < minlen || n > maxlen) {
        char msg[64];
        snprintf(msg, sizeof msg, "must be %zu..%zu characters", minlen, maxlen);
        add_errorf(c, base, field, "length", msg);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static void get_bool(ctx *c, const json_t *obj, const char *field, bool *out)
{
    const json_t *v = json_object_get(obj, field);
    if (v == NULL)
        return;
    if (!json_is_boolean(v))
        add_errorf(c, "$", field, "type", "must be true or false");
    else
        *out = json_is_true(v);
}

/* Optional integer in lo..hi. */
static void get_int(ctx *c, const char *base, const json_t *obj, const char *field, int64_t lo,
                    int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(obj, field);
    if (v == NULL)
        return;
    if (!json_is_integer(v)) {
        add_errorf(c, base, field, "type", "must be an integer");
        return;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "must be in %lld..%lld", (long long)lo, (long long)hi);
        add_errorf(c, base, field, "range", msg);
        return;
    }
    *out = x;
}

static int64_t get_ms(const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static bool is_change_metric(rta_alert_metric m)
{
    return m == RTA_METRIC_CHANGE_1H || m == RTA_METRIC_CHANGE_24H || m == RTA_METRIC_CHANGE_7D;
}

static void parse_condition(ctx *c, const json_t *item, size_t i, rta_alert_condition *cond)
{
    char base[64];
    snprintf(base, sizeof base, "$.conditions[%zu]", i);
    if (!json_is_object(item)) {
        add_error(c, base, "type", "condition must be an object");
        return;
    }
    static const char *const known[] = {"metric",   "protocol",  "chain",      "token",
                                        "operator", "threshold", "timeWindow", "tolerance"};
    rta_verr_unknown_fields(c->errors, base, item, known, RTA_ARRAY_LEN(known));

    int metric = -1, op = -1;
    const json_t *v = json_object_get(item, "metric");
    if (v == NULL)
        add_errorf(c, base, "metric", "required", "field is required");
    else if (!json_is_string(v) || (metric = lookup_name(json_string_value(v), metric_names,
                                                         RTA_ARRAY_LEN(metric_names))) < 0)
        add_errorf(c, base, "metric", "enum",
                   "must be one of tvl, price, change_1h, change_24h, change_7d");
    v = json_object_get(item, "operator");
    if (v == NULL)
        add_errorf(c, base, "operator", "required", "field is required");
    else if (!json_is_string(v) ||
             (op = lookup_name(json_string_value(v), op_names, RTA_ARRAY_LEN(op_names))) < 0)
        add_errorf(c, base, "operator", "enum",
                   "must be one of gt, lt, eq, change_pct, crosses_above, crosses_below");

    const char *slugs[2] = {NULL, NULL};
    static const char *const slug_fields[2] = {"protocol", "chain"};
    for (int k = 0; k < 2; k++) {
        v = json_object_get(item, slug_fields[k]);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_string(v) || !rta_valid_slug(json_string_value(v)))
            add_errorf(c, base, slug_fields[k], "slug",
                       "must be a lower-case slug [a-z0-9][a-z0-9._-]{0,127}");
        else
            slugs[k] = json_string_value(v);
    }
    const char *token = NULL;
    v = json_object_get(item, "token");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || !rta_valid_token(json_string_value(v)))
            add_errorf(c, base, "token", "token",
                       "must be \"<prefix>:<id>\", e.g. coingecko:bitcoin");
        else
            token = json_string_value(v);
    }
    bool has_token = v != NULL && !json_is_null(v);
    bool has_proto =
        json_object_get(item, "protocol") && !json_is_null(json_object_get(item, "protocol"));
    bool has_chain =
        json_object_get(item, "chain") && !json_is_null(json_object_get(item, "chain"));

    double threshold = NAN;
    v = json_object_get(item, "threshold");
    if (v == NULL)
        add_errorf(c, base, "threshold", "required", "field is required");
    else if (!json_is_number(v))
        add_errorf(c, base, "threshold", "type", "must be a number");
    else if (!isfinite(json_number_value(v)))
        add_errorf(c, base, "threshold", "finite", "must be a finite number");
    else
        threshold = json_number_value(v);

    if (metric >= 0 && op >= 0) {
        if (op == RTA_OP_CHANGE_PCT && metric != RTA_METRIC_TVL && metric != RTA_METRIC_PRICE)
            add_errorf(c, base, "operator", "operator",
                       "change_pct applies to tvl or price (change_* metrics are changes "
                       "already: use gt/lt)");
    }
    if (metric >= 0) {
        if (has_token && metric == RTA_METRIC_TVL)
            add_errorf(c, base, "token", "scope", "token applies to price and change_* metrics");
        if (has_token && (has_proto || has_chain))
            add_errorf(c, base, has_proto ? "protocol" : "chain", "scope",
                       "protocol/chain and token cannot be combined");
        else if (metric == RTA_METRIC_PRICE && (has_proto || has_chain))
            add_errorf(c, base, has_proto ? "protocol" : "chain", "scope",
                       "price conditions take a token, not protocol/chain");
    }
    if (op >= 0 && isfinite(threshold)) {
        if (op == RTA_OP_CHANGE_PCT && !(threshold > 0 && threshold <= CHANGE_MAX))
            add_errorf(c, base, "threshold", "range",
                       "change_pct threshold is a fraction: > 0 and <= 100");
        else if (metric >= 0 && is_change_metric(metric) && fabs(threshold) > CHANGE_MAX)
            add_errorf(c, base, "threshold", "range",
                       "change thresholds are fractions: between -100 and 100");
    }

    int64_t window = WINDOW_DEFAULT_S;
    if (json_object_get(item, "timeWindow") && op >= 0 && op != RTA_OP_CHANGE_PCT)
        add_errorf(c, base, "timeWindow", "not_applicable", "timeWindow applies to change_pct");
    else
        get_int(c, base, item, "timeWindow", WINDOW_MIN_S, WINDOW_MAX_S, &window);

    double tolerance = TOLERANCE_DEFAULT;
    v = json_object_get(item, "tolerance");
    if (v != NULL) {
        if (op >= 0 && op != RTA_OP_EQ)
            add_errorf(c, base, "tolerance", "not_applicable", "tolerance applies to eq");
        else if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
                 !isfinite(json_number_value(v)))
            add_errorf(c, base, "tolerance", "range", "must be a finite number >= 0");
        else
            tolerance = json_number_value(v);
    }

    if (metric < 0 || op < 0)
        return;
    cond->metric = (rta_alert_metric)metric;
    cond->op = (rta_alert_op)op;
    cond->threshold = threshold;
    cond->tolerance = tolerance;
    cond->time_window_s = window;
    cond->protocol = slugs[0] ? rta_strdup(slugs[0]) : NULL;
    cond->chain = slugs[1] ? rta_strdup(slugs[1]) : NULL;
    cond->token = token ? rta_strdup(token) : NULL;
    cond->price_scope = metric == RTA_METRIC_PRICE || has_token;
}

static const char *old_secret(const ctx *c, const char *target)
{
    if (c->prev == NULL)
        return NULL;
    for (size_t i = 0; i < c->prev->nactions; i++) {
        const rta_alert_action *a = &c->prev->actions[i];
        if (a->type == RTA_ACTION_WEBHOOK && a->secret && strcmp(a->target, target) == 0)
            return a->secret;
    }
    return NULL;
}

static void parse_action(ctx *c, const json_t *item, size_t i, rta_alert_action *a)
{
    char base[64];
    snprintf(base, sizeof base, "$.actions[%zu]", i);
    if (!json_is_object(item)) {
        add_error(c, base, "type", "action must be an object");
        return;
    }
    static const char *const known[] = {"type", "target", "template", "secret"};
    rta_verr_unknown_fields(c->errors, base, item, known,
                            RTA_ARRAY_LEN(known) - (c->allow_secret ? 0 : 1));
    size_t before = nerrors(c);

    int type = -1;
    const json_t *v = json_object_get(item, "type");
    if (v == NULL)
        add_errorf(c, base, "type", "required", "field is required");
    else if (!json_is_string(v) || (type = lookup_name(json_string_value(v), action_names,
                                                       RTA_ARRAY_LEN(action_names))) < 0)
        add_errorf(c, base, "type", "enum", "must be one of email, webhook, push");

    const char *target = NULL;
    if (get_string(c, base, item, "target", 1, DEVICE_TOKEN_MAX_LEN, true, &target) == 0 &&
        type >= 0) {
        if (type == RTA_ACTION_EMAIL && !valid_email(target))
            add_errorf(c, base, "target", "email", "must be an email address local@domain.tld");
        else if (type == RTA_ACTION_WEBHOOK && !valid_url(target))
            add_errorf(c, base, "target", "url",
                       "must be an http:// or https:// URL with a host and no user info, "
                       "at most 2048 characters");
        else if (type == RTA_ACTION_PUSH && !valid_device_token(target))
            add_errorf(c, base, "target", "device_token",
                       "must be 1..4096 printable characters without spaces");
    }
    const char *tmpl = NULL;
    if (get_string(c, base, item, "template", 1, 64, false, &tmpl) == 0 && tmpl &&
        !rta_alert_template_exists(tmpl)) {
        tmpl = NULL;
        add_errorf(c, base, "template", "template",
                   "unknown template (tvl_change, price_change, default)");
    }
    const char *secret = NULL;
    if (c->allow_secret)
        get_string(c, base, item, "secret", 1, SECRET_LEN - 1, false, &secret);

    if (nerrors(c) != before)
        return;
    a->type = (rta_action_type)type;
    a->target = rta_strdup(target);
    a->template_name = tmpl ? rta_strdup(tmpl) : NULL;
    if (type == RTA_ACTION_WEBHOOK) {
        const char *keep = secret ? secret : old_secret(c, target);
        if (keep) {
            a->secret = rta_strdup(keep);
        } else {
            char buf[SECRET_LEN];
            alert_secret_generate(buf, sizeof buf);
            a->secret = rta_strdup(buf);
        }
    }
}

/* A condition with no protocol (TVL) or no token (price) binds to the event's series. */
static bool cond_is_wildcard(const rta_alert_condition *cond)
{
    return cond->price_scope ? cond->token == NULL : cond->protocol == NULL;
}

/* Parses the body into r (which must be zeroed). 0 or -1 with errors in c. */
static int parse_into(ctx *c, const json_t *body, rta_alert_rule *r)
{
    if (!json_is_object(body)) {
        add_error(c, "$", "type", "body must be a JSON object");
        return -1;
    }
    static const char *const known[] = {
        "name",       "description",   "isActive",  "throttleMinutes", "notifyResolved",
        "conditions", "actions",       "ruleId",    "userId",          "createdAt",
        "updatedAt",  "lastTriggered", "createdMs", "updatedMs",       "lastTriggeredMs"};
    rta_verr_unknown_fields(c->errors, "$", body, known,
                            RTA_ARRAY_LEN(known) - (c->storage ? 0 : 3));

    const char *s;
    if (get_string(c, "$", body, "name", 1, NAME_MAX_LEN, true, &s) == 0)
        r->name = rta_strdup(s);
    if (get_string(c, "$", body, "description", 0, DESC_MAX_LEN, false, &s) == 0 && s)
        r->description = rta_strdup(s);
    r->is_active = true;
    get_bool(c, body, "isActive", &r->is_active);
    r->notify_resolved = false;
    get_bool(c, body, "notifyResolved", &r->notify_resolved);
    int64_t throttle = THROTTLE_DEFAULT_MIN;
    get_int(c, "$", body, "throttleMinutes", 0, THROTTLE_MAX_MIN, &throttle);
    r->throttle_minutes = (int)throttle;

    const json_t *conds = json_object_get(body, "conditions");
    if (conds == NULL) {
        add_error(c, "$.conditions", "required", "field is required");
    } else if (!json_is_array(conds)) {
        add_error(c, "$.conditions", "type", "must be an array");
    } else if (json_array_size(conds) < 1 || json_array_size(conds) > RTA_ALERT_MAX_CONDITIONS) {
        add_error(c, "$.conditions", "count", "must hold 1..10 conditions");
    } else {
        for (size_t i = 0; i < json_array_size(conds); i++) {
            size_t before = nerrors(c);
            rta_alert_condition *slot = &r->conditions[r->nconditions];
            parse_condition(c, json_array_get(conds, i), i, slot);
            if (nerrors(c) == before) {
                r->nconditions++;
            } else { /* an invalid condition leaves nothing behind in the reused slot */
                free(slot->protocol);
                free(slot->chain);
                free(slot->token);
                memset(slot, 0, sizeof *slot);
            }
        }
        /* Wildcards bind to the series of the event, which is of the first condition's kind. */
        if (r->nconditions == json_array_size(conds)) {
            for (size_t i = 1; i < r->nconditions; i++) {
                if (cond_is_wildcard(&r->conditions[i]) &&
                    r->conditions[i].price_scope != r->conditions[0].price_scope) {
                    char base[64];
                    snprintf(base, sizeof base, "$.conditions[%zu]", i);
                    add_error(c, base, "scope",
                              r->conditions[i].price_scope
                                  ? "a price condition without token needs a price first "
                                    "condition (it binds to the event's token)"
                                  : "a TVL condition without protocol needs a TVL first "
                                    "condition (it binds to the event's protocol)");
                }
            }
        }
    }

    const json_t *acts = json_object_get(body, "actions");
    if (acts == NULL) {
        add_error(c, "$.actions", "required", "field is required");
    } else if (!json_is_array(acts)) {
        add_error(c, "$.actions", "type", "must be an array");
    } else if (json_array_size(acts) < 1 || json_array_size(acts) > RTA_ALERT_MAX_ACTIONS) {
        add_error(c, "$.actions", "count", "must hold 1..10 actions");
    } else {
        for (size_t i = 0; i < json_array_size(acts); i++) {
            size_t before = nerrors(c);
            parse_action(c, json_array_get(acts, i), i, &r->actions[r->nactions]);
            if (nerrors(c) == before)
                r->nactions++;
        }
    }
    return nerrors(c) == 0 ? 0 : -1;
}

static rta_alert_rule *parse_rule(ctx *c, const json_t *body, json_t **errors)
{
    rta_alert_rule *r = rta_xcalloc(1, sizeof *r);
    c->errors = json_array();
    if (parse_into(c, body, r) != 0) {
        rta_alert_rule_free(r);
        if (errors)
            *errors = c->errors;
        else
            json_decref(c->errors);
        return NULL;
    }
    json_decref(c->errors);
    if (errors)
        *errors = NULL;
    return r;
}

rta_alert_rule *rta_alert_rule_parse(const json_t *body, const char *user_id, int64_t now_ms,
                                     json_t **errors)
{
    ctx c = {0};
    rta_alert_rule *r = parse_rule(&c, body, errors);
    if (r == NULL)
        return NULL;
    rta_uuid_v7(r->id);
    r->user_id = rta_strdup(user_id ? user_id : "");
    r->created_ms = r->updated_ms = now_ms;
    r->last_triggered_ms = 0;
    return r;
}

/* The editable fields of a rule as a body (secrets included), for PATCH merging. */
static json_t *editable_json(const rta_alert_rule *r)
{
    json_t *j = rta_alert_rule_to_json(r, true);
    static const char *const ro[] = {"ruleId", "userId", "createdAt", "updatedAt", "lastTriggered"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(ro); i++)
        json_object_del(j, ro[i]);
    return j;
}

rta_alert_rule *rta_alert_rule_patch(const rta_alert_rule *rule, const json_t *patch,
                                     int64_t now_ms, json_t **errors)
{
    if (!json_is_object(patch)) {
        if (errors)
            *errors = json_pack("[{s:s,s:s,s:s}]", "path", "$", "rule", "type", "message",
                                "body must be a JSON object");
        return NULL;
    }
    /* Fields the patch gives replace the rule's (arrays whole); the merged body is then
     * validated as a whole, so paths are those of the patch. */
    json_t *merged = editable_json(rule);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)patch, key, v)
    {
        json_object_set(merged, key, v);
    }
    if (json_is_null(json_object_get(patch, "description")))
        json_object_del(merged, "description");
    ctx c = {.allow_secret = json_object_get(patch, "actions") == NULL, .prev = rule};
    rta_alert_rule *r = parse_rule(&c, merged, errors);
    json_decref(merged);
    if (r == NULL)
        return NULL;
    memcpy(r->id, rule->id, sizeof r->id);
    r->user_id = rta_strdup(rule->user_id ? rule->user_id : "");
    r->created_ms = rule->created_ms;
    r->updated_ms = now_ms;
    r->last_triggered_ms = rule->last_triggered_ms;
    return r;
}

static char *dup_or_null(const char *s)
{
    return s ? rta_strdup(s) : NULL;
}

rta_alert_rule *rta_alert_rule_copy(const rta_alert_rule *r)
{
    rta_alert_rule *o = rta_xmalloc(sizeof *o);
    *o = *r;
    o->user_id = dup_or_null(r->user_id);
    o->name = dup_or_null(r->name);
    o->description = dup_or_null(r->description);
    for (size_t i = 0; i < r->nconditions; i++) {
        o->conditions[i].protocol = dup_or_null(r->conditions[i].protocol);
        o->conditions[i].chain = dup_or_null(r->conditions[i].chain);
        o->conditions[i].token = dup_or_null(r->conditions[i].token);
    }
    for (size_t i = 0; i < r->nactions; i++) {
        o->actions[i].target = dup_or_null(r->actions[i].target);
        o->actions[i].template_name = dup_or_null(r->actions[i].template_name);
        o->actions[i].secret = dup_or_null(r->actions[i].secret);
    }
    return o;
}

void rta_alert_rule_free(rta_alert_rule *r)
{
    if (r == NULL)
        return;
    free(r->user_id);
    free(r->name);
    free(r->description);
    for (size_t i = 0; i < RTA_ALERT_MAX_CONDITIONS; i++) {
        free(r->conditions[i].protocol);
        free(r->conditions[i].chain);
        free(r->conditions[i].token);
    }
    for (size_t i = 0; i < RTA_ALERT_MAX_ACTIONS; i++) {
        free(r->actions[i].target);
        free(r->actions[i].template_name);
        free(r->actions[i].secret);
    }
    free(r);
}

static json_t *time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[32];
    rta_time_iso8601(ms, buf, sizeof buf);
    return json_string(buf);
}

json_t *rta_alert_rule_to_json(const rta_alert_rule *r, bool with_secrets)
{
    json_t *conds = json_array();
    for (size_t i = 0; i < r->nconditions; i++) {
        const rta_alert_condition *cd = &r->conditions[i];
        json_t *j = json_pack("{s:s,s:s,s:f}", "metric", metric_names[cd->metric], "operator",
                              op_names[cd->op], "threshold", cd->threshold);
        if (cd->protocol)
            json_object_set_new(j, "protocol", json_string(cd->protocol));
        if (cd->chain)
            json_object_set_new(j, "chain", json_string(cd->chain));
        if (cd->token)
            json_object_set_new(j, "token", json_string(cd->token));
        if (cd->op == RTA_OP_CHANGE_PCT)
            json_object_set_new(j, "timeWindow", json_integer(cd->time_window_s));
        if (cd->op == RTA_OP_EQ)
            json_object_set_new(j, "tolerance", json_real(cd->tolerance));
        json_array_append_new(conds, j);
    }
    json_t *acts = json_array();
    for (size_t i = 0; i < r->nactions; i++) {
        const rta_alert_action *a = &r->actions[i];
        json_t *j = json_pack("{s:s,s:s}", "type", action_names[a->type], "target", a->target);
        if (a->template_name)
            json_object_set_new(j, "template", json_string(a->template_name));
        if (with_secrets && a->secret)
            json_object_set_new(j, "secret", json_string(a->secret));
        json_array_append_new(acts, j);
    }
    json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:i,s:b,s:o,s:o,s:o,s:o,s:o}", "ruleId", r->id,
                          "userId", r->user_id ? r->user_id : "", "name", r->name, "isActive",
                          r->is_active, "throttleMinutes", r->throttle_minutes, "notifyResolved",
                          r->notify_resolved, "conditions", conds, "actions", acts, "createdAt",
                          time_json(r->created_ms), "updatedAt", time_json(r->updated_ms),
                          "lastTriggered", time_json(r->last_triggered_ms));
    if (r->description)
        json_object_set_new(j, "description", json_string(r->description));
    return j;
}

json_t *rta_alert_rule_to_storage(const rta_alert_rule *r)
{
    json_t *j = rta_alert_rule_to_json(r, true);
    json_object_set_new(j, "createdMs", json_integer(r->created_ms));
    json_object_set_new(j, "updatedMs", json_integer(r->updated_ms));
    json_object_set_new(j, "lastTriggeredMs", json_integer(r->last_triggered_ms));
    return j;
}

rta_alert_rule *rta_alert_rule_from_storage(const json_t *j)
{
    ctx c = {.storage = true, .allow_secret = true};
    const char *id = json_string_value(json_object_get(j, "ruleId"));
    if (id == NULL || strlen(id) != 36)
        return NULL;
    rta_alert_rule *r = parse_rule(&c, j, NULL);
    if (r == NULL)
        return NULL;
    memcpy(r->id, id, 37);
    const char *user = json_string_value(json_object_get(j, "userId"));
    r->user_id = rta_strdup(user ? user : "");
    r->created_ms = get_ms(j, "createdMs");
    r->updated_ms = get_ms(j, "updatedMs");
    r->last_triggered_ms = get_ms(j, "lastTriggeredMs");
    return r;
}
