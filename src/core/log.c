/* Structured JSON-lines logger; see rta/log.h. */
#include "rta/log.h"
#include "rta/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static rta_log_level min_level = RTA_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void rta_log_set_level(rta_log_level level)
{
    min_level = level;
}

int rta_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void rta_log_json(rta_log_level level, const char *msg, json_t *fields)
{
    if (level < min_level) {
        json_decref(fields);
        return;
    }
    char ts[40];
    rta_time_iso8601(rta_now_ms(), ts, sizeof ts);
    json_t *line = json_pack("{s:s,s:s,s:s}", "time", ts, "level", level_names[level], "msg", msg);
    if (fields != NULL && json_is_object(fields))
        json_object_update_missing(line, fields);
    json_decref(fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* overwrite the NUL: one write per line keeps lines whole */
    ssize_t rc = write(STDERR_FILENO, text, len + 1);
    (void)rc;
    free(text);
}

void rta_log(rta_log_level level, const char *msg, const char *fields_fmt, ...)
{
    if (level < min_level)
        return;
    json_t *fields = NULL;
    if (fields_fmt != NULL) {
        va_list ap;
        va_start(ap, fields_fmt);
        json_error_t err;
        fields = json_vpack_ex(&err, 0, fields_fmt, ap);
        va_end(ap);
        if (fields == NULL)
            fields = json_pack("{s:s}", "log_format_error", err.text);
    }
    rta_log_json(level, msg, fields);
}
