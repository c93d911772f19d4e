/* Bounded growable buffers and refcounted byte strings; see rta/buf.h. */
#include "rta/buf.h"
#include "rta/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rta_dbuf_init(rta_dbuf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void rta_dbuf_free(rta_dbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void rta_dbuf_reset(rta_dbuf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(rta_dbuf *b, size_t extra)
{
    if (extra > b->max || b->len + extra > b->max)
        return -1;
    size_t need = b->len + extra + 1; /* room for a NUL */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    b->data = rta_xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int rta_dbuf_append(rta_dbuf *b, const void *data, size_t len)
{
    if (reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int rta_dbuf_puts(rta_dbuf *b, const char *s)
{
    return rta_dbuf_append(b, s, strlen(s));
}

int rta_dbuf_vprintf(rta_dbuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || reserve(b, (size_t)n) != 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int rta_dbuf_printf(rta_dbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = rta_dbuf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void rta_dbuf_consume(rta_dbuf *b, size_t n)
{
    if (n >= b->len) {
        rta_dbuf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *rta_dbuf_steal(rta_dbuf *b, size_t *len)
{
    if (b->data == NULL)
        rta_dbuf_append(b, "", 0);
    char *d = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

rta_rbuf *rta_rbuf_new(const void *data, size_t len)
{
    rta_rbuf *r = rta_xmalloc(sizeof *r + len + 1);
    r->refcnt = 1;
    r->len = len;
    if (data)
        memcpy(r->data, data, len);
    r->data[len] = '\0';
    return r;
}

rta_rbuf *rta_rbuf_from_dbuf(rta_dbuf *b)
{
    rta_rbuf *r = rta_rbuf_new(b->data, b->len);
    rta_dbuf_reset(b);
    return r;
}

void rta_rbuf_unref(rta_rbuf *b)
{
    if (b != NULL && --b->refcnt == 0)
        free(b);
}
