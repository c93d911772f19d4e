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
    void (*on_drain)(rta_conn *c);   /* optional: write queue emptied, after drain_wanted */
    void (*on_timeout)(rta_conn *c); /* optional: deadline passed */
    void (*on_close)(rta_conn *c);   /* free proto_data; conn freed after */
} rta_conn_proto;

struct rta_conn {
    /* what the fan-out path reads for every delivery, together in the first cache line */
    rta_net *net;
    const rta_conn_proto *proto;
    void *proto_data;
    size_t write_queued_bytes; /* handed to the socket layer and not yet written */
    size_t writes_in_flight;
    struct rta_wside *wside; /* non-NULL: writes go through a writer thread */
    SSL *ssl;                /* NULL on plain TCP */
    unsigned closing : 1;
    unsigned shutting_down : 1;
    unsigned read_paused : 1;
    unsigned is_listener_tls : 1;
    unsigned offload_wanted : 1; /* offload once the writes in flight are done */
    unsigned drain_wanted : 1;   /* set by the protocol: call on_drain when the queue empties */
    /* the rest */
    uint64_t id;
    uint64_t deadline_ms; /* 0 = none; uv_now() based */
    rta_conn *prev, *next;
    char remote_ip[INET6_ADDRSTRLEN];
    uv_tcp_t tcp; /* tcp.data points back to the conn */
};

typedef struct rta_net_stats {
    uint64_t accepted;
    uint64_t refused_limit; /* over max_connections */
    uint64_t refused_fds;   /* accept failed for lack of descriptors */
    uint64_t tls_handshake_failures;
    uint64_t bytes_in, bytes_out;
    uint64_t writes;          /* write submissions (one writev each, however many buffers) */
    uint64_t writes_deferred; /* of those, the ones the socket did not take at once */
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
/* Starts n writer threads (0: every write stays on the loop thread, the default). Connections
 * then opt in with rta_conn_offload_writes. Call before listening. 0 or a negative uv error. */
int rta_net_set_writers(rta_net *net, unsigned n);
unsigned rta_net_writers(const rta_net *net);
/* Jobs (writes, shutdowns, detaches, barriers) handed to the writer threads, not yet back. */
size_t rta_net_write_jobs(const rta_net *net);
/* Hands the writes queued so far to the writer threads now (else a prepare handle does it
 * before the loop next polls). Called by whoever just queued a batch of writes. */
void rta_net_flush_writes(rta_net *net);
/* Calls cb on the loop thread once the writer threads have tried every write handed to them
 * so far (written it, or parked it because that socket is full). Returns 1, or 0 when there
 * are no writer threads (writes are tried when made: nothing to wait for; cb is not called). */
int rta_net_write_barrier(rta_net *net, void (*cb)(void *ud), void *ud);
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
/* From now on c's socket writes are made by a writer thread (when the net has writers and c
 * is plain TCP; else nothing changes). Order and every rta_conn call stay the same: buffers are
 * released, write_queued_bytes falls and on_drain runs on the loop thread as writes finish.
 * For long-lived connections that receive fan-out (WebSocket). */
void rta_conn_offload_writes(rta_conn *c);
/* Closes after queued writes are flushed (TCP shutdown, then close). */
void rta_conn_close_graceful(rta_conn *c);
/* Closes now; queued writes are dropped. */
void rta_conn_close(rta_conn *c);
void rta_conn_pause_read(rta_conn *c);
void rta_conn_resume_read(rta_conn *c);
/* Sets the deadline timeout_ms from now (0 clears it). */
void rta_conn_set_timeout(rta_conn *c, uint64_t timeout_ms);

#endif
