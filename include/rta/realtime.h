/*
 * The rta realtime API: namespace /v1/realtime over Socket.IO, and the plain WebSocket JSON
 * endpoint /v1/realtime/ws. Owns clients, subscriptions, rooms and the fan-out of bus events.
 *
 * Subscriptions (payloads of spec 2.3.1 plus price feeds):
 *   {type:"protocol", protocol, chain?}   room "protocol:<p>" (every chain) or "protocol:<p>:<c>"
 *   {type:"tvl_changes", threshold}       tvl_change events with |changePercent| >= threshold
 *   {type:"price", token}                 room "price:<token>"
 *   {type:"price_changes", threshold}     price_change events with |changePercent| >= threshold
 * A client receives each event once even when several subscriptions match.
 *
 * Fan-out: each event is encoded once per wire format (Socket.IO text + its WebSocket frame,
 * plain-WS frame) into refcounted buffers shared by every recipient's write. A client whose
 * backlog passes the cap is handled by the slow-consumer policy: "disconnect" (default, with a
 * stated reason; recovery then replays what it missed) or "drop" (events skipped, a `lagged`
 * notice with the missed offsets once it catches up).
 *
 * Missed-event recovery: Socket.IO connection state recovery (pid + offset in the CONNECT auth);
 * plain WebSocket {"op":"resume","offset":N}. Replayed events come from the event log in order.
 */
#ifndef RTA_REALTIME_H
#define RTA_REALTIME_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rta/auth.h"
#include "rta/event.h"
#include "rta/http.h"
#include "rta/store.h"

typedef struct rta_rt rta_rt;

typedef struct rta_rt_options {
    size_t max_subscriptions;       /* per connection (default 100) */
    size_t max_queued_bytes;        /* per connection backlog cap (default 1 MiB) */
    int slow_consumer_drop;         /* 0 = disconnect (default), 1 = drop + lagged notice */
    const char *threshold_min_tier; /* lowest tier allowed threshold feeds (default "pro") */
    uint64_t recovery_window_ms;    /* how long a Socket.IO session can be recovered (120000) */
    size_t recovery_max_sessions;   /* saved sessions kept (default 10000) */
    size_t replay_max_events;       /* most events replayed on one recovery (default 10000) */
    uint64_t ws_idle_timeout_ms;    /* plain WS: close when silent this long (default 120000) */
    uint64_t ping_interval_ms;      /* Engine.IO (default 25000) */
    uint64_t ping_timeout_ms;       /* Engine.IO (default 20000) */
    int permessage_deflate;         /* plain WS: accept permessage-deflate offers (default 0) */
    int sio_permessage_deflate;     /* Socket.IO WebSocket transport: the same (default 0) */
    const rta_tier *tiers;          /* RTA_TIER_COUNT entries, borrowed for the hub's life */
} rta_rt_options;

void rta_rt_options_default(rta_rt_options *o);

rta_rt *rta_rt_new(uv_loop_t *loop, const rta_rt_options *opts, rta_keyring *keys,
                   rta_event_log *log, rta_store *store, const char *cors_origins);
void rta_rt_free(rta_rt *rt);
/* The server's connections: with writer threads, fan-out is paced by their progress. */
void rta_rt_set_net(rta_rt *rt, rta_net *net);

/* Bus subscriber: fans an event out to matching clients (use with rta_bus_subscribe). */
void rta_rt_on_event(void *rt, rta_event *e);

/* HTTP integration: returns 1 and takes the request when it belongs to the realtime API
 * (Socket.IO polling under /socket.io/). */
int rta_rt_handle_http(rta_rt *rt, rta_http_req *req);
/* Upgrade requests: /socket.io/ (Socket.IO websocket) and /v1/realtime/ws (plain WS).
 * Returns 1 when taken, 0 when the path is not a realtime one. */
int rta_rt_handle_upgrade(rta_rt *rt, rta_http_req *req, rta_conn *conn, const char *leftover,
                          size_t len);
/* Closes every realtime connection made with this key (it was revoked): Socket.IO clients get
 * a server disconnect, plain WS clients close 1008 "key revoked". */
void rta_rt_revoke_key(rta_rt *rt, const char *key_id);
/* Emits `event` with payload (borrowed) to every live connection of the user: Socket.IO
 * clients get it as an event, plain WS clients as {"type":event,"data":payload}. */
void rta_rt_notify_user(rta_rt *rt, const char *user_id, const char *event, json_t *payload);
/* Closes every client with "server shutting down" (close code 1001 for plain WS). */
void rta_rt_shutdown(rta_rt *rt);

/* Engine.IO sessions and plain WebSocket clients still open (shutdown waits for 0). */
size_t rta_rt_open_sessions(const rta_rt *rt);
/* The Engine.IO/Socket.IO server's protocol counters (for /metrics). */
const struct rta_sio_stats *rta_rt_sio_stats(const rta_rt *rt);
/* Counts for metrics and health. */
typedef struct rta_rt_stats {
    size_t clients_sio, clients_ws;
    size_t subs_protocol, subs_tvl_changes, subs_price, subs_price_changes;
    uint64_t events_in, deliveries, bytes_out, messages_in;
    uint64_t slow_disconnects, slow_drops, auth_failures, replayed;
} rta_rt_stats;
const rta_rt_stats *rta_rt_get_stats(const rta_rt *rt);

#endif
