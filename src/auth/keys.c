/*
 * API key text: generation, parsing and hashing.
 *
 * A key is "rta_<id>_<secret>": id = "k" + 16 lower-case hex chars (64 random bits, public),
 * secret = 43 base64url chars without padding (256 random bits). The secret is never stored:
 * records keep SHA-256 of the secret's 43 ASCII characters. Because the lengths are fixed, the
 * parser splits by position (the secret's alphabet contains '_' and '-').
 */
#include <openssl/evp.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "rta/util.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding of len bytes; out needs ceil(len*4/3) + 1 bytes. */
static void base64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
    }
    out[o] = '\0';
}

static int is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int rta__key_parse(const char *key_text, char id[RTA_KEY_ID_LEN + 1], const char **secret)
{
    if (!key_text)
        return -1;
    size_t len = strnlen(key_text, RTA_KEY_TEXT_MAX + 1);
    if (len != RTA_KEY_TEXT_LEN)
        return -1;
    if (memcmp(key_text, RTA_KEY_PREFIX, RTA_KEY_PREFIX_LEN) != 0)
        return -1;
    const char *p = key_text + RTA_KEY_PREFIX_LEN;
    if (p[0] != 'k')
        return -1;
    for (size_t i = 1; i < RTA_KEY_ID_LEN; i++)
        if (!is_lower_hex(p[i]))
            return -1;
    if (p[RTA_KEY_ID_LEN] != '_')
        return -1;
    const char *s = p + RTA_KEY_ID_LEN + 1;
    for (size_t i = 0; i < RTA_KEY_SECRET_LEN; i++)
        if (!is_b64url(s[i]))
            return -1;
    memcpy(id, p, RTA_KEY_ID_LEN);
    id[RTA_KEY_ID_LEN] = '\0';
    *secret = s;
    return 0;
}

int rta__key_hash_secret(const char *secret, unsigned char out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(secret, RTA_KEY_SECRET_LEN, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    return 0;
}

/* Fills rec's owned strings and times; secret_hash is set by the caller. */
static void record_fill(rta_key_record *rec, const char *id, const char *user_id, const char *tier,
                        const char *role, const char *label, int64_t now_ms)
{
    rec->id = rta_strdup(id);
    rec->user_id = rta_strdup(user_id);
    rec->tier = rta_strdup(tier);
    rec->role = rta_strdup(role);
    rec->label = label ? rta_strdup(label) : NULL;
    rec->created_ms = now_ms;
    rec->revoked_ms = 0;
}

/* Makes a new key (see auth.h). rec's strings are malloc'd and owned by the caller
 * (rta_key_record_free_fields). Returns -1, leaving rec zeroed, when an argument is missing or
 * the random source fails. */
int rta_key_generate(const char *user_id, const char *tier, const char *role, const char *label,
                     int64_t now_ms, rta_key_record *rec, char key_text[RTA_KEY_TEXT_MAX])
{
    unsigned char idb[8], sb[32];
    char id[RTA_KEY_ID_LEN + 1], secret[RTA_KEY_SECRET_LEN + 1];
    int rc = -1;

    memset(rec, 0, sizeof *rec);
    if (!user_id || !tier || !role)
        goto out;
    if (rta_random_bytes(idb, sizeof idb) != 0 || rta_random_bytes(sb, sizeof sb) != 0)
        goto out;
    id[0] = 'k';
    rta_hex_encode(idb, sizeof idb, id + 1);
    base64url_encode(sb, sizeof sb, secret);
    if (rta__key_hash_secret(secret, rec->secret_hash) != 0)
        goto out;
    record_fill(rec, id, user_id, tier, role, label, now_ms);
    memcpy(key_text, RTA_KEY_PREFIX, RTA_KEY_PREFIX_LEN);
    memcpy(key_text + RTA_KEY_PREFIX_LEN, id, RTA_KEY_ID_LEN);
    key_text[RTA_KEY_PREFIX_LEN + RTA_KEY_ID_LEN] = '_';
    memcpy(key_text + RTA_KEY_PREFIX_LEN + RTA_KEY_ID_LEN + 1, secret, RTA_KEY_SECRET_LEN + 1);
    rc = 0;
out:
    OPENSSL_cleanse(sb, sizeof sb);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

/* Builds a record from a full key text (see auth.h); strings owned by the caller. rec is left
 * zeroed on -1. */
int rta_key_from_text(const char *key_text, const char *user_id, const char *tier, const char *role,
                      int64_t now_ms, rta_key_record *rec)
{
    char id[RTA_KEY_ID_LEN + 1];
    const char *secret;

    memset(rec, 0, sizeof *rec);
    if (!user_id || !tier || !role)
        return -1;
    if (rta__key_parse(key_text, id, &secret) != 0)
        return -1;
    if (rta__key_hash_secret(secret, rec->secret_hash) != 0)
        return -1;
    record_fill(rec, id, user_id, tier, role, NULL, now_ms);
    return 0;
}

/* Stable machine-readable code of a verification result, for error bodies. */
const char *rta_auth_result_code(rta_auth_result r)
{
    switch (r) {
    case RTA_AUTH_OK:
        return "ok";
    case RTA_AUTH_MISSING:
        return "missing_api_key";
    case RTA_AUTH_MALFORMED:
        return "malformed_api_key";
    case RTA_AUTH_UNKNOWN:
        return "invalid_api_key";
    case RTA_AUTH_REVOKED:
        return "revoked_api_key";
    }
    return "invalid_api_key";
}
