/*
 * Bounded value history for one time series, enough to answer "what was the value at time T"
 * for any T in the last 7 days, in fixed memory.
 *
 * Three rings of time-aligned buckets, each bucket keeping the last value recorded in it:
 *   fine:   1-minute buckets  x 90   (last 1.5 h)
 *   medium: 15-minute buckets x 100  (last 25 h)
 *   coarse: 1-hour buckets    x 170  (last 7 d + 2 h)
 * Values are stored as float (7 significant digits: ample for change fractions); an empty
 * bucket holds NaN. Each bucket also keeps the second offset (uint16) of its point within the
 * bucket, so out-of-order points and value_at are exact to the second. Memory per series:
 * (90+100+170)*(4+2) bytes + ring headers = ~2.2 KiB (rta_history_bytes()), allocated on the
 * first record (a series that never records costs only the 8-byte header).
 */
#ifndef RTA_HISTORY_H
#define RTA_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define RTA_HISTORY_FINE_SECS 60
#define RTA_HISTORY_FINE_N 90
#define RTA_HISTORY_MEDIUM_SECS 900
#define RTA_HISTORY_MEDIUM_N 100
#define RTA_HISTORY_COARSE_SECS 3600
#define RTA_HISTORY_COARSE_N 170
#define RTA_HISTORY_MAX_WINDOW_SECS (7 * 24 * 3600)

typedef struct rta_history_ring rta_history_ring;

typedef struct {
    rta_history_ring *rings; /* NULL until the first record; 3 rings in one allocation */
} rta_history;

void rta_history_init(rta_history *h);
void rta_history_free(rta_history *h);

/* Records value at ts_s (Unix seconds). Points older than what a ring spans are ignored by
 * that ring; points older than the newest in a bucket still overwrite only their own bucket
 * when they are newer than what that bucket holds (out-of-order within a bucket is fine). */
void rta_history_record(rta_history *h, int64_t ts_s, double value);

/* The value in effect at ts_s: the value of the newest point recorded at or before ts_s, at the
 * finest resolution that still covers ts_s. Returns 0 and sets *out, or -1 when the history has
 * nothing at or before ts_s within its span. */
int rta_history_value_at(const rta_history *h, int64_t ts_s, double *out);

/* The oldest point ever recorded (its value is exact, not bucketed). 0, or -1 when empty.
 * Lets a caller measure a change over a window longer than the series' life. */
int rta_history_first(const rta_history *h, int64_t *ts_s, double *value);

/* rta_history_value_at, and *until_s: a time > ts_s such that the answer (the value, or that
 * there is none) is the same at every time in [ts_s, *until_s) as long as nothing new is
 * recorded: the time of the first point after ts_s that could take over (INT64_MAX when none).
 * Lets a reader cache a "value as of now - window" until the window edge reaches a new point. */
int rta_history_value_at_until(const rta_history *h, int64_t ts_s, double *out, int64_t *until_s);

/* Bytes one history uses once allocated (for docs and metrics). */
size_t rta_history_bytes(void);

/* Change as a fraction: (current - previous) / previous (0.05 = +5%). NaN when previous is 0,
 * or either value is not finite. */
double rta_change_fraction(double previous, double current);

#endif
