/* Unit tests for src/store: the SQLite backend on a real file in a temp dir, and the executor
 * (worker thread, done order on the loop thread, queue bound, drain on close). */
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
} fixture;

static int setup(void **state)
{
    fixture *f = rta_xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rta_store_test_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/rta.db", f->dir);
    char *err = NULL;
    f->s = rta_store_open("sqlite", f->path, &err);
    if (f->s == NULL) {
        fprintf(stderr, "open: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
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

/* ---- backend ----------------------------------------------------------------------------- */

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

static void test_migrations_idempotent(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    assert_string_equal(ops->name, "sqlite");
    assert_int_equal(ops->ping(f->s->db), 0);
    assert_int_equal(ops->kv_set(f->s->db, "marker", "kept"), 0);
    char *err = NULL;
    assert_int_equal(ops->migrate(f->s->db, &err), 0); /* again on an open store */
    assert_null(err);
    rta_store_close(f->s);
    int versions = count_rows(f->path, "SELECT count(*) FROM schema_version");
    assert_true(versions >= 1);

    f->s = rta_store_open("sqlite", f->path, &err); /* reopen: migrations run again */
    assert_non_null(f->s);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM schema_version"), versions);
    assert_int_equal(count_rows(f->path, "SELECT max(version) FROM schema_version"), versions);
    char *v = NULL;
    assert_int_equal(f->s->ops->kv_get(f->s->db, "marker", &v), 0);
    assert_string_equal(v, "kept");
    free(v);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM pragma_journal_mode "
                                         "WHERE journal_mode = 'wal'"),
                     1);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/no/such/dir/rta.db", f->dir);
    char *err = NULL;
    assert_null(rta_store_open("sqlite", path, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "does not exist"));
    free(err);
    err = NULL;
    assert_null(rta_store_open("mysql", f->path, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "mysql"));
    free(err);
}

static rta_key_record make_key(const char *id, const char *user, int64_t created, unsigned char h)
{
    rta_key_record k = {0};
    k.id = (char *)id;
    k.user_id = (char *)user;
    k.tier = "pro";
    k.role = "user";
    k.label = NULL;
    memset(k.secret_hash, h, sizeof k.secret_hash);
    k.created_ms = created;
    return k;
}

static void test_keys(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    void *db = f->s->db;
    assert_int_equal(ops->user_ensure(db, "u1", 1000), 0);
    assert_int_equal(ops->user_ensure(db, "u1", 2000), 0); /* idempotent */

    rta_key_record k2 = make_key("k_b", "u1", 2000, 0xbb);
    rta_key_record k1 = make_key("k_a", "u1", 1000, 0xaa);
    k1.label = "laptop";
    k1.role = "admin";
    assert_int_equal(ops->key_insert(db, &k2), 0);
    assert_int_equal(ops->key_insert(db, &k1), 0);
    assert_int_equal(ops->key_insert(db, &k1), -1); /* duplicate id */
    rta_key_record orphan = make_key("k_c", "nobody", 3000, 0xcc);
    assert_int_equal(ops->key_insert(db, &orphan), -1); /* foreign key: unknown user */

    int64_t n = -1;
    assert_int_equal(ops->key_count(db, &n), 0);
    assert_int_equal(n, 2);

    rta_key_record *list = NULL;
    size_t len = 0;
    assert_int_equal(ops->key_list(db, &list, &len), 0);
    assert_int_equal(len, 2);
    assert_string_equal(list[0].id, "k_a"); /* oldest first */
    assert_string_equal(list[0].label, "laptop");
    assert_string_equal(list[0].role, "admin");
    assert_string_equal(list[0].tier, "pro");
    assert_string_equal(list[0].user_id, "u1");
    assert_memory_equal(list[0].secret_hash, k1.secret_hash, 32);
    assert_int_equal(list[0].created_ms, 1000);
    assert_int_equal(list[0].revoked_ms, 0);
    assert_string_equal(list[1].id, "k_b");
    assert_null(list[1].label);
    assert_memory_equal(list[1].secret_hash, k2.secret_hash, 32);
    for (size_t i = 0; i < len; i++)
        rta_key_record_free_fields(&list[i]);
    free(list);

    assert_int_equal(ops->key_revoke(db, "k_a", 5000), 0);
    assert_int_equal(ops->key_revoke(db, "k_a", 6000), 1);   /* already revoked */
    assert_int_equal(ops->key_revoke(db, "k_zzz", 6000), 1); /* unknown */
    assert_int_equal(ops->key_count(db, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ops->key_list(db, &list, &len), 0);
    assert_int_equal(len, 2);
    assert_int_equal(list[0].revoked_ms, 5000);
    assert_int_equal(list[1].revoked_ms, 0);
    for (size_t i = 0; i < len; i++)
        rta_key_record_free_fields(&list[i]);
    free(list);
}

static void append_audit(void *db, const rta_store_ops *ops, int64_t t, const char *actor,
                         const char *action, const char *target)
{
    rta_audit_entry e = {0};
    e.time_ms = t;
    e.actor = (char *)actor;
    e.action = (char *)action;
    e.target = (char *)target;
    e.request_id = "req-1";
    e.source_ip = "127.0.0.1";
    e.details = json_pack("{s:I}", "t", (json_int_t)t);
    assert_int_equal(ops->audit_append(db, &e), 0);
    json_decref(e.details);
}

static size_t query(rta_store *s, const rta_audit_filter *flt, rta_audit_entry **out)
{
    size_t n = 0;
    assert_int_equal(s->ops->audit_query(s->db, flt, out, &n), 0);
    return n;
}

static void free_entries(rta_audit_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rta_audit_entry_free_fields(&e[i]);
    free(e);
}

static void test_audit(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    void *db = f->s->db;
    append_audit(db, ops, 100, "cli", "key.create", "k_a");      /* id 1 */
    append_audit(db, ops, 200, "k_a", "ingest.batch", NULL);     /* id 2 */
    append_audit(db, ops, 300, "cli", "key.revoke", "k_a");      /* id 3 */
    append_audit(db, ops, 400, "system", "config.reload", NULL); /* id 4 */
    append_audit(db, ops, 500, "cli", "key.create", "k_b");      /* id 5 */
    append_audit(db, ops, 600, "k_b", "keyring.x", NULL);        /* id 6: not "key.*" */

    rta_audit_entry *r = NULL;
    rta_audit_filter all = {.limit = 100};
    size_t n = query(f->s, &all, &r);
    assert_int_equal(n, 6);
    assert_int_equal(r[0].id, 6); /* newest first */
    assert_int_equal(r[5].id, 1);
    assert_int_equal(r[5].time_ms, 100);
    assert_string_equal(r[5].actor, "cli");
    assert_string_equal(r[5].action, "key.create");
    assert_string_equal(r[5].target, "k_a");
    assert_string_equal(r[5].request_id, "req-1");
    assert_string_equal(r[5].source_ip, "127.0.0.1");
    assert_non_null(r[5].details);
    assert_int_equal(json_integer_value(json_object_get(r[5].details, "t")), 100);
    assert_null(r[4].target);
    free_entries(r, n);

    rta_audit_filter by_actor = {.actor = "cli", .limit = 100};
    n = query(f->s, &by_actor, &r);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].id, 5);
    assert_int_equal(r[1].id, 3);
    assert_int_equal(r[2].id, 1);
    free_entries(r, n);

    rta_audit_filter exact = {.action = "key.create", .limit = 100};
    n = query(f->s, &exact, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].id, 5);
    assert_int_equal(r[1].id, 1);
    free_entries(r, n);

    rta_audit_filter prefix = {.action = "key.*", .limit = 100};
    n = query(f->s, &prefix, &r);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].id, 5);
    assert_int_equal(r[1].id, 3);
    assert_int_equal(r[2].id, 1);
    free_entries(r, n);

    rta_audit_filter star = {.action = "*", .limit = 100};
    n = query(f->s, &star, &r);
    assert_int_equal(n, 6);
    free_entries(r, n);

    rta_audit_filter by_target = {.target = "k_a", .limit = 100};
    n = query(f->s, &by_target, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].id, 3);
    assert_int_equal(r[1].id, 1);
    free_entries(r, n);

    rta_audit_filter window = {.since_ms = 200, .until_ms = 500, .limit = 100};
    n = query(f->s, &window, &r);
    assert_int_equal(n, 3); /* 200, 300, 400: since inclusive, until exclusive */
    assert_int_equal(r[0].time_ms, 400);
    assert_int_equal(r[2].time_ms, 200);
    free_entries(r, n);

    rta_audit_filter combined = {.actor = "cli", .action = "key.*", .since_ms = 200, .limit = 100};
    n = query(f->s, &combined, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].id, 5);
    assert_int_equal(r[1].id, 3);
    free_entries(r, n);

    /* Pagination: pages of 2 with the last id as the cursor walk every entry once. */
    rta_audit_filter page = {.limit = 2};
    int64_t expect = 6;
    for (int p = 0; p < 3; p++) {
        n = query(f->s, &page, &r);
        assert_int_equal(n, 2);
        assert_int_equal(r[0].id, expect);
        assert_int_equal(r[1].id, expect - 1);
        expect -= 2;
        page.before_id = r[1].id;
        free_entries(r, n);
    }
    n = query(f->s, &page, &r);
    assert_int_equal(n, 0);
    free_entries(r, n);

    rta_audit_filter cursor_actor = {.actor = "cli", .before_id = 5, .limit = 1};
    n = query(f->s, &cursor_actor, &r);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].id, 3);
    free_entries(r, n);
}

typedef struct collected {
    int64_t ts[64];
    int kind[64];
    char key1[64][16];
    char key2[64][16];
    double value[64];
    size_t n;
    size_t stop_after; /* 0 = never */
} collected;

static int collect_point(void *ud, const rta_point *p)
{
    collected *c = ud;
    if (c->n >= 64)
        return 1;
    c->ts[c->n] = p->ts_ms;
    c->kind[c->n] = p->kind;
    snprintf(c->key1[c->n], 16, "%s", p->key1);
    snprintf(c->key2[c->n], 16, "%s", p->key2);
    c->value[c->n] = p->value;
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after;
}

static void test_points(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    void *db = f->s->db;
    rta_point pts[] = {
        {.kind = 0, .key1 = "aave", .key2 = "ethereum", .value = 3.0, .ts_ms = 3000},
        {.kind = 1, .key1 = "eth", .key2 = "", .value = 1.0, .ts_ms = 1000},
        {.kind = 0, .key1 = "aave", .key2 = "arbitrum", .value = 2.0, .ts_ms = 2000},
        {.kind = 1, .key1 = "btc", .key2 = NULL, .value = 4.0, .ts_ms = 4000},
        {.kind = 1, .key1 = "eth", .key2 = "", .value = 5.0, .ts_ms = 5000},
    };
    assert_int_equal(ops->begin(db), 0);
    assert_int_equal(ops->points_append(db, pts, RTA_ARRAY_LEN(pts)), 0);
    assert_int_equal(ops->commit(db), 0);

    collected c = {0};
    assert_int_equal(ops->points_load(db, 0, collect_point, &c), 0);
    assert_int_equal(c.n, 5);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.ts[i], (int64_t)(i + 1) * 1000); /* ts order */
    assert_int_equal(c.kind[1], 0);
    assert_string_equal(c.key1[1], "aave");
    assert_string_equal(c.key2[1], "arbitrum");
    assert_true(c.value[1] == 2.0);
    assert_string_equal(c.key2[3], ""); /* NULL key2 stored as "" */

    memset(&c, 0, sizeof c);
    assert_int_equal(ops->points_load(db, 3000, collect_point, &c), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.ts[0], 3000);

    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    assert_int_equal(ops->points_load(db, 0, collect_point, &c), 0);
    assert_int_equal(c.n, 2); /* callback stopped the scan */

    /* Same series and timestamp again (no explicit transaction): the value is replaced. */
    rta_point again = {.kind = 1, .key1 = "eth", .key2 = "", .value = 9.5, .ts_ms = 5000};
    assert_int_equal(ops->points_append(db, &again, 1), 0);
    assert_int_equal(ops->points_prune(db, 3000), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(ops->points_load(db, 0, collect_point, &c), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.ts[0], 3000);
    assert_int_equal(c.ts[2], 5000);
    assert_true(c.value[2] == 9.5);

    /* A rolled back batch leaves nothing behind. */
    rta_point late = {.kind = 1, .key1 = "sol", .key2 = "", .value = 1, .ts_ms = 9000};
    assert_int_equal(ops->begin(db), 0);
    assert_int_equal(ops->points_append(db, &late, 1), 0);
    assert_int_equal(ops->rollback(db), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(ops->points_load(db, 9000, collect_point, &c), 0);
    assert_int_equal(c.n, 0);
}

typedef struct meta_seen {
    char rows[8][96];
    size_t n;
} meta_seen;

static int collect_protocol(void *ud, const rta_protocol_meta *m)
{
    meta_seen *s = ud;
    snprintf(s->rows[s->n++], 96, "%s|%s|%s", m->slug, m->name ? m->name : "-",
             m->category ? m->category : "-");
    return s->n >= 8;
}

static int collect_token(void *ud, const rta_token_meta *m)
{
    meta_seen *s = ud;
    snprintf(s->rows[s->n++], 96, "%s|%s|%.2f", m->id, m->symbol ? m->symbol : "-", m->confidence);
    return s->n >= 8;
}

static void test_metadata(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    void *db = f->s->db;
    rta_protocol_meta p1[] = {{"uniswap", "Uniswap", "Dexes"}, {"aave", "Aave", "Lending"}};
    assert_int_equal(ops->protocols_upsert(db, p1, 2), 0);
    rta_protocol_meta p2[] = {{"aave", "Aave V3", "Lending"}, {"lido", "Lido", NULL}};
    assert_int_equal(ops->protocols_upsert(db, p2, 2), 0);
    meta_seen seen = {0};
    assert_int_equal(ops->protocols_load(db, collect_protocol, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.rows[0], "aave|Aave V3|Lending"); /* updated */
    assert_string_equal(seen.rows[1], "lido|Lido|-");
    assert_string_equal(seen.rows[2], "uniswap|Uniswap|Dexes");

    rta_token_meta t1[] = {{"coingecko:ethereum", "ETH", 0.99}};
    assert_int_equal(ops->tokens_upsert(db, t1, 1), 0);
    rta_token_meta t2[] = {{"coingecko:ethereum", "WETH", 0.5}, {"coingecko:bitcoin", "BTC", 1}};
    assert_int_equal(ops->tokens_upsert(db, t2, 2), 0);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(ops->tokens_load(db, collect_token, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.rows[0], "coingecko:bitcoin|BTC|1.00");
    assert_string_equal(seen.rows[1], "coingecko:ethereum|WETH|0.50");
}

static void test_kv(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    void *db = f->s->db;
    char *v = (char *)"untouched";
    assert_int_equal(ops->kv_get(db, "offset", &v), 1);
    assert_null(v);
    assert_int_equal(ops->kv_set(db, "offset", "42"), 0);
    assert_int_equal(ops->kv_get(db, "offset", &v), 0);
    assert_string_equal(v, "42");
    free(v);
    assert_int_equal(ops->kv_set(db, "offset", "43"), 0);
    assert_int_equal(ops->kv_get(db, "offset", &v), 0);
    assert_string_equal(v, "43");
    free(v);
}

/* ---- executor ---------------------------------------------------------------------------- */

typedef struct exec_ctx {
    pthread_t loop_thread;
    uv_sem_t gate; /* the first job waits here until the test opens it */
    int gate_job;  /* seq of the job that waits on gate, or -1 */
    int done_order[32];
    size_t done_n;
    int bad_thread; /* set when something ran on the wrong thread */
    size_t observed;
    const char *last_op;
} exec_ctx;

typedef struct test_job {
    rta_store_job job;
    exec_ctx *ctx;
    int seq;
    pthread_t work_thread;
    int64_t kv_read;
} test_job;

static void tj_work(rta_store *s, rta_store_job *job)
{
    test_job *tj = (test_job *)job;
    tj->work_thread = pthread_self();
    if (tj->seq == tj->ctx->gate_job)
        uv_sem_wait(&tj->ctx->gate);
    char key[32], val[32];
    snprintf(key, sizeof key, "job%d", tj->seq);
    snprintf(val, sizeof val, "%d", tj->seq * 10);
    job->status = s->ops->kv_set(s->db, key, val);
}

static void tj_done(rta_store_job *job)
{
    test_job *tj = (test_job *)job;
    exec_ctx *ctx = tj->ctx;
    if (!pthread_equal(pthread_self(), ctx->loop_thread))
        ctx->bad_thread = 1;
    if (pthread_equal(tj->work_thread, ctx->loop_thread))
        ctx->bad_thread = 2;
    if (job->status != 0)
        ctx->bad_thread = 3;
    if (ctx->done_n < 32)
        ctx->done_order[ctx->done_n++] = tj->seq;
    free(tj);
}

static test_job *new_job(exec_ctx *ctx, int seq)
{
    test_job *tj = rta_xcalloc(1, sizeof *tj);
    tj->job.work = tj_work;
    tj->job.done = tj_done;
    tj->job.op = "test_job";
    tj->ctx = ctx;
    tj->seq = seq;
    return tj;
}

static void observe(void *ud, const char *op, int status, uint64_t queued_ns, uint64_t work_ns)
{
    exec_ctx *ctx = ud;
    if (!pthread_equal(pthread_self(), ctx->loop_thread))
        ctx->bad_thread = 4;
    ctx->observed++;
    ctx->last_op = op;
}

static void exec_ctx_init(exec_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->loop_thread = pthread_self();
    ctx->gate_job = -1;
    assert_int_equal(uv_sem_init(&ctx->gate, 0), 0);
}

static void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT); /* lets the store's async handle close */
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_executor_order_and_threads(void **state)
{
    fixture *f = *state;
    exec_ctx ctx;
    exec_ctx_init(&ctx);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rta_store_set_observer(f->s, observe, &ctx);
    assert_int_equal(rta_store_start(f->s, &loop, 64), 0);
    assert_int_equal(rta_store_start(f->s, &loop, 64), -1); /* only once */

    for (int i = 0; i < 10; i++)
        assert_int_equal(rta_store_submit(f->s, &new_job(&ctx, i)->job), 0);
    while (ctx.done_n < 10)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(ctx.bad_thread, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ctx.done_order[i], i);
    assert_int_equal(ctx.observed, 10);
    assert_string_equal(ctx.last_op, "test_job");
    assert_int_equal(rta_store_pending(f->s), 0);

    rta_store_close(f->s);
    f->s = NULL;
    loop_finish(&loop);
    uv_sem_destroy(&ctx.gate);

    /* The work really reached the database. */
    char *err = NULL;
    f->s = rta_store_open("sqlite", f->path, &err);
    assert_non_null(f->s);
    char *v = NULL;
    assert_int_equal(f->s->ops->kv_get(f->s->db, "job7", &v), 0);
    assert_string_equal(v, "70");
    free(v);
}

static void test_executor_queue_full(void **state)
{
    fixture *f = *state;
    exec_ctx ctx;
    exec_ctx_init(&ctx);
    ctx.gate_job = 0;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    test_job *early = new_job(&ctx, 99);
    assert_int_equal(rta_store_submit(f->s, &early->job), -1); /* not started */
    free(early);
    assert_int_equal(rta_store_start(f->s, &loop, 3), 0);

    for (int i = 0; i < 3; i++)
        assert_int_equal(rta_store_submit(f->s, &new_job(&ctx, i)->job), 0);
    assert_int_equal(rta_store_pending(f->s), 3);
    test_job *extra = new_job(&ctx, 3);
    assert_int_equal(rta_store_submit(f->s, &extra->job), -1); /* full: job 0 holds the gate */
    assert_int_equal(rta_store_audit(f->s, "cli", "key.create", NULL, NULL, NULL, NULL), -1);

    uv_sem_post(&ctx.gate);
    while (ctx.done_n < 3)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rta_store_pending(f->s), 0);
    assert_int_equal(rta_store_submit(f->s, &extra->job), 0); /* room again */
    while (ctx.done_n < 4)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(ctx.bad_thread, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ctx.done_order[i], i);

    rta_store_close(f->s);
    f->s = NULL;
    loop_finish(&loop);
    uv_sem_destroy(&ctx.gate);
}

static void test_executor_close_drains(void **state)
{
    fixture *f = *state;
    exec_ctx ctx;
    exec_ctx_init(&ctx);
    ctx.gate_job = 0;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(rta_store_start(f->s, &loop, 16), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(rta_store_submit(f->s, &new_job(&ctx, i)->job), 0);
    assert_int_equal(rta_store_audit(f->s, "cli", "config.reload", "rtad.ini", "req-9", "10.0.0.1",
                                     json_pack("{s:i}", "changed", 2)),
                     0);
    assert_int_equal(rta_store_pending(f->s), 7);
    uv_sem_post(&ctx.gate);
    /* No loop iteration: close must run every job and every done callback itself. */
    rta_store_close(f->s);
    f->s = NULL;
    assert_int_equal(ctx.done_n, 6);
    assert_int_equal(ctx.bad_thread, 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(ctx.done_order[i], i);
    loop_finish(&loop);
    uv_sem_destroy(&ctx.gate);

    char *err = NULL;
    f->s = rta_store_open("sqlite", f->path, &err);
    assert_non_null(f->s);
    rta_audit_filter flt = {.action = "config.*", .limit = 10};
    rta_audit_entry *r = NULL;
    size_t n = query(f->s, &flt, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].target, "rtad.ini");
    assert_string_equal(r[0].source_ip, "10.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(r[0].details, "changed")), 2);
    free_entries(r, n);
}

/* Retention: entries older than the cutoff go, oldest first, at most max_rows a call. */
static void test_audit_prune(void **state)
{
    fixture *f = *state;
    const rta_store_ops *ops = f->s->ops;
    void *db = f->s->db;
    for (int i = 1; i <= 5; i++)
        append_audit(db, ops, i * 100, "cli", "key.create", NULL); /* ids 1..5 at 100..500 */
    int64_t deleted = -1;
    assert_int_equal(ops->audit_prune(db, 400, 2, &deleted), 0); /* 3 are older: 2 go */
    assert_int_equal(deleted, 2);
    rta_audit_entry *r = NULL;
    rta_audit_filter all = {.limit = 100};
    size_t n = query(f->s, &all, &r);
    assert_int_equal(n, 3);
    assert_int_equal(r[2].id, 3); /* the oldest went first */
    free_entries(r, n);
    assert_int_equal(ops->audit_prune(db, 400, 2, &deleted), 0); /* the last one older */
    assert_int_equal(deleted, 1);
    assert_int_equal(ops->audit_prune(db, 400, 2, &deleted), 0); /* nothing left to do */
    assert_int_equal(deleted, 0);
    n = query(f->s, &all, &r);
    assert_int_equal(n, 2); /* 400 and 500: not older than the cutoff */
    assert_int_equal(r[0].time_ms, 500);
    assert_int_equal(r[1].time_ms, 400);
    free_entries(r, n);
}

static void test_audit_before_start_is_synchronous(void **state)
{
    fixture *f = *state;
    assert_int_equal(rta_store_audit(f->s, "system", "startup", NULL, NULL, NULL,
                                     json_pack("{s:s}", "version", "0.1")),
                     0);
    rta_audit_filter flt = {.actor = "system", .limit = 10};
    rta_audit_entry *r = NULL;
    size_t n = query(f->s, &flt, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].action, "startup");
    assert_null(r[0].target);
    assert_true(r[0].time_ms > 0);
    free_entries(r, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_before_start_is_synchronous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_order_and_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_close_drains, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
