/*
 * ws-codec-bench: receive-side WebSocket frame parsing throughput, wslay's event API (what
 * src/ws/ws.c used before) against rta's own parser (src/ws/rx.c, what ws.c runs now), on the
 * same buffer of masked client text frames. Single thread, no I/O: a buffer of frames is fed
 * in 16 KiB reads (like a socket read) for about --seconds each, and frames per second are
 * printed. Also prints the heap cost of one idle parser of each kind.
 *
 *   ws-codec-bench [--size 100] [--seconds 2]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "rta/util.h"
#include "ws/ws_internal.h"

#define READ_CHUNK 16384

typedef struct {
    const uint8_t *in;
    size_t in_len;
    size_t frames;
} feed;

static ssize_t w_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    feed *f = ud;
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

static ssize_t w_send(wslay_event_context_ptr ctx, const uint8_t *d, size_t len, int flags,
                      void *ud)
{
    return (ssize_t)len;
}

static void w_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                  void *ud)
{
    ((feed *)ud)->frames++;
}

static int r_msg(void *ud, int op, int rsv1, const char *data, size_t len)
{
    ((feed *)ud)->frames++;
    return 0;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
}

int main(int argc, char **argv)
{
    size_t size = 100;
    double seconds = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--size") == 0)
            size = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[i + 1], NULL);
    }
    if (size > 0xffff) {
        fprintf(stderr, "--size must be at most 65535\n");
        return 2;
    }
    /* ~1 MiB of identical masked text frames */
    size_t hlen = size < 126 ? 6 : 8;
    size_t nframes = (1 << 20) / (hlen + size) + 1;
    size_t blen = nframes * (hlen + size);
    uint8_t *buf = rta_xmalloc(blen);
    for (size_t k = 0; k < nframes; k++) {
        uint8_t *p = buf + k * (hlen + size);
        p[0] = 0x81;
        if (size < 126) {
            p[1] = (uint8_t)(0x80 | size);
        } else {
            p[1] = 0x80 | 126;
            p[2] = (uint8_t)(size >> 8);
            p[3] = (uint8_t)size;
        }
        uint8_t *mask = p + hlen - 4;
        mask[0] = 0x12;
        mask[1] = 0x34;
        mask[2] = 0x56;
        mask[3] = 0x78;
        for (size_t i = 0; i < size; i++)
            p[hlen + i] = (uint8_t)('a' + i % 26) ^ mask[i & 3];
    }

    /* idle cost of one parser of each kind */
    struct wslay_event_callbacks cbs = {
        .recv_callback = w_recv, .send_callback = w_send, .on_msg_recv_callback = w_msg};
    feed f = {0};
    size_t h0 = heap_in_use();
    wslay_event_context_ptr ctx;
    if (wslay_event_context_server_init(&ctx, &cbs, &f) != 0)
        return 1;
    size_t wslay_idle = heap_in_use() - h0;
    wslay_event_config_set_max_recv_msg_length(ctx, 1 << 20);

    double results[2];
    for (int impl = 0; impl < 2; impl++) {
        rta_ws__rx rx;
        rta_ws__rx_init(&rx, 1 << 20, 1 << 20, 0);
        rta_ws__rx_cb rcb = {.on_message = r_msg};
        f.frames = 0;
        uint64_t t0 = rta_mono_ns(), t1;
        do {
            for (size_t off = 0; off < blen; off += READ_CHUNK) {
                size_t n = blen - off < READ_CHUNK ? blen - off : READ_CHUNK;
                if (impl == 0) {
                    f.in = buf + off;
                    f.in_len = n;
                    if (wslay_event_recv(ctx) != 0) {
                        fprintf(stderr, "wslay failed\n");
                        return 1;
                    }
                } else if (rta_ws__rx_feed(&rx, buf + off, n, &rcb, &f) != 0) {
                    fprintf(stderr, "rx failed\n");
                    return 1;
                }
            }
            t1 = rta_mono_ns();
        } while ((double)(t1 - t0) < seconds * 1e9);
        results[impl] = (double)f.frames / ((double)(t1 - t0) / 1e9);
        rta_ws__rx_free(&rx);
    }
    wslay_event_context_free(ctx);
    printf("payload %zu B masked text frames, %zu KiB reads\n", size, (size_t)READ_CHUNK / 1024);
    printf("wslay 1.1.1 event API : %12.0f frames/s  (%.0f MB/s)  idle context %zu B heap\n",
           results[0], results[0] * (double)(hlen + size) / 1e6, wslay_idle);
    printf("rta rx (src/ws/rx.c)  : %12.0f frames/s  (%.0f MB/s)  idle parser %zu B (in rta_ws)\n",
           results[1], results[1] * (double)(hlen + size) / 1e6, sizeof(rta_ws__rx));
    free(buf);
    return 0;
}
