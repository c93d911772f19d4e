/* libFuzzer target: arbitrary client bytes into the WebSocket receive path.
 *
 * Drives ws.c's own frame parser (src/ws/rx.c, rta_ws__rx_feed: the code ws.c runs on every
 * read) configured as ws.c configures it (frame and message caps, RSV1 allowed only with
 * permessage-deflate), with callbacks that do what ws.c's do: pings answered with pongs and a
 * close with a close (built by rta_ws_frame into a bounded output buffer), compressed messages
 * inflated by ws.c's inflater (rta_ws__inflate). The input is fed three ways: whole, in two
 * chunks at a split point taken from the first byte, and one byte at a time; the three runs must
 * report the same events and end the same way (incremental parsing). Invariants: messages
 * within the caps, text valid UTF-8 (checked by an independent validator here), RSV1 only on
 * data messages of a deflate connection, control payloads at most 125 bytes, close codes
 * allowed on the wire, nothing reported after an error or a close, errors only 1002/1007/1009,
 * and everything the server wrote parses as unmasked, complete frames. Server frames built by
 * rta_ws_frame() are parsed back the same way.
 *
 * Deflate mode (high bit of the last byte; bit 6 = client without context takeover):
 * compressed messages are inflated with the cap, ws.c's UTF-8 check must agree with the one
 * here, and rta_ws_frame_deflated() of the input must inflate back to the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rta/buf.h"
#include "rta/ws.h"
#include "ws/ws_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSG 4096
#define MAX_FRAME 2048
#define OUT_CAP (1 << 20)

typedef struct {
    uint8_t out[OUT_CAP];
    size_t out_len;
    uint64_t events; /* running hash of what the parser reported */
    size_t nevents;
    int ended;     /* a close was reported */
    int failed;    /* inflate failed: ws.c fails the connection and stops */
    int deflate;   /* RSV1 allowed (permessage-deflate negotiated) */
    int no_ctx;    /* client_no_context_takeover */
    z_stream *inf; /* the connection's inflater, as ws.c keeps it */
} fz;

/* Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void note(fz *f, int op, const uint8_t *p, size_t n)
{
    uint64_t h = f->events ^ (uint64_t)op * 0x9e3779b97f4a7c15ull ^ n;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    f->events = h;
    f->nevents++;
}

static void emit(fz *f, int op, const void *p, size_t n)
{
    rta_rbuf *b = rta_ws_frame(op, p, n);
    if (b->len > OUT_CAP - f->out_len)
        abort(); /* control answers are bounded by the input: cannot happen */
    memcpy(f->out + f->out_len, b->data, b->len);
    f->out_len += b->len;
    rta_rbuf_unref(b);
}

static int on_message(void *ud, int op, int rsv1, const char *data, size_t len)
{
    fz *f = ud;
    if (f->ended || f->failed)
        abort(); /* nothing after a close or a failure */
    if (op != RTA_WS_OP_TEXT && op != RTA_WS_OP_BINARY)
        abort();
    if (rsv1 && !f->deflate)
        abort(); /* RSV1 only where permessage-deflate allows it */
    /* the parser's cap: ws.c gives it deflate's slack on deflate connections */
    if (len > (f->deflate ? MAX_MSG + MAX_MSG / 1024 + 64 : MAX_MSG))
        abort();
    note(f, op | (rsv1 << 4), (const uint8_t *)data, len);
    if (!rsv1) {
        if (op == RTA_WS_OP_TEXT && !utf8_valid((const uint8_t *)data, len))
            abort();
        return 0;
    }
    char *out;
    size_t olen;
    int code =
        rta_ws__inflate(&f->inf, 15, f->no_ctx, MAX_MSG, (const uint8_t *)data, len, &out, &olen);
    if (code != 0) {
        if (code != 1007 && code != 1009 && code != 1011)
            abort();
        f->failed = 1; /* ws.c fails the connection and stops the parser */
        return 1;
    }
    if (olen > MAX_MSG)
        abort();
    int ok = rta_ws__utf8_valid((const unsigned char *)out, olen);
    if (ok != utf8_valid((const uint8_t *)out, olen))
        abort();
    free(out);
    return 0;
}

static int on_control(void *ud, int op, const uint8_t *p, size_t len)
{
    fz *f = ud;
    if (f->ended || f->failed)
        abort();
    if (len > 125 || (op != RTA_WS_OP_CLOSE && op != RTA_WS_OP_PING && op != RTA_WS_OP_PONG))
        abort();
    note(f, op, p, len);
    if (op == RTA_WS_OP_PING) {
        emit(f, RTA_WS_OP_PONG, p, len);
    } else if (op == RTA_WS_OP_CLOSE) {
        if (len == 1)
            abort();
        if (len >= 2) {
            unsigned code = ((unsigned)p[0] << 8) | p[1];
            if (code < 1000 || code == 1004 || code == 1005 || code == 1006 ||
                (code > 1014 && code < 3000) || code > 4999)
                abort();
            if (!utf8_valid(p + 2, len - 2))
                abort();
        }
        emit(f, RTA_WS_OP_CLOSE, p, len);
        f->ended = 1;
        return 1;
    }
    return 0;
}

static const rta_ws__rx_cb cbs = {.on_message = on_message, .on_control = on_control};

/* Walks server output: complete, unmasked frames with known opcodes only. */
static void check_server_frames(const uint8_t *b, size_t n, int allow_rsv1)
{
    size_t i = 0;
    while (i < n) {
        if (n - i < 2)
            abort();
        uint8_t op = b[i] & 0x0f;
        if (!(b[i] & 0x80) || (b[i] & (allow_rsv1 ? 0x30 : 0x70)) || (b[i + 1] & 0x80))
            abort();
        if (op != 0x1 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xa)
            abort();
        uint64_t len = b[i + 1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (n - i < 4)
                abort();
            len = ((uint64_t)b[i + 2] << 8) | b[i + 3];
            h = 4;
        } else if (len == 127) {
            if (n - i < 10)
                abort();
            len = 0;
            for (int k = 0; k < 8; k++)
                len = (len << 8) | b[i + 2 + k];
            h = 10;
        }
        if (len > n - i - h)
            abort();
        i += h + (size_t)len;
    }
}

/* One run of the parser over data cut into pieces of `step` bytes (0: two chunks, at split).
 * Returns the final status: 0 ok / -1 stopped by a callback / the close code. */
static int run(fz *f, const uint8_t *data, size_t size, size_t split, size_t step, int deflate,
               int no_ctx)
{
    f->out_len = 0;
    f->events = 0;
    f->nevents = 0;
    f->ended = 0;
    f->failed = 0;
    f->deflate = deflate;
    f->no_ctx = no_ctx;
    f->inf = NULL;
    rta_ws__rx rx;
    size_t max_msg = deflate ? MAX_MSG + MAX_MSG / 1024 + 64 : MAX_MSG;
    rta_ws__rx_init(&rx, MAX_FRAME, max_msg, deflate);
    int rc = 0;
    if (step == 0) {
        rc = rta_ws__rx_feed(&rx, data, split, &cbs, f);
        if (rc == 0)
            rc = rta_ws__rx_feed(&rx, data + split, size - split, &cbs, f);
    } else {
        for (size_t i = 0; i < size && rc == 0; i += step)
            rc = rta_ws__rx_feed(&rx, data + i, size - i < step ? size - i : step, &cbs, f);
    }
    if (rc > 0) {
        if (rc != 1002 && rc != 1007 && rc != 1009)
            abort();
        if (rx.err_reason == NULL || rx.msg != NULL || rx.ctrl != NULL)
            abort(); /* an error frees what was buffered */
        /* ws.c would now send its close; nothing more is read */
        if (rta_ws__rx_feed(&rx, (const uint8_t *)"\x81\x80\0\0\0\0", 6, &cbs, f) != 0)
            abort();
    }
    if (rx.msg_len > max_msg || rx.msg_cap > max_msg)
        abort();
    rta_ws__rx_free(&rx);
    rta_ws__inflate_free(f->inf);
    f->inf = NULL;
    check_server_frames(f->out, f->out_len, 0);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fz f;
    int deflate = size > 0 && (data[size - 1] & 0x80);
    int no_ctx = size > 0 && (data[size - 1] & 0x40);
    size_t split = size ? (size_t)data[0] % (size + 1) : 0;

    int rc1 = run(&f, data, size, size, 0, deflate, no_ctx); /* whole */
    uint64_t ev1 = f.events;
    size_t n1 = f.nevents, out1 = f.out_len;
    int rc2 = run(&f, data, size, split, 0, deflate, no_ctx); /* two chunks */
    if (rc2 != rc1 || f.events != ev1 || f.nevents != n1 || f.out_len != out1)
        abort();
    int rc3 = run(&f, data, size, 0, 1, deflate, no_ctx); /* a byte at a time */
    if (rc3 != rc1 || f.events != ev1 || f.nevents != n1 || f.out_len != out1)
        abort();

    /* our own frame builders, on the input as payload */
    rta_rbuf *fr = rta_ws_frame(RTA_WS_OP_BINARY, data, size);
    check_server_frames((const uint8_t *)fr->data, fr->len, 0);
    rta_rbuf_unref(fr);
    if (rta_ws__utf8_valid(data, size) != utf8_valid(data, size))
        abort();
    rta_rbuf *df = rta_ws_frame_deflated(RTA_WS_OP_BINARY, data, size);
    if (df) {
        check_server_frames((const uint8_t *)df->data, df->len, 1);
        const uint8_t *b = (const uint8_t *)df->data;
        size_t h = (b[1] & 0x7f) < 126 ? 2 : (b[1] & 0x7f) == 126 ? 4 : 10;
        if (b[0] != 0xc2 || df->len - h >= size)
            abort();
        z_stream *z = NULL;
        char *out;
        size_t olen;
        if (rta_ws__inflate(&z, 15, 1, size, b + h, df->len - h, &out, &olen) != 0 ||
            olen != size || memcmp(out, data, size) != 0)
            abort();
        free(out);
        rta_ws__inflate_free(z);
        rta_rbuf_unref(df);
    }
    return 0;
}
