/*
 * WebSocket opening handshake (RFC 6455 section 4.2) and permessage-deflate negotiation
 * (RFC 7692 section 7), server side. Pure functions: no I/O, no allocation, no global state.
 *
 * The HTTP layer parses the request, then calls rta_ws_handshake_check() with a header
 * lookup callback. On success it answers 101 with the accept value (and, when
 * rta_ws_deflate_negotiate() accepted an offer, the Sec-WebSocket-Extensions value). On
 * failure it answers rta_ws_handshake_status(code) (400 or 426; 426 must carry
 * "Sec-WebSocket-Version: 13") with a JSON body built from rta_ws_handshake_strerror() and
 * rta_ws_handshake_header().
 */
#ifndef RTA_WS_HANDSHAKE_H
#define RTA_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "rta/buf.h"

/* Length of Sec-WebSocket-Accept (base64 of a 20-byte SHA-1), without the NUL. */
#define RTA_WS_ACCEPT_LEN 28
/* Longest Sec-WebSocket-Extensions response rta_ws_deflate_negotiate() writes (+NUL). */
#define RTA_WS_EXT_RESPONSE_MAX 128

typedef enum {
    RTA_WS_OK = 0,
    RTA_WS_ERR_METHOD = -1,       /* not GET (400) */
    RTA_WS_ERR_HTTP_VERSION = -2, /* older than HTTP/1.1 (400) */
    RTA_WS_ERR_HOST = -3,         /* Host missing or empty (400) */
    RTA_WS_ERR_UPGRADE = -4,      /* Upgrade missing or without the "websocket" token (400) */
    RTA_WS_ERR_CONNECTION = -5,   /* Connection missing or without the "upgrade" token (400) */
    RTA_WS_ERR_VERSION = -6,      /* Sec-WebSocket-Version missing or not 13 (426) */
    RTA_WS_ERR_KEY = -7,          /* Sec-WebSocket-Key missing or not base64 of 16 bytes (400) */
    RTA_WS_ERR_EXTENSIONS = -8,   /* Sec-WebSocket-Extensions syntactically malformed (400) */
    RTA_WS_ERR_INTERNAL = -9,     /* SHA-1 failed (500) */
} rta_ws_err;

/*
 * Header lookup: returns the value of header `name` (case-insensitive; the callback decides
 * how) and its length in *len, or NULL when the header is absent. The value need not be
 * NUL-terminated. A header that appears several times should be given joined with ", "
 * (RFC 9110 section 5.3), which is how list headers such as Connection are read here.
 */
typedef const char *(*rta_ws_header_fn)(void *ud, const char *name, size_t *len);

/*
 * Validates an upgrade request. method is the request method ("GET"), http_major/minor the
 * request's HTTP version. On success returns RTA_WS_OK and writes the Sec-WebSocket-Accept
 * value (28 chars + NUL) into accept. On failure returns the first failing check's code
 * (order: method, version, Host, Upgrade, Connection, Sec-WebSocket-Version,
 * Sec-WebSocket-Key) and leaves accept unspecified. Does not look at extensions.
 */
int rta_ws_handshake_check(const char *method, int http_major, int http_minor, rta_ws_header_fn get,
                           void *ud, char accept[RTA_WS_ACCEPT_LEN + 1]);

/* Computes Sec-WebSocket-Accept for a key (exactly the bytes given, no trimming):
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). 0, or -1 if SHA-1 fails. */
int rta_ws_accept_key(const char *key, size_t key_len, char accept[RTA_WS_ACCEPT_LEN + 1]);

/* HTTP status for an error code: 426 for RTA_WS_ERR_VERSION, 500 for INTERNAL, else 400. */
int rta_ws_handshake_status(int code);
/* Human message for a code ("missing or invalid Sec-WebSocket-Key", ...); never NULL. */
const char *rta_ws_handshake_strerror(int code);
/* The header a code is about ("Sec-WebSocket-Key"), or NULL for method/version/internal. */
const char *rta_ws_handshake_header(int code);

/*
 * Appends the complete "101 Switching Protocols" response head to out: Upgrade, Connection,
 * Sec-WebSocket-Accept, and Sec-WebSocket-Extensions when extensions is non-NULL and
 * non-empty, ending with the blank line. 0, or -1 when out's maximum is reached.
 */
int rta_ws_handshake_response(rta_dbuf *out, const char *accept, const char *extensions);

/* --- permessage-deflate (RFC 7692) -------------------------------------------------- */

/* What the server is willing to do. */
typedef struct {
    bool enabled;                    /* false: never accept an offer */
    bool server_no_context_takeover; /* server resets its compressor after each message */
    bool client_no_context_takeover; /* ask the client to reset after each message */
    int server_max_window_bits;      /* 8..15: largest LZ77 window the server compresses with */
    int client_max_window_bits;      /* 8..15: largest window the server will inflate with;
                                        below 15 only offers that allow it can be accepted */
} rta_ws_deflate_config;

/* The agreed parameters (what both sides must do for this connection). */
typedef struct {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    int server_max_window_bits; /* 8..15 */
    int client_max_window_bits; /* 8..15 */
} rta_ws_deflate_params;

/* Sensible defaults: enabled, context takeover both ways, 15-bit windows. */
void rta_ws_deflate_config_default(rta_ws_deflate_config *cfg);

/*
 * Reads a Sec-WebSocket-Extensions request value (value may be NULL: no header) and picks
 * the first permessage-deflate offer that is valid and acceptable under cfg. Offers with
 * unknown, repeated or out-of-range parameters are declined (skipped), as RFC 7692 asks;
 * other extensions are ignored.
 *   Returns 1 and fills *params and response (NUL-terminated header value such as
 *   "permessage-deflate; server_no_context_takeover; client_max_window_bits=10") when an
 *   offer is accepted; 0 when none is (send no Sec-WebSocket-Extensions);
 *   RTA_WS_ERR_EXTENSIONS when the header does not follow the RFC 7230 list syntax.
 */
int rta_ws_deflate_negotiate(const char *value, size_t len, const rta_ws_deflate_config *cfg,
                             rta_ws_deflate_params *params, char response[RTA_WS_EXT_RESPONSE_MAX]);

#endif
