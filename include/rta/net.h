/*
 * TCP and TLS connections on libuv, one code path for both: a protocol (HTTP, WebSocket) sees
 * plaintext bytes in and writes refcounted buffers out; TLS, when the listener has it, sits
 * underneath (OpenSSL with memory BIOs) and the protocol never knows.
 *
 * Ownership: rta_net owns every rta_conn. A protocol is attached with rta_conn_set_proto and is
 * told about the end through proto->on_close, after which the conn memory is released (in the
 * libuv close callback). Everything runs on the loop thread.
 *
 * Timeouts: each conn has one deadline (ms, wall clock of the loop); a sweep every 250 ms calls
 * proto->on_timeout for conns past it. One timer for all connections instead of one each.
 */
#ifndef RTA_NET_H
#define RTA_NET_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rta/buf.h"

typedef struct rta_net rta_net;
typedef struct rta_conn rta_conn;

typedef struct rta_conn_proto {
    const char *name;
    void (*on_read)(rta_conn *c, const char *data, size_t len);
    void (*on_drain)(rta_conn *c);   /* optional: write queue emptied */
    void (*on_timeout)(rta_conn *c); /* optional: deadline passed */
    void (*on_close)(rta_conn *c);   /* free proto_data; conn freed after */
} rta_conn_proto;

struct rta_conn {
    uv_tcp_t tcp;
    rta_net *net;
    const rta_conn_proto *proto;
    void *proto_data;
    SSL *ssl; /* NULL on plain TCP */
    uint64_t id;
    char remote_ip[INET6_ADDRSTRLEN];
    size_t write_queued_bytes; /* handed to uv_write and not yet completed */
    size_t writes_in_flight;
    uint64_t deadline_ms; /* 0 = none; uv_now() based */
    unsigned closing : 1;
    unsigned shutting_down : 1;
    unsigned read_paused : 1;
    unsigned is_listener_tls : 1;
    rta_conn *prev, *next;
};

typedef struct rta_net_stats {
    uint64_t accepted;
    uint64_t refused_limit; /* over max_connections */
    uint64_t refused_fds;   /* accept failed for lack of descriptors */
    uint64_t tls_handshake_failures;
    uint64_t bytes_in, bytes_out;
    size_t open;
} rta_net_stats;

/* Called for each accepted conn; must attach a protocol with rta_conn_set_proto. */
typedef void (*rta_net_accept_fn)(void *ud, rta_conn *c);

rta_net *rta_net_new(uv_loop_t *loop, size_t max_connections, rta_net_accept_fn on_accept,
                     void *ud);
/* Listens on host:port, plain or (ssl_ctx != NULL) TLS. Returns 0 or a negative uv error. */
int rta_net_listen(rta_net *net, const char *host, int port, SSL_CTX *ssl_ctx);
/* Port actually bound by the first listener (for port 0). */
int rta_net_bound_port(const rta_net *net);
/* Stops accepting (closes listeners); open conns stay. */
void rta_net_stop_listening(rta_net *net);
/* Closes every conn now and the sweep timer: the last step of shutdown. */
void rta_net_close_all(rta_net *net);
size_t rta_net_open_count(const rta_net *net);
const rta_net_stats *rta_net_get_stats(const rta_net *net);
/* Frees net; all handles must be closed and the loop run until they are. */
void rta_net_free(rta_net *net);
/* Calls fn for each open conn. */
void rta_net_each(rta_net *net, void (*fn)(void *ud, rta_conn *c), void *ud);

/* TLS server context: TLS 1.3 only, or 1.2+ when min_version is "1.2". NULL + err. */
SSL_CTX *rta_tls_server_ctx(const char *cert_file, const char *key_file, const char *min_version,
                            char *err, size_t errlen);

void rta_conn_set_proto(rta_conn *c, const rta_conn_proto *proto, void *data);
/* Queues buf for sending (takes a reference, released when written). Returns 0 or -1 when the
 * conn is closing. Over TLS the bytes are encrypted into a new buffer. */
int rta_conn_write(rta_conn *c, rta_rbuf *buf);
/* Same for several buffers in one system call (plain TCP). */
int rta_conn_writev(rta_conn *c, rta_rbuf **bufs, size_t n);
/* Closes after queued writes are flushed (TCP shutdown, then close). */
void rta_conn_close_graceful(rta_conn *c);
/* Closes now; queued writes are dropped. */
void rta_conn_close(rta_conn *c);
void rta_conn_pause_read(rta_conn *c);
void rta_conn_resume_read(rta_conn *c);
/* Sets the deadline timeout_ms from now (0 clears it). */
void rta_conn_set_timeout(rta_conn *c, uint64_t timeout_ms);

#endif
