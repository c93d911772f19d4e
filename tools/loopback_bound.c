/*
 * loopback_bound: the floor cost of fan-out on this machine, independent of any server design.
 *
 * A fan-out server's inner loop is "write one small frame to each of N TCP connections". This
 * tool does only that: a sender process accepts N loopback connections (TCP_NODELAY,
 * non-blocking) and W writer threads write `--batch` messages of `--size` bytes per write() to
 * their connections round-robin, as fast as possible or paced to `--rate` messages/s in total,
 * for `--duration` seconds. K reader processes (`--readers`) hold the other ends, read
 * everything with epoll and count bytes. No framing, no encoding, no bookkeeping: whatever a
 * real server does costs at least this much per message.
 *
 * Reported: messages sent/s and received/s, EAGAIN/partial writes, and CPU: the writer threads'
 * CPU time (CLOCK_THREAD_CPUTIME_ID over the send loop) and the readers' CPU time (getrusage in
 * each reader from "all connected" to its last EOF), divided by the messages moved. Loopback TCP
 * delivery (the receive path, softirq work) runs mostly inside the sender's write() syscall and
 * is charged to the sender as system time; the "total us/msg" figure is the one to compare
 * with a server's CPU per delivered message.
 *
 *   loopback_bound [--connections N] [--readers K] [--size B] [--rate R] [--duration S]
 *                  [--writers W] [--batch M] [--json]
 *
 * Setup cost (connect/accept) and teardown (close) are not in the per-message figures; the
 * whole-process rusage of both sides is printed beside them for reference.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define SOURCE_IPS 16                 /* readers bind 127.0.0.2 .. 127.0.0.17 */
#define PACE_SLICE_NS 1000000ull      /* with --rate: send what is due every 1 ms */
#define SETUP_STALL_NS 10000000000ull /* give up when no connection arrives for 10 s */
#define READ_BUF 65536
#define MAX_WRITERS 64
#define MAX_READERS 64

struct opts {
    long connections;
    long readers;
    long size;
    double rate;
    double duration;
    long writers;
    long batch;
    int json;
};

/* One writer thread: a disjoint slice of the accepted sockets. */
struct writer {
    pthread_t thread;
    int *fds;
    size_t nfds;
    const char *msg; /* batch * size bytes */
    size_t chunk;    /* batch * size */
    size_t size;
    double rate; /* messages/s for this thread, 0 = unpaced */
    uint64_t t0, deadline;
    /* results */
    uint64_t bytes, writes, eagain, partial, errors;
    uint64_t cpu_ns, end_ns;
};

/* What each reader sends to the parent when it is done (one write, < PIPE_BUF). */
struct reader_report {
    uint64_t bytes;
    uint64_t eofs;
    uint64_t last_ns; /* CLOCK_MONOTONIC of the last data byte */
    double cpu_s;     /* user+sys from "all connected" to the last EOF */
    int32_t ok;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double rusage_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: loopback_bound [--connections N=10000] [--readers K=1] [--size B=300]\n"
               "                      [--rate R=0 (msgs/s total, 0 = max)] [--duration S=10]\n"
               "                      [--writers W=1] [--batch M=1] [--json]\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"connections", required_argument, NULL, 'c'},
        {"readers", required_argument, NULL, 'k'},
        {"size", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},
        {"writers", required_argument, NULL, 'w'},
        {"batch", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.connections = 10000,
                       .readers = 1,
                       .size = 300,
                       .rate = 0,
                       .duration = 10,
                       .writers = 1,
                       .batch = 1,
                       .json = 0};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->connections = strtol(optarg, NULL, 10);
            break;
        case 'k':
            o->readers = strtol(optarg, NULL, 10);
            break;
        case 's':
            o->size = strtol(optarg, NULL, 10);
            break;
        case 'r':
            o->rate = strtod(optarg, NULL);
            break;
        case 'd':
            o->duration = strtod(optarg, NULL);
            break;
        case 'w':
            o->writers = strtol(optarg, NULL, 10);
            break;
        case 'b':
            o->batch = strtol(optarg, NULL, 10);
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc || o->connections < 1 || o->readers < 1 || o->readers > MAX_READERS ||
        o->readers > o->connections || o->size < 1 || o->size > 1 << 20 || o->rate < 0 ||
        o->duration <= 0 || o->duration > 3600 || o->writers < 1 || o->writers > MAX_WRITERS ||
        o->writers > o->connections || o->batch < 1 || o->batch > 1024 ||
        o->size * o->batch > 16 << 20) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Soft RLIMIT_NOFILE up to the hard limit; returns the resulting soft limit. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

/* ---- reader processes ---------------------------------------------------------------------- */

/*
 * Connect connections [first, first + count) to the listener, each bound to source address
 * 127.0.0.(2 + i % 16), register them with epoll, tell the parent we are ready, then read until
 * every connection has hit EOF. Returns the process exit status.
 */
static int reader_main(uint16_t port, long first, long count, int ready_fd, int report_fd)
{
    int status = 1;
    int ep = -1;
    long open_fds = 0;
    char *buf = malloc(READ_BUF);
    struct epoll_event *evs = calloc(1024, sizeof *evs);
    struct reader_report rep = {0};
    char flag = 'F';

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!buf || !evs || ep < 0)
        goto out;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (long i = first; i < first + count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "reader: socket: %s\n", strerror(errno));
            goto out;
        }
        int one = 1;
        /* Pick the port at connect time (per 4-tuple), not at bind (per address). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % SOURCE_IPS));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
            connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
            fprintf(stderr, "reader: connection %ld: %s\n", i, strerror(errno));
            close(fd);
            goto out;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            goto out;
        }
        open_fds++;
    }
    flag = 'R';
    if (write(ready_fd, &flag, 1) != 1)
        goto out;

    double cpu0 = rusage_s(RUSAGE_SELF);
    while (open_fds > 0) {
        int n = epoll_wait(ep, evs, 1024, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        for (int j = 0; j < n; j++) {
            int fd = evs[j].data.fd;
            ssize_t r = read(fd, buf, READ_BUF);
            if (r > 0) {
                rep.bytes += (uint64_t)r;
                rep.last_ns = now_ns();
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(fd); /* also removes it from the epoll set */
                open_fds--;
                rep.eofs++;
            }
        }
    }
    rep.cpu_s = rusage_s(RUSAGE_SELF) - cpu0;
    rep.ok = 1;
    status = 0;
out:
    if (flag == 'F' && write(ready_fd, &flag, 1) != 1)
        status = 1;
    if (write(report_fd, &rep, sizeof rep) != (ssize_t)sizeof rep)
        status = 1;
    /* Any fds still open (error path) are closed by exit. */
    if (ep >= 0)
        close(ep);
    free(evs);
    free(buf);
    return status;
}

/* ---- sender -------------------------------------------------------------------------------- */

/* One write of `chunk` bytes to slot i; a connection that errors is dropped (fd = -1). */
static void write_one(struct writer *w, size_t i)
{
    int fd = w->fds[i];
    if (fd < 0)
        return;
    ssize_t r = write(fd, w->msg, w->chunk);
    w->writes++;
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            w->eagain++;
        } else if (errno != EINTR) {
            w->errors++;
            close(fd);
            w->fds[i] = -1;
        }
        return;
    }
    w->bytes += (uint64_t)r;
    if ((size_t)r < w->chunk)
        w->partial++;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t cpu0 = thread_cpu_ns();
    size_t i = 0;

    if (w->rate <= 0) {
        for (uint64_t n = 0;; n++) {
            if ((n & 63) == 0 && now_ns() >= w->deadline)
                break;
            write_one(w, i);
            if (++i == w->nfds)
                i = 0;
        }
    } else {
        uint64_t tick = w->t0;
        for (;;) {
            uint64_t now = now_ns();
            if (now >= w->deadline)
                break;
            uint64_t due_msgs = (uint64_t)(w->rate * (double)(now - w->t0) / 1e9);
            uint64_t due_bytes = due_msgs * w->size;
            /* Stop early if a whole pass over the slice made no progress (all EAGAIN). */
            size_t fruitless = 0;
            while (w->bytes < due_bytes && fruitless < w->nfds) {
                uint64_t before = w->bytes;
                write_one(w, i);
                fruitless = w->bytes > before ? 0 : fruitless + 1;
                if (++i == w->nfds)
                    i = 0;
            }
            tick += PACE_SLICE_NS;
            if (tick < now)
                tick = now; /* behind: no sleeping until caught up, but no burst of ticks */
            struct timespec ts = {.tv_sec = (time_t)(tick / 1000000000ull),
                                  .tv_nsec = (long)(tick % 1000000000ull)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
    }
    w->end_ns = now_ns();
    w->cpu_ns = thread_cpu_ns() - cpu0;
    return NULL;
}

/* Accept `n` connections into fds; 0 or -1 when connections stop arriving. */
static int accept_all(int lfd, int *fds, long n)
{
    long got = 0;
    uint64_t last_progress = now_ns();
    while (got < n) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        poll(&p, 1, 500);
        for (;;) {
            if (got == n)
                break;
            int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fds[got++] = fd;
            last_progress = now_ns();
        }
        if (got < n && now_ns() - last_progress > SETUP_STALL_NS) {
            fprintf(stderr, "loopback_bound: only %ld of %ld connections arrived\n", got, n);
            for (long i = got; i < n; i++)
                fds[i] = -1;
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;

    int rc = 1;
    int lfd = -1, ready_pipe[2] = {-1, -1}, report_pipe[2] = {-1, -1};
    int *fds = NULL;
    char *msg = NULL;
    pid_t pids[MAX_READERS];
    long nreaders = 0;
    struct writer ws[MAX_WRITERS];
    long nthreads = 0;
    memset(ws, 0, sizeof ws);

    signal(SIGPIPE, SIG_IGN);
    rlim_t nofile = raise_nofile();
    long per_reader_max = (o.connections + o.readers - 1) / o.readers;
    if ((rlim_t)o.connections + 32 > nofile || (rlim_t)per_reader_max + 32 > nofile) {
        fprintf(stderr,
                "loopback_bound: open-file limit %llu: --connections %ld (sender) or %ld per "
                "reader is too many; lower --connections or raise --readers\n",
                (unsigned long long)nofile, o.connections, per_reader_max);
        return 2;
    }

    fds = calloc((size_t)o.connections, sizeof *fds);
    size_t chunk = (size_t)o.size * (size_t)o.batch;
    msg = malloc(chunk);
    if (!fds || !msg)
        goto out;
    for (size_t i = 0; i < chunk; i++)
        msg[i] = (char)('a' + i % 26);
    for (long i = 0; i < o.connections; i++)
        fds[i] = -1;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(lfd, 4096) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
        fprintf(stderr, "loopback_bound: listener: %s\n", strerror(errno));
        goto out;
    }
    if (pipe2(ready_pipe, O_CLOEXEC) != 0 || pipe2(report_pipe, O_CLOEXEC) != 0)
        goto out;

    fflush(NULL);
    for (long k = 0; k < o.readers; k++) {
        long first = o.connections * k / o.readers;
        long count = o.connections * (k + 1) / o.readers - first;
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "loopback_bound: fork: %s\n", strerror(errno));
            goto out;
        }
        if (pid == 0) {
            close(lfd);
            close(ready_pipe[0]);
            close(report_pipe[0]);
            int st = reader_main(ntohs(addr.sin_port), first, count, ready_pipe[1], report_pipe[1]);
            free(fds);
            free(msg);
            exit(st);
        }
        pids[nreaders++] = pid;
    }
    close(ready_pipe[1]);
    ready_pipe[1] = -1;
    close(report_pipe[1]);
    report_pipe[1] = -1;

    uint64_t setup0 = now_ns();
    if (accept_all(lfd, fds, o.connections) != 0)
        goto out;
    for (long k = 0; k < nreaders; k++) {
        char flag = 0;
        if (read(ready_pipe[0], &flag, 1) != 1 || flag != 'R') {
            fprintf(stderr, "loopback_bound: a reader failed to set up\n");
            goto out;
        }
    }
    double setup_s = (double)(now_ns() - setup0) / 1e9;

    /* Send. */
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(o.duration * 1e9);
    for (long t = 0; t < o.writers; t++) {
        long first = o.connections * t / o.writers;
        long count = o.connections * (t + 1) / o.writers - first;
        ws[t] = (struct writer){.fds = fds + first,
                                .nfds = (size_t)count,
                                .msg = msg,
                                .chunk = chunk,
                                .size = (size_t)o.size,
                                .rate = o.rate / (double)o.writers,
                                .t0 = t0,
                                .deadline = deadline};
        if (pthread_create(&ws[t].thread, NULL, writer_main, &ws[t]) != 0) {
            fprintf(stderr, "loopback_bound: pthread_create failed\n");
            break;
        }
        nthreads++;
    }
    for (long t = 0; t < nthreads; t++)
        pthread_join(ws[t].thread, NULL);
    if (nthreads < o.writers)
        goto out;

    uint64_t bytes = 0, writes = 0, eagain = 0, partial = 0, errors = 0, send_end = t0;
    double sender_cpu = 0;
    for (long t = 0; t < nthreads; t++) {
        bytes += ws[t].bytes;
        writes += ws[t].writes;
        eagain += ws[t].eagain;
        partial += ws[t].partial;
        errors += ws[t].errors;
        sender_cpu += (double)ws[t].cpu_ns / 1e9;
        if (ws[t].end_ns > send_end)
            send_end = ws[t].end_ns;
    }

    /* Shutdown: close our ends; readers drain what is buffered, see EOF and report. */
    for (long i = 0; i < o.connections; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
    uint64_t rbytes = 0, reofs = 0, last_ns = send_end;
    double reader_cpu = 0;
    int readers_ok = 1;
    for (long k = 0; k < nreaders; k++) {
        struct reader_report rep;
        if (read(report_pipe[0], &rep, sizeof rep) != (ssize_t)sizeof rep || !rep.ok) {
            readers_ok = 0;
            continue;
        }
        rbytes += rep.bytes;
        reofs += rep.eofs;
        reader_cpu += rep.cpu_s;
        if (rep.last_ns > last_ns)
            last_ns = rep.last_ns;
    }
    for (long k = 0; k < nreaders; k++) {
        int st = 0;
        if (waitpid(pids[k], &st, 0) == pids[k] && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
            readers_ok = 0;
    }
    nreaders = 0;
    double sender_rusage = rusage_s(RUSAGE_SELF);
    double readers_rusage = rusage_s(RUSAGE_CHILDREN);

    double send_s = (double)(send_end - t0) / 1e9;
    double recv_s = (double)(last_ns - t0) / 1e9;
    double drain_ms = (double)(last_ns - send_end) / 1e6;
    uint64_t sent = bytes / (uint64_t)o.size, recvd = rbytes / (uint64_t)o.size;
    double sent_ps = send_s > 0 ? (double)sent / send_s : 0;
    double recv_ps = recv_s > 0 ? (double)recvd / recv_s : 0;
    double s_us = sent ? sender_cpu * 1e6 / (double)sent : 0;
    double r_us = recvd ? reader_cpu * 1e6 / (double)recvd : 0;
    double t_us = sent ? (sender_cpu + reader_cpu) * 1e6 / (double)sent : 0;
    double w_us = writes ? sender_cpu * 1e6 / (double)writes : 0;

    printf("loopback_bound: %ld conns, %ld reader(s), %ld writer(s), %ld B x %ld/write, rate %s: "
           "sent %.0f msg/s, received %.0f msg/s (%" PRIu64 "/%" PRIu64 " msgs, drain %.0f ms), "
           "%" PRIu64 " writes, EAGAIN %" PRIu64 ", partial %" PRIu64 ", errors %" PRIu64 "; "
           "CPU sender %.2f s (%.2f us/msg, %.2f us/write), readers %.2f s (%.2f us/msg), "
           "total %.2f us/msg; rusage sender %.2f s, readers %.2f s incl. setup (%.1f s)%s\n",
           o.connections, o.readers, o.writers, o.size, o.batch, o.rate > 0 ? "paced" : "max",
           sent_ps, recv_ps, recvd, sent, drain_ms, writes, eagain, partial, errors, sender_cpu,
           s_us, w_us, reader_cpu, r_us, t_us, sender_rusage, readers_rusage, setup_s,
           readers_ok ? "" : " [READER FAILED]");
    if (o.rate > 0)
        printf("  target rate %.0f msg/s\n", o.rate);
    if (o.json)
        printf("{\"tool\":\"loopback_bound\",\"connections\":%ld,\"readers\":%ld,\"writers\":%ld,"
               "\"size\":%ld,\"batch\":%ld,\"rate\":%.0f,\"duration_s\":%.3f,"
               "\"sent_msgs\":%" PRIu64 ",\"sent_per_s\":%.0f,\"recv_msgs\":%" PRIu64
               ",\"recv_per_s\":%.0f,\"drain_ms\":%.1f,\"writes\":%" PRIu64 ",\"eagain\":%" PRIu64
               ",\"partial_writes\":%" PRIu64 ",\"write_errors\":%" PRIu64 ",\"eofs\":%" PRIu64
               ",\"sender_cpu_s\":%.3f,\"reader_cpu_s\":%.3f,"
               "\"sender_us_per_msg\":%.3f,\"sender_us_per_write\":%.3f,"
               "\"reader_us_per_msg\":%.3f,\"total_us_per_msg\":%.3f,"
               "\"sender_rusage_s\":%.3f,\"readers_rusage_s\":%.3f,\"setup_s\":%.3f,"
               "\"ok\":%s}\n",
               o.connections, o.readers, o.writers, o.size, o.batch, o.rate, send_s, sent, sent_ps,
               recvd, recv_ps, drain_ms, writes, eagain, partial, errors, reofs, sender_cpu,
               reader_cpu, s_us, w_us, r_us, t_us, sender_rusage, readers_rusage, setup_s,
               readers_ok ? "true" : "false");
    rc = readers_ok && rbytes == bytes ? 0 : 1;
out:
    if (fds) {
        for (long i = 0; i < o.connections; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    }
    if (lfd >= 0)
        close(lfd);
    for (int i = 0; i < 2; i++) {
        if (ready_pipe[i] >= 0)
            close(ready_pipe[i]);
        if (report_pipe[i] >= 0)
            close(report_pipe[i]);
    }
    for (long k = 0; k < nreaders; k++) {
        kill(pids[k], SIGTERM);
        waitpid(pids[k], NULL, 0);
    }
    free(fds);
    free(msg);
    return rc;
}
