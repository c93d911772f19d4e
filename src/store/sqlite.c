/*
 * SQLite backend for the store (rta_store_sqlite_ops).
 *
 * One connection per store, used by one thread at a time (the caller before rta_store_start,
 * the store thread after), so the connection is opened in multi-thread mode (no per-call
 * mutex). The database runs in WAL mode with synchronous=NORMAL: readers never block the
 * writer and a commit costs no fsync of the main file.
 *
 * Every statement is prepared once per connection (SQLITE_PREPARE_PERSISTENT) and kept in a
 * cache indexed by a fixed statement number; audit queries, whose WHERE clause depends on the
 * filter, are cached per combination of present filters.
 *
 * The schema is created by an append-only list of migrations (see `migrations` below). Types
 * are kept to what PostgreSQL also understands (TEXT, BIGINT, SMALLINT, DOUBLE PRECISION;
 * BLOB <-> BYTEA is the one spelling that differs) and upserts use ON CONFLICT ... DO UPDATE,
 * so a PostgreSQL backend can run the same logical schema.
 */
#include "rta/log.h"
#include "rta/store.h"
#include "rta/util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- migrations ------------------------------------------------------------------------- */

/* Ordered, append-only: never edit a shipped entry, add a new one. Version = index + 1.
 * Version 2 (alert rules) and 3 (notification outbox) are reserved for a later issue. */
static const char *const migrations[] = {
    /* 1: users, API keys, audit log, persisted points, metadata, kv */
    "CREATE TABLE users ("
    "  id TEXT PRIMARY KEY,"
    "  created_ms BIGINT NOT NULL"
    ");"
    "CREATE TABLE api_keys ("
    "  id TEXT PRIMARY KEY,"
    "  user_id TEXT NOT NULL REFERENCES users(id),"
    "  tier TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  label TEXT,"
    "  secret_hash BLOB NOT NULL," /* 32 bytes, SHA-256; BYTEA in PostgreSQL */
    "  created_ms BIGINT NOT NULL,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX api_keys_user ON api_keys(user_id);"
    "CREATE INDEX api_keys_created ON api_keys(created_ms, id);"
    /* AUTOINCREMENT: ids are never reused, even after old rows are pruned, so the
     * before_id pagination cursor stays valid. PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY */
    "CREATE TABLE audit_log ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time_ms BIGINT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  target TEXT,"
    "  request_id TEXT,"
    "  source_ip TEXT,"
    "  details TEXT" /* JSON text; JSONB in PostgreSQL */
    ");"
    "CREATE INDEX audit_log_time ON audit_log(time_ms);"
    "CREATE INDEX audit_log_actor ON audit_log(actor, id);"
    "CREATE INDEX audit_log_action ON audit_log(action, id);"
    /* Keyed by time first: loading since t in ts order and pruning before t are range scans
     * of the primary key, and appends (mostly in time order) go to the right edge. One value
     * per series and millisecond; a repeated append replaces it. */
    "CREATE TABLE points ("
    "  ts_ms BIGINT NOT NULL,"
    "  kind SMALLINT NOT NULL,"
    "  key1 TEXT NOT NULL,"
    "  key2 TEXT NOT NULL DEFAULT '',"
    "  value DOUBLE PRECISION NOT NULL,"
    "  PRIMARY KEY (ts_ms, kind, key1, key2)"
    ") WITHOUT ROWID;"
    "CREATE TABLE protocols ("
    "  slug TEXT PRIMARY KEY,"
    "  name TEXT,"
    "  category TEXT"
    ");"
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY,"
    "  symbol TEXT,"
    "  confidence DOUBLE PRECISION NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE kv ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ");",
};

/* ---- prepared statement cache ----------------------------------------------------------- */

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_PING,
    ST_USER_ENSURE,
    ST_KEY_INSERT,
    ST_KEY_LIST,
    ST_KEY_REVOKE,
    ST_KEY_COUNT,
    ST_AUDIT_APPEND,
    ST_POINT_INSERT,
    ST_POINTS_LOAD,
    ST_POINTS_PRUNE,
    ST_PROTOCOL_UPSERT,
    ST_PROTOCOLS_LOAD,
    ST_TOKEN_UPSERT,
    ST_TOKENS_LOAD,
    ST_KV_GET,
    ST_KV_SET,
    ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT rta_batch",
    [ST_RELEASE] = "RELEASE rta_batch",
    [ST_ROLLBACK_TO] = "ROLLBACK TO rta_batch",
    [ST_PING] = "SELECT 1",
    [ST_USER_ENSURE] = "INSERT INTO users(id, created_ms) VALUES (?1, ?2) "
                       "ON CONFLICT(id) DO NOTHING",
    [ST_KEY_INSERT] = "INSERT INTO api_keys(id, user_id, tier, role, label, secret_hash, "
                      "created_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_KEY_LIST] = "SELECT id, user_id, tier, role, label, secret_hash, created_ms, revoked_ms "
                    "FROM api_keys ORDER BY created_ms, id",
    [ST_KEY_REVOKE] = "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0",
    [ST_KEY_COUNT] = "SELECT count(*) FROM api_keys WHERE revoked_ms = 0",
    [ST_AUDIT_APPEND] = "INSERT INTO audit_log(time_ms, actor, action, target, request_id, "
                        "source_ip, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_POINT_INSERT] = "INSERT INTO points(ts_ms, kind, key1, key2, value) "
                        "VALUES (?1, ?2, ?3, ?4, ?5) "
                        "ON CONFLICT(ts_ms, kind, key1, key2) DO UPDATE SET value = excluded.value",
    [ST_POINTS_LOAD] = "SELECT ts_ms, kind, key1, key2, value FROM points WHERE ts_ms >= ?1 "
                       "ORDER BY ts_ms, kind, key1, key2",
    [ST_POINTS_PRUNE] = "DELETE FROM points WHERE ts_ms < ?1",
    [ST_PROTOCOL_UPSERT] = "INSERT INTO protocols(slug, name, category) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT(slug) DO UPDATE SET name = excluded.name, "
                           "category = excluded.category",
    [ST_PROTOCOLS_LOAD] = "SELECT slug, name, category FROM protocols ORDER BY slug",
    [ST_TOKEN_UPSERT] = "INSERT INTO tokens(id, symbol, confidence) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT(id) DO UPDATE SET symbol = excluded.symbol, "
                        "confidence = excluded.confidence",
    [ST_TOKENS_LOAD] = "SELECT id, symbol, confidence FROM tokens ORDER BY id",
    [ST_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_KV_SET] = "INSERT INTO kv(key, value) VALUES (?1, ?2) "
                  "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

/* Audit filters that change the WHERE clause; a statement is cached per combination. */
enum {
    AF_ACTOR = 1 << 0,
    AF_ACTION = 1 << 1,
    AF_PREFIX = 1 << 2, /* action given as "prefix*" */
    AF_PREFIX_UPPER = 1 << 3,
    AF_TARGET = 1 << 4,
    AF_SINCE = 1 << 5,
    AF_UNTIL = 1 << 6,
    AF_BEFORE = 1 << 7,
    AF__COMBOS = 1 << 8
};

typedef struct sqlite_conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__COUNT];
    sqlite3_stmt *audit_stmt[AF__COMBOS];
} sqlite_conn;

#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX 1000
#define BUSY_TIMEOUT_MS 5000

static void log_sqlite(sqlite_conn *c, const char *op, int rc)
{
    rta_log(RTA_LOG_ERROR, "store: sqlite error", "{s:s,s:i,s:s}", "op", op, "code", rc, "error",
            c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
}

static sqlite3_stmt *prepare_cached(sqlite_conn *c, sqlite3_stmt **slot, const char *sql,
                                    const char *op)
{
    if (*slot == NULL) {
        int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) {
            log_sqlite(c, op, rc);
            *slot = NULL;
            return NULL;
        }
    }
    return *slot;
}

static sqlite3_stmt *stmt_get(sqlite_conn *c, int which, const char *op)
{
    return prepare_cached(c, &c->stmt[which], stmt_sql[which], op);
}

/* Resets a statement after use so it holds no read transaction or bound pointers. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* Runs a statement that returns no rows. */
static int exec_simple(sqlite_conn *c, int which, const char *op)
{
    sqlite3_stmt *st = stmt_get(c, which, op);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        log_sqlite(c, op, rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static char *dup_column(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t != NULL ? rta_strdup((const char *)t) : NULL;
}

/* ---- open / close / migrate ------------------------------------------------------------- */

static void sqlite_close(void *db)
{
    sqlite_conn *c = db;
    if (c == NULL)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    for (int i = 0; i < AF__COMBOS; i++)
        sqlite3_finalize(c->audit_stmt[i]);
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK)
        log_sqlite(c, "close", rc);
    free(c);
}

/* Returns 0 when the directory that would hold path exists, else -1 with *err set. */
static int check_parent_dir(const char *path, char **err)
{
    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return 0;
    char *dir = rta_strdup(path);
    char *slash = strrchr(dir, '/');
    int ret = 0;
    if (slash == NULL)
        goto out; /* relative name in the working directory */
    if (slash == dir)
        slash[1] = '\0'; /* "/file" -> "/" */
    else
        *slash = '\0';
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (asprintf(err, "sqlite: directory '%s' for database '%s' does not exist", dir, path) < 0)
            *err = NULL;
        ret = -1;
    }
out:
    free(dir);
    return ret;
}

static int set_err_db(char **err, const char *what, sqlite3 *db, int rc)
{
    if (err != NULL && asprintf(err, "sqlite: %s: %s", what,
                                db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) < 0)
        *err = NULL;
    return -1;
}

static int sqlite_open(const char *target, void **out, char **err)
{
    *out = NULL;
    if (err != NULL)
        *err = NULL;
    if (target == NULL || target[0] == '\0') {
        if (err != NULL)
            *err = rta_strdup("sqlite: empty database path");
        return -1;
    }
    if (check_parent_dir(target, err) != 0)
        return -1;

    sqlite_conn *c = rta_xcalloc(1, sizeof *c);
    int ret = -1;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
    int rc = sqlite3_open_v2(target, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        set_err_db(err, "cannot open database", c->db, rc);
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);

    /* journal_mode returns the mode actually in effect; ":memory:" stays "memory". */
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        set_err_db(err, "cannot set WAL mode", c->db, rc);
        goto out;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (mode != NULL && strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
        rta_log(RTA_LOG_WARN, "store: sqlite not in WAL mode", "{s:s,s:s}", "path", target,
                "journal_mode", mode);
    sqlite3_finalize(st);

    rc =
        sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        set_err_db(err, "cannot set pragmas", c->db, rc);
        goto out;
    }
    ret = 0;
out:
    if (ret != 0)
        sqlite_close(c);
    else
        *out = c;
    return ret;
}

/* Applies migration number version (1-based) unless schema_version says it already ran. The
 * migration and its version row commit together: a crash leaves either both or neither, and
 * BEGIN IMMEDIATE serialises two processes migrating the same file. */
static int apply_migration(sqlite_conn *c, int version, char **err)
{
    int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return set_err_db(err, "cannot begin migration", c->db, rc);

    sqlite3_stmt *st = NULL;
    int applied = -1;
    rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM schema_version WHERE version = ?1", -1,
                            &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            applied = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    if (applied < 0)
        goto fail;
    if (applied == 0) {
        rc = sqlite3_exec(c->db, migrations[version - 1], NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto fail;
        char mark[128];
        snprintf(mark, sizeof mark,
                 "INSERT INTO schema_version(version, applied_ms) VALUES (%d, %lld)", version,
                 (long long)rta_now_ms());
        rc = sqlite3_exec(c->db, mark, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto fail;
    }
    rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    if (applied == 0)
        rta_log(RTA_LOG_INFO, "store: migration applied", "{s:s,s:i}", "backend", "sqlite",
                "version", version);
    return 0;
fail:;
    char what[64];
    snprintf(what, sizeof what, "migration %d failed", version);
    set_err_db(err, what, c->db, rc);
    log_sqlite(c, "migrate", rc);
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int sqlite_migrate(void *db, char **err)
{
    sqlite_conn *c = db;
    if (err != NULL)
        *err = NULL;
    int rc = sqlite3_exec(c->db,
                          "CREATE TABLE IF NOT EXISTS schema_version ("
                          "  version INTEGER PRIMARY KEY,"
                          "  applied_ms BIGINT NOT NULL)",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return set_err_db(err, "cannot create schema_version", c->db, rc);
    for (size_t i = 0; i < RTA_ARRAY_LEN(migrations); i++)
        if (apply_migration(c, (int)i + 1, err) != 0)
            return -1;
    return 0;
}

static int sqlite_ping(void *db)
{
    return exec_simple(db, ST_PING, "ping");
}

static int sqlite_begin(void *db)
{
    return exec_simple(db, ST_BEGIN, "begin");
}

static int sqlite_commit(void *db)
{
    return exec_simple(db, ST_COMMIT, "commit");
}

static int sqlite_rollback(void *db)
{
    return exec_simple(db, ST_ROLLBACK, "rollback");
}

/* Batches run inside a savepoint: atomic on their own, and nest inside a caller's BEGIN. */
static int batch_begin(sqlite_conn *c)
{
    return exec_simple(c, ST_SAVEPOINT, "savepoint");
}

static int batch_end(sqlite_conn *c, int ok)
{
    if (!ok) {
        exec_simple(c, ST_ROLLBACK_TO, "rollback_to");
        exec_simple(c, ST_RELEASE, "release");
        return -1;
    }
    return exec_simple(c, ST_RELEASE, "release");
}

/* ---- users and keys --------------------------------------------------------------------- */

static int sqlite_user_ensure(void *db, const char *user_id, int64_t now_ms)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_USER_ENSURE, "user_ensure");
    if (st == NULL)
        return -1;
    bind_text(st, 1, user_id);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "user_ensure", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static int sqlite_key_insert(void *db, const rta_key_record *k)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_KEY_INSERT, "key_insert");
    if (st == NULL)
        return -1;
    bind_text(st, 1, k->id);
    bind_text(st, 2, k->user_id);
    bind_text(st, 3, k->tier);
    bind_text(st, 4, k->role);
    bind_text(st, 5, k->label);
    sqlite3_bind_blob(st, 6, k->secret_hash, sizeof k->secret_hash, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, k->created_ms);
    sqlite3_bind_int64(st, 8, k->revoked_ms);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "key_insert", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static void free_key_array(rta_key_record *arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rta_key_record_free_fields(&arr[i]);
    free(arr);
}

static int sqlite_key_list(void *db, rta_key_record **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(c, ST_KEY_LIST, "key_list");
    if (st == NULL)
        return -1;
    rta_key_record *arr = NULL;
    size_t len = 0, cap = 0;
    int rc, ret = -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            arr = rta_xrealloc(arr, cap * sizeof *arr);
        }
        rta_key_record *k = &arr[len++];
        memset(k, 0, sizeof *k);
        k->id = dup_column(st, 0);
        k->user_id = dup_column(st, 1);
        k->tier = dup_column(st, 2);
        k->role = dup_column(st, 3);
        k->label = dup_column(st, 4);
        const void *h = sqlite3_column_blob(st, 5);
        int hl = sqlite3_column_bytes(st, 5);
        if (h != NULL && hl == (int)sizeof k->secret_hash)
            memcpy(k->secret_hash, h, sizeof k->secret_hash);
        k->created_ms = sqlite3_column_int64(st, 6);
        k->revoked_ms = sqlite3_column_int64(st, 7);
    }
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "key_list", rc);
        free_key_array(arr, len);
        goto out;
    }
    *out = arr;
    *n = len;
    ret = 0;
out:
    stmt_done(st);
    return ret;
}

static int sqlite_key_revoke(void *db, const char *id, int64_t when_ms)
{
    sqlite_conn *c = db;
    if (when_ms <= 0) {
        rta_log(RTA_LOG_ERROR, "store: key_revoke needs a positive time", "{s:s?,s:I}", "id", id,
                "when_ms", (json_int_t)when_ms);
        return -1;
    }
    sqlite3_stmt *st = stmt_get(c, ST_KEY_REVOKE, "key_revoke");
    if (st == NULL)
        return -1;
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, when_ms);
    int rc = sqlite3_step(st);
    int ret;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "key_revoke", rc);
        ret = -1;
    } else {
        ret = sqlite3_changes(c->db) > 0 ? 0 : 1;
    }
    stmt_done(st);
    return ret;
}

static int sqlite_key_count(void *db, int64_t *n)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_KEY_COUNT, "key_count");
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
    } else {
        log_sqlite(c, "key_count", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

/* ---- audit log -------------------------------------------------------------------------- */

static int sqlite_audit_append(void *db, const rta_audit_entry *e)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_AUDIT_APPEND, "audit_append");
    if (st == NULL)
        return -1;
    char *details = NULL;
    if (e->details != NULL)
        details = json_dumps(e->details, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    sqlite3_bind_int64(st, 1, e->time_ms);
    bind_text(st, 2, e->actor);
    bind_text(st, 3, e->action);
    bind_text(st, 4, e->target);
    bind_text(st, 5, e->request_id);
    bind_text(st, 6, e->source_ip);
    bind_text(st, 7, details);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "audit_append", rc);
        ret = -1;
    }
    stmt_done(st);
    free(details);
    return ret;
}

/* Upper bound of the range holding every string that starts with prefix: the prefix with its
 * last byte below 0xff incremented (trailing 0xff bytes dropped). Returns 0 when there is no
 * bound (the prefix is all 0xff bytes or empty). */
static int prefix_upper(const char *prefix, size_t len, char *out)
{
    memcpy(out, prefix, len);
    while (len > 0) {
        unsigned char b = (unsigned char)out[len - 1];
        if (b != 0xff) {
            out[len - 1] = (char)(b + 1);
            out[len] = '\0';
            return 1;
        }
        len--;
    }
    return 0;
}

static sqlite3_stmt *audit_stmt(sqlite_conn *c, unsigned mask)
{
    if (c->audit_stmt[mask] != NULL)
        return c->audit_stmt[mask];
    char sql[640];
    size_t len = (size_t)snprintf(sql, sizeof sql,
                                  "SELECT id, time_ms, actor, action, target, request_id, "
                                  "source_ip, details FROM audit_log WHERE 1=1");
    static const struct {
        unsigned bit;
        const char *cond;
    } conds[] = {
        {AF_ACTOR, " AND actor = ?1"},    {AF_ACTION, " AND action = ?2"},
        {AF_PREFIX, " AND action >= ?2"}, {AF_PREFIX_UPPER, " AND action < ?3"},
        {AF_TARGET, " AND target = ?4"},  {AF_SINCE, " AND time_ms >= ?5"},
        {AF_UNTIL, " AND time_ms < ?6"},  {AF_BEFORE, " AND id < ?7"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(conds); i++)
        if (mask & conds[i].bit)
            len += (size_t)snprintf(sql + len, sizeof sql - len, "%s", conds[i].cond);
    snprintf(sql + len, sizeof sql - len, " ORDER BY id DESC LIMIT ?8");
    return prepare_cached(c, &c->audit_stmt[mask], sql, "audit_query");
}

static int sqlite_audit_query(void *db, const rta_audit_filter *f, rta_audit_entry **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    unsigned mask = 0;
    char *upper = NULL;
    size_t plen = 0;
    if (f->actor != NULL)
        mask |= AF_ACTOR;
    if (f->action != NULL) {
        size_t alen = strlen(f->action);
        if (alen > 0 && f->action[alen - 1] == '*') {
            plen = alen - 1;
            if (plen > 0) { /* "*" alone matches any action */
                mask |= AF_PREFIX;
                upper = rta_xmalloc(plen + 1);
                if (prefix_upper(f->action, plen, upper))
                    mask |= AF_PREFIX_UPPER;
            }
        } else {
            mask |= AF_ACTION;
        }
    }
    if (f->target != NULL)
        mask |= AF_TARGET;
    if (f->since_ms > 0)
        mask |= AF_SINCE;
    if (f->until_ms > 0)
        mask |= AF_UNTIL;
    if (f->before_id > 0)
        mask |= AF_BEFORE;
    int limit = f->limit;
    if (limit <= 0)
        limit = AUDIT_LIMIT_DEFAULT;
    if (limit > AUDIT_LIMIT_MAX)
        limit = AUDIT_LIMIT_MAX;

    int ret = -1;
    rta_audit_entry *arr = NULL;
    size_t len = 0;
    sqlite3_stmt *st = audit_stmt(c, mask);
    if (st == NULL)
        goto out_free;
    if (mask & AF_ACTOR)
        bind_text(st, 1, f->actor);
    if (mask & AF_ACTION)
        bind_text(st, 2, f->action);
    if (mask & AF_PREFIX)
        sqlite3_bind_text(st, 2, f->action, (int)plen, SQLITE_STATIC);
    if (mask & AF_PREFIX_UPPER)
        sqlite3_bind_text(st, 3, upper, -1, SQLITE_STATIC);
    if (mask & AF_TARGET)
        bind_text(st, 4, f->target);
    if (mask & AF_SINCE)
        sqlite3_bind_int64(st, 5, f->since_ms);
    if (mask & AF_UNTIL)
        sqlite3_bind_int64(st, 6, f->until_ms);
    if (mask & AF_BEFORE)
        sqlite3_bind_int64(st, 7, f->before_id);
    sqlite3_bind_int(st, 8, limit);

    arr = rta_xcalloc((size_t)limit, sizeof *arr);
    int rc = SQLITE_DONE;
    while (len < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rta_audit_entry *e = &arr[len++];
        e->id = sqlite3_column_int64(st, 0);
        e->time_ms = sqlite3_column_int64(st, 1);
        e->actor = dup_column(st, 2);
        e->action = dup_column(st, 3);
        e->target = dup_column(st, 4);
        e->request_id = dup_column(st, 5);
        e->source_ip = dup_column(st, 6);
        const char *d = (const char *)sqlite3_column_text(st, 7);
        if (d != NULL)
            e->details = json_loads(d, JSON_DECODE_ANY, NULL);
    }
    if (len < (size_t)limit && rc != SQLITE_DONE) {
        log_sqlite(c, "audit_query", rc);
        goto out;
    }
    *out = arr;
    *n = len;
    arr = NULL;
    ret = 0;
out:
    stmt_done(st);
out_free:
    if (arr != NULL) {
        for (size_t i = 0; i < len; i++)
            rta_audit_entry_free_fields(&arr[i]);
        free(arr);
    }
    free(upper);
    return ret;
}

/* ---- points ----------------------------------------------------------------------------- */

static int sqlite_points_append(void *db, const rta_point *p, size_t n)
{
    sqlite_conn *c = db;
    if (n == 0)
        return 0;
    sqlite3_stmt *st = stmt_get(c, ST_POINT_INSERT, "points_append");
    if (st == NULL || batch_begin(c) != 0)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, p[i].ts_ms);
        sqlite3_bind_int(st, 2, p[i].kind);
        sqlite3_bind_text(st, 3, p[i].key1 ? p[i].key1 : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, p[i].key2 ? p[i].key2 : "", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 5, p[i].value);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            log_sqlite(c, "points_append", rc);
            ok = 0;
            break;
        }
    }
    sqlite3_clear_bindings(st);
    return batch_end(c, ok);
}

static int sqlite_points_load(void *db, int64_t since_ms, rta_point_cb cb, void *ud)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_POINTS_LOAD, "points_load");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, since_ms);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rta_point p = {
            .ts_ms = sqlite3_column_int64(st, 0),
            .kind = sqlite3_column_int(st, 1),
            .key1 = (const char *)sqlite3_column_text(st, 2),
            .key2 = (const char *)sqlite3_column_text(st, 3),
            .value = sqlite3_column_double(st, 4),
        };
        if (p.key2 == NULL)
            p.key2 = "";
        if (cb(ud, &p) != 0)
            goto out;
    }
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "points_load", rc);
        ret = -1;
    }
out:
    stmt_done(st);
    return ret;
}

static int sqlite_points_prune(void *db, int64_t before_ms)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_POINTS_PRUNE, "points_prune");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "points_prune", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

/* ---- metadata --------------------------------------------------------------------------- */

static int sqlite_protocols_upsert(void *db, const rta_protocol_meta *m, size_t n)
{
    sqlite_conn *c = db;
    if (n == 0)
        return 0;
    sqlite3_stmt *st = stmt_get(c, ST_PROTOCOL_UPSERT, "protocols_upsert");
    if (st == NULL || batch_begin(c) != 0)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        bind_text(st, 1, m[i].slug);
        bind_text(st, 2, m[i].name);
        bind_text(st, 3, m[i].category);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            log_sqlite(c, "protocols_upsert", rc);
            ok = 0;
        }
    }
    sqlite3_clear_bindings(st);
    return batch_end(c, ok);
}

static int sqlite_protocols_load(void *db, rta_protocol_meta_cb cb, void *ud)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_PROTOCOLS_LOAD, "protocols_load");
    if (st == NULL)
        return -1;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rta_protocol_meta m = {
            .slug = (const char *)sqlite3_column_text(st, 0),
            .name = (const char *)sqlite3_column_text(st, 1),
            .category = (const char *)sqlite3_column_text(st, 2),
        };
        if (cb(ud, &m) != 0)
            goto out;
    }
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "protocols_load", rc);
        ret = -1;
    }
out:
    stmt_done(st);
    return ret;
}

static int sqlite_tokens_upsert(void *db, const rta_token_meta *m, size_t n)
{
    sqlite_conn *c = db;
    if (n == 0)
        return 0;
    sqlite3_stmt *st = stmt_get(c, ST_TOKEN_UPSERT, "tokens_upsert");
    if (st == NULL || batch_begin(c) != 0)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        bind_text(st, 1, m[i].id);
        bind_text(st, 2, m[i].symbol);
        sqlite3_bind_double(st, 3, m[i].confidence);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            log_sqlite(c, "tokens_upsert", rc);
            ok = 0;
        }
    }
    sqlite3_clear_bindings(st);
    return batch_end(c, ok);
}

static int sqlite_tokens_load(void *db, rta_token_meta_cb cb, void *ud)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_TOKENS_LOAD, "tokens_load");
    if (st == NULL)
        return -1;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rta_token_meta m = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .symbol = (const char *)sqlite3_column_text(st, 1),
            .confidence = sqlite3_column_double(st, 2),
        };
        if (cb(ud, &m) != 0)
            goto out;
    }
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "tokens_load", rc);
        ret = -1;
    }
out:
    stmt_done(st);
    return ret;
}

/* ---- kv --------------------------------------------------------------------------------- */

static int sqlite_kv_get(void *db, const char *key, char **value)
{
    sqlite_conn *c = db;
    *value = NULL;
    sqlite3_stmt *st = stmt_get(c, ST_KV_GET, "kv_get");
    if (st == NULL)
        return -1;
    bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW) {
        *value = dup_column(st, 0);
        if (*value == NULL)
            *value = rta_strdup("");
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 1;
    } else {
        log_sqlite(c, "kv_get", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static int sqlite_kv_set(void *db, const char *key, const char *value)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_KV_SET, "kv_set");
    if (st == NULL)
        return -1;
    bind_text(st, 1, key);
    bind_text(st, 2, value != NULL ? value : "");
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "kv_set", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

const rta_store_ops rta_store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .migrate = sqlite_migrate,
    .ping = sqlite_ping,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .user_ensure = sqlite_user_ensure,
    .key_insert = sqlite_key_insert,
    .key_list = sqlite_key_list,
    .key_revoke = sqlite_key_revoke,
    .key_count = sqlite_key_count,
    .audit_append = sqlite_audit_append,
    .audit_query = sqlite_audit_query,
    .points_append = sqlite_points_append,
    .points_load = sqlite_points_load,
    .points_prune = sqlite_points_prune,
    .protocols_upsert = sqlite_protocols_upsert,
    .protocols_load = sqlite_protocols_load,
    .tokens_upsert = sqlite_tokens_upsert,
    .tokens_load = sqlite_tokens_load,
    .kv_get = sqlite_kv_get,
    .kv_set = sqlite_kv_set,
};
