/*
 * Bounded value history of one time series (see rta/history.h).
 *
 * Three rings (1 min x 90, 15 min x 100, 1 h x 170) live in one allocation made on the first
 * record. Each ring remembers the newest bucket number it has written (`head`, bucket number =
 * floor(ts / bucket_secs)); slot `b % n` holds bucket b while head - n < b <= head. Advancing
 * the head clears the slots it passes over, so a slot never shows a value from a previous lap.
 * Each bucket keeps the last value recorded in it (a float, NaN = empty) and that point's
 * offset in seconds from the bucket start, so that out-of-order points within a bucket keep the
 * newest one, and value_at can tell whether a bucket's point lies after the queried time.
 */
#include "rta/history.h"
#include "rta/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RING_COUNT 3
#define TOTAL_SLOTS (RTA_HISTORY_FINE_N + RTA_HISTORY_MEDIUM_N + RTA_HISTORY_COARSE_N)
#define NO_HEAD INT64_MIN

/* One bucket: 6 bytes, value and offset side by side so a record touches one cache line. */
typedef struct __attribute__((packed)) {
    float v;      /* NaN = empty */
    uint16_t off; /* seconds from the bucket start to the kept point */
} slot;

struct rta_history_ring {
    int64_t head;  /* newest bucket number written; NO_HEAD when none */
    uint32_t secs; /* bucket width */
    uint32_t n;    /* buckets in the ring */
    slot *slots;   /* n buckets */
};

/* The one allocation behind h->rings: ring headers, then all buckets. */
typedef struct {
    struct rta_history_ring ring[RING_COUNT];
    int64_t first_ts; /* the oldest point ever recorded (windows longer than the series) */
    double first_v;
    slot slots[TOTAL_SLOTS];
} history_block;

static const uint32_t ring_secs[RING_COUNT] = {RTA_HISTORY_FINE_SECS, RTA_HISTORY_MEDIUM_SECS,
                                               RTA_HISTORY_COARSE_SECS};
static const uint32_t ring_n[RING_COUNT] = {RTA_HISTORY_FINE_N, RTA_HISTORY_MEDIUM_N,
                                            RTA_HISTORY_COARSE_N};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static uint32_t slot_of(const struct rta_history_ring *r, int64_t bucket)
{
    int64_t m = bucket % (int64_t)r->n;
    return (uint32_t)(m < 0 ? m + r->n : m);
}

void rta_history_init(rta_history *h)
{
    h->rings = NULL;
}

void rta_history_free(rta_history *h)
{
    free(h->rings); /* the rings are the first member of the block */
    h->rings = NULL;
}

static struct rta_history_ring *history_alloc(void)
{
    history_block *blk = rta_xmalloc(sizeof *blk);
    size_t base = 0;
    for (int i = 0; i < RING_COUNT; i++) {
        struct rta_history_ring *r = &blk->ring[i];
        r->head = NO_HEAD;
        r->secs = ring_secs[i];
        r->n = ring_n[i];
        r->slots = blk->slots + base;
        base += r->n;
    }
    for (size_t i = 0; i < TOTAL_SLOTS; i++) {
        blk->slots[i].v = NAN;
        blk->slots[i].off = 0;
    }
    blk->first_ts = INT64_MAX;
    blk->first_v = NAN;
    return blk->ring;
}

static void ring_record(struct rta_history_ring *r, int64_t ts_s, float v)
{
    int64_t bucket = floor_div(ts_s, r->secs);
    uint16_t off = (uint16_t)(ts_s - bucket * (int64_t)r->secs);
    if (r->head == NO_HEAD) {
        r->head = bucket;
    } else if (bucket > r->head) {
        /* Clear the buckets we skip (at most the whole ring). */
        int64_t gap = bucket - r->head;
        if (gap >= (int64_t)r->n) {
            for (uint32_t i = 0; i < r->n; i++)
                r->slots[i].v = NAN;
        } else {
            for (int64_t b = r->head + 1; b <= bucket; b++)
                r->slots[slot_of(r, b)].v = NAN;
        }
        r->head = bucket;
    } else if (bucket <= r->head - (int64_t)r->n) {
        return; /* older than this ring spans */
    }
    slot *sl = &r->slots[slot_of(r, bucket)];
    if (isnan(sl->v) || sl->off <= off) {
        sl->v = v;
        sl->off = off;
    }
}

void rta_history_record(rta_history *h, int64_t ts_s, double value)
{
    if (!isfinite(value))
        return; /* NaN marks an empty bucket; infinities are not data */
    if (h->rings == NULL)
        h->rings = history_alloc();
    float v = (float)value;
    if (isinf(v)) /* finite double beyond float range: clamp rather than lose the point */
        v = v > 0 ? 3.4e38f : -3.4e38f;
    for (int i = 0; i < RING_COUNT; i++)
        ring_record(&h->rings[i], ts_s, v);
    history_block *blk = (history_block *)h->rings;
    if (ts_s < blk->first_ts) {
        blk->first_ts = ts_s;
        blk->first_v = value;
    }
}

int rta_history_first(const rta_history *h, int64_t *ts_s, double *value)
{
    if (h->rings == NULL)
        return -1;
    const history_block *blk = (const history_block *)h->rings;
    *ts_s = blk->first_ts;
    *value = blk->first_v;
    return 0;
}

/* Newest point at or before ts_s in ring r: 1 and *out, 0 when the ring has none within its
 * span at or before ts_s (the caller then asks a coarser ring). */
static int ring_value_at(const struct rta_history_ring *r, int64_t ts_s, double *out)
{
    if (r->head == NO_HEAD)
        return 0;
    int64_t bucket = floor_div(ts_s, r->secs);
    int64_t oldest = r->head - (int64_t)r->n + 1;
    if (bucket < oldest)
        return 0;
    int64_t b = bucket > r->head ? r->head : bucket;
    for (; b >= oldest; b--) {
        const slot *sl = &r->slots[slot_of(r, b)];
        float v = sl->v;
        if (isnan(v))
            continue;
        if (b == bucket && bucket * (int64_t)r->secs + sl->off > ts_s)
            continue; /* the kept point is after ts_s; an earlier bucket has the answer */
        *out = v;
        return 1;
    }
    return 0;
}

int rta_history_value_at(const rta_history *h, int64_t ts_s, double *out)
{
    if (h->rings == NULL)
        return -1;
    for (int i = 0; i < RING_COUNT; i++)
        if (ring_value_at(&h->rings[i], ts_s, out))
            return 0;
    return -1;
}

/* Time of the first point in ring r strictly after ts_s, INT64_MAX when none. The answer of
 * ring_value_at (the newest point at or before the time asked) can only change when the time
 * asked passes such a point. */
static int64_t ring_next_point(const struct rta_history_ring *r, int64_t ts_s)
{
    if (r->head == NO_HEAD)
        return INT64_MAX;
    int64_t oldest = r->head - (int64_t)r->n + 1;
    int64_t b = floor_div(ts_s, r->secs);
    if (b < oldest)
        b = oldest;
    for (; b <= r->head; b++) {
        const slot *sl = &r->slots[slot_of(r, b)];
        if (isnan(sl->v))
            continue;
        int64_t t = b * (int64_t)r->secs + sl->off;
        if (t > ts_s)
            return t;
    }
    return INT64_MAX;
}

int rta_history_value_at_until(const rta_history *h, int64_t ts_s, double *out, int64_t *until_s)
{
    *until_s = INT64_MAX;
    if (h->rings == NULL)
        return -1;
    /* The answer comes from the finest ring holding a point at or before ts_s; it stays until
     * that ring or a finer one gets a point at or before the time asked. */
    int found = -1;
    for (int i = 0; i < RING_COUNT && found < 0; i++)
        if (ring_value_at(&h->rings[i], ts_s, out))
            found = i;
    int last = found < 0 ? RING_COUNT - 1 : found;
    for (int i = 0; i <= last; i++) {
        int64_t t = ring_next_point(&h->rings[i], ts_s);
        if (t < *until_s)
            *until_s = t;
    }
    return found < 0 ? -1 : 0;
}

size_t rta_history_bytes(void)
{
    return sizeof(rta_history) + sizeof(history_block);
}

double rta_change_fraction(double previous, double current)
{
    if (!isfinite(previous) || !isfinite(current) || previous == 0.0)
        return NAN;
    return (current - previous) / previous;
}
