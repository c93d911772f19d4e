/*
 * WebSocket (RFC 6455) server connections on rta_net, with rta's own frame parser.
 *
 * Receive: src/ws/rx.c parses frames (masking required, fragmentation, control frames,
 * UTF-8 validation of text messages, max frame/message size); pings and closes are answered.
 * Send: data frames are built by rta_ws_frame() into a refcounted buffer, ONCE per broadcast,
 * and the same buffer is queued on every subscriber (server frames are unmasked, so the bytes
 * are identical for everyone). Control frames (pong, close) are queued the same way.
 * Writes queued during one loop turn are flushed together with one writev (uv_check).
 *
 * permessage-deflate (RFC 7692, opt-in with rta_ws_options.permessage_deflate): the server
 * always answers server_no_context_takeover, so a compressed server message depends on nothing
 * sent before it and a broadcast can still be compressed ONCE (rta_ws_frame_deflated) and the
 * same bytes queued on every subscriber that negotiated the extension (rta_ws_send_frames picks
 * the right one per ws). Compressed client messages are inflated (with the client's context
 * takeover when it uses it) before on_message; max_message_bytes applies to the inflated size.
 *
 * Backpressure: each ws has a byte cap on what it has queued but the kernel has not taken
 * (pending + in flight). rta_ws_send_frame returns RTA_WS_FULL when a frame would pass it; the
 * caller applies its slow-consumer policy (drop with a notice, or close with 1008/1013).
 *
 * Ownership: rta_ws lives until its on_close callback has returned; the handler must drop its
 * pointer there. Everything runs on the loop thread.
 */
#ifndef RTA_WS_H
#define RTA_WS_H

#include <stddef.h>
#include <stdint.h>

#include "rta/buf.h"
#include "rta/http.h"
#include "rta/net.h"

typedef struct rta_ws rta_ws;

enum {
    RTA_WS_OP_CONT = 0x0,
    RTA_WS_OP_TEXT = 0x1,
    RTA_WS_OP_BINARY = 0x2,
    RTA_WS_OP_CLOSE = 0x8,
    RTA_WS_OP_PING = 0x9,
    RTA_WS_OP_PONG = 0xA,
};

enum { RTA_WS_OK = 0, RTA_WS_FULL = -1, RTA_WS_CLOSED = -2 };

typedef struct rta_ws_options {
    size_t max_frame_bytes;    /* largest frame accepted (default 1 MiB) */
    size_t max_message_bytes;  /* largest reassembled message (default 1 MiB) */
    size_t max_queued_bytes;   /* send backpressure cap (default 1 MiB) */
    uint64_t close_timeout_ms; /* wait for the peer's close frame (default 5000) */
    uint64_t idle_timeout_ms;  /* 0 = none; any frame received resets it */
    int permessage_deflate;    /* 1: accept a permessage-deflate offer (default 0) */
    const char *subprotocol;   /* NULL = none */
} rta_ws_options;

typedef struct rta_ws_handler {
    /* A complete message. opcode is RTA_WS_OP_TEXT (valid UTF-8) or RTA_WS_OP_BINARY. */
    void (*on_message)(rta_ws *ws, int opcode, const char *data, size_t len);
    /* Queued bytes fell below half the cap after a RTA_WS_FULL (optional). */
    void (*on_writable)(rta_ws *ws);
    /* The connection is gone. code = close code received or sent (1006 when none);
     * reason is a short text for logs. After return, ws is freed. */
    void (*on_close)(rta_ws *ws, int code, const char *reason);
} rta_ws_handler;

void rta_ws_options_default(rta_ws_options *o);

/* Validates the upgrade request (rta/ws_handshake.h); on failure answers the request with the
 * JSON error (400/426; the answer consumes req, as rta_http_send* do) and returns NULL, else
 * writes the 101 response, takes over conn and feeds it the leftover bytes (copied; fed later
 * in this loop turn, so no callback runs before this returns). On success the request stays
 * owned by the caller (the HTTP server frees it). opts NULL = defaults. */
rta_ws *rta_ws_accept(rta_http_req *req, rta_conn *conn, const char *leftover, size_t len,
                      const rta_ws_options *opts, const rta_ws_handler *handler, void *ud);

void *rta_ws_get_data(const rta_ws *ws);
void rta_ws_set_data(rta_ws *ws, void *ud);
rta_conn *rta_ws_conn(const rta_ws *ws);

/* A complete server frame (FIN set, unmasked) holding payload. refcnt 1. */
rta_rbuf *rta_ws_frame(int opcode, const void *payload, size_t len);
/* Queues a prebuilt frame as is (takes a reference): a plain frame, or a compressed one only
 * on a ws where rta_ws_deflate_enabled(). RTA_WS_OK, RTA_WS_FULL (not queued) or
 * RTA_WS_CLOSED. */
int rta_ws_send_frame(rta_ws *ws, rta_rbuf *frame);
/* The same message compressed (RFC 7692: raw deflate, sync-flush tail removed, RSV1 set; no
 * context used, so valid for every ws that negotiated permessage-deflate). refcnt 1. NULL when
 * compression would not make the frame smaller (send the plain frame) or zlib failed. */
rta_rbuf *rta_ws_frame_deflated(int opcode, const void *payload, size_t len);
/* Queues deflated (may be NULL) when ws negotiated permessage-deflate and may read it, else
 * plain; both must hold the same message (plain from rta_ws_frame, deflated from
 * rta_ws_frame_deflated). Same returns as rta_ws_send_frame. */
int rta_ws_send_frames(rta_ws *ws, rta_rbuf *plain, rta_rbuf *deflated);
/* 1 when permessage-deflate was negotiated on ws. */
int rta_ws_deflate_enabled(const rta_ws *ws);
/* Convenience: frames and queues one message (copying data; compressed when ws negotiated
 * permessage-deflate and it helps). Same returns. */
int rta_ws_send(rta_ws *ws, int opcode, const void *data, size_t len);
/* Bytes queued and not yet taken by the kernel. */
size_t rta_ws_queued_bytes(const rta_ws *ws);
/* Starts the close handshake with code and reason; the conn closes when the peer answers or
 * after close_timeout_ms. */
void rta_ws_close(rta_ws *ws, int code, const char *reason);
/* Drops the connection now (no close frame): for dead or abusive peers. on_close runs before
 * this returns, unless called from inside one of this ws's callbacks (then right after it). */
void rta_ws_abort(rta_ws *ws, const char *reason);

#endif
