/* Unit tests for src/query: validation, canonical form, filters, sorting, paging,
 * aggregations, and the result cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rta/query.h"
#include "rta/simulator.h"
#include "rta/state.h"
#include "rta/util.h"

/* ---------------------------------------------------------------- fixture */

#define H (3600LL * 1000)

typedef struct {
    const char *protocol, *name, *category, *chain;
    double tvl;
    /* history: value at now-7d-30min, now-25h, now-2h (NaN = no point) */
    double v7d, v24h, v1h;
} fx_pair;

static const fx_pair fixture[] = {
    {"alpha", "Alpha", "Dexes", "ethereum", 1000, 500, 800, 900},
    {"alpha", "Alpha", "Dexes", "arbitrum", 200, 400, 100, 250},
    {"beta", "Beta", "Lending", "ethereum", 5000, 5000, 5000, 4000},
    {"gamma", "Gamma", "Dexes", "bsc", 50, 100, 40, 50},
    {"delta", "Delta", "Yield", "ethereum", 300, NAN, 600, 300},
    {"delta", "Delta", "Yield", "bsc", 300, NAN, NAN, NAN},
    {"delta", "Delta", "Yield", "polygon", 10, NAN, NAN, NAN},
    {"eps", NULL, NULL, "polygon", 0, NAN, NAN, NAN},
};
#define NFIX (sizeof fixture / sizeof fixture[0])

typedef struct {
    rta_state *st;
    int64_t now_ms;
} fx;

static void restore(rta_state *st, const fx_pair *f, double v, int64_t ts)
{
    rta_tvl_update u = {.protocol = f->protocol,
                        .chain = f->chain,
                        .tvl = v,
                        .ts_ms = ts,
                        .name = f->name,
                        .category = f->category};
    rta_state_restore_tvl(st, &u);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    rta_state_options o = {0};
    f->st = rta_state_new(&o);
    f->now_ms = rta_now_ms();
    for (size_t i = 0; i < NFIX; i++) {
        const fx_pair *p = &fixture[i];
        if (!isnan(p->v7d))
            restore(f->st, p, p->v7d, f->now_ms - 168 * H - H / 2);
        if (!isnan(p->v24h))
            restore(f->st, p, p->v24h, f->now_ms - 25 * H);
        if (!isnan(p->v1h))
            restore(f->st, p, p->v1h, f->now_ms - 2 * H);
        restore(f->st, p, p->tvl, f->now_ms);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rta_state_free(f->st);
    free(f);
    return 0;
}

static rta_query *parse_ok(const char *text)
{
    json_error_t jerr;
    json_t *body = json_loads(text, 0, &jerr);
    if (!body)
        fail_msg("bad test json %s: %s", text, jerr.text);
    json_t *errors = NULL;
    rta_query *q = rta_query_parse(body, &errors);
    if (!q) {
        char *e = json_dumps(errors, 0);
        fail_msg("unexpected errors for %s: %s", text, e);
    }
    assert_null(errors);
    json_decref(body);
    return q;
}

static json_t *run(fx *f, const char *text)
{
    rta_query *q = parse_ok(text);
    json_t *res = rta_query_exec(q, f->st, f->now_ms);
    rta_query_free(q);
    assert_non_null(res);
    return res;
}

/* "protocol/chain,protocol/chain,..." of the returned rows. */
static void rows_str(const json_t *res, char *out, size_t outlen)
{
    size_t i, len = 0;
    json_t *row;
    out[0] = '\0';
    json_array_foreach(json_object_get(res, "data"), i, row)
    {
        len += (size_t)snprintf(out + len, outlen - len, "%s%s/%s", i ? "," : "",
                                json_string_value(json_object_get(row, "protocol")),
                                json_string_value(json_object_get(row, "chain")));
    }
}

static void expect_rows(fx *f, const char *query, const char *expected)
{
    json_t *res = run(f, query);
    char got[1024];
    rows_str(res, got, sizeof got);
    if (strcmp(got, expected) != 0)
        fail_msg("query %s\n  got      %s\n  expected %s", query, got, expected);
    json_decref(res);
}

static json_int_t meta(const json_t *res, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(res, "meta"), k));
}

/* ---------------------------------------------------------------- validation */

static void test_validation_table(void **state)
{
    (void)state;
    static const struct {
        const char *body, *path, *rule;
    } cases[] = {
        {"[]", "$", "type"},
        {"{\"bogus\":1}", "$.bogus", "unknown_field"},
        {"{\"filters\":[]}", "$.filters", "type"},
        {"{\"filters\":{\"nope\":1}}", "$.filters.nope", "unknown_field"},
        {"{\"filters\":{\"protocols\":\"aave\"}}", "$.filters.protocols", "type"},
        {"{\"filters\":{\"protocols\":[\"aave\",3]}}", "$.filters.protocols[1]", "type"},
        {"{\"filters\":{\"chains\":[\"Ethereum\"]}}", "$.filters.chains[0]", "slug"},
        {"{\"filters\":{\"chains\":[\"\"]}}", "$.filters.chains[0]", "slug"},
        {"{\"filters\":{\"categories\":[\"\"]}}", "$.filters.categories[0]", "length"},
        {"{\"filters\":{\"tvl_range\":{\"min\":\"1\"}}}", "$.filters.tvl_range.min", "type"},
        {"{\"filters\":{\"tvl_range\":{\"min\":5,\"max\":1}}}", "$.filters.tvl_range",
         "min_gt_max"},
        {"{\"filters\":{\"tvl_range\":{\"avg\":1}}}", "$.filters.tvl_range.avg", "unknown_field"},
        {"{\"filters\":{\"change_24h\":{\"min\":0.1,\"max\":-0.1}}}", "$.filters.change_24h",
         "min_gt_max"},
        {"{\"filters\":{\"change_24h\":5}}", "$.filters.change_24h", "type"},
        {"{\"aggregations\":{}}", "$.aggregations", "type"},
        {"{\"aggregations\":[1]}", "$.aggregations[0]", "type"},
        {"{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"median\"}]}",
         "$.aggregations[0].operation", "enum"},
        {"{\"aggregations\":[{\"field\":\"name\",\"operation\":\"sum\"}]}",
         "$.aggregations[0].field", "enum"},
        {"{\"aggregations\":[{\"field\":\"tvl\"}]}", "$.aggregations[0].operation", "required"},
        {"{\"aggregations\":[{\"operation\":\"sum\"}]}", "$.aggregations[0].field", "required"},
        {"{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"token\"}]}",
         "$.aggregations[0].group_by", "enum"},
        {"{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\",\"x\":1}]}",
         "$.aggregations[0].x", "unknown_field"},
        {"{\"sort\":{\"field\":\"price\"}}", "$.sort.field", "enum"},
        {"{\"sort\":{\"order\":\"up\"}}", "$.sort.order", "enum"},
        {"{\"sort\":{\"order\":1}}", "$.sort.order", "type"},
        {"{\"sort\":{\"by\":\"tvl\"}}", "$.sort.by", "unknown_field"},
        {"{\"limit\":0}", "$.limit", "range"},
        {"{\"limit\":1001}", "$.limit", "range"},
        {"{\"limit\":10.5}", "$.limit", "type"},
        {"{\"limit\":\"10\"}", "$.limit", "type"},
        {"{\"offset\":-1}", "$.offset", "range"},
        {"{\"offset\":1000001}", "$.offset", "range"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(cases); i++) {
        json_t *body = json_loads(cases[i].body, JSON_DECODE_ANY, NULL);
        assert_non_null(body);
        json_t *errors = NULL;
        rta_query *q = rta_query_parse(body, &errors);
        if (q)
            fail_msg("accepted invalid body %s", cases[i].body);
        assert_non_null(errors);
        json_t *e0 = json_array_get(errors, 0);
        const char *path = json_string_value(json_object_get(e0, "path"));
        const char *rule = json_string_value(json_object_get(e0, "rule"));
        if (!path || !rule || strcmp(path, cases[i].path) || strcmp(rule, cases[i].rule))
            fail_msg("%s: got %s/%s, expected %s/%s", cases[i].body, path ? path : "-",
                     rule ? rule : "-", cases[i].path, cases[i].rule);
        assert_non_null(json_object_get(e0, "message"));
        json_decref(errors);
        json_decref(body);
    }
}

static void test_validation_reports_all_and_limits_lists(void **state)
{
    (void)state;
    json_t *body = json_pack("{s:i,s:{s:s},s:{s:o}}", "limit", 0, "sort", "order", "sideways",
                             "filters", "protocols", json_array());
    json_t *list = json_object_get(json_object_get(body, "filters"), "protocols");
    for (int i = 0; i <= RTA_QUERY_MAX_LIST; i++) {
        char s[16];
        snprintf(s, sizeof s, "p%d", i);
        json_array_append_new(list, json_string(s));
    }
    json_t *errors = NULL;
    assert_null(rta_query_parse(body, &errors));
    assert_int_equal(json_array_size(errors), 3);
    int seen_list = 0;
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")), "$.filters.protocols") == 0) {
            assert_string_equal(json_string_value(json_object_get(e, "rule")), "too_many");
            seen_list = 1;
        }
    }
    assert_true(seen_list);
    json_decref(errors);
    /* Exactly the maximum is fine. */
    json_array_remove(list, 0);
    json_object_del(body, "limit");
    json_object_del(body, "sort");
    rta_query *q = rta_query_parse(body, &errors);
    assert_non_null(q);
    assert_null(errors);
    rta_query_free(q);
    json_decref(body);
}

static void test_canonical(void **state)
{
    (void)state;
    rta_query *a = parse_ok("{}");
    assert_string_equal(rta_query_canonical(a),
                        "{\"filters\":{},\"aggregations\":[],\"sort\":{\"field\":\"tvl\","
                        "\"order\":\"desc\"},\"limit\":100,\"offset\":0}");
    rta_query *b = parse_ok("{\"sort\":{\"order\":\"desc\"},\"limit\":100,\"filters\":{}}");
    assert_string_equal(rta_query_canonical(a), rta_query_canonical(b));
    rta_query_free(b);
    rta_query_free(a);

    a = parse_ok("{\"filters\":{\"chains\":[\"polygon\",\"ethereum\",\"polygon\"],"
                 "\"protocols\":[\"b\",\"a\"],\"tvl_range\":{\"max\":10000000000,\"min\":1e6}},"
                 "\"aggregations\":[{\"operation\":\"sum\",\"field\":\"tvl\"}]}");
    b = parse_ok("{\"aggregations\":[{\"field\":\"tvl\",\"operation\":\"sum\","
                 "\"group_by\":\"none\"}],\"filters\":{\"tvl_range\":{\"min\":1000000,"
                 "\"max\":1e10},\"protocols\":[\"a\",\"b\",\"a\"],\"chains\":[\"ethereum\","
                 "\"polygon\"]},\"offset\":0}");
    assert_string_equal(rta_query_canonical(a), rta_query_canonical(b));
    assert_non_null(strstr(rta_query_canonical(a), "\"chains\":[\"ethereum\",\"polygon\"]"));
    rta_query_free(b);
    /* Different meaning, different text. */
    b = parse_ok("{\"filters\":{\"chains\":[\"ethereum\"]}}");
    assert_string_not_equal(rta_query_canonical(a), rta_query_canonical(b));
    rta_query_free(b);
    rta_query_free(a);

    /* An empty list is no filter at all. */
    a = parse_ok("{\"filters\":{\"protocols\":[]}}");
    b = parse_ok("{}");
    assert_string_equal(rta_query_canonical(a), rta_query_canonical(b));
    rta_query_free(b);
    rta_query_free(a);
}

/* ---------------------------------------------------------------- exec */

static void test_default_query(void **state)
{
    fx *f = *state;
    json_t *res = run(f, "{}");
    assert_int_equal(meta(res, "total"), NFIX);
    assert_int_equal(meta(res, "returned"), NFIX);
    json_t *first = json_array_get(json_object_get(res, "data"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "protocol")), "beta");
    assert_string_equal(json_string_value(json_object_get(first, "name")), "Beta");
    assert_string_equal(json_string_value(json_object_get(first, "category")), "Lending");
    assert_true(json_number_value(json_object_get(first, "tvl")) == 5000);
    assert_true(json_number_value(json_object_get(first, "change_1h")) == 0.25);
    assert_true(json_number_value(json_object_get(first, "change_24h")) == 0);
    assert_true(json_number_value(json_object_get(first, "change_7d")) == 0);
    assert_true(json_is_string(json_object_get(first, "updatedAt")));
    assert_int_equal(json_array_size(json_object_get(res, "aggregations")), 0);
    /* The protocol that never had a name shows its slug; unknown changes are null. */
    json_t *last = json_array_get(json_object_get(res, "data"), NFIX - 1);
    assert_string_equal(json_string_value(json_object_get(last, "name")), "eps");
    assert_string_equal(json_string_value(json_object_get(last, "category")), "");
    assert_true(json_is_null(json_object_get(last, "change_24h")));
    json_decref(res);
}

static void test_filters(void **state)
{
    fx *f = *state;
    expect_rows(f, "{\"filters\":{\"protocols\":[\"delta\",\"alpha\",\"nope\"]}}",
                "alpha/ethereum,delta/bsc,delta/ethereum,alpha/arbitrum,delta/polygon");
    expect_rows(f, "{\"filters\":{\"chains\":[\"ethereum\"]}}",
                "beta/ethereum,alpha/ethereum,delta/ethereum");
    expect_rows(f, "{\"filters\":{\"chains\":[\"polygon\",\"unknown-chain\"]}}",
                "delta/polygon,eps/polygon");
    expect_rows(f, "{\"filters\":{\"categories\":[\"Dexes\"]}}",
                "alpha/ethereum,alpha/arbitrum,gamma/bsc");
    expect_rows(f, "{\"filters\":{\"categories\":[\"dexes\"]}}", "");
    expect_rows(f, "{\"filters\":{\"tvl_range\":{\"min\":200,\"max\":1000}}}",
                "alpha/ethereum,delta/bsc,delta/ethereum,alpha/arbitrum");
    expect_rows(f, "{\"filters\":{\"tvl_range\":{\"max\":10}}}", "delta/polygon,eps/polygon");
    /* change filters never match rows whose change is unknown */
    expect_rows(f, "{\"filters\":{\"change_24h\":{\"min\":0}}}",
                "beta/ethereum,alpha/ethereum,alpha/arbitrum,gamma/bsc");
    expect_rows(f, "{\"filters\":{\"change_24h\":{\"min\":-0.1,\"max\":0.3}}}",
                "beta/ethereum,alpha/ethereum,gamma/bsc");
    expect_rows(f,
                "{\"filters\":{\"protocols\":[\"alpha\",\"gamma\",\"beta\"],"
                "\"chains\":[\"ethereum\",\"bsc\"],\"categories\":[\"Dexes\"],"
                "\"change_24h\":{\"min\":0.2}}}",
                "alpha/ethereum,gamma/bsc");
    json_t *res = run(f, "{\"filters\":{\"protocols\":[\"nope\"]}}");
    assert_int_equal(meta(res, "total"), 0);
    assert_int_equal(json_array_size(json_object_get(res, "data")), 0);
    json_decref(res);
}

static void test_sort_orders(void **state)
{
    fx *f = *state;
    expect_rows(f, "{\"sort\":{\"field\":\"tvl\",\"order\":\"asc\"}}",
                "eps/polygon,delta/polygon,gamma/bsc,alpha/arbitrum,delta/bsc,delta/ethereum,"
                "alpha/ethereum,beta/ethereum");
    /* unknown changes last in both directions; ties broken by protocol, chain */
    expect_rows(f, "{\"sort\":{\"field\":\"change_24h\"}}",
                "alpha/arbitrum,alpha/ethereum,gamma/bsc,beta/ethereum,delta/ethereum,"
                "delta/bsc,delta/polygon,eps/polygon");
    expect_rows(f, "{\"sort\":{\"field\":\"change_24h\",\"order\":\"asc\"}}",
                "delta/ethereum,beta/ethereum,alpha/ethereum,gamma/bsc,alpha/arbitrum,"
                "delta/bsc,delta/polygon,eps/polygon");
    expect_rows(f, "{\"sort\":{\"field\":\"change_1h\"},\"limit\":3}",
                "beta/ethereum,alpha/ethereum,delta/ethereum");
    expect_rows(f, "{\"sort\":{\"field\":\"change_7d\",\"order\":\"asc\"},\"limit\":4}",
                "alpha/arbitrum,gamma/bsc,beta/ethereum,alpha/ethereum");
    expect_rows(f, "{\"sort\":{\"field\":\"protocol\",\"order\":\"desc\"}}",
                "gamma/bsc,eps/polygon,delta/bsc,delta/ethereum,delta/polygon,beta/ethereum,"
                "alpha/arbitrum,alpha/ethereum");
    expect_rows(f, "{\"sort\":{\"field\":\"chain\",\"order\":\"asc\"}}",
                "alpha/arbitrum,delta/bsc,gamma/bsc,alpha/ethereum,beta/ethereum,"
                "delta/ethereum,delta/polygon,eps/polygon");
    expect_rows(f, "{\"sort\":{\"field\":\"name\",\"order\":\"asc\"}}",
                "alpha/arbitrum,alpha/ethereum,beta/ethereum,delta/bsc,delta/ethereum,"
                "delta/polygon,gamma/bsc,eps/polygon");
    expect_rows(f, "{\"sort\":{\"field\":\"category\",\"order\":\"asc\"}}",
                "eps/polygon,alpha/arbitrum,alpha/ethereum,gamma/bsc,beta/ethereum,"
                "delta/bsc,delta/ethereum,delta/polygon");
    json_t *res = run(f, "{\"sort\":{\"field\":\"updatedAt\"}}");
    assert_int_equal(meta(res, "returned"), NFIX);
    json_decref(res);
}

static void test_paging(void **state)
{
    fx *f = *state;
    expect_rows(f, "{\"limit\":2}", "beta/ethereum,alpha/ethereum");
    expect_rows(f, "{\"limit\":3,\"offset\":2}", "delta/bsc,delta/ethereum,alpha/arbitrum");
    expect_rows(f, "{\"limit\":1,\"offset\":3}", "delta/ethereum");
    expect_rows(f, "{\"limit\":5,\"offset\":6}", "delta/polygon,eps/polygon");
    json_t *res = run(f, "{\"limit\":5,\"offset\":100}");
    assert_int_equal(meta(res, "total"), NFIX);
    assert_int_equal(meta(res, "returned"), 0);
    json_decref(res);
}

/* The bounded-heap path (small limit+offset) must agree with a full sort. */
static void sim_restore(void *ud, const rta_tvl_update *u)
{
    rta_state_restore_tvl(ud, u);
}

static void test_topk_matches_full_sort(void **state)
{
    (void)state;
    rta_sim_options so = {
        .seed = 7, .protocols = 300, .chains = 20, .pairs = 700, .tokens = 5, .categories = 8};
    rta_sim *sim = rta_sim_new(&so);
    rta_state_options o = {0};
    rta_state *st = rta_state_new(&o);
    int64_t now = rta_now_ms();
    rta_sim_history(sim, now, 26 * H, H, sim_restore, NULL, st);
    rta_sim_snapshot(sim, now, sim_restore, NULL, st);
    assert_int_equal(st->npairs, 700);
    static const char *const sorts[] = {"tvl",   "change_1h", "change_24h", "protocol",
                                        "chain", "name",      "category",   "updatedAt"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(sorts); i++)
        for (int desc = 0; desc < 2; desc++) {
            char qs[256];
            snprintf(qs, sizeof qs,
                     "{\"sort\":{\"field\":\"%s\",\"order\":\"%s\"},"
                     "\"limit\":7,\"offset\":11}",
                     sorts[i], desc ? "desc" : "asc");
            rta_query *small = parse_ok(qs);
            snprintf(qs, sizeof qs,
                     "{\"sort\":{\"field\":\"%s\",\"order\":\"%s\"},"
                     "\"limit\":1000}",
                     sorts[i], desc ? "desc" : "asc");
            rta_query *full = parse_ok(qs);
            json_t *a = rta_query_exec(small, st, now);
            json_t *b = rta_query_exec(full, st, now);
            assert_int_equal(meta(a, "total"), 700);
            assert_int_equal(meta(b, "returned"), 700);
            json_t *da = json_object_get(a, "data"), *db = json_object_get(b, "data");
            assert_int_equal(json_array_size(da), 7);
            for (size_t k = 0; k < 7; k++)
                assert_true(json_equal(json_array_get(da, k), json_array_get(db, 11 + k)));
            json_decref(a);
            json_decref(b);
            rta_query_free(small);
            rta_query_free(full);
        }
    rta_state_free(st);
    rta_sim_free(sim);
}

/* Finds the aggregation i's group with key (NULL = the "none" group). */
static json_t *group(json_t *res, size_t i, size_t g)
{
    json_t *agg = json_array_get(json_object_get(res, "aggregations"), i);
    return json_array_get(json_object_get(agg, "groups"), g);
}

static void expect_group(json_t *res, size_t i, size_t g, const char *key, double value,
                         json_int_t count)
{
    json_t *gr = group(res, i, g);
    assert_non_null(gr);
    json_t *k = json_object_get(gr, "key");
    if (key)
        assert_string_equal(json_string_value(k), key);
    else
        assert_true(json_is_null(k));
    json_t *v = json_object_get(gr, "value");
    if (isnan(value))
        assert_true(json_is_null(v));
    else if (fabs(json_number_value(v) - value) > 1e-9)
        fail_msg("agg %zu group %zu (%s): value %.17g, expected %.17g", i, g, key ? key : "null",
                 json_number_value(v), value);
    assert_int_equal(json_integer_value(json_object_get(gr, "count")), count);
}

static size_t ngroups(json_t *res, size_t i)
{
    json_t *agg = json_array_get(json_object_get(res, "aggregations"), i);
    return json_array_size(json_object_get(agg, "groups"));
}

static void test_aggregations(void **state)
{
    fx *f = *state;
    json_t *res =
        run(f, "{\"limit\":1,\"aggregations\":["
               "{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"chain\"},"
               "{\"operation\":\"count\",\"group_by\":\"category\"},"
               "{\"field\":\"change_24h\",\"operation\":\"avg\"},"
               "{\"field\":\"change_1h\",\"operation\":\"min\",\"group_by\":\"protocol\"},"
               "{\"field\":\"tvl\",\"operation\":\"max\",\"group_by\":\"protocol\"},"
               "{\"field\":\"change_7d\",\"operation\":\"count\",\"group_by\":\"none\"}"
               "]}");
    assert_int_equal(meta(res, "returned"), 1);
    json_t *a0 = json_array_get(json_object_get(res, "aggregations"), 0);
    assert_string_equal(json_string_value(json_object_get(a0, "field")), "tvl");
    assert_string_equal(json_string_value(json_object_get(a0, "operation")), "sum");
    assert_string_equal(json_string_value(json_object_get(a0, "group_by")), "chain");
    /* sum tvl by chain, over all rows (not just the page), by value desc */
    assert_int_equal(ngroups(res, 0), 4);
    expect_group(res, 0, 0, "ethereum", 6300, 3);
    expect_group(res, 0, 1, "bsc", 350, 2);
    expect_group(res, 0, 2, "arbitrum", 200, 1);
    expect_group(res, 0, 3, "polygon", 10, 2);
    /* count by category; ties by key */
    assert_int_equal(ngroups(res, 1), 4);
    expect_group(res, 1, 0, "Dexes", 3, 3);
    expect_group(res, 1, 1, "Yield", 3, 3);
    expect_group(res, 1, 2, "", 1, 1);
    expect_group(res, 1, 3, "Lending", 1, 1);
    /* avg over the rows whose change is known */
    assert_int_equal(ngroups(res, 2), 1);
    expect_group(res, 2, 0, NULL, 0.2, 5);
    /* min change_1h by protocol: unknown-only groups are null and last */
    assert_int_equal(ngroups(res, 3), 5);
    expect_group(res, 3, 0, "beta", 0.25, 1);
    expect_group(res, 3, 1, "delta", 0, 1);
    expect_group(res, 3, 2, "gamma", 0, 1);
    expect_group(res, 3, 3, "alpha", -0.2, 2);
    expect_group(res, 3, 4, "eps", NAN, 0);
    /* max tvl by protocol */
    expect_group(res, 4, 0, "beta", 5000, 1);
    expect_group(res, 4, 1, "alpha", 1000, 2);
    expect_group(res, 4, 2, "delta", 300, 3);
    /* count of known change_7d */
    expect_group(res, 5, 0, NULL, 4, 4);
    json_decref(res);

    /* Aggregations follow the filters; "none" over nothing still gives one group. */
    res = run(f, "{\"filters\":{\"chains\":[\"bsc\"]},\"aggregations\":["
                 "{\"field\":\"tvl\",\"operation\":\"avg\",\"group_by\":\"protocol\"},"
                 "{\"field\":\"tvl\",\"operation\":\"sum\"}]}");
    expect_group(res, 0, 0, "delta", 300, 1);
    expect_group(res, 0, 1, "gamma", 50, 1);
    expect_group(res, 1, 0, NULL, 350, 2);
    json_decref(res);
    res = run(f, "{\"filters\":{\"chains\":[\"nowhere\"]},\"aggregations\":["
                 "{\"field\":\"tvl\",\"operation\":\"sum\"},"
                 "{\"field\":\"tvl\",\"operation\":\"avg\"},"
                 "{\"field\":\"tvl\",\"operation\":\"sum\",\"group_by\":\"chain\"}]}");
    expect_group(res, 0, 0, NULL, 0, 0);
    expect_group(res, 1, 0, NULL, NAN, 0);
    assert_int_equal(ngroups(res, 2), 0);
    json_decref(res);
}

/* A long-lived context gives the same answers as a fresh one, and follows state updates. */
static void test_ctx_follows_updates(void **state)
{
    fx *f = *state;
    rta_query_ctx *ctx = rta_query_ctx_new();
    static const char *const qs[] = {
        "{\"sort\":{\"field\":\"change_24h\"},\"aggregations\":[{\"field\":\"tvl\","
        "\"operation\":\"sum\",\"group_by\":\"category\"}]}",
        "{\"filters\":{\"categories\":[\"Yield\",\"Lending\"]},\"sort\":{\"field\":"
        "\"category\",\"order\":\"desc\"}}",
        "{\"sort\":{\"field\":\"chain\"},\"limit\":3,\"offset\":1}",
    };
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < RTA_ARRAY_LEN(qs); i++) {
            rta_query *q = parse_ok(qs[i]);
            json_t *a = rta_query_exec_ctx(q, f->st, ctx, f->now_ms);
            json_t *b = rta_query_exec(q, f->st, f->now_ms);
            if (!json_equal(a, b))
                fail_msg("round %d query %s: ctx and fresh results differ", round, qs[i]);
            json_decref(a);
            json_decref(b);
            rta_query_free(q);
        }
        /* Update: gamma grows past everything, beta changes category, a new pair appears. */
        rta_tvl_update u = {
            .protocol = "gamma", .chain = "bsc", .tvl = 9000, .ts_ms = f->now_ms + 1};
        rta_state_restore_tvl(f->st, &u);
        rta_tvl_update u2 = {.protocol = "beta",
                             .chain = "ethereum",
                             .tvl = 5000,
                             .ts_ms = f->now_ms + 1,
                             .category = "Yield"};
        rta_state_restore_tvl(f->st, &u2);
        rta_tvl_update u3 = {.protocol = "zeta",
                             .chain = "base",
                             .tvl = 1,
                             .ts_ms = f->now_ms + 1,
                             .category = "New"};
        rta_state_restore_tvl(f->st, &u3);
    }
    rta_query *q = parse_ok("{\"limit\":1,\"aggregations\":[{\"operation\":\"count\","
                            "\"group_by\":\"category\"}]}");
    json_t *res = rta_query_exec_ctx(q, f->st, ctx, f->now_ms);
    char got[256];
    rows_str(res, got, sizeof got);
    assert_string_equal(got, "gamma/bsc");
    assert_int_equal(meta(res, "total"), NFIX + 1);
    expect_group(res, 0, 0, "Yield", 4, 4);
    json_decref(res);
    rta_query_free(q);
    rta_query_ctx_free(ctx);
}

/* ---------------------------------------------------------------- cache */

static void test_cache(void **state)
{
    (void)state;
    rta_query_cache *c = rta_query_cache_new(3, 1 << 20);
    size_t len = 0;
    assert_null(rta_query_cache_get(c, "q1", 1, &len));
    rta_query_cache_put(c, "q1", 1, "body-1", 6);
    const char *b = rta_query_cache_get(c, "q1", 1, &len);
    assert_non_null(b);
    assert_int_equal(len, 6);
    assert_memory_equal(b, "body-1", 6);
    /* another version is a miss; putting it replaces the entry */
    assert_null(rta_query_cache_get(c, "q1", 2, &len));
    rta_query_cache_put(c, "q1", 2, "body-1b", 7);
    assert_int_equal(rta_query_cache_count(c), 1);
    assert_null(rta_query_cache_get(c, "q1", 1, &len));
    assert_string_equal(rta_query_cache_get(c, "q1", 2, &len), "body-1b");

    /* LRU by entries: q2 is the least recently used when q4 arrives */
    rta_query_cache_put(c, "q2", 2, "b2", 2);
    rta_query_cache_put(c, "q3", 2, "b3", 2);
    assert_non_null(rta_query_cache_get(c, "q1", 2, &len));
    rta_query_cache_put(c, "q4", 2, "b4", 2);
    assert_int_equal(rta_query_cache_count(c), 3);
    assert_null(rta_query_cache_get(c, "q2", 2, &len));
    assert_non_null(rta_query_cache_get(c, "q1", 2, &len));
    assert_non_null(rta_query_cache_get(c, "q3", 2, &len));
    assert_non_null(rta_query_cache_get(c, "q4", 2, &len));
    rta_query_cache_free(c);

    /* LRU by bytes: each entry ~1 KiB against a 2.5 KiB bound */
    c = rta_query_cache_new(100, 2560);
    char big[1024];
    memset(big, 'x', sizeof big);
    rta_query_cache_put(c, "a", 1, big, 1000);
    rta_query_cache_put(c, "b", 1, big, 1000);
    assert_int_equal(rta_query_cache_count(c), 2);
    rta_query_cache_put(c, "c", 1, big, 1000);
    assert_int_equal(rta_query_cache_count(c), 2);
    assert_null(rta_query_cache_get(c, "a", 1, &len));
    assert_non_null(rta_query_cache_get(c, "c", 1, &len));
    /* larger than the whole cache: not stored, nothing else evicted */
    char *huge = calloc(1, 4096);
    rta_query_cache_put(c, "d", 1, huge, 4096);
    free(huge);
    assert_null(rta_query_cache_get(c, "d", 1, &len));
    assert_int_equal(rta_query_cache_count(c), 2);
    rta_query_cache_free(c);
}

/* Exec result through the cache, keyed by canonical text and state version. */
static void test_cache_with_queries(void **state)
{
    fx *f = *state;
    rta_query_cache *c = rta_query_cache_new(16, 1 << 20);
    rta_query *q1 = parse_ok("{\"filters\":{\"chains\":[\"bsc\",\"ethereum\"]}}");
    rta_query *q2 = parse_ok("{\"filters\":{\"chains\":[\"ethereum\",\"bsc\",\"bsc\"]}}");
    size_t len;
    assert_null(rta_query_cache_get(c, rta_query_canonical(q1), f->st->version, &len));
    json_t *res = rta_query_exec(q1, f->st, f->now_ms);
    char *text = json_dumps(res, JSON_COMPACT);
    rta_query_cache_put(c, rta_query_canonical(q1), f->st->version, text, strlen(text));
    const char *hit = rta_query_cache_get(c, rta_query_canonical(q2), f->st->version, &len);
    assert_non_null(hit);
    assert_string_equal(hit, text);
    assert_null(rta_query_cache_get(c, rta_query_canonical(q2), f->st->version + 1, &len));
    free(text);
    json_decref(res);
    rta_query_free(q1);
    rta_query_free(q2);
    rta_query_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_table),
        cmocka_unit_test(test_validation_reports_all_and_limits_lists),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test_setup_teardown(test_default_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sort_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
        cmocka_unit_test(test_topk_matches_full_sort),
        cmocka_unit_test_setup_teardown(test_aggregations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_follows_updates, setup, teardown),
        cmocka_unit_test(test_cache),
        cmocka_unit_test_setup_teardown(test_cache_with_queries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
