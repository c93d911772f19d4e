/*
 * rtad: the real-time analytics server, and its key management commands.
 *
 *   rtad [options]                       run the server
 *   rtad [options] keys create --user U [--tier T] [--role R] [--label L]
 *   rtad [options] keys list
 *   rtad [options] keys revoke ID
 */
#include "rta/app.h"
#include "rta/auth.h"
#include "rta/config.h"
#include "rta/log.h"
#include "rta/util.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *out)
{
    fputs("usage: rtad [options]\n"
          "       rtad [options] keys create --user USER [--tier free|pro|enterprise]\n"
          "                                 [--role user|reader|ingest|admin] [--label TEXT]\n"
          "       rtad [options] keys list\n"
          "       rtad [options] keys revoke KEY_ID\n"
          "\n"
          "options:\n"
          "  --config FILE          INI configuration file (see docs/configuration.md)\n"
          "  --listen HOST:PORT     HTTP listener (default 127.0.0.1:8080)\n"
          "  --data-dir DIR         data directory (default ./var)\n"
          "  --simulate             feed simulated market data (labelled as simulated)\n"
          "  --log-level LEVEL      debug | info | warn | error\n"
          "  --set SECTION.KEY=VAL  set any configuration option\n"
          "  --print-config         print the effective configuration (secrets masked) and exit\n"
          "  --version              print the version and exit\n"
          "  -h, --help             this help\n"
          "\n"
          "Precedence: defaults < config file < RTA_* environment < flags.\n"
          "Environment: RTA_<SECTION>_<KEY> (e.g. RTA_STORE_PATH); [server] options also as\n"
          "RTA_<KEY> (RTA_LISTEN, RTA_DATA_DIR, RTA_ADMIN_KEY).\n",
          out);
}

static int die(const char *msg)
{
    fprintf(stderr, "rtad: %s\n", msg);
    return 2;
}

static int set_dotted(rta_config *cfg, const char *spec, char *err, size_t errlen)
{
    const char *eq = strchr(spec, '=');
    const char *dot = eq ? memrchr(spec, '.', (size_t)(eq - spec)) : NULL;
    if (eq == NULL || dot == NULL) {
        snprintf(err, errlen, "--set expects SECTION.KEY=VALUE, got \"%s\"", spec);
        return -1;
    }
    char section[64], key[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - spec), spec);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    return rta_config_set(cfg, section, key, eq + 1, err, errlen);
}

/* ---- keys subcommands: run against the configured store, synchronously ---- */

static rta_store *open_store(rta_config *cfg)
{
    mkdir(cfg->data_dir, 0755);
    char *err = NULL;
    rta_store *s = rta_store_open(cfg->store_kind, cfg->store_path, &err);
    if (s == NULL) {
        fprintf(stderr, "rtad: cannot open the store %s: %s\n", cfg->store_path,
                err ? err : "unknown error");
        free(err);
    }
    return s;
}

static int keys_command(rta_config *cfg, int argc, char **argv)
{
    if (argc < 1)
        return die("keys: expected create, list or revoke");
    rta_store *s = open_store(cfg);
    if (s == NULL)
        return 1;
    int rc = 0;
    int64_t now = rta_now_ms();
    if (strcmp(argv[0], "create") == 0) {
        const char *user = NULL, *tier = "free", *role = "user", *label = NULL;
        for (int i = 1; i < argc; i++) {
            if (i + 1 < argc && strcmp(argv[i], "--user") == 0)
                user = argv[++i];
            else if (i + 1 < argc && strcmp(argv[i], "--tier") == 0)
                tier = argv[++i];
            else if (i + 1 < argc && strcmp(argv[i], "--role") == 0)
                role = argv[++i];
            else if (i + 1 < argc && strcmp(argv[i], "--label") == 0)
                label = argv[++i];
            else {
                fprintf(stderr, "rtad: keys create: unexpected argument %s\n", argv[i]);
                rc = 2;
                goto out;
            }
        }
        if (user == NULL || user[0] == '\0') {
            rc = die("keys create: --user is required");
            goto out;
        }
        if (rta_tier_find(cfg->tiers, tier) == NULL) {
            rc = die("keys create: --tier must be free, pro or enterprise");
            goto out;
        }
        if (!rta_role_valid(role)) {
            rc = die("keys create: --role must be user, reader, ingest or admin");
            goto out;
        }
        rta_key_record rec;
        char text[RTA_KEY_TEXT_MAX];
        rta_key_generate(user, tier, role, label, now, &rec, text);
        if (s->ops->user_ensure(s->db, user, now) != 0 || s->ops->key_insert(s->db, &rec) != 0) {
            rc = die("keys create: the store refused the key");
        } else {
            rta_store_audit(s, "cli", "key.create", rec.id, NULL, NULL,
                            json_pack("{s:s,s:s,s:s}", "user", user, "tier", tier, "role", role));
            printf("id:   %s\nuser: %s\ntier: %s\nrole: %s\nkey:  %s\n\n"
                   "The key is shown once: store it now.\n",
                   rec.id, user, tier, role, text);
        }
        rta_key_record_free_fields(&rec);
    } else if (strcmp(argv[0], "list") == 0) {
        rta_key_record *recs = NULL;
        size_t n = 0;
        if (s->ops->key_list(s->db, &recs, &n) != 0) {
            rc = die("keys list: cannot read the store");
            goto out;
        }
        printf("%-18s %-20s %-11s %-7s %-24s %s\n", "ID", "USER", "TIER", "ROLE", "CREATED",
               "STATUS");
        for (size_t i = 0; i < n; i++) {
            char created[40];
            rta_time_iso8601(recs[i].created_ms, created, sizeof created);
            printf("%-18s %-20s %-11s %-7s %-24s %s\n", recs[i].id, recs[i].user_id, recs[i].tier,
                   recs[i].role, created, recs[i].revoked_ms ? "revoked" : "active");
            rta_key_record_free_fields(&recs[i]);
        }
        free(recs);
    } else if (strcmp(argv[0], "revoke") == 0 && argc == 2) {
        int r = s->ops->key_revoke(s->db, argv[1], now);
        if (r == 1) {
            fprintf(stderr, "rtad: keys revoke: no active key %s\n", argv[1]);
            rc = 1;
        } else if (r != 0) {
            rc = die("keys revoke: the store refused the change");
        } else {
            rta_store_audit(s, "cli", "key.revoke", argv[1], NULL, NULL, NULL);
            printf("revoked %s\n", argv[1]);
        }
    } else {
        rc = die("keys: expected create, list or revoke ID");
    }
out:
    rta_store_close(s);
    return rc;
}

int main(int argc, char **argv)
{
    static rta_config cfg;
    char err[512];
    rta_config_init(&cfg);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit nofile; /* every client is a descriptor: take all the system allows */
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    /* the config file first, so the environment and flags can override it */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            puts("rtad 0.1.0");
            return 0;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            if (rta_config_load_file(&cfg, argv[i + 1], err, sizeof err) != 0)
                return die(err);
            free(cfg.config_path);
            cfg.config_path = rta_strdup(argv[i + 1]);
        }
    }
    if (rta_config_load_env(&cfg, NULL, err, sizeof err) != 0)
        return die(err);

    int print_config = 0, i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--config") == 0 && v) {
            i++;
        } else if (strcmp(a, "--listen") == 0 && v) {
            rc = rta_config_set(&cfg, "server", "listen", v, err, sizeof err);
            i++;
        } else if (strcmp(a, "--data-dir") == 0 && v) {
            rc = rta_config_set(&cfg, "server", "data_dir", v, err, sizeof err);
            i++;
        } else if (strcmp(a, "--log-level") == 0 && v) {
            rc = rta_config_set(&cfg, "server", "log_level", v, err, sizeof err);
            i++;
        } else if (strcmp(a, "--set") == 0 && v) {
            rc = set_dotted(&cfg, v, err, sizeof err);
            i++;
        } else if (strcmp(a, "--simulate") == 0) {
            rc = rta_config_set(&cfg, "simulator", "enabled", "true", err, sizeof err);
        } else if (strcmp(a, "--print-config") == 0) {
            print_config = 1;
        } else if (a[0] != '-') {
            break; /* subcommand */
        } else {
            fprintf(stderr, "rtad: unknown or incomplete option %s\n\n", a);
            usage(stderr);
            return 2;
        }
        if (rc != 0)
            return die(err);
    }
    if (rta_config_finish(&cfg, err, sizeof err) != 0)
        return die(err);
    int level = rta_log_level_parse(cfg.log_level);
    if (level < 0)
        return die("server.log_level: expected debug, info, warn or error");
    rta_log_set_level((rta_log_level)level);
    if (print_config) {
        rta_config_print(&cfg);
        rta_config_free(&cfg);
        return 0;
    }
    if (i < argc) {
        int rc = strcmp(argv[i], "keys") == 0 ? keys_command(&cfg, argc - i - 1, argv + i + 1)
                                              : die("unknown command (expected: keys)");
        rta_config_free(&cfg);
        return rc;
    }

    uv_loop_t *loop = uv_default_loop();
    rta_app *app = rta_app_init(&cfg, loop);
    if (app == NULL) {
        rta_config_free(&cfg);
        return 1;
    }
    int rc = rta_app_start(app) == 0 ? 0 : 1;
    if (rc != 0)
        rta_app_begin_shutdown(app, "startup failure");
    uv_run(loop, UV_RUN_DEFAULT);
    rta_app_free(app);
    uv_loop_close(loop);
    rta_config_free(&cfg);
    return rc;
}
