/* Bounded validation error lists; see rta/verr.h. */
#include "rta/verr.h"

#include <stdio.h>
#include <string.h>

void rta_verr_add(json_t *errors, const char *path, const char *rule, const char *message)
{
    if (json_array_size(errors) >= RTA_VERR_MAX)
        return;
    json_array_append_new(
        errors, json_pack("{s:s,s:s,s:s}", "path", path, "rule", rule, "message", message));
}

void rta_verr_add_field(json_t *errors, const char *base, const char *field, const char *rule,
                        const char *message)
{
    char path[128];
    snprintf(path, sizeof path, "%s.%s", base, field);
    rta_verr_add(errors, path, rule, message);
}

void rta_verr_unknown_fields(json_t *errors, const char *base, const json_t *obj,
                             const char *const *known, size_t nknown)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;
        while (i < nknown && strcmp(key, known[i]) != 0)
            i++;
        if (i == nknown) {
            char path[320];
            snprintf(path, sizeof path, "%s.%.200s", base, key);
            rta_verr_add(errors, path, "unknown_field", "unknown field");
        }
    }
}
