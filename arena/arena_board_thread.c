/*
 * arena_board_thread.c: the board's background thread, and the one-shot
 * build for commands and tests.
 *
 * The thread owns the store (the copy of the votes), the model metadata
 * and the speed sums; nothing else touches them, so they need no lock.
 * The only shared things are the snapshot pointer (b->mu, held for a
 * pointer copy) and the stop flag and touch counter (arena__board_mu and
 * arena__board_cv of arena_board.c).
 *
 * Loop: sleep until touched or poll_ms passed -> on a touch, or when
 * max(votes.id) moved, wait debounce_ms, then refresh: load the new votes,
 * refresh models (names, prices) and speeds (sums over the new assistant
 * messages), refresh battles-over-time when due, build, swap. Every
 * reconcile_s the vote count in the database is compared with the copy's;
 * a difference (a vote committed late, outside the load window; a deleted
 * vote) rebuilds the copy from scratch. After a build the thread rests
 * for as long as the build took, so it never uses more than half a core.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "arena_board_internal.h"
#include "db.h"

struct speed {
    double n_ttft, sum_ttft; /* answers with a ttft, their sum (ms) */
    double tokens, gen_ms;   /* sums over answers with gen_ms > 0 */
};

struct arena_board {
    struct arena_board_opts o;
    pthread_t thread;
    int started;
    int stop; /* under arena__board_mu */

    pthread_mutex_t mu; /* guards snap (pointer copy only) */
    struct arena_board_snap *snap;

    /* Thread-owned. */
    struct arena__store st;
    struct arena__model_meta *meta; /* (n_meta,) by set model id */
    size_t n_meta;
    struct speed *speed; /* (n_speed,) by database model id */
    size_t n_speed;
    int64_t last_msg_id;
    struct arena__bucket_counts hours; /* battles per hour */
    double hours_at;       /* wall time of the last refresh (unix s) */
    double hours_whole_at; /* monotonic time of the last whole recount */
    char last_err[256];
};

/* ------------------------------------------------------------------------
 * Metadata, speeds, battles over time
 * ---------------------------------------------------------------------- */

static void meta_clear(struct arena__model_meta *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].display_name);
        free(m[i].organisation);
        free(m[i].licence);
    }
    free(m);
}

static int speed_add(struct speed **sp, size_t *n, int64_t id,
                     const PGresult *res, int i)
{
    if (id < 0 || id > INT32_MAX)
        return 0;
    if ((size_t)id >= *n) {
        size_t nn = *n ? *n : 64;
        while (nn <= (size_t)id)
            nn *= 2;
        struct speed *s = realloc(*sp, nn * sizeof(*s));
        if (s == NULL)
            return -1;
        memset(s + *n, 0, (nn - *n) * sizeof(*s));
        *sp = s;
        *n = nn;
    }
    struct speed *s = &(*sp)[id];
    s->n_ttft += strtod(PQgetvalue(res, i, 1), NULL);
    s->sum_ttft += strtod(PQgetvalue(res, i, 2), NULL);
    s->tokens += strtod(PQgetvalue(res, i, 3), NULL);
    s->gen_ms += strtod(PQgetvalue(res, i, 4), NULL);
    return 0;
}

/* Adds the assistant messages newer than *last_id to the speed sums. */
static int speeds_load(struct speed **sp, size_t *n, int64_t *last_id,
                       struct db_conn *c, struct arena_err *err)
{
    char lo[24];
    snprintf(lo, sizeof(lo), "%" PRId64, *last_id);
    const char *p[1] = {lo};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c,
                "SELECT model_id, count(ttft_ms), coalesce(sum(ttft_ms), 0), "
                "coalesce(sum(tokens_out) FILTER (WHERE gen_ms > 0), 0), "
                "coalesce(sum(gen_ms) FILTER (WHERE gen_ms > 0), 0), max(id) "
                "FROM messages WHERE id > $1 AND role = 'assistant' "
                "AND model_id IS NOT NULL AND error IS NULL "
                "GROUP BY model_id",
                1, p, &res, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "reading speeds: %.200s",
                 derr.msg);
        return ARENA_ERR_IO;
    }
    int rc = ARENA_OK;
    int64_t hi = *last_id;
    for (int i = 0; i < PQntuples(res); i++) {
        if (speed_add(sp, n, strtoll(PQgetvalue(res, i, 0), NULL, 10), res,
                      i) != 0) {
            rc = ARENA_ERR_NOMEM;
            break;
        }
        int64_t m = strtoll(PQgetvalue(res, i, 5), NULL, 10);
        if (m > hi)
            hi = m;
    }
    PQclear(res);
    *last_id = hi;
    return rc;
}

static char *dup_str(const char *s)
{
    return strdup(s != NULL ? s : "");
}

/* Reads names, organisations, licences and prices; speeds from sp. */
static int meta_load(struct arena__store *st, const struct speed *sp,
                     size_t n_speed, struct db_conn *c,
                     struct arena__model_meta **out, size_t *n_out,
                     struct arena_err *err)
{
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c,
                "SELECT id, display_name, organisation, licence, "
                "price_input_per_mtok::float8, price_output_per_mtok::float8 "
                "FROM models",
                0, NULL, &res, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "reading models: %.200s",
                 derr.msg);
        return ARENA_ERR_IO;
    }
    size_t n = arena_battles_n_models(st->set);
    struct arena__model_meta *m = calloc(n ? n : 1, sizeof(*m));
    if (m == NULL) {
        PQclear(res);
        return ARENA_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        m[i].ttft_ms = m[i].tokens_per_s = NAN;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t db_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        if (db_id < 0 || (size_t)db_id >= st->model_map_n ||
            st->model_map[db_id] < 0 || (size_t)st->model_map[db_id] >= n)
            continue;
        struct arena__model_meta *x = &m[st->model_map[db_id]];
        x->display_name = dup_str(PQgetvalue(res, i, 1));
        x->organisation = dup_str(PQgetvalue(res, i, 2));
        x->licence = dup_str(PQgetvalue(res, i, 3));
        x->price_in = strtod(PQgetvalue(res, i, 4), NULL);
        x->price_out = strtod(PQgetvalue(res, i, 5), NULL);
        if ((size_t)db_id < n_speed) {
            const struct speed *s = &sp[db_id];
            if (s->n_ttft > 0)
                x->ttft_ms = s->sum_ttft / s->n_ttft;
            if (s->gen_ms > 0)
                x->tokens_per_s = s->tokens * 1000.0 / s->gen_ms;
        }
    }
    PQclear(res);
    *out = m;
    *n_out = n;
    return ARENA_OK;
}

static void buckets_clear(struct arena__bucket_counts *b)
{
    free(b->t);
    free(b->count);
    memset(b, 0, sizeof(*b));
}

/* Battles created per hour (UTC), kept in b (sorted by hour) and brought
 * up to date by re-counting the hours from since (unix s) on: everything
 * before since is kept, everything from it replaced. since 0: the last
 * 366 days. The battles_created_at index makes a recent since cheap. */
static int hours_load(struct arena__bucket_counts *b, int64_t since,
                      struct db_conn *c, struct arena_err *err)
{
    char since_s[24];
    snprintf(since_s, sizeof(since_s), "%" PRId64, since);
    const char *p[1] = {since_s};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c,
                "SELECT extract(epoch FROM date_trunc('hour', created_at, "
                "'UTC'))::bigint, count(*) FROM battles WHERE created_at >= "
                "CASE WHEN $1::bigint = 0 THEN now() - interval '366 days' "
                "ELSE to_timestamp($1::bigint) END GROUP BY 1 ORDER BY 1",
                1, p, &res, &derr) != DB_OK) {
        snprintf(err->msg, sizeof(err->msg), "battles over time: %.200s",
                 derr.msg);
        return ARENA_ERR_IO;
    }
    size_t keep = 0;
    while (since != 0 && keep < b->n && b->t[keep] < since)
        keep++;
    size_t n = keep + (size_t)PQntuples(res);
    int64_t *t = realloc(b->t, (n ? n : 1) * sizeof(*t));
    if (t != NULL)
        b->t = t;
    uint64_t *cnt = t ? realloc(b->count, (n ? n : 1) * sizeof(*cnt)) : NULL;
    if (cnt != NULL)
        b->count = cnt;
    if (t == NULL || cnt == NULL) {
        PQclear(res);
        return ARENA_ERR_NOMEM;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        b->t[keep + (size_t)i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        b->count[keep + (size_t)i] = strtoull(PQgetvalue(res, i, 1), NULL, 10);
    }
    b->n = n;
    PQclear(res);
    return ARENA_OK;
}

/* One value of a one-row, one-column query; -1 on failure. */
static int64_t scalar(struct db_conn *c, const char *sql)
{
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c, sql, 0, NULL, &res, &derr) != DB_OK)
        return -1;
    int64_t v = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)
                    ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                    : 0;
    PQclear(res);
    return v;
}

/* max(votes.id) (0 when empty), and the votes with an id above lo; -1s
 * on failure. One index range scan of at most the window. */
static void poll_votes(struct db_conn *c, int64_t lo, int64_t *max,
                       int64_t *above)
{
    char lo_s[24];
    snprintf(lo_s, sizeof(lo_s), "%" PRId64, lo);
    const char *p[1] = {lo_s};
    PGresult *res = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_exec(c,
                "SELECT coalesce(max(id), 0), count(*) FROM votes "
                "WHERE id > $1::bigint",
                1, p, &res, &derr) != DB_OK)
        return;
    if (PQntuples(res) == 1) {
        *above = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        *max = *above > 0 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : lo;
    }
    PQclear(res);
}

static double wall_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Brings the battles-per-hour counts up to date: whole (the last year) or
 * from an hour before the last refresh. */
static int hours_refresh(struct arena_board *b, struct db_conn *c, int whole,
                         struct arena_err *err)
{
    double now = wall_now();
    int64_t since = 0;
    if (!whole)
        since = ((int64_t)b->hours_at / 3600 - 1) * 3600;
    int rc = hours_load(&b->hours, since, c, err);
    if (rc == ARENA_OK) {
        b->hours_at = now;
        if (whole)
            b->hours_whole_at = arena__now();
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Refresh
 * ---------------------------------------------------------------------- */

/* Loads what changed and builds a snapshot. full: rebuild the copy. */
static int refresh(struct arena_board *b, struct db_conn *c, int full,
                   struct arena_board_snap **out, struct arena_err *err)
{
    int rc, added = 0;
    if (full) {
        struct arena__store fresh;
        if (arena__store_init(&fresh) != ARENA_OK)
            return ARENA_ERR_NOMEM;
        rc = arena__store_load(&fresh, c, b->o.long_prompt_bytes, &added, err);
        if (rc != ARENA_OK) {
            arena__store_free(&fresh);
            return rc;
        }
        arena__store_free(&b->st);
        b->st = fresh;
    } else {
        rc = arena__store_load(&b->st, c, b->o.long_prompt_bytes, &added, err);
        if (rc != ARENA_OK)
            return rc;
    }
    rc = speeds_load(&b->speed, &b->n_speed, &b->last_msg_id, c, err);
    if (rc != ARENA_OK)
        return rc;
    struct arena__model_meta *meta = NULL;
    size_t n_meta = 0;
    rc = meta_load(&b->st, b->speed, b->n_speed, c, &meta, &n_meta, err);
    if (rc != ARENA_OK)
        return rc;
    meta_clear(b->meta, b->n_meta);
    b->meta = meta;
    b->n_meta = n_meta;
    /* Battles over time: the whole year at the first refresh (and every
     * stats_s, after a snapshot went out: see board_main), else only the
     * hours since an hour before the last refresh, which also catches
     * battles committed late. */
    if (b->hours_at == 0 || full)
        rc = hours_refresh(b, c, 1, err);
    else
        rc = hours_refresh(b, c, 0, err);
    if (rc != ARENA_OK)
        return rc;
    struct arena__bucket_counts both[2] = {b->hours, b->hours};
    return arena__board_build(&b->st, b->meta, b->n_meta, both, &b->o, out,
                              err);
}

static void swap_snap(struct arena_board *b, struct arena_board_snap *s)
{
    pthread_mutex_lock(&b->mu);
    struct arena_board_snap *old = b->snap;
    b->snap = s;
    pthread_mutex_unlock(&b->mu);
    arena_board_release(old);
}

struct arena_board_snap *arena_board_acquire(struct arena_board *b)
{
    pthread_mutex_lock(&b->mu);
    struct arena_board_snap *s = b->snap;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&b->mu);
    return s;
}

/* ------------------------------------------------------------------------
 * The thread
 * ---------------------------------------------------------------------- */

static double mono(void)
{
    return arena__now();
}

/* Waits until the touch counter differs from *seen, the stop flag is set,
 * or deadline (monotonic s) passes. Returns 1 when stopping. */
static int wait_until(struct arena_board *b, uint64_t seen, double deadline,
                      int for_touch)
{
    pthread_mutex_lock(&arena__board_mu);
    for (;;) {
        if (b->stop) {
            pthread_mutex_unlock(&arena__board_mu);
            return 1;
        }
        if (for_touch && atomic_load(&arena__board_touches) != seen)
            break;
        double left = deadline - mono();
        if (left <= 0)
            break;
        /* The condition is statically initialised: realtime clock. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double end = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + left;
        ts.tv_sec = (time_t)end;
        ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&arena__board_cv, &arena__board_mu, &ts);
    }
    pthread_mutex_unlock(&arena__board_mu);
    return 0;
}

static void *board_main(void *arg)
{
    struct arena_board *b = arg;
    uint64_t seen = atomic_load(&arena__board_touches);
    int need = 1, full = 1;
    double next_poll = 0, next_reconcile = mono() + b->o.reconcile_s;
    for (;;) {
        if (!need && wait_until(b, seen, next_poll, 1))
            break;
        uint64_t t = atomic_load(&arena__board_touches);
        if (t != seen)
            need = 1;
        struct db_conn *c = NULL;
        struct db_err derr = {{0}, {0}};
        struct arena_err err = {{0}};
        double now = mono();
        int polling = now >= next_poll, reconciling = now >= next_reconcile;
        if (!need && !polling && !reconciling)
            continue;
        if (db_pool_acquire(b->o.db, b->o.db_wait_ms, &c, &derr) != DB_OK) {
            snprintf(b->last_err, sizeof(b->last_err), "%s", derr.msg);
            next_poll = mono() + b->o.poll_ms / 1000.0;
            need = 0; /* retried at the next poll */
            seen = t;
            full = full || b->st.n == 0;
            continue;
        }
        if (polling) {
            /* The highest id, and how many votes the re-read window holds
             * in the database: a vote committed late (a lower id than one
             * already read) changes the second. */
            uint64_t held = 0;
            int64_t lo = arena__store_window(&b->st, &held);
            int64_t m = -1, in_window = -1;
            poll_votes(c, lo, &m, &in_window);
            if (m >= 0 && (m != b->st.max_id || (uint64_t)in_window != held))
                need = 1;
            if (m >= 0 && m < b->st.max_id)
                full = 1; /* votes were deleted */
            /* A bulk import: reading all again through the cursor beats
             * paging through that many new rows. */
            if (m - b->st.max_id > 200000)
                full = 1;
            next_poll = mono() + b->o.poll_ms / 1000.0;
        }
        if (reconciling) {
            int64_t n = scalar(c, "SELECT count(*) FROM votes");
            if (n >= 0 && (uint64_t)n != b->st.n)
                need = full = 1;
            next_reconcile = mono() + b->o.reconcile_s;
        }
        if (!need) {
            db_pool_release(b->o.db, c);
            continue;
        }
        /* Debounce: let a burst of votes settle into one recompute. */
        db_pool_release(b->o.db, c);
        c = NULL;
        if (wait_until(b, 0, mono() + b->o.debounce_ms / 1000.0, 0))
            break;
        seen = atomic_load(&arena__board_touches);
        if (db_pool_acquire(b->o.db, b->o.db_wait_ms, &c, &derr) != DB_OK) {
            snprintf(b->last_err, sizeof(b->last_err), "%s", derr.msg);
            continue;
        }
        struct arena_board_snap *s = NULL;
        int rc = refresh(b, c, full, &s, &err);
        db_pool_release(b->o.db, c);
        if (rc != ARENA_OK) {
            snprintf(b->last_err, sizeof(b->last_err), "%s", err.msg);
            /* Retry at the next poll, from scratch (the copy may hold
             * part of a load). */
            full = 1;
            need = 0;
            next_poll = mono() + b->o.poll_ms / 1000.0;
            continue;
        }
        need = full = 0;
        double took = s->compute_s;
        swap_snap(b, s);
        /* The whole year's battle counts, now and then (battles imported
         * with old times), once the fresh snapshot is out. */
        if (mono() - b->hours_whole_at >= b->o.stats_s &&
            db_pool_acquire(b->o.db, b->o.db_wait_ms, &c, &derr) == DB_OK) {
            hours_refresh(b, c, 1, &err);
            db_pool_release(b->o.db, c);
        }
        /* Rest as long as the build took (at most half a core). */
        if (wait_until(b, 0, mono() + took, 0))
            break;
    }
    return NULL;
}

int arena_board_new(const struct arena_board_opts *o, struct arena_board **out,
                    struct arena_err *err)
{
    if (o == NULL || o->db == NULL) {
        snprintf(err->msg, sizeof(err->msg), "the board needs a database");
        return ARENA_ERR_INVALID;
    }
    struct arena_board *b = calloc(1, sizeof(*b));
    if (b == NULL || arena__store_init(&b->st) != ARENA_OK) {
        free(b);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return ARENA_ERR_NOMEM;
    }
    b->o = *o;
    if (b->o.poll_ms <= 0)
        b->o.poll_ms = 1000;
    if (b->o.reconcile_s <= 0)
        b->o.reconcile_s = 30;
    pthread_mutex_init(&b->mu, NULL);
    struct arena__bucket_counts none[2] = {{0}, {0}};
    int rc = arena__board_build(&b->st, NULL, 0, none, &b->o, &b->snap, err);
    if (rc == ARENA_OK) {
        b->snap->computed_at = 0;
        if (pthread_create(&b->thread, NULL, board_main, b) != 0) {
            snprintf(err->msg, sizeof(err->msg), "cannot start a thread");
            rc = ARENA_ERR_NOMEM;
        } else {
            b->started = 1;
        }
    }
    if (rc != ARENA_OK) {
        arena_board_free(b);
        return rc;
    }
    *out = b;
    return ARENA_OK;
}

void arena_board_free(struct arena_board *b)
{
    if (b == NULL)
        return;
    if (b->started) {
        pthread_mutex_lock(&arena__board_mu);
        b->stop = 1;
        pthread_cond_broadcast(&arena__board_cv);
        pthread_mutex_unlock(&arena__board_mu);
        pthread_join(b->thread, NULL);
    }
    arena_board_release(b->snap);
    arena__store_free(&b->st);
    meta_clear(b->meta, b->n_meta);
    free(b->speed);
    buckets_clear(&b->hours);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ------------------------------------------------------------------------
 * Without a thread
 * ---------------------------------------------------------------------- */

int arena_board_build_once(struct db_conn *conn,
                           const struct arena_board_opts *o,
                           struct arena_board_snap **out, struct arena_err *err)
{
    struct arena_board b;
    memset(&b, 0, sizeof(b));
    b.o = *o;
    b.o.stats_s = 0;
    if (arena__store_init(&b.st) != ARENA_OK) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return ARENA_ERR_NOMEM;
    }
    int rc = refresh(&b, conn, 0, out, err);
    arena__store_free(&b.st);
    meta_clear(b.meta, b.n_meta);
    free(b.speed);
    buckets_clear(&b.hours);
    return rc;
}

int arena_board_load_battles(struct db_conn *conn, int long_prompt_bytes,
                             struct arena_battles *set, struct arena_err *err)
{
    if (arena_battles_count(set) != 0 || arena_battles_n_models(set) != 0) {
        snprintf(err->msg, sizeof(err->msg), "the set must be empty");
        return ARENA_ERR_INVALID;
    }
    struct arena__store st;
    memset(&st, 0, sizeof(st));
    st.set = set; /* borrowed: detached before the store is freed */
    int added = 0;
    int rc = arena__store_load(&st, conn, long_prompt_bytes, &added, err);
    st.set = NULL;
    arena__store_free(&st);
    return rc;
}
