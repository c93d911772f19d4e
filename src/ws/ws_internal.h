/*
 * Internals of src/ws/ws.c shared with the fuzz target (tests/fuzz/fuzz_ws_frames.c): the
 * permessage-deflate receive path and the UTF-8 check it needs. Not a public contract.
 */
#ifndef RTA_WS_INTERNAL_H
#define RTA_WS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). 1 valid, 0 not. */
int rta_ws__utf8_valid(const unsigned char *s, size_t n);

/* Inflates one compressed message (RFC 7692 section 7.2.2: append 00 00 ff ff, inflate).
 * *zp is the connection's stream: created on first use with a window of window_bits (at
 * least 9), reset first when no_context_takeover, kept otherwise. Output is capped at max:
 * inflating stops one byte past it. Returns 0 and a malloc'd *out (free it), or the close
 * code: 1009 too big, 1007 corrupt, 1011 no memory (then the stream must not be used again
 * except to be freed with rta_ws__inflate_free). */
int rta_ws__inflate(z_stream **zp, int window_bits, int no_context_takeover, size_t max,
                    const uint8_t *in, size_t len, char **out, size_t *olen);
void rta_ws__inflate_free(z_stream *z);

#endif
