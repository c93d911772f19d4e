/*
 * API keys, tiers, roles and per-key rate limits.
 *
 * Key format shown to users once: "rta_<id>_<secret>" where id is "k" + 16 hex chars (public,
 * appears in logs, audit and the admin API) and secret is 43 base64url chars (256 bits). Only
 * SHA-256(secret) is stored. Verification is a hash-table lookup by id plus a constant-time
 * compare of the hash, all in memory (the key table is loaded at start and kept in sync by the
 * admin paths), so authenticating costs no storage round trip.
 *
 * Tiers carry the limits of spec 4.3.1 (configurable). Roles map to permission bits.
 */
#ifndef RTA_AUTH_H
#define RTA_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "rta/store.h"

#define RTA_KEY_ID_LEN 17     /* "k" + 16 hex */
#define RTA_KEY_SECRET_LEN 43 /* base64url of 32 bytes, no padding */
#define RTA_KEY_TEXT_MAX 80

typedef enum {
    RTA_PERM_READ = 1u << 0,      /* GET market data, events */
    RTA_PERM_QUERY = 1u << 1,     /* POST /v1/query/advanced */
    RTA_PERM_INGEST = 1u << 2,    /* POST /v1/ingest */
    RTA_PERM_ADMIN = 1u << 3,     /* /v1/admin/... */
    RTA_PERM_SUBSCRIBE = 1u << 4, /* realtime subscriptions */
    RTA_PERM_ALERTS = 1u << 5,    /* alert rules */
} rta_perm;

typedef struct rta_tier {
    char name[16];
    int websocket_connections;
    int messages_per_minute;
    int api_requests_per_minute;
    int alert_rules;
} rta_tier;

/* Defaults of spec 4.3.1; index by rta_tier_find(). */
#define RTA_TIER_COUNT 3
void rta_tiers_defaults(rta_tier tiers[RTA_TIER_COUNT]);
const rta_tier *rta_tier_find(const rta_tier tiers[RTA_TIER_COUNT], const char *name);

/* Roles: "admin" = everything; "user" = read|query|subscribe|alerts; "ingest" = read|ingest;
 * "reader" = read|subscribe. Returns 0 for an unknown role (callers validate with
 * rta_role_valid first). */
uint32_t rta_role_perms(const char *role);
int rta_role_valid(const char *role);
/* "read,query,..." into buf, for responses. */
void rta_perms_format(uint32_t perms, char *buf, size_t len);

/* Token bucket: capacity = per_minute, refilled continuously at per_minute/60 per second. */
typedef struct rta_bucket {
    double tokens;
    int64_t last_ms;
} rta_bucket;
/* Takes one token if available. Returns 1 allowed, 0 refused. *remaining gets the whole tokens
 * left, *reset_s the seconds until the bucket is full again, *retry_after_s (when refused) the
 * seconds until one token is available (>= 1). */
int rta_bucket_take(rta_bucket *b, int per_minute, int64_t now_ms, int *remaining, int *reset_s,
                    int *retry_after_s);

/* ---- the in-memory key registry ---- */
typedef struct rta_key {
    rta_key_record rec; /* owned copy */
    uint32_t perms;
    rta_bucket api_bucket; /* REST rate limit state */
    int connections;       /* open realtime connections (streaming issue) */
    void *hh;              /* private */
} rta_key;

typedef struct rta_keyring rta_keyring;

rta_keyring *rta_keyring_new(void);
void rta_keyring_free(rta_keyring *kr);
/* Adds a copy of rec (replacing one with the same id). */
rta_key *rta_keyring_put(rta_keyring *kr, const rta_key_record *rec);
rta_key *rta_keyring_get(rta_keyring *kr, const char *id);
size_t rta_keyring_count(const rta_keyring *kr); /* all, revoked included */
/* Calls fn for every key, oldest first. */
void rta_keyring_each(rta_keyring *kr, void (*fn)(void *ud, rta_key *k), void *ud);

typedef enum {
    RTA_AUTH_OK = 0,
    RTA_AUTH_MISSING,   /* no key given */
    RTA_AUTH_MALFORMED, /* not "rta_<id>_<secret>" */
    RTA_AUTH_UNKNOWN,   /* no such id, or wrong secret */
    RTA_AUTH_REVOKED,
} rta_auth_result;
const char *rta_auth_result_code(rta_auth_result r); /* "missing_api_key", "invalid_api_key", ... */

/* Verifies a full key text. On RTA_AUTH_OK sets *out. */
rta_auth_result rta_keyring_verify(rta_keyring *kr, const char *key_text, rta_key **out);

/* Makes a new key: fills rec (id, secret_hash, created_ms; copies user/tier/role/label) and
 * writes the full text to key_text (RTA_KEY_TEXT_MAX bytes). Does not store anything. */
int rta_key_generate(const char *user_id, const char *tier, const char *role, const char *label,
                     int64_t now_ms, rta_key_record *rec, char key_text[RTA_KEY_TEXT_MAX]);
/* Builds a record from an existing full key text (the RTA_ADMIN_KEY bootstrap). -1 when the text
 * is not a well-formed key. */
int rta_key_from_text(const char *key_text, const char *user_id, const char *tier, const char *role,
                      int64_t now_ms, rta_key_record *rec);

#endif
