/*
 * Socket.IO protocol v5 packet codec (https://socket.io/docs/v4/socket-io-protocol/), the
 * default (JSON) parser. A Socket.IO packet travels as the data of an Engine.IO MESSAGE
 * packet (hence the leading '4' on the wire, which is NOT part of what this codec reads or
 * writes):
 *
 *   <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
 *   0  2["foo"]  212["foo"]  3/admin,13["bar"]  51-["baz",{"_placeholder":true,"num":0}]
 *
 * Binary data inside a payload is represented in json_t form as a "blob": an object with
 * the single key "_rta_binary" whose value is a jansson string holding the raw bytes
 * (made with json_stringn_nocheck, so it may contain NULs or invalid UTF-8). Use
 * rta_sio_blob_new() / rta_sio_blob_get() rather than building it by hand. A json_t holding
 * blobs cannot be given to json_dumps() (which then fails); rta_sio_encode() replaces each
 * blob by a {"_placeholder":true,"num":n} object and returns the bytes as attachments.
 *
 * No global state; all functions are reentrant. Decoding is bounded by rta_sio_limits.
 */
#ifndef RTA_SIO_H
#define RTA_SIO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rta/buf.h"

typedef enum {
    RTA_SIO_CONNECT = 0,
    RTA_SIO_DISCONNECT = 1,
    RTA_SIO_EVENT = 2,
    RTA_SIO_ACK = 3,
    RTA_SIO_CONNECT_ERROR = 4,
    RTA_SIO_BINARY_EVENT = 5,
    RTA_SIO_BINARY_ACK = 6,
} rta_sio_type;

enum {
    RTA_SIO_ERR_EMPTY = -1,       /* empty packet */
    RTA_SIO_ERR_TYPE = -2,        /* unknown packet type */
    RTA_SIO_ERR_ATTACHMENTS = -3, /* bad "<n>-" attachment count, or over the limit */
    RTA_SIO_ERR_NAMESPACE = -4,   /* namespace too long or holds a NUL byte */
    RTA_SIO_ERR_ACK_ID = -5,      /* ack id too large (over 2^53-1) */
    RTA_SIO_ERR_JSON = -6,        /* payload is not valid JSON */
    RTA_SIO_ERR_DEPTH = -7,       /* payload nested deeper than the limit */
    RTA_SIO_ERR_PAYLOAD = -8,     /* payload of the wrong shape for the packet type */
    RTA_SIO_ERR_PLACEHOLDER = -9, /* placeholder with a bad index, or blob count mismatch */
    RTA_SIO_ERR_STATE = -10,      /* attachment given to a packet that expects none */
    RTA_SIO_ERR_TOO_LARGE = -11,  /* output buffer or attachment array full */
    RTA_SIO_ERR_ARG = -12,        /* invalid argument to an encoder */
};

#define RTA_SIO_NSP_MAX 128                   /* longest namespace accepted, in bytes */
#define RTA_SIO_ACK_ID_MAX 9007199254740991LL /* 2^53-1: the largest id JS handles exactly */

typedef struct {
    int max_depth;          /* deepest JSON nesting accepted (arrays+objects), e.g. 32 */
    size_t max_attachments; /* most binary attachments per packet, e.g. 16 */
} rta_sio_limits;

/* Defaults used when a NULL limits pointer is given. */
#define RTA_SIO_DEFAULT_MAX_DEPTH 32
#define RTA_SIO_DEFAULT_MAX_ATTACHMENTS 16

typedef struct {
    rta_sio_type type;
    char nsp[RTA_SIO_NSP_MAX + 1]; /* namespace, "/" by default, NUL-terminated */
    int64_t id;                    /* ack id, or -1 when absent */
    size_t attachments;            /* declared binary attachments (BINARY_* types only) */
    json_t *data;                  /* payload (owned), NULL when absent */
    json_t *pending_;              /* private: attachments received so far (rta_sio_attach) */
} rta_sio_packet;

/* A binary attachment as bytes (points into memory someone else owns). */
typedef struct {
    const void *data;
    size_t len;
} rta_sio_bin;

/* Human message for an RTA_SIO_ERR_* code; never NULL. */
const char *rta_sio_strerror(int err);

/* Sets p to an empty packet: given type, namespace "/", no id, no data. */
void rta_sio_packet_init(rta_sio_packet *p, rta_sio_type type);
/* Releases p's payload and pending attachments; p may be reused after init. */
void rta_sio_packet_clear(rta_sio_packet *p);

/*
 * Decodes one packet from the text of an Engine.IO message (without its '4'). On success
 * returns 0 and fills *out, which the caller must rta_sio_packet_clear(). Validation
 * follows the reference parser:
 *   CONNECT        payload absent or an object
 *   DISCONNECT     no payload
 *   EVENT, BINARY_EVENT  array whose first element is a string event name that is not
 *                  reserved ("connect", "connect_error", "disconnect", "disconnecting",
 *                  "newListener", "removeListener"); payload is required
 *   ACK, BINARY_ACK      array (may be empty); payload is required
 *   CONNECT_ERROR  object or string
 * For BINARY_* packets, out->attachments tells how many binary frames follow; feed them to
 * rta_sio_attach(). On error returns an RTA_SIO_ERR_* code and *out holds nothing to free.
 * lim may be NULL (defaults).
 */
int rta_sio_decode(const char *text, size_t len, const rta_sio_limits *lim, rta_sio_packet *out);

/* True while a decoded BINARY_* packet still waits for attachments. */
bool rta_sio_needs_attachments(const rta_sio_packet *p);

/*
 * Gives the next binary attachment (in order) to a decoded BINARY_* packet; the bytes are
 * copied. Returns 1 while more are expected, 0 when the last one arrived and every
 * placeholder in p->data was replaced by its blob, or RTA_SIO_ERR_STATE (no attachment
 * expected) / RTA_SIO_ERR_PLACEHOLDER (a placeholder index out of range, or not an
 * integer). After an error the packet is unusable: clear it and close the connection.
 */
int rta_sio_attach(rta_sio_packet *p, const void *data, size_t len);

/* New blob holding a copy of len bytes (NULL on allocation failure). */
json_t *rta_sio_blob_new(const void *data, size_t len);
/* True when j is a blob. */
bool rta_sio_is_blob(const json_t *j);
/* Gives a blob's bytes (valid while the blob lives); 0, or -1 when j is not a blob. */
int rta_sio_blob_get(const json_t *j, const void **data, size_t *len);

/*
 * Encodes p and appends the text (no Engine.IO '4' prefix) to out. When p->data contains
 * blobs, the packet is sent as BINARY_EVENT / BINARY_ACK (an EVENT / ACK type is upgraded),
 * blobs become placeholders in the text, and their bytes are listed in att[0..*att_count)
 * (pointing into p->data: keep it alive until they are sent, each as one binary frame).
 * att may be NULL when p holds no blobs. p is not modified. The namespace is written only
 * when it is not "/", the id only when >= 0.
 * Returns 0, RTA_SIO_ERR_ARG (bad type/namespace/id, or blobs in a packet type that cannot
 * carry them), RTA_SIO_ERR_PAYLOAD (data not valid for the type, checked as in decode) or
 * RTA_SIO_ERR_TOO_LARGE (out full or more blobs than att_cap; out left as it was).
 */
int rta_sio_encode(const rta_sio_packet *p, rta_dbuf *out, rta_sio_bin *att, size_t att_cap,
                   size_t *att_count);

/*
 * Fast path for the common server-side emit: appends
 *   2[<nsp>,][<id>]["<event>",<args...>[,"<offset>"]]
 * args is a JSON array of arguments (or NULL for none) and must not hold blobs; offset is
 * the connection-state-recovery offset appended as a last string argument (NULL: none);
 * id < 0 for no ack. Returns 0, RTA_SIO_ERR_ARG or RTA_SIO_ERR_TOO_LARGE.
 */
int rta_sio_encode_event(rta_dbuf *out, const char *nsp, const char *event, const json_t *args,
                         const char *offset, int64_t id);

/* --- connection state recovery (Socket.IO >= 4.6) ------------------------------------ */

/* The CONNECT response payload: {"sid":sid} or, with recovery enabled (pid non-NULL),
 * {"sid":sid,"pid":pid}. New reference, NULL on bad UTF-8. */
json_t *rta_sio_connect_payload(const char *sid, const char *pid);

/*
 * Reads the recovery fields a reconnecting client sends in its CONNECT payload
 * ({"pid":"...","offset":"...", ...auth}). Returns 0 and points *pid / *offset at the
 * strings (owned by auth) when both are present and strings, -1 otherwise (then the server
 * treats the connection as a new session).
 */
int rta_sio_recovery_fields(const json_t *auth, const char **pid, const char **offset);

#endif
