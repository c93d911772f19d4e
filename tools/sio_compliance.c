/*
 * sio_compliance: the server the official Engine.IO v4 and Socket.IO v5 protocol test suites
 * expect (docs/compliance.md says how to run them). Listens on 127.0.0.1:<port> with
 * pingInterval 300, pingTimeout 200, connectTimeout 1000, maxPayload 1e6 and serves:
 *
 *   /engine.io/  a bare Engine.IO server echoing every message (eio_echo)
 *   /socket.io/  namespaces "/" and "/custom": on connect emit "auth" with the CONNECT payload
 *                ({} when none); on "/", "message" is echoed as "message-back" with the same
 *                arguments and "message-with-ack" is acked with its arguments.
 *
 * SIGINT/SIGTERM stop it cleanly (so sanitizer leak checks run at exit).
 *
 *   usage: sio_compliance <port>
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "rta/http.h"
#include "rta/log.h"
#include "rta/net.h"
#include "rta/sio_server.h"

static rta_sio_server *g_sio, *g_eio;
static rta_http_server *g_http;
static rta_net *g_net;
static uv_signal_t g_sigint, g_sigterm;

static int on_connect(void *ud, rta_sio_socket *s, json_t *auth, const rta_sio_handshake *hs,
                      json_t **err)
{
    rta_sio_socket_set_data(s, auth ? json_deep_copy(auth) : json_object());
    return RTA_SIO_ACCEPT;
}

static void on_connected(void *ud, rta_sio_socket *s)
{
    rta_sio_emit(s, "auth", rta_sio_socket_get_data(s));
}

static void on_event(void *ud, rta_sio_socket *s, const char *event, json_t *args, int64_t ack_id)
{
    if (strcmp(event, "message") == 0)
        rta_sio_emit_args(s, "message-back", args);
    else if (strcmp(event, "message-with-ack") == 0 && ack_id >= 0)
        rta_sio_ack(s, ack_id, args);
}

static void on_disconnect(void *ud, rta_sio_socket *s, const char *reason)
{
    json_decref(rta_sio_socket_get_data(s));
}

static void on_request(void *ud, rta_http_req *req)
{
    if (rta_sio_server_handle_http(g_sio, req) || rta_sio_server_handle_http(g_eio, req))
        return;
    rta_http_send_error(req, 404, "not_found", "no such route", NULL);
}

static void on_upgrade(void *ud, rta_http_req *req, rta_conn *conn, const char *leftover,
                       size_t len)
{
    if (rta_sio_server_handle_upgrade(g_sio, req, conn, leftover, len) ||
        rta_sio_server_handle_upgrade(g_eio, req, conn, leftover, len))
        return;
    rta_conn_close(conn);
}

static void on_accept(void *ud, rta_conn *c)
{
    rta_http_server_accept(g_http, c);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    rta_log(RTA_LOG_INFO, "stopping", "{s:i}", "signal", signum);
    uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
    rta_net_stop_listening(g_net);
    rta_sio_server_free(g_sio);
    rta_sio_server_free(g_eio);
    g_sio = g_eio = NULL;
    rta_net_close_all(g_net);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <port>\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    signal(SIGPIPE, SIG_IGN);
    const char *lvl = getenv("RTA_LOG_LEVEL");
    if (lvl && rta_log_level_parse(lvl) >= 0)
        rta_log_set_level((rta_log_level)rta_log_level_parse(lvl));
    uv_loop_t *loop = uv_default_loop();

    rta_sio_options o;
    rta_sio_options_default(&o);
    o.ping_interval_ms = 300;
    o.ping_timeout_ms = 200;
    o.connect_timeout_ms = 1000;
    o.max_payload = 1000000;
    o.cors_origins = "*";
    g_sio = rta_sio_server_new(loop, &o);
    rta_sio_namespace_handler main_h = {on_connect, on_connected, on_event, on_disconnect, 0};
    rta_sio_namespace_handler custom_h = {on_connect, on_connected, NULL, on_disconnect, 0};
    rta_sio_server_namespace(g_sio, "/", &main_h, NULL);
    rta_sio_server_namespace(g_sio, "/custom", &custom_h, NULL);
    o.path = "/engine.io/";
    o.eio_echo = 1;
    g_eio = rta_sio_server_new(loop, &o);

    rta_http_limits lim = {
        .max_header_bytes = 16384,
        .max_body_bytes = 2 * o.max_payload,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
    };
    g_http = rta_http_server_new(&lim, on_request, NULL);
    rta_http_server_set_upgrade(g_http, on_upgrade);
    g_net = rta_net_new(loop, 4096, on_accept, NULL);
    int rc = rta_net_listen(g_net, "127.0.0.1", port, NULL);
    if (rc != 0) {
        fprintf(stderr, "listen on port %d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    rta_log(RTA_LOG_INFO, "sio_compliance listening", "{s:i}", "port", rta_net_bound_port(g_net));

    uv_signal_init(loop, &g_sigint);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_signal_init(loop, &g_sigterm);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);

    uv_run(loop, UV_RUN_DEFAULT);
    if (g_sio) { /* stopped by some other way: still release everything */
        rta_sio_server_free(g_sio);
        rta_sio_server_free(g_eio);
    }
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    rta_net_free(g_net);
    rta_http_server_free(g_http);
    uv_loop_close(loop);
    return 0;
}
