/* Clocks, time formats, ids and allocation helpers; see rta/util.h. */
#include "rta/util.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t rta_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rta_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t rta_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rta_time_iso8601(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static int parse_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int rta_time_parse_iso8601(const char *s, int64_t *out_ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    const char *p = s;
    if (parse_digits(&p, 4, &y) || *p++ != '-' || parse_digits(&p, 2, &mo) || *p++ != '-' ||
        parse_digits(&p, 2, &d))
        return -1;
    int offset_min = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (parse_digits(&p, 2, &sec))
                return -1;
        }
        if (*p == '.') {
            p++;
            int scale = 100, digits = 0;
            while (*p >= '0' && *p <= '9') {
                if (digits < 3)
                    ms += (*p - '0') * scale;
                scale /= 10;
                digits++;
                p++;
            }
            if (digits == 0)
                return -1;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, oh, om;
            p++;
            if (parse_digits(&p, 2, &oh))
                return -1;
            if (*p == ':')
                p++;
            if (parse_digits(&p, 2, &om))
                return -1;
            offset_min = sign * (oh * 60 + om);
        } else {
            return -1; /* a time without zone is ambiguous: refuse it */
        }
    }
    if (*p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
    return 0;
}

int rta_random_bytes(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

void rta_uuid_v7(char out[37])
{
    static int64_t last_ms;
    static uint16_t seq;
    unsigned char b[16];
    rta_random_bytes(b, sizeof b);
    int64_t ms = rta_now_ms();
    if (ms <= last_ms) {
        ms = last_ms;
        seq++;
    } else {
        last_ms = ms;
        seq = (uint16_t)((b[6] << 8 | b[7]) & 0x07ff); /* random start leaves room to count */
    }
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((seq >> 8) & 0x0f)); /* version 7, rand_a carries a counter */
    b[7] = (unsigned char)(seq & 0xff);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f)); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void rta_hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int rta_const_eq(const void *a, const void *b, size_t len)
{
    const unsigned char *x = a, *y = b;
    unsigned char acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= x[i] ^ y[i];
    return acc == 0;
}

static void oom(void)
{
    fputs("{\"level\":\"error\",\"msg\":\"out of memory\"}\n", stderr);
    abort();
}

void *rta_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom();
    return p;
}

void *rta_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom();
    return p;
}

void *rta_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom();
    return q;
}

char *rta_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = rta_xmalloc(n);
    memcpy(d, s, n);
    return d;
}
