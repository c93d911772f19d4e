/*
 * ws_deflate_bench: bytes on the wire per realtime event with and without permessage-deflate
 * (RFC 7692, as rtad sends it: every message compressed on its own, server_no_context_takeover),
 * and the CPU cost of compressing one event (paid once per broadcast, not per subscriber).
 *
 * The events are /v1/realtime/ws tvl_change messages shaped like realtime.c's encode_event, with
 * varying protocols, chains and values. Usage: ws_deflate_bench [events] (default 20000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rta/util.h"
#include "rta/ws.h"

static const char *protocols[] = {"uniswap-v3", "aave-v3",    "lido",   "curve-dex",
                                  "makerdao",   "eigenlayer", "pendle", "morpho-blue"};
static const char *chains[] = {"ethereum", "arbitrum", "base", "optimism", "polygon", "bsc"};

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    if (n <= 0)
        n = 20000;
    unsigned seed = 12345;
    size_t plain_total = 0, deflated_total = 0, payload_total = 0;
    size_t not_smaller = 0;
    int64_t t0 = rta_now_us();
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        double prev = 1e8 + (double)(seed % 900000000u) + (seed % 1000) / 997.0;
        double cur = prev * (1.0 + ((double)(seed >> 8 & 0xff) - 128.0) / 4096.0);
        char uuid[40];
        rta_uuid_v7(uuid);
        char msg[1024];
        int len =
            snprintf(msg, sizeof msg,
                     "{\"type\":\"tvl_change\",\"data\":{\"protocol\":\"%s\",\"chain\":\"%s\","
                     "\"previousTvl\":%.17g,\"currentTvl\":%.17g,\"changePercent\":%.17g,"
                     "\"timestamp\":\"2025-11-27T15:%02d:%02d.%03dZ\",\"eventId\":\"%s\","
                     "\"offset\":%d,\"source\":\"ingest\"}}",
                     protocols[seed % 8], chains[(seed >> 4) % 6], prev, cur, (cur - prev) / prev,
                     i / 60 % 60, i % 60, i % 1000, uuid, 100000 + i);
        rta_rbuf *p = rta_ws_frame(RTA_WS_OP_TEXT, msg, (size_t)len);
        rta_rbuf *d = rta_ws_frame_deflated(RTA_WS_OP_TEXT, msg, (size_t)len);
        payload_total += (size_t)len;
        plain_total += p->len;
        deflated_total += d ? d->len : p->len; /* rta_ws_send_frames falls back to plain */
        if (d == NULL)
            not_smaller++;
        rta_rbuf_unref(p);
        if (d)
            rta_rbuf_unref(d);
    }
    int64_t us = rta_now_us() - t0;
    printf("events: %d (typical tvl_change on /v1/realtime/ws)\n", n);
    printf("payload bytes/event: %.1f\n", (double)payload_total / n);
    printf("plain frame bytes/event: %.1f\n", (double)plain_total / n);
    printf("deflated frame bytes/event: %.1f (%.1f%% of plain; %zu not smaller, sent plain)\n",
           (double)deflated_total / n, 100.0 * (double)deflated_total / (double)plain_total,
           not_smaller);
    printf("encode plain + deflated: %.2f us/event\n", (double)us / n);
    return 0;
}
