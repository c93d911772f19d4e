/*
 * Pure pieces of the Engine.IO / Socket.IO server (src/socketio/server.c), split out so unit
 * tests can reach them without sockets or a loop: request verification (the reference
 * server's error codes) and the per-session outgoing packet queue (polling payload batching).
 */
#ifndef RTA_SIO_SERVER_INTERNAL_H
#define RTA_SIO_SERVER_INTERNAL_H

#include <stddef.h>

#include "rta/buf.h"

/* Transports. */
enum { RTA_SIO__POLLING = 0, RTA_SIO__WEBSOCKET = 1 };

/* Engine.IO error codes answered as HTTP 400 (403 for FORBIDDEN) with
 * {"code":N,"message":"..."}, as the reference server does. */
enum {
    RTA_SIO__ERR_UNKNOWN_TRANSPORT = 0,
    RTA_SIO__ERR_UNKNOWN_SID = 1,
    RTA_SIO__ERR_BAD_HANDSHAKE_METHOD = 2,
    RTA_SIO__ERR_BAD_REQUEST = 3,
    RTA_SIO__ERR_FORBIDDEN = 4,
    RTA_SIO__ERR_UNSUPPORTED_PROTOCOL_VERSION = 5,
};

#define RTA_SIO__SID_MAX 64

typedef struct {
    int transport; /* RTA_SIO__POLLING | RTA_SIO__WEBSOCKET */
    int has_sid;
    char sid[RTA_SIO__SID_MAX + 1];
} rta_sio__reqinfo;

/* Looks a sid up: returns the session's current transport, or -1 when unknown. */
typedef int (*rta_sio__lookup_fn)(void *ud, const char *sid);

/*
 * Verifies an Engine.IO request the way the reference server does, in its order:
 * transport known (0), then with a sid: session known (1) and, unless this is a WebSocket
 * upgrade, the same transport (3); without a sid: GET only (2), websocket only as an upgrade
 * (3), EIO=4 (5). query is the raw query string. Returns -1 when the request may go on
 * (*out filled), else the error code.
 */
int rta_sio__verify(const char *method, const char *query, int is_upgrade,
                    rta_sio__lookup_fn lookup, void *ud, rta_sio__reqinfo *out);

/* "Transport unknown", "Session ID unknown", ... for a code; never NULL. */
const char *rta_sio__error_message(int code);

/* Finds name=value in a raw query string; copies the raw value (no decoding) into buf.
 * Returns buf, or NULL when absent or longer than buflen-1. */
const char *rta_sio__query_raw(const char *query, const char *name, char *buf, size_t buflen);

/* ---- outgoing queue ---- */

typedef struct rta_sio__outpkt {
    struct rta_sio__outpkt *next;
    rta_rbuf *data;  /* Engine.IO text form ("4...", "2"), or the raw bytes when binary */
    rta_rbuf *frame; /* prebuilt WebSocket frame of data, or NULL */
    int binary;
} rta_sio__outpkt;

typedef struct {
    rta_sio__outpkt *head, *tail;
    size_t count;
    size_t bytes; /* sum of data lengths: what the backlog cap is checked against */
} rta_sio__outq;

void rta_sio__outq_init(rta_sio__outq *q);
/* Appends a packet, taking its own references to data and frame (frame may be NULL). */
void rta_sio__outq_push(rta_sio__outq *q, rta_rbuf *data, rta_rbuf *frame, int binary);
/* Removes and returns the first packet (caller releases it with rta_sio__outpkt_free). */
rta_sio__outpkt *rta_sio__outq_pop(rta_sio__outq *q);
void rta_sio__outpkt_free(rta_sio__outpkt *p);
void rta_sio__outq_clear(rta_sio__outq *q);
/*
 * Moves every queued packet into out as one polling payload: packets joined by '\x1e',
 * binary ones as "b<base64>". Appends to out (a '\x1e' first when out is not empty). The
 * queue is left empty. 0, or -1 when out's maximum is reached (queue then unchanged).
 */
int rta_sio__outq_payload(rta_sio__outq *q, rta_dbuf *out);

#endif
