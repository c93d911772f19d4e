/*
 * The in-process event bus: numbers each published event with the next offset, appends it to
 * the event log, and hands it synchronously to every subscriber (query cache, WebSocket rooms,
 * alert engine, store, Redis fan-out) in subscription order. Loop thread only.
 */
#include "rta/event.h"
#include "rta/util.h"

#include <stdlib.h>

#define BUS_MAX_SUBSCRIBERS 32

struct rta_bus {
    rta_event_log *log; /* may be NULL */
    struct {
        rta_bus_fn fn;
        void *ud;
    } subs[BUS_MAX_SUBSCRIBERS];
    size_t nsubs;
    uint64_t last_offset;
};

rta_bus *rta_bus_new(rta_event_log *log)
{
    rta_bus *bus = rta_xcalloc(1, sizeof *bus);
    bus->log = log;
    return bus;
}

void rta_bus_free(rta_bus *bus)
{
    free(bus);
}

int rta_bus_subscribe(rta_bus *bus, rta_bus_fn fn, void *ud)
{
    if (bus->nsubs == BUS_MAX_SUBSCRIBERS)
        return -1;
    bus->subs[bus->nsubs].fn = fn;
    bus->subs[bus->nsubs].ud = ud;
    bus->nsubs++;
    return 0;
}

void rta_bus_publish(rta_bus *bus, rta_event *e)
{
    rta_event_ref(e); /* keep it alive while subscribers run, whatever they do */
    e->offset = ++bus->last_offset;
    if (e->json) { /* encoded before it had an offset: encode again */
        rta_rbuf_unref(e->json);
        e->json = NULL;
    }
    if (bus->log)
        rta_event_log_append(bus->log, e);
    for (size_t i = 0; i < bus->nsubs; i++)
        bus->subs[i].fn(bus->subs[i].ud, e);
    rta_event_unref(e);
}

uint64_t rta_bus_last_offset(const rta_bus *bus)
{
    return bus->last_offset;
}

void rta_bus_set_last_offset(rta_bus *bus, uint64_t offset)
{
    bus->last_offset = offset;
    if (bus->log)
        rta_event_log_mark_lost(bus->log, offset);
}
