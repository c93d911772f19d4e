/*
 * WebSocket (RFC 6455) receive-side frame parser, server role: what src/ws/ws.c runs on the
 * bytes a client sends. No I/O and no sending: it reports complete messages and control frames
 * through callbacks and returns the close code when the client broke a rule.
 *
 * Why our own instead of wslay: wslay's event context carries two fixed 4 KiB buffers per
 * connection (frame input buffer, event output buffer), ~9 KB of RSS for every idle client.
 * Here an idle connection costs the rta_ws__rx struct (about 80 bytes): the header is parsed
 * incrementally in a 14-byte array, a message buffer is allocated only while a data message
 * is in progress (freed once delivered), and a control frame's payload (at most 125 bytes) is
 * allocated only while that frame is in progress. See docs/BENCHMARKS.md "Memory per
 * connection".
 *
 * Checks: masking (1002), RSV2/RSV3 (1002), RSV1 unless allowed (permessage-deflate) and then
 * only on the first frame of a data message (1002), unknown opcodes (1002), non-minimal or
 * 63-bit-overflowing length encodings (1002), control frames fragmented or over 125 bytes
 * (1002), continuation without a message / new data frame inside one (1002), frame and message
 * size caps (1009, checked when a header arrives, before any payload is buffered), UTF-8 of
 * text messages incrementally across frames unless compressed (1007), close frames: 1-byte
 * payload or a code that may not be sent (1002), reason not UTF-8 (1007).
 */
#include <stdlib.h>
#include <string.h>

#include "rta/util.h"
#include "ws/ws_internal.h"

enum { ST_HEADER = 0, ST_PAYLOAD = 1, ST_DONE = 2 };

void rta_ws__rx_init(rta_ws__rx *rx, size_t max_frame, size_t max_message, int allow_rsv1)
{
    memset(rx, 0, sizeof *rx);
    rx->max_frame = max_frame;
    rx->max_message = max_message;
    rx->allow_rsv1 = allow_rsv1 ? 1 : 0;
}

void rta_ws__rx_free(rta_ws__rx *rx)
{
    free(rx->msg);
    free(rx->ctrl);
    rx->msg = NULL;
    rx->ctrl = NULL;
    rx->msg_len = rx->msg_cap = 0;
    rx->state = ST_DONE;
}

/* Incremental strict UTF-8 (RFC 3629): need = continuation bytes still expected for the
 * current sequence, [lo, hi] = allowed range of the next one. 0 on an invalid byte. */
static int utf8_step(rta_ws__rx *rx, const uint8_t *s, size_t n)
{
    unsigned need = rx->u8_need, lo = rx->u8_lo, hi = rx->u8_hi;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (need) {
            if (c < lo || c > hi)
                return 0;
            need--;
            lo = 0x80;
            hi = 0xbf;
            continue;
        }
        if (c < 0x80)
            continue;
        lo = 0x80;
        hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* no overlongs */
            else if (c == 0xed)
                hi = 0x9f; /* no surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f; /* at most U+10FFFF */
        } else
            return 0;
    }
    rx->u8_need = (uint8_t)need;
    rx->u8_lo = (uint8_t)lo;
    rx->u8_hi = (uint8_t)hi;
    return 1;
}

/* dst = src XOR the mask, starting at payload offset off; a word at a time in the middle. */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4], size_t off)
{
    size_t k = 0;
    for (; k < n && ((off + k) & 3); k++)
        dst[k] = src[k] ^ mask[(off + k) & 3];
    if (n - k >= 8) {
        uint32_t m4;
        memcpy(&m4, mask, 4); /* (off + k) is a multiple of 4 here: mask[0] comes first */
        uint64_t m8 = ((uint64_t)m4 << 32) | m4;
        for (; n - k >= 8; k += 8) {
            uint64_t w;
            memcpy(&w, src + k, 8);
            w ^= m8;
            memcpy(dst + k, &w, 8);
        }
    }
    for (; k < n; k++)
        dst[k] = src[k] ^ mask[(off + k) & 3];
}

static int fail(rta_ws__rx *rx, int code, const char *reason)
{
    rx->state = ST_DONE;
    rx->err_reason = reason;
    free(rx->msg);
    free(rx->ctrl);
    rx->msg = NULL;
    rx->ctrl = NULL;
    rx->msg_len = rx->msg_cap = 0;
    return code;
}

static int close_code_ok(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

/* The header in rx->hdr is complete (rx->hlen bytes): check it and set up the payload. */
static int header_done(rta_ws__rx *rx, const rta_ws__rx_cb *cb, void *ud)
{
    const uint8_t *h = rx->hdr;
    unsigned fin = h[0] >> 7, rsv1 = (h[0] >> 6) & 1, op = h[0] & 0x0f;
    unsigned len7 = h[1] & 0x7f;
    uint64_t len = len7;
    if (len7 == 126) {
        len = ((uint64_t)h[2] << 8) | h[3];
        if (len < 126)
            return fail(rx, 1002, "protocol error");
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | h[2 + i];
        if ((len >> 63) || len <= 0xffff)
            return fail(rx, 1002, "protocol error");
    }
    memcpy(rx->mask, h + rx->hlen - 4, 4);
    if (h[0] & 0x30)
        return fail(rx, 1002, "protocol error");
    if (op >= 0x8) { /* control */
        if (op > 0xa || !fin || rsv1 || len > 125)
            return fail(rx, 1002, "protocol error");
    } else if (op == 0x0) {
        if (rx->msg_op == 0 || rsv1)
            return fail(rx, 1002, "protocol error");
    } else if (op <= 0x2) {
        if (rx->msg_op != 0 || (rsv1 && !rx->allow_rsv1))
            return fail(rx, 1002, "protocol error");
    } else {
        return fail(rx, 1002, "protocol error");
    }
    if (len > rx->max_frame)
        return fail(rx, 1009, "frame too big");
    rx->op = (uint8_t)op;
    rx->fin = (uint8_t)fin;
    rx->flen = len;
    rx->left = len;
    if (op >= 0x8) {
        rx->ctrl_len = 0;
        if (len > 0 && rx->ctrl == NULL)
            rx->ctrl = rta_xmalloc(125);
    } else {
        if (op != 0x0) {
            rx->msg_op = (uint8_t)op;
            rx->msg_rsv1 = (uint8_t)rsv1;
            rx->u8_need = 0;
        }
        /* the buffer grows as payload arrives (a header alone allocates nothing) */
        if (len > rx->max_message - rx->msg_len) /* msg_len <= max_message always */
            return fail(rx, 1009, "message too big");
    }
    rx->state = ST_PAYLOAD;
    if (cb->on_frame)
        cb->on_frame(ud);
    return 0;
}

/* The current frame's payload is complete. */
static int frame_done(rta_ws__rx *rx, const rta_ws__rx_cb *cb, void *ud)
{
    rx->state = ST_HEADER;
    rx->hlen = 0;
    if (rx->op >= 0x8) {
        const uint8_t *p = rx->ctrl;
        size_t n = rx->ctrl_len;
        int rc = 0;
        if (rx->op == 0x8) {
            if (n == 1)
                return fail(rx, 1002, "protocol error");
            if (n >= 2 && !close_code_ok(((unsigned)p[0] << 8) | p[1]))
                return fail(rx, 1002, "protocol error");
            rx->u8_need = 0;
            if (n > 2 && (!utf8_step(rx, p + 2, n - 2) || rx->u8_need))
                return fail(rx, 1007, "invalid UTF-8");
            rx->state = ST_DONE; /* nothing is read after a close */
        }
        if (cb->on_control)
            rc = cb->on_control(ud, rx->op, p ? p : (const uint8_t *)"", n);
        free(rx->ctrl);
        rx->ctrl = NULL;
        rx->ctrl_len = 0;
        return rc ? -1 : 0;
    }
    if (!rx->fin)
        return 0;
    if (rx->msg_op == 0x1 && !rx->msg_rsv1 && rx->u8_need)
        return fail(rx, 1007, "invalid UTF-8");
    /* hand the buffer over: the rx is ready for the next message before the callback runs */
    char *msg = rx->msg;
    size_t len = rx->msg_len;
    int op = rx->msg_op, rsv1 = rx->msg_rsv1;
    rx->msg = NULL;
    rx->msg_len = rx->msg_cap = 0;
    rx->msg_op = 0;
    rx->msg_rsv1 = 0;
    int rc = cb->on_message ? cb->on_message(ud, op, rsv1, msg ? msg : "", len) : 0;
    free(msg);
    return rc ? -1 : 0;
}

/* Header bytes needed, as far as known: 2 until the length byte is in. */
static size_t header_need(const rta_ws__rx *rx)
{
    if (rx->hlen < 2)
        return 2;
    unsigned l7 = rx->hdr[1] & 0x7f;
    return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
}

int rta_ws__rx_feed(rta_ws__rx *rx, const uint8_t *data, size_t len, const rta_ws__rx_cb *cb,
                    void *ud)
{
    size_t i = 0;
    while (i < len || (rx->state == ST_PAYLOAD && rx->left == 0)) {
        if (rx->state == ST_DONE)
            return 0;
        if (rx->state == ST_HEADER) {
            /* 2 bytes, then the extended length (0, 2 or 8 bytes), then the 4-byte mask */
            size_t need = header_need(rx);
            while (i < len && rx->hlen < need) {
                rx->hdr[rx->hlen++] = data[i++];
                if (rx->hlen == 2) {
                    if (!(rx->hdr[1] & 0x80))
                        return fail(rx, 1002, "protocol error"); /* clients must mask */
                    need = header_need(rx);
                }
            }
            if (rx->hlen < 2 || rx->hlen < need)
                return 0; /* header incomplete: wait for more bytes */
            int rc = header_done(rx, cb, ud);
            if (rc)
                return rc;
            continue;
        }
        /* payload: unmask into the control buffer or the message buffer */
        size_t n = len - i;
        if (n > rx->left)
            n = (size_t)rx->left;
        if (n > 0) {
            size_t off = (size_t)(rx->flen - rx->left);
            uint8_t *dst;
            if (rx->op >= 0x8) {
                dst = rx->ctrl + rx->ctrl_len;
            } else {
                size_t want = rx->msg_len + n; /* <= max_message (checked at the header) */
                if (want > rx->msg_cap) {
                    size_t cap = rx->msg_cap * 2;
                    if (cap > rx->max_message)
                        cap = rx->max_message;
                    if (cap < want)
                        cap = want;
                    rx->msg = rta_xrealloc(rx->msg, cap);
                    rx->msg_cap = cap;
                }
                dst = (uint8_t *)rx->msg + rx->msg_len;
            }
            unmask(dst, data + i, n, rx->mask, off);
            if (rx->op >= 0x8) {
                rx->ctrl_len += n;
            } else {
                rx->msg_len += n;
                if (rx->msg_op == 0x1 && !rx->msg_rsv1 && !utf8_step(rx, dst, n))
                    return fail(rx, 1007, "invalid UTF-8");
            }
            i += n;
            rx->left -= n;
        }
        if (rx->left == 0) {
            int rc = frame_done(rx, cb, ud);
            if (rc)
                return rc;
        }
    }
    return 0;
}
