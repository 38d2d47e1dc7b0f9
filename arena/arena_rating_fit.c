/*
 * arena_rating_fit.c: online Elo, the Bradley-Terry fit, its bootstrap
 * intervals and the matrices.
 *
 * Bradley-Terry works on the models that have battles ("active", m of them)
 * through two dense (m, m) matrices: W[i][j], the weighted wins of i over j
 * plus half the ties, and N[i][j] = N[j][i], the weighted battles. The log
 * likelihood is
 *     sum_ij W[i][j] beta_i - sum_{i<j} N[i][j] log(exp beta_i + exp beta_j)
 * and its maximum is found by damped Newton from beta = 0. The gauge (beta is
 * defined up to a constant) is fixed by adding c * 1 1^T to the Hessian,
 * which keeps sum(beta) where it was (the gradient sums to zero).
 *
 * The MLE exists iff the "won or tied against" graph is strongly connected.
 * When it is not, each model gets `prior` virtual ties against a fixed
 * reference with beta = 0, which keeps every rating finite.
 *
 * Bootstrap: a resample of the battles is a multinomial draw over the
 * pair-outcome cells. Each round draws independent Poisson counts per cell
 * (mean = the cell's count) and then adds or removes the difference to the
 * total one item at a time (adding: a cell drawn in proportion to its count;
 * removing: an item drawn uniformly among those drawn, by rejection). A
 * Poisson vector conditioned on its sum is multinomial, and adding or
 * removing uniformly drawn items keeps it so, so the counts are exactly
 * multinomial(N, p). The refit starts at the full-data MLE and iterates
 * beta += H0^-1 g(beta) with H0 the Hessian at the MLE (inverted once);
 * every round depends only on (seed, round), so threads do not change it.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "arena_internal.h"

/* Two doubles in one SSE2/NEON register (GCC and Clang vector extension). */
typedef double v2d __attribute__((vector_size(16)));

#define BT_MAX_NEWTON 200
#define BT_MAX_QUASI  100
#define BT_BOOT_MAX   1000000

void arena_rating_opts_init(struct arena_rating_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->elo_k = 4.0;
    o->elo_scale = 400.0;
    o->elo_base = 10.0;
    o->elo_initial = 1000.0;
    o->bootstrap = 1000;
    o->seed = 1;
    o->n_threads = 0;
    o->anchor = -1;
    o->anchor_rating = 1000.0;
    o->tol = 1e-10;
    o->prior = 1.0;
    o->min_battles = 100;
    o->ci_level = 0.95;
}

void arena_ratings_free(struct arena_ratings *r)
{
    if (r == NULL)
        return;
    free(r->models);
    free(r->order);
    free(r->beta);
    free(r);
}

static void err_set(struct arena_err *err, const char *fmt, const char *arg)
{
    if (err != NULL)
        snprintf(err->msg, sizeof(err->msg), fmt, arg);
}

static int check_opts(const struct arena_rating_opts *o, size_t n,
                      struct arena_err *err)
{
    if (!(o->elo_scale > 0) || !(o->elo_base > 1) || !isfinite(o->elo_k) ||
        !isfinite(o->elo_initial)) {
        err_set(err, "%s", "elo options: scale > 0 and base > 1 needed");
        return ARENA_ERR_INVALID;
    }
    if (o->bootstrap < 0 || o->bootstrap > BT_BOOT_MAX) {
        err_set(err, "%s", "bootstrap rounds must be 0 to 1000000");
        return ARENA_ERR_INVALID;
    }
    if (!(o->tol > 0) || !(o->prior >= 0) || !(o->ci_level > 0) ||
        !(o->ci_level < 1) || !isfinite(o->anchor_rating)) {
        err_set(err, "%s", "tol > 0, prior >= 0, 0 < ci_level < 1 needed");
        return ARENA_ERR_INVALID;
    }
    if (o->anchor >= 0 && (size_t)o->anchor >= n) {
        err_set(err, "%s", "anchor model id out of range");
        return ARENA_ERR_INVALID;
    }
    return ARENA_OK;
}

static struct arena_ratings *ratings_alloc(size_t n,
                                           enum arena_rating_method method)
{
    struct arena_ratings *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->method = method;
    r->n_models = n;
    r->models = calloc(n ? n : 1, sizeof(*r->models));
    r->order = calloc(n ? n : 1, sizeof(*r->order));
    if (r->models == NULL || r->order == NULL) {
        arena_ratings_free(r);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        r->models[i].rating = NAN;
        r->models[i].ci_low = NAN;
        r->models[i].ci_high = NAN;
    }
    return r;
}

static const struct arena_rating *sort_base;

static int cmp_rating_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    double rx = sort_base[x].rating, ry = sort_base[y].rating;
    if (rx != ry)
        return rx > ry ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Order, rank by upper bound, provisional flags. Models with a NAN rating
 * are left out of the order. */
static void ratings_finish(struct arena_ratings *r, uint64_t min_battles)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_models; i++) {
        r->models[i].provisional = r->models[i].battles < min_battles;
        if (!isnan(r->models[i].rating))
            r->order[k++] = (uint32_t)i;
    }
    r->n_ranked = k;
    /* qsort has no context argument; the comparator reads a file-scope
     * pointer, so guard it against concurrent callers. */
    static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&sort_lock);
    sort_base = r->models;
    qsort(r->order, k, sizeof(*r->order), cmp_rating_desc);
    pthread_mutex_unlock(&sort_lock);
    for (size_t a = 0; a < k; a++) {
        struct arena_rating *x = &r->models[r->order[a]];
        double hi = isnan(x->ci_high) ? x->rating : x->ci_high;
        int rank = 1;
        for (size_t b = 0; b < k; b++) {
            const struct arena_rating *y = &r->models[r->order[b]];
            double lo = isnan(y->ci_low) ? y->rating : y->ci_low;
            if (lo > hi)
                rank++;
        }
        x->rank_ub = rank;
    }
}

/* ------------------------------------------------------------------------
 * Online Elo
 * ---------------------------------------------------------------------- */

int arena_ratings_elo(const struct arena_battles *set,
                      const struct arena_rating_filter *f,
                      const struct arena_rating_opts *opts,
                      struct arena_ratings **out, struct arena_err *err)
{
    size_t n = set->models.n;
    int rc = check_opts(opts, n, err);
    if (rc != ARENA_OK)
        return rc;
    struct arena_ratings *r = ratings_alloc(n, ARENA_RATING_ELO);
    double *elo = malloc((n ? n : 1) * sizeof(*elo));
    if (r == NULL || elo == NULL) {
        free(elo);
        arena_ratings_free(r);
        return ARENA_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        elo[i] = opts->elo_initial;
    double k = opts->elo_k, scale = opts->elo_scale, base = opts->elo_base;
    for (size_t i = 0; i < set->n; i++) {
        const struct arena_battle *b = &set->items[i];
        if (f != NULL && !arena_rating_filter_match(f, b))
            continue;
        uint32_t a = b->model_a, c = b->model_b;
        double ea = 1.0 / (1.0 + pow(base, (elo[c] - elo[a]) / scale));
        double sa = b->winner == ARENA_WINNER_A   ? 1.0
                    : b->winner == ARENA_WINNER_B ? 0.0
                                                  : 0.5;
        double d = k * b->weight * (sa - ea);
        elo[a] += d;
        elo[c] -= d;
        r->models[a].battles++;
        r->models[c].battles++;
    }
    if (opts->anchor >= 0 && r->models[opts->anchor].battles == 0) {
        err_set(err, "%s", "the anchor model has no battles");
        free(elo);
        arena_ratings_free(r);
        return ARENA_ERR_INVALID;
    }
    r->scale = scale / log(base);
    double shift =
        opts->anchor >= 0 ? opts->anchor_rating - elo[opts->anchor] : 0.0;
    for (size_t i = 0; i < n; i++)
        if (r->models[i].battles > 0)
            r->models[i].rating = elo[i] + shift;
    free(elo);
    ratings_finish(r, opts->min_battles);
    *out = r;
    return ARENA_OK;
}

/* ------------------------------------------------------------------------
 * Bradley-Terry: the dense problem and damped Newton
 * ---------------------------------------------------------------------- */

struct bt_problem {
    size_t m;
    double *W;    /* (m, m) wins of row over column + ties / 2, weighted */
    double *N;    /* (m, m) battles between row and column, weighted */
    double *Wsum; /* (m,) row sums of W */
    double prior; /* virtual ties per model against beta = 0; 0 = none */
};

/* Scratch for Newton: (m, m) Hessian and three (m,) vectors. */
struct bt_work {
    double *H, *g, *s, *step, *trial;
};

static int bt_work_init(struct bt_work *w, size_t m)
{
    w->H = malloc(m * m * sizeof(double));
    w->g = malloc(m * sizeof(double));
    w->s = malloc(m * sizeof(double));
    w->step = malloc(m * sizeof(double));
    w->trial = malloc(m * sizeof(double));
    return w->H && w->g && w->s && w->step && w->trial ? 0 : -1;
}

static void bt_work_cleanup(struct bt_work *w)
{
    free(w->H);
    free(w->g);
    free(w->s);
    free(w->step);
    free(w->trial);
}

static double sigmoid(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static double log1pexp(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double bt_loglik(const struct bt_problem *p, const double *beta)
{
    size_t m = p->m;
    double ll = 0;
    for (size_t i = 0; i < m; i++) {
        ll += p->Wsum[i] * beta[i];
        const double *Ni = p->N + i * m;
        for (size_t j = i + 1; j < m; j++) {
            if (Ni[j] == 0)
                continue;
            double hi = beta[i] > beta[j] ? beta[i] : beta[j];
            double lo = beta[i] > beta[j] ? beta[j] : beta[i];
            ll -= Ni[j] * (hi + log1p(exp(lo - hi)));
        }
        if (p->prior > 0)
            ll += p->prior * (0.5 * beta[i] - log1pexp(beta[i]));
    }
    return ll;
}

/* exp(beta - max beta), so that s_i / (s_i + s_j) never overflows. */
static void bt_strengths(size_t m, const double *beta, double *s)
{
    double hi = beta[0];
    for (size_t i = 1; i < m; i++)
        if (beta[i] > hi)
            hi = beta[i];
    for (size_t i = 0; i < m; i++)
        s[i] = exp(beta[i] - hi);
}

/* Gradient g and, if H != NULL, the negated Hessian plus the gauge term. */
static void bt_derivs(const struct bt_problem *p, const double *beta, double *s,
                      double *g, double *H)
{
    size_t m = p->m;
    bt_strengths(m, beta, s);
    if (H != NULL)
        memset(H, 0, m * m * sizeof(*H));
    double trace = 0;
    for (size_t i = 0; i < m; i++) {
        const double *Ni = p->N + i * m;
        double acc = 0, diag = 0;
        for (size_t j = 0; j < m; j++) {
            if (Ni[j] == 0)
                continue;
            double d = s[i] + s[j];
            double pij = d > 0 ? s[i] / d : 0.5;
            acc += Ni[j] * pij;
            if (H != NULL) {
                double h = Ni[j] * pij * (1 - pij);
                H[i * m + j] = -h;
                diag += h;
            }
        }
        g[i] = p->Wsum[i] - acc;
        if (p->prior > 0) {
            double q = sigmoid(beta[i]);
            g[i] += p->prior * (0.5 - q);
            diag += p->prior * q * (1 - q);
        }
        if (H != NULL)
            H[i * m + i] = diag;
        trace += diag;
    }
    if (H != NULL && p->prior == 0) {
        double c = trace / ((double)m * (double)m);
        for (size_t i = 0; i < m * m; i++)
            H[i] += c;
    }
}

/* In-place Cholesky of the (m, m) SPD matrix A into its lower triangle.
 * Returns -1 if A is not (numerically) positive definite. */
static int cholesky(size_t m, double *A)
{
    for (size_t j = 0; j < m; j++) {
        double d = A[j * m + j];
        for (size_t k = 0; k < j; k++)
            d -= A[j * m + k] * A[j * m + k];
        if (!(d > 0))
            return -1;
        d = sqrt(d);
        A[j * m + j] = d;
        for (size_t i = j + 1; i < m; i++) {
            double v = A[i * m + j];
            for (size_t k = 0; k < j; k++)
                v -= A[i * m + k] * A[j * m + k];
            A[i * m + j] = v / d;
        }
    }
    return 0;
}

/* Solves L L^T x = b in place (b becomes x). */
static void chol_solve(size_t m, const double *L, double *b)
{
    for (size_t i = 0; i < m; i++) {
        double v = b[i];
        for (size_t k = 0; k < i; k++)
            v -= L[i * m + k] * b[k];
        b[i] = v / L[i * m + i];
    }
    for (size_t i = m; i-- > 0;) {
        double v = b[i];
        for (size_t k = i + 1; k < m; k++)
            v -= L[k * m + i] * b[k];
        b[i] = v / L[i * m + i];
    }
}

static double max_abs(size_t m, const double *x)
{
    double v = 0;
    for (size_t i = 0; i < m; i++)
        if (fabs(x[i]) > v || isnan(x[i]))
            v = isnan(x[i]) ? INFINITY : fabs(x[i]);
    return v;
}

/* Damped Newton from beta (in/out). Returns iterations, or -1 if it did not
 * converge within BT_MAX_NEWTON. */
static int bt_newton(const struct bt_problem *p, double *beta, double tol,
                     struct bt_work *w)
{
    size_t m = p->m;
    double ll = bt_loglik(p, beta);
    for (int it = 1; it <= BT_MAX_NEWTON; it++) {
        bt_derivs(p, beta, w->s, w->g, w->H);
        if (cholesky(m, w->H) != 0)
            return -1;
        memcpy(w->step, w->g, m * sizeof(double));
        chol_solve(m, w->H, w->step);
        double t = 1.0, ll_new = ll;
        for (int half = 0; half < 60; half++, t *= 0.5) {
            for (size_t i = 0; i < m; i++)
                w->trial[i] = beta[i] + t * w->step[i];
            ll_new = bt_loglik(p, w->trial);
            /* Near the optimum the change is below rounding; accept. */
            if (ll_new >= ll - 1e-12 * fabs(ll))
                break;
        }
        memcpy(beta, w->trial, m * sizeof(double));
        ll = ll_new;
        if (t * max_abs(m, w->step) < tol)
            return it;
    }
    return -1;
}

/* Whether every model can reach every other through "won or tied against"
 * edges in both directions: then the MLE exists. */
static int bt_strongly_connected(const struct bt_problem *p, char *seen,
                                 uint32_t *stack)
{
    size_t m = p->m;
    for (int dir = 0; dir < 2; dir++) {
        memset(seen, 0, m);
        size_t top = 0, reached = 1;
        stack[top++] = 0;
        seen[0] = 1;
        while (top > 0) {
            size_t i = stack[--top];
            for (size_t j = 0; j < m; j++) {
                double e = dir == 0 ? p->W[i * m + j] : p->W[j * m + i];
                if (!seen[j] && e > 0) {
                    seen[j] = 1;
                    stack[top++] = (uint32_t)j;
                    reached++;
                }
            }
        }
        if (reached != m)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------
 * Bootstrap
 * ---------------------------------------------------------------------- */

struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_u01(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* One pair-outcome cell: a Poisson source with constants precomputed for
 * its mean lam (its count in the data). Kinds: 0 = i wins, 1 = j wins,
 * 2 = tie, for the pair (i, j), i < j. */
struct cell {
    double lam;     /* its count in the data; 0 for an empty slot */
    double inv_lam; /* 1 / lam */
    double a, b, vr, log_ia, loglam; /* PTRS constants (lam >= 10) */
    uint32_t pair;
    uint32_t kind;
    int32_t table; /* inversion table of its mean, or -1: PTRS */
};

static void cell_prepare(struct cell *c)
{
    double lam = c->lam;
    c->inv_lam = 1 / lam;
    if (lam < 10)
        return;
    /* Hormann (1993), transformed rejection with squeeze (PTRS). */
    double slam = sqrt(lam);
    c->loglam = log(lam);
    c->b = 0.931 + 2.53 * slam;
    c->a = -0.059 + 0.02483 * c->b;
    c->log_ia = log(1.1239 + 1.1328 / (c->b - 3.4));
    c->vr = 0.9277 - 3.6224 / (c->b - 2);
}

#define LF_TABLE 8192

/* log(k!): from the table below LF_TABLE, else Stirling's series (error
 * below 1e-15 there). */
static double log_factorial(const double *table, double k)
{
    if (k < LF_TABLE)
        return table[(int)k];
    double x = k + 1, x2 = x * x;
    return (x - 0.5) * log(x) - x + 0.91893853320467274178 +
           (1.0 / 12 - (1.0 / 360 - 1.0 / (1260 * x2)) / x2) / x;
}

/* Transformed rejection (PTRS) for means without a table. */
static double poisson_ptrs(const struct cell *c, const double *lf,
                           struct rng *r)
{
    for (;;) {
        double u = rng_u01(r) - 0.5, v = rng_u01(r);
        double us = 0.5 - fabs(u);
        double k = floor((2 * c->a / us + c->b) * u + c->lam + 0.43);
        if (us >= 0.07 && v <= c->vr)
            return k;
        if (k < 0 || (us < 0.013 && v > us))
            continue;
        /* log(v) + log_ia - log(a / us^2 + b) <= log pmf(k), with the two
         * logarithms on the left folded into one. */
        if (log(v / (c->a / (us * us) + c->b)) + c->log_ia <=
            -c->lam + k * c->loglam - log_factorial(lf, k))
            return k;
    }
}

/* Alias tables (Walker, built by Vose's method): Poisson(lam) over the
 * support where its probability exceeds 1e-20, renormalised. A draw is one
 * uniform split into a column and a fraction, one 16-byte load and one
 * comparison; with at most 2^13 columns the fraction keeps 40 bits, so the
 * probabilities are exact to about 1e-12. Cells with the same mean (counts
 * repeat a lot) share one table. */
struct alias_entry {
    double p;       /* keep the column with this probability */
    uint32_t alias; /* else take this one */
    uint32_t unused;
};

struct ptable {
    uint32_t lo;  /* support starts here */
    uint32_t len; /* columns */
    uint32_t off; /* into the alias entries */
};

#define PT_MAX_LAM     4096.0
#define PT_MAX_ENTRIES (1u << 20)

static inline double poisson_alias(const struct ptable *t,
                                   const struct alias_entry *tab, struct rng *r)
{
    double x = rng_u01(r) * t->len;
    uint32_t i = (uint32_t)x;
    const struct alias_entry *e = tab + t->off + i;
    /* Branch-free select: the comparison is a coin flip. */
    uint32_t keep = -(uint32_t)(x - i < e->p);
    return (double)(t->lo + ((i & keep) | (e->alias & ~keep)));
}

/* Vose's alias construction over n weights w (any positive scale); small
 * and large are (n,) scratch. */
static void alias_build(const double *w, size_t n, struct alias_entry *out,
                        uint32_t *small, uint32_t *large)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += w[i];
    size_t ns = 0, nl = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].p = w[i] * (double)n / sum;
        out[i].alias = (uint32_t)i;
        out[i].unused = 0;
        if (out[i].p < 1)
            small[ns++] = (uint32_t)i;
        else
            large[nl++] = (uint32_t)i;
    }
    while (ns > 0 && nl > 0) {
        uint32_t sm = small[--ns], lg = large[nl - 1];
        out[sm].alias = lg;
        out[lg].p -= 1 - out[sm].p;
        if (out[lg].p < 1) {
            nl--;
            small[ns++] = lg;
        }
    }
    /* What is left is 1 up to rounding. */
    while (nl > 0)
        out[large[--nl]].p = 1;
    while (ns > 0)
        out[small[--ns]].p = 1;
}

/* Everything the bootstrap threads share, read-only once built. */
struct boot {
    const struct bt_problem *prob; /* the full data */
    const double *beta0;           /* (m,) MLE */
    const double *Hinv;            /* (m, m) inverse Hessian at the MLE */
    size_t m, n_pairs, n_cells;
    uint32_t *pi, *pj;   /* (n_pairs,) active indices, pi < pj, by pi */
    uint32_t *row;       /* (m + 1,) pairs of row i: row[i] .. row[i+1] */
    struct cell *cells;  /* (n_cells,) slot 3 p + kind of pair p */
    int32_t *slot_table; /* (n_cells,) table, -1 PTRS, -2 empty slot */
    double *slot_wbar;   /* (n_cells,) mean weight of the slot's battles */
    double *alias_p;     /* (n_cells,) Walker alias table */
    uint32_t *alias_i;   /* (n_cells,) */
    double total;        /* N: battles in the data */
    double *lf;          /* (LF_TABLE,) log(k!) */
    struct ptable *pt;   /* (n_pt,) per-mean alias tables */
    struct alias_entry *pt_alias; /* (PT_MAX_ENTRIES,) */
    size_t n_pt;
    double tol, fallback_prior;
    int rounds, n_threads, anchor; /* anchor: active index or -1 */
    uint64_t seed;
    double *out;       /* (rounds, m) beta per round, gauged */
    int fallbacks[64]; /* per thread */
    long iters[64];    /* per thread */
    int failed;        /* allocation failure in a thread */
};

static int boot_build_alias(struct boot *b)
{
    size_t n = b->n_cells;
    b->alias_p = malloc(n * sizeof(double));
    b->alias_i = malloc(n * sizeof(uint32_t));
    uint32_t *small = malloc(n * sizeof(uint32_t));
    uint32_t *large = malloc(n * sizeof(uint32_t));
    if (!b->alias_p || !b->alias_i || !small || !large) {
        free(small);
        free(large);
        return -1;
    }
    size_t ns = 0, nl = 0;
    for (size_t c = 0; c < n; c++) {
        b->alias_p[c] = b->cells[c].lam * (double)n / b->total;
        b->alias_i[c] = (uint32_t)c;
        if (b->alias_p[c] < 1)
            small[ns++] = (uint32_t)c;
        else
            large[nl++] = (uint32_t)c;
    }
    while (ns > 0 && nl > 0) {
        uint32_t s = small[--ns], l = large[nl - 1];
        b->alias_i[s] = l;
        b->alias_p[l] -= 1 - b->alias_p[s];
        if (b->alias_p[l] < 1) {
            nl--;
            small[ns++] = l;
        }
    }
    while (nl > 0)
        b->alias_p[large[--nl]] = 1;
    while (ns > 0)
        b->alias_p[small[--ns]] = 1;
    free(small);
    free(large);
    return 0;
}

static inline uint32_t alias_draw(const struct boot *b, struct rng *r)
{
    uint64_t x = rng_next(r);
    uint32_t c = (uint32_t)(((x >> 32) * b->n_cells) >> 32);
    double u = (double)(x & 0xffffffffu) * 0x1.0p-32;
    return u < b->alias_p[c] ? c : b->alias_i[c];
}

/* Per-thread scratch. */
struct boot_work {
    double *k;       /* (n_cells,) drawn counts */
    double *pn, *pw; /* (n_pairs,) battles, wins of pi + ties / 2 */
    double *beta, *s, *g, *acc, *step; /* (m,) */
    struct bt_problem prob; /* dense copy of the round, for the slow path */
    struct bt_work nw;
    char *seen;
    uint32_t *stack;
    long iters; /* quasi-Newton iterations, all rounds */
};

static double max_ratio_of(const struct boot *b, const double *k)
{
    double m[4] = {0, 0, 0, 0};
    size_t c = 0;
    for (; c + 4 <= b->n_cells; c += 4)
        for (int u = 0; u < 4; u++) {
            double x = k[c + u] * b->cells[c + u].inv_lam;
            m[u] = x > m[u] ? x : m[u];
        }
    for (; c < b->n_cells; c++) {
        double x = k[c] * b->cells[c].inv_lam;
        m[0] = x > m[0] ? x : m[0];
    }
    double a = m[0] > m[1] ? m[0] : m[1], d = m[2] > m[3] ? m[2] : m[3];
    /* A little headroom against rounding in k * (1 / lam). */
    return (a > d ? a : d) * (1 + 1e-12);
}

static inline double slot_draw(const struct boot *b, size_t c, struct rng *r)
{
    int32_t t = b->slot_table[c];
    return t >= 0    ? poisson_alias(&b->pt[t], b->pt_alias, r)
           : t == -1 ? poisson_ptrs(&b->cells[c], b->lf, r)
                     : 0;
}

/* Adds d (+1 or -1) items to slot c and to its pair's sums. Returns 1 if
 * the slot went from 0 to 1, -1 if from 1 to 0, else 0. */
static inline int slot_adjust(const struct boot *b, struct boot_work *w,
                              uint32_t c, double d)
{
    double before = w->k[c];
    w->k[c] = before + d;
    size_t p = c / 3;
    double v = d * b->slot_wbar[c];
    w->pn[p] += v;
    w->pw[p] += c % 3 == 0 ? v : c % 3 == 2 ? 0.5 * v : 0;
    return before == 0 ? 1 : w->k[c] == 0 ? -1 : 0;
}

/* The multinomial draw of one round into w->k (see the file comment), and
 * the pair sums in w->pn and w->pw. Returns 1 if a cell that has battles in
 * the data drew none (the round's graph may have lost an edge), else 0. */
static int boot_draw(const struct boot *b, struct boot_work *w, struct rng *r)
{
    double sum = 0;
    long zeros = 0; /* slots with battles in the data that drew none */
    for (size_t p = 0; p < b->n_pairs; p++) {
        double *k = w->k + 3 * p;
        const double *wb = b->slot_wbar + 3 * p;
        const int32_t *t = b->slot_table + 3 * p;
        k[0] = slot_draw(b, 3 * p, r);
        k[1] = slot_draw(b, 3 * p + 1, r);
        k[2] = slot_draw(b, 3 * p + 2, r);
        sum += k[0] + k[1] + k[2];
        double i_wins = k[0] * wb[0], ties = k[2] * wb[2];
        w->pn[p] = i_wins + k[1] * wb[1] + ties;
        w->pw[p] = i_wins + 0.5 * ties;
        zeros += (k[0] == 0 && t[0] != -2) + (k[1] == 0 && t[1] != -2) +
                 (k[2] == 0 && t[2] != -2);
    }
    for (; sum < b->total; sum++)
        zeros -= slot_adjust(b, w, alias_draw(b, r), 1) == 1;
    /* Removal by rejection needs a bound on k / lam over the cells; it
     * only falls as items are removed. */
    double max_ratio = 0;
    if (sum > b->total)
        max_ratio = max_ratio_of(b, w->k);
    for (; sum > b->total; sum--) {
        for (;;) {
            uint32_t c = alias_draw(b, r);
            if (rng_u01(r) * max_ratio * b->cells[c].lam < w->k[c]) {
                zeros += slot_adjust(b, w, c, -1) == -1;
                break;
            }
        }
    }
    return zeros > 0;
}

/* step = Hinv g, (m, m) times (m,), as column updates two columns and two
 * rows at a time in 2-wide vectors (GCC vector extension, which compiles to
 * SSE2 on x86-64 and NEON on arm64 at any -O level). */
static void hinv_times(const double *Hinv, size_t m, const double *g,
                       double *step)
{
    memset(step, 0, m * sizeof(double));
    size_t j = 0, m2 = m & ~(size_t)1;
    for (; j < m; j += 2) {
        const double *c0 = Hinv + j * m;
        const double *c1 = j + 1 < m ? c0 + m : NULL;
        double g0 = g[j], g1 = c1 != NULL ? g[j + 1] : 0;
        v2d g0v = {g0, g0}, g1v = {g1, g1};
        for (size_t i = 0; i < m2; i += 2) {
            v2d acc, x0, x1 = {0, 0};
            memcpy(&acc, step + i, sizeof(acc));
            memcpy(&x0, c0 + i, sizeof(x0));
            if (c1 != NULL)
                memcpy(&x1, c1 + i, sizeof(x1));
            acc += x0 * g0v + x1 * g1v;
            memcpy(step + i, &acc, sizeof(acc));
        }
        if (m2 < m)
            step[m2] += c0[m2] * g0 + (c1 != NULL ? c1[m2] * g1 : 0);
    }
}

/* beta += Hinv g(beta) until the step is below tol. Returns 0 or -1. */
static int boot_quasi_newton(const struct boot *b, struct boot_work *w)
{
    size_t m = b->m;
    /* Row sums of W, row by row so the row's own sum stays in a register
     * (prob.Wsum is free: the slow path refills it). */
    double *W = w->prob.Wsum;
    memset(W, 0, m * sizeof(double));
    for (size_t i = 0; i < m; i++) {
        double own = 0;
        for (uint32_t p = b->row[i]; p < b->row[i + 1]; p++) {
            own += w->pw[p];
            W[b->pj[p]] += w->pn[p] - w->pw[p];
        }
        W[i] += own;
    }
    memcpy(w->beta, b->beta0, m * sizeof(double));
    double prior = b->prob->prior;
    for (int it = 0; it < BT_MAX_QUASI; it++) {
        bt_strengths(m, w->beta, w->s);
        memset(w->acc, 0, m * sizeof(double));
        /* Row by row, so the row's own sum stays in registers and the
         * divisions of a row are independent of each other. */
        const double *s = w->s;
        double *acc = w->acc;
        for (size_t i = 0; i < m; i++) {
            double si = s[i], a0 = 0, a1 = 0;
            uint32_t p = b->row[i], e = b->row[i + 1];
            for (; p + 1 < e; p += 2) {
                /* Two divisions in one instruction. */
                uint32_t j0 = b->pj[p], j1 = b->pj[p + 1];
                v2d n, d = {si + s[j0], si + s[j1]};
                memcpy(&n, w->pn + p, sizeof(n));
                v2d t = n / d;
                a0 += t[0];
                a1 += t[1];
                acc[j0] += t[0];
                acc[j1] += t[1];
            }
            if (p < e) {
                uint32_t j0 = b->pj[p];
                double t0 = w->pn[p] / (si + s[j0]);
                a0 += t0;
                acc[j0] += t0;
            }
            acc[i] += a0 + a1;
        }
        for (size_t i = 0; i < m; i++) {
            w->g[i] = W[i] - w->s[i] * w->acc[i];
            if (prior > 0)
                w->g[i] += prior * (0.5 - sigmoid(w->beta[i]));
        }
        hinv_times(b->Hinv, m, w->g, w->step);
        for (size_t i = 0; i < m; i++)
            w->beta[i] += w->step[i];
        double d = max_abs(m, w->step);
        w->iters++;
        if (d < b->tol)
            return 0;
        if (!(d < 1e3))
            return -1;
    }
    return -1;
}

/* The slow path: a full damped Newton on the round's data, with the prior
 * when the round's data has no finite MLE. */
/* The round's data as the dense problem in w->prob (without the prior). */
static void boot_fill(const struct boot *b, struct boot_work *w)
{
    size_t m = b->m;
    struct bt_problem *p = &w->prob;
    memset(p->W, 0, m * m * sizeof(double));
    memset(p->N, 0, m * m * sizeof(double));
    for (size_t q = 0; q < b->n_pairs; q++) {
        uint32_t i = b->pi[q], j = b->pj[q];
        p->W[i * m + j] = w->pw[q];
        p->W[j * m + i] = w->pn[q] - w->pw[q];
        p->N[i * m + j] = p->N[j * m + i] = w->pn[q];
    }
    for (size_t i = 0; i < m; i++) {
        p->Wsum[i] = 0;
        for (size_t j = 0; j < m; j++)
            p->Wsum[i] += p->W[i * m + j];
    }
    p->prior = b->prob->prior;
}

/* The slow path: a full damped Newton on the round's data (boot_fill
 * done), with the prior when the round's data has no finite MLE. */
static int boot_slow(const struct boot *b, struct boot_work *w)
{
    struct bt_problem *p = &w->prob;
    if (p->prior == 0 && !bt_strongly_connected(p, w->seen, w->stack))
        p->prior = b->fallback_prior;
    memcpy(w->beta, b->beta0, b->m * sizeof(double));
    return bt_newton(p, w->beta, b->tol, &w->nw) < 0 ? -1 : 0;
}

/* Whether the round can go the fast way: when a cell that had battles drew
 * none, the round's "won or tied against" graph may have lost an edge and
 * with it the MLE, towards which the quasi-Newton steps would then creep
 * (shrinking, so they could even pass for convergence). Fills w->prob. */
static int boot_round_has_mle(const struct boot *b, struct boot_work *w)
{
    boot_fill(b, w);
    return b->prob->prior > 0 ||
           bt_strongly_connected(&w->prob, w->seen, w->stack);
}

static int boot_work_init(struct boot_work *w, const struct boot *b)
{
    size_t m = b->m;
    memset(w, 0, sizeof(*w));
    w->k = malloc((b->n_cells + 1) * sizeof(double));
    w->pn = malloc((b->n_pairs + 1) * sizeof(double));
    w->pw = malloc((b->n_pairs + 1) * sizeof(double));
    w->beta = malloc(m * sizeof(double));
    w->s = malloc(m * sizeof(double));
    w->g = malloc(m * sizeof(double));
    w->acc = malloc(m * sizeof(double));
    w->step = malloc(m * sizeof(double));
    w->prob.m = m;
    w->prob.W = malloc(m * m * sizeof(double));
    w->prob.N = malloc(m * m * sizeof(double));
    w->prob.Wsum = malloc(m * sizeof(double));
    w->seen = malloc(m);
    w->stack = malloc(m * sizeof(uint32_t));
    int ok = w->k && w->pn && w->pw && w->beta && w->s && w->g && w->acc &&
             w->step && w->prob.W && w->prob.N && w->prob.Wsum && w->seen &&
             w->stack;
    return ok && bt_work_init(&w->nw, m) == 0 ? 0 : -1;
}

static void boot_work_cleanup(struct boot_work *w)
{
    free(w->k);
    free(w->pn);
    free(w->pw);
    free(w->beta);
    free(w->s);
    free(w->g);
    free(w->acc);
    free(w->step);
    free(w->prob.W);
    free(w->prob.N);
    free(w->prob.Wsum);
    free(w->seen);
    free(w->stack);
    bt_work_cleanup(&w->nw);
}

/* Puts beta in the reporting gauge: anchor at 0, or mean 0. */
static void gauge(size_t m, double *beta, int anchor)
{
    double c = 0;
    if (anchor >= 0) {
        c = beta[anchor];
    } else {
        for (size_t i = 0; i < m; i++)
            c += beta[i];
        c /= (double)m;
    }
    for (size_t i = 0; i < m; i++)
        beta[i] -= c;
}

struct boot_arg {
    struct boot *b;
    int t;
};

static void *boot_thread(void *arg)
{
    struct boot_arg *a = arg;
    struct boot *b = a->b;
    struct boot_work w;
    if (boot_work_init(&w, b) != 0) {
        boot_work_cleanup(&w);
        __atomic_store_n(&b->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    /* Round r belongs to thread r % n_threads; its RNG stream is r. */
    for (int r = a->t; r < b->rounds; r += b->n_threads) {
        struct rng rng;
        rng_seed(&rng, b->seed, (uint64_t)r);
        int lost = boot_draw(b, &w, &rng);
        int fast = !lost || boot_round_has_mle(b, &w);
        if (!fast || boot_quasi_newton(b, &w) != 0) {
            b->fallbacks[a->t]++;
            if (fast)
                boot_fill(b, &w);
            if (boot_slow(b, &w) != 0)
                for (size_t i = 0; i < b->m; i++)
                    w.beta[i] = NAN;
        }
        gauge(b->m, w.beta, b->anchor);
        memcpy(b->out + (size_t)r * b->m, w.beta, b->m * sizeof(double));
    }
    b->iters[a->t] = w.iters;
    boot_work_cleanup(&w);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics (numpy's default). */
static double quantile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n)
        return sorted[n - 1];
    double f = pos - (double)lo;
    return sorted[lo] + f * (sorted[lo + 1] - sorted[lo]);
}

static int cmp_double(const void *a, const void *b);

/* One table per distinct cell mean up to PT_MAX_LAM, smallest first, while
 * they fit in PT_MAX_ENTRIES; the other cells keep PTRS. PTRS needs
 * lam >= 10, and the means below 10 take under 1000 entries in all, so they
 * always get their tables. */
static int boot_build_tables(struct boot *b)
{
    double *lams = malloc((b->n_cells + 1) * sizeof(double));
    b->pt = malloc((b->n_cells + 1) * sizeof(struct ptable));
    b->pt_alias = malloc(PT_MAX_ENTRIES * sizeof(struct alias_entry));
    double *pmf = malloc(LF_TABLE * sizeof(double));
    uint32_t *small = malloc(LF_TABLE * sizeof(uint32_t));
    uint32_t *large = malloc(LF_TABLE * sizeof(uint32_t));
    if (!lams || !b->pt || !b->pt_alias || !pmf || !small || !large) {
        free(lams);
        free(pmf);
        free(small);
        free(large);
        return -1;
    }
    size_t n = 0, used = 0;
    for (size_t c = 0; c < b->n_cells; c++)
        if (b->cells[c].lam > 0 && b->cells[c].lam <= PT_MAX_LAM)
            lams[n++] = b->cells[c].lam;
    qsort(lams, n, sizeof(double), cmp_double);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || lams[i] != lams[u - 1])
            lams[u++] = lams[i];
    for (size_t t = 0; t < u; t++) {
        double lam = lams[t], loglam = log(lam);
        uint32_t mode = (uint32_t)lam, lo = mode, hi = mode;
#define LOGPMF(k) (-lam + (double)(k)*loglam - b->lf[(k)])
        while (lo > 0 && LOGPMF(lo - 1) > -46)
            lo--;
        while (hi + 1 < LF_TABLE && LOGPMF(hi + 1) > -46)
            hi++;
        uint32_t len = hi - lo + 1;
        if (used + len > PT_MAX_ENTRIES) {
            u = t; /* the rest keep PTRS */
            break;
        }
        struct ptable *pt = &b->pt[t];
        pt->lo = lo;
        pt->len = len;
        pt->off = (uint32_t)used;
        for (uint32_t k = 0; k < len; k++)
            pmf[k] = exp(LOGPMF(lo + k));
#undef LOGPMF
        alias_build(pmf, len, b->pt_alias + used, small, large);
        used += len;
    }
    b->n_pt = u;
    for (size_t c = 0; c < b->n_cells; c++) {
        struct cell *cl = &b->cells[c];
        cl->table = -1;
        /* Binary search of its mean among the tabled ones. */
        size_t l = 0, h = u;
        while (l < h) {
            size_t mid = (l + h) / 2;
            if (lams[mid] < cl->lam)
                l = mid + 1;
            else
                h = mid;
        }
        if (l < u && lams[l] == cl->lam)
            cl->table = (int32_t)l;
        b->slot_table[c] = cl->lam == 0 ? -2 : cl->table;
    }
    free(lams);
    free(pmf);
    free(small);
    free(large);
    return 0;
}

/* Cells, pairs and the alias table from the full data. */
static int boot_prepare(struct boot *b, const struct arena_pairs *pairs,
                        const uint32_t *ids)
{
    size_t m = b->m, n = pairs->n;
    size_t max_pairs = m * (m - 1) / 2;
    b->pi = malloc((max_pairs + 1) * sizeof(uint32_t));
    b->pj = malloc((max_pairs + 1) * sizeof(uint32_t));
    b->cells = malloc((3 * max_pairs + 1) * sizeof(struct cell));
    b->slot_table = malloc((3 * max_pairs + 1) * sizeof(int32_t));
    b->slot_wbar = malloc((3 * max_pairs + 1) * sizeof(double));
    b->row = malloc((m + 1) * sizeof(uint32_t));
    if (!b->pi || !b->pj || !b->cells || !b->row || !b->slot_table ||
        !b->slot_wbar)
        return -1;
    b->lf = malloc(LF_TABLE * sizeof(double));
    if (b->lf == NULL)
        return -1;
    b->lf[0] = 0;
    for (int k = 1; k < LF_TABLE; k++)
        b->lf[k] = b->lf[k - 1] + log((double)k);
    b->total = 0;
    for (size_t i = 0; i < m; i++) {
        b->row[i] = (uint32_t)b->n_pairs;
        for (size_t j = i + 1; j < m; j++) {
            const uint64_t *cij = pairs->count + (ids[i] * n + ids[j]) * 4;
            const uint64_t *cji = pairs->count + (ids[j] * n + ids[i]) * 4;
            const double *wij = pairs->weight + (ids[i] * n + ids[j]) * 4;
            const double *wji = pairs->weight + (ids[j] * n + ids[i]) * 4;
            double cnt[3] = {(double)(cij[0] + cji[1]),
                             (double)(cij[1] + cji[0]),
                             (double)(cij[2] + cij[3] + cji[2] + cji[3])};
            double wt[3] = {wij[0] + wji[1], wij[1] + wji[0],
                            wij[2] + wij[3] + wji[2] + wji[3]};
            if (cnt[0] + cnt[1] + cnt[2] == 0)
                continue;
            for (uint32_t k = 0; k < 3; k++) {
                struct cell *c = &b->cells[3 * b->n_pairs + k];
                memset(c, 0, sizeof(*c));
                c->lam = cnt[k];
                c->pair = (uint32_t)b->n_pairs;
                c->kind = k;
                b->slot_wbar[3 * b->n_pairs + k] =
                    cnt[k] > 0 ? wt[k] / cnt[k] : 0;
                if (cnt[k] > 0)
                    cell_prepare(c);
                b->total += cnt[k];
            }
            b->pi[b->n_pairs] = (uint32_t)i;
            b->pj[b->n_pairs] = (uint32_t)j;
            b->n_pairs++;
        }
    }
    b->row[m] = (uint32_t)b->n_pairs;
    b->n_cells = 3 * b->n_pairs;
    if (boot_build_tables(b) != 0)
        return -1;
    return boot_build_alias(b);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* Runs the rounds and writes the interval of each active model into the
 * ratings. Returns ARENA_OK or ARENA_ERR_NOMEM. */
static int bt_bootstrap(const struct bt_problem *prob, const double *beta0,
                        const double *Hinv, const struct arena_pairs *pairs,
                        const uint32_t *ids, const struct arena_rating_opts *o,
                        int anchor, struct arena_ratings *res)
{
    struct boot b = {0};
    b.prob = prob;
    b.beta0 = beta0;
    b.Hinv = Hinv;
    b.m = prob->m;
    /* 1e-8 in beta is 2e-6 rating points: far below what a percentile of
     * a thousand rounds resolves, and it saves steps. */
    b.tol = o->tol > 1e-8 ? o->tol : 1e-8;
    b.fallback_prior = o->prior > 0 ? o->prior : 1.0;
    b.rounds = o->bootstrap;
    b.seed = o->seed;
    b.anchor = anchor;
    b.n_threads = o->n_threads > 0 ? o->n_threads : online_cpus();
    if (b.n_threads > 64)
        b.n_threads = 64;
    if (b.n_threads > b.rounds)
        b.n_threads = b.rounds;
    int rc = ARENA_ERR_NOMEM;
    double *col = malloc((size_t)b.rounds * sizeof(double));
    b.out = malloc((size_t)b.rounds * b.m * sizeof(double));
    if (col == NULL || b.out == NULL || boot_prepare(&b, pairs, ids) != 0)
        goto out;
    pthread_t th[64];
    struct boot_arg args[64];
    int started = 0;
    for (int t = 0; t < b.n_threads; t++) {
        args[t].b = &b;
        args[t].t = t;
        if (t == 0)
            continue;
        if (pthread_create(&th[t], NULL, boot_thread, &args[t]) != 0)
            break;
        started = t;
    }
    boot_thread(&args[0]);
    /* Threads that failed to start: their rounds run here, in order. */
    for (int t = started + 1; t < b.n_threads; t++)
        boot_thread(&args[t]);
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
    if (b.failed)
        goto out;
    long iters = 0;
    for (int t = 0; t < b.n_threads; t++) {
        res->rounds_fallback += b.fallbacks[t];
        iters += b.iters[t];
    }
    res->boot_iterations = (double)iters / b.rounds;
    double alpha = (1 - o->ci_level) / 2;
    double k = o->elo_scale / log(o->elo_base);
    for (size_t i = 0; i < b.m; i++) {
        size_t n = 0;
        for (int r = 0; r < b.rounds; r++) {
            double v = b.out[(size_t)r * b.m + i];
            if (!isnan(v))
                col[n++] = v;
        }
        if (n == 0)
            continue;
        qsort(col, n, sizeof(double), cmp_double);
        struct arena_rating *x = &res->models[ids[i]];
        double base = o->anchor >= 0 ? o->anchor_rating : o->elo_initial;
        x->ci_low = base + k * quantile(col, n, alpha);
        x->ci_high = base + k * quantile(col, n, 1 - alpha);
    }
    res->bootstrap = b.rounds;
    rc = ARENA_OK;
out:
    free(col);
    free(b.out);
    free(b.pi);
    free(b.pj);
    free(b.row);
    free(b.lf);
    free(b.pt);
    free(b.pt_alias);
    free(b.cells);
    free(b.slot_table);
    free(b.slot_wbar);
    free(b.alias_p);
    free(b.alias_i);
    return rc;
}

/* ------------------------------------------------------------------------
 * Bradley-Terry: entry point
 * ---------------------------------------------------------------------- */

/* The dense problem over active models (weighted battles > 0). */
static int bt_build(const struct arena_pairs *pairs, struct bt_problem *p,
                    uint32_t *ids, int32_t *act)
{
    size_t n = pairs->n, m = 0;
    for (size_t a = 0; a < n; a++) {
        double tot = 0;
        for (size_t b = 0; b < n; b++)
            for (int w = 0; w < ARENA_WINNER_COUNT; w++)
                tot += pairs->weight[(a * n + b) * 4 + w] +
                       pairs->weight[(b * n + a) * 4 + w];
        act[a] = tot > 0 ? (int32_t)m : -1;
        if (tot > 0)
            ids[m++] = (uint32_t)a;
    }
    p->m = m;
    p->W = calloc(m * m + 1, sizeof(double));
    p->N = calloc(m * m + 1, sizeof(double));
    p->Wsum = calloc(m + 1, sizeof(double));
    if (!p->W || !p->N || !p->Wsum)
        return -1;
    for (size_t a = 0; a < n; a++) {
        if (act[a] < 0)
            continue;
        for (size_t b = 0; b < n; b++) {
            if (act[b] < 0)
                continue;
            const double *w = pairs->weight + (a * n + b) * 4;
            size_t i = (size_t)act[a], j = (size_t)act[b];
            double ties = w[ARENA_WINNER_TIE] + w[ARENA_WINNER_BOTHBAD];
            p->W[i * m + j] += w[ARENA_WINNER_A] + 0.5 * ties;
            p->W[j * m + i] += w[ARENA_WINNER_B] + 0.5 * ties;
            double tot = w[0] + w[1] + w[2] + w[3];
            p->N[i * m + j] += tot;
            p->N[j * m + i] += tot;
        }
    }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++)
            p->Wsum[i] += p->W[i * m + j];
    return 0;
}

/* The inverse of the gauged Hessian at beta, (m, m) into Hinv. */
static int bt_hessian_inverse(const struct bt_problem *p, const double *beta,
                              struct bt_work *w, double *Hinv)
{
    size_t m = p->m;
    bt_derivs(p, beta, w->s, w->g, w->H);
    if (cholesky(m, w->H) != 0)
        return -1;
    for (size_t j = 0; j < m; j++) {
        double *e = Hinv + j * m;
        memset(e, 0, m * sizeof(double));
        e[j] = 1;
        chol_solve(m, w->H, e);
    }
    return 0;
}

int arena_ratings_bt(const struct arena_pairs *pairs,
                     const struct arena_rating_opts *opts,
                     struct arena_ratings **out, struct arena_err *err)
{
    size_t n = pairs->n;
    int rc = check_opts(opts, n, err);
    if (rc != ARENA_OK)
        return rc;
    rc = ARENA_ERR_NOMEM;
    struct bt_problem p = {0};
    struct bt_work w = {0};
    struct arena_ratings *r = ratings_alloc(n, ARENA_RATING_BT);
    uint32_t *ids = malloc((n + 1) * sizeof(*ids));
    int32_t *act = malloc((n + 1) * sizeof(*act));
    double *beta = NULL, *Hinv = NULL;
    char *seen = NULL;
    uint32_t *stack = NULL;
    if (r == NULL || ids == NULL || act == NULL ||
        bt_build(pairs, &p, ids, act) != 0)
        goto out;
    size_t m = p.m;
    r->beta = malloc((n + 1) * sizeof(double));
    beta = calloc(m + 1, sizeof(double));
    Hinv = malloc((m * m + 1) * sizeof(double));
    seen = malloc(m + 1);
    stack = malloc((m + 1) * sizeof(*stack));
    if (!r->beta || !beta || !Hinv || !seen || !stack ||
        bt_work_init(&w, m + 1) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        r->beta[i] = NAN;
        r->models[i].battles = arena_pairs_model_battles(pairs, (uint32_t)i);
    }
    int anchor = opts->anchor >= 0 ? act[opts->anchor] : -1;
    if (opts->anchor >= 0 && anchor < 0) {
        err_set(err, "%s", "the anchor model has no battles");
        rc = ARENA_ERR_INVALID;
        goto out;
    }
    if (m >= 2) {
        double t0 = arena__now();
        if (!bt_strongly_connected(&p, seen, stack)) {
            p.prior = opts->prior;
            r->prior_used = 1;
            if (p.prior == 0) {
                err_set(err, "%s",
                        "no finite maximum-likelihood ratings "
                        "(some models never won or never lost "
                        "across a split) and prior is 0");
                rc = ARENA_ERR_INVALID;
                goto out;
            }
        }
        r->iterations = bt_newton(&p, beta, opts->tol, &w);
        if (r->iterations < 0 || bt_hessian_inverse(&p, beta, &w, Hinv) != 0) {
            err_set(err, "%s", "Bradley-Terry fit did not converge");
            rc = ARENA_ERR_INVALID;
            goto out;
        }
        r->fit_s = arena__now() - t0;
        t0 = arena__now();
        /* The rounds start from the fit in its own gauge: with the prior,
         * beta = 0 is the reference, so shifting first would cost steps. */
        if (opts->bootstrap > 0 &&
            bt_bootstrap(&p, beta, Hinv, pairs, ids, opts, anchor, r) != 0)
            goto out;
        r->bootstrap_s = arena__now() - t0;
        gauge(m, beta, anchor);
    }
    double k = opts->elo_scale / log(opts->elo_base);
    double base = anchor >= 0 ? opts->anchor_rating : opts->elo_initial;
    r->scale = k;
    for (size_t i = 0; i < m; i++) {
        r->beta[ids[i]] = beta[i];
        r->models[ids[i]].rating = base + k * beta[i];
    }
    ratings_finish(r, opts->min_battles);
    *out = r;
    r = NULL;
    rc = ARENA_OK;
out:
    arena_ratings_free(r);
    free(p.W);
    free(p.N);
    free(p.Wsum);
    bt_work_cleanup(&w);
    free(ids);
    free(act);
    free(beta);
    free(Hinv);
    free(seen);
    free(stack);
    return rc;
}

/* ------------------------------------------------------------------------
 * Matrices
 * ---------------------------------------------------------------------- */

void arena_ratings_matrices(const struct arena_pairs *pairs,
                            const struct arena_ratings *r, double *battles,
                            double *win_rate, double *predicted)
{
    size_t n = pairs->n;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            const double *wij = pairs->weight + (i * n + j) * 4;
            const double *wji = pairs->weight + (j * n + i) * 4;
            double tot = i == j ? 0
                                : wij[0] + wij[1] + wij[2] + wij[3] + wji[0] +
                                      wji[1] + wji[2] + wji[3];
            double won =
                wij[0] + wji[1] + 0.5 * (wij[2] + wij[3] + wji[2] + wji[3]);
            if (battles != NULL)
                battles[i * n + j] = tot;
            if (win_rate != NULL)
                win_rate[i * n + j] = tot > 0 ? won / tot : NAN;
            if (predicted != NULL) {
                double ri = r->models[i].rating, rj = r->models[j].rating;
                predicted[i * n + j] =
                    i == j || isnan(ri) || isnan(rj)
                        ? NAN
                        : 1.0 / (1.0 + exp((rj - ri) / r->scale));
            }
        }
    }
}
