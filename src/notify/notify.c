/*
 * Notification channels: the rta_notify object and the life of one delivery attempt.
 *
 * rta_notify_send copies the request, lets the channel build a curl easy handle (webhook.c,
 * smtp.c, fcm.c), asks the host's breaker (breaker.c) and hands the handle to the multi
 * (curl_uv.c). Attempts that end without a transfer (breaker open, bad request, channel off)
 * are queued and answered from a zero-delay timer, so the callback never runs inside
 * rta_notify_send. Every attempt counts in in_flight until its callback ran; max_in_flight
 * bounds them all.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "notify/notify_internal.h"
#include "rta/log.h"
#include "rta/util.h"

static char *dup_or_null(const char *s)
{
    return s ? rta_strdup(s) : NULL;
}

/* Delivery ids end up in headers (webhook-id, Message-ID): a short token, nothing else. */
static int valid_id(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 128)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("-_.:", *s) == NULL)
            return 0;
    return 1;
}

static void list_add(notify_xfer **head, notify_xfer *x)
{
    x->prev = NULL;
    x->next = *head;
    if (*head)
        (*head)->prev = x;
    *head = x;
}

static void list_del(notify_xfer **head, notify_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        *head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void xfer_free(notify_xfer *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->rcpt);
    rta_dbuf_free(&x->resp);
    rta_dbuf_free(&x->upload);
    free((char *)x->req.delivery_id);
    free((char *)x->req.target);
    free((char *)x->req.body_json);
    free((char *)x->req.secret);
    free((char *)x->req.subject);
    free((char *)x->req.text);
    free(x);
}

/* Runs the callback and frees x (already out of every list). */
static void deliver(notify_xfer *x)
{
    rta_notify *n = x->n;
    x->res.latency_ms = (int64_t)((rta_mono_ns() - x->start_ns) / 1000000u);
    if (x->res.outcome != RTA_NOTIFY_OK && x->res.outcome != RTA_NOTIFY_BREAKER_OPEN)
        rta_log(RTA_LOG_DEBUG, "notify: attempt failed", "{s:s,s:i,s:i,s:s}", "delivery_id",
                x->req.delivery_id ? x->req.delivery_id : "", "outcome", (int)x->res.outcome,
                "status", x->res.status_code, "error", x->res.error);
    n->in_flight--;
    x->cb(x->ud, &x->res);
    xfer_free(x);
}

static void on_defer(uv_timer_t *t)
{
    rta_notify *n = t->data;
    notify_xfer *batch = n->done; /* callbacks may queue more: they go to a new batch */
    n->done = n->done_tail = NULL;
    while (batch) {
        notify_xfer *x = batch;
        list_del(&batch, x);
        deliver(x);
    }
}

static void defer(rta_notify *n, notify_xfer *x)
{
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    x->next = NULL; /* append: callbacks in the order of the sends */
    x->prev = n->done_tail;
    if (n->done_tail)
        n->done_tail->next = x;
    else
        n->done = x;
    n->done_tail = x;
    uv_timer_start(&n->defer, on_defer, 0, 0);
}

void rta__notify_finished(notify_xfer *x, CURLcode rc)
{
    rta_notify *n = x->n;
    list_del(&n->active, x);
    switch (x->req.channel) {
    case RTA_CHANNEL_WEBHOOK:
        rta__webhook_finish(x, rc);
        break;
    case RTA_CHANNEL_EMAIL:
        rta__smtp_finish(x, rc);
        break;
    case RTA_CHANNEL_PUSH:
        rta__fcm_finish(x, rc);
        break;
    }
    if (x->refused_private && x->res.outcome == RTA_NOTIFY_PERMANENT)
        rta__breaker_release(n, x->host, x->probe); /* the host never saw us */
    else
        rta__breaker_record(n, x->host, x->probe, x->res.outcome);
    deliver(x);
}

static void free_now(rta_notify *n)
{
    rta__breaker_free_all(n);
    free(n->fds);
    free(n->user_agent);
    free(n->smtp_url);
    free(n->smtp_user);
    free(n->smtp_password);
    free(n->mail_from);
    free(n->unsubscribe_url);
    free(n->fcm_base_url);
    free(n->fcm_project);
    free(n->fcm_token);
    free(n);
    curl_global_cleanup();
}

void rta__notify_handle_closed(rta_notify *n)
{
    n->open_handles--;
    if (n->closing && n->open_handles == 0)
        free_now(n);
}

rta_notify *rta_notify_new(uv_loop_t *loop, const rta_notify_options *opts)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    rta_notify *n = rta_xcalloc(1, sizeof *n);
    n->loop = loop;
    n->opts = *opts;
    if (n->opts.webhook_timeout_ms == 0)
        n->opts.webhook_timeout_ms = 10000;
    if (n->opts.breaker_failures <= 0)
        n->opts.breaker_failures = 5;
    if (n->opts.breaker_open_ms == 0)
        n->opts.breaker_open_ms = 60000;
    if (n->opts.max_in_flight == 0)
        n->opts.max_in_flight = 256;
    n->user_agent = rta_strdup(opts->user_agent ? opts->user_agent : "rta-webhooks/0.1");
    n->smtp_url = dup_or_null(opts->smtp_url);
    n->smtp_user = dup_or_null(opts->smtp_user);
    n->smtp_password = dup_or_null(opts->smtp_password);
    n->mail_from = dup_or_null(opts->mail_from);
    n->unsubscribe_url = dup_or_null(opts->unsubscribe_url);
    n->fcm_base_url =
        rta_strdup(opts->fcm_base_url ? opts->fcm_base_url : "https://fcm.googleapis.com");
    n->fcm_project = dup_or_null(opts->fcm_project);
    n->fcm_token = dup_or_null(opts->fcm_token);
    /* the copies replace the caller's pointers */
    n->opts.user_agent = n->user_agent;
    n->opts.smtp_url = n->smtp_url;
    n->opts.smtp_user = n->smtp_user;
    n->opts.smtp_password = n->smtp_password;
    n->opts.mail_from = n->mail_from;
    n->opts.unsubscribe_url = n->unsubscribe_url;
    n->opts.fcm_base_url = n->fcm_base_url;
    n->opts.fcm_project = n->fcm_project;
    n->opts.fcm_token = n->fcm_token;
    if (n->smtp_url &&
        rta__notify_url_host(n->smtp_url, n->smtp_host, sizeof n->smtp_host, NULL, 0) != 0)
        rta_log(RTA_LOG_WARN, "notify: cannot parse smtp_url", NULL);
    if (rta__notify_url_host(n->fcm_base_url, n->fcm_host, sizeof n->fcm_host, NULL, 0) != 0)
        rta_log(RTA_LOG_WARN, "notify: cannot parse fcm_base_url", NULL);

    if (rta__curl_uv_init(n) != 0) {
        free_now(n);
        return NULL;
    }
    uv_timer_init(loop, &n->defer);
    n->defer.data = n;
    n->open_handles++;
    return n;
}

static void on_defer_closed(uv_handle_t *h)
{
    rta__notify_handle_closed(h->data);
}

void rta_notify_free(rta_notify *n)
{
    if (n == NULL || n->closing)
        return;
    n->closing = true;
    while (n->active) {
        notify_xfer *x = n->active;
        list_del(&n->active, x);
        curl_multi_remove_handle(n->multi, x->easy);
        x->res.outcome = RTA_NOTIFY_RETRY;
        x->res.status_code = 0;
        snprintf(x->res.error, sizeof x->res.error, "shutdown");
        rta__breaker_release(n, x->host, x->probe);
        deliver(x);
    }
    while (n->done) { /* already decided (breaker open, refused): tell them now */
        notify_xfer *x = n->done;
        list_del(&n->done, x);
        deliver(x);
    }
    n->done_tail = NULL;
    uv_timer_stop(&n->defer);
    uv_close((uv_handle_t *)&n->defer, on_defer_closed);
    for (size_t i = 0; i < n->nfds; i++) /* no goodbyes: see on_open_socket */
        shutdown(n->fds[i], SHUT_RDWR);
    rta__curl_uv_shutdown(n);
}

int rta_notify_send(rta_notify *n, const rta_notify_request *req, rta_notify_cb cb, void *ud)
{
    if (n->closing || n->in_flight >= n->opts.max_in_flight || cb == NULL)
        return -1;
    notify_xfer *x = rta_xcalloc(1, sizeof *x);
    x->n = n;
    x->cb = cb;
    x->ud = ud;
    x->start_ns = rta_mono_ns();
    x->req = *req;
    x->req.delivery_id = dup_or_null(req->delivery_id);
    x->req.target = dup_or_null(req->target);
    x->req.body_json = dup_or_null(req->body_json);
    x->req.secret = dup_or_null(req->secret);
    x->req.subject = dup_or_null(req->subject);
    x->req.text = dup_or_null(req->text);
    x->res.outcome = RTA_NOTIFY_OK;
    x->res.retry_after_ms = -1;
    x->retry_after_ms = -1;
    rta_dbuf_init(&x->resp, NOTIFY_RESP_MAX);
    rta_dbuf_init(&x->upload, NOTIFY_BODY_MAX + 16384);
    n->in_flight++;

    int rc = -1;
    if (x->req.delivery_id == NULL || !valid_id(x->req.delivery_id) || x->req.target == NULL ||
        x->req.target[0] == '\0') {
        rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad delivery_id or no target");
        goto out;
    }
    switch (x->req.channel) {
    case RTA_CHANNEL_WEBHOOK:
        rc = rta__webhook_setup(x);
        break;
    case RTA_CHANNEL_EMAIL:
        rc = rta__smtp_setup(x);
        break;
    case RTA_CHANNEL_PUSH:
        rc = rta__fcm_setup(x);
        break;
    default:
        rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "unknown channel");
        break;
    }
    if (rc != 0)
        goto out;
    if (rta__breaker_admit(n, x->host, &x->probe) != 0) {
        x->res.outcome = RTA_NOTIFY_BREAKER_OPEN;
        snprintf(x->res.error, sizeof x->res.error, "circuit breaker open for %s", x->host);
        rc = -1;
        goto out;
    }
    if (rta__curl_uv_add(n, x) != 0) {
        rta__breaker_release(n, x->host, x->probe);
        rta__notify_fail(x, RTA_NOTIFY_RETRY, "cannot start transfer");
        rc = -1;
        goto out;
    }
    list_add(&n->active, x);
out:
    if (rc != 0)
        defer(n, x);
    return 0;
}

size_t rta_notify_in_flight(const rta_notify *n)
{
    return n->in_flight;
}

/* ---- helpers shared by the channels ---- */

int rta__notify_fail(notify_xfer *x, rta_notify_outcome o, const char *fmt, ...)
{
    x->res.outcome = o;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->res.error, sizeof x->res.error, fmt, ap);
    va_end(ap);
    return -1;
}

int rta__notify_url_host(const char *url, char *out, size_t outlen, char *scheme_out,
                         size_t schemelen)
{
    CURLU *u = curl_url();
    char *host = NULL, *scheme = NULL;
    int rc = -1;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        goto out;
    if (host[0] == '\0' || strlen(host) >= outlen)
        goto out;
    for (size_t i = 0; host[i]; i++)
        out[i] = (char)tolower((unsigned char)host[i]);
    out[strlen(host)] = '\0';
    if (scheme_out) {
        snprintf(scheme_out, schemelen, "%s", scheme);
        for (char *p = scheme_out; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    rc = 0;
out:
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

int64_t rta__notify_parse_retry_after(const char *v, int64_t now_ms)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '\0')
        return -1;
    int64_t ms;
    if (isdigit((unsigned char)*v)) {
        int64_t secs = 0;
        for (; isdigit((unsigned char)*v); v++) {
            secs = secs * 10 + (*v - '0');
            if (secs > NOTIFY_RETRY_AFTER_MAX_MS / 1000)
                secs = NOTIFY_RETRY_AFTER_MAX_MS / 1000;
        }
        while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
            v++;
        if (*v != '\0')
            return -1;
        ms = secs * 1000;
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1)
            return -1;
        ms = (int64_t)t * 1000 - now_ms;
        if (ms < 0)
            ms = 0;
    }
    return ms > NOTIFY_RETRY_AFTER_MAX_MS ? NOTIFY_RETRY_AFTER_MAX_MS : ms;
}

void rta__notify_transport_error(notify_xfer *x, CURLcode rc)
{
    x->res.outcome = RTA_NOTIFY_RETRY;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(x->res.error, sizeof x->res.error, "timeout: %s",
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    else
        snprintf(x->res.error, sizeof x->res.error, "%s",
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
}

/* Every socket curl opens comes from here: the private-address check for webhooks, and a
 * record of the fd so rta_notify_free can shut the connections down before curl closes them
 * (curl says QUIT to cached SMTP connections and blocks waiting for the answer, up to the
 * server response timeout: with the socket shut down that wait ends at once). */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    notify_xfer *x = clientp;
    rta_notify *n = x->n;
    if (x->check_address && rta__notify_addr_is_private(&addr->addr)) {
        x->refused_private = true;
        return CURL_SOCKET_BAD;
    }
    int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    if (n->nfds == n->fds_cap) {
        n->fds_cap = n->fds_cap ? n->fds_cap * 2 : 16;
        n->fds = rta_xrealloc(n->fds, n->fds_cap * sizeof *n->fds);
    }
    n->fds[n->nfds++] = fd;
    return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd)
{
    rta_notify *n = clientp; /* not the transfer: cached connections outlive it */
    for (size_t i = 0; i < n->nfds; i++) {
        if (n->fds[i] == fd) {
            n->fds[i] = n->fds[--n->nfds];
            break;
        }
    }
    return close(fd);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    notify_xfer *x = ud;
    size_t len = size * nmemb;
    size_t room = x->resp.max - x->resp.len;
    (void)rta_dbuf_append(&x->resp, data, len < room ? len : room); /* the rest is dropped */
    return len;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    notify_xfer *x = ud;
    size_t len = size * nmemb;
    static const char name[] = "retry-after:";
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        x->retry_after_ms = -1; /* a new response (after 100 Continue) */
    } else if (len > sizeof name - 1 && len < 256 &&
               strncasecmp(data, name, sizeof name - 1) == 0) {
        char v[256];
        memcpy(v, data + sizeof name - 1, len - (sizeof name - 1));
        v[len - (sizeof name - 1)] = '\0';
        x->retry_after_ms = rta__notify_parse_retry_after(v, rta_now_ms());
    }
    return len;
}

CURL *rta__notify_easy_new(notify_xfer *x, const char *url)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    rta_notify *n = x->n;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through a proxy from the environment */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)n->opts.webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)n->opts.webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_USERAGENT, n->user_agent);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, n);
    x->easy = e;
    return e;
}
