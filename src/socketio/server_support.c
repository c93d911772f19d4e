/*
 * Pure helpers of the Engine.IO / Socket.IO server: request verification with the reference
 * server's error codes, and the outgoing packet queue that long-polling answers drain as one
 * '\x1e'-joined payload. No loop, sockets or sessions here (see server_internal.h).
 */
#include "socketio/server_internal.h"

#include <stdlib.h>
#include <string.h>

#include "rta/eio.h"
#include "rta/util.h"

const char *rta_sio__error_message(int code)
{
    switch (code) {
    case RTA_SIO__ERR_UNKNOWN_TRANSPORT:
        return "Transport unknown";
    case RTA_SIO__ERR_UNKNOWN_SID:
        return "Session ID unknown";
    case RTA_SIO__ERR_BAD_HANDSHAKE_METHOD:
        return "Bad handshake method";
    case RTA_SIO__ERR_BAD_REQUEST:
        return "Bad request";
    case RTA_SIO__ERR_FORBIDDEN:
        return "Forbidden";
    case RTA_SIO__ERR_UNSUPPORTED_PROTOCOL_VERSION:
        return "Unsupported protocol version";
    default:
        return "Unknown error";
    }
}

const char *rta_sio__query_raw(const char *query, const char *name, char *buf, size_t buflen)
{
    size_t nlen = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg >= nlen && strncmp(p, name, nlen) == 0 && (seg == nlen || p[nlen] == '=')) {
            size_t vlen = seg == nlen ? 0 : seg - nlen - 1;
            if (vlen >= buflen)
                return NULL;
            memcpy(buf, p + seg - vlen, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

int rta_sio__verify(const char *method, const char *query, int is_upgrade,
                    rta_sio__lookup_fn lookup, void *ud, rta_sio__reqinfo *out)
{
    char tmp[32];
    memset(out, 0, sizeof *out);
    const char *t = rta_sio__query_raw(query, "transport", tmp, sizeof tmp);
    if (t && strcmp(t, "polling") == 0)
        out->transport = RTA_SIO__POLLING;
    else if (t && strcmp(t, "websocket") == 0)
        out->transport = RTA_SIO__WEBSOCKET;
    else
        return RTA_SIO__ERR_UNKNOWN_TRANSPORT;

    const char *sid = rta_sio__query_raw(query, "sid", out->sid, sizeof out->sid);
    if (sid != NULL && sid[0] != '\0') {
        out->has_sid = 1;
        int cur = lookup ? lookup(ud, out->sid) : -1;
        if (cur < 0)
            return RTA_SIO__ERR_UNKNOWN_SID;
        if (!is_upgrade && cur != out->transport)
            return RTA_SIO__ERR_BAD_REQUEST;
        return -1;
    }
    if (query && strstr(query, "sid=") != NULL && sid == NULL)
        return RTA_SIO__ERR_UNKNOWN_SID; /* a sid too long to be ours */
    out->sid[0] = '\0';
    if (strcmp(method ? method : "", "GET") != 0)
        return RTA_SIO__ERR_BAD_HANDSHAKE_METHOD;
    if (out->transport == RTA_SIO__WEBSOCKET && !is_upgrade)
        return RTA_SIO__ERR_BAD_REQUEST;
    const char *eio = rta_sio__query_raw(query, "EIO", tmp, sizeof tmp);
    if (eio == NULL || strcmp(eio, "4") != 0)
        return RTA_SIO__ERR_UNSUPPORTED_PROTOCOL_VERSION;
    return -1;
}

/* ---- outgoing queue ---- */

void rta_sio__outq_init(rta_sio__outq *q)
{
    memset(q, 0, sizeof *q);
}

void rta_sio__outq_push(rta_sio__outq *q, rta_rbuf *data, rta_rbuf *frame, int binary)
{
    rta_sio__outpkt *p = rta_xcalloc(1, sizeof *p);
    p->data = rta_rbuf_ref(data);
    p->frame = frame ? rta_rbuf_ref(frame) : NULL;
    p->binary = binary;
    if (q->tail)
        q->tail->next = p;
    else
        q->head = p;
    q->tail = p;
    q->count++;
    q->bytes += data->len;
}

rta_sio__outpkt *rta_sio__outq_pop(rta_sio__outq *q)
{
    rta_sio__outpkt *p = q->head;
    if (p == NULL)
        return NULL;
    q->head = p->next;
    if (q->head == NULL)
        q->tail = NULL;
    p->next = NULL;
    q->count--;
    q->bytes -= p->data->len;
    return p;
}

void rta_sio__outpkt_free(rta_sio__outpkt *p)
{
    if (p == NULL)
        return;
    rta_rbuf_unref(p->data);
    if (p->frame)
        rta_rbuf_unref(p->frame);
    free(p);
}

void rta_sio__outq_clear(rta_sio__outq *q)
{
    rta_sio__outpkt *p;
    while ((p = rta_sio__outq_pop(q)) != NULL)
        rta_sio__outpkt_free(p);
}

int rta_sio__outq_payload(rta_sio__outq *q, rta_dbuf *out)
{
    size_t start = out->len;
    for (rta_sio__outpkt *p = q->head; p; p = p->next) {
        int rc = 0;
        if (out->len > 0)
            rc = rta_dbuf_append(out, "\x1e", 1);
        if (rc == 0 && p->binary)
            rc = rta_dbuf_append(out, "b", 1) ||
                 rta_eio_base64_append(out, p->data->data, p->data->len);
        else if (rc == 0)
            rc = rta_dbuf_append(out, p->data->data, p->data->len);
        if (rc != 0) {
            out->len = start;
            if (out->data)
                out->data[start] = '\0';
            return -1;
        }
    }
    rta_sio__outq_clear(q);
    return 0;
}
