/*
 * Writer threads: socket writes of offloaded connections done off the loop thread.
 * Internal to src/net (rta/net.h has the public side: rta_net_set_writers,
 * rta_conn_offload_writes).
 *
 * Why: a fan-out server spends most of its time in write(2) (on loopback also the receiver's
 * TCP processing, which the kernel runs inside the sender's call). Moving those calls to other
 * threads leaves the loop thread free for protocol work and lets writes use more cores.
 *
 * Ownership: the loop thread owns every rta_conn and every buffer reference. It hands the
 * writer a job (a writev worth of buffers, a shutdown, or a detach); the writer only reads the
 * bytes and owns the conn's writer side (rta_wside: its fd, queue and poll handle) until it
 * answers the detach. Jobs come back to the loop, in the order they were made, through one
 * completion queue; the loop then releases the buffers. A conn is freed only after its detach
 * came back, so a writer never sees freed memory.
 */
#ifndef RTA_NET_WRITER_H
#define RTA_NET_WRITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <uv.h>

#include "rta/buf.h"
#include "rta/net.h"

typedef enum {
    RTA_WJOB_WRITE,
    RTA_WJOB_SHUTDOWN,
    RTA_WJOB_DETACH,
    RTA_WJOB_BARRIER /* no conn: comes back once the writer has tried every job before it */
} rta_wjob_kind;

typedef struct rta_wjob {
    struct rta_wjob *next;
    rta_conn *conn;         /* NULL for a barrier; the writer does not read it */
    struct rta_wside *side; /* conn->wside, copied so the writer never reads the conn */
    void *barrier;          /* a barrier's owner (net.c) */
    rta_wjob_kind kind;
    int status;        /* set by the writer: 0, or a negative uv error */
    unsigned deferred; /* set by the writer: the socket did not take it at once */
    size_t nbufs;
    size_t bytes;
    rta_rbuf *bufs[]; /* the loop's references, released when the job comes back */
} rta_wjob;

typedef struct rta_writer rta_writer;

/* A list of jobs in order (handed between threads, or one conn's queue). */
typedef struct rta_wlist {
    rta_wjob *head, *tail;
} rta_wlist;

/* The writer thread's side of one offloaded conn. Touched only by its writer thread between
 * the conn's offload and the detach answer. */
typedef struct rta_wside {
    rta_writer *w;
    int fd;
    rta_wlist q;     /* jobs not yet finished, in order */
    size_t head_off; /* bytes of head already written */
    int failed;      /* first write error; later jobs fail with it */
    int polling;
    uv_poll_t *poll;  /* made on the first full socket (most conns never need one) */
    rta_wjob *detach; /* answered when the poll handle has closed */
} rta_wside;

/* Completion sink: the loop side, run on the loop thread with jobs in order. */
typedef void (*rta_writer_done_fn)(void *ud, rta_wjob *jobs);

typedef struct rta_writers {
    rta_writer *w;
    unsigned n;
    unsigned next;   /* round-robin assignment */
    rta_wlist *pend; /* per writer: submitted on the loop thread, not yet handed over */
    int npend;       /* writers with something in pend */
    uv_async_t done_async;
    pthread_mutex_t done_mu;
    rta_wlist done;
    size_t outstanding; /* jobs handed out and not yet back (loop thread only) */
    rta_writer_done_fn on_done;
    void *ud;
} rta_writers;

/* Starts n writer threads whose completions run on_done on loop. 0 or a negative uv error. */
int rta_writers_start(rta_writers *ws, uv_loop_t *loop, unsigned n, rta_writer_done_fn on_done,
                      void *ud);
/* Stops and joins the threads and closes the completion handle. Every detach must have come
 * back (no conn still offloaded). */
void rta_writers_stop(rta_writers *ws);
/* Picks the writer for a new offloaded conn and makes its side. */
rta_wside *rta_writers_attach(rta_writers *ws, int fd);
/* Queues a job for side's conn to its writer; rta_writers_flush hands it over. */
void rta_writers_submit(rta_writers *ws, rta_wside *side, rta_wjob *job);
/* Queues a barrier job for writer i (0 <= i < n). */
void rta_writers_submit_to(rta_writers *ws, unsigned i, rta_wjob *job);
/* Hands every queued job to its writer: one lock and one wake-up per writer. Order is kept:
 * jobs reach each writer in the order they were submitted. */
void rta_writers_flush(rta_writers *ws);
/* Counters summed over the writers (any thread may read them). */
uint64_t rta_writers_syscalls(const rta_writers *ws);

#endif
