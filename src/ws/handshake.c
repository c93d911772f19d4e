/*
 * WebSocket opening handshake, server side (RFC 6455 section 4.2.1) and permessage-deflate
 * offer negotiation (RFC 7692 section 7.1). The HTTP layer hands in the request line facts
 * and a header lookup callback; this module says whether the request is a valid upgrade,
 * which header is wrong if not, computes Sec-WebSocket-Accept and picks the extension
 * parameters. Everything works on caller memory: nothing here allocates.
 */
#include "rta/ws_handshake.h"
#include "rta/buf.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_MAX 64 /* a valid key is 24 bytes; longer keys are rejected before hashing */

/* ---- small lexical helpers (RFC 9110 tokens, OWS, lists) ---------------------------- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

static bool eq_ci(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* True when the comma-separated list value contains token (ASCII case-insensitive). */
static bool list_has_token(const char *v, size_t len, const char *token)
{
    size_t i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        const char *el = v + start;
        size_t el_len = i - start;
        trim(&el, &el_len);
        if (eq_ci(el, el_len, token))
            return true;
        i++; /* skip the comma (or step past the end) */
    }
    return false;
}

static bool is_b64char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Sec-WebSocket-Key must be base64 of 16 bytes: 22 alphabet characters then "==". */
static bool key_is_valid(const char *k, size_t len)
{
    if (len != 24 || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64char((unsigned char)k[i]))
            return false;
    return true;
}

/* ---- handshake check ---------------------------------------------------------------- */

int rta_ws_accept_key(const char *key, size_t key_len, char accept[RTA_WS_ACCEPT_LEN + 1])
{
    char buf[WS_KEY_MAX + sizeof WS_GUID];
    if (key_len > WS_KEY_MAX)
        return -1;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, WS_GUID, sizeof WS_GUID - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(buf, key_len + sizeof WS_GUID - 1, md, &md_len, EVP_sha1(), NULL) != 1 ||
        md_len != 20)
        return -1;
    /* 20 bytes -> 28 base64 chars + NUL, exactly what accept holds */
    EVP_EncodeBlock((unsigned char *)accept, md, 20);
    accept[RTA_WS_ACCEPT_LEN] = '\0';
    return 0;
}

int rta_ws_handshake_check(const char *method, int http_major, int http_minor, rta_ws_header_fn get,
                           void *ud, char accept[RTA_WS_ACCEPT_LEN + 1])
{
    const char *v;
    size_t len = 0;

    if (method == NULL || strcmp(method, "GET") != 0)
        return RTA_WS_ERR_METHOD;
    if (http_major < 1 || (http_major == 1 && http_minor < 1))
        return RTA_WS_ERR_HTTP_VERSION;

    v = get(ud, "Host", &len);
    if (v)
        trim(&v, &len);
    if (v == NULL || len == 0)
        return RTA_WS_ERR_HOST;

    v = get(ud, "Upgrade", &len);
    if (v == NULL || !list_has_token(v, len, "websocket"))
        return RTA_WS_ERR_UPGRADE;

    v = get(ud, "Connection", &len);
    if (v == NULL || !list_has_token(v, len, "upgrade"))
        return RTA_WS_ERR_CONNECTION;

    v = get(ud, "Sec-WebSocket-Version", &len);
    if (v)
        trim(&v, &len);
    if (v == NULL || len != 2 || memcmp(v, "13", 2) != 0)
        return RTA_WS_ERR_VERSION;

    v = get(ud, "Sec-WebSocket-Key", &len);
    if (v)
        trim(&v, &len);
    if (v == NULL || !key_is_valid(v, len))
        return RTA_WS_ERR_KEY;

    if (rta_ws_accept_key(v, len, accept) != 0)
        return RTA_WS_ERR_INTERNAL;
    return RTA_WS_OK;
}

int rta_ws_handshake_status(int code)
{
    switch (code) {
    case RTA_WS_OK:
        return 101;
    case RTA_WS_ERR_VERSION:
        return 426;
    case RTA_WS_ERR_INTERNAL:
        return 500;
    default:
        return 400;
    }
}

const char *rta_ws_handshake_strerror(int code)
{
    switch (code) {
    case RTA_WS_OK:
        return "ok";
    case RTA_WS_ERR_METHOD:
        return "WebSocket upgrade requires the GET method";
    case RTA_WS_ERR_HTTP_VERSION:
        return "WebSocket upgrade requires HTTP/1.1 or later";
    case RTA_WS_ERR_HOST:
        return "missing Host header";
    case RTA_WS_ERR_UPGRADE:
        return "missing or invalid Upgrade header (expected \"websocket\")";
    case RTA_WS_ERR_CONNECTION:
        return "missing or invalid Connection header (expected \"Upgrade\")";
    case RTA_WS_ERR_VERSION:
        return "unsupported Sec-WebSocket-Version (expected 13)";
    case RTA_WS_ERR_KEY:
        return "missing or invalid Sec-WebSocket-Key (expected base64 of 16 bytes)";
    case RTA_WS_ERR_EXTENSIONS:
        return "malformed Sec-WebSocket-Extensions header";
    case RTA_WS_ERR_INTERNAL:
        return "internal error computing Sec-WebSocket-Accept";
    default:
        return "unknown WebSocket handshake error";
    }
}

const char *rta_ws_handshake_header(int code)
{
    switch (code) {
    case RTA_WS_ERR_HOST:
        return "Host";
    case RTA_WS_ERR_UPGRADE:
        return "Upgrade";
    case RTA_WS_ERR_CONNECTION:
        return "Connection";
    case RTA_WS_ERR_VERSION:
        return "Sec-WebSocket-Version";
    case RTA_WS_ERR_KEY:
        return "Sec-WebSocket-Key";
    case RTA_WS_ERR_EXTENSIONS:
        return "Sec-WebSocket-Extensions";
    default:
        return NULL;
    }
}

int rta_ws_handshake_response(rta_dbuf *out, const char *accept, const char *extensions)
{
    size_t start = out->len;
    if (rta_dbuf_printf(out,
                        "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: %s\r\n",
                        accept) == 0 &&
        (extensions == NULL || extensions[0] == '\0' ||
         rta_dbuf_printf(out, "Sec-WebSocket-Extensions: %s\r\n", extensions) == 0) &&
        rta_dbuf_puts(out, "\r\n") == 0)
        return 0;
    out->len = start; /* leave out as it was */
    if (out->data)
        out->data[start] = '\0';
    return -1;
}

/* ---- permessage-deflate ------------------------------------------------------------- */

void rta_ws_deflate_config_default(rta_ws_deflate_config *cfg)
{
    cfg->enabled = true;
    cfg->server_no_context_takeover = false;
    cfg->client_no_context_takeover = false;
    cfg->server_max_window_bits = 15;
    cfg->client_max_window_bits = 15;
}

/* One permessage-deflate offer as read from the header. */
typedef struct {
    bool valid; /* false once a parameter makes the offer unacceptable */
    bool snct, cnct;
    int sbits;      /* -1: absent */
    bool cbits_set; /* client_max_window_bits present (with or without a value) */
    int cbits;      /* -1: present without value */
} deflate_offer;

/* Parses a window-bits value "8".."15"; -1 when it is anything else. */
static int parse_bits(const char *v, size_t len)
{
    if (len == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

/* Applies one parameter (value NULL when absent) to an offer. */
static void offer_param(deflate_offer *o, const char *name, size_t name_len, const char *value,
                        size_t value_len)
{
    if (eq_ci(name, name_len, "server_no_context_takeover")) {
        if (o->snct || value)
            o->valid = false;
        o->snct = true;
    } else if (eq_ci(name, name_len, "client_no_context_takeover")) {
        if (o->cnct || value)
            o->valid = false;
        o->cnct = true;
    } else if (eq_ci(name, name_len, "server_max_window_bits")) {
        int b = value ? parse_bits(value, value_len) : -1;
        if (o->sbits != -1 || b < 0)
            o->valid = false;
        o->sbits = b;
    } else if (eq_ci(name, name_len, "client_max_window_bits")) {
        int b = value ? parse_bits(value, value_len) : -1;
        if (o->cbits_set || (value && b < 0))
            o->valid = false;
        o->cbits_set = true;
        o->cbits = b;
    } else {
        o->valid = false; /* unknown parameter: decline this offer */
    }
}

static int clamp_bits(int b)
{
    return b < 8 ? 8 : b > 15 ? 15 : b;
}

/* Decides on an offer; 1 and fills params/response when acceptable. */
static int offer_accept(const deflate_offer *o, const rta_ws_deflate_config *cfg,
                        rta_ws_deflate_params *p, char response[RTA_WS_EXT_RESPONSE_MAX])
{
    int cfg_sbits = clamp_bits(cfg->server_max_window_bits);
    int cfg_cbits = clamp_bits(cfg->client_max_window_bits);
    bool send_sbits, send_cbits;

    if (!o->valid)
        return 0;
    p->server_no_context_takeover = o->snct || cfg->server_no_context_takeover;
    p->client_no_context_takeover = o->cnct || cfg->client_no_context_takeover;
    if (o->sbits > 0) {
        p->server_max_window_bits = o->sbits < cfg_sbits ? o->sbits : cfg_sbits;
        send_sbits = true;
    } else {
        p->server_max_window_bits = cfg_sbits;
        send_sbits = cfg_sbits < 15;
    }
    if (o->cbits_set) {
        int offered = o->cbits > 0 ? o->cbits : 15;
        p->client_max_window_bits = offered < cfg_cbits ? offered : cfg_cbits;
        send_cbits = p->client_max_window_bits < 15;
    } else {
        if (cfg_cbits < 15)
            return 0; /* we may not limit a client that did not say it can be limited */
        p->client_max_window_bits = 15;
        send_cbits = false;
    }

    int n = snprintf(response, RTA_WS_EXT_RESPONSE_MAX, "permessage-deflate%s%s",
                     p->server_no_context_takeover ? "; server_no_context_takeover" : "",
                     p->client_no_context_takeover ? "; client_no_context_takeover" : "");
    if (send_sbits)
        n += snprintf(response + n, RTA_WS_EXT_RESPONSE_MAX - (size_t)n,
                      "; server_max_window_bits=%d", p->server_max_window_bits);
    if (send_cbits)
        snprintf(response + n, RTA_WS_EXT_RESPONSE_MAX - (size_t)n, "; client_max_window_bits=%d",
                 p->client_max_window_bits);
    return 1;
}

/* Reads a token at s[*i]; returns its length (0 when there is none). */
static size_t read_token(const char *s, size_t len, size_t *i)
{
    size_t start = *i;
    while (*i < len && is_tchar((unsigned char)s[*i]))
        (*i)++;
    return *i - start;
}

static void skip_ows(const char *s, size_t len, size_t *i)
{
    while (*i < len && is_ows(s[*i]))
        (*i)++;
}

static int negotiate(const char *value, size_t len, const rta_ws_deflate_config *cfg,
                     rta_ws_deflate_params *params, char response[RTA_WS_EXT_RESPONSE_MAX])
{
    int accepted = 0;
    size_t i = 0;

    response[0] = '\0';
    if (value == NULL)
        return 0;
    while (i < len) {
        /* list element: skip empty elements and separators */
        skip_ows(value, len, &i);
        if (i < len && value[i] == ',') {
            i++;
            continue;
        }
        if (i >= len)
            break;
        const char *name = value + i;
        size_t name_len = read_token(value, len, &i);
        if (name_len == 0)
            return RTA_WS_ERR_EXTENSIONS;
        bool is_pmd = eq_ci(name, name_len, "permessage-deflate");
        deflate_offer o = {.valid = true, .sbits = -1, .cbits = -1};

        skip_ows(value, len, &i);
        while (i < len && value[i] == ';') {
            i++;
            skip_ows(value, len, &i);
            const char *pname = value + i;
            size_t pname_len = read_token(value, len, &i);
            if (pname_len == 0)
                return RTA_WS_ERR_EXTENSIONS;
            skip_ows(value, len, &i);
            const char *pval = NULL;
            size_t pval_len = 0;
            char qbuf[8]; /* unescaped quoted value; longer ones cannot be valid anyway */
            if (i < len && value[i] == '=') {
                i++;
                skip_ows(value, len, &i);
                if (i < len && value[i] == '"') {
                    bool fits = true;
                    i++;
                    for (;;) {
                        if (i >= len)
                            return RTA_WS_ERR_EXTENSIONS; /* unterminated quoted-string */
                        char c = value[i++];
                        if (c == '"')
                            break;
                        if (c == '\\') {
                            if (i >= len)
                                return RTA_WS_ERR_EXTENSIONS;
                            c = value[i++];
                        }
                        if (pval_len < sizeof qbuf)
                            qbuf[pval_len] = c;
                        else
                            fits = false;
                        pval_len++;
                    }
                    pval = qbuf;
                    if (!fits) {
                        pval_len = 0; /* an empty value is invalid for every parameter */
                        o.valid = false;
                    }
                } else {
                    pval = value + i;
                    pval_len = read_token(value, len, &i);
                    if (pval_len == 0)
                        return RTA_WS_ERR_EXTENSIONS;
                }
                skip_ows(value, len, &i);
            }
            if (is_pmd)
                offer_param(&o, pname, pname_len, pval, pval_len);
        }
        if (i < len && value[i] != ',')
            return RTA_WS_ERR_EXTENSIONS;
        if (is_pmd && !accepted && cfg && cfg->enabled)
            accepted = offer_accept(&o, cfg, params, response);
        /* keep parsing: a malformed tail makes the whole header invalid */
    }
    return accepted;
}

int rta_ws_deflate_negotiate(const char *value, size_t len, const rta_ws_deflate_config *cfg,
                             rta_ws_deflate_params *params, char response[RTA_WS_EXT_RESPONSE_MAX])
{
    int rc = negotiate(value, len, cfg, params, response);
    if (rc != 1) /* an offer accepted before a malformed tail does not count */
        response[0] = '\0';
    return rc;
}
