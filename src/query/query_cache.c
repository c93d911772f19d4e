/*
 * Result cache for the advanced query engine: canonical query text -> encoded response body,
 * valid for one state version.
 *
 * One entry per canonical query (a newer version replaces the older body instead of adding an
 * entry, so a busy state does not fill the cache with dead versions). Entries sit in a uthash
 * table and a doubly linked LRU list; puts evict from the cold end until both the entry count
 * and the byte total (key + body + a fixed per-entry overhead) are within bounds.
 */
#include "rta/query.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "rta/util.h"

#define ENTRY_OVERHEAD 128 /* approximate bytes of bookkeeping per entry */

typedef struct entry {
    char *key;
    char *body;
    size_t len;
    uint64_t version;
    struct entry *prev, *next; /* LRU: head = most recent */
    UT_hash_handle hh;
} entry;

struct rta_query_cache {
    entry *table;
    entry *head, *tail;
    size_t count, bytes;
    size_t max_entries, max_bytes;
};

static size_t entry_bytes(const entry *e)
{
    return strlen(e->key) + e->len + ENTRY_OVERHEAD;
}

static void lru_unlink(rta_query_cache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(rta_query_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void entry_remove(rta_query_cache *c, entry *e)
{
    HASH_DEL(c->table, e);
    lru_unlink(c, e);
    c->count--;
    c->bytes -= entry_bytes(e);
    free(e->key);
    free(e->body);
    free(e);
}

rta_query_cache *rta_query_cache_new(size_t max_entries, size_t max_bytes)
{
    rta_query_cache *c = rta_xcalloc(1, sizeof *c);
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    return c;
}

void rta_query_cache_free(rta_query_cache *c)
{
    if (!c)
        return;
    while (c->head)
        entry_remove(c, c->head);
    free(c);
}

const char *rta_query_cache_get(rta_query_cache *c, const char *canonical, uint64_t version,
                                size_t *len)
{
    entry *e = NULL;
    HASH_FIND_STR(c->table, canonical, e);
    if (!e || e->version != version)
        return NULL;
    lru_unlink(c, e);
    lru_push_front(c, e);
    if (len)
        *len = e->len;
    return e->body;
}

void rta_query_cache_put(rta_query_cache *c, const char *canonical, uint64_t version,
                         const char *body, size_t len)
{
    entry *old = NULL;
    HASH_FIND_STR(c->table, canonical, old);
    if (old)
        entry_remove(c, old);
    size_t need = strlen(canonical) + len + ENTRY_OVERHEAD;
    if (c->max_entries == 0 || need > c->max_bytes)
        return; /* would never fit */
    while (c->tail && (c->count + 1 > c->max_entries || c->bytes + need > c->max_bytes))
        entry_remove(c, c->tail);

    entry *e = rta_xcalloc(1, sizeof *e);
    e->key = rta_strdup(canonical);
    e->body = rta_xmalloc(len + 1);
    memcpy(e->body, body, len);
    e->body[len] = '\0';
    e->len = len;
    e->version = version;
    HASH_ADD_KEYPTR(hh, c->table, e->key, strlen(e->key), e);
    lru_push_front(c, e);
    c->count++;
    c->bytes += need;
}

size_t rta_query_cache_count(const rta_query_cache *c)
{
    return c->count;
}
