/*
 * SQLite backend for the store (rta_store_sqlite_ops).
 *
 * One connection per store, used by one thread at a time (the caller before rta_store_start,
 * the store thread after), so the connection is opened in multi-thread mode (no per-call
 * mutex). The database runs in WAL mode with synchronous=NORMAL: readers never block the
 * writer and a commit costs no fsync of the main file.
 *
 * Every statement is prepared once per connection (SQLITE_PREPARE_PERSISTENT) and kept in a
 * cache indexed by a fixed statement number; audit and delivery queries, whose WHERE clause
 * depends on the filter, are cached per combination of present filters.
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

/* Ordered, append-only: never edit a shipped entry, add a new one. Version = index + 1. */
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

    /* 2: alert rules, their per-series state, and the trigger history. No foreign keys:
     * triggers outlive their rule (history), and state rows are deleted with the rule by
     * rule_delete itself. */
    "CREATE TABLE alert_rules ("
    "  rule_id TEXT PRIMARY KEY,"
    "  user_id TEXT NOT NULL,"
    "  body TEXT NOT NULL," /* JSON text (rta_alert_rule_to_storage); JSONB in PostgreSQL */
    "  is_active SMALLINT NOT NULL DEFAULT 1,"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL"
    ");"
    "CREATE INDEX alert_rules_user ON alert_rules(user_id);"
    "CREATE TABLE alert_rule_state ("
    "  rule_id TEXT NOT NULL,"
    "  series TEXT NOT NULL,"
    "  firing SMALLINT NOT NULL DEFAULT 0,"
    "  last_notified_ms BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (rule_id, series)"
    ") WITHOUT ROWID;"
    "CREATE TABLE alert_triggers ("
    "  id TEXT PRIMARY KEY,"
    "  rule_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL,"
    "  series TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  value DOUBLE PRECISION NOT NULL,"
    "  event_id TEXT,"
    "  event_offset BIGINT NOT NULL DEFAULT 0,"
    "  at_ms BIGINT NOT NULL,"
    "  payload TEXT"
    ");"
    "CREATE INDEX alert_triggers_rule ON alert_triggers(rule_id, at_ms, id);",

    /* 3: notification outbox (one row per notification and target, kept across retries),
     * its attempt log, and per-user notification preferences. The (status, next_attempt_ms)
     * index serves the claim; the (x, created_ms, id) ones serve newest-first listings with
     * the keyset cursor without a sort. */
    "CREATE TABLE deliveries ("
    "  id TEXT PRIMARY KEY,"
    "  trigger_id TEXT NOT NULL,"
    "  rule_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL,"
    "  channel TEXT NOT NULL,"
    "  target TEXT,"
    "  status TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_ms BIGINT NOT NULL DEFAULT 0,"
    "  lease_until_ms BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL,"
    "  delivered_ms BIGINT NOT NULL DEFAULT 0,"
    "  last_status_code INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  note TEXT,"
    "  payload TEXT" /* JSON text */
    ");"
    "CREATE INDEX deliveries_due ON deliveries(status, next_attempt_ms);"
    "CREATE INDEX deliveries_user ON deliveries(user_id, created_ms, id);"
    "CREATE INDEX deliveries_rule ON deliveries(rule_id, created_ms, id);"
    "CREATE INDEX deliveries_trigger ON deliveries(trigger_id);"
    "CREATE INDEX deliveries_created ON deliveries(created_ms, id);"
    "CREATE TABLE delivery_attempts ("
    "  delivery_id TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  at_ms BIGINT NOT NULL,"
    "  latency_ms BIGINT NOT NULL DEFAULT 0,"
    "  status_code INTEGER NOT NULL DEFAULT 0,"
    "  outcome TEXT NOT NULL,"
    "  error TEXT,"
    "  PRIMARY KEY (delivery_id, attempt)"
    ") WITHOUT ROWID;"
    "CREATE TABLE user_prefs ("
    "  user_id TEXT PRIMARY KEY,"
    "  json TEXT NOT NULL"
    ");",

    /* 4: retention (alerts_prune) selects finished deliveries by last update and triggers by
     * time, across rules and users: neither is served by the indexes above. */
    ("CREATE INDEX deliveries_updated ON deliveries(updated_ms);"
     "CREATE INDEX alert_triggers_at ON alert_triggers(at_ms);"),
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
    ST_AUDIT_PRUNE,
    ST_PROTOCOL_UPSERT,
    ST_PROTOCOLS_LOAD,
    ST_TOKEN_UPSERT,
    ST_TOKENS_LOAD,
    ST_KV_GET,
    ST_KV_SET,
    ST_RULE_UPSERT,
    ST_RULE_DELETE,
    ST_RULE_STATES_DELETE,
    ST_RULES_LOAD,
    ST_RULE_STATE_PUT,
    ST_RULE_STATES_LOAD,
    ST_TRIGGER_INSERT,
    ST_TRIGGERS_NEWEST,
    ST_TRIGGERS_BEFORE,
    ST_DELIVERY_INSERT,
    ST_DELIVERIES_CLAIM,
    ST_DELIVERY_UPDATE_ATTEMPT,
    ST_ATTEMPT_INSERT,
    ST_DELIVERY_GET,
    ST_DELIVERY_CREATED,
    ST_ATTEMPTS_QUERY,
    ST_DELIVERY_REQUEUE,
    ST_DELIVERY_STATUS,
    ST_DELIVERIES_FOR_TRIGGER,
    ST_PREFS_GET,
    ST_PREFS_PUT,
    ST_PRUNE_DELIVERIES_PICK,
    ST_PRUNE_ATTEMPTS,
    ST_PRUNE_DELIVERY,
    ST_PRUNE_TRIGGERS,
    ST_PRUNE_RULE_STATES,
    ST__COUNT
};

/* Columns of a delivery, in the order read_delivery() expects. */
#define DELIVERY_COLS                                                                              \
    "id, trigger_id, rule_id, user_id, channel, target, status, attempts, next_attempt_ms, "       \
    "lease_until_ms, created_ms, updated_ms, delivered_ms, last_status_code, last_error, note, "   \
    "payload"
#define TRIGGER_COLS                                                                               \
    "id, rule_id, user_id, series, state, value, event_id, event_offset, at_ms, payload"

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
    [ST_AUDIT_PRUNE] = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log "
                       "WHERE time_ms < ?1 ORDER BY time_ms, id LIMIT ?2)",
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
    /* The owner and creation time of a rule never change; an upsert updates the rest. */
    [ST_RULE_UPSERT] = "INSERT INTO alert_rules(rule_id, user_id, body, is_active, created_ms, "
                       "updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                       "ON CONFLICT(rule_id) DO UPDATE SET body = excluded.body, "
                       "is_active = excluded.is_active, updated_ms = excluded.updated_ms",
    [ST_RULE_DELETE] = "DELETE FROM alert_rules WHERE rule_id = ?1",
    [ST_RULE_STATES_DELETE] = "DELETE FROM alert_rule_state WHERE rule_id = ?1",
    [ST_RULES_LOAD] = "SELECT rule_id, user_id, body FROM alert_rules ORDER BY created_ms, rule_id",
    [ST_RULE_STATE_PUT] = "INSERT INTO alert_rule_state(rule_id, series, firing, "
                          "last_notified_ms) VALUES (?1, ?2, ?3, ?4) "
                          "ON CONFLICT(rule_id, series) DO UPDATE SET firing = excluded.firing, "
                          "last_notified_ms = excluded.last_notified_ms",
    [ST_RULE_STATES_LOAD] = "SELECT rule_id, series, firing, last_notified_ms "
                            "FROM alert_rule_state ORDER BY rule_id, series",
    [ST_TRIGGER_INSERT] = "INSERT INTO alert_triggers(" TRIGGER_COLS ") "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_TRIGGERS_NEWEST] = "SELECT " TRIGGER_COLS " FROM alert_triggers WHERE rule_id = ?1 "
                           "ORDER BY at_ms DESC, id DESC LIMIT ?3",
    [ST_TRIGGERS_BEFORE] = "SELECT " TRIGGER_COLS " FROM alert_triggers WHERE rule_id = ?1 "
                           "AND at_ms < ?2 ORDER BY at_ms DESC, id DESC LIMIT ?3",
    [ST_DELIVERY_INSERT] = "INSERT INTO deliveries(" DELIVERY_COLS ") VALUES (?1, ?2, ?3, ?4, "
                           "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    /* One statement, so the choice and the lease are atomic (SQLite runs writers one at a
     * time). PostgreSQL: the same with FOR UPDATE SKIP LOCKED in the subquery. */
    [ST_DELIVERIES_CLAIM] = "UPDATE deliveries SET lease_until_ms = ?2 WHERE id IN ("
                            "SELECT id FROM deliveries WHERE status = 'pending' "
                            "AND next_attempt_ms <= ?1 "
                            "AND (lease_until_ms = 0 OR lease_until_ms < ?1) "
                            "ORDER BY next_attempt_ms, id LIMIT ?3) "
                            "RETURNING " DELIVERY_COLS,
    [ST_DELIVERY_UPDATE_ATTEMPT] =
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_ms = ?4, "
        "lease_until_ms = 0, updated_ms = ?5, "
        "delivered_ms = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_ms END, "
        "last_status_code = ?6, last_error = ?7 WHERE id = ?1",
    [ST_ATTEMPT_INSERT] = "INSERT INTO delivery_attempts(delivery_id, attempt, at_ms, latency_ms, "
                          "status_code, outcome, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_DELIVERY_GET] = "SELECT " DELIVERY_COLS " FROM deliveries WHERE id = ?1",
    [ST_DELIVERY_CREATED] = "SELECT created_ms FROM deliveries WHERE id = ?1",
    [ST_ATTEMPTS_QUERY] = "SELECT delivery_id, attempt, at_ms, latency_ms, status_code, outcome, "
                          "error FROM delivery_attempts WHERE delivery_id = ?1 "
                          "ORDER BY attempt LIMIT 1000",
    [ST_DELIVERY_REQUEUE] = "UPDATE deliveries SET status = 'pending', next_attempt_ms = ?2, "
                            "lease_until_ms = 0, updated_ms = ?2 "
                            "WHERE id = ?1 AND status = 'dead'",
    [ST_DELIVERY_STATUS] = "SELECT status FROM deliveries WHERE id = ?1",
    [ST_DELIVERIES_FOR_TRIGGER] = "SELECT " DELIVERY_COLS " FROM deliveries "
                                  "WHERE trigger_id = ?1 ORDER BY created_ms, id LIMIT 1000",
    [ST_PREFS_GET] = "SELECT json FROM user_prefs WHERE user_id = ?1",
    [ST_PREFS_PUT] = "INSERT INTO user_prefs(user_id, json) VALUES (?1, ?2) "
                     "ON CONFLICT(user_id) DO UPDATE SET json = excluded.json",
    /* Retention. "+status" keeps the planner off deliveries_due (status, ...), which would
     * visit every finished delivery; deliveries_updated serves the range and the order. */
    [ST_PRUNE_DELIVERIES_PICK] = "SELECT id FROM deliveries WHERE updated_ms < ?1 "
                                 "AND +status IN ('delivered', 'dead', 'suppressed', 'disabled') "
                                 "ORDER BY updated_ms LIMIT ?2",
    [ST_PRUNE_ATTEMPTS] = "DELETE FROM delivery_attempts WHERE delivery_id = ?1",
    [ST_PRUNE_DELIVERY] = "DELETE FROM deliveries WHERE id = ?1",
    [ST_PRUNE_TRIGGERS] = "DELETE FROM alert_triggers WHERE id IN ("
                          "SELECT t.id FROM alert_triggers t WHERE t.at_ms < ?1 "
                          "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.trigger_id = t.id) "
                          "ORDER BY t.at_ms LIMIT ?2)",
    [ST_PRUNE_RULE_STATES] = "DELETE FROM alert_rule_state WHERE (rule_id, series) IN ("
                             "SELECT s.rule_id, s.series FROM alert_rule_state s "
                             "WHERE NOT EXISTS (SELECT 1 FROM alert_rules r "
                             "WHERE r.rule_id = s.rule_id) LIMIT ?1)",
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

/* Delivery filters that change the WHERE clause (deliveries_query), cached likewise. */
enum {
    DF_USER = 1 << 0,
    DF_RULE = 1 << 1,
    DF_CHANNEL = 1 << 2,
    DF_STATUS = 1 << 3,
    DF_SINCE = 1 << 4,
    DF_UNTIL = 1 << 5,
    DF_BEFORE = 1 << 6,
    DF__COMBOS = 1 << 7
};

typedef struct sqlite_conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__COUNT];
    sqlite3_stmt *audit_stmt[AF__COMBOS];
    sqlite3_stmt *delivery_stmt[DF__COMBOS];
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

/* Steps a statement that returns no rows; 0 or -1 (logged). Resets it. */
static int step_done(sqlite_conn *c, sqlite3_stmt *st, const char *op)
{
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        log_sqlite(c, op, rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
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
    for (int i = 0; i < DF__COMBOS; i++)
        sqlite3_finalize(c->delivery_stmt[i]);
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
    int ret = step_done(c, st, "user_ensure");
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
    int ret = step_done(c, st, "key_insert");
    return ret;
}

/* ---- reading rows into arrays ------------------------------------------------------------ */

typedef void (*row_read_fn)(sqlite3_stmt *st, void *elem); /* elem: zeroed */
typedef void (*row_free_fn)(void *elem);                   /* its fields, not elem itself */

/* Steps st (bound by the caller) and collects at most max rows into a new array of elements of
 * size bytes, each filled by read. Resets st. A RETURNING statement is stepped to its end, so
 * its every change is applied before the reset. On an error nothing is returned (what was read
 * is released with free_fields) and -1 comes back. */
static int collect_rows(sqlite_conn *c, sqlite3_stmt *st, size_t max, size_t size, row_read_fn read,
                        row_free_fn free_fields, const char *op, void **out, size_t *n)
{
    char *arr = NULL;
    size_t len = 0, cap = 0;
    int rc = SQLITE_DONE, ret = -1;
    *out = NULL;
    *n = 0;
    while (len < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8;
            if (cap > max)
                cap = max;
            arr = rta_xrealloc(arr, cap * size);
        }
        memset(arr + len * size, 0, size);
        read(st, arr + len * size);
        len++;
    }
    while (len >= max && rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        log_sqlite(c, op, rc);
        for (size_t i = 0; i < len; i++)
            free_fields(arr + i * size);
        free(arr);
        goto out;
    }
    *out = arr;
    *n = len;
    ret = 0;
out:
    stmt_done(st);
    return ret;
}

static void read_key(sqlite3_stmt *st, void *elem)
{
    rta_key_record *k = elem;
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

static void free_key(void *elem)
{
    rta_key_record_free_fields(elem);
}

static int sqlite_key_list(void *db, rta_key_record **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(c, ST_KEY_LIST, "key_list");
    if (st == NULL)
        return -1;
    void *rows;
    int ret = collect_rows(c, st, SIZE_MAX, sizeof **out, read_key, free_key, "key_list", &rows, n);
    *out = rows;
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
    int ret = step_done(c, st, "audit_append");
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

static void read_audit(sqlite3_stmt *st, void *elem)
{
    rta_audit_entry *e = elem;
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

static void free_audit(void *elem)
{
    rta_audit_entry_free_fields(elem);
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

    void *rows;
    ret = collect_rows(c, st, (size_t)limit, sizeof **out, read_audit, free_audit, "audit_query",
                       &rows, n);
    *out = rows;
out_free:
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
        if (step_done(c, st, "points_append") != 0) {
            ok = 0;
            break;
        }
    }
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
    int ret = step_done(c, st, "points_prune");
    return ret;
}

static int sqlite_audit_prune(void *db, int64_t before_ms, size_t max_rows, int64_t *deleted)
{
    sqlite_conn *c = db;
    *deleted = 0;
    sqlite3_stmt *st = stmt_get(c, ST_AUDIT_PRUNE, "audit_prune");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(max_rows ? max_rows : 10000));
    int ret = step_done(c, st, "audit_prune");
    if (ret == 0)
        *deleted = sqlite3_changes64(c->db);
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
        if (step_done(c, st, "protocols_upsert") != 0) {
            ok = 0;
            break;
        }
    }
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
        if (step_done(c, st, "tokens_upsert") != 0) {
            ok = 0;
            break;
        }
    }
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
    int ret = step_done(c, st, "kv_set");
    return ret;
}

/* ---- alerts: rules, state, triggers ----------------------------------------------------- */

#define ALERT_LIMIT_DEFAULT 100
#define ALERT_LIMIT_MAX 1000

static int clamp_limit(int limit)
{
    if (limit <= 0)
        return ALERT_LIMIT_DEFAULT;
    return limit > ALERT_LIMIT_MAX ? ALERT_LIMIT_MAX : limit;
}

static int sqlite_rule_upsert(void *db, const char *rule_id, const char *user_id,
                              const char *body_json, int is_active, int64_t created_ms,
                              int64_t updated_ms)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_RULE_UPSERT, "rule_upsert");
    if (st == NULL)
        return -1;
    bind_text(st, 1, rule_id);
    bind_text(st, 2, user_id);
    bind_text(st, 3, body_json);
    sqlite3_bind_int(st, 4, is_active ? 1 : 0);
    sqlite3_bind_int64(st, 5, created_ms);
    sqlite3_bind_int64(st, 6, updated_ms);
    return step_done(c, st, "rule_upsert");
}

static int sqlite_rule_delete(void *db, const char *rule_id)
{
    sqlite_conn *c = db;
    sqlite3_stmt *del = stmt_get(c, ST_RULE_DELETE, "rule_delete");
    sqlite3_stmt *states = stmt_get(c, ST_RULE_STATES_DELETE, "rule_delete");
    if (del == NULL || states == NULL || batch_begin(c) != 0)
        return -1;
    bind_text(del, 1, rule_id);
    int rc = sqlite3_step(del);
    int found = sqlite3_changes(c->db) > 0;
    stmt_done(del);
    int ok = rc == SQLITE_DONE;
    if (!ok)
        log_sqlite(c, "rule_delete", rc);
    if (ok) {
        bind_text(states, 1, rule_id);
        ok = step_done(c, states, "rule_delete") == 0;
    }
    if (batch_end(c, ok) != 0)
        return -1;
    return found ? 0 : 1;
}

static int sqlite_rules_load(void *db, rta_rule_cb cb, void *ud)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_RULES_LOAD, "rules_load");
    if (st == NULL)
        return -1;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cb(ud, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1),
               (const char *)sqlite3_column_text(st, 2)) != 0)
            goto out;
    }
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "rules_load", rc);
        ret = -1;
    }
out:
    stmt_done(st);
    return ret;
}

static int sqlite_rule_state_put(void *db, const char *rule_id, const char *series, int firing,
                                 int64_t last_notified_ms)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_RULE_STATE_PUT, "rule_state_put");
    if (st == NULL)
        return -1;
    bind_text(st, 1, rule_id);
    bind_text(st, 2, series);
    sqlite3_bind_int(st, 3, firing ? 1 : 0);
    sqlite3_bind_int64(st, 4, last_notified_ms);
    return step_done(c, st, "rule_state_put");
}

static int sqlite_rule_states_load(void *db, rta_rule_state_cb cb, void *ud)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_RULE_STATES_LOAD, "rule_states_load");
    if (st == NULL)
        return -1;
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cb(ud, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1), sqlite3_column_int(st, 2),
               sqlite3_column_int64(st, 3)) != 0)
            goto out;
    }
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "rule_states_load", rc);
        ret = -1;
    }
out:
    stmt_done(st);
    return ret;
}

static int sqlite_trigger_insert(void *db, const rta_trigger_record *t)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_TRIGGER_INSERT, "trigger_insert");
    if (st == NULL)
        return -1;
    bind_text(st, 1, t->id);
    bind_text(st, 2, t->rule_id);
    bind_text(st, 3, t->user_id);
    bind_text(st, 4, t->series);
    bind_text(st, 5, t->state);
    sqlite3_bind_double(st, 6, t->value);
    bind_text(st, 7, t->event_id);
    sqlite3_bind_int64(st, 8, t->event_offset);
    sqlite3_bind_int64(st, 9, t->at_ms);
    bind_text(st, 10, t->payload);
    return step_done(c, st, "trigger_insert");
}

static void read_trigger(sqlite3_stmt *st, void *elem)
{
    rta_trigger_record *t = elem;
    t->id = dup_column(st, 0);
    t->rule_id = dup_column(st, 1);
    t->user_id = dup_column(st, 2);
    t->series = dup_column(st, 3);
    t->state = dup_column(st, 4);
    t->value = sqlite3_column_double(st, 5);
    t->event_id = dup_column(st, 6);
    t->event_offset = sqlite3_column_int64(st, 7);
    t->at_ms = sqlite3_column_int64(st, 8);
    t->payload = dup_column(st, 9);
}

static void free_trigger(void *elem)
{
    rta_trigger_record_free_fields(elem);
}

static int sqlite_triggers_query(void *db, const char *rule_id, int64_t before_ms, int limit,
                                 rta_trigger_record **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    limit = clamp_limit(limit);
    sqlite3_stmt *st =
        stmt_get(c, before_ms > 0 ? ST_TRIGGERS_BEFORE : ST_TRIGGERS_NEWEST, "triggers_query");
    if (st == NULL)
        return -1;
    bind_text(st, 1, rule_id);
    if (before_ms > 0)
        sqlite3_bind_int64(st, 2, before_ms);
    sqlite3_bind_int(st, 3, limit);
    void *rows;
    int ret = collect_rows(c, st, (size_t)limit, sizeof **out, read_trigger, free_trigger,
                           "triggers_query", &rows, n);
    *out = rows;
    return ret;
}

/* ---- alerts: delivery outbox ------------------------------------------------------------ */

static int sqlite_delivery_insert(void *db, const rta_delivery_record *d)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_DELIVERY_INSERT, "delivery_insert");
    if (st == NULL)
        return -1;
    bind_text(st, 1, d->id);
    bind_text(st, 2, d->trigger_id);
    bind_text(st, 3, d->rule_id);
    bind_text(st, 4, d->user_id);
    bind_text(st, 5, d->channel);
    bind_text(st, 6, d->target);
    bind_text(st, 7, d->status);
    sqlite3_bind_int(st, 8, d->attempts);
    sqlite3_bind_int64(st, 9, d->next_attempt_ms);
    sqlite3_bind_int64(st, 10, d->lease_until_ms);
    sqlite3_bind_int64(st, 11, d->created_ms);
    sqlite3_bind_int64(st, 12, d->updated_ms);
    sqlite3_bind_int64(st, 13, d->delivered_ms);
    sqlite3_bind_int(st, 14, d->last_status_code);
    bind_text(st, 15, d->last_error);
    bind_text(st, 16, d->note);
    bind_text(st, 17, d->payload);
    return step_done(c, st, "delivery_insert");
}

/* Reads a row selected with DELIVERY_COLS into an rta_delivery_record. */
static void read_delivery(sqlite3_stmt *st, void *elem)
{
    rta_delivery_record *d = elem;
    memset(d, 0, sizeof *d);
    d->id = dup_column(st, 0);
    d->trigger_id = dup_column(st, 1);
    d->rule_id = dup_column(st, 2);
    d->user_id = dup_column(st, 3);
    d->channel = dup_column(st, 4);
    d->target = dup_column(st, 5);
    d->status = dup_column(st, 6);
    d->attempts = sqlite3_column_int(st, 7);
    d->next_attempt_ms = sqlite3_column_int64(st, 8);
    d->lease_until_ms = sqlite3_column_int64(st, 9);
    d->created_ms = sqlite3_column_int64(st, 10);
    d->updated_ms = sqlite3_column_int64(st, 11);
    d->delivered_ms = sqlite3_column_int64(st, 12);
    d->last_status_code = sqlite3_column_int(st, 13);
    d->last_error = dup_column(st, 14);
    d->note = dup_column(st, 15);
    d->payload = dup_column(st, 16);
}

static void free_delivery(void *elem)
{
    rta_delivery_record_free_fields(elem);
}

/* Steps st (bound by the caller) and collects at most max deliveries into *out / *n. Resets
 * st. On error nothing is returned. */
static int collect_deliveries(sqlite_conn *c, sqlite3_stmt *st, size_t max, const char *op,
                              rta_delivery_record **out, size_t *n)
{
    void *rows;
    int ret = collect_rows(c, st, max, sizeof **out, read_delivery, free_delivery, op, &rows, n);
    *out = rows;
    return ret;
}

static int cmp_due(const void *a, const void *b)
{
    const rta_delivery_record *x = a, *y = b;
    if (x->next_attempt_ms != y->next_attempt_ms)
        return x->next_attempt_ms < y->next_attempt_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int sqlite_deliveries_claim(void *db, int64_t now_ms, int64_t lease_until_ms, size_t max,
                                   rta_delivery_record **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    if (max == 0)
        return 0;
    if (max > ALERT_LIMIT_MAX)
        max = ALERT_LIMIT_MAX;
    sqlite3_stmt *st = stmt_get(c, ST_DELIVERIES_CLAIM, "deliveries_claim");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, lease_until_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    if (collect_deliveries(c, st, max, "deliveries_claim", out, n) != 0)
        return -1;
    /* RETURNING gives no order guarantee. */
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_due);
    return 0;
}

static int sqlite_delivery_record_attempt(void *db, const rta_attempt_record *a,
                                          const char *new_status, int64_t next_attempt_ms)
{
    sqlite_conn *c = db;
    sqlite3_stmt *up = stmt_get(c, ST_DELIVERY_UPDATE_ATTEMPT, "delivery_record_attempt");
    sqlite3_stmt *ins = stmt_get(c, ST_ATTEMPT_INSERT, "delivery_record_attempt");
    if (up == NULL || ins == NULL || batch_begin(c) != 0)
        return -1;
    bind_text(up, 1, a->delivery_id);
    bind_text(up, 2, new_status);
    sqlite3_bind_int(up, 3, a->attempt);
    sqlite3_bind_int64(up, 4, next_attempt_ms);
    sqlite3_bind_int64(up, 5, a->at_ms);
    sqlite3_bind_int(up, 6, a->status_code);
    bind_text(up, 7, a->error);
    int rc = sqlite3_step(up);
    int found = sqlite3_changes(c->db) > 0;
    stmt_done(up);
    int ok = rc == SQLITE_DONE;
    if (!ok)
        log_sqlite(c, "delivery_record_attempt", rc);
    if (ok && found) {
        /* (delivery_id, attempt) is the key: a second worker recording the same attempt
         * number (its lease expired meanwhile) fails here and changes nothing. */
        bind_text(ins, 1, a->delivery_id);
        sqlite3_bind_int(ins, 2, a->attempt);
        sqlite3_bind_int64(ins, 3, a->at_ms);
        sqlite3_bind_int64(ins, 4, a->latency_ms);
        sqlite3_bind_int(ins, 5, a->status_code);
        bind_text(ins, 6, a->outcome);
        bind_text(ins, 7, a->error);
        ok = step_done(c, ins, "delivery_record_attempt") == 0;
    }
    if (!ok || !found) {
        batch_end(c, 0);
        return ok ? 1 : -1; /* not found: nothing to record */
    }
    return batch_end(c, 1);
}

static sqlite3_stmt *delivery_query_stmt(sqlite_conn *c, unsigned mask)
{
    if (c->delivery_stmt[mask] != NULL)
        return c->delivery_stmt[mask];
    char sql[768];
    size_t len =
        (size_t)snprintf(sql, sizeof sql, "SELECT " DELIVERY_COLS " FROM deliveries WHERE 1=1");
    static const struct {
        unsigned bit;
        const char *cond;
    } conds[] = {
        {DF_USER, " AND user_id = ?1"},
        {DF_RULE, " AND rule_id = ?2"},
        {DF_CHANNEL, " AND channel = ?3"},
        {DF_STATUS, " AND status = ?4"},
        {DF_SINCE, " AND created_ms >= ?5"},
        {DF_UNTIL, " AND created_ms < ?6"},
        /* Keyset cursor on (created_ms, id), written so the created_ms bound is a range. */
        {DF_BEFORE, " AND created_ms <= ?8 AND (created_ms < ?8 OR id < ?7)"},
    };
    for (size_t i = 0; i < RTA_ARRAY_LEN(conds); i++)
        if (mask & conds[i].bit)
            len += (size_t)snprintf(sql + len, sizeof sql - len, "%s", conds[i].cond);
    snprintf(sql + len, sizeof sql - len, " ORDER BY created_ms DESC, id DESC LIMIT ?9");
    return prepare_cached(c, &c->delivery_stmt[mask], sql, "deliveries_query");
}

/* created_ms of a delivery: 0, 1 = absent, -1. */
static int delivery_created(sqlite_conn *c, const char *id, int64_t *created_ms)
{
    sqlite3_stmt *st = stmt_get(c, ST_DELIVERY_CREATED, "deliveries_query");
    if (st == NULL)
        return -1;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    int ret = 1;
    if (rc == SQLITE_ROW) {
        *created_ms = sqlite3_column_int64(st, 0);
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        log_sqlite(c, "deliveries_query", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static int sqlite_deliveries_query(void *db, const rta_delivery_filter *f,
                                   rta_delivery_record **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    unsigned mask = 0;
    if (f->user_id != NULL)
        mask |= DF_USER;
    if (f->rule_id != NULL)
        mask |= DF_RULE;
    if (f->channel != NULL)
        mask |= DF_CHANNEL;
    if (f->status != NULL)
        mask |= DF_STATUS;
    if (f->since_ms > 0)
        mask |= DF_SINCE;
    if (f->until_ms > 0)
        mask |= DF_UNTIL;
    int64_t cursor_ms = 0;
    if (f->before_id != NULL) {
        int rc = delivery_created(c, f->before_id, &cursor_ms);
        if (rc != 0)
            return rc < 0 ? -1 : 0; /* unknown cursor: an empty page */
        mask |= DF_BEFORE;
    }
    int limit = clamp_limit(f->limit);
    sqlite3_stmt *st = delivery_query_stmt(c, mask);
    if (st == NULL)
        return -1;
    if (mask & DF_USER)
        bind_text(st, 1, f->user_id);
    if (mask & DF_RULE)
        bind_text(st, 2, f->rule_id);
    if (mask & DF_CHANNEL)
        bind_text(st, 3, f->channel);
    if (mask & DF_STATUS)
        bind_text(st, 4, f->status);
    if (mask & DF_SINCE)
        sqlite3_bind_int64(st, 5, f->since_ms);
    if (mask & DF_UNTIL)
        sqlite3_bind_int64(st, 6, f->until_ms);
    if (mask & DF_BEFORE) {
        bind_text(st, 7, f->before_id);
        sqlite3_bind_int64(st, 8, cursor_ms);
    }
    sqlite3_bind_int(st, 9, limit);
    return collect_deliveries(c, st, (size_t)limit, "deliveries_query", out, n);
}

static int sqlite_delivery_get(void *db, const char *id, rta_delivery_record *out)
{
    sqlite_conn *c = db;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = stmt_get(c, ST_DELIVERY_GET, "delivery_get");
    if (st == NULL)
        return -1;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    int ret = 1;
    if (rc == SQLITE_ROW) {
        read_delivery(st, out);
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        log_sqlite(c, "delivery_get", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static void read_attempt(sqlite3_stmt *st, void *elem)
{
    rta_attempt_record *a = elem;
    a->delivery_id = dup_column(st, 0);
    a->attempt = sqlite3_column_int(st, 1);
    a->at_ms = sqlite3_column_int64(st, 2);
    a->latency_ms = sqlite3_column_int64(st, 3);
    a->status_code = sqlite3_column_int(st, 4);
    a->outcome = dup_column(st, 5);
    a->error = dup_column(st, 6);
}

static void free_attempt(void *elem)
{
    rta_attempt_record_free_fields(elem);
}

static int sqlite_attempts_query(void *db, const char *delivery_id, rta_attempt_record **out,
                                 size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(c, ST_ATTEMPTS_QUERY, "attempts_query");
    if (st == NULL)
        return -1;
    bind_text(st, 1, delivery_id);
    void *rows;
    int ret = collect_rows(c, st, SIZE_MAX, sizeof **out, read_attempt, free_attempt,
                           "attempts_query", &rows, n);
    *out = rows;
    return ret;
}

static int sqlite_delivery_requeue(void *db, const char *id, int64_t now_ms)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_DELIVERY_REQUEUE, "delivery_requeue");
    if (st == NULL)
        return -1;
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(c->db) > 0;
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "delivery_requeue", rc);
        return -1;
    }
    if (changed)
        return 0;
    /* Nothing requeued: tell absent from not dead. */
    st = stmt_get(c, ST_DELIVERY_STATUS, "delivery_requeue");
    if (st == NULL)
        return -1;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 2 : 1;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        log_sqlite(c, "delivery_requeue", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static int sqlite_deliveries_for_trigger(void *db, const char *trigger_id,
                                         rta_delivery_record **out, size_t *n)
{
    sqlite_conn *c = db;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(c, ST_DELIVERIES_FOR_TRIGGER, "deliveries_for_trigger");
    if (st == NULL)
        return -1;
    bind_text(st, 1, trigger_id);
    return collect_deliveries(c, st, ALERT_LIMIT_MAX, "deliveries_for_trigger", out, n);
}

/* ---- retention ------------------------------------------------------------------------- */

/* Ids of up to max finished deliveries updated before before_ms, oldest first. */
static int prune_pick_deliveries(sqlite_conn *c, int64_t before_ms, size_t max, char ***ids,
                                 size_t *n)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(c, ST_PRUNE_DELIVERIES_PICK, "alerts_prune");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *ids = rta_xrealloc(*ids, cap * sizeof **ids);
        }
        (*ids)[(*n)++] = dup_column(st, 0);
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        log_sqlite(c, "alerts_prune", rc);
        return -1;
    }
    return 0;
}

/* Steps a DELETE bound by the caller; adds the rows it removed to *count. */
static int prune_step(sqlite_conn *c, sqlite3_stmt *st, int64_t *count)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        *count += sqlite3_changes(c->db);
    else
        log_sqlite(c, "alerts_prune", rc);
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sqlite_alerts_prune(void *db, int64_t before_ms, size_t max_rows,
                               rta_alerts_prune_counts *out)
{
    sqlite_conn *c = db;
    memset(out, 0, sizeof *out);
    if (max_rows == 0)
        max_rows = 10000;
    sqlite3_stmt *att = stmt_get(c, ST_PRUNE_ATTEMPTS, "alerts_prune");
    sqlite3_stmt *del = stmt_get(c, ST_PRUNE_DELIVERY, "alerts_prune");
    sqlite3_stmt *trig = stmt_get(c, ST_PRUNE_TRIGGERS, "alerts_prune");
    sqlite3_stmt *states = stmt_get(c, ST_PRUNE_RULE_STATES, "alerts_prune");
    if (att == NULL || del == NULL || trig == NULL || states == NULL || batch_begin(c) != 0)
        return -1;
    rta_alerts_prune_counts n = {0};
    char **ids = NULL;
    size_t nids = 0;
    int ok = prune_pick_deliveries(c, before_ms, max_rows, &ids, &nids) == 0;
    for (size_t i = 0; ok && i < nids; i++) {
        bind_text(att, 1, ids[i]);
        ok = prune_step(c, att, &n.attempts) == 0;
        if (ok) {
            bind_text(del, 1, ids[i]);
            ok = prune_step(c, del, &n.deliveries) == 0;
        }
    }
    size_t left = max_rows - nids; /* nids <= max_rows */
    if (ok && left > 0) {
        sqlite3_bind_int64(trig, 1, before_ms);
        sqlite3_bind_int64(trig, 2, (sqlite3_int64)left);
        ok = prune_step(c, trig, &n.triggers) == 0;
        left -= (size_t)n.triggers;
    }
    if (ok && left > 0) {
        sqlite3_bind_int64(states, 1, (sqlite3_int64)left);
        ok = prune_step(c, states, &n.rule_states) == 0;
        left -= (size_t)n.rule_states;
    }
    for (size_t i = 0; i < nids; i++)
        free(ids[i]);
    free(ids);
    if (batch_end(c, ok) != 0)
        return -1;
    n.more = left == 0;
    *out = n;
    return 0;
}

static int sqlite_prefs_get(void *db, const char *user_id, char **json)
{
    sqlite_conn *c = db;
    *json = NULL;
    sqlite3_stmt *st = stmt_get(c, ST_PREFS_GET, "prefs_get");
    if (st == NULL)
        return -1;
    bind_text(st, 1, user_id);
    int rc = sqlite3_step(st);
    int ret = 1;
    if (rc == SQLITE_ROW) {
        *json = dup_column(st, 0);
        if (*json == NULL)
            *json = rta_strdup("{}");
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        log_sqlite(c, "prefs_get", rc);
        ret = -1;
    }
    stmt_done(st);
    return ret;
}

static int sqlite_prefs_put(void *db, const char *user_id, const char *json)
{
    sqlite_conn *c = db;
    sqlite3_stmt *st = stmt_get(c, ST_PREFS_PUT, "prefs_put");
    if (st == NULL)
        return -1;
    bind_text(st, 1, user_id);
    bind_text(st, 2, json != NULL ? json : "{}");
    return step_done(c, st, "prefs_put");
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
    .audit_prune = sqlite_audit_prune,
    .protocols_upsert = sqlite_protocols_upsert,
    .protocols_load = sqlite_protocols_load,
    .tokens_upsert = sqlite_tokens_upsert,
    .tokens_load = sqlite_tokens_load,
    .rule_upsert = sqlite_rule_upsert,
    .rule_delete = sqlite_rule_delete,
    .rules_load = sqlite_rules_load,
    .rule_state_put = sqlite_rule_state_put,
    .rule_states_load = sqlite_rule_states_load,
    .trigger_insert = sqlite_trigger_insert,
    .triggers_query = sqlite_triggers_query,
    .delivery_insert = sqlite_delivery_insert,
    .deliveries_claim = sqlite_deliveries_claim,
    .delivery_record_attempt = sqlite_delivery_record_attempt,
    .deliveries_query = sqlite_deliveries_query,
    .delivery_get = sqlite_delivery_get,
    .attempts_query = sqlite_attempts_query,
    .delivery_requeue = sqlite_delivery_requeue,
    .deliveries_for_trigger = sqlite_deliveries_for_trigger,
    .alerts_prune = sqlite_alerts_prune,
    .prefs_get = sqlite_prefs_get,
    .prefs_put = sqlite_prefs_put,
    .kv_get = sqlite_kv_get,
    .kv_set = sqlite_kv_set,
};
