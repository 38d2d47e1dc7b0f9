/*
 * infer_bench_sched.c: the scheduler's side of `arena bench infer`:
 *
 *  - infer_bench_prompt_rate(): prompt (prefill) throughput of a batch of
 *    sequences computed the way the scheduler does it, several sequences'
 *    prompt chunks in one forward call of up to PREFILL_CHUNK tokens;
 *  - `arena bench infer --model FILE --clients N [--rate R]`: N simulated
 *    clients arriving at random (Poisson, R per second) against a real
 *    local engine, each streaming one request; prints ttft and per-client
 *    decode tokens/s percentiles and the aggregate throughput.
 */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer_model.h"
#include "infer_sched.h"

#define PREFILL_CHUNK 256

int infer__bench_seqs(const struct infer_model *m, int batch, int len,
                      struct infer_kv **kv, struct infer_seq **seqs,
                      struct infer_err *err)
{
    *kv = NULL;
    *seqs = calloc((size_t)batch, sizeof(**seqs));
    if (*seqs == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    int per = (len + 15) / 16;
    int st = infer_kv_new(m, per * batch, 16, kv, err);
    for (int b = 0; st == INFER_OK && b < batch; b++) {
        st = infer_seq_init(&(*seqs)[b], *kv, len);
        if (st == INFER_OK)
            st = infer_kv_reserve(*kv, &(*seqs)[b], len);
        if (st != INFER_OK)
            st = infer_err_set(err, st, "cannot back %d positions", len);
    }
    return st;
}

void infer__bench_seqs_free(struct infer_kv *kv, struct infer_seq *seqs,
                            int batch)
{
    for (int b = 0; b < batch && seqs != NULL; b++)
        infer_seq_cleanup(&seqs[b]);
    infer_kv_free(kv);
    free(seqs);
}

int infer_bench_prompt_rate(const struct infer_model *m, int batch,
                            int prompt_tokens, int threads, const char *kernels,
                            double *tok_s, struct infer_err *err)
{
    *tok_s = 0;
    if (prompt_tokens < 1 || batch < 1)
        return INFER_OK;
    struct infer_ctx_params cp = {.max_batch = PREFILL_CHUNK,
                                  .max_ctx = prompt_tokens,
                                  .n_threads = threads,
                                  .kernels = kernels};
    struct infer_ctx *ctx = NULL;
    struct infer_kv *kv = NULL;
    struct infer_seq *seqs = NULL;
    struct infer_batch_entry *e = calloc(PREFILL_CHUNK, sizeof(*e));
    float *logits = infer_alloc_zeroed((size_t)PREFILL_CHUNK * m->cfg.n_vocab *
                                       sizeof(float));
    int st = e && logits ? INFER_OK
                         : infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    if (st == INFER_OK)
        st = infer_ctx_new(m, &cp, &ctx, err);
    if (st == INFER_OK)
        st = infer__bench_seqs(m, batch, prompt_tokens, &kv, &seqs, err);
    /* Sequence after sequence, PREFILL_CHUNK tokens per call; the last
     * token of each prompt asks for logits, as the scheduler's do. */
    double t0 = infer_now();
    int n = 0, b = 0, pos = 0;
    while (st == INFER_OK && b < batch) {
        e[n++] = (struct infer_batch_entry){
            &seqs[b], pos, (pos * 31 + b * 7 + 1) % m->cfg.n_vocab,
            pos == prompt_tokens - 1};
        if (++pos == prompt_tokens)
            pos = 0, b++;
        if (n == PREFILL_CHUNK || b == batch) {
            st = infer_forward(ctx, kv, e, n, logits, err);
            n = 0;
        }
    }
    double t = infer_now() - t0;
    if (st == INFER_OK && t > 0)
        *tok_s = (double)batch * prompt_tokens / t;
    infer__bench_seqs_free(kv, seqs, batch);
    infer_ctx_free(ctx);
    free(e);
    free(logits);
    return st;
}

/* ---- simulated clients
 * ------------------------------------------------------------ */

struct sim_client {
    struct infer_engine *e;
    const char *prompt;
    int gen;
    double arrive; /* seconds after the start */
    double t0;
    /* results */
    bool ok;
    struct infer_stats st;
};

static void *sim_main(void *arg)
{
    struct sim_client *c = arg;
    double wait = c->t0 + c->arrive - infer_now();
    if (wait > 0)
        usleep((useconds_t)(wait * 1e6));
    struct infer_params p = {.prompt = c->prompt, .max_tokens = c->gen};
    struct infer_stream *s;
    struct infer_err err;
    if (infer_engine_submit(c->e, &p, NULL, &s, &err) != INFER_OK)
        return NULL;
    struct infer_event ev;
    int k;
    while ((k = infer_stream_next(s, -1, &ev)) == INFER_EV_TEXT)
        ;
    c->ok = k == INFER_EV_DONE;
    c->st = ev.stats;
    infer_stream_free(s);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
    if (n == 0)
        return 0;
    int i = (int)ceil(p / 100.0 * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

int infer_bench_clients(int argc, char **argv);

int infer_bench_clients(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"clients", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},
        {"prompt-tokens", required_argument, NULL, 'p'},
        {"gen-tokens", required_argument, NULL, 'g'},
        {"threads", required_argument, NULL, 't'},
        {"batch", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0}};
    const char *model = NULL;
    int clients = 0, prompt = 32, gen = 64, threads = 0, max_batch = 64;
    double rate = 8;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        double v = optarg != NULL ? strtod(optarg, &end) : 0;
        bool num = end != NULL && end != optarg && *end == '\0' && v > 0;
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case 'c':
            clients = num && v <= 4096 ? (int)v : -1;
            break;
        case 'r':
            rate = num ? v : -1;
            break;
        case 'p':
            prompt = num && v <= 100000 ? (int)v : -1;
            break;
        case 'g':
            gen = num && v <= 100000 ? (int)v : -1;
            break;
        case 't':
            threads = num && v <= 256 ? (int)v : -1;
            break;
        case 'b': /* --batch N caps the engine's batch (first value) */
            max_batch = (int)strtol(optarg, NULL, 10);
            break;
        default:
            clients = -1;
            break;
        }
    }
    if (model == NULL || clients < 1 || rate <= 0 || prompt < 1 || gen < 1 ||
        threads < 0 || max_batch < 1) {
        fprintf(stderr, "arena bench infer --clients N: needs --model FILE "
                        "and positive --clients, --rate, --prompt-tokens, "
                        "--gen-tokens\n");
        return 2;
    }
    struct infer_engine_opts o;
    infer_engine_opts_default(&o);
    o.threads = threads;
    o.max_batch = max_batch;
    o.max_queue = clients;
    o.ctx_len = prompt * 8 + gen + 16;
    struct infer_engine *e;
    struct infer_err err;
    if (infer_engine_open_local(model, &o, &e, &err) != INFER_OK) {
        fprintf(stderr, "arena bench infer: %s\n", err.msg);
        return 1;
    }
    /* A prompt of about `prompt` tokens of plain words. */
    size_t cap = (size_t)prompt * 8 + 1, len = 0;
    char *text = malloc(cap);
    static const char *words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat "};
    for (int i = 0; text != NULL && i < prompt; i++) {
        size_t w = strlen(words[i % 6]);
        memcpy(text + len, words[i % 6], w);
        len += w;
    }
    struct sim_client *c = calloc((size_t)clients, sizeof(*c));
    pthread_t *t = calloc((size_t)clients, sizeof(*t));
    if (text == NULL || c == NULL || t == NULL) {
        fprintf(stderr, "arena bench infer: out of memory\n");
        return 1;
    }
    text[len] = '\0';
    uint64_t x = 0x9e3779b97f4a7c15ull;
    double at = 0, t0 = infer_now() + 0.05;
    int started = 0;
    for (int i = 0; i < clients; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = ((double)(x >> 11) + 0.5) / 9007199254740992.0;
        at += -log(u) / rate; /* exponential gaps: Poisson arrivals */
        c[i] = (struct sim_client){
            .e = e, .prompt = text, .gen = gen, .arrive = at, .t0 = t0};
        if (pthread_create(&t[i], NULL, sim_main, &c[i]) == 0)
            started++;
        else
            t[i] = 0, c[i].ok = false;
    }
    for (int i = 0; i < clients; i++)
        if (t[i] != 0)
            pthread_join(t[i], NULL);
    double wall = infer_now() - t0;
    double *ttft = calloc((size_t)clients, sizeof(double));
    double *tps = calloc((size_t)clients, sizeof(double));
    int n = 0, nt = 0;
    long long gen_total = 0, prompt_total = 0;
    for (int i = 0; ttft != NULL && tps != NULL && i < clients; i++) {
        if (!c[i].ok)
            continue;
        ttft[n++] = c[i].st.ttft_ms;
        gen_total += c[i].st.completion_tokens;
        prompt_total += c[i].st.prompt_tokens;
        if (c[i].st.completion_tokens > 1 && c[i].st.gen_ms > 0)
            tps[nt++] = (c[i].st.completion_tokens - 1) / c[i].st.gen_ms * 1e3;
    }
    qsort(ttft, (size_t)n, sizeof(double), cmp_d);
    qsort(tps, (size_t)nt, sizeof(double), cmp_d);
    struct infer_engine_info in;
    infer_engine_info(e, &in);
    printf("model: %s; %d clients arriving at %.1f/s (Poisson), prompt ~%d "
           "tokens, up to %d new; engine batch %d, %d threads\n",
           infer_engine_model_name(e), clients, rate, prompt, gen, max_batch,
           threads);
    printf("completed %d of %d in %.2f s: %.1f generated tok/s, %.1f prompt "
           "tok/s aggregate, %lld steps\n",
           n, clients, wall, gen_total / wall, prompt_total / wall, in.steps);
    printf("%-22s %9s %9s %9s %9s\n", "", "p50", "p90", "p99", "max");
    printf("%-22s %9.1f %9.1f %9.1f %9.1f\n", "ttft ms", pct(ttft, n, 50),
           pct(ttft, n, 90), pct(ttft, n, 99), n ? ttft[n - 1] : 0);
    printf("%-22s %9.1f %9.1f %9.1f %9.1f\n", "decode tok/s per client",
           pct(tps, nt, 50), pct(tps, nt, 10), pct(tps, nt, 1),
           nt ? tps[0] : 0);
    printf("(decode tok/s columns are p50, p10, p1, min: the slow tail)\n");
    free(ttft);
    free(tps);
    free(c);
    free(t);
    free(text);
    infer_engine_free(e);
    return n == clients ? 0 : 1;
}
