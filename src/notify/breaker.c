/*
 * Circuit breaker per destination host (spec 4.4.1). A host that fails breaker_failures
 * times in a row (RETRY-class outcomes only: timeouts, connection errors, 429, 5xx, SMTP 4xx)
 * is "open" for breaker_open_ms: sends to it are answered BREAKER_OPEN without a transfer.
 * After that the first send is the half-open probe and every other send is refused while it
 * runs; the probe's answer closes the breaker (any answer from the host: OK, PERMANENT,
 * DISABLE_TARGET) or reopens it (RETRY).
 *
 * Only hosts with failures have an entry (uthash); a success removes it, so the table holds
 * the unhealthy hosts only, at most NOTIFY_BREAKERS_MAX of them (beyond that a new failing
 * host is simply not tracked, which fails open). Time is the monotonic clock.
 */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "notify/notify_internal.h"
#include "rta/util.h"

enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 };

struct notify_breaker {
    char host[NOTIFY_HOST_MAX];
    int state;
    int failures;           /* consecutive RETRY-class outcomes */
    uint64_t open_until_ms; /* monotonic */
    bool probe_out;         /* half-open: the probe is running */
    UT_hash_handle hh;
};

static uint64_t now_ms(void)
{
    return rta_mono_ns() / 1000000u;
}

static notify_breaker *find(rta_notify *n, const char *host)
{
    notify_breaker *b = NULL;
    HASH_FIND_STR(n->breakers, host, b);
    return b;
}

static void drop(rta_notify *n, notify_breaker *b)
{
    HASH_DEL(n->breakers, b);
    n->nbreakers--;
    free(b);
}

static void open_now(rta_notify *n, notify_breaker *b)
{
    b->state = BREAKER_OPEN;
    b->open_until_ms = now_ms() + n->opts.breaker_open_ms;
    b->probe_out = false;
}

int rta__breaker_admit(rta_notify *n, const char *host, bool *probe)
{
    *probe = false;
    if (host[0] == '\0')
        return 0;
    notify_breaker *b = find(n, host);
    if (b == NULL || b->state == BREAKER_CLOSED)
        return 0;
    if (b->state == BREAKER_OPEN) {
        if (now_ms() < b->open_until_ms)
            return -1;
        b->state = BREAKER_HALF_OPEN;
        b->probe_out = false;
    }
    if (b->probe_out)
        return -1;
    b->probe_out = true;
    *probe = true;
    return 0;
}

void rta__breaker_record(rta_notify *n, const char *host, bool probe, rta_notify_outcome o)
{
    if (host[0] == '\0' || o == RTA_NOTIFY_BREAKER_OPEN)
        return;
    notify_breaker *b = find(n, host);
    if (o != RTA_NOTIFY_RETRY) { /* the host answered: it is alive */
        if (b != NULL)
            drop(n, b);
        return;
    }
    if (b == NULL) {
        if (n->nbreakers >= NOTIFY_BREAKERS_MAX)
            return;
        b = rta_xcalloc(1, sizeof *b);
        snprintf(b->host, sizeof b->host, "%s", host);
        HASH_ADD_STR(n->breakers, host, b);
        n->nbreakers++;
    }
    b->failures++;
    if (b->state == BREAKER_HALF_OPEN && probe)
        open_now(n, b);
    else if (b->state == BREAKER_CLOSED && b->failures >= n->opts.breaker_failures)
        open_now(n, b);
}

void rta__breaker_release(rta_notify *n, const char *host, bool probe)
{
    if (!probe || host[0] == '\0')
        return;
    notify_breaker *b = find(n, host);
    if (b != NULL && b->state == BREAKER_HALF_OPEN)
        b->probe_out = false;
}

void rta__breaker_free_all(rta_notify *n)
{
    notify_breaker *b, *tmp;
    HASH_ITER(hh, n->breakers, b, tmp)
    {
        HASH_DEL(n->breakers, b);
        free(b);
    }
    n->nbreakers = 0;
}

void rta_notify_each_breaker(rta_notify *n, void (*fn)(void *ud, const char *host, int state),
                             void *ud)
{
    uint64_t now = now_ms();
    notify_breaker *b, *tmp;
    HASH_ITER(hh, n->breakers, b, tmp)
    {
        int state = b->state;
        if (state == BREAKER_OPEN && now >= b->open_until_ms)
            state = BREAKER_HALF_OPEN; /* the next send will be the probe */
        fn(ud, b->host, state);
    }
}
