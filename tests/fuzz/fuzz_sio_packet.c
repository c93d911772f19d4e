/* libFuzzer target: Socket.IO packet decoding. The input is split at the first NUL byte:
 * the part before is the packet text, the rest is cut into attachments of up to 8 bytes.
 * Decoded packets are attached, re-encoded and decoded again; the result must match. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rta/sio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rta_sio_limits lim = {.max_depth = 32, .max_attachments = 8};
    const uint8_t *nul = memchr(data, 0, size);
    size_t text_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *rest = nul ? nul + 1 : data + size;
    size_t rest_len = size - text_len - (nul ? 1 : 0);
    rta_sio_packet p, q;
    rta_dbuf out;
    rta_sio_bin att[8];
    size_t natt = 0;

    rta_dbuf_init(&out, 1 << 20);
    if (rta_sio_decode((const char *)data, text_len, &lim, &p) != 0) {
        if (p.data != NULL || p.pending_ != NULL)
            abort();
        goto done;
    }
    while (rta_sio_needs_attachments(&p)) {
        size_t chunk = rest_len < 8 ? rest_len : 8;
        int rc = rta_sio_attach(&p, rest, chunk);
        rest += chunk;
        rest_len -= chunk;
        if (rc < 0)
            goto out;
    }
    if (rta_sio_encode(&p, &out, att, 8, &natt) != 0)
        goto out; /* e.g. a namespace with ',' cannot be re-encoded */
    if (rta_sio_decode(out.data, out.len, &lim, &q) != 0)
        abort();
    if (q.nsp[0] != '/' || strcmp(q.nsp, p.nsp) != 0 || q.id != p.id)
        abort();
    for (size_t i = 0; i < natt; i++)
        if (rta_sio_attach(&q, att[i].data, att[i].len) < 0)
            abort();
    if (rta_sio_needs_attachments(&q))
        abort();
    if (!((p.data == NULL && q.data == NULL) || json_equal(p.data, q.data)))
        abort();
    rta_sio_packet_clear(&q);
out:
    rta_sio_packet_clear(&p);
done:
    rta_dbuf_free(&out);
    return 0;
}
