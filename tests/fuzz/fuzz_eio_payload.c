/* libFuzzer target: Engine.IO polling payload and single-packet decoding, plus the
 * decode -> encode -> decode round trip (which must reproduce the same packets). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rta/eio.h"

#define MAX_PACKETS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rta_eio_limits lim = {.max_packets = MAX_PACKETS, .max_bytes = 1 << 16};
    rta_eio_packet pkts[MAX_PACKETS], again[MAX_PACKETS];
    size_t n = 0, m = 0;
    char *body = malloc(size + 1);
    rta_dbuf out;

    if (body == NULL)
        return 0;
    rta_dbuf_init(&out, 1 << 18);

    /* single packet (WebSocket text frame form) */
    memcpy(body, data, size);
    rta_eio_packet one;
    if (rta_eio_decode_packet(body, size, &one) == 0 && one.len > 0 && one.data == NULL)
        abort();

    /* payload */
    memcpy(body, data, size);
    int rc = rta_eio_decode_payload(body, size, &lim, pkts, MAX_PACKETS, &n);
    if (rc != 0) {
        if (n != 0)
            abort();
        goto out;
    }
    if (n == 0 || n > MAX_PACKETS)
        abort();
    if (rta_eio_encode_payload(&out, pkts, n) != 0)
        goto out; /* only possible when the output limit is hit */
    const rta_eio_limits lim2 = {.max_packets = MAX_PACKETS, .max_bytes = out.max};
    if (rta_eio_decode_payload(out.data, out.len, &lim2, again, MAX_PACKETS, &m) != 0 || m != n)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (again[i].type != pkts[i].type || again[i].binary != pkts[i].binary ||
            again[i].len != pkts[i].len ||
            (pkts[i].len && memcmp(again[i].data, pkts[i].data, pkts[i].len) != 0))
            abort();
    }
out:
    rta_dbuf_free(&out);
    free(body);
    return 0;
}
