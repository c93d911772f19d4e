/*
 * Durable storage: the interface every backend implements (SQLite now, PostgreSQL later), and
 * the executor that runs storage work off the event loop.
 *
 * Backends implement rta_store_ops: plain synchronous functions on their own connection
 * handle. Callers never block the loop on them: they package work in an rta_store_job, which
 * the store's worker thread runs (job->work, calling s->ops on s->db) and whose job->done then
 * runs on the loop thread. Before rta_store_start() (startup, CLI commands) the caller may use
 * s->ops on s->db directly from its own thread.
 *
 * All functions return 0 on success and -1 on error (the backend logs the cause) unless
 * stated otherwise. Strings in records returned by *_list/_query are owned by the record;
 * free with the matching *_free helper. Records passed to *_load callbacks (and their
 * strings) are valid only during the callback; copy what you keep.
 */
#ifndef RTA_STORE_H
#define RTA_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct rta_key_record {
    char *id; /* public part, e.g. "k_3f9a1c2b7d4e5f60" */
    char *user_id;
    char *tier;                    /* "free" | "pro" | "enterprise" */
    char *role;                    /* "user" | "admin" | "ingest" ... */
    char *label;                   /* may be NULL */
    unsigned char secret_hash[32]; /* SHA-256 of the secret part */
    int64_t created_ms;
    int64_t revoked_ms; /* 0 = active */
} rta_key_record;
void rta_key_record_free_fields(rta_key_record *k);

typedef struct rta_audit_entry {
    int64_t id; /* assigned by the store */
    int64_t time_ms;
    char *actor;      /* key id, "system", "cli" */
    char *action;     /* "key.create", "key.revoke", "ingest.batch", "config.reload", ... */
    char *target;     /* may be NULL */
    char *request_id; /* may be NULL */
    char *source_ip;  /* may be NULL */
    json_t *details;  /* object or NULL; owned */
} rta_audit_entry;
void rta_audit_entry_free_fields(rta_audit_entry *e);

typedef struct rta_audit_filter {
    const char *actor;  /* NULL = any */
    const char *action; /* exact, or prefix when it ends with '*' ("key.*") */
    const char *target;
    int64_t since_ms;  /* 0 = no bound */
    int64_t until_ms;  /* 0 = no bound */
    int64_t before_id; /* cursor: only ids < this; 0 = from the newest */
    int limit;         /* 1..1000 */
} rta_audit_filter;

/* One persisted value: kind 0 = TVL of (key1 = protocol, key2 = chain), kind 1 = price of
 * (key1 = token, key2 = ""). */
typedef struct rta_point {
    int kind;
    const char *key1;
    const char *key2;
    double value;
    int64_t ts_ms;
} rta_point;

typedef struct rta_protocol_meta {
    const char *slug, *name, *category;
} rta_protocol_meta;

typedef struct rta_token_meta {
    const char *id, *symbol;
    double confidence;
} rta_token_meta;

/* ---- alerts (migration 2) ---- */

/* One firing or resolution of a rule for one series. */
typedef struct rta_trigger_record {
    char *id; /* UUIDv7 */
    char *rule_id;
    char *user_id;
    char *series; /* "tvl:uniswap-v3:ethereum", "price:coingecko:ethereum" */
    char *state;  /* "firing" | "resolved" */
    double value;
    char *event_id;
    int64_t event_offset;
    int64_t at_ms;
    char *payload; /* JSON text: the event and rule summary */
} rta_trigger_record;
void rta_trigger_record_free_fields(rta_trigger_record *t);

/* One notification to one target; keeps its id across retries. */
typedef struct rta_delivery_record {
    char *id; /* UUIDv7: webhook-id, Message-ID seed */
    char *trigger_id;
    char *rule_id;
    char *user_id;
    char *channel; /* "email" | "webhook" | "push" */
    char *target;
    char *status; /* "pending" | "delivered" | "dead" | "suppressed" | "disabled" */
    int attempts;
    int64_t next_attempt_ms;
    int64_t lease_until_ms; /* 0 = not leased */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t delivered_ms; /* 0 until delivered */
    int last_status_code; /* HTTP or SMTP code of the last attempt, 0 = none */
    char *last_error;     /* may be NULL */
    char *note;           /* why suppressed ("quiet hours", "channel disabled"), may be NULL */
    char *payload;        /* JSON text: everything the sender needs (subject, body, secret...) */
} rta_delivery_record;
void rta_delivery_record_free_fields(rta_delivery_record *d);

typedef struct rta_attempt_record {
    char *delivery_id;
    int attempt; /* 1-based */
    int64_t at_ms;
    int64_t latency_ms;
    int status_code; /* 0 = no answer */
    char *outcome;   /* "success" | "retry" | "dead" | "disabled" */
    char *error;     /* may be NULL */
} rta_attempt_record;
void rta_attempt_record_free_fields(rta_attempt_record *a);

typedef struct rta_delivery_filter {
    const char *user_id; /* NULL = any (admin) */
    const char *rule_id;
    const char *channel;
    const char *status;
    int64_t since_ms, until_ms; /* 0 = no bound (on created_ms) */
    const char *before_id;      /* cursor: deliveries created before this one; NULL = newest */
    int limit;                  /* 1..1000 */
} rta_delivery_filter;

/* What one alerts_prune call deleted. */
typedef struct rta_alerts_prune_counts {
    int64_t deliveries;  /* finished deliveries */
    int64_t attempts;    /* their attempt rows */
    int64_t triggers;    /* triggers no delivery references any more */
    int64_t rule_states; /* state rows of rules that no longer exist */
    int more;            /* the row budget was used up: there may be more to delete */
} rta_alerts_prune_counts;

typedef int (*rta_rule_cb)(void *ud, const char *rule_id, const char *user_id,
                           const char *body_json);
typedef int (*rta_rule_state_cb)(void *ud, const char *rule_id, const char *series, int firing,
                                 int64_t last_notified_ms);

typedef int (*rta_point_cb)(void *ud, const rta_point *p); /* non-zero stops */
typedef int (*rta_protocol_meta_cb)(void *ud, const rta_protocol_meta *m);
typedef int (*rta_token_meta_cb)(void *ud, const rta_token_meta *m);

typedef struct rta_store_ops {
    const char *name; /* "sqlite", "postgres" */
    /* target: a file path (sqlite) or a connection string (postgres). *err: malloc'd text. */
    int (*open)(const char *target, void **db, char **err);
    void (*close)(void *db);
    int (*migrate)(void *db, char **err); /* idempotent, versioned */
    int (*ping)(void *db);
    int (*begin)(void *db);
    int (*commit)(void *db);
    int (*rollback)(void *db);

    int (*user_ensure)(void *db, const char *user_id, int64_t now_ms);
    int (*key_insert)(void *db, const rta_key_record *k);
    int (*key_list)(void *db, rta_key_record **out, size_t *n);   /* all keys, oldest first */
    int (*key_revoke)(void *db, const char *id, int64_t when_ms); /* 0, 1 = no such active key */
    int (*key_count)(void *db, int64_t *n);                       /* active keys */

    int (*audit_append)(void *db, const rta_audit_entry *e);
    int (*audit_query)(void *db, const rta_audit_filter *f, rta_audit_entry **out, size_t *n);
    /* Deletes at most max_rows audit entries older than before_ms, oldest first; *deleted
     * says how many (max_rows of them: call again). */
    int (*audit_prune)(void *db, int64_t before_ms, size_t max_rows, int64_t *deleted);

    int (*points_append)(void *db, const rta_point *p, size_t n);
    int (*points_load)(void *db, int64_t since_ms, rta_point_cb cb, void *ud); /* ts order */
    int (*points_prune)(void *db, int64_t before_ms);
    int (*protocols_upsert)(void *db, const rta_protocol_meta *m, size_t n);
    int (*protocols_load)(void *db, rta_protocol_meta_cb cb, void *ud);
    int (*tokens_upsert)(void *db, const rta_token_meta *m, size_t n);
    int (*tokens_load)(void *db, rta_token_meta_cb cb, void *ud);

    /* ---- alerts ---- */
    /* Rules are stored as their JSON (rta_alert_rule_to_storage) plus indexed columns. */
    int (*rule_upsert)(void *db, const char *rule_id, const char *user_id, const char *body_json,
                       int is_active, int64_t created_ms, int64_t updated_ms);
    int (*rule_delete)(void *db, const char *rule_id); /* 0, 1 = no such rule */
    int (*rules_load)(void *db, rta_rule_cb cb, void *ud);
    int (*rule_state_put)(void *db, const char *rule_id, const char *series, int firing,
                          int64_t last_notified_ms);
    int (*rule_states_load)(void *db, rta_rule_state_cb cb, void *ud);
    int (*trigger_insert)(void *db, const rta_trigger_record *t);
    /* Triggers of a rule, newest first, at_ms < before_ms (0 = newest). */
    int (*triggers_query)(void *db, const char *rule_id, int64_t before_ms, int limit,
                          rta_trigger_record **out, size_t *n);
    int (*delivery_insert)(void *db, const rta_delivery_record *d);
    /* Leases up to max pending deliveries due at now_ms whose lease is free or expired:
     * sets lease_until_ms and returns them, oldest due first. */
    int (*deliveries_claim)(void *db, int64_t now_ms, int64_t lease_until_ms, size_t max,
                            rta_delivery_record **out, size_t *n);
    /* Records one attempt and updates the delivery: status (pending for a retry, delivered,
     * dead, disabled), attempts = a->attempt, next_attempt_ms, last status/error, lease
     * cleared, delivered_ms = a->at_ms when delivered. Atomic. 1 = no such delivery; -1 also
     * when that attempt number is already recorded (a second worker after a lease expiry). */
    int (*delivery_record_attempt)(void *db, const rta_attempt_record *a, const char *new_status,
                                   int64_t next_attempt_ms);
    int (*deliveries_query)(void *db, const rta_delivery_filter *f, rta_delivery_record **out,
                            size_t *n);
    int (*delivery_get)(void *db, const char *id, rta_delivery_record *out); /* 1 = absent */
    int (*attempts_query)(void *db, const char *delivery_id, rta_attempt_record **out, size_t *n);
    /* dead -> pending now (attempt count kept). 0, 1 = absent, 2 = not dead. */
    int (*delivery_requeue)(void *db, const char *id, int64_t now_ms);
    /* Every delivery of a trigger (history view). */
    int (*deliveries_for_trigger)(void *db, const char *trigger_id, rta_delivery_record **out,
                                  size_t *n);
    /* Retention, in one transaction (a savepoint: also fine inside begin/commit). Deletes, in
     * this order and within a budget of max_rows rows (attempt rows not counted; 0 = 10000):
     * deliveries in a final status (delivered, dead, suppressed, disabled) last updated before
     * before_ms, oldest first, with their attempts; triggers with at_ms < before_ms that no
     * delivery references any more; alert_rule_state rows whose rule no longer exists.
     * Pending deliveries (due, retrying or leased) and the triggers they reference are never
     * touched. *out (zeroed first) says what was deleted; out->more when the budget ran out. */
    int (*alerts_prune)(void *db, int64_t before_ms, size_t max_rows, rta_alerts_prune_counts *out);
    int (*prefs_get)(void *db, const char *user_id, char **json); /* 1 = absent */
    int (*prefs_put)(void *db, const char *user_id, const char *json);

    /* Small key/value table for process state (last event offset, schema notes). */
    int (*kv_get)(void *db, const char *key, char **value); /* 1 = absent */
    int (*kv_set)(void *db, const char *key, const char *value);
} rta_store_ops;

extern const rta_store_ops rta_store_sqlite_ops;

typedef struct rta_store rta_store;

typedef struct rta_store_job {
    /* Runs on the store thread: use s->ops with s->db. Sets job->status as it likes. */
    void (*work)(rta_store *s, struct rta_store_job *job);
    /* Runs on the loop thread after work; owns the job (free it here). May be NULL. */
    void (*done)(struct rta_store_job *job);
    int status;
    uint64_t queued_ns; /* set by submit (monotonic ns); when work starts the store thread
                           turns it into the time the job waited in the queue */
    uint64_t work_ns;   /* time spent in work */
    const char *op;     /* label for metrics, e.g. "key_insert" */
    struct rta_store_job *next;
} rta_store_job;

struct rta_store {
    const rta_store_ops *ops;
    void *db;
    /* private below */
    void *priv;
};

/* Opens the backend named by kind ("sqlite") on target, runs migrations. NULL + *err. */
rta_store *rta_store_open(const char *kind, const char *target, char **err);
/* Starts the worker thread; done callbacks run on loop. max_queue bounds pending jobs (from
 * submit until their done callback has run). Call once, on the loop thread. */
int rta_store_start(rta_store *s, uv_loop_t *loop, size_t max_queue);
/* Queues a job. Returns 0, or -1 when the queue is full (the caller answers 503), the store
 * was not started, or it is closing. Loop thread only. */
int rta_store_submit(rta_store *s, rta_store_job *job);
/* For work that must not be lost once decided (alert triggers): may use up to 4x max_queue,
 * so ordinary traffic filling the queue cannot crowd it out. Same returns. */
int rta_store_submit_critical(rta_store *s, rta_store_job *job);
/* Jobs queued and not yet done. */
size_t rta_store_pending(const rta_store *s);
/* Runs every queued job, stops the thread (done callbacks of the last jobs run from here, on
 * the calling loop thread), closes the backend and frees s. The async handle is uv_close()d
 * and freed in its close callback: run the loop once more (uv_run) before uv_loop_close.
 * Not from a store done callback or the observer. */
void rta_store_close(rta_store *s);

/* Per-op latency observer, called on the loop thread for each finished job, before its done
 * callback: queued_ns = time waiting in the queue, work_ns = time in work. */
typedef void (*rta_store_observer)(void *ud, const char *op, int status, uint64_t queued_ns,
                                   uint64_t work_ns);
void rta_store_set_observer(rta_store *s, rta_store_observer fn, void *ud);

/* Fire-and-forget audit append through the executor (entry fields are copied). Returns -1
 * when the queue is full (logged). Safe only on the loop thread after rta_store_start; before
 * it, writes synchronously. */
int rta_store_audit(rta_store *s, const char *actor, const char *action, const char *target,
                    const char *request_id, const char *source_ip, json_t *details /* stolen */);

#endif
