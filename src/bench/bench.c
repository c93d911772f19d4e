/*
 * Streaming-benchmark helpers (rta/bench.h): the log-linear latency histogram, the latency
 * encoding carried in TVL values, and the small frame scanners of the benchmark client. Only
 * tools/rta-bench.c and the unit tests use this file; rtad never calls it.
 */
#include "rta/bench.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PERIOD_BITS 40
#define PERIOD ((int64_t)1 << PERIOD_BITS)

void rta_bench_hist_reset(rta_bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

size_t rta_bench_hist_index(uint64_t v)
{
    const uint64_t limit = ((uint64_t)1 << (RTA_BENCH_MAX_EXP + 1)) - 1;
    if (v > limit)
        v = limit;
    if (v < RTA_BENCH_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    uint64_t sub = (v >> (e - RTA_BENCH_SUB_BITS)) & (RTA_BENCH_SUB - 1);
    return (size_t)(e - RTA_BENCH_SUB_BITS + 1) * RTA_BENCH_SUB + (size_t)sub;
}

uint64_t rta_bench_hist_lower(size_t i)
{
    if (i < RTA_BENCH_SUB)
        return i;
    unsigned e = (unsigned)(i / RTA_BENCH_SUB) + RTA_BENCH_SUB_BITS - 1;
    uint64_t sub = i % RTA_BENCH_SUB;
    return (RTA_BENCH_SUB + sub) << (e - RTA_BENCH_SUB_BITS);
}

static uint64_t bucket_width(size_t i)
{
    if (i < RTA_BENCH_SUB)
        return 1;
    unsigned e = (unsigned)(i / RTA_BENCH_SUB) + RTA_BENCH_SUB_BITS - 1;
    return (uint64_t)1 << (e - RTA_BENCH_SUB_BITS);
}

void rta_bench_hist_record(rta_bench_hist *h, uint64_t v)
{
    h->counts[rta_bench_hist_index(v)]++;
    h->total++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

void rta_bench_hist_merge(rta_bench_hist *dst, const rta_bench_hist *src)
{
    for (size_t i = 0; i < RTA_BENCH_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t rta_bench_hist_quantile(const rta_bench_hist *h, double q)
{
    if (h->total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < RTA_BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t w = bucket_width(i);
            uint64_t v = rta_bench_hist_lower(i) + (w > 1 ? w / 2 : 0);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double rta_bench_tvl_encode(int64_t now_us, unsigned parity)
{
    int64_t rel = now_us & (PERIOD - 1);
    return (double)(rel + (parity & 1u ? PERIOD : 0));
}

int64_t rta_bench_latency_us(double tvl, int64_t now_us)
{
    if (!isfinite(tvl) || tvl < 0 || tvl >= (double)(2 * PERIOD) || tvl != floor(tvl))
        return -1;
    int64_t sent = (int64_t)tvl & (PERIOD - 1);
    int64_t d = ((now_us & (PERIOD - 1)) - sent + PERIOD) & (PERIOD - 1);
    if (d > PERIOD / 2)
        return -1; /* the receiver's clock is behind the sender's: not a latency */
    return d;
}

int rta_bench_json_number(const char *text, size_t len, const char *field, double *out)
{
    size_t flen = strlen(field);
    const char *end = text + len;
    const char *p = text;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q || (size_t)(end - q) < flen + 2)
            return -1;
        if (memcmp(q + 1, field, flen) == 0 && q[flen + 1] == '"') {
            const char *v = q + flen + 2;
            while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
                v++;
            if (v < end && *v == ':') {
                v++;
                while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
                    v++;
                /* strtod needs a terminated string: copy the number (at most 63 chars). */
                char num[64];
                size_t n = 0;
                while (v + n < end && n < sizeof num - 1 &&
                       (isdigit((unsigned char)v[n]) || v[n] == '-' || v[n] == '+' || v[n] == '.' ||
                        v[n] == 'e' || v[n] == 'E'))
                    n++;
                if (n == 0)
                    return -1;
                memcpy(num, v, n);
                num[n] = '\0';
                char *stop;
                double d = strtod(num, &stop);
                if (*stop != '\0')
                    return -1;
                *out = d;
                return 0;
            }
        }
        p = q + 1;
    }
    return -1;
}

/* After "4<type>": "/nsp," for a non-root namespace, nothing for "/". Returns the offset just
 * past the namespace part, or 0 when the packet belongs to another namespace. */
static size_t skip_nsp(const char *text, size_t len, size_t at, const char *nsp)
{
    size_t nlen = strlen(nsp);
    if (nlen == 0 || (nlen == 1 && nsp[0] == '/')) {
        if (at < len && text[at] == '/')
            return 0;
        return at;
    }
    if (len - at < nlen || memcmp(text + at, nsp, nlen) != 0)
        return 0;
    at += nlen;
    if (at == len)
        return at;
    if (text[at] != ',')
        return 0; /* "/v1/realtimeX" */
    return at + 1;
}

rta_bench_sio_kind rta_bench_sio_classify(const char *text, size_t len, const char *nsp,
                                          char *event, size_t evlen)
{
    if (event && evlen)
        event[0] = '\0';
    if (len == 0)
        return RTA_BENCH_SIO_OTHER;
    switch (text[0]) {
    case '0':
        return RTA_BENCH_SIO_OPEN;
    case '1':
        return RTA_BENCH_SIO_CLOSE;
    case '2':
        return len == 1 ? RTA_BENCH_SIO_PING : RTA_BENCH_SIO_OTHER;
    case '4':
        break;
    default:
        return RTA_BENCH_SIO_OTHER;
    }
    if (len < 2)
        return RTA_BENCH_SIO_OTHER;
    char type = text[1];
    size_t at = skip_nsp(text, len, 2, nsp);
    if (at == 0)
        return RTA_BENCH_SIO_OTHER;
    switch (type) {
    case '0':
        return RTA_BENCH_SIO_CONNECT;
    case '1':
        return RTA_BENCH_SIO_DISCONNECT;
    case '4':
        return RTA_BENCH_SIO_CONNECT_ERROR;
    case '2':
        break;
    default:
        return RTA_BENCH_SIO_OTHER;
    }
    while (at < len && isdigit((unsigned char)text[at]))
        at++; /* ack id */
    if (at >= len || text[at] != '[')
        return RTA_BENCH_SIO_OTHER;
    if (event && evlen) {
        size_t i = at + 1;
        if (i < len && text[i] == '"') {
            size_t n = 0;
            for (i++; i < len && text[i] != '"' && n + 1 < evlen; i++)
                event[n++] = text[i];
            event[n] = '\0';
        }
    }
    return RTA_BENCH_SIO_EVENT;
}
