/*
 * HTTP/1.1 server: http-parser on rta_net connections. See rta/http.h for the request
 * lifetime and limits. Parsing is driven from one place (process()), never re-entered, so a
 * handler that answers at once and a handler that answers after a storage job follow the same
 * path, and pipelined requests cannot recurse.
 */
#include "rta/http.h"
#include "rta/log.h"
#include "rta/util.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rta_http_server {
    rta_http_limits limits;
    rta_http_handler handler;
    rta_http_upgrade_handler upgrade;
    rta_http_observer observer;
    void *ud;
    char *cors_origins; /* NULL = off */
    size_t inflight;
    int draining;
    rta_net *net; /* set by drain: used to count requests still being received */
    http_parser_settings settings;
};

struct rta_http_conn {
    rta_conn *conn;
    rta_http_server *srv;
    http_parser parser;
    rta_http_req *cur;    /* being parsed */
    rta_http_req *ready;  /* parsed, about to be dispatched */
    rta_http_req *active; /* dispatched, not yet answered */
    rta_dbuf held;        /* received, not yet parsed */
    rta_dbuf url;
    rta_dbuf field, value;
    int last_was_value;
    size_t header_bytes;
    int err_status; /* set by a parser callback that aborts */
    const char *err_code;
    const char *err_msg;
    int processing;
    int closing;
    int in_upgrade; /* the upgrade handler is running: http_on_close must not free */
    int gone;       /* closed while in_upgrade */
};

static const rta_conn_proto http_proto;
static void http_on_close_free(rta_http_conn *hc);

const char *rta_http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static void req_free(rta_http_req *r)
{
    if (r == NULL)
        return;
    free(r->url);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->body);
    for (size_t i = 0; i < r->nparams; i++)
        free(r->params[i]);
    rta_dbuf_free(&r->extra_headers);
    free(r);
}

static rta_http_req *req_new(rta_http_conn *hc)
{
    rta_http_req *r = rta_xcalloc(1, sizeof *r);
    r->srv = hc->srv;
    r->hc = hc;
    r->start_ns = rta_mono_ns();
    snprintf(r->remote_ip, sizeof r->remote_ip, "%s", hc->conn->remote_ip);
    rta_dbuf_init(&r->extra_headers, 16384);
    return r;
}

/* ---- parser callbacks: they only collect, bounded; dispatch happens in process() ---- */

static int fail(rta_http_conn *hc, int status, const char *code, const char *msg)
{
    hc->err_status = status;
    hc->err_code = code;
    hc->err_msg = msg;
    return -1;
}

static int count_header_bytes(rta_http_conn *hc, size_t len)
{
    hc->header_bytes += len;
    if (hc->header_bytes > hc->srv->limits.max_header_bytes)
        return fail(hc, 431, "headers_too_large", "request line and headers exceed the limit");
    return 0;
}

static int on_message_begin(http_parser *p)
{
    rta_http_conn *hc = p->data;
    req_free(hc->cur);
    hc->cur = req_new(hc);
    hc->header_bytes = 0;
    rta_dbuf_reset(&hc->url);
    rta_dbuf_reset(&hc->field);
    rta_dbuf_reset(&hc->value);
    hc->last_was_value = 0;
    rta_conn_set_timeout(hc->conn, hc->srv->limits.header_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    rta_http_conn *hc = p->data;
    if (count_header_bytes(hc, len) || rta_dbuf_append(&hc->url, at, len))
        return fail(hc, 414, "uri_too_long", "request target exceeds the header limit");
    return 0;
}

static int flush_header(rta_http_conn *hc)
{
    rta_http_req *r = hc->cur;
    if (hc->field.len == 0)
        return 0;
    if (r->nheaders == RTA_HTTP_MAX_HEADERS)
        return fail(hc, 431, "too_many_headers", "more than 64 header fields");
    r->headers[r->nheaders].name = rta_strdup(hc->field.data);
    r->headers[r->nheaders].value = rta_strdup(hc->value.len ? hc->value.data : "");
    r->nheaders++;
    rta_dbuf_reset(&hc->field);
    rta_dbuf_reset(&hc->value);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    rta_http_conn *hc = p->data;
    if (count_header_bytes(hc, len))
        return -1;
    if (hc->last_was_value) {
        if (flush_header(hc))
            return -1;
        hc->last_was_value = 0;
    }
    return rta_dbuf_append(&hc->field, at, len) ? fail(hc, 431, "headers_too_large", "") : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    rta_http_conn *hc = p->data;
    if (count_header_bytes(hc, len))
        return -1;
    hc->last_was_value = 1;
    return rta_dbuf_append(&hc->value, at, len) ? fail(hc, 431, "headers_too_large", "") : 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on malformed escapes or NUL bytes. */
static char *percent_decode(const char *s, size_t n, int plus_is_space)
{
    char *out = rta_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval((unsigned char)s[i + 1])) < 0 ||
                (l = hexval((unsigned char)s[i + 2])) < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (plus_is_space && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static int valid_request_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return 0;
    return 1;
}

static int on_headers_complete(http_parser *p)
{
    rta_http_conn *hc = p->data;
    rta_http_req *r = hc->cur;
    if (hc->last_was_value && flush_header(hc))
        return -1;
    r->method = http_method_str((enum http_method)p->method);
    r->http_minor = p->http_minor;
    r->url = rta_strdup(hc->url.len ? hc->url.data : "/");
    const char *q = strchr(r->url, '?');
    size_t plen = q ? (size_t)(q - r->url) : strlen(r->url);
    r->path = percent_decode(r->url, plen, 0);
    r->query = rta_strdup(q ? q + 1 : "");
    if (r->path == NULL || r->path[0] != '/')
        return fail(hc, 400, "bad_request_target",
                    "request target must be an absolute path "
                    "with valid percent-escapes");
    if (p->http_major != 1)
        return fail(hc, 505, "http_version", "only HTTP/1.x is served");
    const char *rid = rta_http_header_get(r, "X-Request-Id");
    if (rid && valid_request_id(rid))
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        rta_uuid_v7(r->request_id);
    r->keep_alive = http_should_keep_alive(p);
    r->is_upgrade = p->upgrade;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > hc->srv->limits.max_body_bytes)
        return fail(hc, 413, "body_too_large", "request body exceeds the limit");
    if (p->upgrade)
        return 1; /* no body for an upgrade: the rest belongs to the new protocol */
    if ((p->flags & (F_CHUNKED | F_CONTENTLENGTH)) && p->content_length != 0)
        rta_conn_set_timeout(hc->conn, hc->srv->limits.body_timeout_ms);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    rta_http_conn *hc = p->data;
    rta_http_req *r = hc->cur;
    if (r->body_len + len > hc->srv->limits.max_body_bytes)
        return fail(hc, 413, "body_too_large", "request body exceeds the limit");
    r->body = rta_xrealloc(r->body, r->body_len + len + 1);
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    rta_http_conn *hc = p->data;
    hc->ready = hc->cur;
    hc->cur = NULL;
    http_parser_pause(p, 1);
    return 0;
}

/* ---- answering ---- */

static const char *cors_origin_for(rta_http_server *srv, const rta_http_req *req)
{
    if (srv->cors_origins == NULL)
        return NULL;
    const char *origin = rta_http_header_get(req, "Origin");
    if (origin == NULL)
        return NULL;
    if (strcmp(srv->cors_origins, "*") == 0)
        return "*";
    size_t olen = strlen(origin);
    const char *p = srv->cors_origins;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e2 = end;
        while (e2 > p && e2[-1] == ' ')
            e2--;
        if ((size_t)(e2 - p) == olen && strncasecmp(p, origin, olen) == 0)
            return origin;
        p = end;
    }
    return NULL;
}

static void process(rta_http_conn *hc);

void rta_http_add_header(rta_http_req *req, const char *name, const char *value)
{
    rta_dbuf_printf(&req->extra_headers, "%s: %s\r\n", name, value);
}

/* Serializes the answer: status line, headers, body. */
static rta_rbuf *build_response(rta_http_req *req, int status, const char *content_type,
                                const char *body, size_t len, int keep)
{
    rta_http_server *srv = req->srv;
    rta_dbuf out;
    rta_dbuf_init(&out, SIZE_MAX / 2);
    rta_dbuf_printf(&out, "HTTP/1.1 %d %s\r\n", status, rta_http_status_text(status));
    if (content_type && status != 204 && status != 304)
        rta_dbuf_printf(&out, "Content-Type: %s\r\n", content_type);
    if (status != 204 && status != 304)
        rta_dbuf_printf(&out, "Content-Length: %zu\r\n", len);
    rta_dbuf_printf(&out, "Connection: %s\r\nX-Request-Id: %s\r\n", keep ? "keep-alive" : "close",
                    req->request_id);
    const char *origin = cors_origin_for(srv, req);
    if (origin) {
        rta_dbuf_printf(&out,
                        "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                        "Access-Control-Expose-Headers: X-Request-Id, ETag, Retry-After, "
                        "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset\r\n",
                        origin);
    }
    if (req->extra_headers.len)
        rta_dbuf_append(&out, req->extra_headers.data, req->extra_headers.len);
    rta_dbuf_puts(&out, "\r\n");
    int head_only = strcmp(req->method ? req->method : "", "HEAD") == 0;
    if (len && !head_only && status != 204 && status != 304)
        rta_dbuf_append(&out, body, len);
    req->response_bytes = out.len;
    rta_rbuf *rb = rta_rbuf_from_dbuf(&out);
    rta_dbuf_free(&out);
    return rb;
}

void rta_http_send(rta_http_req *req, int status, const char *content_type, const char *body,
                   size_t len)
{
    rta_http_server *srv = req->srv;
    rta_http_conn *hc = req->hc;
    req->status = status;
    if (hc == NULL) { /* the client left before the answer */
        srv->inflight--;
        if (srv->observer)
            srv->observer(srv->ud, req);
        req_free(req);
        return;
    }
    int keep = req->keep_alive && !srv->draining && status != 408 && !hc->closing;
    rta_rbuf *rb = build_response(req, status, content_type, body, len, keep);
    rta_conn_write(hc->conn, rb);
    rta_rbuf_unref(rb);

    srv->inflight--;
    if (srv->observer)
        srv->observer(srv->ud, req);
    if (hc->active == req)
        hc->active = NULL;
    req_free(req);
    if (!keep) {
        hc->closing = 1;
        rta_conn_close_graceful(hc->conn);
        return;
    }
    rta_conn_set_timeout(hc->conn, srv->limits.idle_timeout_ms);
    http_parser_pause(&hc->parser, 0);
    rta_conn_resume_read(hc->conn);
    if (!hc->processing)
        process(hc);
}

void rta_http_send_json(rta_http_req *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(body);
    if (text == NULL) {
        rta_http_send(req, 500, "application/json",
                      "{\"error\":{\"code\":\"internal\",\"message\":\"encoding failed\","
                      "\"details\":{}}}",
                      strlen("{\"error\":{\"code\":\"internal\",\"message\":\"encoding failed\","
                             "\"details\":{}}}"));
        return;
    }
    rta_http_send(req, status, "application/json", text, strlen(text));
    free(text);
}

void rta_http_send_error(rta_http_req *req, int status, const char *code, const char *message,
                         json_t *details)
{
    json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", code, "message", message,
                             "details", details ? details : json_object());
    rta_http_send_json(req, status, body);
}

/* Answers a protocol-level error on a request that never reached the application. */
static void send_early_error(rta_http_conn *hc, rta_http_req *r, int status, const char *code,
                             const char *msg)
{
    if (r == NULL) {
        r = req_new(hc);
        r->method = "GET";
        rta_uuid_v7(r->request_id);
    }
    r->keep_alive = 0;
    r->route = "(protocol error)";
    hc->active = r;
    hc->srv->inflight++;
    rta_http_send_error(r, status, code, msg, NULL);
}

/* The request being parsed, when its head is complete enough to answer it (request id, CORS);
 * otherwise NULL. Either way the parser no longer owns it. */
static rta_http_req *take_parsed_head(rta_http_conn *hc)
{
    rta_http_req *r = hc->cur;
    hc->cur = NULL;
    if (r != NULL && r->method == NULL) {
        req_free(r);
        r = NULL;
    }
    return r;
}

static void dispatch(rta_http_conn *hc, rta_http_req *r, const char *leftover, size_t leftlen)
{
    rta_http_server *srv = hc->srv;
    rta_conn_set_timeout(hc->conn, 0);
    if (r->is_upgrade) {
        if (srv->upgrade == NULL) {
            send_early_error(hc, r, 426, "upgrade_not_supported",
                             "this endpoint does not accept protocol upgrades");
            return;
        }
        /* The upgrade handler either takes the conn over (rta_conn_set_proto with its own
         * protocol; the request is freed by us right after) or answers the request like any
         * handler, e.g. a 400 for a bad handshake, and the connection then closes. */
        rta_conn *c = hc->conn;
        r->keep_alive = 0;
        hc->active = r;
        srv->inflight++;
        hc->in_upgrade = 1;
        rta_conn_set_timeout(c, 0);
        srv->upgrade(srv->ud, r, c, leftover, leftlen);
        hc->in_upgrade = 0;
        if (hc->gone) { /* closed during the handler (e.g. answered and closed at once) */
            http_on_close_free(hc);
            return;
        }
        if (c->proto == &http_proto)
            return; /* answered, or to be answered later: the ordinary request path */
        /* taken over: the new protocol owns the conn (it may even be closed already) */
        hc->active = NULL;
        srv->inflight--;
        req_free(r);
        http_on_close_free(hc);
        return;
    }
    if (srv->draining)
        r->keep_alive = 0;
    hc->active = r;
    srv->inflight++;
    if (strcmp(r->method, "OPTIONS") == 0 &&
        rta_http_header_get(r, "Access-Control-Request-Method") && cors_origin_for(srv, r)) {
        r->route = "(cors preflight)";
        rta_http_add_header(r, "Access-Control-Allow-Methods",
                            "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        rta_http_add_header(r, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, X-Request-Id, If-None-Match");
        rta_http_add_header(r, "Access-Control-Max-Age", "600");
        rta_http_send(r, 204, NULL, NULL, 0);
        return;
    }
    srv->handler(srv->ud, r);
}

/* Parses held bytes and dispatches complete requests, one at a time. Never re-entered. */
static void process(rta_http_conn *hc)
{
    hc->processing = 1;
    while (!hc->closing && hc->active == NULL && hc->held.len > 0) {
        size_t n =
            http_parser_execute(&hc->parser, &hc->srv->settings, hc->held.data, hc->held.len);
        enum http_errno err = HTTP_PARSER_ERRNO(&hc->parser);
        rta_http_req *ready = hc->ready;
        hc->ready = NULL;
        if (err != HPE_OK && err != HPE_PAUSED && !(ready && ready->is_upgrade)) {
            if (hc->err_status == 0 && err == HPE_HEADER_OVERFLOW)
                fail(hc, 431, "headers_too_large", "request line and headers exceed the limit");
            if (hc->err_status == 0)
                fail(hc, 400, "malformed_request", http_errno_description(err));
            req_free(ready);
            rta_dbuf_reset(&hc->held);
            send_early_error(hc, take_parsed_head(hc), hc->err_status, hc->err_code, hc->err_msg);
            break;
        }
        if (ready && ready->is_upgrade) {
            size_t left = hc->held.len - n;
            rta_dbuf held = hc->held; /* dispatch frees hc: keep the bytes */
            rta_dbuf_init(&hc->held, 0);
            hc->processing = 0;
            dispatch(hc, ready, held.data + n, left);
            rta_dbuf_free(&held);
            return;
        }
        rta_dbuf_consume(&hc->held, n);
        if (ready)
            dispatch(hc, ready, NULL, 0);
    }
    hc->processing = 0;
}

static void http_on_read(rta_conn *c, const char *data, size_t len)
{
    rta_http_conn *hc = c->proto_data;
    if (hc->closing)
        return;
    if (rta_dbuf_append(&hc->held, data, len) != 0) {
        /* a client sending far ahead of our answers: stop reading until we catch up */
        rta_conn_pause_read(c);
        return;
    }
    if (hc->active && hc->held.len > hc->srv->limits.max_header_bytes)
        rta_conn_pause_read(c);
    if (!hc->processing)
        process(hc);
}

static void http_on_timeout(rta_conn *c)
{
    rta_http_conn *hc = c->proto_data;
    if (hc->active) /* our own slowness is not the client's fault */
        return;
    if (hc->cur != NULL) {
        send_early_error(hc, take_parsed_head(hc), 408, "request_timeout",
                         "the request was not received in time");
        return;
    }
    hc->closing = 1;
    rta_conn_close(c);
}

static void http_on_close_free(rta_http_conn *hc)
{
    if (hc->active)
        hc->active->hc = NULL; /* the handler still owns it; answering will free it */
    req_free(hc->cur);
    req_free(hc->ready);
    rta_dbuf_free(&hc->held);
    rta_dbuf_free(&hc->url);
    rta_dbuf_free(&hc->field);
    rta_dbuf_free(&hc->value);
    free(hc);
}

static void http_on_close(rta_conn *c)
{
    rta_http_conn *hc = c->proto_data;
    if (hc == NULL)
        return;
    if (hc->in_upgrade) { /* dispatch() frees hc once the upgrade handler returns */
        hc->gone = 1;
        hc->closing = 1;
        return;
    }
    http_on_close_free(hc);
}

static const rta_conn_proto http_proto = {
    .name = "http",
    .on_read = http_on_read,
    .on_timeout = http_on_timeout,
    .on_close = http_on_close,
};

void rta_http_server_accept(rta_http_server *srv, rta_conn *c)
{
    rta_http_conn *hc = rta_xcalloc(1, sizeof *hc);
    hc->conn = c;
    hc->srv = srv;
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    size_t lim = srv->limits.max_header_bytes;
    rta_dbuf_init(&hc->held, lim + srv->limits.max_body_bytes + 65536);
    rta_dbuf_init(&hc->url, lim);
    rta_dbuf_init(&hc->field, lim);
    rta_dbuf_init(&hc->value, lim);
    rta_conn_set_proto(c, &http_proto, hc);
    rta_conn_set_timeout(c, srv->limits.header_timeout_ms);
}

rta_http_server *rta_http_server_new(const rta_http_limits *limits, rta_http_handler handler,
                                     void *ud)
{
    rta_http_server *srv = rta_xcalloc(1, sizeof *srv);
    srv->limits = *limits;
    srv->handler = handler;
    srv->ud = ud;
    http_parser_settings_init(&srv->settings);
    srv->settings.on_message_begin = on_message_begin;
    srv->settings.on_url = on_url;
    srv->settings.on_header_field = on_header_field;
    srv->settings.on_header_value = on_header_value;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;
    return srv;
}

void rta_http_server_set_upgrade(rta_http_server *srv, rta_http_upgrade_handler fn)
{
    srv->upgrade = fn;
}

void rta_http_server_set_observer(rta_http_server *srv, rta_http_observer fn)
{
    srv->observer = fn;
}

void rta_http_server_set_cors(rta_http_server *srv, const char *origins)
{
    free(srv->cors_origins);
    srv->cors_origins = origins && origins[0] ? rta_strdup(origins) : NULL;
}

void rta_http_server_free(rta_http_server *srv)
{
    free(srv->cors_origins);
    free(srv);
}

static void count_receiving(void *ud, rta_conn *c)
{
    if (c->proto == &http_proto && ((rta_http_conn *)c->proto_data)->cur != NULL)
        (*(size_t *)ud)++;
}

size_t rta_http_server_inflight(const rta_http_server *srv)
{
    size_t n = srv->inflight;
    if (srv->net) /* while draining, a request still arriving will be answered too */
        rta_net_each(srv->net, count_receiving, &n);
    return n;
}

static void close_if_idle(void *ud, rta_conn *c)
{
    (void)ud;
    if (c->proto != &http_proto)
        return;
    rta_http_conn *hc = c->proto_data;
    if (hc->active == NULL && hc->cur == NULL) {
        hc->closing = 1;
        rta_conn_close(c);
    }
}

void rta_http_server_set_draining(rta_http_server *srv, rta_net *net)
{
    srv->draining = 1;
    srv->net = net;
}

void rta_http_server_drain(rta_http_server *srv, rta_net *net)
{
    srv->draining = 1;
    srv->net = net;
    rta_net_each(net, close_if_idle, NULL);
}

const char *rta_http_header_get(const rta_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

const char *rta_http_query_param(const rta_http_req *req, const char *name, char *buf,
                                 size_t buflen)
{
    size_t nlen = strlen(name);
    const char *p = req->query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t seglen = amp ? (size_t)(amp - p) : strlen(p);
        if (seglen >= nlen && strncmp(p, name, nlen) == 0 && (seglen == nlen || p[nlen] == '=')) {
            const char *v = seglen == nlen ? p + nlen : p + nlen + 1;
            size_t vlen = seglen == nlen ? 0 : seglen - nlen - 1;
            char *dec = percent_decode(v, vlen, 1);
            if (dec == NULL || strlen(dec) >= buflen) {
                free(dec);
                return NULL;
            }
            memcpy(buf, dec, strlen(dec) + 1);
            free(dec);
            return buf;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}
