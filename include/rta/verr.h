/*
 * Validation errors as every API reports them: a JSON array of
 * {"path":"$.tvl[3].tvl","rule":"non_negative","message":"..."}, bounded to RTA_VERR_MAX
 * entries so no input can make the answer grow without limit.
 */
#ifndef RTA_VERR_H
#define RTA_VERR_H

#include <jansson.h>

#define RTA_VERR_MAX 100

/* Appends one error unless the array already holds RTA_VERR_MAX. */
void rta_verr_add(json_t *errors, const char *path, const char *rule, const char *message);
/* Same, with the path built as base + "." + field. */
void rta_verr_add_field(json_t *errors, const char *base, const char *field, const char *rule,
                        const char *message);
/* One "unknown_field" error (path base + "." + key) for each key of obj not in known[0..n). */
void rta_verr_unknown_fields(json_t *errors, const char *base, const json_t *obj,
                             const char *const *known, size_t nknown);

#endif
