/* Unit tests for src/alert/: rule validation, PATCH, storage, templates, and the engine
 * evaluated against a real rta_state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/alert.h"
#include "rta/util.h"

#define NOW_MS 1764238800000LL /* 2025-11-27T10:20:00Z */
#define MIN_MS 60000LL

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    if (j == NULL)
        fail_msg("bad fixture %s: %s", text, err.text);
    return j;
}

static int has_error(const json_t *errors, const char *path, const char *rule)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
            strcmp(json_string_value(json_object_get(e, "rule")), rule) == 0 &&
            json_is_string(json_object_get(e, "message")))
            return 1;
    }
    return 0;
}

static rta_alert_rule *rule_from(const char *text)
{
    json_t *body = load(text);
    json_t *errors = NULL;
    rta_alert_rule *r = rta_alert_rule_parse(body, "user-1", NOW_MS, &errors);
    if (r == NULL) {
        char *dump = json_dumps(errors, 0);
        fail_msg("rule rejected: %s -> %s", text, dump);
    }
    json_decref(body);
    return r;
}

/* ---- validation ---- */

#define C_OK "{\"metric\":\"tvl\",\"protocol\":\"uniswap-v3\",\"operator\":\"gt\",\"threshold\":1}"
#define A_OK "{\"type\":\"email\",\"target\":\"a@example.com\"}"
#define BODY(conds, acts) "{\"name\":\"r\",\"conditions\":[" conds "],\"actions\":[" acts "]}"
#define COND(extra) "{\"metric\":\"tvl\",\"operator\":\"gt\",\"threshold\":1" extra "}"

static void test_validation_table(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *path;
        const char *rule;
    } cases[] = {
        {"[]", "$", "type"},
        {"{\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}", "$.name", "required"},
        {"{\"name\":\"\",\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}", "$.name", "length"},
        {"{\"name\":5,\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}", "$.name", "type"},
        {"{\"name\":\"r\",\"x\":1,\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}", "$.x",
         "unknown_field"},
        {"{\"name\":\"r\",\"createdMs\":1,\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}",
         "$.createdMs", "unknown_field"},
        {"{\"name\":\"r\",\"isActive\":1,\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}",
         "$.isActive", "type"},
        {"{\"name\":\"r\",\"throttleMinutes\":-1,\"conditions\":[" C_OK "],\"actions\":[" A_OK "]}",
         "$.throttleMinutes", "range"},
        {"{\"name\":\"r\",\"throttleMinutes\":10081,\"conditions\":[" C_OK "],\"actions\":[" A_OK
         "]}",
         "$.throttleMinutes", "range"},
        {"{\"name\":\"r\",\"throttleMinutes\":1.5,\"conditions\":[" C_OK "],\"actions\":[" A_OK
         "]}",
         "$.throttleMinutes", "type"},
        {"{\"name\":\"r\",\"actions\":[" A_OK "]}", "$.conditions", "required"},
        {"{\"name\":\"r\",\"conditions\":{},\"actions\":[" A_OK "]}", "$.conditions", "type"},
        {BODY("", A_OK), "$.conditions", "count"},
        {BODY(C_OK "," C_OK "," C_OK "," C_OK "," C_OK "," C_OK "," C_OK "," C_OK "," C_OK "," C_OK
                   "," C_OK,
              A_OK),
         "$.conditions", "count"},
        {BODY(C_OK, ""), "$.actions", "count"},
        {"{\"name\":\"r\",\"conditions\":[" C_OK "]}", "$.actions", "required"},
        {BODY("5", A_OK), "$.conditions[0]", "type"},
        {BODY(COND(",\"foo\":1"), A_OK), "$.conditions[0].foo", "unknown_field"},
        {BODY("{\"operator\":\"gt\",\"threshold\":1}", A_OK), "$.conditions[0].metric", "required"},
        {BODY("{\"metric\":\"volume\",\"operator\":\"gt\",\"threshold\":1}", A_OK),
         "$.conditions[0].metric", "enum"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"ge\",\"threshold\":1}", A_OK),
         "$.conditions[0].operator", "enum"},
        {BODY("{\"metric\":\"tvl\",\"threshold\":1}", A_OK), "$.conditions[0].operator",
         "required"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"gt\"}", A_OK), "$.conditions[0].threshold",
         "required"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"gt\",\"threshold\":\"1\"}", A_OK),
         "$.conditions[0].threshold", "type"},
        {BODY(COND(",\"protocol\":\"Uniswap\""), A_OK), "$.conditions[0].protocol", "slug"},
        {BODY(COND(",\"chain\":\"eth mainnet\""), A_OK), "$.conditions[0].chain", "slug"},
        {BODY("{\"metric\":\"price\",\"operator\":\"gt\",\"threshold\":1,\"token\":\"btc\"}", A_OK),
         "$.conditions[0].token", "token"},
        {BODY(COND(",\"token\":\"coingecko:bitcoin\""), A_OK), "$.conditions[0].token", "scope"},
        {BODY("{\"metric\":\"change_24h\",\"operator\":\"lt\",\"threshold\":-0.1,"
              "\"token\":\"coingecko:bitcoin\",\"protocol\":\"aave\"}",
              A_OK),
         "$.conditions[0].protocol", "scope"},
        {BODY("{\"metric\":\"price\",\"operator\":\"gt\",\"threshold\":1,\"chain\":\"ethereum\"}",
              A_OK),
         "$.conditions[0].chain", "scope"},
        {BODY("{\"metric\":\"change_1h\",\"operator\":\"change_pct\",\"threshold\":0.1}", A_OK),
         "$.conditions[0].operator", "operator"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"change_pct\",\"threshold\":0}", A_OK),
         "$.conditions[0].threshold", "range"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"change_pct\",\"threshold\":101}", A_OK),
         "$.conditions[0].threshold", "range"},
        {BODY("{\"metric\":\"change_7d\",\"operator\":\"lt\",\"threshold\":-150}", A_OK),
         "$.conditions[0].threshold", "range"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"change_pct\",\"threshold\":0.1,"
              "\"timeWindow\":59}",
              A_OK),
         "$.conditions[0].timeWindow", "range"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"change_pct\",\"threshold\":0.1,"
              "\"timeWindow\":604801}",
              A_OK),
         "$.conditions[0].timeWindow", "range"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"change_pct\",\"threshold\":0.1,"
              "\"timeWindow\":\"1h\"}",
              A_OK),
         "$.conditions[0].timeWindow", "type"},
        {BODY(COND(",\"timeWindow\":3600"), A_OK), "$.conditions[0].timeWindow", "not_applicable"},
        {BODY(COND(",\"tolerance\":0.1"), A_OK), "$.conditions[0].tolerance", "not_applicable"},
        {BODY("{\"metric\":\"tvl\",\"operator\":\"eq\",\"threshold\":1,\"tolerance\":-1}", A_OK),
         "$.conditions[0].tolerance", "range"},
        {BODY(C_OK ",{\"metric\":\"price\",\"operator\":\"gt\",\"threshold\":1}", A_OK),
         "$.conditions[1]", "scope"},
        {BODY("{\"metric\":\"price\",\"token\":\"coingecko:bitcoin\",\"operator\":\"gt\","
              "\"threshold\":1}," COND(""),
              A_OK),
         "$.conditions[1]", "scope"},
        {BODY(C_OK, "7"), "$.actions[0]", "type"},
        {BODY(C_OK, "{\"type\":\"sms\",\"target\":\"x\"}"), "$.actions[0].type", "enum"},
        {BODY(C_OK, "{\"type\":\"email\"}"), "$.actions[0].target", "required"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a@b.c\",\"x\":1}"), "$.actions[0].x",
         "unknown_field"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a@b.c\",\"secret\":\"whsec_x\"}"),
         "$.actions[0].secret", "unknown_field"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"nobody\"}"), "$.actions[0].target", "email"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a@localhost\"}"), "$.actions[0].target",
         "email"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a..b@example.com\"}"), "$.actions[0].target",
         "email"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a b@example.com\"}"), "$.actions[0].target",
         "email"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a@-x.com\"}"), "$.actions[0].target",
         "email"},
        {BODY(C_OK, "{\"type\":\"webhook\",\"target\":\"ftp://example.com/x\"}"),
         "$.actions[0].target", "url"},
        {BODY(C_OK, "{\"type\":\"webhook\",\"target\":\"https://\"}"), "$.actions[0].target",
         "url"},
        {BODY(C_OK, "{\"type\":\"webhook\",\"target\":\"https://user:pw@example.com/\"}"),
         "$.actions[0].target", "url"},
        {BODY(C_OK, "{\"type\":\"webhook\",\"target\":\"https://exa mple.com/\"}"),
         "$.actions[0].target", "url"},
        {BODY(C_OK, "{\"type\":\"webhook\",\"target\":\"https://example.com:99999999/\"}"),
         "$.actions[0].target", "url"},
        {BODY(C_OK, "{\"type\":\"push\",\"target\":\"\"}"), "$.actions[0].target", "length"},
        {BODY(C_OK, "{\"type\":\"push\",\"target\":\"abc def\"}"), "$.actions[0].target",
         "device_token"},
        {BODY(C_OK, "{\"type\":\"email\",\"target\":\"a@b.co\",\"template\":\"fancy\"}"),
         "$.actions[0].template", "template"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(cases); i++) {
        json_t *body = load(cases[i].body);
        json_t *errors = NULL;
        rta_alert_rule *r = rta_alert_rule_parse(body, "u", NOW_MS, &errors);
        if (r != NULL)
            fail_msg("case %zu accepted: %s", i, cases[i].body);
        if (!has_error(errors, cases[i].path, cases[i].rule)) {
            char *dump = json_dumps(errors, 0);
            fail_msg("case %zu: want %s %s, got %s", i, cases[i].path, cases[i].rule, dump);
        }
        json_decref(errors);
        json_decref(body);
    }
}

static void test_long_url_and_all_errors(void **state)
{
    (void)state;
    char *url = malloc(2100);
    strcpy(url, "https://example.com/");
    memset(url + 20, 'a', 2040);
    url[2060] = '\0';
    char *text = malloc(2300);
    snprintf(text, 2300, BODY(C_OK, "{\"type\":\"webhook\",\"target\":\"%s\"}"), url);
    json_t *body = load(text), *errors = NULL;
    assert_null(rta_alert_rule_parse(body, "u", NOW_MS, &errors));
    assert_true(has_error(errors, "$.actions[0].target", "url"));
    json_decref(errors);
    json_decref(body);
    free(text);
    free(url);

    /* Every problem is reported, not just the first. */
    body = load("{\"name\":\"\",\"throttleMinutes\":-5,\"conditions\":[{\"metric\":\"x\","
                "\"operator\":\"gt\",\"threshold\":1}],\"actions\":[{\"type\":\"email\","
                "\"target\":\"bad\"}]}");
    assert_null(rta_alert_rule_parse(body, "u", NOW_MS, &errors));
    assert_true(has_error(errors, "$.name", "length"));
    assert_true(has_error(errors, "$.throttleMinutes", "range"));
    assert_true(has_error(errors, "$.conditions[0].metric", "enum"));
    assert_true(has_error(errors, "$.actions[0].target", "email"));
    json_decref(errors);
    json_decref(body);
}

static void test_parse_good(void **state)
{
    (void)state;
    rta_alert_rule *r = rule_from(
        "{\"name\":\"Uniswap TVL Alert\",\"description\":\"d\",\"conditions\":["
        "{\"protocol\":\"uniswap-v3\",\"metric\":\"tvl\",\"operator\":\"change_pct\","
        "\"threshold\":0.1,\"timeWindow\":3600},"
        "{\"metric\":\"change_24h\",\"token\":\"coingecko:ethereum\",\"operator\":\"lt\","
        "\"threshold\":-0.2},"
        "{\"metric\":\"tvl\",\"chain\":\"ethereum\",\"operator\":\"eq\",\"threshold\":5}],"
        "\"actions\":[{\"type\":\"email\",\"target\":\"user@example.com\","
        "\"template\":\"tvl_change\"},{\"type\":\"webhook\",\"target\":"
        "\"https://hooks.example.com:8443/x?y=1\"},{\"type\":\"push\",\"target\":\"fcm-tok:1\"}],"
        "\"ruleId\":\"ignored\",\"createdAt\":\"ignored\"}");
    assert_int_equal(strlen(r->id), 36);
    assert_string_equal(r->user_id, "user-1");
    assert_string_equal(r->name, "Uniswap TVL Alert");
    assert_string_equal(r->description, "d");
    assert_true(r->is_active);
    assert_int_equal(r->throttle_minutes, 5);
    assert_false(r->notify_resolved);
    assert_int_equal(r->nconditions, 3);
    assert_int_equal(r->conditions[0].op, RTA_OP_CHANGE_PCT);
    assert_int_equal(r->conditions[0].time_window_s, 3600);
    assert_false(r->conditions[0].price_scope);
    assert_null(r->conditions[0].chain);
    assert_true(r->conditions[1].price_scope);
    assert_string_equal(r->conditions[1].token, "coingecko:ethereum");
    assert_true(r->conditions[2].tolerance == 1e-9);
    assert_int_equal(r->nactions, 3);
    assert_null(r->actions[0].secret);
    assert_non_null(r->actions[1].secret);
    assert_int_equal(strncmp(r->actions[1].secret, "whsec_", 6), 0);
    assert_int_equal(strlen(r->actions[1].secret), 6 + 32);
    assert_true(r->created_ms == NOW_MS && r->updated_ms == NOW_MS);

    json_t *j = rta_alert_rule_to_json(r, false);
    assert_string_equal(json_string_value(json_object_get(j, "ruleId")), r->id);
    assert_string_equal(json_string_value(json_object_get(j, "createdAt")),
                        "2025-11-27T10:20:00.000Z");
    assert_true(json_is_null(json_object_get(j, "lastTriggered")));
    json_t *acts = json_object_get(j, "actions");
    assert_null(json_object_get(json_array_get(acts, 1), "secret"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(acts, 0), "template")),
                        "tvl_change");
    json_t *c0 = json_array_get(json_object_get(j, "conditions"), 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "timeWindow")), 3600);
    json_decref(j);
    j = rta_alert_rule_to_json(r, true);
    acts = json_object_get(j, "actions");
    assert_string_equal(json_string_value(json_object_get(json_array_get(acts, 1), "secret")),
                        r->actions[1].secret);
    /* What GET returns can be PUT back. */
    json_t *errors = NULL;
    json_t *acts2 = json_object_get(j, "actions");
    for (size_t i = 0; i < json_array_size(acts2); i++)
        json_object_del(json_array_get(acts2, i), "secret");
    rta_alert_rule *again = rta_alert_rule_parse(j, "user-1", NOW_MS, &errors);
    assert_non_null(again);
    rta_alert_rule_free(again);
    json_decref(j);

    /* Two webhook rules never share a secret. */
    rta_alert_rule *r2 = rta_alert_rule_copy(r);
    assert_string_equal(r2->actions[1].secret, r->actions[1].secret);
    assert_ptr_not_equal(r2->actions[1].secret, r->actions[1].secret);
    rta_alert_rule_free(r2);
    rta_alert_rule_free(r);
}

static void test_patch(void **state)
{
    (void)state;
    rta_alert_rule *r = rule_from(
        "{\"name\":\"n\",\"description\":\"d\",\"throttleMinutes\":7,\"conditions\":[" C_OK "],"
        "\"actions\":[{\"type\":\"webhook\",\"target\":\"https://a.example.com/h\"},"
        "{\"type\":\"webhook\",\"target\":\"https://b.example.com/h\"}]}");
    char secret_a[64], secret_b[64];
    snprintf(secret_a, sizeof secret_a, "%s", r->actions[0].secret);
    snprintf(secret_b, sizeof secret_b, "%s", r->actions[1].secret);
    r->last_triggered_ms = NOW_MS - 5;

    /* Fields not in the patch are kept. */
    json_t *p = load("{\"name\":\"renamed\",\"isActive\":false,\"description\":null}");
    json_t *errors = NULL;
    rta_alert_rule *q = rta_alert_rule_patch(r, p, NOW_MS + 1000, &errors);
    assert_non_null(q);
    assert_string_equal(q->id, r->id);
    assert_string_equal(q->user_id, "user-1");
    assert_string_equal(q->name, "renamed");
    assert_null(q->description);
    assert_false(q->is_active);
    assert_int_equal(q->throttle_minutes, 7);
    assert_int_equal(q->nconditions, 1);
    assert_string_equal(q->conditions[0].protocol, "uniswap-v3");
    assert_string_equal(q->actions[0].secret, secret_a);
    assert_string_equal(q->actions[1].secret, secret_b);
    assert_true(q->created_ms == NOW_MS);
    assert_true(q->updated_ms == NOW_MS + 1000);
    assert_true(q->last_triggered_ms == NOW_MS - 5);
    rta_alert_rule_free(q);
    json_decref(p);

    /* Actions replaced whole: an unchanged webhook target keeps its secret, a new one gets a
     * new secret. */
    p = load("{\"actions\":[{\"type\":\"webhook\",\"target\":\"https://b.example.com/h\"},"
             "{\"type\":\"webhook\",\"target\":\"https://c.example.com/h\"}]}");
    q = rta_alert_rule_patch(r, p, NOW_MS + 2000, &errors);
    assert_non_null(q);
    assert_int_equal(q->nactions, 2);
    assert_string_equal(q->actions[0].secret, secret_b);
    assert_string_not_equal(q->actions[1].secret, secret_a);
    assert_string_not_equal(q->actions[1].secret, secret_b);
    assert_string_equal(q->name, "n");
    rta_alert_rule_free(q);
    json_decref(p);

    /* Errors keep the patch's paths; secrets and unknown fields cannot be patched in. */
    p = load("{\"conditions\":[{\"metric\":\"tvl\",\"operator\":\"gt\",\"threshold\":1},"
             "{\"metric\":\"tvl\",\"operator\":\"lt\"}],\"actions\":[{\"type\":\"webhook\","
             "\"target\":\"https://a.example.com/h\",\"secret\":\"whsec_mine\"}],\"zzz\":1}");
    assert_null(rta_alert_rule_patch(r, p, NOW_MS, &errors));
    assert_true(has_error(errors, "$.conditions[1].threshold", "required"));
    assert_true(has_error(errors, "$.actions[0].secret", "unknown_field"));
    assert_true(has_error(errors, "$.zzz", "unknown_field"));
    json_decref(errors);
    json_decref(p);

    p = load("{\"name\":null}");
    assert_null(rta_alert_rule_patch(r, p, NOW_MS, &errors));
    assert_true(has_error(errors, "$.name", "type"));
    json_decref(errors);
    json_decref(p);

    p = load("[1]");
    assert_null(rta_alert_rule_patch(r, p, NOW_MS, &errors));
    assert_true(has_error(errors, "$", "type"));
    json_decref(errors);
    json_decref(p);
    rta_alert_rule_free(r);
}

static void test_storage_round_trip(void **state)
{
    (void)state;
    rta_alert_rule *r = rule_from(
        "{\"name\":\"s\",\"description\":\"\",\"isActive\":false,\"throttleMinutes\":0,"
        "\"notifyResolved\":true,\"conditions\":[{\"metric\":\"price\",\"token\":"
        "\"ethereum:0xabc\",\"operator\":\"eq\",\"threshold\":2.5,\"tolerance\":0.001},"
        "{\"metric\":\"change_7d\",\"token\":\"ethereum:0xabc\",\"operator\":\"gt\","
        "\"threshold\":0.3}],\"actions\":["
        "{\"type\":\"webhook\",\"target\":\"http://[::1]:8080/x\",\"template\":\"default\"}]}");
    r->last_triggered_ms = NOW_MS + 42;
    json_t *s1 = rta_alert_rule_to_storage(r);
    char *text = json_dumps(s1, JSON_SORT_KEYS);
    json_t *loaded = load(text);
    rta_alert_rule *back = rta_alert_rule_from_storage(loaded);
    assert_non_null(back);
    json_t *s2 = rta_alert_rule_to_storage(back);
    char *text2 = json_dumps(s2, JSON_SORT_KEYS);
    assert_string_equal(text, text2);
    assert_string_equal(back->id, r->id);
    assert_string_equal(back->actions[0].secret, r->actions[0].secret);
    assert_true(back->last_triggered_ms == NOW_MS + 42);
    assert_false(back->is_active);
    assert_true(back->notify_resolved);
    assert_int_equal(back->throttle_minutes, 0);
    assert_true(back->conditions[0].tolerance == 0.001);
    assert_string_equal(back->description, "");
    free(text);
    free(text2);
    json_decref(s1);
    json_decref(s2);
    rta_alert_rule_free(back);

    /* A stored form that is not a rule is refused. */
    json_object_del(loaded, "ruleId");
    assert_null(rta_alert_rule_from_storage(loaded));
    json_decref(loaded);
    rta_alert_rule_free(r);
}

/* ---- templates ---- */

static void test_templates(void **state)
{
    (void)state;
    assert_true(rta_alert_template_exists("tvl_change"));
    assert_true(rta_alert_template_exists("price_change"));
    assert_true(rta_alert_template_exists("default"));
    assert_false(rta_alert_template_exists("nope"));
    assert_false(rta_alert_template_exists(NULL));

    json_t *vars = json_pack("{s:s,s:s,s:s,s:s,s:f,s:f,s:s,s:f,s:s,s:s,s:s,s:s}", "rule",
                             "Uni alert", "protocol", "uniswap-v3", "chain", "ethereum", "metric",
                             "tvl", "value", 1234.5, "previous", 1000.0, "change", "+23.45%",
                             "threshold", 1200.0, "time", "2025-11-27T10:20:00Z", "event_id",
                             "0190-abc", "state", "firing", "event_type", "tvl_change");
    char *subject, *body;
    rta_alert_template_render("tvl_change", vars, &subject, &body);
    assert_string_equal(subject, "[rta] Uni alert: uniswap-v3 TVL alert firing");
    assert_non_null(strstr(body, "Chain: ethereum\n"));
    assert_non_null(strstr(body, "Value: 1234.5 (previous 1000, change +23.45%)"));
    assert_non_null(strstr(body, "Event: 0190-abc"));
    assert_null(strstr(body, "{{"));
    free(subject);
    free(body);

    /* NULL name: by event type; unknown name: default; missing vars render empty. */
    rta_alert_template_render(NULL, vars, &subject, &body);
    assert_string_equal(subject, "[rta] Uni alert: uniswap-v3 TVL alert firing");
    free(subject);
    free(body);
    json_object_set_new(vars, "event_type", json_string("price_change"));
    json_object_del(vars, "token");
    rta_alert_template_render(NULL, vars, &subject, &body);
    assert_string_equal(subject, "[rta] Uni alert:  price alert firing");
    free(subject);
    free(body);
    rta_alert_template_render("nope", vars, &subject, &body);
    assert_string_equal(subject, "[rta] Uni alert firing");
    free(subject);
    free(body);
    json_decref(vars);

    char bad[32];
    assert_int_equal(rta_alert_template_check("Hi {{rule}} at {{time}}", bad, sizeof bad), 0);
    assert_int_equal(rta_alert_template_check("no fields", bad, sizeof bad), 0);
    assert_int_equal(rta_alert_template_check("{{rule}} {{price}}", bad, sizeof bad), -1);
    assert_string_equal(bad, "price");
    assert_int_equal(rta_alert_template_check("{{rule", bad, sizeof bad), -1);
    assert_string_equal(bad, "rule");
}

/* ---- engine ---- */

typedef struct {
    rta_alert_trigger t[64];
    char rule_id[64][37];
    size_t n;
} sink;

static void collect(void *ud, const rta_alert_trigger *t)
{
    sink *s = ud;
    if (s->n < 64) {
        s->t[s->n] = *t;
        memcpy(s->rule_id[s->n], t->rule->id, 37);
        s->n++;
    }
}

typedef struct {
    rta_state *st;
    rta_alert_engine *eng;
    sink out;
    uint64_t offset;
} fixture;

static void fx_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->st = rta_state_new(NULL);
    f->eng = rta_alert_engine_new();
}

static void fx_free(fixture *f)
{
    rta_alert_engine_free(f->eng);
    rta_state_free(f->st);
}

static void seed_tvl(fixture *f, const char *proto, const char *chain, double v, int64_t ts)
{
    rta_tvl_update u = {.protocol = proto, .chain = chain, .tvl = v, .ts_ms = ts};
    rta_state_restore_tvl(f->st, &u);
}

static void seed_price(fixture *f, const char *token, double v, int64_t ts)
{
    rta_price_update u = {.token = token, .price = v, .ts_ms = ts};
    rta_state_restore_price(f->st, &u);
}

/* Applies an update and evaluates the change event it produces (as the bus would); returns the
 * number of rules evaluated. The event is kept in *keep when keep is not NULL. */
static size_t push_event(fixture *f, rta_event **out, size_t nout, int64_t ts, rta_event **keep)
{
    size_t evaluated = 0;
    for (size_t i = 0; i < nout; i++) {
        if (out[i]->type != RTA_EVENT_PROTOCOL_UPDATE) {
            out[i]->offset = ++f->offset;
            evaluated += rta_alert_engine_evaluate(f->eng, f->st, out[i], ts, collect, &f->out);
        }
        if (keep && out[i]->type != RTA_EVENT_PROTOCOL_UPDATE)
            *keep = rta_event_ref(out[i]);
        rta_event_unref(out[i]);
    }
    return evaluated;
}

static size_t tvl(fixture *f, const char *proto, const char *chain, double v, int64_t ts)
{
    rta_tvl_update u = {.protocol = proto, .chain = chain, .tvl = v, .ts_ms = ts};
    rta_event *out[2];
    size_t n = 0;
    rta_state_apply_tvl(f->st, &u, "ingest", out, 2, &n);
    return push_event(f, out, n, ts, NULL);
}

static size_t price(fixture *f, const char *token, double v, int64_t ts)
{
    rta_price_update u = {.token = token, .price = v, .ts_ms = ts};
    rta_event *out[2];
    size_t n = 0;
    rta_state_apply_price(f->st, &u, "ingest", out, 2, &n);
    return push_event(f, out, n, ts, NULL);
}

static rta_alert_rule *put_rule(fixture *f, const char *text)
{
    rta_alert_rule *r = rule_from(text);
    rta_alert_engine_put(f->eng, r);
    return r;
}

#define RULE1(cond, extra)                                                                         \
    "{\"name\":\"t\"" extra ",\"conditions\":[" cond "],\"actions\":[{\"type\":\"email\","         \
    "\"target\":\"a@example.com\"}]}"

static void test_level_gt_lt_eq(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_tvl(&f, "uni", "ethereum", 50, NOW_MS - 10 * MIN_MS);
    rta_alert_rule *gt =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"gt\",\"threshold\":100}",
                           ",\"throttleMinutes\":0"));
    rta_alert_rule *lt =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"lt\",\"threshold\":40}",
                           ",\"throttleMinutes\":0,\"notifyResolved\":true"));
    rta_alert_rule *eq =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"eq\",\"threshold\":200,\"tolerance\":0.01}",
                           ",\"throttleMinutes\":0"));
    int64_t t = NOW_MS;

    assert_int_equal(tvl(&f, "uni", "ethereum", 150, t += 1000), 3);
    assert_int_equal(f.out.n, 1);
    assert_string_equal(f.out.rule_id[0], gt->id);
    assert_false(f.out.t[0].resolved);
    assert_string_equal(f.out.t[0].series, "tvl:uni:ethereum");
    assert_true(f.out.t[0].value == 150);
    assert_true(f.out.t[0].previous == 50);
    assert_true(f.out.t[0].event_offset == 1);
    assert_true(f.out.t[0].at_ms == t);
    assert_int_equal(strlen(f.out.t[0].event_id), 36);
    assert_true(rta_alert_engine_get(f.eng, gt->id)->last_triggered_ms == t);

    /* Still above: a level rule notifies once while firing. */
    tvl(&f, "uni", "ethereum", 160, t += 1000);
    assert_int_equal(f.out.n, 1);
    /* eq within 1% of 200 */
    tvl(&f, "uni", "ethereum", 201.5, t += 1000);
    assert_int_equal(f.out.n, 2);
    assert_string_equal(f.out.rule_id[1], eq->id);
    tvl(&f, "uni", "ethereum", 203, t += 1000); /* out of tolerance: eq resolves silently */
    assert_int_equal(f.out.n, 2);
    /* Below 100: gt resolves without a notice (notifyResolved false). */
    tvl(&f, "uni", "ethereum", 90, t += 1000);
    assert_int_equal(f.out.n, 2);
    /* Below 40: lt fires; back above: resolved notice. */
    tvl(&f, "uni", "ethereum", 30, t += 1000);
    assert_int_equal(f.out.n, 3);
    assert_string_equal(f.out.rule_id[2], lt->id);
    tvl(&f, "uni", "ethereum", 45, t += 1000);
    assert_int_equal(f.out.n, 4);
    assert_string_equal(f.out.rule_id[3], lt->id);
    assert_true(f.out.t[3].resolved);
    assert_true(f.out.t[3].value == 45);
    /* gt fires again on a new episode. */
    tvl(&f, "uni", "ethereum", 120, t += 1000);
    assert_int_equal(f.out.n, 5);
    assert_string_equal(f.out.rule_id[4], gt->id);
    /* Other pairs do not touch these rules. */
    seed_tvl(&f, "uni", "arbitrum", 1, NOW_MS);
    assert_int_equal(tvl(&f, "uni", "arbitrum", 500, t += 1000), 0);
    assert_int_equal(f.out.n, 5);

    rta_alert_rule_free(gt);
    rta_alert_rule_free(lt);
    rta_alert_rule_free(eq);
    fx_free(&f);
}

static void test_change_pct_windows(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    /* Back-dated history: 110 a day ago, 100 an hour ago and until now. */
    seed_tvl(&f, "uni", "ethereum", 110, NOW_MS - 90000 * 1000LL);
    seed_tvl(&f, "uni", "ethereum", 100, NOW_MS - 2 * 3600 * 1000LL);
    seed_tvl(&f, "uni", "ethereum", 100, NOW_MS - 60 * 1000LL);
    rta_alert_rule *hour =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"change_pct\",\"threshold\":0.1,\"timeWindow\":3600}",
                           ""));
    rta_alert_rule *day =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"change_pct\",\"threshold\":0.1,\"timeWindow\":86400}",
                           ""));
    rta_alert_rule *c24 =
        put_rule(&f, RULE1("{\"metric\":\"change_24h\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"lt\",\"threshold\":-0.05}",
                           ""));

    /* 100 -> 115: +15% over 1 h fires; over 24 h it is 115/110 = +4.5%: no. */
    tvl(&f, "uni", "ethereum", 115, NOW_MS);
    assert_int_equal(f.out.n, 1);
    assert_string_equal(f.out.rule_id[0], hour->id);
    assert_true(fabs(f.out.t[0].value - 0.15) < 1e-6);
    /* A drop to 95: -5% over 1 h (resolves), -13.6% over 24 h fires both day rules. */
    tvl(&f, "uni", "ethereum", 95, NOW_MS + 1000);
    assert_int_equal(f.out.n, 3);
    assert_string_equal(f.out.rule_id[1], day->id);
    assert_string_equal(f.out.rule_id[2], c24->id);
    assert_true(f.out.t[2].value < -0.13);

    rta_alert_rule_free(hour);
    rta_alert_rule_free(day);
    rta_alert_rule_free(c24);
    fx_free(&f);
}

static void test_crossing(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_price(&f, "coingecko:ethereum", 90, NOW_MS - MIN_MS);
    rta_alert_rule *up =
        put_rule(&f, RULE1("{\"metric\":\"price\",\"token\":\"coingecko:ethereum\","
                           "\"operator\":\"crosses_above\",\"threshold\":100}",
                           ",\"throttleMinutes\":0,\"notifyResolved\":true"));
    rta_alert_rule *down =
        put_rule(&f, RULE1("{\"metric\":\"price\",\"token\":\"coingecko:ethereum\","
                           "\"operator\":\"crosses_below\",\"threshold\":100}",
                           ",\"throttleMinutes\":0"));
    int64_t t = NOW_MS;
    price(&f, "coingecko:ethereum", 110, t += 1000);
    assert_int_equal(f.out.n, 1);
    assert_string_equal(f.out.rule_id[0], up->id);
    assert_string_equal(f.out.t[0].series, "price:coingecko:ethereum");
    assert_true(f.out.t[0].previous == 90);
    price(&f, "coingecko:ethereum", 120, t += 1000); /* no crossing */
    assert_int_equal(f.out.n, 1);
    price(&f, "coingecko:ethereum", 100, t += 1000); /* to 100: crosses below (> -> <=)? no */
    assert_int_equal(f.out.n, 1);
    price(&f, "coingecko:ethereum", 99, t += 1000); /* 100 -> 99: crosses below */
    assert_int_equal(f.out.n, 2);
    assert_string_equal(f.out.rule_id[1], down->id);
    assert_false(f.out.t[1].resolved);               /* edge rules send no resolved notices */
    price(&f, "coingecko:ethereum", 101, t += 1000); /* each crossing is a new firing */
    assert_int_equal(f.out.n, 3);
    assert_string_equal(f.out.rule_id[2], up->id);
    rta_alert_rule_free(up);
    rta_alert_rule_free(down);
    fx_free(&f);
}

static void test_throttle_burst_and_flapping(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_tvl(&f, "uni", "ethereum", 90, NOW_MS - MIN_MS);
    seed_tvl(&f, "aave", "ethereum", 10, NOW_MS - MIN_MS);
    rta_alert_rule *edge =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"crosses_above\",\"threshold\":100}",
                           ",\"throttleMinutes\":5"));
    /* Burst: 20 crossings within a minute -> one trigger. */
    int64_t t = NOW_MS;
    for (int i = 0; i < 40; i++)
        tvl(&f, "uni", "ethereum", i % 2 ? 90 : 110, t += 1000);
    assert_int_equal(f.out.n, 1);
    /* After the cooldown the next crossing notifies again. */
    t = NOW_MS + 5 * MIN_MS + 1000;
    tvl(&f, "uni", "ethereum", 110, t);
    assert_int_equal(f.out.n, 2);

    /* Flapping level rule with notifyResolved: firing and resolved pair up; a firing entered
     * during the cooldown is notified once the cooldown is over if it still holds. */
    f.out.n = 0;
    rta_alert_rule *lvl =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"aave\",\"chain\":\"ethereum\","
                           "\"operator\":\"gt\",\"threshold\":100}",
                           ",\"throttleMinutes\":5,\"notifyResolved\":true"));
    t = NOW_MS;
    tvl(&f, "aave", "ethereum", 150, t += 1000); /* firing */
    tvl(&f, "aave", "ethereum", 50, t += 1000);  /* resolved */
    for (int i = 0; i < 10; i++)
        tvl(&f, "aave", "ethereum", i % 2 ? 50 : 150 + i, t += 1000); /* suppressed */
    assert_int_equal(f.out.n, 2);
    assert_false(f.out.t[0].resolved);
    assert_true(f.out.t[1].resolved);
    tvl(&f, "aave", "ethereum", 170, t += 1000); /* firing, still cooling down */
    assert_int_equal(f.out.n, 2);
    tvl(&f, "aave", "ethereum", 171, NOW_MS + 6 * MIN_MS); /* still firing, cooled: notify */
    assert_int_equal(f.out.n, 3);
    assert_false(f.out.t[2].resolved);
    tvl(&f, "aave", "ethereum", 172, NOW_MS + 7 * MIN_MS); /* once */
    assert_int_equal(f.out.n, 3);
    tvl(&f, "aave", "ethereum", 10, NOW_MS + 7 * MIN_MS + 1000);
    assert_int_equal(f.out.n, 4);
    assert_true(f.out.t[3].resolved);
    rta_alert_rule_free(edge);
    rta_alert_rule_free(lvl);
    fx_free(&f);
}

static size_t count_series(const sink *s, const char *series)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += strcmp(s->t[i].series, series) == 0;
    return n;
}

static void test_wildcards_and_protocol_totals(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_tvl(&f, "a", "ethereum", 100, NOW_MS - MIN_MS);
    seed_tvl(&f, "a", "arbitrum", 100, NOW_MS - MIN_MS);
    seed_tvl(&f, "b", "ethereum", 100, NOW_MS - MIN_MS);
    seed_price(&f, "coingecko:x", 1, NOW_MS - MIN_MS);
    seed_price(&f, "coingecko:y", 1, NOW_MS - MIN_MS);
    /* any protocol's total TVL > 1000 */
    rta_alert_rule *any =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"operator\":\"gt\",\"threshold\":1000}", ""));
    /* protocol a's total > 1000 */
    rta_alert_rule *prot =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"a\",\"operator\":\"gt\","
                           "\"threshold\":1000}",
                           ""));
    /* any protocol on ethereum > 500 (pairs) */
    rta_alert_rule *onchain =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"chain\":\"ethereum\",\"operator\":\"gt\","
                           "\"threshold\":500}",
                           ""));
    /* any token above 10 */
    rta_alert_rule *anyprice =
        put_rule(&f, RULE1("{\"metric\":\"price\",\"operator\":\"gt\",\"threshold\":10}", ""));
    int64_t t = NOW_MS;

    /* a/ethereum 600: pair rule fires for tvl:a:ethereum; a's total is 700. */
    assert_int_equal(tvl(&f, "a", "ethereum", 600, t += 1000), 3);
    assert_int_equal(f.out.n, 1);
    assert_string_equal(f.out.rule_id[0], onchain->id);
    assert_string_equal(f.out.t[0].series, "tvl:a:ethereum");
    /* a/arbitrum 600: a's total 1200 -> both total rules, series tvl:a, previous total 700. */
    tvl(&f, "a", "arbitrum", 600, t += 1000);
    assert_int_equal(f.out.n, 3);
    assert_int_equal(count_series(&f.out, "tvl:a"), 2);
    assert_true(f.out.t[1].value == 1200 && f.out.t[1].previous == 700);
    /* b: its own state for the wildcard rules. */
    tvl(&f, "b", "ethereum", 2000, t += 1000);
    assert_int_equal(f.out.n, 5);
    assert_int_equal(count_series(&f.out, "tvl:b"), 1);
    assert_int_equal(count_series(&f.out, "tvl:b:ethereum"), 1);
    /* a stays above: nothing new for a; b keeps firing too. */
    tvl(&f, "a", "arbitrum", 700, t += 1000);
    tvl(&f, "b", "ethereum", 2100, t += 1000);
    assert_int_equal(f.out.n, 5);
    /* prices: per-token state */
    assert_int_equal(price(&f, "coingecko:x", 20, t += 1000), 1);
    price(&f, "coingecko:y", 30, t += 1000);
    price(&f, "coingecko:x", 21, t += 1000);
    assert_int_equal(f.out.n, 7);
    assert_int_equal(count_series(&f.out, "price:coingecko:x"), 1);
    assert_int_equal(count_series(&f.out, "price:coingecko:y"), 1);
    for (size_t i = 5; i < 7; i++)
        assert_string_equal(f.out.rule_id[i], anyprice->id);
    (void)any;
    (void)prot;
    rta_alert_rule_free(any);
    rta_alert_rule_free(prot);
    rta_alert_rule_free(onchain);
    rta_alert_rule_free(anyprice);
    fx_free(&f);
}

static void test_multi_condition(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_tvl(&f, "uni", "ethereum", 50, NOW_MS - MIN_MS);
    seed_tvl(&f, "uni", "base", 50, NOW_MS - MIN_MS);
    seed_price(&f, "coingecko:ethereum", 1000, NOW_MS - MIN_MS);
    /* uni/ethereum > 100 AND eth price > 2000 */
    rta_alert_rule *r = put_rule(
        &f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                  "\"operator\":\"gt\",\"threshold\":100},{\"metric\":\"price\","
                  "\"token\":\"coingecko:ethereum\",\"operator\":\"gt\",\"threshold\":2000}",
                  ",\"throttleMinutes\":0"));
    /* any chain pair of a protocol > 100 while that protocol's total < 1000 */
    rta_alert_rule *w =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"chain\":\"base\",\"operator\":\"gt\","
                           "\"threshold\":100},{\"metric\":\"tvl\",\"operator\":\"lt\","
                           "\"threshold\":1000}",
                           ",\"throttleMinutes\":0"));
    int64_t t = NOW_MS;
    tvl(&f, "uni", "ethereum", 150, t += 1000);
    assert_int_equal(f.out.n, 0); /* price condition false */
    price(&f, "coingecko:ethereum", 2500, t += 1000);
    assert_int_equal(f.out.n, 0); /* price events do not touch a rule indexed on TVL */
    tvl(&f, "uni", "ethereum", 160, t += 1000);
    assert_int_equal(f.out.n, 1);
    assert_string_equal(f.out.rule_id[0], r->id);
    /* second rule: uni/base 200, total 360 < 1000 */
    tvl(&f, "uni", "base", 200, t += 1000);
    assert_int_equal(f.out.n, 2);
    assert_string_equal(f.out.rule_id[1], w->id);
    assert_string_equal(f.out.t[1].series, "tvl:uni:base");
    tvl(&f, "uni", "ethereum", 5000, t += 1000); /* total > 1000: w is not indexed here ... */
    tvl(&f, "uni", "base", 210, t += 1000);      /* ... and resolves at its next base event */
    assert_int_equal(f.out.n, 2);
    tvl(&f, "uni", "ethereum", 10, t += 1000);
    tvl(&f, "uni", "base", 220, t += 1000); /* total 230 again: new firing */
    assert_int_equal(f.out.n, 3);
    assert_string_equal(f.out.rule_id[2], w->id);
    rta_alert_rule_free(r);
    rta_alert_rule_free(w);
    fx_free(&f);
}

static void test_inactive_remove_replace_offsets(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_tvl(&f, "uni", "ethereum", 50, NOW_MS - MIN_MS);
    rta_alert_rule *off =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"gt\",\"threshold\":100}",
                           ",\"isActive\":false"));
    rta_alert_rule *on =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"gt\",\"threshold\":100}",
                           ",\"throttleMinutes\":0,\"notifyResolved\":true"));
    assert_int_equal(rta_alert_engine_count(f.eng), 2);
    assert_int_equal(rta_alert_engine_active(f.eng), 1);
    assert_int_equal(rta_alert_engine_user_count(f.eng, "user-1"), 2);
    assert_int_equal(rta_alert_engine_user_count(f.eng, "nobody"), 0);
    assert_non_null(rta_alert_engine_get(f.eng, off->id));
    assert_null(rta_alert_engine_get(f.eng, "nope"));

    /* The same event evaluated twice (a replay) fires once. */
    rta_tvl_update u = {.protocol = "uni", .chain = "ethereum", .tvl = 150, .ts_ms = NOW_MS};
    rta_event *ev[2];
    size_t n = 0;
    rta_state_apply_tvl(f.st, &u, "ingest", ev, 2, &n);
    assert_int_equal(n, 1);
    ev[0]->offset = 77;
    assert_int_equal(rta_alert_engine_evaluate(f.eng, f.st, ev[0], NOW_MS, collect, &f.out), 1);
    assert_int_equal(rta_alert_engine_evaluate(f.eng, f.st, ev[0], NOW_MS, collect, &f.out), 1);
    assert_int_equal(f.out.n, 1);
    assert_string_equal(f.out.rule_id[0], on->id);
    /* protocol_update events evaluate nothing */
    rta_event *pu = rta_event_new(RTA_EVENT_PROTOCOL_UPDATE, "uni", "ethereum", NULL, "ingest");
    assert_int_equal(rta_alert_engine_evaluate(f.eng, f.st, pu, NOW_MS, collect, &f.out), 0);
    rta_event_unref(pu);
    rta_event_unref(ev[0]);

    /* Replacing the rule resets its state: it fires again although the value did not move. */
    rta_alert_engine_put(f.eng, on);
    tvl(&f, "uni", "ethereum", 151, NOW_MS + 1000);
    assert_int_equal(f.out.n, 2);
    assert_int_equal(rta_alert_engine_count(f.eng), 2);

    /* Activating the other rule through a replace. */
    off->is_active = true;
    rta_alert_engine_put(f.eng, off);
    assert_int_equal(rta_alert_engine_active(f.eng), 2);
    tvl(&f, "uni", "ethereum", 152, NOW_MS + 2000);
    assert_int_equal(f.out.n, 3);
    assert_string_equal(f.out.rule_id[2], off->id);

    /* Removed rules are not evaluated. */
    rta_alert_engine_remove(f.eng, on->id);
    rta_alert_engine_remove(f.eng, "not-there");
    assert_int_equal(rta_alert_engine_count(f.eng), 1);
    assert_int_equal(rta_alert_engine_user_count(f.eng, "user-1"), 1);
    assert_int_equal(tvl(&f, "uni", "ethereum", 10, NOW_MS + 3000), 1);
    assert_int_equal(f.out.n, 3); /* off resolves silently */
    rta_alert_engine_remove(f.eng, off->id);
    assert_int_equal(tvl(&f, "uni", "ethereum", 500, NOW_MS + 4000), 0);
    assert_int_equal(rta_alert_engine_active(f.eng), 0);
    rta_alert_rule_free(off);
    rta_alert_rule_free(on);
    fx_free(&f);
}

static void test_restore_state(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f);
    seed_tvl(&f, "uni", "ethereum", 150, NOW_MS - MIN_MS);
    rta_alert_rule *r =
        put_rule(&f, RULE1("{\"metric\":\"tvl\",\"protocol\":\"uni\",\"chain\":\"ethereum\","
                           "\"operator\":\"gt\",\"threshold\":100}",
                           ",\"throttleMinutes\":10,\"notifyResolved\":true"));
    /* Persisted: firing, notified 2 minutes ago. */
    rta_alert_engine_restore_state(f.eng, r->id, "tvl:uni:ethereum", true, NOW_MS - 2 * MIN_MS);
    rta_alert_engine_restore_state(f.eng, "unknown-rule", "tvl:uni:ethereum", true, NOW_MS);
    tvl(&f, "uni", "ethereum", 160, NOW_MS);
    assert_int_equal(f.out.n, 0); /* already firing */
    tvl(&f, "uni", "ethereum", 90, NOW_MS + 1000);
    assert_int_equal(f.out.n, 1);
    assert_true(f.out.t[0].resolved);
    tvl(&f, "uni", "ethereum", 120, NOW_MS + 2000); /* cooldown from the restored time */
    assert_int_equal(f.out.n, 1);
    tvl(&f, "uni", "ethereum", 121, NOW_MS + 8 * MIN_MS);
    assert_int_equal(f.out.n, 2);
    rta_alert_rule_free(r);
    fx_free(&f);
}

/* The range search over sorted thresholds against a brute-force model: many single-condition
 * rules with colliding thresholds on one pair, random values, rules removed midway. */
typedef struct {
    int op; /* rta_alert_op */
    double th;
    bool firing, removed;
    rta_alert_rule *r;
    int got_fire, got_resolve;
} model_rule;

typedef struct {
    model_rule *m;
    size_t n;
} model;

static void model_collect(void *ud, const rta_alert_trigger *t)
{
    model *md = ud;
    for (size_t i = 0; i < md->n; i++) {
        if (strcmp(md->m[i].r->id, t->rule->id) == 0) {
            if (t->resolved)
                md->m[i].got_resolve++;
            else
                md->m[i].got_fire++;
            return;
        }
    }
    fail_msg("trigger for an unknown rule");
}

static void test_ranges_against_model(void **state)
{
    (void)state;
    static const char *const ops[] = {"gt", "lt", "eq", "crosses_above", "crosses_below"};
    enum { NRULES = 300, NEVENTS = 400 };
    rta_state *st = rta_state_new(NULL);
    rta_alert_engine *eng = rta_alert_engine_new();
    rta_tvl_update seed = {.protocol = "p", .chain = "c", .tvl = 50, .ts_ms = NOW_MS - MIN_MS};
    rta_state_restore_tvl(st, &seed);
    model md = {.m = calloc(NRULES, sizeof(model_rule)), .n = NRULES};
    uint32_t rng = 12345;
    for (size_t i = 0; i < NRULES; i++) {
        rng = rng * 1103515245u + 12345u;
        static const int op_of[] = {RTA_OP_GT, RTA_OP_LT, RTA_OP_EQ, RTA_OP_CROSSES_ABOVE,
                                    RTA_OP_CROSSES_BELOW};
        int opi = (int)((rng >> 16) % 5), op = op_of[opi];
        double th = (double)(((rng >> 8) % 11) * 10); /* 0..100: many equal thresholds */
        char text[400];
        snprintf(text, sizeof text,
                 "{\"name\":\"m%zu\",\"throttleMinutes\":0,\"notifyResolved\":true,"
                 "\"conditions\":[{\"metric\":\"tvl\",\"protocol\":\"p\",\"chain\":\"c\","
                 "\"operator\":\"%s\",\"threshold\":%g%s}],\"actions\":[{\"type\":\"push\","
                 "\"target\":\"t\"}]}",
                 i, ops[opi], th, op == RTA_OP_EQ ? ",\"tolerance\":0.05" : "");
        md.m[i] = (model_rule){.op = op, .th = th, .r = rule_from(text)};
        rta_alert_engine_put(eng, md.m[i].r);
    }
    double prev = 50;
    for (int k = 0; k < NEVENTS; k++) {
        rng = rng * 1103515245u + 12345u;
        double v = (double)((rng >> 8) % 23) * 5; /* 0..110: on thresholds and between */
        if (v == prev)
            v += 2;
        if (k == NEVENTS / 2) /* remove every third rule */
            for (size_t i = 0; i < NRULES; i += 3) {
                rta_alert_engine_remove(eng, md.m[i].r->id);
                md.m[i].removed = true;
            }
        for (size_t i = 0; i < NRULES; i++)
            md.m[i].got_fire = md.m[i].got_resolve = 0;
        rta_tvl_update u = {.protocol = "p", .chain = "c", .tvl = v, .ts_ms = NOW_MS + k * 1000};
        rta_event *ev[2];
        size_t n = 0;
        rta_state_apply_tvl(st, &u, "ingest", ev, 2, &n);
        assert_int_equal(n, 1);
        ev[0]->offset = (uint64_t)k + 1;
        rta_alert_engine_evaluate(eng, st, ev[0], u.ts_ms, model_collect, &md);
        rta_event_unref(ev[0]);
        for (size_t i = 0; i < NRULES; i++) {
            model_rule *m = &md.m[i];
            int want_fire = 0, want_resolve = 0;
            if (!m->removed) {
                double th = m->th;
                bool hold = m->op == RTA_OP_GT   ? v > th
                            : m->op == RTA_OP_LT ? v < th
                            : m->op == RTA_OP_EQ ? fabs(v - th) <= 0.05 * (th != 0 ? th : 1)
                            : m->op == RTA_OP_CROSSES_ABOVE ? prev <= th && v > th
                                                            : prev >= th && v < th;
                bool edge = m->op >= RTA_OP_CROSSES_ABOVE;
                if (edge) {
                    want_fire = hold;
                } else if (hold && !m->firing) {
                    want_fire = 1;
                    m->firing = true;
                } else if (!hold && m->firing) {
                    want_resolve = 1;
                    m->firing = false;
                }
            }
            if (m->got_fire != want_fire || m->got_resolve != want_resolve)
                fail_msg("event %d (%g -> %g), rule %zu op %d %g: fire %d/%d resolve %d/%d", k,
                         prev, v, i, m->op, m->th, m->got_fire, want_fire, m->got_resolve,
                         want_resolve);
        }
        prev = v;
    }
    for (size_t i = 0; i < NRULES; i++)
        rta_alert_rule_free(md.m[i].r);
    free(md.m);
    rta_alert_engine_free(eng);
    rta_state_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_table),
        cmocka_unit_test(test_long_url_and_all_errors),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_storage_round_trip),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_level_gt_lt_eq),
        cmocka_unit_test(test_change_pct_windows),
        cmocka_unit_test(test_crossing),
        cmocka_unit_test(test_throttle_burst_and_flapping),
        cmocka_unit_test(test_wildcards_and_protocol_totals),
        cmocka_unit_test(test_multi_condition),
        cmocka_unit_test(test_inactive_remove_replace_offsets),
        cmocka_unit_test(test_restore_state),
        cmocka_unit_test(test_ranges_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
