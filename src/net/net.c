/*
 * TCP listener and connections, with optional TLS through OpenSSL memory BIOs.
 * See rta/net.h for the ownership and timeout model.
 */
#include "rta/net.h"
#include "rta/log.h"
#include "rta/util.h"
#include "writer.h"

#include <openssl/err.h>
#include <stdint.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE (64 * 1024)
#define MAX_LISTENERS 4
#define SWEEP_MS 250
#define FD_RESERVE 100 /* descriptors kept for everything but client connections */
#define WRITER_FDS 4   /* descriptors one writer thread's loop holds (epoll, eventfd, pipe) */

typedef struct listener {
    uv_tcp_t tcp;
    rta_net *net;
    SSL_CTX *ssl_ctx;
    int open;
} listener;

struct rta_net {
    uv_loop_t *loop;
    size_t max_connections;
    size_t fd_cap;    /* connections the open-file limit leaves room for */
    size_t detaching; /* closed conns whose descriptor a writer still holds */
    size_t fd_limit;  /* RLIMIT_NOFILE when fd_cap was set */
    rta_net_accept_fn on_accept;
    void *ud;
    listener listeners[MAX_LISTENERS];
    size_t nlisteners;
    int bound_port;
    uv_timer_t sweep;
    rta_conn *conns; /* doubly linked list of open conns */
    uint64_t next_id;
    rta_net_stats stats;
    uint64_t last_refusal_log_ms;
    rta_writers writers;          /* writers.n == 0: none */
    uv_prepare_t flush_prepare;   /* hands queued writes over before the loop blocks */
    int stop_writers_on_idle;     /* close_all ran while jobs were still out */
    char read_buf[READ_BUF_SIZE]; /* reads are consumed synchronously: one buffer serves all */
};

typedef struct write_req {
    uv_write_t req;
    rta_conn *conn;
    size_t nbufs;
    size_t bytes;
    rta_rbuf *bufs[];
} write_req;

static void on_closed(uv_handle_t *h)
{
    rta_conn *c = h->data;
    if (c->ssl)
        SSL_free(c->ssl);
    free(c);
}

static void unlink_conn(rta_conn *c)
{
    rta_net *net = c->net;
    if (c->prev)
        c->prev->next = c->next;
    else if (net->conns == c)
        net->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    net->stats.open--;
}

void rta_conn_close(rta_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    unlink_conn(c);
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    c->proto = NULL;
    c->proto_data = NULL;
    if (c->wside) { /* the writer lets go of the socket first; then it is closed */
        uv_read_stop((uv_stream_t *)&c->tcp);
        rta_wjob *j = rta_xcalloc(1, sizeof *j);
        j->conn = c;
        j->side = c->wside;
        j->kind = RTA_WJOB_DETACH;
        c->net->detaching++;
        rta_writers_submit(&c->net->writers, c->wside, j);
        rta_writers_flush(&c->net->writers);
        return;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    rta_conn *c = req->data;
    free(req);
    rta_conn_close(c);
}

void rta_conn_close_graceful(rta_conn *c)
{
    if (c->closing || c->shutting_down)
        return;
    c->shutting_down = 1;
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* queue close_notify */
        rta_conn_write(c, NULL);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->wside) { /* shut down after what the writer still has; closed when it is done */
        rta_wjob *j = rta_xcalloc(1, sizeof *j);
        j->conn = c;
        j->side = c->wside;
        j->kind = RTA_WJOB_SHUTDOWN;
        c->writes_in_flight++;
        rta_writers_submit(&c->net->writers, c->wside, j);
        rta_writers_flush(&c->net->writers);
        return;
    }
    uv_shutdown_t *req = rta_xmalloc(sizeof *req);
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        rta_conn_close(c);
    }
}

static void offload_now(rta_conn *c)
{
    uv_os_fd_t fd;
    c->offload_wanted = 0;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        c->wside = rta_writers_attach(&c->net->writers, fd);
}

void rta_conn_offload_writes(rta_conn *c)
{
    if (c->net->writers.n == 0 || c->ssl || c->wside || c->closing || c->shutting_down)
        return;
    if (c->writes_in_flight > 0) /* libuv still has some: switch when they are written */
        c->offload_wanted = 1;
    else
        offload_now(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    rta_conn *c = w->conn;
    for (size_t i = 0; i < w->nbufs; i++)
        rta_rbuf_unref(w->bufs[i]);
    c->write_queued_bytes -= w->bytes;
    c->writes_in_flight--;
    free(w);
    if (status < 0) {
        if (!c->closing)
            rta_conn_close(c);
        return;
    }
    if (c->writes_in_flight == 0 && c->offload_wanted && !c->closing && !c->shutting_down)
        offload_now(c);
    if (c->writes_in_flight == 0 && c->drain_wanted && !c->closing && c->proto &&
        c->proto->on_drain) {
        c->drain_wanted = 0;
        c->proto->on_drain(c);
    }
}

/* Hands bufs[first..n) to libuv, the first one starting skip bytes in. */
static int queue_write(rta_conn *c, rta_rbuf **bufs, size_t n, size_t first, size_t skip)
{
    size_t m = n - first;
    write_req *w = rta_xmalloc(sizeof *w + m * sizeof(rta_rbuf *));
    uv_buf_t stackbufs[16];
    uv_buf_t *ubufs = m <= 16 ? stackbufs : rta_xmalloc(m * sizeof(uv_buf_t));
    w->conn = c;
    w->nbufs = m;
    w->bytes = 0;
    for (size_t i = 0; i < m; i++) {
        rta_rbuf *b = bufs[first + i];
        size_t off = i == 0 ? skip : 0;
        w->bufs[i] = rta_rbuf_ref(b);
        ubufs[i] = uv_buf_init(b->data + off, (unsigned)(b->len - off));
        w->bytes += b->len - off;
    }
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, ubufs, (unsigned)m, on_write);
    if (ubufs != stackbufs)
        free(ubufs);
    if (rc != 0) {
        for (size_t i = 0; i < m; i++)
            rta_rbuf_unref(w->bufs[i]);
        free(w);
        return -1;
    }
    c->write_queued_bytes += w->bytes;
    c->writes_in_flight++;
    return 0;
}

/* Writes bufs now when the socket takes them (the common case: one system call, no request,
 * no completion to run later, no poll-set change), and queues whatever it did not take. */
static void on_flush_prepare(uv_prepare_t *h)
{
    rta_net *net = h->data;
    rta_writers_flush(&net->writers);
    uv_prepare_stop(h);
}

static int submit_write(rta_conn *c, rta_rbuf **bufs, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += bufs[i]->len;
    c->net->stats.bytes_out += total;
    c->net->stats.writes++;
    if (c->wside) {
        rta_wjob *j = rta_xmalloc(sizeof *j + n * sizeof(rta_rbuf *));
        memset(j, 0, sizeof *j);
        j->conn = c;
        j->side = c->wside;
        j->kind = RTA_WJOB_WRITE;
        j->nbufs = n;
        j->bytes = total;
        for (size_t i = 0; i < n; i++)
            j->bufs[i] = rta_rbuf_ref(bufs[i]);
        c->write_queued_bytes += total;
        c->writes_in_flight++;
        rta_writers_submit(&c->net->writers, c->wside, j);
        if (!uv_is_active((uv_handle_t *)&c->net->flush_prepare)) /* unless flushed sooner */
            uv_prepare_start(&c->net->flush_prepare, on_flush_prepare);
        return 0;
    }
    size_t done = 0;
    if (c->writes_in_flight == 0 && n <= 64) {
        uv_buf_t ubufs[64];
        for (size_t i = 0; i < n; i++)
            ubufs[i] = uv_buf_init(bufs[i]->data, (unsigned)bufs[i]->len);
        int rc = uv_try_write((uv_stream_t *)&c->tcp, ubufs, (unsigned)n);
        if (rc > 0)
            done = (size_t)rc; /* errors: uv_write meets them again and on_write closes */
    }
    if (done == total)
        return 0;
    c->net->stats.writes_deferred++;
    size_t first = 0;
    while (done >= bufs[first]->len) { /* skip what went out; done < total keeps first < n */
        done -= bufs[first]->len;
        first++;
    }
    return queue_write(c, bufs, n, first, done);
}

/* Moves whatever OpenSSL wrote into its output BIO onto the socket. */
static int tls_flush(rta_conn *c)
{
    BIO *wbio = SSL_get_wbio(c->ssl);
    size_t pending = BIO_ctrl_pending(wbio);
    if (pending == 0)
        return 0;
    rta_rbuf *out = rta_rbuf_new(NULL, pending);
    int n = BIO_read(wbio, out->data, (int)pending);
    if (n <= 0) {
        rta_rbuf_unref(out);
        return -1;
    }
    out->len = (size_t)n;
    int rc = submit_write(c, &out, 1);
    rta_rbuf_unref(out);
    return rc;
}

int rta_conn_writev(rta_conn *c, rta_rbuf **bufs, size_t n)
{
    if (c->closing)
        return -1;
    if (c->ssl == NULL)
        return n ? submit_write(c, bufs, n) : 0;
    for (size_t i = 0; i < n; i++) {
        if (bufs[i]->len == 0)
            continue;
        int rc = SSL_write(c->ssl, bufs[i]->data, (int)bufs[i]->len);
        if (rc <= 0)
            return -1; /* memory BIOs never block: any failure is fatal */
    }
    return tls_flush(c);
}

int rta_conn_write(rta_conn *c, rta_rbuf *buf)
{
    if (buf == NULL) /* flush only (TLS control records) */
        return c->ssl ? tls_flush(c) : 0;
    return rta_conn_writev(c, &buf, 1);
}

void rta_conn_pause_read(rta_conn *c)
{
    if (!c->read_paused && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_paused = 1;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    rta_conn *c = h->data;
    buf->base = c->net->read_buf;
    buf->len = READ_BUF_SIZE;
}

void rta_conn_resume_read(rta_conn *c)
{
    if (c->read_paused && !c->closing && !c->shutting_down) {
        c->read_paused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

void rta_conn_set_timeout(rta_conn *c, uint64_t timeout_ms)
{
    c->deadline_ms = timeout_ms ? uv_now(c->net->loop) + timeout_ms : 0;
}

void rta_conn_set_proto(rta_conn *c, const rta_conn_proto *proto, void *data)
{
    c->proto = proto;
    c->proto_data = data;
}

static void deliver(rta_conn *c, const char *data, size_t len)
{
    if (c->proto && c->proto->on_read && !c->closing)
        c->proto->on_read(c, data, len);
}

static void tls_read(rta_conn *c, const char *data, size_t len)
{
    BIO *rbio = SSL_get_rbio(c->ssl);
    if (BIO_write(rbio, data, (int)len) != (int)len) {
        rta_conn_close(c);
        return;
    }
    if (!SSL_is_init_finished(c->ssl)) {
        int rc = SSL_do_handshake(c->ssl);
        tls_flush(c);
        if (rc <= 0) {
            int e = SSL_get_error(c->ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                c->net->stats.tls_handshake_failures++;
                unsigned long ec = ERR_get_error();
                char ebuf[256];
                ERR_error_string_n(ec, ebuf, sizeof ebuf);
                rta_log(RTA_LOG_INFO, "tls handshake failed", "{s:s,s:s}", "remote_ip",
                        c->remote_ip, "error", ebuf);
                ERR_clear_error();
                rta_conn_close(c);
            }
            return;
        }
    }
    char plain[16384];
    for (;;) {
        int n = SSL_read(c->ssl, plain, sizeof plain);
        if (n > 0) {
            deliver(c, plain, (size_t)n);
            if (c->closing)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN) /* peer sent close_notify */
            rta_conn_close_graceful(c);
        else
            rta_conn_close(c);
        return;
    }
    tls_flush(c); /* post-handshake messages, key updates */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    rta_conn *c = s->data;
    if (nread < 0) {
        rta_conn_close(c); /* EOF or error: HTTP/WS have nothing to finish half-closed */
        return;
    }
    if (nread == 0)
        return;
    c->net->stats.bytes_in += (uint64_t)nread;
    if (c->ssl)
        tls_read(c, buf->base, (size_t)nread);
    else
        deliver(c, buf->base, (size_t)nread);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    rta_net *net = l->net;
    if (status < 0) {
        if (status == UV_EMFILE || status == UV_ENFILE) {
            /* past our own cap (other descriptors took the room): libuv has already closed
             * the queued connections; count and say it, once a second */
            net->stats.refused_fds++;
            uint64_t now = uv_now(net->loop);
            if (now - net->last_refusal_log_ms >= 1000) {
                net->last_refusal_log_ms = now;
                rta_log(RTA_LOG_WARN, "refusing connections: out of file descriptors", "{s:I,s:s}",
                        "open", (json_int_t)net->stats.open, "error", uv_strerror(status));
            }
            return;
        }
        rta_log(RTA_LOG_ERROR, "accept failed", "{s:s}", "error", uv_strerror(status));
        return;
    }
    rta_conn *c = aligned_alloc(64, (sizeof *c + 63) & ~(size_t)63); /* hot fields: one line */
    if (c == NULL)
        abort();
    memset(c, 0, sizeof *c);
    uv_tcp_init(net->loop, &c->tcp);
    c->tcp.data = c;
    c->net = net;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote_ip, sizeof c->remote_ip);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote_ip, sizeof c->remote_ip);
    }
    if (net->stats.open + net->detaching >= net->fd_cap) {
        /* libuv would drop connections silently once accept fails with EMFILE: refuse them
         * here first, while descriptors are left for the store, logs and outgoing requests */
        net->stats.refused_fds++;
        uint64_t now = uv_now(net->loop);
        if (now - net->last_refusal_log_ms >= 1000) {
            net->last_refusal_log_ms = now;
            rta_log(RTA_LOG_WARN, "refusing connections: out of file descriptors", "{s:I,s:I,s:I}",
                    "open", (json_int_t)net->stats.open, "open_file_limit",
                    (json_int_t)net->fd_limit, "refused_total", (json_int_t)net->stats.refused_fds);
        }
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    if (net->stats.open >= net->max_connections) {
        net->stats.refused_limit++;
        uint64_t now = uv_now(net->loop);
        if (now - net->last_refusal_log_ms >= 1000) { /* at most one line a second */
            net->last_refusal_log_ms = now;
            rta_log(RTA_LOG_WARN, "refusing connections: server.max_connections reached",
                    "{s:I,s:I}", "open", (json_int_t)net->stats.open, "refused_total",
                    (json_int_t)net->stats.refused_limit);
        }
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->id = ++net->next_id;
    c->next = net->conns;
    if (net->conns)
        net->conns->prev = c;
    net->conns = c;
    net->stats.open++;
    net->stats.accepted++;
    if (l->ssl_ctx) {
        c->ssl = SSL_new(l->ssl_ctx);
        SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
        SSL_set_accept_state(c->ssl);
        c->is_listener_tls = 1;
    }
    net->on_accept(net->ud, c);
    if (!c->closing)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_sweep(uv_timer_t *t)
{
    rta_net *net = t->data;
    uint64_t now = uv_now(net->loop);
    rta_conn *c = net->conns;
    while (c) {
        rta_conn *next = c->next; /* on_timeout may close c */
        if (c->deadline_ms && now >= c->deadline_ms && !c->closing) {
            c->deadline_ms = 0;
            if (c->proto && c->proto->on_timeout)
                c->proto->on_timeout(c);
            else
                rta_conn_close(c);
        }
        c = next;
    }
}

rta_net *rta_net_new(uv_loop_t *loop, size_t max_connections, rta_net_accept_fn on_accept, void *ud)
{
    rta_net *net = rta_xcalloc(1, sizeof *net);
    net->loop = loop;
    net->max_connections = max_connections;
    net->fd_cap = SIZE_MAX; /* set at the first listen, when the writer threads are known */
    net->on_accept = on_accept;
    net->ud = ud;
    uv_timer_init(loop, &net->sweep);
    net->sweep.data = net;
    uv_timer_start(&net->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&net->sweep);
    return net;
}

/* What the open-file limit leaves for connections: the limit less FD_RESERVE for the rest of
 * the process and what the writer threads' loops hold. */
static void compute_fd_cap(rta_net *net)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    size_t keep = FD_RESERVE + (size_t)net->writers.n * WRITER_FDS;
    net->fd_limit = (size_t)rl.rlim_cur;
    net->fd_cap = rl.rlim_cur > 2 * keep ? (size_t)rl.rlim_cur - keep : (size_t)rl.rlim_cur / 2;
    if (net->max_connections > net->fd_cap)
        rta_log(RTA_LOG_WARN,
                "server.max_connections is above what the open-file limit allows: "
                "connections past the limit are refused as out of file descriptors",
                "{s:I,s:I,s:I}", "max_connections", (json_int_t)net->max_connections,
                "open_file_limit", (json_int_t)rl.rlim_cur, "connections_possible",
                (json_int_t)net->fd_cap);
}

int rta_net_listen(rta_net *net, const char *host, int port, SSL_CTX *ssl_ctx)
{
    if (net->nlisteners == MAX_LISTENERS)
        return UV_ENOBUFS;
    if (net->nlisteners == 0)
        compute_fd_cap(net);
    listener *l = &net->listeners[net->nlisteners];
    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        return rc;
    uv_tcp_init(net->loop, &l->tcp);
    l->tcp.data = l;
    l->net = net;
    l->ssl_ctx = ssl_ctx;
    rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
    if (rc != 0) {
        uv_close((uv_handle_t *)&l->tcp, NULL);
        return rc;
    }
    l->open = 1;
    if (net->nlisteners == 0) {
        struct sockaddr_storage bound;
        int len = sizeof bound;
        uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len);
        net->bound_port =
            ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
    }
    net->nlisteners++;
    return 0;
}

int rta_net_bound_port(const rta_net *net)
{
    return net->bound_port;
}

void rta_net_stop_listening(rta_net *net)
{
    for (size_t i = 0; i < net->nlisteners; i++)
        if (net->listeners[i].open) {
            net->listeners[i].open = 0;
            uv_close((uv_handle_t *)&net->listeners[i].tcp, NULL);
        }
}

typedef struct write_barrier {
    unsigned left; /* writers still to answer */
    void (*cb)(void *ud);
    void *ud;
} write_barrier;

/* Loop thread: jobs back from the writers, in order. */
static void on_writer_done(void *ud, rta_wjob *jobs)
{
    rta_net *net = ud;
    rta_wjob *next;
    for (rta_wjob *j = jobs; j; j = next) {
        next = j->next;
        rta_conn *c = j->conn;
        switch (j->kind) {
        case RTA_WJOB_BARRIER: {
            write_barrier *b = j->barrier;
            if (--b->left == 0) {
                b->cb(b->ud);
                free(b);
            }
            break;
        }
        case RTA_WJOB_WRITE:
            for (size_t i = 0; i < j->nbufs; i++)
                rta_rbuf_unref(j->bufs[i]);
            c->write_queued_bytes -= j->bytes;
            c->writes_in_flight--;
            if (j->deferred)
                net->stats.writes_deferred++;
            if (j->status < 0 && j->status != UV_ECANCELED)
                rta_conn_close(c); /* no-op when already closing */
            else if (c->writes_in_flight == 0 && c->drain_wanted && !c->closing && c->proto &&
                     c->proto->on_drain) {
                c->drain_wanted = 0;
                c->proto->on_drain(c);
            }
            break;
        case RTA_WJOB_SHUTDOWN:
            c->writes_in_flight--;
            rta_conn_close(c);
            break;
        case RTA_WJOB_DETACH:
            net->detaching--;
            free(c->wside);
            c->wside = NULL;
            uv_close((uv_handle_t *)&c->tcp, on_closed);
            break;
        }
        free(j);
    }
    if (net->stop_writers_on_idle && net->writers.outstanding == 0) {
        net->stop_writers_on_idle = 0;
        rta_writers_stop(&net->writers);
    }
}

int rta_net_set_writers(rta_net *net, unsigned n)
{
    if (n == 0 || net->writers.n > 0)
        return 0;
    int rc = rta_writers_start(&net->writers, net->loop, n, on_writer_done, net);
    if (rc == 0) {
        uv_prepare_init(net->loop, &net->flush_prepare);
        net->flush_prepare.data = net;
        uv_unref((uv_handle_t *)&net->flush_prepare);
    }
    return rc;
}

void rta_net_flush_writes(rta_net *net)
{
    if (net->writers.npend > 0)
        rta_writers_flush(&net->writers);
}

int rta_net_write_barrier(rta_net *net, void (*cb)(void *ud), void *ud)
{
    if (net->writers.n == 0)
        return 0;
    write_barrier *b = rta_xmalloc(sizeof *b);
    b->left = net->writers.n;
    b->cb = cb;
    b->ud = ud;
    for (unsigned i = 0; i < net->writers.n; i++) {
        rta_wjob *j = rta_xcalloc(1, sizeof *j);
        j->kind = RTA_WJOB_BARRIER;
        j->barrier = b;
        rta_writers_submit_to(&net->writers, i, j);
    }
    rta_writers_flush(&net->writers);
    return 1;
}

size_t rta_net_write_jobs(const rta_net *net)
{
    return net->writers.outstanding;
}

unsigned rta_net_writers(const rta_net *net)
{
    return net->writers.n;
}

void rta_net_close_all(rta_net *net)
{
    while (net->conns)
        rta_conn_close(net->conns);
    if (!uv_is_closing((uv_handle_t *)&net->sweep))
        uv_close((uv_handle_t *)&net->sweep, NULL);
    if (net->writers.n > 0 && !uv_is_closing((uv_handle_t *)&net->flush_prepare))
        uv_close((uv_handle_t *)&net->flush_prepare, NULL);
    if (net->writers.n > 0) { /* the threads stop once every detach has come back */
        if (net->writers.outstanding == 0)
            rta_writers_stop(&net->writers);
        else
            net->stop_writers_on_idle = 1;
    }
}

void rta_net_each(rta_net *net, void (*fn)(void *ud, rta_conn *c), void *ud)
{
    rta_conn *c = net->conns;
    while (c) {
        rta_conn *next = c->next;
        fn(ud, c);
        c = next;
    }
}

size_t rta_net_open_count(const rta_net *net)
{
    return net->stats.open;
}

const rta_net_stats *rta_net_get_stats(const rta_net *net)
{
    return &net->stats;
}

void rta_net_free(rta_net *net)
{
    if (net->writers.n > 0) /* a start that failed before rta_net_close_all */
        rta_writers_stop(&net->writers);
    free(net);
}

SSL_CTX *rta_tls_server_ctx(const char *cert_file, const char *key_file, const char *min_version,
                            char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    int minv = strcmp(min_version, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char ebuf[256];
        ERR_error_string_n(ERR_get_error(), ebuf, sizeof ebuf);
        snprintf(err, errlen, "tls: cannot load cert %s / key %s: %s", cert_file, key_file, ebuf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
