/*
 * The bounded in-memory event log: the most recent events, bounded by count (a ring of
 * pointers sized at creation) and by age (rta_event_log_trim, from a timer). Clients that
 * reconnect read the events they missed after their last offset; when the log has already
 * dropped some of them the read says so (complete = 0) and the client must resync.
 */
#include "rta/event.h"
#include "rta/util.h"

#include <stdlib.h>

struct rta_event_log {
    rta_event **ring;
    size_t cap;  /* max events */
    size_t head; /* index of the oldest event */
    size_t count;
    int64_t max_age_ms;
    uint64_t dropped_upto; /* highest offset ever dropped; 0 when none */
};

rta_event_log *rta_event_log_new(size_t max_events, int64_t max_age_ms)
{
    rta_event_log *log = rta_xcalloc(1, sizeof *log);
    log->cap = max_events ? max_events : 1;
    log->ring = rta_xcalloc(log->cap, sizeof *log->ring);
    log->max_age_ms = max_age_ms;
    return log;
}

static rta_event *at(const rta_event_log *log, size_t i)
{
    return log->ring[(log->head + i) % log->cap];
}

static void drop_oldest(rta_event_log *log)
{
    rta_event *e = log->ring[log->head];
    log->ring[log->head] = NULL;
    if (e->offset > log->dropped_upto)
        log->dropped_upto = e->offset;
    rta_event_unref(e);
    log->head = (log->head + 1) % log->cap;
    log->count--;
}

void rta_event_log_free(rta_event_log *log)
{
    if (log == NULL)
        return;
    while (log->count)
        drop_oldest(log);
    free(log->ring);
    free(log);
}

void rta_event_log_append(rta_event_log *log, rta_event *e)
{
    if (log->count == log->cap)
        drop_oldest(log);
    log->ring[(log->head + log->count) % log->cap] = rta_event_ref(e);
    log->count++;
}

void rta_event_log_trim(rta_event_log *log, int64_t now_ms)
{
    if (log->max_age_ms <= 0)
        return;
    int64_t cutoff_us = (now_ms - log->max_age_ms) * 1000;
    while (log->count && at(log, 0)->created_us < cutoff_us)
        drop_oldest(log);
}

size_t rta_event_log_read(const rta_event_log *log, uint64_t after, rta_event **out, size_t limit,
                          int *complete)
{
    if (complete)
        *complete = after >= log->dropped_upto;
    /* Offsets increase along the ring: binary search the first one > after. */
    size_t lo = 0, hi = log->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(log, mid)->offset <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    for (size_t i = lo; i < log->count && n < limit; i++)
        out[n++] = at(log, i);
    return n;
}

uint64_t rta_event_log_first_offset(const rta_event_log *log)
{
    return log->count ? at(log, 0)->offset : 0;
}

uint64_t rta_event_log_last_offset(const rta_event_log *log)
{
    return log->count ? at(log, log->count - 1)->offset : 0;
}

size_t rta_event_log_count(const rta_event_log *log)
{
    return log->count;
}

void rta_event_log_mark_lost(rta_event_log *log, uint64_t upto)
{
    if (upto > log->dropped_upto)
        log->dropped_upto = upto;
}
