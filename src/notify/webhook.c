/*
 * Webhook channel: one signed HTTP POST per attempt (Standard Webhooks headers webhook-id,
 * webhook-timestamp, webhook-signature). Redirects are not followed, and unless
 * allow_private_targets is set every address curl is about to connect to is checked in the
 * open-socket hook (notify.c), so a name that resolves (or re-resolves: DNS rebinding) to a
 * loopback, private or link-local address is refused: the check is on the address actually used.
 *
 * Answers: 2xx OK; 410 DISABLE_TARGET; 408, 429, 5xx RETRY (with Retry-After); 3xx PERMANENT
 * (a redirecting endpoint is misconfigured and will redirect again); other 4xx PERMANENT;
 * connection errors and timeouts RETRY.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "notify/notify_internal.h"

static int v4_is_private(uint32_t a) /* host byte order */
{
    uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16), b2 = (uint8_t)(a >> 8);
    return b0 == 0                              /* 0.0.0.0/8 "this network" */
           || b0 == 10                          /* 10/8 */
           || b0 == 127                         /* loopback */
           || (b0 == 100 && (b1 & 0xc0) == 64)  /* 100.64/10 carrier-grade NAT */
           || (b0 == 169 && b1 == 254)          /* link-local (cloud metadata) */
           || (b0 == 172 && (b1 & 0xf0) == 16)  /* 172.16/12 */
           || (b0 == 192 && b1 == 168)          /* 192.168/16 */
           || (b0 == 192 && b1 == 0 && b2 == 0) /* 192.0.0/24 protocol assignments */
           || (b0 == 198 && (b1 & 0xfe) == 18)  /* 198.18/15 benchmarking */
           || b0 >= 224;                        /* multicast, reserved, broadcast */
}

int rta__notify_addr_is_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_is_private(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6)
        return 1; /* unix sockets and the like: never a webhook target */
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a, zero, 15) == 0)
        return 1; /* :: and ::1 */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0)
        return v4_is_private((uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 | (uint32_t)a[14] << 8 |
                             a[15]);  /* mapped, NAT64, v4-compatible */
    if (a[0] == 0x20 && a[1] == 0x02) /* 6to4: 2002:V4ADDR::/48 */
        return v4_is_private((uint32_t)a[2] << 24 | (uint32_t)a[3] << 16 | (uint32_t)a[4] << 8 |
                             a[5]);
    return (a[0] & 0xfe) == 0xfc                            /* fc00::/7 unique local */
           || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)       /* fe80::/10 link-local */
           || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)       /* fec0::/10 old site-local */
           || a[0] == 0xff                                  /* multicast */
           || (a[0] == 0x01 && memcmp(a + 1, zero, 7) == 0) /* 100::/64 discard */
           || (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8); /* docs */
}

static int add_header(notify_xfer *x, const char *name, const char *value)
{
    char line[512];
    snprintf(line, sizeof line, "%s:%s%s", name, value[0] ? " " : "", value);
    struct curl_slist *l = curl_slist_append(x->headers, line);
    if (l == NULL)
        return -1;
    x->headers = l;
    return 0;
}

int rta__webhook_setup(notify_xfer *x)
{
    const rta_notify_request *r = &x->req;
    char scheme[16];
    if (rta__notify_url_host(r->target, x->host, sizeof x->host, scheme, sizeof scheme) != 0 ||
        (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad webhook url");
    const char *body = r->body_json ? r->body_json : "";
    size_t body_len = strlen(body);
    if (body_len > NOTIFY_BODY_MAX)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "webhook body too large");
    char sig[128], ts[32];
    if (rta_webhook_sign(r->secret, r->delivery_id, r->timestamp_s, body, body_len, sig,
                         sizeof sig) != 0)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad webhook secret");
    snprintf(ts, sizeof ts, "%" PRId64, r->timestamp_s);

    CURL *e = rta__notify_easy_new(x, r->target);
    if (e == NULL || add_header(x, "Content-Type", "application/json") != 0 ||
        add_header(x, "webhook-id", r->delivery_id) != 0 ||
        add_header(x, "webhook-timestamp", ts) != 0 ||
        add_header(x, "webhook-signature", sig) != 0 ||
        add_header(x, "Expect", "") != 0) /* no 100-continue round trip */
        return rta__notify_fail(x, RTA_NOTIFY_RETRY, "out of memory");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    x->check_address = !x->n->opts.allow_private_targets; /* in rta__notify_easy_new's hook */
    return 0;
}

void rta__webhook_finish(notify_xfer *x, CURLcode rc)
{
    rta_notify_result *res = &x->res;
    if (rc != CURLE_OK) {
        if (x->refused_private) {
            res->outcome = RTA_NOTIFY_PERMANENT;
            snprintf(res->error, sizeof res->error, "private address refused");
        } else {
            rta__notify_transport_error(x, rc);
        }
        return;
    }
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    res->status_code = (int)code;
    if (code >= 200 && code < 300) {
        res->outcome = RTA_NOTIFY_OK;
        return;
    }
    if (code == 410)
        res->outcome = RTA_NOTIFY_DISABLE_TARGET;
    else if (code == 408 || code == 429 || code >= 500)
        res->outcome = RTA_NOTIFY_RETRY;
    else
        res->outcome = RTA_NOTIFY_PERMANENT;
    if (res->outcome == RTA_NOTIFY_RETRY)
        res->retry_after_ms = x->retry_after_ms;
    if (code >= 300 && code < 400)
        snprintf(res->error, sizeof res->error, "HTTP %ld: redirect not followed", code);
    else
        snprintf(res->error, sizeof res->error, "HTTP %ld", code);
}
