/* libFuzzer target: WebSocket upgrade validation and permessage-deflate negotiation.
 * The input is read as "Name: value" lines (headers); the Sec-WebSocket-Extensions value
 * and, separately, the whole input are also fed to the extension negotiator. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rta/ws_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const char *buf;
    size_t len;
} input;

static const char *lookup(void *ud, const char *name, size_t *len)
{
    const input *in = ud;
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i < in->len) {
        const char *line = in->buf + i;
        const char *nl = memchr(line, '\n', in->len - i);
        size_t llen = nl ? (size_t)(nl - line) : in->len - i;
        if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            *len = llen - nlen - 1;
            return line + nlen + 1;
        }
        i += llen + 1;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {(const char *)data, size};
    char accept[RTA_WS_ACCEPT_LEN + 1];
    int rc = rta_ws_handshake_check("GET", 1, 1, lookup, &in, accept);
    if (rc == RTA_WS_OK && strlen(accept) != RTA_WS_ACCEPT_LEN)
        abort();
    if (rc != RTA_WS_OK && rta_ws_handshake_strerror(rc) == NULL)
        abort();

    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params params;
    char resp[RTA_WS_EXT_RESPONSE_MAX];
    size_t elen = 0;
    const char *ext = lookup(&in, "Sec-WebSocket-Extensions", &elen);
    rc = rta_ws_deflate_negotiate(ext, elen, &cfg, &params, resp);
    if (rc == 1 && strncmp(resp, "permessage-deflate", 18) != 0)
        abort();

    /* a restrictive config over the raw input */
    cfg.client_max_window_bits = 9;
    cfg.server_max_window_bits = 10;
    cfg.server_no_context_takeover = true;
    rc = rta_ws_deflate_negotiate((const char *)data, size, &cfg, &params, resp);
    if (rc == 1 && (params.client_max_window_bits > 9 || params.server_max_window_bits > 10 ||
                    !params.server_no_context_takeover))
        abort();
    if (rc != 1 && resp[0] != '\0')
        abort();
    return 0;
}
