/*
 * Notification channels on the event loop: webhooks (HTTP POST, Standard Webhooks signatures),
 * email (SMTP with STARTTLS or implicit TLS) and mobile push (FCM HTTP v1), all through one
 * libcurl multi handle driven by libuv (curl_multi_socket_action + uv_poll/uv_timer).
 *
 * The caller (the outbox worker) hands one delivery attempt at a time per request and gets
 * one result back; retries, backoff and persistence are the caller's. This module owns:
 * transfers, timeouts, classification of answers (success / retry / permanent / disable
 * target), Retry-After parsing, a circuit breaker per destination host (spec 4.4.1: 5
 * consecutive failures open it for 60 s, then one half-open probe), refusal of private and
 * loopback addresses unless allowed, and no redirects.
 */
#ifndef RTA_NOTIFY_H
#define RTA_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct rta_notify rta_notify;

typedef struct rta_notify_options {
    /* webhooks */
    uint64_t webhook_timeout_ms; /* default 10000; also the SMTP and FCM transfer timeout */
    bool allow_private_targets;  /* loopback/private/link-local (tests allow loopback) */
    const char *user_agent;      /* default "rta-webhooks/0.1" */
    /* email */
    const char *smtp_url; /* "smtp://host:port" or "smtps://host:port"; NULL = off */
    bool smtp_starttls;   /* require STARTTLS on smtp:// */
    bool smtp_insecure;   /* skip certificate checks (test servers) */
    const char *smtp_user, *smtp_password;
    const char *mail_from; /* "rta <alerts@example.com>" */
    const char
        *unsubscribe_url; /* List-Unsubscribe base, e.g. "https://host/v1/users/me/preferences" */
    /* push */
    const char *fcm_base_url; /* default "https://fcm.googleapis.com" */
    const char *fcm_project;  /* NULL = push off */
    const char *fcm_token;    /* bearer token */
    /* breaker */
    int breaker_failures;     /* default 5 */
    uint64_t breaker_open_ms; /* default 60000 */
    size_t max_in_flight;     /* concurrent transfers (default 256) */
} rta_notify_options;

typedef enum {
    RTA_CHANNEL_EMAIL = 0,
    RTA_CHANNEL_WEBHOOK,
    RTA_CHANNEL_PUSH,
} rta_channel;

typedef struct rta_notify_request {
    rta_channel channel;
    const char *delivery_id; /* webhook-id; Message-ID is derived from it */
    const char *target;      /* URL, address, device token */
    int attempt;             /* 1-based */
    int64_t timestamp_s;     /* webhook-timestamp; email Date */
    /* webhook */
    const char *body_json; /* the POST body */
    const char *secret;    /* "whsec_<base64>" */
    /* email and push */
    const char *subject;
    const char *text;
} rta_notify_request;

typedef enum {
    RTA_NOTIFY_OK = 0,         /* 2xx / 250 / FCM name */
    RTA_NOTIFY_RETRY,          /* timeouts, connection errors, 429, 5xx, SMTP 4xx */
    RTA_NOTIFY_PERMANENT,      /* other 4xx, SMTP 5xx, refused target: dead, no retry */
    RTA_NOTIFY_DISABLE_TARGET, /* webhook 410, FCM UNREGISTERED / INVALID_ARGUMENT token */
    RTA_NOTIFY_BREAKER_OPEN,   /* not attempted: the host's breaker is open (retry later) */
} rta_notify_outcome;

typedef struct rta_notify_result {
    rta_notify_outcome outcome;
    int status_code;        /* HTTP or SMTP code, 0 when none */
    int64_t retry_after_ms; /* from Retry-After, -1 when absent */
    int64_t latency_ms;
    char error[256]; /* "" on success */
} rta_notify_result;

typedef void (*rta_notify_cb)(void *ud, const rta_notify_result *r);

rta_notify *rta_notify_new(uv_loop_t *loop, const rta_notify_options *opts);
/* Aborts transfers (callbacks run with RETRY, error "shutdown", before it returns) and frees
 * once handles close (run the loop). Not from inside an rta_notify callback. */
void rta_notify_free(rta_notify *n);
/* Starts one attempt; the request is copied. 0, or -1 when max_in_flight transfers run
 * (try later). cb runs on the loop, exactly once. */
int rta_notify_send(rta_notify *n, const rta_notify_request *req, rta_notify_cb cb, void *ud);
size_t rta_notify_in_flight(const rta_notify *n);

/* Breaker states for metrics: calls fn(host, state) with state 0 closed, 1 open, 2 half-open. */
void rta_notify_each_breaker(rta_notify *n, void (*fn)(void *ud, const char *host, int state),
                             void *ud);

/* Standard Webhooks signature: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" where key is
 * the base64-decoded part after "whsec_". out needs 128 bytes. 0 or -1 (bad secret). */
int rta_webhook_sign(const char *secret, const char *id, int64_t timestamp_s, const char *body,
                     size_t body_len, char *out, size_t outlen);
/* A new "whsec_" + base64 of 24 random bytes. out needs 64 bytes. */
void rta_webhook_secret_new(char *out, size_t outlen);

#endif
