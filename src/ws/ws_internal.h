/*
 * Internals of src/ws shared with the fuzz target (tests/fuzz/fuzz_ws_frames.c) and the codec
 * benchmark (tools/ws-codec-bench.c): the receive-side frame parser (src/ws/rx.c), the
 * permessage-deflate receive path and the UTF-8 check it needs. Not a public contract.
 */
#ifndef RTA_WS_INTERNAL_H
#define RTA_WS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). 1 valid, 0 not. */
int rta_ws__utf8_valid(const unsigned char *s, size_t n);

/* Inflates one compressed message (RFC 7692 section 7.2.2: append 00 00 ff ff, inflate).
 * *zp is the connection's stream: created on first use with a window of window_bits (at
 * least 9), reset first when no_context_takeover, kept otherwise. Output is capped at max:
 * inflating stops one byte past it. Returns 0 and a malloc'd *out (free it), or the close
 * code: 1009 too big, 1007 corrupt, 1011 no memory (then the stream must not be used again
 * except to be freed with rta_ws__inflate_free). */
int rta_ws__inflate(z_stream **zp, int window_bits, int no_context_takeover, size_t max,
                    const uint8_t *in, size_t len, char **out, size_t *olen);
void rta_ws__inflate_free(z_stream *z);

/* ---- receive-side frame parser (src/ws/rx.c) ---- */

typedef struct rta_ws__rx_cb {
    /* A frame header passed the checks (optional; ws.c pushes its idle deadline back). */
    void (*on_frame)(void *ud);
    /* A complete data message: op 1 (text, valid UTF-8 unless rsv1) or 2 (binary); rsv1 = the
     * message is compressed (permessage-deflate). data is valid during the call. Return
     * nonzero to stop parsing (the rest of the input is dropped). */
    int (*on_message)(void *ud, int op, int rsv1, const char *data, size_t len);
    /* A complete control frame: 0x8 close (code and reason already checked; the parser reads
     * nothing more), 0x9 ping, 0xA pong; payload unmasked, at most 125 bytes. Nonzero =
     * stop. */
    int (*on_control)(void *ud, int op, const uint8_t *payload, size_t len);
} rta_ws__rx_cb;

typedef struct rta_ws__rx {
    uint8_t hdr[14]; /* the frame header being read */
    uint8_t hlen;
    uint8_t state; /* header, payload, done (after a close or an error) */
    uint8_t op, fin;
    uint8_t mask[4];
    uint8_t msg_op; /* 0 = no data message in progress, else 1 / 2 */
    uint8_t msg_rsv1;
    uint8_t u8_need, u8_lo, u8_hi; /* incremental UTF-8 state of a text message */
    uint8_t allow_rsv1;
    uint8_t ctrl_len;
    uint8_t *ctrl;       /* control payload, allocated only while such a frame is read */
    uint64_t flen, left; /* current frame's payload length, bytes still to read */
    char *msg;           /* data message so far, allocated only while one is in progress */
    size_t msg_len, msg_cap;
    size_t max_frame, max_message;
    const char *err_reason; /* after an error: a short reason for the close frame */
} rta_ws__rx;

/* max_frame / max_message: caps on one frame's / one message's payload (1009 over them);
 * allow_rsv1: permessage-deflate was negotiated. */
void rta_ws__rx_init(rta_ws__rx *rx, size_t max_frame, size_t max_message, int allow_rsv1);
/* Frees the buffers; the rx reads nothing more. */
void rta_ws__rx_free(rta_ws__rx *rx);
/* Parses len client bytes, calling cb as frames complete. Returns 0 (all used, or the parser
 * is done after a close), -1 when a callback asked to stop, or a close code (1002 protocol
 * error, 1007 invalid UTF-8, 1009 too big; rx->err_reason says why) after which the rx
 * reads nothing more. */
int rta_ws__rx_feed(rta_ws__rx *rx, const uint8_t *data, size_t len, const rta_ws__rx_cb *cb,
                    void *ud);

#endif
