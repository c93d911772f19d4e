/*
 * libcurl multi <-> libuv glue. curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION)
 * and when it next needs a timeout (CURLMOPT_TIMERFUNCTION); we keep one uv_poll_t per socket
 * and one uv_timer_t, and feed readiness and timer expiry back with curl_multi_socket_action.
 * Finished transfers are collected with curl_multi_info_read after every action.
 *
 * Each socket context is attached to its socket with curl_multi_assign, so curl hands it back
 * on later calls; CURL_POLL_REMOVE stops the poll at once (libuv then forgets the fd, which
 * curl may reuse for a new socket) and the memory goes in the close callback.
 */
#include <stdlib.h>

#include "notify/notify_internal.h"
#include "rta/log.h"
#include "rta/util.h"

struct notify_sock {
    uv_poll_t poll;
    rta_notify *n;
    curl_socket_t fd;
    notify_sock *prev, *next;
};

static void check_multi_info(rta_notify *n)
{
    CURLMsg *msg;
    int pending;
    while (n->multi && (msg = curl_multi_info_read(n->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result; /* msg is invalid after remove_handle */
        notify_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(n->multi, easy);
        rta__notify_finished(x, rc);
    }
}

static void on_sock_closed(uv_handle_t *h)
{
    notify_sock *s = h->data;
    rta_notify *n = s->n;
    free(s);
    rta__notify_handle_closed(n);
}

static void sock_close(notify_sock *s)
{
    rta_notify *n = s->n;
    if (s->prev)
        s->prev->next = s->next;
    else
        n->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    notify_sock *s = h->data;
    rta_notify *n = s->n;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(n->multi, s->fd, flags, &running); /* may close s */
    check_multi_info(n);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    rta_notify *n = userp;
    notify_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(n->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = rta_xcalloc(1, sizeof *s);
        if (uv_poll_init_socket(n->loop, &s->poll, fd) != 0) {
            free(s);
            rta_log(RTA_LOG_ERROR, "notify: cannot watch socket", "{s:i}", "fd", (int)fd);
            return -1;
        }
        s->poll.data = s;
        s->n = n;
        s->fd = fd;
        s->next = n->socks;
        if (n->socks)
            n->socks->prev = s;
        n->socks = s;
        n->open_handles++;
        curl_multi_assign(n->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    rta_notify *n = t->data;
    int running;
    curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(n);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    rta_notify *n = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&n->timer);
    else /* 0 = as soon as possible: next loop iteration, never from inside curl */
        uv_timer_start(&n->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

int rta__curl_uv_init(rta_notify *n)
{
    n->multi = curl_multi_init();
    if (n->multi == NULL)
        return -1;
    curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n);
    curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n);
    uv_timer_init(n->loop, &n->timer);
    n->timer.data = n;
    n->open_handles++;
    return 0;
}

int rta__curl_uv_add(rta_notify *n, notify_xfer *x)
{
    return curl_multi_add_handle(n->multi, x->easy) == CURLM_OK ? 0 : -1;
}

static void on_timer_closed(uv_handle_t *h)
{
    rta__notify_handle_closed(h->data);
}

void rta__curl_uv_shutdown(rta_notify *n)
{
    uv_timer_stop(&n->timer);
    if (n->multi) {
        /* closes cached connections; curl reports their sockets with CURL_POLL_REMOVE */
        curl_multi_cleanup(n->multi);
        n->multi = NULL;
    }
    while (n->socks)
        sock_close(n->socks);
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}
