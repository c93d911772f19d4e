/* Unit tests for src/socketio/eio.c: Engine.IO v4 packets, payloads, open packet, sid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "rta/eio.h"
#include "rta/util.h"

static const rta_eio_limits lim = {.max_packets = 16, .max_bytes = 1000};

/* Decodes a payload from a string literal (copied, since decoding works in place). */
static int decode(const char *s, size_t len, char *scratch, rta_eio_packet *pkts, size_t *n)
{
    memcpy(scratch, s, len);
    return rta_eio_decode_payload(scratch, len, &lim, pkts, 16, n);
}

static void assert_pkt(const rta_eio_packet *p, rta_eio_type type, bool binary, const char *data,
                       size_t len)
{
    assert_int_equal(p->type, type);
    assert_int_equal(p->binary, binary);
    assert_int_equal(p->len, len);
    if (len)
        assert_memory_equal(p->data, data, len);
}

static void test_decode_single_packets(void **state)
{
    (void)state;
    rta_eio_packet p;
    char buf[32];
    static const struct {
        const char *in;
        rta_eio_type type;
        const char *data;
    } ok[] = {
        {"0", RTA_EIO_OPEN, ""},           {"1", RTA_EIO_CLOSE, ""},
        {"2", RTA_EIO_PING, ""},           {"2probe", RTA_EIO_PING, "probe"},
        {"3probe", RTA_EIO_PONG, "probe"}, {"4hello", RTA_EIO_MESSAGE, "hello"},
        {"5", RTA_EIO_UPGRADE, ""},        {"6", RTA_EIO_NOOP, ""},
        {"4", RTA_EIO_MESSAGE, ""},        {"4\xe2\x82\xac", RTA_EIO_MESSAGE, "\xe2\x82\xac"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(ok); i++) {
        size_t len = strlen(ok[i].in);
        memcpy(buf, ok[i].in, len);
        assert_int_equal(rta_eio_decode_packet(buf, len, &p), 0);
        assert_pkt(&p, ok[i].type, false, ok[i].data, strlen(ok[i].data));
        if (p.len == 0)
            assert_null(p.data);
    }
}

static void test_decode_invalid_packets(void **state)
{
    (void)state;
    rta_eio_packet p;
    char buf[16];
    /* "abc" is the malformed input of the official test suite */
    static const char *const bad_type[] = {"abc", "7", "9x", "/", " 4", "\x1e", "-1", "B"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(bad_type); i++) {
        size_t len = strlen(bad_type[i]);
        memcpy(buf, bad_type[i], len);
        assert_int_equal(rta_eio_decode_packet(buf, len, &p), RTA_EIO_ERR_TYPE);
    }
    assert_int_equal(rta_eio_decode_packet(buf, 0, &p), RTA_EIO_ERR_EMPTY);
    memcpy(buf,
           "\0"
           "4",
           2);
    assert_int_equal(rta_eio_decode_packet(buf, 2, &p), RTA_EIO_ERR_TYPE);
    static const char *const bad_b64[] = {
        "bA", "bAQIDBA=", "bAQID*A==", "b====", "bA=B=", "bAQIDBA===", "bAQ-D", "bAQ ID"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(bad_b64); i++) {
        size_t len = strlen(bad_b64[i]);
        memcpy(buf, bad_b64[i], len);
        int rc = rta_eio_decode_packet(buf, len, &p);
        if (rc != RTA_EIO_ERR_BASE64)
            fail_msg("\"%s\": got %d", bad_b64[i], rc);
    }
    assert_string_equal(rta_eio_strerror(RTA_EIO_ERR_BASE64), "invalid base64 in binary packet");
}

static void test_decode_binary(void **state)
{
    (void)state;
    rta_eio_packet p;
    char buf[32];
    memcpy(buf, "bAQIDBA==", 9);
    assert_int_equal(rta_eio_decode_packet(buf, 9, &p), 0);
    assert_pkt(&p, RTA_EIO_MESSAGE, true, "\x01\x02\x03\x04", 4);
    /* unpadded base64 is accepted too */
    memcpy(buf, "bAQIDBA", 7);
    assert_int_equal(rta_eio_decode_packet(buf, 7, &p), 0);
    assert_pkt(&p, RTA_EIO_MESSAGE, true, "\x01\x02\x03\x04", 4);
    memcpy(buf, "b", 1);
    assert_int_equal(rta_eio_decode_packet(buf, 1, &p), 0);
    assert_pkt(&p, RTA_EIO_MESSAGE, true, "", 0);
    memcpy(buf, "b/+/+", 5);
    assert_int_equal(rta_eio_decode_packet(buf, 5, &p), 0);
    assert_pkt(&p, RTA_EIO_MESSAGE, true, "\xff\xef\xfe", 3);

    const unsigned char frame[] = {1, 2, 3, 4, 0};
    rta_eio_decode_binary(frame, sizeof frame, &p);
    assert_pkt(&p, RTA_EIO_MESSAGE, true, (const char *)frame, sizeof frame);
}

static void test_decode_payloads(void **state)
{
    (void)state;
    rta_eio_packet pk[16];
    size_t n = 99;
    char s[256];

    /* the examples of the protocol document and test suite */
    const char p1[] = "4hello\x1e"
                      "2\x1e"
                      "4world";
    assert_int_equal(decode(p1, sizeof p1 - 1, s, pk, &n), 0);
    assert_int_equal(n, 3);
    assert_pkt(&pk[0], RTA_EIO_MESSAGE, false, "hello", 5);
    assert_pkt(&pk[1], RTA_EIO_PING, false, "", 0);
    assert_pkt(&pk[2], RTA_EIO_MESSAGE, false, "world", 5);

    const char p2[] = "4hello\x1e"
                      "bAQIDBA==";
    assert_int_equal(decode(p2, sizeof p2 - 1, s, pk, &n), 0);
    assert_int_equal(n, 2);
    assert_pkt(&pk[0], RTA_EIO_MESSAGE, false, "hello", 5);
    assert_pkt(&pk[1], RTA_EIO_MESSAGE, true, "\x01\x02\x03\x04", 4);

    const char p3[] = "4test1\x1e"
                      "4test2\x1e"
                      "4test3";
    assert_int_equal(decode(p3, sizeof p3 - 1, s, pk, &n), 0);
    assert_int_equal(n, 3);
    assert_pkt(&pk[2], RTA_EIO_MESSAGE, false, "test3", 5);

    const char p4[] = "42[\"hello\"]\x1e"
                      "42[\"world\"]";
    assert_int_equal(decode(p4, sizeof p4 - 1, s, pk, &n), 0);
    assert_int_equal(n, 2);
    assert_pkt(&pk[1], RTA_EIO_MESSAGE, false, "2[\"world\"]", 10);

    assert_int_equal(decode("3", 1, s, pk, &n), 0);
    assert_int_equal(n, 1);
    assert_pkt(&pk[0], RTA_EIO_PONG, false, "", 0);
}

static void test_decode_payload_errors(void **state)
{
    (void)state;
    rta_eio_packet pk[16];
    size_t n = 99;
    char s[2048];

    assert_int_equal(decode("abc", 3, s, pk, &n), RTA_EIO_ERR_TYPE);
    assert_int_equal(n, 0);
    assert_int_equal(decode("", 0, s, pk, &n), RTA_EIO_ERR_EMPTY);
    const char trailing[] = "4a\x1e";
    assert_int_equal(decode(trailing, sizeof trailing - 1, s, pk, &n), RTA_EIO_ERR_EMPTY);
    const char doubled[] = "4a\x1e\x1e"
                           "4b";
    assert_int_equal(decode(doubled, sizeof doubled - 1, s, pk, &n), RTA_EIO_ERR_EMPTY);
    const char leading[] = "\x1e"
                           "4a";
    assert_int_equal(decode(leading, sizeof leading - 1, s, pk, &n), RTA_EIO_ERR_EMPTY);
    const char badb64[] = "4a\x1e"
                          "b!!!!";
    assert_int_equal(decode(badb64, sizeof badb64 - 1, s, pk, &n), RTA_EIO_ERR_BASE64);
    assert_int_equal(n, 0);
    const char badtype[] = "4a\x1e"
                           "8b";
    assert_int_equal(decode(badtype, sizeof badtype - 1, s, pk, &n), RTA_EIO_ERR_TYPE);

    /* 17 packets > max 16 */
    size_t len = 0;
    for (int i = 0; i < 17; i++) {
        if (i)
            s[len++] = '\x1e';
        s[len++] = '2';
    }
    assert_int_equal(rta_eio_decode_payload(s, len, &lim, pk, 16, &n), RTA_EIO_ERR_TOO_MANY);
    assert_int_equal(n, 0);
    /* the output array bounds it too */
    assert_int_equal(rta_eio_decode_payload(s, 3, &lim, pk, 1, &n), RTA_EIO_ERR_TOO_MANY);
    assert_int_equal(rta_eio_decode_payload(s, 3, &lim, pk, 2, &n), 0);
    assert_int_equal(n, 2);

    /* bytes over the limit are refused before anything is parsed */
    memset(s, '4', 1001);
    assert_int_equal(rta_eio_decode_payload(s, 1001, &lim, pk, 16, &n), RTA_EIO_ERR_TOO_LARGE);
    assert_int_equal(rta_eio_decode_payload(s, 1000, &lim, pk, 16, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(pk[0].len, 999);
}

static void test_encode_packets(void **state)
{
    (void)state;
    rta_dbuf b;
    rta_dbuf_init(&b, 64);
    rta_eio_packet p = {.type = RTA_EIO_MESSAGE, .data = "hello", .len = 5};
    assert_int_equal(rta_eio_encode_packet(&b, &p), 0);
    assert_string_equal(b.data, "4hello");
    rta_dbuf_reset(&b);

    p = (rta_eio_packet){.type = RTA_EIO_PONG, .data = "probe", .len = 5};
    assert_int_equal(rta_eio_encode_packet(&b, &p), 0);
    assert_string_equal(b.data, "3probe");
    rta_dbuf_reset(&b);

    p = (rta_eio_packet){.type = RTA_EIO_NOOP};
    assert_int_equal(rta_eio_encode_packet(&b, &p), 0);
    assert_string_equal(b.data, "6");
    rta_dbuf_reset(&b);

    p = (rta_eio_packet){.type = RTA_EIO_MESSAGE, .binary = true, .data = "\1\2\3\4", .len = 4};
    assert_int_equal(rta_eio_encode_packet(&b, &p), 0);
    assert_string_equal(b.data, "bAQIDBA==");
    rta_dbuf_reset(&b);

    /* binary is only for messages; bad type; data missing */
    p.type = RTA_EIO_PING;
    assert_int_equal(rta_eio_encode_packet(&b, &p), RTA_EIO_ERR_ARG);
    p = (rta_eio_packet){.type = (rta_eio_type)7};
    assert_int_equal(rta_eio_encode_packet(&b, &p), RTA_EIO_ERR_ARG);
    p = (rta_eio_packet){.type = RTA_EIO_MESSAGE, .len = 3};
    assert_int_equal(rta_eio_encode_packet(&b, &p), RTA_EIO_ERR_ARG);
    assert_int_equal(b.len, 0);

    /* out of room: buffer left as it was */
    assert_int_equal(rta_dbuf_puts(&b, "keep"), 0);
    char big[100];
    memset(big, 'x', sizeof big);
    p = (rta_eio_packet){.type = RTA_EIO_MESSAGE, .data = big, .len = sizeof big};
    assert_int_equal(rta_eio_encode_packet(&b, &p), RTA_EIO_ERR_TOO_LARGE);
    p.binary = true;
    p.len = 50; /* 68 base64 chars */
    assert_int_equal(rta_eio_encode_packet(&b, &p), RTA_EIO_ERR_TOO_LARGE);
    assert_string_equal(b.data, "keep");
    rta_dbuf_free(&b);
}

static void test_encode_payload_roundtrip(void **state)
{
    (void)state;
    rta_dbuf b;
    rta_dbuf_init(&b, 1024);
    const rta_eio_packet in[] = {
        {.type = RTA_EIO_MESSAGE, .data = "hello", .len = 5},
        {.type = RTA_EIO_MESSAGE, .binary = true, .data = "\1\2\3\4", .len = 4},
        {.type = RTA_EIO_PING},
        {.type = RTA_EIO_MESSAGE, .binary = true, .data = "\0\xff", .len = 2},
        {.type = RTA_EIO_MESSAGE, .binary = true, .data = "abc", .len = 3},
    };
    assert_int_equal(rta_eio_encode_payload(&b, in, 2), 0);
    assert_string_equal(b.data, "4hello\x1e"
                                "bAQIDBA==");
    assert_int_equal(rta_eio_encode_payload(&b, in + 2, 3), 0);
    assert_string_equal(b.data, "4hello\x1e"
                                "bAQIDBA==\x1e"
                                "2\x1e"
                                "bAP8=\x1e"
                                "bYWJj");

    rta_eio_packet out[16];
    size_t n;
    assert_int_equal(rta_eio_decode_payload(b.data, b.len, &lim, out, 16, &n), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_pkt(&out[i], in[i].type, in[i].binary, in[i].data, in[i].len);

    /* a failing payload append leaves the buffer untouched */
    rta_dbuf small;
    rta_dbuf_init(&small, 12);
    assert_int_equal(rta_eio_encode_payload(&small, in, 2), RTA_EIO_ERR_TOO_LARGE);
    assert_int_equal(small.len, 0);
    rta_dbuf_free(&small);
    rta_dbuf_free(&b);
}

static void test_base64_all_lengths(void **state)
{
    (void)state;
    unsigned char data[64], dec[96];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + 11);
    rta_dbuf b;
    rta_dbuf_init(&b, 256);
    for (size_t len = 0; len <= sizeof data; len++) {
        rta_dbuf_reset(&b);
        assert_int_equal(rta_eio_base64_append(&b, data, len), 0);
        assert_int_equal(b.len, (len + 2) / 3 * 4);
        long n = rta_eio_base64_decode(b.data, b.len, dec);
        assert_int_equal(n, (long)len);
        assert_memory_equal(dec, data, len);
        /* in place */
        n = rta_eio_base64_decode(b.data, b.len, (unsigned char *)b.data);
        assert_int_equal(n, (long)len);
        if (len)
            assert_memory_equal(b.data, data, len);
    }
    rta_dbuf_free(&b);
}

static void test_open_packet(void **state)
{
    (void)state;
    rta_dbuf b;
    rta_dbuf_init(&b, 512);
    assert_int_equal(rta_eio_encode_open(&b, "lv_VI97HAXpY6yYWAAAC", true, 25000, 20000, 1000000),
                     0);
    assert_string_equal(b.data, "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],"
                                "\"pingInterval\":25000,\"pingTimeout\":20000,"
                                "\"maxPayload\":1000000}");
    /* what the test suite checks: exactly these keys, types and values */
    json_t *j = json_loads(b.data + 1, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 5);
    assert_int_equal(json_integer_value(json_object_get(j, "maxPayload")), 1000000);
    json_decref(j);

    rta_dbuf_reset(&b);
    assert_int_equal(rta_eio_encode_open(&b, "abc", false, 300, 200, 1000000), 0);
    assert_string_equal(b.data, "0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":300,"
                                "\"pingTimeout\":200,\"maxPayload\":1000000}");
    assert_int_equal(rta_eio_encode_open(&b, NULL, false, 1, 1, 1), RTA_EIO_ERR_ARG);
    rta_dbuf_free(&b);

    rta_dbuf small;
    rta_dbuf_init(&small, 16);
    assert_int_equal(rta_eio_encode_open(&small, "abc", true, 1, 1, 1), RTA_EIO_ERR_TOO_LARGE);
    assert_int_equal(small.len, 0);
    rta_dbuf_free(&small);
}

static void test_sid(void **state)
{
    (void)state;
    char a[RTA_EIO_SID_LEN + 1], b[RTA_EIO_SID_LEN + 1];
    assert_int_equal(rta_eio_sid_generate(a), 0);
    assert_int_equal(rta_eio_sid_generate(b), 0);
    assert_int_equal(strlen(a), RTA_EIO_SID_LEN);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < RTA_EIO_SID_LEN; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(rta_eio_type_name(RTA_EIO_UPGRADE), "upgrade");
    assert_string_equal(rta_eio_type_name(9), "unknown");
    assert_string_equal(rta_eio_strerror(RTA_EIO_ERR_TOO_MANY), "too many packets in payload");
    assert_string_equal(rta_eio_strerror(-99), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_single_packets),
        cmocka_unit_test(test_decode_invalid_packets),
        cmocka_unit_test(test_decode_binary),
        cmocka_unit_test(test_decode_payloads),
        cmocka_unit_test(test_decode_payload_errors),
        cmocka_unit_test(test_encode_packets),
        cmocka_unit_test(test_encode_payload_roundtrip),
        cmocka_unit_test(test_base64_all_lengths),
        cmocka_unit_test(test_open_packet),
        cmocka_unit_test(test_sid),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
