/*
 * Socket.IO v5 packet codec (default JSON parser): decodes the text carried by an
 * Engine.IO message into type / namespace / ack id / JSON payload, validates the payload
 * shape per packet type, reassembles binary attachments into placeholders, and encodes
 * packets back (extracting blobs as attachments). JSON goes through jansson; nesting depth
 * is checked by a pre-scan before jansson sees the input. Namespaces, rooms and sessions
 * live elsewhere; this file only knows the wire format.
 */
#include "rta/sio.h"

#include <string.h>

#define BLOB_KEY "_rta_binary"
#define ENCODE_MAX_DEPTH 64 /* guard for application-built payloads */

static const char *const reserved_events[] = {"connect",       "connect_error", "disconnect",
                                              "disconnecting", "newListener",   "removeListener"};

const char *rta_sio_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case RTA_SIO_ERR_EMPTY:
        return "empty packet";
    case RTA_SIO_ERR_TYPE:
        return "unknown packet type";
    case RTA_SIO_ERR_ATTACHMENTS:
        return "illegal attachments";
    case RTA_SIO_ERR_NAMESPACE:
        return "invalid namespace";
    case RTA_SIO_ERR_ACK_ID:
        return "invalid ack id";
    case RTA_SIO_ERR_JSON:
        return "invalid JSON payload";
    case RTA_SIO_ERR_DEPTH:
        return "payload nested too deeply";
    case RTA_SIO_ERR_PAYLOAD:
        return "invalid payload for packet type";
    case RTA_SIO_ERR_PLACEHOLDER:
        return "illegal attachment placeholder";
    case RTA_SIO_ERR_STATE:
        return "unexpected binary attachment";
    case RTA_SIO_ERR_TOO_LARGE:
        return "output too large";
    case RTA_SIO_ERR_ARG:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

void rta_sio_packet_init(rta_sio_packet *p, rta_sio_type type)
{
    memset(p, 0, sizeof *p);
    p->type = type;
    p->nsp[0] = '/';
    p->id = -1;
}

void rta_sio_packet_clear(rta_sio_packet *p)
{
    json_decref(p->data);
    json_decref(p->pending_);
    p->data = NULL;
    p->pending_ = NULL;
    p->attachments = 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_binary_type(int t)
{
    return t == RTA_SIO_BINARY_EVENT || t == RTA_SIO_BINARY_ACK;
}

/* Deepest array/object nesting of a JSON text, stopping early once over max. Strings
 * (with escapes) are skipped so brackets inside them do not count. */
static int json_depth_exceeds(const char *s, size_t len, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return 1;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

static long count_blobs(const json_t *j, int depth);

static bool is_reserved_event(const char *name)
{
    for (size_t i = 0; i < sizeof reserved_events / sizeof reserved_events[0]; i++)
        if (strcmp(name, reserved_events[i]) == 0)
            return true;
    return false;
}

/* Checks a payload against its packet type (data NULL: no payload). */
static int payload_valid(int type, const json_t *data)
{
    switch (type) {
    case RTA_SIO_CONNECT:
        return data == NULL || json_is_object(data);
    case RTA_SIO_DISCONNECT:
        return data == NULL;
    case RTA_SIO_CONNECT_ERROR:
        return data == NULL || json_is_object(data) || json_is_string(data);
    case RTA_SIO_EVENT:
    case RTA_SIO_BINARY_EVENT: {
        if (!json_is_array(data) || json_array_size(data) == 0)
            return 0;
        const json_t *name = json_array_get(data, 0);
        return json_is_string(name) && !is_reserved_event(json_string_value(name));
    }
    case RTA_SIO_ACK:
    case RTA_SIO_BINARY_ACK:
        return json_is_array(data);
    default:
        return 0;
    }
}

int rta_sio_decode(const char *text, size_t len, const rta_sio_limits *lim, rta_sio_packet *out)
{
    int max_depth = lim ? lim->max_depth : RTA_SIO_DEFAULT_MAX_DEPTH;
    size_t max_att = lim ? lim->max_attachments : RTA_SIO_DEFAULT_MAX_ATTACHMENTS;
    size_t i = 1;

    rta_sio_packet_init(out, RTA_SIO_CONNECT);
    if (text == NULL || len == 0)
        return RTA_SIO_ERR_EMPTY;
    if (text[0] < '0' || text[0] > '6')
        return RTA_SIO_ERR_TYPE;
    out->type = (rta_sio_type)(text[0] - '0');

    if (is_binary_type(out->type)) {
        size_t n = 0, start = i;
        while (i < len && is_digit(text[i])) {
            n = n * 10 + (size_t)(text[i] - '0');
            if (n > max_att)
                return RTA_SIO_ERR_ATTACHMENTS;
            i++;
        }
        if (i == start || i >= len || text[i] != '-')
            return RTA_SIO_ERR_ATTACHMENTS;
        i++;
        out->attachments = n;
    }

    if (i < len && text[i] == '/') {
        size_t start = i;
        while (i < len && text[i] != ',')
            i++;
        size_t nlen = i - start;
        if (nlen > RTA_SIO_NSP_MAX || memchr(text + start, '\0', nlen) != NULL)
            return RTA_SIO_ERR_NAMESPACE;
        memcpy(out->nsp, text + start, nlen);
        out->nsp[nlen] = '\0';
        if (i < len)
            i++; /* the comma */
    }

    if (i < len && is_digit(text[i])) {
        int64_t id = 0;
        while (i < len && is_digit(text[i])) {
            id = id * 10 + (text[i] - '0');
            if (id > RTA_SIO_ACK_ID_MAX)
                return RTA_SIO_ERR_ACK_ID;
            i++;
        }
        out->id = id;
    }

    if (i < len) {
        if (json_depth_exceeds(text + i, len - i, max_depth))
            return RTA_SIO_ERR_DEPTH;
        json_error_t jerr;
        out->data = json_loadb(text + i, len - i, JSON_DECODE_ANY, &jerr);
        if (out->data == NULL)
            return RTA_SIO_ERR_JSON;
        /* a peer must not be able to forge our in-memory blob representation */
        long forged = count_blobs(out->data, 0);
        if (forged != 0) {
            rta_sio_packet_clear(out);
            return forged < 0 ? RTA_SIO_ERR_DEPTH : RTA_SIO_ERR_PAYLOAD;
        }
    }
    if (!payload_valid(out->type, out->data)) {
        rta_sio_packet_clear(out);
        return RTA_SIO_ERR_PAYLOAD;
    }
    if (out->attachments > 0 && (out->pending_ = json_array()) == NULL) {
        rta_sio_packet_clear(out);
        return RTA_SIO_ERR_TOO_LARGE;
    }
    return 0;
}

bool rta_sio_needs_attachments(const rta_sio_packet *p)
{
    return p->pending_ != NULL && json_array_size(p->pending_) < p->attachments;
}

/* --- blobs and placeholders ----------------------------------------------------------- */

json_t *rta_sio_blob_new(const void *data, size_t len)
{
    json_t *bytes = json_stringn_nocheck(len ? data : "", len);
    if (bytes == NULL)
        return NULL;
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(o, BLOB_KEY, bytes) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

bool rta_sio_is_blob(const json_t *j)
{
    return json_is_object(j) && json_object_size(j) == 1 &&
           json_is_string(json_object_get(j, BLOB_KEY));
}

int rta_sio_blob_get(const json_t *j, const void **data, size_t *len)
{
    if (!rta_sio_is_blob(j))
        return -1;
    const json_t *s = json_object_get(j, BLOB_KEY);
    *data = json_string_value(s);
    *len = json_string_length(s);
    return 0;
}

/* If j is a {"_placeholder":true,...} object: 1 and *num its index (or -1 when the index
 * is not a non-negative integer); 0 when j is something else. */
static int placeholder_index(const json_t *j, long long *num)
{
    if (!json_is_object(j) || !json_is_true(json_object_get(j, "_placeholder")))
        return 0;
    const json_t *n = json_object_get(j, "num");
    *num = -1;
    if (json_is_integer(n) && json_integer_value(n) >= 0)
        *num = (long long)json_integer_value(n);
    else if (json_is_real(n) && json_real_value(n) >= 0 && json_real_value(n) < 1e9 &&
             json_real_value(n) == (double)(long long)json_real_value(n))
        *num = (long long)json_real_value(n);
    return 1;
}

/* Replaces placeholders below j by blobs from bins; 0 or RTA_SIO_ERR_PLACEHOLDER. Depth is
 * bounded by the decode-time depth check. */
static int substitute(json_t *j, json_t *bins)
{
    long long num;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            if (placeholder_index(v, &num)) {
                if (num < 0 || (size_t)num >= json_array_size(bins))
                    return RTA_SIO_ERR_PLACEHOLDER;
                json_array_set(j, i, json_array_get(bins, (size_t)num));
            } else if (substitute(v, bins) != 0) {
                return RTA_SIO_ERR_PLACEHOLDER;
            }
        }
    } else if (json_is_object(j)) {
        for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
            json_t *v = json_object_iter_value(it);
            if (placeholder_index(v, &num)) {
                if (num < 0 || (size_t)num >= json_array_size(bins))
                    return RTA_SIO_ERR_PLACEHOLDER;
                json_object_iter_set(j, it, json_array_get(bins, (size_t)num));
            } else if (substitute(v, bins) != 0) {
                return RTA_SIO_ERR_PLACEHOLDER;
            }
        }
    }
    return 0;
}

int rta_sio_attach(rta_sio_packet *p, const void *data, size_t len)
{
    if (!rta_sio_needs_attachments(p))
        return RTA_SIO_ERR_STATE;
    json_t *blob = rta_sio_blob_new(data, len);
    if (blob == NULL || json_array_append_new(p->pending_, blob) != 0)
        return RTA_SIO_ERR_TOO_LARGE;
    if (json_array_size(p->pending_) < p->attachments)
        return 1;
    int rc = substitute(p->data, p->pending_);
    json_decref(p->pending_);
    p->pending_ = NULL;
    return rc;
}

/* --- encoding ------------------------------------------------------------------------- */

/* Number of blobs below j, or -1 when deeper than ENCODE_MAX_DEPTH. */
static long count_blobs(const json_t *j, int depth)
{
    long n = 0, sub;
    if (depth > ENCODE_MAX_DEPTH)
        return -1;
    if (rta_sio_is_blob(j))
        return 1;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            if ((sub = count_blobs(json_array_get(j, i), depth + 1)) < 0)
                return -1;
            n += sub;
        }
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if ((sub = count_blobs(v, depth + 1)) < 0)
                return -1;
            n += sub;
        }
    }
    return n;
}

/* A copy of j where blobs became placeholders (their bytes listed in att); scalars and
 * blob-free subtrees are shared, not copied. NULL on allocation failure. */
static json_t *strip_blobs(const json_t *j, rta_sio_bin *att, size_t *n)
{
    json_t *mj = (json_t *)j; /* jansson's refcount API is not const-aware */
    if (rta_sio_is_blob(j)) {
        rta_sio_blob_get(j, &att[*n].data, &att[*n].len);
        return json_pack("{s:b,s:I}", "_placeholder", 1, "num", (json_int_t)(*n)++);
    }
    if (count_blobs(j, 0) == 0)
        return json_incref(mj);
    if (json_is_array(j)) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < json_array_size(j); i++) {
            json_t *c = strip_blobs(json_array_get(j, i), att, n);
            if (c == NULL || json_array_append_new(a, c) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(mj, k, v)
    {
        json_t *c = o ? strip_blobs(v, att, n) : NULL;
        if (c == NULL || json_object_set_new(o, k, c) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static int dump_cb(const char *buffer, size_t size, void *ud)
{
    return rta_dbuf_append(ud, buffer, size);
}

static int dump_json(rta_dbuf *out, const json_t *j)
{
    return json_dump_callback(j, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY);
}

static bool nsp_valid(const char *nsp)
{
    size_t n = nsp ? strnlen(nsp, RTA_SIO_NSP_MAX + 1) : 0;
    return n > 0 && n <= RTA_SIO_NSP_MAX && nsp[0] == '/' && strchr(nsp, ',') == NULL;
}

static void restore(rta_dbuf *out, size_t len)
{
    out->len = len;
    if (out->data)
        out->data[len] = '\0';
}

/* Appends "<nsp>," (unless main namespace) and the ack id. */
static int put_nsp_id(rta_dbuf *out, const char *nsp, int64_t id)
{
    if (strcmp(nsp, "/") != 0 && rta_dbuf_printf(out, "%s,", nsp) != 0)
        return -1;
    if (id >= 0 && rta_dbuf_printf(out, "%lld", (long long)id) != 0)
        return -1;
    return 0;
}

int rta_sio_encode(const rta_sio_packet *p, rta_dbuf *out, rta_sio_bin *att, size_t att_cap,
                   size_t *att_count)
{
    size_t start = out->len;
    size_t n = 0;
    json_t *stripped = NULL;
    int rc = RTA_SIO_ERR_ARG;
    int type = (int)p->type;

    if (att_count)
        *att_count = 0;
    if (type < RTA_SIO_CONNECT || type > RTA_SIO_BINARY_ACK || !nsp_valid(p->nsp) ||
        p->id > RTA_SIO_ACK_ID_MAX)
        return RTA_SIO_ERR_ARG;
    long blobs = p->data ? count_blobs(p->data, 0) : 0;
    if (blobs < 0)
        return RTA_SIO_ERR_ARG;
    if (blobs > 0) {
        if (type == RTA_SIO_EVENT)
            type = RTA_SIO_BINARY_EVENT;
        else if (type == RTA_SIO_ACK)
            type = RTA_SIO_BINARY_ACK;
        else if (!is_binary_type(type))
            return RTA_SIO_ERR_ARG;
        if (att == NULL || att_count == NULL || (size_t)blobs > att_cap)
            return RTA_SIO_ERR_TOO_LARGE;
    } else if (is_binary_type(type)) {
        type = type == RTA_SIO_BINARY_EVENT ? RTA_SIO_EVENT : RTA_SIO_ACK;
    }
    if (!payload_valid(type, p->data))
        return RTA_SIO_ERR_PAYLOAD;

    rc = RTA_SIO_ERR_TOO_LARGE;
    if (rta_dbuf_printf(out, "%d", type) != 0)
        goto out;
    if (blobs > 0 && rta_dbuf_printf(out, "%ld-", blobs) != 0)
        goto out;
    if (put_nsp_id(out, p->nsp, p->id) != 0)
        goto out;
    if (p->data) {
        const json_t *body = p->data;
        if (blobs > 0) {
            stripped = strip_blobs(p->data, att, &n);
            if (stripped == NULL)
                goto out;
            body = stripped;
        }
        if (dump_json(out, body) != 0)
            goto out;
    }
    rc = 0;
    if (att_count)
        *att_count = n;
out:
    json_decref(stripped);
    if (rc != 0)
        restore(out, start);
    return rc;
}

int rta_sio_encode_event(rta_dbuf *out, const char *nsp, const char *event, const json_t *args,
                         const char *offset, int64_t id)
{
    size_t start = out->len;
    int rc = RTA_SIO_ERR_ARG;
    json_t *name = NULL, *off = NULL;

    if (!nsp_valid(nsp) || event == NULL || is_reserved_event(event) || id > RTA_SIO_ACK_ID_MAX ||
        (args && !json_is_array(args)) || (args && count_blobs(args, 0) != 0))
        return RTA_SIO_ERR_ARG;
    name = json_string(event);
    off = offset ? json_string(offset) : NULL;
    if (name == NULL || (offset && off == NULL))
        goto out;

    rc = RTA_SIO_ERR_TOO_LARGE;
    if (rta_dbuf_append(out, "2", 1) != 0 || put_nsp_id(out, nsp, id) != 0 ||
        rta_dbuf_append(out, "[", 1) != 0 || dump_json(out, name) != 0)
        goto out;
    for (size_t i = 0; args && i < json_array_size(args); i++)
        if (rta_dbuf_append(out, ",", 1) != 0 || dump_json(out, json_array_get(args, i)) != 0)
            goto out;
    if (off && (rta_dbuf_append(out, ",", 1) != 0 || dump_json(out, off) != 0))
        goto out;
    if (rta_dbuf_append(out, "]", 1) != 0)
        goto out;
    rc = 0;
out:
    json_decref(name);
    json_decref(off);
    if (rc != 0)
        restore(out, start);
    return rc;
}

/* --- connection state recovery ------------------------------------------------------- */

json_t *rta_sio_connect_payload(const char *sid, const char *pid)
{
    if (sid == NULL)
        return NULL;
    if (pid)
        return json_pack("{s:s,s:s}", "sid", sid, "pid", pid);
    return json_pack("{s:s}", "sid", sid);
}

int rta_sio_recovery_fields(const json_t *auth, const char **pid, const char **offset)
{
    const json_t *p = json_object_get(auth, "pid");
    const json_t *o = json_object_get(auth, "offset");
    if (!json_is_string(p) || !json_is_string(o))
        return -1;
    *pid = json_string_value(p);
    *offset = json_string_value(o);
    return 0;
}
