/*
 * arena_rating_cmd.c: `arena ratings` (a leaderboard from a battle file)
 * and `arena bench ratings` (where the time of a fit goes).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "arena.h"
#include "arena_board_internal.h"
#include "arena_internal.h"

/* ------------------------------------------------------------------------
 * Option parsing helpers
 * ---------------------------------------------------------------------- */

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (e == s || *e != '\0' || errno != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || errno != 0 || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "arena %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "; see 'arena %s --help'\n", cmd);
    return 2;
}

/* ------------------------------------------------------------------------
 * arena ratings
 * ---------------------------------------------------------------------- */

static const char ratings_help[] =
    "usage: arena ratings [--input FILE] [options]\n"
    "\n"
    "Compute a leaderboard from battles: Bradley-Terry (maximum likelihood,\n"
    "ties half a win each side) with bootstrap intervals, or online Elo.\n"
    "\n"
    "  --input FILE          battles: CSV (model_a,model_b,winner or\n"
    "                        left,right,winner) or Arena's JSONL export;\n"
    "                        without it, the votes of the database\n"
    "  --db URL              the database (default DATABASE_URL, else the\n"
    "                        embedded cluster of --data-dir, ./var); its\n"
    "                        battles flagged for identity leaks are left\n"
    "                        out unless --include-flagged\n"
    "  --visitor-cap N       a visitor weighs at most N votes (database\n"
    "                        default 1000, as the server's; 0 off)\n"
    "  --prompt-cap N        a prompt text weighs at most N battles\n"
    "                        (database default 50; 0 off)\n"
    "  --format csv|jsonl    default: jsonl for *.jsonl/*.json, else csv\n"
    "  --method bt|elo       default bt\n"
    "  --bootstrap N         bootstrap rounds for the intervals (bt),\n"
    "                        default 1000, 0 for none\n"
    "  --anchor MODEL=RATING fix one model's rating (in every round)\n"
    "  --seed S              bootstrap seed, default 1\n"
    "  --threads N           threads, default: online CPUs\n"
    "  --ci LEVEL            interval coverage, default 0.95\n"
    "  --min-battles N       fewer battles: provisional, default 100\n"
    "  --prior P             virtual ties per model when no finite MLE\n"
    "                        exists, default 1\n"
    "  --category TAG        only battles tagged TAG (coding, multi_turn,\n"
    "                        long_prompt, hard, math, creative)\n"
    "  --exclude-tag TAG     drop battles tagged TAG (e.g. identity_leak)\n"
    "  --exclude-ties        drop tie and tie (bothbad) votes\n"
    "  --language L          only battles in language L (JSONL input)\n"
    "  --elo-k K             Elo K factor, default 4 (also --elo-scale 400,\n"
    "                        --elo-base 10, --elo-initial 1000)\n"
    "  --json                print JSON: {\"method\", \"models\": "
    "[{\"model\",\n"
    "                        \"rating\", \"ci_low\", \"ci_high\", "
    "\"battles\",\n"
    "                        \"rank_ub\", \"provisional\"}]}\n"
    "  --matrices            with --json, add \"battles\", \"win_rate\" and\n"
    "                        \"predicted\" matrices (row beats column)\n"
    "  -h, --help            this help\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 bad usage.\n";

struct ratings_args {
    const char *input, *format, *anchor_model, *language;
    const char *db_url, *data_dir;
    long visitor_cap, prompt_cap; /* -1: the default */
    int include_flagged;
    double anchor_rating;
    int method, json, matrices, have_anchor;
    struct arena_rating_opts opts;
    struct arena_rating_filter filter;
};

/* Prints a usage error for `arena ratings`; returns -1. */
static int opt_error(const char *fmt, const char *arg)
{
    usage_error("ratings", fmt, arg);
    return -1;
}

/* One option with its value; returns 1 if consumed two args, 0 if one, or
 * -1 after printing a usage error (exit 2). */
static int ratings_opt(struct ratings_args *a, const char *opt, const char *val)
{
    long l;
    double d;
    if (strcmp(opt, "--json") == 0) {
        a->json = 1;
        return 0;
    }
    if (strcmp(opt, "--matrices") == 0) {
        a->matrices = 1;
        return 0;
    }
    if (strcmp(opt, "--exclude-ties") == 0) {
        a->filter.exclude_ties = 1;
        return 0;
    }
    if (strcmp(opt, "--include-flagged") == 0) {
        a->include_flagged = 1;
        return 0;
    }
    if (val == NULL)
        return opt_error("%s needs a value", opt);
    if (strcmp(opt, "--input") == 0) {
        a->input = val;
    } else if (strcmp(opt, "--db") == 0) {
        a->db_url = val;
    } else if (strcmp(opt, "--data-dir") == 0) {
        a->data_dir = val;
    } else if (strcmp(opt, "--visitor-cap") == 0 ||
               strcmp(opt, "--prompt-cap") == 0) {
        if (parse_long(val, 0, 2000000000L, &l) != 0)
            return opt_error("%s takes a count", opt);
        *(opt[2] == 'v' ? &a->visitor_cap : &a->prompt_cap) = l;
    } else if (strcmp(opt, "--format") == 0) {
        if (strcmp(val, "csv") != 0 && strcmp(val, "jsonl") != 0)
            return opt_error("--format takes csv or jsonl%s", "");
        a->format = val;
    } else if (strcmp(opt, "--method") == 0) {
        if (strcmp(val, "bt") != 0 && strcmp(val, "elo") != 0)
            return opt_error("--method takes bt or elo%s", "");
        a->method =
            strcmp(val, "elo") == 0 ? ARENA_RATING_ELO : ARENA_RATING_BT;
    } else if (strcmp(opt, "--bootstrap") == 0) {
        if (parse_long(val, 0, 1000000, &l) != 0)
            return opt_error("--bootstrap takes 0 to 1000000%s", "");
        a->opts.bootstrap = (int)l;
    } else if (strcmp(opt, "--seed") == 0) {
        char *e;
        errno = 0;
        unsigned long long s = strtoull(val, &e, 10);
        if (e == val || *e != '\0' || errno != 0 || val[0] == '-')
            return opt_error("--seed takes a non-negative "
                             "integer, not '%s'",
                             val);
        a->opts.seed = s;
    } else if (strcmp(opt, "--threads") == 0) {
        if (parse_long(val, 1, 64, &l) != 0)
            return opt_error("--threads takes 1 to 64%s", "");
        a->opts.n_threads = (int)l;
    } else if (strcmp(opt, "--min-battles") == 0) {
        if (parse_long(val, 0, 2000000000L, &l) != 0)
            return opt_error("--min-battles takes a count%s", "");
        a->opts.min_battles = (uint64_t)l;
    } else if (strcmp(opt, "--anchor") == 0) {
        const char *eq = strrchr(val, '=');
        if (eq == NULL || eq == val || parse_double(eq + 1, &d) != 0)
            return opt_error("--anchor takes MODEL=RATING, not "
                             "'%s'",
                             val);
        a->anchor_model = val;
        a->anchor_rating = d;
        a->have_anchor = 1;
    } else if (strcmp(opt, "--category") == 0 ||
               strcmp(opt, "--exclude-tag") == 0) {
        uint32_t t = arena_tag_from_name(val);
        if (t == 0)
            return opt_error("unknown tag '%s'", val);
        if (opt[2] == 'c')
            a->filter.require_tags |= t;
        else
            a->filter.exclude_tags |= t;
    } else if (strcmp(opt, "--language") == 0) {
        a->language = val;
    } else {
        double *dst = strcmp(opt, "--ci") == 0            ? &a->opts.ci_level
                      : strcmp(opt, "--prior") == 0       ? &a->opts.prior
                      : strcmp(opt, "--elo-k") == 0       ? &a->opts.elo_k
                      : strcmp(opt, "--elo-scale") == 0   ? &a->opts.elo_scale
                      : strcmp(opt, "--elo-base") == 0    ? &a->opts.elo_base
                      : strcmp(opt, "--elo-initial") == 0 ? &a->opts.elo_initial
                                                          : NULL;
        if (dst == NULL)
            return opt_error("unknown option '%s'", opt);
        if (parse_double(val, dst) != 0)
            return opt_error("%s takes a number", opt);
    }
    return 1;
}

static int ratings_parse(struct ratings_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->visitor_cap = a->prompt_cap = -1;
    arena_rating_opts_init(&a->opts);
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (opt[0] != '-' || opt[1] != '-')
            return usage_error("ratings", "unexpected argument '%s'", opt);
        /* --name=value is the same as --name value. */
        char name[64];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char *eq = strchr(opt, '=');
        int inline_val = eq != NULL && (size_t)(eq - opt) < sizeof(name);
        if (inline_val) {
            memcpy(name, opt, (size_t)(eq - opt));
            name[eq - opt] = '\0';
            opt = name;
            val = eq + 1;
        }
        int used = ratings_opt(a, opt, val);
        if (used < 0)
            return 2;
        if (inline_val && used == 0)
            return usage_error("ratings", "%s takes no value", opt);
        if (!inline_val)
            i += used;
    }
    if (a->opts.ci_level <= 0 || a->opts.ci_level >= 1)
        return usage_error("ratings", "--ci takes a level in (0, 1)%s", "");
    if (a->opts.elo_scale <= 0 || a->opts.elo_base <= 1 || a->opts.prior < 0)
        return usage_error("ratings", "%s",
                           "--elo-scale > 0, --elo-base > 1 and --prior >= 0 "
                           "are needed");
    if (a->matrices && !a->json)
        return usage_error("ratings", "--matrices needs --json%s", "");
    return 0;
}

static json_t *rjson_num(double v)
{
    return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

static json_t *rjson_matrix(const double *m, size_t n, const uint32_t *order,
                            size_t k)
{
    json_t *rows = json_array();
    for (size_t a = 0; a < k; a++) {
        json_t *row = json_array();
        for (size_t b = 0; b < k; b++)
            json_array_append_new(row, rjson_num(m[order[a] * n + order[b]]));
        json_array_append_new(rows, row);
    }
    return rows;
}

static int ratings_print_json(const struct ratings_args *a,
                              const struct arena_battles *set,
                              const struct arena_pairs *pairs,
                              const struct arena_ratings *r)
{
    json_t *root = json_object();
    json_object_set_new(
        root, "method",
        json_string(a->method == ARENA_RATING_ELO ? "elo" : "bt"));
    json_object_set_new(root, "bootstrap", json_integer(r->bootstrap));
    json_t *models = json_array();
    for (size_t k = 0; k < r->n_ranked; k++) {
        uint32_t id = r->order[k];
        const struct arena_rating *x = &r->models[id];
        json_t *o = json_object();
        json_object_set_new(o, "model",
                            json_string(arena_battles_model_name(set, id)));
        json_object_set_new(o, "rating", rjson_num(x->rating));
        json_object_set_new(o, "ci_low", rjson_num(x->ci_low));
        json_object_set_new(o, "ci_high", rjson_num(x->ci_high));
        json_object_set_new(o, "battles", json_integer((json_int_t)x->battles));
        json_object_set_new(o, "rank_ub", json_integer(x->rank_ub));
        json_object_set_new(o, "provisional", json_boolean(x->provisional));
        json_array_append_new(models, o);
    }
    json_object_set_new(root, "models", models);
    int rc = 0;
    if (a->matrices) {
        size_t n = r->n_models;
        double *m = malloc((3 * n * n + 1) * sizeof(double));
        if (m == NULL) {
            json_decref(root);
            fprintf(stderr, "arena ratings: out of memory\n");
            return 1;
        }
        arena_ratings_matrices(pairs, r, m, m + n * n, m + 2 * n * n);
        json_object_set_new(root, "battles",
                            rjson_matrix(m, n, r->order, r->n_ranked));
        json_object_set_new(root, "win_rate",
                            rjson_matrix(m + n * n, n, r->order, r->n_ranked));
        json_object_set_new(
            root, "predicted",
            rjson_matrix(m + 2 * n * n, n, r->order, r->n_ranked));
        free(m);
    }
    if (json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(12)) != 0)
        rc = 1;
    fputc('\n', stdout);
    json_decref(root);
    return rc;
}

static void ratings_print_table(const struct ratings_args *a,
                                const struct arena_battles *set,
                                const struct arena_ratings *r)
{
    int width = 5;
    for (size_t k = 0; k < r->n_ranked; k++) {
        int l = (int)strlen(arena_battles_model_name(set, r->order[k]));
        if (l > width)
            width = l < 60 ? l : 60;
    }
    printf("%-4s %-*s %9s %19s %9s\n", "rank", width, "model", "rating",
           r->bootstrap ? "95% interval" : "", "battles");
    for (size_t k = 0; k < r->n_ranked; k++) {
        uint32_t id = r->order[k];
        const struct arena_rating *x = &r->models[id];
        char ci[40] = "";
        if (!isnan(x->ci_low))
            snprintf(ci, sizeof(ci), "%.1f..%.1f", x->ci_low, x->ci_high);
        printf("%-4d %-*.*s %9.2f %19s %9llu%s\n", x->rank_ub, width, width,
               arena_battles_model_name(set, id), x->rating, ci,
               (unsigned long long)x->battles,
               x->provisional ? "  provisional" : "");
    }
    printf("\n%s, %zu models",
           a->method == ARENA_RATING_ELO ? "online Elo" : "Bradley-Terry",
           r->n_ranked);
    if (r->bootstrap)
        printf(", %d bootstrap rounds, seed %llu", r->bootstrap,
               (unsigned long long)a->opts.seed);
    if (r->prior_used)
        printf(", prior applied (no finite MLE)");
    printf("; rank = 1 + models whose lower bound is above this one's upper "
           "bound\n");
}

/* Reads the votes of the database (arena_board_load.c), leaves flagged
 * battles out unless asked, and applies the caps. 0 or exit status 1. */
static int ratings_load_db(struct ratings_args *a, struct arena_battles *set)
{
    struct arena__cmd_db d;
    if (arena__cmd_db_open("ratings", a->db_url, a->data_dir, &d) != 0)
        return 1;
    struct arena_err err = {{0}};
    int rc = arena_board_load_battles(d.conn, 1024, set, &err);
    arena__cmd_db_close(&d);
    if (rc == ARENA_OK)
        rc = arena_battles_apply_caps(
            set, (uint32_t)(a->visitor_cap >= 0 ? a->visitor_cap : 1000),
            (uint32_t)(a->prompt_cap >= 0 ? a->prompt_cap : 50));
    if (rc != ARENA_OK) {
        fprintf(stderr, "arena ratings: %s\n",
                err.msg[0] ? err.msg : "out of memory");
        return 1;
    }
    if (!a->include_flagged)
        a->filter.exclude_tags |= ARENA_TAG_IDENTITY_LEAK;
    return 0;
}

/* Reads the file named in the arguments. Returns 0 or exit status 1. */
static int ratings_load(struct ratings_args *a, struct arena_battles *set)
{
    struct arena_err err = {{0}};
    if (a->input == NULL)
        return ratings_load_db(a, set);
    const char *fmt = a->format;
    if (fmt == NULL) {
        const char *dot = strrchr(a->input, '.');
        fmt = dot != NULL &&
                      (strcmp(dot, ".jsonl") == 0 ||
                       strcmp(dot, ".json") == 0 || strcmp(dot, ".ndjson") == 0)
                  ? "jsonl"
                  : "csv";
    }
    int rc =
        strcmp(fmt, "jsonl") == 0
            ? arena_battles_read_jsonl(set, a->input, &err)
            : arena_battles_read_csv(set, a->input, a->opts.n_threads, &err);
    if (rc != ARENA_OK) {
        fprintf(stderr, "arena ratings: %s: %s\n", a->input, err.msg);
        return 1;
    }
    /* The file readers know no visitors or prompts, so the caps (which
     * skip unknown ids) would change nothing: they are for the database. */
    return 0;
}

int arena_cmd_ratings(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(ratings_help, stdout);
            return 0;
        }
    struct ratings_args a;
    int rc = ratings_parse(&a, argc, argv);
    if (rc != 0)
        return rc;
    struct arena_battles *set = arena_battles_new();
    struct arena_pairs *pairs = NULL;
    struct arena_ratings *r = NULL;
    struct arena_err err = {{0}};
    if (set == NULL) {
        fprintf(stderr, "arena ratings: out of memory\n");
        return 1;
    }
    rc = ratings_load(&a, set);
    if (rc != 0)
        goto out;
    rc = 1;
    if (a.have_anchor) {
        size_t len = (size_t)(strrchr(a.anchor_model, '=') - a.anchor_model);
        char name[512];
        snprintf(name, sizeof(name), "%.*s", (int)len, a.anchor_model);
        a.opts.anchor = arena_battles_find(set, name);
        a.opts.anchor_rating = a.anchor_rating;
        if (a.opts.anchor < 0) {
            fprintf(stderr, "arena ratings: --anchor: no model '%s' in %s\n",
                    name, a.input != NULL ? a.input : "the database");
            goto out;
        }
    }
    if (a.language != NULL) {
        int32_t l = arena_battles_find_lang(set, a.language);
        if (l <= 0) {
            fprintf(stderr, "arena ratings: no battles in language '%s'\n",
                    a.language);
            goto out;
        }
        a.filter.lang = (uint16_t)l;
    }
    pairs = arena_pairs_from_battles(set, &a.filter);
    if (pairs == NULL) {
        fprintf(stderr, "arena ratings: out of memory\n");
        goto out;
    }
    int frc = a.method == ARENA_RATING_ELO
                  ? arena_ratings_elo(set, &a.filter, &a.opts, &r, &err)
                  : arena_ratings_bt(pairs, &a.opts, &r, &err);
    if (frc != ARENA_OK) {
        fprintf(stderr, "arena ratings: %s\n",
                err.msg[0] ? err.msg : arena_strerror(frc));
        goto out;
    }
    if (a.json)
        rc = ratings_print_json(&a, set, pairs, r);
    else {
        ratings_print_table(&a, set, r);
        rc = 0;
    }
out:
    arena_ratings_free(r);
    arena_pairs_free(pairs);
    arena_battles_free(set);
    return rc;
}

/* ------------------------------------------------------------------------
 * arena bench ratings
 * ---------------------------------------------------------------------- */

static const char bench_help[] =
    "usage: arena bench ratings [options]\n"
    "\n"
    "Times Bradley-Terry with bootstrap intervals end to end from a CSV\n"
    "file, split into reading, aggregation, fitting and bootstrap, next to\n"
    "a pass that only reads the file.\n"
    "\n"
    "  --input FILE      use this CSV instead of a synthetic one\n"
    "  --battles N       synthetic battles, default 2000000\n"
    "  --models M        synthetic models, default 150\n"
    "  --bootstrap R     rounds, default 1000\n"
    "  --threads N       threads, default: online CPUs\n"
    "  --repeat K        runs; the median is reported, default 3\n"
    "  --seed S          seed of the data and the bootstrap, default 1\n"
    "  -h, --help        this help\n";

/* A synthetic CSV: true ratings spread evenly over 800..1200 plus noise,
 * pairs uniform, outcome drawn from Bradley-Terry with 10% of the decided
 * mass turned into ties symmetrically (so the expected score stays the BT
 * probability). Returns 0 or -1. */
static int bench_write_csv(const char *path, long battles, long models,
                           uint64_t seed)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof(buf));
    double *rating = malloc((size_t)models * sizeof(double));
    if (rating == NULL) {
        fclose(f);
        return -1;
    }
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 12345;
#define NEXT() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    for (long i = 0; i < models; i++)
        rating[i] = 800 + 400.0 * (double)i / (double)models +
                    (double)(NEXT() % 1000) / 100.0;
    fputs("model_a,model_b,winner\n", f);
    for (long k = 0; k < battles; k++) {
        long a = (long)(NEXT() % (uint64_t)models);
        long b = (long)(NEXT() % (uint64_t)(models - 1));
        if (b >= a)
            b++;
        double p = 1.0 / (1.0 + pow(10.0, (rating[b] - rating[a]) / 400.0));
        double tie = 0.2 * (p < 0.5 ? p : 1 - p);
        double u = (double)(NEXT() >> 11) * 0x1.0p-53;
        const char *w = u < p - tie / 2   ? "model_a"
                        : u < p + tie / 2 ? "tie"
                                          : "model_b";
        fprintf(f, "model-%03ld,model-%03ld,%s\n", a, b, w);
    }
#undef NEXT
    free(rating);
    return fclose(f) == 0 ? 0 : -1;
}

/* The floor for any parser: read() the file into a buffer once, counting
 * newlines. Returns seconds, or -1. */
static double bench_read_only(const char *path, size_t *lines, size_t *bytes)
{
    double t0 = arena__now();
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    static char buf[1 << 20];
    size_t n, nl = 0, total = 0;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        total += n;
        for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p)));
             p++)
            nl++;
    }
    fclose(f);
    *lines = nl;
    *bytes = total;
    return arena__now() - t0;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum {
    PH_READONLY,
    PH_READ,
    PH_AGG,
    PH_FIT,
    PH_BOOT,
    PH_TOTAL,
    PH_CPU,
    PH_ITERS,
    PH_CPU_READONLY,
    PH_CPU_READ,
    PH_CPU_AGG,
    PH_CPU_BT,
    N_PH
};

/* CPU seconds of the whole process (all threads). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One end-to-end run; fills t[N_PH]. Returns 0 or 1. */
static int bench_once(const char *path, const struct arena_rating_opts *o,
                      double *t, size_t *n_battles, size_t *n_models)
{
    size_t lines, bytes;
    double c0 = cpu_now();
    t[PH_READONLY] = bench_read_only(path, &lines, &bytes);
    t[PH_CPU_READONLY] = cpu_now() - c0;
    c0 = cpu_now();
    double t0 = arena__now();
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    struct arena_pairs *pairs = NULL;
    struct arena_ratings *r = NULL;
    int rc = 1;
    if (set == NULL ||
        arena_battles_read_csv(set, path, o->n_threads, &err) != ARENA_OK) {
        fprintf(stderr, "arena bench ratings: %s: %s\n", path, err.msg);
        goto out;
    }
    double t1 = arena__now(), c1 = cpu_now();
    pairs = arena_pairs_from_battles(set, NULL);
    double t2 = arena__now(), c2 = cpu_now();
    if (pairs == NULL || arena_ratings_bt(pairs, o, &r, &err) != ARENA_OK) {
        fprintf(stderr, "arena bench ratings: %s\n", err.msg);
        goto out;
    }
    double t3 = arena__now(), c3 = cpu_now();
    t[PH_CPU_READ] = c1 - c0;
    t[PH_CPU_AGG] = c2 - c1;
    t[PH_CPU_BT] = c3 - c2;
    t[PH_READ] = t1 - t0;
    t[PH_AGG] = t2 - t1;
    t[PH_FIT] = r->fit_s;
    t[PH_BOOT] = r->bootstrap_s;
    t[PH_TOTAL] = t3 - t0;
    t[PH_CPU] = c3 - c0;
    *n_battles = arena_battles_count(set);
    *n_models = r->n_ranked;
    if (r->rounds_fallback > 0)
        fprintf(stderr, "note: %d rounds took the slow path\n",
                r->rounds_fallback);
    t[PH_ITERS] = r->boot_iterations;
    rc = 0;
out:
    arena_ratings_free(r);
    arena_pairs_free(pairs);
    arena_battles_free(set);
    return rc;
}

static int bench_parse(int argc, char **argv, const char **input, long *battles,
                       long *models, long *repeat, struct arena_rating_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        if (val == NULL)
            return usage_error("bench ratings", "%s needs a value", opt);
        i++;
        if (strcmp(opt, "--input") == 0)
            *input = val;
        else if (strcmp(opt, "--battles") == 0 &&
                 parse_long(val, 1, 100000000L, &l) == 0)
            *battles = l;
        else if (strcmp(opt, "--models") == 0 &&
                 parse_long(val, 2, 5000, &l) == 0)
            *models = l;
        else if (strcmp(opt, "--bootstrap") == 0 &&
                 parse_long(val, 0, 1000000, &l) == 0)
            o->bootstrap = (int)l;
        else if (strcmp(opt, "--threads") == 0 &&
                 parse_long(val, 1, 64, &l) == 0)
            o->n_threads = (int)l;
        else if (strcmp(opt, "--repeat") == 0 &&
                 parse_long(val, 1, 100, &l) == 0)
            *repeat = l;
        else if (strcmp(opt, "--seed") == 0 &&
                 parse_long(val, 0, 2000000000L, &l) == 0)
            o->seed = (uint64_t)l;
        else
            return usage_error("bench ratings", "bad option or value '%s'",
                               opt);
    }
    return 0;
}

int arena_cmd_bench_ratings(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(bench_help, stdout);
            return 0;
        }
    const char *input = NULL;
    long battles = 2000000, models = 150, repeat = 3;
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    int rc = bench_parse(argc, argv, &input, &battles, &models, &repeat, &o);
    if (rc != 0)
        return rc;
    char tmp[256] = "";
    if (input == NULL) {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp, sizeof(tmp), "%s/arena-bench-ratings-%ld.csv",
                 dir ? dir : "/tmp", (long)getpid());
        double t0 = arena__now();
        if (bench_write_csv(tmp, battles, models, o.seed) != 0) {
            fprintf(stderr, "arena bench ratings: cannot write %s\n", tmp);
            return 1;
        }
        printf("synthetic: %ld battles, %ld models -> %s (%.2f s)\n", battles,
               models, tmp, arena__now() - t0);
        input = tmp;
    }
    double load[3] = {0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf != NULL) {
        if (fscanf(lf, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = -1;
        fclose(lf);
    }
    double t[100][N_PH], col[100];
    size_t nb = 0, nm = 0;
    rc = 0;
    for (long k = 0; k < repeat && rc == 0; k++)
        rc = bench_once(input, &o, t[k], &nb, &nm);
    if (tmp[0] != '\0')
        unlink(tmp);
    if (rc != 0)
        return rc;
    double med[N_PH];
    for (int p = 0; p < N_PH; p++) {
        for (long k = 0; k < repeat; k++)
            col[k] = t[k][p];
        med[p] = median(col, (int)repeat);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("%zu battles, %zu models, %d bootstrap rounds, %d threads, "
           "%ld CPUs, load average before %.2f %.2f %.2f\n",
           nb, nm, o.bootstrap, o.n_threads > 0 ? o.n_threads : (int)cpus, cpus,
           load[0], load[1], load[2]);
    printf("median of %ld runs, seconds          wall      CPU\n", repeat);
    printf("  read-only pass (read, count lines) %8.4f %8.4f\n",
           med[PH_READONLY], med[PH_CPU_READONLY]);
    printf("  read + parse CSV                   %8.4f %8.4f  (%.1fx the "
           "read-only pass)\n",
           med[PH_READ], med[PH_CPU_READ], med[PH_READ] / med[PH_READONLY]);
    printf("  aggregate pair counts              %8.4f %8.4f\n", med[PH_AGG],
           med[PH_CPU_AGG]);
    printf("  fit (Newton)                       %8.4f\n", med[PH_FIT]);
    printf("  bootstrap                          %8.4f           (%.3f "
           "ms/round, %.1f steps/round)\n",
           med[PH_BOOT], o.bootstrap ? med[PH_BOOT] * 1e3 / o.bootstrap : 0,
           med[PH_ITERS]);
    printf("  fit + bootstrap                    %8.4f %8.4f\n",
           med[PH_FIT] + med[PH_BOOT], med[PH_CPU_BT]);
    printf("  end to end                         %8.4f %8.4f\n", med[PH_TOTAL],
           med[PH_CPU]);
    return 0;
}
