/*
 * Unit tests for src/notify/: real transfers against real local servers.
 *
 * HTTP (webhooks, FCM): the project's own rta_net + rta_http_server on 127.0.0.1:0 in this
 * process and on the same loop; its handler records each request and answers from a script
 * (status, Retry-After, Location, body, or hold the request unanswered). SMTP: a small
 * scripted SMTP responder on a blocking socket in a thread (curl closes cached SMTP
 * connections with a QUIT it waits for, so the responder must not share our loop).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "notify/notify_internal.h"
#include "rta/http.h"
#include "rta/log.h"
#include "rta/net.h"
#include "rta/notify.h"
#include "rta/util.h"
#include <openssl/evp.h>

#define TS 1614265330 /* Thu, 25 Feb 2021 15:02:10 +0000 */
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define MAX_HELD 8

typedef struct {
    int status;
    const char *retry_after;
    const char *location;
    const char *body;
    int hold;
} script;

typedef struct {
    uv_loop_t loop;
    rta_net *net;
    rta_http_server *http;
    int port;
    rta_notify *n;
    uv_timer_t guard, sleeper;
    int guard_fired, slept;
    /* scripted answers */
    script sc;
    rta_http_req *held[MAX_HELD];
    int nheld;
    /* last request seen */
    int requests;
    char method[16], path[256], body[8192];
    char h_ct[128], h_ua[128], h_id[128], h_ts[64], h_sig[160], h_auth[256];
    /* results */
    int done;
    rta_notify_result res[32];
} harness;

static harness H;

/* ---- HTTP server side ---- */

static void copy_header(const rta_http_req *req, const char *name, char *out, size_t outlen)
{
    const char *v = rta_http_header_get(req, name);
    snprintf(out, outlen, "%s", v ? v : "");
}

static void on_request(void *ud, rta_http_req *req)
{
    H.requests++;
    snprintf(H.method, sizeof H.method, "%s", req->method);
    snprintf(H.path, sizeof H.path, "%s", req->url);
    snprintf(H.body, sizeof H.body, "%.*s", (int)req->body_len, req->body ? req->body : "");
    copy_header(req, "Content-Type", H.h_ct, sizeof H.h_ct);
    copy_header(req, "User-Agent", H.h_ua, sizeof H.h_ua);
    copy_header(req, "webhook-id", H.h_id, sizeof H.h_id);
    copy_header(req, "webhook-timestamp", H.h_ts, sizeof H.h_ts);
    copy_header(req, "webhook-signature", H.h_sig, sizeof H.h_sig);
    copy_header(req, "Authorization", H.h_auth, sizeof H.h_auth);
    if (H.sc.hold) {
        assert_true(H.nheld < MAX_HELD);
        H.held[H.nheld++] = req;
        return;
    }
    if (H.sc.retry_after)
        rta_http_add_header(req, "Retry-After", H.sc.retry_after);
    if (H.sc.location)
        rta_http_add_header(req, "Location", H.sc.location);
    const char *body = H.sc.body ? H.sc.body : "{}";
    rta_http_send(req, H.sc.status, "application/json", body, strlen(body));
}

static void on_accept(void *ud, rta_conn *c)
{
    rta_http_server_accept(H.http, c);
}

static void release_held(void)
{
    for (int i = 0; i < H.nheld; i++)
        rta_http_send(H.held[i], 200, "application/json", "{}", 2);
    H.nheld = 0;
}

static int setup(void **state)
{
    memset(&H, 0, sizeof H);
    rta_log_set_level(RTA_LOG_ERROR);
    assert_int_equal(uv_loop_init(&H.loop), 0);
    rta_http_limits lim = {
        .max_header_bytes = 16384,
        .max_body_bytes = 65536,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
    };
    H.http = rta_http_server_new(&lim, on_request, NULL);
    H.net = rta_net_new(&H.loop, 64, on_accept, NULL);
    assert_int_equal(rta_net_listen(H.net, "127.0.0.1", 0, NULL), 0);
    H.port = rta_net_bound_port(H.net);
    uv_timer_init(&H.loop, &H.guard);
    uv_timer_init(&H.loop, &H.sleeper);
    H.sc.status = 200;
    return 0;
}

static void free_notify(void)
{
    if (H.n) {
        rta_notify_free(H.n);
        H.n = NULL;
        for (int i = 0; i < 20; i++) /* let the close callbacks run */
            uv_run(&H.loop, UV_RUN_NOWAIT);
    }
}

static int teardown(void **state)
{
    free_notify();
    release_held();
    uv_close((uv_handle_t *)&H.guard, NULL);
    uv_close((uv_handle_t *)&H.sleeper, NULL);
    rta_net_stop_listening(H.net);
    rta_net_close_all(H.net);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    rta_net_free(H.net);
    rta_http_server_free(H.http);
    assert_int_equal(uv_loop_close(&H.loop), 0);
    return 0;
}

/* ---- client helpers ---- */

static void on_guard(uv_timer_t *t)
{
    H.guard_fired = 1;
}

static void on_sleep(uv_timer_t *t)
{
    H.slept = 1;
}

/* Runs the loop until `target` callbacks arrived (fails after 15 s). */
static void wait_done(int target)
{
    H.guard_fired = 0;
    uv_timer_start(&H.guard, on_guard, 15000, 0);
    while (H.done < target && !H.guard_fired)
        uv_run(&H.loop, UV_RUN_ONCE);
    uv_timer_stop(&H.guard);
    assert_false(H.guard_fired);
    assert_int_equal(H.done, target);
}

static void sleep_ms(uint64_t ms)
{
    H.slept = 0;
    uv_timer_start(&H.sleeper, on_sleep, ms, 0);
    while (!H.slept)
        uv_run(&H.loop, UV_RUN_ONCE);
}

static void on_result(void *ud, const rta_notify_result *r)
{
    assert_true(H.done < (int)RTA_ARRAY_LEN(H.res));
    H.res[H.done++] = *r;
}

static rta_notify_options base_opts(void)
{
    rta_notify_options o = {0};
    o.allow_private_targets = true;
    o.webhook_timeout_ms = 5000;
    return o;
}

static void make_notify(const rta_notify_options *o)
{
    H.n = rta_notify_new(&H.loop, o);
    assert_non_null(H.n);
}

static char url_buf[256];

static const char *url(const char *path)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d%s", H.port, path);
    return url_buf;
}

static rta_notify_request webhook_req(const char *target)
{
    rta_notify_request r = {
        .channel = RTA_CHANNEL_WEBHOOK,
        .delivery_id = "msg_p5jXN8AQM9LWM0D4loKWxJek",
        .target = target,
        .attempt = 1,
        .timestamp_s = TS,
        .body_json = "{\"test\": 2432232314}",
        .secret = SECRET,
    };
    return r;
}

/* Sends one webhook with the server answering `sc`; returns the result. */
static rta_notify_result webhook_with(script sc)
{
    H.sc = sc;
    int before = H.done;
    rta_notify_request r = webhook_req(url("/hook"));
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    assert_int_equal(H.done, before); /* never synchronous */
    wait_done(before + 1);
    return H.res[before];
}

/* ---- signatures, address ranges, Retry-After ---- */

static void test_sign_vector(void **state)
{
    char out[128];
    const char *body = "{\"test\": 2432232314}";
    assert_int_equal(rta_webhook_sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", TS, body,
                                      strlen(body), out, sizeof out),
                     0);
    assert_string_equal(out, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* the timestamp is signed */
    assert_int_equal(rta_webhook_sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", TS + 1, body,
                                      strlen(body), out, sizeof out),
                     0);
    assert_string_not_equal(out, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_int_equal(
        rta_webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id", TS, "", 0, out, sizeof out),
        -1); /* no prefix */
    assert_int_equal(rta_webhook_sign("whsec_!!!!", "id", TS, "", 0, out, sizeof out), -1);
    assert_int_equal(rta_webhook_sign("whsec_", "id", TS, "", 0, out, sizeof out), -1);
    assert_int_equal(rta_webhook_sign(NULL, "id", TS, "", 0, out, sizeof out), -1);

    char s1[64], s2[64];
    rta_webhook_secret_new(s1, sizeof s1);
    rta_webhook_secret_new(s2, sizeof s2);
    assert_int_equal(strncmp(s1, "whsec_", 6), 0);
    assert_int_equal(strlen(s1), 6 + 32);
    assert_string_not_equal(s1, s2);
    assert_int_equal(rta_webhook_sign(s1, "id", TS, "x", 1, out, sizeof out), 0);
    assert_int_equal(strlen(out), 3 + 44);
}

static int is_private(const char *ip)
{
    struct sockaddr_storage ss = {0};
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return rta__notify_addr_is_private((struct sockaddr *)&ss);
}

static void test_private_ranges(void **state)
{
    const char *priv[] = {"127.0.0.1",
                          "127.255.0.9",
                          "10.1.2.3",
                          "172.16.0.1",
                          "172.31.255.255",
                          "192.168.1.1",
                          "169.254.169.254",
                          "0.0.0.0",
                          "100.64.0.1",
                          "224.0.0.1",
                          "255.255.255.255",
                          "::",
                          "::1",
                          "fe80::1",
                          "fc00::1",
                          "fd12:3456::1",
                          "ff02::1",
                          "::ffff:127.0.0.1",
                          "::ffff:10.0.0.1",
                          "64:ff9b::a9fe:a9fe",
                          "2002:c0a8:0101::1"};
    const char *pub[] = {
        "8.8.8.8",      "1.1.1.1",        "172.32.0.1",       "172.15.255.255",
        "192.169.0.1",  "100.128.0.1",    "11.0.0.1",         "2606:4700:4700::1111",
        "2a00:1450::1", "::ffff:8.8.8.8", "2002:0808:0808::1"};
    for (size_t i = 0; i < RTA_ARRAY_LEN(priv); i++)
        if (!is_private(priv[i]))
            fail_msg("%s should be private", priv[i]);
    for (size_t i = 0; i < RTA_ARRAY_LEN(pub); i++)
        if (is_private(pub[i]))
            fail_msg("%s should be public", pub[i]);
}

static void test_retry_after_parse(void **state)
{
    int64_t now = (int64_t)TS * 1000;
    assert_int_equal(rta__notify_parse_retry_after("120", now), 120000);
    assert_int_equal(rta__notify_parse_retry_after(" 0\r\n", now), 0);
    assert_int_equal(rta__notify_parse_retry_after("Thu, 25 Feb 2021 15:03:10 GMT\r\n", now),
                     60000);
    assert_int_equal(rta__notify_parse_retry_after("Thu, 25 Feb 2021 15:00:00 GMT", now), 0);
    assert_int_equal(rta__notify_parse_retry_after("999999999999", now), NOTIFY_RETRY_AFTER_MAX_MS);
    assert_int_equal(rta__notify_parse_retry_after("soon", now), -1);
    assert_int_equal(rta__notify_parse_retry_after("12abc", now), -1);
    assert_int_equal(rta__notify_parse_retry_after("", now), -1);
}

/* ---- webhooks ---- */

static void test_webhook_ok(void **state)
{
    rta_notify_options o = base_opts();
    make_notify(&o);
    rta_notify_result r = webhook_with((script){.status = 204});
    assert_int_equal(r.outcome, RTA_NOTIFY_OK);
    assert_int_equal(r.status_code, 204);
    assert_string_equal(r.error, "");
    assert_int_equal(r.retry_after_ms, -1);
    assert_int_equal(H.requests, 1);
    assert_string_equal(H.method, "POST");
    assert_string_equal(H.path, "/hook");
    assert_string_equal(H.body, "{\"test\": 2432232314}");
    assert_string_equal(H.h_ct, "application/json");
    assert_string_equal(H.h_ua, "rta-webhooks/0.1");
    assert_string_equal(H.h_id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    assert_string_equal(H.h_ts, "1614265330");
    /* recompute the signature over what the receiver got */
    char sig[128];
    assert_int_equal(rta_webhook_sign(SECRET, H.h_id, strtoll(H.h_ts, NULL, 10), H.body,
                                      strlen(H.body), sig, sizeof sig),
                     0);
    assert_string_equal(H.h_sig, sig);
    assert_string_equal(H.h_sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_int_equal(rta_notify_in_flight(H.n), 0);
}

static void test_webhook_classification(void **state)
{
    rta_notify_options o = base_opts();
    o.breaker_failures = 100; /* not under test here */
    make_notify(&o);
    rta_notify_result r;

    r = webhook_with((script){.status = 410});
    assert_int_equal(r.outcome, RTA_NOTIFY_DISABLE_TARGET);
    assert_int_equal(r.status_code, 410);

    r = webhook_with((script){.status = 429, .retry_after = "7"});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.status_code, 429);
    assert_int_equal(r.retry_after_ms, 7000);

    r = webhook_with((script){.status = 503, .retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.retry_after_ms, 0); /* a date in the past */

    r = webhook_with((script){.status = 500});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.retry_after_ms, -1);
    assert_string_equal(r.error, "HTTP 500");

    r = webhook_with((script){.status = 408});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);

    r = webhook_with((script){.status = 400, .retry_after = "5"});
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);
    assert_int_equal(r.retry_after_ms, -1);

    r = webhook_with((script){.status = 401});
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);

    /* redirects are not followed: one request, PERMANENT */
    int before = H.requests;
    r = webhook_with((script){.status = 302, .location = url("/elsewhere")});
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);
    assert_int_equal(r.status_code, 302);
    assert_int_equal(H.requests, before + 1);
    assert_string_equal(H.path, "/hook");
    assert_non_null(strstr(r.error, "redirect"));
}

static void test_webhook_bad_requests(void **state)
{
    rta_notify_options o = base_opts();
    make_notify(&o);
    rta_notify_request r = webhook_req(url("/hook"));
    r.secret = "nope";
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    r = webhook_req("ftp://127.0.0.1/x");
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    r = webhook_req(url("/hook"));
    r.delivery_id = "bad\r\nX-Injected: 1";
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    assert_int_equal(H.done, 0);
    assert_int_equal(rta_notify_in_flight(H.n), 3);
    wait_done(3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(H.res[i].outcome, RTA_NOTIFY_PERMANENT);
    assert_string_equal(H.res[0].error, "bad webhook secret");
    assert_string_equal(H.res[1].error, "bad webhook url");
    assert_int_equal(H.requests, 0);
    assert_int_equal(rta_notify_in_flight(H.n), 0);
}

static void test_webhook_timeout(void **state)
{
    rta_notify_options o = base_opts();
    o.webhook_timeout_ms = 300;
    make_notify(&o);
    rta_notify_result r = webhook_with((script){.hold = 1});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.status_code, 0);
    assert_non_null(strstr(r.error, "timeout"));
    assert_int_equal(H.requests, 1);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_webhook_connection_refused(void **state)
{
    rta_notify_options o = base_opts();
    make_notify(&o);
    char target[64];
    snprintf(target, sizeof target, "http://127.0.0.1:%d/hook", free_port());
    rta_notify_request r = webhook_req(target);
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    wait_done(1);
    assert_int_equal(H.res[0].outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(H.res[0].status_code, 0);
    assert_string_not_equal(H.res[0].error, "");
}

static void test_webhook_private_refused(void **state)
{
    rta_notify_options o = base_opts();
    o.allow_private_targets = false;
    make_notify(&o);
    rta_notify_request r = webhook_req(url("/hook"));
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    char target[64];
    snprintf(target, sizeof target, "http://localhost:%d/hook", H.port); /* by name too */
    r = webhook_req(target);
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    wait_done(2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(H.res[i].outcome, RTA_NOTIFY_PERMANENT);
        assert_string_equal(H.res[i].error, "private address refused");
    }
    assert_int_equal(H.requests, 0);
    /* refusals say nothing about the host's health: no breaker entry */
    for (int i = 0; i < 10; i++) {
        r = webhook_req(url("/hook"));
        assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    }
    wait_done(12);
    assert_int_equal(H.res[11].outcome, RTA_NOTIFY_PERMANENT);
}

typedef struct {
    int count;
    char host[64];
    int state;
} breaker_seen;

static void on_breaker(void *ud, const char *host, int state)
{
    breaker_seen *s = ud;
    s->count++;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->state = state;
}

static breaker_seen breakers(void)
{
    breaker_seen s = {0};
    rta_notify_each_breaker(H.n, on_breaker, &s);
    return s;
}

static void test_breaker(void **state)
{
    rta_notify_options o = base_opts();
    o.breaker_failures = 5;
    o.breaker_open_ms = 200;
    make_notify(&o);
    rta_notify_result r;

    /* a PERMANENT answer is not a host failure */
    r = webhook_with((script){.status = 404});
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);
    assert_int_equal(breakers().count, 0);

    for (int i = 0; i < 5; i++) {
        r = webhook_with((script){.status = 503});
        assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    }
    breaker_seen b = breakers();
    assert_int_equal(b.count, 1);
    assert_string_equal(b.host, "127.0.0.1");
    assert_int_equal(b.state, 1);
    int requests = H.requests;

    /* open: answered without a request, still asynchronously */
    r = webhook_with((script){.status = 200});
    assert_int_equal(r.outcome, RTA_NOTIFY_BREAKER_OPEN);
    assert_int_equal(H.requests, requests);

    /* half-open: exactly one probe goes out; it fails: open again */
    sleep_ms(250);
    assert_int_equal(breakers().state, 2);
    H.sc = (script){.status = 500};
    rta_notify_request req = webhook_req(url("/hook"));
    int before = H.done;
    assert_int_equal(rta_notify_send(H.n, &req, on_result, NULL), 0);
    assert_int_equal(rta_notify_send(H.n, &req, on_result, NULL), 0);
    wait_done(before + 2);
    assert_int_equal(H.res[before].outcome, RTA_NOTIFY_BREAKER_OPEN); /* deferred: first */
    assert_int_equal(H.res[before + 1].outcome, RTA_NOTIFY_RETRY);    /* the probe */
    assert_int_equal(H.requests, requests + 1);
    assert_int_equal(breakers().state, 1);
    r = webhook_with((script){.status = 200});
    assert_int_equal(r.outcome, RTA_NOTIFY_BREAKER_OPEN);

    /* next probe succeeds: closed, entry gone, traffic flows */
    sleep_ms(250);
    r = webhook_with((script){.status = 200});
    assert_int_equal(r.outcome, RTA_NOTIFY_OK);
    assert_int_equal(breakers().count, 0);
    r = webhook_with((script){.status = 200});
    assert_int_equal(r.outcome, RTA_NOTIFY_OK);
    assert_int_equal(H.requests, requests + 3);
}

static void test_max_in_flight_and_shutdown(void **state)
{
    rta_notify_options o = base_opts();
    o.max_in_flight = 2;
    make_notify(&o);
    H.sc = (script){.hold = 1};
    rta_notify_request r = webhook_req(url("/hook"));
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), -1);
    assert_int_equal(rta_notify_in_flight(H.n), 2);
    while (H.requests < 2)
        uv_run(&H.loop, UV_RUN_ONCE);
    assert_int_equal(H.done, 0);
    rta_notify_free(H.n); /* aborts both */
    H.n = NULL;
    assert_int_equal(H.done, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(H.res[i].outcome, RTA_NOTIFY_RETRY);
        assert_string_equal(H.res[i].error, "shutdown");
    }
    for (int i = 0; i < 20; i++)
        uv_run(&H.loop, UV_RUN_NOWAIT);
}

/* ---- FCM ---- */

static rta_notify_request push_req(const char *token)
{
    rta_notify_request r = {
        .channel = RTA_CHANNEL_PUSH,
        .delivery_id = "0190f3c4-0000-7000-8000-000000000001",
        .target = token,
        .attempt = 1,
        .timestamp_s = TS,
        .subject = "ETH below 3000",
        .text = "ETH/USD is 2999.5",
    };
    return r;
}

static rta_notify_result push_with(script sc)
{
    H.sc = sc;
    int before = H.done;
    rta_notify_request r = push_req("device-token-1");
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    wait_done(before + 1);
    return H.res[before];
}

static void test_fcm(void **state)
{
    rta_notify_options o = base_opts();
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", H.port);
    o.fcm_base_url = base;
    o.fcm_project = "demo-project";
    o.fcm_token = "ya29.test";
    o.breaker_failures = 100;
    make_notify(&o);

    rta_notify_result r = push_with(
        (script){.status = 200, .body = "{\"name\":\"projects/demo-project/messages/1\"}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_OK);
    assert_string_equal(H.method, "POST");
    assert_string_equal(H.path, "/v1/projects/demo-project/messages:send");
    assert_string_equal(H.h_auth, "Bearer ya29.test");
    json_t *body = json_loads(H.body, 0, NULL);
    assert_non_null(body);
    json_t *m = json_object_get(body, "message");
    assert_string_equal(json_string_value(json_object_get(m, "token")), "device-token-1");
    json_t *notif = json_object_get(m, "notification");
    assert_string_equal(json_string_value(json_object_get(notif, "title")), "ETH below 3000");
    assert_string_equal(json_string_value(json_object_get(notif, "body")), "ETH/USD is 2999.5");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(m, "data"), "delivery_id")),
        "0190f3c4-0000-7000-8000-000000000001");
    json_decref(body);

    r = push_with((script){.status = 200, .body = "{}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);

    r = push_with(
        (script){.status = 404,
                 .body = "{\"error\":{\"code\":404,\"message\":\"Requested entity was not found.\","
                         "\"status\":\"NOT_FOUND\",\"details\":[{\"@type\":\"type.googleapis.com/"
                         "google.firebase.fcm.v1.FcmError\",\"errorCode\":\"UNREGISTERED\"}]}}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_DISABLE_TARGET);
    assert_int_equal(r.status_code, 404);
    assert_string_equal(r.error, "HTTP 404: UNREGISTERED");

    r = push_with(
        (script){.status = 400,
                 .body = "{\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\",\"details\":["
                         "{\"errorCode\":\"INVALID_ARGUMENT\"},{\"fieldViolations\":[{\"field\":"
                         "\"message.token\",\"description\":\"Invalid registration token\"}]}]}}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_DISABLE_TARGET);

    /* INVALID_ARGUMENT about something else than the token: our bug, not the device's */
    r = push_with(
        (script){.status = 400,
                 .body = "{\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\",\"message\":"
                         "\"Invalid value at 'message.data'\"}}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);

    r = push_with((script){.status = 429,
                           .retry_after = "30",
                           .body = "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\"}}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.retry_after_ms, 30000);

    r = push_with((script){.status = 401, .body = "{\"error\":{\"status\":\"UNAUTHENTICATED\"}}"});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);

    r = push_with((script){.status = 503, .body = "oops"});
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
}

static void test_channels_off(void **state)
{
    rta_notify_options o = base_opts();
    make_notify(&o);
    rta_notify_request r = push_req("tok");
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    r.channel = RTA_CHANNEL_EMAIL;
    r.target = "user@example.org";
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    wait_done(2);
    assert_int_equal(H.res[0].outcome, RTA_NOTIFY_PERMANENT);
    assert_string_equal(H.res[0].error, "push not configured");
    assert_int_equal(H.res[1].outcome, RTA_NOTIFY_PERMANENT);
    assert_string_equal(H.res[1].error, "email not configured");
}

/* ---- SMTP ---- */

typedef struct {
    int lfd, port;
    pthread_t th;
    volatile int stop;
    pthread_mutex_t mu;
    int rcpt_code, data_code;
    int mute_quit; /* never answer QUIT */
    int quits;
    char mail_from[256], rcpt[256];
    char data[65536];
    size_t data_len;
    int messages, connections;
} smtp_srv;

static smtp_srv S;

static void smtp_say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void smtp_say(int fd, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    (void)!write(fd, buf, (size_t)n);
}

/* Reads one CRLF line (without CRLF) into line; 0, or -1 on close/stop. */
static int smtp_line(int fd, char *rbuf, size_t *rlen, char *line, size_t linelen)
{
    for (;;) {
        char *eol = memmem(rbuf, *rlen, "\r\n", 2);
        if (eol) {
            size_t n = (size_t)(eol - rbuf);
            snprintf(line, linelen, "%.*s", (int)n, rbuf);
            memmove(rbuf, eol + 2, *rlen - n - 2);
            *rlen -= n + 2;
            return 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 100);
        if (S.stop)
            return -1;
        if (pr <= 0)
            continue;
        ssize_t got = read(fd, rbuf + *rlen, 8192 - *rlen);
        if (got <= 0)
            return -1;
        *rlen += (size_t)got;
    }
}

static void smtp_session(int fd)
{
    char rbuf[8192], line[4096];
    size_t rlen = 0;
    smtp_say(fd, "220 test ESMTP\r\n");
    while (smtp_line(fd, rbuf, &rlen, line, sizeof line) == 0) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            smtp_say(fd, "250-test\r\n250 SIZE 1000000\r\n");
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            pthread_mutex_lock(&S.mu);
            snprintf(S.mail_from, sizeof S.mail_from, "%s", line + 10);
            pthread_mutex_unlock(&S.mu);
            smtp_say(fd, "250 ok\r\n");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            pthread_mutex_lock(&S.mu);
            snprintf(S.rcpt, sizeof S.rcpt, "%s", line + 8);
            int code = S.rcpt_code;
            pthread_mutex_unlock(&S.mu);
            smtp_say(fd, "%d rcpt\r\n", code);
        } else if (strcasecmp(line, "DATA") == 0) {
            smtp_say(fd, "354 go on\r\n");
            char msg[65536];
            size_t mlen = 0;
            while (smtp_line(fd, rbuf, &rlen, line, sizeof line) == 0 && strcmp(line, ".") != 0)
                mlen += (size_t)snprintf(msg + mlen, sizeof msg - mlen, "%s\r\n", line);
            pthread_mutex_lock(&S.mu);
            memcpy(S.data, msg, mlen);
            S.data[mlen] = '\0';
            S.data_len = mlen;
            S.messages++;
            int code = S.data_code;
            pthread_mutex_unlock(&S.mu);
            smtp_say(fd, "%d done\r\n", code);
        } else if (strcasecmp(line, "QUIT") == 0) {
            pthread_mutex_lock(&S.mu);
            S.quits++;
            int mute = S.mute_quit;
            pthread_mutex_unlock(&S.mu);
            if (mute)
                continue;
            smtp_say(fd, "221 bye\r\n");
            break;
        } else if (strcasecmp(line, "RSET") == 0 || strcasecmp(line, "NOOP") == 0) {
            smtp_say(fd, "250 ok\r\n");
        } else {
            smtp_say(fd, "502 unknown\r\n");
        }
    }
}

static void *smtp_thread(void *arg)
{
    while (!S.stop) {
        struct pollfd p = {.fd = S.lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(S.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&S.mu);
        S.connections++;
        pthread_mutex_unlock(&S.mu);
        smtp_session(fd);
        close(fd);
    }
    return NULL;
}

static void smtp_start(void)
{
    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.mu, NULL);
    S.rcpt_code = 250;
    S.data_code = 250;
    S.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(S.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(S.lfd, 8), 0);
    socklen_t len = sizeof a;
    getsockname(S.lfd, (struct sockaddr *)&a, &len);
    S.port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&S.th, NULL, smtp_thread, NULL), 0);
}

static void smtp_stop(void)
{
    S.stop = 1;
    pthread_join(S.th, NULL);
    close(S.lfd);
    pthread_mutex_destroy(&S.mu);
}

static void smtp_script(int rcpt, int data)
{
    pthread_mutex_lock(&S.mu);
    S.rcpt_code = rcpt;
    S.data_code = data;
    pthread_mutex_unlock(&S.mu);
}

static rta_notify_request email_req(void)
{
    rta_notify_request r = {
        .channel = RTA_CHANNEL_EMAIL,
        .delivery_id = "0190f3c4-0000-7000-8000-00000000abcd",
        .target = "user@example.org",
        .attempt = 1,
        .timestamp_s = TS,
        .subject = "Alert: ETH \xe2\x86\x93 3000",
        .text = "ETH/USD crossed below 3000.\n.hidden line\nprice=2999",
    };
    return r;
}

static rta_notify_result email_send(void)
{
    int before = H.done;
    rta_notify_request r = email_req();
    assert_int_equal(rta_notify_send(H.n, &r, on_result, NULL), 0);
    wait_done(before + 1);
    return H.res[before];
}

static void test_smtp(void **state)
{
    smtp_start();
    char smtp_url[64];
    snprintf(smtp_url, sizeof smtp_url, "smtp://127.0.0.1:%d", S.port);
    rta_notify_options o = base_opts();
    o.smtp_url = smtp_url;
    o.mail_from = "rta alerts <alerts@example.com>";
    o.unsubscribe_url = "https://rta.example/v1/users/me/preferences";
    o.breaker_failures = 100;
    make_notify(&o);

    rta_notify_result r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_OK);
    assert_int_equal(r.status_code, 250);
    pthread_mutex_lock(&S.mu);
    assert_int_equal(strncmp(S.mail_from, "<alerts@example.com>", 20), 0); /* + SIZE=n */
    assert_string_equal(S.rcpt, "<user@example.org>");
    assert_int_equal(S.messages, 1);
    const char *d = S.data;
    assert_non_null(strstr(d, "From: rta alerts <alerts@example.com>\r\n"));
    assert_non_null(strstr(d, "To: <user@example.org>\r\n"));
    assert_non_null(strstr(d, "Subject: =?UTF-8?B?"));
    assert_non_null(strstr(d, "Date: Thu, 25 Feb 2021 15:02:10 +0000\r\n"));
    assert_non_null(strstr(d, "Message-ID: <0190f3c4-0000-7000-8000-00000000abcd@rta>\r\n"));
    assert_non_null(strstr(d, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(d, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(d, "Content-Transfer-Encoding: quoted-printable\r\n"));
    assert_non_null(strstr(d, "Auto-Submitted: auto-generated\r\n"));
    assert_non_null(
        strstr(d, "List-Unsubscribe: <https://rta.example/v1/users/me/preferences>\r\n"));
    /* body after the blank line, QP ("=" encoded), dot-stuffed by curl on the wire */
    const char *body = strstr(d, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4,
                        "ETH/USD crossed below 3000.\r\n..hidden line\r\nprice=3D2999\r\n");
    /* the encoded subject decodes back */
    const char *subj = strstr(d, "Subject: =?UTF-8?B?") + strlen("Subject: =?UTF-8?B?");
    char enc[128], dec[128];
    snprintf(enc, sizeof enc, "%.*s", (int)(strstr(subj, "?=") - subj), subj);
    int dl = EVP_DecodeBlock((unsigned char *)dec, (unsigned char *)enc, (int)strlen(enc));
    assert_true(dl > 0);
    while (dl > 0 && dec[dl - 1] == '\0')
        dl--;
    dec[dl] = '\0';
    assert_string_equal(dec, "Alert: ETH \xe2\x86\x93 3000");
    pthread_mutex_unlock(&S.mu);

    smtp_script(450, 250);
    r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.status_code, 450);

    smtp_script(550, 250);
    r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);
    assert_int_equal(r.status_code, 550);

    smtp_script(250, 554);
    r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_PERMANENT);
    assert_int_equal(r.status_code, 554);

    smtp_script(250, 451);
    r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.status_code, 451);

    smtp_script(250, 250);
    r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_OK);

    /* header injection through the address is refused before any SMTP */
    rta_notify_request bad = email_req();
    bad.target = "user@example.org>\r\nRCPT TO:<x@y.z";
    assert_int_equal(rta_notify_send(H.n, &bad, on_result, NULL), 0);
    wait_done(H.done + 1);
    assert_int_equal(H.res[H.done - 1].outcome, RTA_NOTIFY_PERMANENT);

    free_notify(); /* curl says QUIT to the cached connection */
    smtp_stop();
}

/* A server that never answers QUIT must not hold rta_notify_free (curl would wait for the
 * answer on the cached connection up to the server response timeout). */
static void test_smtp_shutdown_unresponsive(void **state)
{
    smtp_start();
    S.mute_quit = 1;
    char smtp_url[64];
    snprintf(smtp_url, sizeof smtp_url, "smtp://127.0.0.1:%d", S.port);
    rta_notify_options o = base_opts();
    o.smtp_url = smtp_url;
    o.mail_from = "alerts@example.com";
    /* curl would wait this long for the QUIT reply: far past the test's CTest timeout, so a
     * blocking shutdown fails the test (no clock is read here) */
    o.webhook_timeout_ms = 600000;
    make_notify(&o);
    assert_int_equal(email_send().outcome, RTA_NOTIFY_OK);
    free_notify();
    smtp_stop();
}

static void test_smtp_down(void **state)
{
    char smtp_url[64];
    snprintf(smtp_url, sizeof smtp_url, "smtp://127.0.0.1:%d", free_port());
    rta_notify_options o = base_opts();
    o.smtp_url = smtp_url;
    o.mail_from = "alerts@example.com";
    make_notify(&o);
    rta_notify_result r = email_send();
    assert_int_equal(r.outcome, RTA_NOTIFY_RETRY);
    assert_int_equal(r.status_code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_vector),
        cmocka_unit_test(test_private_ranges),
        cmocka_unit_test(test_retry_after_parse),
        cmocka_unit_test_setup_teardown(test_webhook_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_classification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_private_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_in_flight_and_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fcm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_channels_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp_shutdown_unresponsive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
