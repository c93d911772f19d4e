/* Unit tests for src/auth: key text, keyring verification, roles, tiers, token bucket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "rta/auth.h"
#include "rta/util.h"

#define T0 1764238800000LL

/* rta_key_record_free_fields belongs to the store module; tests free records themselves. */
static void rec_free(rta_key_record *r)
{
    free(r->id);
    free(r->user_id);
    free(r->tier);
    free(r->role);
    free(r->label);
    memset(r, 0, sizeof *r);
}

static void test_generate_shape_and_verify(void **state)
{
    (void)state;
    rta_key_record rec;
    char text[RTA_KEY_TEXT_MAX];
    assert_int_equal(rta_key_generate("u1", "pro", "user", "laptop", T0, &rec, text), 0);
    assert_int_equal(strlen(text), 4 + RTA_KEY_ID_LEN + 1 + RTA_KEY_SECRET_LEN);
    assert_memory_equal(text, "rta_", 4);
    assert_int_equal(strlen(rec.id), RTA_KEY_ID_LEN);
    assert_int_equal(rec.id[0], 'k');
    assert_memory_equal(text + 4, rec.id, RTA_KEY_ID_LEN);
    assert_int_equal(text[4 + RTA_KEY_ID_LEN], '_');
    assert_string_equal(rec.user_id, "u1");
    assert_string_equal(rec.tier, "pro");
    assert_string_equal(rec.role, "user");
    assert_string_equal(rec.label, "laptop");
    assert_int_equal(rec.created_ms, T0);
    assert_int_equal(rec.revoked_ms, 0);
    /* what is stored is SHA-256 of the 43 secret characters */
    unsigned char want[32];
    unsigned int hl = 0;
    assert_int_equal(EVP_Digest(text + 22, RTA_KEY_SECRET_LEN, want, &hl, EVP_sha256(), NULL), 1);
    assert_memory_equal(rec.secret_hash, want, 32);
    for (size_t i = 22; i < strlen(text); i++) /* base64url alphabet */
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", text[i]));

    rta_keyring *kr = rta_keyring_new();
    rta_key *k = rta_keyring_put(kr, &rec);
    assert_non_null(k);
    assert_int_equal(k->perms, rta_role_perms("user"));
    rta_key *got = NULL;
    assert_int_equal(rta_keyring_verify(kr, text, &got), RTA_AUTH_OK);
    assert_ptr_equal(got, k);
    assert_string_equal(got->rec.user_id, "u1");

    /* wrong secret: flip one char of the secret */
    char bad[RTA_KEY_TEXT_MAX];
    strcpy(bad, text);
    size_t last = strlen(bad) - 1;
    bad[last] = bad[last] == 'A' ? 'B' : 'A';
    assert_int_equal(rta_keyring_verify(kr, bad, &got), RTA_AUTH_UNKNOWN);
    assert_null(got);

    /* unknown id, well-formed */
    strcpy(bad, text);
    bad[5] = bad[5] == '0' ? '1' : '0';
    assert_int_equal(rta_keyring_verify(kr, bad, &got), RTA_AUTH_UNKNOWN);

    /* two keys differ */
    rta_key_record rec2;
    char text2[RTA_KEY_TEXT_MAX];
    assert_int_equal(rta_key_generate("u1", "pro", "user", NULL, T0, &rec2, text2), 0);
    assert_null(rec2.label);
    assert_string_not_equal(text, text2);
    assert_string_not_equal(rec.id, rec2.id);

    rta_keyring_free(kr);
    rec_free(&rec);
    rec_free(&rec2);
}

static void test_malformed_and_missing(void **state)
{
    (void)state;
    rta_keyring *kr = rta_keyring_new();
    const char *good_secret = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234"; /* 43 chars */
    assert_int_equal(strlen(good_secret), RTA_KEY_SECRET_LEN);
    char long_text[200];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    memcpy(long_text, "rta_k0123456789abcdef_", 22);

    char cases[12][128];
    int n = 0;
    snprintf(cases[n++], 128, "%s", "");
    snprintf(cases[n++], 128, "%s", "rta_");
    snprintf(cases[n++], 128, "%s", "rta_k0123456789abcdef");               /* no secret */
    snprintf(cases[n++], 128, "rta_k0123456789abcdef%s", good_secret);      /* no separator */
    snprintf(cases[n++], 128, "rta_k0123456789abcdeg_%s", good_secret);     /* bad hex */
    snprintf(cases[n++], 128, "rta_k0123456789ABCDEF_%s", good_secret);     /* upper hex */
    snprintf(cases[n++], 128, "rtb_k0123456789abcdef_%s", good_secret);     /* wrong prefix */
    snprintf(cases[n++], 128, "rta_x0123456789abcdef_%s", good_secret);     /* id not k... */
    snprintf(cases[n++], 128, "rta_k0123456789abcdef_%.42s", good_secret);  /* short secret */
    snprintf(cases[n++], 128, "rta_k0123456789abcdef_%sx", good_secret);    /* long secret */
    snprintf(cases[n++], 128, "rta_k0123456789abcdef_%.42s=", good_secret); /* bad alphabet */
    snprintf(cases[n++], 128, " rta_k0123456789abcdef_%.42s", good_secret); /* leading space */
    for (int i = 0; i < n; i++) {
        rta_key *got = (rta_key *)1;
        assert_int_equal(rta_keyring_verify(kr, cases[i], &got), RTA_AUTH_MALFORMED);
        assert_null(got);
        rta_key_record rec;
        assert_int_equal(rta_key_from_text(cases[i], "u", "free", "user", T0, &rec), -1);
        assert_null(rec.id);
    }
    assert_int_equal(rta_keyring_verify(kr, long_text, NULL), RTA_AUTH_MALFORMED);
    assert_int_equal(rta_keyring_verify(kr, NULL, NULL), RTA_AUTH_MISSING);

    /* the well-formed version of the table's key is only unknown */
    char ok[128];
    snprintf(ok, sizeof ok, "rta_k0123456789abcdef_%s", good_secret);
    assert_int_equal(rta_keyring_verify(kr, ok, NULL), RTA_AUTH_UNKNOWN);

    assert_string_equal(rta_auth_result_code(RTA_AUTH_MISSING), "missing_api_key");
    assert_string_equal(rta_auth_result_code(RTA_AUTH_MALFORMED), "malformed_api_key");
    assert_string_equal(rta_auth_result_code(RTA_AUTH_UNKNOWN), "invalid_api_key");
    assert_string_equal(rta_auth_result_code(RTA_AUTH_REVOKED), "revoked_api_key");
    rta_keyring_free(kr);
}

static void test_revoked_and_replace(void **state)
{
    (void)state;
    rta_keyring *kr = rta_keyring_new();
    rta_key_record rec;
    char text[RTA_KEY_TEXT_MAX];
    assert_int_equal(rta_key_generate("u2", "free", "reader", NULL, T0, &rec, text), 0);
    rta_key *k = rta_keyring_put(kr, &rec);
    k->connections = 3;
    rec.revoked_ms = T0 + 5000;
    rta_key *k2 = rta_keyring_put(kr, &rec); /* same id: updated in place */
    assert_ptr_equal(k, k2);
    assert_int_equal(k->connections, 3);
    assert_int_equal(rta_keyring_count(kr), 1);
    rta_key *got = NULL;
    assert_int_equal(rta_keyring_verify(kr, text, &got), RTA_AUTH_REVOKED);
    assert_null(got);
    assert_ptr_equal(rta_keyring_get(kr, rec.id), k);
    assert_null(rta_keyring_get(kr, "k0000000000000000"));
    rta_keyring_free(kr);
    rec_free(&rec);
}

static void test_key_from_text_roundtrip(void **state)
{
    (void)state;
    rta_key_record gen, boot;
    char text[RTA_KEY_TEXT_MAX];
    assert_int_equal(rta_key_generate("x", "free", "user", NULL, T0, &gen, text), 0);
    assert_int_equal(rta_key_from_text(text, "admin", "enterprise", "admin", T0 + 1, &boot), 0);
    assert_string_equal(boot.id, gen.id);
    assert_memory_equal(boot.secret_hash, gen.secret_hash, 32);
    assert_string_equal(boot.user_id, "admin");
    assert_string_equal(boot.role, "admin");
    assert_null(boot.label);

    rta_keyring *kr = rta_keyring_new();
    rta_keyring_put(kr, &boot);
    rta_key *got = NULL;
    assert_int_equal(rta_keyring_verify(kr, text, &got), RTA_AUTH_OK);
    assert_true(got->perms & RTA_PERM_ADMIN);
    rta_keyring_free(kr);
    rec_free(&gen);
    rec_free(&boot);
}

static void collect(void *ud, rta_key *k)
{
    char *s = ud;
    strcat(s, k->rec.id + 16); /* last char of the id */
}

static void test_each_oldest_first(void **state)
{
    (void)state;
    rta_keyring *kr = rta_keyring_new();
    const struct {
        const char *id;
        int64_t created;
    } in[] = {{"k000000000000000b", 20}, {"k000000000000000c", 30}, {"k000000000000000a", 10}};
    for (size_t i = 0; i < RTA_ARRAY_LEN(in); i++) {
        rta_key_record r = {.id = (char *)in[i].id,
                            .user_id = "u",
                            .tier = "free",
                            .role = "user",
                            .created_ms = in[i].created};
        assert_non_null(rta_keyring_put(kr, &r));
    }
    char order[8] = "";
    rta_keyring_each(kr, collect, order);
    assert_string_equal(order, "abc");
    assert_int_equal(rta_keyring_count(kr), 3);
    rta_keyring_free(kr);
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(rta_role_perms("admin"), RTA_PERM_READ | RTA_PERM_QUERY | RTA_PERM_INGEST |
                                                  RTA_PERM_ADMIN | RTA_PERM_SUBSCRIBE |
                                                  RTA_PERM_ALERTS);
    assert_int_equal(rta_role_perms("user"),
                     RTA_PERM_READ | RTA_PERM_QUERY | RTA_PERM_SUBSCRIBE | RTA_PERM_ALERTS);
    assert_int_equal(rta_role_perms("ingest"), RTA_PERM_READ | RTA_PERM_INGEST);
    assert_int_equal(rta_role_perms("reader"), RTA_PERM_READ | RTA_PERM_SUBSCRIBE);
    assert_int_equal(rta_role_perms("root"), 0);
    assert_int_equal(rta_role_perms(NULL), 0);
    assert_true(rta_role_valid("reader"));
    assert_false(rta_role_valid("Admin"));

    char buf[64];
    rta_perms_format(rta_role_perms("admin"), buf, sizeof buf);
    assert_string_equal(buf, "read,query,ingest,admin,subscribe,alerts");
    rta_perms_format(rta_role_perms("ingest"), buf, sizeof buf);
    assert_string_equal(buf, "read,ingest");
    rta_perms_format(0, buf, sizeof buf);
    assert_string_equal(buf, "");
    char small[12];
    rta_perms_format(rta_role_perms("admin"), small, sizeof small);
    assert_string_equal(small, "read,query"); /* whole names only */
}

static void test_tiers(void **state)
{
    (void)state;
    rta_tier t[RTA_TIER_COUNT];
    rta_tiers_defaults(t);
    const rta_tier *f = rta_tier_find(t, "free");
    assert_non_null(f);
    assert_int_equal(f->websocket_connections, 5);
    assert_int_equal(f->messages_per_minute, 100);
    assert_int_equal(f->api_requests_per_minute, 60);
    assert_int_equal(f->alert_rules, 5);
    const rta_tier *p = rta_tier_find(t, "pro");
    assert_int_equal(p->websocket_connections, 50);
    assert_int_equal(p->messages_per_minute, 1000);
    assert_int_equal(p->api_requests_per_minute, 600);
    assert_int_equal(p->alert_rules, 100);
    const rta_tier *e = rta_tier_find(t, "enterprise");
    assert_int_equal(e->websocket_connections, 1000);
    assert_int_equal(e->messages_per_minute, 10000);
    assert_int_equal(e->api_requests_per_minute, 6000);
    assert_int_equal(e->alert_rules, 1000);
    assert_null(rta_tier_find(t, "gold"));
    assert_null(rta_tier_find(t, NULL));
}

static void test_bucket_burst_then_refuse(void **state)
{
    (void)state;
    rta_bucket b = {0};
    int rem = -1, reset = -1, retry = -1;
    for (int i = 0; i < 60; i++) {
        assert_int_equal(rta_bucket_take(&b, 60, T0, &rem, &reset, &retry), 1);
        assert_int_equal(rem, 59 - i);
        assert_int_equal(reset, i + 1); /* one token per second to refill */
        assert_int_equal(retry, 0);
    }
    assert_int_equal(rta_bucket_take(&b, 60, T0, &rem, &reset, &retry), 0);
    assert_int_equal(rem, 0);
    assert_int_equal(reset, 60);
    assert_int_equal(retry, 1);
    /* half a second later: still refused, retry after rounds up to 1 */
    assert_int_equal(rta_bucket_take(&b, 60, T0 + 500, &rem, &reset, &retry), 0);
    assert_int_equal(retry, 1);
    assert_int_equal(reset, 60); /* 59.5 s rounds up */
    /* one second after the burst: exactly one token */
    assert_int_equal(rta_bucket_take(&b, 60, T0 + 1000, &rem, &reset, &retry), 1);
    assert_int_equal(rem, 0);
    assert_int_equal(rta_bucket_take(&b, 60, T0 + 1000, &rem, &reset, &retry), 0);
    /* ten seconds more: ten tokens */
    int allowed = 0;
    while (rta_bucket_take(&b, 60, T0 + 11000, &rem, &reset, &retry))
        allowed++;
    assert_int_equal(allowed, 10);
    /* a long idle period caps at capacity */
    assert_int_equal(rta_bucket_take(&b, 60, T0 + 3600000, &rem, &reset, &retry), 1);
    assert_int_equal(rem, 59);
    assert_int_equal(reset, 1);
}

static void test_bucket_slow_rate_retry(void **state)
{
    (void)state;
    rta_bucket b = {0};
    int rem, reset, retry;
    /* 6/min = one token per 10 s */
    for (int i = 0; i < 6; i++)
        assert_int_equal(rta_bucket_take(&b, 6, T0, &rem, &reset, &retry), 1);
    assert_int_equal(rta_bucket_take(&b, 6, T0 + 2500, &rem, &reset, &retry), 0);
    assert_int_equal(retry, 8); /* 7.5 s rounds up */
    assert_int_equal(reset, 58);
    /* NULL outputs are allowed */
    assert_int_equal(rta_bucket_take(&b, 6, T0 + 10000, NULL, NULL, NULL), 1);
    /* non-positive limit refuses */
    rta_bucket z = {0};
    assert_int_equal(rta_bucket_take(&z, 0, T0, &rem, &reset, &retry), 0);
    assert_true(retry >= 1);
}

static void test_bucket_clock_backwards(void **state)
{
    (void)state;
    rta_bucket b = {0};
    int rem, reset, retry;
    for (int i = 0; i < 60; i++)
        assert_int_equal(rta_bucket_take(&b, 60, T0 + 10000, &rem, &reset, &retry), 1);
    /* clock goes back 10 s: no refill, no crash, no negative values */
    assert_int_equal(rta_bucket_take(&b, 60, T0, &rem, &reset, &retry), 0);
    assert_int_equal(rem, 0);
    assert_int_equal(retry, 1);
    /* coming forward again to the old time creates no tokens */
    assert_int_equal(rta_bucket_take(&b, 60, T0 + 10000, &rem, &reset, &retry), 0);
    /* one second past the old time: one token */
    assert_int_equal(rta_bucket_take(&b, 60, T0 + 11000, &rem, &reset, &retry), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_shape_and_verify),
        cmocka_unit_test(test_malformed_and_missing),
        cmocka_unit_test(test_revoked_and_replace),
        cmocka_unit_test(test_key_from_text_roundtrip),
        cmocka_unit_test(test_each_oldest_first),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_tiers),
        cmocka_unit_test(test_bucket_burst_then_refuse),
        cmocka_unit_test(test_bucket_slow_rate_retry),
        cmocka_unit_test(test_bucket_clock_backwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
