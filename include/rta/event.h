/*
 * RealtimeEvent (spec 2.2.3), the in-process event bus, and the bounded event log.
 *
 * Events are refcounted and immutable once published. The bus assigns each published event
 * a monotonically increasing offset (starting at 1), appends it to the log (which holds a
 * reference) and calls every subscriber synchronously on the loop thread. Subscribers take a
 * reference if they keep the event past the callback.
 */
#ifndef RTA_EVENT_H
#define RTA_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rta/buf.h"

typedef enum {
    RTA_EVENT_TVL_CHANGE = 0,
    RTA_EVENT_PRICE_CHANGE,
    RTA_EVENT_PROTOCOL_UPDATE,
} rta_event_type;

typedef struct rta_event {
    unsigned refcnt;
    uint64_t offset; /* set by rta_bus_publish */
    char id[37];     /* UUIDv7 */
    rta_event_type type;
    char *protocol; /* tvl/protocol events: protocol slug; price events: token id */
    char *chain;    /* tvl: chain; price: token's chain prefix ("coingecko", "ethereum") */
    char *token;    /* price events only, else NULL */
    int has_previous;
    double previous; /* when has_previous */
    double current;
    double change;      /* fraction; NaN when unknown (no previous, or previous == 0) */
    int64_t data_ts_ms; /* timestamp of the data point */
    int64_t created_us; /* when rtad produced the event (wall clock, us) */
    char *source;       /* "ingest", "simulator", "postgres", "defillama" */
    double confidence;  /* 0..1 */
    json_t *tags;       /* array of strings, owned */
    json_t *update;     /* protocol_update: object of changed fields {"name":..,"category":..,
                           "chains_added":[..]}; NULL otherwise; owned */
    rta_rbuf *json;     /* the encoded RealtimeEvent, built on first rta_event_json() */
} rta_event;

/* New event with refcnt 1, id set, created_us = now; strings copied (NULL allowed). */
rta_event *rta_event_new(rta_event_type type, const char *protocol, const char *chain,
                         const char *token, const char *source);
rta_event *rta_event_ref(rta_event *e);
void rta_event_unref(rta_event *e);
const char *rta_event_type_name(rta_event_type t);

/* The spec's RealtimeEvent as JSON, plus "offset" (and "token" for prices):
 * {eventId, eventType, protocol, chain, data:{previousValue, currentValue, changePercent,
 *  timestamp}, metadata:{source, confidence, tags}, createdAt, offset}
 * Encoded once and cached in e->json; the returned rbuf is borrowed (ref it to keep it). */
rta_rbuf *rta_event_json(rta_event *e);
/* Same content as a new json_t (caller owns). */
json_t *rta_event_to_json(const rta_event *e);

/* ---- event log: bounded by count and age ---- */
typedef struct rta_event_log rta_event_log;

rta_event_log *rta_event_log_new(size_t max_events, int64_t max_age_ms);
void rta_event_log_free(rta_event_log *log);
void rta_event_log_append(rta_event_log *log, rta_event *e); /* takes a reference */
/* Drops events older than max_age (call from a timer; append also trims by count). */
void rta_event_log_trim(rta_event_log *log, int64_t now_ms);
/* Copies up to limit borrowed pointers of events with offset > after, oldest first, into out.
 * Returns how many. *complete is 1 when no event after `after` has been dropped from the log
 * (the reader missed nothing), 0 when the log no longer holds offset after+1. */
size_t rta_event_log_read(const rta_event_log *log, uint64_t after, rta_event **out, size_t limit,
                          int *complete);
uint64_t rta_event_log_first_offset(const rta_event_log *log); /* 0 when empty */
uint64_t rta_event_log_last_offset(const rta_event_log *log);  /* 0 when empty */
size_t rta_event_log_count(const rta_event_log *log);
/* Records that events up to `upto` exist but are not held (a previous run's): readers asking
 * for them are told the log is incomplete. */
void rta_event_log_mark_lost(rta_event_log *log, uint64_t upto);

/* ---- bus ---- */
typedef struct rta_bus rta_bus;
typedef void (*rta_bus_fn)(void *ud, rta_event *e);

rta_bus *rta_bus_new(rta_event_log *log); /* log may be NULL */
void rta_bus_free(rta_bus *bus);
/* Subscribers are called in subscription order. Returns 0, -1 when the table is full (32). */
int rta_bus_subscribe(rta_bus *bus, rta_bus_fn fn, void *ud);
/* Assigns the next offset, logs, and delivers. The bus takes its own references. */
void rta_bus_publish(rta_bus *bus, rta_event *e);
uint64_t rta_bus_last_offset(const rta_bus *bus);
/* For restart: continue numbering after this offset (the log learns that earlier offsets are
 * not held). */
void rta_bus_set_last_offset(rta_bus *bus, uint64_t offset);

#endif
