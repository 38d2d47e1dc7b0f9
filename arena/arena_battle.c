/*
 * arena_battle.c: the arena object, and battles: create, turn (and
 * regenerate), read back. Votes are in arena_vote.c.
 *
 * A battle's life (battles.state):
 *
 *   open --turn--> answering --both answered--> ready --vote--> voted
 *                      |  ^                       |
 *                      |  +-------turn------------+
 *                      +--a side failed--> failed (no vote, no turn)
 *   (direct chats go back to open after each turn and take no vote)
 *
 * A turn claims the battle with one conditional UPDATE (open/ready ->
 * answering), so two turns never run at once on a battle and a vote never
 * lands in the middle of one (the vote needs 'ready'). The turn runs on the
 * caller's thread: it submits both sides to their engines with one waiter,
 * and drains whichever stream has events, so each side streams at its own
 * pace. When both are over, the turn (prompt, answers, counts, timings,
 * cost) and the battle's new state and tags are written in one
 * transaction. If the client goes away, both requests are cancelled and
 * the battle returns to its state before the turn; nothing is stored.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "arena.h"
#include "arena_internal.h"
#include "db.h"
#include "infer.h"

#define LONG_PROMPT_BYTES 1024
#define PING_S            5.0

/* ---------------------------------------------------------------------- */
/* Small helpers shared by the arena files                                */

int arena__db_get(struct arena *a, struct db_conn **c, struct arena_err *err)
{
    struct db_err derr = {{0}, {0}};
    int rc = db_pool_acquire(a->o.db, a->o.db_wait_ms, c, &derr);
    if (rc != DB_OK) {
        arena__err_set(err, "database: %s", derr.msg);
        return ARENA_ERR_DB;
    }
    return ARENA_OK;
}

void arena__db_put(struct arena *a, struct db_conn *c)
{
    db_pool_release(a->o.db, c);
}

void arena__bytea(const uint8_t *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        out[2 + 2 * i] = hex[b[i] >> 4];
        out[3 + 2 * i] = hex[b[i] & 15];
    }
    out[2 + 2 * n] = '\0';
}

uint64_t arena__rand(struct arena *a)
{
    pthread_mutex_lock(&a->rng_mu);
    /* splitmix64 */
    uint64_t z = (a->rng += 0x9E3779B97F4A7C15ULL);
    pthread_mutex_unlock(&a->rng_mu);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

bool arena__id_parse(const char *id, char uuid[37])
{
    if (id == NULL || strncmp(id, "b_", 2) != 0 || strlen(id) != 34)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < 32; i++) {
        if (!is_hex(id[2 + i]))
            return false;
        if (i == 8 || i == 12 || i == 16 || i == 20)
            uuid[o++] = '-';
        uuid[o++] = id[2 + i];
    }
    uuid[o] = '\0';
    return true;
}

void arena__id_format(const char *uuid, char out[35])
{
    size_t o = 0;
    out[o++] = 'b';
    out[o++] = '_';
    for (const char *p = uuid; *p != '\0' && o < 34; p++)
        if (*p != '-')
            out[o++] = *p;
    out[o] = '\0';
}

/* ---------------------------------------------------------------------- */
/* The arena object                                                       */

int arena_new(const struct arena_opts *o, struct arena **out,
              struct arena_err *err)
{
    *out = NULL;
    if (o->db == NULL || o->hub == NULL) {
        arena__err_set(err, "the arena needs a database and a model hub");
        return ARENA_ERR_INVALID;
    }
    struct arena *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    a->o = *o;
    if (a->o.max_turns <= 0)
        a->o.max_turns = 8;
    if (a->o.max_prompt_bytes <= 0)
        a->o.max_prompt_bytes = 16384;
    if (a->o.max_tokens <= 0)
        a->o.max_tokens = 256;
    if (a->o.vote_writers <= 0)
        a->o.vote_writers = 2;
    if (a->o.vote_batch <= 0)
        a->o.vote_batch = 64;
    if (a->o.db_wait_ms <= 0)
        a->o.db_wait_ms = 5000;
    a->o.models_dir = NULL; /* only used while seeding, below */
    pthread_mutex_init(&a->reg_mu, NULL);
    pthread_mutex_init(&a->health_mu, NULL);
    pthread_mutex_init(&a->pair_mu, NULL);
    pthread_mutex_init(&a->rng_mu, NULL);
    pthread_mutex_init(&a->vq_mu, NULL);
    pthread_cond_init(&a->vq_cond, NULL);
    if (getrandom(&a->rng, sizeof(a->rng), 0) != sizeof(a->rng))
        a->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)a;
    a->models_cfg = json_incref((json_t *)o->models);
    a->leak_cfg = json_incref((json_t *)o->leak_terms);
    if (json_is_array(a->leak_cfg)) {
        size_t n = json_array_size(a->leak_cfg);
        a->leak_terms = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; a->leak_terms != NULL && i < n; i++) {
            const char *t = json_string_value(json_array_get(a->leak_cfg, i));
            if (t != NULL && t[0] != '\0')
                a->leak_terms[a->n_leak++] = strdup(t);
        }
    }
    /* An empty snapshot, so readers never see NULL. */
    a->snap = calloc(1, sizeof(*a->snap));
    if (a->snap == NULL) {
        arena_free(a);
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    atomic_init(&a->snap->refs, 1);
    a->o.models_dir = o->models_dir;
    int rc = arena__registry_seed(a, err);
    a->o.models_dir = NULL;
    if (rc == ARENA_OK)
        rc = arena__registry_load(a, err);
    if (rc == ARENA_OK)
        rc = arena__votes_start(a, err);
    if (rc != ARENA_OK) {
        arena_free(a);
        return rc;
    }
    *out = a;
    return ARENA_OK;
}

void arena_free(struct arena *a)
{
    if (a == NULL)
        return;
    arena__votes_stop(a);
    arena__models_put(a->snap);
    for (size_t i = 0; i < a->n_leak; i++)
        free(a->leak_terms[i]);
    free(a->leak_terms);
    json_decref(a->models_cfg);
    json_decref(a->leak_cfg);
    free(a->health);
    free(a->pairs);
    pthread_mutex_destroy(&a->reg_mu);
    pthread_mutex_destroy(&a->health_mu);
    pthread_mutex_destroy(&a->pair_mu);
    pthread_mutex_destroy(&a->rng_mu);
    pthread_mutex_destroy(&a->vq_mu);
    pthread_cond_destroy(&a->vq_cond);
    free(a);
}

/* ---------------------------------------------------------------------- */
/* Create                                                                 */

static int model_pick(const struct arena__models *m, const json_t *name,
                      const struct arena__model **out, struct arena_err *err)
{
    const char *s = json_string_value(name);
    if (s == NULL) {
        arena__err_set(err, "models: names (strings) are expected");
        return ARENA_ERR_INVALID;
    }
    const struct arena__model *x = arena__model_by_name(m, s);
    if (x == NULL || !x->enabled || x->engine == NULL) {
        arena__err_set(err, "no model named %.128s is available", s);
        return ARENA_ERR_NOT_FOUND;
    }
    *out = x;
    return ARENA_OK;
}

static json_t *sides_json(const struct arena__model *ma,
                          const struct arena__model *mb)
{
    json_t *o = json_object();
    if (ma != NULL)
        json_object_set_new(o, "a", arena__model_json(ma, false));
    if (mb != NULL)
        json_object_set_new(o, "b", arena__model_json(mb, false));
    return o;
}

int arena_battle_create(struct arena *a, const struct arena_visitor *v,
                        const json_t *body, json_t **out, struct arena_err *err)
{
    *out = NULL;
    const char *mode = json_string_value(json_object_get(body, "mode"));
    if (!json_is_object(body) || mode == NULL ||
        (strcmp(mode, "anonymous") != 0 && strcmp(mode, "named") != 0 &&
         strcmp(mode, "direct") != 0)) {
        arena__err_set(err, "mode: \"anonymous\", \"named\" or \"direct\"");
        return ARENA_ERR_INVALID;
    }
    const json_t *names = json_object_get(body, "models");
    size_t want = strcmp(mode, "anonymous") == 0 ? 0
                  : strcmp(mode, "named") == 0   ? 2
                                                 : 1;
    if (want == 0 && names != NULL && !json_is_null(names)) {
        arena__err_set(err, "models: the server draws them in anonymous mode");
        return ARENA_ERR_INVALID;
    }
    if (want > 0 && (!json_is_array(names) || json_array_size(names) != want)) {
        arena__err_set(err, "models: a list of %zu model name%s", want,
                       want > 1 ? "s" : "");
        return ARENA_ERR_INVALID;
    }
    struct arena__models *m = arena__models_get(a);
    const struct arena__model *ma = NULL, *mb = NULL;
    int rc = ARENA_OK;
    if (want == 0) {
        size_t i, j;
        rc = arena__sample_pair(a, m, &i, &j);
        if (rc == ARENA_ERR_NO_MODELS)
            arena__err_set(err, "fewer than two models are available");
        else if (rc != ARENA_OK)
            arena__err_set(err, "out of memory");
        if (rc == ARENA_OK) {
            ma = &m->items[i];
            mb = &m->items[j];
        }
    } else {
        rc = model_pick(m, json_array_get(names, 0), &ma, err);
        if (rc == ARENA_OK && want == 2)
            rc = model_pick(m, json_array_get(names, 1), &mb, err);
        if (rc == ARENA_OK && mb != NULL && ma == mb) {
            arena__err_set(err, "models: two different models are needed");
            rc = ARENA_ERR_INVALID;
        }
    }
    struct db_conn *c = NULL;
    if (rc == ARENA_OK)
        rc = arena__db_get(a, &c, err);
    char id_a[24], id_b[24], vh[67], ih[67];
    PGresult *res = NULL;
    if (rc == ARENA_OK) {
        snprintf(id_a, sizeof(id_a), "%lld", (long long)ma->id);
        snprintf(id_b, sizeof(id_b), "%lld",
                 mb != NULL ? (long long)mb->id : 0LL);
        arena__bytea(v->hash, 32, vh);
        arena__bytea(v->ip_hash, 32, ih);
        const char *p[5] = {vh, mode, id_a, mb != NULL ? id_b : NULL, ih};
        struct db_err derr = {{0}, {0}};
        if (db_exec(c,
                    "WITH vi AS (INSERT INTO visitors (cookie_hash) "
                    "VALUES ($1::bytea) ON CONFLICT (cookie_hash) DO UPDATE "
                    "SET last_seen = now() RETURNING id) "
                    "INSERT INTO battles (mode, model_a, model_b, "
                    "visitor_id, visitor_hash, ip_hash) SELECT $2, $3, $4, "
                    "vi.id, $1::bytea, $5::bytea FROM vi RETURNING public_id",
                    5, p, &res, &derr) != DB_OK) {
            arena__err_set(err, "creating the battle: %s", derr.msg);
            rc = ARENA_ERR_DB;
        }
        arena__db_put(a, c);
    }
    if (rc == ARENA_OK) {
        char id[35];
        arena__id_format(PQgetvalue(res, 0, 0), id);
        json_t *sides =
            mb != NULL ? json_pack("[ss]", "a", "b") : json_pack("[s]", "a");
        json_t *models =
            strcmp(mode, "anonymous") == 0 ? json_null() : sides_json(ma, mb);
        *out = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o}", "id", id, "mode", mode,
                         "state", "open", "max_turns", a->o.max_turns, "sides",
                         sides, "models", models);
        if (*out == NULL) {
            arena__err_set(err, "out of memory");
            rc = ARENA_ERR_NOMEM;
        }
    }
    PQclear(res);
    arena__models_put(m);
    return rc;
}

int arena_battle_bench_create(struct arena *a, const struct arena_visitor *v,
                              int count, json_t **out, struct arena_err *err)
{
    *out = NULL;
    if (count < 1 || count > 1000000) {
        arena__err_set(err, "count: 1 to 1000000");
        return ARENA_ERR_INVALID;
    }
    struct arena__models *m = arena__models_get(a);
    size_t i, j;
    int rc = arena__sample_pair(a, m, &i, &j);
    char id_a[24], id_b[24], n[24], vh[67], ih[67];
    if (rc == ARENA_OK) {
        snprintf(id_a, sizeof(id_a), "%lld", (long long)m->items[i].id);
        snprintf(id_b, sizeof(id_b), "%lld", (long long)m->items[j].id);
    } else {
        arena__err_set(err, "fewer than two models are available");
    }
    arena__models_put(m);
    if (rc != ARENA_OK)
        return rc;
    snprintf(n, sizeof(n), "%d", count);
    arena__bytea(v->hash, 32, vh);
    arena__bytea(v->ip_hash, 32, ih);
    struct db_conn *c;
    rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK)
        return rc;
    const char *p[5] = {vh, id_a, id_b, ih, n};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    rc = db_exec(c,
                 "WITH vi AS (INSERT INTO visitors (cookie_hash) VALUES "
                 "($1::bytea) ON CONFLICT (cookie_hash) DO UPDATE SET "
                 "last_seen = now() RETURNING id) "
                 "INSERT INTO battles (mode, model_a, model_b, visitor_id, "
                 "visitor_hash, ip_hash, state, turns, ready_at, "
                 "excluded_reason, tags) SELECT 'anonymous', $2, $3, vi.id, "
                 "$1::bytea, $4::bytea, 'ready', 1, now(), 'bench', "
                 "'{\"bench\": true}' FROM vi, generate_series(1, $5::int) "
                 "RETURNING public_id",
                 5, p, &res, &derr);
    arena__db_put(a, c);
    if (rc != DB_OK) {
        arena__err_set(err, "creating bench battles: %s", derr.msg);
        return ARENA_ERR_DB;
    }
    json_t *ids = json_array();
    for (int r = 0; ids != NULL && r < PQntuples(res); r++) {
        char id[35];
        arena__id_format(PQgetvalue(res, r, 0), id);
        json_array_append_new(ids, json_string(id));
    }
    PQclear(res);
    *out = ids;
    return ids != NULL ? ARENA_OK : ARENA_ERR_NOMEM;
}

/* ---------------------------------------------------------------------- */
/* Loading a battle                                                       */

struct battle {
    char uuid[37];
    char id_text[24]; /* battles.id as text */
    char mode[12];
    char state[12];
    int64_t model_a, model_b; /* model_b 0 in direct mode */
    bool mine;
    int turns;
    char excluded[64];
    char vote[16]; /* "" if none */
    bool stale;    /* 'answering' for longer than any turn can take */
};

/* A turn that has been 'answering' this long was abandoned: its server
 * died mid-turn (answers are bounded in tokens and time, far below this). */
#define STALE_TURN "interval '10 minutes'"

static int battle_load(struct arena *a, struct db_conn *c, const char *id,
                       const struct arena_visitor *v, struct battle *b,
                       struct arena_err *err)
{
    memset(b, 0, sizeof(*b));
    if (!arena__id_parse(id, b->uuid)) {
        arena__err_set(err, "no such battle");
        return ARENA_ERR_NOT_FOUND;
    }
    char vh[67];
    arena__bytea(v->hash, 32, vh);
    const char *p[2] = {b->uuid, vh};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(
            c,
            "SELECT b.id, b.mode, b.state, b.model_a, "
            "coalesce(b.model_b, 0), b.visitor_hash = $2::bytea, "
            "b.turns, coalesce(b.excluded_reason, ''), "
            "coalesce((SELECT winner FROM votes WHERE battle_id = b.id), "
            "''), b.state = 'answering' AND b.updated_at < now() - " STALE_TURN
            " FROM battles b WHERE b.public_id = $1::uuid",
            2, p, &res, &derr) != DB_OK) {
        arena__err_set(err, "loading the battle: %s", derr.msg);
        return ARENA_ERR_DB;
    }
    (void)a;
    if (PQntuples(res) == 0) {
        PQclear(res);
        arena__err_set(err, "no such battle");
        return ARENA_ERR_NOT_FOUND;
    }
    snprintf(b->id_text, sizeof(b->id_text), "%s", PQgetvalue(res, 0, 0));
    snprintf(b->mode, sizeof(b->mode), "%s", PQgetvalue(res, 0, 1));
    snprintf(b->state, sizeof(b->state), "%s", PQgetvalue(res, 0, 2));
    b->model_a = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    b->model_b = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    b->mine = PQgetvalue(res, 0, 5)[0] == 't';
    b->turns = atoi(PQgetvalue(res, 0, 6));
    snprintf(b->excluded, sizeof(b->excluded), "%s", PQgetvalue(res, 0, 7));
    snprintf(b->vote, sizeof(b->vote), "%s", PQgetvalue(res, 0, 8));
    b->stale = PQgetvalue(res, 0, 9)[0] == 't';
    PQclear(res);
    if (!b->mine) {
        arena__err_set(err, "this battle belongs to another visitor");
        return ARENA_ERR_NOT_YOURS;
    }
    return ARENA_OK;
}

/* The live conversation: per turn 1..n, the prompt and each side's latest
 * answer (NULL if none). */
struct convo {
    int n;
    char **prompt; /* (n,) */
    char **ans[2]; /* (n,) per side */
    int *attempt;  /* (n,) highest assistant attempt */
};

static void convo_free(struct convo *cv)
{
    for (int i = 0; i < cv->n; i++) {
        free(cv->prompt[i]);
        free(cv->ans[0][i]);
        free(cv->ans[1][i]);
    }
    free(cv->prompt);
    free(cv->ans[0]);
    free(cv->ans[1]);
    free(cv->attempt);
    memset(cv, 0, sizeof(*cv));
}

static int convo_load(struct db_conn *c, const struct battle *b, int turns,
                      struct convo *cv, struct arena_err *err)
{
    memset(cv, 0, sizeof(*cv));
    cv->n = turns;
    size_t n = turns > 0 ? (size_t)turns : 1;
    cv->prompt = calloc(n, sizeof(char *));
    cv->ans[0] = calloc(n, sizeof(char *));
    cv->ans[1] = calloc(n, sizeof(char *));
    cv->attempt = calloc(n, sizeof(int));
    if (cv->prompt == NULL || cv->ans[0] == NULL || cv->ans[1] == NULL ||
        cv->attempt == NULL) {
        convo_free(cv);
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    const char *p[1] = {b->id_text};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c,
                "SELECT turn, attempt, side, content FROM messages WHERE "
                "battle_id = $1 AND role <> 'system' ORDER BY turn, attempt, "
                "id",
                1, p, &res, &derr) != DB_OK) {
        convo_free(cv);
        arena__err_set(err, "loading the conversation: %s", derr.msg);
        return ARENA_ERR_DB;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        int t = atoi(PQgetvalue(res, r, 0));
        int att = atoi(PQgetvalue(res, r, 1));
        const char *side = PQgetvalue(res, r, 2);
        if (t < 1 || t > turns)
            continue;
        bool is_a = strcmp(side, "a") == 0, is_b = strcmp(side, "b") == 0;
        char **slot = is_a   ? &cv->ans[0][t - 1]
                      : is_b ? &cv->ans[1][t - 1]
                             : &cv->prompt[t - 1];
        free(*slot);
        *slot = strdup(PQgetvalue(res, r, 3));
        if (!is_a && !is_b)
            continue;
        if (att > cv->attempt[t - 1])
            cv->attempt[t - 1] = att;
    }
    PQclear(res);
    return ARENA_OK;
}

int arena_battle_get(struct arena *a, const struct arena_visitor *v,
                     const char *id, json_t **out, struct arena_err *err)
{
    *out = NULL;
    struct db_conn *c;
    int rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK)
        return rc;
    struct battle b;
    struct convo cv = {0};
    rc = battle_load(a, c, id, v, &b, err);
    if (rc == ARENA_OK)
        rc = convo_load(c, &b, b.turns, &cv, err);
    arena__db_put(a, c);
    if (rc != ARENA_OK)
        return rc;
    bool direct = strcmp(b.mode, "direct") == 0;
    json_t *turns = json_array();
    for (int t = 0; t < cv.n; t++)
        json_array_append_new(turns, json_pack("{s:s,s:s?,s:s?}", "prompt",
                                               cv.prompt[t] ? cv.prompt[t] : "",
                                               "a", cv.ans[0][t], "b",
                                               direct ? NULL : cv.ans[1][t]));
    convo_free(&cv);
    json_t *models = json_null();
    if (strcmp(b.mode, "anonymous") != 0 || b.vote[0] != '\0') {
        struct arena__models *m = arena__models_get(a);
        json_decref(models);
        models = sides_json(arena__model_by_id(m, b.model_a),
                            direct ? NULL : arena__model_by_id(m, b.model_b));
        arena__models_put(m);
    }
    char pid[35];
    arena__id_format(b.uuid, pid);
    *out = json_pack("{s:s,s:s,s:s,s:o,s:o,s:s?}", "id", pid, "mode", b.mode,
                     "state", b.state, "turns", turns, "models", models, "vote",
                     b.vote[0] ? b.vote : NULL);
    if (*out == NULL) {
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    return ARENA_OK;
}

/* ---------------------------------------------------------------------- */
/* A turn                                                                 */

struct side {
    const struct arena__model *m;
    const char *name; /* "a" or "b" */
    struct infer_stream *s;
    bool active, failed, leaked;
    char *text; /* the answer so far */
    size_t len, cap;
    struct infer_stats st;
    char finish[16];
    char error[256];
    const char *terms[64]; /* identity terms for this side */
    size_t n_terms;
};

static bool text_add(struct side *sd, const char *s, size_t n)
{
    if (sd->len + n + 1 > sd->cap) {
        size_t cap = sd->cap ? sd->cap * 2 : 1024;
        while (cap < sd->len + n + 1)
            cap *= 2;
        char *nt = realloc(sd->text, cap);
        if (nt == NULL)
            return false;
        sd->text = nt;
        sd->cap = cap;
    }
    memcpy(sd->text + sd->len, s, n);
    sd->len += n;
    sd->text[sd->len] = '\0';
    return true;
}

static double gen_num(const json_t *g, const char *key, double def)
{
    const json_t *v = json_object_get(g, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* Submits one side. Returns the infer status. */
static int side_submit(struct arena *a, struct side *sd, const struct convo *cv,
                       int side_ix, int upto, const char *prompt,
                       uint64_t session, struct infer_waiter *w,
                       struct infer_err *ierr)
{
    size_t n = 0;
    struct infer_chat_msg *msgs = calloc((size_t)upto * 2 + 2, sizeof(*msgs));
    if (msgs == NULL)
        return INFER_ERR_NOMEM;
    if (sd->m->system_prompt[0] != '\0')
        msgs[n++] = (struct infer_chat_msg){"system", sd->m->system_prompt};
    for (int t = 0; t < upto; t++) {
        msgs[n++] = (struct infer_chat_msg){
            "user", cv->prompt[t] != NULL ? cv->prompt[t] : ""};
        msgs[n++] = (struct infer_chat_msg){
            "assistant",
            cv->ans[side_ix][t] != NULL ? cv->ans[side_ix][t] : ""};
    }
    msgs[n++] = (struct infer_chat_msg){"user", prompt};
    const json_t *g = sd->m->generation;
    struct infer_params p = {0};
    p.msgs = msgs;
    p.n_msgs = n;
    int mt = (int)gen_num(g, "max_tokens", a->o.max_tokens);
    p.max_tokens = mt > 0 && mt < a->o.max_tokens ? mt : a->o.max_tokens;
    p.temperature = (float)gen_num(g, "temperature", 0.7);
    p.top_p = (float)gen_num(g, "top_p", 0.95);
    p.top_k = (int)gen_num(g, "top_k", 0);
    p.min_p = (float)gen_num(g, "min_p", 0);
    p.repeat_penalty = (float)gen_num(g, "repeat_penalty", 0);
    p.presence_penalty = (float)gen_num(g, "presence_penalty", 0);
    p.frequency_penalty = (float)gen_num(g, "frequency_penalty", 0);
    const json_t *seed = json_object_get(g, "seed");
    p.seed = json_is_integer(seed) ? (uint64_t)json_integer_value(seed)
                                   : arena__rand(a);
    p.session = session;
    int rc = infer_engine_submit(sd->m->engine, &p, w, &sd->s, ierr);
    free(msgs);
    return rc;
}

static int emit(const struct arena_turn_io *io, const char *name, json_t *d)
{
    int rc = io->event(io->user, name, d);
    json_decref(d);
    return rc;
}

/* Drains one side's events. Returns nonzero when the client went away. */
static int side_drain(struct arena *a, struct side *sd, bool check_leak,
                      const struct arena_turn_io *io, bool *flagged)
{
    struct infer_event ev;
    while (sd->active) {
        int k = infer_stream_next(sd->s, 0, &ev);
        if (k == INFER_EV_NONE)
            return 0;
        if (k == INFER_EV_TEXT) {
            size_t before = sd->len;
            if (!text_add(sd, ev.text, ev.len)) {
                infer_stream_cancel(sd->s);
                continue;
            }
            json_t *t = json_stringn(sd->text + before, ev.len);
            if (t != NULL &&
                emit(io, "token",
                     json_pack("{s:s,s:o}", "side", sd->name, "text", t)) != 0)
                return 1;
            if (check_leak && !sd->leaked &&
                arena_leak_find(sd->text, sd->len, sd->terms, sd->n_terms) >=
                    0) {
                sd->leaked = true;
                char msg[128];
                snprintf(msg, sizeof(msg),
                         "model %s named itself; this battle will not count",
                         sd->name);
                if (!*flagged &&
                    emit(io, "flagged",
                         json_pack("{s:s,s:s}", "reason", "identity_leak",
                                   "message", msg)) != 0)
                    return 1;
                *flagged = true;
            }
        } else if (k == INFER_EV_DONE) {
            sd->active = false;
            sd->st = ev.stats;
            snprintf(sd->finish, sizeof(sd->finish), "%s",
                     ev.stats.finish_reason ? ev.stats.finish_reason : "stop");
            arena__model_report(a, sd->m->id, false);
            if (emit(io, "done",
                     json_pack("{s:s,s:i,s:i,s:i}", "side", sd->name, "tokens",
                               ev.stats.completion_tokens, "ttft_ms",
                               (int)lround(ev.stats.ttft_ms), "gen_ms",
                               (int)lround(ev.stats.gen_ms))) != 0)
                return 1;
        } else {
            sd->active = false;
            sd->failed = true;
            sd->st = ev.stats;
            snprintf(sd->error, sizeof(sd->error), "%s", ev.error);
            snprintf(sd->finish, sizeof(sd->finish), "error");
            arena__model_report(a, sd->m->id, true);
            if (emit(io, "error",
                     json_pack("{s:s,s:s,s:s}", "side", sd->name, "code",
                               "model_failed", "message",
                               "the model failed while answering")) != 0)
                return 1;
        }
    }
    return 0;
}

static void restore_state(struct arena *a, const struct battle *b,
                          const char *prev)
{
    struct db_conn *c;
    struct arena_err err;
    if (arena__db_get(a, &c, &err) != ARENA_OK)
        return;
    const char *p[2] = {b->id_text, prev};
    struct db_err derr;
    db_exec(c,
            "UPDATE battles SET state = $2, updated_at = now() WHERE id = $1 "
            "AND state = 'answering'",
            2, p, NULL, &derr);
    arena__db_put(a, c);
}

/* Writes the finished turn. */
static int turn_save(struct arena *a, const struct battle *b, int turn,
                     int attempt, const char *prompt, bool new_turn,
                     struct side *sides, int n_sides, const char *state,
                     const char *excluded, const struct convo *cv,
                     struct arena_err *err)
{
    /* Tags over every prompt of the battle. */
    size_t total = prompt != NULL ? strlen(prompt) : 0;
    for (int t = 0; t < cv->n; t++)
        total += cv->prompt[t] ? strlen(cv->prompt[t]) + 1 : 0;
    char *all = malloc(total + 1);
    if (all == NULL) {
        arena__err_set(err, "out of memory");
        return ARENA_ERR_NOMEM;
    }
    size_t w = 0;
    for (int t = 0; t < cv->n; t++) {
        if (cv->prompt[t] == NULL)
            continue;
        size_t l = strlen(cv->prompt[t]);
        memcpy(all + w, cv->prompt[t], l);
        w += l;
        all[w++] = '\n';
    }
    if (new_turn && prompt != NULL) {
        memcpy(all + w, prompt, strlen(prompt));
        w += strlen(prompt);
    }
    all[w] = '\0';
    struct arena_text_tags tt;
    arena_tags_detect(all, w, &tt);
    free(all);
    json_t *tags = json_object();
    if (tt.flags & ARENA_TAG_CODING)
        json_object_set_new(tags, "coding", json_true());
    if (tt.flags & ARENA_TAG_MATH)
        json_object_set_new(tags, "math", json_true());
    if (turn > 1)
        json_object_set_new(tags, "multi_turn", json_true());
    if (w > LONG_PROMPT_BYTES)
        json_object_set_new(tags, "long_prompt", json_true());
    if (excluded != NULL)
        json_object_set_new(tags, "identity_leak", json_true());
    char *tags_text = json_dumps(tags, JSON_COMPACT);
    json_decref(tags);

    struct db_conn *c;
    int rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK) {
        free(tags_text);
        return rc;
    }
    struct db_err derr = {{0}, {0}};
    char turn_s[16], att_s[16];
    snprintf(turn_s, sizeof(turn_s), "%d", turn);
    snprintf(att_s, sizeof(att_s), "%d", attempt);
    int drc = db_begin(c, &derr);
    if (drc == DB_OK && new_turn) {
        const char *p[3] = {b->id_text, turn_s, prompt};
        drc = db_exec(c,
                      "INSERT INTO messages (battle_id, turn, attempt, side, "
                      "role, content) VALUES ($1, $2, 0, 'both', 'user', $3)",
                      3, p, NULL, &derr);
    }
    for (int s = 0; s < n_sides && drc == DB_OK; s++) {
        struct side *sd = &sides[s];
        char mid[24], tin[16], tout[16], ttft[16], gen[16], cost[48];
        snprintf(mid, sizeof(mid), "%lld", (long long)sd->m->id);
        snprintf(tin, sizeof(tin), "%d",
                 sd->st.prompt_tokens > 0 ? sd->st.prompt_tokens : 0);
        snprintf(tout, sizeof(tout), "%d",
                 sd->st.completion_tokens > 0 ? sd->st.completion_tokens : 0);
        snprintf(ttft, sizeof(ttft), "%d",
                 sd->st.ttft_ms > 0 ? (int)lround(sd->st.ttft_ms) : 0);
        snprintf(gen, sizeof(gen), "%d",
                 sd->st.gen_ms > 0 ? (int)lround(sd->st.gen_ms) : 0);
        snprintf(cost, sizeof(cost), "%.9f",
                 (atof(tin) * sd->m->price_in + atof(tout) * sd->m->price_out) /
                     1e6);
        const char *p[13] = {b->id_text,
                             turn_s,
                             att_s,
                             sd->name,
                             mid,
                             sd->text != NULL ? sd->text : "",
                             tin,
                             tout,
                             ttft,
                             gen,
                             cost,
                             sd->finish,
                             sd->failed ? sd->error : NULL};
        drc = db_exec(c,
                      "INSERT INTO messages (battle_id, turn, attempt, side, "
                      "role, model_id, content, tokens_in, tokens_out, "
                      "ttft_ms, gen_ms, cost, finish_reason, error) VALUES "
                      "($1, $2, $3, $4, 'assistant', $5, $6, $7, $8, $9, "
                      "$10, $11, $12, $13)",
                      13, p, NULL, &derr);
    }
    if (drc == DB_OK) {
        char plen[24];
        snprintf(plen, sizeof(plen), "%zu", w);
        const char *failed_reason = NULL;
        for (int s = 0; s < n_sides; s++)
            if (sides[s].failed)
                failed_reason = "model_failed";
        const char *p[9] = {b->id_text,
                            state,
                            turn_s,
                            failed_reason,
                            excluded,
                            tt.language[0] ? tt.language : NULL,
                            tt.has_code ? "true" : "false",
                            plen,
                            tags_text != NULL ? tags_text : "{}"};
        drc = db_exec(c,
                      "UPDATE battles SET state = $2, turns = $3, ready_at = "
                      "CASE WHEN $2 = 'ready' THEN now() ELSE ready_at END, "
                      "failed_reason = $4, excluded_reason = "
                      "coalesce(excluded_reason, $5), language = $6, "
                      "has_code = $7::bool, prompt_len = $8, tags = "
                      "$9::jsonb, updated_at = now() WHERE id = $1",
                      9, p, NULL, &derr);
    }
    if (drc == DB_OK)
        drc = db_commit(c, &derr);
    else
        db_rollback(c, &derr);
    arena__db_put(a, c);
    free(tags_text);
    if (drc != DB_OK) {
        arena__err_set(err, "saving the turn: %s", derr.msg);
        return ARENA_ERR_DB;
    }
    return ARENA_OK;
}

int arena_battle_turn(struct arena *a, const struct arena_visitor *v,
                      const char *id, const char *prompt,
                      const struct arena_turn_io *io, struct arena_err *err)
{
    if (prompt != NULL) {
        size_t pl = strlen(prompt);
        if (pl > (size_t)a->o.max_prompt_bytes) {
            arena__err_set(err, "the prompt is %zu bytes; the limit is %d", pl,
                           a->o.max_prompt_bytes);
            return ARENA_ERR_TOO_LARGE;
        }
        if (pl == 0) {
            arena__err_set(err, "prompt: must not be empty");
            return ARENA_ERR_INVALID;
        }
    }
    struct db_conn *c;
    int rc = arena__db_get(a, &c, err);
    if (rc != ARENA_OK)
        return rc;
    struct battle b;
    rc = battle_load(a, c, id, v, &b, err);
    bool regen = prompt == NULL;
    if (rc == ARENA_OK) {
        if (strcmp(b.state, "voted") == 0) {
            arena__err_set(err, "this battle has its vote; start a new one");
            rc = ARENA_ERR_VOTED;
        } else if (strcmp(b.state, "failed") == 0) {
            arena__err_set(err,
                           "a model failed in this battle; start a new one");
            rc = ARENA_ERR_FAILED;
        } else if (strcmp(b.state, "answering") == 0 && !b.stale) {
            arena__err_set(err, "a turn is streaming in this battle");
            rc = ARENA_ERR_BUSY;
        } else if (regen && b.turns == 0) {
            arena__err_set(err, "nothing to regenerate yet");
            rc = ARENA_ERR_INVALID;
        } else if (!regen && b.turns >= a->o.max_turns) {
            arena__err_set(err, "this battle reached its %d turns",
                           a->o.max_turns);
            rc = ARENA_ERR_TURN_LIMIT;
        }
    }
    int turn = regen ? b.turns : b.turns + 1;
    struct convo cv = {0};
    if (rc == ARENA_OK)
        rc = convo_load(c, &b, b.turns, &cv, err);
    /* Claim the battle. An abandoned turn (stale) is taken over: the
     * battle goes back to where that turn started if this one ends early. */
    char prev[12];
    if (!b.stale)
        snprintf(prev, sizeof(prev), "%s", b.state);
    else if (b.turns == 0 || strcmp(b.mode, "direct") == 0)
        snprintf(prev, sizeof(prev), "open");
    else
        snprintf(prev, sizeof(prev), "ready");
    if (rc == ARENA_OK) {
        const char *p[2] = {b.id_text, b.state};
        PGresult *res = NULL;
        struct db_err derr = {{0}, {0}};
        if (db_exec(c,
                    "UPDATE battles SET state = 'answering', updated_at = "
                    "now() WHERE id = $1 AND state = $2 RETURNING 1",
                    2, p, &res, &derr) != DB_OK) {
            arena__err_set(err, "claiming the battle: %s", derr.msg);
            rc = ARENA_ERR_DB;
        } else if (PQntuples(res) == 0) {
            arena__err_set(err, "the battle changed meanwhile; try again");
            rc = ARENA_ERR_BUSY;
        }
        PQclear(res);
    }
    arena__db_put(a, c);
    if (rc != ARENA_OK) {
        convo_free(&cv);
        return rc;
    }

    bool direct = strcmp(b.mode, "direct") == 0;
    bool anonymous = strcmp(b.mode, "anonymous") == 0;
    int n_sides = direct ? 1 : 2;
    struct side sides[2];
    memset(sides, 0, sizeof(sides));
    struct arena__models *m = arena__models_get(a);
    sides[0].m = arena__model_by_id(m, b.model_a);
    sides[1].m = direct ? NULL : arena__model_by_id(m, b.model_b);
    sides[0].name = "a";
    sides[1].name = "b";
    const char *user_prompt =
        regen ? (cv.prompt[turn - 1] ? cv.prompt[turn - 1] : "") : prompt;
    int upto = regen ? turn - 1 : turn - 1;
    int attempt = regen ? cv.attempt[turn - 1] + 1 : 0;
    struct infer_waiter *w = infer_waiter_new();
    rc = w != NULL ? ARENA_OK : ARENA_ERR_NOMEM;
    for (int s = 0; s < n_sides && rc == ARENA_OK; s++) {
        struct side *sd = &sides[s];
        if (sd->m == NULL || sd->m->engine == NULL) {
            arena__err_set(err, "model %s is not available now", sd->name);
            rc = ARENA_ERR_NO_MODELS;
            break;
        }
        const char *const fixed[3] = {sd->m->name, sd->m->display_name,
                                      sd->m->organisation};
        for (int k = 0; k < 3; k++)
            sd->terms[sd->n_terms++] = fixed[k];
        for (size_t k = 0; k < a->n_leak && sd->n_terms < 64; k++)
            sd->terms[sd->n_terms++] = a->leak_terms[k];
        uint64_t session =
            (strtoull(b.id_text, NULL, 10) << 1 | (uint64_t)s) + 1;
        struct infer_err ierr = {{0}};
        int irc =
            side_submit(a, sd, &cv, s, upto, user_prompt, session, w, &ierr);
        if (irc == INFER_ERR_BUSY) {
            arena__err_set(err, "the models are busy; retry in a moment");
            rc = ARENA_ERR_OVERLOADED;
        } else if (irc == INFER_ERR_TOO_LONG) {
            arena__err_set(err,
                           "the conversation no longer fits model %s's "
                           "context; start a new battle",
                           sd->name);
            rc = ARENA_ERR_TURN_LIMIT;
        } else if (irc != INFER_OK) {
            sd->failed = true;
            snprintf(sd->error, sizeof(sd->error), "%s", ierr.msg);
            snprintf(sd->finish, sizeof(sd->finish), "error");
            arena__model_report(a, sd->m->id, true);
        } else {
            sd->active = true;
        }
    }
    bool gone = false;
    if (rc == ARENA_OK && io->start(io->user) != 0)
        gone = true;
    bool flagged =
        b.excluded[0] != '\0' && strcmp(b.excluded, "identity_leak") == 0;
    bool was_flagged = flagged;
    if (rc == ARENA_OK && !gone) {
        gone = emit(io, "turn", json_pack("{s:i}", "turn", turn)) != 0;
        for (int s = 0; s < n_sides && !gone; s++)
            if (sides[s].failed)
                gone = emit(io, "error",
                            json_pack("{s:s,s:s,s:s}", "side", sides[s].name,
                                      "code", "model_failed", "message",
                                      "the model could not start")) != 0;
    }
    double last = arena__now();
    while (rc == ARENA_OK && !gone) {
        int active = 0;
        for (int s = 0; s < n_sides && !gone; s++) {
            gone = side_drain(a, &sides[s], anonymous, io, &flagged) != 0;
            active += sides[s].active;
        }
        if (gone || active == 0)
            break;
        if (infer_waiter_wait(w, 1000) == 0 && arena__now() - last > PING_S) {
            gone = io->event(io->user, NULL, NULL) != 0;
            last = arena__now();
        } else {
            last = arena__now();
        }
    }
    for (int s = 0; s < n_sides; s++) {
        if (sides[s].s != NULL)
            infer_stream_free(sides[s].s); /* cancels a running one */
        sides[s].s = NULL;
    }
    infer_waiter_free(w);
    if (rc != ARENA_OK || gone) {
        restore_state(a, &b, prev);
    } else {
        bool failed = sides[0].failed || (n_sides > 1 && sides[1].failed);
        const char *state = failed ? "failed" : direct ? "open" : "ready";
        const char *excluded = flagged && !was_flagged ? "identity_leak" : NULL;
        struct arena_err serr = {{0}};
        int src = turn_save(a, &b, turn, attempt, user_prompt, !regen, sides,
                            n_sides, state, excluded, &cv, &serr);
        if (src != ARENA_OK) {
            restore_state(a, &b, prev);
            emit(io, "error",
                 json_pack("{s:n,s:s,s:s}", "side", "code", "unavailable",
                           "message", "the turn could not be saved"));
            state = prev;
        }
        emit(io, "end",
             json_pack("{s:i,s:s}", "turn", turn, "state",
                       src == ARENA_OK ? state : prev));
    }
    for (int s = 0; s < 2; s++)
        free(sides[s].text);
    arena__models_put(m);
    convo_free(&cv);
    return rc;
}
