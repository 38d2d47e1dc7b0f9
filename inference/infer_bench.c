/*
 * infer_bench.c: `arena bench infer`: the machine's measured memory
 * bandwidth (every thread reading its share of a buffer far larger than
 * the caches) and FMA peak (every thread running independent FMA chains),
 * then decode throughput of a model by batch size.
 *
 * Rows are per batch size; issue 4 adds prompt throughput per row and a
 * scheduler mode (simulated clients) beside bench_decode().
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer_model.h"

double infer_now(void);

#define BW_BYTES  ((size_t)512 << 20) /* far beyond any L3 here */
#define BW_TRIALS 5

struct bw_job {
    unsigned char *buf;
    size_t bytes;
    double seconds; /* how long to keep reading */
    double *done;   /* (nth) bytes read per thread */
    double flops;   /* FMA: flops per thread */
    int simd;       /* 2 avx2, 3 avx512 */
};

static void bw_worker(void *arg, int ith, int nth)
{
    struct bw_job *j = arg;
    size_t share = j->bytes / (size_t)nth / 256 * 256;
    const unsigned char *p = j->buf + share * (size_t)ith;
    double t0 = infer_now(), got = 0;
    uint64_t sink = 0;
    do {
        sink ^= infer__bw_read_avx2(p, share);
        got += (double)share;
    } while (infer_now() - t0 < j->seconds);
    j->done[ith] = got + (double)(sink & 1); /* keep sink alive */
}

/* Bytes per second all threads read together, in GB/s; 0 if unavailable. */
double infer_bench_bandwidth(int n_threads, double seconds)
{
    if (infer_kernels_get("avx2") == NULL)
        return 0;
    struct infer_pool *pool = infer_pool_new(n_threads);
    struct bw_job j = {.bytes = BW_BYTES, .seconds = seconds};
    j.buf = aligned_alloc(64, BW_BYTES);
    double result = 0;
    if (pool != NULL && j.buf != NULL) {
        int nth = infer_pool_size(pool);
        j.done = calloc((size_t)nth, sizeof(double));
        memset(j.buf, 1, BW_BYTES); /* fault the pages in */
        /* Best of several short trials, as STREAM reports: on a shared
         * machine the best trial is the closest to what the memory
         * system can do. */
        j.seconds = seconds / BW_TRIALS;
        for (int trial = 0; j.done != NULL && trial < BW_TRIALS; trial++) {
            double t0 = infer_now();
            infer_pool_run(pool, bw_worker, &j);
            double t = infer_now() - t0, total = 0;
            for (int i = 0; i < nth; i++)
                total += j.done[i];
            if (total / t / 1e9 > result)
                result = total / t / 1e9;
        }
        free(j.done);
    }
    free(j.buf);
    infer_pool_free(pool);
    return result;
}

static void fma_worker(void *arg, int ith, int nth)
{
    struct bw_job *j = arg;
    (void)nth;
    double t0 = infer_now(), flops = 0;
    do {
        flops += j->simd == 3 ? infer__fma_loop_avx512(200000)
                              : infer__fma_loop_avx2(200000);
    } while (infer_now() - t0 < j->seconds);
    j->done[ith] = flops;
}

/* FP32 FMA peak of all threads together, GFLOP/s; 0 if unavailable. */
double infer_bench_fma_peak(int n_threads, double seconds)
{
    if (infer_kernels_get("avx2") == NULL)
        return 0;
    struct infer_pool *pool = infer_pool_new(n_threads);
    if (pool == NULL)
        return 0;
    int nth = infer_pool_size(pool);
    struct bw_job j = {.seconds = seconds,
                       .simd = infer_kernels_get("avx512") ? 3 : 2};
    j.done = calloc((size_t)nth, sizeof(double));
    double result = 0;
    /* Best of several trials, like the bandwidth. */
    j.seconds = seconds / BW_TRIALS;
    for (int trial = 0; j.done != NULL && trial < BW_TRIALS; trial++) {
        double t0 = infer_now();
        infer_pool_run(pool, fma_worker, &j);
        double t = infer_now() - t0, total = 0;
        for (int i = 0; i < nth; i++)
            total += j.done[i];
        if (total / t / 1e9 > result)
            result = total / t / 1e9;
    }
    free(j.done);
    infer_pool_free(pool);
    return result;
}

/* ---- decode throughput
 * ------------------------------------------------------------ */

struct bench_opts {
    const char *model, *kernels;
    int batches[32], n_batches;
    int prompt_tokens, gen_tokens, threads;
    int rounds; /* the batch list is run this many times; best row kept */
};

struct bench_row {
    int batch;
    double step_s; /* seconds per decode step */
    double cpu_s;  /* CPU seconds (all threads) per decode step */
    double tok_s;  /* aggregate decode tokens per second */
    double gbs;    /* weight bytes read per second */
    double gflops; /* matmul flops per second */
};

/* CPU time of the whole process (every thread), seconds. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* The packed layout of a weight type (infer_kernels.h), for the bench's
 * kernel lines. */
static const char *packed_name(uint32_t type)
{
    switch (type) {
    case INFER_TYPE_Q8_0:
    case INFER_TYPE_Q5_0:
        return "packed (Q8R)";
    case INFER_TYPE_Q4_0:
        return "packed (Q4R)";
    case INFER_TYPE_Q5_1:
        return "packed (Q51R)";
    case INFER_TYPE_Q4_K:
        return "packed (Q4KR)";
    case INFER_TYPE_Q5_K:
        return "packed (Q5KR)";
    default:
        return "packed (Q6KR)";
    }
}

/* One thread multiplying a small weight matrix of type wtype (k columns,
 * hot in L2) by `batch` activation rows again and again: the kernel's own
 * speed in GFLOP/s, which a loaded machine disturbs far less than the
 * decode rows (best of short trials). 0 if the type has no kernel. */
static double bench_kernel(const struct infer_kernels *ks, uint32_t wtype,
                           int64_t k, int batch, bool packed)
{
    enum { R = 256 };
    enum infer_act_kind kind = infer_act_kind_of(wtype);
    size_t rb = infer_row_bytes(wtype, k), ab = infer_act_row_bytes(kind, k);
    if (ks->mm[wtype] == NULL || rb == 0)
        return 0;
    infer_mm_packed_fn pfn = infer_packed_fn(ks, wtype);
    if (packed && pfn == NULL)
        return 0;
    void *wp = NULL;
    float *f = malloc(sizeof(float) * (size_t)k * (R > batch ? R : batch));
    char *w = malloc(rb * R), *x = malloc(ab * batch);
    float *y = malloc(sizeof(float) * R * batch);
    double best = 0;
    if (f != NULL && w != NULL && x != NULL && y != NULL) {
        for (int64_t i = 0; i < k * R; i++)
            f[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
        for (int r = 0; r < R; r++)
            infer_quantize_row(wtype, f + r * k, w + r * rb, k);
        if (packed) {
            wp = aligned_alloc(64, R / INFER_Q8R_ROWS *
                                       infer_packed_group_bytes(wtype, k));
            if (wp == NULL)
                packed = false;
            else
                infer_pack(wtype, w, rb, R, k, wp);
        }
        for (int b = 0; b < batch; b++)
            infer_quantize_act(kind, f + b * k, x + b * ab, k);
        for (int trial = 0; trial < 20; trial++) {
            double t0 = infer_now();
            for (int it = 0; it < 8; it++)
                if (packed)
                    pfn(wp, k, 0, R, R, true, x, ab, batch, y, R);
                else
                    ks->mm[wtype](w, rb, k, 0, R, x, ab, batch, y, R);
            double t = infer_now() - t0;
            double gf = 2.0 * (double)k * R * batch * 8 / t / 1e9;
            if (t > 0 && gf > best)
                best = gf;
        }
    }
    free(f);
    free(w);
    free(wp);
    free(x);
    free(y);
    return best;
}

/* Decodes gen_tokens steps of `batch` sequences after a short prompt. */
static int bench_decode(const struct infer_model *m, const struct bench_opts *o,
                        int batch, struct bench_row *row, struct infer_err *err)
{
    int ctx_len = o->prompt_tokens + o->gen_tokens + 1;
    struct infer_ctx_params cp = {.max_batch = batch,
                                  .max_ctx = ctx_len,
                                  .n_threads = o->threads,
                                  .kernels = o->kernels};
    struct infer_ctx *ctx = NULL;
    struct infer_kv *kv = NULL;
    struct infer_seq *seqs = NULL;
    struct infer_batch_entry *e = calloc((size_t)batch, sizeof(*e));
    /* Paged in now: the prompt steps want no logits, and the first timed
     * step would otherwise fault the buffer in (13 ms at batch 16 here,
     * 5% of the row; a server pays it once). */
    float *logits =
        infer_alloc_zeroed((size_t)batch * m->cfg.n_vocab * sizeof(float));
    int st = e && logits ? INFER_OK
                         : infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    if (st == INFER_OK)
        st = infer_ctx_new(m, &cp, &ctx, err);
    if (st == INFER_OK)
        st = infer__bench_seqs(m, batch, ctx_len, &kv, &seqs, err);
    /* Prompt: one token per sequence per step (its speed is not shown). */
    int pos = 0;
    for (; st == INFER_OK && pos < o->prompt_tokens; pos++) {
        for (int b = 0; b < batch; b++)
            e[b] = (struct infer_batch_entry){
                &seqs[b], pos, (pos * 7 + b) % m->cfg.n_vocab, false};
        st = infer_forward(ctx, kv, e, batch, logits, err);
    }
    double t0 = infer_now(), c0 = cpu_now();
    for (int s = 0; st == INFER_OK && s < o->gen_tokens; s++, pos++) {
        for (int b = 0; b < batch; b++)
            e[b] = (struct infer_batch_entry){
                &seqs[b], pos, (pos * 13 + b) % m->cfg.n_vocab, true};
        st = infer_forward(ctx, kv, e, batch, logits, err);
    }
    double t = infer_now() - t0, cpu = cpu_now() - c0;
    if (st == INFER_OK) {
        row->batch = batch;
        row->step_s = t / o->gen_tokens;
        row->cpu_s = cpu / o->gen_tokens;
        row->tok_s = batch * o->gen_tokens / t;
        row->gbs = (double)m->weight_bytes * o->gen_tokens / t / 1e9;
        row->gflops = 2.0 * (double)m->n_params * row->tok_s / 1e9;
    }
    infer__bench_seqs_free(kv, seqs, batch);
    infer_ctx_free(ctx);
    free(e);
    free(logits);
    return st;
}

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: arena bench infer --model FILE [--batch 1,2,4,...] "
               "[--prompt-tokens N] [--gen-tokens N] [--threads N] "
               "[--kernels NAME] [--rounds N]\n\n"
               "Prints the measured memory bandwidth and FMA peak, the "
               "matmul kernel's one-thread\nin-cache speed, then one "
               "row per batch size: aggregate decode tokens/s, wall and\n"
               "CPU (all threads) time per step, weight GB/s and GFLOP/s, "
               "prompt tokens/s.\n");
}

static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"batch", required_argument, NULL, 'b'},
        {"prompt-tokens", required_argument, NULL, 'p'},
        {"gen-tokens", required_argument, NULL, 'g'},
        {"threads", required_argument, NULL, 't'},
        {"kernels", required_argument, NULL, 'k'},
        {"rounds", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *o = (struct bench_opts){.batches = {1},
                             .n_batches = 1,
                             .prompt_tokens = 16,
                             .gen_tokens = 32,
                             .rounds = 3};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'm':
            o->model = optarg;
            break;
        case 'k':
            o->kernels = optarg;
            break;
        case 'b': {
            o->n_batches = 0;
            const char *s = optarg;
            while (*s != '\0' && o->n_batches < 32) {
                long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > 4096 ||
                    (*end != ',' && *end != '\0'))
                    return 2;
                o->batches[o->n_batches++] = (int)v;
                s = *end == ',' ? end + 1 : end;
            }
            if (o->n_batches == 0)
                return 2;
            break;
        }
        case 'p':
        case 'g':
        case 'r':
        case 't': {
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < (ch == 'p' ? 0 : 1) || v > 100000)
                return 2;
            if (ch == 'p')
                o->prompt_tokens = (int)v;
            else if (ch == 'g')
                o->gen_tokens = (int)v;
            else if (ch == 'r')
                o->rounds = (int)v;
            else
                o->threads = (int)v;
            break;
        }
        case 'h':
            bench_usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    return o->model != NULL && optind == argc ? -1 : 2;
}

/* infer_bench_sched.c: the scheduler's part (prompt rate, --clients). */
int infer_bench_clients(int argc, char **argv);

int infer_cmd_bench(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--clients", 9) == 0)
            return infer_bench_clients(argc, argv);
    struct bench_opts o;
    int rc = bench_parse(argc, argv, &o);
    if (rc >= 0) {
        if (rc == 2)
            fprintf(stderr,
                    "arena bench %s: needs --model FILE and valid "
                    "numbers; see 'arena bench %s --help'\n",
                    argv[0], argv[0]);
        return rc;
    }
    struct infer_model *m;
    struct infer_err err;
    struct infer_model_params mp = {.no_tokenizer = true};
    if (infer_model_load(o.model, &mp, &m, &err) != INFER_OK) {
        fprintf(stderr, "arena bench infer: %s\n", err.msg);
        return 1;
    }
    struct infer_pool *probe = infer_pool_new(o.threads);
    int nth = probe != NULL ? infer_pool_size(probe) : 1;
    infer_pool_free(probe);
    double bw = infer_bench_bandwidth(nth, 1.0);
    double peak = infer_bench_fma_peak(nth, 0.5);
    printf("model: %s (%s), %.1f M params, %.2f MB of weights per step\n",
           m->name, infer_arch_name(m->cfg.arch), m->n_params / 1e6,
           m->weight_bytes / 1e6);
    printf("machine: %d threads, measured memory bandwidth %.2f GB/s, FMA "
           "peak %.1f GFLOP/s\n",
           nth, bw, peak);
    {
        const struct infer_kernels *ks = o.kernels != NULL
                                             ? infer_kernels_get(o.kernels)
                                             : infer_kernels_best();
        /* The first layer's wq, and its w_down if of another type (the
         * K-quants of a Q4_K_M file whose width is no multiple of 256). */
        const struct infer_weight *ws[2] = {&m->layers[0].wq,
                                            &m->layers[0].w_down};
        int nws = ws[1]->type != ws[0]->type ? 2 : 1;
        double peak1 = infer_bench_fma_peak(1, 0.5);
        for (int i = 0; i < nws; i++) {
            const struct infer_weight *w = ws[i];
            for (int packed = 0; ks != NULL && packed < 2; packed++) {
                double kg = bench_kernel(ks, w->type, w->cols, 32, packed);
                const char *how = packed ? packed_name(w->type) : "row-major";
                if (kg > 0)
                    printf("kernel: %s %s %s, %lld columns, batch 32, one "
                           "thread in cache: %.1f GFLOP/s (%.0f%% of the "
                           "one-thread FMA peak %.1f)\n",
                           ks->name, infer_type_name(w->type), how,
                           (long long)w->cols, kg,
                           peak1 > 0 ? 100 * kg / peak1 : 0, peak1);
            }
        }
    }
    /* Rounds over the batch list, keeping each batch size's best row: on
     * a shared machine the best is the closest to what it can do (as for
     * the bandwidth and the peak), and the batch sizes see the same
     * moments of the machine. */
    struct bench_row best[32] = {{0}};
    double best_ptok[32] = {0};
    /* (rounds, n_batches) tok/s, for the ratios within each round */
    double *tok = calloc((size_t)o.rounds * o.n_batches, sizeof(double));
    int st = tok != NULL
                 ? INFER_OK
                 : infer_err_set(&err, INFER_ERR_NOMEM, "out of memory");
    for (int round = 0; st == INFER_OK && round < o.rounds; round++)
        for (int i = 0; st == INFER_OK && i < o.n_batches; i++) {
            struct bench_row r = {0};
            st = bench_decode(m, &o, o.batches[i], &r, &err);
            tok[round * o.n_batches + i] = r.tok_s;
            double ptok = 0;
            if (st == INFER_OK)
                st = infer_bench_prompt_rate(m, o.batches[i], o.prompt_tokens,
                                             o.threads, o.kernels, &ptok, &err);
            if (st == INFER_OK && r.tok_s > best[i].tok_s)
                best[i] = r;
            if (st == INFER_OK && ptok > best_ptok[i])
                best_ptok[i] = ptok;
        }
    double bw2 = infer_bench_bandwidth(nth, 1.0);
    double peak2 = infer_bench_fma_peak(nth, 0.5);
    printf("after the rows: measured memory bandwidth %.2f GB/s, FMA peak "
           "%.1f GFLOP/s; %%bw and %%peak are of the larger of each pair\n",
           bw2, peak2);
    bw = bw2 > bw ? bw2 : bw;
    peak = peak2 > peak ? peak2 : peak;
    printf("best of %d rounds over the batch sizes, %d prompt and %d "
           "generated tokens per sequence:\n",
           o.rounds, o.prompt_tokens, o.gen_tokens);
    printf("%6s %12s %10s %8s %10s %6s %10s %6s %12s\n", "batch",
           "decode tok/s", "ms/step", "cpu ms", "GB/s", "%bw", "GFLOP/s",
           "%peak", "prompt tok/s");
    for (int i = 0; st == INFER_OK && i < o.n_batches; i++) {
        const struct bench_row *r = &best[i];
        printf("%6d %12.1f %10.2f %8.1f %10.2f %5.0f%% %10.1f %5.0f%% "
               "%12.1f\n",
               r->batch, r->tok_s, r->step_s * 1e3, r->cpu_s * 1e3, r->gbs,
               bw > 0 ? 100 * r->gbs / bw : 0, r->gflops,
               peak > 0 ? 100 * r->gflops / peak : 0, best_ptok[i]);
    }
    /* The ratio of the best rows, then the ratio within each round: the
     * rows of one round ran seconds apart, so the host's drift from one
     * minute to the next (bandwidth, and compute too, on a shared VM)
     * moves both sides of a round's ratio alike. */
    if (st == INFER_OK && o.n_batches > 1 && best[0].tok_s > 0)
        for (int i = 1; i < o.n_batches; i++) {
            printf("batch %d / batch %d: %.2fx (best rows); by round:",
                   o.batches[i], o.batches[0], best[i].tok_s / best[0].tok_s);
            for (int round = 0; round < o.rounds; round++) {
                const double *t = tok + round * o.n_batches;
                printf(" %.2fx", t[0] > 0 ? t[i] / t[0] : 0);
            }
            printf("\n");
        }
    free(tok);
    if (st != INFER_OK)
        fprintf(stderr, "arena bench infer: %s\n", err.msg);
    infer_model_free(m);
    return st == INFER_OK ? 0 : 1;
}
