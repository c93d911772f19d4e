/* Unit tests for src/socketio/sio.c: Socket.IO v5 decode/validate/encode, binary
 * attachments, connection state recovery helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/sio.h"
#include "rta/util.h"

static int dec(const char *s, rta_sio_packet *p)
{
    return rta_sio_decode(s, strlen(s), NULL, p);
}

/* Dumps a decoded payload for comparison (no blobs). */
static void assert_data(const rta_sio_packet *p, const char *json)
{
    if (json == NULL) {
        assert_null(p->data);
        return;
    }
    assert_non_null(p->data);
    char *s = json_dumps(p->data, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(s);
    assert_string_equal(s, json);
    free(s);
}

/* Encodes a blob-free packet to a string (static buffer for brevity). */
static const char *enc(const rta_sio_packet *p)
{
    static char text[512];
    rta_dbuf b;
    rta_dbuf_init(&b, sizeof text - 1);
    int rc = rta_sio_encode(p, &b, NULL, 0, NULL);
    assert_int_equal(rc, 0);
    memcpy(text, b.data, b.len + 1);
    rta_dbuf_free(&b);
    return text;
}

static void test_decode_valid(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        rta_sio_type type;
        const char *nsp;
        int64_t id;
        const char *data; /* compact JSON or NULL */
    } ok[] = {
        {"0", RTA_SIO_CONNECT, "/", -1, NULL},
        {"0{\"token\":\"123\"}", RTA_SIO_CONNECT, "/", -1, "{\"token\":\"123\"}"},
        {"0/custom,", RTA_SIO_CONNECT, "/custom", -1, NULL},
        {"0/custom", RTA_SIO_CONNECT, "/custom", -1, NULL}, /* comma optional at the end */
        {"0/random", RTA_SIO_CONNECT, "/random", -1, NULL},
        {"0/custom,{\"token\":\"abc\"}", RTA_SIO_CONNECT, "/custom", -1, "{\"token\":\"abc\"}"},
        {"0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", RTA_SIO_CONNECT, "/admin", -1,
         "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"},
        {"1", RTA_SIO_DISCONNECT, "/", -1, NULL},
        {"1/admin,", RTA_SIO_DISCONNECT, "/admin", -1, NULL},
        {"1/custom", RTA_SIO_DISCONNECT, "/custom", -1, NULL},
        {"2[\"foo\"]", RTA_SIO_EVENT, "/", -1, "[\"foo\"]"},
        {"2/admin,[\"bar\"]", RTA_SIO_EVENT, "/admin", -1, "[\"bar\"]"},
        {"212[\"foo\"]", RTA_SIO_EVENT, "/", 12, "[\"foo\"]"},
        {"2[\"message\",1,\"2\",{\"3\":[true]}]", RTA_SIO_EVENT, "/", -1,
         "[\"message\",1,\"2\",{\"3\":[true]}]"},
        {"2456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]", RTA_SIO_EVENT, "/", 456,
         "[\"message-with-ack\",1,\"2\",{\"3\":[false]}]"},
        {"2/admin,1[\"tellme\"]", RTA_SIO_EVENT, "/admin", 1, "[\"tellme\"]"},
        {"3/admin,13[\"bar\"]", RTA_SIO_ACK, "/admin", 13, "[\"bar\"]"},
        {"312[]", RTA_SIO_ACK, "/", 12, "[]"},
        {"4{\"message\":\"Not authorized\"}", RTA_SIO_CONNECT_ERROR, "/", -1,
         "{\"message\":\"Not authorized\"}"},
        {"4/random,{\"message\":\"Invalid namespace\"}", RTA_SIO_CONNECT_ERROR, "/random", -1,
         "{\"message\":\"Invalid namespace\"}"},
        {"4\"oops\"", RTA_SIO_CONNECT_ERROR, "/", -1, "\"oops\""},
        {"29007199254740991[\"x\"]", RTA_SIO_EVENT, "/", 9007199254740991LL, "[\"x\"]"},
        {"2/a-b_c.d/e,7[\"x\"]", RTA_SIO_EVENT, "/a-b_c.d/e", 7, "[\"x\"]"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(ok); i++) {
        rta_sio_packet p;
        int rc = dec(ok[i].in, &p);
        if (rc != 0)
            fail_msg("case %zu \"%s\": rc %d (%s)", i, ok[i].in, rc, rta_sio_strerror(rc));
        assert_int_equal(p.type, ok[i].type);
        assert_string_equal(p.nsp, ok[i].nsp);
        assert_int_equal(p.id, ok[i].id);
        assert_int_equal(p.attachments, 0);
        assert_false(rta_sio_needs_attachments(&p));
        assert_data(&p, ok[i].data);
        rta_sio_packet_clear(&p);
    }
}

static void test_decode_invalid(void **state)
{
    (void)state;
    char deep[200];
    deep[0] = '3';
    memset(deep + 1, '[', 40);
    strcpy(deep + 41, "\"x\"");
    memset(deep + 44, ']', 40);
    deep[84] = '\0';
    char deep_ok[100]; /* 32 levels exactly: allowed */
    memset(deep_ok, '[', 32);
    memset(deep_ok + 32, ']', 32);
    deep_ok[64] = '\0';
    char deep_ack[110];
    snprintf(deep_ack, sizeof deep_ack, "3%s", deep_ok);

    char long_nsp[200];
    long_nsp[0] = '2';
    long_nsp[1] = '/';
    memset(long_nsp + 2, 'a', 128); /* namespace of 129 bytes */
    strcpy(long_nsp + 130, ",[\"x\"]");

    const struct {
        const char *in;
        int err;
    } bad[] = {
        {"", RTA_SIO_ERR_EMPTY},
        /* the official test suite's malformed inputs (Engine.IO '4' stripped) */
        {"abc", RTA_SIO_ERR_TYPE},
        {"2{}", RTA_SIO_ERR_PAYLOAD},
        {"2abc[\"message-with-ack\",1,\"2\",{\"3\":[false]}]", RTA_SIO_ERR_JSON},
        /* more */
        {"7", RTA_SIO_ERR_TYPE},
        {"9[\"x\"]", RTA_SIO_ERR_TYPE},
        {"-1", RTA_SIO_ERR_TYPE},
        {"0[]", RTA_SIO_ERR_PAYLOAD}, /* CONNECT: object only */
        {"0\"x\"", RTA_SIO_ERR_PAYLOAD},
        {"1{}", RTA_SIO_ERR_PAYLOAD}, /* DISCONNECT: no payload */
        {"1/admin,[]", RTA_SIO_ERR_PAYLOAD},
        {"2", RTA_SIO_ERR_PAYLOAD}, /* EVENT: payload required */
        {"2/admin,", RTA_SIO_ERR_PAYLOAD},
        {"2[]", RTA_SIO_ERR_PAYLOAD},
        {"2[1]", RTA_SIO_ERR_PAYLOAD}, /* numeric names refused (documented) */
        {"2[null]", RTA_SIO_ERR_PAYLOAD},
        {"2[\"connect\"]", RTA_SIO_ERR_PAYLOAD}, /* reserved names */
        {"2[\"disconnect\",1]", RTA_SIO_ERR_PAYLOAD},
        {"2[\"newListener\"]", RTA_SIO_ERR_PAYLOAD},
        {"2\"foo\"", RTA_SIO_ERR_PAYLOAD},
        {"3", RTA_SIO_ERR_PAYLOAD}, /* ACK: array required */
        {"312", RTA_SIO_ERR_PAYLOAD},
        {"3{}", RTA_SIO_ERR_PAYLOAD},
        {"4[]", RTA_SIO_ERR_PAYLOAD}, /* CONNECT_ERROR: object or string */
        {"4 1", RTA_SIO_ERR_PAYLOAD},
        {"2[\"foo\"", RTA_SIO_ERR_JSON},
        {"2[\"foo\"]x", RTA_SIO_ERR_JSON},
        {"2[\"foo\"] [1]", RTA_SIO_ERR_JSON},
        {"2[\"a\\u0000b\"]", RTA_SIO_ERR_JSON},                 /* NUL in strings refused */
        {"2[\"\xff\"]", RTA_SIO_ERR_JSON},                      /* invalid UTF-8 */
        {"2[\"x\",99999999999999999999999]", RTA_SIO_ERR_JSON}, /* over int64 (documented) */
        {"29007199254740992[\"x\"]", RTA_SIO_ERR_ACK_ID},
        {"299999999999999999999999999[\"x\"]", RTA_SIO_ERR_ACK_ID},
        {"5[\"x\"]", RTA_SIO_ERR_ATTACHMENTS}, /* binary types need "<n>-" */
        {"5-[\"x\"]", RTA_SIO_ERR_ATTACHMENTS},
        {"51[\"x\"]", RTA_SIO_ERR_ATTACHMENTS},
        {"51", RTA_SIO_ERR_ATTACHMENTS},
        {"517-[\"x\"]", RTA_SIO_ERR_ATTACHMENTS}, /* over the limit of 16 */
        {"599999999999999999999999-[\"x\"]", RTA_SIO_ERR_ATTACHMENTS},
        {"6a-[]", RTA_SIO_ERR_ATTACHMENTS},
        {"51-{}", RTA_SIO_ERR_PAYLOAD},
        {"61-{}", RTA_SIO_ERR_PAYLOAD},
        {deep, RTA_SIO_ERR_DEPTH},
        {long_nsp, RTA_SIO_ERR_NAMESPACE},
        {"2[\"x\",{\"_rta_binary\":\"forged\"}]", RTA_SIO_ERR_PAYLOAD},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(bad); i++) {
        rta_sio_packet p;
        int rc = dec(bad[i].in, &p);
        if (rc != bad[i].err)
            fail_msg("case %zu \"%s\": got %d (%s) want %d", i, bad[i].in, rc, rta_sio_strerror(rc),
                     bad[i].err);
        assert_null(p.data);
        assert_null(p.pending_);
    }
    /* depth limit is exact */
    rta_sio_packet p;
    assert_int_equal(dec(deep_ack, &p), 0);
    rta_sio_packet_clear(&p);
    rta_sio_limits lim = {.max_depth = 2, .max_attachments = 1};
    assert_int_equal(rta_sio_decode("3[[1]]", 6, &lim, &p), 0);
    rta_sio_packet_clear(&p);
    assert_int_equal(rta_sio_decode("3[[[1]]]", 8, &lim, &p), RTA_SIO_ERR_DEPTH);
    /* brackets inside strings do not count */
    const char *instr = "3[\"[[[[\\\"{{{\"]";
    assert_int_equal(rta_sio_decode(instr, strlen(instr), &lim, &p), 0);
    rta_sio_packet_clear(&p);
    assert_int_equal(rta_sio_decode("52-[\"x\"]", 8, &lim, &p), RTA_SIO_ERR_ATTACHMENTS);
    /* embedded NUL in the namespace */
    assert_int_equal(rta_sio_decode("2/a\0b,[\"x\"]", 11, NULL, &p), RTA_SIO_ERR_NAMESPACE);
    assert_int_equal(rta_sio_decode(NULL, 0, NULL, &p), RTA_SIO_ERR_EMPTY);
}

static void test_binary_reassembly(void **state)
{
    (void)state;
    rta_sio_packet p;
    const char *in = "52-[\"message\",{\"_placeholder\":true,\"num\":0},"
                     "{\"_placeholder\":true,\"num\":1}]";
    assert_int_equal(dec(in, &p), 0);
    assert_int_equal(p.type, RTA_SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 2);
    assert_true(rta_sio_needs_attachments(&p));
    assert_int_equal(rta_sio_attach(&p, "\1\2\3", 3), 1);
    assert_true(rta_sio_needs_attachments(&p));
    assert_int_equal(rta_sio_attach(&p, "\4\5\6", 3), 0);
    assert_false(rta_sio_needs_attachments(&p));
    assert_int_equal(rta_sio_attach(&p, "\7", 1), RTA_SIO_ERR_STATE);

    const void *d;
    size_t n;
    assert_string_equal(json_string_value(json_array_get(p.data, 0)), "message");
    assert_true(rta_sio_is_blob(json_array_get(p.data, 1)));
    assert_int_equal(rta_sio_blob_get(json_array_get(p.data, 1), &d, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(d, "\1\2\3", 3);
    assert_int_equal(rta_sio_blob_get(json_array_get(p.data, 2), &d, &n), 0);
    assert_memory_equal(d, "\4\5\6", 3);
    assert_int_equal(rta_sio_blob_get(json_array_get(p.data, 0), &d, &n), -1);

    /* echo back as the test suite's server does: same text, same attachments */
    rta_dbuf b;
    rta_dbuf_init(&b, 512);
    rta_sio_bin att[4];
    size_t natt = 0;
    json_array_set_new(p.data, 0, json_string("message-back"));
    assert_int_equal(rta_sio_encode(&p, &b, att, 4, &natt), 0);
    assert_string_equal(b.data, "52-[\"message-back\",{\"_placeholder\":true,\"num\":0},"
                                "{\"_placeholder\":true,\"num\":1}]");
    assert_int_equal(natt, 2);
    assert_int_equal(att[0].len, 3);
    assert_memory_equal(att[0].data, "\1\2\3", 3);
    assert_memory_equal(att[1].data, "\4\5\6", 3);
    /* att array too small: nothing written */
    rta_dbuf_reset(&b);
    assert_int_equal(rta_sio_encode(&p, &b, att, 1, &natt), RTA_SIO_ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    rta_dbuf_free(&b);
    rta_sio_packet_clear(&p);
}

static void test_binary_nested_and_ack(void **state)
{
    (void)state;
    rta_sio_packet p;
    /* placeholders in objects, out of order, repeated; with ack id and namespace */
    const char *in = "61-/admin,789[{\"a\":{\"_placeholder\":true,\"num\":0},"
                     "\"b\":[{\"_placeholder\":true,\"num\":0}]}]";
    assert_int_equal(dec(in, &p), 0);
    assert_int_equal(p.type, RTA_SIO_BINARY_ACK);
    assert_string_equal(p.nsp, "/admin");
    assert_int_equal(p.id, 789);
    assert_int_equal(rta_sio_attach(&p, "", 0), 0);
    const json_t *o = json_array_get(p.data, 0);
    assert_true(rta_sio_is_blob(json_object_get(o, "a")));
    assert_true(rta_sio_is_blob(json_array_get(json_object_get(o, "b"), 0)));
    rta_sio_packet_clear(&p);

    /* placeholder index out of range, negative, not a number */
    static const char *const bad[] = {
        "51-[\"x\",{\"_placeholder\":true,\"num\":1}]",
        "51-[\"x\",{\"_placeholder\":true,\"num\":-1}]",
        "51-[\"x\",{\"_placeholder\":true,\"num\":\"0\"}]",
        "51-[\"x\",{\"_placeholder\":true}]",
        "51-[\"x\",{\"k\":{\"_placeholder\":true,\"num\":7}}]",
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(bad); i++) {
        assert_int_equal(dec(bad[i], &p), 0);
        assert_int_equal(rta_sio_attach(&p, "z", 1), RTA_SIO_ERR_PLACEHOLDER);
        rta_sio_packet_clear(&p);
    }
    /* "_placeholder": false is an ordinary object */
    assert_int_equal(dec("51-[\"x\",{\"_placeholder\":false,\"num\":9}]", &p), 0);
    assert_int_equal(rta_sio_attach(&p, "z", 1), 0);
    rta_sio_packet_clear(&p);

    /* 0 attachments declared: complete at once */
    assert_int_equal(dec("50-[\"x\"]", &p), 0);
    assert_false(rta_sio_needs_attachments(&p));
    assert_int_equal(rta_sio_attach(&p, "z", 1), RTA_SIO_ERR_STATE);
    rta_sio_packet_clear(&p);

    /* attachments given to a text packet */
    assert_int_equal(dec("2[\"x\"]", &p), 0);
    assert_int_equal(rta_sio_attach(&p, "z", 1), RTA_SIO_ERR_STATE);
    rta_sio_packet_clear(&p);
}

static void test_encode_spec_examples(void **state)
{
    (void)state;
    rta_sio_packet p;

    rta_sio_packet_init(&p, RTA_SIO_CONNECT);
    assert_string_equal(enc(&p), "0");
    strcpy(p.nsp, "/admin");
    p.data = rta_sio_connect_payload("oSO0OpakMV_3jnilAAAA", NULL);
    assert_string_equal(enc(&p), "0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}");
    rta_sio_packet_clear(&p);

    rta_sio_packet_init(&p, RTA_SIO_CONNECT_ERROR);
    p.data = json_pack("{s:s}", "message", "Not authorized");
    assert_string_equal(enc(&p), "4{\"message\":\"Not authorized\"}");
    strcpy(p.nsp, "/random");
    json_object_set_new(p.data, "message", json_string("Invalid namespace"));
    assert_string_equal(enc(&p), "4/random,{\"message\":\"Invalid namespace\"}");
    rta_sio_packet_clear(&p);

    rta_sio_packet_init(&p, RTA_SIO_EVENT);
    p.data = json_pack("[s]", "foo");
    assert_string_equal(enc(&p), "2[\"foo\"]");
    p.id = 12;
    assert_string_equal(enc(&p), "212[\"foo\"]");
    strcpy(p.nsp, "/admin");
    p.id = -1;
    json_array_set_new(p.data, 0, json_string("bar"));
    assert_string_equal(enc(&p), "2/admin,[\"bar\"]");
    rta_sio_packet_clear(&p);

    rta_sio_packet_init(&p, RTA_SIO_ACK);
    strcpy(p.nsp, "/admin");
    p.id = 13;
    p.data = json_pack("[s]", "bar");
    assert_string_equal(enc(&p), "3/admin,13[\"bar\"]");
    rta_sio_packet_clear(&p);

    rta_sio_packet_init(&p, RTA_SIO_DISCONNECT);
    assert_string_equal(enc(&p), "1");
    strcpy(p.nsp, "/admin");
    assert_string_equal(enc(&p), "1/admin,");
    rta_sio_packet_clear(&p);

    /* BINARY_* without blobs is sent as the text type */
    rta_sio_packet_init(&p, RTA_SIO_BINARY_ACK);
    p.id = 3;
    p.data = json_array();
    assert_string_equal(enc(&p), "33[]");
    rta_sio_packet_clear(&p);
}

static void test_encode_binary_spec_examples(void **state)
{
    (void)state;
    rta_sio_packet p;
    rta_dbuf b;
    rta_sio_bin att[4];
    size_t n = 99;
    rta_dbuf_init(&b, 512);

    rta_sio_packet_init(&p, RTA_SIO_EVENT); /* upgraded to BINARY_EVENT */
    p.data = json_pack("[s,o]", "baz", rta_sio_blob_new("\1\2\3\4", 4));
    assert_int_equal(rta_sio_encode(&p, &b, att, 4, &n), 0);
    assert_string_equal(b.data, "51-[\"baz\",{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(n, 1);
    assert_int_equal(att[0].len, 4);
    assert_memory_equal(att[0].data, "\1\2\3\4", 4);
    /* the input is not modified */
    assert_true(rta_sio_is_blob(json_array_get(p.data, 1)));
    rta_sio_packet_clear(&p);

    rta_dbuf_reset(&b);
    rta_sio_packet_init(&p, RTA_SIO_BINARY_EVENT);
    strcpy(p.nsp, "/admin");
    p.data = json_pack("[s,o,o]", "baz", rta_sio_blob_new("\1\2", 2), rta_sio_blob_new("\3\4", 2));
    assert_int_equal(rta_sio_encode(&p, &b, att, 4, &n), 0);
    assert_string_equal(b.data, "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},"
                                "{\"_placeholder\":true,\"num\":1}]");
    assert_int_equal(n, 2);
    assert_memory_equal(att[1].data, "\3\4", 2);
    rta_sio_packet_clear(&p);

    rta_dbuf_reset(&b);
    rta_sio_packet_init(&p, RTA_SIO_ACK); /* upgraded to BINARY_ACK */
    p.id = 15;
    p.data = json_pack("[s,{s:o}]", "bar", "k", rta_sio_blob_new("\1\2\3\4", 4));
    assert_int_equal(rta_sio_encode(&p, &b, att, 4, &n), 0);
    assert_string_equal(b.data, "61-15[\"bar\",{\"k\":{\"_placeholder\":true,\"num\":0}}]");
    rta_sio_packet_clear(&p);

    /* blobs where they cannot go; no att array */
    rta_dbuf_reset(&b);
    rta_sio_packet_init(&p, RTA_SIO_CONNECT_ERROR);
    p.data = json_pack("{s:o}", "k", rta_sio_blob_new("x", 1));
    assert_int_equal(rta_sio_encode(&p, &b, att, 4, &n), RTA_SIO_ERR_ARG);
    rta_sio_packet_clear(&p);
    rta_sio_packet_init(&p, RTA_SIO_EVENT);
    p.data = json_pack("[s,o]", "x", rta_sio_blob_new("x", 1));
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    rta_sio_packet_clear(&p);
    rta_dbuf_free(&b);
}

static void test_encode_errors(void **state)
{
    (void)state;
    rta_sio_packet p;
    rta_dbuf b;
    rta_dbuf_init(&b, 16);

    rta_sio_packet_init(&p, RTA_SIO_EVENT);
    p.data = json_pack("[s]", "connect"); /* reserved */
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_PAYLOAD);
    json_array_set_new(p.data, 0, json_string("ok"));
    strcpy(p.nsp, "admin"); /* no leading slash */
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_ARG);
    strcpy(p.nsp, "/a,b"); /* comma */
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_ARG);
    strcpy(p.nsp, "/");
    p.id = RTA_SIO_ACK_ID_MAX + 1;
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_ARG);
    p.id = -1;
    p.type = (rta_sio_type)7;
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_ARG);
    p.type = RTA_SIO_DISCONNECT; /* payload not allowed */
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_PAYLOAD);
    p.type = RTA_SIO_EVENT;
    json_array_append_new(p.data, json_string("0123456789abcdef"));
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    rta_sio_packet_clear(&p);

    /* application data nested too deep */
    json_t *deep = json_array();
    for (int i = 0; i < 100; i++)
        deep = json_pack("[o]", deep);
    rta_sio_packet_init(&p, RTA_SIO_ACK);
    p.data = deep;
    assert_int_equal(rta_sio_encode(&p, &b, NULL, 0, NULL), RTA_SIO_ERR_ARG);
    rta_sio_packet_clear(&p);
    rta_dbuf_free(&b);
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "0",
        "0/admin,{\"token\":\"123\"}",
        "1/x,",
        "2[\"a\",1,2.5,null,true,{\"k\":[]}]",
        "2/n,42[\"e\"]",
        "3/n,0[]",
        "4\"denied\"",
        "4{\"message\":\"m\",\"data\":{}}",
        "2[\"\\u00e9\\\"q\\\\\",\"\xe2\x82\xac\"]",
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(texts); i++) {
        rta_sio_packet p;
        assert_int_equal(dec(texts[i], &p), 0);
        const char *out = enc(&p);
        rta_sio_packet q;
        assert_int_equal(dec(out, &q), 0);
        assert_int_equal(p.type, q.type);
        assert_string_equal(p.nsp, q.nsp);
        assert_int_equal(p.id, q.id);
        assert_true((p.data == NULL && q.data == NULL) || json_equal(p.data, q.data));
        rta_sio_packet_clear(&p);
        rta_sio_packet_clear(&q);
    }
}

static void test_encode_event_fast_path(void **state)
{
    (void)state;
    rta_dbuf b;
    rta_dbuf_init(&b, 256);
    json_t *args = json_pack("[i,s,{s:[b]}]", 1, "2", "3", 1);
    assert_int_equal(rta_sio_encode_event(&b, "/", "message-back", args, NULL, -1), 0);
    assert_string_equal(b.data, "2[\"message-back\",1,\"2\",{\"3\":[true]}]");
    rta_dbuf_reset(&b);
    assert_int_equal(rta_sio_encode_event(&b, "/", "auth", NULL, NULL, -1), 0);
    assert_string_equal(b.data, "2[\"auth\"]");
    rta_dbuf_reset(&b);
    /* recovery offset as the last argument, namespace and ack id */
    assert_int_equal(rta_sio_encode_event(&b, "/feed", "tick", args, "1700000000000-3", 5), 0);
    assert_string_equal(b.data, "2/feed,5[\"tick\",1,\"2\",{\"3\":[true]},\"1700000000000-3\"]");
    /* it decodes as a valid event */
    rta_sio_packet p;
    assert_int_equal(rta_sio_decode(b.data, b.len, NULL, &p), 0);
    assert_int_equal(json_array_size(p.data), 5);
    rta_sio_packet_clear(&p);

    rta_dbuf_reset(&b);
    assert_int_equal(rta_sio_encode_event(&b, "/", "disconnect", NULL, NULL, -1), RTA_SIO_ERR_ARG);
    assert_int_equal(rta_sio_encode_event(&b, "x", "e", NULL, NULL, -1), RTA_SIO_ERR_ARG);
    assert_int_equal(rta_sio_encode_event(&b, "/", "\xff", NULL, NULL, -1), RTA_SIO_ERR_ARG);
    json_t *obj = json_object();
    assert_int_equal(rta_sio_encode_event(&b, "/", "e", obj, NULL, -1), RTA_SIO_ERR_ARG);
    json_decref(obj);
    json_t *withblob = json_pack("[o]", rta_sio_blob_new("x", 1));
    assert_int_equal(rta_sio_encode_event(&b, "/", "e", withblob, NULL, -1), RTA_SIO_ERR_ARG);
    json_decref(withblob);
    assert_int_equal(b.len, 0);
    rta_dbuf_free(&b);

    rta_dbuf small;
    rta_dbuf_init(&small, 10);
    assert_int_equal(rta_dbuf_puts(&small, "4"), 0);
    assert_int_equal(rta_sio_encode_event(&small, "/", "message-back", args, NULL, -1),
                     RTA_SIO_ERR_TOO_LARGE);
    assert_string_equal(small.data, "4");
    rta_dbuf_free(&small);
    json_decref(args);
}

static void test_recovery_helpers(void **state)
{
    (void)state;
    json_t *c = rta_sio_connect_payload("wZX3oN0bSVIhsaknAAAI", "pid-1");
    char *s = json_dumps(c, JSON_COMPACT);
    assert_string_equal(s, "{\"sid\":\"wZX3oN0bSVIhsaknAAAI\",\"pid\":\"pid-1\"}");
    free(s);
    json_decref(c);
    assert_null(rta_sio_connect_payload(NULL, NULL));

    /* what a reconnecting client sends: 40{"token":"abc","pid":"...","offset":"..."} */
    rta_sio_packet p;
    const char *in = "0{\"token\":\"abc\",\"pid\":\"pid-1\",\"offset\":\"1700000000000-3\"}";
    assert_int_equal(dec(in, &p), 0);
    const char *pid = NULL, *off = NULL;
    assert_int_equal(rta_sio_recovery_fields(p.data, &pid, &off), 0);
    assert_string_equal(pid, "pid-1");
    assert_string_equal(off, "1700000000000-3");
    rta_sio_packet_clear(&p);

    /* first connection of a recovering client: pid but no offset yet */
    assert_int_equal(dec("0{\"pid\":\"pid-1\"}", &p), 0);
    assert_int_equal(rta_sio_recovery_fields(p.data, &pid, &off), -1);
    rta_sio_packet_clear(&p);
    assert_int_equal(dec("0{\"pid\":1,\"offset\":\"x\"}", &p), 0);
    assert_int_equal(rta_sio_recovery_fields(p.data, &pid, &off), -1);
    rta_sio_packet_clear(&p);
    assert_int_equal(rta_sio_recovery_fields(NULL, &pid, &off), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid),
        cmocka_unit_test(test_decode_invalid),
        cmocka_unit_test(test_binary_reassembly),
        cmocka_unit_test(test_binary_nested_and_ack),
        cmocka_unit_test(test_encode_spec_examples),
        cmocka_unit_test(test_encode_binary_spec_examples),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_encode_event_fast_path),
        cmocka_unit_test(test_recovery_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
