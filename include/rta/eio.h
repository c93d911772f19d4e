/*
 * Engine.IO protocol v4 packet codec (https://socket.io/docs/v4/engine-io-protocol/).
 * Transport-independent: no sessions, timers or sockets here.
 *
 * Wire forms handled:
 *   WebSocket text frame    <type digit>[data]            e.g. "4hello", "2probe"
 *   WebSocket binary frame  raw bytes = one binary message packet
 *   polling payload         packets joined by '\x1e'; a binary message is "b<base64>"
 *                           e.g. "4hello\x1ebAQIDBA==\x1e2"
 *
 * Decoding works in place: text packet data points into the caller's buffer, and base64
 * is decoded over its own bytes (the output is never longer than the input), so decoding
 * allocates nothing and the caller's buffer must outlive the packets. All functions are
 * reentrant; none keeps state.
 */
#ifndef RTA_EIO_H
#define RTA_EIO_H

#include <stdbool.h>
#include <stddef.h>

#include "rta/buf.h"

typedef enum {
    RTA_EIO_OPEN = 0,
    RTA_EIO_CLOSE = 1,
    RTA_EIO_PING = 2,
    RTA_EIO_PONG = 3,
    RTA_EIO_MESSAGE = 4,
    RTA_EIO_UPGRADE = 5,
    RTA_EIO_NOOP = 6,
} rta_eio_type;

enum {
    RTA_EIO_ERR_EMPTY = -1,     /* a packet with no type character */
    RTA_EIO_ERR_TYPE = -2,      /* type character is not '0'..'6' (nor 'b' in text forms) */
    RTA_EIO_ERR_BASE64 = -3,    /* 'b' packet whose data is not valid base64 */
    RTA_EIO_ERR_TOO_MANY = -4,  /* payload holds more packets than the caller allows */
    RTA_EIO_ERR_TOO_LARGE = -5, /* input over the caller's byte limit, or output buffer full */
    RTA_EIO_ERR_ARG = -6,       /* invalid argument (bad type for encoding, NULL pointer) */
};

#define RTA_EIO_SEPARATOR '\x1e'
/* Length of a generated session id (15 random bytes in base64url). */
#define RTA_EIO_SID_LEN 20

typedef struct {
    rta_eio_type type;
    bool binary;      /* data is bytes (binary frame or 'b' packet), not UTF-8 text */
    const char *data; /* points into the decoded buffer; not NUL-terminated; NULL if len 0 */
    size_t len;
} rta_eio_packet;

typedef struct {
    size_t max_packets; /* most packets in one payload (e.g. 64) */
    size_t max_bytes;   /* largest payload accepted (the maxPayload announced, e.g. 1e6) */
} rta_eio_limits;

/* Human message for an RTA_EIO_ERR_* code; never NULL. */
const char *rta_eio_strerror(int err);
/* "open", "close", ... for a type; "unknown" otherwise. */
const char *rta_eio_type_name(int type);

/*
 * Decodes one text packet (a WebSocket text frame, or one element of a payload) in place.
 * "4hello" -> MESSAGE "hello"; "b<base64>" -> binary MESSAGE (decoded over buf).
 * Returns 0 or RTA_EIO_ERR_EMPTY / _TYPE / _BASE64.
 */
int rta_eio_decode_packet(char *buf, size_t len, rta_eio_packet *out);

/* A WebSocket binary frame is one binary MESSAGE packet with the frame's bytes. Never fails. */
void rta_eio_decode_binary(const void *buf, size_t len, rta_eio_packet *out);

/*
 * Decodes an HTTP long-polling POST body in place into out[0..*count). The body is split
 * on '\x1e' and each element decoded as by rta_eio_decode_packet(). Returns 0, or
 * RTA_EIO_ERR_TOO_LARGE when len > lim->max_bytes, RTA_EIO_ERR_TOO_MANY when the body holds
 * more than lim->max_packets (and more than out_cap) packets, or the first packet error (an
 * empty body is one empty packet: RTA_EIO_ERR_EMPTY). On error *count is 0.
 */
int rta_eio_decode_payload(char *body, size_t len, const rta_eio_limits *lim, rta_eio_packet *out,
                           size_t out_cap, size_t *count);

/*
 * Appends one packet as text: "<type><data>" for text packets, "b<base64>" for binary ones
 * (binary is only valid for MESSAGE). This is the WebSocket text-frame form and one
 * payload element. Returns 0, RTA_EIO_ERR_ARG, or RTA_EIO_ERR_TOO_LARGE if out is full
 * (out is then left as it was).
 */
int rta_eio_encode_packet(rta_dbuf *out, const rta_eio_packet *p);

/*
 * Appends packets to a polling payload: a '\x1e' before each packet when out is not empty,
 * then rta_eio_encode_packet(). Same returns; on error out is left as it was.
 */
int rta_eio_encode_payload(rta_dbuf *out, const rta_eio_packet *pkts, size_t n);

/*
 * Appends the open packet: 0{"sid":...,"upgrades":["websocket"] or [],"pingInterval":...,
 * "pingTimeout":...,"maxPayload":...}. upgrade_websocket is true for a polling session
 * (it may upgrade) and false for a session that is already WebSocket. 0, RTA_EIO_ERR_ARG,
 * or RTA_EIO_ERR_TOO_LARGE.
 */
int rta_eio_encode_open(rta_dbuf *out, const char *sid, bool upgrade_websocket,
                        unsigned ping_interval_ms, unsigned ping_timeout_ms, size_t max_payload);

/* Writes a new random session id (RTA_EIO_SID_LEN base64url chars + NUL). 0 or -1. */
int rta_eio_sid_generate(char out[RTA_EIO_SID_LEN + 1]);

/* Base64 helpers shared with the Socket.IO codec.
 * rta_eio_base64_decode: standard alphabet, '=' padding optional but only at the end;
 * decodes in into out (out may equal in); returns the decoded length or -1. */
long rta_eio_base64_decode(const char *in, size_t len, unsigned char *out);
/* Appends the padded standard base64 of data to out; 0 or RTA_EIO_ERR_TOO_LARGE. */
int rta_eio_base64_append(rta_dbuf *out, const void *data, size_t len);

#endif
