/*
 * infer_generate.c: a one-sequence generation loop over the batched
 * forward pass (prompt in chunks, then one token per step), and the
 * `arena generate`, `arena tokenize` and `arena model-info` commands.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer_model.h"

#define PROMPT_CHUNK 64 /* prompt tokens per forward call */
#define MAX_STOPS    8

double infer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- option parsing helpers
 * ------------------------------------------------------ */

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static int usage_error(const char *cmd, const char *what)
{
    fprintf(stderr, "arena %s: %s; see 'arena %s --help'\n", cmd, what, cmd);
    return 2;
}

/* ---- generate
 * ---------------------------------------------------------------------- */

struct gen_opts {
    const char *model, *prompt, *kernels;
    long max_tokens, top_k, threads, repeat_last_n, seed;
    double temperature, top_p, min_p, repeat_penalty;
    double presence_penalty, frequency_penalty;
    bool ids, chat, stats;
    const char *stops[MAX_STOPS];
    int n_stops;
};

struct gen_state {
    struct infer_model *m;
    struct infer_ctx *ctx;
    struct infer_kv *kv;
    struct infer_seq seq;
    struct infer_sampler *smp;
    float *logits; /* (n_vocab) */
    int32_t *ids;  /* (cap) prompt then generated */
    int cap, n_prompt, n;
};

static void gen_usage(FILE *f)
{
    fprintf(
        f,
        "usage: arena generate --model FILE [options]\n\n"
        "Generates text from a prompt (or from BOS) and prints it as it "
        "comes.\n"
        "  --prompt TEXT          prompt (default: empty)\n"
        "  --chat                 wrap the prompt in the model's chat "
        "template\n"
        "  --max-tokens N         tokens to generate (default 128)\n"
        "  --temperature T        0 is greedy (default 0)\n"
        "  --top-k K --top-p P --min-p P   sampling filters (40, 0.95, "
        "0.05)\n"
        "  --repeat-penalty R --repeat-last-n N   (1.0, 64)\n"
        "  --presence-penalty P --frequency-penalty F   OpenAI's, over "
        "the generated\n"
        "                         tokens, -2 to 2 (default 0: off)\n"
        "  --seed S               sampling seed (default 1)\n"
        "  --stop TEXT            stop before TEXT (repeatable)\n"
        "  --threads N            compute threads (default: all CPUs)\n"
        "  --kernels NAME         scalar | avx2 | avxvnni | avx512 (default: "
        "best)\n"
        "  --ids                  print generated ids on one line, not "
        "text\n"
        "  --stats, --verbose     print bandwidth figures to stderr\n");
}

static int gen_parse(int argc, char **argv, struct gen_opts *o)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"max-tokens", required_argument, NULL, 'n'},
        {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},
        {"top-p", required_argument, NULL, 'P'},
        {"min-p", required_argument, NULL, 'M'},
        {"repeat-penalty", required_argument, NULL, 'r'},
        {"repeat-last-n", required_argument, NULL, 'R'},
        {"presence-penalty", required_argument, NULL, 'e'},
        {"frequency-penalty", required_argument, NULL, 'f'},
        {"seed", required_argument, NULL, 's'},
        {"stop", required_argument, NULL, 'S'},
        {"threads", required_argument, NULL, 'T'},
        {"kernels", required_argument, NULL, 'K'},
        {"ids", no_argument, NULL, 'i'},
        {"chat", no_argument, NULL, 'c'},
        {"stats", no_argument, NULL, 'v'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *o = (struct gen_opts){.prompt = "",
                           .max_tokens = 128,
                           .top_k = 40,
                           .repeat_last_n = 64,
                           .seed = 1,
                           .top_p = 0.95,
                           .min_p = 0.05,
                           .repeat_penalty = 1.0};
    optind = 1;
    opterr = 0;
    int ch;
    bool ok = true;
    while (ok && (ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            o->model = optarg;
            break;
        case 'p':
            o->prompt = optarg;
            break;
        case 'n':
            ok = parse_int(optarg, 0, 1 << 24, &o->max_tokens);
            break;
        case 't':
            ok = parse_float(optarg, 0, 100, &o->temperature);
            break;
        case 'k':
            ok = parse_int(optarg, 0, 1 << 30, &o->top_k);
            break;
        case 'P':
            ok = parse_float(optarg, 0, 1, &o->top_p);
            break;
        case 'M':
            ok = parse_float(optarg, 0, 1, &o->min_p);
            break;
        case 'r':
            ok = parse_float(optarg, 0.01, 100, &o->repeat_penalty);
            break;
        case 'R':
            ok = parse_int(optarg, 0, 1 << 20, &o->repeat_last_n);
            break;
        case 'e':
            ok = parse_float(optarg, -2, 2, &o->presence_penalty);
            break;
        case 'f':
            ok = parse_float(optarg, -2, 2, &o->frequency_penalty);
            break;
        case 's':
            ok = parse_int(optarg, 0, 0x7fffffffL, &o->seed);
            break;
        case 'T':
            ok = parse_int(optarg, 1, 256, &o->threads);
            break;
        case 'K':
            o->kernels = optarg;
            break;
        case 'S':
            ok = o->n_stops < MAX_STOPS;
            if (ok)
                o->stops[o->n_stops++] = optarg;
            break;
        case 'i':
            o->ids = true;
            break;
        case 'c':
            o->chat = true;
            break;
        case 'v':
            o->stats = true;
            break;
        case 'h':
            gen_usage(stdout);
            return 0;
        default:
            ok = false;
            break;
        }
    }
    if (!ok)
        return usage_error(argv[0], "bad option or value");
    if (o->model == NULL || optind < argc)
        return usage_error(argv[0], "needs --model FILE");
    return -1; /* go on */
}

static void gen_free(struct gen_state *g)
{
    infer_sampler_free(g->smp);
    infer_seq_cleanup(&g->seq);
    infer_kv_free(g->kv);
    infer_ctx_free(g->ctx);
    infer_model_free(g->m);
    free(g->logits);
    free(g->ids);
}

/* Encodes the prompt (chat-wrapped if asked) into g->ids. */
static int gen_encode(struct gen_state *g, const struct gen_opts *o,
                      struct infer_err *err)
{
    char *text = NULL;
    const char *src = o->prompt;
    if (o->chat) {
        struct infer_chat_msg msg = {"user", o->prompt};
        enum infer_chat_format f = infer_chat_detect(g->m->chat_template);
        text = infer_chat_render(f, &msg, 1, true);
        if (text == NULL)
            return infer_err_set(err, INFER_ERR_NOMEM, "cannot render chat");
        src = text;
    }
    int n = infer_tok_encode(g->m->tok, src, strlen(src), true, o->chat, g->ids,
                             g->cap);
    free(text);
    if (n < 0)
        return infer_err_set(err, n, "cannot tokenize the prompt");
    if (n == 0 && infer_tok_bos(g->m->tok) >= 0)
        g->ids[n++] = infer_tok_bos(g->m->tok);
    if (n == 0 || n + o->max_tokens > g->cap)
        return infer_err_set(err, INFER_ERR_ARG,
                             "prompt of %d tokens plus %ld new exceeds the "
                             "context of %d",
                             n, o->max_tokens, g->cap);
    g->n_prompt = g->n = n;
    return INFER_OK;
}

static int gen_setup(struct gen_state *g, const struct gen_opts *o,
                     struct infer_err *err)
{
    int st = infer_model_load(o->model, NULL, &g->m, err);
    if (st != INFER_OK)
        return st;
    g->cap = g->m->cfg.n_ctx_train;
    g->ids = malloc((size_t)g->cap * sizeof(int32_t));
    g->logits = malloc((size_t)g->m->cfg.n_vocab * sizeof(float));
    if (g->ids == NULL || g->logits == NULL)
        return infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    st = gen_encode(g, o, err);
    if (st != INFER_OK)
        return st;
    int max_ctx = g->n_prompt + (int)o->max_tokens;
    struct infer_ctx_params cp = {.max_batch = PROMPT_CHUNK,
                                  .max_ctx = max_ctx,
                                  .n_threads = (int)o->threads,
                                  .kernels = o->kernels};
    st = infer_ctx_new(g->m, &cp, &g->ctx, err);
    /* One sequence needs no fine paging: blocks of 64 positions give each
     * (layer, KV head) 16 KB runs of K and V instead of 4 KB ones (same
     * results: the attention sums in position order whatever the blocks).
     * Interleaved against blocks of 16 on the Zen 4 host (2026-12-06): no
     * difference at 128 tokens (5 pairs) or 1000 (4 pairs); an earlier
     * note's ~10% on the Zen 5 host was never measured in pairs. */
    if (st == INFER_OK)
        st = infer_kv_new(g->m, (max_ctx + 63) / 64, 64, &g->kv, err);
    if (st == INFER_OK && (infer_seq_init(&g->seq, g->kv, max_ctx) != 0 ||
                           infer_kv_reserve(g->kv, &g->seq, max_ctx) != 0))
        st = infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    struct infer_sampler_params sp = {
        .temperature = (float)o->temperature,
        .top_k = (int)o->top_k,
        .top_p = (float)o->top_p,
        .min_p = (float)o->min_p,
        .repeat_penalty = (float)o->repeat_penalty,
        .repeat_last_n = (int)o->repeat_last_n,
        .presence_penalty = (float)o->presence_penalty,
        .frequency_penalty = (float)o->frequency_penalty,
        .seed = (uint64_t)o->seed};
    if (st == INFER_OK &&
        infer_sampler_new(&sp, g->m->cfg.n_vocab, &g->smp) != INFER_OK)
        st = infer_err_set(err, INFER_ERR_NOMEM, "out of memory");
    for (int i = 0; st == INFER_OK && i < g->n_prompt; i++)
        infer_sampler_accept(g->smp, g->ids[i], false);
    return st;
}

/* Runs ids[from, to) through the model; logits of the last one. */
static int gen_step(struct gen_state *g, int from, int to,
                    struct infer_err *err)
{
    struct infer_batch_entry e[PROMPT_CHUNK];
    for (int s = from; s < to; s += PROMPT_CHUNK) {
        int n = to - s < PROMPT_CHUNK ? to - s : PROMPT_CHUNK;
        for (int i = 0; i < n; i++)
            e[i] = (struct infer_batch_entry){&g->seq, s + i, g->ids[s + i],
                                              s + i == to - 1};
        int st = infer_forward(g->ctx, g->kv, e, n, g->logits, err);
        if (st != INFER_OK)
            return st;
    }
    return INFER_OK;
}

/* Text output with stop strings held back across token boundaries. */
struct text_out {
    struct infer_utf8 u8;
    char pend[4096];
    size_t n;
    bool strip_space; /* SentencePiece's leading space after BOS */
};

/* Emits a piece; returns true when a stop string ended the text. */
static bool text_push(struct text_out *t, const struct gen_opts *o,
                      const char *piece, size_t len, bool flush)
{
    char buf[3 * 256 + 16];
    if (len > 256)
        len = 256;
    size_t k = infer_utf8_push(&t->u8, piece, len, buf, sizeof(buf));
    if (flush)
        k += infer_utf8_flush(&t->u8, buf + k, sizeof(buf) - k);
    const char *b = buf;
    if (t->strip_space && k > 0) {
        if (b[0] == ' ') {
            b++;
            k--;
        }
        t->strip_space = false;
    }
    if (t->n + k > sizeof(t->pend)) { /* keep the window bounded */
        fwrite(t->pend, 1, t->n, stdout);
        t->n = 0;
    }
    memcpy(t->pend + t->n, b, k);
    t->n += k;
    size_t hold = 0;
    long at = infer_stop_find(t->pend, t->n, o->stops, o->n_stops, &hold);
    size_t out = at >= 0 ? (size_t)at : flush ? t->n : t->n - hold;
    fwrite(t->pend, 1, out, stdout);
    fflush(stdout);
    memmove(t->pend, t->pend + out, t->n - out);
    t->n -= out;
    return at >= 0;
}

double infer_bench_bandwidth(int n_threads, double seconds);

static void gen_report(const struct gen_state *g, const struct gen_opts *o,
                       double t_prompt, double t_gen, double bw_before)
{
    int n_gen = g->n - g->n_prompt;
    double tps = n_gen > 1 ? (n_gen - 1) / t_gen : 0;
    fprintf(stderr,
            "\n[%d prompt tokens in %.3f s (%.1f tok/s); %d generated, "
            "%.1f tok/s; %d threads, %s kernels]\n",
            g->n_prompt, t_prompt, g->n_prompt / t_prompt, n_gen, tps,
            infer_ctx_threads(g->ctx), infer_ctx_kernels(g->ctx));
    if (!o->stats || tps == 0)
        return;
    /* The larger of a measurement just before and one just after: on a
     * shared machine the bandwidth on offer drifts, and the ratio is then
     * taken against the better of the two. */
    double gbs = (double)g->m->weight_bytes * tps / 1e9;
    double bw_after = infer_bench_bandwidth(infer_ctx_threads(g->ctx), 0.5);
    double bw = bw_after > bw_before ? bw_after : bw_before;
    fprintf(stderr,
            "[weights %.1f MB per token; %.2f GB/s achieved; measured memory "
            "bandwidth %.2f GB/s (%.2f before, %.2f after); %.0f%% of it]\n",
            (double)g->m->weight_bytes / 1e6, gbs, bw, bw_before, bw_after,
            bw > 0 ? 100.0 * gbs / bw : 0);
}

static int gen_run(struct gen_state *g, const struct gen_opts *o,
                   struct infer_err *err)
{
    double bw_before =
        o->stats ? infer_bench_bandwidth(infer_ctx_threads(g->ctx), 0.5) : 0;
    double t0 = infer_now();
    int st = gen_step(g, 0, g->n_prompt, err);
    double t1 = infer_now(), t_first = t1;
    struct text_out txt = {.strip_space = g->n_prompt == 1};
    bool stopped = false;
    while (st == INFER_OK && !stopped && g->n - g->n_prompt < o->max_tokens) {
        int tok = infer_sampler_sample(g->smp, g->logits);
        if (infer_tok_is_eog(g->m->tok, tok))
            break;
        infer_sampler_accept(g->smp, tok, true);
        g->ids[g->n++] = tok;
        if (g->n - g->n_prompt == 1)
            t_first = infer_now();
        if (!o->ids) {
            size_t len;
            const char *p = infer_tok_piece(g->m->tok, tok, false, &len);
            stopped = text_push(&txt, o, p != NULL ? p : "", len, false);
        }
        if (!stopped && g->n - g->n_prompt < o->max_tokens)
            st = gen_step(g, g->n - 1, g->n, err);
    }
    if (st != INFER_OK)
        return st;
    if (o->ids) {
        for (int i = g->n_prompt; i < g->n; i++)
            printf("%s%d", i > g->n_prompt ? " " : "", g->ids[i]);
    } else if (!stopped) {
        text_push(&txt, o, "", 0, true);
    }
    printf("\n");
    gen_report(g, o, t1 - t0, infer_now() - t_first, bw_before);
    return INFER_OK;
}

int infer_cmd_generate(int argc, char **argv)
{
    struct gen_opts o;
    int rc = gen_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    struct gen_state g = {0};
    struct infer_err err = {{0}};
    int st = gen_setup(&g, &o, &err);
    if (st == INFER_OK)
        st = gen_run(&g, &o, &err);
    if (st != INFER_OK)
        fprintf(stderr, "arena generate: %s\n", err.msg);
    gen_free(&g);
    return st == INFER_OK ? 0 : 1;
}

/* ---- tokenize
 * ------------------------------------------------------------------------ */

int infer_cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"text", required_argument, NULL, 't'},
        {"no-bos", no_argument, NULL, 'b'},
        {"special", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *model = NULL, *text = NULL;
    bool bos = true, special = false;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case 't':
            text = optarg;
            break;
        case 'b':
            bos = false;
            break;
        case 's':
            special = true;
            break;
        case 'h':
            printf("usage: arena tokenize --model FILE --text TEXT "
                   "[--no-bos] [--special]\n\n"
                   "Prints the token ids of TEXT, space-separated.\n"
                   "  --no-bos   do not add BOS\n"
                   "  --special  parse special tokens written in TEXT\n");
            return 0;
        default:
            return usage_error(argv[0], "bad option");
        }
    }
    if (model == NULL || text == NULL || optind < argc)
        return usage_error(argv[0], "needs --model FILE and --text TEXT");
    struct infer_tok *tok;
    struct infer_err err;
    if (infer_tok_load_for_model(model, &tok, &err) != INFER_OK) {
        fprintf(stderr, "arena tokenize: %s\n", err.msg);
        return 1;
    }
    size_t len = strlen(text);
    int cap = (int)(len + 8), n;
    int32_t *ids = malloc((size_t)cap * sizeof(int32_t));
    n = ids != NULL ? infer_tok_encode(tok, text, len, bos, special, ids, cap)
                    : INFER_ERR_NOMEM;
    for (int i = 0; i < n && i < cap; i++)
        printf("%s%d", i > 0 ? " " : "", ids[i]);
    if (n >= 0)
        printf("\n");
    else
        fprintf(stderr, "arena tokenize: %s\n", infer_strerror(n));
    free(ids);
    infer_tok_free(tok);
    return n >= 0 ? 0 : 1;
}

/* ---- model-info
 * ---------------------------------------------------------------------- */

static void info_types(const struct infer_model *m)
{
    uint64_t count[INFER_TYPE_COUNT] = {0}, bytes[INFER_TYPE_COUNT] = {0};
    if (m->gguf != NULL) {
        for (int64_t i = 0; i < infer_gguf_n_tensors(m->gguf); i++) {
            const struct infer_gguf_tensor *t = infer_gguf_tensor(m->gguf, i);
            count[t->type]++;
            bytes[t->type] += t->nbytes;
        }
    } else {
        size_t sz = m->map_size;
        count[INFER_TYPE_F32] =
            2 + 9 * (uint64_t)m->cfg.n_layers + !m->cfg.tied_output;
        bytes[INFER_TYPE_F32] = sz - 28;
    }
    printf("tensors:");
    for (int t = 0; t < INFER_TYPE_COUNT; t++)
        if (count[t] > 0)
            printf(" %s x%llu (%.2f MB)", infer_type_name((uint32_t)t),
                   (unsigned long long)count[t], bytes[t] / 1e6);
    printf("\n");
}

int infer_cmd_model_info(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: arena model-info FILE\n\n"
               "Prints a model file's architecture, shapes, tensor types and "
               "chat template.\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return usage_error(argv[0], "takes one model FILE");
    struct infer_model *m;
    struct infer_err err;
    struct infer_model_params p = {.no_tokenizer = true};
    if (infer_model_load(argv[1], &p, &m, &err) != INFER_OK) {
        fprintf(stderr, "arena model-info: %s\n", err.msg);
        return 1;
    }
    const struct infer_config *c = &m->cfg;
    printf("file: %s (%s)\nname: %s\narchitecture: %s\n", argv[1],
           m->source == INFER_SOURCE_GGUF ? "GGUF" : "llama2.c", m->name,
           infer_arch_name(c->arch));
    printf("shape: dim %d, layers %d, heads %d, kv heads %d, head dim %d, "
           "ffn %d, vocab %d, context %d\n",
           c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
           c->hidden, c->n_vocab, c->n_ctx_train);
    printf("rope: base %g, %d dims, %s pairing; rms eps %g; output %s; qkv "
           "bias %s\n",
           c->rope_base, c->n_rot, c->rope_neox ? "neox" : "normal", c->rms_eps,
           c->tied_output ? "tied" : "separate",
           c->has_qkv_bias ? "yes" : "no");
    printf("parameters: %.1f M; weights read per token: %.2f MB\n",
           m->n_params / 1e6, m->weight_bytes / 1e6);
    info_types(m);
    enum infer_chat_format f = infer_chat_detect(m->chat_template);
    printf("chat template: %s\n", m->chat_template != NULL
                                      ? infer_chat_format_name(f)
                                      : "none (completion)");
    struct infer_tok *tok;
    if (infer_tok_load_for_model(argv[1], &tok, &err) == INFER_OK) {
        printf("tokenizer: %d tokens, bos %d, eos %d\n", infer_tok_n_vocab(tok),
               infer_tok_bos(tok), infer_tok_eos(tok));
        infer_tok_free(tok);
    } else {
        printf("tokenizer: unavailable (%s)\n", err.msg);
    }
    infer_model_free(m);
    return 0;
}
