/*
 * web_config.c: the settings of `arena serve`, from one table.
 *
 * Each setting has a flag (--db-pool-size), an environment variable
 * (ARENA_DB_POOL_SIZE unless the row names another, like DATABASE_URL), a
 * config file key (db_pool_size) and a default, written as text and parsed
 * by the same code as every other source, so --help shows exactly what
 * applies. Sources are applied lowest first: default, file, environment,
 * flags; each overwrites the last.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "web.h"

#ifndef ARENA_STATIC_DIR
#define ARENA_STATIC_DIR "static"
#endif

enum opt_type { OPT_INT, OPT_BYTES, OPT_STR, OPT_BOOL, OPT_LEVEL };

struct opt {
    const char *name; /* flag without "--"; file key has '_' for '-' */
    const char *env;  /* NULL: ARENA_ + name in upper case, '-' -> '_' */
    enum opt_type type;
    size_t offset; /* in struct web_config */
    long long min, max;
    const char *def; /* default, as text */
    const char *help;
};

#define F(field) offsetof(struct web_config, field)

static const struct opt opts[] = {
    {"listen", NULL, OPT_STR, F(listen), 0, 0, "127.0.0.1",
     "address to listen on (0.0.0.0: every interface)"},
    {"port", NULL, OPT_INT, F(port), 0, 65535, "8080",
     "TCP port; 0 picks a free one"},
    {"trusted-proxies", NULL, OPT_STR, F(trusted_proxies), 0, 0, "",
     "peers whose X-Real-IP is believed (a,b)"},
    {"port-file", NULL, OPT_STR, F(port_file), 0, 0, "",
     "write the bound port here once listening"},
    {"threads", NULL, OPT_INT, F(threads), 2, 10000, "64",
     "workers = connections served at once"},
    {"max-body", NULL, OPT_BYTES, F(max_body), 1, 1LL << 30, "1m",
     "largest request body (bytes; k, m suffixes)"},
    {"request-timeout", NULL, OPT_INT, F(request_timeout_ms), 100, 3600000,
     "30000", "socket read/write timeout (ms)"},
    {"shutdown-timeout", NULL, OPT_INT, F(shutdown_timeout_s), 1, 3600, "10",
     "time in-flight requests get at stop (s)"},
    {"static-dir", NULL, OPT_STR, F(static_dir), 0, 0, ARENA_STATIC_DIR,
     "directory of the pages served under /"},
    {"data-dir", NULL, OPT_STR, F(data_dir), 0, 0, "./var",
     "embedded database (DIR/pg), keys"},
    {"models-dir", NULL, OPT_STR, F(models_dir), 0, 0, "",
     "directory of model files to offer"},
    {"secret-key-file", NULL, OPT_STR, F(secret_key_file), 0, 0, "",
     "cookie signing key (default DATA_DIR/secret.key)"},
    {"database-url", "DATABASE_URL", OPT_STR, F(database_url), 0, 0, "",
     "libpq URL; empty: embedded PostgreSQL"},
    {"db-pool-size", NULL, OPT_INT, F(db_pool_size), 1, 1000, "8",
     "database connections"},
    {"db-wait", NULL, OPT_INT, F(db_wait_ms), 1, 600000, "5000",
     "wait for a free database connection (ms)"},
    {"statement-timeout", NULL, OPT_INT, F(statement_timeout_ms), 0, 86400000,
     "5000", "cancel longer SQL statements (ms; 0: never)"},
    {"admin-token", NULL, OPT_STR, F(admin_token), 0, 0, "",
     "admin API bearer token (empty: API off)"},
    {"admin-password", NULL, OPT_STR, F(admin_password), 0, 0, "",
     "admin sign-in password (empty: no sign-in)"},
    {"v1-keys", NULL, OPT_STR, F(v1_keys), 0, 0, "",
     "API keys /v1 accepts as Bearer (a,b); none: this machine only"},
    {"battle-max-turns", NULL, OPT_INT, F(battle_max_turns), 1, 1000, "8",
     "turns per battle"},
    {"prompt-max-bytes", NULL, OPT_INT, F(prompt_max_bytes), 1, 1 << 24,
     "16384", "largest prompt of one turn (bytes)"},
    {"answer-max-tokens", NULL, OPT_INT, F(answer_max_tokens), 1, 1 << 20,
     "256", "longest answer (tokens)"},
    {"sampling", NULL, OPT_STR, F(sampling), 0, 0, "weighted",
     "pair sampling: weighted or active"},
    {"limit-battles", NULL, OPT_INT, F(limit_battles), 0, 1000000, "20",
     "new battles per visitor per minute (0: no limit)"},
    {"limit-turns", NULL, OPT_INT, F(limit_turns), 0, 1000000, "30",
     "turns per visitor per minute (0: no limit)"},
    {"limit-votes", NULL, OPT_INT, F(limit_votes), 0, 1000000, "30",
     "votes per visitor per minute (0: no limit)"},
    {"limit-ip-battles", NULL, OPT_INT, F(limit_ip_battles), 0, 1000000, "60",
     "new battles per IP address per minute (0: no limit)"},
    {"limit-ip-turns", NULL, OPT_INT, F(limit_ip_turns), 0, 1000000, "120",
     "turns per IP address per minute (0: no limit)"},
    {"limit-ip-votes", NULL, OPT_INT, F(limit_ip_votes), 0, 1000000, "120",
     "votes per IP address per minute (0: no limit)"},
    {"daily-votes", NULL, OPT_INT, F(daily_votes), 0, 100000000, "500",
     "votes per visitor per UTC day (0: no cap)"},
    {"vote-writers", NULL, OPT_INT, F(vote_writers), 1, 64, "2",
     "threads committing votes in groups"},
    {"vote-batch", NULL, OPT_INT, F(vote_batch), 1, 10000, "64",
     "votes per transaction at most"},
    {"board-visitor-cap", NULL, OPT_INT, F(board_visitor_cap), 0, 1000000000,
     "1000", "leaderboard: votes one visitor weighs at most (0: no cap)"},
    {"board-prompt-cap", NULL, OPT_INT, F(board_prompt_cap), 0, 1000000000,
     "50", "leaderboard: battles one prompt text weighs at most (0: off)"},
    {"board-bootstrap", NULL, OPT_INT, F(board_bootstrap), 0, 100000, "200",
     "leaderboard: bootstrap rounds for the intervals"},
    {"board-min-battles", NULL, OPT_INT, F(board_min_battles), 0, 1000000000,
     "50", "leaderboard: fewer battles shows provisional"},
    {"board-debounce", NULL, OPT_INT, F(board_debounce_ms), 0, 600000, "500",
     "leaderboard: wait after a vote for more before recomputing (ms)"},
    {"board-poll", NULL, OPT_INT, F(board_poll_ms), 50, 600000, "1000",
     "leaderboard: look for votes from other processes every (ms)"},
    {"log-level", NULL, OPT_LEVEL, F(log_level), 0, 0, "info",
     "error, warn, info or debug"},
    {"access-log", NULL, OPT_BOOL, F(access_log), 0, 0, "on",
     "one line per request: on or off"},
    {"config", NULL, OPT_STR, F(config_file), 0, 0, "",
     "JSON file: {\"port\": 8080, \"db_pool_size\": 8}"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static void env_name(const struct opt *o, char *buf, size_t n)
{
    if (o->env != NULL) {
        snprintf(buf, n, "%s", o->env);
        return;
    }
    size_t w = (size_t)snprintf(buf, n, "ARENA_");
    for (const char *p = o->name; *p != '\0' && w + 1 < n; p++)
        buf[w++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[w] = '\0';
}

static void key_name(const struct opt *o, char *buf, size_t n)
{
    size_t w = 0;
    for (const char *p = o->name; *p != '\0' && w + 1 < n; p++)
        buf[w++] = *p == '-' ? '_' : *p;
    buf[w] = '\0';
}

static void *field(struct web_config *cfg, const struct opt *o)
{
    return (char *)cfg + o->offset;
}

/* ---------------------------------------------------------------------- */
/* Parsing one value                                                      */

static bool parse_ll(const char *s, long long *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_bytes(const char *s, long long *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 0)
        return false;
    long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024;
    else if (*end == 'g' || *end == 'G')
        mult = 1024 * 1024 * 1024;
    if (mult != 1)
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0' || v > LLONG_MAX / mult)
        return false;
    *out = v * mult;
    return true;
}

/* Sets o in cfg from text s. On failure writes "<who> takes ..." to msg. */
static int set_value(struct web_config *cfg, const struct opt *o, const char *s,
                     const char *who, char *msg, size_t n)
{
    long long v;
    switch (o->type) {
    case OPT_INT:
        if (!parse_ll(s, &v) || v < o->min || v > o->max) {
            snprintf(msg, n, "%s takes a number between %lld and %lld", who,
                     o->min, o->max);
            return 2;
        }
        *(int *)field(cfg, o) = (int)v;
        return 0;
    case OPT_BYTES:
        if (!parse_bytes(s, &v) || v < o->min || v > o->max) {
            snprintf(msg, n,
                     "%s takes a size between %lld and %lld bytes "
                     "(k, m, g suffixes allowed)",
                     who, o->min, o->max);
            return 2;
        }
        *(long long *)field(cfg, o) = v;
        return 0;
    case OPT_BOOL: {
        static const char *const yes[] = {"on", "true", "yes", "1"};
        static const char *const no[] = {"off", "false", "no", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
                *(bool *)field(cfg, o) = strcasecmp(s, yes[i]) == 0;
                return 0;
            }
        }
        snprintf(msg, n, "%s takes on or off", who);
        return 2;
    }
    case OPT_LEVEL: {
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(s, levels[i]) == 0) {
                *(int *)field(cfg, o) = i;
                return 0;
            }
        }
        snprintf(msg, n, "%s takes error, warn, info or debug", who);
        return 2;
    }
    case OPT_STR: {
        char *copy = strdup(s);
        if (copy == NULL)
            abort();
        char **slot = field(cfg, o);
        free(*slot);
        *slot = copy;
        return 0;
    }
    }
    return 2;
}

/* ---------------------------------------------------------------------- */
/* Sources                                                                */

void web_config_init(struct web_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char msg[256];
    for (size_t i = 0; i < N_OPTS; i++) {
        /* The defaults are ours: a failure here is a bug in the table. */
        if (set_value(cfg, &opts[i], opts[i].def, opts[i].name, msg,
                      sizeof(msg)) != 0) {
            fprintf(stderr, "arena: bad default: %s\n", msg);
            abort();
        }
    }
}

void web_config_cleanup(struct web_config *cfg)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].type == OPT_STR) {
            char **slot = field(cfg, &opts[i]);
            free(*slot);
            *slot = NULL;
        }
    }
    json_decref(cfg->file);
    cfg->file = NULL;
}

static const struct opt *find_key(const char *key)
{
    char buf[64];
    for (size_t i = 0; i < N_OPTS; i++) {
        key_name(&opts[i], buf, sizeof(buf));
        if (strcmp(buf, key) == 0 || strcmp(opts[i].name, key) == 0)
            return &opts[i];
    }
    return NULL;
}

/* Loads the JSON file: scalar keys must be settings; objects and arrays
 * are sections for other modules, kept in cfg->file. */
static int apply_file(struct web_config *cfg, const char *path, char *msg,
                      size_t n)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(msg, n, "config file %s: line %d, column %d: %s", path,
                 jerr.line, jerr.column, jerr.text);
        return 2;
    }
    if (!json_is_object(root)) {
        snprintf(msg, n, "config file %s: not a JSON object", path);
        json_decref(root);
        return 2;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (json_is_object(val) || json_is_array(val))
            continue;
        const struct opt *o = find_key(key);
        char who[320], text[64];
        snprintf(who, sizeof(who), "config file %s: %s", path, key);
        if (o == NULL || o->offset == F(config_file)) {
            snprintf(msg, n, "%s: unknown setting; see 'arena serve --help'",
                     who);
            json_decref(root);
            return 2;
        }
        const char *s = text;
        if (json_is_string(val))
            s = json_string_value(val);
        else if (json_is_integer(val))
            snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(val));
        else if (json_is_boolean(val))
            s = json_is_true(val) ? "on" : "off";
        else
            s = "?"; /* real or null: let set_value say what it takes */
        int rc = set_value(cfg, o, s, who, msg, n);
        if (rc != 0) {
            json_decref(root);
            return rc;
        }
    }
    json_decref(cfg->file);
    cfg->file = root;
    return 0;
}

static int apply_env(struct web_config *cfg, char *msg, size_t n)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        char name[64];
        env_name(&opts[i], name, sizeof(name));
        const char *v = getenv(name);
        if (v == NULL || opts[i].offset == F(config_file))
            continue;
        int rc = set_value(cfg, &opts[i], v, name, msg, n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const struct opt *find_flag(const char *arg, const char **inline_val)
{
    *inline_val = NULL;
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    if (name[len] == '=')
        *inline_val = name + len + 1;
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len &&
            strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* Walks argv. With only_config, applies --config alone (it must be known
 * before the file is read); otherwise every flag but --config. */
static int apply_flags(struct web_config *cfg, int argc, char **argv,
                       bool only_config, char *msg, size_t n)
{
    for (int i = 1; i < argc; i++) {
        const char *val;
        const struct opt *o = find_flag(argv[i], &val);
        if (o == NULL) {
            snprintf(msg, n, "unknown option '%s'; see 'arena serve --help'",
                     argv[i]);
            return 2;
        }
        if (val == NULL) {
            if (i + 1 >= argc) {
                snprintf(msg, n, "--%s needs a value", o->name);
                return 2;
            }
            val = argv[++i];
        }
        bool is_config = o->offset == F(config_file);
        if (is_config != only_config)
            continue;
        char who[80];
        snprintf(who, sizeof(who), "--%s", o->name);
        int rc = set_value(cfg, o, val, who, msg, n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int web_config_parse(struct web_config *cfg, int argc, char **argv, char *msg,
                     size_t n)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            web_config_usage(stdout);
            return 1;
        }
    }
    const char *env_config = getenv("ARENA_CONFIG");
    if (env_config != NULL)
        set_value(cfg, find_key("config"), env_config, "ARENA_CONFIG", msg, n);
    int rc = apply_flags(cfg, argc, argv, true, msg, n);
    if (rc == 0 && cfg->config_file[0] != '\0')
        rc = apply_file(cfg, cfg->config_file, msg, n);
    if (rc == 0)
        rc = apply_env(cfg, msg, n);
    if (rc == 0)
        rc = apply_flags(cfg, argc, argv, false, msg, n);
    return rc;
}

void web_config_usage(FILE *f)
{
    fprintf(f, "usage: arena serve [options]\n"
               "\n"
               "Runs the web arena. Each setting comes from, in order of "
               "precedence: its flag,\n"
               "its environment variable, the JSON config file (key with "
               "'_' for '-'),\n"
               "its default.\n"
               "Without a database URL, Arena runs its own PostgreSQL in "
               "DATA_DIR/pg.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        char env[64], flag[64];
        env_name(o, env, sizeof(env));
        snprintf(flag, sizeof(flag), "--%s %s", o->name,
                 o->type == OPT_INT     ? "N"
                 : o->type == OPT_BYTES ? "SIZE"
                 : o->type == OPT_BOOL  ? "on|off"
                 : o->type == OPT_LEVEL ? "LEVEL"
                                        : "VALUE");
        const char *q = o->def[0] != '\0' ? "'" : "";
        fprintf(f, "  %-26s %s\n  %-26s env %s, default %s%s%s\n", flag,
                o->help, "", env, q, o->def[0] != '\0' ? o->def : "none", q);
    }
}
