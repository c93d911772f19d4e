/*
 * Standard Webhooks signatures: "v1," + base64(HMAC-SHA256(key, id "." timestamp "." body)),
 * key = base64-decoded part of the secret after "whsec_". Receivers recompute it to check that
 * a delivery came from us and was not altered or replayed (the timestamp is signed).
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rta/notify.h"
#include "rta/util.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_KEY_MAX 128 /* decoded key bytes accepted */

/* Strict base64 decode of s (length multiple of 4, padding only at the end). -1 when bad. */
static int b64_decode(const char *s, unsigned char *out, size_t outlen)
{
    size_t len = strlen(s);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > outlen)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0)
        return -1;
    if (s[len - 1] == '=')
        n--;
    if (s[len - 2] == '=')
        n--;
    return n;
}

int rta_webhook_sign(const char *secret, const char *id, int64_t timestamp_s, const char *body,
                     size_t body_len, char *out, size_t outlen)
{
    size_t plen = sizeof SECRET_PREFIX - 1;
    if (secret == NULL || id == NULL || outlen < 128 || strncmp(secret, SECRET_PREFIX, plen) != 0)
        return -1;
    unsigned char key[SECRET_KEY_MAX];
    int klen = b64_decode(secret + plen, key, sizeof key);
    if (klen <= 0)
        return -1;

    char ts[32];
    snprintf(ts, sizeof ts, "%" PRId64, timestamp_s);
    unsigned char mac[EVP_MAX_MD_SIZE];
    int rc = -1;
    EVP_MAC *mac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mctx = mac_alg ? EVP_MAC_CTX_new(mac_alg) : NULL;
    if (mctx == NULL)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t mlen = 0;
    if (EVP_MAC_init(mctx, key, (size_t)klen, params) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)id, strlen(id)) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)".", 1) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)ts, strlen(ts)) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)".", 1) != 1 ||
        (body_len > 0 && EVP_MAC_update(mctx, (const unsigned char *)body, body_len) != 1) ||
        EVP_MAC_final(mctx, mac, &mlen, sizeof mac) != 1)
        goto out;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mlen); /* 44 chars + NUL */
    rc = 0;
out:
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(mac_alg);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

void rta_webhook_secret_new(char *out, size_t outlen)
{
    unsigned char raw[24];
    char b64[48];
    if (rta_random_bytes(raw, sizeof raw) != 0)
        abort(); /* no randomness: no secret worth handing out */
    EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw);
    snprintf(out, outlen, SECRET_PREFIX "%s", b64);
    OPENSSL_cleanse(raw, sizeof raw);
}
