/* Unit tests for the alert storage of src/store (SQLite backend on a real file in a temp dir):
 * migrations 2 and 3 (fresh and on an existing version-1 file), rules and their state, the
 * trigger history, the delivery outbox (claim, leases, attempts, listing, requeue) and user
 * notification preferences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rta/store.h"
#include "rta/util.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    rta_store *s;
    const rta_store_ops *ops;
    void *db;
} fixture;

static int open_store(fixture *f)
{
    char *err = NULL;
    f->s = rta_store_open("sqlite", f->path, &err);
    if (f->s == NULL) {
        fprintf(stderr, "open: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
    f->ops = f->s->ops;
    f->db = f->s->db;
    return 0;
}

static int setup(void **state)
{
    fixture *f = rta_xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rta_store_alerts_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/rta.db", f->dir);
    if (open_store(f) != 0)
        return -1;
    *state = f;
    return 0;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->s != NULL)
        rta_store_close(f->s);
    remove_dir(f->dir);
    free(f);
    return 0;
}

/* Runs one SQL text on the file with a separate connection; returns sqlite's code. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static int count_rows(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int table_exists(const char *path, const char *name)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
    return count_rows(path, sql);
}

/* ---- migrations -------------------------------------------------------------------------- */

static const char *const alert_tables[] = {"alert_rules", "alert_rule_state",  "alert_triggers",
                                           "deliveries",  "delivery_attempts", "user_prefs"};

static void test_migrations_fresh(void **state)
{
    fixture *f = *state;
    rta_store_close(f->s);
    f->s = NULL;
    assert_int_equal(count_rows(f->path, "SELECT max(version) FROM schema_version"), 4);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM schema_version"), 4);
    for (size_t i = 0; i < RTA_ARRAY_LEN(alert_tables); i++)
        assert_int_equal(table_exists(f->path, alert_tables[i]), 1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM sqlite_master WHERE type = "
                                         "'index' AND name LIKE 'deliveries_%'"),
                     6);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM sqlite_master WHERE type = "
                                         "'index' AND name = 'alert_triggers_at'"),
                     1);
}

/* An existing version-1 file (as shipped before alerts) gets versions 2 and 3 on open, and
 * keeps its data. The v1 file is made by removing what 2 and 3 created. */
static void test_migrations_from_v1(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->kv_set(f->db, "marker", "v1 data"), 0);
    assert_int_equal(f->ops->user_ensure(f->db, "u1", 1000), 0);
    rta_store_close(f->s);
    f->s = NULL;
    assert_int_equal(raw_exec(f->path, "DROP TABLE alert_rules; DROP TABLE alert_rule_state;"
                                       "DROP TABLE alert_triggers; DROP TABLE deliveries;"
                                       "DROP TABLE delivery_attempts; DROP TABLE user_prefs;"
                                       "DELETE FROM schema_version WHERE version > 1;"),
                     SQLITE_OK);
    assert_int_equal(count_rows(f->path, "SELECT max(version) FROM schema_version"), 1);
    assert_int_equal(table_exists(f->path, "deliveries"), 0);

    assert_int_equal(open_store(f), 0);
    char *v = NULL;
    assert_int_equal(f->ops->kv_get(f->db, "marker", &v), 0);
    assert_string_equal(v, "v1 data");
    free(v);
    assert_int_equal(f->ops->rule_upsert(f->db, "r1", "u1", "{}", 1, 1, 1), 0);
    assert_int_equal(f->ops->prefs_put(f->db, "u1", "{}"), 0);
    char *err = NULL;
    assert_int_equal(f->ops->migrate(f->db, &err), 0); /* again: no-op */
    assert_null(err);
    rta_store_close(f->s);
    f->s = NULL;
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM schema_version"), 4);
    for (size_t i = 0; i < RTA_ARRAY_LEN(alert_tables); i++)
        assert_int_equal(table_exists(f->path, alert_tables[i]), 1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM alert_rules"), 1);
}

/* ---- rules and state --------------------------------------------------------------------- */

typedef struct rules_seen {
    char rows[8][128];
    size_t n;
    size_t stop_after;
} rules_seen;

static int collect_rule(void *ud, const char *rule_id, const char *user_id, const char *body)
{
    rules_seen *s = ud;
    if (s->n >= 8)
        return 1;
    snprintf(s->rows[s->n++], 128, "%s|%s|%s", rule_id, user_id, body);
    return s->stop_after != 0 && s->n >= s->stop_after;
}

static int collect_state(void *ud, const char *rule_id, const char *series, int firing,
                         int64_t last_notified_ms)
{
    rules_seen *s = ud;
    if (s->n >= 8)
        return 1;
    snprintf(s->rows[s->n++], 128, "%s|%s|%d|%lld", rule_id, series, firing,
             (long long)last_notified_ms);
    return 0;
}

static void test_rules(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    assert_int_equal(ops->rule_upsert(db, "r2", "u1", "{\"name\":\"b\"}", 1, 2000, 2000), 0);
    assert_int_equal(ops->rule_upsert(db, "r1", "u1", "{\"name\":\"a\"}", 1, 1000, 1000), 0);
    assert_int_equal(ops->rule_upsert(db, "r3", "u2", "{\"name\":\"c\"}", 0, 3000, 3000), 0);
    /* Update: body and activity change; owner and creation time do not. */
    assert_int_equal(ops->rule_upsert(db, "r1", "u9", "{\"name\":\"a2\"}", 0, 9999, 5000), 0);

    rules_seen seen = {0};
    assert_int_equal(ops->rules_load(db, collect_rule, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.rows[0], "r1|u1|{\"name\":\"a2\"}"); /* created_ms order */
    assert_string_equal(seen.rows[1], "r2|u1|{\"name\":\"b\"}");
    assert_string_equal(seen.rows[2], "r3|u2|{\"name\":\"c\"}");
    assert_int_equal(count_rows(f->path, "SELECT is_active * 10000 + updated_ms FROM alert_rules "
                                         "WHERE rule_id = 'r1'"),
                     5000);
    assert_int_equal(count_rows(f->path, "SELECT created_ms FROM alert_rules "
                                         "WHERE rule_id = 'r1'"),
                     1000);

    memset(&seen, 0, sizeof seen);
    seen.stop_after = 1;
    assert_int_equal(ops->rules_load(db, collect_rule, &seen), 0);
    assert_int_equal(seen.n, 1); /* the callback stopped the scan */

    /* State: upsert per (rule, series), loaded in key order. */
    assert_int_equal(ops->rule_state_put(db, "r1", "tvl:aave:ethereum", 1, 100), 0);
    assert_int_equal(ops->rule_state_put(db, "r1", "price:coingecko:bitcoin", 0, 0), 0);
    assert_int_equal(ops->rule_state_put(db, "r2", "tvl:aave:ethereum", 1, 200), 0);
    assert_int_equal(ops->rule_state_put(db, "r1", "tvl:aave:ethereum", 0, 300), 0);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(ops->rule_states_load(db, collect_state, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.rows[0], "r1|price:coingecko:bitcoin|0|0");
    assert_string_equal(seen.rows[1], "r1|tvl:aave:ethereum|0|300");
    assert_string_equal(seen.rows[2], "r2|tvl:aave:ethereum|1|200");

    /* Delete removes the rule and its state, and keeps other rules' state. */
    rta_trigger_record t = {.id = "t1",
                            .rule_id = "r1",
                            .user_id = "u1",
                            .series = "s",
                            .state = "firing",
                            .value = 1,
                            .at_ms = 10};
    assert_int_equal(ops->trigger_insert(db, &t), 0);
    assert_int_equal(ops->rule_delete(db, "r1"), 0);
    assert_int_equal(ops->rule_delete(db, "r1"), 1);
    assert_int_equal(ops->rule_delete(db, "nope"), 1);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(ops->rules_load(db, collect_rule, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.rows[0], "r2|u1|{\"name\":\"b\"}");
    memset(&seen, 0, sizeof seen);
    assert_int_equal(ops->rule_states_load(db, collect_state, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.rows[0], "r2|tvl:aave:ethereum|1|200");
    /* History stays. */
    rta_trigger_record *tr = NULL;
    size_t n = 0;
    assert_int_equal(ops->triggers_query(db, "r1", 0, 10, &tr, &n), 0);
    assert_int_equal(n, 1);
    rta_trigger_record_free_fields(&tr[0]);
    free(tr);
}

/* ---- triggers ---------------------------------------------------------------------------- */

static void free_triggers(rta_trigger_record *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rta_trigger_record_free_fields(&t[i]);
    free(t);
}

static void test_triggers(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    assert_int_equal(ops->begin(db), 0);
    for (int i = 1; i <= 7; i++) {
        char id[16], ev[16];
        snprintf(id, sizeof id, "t%02d", i);
        snprintf(ev, sizeof ev, "ev%d", i);
        rta_trigger_record t = {
            .id = id,
            .rule_id = "r1",
            .user_id = "u1",
            .series = "tvl:uniswap-v3:ethereum",
            .state = i % 2 ? "firing" : "resolved",
            .value = i * 1.5,
            .event_id = ev,
            .event_offset = 100 + i,
            .at_ms = i * 1000,
            .payload = "{\"x\":1}",
        };
        assert_int_equal(ops->trigger_insert(db, &t), 0);
    }
    rta_trigger_record other = {.id = "o1",
                                .rule_id = "r2",
                                .user_id = "u1",
                                .series = "s",
                                .state = "firing",
                                .at_ms = 4500};
    assert_int_equal(ops->trigger_insert(db, &other), 0);
    assert_int_equal(ops->commit(db), 0);
    assert_int_equal(ops->trigger_insert(db, &other), -1); /* duplicate id */

    rta_trigger_record *t = NULL;
    size_t n = 0;
    assert_int_equal(ops->triggers_query(db, "r1", 0, 3, &t, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(t[0].id, "t07"); /* newest first */
    assert_string_equal(t[0].state, "firing");
    assert_string_equal(t[0].event_id, "ev7");
    assert_int_equal(t[0].event_offset, 107);
    assert_int_equal(t[0].at_ms, 7000);
    assert_true(t[0].value == 10.5);
    assert_string_equal(t[0].payload, "{\"x\":1}");
    assert_string_equal(t[1].id, "t06");
    assert_string_equal(t[1].state, "resolved");
    assert_string_equal(t[2].id, "t05");
    int64_t cursor = t[2].at_ms;
    free_triggers(t, n);

    /* Page by page with the last at_ms as the cursor: every trigger once. */
    const char *expect[] = {"t04", "t03", "t02", "t01"};
    size_t seen = 0;
    while (seen < 4) {
        assert_int_equal(ops->triggers_query(db, "r1", cursor, 3, &t, &n), 0);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(t[i].id, expect[seen + i]);
        seen += n;
        cursor = t[n - 1].at_ms;
        free_triggers(t, n);
    }
    assert_int_equal(seen, 4);
    assert_int_equal(ops->triggers_query(db, "r1", cursor, 3, &t, &n), 0);
    assert_int_equal(n, 0);
    free_triggers(t, n);

    assert_int_equal(ops->triggers_query(db, "r2", 0, 0, &t, &n), 0); /* 0 = default limit */
    assert_int_equal(n, 1);
    assert_null(t[0].event_id);
    assert_null(t[0].payload);
    free_triggers(t, n);
    assert_int_equal(ops->triggers_query(db, "none", 0, 10, &t, &n), 0);
    assert_int_equal(n, 0);
    free_triggers(t, n);
}

/* ---- deliveries -------------------------------------------------------------------------- */

static void free_deliveries(rta_delivery_record *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rta_delivery_record_free_fields(&d[i]);
    free(d);
}

static rta_delivery_record make_delivery(const char *id, const char *user, const char *rule,
                                         const char *channel, int64_t created, int64_t due)
{
    rta_delivery_record d = {0};
    d.id = (char *)id;
    d.trigger_id = "t1";
    d.rule_id = (char *)rule;
    d.user_id = (char *)user;
    d.channel = (char *)channel;
    d.target = "https://example.test/hook";
    d.status = "pending";
    d.next_attempt_ms = due;
    d.created_ms = created;
    d.updated_ms = created;
    d.payload = "{\"subject\":\"s\"}";
    return d;
}

static void test_delivery_insert_get(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    rta_delivery_record d = make_delivery("d1", "u1", "r1", "webhook", 1000, 1000);
    d.note = "quiet hours";
    d.status = "suppressed";
    assert_int_equal(ops->delivery_insert(db, &d), 0);
    assert_int_equal(ops->delivery_insert(db, &d), -1); /* duplicate id */

    rta_delivery_record g;
    assert_int_equal(ops->delivery_get(db, "d1", &g), 0);
    assert_string_equal(g.id, "d1");
    assert_string_equal(g.trigger_id, "t1");
    assert_string_equal(g.rule_id, "r1");
    assert_string_equal(g.user_id, "u1");
    assert_string_equal(g.channel, "webhook");
    assert_string_equal(g.target, "https://example.test/hook");
    assert_string_equal(g.status, "suppressed");
    assert_string_equal(g.note, "quiet hours");
    assert_string_equal(g.payload, "{\"subject\":\"s\"}");
    assert_null(g.last_error);
    assert_int_equal(g.attempts, 0);
    assert_int_equal(g.created_ms, 1000);
    assert_int_equal(g.delivered_ms, 0);
    assert_int_equal(g.lease_until_ms, 0);
    rta_delivery_record_free_fields(&g);
    assert_int_equal(ops->delivery_get(db, "absent", &g), 1);
    assert_null(g.id);
}

/* Ids of a claim result, joined with ',' for one comparison. */
static void ids_of(const rta_delivery_record *d, size_t n, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? "," : "", d[i].id);
}

static void test_delivery_claim(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    /* due order: d3 (500), d1 (1000), d2 (1000, id after d1), d4 (5000, not due at 2000) */
    rta_delivery_record ds[] = {
        make_delivery("d1", "u1", "r1", "webhook", 100, 1000),
        make_delivery("d2", "u1", "r1", "email", 100, 1000),
        make_delivery("d3", "u1", "r1", "email", 100, 500),
        make_delivery("d4", "u1", "r1", "email", 100, 5000),
        make_delivery("d5", "u1", "r1", "email", 100, 100), /* delivered: never claimed */
        make_delivery("d6", "u1", "r1", "email", 100, 100), /* leased by another worker */
    };
    ds[4].status = "delivered";
    ds[5].lease_until_ms = 2500;
    assert_int_equal(ops->begin(db), 0);
    for (size_t i = 0; i < RTA_ARRAY_LEN(ds); i++)
        assert_int_equal(ops->delivery_insert(db, &ds[i]), 0);
    assert_int_equal(ops->commit(db), 0);

    rta_delivery_record *c = NULL;
    size_t n = 0;
    char ids[64];
    assert_int_equal(ops->deliveries_claim(db, 2000, 32000, 0, &c, &n), 0); /* max 0 */
    assert_int_equal(n, 0);
    assert_int_equal(ops->deliveries_claim(db, 2000, 32000, 2, &c, &n), 0); /* max */
    ids_of(c, n, ids, sizeof ids);
    assert_string_equal(ids, "d3,d1");
    assert_int_equal(c[0].lease_until_ms, 32000);
    assert_string_equal(c[0].status, "pending");
    free_deliveries(c, n);

    assert_int_equal(ops->deliveries_claim(db, 2000, 32000, 10, &c, &n), 0);
    ids_of(c, n, ids, sizeof ids);
    assert_string_equal(ids, "d2"); /* d1, d3 leased now; d4 not due; d6 leased */
    free_deliveries(c, n);
    assert_int_equal(ops->deliveries_claim(db, 2000, 32000, 10, &c, &n), 0);
    assert_int_equal(n, 0);
    free_deliveries(c, n);

    /* At 3000 the lease of d6 (2500) has expired: a dead worker's row comes back. */
    assert_int_equal(ops->deliveries_claim(db, 3000, 33000, 10, &c, &n), 0);
    ids_of(c, n, ids, sizeof ids);
    assert_string_equal(ids, "d6");
    free_deliveries(c, n);

    /* At 32000 exactly the leases taken at 2000 are not yet expired (lease_until < now). */
    assert_int_equal(ops->deliveries_claim(db, 32000, 62000, 10, &c, &n), 0);
    ids_of(c, n, ids, sizeof ids);
    assert_string_equal(ids, "d4"); /* due since 5000, never leased */
    free_deliveries(c, n);
    assert_int_equal(ops->deliveries_claim(db, 32001, 62001, 10, &c, &n), 0);
    ids_of(c, n, ids, sizeof ids);
    assert_string_equal(ids, "d3,d1,d2");
    free_deliveries(c, n);

    rta_delivery_record g;
    assert_int_equal(ops->delivery_get(db, "d5", &g), 0);
    assert_int_equal(g.lease_until_ms, 0);
    rta_delivery_record_free_fields(&g);
}

/* Two connections (as two workers or two processes would have) claim from the same file at
 * the same time: every due delivery is claimed exactly once. */
#define RACE_ROWS 60

typedef struct claimer {
    const char *path;
    int got[RACE_ROWS];
    int failed;
} claimer;

static void *claim_loop(void *arg)
{
    claimer *cl = arg;
    char *err = NULL;
    rta_store *s = rta_store_open("sqlite", cl->path, &err);
    if (s == NULL) {
        free(err);
        cl->failed = 1;
        return NULL;
    }
    for (;;) {
        rta_delivery_record *d = NULL;
        size_t n = 0;
        if (s->ops->deliveries_claim(s->db, 1000, 61000, 3, &d, &n) != 0) {
            cl->failed = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            int k = atoi(d[i].id + 1);
            if (k >= 0 && k < RACE_ROWS)
                cl->got[k]++;
        }
        free_deliveries(d, n);
        if (n == 0)
            break;
    }
    rta_store_close(s);
    return NULL;
}

static void test_delivery_claim_concurrent(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->begin(f->db), 0);
    for (int i = 0; i < RACE_ROWS; i++) {
        char id[8];
        snprintf(id, sizeof id, "c%d", i);
        rta_delivery_record d = make_delivery(id, "u1", "r1", "email", 100, 100 + i);
        assert_int_equal(f->ops->delivery_insert(f->db, &d), 0);
    }
    assert_int_equal(f->ops->commit(f->db), 0);
    claimer a = {.path = f->path}, b = {.path = f->path};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, claim_loop, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, claim_loop, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.failed, 0);
    assert_int_equal(b.failed, 0);
    for (int i = 0; i < RACE_ROWS; i++)
        assert_int_equal(a.got[i] + b.got[i], 1);
}

static void free_attempts(rta_attempt_record *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rta_attempt_record_free_fields(&a[i]);
    free(a);
}

static void test_delivery_attempts(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    const char *ids[] = {"dr", "dd", "dx", "dz"};
    for (size_t i = 0; i < 4; i++) {
        rta_delivery_record d = make_delivery(ids[i], "u1", "r1", "webhook", 100, 100);
        assert_int_equal(ops->delivery_insert(db, &d), 0);
    }
    rta_delivery_record *c = NULL;
    size_t n = 0;
    assert_int_equal(ops->deliveries_claim(db, 1000, 31000, 10, &c, &n), 0);
    assert_int_equal(n, 4);
    free_deliveries(c, n);

    /* retry: stays pending, next attempt later, lease released, error kept */
    rta_attempt_record a = {.delivery_id = "dr",
                            .attempt = 1,
                            .at_ms = 1100,
                            .latency_ms = 40,
                            .status_code = 503,
                            .outcome = "retry",
                            .error = "HTTP 503"};
    assert_int_equal(ops->delivery_record_attempt(db, &a, "pending", 61100), 0);
    assert_int_equal(ops->delivery_record_attempt(db, &a, "pending", 61100), -1); /* same no. */
    rta_delivery_record g;
    assert_int_equal(ops->delivery_get(db, "dr", &g), 0);
    assert_string_equal(g.status, "pending");
    assert_int_equal(g.attempts, 1);
    assert_int_equal(g.next_attempt_ms, 61100);
    assert_int_equal(g.lease_until_ms, 0);
    assert_int_equal(g.updated_ms, 1100);
    assert_int_equal(g.delivered_ms, 0);
    assert_int_equal(g.last_status_code, 503);
    assert_string_equal(g.last_error, "HTTP 503");
    rta_delivery_record_free_fields(&g);
    /* delivered, dead, disabled in one go */
    rta_attempt_record ok = {
        .delivery_id = "dd", .attempt = 1, .at_ms = 1200, .status_code = 250, .outcome = "success"};
    assert_int_equal(ops->delivery_record_attempt(db, &ok, "delivered", 0), 0);
    rta_attempt_record dead = {.delivery_id = "dx",
                               .attempt = 1,
                               .at_ms = 1300,
                               .status_code = 0,
                               .outcome = "dead",
                               .error = "timeout"};
    assert_int_equal(ops->delivery_record_attempt(db, &dead, "dead", 0), 0);
    rta_attempt_record off = {.delivery_id = "dz",
                              .attempt = 1,
                              .at_ms = 1400,
                              .status_code = 410,
                              .outcome = "disabled",
                              .error = "gone"};
    assert_int_equal(ops->delivery_record_attempt(db, &off, "disabled", 0), 0);
    const struct {
        const char *id, *status;
        int64_t delivered;
        int code;
    } expect[] = {{"dd", "delivered", 1200, 250}, {"dx", "dead", 0, 0}, {"dz", "disabled", 0, 410}};
    for (size_t i = 0; i < RTA_ARRAY_LEN(expect); i++) {
        assert_int_equal(ops->delivery_get(db, expect[i].id, &g), 0);
        assert_string_equal(g.status, expect[i].status);
        assert_int_equal(g.delivered_ms, expect[i].delivered);
        assert_int_equal(g.last_status_code, expect[i].code);
        assert_int_equal(g.lease_until_ms, 0);
        assert_int_equal(g.attempts, 1);
        rta_delivery_record_free_fields(&g);
    }
    /* not claimable before its next attempt time, claimable at it */
    assert_int_equal(ops->deliveries_claim(db, 61099, 91099, 10, &c, &n), 0);
    assert_int_equal(n, 0);
    free_deliveries(c, n);
    assert_int_equal(ops->deliveries_claim(db, 61100, 91100, 10, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].id, "dr");
    assert_int_equal(c[0].attempts, 1);
    free_deliveries(c, n);
    rta_attempt_record a2 = {.delivery_id = "dr",
                             .attempt = 2,
                             .at_ms = 61200,
                             .latency_ms = 12,
                             .status_code = 200,
                             .outcome = "success"};
    assert_int_equal(ops->delivery_record_attempt(db, &a2, "delivered", 0), 0);
    assert_int_equal(ops->delivery_get(db, "dr", &g), 0);
    assert_string_equal(g.status, "delivered");
    assert_int_equal(g.attempts, 2);
    assert_int_equal(g.delivered_ms, 61200);
    assert_int_equal(g.last_status_code, 200);
    assert_null(g.last_error);
    rta_delivery_record_free_fields(&g);

    /* None of them is claimable any more (dr delivered, the others final). */
    assert_int_equal(ops->deliveries_claim(db, 999999, 1999999, 10, &c, &n), 0);
    assert_int_equal(n, 0);
    free_deliveries(c, n);

    /* Unknown delivery: nothing recorded. */
    rta_attempt_record ghost = {
        .delivery_id = "ghost", .attempt = 1, .at_ms = 1, .outcome = "success"};
    assert_int_equal(ops->delivery_record_attempt(db, &ghost, "delivered", 0), 1);

    rta_attempt_record *at = NULL;
    assert_int_equal(ops->attempts_query(db, "dr", &at, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(at[0].delivery_id, "dr");
    assert_int_equal(at[0].attempt, 1);
    assert_int_equal(at[0].at_ms, 1100);
    assert_int_equal(at[0].latency_ms, 40);
    assert_int_equal(at[0].status_code, 503);
    assert_string_equal(at[0].outcome, "retry");
    assert_string_equal(at[0].error, "HTTP 503");
    assert_int_equal(at[1].attempt, 2);
    assert_string_equal(at[1].outcome, "success");
    assert_null(at[1].error);
    free_attempts(at, n);
    assert_int_equal(ops->attempts_query(db, "ghost", &at, &n), 0);
    assert_int_equal(n, 0);
    free_attempts(at, n);

    /* Requeue: dead -> pending now, attempts kept; others refused. */
    assert_int_equal(ops->delivery_requeue(db, "dx", 5000), 0);
    assert_int_equal(ops->delivery_get(db, "dx", &g), 0);
    assert_string_equal(g.status, "pending");
    assert_int_equal(g.next_attempt_ms, 5000);
    assert_int_equal(g.updated_ms, 5000);
    assert_int_equal(g.attempts, 1);
    rta_delivery_record_free_fields(&g);
    assert_int_equal(ops->delivery_requeue(db, "dx", 5000), 2); /* pending now */
    assert_int_equal(ops->delivery_requeue(db, "dd", 5000), 2); /* delivered */
    assert_int_equal(ops->delivery_requeue(db, "ghost", 5000), 1);
    assert_int_equal(ops->deliveries_claim(db, 5000, 35000, 10, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].id, "dx");
    free_deliveries(c, n);
}

static size_t query(fixture *f, const rta_delivery_filter *flt, char *ids, size_t idlen)
{
    rta_delivery_record *d = NULL;
    size_t n = 0;
    assert_int_equal(f->ops->deliveries_query(f->db, flt, &d, &n), 0);
    ids_of(d, n, ids, idlen);
    free_deliveries(d, n);
    return n;
}

static void test_delivery_query(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    /* q1..q8; q4 and q5 share created_ms (tie broken by id). */
    rta_delivery_record ds[] = {
        make_delivery("q1", "u1", "r1", "email", 1000, 0),
        make_delivery("q2", "u2", "r2", "webhook", 2000, 0),
        make_delivery("q3", "u1", "r2", "webhook", 3000, 0),
        make_delivery("q4", "u1", "r1", "email", 4000, 0),
        make_delivery("q5", "u1", "r1", "push", 4000, 0),
        make_delivery("q6", "u2", "r2", "email", 6000, 0),
        make_delivery("q7", "u1", "r1", "email", 7000, 0),
        make_delivery("q8", "u1", "r3", "webhook", 8000, 0),
    };
    ds[2].status = "dead";
    ds[3].status = "delivered";
    ds[6].status = "dead";
    ds[7].trigger_id = "t2";
    assert_int_equal(ops->begin(db), 0);
    for (size_t i = 0; i < RTA_ARRAY_LEN(ds); i++)
        assert_int_equal(ops->delivery_insert(db, &ds[i]), 0);
    assert_int_equal(ops->commit(db), 0);

    char ids[128];
    rta_delivery_filter all = {.limit = 100};
    assert_int_equal(query(f, &all, ids, sizeof ids), 8);
    assert_string_equal(ids, "q8,q7,q6,q5,q4,q3,q2,q1");

    rta_delivery_filter by_user = {.user_id = "u2", .limit = 100};
    query(f, &by_user, ids, sizeof ids);
    assert_string_equal(ids, "q6,q2");
    rta_delivery_filter by_rule = {.rule_id = "r2", .limit = 100};
    query(f, &by_rule, ids, sizeof ids);
    assert_string_equal(ids, "q6,q3,q2");
    rta_delivery_filter by_channel = {.channel = "webhook", .limit = 100};
    query(f, &by_channel, ids, sizeof ids);
    assert_string_equal(ids, "q8,q3,q2");
    rta_delivery_filter by_status = {.status = "dead", .limit = 100};
    query(f, &by_status, ids, sizeof ids);
    assert_string_equal(ids, "q7,q3");
    rta_delivery_filter window = {.since_ms = 3000, .until_ms = 7000, .limit = 100};
    query(f, &window, ids, sizeof ids); /* since inclusive, until exclusive */
    assert_string_equal(ids, "q6,q5,q4,q3");
    rta_delivery_filter combined = {
        .user_id = "u1", .rule_id = "r1", .channel = "email", .since_ms = 2000, .limit = 100};
    query(f, &combined, ids, sizeof ids);
    assert_string_equal(ids, "q7,q4");

    /* Cursor pages of 2 walk everything once, including the created_ms tie q5/q4. */
    rta_delivery_filter page = {.limit = 2};
    const char *pages[] = {"q8,q7", "q6,q5", "q4,q3", "q2,q1"};
    char cursor[8];
    for (size_t p = 0; p < 4; p++) {
        assert_int_equal(query(f, &page, ids, sizeof ids), 2);
        assert_string_equal(ids, pages[p]);
        snprintf(cursor, sizeof cursor, "%s", ids + 3);
        page.before_id = cursor;
    }
    assert_int_equal(query(f, &page, ids, sizeof ids), 0);

    rta_delivery_filter cursor_user = {.user_id = "u1", .before_id = "q5", .limit = 100};
    query(f, &cursor_user, ids, sizeof ids);
    assert_string_equal(ids, "q4,q3,q1");
    rta_delivery_filter unknown_cursor = {.before_id = "zz", .limit = 100};
    assert_int_equal(query(f, &unknown_cursor, ids, sizeof ids), 0);
    rta_delivery_filter nobody = {.user_id = "u9", .limit = 100};
    assert_int_equal(query(f, &nobody, ids, sizeof ids), 0);

    /* deliveries_for_trigger: oldest first, full records. */
    rta_delivery_record *d = NULL;
    size_t n = 0;
    assert_int_equal(ops->deliveries_for_trigger(db, "t2", &d, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].id, "q8");
    assert_string_equal(d[0].channel, "webhook");
    free_deliveries(d, n);
    assert_int_equal(ops->deliveries_for_trigger(db, "t1", &d, &n), 0);
    ids_of(d, n, ids, sizeof ids);
    assert_string_equal(ids, "q1,q2,q3,q4,q5,q6,q7");
    free_deliveries(d, n);
    assert_int_equal(ops->deliveries_for_trigger(db, "none", &d, &n), 0);
    assert_int_equal(n, 0);
    free_deliveries(d, n);
}

/* One trigger's writes as the alert path does them: trigger, deliveries, state, one commit;
 * a rollback leaves none of them. */
static void test_trigger_transaction(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    rta_trigger_record t = {.id = "tx",
                            .rule_id = "r1",
                            .user_id = "u1",
                            .series = "s",
                            .state = "firing",
                            .value = 2,
                            .at_ms = 50};
    rta_delivery_record d1 = make_delivery("x1", "u1", "r1", "email", 50, 50);
    rta_delivery_record d2 = make_delivery("x2", "u1", "r1", "webhook", 50, 50);
    d1.trigger_id = d2.trigger_id = "tx";
    assert_int_equal(ops->begin(db), 0);
    assert_int_equal(ops->trigger_insert(db, &t), 0);
    assert_int_equal(ops->delivery_insert(db, &d1), 0);
    assert_int_equal(ops->delivery_insert(db, &d2), 0);
    assert_int_equal(ops->rule_state_put(db, "r1", "s", 1, 50), 0);
    assert_int_equal(ops->rollback(db), 0);
    rta_delivery_record *d = NULL;
    size_t n = 0;
    assert_int_equal(ops->deliveries_for_trigger(db, "tx", &d, &n), 0);
    assert_int_equal(n, 0);
    free_deliveries(d, n);

    assert_int_equal(ops->begin(db), 0);
    assert_int_equal(ops->trigger_insert(db, &t), 0);
    assert_int_equal(ops->delivery_insert(db, &d1), 0);
    assert_int_equal(ops->delivery_insert(db, &d2), 0);
    assert_int_equal(ops->rule_state_put(db, "r1", "s", 1, 50), 0);
    assert_int_equal(ops->commit(db), 0);
    assert_int_equal(ops->deliveries_for_trigger(db, "tx", &d, &n), 0);
    assert_int_equal(n, 2);
    free_deliveries(d, n);
}

/* ---- retention --------------------------------------------------------------------------- */

/* One text value (e.g. a group_concat) read with a separate connection, into out. */
static void query_text(const char *path, const char *sql, char *out, size_t outlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(out, outlen, "<error>");
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, outlen, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void insert_trigger(fixture *f, const char *id, const char *rule, int64_t at_ms)
{
    rta_trigger_record t = {.id = (char *)id,
                            .rule_id = (char *)rule,
                            .user_id = "u1",
                            .series = "tvl:uniswap-v3:ethereum",
                            .state = "firing",
                            .value = 1,
                            .at_ms = at_ms};
    assert_int_equal(f->ops->trigger_insert(f->db, &t), 0);
}

/* A delivery of trigger created at created_ms in status; attempts are recorded through the
 * store (which sets updated_ms to the attempt time), the last one at updated_ms. */
static void insert_delivery(fixture *f, const char *id, const char *trigger, const char *status,
                            int64_t created_ms, int64_t updated_ms, int attempts,
                            int64_t lease_until_ms)
{
    rta_delivery_record d = make_delivery(id, "u1", "r_live", "webhook", created_ms, created_ms);
    d.trigger_id = (char *)trigger;
    d.status = attempts > 0 ? "pending" : (char *)status;
    d.updated_ms = updated_ms;
    d.lease_until_ms = lease_until_ms;
    assert_int_equal(f->ops->delivery_insert(f->db, &d), 0);
    for (int i = 1; i <= attempts; i++) {
        int last = i == attempts;
        rta_attempt_record a = {.delivery_id = (char *)id,
                                .attempt = i,
                                .at_ms = last ? updated_ms : created_ms + i,
                                .status_code = last ? 200 : 503,
                                .outcome = last ? "success" : "retry"};
        assert_int_equal(f->ops->delivery_record_attempt(f->db, &a, last ? status : "pending",
                                                         updated_ms + 1000),
                         0);
    }
}

#define OLD 1000
#define CUTOFF 1000000
#define RECENT 2000000

static void test_alerts_prune(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    assert_int_equal(ops->rule_upsert(db, "r_live", "u1", "{}", 1, OLD, OLD), 0);
    assert_int_equal(ops->rule_upsert(db, "r_gone", "u1", "{}", 1, OLD, OLD), 0);
    assert_int_equal(ops->rule_state_put(db, "r_live", "s1", 1, OLD), 0);
    assert_int_equal(ops->rule_state_put(db, "r_live", "s2", 0, OLD), 0);
    assert_int_equal(ops->rule_delete(db, "r_gone"), 0);
    /* a state write that lands after the rule's deletion (a trigger decided meanwhile) */
    assert_int_equal(ops->rule_state_put(db, "r_gone", "s1", 1, OLD), 0);
    assert_int_equal(ops->rule_state_put(db, "r_gone", "s2", 1, OLD), 0);

    insert_trigger(f, "t_done", "r_live", OLD);      /* only finished old deliveries */
    insert_trigger(f, "t_pending", "r_live", OLD);   /* an old delivery still retrying */
    insert_trigger(f, "t_leased", "r_live", OLD);    /* an old delivery being sent now */
    insert_trigger(f, "t_late", "r_live", OLD);      /* delivery finished after the cutoff */
    insert_trigger(f, "t_orphan", "r_gone", OLD);    /* no delivery at all */
    insert_trigger(f, "t_edge", "r_live", CUTOFF);   /* at the cutoff: not older */
    insert_trigger(f, "t_new", "r_live", RECENT);    /* recent, no delivery */
    insert_trigger(f, "t_newdel", "r_live", RECENT); /* recent, finished recently */

    insert_delivery(f, "d_delivered", "t_done", "delivered", OLD, OLD + 500, 3, 0);
    insert_delivery(f, "d_dead", "t_done", "dead", OLD, OLD + 600, 2, 0);
    insert_delivery(f, "d_suppressed", "t_done", "suppressed", OLD, OLD, 0, 0);
    insert_delivery(f, "d_disabled", "t_done", "disabled", OLD, OLD + 700, 1, 0);
    insert_delivery(f, "d_retrying", "t_pending", "pending", OLD, OLD + 800, 2, 0);
    insert_delivery(f, "d_due", "t_pending", "pending", OLD, OLD, 0, 0);
    insert_delivery(f, "d_leased", "t_leased", "pending", OLD, OLD, 0, RECENT);
    insert_delivery(f, "d_late", "t_late", "delivered", OLD, RECENT, 2, 0);
    insert_delivery(f, "d_edge", "t_late", "dead", OLD, CUTOFF, 1, 0);
    insert_delivery(f, "d_new", "t_newdel", "delivered", RECENT, RECENT + 5, 1, 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM delivery_attempts"), 12);

    rta_alerts_prune_counts n;
    assert_int_equal(ops->alerts_prune(db, CUTOFF, 0, &n), 0);
    assert_int_equal(n.deliveries, 4);
    assert_int_equal(n.attempts, 6); /* 3 + 2 + 0 + 1 */
    assert_int_equal(n.triggers, 2); /* t_done, t_orphan */
    assert_int_equal(n.rule_states, 2);
    assert_int_equal(n.more, 0);

    char got[512];
    query_text(f->path, "SELECT group_concat(id, ',') FROM (SELECT id FROM deliveries ORDER BY id)",
               got, sizeof got);
    assert_string_equal(got, "d_due,d_edge,d_late,d_leased,d_new,d_retrying");
    query_text(f->path,
               "SELECT group_concat(id, ',') FROM (SELECT DISTINCT delivery_id AS id "
               "FROM delivery_attempts ORDER BY id)",
               got, sizeof got);
    assert_string_equal(got, "d_edge,d_late,d_new,d_retrying");
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM delivery_attempts"), 6);
    query_text(f->path,
               "SELECT group_concat(id, ',') FROM (SELECT id FROM alert_triggers ORDER BY id)", got,
               sizeof got);
    assert_string_equal(got, "t_edge,t_late,t_leased,t_new,t_newdel,t_pending");
    query_text(f->path,
               "SELECT group_concat(k, ',') FROM (SELECT rule_id || '/' || series AS k "
               "FROM alert_rule_state ORDER BY k)",
               got, sizeof got);
    assert_string_equal(got, "r_live/s1,r_live/s2");
    /* what remains still reads back through the API */
    rta_delivery_record g;
    assert_int_equal(ops->delivery_get(db, "d_retrying", &g), 0);
    assert_string_equal(g.status, "pending");
    assert_int_equal(g.attempts, 2);
    rta_delivery_record_free_fields(&g);
    assert_int_equal(ops->delivery_get(db, "d_dead", &g), 1);

    /* nothing left to do: a second call deletes nothing */
    memset(&n, 0x55, sizeof n);
    assert_int_equal(ops->alerts_prune(db, CUTOFF, 0, &n), 0);
    assert_int_equal(n.deliveries, 0);
    assert_int_equal(n.attempts, 0);
    assert_int_equal(n.triggers, 0);
    assert_int_equal(n.rule_states, 0);
    assert_int_equal(n.more, 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM deliveries"), 6);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM alert_triggers"), 6);

    /* inside a caller's transaction it joins it: a rollback undoes the prune */
    assert_int_equal(ops->begin(db), 0);
    assert_int_equal(ops->alerts_prune(db, RECENT + 100, 0, &n), 0);
    assert_int_equal(n.deliveries, 3); /* d_edge, d_late, d_new */
    assert_int_equal(ops->rollback(db), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM deliveries"), 6);
}

/* The row budget: deliveries first, then triggers, then rule state; more says so. */
static void test_alerts_prune_budget(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    assert_int_equal(ops->rule_upsert(db, "r_live", "u1", "{}", 1, OLD, OLD), 0);
    assert_int_equal(ops->rule_state_put(db, "r_x", "s", 1, OLD), 0);
    const char *tr[] = {"t1", "t2", "t3"};
    const char *dl[] = {"d1", "d2", "d3"};
    for (int i = 0; i < 3; i++) {
        insert_trigger(f, tr[i], "r_live", OLD + i);
        insert_delivery(f, dl[i], tr[i], "delivered", OLD + i, OLD + 10 + i, 1, 0);
    }
    rta_alerts_prune_counts n;
    assert_int_equal(ops->alerts_prune(db, CUTOFF, 2, &n), 0);
    assert_int_equal(n.deliveries, 2);
    assert_int_equal(n.attempts, 2);
    assert_int_equal(n.triggers, 0);
    assert_int_equal(n.more, 1);
    char got[256];
    query_text(f->path, "SELECT group_concat(id, ',') FROM deliveries", got, sizeof got);
    assert_string_equal(got, "d3"); /* oldest first */

    assert_int_equal(ops->alerts_prune(db, CUTOFF, 2, &n), 0);
    assert_int_equal(n.deliveries, 1);
    assert_int_equal(n.triggers, 1);
    assert_int_equal(n.rule_states, 0);
    assert_int_equal(n.more, 1);
    query_text(f->path, "SELECT group_concat(id, ',') FROM alert_triggers", got, sizeof got);
    assert_string_equal(got, "t2,t3");

    assert_int_equal(ops->alerts_prune(db, CUTOFF, 2, &n), 0);
    assert_int_equal(n.triggers, 2);
    assert_int_equal(n.rule_states, 0);
    assert_int_equal(n.more, 1);
    assert_int_equal(ops->alerts_prune(db, CUTOFF, 2, &n), 0);
    assert_int_equal(n.rule_states, 1);
    assert_int_equal(n.more, 0);
    assert_int_equal(ops->alerts_prune(db, CUTOFF, 2, &n), 0);
    assert_int_equal(n.deliveries + n.attempts + n.triggers + n.rule_states, 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM alert_rule_state"), 0);
}

/* ---- prefs ------------------------------------------------------------------------------- */

static void test_prefs(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->ops;
    void *db = f->db;
    char *j = (char *)"untouched";
    assert_int_equal(ops->prefs_get(db, "u1", &j), 1);
    assert_null(j);
    assert_int_equal(ops->prefs_put(db, "u1", "{\"quiet\":true}"), 0);
    assert_int_equal(ops->prefs_get(db, "u1", &j), 0);
    assert_string_equal(j, "{\"quiet\":true}");
    free(j);
    assert_int_equal(ops->prefs_put(db, "u1", "{\"quiet\":false}"), 0);
    assert_int_equal(ops->prefs_get(db, "u1", &j), 0);
    assert_string_equal(j, "{\"quiet\":false}");
    free(j);
    assert_int_equal(ops->prefs_get(db, "u2", &j), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_insert_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_claim_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_prune_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
