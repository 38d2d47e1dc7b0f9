/*
 * arena_sample.c: which two models meet in an anonymous battle.
 *
 * Candidates: enabled models with an engine, a sampling weight above zero,
 * and no failure within ARENA_COOLDOWN_S. Never a model with itself.
 *
 * Weighted (default): the pair {i, j} with probability proportional to
 * w_i * w_j (each unordered pair once).
 *
 * Active (Chatbot Arena paper, arXiv 2403.04132, section 5): the pair
 * whose next vote most reduces the width of the confidence interval. With
 * n votes so far between the pair and a per-vote outcome variance v, the
 * interval of the pair's estimate shrinks like sqrt(v / n); one more vote
 * removes sqrt(v / n) - sqrt(v / (n + 1)). We weight each pair by that
 * reduction (with n + 1 for n, so a pair never seen gets the largest
 * finite weight) times w_i * w_j (so a weight of 0 still excludes a model),
 * v = p (1 - p) with p the pair's observed score smoothed toward 1/2. The
 * pair counts come from the votes table (counted votes), reloaded at most
 * every PAIRS_TTL_S seconds by the thread that finds them stale.
 *
 * The order of the two (who is "Model A") is a fair coin in both modes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "arena_internal.h"
#include "db.h"

#define PAIRS_TTL_S 30.0

double arena__active_weight(double n, double score_a, double wa, double wb)
{
    double p = (score_a + 1.0) / (n + 2.0);
    double v = p * (1.0 - p);
    return wa * wb * (sqrt(v / (n + 1.0)) - sqrt(v / (n + 2.0)));
}

/* Reloads the pair counts when stale; keeps the old ones on failure. */
static void pairs_refresh(struct arena *a)
{
    double now = arena__now();
    pthread_mutex_lock(&a->pair_mu);
    bool stale = a->pairs_at == 0 || now - a->pairs_at > PAIRS_TTL_S;
    if (stale)
        a->pairs_at = now; /* others skip the reload meanwhile */
    pthread_mutex_unlock(&a->pair_mu);
    if (!stale)
        return;
    struct db_conn *c;
    struct arena_err err;
    if (arena__db_get(a, &c, &err) != ARENA_OK)
        return;
    PGresult *res = NULL;
    struct db_err derr;
    int rc = db_exec(
        c,
        "SELECT least(model_a, model_b), greatest(model_a, model_b), "
        "count(*), sum(CASE WHEN winner IN ('tie', 'tie (bothbad)') THEN 0.5 "
        "WHEN (winner = 'model_a') = (model_a < model_b) THEN 1 ELSE 0 END) "
        "FROM votes WHERE counted GROUP BY 1, 2",
        0, NULL, &res, &derr);
    arena__db_put(a, c);
    if (rc != DB_OK)
        return;
    int n = PQntuples(res);
    struct arena__pair *p = calloc(n > 0 ? (size_t)n : 1, sizeof(*p));
    if (p == NULL) {
        PQclear(res);
        return;
    }
    for (int i = 0; i < n; i++) {
        p[i].a = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        p[i].b = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        p[i].n = strtod(PQgetvalue(res, i, 2), NULL);
        p[i].score_a = strtod(PQgetvalue(res, i, 3), NULL);
    }
    PQclear(res);
    pthread_mutex_lock(&a->pair_mu);
    free(a->pairs);
    a->pairs = p;
    a->n_pairs = (size_t)n;
    pthread_mutex_unlock(&a->pair_mu);
}

/* The recorded (n, score of the lower id) of a pair; caller holds pair_mu. */
static void pair_lookup(const struct arena *a, int64_t x, int64_t y, double *n,
                        double *score_lo)
{
    int64_t lo = x < y ? x : y, hi = x < y ? y : x;
    *n = 0;
    *score_lo = 0;
    for (size_t i = 0; i < a->n_pairs; i++) {
        if (a->pairs[i].a == lo && a->pairs[i].b == hi) {
            *n = a->pairs[i].n;
            *score_lo = a->pairs[i].score_a;
            return;
        }
    }
}

static double unit_rand(struct arena *a)
{
    return (double)(arena__rand(a) >> 11) * (1.0 / 9007199254740992.0);
}

int arena__sample_pair(struct arena *a, const struct arena__models *m,
                       size_t *out_i, size_t *out_j)
{
    size_t *cand = malloc((m->n > 0 ? m->n : 1) * sizeof(*cand));
    if (cand == NULL)
        return ARENA_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct arena__model *x = &m->items[i];
        if (x->enabled && x->engine != NULL && x->weight > 0 &&
            arena__model_healthy(a, x->id))
            cand[k++] = i;
    }
    if (k < 2) {
        free(cand);
        return ARENA_ERR_NO_MODELS;
    }
    bool active = a->o.sampling == ARENA_SAMPLE_ACTIVE;
    if (active)
        pairs_refresh(a);
    size_t np = k * (k - 1) / 2;
    double *w = malloc(np * sizeof(*w));
    if (w == NULL) {
        free(cand);
        return ARENA_ERR_NOMEM;
    }
    double total = 0;
    size_t q = 0;
    if (active)
        pthread_mutex_lock(&a->pair_mu);
    for (size_t i = 0; i < k; i++) {
        for (size_t j = i + 1; j < k; j++, q++) {
            const struct arena__model *x = &m->items[cand[i]];
            const struct arena__model *y = &m->items[cand[j]];
            if (active) {
                double n, s_lo;
                pair_lookup(a, x->id, y->id, &n, &s_lo);
                w[q] = arena__active_weight(n, s_lo, x->weight, y->weight);
            } else {
                w[q] = x->weight * y->weight;
            }
            total += w[q];
        }
    }
    if (active)
        pthread_mutex_unlock(&a->pair_mu);
    double r = unit_rand(a) * total;
    size_t pick_i = 0, pick_j = 1;
    q = 0;
    bool found = false;
    for (size_t i = 0; i < k && !found; i++) {
        for (size_t j = i + 1; j < k; j++, q++) {
            pick_i = i;
            pick_j = j;
            if (r < w[q]) {
                found = true;
                break;
            }
            r -= w[q];
        }
    }
    /* Falling off the end (rounding) keeps the last pair. */
    if (arena__rand(a) & 1) {
        *out_i = cand[pick_i];
        *out_j = cand[pick_j];
    } else {
        *out_i = cand[pick_j];
        *out_j = cand[pick_i];
    }
    free(w);
    free(cand);
    return ARENA_OK;
}
