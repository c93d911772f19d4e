/*
 * Byte buffers.
 *
 * rta_dbuf: a growable buffer with a hard maximum (like curl's dynbuf). Appends past the
 *   maximum fail with -1 and leave the buffer as it was, so no input can grow it without bound.
 *
 * rta_rbuf: an immutable, reference-counted byte string. A broadcast frame is encoded once
 *   into an rbuf and every subscriber's write holds a reference, dropped in its write callback.
 *   Not thread-safe: rbufs live on the loop thread.
 */
#ifndef RTA_BUF_H
#define RTA_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* appends that would exceed this fail */
} rta_dbuf;

void rta_dbuf_init(rta_dbuf *b, size_t max);
void rta_dbuf_free(rta_dbuf *b);
void rta_dbuf_reset(rta_dbuf *b); /* len = 0, memory kept */
int rta_dbuf_append(rta_dbuf *b, const void *data, size_t len);
int rta_dbuf_puts(rta_dbuf *b, const char *s);
int rta_dbuf_printf(rta_dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int rta_dbuf_vprintf(rta_dbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes (consumed input). */
void rta_dbuf_consume(rta_dbuf *b, size_t n);
/* Hands the memory to the caller (NUL-terminated); the buffer is left empty. */
char *rta_dbuf_steal(rta_dbuf *b, size_t *len);

typedef struct rta_rbuf {
    unsigned refcnt;
    size_t len;
    char data[];
} rta_rbuf;

/* New rbuf with refcnt 1 holding a copy of data (data may be NULL: contents left for caller). */
rta_rbuf *rta_rbuf_new(const void *data, size_t len);
/* Takes over a dbuf's bytes into a new rbuf (refcnt 1); the dbuf is reset. */
rta_rbuf *rta_rbuf_from_dbuf(rta_dbuf *b);
static inline rta_rbuf *rta_rbuf_ref(rta_rbuf *b)
{
    b->refcnt++;
    return b;
}
void rta_rbuf_unref(rta_rbuf *b);

#endif
