/* Unit tests for src/ws/handshake.c: upgrade validation, accept key, permessage-deflate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "rta/util.h"
#include "rta/ws_handshake.h"

/* A request's headers as name/value pairs, looked up case-insensitively. */
typedef struct {
    const char *name;
    const char *value;
} hdr;

typedef struct {
    hdr h[12];
    size_t n;
} hdrs;

static const char *lookup(void *ud, const char *name, size_t *len)
{
    hdrs *hs = ud;
    for (size_t i = 0; i < hs->n; i++) {
        if (strcasecmp(hs->h[i].name, name) == 0) {
            *len = strlen(hs->h[i].value);
            return hs->h[i].value;
        }
    }
    return NULL;
}

static hdrs good_request(void)
{
    hdrs hs = {.n = 5};
    hs.h[0] = (hdr){"Host", "server.example.com"};
    hs.h[1] = (hdr){"Upgrade", "websocket"};
    hs.h[2] = (hdr){"Connection", "Upgrade"};
    hs.h[3] = (hdr){"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="};
    hs.h[4] = (hdr){"Sec-WebSocket-Version", "13"};
    return hs;
}

static void set_hdr(hdrs *hs, const char *name, const char *value)
{
    for (size_t i = 0; i < hs->n; i++) {
        if (strcasecmp(hs->h[i].name, name) == 0) {
            if (value) {
                hs->h[i].value = value;
            } else { /* remove */
                hs->h[i] = hs->h[hs->n - 1];
                hs->n--;
            }
            return;
        }
    }
    if (value)
        hs->h[hs->n++] = (hdr){name, value};
}

static int check(hdrs *hs, char accept[RTA_WS_ACCEPT_LEN + 1])
{
    return rta_ws_handshake_check("GET", 1, 1, lookup, hs, accept);
}

static void test_rfc_example(void **state)
{
    (void)state;
    hdrs hs = good_request();
    char accept[RTA_WS_ACCEPT_LEN + 1];
    assert_int_equal(check(&hs, accept), RTA_WS_OK);
    /* RFC 6455 section 1.3 */
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(rta_ws_handshake_status(RTA_WS_OK), 101);
}

static void test_accept_key_direct(void **state)
{
    (void)state;
    char accept[RTA_WS_ACCEPT_LEN + 1];
    assert_int_equal(rta_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, accept), 0);
    assert_string_equal(accept, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    char big[100];
    memset(big, 'A', sizeof big);
    assert_int_equal(rta_ws_accept_key(big, sizeof big, accept), -1);
}

static void test_header_variants_accepted(void **state)
{
    (void)state;
    char accept[RTA_WS_ACCEPT_LEN + 1];
    hdrs hs = good_request();
    set_hdr(&hs, "Upgrade", "WebSocket");
    set_hdr(&hs, "Connection", "keep-alive, Upgrade");
    set_hdr(&hs, "Sec-WebSocket-Version", " 13 ");
    set_hdr(&hs, "Sec-WebSocket-Key", "  dGhlIHNhbXBsZSBub25jZQ==\t");
    assert_int_equal(check(&hs, accept), RTA_WS_OK);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    set_hdr(&hs, "Connection", "upgrade,keep-alive");
    set_hdr(&hs, "Upgrade", "h2c, websocket");
    assert_int_equal(check(&hs, accept), RTA_WS_OK);
    /* HTTP/2-style higher versions are fine for the version check */
    assert_int_equal(rta_ws_handshake_check("GET", 2, 0, lookup, &hs, accept), RTA_WS_OK);
}

static void test_method_and_version(void **state)
{
    (void)state;
    char accept[RTA_WS_ACCEPT_LEN + 1];
    hdrs hs = good_request();
    assert_int_equal(rta_ws_handshake_check("POST", 1, 1, lookup, &hs, accept), RTA_WS_ERR_METHOD);
    assert_int_equal(rta_ws_handshake_check("get", 1, 1, lookup, &hs, accept), RTA_WS_ERR_METHOD);
    assert_int_equal(rta_ws_handshake_check(NULL, 1, 1, lookup, &hs, accept), RTA_WS_ERR_METHOD);
    assert_int_equal(rta_ws_handshake_check("GET", 1, 0, lookup, &hs, accept),
                     RTA_WS_ERR_HTTP_VERSION);
    assert_int_equal(rta_ws_handshake_check("GET", 0, 9, lookup, &hs, accept),
                     RTA_WS_ERR_HTTP_VERSION);
    assert_int_equal(rta_ws_handshake_status(RTA_WS_ERR_METHOD), 400);
    assert_null(rta_ws_handshake_header(RTA_WS_ERR_METHOD));
}

typedef struct {
    const char *name;
    const char *value; /* NULL: header removed */
    int expect;
} bad_case;

static void test_bad_headers(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"Host", NULL, RTA_WS_ERR_HOST},
        {"Host", "  ", RTA_WS_ERR_HOST},
        {"Upgrade", NULL, RTA_WS_ERR_UPGRADE},
        {"Upgrade", "", RTA_WS_ERR_UPGRADE},
        {"Upgrade", "websockets", RTA_WS_ERR_UPGRADE},
        {"Upgrade", "h2c", RTA_WS_ERR_UPGRADE},
        {"Upgrade", "web socket", RTA_WS_ERR_UPGRADE},
        {"Connection", NULL, RTA_WS_ERR_CONNECTION},
        {"Connection", "keep-alive", RTA_WS_ERR_CONNECTION},
        {"Connection", "upgraded", RTA_WS_ERR_CONNECTION},
        {"Connection", "close upgrade", RTA_WS_ERR_CONNECTION},
        {"Sec-WebSocket-Version", NULL, RTA_WS_ERR_VERSION},
        {"Sec-WebSocket-Version", "8", RTA_WS_ERR_VERSION},
        {"Sec-WebSocket-Version", "13, 8", RTA_WS_ERR_VERSION},
        {"Sec-WebSocket-Version", "130", RTA_WS_ERR_VERSION},
        {"Sec-WebSocket-Key", NULL, RTA_WS_ERR_KEY},
        {"Sec-WebSocket-Key", "", RTA_WS_ERR_KEY},
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ", RTA_WS_ERR_KEY},       /* no padding */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=", RTA_WS_ERR_KEY},      /* 23 chars */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ===", RTA_WS_ERR_KEY},    /* 25 chars */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ-==", RTA_WS_ERR_KEY},     /* url alphabet */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j ZQ=", RTA_WS_ERR_KEY},     /* inner space */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQdE", RTA_WS_ERR_KEY},     /* 18 bytes */
        {"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", RTA_WS_ERR_KEY}, /* 21 bytes */
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(cases); i++) {
        hdrs hs = good_request();
        char accept[RTA_WS_ACCEPT_LEN + 1];
        set_hdr(&hs, cases[i].name, cases[i].value);
        int rc = check(&hs, accept);
        if (rc != cases[i].expect)
            fail_msg("case %zu (%s: %s): got %d want %d", i, cases[i].name,
                     cases[i].value ? cases[i].value : "(absent)", rc, cases[i].expect);
        /* every header error names the header and gives a message */
        assert_string_equal(rta_ws_handshake_header(rc), cases[i].name);
        assert_non_null(rta_ws_handshake_strerror(rc));
        assert_int_equal(rta_ws_handshake_status(rc), rc == RTA_WS_ERR_VERSION ? 426 : 400);
    }
}

static void test_response_head(void **state)
{
    (void)state;
    rta_dbuf b;
    rta_dbuf_init(&b, 1024);
    assert_int_equal(
        rta_ws_handshake_response(&b, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "permessage-deflate"), 0);
    assert_string_equal(b.data, "HTTP/1.1 101 Switching Protocols\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                                "\r\n");
    rta_dbuf_reset(&b);
    assert_int_equal(rta_ws_handshake_response(&b, "abc", NULL), 0);
    assert_null(strstr(b.data, "Extensions"));
    rta_dbuf_free(&b);

    rta_dbuf small;
    rta_dbuf_init(&small, 20);
    assert_int_equal(rta_ws_handshake_response(&small, "abc", NULL), -1);
    assert_int_equal(small.len, 0);
    rta_dbuf_free(&small);
}

/* --- permessage-deflate --------------------------------------------------------------- */

static int negotiate(const char *value, const rta_ws_deflate_config *cfg, rta_ws_deflate_params *p,
                     char resp[RTA_WS_EXT_RESPONSE_MAX])
{
    return rta_ws_deflate_negotiate(value, value ? strlen(value) : 0, cfg, p, resp);
}

static void test_deflate_basic(void **state)
{
    (void)state;
    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params p;
    char resp[RTA_WS_EXT_RESPONSE_MAX];

    assert_int_equal(negotiate(NULL, &cfg, &p, resp), 0);
    assert_string_equal(resp, "");
    assert_int_equal(negotiate("", &cfg, &p, resp), 0);

    /* what browsers send */
    assert_int_equal(negotiate("permessage-deflate; client_max_window_bits", &cfg, &p, resp), 1);
    assert_string_equal(resp, "permessage-deflate");
    assert_false(p.server_no_context_takeover);
    assert_false(p.client_no_context_takeover);
    assert_int_equal(p.server_max_window_bits, 15);
    assert_int_equal(p.client_max_window_bits, 15);

    /* case-insensitive names, extra whitespace */
    assert_int_equal(
        negotiate("  Permessage-Deflate ;  Server_No_Context_Takeover  ", &cfg, &p, resp), 1);
    assert_string_equal(resp, "permessage-deflate; server_no_context_takeover");
    assert_true(p.server_no_context_takeover);

    /* disabled config never accepts */
    cfg.enabled = false;
    assert_int_equal(negotiate("permessage-deflate", &cfg, &p, resp), 0);
    assert_int_equal(negotiate("permessage-deflate", NULL, &p, resp), 0);
}

static void test_deflate_window_bits(void **state)
{
    (void)state;
    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params p;
    char resp[RTA_WS_EXT_RESPONSE_MAX];

    assert_int_equal(negotiate("permessage-deflate; server_max_window_bits=10; "
                               "client_max_window_bits=12",
                               &cfg, &p, resp),
                     1);
    assert_int_equal(p.server_max_window_bits, 10);
    assert_int_equal(p.client_max_window_bits, 12);
    assert_string_equal(resp, "permessage-deflate; server_max_window_bits=10; "
                              "client_max_window_bits=12");

    /* quoted values are allowed (RFC 7692 section 7.1) */
    assert_int_equal(negotiate("permessage-deflate; client_max_window_bits=\"9\"", &cfg, &p, resp),
                     1);
    assert_int_equal(p.client_max_window_bits, 9);

    /* server limits its own window below the offer and below default */
    cfg.server_max_window_bits = 11;
    cfg.server_no_context_takeover = true;
    cfg.client_no_context_takeover = true;
    assert_int_equal(negotiate("permessage-deflate", &cfg, &p, resp), 1);
    assert_string_equal(resp, "permessage-deflate; server_no_context_takeover; "
                              "client_no_context_takeover; server_max_window_bits=11");
    assert_int_equal(negotiate("permessage-deflate; server_max_window_bits=13", &cfg, &p, resp), 1);
    assert_int_equal(p.server_max_window_bits, 11);

    /* server wants to limit the client window: needs client_max_window_bits in the offer */
    rta_ws_deflate_config_default(&cfg);
    cfg.client_max_window_bits = 10;
    assert_int_equal(negotiate("permessage-deflate", &cfg, &p, resp), 0);
    assert_int_equal(negotiate("permessage-deflate; client_max_window_bits", &cfg, &p, resp), 1);
    assert_string_equal(resp, "permessage-deflate; client_max_window_bits=10");
    assert_int_equal(negotiate("permessage-deflate; client_max_window_bits=8", &cfg, &p, resp), 1);
    assert_int_equal(p.client_max_window_bits, 8);
}

static void test_deflate_declined_offers(void **state)
{
    (void)state;
    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params p;
    char resp[RTA_WS_EXT_RESPONSE_MAX];
    static const char *const declined[] = {
        "permessage-deflate; server_max_window_bits",   /* value required */
        "permessage-deflate; server_max_window_bits=7", /* out of range */
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; client_max_window_bits=\"100000000000\"",
        "permessage-deflate; server_no_context_takeover=1", /* takes no value */
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; foo", /* unknown parameter */
        "x-webkit-deflate-frame",  /* other extension */
        "foo; bar=1, baz",
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(declined); i++) {
        int rc = negotiate(declined[i], &cfg, &p, resp);
        if (rc != 0)
            fail_msg("offer %zu \"%s\": got %d want 0", i, declined[i], rc);
        assert_string_equal(resp, "");
    }
}

static void test_deflate_second_offer(void **state)
{
    (void)state;
    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params p;
    char resp[RTA_WS_EXT_RESPONSE_MAX];
    /* first offer invalid, second (fallback) accepted; other extensions skipped */
    assert_int_equal(negotiate("foo, permessage-deflate; server_max_window_bits=20, "
                               "permessage-deflate; client_no_context_takeover,"
                               "permessage-deflate",
                               &cfg, &p, resp),
                     1);
    assert_string_equal(resp, "permessage-deflate; client_no_context_takeover");
    assert_true(p.client_no_context_takeover);
    /* empty list elements are allowed */
    assert_int_equal(negotiate(" , ,permessage-deflate,,", &cfg, &p, resp), 1);
}

/* An offer accepted before a malformed tail: the header is invalid and nothing is answered
 * (found by fuzz_ws_handshake). */
static void test_deflate_accepted_then_malformed(void **state)
{
    (void)state;
    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params p;
    char resp[RTA_WS_EXT_RESPONSE_MAX];
    assert_int_equal(negotiate("permessage-deflate, permessage-deflate; =1", &cfg, &p, resp),
                     RTA_WS_ERR_EXTENSIONS);
    assert_string_equal(resp, "");
}

static void test_deflate_malformed(void **state)
{
    (void)state;
    rta_ws_deflate_config cfg;
    rta_ws_deflate_config_default(&cfg);
    rta_ws_deflate_params p;
    char resp[RTA_WS_EXT_RESPONSE_MAX];
    static const char *const bad[] = {
        ";",
        "permessage-deflate;",
        "permessage-deflate; =1",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; client_max_window_bits=\"10",
        "permessage-deflate; client_max_window_bits=\"10\\",
        "permessage-deflate client_max_window_bits",
        "permessage-deflate; a=b c",
        "\"permessage-deflate\"",
        "permessage-deflate, ;",
        "permessage-deflate; server_max_window_bits=1 0",
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(bad); i++) {
        int rc = negotiate(bad[i], &cfg, &p, resp);
        if (rc != RTA_WS_ERR_EXTENSIONS)
            fail_msg("header %zu \"%s\": got %d want %d", i, bad[i], rc, RTA_WS_ERR_EXTENSIONS);
    }
    assert_string_equal(rta_ws_handshake_header(RTA_WS_ERR_EXTENSIONS), "Sec-WebSocket-Extensions");
    /* a valid offer before a malformed tail still makes the header invalid */
    assert_int_equal(negotiate("permessage-deflate, ;;", &cfg, &p, resp), RTA_WS_ERR_EXTENSIONS);
    /* embedded NUL is not a token character */
    assert_int_equal(rta_ws_deflate_negotiate("permessage-deflate\0x", 20, &cfg, &p, resp),
                     RTA_WS_ERR_EXTENSIONS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_example),
        cmocka_unit_test(test_accept_key_direct),
        cmocka_unit_test(test_header_variants_accepted),
        cmocka_unit_test(test_method_and_version),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_deflate_basic),
        cmocka_unit_test(test_deflate_window_bits),
        cmocka_unit_test(test_deflate_declined_offers),
        cmocka_unit_test(test_deflate_second_offer),
        cmocka_unit_test(test_deflate_malformed),
        cmocka_unit_test(test_deflate_accepted_then_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
