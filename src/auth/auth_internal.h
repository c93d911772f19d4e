/*
 * Private helpers shared by the files of src/auth (not part of the public contract).
 */
#ifndef RTA_AUTH_INTERNAL_H
#define RTA_AUTH_INTERNAL_H

#include "rta/auth.h"

#define RTA_KEY_PREFIX "rta_"
#define RTA_KEY_PREFIX_LEN 4
/* "rta_" + id + "_" + secret: every well-formed key has exactly this length. */
#define RTA_KEY_TEXT_LEN (RTA_KEY_PREFIX_LEN + RTA_KEY_ID_LEN + 1 + RTA_KEY_SECRET_LEN)

/* Splits a full key text into its id (NUL-terminated copy) and a pointer to the secret inside
 * key_text (RTA_KEY_SECRET_LEN chars). Looks at no more than RTA_KEY_TEXT_MAX + 1 bytes.
 * Returns 0, or -1 when the text is not "rta_k<16 lower hex>_<43 base64url>". */
int rta__key_parse(const char *key_text, char id[RTA_KEY_ID_LEN + 1], const char **secret);

/* SHA-256 of the RTA_KEY_SECRET_LEN chars at secret. 0 or -1. */
int rta__key_hash_secret(const char *secret, unsigned char out[32]);

#endif
