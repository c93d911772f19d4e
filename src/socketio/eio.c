/*
 * Engine.IO v4 packet codec: the type-digit text form used in WebSocket frames, raw binary
 * frames, and the '\x1e'-separated long-polling payload with "b<base64>" binary packets.
 * Also the open (handshake) packet and session id generation. Decoding is in place and
 * bounded by the caller's limits; encoding appends to a bounded rta_dbuf. The session
 * state machine (heartbeat, upgrade, polling requests) lives elsewhere and uses this.
 */
#include "rta/eio.h"
#include "rta/buf.h"
#include "rta/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const char *rta_eio_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case RTA_EIO_ERR_EMPTY:
        return "empty packet";
    case RTA_EIO_ERR_TYPE:
        return "invalid packet type";
    case RTA_EIO_ERR_BASE64:
        return "invalid base64 in binary packet";
    case RTA_EIO_ERR_TOO_MANY:
        return "too many packets in payload";
    case RTA_EIO_ERR_TOO_LARGE:
        return "payload too large";
    case RTA_EIO_ERR_ARG:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

const char *rta_eio_type_name(int type)
{
    static const char *const names[] = {"open",    "close",   "ping", "pong",
                                        "message", "upgrade", "noop"};
    return type >= 0 && type <= RTA_EIO_NOOP ? names[type] : "unknown";
}

/* Value of a base64 character, -1 when not in the standard alphabet. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long rta_eio_base64_decode(const char *in, size_t len, unsigned char *out)
{
    /* strip up to two '=' of padding; then the length must be a whole number of groups
     * (padded input) or leave 2 or 3 characters for the last group (unpadded input) */
    size_t pad = 0;
    while (pad < 2 && len > 0 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            /* o < i always holds here, so decoding over the input is safe */
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

int rta_eio_base64_append(rta_dbuf *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t olen = (len + 2) / 3 * 4;
    size_t start = out->len;
    if (olen < len || olen > out->max - out->len)
        return RTA_EIO_ERR_TOO_LARGE;
    char grp[4];
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t rem = len - i;
        if (rem > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (rem > 2)
            v |= p[i + 2];
        grp[0] = b64_alphabet[(v >> 18) & 63];
        grp[1] = b64_alphabet[(v >> 12) & 63];
        grp[2] = rem > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
        grp[3] = rem > 2 ? b64_alphabet[v & 63] : '=';
        if (rta_dbuf_append(out, grp, 4) != 0) {
            out->len = start; /* cannot happen after the size check; stay atomic anyway */
            if (out->data)
                out->data[start] = '\0';
            return RTA_EIO_ERR_TOO_LARGE;
        }
    }
    return 0;
}

int rta_eio_decode_packet(char *buf, size_t len, rta_eio_packet *out)
{
    if (len == 0)
        return RTA_EIO_ERR_EMPTY;
    char t = buf[0];
    if (t == 'b') {
        long n = rta_eio_base64_decode(buf + 1, len - 1, (unsigned char *)buf + 1);
        if (n < 0)
            return RTA_EIO_ERR_BASE64;
        out->type = RTA_EIO_MESSAGE;
        out->binary = true;
        out->data = n > 0 ? buf + 1 : NULL;
        out->len = (size_t)n;
        return 0;
    }
    if (t < '0' || t > '6')
        return RTA_EIO_ERR_TYPE;
    out->type = (rta_eio_type)(t - '0');
    out->binary = false;
    out->data = len > 1 ? buf + 1 : NULL;
    out->len = len - 1;
    return 0;
}

void rta_eio_decode_binary(const void *buf, size_t len, rta_eio_packet *out)
{
    out->type = RTA_EIO_MESSAGE;
    out->binary = true;
    out->data = len > 0 ? buf : NULL;
    out->len = len;
}

int rta_eio_decode_payload(char *body, size_t len, const rta_eio_limits *lim, rta_eio_packet *out,
                           size_t out_cap, size_t *count)
{
    size_t max = lim && lim->max_packets < out_cap ? lim->max_packets : out_cap;
    size_t n = 0;
    int rc = 0;

    *count = 0;
    if (body == NULL && len > 0)
        return RTA_EIO_ERR_ARG;
    if (lim && len > lim->max_bytes)
        return RTA_EIO_ERR_TOO_LARGE;
    /* count first, so an over-long payload is refused before anything is decoded */
    size_t elems = 1;
    for (size_t i = 0; i < len; i++)
        if (body[i] == RTA_EIO_SEPARATOR)
            elems++;
    if (elems > max)
        return RTA_EIO_ERR_TOO_MANY;

    size_t start = 0;
    for (;;) {
        char *sep = len > start ? memchr(body + start, RTA_EIO_SEPARATOR, len - start) : NULL;
        size_t end = sep ? (size_t)(sep - body) : len;
        rc = rta_eio_decode_packet(body + start, end - start, &out[n]);
        if (rc != 0)
            return rc;
        n++;
        if (!sep)
            break;
        start = end + 1;
    }
    *count = n;
    return 0;
}

int rta_eio_encode_packet(rta_dbuf *out, const rta_eio_packet *p)
{
    size_t start = out->len;
    int rc;

    if (p == NULL || (int)p->type < RTA_EIO_OPEN || p->type > RTA_EIO_NOOP ||
        (p->len > 0 && p->data == NULL))
        return RTA_EIO_ERR_ARG;
    if (p->binary) {
        if (p->type != RTA_EIO_MESSAGE)
            return RTA_EIO_ERR_ARG;
        if (rta_dbuf_append(out, "b", 1) != 0)
            return RTA_EIO_ERR_TOO_LARGE;
        rc = rta_eio_base64_append(out, p->data, p->len);
    } else {
        char t = (char)('0' + p->type);
        rc = rta_dbuf_append(out, &t, 1) == 0 && rta_dbuf_append(out, p->data, p->len) == 0
                 ? 0
                 : RTA_EIO_ERR_TOO_LARGE;
    }
    if (rc != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

int rta_eio_encode_payload(rta_dbuf *out, const rta_eio_packet *pkts, size_t n)
{
    size_t start = out->len;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (out->len > 0 && rta_dbuf_append(out, "\x1e", 1) != 0)
            rc = RTA_EIO_ERR_TOO_LARGE;
        else
            rc = rta_eio_encode_packet(out, &pkts[i]);
    }
    if (rc != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

int rta_eio_encode_open(rta_dbuf *out, const char *sid, bool upgrade_websocket,
                        unsigned ping_interval_ms, unsigned ping_timeout_ms, size_t max_payload)
{
    int rc = RTA_EIO_ERR_TOO_LARGE;
    char *text = NULL;

    if (sid == NULL)
        return RTA_EIO_ERR_ARG;
    json_t *o = json_pack("{s:s,s:[],s:I,s:I,s:I}", "sid", sid, "upgrades", "pingInterval",
                          (json_int_t)ping_interval_ms, "pingTimeout", (json_int_t)ping_timeout_ms,
                          "maxPayload", (json_int_t)max_payload);
    if (o == NULL)
        return RTA_EIO_ERR_ARG; /* sid not UTF-8 */
    if (upgrade_websocket)
        json_array_append_new(json_object_get(o, "upgrades"), json_string("websocket"));
    text = json_dumps(o, JSON_COMPACT);
    if (text == NULL)
        goto out;
    size_t start = out->len;
    if (rta_dbuf_append(out, "0", 1) == 0 && rta_dbuf_puts(out, text) == 0) {
        rc = 0;
    } else {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
out:
    free(text);
    json_decref(o);
    return rc;
}

int rta_eio_sid_generate(char out[RTA_EIO_SID_LEN + 1])
{
    static const char url_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[15];
    if (rta_random_bytes(raw, sizeof raw) != 0)
        return -1;
    for (size_t i = 0, o = 0; i < sizeof raw; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        out[o++] = url_alphabet[(v >> 18) & 63];
        out[o++] = url_alphabet[(v >> 12) & 63];
        out[o++] = url_alphabet[(v >> 6) & 63];
        out[o++] = url_alphabet[v & 63];
    }
    out[RTA_EIO_SID_LEN] = '\0';
    return 0;
}
