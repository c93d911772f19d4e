/*
 * Token-bucket rate limiting (one bucket per key and limit).
 *
 * Capacity is per_minute tokens; tokens refill continuously at per_minute/60 per second,
 * computed lazily from the caller's clock on each take. A zeroed bucket (last_ms == 0) starts
 * full on first use. If the clock goes backwards the bucket simply does not refill until the
 * clock passes its last time again (no tokens are created by clock jumps back and forth).
 * A tiny epsilon absorbs floating-point error so that e.g. 1000 ms at 60/min yields exactly one
 * token.
 */
#include <math.h>

#include "rta/auth.h"

#define EPS 1e-9

static void set_out(int *p, int v)
{
    if (p)
        *p = v;
}

/* See auth.h. per_minute <= 0 means nothing is allowed (retry after 60 s). Any of the out
 * pointers may be NULL; *retry_after_s is 0 when the request is allowed. now_ms must be > 0. */
int rta_bucket_take(rta_bucket *b, int per_minute, int64_t now_ms, int *remaining, int *reset_s,
                    int *retry_after_s)
{
    if (per_minute <= 0) {
        set_out(remaining, 0);
        set_out(reset_s, 60);
        set_out(retry_after_s, 60);
        return 0;
    }
    double cap = per_minute;
    double rate_ms = cap / 60000.0; /* tokens per millisecond */

    if (b->last_ms == 0) {
        b->tokens = cap;
        b->last_ms = now_ms;
    } else if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate_ms;
        b->last_ms = now_ms;
    }
    if (b->tokens > cap)
        b->tokens = cap;
    if (b->tokens < 0)
        b->tokens = 0;

    int allowed = 0;
    if (b->tokens + EPS >= 1.0) {
        b->tokens -= 1.0;
        if (b->tokens < 0)
            b->tokens = 0;
        allowed = 1;
    }

    double whole = floor(b->tokens + EPS);
    set_out(remaining, (int)whole);
    double to_full = (cap - b->tokens) / rate_ms / 1000.0; /* seconds */
    set_out(reset_s, to_full <= EPS ? 0 : (int)ceil(to_full - EPS));
    if (allowed) {
        set_out(retry_after_s, 0);
    } else {
        double to_one = (1.0 - b->tokens) / rate_ms / 1000.0;
        int r = (int)ceil(to_one - EPS);
        set_out(retry_after_s, r < 1 ? 1 : r);
    }
    return allowed;
}
