/*
 * arena_board_load.c: the leaderboard's copy of the votes, loaded from
 * PostgreSQL incrementally.
 *
 * The store holds every vote as one 28-byte struct arena_battle (in a
 * struct arena_battles, in vote order), plus its vote id and time. A load
 * fetches the votes with an id above what it has, in pages of
 * LOAD_PAGE rows in id order, joined with their battle's tags and the hash
 * of the battle's first prompt. Only new votes cross the wire, so a
 * refresh costs what arrived since the last one, not the whole table.
 *
 * Ids are allocated before commit, so a vote with a lower id can become
 * visible after one with a higher id. Each load therefore looks again at
 * the last WINDOW_IDS ids below the highest it has and skips the ones it
 * already holds; anything later than that is caught by the board's
 * periodic count check, which rebuilds the store from scratch.
 *
 * Model ids: every model of the models table is interned in name order at
 * the first load (so two databases with the same models number them the
 * same way, whatever their database ids); models added later get the next
 * ids. Visitors keep their database id; prompts get small ids in order of
 * first appearance of their 64-bit text hash.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "arena_board_internal.h"
#include "db.h"

#define LOAD_PAGE   20000
#define WINDOW_IDS  1024
#define RECENT_KEEP 8192

/* err->msg = what + ": " + detail (cut to fit). */
static void err_set(struct arena_err *err, const char *what, const char *detail)
{
    if (err != NULL)
        snprintf(err->msg, sizeof(err->msg), "%s%s%.200s", what,
                 detail[0] ? ": " : "", detail);
}

int arena__store_init(struct arena__store *st)
{
    memset(st, 0, sizeof(*st));
    st->set = arena_battles_new();
    return st->set != NULL ? ARENA_OK : ARENA_ERR_NOMEM;
}

void arena__store_free(struct arena__store *st)
{
    arena_battles_free(st->set);
    free(st->vote_id);
    free(st->vote_ts);
    free(st->model_map);
    free(st->prompt_key);
    free(st->prompt_val);
    memset(st, 0, sizeof(*st));
}

/* ------------------------------------------------------------------------
 * Prompt ids: 64-bit text hash -> 1, 2, 3, ... (open addressing)
 * ---------------------------------------------------------------------- */

static int prompt_grow(struct arena__store *st)
{
    size_t n = st->prompt_slots ? st->prompt_slots * 2 : 1024;
    uint64_t *k = calloc(n, sizeof(*k));
    uint32_t *v = calloc(n, sizeof(*v));
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return -1;
    }
    for (size_t i = 0; i < st->prompt_slots; i++) {
        if (st->prompt_val[i] == 0)
            continue;
        size_t j =
            (size_t)(st->prompt_key[i] * 0x9e3779b97f4a7c15ull) & (n - 1);
        while (v[j] != 0)
            j = (j + 1) & (n - 1);
        k[j] = st->prompt_key[i];
        v[j] = st->prompt_val[i];
    }
    free(st->prompt_key);
    free(st->prompt_val);
    st->prompt_key = k;
    st->prompt_val = v;
    st->prompt_slots = n;
    return 0;
}

/* The id of prompt hash h (new ids from 1); 0 when out of memory. */
static uint32_t prompt_id(struct arena__store *st, uint64_t h)
{
    if ((st->n_prompts + 1) * 2 > st->prompt_slots && prompt_grow(st) != 0)
        return 0;
    size_t mask = st->prompt_slots - 1;
    size_t j = (size_t)(h * 0x9e3779b97f4a7c15ull) & mask;
    while (st->prompt_val[j] != 0) {
        if (st->prompt_key[j] == h)
            return st->prompt_val[j];
        j = (j + 1) & mask;
    }
    st->prompt_key[j] = h;
    st->prompt_val[j] = (uint32_t)++st->n_prompts;
    return st->prompt_val[j];
}

/* ------------------------------------------------------------------------
 * Models
 * ---------------------------------------------------------------------- */

static int model_map_set(struct arena__store *st, int64_t db_id, int32_t id)
{
    if (db_id < 0 || db_id > INT32_MAX)
        return -1;
    if ((size_t)db_id >= st->model_map_n) {
        size_t n = st->model_map_n ? st->model_map_n : 64;
        while (n <= (size_t)db_id)
            n *= 2;
        int32_t *m = realloc(st->model_map, n * sizeof(*m));
        if (m == NULL)
            return -1;
        for (size_t i = st->model_map_n; i < n; i++)
            m[i] = -1;
        st->model_map = m;
        st->model_map_n = n;
    }
    st->model_map[db_id] = id;
    return 0;
}

int arena__store_models(struct arena__store *st, struct db_conn *c,
                        struct arena_err *err)
{
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c, "SELECT id, name FROM models ORDER BY name COLLATE \"C\"", 0,
                NULL, &res, &derr) != DB_OK) {
        err_set(err, "reading models", derr.msg);
        return ARENA_ERR_IO;
    }
    int rc = ARENA_OK;
    for (int i = 0; i < PQntuples(res) && rc == ARENA_OK; i++) {
        int64_t db_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        const char *name = PQgetvalue(res, i, 1);
        int32_t id = arena_battles_intern(st->set, name, strlen(name));
        if (id < 0 || model_map_set(st, db_id, id) != 0)
            rc = ARENA_ERR_NOMEM;
    }
    PQclear(res);
    if (rc != ARENA_OK)
        err_set(err, "out of memory", "");
    return rc;
}

static int32_t model_of(const struct arena__store *st, int64_t db_id)
{
    if (db_id < 0 || (uint64_t)db_id >= st->model_map_n)
        return -1;
    return st->model_map[db_id];
}

/* ------------------------------------------------------------------------
 * Votes
 * ---------------------------------------------------------------------- */

/* One row per vote: its id, pair, outcome, visitor, time (unix seconds),
 * language, tag bits (enum arena_tag) and the first prompt's hash. */
#define LOAD_COLS                                                              \
    "SELECT v.id, v.model_a, v.model_b, v.winner, "                            \
    "coalesce(v.visitor_id, 0), "                                              \
    "extract(epoch FROM v.created_at)::bigint, coalesce(b.language, ''), "     \
    "((b.has_code OR b.tags ? 'coding')::int "                                 \
    "| ((v.turns > 1 OR b.turns > 1 OR b.tags ? 'multi_turn')::int << 1) "     \
    "| ((b.prompt_len > $3 OR b.tags ? 'long_prompt')::int << 2) "             \
    "| ((NOT v.counted OR b.excluded_reason IS NOT NULL "                      \
    "    OR b.tags ? 'identity_leak')::int << 3) "                             \
    "| ((b.tags ? 'hard')::int << 4) | ((b.tags ? 'math')::int << 5) "         \
    "| ((b.tags ? 'creative')::int << 6)), "

/* A few new votes: an index range on votes.id, a lookup per row. */
static const char load_sql[] =
    LOAD_COLS "coalesce((SELECT hashtextextended(m.content, 0) FROM messages m "
              "  WHERE m.battle_id = v.battle_id AND m.role = 'user' "
              "  ORDER BY m.turn, m.attempt LIMIT 1), 0) "
              "FROM votes v JOIN battles b ON b.id = v.battle_id "
              "WHERE v.id > $1 ORDER BY v.id LIMIT $2";

/* Every vote (the first load, a rebuild): hash joins over whole tables
 * read through a cursor, in a transaction without a statement timeout. */
static const char load_all_sql[] =
    "DECLARE arena_board_load NO SCROLL CURSOR FOR " LOAD_COLS
    "coalesce(p.h, 0) FROM votes v JOIN battles b ON b.id = v.battle_id "
    "LEFT JOIN (SELECT DISTINCT ON (battle_id) battle_id, "
    "hashtextextended(content, 0) AS h FROM messages WHERE role = 'user' "
    "ORDER BY battle_id, turn, attempt) p ON p.battle_id = v.battle_id "
    "WHERE v.id > $1::bigint AND $2::int > 0 ORDER BY v.id";

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int store_push(struct arena__store *st, int64_t vid, int64_t ts)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 4096;
        int64_t *a = realloc(st->vote_id, cap * sizeof(*a));
        if (a == NULL)
            return -1;
        st->vote_id = a;
        int64_t *t = realloc(st->vote_ts, cap * sizeof(*t));
        if (t == NULL)
            return -1;
        st->vote_ts = t;
        st->cap = cap;
    }
    st->vote_id[st->n] = vid;
    st->vote_ts[st->n] = ts;
    st->n++;
    return 0;
}

/* Adds one row of load_sql. Returns 1 added, 0 skipped (known id, unknown
 * model), or -1 out of memory. */
static int store_row(struct arena__store *st, const PGresult *res, int i,
                     const int64_t *recent, size_t n_recent, int64_t below)
{
    int64_t vid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    if (vid <= below && n_recent > 0 &&
        bsearch(&vid, recent, n_recent, sizeof(*recent), cmp_i64) != NULL)
        return 0;
    int32_t a = model_of(st, strtoll(PQgetvalue(res, i, 1), NULL, 10));
    int32_t b = model_of(st, strtoll(PQgetvalue(res, i, 2), NULL, 10));
    int w = arena__winner_parse(PQgetvalue(res, i, 3),
                                (size_t)PQgetlength(res, i, 3));
    if (a < 0 || b < 0 || a == b || w < 0) {
        st->skipped++;
        return 0;
    }
    struct arena_battle rec = {0};
    rec.model_a = (uint32_t)a;
    rec.model_b = (uint32_t)b;
    rec.winner = (uint8_t)w;
    rec.weight = 1.0f;
    long long vis = strtoll(PQgetvalue(res, i, 4), NULL, 10);
    rec.visitor = vis > 0 && vis <= UINT32_MAX ? (uint32_t)vis : 0;
    int64_t ts = strtoll(PQgetvalue(res, i, 5), NULL, 10);
    const char *lang = PQgetvalue(res, i, 6);
    if (lang[0] != '\0') {
        int32_t l = arena_battles_intern_lang(st->set, lang, strlen(lang));
        if (l < 0)
            return -1;
        rec.lang = (uint16_t)(l <= UINT16_MAX ? l : 0);
    }
    rec.tags = (uint32_t)strtoul(PQgetvalue(res, i, 7), NULL, 10);
    uint64_t h = (uint64_t)strtoll(PQgetvalue(res, i, 8), NULL, 10);
    if (h != 0) {
        rec.prompt = prompt_id(st, h);
        if (rec.prompt == 0)
            return -1;
    }
    if (arena_battles_add(st->set, &rec) != ARENA_OK ||
        store_push(st, vid, ts) != 0)
        return -1;
    if (vid > st->max_id)
        st->max_id = vid;
    return 1;
}

int64_t arena__store_window(const struct arena__store *st, uint64_t *held)
{
    int64_t lo = st->max_id > WINDOW_IDS ? st->max_id - WINDOW_IDS : 0;
    size_t keep = st->n < RECENT_KEEP ? st->n : RECENT_KEEP;
    uint64_t n = 0;
    for (size_t k = st->n - keep; k < st->n; k++)
        n += st->vote_id[k] > lo;
    *held = n;
    return lo;
}

int arena__store_load(struct arena__store *st, struct db_conn *c,
                      int long_prompt_bytes, int *added, struct arena_err *err)
{
    *added = 0;
    if (!st->models_loaded) {
        int rc = arena__store_models(st, c, err);
        if (rc != ARENA_OK)
            return rc;
        st->models_loaded = 1;
    }
    /* The ids already held within the window, sorted, to skip them. */
    int64_t below = st->max_id;
    int64_t lo = st->max_id > WINDOW_IDS ? st->max_id - WINDOW_IDS : 0;
    size_t keep = st->n < RECENT_KEEP ? st->n : RECENT_KEEP;
    int64_t *recent = NULL;
    size_t n_recent = 0;
    if (keep > 0) {
        recent = malloc(keep * sizeof(*recent));
        if (recent == NULL) {
            err_set(err, "out of memory", "");
            return ARENA_ERR_NOMEM;
        }
        for (size_t k = st->n - keep; k < st->n; k++)
            if (st->vote_id[k] > lo)
                recent[n_recent++] = st->vote_id[k];
        qsort(recent, n_recent, sizeof(*recent), cmp_i64);
    }
    char lo_s[24], page_s[16], long_s[16];
    snprintf(page_s, sizeof(page_s), "%d", LOAD_PAGE);
    snprintf(long_s, sizeof(long_s), "%d", long_prompt_bytes);
    int rc = ARENA_OK;
    int reread_models = 0;
    /* An empty copy loads everything through a cursor (see load_all_sql). */
    int all = st->n == 0;
    if (all) {
        struct db_err derr = {{0}, {0}};
        snprintf(lo_s, sizeof(lo_s), "%" PRId64, lo);
        const char *p[3] = {lo_s, page_s, long_s};
        if (db_begin(c, &derr) != DB_OK ||
            db_exec(c, "SET LOCAL statement_timeout = 0", 0, NULL, NULL,
                    &derr) != DB_OK ||
            db_exec(c, "SET LOCAL cursor_tuple_fraction = 1", 0, NULL, NULL,
                    &derr) != DB_OK ||
            db_exec(c, load_all_sql, 3, p, NULL, &derr) != DB_OK) {
            err_set(err, "reading votes", derr.msg);
            db_rollback(c, &derr);
            free(recent);
            return ARENA_ERR_IO;
        }
    }
    for (;;) {
        snprintf(lo_s, sizeof(lo_s), "%" PRId64, lo);
        const char *p[3] = {lo_s, page_s, long_s};
        PGresult *res = NULL;
        struct db_err derr = {{0}, {0}};
        int drc = all ? db_exec(c, "FETCH 20000 FROM arena_board_load", 0, NULL,
                                &res, &derr)
                      : db_exec(c, load_sql, 3, p, &res, &derr);
        if (drc != DB_OK) {
            err_set(err, "reading votes", derr.msg);
            rc = ARENA_ERR_IO;
            break;
        }
        int rows = PQntuples(res);
        for (int i = 0; i < rows; i++) {
            /* A model registered after the first load: read the table
             * again, once, and retry the row. */
            int64_t ma = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            int64_t mb = strtoll(PQgetvalue(res, i, 2), NULL, 10);
            if ((model_of(st, ma) < 0 || model_of(st, mb) < 0) &&
                !reread_models) {
                reread_models = 1;
                rc = arena__store_models(st, c, err);
                if (rc != ARENA_OK)
                    break;
            }
            int r = store_row(st, res, i, recent, n_recent, below);
            if (r < 0) {
                err_set(err, "out of memory", "");
                rc = ARENA_ERR_NOMEM;
                break;
            }
            *added += r;
        }
        if (rows > 0)
            lo = strtoll(PQgetvalue(res, rows - 1, 0), NULL, 10);
        PQclear(res);
        if (rc != ARENA_OK || rows < LOAD_PAGE)
            break;
    }
    if (all) {
        struct db_err derr = {{0}, {0}};
        if (rc == ARENA_OK)
            db_commit(c, &derr); /* read only: closes the cursor */
        else
            db_rollback(c, &derr);
    }
    free(recent);
    return rc;
}
