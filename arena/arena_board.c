/*
 * arena_board.c: the leaderboard cache: snapshots of every category's
 * ratings as prebuilt JSON, rebuilt by one background thread.
 *
 * Life of a change: a vote commits -> arena_board_touch() bumps a counter
 * and signals -> the board thread wakes, waits debounce_ms for more votes,
 * fetches only the votes it lacks (arena_board_load.c), recomputes every
 * category from the copy in memory (caps and prompt weights applied, pair
 * counts, Bradley-Terry with bootstrap, online Elo, matrices), renders the
 * answers as JSON text, and swaps the snapshot pointer. Readers take a
 * reference to the snapshot under a mutex held only for that pointer copy,
 * so a request never waits for a recompute and costs a memcpy of text.
 *
 * Categories (docs/api.md, web/README.md):
 *   overall          every counted battle (identity-leak battles excluded)
 *   coding, math, hard, creative, multi_turn, long_prompt: battles with tag
 *   no_ties          without tie and tie (bothbad)
 *   include_flagged  overall plus the battles flagged for identity leaks
 *   lang:XX          battles whose prompts were detected as language XX
 * Weights: a visitor with n > visitor_cap votes has each weighted
 * visitor_cap/n; a prompt text seen in n > prompt_cap battles has each
 * weighted prompt_cap/n (arena_battles_apply_caps), counted over all
 * votes held.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "arena.h"
#include "arena_board_internal.h"
#include "db.h"

void arena_board_opts_init(struct arena_board_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->visitor_cap = 1000;
    o->prompt_cap = 50;
    o->bootstrap = 200;
    o->seed = 1;
    o->threads = 1;
    o->min_battles = 50;
    o->long_prompt_bytes = 1024;
    o->debounce_ms = 500;
    o->poll_ms = 1000;
    o->reconcile_s = 30;
    o->stats_s = 600;
    o->db_wait_ms = 5000;
}

/* ------------------------------------------------------------------------
 * The touch counter, shared by every board of the process
 * ---------------------------------------------------------------------- */

atomic_uint_fast64_t arena__board_touches;
pthread_mutex_t arena__board_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t arena__board_cv = PTHREAD_COND_INITIALIZER;

void arena_board_touch(void)
{
    atomic_fetch_add(&arena__board_touches, 1);
    pthread_mutex_lock(&arena__board_mu);
    pthread_cond_broadcast(&arena__board_cv);
    pthread_mutex_unlock(&arena__board_mu);
}

/* ------------------------------------------------------------------------
 * Categories
 * ---------------------------------------------------------------------- */

#define LEAK ARENA_TAG_IDENTITY_LEAK

static const struct {
    const char *name;
    struct arena_rating_filter f;
} fixed_cats[] = {
    {"overall", {0, LEAK, 0, 0}},
    {"coding", {ARENA_TAG_CODING, LEAK, 0, 0}},
    {"math", {ARENA_TAG_MATH, LEAK, 0, 0}},
    {"hard", {ARENA_TAG_HARD, LEAK, 0, 0}},
    {"creative", {ARENA_TAG_CREATIVE, LEAK, 0, 0}},
    {"multi_turn", {ARENA_TAG_MULTI_TURN, LEAK, 0, 0}},
    {"long_prompt", {ARENA_TAG_LONG_PROMPT, LEAK, 0, 0}},
    {"no_ties", {0, LEAK, 1, 0}},
    {"include_flagged", {0, 0, 0, 0}},
};
#define N_FIXED (sizeof(fixed_cats) / sizeof(fixed_cats[0]))

/* ------------------------------------------------------------------------
 * JSON rendering
 * ---------------------------------------------------------------------- */

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static void iso_time(double t, char *buf, size_t n, int day)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, day ? "%Y-%m-%d" : "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Dumps root (stolen) into *text; returns 0 or -1. */
static int dump(json_t *root, char **text, size_t *len)
{
    if (root == NULL)
        return -1;
    *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(root);
    if (*text == NULL)
        return -1;
    *len = strlen(*text);
    return 0;
}

static const struct arena__model_meta *
meta_of(const struct arena__model_meta *meta, size_t n_meta, uint32_t id)
{
    return id < n_meta ? &meta[id] : NULL;
}

static json_t *model_entry(const struct arena_battles *set,
                           const struct arena__model_meta *m, uint32_t id,
                           const struct arena_rating *x, int rank)
{
    const char *name = arena_battles_model_name(set, id);
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(name));
    json_object_set_new(
        o, "display_name",
        json_string(m && m->display_name ? m->display_name : name));
    json_object_set_new(
        o, "organization",
        json_string(m && m->organisation ? m->organisation : ""));
    json_object_set_new(o, "license",
                        json_string(m && m->licence ? m->licence : "open"));
    json_object_set_new(o, "rating", num_or_null(x->rating));
    json_object_set_new(o, "ci_low", num_or_null(x->ci_low));
    json_object_set_new(o, "ci_high", num_or_null(x->ci_high));
    json_object_set_new(o, "battles", json_integer((json_int_t)x->battles));
    json_object_set_new(o, "rank_ub", json_integer(rank));
    json_object_set_new(o, "provisional", json_boolean(x->provisional));
    json_object_set_new(o, "price_in",
                        m ? json_real(m->price_in) : json_null());
    json_object_set_new(o, "price_out",
                        m ? json_real(m->price_out) : json_null());
    json_object_set_new(o, "tokens_per_s",
                        m ? num_or_null(m->tokens_per_s) : json_null());
    json_object_set_new(o, "ttft_ms",
                        m ? num_or_null(m->ttft_ms) : json_null());
    return o;
}

/* The leaderboard answer of one category and method. r NULL: no battles. */
static json_t *board_json(const char *cat, const char *method,
                          const char *updated, uint64_t votes,
                          const struct arena_battles *set,
                          const struct arena__model_meta *meta, size_t n_meta,
                          const struct arena_ratings *r)
{
    json_t *root = json_object();
    json_object_set_new(root, "category", json_string(cat));
    json_object_set_new(root, "method", json_string(method));
    json_object_set_new(root, "updated_at",
                        updated ? json_string(updated) : json_null());
    json_object_set_new(root, "votes", json_integer((json_int_t)votes));
    json_t *models = json_array();
    for (size_t k = 0; r != NULL && k < r->n_ranked; k++) {
        uint32_t id = r->order[k];
        const struct arena_rating *x = &r->models[id];
        int rank = x->rank_ub;
        if (r->method == ARENA_RATING_ELO) {
            /* No intervals: the plain rank. */
            rank = 1;
            for (size_t j = 0; j < r->n_ranked; j++)
                if (r->models[r->order[j]].rating > x->rating)
                    rank++;
        }
        json_array_append_new(
            models, model_entry(set, meta_of(meta, n_meta, id), id, x, rank));
    }
    json_object_set_new(root, "models", models);
    return root;
}

static json_t *matrix_json(const double *m, size_t n, const uint32_t *order,
                           size_t k)
{
    json_t *rows = json_array();
    for (size_t a = 0; a < k; a++) {
        json_t *row = json_array();
        for (size_t b = 0; b < k; b++)
            json_array_append_new(row, num_or_null(m[order[a] * n + order[b]]));
        json_array_append_new(rows, row);
    }
    return rows;
}

static json_t *matrices_json(const char *cat, const struct arena_battles *set,
                             const struct arena_pairs *pairs,
                             const struct arena_ratings *r)
{
    json_t *root = json_object();
    json_object_set_new(root, "category", json_string(cat));
    json_t *names = json_array();
    size_t k = r != NULL ? r->n_ranked : 0;
    for (size_t i = 0; i < k; i++)
        json_array_append_new(
            names, json_string(arena_battles_model_name(set, r->order[i])));
    json_object_set_new(root, "models", names);
    if (k == 0) {
        json_object_set_new(root, "battles", json_array());
        json_object_set_new(root, "win_rate", json_array());
        json_object_set_new(root, "predicted", json_array());
        return root;
    }
    size_t n = r->n_models;
    double *m = malloc((3 * n * n + 1) * sizeof(double));
    if (m == NULL) {
        json_decref(root);
        return NULL;
    }
    arena_ratings_matrices(pairs, r, m, m + n * n, m + 2 * n * n);
    json_object_set_new(root, "battles", matrix_json(m, n, r->order, k));
    json_object_set_new(root, "win_rate",
                        matrix_json(m + n * n, n, r->order, k));
    json_object_set_new(root, "predicted",
                        matrix_json(m + 2 * n * n, n, r->order, k));
    free(m);
    return root;
}

/* ------------------------------------------------------------------------
 * Vote volume
 * ---------------------------------------------------------------------- */

#define HOUR_BUCKETS (14 * 24) /* two weeks of hours */
#define DAY_BUCKETS  365

static int series_build(const struct arena__store *st,
                        const struct arena__bucket_counts *battles, int day,
                        double now, char **text, size_t *len)
{
    int64_t width = day ? 86400 : 3600;
    size_t nb = day ? DAY_BUCKETS : HOUR_BUCKETS;
    int64_t last = ((int64_t)now / width) * width;
    int64_t first = last - (int64_t)(nb - 1) * width;
    uint64_t *votes = calloc(nb, sizeof(*votes));
    uint64_t *bat = calloc(nb, sizeof(*bat));
    if (votes == NULL || bat == NULL) {
        free(votes);
        free(bat);
        return -1;
    }
    for (size_t i = 0; i < st->n; i++) {
        int64_t t = st->vote_ts[i];
        if (t >= first && t < last + width)
            votes[(t - first) / width]++;
    }
    for (size_t i = 0; battles != NULL && i < battles->n; i++) {
        int64_t t = battles->t[i];
        if (t >= first && t < last + width)
            bat[(t - first) / width] += battles->count[i];
    }
    size_t start = 0;
    while (start < nb && votes[start] == 0 && bat[start] == 0)
        start++;
    json_t *root = json_object();
    json_object_set_new(root, "bucket", json_string(day ? "day" : "hour"));
    json_t *series = json_array();
    for (size_t i = start; i < nb; i++) {
        char ts[32];
        iso_time((double)(first + (int64_t)i * width), ts, sizeof(ts), day);
        json_array_append_new(series, json_pack("{s:s,s:I,s:I}", "t", ts,
                                                "votes", (json_int_t)votes[i],
                                                "battles", (json_int_t)bat[i]));
    }
    json_object_set_new(root, "series", series);
    free(votes);
    free(bat);
    return dump(root, text, len);
}

/* ------------------------------------------------------------------------
 * Snapshots
 * ---------------------------------------------------------------------- */

void arena__board_snap_free(struct arena_board_snap *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_cats; i++) {
        free(s->cats[i].json[0]);
        free(s->cats[i].json[1]);
        free(s->cats[i].matrices);
    }
    free(s->cats);
    free(s->categories);
    free(s->series[0]);
    free(s->series[1]);
    free(s);
}

static uint64_t count_matching(const struct arena_battles *set,
                               const struct arena_rating_filter *f)
{
    const struct arena_battle *it = arena_battles_items(set);
    size_t n = arena_battles_count(set);
    uint64_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (uint64_t)arena_rating_filter_match(f, &it[i]);
    return c;
}

/* Fills one category: its count, both leaderboards and the matrices. */
static int cat_build(struct arena__board_cat *c, const struct arena__store *st,
                     const struct arena__model_meta *meta, size_t n_meta,
                     const struct arena_board_opts *o, const char *updated,
                     struct arena_err *err)
{
    c->battles = count_matching(st->set, &c->filter);
    struct arena_pairs *pairs = NULL;
    struct arena_ratings *bt = NULL, *elo = NULL;
    int rc = ARENA_ERR_NOMEM;
    if (c->battles > 0) {
        struct arena_rating_opts ro;
        arena_rating_opts_init(&ro);
        ro.bootstrap = o->bootstrap;
        ro.seed = o->seed;
        ro.n_threads = o->threads > 0 ? o->threads : 1;
        ro.min_battles = o->min_battles;
        pairs = arena_pairs_from_battles(st->set, &c->filter);
        if (pairs == NULL)
            goto out;
        rc = arena_ratings_bt(pairs, &ro, &bt, err);
        if (rc == ARENA_OK)
            rc = arena_ratings_elo(st->set, &c->filter, &ro, &elo, err);
        if (rc != ARENA_OK)
            goto out;
        rc = ARENA_ERR_NOMEM;
    }
    if (dump(board_json(c->name, "bt", updated, c->battles, st->set, meta,
                        n_meta, bt),
             &c->json[0], &c->len[0]) != 0 ||
        dump(board_json(c->name, "elo", updated, c->battles, st->set, meta,
                        n_meta, elo),
             &c->json[1], &c->len[1]) != 0 ||
        dump(matrices_json(c->name, st->set, pairs, bt), &c->matrices,
             &c->matrices_len) != 0)
        goto out;
    rc = ARENA_OK;
out:
    if (rc == ARENA_ERR_NOMEM)
        snprintf(err->msg, sizeof(err->msg), "out of memory");
    arena_pairs_free(pairs);
    arena_ratings_free(bt);
    arena_ratings_free(elo);
    return rc;
}

int arena__board_build(struct arena__store *st,
                       const struct arena__model_meta *meta, size_t n_meta,
                       const struct arena__bucket_counts battles[2],
                       const struct arena_board_opts *o,
                       struct arena_board_snap **out, struct arena_err *err)
{
    double t0 = arena__now();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    double now = (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9;
    struct arena_board_snap *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto nomem;
    atomic_init(&s->refs, 1);
    s->votes = st->n;
    s->computed_at = now;
    if (arena_battles_apply_caps(st->set, o->visitor_cap, o->prompt_cap) !=
        ARENA_OK)
        goto nomem;
    /* Languages with battles become lang:XX categories. */
    size_t n_lang = 0;
    const struct arena_battle *it = arena_battles_items(st->set);
    size_t n = arena_battles_count(st->set);
    uint64_t *per_lang = calloc(65536, sizeof(*per_lang));
    if (per_lang == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (it[i].lang != 0 && !(it[i].tags & LEAK))
            per_lang[it[i].lang]++;
    for (size_t l = 1; l < 65536; l++)
        n_lang += per_lang[l] > 0;
    s->cats = calloc(N_FIXED + n_lang, sizeof(*s->cats));
    if (s->cats == NULL) {
        free(per_lang);
        goto nomem;
    }
    for (size_t i = 0; i < N_FIXED; i++) {
        snprintf(s->cats[i].name, sizeof(s->cats[i].name), "%s",
                 fixed_cats[i].name);
        s->cats[i].filter = fixed_cats[i].f;
    }
    s->n_cats = N_FIXED;
    /* lang ids are small: names come from the set's table. */
    for (size_t l = 1; l < 65536 && s->n_cats < N_FIXED + n_lang; l++) {
        if (per_lang[l] == 0)
            continue;
        struct arena__board_cat *c = &s->cats[s->n_cats++];
        const char *ln = arena__strtab_name(&st->set->langs, (uint32_t)l);
        snprintf(c->name, sizeof(c->name), "lang:%s", ln);
        c->filter.exclude_tags = LEAK;
        c->filter.lang = (uint16_t)l;
    }
    free(per_lang);
    char updated[32];
    iso_time(now, updated, sizeof(updated), 0);
    for (size_t i = 0; i < s->n_cats; i++) {
        int rc = cat_build(&s->cats[i], st, meta, n_meta, o, updated, err);
        if (rc != ARENA_OK) {
            arena__board_snap_free(s);
            return rc;
        }
    }
    /* The categories list: those with battles, overall always. */
    json_t *list = json_array();
    for (size_t i = 0; i < s->n_cats; i++)
        if (i == 0 || s->cats[i].battles > 0)
            json_array_append_new(
                list, json_pack("{s:s,s:I}", "name", s->cats[i].name, "battles",
                                (json_int_t)s->cats[i].battles));
    if (dump(json_pack("{s:o}", "categories", list), &s->categories,
             &s->categories_len) != 0 ||
        series_build(st, &battles[0], 0, now, &s->series[0],
                     &s->series_len[0]) != 0 ||
        series_build(st, &battles[1], 1, now, &s->series[1],
                     &s->series_len[1]) != 0)
        goto nomem;
    s->compute_s = arena__now() - t0;
    *out = s;
    return ARENA_OK;
nomem:
    arena__board_snap_free(s);
    snprintf(err->msg, sizeof(err->msg), "out of memory");
    return ARENA_ERR_NOMEM;
}

void arena_board_release(struct arena_board_snap *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        arena__board_snap_free(s);
}

static const struct arena__board_cat *cat_find(const struct arena_board_snap *s,
                                               const char *category)
{
    if (category == NULL || category[0] == '\0')
        category = "overall";
    for (size_t i = 0; i < s->n_cats; i++)
        if (strcmp(s->cats[i].name, category) == 0)
            return &s->cats[i];
    return NULL;
}

const char *arena_board_leaderboard(const struct arena_board_snap *s,
                                    const char *category, const char *method,
                                    size_t *len)
{
    const struct arena__board_cat *c = cat_find(s, category);
    int m = method == NULL || method[0] == '\0' || strcmp(method, "bt") == 0 ? 0
            : strcmp(method, "elo") == 0                                     ? 1
                                         : -1;
    if (c == NULL || m < 0)
        return NULL;
    *len = c->len[m];
    return c->json[m];
}

const char *arena_board_matrices(const struct arena_board_snap *s,
                                 const char *category, size_t *len)
{
    const struct arena__board_cat *c = cat_find(s, category);
    if (c == NULL)
        return NULL;
    *len = c->matrices_len;
    return c->matrices;
}

const char *arena_board_categories(const struct arena_board_snap *s,
                                   size_t *len)
{
    *len = s->categories_len;
    return s->categories;
}

const char *arena_board_votes(const struct arena_board_snap *s,
                              const char *bucket, size_t *len)
{
    int k = bucket == NULL || bucket[0] == '\0' || strcmp(bucket, "day") == 0
                ? 1
            : strcmp(bucket, "hour") == 0 ? 0
                                          : -1;
    if (k < 0)
        return NULL;
    *len = s->series_len[k];
    return s->series[k];
}

uint64_t arena_board_snap_votes(const struct arena_board_snap *s)
{
    return s->votes;
}

double arena_board_snap_time(const struct arena_board_snap *s)
{
    return s->computed_at;
}

double arena_board_snap_compute_s(const struct arena_board_snap *s)
{
    return s->compute_s;
}
