/* Unit tests for src/engine/ingest.c: ingest body parsing and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/ingest.h"
#include "rta/util.h"

#define NOW_MS 1764238800000LL /* 2025-11-27T10:20:00Z */

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    if (j == NULL)
        fail_msg("bad fixture %s: %s", text, err.text);
    return j;
}

/* Whether errors holds an entry with this path and rule. */
static int has_error(const json_t *errors, const char *path, const char *rule)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
            strcmp(json_string_value(json_object_get(e, "rule")), rule) == 0 &&
            json_is_string(json_object_get(e, "message")))
            return 1;
    }
    return 0;
}

static void test_bad_inputs(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *path;
        const char *rule;
    } cases[] = {
        {"[]", "$", "type"},
        {"{}", "$", "empty"},
        {"{\"tvl\":[],\"prices\":[]}", "$", "empty"},
        {"{\"tvl\":{}}", "$.tvl", "type"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1}],\"x\":1}", "$.x",
         "unknown_field"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"foo\":2}]}", "$.tvl[0].foo",
         "unknown_field"},
        {"{\"tvl\":[5]}", "$.tvl[0]", "type"},
        {"{\"tvl\":[{\"chain\":\"b\",\"tvl\":1}]}", "$.tvl[0].protocol", "required"},
        {"{\"tvl\":[{\"protocol\":\"Aave\",\"chain\":\"b\",\"tvl\":1}]}", "$.tvl[0].protocol",
         "slug"},
        {"{\"tvl\":[{\"protocol\":\"-a\",\"chain\":\"b\",\"tvl\":1}]}", "$.tvl[0].protocol",
         "slug"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b c\",\"tvl\":1}]}", "$.tvl[0].chain", "slug"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":7,\"tvl\":1}]}", "$.tvl[0].chain", "slug"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\"}]}", "$.tvl[0].tvl", "required"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":\"1\"}]}", "$.tvl[0].tvl",
         "finite"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":-1}]}", "$.tvl[0].tvl",
         "non_negative"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":2e15}]}", "$.tvl[0].tvl", "max"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"timestamp\":true}]}",
         "$.tvl[0].timestamp", "timestamp"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"timestamp\":\"yesterday\"}]}",
         "$.tvl[0].timestamp", "timestamp"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,"
         "\"timestamp\":\"2025-11-27T10:00:00\"}]}",
         "$.tvl[0].timestamp", "timestamp"}, /* no zone */
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"timestamp\":1400000000}]}",
         "$.tvl[0].timestamp", "too_old"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"timestamp\":1764239101}]}",
         "$.tvl[0].timestamp", "future"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"name\":\"\"}]}",
         "$.tvl[0].name", "length"},
        {"{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"name\":3}]}", "$.tvl[0].name",
         "type"},
        {"{\"prices\":[{\"token\":\"bitcoin\",\"price\":1}]}", "$.prices[0].token", "token"},
        {"{\"prices\":[{\"token\":\"Coingecko:bitcoin\",\"price\":1}]}", "$.prices[0].token",
         "token"},
        {"{\"prices\":[{\"token\":\"coingecko:\",\"price\":1}]}", "$.prices[0].token", "token"},
        {"{\"prices\":[{\"token\":\"coingecko:a b\",\"price\":1}]}", "$.prices[0].token", "token"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\",\"price\":0}]}", "$.prices[0].price",
         "positive"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\",\"price\":-3}]}", "$.prices[0].price",
         "positive"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\",\"price\":1e13}]}", "$.prices[0].price", "max"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\"}]}", "$.prices[0].price", "required"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\",\"price\":1,\"confidence\":1.5}]}",
         "$.prices[0].confidence", "range"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\",\"price\":1,\"confidence\":\"high\"}]}",
         "$.prices[0].confidence", "range"},
        {"{\"prices\":[{\"token\":\"coingecko:btc\",\"price\":1,\"extra\":null}]}",
         "$.prices[0].extra", "unknown_field"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(cases); i++) {
        json_t *body = load(cases[i].body);
        rta_ingest_batch b;
        json_t *errors = NULL;
        int rc = rta_ingest_parse(body, 1000, NOW_MS, &b, &errors);
        if (rc != -1 || !has_error(errors, cases[i].path, cases[i].rule)) {
            char *dump = errors ? json_dumps(errors, 0) : NULL;
            print_error("case %zu: %s\n  want %s %s, got rc=%d %s\n", i, cases[i].body,
                        cases[i].path, cases[i].rule, rc, dump ? dump : "(none)");
            free(dump);
            fail();
        }
        assert_null(b.tvl);
        assert_null(b.prices);
        json_decref(errors);
        json_decref(body);
    }
}

static void test_all_errors_reported(void **state)
{
    (void)state;
    /* Item 1 is fine, items 0 and 2 are not: nothing accepted, every problem listed. */
    json_t *body = load("{\"tvl\":[{\"protocol\":\"A\",\"chain\":\"b\",\"tvl\":-1},"
                        "{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1},"
                        "{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"category\":\"\"}],"
                        "\"prices\":[{\"token\":\"x\",\"price\":0}]}");
    rta_ingest_batch b;
    json_t *errors;
    assert_int_equal(rta_ingest_parse(body, 100, NOW_MS, &b, &errors), -1);
    assert_int_equal(json_array_size(errors), 5);
    assert_true(has_error(errors, "$.tvl[0].protocol", "slug"));
    assert_true(has_error(errors, "$.tvl[0].tvl", "non_negative"));
    assert_true(has_error(errors, "$.tvl[2].category", "length"));
    assert_true(has_error(errors, "$.prices[0].token", "token"));
    assert_true(has_error(errors, "$.prices[0].price", "positive"));
    json_decref(errors);
    json_decref(body);

    /* At most 100 errors. */
    json_t *many = json_pack("{s:[]}", "tvl");
    for (int i = 0; i < 300; i++)
        json_array_append_new(json_object_get(many, "tvl"), json_integer(i));
    assert_int_equal(rta_ingest_parse(many, 1000, NOW_MS, &b, &errors), -1);
    assert_int_equal(json_array_size(errors), 100);
    json_decref(errors);
    json_decref(many);
}

static void test_batch_too_large(void **state)
{
    (void)state;
    json_t *body = load("{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1},"
                        "{\"protocol\":\"a\",\"chain\":\"c\",\"tvl\":1}],"
                        "\"prices\":[{\"token\":\"coingecko:btc\",\"price\":1}]}");
    rta_ingest_batch b;
    json_t *errors;
    assert_int_equal(rta_ingest_parse(body, 2, NOW_MS, &b, &errors), -1);
    assert_int_equal(json_array_size(errors), 1);
    assert_true(has_error(errors, "$", "batch_too_large"));
    json_decref(errors);
    assert_int_equal(rta_ingest_parse(body, 3, NOW_MS, &b, &errors), 0);
    assert_int_equal(b.ntvl + b.nprices, 3);
    rta_ingest_batch_free(&b);
    json_decref(body);
}

static void test_good_batch(void **state)
{
    (void)state;
    json_t *body = load(
        "{\"tvl\":["
        "{\"protocol\":\"aave-v3\",\"chain\":\"ethereum\",\"tvl\":12345.5,"
        "\"timestamp\":1764238000,\"name\":\"Aave V3\",\"category\":\"Lending\"},"
        "{\"protocol\":\"uniswap\",\"chain\":\"arbitrum\",\"tvl\":0,"
        "\"timestamp\":\"2025-11-27T12:00:00+02:00\"},"
        "{\"protocol\":\"curve\",\"chain\":\"base\",\"tvl\":7,\"timestamp\":1764238000.25}],"
        "\"prices\":["
        "{\"token\":\"coingecko:bitcoin\",\"price\":91000.5,\"confidence\":0.9,\"symbol\":\"BTC\"},"
        "{\"token\":\"ethereum:0xA0b8\",\"price\":1,\"timestamp\":\"2025-11-27T10:19:00.500Z\"}]}");
    rta_ingest_batch b;
    json_t *errors = NULL;
    assert_int_equal(rta_ingest_parse(body, 1000, NOW_MS, &b, &errors), 0);
    assert_null(errors);
    assert_int_equal(b.ntvl, 3);
    assert_int_equal(b.nprices, 2);
    assert_string_equal(b.tvl[0].protocol, "aave-v3");
    assert_string_equal(b.tvl[0].chain, "ethereum");
    assert_true(b.tvl[0].tvl == 12345.5);
    assert_int_equal(b.tvl[0].ts_ms, 1764238000000LL);
    assert_string_equal(b.tvl[0].name, "Aave V3");
    assert_string_equal(b.tvl[0].category, "Lending");
    /* Strings point into the body. */
    assert_ptr_equal(b.tvl[0].protocol,
                     json_string_value(json_object_get(
                         json_array_get(json_object_get(body, "tvl"), 0), "protocol")));
    assert_int_equal(b.tvl[1].ts_ms, 1764237600000LL); /* ISO with offset */
    assert_null(b.tvl[1].name);
    assert_null(b.tvl[1].category);
    assert_int_equal(b.tvl[2].ts_ms, 1764238000250LL); /* fractional seconds */
    assert_string_equal(b.prices[0].token, "coingecko:bitcoin");
    assert_true(b.prices[0].price == 91000.5);
    assert_true(b.prices[0].has_confidence);
    assert_true(b.prices[0].confidence == 0.9);
    assert_string_equal(b.prices[0].symbol, "BTC");
    assert_int_equal(b.prices[0].ts_ms, NOW_MS); /* default: now */
    assert_false(b.prices[1].has_confidence);
    assert_true(b.prices[1].confidence == 1.0);
    assert_int_equal(b.prices[1].ts_ms, NOW_MS - 59500);
    rta_ingest_batch_free(&b);
    assert_null(b.tvl);
    json_decref(body);
}

static void test_timestamp_edges(void **state)
{
    (void)state;
    char text[256];
    rta_ingest_batch b;
    json_t *errors;
    /* Exactly 300 s ahead is allowed, and 2015-01-01 itself. */
    const char *ok[] = {"1764239100", "1420070400", "\"2015-01-01T00:00:00Z\""};
    for (size_t i = 0; i < RTA_ARRAY_LEN(ok); i++) {
        snprintf(text, sizeof text,
                 "{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,\"timestamp\":%s}]}",
                 ok[i]);
        json_t *body = load(text);
        assert_int_equal(rta_ingest_parse(body, 10, NOW_MS, &b, &errors), 0);
        rta_ingest_batch_free(&b);
        json_decref(body);
    }
    json_t *body = load("{\"tvl\":[{\"protocol\":\"a\",\"chain\":\"b\",\"tvl\":1,"
                        "\"timestamp\":\"2014-12-31T23:59:59Z\"}]}");
    assert_int_equal(rta_ingest_parse(body, 10, NOW_MS, &b, &errors), -1);
    assert_true(has_error(errors, "$.tvl[0].timestamp", "too_old"));
    json_decref(errors);
    json_decref(body);
}

static void test_validators(void **state)
{
    (void)state;
    char s[300];
    assert_true(rta_valid_slug("aave-v3"));
    assert_true(rta_valid_slug("0x.protocol_1"));
    assert_false(rta_valid_slug(""));
    assert_false(rta_valid_slug(NULL));
    assert_false(rta_valid_slug("_a"));
    assert_false(rta_valid_slug("aAve"));
    assert_false(rta_valid_slug("a/b"));
    memset(s, 'a', 128);
    s[128] = '\0';
    assert_true(rta_valid_slug(s));
    s[128] = 'a';
    s[129] = '\0';
    assert_false(rta_valid_slug(s));

    assert_true(rta_valid_token("coingecko:bitcoin"));
    assert_true(rta_valid_token("ethereum:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"));
    assert_true(rta_valid_token("bsc-test:x:y"));
    assert_false(rta_valid_token(":x"));
    assert_false(rta_valid_token("a_b:x"));
    assert_false(rta_valid_token("coingecko:"));
    assert_false(rta_valid_token("coingecko:a\tb"));
    assert_false(rta_valid_token(NULL));
    memset(s, 'p', 33);
    strcpy(s + 33, ":x");
    assert_false(rta_valid_token(s));
    strcpy(s + 32, ":x");
    assert_true(rta_valid_token(s));
    strcpy(s, "c:");
    memset(s + 2, 'i', 200);
    s[202] = '\0';
    assert_true(rta_valid_token(s));
    s[202] = 'i';
    s[203] = '\0';
    assert_false(rta_valid_token(s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_inputs),      cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_batch_too_large), cmocka_unit_test(test_good_batch),
        cmocka_unit_test(test_timestamp_edges), cmocka_unit_test(test_validators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
