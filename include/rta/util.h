/*
 * Small helpers shared by every module: clocks, ISO-8601, UUIDv7, random bytes, hex.
 */
#ifndef RTA_UTIL_H
#define RTA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define RTA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock, milliseconds since the Unix epoch. */
int64_t rta_now_ms(void);
/* Wall clock, microseconds since the Unix epoch (latency measured across processes). */
int64_t rta_now_us(void);
/* Monotonic clock in nanoseconds, for durations. */
uint64_t rta_mono_ns(void);

/* Formats ms since epoch as "2026-11-27T14:00:00.123Z". out needs >= 25 bytes. */
void rta_time_iso8601(int64_t ms, char *out, size_t outlen);
/* Parses ISO-8601 UTC ("2026-11-27T14:00:00Z", optional fraction, "Z" or +hh:mm offset)
 * into ms since epoch. Returns 0 or -1 when malformed. */
int rta_time_parse_iso8601(const char *s, int64_t *out_ms);

/* Fills buf with cryptographically secure random bytes (OpenSSL RAND_bytes). 0 or -1. */
int rta_random_bytes(void *buf, size_t len);

/* UUIDv7 (RFC 9562) from ms timestamp + random bits, as 36 chars + NUL. Monotonic within a ms. */
void rta_uuid_v7(char out[37]);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void rta_hex_encode(const unsigned char *in, size_t len, char *out);

/* Constant-time comparison of two equal-length byte strings; 1 when equal. */
int rta_const_eq(const void *a, const void *b, size_t len);

/* strdup that aborts on out-of-memory (the process cannot go on without memory). */
char *rta_strdup(const char *s);
void *rta_xmalloc(size_t n);
void *rta_xcalloc(size_t n, size_t size);
void *rta_xrealloc(void *p, size_t n);

#endif
