/* libFuzzer target: arbitrary client bytes into the WebSocket receive path.
 *
 * A wslay server context is set up as src/ws/ws.c sets it up (message cap, frame cap checked
 * at frame start, pong/close answers flushed from the message callback) with in-memory
 * callbacks: recv reads the fuzz input, fed in two chunks at a split point taken from the
 * first byte (incremental parsing), send appends to a bounded buffer. Invariants checked:
 * delivered messages respect the caps, text messages are valid UTF-8, nothing is delivered
 * after a failure, and everything the server wrote parses as unmasked, complete frames.
 * Server frames built by rta_ws_frame() are parsed back the same way.
 *
 * Deflate mode (high bit of the last byte): RSV1 is allowed as ws.c allows it after
 * negotiating permessage-deflate, and compressed messages go through ws.c's own inflater
 * (rta_ws__inflate, with or without context takeover per bit 6 of the last byte): output
 * within the cap, wslay never lets RSV1 through on control frames (nor at all outside deflate
 * mode). ws.c's UTF-8 check must agree with the one here, and rta_ws_frame_deflated() of the
 * input must inflate back to the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "rta/buf.h"
#include "rta/ws.h"
#include "ws/ws_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSG 4096
#define MAX_FRAME 2048
#define OUT_CAP (1 << 20)

typedef struct {
    const uint8_t *in;
    size_t in_len;
    uint8_t out[OUT_CAP];
    size_t out_len;
    int failed;
    int deflate;   /* RSV1 allowed (permessage-deflate negotiated) */
    int no_ctx;    /* client_no_context_takeover */
    z_stream *inf; /* the connection's inflater, as ws.c keeps it */
} fz;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    fz *f = ud;
    if (f->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < f->in_len ? len : f->in_len;
    memcpy(buf, f->in, n);
    f->in += n;
    f->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    fz *f = ud;
    if (len > OUT_CAP - f->out_len)
        abort(); /* control answers are bounded by the input: cannot happen */
    memcpy(f->out + f->out_len, data, len);
    f->out_len += len;
    return (ssize_t)len;
}

static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *ud)
{
    fz *f = ud;
    if (!f->failed && arg->payload_length > MAX_FRAME) {
        f->failed = 1;
        wslay_event_queue_close(ctx, WSLAY_CODE_MESSAGE_TOO_BIG, NULL, 0);
        wslay_event_shutdown_read(ctx);
    }
}

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

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    fz *f = ud;
    if ((arg->opcode == WSLAY_PING || arg->opcode == WSLAY_CONNECTION_CLOSE) &&
        wslay_event_want_write(ctx))
        wslay_event_send(ctx);
    if (wslay_get_rsv1(arg->rsv) &&
        (!f->deflate || (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)))
        abort(); /* wslay must have failed the connection */
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return;
    if (f->failed)
        return; /* ws.c drops it too */
    if (wslay_get_rsv1(arg->rsv)) {
        char *out;
        size_t olen;
        int code = rta_ws__inflate(&f->inf, 15, f->no_ctx, MAX_MSG, arg->msg, arg->msg_length, &out,
                                   &olen);
        if (code != 0) {
            if (code != 1007 && code != 1009 && code != 1011)
                abort();
            f->failed = 1; /* ws.c fails the connection */
            wslay_event_shutdown_read(ctx);
            return;
        }
        if (olen > MAX_MSG)
            abort();
        int ok = rta_ws__utf8_valid((const unsigned char *)out, olen);
        if (ok != utf8_valid((const uint8_t *)out, olen))
            abort();
        free(out);
        return;
    }
    if (arg->msg_length > MAX_MSG)
        abort();
    if (arg->opcode == WSLAY_TEXT_FRAME && !utf8_valid(arg->msg, arg->msg_length))
        abort();
}

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fz f;
    memset(&f, 0, offsetof(fz, out));
    f.out_len = 0;
    f.failed = 0;
    f.deflate = size > 0 && (data[size - 1] & 0x80);
    f.no_ctx = size > 0 && (data[size - 1] & 0x40);
    f.inf = NULL;
    struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_frame_recv_start_callback = frame_start_cb,
        .on_msg_recv_callback = msg_cb,
    };
    wslay_event_context_ptr ctx;
    if (wslay_event_context_server_init(&ctx, &cbs, &f) != 0)
        return 0;
    wslay_event_config_set_max_recv_msg_length(ctx, MAX_MSG);
    if (f.deflate)
        wslay_event_config_set_allowed_rsv_bits(ctx, WSLAY_RSV1_BIT);
    size_t split = size ? (size_t)data[0] % (size + 1) : 0;
    const uint8_t *chunks[2] = {data, data + split};
    size_t lens[2] = {split, size - split};
    for (int c = 0; c < 2; c++) {
        if (!wslay_event_get_read_enabled(ctx))
            break;
        f.in = chunks[c];
        f.in_len = lens[c];
        int rc = wslay_event_recv(ctx);
        if (rc != 0) {
            f.failed = 1; /* ws.c answers with its own 1002 and stops here */
            break;
        }
        if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
            abort();
    }
    check_server_frames(f.out, f.out_len, 0);
    wslay_event_context_free(ctx);
    rta_ws__inflate_free(f.inf);

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
