/*
 * HTTP/1.1 server on rta_net connections, parsing with http-parser.
 *
 * One request at a time per connection: while a request awaits its answer (handlers may answer
 * later, e.g. after a storage job), further pipelined bytes are held (bounded) and parsed after
 * the answer. Limits: header bytes (431), body bytes (413), header and body read timeouts
 * (408, then close), idle keep-alive timeout (close). Every error answer is the JSON envelope
 * {"error":{"code","message","details"}}.
 *
 * Request lifetime: the server owns rta_http_req. A handler answers exactly once with one of
 * the rta_http_send* functions; if the connection went away first, the answer is dropped and
 * the request freed then. Upgrade requests (WebSocket) go to the upgrade handler, which takes
 * over the connection, or refuses by answering like any handler (the connection then closes).
 */
#ifndef RTA_HTTP_H
#define RTA_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rta/buf.h"
#include "rta/net.h"

typedef struct rta_http_server rta_http_server;
typedef struct rta_http_conn rta_http_conn;

typedef struct rta_http_header {
    char *name; /* as received */
    char *value;
} rta_http_header;

#define RTA_HTTP_MAX_HEADERS 64
#define RTA_HTTP_MAX_PARAMS 4

typedef struct rta_http_req {
    rta_http_server *srv;
    rta_http_conn *hc;  /* NULL once the connection is gone */
    const char *method; /* "GET", ... */
    char *url;          /* raw request target */
    char *path;         /* target up to '?', percent-decoded */
    char *query;        /* after '?', raw; "" when none */
    rta_http_header headers[RTA_HTTP_MAX_HEADERS];
    size_t nheaders;
    char *body; /* NUL-terminated; NULL when empty */
    size_t body_len;
    char request_id[72];
    char remote_ip[46];
    uint64_t start_ns;
    int keep_alive;
    int is_upgrade;
    int http_minor;
    /* set by the application while routing */
    const char *route; /* route pattern for metrics/logs, e.g. "/v1/protocols/{slug}" */
    char *params[RTA_HTTP_MAX_PARAMS];
    size_t nparams;
    void *key;              /* authenticated rta_key, if any */
    rta_dbuf extra_headers; /* "Name: value\r\n" lines added by rta_http_add_header */
    int status;             /* answered status, 0 until answered */
    size_t response_bytes;
} rta_http_req;

typedef void (*rta_http_handler)(void *ud, rta_http_req *req);
/* Takes over conn for another protocol (rta_conn_set_proto; leftover = bytes after the
 * request head; req is freed by the server when this returns), or declines by answering req
 * with an rta_http_send* function like any handler (the connection then closes). */
typedef void (*rta_http_upgrade_handler)(void *ud, rta_http_req *req, rta_conn *conn,
                                         const char *leftover, size_t len);
/* Called after each answer is queued, for logs and metrics. */
typedef void (*rta_http_observer)(void *ud, const rta_http_req *req);

typedef struct rta_http_limits {
    size_t max_header_bytes;
    size_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
} rta_http_limits;

rta_http_server *rta_http_server_new(const rta_http_limits *limits, rta_http_handler handler,
                                     void *ud);
void rta_http_server_set_upgrade(rta_http_server *srv, rta_http_upgrade_handler fn);
void rta_http_server_set_observer(rta_http_server *srv, rta_http_observer fn);
/* Sets the CORS allow-list: "*" or comma-separated origins; "" disables CORS headers. */
void rta_http_server_set_cors(rta_http_server *srv, const char *origins);
void rta_http_server_free(rta_http_server *srv);
/* Attaches the HTTP protocol to a freshly accepted conn (use as the net accept callback). */
void rta_http_server_accept(rta_http_server *srv, rta_conn *c);
/* Requests dispatched and not yet answered; once draining, also those still being received. */
size_t rta_http_server_inflight(const rta_http_server *srv);
/* From now on every answer carries Connection: close; idle keep-alive conns stay open (a
 * long-polling client still needs one to hear that its session ends). */
void rta_http_server_set_draining(rta_http_server *srv, rta_net *net);
/* Same, and idle keep-alive conns are closed now. */
void rta_http_server_drain(rta_http_server *srv, rta_net *net);

/* Case-insensitive header lookup; NULL when absent. */
const char *rta_http_header_get(const rta_http_req *req, const char *name);
/* Query parameter value (percent-decoded into buf); NULL when absent. */
const char *rta_http_query_param(const rta_http_req *req, const char *name, char *buf,
                                 size_t buflen);

/* Adds a response header (name and value copied). */
void rta_http_add_header(rta_http_req *req, const char *name, const char *value);
/* Answers. The request must not be used afterwards. */
void rta_http_send(rta_http_req *req, int status, const char *content_type, const char *body,
                   size_t len);
void rta_http_send_json(rta_http_req *req, int status, json_t *body /* stolen */);
void rta_http_send_error(rta_http_req *req, int status, const char *code, const char *message,
                         json_t *details /* stolen, NULL = {} */);
const char *rta_http_status_text(int status);

#endif
