/* Bounded validation error lists; see rta/verr.h. */
#include "rta/verr.h"

#include <stdio.h>

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
