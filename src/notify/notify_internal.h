/*
 * Internals shared by the notify sources: the rta_notify object, one transfer (notify_xfer),
 * the per-channel hooks (setup builds the curl easy handle, finish classifies the answer) and
 * the breaker table. Not a public contract: only src/notify/ and its unit test include this.
 */
#ifndef RTA_NOTIFY_INTERNAL_H
#define RTA_NOTIFY_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "rta/buf.h"
#include "rta/notify.h"

#define NOTIFY_RESP_MAX (64 * 1024)   /* response bytes kept (the rest is read, dropped) */
#define NOTIFY_BODY_MAX (1024 * 1024) /* webhook body / push text / email message cap */
#define NOTIFY_HOST_MAX 256
#define NOTIFY_BREAKERS_MAX 10000 /* hosts tracked at once (beyond: not tracked) */
#define NOTIFY_RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

typedef struct notify_breaker notify_breaker;
typedef struct notify_sock notify_sock;
typedef struct notify_xfer notify_xfer;

struct rta_notify {
    uv_loop_t *loop;
    rta_notify_options opts; /* strings below are owned copies */
    char *user_agent, *smtp_url, *smtp_user, *smtp_password, *mail_from, *unsubscribe_url;
    char *fcm_base_url, *fcm_project, *fcm_token;
    char smtp_host[NOTIFY_HOST_MAX], fcm_host[NOTIFY_HOST_MAX];
    CURLM *multi;
    uv_timer_t timer;              /* curl's timeout */
    uv_timer_t defer;              /* runs callbacks of transfers finished without curl */
    size_t open_handles;           /* uv handles not yet closed (timer, defer, polls) */
    notify_sock *socks;            /* every socket curl told us about */
    notify_xfer *active;           /* transfers inside curl */
    notify_xfer *done, *done_tail; /* finished without curl, callback pending (FIFO) */
    size_t in_flight;              /* active + done */
    int *fds;                      /* sockets curl opened and has not closed yet */
    size_t nfds, fds_cap;
    notify_breaker *breakers; /* uthash by host */
    size_t nbreakers;
    bool closing;
};

struct notify_xfer {
    rta_notify *n;
    CURL *easy;
    rta_notify_request req; /* string members point into owned copies */
    rta_notify_cb cb;
    void *ud;
    rta_notify_result res;
    char host[NOTIFY_HOST_MAX]; /* breaker key, "" = none */
    bool probe;                 /* the half-open probe of its host */
    bool check_address;         /* refuse private addresses (webhooks) */
    bool refused_private;       /* the open-socket hook refused an address */
    struct curl_slist *headers, *rcpt;
    rta_dbuf resp;   /* response body, capped at NOTIFY_RESP_MAX */
    rta_dbuf upload; /* request body / email message */
    size_t upload_off;
    int64_t retry_after_ms;
    uint64_t start_ns;
    char errbuf[CURL_ERROR_SIZE];
    notify_xfer *prev, *next;
};

/* Channel hooks. setup: fills x->host and x->easy (options set, not added); on failure sets
 * x->res (PERMANENT + error) and returns -1. finish: classifies into x->res. */
int rta__webhook_setup(notify_xfer *x);
void rta__webhook_finish(notify_xfer *x, CURLcode rc);
int rta__smtp_setup(notify_xfer *x);
void rta__smtp_finish(notify_xfer *x, CURLcode rc);
int rta__fcm_setup(notify_xfer *x);
void rta__fcm_finish(notify_xfer *x, CURLcode rc);

/* Shared easy-handle setup: private pointer, error buffer, timeouts, no redirects, no proxy,
 * capped response body, Retry-After capture. Returns the handle or NULL. */
CURL *rta__notify_easy_new(notify_xfer *x, const char *url);
/* Sets x->res to PERMANENT with the error text; returns -1 (for setup hooks). */
int rta__notify_fail(notify_xfer *x, rta_notify_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Lower-case host of url into out; 0, or -1 when the URL does not parse or has no host.
 * scheme_out (may be NULL) receives the lower-case scheme. */
int rta__notify_url_host(const char *url, char *out, size_t outlen, char *scheme_out,
                         size_t schemelen);
/* Retry-After value (delta-seconds or HTTP-date) in ms from now, -1 when unparseable. */
int64_t rta__notify_parse_retry_after(const char *v, int64_t now_ms);
/* Transport error text for rc into x->res.error (uses the curl error buffer when set). */
void rta__notify_transport_error(notify_xfer *x, CURLcode rc);

/* curl_uv.c: the multi handle on the loop. init creates n->multi and the timer; add starts
 * x (0 or -1); shutdown cleans the multi up and closes every uv handle it owns. */
int rta__curl_uv_init(rta_notify *n);
int rta__curl_uv_add(rta_notify *n, notify_xfer *x);
void rta__curl_uv_shutdown(rta_notify *n);
/* notify.c: a transfer inside curl finished with rc: classify, breaker, callback, free. */
void rta__notify_finished(notify_xfer *x, CURLcode rc);
/* A uv handle of n closed; frees n when it is closing and nothing is left open. */
void rta__notify_handle_closed(rta_notify *n);

/* 1 when the address is loopback, private, link-local, unspecified, multicast or reserved
 * (IPv4 and IPv6, including IPv4-mapped and NAT64/6to4 embeddings of such addresses). */
int rta__notify_addr_is_private(const struct sockaddr *sa);

/* Breaker, keyed by host. admit: 0 = go (*probe set when this is the half-open probe),
 * -1 = open. record: the outcome of an admitted attempt. release: an admitted attempt that
 * ended without an answer from the host (shutdown, refused address). */
int rta__breaker_admit(rta_notify *n, const char *host, bool *probe);
void rta__breaker_record(rta_notify *n, const char *host, bool probe, rta_notify_outcome o);
void rta__breaker_release(rta_notify *n, const char *host, bool probe);
void rta__breaker_free_all(rta_notify *n);

#endif
