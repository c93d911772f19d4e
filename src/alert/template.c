/*
 * Alert message templates: three built-ins (tvl_change, price_change, default), each a subject
 * and a plain-text body with {{placeholder}} fields (the list is in rta/alert.h), rendering from
 * a JSON object of variables, and a checker for unknown placeholders.
 *
 * Rendering: a placeholder takes the variable of the same name; strings are copied as they are,
 * integers in decimal, reals with up to 10 significant digits, booleans as true/false; missing
 * or null variables render as "" (so a template never shows "{{...}}" to a user). Text that
 * is not a known placeholder is copied unchanged. With a NULL name the template is chosen from
 * vars "event_type" ("tvl_change" / "price_change"), else "default"; an unknown name renders
 * "default".
 */
#include "rta/alert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rta/buf.h"

typedef struct {
    const char *name;
    const char *subject;
    const char *body;
} template_def;

static const template_def templates[] = {
    {"tvl_change", "[rta] {{rule}}: {{protocol}} TVL alert {{state}}",
     "Your alert rule \"{{rule}}\" is {{state}}.\n"
     "\n"
     "Protocol: {{protocol}}\n"
     "Chain: {{chain}}\n"
     "Metric: {{metric}}\n"
     "Value: {{value}} (previous {{previous}}, change {{change}})\n"
     "Threshold: {{threshold}}\n"
     "Time: {{time}}\n"
     "Event: {{event_id}}\n"},
    {"price_change", "[rta] {{rule}}: {{token}} price alert {{state}}",
     "Your alert rule \"{{rule}}\" is {{state}}.\n"
     "\n"
     "Token: {{token}}\n"
     "Metric: {{metric}}\n"
     "Value: {{value}} (previous {{previous}}, change {{change}})\n"
     "Threshold: {{threshold}}\n"
     "Time: {{time}}\n"
     "Event: {{event_id}}\n"},
    {"default", "[rta] {{rule}} {{state}}",
     "Your alert rule \"{{rule}}\" is {{state}}.\n"
     "\n"
     "Series: {{protocol}}{{token}} {{chain}}\n"
     "Metric: {{metric}} = {{value}} (previous {{previous}}, change {{change}})\n"
     "Threshold: {{threshold}}\n"
     "Time: {{time}}\n"
     "Event: {{event_id}}\n"},
};

static const char *const placeholders[] = {"rule",      "protocol", "chain",    "token",
                                           "metric",    "value",    "previous", "change",
                                           "threshold", "time",     "event_id", "state"};

#define RENDER_MAX (64 * 1024) /* a rendered text never exceeds this */

static const template_def *find_template(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (strcmp(templates[i].name, name) == 0)
            return &templates[i];
    return NULL;
}

bool rta_alert_template_exists(const char *name)
{
    return find_template(name) != NULL;
}

static bool known_placeholder(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof placeholders / sizeof placeholders[0]; i++)
        if (strlen(placeholders[i]) == n && memcmp(placeholders[i], s, n) == 0)
            return true;
    return false;
}

static void append_value(rta_dbuf *b, const json_t *v)
{
    char num[64];
    if (json_is_string(v)) {
        rta_dbuf_append(b, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        int n = snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        rta_dbuf_append(b, num, (size_t)n);
    } else if (json_is_real(v)) {
        int n = snprintf(num, sizeof num, "%.10g", json_real_value(v));
        rta_dbuf_append(b, num, (size_t)n);
    } else if (json_is_boolean(v)) {
        rta_dbuf_append(b, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5);
    }
}

static char *render(const char *text, const json_t *vars)
{
    rta_dbuf b;
    rta_dbuf_init(&b, RENDER_MAX);
    const char *p = text;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (open == NULL) {
            rta_dbuf_append(&b, p, strlen(p));
            break;
        }
        rta_dbuf_append(&b, p, (size_t)(open - p));
        const char *close = strstr(open + 2, "}}");
        if (close == NULL || !known_placeholder(open + 2, (size_t)(close - open - 2))) {
            rta_dbuf_append(&b, open, 2);
            p = open + 2;
            continue;
        }
        char key[32];
        size_t n = (size_t)(close - open - 2);
        memcpy(key, open + 2, n);
        key[n] = '\0';
        append_value(&b, json_object_get(vars, key));
        p = close + 2;
    }
    char *out = rta_dbuf_steal(&b, NULL);
    rta_dbuf_free(&b);
    return out;
}

void rta_alert_template_render(const char *name, const json_t *vars, char **subject, char **body)
{
    const template_def *t = find_template(name);
    if (t == NULL && name == NULL)
        t = find_template(json_string_value(json_object_get(vars, "event_type")));
    if (t == NULL)
        t = find_template("default");
    if (subject)
        *subject = render(t->subject, vars);
    if (body)
        *body = render(t->body, vars);
}

int rta_alert_template_check(const char *text, char *bad, size_t badlen)
{
    const char *p = text;
    while ((p = strstr(p, "{{")) != NULL) {
        const char *close = strstr(p + 2, "}}");
        size_t n = close ? (size_t)(close - p - 2) : strlen(p + 2);
        if (close == NULL || !known_placeholder(p + 2, n)) {
            if (bad && badlen > 0)
                snprintf(bad, badlen, "%.*s", (int)n, p + 2);
            return -1;
        }
        p = close + 2;
    }
    if (bad && badlen > 0)
        bad[0] = '\0';
    return 0;
}
