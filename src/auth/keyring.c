/*
 * The in-memory key registry: every API key (revoked ones too) by id, with its permission bits
 * and runtime state (REST token bucket, open realtime connections).
 *
 * Loaded from the store at start and kept in sync by the admin paths, so verifying a request's
 * key is one hash lookup plus one SHA-256 and a constant-time compare — no storage round trip.
 * Loop thread only. rta_key pointers stay valid until rta_keyring_free: replacing a key with
 * the same id updates it in place and keeps its runtime state.
 */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "auth/auth_internal.h"
#include "rta/util.h"

typedef struct key_entry {
    rta_key k; /* first: rta_key * and key_entry * convert */
    UT_hash_handle hh;
} key_entry;

struct rta_keyring {
    key_entry *head; /* uthash table, application order = oldest first when !unsorted */
    int unsorted;    /* an insertion broke created_ms order; sort before iterating */
};

/* Copies the string fields except id (the hash key, never changed after insertion). */
static void record_copy_fields(rta_key_record *dst, const rta_key_record *src)
{
    dst->user_id = src->user_id ? rta_strdup(src->user_id) : NULL;
    dst->tier = src->tier ? rta_strdup(src->tier) : NULL;
    dst->role = src->role ? rta_strdup(src->role) : NULL;
    dst->label = src->label ? rta_strdup(src->label) : NULL;
    memcpy(dst->secret_hash, src->secret_hash, sizeof dst->secret_hash);
    dst->created_ms = src->created_ms;
    dst->revoked_ms = src->revoked_ms;
}

static void record_free_fields(rta_key_record *r)
{
    free(r->user_id);
    free(r->tier);
    free(r->role);
    free(r->label);
    r->user_id = r->tier = r->role = r->label = NULL;
}

static int entry_cmp(const key_entry *a, const key_entry *b)
{
    if (a->k.rec.created_ms != b->k.rec.created_ms)
        return a->k.rec.created_ms < b->k.rec.created_ms ? -1 : 1;
    return strcmp(a->k.rec.id, b->k.rec.id);
}

/* New empty keyring; free with rta_keyring_free. */
rta_keyring *rta_keyring_new(void)
{
    return rta_xcalloc(1, sizeof(rta_keyring));
}

/* Frees every key (invalidating all rta_key pointers) and the ring. NULL is fine. */
void rta_keyring_free(rta_keyring *kr)
{
    if (!kr)
        return;
    key_entry *e, *tmp;
    HASH_ITER(hh, kr->head, e, tmp)
    {
        HASH_DEL(kr->head, e);
        record_free_fields(&e->k.rec);
        free(e->k.rec.id);
        free(e);
    }
    free(kr);
}

/* Adds a copy of rec, or updates the key with the same id in place (keeping its bucket and
 * connection count). Returns the key, or NULL when rec has no id. */
rta_key *rta_keyring_put(rta_keyring *kr, const rta_key_record *rec)
{
    if (!rec || !rec->id)
        return NULL;
    key_entry *e = NULL;
    HASH_FIND_STR(kr->head, rec->id, e);
    if (e) {
        int64_t old_created = e->k.rec.created_ms;
        record_free_fields(&e->k.rec);
        record_copy_fields(&e->k.rec, rec);
        if (old_created != rec->created_ms)
            kr->unsorted = 1;
    } else {
        e = rta_xcalloc(1, sizeof *e);
        e->k.rec.id = rta_strdup(rec->id);
        record_copy_fields(&e->k.rec, rec);
        e->k.hh = e;
        if (kr->head) {
            key_entry *tail = ELMT_FROM_HH(kr->head->hh.tbl, kr->head->hh.tbl->tail);
            if (entry_cmp(tail, e) > 0)
                kr->unsorted = 1;
        }
        HASH_ADD_KEYPTR(hh, kr->head, e->k.rec.id, strlen(e->k.rec.id), e);
    }
    e->k.perms = rta_role_perms(e->k.rec.role);
    return &e->k;
}

/* The key with this id (revoked or not), or NULL. */
rta_key *rta_keyring_get(rta_keyring *kr, const char *id)
{
    if (!id)
        return NULL;
    key_entry *e = NULL;
    HASH_FIND_STR(kr->head, id, e);
    return e ? &e->k : NULL;
}

/* Number of keys, revoked included. */
size_t rta_keyring_count(const rta_keyring *kr)
{
    return HASH_COUNT(kr->head);
}

/* Calls fn for every key in created_ms order (ties by id). fn must not add or remove keys. */
void rta_keyring_each(rta_keyring *kr, void (*fn)(void *ud, rta_key *k), void *ud)
{
    if (kr->unsorted) {
        HASH_SRT(hh, kr->head, entry_cmp);
        kr->unsorted = 0;
    }
    for (key_entry *e = kr->head; e; e = e->hh.next)
        fn(ud, &e->k);
}

/* Verifies a full key text (see auth.h). NULL key_text is RTA_AUTH_MISSING; anything that is
 * not exactly "rta_<id>_<secret>" (empty included) is RTA_AUTH_MALFORMED. Revocation is only
 * reported to a caller who holds the right secret. */
rta_auth_result rta_keyring_verify(rta_keyring *kr, const char *key_text, rta_key **out)
{
    char id[RTA_KEY_ID_LEN + 1];
    const char *secret;
    unsigned char hash[32];

    if (out)
        *out = NULL;
    if (!key_text)
        return RTA_AUTH_MISSING;
    if (rta__key_parse(key_text, id, &secret) != 0)
        return RTA_AUTH_MALFORMED;
    key_entry *e = NULL;
    HASH_FIND_STR(kr->head, id, e);
    if (!e)
        return RTA_AUTH_UNKNOWN;
    if (rta__key_hash_secret(secret, hash) != 0)
        return RTA_AUTH_UNKNOWN;
    if (!rta_const_eq(hash, e->k.rec.secret_hash, sizeof hash))
        return RTA_AUTH_UNKNOWN;
    if (e->k.rec.revoked_ms != 0)
        return RTA_AUTH_REVOKED;
    if (out)
        *out = &e->k;
    return RTA_AUTH_OK;
}
