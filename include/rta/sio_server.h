/*
 * Engine.IO v4 + Socket.IO v5 server (the protocol layer under the realtime API).
 *
 * Engine.IO sessions live under the path /socket.io/ on the HTTP server: long-polling
 * (GET/POST, '\x1e' payloads, one GET and one POST in flight, CORS) and WebSocket (rta/ws.h),
 * with the polling -> websocket upgrade (2probe/3probe, noop to the pending GET, 5), pings
 * every ping_interval, close after ping_timeout, max_payload, and the documented error answers
 * for a bad EIO version, transport or sid.
 *
 * Socket.IO namespaces sit on top: a namespace handler decides on each CONNECT (auth payload),
 * receives EVENTs (with optional ack ids) and learns about disconnects. Connection state
 * recovery: when enabled, the CONNECT answer carries {"sid","pid"}; the handler chooses the pid
 * (a new one, or the recovered one from auth.pid to tell the client it was recovered) and
 * events carry their offset as a last string argument, as socket.io 4.6+ does.
 *
 * Broadcast fast path: a packet is encoded once (rta_sio_encode_broadcast) and, for
 * WebSocket sockets, framed once (rta_ws_frame of the same text); rta_sio_send_packet queues
 * the shared buffers on each socket. Everything runs on the loop thread.
 *
 * permessage-deflate (RFC 7692, opt-in with ws_permessage_deflate, like socket.io's
 * perMessageDeflate): WebSocket transports (direct and upgraded) accept the offer with
 * server_no_context_takeover, so a broadcast is also compressed once (rta_ws_frame_deflated of
 * the same text, built by the caller only when rta_sio_socket_deflate says a recipient can use
 * it) and shared via rta_sio_send_packet_deflated. Packets the server frames itself (CONNECT
 * answers, acks, emits, pings) are compressed per message when 128 bytes or longer.
 */
#ifndef RTA_SIO_SERVER_H
#define RTA_SIO_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rta/buf.h"
#include "rta/http.h"
#include "rta/net.h"

typedef struct rta_sio_server rta_sio_server;
typedef struct rta_sio_socket rta_sio_socket;

typedef struct rta_sio_options {
    uint64_t ping_interval_ms;   /* default 25000 */
    uint64_t ping_timeout_ms;    /* default 20000 */
    uint64_t connect_timeout_ms; /* a session must CONNECT a namespace within (default 45000) */
    size_t max_payload;          /* default 1000000 */
    size_t max_queued_bytes;     /* per session send backlog cap (default 1 MiB) */
    size_t max_sessions;         /* default 19000 */
    const char *cors_origins;    /* "*" or list; "" = no CORS headers */
    int recovery;                /* include pid in CONNECT answers, offsets in events */
    const char *path;            /* URL prefix of the endpoint (default "/socket.io/") */
    int ws_permessage_deflate;   /* 1: WebSocket transports accept permessage-deflate (0) */
    int eio_echo;                /* testing only: no Socket.IO layer, every Engine.IO message
                                    is echoed back (the Engine.IO compliance suite's server) */
} rta_sio_options;

/* What the client sent when opening the Engine.IO session. */
typedef struct rta_sio_handshake {
    const char *query;         /* raw query string of the first request */
    const char *authorization; /* Authorization header or NULL */
    const char *remote_ip;
    const char *user_agent; /* or NULL */
    const char *transport;  /* "polling" | "websocket" (current) */
} rta_sio_handshake;

enum {
    RTA_SIO_ACCEPT = 0,
    RTA_SIO_REJECT = 1, /* CONNECT_ERROR with *err_data */
};

typedef struct rta_sio_namespace_handler {
    /* CONNECT to the namespace. auth: the CONNECT payload object or NULL (borrowed). Return
     * RTA_SIO_ACCEPT (optionally after rta_sio_socket_set_pid / set_data), or RTA_SIO_REJECT
     * with *err_data = {"message":..., "data":{...}} (stolen) sent as CONNECT_ERROR. */
    int (*on_connect)(void *ud, rta_sio_socket *s, json_t *auth, const rta_sio_handshake *hs,
                      json_t **err_data);
    /* Called right after the CONNECT answer was queued (replay missed events here). */
    void (*on_connected)(void *ud, rta_sio_socket *s);
    /* An EVENT. args: the array after the event name (borrowed). ack_id < 0 when none. */
    void (*on_event)(void *ud, rta_sio_socket *s, const char *event, json_t *args, int64_t ack_id);
    /* The socket left: reason as in Socket.IO ("client namespace disconnect", "transport
     * close", "ping timeout", "server namespace disconnect", "server shutting down", ...). The
     * socket is freed after return. */
    void (*on_disconnect)(void *ud, rta_sio_socket *s, const char *reason);
    /* 1: a socket of this namespace alone does not hold the session: it must still CONNECT
     * another namespace within connect_timeout_ms, or it is closed (for a namespace open to
     * anyone, like a keyless "/"). */
    int guest;
} rta_sio_namespace_handler;

void rta_sio_options_default(rta_sio_options *o);
rta_sio_server *rta_sio_server_new(uv_loop_t *loop, const rta_sio_options *opts);
/* Closes every session (sending close packets) and frees the server once handles closed. */
void rta_sio_server_free(rta_sio_server *srv);
/* Registers a namespace ("/" and others). 0 or -1. */
int rta_sio_server_namespace(rta_sio_server *srv, const char *nsp,
                             const rta_sio_namespace_handler *h, void *ud);

/* HTTP integration: returns 1 and takes the request when its path is under /socket.io/. */
int rta_sio_server_handle_http(rta_sio_server *srv, rta_http_req *req);
/* WebSocket upgrade for /socket.io/?EIO=4&transport=websocket[&sid=..]: returns 1 when taken. */
int rta_sio_server_handle_upgrade(rta_sio_server *srv, rta_http_req *req, rta_conn *conn,
                                  const char *leftover, size_t len);
/* Disconnects everybody with "server shutting down". */
void rta_sio_server_shutdown(rta_sio_server *srv);

/* Stats for metrics. */
typedef struct rta_sio_stats {
    size_t sessions_polling, sessions_websocket;
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t upgrades, ping_timeouts, protocol_errors;
    size_t sessions_websocket_deflate; /* of sessions_websocket: permessage-deflate in use */
} rta_sio_stats;
const rta_sio_stats *rta_sio_server_stats(const rta_sio_server *srv);

/* ---- sockets ---- */
const char *rta_sio_socket_id(const rta_sio_socket *s);        /* Socket.IO sid */
const char *rta_sio_socket_transport(const rta_sio_socket *s); /* "polling" | "websocket" */
void *rta_sio_socket_get_data(const rta_sio_socket *s);
void rta_sio_socket_set_data(rta_sio_socket *s, void *ud);
/* Sets the pid sent in the CONNECT answer (only during on_connect). */
void rta_sio_socket_set_pid(rta_sio_socket *s, const char *pid);
/* Sets the Socket.IO sid sent in the CONNECT answer (only during on_connect): a recovered
 * session keeps its old sid. 1..64 printable ASCII characters, no '"' or '\\'. */
void rta_sio_socket_set_id(rta_sio_socket *s, const char *id);
size_t rta_sio_socket_queued_bytes(const rta_sio_socket *s);

/* Emits event with one JSON argument (any json_t, borrowed; NULL = no argument) and no ack.
 * 0, -1 when the backlog is full (nothing queued), -2 when closed. */
int rta_sio_emit(rta_sio_socket *s, const char *event, json_t *arg);
/* Same with an array of arguments (borrowed, NULL = none). Arguments may hold binary blobs
 * (rta/sio.h): the packet then goes as BINARY_EVENT with its attachments. */
int rta_sio_emit_args(rta_sio_socket *s, const char *event, json_t *args);
/* Answers an ack with args (array, borrowed; may hold blobs -> BINARY_ACK). Same returns. */
int rta_sio_ack(rta_sio_socket *s, int64_t ack_id, json_t *args);
/* Server-side namespace disconnect (sends DISCONNECT, then on_disconnect with reason). */
void rta_sio_disconnect(rta_sio_socket *s, const char *reason);

/* Encodes the Engine.IO text of an EVENT packet once:
 *   4 2 /nsp, ["event", <json_arg text as given>, "<offset>"]
 * json_arg must be valid JSON text (NULL or len 0: no argument); offset may be NULL (omitted).
 * refcnt 1; NULL on a bad namespace. */
rta_rbuf *rta_sio_encode_broadcast(const char *nsp, const char *event, const char *json_arg,
                                   size_t json_len, const char *offset);
/* Queues an encoded packet: websocket sockets get ws_frame (rta_ws_frame(TEXT, eio_text) built
 * once by the caller, may be NULL to frame it here), polling sockets get eio_text. Takes its
 * own references. 0, -1 when the socket's backlog is over max_queued_bytes (nothing queued),
 * -2 when closed. */
int rta_sio_send_packet(rta_sio_socket *s, rta_rbuf *eio_text, rta_rbuf *ws_frame);
/* 1 when s is on a WebSocket transport that negotiated permessage-deflate (so a compressed
 * frame may be worth building for it). */
int rta_sio_socket_deflate(const rta_sio_socket *s);
/* rta_sio_send_packet with the compressed frame too: ws_deflated = rta_ws_frame_deflated(TEXT,
 * eio_text) (NULL when compression did not help; ignored when ws_frame is NULL). A websocket
 * socket that negotiated permessage-deflate gets ws_deflated (rta_ws_send_frames falls back to
 * ws_frame when the client's window is too small), any other gets what rta_sio_send_packet
 * queues. The backlog check counts eio_text's length. Same returns. */
int rta_sio_send_packet_deflated(rta_sio_socket *s, rta_rbuf *eio_text, rta_rbuf *ws_frame,
                                 rta_rbuf *ws_deflated);

#endif
