/*
 * Push channel: Firebase Cloud Messaging HTTP v1, one POST per device token to
 * {fcm_base_url}/v1/projects/{project}/messages:send with a bearer token, carrying a
 * notification (title = subject, body = text) and data {"delivery_id": ...}.
 *
 * Answers: 200 with "name" OK. Token is dead (DISABLE_TARGET): 404 / UNREGISTERED,
 * SENDER_ID_MISMATCH (the token belongs to another sender), 400 INVALID_ARGUMENT about the
 * token. 429 and 5xx RETRY (with Retry-After). 401/403 RETRY as well: they mean our bearer
 * token or project setup is wrong, which an operator fixes, after which the queued pushes should
 * still go out (PERMANENT would drop every push sent while it was broken). Other 4xx PERMANENT.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify/notify_internal.h"

static int valid_token(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

int rta__fcm_setup(notify_xfer *x)
{
    rta_notify *n = x->n;
    const rta_notify_request *r = &x->req;
    if (n->fcm_project == NULL)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "push not configured");
    snprintf(x->host, sizeof x->host, "%s", n->fcm_host);
    if (!valid_token(r->target, 4096))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad device token");
    if (strspn(n->fcm_project,
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
        strlen(n->fcm_project))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad fcm project");
    if (n->fcm_token && !valid_token(n->fcm_token, 8192))
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad fcm token");

    json_t *msg = json_pack("{s:{s:s,s:{s:s,s:s},s:{s:s}}}", "message", "token", r->target,
                            "notification", "title", r->subject ? r->subject : "", "body",
                            r->text ? r->text : "", "data", "delivery_id", r->delivery_id);
    if (msg == NULL) /* invalid UTF-8 in the texts */
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "push text is not valid UTF-8");
    char *body = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    int rc = body ? rta_dbuf_puts(&x->upload, body) : -1;
    free(body);
    if (rc != 0)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "push too large");

    rta_dbuf url;
    rta_dbuf_init(&url, 4096);
    size_t blen = strlen(n->fcm_base_url);
    while (blen > 0 && n->fcm_base_url[blen - 1] == '/')
        blen--;
    rc = rta_dbuf_printf(&url, "%.*s/v1/projects/%s/messages:send%c", (int)blen, n->fcm_base_url,
                         n->fcm_project, '\0');
    CURL *e = rc == 0 ? rta__notify_easy_new(x, url.data) : NULL;
    rta_dbuf_free(&url); /* curl copied it */
    if (e == NULL)
        return rta__notify_fail(x, RTA_NOTIFY_PERMANENT, "bad fcm url");
    char auth[8300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", n->fcm_token ? n->fcm_token : "");
    const char *lines[] = {auth, "Content-Type: application/json; charset=utf-8", "Expect:"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *l = curl_slist_append(x->headers, lines[i]);
        if (l == NULL)
            return rta__notify_fail(x, RTA_NOTIFY_RETRY, "out of memory");
        x->headers = l;
    }
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->upload.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->upload.len);
    return 0;
}

/* What the FCM error body says about the token: 1 = the token is dead. *what gets a short
 * description (errorCode or status) for the error text. */
static int token_is_dead(json_t *root, int code, const char **what)
{
    json_t *err = json_object_get(root, "error");
    const char *status = json_string_value(json_object_get(err, "status"));
    const char *message = json_string_value(json_object_get(err, "message"));
    const char *error_code = NULL;
    int token_field = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(err, "details"), i, d)
    {
        const char *ec = json_string_value(json_object_get(d, "errorCode"));
        if (ec && error_code == NULL)
            error_code = ec;
        size_t j;
        json_t *fv;
        json_array_foreach(json_object_get(d, "fieldViolations"), j, fv)
        {
            const char *field = json_string_value(json_object_get(fv, "field"));
            if (field && strcmp(field, "message.token") == 0)
                token_field = 1;
        }
    }
    *what = error_code ? error_code : status ? status : "";
    const char *c = *what;
    if (strcmp(c, "UNREGISTERED") == 0 || strcmp(c, "SENDER_ID_MISMATCH") == 0)
        return 1;
    if (strcmp(c, "INVALID_ARGUMENT") == 0 &&
        (token_field || (message && strstr(message, "registration token"))))
        return 1;
    return code == 404;
}

void rta__fcm_finish(notify_xfer *x, CURLcode rc)
{
    rta_notify_result *res = &x->res;
    if (rc != CURLE_OK) {
        rta__notify_transport_error(x, rc);
        return;
    }
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    res->status_code = (int)code;
    json_t *root = x->resp.len ? json_loadb(x->resp.data, x->resp.len, 0, NULL) : NULL;
    if (code >= 200 && code < 300) {
        if (json_is_string(json_object_get(root, "name"))) {
            res->outcome = RTA_NOTIFY_OK;
        } else {
            res->outcome = RTA_NOTIFY_RETRY;
            snprintf(res->error, sizeof res->error, "HTTP %ld without a message name", code);
        }
        goto out;
    }
    const char *what = "";
    if (code >= 400 && code < 500 && token_is_dead(root, (int)code, &what))
        res->outcome = RTA_NOTIFY_DISABLE_TARGET;
    else if (code == 401 || code == 403 || code == 408 || code == 429 || code >= 500)
        res->outcome = RTA_NOTIFY_RETRY;
    else
        res->outcome = RTA_NOTIFY_PERMANENT;
    if (res->outcome == RTA_NOTIFY_RETRY)
        res->retry_after_ms = x->retry_after_ms;
    snprintf(res->error, sizeof res->error, "HTTP %ld%s%s", code, what[0] ? ": " : "", what);
out:
    json_decref(root);
}
