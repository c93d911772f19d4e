/*
 * Writer threads (see writer.h): each runs its own libuv loop with an async handle for new
 * jobs and one poll handle per conn that had to wait for the socket to become writable.
 */
#include "writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "rta/log.h"
#include "rta/util.h"

#define IOV_CHUNK 64 /* buffers per writev call */

struct rta_writer {
    rta_writers *set;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    pthread_mutex_t mu;
    rta_wlist in;  /* submitted by the loop thread, under mu */
    int stop;      /* under mu */
    rta_wlist out; /* finished in this callback, posted at its end (writer thread only) */
    _Atomic uint64_t syscalls;
};

static void list_push(rta_wlist *l, rta_wjob *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

/* Moves every job of from to the end of to. */
static void list_splice(rta_wlist *to, rta_wlist *from)
{
    if (from->head == NULL)
        return;
    if (to->tail)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    from->head = from->tail = NULL;
}

/* ---- writer thread ---- */

static void finish(rta_writer *w, rta_wjob *j, int status)
{
    j->status = status;
    list_push(&w->out, j);
}

/* Posts what this callback finished to the loop thread, in one lock and one wake-up. */
static void post_done(rta_writer *w)
{
    if (w->out.head == NULL)
        return;
    rta_writers *set = w->set;
    pthread_mutex_lock(&set->done_mu);
    list_splice(&set->done, &w->out);
    pthread_mutex_unlock(&set->done_mu);
    uv_async_send(&set->done_async);
}

static void on_writable(uv_poll_t *p, int status, int events);

static void poll_stop(rta_wside *s)
{
    if (s->polling) {
        uv_poll_stop(s->poll);
        s->polling = 0;
    }
}

static void fail_all(rta_writer *w, rta_wside *s);

/* Waits for room on s's socket; when it cannot (no memory, epoll full), s fails. */
static void poll_start(rta_writer *w, rta_wside *s)
{
    int rc = 0;
    if (s->poll == NULL) {
        s->poll = rta_xmalloc(sizeof *s->poll);
        rc = uv_poll_init_socket(&w->loop, s->poll, s->fd);
        if (rc != 0) {
            free(s->poll);
            s->poll = NULL;
        } else {
            s->poll->data = s;
        }
    }
    if (rc == 0 && !s->polling) {
        rc = uv_poll_start(s->poll, UV_WRITABLE, on_writable);
        s->polling = rc == 0;
    }
    if (rc != 0) {
        s->failed = rc;
        fail_all(w, s);
    }
}

static rta_wjob *pop(rta_wside *s)
{
    rta_wjob *j = s->q.head;
    s->q.head = j->next;
    if (s->q.head == NULL)
        s->q.tail = NULL;
    s->head_off = 0;
    return j;
}

/* Fails every queued job of s with its error (the loop closes the conn on the first one). */
static void fail_all(rta_writer *w, rta_wside *s)
{
    while (s->q.head)
        finish(w, pop(s), s->failed);
    poll_stop(s);
}

/* Writes s's queue in order until it is empty or the socket is full. */
static void drain(rta_writer *w, rta_wside *s)
{
    while (s->q.head) {
        rta_wjob *j = s->q.head;
        if (j->kind == RTA_WJOB_SHUTDOWN) {
            shutdown(s->fd, SHUT_WR);
            finish(w, pop(s), 0);
            continue;
        }
        /* iovecs from head_off on, a chunk at a time */
        struct iovec iov[IOV_CHUNK];
        int niov = 0;
        size_t skip = s->head_off, chunk = 0;
        for (size_t i = 0; i < j->nbufs && niov < IOV_CHUNK; i++) {
            size_t len = j->bufs[i]->len;
            if (skip >= len) {
                skip -= len;
                continue;
            }
            iov[niov].iov_base = j->bufs[i]->data + skip;
            iov[niov].iov_len = len - skip;
            chunk += len - skip;
            niov++;
            skip = 0;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
        /* MSG_NOSIGNAL: a closed peer is an error here, not a SIGPIPE */
        ssize_t n = niov ? sendmsg(s->fd, &msg, MSG_NOSIGNAL) : 0;
        atomic_fetch_add_explicit(&w->syscalls, 1, memory_order_relaxed);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                j->deferred = 1;
                poll_start(w, s);
                return;
            }
            s->failed = uv_translate_sys_error(errno);
            fail_all(w, s);
            return;
        }
        s->head_off += (size_t)n;
        if (s->head_off == j->bytes) {
            finish(w, pop(s), 0);
            continue;
        }
        if ((size_t)n < chunk) { /* the socket is full: wait for room */
            j->deferred = 1;
            poll_start(w, s);
            return;
        } /* else a long job: on with its next chunk */
    }
    poll_stop(s);
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    rta_wside *s = p->data;
    rta_writer *w = s->w;
    if (status < 0) {
        s->failed = status;
        fail_all(w, s);
    } else {
        drain(w, s);
    }
    post_done(w);
}

static void on_poll_closed(uv_handle_t *h)
{
    rta_wside *s = h->data;
    rta_writer *w = s->w;
    free(s->poll);
    s->poll = NULL;
    finish(w, s->detach, 0);
    post_done(w);
}

static void detach(rta_writer *w, rta_wside *s, rta_wjob *j)
{
    while (s->q.head) /* the conn is going away: what was not written never will be */
        finish(w, pop(s), UV_ECANCELED);
    if (s->poll) {
        poll_stop(s);
        s->detach = j;
        uv_close((uv_handle_t *)s->poll, on_poll_closed);
    } else {
        finish(w, j, 0);
    }
}

static void on_wake(uv_async_t *a)
{
    rta_writer *w = a->data;
    pthread_mutex_lock(&w->mu);
    rta_wjob *j = w->in.head;
    w->in.head = w->in.tail = NULL;
    int stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    while (j) {
        rta_wjob *next = j->next;
        if (j->kind == RTA_WJOB_BARRIER) { /* every earlier job was tried: back it goes */
            finish(w, j, 0);
            j = next;
            continue;
        }
        rta_wside *s = j->side;
        if (j->kind == RTA_WJOB_DETACH) {
            detach(w, s, j);
        } else if (s->failed) {
            finish(w, j, s->failed);
        } else {
            int idle = s->q.head == NULL;
            list_push(&s->q, j);
            if (idle)
                drain(w, s); /* else the poll callback gets to it in order */
        }
        j = next;
    }
    post_done(w);
    if (stop)
        uv_close((uv_handle_t *)&w->wake, NULL);
}

static void *writer_main(void *arg)
{
    rta_writer *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- loop thread ---- */

static void on_done(uv_async_t *a)
{
    rta_writers *set = a->data;
    pthread_mutex_lock(&set->done_mu);
    rta_wjob *jobs = set->done.head;
    set->done.head = set->done.tail = NULL;
    pthread_mutex_unlock(&set->done_mu);
    size_t n = 0;
    for (rta_wjob *j = jobs; j; j = j->next)
        n++;
    set->outstanding -= n;
    if (set->outstanding == 0)
        uv_unref((uv_handle_t *)&set->done_async);
    if (jobs)
        set->on_done(set->ud, jobs);
}

int rta_writers_start(rta_writers *set, uv_loop_t *loop, unsigned n, rta_writer_done_fn done,
                      void *ud)
{
    memset(set, 0, sizeof *set);
    set->on_done = done;
    set->ud = ud;
    pthread_mutex_init(&set->done_mu, NULL);
    uv_async_init(loop, &set->done_async, on_done);
    set->done_async.data = set;
    uv_unref((uv_handle_t *)&set->done_async);
    set->w = rta_xcalloc(n, sizeof *set->w);
    set->pend = rta_xcalloc(n, sizeof *set->pend);
    for (unsigned i = 0; i < n; i++) {
        rta_writer *w = &set->w[i];
        w->set = set;
        pthread_mutex_init(&w->mu, NULL);
        int rc = uv_loop_init(&w->loop);
        if (rc != 0) {
            pthread_mutex_destroy(&w->mu);
            set->n = i;
            rta_writers_stop(set);
            return rc;
        }
        uv_async_init(&w->loop, &w->wake, on_wake); /* on an initialised loop it cannot fail */
        w->wake.data = w;
        rc = pthread_create(&w->thread, NULL, writer_main, w);
        if (rc != 0) {
            uv_close((uv_handle_t *)&w->wake, NULL);
            uv_run(&w->loop, UV_RUN_DEFAULT);
            uv_loop_close(&w->loop);
            pthread_mutex_destroy(&w->mu);
            set->n = i;
            rta_writers_stop(set);
            return uv_translate_sys_error(rc);
        }
        set->n = i + 1;
    }
    return 0;
}

void rta_writers_stop(rta_writers *set)
{
    if (set->w == NULL)
        return;
    rta_writers_flush(set);
    for (unsigned i = 0; i < set->n; i++) {
        rta_writer *w = &set->w[i];
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_mutex_unlock(&w->mu);
        uv_async_send(&w->wake);
        pthread_join(w->thread, NULL);
        uv_loop_close(&w->loop);
        pthread_mutex_destroy(&w->mu);
    }
    free(set->w);
    free(set->pend);
    set->w = NULL;
    set->pend = NULL;
    set->n = 0;
    uv_close((uv_handle_t *)&set->done_async, NULL);
}

rta_wside *rta_writers_attach(rta_writers *set, int fd)
{
    rta_wside *s = rta_xcalloc(1, sizeof *s);
    s->w = &set->w[set->next++ % set->n];
    s->fd = fd;
    return s;
}

static void submit(rta_writers *set, rta_writer *w, rta_wjob *job)
{
    if (set->outstanding++ == 0)
        uv_ref((uv_handle_t *)&set->done_async); /* the loop runs until every job is back */
    rta_wlist *l = &set->pend[w - set->w];
    if (l->head == NULL)
        set->npend++;
    list_push(l, job);
}

void rta_writers_flush(rta_writers *set)
{
    for (unsigned i = 0; i < set->n && set->npend > 0; i++) {
        rta_wlist *l = &set->pend[i];
        if (l->head == NULL)
            continue;
        rta_writer *w = &set->w[i];
        pthread_mutex_lock(&w->mu);
        list_splice(&w->in, l);
        pthread_mutex_unlock(&w->mu);
        set->npend--;
        uv_async_send(&w->wake);
    }
}

void rta_writers_submit(rta_writers *set, rta_wside *s, rta_wjob *job)
{
    submit(set, s->w, job);
}

void rta_writers_submit_to(rta_writers *set, unsigned i, rta_wjob *job)
{
    submit(set, &set->w[i], job);
}

uint64_t rta_writers_syscalls(const rta_writers *set)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < set->n; i++)
        n += atomic_load_explicit(&set->w[i].syscalls, memory_order_relaxed);
    return n;
}
