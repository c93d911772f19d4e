/*
 * Structured logging: one JSON object per line on stderr.
 *
 *   {"time":"2026-11-27T14:00:00.123Z","level":"info","msg":"listening","host":"127.0.0.1"}
 *
 * Fields are given as a jansson json_pack() object format, so a call site reads like the
 * line it prints:
 *
 *   rta_log(RTA_LOG_INFO, "listening", "{s:s,s:i}", "host", host, "port", port);
 *
 * Pass NULL as the format for no fields. Safe to call from any thread (one write(2) per line).
 */
#ifndef RTA_LOG_H
#define RTA_LOG_H

#include <jansson.h>

typedef enum { RTA_LOG_DEBUG = 0, RTA_LOG_INFO, RTA_LOG_WARN, RTA_LOG_ERROR } rta_log_level;

/* Sets the minimum level printed (default info). */
void rta_log_set_level(rta_log_level level);
/* Parses "debug" | "info" | "warn" | "error"; returns -1 when unknown. */
int rta_log_level_parse(const char *s);

void rta_log(rta_log_level level, const char *msg, const char *fields_fmt, ...);
/* Same, with an already built object of fields (stolen; may be NULL). */
void rta_log_json(rta_log_level level, const char *msg, json_t *fields);

#endif
