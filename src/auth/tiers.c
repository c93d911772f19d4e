/*
 * Tiers (per-key quotas of spec 4.3.1) and roles (named sets of permission bits).
 *
 * The tier table is a small value array owned by the caller (config may override the
 * defaults); roles are fixed in code because every route checks permission bits, not names.
 */
#include <stdio.h>
#include <string.h>

#include "rta/auth.h"
#include "rta/util.h"

/* Fills tiers with the defaults of spec 4.3.1: free, pro, enterprise (in that order). */
void rta_tiers_defaults(rta_tier tiers[RTA_TIER_COUNT])
{
    static const rta_tier defaults[RTA_TIER_COUNT] = {
        {"free", 5, 100, 60, 5},
        {"pro", 50, 1000, 600, 100},
        {"enterprise", 1000, 10000, 6000, 1000},
    };
    memcpy(tiers, defaults, sizeof defaults);
}

/* The tier named name (exact, case-sensitive), or NULL. */
const rta_tier *rta_tier_find(const rta_tier tiers[RTA_TIER_COUNT], const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < RTA_TIER_COUNT; i++)
        if (strcmp(tiers[i].name, name) == 0)
            return &tiers[i];
    return NULL;
}

static const struct {
    const char *name;
    uint32_t perms;
} roles[] = {
    {"admin", RTA_PERM_READ | RTA_PERM_QUERY | RTA_PERM_INGEST | RTA_PERM_ADMIN |
                  RTA_PERM_SUBSCRIBE | RTA_PERM_ALERTS},
    {"user", RTA_PERM_READ | RTA_PERM_QUERY | RTA_PERM_SUBSCRIBE | RTA_PERM_ALERTS},
    {"ingest", RTA_PERM_READ | RTA_PERM_INGEST},
    {"reader", RTA_PERM_READ | RTA_PERM_SUBSCRIBE},
};

/* Permission bits of a role; 0 when the role is unknown (or NULL). */
uint32_t rta_role_perms(const char *role)
{
    if (!role)
        return 0;
    for (size_t i = 0; i < RTA_ARRAY_LEN(roles); i++)
        if (strcmp(roles[i].name, role) == 0)
            return roles[i].perms;
    return 0;
}

/* 1 when role names a known role. */
int rta_role_valid(const char *role)
{
    return rta_role_perms(role) != 0;
}

static const struct {
    uint32_t bit;
    const char *name;
} perm_names[] = {
    {RTA_PERM_READ, "read"},   {RTA_PERM_QUERY, "query"},         {RTA_PERM_INGEST, "ingest"},
    {RTA_PERM_ADMIN, "admin"}, {RTA_PERM_SUBSCRIBE, "subscribe"}, {RTA_PERM_ALERTS, "alerts"},
};

/* Comma-separated names of the bits set in perms, in bit order ("" for none). Writes at most
 * len bytes, always NUL-terminated when len > 0; names that do not fit whole are left out. */
void rta_perms_format(uint32_t perms, char *buf, size_t len)
{
    if (len == 0)
        return;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < RTA_ARRAY_LEN(perm_names); i++) {
        if (!(perms & perm_names[i].bit))
            continue;
        size_t need = strlen(perm_names[i].name) + (used ? 1 : 0);
        if (used + need + 1 > len)
            break;
        if (used)
            buf[used++] = ',';
        memcpy(buf + used, perm_names[i].name, strlen(perm_names[i].name) + 1);
        used += strlen(perm_names[i].name);
    }
}
