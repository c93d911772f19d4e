/*
 * Pieces of the streaming benchmark (tools/rta-bench.c) that are worth testing on their own:
 *
 *  - a latency histogram with log-linear buckets (HDR-like: 32 linear sub-buckets per power of
 *    two, so a reported percentile is within ~3% of the true value), mergeable across processes;
 *  - the latency encoding carried in the TVL value: the ingest sender puts its wall clock into
 *    the value, receivers on the same machine subtract it from theirs;
 *  - tiny scanners for the frames a benchmark client receives (Socket.IO packets, JSON fields),
 *    so the hot receive path parses no more than it needs.
 *
 * Latency encoding: tvl = (now_us mod 2^40) + parity * 2^40, parity alternating 0/1 per
 * (protocol, chain) series. 2^40 us is 12.7 days, so receivers recover the send time modulo
 * that period; the alternating high bit makes every consecutive pair of values differ by
 * about 100% (any min-change setting or threshold filter still lets the event through); the
 * largest value, 2^41 ~ 2.2e12, is exact in a double and under rtad's 1e15 TVL limit.
 */
#ifndef RTA_BENCH_H
#define RTA_BENCH_H

#include <stddef.h>
#include <stdint.h>

#define RTA_BENCH_SUB_BITS 5
#define RTA_BENCH_SUB (1u << RTA_BENCH_SUB_BITS)
#define RTA_BENCH_MAX_EXP 40 /* values are clamped to < 2^41 us */
#define RTA_BENCH_HIST_BUCKETS ((RTA_BENCH_MAX_EXP - RTA_BENCH_SUB_BITS + 2) * RTA_BENCH_SUB)

typedef struct rta_bench_hist {
    uint64_t counts[RTA_BENCH_HIST_BUCKETS];
    uint64_t total;
    uint64_t max; /* largest value recorded (exact) */
    uint64_t sum; /* for the mean */
} rta_bench_hist;

void rta_bench_hist_reset(rta_bench_hist *h);
/* Records one value (microseconds). */
void rta_bench_hist_record(rta_bench_hist *h, uint64_t v);
/* Adds every count of src into dst. */
void rta_bench_hist_merge(rta_bench_hist *dst, const rta_bench_hist *src);
/* The value at quantile q in [0, 1]: the middle of the bucket holding the ceil(q * total)-th
 * smallest value, never above max. 0 when empty. */
uint64_t rta_bench_hist_quantile(const rta_bench_hist *h, double q);
/* Bucket helpers (exposed for tests): index of v, and the lowest value of bucket i. */
size_t rta_bench_hist_index(uint64_t v);
uint64_t rta_bench_hist_lower(size_t i);

/* The TVL value to send at now_us for a series whose previous value had the other parity. */
double rta_bench_tvl_encode(int64_t now_us, unsigned parity);
/* Microseconds from the send time encoded in tvl to now_us, or -1 when tvl is not a value made
 * by rta_bench_tvl_encode or the difference is implausible (negative, or over 2^39 us). */
int64_t rta_bench_latency_us(double tvl, int64_t now_us);

/* Finds "field": <number> in JSON text (first occurrence, any depth; field names in rta
 * payloads are unique) and parses the number. 0, or -1 when absent or not a number. */
int rta_bench_json_number(const char *text, size_t len, const char *field, double *out);

/* What a Socket.IO-over-WebSocket text frame is, for a client of namespace nsp. */
typedef enum {
    RTA_BENCH_SIO_OTHER = 0,
    RTA_BENCH_SIO_OPEN,          /* Engine.IO "0{...}" */
    RTA_BENCH_SIO_CLOSE,         /* Engine.IO "1" */
    RTA_BENCH_SIO_PING,          /* Engine.IO "2" (answer "3") */
    RTA_BENCH_SIO_CONNECT,       /* "40/nsp,{...}" */
    RTA_BENCH_SIO_DISCONNECT,    /* "41/nsp," */
    RTA_BENCH_SIO_EVENT,         /* "42/nsp,[...]" (possibly with an ack id) */
    RTA_BENCH_SIO_CONNECT_ERROR, /* "44/nsp,{...}" */
} rta_bench_sio_kind;

/* Classifies a frame. For EVENT, *event receives the event name (up to evlen-1 bytes, NUL
 * terminated; "" when it cannot be read) when event is not NULL. Packets for other namespaces
 * are RTA_BENCH_SIO_OTHER. */
rta_bench_sio_kind rta_bench_sio_classify(const char *text, size_t len, const char *nsp,
                                          char *event, size_t evlen);

#endif
