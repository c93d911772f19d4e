/*
 * The rtad application: owns every long-lived part (store, keyring, state, bus, event log,
 * query cache, HTTP server, simulator, timers) and wires them together. One per process; all
 * of it runs on one libuv loop thread, except store work (its own thread, see rta/store.h).
 *
 * Lifecycle: rta_app_init (open store, migrate, load keys and state) -> rta_app_start (listen,
 * timers, signals) -> uv_run -> on SIGTERM/SIGINT rta_app_begin_shutdown stops accepting,
 * waits for in-flight requests (bounded by server.shutdown_timeout_ms), flushes state to the
 * store and closes everything -> uv_run returns -> rta_app_free.
 */
#ifndef RTA_APP_H
#define RTA_APP_H

#include <stdint.h>
#include <uv.h>

#include "rta/auth.h"
#include "rta/config.h"
#include "rta/event.h"
#include "rta/http.h"
#include "rta/net.h"
#include "rta/query.h"
#include "rta/state.h"
#include "rta/store.h"

typedef struct rta_app rta_app;

/* Opens the store, runs migrations, bootstraps the admin key, loads keys and state.
 * Returns NULL and logs the reason on failure. */
rta_app *rta_app_init(rta_config *cfg, uv_loop_t *loop);
/* Listens and starts timers and signal handlers. 0 or -1 (logged). */
int rta_app_start(rta_app *app);
/* Starts a graceful shutdown (what SIGTERM does). */
void rta_app_begin_shutdown(rta_app *app, const char *reason);
/* Frees everything; call after uv_run returned. */
void rta_app_free(rta_app *app);

#endif
